//! What the browser gets: the console's minijinja templates (embedded from
//! `templates/console/`, auto-escaped as HTML), the per-response CSP nonce,
//! and customer mail turned into something safe to show.
//!
//! Customer text only ever reaches a template as a *value*: subjects,
//! names, bodies and attachment names are escaped by the template engine.
//! The one exception is an HTML body, which is first sanitized with
//! ammonia (no scripts, no event handlers, no `style`, no images, links
//! made `noopener noreferrer`) and then passed as markup. Remote images
//! never load: `img` tags are removed, and the Content-Security-Policy
//! allows images only from the console itself. Fails with
//! [`WebError::Internal`] when a template is broken.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use minijinja::{Environment, Value};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::LazyLock;

use super::WebError;
use super::auth::new_secret;
use crate::store::StoredMessage;

/// The console's templates, embedded in the binary.
const TEMPLATES: [(&str, &str); 9] = [
    (
        "layout.html",
        include_str!("../../templates/console/layout.html"),
    ),
    (
        "login.html",
        include_str!("../../templates/console/login.html"),
    ),
    (
        "queue.html",
        include_str!("../../templates/console/queue.html"),
    ),
    (
        "case.html",
        include_str!("../../templates/console/case.html"),
    ),
    (
        "confirm.html",
        include_str!("../../templates/console/confirm.html"),
    ),
    (
        "bulk.html",
        include_str!("../../templates/console/bulk.html"),
    ),
    (
        "audit.html",
        include_str!("../../templates/console/audit.html"),
    ),
    (
        "replay.html",
        include_str!("../../templates/console/replay.html"),
    ),
    (
        "overview.html",
        include_str!("../../templates/console/overview.html"),
    ),
];

/// The keyboard script, inlined with the response's nonce.
const SCRIPT: &str = include_str!("../../templates/console/console.js");
/// The style sheet, inlined with the response's nonce.
const STYLE: &str = include_str!("../../templates/console/console.css");

/// The compiled templates.
pub struct Views {
    env: Environment<'static>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

/// A rendered page and the nonce its CSP allows.
#[derive(Debug)]
pub struct Page {
    html: String,
    nonce: String,
}

/// The Content-Security-Policy of a page: nothing but what the console
/// itself serves, scripts and styles only by this response's nonce,
/// images only from the console (attachments) or `data:`.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = axum::response::Html(self.html).into_response();
        if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&self.nonce)) {
            response
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }
}

impl Views {
    /// Compiles the embedded templates.
    pub fn new() -> Result<Views, WebError> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| WebError::Internal(format!("console template {name}: {e}")))?;
        }
        Ok(Views { env })
    }

    /// Renders `name` with `context`, plus the nonce, script, style and
    /// the signed-in reviewer (for the header) as `me`.
    pub fn page(&self, name: &str, context: Value, me: Option<&Me>) -> Result<Page, WebError> {
        let nonce = new_secret();
        let full = minijinja::context! {
            nonce => &nonce,
            // Our own constants, not customer text: inserted as code.
            script => Value::from_safe_string(SCRIPT.to_owned()),
            style => Value::from_safe_string(STYLE.to_owned()),
            me => to_value(me),
            ..context
        };
        let html = self
            .env
            .get_template(name)
            .and_then(|t| t.render(full))
            .map_err(|e| WebError::Internal(format!("console template {name}: {e:#}")))?;
        Ok(Page { html, nonce })
    }
}

/// Any serializable value as a template value (escaped when printed).
pub fn to_value<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// The signed-in reviewer as the page header shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Me {
    pub email: String,
    pub admin: bool,
    pub csrf: String,
}

/// One customer message as the case page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MailView {
    pub id: i64,
    pub received_at: String,
    pub from: String,
    pub from_name: Option<String>,
    pub subject: String,
    /// The plain text (escaped by the template).
    pub text: String,
    /// The HTML body after sanitizing, when the mail had one.
    pub html: Option<Value>,
    pub attachments: Vec<AttachmentView>,
    /// The bytes do not parse as mail; `text` holds them lossily.
    pub unreadable: bool,
    /// The raw mail was removed: `removed (retention)` or `erased`, and
    /// when. Nothing else of the message is shown.
    pub removed: Option<String>,
    pub removed_at: Option<String>,
}

/// One attachment as listed.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    /// The file name as sent (escaped by the template), or `(unnamed)`.
    pub name: String,
    pub content_type: String,
    pub size: String,
    /// The safe route serving it, for raster images only.
    pub image_href: Option<String>,
}

/// Raster image types served inline to `<img>`; anything else (SVG
/// included, which can carry script) is never served as an image.
pub const SAFE_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    let remove: HashSet<&str> = ["img"].into_iter().collect();
    builder
        .rm_tags(remove)
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect());
    builder
});

