//! The gates around the category rules: SCREEN (automatic mail), the
//! observations that become flags, P7 (statutory rights), P6 (chargebacks,
//! suspension), P4 (terminated wallet, refund-abuse pattern) and the AUTH
//! gate that turns an unauthenticated approval into review.
//!
//! Takes the message, the sender's wallet facts and the configuration;
//! gives flags, trace steps and, when a gate closes, the verdict. Never
//! moves money and never reads anything but its arguments.

use chrono::{DateTime, Utc};

use crate::domain::{
    Action, AutoKind, ChargebackStatus, Clause, Flag, MessageFacts, Outcome, ReplyKind,
    WalletFacts, WalletStatus,
};

use super::PolicyConfig;
use super::courtesy;
use super::draft::{Draft, Verdict, capitalised, fact};
use super::window::{in_days_before, stamp};

/// SCREEN: automatic mail is recorded and never answered.
pub(super) fn screen(msg: &MessageFacts, draft: &mut Draft) -> Option<Verdict> {
    let kind = msg.auto?;
    let (flag, name, what) = match kind {
        AutoKind::AutoReply => (Flag::AutoReply, "auto_reply", "an automatic reply"),
        AutoKind::Bounce => (Flag::Bounce, "bounce", "a bounce"),
        // A loop is our own automatic mail coming back: an auto-reply.
        AutoKind::Loop => (Flag::AutoReply, "loop", "our own mail coming back (a loop)"),
        // The flags vocabulary is stable: a machine report is automatic mail.
        AutoKind::Report => (
            Flag::AutoReply,
            "report",
            "a machine report (DMARC aggregate, TLS-RPT or abuse feedback)",
        ),
    };
    draft.flag(flag);
    draft.note(
        Clause::Screen,
        format!("The message is {what}: recorded, never answered."),
        vec![fact("auto", name)],
    );
    Some(Verdict::ignored())
}

/// Flags everything observable about the sender, whatever clause decides:
/// `sender_unverified`, `terminated`, `suspended`, `chargeback` (an open
/// dispute in the ledger), `abuse_pattern`, and `courtesy_cap` when a
/// courtesy credit is asked while the wallet is at the cap.
pub(super) fn observe(
    msg: &MessageFacts,
    wallet: Option<&WalletFacts>,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    draft: &mut Draft,
) {
    if !msg.auth.dmarc_pass {
        draft.flag(Flag::SenderUnverified);
    }
    let Some(w) = wallet else { return };
    match w.wallet.status {
        WalletStatus::Active => {}
        WalletStatus::Suspended => draft.flag(Flag::Suspended),
        WalletStatus::Terminated => draft.flag(Flag::Terminated),
    }
    if w.chargebacks
        .iter()
        .any(|c| c.status == ChargebackStatus::Open)
    {
        draft.flag(Flag::Chargeback);
    }
    if AbuseCount::of(w, config, received_at).is_pattern(config) {
        draft.flag(Flag::AbusePattern);
    }
    if msg.category.is_courtesy_complaint() && courtesy::at_cap(w, config, received_at) {
        draft.flag(Flag::CourtesyCap);
    }
}

/// P7: consumer-protection law may be more generous than the policy.
pub(super) fn statutory(msg: &MessageFacts, draft: &mut Draft) -> Option<Verdict> {
    if !msg.flags.contains(&Flag::StatutoryRights) {
        return None;
    }
    draft.note(
        Clause::P7,
        "The customer invokes statutory / consumer-protection rights; where the law is \
         more generous it applies, so a person must look.",
        vec![],
    );
    Some(Verdict::review())
}

/// P6: a chargeback mentioned, an open chargeback on any of the wallet's
/// orders (whenever it was opened: the dispute is open now), or a suspended
/// wallet.
pub(super) fn chargeback(
    msg: &MessageFacts,
    w: &WalletFacts,
    draft: &mut Draft,
) -> Option<Verdict> {
    let mut reasons = Vec::new();
    let mut facts = Vec::new();
    if msg.flags.contains(&Flag::Chargeback) {
        reasons.push("the customer mentions a chargeback or bank dispute".to_owned());
    }
    for cb in w
        .chargebacks
        .iter()
        .filter(|c| c.status == ChargebackStatus::Open)
    {
        reasons.push(format!("chargeback {} is open", cb.id));
        facts.push(fact("chargeback_id", &cb.id));
        facts.push(fact("chargeback_order_id", &cb.order_id));
        facts.push(fact("chargeback_opened_at", stamp(cb.created_at)));
    }
    if w.wallet.status == WalletStatus::Suspended {
        reasons.push("the wallet is suspended".to_owned());
        facts.push(fact("wallet_status", "suspended"));
    }
    if reasons.is_empty() {
        return None;
    }
    draft.note(
        Clause::P6,
        format!(
            "{}: a person must look during a dispute.",
            capitalised(&reasons.join("; "))
        ),
        facts,
    );
    Some(Verdict::review())
}

/// P4: a wallet terminated for ToS violations is not refundable.
pub(super) fn terminated(w: &WalletFacts, draft: &mut Draft) -> Option<Verdict> {
    if w.wallet.status != WalletStatus::Terminated {
        return None;
    }
    draft.note(
        Clause::P4,
        format!(
            "Wallet {} is terminated for ToS violations: not refundable.",
            w.wallet.id
        ),
        vec![fact("wallet_status", "terminated")],
    );
    Some(Verdict::denied(ReplyKind::TerminatedDenied))
}

