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
//! 3. **Drain**: the release `refundd run` on SQLite in a temp dir, IMAP and
//!    SMTP over plain loopback; the time from spawning it until the sink
//!    holds N replies.
//! 4. **Latency with IDLE**: with the daemon caught up and idling,
//!    `LATENCY_M` (default 200) mails are appended one at a time every 50 ms
//!    over one connection; for each, APPEND completed → the sink wrote its
//!    reply (the file's mtime; matched on In-Reply-To). p50, p99, max.
//! 5. **Peak RSS**: the refundd process's VmHWM just before SIGTERM; then it
//!    must exit 0, and every message must have exactly one reply.
//!
//! Run: `cargo bench --bench daemon_drain` (builds refundd and this bench
//! with the release profile). Quick check: `DRAIN_N=500 cargo bench --bench
//! daemon_drain`. Also `LATENCY_M`, `DRAIN_TIMEOUT_SECS`, and `DRAIN_LOG`
//! (a file to keep the daemon's info log in).
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
        Ok(Params {
            n,
            m,
            drain_timeout,
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
    first_reply: Duration,
    drain: Duration,
    latencies: Vec<Duration>,
    vm_hwm_kb: u64,
    vm_rss_kb: u64,
    shutdown: Duration,
    outcomes: Vec<(String, i64)>,
    load: String,
}

async fn run(params: &Params) -> Result<Report> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let workload = Workload::new(Utc::now());

    eprintln!("starting Dovecot and the SMTP sink");
    let dovecot = Dovecot::start().context("starting Dovecot")?;
    imap_admin(&dovecot, &format!("CREATE {FOLDER}")).await?;
    let sink = SmtpSinkServer::start(SinkOptions::default()).context("starting the SMTP sink")?;

    eprintln!("writing {} messages into the Maildir", params.n);
    let backlog = write_backlog(&dovecot.folder_maildir(FOLDER), &workload, params.n)?;
    let started = Instant::now();
    let indexed = folder_messages(&dovecot).await?;
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

    let mut daemon = Daemon::configure(&dovecot, &sink, &workload)?;
    eprintln!("refundd run: draining");
    let import_time = daemon.import_time;
    let started = Instant::now();
    daemon.start()?;
    let first_reply = wait_for_replies(&sink, &mut daemon, 1, params.drain_timeout).await?;
    let rest = params.drain_timeout.saturating_sub(first_reply);
    wait_for_replies(&sink, &mut daemon, params.n, rest).await?;
    let drain = started.elapsed();

    eprintln!("waiting until the daemon is caught up and idling");
    wait_until_moved(&dovecot, &mut daemon, Duration::from_secs(120)).await?;
    // Give it time to enter IDLE after its last pass: the latency run
    // measures an idling daemon, not the tail of the drain.
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!("latency: {} appends, one every {LATENCY_PACE:?}", params.m);
    let appended = append_paced(&dovecot, &workload, params.m).await?;
    let latency_timeout = Duration::from_secs(60) + LATENCY_PACE * params.m as u32;
    wait_for_replies(&sink, &mut daemon, params.n + params.m, latency_timeout).await?;
    let replies = read_replies(&sink.messages_dir())?;
    let latencies = latencies(&replies, &appended)?;

    let (vm_hwm_kb, vm_rss_kb) = daemon.memory()?;
    let started = Instant::now();
    daemon.terminate(Duration::from_secs(30))?;
    let shutdown = started.elapsed();

    check_one_reply_each(&replies, params.n, params.m)?;
    let outcomes = daemon.outcomes().await?;

    Ok(Report {
        backlog,
        index_time,
        import_time,
        raw,
        client,
        first_reply,
        drain,
        latencies,
        vm_hwm_kb,
        vm_rss_kb,
        shutdown,
        outcomes,
        load,
    })
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
        row(
            "refundd run: drain, spawn → N-th reply at the sink",
            n,
            self.drain,
        );
        let _ = writeln!(
            out,
            "drain: first reply {:.2} s after spawn, N-th reply {:.2} s after spawn",
            self.first_reply.as_secs_f64(),
            self.drain.as_secs_f64()
        );
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
}

impl Workload {
    fn new(now: DateTime<Utc>) -> Workload {
        // A PNG signature, then bytes that do not compress (as an image's).
        let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut state = 0x1234_5678_9abc_def0u64;
        while image.len() < ATTACHMENT_BYTES {
            state = splitmix(state);
            image.extend_from_slice(&state.to_le_bytes());
        }
        image.truncate(ATTACHMENT_BYTES);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
        let attachment = encoded
            .as_bytes()
            .chunks(76)
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n");
        Workload {
            now,
            // Whole seconds, as INTERNALDATE has them.
            received: DateTime::from_timestamp((now - ChronoDuration::hours(1)).timestamp(), 0)
                .unwrap_or(now),
            attachment,
        }
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

    /// Backlog message `i`.
    fn backlog_mail(&self, i: usize) -> Mail {
        let roll = splitmix(i as u64 ^ 0x5eed);
        let attachment = roll % 20 == 0;
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
                attachment,
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
            attachment: false,
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
        if c.attachment {
            let _ = write!(
                mail,
                "Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n--mixed\r\n{alternative}\
                 --mixed\r\nContent-Type: image/png; name=\"avatar.png\"\r\n\
                 Content-Disposition: attachment; filename=\"avatar.png\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--mixed--\r\n",
                self.attachment
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
    attachment: bool,
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
        let mail = workload.backlog_mail(i);
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
async fn folder_messages(dovecot: &Dovecot) -> Result<usize> {
    let mut session = login(dovecot).await?;
    within(IMAP_TIMEOUT, "SELECT", async {
        let mailbox = session.select(FOLDER).await?;
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
    import_time: Duration,
    child: Option<Child>,
}

impl Daemon {
    /// Writes a config for these servers (SQLite in a temp dir) and imports
    /// the generated ledger.
    fn configure(dovecot: &Dovecot, sink: &SmtpSinkServer, workload: &Workload) -> Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("refundd-bench-")
            .tempdir()?;
        let database = format!("sqlite://{}", dir.path().join("refundd.db").display());
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
        imap.folder = FOLDER.into();
        settings.imap = Some(imap);
        settings.smtp = Some(sink.config());
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
            import_time: started.elapsed(),
            child: None,
        })
    }

    /// Spawns `refundd run`, logging at info (as in production) to a file.
    fn start(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        let child = Command::new(refundd_binary())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "refundd=info")
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
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&self.database).await?;
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT outcome, COUNT(*) FROM cases GROUP BY outcome ORDER BY COUNT(*) DESC, outcome",
        )
        .fetch_all(&mut db)
        .await?;
        db.close().await?;
        Ok(rows)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The release `refundd` Cargo built for this bench.
fn refundd_binary() -> &'static str {
    env!("CARGO_BIN_EXE_refundd")
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

/// Every backlog and latency mail answered exactly once, nothing else sent.
fn check_one_reply_each(replies: &[Reply], n: usize, m: usize) -> Result<()> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for reply in replies {
        *counts.entry(reply.in_reply_to.as_str()).or_default() += 1;
    }
    let expected: Vec<String> = (0..n)
        .map(|i| format!("bench-{i}@backlog.example"))
        .chain((0..m).map(latency_message_id))
        .collect();
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .count();
    let repeated = counts.values().filter(|c| **c > 1).count();
    ensure!(
        missing == 0 && repeated == 0 && replies.len() == n + m,
        "{} replies for {} mails: {missing} unanswered, {repeated} answered more than once",
        replies.len(),
        n + m
    );
    Ok(())
}
