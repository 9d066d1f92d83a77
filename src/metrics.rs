//! Prometheus metrics and health endpoints.
//!
//! Takes increments from the stages through a [`Metrics`] handle (cheap to
//! clone, shared counters inside) and the [`Store`] at scrape time; gives
//! an axum [`router`] with `/metrics` (text exposition format 0.0.4),
//! `/healthz` (the process answers: 200) and `/readyz` (the database
//! answers and the mailbox has no problem only an operator can fix: 200,
//! else 503 with the reason). Series, all prefixed `refundd_` except the
//! standard start time:
//!
//! - `refundd_messages_ingested_total` (counter)
//! - `refundd_decisions_total{outcome}` (counter, every outcome from 0)
//! - `refundd_action_failures_total{kind}` (counter: `cash_refund`, `wallet_credit`)
//! - `refundd_outbox_depth` (gauge: queued replies, read from the store)
//! - `refundd_oldest_open_deadline_seconds` (gauge: seconds until the
//!   earliest review deadline, negative once breached; absent with no case
//!   in review)
//! - `refundd_open_cases{status}` (gauge: `review`, `needs_info`)
//! - `refundd_imap_connected` (gauge 0/1)
//! - `refundd_mailbox_blocked` (gauge 0/1: 1 while the mailbox task waits
//!   for an operator, e.g. a processed folder the server will not create)
//! - `refundd_shadow_verdicts{agree}` (gauge: reviewer decisions on shadow
//!   cases, matching the engine's proposal or not) and
//!   `refundd_shadow_agreement_ratio` (gauge, once any exists)
//! - `refundd_database_up` (gauge 0/1: whether the scrape could read the store)
//! - `process_start_time_seconds` (gauge, Unix time)
//!
//! Never fails a scrape because the database is down: the store's gauges
//! are left out and `refundd_database_up` says 0. Never logs personal data.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::Outcome;
use crate::pipeline::Processed;
use crate::store::{QueueGauges, Store};

/// The action kinds whose failures are counted.
pub const ACTION_KINDS: [&str; 2] = ["cash_refund", "wallet_credit"];

/// The shared counters. Clone it into every stage that reports.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started_at: DateTime<Utc>,
    messages_ingested: AtomicU64,
    decisions: Mutex<BTreeMap<&'static str, u64>>,
    action_failures: Mutex<BTreeMap<String, u64>>,
    imap_connected: AtomicBool,
    /// Why the mailbox cannot be worked until an operator acts, if so.
    mailbox_problem: Mutex<Option<String>>,
}

impl Metrics {
    /// Counters at zero for a process started at `started_at`.
    pub fn new(started_at: DateTime<Utc>) -> Metrics {
        let decisions = Outcome::ALL.iter().map(|o| (o.as_str(), 0)).collect();
        let action_failures = ACTION_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
        Metrics {
            inner: Arc::new(Inner {
                started_at,
                messages_ingested: AtomicU64::new(0),
                decisions: Mutex::new(decisions),
                action_failures: Mutex::new(action_failures),
                imap_connected: AtomicBool::new(false),
                mailbox_problem: Mutex::new(None),
            }),
        }
    }

    /// `n` new messages were stored by ingest (duplicates not counted).
    pub fn messages_ingested(&self, n: u64) {
        self.inner.messages_ingested.fetch_add(n, Ordering::Relaxed);
    }

    /// The pipeline decided a message with `outcome`.
    pub fn decision(&self, outcome: Outcome) {
        *lock(&self.inner.decisions)
            .entry(outcome.as_str())
            .or_insert(0) += 1;
    }

    /// Counts the decisions of a pipeline pass.
    pub fn observe_processed(&self, processed: &[Processed]) {
        for p in processed {
            self.decision(p.outcome);
        }
    }

    /// An action of `kind` (`cash_refund`, `wallet_credit`) failed.
    pub fn action_failed(&self, kind: &str) {
        *lock(&self.inner.action_failures)
            .entry(kind.to_owned())
            .or_insert(0) += 1;
    }

