//! Facts extracted from one customer email: what the policy engine reads of
//! the message. Produced by `extract`, never by the policy itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::{Category, Flag};

/// A reference to an order, in one of the forms a customer has it.
/// Values are normalised: UUIDs lowercase, invoice and receipt numbers
/// uppercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum OrderRef {
    /// Polar's order UUID (bare, or from a portal link).
    Uuid(String),
    /// `{PREFIX}-{8 letters}-{NNNN}` or `{PREFIX}-{NNNN}`.
    Invoice(String),
    /// `RCPT-{8 letters}-{NNNN}`.
    Receipt(String),
}

impl OrderRef {
    /// The normalised text of the reference.
    pub fn value(&self) -> &str {
        match self {
            OrderRef::Uuid(v) | OrderRef::Invoice(v) | OrderRef::Receipt(v) => v,
        }
    }
}

/// Languages we answer in; English is the fallback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    En,
    De,
    Fr,
    Es,
}

impl Language {
    /// The ISO 639-1 code.
    pub const fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
            Language::Es => "es",
        }
    }
}

/// What the customer sent to support a courtesy request (P3, P5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// An image is attached.
    pub image_attachment: bool,
    /// A link to a generation result is in the text.
    pub result_link: bool,
}

impl Evidence {
    /// Whether the result is attached or linked.
    pub const fn present(self) -> bool {
        self.image_attachment || self.result_link
    }
}

/// The sender authentication verdict, as far as we trust it: from a
/// trusted `Authentication-Results` header (RFC 8601), a provider preset,
/// or refundd's own verification (DKIM, SPF, DMARC, ARC), by the
/// `[sender_auth] mode` rule (see `extract::auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderAuth {
    /// The sender is authenticated: a DMARC `pass` for the `From:` domain
    /// (or a trusted ARC sealer's sealed `pass`) by the configured rule.
    /// Only this lets money move.
    pub dmarc_pass: bool,
    /// The trusted authserv-id whose header was read, if any.
    pub authserv_id: Option<String>,
    /// The DMARC result that decided (`pass`, `fail`, `none`,
    /// `temperror`, …): the trusted header's, else refundd's own.
    pub dmarc_result: Option<String>,
    /// The evidence the verdict rests on (`None` when nothing passed).
    #[serde(default)]
    pub used: Option<AuthSource>,
    /// Which trusted header was read (trusted id or provider preset).
    #[serde(default)]
    pub header: Option<AuthSource>,
    /// The DMARC result that header reported.
    #[serde(default)]
    pub header_dmarc: Option<String>,
    /// refundd's own verification, when `mode` is `verify` or `either`.
    #[serde(default)]
    pub verified: Option<Verification>,
    /// Several `From:` headers or several addresses in one: never
    /// authenticated, whatever any header or signature says.
    #[serde(default)]
    pub from_ambiguous: bool,
}

impl SenderAuth {
    /// One line for traces and the console: what was checked and what
    /// decided, e.g. `dkim=pass (example.com); spf=none; dmarc=pass; arc=none; used=dmarc`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(source) = self.header {
            parts.push(format!(
                "header {}={} ({})",
                source.as_str(),
                self.header_dmarc.as_deref().unwrap_or("none"),
                self.authserv_id.as_deref().unwrap_or("no authserv-id"),
            ));
        }
        if let Some(v) = &self.verified {
            parts.push(v.summary());
        }
        if self.from_ambiguous {
            parts.push("several From addresses".into());
        }
        parts.push(format!(
            "used={}",
            self.used.map_or("nothing", AuthSource::as_str)
        ));
        parts.join("; ")
    }
}

/// Where a sender-authentication verdict came from. Stable names (traces,
/// JSON, the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthSource {
    /// `Authentication-Results` of a configured trusted authserv-id.
    TrustedHeader,
    /// Microsoft 365's `Authentication-Results` above its own edge `Received`.
    Microsoft365,
    /// Google's (`mx.google.com`) `Authentication-Results` above its edge `Received`.
    Google,
    /// refundd's own DMARC evaluation (an aligned DKIM signature or SPF).
    Dmarc,
    /// A trusted ARC sealer's recorded DMARC `pass` over a valid chain.
    Arc,
}

impl AuthSource {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthSource::TrustedHeader => "trusted_header",
            AuthSource::Microsoft365 => "microsoft365",
            AuthSource::Google => "google",
            AuthSource::Dmarc => "dmarc",
            AuthSource::Arc => "arc",
        }
    }
}

/// The result of one authentication mechanism (RFC 8601 §2.7 vocabulary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthResult {
    Pass,
    Fail,
    Softfail,
    Neutral,
    #[default]
    None,
    /// A DNS error or timeout: try later; never a pass.
    Temperror,
    Permerror,
}

