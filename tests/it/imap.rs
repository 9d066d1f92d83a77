//! `ingest::imap` against a real Dovecot (one instance per test).

use chrono::{DateTime, TimeZone, Utc};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::mailstack::Dovecot;
use crate::support::{ImapServer, Mailutils, TokenIntrospection};
use refundd::ingest::imap::{
    ImapAuth, ImapConfig, ImapCursor, ImapError, ImapExtension, ImapMailbox, ImapTls, ScanPlan,
    Wake, plan,
};

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@customer.example>\r\nTo: refunds@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@customer.example>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, day, hour, 15, 30).unwrap()
}

#[tokio::test]
async fn fetch_returns_each_message_with_the_internaldate_given_at_append() {
    let dovecot = Dovecot::start().unwrap();
    let first = message("first", "Please refund order 1001.");
    let second = message("second", "Und die Bestellung 1002.");
    dovecot.append("INBOX", &first, at(3, 9)).await.unwrap();
    dovecot.append("INBOX", &second, at(4, 17)).await.unwrap();

    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    let folder = mailbox.folder();
    assert!(folder.uidvalidity > 0);
    assert_eq!(folder.uidnext, Some(3));
    assert_eq!(folder.exists, 2);

    let fetched = mailbox.fetch_since(0).await.unwrap();
    let summary: Vec<(u32, DateTime<Utc>, u64)> = fetched
        .iter()
        .map(|m| (m.uid, m.internal_date, m.size))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, at(3, 9), first.len() as u64),
            (2, at(4, 17), second.len() as u64)
        ]
    );
    assert_eq!(fetched[0].bytes.as_deref(), Some(first.as_slice()));
    assert_eq!(fetched[1].bytes.as_deref(), Some(second.as_slice()));
    mailbox.logout().await.unwrap();
}

#[tokio::test]
async fn fetch_since_the_highest_uid_or_beyond_returns_nothing() {
    let dovecot = Dovecot::start().unwrap();
    for n in 1..=3 {
        dovecot
            .append("INBOX", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();

    // "4:*" and "100:*" both match UID 3 on the server (RFC 3501 §6.4.8).
    for last_uid in [3, 99, u32::MAX] {
        assert_eq!(
            mailbox.fetch_since(last_uid).await.unwrap(),
            vec![],
            "after {last_uid}"
        );
    }
    let uids: Vec<u32> = mailbox
        .fetch_since(1)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [2, 3]);
    let limited: Vec<u32> = mailbox
        .fetch_since_limit(0, 2)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(limited, [1, 2]);
}

#[tokio::test]
async fn an_oversized_message_comes_without_bytes_but_its_header_can_be_read() {
    let dovecot = Dovecot::start().unwrap();
    let small = message("small", "short");
    let big = message("big", &"attachment line\r\n".repeat(400));
    dovecot.append("INBOX", &small, at(5, 10)).await.unwrap();
    dovecot.append("INBOX", &big, at(5, 11)).await.unwrap();

    let config = ImapConfig {
        max_message_bytes: 1000,
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let fetched = mailbox.fetch_since(0).await.unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0].bytes.as_deref(), Some(small.as_slice()));
    assert_eq!(
        (fetched[1].uid, fetched[1].size, fetched[1].bytes.is_none()),
        (2, big.len() as u64, true)
    );
    assert_eq!(fetched[1].internal_date, at(5, 11));

    let header = mailbox.fetch_headers(2).await.unwrap().expect("a header");
    let header = String::from_utf8(header).unwrap();
    assert!(header.contains("Subject: big\r\n"), "{header}");
    assert!(!header.contains("attachment line"));
    assert_eq!(mailbox.fetch_headers(77).await.unwrap(), None);
}

