use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Berlin;

use super::*;
use crate::domain::{Category, ReplyKind};
use crate::queue::{BusinessCalendar, MONDAY_TO_FRIDAY};

fn berlin(d: u32, h: u32) -> DateTime<Utc> {
    Berlin
        .with_ymd_and_hms(2026, 6, d, h, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// Berlin, Monday to Friday, 09:00–17:00, Whit Monday (25 May) and 4 June
/// as holidays: nothing like the UTC default.
fn lifecycle() -> Lifecycle {
    let holiday = chrono::NaiveDate::from_ymd_opt(2026, 6, 4).unwrap();
    Lifecycle::new(
        BusinessCalendar::new(Berlin, MONDAY_TO_FRIDAY, Default::default(), [holiday]),
        2,
    )
}

fn decision(outcome: Outcome) -> Decision {
    Decision {
        outcome,
        category: Category::CashRefund,
        flags: Default::default(),
        actions: vec![],
        trace: vec![],
        reply: ReplyKind::ReviewAcknowledged,
        order_id: None,
        wallet_id: None,
        generation_id: None,
        reply_facts: Default::default(),
    }
}

fn state(status: CaseStatus, deadline: Option<DateTime<Utc>>) -> CaseState {
    CaseState {
        id: CaseId(4),
        version: 3,
        status,
        deadline,
    }
}

#[test]
fn the_table_allows_exactly_the_moves_the_desk_makes() {
    use CaseStatus::{Ignored, NeedsInfo, Resolved, Review};
    let all = [
        None,
        Some(Review),
        Some(NeedsInfo),
        Some(Resolved),
        Some(Ignored),
    ];
    let to_all = [Review, NeedsInfo, Resolved, Ignored];
    let table: &[(Cause, Option<CaseStatus>, CaseStatus, bool)] = &[
        (Cause::Opened, None, Resolved, true),
        (Cause::Opened, Some(Review), Review, false),
        (Cause::FollowUp, Some(NeedsInfo), Resolved, true),
        (Cause::FollowUp, Some(Resolved), Review, true),
        (Cause::FollowUp, Some(Resolved), Resolved, false),
        (Cause::Reviewed, Some(Review), Resolved, true),
        (Cause::Reviewed, Some(NeedsInfo), NeedsInfo, true),
        (Cause::Reviewed, Some(Resolved), Resolved, false),
        (Cause::Reviewed, Some(Review), Review, false),
        (Cause::Reviewed, None, Resolved, false),
        (Cause::SentToReview, Some(Resolved), Review, true),
        (Cause::SentToReview, Some(Resolved), Resolved, false),
        (Cause::Abandoned, Some(NeedsInfo), Resolved, true),
        (Cause::Abandoned, Some(Review), Resolved, false),
        (Cause::Breached, Some(Review), Review, true),
        (Cause::Breached, Some(Resolved), Resolved, false),
    ];
    for &(cause, from, to, ok) in table {
        assert_eq!(allowed(cause, from, to), ok, "{cause:?} {from:?} -> {to}");
    }
    // Nobody but a new message decides a resolved case again.
    for to in to_all {
        for cause in [Cause::Reviewed, Cause::Abandoned, Cause::Breached] {
            assert!(
                !allowed(cause, Some(Resolved), to),
                "{cause:?} resolved -> {to}"
            );
        }
    }
    // Every cause can move something, and only `Opened` starts from nothing.
    for (cause, from, _) in ALLOWED {
        assert_eq!(from.contains(&None), *cause == Cause::Opened, "{cause:?}");
    }
    assert!(
        all.iter()
            .all(|f| f.is_none() || !allowed(Cause::Opened, *f, Review))
    );
}

#[test]
fn an_opened_case_waits_two_business_days_of_the_configured_calendar_from_receipt() {
    // Wednesday 3 June 16:00; Thursday 4 June is a holiday: one hour on
    // Wednesday, eight on Friday, seven on Monday -> Monday 8 June 16:00.
    let received = berlin(3, 16);
    let t = lifecycle()
        .open(
            Opening {
                sender: "ann@example.com".into(),
                subject: "refund".into(),
                language: Language::De,
            },
            decision(Outcome::Review),
            received,
            berlin(3, 18),
        )
        .unwrap();
    assert_eq!(t.to, CaseStatus::Review);
    assert_eq!(t.deadline, Some(berlin(8, 16)));
    assert_eq!(t.actor, Actor::Engine);
    assert_eq!(t.from(), None);
}

#[test]
fn a_resolved_case_has_no_deadline_and_loses_its_claim() {
    let t = lifecycle()
        .reviewed(
            state(CaseStatus::Review, Some(berlin(8, 16))),
            decision(Outcome::Denied),
            "rita@anumi.example",
            false,
            berlin(5, 10),
        )
        .unwrap();
    assert_eq!(t.to, CaseStatus::Resolved);
    assert_eq!(t.deadline, None);
    assert!(t.clears_claim());
    assert_eq!(
        t.claim,
        ClaimRule::Holder {
            reviewer: "rita@anumi.example".into(),
            may_take_over: false
        }
    );
}

#[test]
fn sending_to_review_keeps_an_open_deadline_and_starts_one_for_a_closed_case() {
    let l = lifecycle();
    let step = review_step("Polar refused the refund");
    let open = l
        .to_review(
            state(CaseStatus::Review, Some(berlin(8, 16))),
            &decision(Outcome::Review),
            step.clone(),
            true,
            berlin(5, 10),
            berlin(5, 10),
        )
        .unwrap();
    assert_eq!(open.deadline, Some(berlin(8, 16)));
    // Friday 5 June 10:00 + 16 working hours -> Tuesday 9 June 10:00.
    let closed = l
        .to_review(
            state(CaseStatus::Resolved, None),
            &decision(Outcome::Approved),
            step,
            true,
            berlin(5, 10),
            berlin(5, 10),
        )
        .unwrap();
    assert_eq!(closed.deadline, Some(berlin(9, 10)));
    let d = closed.decision.as_ref().unwrap();
    assert_eq!(d.outcome, Outcome::Review, "the approval is retracted");
    assert_eq!(d.trace.last().unwrap().finding, "Polar refused the refund");
    assert_eq!(closed.reason, "Polar refused the refund");
    assert!(!closed.clears_claim(), "a person may already be on it");
}

#[test]
fn a_move_outside_the_table_is_refused_by_the_builder() {
    let err = lifecycle()
        .reviewed(
            state(CaseStatus::Resolved, None),
            decision(Outcome::Approved),
            "rita@anumi.example",
            true,
            berlin(5, 10),
        )
        .unwrap_err();
    assert_eq!(err.from, Some(CaseStatus::Resolved));
    assert_eq!(err.cause, Cause::Reviewed);
}
