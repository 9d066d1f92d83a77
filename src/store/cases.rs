//! Cases: creation with the opening decision, compare-and-set updates, the
//! status history, follow-up lookup and the listing behind
//! `refundd cases`.
//!
//! A stored case keeps the whole `Decision` as JSON plus copies of its
//! vocabulary fields (outcome, category, flags, actions, trace, wallet,
//! order) for filtering in SQL. Fails with [`StoreError`]; a stale version
//! is [`StoreError::Conflict`], a stored value that no longer parses is
//! [`StoreError::Corrupt`].

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::error::{corrupt, db};
use super::records::{
    Actor, CaseEvent, CaseFilter, CaseId, CaseOrder, CaseRow, CaseStatus, CaseSummary, NewCase,
    parse_language,
};
use super::{Result, Store, StoreError, Tx, on_pool, on_tx};
use crate::domain::Decision;

/// Columns of a case, in `case_columns!()` order.
type CaseTuple = (
    i64,
    String,
    String,
    String,
    Json<Decision>,
    String,
    Option<DateTime<Utc>>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// The columns of `CaseTuple`, as a literal for `concat!`.
macro_rules! case_columns {
    () => {
        "id, sender, subject, language, decision, status, deadline, version, created_at, updated_at"
    };
}

fn case_from(t: CaseTuple) -> Result<CaseRow> {
    let (id, sender, subject, language, decision, status, deadline, version, created, updated) = t;
    Ok(CaseRow {
        id: CaseId(id),
        sender,
        subject,
        language: parse_language(&language).map_err(corrupt("case language"))?,
        decision: decision.0,
        status: status.parse().map_err(corrupt("case status"))?,
        deadline,
        version,
        created_at: created,
        updated_at: updated,
    })
}

/// Columns of a listed case.
type SummaryTuple = (
    i64,
    Option<String>,
    String,
    String,
    Json<Decision>,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

fn summary_from(t: SummaryTuple) -> Result<CaseSummary> {
    let (id, message_id, from, subject, decision, status, created_at, deadline) = t;
    let decision = decision.0;
    Ok(CaseSummary {
        id: CaseId(id),
        message_id,
        from,
        subject,
        outcome: decision.outcome,
        category: decision.category,
        flags: decision.flags.iter().copied().collect(),
        clauses: decision.clauses(),
        actions: decision.actions,
        order_id: decision.order_id,
        wallet_id: decision.wallet_id,
        status: status.parse().map_err(corrupt("case status"))?,
        created_at,
        deadline,
    })
}

type EventTuple = (
    i64,
    i64,
    DateTime<Utc>,
    String,
    Option<String>,
    String,
    String,
);

fn event_from(t: EventTuple) -> Result<CaseEvent> {
    let (id, case_id, at, actor, from_status, to_status, reason) = t;
    Ok(CaseEvent {
        id,
        case_id: CaseId(case_id),
        at,
        actor: actor.parse().map_err(corrupt("case event actor"))?,
        from_status: from_status
            .map(|s| s.parse())
            .transpose()
            .map_err(corrupt("case event status"))?,
        to_status: to_status.parse().map_err(corrupt("case event status"))?,
        reason,
    })
}

/// The listing query for one ordering (the SQL text must be static).
macro_rules! list_cases_sql {
    ($order:literal) => {
        concat!(
            "SELECT c.id,
                    (SELECT m.message_id FROM messages m
                     WHERE m.case_id = c.id ORDER BY m.id LIMIT 1),
                    c.sender, c.subject, c.decision, c.status, c.created_at, c.deadline
             FROM cases c
             WHERE ($1 IS NULL OR c.outcome = $1) AND ($2 IS NULL OR c.status = $2)
             ORDER BY ",
            $order,
            " LIMIT $3"
        )
    };
}

impl Store {
    /// One case.
    pub async fn case(&self, id: CaseId) -> Result<Option<CaseRow>> {
        let row: Option<CaseTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", case_columns!(), " FROM cases WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(pool)
                .await
        })
        .map_err(db("read a case"))?;
        row.map(case_from).transpose()
    }

    /// The case one of our replies belongs to, found by the replies'
    /// Message-IDs a follow-up cites (`In-Reply-To`, `References`, without
    /// angle brackets). The ids are tried in the order given.
    pub async fn case_by_reply_message_ids(&self, ids: &[String]) -> Result<Option<CaseId>> {
        for id in ids {
            let found: Option<i64> = on_pool!(self, pool => {
                sqlx::query_scalar("SELECT case_id FROM replies WHERE message_id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await
            })
            .map_err(db("find a case by reply Message-ID"))?;
            if let Some(case_id) = found {
                return Ok(Some(CaseId(case_id)));
            }
        }
        Ok(None)
    }

    /// Cases matching `filter`, with what `refundd cases --json` prints.
    pub async fn list_cases(&self, filter: &CaseFilter) -> Result<Vec<CaseSummary>> {
        let outcome = filter.outcome.map(|o| o.as_str());
        let status = filter.status.map(|s| s.as_str());
        let limit = filter.limit.unwrap_or(i64::MAX);
        let sql = match filter.order {
            CaseOrder::Created => list_cases_sql!("c.id"),
            CaseOrder::Deadline => list_cases_sql!("(c.deadline IS NULL), c.deadline, c.id"),
        };
        let rows: Vec<SummaryTuple> = on_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(outcome)
                .bind(status)
                .bind(limit)
                .fetch_all(pool)
                .await
        })
        .map_err(db("list cases"))?;
        rows.into_iter().map(summary_from).collect()
    }

    /// A case's status history, oldest first.
    pub async fn case_events(&self, case_id: CaseId) -> Result<Vec<CaseEvent>> {
        let rows: Vec<EventTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, case_id, at, actor, from_status, to_status, reason
                 FROM case_events WHERE case_id = $1 ORDER BY id",
            )
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list case events"))?;
        rows.into_iter().map(event_from).collect()
    }
}

