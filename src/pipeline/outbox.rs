//! Delivers queued replies through a mail sink (`.eml` files or SMTP).
//!
//! Replies are stored (queued) in the same transaction as the decision
//! that caused them, so none is lost; this stage sends what is queued and
//! records the result. A transient failure leaves the reply queued for the
//! next pass; a permanent one marks it failed for a person to look at.

use chrono::{DateTime, Utc};

use crate::reply::{MailSink, OutgoingMessage};
use crate::store::{Store, StoreError};

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
}

/// Sends every queued reply once; returns what happened.
pub async fn deliver_queued(store: &Store, sink: &dyn MailSink, now: DateTime<Utc>) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    for reply in store.queued_replies(500).await? {
        let outgoing = OutgoingMessage { message_id: reply.message_id.clone(), raw: reply.raw.clone() };
        match sink.send(&outgoing, &reply.to_addr).await {
            Ok(()) => {
                store.mark_reply_sent(reply.id, now).await?;
                report.sent += 1;
            }
            Err(err) if err.is_transient() => {
                tracing::warn!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply deferred");
                store.mark_reply_failed(reply.id, &err.to_string(), false).await?;
                report.deferred += 1;
            }
            Err(err) => {
                tracing::error!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply failed");
                store.mark_reply_failed(reply.id, &err.to_string(), true).await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}
