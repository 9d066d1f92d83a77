//! `refundd replay` on SQLite and PostgreSQL: the desk's own decisions
//! come out the same when decided again (no drift over the demo, the
//! fixtures and the corpus), a candidate's changes are reported case by
//! case with the money they move, nothing is ever written, reviewers'
//! decisions are compared with the engine's, and the JSON is the
//! contract the console and scripts read.

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use refundd::act::payments;
use refundd::config::{PolarSettings, Settings};
use refundd::domain::{Action, Outcome};
use refundd::ingest::{RawMessage, store_message};
use refundd::pipeline::Pipeline;
use refundd::pipeline::review::{AskFor, ReviewChoice, ReviewDesk, ReviewRequest};
use refundd::polar_sim::{PolarSim, Seed, SimConfig};
use refundd::progress::NoProgress;
use refundd::replay::{self, ReplayReport, Source};
use refundd::store::{CaseFilter, CaseId, ReplayScope, Store, import_jsonl};

use crate::support::{
    TestDb, demo_mail, header_date, refundd, repo, store_at_its_date, write_mail,
};

pub(crate) const DEMO_AUTHSERV_ID: &str = "mx.anumi.example";
const RITA: &str = "rita@anumi.example";

/// The demo's story on one database, played as `refundd demo` plays it:
/// the sample ledger, the sample mails received at their `Date:` and
/// decided by the real pipeline, the refunds paid through the Polar test
/// server, then Kim answering our question, decided and paid in turn.
pub(crate) struct DemoDesk {
    pub(crate) db: TestDb,
    pub(crate) store: Store,
    pub(crate) settings: Arc<Settings>,
    pub(crate) sim: PolarSim,
}

fn demo_ledger() -> String {
    std::fs::read_to_string(repo().join("examples/demo/ledger.jsonl")).unwrap()
}

/// The demo's deciding configuration, without payments.
fn demo_settings() -> Settings {
    let mut settings = Settings::default();
    settings.sender_auth.trusted_authserv_ids = vec![DEMO_AUTHSERV_ID.into()];
    settings
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0).unwrap()
}

