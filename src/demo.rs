//! `refundd demo`: the whole pipeline on sample data, with nothing but this
//! binary. Creates a folder with a SQLite database, imports the sample
//! ledger, writes the sample mails (shipped in `examples/demo/`, embedded
//! here) into a Maildir, processes it, then plays the customer who was
//! asked for an order ID answering our reply, and processes again.
//!
//! Cash refunds are really carried out: the demo starts the Polar test
//! server (`polar_sim`) on loopback, seeded with the sample ledger's
//! customers and orders, points `[polar]` at it, and runs the payment stage
//! after each pass; a customer's reply goes out only once the test server
//! accepted the refund.
//!
//! It prints the decision table and where to look next (the replies, a
//! case, the console) and logs only warnings unless `RUST_LOG` asks for
//! more (see `main`).
//!
//! Sample mails carry the `Date:` at which the story happens; the demo sets
//! each file's modification time (the receipt time the policy uses) to it,
//! so the windows in the sample ledger hold whatever today's date is.

use anyhow::Context;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use refundd::act::payments;
use refundd::config::{PolarSettings, Settings};
use refundd::domain::Outcome;
use refundd::pipeline::outbox;
use refundd::polar_sim::{PolarSim, Seed, SimConfig};
use refundd::reply::FileSink;
use refundd::store::{CaseFilter, Store, import};

use crate::app;

const LEDGER: &str = include_str!("../examples/demo/ledger.jsonl");

macro_rules! demo_mail {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_bytes!(concat!("../examples/demo/mail/", $name)))),+]
    };
}

const MAIL: &[(&str, &[u8])] = demo_mail![
    "01-ann-unused-pack.eml",
    "02-ann-unused-pack-duplicate.eml",
    "03-ben-partly-used-de.eml",
    "04-cleo-too-late-fr.eml",
    "05-dan-no-resemblance.eml",
    "06-eve-no-resemblance-de.eml",
    "07-finn-failed-generation-fr-html.eml",
    "08-gus-subjective-es.eml",
    "09-hana-moderation.eml",
    "10-ivan-statutory.eml",
    "11-kim-which-order.eml",
    "12-tom-terminated.eml",
    "13-lou-someone-elses-order.eml",
    "14-stranger-no-order.eml",
    "15-out-of-office.eml",
    "16-bounce.eml",
    "17-jo-chargeback.eml",
];

/// The authserv-id of the sample mails' `Authentication-Results`.
const DEMO_AUTHSERV_ID: &str = "mx.anumi.example";

