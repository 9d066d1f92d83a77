//! Parsing: raw RFC 5322 bytes -> [`ParsedEmail`], an owned, decoded view
//! of one message that `screen` and `extract` read.
//!
//! - Takes: the raw bytes of one message as stored by `ingest`.
//! - Gives: addresses, threading ids, subject, the best plain text (from
//!   `text/plain` parts, or derived from HTML for HTML-only mail), the first
//!   HTML part raw (the console sanitizes it), the links of that HTML part,
//!   attachments (name, type, size), whether it is a delivery report, and
//!   the top-level headers in order, unfolded.
//! - Never: interprets the content (that is `screen` and `extract`), logs
//!   bodies or addresses, or panics on hostile input. Decoding (MIME
//!   transfer encodings, RFC 2047 words, charsets) is mail-parser's.
//! - Fails: with [`ParseError::NotMail`] when the bytes hold no message
//!   header at all (mail-parser returns nothing); any other oddity
//!   (broken MIME, unknown charset) is parsed best-effort.
//!
//! Size caps: the plain text kept for scanning is cut at
//! [`MAX_TEXT_BYTES`] and the HTML converted to text or scanned for links
//! at [`MAX_HTML_SCAN_BYTES`], so a hostile message cannot make extraction
//! slow; [`ParsedEmail::text_truncated`] says when the text was cut.
//!
//! A message over 1 MiB is read from a copy without its bulky non-text
//! bodies (`slim`): the parser decodes every body, and a large attachment
//! decoded beside the message was most of the daemon's memory. The
//! attachments keep their names, types and sizes.
//!
//! [`redact_secrets`] removes Polar customer-session tokens from raw bytes;
//! it runs before a message is stored or logged.
//!
//! Line endings: CRLF and bare LF are read as they are; a message with
//! bare CR line endings only (classic Mac OS, some broken report
//! generators) is read as if each CR were CRLF, so its header is not one
//! long line (RFC 5322 §2.1 requires CRLF).
//!
//! [`auth_results`] and [`received`] read the two trace headers that sender
//! authentication needs.

pub mod auth_results;
mod headers;
mod html;
pub mod received;
mod redact;
pub mod search;
mod slim;

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

pub use headers::HeaderField;
pub use html::{HtmlText, Link, html_to_text};
pub use redact::redact_secrets;

/// The most plain text kept per message for scanning (256 KiB). Customer
/// requests are a few KiB; anything beyond is quoted history or abuse.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// The most HTML converted to text or scanned for links (1 MiB). The raw
/// HTML in [`ParsedEmail::html`] is kept whole for the console.
pub const MAX_HTML_SCAN_BYTES: usize = 1024 * 1024;

/// Why raw bytes could not be parsed as a message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The bytes hold no RFC 5322 header field (empty, or not mail: no
    /// line of the form `Name: value` before the body).
    #[error("not an email message: no header field found ({len} bytes)")]
    NotMail {
        /// Length of the input, for the record.
        len: usize,
    },
}

impl ParseError {
    /// Whether retrying could help: never, the bytes will not change.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// One address with its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The address, lowercased.
    pub address: String,
    /// The display name as written (decoded, untrusted).
    pub name: Option<String>,
}

impl Mailbox {
    /// The domain part of the address (after the last `@`), if any.
    pub fn domain(&self) -> Option<&str> {
        self.address.rsplit_once('@').map(|(_, d)| d)
    }

    /// The local part of the address (before the last `@`).
    pub fn local_part(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or(self.address.as_str(), |(l, _)| l)
    }
}

/// The `Return-Path` (RFC 5321 §4.4) as the final MTA wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReturnPath {
    /// No `Return-Path` header.
    #[default]
    Absent,
    /// The null reverse-path `<>`: bounces and most auto-replies.
    Null,
    /// A reverse-path address, lowercased.
    Address(String),
}

/// One attachment (or inline non-body part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name from `Content-Disposition` or `Content-Type`, if given.
    pub name: Option<String>,
    /// `type/subtype`, lowercased (`application/octet-stream` if absent).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
}

impl Attachment {
    /// Whether this is an image, by content type or by file extension
    /// (clients often send images as `application/octet-stream`).
    pub fn is_image(&self) -> bool {
        const EXTENSIONS: &[&str] = &[
            "png", "jpg", "jpeg", "gif", "webp", "heic", "heif", "avif", "bmp", "tif", "tiff",
        ];
        let by_type = self.content_type.starts_with("image/");
        let by_name = self.name.as_deref().is_some_and(|n| {
            n.rsplit_once('.')
                .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
        });
        by_type || by_name
    }
}

