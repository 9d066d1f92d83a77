//! The console in a real browser: headless Chromium driven through
//! chromedriver (both Debian packages, started by the test on free ports).
//! A reviewer signs in, opens the oldest case with Enter, approves it with
//! `a` and sends with Enter — three keys — and the customer's reply goes
//! out (the outbox writes it). A case whose email carries `<script>` and
//! `onerror=` payloads in its subject, HTML body, sender name and
//! attachment name executes nothing: the payloads would set
//! `window.__pwned`, change the title or call a canary listener on
//! loopback, and none of that happens. The overview page draws its charts
//! in the browser under the console's strict Content-Security-Policy.
//! An admin replays a month of stored mail against a candidate policy on
//! the "Before going live" page, and the self-contained HTML report of
//! `refundd replay --html` draws its charts offline under its own
//! `default-src 'none'` policy. Screenshots of the queue, a case, the
//! overview and both replay views go to `examples/screenshots/` for the
//! README.

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use refundd::domain::Category;
use refundd::pipeline::outbox;
use refundd::reply::FileSink;
use refundd::store::ReplyStatus;

use crate::console::{BEN_ORDER, Console, PASSWORD, mail, now, seed_case};
use crate::overview::{a_month_of_mail, desk_settings};
use crate::replay::{DEMO_AUTHSERV_ID, DemoDesk, case_of, window};
use crate::support::{TestDb, repo};
use refundd::pipeline::review::{ReviewChoice, ReviewDesk, ReviewRequest};

const ENTER: char = '\u{E007}';

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_binary(names: &[&str]) -> String {
    for name in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let path = format!("{dir}/{name}");
            if std::path::Path::new(&path).exists() {
                return path;
            }
        }
    }
    panic!("none of {names:?} is installed: apt-get install chromium chromium-driver");
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(find_binary(&["chromedriver"]))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // Poll readiness: the port accepts connections once chromedriver listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": find_binary(&["chromium", "chromium-browser"]),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn press(client: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

/// Signs in as Rita, a reviewer, and waits for the queue.
async fn sign_in(client: &Client, base: &str) {
    sign_in_as(client, base, "rita@anumi.example").await;
}

/// Signs in through the login form and waits for the queue.
async fn sign_in_as(client: &Client, base: &str, email: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    client
        .find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, "body[data-page=queue]").await;
}

/// The text of the first element `css` finds.
async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn wait_for(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"));
}

/// A loopback listener that counts connections: the payloads call it.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

