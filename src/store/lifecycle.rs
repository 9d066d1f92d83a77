//! The one store call that moves a case: [`Tx::apply_transition`].
//!
//! Takes a [`Transition`] the lifecycle built and applies all of it inside
//! the caller's transaction: the compare-and-set on the case version (or
//! the new case), the case event, the claim rule, the deadline, and, for
//! moves that decide, the decision's effects — wallet credits written into the ledger, cash
//! refunds reserved as pending actions. Gives the case's new state.
//!
//! Money: a cash refund is reserved only if it fits in what is left of its
//! order, counted as the order's amount minus every refund the ledger shows
//! minus every cash refund still pending for it, of any case. The order row
//! is locked first (`FOR UPDATE` on PostgreSQL; SQLite transactions begin
//! `IMMEDIATE`, so they are serialized already), so two approvals of one
//! order racing each other are counted one after the other and the second
//! sees the first.
//!
//! Fails with [`StoreError`]: a stale version or a claim someone else holds
//! is [`StoreError::Conflict`]; a refund beyond what is left is
//! [`StoreError::OverRefund`]; a move the lifecycle table forbids is
//! [`StoreError::Invalid`]. Nothing is written unless the caller commits.

use chrono::{DateTime, Utc};

use super::error::db;
use super::records::{ActionStatus, CaseId, NewCase};
use super::{AuditAction, Result, StoreError, Tx, on_tx};
use crate::domain::{Action, Outcome};
use crate::queue::lifecycle::{CaseState, ClaimRule, Target, Transition};

impl Tx {
    /// Applies `t` (see the module docs) and returns the case's state
    /// after it.
    pub async fn apply_transition(&mut self, t: &Transition) -> Result<CaseState> {
        t.check()?;
        let state = match &t.target {
            Target::New(opening) => {
                let decision = t.decision.as_ref().ok_or_else(|| StoreError::Invalid {
                    what: "a new case",
                    reason: "a case is opened with a decision".into(),
                })?;
                let id = self
                    .create_case(&NewCase {
                        sender: opening.sender.clone(),
                        subject: opening.subject.clone(),
                        language: opening.language,
                        decision: decision.clone(),
                        status: t.to,
                        deadline: t.deadline,
                        at: t.at,
                    })
                    .await?;
                CaseState {
                    id,
                    version: NEW_CASE_VERSION,
                    status: t.to,
                    deadline: t.deadline,
                }
            }
            Target::Existing(from) => {
                self.check_claim(from.id, &t.claim, t.at).await?;
                let version = match &t.decision {
                    Some(decision) => {
                        self.update_case_decision(
                            from.id,
                            from.version,
                            decision,
                            t.to,
                            t.deadline,
                            t.at,
                        )
                        .await?
                    }
                    None => self.current_version(from).await?,
                };
                if t.clears_claim() {
                    self.clear_case_claim(from.id).await?;
                }
                CaseState {
                    id: from.id,
                    version,
                    status: t.to,
                    deadline: t.deadline,
                }
            }
        };
        self.add_case_event(state.id, &t.actor, t.from(), t.to, &t.reason, t.at)
            .await?;
        if let Some(decision) = t
            .decision
            .as_ref()
            .filter(|d| t.cause.decides() && d.outcome == Outcome::Approved)
        {
            for action in &decision.actions {
                self.carry_out(state, action, t.at).await?;
            }
        }
        Ok(state)
    }

