//! `ingest::archive`, the read-only readers `refundd replay` uses: the
//! hand-written mbox fixtures (`tests/fixtures/mbox/`, each with the
//! messages it must give back under `expected/`), an mbox and a Maildir
//! made from the demo mail, and IMAP folders on a real Dovecot.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::mailstack::Dovecot;
use crate::support::{header_date, repo, write_mail};
use refundd::ingest::TRUNCATED_HEADER;
use refundd::ingest::archive::{
    ArchivedMessage, ImapFolderReader, MboxFormat, MboxOptions, read_imap_folder, read_maildir,
    read_maildir_with, read_mbox, read_mbox_with,
};
use refundd::ingest::imap::{ImapConfig, ImapError, ImapMailbox};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn message_id(bytes: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("parses as mail")
        .message_id()
        .expect("has a Message-ID")
        .to_owned()
}

/// The messages a fixture mbox must give back, in order.
fn expected_messages(fixture: &Path) -> Vec<Vec<u8>> {
    let dir = fixture.join("expected");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures found in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn read_all(
    reader: impl Iterator<Item = Result<ArchivedMessage, impl std::fmt::Debug>>,
) -> Vec<ArchivedMessage> {
    reader.map(|m| m.expect("a message")).collect()
}

fn assert_same_bytes(got: &ArchivedMessage, want: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(&got.bytes),
        String::from_utf8_lossy(want),
        "{}",
        got.source
    );
    assert_eq!(got.bytes, want, "{}", got.source);
}

#[test]
fn an_mboxrd_archive_gives_back_every_message_byte_for_byte_with_its_receipt_time() {
    let fixture = repo().join("tests/fixtures/mbox/mboxrd");
    let path = fixture.join("archive.mbox");
    let expected = expected_messages(&fixture);
    let messages = read_all(read_mbox(&path).unwrap());

    assert_eq!(messages.len(), expected.len());
    for (got, want) in messages.iter().zip(&expected) {
        assert_same_bytes(got, want);
        assert_eq!(got.truncated_from, None);
    }
    let summary: Vec<(String, DateTime<Utc>, String)> = messages
        .iter()
        .map(|m| (message_id(&m.bytes), m.received_at, m.source.clone()))
        .collect();
    let source = |line: u32| format!("mbox:{}:{line}", path.display());
    assert_eq!(
        summary,
        [
            // asctime From line.
            (
                "rd-1@customer.example".into(),
                utc(2026, 6, 4, 9, 12, 0),
                source(1)
            ),
            // Gmail's From line with a zone; the message is all CRLF.
            (
                "rd-2@kunde.example".into(),
                utc(2026, 6, 5, 17, 45, 9),
                source(20)
            ),
            // No date on the From line: the topmost Received: (10:20:30 +0200).
            (
                "rd-3@client.example".into(),
                utc(2026, 6, 6, 8, 20, 30),
                source(35)
            ),
            // Right after the previous message, no blank line between.
            (
                "rd-4@example.org".into(),
                utc(2026, 6, 7, 23, 59, 59),
                source(45)
            ),
        ]
    );
    // What the fixture is about, said once more in plain terms.
    let text = |i: usize| String::from_utf8_lossy(&messages[i].bytes).into_owned();
    assert!(text(0).contains("\nFrom what I can see"));
    assert!(text(0).contains("\n>From your FAQ"));
    assert!(text(0).contains("\n>>From the reply"));
    assert!(!text(1).replace("\r\n", "").contains('\n'), "CRLF kept");
    assert!(text(1).ends_with("0002.\r\n\r\n"));
    assert!(text(3).ends_with("no final newline"));
}

#[test]
fn an_mboxo_archive_unquotes_only_single_quoted_from_lines() {
    let fixture = repo().join("tests/fixtures/mbox/mboxo");
    let path = fixture.join("archive.mbox");
    let expected = expected_messages(&fixture);
    let mboxo = MboxOptions {
        format: MboxFormat::Mboxo,
        ..MboxOptions::default()
    };
    let messages = read_all(read_mbox_with(&path, mboxo).unwrap());

    assert_eq!(messages.len(), expected.len());
    for (got, want) in messages.iter().zip(&expected) {
        assert_same_bytes(got, want);
    }
    let summary: Vec<(String, DateTime<Utc>)> = messages
        .iter()
        .map(|m| (message_id(&m.bytes), m.received_at))
        .collect();
    assert_eq!(
        summary,
        [
            ("o-1@customer.example".into(), utc(2026, 6, 8, 8, 0, 0)),
            ("o-2@client.example".into(), utc(2026, 6, 9, 10, 35, 0)),
            ("o-3@cliente.example".into(), utc(2026, 6, 10, 7, 1, 2)),
        ]
    );

    // Read as mboxrd, the `>>From` line mboxo left alone loses a `>`: the
    // format matters, and only there.
    let as_rd = read_all(read_mbox(&path).unwrap());
    assert_eq!(as_rd.len(), 3);
    assert_ne!(as_rd[0].bytes, expected[0]);
    assert!(String::from_utf8_lossy(&as_rd[0].bytes).contains("\n>From the log"));
    assert_eq!(as_rd[1].bytes, expected[1]);
    assert_eq!(as_rd[2].bytes, expected[2]);
}

