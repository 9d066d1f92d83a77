//! The payment stage: approved cash refunds reach Polar exactly once, and
//! the customer's reply goes out only after Polar accepted the refund.
//!
//! Takes: `pending` cash_refund actions the pipeline committed (case,
//! order, amount, key `case-R-n-refund-{order}`) together with the case's
//! held replies, a [`PolarClient`] and `[polar]` ([`PolarSettings`]).
//! Gives: per refund, one of
//! - **accepted**: Polar took it (found by our key, or posted now); the
//!   action is `done` with Polar's refund id, the refund is in the ledger
//!   (`pending` or `succeeded`), the "refund on its way" reply is released;
//! - **review**: a check, a guard rail or Polar's refusal stopped it; the
//!   action is `failed` (or `dry_run`), the case is in review with a P2
//!   trace step and an event saying why, the "a person will look" reply is
//!   released;
//! - **unclear**: the POST's outcome is unknown; nothing else changes and
//!   the next pass looks the refund up by key before anything else.
//!
//! Exactly once, without idempotency keys at Polar: one refund is one
//! database transaction from claim to commit ([`Tx::claim_refund_job`]
//! locks it; other instances skip it). Inside it: look the refund up by our
//! key FIRST (`GET /v1/refunds/?order_id=`; a refund carrying
//! `metadata.refundd_key` is ours, posted by an attempt that died or timed
//! out before it recorded it), then the guard rails and a fresh read of
//! the order and its disputes, then one POST with the key in `metadata`.
//! A crash anywhere before commit leaves the database as it was, and the
//! next pass finds the refund by key. A POST is never retried blindly.
//!
//! Never: decides policy (the amount is the pipeline's), or sends mail.
//! Fails with [`PaymentError`]: database failures and Polar failures that
//! say nothing about this refund (network, 401) stop the pass and leave the
//! refund pending for the next one.

use chrono::{DateTime, Duration, Utc};

use super::config::PolarSettings;
use super::crashpoint;
use super::guard::{self, Finding, OrderCheck, Post};
use super::polar::{
    CreateRefund, DisputeQuery, MetadataValue, PolarClient, PolarError, Refund, RefundReason,
    RefundStatus,
};
use crate::config::Settings;
use crate::domain::Outcome;
use crate::queue::Lifecycle;
use crate::store::{
    ActionStatus, CaseId, HeldRole, LedgerRefundStatus, PaymentOutcome, PaymentState, RefundJob,
    Store, StoreError, Tx,
};

/// The metadata key carrying our idempotency key on Polar's refund.
pub const KEY_METADATA: &str = "refundd_key";
/// The metadata key carrying the case tag on Polar's refund.
pub const CASE_METADATA: &str = "refundd_case";

/// Every crash point of a refund's unit of work, in order (see
/// [`crashpoint`]); the crash-matrix test runs the binary once per name.
pub const CRASHPOINTS: &[&str] = &[
    "payments.after_claim",
    "payments.after_reconcile",
    "payments.after_order_check",
    "payments.before_post",
    "payments.after_post",
    "payments.after_record",
    "payments.after_release",
    "payments.after_commit",
];

/// Why a payment pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The database failed; the refund stays pending.
    #[error("database error in the payment stage")]
    Store(#[from] StoreError),
    /// Polar could not be asked about this refund (network, rate limit,
    /// token); the refund stays pending.
    #[error("Polar call failed while paying case {case}")]
    Polar {
        /// The case whose refund was being paid.
        case: CaseId,
        /// What Polar (or the network) said.
        #[source]
        source: PolarError,
    },
    /// The Polar client could not be built from `[polar]`.
    #[error("cannot build the Polar client")]
    Client(#[source] PolarError),
    /// A cash refund's case does not exist (a corrupt database).
    #[error("case {0} of a cash refund is missing")]
    MissingCase(CaseId),
}

impl PaymentError {
    /// Whether the next pass may succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        match self {
            PaymentError::Store(source) => source.is_transient(),
            PaymentError::Polar { source, .. } => source.is_transient(),
            PaymentError::Client(_) | PaymentError::MissingCase(_) => false,
        }
    }
}

