//! Composing: a [`RenderedReply`] and a [`ReplyEnvelope`] become the bytes
//! of one RFC 5322 message ([`OutgoingMessage`]), built with lettre.
//!
//! Takes the rendered reply and who/what it answers; gives the raw message
//! with our Message-ID. The message threads (`In-Reply-To`, `References`
//! per RFC 5322 §3.6.4), says it is automatic (`Auto-Submitted:
//! auto-replied`, RFC 3834 §5) and carries `X-Refundd-Case` so that our own
//! mail coming back is recognised as a loop. Never sends anything. Fails on
//! a malformed address, our own malformed Message-ID or an invalid case tag;
//! a malformed Message-ID of the *customer's* is dropped from the threading
//! headers instead (a broken client must not cost the customer the reply).

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Address;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};

use super::ReplyError;
use super::render::{RenderedReply, check_case_tag, clean_line};
use crate::config::ReplyConfig;

/// Most message ids kept in `References`: the first (the thread's root)
/// and the latest ones, as RFC 5322 §3.6.4 practice trims long threads.
const MAX_REFERENCES: usize = 10;
/// Longest message id accepted from a customer's headers, in bytes.
const MAX_MSG_ID_LEN: usize = 250;
/// Longest display name put into `To:`, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest subject put into `Subject:`, in characters.
const MAX_SUBJECT_CHARS: usize = 200;

/// Who a reply goes to and which message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyEnvelope {
    /// Our address (`[reply] from`).
    pub from_address: String,
    /// Our display name (`[reply] from_name`).
    pub from_name: String,
    /// The customer's address.
    pub to_address: String,
    /// The customer's display name, as they sent it (untrusted).
    pub to_name: Option<String>,
    /// Our Message-ID, from [`new_message_id`], stored before sending.
    pub message_id: String,
    /// The Message-ID of the customer's message (with or without `<>`).
    pub in_reply_to: Option<String>,
    /// The ids of the customer's `References` header, oldest first.
    pub references: Vec<String>,
    /// The case tag without brackets, e.g. `R-1042`.
    pub case_tag: String,
    /// The `Date:` of the reply.
    pub date: DateTime<Utc>,
}

impl ReplyEnvelope {
    /// An envelope from the `[reply]` settings, answering nothing yet: set
    /// `to_name`, `in_reply_to` and `references` from the customer's message.
    pub fn new(
        config: &ReplyConfig,
        message_id: String,
        case_tag: String,
        to_address: String,
        date: DateTime<Utc>,
    ) -> Self {
        ReplyEnvelope {
            from_address: config.from.clone(),
            from_name: config.from_name.clone(),
            to_address,
            to_name: None,
            message_id,
            in_reply_to: None,
            references: Vec::new(),
            case_tag,
            date,
        }
    }
}

/// A message ready for a [`MailSink`](super::MailSink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Our Message-ID, `<uuid@domain>`.
    pub message_id: String,
    /// The whole message, CRLF line ends, as it goes on the wire.
    pub raw: Vec<u8>,
}

/// A fresh Message-ID `<{uuid}@{domain}>` for a reply, so that the caller
/// can record it before the reply is sent (and recognise answers to it).
/// mail-parser reports message ids without the angle brackets.
pub fn new_message_id(domain: &str) -> String {
    format!("<{}@{}>", uuid::Uuid::new_v4(), domain)
}

