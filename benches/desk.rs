//! The desk at scale: 100,000 cases over 100 days (1,000 a day; about
//! 10,000 still open, the rest decided by the engine or a reviewer), each
//! with its customer's message — English plain text, German in base64,
//! French in quoted-printable — its reply, refunds and credits. Measures,
//! over HTTP on loopback like a reviewer's browser:
//!
//! - the overview page (`/overview`: today and the last 30 days, and the
//!   last 90 days), target under 100 ms;
//! - the queue's search for a customer's name, a word found in a few
//!   messages, a word inside the German base64 bodies (a third of all
//!   messages), an invoice number, an address and a case tag, target p99
//!   under 50 ms;
//! - the queue's first page, for comparison with `benches/console.rs`.
//!
//! SQLite by default; `DESK_BENCH_PG=1` runs it on a fresh PostgreSQL
//! database at `REFUNDD_TEST_PG`. `DESK_CASES=N` for a quick run. Run with
//! `cargo bench --bench desk`.

use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;
use std::time::Instant;

use refundd::config::Settings;
use refundd::domain::{
    Action, Category, Clause, CreditReason, Decision, Flag, Language, Outcome, ReplyKind, TraceStep,
};
use refundd::queue::lifecycle::{Opening, Transition};
use refundd::store::{ActionStatus, NewMessage, NewReply, ReviewerRole, Store};
use refundd::web::{self, WebState, auth};

const WALLETS: i64 = 2_000;
const DAYS: i64 = 100;
/// Review and needs_info cases younger than this are still open.
const OPEN_DAYS: i64 = 50;
const SAMPLES: usize = 200;

const SURNAMES: [&str; 20] = [
    "Lindqvist",
    "Okonkwo",
    "Brennan",
    "Takahashi",
    "Moreau",
    "Schäfer",
    "Novak",
    "Haddad",
    "Castillo",
    "Fitzgerald",
    "Kowalczyk",
    "Delacroix",
    "Ivanova",
    "Achterberg",
    "Mbeki",
    "Rossi",
    "Sørensen",
    "Vasquez",
    "Yilmaz",
    "Oyelaran",
];
/// Words a customer might use; each message takes a few.
const WORDS: [&str; 24] = [
    "portrait",
    "ghibli",
    "watercolour",
    "anime",
    "wedding",
    "birthday",
    "passport",
    "grandmother",
    "puppy",
    "sunset",
    "vintage",
    "pixel",
    "sketch",
    "charcoal",
    "comic",
    "oilpaint",
    "neon",
    "pastel",
    "cyberpunk",
    "baroque",
    "origami",
    "mosaic",
    "silhouette",
    "graffiti",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap()
}

fn order_id(w: i64) -> String {
    format!("00000000-0000-4000-8000-{w:012}")
}

fn name(w: i64) -> String {
    format!("Kim {}{}", SURNAMES[(w % 20) as usize], w / 20)
}

