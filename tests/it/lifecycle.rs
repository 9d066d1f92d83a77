//! The case lifecycle through its real callers, on SQLite and PostgreSQL:
//! one order is never approved twice across cases (sequentially or at the
//! same moment), a claim binds, and every path that puts a case in front
//! of a person gives it a deadline from the configured calendar.

use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::{Action, Outcome};
use refundd::ingest::{RawMessage, store_message};
use refundd::pipeline::Pipeline;
use refundd::pipeline::outbox;
use refundd::pipeline::review::{ReviewChoice, ReviewDesk, ReviewError, ReviewRequest};
use refundd::store::{AuditAction, CaseId, CaseStatus, Store, StoreError, import_jsonl};

use crate::support::{RefusingSink, TestDb, demo_mail, pending_refunds, repo, store_at_its_date};

const ANN_ORDER: &str = "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e";
const RITA: &str = "rita@anumi.example";
const SAM: &str = "sam@anumi.example";
const ADA: &str = "ada@anumi.example";

/// A store with the demo ledger and `settings`; no sender is verified (no
/// trusted authserv-id), so every refund request waits for a reviewer.
struct Desk {
    _db: TestDb,
    store: Store,
    settings: Arc<Settings>,
    reviewers: ReviewDesk,
}

impl Desk {
    async fn new(db: TestDb, settings: Settings) -> Desk {
        let store = Store::connect(&db.url).await.unwrap();
        let ledger = std::fs::read(repo().join("examples/demo/ledger.jsonl")).unwrap();
        let report = import_jsonl(&store, ledger.as_slice(), |_| {})
            .await
            .unwrap();
        assert!(report.rejected.is_empty());
        let settings = Arc::new(settings);
        let reviewers = ReviewDesk::new(store.clone(), settings.clone()).unwrap();
        Desk {
            _db: db,
            store,
            settings,
            reviewers,
        }
    }

    /// Ann's request to refund her unused pack (9.00 EUR), delivered as a
    /// new message `n` (its own Message-ID: a case of its own).
    async fn ann_writes(&self, n: usize) -> CaseId {
        self.deliver("01-ann-unused-pack.eml", n).await
    }

    async fn deliver(&self, file: &str, n: usize) -> CaseId {
        let raw = std::fs::read(repo().join("examples/demo/mail").join(file)).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let start = text.find("Message-ID: <").unwrap() + "Message-ID: <".len();
        let bytes = format!("{}copy{n}-{}", &text[..start], &text[start..]).into_bytes();
        let received_at = received();
        store_message(
            &self.store,
            RawMessage {
                source: "test".into(),
                bytes,
                received_at,
                full_size: None,
            },
        )
        .await
        .unwrap();
        let pipeline = Pipeline::new(self.store.clone(), self.settings.clone()).unwrap();
        let done = pipeline
            .process_pending(received_at + chrono::Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        done[0].case_id
    }

    async fn approve(
        &self,
        case: CaseId,
        reviewer: &str,
        admin: bool,
        amount: Option<i64>,
    ) -> Result<Vec<Action>, ReviewError> {
        let version = self.store.case(case).await.unwrap().unwrap().version;
        let choice = ReviewChoice::ApproveCash {
            order_id: Some(ANN_ORDER.into()),
            amount,
        };
        self.decide(case, version, reviewer, admin, choice)
            .await
            .map(|applied| applied.actions)
    }

    async fn decide(
        &self,
        case: CaseId,
        version: i64,
        reviewer: &str,
        admin: bool,
        choice: ReviewChoice,
    ) -> Result<refundd::pipeline::review::Applied, ReviewError> {
        self.reviewers
            .apply_reviewer_decision(
                &ReviewRequest {
                    case_id: case,
                    expected_version: version,
                    reviewer: reviewer.into(),
                    admin,
                    choice,
                    personal_note: None,
                },
                now(),
            )
            .await
    }

    /// Minor units of Ann's order in pending cash refunds, over `cases`.
    async fn pending_for_ann(&self, cases: &[CaseId]) -> i64 {
        pending_refunds(&self.store, cases, ANN_ORDER).await
    }
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 5, 9, 12, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 5, 11, 0, 0).unwrap()
}