impl AuthResult {
    /// The RFC 8601 word.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Softfail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::Temperror => "temperror",
            AuthResult::Permerror => "permerror",
        }
    }
}

/// One DKIM signature as refundd checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimCheck {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// `rsa-sha256`, `ed25519-sha256`, …
    pub algorithm: String,
    pub result: AuthResult,
    /// Why it did not pass (or why a pass was not counted), in words.
    pub reason: Option<String>,
}

/// refundd's own verification of one message (`[sender_auth] mode =
/// "verify"` or `"either"`), recorded with the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Every DKIM signature, in header order.
    pub dkim: Vec<DkimCheck>,
    /// SPF of the envelope sender, when our own `Received` header gave
    /// the client IP; `none` otherwise.
    pub spf: AuthResult,
    /// The domain SPF was checked for.
    pub spf_domain: Option<String>,
    /// The client IP our receiving server recorded.
    pub client_ip: Option<String>,
    /// DMARC for the `From:` domain.
    pub dmarc: AuthResult,
    /// The `From:` domain DMARC was evaluated for.
    pub dmarc_domain: Option<String>,
    /// The published policy (`none`, `quarantine`, `reject`) that applied.
    pub dmarc_policy: Option<String>,
    /// What aligned: `dkim`, `spf`, or nothing.
    pub aligned_by: Option<String>,
    /// The ARC chain (RFC 8617): `pass`, `fail`, or `none` without one.
    pub arc: AuthResult,
    /// The sealer (`d=` of the ARC-Seal) whose results were read: the
    /// newest trusted one, else the newest.
    pub arc_sealer: Option<String>,
    /// Whether that sealer is configured as trusted.
    pub arc_trusted: bool,
    /// The DMARC result that sealer recorded (its `ARC-Authentication-Results`).
    pub arc_dmarc: Option<String>,
    /// The `header.from` domain that sealer recorded.
    pub arc_header_from: Option<String>,
    /// The per-message time budget ran out: whatever was unfinished is
    /// `temperror`.
    pub timed_out: bool,
}

impl Verification {
    /// One line: `dkim=pass (example.com), fail (x.test: body hash); spf=none; dmarc=pass; arc=none`.
    pub fn summary(&self) -> String {
        let dkim = if self.dkim.is_empty() {
            "none".to_owned()
        } else {
            self.dkim
                .iter()
                .map(|d| match &d.reason {
                    Some(r) => format!("{} ({}: {r})", d.result.as_str(), d.domain),
                    None => format!("{} ({})", d.result.as_str(), d.domain),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = format!(
            "dkim={dkim}; spf={}; dmarc={}",
            self.spf.as_str(),
            self.dmarc.as_str()
        );
        if let Some(by) = &self.aligned_by {
            line.push_str(&format!(" (aligned by {by})"));
        }
        line.push_str(&format!("; arc={}", self.arc.as_str()));
        if let Some(sealer) = &self.arc_sealer {
            line.push_str(&format!(
                " (sealer {sealer}{}, sealed dmarc={})",
                if self.arc_trusted {
                    ", trusted"
                } else {
                    ", not trusted"
                },
                self.arc_dmarc.as_deref().unwrap_or("none")
            ));
        }
        if self.timed_out {
            line.push_str("; time budget exceeded");
        }
        line
    }
}

/// Why a message is automatic mail that must never be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoKind {
    /// RFC 3834 auto-reply, vacation notice, list or bulk mail.
    AutoReply,
    /// A bounce / delivery status notification.
    Bounce,
    /// Our own mail coming back (a loop).
    Loop,
    /// A machine report: DMARC aggregate (RFC 7489 §7.2), TLS-RPT
    /// (RFC 8460) or abuse feedback (ARF, RFC 5965).
    Report,
}

/// The facts the policy reads of one customer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFacts {
    /// `Message-ID` without angle brackets, if the message had one.
    pub message_id: Option<String>,
    /// The sender's address (lowercased `From:` address).
    pub from: String,
    /// Display name of the sender, as written (untrusted text).
    pub from_name: Option<String>,
    pub subject: String,
    /// When our mail server received it (INTERNALDATE / Maildir mtime).
    pub received_at: DateTime<Utc>,
    pub language: Language,
    /// Order references found, in order of appearance, without repeats.
    pub order_refs: Vec<OrderRef>,
    /// Generation ids named (directly or through a result link).
    pub generation_refs: Vec<String>,
    pub evidence: Evidence,
    pub category: Category,
    /// Flags read from the text (`chargeback`, `statutory_rights`).
    pub flags: BTreeSet<Flag>,
    pub auth: SenderAuth,
    /// Set when the message is automatic mail (screened to `ignored`).
    pub auto: Option<AutoKind>,
}
