//! The reply promise end to end: a review case is acknowledged
//! with a deadline counted in the team's business hours; the sweep warns
//! the team once as the deadline nears, records the breach once, and closes
//! a case the customer abandoned with a final note — on SQLite and
//! PostgreSQL, with time moved by the `now` parameter.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::Outcome;
use refundd::pipeline;
use refundd::pipeline::Pipeline;
use refundd::reply::Templates;
use refundd::store::{Actor, CaseId, CaseStatus, NewMessage, ReplyStatus, Store, import_jsonl};

use crate::support::{TestDb, repo};

fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Berlin
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// The plain-text part of a stored reply, decoded.
fn text_of(raw: &[u8]) -> String {
    let message = mail_parser::MessageParser::new()
        .parse(raw)
        .expect("a parseable reply");
    message.body_text(0).expect("a text part").into_owned()
}

fn settings() -> Arc<Settings> {
    let mut settings: Settings = toml::from_str(
        r#"
        [sender_auth]
        trusted_authserv_ids = ["mx.anumi.example"]
        [calendar]
        time_zone = "Europe/Berlin"
        hours = "09:00-17:00"
        holiday_files = ["examples/holidays/de.toml"]
        [escalation]
        team_address = "team@anumi.example"
        warn_before_working_hours = 4
        needs_info_close_after_days = 14
        "#,
    )
    .unwrap();
    settings.calendar.load_holiday_files(Some(&repo())).unwrap();
    settings.validate().unwrap();
    Arc::new(settings)
}

async fn desk(db: &TestDb) -> (Store, Arc<Settings>, Pipeline) {
    let store = Store::connect(&db.url).await.unwrap();
    let ledger = std::fs::File::open(repo().join("examples/demo/ledger.jsonl")).unwrap();
    import_jsonl(&store, std::io::BufReader::new(ledger), |_| {})
        .await
        .unwrap();
    let settings = settings();
    let pipeline = Pipeline::new(store.clone(), settings.clone()).unwrap();
    (store, settings, pipeline)
}

async fn deliver(store: &Store, file: &str, received_at: DateTime<Utc>) {
    let raw = std::fs::read(repo().join("examples/demo/mail").join(file)).unwrap();
    let headers = mail_parser::MessageParser::new()
        .parse_headers(&raw)
        .expect("headers");
    let message = NewMessage {
        message_id: headers.message_id().map(str::to_owned),
        sha256: hex::encode(Sha256::digest(&raw)),
        raw,
        received_at,
        source: format!("test:{file}"),
    };
    store.insert_message(&message).await.unwrap();
}

async fn promise_is_acknowledged_escalated_and_breached(db: TestDb) {
    let (store, settings, pipeline) = desk(&db).await;
    let templates = Templates::load(settings.reply_templates()).unwrap();
    // Friday 16:00 in Berlin: one hour on Friday, eight on Monday, seven on Tuesday.
    let received = berlin(2026, 6, 5, 16, 0);
    deliver(&store, "10-ivan-statutory.eml", received).await;
    let done = pipeline.process_pending(received).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, Outcome::Review);
    let case_id = done[0].case_id;
    let case = store.case(case_id).await.unwrap().unwrap();
    assert_eq!(
        case.deadline,
        Some(berlin(2026, 6, 9, 16, 0)),
        "due Tuesday 16:00 Berlin"
    );

    let replies = store.replies_for_case(case_id).await.unwrap();
    assert_eq!(replies.len(), 1, "the acknowledgement");
    let ack = text_of(&replies[0].raw);
    assert_eq!(replies[0].to_addr, "ivan@example.co.uk");
    assert!(
        ack.contains("Tuesday, 9 June 2026"),
        "the reply quotes the deadline:\n{ack}"
    );

    // Monday morning: plenty of time left, nothing happens.
    let quiet = pipeline::sweep::sweep(&store, &settings, &templates, berlin(2026, 6, 8, 10, 0))
        .await
        .unwrap();
    assert_eq!(quiet, pipeline::sweep::SweepReport::default());

    // Tuesday 12:00: four working hours left -> one digest to the team.
    let tuesday_noon = berlin(2026, 6, 9, 12, 0);
    let warned = pipeline::sweep::sweep(&store, &settings, &templates, tuesday_noon)
        .await
        .unwrap();
    assert_eq!(warned.warned, vec![case_id]);
    assert!(warned.breached.is_empty());
    let digest_id = warned.digest_message_id.clone().expect("a digest");
    let again = pipeline::sweep::sweep(
        &store,
        &settings,
        &templates,
        tuesday_noon + Duration::minutes(30),
    )
    .await
    .unwrap();
    assert_eq!(
        again,
        pipeline::sweep::SweepReport::default(),
        "each case is escalated once per deadline"
    );

    let replies = store.replies_for_case(case_id).await.unwrap();
    let digest = replies
        .iter()
        .find(|r| r.message_id == digest_id)
        .expect("digest in the outbox");
    assert_eq!(digest.to_addr, "team@anumi.example");
    assert_eq!(digest.status, ReplyStatus::Queued);
    assert!(String::from_utf8_lossy(&digest.raw).contains("Auto-Submitted: auto-replied"));
    let raw = text_of(&digest.raw);
    assert!(
        raw.contains(&format!(
            "{case_id}  due Tue 9 Jun 2026 16:00 CEST (4h 00m of working time left)"
        )),
        "{raw}"
    );
    let flags = store.deadline_flags(case_id).await.unwrap();
    assert_eq!(flags.escalated_at, Some(tuesday_noon));
    assert_eq!(flags.breached_at, None);

    // Tuesday 16:30: the deadline passed -> breach recorded once, with an event.
    let late = berlin(2026, 6, 9, 16, 30);
    let breached = pipeline::sweep::sweep(&store, &settings, &templates, late)
        .await
        .unwrap();
    assert_eq!(breached.breached, vec![case_id]);
    assert!(breached.digest_message_id.is_some());
    assert_eq!(
        pipeline::sweep::sweep(&store, &settings, &templates, late + Duration::hours(1))
            .await
            .unwrap(),
        pipeline::sweep::SweepReport::default()
    );
    assert_eq!(
        store.deadline_flags(case_id).await.unwrap().breached_at,
        Some(late)
    );
    let events = store.case_events(case_id).await.unwrap();
    let breach: Vec<_> = events
        .iter()
        .filter(|e| e.reason.contains("passed without an answer"))
        .collect();
    assert_eq!(breach.len(), 1);
    assert_eq!(breach[0].actor, Actor::Engine);
    assert_eq!(
        (breach[0].from_status, breach[0].to_status),
        (Some(CaseStatus::Review), CaseStatus::Review)
    );
    assert_eq!(
        store.replies_for_case(case_id).await.unwrap().len(),
        3,
        "acknowledgement and two digests"
    );
}

