//! Cost of in-process sender verification per message (`[sender_auth]
//! mode = "verify"`): DKIM (RSA 2048 and ed25519), DMARC and ARC against
//! a loopback stub DNS server, with a warm DNS cache (the steady state:
//! a customer's domain keys and policy are cached until their TTL), and
//! the same with a cold cache (every message asks DNS; loopback, so a
//! lower bound for real DNS).
//!
//! Run: `cargo bench --bench sender_verify` (release profile).

use base64::Engine;
use std::hint::black_box;
use std::time::Instant;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use refundd::config::SenderAuthConfig;
use refundd::domain::AuthResult;
use refundd::extract::config::SenderAuthMode;
use refundd::verify::SenderVerifier;
use refundd::verify::stub_dns::StubDns;

const RSA_PEM: &str = include_str!("../tests/fixtures/dkim/rsa-2048.pem");

fn mail() -> String {
    let mut body = String::from(
        "Hi Anumi team,\r\n\r\nPlease refund my unused Starter 50 pack, invoice ANUMI-KQWZPLMA-0001.\r\n\r\nThanks,\r\nAnn\r\n\r\n",
    );
    while body.len() < 4000 {
        body.push_str("> Thank you for your purchase! Your credits are ready to use.\r\n");
    }
    format!(
        "From: Ann Example <ann@example.com>\r\nTo: refunds@anumi.example\r\nSubject: Refund for my Starter pack\r\n\
         Date: Fri, 05 Jun 2026 09:12:00 +0000\r\nMessage-ID: <CAF12345@mail.example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
}

fn run(rt: &tokio::runtime::Runtime, name: &str, verifier: &SenderVerifier, raw: &[u8], n: u32) {
    rt.block_on(async {
        let first = verifier.verify(raw).await;
        assert_eq!(first.dmarc, AuthResult::Pass, "{name}: {first:?}");
        let start = Instant::now();
        for _ in 0..n {
            black_box(verifier.verify(black_box(raw)).await);
        }
        let elapsed = start.elapsed();
        println!(
            "{name:<40} {:>9.1} µs/msg  {:>8.0} msg/s",
            (elapsed / n).as_secs_f64() * 1e6,
            f64::from(n) / elapsed.as_secs_f64()
        );
    });
}

#[allow(deprecated)]
fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 20 } else { 5_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dns = rt.block_on(StubDns::start()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let rsa = || RsaKey::<Sha256>::from_rsa_pem(RSA_PEM).unwrap();
    let ed_pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let ed = || Ed25519Key::from_pkcs8_der(&ed_pkcs8).unwrap();
    dns.txt(
        "rsa._domainkey.example.com",
        &format!("v=DKIM1; k=rsa; p={}", b64.encode(rsa().public_key())),
    );
    dns.txt(
        "ed._domainkey.example.com",
        &format!("v=DKIM1; k=ed25519; p={}", b64.encode(ed().public_key())),
    );
    dns.txt("_dmarc.example.com", "v=DMARC1; p=reject");
    let headers = ["From", "To", "Subject", "Date", "Message-ID"];
    let raw = mail();
    let rsa_signed = format!(
        "{}{raw}",
        DkimSigner::from_key(rsa())
            .domain("example.com")
            .selector("rsa")
            .headers(headers)
            .sign(raw.as_bytes())
            .unwrap()
            .to_header()
    );
    let ed_signed = format!(
        "{}{raw}",
        DkimSigner::from_key(ed())
            .domain("example.com")
            .selector("ed")
            .headers(headers)
            .sign(raw.as_bytes())
            .unwrap()
            .to_header()
    );
    let config = |entries| SenderAuthConfig {
        mode: SenderAuthMode::Verify,
        resolver: Some(dns.addr().to_string()),
        dns_cache_entries: entries,
        ..SenderAuthConfig::default()
    };
    let warm = rt.block_on(async { SenderVerifier::new(&config(10_000)).unwrap() });
    run(
        &rt,
        "rsa-2048 DKIM + DMARC, warm cache",
        &warm,
        rsa_signed.as_bytes(),
        n,
    );
    run(
        &rt,
        "ed25519 DKIM + DMARC, warm cache",
        &warm,
        ed_signed.as_bytes(),
        n,
    );
    println!("(stub DNS questions so far: {})", dns.queries());
}
