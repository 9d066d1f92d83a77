//! Keeping only what the law allows: removing the raw bytes of old mail of
//! closed cases (retention), and erasing one person (erasure on request).
//!
//! Takes times and the person's address; gives counts of what went. Both
//! keep every record of what was decided and paid: cases (their decision,
//! trace, amounts), events, actions, payments, refunds, credits and the
//! audit log stay, so that a case still reads well and the books still
//! balance. What goes is the mail: raw bytes (and with them attachments)
//! and the message's words in the search index; for an erasure also the
//! address (replaced everywhere by one pseudonym, `erased-…@erased.invalid`,
//! so that a case's rows still belong together), subjects, the text of
//! replies, reviewers' notes on the person's cases, and sign-in attempts
//! with the address.
//!
//! An erasure is one transaction and is refused while the person has an
//! open case or money in flight (a [`StoreError::Conflict`] naming them):
//! those must be finished first. Never decides whose mail a message is
//! (the caller gives the messages the person sent); never parses mail.
//! Fails with [`StoreError`].

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Serialize;
use sqlx::types::Json;

use super::error::db;
use super::records::{CaseId, RawRemoval};
use super::reviewers::AuditAction;
use super::{Result, Store, StoreError, Tx, TxInner, on_pool, on_tx};

/// How many messages one retention transaction handles.
const RETENTION_BATCH: i64 = 500;
/// What replaces erased subjects and notes.
pub const ERASED: &str = "(erased)";

/// What an erasure removed or replaced (or, in a dry run, would).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// What the address was replaced with.
    pub pseudonym: String,
    /// The person's cases (sender, subject and text removed).
    pub cases: Vec<CaseId>,
    /// Messages whose raw bytes and search words were removed.
    pub messages: u64,
    /// Replies whose text was removed and address replaced.
    pub replies: u64,
    /// Of those, not sent yet: they never will be.
    pub unsent_replies: u64,
    /// Replies held for a payment outcome, removed likewise.
    pub held_replies: u64,
    /// Ledger wallets whose address was replaced.
    pub wallets: Vec<String>,
    /// Console sign-in attempts with the address, deleted.
    pub login_attempts: u64,
    /// Polar webhook deliveries whose body named the address (replaced).
    pub webhook_deliveries: u64,
    /// Other records (events, details, audit lines, decisions) that named
    /// the address (replaced) or held a note on the person's cases.
    pub other_records: u64,
    /// Kept as the law requires: the cases' actions (cash refunds, wallet
    /// credits) and what was refunded, per currency, in minor units.
    pub kept_actions: u64,
    pub kept_refunded: Vec<(String, i64)>,
}

/// A column of free text or JSON that may name an address in passing.
struct FreeText {
    table: &'static str,
    /// The primary key, and whether it is an integer (else text).
    key: &'static str,
    integer_key: bool,
    column: &'static str,
    json: bool,
}

const fn free_text(
    table: &'static str,
    key: &'static str,
    integer_key: bool,
    column: &'static str,
    json: bool,
) -> FreeText {
    FreeText {
        table,
        key,
        integer_key,
        column,
        json,
    }
}

/// Every such column. Static names only: they are written into SQL.
const FREE_TEXT: [FreeText; 9] = [
    free_text("case_events", "id", true, "reason", false),
    free_text("actions", "id", true, "detail", false),
    free_text("payments", "action_id", true, "detail", false),
    free_text("replies", "id", true, "last_error", false),
    free_text("messages", "id", true, "error", false),
    free_text("webhook_deliveries", "webhook_id", false, "detail", false),
    free_text("audit_log", "id", true, "detail", true),
    free_text("engine_decisions", "id", true, "decision", true),
    free_text("engine_decisions", "id", true, "verification", true),
];

/// The address, any case, as a pattern.
fn address_pattern(address: &str) -> Regex {
    Regex::new(&format!("(?i){}", regex::escape(address))).expect("an escaped literal is valid")
}

/// `%address%` for LIKE over lowercased text (`_` in an address matches
/// any character: a few more candidates, each checked exactly).
fn like(address: &str) -> String {
    format!("%{}%", address.replace('%', ""))
}

