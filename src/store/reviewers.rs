//! The reviewers' console's records: reviewer accounts, case claims, the
//! audit log, and the review queue listing with its filters and search.
//! Sessions, API tokens, sign-in attempts and account administration are
//! in [`accounts`](super::accounts).
//!
//! Takes hashes, never secrets: password hashes (argon2 PHC strings) and
//! SHA-256 digests of session cookies and API tokens are computed by the
//! web layer; nothing here can sign anybody in by itself. Never calls the
//! clock (times are passed in). Fails with [`StoreError`]: a second claim
//! on a claimed case, or a reviewer address already taken, is
//! [`StoreError::Conflict`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::error::{corrupt, db};
use super::records::{CaseId, CaseStatus};
use super::{Result, Store, StoreError, Tx, on_pool, on_tx};
use crate::domain::{Category, Flag, Outcome, UnknownName};
use crate::parse::search::search_terms;

/// What a reviewer may do. Admins also add reviewers and act on cases
/// someone else has claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewerRole {
    /// Works the queue.
    Reviewer,
    /// Works the queue and manages the console.
    Admin,
}

impl ReviewerRole {
    /// The stored name (`reviewer`, `admin`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewerRole::Reviewer => "reviewer",
            ReviewerRole::Admin => "admin",
        }
    }

    fn parse(name: &str) -> std::result::Result<Self, UnknownName> {
        match name {
            "reviewer" => Ok(ReviewerRole::Reviewer),
            "admin" => Ok(ReviewerRole::Admin),
            _ => Err(UnknownName {
                vocabulary: "reviewer role",
                name: name.to_owned(),
                expected: "reviewer, admin".into(),
            }),
        }
    }
}

/// A reviewer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reviewer {
    pub id: i64,
    /// Lowercased address; what events and the audit log name.
    pub email: String,
    /// Argon2 PHC string.
    #[serde(skip)]
    pub password_hash: String,
    pub role: ReviewerRole,
    /// A disabled reviewer cannot sign in or use a token.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// What a human did, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Login,
    LoginFailed,
    Logout,
    Claim,
    Release,
    Approve,
    Deny,
    Ask,
    Note,
    ReviewerAdded,
    TokenCreated,
    /// An admin decided a case another reviewer had claimed.
    TakeOver,
    ReviewerDisabled,
    ReviewerEnabled,
    TokenRevoked,
    /// A person's data erased on request (`refundd erase`).
    Erase,
}

impl AuditAction {
    /// The stored name (the migration's `CHECK` vocabulary).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
            AuditAction::Logout => "logout",
            AuditAction::Claim => "claim",
            AuditAction::Release => "release",
            AuditAction::Approve => "approve",
            AuditAction::Deny => "deny",
            AuditAction::Ask => "ask",
            AuditAction::Note => "note",
            AuditAction::ReviewerAdded => "reviewer_added",
            AuditAction::TokenCreated => "token_created",
            AuditAction::TakeOver => "take_over",
            AuditAction::ReviewerDisabled => "reviewer_disabled",
            AuditAction::ReviewerEnabled => "reviewer_enabled",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::Erase => "erase",
        }
    }

    const ALL: [AuditAction; 16] = [
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::Logout,
        AuditAction::Claim,
        AuditAction::Release,
        AuditAction::Approve,
        AuditAction::Deny,
        AuditAction::Ask,
        AuditAction::Note,
        AuditAction::ReviewerAdded,
        AuditAction::TokenCreated,
        AuditAction::TakeOver,
        AuditAction::ReviewerDisabled,
        AuditAction::ReviewerEnabled,
        AuditAction::TokenRevoked,
        AuditAction::Erase,
    ];

    fn parse(name: &str) -> std::result::Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| UnknownName {
                vocabulary: "audit action",
                name: name.to_owned(),
                expected: Self::ALL.map(|a| a.as_str()).join(", "),
            })
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `reviewer:{email}` or `cli`.
    pub actor: String,
    pub action: AuditAction,
    pub case_id: Option<CaseId>,
    /// Amounts, reasons, the note: whatever explains the act.
    pub detail: serde_json::Value,
}

