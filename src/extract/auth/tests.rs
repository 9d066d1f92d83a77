use super::*;
use crate::parse::parse;

const TRUSTED: &str = "mx.anumi.app";

fn rules(f: impl FnOnce(&mut SenderAuthConfig)) -> AuthRules {
    let mut config = SenderAuthConfig {
        trusted_authserv_ids: vec![TRUSTED.into(), "backup.anumi.app".into()],
        ..SenderAuthConfig::default()
    };
    f(&mut config);
    AuthRules::new(&config)
}

fn email(from: &str, headers: &[(&str, &str)]) -> ParsedEmail {
    let mut raw = String::new();
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!("From: {from}\r\nSubject: x\r\n\r\nbody\r\n"));
    parse(raw.as_bytes()).expect("parses")
}

/// (pass, authserv-id, dmarc result) of the headers-mode verdict.
fn verdict(from: &str, results: &[&str]) -> (bool, Option<String>, Option<String>) {
    let headers: Vec<(&str, &str)> = results
        .iter()
        .map(|r| ("Authentication-Results", *r))
        .collect();
    let auth = sender_auth(&email(from, &headers), &rules(|_| {}), None);
    (auth.dmarc_pass, auth.authserv_id, auth.dmarc_result)
}

fn v(pass: bool, id: Option<&str>, result: Option<&str>) -> (bool, Option<String>, Option<String>) {
    (pass, id.map(str::to_owned), result.map(str::to_owned))
}

#[test]
fn only_the_topmost_trusted_header_counts() {
    let ann = "Ann <ann@example.com>";
    let pass = v(true, Some(TRUSTED), Some("pass"));
    let cases: Vec<(&str, Vec<&str>, _)> = vec![
        (
            "a trusted pass with matching header.from",
            vec![
                "mx.anumi.app; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass (p=reject) header.from=example.com",
            ],
            pass.clone(),
        ),
        (
            "a trusted pass without header.from",
            vec!["mx.anumi.app; dmarc=pass"],
            pass.clone(),
        ),
        (
            "authserv-id is case-insensitive, version allowed",
            vec!["MX.Anumi.App 1; dmarc=pass header.from=Example.COM"],
            v(true, Some("MX.Anumi.App"), Some("pass")),
        ),
        (
            "a forged pass below our fail is ignored",
            vec![
                "mx.anumi.app; dmarc=fail (p=none) header.from=example.com",
                "mx.anumi.app; dmarc=pass header.from=example.com",
            ],
            v(false, Some(TRUSTED), Some("fail")),
        ),
        (
            "an untrusted pass above ours is ignored",
            vec![
                "evil.example; dmarc=pass header.from=example.com",
                "mx.anumi.app; dmarc=none header.from=example.com",
            ],
            v(false, Some(TRUSTED), Some("none")),
        ),
        (
            "no trusted header at all",
            vec!["mx.google.com; dmarc=pass header.from=example.com"],
            v(false, None, None),
        ),
        ("no header at all", vec![], v(false, None, None)),
        (
            "header.from of another domain does not pass",
            vec!["mx.anumi.app; dmarc=pass header.from=attacker.test"],
            v(false, Some(TRUSTED), Some("pass")),
        ),
        (
            "the none form has no dmarc result",
            vec!["mx.anumi.app; none"],
            v(false, Some(TRUSTED), None),
        ),
        (
            "comments everywhere, spaces around equals, method version",
            vec![
                "mx.anumi.app (our (nested) server); dkim=pass; dmarc/1 = pass (policy=reject) reason=\"ok; fine\" header.from = example.com (checked)",
            ],
            pass.clone(),
        ),
        (
            "a comment cannot smuggle a pass",
            vec![
                "mx.anumi.app; dmarc=fail (dmarc=pass header.from=example.com) header.from=example.com",
            ],
            v(false, Some(TRUSTED), Some("fail")),
        ),
        (
            "the second trusted id counts when it is topmost",
            vec![
                "backup.anumi.app; dmarc=pass header.from=example.com",
                "mx.anumi.app; dmarc=fail",
            ],
            v(true, Some("backup.anumi.app"), Some("pass")),
        ),
        (
            "folded header",
            vec![
                "mx.anumi.app;\r\n\tdkim=pass header.d=example.com;\r\n\tdmarc=pass header.from=example.com",
            ],
            pass.clone(),
        ),
        (
            "a full address in header.from is reduced to its domain",
            vec!["mx.anumi.app; dmarc=pass header.from=ann@example.com."],
            pass.clone(),
        ),
        (
            "temperror is not a pass",
            vec!["mx.anumi.app; dmarc=temperror"],
            v(false, Some(TRUSTED), Some("temperror")),
        ),
    ];
    for (name, headers, expected) in cases {
        assert_eq!(verdict(ann, &headers), expected, "{name}");
    }
}

#[test]
fn without_trusted_ids_nobody_is_verified() {
    let e = email(
        "a@example.com",
        &[("Authentication-Results", "mx.anumi.app; dmarc=pass")],
    );
    let auth = sender_auth(&e, &AuthRules::new(&SenderAuthConfig::default()), None);
    assert!(!auth.dmarc_pass);
    assert_eq!(auth.used, None);
}