/// What one pass did, counted per refund.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentReport {
    /// Posted now and accepted by Polar.
    pub accepted: usize,
    /// Found at Polar by our key (an earlier attempt posted it).
    pub reconciled: usize,
    /// Sent to a person by a check or guard rail.
    pub review: usize,
    /// Refused by Polar, sent to a person.
    pub refused: usize,
    /// Dry-run records.
    pub dry_run: usize,
    /// Outcome unknown; looked up next pass.
    pub unclear: usize,
    /// Left for later: another refund of the same order is unclear.
    pub deferred: usize,
}

/// How one refund ended this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Accepted,
    Reconciled,
    Review,
    Refused,
    DryRun,
    Unclear,
}

impl PaymentReport {
    fn count(&mut self, end: End) {
        match end {
            End::Accepted => self.accepted += 1,
            End::Reconciled => self.reconciled += 1,
            End::Review => self.review += 1,
            End::Refused => self.refused += 1,
            End::DryRun => self.dry_run += 1,
            End::Unclear => self.unclear += 1,
        }
    }
}

/// Builds the Polar client `[polar]` describes.
pub fn client(polar: &PolarSettings) -> Result<PolarClient, PaymentError> {
    PolarClient::new(polar.client_config()).map_err(PaymentError::Client)
}

