//! Top-level header fields as written: lowercase names, unfolded raw values
//! (RFC 5322 §2.2.3), top to bottom, and the `Return-Path` read from them.
//! Values are not RFC 2047-decoded: the headers read this way
//! (`Authentication-Results`, `Auto-Submitted`, `Precedence`, …) are ASCII
//! by definition; decoded forms (subject, names) come from mail-parser.

use mail_parser::Message;

use super::ReturnPath;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Field name, lowercased.
    pub name: String,
    /// Unfolded value, trimmed; invalid UTF-8 replaced.
    pub value: String,
}

/// The top-level header fields of `message` (parsed from `raw`), in order.
pub(super) fn top_level(message: &Message<'_>, raw: &[u8]) -> Vec<HeaderField> {
    message
        .root_part()
        .headers
        .iter()
        .map(|h| {
            let bytes = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            HeaderField {
                name: h.name.as_str().to_ascii_lowercase(),
                value: unfold(&String::from_utf8_lossy(bytes)),
            }
        })
        .collect()
}

/// Whether `name` is a valid field name (RFC 5322 §3.6.8: printable
/// US-ASCII except `:`), i.e. the input really had a header line.
pub(super) fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Removes every CRLF (or bare LF/CR) of a folded value and trims it.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// The topmost `Return-Path`: `<>` is the null path; otherwise the address
/// inside the brackets (or the bare value), lowercased.
pub(super) fn return_path(headers: &[HeaderField]) -> ReturnPath {
    let Some(value) = headers
        .iter()
        .find(|h| h.name == "return-path")
        .map(|h| h.value.as_str())
    else {
        return ReturnPath::Absent;
    };
    let inner = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    let inner = inner.trim();
    if inner.is_empty() {
        ReturnPath::Null
    } else {
        ReturnPath::Address(inner.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> HeaderField {
        HeaderField {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn folded_values_are_joined_onto_one_line() {
        assert_eq!(unfold(" a;\r\n\tb=c;\r\n d=e\r\n"), "a;\tb=c; d=e");
    }

    #[test]
    fn return_path_distinguishes_null_absent_and_address() {
        let cases: &[(&[HeaderField], ReturnPath)] = &[
            (&[], ReturnPath::Absent),
            (&[field("return-path", "<>")], ReturnPath::Null),
            (&[field("return-path", "< >")], ReturnPath::Null),
            (
                &[field("return-path", "<Ann@Example.com>")],
                ReturnPath::Address("ann@example.com".into()),
            ),
            (
                &[field("return-path", "bob@example.com")],
                ReturnPath::Address("bob@example.com".into()),
            ),
            (
                &[
                    field("return-path", "<>"),
                    field("return-path", "<x@example.com>"),
                ],
                ReturnPath::Null,
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(&return_path(headers), expected, "{headers:?}");
        }
    }
}
