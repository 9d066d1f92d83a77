//! Which clause decides when several apply, what the reply may quote, and
//! that nothing about another wallet's order leaks.

use super::build::*;
use crate::domain::{
    Category, ChargebackStatus, Clause, CreditReason, Flag, OrderLookup, Outcome, ReplyFacts,
    ReplyKind, WalletStatus,
};

use Clause::{Auth, Id, P2, P4, P6, P7};

fn cash_case() -> Case {
    case(Category::CashRefund)
}

/// A wallet that shows the abuse pattern (two recent cash refunds).
fn abusive(c: Case) -> Case {
    c.order("a", 10, 1000, at(days(-30)))
        .refund("r1", "a", 100, at(days(-20)))
        .refund("r2", "a", 100, at(days(-10)))
}

#[test]
fn the_earliest_clause_decides_and_every_observation_is_flagged() {
    let asks = || cash_case().order("o1", 50, 900, bought()).cites("o1");
    run(vec![
        (
            "statutory rights before termination: a person looks where the law may apply",
            asks()
                .status(WalletStatus::Terminated)
                .says(Flag::StatutoryRights),
            review(&[Id, P7]).flags(&[Flag::StatutoryRights, Flag::Terminated]),
        ),
        (
            "a chargeback mention before termination",
            asks()
                .status(WalletStatus::Terminated)
                .says(Flag::Chargeback),
            review(&[Id, P6]).flags(&[Flag::Chargeback, Flag::Terminated]),
        ),
        (
            "statutory rights before a chargeback",
            asks().says(Flag::Chargeback).says(Flag::StatutoryRights),
            review(&[Id, P7]).flags(&[Flag::Chargeback, Flag::StatutoryRights]),
        ),
        (
            "termination before the abuse pattern",
            abusive(asks()).status(WalletStatus::Terminated),
            expect(Outcome::Denied, ReplyKind::TerminatedDenied, &[Id, P4])
                .flags(&[Flag::Terminated, Flag::AbusePattern]),
        ),
        (
            "an open chargeback before the abuse pattern",
            abusive(asks()).chargeback("cb1", "a", ChargebackStatus::Open),
            review(&[Id, P6]).flags(&[Flag::Chargeback, Flag::AbusePattern]),
        ),
        (
            "a sender mismatch before statutory rights",
            asks()
                .cites_other_wallets("ANUMI-ZZZZZZZZ-0099")
                .says(Flag::StatutoryRights),
            review(&[Id]).flags(&[Flag::SenderMismatch, Flag::StatutoryRights]),
        ),
        (
            "an unknown sender mentioning a chargeback is first asked who they are",
            cash_case().no_wallet().says(Flag::Chargeback),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownSender, &[Id]).flags(&[Flag::Chargeback]),
        ),
        (
            "the abuse pattern before the window",
            abusive(asks()).received(at(days(20))),
            review(&[Id, P4]).flags(&[Flag::AbusePattern]),
        ),
        (
            "the abuse pattern before a courtesy credit",
            abusive(case(Category::NoResemblance))
                .used("g1", "o1", 1, bought())
                .attached(),
            review(&[Id, P4]).flags(&[Flag::AbusePattern]),
        ),
        (
            "the abuse pattern and the courtesy cap are both flagged",
            abusive(case(Category::NoResemblance))
                .used("g1", "o1", 1, bought())
                .credit("c1", 1, CreditReason::Courtesy, Some("g0"), at(days(-5)))
                .attached(),
            review(&[Id, P4]).flags(&[Flag::AbusePattern, Flag::CourtesyCap]),
        ),
        (
            "statutory rights from an unverified sender: review, flagged, no AUTH step needed",
            asks().says(Flag::StatutoryRights).unverified(),
            review(&[Id, P7]).flags(&[Flag::StatutoryRights, Flag::SenderUnverified]),
        ),
        (
            "an unverified sender over the abuse pattern still ends in review",
            abusive(asks()).unverified(),
            review(&[Id, P4]).flags(&[Flag::AbusePattern, Flag::SenderUnverified]),
        ),
    ]);
}