const OUR_RECEIVED: &str = "from mail.example.com (mail.example.com [192.0.2.10]) by mx1.anumi.app (Postfix) with ESMTPS id 1; Fri, 5 Jun 2026 09:12:01 +0000";
const SENDER_RECEIVED: &str =
    "from laptop by mail.example.com with ESMTPSA; Fri, 5 Jun 2026 09:12:00 +0000";

#[test]
fn with_our_received_configured_a_trusted_header_counts_only_above_it() {
    let r = rules(|c| c.received_by = vec!["mx1.anumi.app".into()]);
    let pass = "mx.anumi.app; dmarc=pass header.from=example.com";
    let cases = [
        (
            "ours, above our Received",
            vec![
                ("Authentication-Results", pass),
                ("Received", OUR_RECEIVED),
                ("Received", SENDER_RECEIVED),
            ],
            true,
        ),
        (
            "claiming our id, but below our Received: the sender wrote it",
            vec![
                ("Received", OUR_RECEIVED),
                ("Authentication-Results", pass),
                ("Received", SENDER_RECEIVED),
            ],
            false,
        ),
        (
            "claiming our id below an untrusted header, no Received of ours at all",
            vec![
                ("Authentication-Results", "other.example; dmarc=none"),
                ("Authentication-Results", pass),
                ("Received", SENDER_RECEIVED),
            ],
            false,
        ),
    ];
    for (name, headers, expected) in cases {
        let auth = sender_auth(&email("ann@example.com", &headers), &r, None);
        assert_eq!(auth.dmarc_pass, expected, "{name}");
    }
}

/// What Exchange Online writes above its inbound edge.
pub(crate) const M365_RESULTS: &str = "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com; dkim=pass (signature was verified) header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass reason=100";
pub(crate) const M365_EDGE: &str = "from mail-wm1-f41.google.com (209.85.128.41) by BN8NAM11FT012.mail.protection.outlook.com (10.13.177.69) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.15 via Frontend Transport; Fri, 5 Jun 2026 09:12:01 +0000";
const M365_INTERNAL: &str = "from BN9PR03CA0123.namprd03.prod.outlook.com (2603:10b6:408:fe::8) by DM6PR02MB1234.namprd02.prod.outlook.com (2603:10b6:5:1b4::19) with Microsoft SMTP Server (version=TLS1_2) id 15.20.7633.15; Fri, 5 Jun 2026 09:12:02 +0000";
const M365_FAIL: &str = "spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=example.com; dkim=none (message not signed) header.d=none;dmarc=fail action=quarantine header.from=example.com;compauth=fail reason=000";

#[test]
fn the_microsoft365_preset_trusts_only_the_header_above_microsofts_edge() {
    let m365 = rules(|c| {
        c.trusted_authserv_ids.clear();
        c.providers = vec![Provider::Microsoft365];
    });
    let cases = [
        (
            "Microsoft's header above its edge Received",
            vec![
                ("Received", M365_INTERNAL),
                ("Authentication-Results", M365_RESULTS),
                ("Received", M365_EDGE),
            ],
            true,
        ),
        (
            "the same header forged below the edge",
            vec![
                ("Received", M365_INTERNAL),
                ("Received", M365_EDGE),
                ("Authentication-Results", M365_RESULTS),
            ],
            false,
        ),
        (
            "Microsoft's fail above, a forged pass below",
            vec![
                ("Authentication-Results", M365_FAIL),
                ("Received", M365_EDGE),
                ("Authentication-Results", M365_RESULTS),
            ],
            false,
        ),
        (
            "added by the sender, never through Microsoft (no edge Received)",
            vec![
                ("Authentication-Results", M365_RESULTS),
                ("Received", SENDER_RECEIVED),
            ],
            false,
        ),
        (
            "a header with an authserv-id is not Microsoft's format",
            vec![
                (
                    "Authentication-Results",
                    "evil.example; dmarc=pass header.from=example.com",
                ),
                ("Received", M365_EDGE),
            ],
            false,
        ),
    ];
    for (name, headers, expected) in cases {
        let auth = sender_auth(&email("Ann <ann@example.com>", &headers), &m365, None);
        assert_eq!(auth.dmarc_pass, expected, "{name}: {auth:?}");
        if expected {
            assert_eq!(auth.used, Some(AuthSource::Microsoft365));
        }
    }
}

#[test]
fn the_google_preset_trusts_mx_google_com_above_its_received() {
    let google = rules(|c| {
        c.trusted_authserv_ids.clear();
        c.providers = vec![Provider::Google];
    });
    let header = "mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=abc; spf=pass (google.com: domain of ann@example.com designates 192.0.2.10 as permitted sender) smtp.mailfrom=ann@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com";
    let edge = "from mail.example.com (mail.example.com. [192.0.2.10]) by mx.google.com with ESMTPS id a1; Fri, 05 Jun 2026 02:12:01 -0700 (PDT)";
    let above = email(
        "ann@example.com",
        &[("Authentication-Results", header), ("Received", edge)],
    );
    let below = email(
        "ann@example.com",
        &[("Received", edge), ("Authentication-Results", header)],
    );
    assert!(sender_auth(&above, &google, None).dmarc_pass);
    assert!(!sender_auth(&below, &google, None).dmarc_pass);
}

