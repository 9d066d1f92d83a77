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
//! window (milliseconds) needs a person. A transient failure
//! (4xx, connection) leaves the reply queued for a later pass; a permanent
//! one (5xx) marks it failed and puts its case in front of a reviewer.
//!
//! A pass keeps [`MailSink::parallelism`] sends in flight (one per SMTP
//! connection): each queued reply of the pass is taken by exactly one of
//! them, and its attempt row is what makes a second hand-over impossible
//! even across processes. Attempts are recorded a few replies per send in
//! flight at a time (one transaction each way, not two per reply), so a
//! crash can leave that many replies uncertain.

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::queue::Lifecycle;
use crate::queue::lifecycle::review_step;
use crate::reply::{MailSink, OutgoingMessage, SendError};
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
/// returns what happened. Replies go in hand-overs of
/// [`HANDOVER_PER_SEND`] per send in flight: their attempts are recorded
/// in one transaction before any is handed over, and the accepted ones in
/// one after, instead of two transactions per reply. After a database
/// failure no further reply is started, but the sends in flight are
/// awaited (a send is never abandoned between the hand-over and its
/// record); then the first failure is returned.
pub async fn deliver_queued(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, StoreError> {
    let queued = store.queued_replies(PASS_LIMIT as i64).await?;
    let parallelism = sink.parallelism().max(1);
    let mut report = DeliveryReport::default();
    for handover in queued.chunks(parallelism * HANDOVER_PER_SEND) {
        report = hand_over(store, sink, lifecycle, handover, now, report).await?;
    }
    Ok(report)
}

/// Replies handed over together per send in flight. A crash during a
/// hand-over leaves all of its replies uncertain (each goes to a reviewer,
/// none is sent twice), so it stays small.
const HANDOVER_PER_SEND: usize = 4;

/// One hand-over: the attempts recorded, the replies sent, the outcomes
/// recorded; counted into `report`.
async fn hand_over(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    replies: &[StoredReply],
    now: DateTime<Utc>,
    mut report: DeliveryReport,
) -> Result<DeliveryReport, StoreError> {
    let ids: Vec<i64> = replies.iter().map(|reply| reply.id).collect();
    let fresh = store.begin_reply_attempts(&ids, now).await?;
    let mut to_send = Vec::with_capacity(replies.len());
    for (reply, fresh) in replies.iter().zip(fresh) {
        if fresh {
            to_send.push(reply.clone());
        } else {
            report = report.count(mark_uncertain(store, lifecycle, reply, now).await?);
        }
    }
    let outcomes: Vec<(StoredReply, Result<(), SendError>)> = futures::stream::iter(to_send)
        .map(|reply| async move {
            let outgoing = OutgoingMessage {
                message_id: reply.message_id.clone(),
                raw: reply.raw.clone(),
            };
            let outcome = sink.send(&outgoing, &reply.to_addr).await;
            (reply, outcome)
        })
        .buffer_unordered(sink.parallelism().max(1))
        .collect()
        .await;
    let sent: Vec<i64> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(reply, _)| reply.id)
        .collect();
    store.finish_replies_sent(&sent, now).await?;
    for (reply, outcome) in outcomes {
        let delivery = match outcome {
            Ok(()) => Delivery::Sent,
            Err(err) => record_unsent(store, lifecycle, &reply, &err, now).await?,
        };
        report = report.count(delivery);
    }
    Ok(report)
}

/// A reply whose earlier attempt a crash interrupted: not sent again,
/// marked failed, its case in front of a reviewer.
async fn mark_uncertain(
    store: &Store,
    lifecycle: &Lifecycle,
    reply: &StoredReply,
    now: DateTime<Utc>,
) -> Result<Delivery, StoreError> {
    let reason = "delivery uncertain: refundd stopped while handing this reply to the mail server; \
                  it is not sent again automatically";
    tracing::error!(reply_id = reply.id, case_id = %reply.case_id, "reply delivery uncertain after a crash");
    store.finish_reply_failed(reply.id, reason, true).await?;
    review_undelivered(store, lifecycle, reply.case_id, reason, now).await?;
    Ok(Delivery::Uncertain)
}

/// A reply the mail server did not take: queued again after a transient
/// failure (4xx, connection), failed with its case in review after a
/// permanent one (5xx).
async fn record_unsent(
    store: &Store,
    lifecycle: &Lifecycle,
    reply: &StoredReply,
    err: &SendError,
    now: DateTime<Utc>,
) -> Result<Delivery, StoreError> {
    if err.is_transient() {
        tracing::warn!(reply_id = reply.id, case_id = %reply.case_id, error = %err, "reply deferred");
        store
            .finish_reply_failed(reply.id, &err.to_string(), false)
            .await?;
        return Ok(Delivery::Deferred);
    }
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
