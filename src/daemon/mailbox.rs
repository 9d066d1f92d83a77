//! The mailbox task: new mail in, decided, then moved — in that order.
//!
//! One pass ([`MailboxSync::sync_imap`]) reads the UID cursor, lists the
//! messages after it (at most [`PASS_MESSAGES`] and [`PASS_BYTES`]), reads
//! their bodies in chunks of at most [`CHUNK_BYTES`] and stores each chunk
//! durably before the next is read (a backlog of large messages is never
//! held at once), lets the pipeline decide everything stored, and only then
//! moves the pass's messages to the processed folder and saves the cursor,
//! once per pass. A crash anywhere re-fetches at most what was not yet
//! moved; the store's Message-ID + hash dedupe makes the second sight a
//! no-op. A UIDVALIDITY change rescans the folder the same way.
//!
//! Wake-ups: with IDLE, a second, read-only session (the watcher, see
//! [`watch`]) stays in IDLE for good and only wakes the worker session,
//! which does the passes. A session that leaves IDLE for every message pays
//! the server's first-notification delay each time (~0.5 s on Dovecot);
//! one that stays hears of later messages sooner. Without IDLE the worker
//! polls with `NOOP` every `poll_interval`. While mail is flowing (for
//! [`BURST_WINDOW`] after a pass that found some) the worker also polls
//! every `burst_poll_ms`: Dovecot holds every IDLE notification for half a
//! second, a `NOOP` is answered with what is there now.

use chrono::Utc;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Wakes, sleep_or_shutdown};
use crate::config::Settings;
use crate::ingest::imap::{
    self, BURST_WINDOW, FetchedMessage, ImapConfig, ImapCursor, ImapError, ImapMailbox,
    MessageInfo, Wake,
};
use crate::ingest::maildir::Maildir;
use crate::ingest::{self, IngestError, RawMessage};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError};
use crate::retry::Backoff;
use crate::store::{Inserted, MailboxCursor, Store, StoreError};

/// Messages one pass reads at most (bounded memory and a bounded
/// transaction of moves on a backlog).
const PASS_MESSAGES: usize = 200;

