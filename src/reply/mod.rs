//! The reply stage: a decided case becomes a threaded email in the
//! customer's language and is handed to a mail sink.
//!
//! - **Takes** a [`ReplyContext`] (the [`ReplyKind`](crate::domain::ReplyKind)
//!   the policy chose, the customer's language, name and subject, the case
//!   tag, the [`ReplyFacts`](crate::domain::ReplyFacts) to quote, the review
//!   deadline, a reviewer's note) and a [`ReplyEnvelope`] (addresses, our
//!   Message-ID, the customer's Message-ID and References).
//! - **Gives** a [`RenderedReply`] (subject, plain text, HTML) from the
//!   templates under `templates/reply/` ([`ReplyRenderer`]), an RFC 5322
//!   [`OutgoingMessage`] ([`compose`]), and delivery through a [`MailSink`]
//!   ([`FileSink`] writes `.eml` files; SMTP is another implementation).
//! - **Never** treats customer text as template code: names, subjects and
//!   notes are values, HTML-escaped in the HTML part, stripped of control
//!   characters before they reach a header, and capped in length. It never
//!   decides anything (the policy did) and never records anything (the
//!   caller stores the Message-ID from [`new_message_id`] before sending).
//! - **Fails** with [`ReplyError`] when a template is broken (at start, in
//!   [`ReplyRenderer::new`]), a fact the reply must quote is missing, an
//!   address is malformed, or `no_reply` is asked to render; with
//!   [`SendError`], which says whether a retry can help, when a sink cannot
//!   deliver.
//!
//! Templates are embedded in the binary; an override directory
//! (`[reply] templates_dir`) with the same layout (`{lang}/{name}.txt`,
//! `{lang}/layout.txt`, `{lang}/layout.html`) replaces single files and
//! holds the bodies of configured deny reasons. [`check`] checks them all
//! (`refundd templates check`); [`Templates`] is the set in use, reloaded
//! on request.

mod check;
mod compose;
mod format;
mod reload;
mod render;
mod sink;
pub mod smtp;
mod templates;

pub use check::{TemplateProblem, TemplateReport, check};
pub use compose::{OutgoingMessage, ReplyEnvelope, compose, new_message_id};
pub(crate) use format::escape_html;
pub use format::{format_date, format_money};
pub use reload::Templates;
pub use render::{RenderedReply, ReplyContext, ReplyRenderer, reply_subject};
pub use sink::{FileSink, MailSink, SendError};
pub use templates::TemplateSource;

/// The template name of every reply kind that has one of its own (every
/// kind but `no_reply` and `reason_denied`): what a configured deny
/// reason's `template` may reuse.
pub fn shipped_bodies() -> impl Iterator<Item = (ReplyKind, &'static str)> {
    render::SENT_KINDS.iter().map(|k| (*k, k.template_name()))
}

/// The facts a reply of `kind` cannot be sent without (`amount` for a
/// cash refund, …); empty for most kinds.
pub fn required_facts(kind: ReplyKind) -> &'static [&'static str] {
    render::required_facts(kind)
}

use crate::domain::{Language, ReplyKind};

/// Why a reply cannot be rendered or composed. None of these goes away by
/// retrying: they are broken templates, missing facts or bad addresses.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// A template fails to render.
    #[error("reply template {name} is broken: {source}")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    /// The templates failed their check (at start or on reload): every
    /// problem, with file and line.
    #[error("the reply templates are broken: {0}")]
    Broken(TemplateReport),
    /// A `reason_denied` reply names a body template that was not loaded
    /// (no configured deny reason has it).
    #[error("no reply template {0:?} is configured")]
    UnknownBody(String),
    /// `no_reply` (ignored mail) has no template: nothing may be sent.
    #[error("reply kind no_reply is never sent")]
    NoReply,
    /// The reply must quote a fact the decision does not carry.
    #[error("reply {kind:?} in {language:?} needs the fact {fact}, which is missing")]
    MissingFact {
        kind: ReplyKind,
        language: Language,
        fact: &'static str,
    },
    /// The case tag is not of the form `R-1042` (letters, digits, `-`).
    #[error("case tag {0:?} is not a valid case tag")]
    InvalidCaseTag(String),
    /// A sender or recipient address cannot be used.
    #[error("{which} address {address:?} is invalid: {source}")]
    InvalidAddress {
        which: &'static str,
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    /// A Message-ID we were given to use as our own is malformed.
    #[error("message id {0:?} is not a valid msg-id")]
    InvalidMessageId(String),
    /// lettre refused to build the message.
    #[error("cannot build the reply message: {0}")]
    Build(#[from] lettre::error::Error),
}

impl ReplyError {
    /// Whether retrying the same reply can succeed: never, every variant is
    /// a configuration, template or data problem that needs a person.
    pub fn is_transient(&self) -> bool {
        false
    }
}
