//! Reviewers as people come and go, through the real `refundd reviewer …`
//! commands against a running console: disabling ends a reviewer's
//! session and API tokens at once, enabling brings neither back, tokens
//! are revoked by label or all together, expire, and record their last
//! use; every act is audited (SQLite and PostgreSQL).

use reqwest::{Method, StatusCode};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use refundd::store::AuditAction;

use refundd::domain::Category;

use crate::console::{Console, PASSWORD, location, mail, now, refundd_with_stdin, seed_case};
use crate::support::TestDb;

const RITA: &str = "rita@anumi.example";

/// A config file for the CLI pointing at the console's database.
fn config_for(db: &TestDb) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("refundd.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).unwrap();
    (dir, config)
}

/// Runs `refundd ARGS` and returns its standard output; panics with its
/// standard error unless it exits with `success`.
fn cli(config: &std::path::Path, args: &[&str], success: bool) -> String {
    let out = refundd_with_stdin(config, args, "");
    assert_eq!(
        out.status.success(),
        success,
        "refundd {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn audited(audit: &[refundd::store::AuditEntry], action: AuditAction) -> Vec<serde_json::Value> {
    audit
        .iter()
        .filter(|a| a.action == action && a.actor == "cli")
        .map(|a| a.detail.clone())
        .collect()
}

async fn disabling_and_enabling(db: TestDb) {
    let console = Console::start(&db).await;
    let (_dir, config) = config_for(&db);
    let session = console.login(RITA).await;
    let issued_here = console.token(RITA).await;
    // Rita holds a case: nobody but she (or an admin) may decide it.
    let held = seed_case(
        &console.store,
        "ann@example.com",
        None,
        Category::CashRefund,
        mail(
            "ann@example.com",
            "Ann",
            "Refund",
            "Please refund my pack.",
            None,
            None,
        ),
        12,
    )
    .await;
    let (status, _) = console
        .api(
            &issued_here,
            Method::POST,
            &format!("/api/cases/{held}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let issued_by_cli = cli(
        &config,
        &["reviewer", "token", RITA, "--label", "script"],
        true,
    )
    .trim()
    .to_owned();
    assert!(issued_by_cli.starts_with("rfd_"), "{issued_by_cli}");
    assert_eq!(console.get(&session, "/").await.status(), StatusCode::OK);
    for token in [&issued_here, &issued_by_cli] {
        let (status, _) = console.api(token, Method::GET, "/api/queue", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    let said = cli(&config, &["reviewer", "disable", RITA], true);
    assert!(
        said.contains("1 session(s) ended, 2 token(s) revoked, 1 claimed case(s) released"),
        "{said}"
    );
    // Her claim went with her: the case is back in the queue for anyone.
    assert_eq!(console.store.case_claim(held).await.unwrap(), None);
    let sam = console.token("sam@anumi.example").await;
    let (status, _) = console
        .api(
            &sam,
            Method::POST,
            &format!("/api/cases/{held}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "another reviewer claims it");
    // The very next requests are refused: the page sends her to sign in,
    // the API answers 401 in its error envelope.
    let page = console.get(&session, "/").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/login");
    for token in [&issued_here, &issued_by_cli] {
        let (status, body) = console.api(token, Method::GET, "/api/queue", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "unauthorized");
    }
    assert_eq!(
        console.try_login(RITA, PASSWORD).await.err(),
        Some(StatusCode::UNAUTHORIZED),
        "a disabled reviewer cannot sign in"
    );
    cli(&config, &["reviewer", "token", RITA], false);

    cli(&config, &["reviewer", "enable", RITA], true);
    assert_eq!(
        console.get(&session, "/").await.status(),
        StatusCode::SEE_OTHER,
        "the old session stays ended"
    );
    for token in [&issued_here, &issued_by_cli] {
        let (status, _) = console.api(token, Method::GET, "/api/queue", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "old tokens stay revoked");
    }
    let again = console.login(RITA).await;
    assert_eq!(console.get(&again, "/").await.status(), StatusCode::OK);

    let listed: serde_json::Value =
        serde_json::from_str(&cli(&config, &["reviewer", "list", "--json"], true)).unwrap();
    let by_email = |email: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["email"] == email)
            .unwrap_or_else(|| panic!("{email} listed: {listed}"))
            .clone()
    };
    let rita = by_email(RITA);
    assert_eq!(rita["disabled"], false);
    assert_eq!(rita["role"], "reviewer");
    assert_eq!(rita["active_tokens"], 0);
    assert_eq!(
        rita["last_login_at"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()),
        Some(now())
    );
    assert!(rita.get("password_hash").is_none(), "{rita}");
    assert!(by_email("sam@anumi.example")["last_login_at"].is_null());
    assert_eq!(by_email("ada@anumi.example")["role"], "admin");
    let table = cli(&config, &["reviewer", "list"], true);
    assert!(table.contains(RITA) && table.contains("active"), "{table}");

    let audit = console.store.audit_log(None, 1000).await.unwrap();
    let disabled = audited(&audit, AuditAction::ReviewerDisabled);
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["email"], RITA);
    assert_eq!(disabled[0]["sessions_ended"], 1);
    assert_eq!(disabled[0]["tokens_revoked"], 2);
    assert_eq!(disabled[0]["claims_released"], 1);
    assert_eq!(audited(&audit, AuditAction::ReviewerEnabled).len(), 1);
    assert_eq!(audited(&audit, AuditAction::TokenCreated).len(), 1);
}

#[tokio::test]
async fn a_disabled_reviewers_session_and_tokens_are_refused_at_once_on_sqlite() {
    disabling_and_enabling(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_disabled_reviewers_session_and_tokens_are_refused_at_once_on_postgres() {
    disabling_and_enabling(TestDb::postgres().await).await;
}

async fn revoking_and_expiring(db: TestDb) {
    let console = Console::start(&db).await;
    let (_dir, config) = config_for(&db);
    let issue = |label: &str| {
        cli(
            &config,
            &["reviewer", "token", RITA, "--label", label],
            true,
        )
        .trim()
        .to_owned()
    };
    let (ci, laptop) = (issue("ci"), issue("laptop"));
    let works = |token: String| {
        let console = &console;
        async move { console.api(&token, Method::GET, "/api/queue", None).await.0 }
    };

    cli(&config, &["reviewer", "token", RITA, "--revoke"], false);
    let said = cli(
        &config,
        &["reviewer", "token", RITA, "--revoke", "--label", "ci"],
        true,
    );
    assert!(said.contains("1 token(s)"), "{said}");
    assert_eq!(works(ci.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(laptop.clone()).await, StatusCode::OK);
    cli(
        &config,
        &["reviewer", "token", RITA, "--revoke", "--label", "ci"],
        false,
    );

    let tokens: serde_json::Value =
        serde_json::from_str(&cli(&config, &["reviewer", "tokens", RITA, "--json"], true)).unwrap();
    let laptop_row = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "laptop")
        .unwrap();
    assert_eq!(
        laptop_row["last_used_at"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()),
        Some(now()),
        "the console's clock at its use"
    );
    assert!(laptop_row["revoked_at"].is_null());
    let table = cli(&config, &["reviewer", "tokens", RITA], true);
    assert!(
        table.contains("revoked") && table.contains("laptop"),
        "{table}"
    );

    cli(
        &config,
        &["reviewer", "token", RITA, "--revoke", "--all"],
        true,
    );
    assert_eq!(works(laptop).await, StatusCode::UNAUTHORIZED);
    let audit = console.store.audit_log(None, 1000).await.unwrap();
    let revoked = audited(&audit, AuditAction::TokenRevoked);
    assert_eq!(revoked.len(), 2, "one line per revoking act: {revoked:?}");
    assert_eq!(revoked[0]["label"], "ci");
    assert!(revoked[1]["label"].is_null());

    // A token issued at the console's "now" works for 90 days, no longer;
    // its last use is kept to the minute.
    let token = console.token(RITA).await;
    let day = 24 * 60;
    console.minutes_ahead.store(90 * day - 1, Ordering::SeqCst);
    assert_eq!(works(token.clone()).await, StatusCode::OK);
    let rita = console
        .store
        .reviewer_by_email(RITA)
        .await
        .unwrap()
        .unwrap();
    let last_used = console
        .store
        .api_tokens(rita.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.label == "test")
        .and_then(|t| t.last_used_at);
    assert_eq!(
        last_used,
        Some(now() + chrono::Duration::minutes(90 * day - 1))
    );
    console.minutes_ahead.store(90 * day, Ordering::SeqCst);
    assert_eq!(works(token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_are_revoked_by_label_or_all_expire_and_record_their_last_use_on_sqlite() {
    revoking_and_expiring(TestDb::sqlite()).await;
}

#[tokio::test]
async fn tokens_are_revoked_by_label_or_all_expire_and_record_their_last_use_on_postgres() {
    revoking_and_expiring(TestDb::postgres().await).await;
}
