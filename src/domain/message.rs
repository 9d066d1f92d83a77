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

/// The sender authentication verdict (RFC 8601), as far as we trust it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderAuth {
    /// DMARC `pass` in the topmost `Authentication-Results` header whose
    /// authserv-id is configured as trusted.
    pub dmarc_pass: bool,
    /// The trusted authserv-id that vouched, if any header was trusted.
    pub authserv_id: Option<String>,
    /// The DMARC result that header reported (`pass`, `fail`, `none`, …).
    pub dmarc_result: Option<String>,
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
