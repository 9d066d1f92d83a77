//! Sender verification against a loopback stub DNS server, through the
//! real resolver path: known-answer vectors, signed messages, and the
//! attacks the AUTH gate must refuse.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, SpfOutput};

use super::stub_dns::StubDns;
use super::*;
use crate::domain::{AuthSource, SenderAuth};
use crate::extract::config::{SenderAuthConfig, SenderAuthMode};
use crate::extract::{AuthRules, sender_auth};
use crate::parse::parse;

const RSA_PEM: &str = include_str!("../../tests/fixtures/dkim/rsa-2048.pem");
const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

fn message(from: &str, body: &str) -> String {
    format!(
        "From: Ann <{from}>\r\nTo: refunds@anumi.test\r\nSubject: Refund ANUMI-KQWZPLMA-0001\r\n\
         Date: Fri, 5 Jun 2026 09:12:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\n{body}"
    )
}

const BODY: &str = "Hi,\r\n\r\nplease refund my unused Starter pack.\r\n\r\nAnn\r\n";

#[allow(deprecated)]
fn rsa() -> RsaKey<Sha256> {
    RsaKey::<Sha256>::from_rsa_pem(RSA_PEM).expect("the fixture key loads")
}

struct World {
    dns: StubDns,
    verifier: SenderVerifier,
    ed25519: Vec<u8>,
}

impl World {
    /// A stub zone with example.com's keys (RSA `rsa`, ed25519 `ed`),
    /// its DMARC policy, and a verifier in `verify` mode asking it.
    async fn new(dmarc: &str, configure: impl FnOnce(&mut SenderAuthConfig)) -> World {
        let dns = StubDns::start().await.expect("a loopback port");
        let ed25519 = Ed25519Key::generate_pkcs8().unwrap();
        let ed_public = Ed25519Key::from_pkcs8_der(&ed25519).unwrap().public_key();
        let rsa_public = rsa().public_key();
        for domain in [
            "example.com",
            "attacker.test",
            "forwarder.test",
            "other-forwarder.test",
        ] {
            dns.txt(
                &format!("rsa._domainkey.{domain}"),
                &format!("v=DKIM1; k=rsa; p={}", B64.encode(&rsa_public)),
            );
            dns.txt(
                &format!("ed._domainkey.{domain}"),
                &format!("v=DKIM1; k=ed25519; p={}", B64.encode(&ed_public)),
            );
        }
        dns.txt("_dmarc.example.com", dmarc);
        let mut config = SenderAuthConfig {
            mode: SenderAuthMode::Verify,
            resolver: Some(dns.addr().to_string()),
            received_by: vec!["mx1.anumi.test".into()],
            trusted_arc_sealers: vec!["forwarder.test".into()],
            timeout_ms: 3000,
            ..SenderAuthConfig::default()
        };
        configure(&mut config);
        let verifier = SenderVerifier::new(&config).expect("the verifier builds");
        World {
            dns,
            verifier,
            ed25519,
        }
    }

    fn ed(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.ed25519).unwrap()
    }

    /// The DKIM-Signature header for `raw`.
    fn sign_rsa(
        &self,
        raw: &str,
        domain: &str,
        canon: Canonicalization,
        body_length: bool,
    ) -> String {
        DkimSigner::from_key(rsa())
            .domain(domain)
            .selector("rsa")
            .headers(SIGNED_HEADERS)
            .header_canonicalization(canon)
            .body_canonicalization(canon)
            .body_length(body_length)
            .sign(raw.as_bytes())
            .unwrap()
            .to_header()
    }

    fn sign_ed(&self, raw: &str, domain: &str, canon: Canonicalization) -> String {
        DkimSigner::from_key(self.ed())
            .domain(domain)
            .selector("ed")
            .headers(SIGNED_HEADERS)
            .header_canonicalization(canon)
            .body_canonicalization(canon)
            .sign(raw.as_bytes())
            .unwrap()
            .to_header()
    }

    async fn verify(&self, raw: &str) -> Verification {
        self.verifier.verify(raw.as_bytes()).await
    }

    /// What the AUTH gate reads of `raw` in `verify` mode.
    async fn auth(&self, raw: &str) -> SenderAuth {
        let verification = self.verify(raw).await;
        let rules = AuthRules::new(&SenderAuthConfig {
            mode: SenderAuthMode::Verify,
            ..SenderAuthConfig::default()
        });
        sender_auth(&parse(raw.as_bytes()).unwrap(), &rules, Some(&verification))
    }
}

const DMARC_REJECT: &str = "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com";

