//! P2 and its P4 / ID rows: cash refunds of credit packs through Polar.
//!
//! Takes the identified sender (wallet and cited orders), the configuration,
//! the receipt time and the processing time; gives the order the request
//! is about and a cash refund of its unused part, or why not. Never refunds
//! more than the order's amount minus what was already refunded, never
//! issues a zero refund, and measures the window to the receipt time only
//! (`now` appears in the trace, never in a comparison).

use chrono::{DateTime, Utc};

use crate::domain::{Action, Clause, Order, ReplyKind, WalletFacts};

use super::PolicyConfig;
use super::draft::{Draft, Verdict, capitalised, fact};
use super::identify::{Identity, order_reference};
use super::window::{inside, relative, stamp, window_end};

/// Decides a `cash_refund` request: which order, then whether and how much.
pub(super) fn cash_refund(
    who: &Identity<'_>,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    draft: &mut Draft,
) -> Verdict {
    match pick_order(who, config, received_at, draft) {
        Ok(order) => {
            draft.order_id = Some(order.id.clone());
            draft.reply_facts.order_reference = Some(order_reference(order));
            refund_order(order, who.wallet, config, received_at, now, draft)
        }
        Err(verdict) => verdict,
    }
}

/// ID: the order a cash refund is about.
///
/// One cited order: that one. Several: a person (a request about several
/// packs is not something to split automatically). None: the wallet's
/// orders bought before receipt and inside the window; exactly one -> it;
/// several -> the one not yet fully refunded if only one is, else ask for
/// the order ID; none inside the window -> the most recent order (which P4
/// then refuses as out of window); no order at all -> ask the customer to
/// write from the purchase address with the order ID.
fn pick_order<'a>(
    who: &Identity<'a>,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    draft: &mut Draft,
) -> Result<&'a Order, Verdict> {
    let w = who.wallet;
    match who.cited.as_slice() {
        [order] => return Ok(order),
        [] => {}
        several => {
            draft.note(
                Clause::Id,
                format!(
                    "The email cites {} of the sender's orders; a request about several \
                     packs goes to a person.",
                    several.len()
                ),
                several.iter().map(|o| fact("order_id", &o.id)).collect(),
            );
            return Err(Verdict::review());
        }
    }

    let most_recent = |orders: &[&'a Order]| {
        orders
            .iter()
            .copied()
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    };
    let bought: Vec<&Order> = w
        .orders
        .iter()
        .filter(|o| o.created_at <= received_at)
        .collect();
    let Some(latest) = most_recent(&bought) else {
        draft.note(
            Clause::Id,
            format!(
                "No order cited and wallet {} has no order bought before receipt: ask the \
                 customer to write from the purchase address with the order ID.",
                w.wallet.id
            ),
            vec![fact("wallet_id", &w.wallet.id)],
        );
        return Err(Verdict::needs_info(ReplyKind::UnknownSender));
    };
    let in_window: Vec<&Order> = bought
        .iter()
        .copied()
        .filter(|o| inside(o.created_at, config.refund_window_days, received_at))
        .collect();
    let (chosen, why) = match in_window.as_slice() {
        [] => (
            latest,
            format!(
                "none of the wallet's {} order(s) is inside the {}-day window; answering \
                 about the most recent one",
                bought.len(),
                config.refund_window_days
            ),
        ),
        [only] => (
            *only,
            format!(
                "it is the wallet's one order inside the {}-day window",
                config.refund_window_days
            ),
        ),
        several => {
            let open: Vec<&Order> = several
                .iter()
                .copied()
                .filter(|o| w.committed_amount(&o.id) < o.amount)
                .collect();
            match open.as_slice() {
                [only] => (
                    *only,
                    format!(
                        "of the {} orders inside the window it is the one not yet refunded",
                        several.len()
                    ),
                ),
                [] => (
                    most_recent(several).unwrap_or(latest),
                    format!(
                        "all {} orders inside the window were refunded; answering about \
                         the most recent one",
                        several.len()
                    ),
                ),
                _ => {
                    draft.note(
                        Clause::Id,
                        format!(
                            "No order cited and {} orders inside the window are not yet \
                             refunded: ask the customer for the order ID.",
                            open.len()
                        ),
                        vec![fact("candidate_orders", open.len())],
                    );
                    return Err(Verdict::needs_info(ReplyKind::NeedOrderId));
                }
            }
        }
    };
    draft.note(
        Clause::Id,
        format!("No order cited; order {}: {why}.", order_reference(chosen)),
        vec![
            fact("order_id", &chosen.id),
            fact("order_reference", order_reference(chosen)),
        ],
    );
    Ok(chosen)
}

