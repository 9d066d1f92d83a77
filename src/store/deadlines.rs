//! Deadline bookkeeping for the sweep: review cases with their
//! deadline and which alerts were already raised for it, cases waiting on
//! the customer, and the alerts themselves.
//!
//! Takes ids and injected times; gives rows. An alert is recorded once per
//! case, kind and deadline (a unique key): recording it again reports
//! `false` and changes nothing, so two sweeps never mail the team twice.
//! Never decides which case is due (the queue does). Fails with
//! [`StoreError`].

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{CaseId, CaseStatus};
use super::{Result, Store, Tx, on_pool, on_tx};
use crate::domain::UnknownName;

/// Which promise-keeping alert a case raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Little working time is left before the deadline.
    Nearing,
    /// The deadline passed without an answer.
    Breached,
}

impl AlertKind {
    /// The stored name (`deadline_alerts.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::Nearing => "nearing",
            AlertKind::Breached => "breached",
        }
    }
}

impl std::str::FromStr for AlertKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "nearing" => Ok(AlertKind::Nearing),
            "breached" => Ok(AlertKind::Breached),
            _ => Err(UnknownName {
                vocabulary: "alert kind",
                name: s.to_owned(),
                expected: "nearing, breached".into(),
            }),
        }
    }
}

/// A case in review with a deadline, as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineCase {
    pub id: CaseId,
    pub subject: String,
    pub deadline: DateTime<Utc>,
    /// A `nearing` alert exists for this deadline.
    pub warned: bool,
    /// A `breached` alert exists for this deadline.
    pub breached: bool,
}

/// A case waiting on the customer and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingCase {
    pub id: CaseId,
    /// The last thing that happened on the case (its latest event).
    pub since: DateTime<Utc>,
}

/// What the console shows next to a case: the alerts raised for its
/// current deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeadlineFlags {
    /// When the team was warned that the deadline is near.
    pub escalated_at: Option<DateTime<Utc>>,
    /// When the deadline was found breached.
    pub breached_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Every case in review that has a deadline, earliest deadline first,
    /// with the alerts already raised for that deadline.
    pub async fn review_deadlines(&self) -> Result<Vec<DeadlineCase>> {
        let rows: Vec<(i64, String, DateTime<Utc>, bool, bool)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.id, c.subject, c.deadline,
                        EXISTS (SELECT 1 FROM deadline_alerts a WHERE a.case_id = c.id
                                AND a.kind = 'nearing' AND a.deadline = c.deadline),
                        EXISTS (SELECT 1 FROM deadline_alerts a WHERE a.case_id = c.id
                                AND a.kind = 'breached' AND a.deadline = c.deadline)
                 FROM cases c
                 WHERE c.status = $1 AND c.deadline IS NOT NULL
                 ORDER BY c.deadline, c.id",
            )
            .bind(CaseStatus::Review.as_str())
            .fetch_all(pool)
            .await
        })
        .map_err(db("list review deadlines"))?;
        Ok(rows
            .into_iter()
            .map(|(id, subject, deadline, warned, breached)| DeadlineCase {
                id: CaseId(id),
                subject,
                deadline,
                warned,
                breached,
            })
            .collect())
    }

    /// Cases waiting on the customer (`needs_info`) whose latest event is
    /// at or before `before`, oldest first.
    pub async fn waiting_since(&self, before: DateTime<Utc>) -> Result<Vec<WaitingCase>> {
        let rows: Vec<(i64, DateTime<Utc>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.id, MAX(e.at) AS since
                 FROM cases c JOIN case_events e ON e.case_id = c.id
                 WHERE c.status = $1
                 GROUP BY c.id
                 HAVING MAX(e.at) <= $2
                 ORDER BY since, c.id",
            )
            .bind(CaseStatus::NeedsInfo.as_str())
            .bind(before)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list cases waiting on the customer"))?;
        Ok(rows
            .into_iter()
            .map(|(id, since)| WaitingCase {
                id: CaseId(id),
                since,
            })
            .collect())
    }

    /// The alerts raised for a case's current deadline.
    pub async fn deadline_flags(&self, case_id: CaseId) -> Result<DeadlineFlags> {
        let rows: Vec<(String, DateTime<Utc>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.kind, a.at FROM deadline_alerts a JOIN cases c ON c.id = a.case_id
                 WHERE a.case_id = $1 AND a.deadline = c.deadline ORDER BY a.id",
            )
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read a case's deadline alerts"))?;
        let mut flags = DeadlineFlags::default();
        for (kind, at) in rows {
            match kind
                .parse::<AlertKind>()
                .map_err(corrupt("deadline alert kind"))?
            {
                AlertKind::Nearing => flags.escalated_at = Some(at),
                AlertKind::Breached => flags.breached_at = Some(at),
            }
        }
        Ok(flags)
    }
}

impl Tx {
    /// Records an alert for `deadline`; `false` when it was recorded
    /// before (nothing changes then).
    pub async fn record_deadline_alert(
        &mut self,
        case_id: CaseId,
        kind: AlertKind,
        deadline: DateTime<Utc>,
        digest_message_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let id: Option<i64> = on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO deadline_alerts (case_id, kind, deadline, at, digest_message_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (case_id, kind, deadline) DO NOTHING
                 RETURNING id",
            )
            .bind(case_id.0)
            .bind(kind.as_str())
            .bind(deadline)
            .bind(at)
            .bind(digest_message_id)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("record a deadline alert"))?;
        Ok(id.is_some())
    }
}
