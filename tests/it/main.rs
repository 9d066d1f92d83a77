//! The integration test binary: real servers (Dovecot, an SMTP sink,
//! PostgreSQL, the Polar test server), real databases, the real binary.
//! One module per area.

mod accounts;
mod archive;
mod browser;
mod cli_pipeline;
mod console;
mod corpus;
mod daemon;
mod deadlines;
mod imap;
mod lifecycle;
mod lifecycle_props;
mod logs;
mod mailstack;
mod metrics;
mod operator_words;
mod overview;
mod payments;
mod privacy;
mod replay;
mod replies;
mod search;
mod sender_auth;
mod smtp;
mod support;
mod web;
