//! `reply::smtp` against a real SMTP server (aiosmtpd, one per test).

use std::time::{Duration, Instant};

use crate::mailstack::{SinkOptions, SmtpSinkServer};
use refundd::reply::smtp::{SmtpError, SmtpSink, SmtpStage};

const FROM: &str = "refunds@anumi.example";
const TO: &str = "ann@customer.example";

fn reply(n: usize) -> Vec<u8> {
    format!(
        "From: Anumi Refunds <refunds@anumi.example>\r\nTo: ann@customer.example\r\nSubject: Re: refund {n}\r\nMessage-ID: <reply-{n}@refundd.anumi.example>\r\nIn-Reply-To: <ask-{n}@customer.example>\r\nAuto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo Ann, Ihre Erstattung {n} ist unterwegs.\r\n.leading dot stays\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_sent_message_is_stored_byte_for_byte_with_its_envelope() {
    let sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    smtp.send_raw(FROM, TO, &reply(1)).await.unwrap();

    let received = sink.received().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].raw, reply(1));
    assert_eq!(received[0].mail_from, FROM);
    assert_eq!(received[0].rcpt_tos, [TO]);
    let parsed = mail_parser::MessageParser::new()
        .parse(&received[0].raw)
        .unwrap();
    assert_eq!(parsed.subject(), Some("Re: refund 1"));
    assert_eq!(
        parsed.in_reply_to().as_text(),
        Some("ask-1@customer.example")
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
}

#[tokio::test]
async fn lf_line_endings_are_sent_as_crlf_and_an_empty_sender_is_the_null_path() {
    let sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    smtp.send_raw("", TO, b"Subject: bare\n\nline one\nline two\n")
        .await
        .unwrap();

    let received = sink.received().unwrap();
    assert_eq!(
        received[0].raw,
        b"Subject: bare\r\n\r\nline one\r\nline two\r\n"
    );
    assert_eq!(received[0].mail_from, "<>");
}

#[tokio::test]
async fn a_4xx_reply_is_transient_and_the_connection_carries_the_next_message() {
    let sink = SmtpSinkServer::start(SinkOptions {
        fail_first: 1,
        fail_code: 451,
        ..SinkOptions::default()
    })
    .unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();

    let err = smtp.send_raw(FROM, TO, &reply(1)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(&err, SmtpError::Rejected { stage: SmtpStage::Message, code: 451, text } if text.contains("fault plan")),
        "{err:?}"
    );
    smtp.send_raw(FROM, TO, &reply(2)).await.unwrap();
    assert_eq!(smtp.connections_opened(), 1);
    assert_eq!(
        sink.received()
            .unwrap()
            .iter()
            .map(|r| r.raw.clone())
            .collect::<Vec<_>>(),
        [reply(2)]
    );
}

#[tokio::test]
async fn a_5xx_reply_is_permanent_with_the_servers_code() {
    let sink = SmtpSinkServer::start(SinkOptions {
        fail_first: 1,
        fail_code: 554,
        fail_rcpt: Some("gone@customer.example".into()),
        ..SinkOptions::default()
    })
    .unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();

    let err = smtp.send_raw(FROM, TO, &reply(1)).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        (
            err.code(),
            matches!(
                err,
                SmtpError::Rejected {
                    stage: SmtpStage::Message,
                    ..
                }
            )
        ),
        (Some(554), true)
    );

    let err = smtp
        .send_raw(FROM, "gone@customer.example", &reply(2))
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(
        matches!(
            err,
            SmtpError::Rejected {
                stage: SmtpStage::RcptTo,
                code: 554,
                ..
            }
        ),
        "{err:?}"
    );

    let err = smtp
        .send_raw(FROM, "not an address", &reply(3))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SmtpError::Address { .. }) && !err.is_transient(),
        "{err:?}"
    );

    smtp.send_raw(FROM, TO, &reply(4)).await.unwrap();
    assert_eq!(sink.received().unwrap().len(), 1);
    assert_eq!(smtp.connections_opened(), 1);
}

