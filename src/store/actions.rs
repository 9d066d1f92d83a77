//! Actions: cash refunds and wallet credits, recorded under an idempotency
//! key before they are carried out, so that a resumed pipeline never pays
//! or credits twice. A wallet credit is a ledger row refundd writes itself,
//! exactly once per case and generation.
//!
//! Fails with [`StoreError`]; recording the same key twice is not an error
//! (the second call reports `false`).

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{ActionStatus, CaseId, StoredAction};
use super::{Result, Store, StoreError, Tx, on_pool, on_tx};
use crate::domain::{Action, CreditReason};

/// Columns of an action, in `action_columns!()` order.
type ActionTuple = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// The columns of `ActionTuple`, as a literal for `concat!`.
macro_rules! action_columns {
    () => {
        "id, case_id, kind, idempotency_key, order_id, wallet_id, amount, currency, credits,
         reason, generation_id, status, detail, created_at, updated_at"
    };
}

fn action_from(t: ActionTuple) -> Result<StoredAction> {
    let (
        id,
        case_id,
        kind,
        idempotency_key,
        order_id,
        wallet_id,
        amount,
        currency,
        credits,
        reason,
        generation_id,
        status,
        detail,
        created_at,
        updated_at,
    ) = t;
    let missing = |column: &str| StoreError::Corrupt {
        what: "action",
        reason: format!("action {id} of kind {kind} has no {column}"),
    };
    let action = match kind.as_str() {
        "cash_refund" => Action::CashRefund {
            order_id: order_id.ok_or_else(|| missing("order_id"))?,
            amount: amount.ok_or_else(|| missing("amount"))?,
            currency: currency.ok_or_else(|| missing("currency"))?,
        },
        "wallet_credit" => Action::WalletCredit {
            wallet_id: wallet_id.ok_or_else(|| missing("wallet_id"))?,
            credits: credits.ok_or_else(|| missing("credits"))?,
            reason: credit_reason(&reason.ok_or_else(|| missing("reason"))?)?,
            generation_id,
        },
        other => {
            return Err(StoreError::Corrupt {
                what: "action kind",
                reason: format!("unknown kind `{other}`"),
            });
        }
    };
    Ok(StoredAction {
        id,
        case_id: CaseId(case_id),
        action,
        status: status.parse().map_err(corrupt("action status"))?,
        idempotency_key,
        detail,
        created_at,
        updated_at,
    })
}

pub(crate) fn credit_reason(name: &str) -> Result<CreditReason> {
    [
        CreditReason::Courtesy,
        CreditReason::FailedGeneration,
        CreditReason::Goodwill,
    ]
    .into_iter()
    .find(|r| r.as_str() == name)
    .ok_or_else(|| StoreError::Corrupt {
        what: "credit reason",
        reason: format!("unknown reason `{name}`"),
    })
}

/// The ledger id of the wallet credit a case grants: one per case and
/// generation, or per case and reason when no generation is named.
pub fn case_credit_id(
    case_id: CaseId,
    generation_id: Option<&str>,
    reason: CreditReason,
) -> String {
    match generation_id {
        Some(generation) => format!("wc-case-{}-{generation}", case_id.0),
        None => format!("wc-case-{}-{}", case_id.0, reason.as_str()),
    }
}

