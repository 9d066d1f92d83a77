//! The mailbox task: new mail in, decided, then moved — in that order.
//!
//! One pass ([`MailboxSync::sync_imap`]) reads the UID cursor, fetches the
//! messages after it (`BODY.PEEK[]` + INTERNALDATE), stores each durably,
//! lets the pipeline decide everything stored, and only then moves each
//! message to the processed folder and advances the cursor. A crash
//! anywhere re-fetches at most what was not yet moved; the store's
//! Message-ID + hash dedupe makes the second sight a no-op. A UIDVALIDITY
//! change rescans the folder the same way.

use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{Wakes, sleep_or_shutdown};
use crate::config::Settings;
use crate::ingest::imap::{self, ImapConfig, ImapCursor, ImapError, ImapMailbox, Wake};
use crate::ingest::maildir::Maildir;
use crate::ingest::{self, IngestError, RawMessage};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError};
use crate::retry::Backoff;
use crate::store::{Inserted, MailboxCursor, Store, StoreError};

/// Messages one pass reads at most (bounded memory on a backlog).
const PASS_MESSAGES: usize = 200;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages read from the mailbox.
    pub fetched: usize,
    /// Messages decided into cases.
    pub processed: usize,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("IMAP")]
    Imap(#[from] ImapError),
    #[error("storing a message failed")]
    Ingest(#[from] IngestError),
    #[error("the database failed")]
    Store(#[from] StoreError),
    #[error("processing failed")]
    Pipeline(#[from] PipelineError),
    #[error("the Maildir failed")]
    Maildir(#[from] std::io::Error),
}

impl SyncError {
    /// Whether reconnecting / trying again can help.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Imap(e) => e.is_transient(),
            SyncError::Ingest(e) => e.is_transient(),
            SyncError::Store(e) => e.is_transient(),
            SyncError::Pipeline(e) => e.is_transient(),
            SyncError::Maildir(_) => true,
        }
    }
}

/// Everything a mailbox pass needs.
pub struct MailboxSync {
    store: Store,
    pipeline: Arc<Pipeline>,
    settings: Arc<Settings>,
    metrics: Metrics,
}

impl MailboxSync {
    /// A pass over the given store with the given pipeline.
    pub fn new(
        store: Store,
        pipeline: Arc<Pipeline>,
        settings: Arc<Settings>,
        metrics: Metrics,
    ) -> MailboxSync {
        MailboxSync {
            store,
            pipeline,
            settings,
            metrics,
        }
    }

    /// Stores one message; counts it when it is new.
    async fn ingest(&self, raw: RawMessage) -> Result<(), SyncError> {
        if let Inserted::New(_) = ingest::store_message(&self.store, raw).await? {
            self.metrics.messages_ingested(1);
        }
        Ok(())
    }

    /// Decides everything stored and not yet decided.
    async fn decide_pending(&self) -> Result<usize, SyncError> {
        let processed = self.pipeline.process_pending(Utc::now()).await?;
        self.metrics.observe_processed(&processed);
        Ok(processed.len())
    }

    /// One IMAP pass: fetch after the cursor, store, decide, move, advance.
    #[tracing::instrument(skip_all, fields(stage = "ingest"))]
    pub async fn sync_imap(
        &self,
        mailbox: &mut ImapMailbox,
        config: &ImapConfig,
    ) -> Result<SyncReport, SyncError> {
        let state = mailbox.select().await?;
        let stored = self
            .store
            .mailbox_cursor(&config.folder)
            .await?
            .map(|c| ImapCursor {
                uidvalidity: u32::try_from(c.uidvalidity).unwrap_or(0),
                last_uid: u32::try_from(c.last_uid).unwrap_or(0),
            });
        let plan = imap::plan(stored, state.uidvalidity);
        if let imap::ScanPlan::Rescan {
            previous_uidvalidity,
            ..
        } = plan
        {
            tracing::warn!(
                previous_uidvalidity,
                uidvalidity = state.uidvalidity,
                "UIDVALIDITY changed; rescanning the folder"
            );
        }
        let mut cursor = plan.cursor();
        let fetched = mailbox
            .fetch_since_limit(cursor.last_uid, PASS_MESSAGES)
            .await?;
        for message in &fetched {
            let raw = mailbox.raw_message(message).await?;
            self.ingest(raw).await?;
        }
        let processed = self.decide_pending().await?;
        // One batch for the pass, then one cursor save: a crash in between
        // re-reads moved UIDs that are gone (nothing) or still there
        // (dedupe makes them no-ops).
        let uids: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
        mailbox.move_to_processed(&uids).await?;
        if let Some(&highest) = uids.iter().max() {
            cursor = cursor.advanced_to(highest);
            self.store
                .save_mailbox_cursor(&MailboxCursor {
                    folder: config.folder.clone(),
                    uidvalidity: i64::from(cursor.uidvalidity),
                    last_uid: i64::from(cursor.last_uid),
                })
                .await?;
        }
        Ok(SyncReport {
            fetched: fetched.len(),
            processed,
        })
    }

    /// One Maildir pass: store, decide, move to `cur/`.
    pub async fn sync_maildir(&self, maildir: &Maildir) -> Result<SyncReport, SyncError> {
        let entries = maildir.scan()?;
        let fresh: Vec<_> = entries.into_iter().filter(|e| e.subdir == "new").collect();
        for entry in &fresh {
            let raw = maildir.read(entry, self.settings.ingest.max_message_bytes)?;
            ingest::store_message(&self.store, raw).await?;
        }
        let processed = self.pipeline.process_pending(Utc::now()).await?;
        for entry in &fresh {
            maildir.mark_processed(entry)?;
        }
        Ok(SyncReport {
            fetched: fresh.len(),
            processed: processed.len(),
        })
    }
}

/// How long the mailbox task waits after a failure no retry can fix (a
/// refused login, a processed folder the server will not create) before it
/// tries again: slow, since only an operator's change helps, and nothing
/// is downloaded meanwhile.
pub const PERMANENT_RECHECK: Duration = Duration::from_secs(5 * 60);

/// Waits after the server asked us to slow down (`NO [THROTTLED]`, `[LIMIT]`,
/// "Too many …"): 30 s, doubling up to 15 minutes while it keeps asking.
const THROTTLE_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(30),
    cap: Duration::from_secs(15 * 60),
};

/// How the mailbox task goes on after an IMAP or pass failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// An outage (connection, timeout): the usual capped backoff.
    Soon,
    /// The server is throttling us: [`THROTTLE_BACKOFF`].
    Throttled,
    /// Only an operator can fix it: [`PERMANENT_RECHECK`], not ready.
    Permanent,
}

