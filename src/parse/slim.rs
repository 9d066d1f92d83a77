//! A large message without its bulky bodies, for reading: where the
//! leaf parts that are neither text nor messages (images, PDFs, archives)
//! lie, found by walking the MIME structure (RFC 2046 §5.1) without
//! decoding anything, and a copy of the message with those bodies cut out.
//!
//! Why: the MIME parser decodes every body it meets, so reading a message
//! with a 25 MB base64 image held the image decoded (18 MB) beside the
//! message itself, which was most of the daemon's memory while it took
//! one. Nothing refundd reads of a message lives in such a body: the text,
//! the headers, the attachments' names and types stay in the copy, and
//! each cut part's decoded size is computed from its encoded body
//! ([`Cut::decoded_size`]).
//!
//! Only messages over [`SLIM_ABOVE_BYTES`] are cut, and only bodies over
//! [`BULKY_PART_BYTES`]: everyday mail is parsed exactly as it came. A
//! structure the walk cannot follow (no blank line after a header, a
//! multipart without its boundary) is simply not cut: the parser then
//! reads the whole message, as before.

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::{MessageParser, MimeHeaders};

/// Messages larger than this are read from their slim copy.
pub const SLIM_ABOVE_BYTES: usize = 1 << 20;

/// Bodies of non-text leaf parts larger than this are cut.
const BULKY_PART_BYTES: usize = 64 * 1024;

/// How deep nested multiparts are followed.
const MAX_DEPTH: usize = 16;

/// A message with its bulky bodies cut out.
#[derive(Debug)]
struct Slim {
    /// The message, each cut body empty (its part's header and the
    /// boundary after it kept).
    pub bytes: Vec<u8>,
    /// The cuts, in order.
    pub cuts: Vec<Cut>,
}

/// One body cut out of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the (now empty) body starts in [`Slim::bytes`]: the parser's
    /// body offset of that part.
    pub at: usize,
    /// Where the body was in the original message.
    pub original: Range<usize>,
    /// Its size decoded: base64 counted by its characters (RFC 4648 §4),
    /// any other encoding by its bytes.
    pub decoded_size: usize,
}

/// What a parser should read of `raw`: its slim copy when it has one
/// (with the cuts made), else `raw` itself (no cuts).
pub fn for_reading(raw: &[u8]) -> (Cow<'_, [u8]>, Vec<Cut>) {
    match slim(raw) {
        Some(Slim { bytes, cuts }) => (Cow::Owned(bytes), cuts),
        None => (Cow::Borrowed(raw), Vec::new()),
    }
}

/// `raw` without its bulky bodies, or `None` when it is small or has none.
fn slim(raw: &[u8]) -> Option<Slim> {
    if raw.len() <= SLIM_ABOVE_BYTES {
        return None;
    }
    let mut bulky = Vec::new();
    walk(raw, 0..raw.len(), 0, &mut bulky);
    if bulky.is_empty() {
        return None;
    }
    let cut_bytes: usize = bulky.iter().map(|(body, _)| body.len()).sum();
    let mut bytes = Vec::with_capacity(raw.len() - cut_bytes);
    let mut cuts = Vec::with_capacity(bulky.len());
    let mut from = 0;
    for (body, base64) in bulky {
        bytes.extend_from_slice(&raw[from..body.start]);
        cuts.push(Cut {
            at: bytes.len(),
            decoded_size: decoded_size(&raw[body.clone()], base64),
            original: body.clone(),
        });
        from = body.end;
    }
    bytes.extend_from_slice(&raw[from..]);
    Some(Slim { bytes, cuts })
}

/// Collects the bulky bodies (and whether each is base64) of the entity
/// at `entity` (a header, a blank line, a body), in order.
fn walk(raw: &[u8], entity: Range<usize>, depth: usize, bulky: &mut Vec<(Range<usize>, bool)>) {
    let bytes = &raw[entity.clone()];
    let Some(header_len) = header_len(bytes) else {
        return;
    };
    let body = entity.start + header_len..entity.end;
    let Some(header) = MessageParser::default().parse_headers(&bytes[..header_len]) else {
        return;
    };
    let Some(content_type) = header.content_type() else {
        // text/plain (RFC 2045 §5.2).
        return;
    };
    let kind = content_type.ctype().to_ascii_lowercase();
    match kind.as_str() {
        "multipart" => {
            let Some(boundary) = content_type.attribute("boundary") else {
                return;
            };
            if depth >= MAX_DEPTH || boundary.is_empty() {
                return;
            }
            for part in body_parts(raw, body, boundary.as_bytes()) {
                walk(raw, part, depth + 1, bulky);
            }
        }
        "text" | "message" => {}
        _ if body.len() > BULKY_PART_BYTES => {
            let base64 = header
                .content_transfer_encoding()
                .is_some_and(|value| value.trim().eq_ignore_ascii_case("base64"));
            bulky.push((body, base64));
        }
        _ => {}
    }
}

/// The length of an entity's header and the blank line after it, or
/// `None` when there is no blank line (a header without a body).
fn header_len(bytes: &[u8]) -> Option<usize> {
    // An entity with no header fields starts with its blank line.
    if bytes.starts_with(b"\r\n") {
        return Some(2);
    }
    if bytes.starts_with(b"\n") {
        return Some(1);
    }
    let mut at = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line == b"\r\n" || line == b"\n" {
            return Some(at);
        }
    }
    None
}

