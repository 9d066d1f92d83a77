//! The outbox task: sends queued replies whenever woken (or every poll),
//! backing off while the mail server defers. At shutdown it flushes what
//! is queued and then closes the sink (an SMTP server hears `QUIT` on every
//! open connection).

use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::pipeline::outbox;
use crate::queue::Lifecycle;
use crate::reply::MailSink;
use crate::retry::Backoff;
use crate::store::Store;

/// Delivers the outbox until shutdown; a pass is never interrupted midway.
/// Closes the sink before it returns.
pub async fn run_outbox(
    store: Store,
    sink: Arc<dyn MailSink>,
    lifecycle: Lifecycle,
    replies_queued: Arc<Notify>,
    poll: Duration,
    backoff: Backoff,
    shutdown: CancellationToken,
) {
    deliver_until_shutdown(
        &store,
        sink.as_ref(),
        &lifecycle,
        &replies_queued,
        poll,
        backoff,
        &shutdown,
    )
    .await;
    sink.close().await;
}

async fn deliver_until_shutdown(
    store: &Store,
    sink: &dyn MailSink,
    lifecycle: &Lifecycle,
    replies_queued: &Notify,
    poll: Duration,
    backoff: Backoff,
    shutdown: &CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let wait = match outbox::deliver_queued(store, sink, lifecycle, Utc::now()).await {
            Ok(report) if report.deferred > 0 => {
                failures += 1;
                backoff.delay(failures)
            }
            // A full pass: more replies are waiting, send them now.
            Ok(report) if report.sent + report.failed + report.uncertain >= outbox::PASS_LIMIT => {
                failures = 0;
                Duration::ZERO
            }
            Ok(_) => {
                failures = 0;
                poll
            }
            Err(err) => {
                tracing::warn!(error = %err, "outbox pass failed");
                failures += 1;
                backoff.delay(failures)
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = replies_queued.notified(), if failures == 0 => {}
            _ = shutdown.cancelled() => {
                // Flush what is queued before leaving.
                if let Err(err) = outbox::deliver_queued(store, sink, lifecycle, Utc::now()).await {
                    tracing::warn!(error = %err, "final outbox pass failed");
                }
                return;
            }
        }
    }
}