/// The message: From, To, Subject, Date, Message-ID, threading headers,
/// `Auto-Submitted`, `X-Auto-Response-Suppress`, `X-Refundd-Case`, and a
/// `multipart/alternative` of the text and the HTML.
pub fn compose(
    reply: &RenderedReply,
    envelope: &ReplyEnvelope,
) -> Result<OutgoingMessage, ReplyError> {
    check_case_tag(&envelope.case_tag)?;
    let message_id = normalize_msg_id(&envelope.message_id)
        .ok_or_else(|| ReplyError::InvalidMessageId(clean_line(&envelope.message_id, 80)))?;
    let from = mailbox("from", &envelope.from_address, Some(&envelope.from_name))?;
    let to = mailbox("to", &envelope.to_address, envelope.to_name.as_deref())?;

    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(clean_line(&reply.subject, MAX_SUBJECT_CHARS))
        .date(SystemTime::from(envelope.date))
        .message_id(Some(message_id.clone()));
    let customer_id = envelope.in_reply_to.as_deref().and_then(normalize_msg_id);
    if let Some(parent) = &customer_id {
        builder = builder.in_reply_to(parent.clone());
    }
    let references = thread_references(&envelope.references, customer_id.as_deref());
    if !references.is_empty() {
        builder = builder.references(references.join(" "));
    }
    let message = builder
        // RFC 3834 §5: an automatic response to a message.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ))
        // Asks Exchange/Outlook not to answer our reply with an out-of-office.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Refundd-Case"),
            envelope.case_tag.clone(),
        ))
        .multipart(MultiPart::alternative_plain_html(
            reply.text.clone(),
            reply.html.clone(),
        ))?;
    Ok(OutgoingMessage {
        message_id,
        raw: message.formatted(),
    })
}

fn mailbox(which: &'static str, address: &str, name: Option<&str>) -> Result<Mailbox, ReplyError> {
    let parsed: Address = address
        .trim()
        .parse()
        .map_err(|source| ReplyError::InvalidAddress {
            which,
            address: clean_line(address, 80),
            source,
        })?;
    let name = name
        .map(|name| clean_line(name, MAX_DISPLAY_NAME_CHARS))
        .filter(|name| !name.is_empty());
    Ok(Mailbox::new(name, parsed))
}

/// `<id>` for a usable msg-id (with or without brackets): printable ASCII,
/// no spaces or brackets inside, at most 250 bytes; otherwise none.
fn normalize_msg_id(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let inner = trimmed
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(trimmed);
    let usable = !inner.is_empty()
        && inner.len() <= MAX_MSG_ID_LEN
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    usable.then(|| format!("<{inner}>"))
}