/// Which open cases the queue shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub outcome: Option<Outcome>,
    pub category: Option<Category>,
    pub flag: Option<Flag>,
    /// Only cases claimed by this reviewer (address).
    pub reviewer: Option<String>,
    /// Words of the messages (sender, subject, decoded text; all of them,
    /// accents ignored, longer words as prefixes), a case tag, or an order
    /// id / invoice / receipt number.
    pub search: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
    pub offset: i64,
}

/// One open case in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueItem {
    pub id: CaseId,
    pub sender: String,
    pub subject: String,
    pub status: CaseStatus,
    pub outcome: Outcome,
    pub category: Category,
    pub flags: Vec<Flag>,
    pub deadline: Option<DateTime<Utc>>,
    /// The compare-and-set token a decision on this case must carry.
    pub version: i64,
    pub order_id: Option<String>,
    /// The order's net amount (minor units), when the case names an order.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// Who claimed the case, if anyone.
    pub claimed_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A page of the queue and how many open cases match in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePage {
    pub items: Vec<QueueItem>,
    pub total: i64,
}

type ReviewerTuple = (i64, String, String, String, bool, DateTime<Utc>);

pub(super) fn reviewer_from(t: ReviewerTuple) -> Result<Reviewer> {
    let (id, email, password_hash, role, disabled, created_at) = t;
    Ok(Reviewer {
        id,
        email,
        password_hash,
        role: ReviewerRole::parse(&role).map_err(corrupt("reviewer role"))?,
        disabled,
        created_at,
    })
}

type QueueTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<DateTime<Utc>>,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

fn queue_item_from(t: QueueTuple) -> Result<QueueItem> {
    let (
        id,
        sender,
        subject,
        status,
        outcome,
        category,
        flags,
        deadline,
        version,
        order_id,
        amount,
        currency,
        claimed_by,
        created_at,
    ) = t;
    let flags: Vec<Flag> = serde_json::from_str(&flags).map_err(|e| StoreError::Corrupt {
        what: "case flags",
        reason: e.to_string(),
    })?;
    Ok(QueueItem {
        id: CaseId(id),
        sender,
        subject,
        status: status.parse().map_err(corrupt("case status"))?,
        outcome: outcome.parse().map_err(corrupt("case outcome"))?,
        category: category.parse().map_err(corrupt("case category"))?,
        flags,
        deadline,
        version,
        order_id,
        amount,
        currency,
        claimed_by,
        created_at,
    })
}

/// The queue's WHERE over `cases c`: open cases and the filters.
/// Parameters: $1 outcome, $2 category, $3 flag pattern, $4 reviewer.
/// Joins are avoided here so that counting walks the open-case index only.
macro_rules! queue_where {
    () => {
        " WHERE c.status IN ('review', 'needs_info')
            AND ($1 IS NULL OR c.outcome = $1)
            AND ($2 IS NULL OR c.category = $2)
            AND ($3 IS NULL OR CAST(c.flags AS TEXT) LIKE $3)
            AND ($4 IS NULL OR EXISTS (SELECT 1 FROM case_claims k
                                       WHERE k.case_id = c.id AND k.reviewer = $4))"
    };
}

/// The cases a search names: open cases with a message `m` whose words
/// match (`$text_match`: `m.id IN` the backend's full-text index, migration
/// 0012, given the query $7; NULL matches nothing), or named as a case number ($6), or
/// by an order id, invoice or receipt number ($5).
///
/// The words are checked per open case (its messages through
/// `messages_case`, each against the matching message ids, which the
/// database gathers once per query), not the other way round: a common
/// word matches tens of thousands of messages, but the queue holds a few
/// thousand open cases, and walking from each matching message to its
/// case read one message row per match. On SQLite, `+m.id` keeps the
/// planner from driving the lookup by the (long) list of matching ids;
/// PostgreSQL chooses between the two ways by its statistics.
macro_rules! search_cases {
    ($text_match:literal) => {
        concat!(
            " AND (EXISTS (SELECT 1 FROM messages m
                           WHERE m.case_id = c.id AND ",
            $text_match,
            ")
                 OR c.id IN (SELECT CAST($6 AS BIGINT)
                    UNION SELECT k.id FROM cases k WHERE k.order_id = $5
                    UNION SELECT k.id FROM orders r JOIN cases k ON k.order_id = r.id
                          WHERE upper(r.invoice_number) = upper($5)
                             OR upper(r.receipt_number) = upper($5)))"
        )
    };
}