    /// Only the claim holder (or an admin taking over, audited) may make a
    /// move bound by the claim rule.
    async fn check_claim(
        &mut self,
        case_id: CaseId,
        rule: &ClaimRule,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let ClaimRule::Holder {
            reviewer,
            may_take_over,
        } = rule
        else {
            return Ok(());
        };
        let holder: Option<String> = on_tx!(self, conn => {
            sqlx::query_scalar("SELECT reviewer FROM case_claims WHERE case_id = $1")
                .bind(case_id.0)
                .fetch_optional(&mut *conn)
                .await
        })
        .map_err(db("read a case claim"))?;
        match holder {
            Some(holder) if !holder.eq_ignore_ascii_case(reviewer) => {
                if !may_take_over {
                    return Err(StoreError::Conflict {
                        what: "case",
                        id: case_id.to_string(),
                        detail: format!(
                            "it is claimed by {holder}; only they (or an admin) may decide it"
                        ),
                    });
                }
                self.add_audit(
                    &crate::queue::Actor::Reviewer(reviewer.clone()).to_string(),
                    AuditAction::TakeOver,
                    Some(case_id),
                    &serde_json::json!({ "claimed_by": holder }),
                    at,
                )
                .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The version of a case an event-only move leaves as it is, checked
    /// against what the caller read (compare-and-set without a change).
    async fn current_version(&mut self, from: &CaseState) -> Result<i64> {
        let current = self
            .case(from.id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "case",
                id: from.id.to_string(),
            })?;
        if current.status != from.status {
            return Err(StoreError::Conflict {
                what: "case",
                id: from.id.to_string(),
                detail: format!("it is {} now, not {}", current.status, from.status),
            });
        }
        Ok(current.version)
    }

    /// Writes a wallet credit into the ledger (once per case and
    /// generation) or reserves a cash refund for the payment stage.
    async fn carry_out(
        &mut self,
        case: CaseState,
        action: &Action,
        at: DateTime<Utc>,
    ) -> Result<()> {
        match action {
            Action::WalletCredit { .. } => {
                self.insert_wallet_credit_once(case.id, action, at).await?;
            }
            Action::CashRefund {
                order_id, amount, ..
            } => {
                let left = self.left_to_refund(order_id).await?;
                if *amount > left {
                    return Err(StoreError::OverRefund {
                        order_id: order_id.clone(),
                        left,
                        asked: *amount,
                    });
                }
                let key = refund_key(case.id, order_id);
                if !self
                    .insert_action(case.id, action, ActionStatus::Pending, &key, at)
                    .await?
                {
                    // The case refunded this order before (a refund Polar
                    // refused, then a reviewer approved again): the new
                    // approval is a new refund, keyed by the case version.
                    let key = format!("{key}-v{}", case.version);
                    self.insert_action(case.id, action, ActionStatus::Pending, &key, at)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// What is left to refund of an order, with the order locked until the
    /// transaction ends: its amount minus the ledger's refunds minus the
    /// cash refunds pending for it (any case). An order the ledger does not
    /// know has nothing left.
    pub async fn left_to_refund(&mut self, order_id: &str) -> Result<i64> {
        let amount: Option<i64> = match &mut self.inner {
            super::TxInner::Sqlite(t) => {
                sqlx::query_scalar("SELECT amount FROM orders WHERE id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut **t)
                    .await
            }
            super::TxInner::Postgres(t) => {
                sqlx::query_scalar("SELECT amount FROM orders WHERE id = $1 FOR UPDATE")
                    .bind(order_id)
                    .fetch_optional(&mut **t)
                    .await
            }
        }
        .map_err(db("lock an order"))?;
        let Some(amount) = amount else {
            return Ok(0);
        };
        let committed: i64 = on_tx!(self, conn => {
            sqlx::query_scalar(
                "SELECT CAST(
                    (SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = $1)
                  + (SELECT COALESCE(SUM(amount), 0) FROM actions
                     WHERE kind = 'cash_refund' AND order_id = $1 AND status = 'pending')
                 AS BIGINT)",
            )
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("sum an order's refunds"))?;
        Ok((amount - committed).max(0))
    }
}

/// The compare-and-set version of a case just created.
const NEW_CASE_VERSION: i64 = 1;

/// The idempotency key of a case's cash refund of an order (also Polar's
/// `metadata.refundd_key`).
pub fn refund_key(case_id: CaseId, order_id: &str) -> String {
    format!("case-{case_id}-refund-{order_id}")
}
