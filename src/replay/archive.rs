//! Replaying an archive never processed: messages from any reader (a
//! Maildir now; mbox files and IMAP folders read by `ingest::archive`)
//! with a ledger file in the `ledger import` contract.
//!
//! Everything happens in a store of its own in memory
//! (`sqlite::memory:`, one database for the whole replay): the ledger is
//! imported there, the messages are stored there as ingest stores them
//! (redacted, deduplicated, oversized ones cut to their header), the
//! real pipeline decides them there with the configuration in force,
//! each at its receipt time, as the desk would have — cases, follow-ups
//! to its own questions, credits and pending refunds included — and then
//! that store is replayed like stored mail: `before` is the configuration
//! in force, `after` the candidate. The configured store is never opened
//! and the archive is only read (a Maildir's files stay where they are).
//!
//! Limits: a follow-up to one of the desk's real replies finds no case in
//! memory and is decided alone; nothing is paid, so refunds the payment
//! stage would have settled stay pending.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::candidate::Deciding;
use super::report::{LedgerRejected, ReplayReport, SourceKind};
use super::{ReplayError, Source, stored};
use crate::config::Settings;
use crate::ingest::archive::ArchiveError;
use crate::ingest::{self, IngestError, RawMessage};
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::store::{ReplayScope, Store, import};

/// One archived message: its bytes, when our server received it, and
/// where it came from — or why it could not be read.
pub type ArchiveItem =
    Result<(Vec<u8>, DateTime<Utc>, String), Box<dyn std::error::Error + Send + Sync>>;

/// One message read from a Maildir, or why it could not be read.
pub type MaildirItem = Result<(Vec<u8>, DateTime<Utc>, String), ArchiveError>;

/// An archive never processed, with the ledger to decide it with.
pub struct Archive {
    messages: Box<dyn Iterator<Item = ArchiveItem> + Send>,
    ledger: PathBuf,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

/// The replay source for archived messages — any iterator of `(bytes,
/// received_at, source)` — decided with the ledger file `ledger` (JSON
/// Lines, as `refundd ledger import` reads it). `--maildir` uses it with
/// [`maildir_messages`]; mbox files and IMAP folders plug in the same way.
pub fn archive_source<I, E>(messages: I, ledger: impl Into<PathBuf>) -> Source
where
    I: IntoIterator<Item = Result<(Vec<u8>, DateTime<Utc>, String), E>>,
    I::IntoIter: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Source::Archive(Archive {
        messages: Box::new(messages.into_iter().map(|item| item.map_err(Into::into))),
        ledger: ledger.into(),
    })
}

/// The messages of a Maildir (`new/` and `cur/`, oldest receipt first,
/// the receipt time being each file's modification time), read only:
/// nothing is created, moved or flagged.
pub fn maildir_messages(
    dir: &Path,
) -> Result<impl Iterator<Item = MaildirItem> + Send + 'static, ArchiveError> {
    Ok(crate::ingest::archive::read_maildir(dir)?
        .map(|item| item.map(|m| (m.bytes, m.received_at, m.source))))
}

/// Replays `archive` in a store of its own in memory.
pub(crate) async fn replay_archive(
    in_force: &Settings,
    in_force_deciding: Deciding,
    candidate: Option<Deciding>,
    archive: Archive,
    progress: &dyn Progress,
) -> Result<ReplayReport, ReplayError> {
    let memory = Store::connect("sqlite::memory:")
        .await
        .map_err(ReplayError::Store)?;
    let file = std::fs::File::open(&archive.ledger).map_err(|source| ReplayError::Ledger {
        path: archive.ledger.clone(),
        source,
    })?;
    let imported = import::import_jsonl(&memory, std::io::BufReader::new(file), |_| {})
        .await
        .map_err(ReplayError::Store)?;

    progress.begin("reading the archive", None);
    let limit = in_force.ingest.max_message_bytes;
    let mut read = 0u64;
    for item in archive.messages {
        let (mut bytes, received_at, source) = item.map_err(ReplayError::Archive)?;
        // As ingest reads a mailbox: at most `max_message_bytes` of a
        // message, the case of an oversized one goes to a person.
        let full_size = (bytes.len() as u64 > limit).then_some(bytes.len() as u64);
        if full_size.is_some() {
            bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let raw = RawMessage {
            source,
            bytes,
            received_at,
            full_size,
        };
        ingest::store_message(&memory, raw)
            .await
            .map_err(|e| match e {
                IngestError::Store { source, .. } => ReplayError::Store(source),
                other => ReplayError::Archive(Box::new(other)),
            })?;
        read += 1;
        progress.update(read);
    }
    progress.finish();

    progress.begin("deciding the archive as the desk would", Some(read));
    let pipeline =
        Pipeline::new(memory.clone(), Arc::new(in_force.clone())).map_err(ReplayError::Pipeline)?;
    pipeline
        .process_pending_at(|message| message.received_at, progress)
        .await
        .map_err(ReplayError::Pipeline)?;
    progress.finish();

    let mut collector = stored::replay_stored(
        &memory,
        in_force_deciding,
        candidate,
        &ReplayScope::default(),
        SourceKind::Archive,
        progress,
    )
    .await?;
    collector.ledger_rejected(
        imported
            .rejected
            .into_iter()
            .map(|r| LedgerRejected {
                line: r.line_no,
                reason: r.reason,
            })
            .collect(),
    );
    let report = stored::finish(&memory, collector).await;
    memory.close().await;
    report
}
