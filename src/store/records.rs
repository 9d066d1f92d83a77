//! The store's vocabulary: ids, row states and the records the store takes
//! and gives. States are enums whose names are exactly the strings the
//! migrations' `CHECK` constraints allow.
//!
//! Nothing here does I/O; parsing a stored name that is not in a vocabulary
//! fails with [`UnknownName`] (the store reports it as a corrupt row).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Action, Category, Clause, Decision, Flag, Language, Outcome, UnknownName};

use crate::domain::vocabulary as state;
pub use crate::queue::{Actor, CaseId, CaseStatus};

state! {
    /// Which database a [`Store`](super::Store) talks to.
    Backend, "backend" {
        /// Embedded, one file (`sqlite://PATH`).
        Sqlite => "sqlite",
        /// Shared by several instances (`postgres://…`).
        Postgres => "postgres",
    }
}

state! {
    /// Where a stored email is in the pipeline.
    MessageStatus, "message status" {
        /// Stored, not yet through the pipeline.
        Received => "received",
        /// Attached to a case.
        Processed => "processed",
        /// The pipeline could not handle it; `error` says why.
        Failed => "failed",
    }
}

state! {
    /// Why a message's raw bytes were removed (its record stays).
    RawRemoval, "raw removal" {
        /// `[retention] raw_mail_days` passed after its case was closed.
        Retention => "retention",
        /// The person asked to be erased (`refundd erase`).
        Erasure => "erasure",
    }
}

impl RawRemoval {
    /// What the console and `refundd case` show instead of the message.
    pub const fn shown_as(self) -> &'static str {
        match self {
            RawRemoval::Retention => "removed (retention)",
            RawRemoval::Erasure => "erased",
        }
    }
}

state! {
    /// Where an action (cash refund, wallet credit) stands.
    ActionStatus, "action status" {
        /// Recorded, not carried out yet (or the outcome is unknown).
        Pending => "pending",
        /// Carried out.
        Done => "done",
        /// Tried and refused for good; `detail` says why.
        Failed => "failed",
        /// Recorded as intended only (payments in dry-run mode).
        DryRun => "dry_run",
    }
}

state! {
    /// Where a reply in the outbox stands.
    ReplyStatus, "reply status" {
        /// Waiting to be sent (again).
        Queued => "queued",
        /// Handed to the mail server.
        Sent => "sent",
        /// Given up on; `last_error` says why.
        Failed => "failed",
    }
}

/// Parses a stored language code (`en`, `de`, `fr`, `es`).
pub(crate) fn parse_language(code: &str) -> Result<Language, UnknownName> {
    [Language::En, Language::De, Language::Fr, Language::Es]
        .into_iter()
        .find(|l| l.code() == code)
        .ok_or_else(|| UnknownName {
            vocabulary: "language",
            name: code.to_owned(),
            expected: "en, de, fr, es".into(),
        })
}

/// An email to store, as ingest read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// `Message-ID` without angle brackets, if the mail had one.
    pub message_id: Option<String>,
    /// Lowercase hex SHA-256 of `raw`.
    pub sha256: String,
    /// The message exactly as received.
    pub raw: Vec<u8>,
    /// When our mail server received it (INTERNALDATE / Maildir mtime).
    pub received_at: DateTime<Utc>,
    /// Where it came from: `maildir:cur/…` or `imap:INBOX:{uidvalidity}:{uid}`.
    pub source: String,
}

/// What [`Store::insert_message`](super::Store::insert_message) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new row with this id.
    New(i64),
    /// The same Message-ID or the same bytes were stored before, as this id.
    Duplicate(i64),
}

impl Inserted {
    /// The row id, new or existing.
    pub const fn id(self) -> i64 {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// A stored email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    pub sha256: String,
    pub raw: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub status: MessageStatus,
    /// Why the pipeline failed on it, when `status` is `failed`.
    pub error: Option<String>,
    pub case_id: Option<CaseId>,
    /// Set when the raw bytes were removed (`raw` is then empty): why and
    /// when. Everything decided about the message stays.
    pub removed: Option<(RawRemoval, DateTime<Utc>)>,
}

/// A case to create, with the decision that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCase {
    /// The sender's address (lowercased `From:`).
    pub sender: String,
    pub subject: String,
    pub language: Language,
    pub decision: Decision,
    pub status: CaseStatus,
    /// When a person must have answered (review / needs_info cases).
    pub deadline: Option<DateTime<Utc>>,
    /// Creation time (injected).
    pub at: DateTime<Utc>,
}

