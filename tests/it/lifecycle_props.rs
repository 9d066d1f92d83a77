//! Random interleavings through the one lifecycle: new messages (from a
//! verified and an unverified sender), customer follow-ups, two reviewers
//! and an admin claiming and deciding, undeliverable replies, the deadline
//! sweep, and crashes (a transaction applied and never committed) — on a
//! real SQLite database (PostgreSQL with `REFUNDD_PROPS_PG=1`). After every
//! step the invariants hold:
//!
//! - the money approved for an order never exceeds what is left of it;
//! - a decided case is never decided by a reviewer again (only a new
//!   message reopens it);
//! - every open case has a deadline inside the configured working hours;
//! - a reviewer never decides a case another reviewer holds (an admin takes
//!   it over, audited);
//! - every change of a case has its event.
//!
//! CI runs a bounded number of sequences (`PROPTEST_CASES`, default 8);
//! run more on demand: `PROPTEST_CASES=500 cargo nextest run lifecycle_props`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::sync::Arc;

use refundd::config::Settings;
use refundd::domain::{Action, Outcome};
use refundd::ingest::{RawMessage, store_message};
use refundd::pipeline::review::{AskFor, ReviewChoice, ReviewDesk, ReviewRequest};
use refundd::pipeline::{Pipeline, outbox, sweep};
use refundd::reply::Templates;
use refundd::store::{AuditAction, CaseFilter, CaseId, Store, import_jsonl};

use crate::support::{RefusingSink, TestDb, pending_refunds, repo};

const ANN_ORDER: &str = "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e";
const ANN_AMOUNT: i64 = 900;
const REVIEWERS: [(&str, bool); 3] = [
    ("rita@anumi.example", false),
    ("sam@anumi.example", false),
    ("ada@anumi.example", true),
];

#[derive(Debug, Clone)]
enum Op {
    /// Ann writes a new message (verified or not).
    Writes { verified: bool },
    /// Ann answers the reply of case `n` (modulo the cases there are).
    FollowsUp { case: usize },
    /// Reviewer `who` claims case `n`.
    Claims { who: usize, case: usize },
    /// Reviewer `who` decides case `n`.
    Decides { who: usize, case: usize, choice: u8 },
    /// Every queued reply is refused by the mail server.
    DeliveryRefused,
    /// The deadline sweep runs `days` later.
    Sweeps { days: i64 },
    /// A reviewer's approval is applied and the process dies before commit.
    Crashes { case: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|verified| Op::Writes { verified }),
        2 => (0..8usize).prop_map(|case| Op::FollowsUp { case }),
        2 => (0..3usize, 0..8usize).prop_map(|(who, case)| Op::Claims { who, case }),
        4 => (0..3usize, 0..8usize, 0..5u8).prop_map(|(who, case, choice)| Op::Decides { who, case, choice }),
        1 => Just(Op::DeliveryRefused),
        1 => (1..20i64).prop_map(|days| Op::Sweeps { days }),
        1 => (0..8usize).prop_map(|case| Op::Crashes { case }),
    ]
}

struct World {
    _db: TestDb,
    store: Store,
    settings: Arc<Settings>,
    pipeline: Pipeline,
    reviewers: ReviewDesk,
    templates: Templates,
    clock: DateTime<Utc>,
    messages: usize,
}

fn settings() -> Settings {
    let settings: Settings = toml::from_str(
        r#"
        [sender_auth]
        trusted_authserv_ids = ["mx.anumi.example"]
        [reply]
        review_business_days = 3
        max_replies_per_hour = 10000
        [calendar]
        time_zone = "Europe/Berlin"
        hours = "09:00-17:00"
        "#,
    )
    .unwrap();
    settings.validate().unwrap();
    settings
}

impl World {
    async fn new(db: TestDb) -> World {
        let store = Store::connect(&db.url).await.unwrap();
        let ledger = std::fs::read(repo().join("examples/demo/ledger.jsonl")).unwrap();
        import_jsonl(&store, ledger.as_slice(), |_| {})
            .await
            .unwrap();
        let settings = Arc::new(settings());
        let templates = Templates::load(settings.reply_templates()).unwrap();
        World {
            pipeline: Pipeline::with_templates(store.clone(), settings.clone(), templates.clone())
                .unwrap(),
            reviewers: ReviewDesk::with_templates(
                store.clone(),
                settings.clone(),
                templates.clone(),
            ),
            templates,
            store,
            settings,
            clock: Utc.with_ymd_and_hms(2026, 6, 5, 9, 12, 0).unwrap(),
            messages: 0,
            _db: db,
        }
    }

    async fn cases(&self) -> Vec<CaseId> {
        let all = self.store.list_cases(&CaseFilter::default()).await.unwrap();
        all.into_iter().map(|c| c.id).collect()
    }

    async fn pick(&self, n: usize) -> Option<CaseId> {
        let cases = self.cases().await;
        (!cases.is_empty()).then(|| cases[n % cases.len()])
    }

    async fn deliver(&mut self, verified: bool, in_reply_to: Option<String>) {
        self.messages += 1;
        self.clock += Duration::minutes(7);
        let raw = std::fs::read(repo().join("examples/demo/mail/01-ann-unused-pack.eml")).unwrap();
        let mut text = String::from_utf8(raw).unwrap();
        if !verified {
            text = text
                .lines()
                .filter(|l| !l.starts_with("Authentication-Results:"))
                .collect::<Vec<_>>()
                .join("\r\n");
        }
        let n = self.messages;
        text = text.replacen("Message-ID: <", &format!("Message-ID: <prop{n}-"), 1);
        if let Some(id) = in_reply_to {
            text = format!("In-Reply-To: <{id}>\r\nReferences: <{id}>\r\n{text}");
        }
        store_message(
            &self.store,
            RawMessage {
                source: "test".into(),
                bytes: text.into_bytes(),
                received_at: self.clock,
                full_size: None,
            },
        )
        .await
        .unwrap();
        self.pipeline
            .process_pending(self.clock + Duration::seconds(30))
            .await
            .unwrap();
    }

