//! The pipeline for one stored message: parse -> screen -> extract ->
//! identify -> decide -> record (case, actions, reply) in one transaction.
//!
//! Takes messages the ingest stage stored; gives cases, ledger credits,
//! pending payment actions and queued replies. Never talks to the network:
//! replies leave through [`outbox`], payments through `act`. A message that
//! cannot be parsed still becomes a recorded case for a reviewer; only
//! infrastructure failures (the database) stop a pass.
//!
//! Follow-ups: a message whose `In-Reply-To`/`References` name one of our
//! replies, or whose subject carries the case tag (`[#R-1042]`) *and* comes
//! from the case's sender, joins that case. A case waiting on the customer
//! (`needs_info`) is decided again with everything the case now knows; the
//! windows are still measured to the case's first message (a customer who
//! asked on day 13 and sends the order ID on day 15 asked in time). A
//! follow-up to a case in review or already resolved goes (back) to review
//! with an acknowledgement: a person reads what the customer added.

pub mod answer;
pub mod deny;
mod facts;
pub mod outbox;
pub mod review;
pub mod sweep;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Settings;
use crate::domain::{
    Action, Category, Clause, Decision, MessageFacts, Outcome, ReplyKind, TraceStep,
};
use crate::extract::ExtractError;
use crate::ingest;
use crate::parse::ParsedEmail;
use crate::policy;
use crate::progress::{NoProgress, Progress};
use crate::queue::lifecycle::{LifecycleError, Opening, review_step};
use crate::queue::{CaseStatus, Lifecycle};
use crate::reply::{ReplyError, Templates};
use crate::store::{
    Backend, CaseId, CaseRow, DecisionBasis, NewEngineDecision, NewReply, Store, StoreError,
    StoredMessage, Tx,
};
use crate::verify::{SenderVerifier, VerifyError};

pub use answer::Addressee;
pub use facts::{FactsReader, case_tag, merge_case_facts};