/// The columns of a queue row over `cases c` joined to the page.
macro_rules! queue_columns {
    () => {
        "SELECT c.id, c.sender, c.subject, c.status, c.outcome, c.category,
                CAST(c.flags AS TEXT), c.deadline, c.version, c.order_id, o.amount,
                o.currency, cl.reviewer, c.created_at"
    };
}

/// One page of the queue: cases in deadline order (the open-case index
/// order; a case without a deadline sorts first, as it needs a look),
/// joined to their order and claim after the page is cut. $5 limit,
/// $6 offset.
macro_rules! queue_select {
    () => {
        concat!(
            queue_columns!(),
            " FROM (SELECT c.id FROM cases c",
            queue_where!(),
            " ORDER BY c.deadline NULLS FIRST, c.id LIMIT $5 OFFSET $6) page
             JOIN cases c ON c.id = page.id
             LEFT JOIN orders o ON o.id = c.order_id
             LEFT JOIN case_claims cl ON cl.case_id = c.id
             ORDER BY c.deadline NULLS FIRST, c.id"
        )
    };
}

macro_rules! queue_count {
    () => {
        concat!("SELECT COUNT(*) FROM cases c", queue_where!())
    };
}

/// A page of the cases a search names, with how many match in all (the
/// window count, one pass). $8 limit, $9 offset.
macro_rules! search_select {
    ($text_match:literal) => {
        concat!(
            queue_columns!(),
            ", page.total FROM (SELECT c.id, COUNT(*) OVER () AS total FROM cases c",
            queue_where!(),
            search_cases!($text_match),
            " ORDER BY c.deadline NULLS FIRST, c.id LIMIT $8 OFFSET $9) page
             JOIN cases c ON c.id = page.id
             LEFT JOIN orders o ON o.id = c.order_id
             LEFT JOIN case_claims cl ON cl.case_id = c.id
             ORDER BY c.deadline NULLS FIRST, c.id"
        )
    };
}

macro_rules! search_count {
    ($text_match:literal) => {
        concat!(
            "SELECT COUNT(*) FROM cases c",
            queue_where!(),
            search_cases!($text_match)
        )
    };
}

/// Default and largest queue page.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