/// One payment pass with the client `settings.polar` describes; nothing
/// when `[polar]` is not configured.
pub async fn run_configured(
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<PaymentReport, PaymentError> {
    let Some(polar) = settings.polar.as_ref() else {
        return Ok(PaymentReport::default());
    };
    run_pending(store, &client(polar)?, settings, now).await
}

/// Takes every pending cash refund, one at a time, to an end state or
/// `unclear` (see the module doc). Without `[polar]` it does nothing:
/// refunds stay "approved, not yet paid".
pub async fn run_pending(
    store: &Store,
    client: &PolarClient,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<PaymentReport, PaymentError> {
    let mut report = PaymentReport::default();
    let Some(polar) = settings.polar.as_ref() else {
        return Ok(report);
    };
    let stage = Stage {
        client,
        polar,
        lifecycle: settings.lifecycle(),
        now,
    };
    let mut cursor = 0;
    loop {
        let mut tx = store.begin().await?;
        let Some(job) = tx.claim_refund_job(cursor).await? else {
            tx.rollback().await?;
            return Ok(report);
        };
        cursor = job.action_id;
        match tx.mark_payment_in_flight(&job, now).await {
            Ok(()) => {}
            Err(err) if err.is_unique_violation() => {
                // Another refund of this order is unclear: it settles first.
                tx.rollback().await?;
                tracing::info!(case_id = %job.case_id, action_id = job.action_id, "refund deferred: another refund of the order is unsettled");
                report.deferred += 1;
                continue;
            }
            Err(err) => return Err(err.into()),
        }
        crashpoint("payments.after_claim");
        let span = tracing::info_span!("refund", case_id = %job.case_id, action_id = job.action_id, stage = "payments");
        let end = {
            let _entered = span.enter();
            stage.settle(&mut tx, &job).await
        };
        match end {
            Ok(end) => {
                tx.commit().await?;
                crashpoint("payments.after_commit");
                tracing::info!(case_id = %job.case_id, action_id = job.action_id, outcome = ?end, "refund settled for this pass");
                report.count(end);
            }
            Err(err) => {
                tx.rollback().await?;
                return Err(err);
            }
        }
    }
}

/// One pass's fixed inputs.
struct Stage<'a> {
    client: &'a PolarClient,
    polar: &'a PolarSettings,
    lifecycle: Lifecycle,
    now: DateTime<Utc>,
}

impl Stage<'_> {
    async fn settle(&self, tx: &mut Tx, job: &RefundJob) -> Result<End, PaymentError> {
        let polar_err = |source| PaymentError::Polar {
            case: job.case_id,
            source,
        };
        // Ours already? An earlier attempt may have posted it and died.
        let refunds = self
            .client
            .list_refunds_for_order(&job.order_id)
            .await
            .map_err(polar_err)?;
        if let Some(ours) = refunds.iter().find(|r| carries_key(r, &job.key)) {
            crashpoint("payments.after_reconcile");
            return self.adopt(tx, job, ours, false).await;
        }
        crashpoint("payments.after_reconcile");
        if job.state == Some(PaymentState::Unclear)
            && job.attempts >= i64::from(self.polar.max_attempts)
        {
            let step = guard::refused(
                &format!(
                    "{} attempts ended with an unclear outcome and Polar shows no refund with our key",
                    job.attempts
                ),
                job.amount,
                &job.currency,
            );
            self.to_review(tx, job, step, PaymentState::Review, ActionStatus::Failed)
                .await?;
            return Ok(End::Review);
        }
        if let Some(step) = guard::switch(self.polar) {
            self.to_review(tx, job, step, PaymentState::Review, ActionStatus::Failed)
                .await?;
            return Ok(End::Review);
        }
        let post = match self.check_order(tx, job, &refunds).await? {
            Ok(post) => post,
            Err(step) => {
                self.to_review(tx, job, step, PaymentState::Review, ActionStatus::Failed)
                    .await?;
                return Ok(End::Review);
            }
        };
        crashpoint("payments.after_order_check");
        let day = self
            .now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        let today = tx
            .accepted_refund_total(&job.currency, day, day + Duration::days(1))
            .await?;
        if let Some(step) = guard::limits(self.polar, job.amount, &job.currency, today) {
            self.to_review(tx, job, step, PaymentState::Review, ActionStatus::Failed)
                .await?;
            return Ok(End::Review);
        }
        if self.polar.dry_run {
            let step = guard::dry_run(job.amount, &job.currency, &job.order_id, post);
            self.to_review(tx, job, step, PaymentState::DryRun, ActionStatus::DryRun)
                .await?;
            return Ok(End::DryRun);
        }
        crashpoint("payments.before_post");
        let request = refund_request(job, post);
        let posted = self.client.create_refund(&request).await;
        crashpoint("payments.after_post");
        match posted {
            Ok(refund) => self.adopt(tx, job, &refund, true).await,
            Err(
                err @ (PolarError::Unclear { .. }
                | PolarError::Transient { .. }
                | PolarError::RateLimited { .. }),
            ) => {
                let sent = matches!(err, PolarError::Unclear { .. });
                tracing::warn!(case_id = %job.case_id, error = %err, "refund outcome unclear; looked up by key next pass");
                let outcome = PaymentOutcome {
                    state: PaymentState::Unclear,
                    polar_refund_id: None,
                    polar_status: None,
                    detail: format!("outcome unknown: {err}"),
                    posted: sent,
                };
                tx.record_payment(job.action_id, &outcome, self.now).await?;
                Ok(End::Unclear)
            }
            Err(err @ (PolarError::Unauthorized { .. } | PolarError::Config { .. })) => {
                Err(polar_err(err))
            }
            Err(refusal) => {
                tracing::warn!(case_id = %job.case_id, error = %refusal, "Polar refused the refund");
                let step = guard::refused(&refusal.to_string(), job.amount, &job.currency);
                self.to_review(tx, job, step, PaymentState::Refused, ActionStatus::Failed)
                    .await?;
                Ok(End::Refused)
            }
        }
    }

    /// Re-reads the order and its disputes from Polar and checks them
    /// against the refund and the ledger. An order Polar does not know is
    /// a finding, not an error.
    async fn check_order(
        &self,
        tx: &mut Tx,
        job: &RefundJob,
        refunds: &[Refund],
    ) -> Result<Result<Post, Finding>, PaymentError> {
        let polar_err = |source| PaymentError::Polar {
            case: job.case_id,
            source,
        };
        let order = match self.client.get_order(&job.order_id).await {
            Ok(order) => order,
            Err(err @ PolarError::UnknownOrder { .. }) => {
                return Ok(Err(guard::refused(
                    &err.to_string(),
                    job.amount,
                    &job.currency,
                )));
            }
            Err(err) => return Err(polar_err(err)),
        };
        let query = DisputeQuery {
            order_id: Some(job.order_id.clone()),
            statuses: Vec::new(),
        };
        let disputes: Vec<_> = self
            .client
            .list_disputes(&query)
            .await
            .map_err(polar_err)?
            .into_iter()
            .filter(|d| d.status.is_open())
            .collect();
        let ledger = tx.ledger_order_money(&job.order_id).await?;
        let other_pending = refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Pending)
            .map(|r| r.amount)
            .sum();
        Ok(guard::check_order(&OrderCheck {
            amount: job.amount,
            currency: &job.currency,
            order: &order,
            ledger: ledger.as_ref(),
            open_disputes: &disputes,
            other_pending,
        }))
    }

    /// Records a refund Polar holds under our key: accepted (pending or
    /// succeeded) releases the approved reply; failed or canceled goes to
    /// review.
    async fn adopt(
        &self,
        tx: &mut Tx,
        job: &RefundJob,
        refund: &Refund,
        posted: bool,
    ) -> Result<End, PaymentError> {
        let ledger_status = match refund.status {
            RefundStatus::Succeeded => LedgerRefundStatus::Succeeded,
            RefundStatus::Pending => LedgerRefundStatus::Pending,
            _ => {
                let step = guard::refused(
                    &format!("refund {} is {} at Polar", refund.id, refund.status),
                    job.amount,
                    &job.currency,
                );
                tx.remove_ledger_refund(&refund.id).await?;
                self.to_review(tx, job, step, PaymentState::Refused, ActionStatus::Failed)
                    .await?;
                return Ok(End::Refused);
            }
        };
        let outcome = PaymentOutcome {
            state: PaymentState::Accepted,
            polar_refund_id: Some(refund.id.clone()),
            polar_status: Some(refund.status.to_string()),
            detail: format!("Polar accepted refund {} ({})", refund.id, refund.status),
            posted,
        };
        tx.record_payment(job.action_id, &outcome, self.now).await?;
        tx.set_action_status(&job.key, ActionStatus::Done, Some(&refund.id), self.now)
            .await?;
        tx.upsert_ledger_refund(
            &refund.id,
            &refund.order_id,
            refund.amount,
            ledger_status,
            refund.created_at,
        )
        .await?;
        crashpoint("payments.after_record");
        tx.release_held_reply(job.case_id, HeldRole::Approved, self.now)
            .await?;
        crashpoint("payments.after_release");
        tracing::info!(case_id = %job.case_id, refund_id = %refund.id, status = %refund.status, "refund accepted by Polar");
        Ok(if posted {
            End::Accepted
        } else {
            End::Reconciled
        })
    }

    /// Records the end state, puts the case in review with `step` in its
    /// trace and an event, and releases the "a person will look" reply.
    async fn to_review(
        &self,
        tx: &mut Tx,
        job: &RefundJob,
        step: Finding,
        state: PaymentState,
        action_status: ActionStatus,
    ) -> Result<(), PaymentError> {
        let outcome = PaymentOutcome {
            state,
            polar_refund_id: None,
            polar_status: None,
            detail: step.finding.clone(),
            posted: false,
        };
        tx.record_payment(job.action_id, &outcome, self.now).await?;
        tx.set_action_status(&job.key, action_status, Some(&step.finding), self.now)
            .await?;
        retract_to_review(tx, &self.lifecycle, job.case_id, step, self.now).await?;
        tx.release_held_reply(job.case_id, HeldRole::Review, self.now)
            .await?;
        Ok(())
    }
}

