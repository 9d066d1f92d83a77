//! Ingest: the first stage. Takes raw messages from a mailbox (a Maildir
//! folder, or IMAP) and stores them durably with their receipt time before
//! anything else happens; never decides anything.
//!
//! Every message is redacted (Polar `customer_session_token`s) before it is
//! stored or logged, capped at the configured size, and deduplicated by
//! Message-ID and by content hash: the same message delivered twice is
//! stored once. Fails only on infrastructure errors (database, file system);
//! a message that is not even mail is still stored, for the pipeline to
//! record as a case.
//!
//! [`archive`] reads archived mail (an mbox file, a Maildir, an IMAP
//! folder) for `refundd replay`: read-only, it stores and changes nothing.

pub mod archive;
pub mod imap;
pub mod maildir;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::parse;
use crate::store::{Inserted, NewMessage, Store, StoreError};

/// The default size limit (25 MiB) for `[ingest] max_message_bytes` and
/// `[imap] max_message_bytes`: a larger message is not read whole, only its
/// header is kept (see [`RawMessage::into_kept_bytes`]).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;

/// Why a message could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read message {source_name}: {source}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot store message {source_name}")]
    Store {
        source_name: String,
        #[source]
        source: StoreError,
    },
}

impl IngestError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Read { .. } => true,
            IngestError::Store { source, .. } => source.is_transient(),
        }
    }
}

/// One raw message as the mailbox gave it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Where it came from, for the record (`maildir:new/…`, `imap:…`).
    pub source: String,
    pub bytes: Vec<u8>,
    /// When our mail server received it: the policy's clock.
    pub received_at: DateTime<Utc>,
    /// The size the mailbox reported, when larger than what was read.
    pub full_size: Option<u64>,
}

impl RawMessage {
    /// What ingest keeps of the message: its bytes, or, when it was over the
    /// size limit (`full_size` is set), a stub of its header marked with
    /// [`TRUNCATED_HEADER`] that the pipeline sends to review.
    pub fn into_kept_bytes(self) -> Vec<u8> {
        match self.full_size {
            Some(size) => truncated_stub(&self.bytes, size),
            None => self.bytes,
        }
    }
}

/// Redacts, hashes and stores one message; a message seen before (same
/// Message-ID or same bytes) is reported as a duplicate, not stored again.
pub async fn store_message(store: &Store, raw: RawMessage) -> Result<Inserted, IngestError> {
    let mut stored = store_messages(store, vec![raw]).await?;
    stored.pop().ok_or_else(|| IngestError::Store {
        source_name: String::new(),
        source: StoreError::Conflict {
            what: "message",
            id: String::new(),
            detail: "the insert reported nothing".into(),
        },
    })
}

/// [`store_message`] for several messages in one transaction (a chunk of a
/// mailbox pass: one commit instead of one per message); the results are
/// in the order given. The raw messages are consumed: their bytes are held
/// once.
pub async fn store_messages(
    store: &Store,
    raws: Vec<RawMessage>,
) -> Result<Vec<Inserted>, IngestError> {
    let sources: Vec<String> = raws.iter().map(|raw| raw.source.clone()).collect();
    let messages: Vec<NewMessage> = raws.into_iter().map(prepare).collect();
    store
        .insert_messages(&messages)
        .await
        .map_err(|err| IngestError::Store {
            source_name: sources.join(", "),
            source: err,
        })
}

/// What is stored of a raw message: redacted bytes, their hash, the
/// Message-ID from the header.
fn prepare(raw: RawMessage) -> NewMessage {
    let source = raw.source.clone();
    let received_at = raw.received_at;
    let kept = raw.into_kept_bytes();
    let redacted = match parse::redact_secrets(&kept) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(redacted) => Some(redacted),
    };
    // Most mail holds no secret: keep the bytes read, without a copy.
    let bytes = redacted.unwrap_or(kept);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let message_id = message_id_of(&bytes);
    NewMessage {
        message_id,
        sha256,
        raw: bytes,
        received_at,
        source,
    }
}

/// The `Message-ID` of raw bytes, without angle brackets, from the headers
/// alone (the body is not parsed here).
fn message_id_of(bytes: &[u8]) -> Option<String> {
    let headers = mail_parser::MessageParser::new().parse_headers(bytes)?;
    headers
        .message_id()
        .map(str::to_owned)
        .filter(|id| !id.is_empty())
}

/// The header a message over the size limit is stored with, so that the
/// pipeline sends it to review. Added by us on top of the message's own
/// header; a sender who writes it themselves only earns a human look.
pub const TRUNCATED_HEADER: &str = "X-Refundd-Truncated";

/// A message too large to download whole, as stored: our marker header,
/// the message's own header section (what was read of it), and a body
/// saying what happened. Nothing of the oversized body is kept.
fn truncated_stub(bytes: &[u8], full_size: u64) -> Vec<u8> {
    let header_end = find_header_end(bytes).unwrap_or(bytes.len());
    let mut stub = format!("{TRUNCATED_HEADER}: {full_size}\r\n").into_bytes();
    stub.extend_from_slice(&bytes[..header_end]);
    stub.extend_from_slice(
        format!("\r\n\r\n[refundd: this message is {full_size} bytes, over the size limit; its body was not downloaded]\r\n")
            .as_bytes(),
    );
    stub
}

/// Where the header section ends (before the blank line), if it does.
fn find_header_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_message_keeps_its_header_and_loses_its_body() {
        let raw = b"From: a@example.com\r\nSubject: big\r\n\r\nAAAAAAAAAAAAAAAA";
        let stub = String::from_utf8(truncated_stub(raw, 30_000_000)).unwrap();
        assert!(stub.starts_with(
            "X-Refundd-Truncated: 30000000\r\nFrom: a@example.com\r\nSubject: big\r\n\r\n"
        ));
        assert!(!stub.contains("AAAA"));
        assert!(stub.contains("30000000 bytes"));
    }

    #[test]
    fn message_ids_are_read_from_the_header_alone() {
        assert_eq!(
            message_id_of(b"Message-ID: <abc@x>\r\n\r\nbody").as_deref(),
            Some("abc@x")
        );
        assert_eq!(message_id_of(b"Subject: none\r\n\r\nbody"), None);
    }
}
