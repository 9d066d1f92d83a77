//! Extraction: the facts the policy reads of one customer message.
//!
//! - Takes: a [`ParsedEmail`], the time our server received it, and (once,
//!   at start) the `[extract]` and `[sender_auth]` settings.
//! - Gives: [`MessageFacts`]: order references (subject, fresh AND quoted
//!   text, HTML links), generation references, evidence (image attached,
//!   result linked), category and text flags (from the intent rules file,
//!   scored on the subject and the customer's fresh words only), language,
//!   and the sender authentication verdict (RFC 8601). `auto` is left
//!   `None`: the pipeline runs `screen` for that.
//! - Never: does I/O per message, looks at the ledger, or decides anything
//!   (that is `policy`). Regexes are compiled once in [`Extractor::new`].
//! - Fails: only in [`Extractor::new`], on bad configuration or a bad
//!   rules file ([`ExtractError`] names the setting, file and rule);
//!   [`Extractor::extract`] cannot fail.
//!
//! One file per concern: `scan` (which texts are read), `quotes` (fresh
//! text), `fold` (text normalisation for matching), `order_refs`,
//! `generations`, `evidence`, `intent` (+ `intent_rules.toml`),
//! `language`, `auth`.

pub mod config;

mod auth;
mod evidence;
mod fold;
mod generations;
mod intent;
mod language;
mod order_refs;
mod quotes;
mod scan;

#[cfg(test)]
mod fixture_tests;

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::domain::{MessageFacts, Verification};
use crate::parse::ParsedEmail;
use config::{ExtractConfig, SenderAuthConfig};
use generations::GenerationFinder;
use order_refs::OrderRefFinder;
use scan::Scan;

pub use auth::{AuthRules, sender_auth};
pub use fold::fold_text;
pub use intent::{BUILT_IN_ORIGIN, Intent, IntentRules, Target};
pub use quotes::fresh_text;

