//! Read-only queries behind reports (`refundd report` and the console's
//! overview), metrics and health checks: the cases created in a time
//! range counted per local day by outcome, category and review, messages
//! in and money and credits out per day, deadline compliance and
//! first-response percentiles over the range, what each reviewer did, the
//! queue's gauges, and a ping.
//!
//! Takes time ranges (half-open, `[since, until)`; a report's days as
//! their boundaries); gives counts and sums computed in SQL, so that a
//! report over 100,000 cases reads a few hundred rows, never the cases
//! themselves. The facts a report needs of each case (first message, first
//! reply, ever in review, reviewer's first act) are kept in the case's row
//! by triggers (migration 0013) and read from one covering index. The
//! rules that make numbers of counts (what is auto-decided, nearest-rank
//! percentiles) stay in `report`: the same Rust code serves both backends.
//! Fails with [`StoreError`](super::StoreError).

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::Actor;
use super::{Result, Store, StoreError, on_pool};
use crate::domain::{Category, Outcome};

/// How many cases of one local day had one outcome, category and review
/// history (see [`Store::report_days`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseCount {
    /// The day's index among the report's days.
    pub day: usize,
    pub outcome: Outcome,
    pub category: Category,
    /// The cases were in review at some point (not decided by the engine
    /// alone).
    pub ever_in_review: bool,
    pub cases: i64,
}

/// What came in and went out in one period (a day of a report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodVolume {
    /// Messages received.
    pub messages: i64,
    /// Cash refunds carried out: (currency, minor units), by currency.
    pub refunded: Vec<(String, i64)>,
    /// Wallet credits refundd granted: (reason, credits), by reason.
    pub credits: Vec<(String, i64)>,
}

/// Deadline compliance and the first-response times of the cases created
/// in a period (see [`Store::report_period`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodFacts {
    /// Review cases whose deadline fell due, or that a reviewer answered.
    pub deadlines_due: i64,
    /// Of those, answered by a reviewer by the deadline.
    pub deadlines_met: i64,
    /// Cases whose customer was answered (with a first-response time).
    pub answered: i64,
}

/// What one reviewer did in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerTally {
    pub reviewer: String,
    /// Status changes made.
    pub actions: i64,
    /// Distinct cases touched.
    pub cases: i64,
    /// Changes that resolved a case.
    pub resolved: i64,
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

/// `WITH days (day, day_start, day_end) AS (VALUES …)`: one row per day
/// of `bounds` (day `i` is `[bounds[i], bounds[i + 1])`), the instants
/// bound as parameters `$1…$n` (so both databases compare them as they
/// compare stored ones). Only numbers are written into the SQL.
fn days_cte(bounds: usize) -> String {
    let rows: Vec<String> = (1..bounds)
        .map(|i| {
            if i == 1 {
                "(CAST(0 AS BIGINT), $1, $2)".to_owned()
            } else {
                format!("({}, ${i}, ${})", i - 1, i + 1)
            }
        })
        .collect();
    format!(
        "WITH days (day, day_start, day_end) AS (VALUES {})",
        rows.join(", ")
    )
}

/// The cases of each day, grouped.
const CASES_PER_DAY: &str = "
    SELECT d.day, c.outcome, c.category, c.ever_in_review, CAST(COUNT(*) AS BIGINT)
    FROM days d JOIN cases c ON c.created_at >= d.day_start AND c.created_at < d.day_end
    GROUP BY d.day, c.outcome, c.category, c.ever_in_review";

/// Messages, refunds (per currency) and credits (per reason) of each day.
const VOLUME_PER_DAY: &str = "
    SELECT 'messages', d.day, '', CAST(COUNT(*) AS BIGINT)
    FROM days d JOIN messages m ON m.received_at >= d.day_start AND m.received_at < d.day_end
    GROUP BY d.day
    UNION ALL
    SELECT 'refunded', d.day, a.currency, CAST(SUM(a.amount) AS BIGINT)
    FROM days d JOIN actions a ON a.updated_at >= d.day_start AND a.updated_at < d.day_end
    WHERE a.kind = 'cash_refund' AND a.status = 'done'
    GROUP BY d.day, a.currency
    UNION ALL
    SELECT 'credits', d.day, w.reason, CAST(SUM(w.credits) AS BIGINT)
    FROM days d JOIN wallet_credits w ON w.created_at >= d.day_start AND w.created_at < d.day_end
    WHERE w.case_id IS NOT NULL
    GROUP BY d.day, w.reason";