impl Store {
    /// Creates a reviewer. An address already taken is
    /// [`StoreError::Conflict`].
    pub async fn create_reviewer(
        &self,
        email: &str,
        password_hash: &str,
        role: ReviewerRole,
        at: DateTime<Utc>,
    ) -> Result<Reviewer> {
        let email = email.trim().to_lowercase();
        let inserted: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO reviewers (email, password_hash, role, disabled, created_at)
                 VALUES ($1, $2, $3, FALSE, $4)
                 ON CONFLICT (email) DO NOTHING
                 RETURNING id",
            )
            .bind(&email)
            .bind(password_hash)
            .bind(role.as_str())
            .bind(at)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("create a reviewer"))?;
        let id = inserted.ok_or_else(|| StoreError::Conflict {
            what: "reviewer",
            id: email.clone(),
            detail: "a reviewer with this address exists".into(),
        })?;
        Ok(Reviewer {
            id,
            email,
            password_hash: password_hash.to_owned(),
            role,
            disabled: false,
            created_at: at,
        })
    }

    /// The reviewer with this address (any case), if any.
    pub async fn reviewer_by_email(&self, email: &str) -> Result<Option<Reviewer>> {
        let row: Option<ReviewerTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, email, password_hash, role, disabled, created_at
                 FROM reviewers WHERE email = $1",
            )
            .bind(email.trim().to_lowercase())
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read a reviewer"))?;
        row.map(reviewer_from).transpose()
    }

    /// Claims an open case for `reviewer`. Claiming one's own claim again
    /// is fine; a case claimed by someone else is [`StoreError::Conflict`]
    /// unless `take_over` (an admin reassigning it).
    pub async fn claim_case(
        &self,
        case_id: CaseId,
        reviewer: &str,
        take_over: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let holder: String = on_tx!(tx, conn => {
            sqlx::query_scalar(
                "INSERT INTO case_claims (case_id, reviewer, claimed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (case_id) DO UPDATE
                 SET reviewer = CASE WHEN $4 THEN excluded.reviewer ELSE case_claims.reviewer END,
                     claimed_at = CASE WHEN $4 THEN excluded.claimed_at
                                       ELSE case_claims.claimed_at END
                 RETURNING reviewer",
            )
            .bind(case_id.0)
            .bind(reviewer)
            .bind(at)
            .bind(take_over)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("claim a case"))?;
        if holder != reviewer {
            return Err(StoreError::Conflict {
                what: "case",
                id: case_id.to_string(),
                detail: format!("claimed by {holder}"),
            });
        }
        tx.add_audit(
            &format!("reviewer:{reviewer}"),
            AuditAction::Claim,
            Some(case_id),
            &serde_json::json!({ "take_over": take_over }),
            at,
        )
        .await?;
        tx.commit().await
    }

    /// Who claimed a case, if anyone.
    pub async fn case_claim(&self, case_id: CaseId) -> Result<Option<(String, DateTime<Utc>)>> {
        on_pool!(self, pool => {
            sqlx::query_as("SELECT reviewer, claimed_at FROM case_claims WHERE case_id = $1")
                .bind(case_id.0)
                .fetch_optional(pool)
                .await
        })
        .map_err(db("read a case claim"))
    }

    /// Releases `reviewer`'s claim (or anyone's, with `any`). Releasing a
    /// claim someone else holds is [`StoreError::Conflict`].
    pub async fn release_case(
        &self,
        case_id: CaseId,
        reviewer: &str,
        any: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let released = on_tx!(tx, conn => {
            sqlx::query("DELETE FROM case_claims WHERE case_id = $1 AND ($3 OR reviewer = $2)")
                .bind(case_id.0)
                .bind(reviewer)
                .bind(any)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("release a case"))?;
        if released == 0 {
            return Err(StoreError::Conflict {
                what: "case",
                id: case_id.to_string(),
                detail: "it is not claimed by you".into(),
            });
        }
        tx.add_audit(
            &format!("reviewer:{reviewer}"),
            AuditAction::Release,
            Some(case_id),
            &serde_json::json!({}),
            at,
        )
        .await?;
        tx.commit().await
    }

    /// Writes one audit line on its own (sign-ins, notes, accounts).
    pub async fn add_audit(
        &self,
        actor: &str,
        action: AuditAction,
        case_id: Option<CaseId>,
        detail: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let id = tx.add_audit(actor, action, case_id, detail, at).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The audit log of a case (or of everything without a case when
    /// `None`), oldest first, at most `limit` lines.
    pub async fn audit_log(&self, case_id: Option<CaseId>, limit: i64) -> Result<Vec<AuditEntry>> {
        type Row = (
            i64,
            DateTime<Utc>,
            String,
            String,
            Option<i64>,
            Json<serde_json::Value>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, at, actor, action, case_id, detail FROM audit_log
                 WHERE ($1 IS NULL OR case_id = $1) ORDER BY id LIMIT $2",
            )
            .bind(case_id.map(|c| c.0))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read the audit log"))?;
        rows.into_iter()
            .map(|(id, at, actor, action, case_id, detail)| {
                Ok(AuditEntry {
                    id,
                    at,
                    actor,
                    action: AuditAction::parse(&action).map_err(corrupt("audit action"))?,
                    case_id: case_id.map(CaseId),
                    detail: detail.0,
                })
            })
            .collect()
    }

    /// Open cases (review, needs_info) matching `filter`, earliest
    /// deadline first (cases without one first), one page of them.
    ///
    /// A search finds a case by the words of its messages (sender, subject,
    /// decoded text; every word of the search, the longer ones as
    /// prefixes, accents ignored), by its tag (`R-12`), or by the order it
    /// names (order id, invoice or receipt number).
    pub async fn queue(&self, filter: &QueueFilter) -> Result<QueuePage> {
        let outcome = filter.outcome.map(|o| o.as_str());
        let category = filter.category.map(|c| c.as_str());
        let flag = filter.flag.map(|f| format!("%\"{}\"%", f.as_str()));
        let reviewer = filter.reviewer.as_deref();
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let offset = filter.offset.max(0);
        let search = filter
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let Some(search) = search else {
            let (rows, total) = on_pool!(self, pool => {
                let rows: Vec<QueueTuple> = sqlx::query_as(queue_select!())
                    .bind(outcome)
                    .bind(category)
                    .bind(flag.as_deref())
                    .bind(reviewer)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(pool)
                    .await
                    .map_err(db("list the queue"))?;
                let total: i64 = sqlx::query_scalar(queue_count!())
                    .bind(outcome)
                    .bind(category)
                    .bind(flag.as_deref())
                    .bind(reviewer)
                    .fetch_one(pool)
                    .await
                    .map_err(db("count the queue"))?;
                (rows, total)
            });
            return queue_page(rows, total);
        };
        let case_number = search.parse::<CaseId>().ok().map(|c| c.0);
        let terms = search_terms(search);
        // A case tag is looked up as one, not as the words `r` and `12`.
        let terms = if search.starts_with(['R', 'r']) && case_number.is_some() {
            Vec::new()
        } else {
            terms
        };
        macro_rules! run {
            ($pool:expr, $select:expr, $count:expr, $text:expr) => {{
                let rows: Vec<(QueueTuple, i64)> = sqlx::query_as::<_, SearchTuple>($select)
                    .bind(outcome)
                    .bind(category)
                    .bind(flag.as_deref())
                    .bind(reviewer)
                    .bind(search)
                    .bind(case_number)
                    .bind($text)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all($pool)
                    .await
                    .map_err(db("search the queue"))?
                    .into_iter()
                    .map(split_total)
                    .collect();
                let total = match rows.first() {
                    Some((_, total)) => *total,
                    // Past the last page: the window had nothing to count.
                    None if offset > 0 => sqlx::query_scalar($count)
                        .bind(outcome)
                        .bind(category)
                        .bind(flag.as_deref())
                        .bind(reviewer)
                        .bind(search)
                        .bind(case_number)
                        .bind($text)
                        .fetch_one($pool)
                        .await
                        .map_err(db("count a queue search"))?,
                    None => 0,
                };
                (rows.into_iter().map(|(row, _)| row).collect(), total)
            }};
        }
        let (rows, total): (Vec<QueueTuple>, i64) = match &self.db {
            super::Db::Sqlite(pool) => {
                let mut words = Vec::with_capacity(terms.len());
                for term in &terms {
                    words.push(sqlite_prefix_words(pool, term).await?);
                }
                match sqlite_match(&terms, &words) {
                    Some(text) => run!(
                        pool,
                        search_select!(
                            "+m.id IN (SELECT rowid FROM message_search
                                       WHERE message_search MATCH $7)"
                        ),
                        search_count!(
                            "+m.id IN (SELECT rowid FROM message_search
                                       WHERE message_search MATCH $7)"
                        ),
                        Some(text.as_str())
                    ),
                    // FTS5 refuses to match NULL: no words, no text lookup.
                    None => run!(
                        pool,
                        search_select!("+m.id IN (SELECT CAST($7 AS INTEGER) WHERE 0)"),
                        search_count!("+m.id IN (SELECT CAST($7 AS INTEGER) WHERE 0)"),
                        None::<&str>
                    ),
                }
            }
            super::Db::Postgres(pool) => {
                // A search reads few rows by index: starting parallel
                // workers costs more than it saves (measured at 100,000
                // cases: 64 of a slow search's 92 ms went to the start).
                let mut tx = pool.begin().await.map_err(db("search the queue"))?;
                sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
                    .execute(&mut *tx)
                    .await
                    .map_err(db("search the queue"))?;
                let found = match postgres_tsquery(&terms) {
                    Some(text) => run!(
                        &mut *tx,
                        search_select!(
                            "m.id IN (SELECT s.message_id FROM message_search s
                                      WHERE s.words @@ CAST($7 AS tsquery))"
                        ),
                        search_count!(
                            "m.id IN (SELECT s.message_id FROM message_search s
                                      WHERE s.words @@ CAST($7 AS tsquery))"
                        ),
                        Some(text.as_str())
                    ),
                    // No words (a case tag, an order id): no text lookup.
                    None => run!(
                        &mut *tx,
                        search_select!("m.id IN (SELECT CAST($7 AS BIGINT) WHERE FALSE)"),
                        search_count!("m.id IN (SELECT CAST($7 AS BIGINT) WHERE FALSE)"),
                        None::<&str>
                    ),
                };
                tx.rollback().await.map_err(db("search the queue"))?;
                found
            }
        };
        queue_page(rows, total)
    }
}

