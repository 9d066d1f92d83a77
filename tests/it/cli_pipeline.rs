//! End to end through the `refundd` binary: import the sample ledger,
//! process a Maildir of realistic mails (a duplicate delivery, an
//! out-of-office, a bounce, and a follow-up that supplies a missing order
//! ID), and check each case's outcome, actions, clauses and reply headers —
//! on SQLite and on PostgreSQL.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{TestDb, header_date, refundd, repo, write_mail};

struct Desk {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Desk {
    fn new(db: &TestDb) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("refundd.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[outbox]\ndir = \"{}\"\n[sender_auth]\ntrusted_authserv_ids = [\"mx.anumi.example\"]\n",
                db.url,
                dir.path().join("outbox").display()
            ),
        )
        .unwrap();
        Desk { dir, config }
    }

    fn maildir(&self) -> std::path::PathBuf {
        self.dir.path().join("Maildir")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = refundd(&self.config, args);
        assert!(
            out.status.success(),
            "refundd {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn cases(&self) -> Vec<Value> {
        serde_json::from_str(&self.run(&["cases", "--json"])).unwrap()
    }

    fn outbox(&self) -> Vec<mail_parser::Message<'static>> {
        let dir = self.dir.path().join("outbox");
        let mut mails = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            mails.push(
                mail_parser::MessageParser::new()
                    .parse(&bytes)
                    .unwrap()
                    .into_owned(),
            );
        }
        mails
    }
}

fn drop_demo_mail(maildir: &Path) {
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    let src = repo().join("examples/demo/mail");
    let mut n = 0;
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        write_mail(
            &maildir.join("new").join(path.file_name().unwrap()),
            &bytes,
            header_date(&bytes),
        );
        n += 1;
    }
    assert_eq!(n, 17, "the sample mails are all there");
}

/// Cases that are not ignored, by sender (Ann's out-of-office is ignored
/// and must not count as a second case of hers).
fn by_sender(cases: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in cases.iter().filter(|c| c["outcome"] != "ignored") {
        map.entry(c["from"].as_str().unwrap().to_owned())
            .or_default()
            .push(c.clone());
    }
    map
}

