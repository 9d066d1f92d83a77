//! Redaction of Polar customer-session tokens (`customer_session_token=
//! polar_cst_…`, a bearer token carried by customer-portal links) from raw
//! message bytes, before anything is stored or logged.
//!
//! - Takes: raw RFC 5322 bytes.
//! - Gives: the same bytes with every token value replaced by `REDACTED`
//!   (borrowed unchanged when there is none), still a valid message: the
//!   order UUID beside the token survives.
//! - Covers: plain and HTML bodies (`&amp;customer_session_token=`),
//!   URL-encoded parameters (`%3D`), quoted-printable bodies where the
//!   token is split by soft line breaks (`=\r\n`, RFC 2045 §6.7 rule 5) or
//!   its `=` is written `=3D`, bare `polar_cst_…` values, and base64 parts
//!   (decoded, redacted, re-encoded in place, MIME structure untouched),
//!   including base64 or plain `message/rfc822` parts, recursively.
//! - Never: fails. Undecodable base64 parts are left as they are (no token
//!   can be found in them); over-redaction is preferred to leaking.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use base64::Engine;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::{Encoding, MessageParser, PartType};
use regex::bytes::{Captures, Regex};

use super::slim;

/// What replaces a token value.
const REDACTED: &[u8] = b"REDACTED";

/// How deep nested `message/rfc822` parts are followed.
const MAX_DEPTH: usize = 4;

/// A quoted-printable soft line break may sit between any two characters.
const SOFT_BREAK: &str = r"(?:=\r?\n)?";

static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    let value = r"(?:[A-Za-z0-9_-]|=\r?\n)+";
    let key = tolerant("customer_session_token");
    let bare = tolerant("polar_cst_");
    let pattern = format!(
        r"(?i-u)(?P<key>{key}{SOFT_BREAK}(?:=3D|%3D|=)){SOFT_BREAK}(?P<val>{value})|(?P<bare>{bare}{value})"
    );
    Regex::new(&pattern).expect("the token pattern is valid")
});

/// Markers of base64 parts and nested messages.
static OPAQUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)base64|message/").expect("the opaque part pattern is valid")
});

/// `literal` as a regex that tolerates a QP soft break between characters.
fn tolerant(literal: &str) -> String {
    let chars: Vec<String> = literal
        .chars()
        .map(|c| regex::escape(&c.to_string()))
        .collect();
    chars.join(SOFT_BREAK)
}

/// `raw` with every Polar customer-session token replaced by `REDACTED`.
pub fn redact_secrets(raw: &[u8]) -> Cow<'_, [u8]> {
    redact_message(raw, 0)
}

fn redact_message(raw: &[u8], depth: usize) -> Cow<'_, [u8]> {
    let edits = if depth < MAX_DEPTH && has_opaque_parts(raw) {
        encoded_part_edits(raw, depth)
    } else {
        Vec::new()
    };
    if edits.is_empty() {
        return redact_text(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&raw[at..range.start]);
        out.extend_from_slice(&replacement);
        at = range.end;
    }
    out.extend_from_slice(&raw[at..]);
    Cow::Owned(redact_text(&out).into_owned())
}

/// Whether `raw` may hold parts a text scan cannot see into (base64 or
/// nested messages); parsing the MIME tree is skipped when it cannot.
fn has_opaque_parts(raw: &[u8]) -> bool {
    OPAQUE.is_match(raw)
}

/// Replacements for the parts a text scan cannot see into: base64 bodies
/// and nested messages. Sorted, non-overlapping.
fn encoded_part_edits(raw: &[u8], depth: usize) -> Vec<(Range<usize>, Vec<u8>)> {
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    for OpaquePart { range, kind, bulky } in opaque_parts(raw) {
        let Some(body) = raw.get(range.clone()) else {
            continue;
        };
        if edits.last().is_some_and(|(last, _)| range.start < last.end) {
            continue;
        }
        let edit = match kind {
            // A bulky body (see `slim`) is first scanned a piece at a time.
            OpaqueKind::Base64 { is_message: false } if bulky && !base64_may_hold_token(body) => {
                None
            }
            OpaqueKind::Base64 { is_message } => redact_base64(body, is_message, depth)
                .map(|encoded| (range.start..range.start + content_len(body), encoded)),
            OpaqueKind::Message => match redact_message(body, depth + 1) {
                Cow::Owned(redacted) => Some((range, redacted)),
                Cow::Borrowed(_) => None,
            },
        };
        edits.extend(edit);
    }
    edits
}