#[tokio::test]
async fn rfc_8463_signed_message_verifies_as_a_known_answer() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    // RFC 8463 Appendix A.2 / A.3.
    world.dns.txt(
        "brisbane._domainkey.football.example.com",
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    );
    world.dns.txt(
        "test._domainkey.football.example.com",
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
    );
    let rfc8463 = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n d=football.example.com; i=@football.example.com;\r\n q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n subject : date : message-id : from : subject : date;\r\n bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n d=football.example.com; i=@football.example.com;\r\n q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n date : message-id : from : subject : date;\r\n bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\nFrom: Joe SixPack <joe@football.example.com>\r\nTo: Suzie Q <suzie@shopping.example.net>\r\nSubject: Is dinner ready?\r\nDate: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\nMessage-ID: <20030712040037.46341.5F8J@football.example.com>\r\n\r\nHi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
    let v = world.verify(rfc8463).await;
    let ed = v.dkim.iter().find(|d| d.selector == "brisbane").unwrap();
    assert_eq!(
        (ed.algorithm.as_str(), ed.result),
        ("ed25519-sha256", AuthResult::Pass),
        "{v:?}"
    );
    let rsa = v.dkim.iter().find(|d| d.selector == "test").unwrap();
    assert_eq!(
        (rsa.algorithm.as_str(), rsa.result),
        ("rsa-sha256", AuthResult::Pass),
        "{v:?}"
    );

    // One changed byte of the body: the same signatures fail.
    let v = world.verify(&rfc8463.replace("hungry", "Hungry")).await;
    assert!(v.dkim.iter().all(|d| d.result != AuthResult::Pass), "{v:?}");
}

#[tokio::test]
async fn rsa_and_ed25519_signatures_pass_dmarc_in_both_canonicalizations() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    let raw = message("ann@example.com", BODY);
    for (name, signed) in [
        (
            "rsa relaxed",
            world.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false),
        ),
        (
            "rsa simple",
            world.sign_rsa(&raw, "example.com", Canonicalization::Simple, false),
        ),
        (
            "ed25519 relaxed",
            world.sign_ed(&raw, "example.com", Canonicalization::Relaxed),
        ),
        (
            "ed25519 simple",
            world.sign_ed(&raw, "example.com", Canonicalization::Simple),
        ),
    ] {
        let full = format!("{signed}{raw}");
        let v = world.verify(&full).await;
        assert_eq!(v.dkim.len(), 1, "{name}");
        assert_eq!(v.dkim[0].result, AuthResult::Pass, "{name}: {v:?}");
        assert_eq!(v.dmarc, AuthResult::Pass, "{name}: {v:?}");
        assert_eq!(v.aligned_by.as_deref(), Some("dkim"), "{name}");
        assert_eq!(v.dmarc_policy.as_deref(), Some("reject"), "{name}");
        let auth = world.auth(&full).await;
        assert_eq!(auth.used, Some(AuthSource::Dmarc), "{name}");
    }
}

#[tokio::test]
async fn attacks_on_dkim_and_dmarc_never_authenticate() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    let raw = message("ann@example.com", BODY);
    let signed = world.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false);
    let with_length = world.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, true);
    let attacker = world.sign_ed(&raw, "attacker.test", Canonicalization::Relaxed);
    let two_from = raw.replacen(
        "From: Ann <ann@example.com>\r\n",
        "From: Ann <ann@example.com>\r\nFrom: Boss <boss@victim.test>\r\n",
        1,
    );
    let two_from_signed =
        world.sign_rsa(&two_from, "example.com", Canonicalization::Relaxed, false);
    let two_in_one = raw.replacen(
        "From: Ann <ann@example.com>",
        "From: Ann <ann@example.com>, Boss <boss@example.com>",
        1,
    );
    let two_in_one_signed =
        world.sign_rsa(&two_in_one, "example.com", Canonicalization::Relaxed, false);
    let cases = [
        (
            "a signature over a modified body",
            format!(
                "{signed}{}",
                raw.replace("Starter pack", "Pro pack and refund 500 EUR")
            ),
        ),
        (
            "an l= signature with content appended after the signed length",
            format!(
                "{with_length}{raw}\r\nAlso refund order ANUMI-ZZZZZZZZ-0002 to IBAN XX00.\r\n"
            ),
        ),
        (
            "a d= that does not align with From",
            format!("{attacker}{raw}"),
        ),
        (
            "several From headers",
            format!("{two_from_signed}{two_from}"),
        ),
        (
            "several addresses in one From",
            format!("{two_in_one_signed}{two_in_one}"),
        ),
    ];
    for (name, full) in cases {
        let auth = world.auth(&full).await;
        assert!(!auth.dmarc_pass, "{name}: {auth:?}");
        let v = auth.verified.as_ref().unwrap();
        match name {
            "a signature over a modified body" => {
                assert_eq!(
                    v.dkim[0].result,
                    AuthResult::Neutral,
                    "{name}: body hash: {v:?}"
                );
                assert_eq!(v.dmarc, AuthResult::Fail, "{name}");
            }
            "an l= signature with content appended after the signed length" => {
                assert!(
                    v.dkim[0]
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.contains("l=")),
                    "{name}: {v:?}"
                );
                assert_eq!(v.dmarc, AuthResult::Fail, "{name}");
            }
            "a d= that does not align with From" => {
                assert_eq!(
                    v.dkim[0].result,
                    AuthResult::Pass,
                    "{name}: the signature itself is good"
                );
                assert_eq!(v.dmarc, AuthResult::Fail, "{name}");
            }
            _ => assert!(auth.from_ambiguous, "{name}"),
        }
    }
}

