//! The store: the only place with SQL. One [`Store`] over SQLite (embedded
//! default, one file) or PostgreSQL (several instances), chosen by URL.
//!
//! Takes: a database URL (`sqlite://PATH`, created on first use, WAL,
//! busy timeout, foreign keys on; or `postgres://…`). Gives: messages
//! (idempotent ingest), cases with their status history, actions, the reply
//! outbox, the ledger mirror (wallet facts for the policy) and the IMAP
//! checkpoint; the reviewers' console's accounts, sign-in attempts,
//! sessions, tokens, claims, audit log and queue listing; a [`Tx`] so that
//! a decision's writes land together; the ledger import ([`import`]); and
//! replay's read-only batch reads (`replay.rs`).
//!
//! Both backends run the SAME SQL text (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING`): the `on_pool!` / `on_tx!` macros dispatch one body to
//! whichever pool or transaction is open, and rows are read as tuples, so
//! there is no second implementation to drift. The schemas live in
//! `migrations/sqlite` and `migrations/postgres`, numbered in step and
//! embedded in the binary.
//!
//! Never: decides anything, calls the clock (times are passed in), or
//! swallows a database error. Fails with [`StoreError`], whose
//! `is_transient()` says whether a retry can help; a duplicate message is
//! not an error, a lost compare-and-set is [`StoreError::Conflict`].

mod accounts;
mod actions;
mod attempts;
mod cases;
mod deadlines;
mod decisions;
mod error;
pub mod import;
mod lease;
mod ledger;
mod lifecycle;
mod messages;
mod outbox;
mod payments;
mod privacy;
mod records;
mod replay;
mod reports;
mod reviewers;
#[cfg(test)]
mod tests;

use sqlx::migrate::{MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, Postgres, SqlSafeStr, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use accounts::{
    AccessEnded, AdmittedAttempt, ApiTokenInfo, LoginAttempt, LoginLimit, NewSession,
    ReviewerSummary, Session, TokenHolder,
};
pub use actions::case_credit_id;
pub use deadlines::{AlertKind, DeadlineCase, DeadlineFlags, WaitingCase};
pub use decisions::{DecisionBasis, EngineDecision, NewEngineDecision, ShadowAgreement};
pub use error::StoreError;
pub use import::{ImportReport, RejectedLine, import_jsonl};
pub use lease::MailboxLease;
pub use lifecycle::refund_key;
pub use payments::{
    DeliveryState, HeldReply, HeldRole, HeldState, LedgerOrderMoney, LedgerRefundStatus,
    PaymentOutcome, PaymentRow, PaymentState, RefundJob, WebhookDelivery,
};
pub use privacy::{ERASED, Erasure};
pub use records::{
    ActionStatus, Actor, Backend, CaseEvent, CaseFilter, CaseId, CaseOrder, CaseRow, CaseStatus,
    CaseSummary, Inserted, MailboxCursor, MessageStatus, NewCase, NewMessage, NewReply, RawRemoval,
    ReplyStatus, StoredAction, StoredMessage, StoredReply,
};
pub use replay::{
    CashRefundRecord, DecidedMessage, OrderMatch, PeopleDecision, ReplayScope, ThreadMessage,
    WalletHistory, address_key,
};
pub use reports::{CaseCount, PeriodFacts, PeriodVolume, QueueGauges, ReviewerTally};
pub use reviewers::{
    AuditAction, AuditEntry, QueueFilter, QueueItem, QueuePage, Reviewer, ReviewerRole,
};

use error::db;

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The embedded migrations, in step: (version, description, sqlite, postgres).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "payments",
        include_str!("../../migrations/sqlite/0002_payments.sql"),
        include_str!("../../migrations/postgres/0002_payments.sql"),
    ),
    (
        3,
        "console",
        include_str!("../../migrations/sqlite/0003_console.sql"),
        include_str!("../../migrations/postgres/0003_console.sql"),
    ),
    (
        4,
        "deadlines",
        include_str!("../../migrations/sqlite/0004_deadlines.sql"),
        include_str!("../../migrations/postgres/0004_deadlines.sql"),
    ),
    (
        5,
        "reply attempts",
        include_str!("../../migrations/sqlite/0005_reply_attempts.sql"),
        include_str!("../../migrations/postgres/0005_reply_attempts.sql"),
    ),
    (
        6,
        "lifecycle",
        include_str!("../../migrations/sqlite/0006_lifecycle.sql"),
        include_str!("../../migrations/postgres/0006_lifecycle.sql"),
    ),
    (
        7,
        "reviewer admin",
        include_str!("../../migrations/sqlite/0007_reviewer_admin.sql"),
        include_str!("../../migrations/postgres/0007_reviewer_admin.sql"),
    ),
    (
        8,
        "generation refunded_at",
        include_str!("../../migrations/sqlite/0008_generation_refunded_at.sql"),
        include_str!("../../migrations/postgres/0008_generation_refunded_at.sql"),
    ),
    (
        9,
        "engine decisions",
        include_str!("../../migrations/sqlite/0009_engine_decisions.sql"),
        include_str!("../../migrations/postgres/0009_engine_decisions.sql"),
    ),
    (
        12,
        "desk data",
        include_str!("../../migrations/sqlite/0012_desk_data.sql"),
        include_str!("../../migrations/postgres/0012_desk_data.sql"),
    ),
    (
        13,
        "desk at scale",
        include_str!("../../migrations/sqlite/0013_desk_scale.sql"),
        include_str!("../../migrations/postgres/0013_desk_scale.sql"),
    ),
    (
        16,
        "decision verification",
        include_str!("../../migrations/sqlite/0016_decision_verification.sql"),
        include_str!("../../migrations/postgres/0016_decision_verification.sql"),
    ),
    (
        17,
        "message parts",
        include_str!("../../migrations/sqlite/0017_message_parts.sql"),
        include_str!("../../migrations/postgres/0017_message_parts.sql"),
    ),
];

