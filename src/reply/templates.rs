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
//! Fails on an unreadable override directory or an override file that
//! replaces nothing (a misspelt name would otherwise be ignored).

use std::path::Path;

use super::ReplyError;

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
        ]
    };
}

/// The templates compiled into the binary.
pub(super) const EMBEDDED: [[(&str, &str); 17]; 4] = [
    language!("en"),
    language!("de"),
    language!("fr"),
    language!("es"),
];

/// All template sources by name, the override directory's files replacing
/// the embedded ones of the same name.
pub(super) fn sources(override_dir: Option<&Path>) -> Result<Vec<(String, String)>, ReplyError> {
    let mut sources: Vec<(String, String)> = EMBEDDED
        .iter()
        .flatten()
        .map(|(name, source)| (name.to_string(), source.to_string()))
        .collect();
    let Some(dir) = override_dir else {
        return Ok(sources);
    };
    let read_dir = |path: &Path| {
        std::fs::read_dir(path).map_err(|source| ReplyError::Override {
            path: path.into(),
            source,
        })
    };
    for lang_entry in read_dir(dir)? {
        let lang_entry = lang_entry.map_err(|source| ReplyError::Override {
            path: dir.into(),
            source,
        })?;
        let lang_path = lang_entry.path();
        if !lang_path.is_dir() || is_hidden(&lang_path) {
            continue;
        }
        for file in read_dir(&lang_path)? {
            let file = file.map_err(|source| ReplyError::Override {
                path: lang_path.clone(),
                source,
            })?;
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
            let Some(slot) = sources.iter_mut().find(|(known, _)| *known == name) else {
                return Err(ReplyError::UnknownOverride { path });
            };
            slot.1 = std::fs::read_to_string(&path)
                .map_err(|source| ReplyError::Override { path, source })?;
        }
    }
    Ok(sources)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}