/// P2 / P4 for one order of the sender's wallet.
fn refund_order(
    order: &Order,
    w: &WalletFacts,
    config: &PolicyConfig,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    draft: &mut Draft,
) -> Verdict {
    let order_facts = || {
        vec![
            fact("order_id", &order.id),
            fact("order_reference", order_reference(order)),
            fact("amount", order.amount),
            fact("currency", &order.currency),
            fact("credits", order.credits),
            fact("purchased_at", stamp(order.created_at)),
        ]
    };
    if order.amount <= 0 || order.credits <= 0 {
        draft.note(
            Clause::P2,
            format!(
                "Order {} records {} minor units for {} credits; nothing can be pro-rated, \
                 a person must look.",
                order_reference(order),
                order.amount,
                order.credits
            ),
            order_facts(),
        );
        return Verdict::review();
    }

    // Every refund row counts, whatever its date, and so does every refund
    // refundd approved that the ledger does not show yet: money already
    // returned (or on its way) must never be returned twice.
    let limit = refund_limit(order, w);
    let refunded = limit.committed;
    if limit.left == 0 {
        let refunded_at = w.last_refunded_at(&order.id);
        draft.reply_facts.amount = Some(refunded);
        draft.reply_facts.currency = Some(order.currency.clone());
        draft.reply_facts.refunded_at = refunded_at;
        let mut facts = order_facts();
        facts.push(fact("already_refunded", refunded));
        if let Some(at) = refunded_at {
            facts.push(fact("refunded_at", stamp(at)));
        }
        draft.note(
            Clause::P2,
            format!(
                "Order {} was already refunded ({} of {} {} minor units{}).",
                order_reference(order),
                refunded,
                order.amount,
                order.currency,
                refunded_at
                    .map(|at| format!(", last on {}", stamp(at)))
                    .unwrap_or_default()
            ),
            facts,
        );
        return Verdict::answered(ReplyKind::AlreadyRefunded);
    }

    let window_facts = |mut facts: Vec<(String, String)>| {
        facts.push(fact("received_at", stamp(received_at)));
        facts.push(fact("processed_at", stamp(now)));
        facts.push(fact("window_days", config.refund_window_days));
        if let Some(end) = window_end(order.created_at, config.refund_window_days) {
            facts.push(fact("window_ends_at", stamp(end)));
        }
        facts
    };
    let since = relative(order.created_at, received_at);
    if !inside(order.created_at, config.refund_window_days, received_at) {
        draft.reply_facts.purchased_at = Some(order.created_at);
        draft.reply_facts.window_days = Some(config.refund_window_days);
        draft.note(
            Clause::P4,
            format!(
                "Received {since} purchase, after the {}-day refund window: \
                 cash refunds are not possible.",
                config.refund_window_days
            ),
            window_facts(order_facts()),
        );
        return Verdict::denied(ReplyKind::WindowExpired);
    }
    draft.note(
        Clause::P2,
        format!(
            "Received {since} purchase (processed {}), inside the {}-day \
             window measured to receipt.",
            relative(order.created_at, now),
            config.refund_window_days
        ),
        window_facts(order_facts()),
    );

    let (used, remaining) = (limit.credits_used, limit.credits_remaining);
    draft.reply_facts.credits_remaining = Some(remaining);
    draft.reply_facts.credits_total = Some(order.credits);
    draft.reply_facts.purchased_at = Some(order.created_at);
    draft.reply_facts.window_days = Some(config.refund_window_days);
    let usage_facts = vec![
        fact("credits_used", used),
        fact("credits_remaining", remaining),
        fact("credits", order.credits),
        fact("already_refunded", refunded),
    ];
    if remaining == 0 {
        draft.note(
            Clause::P2,
            format!(
                "Every one of the order's {} credits was used by successful generations: \
                 consumed credits are not refundable for cash.",
                order.credits
            ),
            usage_facts,
        );
        return Verdict::denied(ReplyKind::CashRefundAllUsed);
    }

    let (value, amount) = (limit.unused_value, limit.refundable);
    if amount <= 0 {
        draft.note(
            Clause::P2,
            format!(
                "The {remaining} unused credit(s) are worth {value} minor units after \
                 rounding down and earlier refunds: nothing left to refund."
            ),
            usage_facts,
        );
        return Verdict::denied(ReplyKind::CashRefundAllUsed);
    }
    let how = if used == 0 {
        format!("none of the {} credits used: full amount", order.credits)
    } else {
        format!(
            "{used} of {} credits used: floor({} × {remaining} ÷ {}) = {value}",
            order.credits, order.amount, order.credits
        )
    };
    let capped = if amount < value {
        format!(", capped at {amount} by {refunded} already refunded")
    } else {
        String::new()
    };
    draft.reply_facts.amount = Some(amount);
    draft.reply_facts.currency = Some(order.currency.clone());
    let mut facts = usage_facts;
    facts.push(fact("refund_amount", amount));
    draft.note(
        Clause::P2,
        format!(
            "{}{capped}; cash refund of {amount} {} minor units through Polar.",
            capitalised(&how),
            order.currency
        ),
        facts,
    );
    Verdict::approved(
        ReplyKind::CashRefundApproved,
        vec![Action::CashRefund {
            order_id: order.id.clone(),
            amount,
            currency: order.currency.clone(),
        }],
    )
}

