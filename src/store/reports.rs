//! Read-only queries behind reports (`refundd report` and the console's
//! overview), metrics and health checks: one row per case created in a
//! time range, messages in and money and credits out per period,
//! reviewers' status changes, the queue's gauges, and a ping.
//!
//! Takes time ranges (half-open, `[since, until)`); gives plain rows that
//! the queue's report turns into numbers. Never aggregates percentiles or
//! rates itself (the same Rust code then serves both backends). Fails with
//! [`StoreError`](super::StoreError).

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{Actor, CaseId, CaseStatus};
use super::{Result, Store, on_pool};
use crate::domain::{Category, Outcome};

/// One case created in the report's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCase {
    pub id: CaseId,
    pub outcome: Outcome,
    pub category: Category,
    pub status: CaseStatus,
    pub created_at: DateTime<Utc>,
    /// The reply deadline: the current one of an open case, else the one
    /// it had when it last left the queue (migration 0012 keeps it).
    pub deadline: Option<DateTime<Utc>>,
    /// When the case's first message arrived.
    pub first_received_at: Option<DateTime<Utc>>,
    /// When the first reply to the customer was queued.
    pub first_reply_at: Option<DateTime<Utc>>,
    /// The case was in review at some point (not decided by the engine alone).
    pub ever_in_review: bool,
    /// When a reviewer first acted on the case.
    pub first_reviewer_at: Option<DateTime<Utc>>,
}

/// A status change made by a reviewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerEvent {
    pub reviewer: String,
    pub case_id: CaseId,
    pub to_status: CaseStatus,
    pub at: DateTime<Utc>,
}

/// What came in and went out in a period (see [`Store::period_volume`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodVolume {
    /// Messages received.
    pub messages: i64,
    /// Cash refunds carried out: (currency, minor units), by currency.
    pub refunded: Vec<(String, i64)>,
    /// Wallet credits refundd granted: (reason, credits), by reason.
    pub credits: Vec<(String, i64)>,
}

/// The queue's state at one instant, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueGauges {
    /// Replies waiting to be sent.
    pub outbox_depth: i64,
    /// The earliest deadline of a case in review.
    pub oldest_open_deadline: Option<DateTime<Utc>>,
    /// Cases in review.
    pub in_review: i64,
    /// Cases waiting on the customer.
    pub needs_info: i64,
    /// Shadow mode, all time: reviewer decisions on proposed cases, and
    /// how many matched the proposal.
    pub shadow: super::ShadowAgreement,
}

type ReportTuple = (
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
    Option<DateTime<Utc>>,
);