impl Retry {
    fn after(err: &SyncError) -> Retry {
        match err {
            SyncError::Imap(imap) if imap.is_throttled() => Retry::Throttled,
            err if err.is_transient() => Retry::Soon,
            _ => Retry::Permanent,
        }
    }
}

/// The mailbox task's failure bookkeeping: counts for the backoffs, and
/// the permanent problem being reported (logged once, shown on `/readyz`).
struct Failures {
    backoff: Backoff,
    outages: u32,
    throttled: u32,
    problem: Option<String>,
}

impl Failures {
    /// Records a failure, logs it once with the server's words, and says
    /// how long to wait before trying again.
    fn record(&mut self, err: &SyncError, context: &str, metrics: &Metrics) -> Duration {
        let text = crate::pipeline::error_chain(err);
        match Retry::after(err) {
            Retry::Soon => {
                tracing::warn!(error = %text, attempt = self.outages, "{context}; reconnecting");
                self.outages += 1;
                self.backoff.delay(self.outages - 1)
            }
            Retry::Throttled => {
                tracing::warn!(error = %text, attempt = self.throttled, "{context}: the server asks us to slow down; waiting longer each time");
                self.throttled += 1;
                THROTTLE_BACKOFF.delay(self.throttled - 1)
            }
            Retry::Permanent => {
                if self.problem.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        error = %text,
                        recheck_secs = PERMANENT_RECHECK.as_secs(),
                        "{context}; nothing is read from the mailbox until this is fixed (checked again every few minutes, and at restart)"
                    );
                    self.problem = Some(text.clone());
                }
                metrics.set_mailbox_problem(Some(text));
                PERMANENT_RECHECK
            }
        }
    }

    /// A pass went through: the counts start over and any problem is gone.
    fn clear(&mut self, metrics: &Metrics) {
        self.outages = 0;
        self.throttled = 0;
        if self.problem.take().is_some() {
            tracing::info!("the mailbox works again");
        }
        metrics.set_mailbox_problem(None);
    }
}