#[tokio::test]
async fn a_reviewer_sends_a_reply_in_three_keys_and_hostile_mail_runs_nothing() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let (canary_port, hits) = canary().await;
    let canary = format!("http://127.0.0.1:{canary_port}");

    let oldest = seed_case(
        &console.store,
        "ben@example.com",
        Some(BEN_ORDER),
        Category::CashRefund,
        mail("ben@example.com", "Ben Ito", "Refund for my Pro pack", "Hello, I bought the Pro pack by mistake (ANUMI-BBBBBBBB-0001) and have not used it. Could I get a refund?\n\nThanks, Ben", None, None),
        11,
    )
    .await;
    let hostile_raw = mail(
        "ann@example.com",
        &format!("<img src=x onerror=window.__pwned=1;fetch('{canary}/name')>"),
        &format!(
            "<script>document.title='PWNED';window.__pwned=2;fetch('{canary}/subject')</script>"
        ),
        &format!("<script>window.__pwned=3;fetch('{canary}/text')</script>"),
        Some(&format!(
            "<p>see <b>this</b></p><script>window.__pwned=4;fetch('{canary}/html')</script>\
             <img src=\"{canary}/remote.png\" onerror=\"window.__pwned=5\">\
             <a href=\"javascript:window.__pwned=6\">link</a><svg onload=\"window.__pwned=7\"></svg>\
             <div style=\"background:url({canary}/css)\">styled</div>"
        )),
        Some(&format!(
            "\\\"><img src=x onerror=window.__pwned=8;fetch('{canary}/file')>.png"
        )),
    );
    let hostile = seed_case(
        &console.store,
        "ann@example.com",
        None,
        Category::Other,
        hostile_raw,
        14,
    )
    .await;

    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let base = console.base.clone();

    sign_in(&client, &base).await;
    wait_for(&client, "body[data-page=queue] tr.selected").await;
    let screenshots = repo().join("examples/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    std::fs::write(
        screenshots.join("queue.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // 1: Enter opens the oldest case.
    press(&client, ENTER).await;
    wait_for(&client, "body[data-page=case]").await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with(&format!("/cases/{oldest}"))
    );
    std::fs::write(
        screenshots.join("case.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    // 2: `a` approves as proposed and opens the confirmation with the reply.
    press(&client, 'a').await;
    wait_for(&client, "body[data-page=confirm]").await;
    let reply = text_of(&client, "#reply").await;
    assert!(
        reply.contains("15.00"),
        "the reply quotes the refund: {reply}"
    );
    // 3: Enter sends.
    press(&client, ENTER).await;
    wait_for(&client, "#flash").await;

    let sink_dir = tempfile::tempdir().unwrap();
    let report = outbox::deliver_queued(
        &console.store,
        &FileSink::new(sink_dir.path()),
        &refundd::config::Settings::default().lifecycle(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 1);
    let replies = console.store.replies_for_case(oldest).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, ReplyStatus::Sent);
    assert_eq!(replies[0].to_addr, "ben@example.com");
    let files: Vec<_> = std::fs::read_dir(sink_dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "the reply went out to the outbox");
    let audit = console.store.audit_log(Some(oldest), 10).await.unwrap();
    assert_eq!(audit[0].actor, "reviewer:rita@anumi.example");

    // The hostile case: everything is shown, nothing runs.
    client
        .goto(&format!("{base}/cases/{hostile}"))
        .await
        .unwrap();
    wait_for(&client, "body[data-page=case]").await;
    let subject = text_of(&client, "article.message .subject").await;
    assert!(
        subject.starts_with("<script>document.title='PWNED'"),
        "the subject is shown as text: {subject}"
    );
    let name = text_of(&client, "article.message .from-name").await;
    assert!(
        name.starts_with("<img src=x onerror="),
        "the sender name is shown as text: {name}"
    );
    let file = text_of(&client, ".attachment-name").await;
    assert!(
        file.contains("onerror=window.__pwned=8"),
        "the attachment name is shown as text: {file}"
    );
    // Let any image, script or style request settle before looking.
    client
        .execute("return new Promise(r => setTimeout(r, 300))", vec![])
        .await
        .unwrap();
    let state = client
        .execute("return [document.title, typeof window.__pwned, document.querySelectorAll('.html-body img, .html-body script, .html-body svg').length]", vec![])
        .await
        .unwrap();
    assert_eq!(state[0], format!("{hostile} · refundd"));
    assert_eq!(state[1], "undefined", "no payload ran");
    assert_eq!(state[2], 0, "no image, script or svg survived sanitizing");
    let links = client.execute("return Array.from(document.querySelectorAll('.html-body a')).map(a => a.getAttribute('href'))", vec![]).await.unwrap();
    assert!(!links.to_string().contains("javascript:"), "{links}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing called the canary");

    client.close().await.unwrap();
}

#[tokio::test]
async fn the_overview_draws_its_charts_in_the_browser_without_scripts_from_anywhere() {
    let db = TestDb::sqlite();
    let settings = desk_settings();
    let console = Console::start_with(&db, {
        let settings = settings.clone();
        move |s: &mut refundd::config::Settings| *s = settings
    })
    .await;
    a_month_of_mail(&console.store, &Arc::new(settings)).await;

    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    sign_in(&client, &console.base).await;
    client
        .find(Locator::Css("header.top a[href='/overview']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "body[data-page=overview] figure.chart svg").await;
    let drawn = client
        .execute(
            "return [document.querySelectorAll('figure.chart svg').length, \
                     document.querySelectorAll('figure.chart svg rect').length, \
                     Math.round(document.querySelector('figure.chart svg').getBoundingClientRect().width), \
                     document.querySelectorAll('[data-metric]').length]",
            vec![],
        )
        .await
        .unwrap();
    assert!(drawn[0].as_u64().unwrap() >= 5, "charts: {drawn}");
    assert!(
        drawn[1].as_u64().unwrap() >= 60,
        "columns and bars: {drawn}"
    );
    assert!(
        drawn[2].as_u64().unwrap() >= 500,
        "a chart has its size: {drawn}"
    );
    assert!(drawn[3].as_u64().unwrap() >= 20, "numbers: {drawn}");
    // Tall enough for the whole page, charts included.
    client.set_window_size(1400, 1900).await.unwrap();
    let screenshots = repo().join("examples/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    std::fs::write(
        screenshots.join("overview.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    client.close().await.unwrap();
    console.shutdown.cancel();
}

/// Counts what a page drew and whether anything failed to load: every
/// `<img>`, stylesheet or script the page asked for shows up in the
/// Resource Timing list, and a self-contained page asks for none.
const DRAWN: &str = "return [document.querySelectorAll('svg').length, \
     document.querySelectorAll('svg rect').length, \
     performance.getEntriesByType('resource').length]";

#[tokio::test]
async fn an_admin_replays_a_candidate_and_the_html_report_draws_offline() {
    // The demo's story, decided and paid, and a reviewer who denies
    // Ivan's statutory claim where the engine asks a person.
    let desk = DemoDesk::play(TestDb::sqlite()).await;
    let console = Console::start_on(&desk.db, "", |s| {
        s.sender_auth.trusted_authserv_ids = vec![DEMO_AUTHSERV_ID.into()];
    })
    .await;
    let ivan = case_of(&desk.store, "ivan.cra@example.co.uk").await;
    let version = desk.store.case(ivan).await.unwrap().unwrap().version;
    ReviewDesk::new(desk.store.clone(), desk.settings.clone())
        .unwrap()
        .apply_reviewer_decision(
            &ReviewRequest {
                case_id: ivan,
                expected_version: version,
                reviewer: "rita@anumi.example".into(),
                admin: false,
                choice: ReviewChoice::Deny {
                    reason: "window_expired".into(),
                },
                personal_note: None,
            },
            now(),
        )
        .await
        .unwrap();
    // What the library reports for a 3-day window: the page must say the
    // same.
    let candidate = window(&desk.settings, 3);
    let expected = refundd::replay::replay(
        &desk.store,
        &desk.settings,
        Some(&candidate),
        refundd::replay::Source::Stored(refundd::store::ReplayScope::default()),
        &refundd::progress::NoProgress,
    )
    .await
    .unwrap();
    // Ann's and Ben's refunds become too late, Kim's question goes away.
    assert_eq!(expected.changed.len(), 3, "{:#?}", expected.changed);
    assert!(expected.drift.is_empty(), "{:#?}", expected.drift);
    assert_eq!(expected.agreement.disagree.len(), 1);

    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    sign_in_as(&client, &console.base, "ada@anumi.example").await;
    client
        .find(Locator::Css("header.top a[href='/admin/replay']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "body[data-page=replay] #replay-form").await;
    client
        .find(Locator::Css("#replay-form textarea[name=candidate]"))
        .await
        .unwrap()
        .send_keys(&format!(
            "[policy]\nrefund_window_days = 3\n[sender_auth]\ntrusted_authserv_ids = [\"{DEMO_AUTHSERV_ID}\"]\n"
        ))
        .await
        .unwrap();
    client
        .find(Locator::Css("#replay-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "#replay-summary").await;
    let summary = text_of(&client, "#replay-summary").await;
    assert!(
        summary.contains(&format!("{} messages decided", expected.decided)),
        "{summary}"
    );
    assert!(summary.contains("drift: 0"), "{summary}");
    let changed = client
        .execute(
            "return Array.from(document.querySelectorAll('#changed tbody tr td:first-child')).map(td => td.textContent)",
            vec![],
        )
        .await
        .unwrap();
    let mut shown: Vec<String> = serde_json::from_value(changed).unwrap();
    let mut want: Vec<String> = expected
        .changed
        .iter()
        .map(|c| c.case.expect("stored mail names its case").to_string())
        .collect();
    shown.sort();
    want.sort();
    assert_eq!(shown, want);
    let delta = text_of(&client, "#money-delta").await;
    assert!(
        delta.starts_with("+14.60 EUR"),
        "+29.00 −9.00 −5.40 EUR: {delta}"
    );
    let disagree = text_of(&client, "#disagree tbody").await;
    assert!(disagree.contains(&ivan.to_string()), "{disagree}");
    let screenshots = repo().join("examples/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    client.set_window_size(1400, 1300).await.unwrap();
    std::fs::write(
        screenshots.join("replay-console.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // The report `refundd replay --html` writes, opened from disk.
    let page = tempfile::Builder::new().suffix(".html").tempfile().unwrap();
    std::fs::write(page.path(), refundd::replay::to_html(&expected)).unwrap();
    client
        .goto(&format!("file://{}", page.path().display()))
        .await
        .unwrap();
    wait_for(&client, "figure svg").await;
    let drawn = client.execute(DRAWN, vec![]).await.unwrap();
    assert!(drawn[0].as_u64().unwrap() >= 2, "charts: {drawn}");
    assert!(drawn[1].as_u64().unwrap() >= 4, "bars: {drawn}");
    assert_eq!(drawn[2].as_u64().unwrap(), 0, "nothing loaded: {drawn}");
    let width = client
        .execute(
            "return Math.round(document.querySelector('figure svg').getBoundingClientRect().width)",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap() >= 300,
        "a chart has its size: {width}"
    );
    let text = text_of(&client, "body").await;
    for case in &want {
        assert!(text.contains(case.as_str()), "{case} is listed");
    }
    std::fs::write(
        screenshots.join("replay-report.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    client.close().await.unwrap();
    console.shutdown.cancel();
    desk.sim.shutdown().await;
}