fn queue_page(rows: Vec<QueueTuple>, total: i64) -> Result<QueuePage> {
    Ok(QueuePage {
        items: rows
            .into_iter()
            .map(queue_item_from)
            .collect::<Result<_>>()?,
        total,
    })
}

type SearchTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<DateTime<Utc>>,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    i64,
);

fn split_total(t: SearchTuple) -> (QueueTuple, i64) {
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n, total) = t;
    ((a, b, c, d, e, f, g, h, i, j, k, l, m, n), total)
}

/// Words shorter than this are matched whole; longer ones as prefixes
/// (`ruckerst` finds `ruckerstattung`). A one- or two-letter prefix would
/// match half the dictionary.
const MIN_PREFIX_CHARS: usize = 3;

/// A prefix that the index holds as at most this many words is searched
/// as those words (see [`sqlite_match`]).
const MAX_PREFIX_WORDS: usize = 32;

/// The FTS5 query for search words: every word must occur (AND). The
/// words are letters and digits only, so quoting them is enough.
///
/// `words[i]` are the indexed words that `terms[i]` is a prefix of, when
/// there are at most [`MAX_PREFIX_WORDS`] (`None`: more, or a short term).
/// Such a prefix is searched as those words (`("rucker" OR
/// "ruckerstattung")`): FTS5 answers a prefix by first merging the lists
/// of every message holding a word with it, which for a word nearly every
/// message holds (the shop's name, `example` of an address) costs tens of
/// milliseconds, where the same words as an OR of whole words are stepped
/// through only as far as the other words of the search need. A prefix of
/// many rarer words (`c17` of `c170`…`c1799`) stays a prefix.
fn sqlite_match(terms: &[String], words: &[Option<Vec<String>>]) -> Option<String> {
    (!terms.is_empty()).then(|| {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| match words.get(i) {
                Some(Some(words)) if !words.is_empty() => format!(
                    "({})",
                    words
                        .iter()
                        .map(|w| format!("\"{w}\""))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ),
                _ if t.chars().count() >= MIN_PREFIX_CHARS => format!("\"{t}\"*"),
                _ => format!("\"{t}\""),
            })
            .collect::<Vec<_>>()
            // Spelled out: FTS5 has no implicit AND between groups.
            .join(" AND ")
    })
}