#[test]
fn a_mismatch_discloses_nothing_about_the_other_wallets_order() {
    let reference = "ANUMI-ZZZZZZZZ-0099";
    for c in [
        cash_case()
            .order("o1", 50, 900, bought())
            .cites("o1")
            .cites_other_wallets(reference),
        cash_case().cites_other_wallets(reference),
        cash_case().no_wallet().cites_other_wallets(reference),
        // A resolved order while the sender has no wallet is someone else's.
        {
            let mut c = cash_case().no_wallet();
            c.cited.push(OrderLookup::Own {
                reference: reference.into(),
                order_id: "0b9c1c1e-aaaa-4bbb-8ccc-000000000099".into(),
            });
            c
        },
    ] {
        let d = c.decide();
        assert_eq!(d.outcome, Outcome::Review);
        assert!(d.flags.contains(&Flag::SenderMismatch));
        assert!(d.actions.is_empty());
        assert_eq!(d.order_id, None, "no order is named");
        assert_eq!(d.generation_id, None);
        assert_eq!(
            d.reply_facts,
            ReplyFacts::default(),
            "the reply quotes nothing"
        );
        let own_wallet = c.wallet.as_ref().map(|w| w.wallet.id.clone());
        for step in &d.trace {
            for (name, value) in &step.facts {
                let allowed = value == reference
                    || Some(value) == own_wallet.as_ref()
                    || (name == "sender_wallet" && value == "none")
                    || name == "wallet_status"
                    // The sender's own authentication, never the order's.
                    || name == "auth_evidence"
                    || name == "sender_auth";
                assert!(allowed, "fact {name}={value} says more than the reference");
            }
            assert!(!step.finding.contains("0b9c1c1e"), "{}", step.finding);
        }
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            !json.contains("0b9c1c1e"),
            "the other order's id never appears"
        );
        assert!(!json.contains("\"o1\""), "nor does the sender's own order");
    }
}

#[test]
fn a_pro_rated_refund_quotes_amount_credits_reference_and_window() {
    let d = cash_case()
        .order("o1", 7, 999, bought())
        .used("g1", "o1", 3, at(days(1)))
        .cites("o1")
        .received(at(days(2)))
        .decide();
    assert_eq!(d.order_id.as_deref(), Some("o1"));
    assert_eq!(d.wallet_id.as_deref(), Some(WALLET));
    assert_eq!(
        d.reply_facts,
        ReplyFacts {
            amount: Some(570),
            currency: Some("EUR".into()),
            credits: None,
            order_reference: Some(invoice("o1")),
            refunded_at: None,
            credits_remaining: Some(4),
            credits_total: Some(7),
            purchased_at: Some(bought()),
            window_days: Some(14),
            template: None,
            waited_days: None,
        }
    );
    let last = d.trace.last().unwrap();
    assert_eq!(last.clause, P2);
    assert!(
        last.finding.contains("floor(999 × 4 ÷ 7) = 570"),
        "{}",
        last.finding
    );
}

#[test]
fn the_window_step_shows_the_processing_delay_but_measures_to_receipt() {
    let d = cash_case()
        .order("o1", 50, 900, bought())
        .cites("o1")
        .received(at(days(13)))
        .processed(at(days(15)))
        .decide();
    let step = d
        .trace
        .iter()
        .find(|s| s.clause == P2 && s.finding.contains("window"))
        .unwrap();
    assert!(
        step.finding.contains("Received 13 days after purchase"),
        "{}",
        step.finding
    );
    assert!(
        step.finding.contains("processed 15 days"),
        "{}",
        step.finding
    );
    assert!(
        step.facts
            .contains(&("processed_at".into(), "2026-06-16T10:00:00Z".into()))
    );
}

#[test]
fn the_order_reference_is_the_invoice_else_the_receipt_else_the_id() {
    for (drop_invoice, drop_receipt, expected) in [
        (false, false, "ANUMI-O1-0001"),
        (true, false, "RCPT-O1-0001"),
        (true, true, "o1"),
    ] {
        let mut c = cash_case().order("o1", 50, 900, bought()).cites("o1");
        if drop_invoice {
            c = c.without_invoice("o1", drop_receipt);
        }
        let d = c.decide();
        assert_eq!(d.reply_facts.order_reference.as_deref(), Some(expected));
    }
}

