//! Messages: every email as received, stored once (by Message-ID or by
//! bytes), and the pipeline's work list over them; plus the IMAP
//! checkpoint per folder.
//!
//! Never an error for a duplicate: [`Inserted::Duplicate`] names the row
//! that already holds it. Fails with [`StoreError`] on database errors.

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{CaseId, Inserted, MailboxCursor, NewMessage, StoredMessage};
use super::{Result, Store, StoreError, Tx, on_pool, on_tx};

/// Columns of a stored message, in `message_columns!()` order.
type MessageTuple = (
    i64,
    Option<String>,
    String,
    Vec<u8>,
    DateTime<Utc>,
    String,
    String,
    Option<String>,
    Option<i64>,
);

/// The columns of `MessageTuple`, as a literal for `concat!`.
macro_rules! message_columns {
    () => {
        "id, message_id, sha256, raw, received_at, source, status, error, case_id"
    };
}

fn message_from(t: MessageTuple) -> Result<StoredMessage> {
    let (id, message_id, sha256, raw, received_at, source, status, error, case_id) = t;
    Ok(StoredMessage {
        id,
        message_id,
        sha256,
        raw,
        received_at,
        source,
        status: status.parse().map_err(corrupt("message status"))?,
        error,
        case_id: case_id.map(CaseId),
    })
}

impl Store {
    /// Stores an email unless the same Message-ID or the same bytes
    /// (SHA-256) are already stored. Race-safe: two instances inserting the
    /// same message at once get one `New` and one `Duplicate`.
    pub async fn insert_message(&self, message: &NewMessage) -> Result<Inserted> {
        let size = i64::try_from(message.raw.len()).unwrap_or(i64::MAX);
        let inserted: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO messages (message_id, sha256, raw, size, received_at, source, status)
                 VALUES ($1, $2, $3, $4, $5, $6, 'received')
                 ON CONFLICT DO NOTHING
                 RETURNING id",
            )
            .bind(&message.message_id)
            .bind(&message.sha256)
            .bind(&message.raw)
            .bind(size)
            .bind(message.received_at)
            .bind(&message.source)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("insert a message"))?;
        if let Some(id) = inserted {
            return Ok(Inserted::New(id));
        }
        // The conflicting row is committed by now: ON CONFLICT waited for it.
        let existing: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM messages
                 WHERE sha256 = $2 OR ($1 IS NOT NULL AND message_id = $1)
                 ORDER BY id LIMIT 1",
            )
            .bind(&message.message_id)
            .bind(&message.sha256)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("find a duplicate message"))?;
        existing
            .map(Inserted::Duplicate)
            .ok_or_else(|| StoreError::Conflict {
                what: "message",
                id: message.sha256.clone(),
                detail: "insert conflicted but no duplicate is visible".into(),
            })
    }

    /// Messages not yet through the pipeline, oldest received first.
    pub async fn unprocessed_messages(&self, limit: i64) -> Result<Vec<StoredMessage>> {
        let rows: Vec<MessageTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ", message_columns!(), " FROM messages
                 WHERE status = 'received'
                 ORDER BY received_at, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list unprocessed messages"))?;
        rows.into_iter().map(message_from).collect()
    }

    /// Messages the pipeline gave up on (status `failed`), oldest first:
    /// what an operator must look at.
    pub async fn failed_messages(&self, limit: i64) -> Result<Vec<StoredMessage>> {
        let rows: Vec<MessageTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ", message_columns!(), " FROM messages
                 WHERE status = 'failed'
                 ORDER BY received_at, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list failed messages"))?;
        rows.into_iter().map(message_from).collect()
    }

    /// One stored message.
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>> {
        let row: Option<MessageTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ", message_columns!(), " FROM messages WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read a message"))?;
        row.map(message_from).transpose()
    }

    /// The messages of a case, oldest first.
    pub async fn case_messages(&self, case_id: CaseId) -> Result<Vec<StoredMessage>> {
        let rows: Vec<MessageTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ", message_columns!(), " FROM messages
                 WHERE case_id = $1 ORDER BY id"
            ))
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list a case's messages"))?;
        rows.into_iter().map(message_from).collect()
    }

    /// Records that the pipeline could not handle a message, and why; it
    /// leaves the work list. The reason is words for an operator.
    pub async fn mark_message_failed(&self, id: i64, reason: &str) -> Result<()> {
        let done = on_pool!(self, pool => {
            sqlx::query("UPDATE messages SET status = 'failed', error = $2 WHERE id = $1")
                .bind(id)
                .bind(reason)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("mark a message failed"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "message",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The IMAP checkpoint of `folder`, if one was saved.
    pub async fn mailbox_cursor(&self, folder: &str) -> Result<Option<MailboxCursor>> {
        let row: Option<(String, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT folder, uidvalidity, last_uid FROM mailbox_cursors WHERE folder = $1",
            )
            .bind(folder)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read a mailbox cursor"))?;
        Ok(row.map(|(folder, uidvalidity, last_uid)| MailboxCursor {
            folder,
            uidvalidity,
            last_uid,
        }))
    }

    /// Saves the IMAP checkpoint of a folder (replacing the previous one).
    pub async fn save_mailbox_cursor(&self, cursor: &MailboxCursor) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO mailbox_cursors (folder, uidvalidity, last_uid) VALUES ($1, $2, $3)
                 ON CONFLICT (folder) DO UPDATE
                 SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
            )
            .bind(&cursor.folder)
            .bind(cursor.uidvalidity)
            .bind(cursor.last_uid)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("save a mailbox cursor"))?;
        Ok(())
    }
}

impl Tx {
    /// Attaches a message to a case and marks it processed (it leaves the
    /// work list).
    pub async fn attach_message(&mut self, message_id: i64, case_id: CaseId) -> Result<()> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE messages SET status = 'processed', error = NULL, case_id = $2
                 WHERE id = $1",
            )
            .bind(message_id)
            .bind(case_id.0)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("attach a message to a case"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "message",
                id: message_id.to_string(),
            });
        }
        Ok(())
    }

    /// Takes the oldest received message for this transaction. On
    /// PostgreSQL the row stays locked until commit and other instances
    /// skip it (`FOR UPDATE SKIP LOCKED`); SQLite's transaction already
    /// holds the single write lock.
    pub async fn claim_next_message(&mut self) -> Result<Option<StoredMessage>> {
        let row: Option<MessageTuple> = match &mut self.inner {
            super::TxInner::Sqlite(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages
                 WHERE status = 'received' ORDER BY received_at, id LIMIT 1"
                ))
                .fetch_optional(&mut **t)
                .await
            }
            super::TxInner::Postgres(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages
                 WHERE status = 'received' ORDER BY received_at, id LIMIT 1
                 FOR UPDATE SKIP LOCKED"
                ))
                .fetch_optional(&mut **t)
                .await
            }
        }
        .map_err(db("claim a message"))?;
        row.map(message_from).transpose()
    }
}
