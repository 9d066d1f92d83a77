//! `refundd run`: the stages as long-lived tokio tasks.
//!
//! - the mailbox task (IMAP, or a Maildir when no `[imap]` is configured)
//!   stores new mail, has the pipeline decide it, and only then moves it to
//!   the processed folder and advances the UID cursor;
//! - the outbox task sends queued replies (SMTP when `[smtp]` is
//!   configured, else `.eml` files) and is woken when replies are queued;
//! - with `[polar]`, the payment task carries out approved cash refunds
//!   exactly once (woken after each mailbox pass) and polls disputes;
//! - the deadline sweep escalates cases near or past their deadline and
//!   closes abandoned needs_info cases.
//!
//! Stages hand work over through the database; a `Notify` only wakes. Each
//! loop checks the shutdown token only between units of work, never
//! between "send" and "record", so SIGTERM finishes the current message,
//! flushes and logs out of IMAP. Infrastructure failures are retried with
//! capped exponential backoff and jitter; nothing is lost on a crash,
//! because each effect is recorded before and after (see `pipeline` and
//! `pipeline::outbox`).

mod mailbox;
mod periodic;
mod sender;

pub use mailbox::{MailboxSync, SyncReport};
pub use sender::run_outbox;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use chrono::Utc;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError};
use crate::reply::{FileSink, MailSink, Templates, smtp::SmtpError, smtp::SmtpSink};
use crate::retry::Backoff;
use crate::store::{MailboxLease, Store, StoreError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    #[error("cannot build the pipeline")]
    Pipeline(#[from] PipelineError),
    #[error("the SMTP settings cannot work")]
    Smtp(#[from] SmtpError),
    #[error("nothing to read: configure [imap] or [daemon] maildir")]
    NoMailbox,
    #[error("the console cannot start")]
    Web(#[from] crate::web::WebError),
    #[error("cannot listen on {addr} ([web] listen)")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The mail sink the settings ask for: SMTP when `[smtp]` is configured,
/// else `.eml` files in `[outbox] dir`.
pub fn mail_sink(settings: &Settings) -> Result<Arc<dyn MailSink>, SmtpError> {
    Ok(match &settings.smtp {
        Some(smtp) => Arc::new(SmtpSink::new(smtp.clone())?),
        None => Arc::new(FileSink::new(&settings.outbox.dir)),
    })
}

/// Runs every task until `shutdown` is cancelled, then waits for them to
/// finish their current unit of work. Every reply (the engine's and the
/// console's) is rendered with `templates`, so a reload of them reaches
/// both.
pub async fn run(
    settings: Arc<Settings>,
    templates: Templates,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    crate::act::polar::install_crypto_provider();
    if settings.imap.is_none() && settings.daemon.maildir.is_none() {
        return Err(DaemonError::NoMailbox);
    }
    let store = Store::connect(&settings.database.url).await?;
    let pipeline = Arc::new(
        Pipeline::with_templates(store.clone(), settings.clone(), templates.clone())?
            .deciding_in_parallel(DECIDE_PARALLELISM),
    );
    let sink = mail_sink(&settings)?;
    let replies_queued = Arc::new(Notify::new());
    let backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(settings.daemon.max_backoff.max(1)),
    };
    let poll = Duration::from_secs(settings.daemon.poll_interval.max(1));

    let metrics = Metrics::new(Utc::now());
    let decisions_recorded = Arc::new(Notify::new());
    let wakes = Wakes {
        replies_queued: replies_queued.clone(),
        decisions_recorded,
    };
    let tracker = TaskTracker::new();

    // The console, /metrics and the webhooks are served by every instance.
    let (app, webhook_wake) = http_router(&store, &settings, templates.clone(), metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(&settings.web.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: settings.web.listen.clone(),
            source,
        })?;
    {
        let shutdown = shutdown.clone();
        let header_read_timeout = settings.web.header_read_timeout();
        tracker.spawn(async move {
            if let Err(err) =
                crate::web::serve_router(listener, app, header_read_timeout, shutdown).await
            {
                tracing::error!(error = %err, "the HTTP listener failed");
            }
        });
    }

    // Active/standby: only the instance holding the mailbox lease works the
    // mailbox, the outbox, payments, webhooks and the sweep; the others
    // serve the console and take over when the holder dies (its database
    // session ends and PostgreSQL frees the advisory lock).
    let Some(lease) = wait_for_lease(&store, &shutdown).await? else {
        tracker.close();
        tracker.wait().await;
        return Ok(());
    };
    let sync = MailboxSync::new(store.clone(), pipeline, settings.clone(), metrics.clone())
        .waking(wakes.clone());
    match (&settings.imap, &settings.daemon.maildir) {
        (Some(imap), _) => {
            let (imap, shutdown) = (imap.clone(), shutdown.clone());
            tracker.spawn(async move { mailbox::run_imap(sync, imap, backoff, shutdown).await });
        }
        (None, Some(dir)) => {
            let (dir, shutdown) = (dir.clone(), shutdown.clone());
            tracker.spawn(
                async move { mailbox::run_maildir(sync, dir, poll, backoff, shutdown).await },
            );
        }
        (None, None) => unreachable!("checked above"),
    }
    {
        let (store, shutdown, wake) = (store.clone(), shutdown.clone(), replies_queued.clone());
        let lifecycle = settings.lifecycle();
        tracker.spawn(async move {
            run_outbox(store, sink, lifecycle, wake, poll, backoff, shutdown).await
        });
    }
    if settings.polar.is_some() {
        let (store, settings, shutdown, wakes, metrics) = (
            store.clone(),
            settings.clone(),
            shutdown.clone(),
            wakes.clone(),
            metrics.clone(),
        );
        tracker.spawn(async move {
            periodic::run_payments(store, settings, poll, wakes, metrics, shutdown).await
        });
    }
    {
        let (store, settings, templates, shutdown, wake) = (
            store.clone(),
            settings.clone(),
            templates.clone(),
            shutdown.clone(),
            replies_queued.clone(),
        );
        tracker.spawn(async move {
            periodic::run_sweep(store, settings, templates, SWEEP_EVERY, wake, shutdown).await
        });
    }
    if let Some(polar) = settings
        .polar
        .as_ref()
        .filter(|p| p.webhook_secret.is_some())
    {
        let client = crate::act::payments::client(polar).ok();
        let (store, shutdown) = (store.clone(), shutdown.clone());
        let lifecycle = settings.lifecycle();
        tracker.spawn(async move {
            crate::act::webhooks::run_applier(store, client, lifecycle, webhook_wake, shutdown)
                .await
        });
    }
    tracker.close();
    tracing::info!("refundd is running");
    tracker.wait().await;
    lease.release().await?;
    store.close().await;
    tracing::info!("refundd stopped");
    Ok(())
}

/// One HTTP listener (`[web] listen`) for everything the daemon serves: the
/// reviewers' console and `/api`, `/metrics`, `/healthz`, `/readyz`, and,
/// with `[polar] webhook_secret`, `POST /webhooks/polar`. Also returns what
/// wakes the webhook applier.
fn http_router(
    store: &Store,
    settings: &Arc<Settings>,
    templates: Templates,
    metrics: Metrics,
) -> Result<(axum::Router, Arc<Notify>), DaemonError> {
    let console = crate::web::router(crate::web::WebState::with_templates(
        store.clone(),
        settings.clone(),
        templates,
    )?);
    let mut app = console.merge(crate::metrics::router(metrics, store.clone()));
    let secret = settings
        .polar
        .as_ref()
        .and_then(|p| p.webhook_secret.as_deref());
    let webhooks =
        crate::act::webhooks::WebhookState::new(store.clone(), secret.unwrap_or_default());
    let wake = webhooks.wake.clone();
    if secret.is_some() {
        app = app.merge(crate::act::webhooks::router(webhooks));
    }
    Ok((app, wake))
}

/// The advisory-lock key of the refunds mailbox (ASCII "refundd").
const MAILBOX_LEASE_KEY: i64 = 0x0072_6566_756e_6464;

/// How often a standby instance asks for the mailbox lease.
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Waits until this instance holds the mailbox lease (at once on SQLite);
/// `None` when shutdown comes first.
async fn wait_for_lease(
    store: &Store,
    shutdown: &CancellationToken,
) -> Result<Option<MailboxLease>, DaemonError> {
    let mut announced = false;
    loop {
        if let Some(lease) = store.try_lease_mailbox(MAILBOX_LEASE_KEY).await? {
            tracing::info!("this instance holds the mailbox");
            return Ok(Some(lease));
        }
        if !announced {
            tracing::info!("another instance holds the mailbox; standing by");
            announced = true;
        }
        if sleep_or_shutdown(LEASE_RETRY, shutdown).await {
            return Ok(None);
        }
    }
}

/// Senders whose mail the daemon decides at once: 4, enough to overlap
/// one decision's reads, parsing and round trips with another's write
/// transaction. On SQLite the writes still take turns (one writer, queued
/// in the store, see `Store::begin`); on PostgreSQL they also overlap.
const DECIDE_PARALLELISM: usize = 4;

/// How often the deadline sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What one task tells the others when it has handed over work.
#[derive(Clone)]
pub(crate) struct Wakes {
    /// Replies were queued: the outbox should send.
    pub replies_queued: Arc<Notify>,
    /// Decisions were recorded: the payment stage may have refunds to make.
    pub decisions_recorded: Arc<Notify>,
}

impl Wakes {
    /// After a mailbox pass that decided something.
    pub fn decided(&self) {
        self.replies_queued.notify_one();
        self.decisions_recorded.notify_one();
    }
}

/// Buffers this large are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// Heaps (glibc arenas) every thread of the process shares.
const MALLOC_ARENAS: i32 = 1;

/// Sets how glibc's allocator keeps memory, so that the daemon's resident
/// memory stays flat over a long drain. Call it first thing in `main`,
/// before any thread starts: a thread keeps the arena it first used.
///
/// - A message of 25 MB passes through a few buffers of its size
///   (fetched, stored, read back, parsed). glibc raises its mmap threshold
///   after the first such buffer is freed (up to 32 MB), so later ones come
///   from the heap and stay resident after they are freed. A fixed
///   threshold keeps every large buffer mapped on its own and given back
///   to the operating system when freed.
/// - glibc gives threads their own arenas (up to eight per core), and
///   memory freed in an arena is kept there for that arena's next
///   allocations. The tokio workers and SQLite's worker threads each
///   parse and store messages, so each arena grew to its own high-water
///   mark of message-sized buffers (120 MB resident after a 3,000-message
///   drain with six arenas, 76 MB with one). The daemon's threads spend
///   their time waiting on I/O, not contending for the allocator's lock.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // other threads start, and any value is valid for these two options.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Gives the pages of memory freed inside the heap back to the operating
/// system (`malloc_trim`). glibc returns only the heap's top on its own, so
/// the pages freed between live allocations after a pass over thousands of
/// messages stay resident; called before a large message is fetched (so
/// that its buffers add to what is in use, not to what was once used) and
/// after a pass that moved at least a MiB. Costs about a millisecond.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // heaps; it takes the allocator's locks and is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits `duration` unless shutdown comes first; true when it did.
pub(crate) async fn sleep_or_shutdown(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.cancelled() => true,
    }
}