async fn one_order_is_approved_once_across_cases(db: TestDb) {
    let desk = Desk::new(db, Settings::default()).await;
    let first = desk.ann_writes(1).await;
    let second = desk.ann_writes(2).await;
    assert_ne!(first, second, "two messages, two cases");
    for case in [first, second] {
        let row = desk.store.case(case).await.unwrap().unwrap();
        assert_eq!(
            row.status,
            CaseStatus::Review,
            "unverified: a person decides"
        );
    }

    let paid = desk.approve(first, RITA, false, None).await.unwrap();
    assert!(matches!(
        &paid[..],
        [Action::CashRefund { amount: 900, .. }]
    ));

    // The second case sees what the first approved, before it is paid.
    let second_row = desk.store.case(second).await.unwrap().unwrap();
    let limits = desk.reviewers.limits(&second_row).await.unwrap();
    let order = limits
        .orders
        .iter()
        .find(|o| o.order_id == ANN_ORDER)
        .unwrap();
    assert_eq!((order.refunded, order.max_refund), (900, 0));
    assert_eq!(limits.proposal, None, "nothing left to propose");
    let again = desk.approve(second, RITA, false, Some(900)).await;
    assert!(
        matches!(
            again,
            Err(ReviewError::Invalid(_) | ReviewError::Conflict { .. })
        ),
        "{again:?}"
    );
    assert_eq!(desk.pending_for_ann(&[first, second]).await, 900);
    let row = desk.store.case(second).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        CaseStatus::Review,
        "the refused approval changed nothing"
    );
}

#[tokio::test]
async fn one_order_is_approved_once_across_cases_on_sqlite() {
    one_order_is_approved_once_across_cases(TestDb::sqlite()).await;
}

#[tokio::test]
async fn one_order_is_approved_once_across_cases_on_postgres() {
    one_order_is_approved_once_across_cases(TestDb::postgres().await).await;
}

