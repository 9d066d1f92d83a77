//! Sender authentication through the whole pipeline (SQLite, the demo
//! ledger): the Microsoft 365 preset approves a verified customer's
//! refund and refuses the same header forged lower down or added by the
//! sender; in-process verification (a stub DNS server on loopback) does the
//! same for a DKIM-signed message; machine mail in any line ending is
//! ignored, never answered.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use refundd::config::{SenderAuthConfig, Settings};
use refundd::domain::{Action, Flag, Outcome};
use refundd::extract::config::{Provider, SenderAuthMode};
use refundd::ingest::{RawMessage, store_message};
use refundd::pipeline::{Pipeline, Processed};
use refundd::store::{CaseRow, Store, import_jsonl};
use refundd::verify::stub_dns::StubDns;

use crate::support::{TestDb, repo};

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 5, 9, 12, 0).unwrap()
}

/// A fresh SQLite store with the demo ledger, and a pipeline on `settings`.
struct Desk {
    _db: TestDb,
    store: Store,
    pipeline: Pipeline,
}

impl Desk {
    async fn new(sender_auth: SenderAuthConfig) -> Desk {
        let db = TestDb::sqlite();
        let store = Store::connect(&db.url).await.unwrap();
        let ledger = std::fs::read(repo().join("examples/demo/ledger.jsonl")).unwrap();
        let report = import_jsonl(&store, ledger.as_slice(), |_| {})
            .await
            .unwrap();
        assert!(report.rejected.is_empty());
        let settings = Settings {
            sender_auth,
            ..Settings::default()
        };
        let pipeline = Pipeline::new(store.clone(), Arc::new(settings)).unwrap();
        Desk {
            _db: db,
            store,
            pipeline,
        }
    }

