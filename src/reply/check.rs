//! Checking reply templates before they answer anyone: what
//! `refundd templates check` prints, what stops `refundd run` from starting
//! and what a reload refuses.
//!
//! Takes a [`TemplateSource`]; gives a [`TemplateReport`] listing every
//! problem with the file to edit and, where minijinja knows it, the line:
//! a file that cannot be read or replaces nothing, a configured body
//! template without a file for a language, a template that does not
//! compile, and a reply that fails to render — every sent kind and every
//! configured body, in every language, as text and as HTML, from sample
//! facts of every kind of case: all facts, only the ones the kind is
//! guaranteed (the ledger import contract's and what refundd computes),
//! and each optional one missing in turn. A template that prints an
//! optional fact without `{% if %}` is named with that fact. Never fails:
//! problems are the result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{TimeZone, Utc};

use super::ReplyError;
use super::render::{LANGUAGES, Part, ReplyContext, ReplyRenderer, SENT_KINDS, required_facts};
use super::templates::{self, Origin, SourceProblem, TemplateSource};
use crate::domain::{Language, ReplyFacts, ReplyKind};

/// One thing wrong with the templates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TemplateProblem {
    /// The file to edit (an override's path, or the shipped template's
    /// name), or the template name when no file provides it.
    pub file: String,
    /// The line in that file, when known.
    pub line: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateReport {
    /// Templates compiled (shipped, replaced and configured).
    pub templates: usize,
    /// Replies rendered (kind × language × sample facts, text and HTML).
    pub renders: usize,
    /// Every problem, each once, by file and line.
    pub problems: Vec<TemplateProblem>,
}

impl TemplateReport {
    /// No problem at all.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for TemplateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        match problems.len() {
            0 => write!(f, "no problems"),
            1 => write!(f, "{}", problems[0]),
            n => write!(f, "{n} problems: {}", problems.join("; ")),
        }
    }
}

/// Checks the templates `source` describes.
pub fn check(source: &TemplateSource) -> TemplateReport {
    build(source).1
}

/// The renderer over what compiled, and the report on all of it.
pub(super) fn build(source: &TemplateSource) -> (ReplyRenderer, TemplateReport) {
    let codes: Vec<&str> = LANGUAGES.iter().map(|l| l.code()).collect();
    let (sources, source_problems) =
        templates::sources(source.dir.as_deref(), &source.bodies, &codes);
    let mut problems: BTreeSet<TemplateProblem> = source_problems
        .into_iter()
        .map(|p| source_problem(p, source))
        .collect();
    let origins: BTreeMap<String, Origin> = sources
        .iter()
        .map(|s| (s.name.clone(), s.origin.clone()))
        .collect();
    let mut env = ReplyRenderer::environment();
    let mut templates = 0;
    for s in sources {
        templates += 1;
        if let Err(error) = env.add_template_owned(s.name.clone(), s.text) {
            problems.insert(minijinja_problem(&origins, &s.name, &error));
        }
    }
    let bodies: BTreeSet<String> = source.bodies.iter().cloned().collect();
    let renderer = ReplyRenderer::from_parts(env, source.time_zone, bodies.clone());

    let mut targets: Vec<(ReplyKind, Option<&str>)> =
        SENT_KINDS.iter().map(|kind| (*kind, None)).collect();
    targets.extend(
        bodies
            .iter()
            .map(|body| (ReplyKind::ReasonDenied, Some(body.as_str()))),
    );
    let mut renders = 0;
    for language in LANGUAGES {
        for &(kind, body) in &targets {
            renders += check_reply(&renderer, &origins, kind, body, language, &mut problems);
        }
    }
    let report = TemplateReport {
        templates,
        renders,
        problems: problems.into_iter().collect(),
    };
    (renderer, report)
}

