//! Every reply the engine can choose, rendered from what the ledger import
//! contract guarantees: a ledger of required fields only (no tax, no
//! invoice or receipt number, no generation `refunded_at`) is imported
//! into a real store, the policy decides one message per reply kind, and
//! the reply context is built as the pipeline builds it
//! (`pipeline::answer::reply_context`), then rendered in every language,
//! text and HTML. The same cases on a ledger with every optional fact
//! quote those facts (the refund time, the invoice number).

use chrono::{DateTime, Duration, Utc};
use regex::Regex;
use std::collections::{BTreeSet, HashSet};

use refundd::domain::{
    Category, Decision, Evidence, Language, MessageFacts, OrderRef, ReplyKind, SenderAuth,
};
use refundd::pipeline::Addressee;
use refundd::pipeline::answer::reply_context;
use refundd::policy::{PolicyConfig, decide};
use refundd::queue;
use refundd::reply::{RenderedReply, ReplyRenderer, format_date};
use refundd::store::{CaseId, Store, import_jsonl};

const LANGUAGES: [Language; 4] = [Language::En, Language::De, Language::Fr, Language::Es];

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

/// When every message of these cases reached our server.
fn received() -> DateTime<Utc> {
    t("2026-06-05T09:30:00Z")
}

/// When the ledger (with every optional fact) says a failed generation's
/// credits came back.
fn generation_refunded_at() -> DateTime<Utc> {
    t("2026-06-03T18:05:00Z")
}

/// When the refund line of the already-refunded order was written.
fn order_refunded_at() -> DateTime<Utc> {
    t("2026-06-04T08:00:00Z")
}

/// The order UUID of case `n` (each case has its own wallet and orders).
fn order_id(n: usize, k: usize) -> String {
    format!("c0ffee{n:02}-{k:04}-4abc-8def-0123456789ab")
}

/// The invoice number the full ledger gives that order.
fn invoice(n: usize, k: usize) -> String {
    format!("ANUMI-QWERTYUI-{:04}", n * 10 + k)
}