#[test]
fn an_already_refunded_order_quotes_the_total_and_the_latest_refund() {
    let d = cash_case()
        .order("o1", 10, 1000, bought())
        .refund("r1", "o1", 400, at(days(1)))
        .refund("r2", "o1", 600, at(days(2)))
        .cites("o1")
        .received(at(days(3)))
        // Two refund rows would otherwise be an abuse pattern of their own.
        .config(|c| c.abuse_max_cash_refunds = 3)
        .decide();
    assert_eq!(d.reply, ReplyKind::AlreadyRefunded);
    assert_eq!(d.reply_facts.amount, Some(1000));
    assert_eq!(d.reply_facts.currency.as_deref(), Some("EUR"));
    assert_eq!(d.reply_facts.refunded_at, Some(at(days(2))));
}

#[test]
fn an_expired_window_quotes_the_purchase_time_and_the_window() {
    let d = cash_case()
        .order("o1", 50, 900, bought())
        .cites("o1")
        .received(at(days(20)))
        .config(|c| c.refund_window_days = 10)
        .decide();
    assert_eq!(d.reply, ReplyKind::WindowExpired);
    assert_eq!(d.reply_facts.purchased_at, Some(bought()));
    assert_eq!(d.reply_facts.window_days, Some(10));
    assert_eq!(d.reply_facts.amount, None);
}

#[test]
fn an_already_credited_failure_quotes_when_from_the_wallet_credit() {
    let d = case(Category::FailedGeneration)
        .failed("g1", 2, true, bought())
        .credit(
            "c1",
            2,
            CreditReason::FailedGeneration,
            Some("g1"),
            at(minutes(1)),
        )
        .received(at(days(1)))
        .decide();
    assert_eq!(d.reply, ReplyKind::FailedGenerationAlreadyRefunded);
    assert_eq!(d.generation_id.as_deref(), Some("g1"));
    assert_eq!(d.reply_facts.refunded_at, Some(at(minutes(1))));
    assert_eq!(d.reply_facts.credits, Some(2));
}

#[test]
fn an_already_refunded_failure_quotes_the_generations_own_refund_time_first() {
    let d = case(Category::FailedGeneration)
        .failed("g1", 2, true, bought())
        .refunded_at("g1", at(minutes(5)))
        .credit(
            "c1",
            2,
            CreditReason::FailedGeneration,
            Some("g1"),
            at(minutes(9)),
        )
        .received(at(days(1)))
        .decide();
    assert_eq!(d.reply, ReplyKind::FailedGenerationAlreadyRefunded);
    assert_eq!(d.reply_facts.refunded_at, Some(at(minutes(5))));
    let last = d.trace.last().unwrap();
    assert!(
        last.facts.iter().any(|(k, _)| k == "refunded_at"),
        "{last:?}"
    );
}

#[test]
fn an_already_refunded_failure_without_a_time_is_still_answered_and_says_so() {
    let d = case(Category::FailedGeneration)
        .failed("g1", 2, true, bought())
        .received(at(days(1)))
        .decide();
    assert_eq!(d.outcome, Outcome::Answered);
    assert_eq!(d.reply, ReplyKind::FailedGenerationAlreadyRefunded);
    assert_eq!(d.reply_facts.refunded_at, None, "no time is invented");
    assert_eq!(d.reply_facts.credits, Some(2));
    let last = d.trace.last().unwrap();
    assert!(
        last.finding.contains("the ledger does not say when"),
        "{}",
        last.finding
    );
}

#[test]
fn an_unverified_approval_says_in_the_trace_what_would_have_been_approved() {
    let d = cash_case()
        .order("o1", 50, 900, bought())
        .cites("o1")
        .unverified()
        .decide();
    let last = d.trace.last().unwrap();
    assert_eq!(last.clause, Auth);
    assert!(
        last.finding
            .contains("cash refund of 900 EUR (minor units) for order o1"),
        "{}",
        last.finding
    );
    assert!(last.facts.contains(&("dmarc_result".into(), "fail".into())));
    assert!(d.actions.is_empty());
}

#[test]
fn a_wallet_credit_for_courtesy_names_the_generation_and_the_credits() {
    let d = case(Category::NoResemblance)
        .used("g1", "o1", 3, bought())
        .attached()
        .decide();
    assert_eq!(d.generation_id.as_deref(), Some("g1"));
    assert_eq!(d.reply_facts.credits, Some(3));
    assert_eq!(d.reply, ReplyKind::CourtesyCredited);
}
