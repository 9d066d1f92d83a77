//! The mailbox lease: with several instances on one PostgreSQL, exactly one
//! reads the mailbox. PostgreSQL is the coordinator (a session advisory
//! lock, held by a connection the lease owns); SQLite serves one instance,
//! so its lease is always granted.
//!
//! Never waits: `try_lease_mailbox` answers at once. `release` lets go at
//! once; dropping the lease closes its connection, which releases the lock
//! too. Fails with [`StoreError`](super::StoreError) when no connection can
//! be had.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::error::db;
use super::{Db, Result, Store};

/// Proof that this instance holds the mailbox; drop it to let go.
#[derive(Debug)]
pub struct MailboxLease {
    /// The connection holding the advisory lock (PostgreSQL only).
    conn: Option<PoolConnection<Postgres>>,
}

impl Store {
    /// Tries to become the one instance that reads the mailbox `key`
    /// (any stable number, e.g. one per mailbox). `None` when another
    /// instance holds it.
    pub async fn try_lease_mailbox(&self, key: i64) -> Result<Option<MailboxLease>> {
        match &self.db {
            Db::Sqlite(_) => Ok(Some(MailboxLease { conn: None })),
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(db("lease the mailbox"))?;
                let granted: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db("lease the mailbox"))?;
                Ok(granted.then_some(MailboxLease { conn: Some(conn) }))
            }
        }
    }
}

impl MailboxLease {
    /// Lets go of the mailbox now, so another instance can take it at once.
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await
                .map_err(db("release the mailbox"))?;
        }
        Ok(())
    }
}

impl Drop for MailboxLease {
    fn drop(&mut self) {
        // Returning the connection to the pool would keep the session, and
        // the lock, alive; detaching it closes the session instead.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
