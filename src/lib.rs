//! refundd: the refunds desk of Anumi. One message's way through:
//!
//! - [`ingest`]  stores raw bytes + receipt time durably, dedupes (Maildir, IMAP)
//! - [`parse`]   raw bytes -> `ParsedEmail` (mail-parser), secrets redacted
//! - [`verify`]  DKIM / SPF / DMARC / ARC in process, when `[sender_auth]` asks
//! - [`screen`]  auto-reply / bounce / loop / machine reports -> `ignored`
//! - [`extract`] order refs, category + flags (rules file), evidence, language, sender auth
//! - [`policy`]  PURE: facts + config + times -> `Decision` with a clause trace
//! - [`store`]   the only place with SQL: messages, cases, ledger, actions, outbox
//! - [`act`]     wallet credits and cash refunds, idempotent
//! - [`reply`]   templates -> outbox -> mail sink (file, SMTP), threaded
//! - [`queue`]   PURE: case states, the lifecycle's allowed transitions, deadlines
//! - [`web`]     reviewers' console and `/api`
//!
//! [`polar_sim`] is a Polar-compatible API server for tests and demos.
//! [`daemon`] runs the stages as long-lived tasks (`refundd run`); [`retry`]
//! is the shared backoff; [`secret`] reads secrets from files and commands.
//! [`pipeline`] wires the stages for one message and runs the workers around
//! it (outbox, reviewer decisions, the deadline sweep); [`report`] gives the
//! desk's numbers; [`config`] is the typed settings tree.
//! [`replay`] decides stored or archived mail again (in force or with a
//! candidate configuration) without side effects; [`progress`] shows how
//! far long commands are.
//! [`privacy`] keeps raw mail only as long as allowed and erases a person
//! on request.

pub mod act;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod extract;
pub mod ingest;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod polar_sim;
pub mod policy;
pub mod privacy;
pub mod progress;
pub mod queue;
pub mod replay;
pub mod reply;
pub mod report;
pub mod retry;
pub mod screen;
pub mod secret;
pub mod store;
pub mod verify;
pub mod web;
