//! Replay speed: `refundd replay` over stored mail on SQLite.
//!
//! 1. **Store** (timed once, then kept): `REPLAY_N` (default 100,000)
//!    customer mails made from the demo's sample mails (`examples/demo/
//!    mail/`), each template copied for many senders: every copy has its
//!    own address, wallet, orders, invoice and receipt numbers and
//!    generations (from `examples/demo/ledger.jsonl`), and writes four
//!    times (minutes apart, so later mails meet what earlier ones did:
//!    already refunded, already credited, the courtesy cap). The real
//!    pipeline decides them, each at its receipt; then every customer
//!    asked for an order ID answers our reply (decided with the case).
//!    The store is kept under the target directory
//!    (`replay-bench/replay-{N}.db`) and reused by later runs.
//! 2. **Replay in force**: the library's `replay()` over every stored
//!    decision with the configuration in force, read-only store; wall
//!    time, messages per second, drift found (must be 0).
//! 3. **Replay with a candidate** (`refund_window_days = 3`): both
//!    configurations decide every message; wall time and changes.
//! 4. **Peak RSS** (VmHWM) of the process.
//!
//! Run: `cargo bench --bench replay` (release profile). Quick check:
//! `REPLAY_N=2000 cargo bench --bench replay`. The machine is shared, so
//! the load average is printed with the numbers.

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use refundd::config::Settings;
use refundd::domain::Outcome;
use refundd::ingest::{RawMessage, store_message};
use refundd::pipeline::Pipeline;
use refundd::progress::{NoProgress, Progress, StderrProgress};
use refundd::replay::{self, Source};
use refundd::store::{CaseFilter, ReplayScope, Store, import_jsonl};

const DEMO_AUTHSERV_ID: &str = "mx.anumi.example";
/// Mails per sender.
const WRITES: usize = 4;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let n: usize = match std::env::var("REPLAY_N") {
        Ok(v) => v.parse().context("REPLAY_N must be a number")?,
        Err(_) => 100_000,
    };
    ensure!(n >= WRITES, "REPLAY_N must be at least {WRITES}");
    let dir = bench_dir()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("replay-{n}.db"));
    let mut settings = Settings::default();
    settings.sender_auth.trusted_authserv_ids = vec![DEMO_AUTHSERV_ID.into()];
    if !path.exists() {
        let partial = dir.join(format!("replay-{n}.partial.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
        }
        let started = Instant::now();
        fill(&format!("sqlite://{}", partial.display()), n, &settings).await?;
        std::fs::rename(&partial, &path)?;
        println!(
            "store: {n} mails decided by the pipeline in {:.1} s (kept in {})",
            started.elapsed().as_secs_f64(),
            path.display()
        );
    } else {
        println!("store: reusing {}", path.display());
    }

    let url = format!("sqlite://{}", path.display());
    let store = Store::open_read_only(&url).await?;
    let total = store
        .count_replay_decisions(&ReplayScope::default())
        .await?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{total} stored decisions, database {:.0} MB; load average {}",
        size as f64 / 1e6,
        load_average()
    );

    let progress = StderrProgress::new("messages");
    let started = Instant::now();
    let report = replay::replay(
        &store,
        &settings,
        None,
        Source::Stored(ReplayScope::default()),
        &progress,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay in force: {} decided ({} not policy decisions) in {secs:.1} s = {:.0} messages/s; drift {}; waits on a person {}",
        report.decided,
        report.not_replayed.screen,
        report.decided as f64 / secs,
        report.drift.len(),
        report.waits_for_person.len()
    );
    let mut outcomes: Vec<String> = report
        .totals
        .before
        .outcomes
        .iter()
        .map(|(o, n)| format!("{o} {n}"))
        .collect();
    outcomes.sort();
    println!("  outcomes: {}", outcomes.join(", "));
    ensure!(
        report.drift.is_empty(),
        "drift: {:#?}",
        &report.drift[..report.drift.len().min(3)]
    );

    let mut candidate = settings.clone();
    candidate.policy.refund_window_days = 3;
    let started = Instant::now();
    let report = replay::replay(
        &store,
        &settings,
        Some(&candidate),
        Source::Stored(ReplayScope::default()),
        &NoProgress,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay with a candidate (3-day window): {} decided twice in {secs:.1} s = {:.0} messages/s; {} changed, money delta {:?}",
        report.decided,
        report.decided as f64 / secs,
        report.changed.len(),
        report.money_delta
    );
    println!(
        "peak RSS (VmHWM): {:.1} MB; load average {}",
        peak_rss_kb()? as f64 / 1024.0,
        load_average()
    );
    store.close().await;
    Ok(())
}

