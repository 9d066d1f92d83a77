//! One table per row family of POLICY.md's engineering table, with the
//! edges of each row.

use super::build::*;
use crate::domain::{
    AutoKind, Category, ChargebackStatus, Clause, CreditReason, Flag, GenerationStatus, Outcome,
    ReplyKind, WalletStatus,
};

use Clause::{Auth, Id, P1, P2, P3, P4, P5, P6, P7, Screen};
use CreditReason::{Courtesy, FailedGeneration, Goodwill};

fn cash_case() -> Case {
    case(Category::CashRefund)
}

#[test]
fn screen_ignores_automatic_mail_without_a_reply() {
    let ignored = |flag| expect(Outcome::Ignored, ReplyKind::NoReply, &[Screen]).flags(&[flag]);
    run(vec![
        (
            "auto-reply",
            cash_case().auto(AutoKind::AutoReply),
            ignored(Flag::AutoReply),
        ),
        (
            "bounce",
            cash_case().auto(AutoKind::Bounce),
            ignored(Flag::Bounce),
        ),
        (
            "loop",
            cash_case().auto(AutoKind::Loop),
            ignored(Flag::AutoReply),
        ),
        (
            "an auto-reply from a stranger is ignored, not asked for an order",
            cash_case().no_wallet().auto(AutoKind::AutoReply),
            ignored(Flag::AutoReply),
        ),
        (
            "an auto-reply still records what was observed about the sender",
            cash_case()
                .status(WalletStatus::Terminated)
                .unverified()
                .auto(AutoKind::AutoReply),
            ignored(Flag::AutoReply).flags(&[
                Flag::AutoReply,
                Flag::Terminated,
                Flag::SenderUnverified,
            ]),
        ),
    ]);
}