#[tokio::test]
async fn move_to_processed_uses_move_and_creates_the_folder() {
    let dovecot = Dovecot::start().unwrap();
    for n in 1..=2 {
        dovecot
            .append("INBOX", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    assert!(mailbox.uses(ImapExtension::Move));
    mailbox.move_to_processed(&[1]).await.unwrap();

    assert_eq!(dovecot.uids("INBOX").await.unwrap(), [2]);
    assert_eq!(dovecot.uids("Processed").await.unwrap(), [1]);
    // The rest of the folder still reads normally after the move.
    let uids: Vec<u32> = mailbox
        .fetch_since(0)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [2]);
}

#[tokio::test]
async fn without_move_the_fallback_copies_and_expunges_only_that_uid_with_uidplus() {
    let dovecot = Dovecot::start().unwrap();
    for n in 1..=3 {
        dovecot
            .append("INBOX", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    // Another client marked message 3 for deletion without expunging it.
    dovecot
        .admin(&["SELECT INBOX", "UID STORE 3 +FLAGS (\\Deleted)"])
        .await
        .unwrap();

    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    mailbox.disable(ImapExtension::Move);
    assert!(mailbox.uses(ImapExtension::UidPlus));
    mailbox.move_to_processed(&[1]).await.unwrap();

    assert_eq!(dovecot.uids("INBOX").await.unwrap(), [2, 3]);
    assert_eq!(dovecot.deleted_count("INBOX").await.unwrap(), 1);
    assert_eq!(dovecot.uids("Processed").await.unwrap(), [1]);
}

#[tokio::test]
async fn without_move_and_uidplus_another_clients_deleted_mail_is_never_expunged() {
    let dovecot = Dovecot::start().unwrap();
    for n in 1..=3 {
        dovecot
            .append("INBOX", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    dovecot
        .admin(&["SELECT INBOX", "UID STORE 3 +FLAGS (\\Deleted)"])
        .await
        .unwrap();

    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    mailbox.disable(ImapExtension::Move);
    mailbox.disable(ImapExtension::UidPlus);
    mailbox.move_to_processed(&[1, 2]).await.unwrap();

    // A plain EXPUNGE would take message 3 too (RFC 4315 §1): refundd
    // leaves its own two flagged instead, already copied.
    assert_eq!(dovecot.uids("INBOX").await.unwrap(), [1, 2, 3]);
    assert_eq!(dovecot.uids("Processed").await.unwrap(), [1, 2]);
    let flags = dovecot.flags("INBOX").await.unwrap();
    assert!(
        flags[..2]
            .iter()
            .all(|(_, f)| f.contains(&"Custom(\"$RefunddProcessed\")".to_string())),
        "Dovecot takes keywords: {flags:?}"
    );

    // The other client changes its mind; the next batch expunges ours.
    dovecot
        .admin(&["SELECT INBOX", "UID STORE 3 -FLAGS (\\Deleted)"])
        .await
        .unwrap();
    mailbox.move_to_processed(&[3]).await.unwrap();
    assert_eq!(dovecot.uids("INBOX").await.unwrap(), Vec::<u32>::new());
    assert_eq!(dovecot.uids("Processed").await.unwrap(), [1, 2, 3]);
}

#[tokio::test]
async fn a_batch_moves_in_one_go_and_a_copy_left_by_a_crash_is_not_copied_twice() {
    let dovecot = Dovecot::start().unwrap();
    for n in 1..=4 {
        dovecot
            .append("INBOX", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    // A crash after COPY and the flags, before EXPUNGE and the cursor:
    // messages 1 and 2 are in Processed already and carry the keyword.
    dovecot
        .admin(&[
            "CREATE Processed",
            "SELECT INBOX",
            "UID COPY 1:2 Processed",
            "UID STORE 1:2 +FLAGS ($RefunddProcessed)",
        ])
        .await
        .unwrap();
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    mailbox.disable(ImapExtension::Move);
    mailbox.disable(ImapExtension::UidPlus);
    assert!(mailbox.keywords_allowed());
    mailbox.move_to_processed(&[1, 2, 3, 4]).await.unwrap();
    assert_eq!(dovecot.uids("INBOX").await.unwrap(), Vec::<u32>::new());
    assert_eq!(
        dovecot.uids("Processed").await.unwrap().len(),
        4,
        "one copy of each"
    );
}

#[tokio::test]
async fn non_ascii_folder_names_are_sent_in_modified_utf7() {
    let dovecot = Dovecot::start().unwrap();
    dovecot
        .admin(&["CREATE \"R&APw-ckerstattungen\""])
        .await
        .unwrap();
    dovecot
        .append("R&APw-ckerstattungen", &message("umlaut", "x"), at(2, 2))
        .await
        .unwrap();
    let config = ImapConfig {
        folder: "Rückerstattungen".into(),
        processed_folder: "Erledigt/Geprüft".into(),
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let fetched = mailbox.fetch_since(0).await.unwrap();
    assert_eq!(fetched.len(), 1);
    mailbox.move_to_processed(&[fetched[0].uid]).await.unwrap();
    assert_eq!(
        dovecot.uids("Erledigt/Gepr&APw-ft").await.unwrap(),
        [1],
        "the processed folder has the name the operator wrote"
    );
}

#[tokio::test]
async fn idle_wakes_soon_after_a_message_arrives_from_another_connection() {
    let dovecot = Dovecot::start().unwrap();
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    assert!(mailbox.uses(ImapExtension::Idle));
    assert_eq!(mailbox.fetch_since(0).await.unwrap(), vec![]);

    let cancel = CancellationToken::new();
    let started = Instant::now();
    let late = message("late", "x");
    let (wake, appended) = tokio::join!(
        mailbox.idle_wait(Duration::from_secs(30), &cancel),
        dovecot.append("INBOX", &late, at(6, 12))
    );
    appended.unwrap();
    assert_eq!(wake.unwrap(), Wake::NewMail);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke after {:?}",
        started.elapsed()
    );

    let fetched = mailbox.fetch_since(0).await.unwrap();
    assert_eq!(
        fetched.iter().map(|m| m.internal_date).collect::<Vec<_>>(),
        [at(6, 12)]
    );
}

#[tokio::test]
async fn idle_returns_at_its_timeout_or_when_cancelled_and_the_session_stays_usable() {
    let dovecot = Dovecot::start().unwrap();
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    let cancel = CancellationToken::new();

    let wake = mailbox
        .idle_wait(Duration::from_millis(300), &cancel)
        .await
        .unwrap();
    assert_eq!(wake, Wake::Timeout);

    let cancelled = CancellationToken::new();
    let (wake, ()) = tokio::join!(
        mailbox.idle_wait(Duration::from_secs(30), &cancelled),
        async { cancelled.cancel() }
    );
    assert_eq!(wake.unwrap(), Wake::Cancelled);

    dovecot
        .append("INBOX", &message("after", "x"), at(7, 7))
        .await
        .unwrap();
    assert_eq!(mailbox.fetch_since(0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn without_idle_noop_polling_notices_new_mail() {
    let dovecot = Dovecot::start().unwrap();
    let config = ImapConfig {
        poll_interval: 1,
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    mailbox.disable(ImapExtension::Idle);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let polled = message("polled", "x");
    let (wake, appended) = tokio::join!(
        mailbox.idle_wait(Duration::from_secs(30), &cancel),
        dovecot.append("INBOX", &polled, at(8, 8))
    );
    appended.unwrap();
    assert_eq!(wake.unwrap(), Wake::NewMail);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_recreated_folder_gets_a_new_uidvalidity_and_the_plan_rescans() {
    let dovecot = Dovecot::start().unwrap();
    dovecot.admin(&["CREATE Refunds"]).await.unwrap();
    dovecot
        .append("Refunds", &message("old", "x"), at(9, 9))
        .await
        .unwrap();
    let config = ImapConfig {
        folder: "Refunds".into(),
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let before = mailbox.folder().uidvalidity;
    let stored = ImapCursor {
        uidvalidity: before,
        last_uid: 1,
    };
    assert_eq!(
        plan(Some(stored), before),
        ScanPlan::Resume { cursor: stored }
    );

    dovecot
        .admin(&["DELETE Refunds", "CREATE Refunds"])
        .await
        .unwrap();
    dovecot
        .append("Refunds", &message("new", "x"), at(10, 10))
        .await
        .unwrap();

    // The old session may or may not survive the deletion; a fresh one is the rule.
    let after = mailbox.reconnect().await.unwrap().uidvalidity;
    assert_ne!(after, before);
    let scan = plan(Some(stored), after);
    assert_eq!(
        scan,
        ScanPlan::Rescan {
            previous_uidvalidity: before,
            cursor: ImapCursor {
                uidvalidity: after,
                last_uid: 0
            }
        }
    );
    let fetched = mailbox.fetch_since(scan.cursor().last_uid).await.unwrap();
    assert_eq!(
        fetched
            .iter()
            .map(|m| (m.uid, m.internal_date))
            .collect::<Vec<_>>(),
        [(1, at(10, 10))]
    );
}

#[tokio::test]
async fn after_the_server_restarts_errors_are_transient_and_reconnect_works() {
    let mut dovecot = Dovecot::start().unwrap();
    dovecot
        .append("INBOX", &message("before", "x"), at(11, 11))
        .await
        .unwrap();
    let mut mailbox = ImapMailbox::connect(&dovecot.config()).await.unwrap();
    let uidvalidity = mailbox.folder().uidvalidity;

    dovecot.stop();
    let err = mailbox.fetch_since(0).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = mailbox.fetch_since(0).await.unwrap_err();
    assert!(matches!(err, ImapError::Disconnected), "{err:?}");
    let err = mailbox.reconnect().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    dovecot.restart().unwrap();
    let folder = mailbox.reconnect().await.unwrap();
    assert_eq!(folder.uidvalidity, uidvalidity);
    assert_eq!(mailbox.fetch_since(0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_auth_error() {
    let dovecot = Dovecot::start().unwrap();
    let config = ImapConfig {
        password: Some("wrong".into()),
        ..dovecot.config()
    };
    let err = ImapMailbox::connect(&config).await.unwrap_err();
    assert!(matches!(err, ImapError::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn implicit_tls_and_starttls_both_read_the_mailbox() {
    let dovecot = Dovecot::start_tls().unwrap();
    dovecot
        .append("INBOX", &message("secure", "x"), at(12, 12))
        .await
        .unwrap();
    let cases = [
        ("implicit TLS", ImapTls::Tls, dovecot.tls_port),
        ("STARTTLS", ImapTls::Starttls, Some(dovecot.port)),
    ];
    for (name, tls, port) in cases {
        let config = ImapConfig {
            tls,
            port,
            ca_file: dovecot.ca_file.clone(),
            ..dovecot.config()
        };
        let mut mailbox = ImapMailbox::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let fetched = mailbox.fetch_since(0).await.unwrap();
        assert_eq!(
            fetched.iter().map(|m| m.internal_date).collect::<Vec<_>>(),
            [at(12, 12)],
            "{name}"
        );
        mailbox.logout().await.unwrap();
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_not_retried() {
    let dovecot = Dovecot::start_tls().unwrap();
    let config = ImapConfig {
        tls: ImapTls::Tls,
        port: dovecot.tls_port,
        ca_file: None,
        ..dovecot.config()
    };
    let err = ImapMailbox::connect(&config).await.unwrap_err();
    assert!(matches!(err, ImapError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_processed_folder_the_server_refuses_is_permanent_and_nothing_is_downloaded() {
    let dovecot = Dovecot::start().unwrap();
    dovecot.admin(&["CREATE Refunds"]).await.unwrap();
    dovecot
        .append("Refunds", &message("waiting", "x"), at(3, 3))
        .await
        .unwrap();
    let _refusing = crate::support::refuse_new_folders(dovecot.folder_maildir("INBOX"));
    let config = ImapConfig {
        folder: "Refunds".into(),
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let err = mailbox.fetch_since(0).await.unwrap_err();
    assert!(
        matches!(&err, ImapError::ProcessedFolder { folder, .. } if folder == "Processed"),
        "{err:?}"
    );
    assert!(!err.is_transient(), "retrying cannot help: {err:?}");
    let words = err.server_words().unwrap();
    assert!(words.starts_with("NO "), "{words}");
    assert!(err.to_string().contains(&words), "{err}");
    // The session is still usable, e.g. to report; the mail is untouched.
    assert_eq!(mailbox.folder().exists, 1);
    assert_eq!(dovecot.uids("Refunds").await.unwrap(), [1]);
}

// --- GNU Mailutils imap4d: no MOVE, no UIDPLUS, no keywords, and a
// non-standard untagged answer to EXPUNGE.

#[tokio::test]
async fn mailutils_lacks_move_uidplus_and_keywords() {
    let server = Mailutils::start().unwrap();
    let mailbox = ImapMailbox::connect(&server.config()).await.unwrap();
    assert!(!mailbox.advertises(ImapExtension::Move));
    assert!(!mailbox.advertises(ImapExtension::UidPlus));
    assert!(!mailbox.keywords_allowed());
}

#[tokio::test]
async fn mailutils_moves_a_batch_and_its_odd_expunge_answer_keeps_the_session() {
    let server = ImapServer::Mailutils(Mailutils::start().unwrap());
    server.admin(&["CREATE Refunds"]).await.unwrap();
    for n in 1..=3 {
        server
            .append("Refunds", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    let config = ImapConfig {
        folder: "Refunds".into(),
        ..server.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let fetched = mailbox.fetch_since(0).await.unwrap();
    // INTERNALDATE is the APPEND date (the policy's receipt time).
    assert_eq!(fetched[2].internal_date, at(3, 8));
    let uids: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
    mailbox.move_to_processed(&uids[..2]).await.unwrap();
    assert_eq!(server.uids("Refunds").await.unwrap(), [uids[2]]);
    assert_eq!(server.uids("Processed").await.unwrap().len(), 2);
    // The server answered EXPUNGE with "* n EXPUNGED", which is not IMAP:
    // the same session goes on (no reconnect, no Disconnected).
    let rest = mailbox.fetch_since(uids[1]).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.uid).collect::<Vec<_>>(), [uids[2]]);
    assert_eq!(
        mailbox.skipped_line_shapes(),
        ["* 0 EXPUNGED"],
        "the odd line was seen and logged"
    );
}

#[tokio::test]
async fn without_uidplus_a_message_another_client_marked_deleted_survives_our_moves() {
    let server = ImapServer::Mailutils(Mailutils::start().unwrap());
    server.admin(&["CREATE Refunds"]).await.unwrap();
    for n in 1..=2 {
        server
            .append("Refunds", &message(&format!("m{n}"), "x"), at(n, 8))
            .await
            .unwrap();
    }
    let config = ImapConfig {
        folder: "Refunds".into(),
        ..server.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    let fetched: Vec<u32> = mailbox
        .fetch_since(0)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(fetched, [1, 2]);
    // Meanwhile a customer-service client files a message and marks it
    // \Deleted (its own delete, not yet expunged).
    server
        .append("Refunds", &message("theirs", "x"), at(9, 9))
        .await
        .unwrap();
    server
        .admin(&["SELECT Refunds", "UID STORE 3 +FLAGS (\\Deleted)"])
        .await
        .unwrap();

    mailbox.move_to_processed(&fetched).await.unwrap();

    // Mailutils keeps another session's flags to itself (its mbox store
    // writes them only at that session's EXPUNGE), so refundd's check sees
    // no foreign \Deleted message here and expunges its own two; Dovecot,
    // which shares flags at once, is held to the full rule in
    // `without_move_and_uidplus_another_clients_deleted_mail_is_never_expunged`.
    // Either way the other client's message is still there.
    let left = server.uids("Refunds").await.unwrap();
    assert!(
        left.contains(&3),
        "the other client's message survives: {left:?}"
    );
    assert!(!left.contains(&1) && !left.contains(&2), "{left:?}");
    assert_eq!(server.uids("Processed").await.unwrap().len(), 2);
}

/// Gmail and Microsoft 365 end a session when its access token expires
/// (Microsoft 365: `* BYE … AccessTokenExpired`); refundd reconnects and
/// logs in with the token the refresher has written since. Here Dovecot
/// checks tokens against a loopback introspection endpoint, and a restart
/// of it stands in for the provider ending the session.
#[tokio::test(flavor = "multi_thread")]
async fn xoauth2_reconnects_with_the_fresh_token_after_the_old_one_expired_mid_session() {
    let tokens = TokenIntrospection::start();
    tokens.set_active(&["ya29.first"]);
    let mut dovecot = Dovecot::start_oauth2(&tokens.url).unwrap();
    dovecot
        .append("INBOX", &message("oauth", "x"), at(1, 1))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "ya29.first\n").unwrap();
    let config = ImapConfig {
        auth: ImapAuth::Xoauth2,
        password: None,
        oauth_token_file: Some(token_file.clone()),
        ..dovecot.config()
    };
    let mut mailbox = ImapMailbox::connect(&config).await.unwrap();
    assert_eq!(mailbox.fetch_since(0).await.unwrap().len(), 1);

    // The token expires and the session ends; the refresher has not yet
    // written a new one: the old token is refused, as a login error.
    tokens.set_active(&["ya29.second"]);
    dovecot.restart().unwrap();
    let err = mailbox.fetch_since(0).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = mailbox.reconnect().await.unwrap_err();
    assert!(matches!(err, ImapError::Auth { .. }), "{err:?}");
    assert!(err.is_transient(), "a fresh token may come: {err:?}");

    // The refresher writes the fresh token: the next reconnect reads it.
    std::fs::write(&token_file, "ya29.second\n").unwrap();
    mailbox.reconnect().await.unwrap();
    assert_eq!(mailbox.fetch_since(0).await.unwrap().len(), 1);
}
