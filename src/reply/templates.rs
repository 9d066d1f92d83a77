//! Where reply template sources come from: embedded in the binary (so
//! `refundd demo` needs nothing else), optionally replaced file by file from
//! an override directory with the same layout.
//!
//! Layout, per language (`en`, `de`, `fr`, `es`):
//! - `{lang}/layout.txt`, `{lang}/layout.html`: greeting, the body, a
//!   reviewer's note, the case tag, the signature and the automatic-reply
//!   line; the HTML layout turns the body into paragraphs and lists;
//! - `{lang}/{name}.txt`: the body of one reply kind
//!   ([`ReplyKind::template_name`](crate::domain::ReplyKind::template_name)),
//!   written once and used by both alternatives.
//!
//! Configured body templates (a deny reason's `template`) are looked for in
//! the override directory under `{lang}/{template}.txt`, one per language.
//!
//! Never fails outright: an unreadable override directory, an override file
//! that replaces nothing (a misspelt name would otherwise be ignored) and a
//! configured body without a file are returned as problems beside the
//! sources, so that `refundd templates check` lists every one of them.

use std::path::{Path, PathBuf};

/// One embedded template: (`{lang}/{file}`, source).
macro_rules! embed {
    ($lang:literal, $file:literal) => {
        (
            concat!($lang, "/", $file),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/templates/reply/",
                $lang,
                "/",
                $file
            )),
        )
    };
}

/// Every template of one language.
macro_rules! language {
    ($lang:literal) => {
        [
            embed!($lang, "layout.txt"),
            embed!($lang, "layout.html"),
            embed!($lang, "failed_generation_credited.txt"),
            embed!($lang, "failed_generation_already_refunded.txt"),
            embed!($lang, "cash_refund_approved.txt"),
            embed!($lang, "cash_refund_all_used.txt"),
            embed!($lang, "already_refunded.txt"),
            embed!($lang, "window_expired.txt"),
            embed!($lang, "courtesy_credited.txt"),
            embed!($lang, "need_result.txt"),
            embed!($lang, "subjective_denied.txt"),
            embed!($lang, "moderation_block.txt"),
            embed!($lang, "terminated_denied.txt"),
            embed!($lang, "unknown_sender.txt"),
            embed!($lang, "need_order_id.txt"),
            embed!($lang, "unknown_order.txt"),
            embed!($lang, "review_acknowledged.txt"),
            embed!($lang, "needs_info_closed.txt"),
        ]
    };
}

/// The templates compiled into the binary.
pub(super) const EMBEDDED: [[(&str, &str); 18]; 4] = [
    language!("en"),
    language!("de"),
    language!("fr"),
    language!("es"),
];

/// What to load: the override directory, the configured body templates and
/// the zone customer-facing dates are told in. Composed from the settings
/// (`Settings::reply_templates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// `[reply] templates_dir`: files here replace the shipped ones of the
    /// same name; a file it lacks stays the shipped one.
    pub dir: Option<PathBuf>,
    /// Body templates beyond the shipped kinds' (configured deny reasons'
    /// `template`), each needed as `{lang}/{name}.txt` in `dir` for every
    /// language.
    pub bodies: Vec<String>,
    /// `[calendar] time_zone`: the zone dates in replies are told in.
    pub time_zone: chrono_tz::Tz,
}

impl Default for TemplateSource {
    fn default() -> Self {
        TemplateSource {
            dir: None,
            bodies: Vec::new(),
            time_zone: chrono_tz::Tz::UTC,
        }
    }
}

/// Where a template's text came from, so that a problem points at the file
/// the operator edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// Compiled into the binary from `templates/reply/{name}`.
    Shipped,
    /// A file of `[reply] templates_dir`.
    Override(PathBuf),
    /// A configured body template no file provides (yet).
    Missing,
}

impl Origin {
    /// The file to name in a message about template `name`.
    pub(super) fn file(&self, name: &str) -> String {
        match self {
            Origin::Shipped => format!("templates/reply/{name} (shipped)"),
            Origin::Override(path) => path.display().to_string(),
            Origin::Missing => name.to_owned(),
        }
    }
}

/// One template: its name (`{lang}/{file}`), text and origin.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub name: String,
    pub text: String,
    pub origin: Origin,
}

/// Why a template source could not be used, found before compiling.
#[derive(Debug)]
pub(super) enum SourceProblem {
    /// The directory or a file cannot be read.
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that replaces nothing (a misspelt name would be ignored).
    Unknown { path: PathBuf },
    /// A configured body template has no file for a language.
    Missing { name: String, dir: Option<PathBuf> },
}

/// All template sources by name, the override directory's files replacing
/// the embedded ones of the same name. `bodies` are configured body
/// templates (deny reasons' `template`) beyond the shipped ones: each must
/// have a file `{lang}/{body}.txt` in the override directory for every
/// language. Problems are collected, not stopped at, so that a check lists
/// them all; a source with a problem is left out.
pub(super) fn sources(
    override_dir: Option<&Path>,
    bodies: &[String],
    languages: &[&str],
) -> (Vec<Source>, Vec<SourceProblem>) {
    let mut sources: Vec<Source> = EMBEDDED
        .iter()
        .flatten()
        .map(|(name, text)| Source {
            name: name.to_string(),
            text: text.to_string(),
            origin: Origin::Shipped,
        })
        .collect();
    let configured: Vec<String> = bodies
        .iter()
        .flat_map(|body| {
            languages
                .iter()
                .map(move |lang| format!("{lang}/{body}.txt"))
        })
        .filter(|name| !sources.iter().any(|s| s.name == *name))
        .collect();
    for name in &configured {
        sources.push(Source {
            name: name.clone(),
            text: String::new(),
            origin: Origin::Missing,
        });
    }
    let mut problems = Vec::new();
    if let Some(dir) = override_dir {
        read_overrides(dir, &mut sources, &mut problems);
    }
    sources.retain(|source| {
        if source.origin != Origin::Missing {
            return true;
        }
        problems.push(SourceProblem::Missing {
            name: source.name.clone(),
            dir: override_dir.map(Path::to_path_buf),
        });
        false
    });
    (sources, problems)
}

fn read_overrides(dir: &Path, sources: &mut [Source], problems: &mut Vec<SourceProblem>) {
    let unreadable = |path: &Path, source| SourceProblem::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let languages = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => return problems.push(unreadable(dir, source)),
    };
    for lang_entry in languages {
        let lang_entry = match lang_entry {
            Ok(entry) => entry,
            Err(source) => {
                problems.push(unreadable(dir, source));
                continue;
            }
        };
        let lang_path = lang_entry.path();
        if !lang_path.is_dir() || is_hidden(&lang_path) {
            continue;
        }
        let files = match std::fs::read_dir(&lang_path) {
            Ok(files) => files,
            Err(source) => {
                problems.push(unreadable(&lang_path, source));
                continue;
            }
        };
        for file in files {
            let file = match file {
                Ok(file) => file,
                Err(source) => {
                    problems.push(unreadable(&lang_path, source));
                    continue;
                }
            };
            let path = file.path();
            let is_template = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("txt" | "html")
            );
            if !is_template || is_hidden(&path) || !path.is_file() {
                continue;
            }
            let name = format!(
                "{}/{}",
                lang_entry.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            let Some(slot) = sources.iter_mut().find(|known| known.name == name) else {
                problems.push(SourceProblem::Unknown { path });
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    slot.text = text;
                    slot.origin = Origin::Override(path);
                }
                Err(source) => problems.push(unreadable(&path, source)),
            }
        }
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}