/// A part whose body a text scan cannot see into.
struct OpaquePart {
    /// Where its body lies in the message.
    range: Range<usize>,
    kind: OpaqueKind,
    /// A large non-text body, cut out for parsing (see `slim`).
    bulky: bool,
}

enum OpaqueKind {
    Base64 {
        is_message: bool,
    },
    /// A nested message, not encoded.
    Message,
}

/// The opaque parts of `raw`, in order. Only where they are is kept of the
/// parse, which reads a large message without its bulky bodies (see
/// `slim`): the parser decodes every body it sees, and the bodies are
/// decoded here one at a time instead.
fn opaque_parts(raw: &[u8]) -> Vec<OpaquePart> {
    let (bytes, cuts) = slim::for_reading(raw);
    let Some(message) = MessageParser::default().parse(&bytes[..]) else {
        return Vec::new();
    };
    message
        .parts
        .iter()
        .filter_map(|part| {
            let body = part.offset_body as usize..part.offset_end as usize;
            let is_message = matches!(part.body, PartType::Message(_));
            let kind = match (part.encoding, &part.body) {
                (_, PartType::Multipart(_)) => return None,
                (Encoding::Base64, _) => OpaqueKind::Base64 { is_message },
                (Encoding::None, PartType::Message(_)) => OpaqueKind::Message,
                _ => return None,
            };
            let cut = cuts.iter().find(|cut| cut.at == body.start);
            let range = match cut {
                Some(cut) => cut.original.clone(),
                // Cuts lie only in other leaf parts: shifted by the cut
                // bytes before it.
                None => {
                    let shift: usize = cuts
                        .iter()
                        .filter(|cut| cut.at < body.start)
                        .map(|cut| cut.original.len())
                        .sum();
                    body.start + shift..body.end + shift
                }
            };
            Some(OpaquePart {
                range,
                kind,
                bulky: cut.is_some(),
            })
        })
        .collect()
}

/// Whether a base64 body may hold a token, decoded a piece at a time with
/// the end of the previous piece carried over (a token across two pieces
/// is still seen): a large attachment is not decoded whole only to find
/// nothing. A body that does not decode says yes, for
/// [`redact_base64`] to decide.
fn base64_may_hold_token(body: &[u8]) -> bool {
    /// Base64 characters per piece (a multiple of 4).
    const PIECE: usize = 1 << 20;
    /// Decoded bytes carried into the next piece's scan.
    const CARRY: usize = 64 * 1024;
    let mut chars = body.iter().copied().filter(|&b| is_base64(b));
    let mut piece = Vec::with_capacity(PIECE);
    let mut window: Vec<u8> = Vec::new();
    loop {
        piece.clear();
        piece.extend(chars.by_ref().take(PIECE));
        if piece.is_empty() {
            return false;
        }
        let Some(decoded) = base64_decode(&piece) else {
            return true;
        };
        window.extend_from_slice(&decoded);
        if TOKEN.is_match(&window) {
            return true;
        }
        window.drain(..window.len().saturating_sub(CARRY));
    }
}

/// The re-encoded body if decoding it revealed a token, else `None`.
fn redact_base64(body: &[u8], is_message: bool, depth: usize) -> Option<Vec<u8>> {
    let decoded = base64_decode(body)?;
    let redacted = if is_message {
        redact_message(&decoded, depth + 1)
    } else {
        redact_text(&decoded)
    };
    match redacted {
        Cow::Borrowed(_) => None,
        Cow::Owned(redacted) => Some(encode_lines(&redacted, line_ending(body))),
    }
}

/// Length of `body` up to and including its last base64 character, so
/// the line break before the next boundary stays where it was.
fn content_len(body: &[u8]) -> usize {
    body.iter()
        .rposition(|&b| is_base64(b))
        .map_or(0, |p| p + 1)
}

/// A character of base64's alphabet or its padding (RFC 4648 §4).
fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

fn line_ending(body: &[u8]) -> &'static [u8] {
    if body.windows(2).any(|w| w == b"\r\n") || !body.contains(&b'\n') {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// Base64 in 76-character lines (RFC 2045 §6.8), no trailing line break.
fn encode_lines(data: &[u8], eol: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 76 * eol.len());
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(line);
    }
    out
}