/// One message and the ledger lines of its sender's wallet.
struct Story {
    kind: ReplyKind,
    category: Category,
    /// Index of the case; its sender is `c{n}@example.com`.
    n: usize,
    wallet_status: &'static str,
    /// `(credits, amount, bought_at)` per order.
    orders: Vec<(i64, i64, &'static str)>,
    /// `(order index, credits, status, refunded)` per generation, all
    /// created the day before the message.
    generations: Vec<(Option<usize>, i64, &'static str, bool)>,
    /// Order indexes fully refunded before the message.
    refunded_orders: Vec<usize>,
    /// Order indexes the message cites by UUID.
    cites: Vec<usize>,
    /// A reference the ledger does not know.
    cites_unknown: bool,
    attached: bool,
    /// The sender has no wallet at all.
    stranger: bool,
}

fn story(kind: ReplyKind, category: Category, n: usize) -> Story {
    Story {
        kind,
        category,
        n,
        wallet_status: "active",
        orders: vec![(50, 900, "2026-06-01T10:00:00Z")],
        generations: vec![],
        refunded_orders: vec![],
        cites: vec![],
        cites_unknown: false,
        attached: false,
        stranger: false,
    }
}

/// One story per reply kind that is ever sent.
fn stories() -> Vec<Story> {
    use Category as C;
    use ReplyKind as K;
    let mut all = Vec::new();
    let mut add = |kind, category, change: &dyn Fn(&mut Story)| {
        let mut s = story(kind, category, all.len());
        change(&mut s);
        all.push(s);
    };
    add(K::FailedGenerationCredited, C::FailedGeneration, &|s| {
        s.generations = vec![(Some(0), 5, "failed", false)];
    });
    add(
        K::FailedGenerationAlreadyRefunded,
        C::FailedGeneration,
        &|s| {
            s.generations = vec![(Some(0), 5, "failed", true)];
        },
    );
    add(K::CashRefundApproved, C::CashRefund, &|s| s.cites = vec![0]);
    add(K::CashRefundAllUsed, C::CashRefund, &|s| {
        s.generations = vec![(Some(0), 50, "succeeded", false)];
        s.cites = vec![0];
    });
    add(K::AlreadyRefunded, C::CashRefund, &|s| {
        s.refunded_orders = vec![0];
        s.cites = vec![0];
    });
    add(K::WindowExpired, C::CashRefund, &|s| {
        s.orders = vec![(50, 900, "2026-05-01T10:00:00Z")];
        s.cites = vec![0];
    });
    add(K::CourtesyCredited, C::NoResemblance, &|s| {
        s.generations = vec![(Some(0), 5, "succeeded", false)];
        s.attached = true;
    });
    add(K::NeedResult, C::WrongStyle, &|s| {
        s.generations = vec![(Some(0), 5, "succeeded", false)];
    });
    add(K::SubjectiveDenied, C::Subjective, &|s| {
        s.generations = vec![(Some(0), 5, "succeeded", false)];
    });
    add(K::ModerationBlock, C::ModerationBlock, &|s| {
        s.generations = vec![(Some(0), 0, "blocked", false)];
    });
    add(K::TerminatedDenied, C::CashRefund, &|s| {
        s.wallet_status = "terminated";
        s.cites = vec![0];
    });
    add(K::UnknownSender, C::CashRefund, &|s| s.stranger = true);
    add(K::NeedOrderId, C::CashRefund, &|s| {
        s.orders = vec![
            (50, 900, "2026-06-01T10:00:00Z"),
            (200, 2900, "2026-06-02T10:00:00Z"),
        ];
    });
    add(K::UnknownOrder, C::CashRefund, &|s| s.cites_unknown = true);
    add(K::ReviewAcknowledged, C::ContentViolation, &|s| {
        s.generations = vec![(Some(0), 5, "succeeded", false)];
        s.attached = true;
    });
    all
}

/// The JSON Lines of every story's wallet: required fields only, or with
/// every optional fact of the contract (`full`).
fn ledger(stories: &[Story], full: bool) -> String {
    let mut lines = Vec::new();
    for s in stories.iter().filter(|s| !s.stranger) {
        let n = s.n;
        lines.push(format!(
            r#"{{"type":"wallet","id":"w_{n}","email":"c{n}@example.com","status":"{}","created_at":"2026-05-01T09:00:00Z"}}"#,
            s.wallet_status
        ));
        for (k, (credits, amount, bought)) in s.orders.iter().enumerate() {
            let optional = if full {
                format!(
                    r#""tax_amount":{},"invoice_number":"{}","receipt_number":"RCPT-QWERTYUI-{:04}","#,
                    amount / 5,
                    invoice(n, k),
                    n * 10 + k
                )
            } else {
                String::new()
            };
            lines.push(format!(
                r#"{{"type":"order","id":"{}","wallet":"w_{n}","product":"Pack {credits}","credits":{credits},"amount":{amount},{optional}"currency":"EUR","created_at":"{bought}"}}"#,
                order_id(n, k)
            ));
        }
        for (g, (order, credits, status, refunded)) in s.generations.iter().enumerate() {
            let order = order
                .map(|k| format!(r#""order":"{}","#, order_id(n, k)))
                .unwrap_or_default();
            let refunded_at = if full && *refunded {
                format!(
                    r#","refunded_at":"{}""#,
                    generation_refunded_at().to_rfc3339()
                )
            } else {
                String::new()
            };
            lines.push(format!(
                r#"{{"type":"generation","id":"gen_{n}_{g}","wallet":"w_{n}",{order}"credits":{credits},"status":"{status}","style":"ghibli","refunded":{refunded}{refunded_at},"created_at":"2026-06-04T09:00:00Z"}}"#
            ));
        }
        for &k in &s.refunded_orders {
            lines.push(format!(
                r#"{{"type":"refund","id":"rf_{n}_{k}","order":"{}","amount":{},"created_at":"{}"}}"#,
                order_id(n, k),
                s.orders[k].1,
                order_refunded_at().to_rfc3339()
            ));
        }
    }
    lines.join("\n")
}

fn message(s: &Story) -> MessageFacts {
    let mut order_refs: Vec<OrderRef> = s
        .cites
        .iter()
        .map(|&k| OrderRef::Uuid(order_id(s.n, k)))
        .collect();
    if s.cites_unknown {
        order_refs.push(OrderRef::Invoice("ANUMI-ZZZZZZZZ-0999".into()));
    }
    MessageFacts {
        message_id: Some(format!("m{}@example.com", s.n)),
        from: format!("c{}@example.com", s.n),
        from_name: Some("Mia".into()),
        subject: "Refund".into(),
        received_at: received(),
        language: Language::En,
        order_refs,
        generation_refs: Vec::new(),
        evidence: Evidence {
            image_attachment: s.attached,
            result_link: false,
        },
        category: s.category,
        flags: BTreeSet::new(),
        auth: SenderAuth {
            dmarc_pass: true,
            authserv_id: Some("mx.anumi.example".into()),
            dmarc_result: Some("pass".into()),
            ..SenderAuth::default()
        },
        auto: None,
    }
}

/// Imports the ledger into a fresh store and decides every story on it.
async fn decided(full: bool) -> Vec<(Story, MessageFacts, Decision)> {
    let stories = stories();
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let text = ledger(&stories, full);
    let report = import_jsonl(&store, text.as_bytes(), |_| {}).await.unwrap();
    assert_eq!(report.rejected, vec![], "the ledger is contract-conforming");
    let mut out = Vec::new();
    for s in stories {
        let msg = message(&s);
        let facts = store
            .ledger_facts(&msg.from, &msg.order_refs)
            .await
            .unwrap();
        let now = received() + Duration::minutes(1);
        let d = decide(&msg, &facts, &PolicyConfig::default(), received(), now);
        assert_eq!(d.reply, s.kind, "story {}: {:#?}", s.n, d.trace);
        out.push((s, msg, d));
    }
    store.close().await;
    out
}

/// The reply to `msg` in `language`, with its context built as the
/// pipeline builds it (a review deadline only while the case is open).
fn render(
    renderer: &ReplyRenderer,
    msg: &MessageFacts,
    d: &Decision,
    language: Language,
) -> RenderedReply {
    let to = Addressee {
        to: msg.from.clone(),
        name: msg.from_name.clone(),
        subject: msg.subject.clone(),
        language,
        in_reply_to: msg.message_id.clone(),
        references: vec![],
    };
    let open = queue::is_open(queue::status_after(d.outcome));
    let deadline = open.then(|| received() + Duration::days(2));
    let context = reply_context(CaseId(42), &to, d, deadline, None);
    renderer
        .render(&context)
        .unwrap_or_else(|e| panic!("{:?} in {language:?} does not render: {e}", d.reply))
}

/// Text that shows a fact was missing instead of saying so plainly.
fn holes(language: Language) -> Vec<Regex> {
    let date_word = match language {
        Language::En => "on",
        Language::De => "am",
        Language::Fr => "le",
        Language::Es => "el",
    };
    [
        r"\{\{|\}\}|\{%|%\}".to_owned(),
        r"(?i)\b(none|null|undefined|nan)\b".to_owned(),
        // An empty value between words or before punctuation.
        r"[^\S\n]{2,}|[^\S\n][.,)]|\(\s*\)".to_owned(),
        // A date preposition with no date after it.
        format!(r"\b{date_word}\s*[.,;:(]"),
        r"\bam\s+(erstattet|automatisch)".to_owned(),
    ]
    .iter()
    .map(|p| Regex::new(p).unwrap())
    .collect()
}

/// The visible text of the HTML part, one paragraph per line.
fn html_text(html: &str) -> String {
    let tags = Regex::new(r"<[^>]*>").unwrap();
    let body = &html[html.find("<body").unwrap()..];
    tags.replace_all(body, "\n")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_hole_finder_sees_a_missing_fact() {
    let found = |language, text: &str| holes(language).iter().any(|h| h.is_match(text));
    for text in [
        "This order was already refunded on (9.00 EUR).",
        "refunded on .",
        "Refund amount: None.",
        "Refund amount:  EUR.",
        "Order {{ order_reference }}",
    ] {
        assert!(found(Language::En, text), "{text}");
    }
    assert!(found(
        Language::De,
        "Diese Bestellung wurde bereits am erstattet"
    ));
    assert!(found(Language::Fr, "remboursée le ; il n'y a"));
    assert!(found(Language::Es, "se reembolsó el , por lo que"));
    assert!(!found(
        Language::Fr,
        "Cette commande a déjà été remboursée le 4 juin 2026 (9.00 EUR) ; il n'y a donc plus rien à rembourser."
    ));
}

fn every_kind_is_covered(decided: &[(Story, MessageFacts, Decision)]) {
    let kinds: Vec<ReplyKind> = decided.iter().map(|(s, _, _)| s.kind).collect();
    for kind in &kinds {
        // A new ReplyKind the engine chooses must get a story here (no_reply
        // is never sent; reason_denied is only a reviewer's, with an
        // operator's template: tests/it/console.rs).
        match kind {
            ReplyKind::NoReply => panic!("no_reply is never sent"),
            ReplyKind::ReasonDenied => panic!("the engine never denies with a configured reason"),
            ReplyKind::NeedsInfoClosed => panic!("only the deadline sweep closes a case"),
            ReplyKind::FailedGenerationCredited
            | ReplyKind::FailedGenerationAlreadyRefunded
            | ReplyKind::CashRefundApproved
            | ReplyKind::CashRefundAllUsed
            | ReplyKind::AlreadyRefunded
            | ReplyKind::WindowExpired
            | ReplyKind::CourtesyCredited
            | ReplyKind::NeedResult
            | ReplyKind::SubjectiveDenied
            | ReplyKind::ModerationBlock
            | ReplyKind::TerminatedDenied
            | ReplyKind::UnknownSender
            | ReplyKind::NeedOrderId
            | ReplyKind::UnknownOrder
            | ReplyKind::ReviewAcknowledged => {}
        }
    }
    let distinct: HashSet<ReplyKind> = kinds.iter().copied().collect();
    assert_eq!(distinct.len(), 15, "one story per sent reply kind");
}

#[tokio::test]
async fn every_reply_renders_in_every_language_from_a_ledger_of_required_fields_only() {
    let decided = decided(false).await;
    every_kind_is_covered(&decided);
    let renderer = ReplyRenderer::new(None).unwrap();
    let mut rendered = 0;
    for (s, msg, d) in &decided {
        assert_eq!(
            d.reply_facts.refunded_at.is_some(),
            s.kind == ReplyKind::AlreadyRefunded,
            "only the refund line carries a time on this ledger: {:?}",
            s.kind
        );
        for language in LANGUAGES {
            let reply = render(&renderer, msg, d, language);
            let label = format!("{:?} in {language:?}", s.kind);
            for (part, text) in [
                ("text", reply.text.clone()),
                ("html", html_text(&reply.html)),
            ] {
                assert!(
                    text.lines().count() >= 4,
                    "{label} {part} is (nearly) empty: {text}"
                );
                for hole in holes(language) {
                    assert!(
                        !hole.is_match(&text),
                        "{label} {part} has a hole ({hole}): {text}"
                    );
                }
                assert!(text.contains("[#R-42]"), "{label} {part}: {text}");
                if s.kind == ReplyKind::CashRefundApproved || s.kind == ReplyKind::AlreadyRefunded {
                    assert!(
                        text.contains(&order_id(s.n, 0)),
                        "{label} {part} names the order by its id: {text}"
                    );
                }
            }
            rendered += 1;
        }
    }
    assert_eq!(rendered, 15 * 4);
}

#[tokio::test]
async fn with_every_optional_fact_the_replies_quote_the_refund_time_and_invoice_number() {
    let decided = decided(true).await;
    every_kind_is_covered(&decided);
    let renderer = ReplyRenderer::new(None).unwrap();
    for (s, msg, d) in &decided {
        let when = match s.kind {
            ReplyKind::FailedGenerationAlreadyRefunded => Some(generation_refunded_at()),
            ReplyKind::AlreadyRefunded => Some(order_refunded_at()),
            _ => None,
        };
        assert_eq!(d.reply_facts.refunded_at, when, "{:?}", s.kind);
        for language in LANGUAGES {
            let reply = render(&renderer, msg, d, language);
            let label = format!("{:?} in {language:?}", s.kind);
            for (part, text) in [
                ("text", reply.text.clone()),
                ("html", html_text(&reply.html)),
            ] {
                for hole in holes(language) {
                    assert!(!hole.is_match(&text), "{label} {part} ({hole}): {text}");
                }
                if let Some(at) = when {
                    let date = format_date(at, language, false);
                    assert!(text.contains(&date), "{label} {part} lacks {date}: {text}");
                }
                if matches!(
                    s.kind,
                    ReplyKind::CashRefundApproved
                        | ReplyKind::AlreadyRefunded
                        | ReplyKind::CashRefundAllUsed
                        | ReplyKind::WindowExpired
                ) {
                    let number = invoice(s.n, 0);
                    assert!(text.contains(&number), "{label} {part} lacks {number}");
                }
            }
        }
    }
}
