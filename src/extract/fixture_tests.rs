//! Golden fixtures (`tests/fixtures/mail/*.eml`, written for this project)
//! through redact -> parse -> screen -> extract, and a robustness pass over
//! the third-party corpora in `../shared/corpora` (or `$REFUNDD_CORPORA`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};

use super::Extractor;
use super::config::{ExtractConfig, SenderAuthConfig};
use crate::domain::{AutoKind, Category, Flag, Language, MessageFacts, OrderRef};
use crate::parse::{ParseError, parse, redact_secrets};
use crate::screen::screen;

const OWN: &str = "refunds@anumi.app";
const ORDER_UUID: &str = "3f6c1d2e-8a4b-4c7d-9e0f-1a2b3c4d5e6f";

static EXTRACTOR: LazyLock<Extractor> = LazyLock::new(|| {
    let auth = SenderAuthConfig {
        trusted_authserv_ids: vec!["mx.anumi.app".into()],
        ..SenderAuthConfig::default()
    };
    Extractor::new(&ExtractConfig::default(), &auth).expect("the default configuration builds")
});

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap()
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail")
}

/// Redacts, parses, screens and extracts one raw message.
fn run(raw: &[u8]) -> Result<(MessageFacts, Option<AutoKind>), ParseError> {
    let redacted = redact_secrets(raw);
    let email = parse(&redacted)?;
    let auto = screen(&email, &[OWN.to_owned()]);
    let facts = EXTRACTOR.extract(&email, received());
    Ok((facts, auto))
}

/// What a fixture must yield.
struct Expected {
    file: &'static str,
    auto: Option<AutoKind>,
    category: Category,
    flags: &'static [Flag],
    refs: Vec<OrderRef>,
    generations: &'static [&'static str],
    /// (image attached, result linked)
    evidence: (bool, bool),
    language: Language,
    dmarc_pass: bool,
}

fn invoice(v: &str) -> OrderRef {
    OrderRef::Invoice(v.into())
}

fn expectations() -> Vec<Expected> {
    use Category::*;
    let base = |file| Expected {
        file,
        auto: None,
        category: Other,
        flags: &[],
        refs: vec![],
        generations: &[],
        evidence: (false, false),
        language: Language::En,
        dmarc_pass: true,
    };
    vec![
        Expected {
            category: CashRefund,
            refs: vec![invoice("ANUMI-KXQWPLRM-0003")],
            ..base("gmail_alternative_en_cash_refund.eml")
        },
        Expected {
            category: NoResemblance,
            refs: vec![OrderRef::Uuid(ORDER_UUID.into())],
            ..base("outlook_html_only_en_no_resemblance.eml")
        },
        Expected {
            category: FailedGeneration,
            refs: vec![OrderRef::Receipt("RCPT-MNBVCXZL-0012".into())],
            language: Language::De,
            ..base("qp_latin1_de_failed_generation.eml")
        },
        Expected {
            category: WrongStyle,
            generations: &["gen_Fr8x2Q"],
            evidence: (false, true),
            language: Language::Fr,
            ..base("base64_fr_wrong_style.eml")
        },
        Expected {
            category: CashRefund,
            flags: &[Flag::StatutoryRights],
            refs: vec![invoice("ANUMI-ZXCVBNMA-0021")],
            language: Language::Es,
            ..base("es_statutory_refund.eml")
        },
        Expected {
            category: BrokenAnatomy,
            generations: &["gen_7KQ2mX"],
            evidence: (true, false),
            ..base("image_attachment_en_broken_anatomy.eml")
        },
        Expected {
            refs: vec![
                invoice("ANUMI-KXQWPLRM-0003"),
                OrderRef::Uuid(ORDER_UUID.into()),
            ],
            ..base("quoted_reply_trigger_words.eml")
        },
        Expected {
            category: CashRefund,
            refs: vec![invoice("ANUMI-KXQWPLRM-0003")],
            dmarc_pass: false,
            ..base("forged_lower_auth_results.eml")
        },
        Expected {
            category: CashRefund,
            refs: vec![OrderRef::Uuid(ORDER_UUID.into())],
            ..base("qp_soft_break_portal_link.eml")
        },
        // Screened mail is still extracted (the pipeline records it as
        // `ignored`); its words are whatever the robot wrote.
        Expected {
            auto: Some(AutoKind::AutoReply),
            category: CashRefund,
            flags: &[Flag::Chargeback],
            ..base("auto_reply_out_of_office.eml")
        },
        Expected {
            auto: Some(AutoKind::Bounce),
            category: CashRefund,
            refs: vec![invoice("ANUMI-0001")],
            dmarc_pass: false,
            ..base("dsn_bounce.eml")
        },
        Expected {
            category: Subjective,
            language: Language::De,
            ..base("outlook_de_subjective_quoted.eml")
        },
    ]
}