impl Store {
    /// Removes the raw bytes (and search words) of every message received
    /// before `cutoff` whose case is closed (resolved or ignored), in
    /// batches; returns how many. The messages' records stay, marked
    /// `retention` at `at`.
    pub async fn remove_raw_mail_before(
        &self,
        cutoff: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let mut removed = 0;
        loop {
            let ids: Vec<i64> = on_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT m.id FROM messages m JOIN cases c ON c.id = m.case_id
                     WHERE m.raw_removed IS NULL AND m.received_at < $1
                       AND c.status IN ('resolved', 'ignored')
                     ORDER BY m.received_at, m.id LIMIT $2",
                )
                .bind(cutoff)
                .bind(RETENTION_BATCH)
                .fetch_all(pool)
                .await
            })
            .map_err(db("list mail past its retention"))?;
            if ids.is_empty() {
                return Ok(removed);
            }
            let mut tx = self.begin().await?;
            for id in &ids {
                removed += u64::from(
                    tx.remove_message_raw(*id, RawRemoval::Retention, at)
                        .await?,
                );
            }
            tx.commit().await?;
            if (ids.len() as i64) < RETENTION_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Erases the person writing from `address`: see the module docs.
    /// `sent` are the ids of messages they sent outside their own cases
    /// (the caller reads the mail); `pseudonym` replaces the address; the
    /// audit line names `actor`, the pseudonym and the counts, never the
    /// address. With `dry_run` nothing changes and the report says what
    /// would.
    pub async fn erase_person(
        &self,
        address: &str,
        sent: &[i64],
        pseudonym: &str,
        actor: &str,
        at: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Erasure> {
        let address = address.trim().to_lowercase();
        let pattern = address_pattern(&address);
        let mut tx = self.begin().await?;
        let cases: Vec<(i64, String)> = on_tx!(tx, conn => {
            sqlx::query_as("SELECT id, status FROM cases WHERE lower(sender) = $1 ORDER BY id")
                .bind(&address)
                .fetch_all(&mut *conn)
                .await
        })
        .map_err(db("find a person's cases"))?;
        let case_ids: Vec<i64> = cases.iter().map(|(id, _)| *id).collect();
        let open: Vec<String> = cases
            .iter()
            .filter(|(_, status)| status == "review" || status == "needs_info")
            .map(|(id, status)| format!("{} ({status})", CaseId(*id)))
            .collect();
        if !open.is_empty() {
            return Err(StoreError::Conflict {
                what: "erasure",
                id: format!("{} case(s)", open.len()),
                detail: format!(
                    "{} still open: decide or close them first, then erase",
                    open.join(", ")
                ),
            });
        }
        let mut in_flight = Vec::new();
        for id in &case_ids {
            let pending: i64 = on_tx!(tx, conn => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM actions WHERE case_id = $1 AND status = 'pending'",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await
            })
            .map_err(db("look for money in flight"))?;
            if pending > 0 {
                in_flight.push(CaseId(*id).to_string());
            }
        }
        if !in_flight.is_empty() {
            return Err(StoreError::Conflict {
                what: "erasure",
                id: in_flight.join(", "),
                detail: format!(
                    "{} has a refund or credit not carried out yet: erase once it is",
                    in_flight.join(", ")
                ),
            });
        }

        let mut report = Erasure {
            pseudonym: pseudonym.to_owned(),
            cases: case_ids.iter().copied().map(CaseId).collect(),
            ..Erasure::default()
        };
        // The person's mail: their cases' messages and what they sent
        // elsewhere.
        let mut messages: Vec<i64> = sent.to_vec();
        for id in &case_ids {
            let of_case: Vec<i64> = on_tx!(tx, conn => {
                sqlx::query_scalar("SELECT id FROM messages WHERE case_id = $1")
                    .bind(id)
                    .fetch_all(&mut *conn)
                    .await
            })
            .map_err(db("list a case's messages"))?;
            messages.extend(of_case);
        }
        messages.sort_unstable();
        messages.dedup();
        for id in &messages {
            tx.remove_message_raw(*id, RawRemoval::Erasure, at).await?;
            // The Message-ID is the sender's mail program's: it can name
            // them. Redelivery is still recognised by the bytes' hash.
            on_tx!(tx, conn => {
                sqlx::query("UPDATE messages SET message_id = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(db("forget a message's id"))?;
        }
        report.messages = messages.len() as u64;

        for id in &case_ids {
            tx.erase_case_text(*id, &pattern, pseudonym).await?;
        }
        tx.erase_replies(&case_ids, &address, pseudonym, &mut report)
            .await?;

        report.wallets = on_tx!(tx, conn => {
            sqlx::query_scalar(
                "UPDATE wallets SET email = $2 WHERE lower(email) = $1 RETURNING id",
            )
            .bind(&address)
            .bind(pseudonym)
            .fetch_all(&mut *conn)
            .await
        })
        .map_err(db("replace a wallet's address"))?;
        report.login_attempts = on_tx!(tx, conn => {
            sqlx::query("DELETE FROM login_attempts WHERE lower(email) = $1")
                .bind(&address)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("delete sign-in attempts"))?;
        report.webhook_deliveries = tx
            .erase_webhook_bodies(&address, &pattern, pseudonym)
            .await?;
        for column in &FREE_TEXT {
            report.other_records += tx
                .replace_in_column(column, &address, &pattern, pseudonym)
                .await?;
        }
        report.other_records += tx.erase_notes(&case_ids).await?;

        let (actions, refunded) = tx.money_kept(&case_ids).await?;
        report.kept_actions = actions;
        report.kept_refunded = refunded;

        tx.add_audit(
            actor,
            AuditAction::Erase,
            None,
            &serde_json::json!({
                "pseudonym": pseudonym,
                "cases": report.cases,
                "messages": report.messages,
                "replies": report.replies,
                "wallets": report.wallets,
                "login_attempts": report.login_attempts,
                "webhook_deliveries": report.webhook_deliveries,
                "other_records": report.other_records,
            }),
            at,
        )
        .await?;
        if let TxInner::Sqlite(t) = &mut tx.inner {
            // Merge the index's segments so that the erased messages' words
            // leave it now, not at some later merge.
            sqlx::query("INSERT INTO message_search (message_search) VALUES ('optimize')")
                .execute(&mut **t)
                .await
                .map_err(db("compact the search index"))?;
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Messages whose indexed words include every one of `words` (the
    /// words of an address, say): candidates for "did this person write
    /// it", for the caller to check against the mail itself.
    pub async fn messages_with_words(&self, words: &[String]) -> Result<Vec<(i64, Vec<u8>)>> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Vec<u8>, i32)> = match &self.db {
            super::Db::Sqlite(pool) => {
                let query = words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" ");
                sqlx::query_as(
                    "SELECT id, raw, raw_parts FROM messages WHERE id IN
                     (SELECT rowid FROM message_search WHERE message_search MATCH $1)",
                )
                .bind(query)
                .fetch_all(pool)
                .await
            }
            super::Db::Postgres(pool) => {
                let query = words
                    .iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(" & ");
                sqlx::query_as(
                    "SELECT id, raw, raw_parts FROM messages WHERE id IN
                     (SELECT message_id FROM message_search WHERE words @@ CAST($1 AS tsquery))",
                )
                .bind(query)
                .fetch_all(pool)
                .await
            }
        }
        .map_err(db("find messages by their words"))?;
        let mut messages = Vec::with_capacity(rows.len());
        for (id, raw, parts) in rows {
            messages.push((id, self.whole_raw(id, raw, parts).await?));
        }
        Ok(messages)
    }
}

impl Tx {
    /// A case of the erased person: sender pseudonymised, subject gone,
    /// the address replaced in its decision.
    async fn erase_case_text(&mut self, id: i64, pattern: &Regex, pseudonym: &str) -> Result<()> {
        type Row = (String, String, String, String);
        let (decision, trace, flags, actions): Row = on_tx!(self, conn => {
            sqlx::query_as(
                "SELECT CAST(decision AS TEXT), CAST(trace AS TEXT), CAST(flags AS TEXT),
                        CAST(actions AS TEXT)
                 FROM cases WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("read a case to erase"))?;
        let json = |text: &str| -> Result<Json<serde_json::Value>> {
            serde_json::from_str(&pattern.replace_all(text, pseudonym))
                .map(Json)
                .map_err(|e| StoreError::Corrupt {
                    what: "case JSON",
                    reason: e.to_string(),
                })
        };
        let (decision, trace, flags, actions) = (
            json(&decision)?,
            json(&trace)?,
            json(&flags)?,
            json(&actions)?,
        );
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE cases SET sender = $2, subject = $3, decision = $4, trace = $5,
                                  flags = $6, actions = $7
                 WHERE id = $1",
            )
            .bind(id)
            .bind(pseudonym)
            .bind(ERASED)
            .bind(&decision)
            .bind(&trace)
            .bind(&flags)
            .bind(&actions)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("erase a case's text"))?;
        Ok(())
    }

    /// Replies (sent, queued or held) of the person's cases or to their
    /// address: text gone, address replaced; unsent ones never leave.
    async fn erase_replies(
        &mut self,
        case_ids: &[i64],
        address: &str,
        pseudonym: &str,
        report: &mut Erasure,
    ) -> Result<()> {
        let empty: Vec<u8> = Vec::new();
        let mut ids: Vec<(i64, String)> = on_tx!(self, conn => {
            sqlx::query_as("SELECT id, status FROM replies WHERE lower(to_addr) = $1")
                .bind(address)
                .fetch_all(&mut *conn)
                .await
        })
        .map_err(db("find replies to an address"))?;
        let mut held: Vec<i64> = on_tx!(self, conn => {
            sqlx::query_scalar("SELECT id FROM held_replies WHERE lower(to_addr) = $1")
                .bind(address)
                .fetch_all(&mut *conn)
                .await
        })
        .map_err(db("find held replies to an address"))?;
        for case in case_ids {
            let of_case: Vec<(i64, String)> = on_tx!(self, conn => {
                sqlx::query_as("SELECT id, status FROM replies WHERE case_id = $1")
                    .bind(case)
                    .fetch_all(&mut *conn)
                    .await
            })
            .map_err(db("find a case's replies"))?;
            ids.extend(of_case);
            let held_of_case: Vec<i64> = on_tx!(self, conn => {
                sqlx::query_scalar("SELECT id FROM held_replies WHERE case_id = $1")
                    .bind(case)
                    .fetch_all(&mut *conn)
                    .await
            })
            .map_err(db("find a case's held replies"))?;
            held.extend(held_of_case);
        }
        ids.sort();
        ids.dedup();
        held.sort_unstable();
        held.dedup();
        for (id, status) in &ids {
            on_tx!(self, conn => {
                sqlx::query(
                    "UPDATE replies
                     SET to_addr = $2, subject = $3, raw = $4,
                         status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END,
                         last_error = CASE WHEN status = 'queued'
                                           THEN 'erased before it was sent' ELSE last_error END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(pseudonym)
                .bind(ERASED)
                .bind(&empty)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
            })
            .map_err(db("erase a reply"))?;
            report.unsent_replies += u64::from(status == "queued");
        }
        report.replies = ids.len() as u64;
        for id in &held {
            on_tx!(self, conn => {
                sqlx::query(
                    "UPDATE held_replies
                     SET to_addr = $2, subject = $3, raw = $4,
                         state = CASE WHEN state = 'held' THEN 'dropped' ELSE state END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(pseudonym)
                .bind(ERASED)
                .bind(&empty)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
            })
            .map_err(db("erase a held reply"))?;
        }
        report.held_replies = held.len() as u64;
        Ok(())
    }

    /// Polar webhook bodies (JSON bytes) naming the address: replaced.
    async fn erase_webhook_bodies(
        &mut self,
        address: &str,
        pattern: &Regex,
        pseudonym: &str,
    ) -> Result<u64> {
        let rows: Vec<(String, Vec<u8>)> = match &mut self.inner {
            TxInner::Sqlite(t) => {
                sqlx::query_as(
                    "SELECT webhook_id, body FROM webhook_deliveries
                     WHERE lower(CAST(body AS TEXT)) LIKE $1",
                )
                .bind(like(address))
                .fetch_all(&mut **t)
                .await
            }
            TxInner::Postgres(t) => {
                sqlx::query_as(
                    "SELECT webhook_id, body FROM webhook_deliveries
                     WHERE lower(encode(body, 'escape')) LIKE $1",
                )
                .bind(like(address))
                .fetch_all(&mut **t)
                .await
            }
        }
        .map_err(db("find webhook deliveries naming an address"))?;
        let bytes = regex::bytes::Regex::new(pattern.as_str()).expect("the same pattern");
        let mut changed = 0;
        for (id, body) in rows {
            let replaced = bytes.replace_all(&body, pseudonym.as_bytes());
            if replaced.as_ref() == body.as_slice() {
                continue;
            }
            on_tx!(self, conn => {
                sqlx::query("UPDATE webhook_deliveries SET body = $2 WHERE webhook_id = $1")
                    .bind(&id)
                    .bind(replaced.as_ref())
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(db("erase an address from a webhook delivery"))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Replaces the address in one free-text (or JSON) column wherever it
    /// occurs; returns how many rows changed.
    async fn replace_in_column(
        &mut self,
        c: &FreeText,
        address: &str,
        pattern: &Regex,
        pseudonym: &str,
    ) -> Result<u64> {
        let FreeText {
            table,
            key,
            integer_key,
            column,
            json,
        } = *c;
        // Table and column names are the constants of FREE_TEXT.
        let select = format!(
            "SELECT CAST({key} AS TEXT), CAST({column} AS TEXT) FROM {table}
             WHERE lower(CAST({column} AS TEXT)) LIKE $1"
        );
        let update = format!("UPDATE {table} SET {column} = $2 WHERE {key} = $1");
        let rows: Vec<(String, String)> = on_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
                .bind(like(address))
                .fetch_all(&mut *conn)
                .await
        })
        .map_err(db("find records naming an address"))?;
        let mut changed = 0;
        for (id, text) in rows {
            let replaced = pattern.replace_all(&text, pseudonym);
            if replaced == text {
                continue;
            }
            let number: Option<i64> = if integer_key { id.parse().ok() } else { None };
            let value: Option<serde_json::Value> = if json {
                Some(
                    serde_json::from_str(&replaced).map_err(|e| StoreError::Corrupt {
                        what: "JSON column",
                        reason: e.to_string(),
                    })?,
                )
            } else {
                None
            };
            macro_rules! bound {
                ($query:expr) => {
                    match (number, &value) {
                        (Some(n), Some(v)) => $query.bind(n).bind(Json(v)),
                        (Some(n), None) => $query.bind(n).bind(replaced.as_ref()),
                        (None, Some(v)) => $query.bind(id.clone()).bind(Json(v)),
                        (None, None) => $query.bind(id.clone()).bind(replaced.as_ref()),
                    }
                };
            }
            let done = on_tx!(self, conn => {
                bound!(sqlx::query(sqlx::AssertSqlSafe(update.clone())))
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(db("replace an address in a record"))?;
            changed += done;
        }
        Ok(changed)
    }

    /// Reviewers' notes (and personal paragraphs) on the person's cases:
    /// they are about the person; replaced by "(erased)".
    async fn erase_notes(&mut self, case_ids: &[i64]) -> Result<u64> {
        let mut changed = 0;
        for case in case_ids {
            let rows: Vec<(i64, Json<serde_json::Value>)> = on_tx!(self, conn => {
                sqlx::query_as("SELECT id, detail FROM audit_log WHERE case_id = $1")
                    .bind(case)
                    .fetch_all(&mut *conn)
                    .await
            })
            .map_err(db("read a case's audit lines"))?;
            for (id, Json(mut detail)) in rows {
                let mut touched = false;
                if let Some(object) = detail.as_object_mut() {
                    for key in ["note", "personal_note"] {
                        if let Some(value) = object.get_mut(key)
                            && value.is_string()
                        {
                            *value = serde_json::Value::from(ERASED);
                            touched = true;
                        }
                    }
                }
                if !touched {
                    continue;
                }
                on_tx!(self, conn => {
                    sqlx::query("UPDATE audit_log SET detail = $2 WHERE id = $1")
                        .bind(id)
                        .bind(Json(&detail))
                        .execute(&mut *conn)
                        .await
                        .map(|done| done.rows_affected())
                })
                .map_err(db("erase a note"))?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The cases' actions (kept) and what was refunded through them.
    async fn money_kept(&mut self, case_ids: &[i64]) -> Result<(u64, Vec<(String, i64)>)> {
        let mut actions = 0;
        let mut refunded: std::collections::BTreeMap<String, i64> = Default::default();
        for case in case_ids {
            let rows: Vec<(String, String, Option<String>, Option<i64>)> = on_tx!(self, conn => {
                sqlx::query_as(
                    "SELECT kind, status, currency, amount FROM actions WHERE case_id = $1",
                )
                .bind(case)
                .fetch_all(&mut *conn)
                .await
            })
            .map_err(db("count a case's actions"))?;
            for (kind, status, currency, amount) in rows {
                actions += 1;
                if let ("cash_refund", "done", Some(c), Some(a)) =
                    (kind.as_str(), status.as_str(), currency, amount)
                {
                    *refunded.entry(c).or_default() += a;
                }
            }
        }
        Ok((actions, refunded.into_iter().collect()))
    }
}
