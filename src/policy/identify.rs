//! Clause ID: who is writing, and which of their orders the email cites.
//!
//! Takes the message and the ledger's answer (the sender's wallet, matched
//! by the `From:` address, and how each cited reference resolved); gives an
//! [`Identity`] to weigh the rest of the policy against, or the verdict that
//! stops here (unknown sender, unknown order, someone else's order). Never
//! discloses anything about another wallet's order: the ledger hands it
//! nothing but the reference the customer wrote, and that is all the trace
//! repeats.

use crate::domain::{
    Category, Clause, Flag, LedgerFacts, MessageFacts, Order, OrderLookup, ReplyKind, WalletFacts,
    WalletStatus,
};

use super::draft::{Draft, Verdict, fact};

/// The sender, identified: their wallet and the orders of it the email cites.
#[derive(Debug)]
pub(super) struct Identity<'a> {
    pub wallet: &'a WalletFacts,
    /// The wallet's orders the email cites, without repeats, in the order
    /// they were cited.
    pub cited: Vec<&'a Order>,
}

/// The order as the customer knows it: its invoice number if the ledger has
/// one, else its receipt number, else Polar's order id.
pub fn order_reference(order: &Order) -> String {
    order
        .invoice_number
        .clone()
        .or_else(|| order.receipt_number.clone())
        .unwrap_or_else(|| order.id.clone())
}

/// Identifies the sender and the cited orders.
///
/// Stops with `review` + `sender_mismatch` when any cited order belongs to
/// another wallet (or to any wallet when the sender has none); with
/// `needs_info` when the sender matches no wallet, or when a cash refund
/// cites only references the ledger does not know. Unknown references on
/// other requests are noted and set aside: a failed-generation credit or a
/// courtesy credit does not depend on an order.
pub(super) fn identify<'a>(
    msg: &MessageFacts,
    ledger: &'a LedgerFacts,
    draft: &mut Draft,
) -> Result<Identity<'a>, Verdict> {
    let wallet = ledger.sender_wallet.as_ref();
    if let Some(w) = wallet {
        draft.wallet_id = Some(w.wallet.id.clone());
    }

    let mut cited: Vec<&Order> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    let mut foreign: Vec<&str> = Vec::new();
    for lookup in &ledger.cited_orders {
        match lookup {
            OrderLookup::Unknown { reference } => unknown.push(reference),
            OrderLookup::OtherWallet { reference } => foreign.push(reference),
            OrderLookup::Own {
                reference,
                order_id,
            } => match wallet {
                // An order resolved while the sender has no wallet is, by
                // definition, someone else's.
                None => foreign.push(reference),
                Some(w) => match w.order(order_id) {
                    Some(order) if !cited.iter().any(|c| c.id == order.id) => cited.push(order),
                    Some(_) => {}
                    // The lookup and the wallet disagree: trust neither.
                    None => unknown.push(reference),
                },
            },
        }
    }

    if !foreign.is_empty() {
        draft.flag(Flag::SenderMismatch);
        let mut facts: Vec<_> = foreign.iter().map(|r| fact("reference", r)).collect();
        facts.push(fact(
            "sender_wallet",
            wallet.map_or("none", |w| w.wallet.id.as_str()),
        ));
        draft.note(
            Clause::Id,
            "The email cites an order that belongs to another wallet than the sender's; \
             nothing about that order is used or disclosed, a person must look.",
            facts,
        );
        return Err(Verdict::review());
    }

    let Some(w) = wallet else {
        if unknown.is_empty() {
            draft.note(
                Clause::Id,
                "The sender's address matches no wallet and the email cites no order: \
                 ask them to write from the purchase address with the order ID.",
                vec![],
            );
            return Err(Verdict::needs_info(ReplyKind::UnknownSender));
        }
        draft.note(
            Clause::Id,
            "The sender's address matches no wallet and the ledger knows none of the \
             cited order references: ask them to check the order ID.",
            unknown.iter().map(|r| fact("reference", r)).collect(),
        );
        return Err(Verdict::needs_info(ReplyKind::UnknownOrder));
    };

    draft.note(
        Clause::Id,
        format!(
            "The sender's address matches wallet {} ({}).",
            w.wallet.id,
            status_name(w)
        ),
        vec![
            fact("wallet_id", &w.wallet.id),
            fact("wallet_status", status_name(w)),
        ],
    );
    for order in &cited {
        draft.note(
            Clause::Id,
            format!(
                "The email cites the sender's order {}.",
                order_reference(order)
            ),
            vec![
                fact("order_id", &order.id),
                fact("order_reference", order_reference(order)),
            ],
        );
    }
    if !unknown.is_empty() {
        let facts: Vec<_> = unknown.iter().map(|r| fact("reference", r)).collect();
        if cited.is_empty() && msg.category == Category::CashRefund {
            draft.note(
                Clause::Id,
                "A cash refund is asked but the ledger knows none of the cited order \
                 references: ask the customer to check the order ID.",
                facts,
            );
            return Err(Verdict::needs_info(ReplyKind::UnknownOrder));
        }
        draft.note(
            Clause::Id,
            "Some cited references are unknown to the ledger; set aside, the request \
             does not depend on them.",
            facts,
        );
    }
    if let [order] = cited.as_slice() {
        draft.order_id = Some(order.id.clone());
        draft.reply_facts.order_reference = Some(order_reference(order));
    }
    Ok(Identity { wallet: w, cited })
}

fn status_name(w: &WalletFacts) -> &'static str {
    match w.wallet.status {
        WalletStatus::Active => "active",
        WalletStatus::Suspended => "suspended",
        WalletStatus::Terminated => "terminated",
    }
}
