//! Keeping only what the law allows, on both databases:
//!
//! - after the deadline sweep with `[retention] raw_mail_days`, the raw
//!   mail of closed cases older than that is gone, open cases and recent
//!   mail keep theirs, and every other record of each case still reads
//!   well (store, console page, `refundd case`, its JSON);
//! - `refundd erase --sender EMAIL` (the real binary) leaves no copy of
//!   the address or of the person's words in any column of any table,
//!   keeps the money records, writes one audit line, and the case reads
//!   as "erased" in the console and in `refundd case`; it is refused while
//!   money is in flight.

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use refundd::domain::Action;
use refundd::pipeline::Pipeline;
use refundd::pipeline::review::ReviewDesk;
use refundd::store::{
    ActionStatus, AuditAction, CaseFilter, CaseId, LoginAttempt, NewMessage, RawRemoval, Store,
};

use crate::console::Console;
use crate::overview::{a_week_of_mail, desk_settings};
use crate::support::{TestDb, refundd, repo};

/// A config file for the binary on this database.
fn config(db: &TestDb, dir: &Path) -> PathBuf {
    let path = dir.join("refundd.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n[calendar]\ntime_zone = \"Europe/Berlin\"\n",
            db.url
        ),
    )
    .unwrap();
    path
}

fn run(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = refundd(config, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------

#[tokio::test]
async fn the_sweep_removes_old_raw_mail_of_closed_cases_and_keeps_the_rest_on_sqlite() {
    retention(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_sweep_removes_old_raw_mail_of_closed_cases_and_keeps_the_rest_on_postgres() {
    retention(TestDb::postgres().await).await;
}

async fn retention(db: TestDb) {
    let mut settings = desk_settings();
    settings.retention.raw_mail_days = Some(30);
    let settings = Arc::new(settings);
    let console = Console::start_with(&db, {
        let settings = (*settings).clone();
        move |s: &mut refundd::config::Settings| *s = settings
    })
    .await;
    let store = &console.store;
    a_week_of_mail(store, &settings).await;

    // Six weeks later an out-of-office arrives (a new message): recent.
    let later = Utc.with_ymd_and_hms(2026, 7, 18, 9, 0, 0).unwrap();
    let raw = std::fs::read(repo().join("examples/demo/mail/15-out-of-office.eml")).unwrap();
    let raw = String::from_utf8(raw)
        .unwrap()
        .replace("Message-ID: <", "Message-ID: <later.")
        .into_bytes();
    store
        .insert_message(&NewMessage {
            message_id: None,
            sha256: hex::encode(Sha256::digest(&raw)),
            raw,
            received_at: later,
            source: "test:later".into(),
        })
        .await
        .unwrap();
    Pipeline::new(store.clone(), settings.clone())
        .unwrap()
        .process_pending(later)
        .await
        .unwrap();

    let sweep_at = Utc.with_ymd_and_hms(2026, 7, 20, 12, 0, 0).unwrap();
    let cutoff = sweep_at - chrono::Duration::days(30);
    let report = refundd::pipeline::sweep::sweep(
        store,
        &settings,
        &refundd::reply::Templates::load(settings.reply_templates()).unwrap(),
        sweep_at,
    )
    .await
    .unwrap();
    assert!(report.raw_removed >= 10, "{report:?}");

    let cases = store
        .list_cases(&CaseFilter {
            limit: Some(100),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    let (mut removed, mut kept_open, mut kept_recent) = (0, 0, 0);
    let mut a_removed_case = None;
    for summary in &cases {
        let case = store
            .case(summary.id)
            .await
            .unwrap()
            .expect("the case reads");
        assert!(
            !case.decision.trace.is_empty(),
            "{} keeps its trace",
            case.id
        );
        assert!(!store.case_events(case.id).await.unwrap().is_empty());
        store.actions_for_case(case.id).await.unwrap();
        store.engine_decisions(case.id).await.unwrap();
        let closed = !refundd::queue::is_open(case.status);
        for m in store.case_messages(case.id).await.unwrap() {
            if closed && m.received_at < cutoff {
                assert_eq!(
                    m.removed.map(|(why, _)| why),
                    Some(RawRemoval::Retention),
                    "message {} of closed {}",
                    m.id,
                    case.id
                );
                assert!(m.raw.is_empty());
                removed += 1;
                a_removed_case.get_or_insert(case.id);
            } else {
                assert_eq!(m.removed, None, "message {} of {} stays", m.id, case.id);
                assert!(!m.raw.is_empty());
                if closed {
                    kept_recent += 1;
                } else {
                    kept_open += 1;
                }
            }
        }
        // Replies are what we told the customer: kept.
        for r in store.replies_for_case(case.id).await.unwrap() {
            assert!(!r.raw.is_empty());
        }
    }
    assert!(
        removed >= 10 && kept_open >= 1 && kept_recent == 1,
        "{removed} {kept_open} {kept_recent}"
    );
    assert_eq!(report.raw_removed, removed as u64);
    // A second sweep has nothing left to do.
    let again = refundd::pipeline::sweep::sweep(
        store,
        &settings,
        &refundd::reply::Templates::load(settings.reply_templates()).unwrap(),
        sweep_at,
    )
    .await
    .unwrap();
    assert_eq!(again.raw_removed, 0);

    // The case reads well in the console and in `refundd case`.
    let case = a_removed_case.unwrap();
    let session = console.login("rita@anumi.example").await;
    let page = console.get(&session, &format!("/cases/{case}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("removed (retention)"), "{html}");
    assert!(html.contains("Why the engine stopped"));
    let (_, body) = console
        .api(
            &console.token("rita@anumi.example").await,
            reqwest::Method::GET,
            &format!("/api/cases/{case}"),
            None,
        )
        .await;
    assert_eq!(body["messages"][0]["removed"], "removed (retention)");

    let dir = tempfile::tempdir().unwrap();
    let config = config(&db, dir.path());
    let (ok, text, err) = run(&config, &["case", &case.to_string()]);
    assert!(ok, "{err}");
    assert!(
        text.contains("[removed (retention): the raw mail was removed on 2026-07-20"),
        "{text}"
    );
    assert!(text.contains("Why:"));
    let (ok, json, err) = run(&config, &["case", &case.to_string(), "--json"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["messages"][0]["raw"], serde_json::Value::Null);
    assert_eq!(json["messages"][0]["removed"]["why"], "retention");
    console.shutdown.cancel();
}

// ---------------------------------------------------------------------
// Erasure
// ---------------------------------------------------------------------

const ANN: &str = "ann@example.com";
/// Words only Ann wrote: her subject and a phrase of her mail.
const ANN_TEXT: [&str; 2] = ["Refund for my Starter pack", "Starter 50 pack on Monday"];

/// Every (table, column) holding `needle` (any case), looking at every
/// column of every table as text (bytes as text too).
async fn tables_holding(url: &str, needle: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(tables.len() > 25, "{tables:?}");
        for table in tables {
            let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
            for column in columns {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM \"{table}\" WHERE instr(lower(CAST(\"{column}\" AS TEXT)), $1) > 0"
                )))
                .bind(&needle)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                if n > 0 {
                    found.push(format!("{table}.{column}"));
                }
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(columns.len() > 150, "{}", columns.len());
        for (table, column, ty) in columns {
            let text = if ty == "bytea" {
                format!("encode(\"{column}\", 'escape')")
            } else {
                format!("CAST(\"{column}\" AS TEXT)")
            };
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM \"{table}\" WHERE strpos(lower({text}), $1) > 0"
            )))
            .bind(&needle)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn erase_leaves_no_copy_of_the_address_or_the_text_and_keeps_the_money_on_sqlite() {
    erasure(TestDb::sqlite()).await;
}

#[tokio::test]
async fn erase_leaves_no_copy_of_the_address_or_the_text_and_keeps_the_money_on_postgres() {
    erasure(TestDb::postgres().await).await;
}

async fn erasure(db: TestDb) {
    let settings = Arc::new(desk_settings());
    let console = Console::start_with(&db, {
        let settings = (*settings).clone();
        move |s: &mut refundd::config::Settings| *s = settings
    })
    .await;
    let store = &console.store;
    a_week_of_mail(store, &settings).await;
    let ann_case = ann_case(store).await;
    let at = Utc.with_ymd_and_hms(2026, 6, 9, 9, 0, 0).unwrap();
    // Traces of Ann outside her mail: a reviewer's note, a sign-in try at
    // the console with her address, and a Polar webhook naming her.
    ReviewDesk::new(store.clone(), settings.clone())
        .unwrap()
        .add_note(
            ann_case,
            "rita@anumi.example",
            "Ann Example called, she is upset",
            at,
        )
        .await
        .unwrap();
    store
        .admit_login_attempt(
            &LoginAttempt {
                email: ANN,
                remote: Some("192.0.2.7"),
                at,
            },
            &refundd::store::LoginLimit {
                per_address: 5,
                per_peer: 20,
                since: at - chrono::Duration::minutes(15),
            },
        )
        .await
        .unwrap()
        .expect("admitted");
    store
        .insert_webhook_delivery(
            "msg_ann_1",
            "order.refunded",
            br#"{"type":"order.refunded","data":{"customer":{"email":"Ann@Example.com"}}}"#,
            at,
        )
        .await
        .unwrap();
    for needle in [ANN, ANN_TEXT[0], ANN_TEXT[1]] {
        assert!(
            !tables_holding(&db.url, needle).await.is_empty(),
            "{needle} is stored before"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(&db, dir.path());

    // Her refund is approved but not paid yet: refused, nothing changes.
    let pending = cash_refund(store, ann_case).await.expect("her cash refund");
    store
        .set_action_status(&pending, ActionStatus::Pending, None, at)
        .await
        .unwrap();
    let (ok, _, err) = run(&config, &["erase", "--sender", ANN]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{ann_case} has a refund or credit not carried out yet"
        )),
        "{err}"
    );
    assert!(!tables_holding(&db.url, ANN).await.is_empty());

    // Paid: the erasure goes through. A dry run first changes nothing.
    store
        .set_action_status(&pending, ActionStatus::Done, Some("polar_r9"), at)
        .await
        .unwrap();
    let (ok, text, err) = run(
        &config,
        &["erase", "--sender", "Ann@Example.com", "--dry-run"],
    );
    assert!(ok, "{err}");
    assert!(
        text.starts_with("Would erase ann@example.com as erased-"),
        "{text}"
    );
    assert!(!tables_holding(&db.url, ANN).await.is_empty());

    let actions_before = store.actions_for_case(ann_case).await.unwrap();
    let mut her_messages = 0;
    for c in store
        .list_cases(&CaseFilter {
            limit: Some(100),
            ..CaseFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|c| c.from == ANN)
    {
        her_messages += store.case_messages(c.id).await.unwrap().len();
    }
    let (ok, text, err) = run(
        &config,
        &["erase", "--sender", ANN, "--as", "dpo@anumi.example"],
    );
    assert!(ok, "{err}");
    assert!(text.contains(&format!("cases: {ann_case}")), "{text}");
    assert!(
        text.contains(&format!("messages: {her_messages} ")),
        "{text}"
    );
    assert!(text.contains("refunded 9.00"), "{text}");
    assert!(text.contains("wallet w_ann"), "{text}");

    for needle in [ANN, ANN_TEXT[0], ANN_TEXT[1], "she is upset"] {
        assert_eq!(
            tables_holding(&db.url, needle).await,
            Vec::<String>::new(),
            "no copy of {needle:?} is left"
        );
    }
    // The search index forgot her words.
    let words: Vec<String> = refundd::parse::search::words(ANN).collect();
    let store = Store::connect(&db.url).await.unwrap();
    let still: Vec<i64> = store
        .messages_with_words(&words)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let hers = store.case_messages(ann_case).await.unwrap();
    assert!(hers.iter().all(|m| !still.contains(&m.id)));
    assert!(
        hers.iter()
            .all(|m| m.removed.map(|(w, _)| w) == Some(RawRemoval::Erasure))
    );

    // Money records stay as they were.
    let actions_after = store.actions_for_case(ann_case).await.unwrap();
    assert_eq!(
        actions_after
            .iter()
            .map(|a| (&a.action, a.status))
            .collect::<Vec<_>>(),
        actions_before
            .iter()
            .map(|a| (&a.action, a.status))
            .collect::<Vec<_>>()
    );
    let case = store.case(ann_case).await.unwrap().unwrap();
    assert!(case.sender.starts_with("erased-") && case.sender.ends_with("@erased.invalid"));
    assert_eq!(case.subject, "(erased)");
    assert!(!case.decision.trace.is_empty());
    // One audit line, naming the pseudonym and the operator, not her.
    let audit: Vec<_> = store
        .audit_log(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == AuditAction::Erase)
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "operator:dpo@anumi.example");
    assert_eq!(audit[0].detail["pseudonym"], case.sender.as_str());

    // The case reads as erased, not as an error.
    let session = console.login("rita@anumi.example").await;
    let page = console.get(&session, &format!("/cases/{ann_case}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Message erased on"), "{html}");
    assert!(!html.to_lowercase().contains(ANN));
    let (ok, text, err) = run(&config, &["case", &ann_case.to_string()]);
    assert!(ok, "{err}");
    assert!(text.contains("[erased: the raw mail was removed"), "{text}");
    assert!(!text.to_lowercase().contains(ANN), "{text}");
    console.shutdown.cancel();
}

async fn ann_case(store: &Store) -> CaseId {
    store
        .list_cases(&CaseFilter {
            limit: Some(100),
            ..CaseFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.from == ANN)
        .expect("Ann's case")
        .id
}

async fn cash_refund(store: &Store, case: CaseId) -> Option<String> {
    store
        .actions_for_case(case)
        .await
        .unwrap()
        .into_iter()
        .find(|a| matches!(a.action, Action::CashRefund { .. }))
        .map(|a| a.idempotency_key)
}
