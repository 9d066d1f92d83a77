//! Rendering: a [`ReplyContext`] becomes a [`RenderedReply`] (subject,
//! plain text, HTML) through the minijinja templates of its kind and
//! language.
//!
//! Takes the context; gives the three strings. Customer text (name,
//! subject, reviewer's note) only ever enters a template as a *value*, so
//! `{{ 7*7 }}` in a subject stays `{{ 7*7 }}`; the HTML layout escapes it
//! (auto-escaping by the `.html` name) and lines meant for headers lose
//! their control characters. Every template is rendered against sample
//! facts when the renderer is built ([`check`](super::check)), so a broken
//! template stops the start, not a reply at 3 a.m. Dates are told in the
//! configured time zone (`[calendar] time_zone`), written the way the
//! reply's language writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};
use regex::Regex;

use super::ReplyError;
use super::format::{format_date, format_money, paragraphs_html};
use super::templates::TemplateSource;
use crate::domain::{Language, ReplyFacts, ReplyKind};

/// Longest customer name quoted in a greeting, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest original subject kept in `Re: …`, in characters.
const MAX_SUBJECT_CHARS: usize = 120;
/// Longest reviewer's note, in characters.
const MAX_NOTE_CHARS: usize = 4000;
/// Longest order reference quoted, in characters.
const MAX_REFERENCE_CHARS: usize = 100;

/// Every kind that is sent, i.e. has templates. `NoReply` is not.
pub(super) const SENT_KINDS: [ReplyKind; 16] = [
    ReplyKind::FailedGenerationCredited,
    ReplyKind::FailedGenerationAlreadyRefunded,
    ReplyKind::CashRefundApproved,
    ReplyKind::CashRefundAllUsed,
    ReplyKind::AlreadyRefunded,
    ReplyKind::WindowExpired,
    ReplyKind::CourtesyCredited,
    ReplyKind::NeedResult,
    ReplyKind::SubjectiveDenied,
    ReplyKind::ModerationBlock,
    ReplyKind::TerminatedDenied,
    ReplyKind::UnknownSender,
    ReplyKind::NeedOrderId,
    ReplyKind::UnknownOrder,
    ReplyKind::ReviewAcknowledged,
    ReplyKind::NeedsInfoClosed,
];

/// Every language we answer in.
pub(super) const LANGUAGES: [Language; 4] =
    [Language::En, Language::De, Language::Fr, Language::Es];

/// What one reply is about: everything the templates may quote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyContext {
    /// The template family the decision chose.
    pub kind: ReplyKind,
    /// The customer's language (English when unsure).
    pub language: Language,
    /// The case tag without brackets, e.g. `R-1042`.
    pub case_tag: String,
    /// The customer's display name, as they sent it (untrusted).
    pub customer_name: Option<String>,
    /// The subject of the customer's message (untrusted).
    pub original_subject: String,
    /// The facts the reply quotes.
    pub facts: ReplyFacts,
    /// By when a person answers (review replies).
    pub review_deadline: Option<DateTime<Utc>>,
    /// A reviewer's own paragraph(s), shown above the signature.
    pub personal_note: Option<String>,
}

/// A reply ready to be put into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReply {
    /// `Re: {original subject} [#R-1042]`, one line, no control characters.
    pub subject: String,
    /// The `text/plain` alternative.
    pub text: String,
    /// The `text/html` alternative (a complete document).
    pub html: String,
}

/// The loaded and validated reply templates. Build once at start (and
/// again on reload, see [`Templates`](super::Templates)).
pub struct ReplyRenderer {
    env: Environment<'static>,
    /// The zone dates are told to customers in.
    zone: Tz,
    /// Configured body templates (deny reasons'), beyond the kinds' own.
    bodies: BTreeSet<String>,
}

impl std::fmt::Debug for ReplyRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyRenderer")
            .field("zone", &self.zone)
            .field("bodies", &self.bodies)
            .finish_non_exhaustive()
    }
}

/// Which alternative of a reply a layout renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Text,
    Html,
}

impl Part {
    pub(super) const fn layout(self) -> &'static str {
        match self {
            Part::Text => "layout.txt",
            Part::Html => "layout.html",
        }
    }
}

impl ReplyRenderer {
    /// The shipped templates, replaced by the files of `override_dir`
    /// where it has them, telling dates in UTC; checked as
    /// [`ReplyRenderer::load`] checks.
    pub fn new(override_dir: Option<&Path>) -> Result<Self, ReplyError> {
        Self::load(&TemplateSource {
            dir: override_dir.map(Path::to_path_buf),
            ..TemplateSource::default()
        })
    }

