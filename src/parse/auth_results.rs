//! `Authentication-Results` (RFC 8601) and `ARC-Authentication-Results`
//! (RFC 8617 §4.1.1) syntax: the authserv-id and the `method=result`
//! statements of one header value.
//!
//! - Takes: one unfolded header value.
//! - Gives: [`AuthResults`]: the authserv-id (or `None` when the header
//!   has none, as Microsoft 365 writes it), and each method's result with
//!   its `header.from` / `header.d` properties.
//! - Never: decides whom to trust (that is `extract::auth`).
//! - Fails: never; what cannot be read is left out.
//!
//! Handles comments in parentheses (nested, anywhere: RFC 8601 §2.2 allows
//! CFWS), the optional version after the authserv-id, quoted values, the
//! `none` form (no results), `a = b` with spaces and a missing space after
//! `;` (Exchange writes `header.d=example.com;dmarc=pass`).

/// One header value, read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// The authserv-id as written, or `None` when the first statement is
    /// already a result (Microsoft 365 / Exchange Online).
    pub authserv_id: Option<String>,
    /// The ARC instance (`i=N;` before the authserv-id), for ARC headers.
    pub instance: Option<u32>,
    /// Every `method=result` statement, in order.
    pub results: Vec<MethodResult>,
}

impl AuthResults {
    /// The first result of `method` (lowercase, e.g. `dmarc`).
    pub fn method(&self, method: &str) -> Option<&MethodResult> {
        self.results.iter().find(|r| r.method == method)
    }
}

/// One `method=result` with the properties refundd reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// Lowercase method without version (`dmarc`).
    pub method: String,
    /// Lowercase result (`pass`, `fail`, `none`, …).
    pub result: String,
    /// `header.from` domain, lowercased, without a leading `@` or a
    /// trailing dot (a full address is reduced to its domain).
    pub header_from: Option<String>,
}

/// Reads an `Authentication-Results` value.
pub fn parse(value: &str) -> AuthResults {
    parse_statements(&strip_comments(value), false)
}

/// Reads an `ARC-Authentication-Results` value (`i=N; authserv-id; …`).
pub fn parse_arc(value: &str) -> AuthResults {
    parse_statements(&strip_comments(value), true)
}

fn parse_statements(cleaned: &str, arc: bool) -> AuthResults {
    let mut statements = split_unquoted(cleaned, ';').into_iter().peekable();
    let mut out = AuthResults::default();
    if arc {
        out.instance = statements.next().and_then(|s| {
            let (k, v) = s.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("i")
                .then(|| v.trim().parse().ok())?
        });
    }
    // The authserv-id is a bare token (and maybe a version); a first
    // statement holding `=` is already a result: the id is missing.
    if let Some(first) = statements.peek()
        && !first.split_whitespace().next().unwrap_or("").contains('=')
    {
        out.authserv_id = first.split_whitespace().next().map(str::to_owned);
        statements.next();
    }
    out.results = statements.filter_map(|s| parse_resinfo(&s)).collect();
    out
}

/// `method[/version]=result [reason=…] [ptype.property=value …]`.
fn parse_resinfo(statement: &str) -> Option<MethodResult> {
    let mut tokens = tokens(statement).into_iter();
    let (method, result) = tokens.next()?.split_once('=').map(|(m, r)| {
        let method = m.split('/').next().unwrap_or(m).trim().to_ascii_lowercase();
        (method, r.trim().to_ascii_lowercase())
    })?;
    if method.is_empty() || method == "none" {
        return None;
    }
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

/// `value` with comments removed, for other structured headers.
pub(crate) fn without_comments(value: &str) -> String {
    strip_comments(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_without_authserv_id_is_read_as_results() {
        let m365 = "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com; dkim=pass (signature was verified) header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass reason=100";
        let read = parse(m365);
        assert_eq!(read.authserv_id, None);
        let methods: Vec<&str> = read.results.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["spf", "dkim", "dmarc", "compauth"]);
        let dmarc = read.method("dmarc").unwrap();
        assert_eq!(dmarc.result, "pass");
        assert_eq!(dmarc.header_from.as_deref(), Some("example.com"));
    }

    #[test]
    fn an_authserv_id_with_version_and_the_none_form() {
        let read = parse("mx.anumi.app 1; none");
        assert_eq!(read.authserv_id.as_deref(), Some("mx.anumi.app"));
        assert!(read.results.is_empty());
    }

    #[test]
    fn arc_results_carry_their_instance() {
        let read = parse_arc(
            "i=2; lists.example.org; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
        );
        assert_eq!(read.instance, Some(2));
        assert_eq!(read.authserv_id.as_deref(), Some("lists.example.org"));
        assert_eq!(read.method("dmarc").unwrap().result, "pass");
    }
}
