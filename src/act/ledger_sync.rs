//! Keeps the ledger in step with Polar: applies stored webhook deliveries
//! and polls Polar's disputes.
//!
//! Takes: deliveries the webhook endpoint stored ([`super::webhooks`]), a
//! [`PolarClient`] (for `order.refunded`, whose payload lists no refunds,
//! and for the dispute poll). Gives:
//! - `order.paid`: the order, when the ledger knows the buyer's wallet by
//!   email and the order's metadata says how many credits it holds (an
//!   order the ledger has is left alone: the app's export is authoritative);
//! - `refund.created` / `refund.updated` / `order.refunded`: the order's
//!   refunds in the ledger with their status (`pending`, `succeeded`);
//!   failed or canceled refunds removed. So refunds made outside refundd
//!   (in Polar's dashboard, by Polar itself) count for the policy. A refund
//!   of ours (our key in its metadata) that fails later puts its case in
//!   review;
//! - disputes: the ledger's chargebacks (open statuses -> `open`; `won`;
//!   `lost` and `prevented` -> `lost`, money went back either way), so the
//!   policy sees open chargebacks (P6).
//!
//! Pending refunds count as refunded in the ledger on purpose: Polar's
//! pending refunds do not lower `refundable_amount`, and a second request
//! for an order whose refund is on its way must not be approved again.
//! Never: posts anything to Polar. Fails with [`SyncError`]; a delivery
//! that cannot be applied for good is marked `skipped` or `failed` with the
//! reason, and the pass goes on.

use chrono::{DateTime, Utc};

use super::guard;
use super::payments::{KEY_METADATA, retract_to_review};
use super::polar::webhook::{WebhookEvent, parse_event};
use super::polar::{
    DisputeQuery, DisputeStatus, MetadataValue, Order as PolarOrder, PolarClient, PolarError,
    Refund, RefundStatus,
};
use crate::domain::{Chargeback, ChargebackStatus, Order};
use crate::queue::Lifecycle;
use crate::store::{
    ActionStatus, DeliveryState, LedgerRefundStatus, PaymentOutcome, PaymentState, Store,
    StoreError, Tx, WebhookDelivery,
};

/// Why a sync step stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed.
    #[error("database error while syncing the ledger with Polar")]
    Store(#[from] StoreError),
    /// Polar could not be read.
    #[error("cannot read from Polar while syncing the ledger")]
    Polar(#[source] PolarError),
    /// The case of one of our refunds is missing.
    #[error("payment stage failed while syncing the ledger")]
    Payment(#[from] super::payments::PaymentError),
}

impl SyncError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Store(source) => source.is_transient(),
            SyncError::Polar(source) => source.is_transient(),
            SyncError::Payment(source) => source.is_transient(),
        }
    }
}

