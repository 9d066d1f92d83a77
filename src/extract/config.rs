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

/// `[sender_auth]`: how refundd decides that a message really comes from
/// its `From:` address. Key names and values are a contract (operators'
/// files); see the README's "Sender authentication".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderAuthConfig {
    /// `headers` (default), `verify` or `either`; see [`SenderAuthMode`].
    pub mode: SenderAuthMode,
    /// authserv-ids of our own receiving servers. Headers naming any other
    /// id were possibly written by the sender and are ignored. Empty (and
    /// no provider) means no header is ever trusted.
    pub trusted_authserv_ids: Vec<String>,
    /// Mailbox providers whose own `Authentication-Results` are trusted,
    /// each recognised by its format and its position above the provider's
    /// edge `Received`: `microsoft365`, `google`.
    pub providers: Vec<Provider>,
    /// Host names our border MX servers (those that take mail from the
    /// internet, not later internal hops) write after `by` in `Received`.
    /// The topmost such header gives the client IP for SPF; and a
    /// trusted-id `Authentication-Results` then counts only above it
    /// (below it, the sender could have written it).
    pub received_by: Vec<String>,
    /// ARC sealers (the `d=` of `ARC-Seal`, e.g. `google.com`,
    /// `microsoft.com`) whose recorded DMARC `pass` counts for forwarded
    /// mail when the whole chain validates (`verify` / `either`).
    pub trusted_arc_sealers: Vec<String>,
    /// A DNS server (`IP:PORT`) to ask instead of the system's resolvers
    /// (`/etc/resolv.conf`): split-horizon setups and tests.
    pub resolver: Option<String>,
    /// The time budget for verifying one message, in milliseconds. What is
    /// unfinished then is `temperror` (review, never a pass).
    pub timeout_ms: u64,
    /// Parsed DNS answers kept (per record kind), each until its TTL ends.
    pub dns_cache_entries: usize,
}

impl Default for SenderAuthConfig {
    fn default() -> Self {
        SenderAuthConfig {
            mode: SenderAuthMode::Headers,
            trusted_authserv_ids: Vec::new(),
            providers: Vec::new(),
            received_by: Vec::new(),
            trusted_arc_sealers: Vec::new(),
            resolver: None,
            timeout_ms: 5000,
            dns_cache_entries: 10_000,
        }
    }
}

impl SenderAuthConfig {
    /// Checks what serde cannot: the resolver address and the budget.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(resolver) = &self.resolver
            && resolver.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!("resolver `{resolver}` is not IP:PORT"));
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be positive".into());
        }
        Ok(())
    }

    /// Whether refundd verifies messages itself (DNS lookups per message).
    pub fn verifies(&self) -> bool {
        self.mode != SenderAuthMode::Headers
    }
}

/// Which evidence authenticates a sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderAuthMode {
    /// Only a trusted `Authentication-Results` header (trusted ids and
    /// provider presets). No DNS lookups. The default.
    #[default]
    Headers,
    /// Only refundd's own DKIM / SPF / DMARC / ARC verification.
    Verify,
    /// Both: the sender is authenticated when the trusted header says
    /// `dmarc=pass` OR the own verification passes, unless the trusted
    /// header says `dmarc=fail` (a trusted fail always wins).
    Either,
}

/// A mailbox provider preset (`[sender_auth] providers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Microsoft 365 / Exchange Online: its `Authentication-Results` has no
    /// authserv-id; trusted only above the `Received` of its inbound edge
    /// (`by *.mail.protection.outlook.com`).
    #[serde(rename = "microsoft365")]
    Microsoft365,
    /// Gmail / Google Workspace: `Authentication-Results: mx.google.com`,
    /// trusted only above the `Received` written `by mx.google.com`.
    Google,
}