impl Store {
    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let _: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(pool).await
        })
        .map_err(db("ping the database"))?;
        Ok(())
    }

    /// The days whose boundaries are `bounds` (day `i` is `[bounds[i],
    /// bounds[i + 1])`), each summed in SQL: the cases created, counted by
    /// outcome, category and whether they were ever in review; and one
    /// [`PeriodVolume`] per day (messages received, cash refunds carried
    /// out, wallet credits refundd granted). Two round trips whatever the
    /// number of days; each day is an index range scan.
    pub async fn report_days(
        &self,
        bounds: &[DateTime<Utc>],
    ) -> Result<(Vec<CaseCount>, Vec<PeriodVolume>)> {
        let days = bounds.len().saturating_sub(1);
        if days == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let cte = days_cte(bounds.len());
        let cases_sql = format!("{cte} {CASES_PER_DAY}");
        let volume_sql = format!("{cte} {VOLUME_PER_DAY}");
        type CaseRow = (i64, String, String, bool, i64);
        let (case_rows, volume_rows): (Vec<CaseRow>, Vec<(String, i64, String, i64)>) = on_pool!(self, pool => {
            let mut cases = sqlx::query_as(sqlx::AssertSqlSafe(cases_sql));
            let mut volume = sqlx::query_as(sqlx::AssertSqlSafe(volume_sql));
            for at in bounds {
                cases = cases.bind(*at);
                volume = volume.bind(*at);
            }
            let cases = cases
                .fetch_all(pool)
                .await
                .map_err(db("count a report's cases per day"))?;
            let volume = volume
                .fetch_all(pool)
                .await
                .map_err(db("sum a report's messages, refunds and credits per day"))?;
            (cases, volume)
        });
        let day = |n: i64| -> Result<usize> {
            usize::try_from(n)
                .ok()
                .filter(|d| *d < days)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "report day",
                    reason: format!("day {n} of {days}"),
                })
        };
        let counts = case_rows
            .into_iter()
            .map(|(d, outcome, category, ever_in_review, cases)| {
                Ok(CaseCount {
                    day: day(d)?,
                    outcome: outcome.parse().map_err(corrupt("case outcome"))?,
                    category: category.parse().map_err(corrupt("case category"))?,
                    ever_in_review,
                    cases,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut volumes = vec![PeriodVolume::default(); days];
        for (what, d, key, n) in volume_rows {
            let volume = &mut volumes[day(d)?];
            match what.as_str() {
                "messages" => volume.messages = n,
                "refunded" => volume.refunded.push((key, n)),
                _ => volume.credits.push((key, n)),
            }
        }
        for volume in &mut volumes {
            volume.refunded.sort();
            volume.credits.sort();
        }
        Ok((counts, volumes))
    }

    /// Deadline compliance among the cases created in `[since, until)`,
    /// and how many of them have a first-response time. A case counts
    /// for compliance when it was ever in review, is not waiting on the
    /// customer (paused), and has a deadline (its current one, or the one
    /// it had when it last left the queue) that passed by `cutoff` or that
    /// a reviewer answered; it met it when a reviewer first acted by then.
    pub async fn report_period(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<PeriodFacts> {
        let (deadlines_due, deadlines_met, answered): (i64, i64, i64) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(CASE WHEN d.deadline <= $3
                                                 OR d.first_reviewer_at IS NOT NULL
                                               THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST(COALESCE(SUM(CASE WHEN d.first_reviewer_at <= d.deadline
                                               THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST((SELECT COUNT(c.first_response_seconds) FROM cases c
                              WHERE c.created_at >= $1 AND c.created_at < $2) AS BIGINT)
                 FROM (SELECT COALESCE(c.deadline, c.last_deadline) AS deadline,
                              c.first_reviewer_at
                       FROM cases c
                       WHERE c.created_at >= $1 AND c.created_at < $2
                         AND c.ever_in_review AND c.status <> 'needs_info') d
                 WHERE d.deadline IS NOT NULL",
            )
            .bind(since)
            .bind(until)
            .bind(cutoff)
            .fetch_one(pool)
            .await
        })
        .map_err(db("count a report's deadlines"))?;
        Ok(PeriodFacts {
            deadlines_due,
            deadlines_met,
            answered,
        })
    }

    /// The first-response times (whole seconds, migration 0013) at the
    /// given 1-based ranks among the cases created in `[since, until)`
    /// that were answered, ascending: `(rank, seconds)` for each rank that
    /// exists. The database sorts; refundd reads only these rows.
    pub async fn first_response_at_ranks(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        ranks: [i64; 3],
    ) -> Result<Vec<(i64, i64)>> {
        on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.n, r.seconds FROM
                   (SELECT c.first_response_seconds AS seconds,
                           CAST(ROW_NUMBER() OVER (ORDER BY c.first_response_seconds) AS BIGINT) AS n
                    FROM cases c
                    WHERE c.created_at >= $1 AND c.created_at < $2
                      AND c.first_response_seconds IS NOT NULL) r
                 WHERE r.n IN ($3, $4, $5)
                 ORDER BY r.n",
            )
            .bind(since)
            .bind(until)
            .bind(ranks[0])
            .bind(ranks[1])
            .bind(ranks[2])
            .fetch_all(pool)
            .await
        })
        .map_err(db("rank a report's first-response times"))
    }

    /// What each reviewer did in `[since, until)`: status changes, distinct
    /// cases, resolutions; by reviewer.
    pub async fn reviewer_tallies(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ReviewerTally>> {
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT actor, CAST(COUNT(*) AS BIGINT), CAST(COUNT(DISTINCT case_id) AS BIGINT),
                        CAST(SUM(CASE WHEN to_status = 'resolved' THEN 1 ELSE 0 END) AS BIGINT)
                 FROM case_events
                 WHERE actor LIKE 'reviewer:%' AND at >= $1 AND at < $2
                 GROUP BY actor",
            )
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await
        })
        .map_err(db("count reviewers' actions for a report"))?;
        let mut tallies = rows
            .into_iter()
            .map(|(actor, actions, cases, resolved)| {
                let reviewer = match actor
                    .parse::<Actor>()
                    .map_err(corrupt("case event actor"))?
                {
                    Actor::Reviewer(who) => who,
                    other => other.to_string(),
                };
                Ok(ReviewerTally {
                    reviewer,
                    actions,
                    cases,
                    resolved,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tallies.sort_by(|a, b| a.reviewer.cmp(&b.reviewer));
        Ok(tallies)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_of_a_report_are_rows_of_bound_instants() {
        assert_eq!(
            days_cte(4),
            "WITH days (day, day_start, day_end) AS \
             (VALUES (CAST(0 AS BIGINT), $1, $2), (1, $2, $3), (2, $3, $4))"
        );
    }
}
