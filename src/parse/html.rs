//! HTML -> plain text for HTML-only mail, and the links of an HTML part.
//!
//! A small tag scanner, not a DOM: it drops `<head>`, `<style>`,
//! `<script>`, `<title>`, `<template>`, Outlook's `<xml>` islands, comments
//! (including `<!--[if mso]>` conditional blocks) and downlevel-revealed
//! `<![if …]>` markers; turns block elements and `<br>` into line breaks;
//! prefixes lines inside `<blockquote>` with `> ` so quoted history is
//! recognised like plain-text quotes; decodes entities (mail-parser's full
//! HTML5 table); collapses whitespace outside `<pre>`. Output is never
//! rendered, only scanned, so it need not be faithful, only readable.

use mail_parser::decoders::html::add_html_token;

/// The text and links of an HTML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlText {
    /// Plain text, lines inside blockquotes prefixed with `> `.
    pub text: String,
    /// `<a href>` targets in document order.
    pub links: Vec<Link>,
}

/// One `<a href>` of an HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The href with entities decoded (`&amp;` -> `&`), trimmed.
    pub href: String,
    /// Whether the link sits inside a `<blockquote>` (quoted history).
    pub quoted: bool,
}

/// Elements whose content is never text.
const SKIPPED: &[&str] = &[
    "head", "style", "script", "title", "template", "xml", "noscript", "svg",
];

/// Elements that start and end a line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "tr",
    "table",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "pre",
    "center",
    "section",
    "article",
    "header",
    "footer",
    "dl",
    "dt",
    "dd",
    "form",
    "address",
    "blockquote",
    "body",
];

/// Converts `html` to text and collects its links.
pub fn html_to_text(html: &str) -> HtmlText {
    let mut w = Writer::default();
    let mut links = Vec::new();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i = find_from(html, i + 4, "-->").map_or(bytes.len(), |end| end + 3);
        } else if rest.starts_with("<!") || rest.starts_with("<?") {
            i = find_from(html, i + 2, ">").map_or(bytes.len(), |end| end + 1);
        } else if rest.starts_with('<') && starts_tag(bytes, i + 1) {
            let tag = read_tag(html, i);
            i = tag.end;
            if !tag.closing && SKIPPED.contains(&tag.name.as_str()) && !tag.self_closing {
                i = skip_element(html, i, &tag.name);
                continue;
            }
            w.tag(&tag, &mut links);
        } else if rest.starts_with('&') {
            i = w.entity(html, i);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            w.char(c);
            i += c.len_utf8();
        }
    }
    HtmlText {
        text: w.out.trim().to_owned(),
        links,
    }
}

fn starts_tag(bytes: &[u8], at: usize) -> bool {
    bytes
        .get(at)
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'/')
}

fn find_from(html: &str, from: usize, needle: &str) -> Option<usize> {
    html.get(from..)?.find(needle).map(|p| p + from)
}

struct Tag<'a> {
    name: String,
    closing: bool,
    self_closing: bool,
    attrs: &'a str,
    /// Byte index just past the closing `>`.
    end: usize,
}

/// Reads the tag starting at `start` (a `<`), honouring quoted attribute
/// values; an unterminated tag runs to the end of the input.
fn read_tag(html: &str, start: usize) -> Tag<'_> {
    let bytes = html.as_bytes();
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b':') {
        i += 1;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let attrs_start = i;
    let mut quote = None;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (None, b'"' | b'\'') => quote = Some(bytes[i]),
            (Some(q), b) if b == q => quote = None,
            (None, b'>') => break,
            _ => {}
        }
        i += 1;
    }
    let attrs = &html[attrs_start..i.min(bytes.len())];
    Tag {
        name,
        closing,
        self_closing: attrs.trim_end().ends_with('/'),
        attrs,
        end: (i + 1).min(bytes.len()),
    }
}