    async fn deliver(&self, bytes: Vec<u8>) -> (Processed, CaseRow) {
        store_message(
            &self.store,
            RawMessage {
                source: "test".into(),
                bytes,
                received_at: received(),
                full_size: None,
            },
        )
        .await
        .unwrap();
        let done = self
            .pipeline
            .process_pending(received() + chrono::Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        let case = self.store.case(done[0].case_id).await.unwrap().unwrap();
        (done[0].clone(), case)
    }
}

/// Ann's demo request (an unused pack, 9.00 EUR) as the customer sent it:
/// no trace or authentication headers of any receiving server.
fn ann_as_sent() -> String {
    let raw =
        std::fs::read_to_string(repo().join("examples/demo/mail/01-ann-unused-pack.eml")).unwrap();
    let raw = raw.replace('\n', "\r\n").replace("\r\r\n", "\r\n");
    raw.lines()
        .filter(|l| {
            !l.starts_with("Return-Path:")
                && !l.starts_with("Received:")
                && !l.starts_with("Authentication-Results:")
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

const M365_INTERNAL: &str = "Received: from BN9PR03CA0123.namprd03.prod.outlook.com (2603:10b6:408:fe::8) by DM6PR02MB1234.namprd02.prod.outlook.com (2603:10b6:5:1b4::19) with Microsoft SMTP Server (version=TLS1_2) id 15.20.7633.15; Fri, 5 Jun 2026 09:12:02 +0000\r\n";
const M365_RESULTS: &str = "Authentication-Results: spf=pass (sender IP is 192.0.2.10)\r\n smtp.mailfrom=example.com; dkim=pass (signature was verified)\r\n header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass\r\n reason=100\r\n";
const M365_SPF: &str = "Received-SPF: Pass (protection.outlook.com: domain of example.com designates 192.0.2.10 as permitted sender) receiver=protection.outlook.com; client-ip=192.0.2.10; helo=mail.example.com; pr=C\r\n";
const M365_EDGE: &str = "Received: from mail.example.com (192.0.2.10) by BN8NAM11FT012.mail.protection.outlook.com (10.13.177.69) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.15 via Frontend Transport; Fri, 5 Jun 2026 09:12:01 +0000\r\n";
const SENDER_HOP: &str = "Received: from [10.0.0.5] by mail.example.com with ESMTPSA; Fri, 5 Jun 2026 09:12:00 +0000\r\n";

fn m365_preset() -> SenderAuthConfig {
    SenderAuthConfig {
        providers: vec![Provider::Microsoft365],
        ..SenderAuthConfig::default()
    }
}

fn cash_refund_of_ann(case: &CaseRow) -> bool {
    case.decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::CashRefund { amount: 900, .. }))
}

#[tokio::test]
async fn a_microsoft_365_message_from_a_verified_customer_is_approved_with_the_preset() {
    let sent = ann_as_sent();
    let delivered = format!("{M365_INTERNAL}{M365_RESULTS}{M365_SPF}{M365_EDGE}{SENDER_HOP}{sent}");

    let desk = Desk::new(m365_preset()).await;
    let (done, case) = desk.deliver(delivered.clone().into_bytes()).await;
    assert_eq!(
        done.outcome,
        Outcome::Approved,
        "{:#?}",
        case.decision.trace
    );
    assert!(cash_refund_of_ann(&case));
    let last = case.decision.trace.last().unwrap();
    assert!(
        last.facts
            .contains(&("auth_evidence".into(), "microsoft365".into())),
        "the decision records the evidence it used: {last:?}"
    );

    // Without the preset, the same message waits for a person (as before).
    let desk = Desk::new(SenderAuthConfig::default()).await;
    let (done, case) = desk.deliver(delivered.into_bytes()).await;
    assert_eq!(done.outcome, Outcome::Review);
    assert!(case.decision.flags.contains(&Flag::SenderUnverified));
}

#[tokio::test]
async fn the_microsoft_365_header_forged_lower_down_or_added_by_the_sender_moves_no_money() {
    let sent = ann_as_sent();
    let cases = [
        (
            "forged below Microsoft's edge",
            format!("{M365_INTERNAL}{M365_SPF}{M365_EDGE}{M365_RESULTS}{SENDER_HOP}{sent}"),
        ),
        (
            "Microsoft says fail, the sender's pass lies below",
            format!(
                "{M365_INTERNAL}{}{M365_EDGE}{M365_RESULTS}{sent}",
                M365_RESULTS.replace("dmarc=pass", "dmarc=fail")
            ),
        ),
        (
            "added by the sender, never through Microsoft",
            format!(
                "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.elsewhere.test with ESMTPS; Fri, 5 Jun 2026 09:12:01 +0000\r\n{M365_RESULTS}{sent}"
            ),
        ),
    ];
    for (name, delivered) in cases {
        let desk = Desk::new(m365_preset()).await;
        let (done, case) = desk.deliver(delivered.into_bytes()).await;
        assert_eq!(done.outcome, Outcome::Review, "{name}");
        assert!(case.decision.actions.is_empty(), "{name}");
        assert!(
            case.decision.flags.contains(&Flag::SenderUnverified),
            "{name}"
        );
        let last = case.decision.trace.last().unwrap();
        assert!(
            last.finding.contains("would have approved"),
            "{name}: {last:?}"
        );
    }
}

#[allow(deprecated)]
fn rsa() -> RsaKey<Sha256> {
    let pem = std::fs::read_to_string(repo().join("tests/fixtures/dkim/rsa-2048.pem")).unwrap();
    RsaKey::<Sha256>::from_rsa_pem(&pem).unwrap()
}

/// Ann's request as example.com's server signs it (DKIM, key `s1`).
fn signed_ann() -> String {
    let sent = format!("{}\r\n", ann_as_sent());
    let signature = DkimSigner::from_key(rsa())
        .domain("example.com")
        .selector("s1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(sent.as_bytes())
        .unwrap()
        .to_header();
    format!("{signature}{sent}")
}

/// A stub DNS with example.com's DKIM key and DMARC policy, and the
/// verify-mode configuration that asks it.
async fn example_com_in_dns() -> (StubDns, SenderAuthConfig) {
    let dns = StubDns::start().await.unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(rsa().public_key());
    dns.txt(
        "s1._domainkey.example.com",
        &format!("v=DKIM1; k=rsa; p={public}"),
    );
    dns.txt("_dmarc.example.com", "v=DMARC1; p=reject");
    let config = SenderAuthConfig {
        mode: SenderAuthMode::Verify,
        resolver: Some(dns.addr().to_string()),
        ..SenderAuthConfig::default()
    };
    (dns, config)
}

#[tokio::test]
async fn in_process_verification_approves_a_signed_message_and_refuses_a_tampered_one() {
    let (_dns, config) = example_com_in_dns().await;
    let signed = signed_ann();

    let desk = Desk::new(config.clone()).await;
    let (done, case) = desk.deliver(signed.clone().into_bytes()).await;
    assert_eq!(
        done.outcome,
        Outcome::Approved,
        "{:#?}",
        case.decision.trace
    );
    let last = case.decision.trace.last().unwrap();
    assert!(
        last.facts
            .contains(&("auth_evidence".into(), "dmarc".into())),
        "{last:?}"
    );
    assert!(
        last.facts
            .iter()
            .any(|(k, v)| k == "sender_auth" && v.contains("dkim=pass (example.com)")),
        "{last:?}"
    );

    let desk = Desk::new(config).await;
    let tampered = signed.replace("never used it", "never used it, and refund my Pro pack too");
    let (done, case) = desk.deliver(tampered.into_bytes()).await;
    assert_eq!(done.outcome, Outcome::Review);
    assert!(case.decision.actions.is_empty());
}

#[tokio::test]
async fn a_replay_reads_the_sender_as_verified_when_decided_not_as_dns_says_today() {
    let (dns, config) = example_com_in_dns().await;
    let signed = signed_ann();
    let desk = Desk::new(config.clone()).await;
    let (done, _) = desk.deliver(signed.into_bytes()).await;
    assert_eq!(done.outcome, Outcome::Approved);

    // The DNS server is gone since (keys rotate, domains lapse): a replay
    // decides with the verification made at the time.
    drop(dns);
    let in_force = Settings {
        sender_auth: config,
        ..Settings::default()
    };
    let replay = |candidate: Option<Settings>| {
        let store = desk.store.clone();
        let in_force = in_force.clone();
        async move {
            refundd::replay::replay(
                &store,
                &in_force,
                candidate.as_ref(),
                refundd::replay::Source::Stored(refundd::store::ReplayScope::default()),
                &refundd::progress::NoProgress,
            )
            .await
            .unwrap()
        }
    };
    let report = replay(None).await;
    assert_eq!(report.decided, 1);
    assert!(report.drift.is_empty(), "{:#?}", report.drift);
    assert_eq!(report.totals.before.outcomes["approved"], 1);

    // A candidate that trusts headers only has no header to trust here:
    // the refund would wait for a person.
    let mut headers_only = in_force.clone();
    headers_only.sender_auth.mode = SenderAuthMode::Headers;
    let report = replay(Some(headers_only)).await;
    assert_eq!(report.changed.len(), 1, "{:#?}", report.changed);
    assert_eq!(report.changed[0].before.outcome, Outcome::Approved);
    assert_eq!(report.changed[0].after.outcome, Outcome::Review);
}

#[tokio::test]
async fn machine_mail_in_every_line_ending_is_ignored_and_never_answered() {
    let dir = repo().join("tests/fixtures/machine_mail");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 14,
        "found only {} fixtures in {}",
        files.len(),
        dir.display()
    );
    let desk = Desk::new(SenderAuthConfig::default()).await;
    let mut seen = 0;
    let message_id = regex::Regex::new(r"(?im)^(message-id:\s*<)").unwrap();
    for path in &files {
        let raw = std::fs::read(path).unwrap();
        let lf = String::from_utf8_lossy(&raw)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        for (variant, eol) in [("CRLF", "\r\n"), ("CR only", "\r")] {
            // Each delivery is a message of its own (Message-ID and bytes).
            let unique = message_id.replace(&lf, format!("${{1}}v{seen}.").as_str());
            let bytes = format!("X-Test-Variant: {seen}\n{unique}").replace('\n', eol);
            let (done, case) = desk.deliver(bytes.into_bytes()).await;
            let name = path.file_name().unwrap().to_string_lossy();
            assert_eq!(
                done.outcome,
                Outcome::Ignored,
                "{name} ({variant}): {:#?}",
                case.decision.trace
            );
            assert_eq!(
                done.reply_message_id, None,
                "{name} ({variant}) was answered"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, files.len() * 2);
}