#[test]
fn every_fixture_yields_its_expected_facts() {
    let expectations = expectations();
    let mut failures = Vec::new();
    for e in &expectations {
        let raw = std::fs::read(fixture_dir().join(e.file)).expect("fixture readable");
        let (facts, auto) = run(&raw).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        let flags: BTreeSet<Flag> = e.flags.iter().copied().collect();
        let got = (
            auto,
            facts.category,
            &facts.flags,
            &facts.order_refs,
            facts.generation_refs.clone(),
            (facts.evidence.image_attachment, facts.evidence.result_link),
            facts.language,
            facts.auth.dmarc_pass,
        );
        let want = (
            e.auto,
            e.category,
            &flags,
            &e.refs,
            e.generations
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>(),
            e.evidence,
            e.language,
            e.dmarc_pass,
        );
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", e.file));
        }
        assert_eq!(facts.received_at, received());
        assert!(facts.auto.is_none(), "extract leaves auto to screen");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let expected: BTreeSet<&str> = expectations().iter().map(|e| e.file).collect();
    let found: BTreeSet<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    assert!(found.len() >= 10, "only {} fixtures found", found.len());
    let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, expected);
}

#[test]
fn fixture_headers_and_names_decode() {
    let raw = std::fs::read(fixture_dir().join("qp_latin1_de_failed_generation.eml")).unwrap();
    let email = parse(&raw).unwrap();
    assert_eq!(email.subject, "Generierung fehlgeschlagen – Rückerstattung");
    let from = email.from.unwrap();
    assert_eq!(from.address, "j.weiss@posteo.de");
    assert_eq!(from.name.as_deref(), Some("Jürgen Weiß"));
    assert!(email.text.contains("Mit freundlichen Grüßen"));

    let raw = std::fs::read(fixture_dir().join("es_statutory_refund.eml")).unwrap();
    let facts = run(&raw).unwrap().0;
    assert_eq!(
        facts.subject,
        "Solicitud de reembolso – derecho de desistimiento"
    );
    assert_eq!(facts.from_name.as_deref(), Some("Lucía Fernández"));
    assert_eq!(facts.auth.authserv_id.as_deref(), Some("mx.anumi.app"));
}

#[test]
fn outlook_html_only_mail_keeps_the_quoted_reply_out_of_the_fresh_text() {
    let raw = std::fs::read(fixture_dir().join("outlook_html_only_en_no_resemblance.eml")).unwrap();
    let email = parse(&raw).unwrap();
    assert!(email.html.is_some());
    let fresh = super::fresh_text(&email.text);
    assert!(
        fresh.contains("doesn\u{2019}t look like me at all"),
        "{fresh}"
    );
    assert!(!fresh.contains("chargeback"), "{fresh}");
    assert!(
        !email.text.contains("font-family"),
        "style leaked: {}",
        email.text
    );
    assert_eq!(email.in_reply_to, vec!["reply-7q2k-1@anumi.app"]);
}

#[test]
fn the_portal_token_split_by_soft_breaks_never_survives_redaction() {
    let raw = std::fs::read(fixture_dir().join("qp_soft_break_portal_link.eml")).unwrap();
    let raw_text = String::from_utf8_lossy(&raw);
    assert!(
        raw_text.contains("polar_cst_Q8mZr4Tk2W=\r\nv9Lp6"),
        "fixture lost its split token"
    );
    let redacted = redact_secrets(&raw);
    let email = parse(&redacted).unwrap();
    assert!(!email.text.contains("Q8mZr4"), "{}", email.text);
    assert!(!String::from_utf8_lossy(&redacted).contains("Q8mZr4"));
    assert!(
        email
            .text
            .contains("customer_session_token=REDACTED&email=zoe%40example.net"),
        "{}",
        email.text
    );
    assert!(email.text.trim_end().ends_with("Zoë"), "{}", email.text);
}

/// Every file under `dir`, recursively, in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("corpus folder readable") {
            let path = entry.expect("corpus entry readable").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_message_parses_to_facts_or_a_parse_error() {
    let dir = std::env::var_os("REFUNDD_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: corpus folder {} is absent (set REFUNDD_CORPORA to run this test)",
            dir.display()
        );
        return;
    }
    let files = files_under(&dir);
    let (mut facts_count, mut errors) = (0, 0);
    for path in &files {
        let raw = std::fs::read(path).expect("corpus file readable");
        assert_eq!(
            redact_secrets(&raw).as_ref(),
            raw.as_slice(),
            "{}: redaction changed a message without tokens",
            path.display()
        );
        match run(&raw) {
            Ok((facts, _auto)) => {
                let email = parse(&raw).unwrap();
                assert_eq!(facts.message_id, email.message_id, "{}", path.display());
                assert_eq!(
                    facts.from,
                    email.from.map(|f| f.address).unwrap_or_default(),
                    "{}",
                    path.display()
                );
                let unique: BTreeSet<&OrderRef> = facts.order_refs.iter().collect();
                assert_eq!(unique.len(), facts.order_refs.len(), "{}", path.display());
                facts_count += 1;
            }
            Err(ParseError::NotMail { len }) => {
                assert_eq!(len, raw.len());
                errors += 1;
            }
        }
    }
    eprintln!(
        "corpus: {} files, {facts_count} facts, {errors} parse errors",
        files.len()
    );
    assert!(files.len() > 50, "only {} corpus files read", files.len());
    assert_eq!(facts_count + errors, files.len());
}
