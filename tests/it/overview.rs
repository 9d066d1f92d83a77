//! The overview page tells the same story as `refundd report`: the demo's
//! mail is decided over a week (cash refunds, credits, review cases, an
//! out-of-office), a refund is paid, a reviewer decides a case; then every
//! number on `/overview` (today and the last 30 days, and the queue as it
//! stands) equals `refundd report --json` for the same period, run as the
//! real binary on the same database. SQLite and PostgreSQL.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header::CONTENT_SECURITY_POLICY;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::Action;
use refundd::pipeline::Pipeline;
use refundd::pipeline::review::{ReviewChoice, ReviewDesk, ReviewRequest};
use refundd::store::{ActionStatus, CaseFilter, CaseStatus, NewMessage, Store, import_jsonl};

use crate::console::{Console, now};
use crate::support::{TestDb, header_date, refundd, repo};

/// The settings of the desk in these tests: Berlin days, the demo's
/// trusted mail server, plain-HTTP cookies.
pub fn desk_settings() -> Settings {
    let mut settings: Settings = toml::from_str(
        r#"
        [sender_auth]
        trusted_authserv_ids = ["mx.anumi.example"]
        [calendar]
        time_zone = "Europe/Berlin"
        "#,
    )
    .unwrap();
    settings.web.secure_cookies = false;
    settings.validate().unwrap();
    settings
}

/// Stores a demo mail as received at `at` and runs the pipeline then.
pub async fn deliver(pipeline: &Pipeline, store: &Store, file: &str, at: DateTime<Utc>) {
    let raw = std::fs::read(repo().join("examples/demo/mail").join(file)).unwrap();
    let message_id = mail_parser::MessageParser::new()
        .parse_headers(&raw)
        .and_then(|h| h.message_id().map(str::to_owned));
    store
        .insert_message(&NewMessage {
            message_id,
            sha256: hex::encode(Sha256::digest(&raw)),
            raw,
            received_at: at,
            source: format!("test:{file}"),
        })
        .await
        .unwrap();
    pipeline.process_pending(at).await.unwrap();
}

