//! The daemon end to end: `refundd run` drains a backlog from a real Dovecot
//! and answers every message through a real SMTP server, next to the raw
//! IMAP ceiling measured in the same run.
//!
//! What it measures, in order:
//! 1. **Backlog** (timed, not counted): `DRAIN_N` (default 10,000) generated
//!    customer mails, ~4 KB each, 5 % with a 200 KB image attachment, written
//!    straight into the folder's Maildir `new/` as a local delivery agent
//!    would (INTERNALDATE = file mtime), then indexed by Dovecot on one
//!    SELECT. One sender in five owns a wallet of a generated ledger (200
//!    wallets, orders inside and outside the 14-day window, used credits,
//!    failed generations, terminated wallets), so the policy takes its real
//!    paths; the others are distinct strangers.
//! 2. **Raw ceiling**: one async-imap connection that only runs
//!    `UID FETCH a:b BODY.PEEK[]`, 100 UIDs a command, over the whole folder
//!    (after one warm-up pass, as in MAILSTACK.md); then the project's own
//!    client (`ImapMailbox::fetch_since_limit`, 1,000 a call) the same way.
//!    One backlog message (the middle one) carries a `DRAIN_BIG_MB` (default
//!    25) MB attachment instead: the daemon must take it in bounded memory.
//! 3. **Ingest and decide alone**: a second copy of the backlog in another
//!    folder, drained by `refundd run` without `[smtp]` (replies go to
//!    `.eml` files): spawn → every message decided (`DRAIN_DECIDE=0` skips).
//! 4. **Drain**: the release `refundd run` on SQLite in a temp dir (or
//!    PostgreSQL with `DRAIN_DB=postgres`, a fresh database under
//!    `REFUNDD_TEST_PG`), IMAP and SMTP over plain loopback, `[smtp]
//!    connections` = `DRAIN_SMTP_CONNECTIONS` (default: refundd's); the time
//!    from spawning it until the sink holds N replies.
//! 5. **Latency with IDLE**: with the daemon caught up and idling,
//!    `LATENCY_M` (default 200) mails are appended one at a time every 50 ms
//!    over one connection; for each, APPEND completed → the sink wrote its
//!    reply (the file's mtime; matched on In-Reply-To). p50, p99, max, and
//!    the same per stage from the daemon's `refundd::stages` debug lines:
//!    arrival → notified (the IDLE watcher heard of it) → fetched → stored →
//!    decided → moved → reply written by the sink.
//! 6. **Peak RSS**: the refundd process's VmHWM just before SIGTERM; then it
//!    must exit 0, and every message must have exactly one reply.
//!
//! **Soak** (on demand, not in CI): `DRAIN_KILLS=K` SIGKILLs the daemon K
//! times at pseudo-random points of the drain (`DRAIN_SEED` picks them) and
//! restarts it each time; at the end every message must be in exactly one
//! case and no message answered twice, and every case answered exactly once
//! unless a kill hit the hand-over of its reply (then the reply is marked
//! failed, the case waits in review, and the sink holds at most one). E.g.
//! `DRAIN_N=100000 DRAIN_DB=postgres DRAIN_KILLS=30 DRAIN_DECIDE=0 cargo
//! bench --bench daemon_drain`.
//!
//! Run: `cargo bench --bench daemon_drain` (builds refundd and this bench
//! with the release profile). Quick check: `DRAIN_N=500 cargo bench --bench
//! daemon_drain`. Also `LATENCY_M`, `DRAIN_TIMEOUT_SECS`, and `DRAIN_LOG`
//! (a file to keep the daemon's log in), `DRAIN_RUST_LOG` (more log targets, e.g.
//! `sqlx::query=debug` for every statement and its time), `DRAIN_WRAP` (a
//! profiler to run the daemon under, e.g. `heaptrack -o /tmp/refundd`).
//! Needs what the integration tests need: `dovecot-imapd`, `python3` with
//! `aiosmtpd`, and root (Dovecot's processes run as the `mail` user).
//!
//! Every wait has a timeout and fails with the daemon's log tail. The
//! machine is shared, so the load average is printed with the numbers.

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use refundd::config::Settings;
use refundd::ingest::imap::{ImapMailbox, ImapStream};

// Only part of the integration tests' harness is used here.
#[allow(dead_code)]
#[path = "../tests/it/mailstack.rs"]
mod mailstack;

use mailstack::{Dovecot, PASSWORD, SinkOptions, SmtpSinkServer, USER};

/// The folder the daemon reads.
const FOLDER: &str = "Refunds";
/// UIDs per `UID FETCH` command of the raw ceiling.
const FETCH_BATCH: u32 = 100;
/// Messages per `fetch_since_limit` call of the project's client.
const CLIENT_BATCH: usize = 1000;
/// Wallets in the generated ledger.
const WALLETS: usize = 200;
/// One sender in this many owns a wallet.
const WALLET_EVERY: usize = 5;
/// Size of the image attachment (before base64).
const ATTACHMENT_BYTES: usize = 200 * 1024;
/// Time between two appends of the latency run.
const LATENCY_PACE: Duration = Duration::from_millis(50);
/// How long any one IMAP command of the bench may take.
const IMAP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the sink's directory is counted.
const POLL: Duration = Duration::from_millis(100);
/// Decimal megabytes, as MAILSTACK.md reports them.
const MB: f64 = 1_000_000.0;

fn main() -> Result<()> {
    let params = Params::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&params))?;
    print!("{}", report.table(&params));
    Ok(())
}

/// What to run, from the environment.
struct Params {
    n: usize,
    m: usize,
    drain_timeout: Duration,
    /// `DRAIN_DB=postgres`: a fresh database under `REFUNDD_TEST_PG`.
    postgres: bool,
    /// Size of the one big backlog message's attachment, in MB (0: none).
    big_mb: usize,
    /// Whether to measure ingest + decide without SMTP first.
    decide_alone: bool,
    /// `[smtp] connections`, when set.
    smtp_connections: Option<u32>,
    /// SIGKILLs during the drain (soak).
    kills: usize,
    seed: u64,
}