#[test]
fn p2_refunds_unused_and_partly_used_packs_inside_the_window() {
    let approved =
        |clauses: &[Clause]| expect(Outcome::Approved, ReplyKind::CashRefundApproved, clauses);
    run(vec![
        (
            "an unused pack asked back on day 13 is refunded in full",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(13))),
            approved(&[Id, P2]).action(cash("o1", 900)),
        ),
        (
            "exactly 14 days after purchase is inside the window",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(14))),
            approved(&[Id, P2]).action(cash("o1", 900)),
        ),
        (
            "received on day 13 and processed on day 15 is inside the window",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(13)))
                .processed(at(days(15))),
            approved(&[Id, P2]).action(cash("o1", 900)),
        ),
        (
            "a partly used pack is pro-rated and rounded down: floor(999 × 4 ÷ 7) = 570",
            cash_case()
                .order("o1", 7, 999, bought())
                .used("g1", "o1", 3, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(cash("o1", 570)),
        ),
        (
            "an unused pack partly refunded before gets the rest",
            cash_case()
                .order("o1", 10, 1000, bought())
                .refund("r1", "o1", 300, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(cash("o1", 700)),
        ),
        (
            "another case's approved refund still pending counts as refunded",
            cash_case()
                .order("o1", 10, 1000, bought())
                .pending_refund(7, "o1", 400, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(cash("o1", 600)),
        ),
        (
            "an order whose whole amount another case approved is answered as refunded",
            cash_case()
                .order("o1", 10, 1000, bought())
                .pending_refund(7, "o1", 1000, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            expect(Outcome::Answered, ReplyKind::AlreadyRefunded, &[Id, P2]),
        ),
        (
            "a pro-rated value is capped at the amount not yet refunded",
            cash_case()
                .order("o1", 10, 1000, bought())
                .used("g1", "o1", 2, at(days(1)))
                .refund("r1", "o1", 500, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(cash("o1", 500)),
        ),
        (
            "failed runs and blocked uploads do not count as used credits",
            cash_case()
                .order("o1", 50, 900, bought())
                .generation(
                    "g1",
                    Some("o1"),
                    1,
                    GenerationStatus::Failed,
                    true,
                    at(days(1)),
                )
                .generation(
                    "g2",
                    Some("o1"),
                    1,
                    GenerationStatus::Blocked,
                    false,
                    at(days(1)),
                )
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(cash("o1", 900)),
        ),
        (
            "credits used after the email was received still count as used",
            cash_case()
                .order("o1", 10, 1000, bought())
                .used("g1", "o1", 5, at(days(3)))
                .cites("o1")
                .received(at(days(2)))
                .processed(at(days(4))),
            approved(&[Id, P2]).action(cash("o1", 500)),
        ),
        (
            "the refund is in the order's currency",
            cash_case()
                .order_in("o1", 10, 1200, "JPY", bought())
                .cites("o1")
                .received(at(days(2))),
            approved(&[Id, P2]).action(crate::domain::Action::CashRefund {
                order_id: "o1".into(),
                amount: 1200,
                currency: "JPY".into(),
            }),
        ),
    ]);
}

#[test]
fn p2_refuses_or_answers_when_nothing_is_left_to_refund() {
    run(vec![
        (
            "every credit of the order used is denied",
            cash_case()
                .order("o1", 7, 999, bought())
                .used("g1", "o1", 7, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            expect(Outcome::Denied, ReplyKind::CashRefundAllUsed, &[Id, P2]),
        ),
        (
            "a pro-rated value that rounds down to 0 is denied, never a zero refund",
            cash_case()
                .order("o1", 1000, 5, bought())
                .used("g1", "o1", 999, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            expect(Outcome::Denied, ReplyKind::CashRefundAllUsed, &[Id, P2]),
        ),
        (
            "an order refunded in full is answered with when",
            cash_case()
                .order("o1", 10, 1000, bought())
                .refund("r1", "o1", 1000, at(days(1)))
                .cites("o1")
                .received(at(days(2))),
            expect(Outcome::Answered, ReplyKind::AlreadyRefunded, &[Id, P2]),
        ),
        (
            "an order refunded in full is answered even after the window",
            cash_case()
                .order("o1", 10, 1000, bought())
                .refund("r1", "o1", 1000, at(days(1)))
                .cites("o1")
                .received(at(days(30))),
            expect(Outcome::Answered, ReplyKind::AlreadyRefunded, &[Id, P2]),
        ),
        (
            "a refund dated after receipt still counts as already refunded",
            cash_case()
                .order("o1", 10, 1000, bought())
                .refund("r1", "o1", 1000, at(days(3)))
                .cites("o1")
                .received(at(days(2)))
                .processed(at(days(4))),
            expect(Outcome::Answered, ReplyKind::AlreadyRefunded, &[Id, P2]),
        ),
        (
            "an order on record with no amount goes to a person",
            cash_case()
                .order("o1", 10, 0, bought())
                .cites("o1")
                .received(at(days(2))),
            review(&[Id, P2]),
        ),
    ]);
}

#[test]
fn p4_denies_cash_refunds_after_the_window() {
    let expired = || expect(Outcome::Denied, ReplyKind::WindowExpired, &[Id, P4]);
    run(vec![
        (
            "14 days and 1 minute after purchase is outside the window",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(14) + minutes(1))),
            expired(),
        ),
        (
            "a longer configured window lets the same request in",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(14) + minutes(1)))
                .config(|c| c.refund_window_days = 30),
            expect(Outcome::Approved, ReplyKind::CashRefundApproved, &[Id, P2])
                .action(cash("o1", 900)),
        ),
        (
            "processing on day 13 does not save a request received on day 15",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(15)))
                .processed(at(days(13))),
            expired(),
        ),
    ]);
}

