//! Wiring for the command line: builds the store, pipeline and sinks from
//! the settings and runs one command. Errors here are `anyhow`: they are
//! reported to the operator, not handled.

use anyhow::{Context, bail};
use chrono::Utc;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::Outcome;
use refundd::ingest::{self, maildir::Maildir};
use refundd::pipeline::{Pipeline, Processed, outbox};
use refundd::progress::{Progress, StderrProgress};
use refundd::reply::{FileSink, Templates};
use refundd::store::{CaseFilter, CaseId, CaseStatus, CaseSummary, Inserted, Store, import};

/// Text logs by default, JSON lines when asked; `RUST_LOG` filters, else
/// `default_filter` (what the command wants to say unasked), always within
/// [`SECRET_SAFE_LEVELS`], which no `RUST_LOG` can lift. Logs go to
/// standard error so that standard output stays parseable (`refundd cases
/// --json`).
pub fn init_tracing(json: bool, default_filter: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let requested = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    log_subscriber(json, std::io::stderr, requested).init();
}

/// The most verbose level some crates may log at, whatever `RUST_LOG`
/// asks: below it they print protocol traffic, credentials included.
/// async-imap logs every command it writes at `trace` (`LOGIN user
/// password`, `AUTHENTICATE XOAUTH2 token`) and every response (customer
/// mail); lettre, when built with its `tracing` feature, logs every SMTP
/// line at `debug` (`AUTH PLAIN` with the credentials, base64).
const SECRET_SAFE_LEVELS: [(&str, tracing::level_filters::LevelFilter); 3] = [
    ("async_imap", tracing::level_filters::LevelFilter::DEBUG),
    ("imap_proto", tracing::level_filters::LevelFilter::DEBUG),
    ("lettre", tracing::level_filters::LevelFilter::INFO),
];

/// The log subscriber: `requested` (from `RUST_LOG`) and the caps of
/// [`SECRET_SAFE_LEVELS`] are two filter layers, and an event is written
/// only when both let it through, so that a more specific `RUST_LOG`
/// directive (`async_imap::imap_stream=trace`) cannot lift a cap the way
/// it would override a directive added to the same `EnvFilter`. Records of
/// the `log` crate (async-imap's) are filtered by their target like any
/// event.
fn log_subscriber<W>(
    json: bool,
    writer: W,
    requested: tracing_subscriber::EnvFilter,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    let caps = Targets::new()
        .with_default(tracing::level_filters::LevelFilter::TRACE)
        .with_targets(SECRET_SAFE_LEVELS);
    let output = tracing_subscriber::fmt::layer().with_writer(writer);
    let output = if json {
        output.json().boxed()
    } else {
        output.boxed()
    };
    tracing_subscriber::registry()
        .with(requested)
        .with(caps)
        .with(output)
}

/// Reads and validates the settings.
pub fn load_settings(path: Option<&Path>) -> anyhow::Result<Arc<Settings>> {
    Ok(Arc::new(Settings::load(path)?))
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database.url)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                redact_url(&settings.database.url)
            )
        })
}

/// The database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{}@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `refundd migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    store.migrate().await.context("migrations failed")?;
    println!("database is up to date");
    Ok(ExitCode::SUCCESS)
}

/// `refundd ledger import FILE`: good lines import, bad ones are listed
/// with their number and reason, and the exit code says whether any was
/// rejected.
pub async fn import_ledger(settings: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let open =
            || std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()));
        // Counting the lines first gives the rate a time left; a second
        // read of the file is fast next to the import itself.
        let total = count_lines(std::io::BufReader::new(open()?))
            .with_context(|| format!("cannot read {}", file.display()))?;
        (Box::new(std::io::BufReader::new(open()?)), Some(total))
    };
    let progress = StderrProgress::new("lines");
    progress.begin("ledger import", total);
    let report = import::import_jsonl(&store, reader, |lines| progress.update(lines))
        .await
        .context("ledger import failed")?;
    progress.finish();
    for rejected in &report.rejected {
        eprintln!("line {}: {}", rejected.line_no, rejected.reason);
    }
    println!(
        "imported {} records, rejected {} lines",
        report.imported,
        report.rejected.len()
    );
    Ok(if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Lines in a file (a last line without a newline counts).
fn count_lines(mut reader: impl BufRead) -> std::io::Result<u64> {
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(lines + u64::from(last != b'\n'));
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[buf.len() - 1];
        let n = buf.len();
        reader.consume(n);
    }
}

