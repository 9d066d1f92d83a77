//! The payment stage's rows: where each cash refund stands at Polar
//! (`payments`), the replies held back until it is known (`held_replies`),
//! the ledger's refunds with their status, and the Polar webhook inbox
//! (`webhook_deliveries`). Schema: `migrations/*/0002_payments.sql`.
//!
//! Takes: values from `act`. Gives: claimed refund jobs, totals and rows.
//! A refund's unit of work runs in ONE [`Tx`]: [`Tx::claim_refund_job`]
//! locks the action row (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so another
//! instance skips it; SQLite: the transaction holds the write lock), and a
//! crash anywhere before commit rolls everything back to "not yet
//! recorded", which the next pass reconciles with Polar by key.
//! Never: calls Polar, decides, or reads the clock. Fails with
//! [`StoreError`]; a second refund in flight on the same order is a unique
//! violation ([`StoreError::is_unique_violation`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::error::{corrupt, db};
use super::records::{CaseId, NewReply};
use super::{Result, Store, StoreError, Tx, TxInner, on_pool, on_tx};
use crate::domain::UnknownName;

/// Declares a small state enum whose names are the migration's `CHECK`.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident, $vocab:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        vocabulary: $vocab,
                        name: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

names! {
    /// Where a cash refund stands at Polar (see the migration for each).
    PaymentState, "payment state" {
        /// Claimed by a pass (never committed on its own).
        InFlight => "in_flight",
        /// The POST's outcome is unknown; look it up by key next pass.
        Unclear => "unclear",
        /// Polar took it.
        Accepted => "accepted",
        /// Polar refused it, or it failed at Polar.
        Refused => "refused",
        /// A check or guard rail sent the case to a person, unpaid.
        Review => "review",
        /// Recorded what would have been refunded; nothing posted.
        DryRun => "dry_run",
    }
}

names! {
    /// Which of a case's held replies.
    HeldRole, "held reply role" {
        /// "Your refund is on its way": released once Polar accepted it.
        Approved => "approved",
        /// "A person will look": released when the case goes to review.
        Review => "review",
    }
}

names! {
    /// Where a held reply stands.
    HeldState, "held reply state" {
        /// Waiting for the payment stage.
        Held => "held",
        /// Moved into the outbox.
        Released => "released",
        /// Not sent: the other role was released.
        Dropped => "dropped",
    }
}

names! {
    /// How far a refund in the ledger got.
    LedgerRefundStatus, "ledger refund status" {
        /// Polar accepted it; the money is on its way.
        Pending => "pending",
        /// The money is back with the customer.
        Succeeded => "succeeded",
    }
}

names! {
    /// Where a webhook delivery stands.
    DeliveryState, "webhook delivery state" {
        /// Stored and answered; not applied yet.
        Received => "received",
        /// Applied to the ledger.
        Applied => "applied",
        /// Nothing to apply (unknown wallet, event type or order); `detail` says why.
        Skipped => "skipped",
        /// Could not be applied for good; `detail` says why.
        Failed => "failed",
    }
}

/// A cash refund action the payment stage has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundJob {
    /// The action's row id.
    pub action_id: i64,
    pub case_id: CaseId,
    /// The action's idempotency key (`case-R-n-refund-{order}`).
    pub key: String,
    pub order_id: String,
    /// Minor units, excluding tax.
    pub amount: i64,
    /// As the ledger spells it (uppercase).
    pub currency: String,
    /// `None` on the first attempt; `Unclear` after an unknown outcome.
    pub state: Option<PaymentState>,
    /// POSTs sent so far.
    pub attempts: i64,
}

/// A `payments` row, for the console and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub action_id: i64,
    pub case_id: CaseId,
    pub key: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub state: PaymentState,
    pub attempts: i64,
    pub polar_refund_id: Option<String>,
    /// Polar's word for the refund (`pending`, `succeeded`, …).
    pub polar_status: Option<String>,
    pub detail: Option<String>,
    pub posted_at: Option<DateTime<Utc>>,
}

/// How a claimed refund ends this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOutcome {
    pub state: PaymentState,
    pub polar_refund_id: Option<String>,
    pub polar_status: Option<String>,
    pub detail: String,
    /// Whether a POST was sent in this attempt.
    pub posted: bool,
}

/// A held reply, for the console and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReply {
    pub id: i64,
    pub case_id: CaseId,
    pub role: HeldRole,
    pub message_id: String,
    pub to_addr: String,
    pub state: HeldState,
    /// The outbox row, once released.
    pub reply_id: Option<i64>,
}