#[tokio::test]
async fn an_l_signature_never_counts_even_over_the_whole_body() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    let raw = message("ann@example.com", BODY);
    let signed = world.sign_rsa(&raw, "example.com", Canonicalization::Simple, true);
    assert!(signed.contains("l="), "{signed}");
    let v = world.verify(&format!("{signed}{raw}")).await;
    assert_ne!(v.dkim[0].result, AuthResult::Pass, "{v:?}");
    assert_eq!(v.dmarc, AuthResult::Fail, "{v:?}");
}

#[tokio::test]
async fn subdomains_follow_relaxed_or_strict_alignment_and_the_subdomain_policy() {
    let raw = message("ann@mail.example.com", BODY);
    let relaxed = World::new(DMARC_REJECT, |_| {}).await;
    let signed = relaxed.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false);
    let v = relaxed.verify(&format!("{signed}{raw}")).await;
    assert_eq!(v.dmarc, AuthResult::Pass, "relaxed: {v:?}");
    assert_eq!(v.dmarc_domain.as_deref(), Some("mail.example.com"));
    assert_eq!(
        v.dmarc_policy.as_deref(),
        Some("quarantine"),
        "sp= applies to a subdomain"
    );

    let strict = World::new("v=DMARC1; p=reject; adkim=s; aspf=s", |_| {}).await;
    let signed = strict.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false);
    let v = strict.verify(&format!("{signed}{raw}")).await;
    assert_eq!(v.dmarc, AuthResult::Fail, "strict: {v:?}");
}

#[tokio::test]
async fn spf_uses_only_the_client_ip_our_own_server_recorded() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    world.dns.txt("example.com", "v=spf1 ip4:192.0.2.10 -all");
    let ours = |ip: &str| {
        format!(
            "Received: from mail.example.com (mail.example.com [{ip}]) by mx1.anumi.test (Postfix) with ESMTPS id 1; Fri, 5 Jun 2026 09:12:01 +0000\r\n"
        )
    };
    let raw = message("ann@example.com", BODY);
    let genuine = format!(
        "Return-Path: <ann@example.com>\r\n{}{raw}",
        ours("192.0.2.10")
    );
    let v = world.verify(&genuine).await;
    assert_eq!(v.spf, AuthResult::Pass, "{v:?}");
    assert_eq!(v.client_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(
        (v.dmarc, v.aligned_by.as_deref()),
        (AuthResult::Pass, Some("spf"))
    );

    // The sender writes a Received naming our server with a good IP, below
    // the one our server really added: only the topmost one is read.
    let forged = format!(
        "Return-Path: <ann@example.com>\r\n{}{}{raw}",
        ours("203.0.113.9"),
        ours("192.0.2.10")
    );
    let v = world.verify(&forged).await;
    assert_eq!(v.spf, AuthResult::Fail, "{v:?}");
    assert_eq!(v.dmarc, AuthResult::Fail);

    // Without a Received of ours nothing is known of the client: no SPF.
    let v = world
        .verify(&format!("Return-Path: <ann@example.com>\r\n{raw}"))
        .await;
    assert_eq!(v.spf, AuthResult::None);
}