/// Puts a case whose approved refund cannot be carried out in front of a
/// person: `step` appended to its trace, the approval retracted (outcome
/// `review`), an engine event with the finding as reason, the deadline from
/// the configured calendar.
pub(crate) async fn retract_to_review(
    tx: &mut Tx,
    lifecycle: &Lifecycle,
    case_id: CaseId,
    step: Finding,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    let case = tx
        .case(case_id)
        .await?
        .ok_or(PaymentError::MissingCase(case_id))?;
    let transition = lifecycle
        .to_review(case.state(), &case.decision, step, true, now, now)
        .map_err(StoreError::from)?;
    tx.apply_transition(&transition).await?;
    tracing::info!(case_id = %case_id, "case sent to review by the payment stage");
    Ok(())
}

/// Whether a Polar refund carries our idempotency key.
pub fn carries_key(refund: &Refund, key: &str) -> bool {
    refund
        .metadata
        .get(KEY_METADATA)
        .and_then(MetadataValue::as_str)
        == Some(key)
}

/// The POST body: our key and case in `metadata`, `customer_request`.
fn refund_request(job: &RefundJob, post: Post) -> CreateRefund {
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert(KEY_METADATA.to_owned(), MetadataValue::Str(job.key.clone()));
    metadata.insert(
        CASE_METADATA.to_owned(),
        MetadataValue::Str(job.case_id.to_string()),
    );
    CreateRefund {
        order_id: job.order_id.clone(),
        reason: RefundReason::CustomerRequest,
        amount: job.amount,
        comment: Some(format!("refundd case {}", job.case_id)),
        revoke_benefits: post.revoke_benefits,
        metadata,
    }
}

