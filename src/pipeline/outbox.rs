//! Delivers queued replies through a mail sink (`.eml` files or SMTP).
//!
//! Replies are stored (queued) in the same transaction as the decision
//! that caused them, so none is lost; this stage sends what is queued and
//! records the result.
//!
//! The guarantee is **at most once**: an attempt is recorded (committed)
//! before the sink is called and cleared with the outcome. If refundd dies
//! between the two, the reply may or may not have left; it is then not
//! sent again but marked failed ("delivery uncertain") and its case goes
//! to a reviewer, who can see it and answer by hand. A duplicate reply is
//! never sent by refundd itself; the price is that a reply caught in that
//! window (milliseconds per reply) needs a person. A transient failure
//! (4xx, connection) leaves the reply queued for a later pass; a permanent
//! one (5xx) marks it failed and puts its case in front of a reviewer.

use chrono::{DateTime, Utc};

use crate::queue::Lifecycle;
use crate::queue::lifecycle::review_step;
use crate::reply::{MailSink, OutgoingMessage};
use crate::store::{CaseId, Store, StoreError, StoredReply};

/// Replies one pass takes at most.
pub const PASS_LIMIT: usize = 500;

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    /// Transient failures, queued again.
    pub deferred: usize,
    /// Permanent failures, cases sent to review.
    pub failed: usize,
    /// Attempts a crash interrupted: not resent, cases sent to review.
    pub uncertain: usize,
}

/// Sends every queued reply once; returns what happened.
pub async fn deliver_queued(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    for reply in store.queued_replies(PASS_LIMIT as i64).await? {
        if !store.begin_reply_attempt(reply.id, now).await? {
            let reason = "delivery uncertain: refundd stopped while handing this reply to the mail server; \
                          it is not sent again automatically";
            tracing::error!(reply_id = reply.id, case_id = %reply.case_id, "reply delivery uncertain after a crash");
            store.finish_reply_failed(reply.id, reason, true).await?;
            review_undelivered(store, lifecycle, reply.case_id, reason, now).await?;
            report.uncertain += 1;
            continue;
        }
        deliver_one(store, sink, lifecycle, &reply, now, &mut report).await?;
    }
    Ok(report)
}

async fn deliver_one(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    reply: &StoredReply,
    now: DateTime<Utc>,
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let outgoing = OutgoingMessage {
        message_id: reply.message_id.clone(),
        raw: reply.raw.clone(),
    };
    match sink.send(&outgoing, &reply.to_addr).await {
        Ok(()) => {
            store.finish_reply_sent(reply.id, now).await?;
            report.sent += 1;
        }
        Err(err) if err.is_transient() => {
            tracing::warn!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply deferred");
            store
                .finish_reply_failed(reply.id, &err.to_string(), false)
                .await?;
            report.deferred += 1;
        }
        Err(err) => {
            tracing::error!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply refused");
            store
                .finish_reply_failed(reply.id, &err.to_string(), true)
                .await?;
            review_undelivered(
                store,
                lifecycle,
                reply.case_id,
                &format!("the reply could not be delivered: {err}"),
                now,
            )
            .await?;
            report.failed += 1;
        }
    }
    Ok(())
}

/// Puts a case whose reply could not be delivered in front of a reviewer,
/// keeping its decision and adding why to the trace. Reloads and tries
/// again when it loses the compare-and-set (a reviewer or a customer may be
/// acting on the case at the same moment).
async fn review_undelivered(
    store: &Store,
    lifecycle: &Lifecycle,
    case_id: CaseId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut attempts = 0;
    loop {
        let Some(case) = store.case(case_id).await? else {
            return Ok(());
        };
        let transition = lifecycle.to_review(
            case.state(),
            &case.decision,
            review_step(reason),
            false,
            now,
            now,
        )?;
        let mut tx = store.begin().await?;
        match tx.apply_transition(&transition).await {
            Err(StoreError::Conflict { .. }) if attempts < 3 => {
                attempts += 1;
                tx.rollback().await?;
            }
            other => {
                other?;
                return tx.commit().await;
            }
        }
    }
}