#[test]
fn id_rows_identify_the_sender_and_the_order() {
    let mismatch = || review(&[Id]).flags(&[Flag::SenderMismatch]);
    let approved = || expect(Outcome::Approved, ReplyKind::CashRefundApproved, &[Id, P2]);
    run(vec![
        (
            "a stranger citing no order is asked to write from the purchase address",
            cash_case().no_wallet(),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownSender, &[Id]),
        ),
        (
            "a stranger citing an unknown order is asked to check the order ID",
            cash_case().no_wallet().cites_unknown("ANUMI-NOPE-0001"),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownOrder, &[Id]),
        ),
        (
            "a stranger citing someone's order goes to a person",
            cash_case()
                .no_wallet()
                .cites_other_wallets("ANUMI-ZZZZZZZZ-0099"),
            mismatch(),
        ),
        (
            "a customer citing another wallet's order goes to a person",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites_other_wallets("ANUMI-ZZZZZZZZ-0099"),
            mismatch(),
        ),
        (
            "citing an own order next to another wallet's still goes to a person",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .cites_other_wallets("ANUMI-ZZZZZZZZ-0099"),
            mismatch(),
        ),
        (
            "a cash refund citing only an unknown order asks to check the order ID",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites_unknown("ANUMI-NOPE-0001"),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownOrder, &[Id]),
        ),
        (
            "an unknown reference next to a known own order is set aside",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites_unknown("ANUMI-NOPE-0001")
                .cites("o1"),
            approved().action(cash("o1", 900)),
        ),
        (
            "a failed-generation credit does not wait for an unknown order reference",
            case(Category::FailedGeneration)
                .failed("g1", 2, false, bought())
                .cites_unknown("ANUMI-NOPE-0001"),
            expect(
                Outcome::Approved,
                ReplyKind::FailedGenerationCredited,
                &[Id, P1],
            )
            .action(credit(2, FailedGeneration, "g1")),
        ),
        (
            "no order cited and exactly one inside the window: proceed with it",
            cash_case()
                .order("old", 50, 900, at(days(-40)))
                .order("o1", 50, 900, bought())
                .received(at(days(3))),
            approved().action(cash("o1", 900)),
        ),
        (
            "no order cited and several inside the window: ask for the order ID",
            cash_case()
                .order("o1", 50, 900, bought())
                .order("o2", 100, 1600, at(days(2)))
                .received(at(days(3))),
            expect(Outcome::NeedsInfo, ReplyKind::NeedOrderId, &[Id]),
        ),
        (
            "no order cited and several inside the window, only one not refunded: that one",
            cash_case()
                .order("o1", 50, 900, bought())
                .order("o2", 100, 1600, at(days(2)))
                .refund("r1", "o2", 1600, at(days(2)))
                .received(at(days(3))),
            approved().action(cash("o1", 900)),
        ),
        (
            "no order cited and every order inside the window refunded: say so",
            cash_case()
                .order("o1", 50, 900, bought())
                .order("o2", 100, 1600, at(days(2)))
                .refund("r1", "o1", 900, at(days(1)))
                .refund("r2", "o2", 1600, at(days(2)))
                .received(at(days(3)))
                .config(|c| c.abuse_max_cash_refunds = 3),
            expect(Outcome::Answered, ReplyKind::AlreadyRefunded, &[Id, P2]),
        ),
        (
            "no order cited and none inside the window: refused for the most recent",
            cash_case()
                .order("o1", 50, 900, bought())
                .order("o0", 50, 900, at(days(-10)))
                .received(at(days(20))),
            expect(Outcome::Denied, ReplyKind::WindowExpired, &[Id, P4]),
        ),
        (
            "no order cited and a wallet without orders: write from the purchase address",
            cash_case(),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownSender, &[Id]),
        ),
        (
            "an order bought after the email arrived is no candidate",
            cash_case()
                .order("o1", 50, 900, at(days(2)))
                .received(at(days(1))),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownSender, &[Id]),
        ),
        (
            "several own orders cited on one cash refund go to a person",
            cash_case()
                .order("o1", 50, 900, bought())
                .order("o2", 50, 900, bought())
                .cites("o1")
                .cites("o2"),
            review(&[Id]),
        ),
        (
            "the same order cited twice is one order",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .cites("o1"),
            approved().action(cash("o1", 900)),
        ),
    ]);
}

#[test]
fn p1_credits_failed_generations_back_once() {
    let credited = || {
        expect(
            Outcome::Approved,
            ReplyKind::FailedGenerationCredited,
            &[Id, P1],
        )
    };
    let fg = || case(Category::FailedGeneration).received(at(days(2)));
    run(vec![
        (
            "a failed generation not yet credited is credited",
            fg().failed("g1", 2, false, at(days(1))),
            credited().action(credit(2, FailedGeneration, "g1")),
        ),
        (
            "the named failed generation is the one credited",
            fg().failed("g1", 2, false, at(days(1)))
                .failed("g2", 3, false, at(days(1)))
                .names_generation("g2"),
            credited().action(credit(3, FailedGeneration, "g2")),
        ),
        (
            "several failed generations get one credit each",
            fg().failed("g1", 2, false, at(days(1)))
                .failed("g2", 3, false, at(days(1))),
            credited()
                .action(credit(2, FailedGeneration, "g1"))
                .action(credit(3, FailedGeneration, "g2")),
        ),
        (
            "only the generation not yet credited is credited",
            fg().failed("g1", 2, true, at(days(1)))
                .failed("g2", 3, false, at(days(1))),
            credited().action(credit(3, FailedGeneration, "g2")),
        ),
        (
            "a failed generation marked refunded is answered",
            fg().failed("g1", 2, true, at(days(1))),
            expect(
                Outcome::Answered,
                ReplyKind::FailedGenerationAlreadyRefunded,
                &[Id, P1],
            ),
        ),
        (
            "a wallet credit naming the generation means it was refunded",
            fg().failed("g1", 2, false, at(days(1))).credit(
                "c1",
                2,
                FailedGeneration,
                Some("g1"),
                at(days(1)),
            ),
            expect(
                Outcome::Answered,
                ReplyKind::FailedGenerationAlreadyRefunded,
                &[Id, P1],
            ),
        ),
        (
            "a failure after the email arrived is not what it is about",
            fg().failed("g1", 2, false, at(days(3))),
            review(&[Id, P1]),
        ),
        (
            "no failed generation at all goes to a person",
            fg().used("g1", "o1", 1, at(days(1))),
            review(&[Id, P1]),
        ),
        (
            "a named generation the ledger shows as succeeded goes to a person",
            fg().used("g1", "o1", 1, at(days(1))).names_generation("g1"),
            review(&[Id, P1]),
        ),
        (
            "a named generation that was blocked is explained as a moderation block",
            fg().generation("g1", None, 1, GenerationStatus::Blocked, false, at(days(1)))
                .names_generation("g1"),
            expect(Outcome::Answered, ReplyKind::ModerationBlock, &[Id, P4]),
        ),
    ]);
}

