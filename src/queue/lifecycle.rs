//! The case lifecycle: the states a case moves through, the one table of
//! allowed moves, and the one builder of a move ([`Transition`]).
//!
//! Every change of a case — the engine opening it, a customer's follow-up,
//! a reviewer's decision, the payment stage or the outbox sending it to a
//! person, the sweep closing it or recording a breached deadline — is a
//! [`Transition`] built here by [`Lifecycle`] and applied by the store's one
//! call (`Tx::apply_transition`), which does the compare-and-set, writes the
//! event, enforces the claim rule, keeps the deadline and reserves the
//! money, atomically.
//!
//! Rules kept here, and nowhere else:
//! - which moves are allowed ([`ALLOWED`]): a decided case is decided again
//!   only because a new message arrived; reviewers decide open cases only;
//! - the deadline of an open case comes from the configured business
//!   calendar and `[reply] review_business_days`: measured from the
//!   message's receipt when the customer wrote, from now when a person or
//!   the engine puts the case back in front of a person, and an open case
//!   that already has a deadline keeps it;
//! - the claim rule ([`ClaimRule`]): only the claim holder decides a claimed
//!   case; an admin may take it over (the store records it in the audit
//!   log); a case leaving the queue loses its claim.
//!
//! PURE: no I/O, never reads the clock. Fails with [`LifecycleError`] when a
//! move is not in the table (a bug or a stale view, never a customer's
//! doing).

use chrono::{DateTime, Utc};

use super::{Actor, BusinessCalendar, CaseId, CaseStatus, is_open, status_after};
use crate::domain::{Clause, Decision, Language, Outcome, ReplyKind, TraceStep};

/// Why a case moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The engine decided a new message and opened a case for it.
    Opened,
    /// The customer wrote again; the case is decided again (or reopened).
    FollowUp,
    /// A reviewer decided the case.
    Reviewed,
    /// The engine puts the case in front of a person: a refund Polar
    /// refused, a reply that could not be composed or delivered.
    SentToReview,
    /// The customer did not answer a question in time; the case closes.
    Abandoned,
    /// The reply deadline passed; recorded, nothing else changes.
    Breached,
}

impl Cause {
    /// Whether the move records a new decision whose approvals are carried
    /// out (credits written, refunds reserved). The others keep a decision
    /// that was carried out already, or change nothing but the status.
    pub const fn decides(self) -> bool {
        matches!(self, Cause::Opened | Cause::FollowUp | Cause::Reviewed)
    }
}

/// Every allowed move: `(cause, from, to)`; `None` is "no case yet".
pub const ALLOWED: &[(Cause, &[Option<CaseStatus>], &[CaseStatus])] = {
    use CaseStatus::{Ignored, NeedsInfo, Resolved, Review};
    &[
        (
            Cause::Opened,
            &[None],
            &[Resolved, Review, NeedsInfo, Ignored],
        ),
        (
            Cause::FollowUp,
            &[Some(NeedsInfo)],
            &[Resolved, Review, NeedsInfo],
        ),
        (
            Cause::FollowUp,
            &[Some(Review), Some(Resolved), Some(Ignored)],
            &[Review],
        ),
        (
            Cause::Reviewed,
            &[Some(Review), Some(NeedsInfo)],
            &[Resolved, NeedsInfo],
        ),
        (
            Cause::SentToReview,
            &[Some(Review), Some(NeedsInfo), Some(Resolved), Some(Ignored)],
            &[Review],
        ),
        (Cause::Abandoned, &[Some(NeedsInfo)], &[Resolved]),
        (Cause::Breached, &[Some(Review)], &[Review]),
        (Cause::Breached, &[Some(NeedsInfo)], &[NeedsInfo]),
    ]
};

/// Whether the table allows `cause` to move a case from `from` to `to`.
pub fn allowed(cause: Cause, from: Option<CaseStatus>, to: CaseStatus) -> bool {
    ALLOWED
        .iter()
        .any(|(c, f, t)| *c == cause && f.contains(&from) && t.contains(&to))
}

/// A move the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a case cannot move from {from} to {to} ({cause:?})", from = from.map_or("nothing".to_owned(), |s| s.to_string()))]
pub struct LifecycleError {
    pub cause: Cause,
    pub from: Option<CaseStatus>,
    pub to: CaseStatus,
}

