//! Send attempts of replies: the record that makes delivery at most once.
//!
//! `begin_reply_attempts` commits a row per reply before the mail server is called;
//! `finish_repl*` records the outcome and removes the row in one
//! transaction. Finding a row already there means a previous process died
//! between handing the reply over and recording it. Fails with
//! [`StoreError`](super::StoreError).

use chrono::{DateTime, Utc};

use super::error::db;
use super::{Result, Store, Tx, on_tx};

impl Store {
    /// Records that replies `ids` are about to be sent, in one
    /// transaction. For each, in order, `false` when an earlier attempt was
    /// started and never finished: its outcome is unknown.
    pub async fn begin_reply_attempts(&self, ids: &[i64], at: DateTime<Utc>) -> Result<Vec<bool>> {
        // A transaction of its own, so that it takes its turn with the
        // other writers (see `Store::begin`).
        let mut tx = self.begin().await?;
        let mut fresh = Vec::with_capacity(ids.len());
        for &id in ids {
            let inserted = on_tx!(tx, conn => {
                sqlx::query("INSERT INTO reply_attempts (reply_id, started_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(db("begin a reply attempt"))?;
            fresh.push(inserted == 1);
        }
        tx.commit().await?;
        Ok(fresh)
    }

    /// The mail server accepted replies `ids`: recorded in one transaction.
    pub async fn finish_replies_sent(&self, ids: &[i64], at: DateTime<Utc>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for &id in ids {
            tx.mark_reply_sent(id, at).await?;
            tx.end_reply_attempt(id).await?;
        }
        tx.commit().await
    }

    /// Reply `id` was not (or may not have been) delivered; see
    /// [`Tx::mark_reply_failed`] for `permanent`.
    pub async fn finish_reply_failed(&self, id: i64, error: &str, permanent: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.mark_reply_failed(id, error, permanent).await?;
        tx.end_reply_attempt(id).await?;
        tx.commit().await
    }
}

impl Tx {
    async fn end_reply_attempt(&mut self, id: i64) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM reply_attempts WHERE reply_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("end a reply attempt"))?;
        Ok(())
    }
}