/// A stored webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub webhook_id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub state: DeliveryState,
    pub detail: Option<String>,
}

/// What the ledger knows about an order, for the pre-refund checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOrderMoney {
    /// Net amount paid, minor units.
    pub amount: i64,
    /// Uppercase ISO 4217.
    pub currency: String,
    /// Sum of the ledger's refunds (pending and succeeded) of the order.
    pub refunded: i64,
    /// Credits consumed by successful generations paid with the order.
    pub credits_used: i64,
}

type JobTuple = (
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

type PaymentTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

type HeldTuple = (i64, i64, String, String, String, String, Option<i64>);

type DeliveryTuple = (
    String,
    String,
    Vec<u8>,
    DateTime<Utc>,
    String,
    Option<String>,
);

/// The columns of `PaymentTuple`, as a literal for `concat!`.
macro_rules! payment_columns {
    () => {
        "action_id, case_id, idempotency_key, order_id, amount, currency, state, attempts,
         polar_refund_id, polar_status, detail, posted_at"
    };
}

/// The candidate query: cash refunds still pending whose payment is new or
/// unclear, after a cursor. `$1` = cursor (action id).
macro_rules! job_sql {
    ($lock:literal) => {
        concat!(
            "SELECT a.id, a.case_id, a.idempotency_key, a.order_id, a.amount, a.currency,
                    p.state, p.attempts
             FROM actions a LEFT JOIN payments p ON p.action_id = a.id
             WHERE a.kind = 'cash_refund' AND a.status = 'pending' AND a.id > $1
               AND (p.state IS NULL OR p.state IN ('in_flight', 'unclear'))
             ORDER BY a.id LIMIT 1",
            $lock
        )
    };
}

fn job_from(t: JobTuple) -> Result<RefundJob> {
    let (action_id, case_id, key, order_id, amount, currency, state, attempts) = t;
    let missing = |column: &str| StoreError::Corrupt {
        what: "cash refund action",
        reason: format!("action {action_id} has no {column}"),
    };
    Ok(RefundJob {
        action_id,
        case_id: CaseId(case_id),
        key,
        order_id: order_id.ok_or_else(|| missing("order_id"))?,
        amount: amount.ok_or_else(|| missing("amount"))?,
        currency: currency.ok_or_else(|| missing("currency"))?,
        state: state
            .map(|s| s.parse())
            .transpose()
            .map_err(corrupt("payment state"))?,
        attempts: attempts.unwrap_or(0),
    })
}

fn payment_from(t: PaymentTuple) -> Result<PaymentRow> {
    let (
        action_id,
        case_id,
        key,
        order_id,
        amount,
        currency,
        state,
        attempts,
        polar_refund_id,
        polar_status,
        detail,
        posted_at,
    ) = t;
    Ok(PaymentRow {
        action_id,
        case_id: CaseId(case_id),
        key,
        order_id,
        amount,
        currency,
        state: state.parse().map_err(corrupt("payment state"))?,
        attempts,
        polar_refund_id,
        polar_status,
        detail,
        posted_at,
    })
}

fn held_from(t: HeldTuple) -> Result<HeldReply> {
    let (id, case_id, role, message_id, to_addr, state, reply_id) = t;
    Ok(HeldReply {
        id,
        case_id: CaseId(case_id),
        role: role.parse().map_err(corrupt("held reply role"))?,
        message_id,
        to_addr,
        state: state.parse().map_err(corrupt("held reply state"))?,
        reply_id,
    })
}

fn delivery_from(t: DeliveryTuple) -> Result<WebhookDelivery> {
    let (webhook_id, event_type, body, received_at, state, detail) = t;
    Ok(WebhookDelivery {
        webhook_id,
        event_type,
        body,
        received_at,
        state: state.parse().map_err(corrupt("webhook delivery state"))?,
        detail,
    })
}

impl Tx {
    /// Takes the next cash refund to work on (action id above `after`):
    /// pending, and either never tried or left unclear. On PostgreSQL the
    /// action row stays locked until this transaction ends and other
    /// instances skip it.
    pub async fn claim_refund_job(&mut self, after: i64) -> Result<Option<RefundJob>> {
        let row: Option<JobTuple> = match &mut self.inner {
            TxInner::Sqlite(t) => {
                sqlx::query_as(job_sql!(""))
                    .bind(after)
                    .fetch_optional(&mut **t)
                    .await
            }
            TxInner::Postgres(t) => {
                sqlx::query_as(job_sql!(" FOR UPDATE OF a SKIP LOCKED"))
                    .bind(after)
                    .fetch_optional(&mut **t)
                    .await
            }
        }
        .map_err(db("claim a cash refund"))?;
        row.map(job_from).transpose()
    }

    /// Marks a claimed refund in flight (creating its payment row). A
    /// second refund in flight on the same order is a unique violation:
    /// roll back and leave that one for later.
    pub async fn mark_payment_in_flight(
        &mut self,
        job: &RefundJob,
        at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO payments (action_id, case_id, idempotency_key, order_id, amount,
                                       currency, state, attempts, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'in_flight', 0, $7, $7)
                 ON CONFLICT (action_id) DO UPDATE SET state = 'in_flight', updated_at = $7",
            )
            .bind(job.action_id)
            .bind(job.case_id.0)
            .bind(&job.key)
            .bind(&job.order_id)
            .bind(job.amount)
            .bind(&job.currency)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("mark a refund in flight"))?;
        Ok(())
    }

    /// Records how a claimed refund ended this pass.
    pub async fn record_payment(
        &mut self,
        action_id: i64,
        outcome: &PaymentOutcome,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE payments
                 SET state = $2, polar_refund_id = COALESCE($3, polar_refund_id),
                     polar_status = COALESCE($4, polar_status), detail = $5,
                     attempts = attempts + CASE WHEN $6 THEN 1 ELSE 0 END,
                     posted_at = CASE WHEN $2 = 'accepted' THEN COALESCE(posted_at, $7)
                                      ELSE posted_at END,
                     updated_at = $7
                 WHERE action_id = $1",
            )
            .bind(action_id)
            .bind(outcome.state.as_str())
            .bind(&outcome.polar_refund_id)
            .bind(&outcome.polar_status)
            .bind(&outcome.detail)
            .bind(outcome.posted)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("record a refund's outcome"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "payment",
                id: action_id.to_string(),
            });
        }
        Ok(())
    }

    /// The refunds Polar accepted from refundd in `[since, until)` in one
    /// currency (minor units): the daily total's "so far".
    pub async fn accepted_refund_total(
        &mut self,
        currency: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments
                 WHERE state = 'accepted' AND upper(currency) = upper($1)
                   AND posted_at >= $2 AND posted_at < $3",
            )
            .bind(currency)
            .bind(since)
            .bind(until)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("sum today's refunds"))
    }

    /// What the ledger knows about an order's money, if it knows the order.
    pub async fn ledger_order_money(&mut self, order_id: &str) -> Result<Option<LedgerOrderMoney>> {
        let row: Option<(i64, String, i64, i64)> = on_tx!(self, conn => {
            sqlx::query_as(
                "SELECT o.amount, o.currency,
                        CAST(COALESCE((SELECT SUM(r.amount) FROM refunds r
                                       WHERE r.order_id = o.id), 0) AS BIGINT),
                        CAST(COALESCE((SELECT SUM(g.credits) FROM generations g
                                       WHERE g.order_id = o.id AND g.status = 'succeeded'), 0)
                             AS BIGINT)
                 FROM orders o WHERE o.id = $1",
            )
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("read an order's money"))?;
        Ok(row.map(
            |(amount, currency, refunded, credits_used)| LedgerOrderMoney {
                amount,
                currency,
                refunded,
                credits_used,
            },
        ))
    }

    /// Writes a refund into the ledger with its status, or updates it.
    pub async fn upsert_ledger_refund(
        &mut self,
        id: &str,
        order_id: &str,
        amount: i64,
        status: LedgerRefundStatus,
        created_at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO refunds (id, order_id, amount, created_at, status)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE
                 SET order_id = excluded.order_id, amount = excluded.amount,
                     status = excluded.status",
            )
            .bind(id)
            .bind(order_id)
            .bind(amount)
            .bind(created_at)
            .bind(status.as_str())
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("write a ledger refund"))?;
        Ok(())
    }

    /// Removes a refund that returned nothing (failed or canceled at
    /// Polar) from the ledger. Returns whether it was there.
    pub async fn remove_ledger_refund(&mut self, id: &str) -> Result<bool> {
        let done = on_tx!(self, conn => {
            sqlx::query("DELETE FROM refunds WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("remove a ledger refund"))?;
        Ok(done > 0)
    }

    /// Holds a rendered reply until the payment stage decides which of the
    /// case's held replies goes out.
    pub async fn hold_reply(&mut self, reply: &NewReply, role: HeldRole) -> Result<i64> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "INSERT INTO held_replies (case_id, role, message_id, to_addr, subject, raw,
                                           state, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'held', $7, $7)
                 RETURNING id",
            )
            .bind(reply.case_id.0)
            .bind(role.as_str())
            .bind(&reply.message_id)
            .bind(&reply.to_addr)
            .bind(&reply.subject)
            .bind(&reply.raw)
            .bind(reply.at)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("hold a reply"))
    }

    /// Moves the case's held reply of `role` into the outbox (queued, dated
    /// `at` so the loop guard counts it) and drops its other held replies.
    /// Returns the outbox ids released (none when nothing was held).
    pub async fn release_held_reply(
        &mut self,
        case_id: CaseId,
        role: HeldRole,
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let held: Vec<(i64,)> = on_tx!(self, conn => {
            sqlx::query_as(
                "SELECT id FROM held_replies
                 WHERE case_id = $1 AND role = $2 AND state = 'held' ORDER BY id",
            )
            .bind(case_id.0)
            .bind(role.as_str())
            .fetch_all(&mut *conn)
            .await
        })
        .map_err(db("find held replies"))?;
        let mut released = Vec::with_capacity(held.len());
        for (held_id,) in held {
            let reply_id: i64 = on_tx!(self, conn => {
                sqlx::query_scalar(
                    "INSERT INTO replies (case_id, message_id, to_addr, subject, raw, status,
                                          attempts, created_at)
                     SELECT case_id, message_id, to_addr, subject, raw, 'queued', 0, $2
                     FROM held_replies WHERE id = $1
                     RETURNING id",
                )
                .bind(held_id)
                .bind(at)
                .fetch_one(&mut *conn)
                .await
            })
            .map_err(db("release a held reply"))?;
            on_tx!(self, conn => {
                sqlx::query(
                    "UPDATE held_replies SET state = 'released', reply_id = $2, updated_at = $3
                     WHERE id = $1",
                )
                .bind(held_id)
                .bind(reply_id)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
            })
            .map_err(db("mark a held reply released"))?;
            released.push(reply_id);
        }
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE held_replies SET state = 'dropped', updated_at = $2
                 WHERE case_id = $1 AND state = 'held'",
            )
            .bind(case_id.0)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("drop the other held replies"))?;
        Ok(released)
    }

    /// The payment of the action with this idempotency key, if any.
    pub async fn payment_by_key(&mut self, key: &str) -> Result<Option<PaymentRow>> {
        let row: Option<PaymentTuple> = on_tx!(self, conn => {
            sqlx::query_as(concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE idempotency_key = $1"
            ))
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("read a payment"))?;
        row.map(payment_from).transpose()
    }

    /// Whether the ledger knows the order.
    pub async fn ledger_has_order(&mut self, order_id: &str) -> Result<bool> {
        let found: Option<String> = on_tx!(self, conn => {
            sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_optional(&mut *conn)
                .await
        })
        .map_err(db("look an order up"))?;
        Ok(found.is_some())
    }

    /// The wallet whose email is `email` (case-insensitive; an active one,
    /// then the newest, as the policy matches senders).
    pub async fn wallet_id_by_email(&mut self, email: &str) -> Result<Option<String>> {
        on_tx!(self, conn => {
            sqlx::query_scalar(
                "SELECT id FROM wallets WHERE lower(email) = lower($1)
                 ORDER BY CASE status WHEN 'active' THEN 0 ELSE 1 END, created_at DESC, id
                 LIMIT 1",
            )
            .bind(email.trim())
            .fetch_optional(&mut *conn)
            .await
        })
        .map_err(db("find a wallet by email"))
    }

    /// Inserts an order the ledger does not know yet; an order the ledger
    /// already has (the app's export is authoritative) is left alone.
    /// Returns whether it was inserted.
    pub async fn insert_order_if_absent(&mut self, order: &crate::domain::Order) -> Result<bool> {
        let done = on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO orders (id, wallet_id, product, credits, amount, tax_amount, currency,
                                     invoice_number, receipt_number, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&order.id)
            .bind(&order.wallet_id)
            .bind(&order.product)
            .bind(order.credits)
            .bind(order.amount)
            .bind(order.tax_amount)
            .bind(&order.currency)
            .bind(&order.invoice_number)
            .bind(&order.receipt_number)
            .bind(order.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("insert an order"))?;
        Ok(done == 1)
    }

    /// Records what became of a webhook delivery.
    pub async fn mark_webhook_delivery(
        &mut self,
        webhook_id: &str,
        state: DeliveryState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $2, detail = $3, applied_at = $4
                 WHERE webhook_id = $1",
            )
            .bind(webhook_id)
            .bind(state.as_str())
            .bind(detail)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("record a webhook delivery's outcome"))?;
        Ok(())
    }
}