    /// Loads the shipped templates, replaced file by file from
    /// `source.dir`, plus the configured body templates, and renders every
    /// kind in every language, text and HTML, against sample facts (all of
    /// them, only the guaranteed ones, and each optional one missing), so
    /// that a broken template fails here with every problem it has.
    pub fn load(source: &TemplateSource) -> Result<Self, ReplyError> {
        let (renderer, report) = super::check::build(source);
        if report.is_ok() {
            Ok(renderer)
        } else {
            Err(ReplyError::Broken(report))
        }
    }

    /// An environment with our syntax, undefined behaviour and filters.
    pub(super) fn environment() -> Environment<'static> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are a valid syntax");
        env.set_syntax(syntax);
        // Printing a fact the context does not carry is an error, so that
        // a template quoting an optional fact without `{% if %}` fails at
        // start instead of saying "none" to a customer.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.add_filter("paragraphs", |text: String| {
            Value::from_safe_string(paragraphs_html(&text, false))
        });
        env.add_filter("note_paragraphs", |text: String| {
            Value::from_safe_string(paragraphs_html(&text, true))
        });
        env
    }

    /// A renderer over compiled templates (built by the check).
    pub(super) fn from_parts(
        env: Environment<'static>,
        zone: Tz,
        bodies: BTreeSet<String>,
    ) -> Self {
        ReplyRenderer { env, zone, bodies }
    }

    /// Whether a template of this name was compiled.
    pub(super) fn has_template(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    /// Whether the text of template `name` contains `word`.
    pub(super) fn mentions(&self, name: &str, word: &str) -> bool {
        self.env
            .get_template(name)
            .is_ok_and(|t| t.source().contains(word))
    }

    /// Renders the reply: body of the kind, then the text and HTML layouts
    /// around it, and the subject.
    pub fn render(&self, context: &ReplyContext) -> Result<RenderedReply, ReplyError> {
        let (values, _) = self.render_body(context)?;
        let text = self.render_layout(&values, context.language, Part::Text)?;
        let html = self.render_layout(&values, context.language, Part::Html)?;
        Ok(RenderedReply {
            subject: reply_subject(
                &context.original_subject,
                &context.case_tag,
                context.language,
            ),
            text,
            html,
        })
    }

    /// The name of the body template a context renders: the kind's own, or
    /// the configured one of a `reason_denied` reply.
    pub(super) fn body_name(&self, context: &ReplyContext) -> Result<String, ReplyError> {
        let lang = context.language.code();
        match context.kind {
            ReplyKind::NoReply => Err(ReplyError::NoReply),
            ReplyKind::ReasonDenied => {
                let body = context
                    .facts
                    .template
                    .as_deref()
                    .ok_or(ReplyError::MissingFact {
                        kind: context.kind,
                        language: context.language,
                        fact: "template",
                    })?;
                if !self.bodies.contains(body) {
                    return Err(ReplyError::UnknownBody(clean_line(body, 80)));
                }
                Ok(format!("{lang}/{body}.txt"))
            }
            kind => Ok(format!("{lang}/{}.txt", kind.template_name())),
        }
    }

    /// The body, rendered into the values the layouts see (as `body`).
    pub(super) fn render_body(
        &self,
        context: &ReplyContext,
    ) -> Result<(BTreeMap<String, Value>, String), ReplyError> {
        let name = self.body_name(context)?;
        check_case_tag(&context.case_tag)?;
        check_required_facts(context)?;
        let mut values = template_values(context, self.zone);
        let body = tidy(&self.render_template(&name, &values)?);
        values.insert("body".into(), Value::from(body.clone()));
        Ok((values, name))
    }

    /// One alternative: the language's layout around the rendered body.
    pub(super) fn render_layout(
        &self,
        values: &BTreeMap<String, Value>,
        language: Language,
        part: Part,
    ) -> Result<String, ReplyError> {
        let name = format!("{}/{}", language.code(), part.layout());
        let rendered = self.render_template(&name, values)?;
        Ok(match part {
            Part::Text => tidy(&rendered),
            Part::Html => rendered,
        })
    }

    fn render_template(
        &self,
        name: &str,
        values: &BTreeMap<String, Value>,
    ) -> Result<String, ReplyError> {
        let template_error = |source| ReplyError::Template {
            name: name.to_string(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(template_error)?
            .render(Value::from(values.clone()))
            .map_err(template_error)
    }
}

/// The values a template sees. Only facts that are present are defined;
/// dates are the days they fall on in `zone`.
fn template_values(context: &ReplyContext, zone: Tz) -> BTreeMap<String, Value> {
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    let mut set = |key: &str, value: Value| {
        values.insert(key.to_string(), value);
    };
    let facts = &context.facts;
    set("lang", Value::from(context.language.code()));
    set("case_tag", Value::from(context.case_tag.clone()));
    set("tag", Value::from(format!("[#{}]", context.case_tag)));
    if let Some(name) = context.customer_name.as_deref().and_then(greeting_name) {
        set("name", Value::from(name));
    }
    if let Some(note) = context.personal_note.as_deref().map(clean_note)
        && !note.is_empty()
    {
        set("personal_note", Value::from(note));
    }
    if let (Some(amount), Some(currency)) = (facts.amount, facts.currency.as_deref()) {
        set("amount", Value::from(format_money(amount, currency)));
    }
    for (key, number) in [
        ("credits", facts.credits),
        ("credits_remaining", facts.credits_remaining),
        ("credits_total", facts.credits_total),
        ("window_days", facts.window_days),
        ("waited_days", facts.waited_days),
    ] {
        if let Some(number) = number {
            set(key, Value::from(number));
        }
    }
    if let (Some(remaining), Some(total)) = (facts.credits_remaining, facts.credits_total) {
        set("partial", Value::from(remaining > 0 && remaining < total));
        set("credits_used", Value::from(total - remaining));
    }
    if let Some(reference) = facts.order_reference.as_deref() {
        let reference = clean_line(reference, MAX_REFERENCE_CHARS);
        if !reference.is_empty() {
            set("order_reference", Value::from(reference));
        }
    }
    let language = context.language;
    let date = |at: DateTime<Utc>, weekday| format_date(at.with_timezone(&zone), language, weekday);
    if let Some(at) = facts.refunded_at {
        set("refunded_on", Value::from(date(at, false)));
    }
    if let Some(at) = facts.purchased_at {
        set("purchased_on", Value::from(date(at, false)));
    }
    if let Some(at) = context.review_deadline {
        set("review_deadline", Value::from(date(at, true)));
    }
    values
}

/// The facts without which a kind's reply would be wrong, not just vaguer.
/// Only facts every decision of that kind carries: what the ledger import
/// contract guarantees (an order's amount and currency, a generation's
/// credits) or what refundd computes (the review deadline). An optional
/// ledger fact (a refund time, tax, invoice or receipt number) is never
/// required: without it the reply says less, never nothing.
pub(super) fn required_facts(kind: ReplyKind) -> &'static [&'static str] {
    match kind {
        ReplyKind::CashRefundApproved => &["amount", "currency"],
        ReplyKind::FailedGenerationCredited | ReplyKind::CourtesyCredited => &["credits"],
        ReplyKind::ReviewAcknowledged => &["review_deadline"],
        // refundd counts the days itself.
        ReplyKind::NeedsInfoClosed => &["waited_days"],
        // POLICY.md's "the reply says when" holds when the ledger knows
        // when; a generation's `refunded_at` is optional in the contract.
        ReplyKind::AlreadyRefunded
        | ReplyKind::FailedGenerationAlreadyRefunded
        | ReplyKind::CashRefundAllUsed
        | ReplyKind::WindowExpired
        | ReplyKind::NeedResult
        | ReplyKind::SubjectiveDenied
        | ReplyKind::ModerationBlock
        | ReplyKind::TerminatedDenied
        | ReplyKind::UnknownSender
        | ReplyKind::NeedOrderId
        | ReplyKind::UnknownOrder
        // An operator's own denial promises nothing beyond the case tag.
        | ReplyKind::ReasonDenied
        | ReplyKind::NoReply => &[],
    }
}

fn check_required_facts(context: &ReplyContext) -> Result<(), ReplyError> {
    let facts = &context.facts;
    for &fact in required_facts(context.kind) {
        let present = match fact {
            "amount" => facts.amount.is_some(),
            "currency" => facts
                .currency
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty()),
            "credits" => facts.credits.is_some(),
            "review_deadline" => context.review_deadline.is_some(),
            "waited_days" => facts.waited_days.is_some(),
            _ => true,
        };
        if !present {
            return Err(ReplyError::MissingFact {
                kind: context.kind,
                language: context.language,
                fact,
            });
        }
    }
    Ok(())
}