/// One pass over a Maildir: store every message, decide every stored
/// message, move the files to `cur/`, deliver the replies.
pub async fn process_maildir(settings: &Arc<Settings>, dir: &Path) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let processed = process_maildir_pass(settings, &store, dir).await?;
    // Payments (act::payments): pay approved cash refunds before the outbox
    // goes out, so a held reply released here leaves in this same run.
    let payments = refundd::act::payments::run_configured(&store, settings, Utc::now()).await?;
    if settings.polar.is_some() {
        println!("{}", payments_line(&payments));
    }
    let sink = FileSink::new(&settings.outbox.dir);
    let delivery = outbox::deliver_queued(&store, &sink, &settings.lifecycle(), Utc::now()).await?;
    println!(
        "processed {} messages into cases; {} replies written to {}",
        processed.len(),
        delivery.sent,
        settings.outbox.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line saying what a payment pass did.
fn payments_line(report: &refundd::act::payments::PaymentReport) -> String {
    format!(
        "payments: {} refunded, {} found already refunded, {} to review, {} refused by Polar, {} dry-run, {} unclear, {} deferred",
        report.accepted,
        report.reconciled,
        report.review,
        report.refused,
        report.dry_run,
        report.unclear,
        report.deferred
    )
}

/// `refundd payments run`: one payment pass, a dispute poll, then the
/// outbox (replies the pass released).
pub async fn run_payments(settings: &Settings) -> anyhow::Result<ExitCode> {
    let Some(polar) = settings.polar.as_ref() else {
        bail!("payments are off: there is no [polar] section in the configuration")
    };
    let store = connect(settings).await?;
    let client = refundd::act::payments::client(polar)?;
    let report = refundd::act::payments::run_pending(&store, &client, settings, Utc::now()).await?;
    println!("{}", payments_line(&report));
    let chargebacks = refundd::act::ledger_sync::poll_disputes(&store, &client).await?;
    println!("disputes: {chargebacks} chargebacks of ledger orders updated");
    let sink = FileSink::new(&settings.outbox.dir);
    let delivery = outbox::deliver_queued(&store, &sink, &settings.lifecycle(), Utc::now()).await?;
    println!(
        "{} replies written to {}",
        delivery.sent,
        settings.outbox.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `refundd webhooks serve --listen ADDR`: the Polar webhook endpoint and
/// its applier, until SIGTERM or SIGINT.
pub async fn serve_webhooks(
    settings: &Settings,
    listen: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let Some(polar) = settings.polar.as_ref() else {
        bail!("webhooks need a [polar] section in the configuration")
    };
    let Some(secret) = polar.webhook_secret.as_deref() else {
        bail!("webhooks need polar.webhook_secret (or REFUNDD_POLAR_WEBHOOK_SECRET)")
    };
    let store = connect(settings).await?;
    let client = refundd::act::payments::client(polar)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signals.cancel();
    });
    let state = refundd::act::webhooks::WebhookState::new(store, secret);
    refundd::act::webhooks::serve_on(
        listen,
        state,
        Some(client),
        settings.lifecycle(),
        settings.web.header_read_timeout(),
        shutdown,
    )
    .await
    .with_context(|| format!("cannot serve webhooks on {listen}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The pass itself (also used by the demo).
pub async fn process_maildir_pass(
    settings: &Arc<Settings>,
    store: &Store,
    dir: &Path,
) -> anyhow::Result<Vec<Processed>> {
    let pipeline = Pipeline::new(store.clone(), settings.clone())?;
    let maildir =
        Maildir::open(dir).with_context(|| format!("cannot open Maildir {}", dir.display()))?;
    let entries = maildir
        .scan()
        .with_context(|| format!("cannot list Maildir {}", dir.display()))?;
    for entry in &entries {
        let raw = maildir.read(entry, settings.ingest.max_message_bytes)?;
        if let Inserted::Duplicate(existing) = ingest::store_message(store, raw).await? {
            tracing::debug!(message = existing, "already stored; not processed again");
        }
    }
    let processed = pipeline.process_pending(Utc::now()).await?;
    for entry in &entries {
        maildir
            .mark_processed(entry)
            .with_context(|| format!("cannot move {} to cur/", entry.path.display()))?;
    }
    Ok(processed)
}

/// `refundd cases`.
pub async fn list_cases(
    settings: &Settings,
    json: bool,
    outcome: Option<Outcome>,
    status: Option<CaseStatus>,
    limit: i64,
) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let cases = store
        .list_cases(&CaseFilter {
            outcome,
            status,
            limit: Some(limit),
            ..CaseFilter::default()
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&cases)?);
    } else {
        print!("{}", cases_table(&cases));
    }
    Ok(ExitCode::SUCCESS)
}

/// A fixed-width table of cases, one line each, for terminals.
pub fn cases_table(cases: &[CaseSummary]) -> String {
    let mut out = format!(
        "{:<7} {:<26} {:<10} {:<17} {:<12} {:<28} {}\n",
        "CASE", "FROM", "OUTCOME", "CATEGORY", "CLAUSES", "ACTIONS", "FLAGS"
    );
    for c in cases {
        let clauses = c
            .clauses
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let flags = c
            .flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let actions = c
            .actions
            .iter()
            .map(describe_action)
            .collect::<Vec<_>>()
            .join("; ");
        out.push_str(&format!(
            "{:<7} {:<26} {:<10} {:<17} {:<12} {:<28} {}\n",
            c.id.to_string(),
            truncate(&c.from, 26),
            c.outcome.as_str(),
            c.category.as_str(),
            clauses,
            truncate(&actions, 28),
            flags
        ));
    }
    out
}

fn describe_action(action: &refundd::domain::Action) -> String {
    use refundd::domain::Action;
    match action {
        Action::CashRefund {
            amount, currency, ..
        } => {
            format!("refund {}.{:02} {currency}", amount / 100, amount % 100)
        }
        Action::WalletCredit { credits, .. } => format!("credit {credits}"),
    }
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// `refundd case ID`.
pub async fn show_case(settings: &Settings, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let number: CaseId = id
        .parse()
        .with_context(|| format!("`{id}` is not a case number (e.g. 1042 or R-1042)"))?;
    let store = connect(settings).await?;
    let Some(case) = store.case(number).await? else {
        bail!("there is no case {number}")
    };
    let messages = store.case_messages(number).await?;
    let replies = store.replies_for_case(number).await?;
    let events = store.case_events(number).await?;
    let engine = store.engine_decisions(number).await?;
    if json {
        let value = serde_json::json!({
            "case": {
                "id": case.id, "sender": case.sender, "subject": case.subject,
                "language": case.language, "status": case.status, "deadline": case.deadline,
                "created_at": case.created_at, "updated_at": case.updated_at, "decision": case.decision,
            },
            "messages": messages.iter().map(|m| serde_json::json!({
                "id": m.id, "message_id": m.message_id, "received_at": m.received_at,
                "source": m.source,
                "raw": m.removed.is_none().then(|| String::from_utf8_lossy(&m.raw)),
                "removed": m.removed.map(|(why, at)| serde_json::json!({
                    "why": why, "at": at, "shown_as": why.shown_as(),
                })),
            })).collect::<Vec<_>>(),
            "replies": replies.iter().map(|r| serde_json::json!({
                "message_id": r.message_id, "to": r.to_addr, "subject": r.subject, "status": r.status.as_str(),
                "attempts": r.attempts, "last_error": r.last_error, "created_at": r.created_at, "sent_at": r.sent_at,
            })).collect::<Vec<_>>(),
            "events": events,
            "engine_decisions": engine.iter().map(|e| serde_json::json!({
                "message": e.message, "basis": e.basis, "outcome": e.decision.outcome,
                "category": e.decision.category, "actions": e.decision.actions,
                "fingerprint": e.fingerprint, "version": e.version, "shadow": e.shadow,
                "decided_at": e.decided_at,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let d = &case.decision;
    println!(
        "Case {}  from {}  status {}",
        case.id, case.sender, case.status
    );
    println!("Subject: {}", case.subject);
    println!("Outcome: {}  category: {}", d.outcome, d.category);
    if !d.flags.is_empty() {
        println!(
            "Flags: {}",
            d.flags
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for action in &d.actions {
        println!("Action: {}", serde_json::to_string(action)?);
    }
    println!("\nWhy:");
    for step in &d.trace {
        println!("  [{}] {}", step.clause, step.finding);
    }
    println!("\nEngine decisions:");
    for e in &engine {
        let actions: Vec<String> = e.decision.actions.iter().map(|a| a.describe()).collect();
        println!(
            "  message {} {}: {}{} [{}] (configuration {}, refundd {})",
            e.message,
            e.decided_at.to_rfc3339(),
            e.decision.outcome,
            if e.shadow {
                ", proposed in shadow mode"
            } else {
                ""
            },
            if actions.is_empty() {
                "no action".to_owned()
            } else {
                actions.join("; ")
            },
            e.fingerprint,
            e.version
        );
    }
    for m in &messages {
        println!(
            "\n--- message {} received {} ({})",
            m.id,
            m.received_at.to_rfc3339(),
            m.source
        );
        match m.removed {
            Some((why, at)) => println!(
                "[{}: the raw mail was removed on {}; the decision and its trace above stay]",
                why.shown_as(),
                at.to_rfc3339()
            ),
            None => println!("{}", String::from_utf8_lossy(&m.raw)),
        }
    }
    for r in &replies {
        println!(
            "\n--- reply {} to {} [{}]",
            r.message_id, r.to_addr, r.status
        );
    }
    println!("\nHistory:");
    for e in &events {
        println!(
            "  {} {} {} -> {}: {}",
            e.at.to_rfc3339(),
            e.actor,
            e.from_status.map(|s| s.as_str()).unwrap_or("-"),
            e.to_status,
            e.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `refundd run`: the daemon, until SIGTERM or SIGINT; SIGHUP reloads the
/// reply templates. Broken templates stop it before it reads any mail.
pub async fn run_daemon(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
    let templates = load_templates(&settings)?;
    reload_templates_on_sighup(templates.clone())?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing the current work");
        signals.cancel();
    });
    refundd::daemon::run(settings, templates, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The reply templates the settings name, checked; the error names every
/// broken file and line.
fn load_templates(settings: &Settings) -> anyhow::Result<Templates> {
    Templates::load(settings.reply_templates())
        .context("refusing to start (`refundd templates check` lists every problem)")
}

/// On every SIGHUP, reads the reply templates again and uses them once
/// every check passes; a broken change is logged with its problems and
/// the templates in use stay.
fn reload_templates_on_sighup(templates: Templates) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let reloading = templates.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(())) => tracing::info!(stage = "templates", "reply templates reloaded"),
                Ok(Err(err)) => tracing::error!(
                    stage = "templates",
                    error = %err,
                    "reply templates not reloaded; the ones in use stay"
                ),
                Err(err) => {
                    tracing::error!(stage = "templates", error = %err, "template reload failed")
                }
            }
        }
    });
    Ok(())
}

/// `refundd templates check`: every reply kind and configured deny reason,
/// in every language, as text and HTML, from sample facts of every kind of
/// case; each problem on a line of its own (`file:line: what`), exit code
/// 1 if there is any.
pub fn check_templates(settings: &Settings) -> anyhow::Result<ExitCode> {
    let source = settings.reply_templates();
    match &source.dir {
        Some(dir) => println!(
            "checking the shipped reply templates, replaced from {} ([reply] templates_dir)",
            dir.display()
        ),
        None => println!("checking the shipped reply templates ([reply] templates_dir is not set)"),
    }
    if !source.bodies.is_empty() {
        println!(
            "and the templates of the configured deny reasons: {}",
            source.bodies.join(", ")
        );
    }
    let report = refundd::reply::check(&source);
    for problem in &report.problems {
        println!("{problem}");
    }
    if report.is_ok() {
        println!(
            "ok    {} templates, {} replies rendered in en, de, fr and es, text and HTML; dates in {}",
            report.templates, report.renders, source.time_zone
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "FAIL  {} problem(s) in the reply templates; refundd run will not start with them",
            report.problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `refundd check-config`: every configured connection, tried once, with
/// a plain verdict per line; exit code 1 if any failed.
pub async fn check_config(settings: &Settings) -> anyhow::Result<ExitCode> {
    refundd::act::polar::install_crypto_provider();
    let mut ok = true;
    let mut report = |what: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("ok    {what}: {detail}"),
        Err(problem) => {
            ok = false;
            println!("FAIL  {what}: {problem}");
        }
    };
    report("configuration", Ok("valid".into()));
    let db = match Store::connect(&settings.database.url).await {
        Ok(store) => {
            store.close().await;
            Ok(format!(
                "{} reachable, migrations applied",
                redact_url(&settings.database.url)
            ))
        }
        Err(err) => Err(format!("{}: {err:#}", redact_url(&settings.database.url))),
    };
    report("database", db);
    let templates = refundd::reply::check(&settings.reply_templates());
    report(
        "reply templates",
        if templates.is_ok() {
            Ok(format!(
                "{} templates, {} replies rendered without a problem",
                templates.templates, templates.renders
            ))
        } else {
            Err(format!(
                "{} problem(s), first: {}; `refundd templates check` lists them all",
                templates.problems.len(),
                templates.problems[0]
            ))
        },
    );
    match &settings.imap {
        Some(imap) => {
            for (what, result) in check_imap(imap).await {
                report(what, result);
            }
        }
        None => report(
            "imap",
            Ok("not configured (reads [daemon] maildir if set)".into()),
        ),
    }
    match &settings.smtp {
        Some(smtp) => {
            let result = async {
                let sink = refundd::reply::smtp::SmtpSink::new(smtp.clone())?;
                sink.check().await?;
                sink.close().await;
                Ok::<_, refundd::reply::smtp::SmtpError>(())
            }
            .await;
            let greeted = match &smtp.username {
                Some(user) => format!("accepts our login as {user}"),
                None => "answers; no login is configured, mail is handed over without one".into(),
            };
            report(
                "smtp",
                result
                    .map(|()| format!("{}:{} {greeted}", smtp.host, smtp.effective_port()))
                    .map_err(|e| format!("{}:{}: {e:#}", smtp.host, smtp.effective_port())),
            );
        }
        None => report(
            "smtp",
            Ok(format!(
                "not configured: replies go to {}",
                settings.outbox.dir.display()
            )),
        ),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The IMAP lines of `check-config`: login and folder, the processed folder
/// (there, or created now — the daemon would create it too), and each
/// extension refundd uses, with what it does without it. A server's
/// refusal is shown in its own words.
async fn check_imap(
    imap: &refundd::ingest::imap::ImapConfig,
) -> Vec<(&'static str, Result<String, String>)> {
    use refundd::ingest::imap::{ImapError, ImapExtension, ImapMailbox, ProcessedFolder};
    let server = format!("{}:{}", imap.host, imap.effective_port());
    let failed = |err: &ImapError| match err.server_words() {
        Some(words) if !err.to_string().contains(&words) => {
            format!("{server}: {err:#} (the server said: {words})")
        }
        _ => format!("{server}: {err:#}"),
    };
    let mut lines = Vec::new();
    let mut mailbox = match ImapMailbox::connect(imap).await {
        Ok(mailbox) => mailbox,
        Err(err) => {
            lines.push(("imap", Err(failed(&err))));
            return lines;
        }
    };
    let state = mailbox.folder();
    lines.push((
        "imap",
        Ok(format!(
            "{server} accepts our login as {}; folder \"{}\" has {} messages",
            imap.username, imap.folder, state.exists
        )),
    ));
    let processed = match mailbox.ensure_processed_folder().await {
        Ok(ProcessedFolder::Exists) => Ok(format!("\"{}\" exists", imap.processed_folder)),
        Ok(ProcessedFolder::Created) => Ok(format!(
            "\"{}\" did not exist and was created",
            imap.processed_folder
        )),
        Err(err @ ImapError::ProcessedFolder { .. }) => Err(format!(
            "{err}; nothing will be read until it exists (create it by hand, or choose a folder the server allows, e.g. under INBOX on Cyrus: \"INBOX/{}\")",
            imap.processed_folder
        )),
        Err(err) => Err(failed(&err)),
    };
    lines.push(("imap processed folder", processed));
    for extension in ImapExtension::ALL {
        let detail = if !mailbox.advertises(extension) {
            format!(
                "{} not offered: {}",
                extension.capability(),
                extension.fallback()
            )
        } else if extension == ImapExtension::Condstore {
            "CONDSTORE offered (refundd does not need it)".to_owned()
        } else if extension == ImapExtension::Idle && !imap.idle {
            format!(
                "IDLE offered, not used (idle = false): NOOP polling every {} s",
                imap.poll_every().as_secs()
            )
        } else {
            format!("{} offered and used", extension.capability())
        };
        lines.push(("imap extension", Ok(detail)));
    }
    let _ = mailbox.logout().await;
    lines
}

// ---------------------------------------------------------------------
// The reviewers' console: `refundd serve`, `queue`, `decide`, `reviewer`.
// ---------------------------------------------------------------------

/// `refundd serve`: the reviewers' console alone, on `[web] listen`, until
/// SIGTERM or SIGINT; SIGHUP reloads the reply templates.
pub async fn serve_console(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
    let templates = load_templates(&settings)?;
    reload_templates_on_sighup(templates.clone())?;
    let store = connect(&settings).await?;
    let state = refundd::web::WebState::with_templates(store, settings.clone(), templates)?;
    let listener = tokio::net::TcpListener::bind(&settings.web.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.web.listen))?;
    println!("console on http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signals.cancel();
    });
    refundd::web::serve(listener, state, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `refundd queue`: open cases, earliest deadline first.
pub async fn show_queue(
    settings: &Settings,
    json: bool,
    filter: refundd::store::QueueFilter,
) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let page = store.queue(&filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    println!(
        "{:<8} {:<18} {:<10} {:<17} {:<12} {:<26} {:<8} FLAGS",
        "CASE", "TIME LEFT", "STATUS", "CATEGORY", "AT STAKE", "FROM", "VERSION"
    );
    for item in &page.items {
        let (left, _) = refundd::web::view::time_left(item.deadline, now);
        let stake = match (item.amount, item.currency.as_deref()) {
            (Some(a), Some(c)) => refundd::web::view::money(a, c),
            _ => "-".into(),
        };
        let flags = item
            .flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<8} {:<18} {:<10} {:<17} {:<12} {:<26} {:<8} {}",
            item.id.to_string(),
            truncate(&left, 18),
            item.status.as_str(),
            item.category.as_str(),
            stake,
            truncate(&item.sender, 26),
            item.version,
            flags
        );
    }
    println!("{} open case(s)", page.total);
    Ok(ExitCode::SUCCESS)
}

/// What `refundd decide` was asked to do.
#[derive(Debug, Clone)]
pub struct DecideArgs {
    pub case: String,
    /// `approve`, `deny`, `ask` or `note`.
    pub verb: String,
    pub amount: Option<String>,
    pub credits: Option<i64>,
    pub order: Option<String>,
    pub reason: Option<String>,
    pub ask: Option<String>,
    pub note: Option<String>,
    pub reviewer: String,
    pub version: Option<i64>,
}

/// `refundd decide CASE approve|deny|ask|note …`: the same decision as the
/// console's, recorded for the reviewer named by `--as`.
pub async fn decide_case(settings: &Arc<Settings>, args: DecideArgs) -> anyhow::Result<ExitCode> {
    use refundd::pipeline::review::{AskFor, ReviewChoice, ReviewDesk, ReviewRequest};
    let store = connect(settings).await?;
    let case_id: CaseId = args.case.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let reviewer = store
        .reviewer_by_email(&args.reviewer)
        .await?
        .filter(|r| !r.disabled)
        .with_context(|| {
            format!(
                "there is no reviewer {} (add one with `refundd reviewer add`)",
                args.reviewer
            )
        })?;
    let desk = ReviewDesk::new(store.clone(), settings.clone())?;
    let Some(case) = store.case(case_id).await? else {
        bail!("there is no case {case_id}")
    };
    if args.verb == "note" {
        let text = args.note.as_deref().context("a note needs --note TEXT")?;
        desk.add_note(case_id, &reviewer.email, text, Utc::now())
            .await?;
        println!("note added to {case_id}");
        return Ok(ExitCode::SUCCESS);
    }
    let limits = desk.limits(&case).await?;
    let choice = match args.verb.as_str() {
        "approve" => match (&args.amount, args.credits) {
            (Some(amount), _) => ReviewChoice::ApproveCash {
                order_id: args.order.clone(),
                amount: Some(
                    refundd::web::view::parse_major(amount)
                        .with_context(|| format!("`{amount}` is not an amount like 7.20"))?,
                ),
            },
            (None, Some(credits)) => ReviewChoice::ApproveCredit {
                credits: Some(credits),
            },
            (None, None) => limits
                .proposal
                .clone()
                .context("no proposed approval for this case: give --amount or --credits")?,
        },
        "deny" => {
            let name = args.reason.as_deref().unwrap_or_default();
            let reasons = desk.deny_reasons();
            let reason = reasons
                .get(name)
                .with_context(|| format!("--reason must be one of: {}", reasons.ids()))?;
            ReviewChoice::Deny {
                reason: reason.id.clone(),
            }
        }
        "ask" => {
            let name = args.ask.as_deref().unwrap_or_default();
            let ask = AskFor::ALL
                .into_iter()
                .find(|a| a.as_str() == name)
                .with_context(|| {
                    format!(
                        "--ask must be one of: {}",
                        AskFor::ALL.map(|a| a.as_str()).join(", ")
                    )
                })?;
            ReviewChoice::Ask { ask }
        }
        other => bail!("unknown decision `{other}`: approve, deny, ask or note"),
    };
    let applied = desk
        .apply_reviewer_decision(
            &ReviewRequest {
                case_id,
                expected_version: args.version.unwrap_or(case.version),
                reviewer: reviewer.email.clone(),
                admin: reviewer.role == refundd::store::ReviewerRole::Admin,
                choice,
                personal_note: args.note.clone(),
            },
            Utc::now(),
        )
        .await?;
    println!(
        "{}: {} ({}), reply {} queued",
        applied.case_id, applied.outcome, applied.status, applied.reply_message_id
    );
    Ok(ExitCode::SUCCESS)
}

/// `refundd reviewer add EMAIL [--admin]`: the password comes from
/// standard input when it is not a terminal, else from a prompt without
/// echo (asked twice).
pub async fn add_reviewer(
    settings: &Settings,
    email: &str,
    admin: bool,
) -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let store = connect(settings).await?;
    let role = if admin {
        refundd::store::ReviewerRole::Admin
    } else {
        refundd::store::ReviewerRole::Reviewer
    };
    let reviewer =
        refundd::web::accounts::add_reviewer(&store, email, &password, role, Utc::now()).await?;
    println!("reviewer {} added ({})", reviewer.email, role.as_str());
    Ok(ExitCode::SUCCESS)
}

/// The actor the audit log names for acts done at the command line.
const CLI_ACTOR: &str = "cli";

/// `refundd reviewer token EMAIL [--label L]`: a new API token, printed
/// once on standard output; its expiry goes to standard error.
pub async fn reviewer_token(
    settings: &Settings,
    email: &str,
    label: &str,
) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let reviewer = refundd::web::accounts::reviewer(&store, email).await?;
    let issued = refundd::web::accounts::create_api_token(
        &store,
        CLI_ACTOR,
        &reviewer,
        label,
        settings.web.token_ttl(),
        Utc::now(),
    )
    .await?;
    println!("{}", issued.token);
    eprintln!(
        "token `{label}` for {} expires {}",
        reviewer.email,
        short_time(issued.expires_at)
    );
    Ok(ExitCode::SUCCESS)
}

/// `refundd reviewer token EMAIL --revoke (--label L | --all)`; exit code 1
/// when no token matched.
pub async fn revoke_tokens(
    settings: &Settings,
    email: &str,
    label: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    use refundd::web::accounts::TokenSelection;
    let which = match (label, all) {
        (Some(label), _) => TokenSelection::Label(label),
        (None, true) => TokenSelection::All,
        (None, false) => bail!("say which tokens to revoke: --label LABEL or --all"),
    };
    let store = connect(settings).await?;
    let revoked =
        refundd::web::accounts::revoke_tokens(&store, CLI_ACTOR, email, which, Utc::now()).await?;
    println!("{revoked} token(s) of {email} revoked");
    Ok(if revoked == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `refundd reviewer disable EMAIL`.
pub async fn disable_reviewer(settings: &Settings, email: &str) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let ended =
        refundd::web::accounts::disable_reviewer(&store, CLI_ACTOR, email, Utc::now()).await?;
    println!(
        "{email} disabled: {} session(s) ended, {} token(s) revoked, {} claimed case(s) released",
        ended.sessions_ended, ended.tokens_revoked, ended.claims_released
    );
    Ok(ExitCode::SUCCESS)
}

/// `refundd reviewer enable EMAIL`.
pub async fn enable_reviewer(settings: &Settings, email: &str) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    if refundd::web::accounts::enable_reviewer(&store, CLI_ACTOR, email, Utc::now()).await? {
        println!("{email} enabled");
    } else {
        println!("{email} was not disabled");
    }
    Ok(ExitCode::SUCCESS)
}

/// `refundd reviewer list [--json]`.
pub async fn list_reviewers(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let reviewers = store.reviewers(Utc::now()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reviewers)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<9} {:<9} {:<17} {:<17} {:<7} TOKEN LAST USED",
        "EMAIL", "ROLE", "STATUS", "CREATED", "LAST SIGN-IN", "TOKENS"
    );
    for r in &reviewers {
        println!(
            "{:<32} {:<9} {:<9} {:<17} {:<17} {:<7} {}",
            truncate(&r.reviewer.email, 32),
            r.reviewer.role.as_str(),
            if r.reviewer.disabled {
                "disabled"
            } else {
                "active"
            },
            short_time(r.reviewer.created_at),
            r.last_login_at.map_or("-".into(), short_time),
            r.active_tokens,
            r.token_last_used_at.map_or("-".into(), short_time),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `refundd reviewer tokens EMAIL [--json]`.
pub async fn list_tokens(settings: &Settings, email: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let reviewer = refundd::web::accounts::reviewer(&store, email).await?;
    let tokens = store.api_tokens(reviewer.id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    println!(
        "{:<20} {:<17} {:<17} {:<17} STATE",
        "LABEL", "ISSUED", "EXPIRES", "LAST USED"
    );
    for t in &tokens {
        let state = match (t.revoked_at, t.is_active(now)) {
            (Some(at), _) => format!("revoked {}", short_time(at)),
            (None, true) => "active".into(),
            (None, false) => "expired".into(),
        };
        println!(
            "{:<20} {:<17} {:<17} {:<17} {state}",
            truncate(&t.label, 20),
            short_time(t.created_at),
            t.expires_at.map_or("-".into(), short_time),
            t.last_used_at.map_or("-".into(), short_time),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A time to the minute, UTC, for tables.
fn short_time(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

// ---------------------------------------------------------------------
// `refundd report`.
// ---------------------------------------------------------------------

/// `refundd report --since … [--until …] [--csv|--json]`.
pub async fn report(
    settings: &Settings,
    since: &str,
    until: Option<&str>,
    csv: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let zone = settings.calendar.time_zone;
    let since = report_instant(since, zone).with_context(|| format!("--since {since:?}"))?;
    let until = match until {
        Some(text) => report_instant(text, zone).with_context(|| format!("--until {text:?}"))?,
        None => now,
    };
    if until <= since {
        bail!("--until must be later than --since");
    }
    let store = connect(settings).await?;
    let report = refundd::report::build(&store, since, until, now, zone).await?;
    let out = if csv {
        refundd::report::to_csv(&report)
    } else if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        refundd::report::to_text(&report)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------
// `refundd replay`.
// ---------------------------------------------------------------------

/// What `refundd replay` was asked.
#[derive(Debug)]
pub struct ReplayArgs {
    pub since: Option<String>,
    pub until: Option<String>,
    pub case: Option<String>,
    pub candidate: Option<std::path::PathBuf>,
    pub maildir: Option<std::path::PathBuf>,
    pub mbox: Option<std::path::PathBuf>,
    pub imap_folder: Option<String>,
    pub ledger: Option<std::path::PathBuf>,
    pub json: bool,
    pub csv: bool,
    pub html: Option<std::path::PathBuf>,
}

/// An archived message as replay reads it.
fn archived(
    item: Result<ingest::archive::ArchivedMessage, ingest::archive::ArchiveError>,
) -> Result<(Vec<u8>, chrono::DateTime<Utc>, String), ingest::archive::ArchiveError> {
    item.map(|m| (m.bytes, m.received_at, m.source))
}

/// `refundd replay`: decides again, prints the table (or JSON, CSV),
/// writes the HTML page when asked. Exit code 1 when drift was found or
/// a ledger line was rejected.
pub async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use refundd::replay::{self, Source};
    use refundd::store::ReplayScope;

    let candidate = match &args.candidate {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the candidate {}", path.display()))?;
            Some(
                replay::validate_candidate(&text)
                    .with_context(|| format!("candidate {}", path.display()))?,
            )
        }
        None => None,
    };
    let archive = match (&args.maildir, &args.mbox, &args.imap_folder, &args.ledger) {
        (Some(dir), _, _, Some(ledger)) => {
            let messages = ingest::archive::read_maildir(dir)
                .with_context(|| format!("cannot read the Maildir {}", dir.display()))?;
            Some(replay::archive_source(
                messages.map(archived),
                ledger.clone(),
            ))
        }
        (_, Some(file), _, Some(ledger)) => {
            let messages = ingest::archive::read_mbox(file)
                .with_context(|| format!("cannot read the mbox {}", file.display()))?;
            Some(replay::archive_source(
                messages.map(archived),
                ledger.clone(),
            ))
        }
        (_, _, Some(folder), Some(ledger)) => {
            let imap = settings
                .imap
                .as_ref()
                .context("--imap-folder reads the [imap] server, and there is no [imap] section")?;
            let mut messages = Vec::new();
            ingest::archive::read_imap_folder(imap, folder, |m| messages.push(Ok(m)))
                .await
                .with_context(|| format!("cannot read the IMAP folder {folder}"))?;
            Some(replay::archive_source(
                messages.into_iter().map(archived),
                ledger.clone(),
            ))
        }
        _ => None,
    };
    let (store, source) = match archive {
        // The configured store is never opened for an archive.
        Some(source) => (Store::open("sqlite::memory:").await?, source),
        _ => {
            let zone = settings.calendar.time_zone;
            let instant = |flag: &str, text: &Option<String>| {
                text.as_deref()
                    .map(|t| report_instant(t, zone).with_context(|| format!("{flag} {t:?}")))
                    .transpose()
            };
            let scope = ReplayScope {
                since: instant("--since", &args.since)?,
                until: instant("--until", &args.until)?,
                case: args
                    .case
                    .as_deref()
                    .map(|c| {
                        c.parse()
                            .with_context(|| format!("`{c}` is not a case number (e.g. R-12)"))
                    })
                    .transpose()?,
            };
            let store = Store::open_read_only(&settings.database.url)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the database {}",
                        redact_url(&settings.database.url)
                    )
                })?;
            (store, Source::Stored(scope))
        }
    };
    let progress = StderrProgress::new("messages");
    let report = replay::replay(&store, settings, candidate.as_ref(), source, &progress).await?;
    store.close().await;
    if let Some(path) = &args.html {
        std::fs::write(path, replay::to_html(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let out = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else if args.csv {
        replay::to_csv(&report)
    } else {
        replay::to_text(&report)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(
        if report.drift.is_empty() && report.ledger_rejected.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// `refundd erase --sender EMAIL`: a person's erasure request.
pub async fn erase(
    settings: &Settings,
    sender: &str,
    operator: Option<&str>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let actor = operator.map_or("cli".to_owned(), |who| format!("operator:{who}"));
    let report = match refundd::privacy::erase(&store, sender, &actor, Utc::now(), dry_run).await {
        Ok(report) => report,
        Err(refundd::privacy::PrivacyError::Store(refundd::store::StoreError::Conflict {
            detail,
            ..
        })) => {
            eprintln!("not erased: {detail}");
            return Ok(ExitCode::FAILURE);
        }
        Err(other) => return Err(other.into()),
    };
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        refundd::privacy::to_text(&report)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD` as midnight in the calendar's zone, or an RFC 3339 instant.
fn report_instant(text: &str, zone: chrono_tz::Tz) -> anyhow::Result<chrono::DateTime<Utc>> {
    use chrono::TimeZone;
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .context("expected YYYY-MM-DD or an RFC 3339 time")?;
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    zone.from_local_datetime(&midnight)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .context("that midnight does not exist in the calendar's time zone")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A log writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn no_rust_log_lifts_the_caps_on_crates_that_log_credentials() {
        for json in [false, true] {
            for requested in [
                "trace",
                "async_imap::imap_stream=trace,lettre=trace,refundd=trace",
            ] {
                let out = Captured::default();
                let subscriber = log_subscriber(
                    json,
                    out.clone(),
                    tracing_subscriber::EnvFilter::new(requested),
                );
                tracing::subscriber::with_default(subscriber, || {
                    tracing::trace!(target: "async_imap::imap_stream", "encode: LOGIN u pw-imap");
                    tracing::debug!(target: "lettre::transport::smtp", "Wrote: AUTH PLAIN pw-smtp");
                    tracing::info!(target: "lettre::transport::smtp", "connected");
                    tracing::trace!(target: "refundd::ingest", "still traced");
                });
                let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
                let case = format!("json {json}, RUST_LOG={requested}");
                assert!(!logged.contains("pw-imap"), "{case}: {logged}");
                assert!(!logged.contains("pw-smtp"), "{case}: {logged}");
                assert!(logged.contains("connected"), "{case}: {logged}");
                assert!(logged.contains("still traced"), "{case}: {logged}");
            }
        }
    }

    #[test]
    fn database_passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/refundd"),
            "postgres://app@db:5432/refundd"
        );
        assert_eq!(redact_url("sqlite://refundd.db"), "sqlite://refundd.db");
    }
}
