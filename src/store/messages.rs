//! Messages: every email as received, stored once (by Message-ID or by
//! bytes), and the pipeline's work list over them; the search index of
//! what they say; the removal of their raw bytes (retention, erasure);
//! plus the IMAP checkpoint per folder.
//!
//! A message is indexed for the queue's search in the transaction that
//! stores it, from [`parse::search::message_words`] of its bytes (decoded
//! text, never raw MIME); [`Store::index_pending_messages`] catches up on
//! messages stored before the index existed. SQLite keeps the index in a
//! contentless FTS5 table, PostgreSQL in a `tsvector` with a GIN index
//! (migration 0012 says why).
//!
//! Never an error for a duplicate: [`Inserted::Duplicate`] names the row
//! that already holds it. Fails with [`StoreError`] on database errors.

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{CaseId, Inserted, MailboxCursor, NewMessage, RawRemoval, StoredMessage};
use super::{Result, Store, StoreError, Tx, TxInner, on_pool, on_tx};
use crate::parse::search::{SearchWords, message_words};

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
    Option<String>,
    Option<DateTime<Utc>>,
    i32,
);

/// The columns of `MessageTuple`, as a literal for `concat!`.
macro_rules! message_columns {
    () => {
        "id, message_id, sha256, raw, received_at, source, status, error, case_id,
         raw_removed, raw_removed_at, raw_parts"
    };
}

/// A message larger than this keeps its bytes in `message_parts`, in
/// parts of this size, and `messages.raw` stays empty: SQLite copies a
/// value it binds, builds its record, reads overflow pages and sorts whole
/// values, and the drivers buffer whole rows, so a 25 MB message held in
/// one column would be in memory six times over; in parts it is there once
/// (plus one part). Small mail, nearly all of it, stays in one row.
pub(super) const RAW_PART_BYTES: usize = 1 << 20;

/// Appends parts `0..$parts` of message `$id` to `$whole` (a `Vec<u8>`),
/// one query per part, so that no more than one part is ever buffered.
/// `$executor` is a pool or `&mut *conn`; evaluates to a `sqlx::Result`.
macro_rules! read_parts {
    ($executor:expr, $id:expr, $parts:expr, $whole:expr) => {
        async {
            for part in 0..$parts {
                let bytes: Vec<u8> = sqlx::query_scalar(
                    "SELECT bytes FROM message_parts WHERE message_id = $1 AND part = $2",
                )
                .bind($id)
                .bind(part)
                .fetch_one($executor)
                .await?;
                $whole.extend_from_slice(&bytes);
            }
            Ok::<(), sqlx::Error>(())
        }
        .await
    };
}

/// A message's bytes: `raw` as read, or for a message kept in parts
/// (`parts > 0`, `raw` empty) a buffer for them.
fn raw_buffer(raw: Vec<u8>, parts: i32) -> Vec<u8> {
    match usize::try_from(parts) {
        Ok(parts) if parts > 0 => Vec::with_capacity(parts * RAW_PART_BYTES),
        _ => raw,
    }
}

/// A stored message as its row holds it, and how many parts of its bytes
/// are still to be read (0: `raw` is whole).
fn message_from(t: MessageTuple) -> Result<(StoredMessage, i32)> {
    let (
        id,
        message_id,
        sha256,
        raw,
        received_at,
        source,
        status,
        error,
        case_id,
        removed,
        removed_at,
        raw_parts,
    ) = t;
    let removed = match removed {
        Some(why) => Some((
            why.parse::<RawRemoval>()
                .map_err(corrupt("message raw removal"))?,
            removed_at.unwrap_or(received_at),
        )),
        None => None,
    };
    let message = StoredMessage {
        id,
        message_id,
        sha256,
        raw,
        received_at,
        source,
        status: status.parse().map_err(corrupt("message status"))?,
        error,
        case_id: case_id.map(CaseId),
        removed,
    };
    Ok((message, raw_parts))
}

/// How many messages one catch-up transaction indexes.
const INDEX_BATCH: i64 = 200;

impl Store {
    /// Stores an email unless the same Message-ID or the same bytes
    /// (SHA-256) are already stored. Race-safe: two instances inserting the
    /// same message at once get one `New` and one `Duplicate`.
    /// The message's words go into the search index in the same
    /// transaction.
    pub async fn insert_message(&self, message: &NewMessage) -> Result<Inserted> {
        let mut inserted = self.insert_messages(std::slice::from_ref(message)).await?;
        inserted.pop().ok_or_else(|| StoreError::Conflict {
            what: "message",
            id: message.sha256.clone(),
            detail: "the insert reported nothing".into(),
        })
    }

