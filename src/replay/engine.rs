//! Deciding a batch of stored messages again, on every core.
//!
//! Takes a batch of stored decisions with their messages (and, for a
//! follow-up decided with its case, the case's earlier messages); gives,
//! per message, the decision of the configuration in force and of the
//! candidate. Three steps: reading the facts (parse, extract, screen;
//! once when both configurations read alike) on the blocking pool across
//! the cores; ONE read of the ledger for every sender and cited order of
//! the batch; deciding ([`policy::decide`]) with the ledger as it was
//! ([`super::ledger`]) on the blocking pool again. Reads the store, never
//! writes it.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

use super::ReplayError;
use super::candidate::Deciding;
use super::ledger::{Moment, ledger_as_it_was};
use crate::domain::{Decision, MessageFacts};
use crate::policy;
use crate::store::{DecidedMessage, OrderMatch, Store, WalletHistory, address_key};

/// One stored message to decide again.
#[derive(Debug)]
pub(crate) struct Job {
    /// The stored decision and its message (with its bytes).
    pub row: DecidedMessage,
    /// For a decision on the case's facts: the case's messages attached
    /// before this one (bytes, receipt time), oldest first.
    pub earlier: Option<Vec<(Vec<u8>, DateTime<Utc>)>>,
}

/// One stored message decided again.
#[derive(Debug)]
pub(crate) struct Redecided {
    /// The stored decision and its message (bytes dropped).
    pub row: DecidedMessage,
    /// The configuration in force's decision; `None` when the bytes no
    /// longer read as mail.
    pub before: Option<Decision>,
    /// The candidate's decision, when one is compared.
    pub after: Option<Decision>,
}

struct Read {
    row: DecidedMessage,
    before: Option<MessageFacts>,
    /// The candidate's reading, when it reads messages otherwise.
    after: Option<MessageFacts>,
}

/// Decides `jobs` with `in_force` and, when given, `candidate`.
pub(crate) async fn decide_batch(
    store: &Store,
    in_force: &Arc<Deciding>,
    candidate: Option<&Arc<Deciding>>,
    jobs: Vec<Job>,
) -> Result<Vec<Redecided>, ReplayError> {
    let reads = {
        let in_force = in_force.clone();
        let candidate = candidate.cloned();
        on_cores(jobs, move |job| read(job, &in_force, candidate.as_deref())).await?
    };

    let mut emails = Vec::new();
    let mut refs = Vec::new();
    for facts in reads
        .iter()
        .flat_map(|r| r.before.iter().chain(r.after.iter()))
    {
        emails.push(facts.from.clone());
        refs.extend(facts.order_refs.iter().cloned());
    }
    let histories = Arc::new(
        store
            .wallet_histories(&emails)
            .await
            .map_err(ReplayError::Store)?,
    );
    let matches = Arc::new(if refs.is_empty() {
        Vec::new()
    } else {
        store
            .order_matches(&refs)
            .await
            .map_err(ReplayError::Store)?
    });

    let in_force = in_force.clone();
    let candidate = candidate.cloned();
    on_cores(reads, move |read| {
        let moment = Moment {
            case: read.row.case_id,
            received_at: read.row.received_at,
            decided_at: read.row.decided_at,
        };
        let decide = |facts: &MessageFacts, deciding: &Deciding| {
            decide_as_it_was(facts, deciding, &histories, &matches, &moment)
        };
        let before = read.before.as_ref().map(|f| decide(f, &in_force));
        let after = candidate.as_deref().and_then(|c| {
            read.after
                .as_ref()
                .or(read.before.as_ref())
                .map(|f| decide(f, c))
        });
        Redecided {
            row: read.row,
            before,
            after,
        }
    })
    .await
}

/// The facts of one job, as each configuration reads them.
fn read(job: Job, in_force: &Deciding, candidate: Option<&Deciding>) -> Read {
    let Job { mut row, earlier } = job;
    let raw = row.raw.take().unwrap_or_default();
    let facts_of = |deciding: &Deciding| -> Option<MessageFacts> {
        // The sender as refundd verified it when it decided (DNS answers
        // and keys of today may differ); headers-only configurations
        // ignore it.
        let (_, latest) = deciding
            .reader
            .message_verified(&raw, row.received_at, row.verification.as_ref())
            .ok()?;
        Some(match &earlier {
            Some(earlier) => deciding.reader.case(
                earlier.iter().map(|(raw, at)| (raw.as_slice(), *at)),
                latest,
            ),
            None => latest,
        })
    };
    let before = facts_of(in_force);
    let after = candidate
        .filter(|c| c.reading_key != in_force.reading_key)
        .and_then(facts_of);
    Read { row, before, after }
}

/// One decision with the ledger as it was, as the pipeline decides: the
/// windows to the facts' receipt time (a case's first message), `now` =
/// when the stored decision was made.
fn decide_as_it_was(
    facts: &MessageFacts,
    deciding: &Deciding,
    histories: &HashMap<String, WalletHistory>,
    matches: &[OrderMatch],
    at: &Moment,
) -> Decision {
    let wallet = histories.get(&address_key(&facts.from));
    let ledger = ledger_as_it_was(wallet, matches, &facts.order_refs, at);
    policy::decide(
        facts,
        &ledger,
        &deciding.policy,
        facts.received_at,
        at.decided_at,
    )
}

/// How many blocking tasks a batch is split into: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `work` over `items` on the blocking pool, one chunk per core, in order.
async fn on_cores<T, R>(
    items: Vec<T>,
    work: impl Fn(T) -> R + Send + Sync + 'static,
) -> Result<Vec<R>, ReplayError>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let work = Arc::new(work);
    let total = items.len();
    let per = total.div_ceil(cores().max(1)).max(1);
    let mut items = items.into_iter();
    let mut handles = Vec::new();
    loop {
        let chunk: Vec<T> = items.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let work = work.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            chunk.into_iter().map(|item| work(item)).collect::<Vec<R>>()
        }));
    }
    let mut out = Vec::with_capacity(total);
    for handle in handles {
        out.extend(handle.await.map_err(ReplayError::Worker)?);
    }
    Ok(out)
}