/// Bytes one pass lists at most (by RFC822.SIZE; a larger first message
/// still goes, alone): a backlog of large messages is stored, decided and
/// moved a few at a time instead of hundreds of megabytes per pass.
const PASS_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes of message bodies held in memory at once: the pass fetches this
/// much, stores it and drops it before fetching more.
const CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages read from the mailbox.
    pub fetched: usize,
    /// Messages decided into cases.
    pub processed: usize,
    /// The pass stopped at its limit (count or bytes): more mail waits, so
    /// the next pass starts at once.
    pub more: bool,
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
    /// Told as soon as a pass has committed decisions, before its moves:
    /// the outbox sends while the mail is still being moved.
    wakes: Option<Wakes>,
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
            wakes: None,
        }
    }

    /// Wakes the outbox and the payment stage with `wakes` as soon as a
    /// pass has decided something.
    pub(crate) fn waking(mut self, wakes: Wakes) -> MailboxSync {
        self.wakes = Some(wakes);
        self
    }

    /// Stores messages in one transaction; counts the new ones. Returns
    /// their rows, in order.
    async fn ingest(&self, raws: Vec<RawMessage>) -> Result<Vec<i64>, SyncError> {
        let inserted = ingest::store_messages(&self.store, raws).await?;
        let new = inserted
            .iter()
            .filter(|i| matches!(i, Inserted::New(_)))
            .count();
        self.metrics.messages_ingested(new as u64);
        Ok(inserted.into_iter().map(Inserted::id).collect())
    }

    /// Decides everything stored and not yet decided; wakes the stages
    /// that act on decisions.
    async fn decide_pending(&self) -> Result<usize, SyncError> {
        let processed = self.pipeline.process_pending(Utc::now()).await?;
        self.metrics.observe_processed(&processed);
        if !processed.is_empty()
            && let Some(wakes) = &self.wakes
        {
            wakes.decided();
        }
        Ok(processed.len())
    }

    /// One IMAP pass: list after the cursor, fetch and store in chunks,
    /// decide, move, save the cursor once. `notified` is when the watcher
    /// reported the mail that started this pass (for the stage times).
    #[tracing::instrument(skip_all, fields(stage = "ingest"))]
    pub async fn sync_imap(
        &self,
        mailbox: &mut ImapMailbox,
        config: &ImapConfig,
        notified: Option<SystemTime>,
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
        let cursor = plan.cursor();
        let listed = mailbox.list_since(cursor.last_uid, PASS_MESSAGES).await?;
        let listed_all = listed.len();
        let listed = within_bytes(listed, PASS_BYTES);
        let more = listed_all >= PASS_MESSAGES || listed.len() < listed_all;
        let Some(last) = listed.last().map(|m| m.uid) else {
            return Ok(SyncReport::default());
        };
        let mut times = StageTimes::new(notified);
        for chunk in chunks_within(&listed, CHUNK_BYTES) {
            let fetched = fetch_chunk(mailbox, config, chunk).await?;
            let fetched_at = SystemTime::now();
            let mut uids = Vec::with_capacity(fetched.len());
            let mut raws = Vec::with_capacity(fetched.len());
            for message in fetched {
                uids.push(message.uid);
                raws.push(mailbox.into_raw_message(message).await?);
            }
            // One transaction for the chunk: durable before anything is
            // decided, and one commit instead of one per message.
            let rows = self.ingest(raws).await?;
            for (uid, row) in uids.into_iter().zip(rows) {
                times.stored(uid, row, fetched_at);
            }
        }
        let processed = self.decide_pending().await?;
        times.decided();
        // Only now, with every case committed, does mail leave the folder:
        // the whole pass in one batch (one UID MOVE of the set, or its
        // fallbacks on servers without MOVE or UIDPLUS).
        let uids: Vec<u32> = times.uids().collect();
        mailbox.move_to_processed(&uids).await?;
        // One cursor save per pass, after the moves: a crash before it
        // lists the moved messages' UIDs again and finds them gone.
        let cursor = cursor.advanced_to(last);
        self.store
            .save_mailbox_cursor(&MailboxCursor {
                folder: config.folder.clone(),
                uidvalidity: i64::from(cursor.uidvalidity),
                last_uid: i64::from(cursor.last_uid),
            })
            .await?;
        times.log();
        if listed.iter().map(|m| m.size).sum::<u64>() >= TRIM_AFTER_BYTES {
            super::release_free_memory();
        }
        Ok(SyncReport {
            fetched: listed.len(),
            processed,
            more,
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
        let processed = self.decide_pending().await?;
        for entry in &fresh {
            maildir.mark_processed(entry)?;
        }
        Ok(SyncReport {
            fetched: fresh.len(),
            processed,
            more: false,
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

/// Mail the watcher saw and the worker has not yet looked for.
#[derive(Default)]
struct NewMail {
    wake: Notify,
    /// When the first unhandled notification came (for the stage times).
    since: Mutex<Option<SystemTime>>,
}

impl NewMail {
    fn notify(&self) {
        self.seen();
        self.wake.notify_one();
    }

    /// Notes that new mail was seen now (by the watcher or the worker's own
    /// poll), without waking anyone.
    fn seen(&self) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.get_or_insert_with(SystemTime::now);
    }

    /// When the oldest notification not yet handled came; clears it.
    fn take(&self) -> Option<SystemTime> {
        self.since.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Works the mailbox until shutdown: the worker session does the passes,
/// the watcher session (with IDLE) wakes it; each reconnects on its own
/// whenever its connection or the server fails. The worker waits soon
/// after an outage, later and later while the server throttles, and only
/// every [`PERMANENT_RECHECK`] after a failure no retry can fix.
pub async fn run_imap(
    sync: MailboxSync,
    config: ImapConfig,
    backoff: Backoff,
    shutdown: CancellationToken,
) {
    let new_mail = NewMail::default();
    tokio::join!(
        work(&sync, &config, backoff, &new_mail, &shutdown),
        watch(&config, backoff, &new_mail, &shutdown),
    );
}

/// The worker session: a pass on every wake-up (the watcher's, or every
/// `poll_interval`), and at once again after a full pass.
async fn work(
    sync: &MailboxSync,
    config: &ImapConfig,
    backoff: Backoff,
    new_mail: &NewMail,
    shutdown: &CancellationToken,
) {
    let mut failures = Failures {
        backoff,
        outages: 0,
        throttled: 0,
        problem: None,
    };
    let mut burst_until: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let mut mailbox = match ImapMailbox::connect(config).await {
            Ok(mailbox) => mailbox,
            Err(err) => {
                let wait = failures.record(&err.into(), "cannot connect to IMAP", &sync.metrics);
                if sleep_or_shutdown(wait, shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(host = %config.host, folder = %config.folder, "IMAP connected");
        sync.metrics.set_imap_connected(true);
        let wait = loop {
            match sync.sync_imap(&mut mailbox, config, new_mail.take()).await {
                Ok(report) => {
                    failures.clear(&sync.metrics);
                    if report.fetched > 0 {
                        burst_until = Some(Instant::now() + BURST_WINDOW);
                    }
                    // A full pass: more mail is waiting, no wait in between.
                    if report.more && !shutdown.is_cancelled() {
                        continue;
                    }
                }
                Err(err) => break failures.record(&err, "mailbox pass failed", &sync.metrics),
            }
            let wake = wait_for_mail(&mut mailbox, config, new_mail, burst_until, shutdown).await;
            match wake {
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
        if sleep_or_shutdown(wait, shutdown).await {
            return;
        }
    }
}

/// Waits for the worker's next pass. With IDLE the watcher wakes it (and
/// `poll_interval` bounds a watcher that is reconnecting); without, the
/// worker polls with `NOOP` itself. Until `burst_until` (mail is flowing)
/// the worker also sends a `NOOP` every `burst_poll_ms`: a server may hold
/// its IDLE notifications back (Dovecot for 0.5 s), a `NOOP` is answered
/// with what is there now.
async fn wait_for_mail(
    mailbox: &mut ImapMailbox,
    config: &ImapConfig,
    new_mail: &NewMail,
    burst_until: Option<Instant>,
    shutdown: &CancellationToken,
) -> Result<Wake, ImapError> {
    if let (Some(every), Some(until)) = (config.burst_poll_every(), burst_until) {
        while Instant::now() < until {
            tokio::select! {
                _ = new_mail.wake.notified() => return Ok(Wake::NewMail),
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return Ok(Wake::Cancelled),
            }
            if mailbox.poll_new_mail().await? {
                new_mail.seen();
                return Ok(Wake::NewMail);
            }
        }
    }
    let poll = config.poll_every();
    if mailbox.idles() {
        Ok(tokio::select! {
            _ = new_mail.wake.notified() => Wake::NewMail,
            _ = tokio::time::sleep(poll) => Wake::Timeout,
            _ = shutdown.cancelled() => Wake::Cancelled,
        })
    } else {
        mailbox.idle_wait(poll, shutdown).await
    }
}

/// The watcher session: the folder opened read-only (EXAMINE changes
/// nothing, not even `\Recent`), kept in IDLE, waking the worker on every
/// new message. Without IDLE (the server lacks it, or `[imap] idle =
/// false`) it logs out and leaves the worker to poll.
async fn watch(
    config: &ImapConfig,
    backoff: Backoff,
    new_mail: &NewMail,
    shutdown: &CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let mut watcher = match ImapMailbox::examine(config).await {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::debug!(error = %err, attempt = failures, "the IMAP watcher cannot connect; retrying");
                if sleep_or_shutdown(backoff.delay(failures), shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        if !watcher.idles() {
            tracing::info!("the IMAP server offers no IDLE (or [imap] idle is off): polling");
            if let Err(err) = watcher.logout().await {
                tracing::debug!(error = %err, "IMAP logout failed");
            }
            return;
        }
        failures = 0;
        // Mail may have come while no watcher was in IDLE.
        new_mail.notify();
        match watcher
            .watch_new_mail(&|| new_mail.notify(), shutdown)
            .await
        {
            Ok(()) => {
                if let Err(err) = watcher.logout().await {
                    tracing::debug!(error = %err, "IMAP logout failed");
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "the IMAP watcher failed; reconnecting");
                if sleep_or_shutdown(backoff.delay(failures), shutdown).await {
                    return;
                }
                failures += 1;
            }
        }
    }
}

/// The messages of a chunk with their content. A message larger than a
/// chunk (and within `max_message_bytes`) is read in parts into one
/// buffer, so its bytes are held once while it is fetched.
async fn fetch_chunk(
    mailbox: &mut ImapMailbox,
    config: &ImapConfig,
    chunk: &[MessageInfo],
) -> Result<Vec<FetchedMessage>, ImapError> {
    match chunk {
        [large] if large.size > CHUNK_BYTES && large.size <= config.max_message_bytes => {
            super::release_free_memory();
            let bytes = mailbox.fetch_body_in_parts(large.uid, large.size).await?;
            // Gone meanwhile (another client expunged it): nothing to store.
            Ok(bytes
                .map(|bytes| FetchedMessage {
                    uid: large.uid,
                    internal_date: large.internal_date,
                    size: large.size,
                    bytes: Some(bytes),
                })
                .into_iter()
                .collect())
        }
        _ => mailbox.fetch_messages(chunk).await,
    }
}

/// A pass that fetched this much gives the memory it freed back to the
/// operating system ([`super::release_free_memory`]).
const TRIM_AFTER_BYTES: u64 = 1024 * 1024;

/// The longest prefix of `listed` within `budget` bytes, and at least its
/// first message (one larger message goes alone).
fn within_bytes(mut listed: Vec<MessageInfo>, budget: u64) -> Vec<MessageInfo> {
    let keep = chunks_within(&listed, budget).next().map_or(0, <[_]>::len);
    listed.truncate(keep);
    listed
}

/// `listed` cut into consecutive chunks of at most `budget` bytes each (a
/// message larger than that is a chunk of its own).
fn chunks_within(listed: &[MessageInfo], budget: u64) -> impl Iterator<Item = &[MessageInfo]> {
    let mut rest = listed;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0u64;
        let mut take = 0;
        for message in rest {
            if take > 0 && bytes + message.size > budget {
                break;
            }
            bytes += message.size;
            take += 1;
        }
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        Some(chunk)
    })
}

/// When each message of a pass reached each stage, logged at debug level
/// (target `refundd::stages`, one line per message, Unix milliseconds) so
/// that a benchmark can break arrival → reply down by stage. Ids only.
struct StageTimes {
    notified: Option<SystemTime>,
    /// (UID, message row, fetched, stored)
    messages: Vec<(u32, i64, SystemTime, SystemTime)>,
    decided: Option<SystemTime>,
}

impl StageTimes {
    fn new(notified: Option<SystemTime>) -> StageTimes {
        StageTimes {
            notified,
            messages: Vec::new(),
            decided: None,
        }
    }

    fn stored(&mut self, uid: u32, row: i64, fetched: SystemTime) {
        self.messages.push((uid, row, fetched, SystemTime::now()));
    }

    fn decided(&mut self) {
        self.decided = Some(SystemTime::now());
    }

    /// The UIDs stored in this pass, in order.
    fn uids(&self) -> impl Iterator<Item = u32> + '_ {
        self.messages.iter().map(|(uid, ..)| *uid)
    }

    fn log(&self) {
        if !tracing::enabled!(target: "refundd::stages", tracing::Level::DEBUG) {
            return;
        }
        let ms = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64)
        };
        let moved = SystemTime::now();
        for &(uid, message_id, fetched, stored) in &self.messages {
            tracing::debug!(
                target: "refundd::stages",
                uid,
                message_id,
                notified_ms = ms(self.notified),
                fetched_ms = ms(Some(fetched)),
                stored_ms = ms(Some(stored)),
                decided_ms = ms(self.decided),
                moved_ms = ms(Some(moved)),
                "message stage times"
            );
        }
    }
}

/// Scans a Maildir every `poll` (for one-machine setups without IMAP).
pub async fn run_maildir(
    sync: MailboxSync,
    dir: PathBuf,
    poll: Duration,
    backoff: Backoff,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let wait = match Maildir::open(&dir) {
            Ok(maildir) => match sync.sync_maildir(&maildir).await {
                Ok(_) => {
                    failures = 0;
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
