//! The reviewers' console over HTTP, on a loopback listener: sign-in and
//! its rate limit, the queue and its filters, the case page with hostile
//! mail, every decision through the pages and the JSON API, claims, bulk
//! approval, CSRF, and two reviewers racing on one case (SQLite and
//! PostgreSQL).

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use std::collections::BTreeMap;
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::{Category, Clause, Decision, Flag, Language, Outcome, ReplyKind, TraceStep};
use refundd::queue::lifecycle::{Opening, Transition};
use refundd::store::{
    ActionStatus, CaseId, CaseStatus, NewMessage, ReplyStatus, ReviewerRole, Store,
};
use refundd::web::{self, WebState, accounts, auth};

use crate::support::TestDb;

/// The console's fixed "now".
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap()
}

pub const PASSWORD: &str = "correct horse battery staple";
pub const ANN_ORDER: &str = "0b7e2c1a-0000-4000-8000-00000000a001";
pub const BEN_ORDER: &str = "0b7e2c1a-0000-4000-8000-00000000b001";

/// The ledger the cases are about: Ann bought 50 credits for 9.00 EUR and
/// used 10; Ben bought 100 for 15.00 EUR and used none.
const LEDGER: &str = r#"{"type":"wallet","id":"w_ann","email":"ann@example.com","status":"active","created_at":"2026-01-01T00:00:00Z"}
{"type":"order","id":"0b7e2c1a-0000-4000-8000-00000000a001","wallet":"w_ann","product":"Starter 50","credits":50,"amount":900,"currency":"EUR","invoice_number":"ANUMI-AAAAAAAA-0001","created_at":"2026-06-02T10:00:00Z"}
{"type":"generation","id":"gen_ann_1","wallet":"w_ann","order":"0b7e2c1a-0000-4000-8000-00000000a001","credits":10,"status":"succeeded","style":"ghibli","refunded":false,"created_at":"2026-06-03T10:00:00Z"}
{"type":"wallet","id":"w_ben","email":"ben@example.com","status":"active","created_at":"2026-01-01T00:00:00Z"}
{"type":"order","id":"0b7e2c1a-0000-4000-8000-00000000b001","wallet":"w_ben","product":"Pro 100","credits":100,"amount":1500,"currency":"EUR","invoice_number":"ANUMI-BBBBBBBB-0001","created_at":"2026-06-05T10:00:00Z"}
"#;

/// A customer email; `html` adds an HTML part, `attachment` an image.
pub fn mail(
    from: &str,
    name: &str,
    subject: &str,
    text: &str,
    html: Option<&str>,
    attachment: Option<&str>,
) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    let mut raw = format!(
        "From: \"{name}\" <{from}>\r\nTo: refunds@anumi.example\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@mail.example>\r\nDate: Mon, 8 Jun 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n"
    );
    match html {
        Some(html) => raw.push_str(&format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
        )),
        None => raw.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n")),
    }
    if let Some(file) = attachment {
        // A 1x1 transparent PNG.
        raw.push_str(&format!(
            "--outer\r\nContent-Type: image/png; name=\"{file}\"\r\nContent-Disposition: attachment; filename=\"{file}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\r\n"
        ));
    }
    raw.push_str("--outer--\r\n");
    raw.into_bytes()
}

/// A case in review as the engine leaves it when AUTH stops an approval.
pub async fn seed_case(
    store: &Store,
    sender: &str,
    order: Option<&str>,
    category: Category,
    raw: Vec<u8>,
    deadline_day: u32,
) -> CaseId {
    let received = Utc.with_ymd_and_hms(2026, 6, 8, 10, 0, 0).unwrap();
    let message = store
        .insert_message(&NewMessage {
            message_id: None,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw)),
            raw,
            received_at: received,
            source: "test".into(),
        })
        .await
        .unwrap()
        .id();
    let decision = Decision {
        outcome: Outcome::Review,
        category,
        flags: [Flag::SenderUnverified].into_iter().collect(),
        actions: vec![],
        trace: vec![TraceStep {
            clause: Clause::Auth,
            finding: "The sender is not authenticated, so nothing is moved.".into(),
            facts: vec![("dmarc_result".into(), "none".into())],
        }],
        reply: ReplyKind::ReviewAcknowledged,
        order_id: order.map(str::to_owned),
        wallet_id: None,
        generation_id: None,
        reply_facts: Default::default(),
    };
    let mut tx = store.begin().await.unwrap();
    let id = tx
        .apply_transition(&Transition::opened(
            Opening {
                sender: sender.into(),
                subject: "Refund please".into(),
                language: Language::En,
            },
            decision,
            Some(
                Utc.with_ymd_and_hms(2026, 6, deadline_day, 10, 0, 0)
                    .unwrap(),
            ),
            received,
        ))
        .await
        .unwrap()
        .id;
    tx.attach_message(message, id).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// A console on a loopback port over a fresh database with the ledger,