/// Six reviewers approve the full order on six cases at the same moment:
/// one approval passes, the others are told the order has nothing left.
async fn concurrent_approvals_of_one_order_cannot_both_pass(db: TestDb) {
    let desk = Arc::new(Desk::new(db, Settings::default()).await);
    let mut cases = Vec::new();
    for n in 0..6 {
        cases.push(desk.ann_writes(n).await);
    }
    let tasks: Vec<_> = cases
        .iter()
        .map(|&case| {
            let desk = desk.clone();
            tokio::spawn(async move { desk.approve(case, RITA, false, Some(900)).await })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => passed += 1,
            Err(ReviewError::Invalid(_) | ReviewError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(passed, 1);
    assert_eq!(desk.pending_for_ann(&cases).await, 900);
}

#[tokio::test]
async fn concurrent_approvals_of_one_order_cannot_both_pass_on_sqlite() {
    concurrent_approvals_of_one_order_cannot_both_pass(TestDb::sqlite()).await;
}

#[tokio::test]
async fn concurrent_approvals_of_one_order_cannot_both_pass_on_postgres() {
    concurrent_approvals_of_one_order_cannot_both_pass(TestDb::postgres().await).await;
}

/// The store's own check, under the order's lock: a second transaction
/// reserving the same money fails even when both decided on the same
/// stale numbers.
async fn the_store_refuses_a_reservation_beyond_what_is_left(db: TestDb) {
    let desk = Desk::new(db, Settings::default()).await;
    let (a, b) = (desk.ann_writes(1).await, desk.ann_writes(2).await);
    let lifecycle = desk.settings.lifecycle();
    let approve = |case: CaseId| {
        let store = desk.store.clone();
        let lifecycle = lifecycle.clone();
        async move {
            let row = store.case(case).await.unwrap().unwrap();
            let mut decision = row.decision.clone();
            decision.outcome = Outcome::Approved;
            decision.actions = vec![Action::CashRefund {
                order_id: ANN_ORDER.into(),
                amount: 600,
                currency: "EUR".into(),
            }];
            let t = lifecycle
                .reviewed(row.state(), decision, RITA, false, now())
                .unwrap();
            let mut tx = store.begin().await?;
            tx.apply_transition(&t).await?;
            tx.commit().await
        }
    };
    let (first, second) = tokio::join!(approve(a), approve(b));
    let refused = match (first, second) {
        (Ok(()), Err(e)) | (Err(e), Ok(())) => e,
        other => panic!("exactly one reservation must pass: {other:?}"),
    };
    assert!(
        matches!(
            refused,
            StoreError::OverRefund {
                left: 300,
                asked: 600,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(desk.pending_for_ann(&[a, b]).await, 600);
}

#[tokio::test]
async fn the_store_refuses_a_reservation_beyond_what_is_left_on_sqlite() {
    the_store_refuses_a_reservation_beyond_what_is_left(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_store_refuses_a_reservation_beyond_what_is_left_on_postgres() {
    the_store_refuses_a_reservation_beyond_what_is_left(TestDb::postgres().await).await;
}

async fn a_claim_binds_and_an_admin_take_over_is_audited(db: TestDb) {
    let desk = Desk::new(db, Settings::default()).await;
    let case = desk.ann_writes(1).await;
    desk.store
        .claim_case(case, RITA, false, now())
        .await
        .unwrap();
    let version = desk.store.case(case).await.unwrap().unwrap().version;
    let deny = ReviewChoice::Deny {
        reason: "window_expired".into(),
    };

    let refused = desk.decide(case, version, SAM, false, deny.clone()).await;
    match refused {
        Err(ReviewError::Conflict { detail, .. }) => assert!(detail.contains(RITA), "{detail}"),
        other => panic!("a reviewer decided a case someone else holds: {other:?}"),
    }
    assert_eq!(
        desk.store
            .case_claim(case)
            .await
            .unwrap()
            .map(|(who, _)| who),
        Some(RITA.to_owned()),
        "the claim stays"
    );
    assert_eq!(
        desk.store.case(case).await.unwrap().unwrap().version,
        version
    );

    let applied = desk.decide(case, version, ADA, true, deny).await.unwrap();
    assert_eq!(applied.status, CaseStatus::Resolved);
    assert_eq!(desk.store.case_claim(case).await.unwrap(), None);
    let audit = desk.store.audit_log(Some(case), 10).await.unwrap();
    let take_over = audit
        .iter()
        .find(|e| e.action == AuditAction::TakeOver)
        .expect("the take-over is in the audit log");
    assert_eq!(take_over.actor, format!("reviewer:{ADA}"));
    assert_eq!(take_over.detail["claimed_by"], RITA);
}

#[tokio::test]
async fn a_claim_binds_and_an_admin_take_over_is_audited_on_sqlite() {
    a_claim_binds_and_an_admin_take_over_is_audited(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_claim_binds_and_an_admin_take_over_is_audited_on_postgres() {
    a_claim_binds_and_an_admin_take_over_is_audited(TestDb::postgres().await).await;
}

/// Berlin hours with German holidays and a four-day promise: nothing like
/// the UTC, two-day default.
fn berlin_settings() -> Settings {
    let mut settings: Settings = toml::from_str(
        r#"
        [reply]
        review_business_days = 4
        [calendar]
        time_zone = "Europe/Berlin"
        hours = "09:00-17:00"
        holiday_files = ["examples/holidays/de.toml"]
        "#,
    )
    .unwrap();
    settings.calendar.load_holiday_files(Some(&repo())).unwrap();
    settings.validate().unwrap();
    settings
}

#[tokio::test]
async fn an_undeliverable_reply_puts_its_case_in_review_by_the_configured_calendar() {
    let desk = Desk::new(TestDb::sqlite(), berlin_settings()).await;
    // Cleo asked after the window: denied and resolved, no deadline.
    let case = desk.deliver("04-cleo-too-late-fr.eml", 1).await;
    let row = desk.store.case(case).await.unwrap().unwrap();
    assert_eq!((row.status, row.deadline), (CaseStatus::Resolved, None));

    let at = now();
    let report = outbox::deliver_queued(&desk.store, &RefusingSink, &desk.settings.lifecycle(), at)
        .await
        .unwrap();
    assert_eq!(report.failed, 1);
    let row = desk.store.case(case).await.unwrap().unwrap();
    assert_eq!(row.status, CaseStatus::Review);
    assert_eq!(row.decision.outcome, Outcome::Denied, "the decision stands");
    let expected = desk.settings.lifecycle().deadline_from(at);
    assert_eq!(row.deadline, Some(expected));
    // Friday 5 June 13:00 Berlin + 4 business days of 09-17: Thursday
    // 11 June at the earliest, where the UTC two-day default says Tuesday.
    assert!(expected > at + chrono::Duration::days(5), "{expected}");
}

/// What became of each stored message, in a form that does not depend on
/// the order cases were numbered in: its outcome, whether it joined a case,
/// whether a reply was queued, the first message of its case, and the
/// actions of its case.
async fn what_became_of_each(
    store: &Store,
    processed: &[refundd::pipeline::Processed],
) -> Vec<(i64, Outcome, bool, bool, i64, Vec<String>)> {
    let mut result = Vec::new();
    for p in processed {
        let first = store.case_messages(p.case_id).await.unwrap()[0].id;
        let actions = store
            .actions_for_case(p.case_id)
            .await
            .unwrap()
            .iter()
            .map(|a| a.action.describe())
            .collect();
        result.push((
            p.message,
            p.outcome,
            p.joined,
            p.reply_message_id.is_some(),
            first,
            actions,
        ));
    }
    result.sort_by_key(|entry| entry.0);
    result
}

/// Every demo mail, and Ann writing three times, decided by the daemon's
/// way (rounds of one message per sender, each round recorded in one
/// transaction) must give the same cases, outcomes, replies and actions as
/// deciding one message after the other.
async fn deciding_in_rounds_gives_what_deciding_one_by_one_gives(
    one_by_one: TestDb,
    in_rounds: TestDb,
) {
    let mut settings = Settings::default();
    settings.sender_auth.trusted_authserv_ids = vec!["mx.anumi.example".into()];
    let mut outcomes = Vec::new();
    for (db, parallelism) in [(one_by_one, 1), (in_rounds, 4)] {
        let desk = Desk::new(db, settings.clone()).await;
        let mut raws: Vec<Vec<u8>> = demo_mail().into_iter().map(|(_, bytes)| bytes).collect();
        // Ann again, twice, as new cases of her own.
        let ann = String::from_utf8(raws[0].clone()).unwrap();
        for n in 1..=2 {
            raws.push(
                ann.replacen("Message-ID: <", &format!("Message-ID: <again{n}-"), 1)
                    .into_bytes(),
            );
        }
        let mut stored = 0;
        for bytes in raws {
            let inserted = store_at_its_date(&desk.store, "test", bytes).await;
            stored += usize::from(matches!(inserted, refundd::store::Inserted::New(_)));
        }
        let pipeline = Pipeline::new(desk.store.clone(), desk.settings.clone())
            .unwrap()
            .deciding_in_parallel(parallelism);
        let processed = pipeline.process_pending(now()).await.unwrap();
        assert_eq!(processed.len(), stored, "every message decided");
        outcomes.push(what_became_of_each(&desk.store, &processed).await);
    }
    assert!(
        outcomes[0].iter().any(|o| o.1 == Outcome::Approved),
        "the mail takes the paths that move money: {:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[0], outcomes[1]);
}

#[tokio::test]
async fn deciding_in_rounds_gives_what_deciding_one_by_one_gives_on_sqlite() {
    deciding_in_rounds_gives_what_deciding_one_by_one_gives(TestDb::sqlite(), TestDb::sqlite())
        .await;
}

#[tokio::test]
async fn deciding_in_rounds_gives_what_deciding_one_by_one_gives_on_postgres() {
    deciding_in_rounds_gives_what_deciding_one_by_one_gives(
        TestDb::postgres().await,
        TestDb::postgres().await,
    )
    .await;
}