/// Token values in `bytes` (plain, HTML or quoted-printable) replaced.
fn redact_text(bytes: &[u8]) -> Cow<'_, [u8]> {
    TOKEN.replace_all(bytes, |caps: &Captures<'_>| {
        let (prefix, value) = match (caps.name("key"), caps.name("val"), caps.name("bare")) {
            (Some(key), Some(val), _) => (key.as_bytes(), val.as_bytes()),
            (_, _, Some(bare)) => (&b""[..], bare.as_bytes()),
            _ => (&b""[..], &b""[..]),
        };
        let mut out = prefix.to_vec();
        out.extend_from_slice(REDACTED);
        // Keep one soft break so the quoted-printable line stays short.
        if let Some(pos) = value.windows(2).position(|w| w == b"=\n" || w == b"=\r") {
            let eol: &[u8] = if value[pos + 1] == b'\r' {
                b"=\r\n"
            } else {
                b"=\n"
            };
            out.extend_from_slice(eol);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const ORDER: &str = "0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c";
    const TOKEN_VALUE: &str = "polar_cst_Xy7Gk2Lq9Wm4Rt8Zp3Vn6Bc1Hd5Jf0Ks";

    fn redacted_str(raw: &str) -> String {
        String::from_utf8(redact_secrets(raw.as_bytes()).into_owned()).unwrap()
    }

    /// A message with a text part and a large `application/octet-stream`
    /// attachment whose decoded content holds `link` starting at byte
    /// `at` (padding around it).
    fn large_attachment_with(link: &str, at: usize) -> String {
        let mut content = "x".repeat(at).into_bytes();
        content.extend_from_slice(link.as_bytes());
        content.push(b'\n');
        content.extend(std::iter::repeat_n(b'y', 600_000));
        let encoded = encode_lines(&content, b"\r\n");
        format!(
            "From: a@example.com\r\nSubject: logs\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nOrder {ORDER}, logs attached.\r\n\
             --b\r\nContent-Type: application/octet-stream; name=\"portal.log\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            String::from_utf8(encoded).unwrap()
        )
    }

    #[test]
    fn a_token_in_a_large_attachment_is_found_even_across_two_scanned_pieces() {
        // A piece of 1 MiB of base64 decodes to 786,432 bytes: the token's
        // key starts 10 bytes before that, in the first piece, and the
        // token ends in the second; and once well inside the second.
        let key = portal_link().find("customer_session_token").unwrap();
        for at in [786_432 - key - 10, 1_000_000] {
            let raw = large_attachment_with(&portal_link(), at);
            assert!(raw.len() > slim::SLIM_ABOVE_BYTES);
            let out = redact_secrets(raw.as_bytes()).into_owned();
            let parsed = MessageParser::default().parse(&out[..]).unwrap();
            let log = parsed.attachment(0).unwrap().contents();
            let log = String::from_utf8_lossy(log);
            assert!(!log.contains("Xy7Gk2"), "token survived at {at}");
            assert!(log.contains(&format!("{ORDER}?customer_session_token=REDACTED")));
            let kept = at + portal_link().len() - TOKEN_VALUE.len() + "REDACTED\n".len() + 600_000;
            assert_eq!(log.len(), kept, "nothing else changed");
        }
        // Without a token the message stays as it came, not re-encoded.
        let clean = large_attachment_with("https://anumi.example/help", 786_432 - 20);
        assert!(matches!(redact_secrets(clean.as_bytes()), Cow::Borrowed(_)));
    }

    fn portal_link() -> String {
        format!("https://polar.sh/anumi/portal/orders/{ORDER}?customer_session_token={TOKEN_VALUE}")
    }

    /// The decoded text of the redacted message: no token, the order kept.
    fn assert_clean_after_parse(raw: &str) {
        let out = redacted_str(raw);
        assert!(!out.contains("Xy7Gk2"), "token survived in raw:\n{out}");
        let parsed = parse(out.as_bytes()).expect("still parses");
        let all = format!(
            "{}\n{}\n{:?}",
            parsed.text,
            parsed.html.clone().unwrap_or_default(),
            parsed.links
        );
        assert!(!all.contains("Xy7Gk2"), "token survived decoding:\n{all}");
        assert!(!all.contains("polar_cst_"), "token prefix survived:\n{all}");
        assert!(all.contains(ORDER), "order id lost:\n{all}");
        assert!(all.contains("REDACTED"), "no marker:\n{all}");
    }

    #[test]
    fn a_plain_body_token_is_replaced_and_the_order_survives() {
        let raw = format!(
            "From: a@example.com\r\nSubject: refund\r\n\r\nMy order: {}\r\nthanks\r\n",
            portal_link()
        );
        assert_clean_after_parse(&raw);
        assert!(redacted_str(&raw).contains("customer_session_token=REDACTED\r\nthanks"));
    }

    #[test]
    fn a_message_without_token_is_returned_unchanged_and_borrowed() {
        let raw = b"From: a@example.com\r\n\r\nHello, refund ANUMI-0001 please\r\n";
        assert!(matches!(redact_secrets(raw), Cow::Borrowed(_)));
    }

    #[test]
    fn a_token_split_by_quoted_printable_soft_breaks_is_replaced() {
        let raw = format!(
            "From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Link: https://polar.sh/anumi/portal/orders/{ORDER}?customer_sess=\r\n\
             ion_token=3Dpolar_cst_Xy7Gk2Lq9W=\r\nm4Rt8Zp3Vn6Bc1Hd5Jf0Ks&x=3D1\r\nBye\r\n"
        );
        assert_clean_after_parse(&raw);
    }

    #[test]
    fn a_token_split_right_after_the_equals_sign_is_replaced() {
        let raw = format!(
            "From: a@example.com\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             https://polar.sh/anumi/portal/orders/{ORDER}?customer_session_token=3D=\r\n\
             polar_cst_Xy7Gk2Lq9Wm4Rt8Zp3Vn6Bc1Hd5Jf0Ks\r\n"
        );
        assert_clean_after_parse(&raw);
    }

    #[test]
    fn an_html_href_with_amp_entities_is_redacted() {
        let raw = format!(
            "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <p><a href=\"https://polar.sh/anumi/portal?id={ORDER}&amp;customer_session_token={TOKEN_VALUE}\">order</a></p>\r\n"
        );
        assert_clean_after_parse(&raw);
        let parsed = parse(redacted_str(&raw).as_bytes()).unwrap();
        assert_eq!(
            parsed.links[0].href,
            format!("https://polar.sh/anumi/portal?id={ORDER}&customer_session_token=REDACTED")
        );
    }

    #[test]
    fn a_url_encoded_token_inside_a_safelink_is_redacted() {
        let raw = format!(
            "From: a@example.com\r\n\r\nhttps://eur01.safelinks.protection.outlook.com/?url=\
             https%3A%2F%2Fpolar.sh%2Fanumi%2Fportal%2Forders%2F{ORDER}%3Fcustomer_session_token%3D{TOKEN_VALUE}&data=1\r\n"
        );
        assert_clean_after_parse(&raw);
    }

    #[test]
    fn a_base64_part_is_decoded_redacted_and_reencoded_in_place() {
        let body = format!("Bonjour,\r\nma commande : {}\r\nMerci\r\n", portal_link());
        let encoded = encode_lines(body.as_bytes(), b"\r\n");
        let raw = format!(
            "From: a@example.com\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --b1\r\nContent-Type: image/png; name=\"a.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n",
            String::from_utf8(encoded).unwrap()
        );
        assert_clean_after_parse(&raw);
        let parsed = parse(redacted_str(&raw).as_bytes()).unwrap();
        assert!(parsed.text.starts_with("Bonjour,"));
        assert!(parsed.text.contains("customer_session_token=REDACTED"));
        assert_eq!(parsed.attachments.len(), 1);
        assert_eq!(parsed.attachments[0].size, 8);
    }

    #[test]
    fn a_base64_forwarded_message_is_redacted_recursively() {
        let inner = format!(
            "From: polar@example.com\r\nSubject: receipt\r\n\r\nView: {}\r\n",
            portal_link()
        );
        let encoded = String::from_utf8(encode_lines(inner.as_bytes(), b"\r\n")).unwrap();
        let raw = format!(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
             --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {encoded}\r\n--b--\r\n"
        );
        let out = redacted_str(&raw);
        let decoded = out
            .split("base64\r\n\r\n")
            .nth(1)
            .and_then(|b| base64_decode(b.split("\r\n--b--").next().unwrap().as_bytes()))
            .unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        assert!(decoded.contains(&format!("orders/{ORDER}?customer_session_token=REDACTED")));
        assert!(!decoded.contains("Xy7Gk2"));
    }

    #[test]
    fn a_bare_session_token_is_redacted_wherever_it_appears() {
        let out = redacted_str("From: a@example.com\r\n\r\ntoken polar_cst_abcDEF123 here\r\n");
        assert!(out.contains("token REDACTED here"));
    }
}
