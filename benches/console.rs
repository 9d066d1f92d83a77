//! How fast the console renders with a full queue: 10,000 open cases in
//! SQLite, the queue page (first page, and a filtered search) and case
//! pages, each requested over HTTP on loopback; prints p50/p99 per page.
//! Target: under 50 ms at p99. Run with `cargo bench --bench console`.

use chrono::{Duration, TimeZone, Utc};
use std::sync::Arc;
use std::time::Instant;

use refundd::config::Settings;
use refundd::domain::{Category, Clause, Decision, Flag, Language, Outcome, ReplyKind, TraceStep};
use refundd::queue::lifecycle::{Opening, Transition};
use refundd::store::{NewMessage, NewSession, ReviewerRole, Store};
use refundd::web::{self, WebState, accounts, auth};

const CASES: i64 = 10_000;
const SAMPLES: usize = 300;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn seed(store: &Store) {
    let now = Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap();
    let mut ledger = String::new();
    for w in 0..1000 {
        ledger.push_str(&format!(
            "{{\"type\":\"wallet\",\"id\":\"w{w}\",\"email\":\"c{w}@example.com\",\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:00Z\"}}\n\
             {{\"type\":\"order\",\"id\":\"00000000-0000-4000-8000-{w:012}\",\"wallet\":\"w{w}\",\"product\":\"Starter 50\",\"credits\":50,\"amount\":900,\"currency\":\"EUR\",\"invoice_number\":\"ANUMI-AAAAAAAA-{w:04}\",\"created_at\":\"2026-06-02T10:00:00Z\"}}\n"
        ));
    }
    refundd::store::import_jsonl(store, ledger.as_bytes(), |_| {})
        .await
        .expect("ledger");
    let categories = [
        Category::CashRefund,
        Category::NoResemblance,
        Category::ContentViolation,
        Category::Other,
    ];
    // Messages first: the case transaction below holds SQLite's write lock.
    let mut messages = Vec::with_capacity(CASES as usize);
    for n in 0..CASES {
        let w = n % 1000;
        let sender = format!("c{w}@example.com");
        let raw = format!(
            "From: \"Customer {n}\" <{sender}>\r\nTo: refunds@anumi.example\r\nSubject: Refund request {n}\r\n\
             Message-ID: <m{n}@mail.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Hello, I would like a refund for ANUMI-AAAAAAAA-{w:04}. It does not look like me.\r\n"
        );
        let inserted = store
            .insert_message(&NewMessage {
                message_id: Some(format!("m{n}@mail.example")),
                sha256: format!("{n:064}"),
                raw: raw.into_bytes(),
                received_at: now - Duration::hours(n % 48),
                source: "bench".into(),
            })
            .await
            .expect("message");
        messages.push(inserted.id());
    }
    let mut tx = store.begin().await.expect("tx");
    for n in 0..CASES {
        let w = n % 1000;
        let sender = format!("c{w}@example.com");
        let category = categories[(n % 4) as usize];
        let decision = Decision {
            outcome: if n % 5 == 0 {
                Outcome::NeedsInfo
            } else {
                Outcome::Review
            },
            category,
            flags: [Flag::SenderUnverified].into_iter().collect(),
            actions: vec![],
            trace: vec![TraceStep {
                clause: Clause::Auth,
                finding: "not authenticated".into(),
                facts: vec![],
            }],
            reply: ReplyKind::ReviewAcknowledged,
            order_id: Some(format!("00000000-0000-4000-8000-{w:012}")),
            wallet_id: Some(format!("w{w}")),
            generation_id: None,
            reply_facts: Default::default(),
        };
        let id = tx
            .apply_transition(&Transition::opened(
                Opening {
                    sender,
                    subject: format!("Refund request {n}"),
                    language: Language::En,
                },
                decision,
                Some(now + Duration::minutes(n * 7 % 5000)),
                now,
            ))
            .await
            .expect("case")
            .id;
        tx.attach_message(messages[n as usize], id)
            .await
            .expect("attach");
    }
    tx.commit().await.expect("commit");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(http: &reqwest::Client, cookie: &str, urls: &[String]) -> (f64, f64) {
    let mut times = Vec::with_capacity(urls.len());
    for url in urls {
        let start = Instant::now();
        let response = http
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.expect("body");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

async fn run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .expect("store");
    let seeding = Instant::now();
    seed(&store).await;
    eprintln!(
        "seeded {CASES} open cases in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let now = Utc::now();
    let reviewer = accounts::add_reviewer(
        &store,
        "bench@anumi.example",
        "bench password 123",
        ReviewerRole::Reviewer,
        now,
    )
    .await
    .expect("reviewer");
    let secret = auth::new_secret();
    let mut tx = store.begin().await.expect("transaction");
    tx.create_session(
        &NewSession {
            id_hash: &auth::digest(&secret),
            reviewer_id: reviewer.id,
            csrf_token: &auth::new_secret(),
            expires_at: now + Duration::hours(8),
        },
        now,
    )
    .await
    .expect("session");
    tx.commit().await.expect("commit");
    let mut settings = Settings::default();
    settings.web.secure_cookies = false;
    let state = WebState::new(store.clone(), Arc::new(settings)).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(web::serve(
        listener,
        state,
        tokio_util::sync::CancellationToken::new(),
    ));
    let http = reqwest::Client::new();
    let cookie = format!("{}={secret}", auth::SESSION_COOKIE);

    let queue: Vec<String> = (0..SAMPLES).map(|_| format!("{base}/")).collect();
    let filtered: Vec<String> = (0..SAMPLES)
        .map(|i| format!("{base}/?category=no_resemblance&offset={}", (i % 20) * 50))
        .collect();
    let search: Vec<String> = (0..SAMPLES)
        .map(|i| format!("{base}/?q=ANUMI-AAAAAAAA-{:04}", i % 1000))
        .collect();
    let cases: Vec<String> = (0..SAMPLES)
        .map(|i| format!("{base}/cases/R-{}", 1 + (i as i64 * 7919) % CASES))
        .collect();
    // Warm up connections and caches.
    measure(&http, &cookie, &queue[..20]).await;
    for (name, urls) in [
        ("queue page", &queue),
        ("queue, filtered + paged", &filtered),
        ("queue, order search", &search),
        ("case page", &cases),
    ] {
        let (p50, p99) = measure(&http, &cookie, urls).await;
        println!(
            "{name:<26} p50 {p50:6.2} ms   p99 {p99:6.2} ms   ({} requests, {CASES} open cases)",
            urls.len()
        );
    }
}
