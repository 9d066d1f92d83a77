//! Sender authentication from `Authentication-Results` (RFC 8601).
//!
//! Our receiving servers prepend their verdict above everything already in
//! the message, and anything below it may have been written by the sender.
//! So headers are walked top to bottom and only the FIRST one whose
//! authserv-id (case-insensitive) is configured as trusted counts; every
//! other header, above or below, is ignored, even if it says `pass`.
//!
//! The verdict is `dmarc_pass` only when that header has a `dmarc=pass`
//! result and, when the result names `header.from=`, that domain is the
//! `From:` address's domain. Parsing handles comments in parentheses
//! (nested, anywhere: RFC 8601 §2.2 allows CFWS), the optional version
//! after the authserv-id, quoted values, the `none` form (no results) and
//! folding (headers arrive unfolded from `parse`).

use crate::domain::SenderAuth;
use crate::parse::ParsedEmail;

/// The sender authentication verdict for `email`, trusting only the
/// authserv-ids in `trusted`.
pub fn sender_auth(email: &ParsedEmail, trusted: &[String]) -> SenderAuth {
    let Some((authserv_id, results)) = email
        .header_values("authentication-results")
        .map(parse_header)
        .find(|(id, _)| trusted.iter().any(|t| t.trim().eq_ignore_ascii_case(id)))
    else {
        return SenderAuth::default();
    };
    let dmarc = results.into_iter().find(|r| r.method == "dmarc");
    let from_domain = email.from.as_ref().and_then(|f| f.domain());
    let dmarc_pass = dmarc.as_ref().is_some_and(|r| {
        r.result == "pass"
            && from_domain.is_some()
            && r.header_from
                .as_deref()
                .is_none_or(|d| Some(d) == from_domain)
    });
    SenderAuth {
        dmarc_pass,
        authserv_id: Some(authserv_id),
        dmarc_result: dmarc.map(|r| r.result),
    }
}

/// One `method=result` of a header, with the `header.from` property.
#[derive(Debug, PartialEq, Eq)]
struct MethodResult {
    /// Lowercase method without version (`dmarc`).
    method: String,
    /// Lowercase result (`pass`, `fail`, `none`, …).
    result: String,
    /// `header.from` domain, lowercased, without a leading `@` or a
    /// trailing dot (a full address is reduced to its domain).
    header_from: Option<String>,
}