/// Renders one kind (or configured body) in one language from every
/// sample; returns how many replies were rendered.
fn check_reply(
    renderer: &ReplyRenderer,
    origins: &BTreeMap<String, Origin>,
    kind: ReplyKind,
    body: Option<&str>,
    language: Language,
    problems: &mut BTreeSet<TemplateProblem>,
) -> usize {
    let full = sample(kind, body, language, Sample::Full);
    let Ok(body_name) = renderer.body_name(&full) else {
        return 0;
    };
    let lang = language.code();
    let involved = [
        body_name,
        format!("{lang}/{}", Part::Text.layout()),
        format!("{lang}/{}", Part::Html.layout()),
    ];
    // A template that did not compile (or has no file) is reported once,
    // not again for every reply it would have been part of.
    if involved.iter().any(|name| !renderer.has_template(name)) {
        return 0;
    }
    let what = body.unwrap_or(kind.template_name());
    let mut renders = 0;
    let mut found = false;
    for sample_kind in [Sample::Full, Sample::Plain] {
        let context = sample(kind, body, language, sample_kind);
        for error in render_all(renderer, &context, &mut renders) {
            found = true;
            problems.insert(reply_problem(origins, &error, None));
        }
    }
    for fact in OPTIONAL_FACTS {
        // A fact the templates never name cannot be missed (what they
        // reach otherwise, e.g. through an include, the minimal sample
        // below still finds).
        let named = involved
            .iter()
            .any(|name| renderer.mentions(name, fact.value));
        if required_facts(kind).contains(&fact.name) || !named {
            continue;
        }
        let mut context = sample(kind, body, language, Sample::Full);
        (fact.remove)(&mut context);
        for error in render_all(renderer, &context, &mut renders) {
            found = true;
            let hint = format!(
                "a {what} reply does not always have `{}`{}: print it only inside \
                 `{{% if {} %}}` ({})",
                fact.value,
                if fact.ledger {
                    " (the ledger import contract does not guarantee it)"
                } else {
                    ""
                },
                fact.value,
                short_error(&error)
            );
            problems.insert(reply_problem(origins, &error, Some(hint)));
        }
    }
    // Only the guaranteed facts: anything left is explained above, unless
    // it is not a single missing fact.
    let minimal = sample(kind, body, language, Sample::Minimal);
    for error in render_all(renderer, &minimal, &mut renders) {
        if !found {
            let hint = format!(
                "a {what} reply with only the facts it is guaranteed fails ({}): guard every \
                 optional fact with `{{% if … %}}`",
                short_error(&error)
            );
            problems.insert(reply_problem(origins, &error, Some(hint)));
        }
    }
    renders
}

/// The body, then the text and the HTML alternatives, each on its own so
/// that a broken text layout does not hide a broken HTML one.
fn render_all(
    renderer: &ReplyRenderer,
    context: &ReplyContext,
    renders: &mut usize,
) -> Vec<ReplyError> {
    *renders += 1;
    let values = match renderer.render_body(context) {
        Ok((values, _)) => values,
        Err(error) => return vec![error],
    };
    [Part::Text, Part::Html]
        .into_iter()
        .filter_map(|part| {
            renderer
                .render_layout(&values, context.language, part)
                .err()
        })
        .collect()
}

/// Which sample facts a reply is rendered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    /// Every fact, the customer's name, a reviewer's note, a partial refund.
    Full,
    /// Every fact, no name, no note, one credit, nothing partial.
    Plain,
    /// Only what the kind is guaranteed.
    Minimal,
}

fn sample(kind: ReplyKind, body: Option<&str>, language: Language, which: Sample) -> ReplyContext {
    let at = Utc
        .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid sample date");
    let template = body.map(str::to_owned);
    let all = ReplyFacts {
        amount: Some(900),
        currency: Some("EUR".into()),
        credits: Some(5),
        order_reference: Some("ANUMI-AAAAAAAB-0001".into()),
        refunded_at: Some(at),
        credits_remaining: Some(20),
        credits_total: Some(50),
        purchased_at: Some(at),
        window_days: Some(14),
        template: template.clone(),
        waited_days: Some(14),
    };
    let required = required_facts(kind);
    let (facts, personal) = match which {
        Sample::Full => (all, true),
        Sample::Plain => (
            ReplyFacts {
                credits: Some(1),
                credits_remaining: Some(50),
                ..all
            },
            false,
        ),
        Sample::Minimal => {
            let needs = |fact| required.contains(&fact);
            (
                ReplyFacts {
                    amount: all.amount.filter(|_| needs("amount")),
                    currency: all.currency.clone().filter(|_| needs("currency")),
                    credits: all.credits.filter(|_| needs("credits")),
                    waited_days: all.waited_days.filter(|_| needs("waited_days")),
                    template,
                    ..ReplyFacts::default()
                },
                false,
            )
        }
    };
    let deadline = which != Sample::Minimal || required.contains(&"review_deadline");
    ReplyContext {
        kind,
        language,
        case_tag: "R-1".into(),
        customer_name: personal.then(|| "Sample".into()),
        original_subject: "Refund".into(),
        facts,
        review_deadline: deadline.then_some(at),
        personal_note: personal.then(|| "A note.".into()),
    }
}