/// The body parts of a multipart body: what lies between its delimiter
/// lines (`--boundary`, optional white space), without the line break that
/// belongs to the next delimiter; the preamble and the epilogue are not
/// parts. A body whose close delimiter is missing ends its last part at
/// the end of the body, as readers do.
fn body_parts(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut at = body.start;
    for line in raw[body.clone()].split_inclusive(|&b| b == b'\n') {
        let line_start = at;
        at += line.len();
        let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        else {
            continue;
        };
        let rest = rest.trim_ascii_end();
        let closes = rest == b"--";
        if !closes && !rest.is_empty() {
            continue;
        }
        if let Some(start) = start.take() {
            parts.push(start..line_break_before(raw, start, line_start));
        }
        if closes {
            return parts;
        }
        start = Some(at);
    }
    if let Some(start) = start {
        parts.push(start..body.end);
    }
    parts
}

/// `end` less the line break just before it (the delimiter's own CRLF),
/// but not before `start`.
fn line_break_before(raw: &[u8], start: usize, end: usize) -> usize {
    let mut end = end;
    if end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// The decoded size of a body: for base64, three bytes per four
/// characters of its alphabet, less its padding.
fn decoded_size(body: &[u8], base64: bool) -> usize {
    if !base64 {
        return body.len();
    }
    let chars = body
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .count();
    chars * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with a text part, a `size`-byte base64 image, a small
    /// PDF and a nested multipart holding another large image.
    fn mail(size: usize) -> Vec<u8> {
        let line = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA\r\n";
        let image = line.repeat(size / line.len() + 1);
        format!(
            "From: a@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
             preamble\r\n\
             --outer\r\nContent-Type: text/plain\r\n\r\nPlease refund order 42.\r\n\
             --outer\r\nContent-Type: image/png; name=\"shot.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"shot.png\"\r\n\r\n{image}\
             --outer\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
             --outer \r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
             --inner\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n{image}\
             --inner--\r\n\
             --outer--\r\nepilogue\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn small_mail_is_read_as_it_came() {
        assert!(slim(&mail(10_000)).is_none());
        assert!(slim(b"Subject: x\r\n\r\nhello").is_none());
    }

    #[test]
    fn bulky_bodies_are_cut_and_everything_else_kept_in_place() {
        let raw = mail(700_000);
        let slim = slim(&raw).expect("over the size: cut");
        assert_eq!(
            slim.cuts.len(),
            2,
            "the two large images, not the small PDF"
        );
        let kept = String::from_utf8(slim.bytes.clone()).unwrap();
        assert!(kept.contains("Please refund order 42."));
        assert!(kept.contains("JVBERi0xLjQK"), "small parts stay");
        assert!(!kept.contains("iVBORw0KGgo"), "large bodies go");
        assert!(kept.contains("filename=\"shot.png\"\r\n\r\n\r\n--outer\r\n"));
        assert!(kept.ends_with("--inner--\r\n--outer--\r\nepilogue\r\n"));
        // The cut bytes are exactly the bodies, and put back they give the
        // message again.
        let mut whole = Vec::new();
        let mut from = 0;
        for cut in &slim.cuts {
            whole.extend_from_slice(&slim.bytes[from..cut.at]);
            whole.extend_from_slice(&raw[cut.original.clone()]);
            from = cut.at;
        }
        whole.extend_from_slice(&slim.bytes[from..]);
        assert!(whole == raw);
        let body = &raw[slim.cuts[0].original.clone()];
        assert!(body.starts_with(b"iVBORw0KGgo") && body.ends_with(b"AChwGA"));
        assert_eq!(slim.cuts[0].decoded_size, (body.len() + 2) / 74 * 54);
    }

    #[test]
    fn a_structure_the_walk_cannot_follow_is_not_cut() {
        let big = "A".repeat(2 * SLIM_ABOVE_BYTES);
        // No boundary parameter.
        let no_boundary = format!(
            "Subject: x\r\nContent-Type: multipart/mixed\r\n\r\n--b\r\n\
             Content-Type: image/png\r\n\r\n{big}\r\n--b--\r\n"
        );
        assert!(slim(no_boundary.as_bytes()).is_none());
        // A header that never ends.
        let endless = format!("Subject: x\r\nX-Long: {big}");
        assert!(slim(endless.as_bytes()).is_none());
        // A text body, however large, is text.
        let text = format!("Subject: x\r\nContent-Type: text/plain\r\n\r\n{big}");
        assert!(slim(text.as_bytes()).is_none());
    }

    #[test]
    fn a_single_part_image_message_loses_its_body_and_a_missing_close_ends_at_the_end() {
        let big = "QUJD\r\n".repeat(SLIM_ABOVE_BYTES / 5);
        let single = format!(
            "Subject: x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{big}"
        );
        let cut = slim(single.as_bytes()).unwrap();
        assert_eq!(cut.bytes.len(), single.len() - big.len());
        assert_eq!(cut.cuts[0].decoded_size, big.len() / 6 * 3);
        let unclosed = format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: application/zip\r\n\r\n{big}"
        );
        let cut = slim(unclosed.as_bytes()).unwrap();
        assert_eq!(cut.cuts[0].original.end, unclosed.len());
    }
}