/// `raw` forwarded by `sealer`: verified there (its ARC-Authentication-
/// Results record DKIM and DMARC as it saw them), a footer added, sealed.
async fn forwarded(world: &World, raw: &str, sealer: &str) -> String {
    let at_forwarder = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
    let dkim = world
        .verifier
        .authenticator
        .verify_dkim(&at_forwarder)
        .await;
    let spf = SpfOutput::default();
    let dmarc = world
        .verifier
        .authenticator
        .verify_dmarc(DmarcParameters::new(
            &at_forwarder,
            &dkim,
            "example.com",
            &spf,
        ))
        .await;
    let results = AuthenticationResults::new("mx.forwarder.test")
        .with_dkim_results(&dkim, "example.com")
        .with_dmarc_result(&dmarc);
    let modified = format!("{raw}-- \r\nSent through the forwarder's list\r\n");
    let message = AuthenticatedMessage::parse(modified.as_bytes()).unwrap();
    let chain = world.verifier.authenticator.verify_arc(&message).await;
    let set = ArcSealer::from_key(rsa())
        .domain(sealer)
        .selector("rsa")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(&message, &results, &chain)
        .unwrap();
    format!("{}{modified}", set.to_header())
}

#[tokio::test]
async fn forwarded_mail_counts_only_through_a_valid_chain_from_a_trusted_sealer() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    let raw = message("ann@example.com", BODY);
    let signed = format!(
        "{}{raw}",
        world.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false)
    );

    let trusted = forwarded(&world, &signed, "forwarder.test").await;
    let auth = world.auth(&trusted).await;
    let v = auth.verified.clone().unwrap();
    assert_eq!(v.dmarc, AuthResult::Fail, "the footer broke DKIM: {v:?}");
    assert_eq!(v.arc, AuthResult::Pass, "{v:?}");
    assert_eq!(v.arc_sealer.as_deref(), Some("forwarder.test"));
    assert_eq!(v.arc_dmarc.as_deref(), Some("pass"));
    assert_eq!(auth.used, Some(AuthSource::Arc), "{auth:?}");

    let untrusted = forwarded(&world, &signed, "other-forwarder.test").await;
    let auth = world.auth(&untrusted).await;
    let v = auth.verified.clone().unwrap();
    assert_eq!((v.arc, v.arc_trusted), (AuthResult::Pass, false), "{v:?}");
    assert!(
        !auth.dmarc_pass,
        "an untrusted sealer's word does not count"
    );

    // A broken seal: one character of the seal's signature changed.
    let at = trusted.find("ARC-Seal:").unwrap();
    let b = at + trusted[at..].find(" b=").unwrap() + 3;
    let mut broken = trusted.clone().into_bytes();
    broken[b + 10] = if broken[b + 10] == b'A' { b'B' } else { b'A' };
    let broken = String::from_utf8(broken).unwrap();
    let auth = world.auth(&broken).await;
    let v = auth.verified.clone().unwrap();
    assert_ne!(v.arc, AuthResult::Pass, "{v:?}");
    assert!(!auth.dmarc_pass);
}

#[tokio::test]
async fn dns_failures_and_timeouts_are_temperror_never_pass() {
    let raw = message("ann@example.com", BODY);

    let servfail = World::new(DMARC_REJECT, |_| {}).await;
    servfail.dns.servfail("rsa._domainkey.example.com");
    let signed = servfail.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false);
    let auth = servfail.auth(&format!("{signed}{raw}")).await;
    let v = auth.verified.clone().unwrap();
    assert_eq!(v.dkim[0].result, AuthResult::Temperror, "{v:?}");
    assert_eq!(v.dmarc, AuthResult::Temperror, "{v:?}");
    assert!(!auth.dmarc_pass);

    let silent = World::new(DMARC_REJECT, |c| c.timeout_ms = 400).await;
    silent.dns.silent("_dmarc.example.com");
    let signed = silent.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false);
    let started = std::time::Instant::now();
    let auth = silent.auth(&format!("{signed}{raw}")).await;
    let v = auth.verified.clone().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the budget holds"
    );
    assert_eq!(v.dmarc, AuthResult::Temperror, "{v:?}");
    assert!(!auth.dmarc_pass);
}

#[tokio::test]
async fn dns_answers_are_cached_until_their_ttl() {
    let world = World::new(DMARC_REJECT, |_| {}).await;
    let raw = message("ann@example.com", BODY);
    let full = format!(
        "{}{raw}",
        world.sign_rsa(&raw, "example.com", Canonicalization::Relaxed, false)
    );
    assert_eq!(world.verify(&full).await.dmarc, AuthResult::Pass);
    let after_first = world.dns.queries();
    assert!(after_first > 0);
    assert!(world.verifier.cached_txt_answers() > 0);
    for _ in 0..5 {
        assert_eq!(world.verify(&full).await.dmarc, AuthResult::Pass);
    }
    assert_eq!(
        world.dns.queries(),
        after_first,
        "a warm cache asks nothing"
    );
}