fn own(dmarc: AuthResult) -> Verification {
    Verification {
        dmarc,
        dmarc_domain: Some("example.com".into()),
        ..Verification::default()
    }
}

#[test]
fn the_mode_rule_combines_header_and_own_verification() {
    use AuthResult::{Fail, Pass, Temperror};
    let header_pass = "mx.anumi.app; dmarc=pass header.from=example.com";
    let header_fail = "mx.anumi.app; dmarc=fail header.from=example.com";
    let header_temp = "mx.anumi.app; dmarc=temperror";
    // (mode, trusted header, own DMARC, evidence used)
    type Row<'a> = (
        SenderAuthMode,
        Option<&'a str>,
        Option<AuthResult>,
        Option<AuthSource>,
    );
    let cases: Vec<Row<'_>> = vec![
        (
            SenderAuthMode::Headers,
            Some(header_pass),
            Some(Fail),
            Some(AuthSource::TrustedHeader),
        ),
        (SenderAuthMode::Headers, None, Some(Pass), None),
        (SenderAuthMode::Verify, Some(header_pass), Some(Fail), None),
        (
            SenderAuthMode::Verify,
            None,
            Some(Pass),
            Some(AuthSource::Dmarc),
        ),
        (SenderAuthMode::Verify, None, Some(Temperror), None),
        (SenderAuthMode::Verify, None, None, None),
        (
            SenderAuthMode::Either,
            Some(header_pass),
            Some(Fail),
            Some(AuthSource::TrustedHeader),
        ),
        (
            SenderAuthMode::Either,
            None,
            Some(Pass),
            Some(AuthSource::Dmarc),
        ),
        (
            SenderAuthMode::Either,
            Some(header_temp),
            Some(Pass),
            Some(AuthSource::Dmarc),
        ),
        (SenderAuthMode::Either, Some(header_fail), Some(Pass), None),
        (
            SenderAuthMode::Either,
            Some(header_temp),
            Some(Temperror),
            None,
        ),
    ];
    for (mode, header, verified, expected) in cases {
        let r = rules(|c| c.mode = mode);
        let headers: Vec<(&str, &str)> = header
            .map(|h| ("Authentication-Results", h))
            .into_iter()
            .collect();
        let verified = verified.map(own);
        let auth = sender_auth(&email("ann@example.com", &headers), &r, verified.as_ref());
        assert_eq!(
            auth.used, expected,
            "{mode:?} header={header:?} own={verified:?}"
        );
        assert_eq!(auth.dmarc_pass, expected.is_some());
    }
}

#[test]
fn own_dmarc_for_another_domain_or_an_untrusted_arc_sealer_does_not_pass() {
    let r = rules(|c| c.mode = SenderAuthMode::Verify);
    let e = email("ann@example.com", &[]);
    let other = Verification {
        dmarc: AuthResult::Pass,
        dmarc_domain: Some("attacker.test".into()),
        ..Verification::default()
    };
    assert!(!sender_auth(&e, &r, Some(&other)).dmarc_pass);
    let sealed = |trusted: bool, chain: AuthResult| Verification {
        dmarc: AuthResult::Fail,
        dmarc_domain: Some("example.com".into()),
        arc: chain,
        arc_sealer: Some("forwarder.example".into()),
        arc_trusted: trusted,
        arc_dmarc: Some("pass".into()),
        arc_header_from: Some("example.com".into()),
        ..Verification::default()
    };
    assert_eq!(
        sender_auth(&e, &r, Some(&sealed(true, AuthResult::Pass))).used,
        Some(AuthSource::Arc)
    );
    assert!(!sender_auth(&e, &r, Some(&sealed(false, AuthResult::Pass))).dmarc_pass);
    assert!(!sender_auth(&e, &r, Some(&sealed(true, AuthResult::Fail))).dmarc_pass);
}

#[test]
fn several_from_headers_or_addresses_never_authenticate() {
    let header = (
        "Authentication-Results",
        "mx.anumi.app; dmarc=pass header.from=example.com",
    );
    let r = rules(|c| c.mode = SenderAuthMode::Either);
    let pass = own(AuthResult::Pass);
    let two_headers = {
        let raw = "Authentication-Results: mx.anumi.app; dmarc=pass header.from=example.com\r\nFrom: ann@example.com\r\nFrom: boss@victim.test\r\nSubject: x\r\n\r\nbody\r\n";
        parse(raw.as_bytes()).unwrap()
    };
    let two_addresses = email("ann@example.com, boss@victim.test", &[header]);
    for (name, e) in [
        ("two From headers", two_headers),
        ("two addresses", two_addresses),
    ] {
        assert!(e.from_count > 1, "{name}");
        let auth = sender_auth(&e, &r, Some(&pass));
        assert!(!auth.dmarc_pass, "{name}");
        assert!(auth.from_ambiguous, "{name}");
    }
}