/// Where a stored case stands: what a compare-and-set checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseState {
    pub id: CaseId,
    /// Checked by moves that change the decision; event-only moves check
    /// the status.
    pub version: i64,
    pub status: CaseStatus,
    pub deadline: Option<DateTime<Utc>>,
}

/// What a new case is opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The sender's address (lowercased `From:`).
    pub sender: String,
    pub subject: String,
    pub language: Language,
}

/// The case a transition applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A case to create.
    New(Opening),
    /// A stored case, as it was read (compare-and-set on its version).
    Existing(CaseState),
}

/// Who may make the move when a reviewer holds the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRule {
    /// Claims do not bind this move and stay as they are (the engine, the
    /// customer). A case leaving the queue still loses its claim.
    Keep,
    /// Only the claim holder (or anyone, when nobody holds it) may move the
    /// case; with `may_take_over` (admins) another's claim is taken over and
    /// the take-over audited. The claim ends with the move.
    Holder {
        reviewer: String,
        may_take_over: bool,
    },
}

/// One move of one case, ready for the store to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub target: Target,
    pub cause: Cause,
    pub to: CaseStatus,
    /// The case's decision after the move; `None` leaves it (and the
    /// version) unchanged: only an event is recorded.
    pub decision: Option<Decision>,
    pub deadline: Option<DateTime<Utc>>,
    pub actor: Actor,
    /// The event's reason.
    pub reason: String,
    pub claim: ClaimRule,
    pub at: DateTime<Utc>,
}

impl Transition {
    /// The engine opening a case with `decision` and a deadline given
    /// outright (an import of cases decided elsewhere, a fixture).
    pub fn opened(
        opening: Opening,
        decision: Decision,
        deadline: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Transition {
        Transition {
            target: Target::New(opening),
            cause: Cause::Opened,
            to: status_after(decision.outcome),
            reason: decision
                .trace
                .last()
                .map(|s| s.finding.clone())
                .unwrap_or_default(),
            decision: Some(decision),
            deadline,
            actor: Actor::Engine,
            claim: ClaimRule::Keep,
            at,
        }
    }

    /// The status the case is in before the move (`None`: a new case).
    pub fn from(&self) -> Option<CaseStatus> {
        match &self.target {
            Target::New(_) => None,
            Target::Existing(state) => Some(state.status),
        }
    }

    /// Checks the move against [`ALLOWED`].
    pub fn check(&self) -> Result<(), LifecycleError> {
        let from = self.from();
        if allowed(self.cause, from, self.to) {
            Ok(())
        } else {
            Err(LifecycleError {
                cause: self.cause,
                from,
                to: self.to,
            })
        }
    }

    /// Whether the case ends the move without a claim on it.
    pub fn clears_claim(&self) -> bool {
        !is_open(self.to) || matches!(self.claim, ClaimRule::Holder { .. })
    }
}

/// Builds transitions with the configured business calendar.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    calendar: BusinessCalendar,
    review_days: u32,
}

impl Lifecycle {
    /// A lifecycle whose deadlines are `review_days` business days of
    /// `calendar` (`[calendar]`, `[reply] review_business_days`).
    pub fn new(calendar: BusinessCalendar, review_days: u32) -> Lifecycle {
        Lifecycle {
            calendar,
            review_days,
        }
    }

    /// The calendar deadlines are counted in.
    pub fn calendar(&self) -> &BusinessCalendar {
        &self.calendar
    }

    /// When a person owes an answer to something that happened at `from`.
    pub fn deadline_from(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        self.calendar.add_business_days(from, self.review_days)
    }

    /// The engine's decision on a new message received at `received_at`.
    pub fn open(
        &self,
        opening: Opening,
        decision: Decision,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let to = status_after(decision.outcome);
        self.build(
            Target::New(opening),
            Cause::Opened,
            to,
            Some(decision),
            self.open_deadline(to, None, received_at),
            Actor::Engine,
            ClaimRule::Keep,
            now,
        )
    }

    /// The decision on a case after the customer wrote again (a message
    /// received at `received_at`).
    pub fn follow_up(
        &self,
        case: CaseState,
        decision: Decision,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let to = status_after(decision.outcome);
        self.build(
            Target::Existing(case),
            Cause::FollowUp,
            to,
            Some(decision),
            self.open_deadline(to, None, received_at),
            Actor::Customer,
            ClaimRule::Keep,
            now,
        )
    }

