//! Replay: decide mail again — with the configuration in force, or with a
//! candidate — and say what would change, with no side effects.
//!
//! Takes the store, the settings in force, an optional candidate
//! ([`validate_candidate`]: of a whole config file only `[policy]`,
//! `[extract]` with its intent rules, and `[sender_auth]` count) and a
//! [`Source`]: stored mail (by receipt time and case), or an archive
//! never processed with a ledger file ([`archive_source`],
//! [`maildir_messages`]). Gives a [`ReplayReport`] (the `--json`
//! contract, see [`report`]) and its terminal table, CSV and HTML forms.
//!
//! Stored mail is decided again from its engine decisions
//! (`engine_decisions`): a `policy` decision on the message alone, a
//! `case` decision on the facts of the case up to that message (the
//! pipeline's own [`FactsReader`](crate::pipeline::FactsReader), so
//! the two never differ), at the stored `decided_at`, with the ledger as
//! it was ([`ledger`]: as of the message's receipt, without what refundd
//! did because of that case). A `screen` decision was not the policy's
//! and is not replayed. With the configuration in force, every stored
//! decision made under the same fingerprint must come out the same
//! (outcome, category, flags, actions); one that does not is drift.
//! Decisions made under another fingerprint are listed per fingerprint,
//! never compared.
//!
//! NEVER writes: no replies, payments, ledger rows, cases, events or
//! decisions. Stored mail is only read from the store (keyset-paginated
//! batches, the next read while one is decided, parsing and deciding on
//! the blocking pool across the cores); an archive is decided in a store
//! of its own in memory and the configured store is not touched.
//!
//! Fails with [`ReplayError`]: the store (transient or not), a candidate
//! or configuration that cannot decide, an archive or ledger file that
//! cannot be read.
//!
//! Limits of "the ledger as it was" (the store keeps no history of some
//! rows): a wallet's status and a chargeback's status are as they are
//! now; a generation's `refunded` flag and `refunded_at` are as last
//! imported (the import overwrites them), and a flag set without
//! `refunded_at` by the Anumi app counts as set before the message; rows
//! removed from the ledger are gone; a refund of any date counts (the
//! policy's rule) unless this case's own payment produced it, so a
//! refund another case or Polar made after the message counts too;
//! another case's credit written between the message's receipt and its
//! decision was seen then but is left out now. `[polar]` guard rails
//! (`auto_refunds`, amount limits, dry run) and shadow mode act after the
//! engine and are not part of what is replayed.

pub mod archive;
pub mod candidate;
pub mod csv;
mod engine;
pub mod html;
pub mod ledger;
pub mod report;
mod stored;
pub mod text;

use std::path::PathBuf;

pub use archive::{Archive, ArchiveItem, MaildirItem, archive_source, maildir_messages};
pub use candidate::{CandidateError, deciding_settings, validate_candidate};
pub use csv::to_csv;
pub use html::to_html;
pub use report::ReplayReport;
pub use text::to_text;

use crate::config::Settings;
use crate::pipeline::PipelineError;
use crate::progress::Progress;
use crate::store::{ReplayScope, Store, StoreError};
use candidate::Deciding;
use report::SourceKind;

/// What a replay decides again.
#[derive(Debug)]
pub enum Source {
    /// Stored mail: the engine decisions of messages received in
    /// `[since, until)`, of one case when given.
    Stored(ReplayScope),
    /// An archive never processed, with its ledger ([`archive_source`]).
    Archive(Archive),
}

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The database failed.
    #[error("database error while replaying")]
    Store(#[source] StoreError),
    /// The configuration in force cannot decide (its rules file…).
    #[error("the configuration in force cannot decide")]
    InForce(#[source] CandidateError),
    /// The candidate cannot decide.
    #[error("the candidate configuration cannot decide")]
    Candidate(#[source] CandidateError),
    /// A message of the archive could not be read.
    #[error("cannot read a message of the archive")]
    Archive(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The archive's ledger file could not be opened.
    #[error("cannot read the ledger file {}", path.display())]
    Ledger {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive could not be decided as the desk would.
    #[error("cannot decide the archive")]
    Pipeline(#[source] PipelineError),
    /// A worker deciding a batch failed (a bug).
    #[error("a replay worker failed")]
    Worker(#[source] tokio::task::JoinError),
}

impl ReplayError {
    /// Whether trying again later can help (a busy or unreachable
    /// database, an archive read that may succeed next time).
    pub fn is_transient(&self) -> bool {
        match self {
            ReplayError::Store(e) => e.is_transient(),
            ReplayError::Pipeline(e) => e.is_transient(),
            ReplayError::Archive(_) | ReplayError::Ledger { .. } => true,
            _ => false,
        }
    }
}

/// Decides `source` again with `in_force` and, when given, `candidate`
/// (its deciding parts only), reporting on `progress`. Reads `store`
/// (stored mail) and writes nothing anywhere.
pub async fn replay(
    store: &Store,
    in_force: &Settings,
    candidate: Option<&Settings>,
    source: Source,
    progress: &dyn Progress,
) -> Result<ReplayReport, ReplayError> {
    let in_force_deciding = Deciding::new(in_force, in_force).map_err(ReplayError::InForce)?;
    let candidate = candidate
        .map(|c| Deciding::new(in_force, c))
        .transpose()
        .map_err(ReplayError::Candidate)?;
    match source {
        Source::Stored(scope) => {
            let collector = stored::replay_stored(
                store,
                in_force_deciding,
                candidate,
                &scope,
                SourceKind::Stored,
                progress,
            )
            .await?;
            stored::finish(store, collector).await
        }
        Source::Archive(archive) => {
            archive::replay_archive(in_force, in_force_deciding, candidate, archive, progress).await
        }
    }
}