/// The customer's References plus their Message-ID (RFC 5322 §3.6.4),
/// without malformed ids or repeats, trimmed to the first id and the latest
/// ones when the thread is long.
fn thread_references(references: &[String], parent: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let candidates = references
        .iter()
        .filter_map(|id| normalize_msg_id(id))
        .chain(parent.map(str::to_string));
    for id in candidates {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_REFERENCES {
        let tail = ids.split_off(ids.len() - (MAX_REFERENCES - 1));
        ids.truncate(1);
        ids.extend(tail);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mail_parser::{MessageParser, MimeHeaders};

    fn reply() -> RenderedReply {
        RenderedReply {
            subject: "Re: Geld zurück [#R-1042]".into(),
            text: "Guten Tag Zoë,\n\nWir haben 9.00 EUR erstattet.\n".into(),
            html: "<!DOCTYPE html>\n<html lang=\"de\"><body><p>Guten Tag Zoë,</p>\
                   <p>Wir haben 9.00 EUR erstattet.</p></body></html>\n"
                .into(),
        }
    }

    fn envelope() -> ReplyEnvelope {
        let mut envelope = ReplyEnvelope::new(
            &ReplyConfig::default(),
            "<0b6b1a2e-7d43-4c8e-9f51-3c7b2a1d9e00@refundd.anumi.example>".into(),
            "R-1042".into(),
            "zoe@example.com".into(),
            Utc.with_ymd_and_hms(2026, 6, 2, 10, 15, 0).unwrap(),
        );
        envelope.to_name = Some("Zoë Müller".into());
        envelope.in_reply_to = Some("CAF00d@mail.example.com".into());
        envelope.references = vec!["<root@mail.example.com>".into()];
        envelope
    }

    #[test]
    fn the_message_threads_says_it_is_automatic_and_carries_both_alternatives() {
        let outgoing = compose(&reply(), &envelope()).unwrap();
        assert_eq!(
            outgoing.message_id,
            "<0b6b1a2e-7d43-4c8e-9f51-3c7b2a1d9e00@refundd.anumi.example>"
        );
        let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();

        assert_eq!(
            parsed.message_id(),
            Some("0b6b1a2e-7d43-4c8e-9f51-3c7b2a1d9e00@refundd.anumi.example")
        );
        assert_eq!(
            parsed.in_reply_to().as_text(),
            Some("CAF00d@mail.example.com")
        );
        let references: Vec<&str> = parsed
            .references()
            .as_text_list()
            .unwrap()
            .iter()
            .map(|id| id.as_ref())
            .collect();
        assert_eq!(
            references,
            ["root@mail.example.com", "CAF00d@mail.example.com"]
        );
        assert_eq!(parsed.subject(), Some("Re: Geld zurück [#R-1042]"));
        assert_eq!(
            parsed.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(
            parsed.header_raw("X-Refundd-Case").map(str::trim),
            Some("R-1042")
        );
        assert_eq!(
            parsed.header_raw("X-Auto-Response-Suppress").map(str::trim),
            Some("All")
        );

        let to = parsed.to().unwrap().first().unwrap();
        assert_eq!(to.name(), Some("Zoë Müller"));
        assert_eq!(to.address(), Some("zoe@example.com"));
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Anumi Refunds"));
        assert_eq!(from.address(), Some("refunds@anumi.example"));
        assert_eq!(parsed.date().unwrap().to_rfc3339(), "2026-06-02T10:15:00Z");

        assert!(
            parsed
                .content_type()
                .is_some_and(|ct| ct.c_type == "multipart" && ct.subtype() == Some("alternative"))
        );
        assert_eq!(parsed.text_body.len(), 1);
        assert_eq!(parsed.html_body.len(), 1);
        assert!(
            parsed
                .body_text(0)
                .unwrap()
                .contains("Wir haben 9.00 EUR erstattet.")
        );
        assert!(
            parsed
                .body_html(0)
                .unwrap()
                .contains("<p>Wir haben 9.00 EUR erstattet.</p>")
        );
        // The raw message stays 7-bit: UTF-8 travels encoded.
        assert!(outgoing.raw.is_ascii());
    }

    #[test]
    fn line_breaks_in_names_and_subjects_cannot_add_headers() {
        let mut reply = reply();
        reply.subject = "Re: Hi\r\nBcc: victim@example.net\r\n\r\nbody [#R-1042]".into();
        let mut envelope = envelope();
        envelope.to_name = Some("Eve\r\nBcc: victim@example.net".into());
        envelope.in_reply_to = Some("<x@y>\r\nBcc: victim@example.net".into());
        let outgoing = compose(&reply, &envelope).unwrap();
        let raw = String::from_utf8(outgoing.raw.clone()).unwrap();
        let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();

        assert!(parsed.header("Bcc").is_none(), "{raw}");
        assert!(!raw.lines().any(|line| line.starts_with("Bcc:")), "{raw}");
        assert_eq!(
            parsed.subject(),
            Some("Re: Hi Bcc: victim@example.net body [#R-1042]")
        );
        assert_eq!(
            parsed.to().unwrap().first().unwrap().name(),
            Some("Eve Bcc: victim@example.net")
        );
        // The malformed parent id is dropped, not half-used.
        assert!(parsed.header("In-Reply-To").is_none(), "{raw}");
    }

    #[test]
    fn a_long_thread_keeps_the_first_and_the_latest_references() {
        let mut envelope = envelope();
        envelope.references = (1..=30).map(|n| format!("<m{n}@example.com>")).collect();
        envelope.references.push("<m3@example.com>".into());
        envelope.references.push("not an id".into());
        envelope.in_reply_to = Some("<parent@example.com>".into());
        let outgoing = compose(&reply(), &envelope).unwrap();
        let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();
        let references: Vec<String> = parsed
            .references()
            .as_text_list()
            .unwrap()
            .iter()
            .map(|id| id.to_string())
            .collect();
        let mut expected = vec!["m1@example.com".to_string()];
        expected.extend((22..=29).map(|n| format!("m{n}@example.com")));
        expected.extend([
            "m30@example.com".to_string(),
            "parent@example.com".to_string(),
        ]);
        expected.remove(1);
        assert_eq!(references, expected);
    }

    #[test]
    fn a_first_message_without_ids_gets_no_threading_headers() {
        let mut envelope = envelope();
        envelope.in_reply_to = None;
        envelope.references.clear();
        let outgoing = compose(&reply(), &envelope).unwrap();
        let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();
        assert!(parsed.header("In-Reply-To").is_none());
        assert!(parsed.header("References").is_none());
        assert!(parsed.header("Message-ID").is_some());
    }

    #[test]
    fn bad_addresses_ids_and_case_tags_are_refused() {
        type Spoil = fn(&mut ReplyEnvelope);
        let cases: [(Spoil, &str); 4] = [
            (|e| e.to_address = "not-an-address".into(), "to"),
            (|e| e.from_address = "refunds at anumi".into(), "from"),
            (|e| e.message_id = "<has space@x>".into(), "message id"),
            (|e| e.case_tag = "R-1\nX: y".into(), "case tag"),
        ];
        for (spoil, what) in cases {
            let mut envelope = envelope();
            spoil(&mut envelope);
            let error = compose(&reply(), &envelope).unwrap_err();
            let expected = match what {
                "to" | "from" => {
                    matches!(&error, ReplyError::InvalidAddress { which, .. } if *which == what)
                }
                "message id" => matches!(error, ReplyError::InvalidMessageId(_)),
                _ => matches!(error, ReplyError::InvalidCaseTag(_)),
            };
            assert!(expected, "{what}: {error}");
        }
    }

    #[test]
    fn display_names_survive_encoding_exactly() {
        for name in [
            "Zoë Müller",
            "Müller, \"Zoë\"",
            "José (work)",
            "山田 太郎",
            "O'Brien",
        ] {
            let mut envelope = envelope();
            envelope.to_name = Some(name.into());
            let outgoing = compose(&reply(), &envelope).unwrap();
            let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();
            let to = parsed.to().unwrap().first().unwrap();
            assert_eq!(to.name(), Some(name), "{name}");
            assert_eq!(to.address(), Some("zoe@example.com"), "{name}");
        }
    }

    #[test]
    fn a_rendered_reply_goes_out_with_its_tagged_subject_and_facts() {
        use crate::domain::{Language, ReplyFacts, ReplyKind};
        use crate::reply::{ReplyContext, ReplyRenderer};
        let context = ReplyContext {
            kind: ReplyKind::CashRefundApproved,
            language: Language::Es,
            case_tag: "R-1042".into(),
            customer_name: Some("José".into()),
            original_subject: "RE: Reembolso {{ 7*7 }}".into(),
            facts: ReplyFacts {
                amount: Some(900),
                currency: Some("EUR".into()),
                order_reference: Some("ANUMI-QWERTYUI-0042".into()),
                ..ReplyFacts::default()
            },
            review_deadline: None,
            personal_note: None,
        };
        let rendered = ReplyRenderer::new(None).unwrap().render(&context).unwrap();
        let outgoing = compose(&rendered, &envelope()).unwrap();
        let parsed = MessageParser::default().parse(&outgoing.raw).unwrap();
        assert_eq!(parsed.subject(), Some("Re: Reembolso {{ 7*7 }} [#R-1042]"));
        for body in [parsed.body_text(0).unwrap(), parsed.body_html(0).unwrap()] {
            assert!(body.contains("9.00 EUR"), "{body}");
            assert!(body.contains("ANUMI-QWERTYUI-0042"), "{body}");
            assert!(body.contains("5–10 días hábiles"), "{body}");
            assert!(body.contains("José"), "{body}");
        }
    }

    #[test]
    fn new_message_ids_are_unique_and_in_our_domain() {
        let first = new_message_id("refundd.anumi.example");
        let second = new_message_id("refundd.anumi.example");
        assert_ne!(first, second);
        assert!(first.starts_with('<') && first.ends_with("@refundd.anumi.example>"));
        assert_eq!(normalize_msg_id(&first).as_deref(), Some(first.as_str()));
    }
}