/// The demo's mail, decided over the week before [`now`]: two of them
/// today. One refund is paid and one review case decided by a reviewer.
pub async fn a_week_of_mail(store: &Store, settings: &Arc<Settings>) {
    let ledger = std::fs::File::open(repo().join("examples/demo/ledger.jsonl")).unwrap();
    import_jsonl(store, std::io::BufReader::new(ledger), |_| {})
        .await
        .unwrap();
    let pipeline = Pipeline::new(store.clone(), settings.clone()).unwrap();
    let today = |h| Utc.with_ymd_and_hms(2026, 6, 10, h, 0, 0).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("examples/demo/mail"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "the demo's mail");
    for file in &files {
        let at = match file.as_str() {
            "09-hana-moderation.eml" => today(8),
            "14-stranger-no-order.eml" => today(9),
            other => {
                header_date(&std::fs::read(repo().join("examples/demo/mail").join(other)).unwrap())
            }
        };
        deliver(&pipeline, store, file, at).await;
    }

    let cases = store
        .list_cases(&CaseFilter {
            limit: Some(100),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    let paid_at = Utc.with_ymd_and_hms(2026, 6, 6, 10, 0, 0).unwrap();
    let mut paid = 0;
    for case in &cases {
        for action in store.actions_for_case(case.id).await.unwrap() {
            if matches!(action.action, Action::CashRefund { .. })
                && action.status == ActionStatus::Pending
                && paid == 0
            {
                store
                    .set_action_status(
                        &action.idempotency_key,
                        ActionStatus::Done,
                        Some("polar_r1"),
                        paid_at,
                    )
                    .await
                    .unwrap();
                paid += 1;
            }
        }
    }
    assert_eq!(paid, 1, "the demo approves a cash refund");

    let review = cases
        .iter()
        .find(|c| c.status == CaseStatus::Review)
        .expect("a case in review");
    let case = store.case(review.id).await.unwrap().unwrap();
    let desk = ReviewDesk::new(store.clone(), settings.clone()).unwrap();
    desk.apply_reviewer_decision(
        &ReviewRequest {
            case_id: case.id,
            expected_version: case.version,
            reviewer: "rita@anumi.example".into(),
            admin: false,
            choice: ReviewChoice::Deny {
                reason: "subjective".into(),
            },
            personal_note: None,
        },
        Utc.with_ymd_and_hms(2026, 6, 8, 10, 0, 0).unwrap(),
    )
    .await
    .unwrap();
}

/// Thirty days of the demo's mail before [`now`], a few messages a day
/// (each delivery a new message: its Message-ID made unique), refunds paid
/// the next day and every other review case decided: what the browser
/// test's overview screenshot shows.
pub async fn a_month_of_mail(store: &Store, settings: &Arc<Settings>) {
    let ledger = std::fs::File::open(repo().join("examples/demo/ledger.jsonl")).unwrap();
    import_jsonl(store, std::io::BufReader::new(ledger), |_| {})
        .await
        .unwrap();
    let pipeline = Pipeline::new(store.clone(), settings.clone()).unwrap();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(repo().join("examples/demo/mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let message_id = regex::bytes::Regex::new(r"(?mi)^Message-ID:[ \t]*<([^>]*)>").unwrap();
    let first = Utc.with_ymd_and_hms(2026, 5, 12, 7, 0, 0).unwrap();
    for day in 0..30_i64 {
        for k in 0..(2 + (day * 7) % 5) {
            let file = &files[((day * 5 + k) % files.len() as i64) as usize];
            let raw = std::fs::read(file).unwrap();
            let tag = format!("d{day}k{k}");
            let raw = if message_id.is_match(&raw) {
                message_id
                    .replace(&raw, format!("Message-ID: <$1.{tag}>").as_bytes())
                    .into_owned()
            } else {
                [format!("X-Seed: {tag}\r\n").into_bytes(), raw].concat()
            };
            let at = first + chrono::Duration::days(day) + chrono::Duration::minutes(37 * k);
            let message_id = mail_parser::MessageParser::new()
                .parse_headers(&raw)
                .and_then(|h| h.message_id().map(str::to_owned));
            store
                .insert_message(&NewMessage {
                    message_id,
                    sha256: hex::encode(Sha256::digest(&raw)),
                    raw,
                    received_at: at,
                    source: format!("test:{tag}"),
                })
                .await
                .unwrap();
            // The daemon is a few minutes behind now and then.
            pipeline
                .process_pending(at + chrono::Duration::minutes((day * 13 + k * 7) % 30))
                .await
                .unwrap();
        }
    }
    let desk = ReviewDesk::new(store.clone(), settings.clone()).unwrap();
    let cases = store
        .list_cases(&CaseFilter {
            limit: Some(1000),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    for (n, summary) in cases.iter().enumerate() {
        for action in store.actions_for_case(summary.id).await.unwrap() {
            let paid = action.created_at + chrono::Duration::days(1);
            if matches!(action.action, Action::CashRefund { .. })
                && action.status == ActionStatus::Pending
                && paid < now()
            {
                store
                    .set_action_status(
                        &action.idempotency_key,
                        ActionStatus::Done,
                        Some("polar"),
                        paid,
                    )
                    .await
                    .unwrap();
            }
        }
        // Reviewers answer within a day, or three when busy; the last two
        // days are still waiting.
        let at = summary.created_at + chrono::Duration::hours(if n % 5 == 0 { 70 } else { 20 });
        if summary.status == CaseStatus::Review && at < now() - chrono::Duration::days(1) {
            let case = store.case(summary.id).await.unwrap().unwrap();
            desk.apply_reviewer_decision(
                &ReviewRequest {
                    case_id: case.id,
                    expected_version: case.version,
                    reviewer: "rita@anumi.example".into(),
                    admin: false,
                    choice: ReviewChoice::Deny {
                        reason: "subjective".into(),
                    },
                    personal_note: None,
                },
                at,
            )
            .await
            .unwrap();
        }
    }
}

/// `data-metric` → `data-value` of a page.
fn metrics(html: &str) -> BTreeMap<String, String> {
    let re = regex::Regex::new(r#"data-metric="([^"]+)" data-value="([^"]*)""#).unwrap();
    re.captures_iter(html)
        .map(|c| (c[1].to_owned(), c[2].replace("&quot;", "\"")))
        .collect()
}

/// The report's value for a page metric of one period.
fn report_value(report: &serde_json::Value, field: &str) -> serde_json::Value {
    if let Some(currency) = field.strip_prefix("refunded.") {
        return report["refunded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["currency"] == currency)
            .map(|m| m["amount"].clone())
            .unwrap_or(serde_json::Value::Null);
    }
    if field == "shadow.rate" {
        let (agree, decided) = (
            report["shadow"]["agree"].as_f64().unwrap(),
            report["shadow"]["decided"].as_f64().unwrap(),
        );
        return if decided > 0.0 {
            serde_json::json!(agree / decided)
        } else {
            serde_json::Value::Null
        };
    }
    report
        .pointer(&format!("/{}", field.replace('.', "/")))
        .unwrap_or_else(|| panic!("the report has {field}"))
        .clone()
}

fn cli_report(config: &std::path::Path, since: &str, until: &str) -> serde_json::Value {
    let out = refundd(
        config,
        &["report", "--since", since, "--until", until, "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_overview_shows_the_numbers_of_refundd_report_on_sqlite() {
    same_numbers(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_overview_shows_the_numbers_of_refundd_report_on_postgres() {
    same_numbers(TestDb::postgres().await).await;
}

async fn same_numbers(db: TestDb) {
    let settings = desk_settings();
    let console = Console::start_with(&db, {
        let settings = settings.clone();
        move |s: &mut Settings| *s = settings
    })
    .await;
    a_week_of_mail(&console.store, &Arc::new(settings)).await;
    let session = console.login("sam@anumi.example").await;

    let page = console.get(&session, "/overview").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<a href="/overview">Overview</a>"#),
        "linked in the nav"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the console's own script"
    );
    assert!(
        html.matches("<svg").count() >= 5,
        "charts, drawn on the server"
    );
    let metrics = metrics(&html);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("refundd.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[calendar]\ntime_zone = \"Europe/Berlin\"\n",
            db.url
        ),
    )
    .unwrap();
    let until = now().to_rfc3339();
    // Midnight in Berlin: 29 days back for the range, today for today.
    let range = cli_report(&config, "2026-05-12", &until);
    let today = cli_report(&config, "2026-06-10", &until);

    assert!(range["cases"].as_u64().unwrap() >= 15, "{range}");
    assert!(!range["refunded"].as_array().unwrap().is_empty());
    assert!(range["credits_total"].as_i64().unwrap() > 0);
    assert!(range["deadlines"]["due"].as_u64().unwrap() > 0);
    assert!(
        range["deadlines"]["met"].as_u64().unwrap() > 0,
        "the reviewer answered in time: {}",
        range["deadlines"]
    );
    assert!(today["cases"].as_u64().unwrap() >= 2, "{today}");
    assert_eq!(range["days"].as_array().unwrap().len(), 30);

    let mut compared = 0;
    for (metric, raw) in &metrics {
        let (period, field) = metric.split_once('.').unwrap();
        let report = match period {
            "range" => &range,
            "today" => &today,
            "open_now" => {
                let want = range["open_now"][field].clone();
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(raw).unwrap(),
                    want,
                    "{metric}"
                );
                compared += 1;
                continue;
            }
            other => panic!("unknown period {other}"),
        };
        let shown: serde_json::Value = serde_json::from_str(raw).unwrap();
        let want = report_value(report, field);
        match (shown.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{metric}: page {a}, report {b}"),
            _ => assert_eq!(shown, want, "{metric}"),
        }
        compared += 1;
    }
    for must in [
        "range.messages",
        "range.auto_decision_rate",
        "range.deadlines.rate",
        "range.first_response.p50_seconds",
        "range.first_response.p99_seconds",
        "range.refunded.EUR",
        "range.credits_total",
        "range.shadow.rate",
        "today.messages",
        "today.cases",
        "open_now.review",
        "open_now.oldest_deadline",
    ] {
        assert!(metrics.contains_key(must), "the page shows {must}");
    }
    assert!(compared >= 23, "{compared} numbers compared");

    // A shorter range is the same report over fewer days.
    let week = metrics_of(&console, &session, "/overview?days=7").await;
    let report = cli_report(&config, "2026-06-04", &until);
    assert_eq!(
        week["range.cases"],
        report["cases"].to_string(),
        "7 days: the same cases as the report"
    );
    console.shutdown.cancel();
}

async fn metrics_of(
    console: &Console,
    session: &crate::console::Session,
    path: &str,
) -> BTreeMap<String, String> {
    metrics(&console.get(session, path).await.text().await.unwrap())
}
