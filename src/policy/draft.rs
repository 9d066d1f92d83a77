//! The decision under construction: flags, trace and the facts the reply
//! will quote, gathered clause by clause until a clause gives a [`Verdict`].
//!
//! Takes the message (for its category and flags); gives a `Decision` once
//! [`Draft::finish`] is called. Does nothing else and cannot fail.

use std::collections::BTreeSet;
use std::fmt::Display;

use crate::domain::{
    Action, Category, Clause, Decision, Flag, MessageFacts, Outcome, ReplyFacts, ReplyKind,
    TraceStep,
};

/// What a deciding clause says: the outcome, the reply and the actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verdict {
    pub outcome: Outcome,
    pub reply: ReplyKind,
    pub actions: Vec<Action>,
}

impl Verdict {
    /// Granted, with the actions that carry it out.
    pub fn approved(reply: ReplyKind, actions: Vec<Action>) -> Self {
        Verdict {
            outcome: Outcome::Approved,
            reply,
            actions,
        }
    }

    /// Refused under a clause.
    pub fn denied(reply: ReplyKind) -> Self {
        Self::without_actions(Outcome::Denied, reply)
    }

    /// Nothing to do but explain.
    pub fn answered(reply: ReplyKind) -> Self {
        Self::without_actions(Outcome::Answered, reply)
    }

    /// The customer must tell us more.
    pub fn needs_info(reply: ReplyKind) -> Self {
        Self::without_actions(Outcome::NeedsInfo, reply)
    }

    /// A person must decide; the customer hears by when.
    pub fn review() -> Self {
        Self::without_actions(Outcome::Review, ReplyKind::ReviewAcknowledged)
    }

    /// Automatic mail: recorded, never answered.
    pub fn ignored() -> Self {
        Self::without_actions(Outcome::Ignored, ReplyKind::NoReply)
    }

    fn without_actions(outcome: Outcome, reply: ReplyKind) -> Self {
        Verdict {
            outcome,
            reply,
            actions: Vec::new(),
        }
    }
}

/// A `name -> value` pair of a trace step.
pub(super) fn fact(name: &str, value: impl Display) -> (String, String) {
    (name.to_owned(), value.to_string())
}

/// Everything of a `Decision` but its outcome, reply and actions.
#[derive(Debug)]
pub(super) struct Draft {
    category: Category,
    flags: BTreeSet<Flag>,
    trace: Vec<TraceStep>,
    pub wallet_id: Option<String>,
    pub order_id: Option<String>,
    pub generation_id: Option<String>,
    pub reply_facts: ReplyFacts,
}

impl Draft {
    /// Starts from the message's category and the flags read from its text.
    pub fn new(msg: &MessageFacts) -> Self {
        Draft {
            category: msg.category,
            flags: msg.flags.clone(),
            trace: Vec::new(),
            wallet_id: None,
            order_id: None,
            generation_id: None,
            reply_facts: ReplyFacts::default(),
        }
    }

    /// Records something observed about the case.
    pub fn flag(&mut self, flag: Flag) {
        self.flags.insert(flag);
    }

    /// Appends a trace step: the clause, a sentence for the reviewer and
    /// the facts it used.
    pub fn note(
        &mut self,
        clause: Clause,
        finding: impl Into<String>,
        facts: Vec<(String, String)>,
    ) {
        self.trace.push(TraceStep {
            clause,
            finding: finding.into(),
            facts,
        });
    }

    /// Adds facts to the latest trace step (the deciding one): what a
    /// verdict rests on, without a step of its own.
    pub fn attest(&mut self, facts: Vec<(String, String)>) {
        if let Some(step) = self.trace.last_mut() {
            step.facts.extend(facts);
        }
    }

    /// The decision, with the verdict of the clause that stopped.
    pub fn finish(self, verdict: Verdict) -> Decision {
        Decision {
            outcome: verdict.outcome,
            category: self.category,
            flags: self.flags,
            actions: verdict.actions,
            trace: self.trace,
            reply: verdict.reply,
            order_id: self.order_id,
            wallet_id: self.wallet_id,
            generation_id: self.generation_id,
            reply_facts: self.reply_facts,
        }
    }
}

/// `s` with its first letter upper-cased, to start a finding.
pub(super) fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
