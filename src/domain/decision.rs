//! The `Decision`: outcome, category, flags, actions, the clause-by-clause
//! trace, and which reply to send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub use super::ledger::CreditReason;
use super::{Category, Clause, Flag, Outcome};

/// Something the decision does outside the reply: moves money or credits.
/// Serialized with a `kind` tag (`cash_refund`, `wallet_credit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Money back through Polar; `amount` in minor units, tax excluded.
    CashRefund {
        order_id: String,
        amount: i64,
        currency: String,
    },
    /// Credits written back into the wallet in the ledger.
    WalletCredit {
        wallet_id: String,
        credits: i64,
        reason: CreditReason,
        /// The generation compensated, when the decision names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation_id: Option<String>,
    },
}

impl Decision {
    /// Whether `other` decides the same: the same outcome and the same
    /// actions (kind, order or wallet, amount or credits). What shadow
    /// mode and replay count as a person agreeing with the engine.
    pub fn agrees_with(&self, other: &Decision) -> bool {
        self.outcome == other.outcome && self.actions == other.actions
    }
}

impl Action {
    /// One line for people: `cash refund of 900 EUR (minor units) on order
    /// o-1`, `wallet credit of 2 credit(s) (courtesy)`.
    pub fn describe(&self) -> String {
        match self {
            Action::CashRefund {
                order_id,
                amount,
                currency,
            } => format!("cash refund of {amount} {currency} (minor units) on order {order_id}"),
            Action::WalletCredit {
                credits, reason, ..
            } => format!("wallet credit of {credits} credit(s) ({})", reason.as_str()),
        }
    }
}

/// One step of the trace: a clause that applied, what it found and the
/// facts it used, in words a reviewer understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub clause: Clause,
    /// A sentence for the reviewer, e.g. "received 13 days 2 hours after
    /// purchase, inside the 14-day window".
    pub finding: String,
    /// The facts used, as `name -> value` pairs (ids, amounts, times).
    #[serde(default)]
    pub facts: Vec<(String, String)>,
}

/// Which reply template family answers the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// P1: the failed generation's credits are back.
    FailedGenerationCredited,
    /// P1: already credited (the reply says when).
    FailedGenerationAlreadyRefunded,
    /// P2: full or pro-rated cash refund on its way.
    CashRefundApproved,
    /// P2: every credit of the order used.
    CashRefundAllUsed,
    /// P2: the order was already refunded (the reply says when).
    AlreadyRefunded,
    /// P4: asked after the 14-day window.
    WindowExpired,
    /// P3: courtesy wallet credit granted.
    CourtesyCredited,
    /// P3: please attach or link the result.
    NeedResult,
    /// P4: subjective dissatisfaction.
    SubjectiveDenied,
    /// P4: moderation-blocked uploads consume no credits.
    ModerationBlock,
    /// P4: terminated wallet.
    TerminatedDenied,
    /// ID: write from the purchase address with the order ID.
    UnknownSender,
    /// ID: several candidate orders, which one?
    NeedOrderId,
    /// ID: the cited order ID is not known.
    UnknownOrder,
    /// A person will look at it; by when the customer hears back.
    ReviewAcknowledged,
    /// The customer never answered our question: the case is closed (the
    /// deadline sweep's final note; says after how many days).
    NeedsInfoClosed,
    /// A reviewer denied under a reason the operator configured
    /// (`[[review.deny_reasons]]`): the body is that reason's own template,
    /// named by [`ReplyFacts::template`].
    ReasonDenied,
    /// Nothing we could classify; a person will look at it.
    /// Never sent: `ignored` messages get no reply.
    NoReply,
}

impl ReplyKind {
    /// The template base name under `templates/reply/` (snake_case).
    /// `reason_denied` has no template of its own: its body is the
    /// configured reason's ([`ReplyFacts::template`]).
    pub fn template_name(self) -> &'static str {
        match self {
            ReplyKind::FailedGenerationCredited => "failed_generation_credited",
            ReplyKind::FailedGenerationAlreadyRefunded => "failed_generation_already_refunded",
            ReplyKind::CashRefundApproved => "cash_refund_approved",
            ReplyKind::CashRefundAllUsed => "cash_refund_all_used",
            ReplyKind::AlreadyRefunded => "already_refunded",
            ReplyKind::WindowExpired => "window_expired",
            ReplyKind::CourtesyCredited => "courtesy_credited",
            ReplyKind::NeedResult => "need_result",
            ReplyKind::SubjectiveDenied => "subjective_denied",
            ReplyKind::ModerationBlock => "moderation_block",
            ReplyKind::TerminatedDenied => "terminated_denied",
            ReplyKind::UnknownSender => "unknown_sender",
            ReplyKind::NeedOrderId => "need_order_id",
            ReplyKind::UnknownOrder => "unknown_order",
            ReplyKind::ReviewAcknowledged => "review_acknowledged",
            ReplyKind::NeedsInfoClosed => "needs_info_closed",
            ReplyKind::ReasonDenied => "reason_denied",
            ReplyKind::NoReply => "no_reply",
        }
    }
}

/// What the policy decided for one case, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub category: Category,
    pub flags: BTreeSet<Flag>,
    pub actions: Vec<Action>,
    /// Every clause that applied, in the order the engine weighed them;
    /// the last step says why it stopped.
    pub trace: Vec<TraceStep>,
    pub reply: ReplyKind,
    /// The order the decision is about, once identified.
    pub order_id: Option<String>,
    /// The sender's wallet, once identified.
    pub wallet_id: Option<String>,
    /// The generation the decision is about (P1/P3 target), if any.
    pub generation_id: Option<String>,
    /// Facts the reply quotes; never about other wallets.
    #[serde(default)]
    pub reply_facts: ReplyFacts,
}

/// What the reply quotes to the customer, filled by the engine (or a
/// reviewer) from the facts it used. Never about another wallet's orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyFacts {
    /// Money refunded (or already refunded), minor units, tax excluded.
    pub amount: Option<i64>,
    /// ISO 4217 code of `amount`.
    pub currency: Option<String>,
    /// Credits written back to the wallet.
    pub credits: Option<i64>,
    /// The order as the customer knows it: invoice number if the ledger
    /// has one, else receipt number, else the order id.
    pub order_reference: Option<String>,
    /// When an earlier refund or credit happened (already-refunded replies).
    pub refunded_at: Option<DateTime<Utc>>,
    /// Credits of the order left unused / in the pack (pro-rated refunds).
    pub credits_remaining: Option<i64>,
    pub credits_total: Option<i64>,
    /// Purchase time of the order (window replies).
    pub purchased_at: Option<DateTime<Utc>>,
    /// The refund window in days, as configured (window replies).
    pub window_days: Option<i64>,
    /// The body template of a [`ReplyKind::ReasonDenied`] reply: the
    /// configured deny reason's `template` (e.g. `deny_duplicate_order`).
    /// Every other kind has a template of its own and ignores this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Days a closed case waited for the customer's answer
    /// (`needs_info_closed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_days: Option<i64>,
}

impl Decision {
    /// The clause ids the trace cites, without repeats, in order.
    pub fn clauses(&self) -> Vec<Clause> {
        let mut seen = Vec::new();
        for step in &self.trace {
            if !seen.contains(&step.clause) {
                seen.push(step.clause);
            }
        }
        seen
    }
}