impl DemoDesk {
    pub(crate) async fn play(db: TestDb) -> DemoDesk {
        let store = Store::connect(&db.url).await.unwrap();
        let ledger = demo_ledger();
        let imported = import_jsonl(&store, ledger.as_bytes(), |_| {})
            .await
            .unwrap();
        assert!(imported.rejected.is_empty());
        let sim = PolarSim::start(SimConfig {
            seed: Seed::from_ledger_jsonl(&ledger).unwrap(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut settings = demo_settings();
        settings.polar = Some(PolarSettings {
            base_url: sim.base_url(),
            token: sim.token().to_owned(),
            ..PolarSettings::default()
        });
        let settings = Arc::new(settings);
        for (name, bytes) in demo_mail() {
            store_at_its_date(&store, &format!("maildir:new/{name}"), bytes).await;
        }
        let pipeline = Pipeline::new(store.clone(), settings.clone()).unwrap();
        pipeline.process_pending(at(5, 20)).await.unwrap();
        payments::run_configured(&store, &settings, at(5, 21))
            .await
            .unwrap();

        // Kim answers our question with the invoice number.
        let kim = case_of(&store, "kim.1@example.com").await;
        let reply = store.replies_for_case(kim).await.unwrap().remove(0);
        let mail = format!(
            "Return-Path: <kim@example.com>\r\n\
             Authentication-Results: {DEMO_AUTHSERV_ID}; dmarc=pass header.from=example.com\r\n\
             From: Kim <kim@example.com>\r\nTo: refunds@anumi.example\r\n\
             Subject: Re: {subject}\r\nDate: Sat, 06 Jun 2026 09:30:00 +0000\r\n\
             Message-ID: <kim.2@example.com>\r\nIn-Reply-To: <{id}>\r\nReferences: <kim.1@example.com> <{id}>\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             It's the Pro 200 pack, invoice ANUMI-KLMNOPQA-0002.\r\n",
            subject = reply.subject.trim_start_matches("Re: "),
            id = reply.message_id,
        );
        store_message(
            &store,
            RawMessage {
                source: "maildir:new/18-kim-follow-up.eml".into(),
                bytes: mail.into_bytes(),
                received_at: Utc.with_ymd_and_hms(2026, 6, 6, 9, 30, 0).unwrap(),
                full_size: None,
            },
        )
        .await
        .unwrap();
        let joined = pipeline.process_pending(at(6, 10)).await.unwrap();
        assert!(joined[0].joined, "Kim's answer joins her case");
        payments::run_configured(&store, &settings, at(6, 11))
            .await
            .unwrap();
        assert_eq!(sim.refunds().len(), 3, "Ann, Ben and Kim were paid");
        DemoDesk {
            db,
            store,
            settings,
            sim,
        }
    }

    async fn replay(&self, in_force: &Settings, candidate: Option<&Settings>) -> ReplayReport {
        replay::replay(
            &self.store,
            in_force,
            candidate,
            Source::Stored(ReplayScope::default()),
            &NoProgress,
        )
        .await
        .unwrap()
    }
}

/// The case a message (by Message-ID) opened.
pub(crate) async fn case_of(store: &Store, message_id: &str) -> CaseId {
    store
        .list_cases(&CaseFilter {
            limit: Some(1000),
            ..CaseFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.message_id.as_deref() == Some(message_id))
        .unwrap_or_else(|| panic!("no case for {message_id}"))
        .id
}

pub(crate) fn window(settings: &Settings, days: i64) -> Settings {
    let mut changed = settings.clone();
    changed.policy.refund_window_days = days;
    changed
}

fn message_ids<'a>(ids: impl Iterator<Item = Option<&'a String>>) -> Vec<String> {
    let mut ids: Vec<String> = ids.map(|m| m.cloned().unwrap_or_default()).collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------
// No drift: the demo, the fixtures and the corpus.
// ---------------------------------------------------------------------

async fn the_demo_is_decided_again_exactly_as_stored(db: TestDb) {
    let desk = DemoDesk::play(db).await;
    let report = desk.replay(&desk.settings, None).await;
    assert_eq!(report.decided, 17, "16 first messages and Kim's answer");
    assert_eq!(
        report.not_replayed.screen + report.not_replayed.unreadable,
        0
    );
    assert!(report.other_configuration.is_empty());
    assert!(
        report.drift.is_empty(),
        "drift over the demo: {:#?}",
        report.drift
    );
    // Kim's answer was decided with her case's facts.
    let kim = report
        .decisions
        .iter()
        .find(|d| d.message_id.as_deref() == Some("kim.2@example.com"))
        .unwrap();
    assert_eq!(kim.basis.as_str(), "case");
    assert_eq!(kim.decision.outcome, Outcome::Approved);
    // Ann's own refund (paid, so in the ledger now) does not make her
    // request "already refunded"; Finn's own credit does not make his
    // generation "already credited".
    for id in ["CAFann0001@mail.example.com", "finn.x1@example.fr"] {
        let d = report
            .decisions
            .iter()
            .find(|d| d.message_id.as_deref() == Some(id))
            .unwrap();
        assert_eq!(d.decision.outcome, Outcome::Approved, "{id}");
    }
    desk.sim.shutdown().await;
}

#[tokio::test]
async fn the_demo_is_decided_again_exactly_as_stored_on_sqlite() {
    the_demo_is_decided_again_exactly_as_stored(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_demo_is_decided_again_exactly_as_stored_on_postgres() {
    the_demo_is_decided_again_exactly_as_stored(TestDb::postgres().await).await;
}

async fn a_changed_configuration_in_force_drifts(db: TestDb) {
    let desk = DemoDesk::play(db).await;
    let changed = window(&desk.settings, 3);
    // Decided under the demo's configuration: another fingerprint, listed
    // and never compared.
    let report = desk.replay(&changed, None).await;
    assert!(report.drift.is_empty());
    assert_eq!(report.other_configuration.len(), 1);
    assert_eq!(report.other_configuration[0].messages, 17);

    // The same change, as if the stored decisions had been made under it:
    // what it no longer decides alike is drift, with the trace lines.
    let fingerprint = changed.decision_fingerprint().unwrap();
    restamp_decisions(&desk.db.url, &fingerprint).await;
    let report = desk.replay(&changed, None).await;
    assert_eq!(
        message_ids(report.drift.iter().map(|d| d.message_id.as_ref())),
        [
            "20260606.ben@example.net",
            "CAFann0001@mail.example.com",
            "kim.1@example.com"
        ]
    );
    let ann = report
        .drift
        .iter()
        .find(|d| d.message_id.as_deref() == Some("CAFann0001@mail.example.com"))
        .unwrap();
    assert_eq!(ann.stored.outcome, Outcome::Approved);
    assert_eq!(ann.replayed.outcome, Outcome::Denied);
    assert!(
        ann.trace
            .iter()
            .any(|l| l.starts_with("+ P4:") && l.contains("3-day")),
        "{:?}",
        ann.trace
    );
    desk.sim.shutdown().await;
}

/// Rewrites the fingerprint of every stored decision (the test's stand-in
/// for decisions made under the changed configuration).
async fn restamp_decisions(url: &str, fingerprint: &str) {
    execute(
        url,
        &format!("UPDATE engine_decisions SET fingerprint = '{fingerprint}'"),
    )
    .await;
}

#[tokio::test]
async fn a_changed_configuration_in_force_drifts_on_sqlite() {
    a_changed_configuration_in_force_drifts(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_changed_configuration_in_force_drifts_on_postgres() {
    a_changed_configuration_in_force_drifts(TestDb::postgres().await).await;
}

/// Every fixture and corpus message the tests use, and the demo's, decided
/// by the pipeline on the demo ledger, then decided again: the same.
async fn every_fixture_and_corpus_message_is_decided_again_as_stored(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    import_jsonl(&store, demo_ledger().as_bytes(), |_| {})
        .await
        .unwrap();
    let mut files = Vec::new();
    collect_mail(&repo().join("tests/fixtures/mail"), &mut files);
    let fixtures = files.len();
    assert!(fixtures >= 12, "found only {fixtures} fixtures");
    let corpora = repo().join("../shared/corpora");
    if corpora.exists() {
        collect_mail(&corpora, &mut files);
        assert!(
            files.len() > fixtures + 50,
            "the corpus is there but nearly empty"
        );
    } else {
        eprintln!("the shared corpora are absent: fixtures and demo mail only");
    }
    files.sort();
    let received_at = at(5, 12);
    for path in &files {
        store_message(
            &store,
            RawMessage {
                source: format!("corpus:{}", path.display()),
                bytes: std::fs::read(path).unwrap(),
                received_at,
                full_size: None,
            },
        )
        .await
        .unwrap();
    }
    for (name, bytes) in demo_mail() {
        store_at_its_date(&store, &format!("maildir:new/{name}"), bytes).await;
    }
    let settings = demo_settings();
    let processed = Pipeline::new(store.clone(), Arc::new(settings.clone()))
        .unwrap()
        .process_pending(at(5, 22))
        .await
        .unwrap();
    let report = replay::replay(
        &store,
        &settings,
        None,
        Source::Stored(ReplayScope::default()),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        report.decided + report.not_replayed.screen + report.not_replayed.unreadable,
        processed.len(),
        "every decision read"
    );
    assert!(report.decided > 20, "decided only {}", report.decided);
    assert_eq!(report.not_replayed.unreadable, 0);
    assert!(
        report.drift.is_empty(),
        "drift over fixtures and corpus: {:#?}",
        report.drift
    );
    eprintln!(
        "{} messages decided again, {} not policy decisions",
        report.decided, report.not_replayed.screen
    );
}

fn collect_mail(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_mail(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("eml" | "msg")
        ) {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn every_fixture_and_corpus_message_is_decided_again_as_stored_on_sqlite() {
    every_fixture_and_corpus_message_is_decided_again_as_stored(TestDb::sqlite()).await;
}

#[tokio::test]
async fn every_fixture_and_corpus_message_is_decided_again_as_stored_on_postgres() {
    every_fixture_and_corpus_message_is_decided_again_as_stored(TestDb::postgres().await).await;
}

// ---------------------------------------------------------------------
// Candidates.
// ---------------------------------------------------------------------

#[tokio::test]
async fn a_seven_day_window_changes_no_demo_case_and_a_three_day_one_changes_three() {
    let desk = DemoDesk::play(TestDb::sqlite()).await;

    // Every demo cash refund was asked within 4 days of purchase, and
    // Kim's two orders are both inside 7 days: nothing changes.
    let seven = window(&desk.settings, 7);
    let report = desk.replay(&desk.settings, Some(&seven)).await;
    assert!(report.changed.is_empty(), "{:#?}", report.changed);
    assert!(report.money_delta.is_empty());
    assert_eq!(report.credits_delta, 0);
    assert_eq!(report.totals.before, report.totals.after);

    let three = window(&desk.settings, 3);
    let report = desk.replay(&desk.settings, Some(&three)).await;
    assert!(report.drift.is_empty());
    let changed: BTreeMap<String, (Outcome, Outcome, Vec<Action>)> = report
        .changed
        .iter()
        .map(|c| {
            (
                c.message_id.clone().unwrap(),
                (c.before.outcome, c.after.outcome, c.after.actions.clone()),
            )
        })
        .collect();
    let kim_pro = Action::CashRefund {
        order_id: "6d1e2f3a-4b5c-4d6e-8f7a-910213243546".into(),
        amount: 2900,
        currency: "EUR".into(),
    };
    assert_eq!(
        changed,
        BTreeMap::from([
            // Ann asked 3 days 23 hours after buying: too late.
            (
                "CAFann0001@mail.example.com".to_owned(),
                (Outcome::Approved, Outcome::Denied, vec![])
            ),
            // Ben, 4 days after: too late.
            (
                "20260606.ben@example.net".to_owned(),
                (Outcome::Approved, Outcome::Denied, vec![])
            ),
            // Kim: only the Pro 200 pack is inside 3 days, so there is no
            // question to ask; her first message is approved at once.
            (
                "kim.1@example.com".to_owned(),
                (Outcome::NeedsInfo, Outcome::Approved, vec![kim_pro])
            ),
        ])
    );
    // The cases are named: Ann's, Ben's and Kim's.
    for change in &report.changed {
        let id = change.message_id.as_deref().unwrap();
        assert_eq!(change.case, Some(case_of(&desk.store, id).await), "{id}");
        assert!(!change.trace.is_empty());
    }
    // −9.00 (Ann) −5.40 (Ben) +29.00 (Kim's first message) EUR.
    assert_eq!(
        report.money_delta,
        BTreeMap::from([("EUR".to_owned(), 1460)])
    );
    assert_eq!(report.totals.before.money["EUR"], 900 + 540 + 2900);
    assert_eq!(report.totals.after.money["EUR"], 2900 + 2900);
    assert_eq!(report.totals.before.outcomes["approved"], 5);
    assert_eq!(report.totals.after.outcomes["approved"], 4);
    assert_eq!(report.totals.after.outcomes["denied"], 5);
    desk.sim.shutdown().await;
}

/// Five customers who each bought a pack and ask for their money back
/// unused, 2, 6, 8, 11 and 14 days after buying (Mia's pack is in USD),
/// decided at receipt with the 14-day window in force.
async fn a_fortnight_of_refund_requests(db: &TestDb) -> (Store, Arc<Settings>) {
    let store = Store::connect(&db.url).await.unwrap();
    let bought = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let customers: [(&str, i64, i64, &str); 5] = [
        ("noa", 2, 900, "EUR"),
        ("oli", 6, 1500, "EUR"),
        ("pia", 8, 2900, "EUR"),
        ("mia", 11, 1200, "USD"),
        ("rob", 14, 900, "EUR"),
    ];
    let mut ledger = String::new();
    for (n, (name, _, amount, currency)) in customers.iter().enumerate() {
        ledger.push_str(&format!(
            "{{\"type\":\"wallet\",\"id\":\"w_{name}\",\"email\":\"{name}@example.org\",\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:00Z\"}}\n\
             {{\"type\":\"order\",\"id\":\"7a000000-0000-4000-8000-00000000000{n}\",\"wallet\":\"w_{name}\",\"product\":\"Starter 50\",\"credits\":50,\"amount\":{amount},\"currency\":\"{currency}\",\"invoice_number\":\"ANUMI-WINDOWTT-000{n}\",\"created_at\":\"{}\"}}\n",
            bought.to_rfc3339(),
        ));
    }
    let imported = import_jsonl(&store, ledger.as_bytes(), |_| {})
        .await
        .unwrap();
    assert!(imported.rejected.is_empty(), "{:?}", imported.rejected);
    let settings = Arc::new(demo_settings());
    let pipeline = Pipeline::new(store.clone(), settings.clone()).unwrap();
    for (n, (name, days, _, _)) in customers.iter().enumerate() {
        let received_at = bought + chrono::Duration::days(*days) - chrono::Duration::hours(1);
        let mail = format!(
            "Authentication-Results: {DEMO_AUTHSERV_ID}; dmarc=pass header.from=example.org\r\n\
             From: {name} <{name}@example.org>\r\nTo: refunds@anumi.example\r\n\
             Subject: Refund please\r\nDate: {date}\r\nMessage-ID: <{name}@example.org>\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             I never used my Starter pack, please refund it. Invoice ANUMI-WINDOWTT-000{n}.\r\n",
            date = received_at.to_rfc2822(),
        );
        store_message(
            &store,
            RawMessage {
                source: format!("test:{name}"),
                bytes: mail.into_bytes(),
                received_at,
                full_size: None,
            },
        )
        .await
        .unwrap();
        pipeline.process_pending(received_at).await.unwrap();
    }
    (store, settings)
}

async fn a_seven_day_window_denies_exactly_the_late_requests(db: TestDb) {
    let (store, settings) = a_fortnight_of_refund_requests(&db).await;
    let seven = window(&settings, 7);
    let report = replay::replay(
        &store,
        &settings,
        Some(&seven),
        Source::Stored(ReplayScope::default()),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.decided, 5);
    assert!(report.drift.is_empty(), "{:#?}", report.drift);
    let refund = |n: u8, amount: i64, currency: &str| Action::CashRefund {
        order_id: format!("7a000000-0000-4000-8000-00000000000{n}"),
        amount,
        currency: currency.into(),
    };
    let mut changed: Vec<(String, Outcome, Vec<Action>, Outcome, Vec<Action>)> = report
        .changed
        .iter()
        .map(|c| {
            (
                c.message_id.clone().unwrap(),
                c.before.outcome,
                c.before.actions.clone(),
                c.after.outcome,
                c.after.actions.clone(),
            )
        })
        .collect();
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    // Noa (2 days) and Oli (6 days) are inside both windows; Pia (8),
    // Mia (11) and Rob (14) are paid under 14 days and denied under 7.
    assert_eq!(
        changed,
        vec![
            (
                "mia@example.org".to_owned(),
                Outcome::Approved,
                vec![refund(3, 1200, "USD")],
                Outcome::Denied,
                vec![]
            ),
            (
                "pia@example.org".to_owned(),
                Outcome::Approved,
                vec![refund(2, 2900, "EUR")],
                Outcome::Denied,
                vec![]
            ),
            (
                "rob@example.org".to_owned(),
                Outcome::Approved,
                vec![refund(4, 900, "EUR")],
                Outcome::Denied,
                vec![]
            ),
        ]
    );
    for change in &report.changed {
        let id = change.message_id.as_deref().unwrap();
        assert_eq!(change.case, Some(case_of(&store, id).await), "{id}");
        assert!(
            change.trace.iter().any(|l| l.starts_with("+ P4:")),
            "the candidate's reason: {:?}",
            change.trace
        );
    }
    assert_eq!(
        report.money_delta,
        BTreeMap::from([("EUR".to_owned(), -3800), ("USD".to_owned(), -1200)])
    );
    assert_eq!(report.totals.before.outcomes["approved"], 5);
    assert_eq!(report.totals.after.outcomes["approved"], 2);
    assert_eq!(report.totals.after.outcomes["denied"], 3);
    assert_eq!(report.totals.after.money["EUR"], 900 + 1500);
    assert!(!report.totals.after.money.contains_key("USD"));
}

#[tokio::test]
async fn a_seven_day_window_denies_exactly_the_late_requests_on_sqlite() {
    a_seven_day_window_denies_exactly_the_late_requests(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_seven_day_window_denies_exactly_the_late_requests_on_postgres() {
    a_seven_day_window_denies_exactly_the_late_requests(TestDb::postgres().await).await;
}

// ---------------------------------------------------------------------
// No side effects.
// ---------------------------------------------------------------------

async fn replay_writes_nothing(db: TestDb) {
    let desk = DemoDesk::play(db).await;
    let before = dump(&desk.db.url).await;
    assert!(before["engine_decisions"].len() == 17);

    let three = window(&desk.settings, 3);
    let report = desk.replay(&desk.settings, Some(&three)).await;
    assert!(!report.changed.is_empty());
    // One case only, too.
    let kim = case_of(&desk.store, "kim.1@example.com").await;
    let one = replay::replay(
        &desk.store,
        &desk.settings,
        Some(&three),
        Source::Stored(ReplayScope {
            case: Some(kim),
            ..ReplayScope::default()
        }),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(one.decided, 2);
    assert!(one.decisions.iter().all(|d| d.case == Some(kim)));
    assert_eq!(dump(&desk.db.url).await, before, "stored mail replayed");

    // An archive never processed: the demo mail in a Maildir of its own
    // with the demo ledger. Decided in memory; the configured store is
    // not touched and the Maildir's files stay where they are.
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Archive");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    for (name, bytes) in demo_mail() {
        let received_at = header_date(&bytes);
        write_mail(&maildir.join("new").join(&name), &bytes, received_at);
    }
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, demo_ledger()).unwrap();
    let files_before = listing(&maildir);
    let source = replay::archive_source(replay::maildir_messages(&maildir).unwrap(), &ledger);
    let report = replay::replay(
        &desk.store,
        &desk.settings,
        Some(&three),
        source,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.decided, 16, "17 files, one a duplicate delivery");
    assert!(report.drift.is_empty(), "{:#?}", report.drift);
    assert!(report.decisions.iter().all(|d| d.case.is_none()));
    assert_eq!(
        message_ids(report.changed.iter().map(|c| c.message_id.as_ref())),
        [
            "20260606.ben@example.net",
            "CAFann0001@mail.example.com",
            "kim.1@example.com"
        ]
    );
    assert_eq!(listing(&maildir), files_before, "the Maildir is only read");
    assert!(!maildir.join("tmp").exists());
    assert_eq!(dump(&desk.db.url).await, before, "archive replayed");
    desk.sim.shutdown().await;
}

#[tokio::test]
async fn replay_writes_nothing_on_sqlite() {
    replay_writes_nothing(TestDb::sqlite()).await;
}

#[tokio::test]
async fn replay_writes_nothing_on_postgres() {
    replay_writes_nothing(TestDb::postgres().await).await;
}

/// Every file under `dir`: path, size and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        for file in std::fs::read_dir(&sub).unwrap() {
            let file = file.unwrap();
            let meta = file.metadata().unwrap();
            out.push((file.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// Every table's rows, as text, sorted.
async fn dump(url: &str) -> BTreeMap<String, Vec<String>> {
    use sqlx::{AssertSqlSafe, Connection};
    let mut out = BTreeMap::new();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let mut rows: Vec<String> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT {row} FROM \"{table}\"")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            rows.sort();
            out.insert(table, rows);
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for table in tables {
            let mut rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT t::text FROM \"{table}\" AS t"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.sort();
            out.insert(table, rows);
        }
    }
    assert!(out.len() > 20, "every table dumped: {:?}", out.keys());
    out
}

async fn execute(url: &str, statement: &str) {
    use sqlx::{AssertSqlSafe, Connection};
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------
// Agreement with people.
// ---------------------------------------------------------------------

#[tokio::test]
async fn reviewers_who_decide_otherwise_are_named_in_the_confusion_table() {
    let desk = DemoDesk::play(TestDb::sqlite()).await;
    let reviewers = ReviewDesk::new(desk.store.clone(), desk.settings.clone()).unwrap();
    let decide = |message_id: &'static str, choice: ReviewChoice| {
        let store = desk.store.clone();
        let reviewers = &reviewers;
        async move {
            let case = case_of(&store, message_id).await;
            let version = store.case(case).await.unwrap().unwrap().version;
            reviewers
                .apply_reviewer_decision(
                    &ReviewRequest {
                        case_id: case,
                        expected_version: version,
                        reviewer: RITA.into(),
                        admin: false,
                        choice,
                        personal_note: None,
                    },
                    at(7, 10),
                )
                .await
                .unwrap();
            case
        }
    };
    // Ivan invoked statutory rights (the engine: review); Rita denies.
    let ivan = decide(
        "ivan.cra@example.co.uk",
        ReviewChoice::Deny {
            reason: "window_expired".into(),
        },
    )
    .await;
    // Lou cited someone else's order (review); Rita asks for the order ID.
    let lou = decide(
        "lou.1@example.com",
        ReviewChoice::Ask {
            ask: AskFor::OrderId,
        },
    )
    .await;
    // Eve sent no result (the engine asked for it); Rita asks the same.
    let eve = decide(
        "eve.abc@example.de",
        ReviewChoice::Ask {
            ask: AskFor::Result,
        },
    )
    .await;

    let report = desk.replay(&desk.settings, None).await;
    let a = &report.agreement;
    assert_eq!(a.decided_by_people, 3);
    assert_eq!(a.agree, 1);
    let mut disagree: Vec<(CaseId, Outcome, Outcome, String)> = a
        .disagree
        .iter()
        .map(|d| {
            (
                d.case,
                d.reviewer.decision.outcome,
                d.engine.outcome,
                d.reviewer.by.clone(),
            )
        })
        .collect();
    disagree.sort_by_key(|d| d.0.0);
    let mut want = vec![
        (ivan, Outcome::Denied, Outcome::Review, RITA.to_owned()),
        (lou, Outcome::NeedsInfo, Outcome::Review, RITA.to_owned()),
    ];
    want.sort_by_key(|d| d.0.0);
    assert_eq!(disagree, want);
    assert!(!a.disagree.iter().any(|d| d.case == eve));
    let confusion: Vec<(String, String, usize)> = a
        .confusion
        .iter()
        .flat_map(|(r, row)| row.iter().map(move |(e, n)| (r.clone(), e.clone(), *n)))
        .collect();
    assert_eq!(
        confusion,
        [
            ("denied".to_owned(), "review".to_owned(), 1),
            ("needs_info".to_owned(), "needs_info".to_owned(), 1),
            ("needs_info".to_owned(), "review".to_owned(), 1),
        ]
    );
    // A candidate is compared with people too: with a 3-day window the
    // engine still sends Ivan's and Lou's cases to a person.
    let three = window(&desk.settings, 3);
    let report = desk.replay(&desk.settings, Some(&three)).await;
    assert_eq!(report.agreement.decided_by_people, 3);
    assert_eq!(report.agreement.agree, 1);
    desk.sim.shutdown().await;
}

// ---------------------------------------------------------------------
// The JSON contract and the command line.
// ---------------------------------------------------------------------

fn keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn assert_decision_shape(value: &serde_json::Value) {
    for key in ["outcome", "category", "flags", "actions"] {
        assert!(value.get(key).is_some(), "{key} missing in {value}");
    }
    assert!(value["outcome"].is_string() && value["category"].is_string());
    assert!(value["flags"].is_array() && value["actions"].is_array());
}

#[tokio::test]
async fn the_json_report_is_the_contract_and_the_command_prints_it() {
    let desk = DemoDesk::play(TestDb::sqlite()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("refundd.toml");
    let mut in_force = (*desk.settings).clone();
    in_force.polar = None;
    in_force.database.url = desk.db.url.clone();
    std::fs::write(&config, toml::to_string(&in_force).unwrap()).unwrap();
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(&candidate, toml::to_string(&window(&in_force, 3)).unwrap()).unwrap();
    let html = dir.path().join("replay.html");

    let out = refundd(
        &config,
        &[
            "replay",
            "--candidate",
            candidate.to_str().unwrap(),
            "--json",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "decided",
        "decisions",
        "drift",
        "changed",
        "totals",
        "agreement",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    assert_eq!(json["decided"], 17);
    let decisions = json["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 17);
    for d in decisions {
        assert!(d["message_id"].is_string() || d["message_id"].is_null());
        assert!(d["case"].as_str().unwrap().starts_with("R-"));
        assert_decision_shape(d);
    }
    assert_eq!(json["drift"], serde_json::json!([]));
    let changed = json["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 3);
    for c in changed {
        for key in ["case", "message_id", "before", "after", "trace"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        // `before`/`after` exactly as `refundd cases --json` prints them.
        assert_eq!(
            keys(&c["before"]),
            ["actions", "category", "flags", "outcome"]
        );
        assert_eq!(
            keys(&c["after"]),
            ["actions", "category", "flags", "outcome"]
        );
        assert!(c["trace"].as_array().unwrap().iter().all(|l| l.is_string()));
    }
    let ann = changed
        .iter()
        .find(|c| c["message_id"] == "CAFann0001@mail.example.com")
        .unwrap();
    assert_eq!(
        ann["before"]["actions"][0],
        serde_json::json!({
            "kind": "cash_refund",
            "order_id": "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e",
            "amount": 900,
            "currency": "EUR"
        })
    );
    let cases_json = refundd(&config, &["cases", "--json"]);
    let cases: serde_json::Value = serde_json::from_slice(&cases_json.stdout).unwrap();
    let ann_case = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["message_id"] == "CAFann0001@mail.example.com")
        .unwrap();
    assert_eq!(ann["case"], ann_case["id"]);
    assert_eq!(ann["before"]["actions"], ann_case["actions"]);
    assert_eq!(ann["before"]["flags"], ann_case["flags"]);
    for side in ["before", "after"] {
        let totals = &json["totals"][side];
        assert!(totals["outcomes"].is_object());
        assert!(totals["outcomes"]["approved"].is_u64());
        assert!(totals["money"]["EUR"].is_i64());
        assert!(totals["credits"].is_i64());
    }
    assert_eq!(json["totals"]["before"]["money"]["EUR"], 4340);
    assert_eq!(json["totals"]["after"]["money"]["EUR"], 5800);
    let agreement = &json["agreement"];
    assert_eq!(agreement["decided_by_people"], 0);
    assert_eq!(agreement["agree"], 0);
    assert_eq!(agreement["disagree"], serde_json::json!([]));

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
    // Nothing to run or fetch (the SVG namespace is a name, not a fetch).
    for fetch in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(!page.contains(fetch), "{fetch} in the page");
    }

    let out = refundd(&config, &["replay", "--csv"]);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("case,message_id,source,before_outcome,after_outcome,"));
    assert_eq!(csv.lines().count(), 18);

    // The table, and an archive from the command line.
    let out = refundd(&config, &["replay"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Drift"));
    let maildir = dir.path().join("Archive");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    for (name, bytes) in demo_mail() {
        write_mail(
            &maildir.join("new").join(&name),
            &bytes,
            header_date(&bytes),
        );
    }
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, demo_ledger()).unwrap();
    let out = refundd(
        &config,
        &[
            "replay",
            "--maildir",
            maildir.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--candidate",
            candidate.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["source"], "archive");
    assert_eq!(json["decided"], 16);
    assert_eq!(json["changed"].as_array().unwrap().len(), 3);
    assert!(json["decisions"][0].get("case").is_none());

    // A bad candidate is refused with its line, and changes nothing.
    std::fs::write(&candidate, "[policy]\nrefund_window_days = \n").unwrap();
    let out = refundd(
        &config,
        &["replay", "--candidate", candidate.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    desk.sim.shutdown().await;
}

/// An mbox export of a mailbox refundd never processed, decided with its
/// ledger file from the command line: the configured database is never
/// even created.
#[test]
fn an_mbox_and_its_ledger_are_replayed_without_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("never.db");
    let config = dir.path().join("refundd.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[sender_auth]\ntrusted_authserv_ids = [\"mx.anumi.example\"]\n",
            db_path.display()
        ),
    )
    .unwrap();
    let mbox = dir.path().join("export.mbox");
    let mut bytes = Vec::new();
    for (_, mail) in demo_mail() {
        crate::archive::append_mboxrd(
            &mut bytes,
            "customer@example.com",
            header_date(&mail),
            &mail,
        );
    }
    std::fs::write(&mbox, bytes).unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, demo_ledger()).unwrap();

    let out = refundd(
        &config,
        &[
            "replay",
            "--mbox",
            mbox.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["source"], "archive");
    assert_eq!(json["decided"], 16, "17 mails, one delivered twice");
    assert!(
        json["totals"]["before"]["outcomes"]["approved"]
            .as_u64()
            .unwrap()
            > 0,
        "{json}"
    );
    assert!(!db_path.exists(), "the configured store was never opened");
}
