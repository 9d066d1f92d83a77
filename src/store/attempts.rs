//! Send attempts of replies: the record that makes delivery at most once.
//!
//! `begin_reply_attempts` commits a row per reply before the mail server is called;
//! `finish_repl*` records the outcome and removes the row in one
//! transaction. Finding a row already there means a previous process died
//! between handing the reply over and recording it. Fails with
//! [`StoreError`](super::StoreError).

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use std::collections::HashSet;

use super::error::db;
use super::outbox::not_queued;
use super::replay::placeholders;
use super::{Result, Store, Tx, on_tx};

impl Store {
    /// Records that replies `ids` are about to be sent, in one
    /// transaction and one statement. For each, in order, `false` when an
    /// earlier attempt was started and never finished: its outcome is
    /// unknown.
    pub async fn begin_reply_attempts(&self, ids: &[i64], at: DateTime<Utc>) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<String> = (2..ids.len() + 2).map(|i| format!("(${i}, $1)")).collect();
        let sql = format!(
            "INSERT INTO reply_attempts (reply_id, started_at) VALUES {}
             ON CONFLICT DO NOTHING RETURNING reply_id",
            rows.join(", ")
        );
        // A transaction of its own, so that it takes its turn with the
        // other writers (see `Store::begin`).
        let mut tx = self.begin().await?;
        let started: Vec<i64> = on_tx!(tx, conn => {
            let mut query = sqlx::query_scalar(AssertSqlSafe(sql)).bind(at);
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(&mut *conn).await
        })
        .map_err(db("begin reply attempts"))?;
        tx.commit().await?;
        let started: HashSet<i64> = started.into_iter().collect();
        Ok(ids.iter().map(|id| started.contains(id)).collect())
    }

    /// The mail server accepted replies `ids`: recorded in one transaction
    /// (two statements, whatever their number). Fails, recording nothing,
    /// when one of them is not queued.
    pub async fn finish_replies_sent(&self, ids: &[i64], at: DateTime<Utc>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        tx.mark_replies_sent(ids, at).await?;
        tx.end_reply_attempts(ids).await?;
        tx.commit().await
    }

    /// Reply `id` was not (or may not have been) delivered; see
    /// [`Tx::mark_reply_failed`] for `permanent`.
    pub async fn finish_reply_failed(&self, id: i64, error: &str, permanent: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.mark_reply_failed(id, error, permanent).await?;
        tx.end_reply_attempts(&[id]).await?;
        tx.commit().await
    }
}

impl Tx {
    /// [`Tx::mark_reply_sent`] for several replies in one statement.
    async fn mark_replies_sent(&mut self, ids: &[i64], at: DateTime<Utc>) -> Result<()> {
        let sql = format!(
            "UPDATE replies SET status = 'sent', sent_at = $1, attempts = attempts + 1,
                                last_error = NULL
             WHERE status = 'queued' AND id IN ({})
             RETURNING id",
            placeholders(2, ids.len())
        );
        let sent: Vec<i64> = on_tx!(self, conn => {
            let mut query = sqlx::query_scalar(AssertSqlSafe(sql)).bind(at);
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(&mut *conn).await
        })
        .map_err(db("mark replies sent"))?;
        match ids.iter().find(|id| !sent.contains(id)) {
            Some(&id) => Err(not_queued(id)),
            None => Ok(()),
        }
    }

    async fn end_reply_attempts(&mut self, ids: &[i64]) -> Result<()> {
        let sql = format!(
            "DELETE FROM reply_attempts WHERE reply_id IN ({})",
            placeholders(1, ids.len())
        );
        on_tx!(self, conn => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.execute(&mut *conn).await.map(|done| done.rows_affected())
        })
        .map_err(db("end reply attempts"))?;
        Ok(())
    }
}
