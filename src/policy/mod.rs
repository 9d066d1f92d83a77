//! The policy engine. PURE: (message facts, ledger facts, policy config,
//! received_at, now) -> [`Decision`] with a clause-by-clause trace.
//!
//! Takes what `extract` read of the email ([`MessageFacts`]), what the
//! ledger knows of the sender ([`LedgerFacts`]), the thresholds
//! ([`PolicyConfig`]) and two instants; gives the outcome, the flags, the
//! actions (cash refunds, wallet credits), the reply to send and the trace a
//! reviewer reads. Never does I/O, never reads the clock, never fails: every
//! input yields a decision, and what it cannot decide is `review`.
//!
//! # Time
//! Every window of POLICY.md is measured to `received_at`, the time our mail
//! server received the email, never to the sender's `Date:` header and
//! never to `now`. `now` (the processing time) appears only in the P2 trace
//! ("processed 15 days after purchase") so a reviewer sees the delay; it
//! never changes an outcome, an action or a flag. Ledger rows count as
//! "before the email" when `created_at <= received_at`, which is how the
//! courtesy cap, the abuse pattern, candidate orders and courtesy/P1
//! targets are read. Rows that show something was already paid back
//! (refunds of an order, credits naming a generation) count whatever their
//! date: money or credits are never returned twice.
//!
//! The input `received_at` is authoritative; `MessageFacts::received_at` is
//! not read (the caller passes the stored receipt time).
//!
//! # Precedence
//! The engine weighs clauses in this order and stops at the first that
//! decides; flags accumulate for everything observed, whoever decides.
//! Every trace starts with the step that screened (SCREEN) or identified
//! (ID) the sender; its last step says why the engine stopped.
//! 1. SCREEN: automatic mail -> `ignored`, no reply.
//! 2. ID: a cited order of another wallet -> `review` + `sender_mismatch`;
//!    no wallet -> `needs_info` (unknown sender / unknown order); a cash
//!    refund citing only unknown references -> `needs_info`.
//! 3. P7: statutory rights invoked -> `review` (the law may be more generous).
//! 4. P6: chargeback mentioned, open chargeback on the wallet, or wallet
//!    suspended -> `review`.
//! 5. P4: wallet terminated -> `denied`. (After P7/P6: where the law or a
//!    dispute may apply, a person looks first.)
//! 6. P4: refund-abuse pattern -> `review`, for every category (P1 too: a
//!    person decides what such a wallet gets).
//! 7. The category's rules: P2/P4 cash refunds (with the ID rows choosing
//!    the order), P1 failed generations, P3/P4 complaints about outputs.
//! 8. AUTH: an approval that moves money or credits for a sender without a
//!    trusted DMARC pass becomes `review`.
//!
//! # Where POLICY.md is silent (decided here)
//! - A loop (our own mail back) is flagged `auto_reply`.
//! - `sender_unverified` is flagged on every decision whose message lacks a
//!   trusted DMARC pass, `ignored` ones included; only approvals with
//!   actions change outcome (the other replies go to the wallet's own
//!   address, so they tell a spoofer nothing).
//! - ID: an order resolved while the sender has no wallet is someone
//!   else's (`sender_mismatch`). With no wallet and only unknown references
//!   the reply asks to check the order ID. Unknown references on requests
//!   that need no order (P1, P3, …) are noted and set aside. Several cited
//!   orders of the sender on a cash refund go to a person.
//! - Cash refund without an order cited: candidates are the wallet's orders
//!   bought before receipt and inside the window; among several, the only
//!   one not fully refunded is chosen; none inside the window -> the most
//!   recent order, refused by P4; a wallet without orders -> `needs_info`
//!   asking to write from the purchase address with the order ID.
//! - P2: credits used are those of successful generations, whatever their
//!   date (a pack used after asking is still used). An order with no amount
//!   or no credits goes to a person. The refund is `min(pro-rated value,
//!   amount − already refunded)`; if that is 0 the request is denied as all
//!   used (never a zero refund). Already-refunded is checked before the
//!   window, so the customer learns when it happened.
//! - P1: named generations (the wallet's, before receipt) are the targets,
//!   else every failed generation before receipt; one credit action per
//!   generation owed. None failed: a named blocked one is answered as a
//!   moderation block, otherwise a person looks (the ledger disagrees with
//!   the customer).
//! - P3: no successful generation before receipt, a generation that cost 0
//!   credits, or one that already had a courtesy credit -> a person looks.
//!   `courtesy_cap` is flagged only on courtesy requests. The cap's
//!   look-back includes both ends (a credit exactly 90 days before counts)
//!   and stops at receipt; a courtesy credit already naming the target, of
//!   any date, still stops a second one. A named generation that is not a
//!   successful one of the wallet before receipt falls back to the most
//!   recent one (the trace says so). The result attached or linked is the
//!   evidence; a generation id in the text alone is not.
//! - P4 abuse: the share test uses orders and refunds before receipt; the
//!   count test counts refund rows in the look-back. A limit of 0 disables
//!   its test.
//! - P6: an open chargeback counts whenever it was opened.
//! - `other` (nothing recognised) -> `review`, cited as P5 (how to request).