/// A case tag is 1–32 letters, digits and `-`, starting with a letter or
/// digit: it goes into the subject and an `X-Refundd-Case` header.
pub(super) fn check_case_tag(tag: &str) -> Result<(), ReplyError> {
    let valid = !tag.is_empty()
        && tag.len() <= 32
        && !tag.starts_with('-')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ReplyError::InvalidCaseTag(clean_line(tag, 40)))
    }
}

/// Reply prefixes of the languages our customers write in (`Re:`, `AW:`,
/// `SV:`, `Antw:`, `Réf. :`, `RES:`), with an optional counter (`Re[2]:`).
static REPLY_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:re|aw|sv|antw|r[ée]f\.?|res)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*")
        .expect("reply prefix pattern is valid")
});

/// Case tags in the style we issue (`[#R-1042]`).
static CASE_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\[#[a-z]{1,8}-\d{1,12}\]").expect("case tag pattern is valid")
});

/// `Re: {subject} [#R-1042]`: the customer's subject without its reply
/// prefixes and case tags, on one line, at most 120 characters; a
/// language's "Your refund request" when nothing is left.
pub fn reply_subject(original: &str, case_tag: &str, language: Language) -> String {
    let line = clean_line(original, usize::MAX);
    let own_tag = format!("[#{case_tag}]");
    let mut subject = CASE_TAG
        .replace_all(&line.replace(&own_tag, " "), " ")
        .into_owned();
    loop {
        let stripped = REPLY_PREFIX.replace(&subject, "").into_owned();
        if stripped == subject {
            break;
        }
        subject = stripped;
    }
    let mut subject = clean_line(&subject, MAX_SUBJECT_CHARS);
    if subject.is_empty() {
        subject = match language {
            Language::En => "Your refund request",
            Language::De => "Ihre Erstattungsanfrage",
            Language::Fr => "Votre demande de remboursement",
            Language::Es => "Su solicitud de reembolso",
        }
        .to_string();
    }
    format!("Re: {subject} {}", clean_line(&own_tag, 40))
}

