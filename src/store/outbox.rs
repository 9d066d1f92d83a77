//! The reply outbox: rendered replies queued in the decision's
//! transaction, then sent by a separate step that records each attempt.
//! Also the loop guard's count of recent replies to one address.
//!
//! A transition is a compare-and-set on `status = 'queued'`: marking a
//! reply that is no longer queued is [`StoreError::Conflict`], so a reply
//! can never be recorded as sent twice. Fails with [`StoreError`].

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{CaseId, NewReply, StoredReply};
use super::{Result, Store, StoreError, Tx, on_pool, on_tx};

/// Columns of a reply, in `reply_columns!()` order.
type ReplyTuple = (
    i64,
    i64,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// The columns of `ReplyTuple`, as a literal for `concat!`.
macro_rules! reply_columns {
    () => {
        "id, case_id, message_id, to_addr, subject, raw, status, attempts, last_error,
         created_at, sent_at"
    };
}

fn reply_from(t: ReplyTuple) -> Result<StoredReply> {
    let (
        id,
        case_id,
        message_id,
        to_addr,
        subject,
        raw,
        status,
        attempts,
        last_error,
        created_at,
        sent_at,
    ) = t;
    Ok(StoredReply {
        id,
        case_id: CaseId(case_id),
        message_id,
        to_addr,
        subject,
        raw,
        status: status.parse().map_err(corrupt("reply status"))?,
        attempts,
        last_error,
        created_at,
        sent_at,
    })
}

pub(super) fn not_queued(id: i64) -> StoreError {
    StoreError::Conflict {
        what: "reply",
        id: id.to_string(),
        detail: "it is not queued (already sent, failed or unknown)".into(),
    }
}

impl Tx {
    /// Queues a rendered reply; returns its outbox id.
    pub async fn enqueue_reply(&mut self, reply: &NewReply) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO replies (case_id, message_id, to_addr, subject, raw, status,
                                      attempts, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6)
                 RETURNING id",
            )
            .bind(reply.case_id.0)
            .bind(&reply.message_id)
            .bind(&reply.to_addr)
            .bind(&reply.subject)
            .bind(&reply.raw)
            .bind(reply.at)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("queue a reply"))
    }

    /// Takes the oldest queued reply for this transaction. On PostgreSQL
    /// the row stays locked until commit and other instances skip it
    /// (`FOR UPDATE SKIP LOCKED`): send, mark, commit.
    pub async fn claim_queued_reply(&mut self) -> Result<Option<StoredReply>> {
        let row: Option<ReplyTuple> = match &mut self.inner {
            super::TxInner::Sqlite(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    reply_columns!(),
                    " FROM replies WHERE status = 'queued' ORDER BY id LIMIT 1"
                ))
                .fetch_optional(&mut **t)
                .await
            }
            super::TxInner::Postgres(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    reply_columns!(),
                    " FROM replies WHERE status = 'queued' ORDER BY id LIMIT 1
                  FOR UPDATE SKIP LOCKED"
                ))
                .fetch_optional(&mut **t)
                .await
            }
        }
        .map_err(db("claim a queued reply"))?;
        row.map(reply_from).transpose()
    }

    /// Records that a queued reply was handed to the mail server.
    pub async fn mark_reply_sent(&mut self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE replies SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                                    last_error = NULL
                 WHERE id = $1 AND status = 'queued'",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("mark a reply sent"))?;
        if done == 0 {
            return Err(not_queued(id));
        }
        Ok(())
    }

    /// Records a failed send attempt. A `permanent` failure (the server
    /// refused the recipient) ends the reply as `failed`; otherwise it
    /// stays queued for the next attempt.
    pub async fn mark_reply_failed(&mut self, id: i64, error: &str, permanent: bool) -> Result<()> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE replies
                 SET status = CASE WHEN $3 THEN 'failed' ELSE 'queued' END,
                     attempts = attempts + 1, last_error = $2
                 WHERE id = $1 AND status = 'queued'",
            )
            .bind(id)
            .bind(error)
            .bind(permanent)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("mark a reply failed"))?;
        if done == 0 {
            return Err(not_queued(id));
        }
        Ok(())
    }
}

impl Store {
    /// Queued replies, oldest first.
    pub async fn queued_replies(&self, limit: i64) -> Result<Vec<StoredReply>> {
        let rows: Vec<ReplyTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                reply_columns!(),
                " FROM replies WHERE status = 'queued' ORDER BY id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list queued replies"))?;
        rows.into_iter().map(reply_from).collect()
    }

    /// Records that a queued reply was sent (see [`Tx::mark_reply_sent`]).
    pub async fn mark_reply_sent(&self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.mark_reply_sent(id, at).await?;
        tx.commit().await
    }

    /// Records a failed send attempt (see [`Tx::mark_reply_failed`]).
    pub async fn mark_reply_failed(&self, id: i64, error: &str, permanent: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.mark_reply_failed(id, error, permanent).await?;
        tx.commit().await
    }

    /// The replies of a case, oldest first.
    pub async fn replies_for_case(&self, case_id: CaseId) -> Result<Vec<StoredReply>> {
        let rows: Vec<ReplyTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                reply_columns!(),
                " FROM replies WHERE case_id = $1 ORDER BY id"
            ))
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list a case's replies"))?;
        rows.into_iter().map(reply_from).collect()
    }

    /// How many replies (queued, sent or failed) were queued to `addr`
    /// (case-insensitive) at or after `since`: the loop guard's count.
    pub async fn count_replies_to_since(&self, addr: &str, since: DateTime<Utc>) -> Result<i64> {
        on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM replies WHERE lower(to_addr) = lower($1) AND created_at >= $2",
            )
            .bind(addr.trim())
            .bind(since)
            .fetch_one(pool)
            .await
        })
        .map_err(db("count recent replies"))
    }
}
