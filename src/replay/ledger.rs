//! The ledger as it was when a stored message was decided, without what
//! refundd itself did because of that message's case. PURE: from the
//! wallet as the store reads it now ([`WalletHistory`]: the ledger rows
//! plus which case wrote each wallet credit and every cash refund refundd
//! approved) and the [`Moment`] of the decision.
//!
//! The rules, for a message of case C received at R and decided at D:
//! - orders, generations, wallet credits and chargebacks created after R
//!   are left out (the ledger as of the message's receipt);
//! - wallet credits case C wrote are left out, whenever written; a failed
//!   generation refundd marked refunded counts as not refunded when the
//!   credit that marked it is left out (C's own, or written after R); a
//!   generation whose ledger `refunded_at` is after R counts as not
//!   refunded;
//! - refunds keep the policy's rule (any date counts: money is never
//!   returned twice), minus the refunds case C's own payments produced
//!   (its actions' and payments' Polar refund ids);
//! - other cases' cash refunds count as pending when approved before D
//!   (at the same instant: a case opened earlier) and still pending at D
//!   (pending now, or settled after D) — unless one is done now and its
//!   refund is among the ledger's refunds, which already count it.
//!
//! What the store cannot tell (no history): a wallet's status and a
//! chargeback's status are as they are now; a generation's `refunded`
//! flag without `refunded_at` that the Anumi app set is taken as set
//! before R; rows the ledger import overwrote or removed are as imported
//! last.

use chrono::{DateTime, Utc};
use std::collections::HashSet;

use crate::domain::{CreditReason, LedgerFacts, OrderRef, PendingRefund, WalletFacts};
use crate::store::{ActionStatus, CaseId, OrderMatch, WalletHistory};

/// When, and for which case, a stored message was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub case: CaseId,
    /// The message's receipt time: the ledger is read as of then.
    pub received_at: DateTime<Utc>,
    /// When the engine decided it: other cases' pending refunds are
    /// counted as of then.
    pub decided_at: DateTime<Utc>,
}

/// The wallet as it was at `at`, without case `at.case`'s own effects.
pub fn wallet_as_it_was(history: &WalletHistory, at: &Moment) -> WalletFacts {
    let now = &history.facts;
    let cut = at.received_at;
    let written_by = |credit_id: &str| {
        history
            .credit_cases
            .iter()
            .find(|(id, _)| id == credit_id)
            .map(|(_, case)| *case)
    };
    let left_out: HashSet<&str> = now
        .credits
        .iter()
        .filter(|c| c.created_at > cut || written_by(&c.id) == Some(at.case))
        .map(|c| c.id.as_str())
        .collect();
    let own_refunds: HashSet<&str> = history
        .cash_refunds
        .iter()
        .filter(|r| r.case_id == at.case)
        .flat_map(|r| r.refund_ids.iter().map(String::as_str))
        .collect();

    let mut generations = Vec::with_capacity(now.generations.len());
    for g in now.generations.iter().filter(|g| g.created_at <= cut) {
        let mut g = g.clone();
        match g.refunded_at {
            Some(when) if when > cut => {
                g.refunded = false;
                g.refunded_at = None;
            }
            Some(_) => {}
            None if g.refunded => {
                // refundd marks a failed generation refunded when it
                // credits it; the earliest such credit is what marked it.
                let marking = now
                    .credits
                    .iter()
                    .filter(|c| {
                        c.reason == CreditReason::FailedGeneration
                            && c.generation_id.as_deref() == Some(g.id.as_str())
                            && written_by(&c.id).is_some()
                    })
                    .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                if marking.is_some_and(|c| left_out.contains(c.id.as_str())) {
                    g.refunded = false;
                }
            }
            None => {}
        }
        generations.push(g);
    }

    let refunds: Vec<_> = now
        .refunds
        .iter()
        .filter(|r| !own_refunds.contains(r.id.as_str()))
        .cloned()
        .collect();
    let in_ledger: HashSet<&str> = refunds.iter().map(|r| r.id.as_str()).collect();
    let pending_refunds = history
        .cash_refunds
        .iter()
        .filter(|r| r.case_id != at.case)
        .filter(|r| {
            r.approved_at < at.decided_at || (r.approved_at == at.decided_at && r.case_id < at.case)
        })
        .filter(|r| r.status == ActionStatus::Pending || r.updated_at > at.decided_at)
        .filter(|r| {
            !(r.status == ActionStatus::Done
                && r.refund_ids
                    .iter()
                    .any(|id| in_ledger.contains(id.as_str())))
        })
        .map(|r| PendingRefund {
            case: r.case_id.0,
            order_id: r.order_id.clone(),
            amount: r.amount,
            approved_at: r.approved_at,
        })
        .collect();

    WalletFacts {
        wallet: now.wallet.clone(),
        orders: now
            .orders
            .iter()
            .filter(|o| o.created_at <= cut)
            .cloned()
            .collect(),
        generations,
        credits: now
            .credits
            .iter()
            .filter(|c| !left_out.contains(c.id.as_str()))
            .cloned()
            .collect(),
        refunds,
        chargebacks: now
            .chargebacks
            .iter()
            .filter(|c| c.created_at <= cut)
            .cloned()
            .collect(),
        pending_refunds,
    }
}

