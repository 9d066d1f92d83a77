//! The daemon's periodic stages: payments (with the dispute poll) and the
//! deadline sweep. Each runs one pass, then waits for its period, a
//! wake-up, or shutdown; a failed pass is logged once and retried next time.

use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Wakes, sleep_or_shutdown};
use crate::act::{ledger_sync, payments};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::sweep;
use crate::store::Store;

/// Carries out approved cash refunds whenever decisions were recorded (or
/// every `poll`), and polls Polar's disputes every `dispute_poll_interval`.
pub async fn run_payments(
    store: Store,
    settings: Arc<Settings>,
    poll: Duration,
    wakes: Wakes,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let Some(polar) = settings.polar.clone() else {
        return;
    };
    let mut last_dispute_poll: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        match payments::run_configured(&store, &settings, Utc::now()).await {
            Ok(report) => {
                for _ in 0..report.refused {
                    metrics.action_failed("cash_refund");
                }
                if report != payments::PaymentReport::default() {
                    wakes.replies_queued.notify_one();
                }
            }
            Err(err) => tracing::warn!(error = %err, "payment pass failed"),
        }
        if last_dispute_poll.is_none_or(|at| at.elapsed() >= polar.dispute_poll_period()) {
            last_dispute_poll = Some(Instant::now());
            match payments::client(&polar) {
                Ok(client) => {
                    if let Err(err) = ledger_sync::poll_disputes(&store, &client).await {
                        tracing::warn!(error = %err, "dispute poll failed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "no Polar client for the dispute poll"),
            }
        }
        if wait(poll, &wakes.decisions_recorded, &shutdown).await {
            return;
        }
    }
}

/// Runs the deadline sweep every `period`; wakes the outbox when it queued
/// a digest or a closing note.
pub async fn run_sweep(
    store: Store,
    settings: Arc<Settings>,
    templates: crate::reply::Templates,
    period: Duration,
    replies_queued: Arc<Notify>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match sweep::sweep(&store, &settings, &templates, Utc::now()).await {
            Ok(report) => {
                if report.digest_message_id.is_some() || !report.closed.is_empty() {
                    replies_queued.notify_one();
                }
            }
            Err(err) => tracing::warn!(error = %err, "deadline sweep failed"),
        }
        if sleep_or_shutdown(period, &shutdown).await {
            return;
        }
    }
}

/// Waits for `period`, a wake-up, or shutdown; true on shutdown.
async fn wait(period: Duration, wake: &Notify, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => false,
        _ = wake.notified() => false,
        _ = shutdown.cancelled() => true,
    }
}