#[test]
fn p3_grants_a_courtesy_credit_within_the_cap_with_the_result() {
    let granted = || expect(Outcome::Approved, ReplyKind::CourtesyCredited, &[Id, P3]);
    let capped = || review(&[Id, P3, P4]).flags(&[Flag::CourtesyCap]);
    let complaint = |category| {
        case(category)
            .used("g1", "o1", 4, at(days(1)))
            .received(at(days(100)))
            .attached()
    };
    let nr = || complaint(Category::NoResemblance);
    run(vec![
        (
            "no resemblance with the result attached",
            nr(),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "wrong style with the result linked",
            case(Category::WrongStyle)
                .used("g1", "o1", 4, at(days(1)))
                .linked(),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "broken anatomy",
            complaint(Category::BrokenAnatomy),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "nothing attached or linked: ask for the result",
            case(Category::NoResemblance).used("g1", "o1", 4, at(days(1))),
            expect(Outcome::NeedsInfo, ReplyKind::NeedResult, &[Id, P3]),
        ),
        (
            "a courtesy credit 89 days before receipt reaches the cap",
            nr().credit("c1", 1, Courtesy, Some("g0"), at(days(100) - days(89))),
            capped(),
        ),
        (
            "a courtesy credit exactly 90 days before receipt still counts",
            nr().credit("c1", 1, Courtesy, Some("g0"), at(days(100) - days(90))),
            capped(),
        ),
        (
            "a courtesy credit 91 days before receipt no longer counts",
            nr().credit("c1", 1, Courtesy, Some("g0"), at(days(100) - days(91))),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "goodwill and failed-generation credits are not courtesy credits",
            nr().credit("c1", 1, Goodwill, None, at(days(90))).credit(
                "c2",
                1,
                FailedGeneration,
                Some("gx"),
                at(days(90)),
            ),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "a courtesy credit dated after receipt is not in the 90 days before it",
            nr().credit("c1", 1, Courtesy, Some("g0"), at(days(100) + minutes(5))),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "a configured cap of 2 lets a second courtesy credit through",
            nr().credit("c1", 1, Courtesy, Some("g0"), at(days(95)))
                .config(|c| c.courtesy_cap = 2),
            granted().action(credit(4, Courtesy, "g1")),
        ),
        (
            "at the cap even without the result attached it goes to a person",
            case(Category::NoResemblance)
                .used("g1", "o1", 4, at(days(1)))
                .received(at(days(100)))
                .credit("c1", 1, Courtesy, Some("g0"), at(days(99))),
            capped(),
        ),
        (
            "a generation that already had a courtesy credit goes to a person",
            nr().credit("c1", 4, Courtesy, Some("g1"), at(days(5))),
            review(&[Id, P3]),
        ),
        (
            "no successful generation before receipt goes to a person",
            case(Category::NoResemblance)
                .failed("g1", 1, false, at(days(1)))
                .used("g2", "o1", 1, at(days(2)))
                .received(at(days(1) + minutes(30)))
                .attached(),
            review(&[Id, P3]),
        ),
        (
            "content violation always goes to a person",
            complaint(Category::ContentViolation),
            review(&[Id, P3]),
        ),
    ]);
}