/// Keeps an IMAP connection, syncs on every wake-up (IDLE or poll), and
/// reconnects whenever the connection or the server fails: soon after an
/// outage, later and later while the server throttles, and only every
/// [`PERMANENT_RECHECK`] after a failure no retry can fix.
pub async fn run_imap(
    sync: MailboxSync,
    config: ImapConfig,
    backoff: Backoff,
    wakes: Wakes,
    shutdown: CancellationToken,
) {
    let mut failures = Failures {
        backoff,
        outages: 0,
        throttled: 0,
        problem: None,
    };
    let poll = Duration::from_secs(config.poll_interval.max(1));
    while !shutdown.is_cancelled() {
        let mut mailbox = match ImapMailbox::connect(&config).await {
            Ok(mailbox) => mailbox,
            Err(err) => {
                let wait = failures.record(&err.into(), "cannot connect to IMAP", &sync.metrics);
                if sleep_or_shutdown(wait, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(host = %config.host, folder = %config.folder, "IMAP connected");
        sync.metrics.set_imap_connected(true);
        let wait = loop {
            match sync.sync_imap(&mut mailbox, &config).await {
                Ok(report) => {
                    failures.clear(&sync.metrics);
                    if report.processed > 0 {
                        wakes.decided();
                    }
                    // A full pass: more mail is waiting, no IDLE in between.
                    if report.fetched >= PASS_MESSAGES && !shutdown.is_cancelled() {
                        continue;
                    }
                }
                Err(err) => break failures.record(&err, "mailbox pass failed", &sync.metrics),
            }
            match mailbox.idle_wait(poll, &shutdown).await {
                Ok(Wake::Cancelled) => {
                    sync.metrics.set_imap_connected(false);
                    if let Err(err) = mailbox.logout().await {
                        tracing::debug!(error = %err, "IMAP logout failed");
                    }
                    return;
                }
                Ok(Wake::NewMail | Wake::Timeout) => {}
                Err(err) => break failures.record(&err.into(), "IMAP wait failed", &sync.metrics),
            }
        };
        sync.metrics.set_imap_connected(false);
        if let Err(err) = mailbox.logout().await {
            tracing::debug!(error = %err, "IMAP logout failed");
        }
        if sleep_or_shutdown(wait, &shutdown).await {
            return;
        }
    }
}

/// Scans a Maildir every `poll` (for one-machine setups without IMAP).
pub async fn run_maildir(
    sync: MailboxSync,
    dir: PathBuf,
    poll: Duration,
    backoff: Backoff,
    wakes: Wakes,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let wait = match Maildir::open(&dir) {
            Ok(maildir) => match sync.sync_maildir(&maildir).await {
                Ok(report) => {
                    failures = 0;
                    if report.processed > 0 {
                        wakes.decided();
                    }
                    poll
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Maildir pass failed");
                    failures += 1;
                    backoff.delay(failures)
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, dir = %dir.display(), "cannot open the Maildir");
                failures += 1;
                backoff.delay(failures)
            }
        };
        if sleep_or_shutdown(wait, &shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_retried_soon_later_or_only_after_an_operator_acts() {
        let throttled = ImapError::Command {
            command: "UID FETCH",
            source: async_imap::error::Error::No(
                "code: None, info: Some(\"[THROTTLED] Request is throttled\")".into(),
            ),
        };
        let refused = ImapError::ProcessedFolder {
            folder: "Processed".into(),
            server: "NO Permission denied".into(),
        };
        let cases = [
            ("connection lost", ImapError::Disconnected, Retry::Soon),
            ("throttled", throttled, Retry::Throttled),
            ("processed folder refused", refused, Retry::Permanent),
        ];
        for (name, err, expected) in cases {
            assert_eq!(Retry::after(&SyncError::Imap(err)), expected, "{name}");
        }
    }

    #[test]
    fn a_permanent_problem_is_reported_until_a_pass_goes_through() {
        let metrics = Metrics::new(Utc::now());
        let mut failures = Failures {
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(60),
            },
            outages: 0,
            throttled: 0,
            problem: None,
        };
        let refused = SyncError::Imap(ImapError::ProcessedFolder {
            folder: "Processed".into(),
            server: "NO Permission denied".into(),
        });
        assert_eq!(
            failures.record(&refused, "mailbox pass failed", &metrics),
            PERMANENT_RECHECK
        );
        let problem = metrics.mailbox_problem().unwrap();
        assert!(problem.contains("NO Permission denied"), "{problem}");
        failures.clear(&metrics);
        assert_eq!(metrics.mailbox_problem(), None);

        // Throttling waits at least 15 s and grows toward 15 minutes.
        let throttled = SyncError::Imap(ImapError::Command {
            command: "SELECT",
            source: async_imap::error::Error::No(
                "code: None, info: Some(\"[UNAVAILABLE] Temporary System Error\")".into(),
            ),
        });
        let waits: Vec<Duration> = (0..8)
            .map(|_| failures.record(&throttled, "mailbox pass failed", &metrics))
            .collect();
        assert!(waits[0] >= Duration::from_secs(15), "{waits:?}");
        assert!(waits[7] >= Duration::from_secs(7 * 60), "{waits:?}");
        assert_eq!(
            metrics.mailbox_problem(),
            None,
            "throttling is not an operator's problem"
        );
    }
}
