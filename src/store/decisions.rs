//! The engine's own decisions, one per message it decided, kept as made
//! (whatever reviewers do with the case afterwards), with the fingerprint
//! of the deciding configuration and refundd's version; and shadow mode's
//! verdicts (did the reviewer decide what the engine proposed?).
//!
//! Written in the transaction that records the case change; read by
//! `refundd case`, the console, replay (drift) and the shadow agreement
//! figures. Fails with [`StoreError`].

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::error::{corrupt, db};
use super::records::CaseId;
use super::{Result, Store, Tx, on_pool, on_tx};
use crate::domain::{Decision, Verification, vocabulary};

vocabulary! {
    /// What an engine decision rests on.
    DecisionBasis, "decision basis" {
        /// The policy, on this message's facts alone.
        Policy => "policy",
        /// The policy, on the facts of the case's messages merged (a
        /// customer's answer to our question).
        Case => "case",
        /// Not the policy: a message that could not be read, one too
        /// large, a follow-up to a case a person is on.
        Screen => "screen",
    }
}

/// One engine decision as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineDecision {
    pub id: i64,
    /// The stored message it decided (`messages.id`).
    pub message: i64,
    pub case_id: CaseId,
    pub basis: DecisionBasis,
    pub decision: Decision,
    /// [`Settings::decision_fingerprint`](crate::config::Settings::decision_fingerprint).
    pub fingerprint: String,
    /// The refundd version that decided.
    pub version: String,
    /// Shadow mode: only proposed; the case waited for a person.
    pub shadow: bool,
    pub decided_at: DateTime<Utc>,
}

/// An engine decision to record.
#[derive(Debug, Clone, Copy)]
pub struct NewEngineDecision<'a> {
    pub message: i64,
    pub case_id: CaseId,
    pub basis: DecisionBasis,
    pub decision: &'a Decision,
    pub fingerprint: &'a str,
    pub shadow: bool,
    pub at: DateTime<Utc>,
    /// refundd's own sender verification of the message, when it made one
    /// (`[sender_auth] mode` `verify` or `either`), kept so that a replay
    /// reads the sender as it was verified then.
    pub verification: Option<&'a Verification>,
}

/// Shadow mode's agreement over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShadowAgreement {
    /// Cases a reviewer decided where the engine had only proposed.
    pub decided: i64,
    /// Of those, decided as proposed (outcome, action, amount).
    pub agree: i64,
}

impl ShadowAgreement {
    /// `agree / decided`, when anything was decided.
    pub fn rate(&self) -> Option<f64> {
        (self.decided > 0).then(|| self.agree as f64 / self.decided as f64)
    }
}

type Row = (
    i64,
    i64,
    i64,
    String,
    Json<Decision>,
    String,
    String,
    bool,
    DateTime<Utc>,
);

macro_rules! decision_columns {
    () => {
        "id, message_id, case_id, basis, decision, fingerprint, version, shadow, decided_at"
    };
}

fn from_row(r: Row) -> Result<EngineDecision> {
    let (id, message, case_id, basis, decision, fingerprint, version, shadow, decided_at) = r;
    Ok(EngineDecision {
        id,
        message,
        case_id: CaseId(case_id),
        basis: basis.parse().map_err(corrupt("decision basis"))?,
        decision: decision.0,
        fingerprint,
        version,
        shadow,
        decided_at,
    })
}

impl Tx {
    /// Records what the engine decided on one message.
    pub async fn record_engine_decision(&mut self, d: &NewEngineDecision<'_>) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO engine_decisions (message_id, case_id, basis, decision, outcome,
                                               fingerprint, version, shadow, decided_at,
                                               verification)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 RETURNING id",
            )
            .bind(d.message)
            .bind(d.case_id.0)
            .bind(d.basis.as_str())
            .bind(Json(d.decision))
            .bind(d.decision.outcome.as_str())
            .bind(d.fingerprint)
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(d.shadow)
            .bind(d.at)
            .bind(d.verification.map(Json))
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("record an engine decision"))
    }

    /// The engine's latest decision on a case.
    pub async fn latest_engine_decision(
        &mut self,
        case_id: CaseId,
    ) -> Result<Option<EngineDecision>> {
        let row: Option<Row> = on_tx!(self, conn => {
            sqlx::query_as(concat!(
                "SELECT ",
                decision_columns!(),
                " FROM engine_decisions WHERE case_id = $1 ORDER BY id DESC LIMIT 1"
            ))
            .bind(case_id.0)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("read the latest engine decision"))?;
        row.map(from_row).transpose()
    }

    /// Records whether a reviewer decided a shadow case as proposed.
    pub async fn record_shadow_verdict(
        &mut self,
        case_id: CaseId,
        engine_decision: i64,
        reviewer: &str,
        agree: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO shadow_verdicts (case_id, engine_decision_id, reviewer, agree, at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(case_id.0)
            .bind(engine_decision)
            .bind(reviewer)
            .bind(agree)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|_| ())
        })
        .map_err(db("record a shadow verdict"))?;
        Ok(())
    }
}

impl Store {
    /// The engine's decisions on a case, oldest first.
    pub async fn engine_decisions(&self, case_id: CaseId) -> Result<Vec<EngineDecision>> {
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                decision_columns!(),
                " FROM engine_decisions WHERE case_id = $1 ORDER BY id"
            ))
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read a case's engine decisions"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Shadow verdicts recorded in `[since, until)`.
    pub async fn shadow_agreement(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<ShadowAgreement> {
        let (decided, agree): (i64, i64) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN agree THEN 1 ELSE 0 END), 0) AS BIGINT)
                 FROM shadow_verdicts WHERE at >= $1 AND at < $2",
            )
            .bind(since)
            .bind(until)
            .fetch_one(pool)
            .await
        })
        .map_err(db("count shadow verdicts"))?;
        Ok(ShadowAgreement { decided, agree })
    }
}