/// Characters that must never reach a header or silently reorder text:
/// bidirectional controls, zero-width characters, line separators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// One line of untrusted text: control and invisible characters become
/// spaces, runs of whitespace one space, trimmed, capped at `max_chars`
/// (an ellipsis marks the cut).
pub(super) fn clean_line(text: &str, max_chars: usize) -> String {
    let spaced: String = text
        .chars()
        .map(|c| {
            if c.is_control() || is_invisible(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    let line = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    cap(line, max_chars)
}

fn cap(text: String, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text;
    }
    let mut capped: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    capped.truncate(capped.trim_end().len());
    capped.push('…');
    capped
}

/// The name for a greeting, or none when it is empty or an address.
pub(super) fn greeting_name(name: &str) -> Option<String> {
    let name = clean_line(name, MAX_NAME_CHARS);
    let name = name.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    (!name.is_empty() && !name.contains('@')).then(|| name.to_string())
}

/// A reviewer's note: line breaks kept (as `\n`), other control and
/// invisible characters removed, at most two consecutive blank lines'
/// worth of breaks, capped.
fn clean_note(note: &str) -> String {
    let normalized = note.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String = normalized
        .chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' => Some(' '),
            c if c.is_control() || is_invisible(c) => None,
            c => Some(c),
        })
        .collect();
    cap(tidy(&kept).trim_end().to_string(), MAX_NOTE_CHARS)
}

