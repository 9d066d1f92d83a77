//! `Received` trace fields (RFC 5321 §4.4): which host wrote one (`by`),
//! and the client it took the message from (`from HELO (… [IP])`).
//!
//! - Takes: one unfolded `Received` value.
//! - Gives: [`Received`]: the `by` host, the HELO name and the client IP
//!   in brackets, each when present.
//! - Never: says whether a header can be trusted: any sender can write
//!   `Received` lines below the ones our servers add (callers decide by
//!   position and by the `by` host).
//! - Fails: never; what cannot be read is `None`.

use std::net::IpAddr;

use super::auth_results::without_comments;

/// One `Received` header, read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// The host after `by`, lowercased, without a trailing dot.
    pub by: Option<String>,
    /// The name after `from` (the client's HELO/EHLO), lowercased.
    pub helo: Option<String>,
    /// The client IP: the first bracketed address literal in the `from`
    /// clause (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), or a bare address in
    /// its comment (`(209.85.128.41)`, as Exchange writes it).
    pub client_ip: Option<IpAddr>,
}

/// Reads one `Received` value.
pub fn parse(value: &str) -> Received {
    let by_at = find_clause(value, "by");
    let from_clause = find_clause(value, "from").map(|at| &value[at..by_at.unwrap_or(value.len())]);
    let by = by_at.and_then(|at| first_word(&without_comments(&value[at + 2..])));
    let helo = from_clause.and_then(|c| first_word(&without_comments(&c[4..])));
    let client_ip = from_clause.and_then(client_ip);
    Received {
        by,
        helo,
        client_ip,
    }
}

/// Where the clause `keyword` starts (a whole word, outside comments).
fn find_clause(value: &str, keyword: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => {
                let before_ok = i == 0 || bytes[i - 1].is_ascii_whitespace();
                let end = i + keyword.len();
                if before_ok
                    && end < bytes.len()
                    && value[i..end].eq_ignore_ascii_case(keyword)
                    && bytes[end].is_ascii_whitespace()
                {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn first_word(s: &str) -> Option<String> {
    let word = s.split_whitespace().next()?.trim_end_matches(';');
    let word = word.trim_end_matches('.').to_ascii_lowercase();
    (!word.is_empty()).then_some(word)
}

/// The first address literal of a `from` clause: `[…]`, else a bare IP
/// inside a comment.
fn client_ip(clause: &str) -> Option<IpAddr> {
    let mut rest = clause;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let literal = &after[..close];
        let literal = literal
            .strip_prefix("IPv6:")
            .or_else(|| literal.strip_prefix("ipv6:"))
            .unwrap_or(literal);
        if let Ok(ip) = literal.parse() {
            return Some(ip);
        }
        rest = &after[close..];
    }
    clause
        .split(|c: char| c == '(' || c == ')' || c.is_whitespace())
        .find_map(|word| word.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_google_and_exchange_received_lines_are_read() {
        let cases = [
            (
                "from mail-wm1-f41.google.com (mail-wm1-f41.google.com [209.85.128.41]) by mx1.anumi.app (Postfix) with ESMTPS id 4Q; Fri, 5 Jun 2026 09:12:01 +0000 (UTC)",
                Some("mx1.anumi.app"),
                Some("mail-wm1-f41.google.com"),
                Some("209.85.128.41"),
            ),
            (
                "from mail-sor-f69.google.com (mail-sor-f69.google.com. [209.85.220.69]) by mx.google.com with SMTPS id a1; Fri, 05 Jun 2026 02:12:01 -0700 (PDT)",
                Some("mx.google.com"),
                Some("mail-sor-f69.google.com"),
                Some("209.85.220.69"),
            ),
            (
                "from mail-wm1-f41.google.com (209.85.128.41) by BN8NAM11FT012.mail.protection.outlook.com (10.13.177.69) with Microsoft SMTP Server (version=TLS1_2) id 15.20.7; Fri, 5 Jun 2026 09:12:01 +0000",
                Some("bn8nam11ft012.mail.protection.outlook.com"),
                Some("mail-wm1-f41.google.com"),
                Some("209.85.128.41"),
            ),
            (
                "from [IPv6:2001:db8::5] (helo=client.example) by mx1.anumi.app with esmtp",
                Some("mx1.anumi.app"),
                Some("[ipv6:2001:db8::5]"),
                Some("2001:db8::5"),
            ),
            (
                "by mail-wm1-f41.google.com with SMTP id x; Fri",
                Some("mail-wm1-f41.google.com"),
                None,
                None,
            ),
        ];
        for (value, by, helo, ip) in cases {
            let read = parse(value);
            assert_eq!(read.by.as_deref(), by, "{value}");
            assert_eq!(read.helo.as_deref(), helo, "{value}");
            assert_eq!(
                read.client_ip.map(|i| i.to_string()).as_deref(),
                ip,
                "{value}"
            );
        }
    }
}