/// One message, decoded and owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedEmail {
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// `In-Reply-To` ids, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// `References` ids, oldest first, without angle brackets.
    pub references: Vec<String>,
    /// The first `From:` mailbox that has an address.
    pub from: Option<Mailbox>,
    /// The topmost `Return-Path`.
    pub return_path: ReturnPath,
    /// Decoded subject (empty if none).
    pub subject: String,
    /// The sender-controlled `Date:` header; never used for policy windows.
    pub date: Option<DateTime<Utc>>,
    /// The best plain text: the text/plain body parts joined, or text
    /// derived from HTML (quotes as `> ` lines) when there is no usable
    /// plain part; at most [`MAX_TEXT_BYTES`].
    pub text: String,
    /// Whether `text` was cut at [`MAX_TEXT_BYTES`].
    pub text_truncated: bool,
    /// The first HTML body part, raw (unsanitized: never render as is).
    pub html: Option<String>,
    /// Links (`<a href>`) of that HTML part, entities decoded, in order.
    pub links: Vec<Link>,
    /// Attachments and inline non-body parts, in MIME order.
    pub attachments: Vec<Attachment>,
    /// The top-level content type is `multipart/report` (RFC 6522).
    pub is_multipart_report: bool,
    /// Some part is `message/delivery-status` (RFC 3464) or
    /// `message/global-delivery-status` (RFC 6533).
    pub has_delivery_status: bool,
    /// The `report-type` parameter of a top-level `multipart/report`,
    /// lowercased (`delivery-status`, `feedback-report`, `tlsrpt`, …).
    pub report_type: Option<String>,
    /// Some part is `message/feedback-report` (ARF, RFC 5965).
    pub has_feedback_report: bool,
    /// How many mailboxes the `From:` headers name together. One is the
    /// norm; RFC 5322 allows one `From:` field, and a message with more
    /// (or with several addresses in it) never authenticates its sender.
    pub from_count: usize,
    /// Top-level headers, top to bottom.
    pub headers: Vec<HeaderField>,
}

impl ParsedEmail {
    /// All values of header `name` (any case), top to bottom.
    pub fn header_values<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The topmost value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }
}

/// Parses one raw message.
pub fn parse(raw: &[u8]) -> Result<ParsedEmail, ParseError> {
    let not_mail = ParseError::NotMail { len: raw.len() };
    let normalised = cr_only_to_crlf(raw);
    // A large message is read without its bulky bodies (see `slim`).
    let (raw, cuts) = slim::for_reading(&normalised);
    let raw: &[u8] = &raw;
    let message = MessageParser::default().parse(raw).ok_or(not_mail)?;
    let headers = headers::top_level(&message, raw);
    if !headers.iter().any(|h| headers::is_field_name(&h.name)) {
        return Err(ParseError::NotMail { len: raw.len() });
    }
    let (text, text_truncated) = best_text(&message);
    let html = first_html(&message);
    let links = html
        .as_deref()
        .map(|h| html_to_text(cap(h, MAX_HTML_SCAN_BYTES)).links)
        .unwrap_or_default();
    Ok(ParsedEmail {
        message_id: message.message_id().map(|id| strip_brackets(id).to_owned()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        from: message.from().and_then(first_mailbox),
        return_path: headers::return_path(&headers),
        subject: message.subject().unwrap_or_default().trim().to_owned(),
        date: message.date().and_then(to_utc),
        text,
        text_truncated,
        html,
        links,
        attachments: attachments(&message, &cuts),
        is_multipart_report: message.root_part().is_content_type("multipart", "report"),
        has_delivery_status: message.parts.iter().any(|p| {
            p.is_content_type("message", "delivery-status")
                || p.is_content_type("message", "global-delivery-status")
        }),
        report_type: message
            .root_part()
            .content_type()
            .filter(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            })
            .and_then(|ct| ct.attribute("report-type"))
            .map(|t| t.trim().to_ascii_lowercase()),
        has_feedback_report: message
            .parts
            .iter()
            .any(|p| p.is_content_type("message", "feedback-report")),
        from_count: from_count(&message),
        headers,
    })
}