/// A stored case. Wallet, order, outcome, category, flags, actions and
/// trace are all in `decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub id: CaseId,
    pub sender: String,
    pub subject: String,
    pub language: Language,
    pub decision: Decision,
    pub status: CaseStatus,
    pub deadline: Option<DateTime<Utc>>,
    /// The compare-and-set token to pass to
    /// [`Tx::update_case_decision`](super::Tx::update_case_decision).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CaseRow {
    /// Where the case stands, for a compare-and-set transition.
    pub fn state(&self) -> crate::queue::CaseState {
        crate::queue::CaseState {
            id: self.id,
            version: self.version,
            status: self.status,
            deadline: self.deadline,
        }
    }
}

/// One status change of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseEvent {
    pub id: i64,
    pub case_id: CaseId,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// `None` for the event that opened the case.
    pub from_status: Option<CaseStatus>,
    pub to_status: CaseStatus,
    pub reason: String,
}

/// A recorded action and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAction {
    pub id: i64,
    pub case_id: CaseId,
    pub action: Action,
    pub status: ActionStatus,
    /// The key given to Polar (or the ledger credit's id).
    pub idempotency_key: String,
    /// Polar's refund id, or why it failed.
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rendered reply to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    pub case_id: CaseId,
    /// Our `Message-ID`, without angle brackets (follow-ups cite it).
    pub message_id: String,
    pub to_addr: String,
    pub subject: String,
    /// The full RFC 5322 message.
    pub raw: Vec<u8>,
    /// Queueing time (injected); the loop guard counts by it.
    pub at: DateTime<Utc>,
}

/// A reply in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReply {
    pub id: i64,
    pub case_id: CaseId,
    pub message_id: String,
    pub to_addr: String,
    pub subject: String,
    pub raw: Vec<u8>,
    pub status: ReplyStatus,
    /// Send attempts made so far.
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// In which order [`Store::list_cases`](super::Store::list_cases) lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CaseOrder {
    /// Oldest case first.
    #[default]
    Created,
    /// Earliest deadline first, cases without one last (the review queue).
    Deadline,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub outcome: Option<Outcome>,
    pub status: Option<CaseStatus>,
    /// At most this many; all when `None`.
    pub limit: Option<i64>,
    pub order: CaseOrder,
}

/// One line of `refundd cases --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    /// The case tag, `R-{n}`.
    pub id: CaseId,
    /// Message-ID of the case's first message.
    pub message_id: Option<String>,
    /// The sender's address.
    pub from: String,
    pub subject: String,
    pub outcome: Outcome,
    pub category: Category,
    pub flags: Vec<Flag>,
    pub actions: Vec<Action>,
    /// Clause ids the trace cites, in order, without repeats.
    pub clauses: Vec<Clause>,
    pub order_id: Option<String>,
    pub wallet_id: Option<String>,
    pub status: CaseStatus,
    pub created_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
}

/// The IMAP checkpoint of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCursor {
    pub folder: String,
    pub uidvalidity: i64,
    /// The highest UID stored; fetch from `last_uid + 1`.
    pub last_uid: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_id_reads_and_prints_as_its_tag() {
        for (text, want) in [
            ("R-12", Some(12)),
            ("r-7", Some(7)),
            ("42", Some(42)),
            ("R-", None),
            ("R-0", None),
            ("R-+3", None),
            ("X-3", None),
        ] {
            assert_eq!(text.parse::<CaseId>().ok().map(|c| c.0), want, "{text}");
        }
        assert_eq!(CaseId(12).to_string(), "R-12");
        assert_eq!(serde_json::to_string(&CaseId(3)).unwrap(), "\"R-3\"");
    }

    #[test]
    fn an_actor_round_trips_through_its_stored_name() {
        for actor in [
            Actor::Engine,
            Actor::Customer,
            Actor::Reviewer("ann@example.com".into()),
        ] {
            assert_eq!(actor.to_string().parse::<Actor>().unwrap(), actor);
        }
        assert!("reviewer:".parse::<Actor>().is_err());
        assert!("robot".parse::<Actor>().is_err());
    }

    #[test]
    fn every_state_parses_back_from_its_name() {
        for s in CaseStatus::ALL {
            assert_eq!(s.as_str().parse::<CaseStatus>().unwrap(), *s);
        }
        for s in ActionStatus::ALL {
            assert_eq!(s.as_str().parse::<ActionStatus>().unwrap(), *s);
        }
        for s in ReplyStatus::ALL {
            assert_eq!(s.as_str().parse::<ReplyStatus>().unwrap(), *s);
        }
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>().unwrap(), *s);
        }
        assert_eq!(parse_language("de").unwrap(), Language::De);
        assert!(parse_language("it").is_err());
    }
}
