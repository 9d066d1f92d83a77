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
//!
//! A pass keeps [`MailSink::parallelism`] sends in flight (one per SMTP
//! connection): each queued reply of the pass is taken by exactly one of
//! them, and its attempt row is what makes a second hand-over impossible
//! even across processes.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// What became of one reply in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Sent,
    Deferred,
    Failed,
    Uncertain,
}

impl DeliveryReport {
    fn count(mut self, delivery: Delivery) -> Self {
        match delivery {
            Delivery::Sent => self.sent += 1,
            Delivery::Deferred => self.deferred += 1,
            Delivery::Failed => self.failed += 1,
            Delivery::Uncertain => self.uncertain += 1,
        }
        self
    }
}

/// Sends every queued reply once, [`MailSink::parallelism`] at a time;
/// returns what happened. After a database failure no further reply is
/// started, but the sends in flight are awaited and recorded (a send is
/// never abandoned between the hand-over and its record); then the first
/// failure is returned.
pub async fn deliver_queued(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, StoreError> {
    let queued = store.queued_replies(PASS_LIMIT as i64).await?;
    let stopped = AtomicBool::new(false);
    let stopped = &stopped;
    let outcomes: Vec<Result<Option<Delivery>, StoreError>> = futures::stream::iter(queued)
        .map(|reply| async move {
            if stopped.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let outcome = attempt(store, sink, lifecycle, &reply, now).await;
            if outcome.is_err() {
                stopped.store(true, Ordering::Relaxed);
            }
            outcome.map(Some)
        })
        .buffer_unordered(sink.parallelism().max(1))
        .collect()
        .await;
    let mut report = DeliveryReport::default();
    for outcome in outcomes {
        if let Some(delivery) = outcome? {
            report = report.count(delivery);
        }
    }
    Ok(report)
}

/// One reply: the attempt recorded, handed over, the outcome recorded.
async fn attempt(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    reply: &StoredReply,
    now: DateTime<Utc>,
) -> Result<Delivery, StoreError> {
    if !store.begin_reply_attempt(reply.id, now).await? {
        let reason = "delivery uncertain: refundd stopped while handing this reply to the mail server; \
                      it is not sent again automatically";
        tracing::error!(reply_id = reply.id, case_id = %reply.case_id, "reply delivery uncertain after a crash");
        store.finish_reply_failed(reply.id, reason, true).await?;
        review_undelivered(store, lifecycle, reply.case_id, reason, now).await?;
        return Ok(Delivery::Uncertain);
    }
    deliver_one(store, sink, lifecycle, reply, now).await
}

async fn deliver_one(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    reply: &StoredReply,
    now: DateTime<Utc>,
) -> Result<Delivery, StoreError> {
    let outgoing = OutgoingMessage {
        message_id: reply.message_id.clone(),
        raw: reply.raw.clone(),
    };
    match sink.send(&outgoing, &reply.to_addr).await {
        Ok(()) => {
            store.finish_reply_sent(reply.id, now).await?;
            Ok(Delivery::Sent)
        }
        Err(err) if err.is_transient() => {
            tracing::warn!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply deferred");
            store
                .finish_reply_failed(reply.id, &err.to_string(), false)
                .await?;
            Ok(Delivery::Deferred)
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
            Ok(Delivery::Failed)
        }
    }
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
