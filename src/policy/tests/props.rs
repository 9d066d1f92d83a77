//! Properties that hold for any facts: generated wallets with orders,
//! generations, credits, refunds and chargebacks, and messages of every
//! category, citing any mix of own, unknown and foreign orders.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use std::collections::BTreeSet;

use super::build::{WALLET, bought, case};
use crate::domain::{
    Action, AutoKind, Category, Chargeback, ChargebackStatus, CreditReason, Evidence, Flag,
    Generation, GenerationStatus, LedgerFacts, MessageFacts, Order, OrderLookup, Outcome, Refund,
    WalletCredit, WalletFacts, WalletStatus,
};
use crate::policy::{PolicyConfig, decide};

/// One generated case.
#[derive(Debug, Clone)]
struct World {
    msg: MessageFacts,
    ledger: LedgerFacts,
    config: PolicyConfig,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

impl World {
    fn decide(&self) -> crate::domain::Decision {
        decide(
            &self.msg,
            &self.ledger,
            &self.config,
            self.received_at,
            self.now,
        )
    }

    fn order(&self, id: &str) -> Option<&Order> {
        self.ledger.sender_wallet.as_ref()?.order(id)
    }
}

fn minute(offset: i64) -> DateTime<Utc> {
    bought() + TimeDelta::minutes(offset)
}

const SPAN: i64 = 60 * 24 * 60; // 60 days of minutes

type OrderRow = (i64, i64, i64);
type GenRow = (usize, i64, usize, bool, i64);
type CreditRow = (usize, usize, i64, i64);
type RefundRow = (usize, i64, i64);

#[allow(clippy::type_complexity)]
fn world() -> impl Strategy<Value = World> {
    let ledger = (
        prop::bool::weighted(0.9),
        prop_oneof![8 => Just(0usize), 1 => Just(1), 1 => Just(2)],
        prop::collection::vec((0..SPAN, 0i64..=60, 0i64..5000), 0..4),
        prop::collection::vec(
            (0usize..5, 0i64..4, 0usize..3, any::<bool>(), 0..SPAN),
            0..8,
        ),
        prop::collection::vec((0usize..3, 0usize..9, 1i64..3, 0..SPAN), 0..4),
        prop::collection::vec((0usize..4, 0i64..3000, 0..SPAN), 0..3),
        prop::collection::vec((0usize..4, 0usize..3), 0..2),
    );
    let message = (
        // Weighted towards the categories with the most rules.
        prop_oneof![3 => Just(0usize), 2 => Just(1), 3 => 2usize..5, 2 => 5..Category::ALL.len()],
        (prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
        (any::<bool>(), any::<bool>()),
        prop::bool::weighted(0.7),
        prop::option::weighted(0.1, 0usize..3),
        prop::collection::vec(0usize..9, 0..3),
        prop::collection::vec(
            (
                prop_oneof![6 => Just(0usize), 1 => Just(1), 1 => Just(2)],
                0usize..5,
            ),
            0..3,
        ),
    );
    let times = (0..SPAN + 20 * 24 * 60, 0i64..10 * 24 * 60, 1i64..45);
    (ledger, message, times).prop_map(|(ledger, message, times)| build(ledger, message, times))
}

#[allow(clippy::type_complexity)]
fn build(
    (has_wallet, status, orders, gens, credits, refunds, chargebacks): (
        bool,
        usize,
        Vec<OrderRow>,
        Vec<GenRow>,
        Vec<CreditRow>,
        Vec<RefundRow>,
        Vec<(usize, usize)>,
    ),
    (category, (statutory, chargeback), (image, link), dmarc, auto, gen_refs, cited): (
        usize,
        (bool, bool),
        (bool, bool),
        bool,
        Option<usize>,
        Vec<usize>,
        Vec<(usize, usize)>,
    ),
    (received, delay, window): (i64, i64, i64),
) -> World {
    let received_at = minute(received);
    let mut c = case(Category::ALL[category]).received(received_at);
    c = c.processed(received_at + TimeDelta::minutes(delay));
    let mut w: WalletFacts = c.wallet.clone().expect("case has a wallet");
    w.wallet.status = [
        WalletStatus::Active,
        WalletStatus::Suspended,
        WalletStatus::Terminated,
    ][status];
    let order_id = |i: usize| format!("o{i}");
    for (i, (at, credits, amount)) in orders.iter().enumerate() {
        w.orders.push(Order {
            id: order_id(i),
            wallet_id: WALLET.into(),
            product: "pack".into(),
            credits: *credits,
            amount: *amount,
            tax_amount: None,
            currency: "EUR".into(),
            invoice_number: (i % 2 == 0).then(|| format!("ANUMI-{i:04}")),
            receipt_number: None,
            created_at: minute(*at),
        });
    }
    let n = w.orders.len();
    for (i, (order, credits, st, refunded, at)) in gens.iter().enumerate() {
        w.generations.push(Generation {
            id: format!("g{i}"),
            wallet_id: WALLET.into(),
            order_id: (*order < n).then(|| order_id(*order)),
            credits: *credits,
            status: [
                GenerationStatus::Succeeded,
                GenerationStatus::Failed,
                GenerationStatus::Blocked,
            ][*st],
            style: None,
            refunded: *refunded,
            refunded_at: None,
            created_at: minute(*at),
        });
    }
    for (i, (reason, generation, credits, at)) in credits.iter().enumerate() {
        w.credits.push(WalletCredit {
            id: format!("c{i}"),
            wallet_id: WALLET.into(),
            credits: *credits,
            reason: [
                CreditReason::Courtesy,
                CreditReason::FailedGeneration,
                CreditReason::Goodwill,
            ][*reason],
            generation_id: Some(format!("g{generation}")),
            created_at: minute(*at),
        });
    }
    if n > 0 {
        for (i, (order, amount, at)) in refunds.iter().enumerate() {
            w.refunds.push(Refund {
                id: format!("r{i}"),
                order_id: order_id(order % n),
                amount: *amount,
                created_at: minute(*at),
            });
        }
        for (i, (order, st)) in chargebacks.iter().enumerate() {
            w.chargebacks.push(Chargeback {
                id: format!("cb{i}"),
                order_id: order_id(order % n),
                status: [
                    ChargebackStatus::Open,
                    ChargebackStatus::Won,
                    ChargebackStatus::Lost,
                ][*st],
                created_at: bought(),
            });
        }
    }
    let cited_orders = cited
        .iter()
        .map(|(kind, i)| match kind {
            0 if *i < n && has_wallet => OrderLookup::Own {
                reference: format!("ref-{i}"),
                order_id: order_id(*i),
            },
            1 => OrderLookup::OtherWallet {
                reference: format!("ANUMI-OTHER-{i:04}"),
            },
            _ => OrderLookup::Unknown {
                reference: format!("ANUMI-NOPE-{i:04}"),
            },
        })
        .collect();

    c.msg.flags = BTreeSet::new();
    if statutory {
        c.msg.flags.insert(Flag::StatutoryRights);
    }
    if chargeback {
        c.msg.flags.insert(Flag::Chargeback);
    }
    c.msg.evidence = Evidence {
        image_attachment: image,
        result_link: link,
    };
    c.msg.auth.dmarc_pass = dmarc;
    c.msg.auto = auto.map(|k| [AutoKind::AutoReply, AutoKind::Bounce, AutoKind::Loop][k]);
    c.msg.generation_refs = gen_refs.iter().map(|g| format!("g{g}")).collect();
    let config = PolicyConfig {
        refund_window_days: window,
        ..PolicyConfig::default()
    };
    World {
        msg: c.msg,
        ledger: LedgerFacts {
            sender_wallet: has_wallet.then_some(w),
            cited_orders,
        },
        config,
        received_at: c.received_at,
        now: c.now,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_cash_refund_is_positive_and_never_more_than_what_is_left(world in world()) {
        let d = world.decide();
        for action in &d.actions {
            if let Action::CashRefund { order_id, amount, currency } = action {
                let order = world.order(order_id).expect("a refund is for the sender's own order");
                let wallet = world.ledger.sender_wallet.as_ref().unwrap();
                prop_assert!(*amount > 0);
                prop_assert!(*amount <= order.amount - wallet.refunded_amount(order_id));
                prop_assert_eq!(currency, &order.currency);
            }
        }
    }

    #[test]
    fn an_unverified_sender_never_gets_an_approval_with_actions(world in world()) {
        let d = world.decide();
        if !world.msg.auth.dmarc_pass {
            prop_assert!(d.outcome != Outcome::Approved || d.actions.is_empty());
            prop_assert!(d.actions.is_empty());
            prop_assert!(d.flags.contains(&Flag::SenderUnverified));
        }
    }

    #[test]
    fn the_outcome_is_ignored_exactly_when_the_mail_is_automatic(world in world()) {
        let d = world.decide();
        prop_assert_eq!(d.outcome == Outcome::Ignored, world.msg.auto.is_some());
    }

    #[test]
    fn deciding_twice_gives_the_same_decision(world in world()) {
        prop_assert_eq!(world.decide(), world.decide());
    }

    #[test]
    fn no_cash_refund_is_issued_after_the_window(world in world()) {
        let d = world.decide();
        for action in &d.actions {
            if let Action::CashRefund { order_id, .. } = action {
                let order = world.order(order_id).unwrap();
                let end = order.created_at + TimeDelta::days(world.config.refund_window_days);
                prop_assert!(world.received_at <= end);
            }
        }
    }

    #[test]
    fn the_processing_time_never_changes_what_is_decided(
        world in world(),
        later in 0i64..30 * 24 * 60,
    ) {
        let a = world.decide();
        let b = World { now: world.now + TimeDelta::minutes(later), ..world.clone() }.decide();
        prop_assert_eq!(a.clauses(), b.clauses());
        prop_assert_eq!(a.outcome, b.outcome);
        prop_assert_eq!(a.actions, b.actions);
        prop_assert_eq!(a.flags, b.flags);
        prop_assert_eq!(a.reply, b.reply);
        prop_assert_eq!(a.reply_facts, b.reply_facts);
    }

    #[test]
    fn approvals_and_only_approvals_carry_actions_that_move_something(world in world()) {
        let d = world.decide();
        prop_assert_eq!(d.outcome == Outcome::Approved, !d.actions.is_empty());
        for action in &d.actions {
            if let Action::WalletCredit { wallet_id, credits, .. } = action {
                prop_assert_eq!(wallet_id, WALLET);
                prop_assert!(*credits > 0);
            }
        }
        prop_assert!(!d.trace.is_empty(), "every decision has a trace");
    }

    #[test]
    fn citing_another_wallets_order_always_goes_to_a_person_naming_no_order(world in world()) {
        let foreign = world.ledger.cited_orders.iter().any(|l| matches!(l, OrderLookup::OtherWallet { .. }));
        let d = world.decide();
        if foreign && world.msg.auto.is_none() {
            prop_assert_eq!(d.outcome, Outcome::Review);
            prop_assert!(d.flags.contains(&Flag::SenderMismatch));
            prop_assert_eq!(d.order_id, None);
            prop_assert_eq!(d.reply_facts, Default::default());
        }
    }
}

/// The properties above prove something only if the generated worlds reach
/// the interesting decisions; this counts them over a fixed seed.
#[test]
fn the_generated_worlds_reach_every_outcome_and_both_action_kinds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let strategy = world();
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let (mut cash, mut credits, mut unverified_approvals) = (0, 0, 0);
    for _ in 0..3000 {
        let world = strategy.new_tree(&mut runner).unwrap().current();
        let d = world.decide();
        *outcomes.entry(d.outcome).or_default() += 1;
        cash += d
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CashRefund { .. }))
            .count();
        credits += d
            .actions
            .iter()
            .filter(|a| matches!(a, Action::WalletCredit { .. }))
            .count();
        if !world.msg.auth.dmarc_pass
            && d.trace
                .last()
                .is_some_and(|s| s.clause == crate::domain::Clause::Auth)
        {
            unverified_approvals += 1;
        }
    }
    for outcome in Outcome::ALL {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) > 0,
            "{outcome} never reached: {outcomes:?}"
        );
    }
    assert!(cash > 20, "only {cash} cash refunds generated");
    assert!(credits > 20, "only {credits} wallet credits generated");
    assert!(
        unverified_approvals > 10,
        "only {unverified_approvals} AUTH reviews generated"
    );
    eprintln!("{outcomes:?} cash={cash} credits={credits} auth={unverified_approvals}");
}
