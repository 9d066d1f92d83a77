//! Throughput of the decision core: parse + screen + extract + decide on
//! one message, single-threaded, with peak memory (VmHWM) reported.
//!
//! Run: `cargo bench --bench decision_core` (release profile). Two inputs:
//! a realistic ~5 KB multipart/alternative customer mail with a quoted
//! earlier reply, and the same mail with a 10 MB image attachment.

use chrono::{Duration, TimeZone, Utc};
use std::hint::black_box;
use std::time::Instant;

use refundd::config::Settings;
use refundd::domain::{LedgerFacts, Order, OrderLookup, Wallet, WalletFacts, WalletStatus};
use refundd::extract::Extractor;
use refundd::{parse, policy, screen};

fn typical_mail(attachment_bytes: usize) -> Vec<u8> {
    let mut text = String::from(
        "Hi Anumi team,\r\n\r\nI bought the Starter 50 pack last week but I have not used any of the credits yet.\r\n\
         Could you please refund it to my card? The invoice number is ANUMI-KQWZPLMA-0001.\r\n\r\nThanks a lot,\r\nAnn\r\n\r\n\
         On Mon, 1 Jun 2026 at 10:00, Anumi <hello@anumi.example> wrote:\r\n",
    );
    while text.len() < 2300 {
        text.push_str("> Thank you for your purchase! Your credits are ready to use. Generate your first avatar now.\r\n");
    }
    let html = format!(
        "<div dir=\"ltr\"><p>Hi Anumi team,</p><p>I bought the Starter 50 pack last week but I have not used any of the credits yet. \
         Could you please refund it to my card? The invoice number is <b>ANUMI-KQWZPLMA-0001</b>.</p><p>Thanks a lot,<br>Ann</p>\
         <blockquote>{}</blockquote></div>",
        "Thank you for your purchase! Your credits are ready to use. ".repeat(25)
    );
    let mut mail = format!(
        "Return-Path: <ann@example.com>\r\nAuthentication-Results: mx.anumi.example; dmarc=pass header.from=example.com\r\n\
         From: Ann Example <ann@example.com>\r\nTo: refunds@anumi.example\r\nSubject: Refund for my Starter pack\r\n\
         Date: Fri, 05 Jun 2026 09:12:00 +0000\r\nMessage-ID: <CAF12345@mail.example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
    );
    if attachment_bytes > 0 {
        mail.push_str("--outer\r\nContent-Type: image/png; name=\"result.png\"\r\nContent-Disposition: attachment; filename=\"result.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let line = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==AAAA\r\n";
        let mut written = 0;
        while written < attachment_bytes {
            mail.push_str(line);
            written += line.len();
        }
    }
    mail.push_str("--outer--\r\n");
    mail.into_bytes()
}

fn ledger() -> LedgerFacts {
    let created = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    let order = Order {
        id: "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e".into(),
        wallet_id: "w_ann".into(),
        product: "Starter 50".into(),
        credits: 50,
        amount: 900,
        tax_amount: Some(171),
        currency: "EUR".into(),
        invoice_number: Some("ANUMI-KQWZPLMA-0001".into()),
        receipt_number: None,
        created_at: created,
    };
    LedgerFacts {
        sender_wallet: Some(WalletFacts {
            wallet: Wallet {
                id: "w_ann".into(),
                email: "ann@example.com".into(),
                status: WalletStatus::Active,
                created_at: created,
            },
            orders: vec![order.clone()],
            generations: vec![],
            credits: vec![],
            refunds: vec![],
            chargebacks: vec![],
            pending_refunds: vec![],
        }),
        cited_orders: vec![OrderLookup::Own {
            reference: "ANUMI-KQWZPLMA-0001".into(),
            order_id: order.id,
        }],
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn run(name: &str, mail: &[u8], iterations: u32) {
    let mut settings = Settings::default();
    settings.sender_auth.trusted_authserv_ids = vec!["mx.anumi.example".into()];
    let extractor = Extractor::new(&settings.extract, &settings.sender_auth).unwrap();
    let ledger = ledger();
    let received = Utc.with_ymd_and_hms(2026, 6, 5, 9, 12, 0).unwrap();
    let own = vec![settings.reply.from.clone()];
    let one = || {
        let parsed = parse::parse(black_box(mail)).unwrap();
        let mut facts = extractor.extract(&parsed, received);
        facts.auto = screen::screen(&parsed, &own);
        policy::decide(
            &facts,
            &ledger,
            &settings.policy,
            received,
            received + Duration::minutes(1),
        )
    };
    let decision = one();
    assert_eq!(
        decision.outcome,
        refundd::domain::Outcome::Approved,
        "the bench mail is a clear refund"
    );
    for _ in 0..iterations / 10 {
        black_box(one());
    }
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(one());
    }
    let elapsed = start.elapsed();
    let per = elapsed / iterations;
    println!(
        "{name:<28} {:>6} KiB  {:>9.1} µs/msg  {:>9.0} msg/s  peak RSS {} KiB",
        mail.len() / 1024,
        per.as_secs_f64() * 1e6,
        f64::from(iterations) / elapsed.as_secs_f64(),
        peak_rss_kib()
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n_small, n_big) = if quick { (50, 2) } else { (20_000, 30) };
    run("typical 5 KB mail", &typical_mail(0), n_small);
    run(
        "mail with 10 MB attachment",
        &typical_mail(10 * 1024 * 1024),
        n_big,
    );
}
