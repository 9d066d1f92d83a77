//! `[extract]` and `[sender_auth]` settings: how order references, result
//! links and intents are recognised, and whose authentication we trust.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How extraction recognises references in customer text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {
    /// Invoice number prefix configured at Polar (`{PREFIX}-…`), any case.
    pub invoice_prefix: String,
    /// A regex matching a generation id in text (e.g. `gen_8f3k2`).
    pub generation_id_pattern: String,
    /// Regexes matching links to a generation's result; each must have a
    /// named group `id` capturing the generation id.
    pub result_link_patterns: Vec<String>,
    /// An intent rules file (TOML) replacing the built-in one; operators
    /// edit it without recompiling. `None` uses the shipped
    /// `src/extract/intent_rules.toml` (embedded in the binary).
    pub rules_file: Option<PathBuf>,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            invoice_prefix: "ANUMI".into(),
            generation_id_pattern: r"\bgen_[A-Za-z0-9]{1,40}\b".into(),
            result_link_patterns: vec![
                r"https?://(?:[a-z0-9-]+\.)*anumi\.[a-z]{2,}/(?:r|results?|generations?|avatars?)/(?P<id>[A-Za-z0-9_-]{1,64})".into(),
            ],
            rules_file: None,
        }
    }
}

/// `[sender_auth]`: whose `Authentication-Results` count (RFC 8601).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderAuthConfig {
    /// authserv-ids of our own receiving servers. Headers naming any other
    /// id were possibly written by the sender and are ignored. Empty means
    /// no sender is ever verified (every money move goes to review).
    pub trusted_authserv_ids: Vec<String>,
}