impl Store {
    /// The payments of a case's cash refunds.
    pub async fn payments_for_case(&self, case_id: CaseId) -> Result<Vec<PaymentRow>> {
        let rows: Vec<PaymentTuple> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE case_id = $1 ORDER BY action_id"
            ))
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list a case's payments"))?;
        rows.into_iter().map(payment_from).collect()
    }

    /// The held replies of a case (any state), oldest first.
    pub async fn held_replies_for_case(&self, case_id: CaseId) -> Result<Vec<HeldReply>> {
        let rows: Vec<HeldTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, case_id, role, message_id, to_addr, state, reply_id
                 FROM held_replies WHERE case_id = $1 ORDER BY id",
            )
            .bind(case_id.0)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list a case's held replies"))?;
        rows.into_iter().map(held_from).collect()
    }

    /// The status of a refund in the ledger, if the ledger has it.
    pub async fn ledger_refund_status(
        &self,
        id: &str,
    ) -> Result<Option<(i64, LedgerRefundStatus)>> {
        let row: Option<(i64, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT amount, status FROM refunds WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })
        .map_err(db("read a ledger refund"))?;
        row.map(|(amount, status)| {
            status
                .parse()
                .map(|s| (amount, s))
                .map_err(corrupt("ledger refund status"))
        })
        .transpose()
    }

    /// Stores a webhook delivery once per `webhook-id`. Returns `false`
    /// (and changes nothing) for a delivery already stored: a replay.
    pub async fn insert_webhook_delivery(
        &self,
        webhook_id: &str,
        event_type: &str,
        body: &[u8],
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event_type, body, received_at, state)
                 VALUES ($1, $2, $3, $4, 'received')
                 ON CONFLICT (webhook_id) DO NOTHING",
            )
            .bind(webhook_id)
            .bind(event_type)
            .bind(body)
            .bind(at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("store a webhook delivery"))?;
        Ok(done == 1)
    }

    /// Deliveries not applied yet, oldest first.
    pub async fn received_webhook_deliveries(&self, limit: i64) -> Result<Vec<WebhookDelivery>> {
        let rows: Vec<DeliveryTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT webhook_id, event_type, body, received_at, state, detail
                 FROM webhook_deliveries WHERE state = 'received'
                 ORDER BY received_at, webhook_id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list webhook deliveries"))?;
        rows.into_iter().map(delivery_from).collect()
    }

    /// One delivery by its `webhook-id`.
    pub async fn webhook_delivery(&self, webhook_id: &str) -> Result<Option<WebhookDelivery>> {
        let row: Option<DeliveryTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT webhook_id, event_type, body, received_at, state, detail
                 FROM webhook_deliveries WHERE webhook_id = $1",
            )
            .bind(webhook_id)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read a webhook delivery"))?;
        row.map(delivery_from).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payment_vocabulary_parses_back_from_its_name() {
        for state in [
            PaymentState::InFlight,
            PaymentState::Unclear,
            PaymentState::Accepted,
            PaymentState::Refused,
            PaymentState::Review,
            PaymentState::DryRun,
        ] {
            assert_eq!(state.as_str().parse::<PaymentState>().unwrap(), state);
        }
        for role in [HeldRole::Approved, HeldRole::Review] {
            assert_eq!(role.as_str().parse::<HeldRole>().unwrap(), role);
        }
        for state in [HeldState::Held, HeldState::Released, HeldState::Dropped] {
            assert_eq!(state.as_str().parse::<HeldState>().unwrap(), state);
        }
        for state in [
            DeliveryState::Received,
            DeliveryState::Applied,
            DeliveryState::Skipped,
            DeliveryState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<DeliveryState>().unwrap(), state);
        }
        assert!("paid".parse::<PaymentState>().is_err());
        assert_eq!(
            "succeeded".parse::<LedgerRefundStatus>().unwrap(),
            LedgerRefundStatus::Succeeded
        );
    }
}