#[test]
fn p3_targets_the_named_generation_else_the_latest_before_receipt() {
    let base = || {
        case(Category::WrongStyle)
            .used("g_old", "o1", 1, at(days(1)))
            .used("g_new", "o1", 2, at(days(5)))
            .used("g_after", "o1", 3, at(days(12)))
            .received(at(days(10)))
            .linked()
    };
    let table = vec![
        (
            "the named generation",
            base().names_generation("g_old"),
            1,
            "g_old",
        ),
        (
            "unnamed: the most recent before receipt, not one made after",
            base(),
            2,
            "g_new",
        ),
        (
            "a named generation the wallet does not have falls back to the latest",
            base().names_generation("gen_of_someone"),
            2,
            "g_new",
        ),
        (
            "a named generation made after receipt falls back to the latest before it",
            base().names_generation("g_after"),
            2,
            "g_new",
        ),
        (
            "a named failed generation is no courtesy target",
            base()
                .failed("g_f", 5, false, at(days(6)))
                .names_generation("g_f"),
            2,
            "g_new",
        ),
    ];
    for (row, case, credits, generation) in table {
        let d = case.decide();
        let expected = expect(Outcome::Approved, ReplyKind::CourtesyCredited, &[Id, P3])
            .action(credit(credits, Courtesy, generation));
        check(row, &d, &expected);
        assert_eq!(d.generation_id.as_deref(), Some(generation), "row `{row}`");
        assert_eq!(d.reply_facts.credits, Some(credits), "row `{row}`");
    }
}

#[test]
fn p4_rows_refuse_what_is_not_refundable() {
    let with_gen = |category| case(category).used("g1", "o1", 1, at(days(1))).attached();
    run(vec![
        (
            "subjective dissatisfaction is denied",
            with_gen(Category::Subjective),
            expect(Outcome::Denied, ReplyKind::SubjectiveDenied, &[Id, P4]),
        ),
        (
            "a moderation-blocked upload is explained",
            with_gen(Category::ModerationBlock),
            expect(Outcome::Answered, ReplyKind::ModerationBlock, &[Id, P4]),
        ),
        (
            "a terminated wallet is denied a cash refund",
            cash_case()
                .status(WalletStatus::Terminated)
                .order("o1", 50, 900, bought())
                .cites("o1"),
            expect(Outcome::Denied, ReplyKind::TerminatedDenied, &[Id, P4])
                .flags(&[Flag::Terminated]),
        ),
        (
            "a terminated wallet is denied a failed-generation credit",
            case(Category::FailedGeneration)
                .status(WalletStatus::Terminated)
                .failed("g1", 1, false, bought()),
            expect(Outcome::Denied, ReplyKind::TerminatedDenied, &[Id, P4])
                .flags(&[Flag::Terminated]),
        ),
    ]);
}

#[test]
fn p4_abuse_pattern_thresholds_on_both_sides() {
    // The request: a cash refund of o1, received a day after purchase.
    let asks = || cash_case().order("o1", 50, 900, bought()).cites("o1");
    let received = at(days(1));
    let before = |d: i64| received - days(d);
    let proceeds = || {
        expect(Outcome::Approved, ReplyKind::CashRefundApproved, &[Id, P2]).action(cash("o1", 900))
    };
    let abuse = || review(&[Id, P4]).flags(&[Flag::AbusePattern]);
    let old_order = |c: Case, id: &str, refunded: i64| {
        c.order(id, 10, 1000, before(400))
            .refund(&format!("r_{id}"), id, refunded, before(300))
    };
    run(vec![
        (
            "one cash refund in the last 180 days is no pattern",
            asks()
                .order("a", 10, 1000, before(30))
                .refund("r1", "a", 100, before(20)),
            proceeds(),
        ),
        (
            "two cash refunds in the last 180 days are a pattern",
            asks()
                .order("a", 10, 1000, before(30))
                .refund("r1", "a", 100, before(20))
                .refund("r2", "a", 100, before(10)),
            abuse(),
        ),
        (
            "a refund exactly 180 days before receipt counts",
            asks()
                .order("a", 10, 1000, before(200))
                .refund("r1", "a", 100, before(180))
                .refund("r2", "a", 100, before(10)),
            abuse(),
        ),
        (
            "a refund 181 days before receipt does not count",
            asks()
                .order("a", 10, 1000, before(200))
                .refund("r1", "a", 100, before(181))
                .refund("r2", "a", 100, before(10)),
            proceeds(),
        ),
        (
            "a refund dated after receipt does not count",
            asks()
                .order("a", 10, 1000, before(30))
                .refund("r1", "a", 100, before(10))
                .refund("r2", "a", 100, received + minutes(10)),
            proceeds(),
        ),
        (
            "three orders refunded by half are a pattern",
            old_order(old_order(old_order(asks(), "a", 500), "b", 500), "c", 500),
            abuse(),
        ),
        (
            "two orders refunded by half are no pattern",
            old_order(old_order(asks(), "a", 500), "b", 500),
            proceeds(),
        ),
        (
            "three orders refunded by 49.9 % are no pattern",
            old_order(old_order(old_order(asks(), "a", 499), "b", 500), "c", 500),
            proceeds(),
        ),
        (
            "a count limit of 0 switches that test off",
            asks()
                .order("a", 10, 1000, before(30))
                .refund("r1", "a", 100, before(20))
                .refund("r2", "a", 100, before(10))
                .config(|c| c.abuse_max_cash_refunds = 0),
            proceeds(),
        ),
    ]);
}