impl Tx {
    /// Creates a case with the decision that opened it (version 1).
    pub(super) async fn create_case(&mut self, case: &NewCase) -> Result<CaseId> {
        let d = &case.decision;
        let flags: Vec<_> = d.flags.iter().collect();
        let id: i64 = on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO cases (sender, subject, language, wallet_id, order_id, outcome,
                                    category, flags, actions, trace, decision, status, deadline,
                                    version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14)
                 RETURNING id",
            )
            .bind(&case.sender)
            .bind(&case.subject)
            .bind(case.language.code())
            .bind(&d.wallet_id)
            .bind(&d.order_id)
            .bind(d.outcome.as_str())
            .bind(d.category.as_str())
            .bind(Json(&flags))
            .bind(Json(&d.actions))
            .bind(Json(&d.trace))
            .bind(Json(d))
            .bind(case.status.as_str())
            .bind(case.deadline)
            .bind(case.at)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("create a case"))?;
        Ok(CaseId(id))
    }

    /// Reads a case inside the transaction. On PostgreSQL the row stays
    /// locked until commit, so a read-decide-update is not interleaved.
    pub async fn case(&mut self, id: CaseId) -> Result<Option<CaseRow>> {
        let row: Option<CaseTuple> = match &mut self.inner {
            super::TxInner::Sqlite(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    case_columns!(),
                    " FROM cases WHERE id = $1"
                ))
                .bind(id.0)
                .fetch_optional(&mut **t)
                .await
            }
            super::TxInner::Postgres(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    case_columns!(),
                    " FROM cases WHERE id = $1 FOR UPDATE"
                ))
                .bind(id.0)
                .fetch_optional(&mut **t)
                .await
            }
        }
        .map_err(db("read a case"))?;
        row.map(case_from).transpose()
    }

    /// Replaces a case's decision, status and deadline if its version is
    /// still `expected_version` (compare-and-set), and returns the new
    /// version. A stale version is [`StoreError::Conflict`].
    pub(super) async fn update_case_decision(
        &mut self,
        case_id: CaseId,
        expected_version: i64,
        decision: &Decision,
        status: CaseStatus,
        deadline: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let flags: Vec<_> = decision.flags.iter().collect();
        let new_version: Option<i64> = on_tx!(self, conn => {
            sqlx::query_scalar(
                "UPDATE cases
                 SET wallet_id = $3, order_id = $4, outcome = $5, category = $6, flags = $7,
                     actions = $8, trace = $9, decision = $10, status = $11, deadline = $12,
                     version = version + 1, updated_at = $13
                 WHERE id = $1 AND version = $2
                 RETURNING version",
            )
            .bind(case_id.0)
            .bind(expected_version)
            .bind(&decision.wallet_id)
            .bind(&decision.order_id)
            .bind(decision.outcome.as_str())
            .bind(decision.category.as_str())
            .bind(Json(&flags))
            .bind(Json(&decision.actions))
            .bind(Json(&decision.trace))
            .bind(Json(decision))
            .bind(status.as_str())
            .bind(deadline)
            .bind(at)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("update a case's decision"))?;
        new_version.ok_or_else(|| StoreError::Conflict {
            what: "case",
            id: case_id.to_string(),
            detail: format!("version {expected_version} is no longer current"),
        })
    }

    /// Appends one status change to a case's history.
    pub(super) async fn add_case_event(
        &mut self,
        case_id: CaseId,
        actor: &Actor,
        from_status: Option<CaseStatus>,
        to_status: CaseStatus,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO case_events (case_id, at, actor, from_status, to_status, reason)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING id",
            )
            .bind(case_id.0)
            .bind(at)
            .bind(actor.to_string())
            .bind(from_status.map(|s| s.as_str()))
            .bind(to_status.as_str())
            .bind(reason)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("add a case event"))
    }
}