/// `raw` with bare CR line endings turned into CRLF when the message has
/// no LF at all; anything else is returned as it is.
fn cr_only_to_crlf(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if raw.contains(&b'\n') || !raw.contains(&b'\r') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &b in raw {
        out.push(b);
        if b == b'\r' {
            out.push(b'\n');
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Mailboxes named by every `From:` header together (groups included).
fn from_count(message: &Message<'_>) -> usize {
    message
        .header_values(mail_parser::HeaderName::From)
        .map(|value| match value {
            HeaderValue::Address(Address::List(list)) => list.len(),
            HeaderValue::Address(Address::Group(groups)) => {
                groups.iter().map(|g| g.addresses.len()).sum()
            }
            // A From that is not an address still counts as a From.
            _ => 1,
        })
        .sum()
}

/// `s` cut to at most `max` bytes at a char boundary.
fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn strip_brackets(id: &str) -> &str {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<&str> = match value {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .map(strip_brackets)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

fn first_mailbox(address: &Address<'_>) -> Option<Mailbox> {
    let addr = match address {
        Address::List(list) => list.iter().find(|a| a.address.is_some()),
        Address::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .find(|a| a.address.is_some()),
    }?;
    let email = addr.address.as_deref()?.trim().to_lowercase();
    if email.is_empty() {
        return None;
    }
    Some(Mailbox {
        address: email,
        name: addr
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    })
}

/// When the message's own header says our server received it, for mail
/// whose mailbox recorded no receipt time (an mbox `From ` line without a
/// date): the date of the topmost `Received:` field (every relay prepends
/// one, RFC 5321 §4.4, so the topmost is the last hop, ours), else `Date:`
/// (when the sender wrote it). Reads the header only; `None` when neither
/// holds a valid date.
pub fn header_receipt_time(raw: &[u8]) -> Option<DateTime<Utc>> {
    let message = MessageParser::new().parse_headers(raw)?;
    message
        .received_all()
        .next()
        .and_then(|received| received.date.as_ref())
        .and_then(to_utc)
        .or_else(|| message.date().and_then(to_utc))
}

fn to_utc(date: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    if !date.is_valid() {
        return None;
    }
    Utc.timestamp_opt(date.to_timestamp(), 0).single()
}

/// The text/plain body parts joined; HTML-derived text when there is no
/// non-blank plain part (HTML-only mail, or an empty plain alternative).
fn best_text(message: &Message<'_>) -> (String, bool) {
    let plain = join_parts(message, |part| match &part.body {
        PartType::Text(t) => Some(t.to_string()),
        _ => None,
    });
    let text = if plain.trim().is_empty() {
        join_parts(message, html_part_text)
    } else {
        plain
    };
    let truncated = text.len() > MAX_TEXT_BYTES;
    (cap(&text, MAX_TEXT_BYTES).to_owned(), truncated)
}

fn html_part_text(part: &MessagePart<'_>) -> Option<String> {
    match &part.body {
        PartType::Html(h) => Some(html_to_text(cap(h, MAX_HTML_SCAN_BYTES)).text),
        _ => None,
    }
}

/// Joins what `render` gives for each body part (text_body first, then
/// html_body for HTML-only alternatives), stopping past the text cap.
fn join_parts(
    message: &Message<'_>,
    render: impl Fn(&MessagePart<'_>) -> Option<String>,
) -> String {
    let mut out = String::new();
    let ids = message.text_body.iter().chain(message.html_body.iter());
    let mut seen = Vec::new();
    for id in ids {
        if seen.contains(id) || out.len() > MAX_TEXT_BYTES {
            continue;
        }
        seen.push(*id);
        let Some(piece) = message.parts.get(*id as usize).and_then(&render) else {
            continue;
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&piece);
    }
    out
}

fn first_html(message: &Message<'_>) -> Option<String> {
    message
        .html_body
        .iter()
        .filter_map(|id| message.parts.get(*id as usize))
        .find_map(|part| match &part.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        })
}

/// The attachments of `message`; a part whose body was cut (`cuts`) has
/// the size its body had.
fn attachments(message: &Message<'_>, cuts: &[slim::Cut]) -> Vec<Attachment> {
    message
        .attachments
        .iter()
        .filter_map(|id| message.parts.get(*id as usize))
        .map(|part| Attachment {
            name: part.attachment_name().map(str::to_owned),
            content_type: content_type(part),
            size: cuts
                .iter()
                .find(|cut| cut.at == part.offset_body as usize)
                .map_or_else(|| part.len(), |cut| cut.decoded_size),
        })
        .collect()
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "application/octet-stream".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> ParsedEmail {
        parse(raw.as_bytes()).expect("parses")
    }

    #[test]
    fn a_large_message_reads_as_it_would_whole_without_decoding_its_attachments() {
        let line = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA\r\n";
        let image = line.repeat(40_000);
        let raw = format!(
            "From: Ann <ann@example.com>\r\nSubject: refund, screenshot attached\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nPlease refund order 42.\r\n\
             --b\r\nContent-Type: image/png; name=\"shot.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{image}\
             --b\r\nContent-Type: application/zip; name=\"logs.zip\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{image}--b--\r\n"
        );
        assert!(raw.len() > slim::SLIM_ABOVE_BYTES);
        let read = parsed(&raw);
        // What the parser gives reading every byte, nothing cut.
        let whole = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let want = attachments(&whole, &[]);
        assert_eq!(want.len(), 2);
        assert_eq!(read.attachments, want, "names, types and decoded sizes");
        assert_eq!(read.text.trim(), "Please refund order 42.");
        assert_eq!(read.subject, "refund, screenshot attached");
    }

    #[test]
    fn input_without_any_header_field_is_not_mail() {
        for raw in [&b""[..], b"\r\n\r\n", b"hello world", b"\x00\x01\x02 \xff"] {
            let err = parse(raw).unwrap_err();
            assert!(matches!(err, ParseError::NotMail { .. }), "{raw:?}");
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn the_receipt_time_in_the_header_is_the_topmost_received_date_else_date() {
        let utc = |h, m| Utc.with_ymd_and_hms(2026, 6, 4, h, m, 0).unwrap();
        let cases: [(&str, &str, Option<DateTime<Utc>>); 5] = [
            (
                "the topmost Received wins over later ones and over Date",
                "Received: from mx.example by mail.anumi.example; Thu, 4 Jun 2026 11:12:00 +0200\r\n\
                 Received: from client by mx.example; Thu, 4 Jun 2026 09:00:00 +0000\r\n\
                 Date: Thu, 4 Jun 2026 08:00:00 +0000\r\nSubject: x\r\n\r\nbody",
                Some(utc(9, 12)),
            ),
            (
                "a folded Received field still has its date after the semicolon",
                "Received: from mx.example\r\n\tby mail.anumi.example with ESMTPS;\r\n\tThu, 4 Jun 2026 10:30:00 +0000\r\n\r\nbody",
                Some(utc(10, 30)),
            ),
            (
                "without Received the Date field is used",
                "Date: Thu, 4 Jun 2026 07:45:00 -0100\r\nSubject: x\r\n\r\nbody",
                Some(utc(8, 45)),
            ),
            (
                "a Received field without a date falls back to Date",
                "Received: from mx.example by mail.anumi.example\r\nDate: Thu, 4 Jun 2026 07:00:00 +0000\r\n\r\nbody",
                Some(utc(7, 0)),
            ),
            ("no date anywhere", "Subject: x\r\n\r\nbody", None),
        ];
        for (name, raw, expected) in cases {
            assert_eq!(header_receipt_time(raw.as_bytes()), expected, "{name}");
        }
    }

    #[test]
    fn threading_ids_lose_their_angle_brackets() {
        let p = parsed(
            "Message-ID: <abc@mail.example>\r\nIn-Reply-To: <r1@refundd.test>\r\n\
             References: <r0@refundd.test>\r\n <r1@refundd.test>\r\nFrom: Ann <Ann@Example.COM>\r\n\
             Date: Mon, 1 Jun 2026 10:00:00 +0200\r\n\r\nhi\r\n",
        );
        assert_eq!(p.message_id.as_deref(), Some("abc@mail.example"));
        assert_eq!(p.in_reply_to, vec!["r1@refundd.test"]);
        assert_eq!(p.references, vec!["r0@refundd.test", "r1@refundd.test"]);
        let from = p.from.unwrap();
        assert_eq!(from.address, "ann@example.com");
        assert_eq!(from.name.as_deref(), Some("Ann"));
        assert_eq!(from.domain(), Some("example.com"));
        assert_eq!(p.date.unwrap().to_rfc3339(), "2026-06-01T08:00:00+00:00");
    }

    #[test]
    fn charsets_and_encodings_decode_to_the_same_text() {
        let cases = [
            (
                "quoted-printable latin-1",
                "From: a@example.de\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                 Ich m=F6chte eine R=FCckerstattung, Gr=FC=DFe\r\n",
                "Ich möchte eine Rückerstattung, Grüße",
            ),
            (
                "base64 utf-8",
                "From: a@example.fr\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n\
                 SmUgdm91ZHJhaXMgw6p0cmUgcmVtYm91cnPDqWUu\r\n",
                "Je voudrais être remboursée.",
            ),
            (
                "windows-1252 8bit",
                "From: a@example.com\r\nContent-Type: text/plain; charset=windows-1252\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                 I don=92t like it =80 9\r\n",
                "I don\u{2019}t like it € 9",
            ),
        ];
        for (name, raw, expected) in cases {
            assert_eq!(parsed(raw).text.trim(), expected, "{name}");
        }
    }

    #[test]
    fn encoded_word_headers_are_decoded() {
        let p = parsed(
            "From: =?windows-1252?Q?J=FCrgen_M=FCller?= <J.Mueller@Example.DE>\r\n\
             Subject: =?iso-8859-1?Q?R=FCckerstattung_f=FCr?= =?utf-8?B?QmVzdGVsbHVuZw==?=\r\n\r\nx\r\n",
        );
        assert_eq!(p.subject, "Rückerstattung fürBestellung");
        assert_eq!(p.from.unwrap().name.as_deref(), Some("Jürgen Müller"));
    }

    #[test]
    fn html_only_mail_gets_text_from_its_html() {
        let p = parsed(
            "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><head><style>p{}</style></head><body><p>Refund&nbsp;please</p>\
             <p><a href=\"https://polar.sh/x?id=1&amp;y=2\">order</a></p></body></html>\r\n",
        );
        assert_eq!(p.text, "Refund please\norder");
        assert!(p.html.as_deref().unwrap().contains("<style>"));
        assert_eq!(p.links[0].href, "https://polar.sh/x?id=1&y=2");
    }

    #[test]
    fn alternative_mail_prefers_the_plain_part_and_keeps_html_links() {
        let p = parsed(
            "From: a@example.com\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <a href='https://l.test/'>words</a></p>\r\n--b--\r\n",
        );
        assert_eq!(p.text.trim(), "plain words");
        assert_eq!(p.links.len(), 1);
        assert!(p.html.unwrap().starts_with("<p>html"));
    }

    #[test]
    fn attachments_carry_name_type_and_decoded_size() {
        let p = parsed(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
             --b\r\nContent-Type: image/PNG; name=\"avatar.png\"\r\nContent-Disposition: attachment; filename=\"avatar.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n\
             --b\r\nContent-Type: application/octet-stream; name=\"IMG_0042.HEIC\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n\
             --b\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n\r\n%PDF\r\n--b--\r\n",
        );
        let summary: Vec<_> = p
            .attachments
            .iter()
            .map(|a| {
                (
                    a.name.as_deref(),
                    a.content_type.as_str(),
                    a.size,
                    a.is_image(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("avatar.png"), "image/png", 11, true),
                (Some("IMG_0042.HEIC"), "application/octet-stream", 2, true),
                (Some("invoice.pdf"), "application/pdf", 4, false),
            ]
        );
    }

    #[test]
    fn delivery_reports_are_recognised() {
        let p = parsed(
            "From: MAILER-DAEMON@mx.example\r\nReturn-Path: <>\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
             Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\n--b--\r\n",
        );
        assert!(p.is_multipart_report);
        assert!(p.has_delivery_status);
        assert_eq!(p.return_path, ReturnPath::Null);
        assert_eq!(p.from.unwrap().local_part(), "mailer-daemon");
    }

    #[test]
    fn headers_are_kept_in_order_unfolded_and_readable_by_name() {
        let p = parsed(
            "Authentication-Results: mx.ours.test;\r\n\tdmarc=pass header.from=example.com\r\n\
             From: a@example.com\r\nAUTHENTICATION-RESULTS: evil.test; dmarc=pass\r\n\r\nx\r\n",
        );
        let values: Vec<_> = p.header_values("authentication-results").collect();
        assert_eq!(
            values,
            vec![
                "mx.ours.test;\tdmarc=pass header.from=example.com",
                "evil.test; dmarc=pass"
            ]
        );
        assert_eq!(p.header("From"), Some("a@example.com"));
        assert_eq!(p.headers[0].name, "authentication-results");
    }

    #[test]
    fn huge_bodies_are_cut_at_the_text_cap() {
        let body = "refund ".repeat(MAX_TEXT_BYTES / 7 + 1000);
        let p = parsed(&format!("From: a@example.com\r\n\r\n{body}"));
        assert!(p.text_truncated);
        assert!(p.text.len() <= MAX_TEXT_BYTES);
    }
}