/// What P2 allows to refund of one order now. The one computation of it:
/// the engine decides with it and the reviewer console proposes and
/// bounds amounts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundLimit {
    /// Minor units refunded (ledger) or approved and pending (refundd).
    pub committed: i64,
    /// The most any refund may return now: `amount - committed`, at least 0.
    pub left: i64,
    /// Credits of the order used by successful generations (at most all).
    pub credits_used: i64,
    pub credits_remaining: i64,
    /// `floor(amount × remaining ÷ credits)`: what the unused credits are
    /// worth (the whole amount for an order that records no credits).
    pub unused_value: i64,
    /// P2's refund: the unused credits' worth, capped at what is left.
    pub refundable: i64,
}

/// P2's numbers for `order` of wallet `w` (pure).
pub fn refund_limit(order: &Order, w: &WalletFacts) -> RefundLimit {
    let committed = w.committed_amount(&order.id);
    let left = (order.amount - committed).max(0);
    let credits = order.credits.max(0);
    let credits_used = w.credits_used(&order.id).clamp(0, credits);
    let credits_remaining = credits - credits_used;
    let unused_value = if credits == 0 {
        order.amount
    } else {
        pro_rated(order.amount, credits_remaining, credits)
    };
    RefundLimit {
        committed,
        left,
        credits_used,
        credits_remaining,
        unused_value,
        refundable: unused_value.min(left).max(0),
    }
}

/// `floor(amount × remaining ÷ credits)` in integers (`i128`, so the product
/// cannot overflow). `credits` is positive and `remaining` in `0..=credits`,
/// so the result lies in `0..=amount`.
fn pro_rated(amount: i64, remaining: i64, credits: i64) -> i64 {
    let value = i128::from(amount) * i128::from(remaining) / i128::from(credits);
    i64::try_from(value).unwrap_or(amount)
}

#[cfg(test)]
mod tests {
    use super::pro_rated;

    #[test]
    fn pro_rating_rounds_down_in_integers() {
        for (amount, remaining, credits, expected) in [
            (999, 4, 7, 570),
            (900, 50, 50, 900),
            (900, 0, 50, 0),
            (5, 1, 1000, 0),
            (i64::MAX, 2, 3, 6_148_914_691_236_517_204),
        ] {
            assert_eq!(pro_rated(amount, remaining, credits), expected);
        }
    }
}