mod cash;
mod config;
mod courtesy;
mod draft;
mod failed;
mod gates;
mod identify;
mod window;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

use crate::domain::{Category, Clause, Decision, LedgerFacts, MessageFacts};

pub use cash::{RefundLimit, refund_limit};
pub use config::PolicyConfig;
use draft::{Draft, Verdict};
use identify::Identity;
pub use identify::order_reference;

/// Decides one message: the outcome, flags, actions, reply and trace.
///
/// `received_at` is our server's receipt time (every window is measured
/// to it); `now` is the processing time, shown in the trace only. The same
/// inputs always give the same decision.
pub fn decide(
    msg: &MessageFacts,
    ledger: &LedgerFacts,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let mut draft = Draft::new(msg);
    gates::observe(
        msg,
        ledger.sender_wallet.as_ref(),
        config,
        received_at,
        &mut draft,
    );
    if let Some(verdict) = gates::screen(msg, &mut draft) {
        return draft.finish(verdict);
    }
    let verdict = match identify::identify(msg, ledger, &mut draft) {
        Ok(who) => weigh(msg, &who, config, received_at, now, &mut draft),
        Err(verdict) => verdict,
    };
    let verdict = gates::auth(msg, verdict, &mut draft);
    draft.finish(verdict)
}

/// The clauses after identification, in precedence order.
fn weigh(
    msg: &MessageFacts,
    who: &Identity<'_>,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    draft: &mut Draft,
) -> Verdict {
    if let Some(verdict) = gates::statutory(msg, draft) {
        return verdict;
    }
    if let Some(verdict) = gates::chargeback(msg, who.wallet, draft) {
        return verdict;
    }
    if let Some(verdict) = gates::terminated(who.wallet, draft) {
        return verdict;
    }
    if let Some(verdict) = gates::abuse(who.wallet, config, received_at, draft) {
        return verdict;
    }
    match msg.category {
        Category::CashRefund => cash::cash_refund(who, config, received_at, now, draft),
        Category::FailedGeneration => {
            failed::failed_generation(msg, who.wallet, received_at, draft)
        }
        Category::NoResemblance | Category::WrongStyle | Category::BrokenAnatomy => {
            courtesy::courtesy(msg, who.wallet, config, received_at, draft)
        }
        Category::ContentViolation => courtesy::content_violation(draft),
        Category::Subjective => courtesy::subjective(draft),
        Category::ModerationBlock => courtesy::moderation_block(draft),
        Category::Other => unrecognised(draft),
    }
}

/// `other`: nothing the policy recognises; a person reads it.
fn unrecognised(draft: &mut Draft) -> Verdict {
    draft.note(
        Clause::P5,
        "The request matches no category of the policy (P5: a short description of \
         what is asked); a person must read it.",
        vec![],
    );
    Verdict::review()
}