/// The authserv-id and results of one header value.
fn parse_header(value: &str) -> (String, Vec<MethodResult>) {
    let cleaned = strip_comments(value);
    let mut statements = split_unquoted(&cleaned, ';').into_iter();
    let authserv_id = statements
        .next()
        .and_then(|first| first.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let results = statements.filter_map(|s| parse_resinfo(&s)).collect();
    (authserv_id, results)
}

/// `method[/version]=result [reason=…] [ptype.property=value …]`.
fn parse_resinfo(statement: &str) -> Option<MethodResult> {
    let mut tokens = tokens(statement).into_iter();
    let (method, result) = tokens.next()?.split_once('=').map(|(m, r)| {
        let method = m.split('/').next().unwrap_or(m).trim().to_ascii_lowercase();
        (method, r.trim().to_ascii_lowercase())
    })?;
    let header_from = tokens
        .filter_map(|t| {
            let (key, value) = t.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("header.from")
                .then(|| domain_of(value))
        })
        .next();
    Some(MethodResult {
        method,
        result,
        header_from,
    })
}

fn domain_of(value: &str) -> String {
    let value = value.trim().trim_matches('"');
    let domain = value.rsplit_once('@').map_or(value, |(_, d)| d);
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// Whitespace-separated tokens, `a = b` joined to `a=b`, quotes kept.
fn tokens(statement: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in split_unquoted_whitespace(statement) {
        let joins_last = word.starts_with('=') || out.last().is_some_and(|l| l.ends_with('='));
        match out.last_mut() {
            Some(last) if joins_last => last.push_str(&word),
            _ => out.push(word),
        }
    }
    out
}

/// `value` without `( … )` comments (nested, escapes honoured), quoted
/// strings left intact; each comment becomes a space.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `s` split at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn split_unquoted_whitespace(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const TRUSTED: &str = "mx.anumi.app";

    fn verdict(from: &str, results: &[&str]) -> SenderAuth {
        let mut raw = String::new();
        for r in results {
            raw.push_str(&format!("Authentication-Results: {r}\r\n"));
        }
        raw.push_str(&format!("From: {from}\r\nSubject: x\r\n\r\nbody\r\n"));
        let email = parse(raw.as_bytes()).expect("parses");
        sender_auth(&email, &[TRUSTED.to_owned(), "backup.anumi.app".to_owned()])
    }

    fn pass() -> SenderAuth {
        SenderAuth {
            dmarc_pass: true,
            authserv_id: Some(TRUSTED.into()),
            dmarc_result: Some("pass".into()),
        }
    }

    fn fails_with(id: &str, result: Option<&str>) -> SenderAuth {
        SenderAuth {
            dmarc_pass: false,
            authserv_id: Some(id.into()),
            dmarc_result: result.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_topmost_trusted_header_counts() {
        let ann = "Ann <ann@example.com>";
        let cases: Vec<(&str, Vec<&str>, SenderAuth)> = vec![
            (
                "a trusted pass with matching header.from",
                vec![
                    "mx.anumi.app; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass (p=reject) header.from=example.com",
                ],
                pass(),
            ),
            (
                "a trusted pass without header.from",
                vec!["mx.anumi.app; dmarc=pass"],
                pass(),
            ),
            (
                "authserv-id is case-insensitive, version allowed",
                vec!["MX.Anumi.App 1; dmarc=pass header.from=Example.COM"],
                SenderAuth {
                    authserv_id: Some("MX.Anumi.App".into()),
                    ..pass()
                },
            ),
            (
                "a forged pass below our fail is ignored",
                vec![
                    "mx.anumi.app; dmarc=fail (p=none) header.from=example.com",
                    "mx.anumi.app; dmarc=pass header.from=example.com",
                ],
                fails_with(TRUSTED, Some("fail")),
            ),
            (
                "an untrusted pass above ours is ignored",
                vec![
                    "evil.example; dmarc=pass header.from=example.com",
                    "mx.anumi.app; dmarc=none header.from=example.com",
                ],
                fails_with(TRUSTED, Some("none")),
            ),
            (
                "no trusted header at all",
                vec!["mx.google.com; dmarc=pass header.from=example.com"],
                SenderAuth::default(),
            ),
            ("no header at all", vec![], SenderAuth::default()),
            (
                "header.from of another domain does not pass",
                vec!["mx.anumi.app; dmarc=pass header.from=attacker.test"],
                fails_with(TRUSTED, Some("pass")),
            ),
            (
                "the none form has no dmarc result",
                vec!["mx.anumi.app; none"],
                fails_with(TRUSTED, None),
            ),
            (
                "comments everywhere, spaces around equals, method version",
                vec![
                    "mx.anumi.app (our (nested) server); dkim=pass; dmarc/1 = pass (policy=reject) reason=\"ok; fine\" header.from = example.com (checked)",
                ],
                pass(),
            ),
            (
                "a comment cannot smuggle a pass",
                vec![
                    "mx.anumi.app; dmarc=fail (dmarc=pass header.from=example.com) header.from=example.com",
                ],
                fails_with(TRUSTED, Some("fail")),
            ),
            (
                "the second trusted id counts when it is topmost",
                vec![
                    "backup.anumi.app; dmarc=pass header.from=example.com",
                    "mx.anumi.app; dmarc=fail",
                ],
                SenderAuth {
                    authserv_id: Some("backup.anumi.app".into()),
                    ..pass()
                },
            ),
            (
                "folded header",
                vec![
                    "mx.anumi.app;\r\n\tdkim=pass header.d=example.com;\r\n\tdmarc=pass header.from=example.com",
                ],
                pass(),
            ),
            (
                "a full address in header.from is reduced to its domain",
                vec!["mx.anumi.app; dmarc=pass header.from=ann@example.com."],
                pass(),
            ),
            (
                "temperror is not a pass",
                vec!["mx.anumi.app; dmarc=temperror"],
                fails_with(TRUSTED, Some("temperror")),
            ),
        ];
        for (name, headers, expected) in cases {
            assert_eq!(verdict(ann, &headers), expected, "{name}");
        }
    }

    #[test]
    fn without_trusted_ids_nobody_is_verified() {
        let raw =
            "Authentication-Results: mx.anumi.app; dmarc=pass\r\nFrom: a@example.com\r\n\r\nx";
        let email = parse(raw.as_bytes()).unwrap();
        assert_eq!(sender_auth(&email, &[]), SenderAuth::default());
    }
}