/// A value a template may see that some replies of a kind lack.
struct OptionalFact {
    /// The fact's name in [`required_facts`].
    name: &'static str,
    /// The value templates print.
    value: &'static str,
    /// Whether it comes from the ledger (else from the customer or a
    /// reviewer).
    ledger: bool,
    remove: fn(&mut ReplyContext),
}

const OPTIONAL_FACTS: [OptionalFact; 11] = [
    OptionalFact {
        name: "name",
        value: "name",
        ledger: false,
        remove: |c| c.customer_name = None,
    },
    OptionalFact {
        name: "personal_note",
        value: "personal_note",
        ledger: false,
        remove: |c| c.personal_note = None,
    },
    OptionalFact {
        name: "amount",
        value: "amount",
        ledger: true,
        remove: |c| c.facts.amount = None,
    },
    OptionalFact {
        name: "credits",
        value: "credits",
        ledger: true,
        remove: |c| c.facts.credits = None,
    },
    OptionalFact {
        name: "credits_remaining",
        value: "credits_remaining",
        ledger: true,
        remove: |c| c.facts.credits_remaining = None,
    },
    OptionalFact {
        name: "credits_total",
        value: "credits_total",
        ledger: true,
        remove: |c| c.facts.credits_total = None,
    },
    OptionalFact {
        name: "order_reference",
        value: "order_reference",
        ledger: true,
        remove: |c| c.facts.order_reference = None,
    },
    OptionalFact {
        name: "refunded_at",
        value: "refunded_on",
        ledger: true,
        remove: |c| c.facts.refunded_at = None,
    },
    OptionalFact {
        name: "purchased_at",
        value: "purchased_on",
        ledger: true,
        remove: |c| c.facts.purchased_at = None,
    },
    OptionalFact {
        name: "window_days",
        value: "window_days",
        ledger: false,
        remove: |c| c.facts.window_days = None,
    },
    OptionalFact {
        name: "waited_days",
        value: "waited_days",
        ledger: false,
        remove: |c| c.facts.waited_days = None,
    },
];

/// A render error as a problem in the file that failed.
fn reply_problem(
    origins: &BTreeMap<String, Origin>,
    error: &ReplyError,
    message: Option<String>,
) -> TemplateProblem {
    match error {
        ReplyError::Template { name, source } => {
            let mut problem = minijinja_problem(origins, name, source);
            if let Some(message) = message {
                problem.message = message;
            }
            problem
        }
        other => TemplateProblem {
            file: "reply templates".into(),
            line: None,
            message: message.unwrap_or_else(|| other.to_string()),
        },
    }
}

/// A minijinja error in the file it names (or `name`, which was being
/// compiled or rendered), with its line.
fn minijinja_problem(
    origins: &BTreeMap<String, Origin>,
    name: &str,
    error: &minijinja::Error,
) -> TemplateProblem {
    let name = error.name().unwrap_or(name);
    let file = origins
        .get(name)
        .map_or_else(|| name.to_owned(), |origin| origin.file(name));
    TemplateProblem {
        file,
        line: error.line(),
        message: minijinja_message(error),
    }
}