/// Runs the demo in `dir` (replaced if it exists).
pub async fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let maildir = dir.join("Maildir");
    std::fs::create_dir_all(maildir.join("new"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let sim = PolarSim::start(SimConfig {
        seed: Seed::from_ledger_jsonl(LEDGER)?,
        ..SimConfig::default()
    })
    .await?;
    let settings = Arc::new(demo_settings(dir, &sim));
    let store = Store::connect(&settings.database.url).await?;
    let ledger = import::import_jsonl(&store, LEDGER.as_bytes(), |_| {}).await?;
    std::fs::write(dir.join("ledger.jsonl"), LEDGER)?;
    println!(
        "imported {} ledger records into {}",
        ledger.imported, settings.database.url
    );

    for (name, bytes) in MAIL {
        write_received(&maildir.join("new").join(name), bytes)?;
    }
    let sink = FileSink::new(&settings.outbox.dir);
    app::process_maildir_pass(&settings, &store, &maildir).await?;
    payments::run_configured(&store, &settings, Utc::now()).await?;
    outbox::deliver_queued(&store, &sink, &settings.lifecycle(), Utc::now()).await?;
    answer_order_id_question(&store, &maildir).await?;
    app::process_maildir_pass(&settings, &store, &maildir).await?;
    payments::run_configured(&store, &settings, Utc::now()).await?;
    outbox::deliver_queued(&store, &sink, &settings.lifecycle(), Utc::now()).await?;

    let cases = store
        .list_cases(&CaseFilter {
            limit: Some(1000),
            ..CaseFilter::default()
        })
        .await?;
    let replies = std::fs::read_dir(&settings.outbox.dir)
        .map(|d| d.count())
        .unwrap_or(0);
    println!("\n{}", app::cases_table(&cases));
    println!(
        "{} messages, {} cases, {} replies written to {}",
        MAIL.len() + 1,
        cases.len(),
        replies,
        settings.outbox.dir.display()
    );
    let refunds = sim.refunds();
    println!(
        "{} refunds reached the Polar test server at {}:",
        refunds.len(),
        sim.base_url()
    );
    for refund in &refunds {
        let key = refund
            .metadata
            .get("refundd_key")
            .and_then(|v| v.as_str())
            .unwrap_or("-");
        println!(
            "  order {}: {} + tax {} ({}), key {key}",
            refund.order_id, refund.amount, refund.tax_amount, refund.status
        );
    }
    sim.shutdown().await;
    let example = cases
        .iter()
        .find(|c| c.outcome == Outcome::Review)
        .or(cases.first())
        .map_or_else(|| "R-1".to_owned(), |c| c.id.to_string());
    print!("\n{}", next_steps(dir, &settings, &example));
    Ok(ExitCode::SUCCESS)
}

/// Where to look after the demo: the replies, a case, the console; as
/// commands that work from here (the binary as it was invoked, so that
/// `cargo run -- demo` gets a path it can paste).
fn next_steps(dir: &Path, settings: &Settings, example_case: &str) -> String {
    let program = std::env::args()
        .next()
        .filter(|p| p.contains('/'))
        .unwrap_or_else(|| "refundd".to_owned());
    let cli = format!("{program} --config {}", dir.join("refundd.toml").display());
    format!(
        "Where to look next:\n\
         \x20 the replies, as .eml files    {outbox}/\n\
         \x20 one case, with its trace      {cli} case {example_case}\n\
         \x20 every case                    {cli} cases\n\
         \x20 the reviewers' console        {cli} reviewer add you@anumi.example\n\
         \x20                               {cli} serve   # then http://{listen}\n",
        outbox = settings.outbox.dir.display(),
        listen = settings.web.listen,
    )
}

fn demo_settings(dir: &Path, sim: &PolarSim) -> Settings {
    let mut settings = Settings::default();
    settings.database.url = format!("sqlite://{}", dir.join("refundd.db").display());
    settings.outbox.dir = dir.join("outbox");
    settings.sender_auth.trusted_authserv_ids = vec![DEMO_AUTHSERV_ID.into()];
    // The demo's console is opened over plain HTTP on loopback.
    settings.web.secure_cookies = false;
    // The config file lets the operator inspect the demo with the CLI (the
    // Polar test server is gone by then, so `[polar]` is left out of it).
    let _ = std::fs::write(
        dir.join("refundd.toml"),
        toml::to_string(&settings).unwrap_or_default(),
    );
    settings.polar = Some(PolarSettings {
        base_url: sim.base_url(),
        token: sim.token().to_owned(),
        ..PolarSettings::default()
    });
    settings
}

/// Writes a mail file whose modification time is its `Date:` header.
fn write_received(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(date) = header_date(bytes) {
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_modified(date.into())?;
    }
    Ok(())
}

fn header_date(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let headers = mail_parser::MessageParser::new().parse_headers(bytes)?;
    let date = headers.date()?;
    DateTime::from_timestamp(date.to_timestamp(), 0)
}

/// Plays Kim, who was asked which order she means and answers our reply
/// with the invoice number.
async fn answer_order_id_question(store: &Store, maildir: &Path) -> anyhow::Result<()> {
    let asked = store
        .list_cases(&CaseFilter {
            outcome: Some(Outcome::NeedsInfo),
            limit: Some(1000),
            ..CaseFilter::default()
        })
        .await?
        .into_iter()
        .find(|c| c.from == "kim@example.com")
        .context("the demo expected Kim's case to ask for the order ID")?;
    let reply = store
        .replies_for_case(asked.id)
        .await?
        .into_iter()
        .next()
        .context("the demo expected a reply to Kim")?;
    let mail = format!(
        "Return-Path: <kim@example.com>\r\n\
         Authentication-Results: {DEMO_AUTHSERV_ID}; dmarc=pass header.from=example.com\r\n\
         From: Kim <kim@example.com>\r\nTo: refunds@anumi.example\r\n\
         Subject: Re: {subject}\r\nDate: Sat, 06 Jun 2026 09:30:00 +0000\r\n\
         Message-ID: <kim.2@example.com>\r\nIn-Reply-To: <{id}>\r\nReferences: <kim.1@example.com> <{id}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         It's the Pro 200 pack, invoice ANUMI-KLMNOPQA-0002.\r\n\r\n> Which order do you mean?\r\n",
        subject = reply.subject.trim_start_matches("Re: "),
        id = reply.message_id,
    );
    write_received(
        &maildir.join("new").join("18-kim-follow-up.eml"),
        mail.as_bytes(),
    )
}