impl Tx {
    /// Records an action of a case under `idempotency_key`. Returns
    /// `false` (and changes nothing) when the key is already recorded.
    ///
    /// Low level: it checks nothing. refundd records actions only through
    /// [`Tx::apply_transition`], which reserves money against what is left
    /// of the order; this is public for test fixtures that need states the
    /// lifecycle never produces (a refund of an order Polar does not know).
    #[doc(hidden)]
    pub async fn insert_action(
        &mut self,
        case_id: CaseId,
        action: &Action,
        status: ActionStatus,
        idempotency_key: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let (kind, order_id, wallet_id, amount, currency, credits, reason, generation_id) =
            match action {
                Action::CashRefund {
                    order_id,
                    amount,
                    currency,
                } => (
                    "cash_refund",
                    Some(order_id.as_str()),
                    None,
                    Some(*amount),
                    Some(currency.as_str()),
                    None,
                    None,
                    None,
                ),
                Action::WalletCredit {
                    wallet_id,
                    credits,
                    reason,
                    generation_id,
                } => (
                    "wallet_credit",
                    None,
                    Some(wallet_id.as_str()),
                    None,
                    None,
                    Some(*credits),
                    Some(reason.as_str()),
                    generation_id.as_deref(),
                ),
            };
        let done = on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO actions (case_id, kind, idempotency_key, order_id, wallet_id, amount,
                                      currency, credits, reason, generation_id, status,
                                      created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(case_id.0)
            .bind(kind)
            .bind(idempotency_key)
            .bind(order_id)
            .bind(wallet_id)
            .bind(amount)
            .bind(currency)
            .bind(credits)
            .bind(reason)
            .bind(generation_id)
            .bind(status.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("record an action"))?;
        Ok(done == 1)
    }

    /// Writes the wallet credit a case grants into the ledger, exactly once
    /// per case and generation (id [`case_credit_id`]), and records it as a
    /// `done` action under the same key. A credit for a failed generation
    /// also marks that generation refunded, so the next decision sees it.
    /// Returns `false` (and changes nothing) when the case already granted
    /// it. `action` must be a [`Action::WalletCredit`].
    pub(super) async fn insert_wallet_credit_once(
        &mut self,
        case_id: CaseId,
        action: &Action,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let Action::WalletCredit {
            wallet_id,
            credits,
            reason,
            generation_id,
        } = action
        else {
            return Err(StoreError::Invalid {
                what: "a wallet credit",
                reason: "the action is a cash refund".into(),
            });
        };
        let id = case_credit_id(case_id, generation_id.as_deref(), *reason);
        let inserted = on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO wallet_credits (id, wallet_id, credits, reason, generation_id,
                                             case_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(wallet_id)
            .bind(*credits)
            .bind(reason.as_str())
            .bind(generation_id)
            .bind(case_id.0)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("write a wallet credit"))?
            == 1;
        if !inserted {
            return Ok(false);
        }
        if let (CreditReason::FailedGeneration, Some(generation)) = (reason, generation_id) {
            on_tx!(self, conn => {
                sqlx::query("UPDATE generations SET refunded = TRUE WHERE id = $1")
                    .bind(generation)
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(db("mark a generation refunded"))?;
        }
        self.insert_action(case_id, action, ActionStatus::Done, &id, at)
            .await?;
        Ok(true)
    }

    /// Moves an action to `status` with a detail (Polar's refund id, or why
    /// it failed).
    pub async fn set_action_status(
        &mut self,
        idempotency_key: &str,
        status: ActionStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE actions SET status = $2, detail = $3, updated_at = $4
                 WHERE idempotency_key = $1",
            )
            .bind(idempotency_key)
            .bind(status.as_str())
            .bind(detail)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("update an action"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "action",
                id: idempotency_key.to_owned(),
            });
        }
        Ok(())
    }
}

impl Store {
    /// Moves an action to `status` (see [`Tx::set_action_status`]).
    pub async fn set_action_status(
        &self,
        idempotency_key: &str,
        status: ActionStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.set_action_status(idempotency_key, status, detail, at)
            .await?;
        tx.commit().await
    }

    /// The actions of a case, in the order they were recorded.
    pub async fn actions_for_case(&self, case_id: CaseId) -> Result<Vec<StoredAction>> {
        let rows: Vec<ActionTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                action_columns!(),
                " FROM actions WHERE case_id = $1 ORDER BY id"
            ))
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list a case's actions"))?;
        rows.into_iter().map(action_from).collect()
    }

    /// Actions still `pending` (to resume after a crash), oldest first.
    pub async fn pending_actions(&self, limit: i64) -> Result<Vec<StoredAction>> {
        let rows: Vec<ActionTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                action_columns!(),
                " FROM actions WHERE status = 'pending' ORDER BY id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list pending actions"))?;
        rows.into_iter().map(action_from).collect()
    }
}