/// P4: a refund-abuse pattern sends the request to a person.
pub(super) fn abuse(
    w: &WalletFacts,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    draft: &mut Draft,
) -> Option<Verdict> {
    let count = AbuseCount::of(w, config, received_at);
    if !count.is_pattern(config) {
        return None;
    }
    draft.note(
        Clause::P4,
        format!(
            "Refund-abuse pattern: {} cash refund(s) in the {} days before receipt (limit {}), \
             {} order(s) refunded at least {}% (limit {}); a person must look.",
            count.recent_refunds,
            config.abuse_window_days,
            config.abuse_max_cash_refunds,
            count.heavily_refunded_orders,
            config.abuse_refunded_share_percent,
            config.abuse_refunded_orders,
        ),
        vec![
            fact("recent_cash_refunds", count.recent_refunds),
            fact("heavily_refunded_orders", count.heavily_refunded_orders),
        ],
    );
    Some(Verdict::review())
}

/// What the abuse pattern counts, from ledger rows dated no later than the
/// email's receipt (a refund made after it, e.g. by this very case, never
/// counts against the customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AbuseCount {
    /// Refunds dated within `abuse_window_days` before receipt.
    pub recent_refunds: u64,
    /// Orders refunded by at least `abuse_refunded_share_percent` of their
    /// amount (refunds before receipt).
    pub heavily_refunded_orders: u64,
}

impl AbuseCount {
    /// Counts the wallet's refunds as of `received_at`.
    pub fn of(w: &WalletFacts, config: &PolicyConfig, received_at: DateTime<Utc>) -> Self {
        let before = |at: DateTime<Utc>| at <= received_at;
        let recent_refunds = w
            .refunds
            .iter()
            .filter(|r| in_days_before(r.created_at, config.abuse_window_days, received_at))
            .count() as u64;
        let share = i128::from(config.abuse_refunded_share_percent);
        let heavily_refunded_orders = w
            .orders
            .iter()
            .filter(|o| before(o.created_at) && o.amount > 0)
            .filter(|o| {
                let refunded: i128 = w
                    .refunds
                    .iter()
                    .filter(|r| r.order_id == o.id && before(r.created_at))
                    .map(|r| i128::from(r.amount))
                    .sum();
                refunded * 100 >= i128::from(o.amount) * share
            })
            .count() as u64;
        AbuseCount {
            recent_refunds,
            heavily_refunded_orders,
        }
    }

    /// Whether either limit is reached. A limit of 0 switches its test off
    /// (otherwise every wallet would match).
    pub fn is_pattern(self, config: &PolicyConfig) -> bool {
        let reached = |count: u64, limit: u32| limit > 0 && count >= u64::from(limit);
        reached(self.recent_refunds, config.abuse_max_cash_refunds)
            || reached(self.heavily_refunded_orders, config.abuse_refunded_orders)
    }
}

/// AUTH: without an authenticated sender (see `extract::auth` for the
/// `[sender_auth] mode` rule), an approval that moves money or credits
/// becomes review; the trace says what would have been approved and what
/// every source said. Every other decision records, on its deciding step,
/// the authentication evidence it had (`auth_evidence`, `sender_auth`).
/// Other outcomes stand (their replies go to the wallet's own address).
pub(super) fn auth(msg: &MessageFacts, verdict: Verdict, draft: &mut Draft) -> Verdict {
    let evidence = vec![
        fact(
            "auth_evidence",
            msg.auth.used.map_or("none", |u| u.as_str()),
        ),
        fact("sender_auth", msg.auth.summary()),
    ];
    let moves = verdict.outcome == Outcome::Approved && !verdict.actions.is_empty();
    if !moves || msg.auth.dmarc_pass {
        draft.attest(evidence);
        return verdict;
    }
    let would: Vec<String> = verdict.actions.iter().map(describe_action).collect();
    let mut facts = vec![
        fact(
            "dmarc_result",
            msg.auth.dmarc_result.as_deref().unwrap_or("none"),
        ),
        fact(
            "authserv_id",
            msg.auth.authserv_id.as_deref().unwrap_or("none"),
        ),
    ];
    facts.extend(evidence);
    draft.note(
        Clause::Auth,
        format!(
            "The sender is not authenticated ({}), so nothing is moved; would have approved: {}.",
            msg.auth.summary(),
            would.join("; ")
        ),
        facts,
    );
    Verdict::review()
}

/// An action in words, for the trace.
pub(super) fn describe_action(action: &Action) -> String {
    match action {
        Action::CashRefund {
            order_id,
            amount,
            currency,
        } => format!("cash refund of {amount} {currency} (minor units) for order {order_id}"),
        Action::WalletCredit {
            wallet_id,
            credits,
            reason,
            generation_id,
        } => format!(
            "{} wallet credit of {credits} credit(s) to {wallet_id}{}",
            reason.as_str(),
            generation_id
                .as_deref()
                .map(|g| format!(" for generation {g}"))
                .unwrap_or_default()
        ),
    }
}
