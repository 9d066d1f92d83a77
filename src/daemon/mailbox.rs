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
    #[error("IMAP failed")]
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
        for message in &fetched {
            mailbox.move_to_processed(message.uid).await?;
            cursor = cursor.advanced_to(message.uid);
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

/// Keeps an IMAP connection, syncs on every wake-up (IDLE or poll), and
/// reconnects with backoff whenever the connection or the server fails.
pub async fn run_imap(
    sync: MailboxSync,
    config: ImapConfig,
    backoff: Backoff,
    wakes: Wakes,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let poll = Duration::from_secs(config.poll_interval.max(1));
    while !shutdown.is_cancelled() {
        let mut mailbox = match ImapMailbox::connect(&config).await {
            Ok(mailbox) => mailbox,
            Err(err) => {
                tracing::warn!(error = %err, attempt = failures, "cannot connect to IMAP; retrying");
                if sleep_or_shutdown(backoff.delay(failures), &shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        tracing::info!(host = %config.host, folder = %config.folder, "IMAP connected");
        sync.metrics.set_imap_connected(true);
        loop {
            match sync.sync_imap(&mut mailbox, &config).await {
                Ok(report) => {
                    failures = 0;
                    if report.processed > 0 {
                        wakes.decided();
                    }
                    // A full pass: more mail is waiting, no IDLE in between.
                    if report.fetched >= PASS_MESSAGES && !shutdown.is_cancelled() {
                        continue;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, transient = err.is_transient(), "mailbox pass failed; reconnecting");
                    break;
                }
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
                Err(err) => {
                    tracing::warn!(error = %err, "IMAP wait failed; reconnecting");
                    break;
                }
            }
        }
        sync.metrics.set_imap_connected(false);
        if sleep_or_shutdown(backoff.delay(failures), &shutdown).await {
            return;
        }
        failures += 1;
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