/// The customer's mail: one of three languages and transfer encodings.
fn mail(n: i64, w: i64, received: DateTime<Utc>) -> Vec<u8> {
    let words: Vec<&str> = (0..4)
        .map(|k| WORDS[((n * 7 + k * 5) % WORDS.len() as i64) as usize])
        .collect();
    // A word only a handful of messages carry.
    let rare = format!("zeta{}", n % 20_000);
    let invoice = format!("ANUMI-AAAAAAAA-{w:04}");
    let head = format!(
        "From: \"{}\" <c{w}@example.com>\r\nTo: refunds@anumi.example\r\nMessage-ID: <m{n}@mail.example>\r\n\
         Date: {}\r\nMIME-Version: 1.0\r\n",
        name(w),
        received.to_rfc2822()
    );
    match n % 3 {
        0 => format!(
            "{head}Subject: Refund request for {invoice}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Hello,\r\n\r\nI bought {invoice} for a {} {} and it does not look like me at all ({rare}).\r\n\
             Could I get my money back? The {} one was fine.\r\n\r\nThanks,\r\n{}\r\n",
            words[0], words[1], words[2], name(w)
        )
        .into_bytes(),
        1 => {
            let body = format!(
                "Guten Tag,\r\n\r\nich möchte eine Rückerstattung für {invoice}: das {} Porträt ({}, {rare}) \
                 ist völlig missraten.\r\n\r\nMit freundlichen Grüßen\r\n{}\r\n",
                words[0],
                words[3],
                name(w)
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
            let lines: String = encoded
                .as_bytes()
                .chunks(76)
                .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
                .collect();
            format!(
                "{head}Subject: =?utf-8?q?R=C3=BCckerstattung?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{lines}"
            )
            .into_bytes()
        }
        _ => format!(
            "{head}Subject: Demande de remboursement\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Bonjour,\r\n\r\nJe voudrais =EAtre rembours=E9e pour {invoice} : le portrait {} ne me ressemble pas ({rare}).\r\n\
             Cordialement,\r\n{}\r\n",
            words[1],
            name(w)
        )
        .into_bytes(),
    }
}

fn decision(n: i64, w: i64, outcome: Outcome) -> Decision {
    let category = [
        Category::CashRefund,
        Category::NoResemblance,
        Category::FailedGeneration,
        Category::WrongStyle,
        Category::Subjective,
        Category::Other,
    ][(n % 6) as usize];
    let actions = match outcome {
        // One cash refund per order (the ledger allows no more); the rest
        // are credits.
        Outcome::Approved if n < WALLETS => vec![Action::CashRefund {
            order_id: order_id(w),
            amount: 900,
            currency: "EUR".into(),
        }],
        Outcome::Approved => vec![Action::WalletCredit {
            wallet_id: format!("w{w}"),
            credits: 1 + n % 3,
            reason: if n % 2 == 0 {
                CreditReason::Courtesy
            } else {
                CreditReason::FailedGeneration
            },
            generation_id: None,
        }],
        _ => vec![],
    };
    Decision {
        outcome,
        category,
        flags: [Flag::SenderUnverified].into_iter().collect(),
        actions,
        trace: vec![TraceStep {
            clause: Clause::Auth,
            finding: "decided for the benchmark".into(),
            facts: vec![],
        }],
        reply: ReplyKind::ReviewAcknowledged,
        order_id: Some(order_id(w)),
        wallet_id: Some(format!("w{w}")),
        generation_id: None,
        reply_facts: Default::default(),
    }
}

/// Outcomes in the desk's proportions (55 % approved, 20 % to a person),
/// mixed so that every wallet has cases of every kind.
fn outcome_of(n: i64) -> Outcome {
    match (n * 37 + n / WALLETS) % 20 {
        0..=10 => Outcome::Approved,
        11..=12 => Outcome::Denied,
        13..=15 => Outcome::Review,
        16 => Outcome::NeedsInfo,
        17..=18 => Outcome::Answered,
        _ => Outcome::Ignored,
    }
}

async fn seed(store: &Store, settings: &Settings, cases: i64) {
    let mut ledger = String::new();
    for w in 0..WALLETS {
        ledger.push_str(&format!(
            "{{\"type\":\"wallet\",\"id\":\"w{w}\",\"email\":\"c{w}@example.com\",\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:00Z\"}}\n\
             {{\"type\":\"order\",\"id\":\"{}\",\"wallet\":\"w{w}\",\"product\":\"Starter 50\",\"credits\":50,\"amount\":900,\"currency\":\"EUR\",\"invoice_number\":\"ANUMI-AAAAAAAA-{w:04}\",\"created_at\":\"2026-01-02T10:00:00Z\"}}\n",
            order_id(w)
        ));
    }
    refundd::store::import_jsonl(store, ledger.as_bytes(), |_| {})
        .await
        .expect("ledger");
    let lifecycle = settings.lifecycle();
    let span = Duration::days(DAYS).num_seconds();
    let started = Instant::now();
    const BATCH: i64 = 1_000;
    for batch in 0..(cases + BATCH - 1) / BATCH {
        let range = batch * BATCH..((batch + 1) * BATCH).min(cases);
        // Messages first, each stored (and indexed) as ingest does; the
        // case transaction below holds SQLite's write lock.
        let mut stored = Vec::new();
        for n in range.clone() {
            let w = n % WALLETS;
            let received = now() - Duration::seconds(span * (cases - 1 - n) / cases + 60);
            let raw = mail(n, w, received);
            let id = store
                .insert_message(&NewMessage {
                    message_id: Some(format!("m{n}@mail.example")),
                    sha256: format!("{n:064}"),
                    raw,
                    received_at: received,
                    source: "bench".into(),
                })
                .await
                .expect("message")
                .id();
            stored.push((n, w, id, received));
        }
        let mut tx = store.begin().await.expect("tx");
        for (n, w, message, received) in stored {
            let outcome = outcome_of(n);
            let decided = received + Duration::minutes(n % 15);
            let open = matches!(outcome, Outcome::Review | Outcome::NeedsInfo);
            let deadline = open.then(|| lifecycle.deadline_from(received));
            let state = tx
                .apply_transition(&Transition::opened(
                    Opening {
                        sender: format!("c{w}@example.com"),
                        subject: format!("Refund request {n}"),
                        language: [Language::En, Language::De, Language::Fr][(n % 3) as usize],
                    },
                    decision(n, w, outcome),
                    deadline,
                    decided,
                ))
                .await
                .expect("case");
            tx.attach_message(message, state.id).await.expect("attach");
            if outcome != Outcome::Ignored {
                let reply = tx
                    .enqueue_reply(&NewReply {
                        case_id: state.id,
                        message_id: format!("r{n}@refundd.anumi.example"),
                        to_addr: format!("c{w}@example.com"),
                        subject: format!("Re: Refund request {n}"),
                        raw: b"Subject: Re\r\n\r\nThank you.\r\n".to_vec(),
                        at: decided,
                    })
                    .await
                    .expect("reply");
                tx.mark_reply_sent(reply, decided).await.expect("sent");
            }
            if outcome == Outcome::Approved && n < WALLETS {
                let key = refundd::store::refund_key(state.id, &order_id(w));
                tx.set_action_status(
                    &key,
                    ActionStatus::Done,
                    Some("polar"),
                    decided + Duration::hours(1),
                )
                .await
                .expect("refund paid");
            }
            // Older review cases were answered by a reviewer, most in time.
            let age = now() - received;
            if open && age > Duration::days(OPEN_DAYS) {
                let at = received + Duration::hours(if n % 10 == 0 { 80 } else { 20 });
                let mut denied = decision(n, w, Outcome::Denied);
                denied.reply = ReplyKind::SubjectiveDenied;
                let reviewed = lifecycle
                    .reviewed(state, denied, "rita@anumi.example", false, at)
                    .expect("reviewed");
                tx.apply_transition(&reviewed).await.expect("review");
            }
        }
        tx.commit().await.expect("commit");
        if batch % 10 == 9 {
            eprintln!(
                "  {} cases in {:.0} s",
                range.end,
                started.elapsed().as_secs_f64()
            );
        }
    }
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

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cases: i64 = std::env::var("DESK_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, backend) = if std::env::var("DESK_BENCH_PG").as_deref() == Ok("1") {
        use sqlx::Connection;
        let base = std::env::var("REFUNDD_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("refundd_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
            .await
            .expect("PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        (format!("{base}/{name}"), "PostgreSQL")
    } else {
        (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            "SQLite",
        )
    };
    let store = Store::connect(&url).await.expect("store");
    let mut settings = Settings::default();
    settings.web.secure_cookies = false;
    settings.calendar.time_zone = chrono_tz::Europe::Berlin;
    let seeding = Instant::now();
    seed(&store, &settings, cases).await;
    let open = store.queue_gauges().await.expect("gauges");
    eprintln!(
        "seeded {cases} cases ({} open) on {backend} in {:.0} s",
        open.in_review + open.needs_info,
        seeding.elapsed().as_secs_f64()
    );
    if backend == "PostgreSQL" {
        // What autovacuum does within a minute of a bulk load: statistics
        // for the planner and a visibility map for index-only scans.
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
        sqlx::query("VACUUM ANALYZE")
            .execute(&mut conn)
            .await
            .expect("vacuum");
    }

    let reviewer = refundd::web::accounts::add_reviewer(
        &store,
        "bench@anumi.example",
        "bench password 123",
        ReviewerRole::Reviewer,
        now(),
    )
    .await
    .expect("reviewer");
    let secret = auth::new_secret();
    let mut tx = store.begin().await.expect("transaction");
    tx.create_session(
        &refundd::store::NewSession {
            id_hash: &auth::digest(&secret),
            reviewer_id: reviewer.id,
            csrf_token: &auth::new_secret(),
            expires_at: now() + Duration::days(3650),
        },
        now(),
    )
    .await
    .expect("session");
    tx.commit().await.expect("commit");
    let state =
        WebState::with_clock(store.clone(), Arc::new(settings), Arc::new(now)).expect("state");
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

    let repeat =
        |path: &str, n: usize| -> Vec<String> { (0..n).map(|_| format!("{base}{path}")).collect() };
    let varied = |f: &dyn Fn(usize) -> String| -> Vec<String> {
        (0..SAMPLES).map(|i| format!("{base}{}", f(i))).collect()
    };
    // Warm up connections and caches.
    measure(&http, &cookie, &repeat("/", 20)).await;
    measure(&http, &cookie, &repeat("/overview", 5)).await;
    let last_case = cases;
    let pages: Vec<(&str, Vec<String>)> = vec![
        ("overview (today + 30 days)", repeat("/overview", 50)),
        (
            "overview (today + 90 days)",
            repeat("/overview?days=90", 20),
        ),
        ("queue, first page", repeat("/", SAMPLES)),
        (
            "search: a customer's name",
            varied(&|i| format!("/?q={}{}", SURNAMES[i % 20], i % 100)),
        ),
        (
            "search: a rare word",
            varied(&|i| format!("/?q=zeta{}", (i * 97) % 20_000)),
        ),
        (
            "search: words in base64 bodies",
            varied(&|i| format!("/?q=R%C3%BCckerstattung+{}", WORDS[i % WORDS.len()])),
        ),
        (
            "search: one common word",
            varied(&|i| format!("/?q={}", WORDS[i % WORDS.len()])),
        ),
        (
            "search: an invoice number",
            varied(&|i| format!("/?q=ANUMI-AAAAAAAA-{:04}", (i * 13) % WALLETS as usize)),
        ),
        (
            "search: an address",
            varied(&|i| format!("/?q=c{}%40example.com", (i * 17) % WALLETS as usize)),
        ),
        (
            "search: a case tag",
            varied(&|i| format!("/?q=R-{}", last_case - (i as i64 * 37) % 5_000)),
        ),
    ];
    for (name, urls) in &pages {
        let (p50, p99) = measure(&http, &cookie, urls).await;
        println!(
            "{name:<32} p50 {p50:7.2} ms   p99 {p99:7.2} ms   ({} requests, {cases} cases, {backend})",
            urls.len()
        );
    }
    let hits = |q: &str| {
        let store = store.clone();
        let q = q.to_owned();
        async move {
            store
                .queue(&refundd::store::QueueFilter {
                    search: Some(q),
                    ..Default::default()
                })
                .await
                .expect("search")
                .total
        }
    };
    eprintln!(
        "open cases found: name {}, rare word {}, base64 words {}, common word {}, invoice {}",
        hits("Lindqvist0").await,
        hits("zeta97").await,
        hits("Rückerstattung portrait").await,
        hits("portrait").await,
        hits("ANUMI-AAAAAAAA-0013").await,
    );
}
