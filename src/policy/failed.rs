//! P1: the credits of a failed generation come back to the wallet.
//!
//! Takes the message (the generations it names), the sender's wallet and
//! the receipt time; gives one wallet credit per failed generation not yet
//! credited, or the answer that it already was. Never credits a generation
//! twice: a generation counts as credited when the ledger marks it refunded
//! or any wallet credit names it, whenever that credit was written. Never
//! invents when: the answer quotes a refund time only when the ledger has
//! one (the import contract does not promise it).

use chrono::{DateTime, Utc};

use crate::domain::{
    Action, Clause, CreditReason, Generation, GenerationStatus, MessageFacts, ReplyKind,
    WalletFacts,
};

use super::draft::{Draft, Verdict, fact};
use super::window::stamp;

/// Decides a `failed_generation` request.
///
/// Targets: the generations the email names that are the wallet's and
/// were created before receipt; when it names none of them, every failed
/// generation of the wallet created before receipt. Every target that
/// failed and was not credited earns its own credit (one action each, so
/// each can be applied and audited on its own). When all failed targets
/// were credited already, the answer is about the latest of them and
/// quotes when its credits came back, if the ledger knows
/// (`refunded_at` below).
/// A named generation that was blocked is answered as a moderation block
/// (P4); one that succeeded, or finding no failed generation at all, goes
/// to a person: the ledger and the customer disagree.
pub(super) fn failed_generation(
    msg: &MessageFacts,
    w: &WalletFacts,
    received_at: DateTime<Utc>,
    draft: &mut Draft,
) -> Verdict {
    let before = |g: &&Generation| g.created_at <= received_at;
    let mut named: Vec<&Generation> = Vec::new();
    for id in &msg.generation_refs {
        if let Some(g) = w.generations.iter().filter(before).find(|g| &g.id == id)
            && !named.iter().any(|n| n.id == g.id)
        {
            named.push(g);
        }
    }
    let targets: Vec<&Generation> = if named.is_empty() {
        w.generations
            .iter()
            .filter(before)
            .filter(|g| g.status == GenerationStatus::Failed)
            .collect()
    } else {
        named.clone()
    };
    let failed: Vec<&Generation> = targets
        .iter()
        .copied()
        .filter(|g| g.status == GenerationStatus::Failed)
        .collect();
    let owed: Vec<&Generation> = failed
        .iter()
        .copied()
        .filter(|g| !credited(w, g) && g.credits > 0)
        .collect();

    if !owed.is_empty() {
        let actions: Vec<Action> = owed
            .iter()
            .map(|g| Action::WalletCredit {
                wallet_id: w.wallet.id.clone(),
                credits: g.credits,
                reason: CreditReason::FailedGeneration,
                generation_id: Some(g.id.clone()),
            })
            .collect();
        let total: i64 = owed.iter().map(|g| g.credits).sum();
        if let [g] = owed.as_slice() {
            draft.generation_id = Some(g.id.clone());
        }
        draft.reply_facts.credits = Some(total);
        let mut facts: Vec<_> = owed
            .iter()
            .flat_map(|g| [fact("generation_id", &g.id), fact("credits", g.credits)])
            .collect();
        facts.push(fact("total_credits", total));
        draft.note(
            Clause::P1,
            format!(
                "{} failed generation(s) of the wallet ({}) were not credited back; \
                 crediting {total} credit(s).",
                owed.len(),
                owed.iter()
                    .map(|g| g.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            facts,
        );
        return Verdict::approved(ReplyKind::FailedGenerationCredited, actions);
    }

    let refunded = failed
        .iter()
        .copied()
        .filter(|g| credited(w, g))
        .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if let Some(g) = refunded {
        let refunded_at = refunded_at(w, g);
        draft.generation_id = Some(g.id.clone());
        draft.reply_facts.credits = Some(g.credits);
        draft.reply_facts.refunded_at = refunded_at;
        let mut facts = vec![fact("generation_id", &g.id), fact("credits", g.credits)];
        if let Some(at) = refunded_at {
            facts.push(fact("refunded_at", stamp(at)));
        }
        draft.note(
            Clause::P1,
            format!(
                "Generation {} failed and its credits were already refunded{}.",
                g.id,
                refunded_at
                    .map(|at| format!(" on {}", stamp(at)))
                    .unwrap_or_else(|| " (the ledger does not say when)".to_owned())
            ),
            facts,
        );
        return Verdict::answered(ReplyKind::FailedGenerationAlreadyRefunded);
    }

    if let Some(g) = named.iter().find(|g| g.status == GenerationStatus::Blocked) {
        draft.generation_id = Some(g.id.clone());
        draft.note(
            Clause::P4,
            format!(
                "Generation {} was an upload blocked by moderation: it consumed no credits.",
                g.id
            ),
            vec![fact("generation_id", &g.id)],
        );
        return Verdict::answered(ReplyKind::ModerationBlock);
    }

    if let Some(g) = named.first() {
        draft.generation_id = Some(g.id.clone());
        draft.note(
            Clause::P1,
            format!(
                "The customer reports a failure but the ledger shows generation {} as {}; \
                 a person must look.",
                g.id,
                status_name(g.status)
            ),
            vec![
                fact("generation_id", &g.id),
                fact("status", status_name(g.status)),
            ],
        );
        return Verdict::review();
    }

    draft.note(
        Clause::P1,
        format!(
            "The customer reports a failed generation but the ledger has no failed \
             generation of wallet {} created before receipt; a person must look.",
            w.wallet.id
        ),
        vec![
            fact("wallet_id", &w.wallet.id),
            fact("received_at", stamp(received_at)),
        ],
    );
    Verdict::review()
}

/// When the generation's credits came back, if the ledger knows: its own
/// `refunded_at` (the app's record of the automatic refund), else the
/// latest wallet credit that names it.
fn refunded_at(w: &WalletFacts, g: &Generation) -> Option<DateTime<Utc>> {
    g.refunded_at.or_else(|| {
        w.credits
            .iter()
            .filter(|c| c.generation_id.as_deref() == Some(g.id.as_str()))
            .map(|c| c.created_at)
            .max()
    })
}

/// Whether the generation's credits already came back.
fn credited(w: &WalletFacts, g: &Generation) -> bool {
    g.refunded
        || w.credits
            .iter()
            .any(|c| c.generation_id.as_deref() == Some(g.id.as_str()))
}

fn status_name(status: GenerationStatus) -> &'static str {
    match status {
        GenerationStatus::Succeeded => "succeeded",
        GenerationStatus::Failed => "failed",
        GenerationStatus::Blocked => "blocked",
    }
}