/// Trailing spaces off every line, no more than one blank line in a row,
/// no blank lines at either end, one final newline.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() && blank_run > 0 {
            out.push('\n');
        }
        blank_run = 0;
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::templates;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
    }

    fn facts() -> ReplyFacts {
        ReplyFacts {
            amount: Some(900),
            currency: Some("EUR".into()),
            credits: Some(7),
            order_reference: Some("ANUMI-QWERTYUI-0042".into()),
            refunded_at: Some(at(2026, 5, 20)),
            credits_remaining: Some(50),
            credits_total: Some(50),
            purchased_at: Some(at(2026, 4, 1)),
            window_days: Some(14),
            template: None,
            waited_days: Some(14),
        }
    }

    fn context(kind: ReplyKind, language: Language) -> ReplyContext {
        ReplyContext {
            kind,
            language,
            case_tag: "R-1042".into(),
            customer_name: Some("Ann".into()),
            original_subject: "Refund please".into(),
            facts: facts(),
            review_deadline: Some(at(2026, 6, 5)),
            personal_note: None,
        }
    }

    fn renderer() -> ReplyRenderer {
        ReplyRenderer::new(None).expect("embedded templates are valid")
    }

    /// What each kind must quote, besides the case tag and the greeting.
    enum Fact {
        Amount,
        OrderReference,
        Credits,
        CreditsTotal,
        BusinessDays,
        RefundedOn,
        PurchasedOn,
        WindowDays,
        WaitedDays,
        Deadline,
        InvoiceExample,
    }

    fn expected_facts(kind: ReplyKind) -> &'static [Fact] {
        use Fact::*;
        match kind {
            ReplyKind::FailedGenerationCredited => &[Credits],
            ReplyKind::FailedGenerationAlreadyRefunded => &[Credits, RefundedOn],
            ReplyKind::CashRefundApproved => &[Amount, OrderReference, BusinessDays],
            ReplyKind::CashRefundAllUsed => &[OrderReference, CreditsTotal],
            ReplyKind::AlreadyRefunded => &[Amount, OrderReference, RefundedOn, BusinessDays],
            ReplyKind::WindowExpired => &[OrderReference, PurchasedOn, WindowDays],
            ReplyKind::CourtesyCredited => &[Credits],
            ReplyKind::NeedResult | ReplyKind::UnknownSender | ReplyKind::NeedOrderId => {
                &[InvoiceExample]
            }
            ReplyKind::UnknownOrder => &[OrderReference, InvoiceExample],
            ReplyKind::ReviewAcknowledged => &[Deadline],
            ReplyKind::NeedsInfoClosed => &[WaitedDays],
            ReplyKind::SubjectiveDenied
            | ReplyKind::ModerationBlock
            | ReplyKind::TerminatedDenied
            | ReplyKind::ReasonDenied
            | ReplyKind::NoReply => &[],
        }
    }

    fn expected_text(fact: &Fact, language: Language) -> String {
        match fact {
            Fact::Amount => "9.00 EUR".into(),
            Fact::OrderReference => "ANUMI-QWERTYUI-0042".into(),
            Fact::Credits => match language {
                Language::En => "7 credits",
                Language::De => "7 Credits",
                Language::Fr => "7 crédits",
                Language::Es => "7 créditos",
            }
            .into(),
            Fact::CreditsTotal => "50".into(),
            Fact::BusinessDays => "5–10".into(),
            Fact::RefundedOn => format_date(at(2026, 5, 20), language, false),
            Fact::PurchasedOn => format_date(at(2026, 4, 1), language, false),
            Fact::WindowDays => "14".into(),
            Fact::WaitedDays => "14".into(),
            Fact::Deadline => format_date(at(2026, 6, 5), language, true),
            Fact::InvoiceExample => "ANUMI-XXXXXXXX-0001".into(),
        }
    }

    fn signature(language: Language) -> &'static str {
        match language {
            Language::En => "Kind regards",
            Language::De => "Mit freundlichen Grüßen",
            Language::Fr => "Cordialement",
            Language::Es => "Un saludo",
        }
    }

    #[test]
    fn every_kind_renders_in_every_language_quoting_its_facts() {
        let renderer = renderer();
        for language in LANGUAGES {
            for kind in SENT_KINDS {
                let reply = renderer.render(&context(kind, language)).unwrap();
                let label = format!("{kind:?} in {language:?}");
                for part in [&reply.text, &reply.html] {
                    assert!(
                        !part.contains("{{") && !part.contains("{%"),
                        "{label}: {part}"
                    );
                    assert!(
                        !part.contains("none"),
                        "{label} prints a missing value: {part}"
                    );
                    assert!(part.contains("[#R-1042]"), "{label} lacks the case tag");
                    assert!(part.contains("Ann"), "{label} lacks the greeting name");
                    assert!(part.contains(signature(language)), "{label}: {part}");
                    for fact in expected_facts(kind) {
                        let expected = expected_text(fact, language);
                        assert!(
                            part.contains(&expected),
                            "{label} lacks {expected:?}: {part}"
                        );
                    }
                }
                assert!(reply.html.starts_with("<!DOCTYPE html>"), "{label}");
                assert!(
                    reply
                        .html
                        .contains(&format!("lang=\"{}\"", language.code()))
                );
                assert_eq!(reply.subject, "Re: Refund please [#R-1042]", "{label}");
            }
        }
    }

    #[test]
    fn every_translation_is_its_own_text_not_the_english_one() {
        let renderer = renderer();
        for kind in SENT_KINDS {
            let english = renderer.render(&context(kind, Language::En)).unwrap();
            for language in [Language::De, Language::Fr, Language::Es] {
                let translated = renderer.render(&context(kind, language)).unwrap();
                let english_first = english.text.lines().nth(2).unwrap();
                assert!(
                    !translated.text.contains(english_first),
                    "{kind:?} in {language:?} still reads {english_first:?}"
                );
            }
        }
    }

    #[test]
    fn every_kind_but_no_reply_has_an_embedded_template_in_every_language() {
        let names: Vec<&str> = templates::EMBEDDED
            .iter()
            .flatten()
            .map(|(n, _)| *n)
            .collect();
        for language in LANGUAGES {
            for kind in SENT_KINDS {
                let name = format!("{}/{}.txt", language.code(), kind.template_name());
                assert!(names.contains(&name.as_str()), "{name} is not embedded");
            }
        }
        // A new ReplyKind must be added to SENT_KINDS (or be NoReply, or
        // take its body from the configuration like ReasonDenied).
        for kind in SENT_KINDS {
            match kind {
                ReplyKind::NoReply => panic!("no_reply is never sent"),
                ReplyKind::ReasonDenied => panic!("reason_denied has no template of its own"),
                ReplyKind::FailedGenerationCredited
                | ReplyKind::FailedGenerationAlreadyRefunded
                | ReplyKind::CashRefundApproved
                | ReplyKind::CashRefundAllUsed
                | ReplyKind::AlreadyRefunded
                | ReplyKind::WindowExpired
                | ReplyKind::CourtesyCredited
                | ReplyKind::NeedResult
                | ReplyKind::SubjectiveDenied
                | ReplyKind::ModerationBlock
                | ReplyKind::TerminatedDenied
                | ReplyKind::UnknownSender
                | ReplyKind::NeedOrderId
                | ReplyKind::UnknownOrder
                | ReplyKind::ReviewAcknowledged
                | ReplyKind::NeedsInfoClosed => {}
            }
        }
    }

    #[test]
    fn no_reply_renders_nothing() {
        let error = renderer()
            .render(&context(ReplyKind::NoReply, Language::En))
            .unwrap_err();
        assert!(matches!(error, ReplyError::NoReply), "{error}");
    }

    #[test]
    fn a_reply_missing_a_fact_it_must_quote_is_refused() {
        let renderer = renderer();
        type Remove = fn(&mut ReplyContext);
        let cases: [(ReplyKind, Remove, &str); 4] = [
            (
                ReplyKind::CashRefundApproved,
                |c| c.facts.amount = None,
                "amount",
            ),
            (
                ReplyKind::CashRefundApproved,
                |c| c.facts.currency = None,
                "currency",
            ),
            (
                ReplyKind::CourtesyCredited,
                |c| c.facts.credits = None,
                "credits",
            ),
            (
                ReplyKind::ReviewAcknowledged,
                |c| c.review_deadline = None,
                "review_deadline",
            ),
        ];
        for (kind, remove, expected) in cases {
            let mut context = context(kind, Language::De);
            remove(&mut context);
            match renderer.render(&context) {
                Err(ReplyError::MissingFact { fact, .. }) => assert_eq!(fact, expected),
                other => panic!("{kind:?} without {expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_already_refunded_reply_without_a_time_says_so_plainly_in_every_language() {
        let renderer = renderer();
        let cases: [(ReplyKind, Language, &str); 8] = [
            (
                ReplyKind::AlreadyRefunded,
                Language::En,
                "This order was already refunded (9.00 EUR), so",
            ),
            (
                ReplyKind::AlreadyRefunded,
                Language::De,
                "Diese Bestellung wurde bereits erstattet (9.00 EUR);",
            ),
            (
                ReplyKind::AlreadyRefunded,
                Language::Fr,
                "Cette commande a déjà été remboursée (9.00 EUR) ;",
            ),
            (
                ReplyKind::AlreadyRefunded,
                Language::Es,
                "Este pedido ya se reembolsó (9.00 EUR), por lo que",
            ),
            (
                ReplyKind::FailedGenerationAlreadyRefunded,
                Language::En,
                "the 7 credits it used went back to your wallet automatically.",
            ),
            (
                ReplyKind::FailedGenerationAlreadyRefunded,
                Language::De,
                "Credits wurden Ihrer Wallet bereits automatisch zurückgebucht.",
            ),
            (
                ReplyKind::FailedGenerationAlreadyRefunded,
                Language::Fr,
                "ont déjà été restitués automatiquement sur votre portefeuille.",
            ),
            (
                ReplyKind::FailedGenerationAlreadyRefunded,
                Language::Es,
                "ya se devolvieron automáticamente a su monedero.",
            ),
        ];
        for (kind, language, expected) in cases {
            let mut context = context(kind, language);
            context.facts.refunded_at = None;
            let reply = renderer
                .render(&context)
                .unwrap_or_else(|e| panic!("{kind:?} in {language:?}: {e}"));
            for part in [&reply.text, &reply.html] {
                assert!(part.contains(expected), "{kind:?} in {language:?}: {part}");
                assert!(
                    !part.contains(&format_date(at(2026, 5, 20), language, false)),
                    "{kind:?} in {language:?} quotes no date"
                );
            }
        }
    }

    #[test]
    fn a_partial_cash_refund_says_how_many_credits_it_pays_for() {
        let mut context = context(ReplyKind::CashRefundApproved, Language::En);
        context.facts.amount = Some(360);
        context.facts.credits_remaining = Some(20);
        let reply = renderer().render(&context).unwrap();
        assert!(
            reply.text.contains("30 of the 50 credits"),
            "{}",
            reply.text
        );
        assert!(
            reply.text.contains("20 unused credits: 3.60 EUR"),
            "{}",
            reply.text
        );
    }

    #[test]
    fn zero_decimal_currencies_are_quoted_without_decimals() {
        let mut context = context(ReplyKind::CashRefundApproved, Language::Fr);
        context.facts.amount = Some(1200);
        context.facts.currency = Some("JPY".into());
        let reply = renderer().render(&context).unwrap();
        assert!(reply.text.contains("1200 JPY"), "{}", reply.text);
    }

    #[test]
    fn customer_text_is_shown_literally_never_run_as_template_code() {
        let hostile = "{{ 7*7 }} {% include 'en/layout.txt' %} <script>alert(1)</script>";
        let mut context = context(ReplyKind::ReviewAcknowledged, Language::En);
        context.customer_name = Some("{{ 7*7 }} <script>x</script>".into());
        context.original_subject = hostile.into();
        context.personal_note = Some(hostile.into());
        let reply = renderer().render(&context).unwrap();

        assert!(reply.text.contains("Hello {{ 7*7 }} <script>x</script>,"));
        assert!(reply.text.contains(hostile), "{}", reply.text);
        assert!(!reply.text.contains("49") && !reply.html.contains("49"));
        assert!(!reply.html.contains("<script>"), "{}", reply.html);
        // minijinja also escapes `/` (as `&#x2f;`).
        assert!(reply.html.contains("Hello {{ 7*7 }} &lt;script&gt;x&lt;"));
        assert!(reply.html.contains(
            "{{ 7*7 }} {% include &#x27;en/layout.txt&#x27; %} &lt;script&gt;alert(1)&lt;/script&gt;"
        ));
        assert_eq!(reply.subject, format!("Re: {hostile} [#R-1042]"));
    }

    #[test]
    fn a_reviewers_note_appears_in_both_alternatives_with_its_line_breaks() {
        let mut context = context(ReplyKind::ReviewAcknowledged, Language::En);
        context.personal_note = Some("I checked your order.\r\nAll good.\u{7}".into());
        let reply = renderer().render(&context).unwrap();
        assert!(reply.text.contains("I checked your order.\nAll good.\n"));
        assert!(
            reply
                .html
                .contains("<p>I checked your order.<br>\nAll good.</p>")
        );
        assert!(reply.text.contains("on behalf of the team member"));
        assert!(!reply.text.contains("This is an automatic reply"));
    }

    #[test]
    fn the_greeting_drops_names_that_are_empty_or_addresses() {
        let renderer = renderer();
        let cases = [
            (Some("  \"Zoë Müller\" "), "Hello Zoë Müller,"),
            (Some("ann@example.com"), "Hello,"),
            (Some(" \r\n "), "Hello,"),
            (None, "Hello,"),
        ];
        for (name, expected) in cases {
            let mut context = context(ReplyKind::NeedOrderId, Language::En);
            context.customer_name = name.map(str::to_string);
            let reply = renderer.render(&context).unwrap();
            assert_eq!(reply.text.lines().next(), Some(expected), "{name:?}");
        }
    }

    #[test]
    fn the_subject_keeps_the_customers_words_and_one_case_tag() {
        let cases = [
            ("Refund please", Language::En, "Re: Refund please [#R-1042]"),
            ("Re: RE: AW: Refund", Language::En, "Re: Refund [#R-1042]"),
            ("Re: Refund [#R-1042]", Language::En, "Re: Refund [#R-1042]"),
            (
                "[#R-99] Re[2]: Refund",
                Language::En,
                "Re: Refund [#R-1042]",
            ),
            (
                "SV: Réf. : Antw: Geld zurück",
                Language::De,
                "Re: Geld zurück [#R-1042]",
            ),
            (
                "Hello\r\nBcc: evil@example.com",
                Language::En,
                "Re: Hello Bcc: evil@example.com [#R-1042]",
            ),
            ("", Language::En, "Re: Your refund request [#R-1042]"),
            (
                "  Re:  ",
                Language::De,
                "Re: Ihre Erstattungsanfrage [#R-1042]",
            ),
            (
                "[#R-1042]",
                Language::Es,
                "Re: Su solicitud de reembolso [#R-1042]",
            ),
            (
                "Refund\u{202E}gnp.exe",
                Language::En,
                "Re: Refund gnp.exe [#R-1042]",
            ),
            (
                "Where is my refund?",
                Language::Fr,
                "Re: Where is my refund? [#R-1042]",
            ),
        ];
        for (original, language, expected) in cases {
            assert_eq!(
                reply_subject(original, "R-1042", language),
                expected,
                "{original:?}"
            );
        }
    }

    #[test]
    fn a_huge_subject_is_cut_to_a_sane_length() {
        let subject = reply_subject(&"ü".repeat(10_000), "R-1042", Language::En);
        assert!(subject.chars().count() <= "Re: ".len() + MAX_SUBJECT_CHARS + " [#R-1042]".len());
        assert!(subject.ends_with("… [#R-1042]"), "{subject}");
    }

    #[test]
    fn case_tags_that_could_break_a_header_are_refused() {
        for tag in ["", "R-1\r\nBcc: x", "R 1", "-R1", &"R".repeat(33)] {
            let mut context = context(ReplyKind::NeedOrderId, Language::En);
            context.case_tag = tag.into();
            let result = renderer().render(&context);
            assert!(
                matches!(result, Err(ReplyError::InvalidCaseTag(_))),
                "{tag:?}"
            );
        }
    }

    #[test]
    fn an_override_directory_replaces_single_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("en")).unwrap();
        std::fs::write(
            dir.path().join("en/need_order_id.txt"),
            "Which order? Quote the invoice number, please.\n",
        )
        .unwrap();
        let renderer = ReplyRenderer::new(Some(dir.path())).unwrap();
        let en = renderer
            .render(&context(ReplyKind::NeedOrderId, Language::En))
            .unwrap();
        assert!(
            en.text
                .contains("Which order? Quote the invoice number, please.")
        );
        let de = renderer
            .render(&context(ReplyKind::NeedOrderId, Language::De))
            .unwrap();
        assert!(!de.text.contains("Which order?"));
    }

    #[test]
    fn a_broken_or_unknown_override_fails_at_start() {
        let cases = [
            ("en/need_order_id.txt", "{% if %}", "broken"),
            (
                "en/need_order_id.txt",
                "Order {{ order_reference }}",
                "printing an optional fact",
            ),
            ("en/need_order_idd.txt", "typo", "unknown"),
        ];
        for (file, source, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("en")).unwrap();
            std::fs::write(dir.path().join(file), source).unwrap();
            let error = ReplyRenderer::new(Some(dir.path())).unwrap_err();
            let ReplyError::Broken(report) = &error else {
                panic!("{why}: {error}");
            };
            let named = report
                .problems
                .iter()
                .any(|p| p.file == dir.path().join(file).display().to_string());
            assert!(named, "{why}: {error}");
        }
    }

    #[test]
    fn dates_are_told_in_the_configured_zone_in_the_customers_language() {
        let renderer = ReplyRenderer::load(&TemplateSource {
            time_zone: chrono_tz::Europe::Berlin,
            ..TemplateSource::default()
        })
        .unwrap();
        let mut context = context(ReplyKind::WindowExpired, Language::De);
        // 23:30 in Berlin on 31 May is already 1 June there.
        context.facts.purchased_at = Some(Utc.with_ymd_and_hms(2026, 5, 31, 22, 30, 0).unwrap());
        let reply = renderer.render(&context).unwrap();
        assert!(
            reply.text.contains("am 1. Juni 2026 gekauft"),
            "{}",
            reply.text
        );
        let utc = ReplyRenderer::new(None).unwrap().render(&context).unwrap();
        assert!(utc.text.contains("am 31. Mai 2026 gekauft"), "{}", utc.text);
    }

    #[test]
    fn a_reason_denied_reply_renders_its_configured_body() {
        let dir = tempfile::tempdir().unwrap();
        for lang in ["en", "de", "fr", "es"] {
            std::fs::create_dir(dir.path().join(lang)).unwrap();
            std::fs::write(
                dir.path().join(format!("{lang}/deny_duplicate_order.txt")),
                format!("[{lang}] You bought this pack twice."),
            )
            .unwrap();
        }
        let renderer = ReplyRenderer::load(&TemplateSource {
            dir: Some(dir.path().to_path_buf()),
            bodies: vec!["deny_duplicate_order".into()],
            ..TemplateSource::default()
        })
        .unwrap();
        let mut context = context(ReplyKind::ReasonDenied, Language::Fr);
        context.facts.template = Some("deny_duplicate_order".into());
        let reply = renderer.render(&context).unwrap();
        assert!(reply.text.contains("[fr] You bought this pack twice."));
        assert!(reply.html.contains("[fr] You bought this pack twice."));
        context.facts.template = Some("deny_other".into());
        assert!(matches!(
            renderer.render(&context),
            Err(ReplyError::UnknownBody(_))
        ));
        context.facts.template = None;
        assert!(matches!(
            renderer.render(&context),
            Err(ReplyError::MissingFact {
                fact: "template",
                ..
            })
        ));
    }
}