/// Why a message could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("database error while processing message {message}")]
    Store {
        message: i64,
        #[source]
        source: StoreError,
    },
    #[error("cannot render the reply for case {case}")]
    Reply {
        case: CaseId,
        #[source]
        source: ReplyError,
    },
    #[error("extraction rules are invalid")]
    Rules(#[source] ExtractError),
    #[error("the reply templates cannot be used")]
    Templates(#[source] ReplyError),
    #[error("sender verification cannot start")]
    Verifier(#[source] VerifyError),
    #[error("the deciding configuration cannot be read")]
    Config(#[source] crate::config::ConfigError),
    #[error("case {case} cannot take this decision")]
    Lifecycle {
        case: String,
        #[source]
        source: LifecycleError,
    },
}

impl PipelineError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Store { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub message: i64,
    pub case_id: CaseId,
    pub outcome: Outcome,
    /// The message joined an existing case.
    pub joined: bool,
    /// Our reply's Message-ID, if one was queued.
    pub reply_message_id: Option<String>,
    /// Shadow mode held the engine's decision for a reviewer.
    pub shadow: bool,
}

/// A stored message as the pipeline read it: parsed, with its facts, or
/// why it is not readable mail (then the facts are empty).
struct ReadMessage {
    parsed: ParsedEmail,
    facts: MessageFacts,
    unreadable: Option<String>,
}

/// A message decided and not yet recorded: everything the write needs,
/// read from the database before the write transaction opens.
struct Verdict<'a> {
    message: &'a StoredMessage,
    parsed: &'a ParsedEmail,
    facts: &'a MessageFacts,
    /// The case the message joins.
    case: Option<CaseRow>,
    /// The engine's decision, as recorded for replay and agreement.
    engine: Decision,
    /// What is carried out: the engine's decision, or in shadow mode its
    /// proposal held for a reviewer.
    decision: Decision,
    shadow: bool,
    basis: DecisionBasis,
    /// A reply is wanted and the loop guard lets it go to the sender.
    reply: bool,
    now: DateTime<Utc>,
}

/// The decision-making stages, built once and shared.
pub struct Pipeline {
    store: Store,
    facts: FactsReader,
    /// In-process sender verification (`[sender_auth] mode = "verify"` or
    /// `"either"`); `None` in `headers` mode.
    verifier: Option<SenderVerifier>,
    templates: Templates,
    settings: Arc<Settings>,
    lifecycle: Lifecycle,
    /// [`Settings::decision_fingerprint`], recorded with every decision.
    fingerprint: String,
    /// How many senders' messages are decided at once.
    parallelism: usize,
}

impl Pipeline {
    /// Compiles the rules and the templates the settings name; fails at
    /// start, not at 3 a.m.
    pub fn new(store: Store, settings: Arc<Settings>) -> Result<Pipeline, PipelineError> {
        let templates =
            Templates::load(settings.reply_templates()).map_err(PipelineError::Templates)?;
        Pipeline::with_templates(store, settings, templates)
    }

    /// A pipeline answering with `templates`, shared with (and reloaded
    /// for) the rest of the daemon.
    pub fn with_templates(
        store: Store,
        settings: Arc<Settings>,
        templates: Templates,
    ) -> Result<Pipeline, PipelineError> {
        let facts = FactsReader::new(&settings).map_err(PipelineError::Rules)?;
        let verifier =
            SenderVerifier::for_config(&settings.sender_auth).map_err(PipelineError::Verifier)?;
        let fingerprint = settings
            .decision_fingerprint()
            .map_err(PipelineError::Config)?;
        Ok(Pipeline {
            store,
            facts,
            verifier,
            templates,
            lifecycle: settings.lifecycle(),
            fingerprint,
            settings,
            parallelism: 1,
        })
    }

    /// Processes every stored message not yet processed, oldest first.
    pub async fn process_pending(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Processed>, PipelineError> {
        self.process_pending_at(|_| now, &NoProgress).await
    }

    /// [`Pipeline::process_pending`], each message decided at the time
    /// `now_of` gives for it (replay decides an archive at each message's
    /// receipt, as the desk would have), counting on `progress`.
    ///
    /// With [`Pipeline::deciding_in_parallel`], a batch is decided in
    /// rounds of at most one message per sender (see [`rounds`]): a
    /// round's messages are read and decided concurrently and recorded in
    /// one transaction, so one sender's messages meet each other's cases
    /// and loop guard as before, while other senders' decisions share
    /// their round trips and one commit. Decisions of different senders
    /// about one order still cannot over-refund it: the write that would
    /// fails, and the round is recorded again one message at a time, the
    /// loser decided again with the fresh facts.
    pub async fn process_pending_at(
        &self,
        now_of: impl Fn(&StoredMessage) -> DateTime<Utc>,
        progress: &dyn Progress,
    ) -> Result<Vec<Processed>, PipelineError> {
        let mut done = Vec::new();
        let mut handled = 0u64;
        let now_of = &now_of;
        loop {
            let batch = self
                .store
                .unprocessed_messages_within(PENDING_BATCH, PENDING_BATCH_BYTES)
                .await
                .map_err(|source| PipelineError::Store { message: 0, source })?;
            if batch.is_empty() {
                return Ok(done);
            }
            for round in rounds(batch, self.parallelism > 1) {
                let decided = self.decide_round(&round, now_of).await?;
                handled += decided.len() as u64;
                done.extend(decided);
            }
            progress.update(handled);
        }
    }

    /// Decides one message; a bug-shaped failure marks the message failed
    /// (with why) and gives `None`, an infrastructure failure is returned.
    async fn process_or_mark(
        &self,
        message: &StoredMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<Processed>, PipelineError> {
        match self.process_message(message, now).await {
            Ok(processed) => Ok(Some(processed)),
            Err(err) if err.is_transient() => Err(err),
            // A bug-shaped failure on one message must not stop the desk:
            // the message stays stored, marked with why.
            Err(err) => {
                tracing::error!(message = message.id, error = %err, "message could not be processed");
                self.store
                    .mark_message_failed(message.id, &format!("{err:#}"))
                    .await
                    .map_err(|source| PipelineError::Store {
                        message: message.id,
                        source,
                    })?;
                Ok(None)
            }
        }
    }

    /// Decides up to `parallelism` senders' messages at once (the daemon);
    /// 1, the default, decides one message after the other in receipt
    /// order (replay, the CLI).
    pub fn deciding_in_parallel(mut self, parallelism: usize) -> Pipeline {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Decides one stored message and records the result in its own
    /// transaction. A decision that lost a race (the case changed, or
    /// another case's approval took what was left of the order) is made
    /// again with the fresh facts.
    #[tracing::instrument(skip_all, fields(message_id = message.id, stage = "pipeline"))]
    pub async fn process_message(
        &self,
        message: &StoredMessage,
        now: DateTime<Utc>,
    ) -> Result<Processed, PipelineError> {
        let read = self.read(message).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.judge(message, &read, now).await {
                Ok(verdict) => self.record_alone(&verdict).await,
                Err(err) => Err(err),
            };
            match result {
                Err(err) if lost_race(&err) && attempt < DECIDE_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    /// Records one verdict in a transaction of its own.
    async fn record_alone(&self, verdict: &Verdict<'_>) -> Result<Processed, PipelineError> {
        let store_err = |source| PipelineError::Store {
            message: verdict.message.id,
            source,
        };
        let mut tx = self.store.begin().await.map_err(store_err)?;
        let processed = self.record(&mut tx, verdict).await?;
        tx.commit().await.map_err(store_err)?;
        log_recorded(&processed);
        Ok(processed)
    }

    /// Decides a round (at most one message per sender) and records its
    /// decisions in a few transactions instead of one per message: one on
    /// SQLite (one writer: one commit, one turn), one per decision in
    /// flight on PostgreSQL (whose writers overlap their round trips). The
    /// reads and the decisions happen before any transaction opens,
    /// several at once. A transaction whose write fails (a lost race, a
    /// broken decision, the database) keeps nothing, and its messages are
    /// decided again one at a time, each in its own transaction, exactly as
    /// [`Pipeline::process_message`] does.
    async fn decide_round(
        &self,
        round: &[StoredMessage],
        now_of: &impl Fn(&StoredMessage) -> DateTime<Utc>,
    ) -> Result<Vec<Processed>, PipelineError> {
        let parallelism = self.parallelism.max(1);
        let mut processed = Vec::with_capacity(round.len());
        let mut reads = Vec::with_capacity(round.len());
        let mut alone: Vec<&StoredMessage> = Vec::new();
        if round.len() > 1 {
            for some in round.chunks(parallelism) {
                reads.extend(join_all(some.iter().map(|message| self.read(message))).await);
            }
            let mut verdicts = Vec::with_capacity(round.len());
            for (some, their_reads) in round.chunks(parallelism).zip(reads.chunks(parallelism)) {
                let judged = some
                    .iter()
                    .zip(their_reads)
                    .map(|(message, read)| self.judge(message, read, now_of(message)));
                for (message, verdict) in some.iter().zip(join_all(judged).await) {
                    match verdict {
                        Ok(verdict) => verdicts.push(verdict),
                        Err(_) => alone.push(message),
                    }
                }
            }
            let writers = match self.store.backend() {
                Backend::Sqlite => 1,
                Backend::Postgres => parallelism,
            };
            let share = verdicts.len().div_ceil(writers).max(1);
            let recorded = join_all(
                verdicts
                    .chunks(share)
                    .map(|some| self.record_together(some)),
            )
            .await;
            for (some, recorded) in verdicts.chunks(share).zip(recorded) {
                match recorded {
                    Some(recorded) => processed.extend(recorded),
                    None => alone.extend(some.iter().map(|verdict| verdict.message)),
                }
            }
        } else {
            alone.extend(round);
        }
        for some in alone.chunks(parallelism) {
            let decided = join_all(
                some.iter()
                    .map(|message| self.process_or_mark(message, now_of(message))),
            )
            .await;
            for decided in decided {
                processed.extend(decided?);
            }
        }
        Ok(processed)
    }

    /// Records `verdicts` in one transaction; `None` (and nothing written)
    /// when any of them cannot be recorded or the commit fails, for the
    /// caller to record them one at a time.
    async fn record_together(&self, verdicts: &[Verdict<'_>]) -> Option<Vec<Processed>> {
        let mut tx = self.store.begin().await.ok()?;
        let mut processed = Vec::with_capacity(verdicts.len());
        for verdict in verdicts {
            match self.record(&mut tx, verdict).await {
                Ok(one) => processed.push(one),
                Err(err) => {
                    tracing::debug!(message = verdict.message.id, error = %error_chain(&err), "a decision could not be recorded with others; deciding them one message at a time");
                    // Rolled back now, not when the connection goes back
                    // to the pool: the next writer must not find it locked.
                    if let Err(err) = tx.rollback().await {
                        tracing::debug!(error = %error_chain(&err), "rolling back a round failed");
                    }
                    return None;
                }
            }
        }
        if let Err(err) = tx.commit().await {
            tracing::debug!(error = %error_chain(&err), "a commit of several decisions failed; deciding them one message at a time");
            return None;
        }
        processed.iter().for_each(log_recorded);
        Some(processed)
    }

    /// Reads a stored message: sender verification (which talks to DNS,
    /// so it runs here, before the synchronous extraction that applies the
    /// mode's rule to it), parsing and the facts. Bytes that are not
    /// readable mail give empty facts and the reason.
    async fn read(&self, message: &StoredMessage) -> ReadMessage {
        let verification = match &self.verifier {
            Some(verifier) => Some(verifier.verify(&message.raw).await),
            None => None,
        };
        match self
            .facts
            .message_verified(&message.raw, message.received_at, verification.as_ref())
        {
            Ok((parsed, facts)) => ReadMessage {
                parsed,
                facts,
                unreadable: None,
            },
            Err(err) => ReadMessage {
                parsed: ParsedEmail::default(),
                facts: unreadable_facts(message),
                unreadable: Some(err.to_string()),
            },
        }
    }

    /// Finds the case a message belongs to and decides it: the database is
    /// read, nothing is written.
    async fn judge<'a>(
        &self,
        message: &'a StoredMessage,
        read: &'a ReadMessage,
        now: DateTime<Utc>,
    ) -> Result<Verdict<'a>, PipelineError> {
        let store_err = |source| PipelineError::Store {
            message: message.id,
            source,
        };
        let (parsed, facts) = (&read.parsed, &read.facts);
        let case = match (&read.unreadable, facts.auto) {
            (Some(_), _) | (None, Some(_)) => None,
            (None, None) => self.find_case(parsed, facts).await.map_err(store_err)?,
        };
        let (engine, basis) = match (&read.unreadable, &case) {
            (Some(reason), _) => (unreadable_decision(reason), DecisionBasis::Screen),
            _ if is_truncated(parsed) => (truncated_decision(facts), DecisionBasis::Screen),
            (None, Some(case)) if case.status != CaseStatus::NeedsInfo => {
                (reopened_for_review(case, facts), DecisionBasis::Screen)
            }
            (None, Some(case)) => {
                let facts = self
                    .case_facts(case, facts.clone())
                    .await
                    .map_err(store_err)?;
                let decision = self.decide(&facts, now).await.map_err(store_err)?;
                (decision, DecisionBasis::Case)
            }
            (None, None) => (
                self.decide(facts, now).await.map_err(store_err)?,
                DecisionBasis::Policy,
            ),
        };
        let shadow = self.settings.policy.shadow
            && basis != DecisionBasis::Screen
            && engine.outcome != Outcome::Ignored;
        let decision = if shadow {
            shadow_proposal(&engine)
        } else {
            engine.clone()
        };
        let wants_reply = decision.outcome != Outcome::Ignored
            && decision.reply != ReplyKind::NoReply
            && !facts.from.is_empty();
        let reply = wants_reply
            && self
                .loop_guard_allows(&facts.from, now)
                .await
                .map_err(store_err)?;
        Ok(Verdict {
            message,
            parsed,
            facts,
            case,
            engine,
            decision,
            shadow,
            basis,
            reply,
            now,
        })
    }

    async fn find_case(
        &self,
        parsed: &ParsedEmail,
        facts: &MessageFacts,
    ) -> Result<Option<CaseRow>, StoreError> {
        let mut ids: Vec<String> = parsed.in_reply_to.clone();
        ids.extend(parsed.references.iter().cloned());
        let by_thread = match self.store.case_by_reply_message_ids(&ids).await? {
            Some(id) => self.store.case(id).await?,
            None => None,
        };
        if by_thread.is_some() {
            return Ok(by_thread);
        }
        // The tag alone works (some providers rewrite Message-IDs), but only
        // for the case's own sender: a stranger quoting a tag gets a new case.
        let Some(id) = case_tag(&facts.subject) else {
            return Ok(None);
        };
        let id = CaseId(id);
        Ok(self
            .store
            .case(id)
            .await?
            .filter(|case| case.sender.eq_ignore_ascii_case(&facts.from)))
    }

    async fn case_facts(
        &self,
        case: &CaseRow,
        latest: MessageFacts,
    ) -> Result<MessageFacts, StoreError> {
        let earlier = self.store.case_messages(case.id).await?;
        Ok(self.facts.case(
            earlier.iter().map(|m| (m.raw.as_slice(), m.received_at)),
            latest,
        ))
    }

    async fn decide(
        &self,
        facts: &MessageFacts,
        now: DateTime<Utc>,
    ) -> Result<Decision, StoreError> {
        let ledger = self
            .store
            .ledger_facts(&facts.from, &facts.order_refs)
            .await?;
        Ok(policy::decide(
            facts,
            &ledger,
            &self.settings.policy,
            facts.received_at,
            now,
        ))
    }

    /// Writes the case, its event, credits, payment actions, the engine's
    /// decision (with the configuration's fingerprint) and the reply into
    /// `tx`. In shadow mode the engine's decision is recorded as a proposal
    /// and the case waits for a reviewer.
    async fn record(&self, tx: &mut Tx, verdict: &Verdict<'_>) -> Result<Processed, PipelineError> {
        let Verdict {
            message,
            parsed,
            facts,
            ref case,
            ref engine,
            ref decision,
            shadow,
            basis,
            reply,
            now,
        } = *verdict;
        let case = case.as_ref();
        let store_err = |source| PipelineError::Store {
            message: message.id,
            source,
        };
        let lifecycle_err = |source| PipelineError::Lifecycle {
            case: case.map_or_else(|| "new".to_owned(), |c| c.id.to_string()),
            source,
        };
        let transition = match case {
            Some(case) => {
                self.lifecycle
                    .follow_up(case.state(), decision.clone(), facts.received_at, now)
            }
            None => self.lifecycle.open(
                Opening {
                    sender: facts.from.clone(),
                    subject: facts.subject.clone(),
                    language: facts.language,
                },
                decision.clone(),
                facts.received_at,
                now,
            ),
        }
        .map_err(lifecycle_err)?;

        let state = tx.apply_transition(&transition).await.map_err(store_err)?;
        let case_id = state.id;
        tx.attach_message(message.id, case_id)
            .await
            .map_err(store_err)?;
        tx.record_engine_decision(&NewEngineDecision {
            message: message.id,
            case_id,
            basis,
            decision: engine,
            fingerprint: &self.fingerprint,
            shadow,
            at: now,
            verification: facts.auth.verified.as_ref(),
        })
        .await
        .map_err(store_err)?;

        let mut reply_message_id = None;
        if reply {
            match self.compose_reply(case_id, parsed, facts, decision, state.deadline, now) {
                Ok(reply) => {
                    reply_message_id = Some(reply.message_id.clone());
                    // With [polar] configured, an approved cash refund's
                    // reply waits for Polar, with a "a person will look"
                    // reply beside it in case the refund fails.
                    let fallback = if crate::act::payments::holds_reply(&self.settings, decision) {
                        let fallback = answer::payment_fallback(decision);
                        Some(self.compose_reply(
                            case_id,
                            parsed,
                            facts,
                            &fallback,
                            Some(self.lifecycle.deadline_from(now)),
                            now,
                        )?)
                    } else {
                        None
                    };
                    answer::queue_or_hold(tx, &reply, fallback.as_ref())
                        .await
                        .map_err(store_err)?;
                }
                // E.g. a `From:` that is no address: the case stands, a
                // person answers by hand.
                Err(err) => {
                    tracing::warn!(case_id = %case_id, error = %error_chain(&err), "no reply could be composed");
                    let step = review_step(format!(
                        "no reply could be composed ({}); a person must answer",
                        error_chain(&err)
                    ));
                    let to_review = self
                        .lifecycle
                        .to_review(state, decision, step, false, facts.received_at, now)
                        .map_err(lifecycle_err)?;
                    tx.apply_transition(&to_review).await.map_err(store_err)?;
                }
            }
        }
        Ok(Processed {
            message: message.id,
            case_id,
            outcome: decision.outcome,
            joined: case.is_some(),
            reply_message_id,
            shadow,
        })
    }

    async fn loop_guard_allows(&self, to: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let since = now - chrono::Duration::hours(1);
        let sent = self.store.count_replies_to_since(to, since).await?;
        Ok(sent < i64::from(self.settings.reply.max_replies_per_hour))
    }

    fn compose_reply(
        &self,
        case_id: CaseId,
        parsed: &ParsedEmail,
        facts: &MessageFacts,
        decision: &Decision,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<NewReply, PipelineError> {
        let to = Addressee {
            to: facts.from.clone(),
            name: facts.from_name.clone(),
            subject: facts.subject.clone(),
            language: facts.language,
            in_reply_to: parsed.message_id.clone(),
            references: parsed.references.clone(),
        };
        let context = answer::reply_context(case_id, &to, decision, deadline, None);
        answer::compose_reply(
            &self.templates.renderer(),
            &self.settings.reply,
            case_id,
            &to,
            &context,
            now,
        )
        .map_err(|source| PipelineError::Reply {
            case: case_id,
            source,
        })
    }
}

/// A batch cut into groups decided one after the other: by sender
/// (`From:` address, case-insensitively; each group in receipt order) when
/// `grouped`, else one message a group in receipt order. Mail whose sender
/// cannot be read is a group of its own.
fn by_sender(batch: Vec<StoredMessage>, grouped: bool) -> Vec<Vec<StoredMessage>> {
    if !grouped {
        return batch.into_iter().map(|message| vec![message]).collect();
    }
    let parser = mail_parser::MessageParser::new();
    let mut groups: Vec<Vec<StoredMessage>> = Vec::new();
    let mut by_address: HashMap<String, usize> = HashMap::new();
    for message in batch {
        let sender = parser.parse_headers(&message.raw).and_then(|headers| {
            headers
                .from()
                .and_then(|from| from.first())
                .and_then(|address| address.address())
                .map(str::to_lowercase)
        });
        match sender {
            Some(sender) => match by_address.get(&sender) {
                Some(&group) => groups[group].push(message),
                None => {
                    by_address.insert(sender, groups.len());
                    groups.push(vec![message]);
                }
            },
            None => groups.push(vec![message]),
        }
    }
    groups
}

/// Logs a committed decision.
fn log_recorded(processed: &Processed) {
    tracing::info!(case_id = %processed.case_id, outcome = %processed.outcome, shadow = processed.shadow, "case recorded");
}

/// Whether a decision lost a race with another (the case changed under
/// it, or another case's approval took what was left of the order) and
/// should be made again with fresh facts.
fn lost_race(err: &PipelineError) -> bool {
    matches!(
        err,
        PipelineError::Store {
            source: StoreError::Conflict { .. } | StoreError::OverRefund { .. },
            ..
        }
    )
}

/// The facts of bytes that are not readable mail: none but the receipt.
fn unreadable_facts(message: &StoredMessage) -> MessageFacts {
    MessageFacts {
        message_id: None,
        from: String::new(),
        from_name: None,
        subject: String::new(),
        received_at: message.received_at,
        language: Default::default(),
        order_refs: vec![],
        generation_refs: vec![],
        evidence: Default::default(),
        category: Category::Other,
        flags: Default::default(),
        auth: Default::default(),
        auto: None,
    }
}

/// The rounds a batch is decided in. Grouped (by sender): round *r* holds
/// the *r*-th message of every sender, so a sender's messages are decided
/// in receipt order, each after the one before is committed, and a round
/// never holds two messages of one sender. Not grouped: one message a
/// round, in receipt order.
fn rounds(batch: Vec<StoredMessage>, grouped: bool) -> Vec<Vec<StoredMessage>> {
    let groups = by_sender(batch, grouped);
    if !grouped {
        return groups;
    }
    let mut rounds: Vec<Vec<StoredMessage>> = Vec::new();
    for group in groups {
        for (round, message) in group.into_iter().enumerate() {
            if rounds.len() <= round {
                rounds.push(Vec::new());
            }
            rounds[round].push(message);
        }
    }
    rounds
}

/// Stored messages one read of the work list takes at most.
const PENDING_BATCH: i64 = 100;

/// Bytes of stored mail one read of the work list takes at most (the first
/// message always comes): large messages are read a few at a time.
const PENDING_BATCH_BYTES: i64 = 16 * 1024 * 1024;

/// How often a message is decided again after losing a race.
const DECIDE_ATTEMPTS: u32 = 3;

/// An error and its causes on one line, for a trace a reviewer reads.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Shadow mode: the case waits for a reviewer with the engine's decision
/// as its proposal; nothing is carried out and the customer hears that a
/// person looks.
fn shadow_proposal(engine: &Decision) -> Decision {
    let mut held = engine.clone();
    held.outcome = Outcome::Review;
    held.actions.clear();
    held.reply = ReplyKind::ReviewAcknowledged;
    held.reply_facts.template = None;
    let actions = if engine.actions.is_empty() {
        "no action".to_owned()
    } else {
        engine
            .actions
            .iter()
            .map(Action::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    held.trace.push(TraceStep {
        clause: Clause::P5,
        finding: format!(
            "Shadow mode: the engine proposes {} ({actions}); a reviewer decides.",
            engine.outcome
        ),
        facts: vec![("proposed_outcome".into(), engine.outcome.to_string())],
    });
    held
}

/// A follow-up to a case a person is on (or that was resolved) goes back to
/// review: the engine does not re-decide what a person may have promised.
fn reopened_for_review(case: &CaseRow, facts: &MessageFacts) -> Decision {
    let mut decision = case.decision.clone();
    decision.outcome = Outcome::Review;
    decision.actions.clear();
    decision.reply = ReplyKind::ReviewAcknowledged;
    decision.reply_facts.template = None;
    decision.flags.extend(facts.flags.iter().copied());
    decision.trace.push(TraceStep {
        clause: Clause::P5,
        finding: format!(
            "the customer wrote again on a case that was {}; a person reads the new message",
            case.status
        ),
        facts: vec![("previous_status".into(), case.status.to_string())],
    });
    decision
}

/// Whether ingest stored only the header of an oversized message (its
/// marker is the topmost header field, where ingest puts it).
fn is_truncated(parsed: &ParsedEmail) -> bool {
    parsed
        .headers
        .first()
        .is_some_and(|h| h.name.eq_ignore_ascii_case(ingest::TRUNCATED_HEADER))
}

/// An oversized message: nothing is decided on half a message; a person
/// looks, and the customer hears that we will.
fn truncated_decision(facts: &MessageFacts) -> Decision {
    let mut decision =
        unreadable_decision("the message is over the size limit and only its header was kept");
    decision.category = facts.category;
    decision.flags = facts.flags.clone();
    decision.reply = ReplyKind::ReviewAcknowledged;
    decision
}

/// The decision for bytes that are not readable mail: a person looks.
fn unreadable_decision(reason: &str) -> Decision {
    Decision {
        outcome: Outcome::Review,
        category: Category::Other,
        flags: Default::default(),
        actions: vec![],
        trace: vec![TraceStep {
            clause: Clause::Screen,
            finding: format!(
                "the message could not be read as email ({reason}); a person must look at the raw message"
            ),
            facts: vec![],
        }],
        reply: ReplyKind::NoReply,
        order_id: None,
        wallet_id: None,
        generation_id: None,
        reply_facts: Default::default(),
    }
}
