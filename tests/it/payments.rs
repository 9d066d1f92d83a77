//! Money that moves exactly once: the payment stage against the Polar test
//! server on loopback, on a fresh SQLite or PostgreSQL database per test —
//! the happy path, every refusal and check that sends a case to review, the
//! guard rails, lost responses, two passes racing, a crash at every step of
//! a refund (the real binary, aborted and run again), the webhook endpoint
//! and the dispute poll; and the courtesy cap counting a wallet credit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use refundd::act::payments::{self, CRASHPOINTS, PaymentReport};
use refundd::act::polar::{
    Backoff, CreateRefund, PolarClient, PolarClientConfig, RefundReason, webhook,
};
use refundd::act::{ledger_sync, webhooks};
use refundd::config::{PolarSettings, Settings};
use refundd::domain::{ChargebackStatus, Clause, Generation, GenerationStatus, Outcome};
use refundd::pipeline::Pipeline;
use refundd::polar_sim::{
    Fault, FaultKind, PolarSim, Seed, SeedCustomer, SeedDispute, SeedOrder, SimConfig, SimRoute,
};
use refundd::store::{
    ActionStatus, CaseId, CaseStatus, DeliveryState, HeldRole, HeldState, LedgerRefundStatus,
    PaymentState, ReplyStatus, Store, import,
};

use crate::support::{TestDb, header_date, repo, store_at_its_date, write_mail};

const ANN_ORDER: &str = "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e";
const BEN_ORDER: &str = "7a2b3c4d-5e6f-4a7b-9c8d-0e1f2a3b4c5d";
const ANN: &str = "01-ann-unused-pack.eml";
const BEN: &str = "03-ben-partly-used-de.eml";
const SECRET: &str = "whsec_TESTSECRETdoNotUseInProd0123456789abcdef";

fn seed_order(id: &str, customer: &str) -> SeedOrder {
    SeedOrder {
        id: Some(id.into()),
        customer_id: customer.into(),
        net_amount: 900,
        tax_amount: 171,
        currency: "EUR".into(),
        status: "paid".into(),
        invoice_number: None,
        receipt_number: None,
        product_name: "Starter 50".into(),
        created_at: None,
        has_payment: true,
    }
}

/// Ann's and Ben's Polar side, as the demo ledger has them.
fn seed() -> Seed {
    let ann = "a1a1a1a1-0000-4000-8000-000000000001";
    let ben = "b2b2b2b2-0000-4000-8000-000000000002";
    Seed {
        customers: vec![
            SeedCustomer {
                id: Some(ann.into()),
                email: "ann@example.com".into(),
                ..SeedCustomer::default()
            },
            SeedCustomer {
                id: Some(ben.into()),
                email: "ben@example.net".into(),
                ..SeedCustomer::default()
            },
        ],
        orders: vec![seed_order(ANN_ORDER, ann), seed_order(BEN_ORDER, ben)],
        disputes: vec![],
    }
}

fn polar_settings(sim: &PolarSim) -> PolarSettings {
    PolarSettings {
        base_url: sim.base_url(),
        token: sim.token().to_owned(),
        timeout_ms: 2_000,
        ..PolarSettings::default()
    }
}

fn settings_with(polar: Option<PolarSettings>) -> Settings {
    let mut settings = Settings::default();
    settings.sender_auth.trusted_authserv_ids = vec!["mx.anumi.example".into()];
    settings.polar = polar;
    settings
}

fn client_for(polar: &PolarSettings) -> PolarClient {
    PolarClient::new(PolarClientConfig {
        max_retries: 1,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        ..polar.client_config()
    })
    .unwrap()
}

/// A desk on one database with the Polar test server beside it.
struct Desk {
    _db: TestDb,
    store: Store,
    sim: PolarSim,
    settings: Arc<Settings>,
    client: PolarClient,
}