fn clauses(case: &Value) -> Vec<&str> {
    case["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

fn flags(case: &Value) -> Vec<&str> {
    case["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

async fn whole_desk(db: TestDb) {
    let desk = Desk::new(&db);
    let ledger = repo().join("examples/demo/ledger.jsonl");
    let imported = desk.run(&["ledger", "import", ledger.to_str().unwrap()]);
    assert!(imported.contains("rejected 0 lines"), "{imported}");

    drop_demo_mail(&desk.maildir());
    desk.run(&["process", "--maildir", desk.maildir().to_str().unwrap()]);

    let all = desk.cases();
    // 17 mails, one of them a duplicate delivery of Ann's request.
    assert_eq!(all.len(), 16);
    let cases = by_sender(&all);
    let one = |who: &str| -> &Value {
        let list = &cases[who];
        assert_eq!(list.len(), 1, "{who} has one case");
        &list[0]
    };

    let ann = one("ann@example.com");
    assert_eq!(ann["outcome"], "approved");
    assert_eq!(ann["actions"][0]["kind"], "cash_refund");
    assert_eq!(ann["actions"][0]["amount"], 900);
    assert_eq!(ann["actions"][0]["currency"], "EUR");
    assert_eq!(ann["order_id"], "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e");
    assert!(clauses(ann).contains(&"P2"));

    let ben = one("ben@example.net");
    assert_eq!(ben["outcome"], "approved");
    assert_eq!(ben["actions"][0]["amount"], 540, "floor(900 × 30 ÷ 50)");

    let cleo = one("cleo@example.org");
    assert_eq!(cleo["outcome"], "denied");
    assert!(clauses(cleo).contains(&"P4"));
    assert_eq!(cleo["actions"].as_array().unwrap().len(), 0);

    let dan = one("dan@example.com");
    assert_eq!(dan["outcome"], "approved");
    assert_eq!(dan["category"], "no_resemblance");
    assert_eq!(dan["actions"][0]["kind"], "wallet_credit");
    assert_eq!(dan["actions"][0]["credits"], 5);
    assert!(clauses(dan).contains(&"P3"));

    let eve = one("eve@example.de");
    assert_eq!(eve["outcome"], "needs_info");
    assert_eq!(eve["category"], "no_resemblance");

    let finn = one("finn@example.fr");
    assert_eq!(finn["outcome"], "approved");
    assert_eq!(finn["category"], "failed_generation");
    assert_eq!(finn["actions"][0]["credits"], 5);
    assert!(clauses(finn).contains(&"P1"));

    assert_eq!(one("gus@example.es")["outcome"], "denied");
    assert_eq!(one("gus@example.es")["category"], "subjective");
    assert_eq!(one("hana@example.com")["outcome"], "answered");
    assert_eq!(one("hana@example.com")["category"], "moderation_block");

    let ivan = one("ivan@example.co.uk");
    assert_eq!(ivan["outcome"], "review");
    assert!(flags(ivan).contains(&"statutory_rights"));
    assert!(clauses(ivan).contains(&"P7"));

    let kim = one("kim@example.com");
    assert_eq!(kim["outcome"], "needs_info");
    assert!(clauses(kim).contains(&"ID"));

    let tom = one("tom@example.com");
    assert_eq!(tom["outcome"], "denied");
    assert!(flags(tom).contains(&"terminated"));

    let lou = one("lou@example.com");
    assert_eq!(lou["outcome"], "review");
    assert!(flags(lou).contains(&"sender_mismatch"));
    assert_eq!(
        lou["order_id"],
        Value::Null,
        "nothing about Ann's order is attached to Lou's case"
    );

    assert_eq!(one("sam@example.com")["outcome"], "needs_info");
    assert_eq!(one("jo@example.com")["outcome"], "review");
    assert!(flags(one("jo@example.com")).contains(&"chargeback"));

    let ignored: Vec<_> = all.iter().filter(|c| c["outcome"] == "ignored").collect();
    assert_eq!(ignored.len(), 2, "the out-of-office and the bounce");
    assert!(ignored.iter().any(|c| flags(c).contains(&"auto_reply")));
    assert!(ignored.iter().any(|c| flags(c).contains(&"bounce")));

    // One threaded reply per case that is not ignored.
    let replies = desk.outbox();
    assert_eq!(replies.len(), 14);
    for reply in &replies {
        assert_eq!(
            reply.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert!(reply.message_id().is_some());
        assert!(
            reply.in_reply_to().as_text().is_some(),
            "threaded: {:?}",
            reply.subject()
        );
        assert!(
            reply.subject().unwrap().contains("[#R-"),
            "tagged: {:?}",
            reply.subject()
        );
        assert!(reply.body_html(0).is_some(), "has an HTML alternative");
    }
    let to_ann: Vec<_> = replies
        .iter()
        .filter(|r| r.to().unwrap().first().unwrap().address() == Some("ann@example.com"))
        .collect();
    assert_eq!(
        to_ann.len(),
        1,
        "the duplicate delivery got no second reply, the out-of-office none"
    );
    assert_eq!(
        to_ann[0].in_reply_to().as_text(),
        Some("CAFann0001@mail.example.com")
    );
    assert!(
        to_ann[0].body_text(0).unwrap().contains("9.00"),
        "the reply quotes the amount"
    );

    // Kim answers our question with the invoice number.
    let question = replies
        .iter()
        .find(|r| r.to().unwrap().first().unwrap().address() == Some("kim@example.com"))
        .unwrap();
    let follow_up = format!(
        "Authentication-Results: mx.anumi.example; dmarc=pass header.from=example.com\r\n\
         From: Kim <kim@example.com>\r\nTo: refunds@anumi.example\r\nSubject: Re: {}\r\n\
         Date: Sat, 06 Jun 2026 09:30:00 +0000\r\nMessage-ID: <kim.2@example.com>\r\n\
         In-Reply-To: <{id}>\r\nReferences: <kim.1@example.com> <{id}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe Pro 200 one: ANUMI-KLMNOPQA-0002\r\n",
        question.subject().unwrap().trim_start_matches("Re: "),
        id = question.message_id().unwrap(),
    );
    write_mail(
        &desk.maildir().join("new/kim-2.eml"),
        follow_up.as_bytes(),
        header_date(follow_up.as_bytes()),
    );
    desk.run(&["process", "--maildir", desk.maildir().to_str().unwrap()]);

    let after = by_sender(&desk.cases());
    assert_eq!(
        after["kim@example.com"].len(),
        1,
        "the follow-up joined Kim's case"
    );
    let kim = &after["kim@example.com"][0];
    assert_eq!(kim["outcome"], "approved");
    assert_eq!(
        kim["actions"][0]["order_id"],
        "6d1e2f3a-4b5c-4d6e-8f7a-910213243546"
    );
    assert_eq!(kim["actions"][0]["amount"], 2900);
    let replies = desk.outbox();
    assert_eq!(replies.len(), 15, "one more reply, for Kim");
    let new_maildir: Vec<_> = std::fs::read_dir(desk.maildir().join("new"))
        .unwrap()
        .collect();
    assert!(new_maildir.is_empty(), "every processed file moved to cur/");

    // A second pass over the same Maildir changes nothing.
    desk.run(&["process", "--maildir", desk.maildir().to_str().unwrap()]);
    assert_eq!(desk.cases().len(), 16);
    assert_eq!(desk.outbox().len(), 15);
}

#[tokio::test]
async fn the_sample_mailbox_is_decided_and_answered_on_sqlite() {
    whole_desk(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_sample_mailbox_is_decided_and_answered_on_postgres() {
    whole_desk(TestDb::postgres().await).await;
}

/// A ledger with only what the import contract requires: no tax, no
/// invoice or receipt number, and a refunded generation without its
/// (optional) `refunded_at`.
const MINIMAL_LEDGER: &str = r#"{"type":"wallet","id":"w_mia","email":"mia@example.com","status":"active","created_at":"2026-05-01T09:00:00Z"}
{"type":"order","id":"c0ffee00-1234-4abc-8def-0123456789ab","wallet":"w_mia","product":"Starter 50","credits":50,"amount":900,"currency":"EUR","created_at":"2026-06-01T10:00:00Z"}
{"type":"generation","id":"gen_mia1","wallet":"w_mia","order":"c0ffee00-1234-4abc-8def-0123456789ab","credits":5,"status":"failed","refunded":true,"created_at":"2026-06-03T18:00:00Z"}
{"type":"refund","id":"rf_mia1","order":"c0ffee00-1234-4abc-8def-0123456789ab","amount":900,"created_at":"2026-06-04T08:00:00Z"}
"#;

/// A mail from Mia, received at its `Date:`.
fn mia_mail(message_id: &str, subject: &str, body: &str) -> String {
    format!(
        "Authentication-Results: mx.anumi.example; dmarc=pass header.from=example.com\r\n\
         From: Mia <mia@example.com>\r\nTo: refunds@anumi.example\r\nSubject: {subject}\r\n\
         Date: Fri, 05 Jun 2026 09:30:00 +0000\r\nMessage-ID: <{message_id}>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

async fn already_refunded_on_a_minimal_ledger(db: TestDb) {
    let desk = Desk::new(&db);
    let ledger = desk.dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, MINIMAL_LEDGER).unwrap();
    let imported = desk.run(&["ledger", "import", ledger.to_str().unwrap()]);
    assert!(imported.contains("rejected 0 lines"), "{imported}");

    let new = desk.maildir().join("new");
    std::fs::create_dir_all(&new).unwrap();
    for (file, mail) in [
        (
            "mia-1.eml",
            mia_mail(
                "mia.1@example.com",
                "My generation failed",
                "Hi, my generation failed yesterday: nothing was generated and my credits are gone.\r\nMia",
            ),
        ),
        (
            "mia-2.eml",
            mia_mail(
                "mia.2@example.com",
                "Refund for my Starter pack",
                "Hi, please refund my Starter 50 pack, order c0ffee00-1234-4abc-8def-0123456789ab.\r\nMia",
            ),
        ),
    ] {
        write_mail(
            &new.join(file),
            mail.as_bytes(),
            header_date(mail.as_bytes()),
        );
    }
    desk.run(&["process", "--maildir", desk.maildir().to_str().unwrap()]);

    let cases = desk.cases();
    assert_eq!(cases.len(), 2, "{cases:#?}");
    for case in &cases {
        assert_eq!(case["outcome"], "answered", "{case:#}");
        assert_eq!(case["status"], "resolved", "not review: {case:#}");
    }
    let mut categories: Vec<&str> = cases
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    categories.sort();
    assert_eq!(categories, ["cash_refund", "failed_generation"]);

    let replies = desk.outbox();
    assert_eq!(replies.len(), 2, "both messages are answered");
    let reply_to = |message_id: &str| -> (String, String) {
        let reply = replies
            .iter()
            .find(|r| r.in_reply_to().as_text() == Some(message_id))
            .unwrap_or_else(|| panic!("no reply to {message_id}"));
        (
            reply.body_text(0).unwrap().into_owned(),
            reply.body_html(0).unwrap().into_owned(),
        )
    };
    let (text, html) = reply_to("mia.1@example.com");
    assert!(
        text.contains("the 5 credits it used went back to your wallet automatically."),
        "no time is invented for the generation's refund: {text}"
    );
    assert!(
        html.contains("went back to your wallet automatically."),
        "{html}"
    );
    let (text, html) = reply_to("mia.2@example.com");
    assert!(
        text.contains("This order was already refunded on 4 June 2026 (9.00 EUR)"),
        "the refund line's time is quoted: {text}"
    );
    assert!(
        text.contains("order c0ffee00-1234-4abc-8def-0123456789ab"),
        "without an invoice or receipt number the order id names the order: {text}"
    );
    assert!(html.contains("already refunded"), "{html}");
}

#[tokio::test]
async fn an_already_refunded_customer_is_answered_from_a_minimal_ledger_on_sqlite() {
    already_refunded_on_a_minimal_ledger(TestDb::sqlite()).await;
}

#[tokio::test]
async fn an_already_refunded_customer_is_answered_from_a_minimal_ledger_on_postgres() {
    already_refunded_on_a_minimal_ledger(TestDb::postgres().await).await;
}

#[test]
fn a_bad_ledger_line_is_reported_and_the_good_lines_still_import() {
    let db = TestDb::sqlite();
    let desk = Desk::new(&db);
    let file = desk.dir.path().join("ledger.jsonl");
    std::fs::write(
        &file,
        "{\"type\":\"wallet\",\"id\":\"w_1\",\"email\":\"a@example.com\",\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:00Z\"}\n\
         {\"type\":\"wallet\",\"id\":\"w_2\",\"email\":\"b@example.com\",\"status\":\"sleepy\",\"created_at\":\"2026-01-01T00:00:00Z\"}\n\
         not json\n\
         {\"type\":\"wallet\",\"id\":\"w_3\",\"email\":\"c@example.com\",\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let out = refundd(&desk.config, &["ledger", "import", file.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "a rejected line makes the exit code non-zero"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2"));
}

#[test]
fn the_demo_decides_every_kind_of_case_and_answers_all_but_the_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_refundd"))
        .args(["demo", "--dir", demo_dir.to_str().unwrap()])
        .env_remove("REFUNDD_CONFIG")
        .env_remove("REFUNDD_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for outcome in [
        "approved",
        "denied",
        "review",
        "needs_info",
        "answered",
        "ignored",
    ] {
        assert!(
            stdout.contains(outcome),
            "the table shows a {outcome} case:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("3 refunds reached the Polar test server"),
        "Ann's, Ben's and Kim's refunds are paid through the test server:\n{stdout}"
    );
    let replies = std::fs::read_dir(demo_dir.join("outbox")).unwrap().count();
    assert_eq!(
        replies, 15,
        "14 first replies plus the answer to Kim's follow-up"
    );
    // A quiet first run: the table and where to look next, no log lines.
    assert!(
        out.stderr.is_empty(),
        "the demo logs nothing unasked:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = demo_dir.join("refundd.toml").display().to_string();
    for next in [
        format!("{}/", demo_dir.join("outbox").display()),
        format!("--config {config} case R-"),
        format!("--config {config} serve"),
    ] {
        assert!(
            stdout.contains(&next),
            "the demo points at {next}:\n{stdout}"
        );
    }
}
