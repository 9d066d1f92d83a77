//! P3 and the P4 rows about outputs: courtesy wallet credits for a
//! successful generation that is unusable (no resemblance, wrong style,
//! broken anatomy), content violations, subjective dissatisfaction and
//! moderation-blocked uploads.
//!
//! Takes the message, the sender's wallet, the configuration and the
//! receipt time; gives a wallet credit (never a payment reversal), a
//! request for the result, a refusal, an explanation or a review. Never
//! grants past the cap: from the cap on, a person decides case by case.

use chrono::{DateTime, Utc};

use crate::domain::{
    Action, Clause, CreditReason, Generation, GenerationStatus, MessageFacts, ReplyKind,
    WalletCredit, WalletFacts,
};

use super::PolicyConfig;
use super::draft::{Draft, Verdict, fact};
use super::window::{in_days_before, stamp};

/// Courtesy credits dated within `courtesy_window_days` before receipt,
/// both ends included ("1 per wallet per 90 days"). Goodwill and
/// failed-generation credits are not courtesy credits.
pub(super) fn recent_courtesy_credits<'a>(
    w: &'a WalletFacts,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
) -> Vec<&'a WalletCredit> {
    w.credits
        .iter()
        .filter(|c| c.reason == CreditReason::Courtesy)
        .filter(|c| in_days_before(c.created_at, config.courtesy_window_days, received_at))
        .collect()
}

/// Whether the wallet has had as many courtesy credits as the cap allows.
pub(super) fn at_cap(w: &WalletFacts, config: &PolicyConfig, received_at: DateTime<Utc>) -> bool {
    recent_courtesy_credits(w, config, received_at).len() as u64 >= u64::from(config.courtesy_cap)
}

/// Decides a `no_resemblance`, `wrong_style` or `broken_anatomy` complaint.
///
/// Target: the first generation the email names that is the wallet's, succeeded
/// and was created before receipt; else the wallet's most recent successful
/// generation created before receipt. Then, in this order: at the cap ->
/// review (P4, `courtesy_cap`); the target already had a courtesy credit ->
/// review; the result neither attached nor linked -> ask for it; else a
/// courtesy credit of the target's credits.
pub(super) fn courtesy(
    msg: &MessageFacts,
    w: &WalletFacts,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    draft: &mut Draft,
) -> Verdict {
    let successful = || {
        w.generations
            .iter()
            .filter(|g| g.status == GenerationStatus::Succeeded && g.created_at <= received_at)
    };
    let named = msg
        .generation_refs
        .iter()
        .find_map(|id| successful().find(|g| &g.id == id));
    let (target, how) = match named {
        Some(g) => (g, "named in the email"),
        None => match successful().max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
        {
            Some(g) => (
                g,
                "the wallet's most recent successful generation before receipt",
            ),
            None => {
                draft.note(
                    Clause::P3,
                    format!(
                        "The customer complains about an output but wallet {} has no successful \
                         generation created before receipt; a person must look.",
                        w.wallet.id
                    ),
                    vec![fact("wallet_id", &w.wallet.id)],
                );
                return Verdict::review();
            }
        },
    };
    draft.generation_id = Some(target.id.clone());
    let mut target_facts = vec![
        fact("generation_id", &target.id),
        fact("credits", target.credits),
        fact("generation_created_at", stamp(target.created_at)),
    ];
    if !msg.generation_refs.is_empty() && named.is_none() {
        target_facts.push(fact(
            "named_but_not_eligible",
            msg.generation_refs.join(", "),
        ));
    }
    draft.note(
        Clause::P3,
        format!("Courtesy target: generation {} ({how}).", target.id),
        target_facts,
    );

    let recent = recent_courtesy_credits(w, config, received_at);
    if recent.len() as u64 >= u64::from(config.courtesy_cap) {
        let latest = recent.iter().map(|c| c.created_at).max();
        let mut facts = vec![
            fact("courtesy_credits_in_window", recent.len()),
            fact("courtesy_cap", config.courtesy_cap),
        ];
        if let Some(at) = latest {
            facts.push(fact("latest_courtesy_credit_at", stamp(at)));
        }
        draft.note(
            Clause::P4,
            format!(
                "{} courtesy credit(s) in the {} days before receipt reach the cap of {}; \
                 beyond it a person decides case by case.",
                recent.len(),
                config.courtesy_window_days,
                config.courtesy_cap
            ),
            facts,
        );
        return Verdict::review();
    }

    if let Some(earlier) = already_compensated(w, target) {
        draft.note(
            Clause::P3,
            format!(
                "Generation {} already received a courtesy credit on {}; a person must look.",
                target.id,
                stamp(earlier.created_at)
            ),
            vec![fact("wallet_credit_id", &earlier.id)],
        );
        return Verdict::review();
    }

    if target.credits <= 0 {
        draft.note(
            Clause::P3,
            format!(
                "Generation {} cost no credits, so there is nothing to credit back; a person must look.",
                target.id
            ),
            vec![fact("credits", target.credits)],
        );
        return Verdict::review();
    }

    if !msg.evidence.present() {
        draft.note(
            Clause::P3,
            "Nothing attached or linked: ask the customer for the result (P5).",
            vec![
                fact("image_attachment", msg.evidence.image_attachment),
                fact("result_link", msg.evidence.result_link),
            ],
        );
        return Verdict::needs_info(ReplyKind::NeedResult);
    }

    draft.reply_facts.credits = Some(target.credits);
    draft.note(
        Clause::P3,
        format!(
            "Within the cap and the result is {}: courtesy credit of {} credit(s) to the wallet.",
            if msg.evidence.image_attachment {
                "attached"
            } else {
                "linked"
            },
            target.credits
        ),
        vec![
            fact("courtesy_credits_in_window", recent.len()),
            fact("credits", target.credits),
        ],
    );
    Verdict::approved(
        ReplyKind::CourtesyCredited,
        vec![Action::WalletCredit {
            wallet_id: w.wallet.id.clone(),
            credits: target.credits,
            reason: CreditReason::Courtesy,
            generation_id: Some(target.id.clone()),
        }],
    )
}

/// P3: an output that may violate the content guidelines is always a
/// person's call.
pub(super) fn content_violation(draft: &mut Draft) -> Verdict {
    draft.note(
        Clause::P3,
        "The customer reports an output that may violate the content guidelines; a person must look.",
        vec![],
    );
    Verdict::review()
}

/// P4: subjective dissatisfaction with an output is not refundable.
pub(super) fn subjective(draft: &mut Draft) -> Verdict {
    draft.note(
        Clause::P4,
        "Subjective dissatisfaction with an output that otherwise meets quality standards \
         is not refundable.",
        vec![],
    );
    Verdict::denied(ReplyKind::SubjectiveDenied)
}

/// P4: blocked uploads consume no credits; explain.
pub(super) fn moderation_block(draft: &mut Draft) -> Verdict {
    draft.note(
        Clause::P4,
        "An upload blocked by moderation consumes no credits: nothing to refund, explain.",
        vec![],
    );
    Verdict::answered(ReplyKind::ModerationBlock)
}

/// A courtesy credit already naming this generation, at any time.
fn already_compensated<'a>(w: &'a WalletFacts, target: &Generation) -> Option<&'a WalletCredit> {
    w.credits.iter().find(|c| {
        c.reason == CreditReason::Courtesy && c.generation_id.as_deref() == Some(target.id.as_str())
    })
}
