//! Operators own the words, through the `refundd` binary: a template
//! replaced in `[reply] templates_dir` is checked by `refundd templates
//! check` (a broken one named with file and line, and refused by
//! `refundd run`), reloaded by a running daemon on SIGHUP (the next reply
//! uses it; a broken change leaves the old one in use), and customers are
//! told dates in `[calendar] time_zone`.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestDb, refundd, write_mail};

/// A desk with a config file, a Maildir, an outbox and a templates_dir.
struct Desk {
    dir: tempfile::TempDir,
    config: PathBuf,
    web_port: u16,
    _db: TestDb,
}

impl Desk {
    /// `extra` is appended to the config (e.g. `[calendar]`).
    fn new(extra: &str) -> Desk {
        let db = TestDb::sqlite();
        let dir = tempfile::tempdir().unwrap();
        let web_port = crate::mailstack::free_port();
        std::fs::create_dir_all(dir.path().join("Maildir/new")).unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        let config = dir.path().join("refundd.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n\
                 [outbox]\ndir = \"{outbox}\"\n\
                 [sender_auth]\ntrusted_authserv_ids = [\"mx.anumi.example\"]\n\
                 [reply]\ntemplates_dir = \"templates\"\nmax_replies_per_hour = 100\n\
                 [daemon]\nmaildir = \"{maildir}\"\npoll_interval = 1\nmax_backoff = 1\n\
                 [web]\nlisten = \"127.0.0.1:{web_port}\"\nsecure_cookies = false\n{extra}",
                url = db.url,
                outbox = dir.path().join("outbox").display(),
                maildir = dir.path().join("Maildir").display(),
            ),
        )
        .unwrap();
        Desk {
            dir,
            config,
            web_port,
            _db: db,
        }
    }

    /// Writes `{lang}/{file}` into the templates_dir; returns its path.
    fn template(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("templates").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn maildir_new(&self) -> PathBuf {
        self.dir.path().join("Maildir/new")
    }

    /// The replies written to the outbox, as text.
    fn outbox(&self) -> Vec<String> {
        match std::fs::read_dir(self.dir.path().join("outbox")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The plain-text part of the reply to `to`, once it is in the outbox.
    fn reply_text_to(&self, to: &str) -> Option<String> {
        self.outbox().into_iter().find_map(|raw| {
            let mail = mail_parser::MessageParser::new().parse(raw.as_bytes())?;
            let addressed = mail
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .is_some_and(|a| a == to);
            addressed.then(|| mail.body_text(0).unwrap_or_default().into_owned())
        })
    }

    fn start(&self) -> Child {
        let log = std::fs::File::create(self.log_path()).unwrap();
        Command::new(env!("CARGO_BIN_EXE_refundd"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "refundd=info")
            .env_remove("REFUNDD_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("refundd.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// A mail from someone the ledger does not know: answered with
/// `unknown_sender` (English).
fn stranger_mail(maildir_new: &Path, n: usize) -> String {
    let from = format!("stranger{n}@example.com");
    let raw = format!(
        "Authentication-Results: mx.anumi.example; dmarc=pass header.from=example.com\r\n\
         From: Stranger {n} <{from}>\r\nTo: refunds@anumi.example\r\nSubject: Refund\r\n\
         Date: Fri, 05 Jun 2026 17:30:00 +0000\r\nMessage-ID: <stranger.{n}@example.com>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello, I would like a refund please.\r\n"
    );
    write_mail(
        &maildir_new.join(format!("stranger-{n}.eml")),
        raw.as_bytes(),
        "2026-06-05T17:30:00Z".parse().unwrap(),
    );
    from
}

/// Polls `check` every 50 ms until it holds or `within` passes.
fn wait_until(within: Duration, what: &str, desk: &Desk, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}\n--- refundd log ---\n{}",
            desk.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const UNKNOWN_SENDER: &str = "en/unknown_sender.txt";

#[test]
fn templates_check_names_a_broken_override_by_file_and_line_and_refundd_run_refuses_it() {
    let desk = Desk::new("");
    let file = desk.template(
        UNKNOWN_SENDER,
        "We found no account for your address.\n\n\
         Please write again{% if order_reference %} about {{ order_reference }}{% endif %} \
         from the address you bought with.\n",
    );

    let good = refundd(&desk.config, &["templates", "check"]);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.contains("ok "), "{stdout}");

    // Line 3 prints a fact a reply to a stranger never has, unguarded.
    std::fs::write(
        &file,
        "We found no account for your address.\n\nAbout {{ order_reference }}: \
         please write again from the address you bought with.\n",
    )
    .unwrap();
    let broken = refundd(&desk.config, &["templates", "check"]);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    let location = format!("{}:3:", file.display());
    assert!(stdout.contains(&location), "names {location}: {stdout}");
    assert!(stdout.contains("`order_reference`"), "{stdout}");

    // A syntax error is named the same way.
    std::fs::write(&file, "We found no account.\n{% if %}\n").unwrap();
    let syntax = refundd(&desk.config, &["templates", "check"]);
    let stdout = String::from_utf8_lossy(&syntax.stdout);
    assert_eq!(syntax.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("{}:2: syntax error", file.display())),
        "{stdout}"
    );

    // refundd run refuses to start: it reads no mail and says where.
    let from = stranger_mail(&desk.maildir_new(), 1);
    let mut child = desk.start();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("refundd run started with a broken template\n{}", desk.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = desk.log();
    assert!(log.contains(&format!("{}:2:", file.display())), "{log}");
    assert_eq!(
        std::fs::read_dir(desk.maildir_new()).unwrap().count(),
        1,
        "the mail was not read"
    );
    assert!(desk.reply_text_to(&from).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_good_change_for_the_next_reply_and_keeps_the_old_on_a_broken_one() {
    let desk = Desk::new("");
    let file = desk.template(UNKNOWN_SENDER, "Version one: write from your account.\n");
    let first = stranger_mail(&desk.maildir_new(), 1);
    let child = desk.start();
    wait_until(Duration::from_secs(30), "the first reply", &desk, || {
        desk.reply_text_to(&first).is_some()
    });
    let text = desk.reply_text_to(&first).unwrap();
    assert!(text.contains("Version one"), "{text}");

    // A reviewer's preview (the console's renderer) is how the test knows
    // the daemon has read the change; the next customer's reply must use
    // it too.
    let token = api_token(&desk).await;
    refundd::act::polar::install_crypto_provider();
    let http = reqwest::Client::new();
    let preview = || async {
        let response = http
            .post(format!(
                "http://127.0.0.1:{}/api/cases/R-1/preview",
                desk.web_port
            ))
            .bearer_auth(&token)
            .json(&serde_json::json!({"choice": {"action": "ask", "ask": "purchase_address"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        body["text"].as_str().unwrap().to_owned()
    };
    assert!(preview().await.contains("Version one"));

    std::fs::write(&file, "Version two: write from your account.\n").unwrap();
    hangup(&child);
    let start = Instant::now();
    while !preview().await.contains("Version two") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload the templates\n{}",
            desk.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = stranger_mail(&desk.maildir_new(), 2);
    wait_until(Duration::from_secs(30), "the second reply", &desk, || {
        desk.reply_text_to(&second).is_some()
    });
    let text = desk.reply_text_to(&second).unwrap();
    assert!(text.contains("Version two"), "{text}");
    assert!(!text.contains("Version one"), "{text}");

    // A broken change is refused; the daemon keeps answering with the
    // templates in use. (The log line only tells the test the signal was
    // handled; what is asserted is the mail.)
    std::fs::write(&file, "Version three {% if %}\n").unwrap();
    hangup(&child);
    wait_until(Duration::from_secs(20), "the refused reload", &desk, || {
        desk.log().contains("not reloaded")
    });
    let third = stranger_mail(&desk.maildir_new(), 3);
    wait_until(Duration::from_secs(30), "the third reply", &desk, || {
        desk.reply_text_to(&third).is_some()
    });
    let text = desk.reply_text_to(&third).unwrap();
    assert!(text.contains("Version two"), "{text}");
    assert!(preview().await.contains("Version two"));
    stop(child);
}

fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A reviewer and a bearer token, made in the daemon's database.
async fn api_token(desk: &Desk) -> String {
    let url = std::fs::read_to_string(&desk.config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("url = \"")?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .unwrap();
    let store = refundd::store::Store::connect(&url).await.unwrap();
    let now: DateTime<Utc> = Utc::now();
    let reviewer = refundd::web::accounts::add_reviewer(
        &store,
        "rita@anumi.example",
        "correct horse battery staple",
        refundd::store::ReviewerRole::Reviewer,
        now,
    )
    .await
    .unwrap();
    refundd::web::accounts::create_api_token(
        &store,
        "cli",
        &reviewer,
        "test",
        chrono::Duration::days(1),
        now,
    )
    .await
    .unwrap()
    .token
}

#[test]
fn a_german_customer_reads_the_purchase_date_as_it_was_in_berlin() {
    // Bought at 00:30 Berlin time on 1 June, which is still 31 May in UTC.
    let desk = Desk::new("[calendar]\ntime_zone = \"Europe/Berlin\"\n");
    let ledger = desk.dir.path().join("ledger.jsonl");
    std::fs::write(
        &ledger,
        "{\"type\":\"wallet\",\"id\":\"w_lena\",\"email\":\"lena@example.de\",\"status\":\"active\",\"created_at\":\"2026-05-01T00:00:00Z\"}\n\
         {\"type\":\"order\",\"id\":\"5e0c1d2e-0000-4000-8000-00000000e001\",\"wallet\":\"w_lena\",\"product\":\"Starter 50\",\"credits\":50,\"amount\":900,\"currency\":\"EUR\",\"invoice_number\":\"ANUMI-LENAAAAA-0001\",\"created_at\":\"2026-05-31T22:30:00Z\"}\n",
    )
    .unwrap();
    let out = refundd(
        &desk.config,
        &["ledger", "import", ledger.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = "Authentication-Results: mx.anumi.example; dmarc=pass header.from=example.de\r\n\
               From: Lena Wagner <lena@example.de>\r\nTo: refunds@anumi.example\r\n\
               Subject: =?utf-8?q?R=C3=BCckerstattung?=\r\nDate: Tue, 30 Jun 2026 10:00:00 +0200\r\n\
               Message-ID: <lena.1@example.de>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
               Hallo,\r\n\r\nich möchte mein Geld für die Bestellung ANUMI-LENAAAAA-0001 zurück, \
               ich nutze den Dienst nicht mehr.\r\n\r\nViele Grüße\r\nLena\r\n";
    write_mail(
        &desk.maildir_new().join("lena.eml"),
        raw.as_bytes(),
        "2026-06-30T08:00:00Z".parse().unwrap(),
    );
    let maildir = desk.dir.path().join("Maildir");
    let out = refundd(
        &desk.config,
        &["process", "--maildir", maildir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = desk
        .reply_text_to("lena@example.de")
        .expect("a reply to Lena");
    assert!(
        text.contains("Diese Bestellung wurde am 1. Juni 2026 gekauft"),
        "the purchase day in Berlin, written in German: {text}"
    );
    assert!(!text.contains("31. Mai"), "{text}");
}

#[test]
fn the_example_configuration_and_its_deny_reason_templates_pass_the_check() {
    let out = refundd(
        &crate::support::repo().join("examples/refundd.toml"),
        &["templates", "check"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("deny_duplicate_order"), "{stdout}");
}