/// `replay-bench/` beside the release binaries.
fn bench_dir() -> Result<PathBuf> {
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(target).join("replay-bench"));
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench runs from target/release/deps")?;
    Ok(release.join("replay-bench"))
}

/// A sample mail and the demo wallet it belongs to.
struct Template {
    name: String,
    text: String,
    wallet: Option<String>,
    sender_local: String,
}

/// The ledger's tokens a copy renames: wallet ids, emails' local parts,
/// order UUIDs, the 8-letter blocks of invoice and receipt numbers,
/// generation ids.
struct Tokens {
    wallets: Vec<String>,
    locals: Vec<String>,
    orders: Vec<String>,
    blocks: Vec<String>,
    generations: Vec<String>,
}

fn tokens(ledger: &str) -> Result<Tokens> {
    let mut t = Tokens {
        wallets: vec![],
        locals: vec![],
        orders: vec![],
        blocks: vec![],
        generations: vec![],
    };
    for line in ledger.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        match v["type"].as_str() {
            Some("wallet") => {
                t.wallets.push(s("id").unwrap_or_default());
                let email = s("email").unwrap_or_default();
                t.locals
                    .push(email.split('@').next().unwrap_or_default().to_owned());
            }
            Some("order") => {
                t.orders.push(s("id").unwrap_or_default());
                for key in ["invoice_number", "receipt_number"] {
                    if let Some(number) = s(key)
                        && let Some(block) = number.split('-').nth(1)
                        && block.len() == 8
                        && !t.blocks.contains(&block.to_owned())
                    {
                        t.blocks.push(block.to_owned());
                    }
                }
            }
            Some("generation") => t.generations.push(s("id").unwrap_or_default()),
            _ => {}
        }
    }
    // Longest first, so `w_ann` never rewrites part of a longer id.
    t.wallets.sort_by_key(|w| std::cmp::Reverse(w.len()));
    t.generations.sort_by_key(|g| std::cmp::Reverse(g.len()));
    Ok(t)
}

