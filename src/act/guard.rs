//! The checks a cash refund passes before refundd posts it: pure functions
//! of the refund, the order as Polar has it now, the ledger and the
//! operator's guard rails.
//!
//! Takes: plain values (no I/O). Gives: either "post it" (with whether to
//! revoke the pack's benefits) or a [`TraceStep`] (clause P2) that says in
//! words why a person must look instead; the payment stage appends it to
//! the case's trace so `refundd case` shows it. Never reads the clock: the
//! daily total is computed by the caller for the UTC day of `now`.

use crate::act::config::PolarSettings;
use crate::act::polar::{Dispute, Order};
use crate::domain::{Clause, TraceStep};
use crate::store::LedgerOrderMoney;

/// A reason for review: a P2 trace step.
pub type Finding = TraceStep;

/// Polar may take the refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Post {
    /// Remove the pack's credits: only for a full refund of an unused pack.
    pub revoke_benefits: bool,
}

/// What the pre-refund check looks at.
#[derive(Debug, Clone, Copy)]
pub struct OrderCheck<'a> {
    /// The refund, minor units excluding tax.
    pub amount: i64,
    /// The refund's currency as the ledger spells it.
    pub currency: &'a str,
    /// The order, as Polar has it now.
    pub order: &'a Order,
    /// The order in the ledger, if the ledger knows it.
    pub ledger: Option<&'a LedgerOrderMoney>,
    /// Open disputes on the order.
    pub open_disputes: &'a [Dispute],
    /// Pending refunds on the order that are not this one (Polar's pending
    /// refunds do not lower `refundable_amount` yet).
    pub other_pending: i64,
}

