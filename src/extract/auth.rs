//! Sender authentication: the verdict the AUTH gate reads, from trusted
//! `Authentication-Results` headers (RFC 8601), provider presets, and
//! refundd's own verification (`verify::SenderVerifier`, done before
//! extraction and handed in).
//!
//! - Takes: the parsed message, the `[sender_auth]` rules and, in `verify`
//!   / `either` mode, the message's [`Verification`].
//! - Gives: [`SenderAuth`]: pass or not, the evidence used, and what every
//!   source said (for the trace and the console).
//! - Never: does I/O (the verification is done already), or trusts a
//!   header the sender could have written.
//! - Fails: never; anything unreadable simply does not pass.
//!
//! Which headers are trusted. Receiving servers prepend their verdict
//! above everything already in the message; anything below it may have
//! been written by the sender. So headers are walked top to bottom:
//! - a configured trusted authserv-id: the FIRST header naming one of them
//!   counts. With `received_by` configured, it counts only when it lies
//!   above the topmost `Received` written `by` one of our servers (below
//!   that line the sender wrote everything);
//! - `microsoft365`: Exchange Online writes `Authentication-Results`
//!   without an authserv-id, just above the `Received` of its inbound edge
//!   (`from <client> by <X>.mail.protection.outlook.com`). Only the
//!   topmost id-less header above the topmost such `Received` counts; with
//!   no such `Received` (the message never entered through Microsoft),
//!   none does;
//! - `google`: `Authentication-Results: mx.google.com` above the topmost
//!   `Received … by mx.google.com`, likewise.
//!
//! A header passes when its `dmarc` result is `pass` and, when it names
//! `header.from=`, that domain is the `From:` domain. When several sources
//! are configured and one reports `dmarc=fail`, that fail is the header
//! verdict.
//!
//! The rule per `mode`:
//! - `headers`: authenticated ⇔ the header verdict passes.
//! - `verify`: authenticated ⇔ the own verification passes: DMARC `pass`
//!   for the `From:` domain (DKIM or SPF aligned, RFC 7489 §3.1), or a
//!   valid ARC chain (RFC 8617) whose newest trusted sealer recorded
//!   `dmarc=pass` for the same `From:` domain.
//! - `either`: authenticated ⇔ the trusted header does NOT report
//!   `dmarc=fail`, AND (the header verdict passes OR the own verification
//!   passes). A `temperror`, `none` or missing header does not veto.
//!
//! In every mode a message with several `From:` headers, or several
//! addresses in its `From:`, is never authenticated (RFC 7489 §6.6.1).

use crate::domain::{AuthResult, AuthSource, SenderAuth, Verification};
use crate::parse::auth_results::{self, AuthResults};
use crate::parse::{ParsedEmail, received};

use super::config::{Provider, SenderAuthConfig, SenderAuthMode};

/// Inbound edge hosts of Exchange Online (commercial, Germany, GCC High,
/// 21Vianet): the `by` of the `Received` where Microsoft took the message
/// from the internet.
const MICROSOFT_EDGE_SUFFIXES: &[&str] = &[
    ".mail.protection.outlook.com",
    ".mail.protection.outlook.de",
    ".mail.protection.office365.us",
    ".mail.protection.partner.outlook.cn",
];

/// Google's inbound host and authserv-id.
const GOOGLE_MX: &str = "mx.google.com";

/// The `[sender_auth]` rules extraction applies, prepared once.
#[derive(Debug, Clone, Default)]
pub struct AuthRules {
    mode: SenderAuthMode,
    trusted_ids: Vec<String>,
    providers: Vec<Provider>,
    received_by: Vec<String>,
}

impl AuthRules {
    /// The rules of `config`.
    pub fn new(config: &SenderAuthConfig) -> Self {
        let lower = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        AuthRules {
            mode: config.mode,
            trusted_ids: lower(&config.trusted_authserv_ids),
            providers: config.providers.clone(),
            received_by: lower(&config.received_by),
        }
    }
}

/// What one trusted header said.
#[derive(Debug, Clone)]
struct HeaderVerdict {
    source: AuthSource,
    authserv_id: Option<String>,
    dmarc: Option<String>,
    pass: bool,
}