    /// Whether the IMAP session is up.
    pub fn set_imap_connected(&self, connected: bool) {
        self.inner
            .imap_connected
            .store(connected, Ordering::Relaxed);
    }

    /// Sets (or, with `None`, clears) the reason the mailbox task is
    /// waiting for an operator; `/readyz` reports it.
    pub fn set_mailbox_problem(&self, problem: Option<String>) {
        *lock(&self.inner.mailbox_problem) = problem;
    }

    /// The reason the mailbox task is waiting for an operator, if it is.
    pub fn mailbox_problem(&self) -> Option<String> {
        lock(&self.inner.mailbox_problem).clone()
    }

    /// The exposition text: the counters, and the store's gauges when the
    /// scrape could read them (`None`: the database is down).
    pub fn render(&self, gauges: Option<&QueueGauges>, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let i = &self.inner;
        family(
            &mut out,
            "refundd_messages_ingested_total",
            "counter",
            "Messages stored by ingest.",
        );
        let _ = writeln!(
            out,
            "refundd_messages_ingested_total {}",
            i.messages_ingested.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "refundd_decisions_total",
            "counter",
            "Messages decided, by outcome.",
        );
        for (outcome, n) in lock(&i.decisions).iter() {
            let _ = writeln!(
                out,
                "refundd_decisions_total{{outcome=\"{}\"}} {n}",
                label(outcome)
            );
        }
        family(
            &mut out,
            "refundd_action_failures_total",
            "counter",
            "Refunds and credits that failed, by kind.",
        );
        for (kind, n) in lock(&i.action_failures).iter() {
            let _ = writeln!(
                out,
                "refundd_action_failures_total{{kind=\"{}\"}} {n}",
                label(kind)
            );
        }
        family(
            &mut out,
            "refundd_imap_connected",
            "gauge",
            "1 while the IMAP session is up.",
        );
        let _ = writeln!(
            out,
            "refundd_imap_connected {}",
            u8::from(i.imap_connected.load(Ordering::Relaxed))
        );
        family(
            &mut out,
            "refundd_mailbox_blocked",
            "gauge",
            "1 while the mailbox waits for an operator (see /readyz for why).",
        );
        let _ = writeln!(
            out,
            "refundd_mailbox_blocked {}",
            u8::from(lock(&i.mailbox_problem).is_some())
        );
        family(
            &mut out,
            "refundd_database_up",
            "gauge",
            "1 when this scrape could read the database.",
        );
        let _ = writeln!(out, "refundd_database_up {}", u8::from(gauges.is_some()));
        if let Some(g) = gauges {
            family(
                &mut out,
                "refundd_outbox_depth",
                "gauge",
                "Replies queued for sending.",
            );
            let _ = writeln!(out, "refundd_outbox_depth {}", g.outbox_depth);
            family(
                &mut out,
                "refundd_shadow_verdicts",
                "gauge",
                "Reviewer decisions on cases the engine only proposed (shadow mode), by whether they matched the proposal.",
            );
            let disagree = g.shadow.decided - g.shadow.agree;
            let _ = writeln!(
                out,
                "refundd_shadow_verdicts{{agree=\"true\"}} {}",
                g.shadow.agree
            );
            let _ = writeln!(out, "refundd_shadow_verdicts{{agree=\"false\"}} {disagree}");
            if let Some(rate) = g.shadow.rate() {
                family(
                    &mut out,
                    "refundd_shadow_agreement_ratio",
                    "gauge",
                    "Share of shadow-mode cases a reviewer decided as the engine proposed (outcome, action, amount).",
                );
                let _ = writeln!(out, "refundd_shadow_agreement_ratio {rate:.4}");
            }
            family(
                &mut out,
                "refundd_open_cases",
                "gauge",
                "Open cases, by status.",
            );
            let _ = writeln!(
                out,
                "refundd_open_cases{{status=\"review\"}} {}",
                g.in_review
            );
            let _ = writeln!(
                out,
                "refundd_open_cases{{status=\"needs_info\"}} {}",
                g.needs_info
            );
            if let Some(deadline) = g.oldest_open_deadline {
                family(
                    &mut out,
                    "refundd_oldest_open_deadline_seconds",
                    "gauge",
                    "Seconds until the earliest review deadline; negative once breached.",
                );
                let _ = writeln!(
                    out,
                    "refundd_oldest_open_deadline_seconds {}",
                    (deadline - now).num_seconds()
                );
            }
        }
        family(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
        );
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            i.started_at.timestamp()
        );
        out
    }
}