/// How long a SQLite writer waits for the lock before failing with BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The
/// body is compiled once per backend, with the same SQL text.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the open transaction's connection
/// (`&mut SqliteConnection` or `&mut PgConnection`); use `&mut *$conn` as
/// the executor of each query.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut $tx.inner {
            $crate::store::TxInner::Sqlite(t) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::store::TxInner::Postgres(t) => {
                let $conn: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

/// The database, shared: cloning is cheap (the pools are reference counted).
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite has one writer at a time. This process's transactions queue
    /// here for it (fairly, without polling) instead of in SQLite's busy
    /// handler, which sleeps 1 to 100 ms between tries: with the mailbox,
    /// the outbox's several connections and the console writing at once,
    /// those sleeps, not the writes, would set the pace.
    writers: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction. All of one decision's writes go through one `Tx`
/// and land together on [`Tx::commit`]; dropping it rolls back.
pub struct Tx {
    inner: TxInner,
    /// This process's turn to write (SQLite), released with the transaction.
    _turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub(crate) enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Store {
    /// Opens the database at `url`, applies the embedded migrations and
    /// indexes for search any message not indexed yet (after the migration
    /// that brought the index, every message stored before it).
    /// `sqlite://PATH` creates the file on first use (WAL journal, busy
    /// timeout, foreign keys on); `postgres://…` connects to a server.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = Store::open(url).await?;
        store.migrate().await?;
        let indexed = store.index_pending_messages().await?;
        if indexed > 0 {
            tracing::info!(messages = indexed, "indexed stored messages for search");
        }
        Ok(store)
    }

    /// Opens the database at `url` without migrating it.
    pub async fn open(url: &str) -> Result<Store> {
        let connect_error = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                // Deleted bytes (raw mail after retention or erasure) are
                // overwritten where that costs no extra I/O, instead of
                // lingering in free pages of the file.
                .pragma("secure_delete", "fast");
            // Every connection to `sqlite::memory:` is its own database, so
            // an in-memory store must keep to one connection.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { 4 })
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(connect_error)?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(connect_error)?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl { url: redact(url) });
        };
        Ok(Store {
            db,
            writers: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Opens the database at `url` to read only, migrating nothing: a
    /// SQLite file is opened read-only (and must exist); PostgreSQL
    /// sessions run with `default_transaction_read_only`. Any write is
    /// refused by the database itself (`refundd replay`).
    pub async fn open_read_only(url: &str) -> Result<Store> {
        let connect_error = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .read_only(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(connect_error)?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(connect_error)?
                .options([("default_transaction_read_only", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(connect_error)?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl { url: redact(url) });
        };
        Ok(Store {
            db,
            writers: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Applies the embedded migrations that are not applied yet. Safe to
    /// run from several instances at once (PostgreSQL takes an advisory
    /// lock while migrating).
    pub async fn migrate(&self) -> Result<()> {
        let backend = self.backend();
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => *sqlite,
                    Backend::Postgres => *postgres,
                };
                sqlx::migrate::Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        match &self.db {
            Db::Sqlite(pool) => migrator.run(pool).await,
            Db::Postgres(pool) => migrator.run(pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Opens a transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that a transaction which reads and then
    /// writes waits for other writers instead of failing half-way.
    ///
    /// On SQLite it first waits for this process's turn to write (see
    /// `writers`); after [`SQLITE_BUSY_TIMEOUT`] without one it goes on
    /// and leaves the waiting to SQLite, so a caller that holds a
    /// transaction while opening another fails as before instead of
    /// hanging.
    pub async fn begin(&self) -> Result<Tx> {
        let (inner, turn) = match &self.db {
            Db::Sqlite(pool) => {
                let turn =
                    tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.writers.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok);
                let tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(db("begin a transaction"))?;
                (TxInner::Sqlite(tx), turn)
            }
            Db::Postgres(pool) => (
                TxInner::Postgres(pool.begin().await.map_err(db("begin a transaction"))?),
                None,
            ),
        };
        Ok(Tx { inner, _turn: turn })
    }
}

impl Tx {
    /// Makes every write of this transaction durable, all or nothing.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await,
            TxInner::Postgres(t) => t.commit().await,
        }
        .map_err(db("commit a transaction"))
    }

    /// Undoes every write of this transaction (dropping it does the same).
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await,
            TxInner::Postgres(t) => t.rollback().await,
        }
        .map_err(db("roll back a transaction"))
    }
}

/// The URL without its password, for error messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_an_error_message() {
        for (url, shown) in [
            (
                "postgres://bob:s3cret@db:5432/x",
                "postgres://bob:***@db:5432/x",
            ),
            ("postgres://bob@db/x", "postgres://bob@db/x"),
            ("sqlite://refundd.db", "sqlite://refundd.db"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[tokio::test]
    async fn an_in_memory_store_is_one_database_across_calls() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let cursor = MailboxCursor {
            folder: "INBOX".into(),
            uidvalidity: 7,
            last_uid: 3,
        };
        store.save_mailbox_cursor(&cursor).await.unwrap();
        assert_eq!(store.mailbox_cursor("INBOX").await.unwrap(), Some(cursor));
        assert_eq!(store.backend(), Backend::Sqlite);
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let err = Store::connect("mysql://x/y").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
        assert!(err.to_string().contains("mysql://x/y"));
    }
}
