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

pub mod imap;
pub mod maildir;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::parse;
use crate::store::{Inserted, NewMessage, Store, StoreError};

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

/// Redacts, hashes and stores one message; a message seen before (same
/// Message-ID or same bytes) is reported as a duplicate, not stored again.
pub async fn store_message(store: &Store, raw: RawMessage) -> Result<Inserted, IngestError> {
    let bytes = parse::redact_secrets(&raw.bytes).into_owned();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let message_id = message_id_of(&bytes);
    let new = NewMessage {
        message_id,
        sha256,
        raw: bytes,
        received_at: raw.received_at,
        source: raw.source.clone(),
    };
    store
        .insert_message(&new)
        .await
        .map_err(|source| IngestError::Store { source_name: raw.source, source })
}

/// The `Message-ID` of raw bytes, without angle brackets, from the headers
/// alone (the body is not parsed here).
fn message_id_of(bytes: &[u8]) -> Option<String> {
    let headers = mail_parser::MessageParser::new().parse_headers(bytes)?;
    headers.message_id().map(str::to_owned).filter(|id| !id.is_empty())
}