impl Store {
    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let _: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(pool).await
        })
        .map_err(db("ping the database"))?;
        Ok(())
    }

    /// Every case created in `[since, until)`, oldest first, with its
    /// first message, first reply to the customer and reviewers' first act.
    pub async fn report_cases(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ReportCase>> {
        let rows: Vec<ReportTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.id, c.outcome, c.category, c.status, c.created_at,
                        COALESCE(c.deadline, c.last_deadline),
                        (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = c.id),
                        (SELECT MIN(r.created_at) FROM replies r
                         WHERE r.case_id = c.id AND lower(r.to_addr) = lower(c.sender)),
                        EXISTS (SELECT 1 FROM case_events e
                                WHERE e.case_id = c.id AND e.to_status = 'review'),
                        (SELECT MIN(e.at) FROM case_events e
                         WHERE e.case_id = c.id AND e.actor LIKE 'reviewer:%')
                 FROM cases c
                 WHERE c.created_at >= $1 AND c.created_at < $2
                 ORDER BY c.id",
            )
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read cases for a report"))?;
        rows.into_iter()
            .map(
                |(
                    id,
                    outcome,
                    category,
                    status,
                    created_at,
                    deadline,
                    first_received_at,
                    first_reply_at,
                    ever_in_review,
                    first_reviewer_at,
                )| {
                    Ok(ReportCase {
                        id: CaseId(id),
                        outcome: outcome.parse().map_err(corrupt("case outcome"))?,
                        category: category.parse().map_err(corrupt("case category"))?,
                        status: status.parse().map_err(corrupt("case status"))?,
                        created_at,
                        deadline,
                        first_received_at,
                        first_reply_at,
                        ever_in_review,
                        first_reviewer_at,
                    })
                },
            )
            .collect()
    }

    /// What came in and went out in `[since, until)`, in one round trip:
    /// messages received, cash refunds carried out (sum of minor units per
    /// currency) and wallet credits refundd granted (sum per reason). A
    /// report asks once per day of its period and adds the days up.
    pub async fn period_volume(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<PeriodVolume> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT 'messages', '', CAST(COUNT(*) AS BIGINT) FROM messages
                 WHERE received_at >= $1 AND received_at < $2
                 UNION ALL
                 SELECT 'refunded', currency, CAST(SUM(amount) AS BIGINT) FROM actions
                 WHERE kind = 'cash_refund' AND status = 'done'
                   AND updated_at >= $1 AND updated_at < $2
                 GROUP BY currency
                 UNION ALL
                 SELECT 'credits', reason, CAST(SUM(credits) AS BIGINT) FROM wallet_credits
                 WHERE case_id IS NOT NULL AND created_at >= $1 AND created_at < $2
                 GROUP BY reason",
            )
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await
        })
        .map_err(db("sum a period's messages, refunds and credits"))?;
        let mut volume = PeriodVolume::default();
        for (what, key, n) in rows {
            match what.as_str() {
                "messages" => volume.messages = n,
                "refunded" => volume.refunded.push((key, n)),
                _ => volume.credits.push((key, n)),
            }
        }
        volume.refunded.sort();
        volume.credits.sort();
        Ok(volume)
    }

    /// Status changes reviewers made in `[since, until)`, oldest first.
    pub async fn reviewer_events(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ReviewerEvent>> {
        let rows: Vec<(String, i64, String, DateTime<Utc>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT actor, case_id, to_status, at FROM case_events
                 WHERE actor LIKE 'reviewer:%' AND at >= $1 AND at < $2 ORDER BY id",
            )
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read reviewer events for a report"))?;
        rows.into_iter()
            .map(|(actor, case_id, to_status, at)| {
                let reviewer = match actor
                    .parse::<Actor>()
                    .map_err(corrupt("case event actor"))?
                {
                    Actor::Reviewer(who) => who,
                    other => other.to_string(),
                };
                Ok(ReviewerEvent {
                    reviewer,
                    case_id: CaseId(case_id),
                    to_status: to_status.parse().map_err(corrupt("case event status"))?,
                    at,
                })
            })
            .collect()
    }

    /// Outbox depth, the earliest review deadline, and the open cases.
    pub async fn queue_gauges(&self) -> Result<QueueGauges> {
        let (outbox_depth, oldest_open_deadline, in_review, needs_info, decided, agree): (
            i64,
            Option<DateTime<Utc>>,
            i64,
            i64,
            i64,
            i64,
        ) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM replies WHERE status = 'queued'),
                            (SELECT MIN(deadline) FROM cases WHERE status = 'review'),
                            (SELECT COUNT(*) FROM cases WHERE status = 'review'),
                            (SELECT COUNT(*) FROM cases WHERE status = 'needs_info'),
                            (SELECT COUNT(*) FROM shadow_verdicts),
                            (SELECT COUNT(*) FROM shadow_verdicts WHERE agree)",
            )
            .fetch_one(pool)
            .await
        })
        .map_err(db("read the queue's gauges"))?;
        Ok(QueueGauges {
            outbox_depth,
            oldest_open_deadline,
            in_review,
            needs_info,
            shadow: super::ShadowAgreement { decided, agree },
        })
    }
}