/// The indexed words `term` is a prefix of (itself included), when there
/// are at most [`MAX_PREFIX_WORDS`]; `None` for more, or for a term too
/// short to be a prefix. Read from `message_search_terms`, the FTS5
/// vocabulary of the index (migration 0013), in term order.
async fn sqlite_prefix_words(pool: &sqlx::SqlitePool, term: &str) -> Result<Option<Vec<String>>> {
    if term.chars().count() < MIN_PREFIX_CHARS {
        return Ok(None);
    }
    let words: Vec<String> = sqlx::query_scalar(
        "SELECT term FROM message_search_terms WHERE term >= $1 AND term <= $2
         ORDER BY term LIMIT $3",
    )
    .bind(term)
    // Every word that starts with `term` sorts before this.
    .bind(format!("{term}\u{10FFFF}"))
    .bind(MAX_PREFIX_WORDS as i64 + 1)
    .fetch_all(pool)
    .await
    .map_err(db("look up the words a search term begins"))?;
    Ok((words.len() <= MAX_PREFIX_WORDS).then_some(words))
}

/// The `tsquery` for search words, written as lexemes (no parser, no
/// dictionary: the index holds refundd's own words): every word must
/// occur (`&`), the longer ones as prefixes (`:*`).
fn postgres_tsquery(terms: &[String]) -> Option<String> {
    (!terms.is_empty()).then(|| {
        terms
            .iter()
            .map(|t| {
                if t.chars().count() >= MIN_PREFIX_CHARS {
                    format!("'{t}':*")
                } else {
                    format!("'{t}'")
                }
            })
            .collect::<Vec<_>>()
            .join(" & ")
    })
}

