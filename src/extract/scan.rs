//! What extraction reads of one message, assembled once: the subject, the
//! whole body text (quotes included: an order id quoted from our own
//! earlier reply still identifies the order), the customer's fresh text,
//! and the HTML link targets, percent-decoded (Outlook safelinks wrap the
//! real URL as `?url=https%3A%2F%2F…`).

use std::borrow::Cow;

use super::quotes::fresh_text;
use crate::parse::ParsedEmail;

/// One link target of the HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanLink {
    /// The href, percent-decoded once.
    pub target: String,
    /// Inside a blockquote (quoted history).
    pub quoted: bool,
}

/// The texts of one message, in the order references are reported.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    pub subject: &'a str,
    pub body: &'a str,
    pub fresh: String,
    pub links: Vec<ScanLink>,
}

impl<'a> Scan<'a> {
    /// Assembles the texts of `email`.
    pub fn new(email: &'a ParsedEmail) -> Self {
        Scan {
            subject: &email.subject,
            body: &email.text,
            fresh: fresh_text(&email.text),
            links: email
                .links
                .iter()
                .map(|l| ScanLink {
                    target: percent_decode(&l.href).into_owned(),
                    quoted: l.quoted,
                })
                .collect(),
        }
    }

    /// Where references are looked for: subject, whole body, every link.
    pub fn everything(&self) -> impl Iterator<Item = &str> {
        [self.subject, self.body]
            .into_iter()
            .chain(self.links.iter().map(|l| l.target.as_str()))
    }

    /// The customer's own words: subject, fresh text, unquoted links.
    pub fn own(&self) -> impl Iterator<Item = &str> {
        [self.subject, self.fresh.as_str()].into_iter().chain(
            self.links
                .iter()
                .filter(|l| !l.quoted)
                .map(|l| l.target.as_str()),
        )
    }
}

/// `%XX` sequences decoded (invalid UTF-8 replaced); `+` is left alone.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_once() {
        let cases = [
            ("https://x.test/a", "https://x.test/a"),
            (
                "https%3A%2F%2Fpolar.sh%2Fportal%2Forders%2Fab",
                "https://polar.sh/portal/orders/ab",
            ),
            ("100%", "100%"),
            ("%zz%4", "%zz%4"),
            ("%252F", "%2F"),
        ];
        for (input, decoded) in cases {
            assert_eq!(percent_decode(input), decoded, "{input}");
        }
    }
}