    /// A reviewer's decision; `may_take_over` for admins.
    pub fn reviewed(
        &self,
        case: CaseState,
        decision: Decision,
        reviewer: &str,
        may_take_over: bool,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let to = status_after(decision.outcome);
        self.build(
            Target::Existing(case),
            Cause::Reviewed,
            to,
            Some(decision),
            self.open_deadline(to, None, now),
            Actor::Reviewer(reviewer.to_owned()),
            ClaimRule::Holder {
                reviewer: reviewer.to_owned(),
                may_take_over,
            },
            now,
        )
    }

    /// The engine puts a case in front of a person: `step` is appended to
    /// its trace and is the event's reason. With `retract`, the decision's
    /// outcome becomes `review` and the customer is told a person looks
    /// (an approval that could not be carried out); without, the decision
    /// stands (it was carried out, only the answer needs a person). A case
    /// that is open keeps its deadline; else the promise runs from `since`
    /// (the message's receipt when the engine could not answer it, now when
    /// a later stage failed).
    #[allow(clippy::too_many_arguments)]
    pub fn to_review(
        &self,
        case: CaseState,
        decision: &Decision,
        step: TraceStep,
        retract: bool,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let reason = step.finding.clone();
        let mut decision = decision.clone();
        decision.trace.push(step);
        if retract {
            decision.outcome = Outcome::Review;
            decision.reply = ReplyKind::ReviewAcknowledged;
        }
        let mut t = self.build(
            Target::Existing(case),
            Cause::SentToReview,
            CaseStatus::Review,
            Some(decision),
            self.open_deadline(CaseStatus::Review, Some(case), since),
            Actor::Engine,
            ClaimRule::Keep,
            now,
        )?;
        t.reason = reason;
        Ok(t)
    }

    /// The sweep closes a case whose customer never answered.
    pub fn abandoned(
        &self,
        case: CaseState,
        decision: &Decision,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let mut t = self.build(
            Target::Existing(case),
            Cause::Abandoned,
            CaseStatus::Resolved,
            Some(decision.clone()),
            None,
            Actor::Engine,
            ClaimRule::Keep,
            now,
        )?;
        t.reason = reason;
        Ok(t)
    }

    /// The reply deadline of a case in `status` passed: an event, nothing
    /// else changes (the store checks the status, not the version, so a
    /// reviewer's open form stays valid).
    pub fn breached(
        &self,
        case_id: CaseId,
        status: CaseStatus,
        deadline: DateTime<Utc>,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let case = CaseState {
            id: case_id,
            version: 0,
            status,
            deadline: Some(deadline),
        };
        let mut t = self.build(
            Target::Existing(case),
            Cause::Breached,
            case.status,
            None,
            case.deadline,
            Actor::Engine,
            ClaimRule::Keep,
            now,
        )?;
        t.reason = reason;
        Ok(t)
    }

    /// The deadline of a case moving to `to`: none when it leaves the
    /// queue; the one it has when it stays open; else `review_days` from
    /// `anchor`.
    fn open_deadline(
        &self,
        to: CaseStatus,
        stays: Option<CaseState>,
        anchor: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !is_open(to) {
            return None;
        }
        stays
            .filter(|s| is_open(s.status))
            .and_then(|s| s.deadline)
            .or_else(|| Some(self.deadline_from(anchor)))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        target: Target,
        cause: Cause,
        to: CaseStatus,
        decision: Option<Decision>,
        deadline: Option<DateTime<Utc>>,
        actor: Actor,
        claim: ClaimRule,
        at: DateTime<Utc>,
    ) -> Result<Transition, LifecycleError> {
        let reason = decision
            .as_ref()
            .and_then(|d| d.trace.last())
            .map(|s| s.finding.clone())
            .unwrap_or_default();
        let t = Transition {
            target,
            cause,
            to,
            decision,
            deadline,
            actor,
            reason,
            claim,
            at,
        };
        t.check()?;
        Ok(t)
    }
}

/// A trace step of the engine's own (P5: the reply promise) saying why a
/// case goes to a person.
pub fn review_step(finding: impl Into<String>) -> TraceStep {
    TraceStep {
        clause: Clause::P5,
        finding: finding.into(),
        facts: vec![],
    }
}

#[cfg(test)]
mod tests;