/// Index just past `</name …>` at or after `from` (case-insensitive), or
/// the end of input when the element is never closed.
fn skip_element(html: &str, from: usize, name: &str) -> usize {
    let bytes = html.as_bytes();
    let mut i = from;
    while let Some(pos) = find_from(html, i, "</") {
        let after = pos + 2;
        let candidate = bytes.get(after..after + name.len());
        let boundary = bytes
            .get(after + name.len())
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name.as_bytes())) && boundary {
            return find_from(html, after, ">").map_or(bytes.len(), |end| end + 1);
        }
        i = after;
    }
    bytes.len()
}

/// The value of attribute `name` in a tag's attribute text.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let bytes = attrs.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
            && !bytes[i].is_ascii_whitespace()
        {
            i += 1;
        }
        let attr_name = &attrs[name_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            if i == name_start {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (value, next) = attribute_value(attrs, i);
        if attr_name.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        i = next;
    }
    None
}

fn attribute_value(attrs: &str, start: usize) -> (&str, usize) {
    let bytes = attrs.as_bytes();
    match bytes.get(start) {
        Some(&q @ (b'"' | b'\'')) => {
            let end = attrs[start + 1..]
                .find(q as char)
                .map_or(bytes.len(), |p| p + start + 1);
            (&attrs[start + 1..end], (end + 1).min(bytes.len()))
        }
        _ => {
            let end = attrs[start..]
                .find(|c: char| c.is_ascii_whitespace() || c == '>')
                .map_or(bytes.len(), |p| p + start);
            (&attrs[start..end], end)
        }
    }
}

/// The entity starting at `at` (`&name;`, `&#NN;`, `&#xHH;`), if well formed.
fn entity_at(html: &str, at: usize) -> Option<&str> {
    let rest = html.get(at + 1..)?;
    let len = rest
        .bytes()
        .take(33)
        .position(|b| b == b';')
        .filter(|&n| n > 0)?;
    let body = &rest[..len];
    body.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'#')
        .then(|| &html[at..at + len + 2])
}