impl Store {
    /// The open cases just before and after `case_id` in queue order
    /// (deadline, then number): what `k` and `j` move to on a case page.
    pub async fn queue_neighbours(
        &self,
        case_id: CaseId,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<(Option<CaseId>, Option<CaseId>)> {
        let Some(deadline) = deadline else {
            return Ok((None, None));
        };
        let (prev, next): (Option<i64>, Option<i64>) = on_pool!(self, pool => {
            let prev = sqlx::query_scalar(
                "SELECT id FROM cases
                 WHERE status IN ('review', 'needs_info') AND deadline IS NOT NULL
                   AND (deadline < $1 OR (deadline = $1 AND id < $2))
                 ORDER BY deadline DESC, id DESC LIMIT 1",
            )
            .bind(deadline)
            .bind(case_id.0)
            .fetch_optional(pool)
            .await;
            let next = sqlx::query_scalar(
                "SELECT id FROM cases
                 WHERE status IN ('review', 'needs_info') AND deadline IS NOT NULL
                   AND (deadline > $1 OR (deadline = $1 AND id > $2))
                 ORDER BY deadline, id LIMIT 1",
            )
            .bind(deadline)
            .bind(case_id.0)
            .fetch_optional(pool)
            .await;
            prev.and_then(|p| next.map(|n| (p, n)))
        })
        .map_err(db("find a case's neighbours in the queue"))?;
        Ok((prev.map(CaseId), next.map(CaseId)))
    }
}

impl Tx {
    /// Writes one audit line inside the transaction of the act it records.
    pub async fn add_audit(
        &mut self,
        actor: &str,
        action: AuditAction,
        case_id: Option<CaseId>,
        detail: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor, action, case_id, detail)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(at)
            .bind(actor)
            .bind(action.as_str())
            .bind(case_id.map(|c| c.0))
            .bind(Json(detail))
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("write the audit log"))
    }

    /// Drops any claim on a case (it was decided).
    pub(super) async fn clear_case_claim(&mut self, case_id: CaseId) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM case_claims WHERE case_id = $1")
                .bind(case_id.0)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("clear a case claim"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_become_and_queries_with_prefixes_for_longer_words() {
        let terms = search_terms("Rückerst 12 Müller");
        assert_eq!(
            sqlite_match(&terms, &[None, None, None]).unwrap(),
            "\"ruckerst\"* AND \"12\" AND \"muller\"*"
        );
        // A prefix of a few indexed words is those words; of none, itself.
        assert_eq!(
            sqlite_match(
                &terms,
                &[
                    Some(vec!["ruckerstattung".into(), "ruckerstatten".into()]),
                    None,
                    Some(vec![]),
                ]
            )
            .unwrap(),
            "(\"ruckerstattung\" OR \"ruckerstatten\") AND \"12\" AND \"muller\"*"
        );
        assert_eq!(
            postgres_tsquery(&terms).unwrap(),
            "'ruckerst':* & '12' & 'muller':*"
        );
        assert_eq!(sqlite_match(&[], &[]), None);
        assert_eq!(postgres_tsquery(&[]), None);
    }

    #[test]
    fn every_audit_action_parses_back_from_its_name() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()).unwrap(), action);
        }
        assert!(ReviewerRole::parse("root").is_err());
    }
}