fn finding(text: String, facts: Vec<(&str, String)>) -> Finding {
    TraceStep {
        clause: Clause::P2,
        finding: text,
        facts: facts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Money as `9.00 EUR` for findings, in the currency's own decimals (the
/// facts keep the minor units).
pub fn money(amount: i64, currency: &str) -> String {
    crate::reply::format_money(amount, currency)
}

/// The switch: with `auto_refunds = false` every cash refund goes to a
/// person.
pub fn switch(settings: &PolarSettings) -> Option<Finding> {
    (!settings.auto_refunds).then(|| {
        finding(
            "automatic refunds are switched off (polar.auto_refunds = false); a person pays or declines this refund"
                .into(),
            vec![("auto_refunds", "false".into())],
        )
    })
}

/// The limits: one refund at most `max_refund_amount`, and today's
/// accepted refunds in this currency plus this one at most
/// `max_daily_refund_total`.
pub fn limits(
    settings: &PolarSettings,
    amount: i64,
    currency: &str,
    today_total: i64,
) -> Option<Finding> {
    if amount > settings.max_refund_amount {
        return Some(finding(
            format!(
                "the refund of {} is above the automatic limit of {} per refund (polar.max_refund_amount); a person must approve it",
                money(amount, currency),
                money(settings.max_refund_amount, currency)
            ),
            vec![
                ("amount", amount.to_string()),
                ("max_refund_amount", settings.max_refund_amount.to_string()),
            ],
        ));
    }
    if today_total.saturating_add(amount) > settings.max_daily_refund_total {
        return Some(finding(
            format!(
                "{} already refunded automatically today (UTC) plus this {} would pass the daily limit of {} (polar.max_daily_refund_total); a person must approve it",
                money(today_total, currency),
                money(amount, currency),
                money(settings.max_daily_refund_total, currency)
            ),
            vec![
                ("amount", amount.to_string()),
                ("refunded_today", today_total.to_string()),
                (
                    "max_daily_refund_total",
                    settings.max_daily_refund_total.to_string(),
                ),
            ],
        ));
    }
    None
}

/// The dry-run record: what would have been refunded.
pub fn dry_run(amount: i64, currency: &str, order_id: &str, post: Post) -> Finding {
    finding(
        format!(
            "dry run (polar.dry_run = true): would have refunded {} on order {order_id}{}; nothing was sent to Polar, a person pays by hand",
            money(amount, currency),
            if post.revoke_benefits {
                " and revoked the unused pack"
            } else {
                ""
            }
        ),
        vec![
            ("amount", amount.to_string()),
            ("order_id", order_id.to_owned()),
            ("revoke_benefits", post.revoke_benefits.to_string()),
        ],
    )
}

/// The order as Polar has it now against the refund and the ledger: same
/// currency, nothing disputed, enough still refundable (after other
/// pending refunds), and no less than the ledger thought.
pub fn check_order(check: &OrderCheck<'_>) -> Result<Post, Finding> {
    let order = check.order;
    let amount = check.amount;
    if !order.currency.eq_ignore_ascii_case(check.currency) {
        return Err(finding(
            format!(
                "Polar says order {} is in {}, the refund is in {}; a person must look",
                order.id,
                order.currency.to_uppercase(),
                check.currency.to_uppercase()
            ),
            vec![
                ("polar_currency", order.currency.clone()),
                ("refund_currency", check.currency.to_owned()),
            ],
        ));
    }
    if let Some(dispute) = check.open_disputes.first() {
        return Err(finding(
            format!(
                "order {} has an open chargeback at Polar (dispute {}, {}); no refund while it is open",
                order.id, dispute.id, dispute.status
            ),
            vec![
                ("dispute_id", dispute.id.clone()),
                ("dispute_status", dispute.status.to_string()),
            ],
        ));
    }
    let available = order.refundable_amount - check.other_pending;
    if available < amount {
        return Err(finding(
            format!(
                "Polar can refund only {} more on order {} ({} refundable, {} in other pending refunds), less than the {} approved; a person must look",
                money(available.max(0), &order.currency),
                order.id,
                money(order.refundable_amount, &order.currency),
                money(check.other_pending, &order.currency),
                money(amount, &order.currency)
            ),
            vec![
                ("refundable_amount", order.refundable_amount.to_string()),
                ("other_pending_refunds", check.other_pending.to_string()),
                ("amount", amount.to_string()),
            ],
        ));
    }
    if let Some(ledger) = check.ledger {
        let expected = ledger.amount - ledger.refunded;
        if order.refundable_amount < expected {
            return Err(finding(
                format!(
                    "Polar can refund {} on order {} but the ledger expected {}: money went back that refundd does not know of; a person must look",
                    money(order.refundable_amount, &order.currency),
                    order.id,
                    money(expected, &order.currency)
                ),
                vec![
                    ("refundable_amount", order.refundable_amount.to_string()),
                    ("ledger_refundable", expected.to_string()),
                ],
            ));
        }
    }
    let unused = check.ledger.is_some_and(|l| l.credits_used == 0);
    Ok(Post {
        revoke_benefits: amount == order.net_amount && order.refunded_amount == 0 && unused,
    })
}

/// Polar refused the refund (a typed error): the finding for the trace.
pub fn refused(reason: &str, amount: i64, currency: &str) -> Finding {
    finding(
        format!(
            "Polar refused the refund of {}: {reason}; a person must look",
            money(amount, currency)
        ),
        vec![("polar_error", reason.to_owned())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::polar::{DisputeStatus, OrderCustomer, OrderStatus};
    use chrono::TimeZone;

    fn order(net: i64, refundable: i64, refunded: i64) -> Order {
        Order {
            id: "o-1".into(),
            created_at: chrono::Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
            status: OrderStatus::Paid,
            paid: true,
            net_amount: net,
            tax_amount: 171,
            total_amount: net + 171,
            refunded_amount: refunded,
            refunded_tax_amount: 0,
            refundable_amount: refundable,
            refundable_tax_amount: 171,
            currency: "eur".into(),
            invoice_number: None,
            receipt_number: None,
            customer_id: "c".into(),
            customer: OrderCustomer {
                id: "c".into(),
                email: None,
                external_id: None,
                name: None,
            },
            product: None,
            description: None,
            metadata: Default::default(),
        }
    }

    fn ledger(amount: i64, refunded: i64, used: i64) -> LedgerOrderMoney {
        LedgerOrderMoney {
            amount,
            currency: "EUR".into(),
            refunded,
            credits_used: used,
        }
    }

    fn dispute() -> Dispute {
        Dispute {
            id: "d-1".into(),
            created_at: chrono::Utc.with_ymd_and_hms(2026, 6, 2, 10, 0, 0).unwrap(),
            status: DisputeStatus::NeedsResponse,
            resolved: false,
            closed: false,
            amount: 900,
            tax_amount: 171,
            currency: "eur".into(),
            reason: None,
            evidence_due_by: None,
            order_id: "o-1".into(),
        }
    }

    #[test]
    fn the_order_check_posts_only_what_polar_and_the_ledger_agree_on() {
        let disputes = [dispute()];
        // (name, amount, order, ledger, disputes, other pending, expected:
        // Ok(revoke_benefits) or Err(text of the finding))
        type Row<'a> = (
            &'a str,
            i64,
            Order,
            Option<LedgerOrderMoney>,
            &'a [Dispute],
            i64,
            Result<bool, &'a str>,
        );
        let cases: Vec<Row<'_>> = vec![
            (
                "an unused pack refunded in full revokes the pack",
                900,
                order(900, 900, 0),
                Some(ledger(900, 0, 0)),
                &[],
                0,
                Ok(true),
            ),
            (
                "a pro-rated refund keeps the pack",
                540,
                order(900, 900, 0),
                Some(ledger(900, 0, 20)),
                &[],
                0,
                Ok(false),
            ),
            (
                "a full refund of a used pack keeps the pack",
                900,
                order(900, 900, 0),
                Some(ledger(900, 0, 1)),
                &[],
                0,
                Ok(false),
            ),
            (
                "an order the ledger does not know never revokes",
                900,
                order(900, 900, 0),
                None,
                &[],
                0,
                Ok(false),
            ),
            (
                "less refundable than approved goes to review",
                900,
                order(900, 400, 500),
                Some(ledger(900, 500, 0)),
                &[],
                0,
                Err("Polar can refund only 4.00 EUR"),
            ),
            (
                "less refundable than the ledger thought goes to review",
                300,
                order(900, 400, 500),
                Some(ledger(900, 0, 0)),
                &[],
                0,
                Err("the ledger expected 9.00 EUR"),
            ),
            (
                "another pending refund counts against refundable",
                900,
                order(900, 900, 0),
                Some(ledger(900, 0, 0)),
                &[],
                900,
                Err("9.00 EUR in other pending refunds"),
            ),
            (
                "an open dispute goes to review",
                900,
                order(900, 900, 0),
                Some(ledger(900, 0, 0)),
                &disputes,
                0,
                Err("open chargeback at Polar (dispute d-1, needs_response)"),
            ),
        ];
        for (name, amount, order, ledger, open, other_pending, expected) in cases {
            let got = check_order(&OrderCheck {
                amount,
                currency: "EUR",
                order: &order,
                ledger: ledger.as_ref(),
                open_disputes: open,
                other_pending,
            });
            match (got, expected) {
                (Ok(post), Ok(revoke)) => assert_eq!(post.revoke_benefits, revoke, "{name}"),
                (Err(step), Err(text)) => {
                    assert_eq!(step.clause, Clause::P2, "{name}");
                    assert!(step.finding.contains(text), "{name}: {}", step.finding);
                }
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_currency_other_than_the_ledgers_goes_to_review() {
        let got = check_order(&OrderCheck {
            amount: 900,
            currency: "USD",
            order: &order(900, 900, 0),
            ledger: None,
            open_disputes: &[],
            other_pending: 0,
        });
        assert!(
            got.unwrap_err()
                .finding
                .contains("in EUR, the refund is in USD")
        );
    }

    #[test]
    fn the_guard_rails_fire_on_the_switch_the_single_limit_and_the_daily_total() {
        let settings = PolarSettings {
            max_refund_amount: 1000,
            max_daily_refund_total: 2000,
            ..PolarSettings::default()
        };
        // (name, amount, refunded today, finding expected)
        let cases = [
            ("under both limits passes", 900, 1000, None),
            ("exactly at both limits passes", 1000, 1000, None),
            (
                "above the single limit",
                1001,
                0,
                Some("above the automatic limit of 10.00 EUR"),
            ),
            (
                "above the daily total",
                900,
                1200,
                Some("daily limit of 20.00 EUR"),
            ),
        ];
        for (name, amount, today, expected) in cases {
            let got = limits(&settings, amount, "EUR", today);
            match expected {
                None => assert!(got.is_none(), "{name}: {got:?}"),
                Some(text) => {
                    let step = got.unwrap_or_else(|| panic!("{name}: no finding"));
                    assert_eq!(step.clause, Clause::P2);
                    assert!(step.finding.contains(text), "{name}: {}", step.finding);
                }
            }
        }
        assert!(switch(&settings).is_none());
        let off = PolarSettings {
            auto_refunds: false,
            ..settings
        };
        assert!(switch(&off).unwrap().finding.contains("switched off"));
    }

    #[test]
    fn money_reads_as_units_and_cents() {
        for (amount, currency, shown) in [
            (900, "eur", "9.00 EUR"),
            (5, "USD", "0.05 USD"),
            (-120, "EUR", "-1.20 EUR"),
        ] {
            assert_eq!(money(amount, currency), shown);
        }
    }
}