    async fn step(&mut self, op: &Op) {
        match op {
            Op::Writes { verified } => self.deliver(*verified, None).await,
            Op::FollowsUp { case } => {
                let Some(case) = self.pick(*case).await else {
                    return;
                };
                let reply = self
                    .store
                    .replies_for_case(case)
                    .await
                    .unwrap()
                    .into_iter()
                    .last();
                if let Some(reply) = reply {
                    self.deliver(false, Some(reply.message_id)).await;
                }
            }
            Op::Claims { who, case } => {
                let Some(case) = self.pick(*case).await else {
                    return;
                };
                let (email, admin) = REVIEWERS[*who];
                let open =
                    refundd::queue::is_open(self.store.case(case).await.unwrap().unwrap().status);
                if open {
                    let _ = self.store.claim_case(case, email, admin, self.clock).await;
                }
            }
            Op::Decides { who, case, choice } => self.decide(*who, *case, *choice).await,
            Op::DeliveryRefused => {
                outbox::deliver_queued(
                    &self.store,
                    &RefusingSink,
                    &self.settings.lifecycle(),
                    self.clock,
                )
                .await
                .unwrap();
            }
            Op::Sweeps { days } => {
                self.clock += Duration::days(*days);
                sweep::sweep(&self.store, &self.settings, &self.templates, self.clock)
                    .await
                    .unwrap();
            }
            Op::Crashes { case } => {
                let Some(case) = self.pick(*case).await else {
                    return;
                };
                let row = self.store.case(case).await.unwrap().unwrap();
                let mut decision = row.decision.clone();
                decision.outcome = Outcome::Approved;
                decision.actions = vec![Action::CashRefund {
                    order_id: ANN_ORDER.into(),
                    amount: 1,
                    currency: "EUR".into(),
                }];
                if let Ok(t) = self.settings.lifecycle().reviewed(
                    row.state(),
                    decision,
                    REVIEWERS[0].0,
                    false,
                    self.clock,
                ) {
                    let mut tx = self.store.begin().await.unwrap();
                    let _ = tx.apply_transition(&t).await;
                    drop(tx); // dies before commit: nothing of it may remain
                }
            }
        }
    }

    async fn decide(&mut self, who: usize, case: usize, choice: u8) {
        let Some(case) = self.pick(case).await else {
            return;
        };
        let (email, admin) = REVIEWERS[who];
        let before = self.store.case(case).await.unwrap().unwrap();
        let holder = self.store.case_claim(case).await.unwrap().map(|(h, _)| h);
        let choice = match choice {
            0 => ReviewChoice::ApproveCash {
                order_id: Some(ANN_ORDER.into()),
                amount: None,
            },
            1 => ReviewChoice::ApproveCash {
                order_id: Some(ANN_ORDER.into()),
                amount: Some(300),
            },
            2 => ReviewChoice::ApproveCash {
                order_id: Some(ANN_ORDER.into()),
                amount: Some(ANN_AMOUNT),
            },
            3 => ReviewChoice::Deny {
                reason: "subjective".into(),
            },
            _ => ReviewChoice::Ask {
                ask: AskFor::OrderId,
            },
        };
        let result = self
            .reviewers
            .apply_reviewer_decision(
                &ReviewRequest {
                    case_id: case,
                    expected_version: before.version,
                    reviewer: email.into(),
                    admin,
                    choice,
                    personal_note: None,
                },
                self.clock,
            )
            .await;
        if let Err(err) = &result {
            assert!(!err.is_transient(), "{err}");
        }
        if result.is_ok() {
            assert!(
                refundd::queue::is_open(before.status),
                "a {} case was decided again without a new message",
                before.status
            );
            match holder {
                Some(h) if h != email => {
                    assert!(admin, "{email} decided a case {h} holds");
                    let audit = self.store.audit_log(Some(case), 100).await.unwrap();
                    assert!(audit.iter().any(|e| e.action == AuditAction::TakeOver));
                }
                _ => {}
            }
            assert_eq!(self.store.case_claim(case).await.unwrap(), None);
        }
    }

    async fn check_invariants(&self) {
        let calendar = self.settings.calendar.calendar();
        for case in self.cases().await {
            let row = self.store.case(case).await.unwrap().unwrap();
            if refundd::queue::is_open(row.status) {
                let deadline = row
                    .deadline
                    .unwrap_or_else(|| panic!("{case} is open without a deadline"));
                assert!(
                    calendar.is_working_time(deadline),
                    "{case}: deadline {deadline} outside working hours"
                );
            }
            let events = self.store.case_events(case).await.unwrap();
            assert!(
                events.len() as i64 >= row.version,
                "{case}: version {} with {} events",
                row.version,
                events.len()
            );
            assert_eq!(
                events.last().unwrap().to_status,
                row.status,
                "{case}: the last event is the status"
            );
        }
        let committed = pending_refunds(&self.store, &self.cases().await, ANN_ORDER).await;
        assert!(
            committed <= ANN_AMOUNT,
            "{committed} approved of a {ANN_AMOUNT} order"
        );
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_interleaving_keeps_the_lifecycle_invariants(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let db = if std::env::var("REFUNDD_PROPS_PG").is_ok() {
                TestDb::postgres().await
            } else {
                TestDb::sqlite()
            };
            let mut world = World::new(db).await;
            for op in &ops {
                world.step(op).await;
                world.check_invariants().await;
            }
        });
    }
}