impl Params {
    fn from_env() -> Result<Params> {
        let n = env_number("DRAIN_N", 10_000)?;
        let m = env_number("LATENCY_M", 200)?;
        ensure!(n > 0, "DRAIN_N must be positive");
        // A floor of 10 msg/s: slower than that is a failure, not a number.
        let default_timeout = 120 + n as u64 / 10;
        let drain_timeout =
            Duration::from_secs(env_number("DRAIN_TIMEOUT_SECS", default_timeout as usize)? as u64);
        let postgres = match std::env::var("DRAIN_DB").as_deref() {
            Ok("postgres") => true,
            Ok("sqlite") | Err(_) => false,
            Ok(other) => bail!("DRAIN_DB={other:?}: sqlite or postgres"),
        };
        let smtp_connections = match std::env::var("DRAIN_SMTP_CONNECTIONS") {
            Ok(_) => Some(env_number("DRAIN_SMTP_CONNECTIONS", 4)? as u32),
            Err(_) => None,
        };
        Ok(Params {
            n,
            m,
            drain_timeout,
            postgres,
            big_mb: env_number("DRAIN_BIG_MB", 25)?,
            decide_alone: env_number("DRAIN_DECIDE", 1)? != 0,
            smtp_connections,
            kills: env_number("DRAIN_KILLS", 0)?,
            seed: env_number("DRAIN_SEED", 0x5eed)? as u64,
        })
    }
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .replace('_', "")
            .parse()
            .with_context(|| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Everything measured.
struct Report {
    backlog: Backlog,
    index_time: Duration,
    import_time: Duration,
    raw: FetchRun,
    client: FetchRun,
    /// Spawn → every message decided, without SMTP; its peak RSS in kB.
    decide_alone: Option<(Duration, u64)>,
    first_reply: Duration,
    drain: Duration,
    /// Peak RSS at the end of the drain, before the latency run (kB).
    drain_hwm_kb: u64,
    latencies: Vec<Duration>,
    /// Per stage of the latency mails: (name, durations).
    stages: Vec<(&'static str, Vec<Duration>)>,
    kills: usize,
    uncertain: usize,
    vm_hwm_kb: u64,
    vm_rss_kb: u64,
    shutdown: Duration,
    outcomes: Vec<(String, i64)>,
    load: String,
}

async fn run(params: &Params) -> Result<Report> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let workload = Workload::new(Utc::now(), params.big_mb);

    eprintln!("starting Dovecot and the SMTP sink");
    let dovecot = Dovecot::start().context("starting Dovecot")?;
    imap_admin(&dovecot, &format!("CREATE {FOLDER}")).await?;
    let sink = SmtpSinkServer::start(SinkOptions::default()).context("starting the SMTP sink")?;

    eprintln!("writing {} messages into the Maildir", params.n);
    let backlog = write_backlog(&dovecot.folder_maildir(FOLDER), &workload, params.n)?;
    let started = Instant::now();
    let indexed = folder_messages(&dovecot, FOLDER).await?;
    let index_time = started.elapsed();
    ensure!(
        indexed == params.n,
        "Dovecot indexed {indexed} messages, {} were written",
        params.n
    );

    eprintln!("raw FETCH ceiling");
    raw_fetch(&dovecot).await.context("warm-up FETCH pass")?;
    let raw = raw_fetch(&dovecot).await?;
    ensure!(
        raw.messages == params.n && raw.bytes == backlog.bytes,
        "raw FETCH read {} messages / {} bytes, the backlog is {} / {}",
        raw.messages,
        raw.bytes,
        params.n,
        backlog.bytes
    );
    let client = client_fetch(&dovecot, workload.received).await?;
    ensure!(
        client.messages == params.n,
        "the project's client read {} messages of {}",
        client.messages,
        params.n
    );

    let decide_alone = if params.decide_alone {
        Some(decide_alone(&dovecot, &workload, params).await?)
    } else {
        None
    };

    let mut daemon = Daemon::configure(&dovecot, Some(&sink), &workload, FOLDER, params).await?;
    eprintln!("refundd run: draining");
    let import_time = daemon.import_time;
    let started = Instant::now();
    daemon.start()?;
    let first_reply = wait_for_replies(&sink, &mut daemon, 1, params.drain_timeout).await?;
    let kills = kill_while_draining(&sink, &mut daemon, params).await?;
    let rest = params.drain_timeout.saturating_sub(started.elapsed());
    if kills == 0 {
        wait_for_replies(&sink, &mut daemon, params.n, rest).await?;
    } else {
        // A kill during a reply's hand-over leaves it unsent on purpose
        // (at most once): wait for the outbox to be empty instead.
        wait_for_outbox_empty(&mut daemon, params.n, rest).await?;
    }
    let drain = started.elapsed();
    let lost = daemon.uncertain_replies().await?.len();
    let (drain_hwm_kb, _) = daemon.memory()?;

    eprintln!("waiting until the daemon is caught up and idling");
    wait_until_moved(&dovecot, &mut daemon, Duration::from_secs(120)).await?;
    // Give it time to enter IDLE after its last pass: the latency run
    // measures an idling daemon, not the tail of the drain.
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!("latency: {} appends, one every {LATENCY_PACE:?}", params.m);
    let appended = append_paced(&dovecot, &workload, params.m).await?;
    let latency_timeout = Duration::from_secs(60) + LATENCY_PACE * params.m as u32;
    wait_for_replies(
        &sink,
        &mut daemon,
        params.n + params.m - lost,
        latency_timeout,
    )
    .await?;
    let replies = read_replies(&sink.messages_dir())?;
    let latencies = latencies(&replies, &appended)?;

    let (vm_hwm_kb, vm_rss_kb) = daemon.memory()?;
    let started = Instant::now();
    daemon.terminate(Duration::from_secs(30))?;
    let shutdown = started.elapsed();

    let uncertain = daemon.uncertain_replies().await?;
    check_one_reply_each(&replies, params.n, params.m, &uncertain)?;
    check_one_case_each(&daemon, params.n + params.m).await?;
    let stages = stage_times(&daemon, &replies, &appended).await?;
    let outcomes = daemon.outcomes().await?;

    Ok(Report {
        backlog,
        index_time,
        import_time,
        raw,
        client,
        decide_alone,
        first_reply,
        drain,
        drain_hwm_kb,
        latencies,
        stages,
        kills,
        uncertain: uncertain.len(),
        vm_hwm_kb,
        vm_rss_kb,
        shutdown,
        outcomes,
        load,
    })
}

/// Ingest and decide without SMTP: a copy of the backlog in its own folder,
/// drained by a daemon whose replies go to `.eml` files; spawn → every
/// message decided. Returns that time and the daemon's peak RSS (kB).
async fn decide_alone(
    dovecot: &Dovecot,
    workload: &Workload,
    params: &Params,
) -> Result<(Duration, u64)> {
    const DECIDE_FOLDER: &str = "Decide";
    imap_admin(dovecot, &format!("CREATE {DECIDE_FOLDER}")).await?;
    write_backlog(&dovecot.folder_maildir(DECIDE_FOLDER), workload, params.n)?;
    folder_messages(dovecot, DECIDE_FOLDER).await?;
    let mut daemon = Daemon::configure(dovecot, None, workload, DECIDE_FOLDER, params).await?;
    eprintln!("refundd run without SMTP: ingest and decide");
    let started = Instant::now();
    daemon.start()?;
    loop {
        let decided = daemon.decided_messages().await?;
        if decided >= params.n {
            break;
        }
        daemon.check_running()?;
        ensure!(
            started.elapsed() < params.drain_timeout,
            "{decided} of {} decided after {:?}",
            params.n,
            params.drain_timeout
        );
        tokio::time::sleep(POLL).await;
    }
    let elapsed = started.elapsed();
    let (hwm, _) = daemon.memory()?;
    daemon.terminate(Duration::from_secs(30))?;
    daemon.drop_database().await;
    Ok((elapsed, hwm))
}

/// The soak: SIGKILL the daemon `DRAIN_KILLS` times at pseudo-random points
/// while it drains, restarting it each time. Returns how many kills landed.
async fn kill_while_draining(
    sink: &SmtpSinkServer,
    daemon: &mut Daemon,
    params: &Params,
) -> Result<usize> {
    let mut seed = params.seed;
    let mut kills = 0;
    while kills < params.kills {
        seed = splitmix(seed);
        // Somewhere between 0.3 and 6 s of work between two kills.
        let after = Duration::from_millis(300 + seed % 5_700);
        tokio::time::sleep(after).await;
        if count_eml(&sink.messages_dir())? >= params.n {
            break;
        }
        daemon.kill();
        kills += 1;
        eprintln!(
            "  kill {kills}/{} after {:.1} s ({} replies so far)",
            params.kills,
            after.as_secs_f64(),
            count_eml(&sink.messages_dir())?
        );
        daemon.start()?;
    }
    Ok(kills)
}

impl Report {
    fn table(&self, params: &Params) -> String {
        let n = params.n;
        let mb = self.backlog.bytes as f64 / MB;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\ndaemon_drain: N = {n} messages ({} with a 200 KB attachment, {mb:.1} MB), M = {}; load average {}",
            self.backlog.with_attachment,
            params.m,
            self.load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            out,
            "backlog: written into the Maildir in {:.2} s, indexed by Dovecot (first SELECT) in {:.2} s; ledger import {:.2} s",
            self.backlog.write_time.as_secs_f64(),
            self.index_time.as_secs_f64(),
            self.import_time.as_secs_f64()
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| {:<58} | {:>9} | {:>8} | {:>8} |",
            "", "msgs/s", "MB/s", "time"
        );
        let _ = writeln!(out, "|{:-<60}|{:-<11}|{:-<10}|{:-<10}|", "", "", "", "");
        let mut row = |what: &str, messages: usize, time: Duration| {
            let secs = time.as_secs_f64();
            let _ = writeln!(
                out,
                "| {what:<58} | {:>9.0} | {:>8.1} | {:>6.2} s |",
                messages as f64 / secs,
                mb * (messages as f64 / n as f64) / secs,
                secs
            );
        };
        row(
            "raw ceiling: UID FETCH BODY.PEEK[], 100/cmd (async-imap)",
            self.raw.messages,
            self.raw.elapsed,
        );
        row(
            "project client: ImapMailbox::fetch_since_limit",
            self.client.messages,
            self.client.elapsed,
        );
        if let Some((time, _)) = self.decide_alone {
            row("refundd run, no SMTP: spawn → N messages decided", n, time);
        }
        row(
            "refundd run: drain, spawn → N-th reply at the sink",
            n,
            self.drain,
        );
        let _ = writeln!(
            out,
            "drain on {}: first reply {:.2} s after spawn, N-th reply {:.2} s after spawn; peak RSS {:.1} MB",
            if params.postgres {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            self.first_reply.as_secs_f64(),
            self.drain.as_secs_f64(),
            self.drain_hwm_kb as f64 * 1024.0 / MB
        );
        if let Some((time, hwm)) = self.decide_alone {
            let _ = writeln!(
                out,
                "ingest + decide alone: {:.0} % of the raw FETCH ceiling; peak RSS {:.1} MB",
                100.0 * (n as f64 / time.as_secs_f64())
                    / (self.raw.messages as f64 / self.raw.elapsed.as_secs_f64()),
                hwm as f64 * 1024.0 / MB
            );
        }
        if params.kills > 0 {
            let _ = writeln!(
                out,
                "soak: {} SIGKILLs during the drain; {} replies uncertain (marked failed, case in review, at most one sent)",
                self.kills, self.uncertain
            );
        }
        let _ = writeln!(out);
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let _ = writeln!(
            out,
            "arrival → reply with IDLE ({} mails, one every {} ms): p50 {} ms, p99 {} ms, max {} ms",
            sorted.len(),
            LATENCY_PACE.as_millis(),
            percentile(&sorted, 0.50).as_millis(),
            percentile(&sorted, 0.99).as_millis(),
            sorted.last().copied().unwrap_or_default().as_millis()
        );
        for (stage, times) in &self.stages {
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let _ = writeln!(
                out,
                "  {stage:<28} p50 {:>4} ms, p99 {:>4} ms, max {:>4} ms",
                percentile(&sorted, 0.50).as_millis(),
                percentile(&sorted, 0.99).as_millis(),
                sorted.last().copied().unwrap_or_default().as_millis()
            );
        }
        let _ = writeln!(
            out,
            "refundd peak RSS (VmHWM): {:.1} MB (VmRSS at the end {:.1} MB); SIGTERM → exit 0 in {:.2} s",
            self.vm_hwm_kb as f64 * 1024.0 / MB,
            self.vm_rss_kb as f64 * 1024.0 / MB,
            self.shutdown.as_secs_f64()
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(outcome, count)| format!("{outcome} {count}"))
            .collect();
        let _ = writeln!(out, "case outcomes: {}", outcomes.join(", "));
        out
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------
// The workload: a ledger and the mail its customers (and strangers) write.

/// A deterministic workload: message `i` is the same bytes in every run
/// (up to the times, which follow `now`).
struct Workload {
    now: DateTime<Utc>,
    /// The INTERNALDATE of every backlog message.
    received: DateTime<Utc>,
    /// The image attachment, base64 in 76-column lines.
    attachment: String,
    /// The one big attachment (empty: none), base64 in 76-column lines.
    big_attachment: String,
}

/// `bytes` of an incompressible "image", base64 in 76-column lines.
fn image_base64(bytes: usize) -> String {
    // A PNG signature, then bytes that do not compress (as an image's).
    let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut state = 0x1234_5678_9abc_def0u64;
    while image.len() < bytes {
        state = splitmix(state);
        image.extend_from_slice(&state.to_le_bytes());
    }
    image.truncate(bytes);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

impl Workload {
    fn new(now: DateTime<Utc>, big_mb: usize) -> Workload {
        // base64 with line breaks: 4/3 × 78/76 of the raw bytes.
        let big_raw = big_mb * 1_000_000 * 3 * 76 / (4 * 78);
        Workload {
            now,
            // Whole seconds, as INTERNALDATE has them.
            received: DateTime::from_timestamp((now - ChronoDuration::hours(1)).timestamp(), 0)
                .unwrap_or(now),
            attachment: image_base64(ATTACHMENT_BYTES),
            big_attachment: if big_mb == 0 {
                String::new()
            } else {
                image_base64(big_raw)
            },
        }
    }

    /// Whether backlog message `i` of `n` is the big one.
    fn is_big(&self, i: usize, n: usize) -> bool {
        !self.big_attachment.is_empty() && i == n / 2
    }

    /// The ledger, as `refundd ledger import` reads it.
    fn ledger_jsonl(&self) -> String {
        let mut out = String::new();
        for k in 0..WALLETS {
            let wallet = Wallet::new(k);
            let status = if k % 50 == 49 { "terminated" } else { "active" };
            let created = self.now - ChronoDuration::days(120);
            // Half the orders inside the 14-day window, half outside.
            let bought = self.now - ChronoDuration::days((k % 28) as i64 + 1);
            let _ = writeln!(
                out,
                r#"{{"type":"wallet","id":"{}","email":"{}","status":"{status}","created_at":"{}"}}"#,
                wallet.id,
                wallet.email,
                created.to_rfc3339()
            );
            let _ = writeln!(
                out,
                r#"{{"type":"order","id":"{}","wallet":"{}","product":"Starter 50","credits":50,"amount":900,"tax_amount":171,"currency":"EUR","invoice_number":"{}","receipt_number":"RCPT-{}-0001","created_at":"{}"}}"#,
                wallet.order,
                wallet.id,
                wallet.invoice,
                wallet.letters,
                bought.to_rfc3339()
            );
            if k % 3 != 0 {
                let _ = writeln!(
                    out,
                    r#"{{"type":"generation","id":"gen_bench_{k}_ok","wallet":"{}","order":"{}","credits":10,"status":"succeeded","style":"ghibli","refunded":false,"created_at":"{}"}}"#,
                    wallet.id,
                    wallet.order,
                    (bought + ChronoDuration::hours(2)).to_rfc3339()
                );
            }
            if k % 4 == 0 {
                let _ = writeln!(
                    out,
                    r#"{{"type":"generation","id":"gen_bench_{k}_failed","wallet":"{}","order":"{}","credits":5,"status":"failed","style":"chibi","refunded":false,"created_at":"{}"}}"#,
                    wallet.id,
                    wallet.order,
                    (bought + ChronoDuration::hours(3)).to_rfc3339()
                );
            }
        }
        out
    }

    /// Backlog message `i` of `n`.
    fn backlog_mail(&self, i: usize, n: usize) -> Mail {
        let roll = splitmix(i as u64 ^ 0x5eed);
        let big = self.is_big(i, n);
        let attachment = roll % 20 == 0 || big;
        let verified = roll % 100 >= 15;
        let (from, name, paragraph, subject, german) = if i % WALLET_EVERY == 0 {
            let k = (i / WALLET_EVERY) % WALLETS;
            let wallet = Wallet::new(k);
            let (subject, paragraph, german) = match (i / WALLET_EVERY) % 6 {
                0 => (
                    "Refund for my Starter pack".to_owned(),
                    format!(
                        "I bought the Starter 50 pack but I would like a refund to my card, please. \
                         The invoice number is {}.",
                        wallet.invoice
                    ),
                    false,
                ),
                1 => (
                    "Please refund my purchase".to_owned(),
                    "I changed my mind about the credit pack I bought. Please refund my money.".to_owned(),
                    false,
                ),
                2 => (
                    "Generation failed, credits gone".to_owned(),
                    "My last generation failed with an error and never produced an image, but the \
                     credits were taken from my wallet anyway. Can I get them back?"
                        .to_owned(),
                    false,
                ),
                3 => (
                    "The avatar does not look like me".to_owned(),
                    format!(
                        "The avatar does not resemble me at all, it looks like a different person. \
                         Here is the result: https://anumi.example/results/gen_bench_{k}_ok"
                    ),
                    false,
                ),
                4 => (
                    "Not happy with the result".to_owned(),
                    "I just don't like how the avatar turned out, the style is not really my taste."
                        .to_owned(),
                    false,
                ),
                _ => (
                    "Rückerstattung".to_owned(),
                    format!(
                        "ich habe das Starter-Paket gekauft und möchte bitte eine Rückerstattung. \
                         Die Rechnungsnummer ist {}.",
                        wallet.invoice
                    ),
                    true,
                ),
            };
            (
                wallet.email,
                format!("Buyer {k}"),
                paragraph,
                subject,
                german,
            )
        } else {
            let (subject, paragraph, german) = match roll / 7 % 8 {
                4 => (
                    "Refund for order",
                    "Please refund my order ANUMI-ZZZZZZZZ-0042, I did not use it.",
                    false,
                ),
                5 => (
                    "Refund or I go to my bank",
                    "If I do not get my money back this week I will file a chargeback with my bank.",
                    false,
                ),
                6 => (
                    "Withdrawal from the contract",
                    "I am exercising my statutory right of withdrawal under EU consumer law and ask \
                     for a full refund.",
                    false,
                ),
                7 => (
                    "Geld zurück",
                    "bitte erstatten Sie mir den Kaufpreis, ich brauche die Credits nicht mehr.",
                    true,
                ),
                _ => (
                    "Refund please",
                    "I would like a refund for the credits I bought last week, please.",
                    false,
                ),
            };
            (
                format!("customer{i}@backlog.example"),
                format!("Customer {i}"),
                paragraph.to_owned(),
                subject.to_owned(),
                german,
            )
        };
        let message_id = format!("bench-{i}@backlog.example");
        Mail {
            bytes: self.compose(&Compose {
                from: &from,
                name: &name,
                subject: &subject,
                paragraph: &paragraph,
                message_id: &message_id,
                german,
                verified,
                attachment: match (big, attachment) {
                    (true, _) => Some(&self.big_attachment),
                    (false, true) => Some(&self.attachment),
                    (false, false) => None,
                },
            }),
            attachment,
        }
    }

    /// Message `j` of the latency run: a stranger's plain request.
    fn latency_mail(&self, j: usize) -> Vec<u8> {
        self.compose(&Compose {
            from: &format!("late{j}@latency.example"),
            name: &format!("Late {j}"),
            subject: "Refund please",
            paragraph: "I would like a refund for the credits I bought last week, please.",
            message_id: &latency_message_id(j),
            german: false,
            verified: true,
            attachment: None,
        })
    }

    /// A ~4 KB customer mail: multipart/alternative with a quoted earlier
    /// mail of ours, optionally inside multipart/mixed with an image.
    fn compose(&self, c: &Compose<'_>) -> Vec<u8> {
        let domain = c.from.split_once('@').map_or("example.com", |(_, d)| d);
        let (hello, thanks) = if c.german {
            ("Hallo Anumi-Team,", "Viele Grüße")
        } else {
            ("Hi Anumi team,", "Thanks a lot")
        };
        let mut quoted = String::new();
        while quoted.len() < 1400 {
            quoted.push_str(
                "> Thank you for your purchase! Your credits are ready to use. Pick a style, upload a few \
                 selfies and generate your first avatar.\r\n",
            );
        }
        let text = format!(
            "{hello}\r\n\r\n{}\r\n\r\n{thanks},\r\n{}\r\n\r\nOn {}, Anumi <hello@anumi.example> wrote:\r\n{quoted}",
            c.paragraph,
            c.name,
            (self.now - ChronoDuration::days(3)).to_rfc2822()
        );
        let html = format!(
            "<div dir=\"ltr\"><p>{hello}</p><p>{}</p><p>{thanks},<br>{}</p><blockquote>{}</blockquote></div>",
            c.paragraph,
            c.name,
            "<p>Thank you for your purchase! Your credits are ready to use.</p>".repeat(20)
        );
        let dmarc = if c.verified { "pass" } else { "fail" };
        let date = (self.received - ChronoDuration::minutes(2)).to_rfc2822();
        let mut mail = format!(
            "Return-Path: <{from}>\r\n\
             Received: from mail.{domain} (mail.{domain} [192.0.2.25]) by mx.anumi.example with ESMTPS; {date}\r\n\
             Authentication-Results: mx.anumi.example; spf=pass smtp.mailfrom={domain}; \
             dkim=pass header.d={domain}; dmarc={dmarc} header.from={domain}\r\n\
             From: {name} <{from}>\r\nTo: Anumi Refunds <refunds@anumi.example>\r\n\
             Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\n",
            from = c.from,
            name = c.name,
            subject = c.subject,
            id = c.message_id,
        );
        let alternative = format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
             --alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--alt--\r\n"
        );
        if let Some(attachment) = c.attachment {
            let _ = write!(
                mail,
                "Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n--mixed\r\n{alternative}\
                 --mixed\r\nContent-Type: image/png; name=\"avatar.png\"\r\n\
                 Content-Disposition: attachment; filename=\"avatar.png\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--mixed--\r\n"
            );
        } else {
            mail.push_str(&alternative);
        }
        mail.into_bytes()
    }
}

/// What varies between two generated mails.
struct Compose<'a> {
    from: &'a str,
    name: &'a str,
    subject: &'a str,
    paragraph: &'a str,
    message_id: &'a str,
    german: bool,
    verified: bool,
    /// The attachment's base64 lines, if any.
    attachment: Option<&'a str>,
}

/// One generated backlog mail.
struct Mail {
    bytes: Vec<u8>,
    attachment: bool,
}

/// Wallet `k` of the generated ledger.
struct Wallet {
    id: String,
    email: String,
    order: String,
    letters: String,
    invoice: String,
}

impl Wallet {
    fn new(k: usize) -> Wallet {
        // Eight letters from k: "BN" and six base-26 digits.
        let mut letters = String::from("BN");
        let mut rest = k;
        for _ in 0..6 {
            letters.push(char::from(b'A' + (rest % 26) as u8));
            rest /= 26;
        }
        Wallet {
            id: format!("w_bench_{k}"),
            email: format!("buyer{k}@shop.example"),
            order: format!("b0000000-0000-4000-8000-{k:012}"),
            invoice: format!("ANUMI-{letters}-0001"),
            letters,
        }
    }
}

fn latency_message_id(j: usize) -> String {
    format!("latency-{j}@latency.example")
}

/// SplitMix64: a well-mixed, reproducible pseudo-random value.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Loading the backlog.

/// The backlog as written.
struct Backlog {
    bytes: usize,
    with_attachment: usize,
    write_time: Duration,
}

/// Writes `n` messages into `folder/new` the Maildir way (tmp/, then a
/// rename), owned by the folder's owner, with mtime = the receipt time
/// (Dovecot's INTERNALDATE for Maildir).
fn write_backlog(folder: &Path, workload: &Workload, n: usize) -> Result<Backlog> {
    let owner = std::fs::metadata(folder)
        .with_context(|| format!("{} (the folder must exist)", folder.display()))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let received: SystemTime = workload.received.into();
    let started = Instant::now();
    let mut bytes = 0;
    let mut with_attachment = 0;
    for i in 0..n {
        let mail = workload.backlog_mail(i, n);
        bytes += mail.bytes.len();
        with_attachment += usize::from(mail.attachment);
        let name = format!(
            "{}.M{i}P{}.refundd-bench",
            workload.received.timestamp(),
            std::process::id()
        );
        let tmp = folder.join("tmp").join(&name);
        let file = std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?;
        std::io::Write::write_all(&mut &file, &mail.bytes)?;
        file.set_modified(received)?;
        drop(file);
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        std::fs::rename(&tmp, folder.join("new").join(&name))?;
    }
    Ok(Backlog {
        bytes,
        with_attachment,
        write_time: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------
// IMAP clients of the bench itself.

type Session = async_imap::Session<ImapStream>;

async fn login(dovecot: &Dovecot) -> Result<Session> {
    within(IMAP_TIMEOUT, "IMAP login", async {
        let tcp = ImapStream::connect("127.0.0.1", dovecot.port).await?;
        let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
        client.read_response().await?.context("no greeting")?;
        client
            .login(USER, PASSWORD)
            .await
            .map_err(|(err, _)| err)
            .context("login")
    })
    .await
}

async fn imap_admin(dovecot: &Dovecot, command: &str) -> Result<()> {
    let mut session = login(dovecot).await?;
    within(IMAP_TIMEOUT, command, async {
        session.run_command_and_check_ok(command).await?;
        session.logout().await?;
        Ok(())
    })
    .await
}

/// SELECTs the folder (which makes Dovecot index a fresh Maildir) and
/// returns how many messages it holds.
async fn folder_messages(dovecot: &Dovecot, folder: &str) -> Result<usize> {
    let mut session = login(dovecot).await?;
    within(IMAP_TIMEOUT, "SELECT", async {
        let mailbox = session.select(folder).await?;
        session.logout().await?;
        Ok(mailbox.exists as usize)
    })
    .await
}

/// One pass of FETCHes over the whole folder.
struct FetchRun {
    messages: usize,
    bytes: usize,
    elapsed: Duration,
}

/// The ceiling: `UID FETCH a:b BODY.PEEK[]`, 100 UIDs a command, nothing else.
async fn raw_fetch(dovecot: &Dovecot) -> Result<FetchRun> {
    let mut session = login(dovecot).await?;
    let run = within(IMAP_TIMEOUT * 5, "raw FETCH pass", async {
        let mailbox = session.examine(FOLDER).await?;
        let last_uid = mailbox.uid_next.context("no UIDNEXT")?.saturating_sub(1);
        let started = Instant::now();
        let (mut messages, mut bytes) = (0, 0);
        let mut first = 1;
        while first <= last_uid {
            let last = (first + FETCH_BATCH - 1).min(last_uid);
            let mut stream = session
                .uid_fetch(format!("{first}:{last}"), "BODY.PEEK[]")
                .await?;
            while let Some(fetch) = stream.try_next().await? {
                if let Some(body) = fetch.body() {
                    messages += 1;
                    bytes += body.len();
                }
            }
            first = last + 1;
        }
        let elapsed = started.elapsed();
        Ok(FetchRun {
            messages,
            bytes,
            elapsed,
        })
    })
    .await?;
    within(IMAP_TIMEOUT, "LOGOUT", async {
        Ok(session.logout().await?)
    })
    .await?;
    Ok(run)
}

/// The project's client, as the daemon uses it (listing + body batches);
/// also checks that the INTERNALDATE is the receipt time written.
async fn client_fetch(dovecot: &Dovecot, received: DateTime<Utc>) -> Result<FetchRun> {
    let mut config = dovecot.config();
    config.folder = FOLDER.into();
    let mut mailbox = ImapMailbox::connect(&config).await?;
    let started = Instant::now();
    let (mut messages, mut bytes, mut last_uid) = (0, 0, 0);
    loop {
        let batch = mailbox.fetch_since_limit(last_uid, CLIENT_BATCH).await?;
        let Some(last) = batch.last() else { break };
        last_uid = last.uid;
        for message in &batch {
            ensure!(
                message.internal_date == received,
                "INTERNALDATE {} is not the file's mtime {received}",
                message.internal_date
            );
            messages += 1;
            bytes += message.bytes.as_ref().map_or(0, Vec::len);
        }
    }
    let elapsed = started.elapsed();
    mailbox.logout().await?;
    Ok(FetchRun {
        messages,
        bytes,
        elapsed,
    })
}

/// Appends `m` latency mails over one connection, one every
/// [`LATENCY_PACE`]; returns when each APPEND completed.
async fn append_paced(dovecot: &Dovecot, workload: &Workload, m: usize) -> Result<Vec<SystemTime>> {
    let mut session = login(dovecot).await?;
    let start = tokio::time::Instant::now();
    let mut appended = Vec::with_capacity(m);
    for j in 0..m {
        tokio::time::sleep_until(start + LATENCY_PACE * j as u32).await;
        let mail = workload.latency_mail(j);
        within(IMAP_TIMEOUT, "APPEND", async {
            Ok(session.append(FOLDER, None, None, &mail).await?)
        })
        .await?;
        appended.push(SystemTime::now());
    }
    within(IMAP_TIMEOUT, "LOGOUT", async {
        Ok(session.logout().await?)
    })
    .await?;
    Ok(appended)
}

async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .with_context(|| format!("{what} took longer than {limit:?}"))?
        .with_context(|| what.to_owned())
}

// ---------------------------------------------------------------------------
// The daemon.

/// A configured `refundd` (release binary), its temp dir, and the running
/// `refundd run` process.
struct Daemon {
    dir: tempfile::TempDir,
    config: PathBuf,
    database: String,
    /// The PostgreSQL database made for this run, dropped at the end.
    pg_name: Option<String>,
    import_time: Duration,
    child: Option<Child>,
}

/// The daemon's log filter: info (as in production) and the stage times,
/// plus `DRAIN_RUST_LOG` when set (e.g. `sqlx::query=debug` for every
/// statement with its time).
fn daemon_log_filter() -> String {
    let base = "refundd=info,refundd::stages=debug";
    match std::env::var("DRAIN_RUST_LOG") {
        Ok(extra) if !extra.is_empty() => format!("{base},{extra}"),
        _ => base.to_owned(),
    }
}

/// Where `DRAIN_DB=postgres` makes its databases.
fn pg_base() -> String {
    std::env::var("REFUNDD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl Daemon {
    /// Writes a config for these servers (SQLite in a temp dir, or a fresh
    /// PostgreSQL database) reading `folder`, replying over `sink` (or into
    /// `.eml` files without one), and imports the generated ledger.
    async fn configure(
        dovecot: &Dovecot,
        sink: Option<&SmtpSinkServer>,
        workload: &Workload,
        folder: &str,
        params: &Params,
    ) -> Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("refundd-bench-")
            .tempdir()?;
        let (database, pg_name) = if params.postgres {
            use sqlx::Connection;
            let name = format!("refundd_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
            (format!("{}/{name}", pg_base()), Some(name))
        } else {
            (
                format!("sqlite://{}", dir.path().join("refundd.db").display()),
                None,
            )
        };
        let mut settings = Settings::default();
        settings.database.url = database.clone();
        settings.outbox.dir = dir.path().join("outbox");
        settings.sender_auth.trusted_authserv_ids = vec!["mx.anumi.example".into()];
        // Wallet owners write several times: the loop guard must not answer
        // for the policy here.
        settings.reply.max_replies_per_hour = 1_000_000;
        // The pacing stays at its defaults ([daemon] poll_interval 30 s,
        // [imap] idle on): what an operator runs.
        let mut imap = dovecot.config();
        imap.folder = folder.into();
        settings.imap = Some(imap);
        settings.smtp = sink.map(|sink| {
            let mut smtp = sink.config();
            if let Some(connections) = params.smtp_connections {
                smtp.connections = connections;
            }
            smtp
        });
        // The console listens on a port of its own (two daemons may run).
        settings.web.listen = format!("127.0.0.1:{}", mailstack::free_port());
        let config = dir.path().join("refundd.toml");
        std::fs::write(&config, toml::to_string(&settings)?)?;

        let ledger = dir.path().join("ledger.jsonl");
        std::fs::write(&ledger, workload.ledger_jsonl())?;
        let started = Instant::now();
        let out = Command::new(refundd_binary())
            .arg("--config")
            .arg(&config)
            .args(["ledger", "import"])
            .arg(&ledger)
            .env("RUST_LOG", "warn")
            .env_remove("REFUNDD_DATABASE_URL")
            .output()
            .context("running refundd ledger import")?;
        ensure!(
            out.status.success(),
            "refundd ledger import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Daemon {
            dir,
            config,
            database,
            pg_name,
            import_time: started.elapsed(),
            child: None,
        })
    }

    /// Drops the PostgreSQL database of this run, if it made one.
    async fn drop_database(&mut self) {
        use sqlx::Connection;
        let Some(name) = self.pg_name.take() else {
            return;
        };
        if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }

    /// Rows of a two-column query on the daemon's database.
    async fn pairs(&self, sql: &'static str) -> Result<Vec<(String, i64)>> {
        use sqlx::Connection;
        if self.pg_name.is_some() {
            let mut db = sqlx::PgConnection::connect(&self.database).await?;
            let rows = sqlx::query_as(sql).fetch_all(&mut db).await?;
            db.close().await?;
            Ok(rows)
        } else {
            let mut db = sqlx::SqliteConnection::connect(&self.database).await?;
            let rows = sqlx::query_as(sql).fetch_all(&mut db).await?;
            db.close().await?;
            Ok(rows)
        }
    }

    /// How many stored messages are decided (in a case).
    async fn decided_messages(&self) -> Result<usize> {
        let rows = self
            .pairs("SELECT 'decided', COUNT(*) FROM messages WHERE status <> 'received'")
            .await?;
        Ok(rows.first().map_or(0, |(_, n)| *n as usize))
    }

    /// The Message-IDs (without brackets) of the mails whose reply is
    /// marked failed: a kill hit its hand-over, so it was not resent.
    async fn uncertain_replies(&self) -> Result<Vec<String>> {
        let rows = self
            .pairs(
                "SELECT m.message_id, r.id FROM replies r JOIN messages m ON m.case_id = r.case_id
                 WHERE r.status = 'failed' AND m.message_id IS NOT NULL",
            )
            .await?;
        Ok(rows.into_iter().map(|(id, _)| id).collect())
    }

    /// Message-ID → stored row id of every message.
    async fn message_rows(&self) -> Result<HashMap<i64, String>> {
        let rows = self
            .pairs("SELECT message_id, id FROM messages WHERE message_id IS NOT NULL")
            .await?;
        Ok(rows.into_iter().map(|(id, row)| (row, id)).collect())
    }

    /// Spawns `refundd run`, logging at info (as in production) plus the
    /// per-message stage times, as JSON lines, to a file (appended to, so
    /// that a restart keeps the earlier lines).
    fn start(&mut self) -> Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = wrapped(refundd_binary())
            .arg("--log-json")
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", daemon_log_filter())
            .env_remove("REFUNDD_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning refundd run")?;
        self.child = Some(child);
        Ok(())
    }

    /// `DRAIN_LOG` when set (to keep the log), else in the temp dir.
    fn log_path(&self) -> PathBuf {
        std::env::var_os("DRAIN_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.path().join("refundd.log"))
    }

    /// The last lines of the daemon's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Fails when the daemon has exited.
    fn check_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().context("refundd is not running")?;
        if let Some(status) = child.try_wait()? {
            bail!(
                "refundd run exited early ({status})\n--- log tail ---\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// (VmHWM, VmRSS) of the running daemon, in kB.
    fn memory(&self) -> Result<(u64, u64)> {
        let child = self.child.as_ref().context("refundd is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .with_context(|| format!("no {name} in /proc/PID/status"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// SIGTERM, then a zero exit status within `limit`.
    fn terminate(&mut self, limit: Duration) -> Result<()> {
        let mut child = self.child.take().context("refundd is not running")?;
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(signalled.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "refundd exited with {status} after SIGTERM\n--- log tail ---\n{}",
                    self.log_tail()
                );
                return Ok(());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("refundd did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cases per outcome, from the daemon's database.
    async fn outcomes(&self) -> Result<Vec<(String, i64)>> {
        self.pairs(
            "SELECT outcome, COUNT(*) FROM cases GROUP BY outcome ORDER BY COUNT(*) DESC, outcome",
        )
        .await
    }

    /// SIGKILL, no goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if let Some(name) = self.pg_name.take() {
            let base = pg_base();
            // Its own runtime in a thread: Drop may run inside one.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    use sqlx::Connection;
                    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
                        .await
                        .ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await
                    .ok()
                })
            })
            .join();
        }
    }
}

/// The release `refundd` Cargo built for this bench.
fn refundd_binary() -> &'static str {
    env!("CARGO_BIN_EXE_refundd")
}

/// A command for `program`, run under `DRAIN_WRAP` when set (a profiler:
/// `DRAIN_WRAP="heaptrack -o /tmp/refundd"`, `DRAIN_WRAP="perf record -g
/// -o /tmp/perf.data"`), split on whitespace.
fn wrapped(program: &str) -> Command {
    let wrap = std::env::var("DRAIN_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.args(words).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Waits until the sink holds `want` messages (progress on stderr);
/// returns how long that took.
async fn wait_for_replies(
    sink: &SmtpSinkServer,
    daemon: &mut Daemon,
    want: usize,
    limit: Duration,
) -> Result<Duration> {
    let dir = sink.messages_dir();
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let have = count_eml(&dir)?;
        if have >= want {
            return Ok(started.elapsed());
        }
        daemon.check_running()?;
        if started.elapsed() > limit {
            bail!(
                "{have} of {want} replies after {limit:?}\n--- refundd log tail ---\n{}",
                daemon.log_tail()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {have}/{want} replies after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until all `n` messages are decided and no reply is queued.
async fn wait_for_outbox_empty(daemon: &mut Daemon, n: usize, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let decided = daemon.decided_messages().await?;
        let queued = daemon
            .pairs("SELECT 'queued', COUNT(*) FROM replies WHERE status = 'queued'")
            .await?
            .first()
            .map_or(0, |(_, n)| *n);
        if decided >= n && queued == 0 {
            return Ok(());
        }
        daemon.check_running()?;
        if started.elapsed() > limit {
            bail!(
                "{decided} of {n} decided, {queued} replies queued after {limit:?}\n--- refundd log tail ---\n{}",
                daemon.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the daemon has moved everything out of its folder.
async fn wait_until_moved(dovecot: &Dovecot, daemon: &mut Daemon, limit: Duration) -> Result<()> {
    let mut session = login(dovecot).await?;
    let started = Instant::now();
    loop {
        let status = within(IMAP_TIMEOUT, "STATUS", async {
            Ok(session.status(FOLDER, "(MESSAGES)").await?)
        })
        .await?;
        if status.exists == 0 {
            break;
        }
        daemon.check_running()?;
        if started.elapsed() > limit {
            bail!(
                "{} messages still in {FOLDER} after {limit:?}\n--- refundd log tail ---\n{}",
                status.exists,
                daemon.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    within(IMAP_TIMEOUT, "LOGOUT", async {
        Ok(session.logout().await?)
    })
    .await
}

// ---------------------------------------------------------------------------
// Reading the replies back.

fn count_eml(dir: &Path) -> Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.path().extension().is_some_and(|e| e == "eml") {
            count += 1;
        }
    }
    Ok(count)
}

/// One reply the sink stored.
struct Reply {
    in_reply_to: String,
    written: SystemTime,
}

fn read_replies(dir: &Path) -> Result<Vec<Reply>> {
    let parser = mail_parser::MessageParser::new();
    let mut replies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.extension().is_some_and(|e| e == "eml") {
            continue;
        }
        let raw = std::fs::read(&path)?;
        let headers = parser
            .parse_headers(&raw)
            .with_context(|| format!("{} has no headers", path.display()))?;
        let in_reply_to = headers
            .in_reply_to()
            .as_text()
            .with_context(|| format!("{} has no In-Reply-To", path.display()))?
            .to_owned();
        replies.push(Reply {
            in_reply_to,
            written: std::fs::metadata(&path)?.modified()?,
        });
    }
    Ok(replies)
}

/// APPEND completed → reply written, for each latency mail.
fn latencies(replies: &[Reply], appended: &[SystemTime]) -> Result<Vec<Duration>> {
    let by_id: HashMap<&str, SystemTime> = replies
        .iter()
        .map(|r| (r.in_reply_to.as_str(), r.written))
        .collect();
    appended
        .iter()
        .enumerate()
        .map(|(j, at)| {
            let written = by_id
                .get(latency_message_id(j).as_str())
                .with_context(|| format!("no reply to latency mail {j}"))?;
            // A reply written before the APPEND's OK came back counts as 0.
            Ok(written.duration_since(*at).unwrap_or_default())
        })
        .collect()
}

/// Every backlog and latency mail answered exactly once, nothing else
/// sent; a mail in `uncertain` (its reply's hand-over was hit by a kill)
/// answered at most once.
fn check_one_reply_each(replies: &[Reply], n: usize, m: usize, uncertain: &[String]) -> Result<()> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for reply in replies {
        *counts
            .entry(reply.in_reply_to.trim_matches(['<', '>']))
            .or_default() += 1;
    }
    let expected: Vec<String> = (0..n)
        .map(|i| format!("bench-{i}@backlog.example"))
        .chain((0..m).map(latency_message_id))
        .collect();
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()) && !uncertain.contains(id))
        .count();
    let repeated = counts.values().filter(|c| **c > 1).count();
    ensure!(
        missing == 0 && repeated == 0 && replies.len() + uncertain.len() >= n + m,
        "{} replies for {} mails ({} uncertain): {missing} unanswered, {repeated} answered more than once",
        replies.len(),
        n + m,
        uncertain.len()
    );
    Ok(())
}

/// Every mail stored once and decided into a case.
async fn check_one_case_each(daemon: &Daemon, mails: usize) -> Result<()> {
    let rows = daemon
        .pairs("SELECT status, COUNT(*) FROM messages GROUP BY status ORDER BY status")
        .await?;
    let decided = daemon
        .pairs("SELECT 'in a case', COUNT(*) FROM messages WHERE case_id IS NOT NULL")
        .await?;
    let total: i64 = rows.iter().map(|(_, n)| n).sum();
    let in_case = decided.first().map_or(0, |(_, n)| *n);
    ensure!(
        total as usize == mails && in_case as usize == mails,
        "{mails} mails sent, {total} stored ({rows:?}), {in_case} in a case"
    );
    Ok(())
}

/// One message's stage times from the daemon's log (Unix ms).
#[derive(serde::Deserialize)]
struct StageLine {
    message_id: i64,
    notified_ms: u64,
    fetched_ms: u64,
    stored_ms: u64,
    decided_ms: u64,
    moved_ms: u64,
}

/// Per stage, for each latency mail: APPEND completed → the IDLE watcher
/// heard of it → fetched → stored → decided → moved → reply written.
async fn stage_times(
    daemon: &Daemon,
    replies: &[Reply],
    appended: &[SystemTime],
) -> Result<Vec<(&'static str, Vec<Duration>)>> {
    let rows = daemon.message_rows().await?;
    let log = std::fs::read_to_string(daemon.log_path())?;
    let mut lines: HashMap<String, StageLine> = HashMap::new();
    for line in log.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value["target"] != "refundd::stages" {
            continue;
        }
        let stage: StageLine = serde_json::from_value(value["fields"].clone())?;
        if let Some(id) = rows.get(&stage.message_id) {
            lines.insert(id.clone(), stage);
        }
    }
    let written: HashMap<&str, SystemTime> = replies
        .iter()
        .map(|r| (r.in_reply_to.trim_matches(['<', '>']), r.written))
        .collect();
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    let gap = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    let names = [
        "arrival → notified",
        "notified → fetched",
        "fetched → stored",
        "stored → decided",
        "decided → moved",
        "moved → reply written",
    ];
    let mut stages: Vec<(&'static str, Vec<Duration>)> =
        names.iter().map(|name| (*name, Vec::new())).collect();
    for (j, appended) in appended.iter().enumerate() {
        let id = latency_message_id(j);
        let (Some(line), Some(reply)) = (lines.get(&id), written.get(id.as_str())) else {
            continue;
        };
        // A pass that no notification started (a poll) has no notified time.
        let notified = if line.notified_ms == 0 {
            at(line.fetched_ms)
        } else {
            at(line.notified_ms)
        };
        let points = [
            *appended,
            notified,
            at(line.fetched_ms),
            at(line.stored_ms),
            at(line.decided_ms),
            at(line.moved_ms),
            *reply,
        ];
        for (k, stage) in stages.iter_mut().enumerate() {
            stage.1.push(gap(points[k], points[k + 1]));
        }
    }
    Ok(stages)
}