/// Counters stay usable even if a thread panicked while holding the lock.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped per the exposition format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    store: Store,
    clock: fn() -> DateTime<Utc>,
}

/// `/metrics`, `/healthz` and `/readyz`, with the wall clock.
pub fn router(metrics: Metrics, store: Store) -> Router {
    router_with_clock(metrics, store, Utc::now)
}

/// The same routes with an injected clock (tests).
pub fn router_with_clock(metrics: Metrics, store: Store, clock: fn() -> DateTime<Utc>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(ready))
        .with_state(Scrape {
            metrics,
            store,
            clock,
        })
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    let gauges = match s.store.queue_gauges().await {
        Ok(g) => Some(g),
        Err(err) => {
            tracing::warn!(error = %err, "metrics scrape cannot read the database");
            None
        }
    };
    let body = s.metrics.render(gauges.as_ref(), (s.clock)());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn ready(State(s): State<Scrape>) -> impl IntoResponse {
    if let Err(err) = s.store.ping().await {
        tracing::warn!(error = %err, "not ready: the database does not answer");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable\n".to_owned(),
        );
    }
    match s.metrics.mailbox_problem() {
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: mailbox: {problem}\n"),
        ),
        None => (StatusCode::OK, "ready\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_exposition_lists_every_series_with_its_value() {
        let m = Metrics::new(t("2026-06-01T00:00:00Z"));
        m.messages_ingested(3);
        m.decision(Outcome::Review);
        m.decision(Outcome::Review);
        m.action_failed("cash_refund");
        m.set_imap_connected(true);
        let gauges = QueueGauges {
            outbox_depth: 2,
            oldest_open_deadline: Some(t("2026-06-01T10:00:00Z")),
            in_review: 1,
            needs_info: 0,
            shadow: crate::store::ShadowAgreement {
                decided: 4,
                agree: 3,
            },
        };
        let text = m.render(Some(&gauges), t("2026-06-01T12:00:00Z"));
        for line in [
            "refundd_messages_ingested_total 3",
            "refundd_decisions_total{outcome=\"review\"} 2",
            "refundd_decisions_total{outcome=\"approved\"} 0",
            "refundd_action_failures_total{kind=\"cash_refund\"} 1",
            "refundd_action_failures_total{kind=\"wallet_credit\"} 0",
            "refundd_imap_connected 1",
            "refundd_mailbox_blocked 0",
            "refundd_outbox_depth 2",
            "refundd_oldest_open_deadline_seconds -7200",
            "refundd_database_up 1",
            "refundd_shadow_verdicts{agree=\"true\"} 3",
            "refundd_shadow_verdicts{agree=\"false\"} 1",
            "refundd_shadow_agreement_ratio 0.7500",
            "process_start_time_seconds 1780272000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_scrape_without_the_database_says_so_and_keeps_the_counters() {
        let m = Metrics::new(t("2026-06-01T00:00:00Z"));
        m.messages_ingested(1);
        let text = m.render(None, t("2026-06-01T00:00:00Z"));
        assert!(text.contains("refundd_database_up 0\n"));
        assert!(text.contains("refundd_messages_ingested_total 1\n"));
        assert!(!text.contains("refundd_outbox_depth"));
    }

    #[test]
    fn a_label_value_cannot_break_the_line() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