/// The sender authentication verdict for `email` under `rules`, with the
/// own verification when there is one.
pub fn sender_auth(
    email: &ParsedEmail,
    rules: &AuthRules,
    verified: Option<&Verification>,
) -> SenderAuth {
    let from_domain = email.from.as_ref().and_then(|f| f.domain());
    let header = header_verdict(email, rules, from_domain);
    let own = verified.and_then(|v| own_pass(v, from_domain));
    let from_ambiguous = email.from_count > 1;
    let header_pass = header.as_ref().filter(|h| h.pass).map(|h| h.source);
    let header_fails = header
        .as_ref()
        .is_some_and(|h| h.dmarc.as_deref() == Some("fail"));
    let used = if from_ambiguous || from_domain.is_none() {
        None
    } else {
        match rules.mode {
            SenderAuthMode::Headers => header_pass,
            SenderAuthMode::Verify => own,
            SenderAuthMode::Either if header_fails => None,
            SenderAuthMode::Either => header_pass.or(own),
        }
    };
    let own_dmarc = verified.map(|v| v.dmarc.as_str().to_owned());
    let header_dmarc = header.as_ref().and_then(|h| h.dmarc.clone());
    let dmarc_result = match (used, rules.mode) {
        (Some(AuthSource::Dmarc | AuthSource::Arc), _) => Some("pass".to_owned()),
        (Some(_), _) | (None, SenderAuthMode::Headers) => header_dmarc.clone(),
        (None, SenderAuthMode::Verify) => own_dmarc,
        (None, SenderAuthMode::Either) if header_fails => header_dmarc.clone(),
        (None, SenderAuthMode::Either) => own_dmarc.or_else(|| header_dmarc.clone()),
    };
    SenderAuth {
        dmarc_pass: used.is_some(),
        authserv_id: header.as_ref().and_then(|h| h.authserv_id.clone()),
        dmarc_result,
        used,
        header: header.as_ref().map(|h| h.source),
        header_dmarc,
        verified: verified.cloned(),
        from_ambiguous,
    }
}

/// Whether the own verification authenticates `from_domain`, and how.
fn own_pass(v: &Verification, from_domain: Option<&str>) -> Option<AuthSource> {
    let from = from_domain?;
    let same = |d: &Option<String>| d.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(from));
    if v.dmarc == AuthResult::Pass && same(&v.dmarc_domain) {
        return Some(AuthSource::Dmarc);
    }
    let sealed_pass = v.arc == AuthResult::Pass
        && v.arc_trusted
        && v.arc_dmarc.as_deref() == Some("pass")
        && same(&v.arc_header_from);
    sealed_pass.then_some(AuthSource::Arc)
}

/// The verdict of the configured trusted headers: a `fail` from any source
/// wins, else a pass, else whatever was read.
fn header_verdict(
    email: &ParsedEmail,
    rules: &AuthRules,
    from_domain: Option<&str>,
) -> Option<HeaderVerdict> {
    let mut verdicts = Vec::new();
    if !rules.trusted_ids.is_empty() {
        let edge = |by: &str| rules.received_by.iter().any(|ours| ours == by);
        let found = trusted_above_edge(
            email,
            |r| {
                r.authserv_id
                    .as_deref()
                    .is_some_and(|id| rules.trusted_ids.iter().any(|t| t.eq_ignore_ascii_case(id)))
            },
            (!rules.received_by.is_empty()).then_some(&edge as &dyn Fn(&str) -> bool),
        );
        verdicts.extend(found.map(|r| (AuthSource::TrustedHeader, r)));
    }
    for provider in &rules.providers {
        let found = match provider {
            Provider::Microsoft365 => trusted_above_edge(
                email,
                |r| r.authserv_id.is_none() && !r.results.is_empty(),
                Some(&|by: &str| MICROSOFT_EDGE_SUFFIXES.iter().any(|s| by.ends_with(s))),
            )
            .map(|r| (AuthSource::Microsoft365, r)),
            Provider::Google => trusted_above_edge(
                email,
                |r| {
                    r.authserv_id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(GOOGLE_MX))
                },
                Some(&|by: &str| by == GOOGLE_MX),
            )
            .map(|r| (AuthSource::Google, r)),
        };
        verdicts.extend(found);
    }
    let verdicts: Vec<HeaderVerdict> = verdicts
        .into_iter()
        .map(|(source, r)| {
            let dmarc = r.method("dmarc");
            let pass = dmarc.is_some_and(|d| {
                d.result == "pass"
                    && from_domain.is_some()
                    && d.header_from
                        .as_deref()
                        .is_none_or(|h| Some(h) == from_domain)
            });
            HeaderVerdict {
                source,
                dmarc: dmarc.map(|d| d.result.clone()),
                authserv_id: r.authserv_id,
                pass,
            }
        })
        .collect();
    let fail = verdicts
        .iter()
        .position(|v| v.dmarc.as_deref() == Some("fail"));
    let pass = verdicts.iter().position(|v| v.pass);
    let pick = fail.or(pass).unwrap_or(0);
    verdicts.into_iter().nth(pick)
}

/// The topmost `Authentication-Results` that `matches`, provided it lies
/// above the topmost `Received` whose `by` host is an `edge` (when an
/// edge is required). Nothing below the edge is ever read.
fn trusted_above_edge(
    email: &ParsedEmail,
    matches: impl Fn(&AuthResults) -> bool,
    edge: Option<&dyn Fn(&str) -> bool>,
) -> Option<AuthResults> {
    let mut found = None;
    for h in &email.headers {
        if h.name.eq_ignore_ascii_case("authentication-results") && found.is_none() {
            let read = auth_results::parse(&h.value);
            if matches(&read) {
                found = Some(read);
            }
        } else if let Some(is_edge) = edge
            && h.name.eq_ignore_ascii_case("received")
            && received::parse(&h.value).by.as_deref().is_some_and(is_edge)
        {
            return found;
        }
    }
    if edge.is_some() { None } else { found }
}

#[cfg(test)]
mod tests;