/// Why the extractor could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// `[extract] rules_file` could not be read.
    #[error("cannot read intent rules file {}: {source}", path.display())]
    ReadRules {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The rules file is not valid TOML or breaks the rules schema.
    #[error("intent rules {origin}: {message}")]
    Rules { origin: String, message: String },
    /// A rule's pattern is not a valid regex.
    #[error("intent rules {origin}: {rule}: invalid pattern `{pattern}`: {source}")]
    RulePattern {
        origin: String,
        rule: String,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    /// A configured pattern is not a valid regex.
    #[error("[extract] {setting}: invalid pattern `{pattern}`: {source}")]
    ConfigPattern {
        setting: &'static str,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    /// A result link pattern has no `(?P<id>…)` group.
    #[error("[extract] result_link_patterns: `{pattern}` has no named group `id`")]
    MissingIdGroup { pattern: String },
    /// The invoice prefix is empty or not letters and digits.
    #[error("[extract] invoice_prefix `{prefix}` must be letters and digits only")]
    InvalidPrefix { prefix: String },
}

impl ExtractError {
    /// Whether retrying could help: only a rules file that could not be read.
    pub fn is_transient(&self) -> bool {
        matches!(self, ExtractError::ReadRules { .. })
    }
}

/// Everything extraction needs, compiled once and shared by every message.
#[derive(Debug, Clone)]
pub struct Extractor {
    order_refs: OrderRefFinder,
    generations: GenerationFinder,
    intent: IntentRules,
    auth: AuthRules,
}

/// The text of the intent rules `config` names: the file's, or the shipped
/// rules.
pub fn rules_text(config: &ExtractConfig) -> Result<String, std::io::Error> {
    match &config.rules_file {
        Some(path) => std::fs::read_to_string(path),
        None => Ok(intent::BUILT_IN.to_owned()),
    }
}

impl Extractor {
    /// Compiles the configured patterns and loads the intent rules (the
    /// built-in file, or `config.rules_file`).
    pub fn new(config: &ExtractConfig, auth: &SenderAuthConfig) -> Result<Self, ExtractError> {
        let intent = match &config.rules_file {
            Some(path) => IntentRules::from_file(path)?,
            None => IntentRules::built_in()?,
        };
        Ok(Extractor {
            order_refs: OrderRefFinder::new(&config.invoice_prefix)?,
            generations: GenerationFinder::new(
                &config.generation_id_pattern,
                &config.result_link_patterns,
            )?,
            intent,
            auth: AuthRules::new(auth),
        })
    }

    /// The facts of `email`, received by our server at `received_at`,
    /// without an own verification (in `verify` mode nobody is then
    /// authenticated).
    pub fn extract(&self, email: &ParsedEmail, received_at: DateTime<Utc>) -> MessageFacts {
        self.extract_verified(email, received_at, None)
    }

    /// The facts of `email`, with the own sender verification the pipeline
    /// did before extraction (`verify::SenderVerifier`).
    pub fn extract_verified(
        &self,
        email: &ParsedEmail,
        received_at: DateTime<Utc>,
        verified: Option<&Verification>,
    ) -> MessageFacts {
        let scan = Scan::new(email);
        let intent = self.intent(&scan);
        let result_link = self.generations.has_result_link(scan.own());
        MessageFacts {
            message_id: email.message_id.clone(),
            from: email
                .from
                .as_ref()
                .map(|f| f.address.clone())
                .unwrap_or_default(),
            from_name: email.from.as_ref().and_then(|f| f.name.clone()),
            subject: email.subject.clone(),
            received_at,
            language: language_of(&scan),
            order_refs: self.order_refs.find(scan.everything()),
            generation_refs: self.generations.ids(scan.everything()),
            evidence: evidence::evidence(&email.attachments, result_link),
            category: intent.category,
            flags: intent.flags,
            auth: sender_auth(email, &self.auth, verified),
            auto: None,
        }
    }

    /// The intent of a message's subject and fresh text, with scores.
    pub fn classify(&self, subject: &str, fresh: &str) -> Intent {
        self.intent
            .classify(&fold_text(&format!("{subject} | {fresh}")))
    }

    fn intent(&self, scan: &Scan<'_>) -> Intent {
        self.classify(scan.subject, &scan.fresh)
    }
}

/// The language of the fresh text, or of the subject when nothing is fresh.
fn language_of(scan: &Scan<'_>) -> crate::domain::Language {
    let source = if scan.fresh.trim().is_empty() {
        scan.subject
    } else {
        scan.fresh.as_str()
    };
    language::detect(&fold_text(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;
    use crate::parse::parse;

    const MINI_RULES: &str = r#"
category_priority = ["content_violation", "moderation_block", "failed_generation", "broken_anatomy", "no_resemblance", "wrong_style", "cash_refund", "subjective"]
[[rules]]
target = "cash_refund"
lang = "en"
weight = 2
patterns = ["payback"]
"#;

    fn rules_file(content: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        file
    }

    #[test]
    fn a_configured_rules_file_replaces_the_built_in_rules() {
        let file = rules_file(MINI_RULES);
        let config = ExtractConfig {
            rules_file: Some(file.path().to_owned()),
            ..ExtractConfig::default()
        };
        let extractor = Extractor::new(&config, &SenderAuthConfig::default()).unwrap();
        assert_eq!(
            extractor.classify("payback", "").category,
            Category::CashRefund
        );
        assert_eq!(
            extractor.classify("refund my order", "").category,
            Category::Other
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_a_clear_error() {
        let broken = rules_file("category_priority = [\"cash_refund\"\n");
        let broken_path = broken.path().display().to_string();
        let cases: Vec<(ExtractConfig, String)> = vec![
            (
                ExtractConfig {
                    rules_file: Some(broken.path().to_owned()),
                    ..ExtractConfig::default()
                },
                broken_path,
            ),
            (
                ExtractConfig {
                    invoice_prefix: "AN-UMI".into(),
                    ..ExtractConfig::default()
                },
                "invoice_prefix".into(),
            ),
            (
                ExtractConfig {
                    result_link_patterns: vec!["https://anumi.app/r/\\w+".into()],
                    ..ExtractConfig::default()
                },
                "named group `id`".into(),
            ),
        ];
        for (config, needle) in cases {
            let err = Extractor::new(&config, &SenderAuthConfig::default()).unwrap_err();
            assert!(err.to_string().contains(&needle), "{needle:?} not in {err}");
        }
    }

    #[test]
    fn facts_carry_the_sender_and_leave_screening_to_the_pipeline() {
        let extractor =
            Extractor::new(&ExtractConfig::default(), &SenderAuthConfig::default()).unwrap();
        let raw = "Message-ID: <m1@example.com>\r\nFrom: \"Ann\" <ANN@Example.com>\r\n\
                   Subject: refund ANUMI-0009\r\nAuto-Submitted: auto-replied\r\n\r\n\
                   Please refund my order.\r\n> old ANUMI-0001 chargeback\r\n";
        let email = parse(raw.as_bytes()).unwrap();
        let received = chrono::Utc::now();
        let facts = extractor.extract(&email, received);
        assert_eq!(facts.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(facts.from, "ann@example.com");
        assert_eq!(facts.from_name.as_deref(), Some("Ann"));
        assert_eq!(facts.received_at, received);
        assert_eq!(facts.category, Category::CashRefund);
        assert!(
            facts.flags.is_empty(),
            "quoted chargeback counted: {:?}",
            facts.flags
        );
        assert_eq!(
            facts.order_refs,
            vec![
                crate::domain::OrderRef::Invoice("ANUMI-0009".into()),
                crate::domain::OrderRef::Invoice("ANUMI-0001".into())
            ]
        );
        assert_eq!(facts.auto, None);
        assert!(!facts.auth.dmarc_pass);
    }
}
