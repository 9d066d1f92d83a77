//! The reply templates in use: one [`ReplyRenderer`] shared by everything
//! that answers customers (the pipeline, the review desk) and replaced
//! whole when the operator changed the files.
//!
//! Takes a [`TemplateSource`]; gives [`Templates`], a cheap handle whose
//! [`renderer`](Templates::renderer) is the current set. A reply being
//! rendered keeps the set it started with. [`Templates::reload`] reads and
//! checks the files again and swaps only when every check passes: a broken
//! change fails with the report, and the old templates stay. Never logs
//! (the caller, who knows why it reloads, does).

use std::sync::{Arc, PoisonError, RwLock};

use super::templates::TemplateSource;
use super::{ReplyError, ReplyRenderer};

/// The current reply templates, reloadable; clones share them.
#[derive(Debug, Clone)]
pub struct Templates {
    source: Arc<TemplateSource>,
    current: Arc<RwLock<Arc<ReplyRenderer>>>,
}

impl Templates {
    /// Loads and checks the templates of `source`; fails with every
    /// problem when any template is broken.
    pub fn load(source: TemplateSource) -> Result<Templates, ReplyError> {
        let renderer = ReplyRenderer::load(&source)?;
        Ok(Templates {
            source: Arc::new(source),
            current: Arc::new(RwLock::new(Arc::new(renderer))),
        })
    }

    /// What the templates are loaded from.
    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    /// The templates in use now.
    pub fn renderer(&self) -> Arc<ReplyRenderer> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again and, when every check passes, uses them from
    /// now on; otherwise keeps the templates in use and says why.
    pub fn reload(&self) -> Result<(), ReplyError> {
        let renderer = ReplyRenderer::load(&self.source)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(renderer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Language, ReplyFacts, ReplyKind};
    use crate::reply::ReplyContext;

    fn context() -> ReplyContext {
        ReplyContext {
            kind: ReplyKind::NeedOrderId,
            language: Language::En,
            case_tag: "R-7".into(),
            customer_name: None,
            original_subject: "Refund".into(),
            facts: ReplyFacts::default(),
            review_deadline: None,
            personal_note: None,
        }
    }

    #[test]
    fn a_good_change_is_used_after_reload_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("en/need_order_id.txt");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "Which order, please?\n").unwrap();
        let templates = Templates::load(TemplateSource {
            dir: Some(dir.path().to_path_buf()),
            ..TemplateSource::default()
        })
        .unwrap();
        let before = templates.renderer();
        assert!(
            before
                .render(&context())
                .unwrap()
                .text
                .contains("Which order, please?")
        );

        std::fs::write(&file, "Quote the invoice number.\n").unwrap();
        templates.reload().unwrap();
        let text = templates.renderer().render(&context()).unwrap().text;
        assert!(text.contains("Quote the invoice number."), "{text}");
        // A render that began before the reload finishes with its own set.
        assert!(
            before
                .render(&context())
                .unwrap()
                .text
                .contains("Which order, please?")
        );

        std::fs::write(&file, "Broken {% if %}\n").unwrap();
        let error = templates.reload().unwrap_err();
        assert!(matches!(error, ReplyError::Broken(_)), "{error}");
        let text = templates.renderer().render(&context()).unwrap().text;
        assert!(text.contains("Quote the invoice number."), "{text}");
    }
}
