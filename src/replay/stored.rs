//! Replaying stored mail: every engine decision of a scope (receipt time,
//! case), read in keyset-paginated batches of [`BATCH`] — the next batch
//! is read while this one is decided — and decided again as it was
//! decided: alone (`policy`), or with the case's messages attached before
//! it (`case`), at the stored `decided_at`. A `screen` decision was not
//! the policy's and is counted as not replayed.
//!
//! Reads the store only. Fails with [`ReplayError`] on database errors.

use std::collections::HashMap;
use std::sync::Arc;

use super::ReplayError;
use super::candidate::Deciding;
use super::engine::{self, Job};
use super::report::{Collector, Fingerprints, ReplayReport, ReplayedInput, SourceKind};
use crate::progress::Progress;
use crate::store::{CaseId, DecidedMessage, DecisionBasis, ReplayScope, Store, ThreadMessage};

/// Stored decisions read and decided at a time.
pub const BATCH: i64 = 500;

struct Batch {
    rows: Vec<DecidedMessage>,
    threads: HashMap<CaseId, Vec<ThreadMessage>>,
}

/// Replays the stored decisions of `scope`.
pub(crate) async fn replay_stored(
    store: &Store,
    in_force: Deciding,
    candidate: Option<Deciding>,
    scope: &ReplayScope,
    kind: SourceKind,
    progress: &dyn Progress,
) -> Result<Collector, ReplayError> {
    let total = store
        .count_replay_decisions(scope)
        .await
        .map_err(ReplayError::Store)?;
    let total = u64::try_from(total).unwrap_or_default();
    let mut collector = Collector::new(
        kind,
        Fingerprints {
            in_force: in_force.fingerprint.clone(),
            candidate: candidate.as_ref().map(|c| c.fingerprint.clone()),
        },
    );
    let in_force = Arc::new(in_force);
    let candidate = candidate.map(Arc::new);
    let stored = kind == SourceKind::Stored;

    let mut done = 0u64;
    progress.begin("replay", Some(total));
    let mut next = tokio::spawn(fetch(store.clone(), scope.clone(), 0));
    loop {
        let batch = next.await.map_err(ReplayError::Worker)??;
        let Some(last) = batch.rows.last() else {
            break;
        };
        // The next batch is read while this one is decided.
        next = tokio::spawn(fetch(store.clone(), scope.clone(), last.decision_id));
        done += batch.rows.len() as u64;

        let mut jobs = Vec::with_capacity(batch.rows.len());
        for row in batch.rows {
            match row.basis {
                DecisionBasis::Screen => collector.not_replayed_screen(),
                DecisionBasis::Policy => jobs.push(Job { row, earlier: None }),
                DecisionBasis::Case => {
                    let earlier = batch
                        .threads
                        .get(&row.case_id)
                        .map(|thread| earlier_messages(thread, &row))
                        .unwrap_or_default();
                    jobs.push(Job {
                        row,
                        earlier: Some(earlier),
                    });
                }
            }
        }
        for redecided in engine::decide_batch(store, &in_force, candidate.as_ref(), jobs).await? {
            let row = &redecided.row;
            let Some(before) = &redecided.before else {
                collector.not_replayed_unreadable();
                continue;
            };
            collector.add(ReplayedInput {
                case: stored.then_some(row.case_id),
                message: stored.then_some(row.message),
                message_id: row.message_id.clone(),
                source: row.source.clone(),
                basis: row.basis,
                stored: &row.decision,
                stored_fingerprint: &row.fingerprint,
                before,
                after: redecided.after.as_ref(),
            });
        }
        progress.update(done);
    }
    progress.finish();
    Ok(collector)
}

/// The report of a replay, with what people decided on its cases.
pub(crate) async fn finish(
    store: &Store,
    collector: Collector,
) -> Result<ReplayReport, ReplayError> {
    let people = store
        .people_decisions(&collector.cases())
        .await
        .map_err(ReplayError::Store)?;
    Ok(collector.finish(&people))
}

/// The next batch after decision `after`, with the threads of its
/// follow-ups decided on their case's facts.
async fn fetch(store: Store, scope: ReplayScope, after: i64) -> Result<Batch, ReplayError> {
    let rows = store
        .replay_batch(&scope, after, BATCH)
        .await
        .map_err(ReplayError::Store)?;
    let mut cases: Vec<CaseId> = rows
        .iter()
        .filter(|r| r.basis == DecisionBasis::Case)
        .map(|r| r.case_id)
        .collect();
    cases.sort_unstable_by_key(|c| c.0);
    cases.dedup();
    let mut threads: HashMap<CaseId, Vec<ThreadMessage>> = HashMap::new();
    if !cases.is_empty() {
        for message in store
            .case_threads(&cases)
            .await
            .map_err(ReplayError::Store)?
        {
            threads.entry(message.case_id).or_default().push(message);
        }
    }
    Ok(Batch { rows, threads })
}

/// The case's messages as the pipeline found them when it decided `row`:
/// those attached before it (their engine decision came first; a message
/// stored before decisions were recorded counts by its row id), oldest
/// (by row id) first.
fn earlier_messages(
    thread: &[ThreadMessage],
    row: &DecidedMessage,
) -> Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)> {
    thread
        .iter()
        .filter(|m| m.message != row.message)
        .filter(|m| match m.decision_id {
            Some(decision) => decision < row.decision_id,
            None => m.message < row.message,
        })
        .map(|m| (m.raw.clone(), m.received_at))
        .collect()
}