impl Desk {
    async fn new(db: TestDb, tune: impl FnOnce(&mut PolarSettings)) -> Desk {
        let store = Store::connect(&db.url).await.unwrap();
        let ledger = std::fs::read(repo().join("examples/demo/ledger.jsonl")).unwrap();
        let report = import::import_jsonl(&store, ledger.as_slice(), |_| {})
            .await
            .unwrap();
        assert!(report.rejected.is_empty());
        let sim = PolarSim::start(SimConfig {
            seed: seed(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut polar = polar_settings(&sim);
        tune(&mut polar);
        let client = client_for(&polar);
        Desk {
            _db: db,
            store,
            sim,
            settings: Arc::new(settings_with(Some(polar))),
            client,
        }
    }

    /// Stores a sample mail (received at its `Date:`) and decides it.
    async fn mail(&self, name: &str) -> CaseId {
        let bytes = std::fs::read(repo().join("examples/demo/mail").join(name)).unwrap();
        self.mail_bytes(bytes).await
    }

    async fn mail_bytes(&self, bytes: Vec<u8>) -> CaseId {
        let received_at = header_date(&bytes);
        store_at_its_date(&self.store, "test", bytes).await;
        let pipeline = Pipeline::new(self.store.clone(), self.settings.clone()).unwrap();
        let done = pipeline
            .process_pending(received_at + chrono::Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        done[0].case_id
    }

    async fn pay(&self) -> PaymentReport {
        payments::run_pending(&self.store, &self.client, &self.settings, Utc::now())
            .await
            .unwrap()
    }

    async fn queued(&self, case: CaseId) -> Vec<refundd::store::StoredReply> {
        self.store
            .replies_for_case(case)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.status == ReplyStatus::Queued)
            .collect()
    }

    async fn held(&self, case: CaseId, role: HeldRole) -> refundd::store::HeldReply {
        self.store
            .held_replies_for_case(case)
            .await
            .unwrap()
            .into_iter()
            .find(|h| h.role == role)
            .unwrap_or_else(|| panic!("case {case} holds a {role} reply"))
    }

    /// The case is in review with a P2 finding containing `text`, an event
    /// saying so, the refund action not paid, and exactly the "a person will
    /// look" reply released.
    async fn assert_review(&self, case: CaseId, text: &str, action: ActionStatus) {
        let row = self.store.case(case).await.unwrap().unwrap();
        assert_eq!(row.status, CaseStatus::Review);
        assert_eq!(row.decision.outcome, Outcome::Review);
        let last = row.decision.trace.last().unwrap();
        assert_eq!(last.clause, Clause::P2);
        assert!(
            last.finding.contains(text),
            "{text} not in: {}",
            last.finding
        );
        let events = self.store.case_events(case).await.unwrap();
        let event = events.last().unwrap();
        assert_eq!(event.to_status, CaseStatus::Review);
        assert_eq!(event.reason, last.finding);
        let actions = self.store.actions_for_case(case).await.unwrap();
        assert_eq!(actions[0].status, action);
        let queued = self.queued(case).await;
        assert_eq!(queued.len(), 1, "one reply goes out");
        let fallback = self.held(case, HeldRole::Review).await;
        assert_eq!(fallback.state, HeldState::Released);
        assert_eq!(queued[0].message_id, fallback.message_id);
        assert_eq!(
            self.held(case, HeldRole::Approved).await.state,
            HeldState::Dropped
        );
    }
}

async fn happy_path(db: TestDb) {
    let desk = Desk::new(db, |_| {}).await;
    let ann = desk.mail(ANN).await;
    let ben = desk.mail(BEN).await;
    for case in [ann, ben] {
        assert!(
            desk.queued(case).await.is_empty(),
            "the reply waits for Polar"
        );
        assert_eq!(
            desk.store.held_replies_for_case(case).await.unwrap().len(),
            2
        );
    }
    assert!(
        desk.sim.refunds().is_empty(),
        "nothing is posted by the pipeline"
    );

    let report = desk.pay().await;
    assert_eq!(report.accepted, 2, "{report:?}");
    let refunds = desk.sim.refunds();
    assert_eq!(refunds.len(), 2);
    for (case, order, amount) in [(ann, ANN_ORDER, 900), (ben, BEN_ORDER, 540)] {
        let refund = refunds.iter().find(|r| r.order_id == order).unwrap();
        assert_eq!(refund.amount, amount);
        assert_eq!(refund.status, "pending");
        assert_eq!(
            refund.metadata["refundd_key"],
            format!("case-{case}-refund-{order}")
        );
        assert_eq!(refund.metadata["refundd_case"], case.to_string());
        let at_polar = desk.client.list_refunds_for_order(order).await.unwrap();
        assert_eq!(
            at_polar[0].revoke_benefits,
            order == ANN_ORDER,
            "only Ann's unused pack, refunded in full, loses its credits"
        );
        let actions = desk.store.actions_for_case(case).await.unwrap();
        assert_eq!(actions[0].status, ActionStatus::Done);
        assert_eq!(actions[0].detail.as_deref(), Some(refund.id.as_str()));
        let payment = &desk.store.payments_for_case(case).await.unwrap()[0];
        assert_eq!(payment.state, PaymentState::Accepted);
        assert_eq!(payment.polar_refund_id.as_deref(), Some(refund.id.as_str()));
        assert_eq!(payment.attempts, 1);
        assert_eq!(
            desk.store.ledger_refund_status(&refund.id).await.unwrap(),
            Some((amount, LedgerRefundStatus::Pending))
        );
        let queued = desk.queued(case).await;
        assert_eq!(queued.len(), 1);
        assert_eq!(
            queued[0].message_id,
            desk.held(case, HeldRole::Approved).await.message_id
        );
        assert_eq!(
            desk.store.case(case).await.unwrap().unwrap().status,
            CaseStatus::Resolved
        );
    }
    assert_eq!(
        desk.pay().await,
        PaymentReport::default(),
        "nothing left to do"
    );
    assert_eq!(desk.sim.refunds().len(), 2);
}

#[tokio::test]
async fn an_approved_refund_is_posted_once_and_only_then_answered_on_sqlite() {
    happy_path(TestDb::sqlite()).await;
}

#[tokio::test]
async fn an_approved_refund_is_posted_once_and_only_then_answered_on_postgres() {
    happy_path(TestDb::postgres().await).await;
}

#[tokio::test]
async fn without_polar_configured_replies_go_out_at_once_and_refunds_stay_pending() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    let plain = Desk {
        settings: Arc::new(settings_with(None)),
        ..desk
    };
    let ann = plain.mail(ANN).await;
    assert_eq!(plain.queued(ann).await.len(), 1);
    assert!(
        plain
            .store
            .held_replies_for_case(ann)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(plain.pay().await, PaymentReport::default());
    assert_eq!(
        plain.store.actions_for_case(ann).await.unwrap()[0].status,
        ActionStatus::Pending
    );
    assert!(plain.sim.refunds().is_empty());
}

#[tokio::test]
async fn every_refusal_and_failed_check_puts_the_case_in_front_of_a_reviewer() {
    // (name, how the world differs, finding expected, payment state)
    type Setup = fn(&Desk);
    let cases: Vec<(&str, Setup, &str, PaymentState)> = vec![
        (
            "refunds blocked at Polar",
            |d| d.sim.set_refunds_blocked(true),
            "refunds are blocked",
            PaymentState::Refused,
        ),
        (
            "the order has no payment to refund",
            |d| {
                let mut seed = Seed::default();
                seed.orders.push(SeedOrder {
                    has_payment: false,
                    ..seed_order(
                        "c3c3c3c3-0000-4000-8000-000000000003",
                        "a1a1a1a1-0000-4000-8000-000000000001",
                    )
                });
                d.sim.seed(&seed).unwrap();
            },
            "no payment found",
            PaymentState::Refused,
        ),
        (
            "an open chargeback",
            |d| {
                d.sim
                    .seed(&Seed {
                        disputes: vec![SeedDispute {
                            id: None,
                            order_id: ANN_ORDER.into(),
                            status: "needs_response".into(),
                            amount: None,
                            reason: None,
                        }],
                        ..Seed::default()
                    })
                    .unwrap();
            },
            "open chargeback at Polar",
            PaymentState::Review,
        ),
    ];
    for (name, setup, text, state) in cases {
        let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
        setup(&desk);
        let ann = if name == "the order has no payment to refund" {
            // Point Ann's approved refund at the payment-less order.
            let ann = desk.mail(ANN).await;
            let mut tx = desk.store.begin().await.unwrap();
            tx.set_action_status(
                &format!("case-{ann}-refund-{ANN_ORDER}"),
                ActionStatus::Failed,
                Some("replaced by the test"),
                Utc::now(),
            )
            .await
            .unwrap();
            tx.insert_action(
                ann,
                &refundd::domain::Action::CashRefund {
                    order_id: "c3c3c3c3-0000-4000-8000-000000000003".into(),
                    amount: 900,
                    currency: "EUR".into(),
                },
                ActionStatus::Pending,
                "test-key-unpaid",
                Utc::now(),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            ann
        } else {
            desk.mail(ANN).await
        };
        let report = desk.pay().await;
        assert_eq!(report.accepted, 0, "{name}: {report:?}");
        assert!(desk.sim.refunds().is_empty(), "{name}");
        desk.assert_review(ann, text, ActionStatus::Failed).await;
        let payments = desk.store.payments_for_case(ann).await.unwrap();
        assert_eq!(payments.last().unwrap().state, state, "{name}");
    }
}

#[tokio::test]
async fn an_order_unknown_to_polar_goes_to_review() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    let kim = "5c0d1e2f-3a4b-4c5d-9e6f-809102132435";
    let ann = desk.mail(ANN).await;
    let mut tx = desk.store.begin().await.unwrap();
    tx.set_action_status(
        &format!("case-{ann}-refund-{ANN_ORDER}"),
        ActionStatus::Failed,
        Some("replaced by the test"),
        Utc::now(),
    )
    .await
    .unwrap();
    tx.insert_action(
        ann,
        &refundd::domain::Action::CashRefund {
            order_id: kim.into(),
            amount: 900,
            currency: "EUR".into(),
        },
        ActionStatus::Pending,
        "test-key-unknown",
        Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    desk.pay().await;
    assert!(desk.sim.refunds().is_empty());
    desk.assert_review(ann, "unknown order", ActionStatus::Failed)
        .await;
}

#[tokio::test]
async fn money_refunded_outside_refundd_sends_the_case_to_review() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    // Someone refunded 5.00 in Polar's dashboard; the ledger never heard.
    let outside = desk
        .client
        .create_refund(&CreateRefund {
            order_id: ANN_ORDER.into(),
            reason: RefundReason::CustomerRequest,
            amount: 500,
            comment: None,
            revoke_benefits: false,
            metadata: Default::default(),
        })
        .await
        .unwrap();
    assert!(desk.sim.settle_refund(&outside.id));
    let ann = desk.mail(ANN).await;
    desk.pay().await;
    assert_eq!(desk.sim.refunds().len(), 1, "only the outside refund");
    desk.assert_review(ann, "Polar can refund only 4.00 EUR", ActionStatus::Failed)
        .await;
}

#[tokio::test]
async fn a_pending_refund_of_the_same_order_counts_against_what_is_refundable() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    desk.client
        .create_refund(&CreateRefund {
            order_id: ANN_ORDER.into(),
            reason: RefundReason::CustomerRequest,
            amount: 900,
            comment: None,
            revoke_benefits: false,
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let ann = desk.mail(ANN).await;
    desk.pay().await;
    assert_eq!(desk.sim.refunds().len(), 1);
    desk.assert_review(ann, "in other pending refunds", ActionStatus::Failed)
        .await;
}

#[tokio::test]
async fn the_guard_rails_send_refunds_to_review_and_say_why_in_the_trace() {
    type Tune = fn(&mut PolarSettings);
    let cases: Vec<(&str, Tune, &str, ActionStatus)> = vec![
        (
            "switch off",
            |p| p.auto_refunds = false,
            "automatic refunds are switched off",
            ActionStatus::Failed,
        ),
        (
            "above the single limit",
            |p| p.max_refund_amount = 899,
            "above the automatic limit of 8.99 EUR",
            ActionStatus::Failed,
        ),
        (
            "dry run",
            |p| p.dry_run = true,
            "would have refunded 9.00 EUR on order 6f1c2d3e",
            ActionStatus::DryRun,
        ),
    ];
    for (name, tune, text, action) in cases {
        let desk = Desk::new(TestDb::sqlite(), tune).await;
        let ann = desk.mail(ANN).await;
        let report = desk.pay().await;
        assert_eq!(report.accepted, 0, "{name}");
        assert!(desk.sim.refunds().is_empty(), "{name}: nothing posted");
        desk.assert_review(ann, text, action).await;
    }
}

#[tokio::test]
async fn a_refund_sent_to_review_waits_the_configured_business_days() {
    let mut desk = Desk::new(TestDb::sqlite(), |p| p.auto_refunds = false).await;
    let mut settings: Settings = toml::from_str(
        r#"
        [reply]
        review_business_days = 4
        [calendar]
        time_zone = "Europe/Berlin"
        hours = "09:00-17:00"
        "#,
    )
    .unwrap();
    settings.sender_auth = desk.settings.sender_auth.clone();
    settings.polar = desk.settings.polar.clone();
    desk.settings = Arc::new(settings);
    let ann = desk.mail(ANN).await;
    let at = Utc.with_ymd_and_hms(2026, 6, 5, 11, 0, 0).unwrap();
    payments::run_pending(&desk.store, &desk.client, &desk.settings, at)
        .await
        .unwrap();
    desk.assert_review(
        ann,
        "automatic refunds are switched off",
        ActionStatus::Failed,
    )
    .await;
    let row = desk.store.case(ann).await.unwrap().unwrap();
    assert_eq!(
        row.deadline,
        Some(desk.settings.lifecycle().deadline_from(at))
    );
    // Friday 13:00 Berlin + 4 business days: Thursday, not the UTC
    // two-day default's Tuesday.
    assert_eq!(
        row.deadline,
        Some(Utc.with_ymd_and_hms(2026, 6, 11, 11, 0, 0).unwrap())
    );
}

#[tokio::test]
async fn the_daily_total_stops_the_refund_that_would_pass_it() {
    let desk = Desk::new(TestDb::sqlite(), |p| p.max_daily_refund_total = 1_000).await;
    let ann = desk.mail(ANN).await;
    let ben = desk.mail(BEN).await;
    let report = desk.pay().await;
    assert_eq!((report.accepted, report.review), (1, 1), "{report:?}");
    assert_eq!(desk.sim.refunds().len(), 1);
    assert_eq!(desk.sim.refunds()[0].order_id, ANN_ORDER);
    assert_eq!(
        desk.store.case(ann).await.unwrap().unwrap().status,
        CaseStatus::Resolved
    );
    desk.assert_review(
        ben,
        "9.00 EUR already refunded automatically today",
        ActionStatus::Failed,
    )
    .await;
}

async fn response_lost(fault: FaultKind, timeout_ms: u64) {
    let desk = Desk::new(TestDb::sqlite(), |p| p.timeout_ms = timeout_ms).await;
    let ann = desk.mail(ANN).await;
    desk.sim.inject(Fault {
        route: SimRoute::CreateRefund,
        kind: fault,
        times: 1,
    });
    let first = desk.pay().await;
    assert_eq!(first.unclear, 1, "{first:?}");
    assert_eq!(desk.sim.refunds().len(), 1, "Polar did take it");
    assert!(desk.queued(ann).await.is_empty(), "no reply while unclear");
    assert_eq!(
        desk.store.payments_for_case(ann).await.unwrap()[0].state,
        PaymentState::Unclear
    );
    let second = desk.pay().await;
    assert_eq!(second.reconciled, 1, "{second:?}");
    let refunds = desk.sim.refunds();
    assert_eq!(refunds.len(), 1, "never posted twice");
    assert_eq!(refunds[0].amount, 900);
    assert_eq!(desk.queued(ann).await.len(), 1);
    assert_eq!(
        desk.store.actions_for_case(ann).await.unwrap()[0]
            .detail
            .as_deref(),
        Some(refunds[0].id.as_str())
    );
}

#[tokio::test]
async fn a_refund_whose_response_was_lost_is_found_by_key_not_posted_again() {
    response_lost(FaultKind::CommitThenError { status: 502 }, 2_000).await;
}

#[tokio::test]
async fn a_refund_whose_response_timed_out_is_found_by_key_not_posted_again() {
    response_lost(FaultKind::CommitThenHang { ms: 1_500 }, 300).await;
}

#[tokio::test]
async fn two_passes_racing_on_postgres_post_one_refund() {
    let desk = Desk::new(TestDb::postgres().await, |_| {}).await;
    let ann = desk.mail(ANN).await;
    // Slow the look-up so both passes are inside their unit at once.
    desk.sim.inject(Fault {
        route: SimRoute::ListRefunds,
        kind: FaultKind::Delay { ms: 200 },
        times: 2,
    });
    let other = Store::connect(&desk._db.url).await.unwrap();
    let (a, b) = tokio::join!(
        payments::run_pending(&desk.store, &desk.client, &desk.settings, Utc::now()),
        payments::run_pending(&other, &desk.client, &desk.settings, Utc::now()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.accepted + b.accepted, 1, "{a:?} {b:?}");
    assert_eq!(desk.sim.refunds().len(), 1);
    assert_eq!(desk.queued(ann).await.len(), 1);
}

/// The binary, with a crash point armed or not.
async fn run_binary(
    config: &Path,
    args: &[&str],
    crashpoint: Option<&str>,
) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_refundd"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("REFUNDD_DATABASE_URL")
        .env_remove(refundd::act::CRASHPOINT_ENV)
        .env("RUST_LOG", "warn");
    if let Some(point) = crashpoint {
        command.env(refundd::act::CRASHPOINT_ENV, point);
    }
    command.output().await.expect("refundd runs")
}

fn outbox_recipients(dir: &Path) -> Vec<String> {
    let mut to = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return to;
    };
    for entry in entries {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let mail = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        let addr = mail
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_owned();
        to.push(addr);
    }
    to.sort();
    to
}

/// A config file for the binary: the database, the outbox and `[polar]`
/// pointing at `sim`.
fn write_config(dir: &Path, db: &Path, sim: &PolarSim) -> PathBuf {
    let config = dir.join("refundd.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[outbox]\ndir = \"{}\"\n\
             [sender_auth]\ntrusted_authserv_ids = [\"mx.anumi.example\"]\n\
             [polar]\nbase_url = \"{}\"\ntoken = \"{}\"\ntimeout_ms = 2000\n",
            db.display(),
            dir.join("outbox").display(),
            sim.base_url(),
            sim.token()
        ),
    )
    .unwrap();
    config
}

/// What every crash run must end with: one refund per approved case with
/// the right amount, one reply per customer.
fn assert_paid_once(point: &str, sim: &PolarSim, outbox: &Path) {
    let mut refunds: Vec<(String, i64)> = sim
        .refunds()
        .into_iter()
        .map(|r| (r.order_id, r.amount))
        .collect();
    refunds.sort();
    assert_eq!(
        refunds,
        vec![(ANN_ORDER.to_owned(), 900), (BEN_ORDER.to_owned(), 540)],
        "{point}: one refund per approved case"
    );
    assert_eq!(
        outbox_recipients(outbox),
        vec!["ann@example.com".to_owned(), "ben@example.net".to_owned()],
        "{point}: one reply per customer"
    );
}

fn assert_aborted(point: &str, output: &std::process::Output) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(6),
        "{point}: the process must abort there ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_succeeded(point: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{point}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_refund_still_pays_each_case_exactly_once() {
    assert!(!CRASHPOINTS.is_empty());
    // Ann's and Ben's approved refunds, decided once (deciding is slow in a
    // debug build) and copied for every crash point.
    let prepared = tempfile::tempdir().unwrap();
    let template = prepared.path().join("decided.db");
    {
        let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
        desk.mail(ANN).await;
        desk.mail(BEN).await;
        // Closing the last connection checkpoints the WAL into the file.
        desk.store.close().await;
        std::fs::copy(desk._db.url.trim_start_matches("sqlite://"), &template).unwrap();
    }
    for point in CRASHPOINTS {
        let sim = PolarSim::start(SimConfig {
            seed: seed(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("refundd.db");
        std::fs::copy(&template, &db).unwrap();
        let config = write_config(dir.path(), &db, &sim);

        let crashed = run_binary(&config, &["payments", "run"], Some(point)).await;
        assert_aborted(point, &crashed);
        let rerun = run_binary(&config, &["payments", "run"], None).await;
        assert_succeeded(point, &rerun);
        assert_paid_once(point, &sim, &dir.path().join("outbox"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_post_inside_refundd_process_pays_once() {
    let point = "payments.after_post";
    let sim = PolarSim::start(SimConfig {
        seed: seed(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("refundd.db"), &sim);
    let ledger = repo().join("examples/demo/ledger.jsonl");
    let imported = run_binary(
        &config,
        &["ledger", "import", ledger.to_str().unwrap()],
        None,
    )
    .await;
    assert_succeeded("import", &imported);
    let maildir = dir.path().join("Maildir");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    for name in [ANN, BEN] {
        let bytes = std::fs::read(repo().join("examples/demo/mail").join(name)).unwrap();
        write_mail(&maildir.join("new").join(name), &bytes, header_date(&bytes));
    }
    let args = ["process", "--maildir", maildir.to_str().unwrap()];
    assert_aborted(point, &run_binary(&config, &args, Some(point)).await);
    assert!(
        outbox_recipients(&dir.path().join("outbox")).is_empty(),
        "no reply before the refund is recorded"
    );
    assert_succeeded(point, &run_binary(&config, &args, None).await);
    assert_paid_once(point, &sim, &dir.path().join("outbox"));
}

fn signed_request(id: &str, at: DateTime<Utc>, body: &str) -> Vec<(&'static str, String)> {
    let timestamp = at.timestamp().to_string();
    vec![
        ("webhook-id", id.to_owned()),
        (
            "webhook-signature",
            webhook::sign(SECRET, id, &timestamp, body.as_bytes()),
        ),
        ("webhook-timestamp", timestamp),
    ]
}

async fn post(url: &str, headers: &[(&'static str, String)], body: &str) -> u16 {
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .build()
        .unwrap();
    let mut request = client.post(url).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn webhook_endpoint(
    store: &Store,
    now: DateTime<Utc>,
) -> (String, tokio_util::sync::CancellationToken) {
    refundd::act::polar::install_crypto_provider();
    let mut state = webhooks::WebhookState::new(store.clone(), SECRET);
    state.clock = Arc::new(move || now);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/polar", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let router = webhooks::router(state);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    (url, shutdown)
}

#[tokio::test]
async fn the_known_answer_vector_is_accepted_and_tampered_or_stale_deliveries_are_not() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let sent_at = Utc.timestamp_opt(1_767_225_600, 0).unwrap();
    let (url, shutdown) = webhook_endpoint(&store, sent_at + chrono::Duration::seconds(30)).await;
    let id = "7d0f2a52-6c1e-4b0a-9a4e-2f7d5c3b9e11";
    let body = r#"{"type":"refund.created","timestamp":"2026-01-01T00:00:00Z","data":{"id":"0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c"}}"#;
    let vector = vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", "1767225600".to_owned()),
        (
            "webhook-signature",
            "v1,YMM13wY+k+9yE5QowbmX5yEuQe5dpJuQZXh9Oa1GC8Q=".to_owned(),
        ),
    ];
    assert_eq!(post(&url, &vector, body).await, 202);
    let stored = store.webhook_delivery(id).await.unwrap().unwrap();
    assert_eq!(stored.event_type, "refund.created");
    assert_eq!(stored.body, body.as_bytes());

    let tampered = body.replace("0b8c", "1b8c");
    assert_eq!(post(&url, &vector, &tampered).await, 401);
    let stale = signed_request("other-id", sent_at - chrono::Duration::minutes(10), body);
    assert_eq!(post(&url, &stale, body).await, 400);
    assert!(store.webhook_delivery("other-id").await.unwrap().is_none());

    // The vector's data is not a whole refund: stored, then skipped.
    let handled =
        ledger_sync::apply_received(&store, None, &Settings::default().lifecycle(), Utc::now())
            .await
            .unwrap();
    assert_eq!(handled, 1);
    let applied = store.webhook_delivery(id).await.unwrap().unwrap();
    assert_eq!(applied.state, DeliveryState::Skipped);
    shutdown.cancel();
}

fn refund_event(kind: &str, id: &str, status: &str, amount: i64) -> String {
    serde_json::json!({
        "type": kind,
        "timestamp": "2026-06-06T10:00:00Z",
        "data": {
            "id": id,
            "created_at": "2026-06-06T10:00:00Z",
            "modified_at": null,
            "status": status,
            "reason": "customer_request",
            "amount": amount,
            "tax_amount": 171,
            "currency": "eur",
            "order_id": ANN_ORDER,
            "customer_id": "a1a1a1a1-0000-4000-8000-000000000001",
            "revoke_benefits": false,
            "metadata": {},
            "dispute": null
        }
    })
    .to_string()
}

#[tokio::test]
async fn refunds_made_outside_refundd_reach_the_ledger_once_per_delivery() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    let now = Utc::now();
    let (url, shutdown) = webhook_endpoint(&desk.store, now).await;
    let refund_id = "0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c";

    let created = refund_event("refund.created", refund_id, "pending", 900);
    let headers = signed_request("delivery-1", now, &created);
    assert_eq!(post(&url, &headers, &created).await, 202);
    assert_eq!(
        post(&url, &headers, &created).await,
        202,
        "a replay is acknowledged"
    );
    assert_eq!(
        ledger_sync::apply_received(&desk.store, None, &desk.settings.lifecycle(), now)
            .await
            .unwrap(),
        1,
        "and applied once"
    );
    assert_eq!(
        desk.store.ledger_refund_status(refund_id).await.unwrap(),
        Some((900, LedgerRefundStatus::Pending))
    );
    let ann = desk
        .store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.refunded_amount(ANN_ORDER), 900, "the policy sees it");

    let updated = refund_event("refund.updated", refund_id, "succeeded", 900);
    let headers = signed_request("delivery-2", now, &updated);
    assert_eq!(post(&url, &headers, &updated).await, 202);
    ledger_sync::apply_received(&desk.store, None, &desk.settings.lifecycle(), now)
        .await
        .unwrap();
    assert_eq!(
        desk.store.ledger_refund_status(refund_id).await.unwrap(),
        Some((900, LedgerRefundStatus::Succeeded))
    );
    assert_eq!(
        desk.store
            .webhook_delivery("delivery-2")
            .await
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Applied
    );
    shutdown.cancel();
}

#[tokio::test]
async fn the_dispute_poll_flags_the_wallet_with_an_open_chargeback() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    desk.sim
        .seed(&Seed {
            disputes: vec![SeedDispute {
                id: Some("d4d4d4d4-0000-4000-8000-000000000004".into()),
                order_id: ANN_ORDER.into(),
                status: "needs_response".into(),
                amount: None,
                reason: Some("fraudulent".into()),
            }],
            ..Seed::default()
        })
        .unwrap();
    assert_eq!(
        ledger_sync::poll_disputes(&desk.store, &desk.client)
            .await
            .unwrap(),
        1
    );
    let ann = desk
        .store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.chargebacks.len(), 1);
    assert_eq!(ann.chargebacks[0].status, ChargebackStatus::Open);
    // The policy sees it: Ann's request now goes to review (P6).
    let case = desk.mail(ANN).await;
    let row = desk.store.case(case).await.unwrap().unwrap();
    assert_eq!(row.decision.outcome, Outcome::Review);
    assert!(row.decision.clauses().contains(&Clause::P6));
}

#[tokio::test]
async fn a_courtesy_credit_counts_against_the_cap_on_the_next_request() {
    let desk = Desk::new(TestDb::sqlite(), |_| {}).await;
    let first = desk.mail("05-dan-no-resemblance.eml").await;
    let row = desk.store.case(first).await.unwrap().unwrap();
    assert_eq!(row.decision.outcome, Outcome::Approved);
    let dan = desk
        .store
        .wallet_facts_by_email("dan@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dan.credits.len(), 1, "the credit is in the ledger");

    desk.store
        .upsert_generation(&Generation {
            id: "gen_dan8".into(),
            wallet_id: "w_dan".into(),
            order_id: Some("9c4d5e6f-7a8b-4c9d-9e0f-2a3b4c5d6e7f".into()),
            credits: 5,
            status: GenerationStatus::Succeeded,
            style: Some("shoujo".into()),
            refunded: false,
            refunded_at: None,
            created_at: Utc.with_ymd_and_hms(2026, 6, 5, 9, 0, 0).unwrap(),
        })
        .await
        .unwrap();
    let second = String::from_utf8(
        std::fs::read(repo().join("examples/demo/mail/05-dan-no-resemblance.eml")).unwrap(),
    )
    .unwrap()
    .replace("gen_dan7", "gen_dan8")
    .replace("<dan.1@example.com>", "<dan.2@example.com>")
    .replace("Thu, 04 Jun 2026 08:00:00", "Sat, 06 Jun 2026 08:00:00")
    .replace(
        "Subject: Avatar doesn't look like me",
        "Subject: Another one doesn't look like me",
    );
    let again = desk.mail_bytes(second.into_bytes()).await;
    assert_ne!(again, first);
    let row = desk.store.case(again).await.unwrap().unwrap();
    assert_eq!(
        row.decision.outcome,
        Outcome::Review,
        "{:?}",
        row.decision.trace
    );
    assert!(row.decision.actions.is_empty());
    assert!(
        row.decision
            .trace
            .iter()
            .any(|s| s.finding.contains("reach the cap")),
        "{:?}",
        row.decision.trace
    );
}