/// The error's kind and detail, without minijinja's own `(in name:line)`.
fn minijinja_message(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

fn short_error(error: &ReplyError) -> String {
    match error {
        ReplyError::Template { source, .. } => minijinja_message(source),
        other => other.to_string(),
    }
}

fn source_problem(problem: SourceProblem, source: &TemplateSource) -> TemplateProblem {
    let message_for_missing = |dir: &Option<std::path::PathBuf>| match dir {
        Some(_) => "is missing: a configured deny reason's template needs a file in every \
                    language (en, de, fr, es)"
            .to_owned(),
        None => "is missing: a configured deny reason's template is read from [reply] \
                 templates_dir, which is not set"
            .to_owned(),
    };
    match problem {
        SourceProblem::Unreadable { path, source } => TemplateProblem {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot be read: {source}"),
        },
        SourceProblem::Unknown { path } => TemplateProblem {
            file: path.display().to_string(),
            line: None,
            message: format!(
                "replaces no shipped template and is no configured deny reason's template \
                 (known bodies: the reply kinds in templates/reply/, plus {})",
                if source.bodies.is_empty() {
                    "none configured".to_owned()
                } else {
                    source.bodies.join(", ")
                }
            ),
        },
        SourceProblem::Missing { name, dir } => TemplateProblem {
            file: match &dir {
                Some(dir) => dir.join(&name).display().to_string(),
                None => name,
            },
            line: None,
            message: message_for_missing(&dir),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn source(dir: &Path) -> TemplateSource {
        TemplateSource {
            dir: Some(dir.to_path_buf()),
            ..TemplateSource::default()
        }
    }

    #[test]
    fn the_shipped_templates_pass_in_every_language_and_part() {
        let report = check(&TemplateSource::default());
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.templates, 4 * 18);
        assert!(report.renders >= 4 * 16 * 3, "{}", report.renders);
    }

    #[test]
    fn a_syntax_error_names_the_override_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "en/need_order_id.txt",
            "Which order?\n\nPlease {% if %} tell us.\n",
        );
        let report = check(&source(dir.path()));
        assert_eq!(report.problems.len(), 1, "{report}");
        let problem = &report.problems[0];
        assert_eq!(
            problem.file,
            dir.path()
                .join("en/need_order_id.txt")
                .display()
                .to_string()
        );
        assert_eq!(problem.line, Some(3), "{problem}");
        assert!(problem.message.contains("syntax error"), "{problem}");
    }

    #[test]
    fn an_unguarded_optional_fact_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "de/window_expired.txt",
            "Danke.\n\nGekauft am {{ purchased_on }}.\n",
        );
        let report = check(&source(dir.path()));
        assert_eq!(report.problems.len(), 1, "{report}");
        let problem = &report.problems[0];
        assert!(problem.file.ends_with("de/window_expired.txt"), "{problem}");
        assert_eq!(problem.line, Some(3), "{problem}");
        assert!(problem.message.contains("`purchased_on`"), "{problem}");
        assert!(
            problem.message.contains("ledger import contract"),
            "{problem}"
        );
    }

    #[test]
    fn a_guaranteed_fact_may_be_printed_unguarded() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "en/cash_refund_approved.txt",
            "We refunded {{ amount }}.\n",
        );
        let report = check(&source(dir.path()));
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn a_broken_html_layout_is_found_even_when_the_text_one_is_broken_too() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "fr/layout.txt", "{{ body }}\n{{ nope() }}\n");
        write(dir.path(), "fr/layout.html", "<p>{{ body | nope }}</p>\n");
        let report = check(&source(dir.path()));
        let files: Vec<&str> = report.problems.iter().map(|p| p.file.as_str()).collect();
        assert!(
            files.iter().any(|f| f.ends_with("fr/layout.txt")),
            "{report}"
        );
        assert!(
            files.iter().any(|f| f.ends_with("fr/layout.html")),
            "{report}"
        );
    }

    #[test]
    fn files_that_replace_nothing_and_missing_configured_bodies_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "en/need_order_idd.txt", "typo");
        for lang in ["en", "de", "fr"] {
            write(
                dir.path(),
                &format!("{lang}/deny_duplicate_order.txt"),
                "You bought it twice{% if order_reference %} ({{ order_reference }}){% endif %}.",
            );
        }
        let report = check(&TemplateSource {
            bodies: vec!["deny_duplicate_order".into()],
            ..source(dir.path())
        });
        assert_eq!(report.problems.len(), 2, "{report}");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.file.ends_with("en/need_order_idd.txt")),
            "{report}"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.file.ends_with("es/deny_duplicate_order.txt")
                    && p.message.contains("missing")),
            "{report}"
        );
    }

    #[test]
    fn a_configured_body_is_checked_like_a_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        for lang in ["en", "de", "fr", "es"] {
            write(
                dir.path(),
                &format!("{lang}/deny_duplicate_order.txt"),
                "Order {{ order_reference }} was bought twice.",
            );
        }
        let report = check(&TemplateSource {
            bodies: vec!["deny_duplicate_order".into()],
            ..source(dir.path())
        });
        assert_eq!(report.problems.len(), 4, "one per language: {report}");
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.message.contains("`order_reference`") && p.line == Some(1)),
            "{report}"
        );
    }
}