    /// [`Store::insert_message`] for several messages in one transaction
    /// (one commit for a chunk of a mailbox pass): each is `New` or
    /// `Duplicate` (of a stored row, or of one earlier in `messages`), in
    /// the order given.
    pub async fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<Inserted>> {
        // Decoded before the transaction: SQLite's write lock is not held
        // while MIME is parsed.
        let words: Vec<SearchWords> = messages.iter().map(|m| message_words(&m.raw)).collect();
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(messages.len());
        for (message, words) in messages.iter().zip(&words) {
            results.push(tx.insert_message(message, words).await?);
        }
        tx.commit().await?;
        Ok(results)
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
        self.whole_messages(rows).await
    }

    /// Like [`Store::unprocessed_messages`], but stops before the bytes of
    /// the messages read would pass `max_bytes` (the first message always
    /// comes): a batch of large messages is not read whole into memory.
    pub async fn unprocessed_messages_within(
        &self,
        limit: i64,
        max_bytes: i64,
    ) -> Result<Vec<StoredMessage>> {
        let rows: Vec<MessageTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ", message_columns!(), " FROM messages
                 JOIN (SELECT id AS head_id,
                              SUM(COALESCE(size, 0)) OVER (ORDER BY received_at, id)
                                - COALESCE(size, 0) AS earlier
                         FROM messages WHERE status = 'received'
                        ORDER BY received_at, id LIMIT $1) AS head
                   ON head.head_id = messages.id
                 WHERE head.earlier < $2
                 ORDER BY received_at, id"
            ))
            .bind(limit)
            .bind(max_bytes)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list unprocessed messages"))?;
        self.whole_messages(rows).await
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
        self.whole_messages(rows).await
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
        Ok(self.whole_messages(row.into_iter().collect()).await?.pop())
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
        self.whole_messages(rows).await
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

    /// Messages as their rows hold them, with the bytes of those kept in
    /// parts read in.
    async fn whole_messages(&self, rows: Vec<MessageTuple>) -> Result<Vec<StoredMessage>> {
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let (mut message, parts) = message_from(row)?;
            message.raw = self.whole_raw(message.id, message.raw, parts).await?;
            messages.push(message);
        }
        Ok(messages)
    }

    /// A message's bytes from what its row held: `raw` itself, or, when
    /// they are kept in `parts` parts, the parts read one at a time.
    pub(super) async fn whole_raw(&self, id: i64, raw: Vec<u8>, parts: i32) -> Result<Vec<u8>> {
        let mut whole = raw_buffer(raw, parts);
        on_pool!(self, pool => read_parts!(pool, id, parts, whole))
            .map_err(db("read a message's parts"))?;
        Ok(whole)
    }

    /// Indexes, for the queue's search, every message not indexed yet
    /// whose bytes are still kept (those stored before the index existed,
    /// or left by a crash), in batches; returns how many. Runs at start
    /// ([`Store::connect`]); cheap when there is nothing to do.
    pub async fn index_pending_messages(&self) -> Result<u64> {
        let mut done = 0;
        loop {
            let rows: Vec<(i64, Vec<u8>, i32)> = on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT id, raw, raw_parts FROM messages
                     WHERE NOT search_indexed AND raw_removed IS NULL
                     ORDER BY id LIMIT $1",
                )
                .bind(INDEX_BATCH)
                .fetch_all(pool)
                .await
            })
            .map_err(db("list messages to index"))?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut words: Vec<(i64, SearchWords)> = Vec::with_capacity(rows.len());
            for (id, raw, parts) in rows {
                let raw = self.whole_raw(id, raw, parts).await?;
                words.push((id, message_words(&raw)));
            }
            let mut tx = self.begin().await?;
            for (id, words) in &words {
                tx.forget_message_words(*id).await?;
                tx.index_message(*id, words).await?;
                on_tx!(tx, conn => {
                    sqlx::query("UPDATE messages SET search_indexed = TRUE WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await
                        .map(|done| done.rows_affected())
                })
                .map_err(db("mark a message indexed"))?;
            }
            tx.commit().await?;
            done += words.len() as u64;
        }
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
        let Some((mut message, parts)) = row.map(message_from).transpose()? else {
            return Ok(None);
        };
        let mut whole = raw_buffer(std::mem::take(&mut message.raw), parts);
        on_tx!(self, conn => read_parts!(&mut *conn, message.id, parts, whole))
            .map_err(db("read a message's parts"))?;
        message.raw = whole;
        Ok(Some(message))
    }

    /// Inserts one message (and its words) unless it is stored already.
    async fn insert_message(
        &mut self,
        message: &NewMessage,
        words: &SearchWords,
    ) -> Result<Inserted> {
        let size = i64::try_from(message.raw.len()).unwrap_or(i64::MAX);
        let (inline, parts): (&[u8], Vec<&[u8]>) = if message.raw.len() > RAW_PART_BYTES {
            (&[], message.raw.chunks(RAW_PART_BYTES).collect())
        } else {
            (&message.raw, Vec::new())
        };
        let raw_parts = i32::try_from(parts.len()).unwrap_or(i32::MAX);
        let inserted: Option<i64> = on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO messages (message_id, sha256, raw, size, received_at, source, status,
                                       search_indexed, raw_parts)
                 VALUES ($1, $2, $3, $4, $5, $6, 'received', TRUE, $7)
                 ON CONFLICT DO NOTHING
                 RETURNING id",
            )
            .bind(&message.message_id)
            .bind(&message.sha256)
            .bind(inline)
            .bind(size)
            .bind(message.received_at)
            .bind(&message.source)
            .bind(raw_parts)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("insert a message"))?;
        if let Some(id) = inserted {
            self.insert_message_parts(id, &parts).await?;
            self.index_message(id, words).await?;
            return Ok(Inserted::New(id));
        }
        // ON CONFLICT waited for a conflicting transaction to commit, so
        // its row is visible now (as is an earlier one of this transaction).
        let existing: Option<i64> = on_tx!(self, conn => {
            sqlx::query_scalar(
                "SELECT id FROM messages
                 WHERE sha256 = $2 OR ($1 IS NOT NULL AND message_id = $1)
                 ORDER BY id LIMIT 1",
            )
            .bind(&message.message_id)
            .bind(&message.sha256)
            .fetch_optional(&mut *conn)
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

    /// Writes the parts of a large message, one statement each (see
    /// [`RAW_PART_BYTES`]).
    async fn insert_message_parts(&mut self, id: i64, parts: &[&[u8]]) -> Result<()> {
        for (part, bytes) in (0_i32..).zip(parts) {
            on_tx!(self, conn => {
                sqlx::query(
                    "INSERT INTO message_parts (message_id, part, bytes) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(part)
                .bind(*bytes)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
            })
            .map_err(db("insert a part of a message"))?;
        }
        Ok(())
    }

    /// Puts a message's words into the search index (nothing when it has
    /// none).
    pub(super) async fn index_message(&mut self, id: i64, words: &SearchWords) -> Result<()> {
        if words.is_empty() {
            return Ok(());
        }
        match &mut self.inner {
            TxInner::Sqlite(t) => {
                sqlx::query("INSERT INTO message_search (rowid, words) VALUES ($1, $2)")
                    .bind(id)
                    .bind(words.document())
                    .execute(&mut **t)
                    .await
                    .map(|done| done.rows_affected())
            }
            TxInner::Postgres(t) => sqlx::query(
                "INSERT INTO message_search (message_id, words)
                     VALUES ($1, array_to_tsvector($2))
                     ON CONFLICT (message_id) DO UPDATE SET words = excluded.words",
            )
            .bind(id)
            .bind(&words.0)
            .execute(&mut **t)
            .await
            .map(|done| done.rows_affected()),
        }
        .map_err(db("index a message for search"))?;
        Ok(())
    }

    /// Takes a message out of the search index (its words go with it).
    pub(super) async fn forget_message_words(&mut self, id: i64) -> Result<()> {
        match &mut self.inner {
            TxInner::Sqlite(t) => sqlx::query("DELETE FROM message_search WHERE rowid = $1")
                .bind(id)
                .execute(&mut **t)
                .await
                .map(|done| done.rows_affected()),
            TxInner::Postgres(t) => sqlx::query("DELETE FROM message_search WHERE message_id = $1")
                .bind(id)
                .execute(&mut **t)
                .await
                .map(|done| done.rows_affected()),
        }
        .map_err(db("remove a message from the search index"))?;
        Ok(())
    }

    /// Removes a message's raw bytes and its words, keeping its record:
    /// `raw` becomes empty and says why and when. A message already
    /// removed keeps its first reason. Returns whether bytes were removed.
    pub(super) async fn remove_message_raw(
        &mut self,
        id: i64,
        why: RawRemoval,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        self.forget_message_words(id).await?;
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM message_parts WHERE message_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("remove a message's parts"))?;
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE messages SET raw = $2, raw_parts = 0, raw_removed = $3, raw_removed_at = $4
                 WHERE id = $1 AND raw_removed IS NULL",
            )
            .bind(id)
            .bind(Vec::<u8>::new())
            .bind(why.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("remove a message's raw bytes"))?;
        Ok(done > 0)
    }
}