async fn an_abandoned_case_is_closed_with_a_final_note(db: TestDb) {
    let (store, settings, pipeline) = desk(&db).await;
    let templates = Templates::load(settings.reply_templates()).unwrap();
    let received = berlin(2026, 6, 5, 19, 30);
    deliver(&store, "14-stranger-no-order.eml", received).await;
    let done = pipeline.process_pending(received).await.unwrap();
    assert_eq!(done[0].outcome, Outcome::NeedsInfo);
    let case_id: CaseId = done[0].case_id;

    // Waiting on the customer pauses the clock: no warning, no breach.
    let day13 = received + Duration::days(13);
    assert_eq!(
        pipeline::sweep::sweep(&store, &settings, &templates, day13)
            .await
            .unwrap(),
        pipeline::sweep::SweepReport::default()
    );

    let day15 = received + Duration::days(15);
    let closed = pipeline::sweep::sweep(&store, &settings, &templates, day15)
        .await
        .unwrap();
    assert_eq!(closed.closed, vec![case_id]);
    assert!(closed.warned.is_empty() && closed.breached.is_empty());
    let case = store.case(case_id).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Resolved);
    assert_eq!(case.deadline, None);
    let last = store.case_events(case_id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(CaseStatus::NeedsInfo), CaseStatus::Resolved)
    );
    assert_eq!(last.at, day15);

    let replies = store.replies_for_case(case_id).await.unwrap();
    let note = replies.last().unwrap();
    assert_eq!(note.to_addr, "sam@example.com");
    assert!(text_of(&note.raw).contains("14 days ago"));
    let headers = String::from_utf8_lossy(&note.raw);
    assert!(
        headers.contains("In-Reply-To: <sam.1@example.com>"),
        "{headers}"
    );
    assert_eq!(
        pipeline::sweep::sweep(&store, &settings, &templates, day15 + Duration::days(1))
            .await
            .unwrap(),
        pipeline::sweep::SweepReport::default()
    );
}

#[tokio::test]
async fn the_promise_is_acknowledged_escalated_and_breached_on_sqlite() {
    promise_is_acknowledged_escalated_and_breached(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_promise_is_acknowledged_escalated_and_breached_on_postgres() {
    promise_is_acknowledged_escalated_and_breached(TestDb::postgres().await).await;
}

#[tokio::test]
async fn an_abandoned_case_is_closed_on_sqlite() {
    an_abandoned_case_is_closed_with_a_final_note(TestDb::sqlite()).await;
}

#[tokio::test]
async fn an_abandoned_case_is_closed_on_postgres() {
    an_abandoned_case_is_closed_with_a_final_note(TestDb::postgres().await).await;
}

#[tokio::test]
async fn the_report_counts_the_period_from_the_store() {
    let db = TestDb::sqlite();
    let (store, _settings, pipeline) = desk(&db).await;
    let received = berlin(2026, 6, 5, 10, 0);
    for file in [
        "01-ann-unused-pack.eml",
        "10-ivan-statutory.eml",
        "14-stranger-no-order.eml",
        "15-out-of-office.eml",
    ] {
        deliver(&store, file, received).await;
    }
    pipeline.process_pending(received).await.unwrap();
    let report = refundd::report::build(
        &store,
        received - Duration::days(1),
        received + Duration::days(1),
        received,
        Berlin,
    )
    .await
    .unwrap();
    assert_eq!(report.cases, 4);
    assert_eq!(report.by_outcome.get("review"), Some(&1));
    assert_eq!(report.by_outcome.get("ignored"), Some(&1));
    assert_eq!(report.not_ignored, 3);
    assert_eq!(
        report.auto_decided, 2,
        "approved and needs_info without a person"
    );
    assert_eq!(
        report.first_response.count, 3,
        "three customers were answered"
    );
    assert_eq!(
        report.first_response.p50_seconds,
        Some(0),
        "replies are queued at decision time"
    );
    let csv = refundd::report::to_csv(&report);
    assert!(csv.contains("volume,cases,4\r\n"), "{csv}");
}

#[test]
fn the_example_production_config_loads_with_its_holiday_file() {
    let settings = Settings::load(Some(&repo().join("examples/refundd.toml"))).unwrap();
    let calendar = settings.calendar.calendar();
    assert_eq!(calendar.zone(), Berlin);
    for (day, working) in [
        ("2026-12-24", false),
        ("2026-12-25", false),
        ("2026-10-03", false),
        ("2026-12-23", true),
    ] {
        assert_eq!(
            calendar.is_business_day(day.parse().unwrap()),
            working,
            "{day}"
        );
    }
    assert_eq!(
        settings.escalation.team_address,
        "refunds-team@anumi.example"
    );
}