/// Appends one message to an mbox as an mboxrd writer does: a From line,
/// `>*From ` lines quoted once more, a newline ensured, an empty line.
pub(crate) fn append_mboxrd(mbox: &mut Vec<u8>, sender: &str, at: DateTime<Utc>, message: &[u8]) {
    mbox.extend_from_slice(
        format!("From {sender} {}\n", at.format("%a %b %e %H:%M:%S %Y")).as_bytes(),
    );
    for line in message.split_inclusive(|&b| b == b'\n') {
        let arrows = line.iter().take_while(|&&b| b == b'>').count();
        if line[arrows..].starts_with(b"From ") {
            mbox.push(b'>');
        }
        mbox.extend_from_slice(line);
    }
    if !message.ends_with(b"\n") {
        mbox.push(b'\n');
    }
    mbox.push(b'\n');
}

fn demo_mail() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo().join("examples/demo/mail");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "the demo mails are all there");
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn an_mbox_built_from_the_demo_mail_gives_back_all_17_messages() {
    let demo = demo_mail();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.mbox");
    let mut mbox = Vec::new();
    let mut received = Vec::new();
    for (i, (_, bytes)) in demo.iter().enumerate() {
        // Received a few minutes after the sender's Date, each differently.
        let at = header_date(bytes) + Duration::minutes(i as i64 + 1);
        append_mboxrd(&mut mbox, "MAILER-DAEMON", at, bytes);
        received.push(at);
    }
    std::fs::write(&path, &mbox).unwrap();

    let messages = read_all(read_mbox(&path).unwrap());
    assert_eq!(messages.len(), 17);
    for ((file, original), (message, at)) in demo.iter().zip(messages.iter().zip(&received)) {
        let name = file.display();
        assert_eq!(message_id(&message.bytes), message_id(original), "{name}");
        assert_eq!(message.bytes, *original, "{name}");
        assert_eq!(message.received_at, *at, "{name}");
    }
}

/// Every file and folder under `root`: relative path -> (mtime, size), for
/// folders (mtime, 0): a folder's mtime changes when a file is added,
/// removed or renamed in it.
fn tree(root: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if meta.is_dir() {
                out.insert(rel, (meta.modified().unwrap(), 0));
                stack.push(path);
            } else {
                out.insert(rel, (meta.modified().unwrap(), meta.len()));
            }
        }
    }
    out
}

#[test]
fn a_maildir_is_read_without_moving_renaming_or_touching_a_file() {
    let demo = demo_mail();
    let dir = tempfile::tempdir().unwrap();
    // A copy as a backup would hold it: new/ and cur/, no empty tmp/.
    let root = dir.path().join("Maildir");
    std::fs::create_dir_all(root.join("new")).unwrap();
    std::fs::create_dir_all(root.join("cur")).unwrap();
    let mut by_source = BTreeMap::new();
    for (i, (_, bytes)) in demo.iter().enumerate() {
        let name = format!("17800000{i:02}.M{i}P1.mx.anumi.example");
        let (sub, name) = if i % 2 == 0 {
            ("new", name)
        } else {
            ("cur", format!("{name}:2,S"))
        };
        let at = header_date(bytes) + Duration::seconds(i as i64);
        write_mail(&root.join(sub).join(&name), bytes, at);
        by_source.insert(format!("maildir:{sub}/{name}"), (bytes.clone(), at));
    }
    let before = tree(&root);

    let messages = read_all(read_maildir(&root).unwrap());
    assert_eq!(messages.len(), 17);
    for message in &messages {
        let (bytes, at) = &by_source[&message.source];
        assert_eq!(message.bytes, *bytes, "{}", message.source);
        assert_eq!(message.received_at, *at, "{}", message.source);
        assert_eq!(message.truncated_from, None);
    }
    assert!(
        messages
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at),
        "oldest receipt first"
    );

    // Over a small limit, a message keeps its header only, as ingest keeps
    // it; one within the limit is whole.
    let limit = 900;
    let capped = read_all(read_maildir_with(&root, limit).unwrap());
    assert_eq!(capped.len(), 17);
    let mut truncated = 0;
    for message in &capped {
        let original = &by_source[&message.source].0;
        let full = original.len() as u64;
        if full > limit {
            truncated += 1;
            assert_eq!(message.truncated_from, Some(full), "{}", message.source);
            let marker = format!("{TRUNCATED_HEADER}: {full}\r\n");
            assert!(message.bytes.starts_with(marker.as_bytes()));
            assert_eq!(message_id(&message.bytes), message_id(original));
        } else {
            assert_eq!(message.bytes, *original, "{}", message.source);
            assert_eq!(message.truncated_from, None);
        }
    }
    assert_eq!(truncated, 4, "demo mails over {limit} bytes");

    // Every file still where it was, same name, same mtime, same size; no
    // folder created (tmp/), none changed.
    assert_eq!(tree(&root), before);
}