/// `s` with HTML entities decoded.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] == b'&'
            && let Some(entity) = entity_at(s, i)
        {
            add_html_token(&mut out, entity.as_bytes(), false);
            i += entity.len();
            continue;
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[derive(Default)]
struct Writer {
    out: String,
    quote_depth: usize,
    pre_depth: usize,
    at_line_start: bool,
    pending_space: bool,
}

impl Writer {
    fn tag(&mut self, tag: &Tag<'_>, links: &mut Vec<Link>) {
        match tag.name.as_str() {
            "br" => self.line_break(),
            "blockquote" => {
                self.block();
                self.quote_depth = if tag.closing {
                    self.quote_depth.saturating_sub(1)
                } else {
                    self.quote_depth + 1
                };
            }
            "pre" => {
                self.block();
                self.pre_depth = if tag.closing {
                    self.pre_depth.saturating_sub(1)
                } else {
                    self.pre_depth + 1
                };
            }
            "td" | "th" => self.pending_space = !self.at_line_start,
            "a" if !tag.closing => self.link(tag, links),
            name if BLOCKS.contains(&name) => self.block(),
            _ => {}
        }
    }

    fn link(&self, tag: &Tag<'_>, links: &mut Vec<Link>) {
        let Some(href) = attribute(tag.attrs, "href") else {
            return;
        };
        let href = decode_entities(href).trim().to_owned();
        if !href.is_empty() && !href.starts_with('#') {
            links.push(Link {
                href,
                quoted: self.quote_depth > 0,
            });
        }
    }

    /// Writes the entity at `at` (or a literal `&`); returns the next index.
    fn entity(&mut self, html: &str, at: usize) -> usize {
        match entity_at(html, at) {
            Some(entity) => {
                let mut decoded = String::new();
                add_html_token(&mut decoded, entity.as_bytes(), false);
                for c in decoded.chars() {
                    self.char(c);
                }
                at + entity.len()
            }
            None => {
                self.char('&');
                at + 1
            }
        }
    }

    fn char(&mut self, c: char) {
        match c {
            '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{ad}' => {}
            '\n' if self.pre_depth > 0 => self.line_break(),
            '\r' if self.pre_depth > 0 => {}
            c if c.is_whitespace() && self.pre_depth == 0 => {
                self.pending_space = !self.at_line_start;
            }
            c => self.visible(if c == '\u{a0}' { ' ' } else { c }),
        }
    }

    fn visible(&mut self, c: char) {
        if self.at_line_start || self.out.is_empty() {
            for _ in 0..self.quote_depth {
                self.out.push('>');
            }
            if self.quote_depth > 0 {
                self.out.push(' ');
            }
            self.at_line_start = false;
        } else if self.pending_space {
            self.out.push(' ');
        }
        self.pending_space = false;
        self.out.push(c);
    }

    fn line_break(&mut self) {
        if !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
        self.at_line_start = true;
        self.pending_space = false;
    }

    fn block(&mut self) {
        if !self.at_line_start && !self.out.is_empty() {
            self.line_break();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let cases = [
            ("<p>Hello&nbsp;there</p><p>Bye</p>", "Hello there\nBye"),
            ("a<br>b<br/>c", "a\nb\nc"),
            (
                "<html><head><title>T</title><style>p{color:red}</style></head><body>Hi</body></html>",
                "Hi",
            ),
            ("<script>alert(1)</script>ok", "ok"),
            ("caf&eacute; &amp; cr&#232;me &#x263A;", "café & crème ☺"),
            (
                "Tom &amp Jerry &unknown; a&b",
                "Tom &amp Jerry &unknown; a&b",
            ),
            (
                "<!--[if gte mso 9]><xml><o:OfficeDocumentSettings/></xml><![endif]--><p class=MsoNormal>Hallo<o:p></o:p></p>",
                "Hallo",
            ),
            ("<p><![if !supportLists]>1.<![endif]> item</p>", "1. item"),
            ("<div>x   y\n\n z</div>", "x y z"),
            ("<pre>a  b\nc</pre>", "a  b\nc"),
            ("<STYLE type=text/css>.x{}</STYLE>Text", "Text"),
            ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
            ("unterminated <b", "unterminated"),
            ("zero\u{200b}width", "zerowidth"),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html).text, expected, "{html}");
        }
    }

    #[test]
    fn blockquote_lines_are_marked_as_quotes() {
        let html = "<div>New words</div><div class=\"gmail_quote\"><div>On Mon wrote:</div>\
                    <blockquote class=\"gmail_quote\"><div>old line 1</div><div>old line 2</div>\
                    <blockquote>older</blockquote></blockquote></div><div>after</div>";
        assert_eq!(
            html_to_text(html).text,
            "New words\nOn Mon wrote:\n> old line 1\n> old line 2\n>> older\nafter"
        );
    }

    #[test]
    fn links_are_collected_with_entities_decoded_and_quote_state() {
        let html = "<a href=\"https://x.test/p?a=1&amp;id=2\">x</a>\
                    <blockquote><a href='https://q.test/'>q</a></blockquote>\
                    <a href=https://bare.test/z>z</a><a href=\"#top\">t</a><a name=n>n</a>";
        let links = html_to_text(html).links;
        assert_eq!(
            links,
            vec![
                Link {
                    href: "https://x.test/p?a=1&id=2".into(),
                    quoted: false
                },
                Link {
                    href: "https://q.test/".into(),
                    quoted: true
                },
                Link {
                    href: "https://bare.test/z".into(),
                    quoted: false
                },
            ]
        );
    }

    #[test]
    fn attribute_values_with_gt_inside_quotes_do_not_end_the_tag() {
        let html = "<a title=\"a > b\" href=\"https://x.test/\">link</a> text";
        let out = html_to_text(html);
        assert_eq!(out.text, "link text");
        assert_eq!(out.links[0].href, "https://x.test/");
    }
}