/// two reviewers and an admin.
pub struct Console {
    pub store: Store,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Minutes the console's clock is ahead of [`now`].
    pub minutes_ahead: Arc<std::sync::atomic::AtomicI64>,
}

impl Console {
    pub async fn start(db: &TestDb) -> Console {
        Console::start_with(db, |_| {}).await
    }

    /// [`start`](Self::start), with `tune` applied to the settings.
    pub async fn start_with(db: &TestDb, tune: impl FnOnce(&mut Settings)) -> Console {
        Console::start_on(db, LEDGER, tune).await
    }

    /// [`start_with`](Self::start_with) over a database that holds its own
    /// ledger: `ledger` (JSON Lines, may be empty) is imported instead of
    /// the console tests' one.
    pub async fn start_on(db: &TestDb, ledger: &str, tune: impl FnOnce(&mut Settings)) -> Console {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = Store::connect(&db.url).await.unwrap();
        let report = refundd::store::import_jsonl(&store, ledger.as_bytes(), |_| {})
            .await
            .unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        for (email, role) in [
            ("rita@anumi.example", ReviewerRole::Reviewer),
            ("sam@anumi.example", ReviewerRole::Reviewer),
            ("ada@anumi.example", ReviewerRole::Admin),
        ] {
            accounts::add_reviewer(&store, email, PASSWORD, role, now())
                .await
                .unwrap();
        }
        let mut settings = Settings::default();
        settings.web.secure_cookies = false;
        tune(&mut settings);
        let minutes_ahead = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let ahead = minutes_ahead.clone();
        let clock = Arc::new(move || {
            now() + chrono::Duration::minutes(ahead.load(std::sync::atomic::Ordering::SeqCst))
        });
        let state = WebState::with_clock(store.clone(), Arc::new(settings), clock).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(web::serve(listener, state, shutdown.clone()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Console {
            store,
            base,
            http,
            shutdown,
            minutes_ahead,
        }
    }

    /// Signs in; returns the session.
    pub async fn login(&self, email: &str) -> Session {
        self.try_login(email, PASSWORD).await.expect("signed in")
    }

    pub async fn try_login(&self, email: &str, password: &str) -> Result<Session, StatusCode> {
        let page = self
            .http
            .get(format!("{}/login", self.base))
            .send()
            .await
            .unwrap();
        let login_cookie = cookie_of(&page);
        let csrf = csrf_of(&page.text().await.unwrap());
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .header(COOKIE, login_cookie)
            .form(&[("email", email), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::SEE_OTHER {
            return Err(response.status());
        }
        let cookie = cookie_of(&response);
        let queue = self
            .http
            .get(format!("{}/", self.base))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        let csrf = csrf_of(&queue.text().await.unwrap());
        Ok(Session { cookie, csrf })
    }

    pub async fn get(&self, session: &Session, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &session.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(
        &self,
        session: &Session,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &session.csrf));
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &session.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, email: &str) -> String {
        let reviewer = self.store.reviewer_by_email(email).await.unwrap().unwrap();
        accounts::create_api_token(
            &self.store,
            "test",
            &reviewer,
            "test",
            chrono::Duration::days(90),
            now(),
        )
        .await
        .unwrap()
        .token
    }

    pub async fn api(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn version(&self, id: CaseId) -> i64 {
        self.store.case(id).await.unwrap().unwrap().version
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-in browser: its cookie and its CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

fn cookie_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|v| !v.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn sign_in_is_required_and_rate_limited_after_five_failures() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let anonymous = console
        .http
        .get(format!("{}/", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/login");
    let (status, _) = console
        .api("rfd_not-a-token", reqwest::Method::GET, "/api/queue", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for _ in 0..5 {
        assert_eq!(
            console
                .try_login("rita@anumi.example", "wrong password!!")
                .await
                .err(),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
    assert_eq!(
        console
            .try_login("rita@anumi.example", PASSWORD)
            .await
            .err(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    // Another reviewer is not locked out by Rita's failures.
    console.login("sam@anumi.example").await;
    let audit = console.store.audit_log(None, 100).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == refundd::store::AuditAction::LoginFailed)
            .count(),
        5
    );
}

/// Sends one sign-in POST per address at once (all with one sign-in form's
/// CSRF cookie, all with a wrong password) and counts the answers by status.
async fn sign_in_burst(console: &Console, emails: Vec<String>) -> BTreeMap<u16, usize> {
    let page = console
        .http
        .get(format!("{}/login", console.base))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_of(&page);
    let csrf = csrf_of(&page.text().await.unwrap());
    let posts = emails.iter().map(|email| {
        console
            .http
            .post(format!("{}/login", console.base))
            .header(COOKIE, &login_cookie)
            .form(&[
                ("email", email.as_str()),
                ("password", "wrong password!!"),
                ("csrf", &csrf),
            ])
            .send()
    });
    let mut statuses = BTreeMap::new();
    for response in futures::future::join_all(posts).await {
        *statuses
            .entry(response.unwrap().status().as_u16())
            .or_default() += 1;
    }
    statuses
}

fn failed_sign_ins_audited(audit: &[refundd::store::AuditEntry]) -> usize {
    audit
        .iter()
        .filter(|a| a.action == refundd::store::AuditAction::LoginFailed)
        .count()
}

/// 40 wrong passwords for one address at once: counting and recording an
/// attempt is one step, so exactly `max_failed_logins` (5) passwords are
/// checked (401) and the rest are refused unchecked (429).
async fn a_burst_for_one_address(db: TestDb) {
    let console = Console::start(&db).await;
    let statuses = sign_in_burst(&console, vec!["rita@anumi.example".into(); 40]).await;
    assert_eq!(statuses, BTreeMap::from([(401, 5), (429, 35)]));
    let audit = console.store.audit_log(None, 1000).await.unwrap();
    assert_eq!(failed_sign_ins_audited(&audit), 5);
    assert_eq!(
        console
            .try_login("rita@anumi.example", PASSWORD)
            .await
            .err(),
        Some(StatusCode::TOO_MANY_REQUESTS),
        "the right password is refused too while the address is limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_for_one_address_checks_only_the_limit_on_sqlite() {
    a_burst_for_one_address(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_for_one_address_checks_only_the_limit_on_postgres() {
    a_burst_for_one_address(TestDb::postgres().await).await;
}

/// 60 addresses at once from one peer: exactly four times the limit (20)
/// are checked, the rest refused unchecked.
async fn a_burst_from_one_peer(db: TestDb) {
    let console = Console::start(&db).await;
    let emails = (0..60).map(|i| format!("guess{i}@anumi.example")).collect();
    let statuses = sign_in_burst(&console, emails).await;
    assert_eq!(statuses, BTreeMap::from([(401, 20), (429, 40)]));
    let audit = console.store.audit_log(None, 1000).await.unwrap();
    assert_eq!(failed_sign_ins_audited(&audit), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_addresses_from_one_peer_checks_only_four_times_the_limit_on_sqlite() {
    a_burst_from_one_peer(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_addresses_from_one_peer_checks_only_four_times_the_limit_on_postgres() {
    a_burst_from_one_peer(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_session_expires_after_its_time_to_live_and_sign_out_ends_it() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let session = console.login("rita@anumi.example").await;
    console
        .minutes_ahead
        .store(479, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(console.get(&session, "/").await.status(), StatusCode::OK);
    console
        .minutes_ahead
        .store(481, std::sync::atomic::Ordering::SeqCst);
    let expired = console.get(&session, "/").await;
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&expired), "/login");

    console
        .minutes_ahead
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let session = console.login("sam@anumi.example").await;
    let out = console.post(&session, "/logout", &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        console.get(&session, "/").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_form_without_the_session_token_is_refused() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let case = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::CashRefund,
        mail(
            "ann@example.com",
            "Ann",
            "Refund please",
            "refund ANUMI-AAAAAAAA-0001",
            None,
            None,
        ),
        12,
    )
    .await;
    let session = console.login("rita@anumi.example").await;
    let response = console
        .http
        .post(format!("{}/cases/{case}/notes", console.base))
        .header(COOKIE, &session.cookie)
        .form(&[("text", "hello"), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        console
            .store
            .audit_log(Some(case), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_queue_lists_open_cases_oldest_deadline_first_and_filters_them_on_sqlite() {
    queue_order_and_filters(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_queue_lists_open_cases_oldest_deadline_first_and_filters_them_on_postgres() {
    queue_order_and_filters(TestDb::postgres().await).await;
}

async fn queue_order_and_filters(db: TestDb) {
    let console = Console::start(&db).await;
    let later = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail("ben@example.com", "Ben", "Geld zurück", "bitte", None, None),
        15,
    )
    .await;
    let sooner = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::NoResemblance,
        mail(
            "ann@example.com",
            "Ann",
            "Refund please",
            "does not look like me at all",
            None,
            None,
        ),
        11,
    )
    .await;
    let session = console.login("rita@anumi.example").await;

    let page = console.get(&session, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'nonce-") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let (a, b) = (
        html.find(&format!(">{sooner}<")).unwrap(),
        html.find(&format!(">{later}<")).unwrap(),
    );
    assert!(a < b, "the earlier deadline comes first");
    assert!(html.contains("22 h 0 min"), "time left until 11 June 10:00");
    assert!(html.contains("15.00"), "amount at stake");

    for (query, shown, hidden) in [
        ("category=no_resemblance", sooner, later),
        ("q=ANUMI-BBBBBBBB-0001", later, sooner),
        ("q=ben%40example", later, sooner),
        (&format!("q={sooner}") as &str, sooner, later),
        ("q=look+like+me", sooner, later),
    ] {
        let html = console
            .get(&session, &format!("/?{query}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(&format!(">{shown}<")),
            "{query} shows {shown}"
        );
        assert!(
            !html.contains(&format!(">{hidden}<")),
            "{query} hides {hidden}"
        );
    }

    let token = console.token("rita@anumi.example").await;
    let (status, body) = console
        .api(
            &token,
            reqwest::Method::GET,
            "/api/queue?flag=sender_unverified",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 2);
    assert_eq!(body["items"][0]["id"], sooner.to_string());
    let (status, _) = console
        .api(
            &token,
            reqwest::Method::GET,
            "/api/queue?flag=nonsense",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn approving_a_partial_refund_queues_the_reply_with_the_personal_note_and_audits_it() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let case = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::CashRefund,
        mail(
            "ann@example.com",
            "Ann",
            "Refund please",
            "refund ANUMI-AAAAAAAA-0001",
            None,
            None,
        ),
        12,
    )
    .await;
    let session = console.login("rita@anumi.example").await;

    let page = console
        .get(&session, &format!("/cases/{case}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("cash refund of 7.20"),
        "P2 pro-rata: 40 of 50 credits left"
    );
    assert!(
        page.contains("The sender is not authenticated"),
        "the trace"
    );
    assert!(page.contains("ANUMI-AAAAAAAA-0001"), "the ledger facts");
    let version = console.version(case).await.to_string();

    let confirm = console.get(&session, &format!("/cases/{case}/confirm?action=approve_cash&amount=5.00&version={version}&note=Sorry+for+the+trouble")).await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let confirm = confirm.text().await.unwrap();
    assert!(
        confirm.contains("5.00"),
        "the reply quotes the edited amount"
    );
    assert!(
        confirm.contains("Sorry for the trouble"),
        "the personal paragraph is in the preview"
    );

    let too_much = console
        .post(
            &session,
            &format!("/cases/{case}/decide"),
            &[
                ("action", "approve_cash"),
                ("amount", "9.01"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(too_much.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_much.text().await.unwrap().contains("between 1 and 900"));

    let sent = console
        .post(
            &session,
            &format!("/cases/{case}/decide"),
            &[
                ("action", "approve_cash"),
                ("order_id", ANN_ORDER),
                ("amount", "5.00"),
                ("version", &version),
                ("note", "Sorry for the trouble"),
            ],
        )
        .await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&sent), format!("/?sent={case}"));

    let stored = console.store.case(case).await.unwrap().unwrap();
    assert_eq!(stored.status, CaseStatus::Resolved);
    assert_eq!(stored.decision.outcome, Outcome::Approved);
    let actions = console.store.actions_for_case(case).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].status, ActionStatus::Pending);
    assert!(
        matches!(&actions[0].action, refundd::domain::Action::CashRefund { amount: 500, currency, .. } if currency == "EUR")
    );
    let replies = console.store.replies_for_case(case).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, ReplyStatus::Queued);
    let raw = String::from_utf8_lossy(&replies[0].raw).into_owned();
    assert!(raw.contains("Sorry for the trouble"));
    let events = console.store.case_events(case).await.unwrap();
    assert_eq!(
        events.last().unwrap().actor,
        refundd::store::Actor::Reviewer("rita@anumi.example".into())
    );
    let audit = console.store.audit_log(Some(case), 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, refundd::store::AuditAction::Approve);
    assert_eq!(audit[0].actor, "reviewer:rita@anumi.example");
    assert_eq!(audit[0].detail["personal_note"], "Sorry for the trouble");
}

#[tokio::test]
async fn deny_ask_note_and_claims_work_through_the_api() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let denied = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::Subjective,
        mail(
            "ann@example.com",
            "Ann",
            "meh",
            "I just don't like it",
            None,
            None,
        ),
        12,
    )
    .await;
    let asked = seed_case(
        &console.store,
        "ben@example.com",
        None,
        Category::NoResemblance,
        mail("ben@example.com", "Ben", "not me", "not me", None, None),
        13,
    )
    .await;
    let rita = console.token("rita@anumi.example").await;
    let sam = console.token("sam@anumi.example").await;
    let ada = console.token("ada@anumi.example").await;
    use reqwest::Method;

    let (status, _) = console
        .api(
            &rita,
            Method::POST,
            &format!("/api/cases/{denied}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = console
        .api(
            &sam,
            Method::POST,
            &format!("/api/cases/{denied}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("rita@anumi.example")
    );
    let (status, _) = console
        .api(
            &sam,
            Method::DELETE,
            &format!("/api/cases/{denied}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = console
        .api(
            &ada,
            Method::POST,
            &format!("/api/cases/{denied}/claim"),
            Some(serde_json::json!({"take_over": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an admin takes a case over");
    let (_, case) = console
        .api(&rita, Method::GET, &format!("/api/cases/{denied}"), None)
        .await;
    assert_eq!(case["claimed_by"], "ada@anumi.example");

    let (status, preview) = console
        .api(
            &rita,
            Method::POST,
            &format!("/api/cases/{denied}/preview"),
            Some(serde_json::json!({"choice": {"action": "deny", "reason": "subjective"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(preview["outcome"], "denied");
    let version = console.version(denied).await;
    let deny = serde_json::json!({"version": version, "choice": {"action": "deny", "reason": "subjective"}});
    let (status, refused) = console
        .api(
            &rita,
            Method::POST,
            &format!("/api/cases/{denied}/decision"),
            Some(deny.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only the claim holder decides: {refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("ada@anumi.example")
    );
    assert_eq!(
        console.store.case_claim(denied).await.unwrap().unwrap().0,
        "ada@anumi.example",
        "a refused decision leaves the claim alone"
    );
    assert_eq!(console.version(denied).await, version);
    let (status, applied) = console
        .api(
            &ada,
            Method::POST,
            &format!("/api/cases/{denied}/decision"),
            Some(deny),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["status"], "resolved");
    assert!(
        console.store.case_claim(denied).await.unwrap().is_none(),
        "a decision clears the claim"
    );

    let version = console.version(asked).await;
    let (status, applied) = console.api(&sam, Method::POST, &format!("/api/cases/{asked}/decision"), Some(serde_json::json!({"version": version, "choice": {"action": "ask", "ask": "result"}}))).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["status"], "needs_info");
    let stored = console.store.case(asked).await.unwrap().unwrap();
    assert_eq!(stored.decision.reply, ReplyKind::NeedResult);
    assert!(stored.deadline.unwrap() > now());

    let (status, _) = console
        .api(
            &sam,
            Method::POST,
            &format!("/api/cases/{asked}/notes"),
            Some(serde_json::json!({"text": "waiting for the photo"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = console
        .api(
            &sam,
            Method::POST,
            &format!("/api/cases/{asked}/notes"),
            Some(serde_json::json!({"text": "  "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let audit = console.store.audit_log(Some(asked), 10).await.unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["ask", "note"]);

    let (status, spec) = (
        console
            .http
            .get(format!("{}/api/openapi.yaml", console.base))
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!((status, spec), (StatusCode::OK, ()));
}

#[tokio::test]
async fn bulk_approval_approves_the_obvious_cases_and_skips_the_rest() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let obvious = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail("ben@example.com", "Ben", "refund", "refund", None, None),
        12,
    )
    .await;
    let unclear = seed_case(
        &console.store,
        "stranger@example.com",
        None,
        Category::Other,
        mail("stranger@example.com", "X", "hi", "hi", None, None),
        13,
    )
    .await;
    let session = console.login("rita@anumi.example").await;
    let (v1, v2) = (
        console.version(obvious).await,
        console.version(unclear).await,
    );
    let page = console
        .post(
            &session,
            "/cases/bulk",
            &[
                ("case", &format!("{obvious}:{v1}")),
                ("case", &format!("{unclear}:{v2}")),
                ("action", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        console.store.case(obvious).await.unwrap().unwrap().status,
        CaseStatus::Resolved
    );
    assert_eq!(
        console.store.case(unclear).await.unwrap().unwrap().status,
        CaseStatus::Review
    );
    let actions = console.store.actions_for_case(obvious).await.unwrap();
    assert!(matches!(
        &actions[0].action,
        refundd::domain::Action::CashRefund { amount: 1500, .. }
    ));
}

#[tokio::test]
async fn bulk_approval_skips_cases_another_reviewer_holds_and_says_who() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let held = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail("ben@example.com", "Ben", "refund", "refund", None, None),
        12,
    )
    .await;
    console
        .store
        .claim_case(held, "sam@anumi.example", false, now())
        .await
        .unwrap();
    // Even an admin's bulk approval leaves a case someone holds alone.
    let ada = console.token("ada@anumi.example").await;
    let version = console.version(held).await;
    let (status, body) = console
        .api(
            &ada,
            reqwest::Method::POST,
            "/api/bulk/approve",
            Some(serde_json::json!({"cases": [{"id": held.to_string(), "version": version}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = &body[0];
    assert_eq!(result["kind"], "skipped", "{body}");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("sam@anumi.example")
    );
    let row = console.store.case(held).await.unwrap().unwrap();
    assert_eq!((row.status, row.version), (CaseStatus::Review, version));
    assert!(
        console
            .store
            .actions_for_case(held)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn hostile_mail_is_shown_as_text_and_attachments_only_as_downloads() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let raw = mail(
        "ann@example.com",
        "<img src=x onerror=alert(1)>",
        "<script>window.__pwned=1</script>",
        "<script>window.__pwned=2</script>",
        Some(
            "<p>hi</p><script>window.__pwned=3</script><img src=\"https://tracker.example/p.gif\" onerror=\"window.__pwned=4\">",
        ),
        Some("\\\"><svg onload=alert(1)>.png"),
    );
    let case = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::CashRefund,
        raw,
        12,
    )
    .await;
    let session = console.login("rita@anumi.example").await;
    let page = console.get(&session, &format!("/cases/{case}")).await;
    let html = page.text().await.unwrap();
    for raw_payload in [
        "<script>window.__pwned",
        "<img src=x",
        "onerror=\"window",
        "tracker.example",
        "<svg onload",
    ] {
        assert!(
            !html.contains(raw_payload),
            "{raw_payload} reached the page as markup"
        );
    }
    assert!(
        html.contains("&lt;script&gt;window.__pwned=1"),
        "the subject is shown as text"
    );
    let messages = console.store.case_messages(case).await.unwrap();
    let attachment = console
        .get(
            &session,
            &format!("/cases/{case}/messages/{}/attachments/0", messages[0].id),
        )
        .await;
    assert_eq!(attachment.status(), StatusCode::OK);
    let headers = attachment.headers();
    assert_eq!(headers["content-type"], "image/png");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"R-")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let missing = console
        .get(
            &session,
            &format!("/cases/{case}/messages/{}/attachments/9", messages[0].id),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// Two reviewers decide the same case from the same version: exactly one
/// wins; the other gets 409 with a clear message and nothing is recorded
/// twice.
async fn two_reviewers_racing(db: TestDb) {
    let console = Console::start(&db).await;
    let case = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail("ben@example.com", "Ben", "refund", "refund", None, None),
        12,
    )
    .await;
    let rita = console.login("rita@anumi.example").await;
    let sam = console.login("sam@anumi.example").await;
    let version = console.version(case).await.to_string();
    let path = format!("/cases/{case}/decide");
    let approve = [
        ("action", "approve_cash"),
        ("amount", "15.00"),
        ("version", &version),
    ];
    let deny = [
        ("action", "deny"),
        ("reason", "window_expired"),
        ("version", &version),
    ];
    let (a, b) = tokio::join!(
        console.post(&rita, &path, &approve),
        console.post(&sam, &path, &deny)
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::CONFLICT]);
    let loser = if a.status() == StatusCode::CONFLICT {
        a
    } else {
        b
    };
    let message = loser.text().await.unwrap();
    assert!(
        message.contains("Someone else acted on case") && message.contains("Nothing was sent"),
        "{message}"
    );
    assert_eq!(console.store.replies_for_case(case).await.unwrap().len(), 1);
    let events = console.store.case_events(case).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.actor, refundd::store::Actor::Reviewer(_)))
            .count(),
        1
    );
    assert_eq!(
        console.version(case).await,
        version.parse::<i64>().unwrap() + 1
    );
}

#[tokio::test]
async fn two_reviewers_cannot_both_decide_one_case_on_sqlite() {
    two_reviewers_racing(TestDb::sqlite()).await;
}

#[tokio::test]
async fn two_reviewers_cannot_both_decide_one_case_on_postgres() {
    two_reviewers_racing(TestDb::postgres().await).await;
}

/// Runs the refundd binary with `stdin` piped in.
pub fn refundd_with_stdin(
    config: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_refundd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("REFUNDD_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("refundd runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_cli_adds_reviewers_lists_the_queue_and_decides() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("refundd.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    refundd::store::import_jsonl(&store, LEDGER.as_bytes(), |_| {})
        .await
        .unwrap();
    let case = seed_case(
        &store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::Subjective,
        mail("ann@example.com", "Ann", "meh", "meh", None, None),
        12,
    )
    .await;

    let short = refundd_with_stdin(
        &config,
        &["reviewer", "add", "rita@anumi.example"],
        "short\n",
    );
    assert!(!short.status.success(), "a short password is refused");
    let added = refundd_with_stdin(
        &config,
        &["reviewer", "add", "rita@anumi.example"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let rita = store
        .reviewer_by_email("rita@anumi.example")
        .await
        .unwrap()
        .unwrap();
    assert!(
        auth::verify_password(&rita.password_hash, PASSWORD),
        "the password from stdin, without its newline"
    );

    let queue = refundd_with_stdin(&config, &["queue", "--json"], "");
    let page: serde_json::Value = serde_json::from_slice(&queue.stdout).unwrap();
    assert_eq!(page["items"][0]["id"], case.to_string());

    let stranger = refundd_with_stdin(
        &config,
        &[
            "decide",
            &case.to_string(),
            "deny",
            "--reason",
            "subjective",
            "--as",
            "nobody@x",
        ],
        "",
    );
    assert!(!stranger.status.success(), "only reviewers decide");
    let decided = refundd_with_stdin(
        &config,
        &[
            "decide",
            &case.to_string(),
            "deny",
            "--reason",
            "subjective",
            "--as",
            "rita@anumi.example",
        ],
        "",
    );
    assert!(
        decided.status.success(),
        "{}",
        String::from_utf8_lossy(&decided.stderr)
    );
    let stored = store.case(case).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.decision.reply),
        (CaseStatus::Resolved, ReplyKind::SubjectiveDenied)
    );
    assert_eq!(
        store.audit_log(Some(case), 10).await.unwrap()[0].actor,
        "reviewer:rita@anumi.example"
    );
}

#[tokio::test]
async fn a_case_shows_the_engine_proposal_with_its_configuration_fingerprint() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let mut settings = Settings::default();
    settings.policy.shadow = true;
    settings.sender_auth.trusted_authserv_ids = vec!["mx.anumi.example".into()];
    let fingerprint = settings.decision_fingerprint().unwrap();
    let raw =
        std::fs::read(crate::support::repo().join("examples/demo/mail/01-ann-unused-pack.eml"))
            .unwrap();
    refundd::ingest::store_message(
        &console.store,
        refundd::ingest::RawMessage {
            source: "test".into(),
            bytes: raw,
            received_at: now(),
            full_size: None,
        },
    )
    .await
    .unwrap();
    let done = refundd::pipeline::Pipeline::new(console.store.clone(), Arc::new(settings))
        .unwrap()
        .process_pending(now())
        .await
        .unwrap();
    let case = done[0].case_id;
    let session = console.login("rita@anumi.example").await;
    let page = console
        .get(&session, &format!("/cases/{case}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Engine decisions"), "{page}");
    assert!(page.contains("proposed in shadow mode"));
    assert!(page.contains(&fingerprint));
}

/// `[reply] templates_dir` with the body of a configured deny reason in
/// every language, and `[[review.deny_reasons]]` naming it.
fn duplicate_order_reason(templates: &std::path::Path) -> impl FnOnce(&mut Settings) + use<> {
    for (lang, text) in [
        ("en", "DUPLICATE-EN: you bought this pack twice"),
        ("de", "DUPLICATE-DE: Sie haben dieses Paket zweimal gekauft"),
        ("fr", "DUPLICATE-FR: vous avez acheté ce pack deux fois"),
        ("es", "DUPLICATE-ES: compró este paquete dos veces"),
    ] {
        std::fs::create_dir_all(templates.join(lang)).unwrap();
        std::fs::write(
            templates.join(format!("{lang}/deny_duplicate_order.txt")),
            format!(
                "{text}{{% if order_reference %}} (order {{{{ order_reference }}}}){{% endif %}}.\n"
            ),
        )
        .unwrap();
    }
    let templates = templates.to_path_buf();
    move |settings: &mut Settings| {
        settings.reply.templates_dir = Some(templates);
        settings.review.deny_reasons = vec![refundd::config::DenyReasonConfig {
            id: "duplicate_order".into(),
            label: "P4 — the same pack was bought twice by mistake".into(),
            clause: Clause::P4,
            template: "deny_duplicate_order".into(),
        }];
        settings.validate().unwrap();
    }
}

#[tokio::test]
async fn a_configured_fifth_reason_denies_through_the_form_and_the_api_with_its_own_reply() {
    let db = TestDb::sqlite();
    let templates = tempfile::tempdir().unwrap();
    let console = Console::start_with(&db, duplicate_order_reason(templates.path())).await;
    let by_form = seed_case(
        &console.store,
        "ann@example.com",
        Some(ANN_ORDER),
        Category::CashRefund,
        mail(
            "ann@example.com",
            "Ann",
            "twice",
            "I bought it twice",
            None,
            None,
        ),
        12,
    )
    .await;
    let by_api = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail(
            "ben@example.com",
            "Ben",
            "twice",
            "bought twice",
            None,
            None,
        ),
        13,
    )
    .await;

    // The console lists the reason with its label, after the shipped four.
    let session = console.login("rita@anumi.example").await;
    let page = console
        .get(&session, &format!("/cases/{by_form}"))
        .await
        .text()
        .await
        .unwrap();
    let select = &page[page.find("name=\"reason\"").expect("the deny form")..];
    let select = &select[..select.find("</select>").unwrap()];
    for id in [
        "all_credits_used",
        "window_expired",
        "subjective",
        "terminated",
    ] {
        assert!(select.contains(&format!("value=\"{id}\"")), "{select}");
    }
    assert!(
        select.contains(
            "<option value=\"duplicate_order\">P4 — the same pack was bought twice by mistake</option>"
        ),
        "{select}"
    );

    // The confirmation shows the reason's own reply, and Send records it.
    let version = console.version(by_form).await.to_string();
    let confirm = console
        .get(
            &session,
            &format!(
                "/cases/{by_form}/confirm?action=deny&reason=duplicate_order&version={version}"
            ),
        )
        .await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains("DUPLICATE-EN"), "{confirm}");
    assert!(confirm.contains("ANUMI-AAAAAAAA-0001"), "{confirm}");
    let sent = console
        .post(
            &session,
            &format!("/cases/{by_form}/decide"),
            &[
                ("action", "deny"),
                ("reason", "duplicate_order"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let stored = console.store.case(by_form).await.unwrap().unwrap();
    assert_eq!(stored.status, CaseStatus::Resolved);
    assert_eq!(stored.decision.outcome, Outcome::Denied);
    assert_eq!(stored.decision.reply, ReplyKind::ReasonDenied);
    let step = stored.decision.trace.last().unwrap();
    assert_eq!(step.clause, Clause::P4);
    assert_eq!(
        step.facts,
        [("reason".to_owned(), "duplicate_order".to_owned())]
    );
    let replies = console.store.replies_for_case(by_form).await.unwrap();
    assert_eq!(replies.len(), 1);
    let raw = String::from_utf8_lossy(&replies[0].raw);
    assert!(raw.contains("DUPLICATE-EN"), "{raw}");
    assert!(raw.contains("ANUMI-AAAAAAAA-0001"), "{raw}");

    // The JSON API lists the reasons and takes the id like any shipped
    // one; an unknown id is a clear 422 naming the configured reasons, and
    // changes nothing.
    let token = console.token("sam@anumi.example").await;
    let (status, reasons) = console
        .api(&token, reqwest::Method::GET, "/api/deny-reasons", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = reasons
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "all_credits_used",
            "window_expired",
            "subjective",
            "terminated",
            "duplicate_order"
        ]
    );
    assert_eq!(reasons[4]["reply"], "reason_denied");
    assert_eq!(reasons[4]["template"], "deny_duplicate_order");
    assert_eq!(reasons[4]["clause"], "P4");
    let version = console.version(by_api).await;
    let (status, body) = console
        .api(
            &token,
            reqwest::Method::POST,
            &format!("/api/cases/{by_api}/decision"),
            Some(serde_json::json!({"version": version, "choice": {"action": "deny", "reason": "bought_twice"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("unknown deny reason `bought_twice`"),
        "{message}"
    );
    assert!(message.contains("duplicate_order"), "{message}");
    assert_eq!(console.version(by_api).await, version);
    let (status, applied) = console
        .api(
            &token,
            reqwest::Method::POST,
            &format!("/api/cases/{by_api}/decision"),
            Some(serde_json::json!({"version": version, "choice": {"action": "deny", "reason": "duplicate_order"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["outcome"], "denied");
    let replies = console.store.replies_for_case(by_api).await.unwrap();
    assert_eq!(replies.len(), 1);
    let raw = String::from_utf8_lossy(&replies[0].raw);
    assert!(raw.contains("DUPLICATE-EN"), "{raw}");
    assert!(raw.contains("ANUMI-BBBBBBBB-0001"), "{raw}");

    // An unknown id through the form is refused the same way.
    let refused = console
        .post(
            &session,
            &format!("/cases/{by_api}/decide"),
            &[
                ("action", "deny"),
                ("reason", "bought_twice"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_admin_replays_stored_mail_against_a_candidate_from_the_console() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let raw = mail(
        "ann@example.com",
        "Ann",
        "Refund please",
        "Please refund my order ANUMI-AAAAAAAA-0001, I want my money back.",
        None,
        None,
    );
    refundd::ingest::store_message(
        &console.store,
        refundd::ingest::RawMessage {
            source: "test".into(),
            bytes: raw,
            received_at: now(),
            full_size: None,
        },
    )
    .await
    .unwrap();
    let mut in_force = Settings::default();
    in_force.web.secure_cookies = false;
    let done = refundd::pipeline::Pipeline::new(console.store.clone(), Arc::new(in_force))
        .unwrap()
        .process_pending(now())
        .await
        .unwrap();
    let case = done[0].case_id;
    let version = console.version(case).await;

    // Reviewers who are not admins do not see the page.
    let rita = console.login("rita@anumi.example").await;
    let page = console.get(&rita, "/admin/replay").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);

    let ada = console.login("ada@anumi.example").await;
    let page = console.get(&ada, "/admin/replay").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Shadow agreement"));

    // A candidate that is not a configuration is refused and runs nothing.
    let bad = console
        .post(
            &ada,
            "/admin/replay",
            &[("candidate", "[policy]\nrefund_window_days = \"soon\"\n")],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = bad.text().await.unwrap();
    assert!(bad.contains("refund_window_days"), "{bad}");

    // A one-day window denies what the fourteen-day window sent to review.
    let page = console
        .post(
            &ada,
            "/admin/replay",
            &[("candidate", "[policy]\nrefund_window_days = 1\n")],
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    let changed = page
        .split("id=\"changed\"")
        .nth(1)
        .expect("the changed table");
    assert!(changed.contains(&format!("/cases/{case}")), "{changed}");
    assert!(changed.contains("denied"), "{changed}");
    // The latest report stays on the page; the replay changed nothing.
    let again = console
        .get(&ada, "/admin/replay")
        .await
        .text()
        .await
        .unwrap();
    assert!(again.contains("Latest replay"));
    assert_eq!(console.version(case).await, version);
    assert_eq!(
        console.store.case(case).await.unwrap().unwrap().status,
        CaseStatus::Review
    );
}