/// Whether the pipeline holds a decision's reply for the payment stage:
/// payments are configured and the decision approves a cash refund.
pub fn holds_reply(settings: &Settings, decision: &crate::domain::Decision) -> bool {
    settings.polar.is_some()
        && decision.outcome == Outcome::Approved
        && decision
            .actions
            .iter()
            .any(|a| matches!(a, crate::domain::Action::CashRefund { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Category, Decision, ReplyKind};

    fn job() -> RefundJob {
        RefundJob {
            action_id: 7,
            case_id: CaseId(12),
            key: "case-R-12-refund-o-1".into(),
            order_id: "o-1".into(),
            amount: 900,
            currency: "EUR".into(),
            state: None,
            attempts: 0,
        }
    }

    #[test]
    fn the_refund_request_carries_our_key_and_case_in_metadata() {
        let body = serde_json::to_value(refund_request(
            &job(),
            Post {
                revoke_benefits: true,
            },
        ))
        .unwrap();
        assert_eq!(body["metadata"]["refundd_key"], "case-R-12-refund-o-1");
        assert_eq!(body["metadata"]["refundd_case"], "R-12");
        assert_eq!(body["reason"], "customer_request");
        assert_eq!(body["amount"], 900);
        assert_eq!(body["revoke_benefits"], true);
    }

    #[test]
    fn only_approved_cash_refunds_hold_the_reply_and_only_with_polar_configured() {
        let decision = |outcome, actions: Vec<Action>| Decision {
            outcome,
            category: Category::CashRefund,
            flags: Default::default(),
            actions,
            trace: vec![],
            reply: ReplyKind::CashRefundApproved,
            order_id: None,
            wallet_id: None,
            generation_id: None,
            reply_facts: Default::default(),
        };
        let refund = Action::CashRefund {
            order_id: "o-1".into(),
            amount: 900,
            currency: "EUR".into(),
        };
        let credit = Action::WalletCredit {
            wallet_id: "w".into(),
            credits: 5,
            reason: crate::domain::CreditReason::Courtesy,
            generation_id: None,
        };
        let with_polar = Settings {
            polar: Some(PolarSettings::default()),
            ..Settings::default()
        };
        let cases = [
            (
                &with_polar,
                decision(Outcome::Approved, vec![refund.clone()]),
                true,
            ),
            (
                &with_polar,
                decision(Outcome::Approved, vec![credit]),
                false,
            ),
            (
                &with_polar,
                decision(Outcome::Review, vec![refund.clone()]),
                false,
            ),
            (
                &Settings::default(),
                decision(Outcome::Approved, vec![refund]),
                false,
            ),
        ];
        for (settings, decision, held) in cases {
            assert_eq!(holds_reply(settings, &decision), held, "{decision:?}");
        }
    }
}