/// Five letters for a copy number (26^5 > 11 million copies).
fn letters(mut i: usize) -> String {
    let mut out = [b'A'; 5];
    for slot in out.iter_mut().rev() {
        *slot = b'A' + (i % 26) as u8;
        i /= 26;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// Copy `i`'s version of a text (a mail or a ledger line).
fn rename(text: &str, t: &Tokens, i: usize) -> String {
    let mut out = text.to_owned();
    for (k, order) in t.orders.iter().enumerate() {
        let renamed = format!("{}{:012x}", &order[..24], i * 64 + k);
        out = out.replace(order.as_str(), &renamed);
    }
    for block in &t.blocks {
        out = out.replace(block.as_str(), &format!("{}{}", &block[..3], letters(i)));
    }
    for g in &t.generations {
        out = out.replace(g.as_str(), &format!("{g}c{i}"));
    }
    for w in &t.wallets {
        out = out.replace(&format!("\"{w}\""), &format!("\"{w}_c{i}\""));
    }
    for local in &t.locals {
        out = out.replace(&format!("{local}@"), &format!("{local}.c{i}@"));
    }
    out
}

async fn fill(url: &str, n: usize, settings: &Settings) -> Result<()> {
    let store = Store::connect(url).await?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let ledger = std::fs::read_to_string(root.join("ledger.jsonl"))?;
    let t = tokens(&ledger)?;
    let mut wallet_of_email: HashMap<String, String> = HashMap::new();
    for line in ledger.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["type"] == "wallet" {
            wallet_of_email.insert(
                v["email"].as_str().unwrap_or_default().to_owned(),
                v["id"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    let mut templates = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(root.join("mail"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.contains("duplicate") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let from = mail_parser::MessageParser::new()
            .parse_headers(&bytes)
            .and_then(|m| {
                m.from()
                    .and_then(|f| f.first())
                    .and_then(|a| a.address())
                    .map(str::to_lowercase)
            })
            .unwrap_or_default();
        templates.push(Template {
            name,
            text,
            wallet: wallet_of_email.get(&from).cloned(),
            sender_local: from.split('@').next().unwrap_or_default().to_owned(),
        });
    }

    let copies = n / WRITES;
    let mut lines = String::new();
    let mut mails: Vec<RawMessage> = Vec::with_capacity(n);
    for i in 0..copies {
        let template = &templates[i % templates.len()];
        if let Some(wallet) = &template.wallet {
            for line in ledger.lines().filter(|l| {
                l.contains(&format!("\"id\":\"{wallet}\""))
                    || l.contains(&format!("\"wallet\":\"{wallet}\""))
            }) {
                lines.push_str(&rename(line, &t, i));
                lines.push('\n');
            }
        }
        let mut text = rename(&template.text, &t, i);
        if !t.locals.contains(&template.sender_local) && !template.sender_local.is_empty() {
            // A stranger: an address of its own too.
            text = text.replace(
                &format!("{}@", template.sender_local),
                &format!("{}.c{i}@", template.sender_local),
            );
        }
        let date = header_date(text.as_bytes())?;
        for k in 0..WRITES {
            let mail = text.replacen("Message-ID: <", &format!("Message-ID: <c{i}.w{k}."), 1);
            mails.push(RawMessage {
                source: format!("bench:{}:{i}:{k}", template.name),
                bytes: mail.into_bytes(),
                received_at: date
                    + Duration::minutes(37 * k as i64)
                    + Duration::seconds(i as i64 % 600),
                full_size: None,
            });
        }
    }
    let imported = import_jsonl(&store, lines.as_bytes(), |_| {}).await?;
    ensure!(
        imported.rejected.is_empty(),
        "generated ledger rejected: {:?}",
        &imported.rejected[..imported.rejected.len().min(3)]
    );
    for mail in mails {
        store_message(&store, mail).await?;
    }
    let pipeline = Pipeline::new(store.clone(), Arc::new(settings.clone()))?;
    let progress = StderrProgress::new("messages");
    progress.begin("deciding the bench's mail", Some(n as u64));
    // Each at its receipt (plus a few seconds), as the daemon does.
    pipeline
        .process_pending_at(|m| m.received_at + Duration::seconds(3), &progress)
        .await?;
    progress.finish();

    // Everyone asked for an order ID answers our reply with the invoice.
    let asked = store
        .list_cases(&CaseFilter {
            outcome: Some(Outcome::NeedsInfo),
            limit: Some(i64::MAX),
            ..CaseFilter::default()
        })
        .await?;
    let mut answers = 0;
    for case in asked.iter().filter(|c| c.from.starts_with("kim.")) {
        let Some(reply) = store.replies_for_case(case.id).await?.into_iter().next() else {
            continue;
        };
        let copy = case
            .from
            .trim_start_matches("kim.c")
            .split('@')
            .next()
            .unwrap_or_default()
            .parse::<usize>()
            .unwrap_or_default();
        let invoice = format!("ANUMI-KLM{}-0002", letters(copy));
        let mail = format!(
            "Return-Path: <{from}>\r\nAuthentication-Results: {DEMO_AUTHSERV_ID}; dmarc=pass header.from=example.com\r\n\
             From: Kim <{from}>\r\nTo: refunds@anumi.example\r\nSubject: Re: {subject}\r\n\
             Date: Sat, 06 Jun 2026 09:30:00 +0000\r\nMessage-ID: <answer.{id}@example.com>\r\n\
             In-Reply-To: <{reply}>\r\nReferences: <{reply}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             It's the Pro 200 pack, invoice {invoice}.\r\n",
            from = case.from,
            subject = reply.subject.trim_start_matches("Re: "),
            id = case.id.0,
            reply = reply.message_id,
        );
        let received_at: DateTime<Utc> = reply.created_at + Duration::hours(2);
        store_message(
            &store,
            RawMessage {
                source: format!("bench:answer:{}", case.id),
                bytes: mail.into_bytes(),
                received_at,
                full_size: None,
            },
        )
        .await?;
        answers += 1;
    }
    pipeline
        .process_pending_at(|m| m.received_at + Duration::seconds(3), &NoProgress)
        .await?;
    println!("store: {answers} answers to our questions decided with their case");
    store.close().await;
    Ok(())
}

fn header_date(bytes: &[u8]) -> Result<DateTime<Utc>> {
    let headers = mail_parser::MessageParser::new()
        .parse_headers(bytes)
        .context("a sample mail without headers")?;
    let date = headers.date().context("a sample mail without Date:")?;
    DateTime::from_timestamp(date.to_timestamp(), 0).context("a Date: out of range")
}

fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/self/status")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}