#[tokio::test]
async fn one_connection_carries_many_messages_without_nagle_delays() {
    let sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    let started = Instant::now();
    for n in 0..60 {
        smtp.send_raw(FROM, TO, &reply(n)).await.unwrap();
    }
    let elapsed = started.elapsed();
    smtp.close().await;

    let received = sink.received().unwrap();
    assert_eq!(received.len(), 60);
    assert!(
        received
            .iter()
            .all(|r| r.peer_port == received[0].peer_port)
    );
    assert_eq!(smtp.connections_opened(), 1);
    // With Nagle on, lettre needs >= 40 ms a message (MAILSTACK.md): 2.4 s here.
    assert!(
        elapsed < Duration::from_millis(2000),
        "60 messages took {elapsed:?}"
    );
}

#[tokio::test]
async fn after_the_server_restarts_the_next_send_reconnects_by_itself() {
    let mut sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    smtp.send_raw(FROM, TO, &reply(1)).await.unwrap();

    sink.restart().unwrap();
    smtp.send_raw(FROM, TO, &reply(2)).await.unwrap();

    let received = sink.received().unwrap();
    assert_eq!(
        received.iter().map(|r| r.raw.clone()).collect::<Vec<_>>(),
        [reply(1), reply(2)]
    );
    assert_ne!(received[0].peer_port, received[1].peer_port);
    assert_eq!(smtp.connections_opened(), 2);
}

#[tokio::test]
async fn a_stopped_server_is_a_transient_connection_error() {
    let mut sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    sink.stop();
    let err = smtp.send_raw(FROM, TO, &reply(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::Connection {
                stage: SmtpStage::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn starttls_with_auth_delivers_and_a_wrong_password_is_permanent() {
    let sink = SmtpSinkServer::start(SinkOptions {
        starttls: true,
        auth: Some(("refundd".into(), "s3cret".into())),
        ..SinkOptions::default()
    })
    .unwrap();
    let smtp = SmtpSink::new(sink.config()).unwrap();
    smtp.send_raw(FROM, TO, &reply(1)).await.unwrap();
    assert_eq!(sink.received().unwrap()[0].raw, reply(1));

    let mut wrong = sink.config();
    wrong.password = Some("wrong".into());
    let err = SmtpSink::new(wrong)
        .unwrap()
        .send_raw(FROM, TO, &reply(2))
        .await
        .unwrap_err();
    assert!(matches!(err, SmtpError::Auth(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn several_connections_carry_concurrent_sends_and_each_message_arrives_once() {
    let sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let mut config = sink.config();
    config.connections = 3;
    let smtp = SmtpSink::new(config).unwrap();
    let sends = (0..30).map(|n| {
        let smtp = &smtp;
        async move { smtp.send_raw(FROM, TO, &reply(n)).await }
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }

    let received = sink.received().unwrap();
    let mut bodies: Vec<Vec<u8>> = received.iter().map(|r| r.raw.clone()).collect();
    bodies.sort();
    let mut expected: Vec<Vec<u8>> = (0..30).map(reply).collect();
    expected.sort();
    assert_eq!(bodies, expected, "every message exactly once");
    let mut ports: Vec<u16> = received.iter().map(|r| r.peer_port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(
        (2..=3).contains(&ports.len()),
        "30 concurrent sends over {} connections",
        ports.len()
    );
    assert_eq!(
        smtp.connections_opened(),
        ports.len() as u64,
        "no connect per message"
    );
}

#[tokio::test]
async fn close_says_quit_on_every_open_connection() {
    let sink = SmtpSinkServer::start(SinkOptions::default()).unwrap();
    let mut config = sink.config();
    config.connections = 2;
    let smtp = SmtpSink::new(config).unwrap();
    let (one, two) = (reply(1), reply(2));
    let (a, b) = tokio::join!(smtp.send_raw(FROM, TO, &one), smtp.send_raw(FROM, TO, &two));
    a.unwrap();
    b.unwrap();
    assert!(sink.quits().unwrap().is_empty(), "no QUIT while open");

    smtp.close().await;

    let mut used: Vec<u16> = sink
        .received()
        .unwrap()
        .iter()
        .map(|r| r.peer_port)
        .collect();
    used.sort_unstable();
    used.dedup();
    let mut quits = sink.quits().unwrap();
    quits.sort_unstable();
    assert_eq!(
        quits, used,
        "each connection that carried mail said QUIT once"
    );
}