/// Sanitized HTML of a customer's HTML body: safe to insert as markup.
pub fn sanitize_html(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

/// The case page's view of one stored message: the mail as written, or,
/// when its raw bytes were removed (retention, erasure), saying so.
pub fn message_view(case_tag: &str, message: &StoredMessage) -> MailView {
    match message.removed {
        Some((why, at)) => MailView {
            id: message.id,
            received_at: message.received_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            from: String::new(),
            from_name: None,
            subject: String::new(),
            text: String::new(),
            html: None,
            attachments: Vec::new(),
            unreadable: false,
            removed: Some(why.shown_as().to_owned()),
            removed_at: Some(at.format("%Y-%m-%d").to_string()),
        },
        None => mail_view(case_tag, message.id, &message.raw, message.received_at),
    }
}

/// The case page's view of one stored message's bytes.
pub fn mail_view(case_tag: &str, id: i64, raw: &[u8], received_at: DateTime<Utc>) -> MailView {
    let received_at = received_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let Ok(parsed) = crate::parse::parse(raw) else {
        return MailView {
            id,
            received_at,
            from: String::new(),
            from_name: None,
            subject: String::new(),
            text: String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]).into_owned(),
            html: None,
            attachments: Vec::new(),
            unreadable: true,
            removed: None,
            removed_at: None,
        };
    };
    let attachments = parsed
        .attachments
        .iter()
        .enumerate()
        .map(|(n, a)| AttachmentView {
            name: a.name.clone().unwrap_or_else(|| "(unnamed)".into()),
            content_type: a.content_type.clone(),
            size: human_size(a.size),
            image_href: SAFE_IMAGE_TYPES
                .contains(&a.content_type.as_str())
                .then(|| format!("/cases/{case_tag}/messages/{id}/attachments/{n}")),
        })
        .collect();
    MailView {
        id,
        received_at,
        from: parsed
            .from
            .as_ref()
            .map(|f| f.address.clone())
            .unwrap_or_default(),
        from_name: parsed.from.and_then(|f| f.name),
        subject: parsed.subject,
        text: parsed.text,
        html: parsed
            .html
            .as_deref()
            .map(|h| Value::from_safe_string(sanitize_html(h))),
        attachments,
        unreadable: false,
        removed: None,
        removed_at: None,
    }
}

/// `12 KB`, `1.5 MB`.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{} KB", b / 1024),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Time left until a deadline, in words (`1 d 4 h`, `3 h 20 min`,
/// `overdue by 2 h`).
pub fn time_left(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (String, bool) {
    let Some(deadline) = deadline else {
        return ("no deadline".into(), false);
    };
    let left = deadline - now;
    let overdue = left < chrono::Duration::zero();
    let span = if overdue { -left } else { left };
    let (d, h, m) = (
        span.num_days(),
        span.num_hours() % 24,
        span.num_minutes() % 60,
    );
    let words = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    };
    if overdue {
        (format!("overdue by {words}"), true)
    } else {
        (words, false)
    }
}

/// Minor units as `7.20 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    crate::reply::format_money(minor, currency)
}

/// Minor units as the decimal a form field shows (`7.20`).
pub fn major(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, (minor % 100).abs())
}

/// A decimal amount typed in a form (`7`, `7.2`, `7.20`) in minor units.
pub fn parse_major(text: &str) -> Option<i64> {
    let text = text.trim().replace(',', ".");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_removes_scripts_handlers_images_and_javascript_links() {
        let hostile = r#"<p onclick="x()">Hi<script>window.__pwned=1</script>
            <img src="https://tracker.example/p.gif" onerror="document.title='PWNED'">
            <a href="javascript:alert(1)">click</a><a href="https://anumi.example/r/1">result</a>
            <svg onload="alert(1)"><circle/></svg><style>body{background:url(https://x.example)}</style>
            <iframe src="https://evil.example"></iframe></p>"#;
        let clean = sanitize_html(hostile);
        for banned in [
            "<script",
            "onerror",
            "onclick",
            "onload",
            "<img",
            "javascript:",
            "<style",
            "<iframe",
            "tracker.example",
            "<svg",
        ] {
            assert!(!clean.contains(banned), "{banned} survived: {clean}");
        }
        assert!(clean.contains(r#"href="https://anumi.example/r/1""#));
        assert!(clean.contains("noopener"));
    }

    #[test]
    fn typed_amounts_read_as_minor_units() {
        for (text, want) in [
            ("7", Some(700)),
            ("7.2", Some(720)),
            ("7,20", Some(720)),
            (".5", Some(50)),
            ("7.205", None),
            ("-1", None),
            ("", None),
            ("abc", None),
        ] {
            assert_eq!(parse_major(text), want, "{text:?}");
        }
        assert_eq!(major(720), "7.20");
    }

    #[test]
    fn time_left_says_when_a_case_is_overdue() {
        let now = DateTime::parse_from_rfc3339("2026-06-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for (hours, words, overdue) in [
            (28, "1 d 4 h", false),
            (3, "3 h 0 min", false),
            (-2, "overdue by 2 h 0 min", true),
        ] {
            assert_eq!(
                time_left(Some(now + chrono::Duration::hours(hours)), now),
                (words.to_owned(), overdue)
            );
        }
    }

    #[test]
    fn every_console_template_compiles() {
        Views::new().unwrap();
    }

    #[test]
    fn the_policy_allows_scripts_and_styles_only_by_nonce() {
        let csp = content_security_policy("abc");
        assert!(csp.contains("script-src 'nonce-abc'"));
        assert!(csp.contains("img-src 'self' data:"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