#[test]
fn p6_sends_disputes_and_suspended_wallets_to_a_person() {
    let asks = || cash_case().order("o1", 50, 900, bought()).cites("o1");
    run(vec![
        (
            "the customer mentions a chargeback",
            asks().says(Flag::Chargeback),
            review(&[Id, P6]).flags(&[Flag::Chargeback]),
        ),
        (
            "the ledger has an open chargeback on one of the wallet's orders",
            asks().order("o0", 50, 900, at(days(-60))).chargeback(
                "cb1",
                "o0",
                ChargebackStatus::Open,
            ),
            review(&[Id, P6]).flags(&[Flag::Chargeback]),
        ),
        (
            "a chargeback the shop won is no open dispute",
            asks().order("o0", 50, 900, at(days(-60))).chargeback(
                "cb1",
                "o0",
                ChargebackStatus::Won,
            ),
            expect(Outcome::Approved, ReplyKind::CashRefundApproved, &[Id, P2])
                .action(cash("o1", 900)),
        ),
        (
            "the wallet is suspended",
            asks().status(WalletStatus::Suspended),
            review(&[Id, P6]).flags(&[Flag::Suspended]),
        ),
    ]);
}

#[test]
fn p7_sends_statutory_rights_to_a_person() {
    run(vec![
        (
            "a cash refund invoking consumer-protection law",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .says(Flag::StatutoryRights),
            review(&[Id, P7]).flags(&[Flag::StatutoryRights]),
        ),
        (
            "statutory rights after the window still go to a person",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(30)))
                .says(Flag::StatutoryRights),
            review(&[Id, P7]).flags(&[Flag::StatutoryRights]),
        ),
    ]);
}

#[test]
fn auth_turns_every_unverified_approval_into_review() {
    let unverified = &[Flag::SenderUnverified];
    run(vec![
        (
            "an unverified cash refund",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .unverified(),
            review(&[Id, P2, Auth]).flags(unverified),
        ),
        (
            "an unverified failed-generation credit",
            case(Category::FailedGeneration)
                .failed("g1", 1, false, bought())
                .unverified(),
            review(&[Id, P1, Auth]).flags(unverified),
        ),
        (
            "an unverified courtesy credit",
            case(Category::BrokenAnatomy)
                .used("g1", "o1", 1, bought())
                .attached()
                .unverified(),
            review(&[Id, P3, Auth]).flags(unverified),
        ),
        (
            "an unverified refusal stays a refusal, flagged",
            cash_case()
                .order("o1", 50, 900, bought())
                .cites("o1")
                .received(at(days(20)))
                .unverified(),
            expect(Outcome::Denied, ReplyKind::WindowExpired, &[Id, P4]).flags(unverified),
        ),
        (
            "an unverified request for information stays one, flagged",
            cash_case().no_wallet().unverified(),
            expect(Outcome::NeedsInfo, ReplyKind::UnknownSender, &[Id]).flags(unverified),
        ),
        (
            "an unverified already-refunded answer stays an answer, flagged",
            case(Category::FailedGeneration)
                .failed("g1", 1, true, bought())
                .unverified(),
            expect(
                Outcome::Answered,
                ReplyKind::FailedGenerationAlreadyRefunded,
                &[Id, P1],
            )
            .flags(unverified),
        ),
    ]);
}

#[test]
fn an_unrecognised_request_goes_to_a_person() {
    run(vec![(
        "category other",
        case(Category::Other),
        review(&[Id, P5]),
    )]);
}