/// The `(order_id, wallet_id)` a reference named at `received_at`, as the
/// store resolves it (a UUID by id, lowercased; an invoice or receipt
/// number in any case, the earliest order first), among the orders that
/// existed then.
pub fn resolve_as_it_was(
    matches: &[OrderMatch],
    reference: &OrderRef,
    received_at: DateTime<Utc>,
) -> Option<(String, String)> {
    let existed = matches.iter().filter(|o| o.created_at <= received_at);
    let found = match reference {
        OrderRef::Uuid(v) => {
            let id = v.trim().to_lowercase();
            existed.filter(|o| o.id == id).min_by(earliest)
        }
        // Invoice and receipt numbers are ASCII (`ANUMI-…`, `RCPT-…`).
        OrderRef::Invoice(v) => {
            let number = v.trim();
            existed
                .filter(|o| {
                    o.invoice_number
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(number))
                })
                .min_by(earliest)
        }
        OrderRef::Receipt(v) => {
            let number = v.trim();
            existed
                .filter(|o| {
                    o.receipt_number
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(number))
                })
                .min_by(earliest)
        }
    };
    found.map(|o| (o.id.clone(), o.wallet_id.clone()))
}

fn earliest(a: &&OrderMatch, b: &&OrderMatch) -> std::cmp::Ordering {
    (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
}

/// The ledger's side of a stored message's decision as it was: the
/// sender's wallet and the cited references, at `at`.
pub fn ledger_as_it_was(
    wallet: Option<&WalletHistory>,
    matches: &[OrderMatch],
    refs: &[OrderRef],
    at: &Moment,
) -> LedgerFacts {
    LedgerFacts::from_resolved(
        wallet.map(|w| wallet_as_it_was(w, at)),
        refs,
        refs.iter()
            .map(|r| resolve_as_it_was(matches, r, at.received_at)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Chargeback, ChargebackStatus, Generation, GenerationStatus, Order, OrderLookup, Refund,
        Wallet, WalletCredit, WalletStatus,
    };
    use crate::store::CashRefundRecord;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0).unwrap()
    }

    const C: CaseId = CaseId(7);
    const OTHER: CaseId = CaseId(3);

    fn moment() -> Moment {
        Moment {
            case: C,
            received_at: t(10, 12),
            decided_at: t(10, 13),
        }
    }

    fn order(id: &str, at: DateTime<Utc>) -> Order {
        Order {
            id: id.into(),
            wallet_id: "w".into(),
            product: "Starter 50".into(),
            credits: 50,
            amount: 900,
            tax_amount: None,
            currency: "EUR".into(),
            invoice_number: Some(format!("ANUMI-{id}")),
            receipt_number: None,
            created_at: at,
        }
    }

    fn generation(id: &str, refunded: bool, at: DateTime<Utc>) -> Generation {
        Generation {
            id: id.into(),
            wallet_id: "w".into(),
            order_id: Some("o1".into()),
            credits: 5,
            status: GenerationStatus::Failed,
            style: None,
            refunded,
            refunded_at: None,
            created_at: at,
        }
    }

    fn credit(id: &str, generation: &str, at: DateTime<Utc>) -> WalletCredit {
        WalletCredit {
            id: id.into(),
            wallet_id: "w".into(),
            credits: 5,
            reason: CreditReason::FailedGeneration,
            generation_id: Some(generation.into()),
            created_at: at,
        }
    }

    fn refund_action(
        case: CaseId,
        status: ActionStatus,
        approved_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        refund: Option<&str>,
    ) -> CashRefundRecord {
        CashRefundRecord {
            case_id: case,
            order_id: "o1".into(),
            amount: 400,
            status,
            approved_at,
            updated_at,
            refund_ids: refund.into_iter().map(str::to_owned).collect(),
        }
    }

    fn history() -> WalletHistory {
        WalletHistory {
            facts: WalletFacts {
                wallet: Wallet {
                    id: "w".into(),
                    email: "ann@example.com".into(),
                    status: WalletStatus::Active,
                    created_at: t(1, 0),
                },
                orders: vec![],
                generations: vec![],
                credits: vec![],
                refunds: vec![],
                chargebacks: vec![],
                pending_refunds: vec![],
            },
            credit_cases: vec![],
            cash_refunds: vec![],
        }
    }

    #[test]
    fn rows_created_after_receipt_are_left_out() {
        let mut h = history();
        h.facts.orders = vec![
            order("o1", t(2, 0)),
            order("o2", t(10, 12)),
            order("o3", t(11, 0)),
        ];
        h.facts.generations = vec![
            generation("g1", false, t(3, 0)),
            generation("g2", false, t(12, 0)),
        ];
        h.facts.credits = vec![credit("c1", "gx", t(4, 0)), credit("c2", "gy", t(10, 14))];
        h.facts.chargebacks = vec![
            Chargeback {
                id: "cb1".into(),
                order_id: "o1".into(),
                status: ChargebackStatus::Open,
                created_at: t(9, 0),
            },
            Chargeback {
                id: "cb2".into(),
                order_id: "o1".into(),
                status: ChargebackStatus::Open,
                created_at: t(20, 0),
            },
        ];
        let w = wallet_as_it_was(&h, &moment());
        let ids = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            w.orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            ids(vec!["o1", "o2"])
        );
        assert_eq!(
            w.generations
                .iter()
                .map(|g| g.id.clone())
                .collect::<Vec<_>>(),
            ids(vec!["g1"])
        );
        assert_eq!(
            w.credits.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            ids(vec!["c1"])
        );
        assert_eq!(
            w.chargebacks
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>(),
            ids(vec!["cb1"])
        );
    }

    #[test]
    fn a_generation_this_case_credited_counts_as_not_refunded() {
        let mut h = history();
        h.facts.generations = vec![generation("g1", true, t(3, 0))];
        // The case's own credit, written when it was decided.
        h.facts.credits = vec![credit("wc-case-7-g1", "g1", t(10, 13))];
        h.credit_cases = vec![("wc-case-7-g1".into(), C)];
        let w = wallet_as_it_was(&h, &moment());
        assert!(w.credits.is_empty());
        assert!(!w.generations[0].refunded);
    }

    #[test]
    fn a_case_own_credit_is_left_out_even_when_written_before_receipt() {
        let mut h = history();
        h.facts.generations = vec![generation("g1", true, t(3, 0))];
        h.facts.credits = vec![credit("wc-case-7-g1", "g1", t(5, 0))];
        h.credit_cases = vec![("wc-case-7-g1".into(), C)];
        let w = wallet_as_it_was(&h, &moment());
        assert!(w.credits.is_empty());
        assert!(!w.generations[0].refunded);
    }

    #[test]
    fn a_generation_another_case_credited_before_receipt_stays_refunded() {
        let mut h = history();
        h.facts.generations = vec![generation("g1", true, t(3, 0))];
        h.facts.credits = vec![credit("wc-case-3-g1", "g1", t(5, 0))];
        h.credit_cases = vec![("wc-case-3-g1".into(), OTHER)];
        let w = wallet_as_it_was(&h, &moment());
        assert_eq!(w.credits.len(), 1);
        assert!(w.generations[0].refunded);
    }

    #[test]
    fn a_generation_another_case_credited_after_receipt_was_not_refunded_yet() {
        let mut h = history();
        h.facts.generations = vec![generation("g1", true, t(3, 0))];
        h.facts.credits = vec![credit("wc-case-3-g1", "g1", t(11, 0))];
        h.credit_cases = vec![("wc-case-3-g1".into(), OTHER)];
        let w = wallet_as_it_was(&h, &moment());
        assert!(w.credits.is_empty());
        assert!(!w.generations[0].refunded);
    }

    #[test]
    fn a_generation_the_app_refunded_without_a_time_stays_refunded() {
        let mut h = history();
        h.facts.generations = vec![generation("g1", true, t(3, 0))];
        let w = wallet_as_it_was(&h, &moment());
        assert!(w.generations[0].refunded);
    }

    #[test]
    fn a_refund_time_after_receipt_means_not_refunded_then() {
        let mut h = history();
        let mut late = generation("g1", true, t(3, 0));
        late.refunded_at = Some(t(10, 18));
        let mut early = generation("g2", true, t(3, 0));
        early.refunded_at = Some(t(4, 0));
        h.facts.generations = vec![late, early];
        let w = wallet_as_it_was(&h, &moment());
        assert!(!w.generations[0].refunded);
        assert_eq!(w.generations[0].refunded_at, None);
        assert!(w.generations[1].refunded);
        assert_eq!(w.generations[1].refunded_at, Some(t(4, 0)));
    }

    #[test]
    fn refunds_count_at_any_date_except_those_this_case_paid() {
        let mut h = history();
        let refund = |id: &str, at| Refund {
            id: id.into(),
            order_id: "o1".into(),
            amount: 400,
            created_at: at,
        };
        h.facts.refunds = vec![refund("rf_app", t(20, 0)), refund("polar_7", t(11, 0))];
        h.cash_refunds = vec![refund_action(
            C,
            ActionStatus::Done,
            t(10, 13),
            t(11, 0),
            Some("polar_7"),
        )];
        let w = wallet_as_it_was(&h, &moment());
        assert_eq!(w.refunds.len(), 1);
        assert_eq!(w.refunds[0].id, "rf_app");
        assert!(
            w.pending_refunds.is_empty(),
            "its own refund is never pending"
        );
    }

    #[test]
    fn another_case_pending_refund_counts_if_approved_before_and_pending_at_the_decision() {
        let at = moment();
        let cases = [
            // approved before, still pending now
            (
                refund_action(OTHER, ActionStatus::Pending, t(9, 0), t(9, 0), None),
                true,
            ),
            // approved after the decision
            (
                refund_action(OTHER, ActionStatus::Pending, t(10, 14), t(10, 14), None),
                false,
            ),
            // approved before, failed after the decision: pending then
            (
                refund_action(OTHER, ActionStatus::Failed, t(9, 0), t(11, 0), None),
                true,
            ),
            // approved before, failed before the decision
            (
                refund_action(OTHER, ActionStatus::Failed, t(9, 0), t(10, 12), None),
                false,
            ),
            // done after the decision, its refund in the ledger: counted there
            (
                refund_action(
                    OTHER,
                    ActionStatus::Done,
                    t(9, 0),
                    t(11, 0),
                    Some("polar_3"),
                ),
                false,
            ),
            // same instant as the decision, a case opened earlier
            (
                refund_action(OTHER, ActionStatus::Pending, t(10, 13), t(10, 13), None),
                true,
            ),
            // same instant, a case opened later
            (
                refund_action(CaseId(9), ActionStatus::Pending, t(10, 13), t(10, 13), None),
                false,
            ),
        ];
        for (i, (action, counted)) in cases.into_iter().enumerate() {
            let mut h = history();
            h.facts.refunds = vec![Refund {
                id: "polar_3".into(),
                order_id: "o1".into(),
                amount: 400,
                created_at: t(11, 0),
            }];
            h.cash_refunds = vec![action];
            let w = wallet_as_it_was(&h, &at);
            assert_eq!(w.pending_refunds.len(), usize::from(counted), "row {i}");
        }
    }

    #[test]
    fn a_cited_order_resolves_among_the_orders_that_existed() {
        let matches = vec![
            OrderMatch {
                id: "o1".into(),
                wallet_id: "w".into(),
                invoice_number: Some("ANUMI-AAAAAAAA-0001".into()),
                receipt_number: None,
                created_at: t(2, 0),
            },
            OrderMatch {
                id: "o9".into(),
                wallet_id: "w".into(),
                invoice_number: Some("ANUMI-LATER-0001".into()),
                receipt_number: Some("RCPT-LATER-0001".into()),
                created_at: t(11, 0),
            },
        ];
        let at = t(10, 12);
        assert_eq!(
            resolve_as_it_was(
                &matches,
                &OrderRef::Invoice("anumi-aaaaaaaa-0001 ".into()),
                at
            ),
            Some(("o1".into(), "w".into()))
        );
        assert_eq!(
            resolve_as_it_was(&matches, &OrderRef::Uuid("O1".into()), at),
            Some(("o1".into(), "w".into()))
        );
        assert_eq!(
            resolve_as_it_was(&matches, &OrderRef::Invoice("ANUMI-LATER-0001".into()), at),
            None
        );
        assert_eq!(
            resolve_as_it_was(
                &matches,
                &OrderRef::Receipt("rcpt-later-0001".into()),
                t(12, 0)
            ),
            Some(("o9".into(), "w".into()))
        );
    }

    #[test]
    fn a_cited_order_of_another_wallet_says_nothing_more() {
        let matches = vec![OrderMatch {
            id: "o5".into(),
            wallet_id: "w_other".into(),
            invoice_number: None,
            receipt_number: None,
            created_at: t(2, 0),
        }];
        let h = history();
        let refs = [OrderRef::Uuid("o5".into()), OrderRef::Uuid("nope".into())];
        let ledger = ledger_as_it_was(Some(&h), &matches, &refs, &moment());
        assert_eq!(
            ledger.cited_orders,
            vec![
                OrderLookup::OtherWallet {
                    reference: "o5".into()
                },
                OrderLookup::Unknown {
                    reference: "nope".into()
                }
            ]
        );
        assert_eq!(ledger.sender_wallet.unwrap().wallet.id, "w");
    }
}
