//! `StoreError`: what can go wrong talking to the database, and whether a
//! retry can help.

use crate::domain::UnknownName;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL `{url}`: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl { url: String },

    /// Could not open the database (the URL is shown without password).
    #[error("cannot open the database at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// Applying the embedded migrations failed.
    #[error("cannot migrate the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// A query failed; `op` names what the store was doing.
    #[error("database error while trying to {op}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// The row to change does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },

    /// A compare-and-set lost: someone else changed the row first (or it is
    /// no longer in the state the change expects). Reload and decide again.
    #[error("{what} {id} changed concurrently: {detail}")]
    Conflict {
        what: &'static str,
        id: String,
        detail: String,
    },

    /// A cash refund would return more than is left of its order: what the
    /// ledger already shows refunded plus what other approvals still have
    /// pending. Decide again with the fresh numbers.
    #[error("order {order_id} has {left} minor units left to refund, {asked} were approved")]
    OverRefund {
        order_id: String,
        left: i64,
        asked: i64,
    },

    /// The caller passed something the store cannot record (a programming
    /// error, e.g. a cash refund where a wallet credit is required).
    #[error("cannot record {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// The ledger import's input could not be read (not a bad line: the
    /// reader itself failed, or the text is not UTF-8).
    #[error("cannot read line {line_no} of the ledger import")]
    ImportRead {
        line_no: u64,
        #[source]
        source: std::io::Error,
    },

    /// A stored value does not parse (a state name, a JSON column).
    #[error("stored {what} is not valid: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl StoreError {
    /// Whether retrying the same operation later can succeed: the pool timed
    /// out, the connection broke, the database was busy or chose us as a
    /// deadlock / serialization victim.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { source, .. } | StoreError::Database { source, .. } => {
                sqlx_is_transient(source)
            }
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(source)) => {
                sqlx_is_transient(source)
            }
            StoreError::UnsupportedUrl { .. }
            | StoreError::Migrate(_)
            | StoreError::NotFound { .. }
            | StoreError::Conflict { .. }
            | StoreError::OverRefund { .. }
            | StoreError::Invalid { .. }
            | StoreError::ImportRead { .. }
            | StoreError::Corrupt { .. } => false,
        }
    }

    /// Whether the error is a unique-key violation (a duplicate id or key).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database {
                source: sqlx::Error::Database(db),
                ..
            } => db.is_unique_violation(),
            _ => false,
        }
    }
}

fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    }
}

/// Database error codes worth a retry. SQLite reports numeric (extended)
/// result codes: the low byte 5 is SQLITE_BUSY, 6 SQLITE_LOCKED.
/// PostgreSQL reports SQLSTATEs: class 08 connection exceptions, 40001
/// serialization failure, 40P01 deadlock, 53300 too many connections,
/// 57P01..57P03 the server shutting down or starting.
fn transient_code(code: &str) -> bool {
    if code.len() < 5
        && let Ok(n) = code.parse::<i32>()
    {
        return matches!(n & 0xff, 5 | 6);
    }
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
        )
}

/// Maps a sqlx error to [`StoreError::Database`] naming the operation.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// Maps a stored name outside its vocabulary to [`StoreError::Corrupt`].
pub(crate) fn corrupt(what: &'static str) -> impl Fn(UnknownName) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_deadlock_and_connection_codes_are_worth_a_retry() {
        for (code, transient) in [
            ("5", true),     // SQLITE_BUSY
            ("517", true),   // SQLITE_BUSY_SNAPSHOT
            ("6", true),     // SQLITE_LOCKED
            ("19", false),   // SQLITE_CONSTRAINT
            ("2067", false), // SQLITE_CONSTRAINT_UNIQUE
            ("40001", true),
            ("40P01", true),
            ("08006", true),
            ("57P01", true),
            ("23505", false), // unique_violation
            ("42P01", false), // undefined_table
        ] {
            assert_eq!(transient_code(code), transient, "{code}");
        }
    }

    #[test]
    fn a_pool_timeout_is_transient_and_a_conflict_is_not() {
        let timeout = StoreError::Database {
            op: "read",
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(timeout.is_transient());
        let conflict = StoreError::Conflict {
            what: "case",
            id: "R-1".into(),
            detail: "version 2 expected".into(),
        };
        assert!(!conflict.is_transient());
        let missing = StoreError::Database {
            op: "read",
            source: sqlx::Error::RowNotFound,
        };
        assert!(!missing.is_transient());
    }
}

impl From<crate::queue::lifecycle::LifecycleError> for StoreError {
    /// A move the lifecycle table forbids cannot be recorded.
    fn from(e: crate::queue::lifecycle::LifecycleError) -> Self {
        StoreError::Invalid {
            what: "a case transition",
            reason: e.to_string(),
        }
    }
}