/// Applies every stored delivery not applied yet, oldest first; returns
/// how many were handled. A transient failure stops the pass and leaves
/// the delivery for the next one.
pub async fn apply_received(
    store: &Store,
    client: Option<&PolarClient>,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<usize, SyncError> {
    let mut handled = 0;
    loop {
        let batch = store.received_webhook_deliveries(50).await?;
        if batch.is_empty() {
            return Ok(handled);
        }
        for delivery in &batch {
            apply_delivery(store, client, delivery, lifecycle, now).await?;
            handled += 1;
        }
    }
}

/// Applies one delivery in one transaction and records what became of it.
pub async fn apply_delivery(
    store: &Store,
    client: Option<&PolarClient>,
    delivery: &WebhookDelivery,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<DeliveryState, SyncError> {
    let event = match parse_event(&delivery.body) {
        Ok(event) => event,
        Err(err) => {
            let mut tx = store.begin().await?;
            let detail = format!("not a readable Polar event: {err}");
            tx.mark_webhook_delivery(
                &delivery.webhook_id,
                DeliveryState::Skipped,
                Some(&detail),
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(DeliveryState::Skipped);
        }
    };
    // Read from Polar before the transaction opens: no lock waits on it.
    let refunds = match (&event, client) {
        (WebhookEvent::OrderRefunded(order), Some(client)) => Some(
            client
                .list_refunds_for_order(&order.id)
                .await
                .map_err(SyncError::Polar)?,
        ),
        _ => None,
    };
    let mut tx = store.begin().await?;
    let (state, detail) = match event {
        WebhookEvent::OrderPaid(order) => order_paid(&mut tx, &order).await?,
        WebhookEvent::OrderRefunded(order) => match refunds {
            Some(refunds) if tx.ledger_has_order(&order.id).await? => {
                for refund in &refunds {
                    apply_refund(&mut tx, refund, lifecycle, now).await?;
                }
                (DeliveryState::Applied, None)
            }
            Some(_) => (
                DeliveryState::Skipped,
                Some("the order is not in the ledger".to_owned()),
            ),
            None => (
                DeliveryState::Skipped,
                Some("no Polar client to list the order's refunds".to_owned()),
            ),
        },
        WebhookEvent::RefundCreated(refund) | WebhookEvent::RefundUpdated(refund) => {
            apply_refund(&mut tx, &refund, lifecycle, now).await?
        }
        WebhookEvent::Unknown { event_type, .. } => (
            DeliveryState::Skipped,
            Some(format!("event type {event_type} is not used")),
        ),
    };
    tx.mark_webhook_delivery(&delivery.webhook_id, state, detail.as_deref(), now)
        .await?;
    tx.commit().await?;
    tracing::info!(webhook_id = %delivery.webhook_id, state = %state, "webhook delivery handled");
    Ok(state)
}

async fn order_paid(
    tx: &mut Tx,
    order: &PolarOrder,
) -> Result<(DeliveryState, Option<String>), SyncError> {
    let skipped = |why: &str| Ok((DeliveryState::Skipped, Some(why.to_owned())));
    let Some(email) = order.customer.email.as_deref() else {
        return skipped("the order's customer has no email");
    };
    let Some(wallet_id) = tx.wallet_id_by_email(email).await? else {
        return skipped("no wallet in the ledger has the customer's email");
    };
    let credits = match order.metadata.get("credits") {
        Some(MetadataValue::Int(n)) if *n >= 0 => *n,
        Some(MetadataValue::Str(s)) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => return skipped("the order's metadata.credits is not a count"),
        },
        _ => return skipped("the order's metadata does not say how many credits it holds"),
    };
    let product = order
        .product
        .as_ref()
        .map(|p| p.name.clone())
        .or_else(|| order.description.clone())
        .unwrap_or_else(|| "Polar order".to_owned());
    let inserted = tx
        .insert_order_if_absent(&Order {
            id: order.id.to_lowercase(),
            wallet_id,
            product,
            credits,
            amount: order.net_amount,
            tax_amount: Some(order.tax_amount),
            currency: order.currency.to_uppercase(),
            invoice_number: order.invoice_number.clone(),
            receipt_number: order.receipt_number.clone(),
            created_at: order.created_at,
        })
        .await?;
    if inserted {
        Ok((DeliveryState::Applied, None))
    } else {
        skipped("the order is already in the ledger")
    }
}

/// Writes one Polar refund into the ledger (or removes it when it returned
/// nothing), and keeps our payment row in step when the refund is ours.
async fn apply_refund(
    tx: &mut Tx,
    refund: &Refund,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<(DeliveryState, Option<String>), SyncError> {
    let ours = match refund
        .metadata
        .get(KEY_METADATA)
        .and_then(MetadataValue::as_str)
    {
        Some(key) => tx.payment_by_key(key).await?,
        None => None,
    };
    if !tx.ledger_has_order(&refund.order_id).await? && ours.is_none() {
        return Ok((
            DeliveryState::Skipped,
            Some("the order is not in the ledger".to_owned()),
        ));
    }
    let status = match refund.status {
        RefundStatus::Succeeded => Some(LedgerRefundStatus::Succeeded),
        RefundStatus::Pending => Some(LedgerRefundStatus::Pending),
        _ => None,
    };
    match status {
        Some(status) => {
            tx.upsert_ledger_refund(
                &refund.id,
                &refund.order_id,
                refund.amount,
                status,
                refund.created_at,
            )
            .await?;
        }
        None => {
            tx.remove_ledger_refund(&refund.id).await?;
        }
    }
    if let Some(payment) = ours.filter(|p| p.state == PaymentState::Accepted) {
        if status.is_some() {
            let outcome = PaymentOutcome {
                state: PaymentState::Accepted,
                polar_refund_id: Some(refund.id.clone()),
                polar_status: Some(refund.status.to_string()),
                detail: format!("Polar reports refund {} {}", refund.id, refund.status),
                posted: false,
            };
            tx.record_payment(payment.action_id, &outcome, now).await?;
        } else {
            let step = guard::refused(
                &format!(
                    "refund {} became {} after Polar accepted it",
                    refund.id, refund.status
                ),
                payment.amount,
                &payment.currency,
            );
            let outcome = PaymentOutcome {
                state: PaymentState::Refused,
                polar_refund_id: Some(refund.id.clone()),
                polar_status: Some(refund.status.to_string()),
                detail: step.finding.clone(),
                posted: false,
            };
            tx.record_payment(payment.action_id, &outcome, now).await?;
            tx.set_action_status(&payment.key, ActionStatus::Failed, Some(&step.finding), now)
                .await?;
            retract_to_review(tx, lifecycle, payment.case_id, step, now).await?;
        }
    }
    Ok((DeliveryState::Applied, None))
}

/// The ledger's word for a Polar dispute status.
pub fn chargeback_status(status: &DisputeStatus) -> ChargebackStatus {
    match status {
        DisputeStatus::Won => ChargebackStatus::Won,
        DisputeStatus::Lost | DisputeStatus::Prevented => ChargebackStatus::Lost,
        _ if status.is_open() => ChargebackStatus::Open,
        _ => ChargebackStatus::Lost,
    }
}

/// Reads every dispute from Polar and upserts the chargebacks of orders
/// the ledger knows; returns how many were written.
pub async fn poll_disputes(store: &Store, client: &PolarClient) -> Result<usize, SyncError> {
    let disputes = client
        .list_disputes(&DisputeQuery::default())
        .await
        .map_err(SyncError::Polar)?;
    let mut tx = store.begin().await?;
    let mut written = 0;
    for dispute in &disputes {
        if !tx.ledger_has_order(&dispute.order_id).await? {
            continue;
        }
        tx.upsert_chargeback(&Chargeback {
            id: dispute.id.clone(),
            order_id: dispute.order_id.clone(),
            status: chargeback_status(&dispute.status),
            created_at: dispute.created_at,
        })
        .await?;
        written += 1;
    }
    tx.commit().await?;
    tracing::info!(disputes = disputes.len(), written, "dispute poll done");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispute_statuses_map_to_the_ledgers_three() {
        let cases = [
            (DisputeStatus::EarlyWarning, ChargebackStatus::Open),
            (DisputeStatus::NeedsResponse, ChargebackStatus::Open),
            (DisputeStatus::UnderReview, ChargebackStatus::Open),
            (
                DisputeStatus::Unknown("new_state".into()),
                ChargebackStatus::Open,
            ),
            (DisputeStatus::Won, ChargebackStatus::Won),
            (DisputeStatus::Lost, ChargebackStatus::Lost),
            (DisputeStatus::Prevented, ChargebackStatus::Lost),
        ];
        for (status, expected) in cases {
            assert_eq!(chargeback_status(&status), expected, "{status}");
        }
    }
}