fn mail(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@customer.example>\r\nTo: refunds@example.test\r\nSubject: {id}\r\nMessage-ID: <{id}@customer.example>\r\nDate: Mon, 1 Jun 2026 08:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn an_imap_folder_is_read_without_changing_its_messages_flags_or_state() {
    let dovecot = Dovecot::start().unwrap();
    dovecot.admin(&["CREATE Archive/2026"]).await.unwrap();
    let folder = "Archive/2026";
    let big = mail("big", &"attachment line\r\n".repeat(400));
    let appended: Vec<(Vec<u8>, DateTime<Utc>, Option<&str>)> = vec![
        (
            mail("unread", "Please refund."),
            utc(2026, 6, 1, 9, 0, 1),
            None,
        ),
        (
            mail("read", "Already seen."),
            utc(2026, 6, 2, 10, 30, 2),
            Some("(\\Seen)"),
        ),
        (
            mail("flagged", "Important."),
            utc(2026, 6, 3, 23, 59, 3),
            Some("(\\Flagged)"),
        ),
        (big.clone(), utc(2026, 6, 4, 0, 0, 4), None),
    ];
    dovecot.append_all(folder, &appended).await.unwrap();
    let status_before = dovecot.status(folder).await.unwrap();
    let flags_before = dovecot.flags(folder).await.unwrap();
    // Nothing has selected the folder yet: every message is still \Recent,
    // which a read-write SELECT would take.
    assert_eq!((status_before.messages, status_before.recent), (4, 4));
    assert_eq!(status_before.unseen, Some(3));
    assert!(status_before.highest_modseq.is_some(), "{status_before:?}");

    // The configured folder stays INBOX: the archive folder is an argument.
    let config = ImapConfig {
        max_message_bytes: 2000,
        ..dovecot.config()
    };
    let mut read = Vec::new();
    let count = read_imap_folder(&config, folder, |m| read.push(m))
        .await
        .unwrap();

    assert_eq!(count, 4);
    let uidvalidity = status_before.uidvalidity.unwrap();
    for (uid, (message, (bytes, at, _))) in (1..).zip(read.iter().zip(&appended)) {
        assert_eq!(message.source, format!("imap:{folder}:{uidvalidity}:{uid}"));
        assert_eq!(message.received_at, *at, "{}", message.source);
        if uid < 4 {
            assert_eq!(message.bytes, *bytes, "{}", message.source);
            assert_eq!(message.truncated_from, None);
        }
    }
    // The big one: header only (never downloaded whole), as ingest stores it.
    assert_eq!(read[3].truncated_from, Some(big.len() as u64));
    let stub = String::from_utf8(read[3].bytes.clone()).unwrap();
    assert!(
        stub.starts_with(&format!("{TRUNCATED_HEADER}: {}\r\n", big.len())),
        "{stub}"
    );
    assert!(stub.contains("Message-ID: <big@customer.example>"));
    assert!(!stub.contains("attachment line"));

    // Same messages, same flags (no \Seen gained), same count, UIDNEXT,
    // UIDVALIDITY, unseen count, HIGHESTMODSEQ and \Recent count.
    assert_eq!(dovecot.flags(folder).await.unwrap(), flags_before);
    assert_eq!(dovecot.status(folder).await.unwrap(), status_before);
    let seen: Vec<u32> = flags_before
        .iter()
        .filter(|(_, flags)| flags.iter().any(|f| f == "Seen"))
        .map(|(uid, _)| *uid)
        .collect();
    assert_eq!(seen, [2]);

    // A read-only mailbox refuses to move anything, and sends nothing.
    let archive = ImapConfig {
        folder: folder.into(),
        ..config.clone()
    };
    let mut examined = ImapMailbox::examine(&archive).await.unwrap();
    let err = examined.move_to_processed(&[1]).await.unwrap_err();
    assert!(matches!(err, ImapError::ReadOnly { .. }), "{err:?}");
    assert!(!err.is_transient());
    examined.logout().await.unwrap();
    assert_eq!(dovecot.status(folder).await.unwrap(), status_before);
    assert_eq!(
        dovecot.uids("Processed").await.ok(),
        None,
        "no folder created"
    );

    // The check above can see a difference: a read-write SELECT, as the
    // daemon does, takes the \Recent flags.
    let selected = ImapMailbox::connect(&archive).await.unwrap();
    selected.logout().await.unwrap();
    assert_eq!(dovecot.status(folder).await.unwrap().recent, 0);
}

#[tokio::test]
async fn an_imap_folder_larger_than_one_batch_comes_back_whole_in_uid_order() {
    let dovecot = Dovecot::start().unwrap();
    let start = utc(2026, 1, 1, 0, 0, 0);
    let appended: Vec<(Vec<u8>, DateTime<Utc>, Option<&str>)> = (1..=1150)
        .map(|n| {
            (
                mail(&format!("m{n}"), "x"),
                start + Duration::minutes(n),
                None,
            )
        })
        .collect();
    dovecot.append_all("INBOX", &appended).await.unwrap();
    // A hole in the UIDs, across the first batch boundary.
    dovecot
        .admin(&[
            "SELECT INBOX",
            "UID STORE 480:529 +FLAGS.SILENT (\\Deleted)",
            "EXPUNGE",
        ])
        .await
        .unwrap();

    let mut read = Vec::new();
    let count = read_imap_folder(&dovecot.config(), "INBOX", |m| read.push(m))
        .await
        .unwrap();

    assert_eq!(count, 1100);
    let expected: Vec<i64> = (1..=1150).filter(|n| !(480..=529).contains(n)).collect();
    let uids: Vec<i64> = read
        .iter()
        .map(|m| m.source.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(uids, expected);
    for (message, n) in read.iter().zip(&expected) {
        assert_eq!(message.received_at, start + Duration::minutes(*n));
        assert_eq!(message_id(&message.bytes), format!("m{n}@customer.example"));
    }
}

#[tokio::test]
async fn an_interrupted_imap_read_resumes_after_the_last_message_handed_out() {
    let mut dovecot = Dovecot::start().unwrap();
    let start = utc(2026, 2, 1, 0, 0, 0);
    let appended: Vec<(Vec<u8>, DateTime<Utc>, Option<&str>)> = (1..=150)
        .map(|n| {
            (
                mail(&format!("r{n}"), "x"),
                start + Duration::minutes(n),
                None,
            )
        })
        .collect();
    dovecot.append_all("INBOX", &appended).await.unwrap();

    let mut reader = ImapFolderReader::open(&dovecot.config(), "INBOX")
        .await
        .unwrap();
    assert_eq!(reader.total(), 150);
    let mut ids = Vec::new();
    for _ in 0..30 {
        let message = reader.next_message().await.unwrap().unwrap();
        ids.push(message_id(&message.bytes));
    }

    dovecot.stop();
    // What was already fetched still comes; then the outage shows.
    let err = loop {
        match reader.next_message().await {
            Ok(Some(message)) => ids.push(message_id(&message.bytes)),
            Ok(None) => panic!("the read ended without noticing the outage"),
            Err(err) => break err,
        }
    };
    assert!(err.is_transient(), "{err:?}");
    assert!(ids.len() < 150);
    assert!(reader.reconnect().await.unwrap_err().is_transient());

    dovecot.restart().unwrap();
    reader.reconnect().await.unwrap();
    while let Some(message) = reader.next_message().await.unwrap() {
        ids.push(message_id(&message.bytes));
    }
    reader.close().await;

    let expected: Vec<String> = (1..=150)
        .map(|n| format!("r{n}@customer.example"))
        .collect();
    assert_eq!(ids, expected, "every message once, in UID order");
}
