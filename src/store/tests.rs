//! The store's test suite, run against BOTH backends: every test body is an
//! `async fn(Store)` and `on_both!` makes one `#[tokio::test]` per backend.
//!
//! SQLite: a fresh file in a temp dir per test. PostgreSQL: a fresh
//! database per test (`CREATE DATABASE refundd_test_<random>` through the
//! `postgres` database of `REFUNDD_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`), dropped afterwards even when the
//! test fails. An unreachable PostgreSQL FAILS the PostgreSQL half, unless
//! `REFUNDD_SKIP_PG=1`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::FutureExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use super::*;
use crate::domain::{
    Action, Category, Chargeback, ChargebackStatus, Clause, CreditReason, Decision, Flag,
    Generation, GenerationStatus, Language, Order, OrderLookup, OrderRef, Outcome, Refund,
    ReplyFacts, ReplyKind, TraceStep, Wallet, WalletCredit, WalletStatus,
};

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432";

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("refundd.db").display());
    let store = Store::connect(&url).await.expect("open SQLite store");
    assert_eq!(store.backend(), Backend::Sqlite);
    test(store.clone()).await;
    store.close().await;
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var("REFUNDD_SKIP_PG").as_deref() == Ok("1") {
        eprintln!("REFUNDD_SKIP_PG=1: PostgreSQL half skipped");
        return;
    }
    let base = std::env::var("REFUNDD_TEST_PG").unwrap_or_else(|_| PG_DEFAULT.to_owned());
    let base = base.trim_end_matches('/');
    let admin_url = format!("{base}/postgres");
    let mut admin = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        PgConnection::connect(&admin_url),
    )
    .await
    .map_err(|_| "timed out".to_owned())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {admin_url} ({e}). The store tests run on both \
             backends: start PostgreSQL, point REFUNDD_TEST_PG at it, or set \
             REFUNDD_SKIP_PG=1 to skip the PostgreSQL half."
        )
    });
    let name = format!("refundd_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let store = Store::connect(&format!("{base}/{name}"))
        .await
        .expect("open PostgreSQL store");
    assert_eq!(store.backend(), Backend::Postgres);
    let outcome = AssertUnwindSafe(test(store.clone())).catch_unwind().await;
    store.close().await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// One `#[tokio::test]` per backend for each named `async fn(Store)`.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )+
        }
    };
}

on_both!(
    a_message_is_stored_once_by_message_id_or_by_bytes,
    two_racing_inserts_of_one_message_store_one_row,
    the_work_list_is_oldest_first_and_attached_or_failed_messages_leave_it,
    wallet_facts_carry_everything_about_the_senders_wallet_and_nothing_else,
    ledger_facts_tell_own_other_and_unknown_orders_case_insensitively,
    a_case_credits_a_wallet_once_per_generation,
    a_rolled_back_decision_leaves_no_trace,
    a_stale_version_loses_the_compare_and_set,
    a_case_keeps_its_decision_and_its_status_history,
    an_action_is_recorded_once_per_idempotency_key,
    a_reply_moves_from_queued_to_sent_or_failed_exactly_once,
    a_follow_up_finds_its_case_by_our_reply_message_id,
    the_loop_guard_counts_recent_replies_to_one_address,
    the_import_keeps_good_lines_and_names_the_bad_ones,
    the_import_upserts_so_a_second_export_replaces_the_first,
    a_generations_refund_time_is_stored_when_the_ledger_gives_one,
    list_cases_gives_what_the_cli_prints,
    list_cases_filters_and_orders_the_review_queue,
    a_mailbox_cursor_is_saved_and_replaced,
    two_instances_claim_different_messages,
    migrating_again_changes_nothing,
    one_instance_at_a_time_holds_the_mailbox,
    a_large_import_commits_in_batches_and_reports_progress,
    a_report_sums_local_days_deadlines_first_responses_and_reviewers,
    a_large_message_is_kept_in_parts_and_read_back_whole,
);

// ---------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------

const ORDER_A: &str = "0d3f5a2c-1111-4222-8333-944455556661";
const ORDER_B: &str = "0d3f5a2c-1111-4222-8333-944455556662";
const ORDER_OTHER: &str = "0d3f5a2c-1111-4222-8333-944455556663";

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0).unwrap()
}

fn new_message(message_id: Option<&str>, body: &str, received_at: DateTime<Utc>) -> NewMessage {
    let raw = format!(
        "Message-ID: <{}>\r\nSubject: refund\r\n\r\n{body}",
        message_id.unwrap_or("none")
    )
    .into_bytes();
    NewMessage {
        message_id: message_id.map(str::to_owned),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw)),
        raw,
        received_at,
        source: format!("maildir:cur/{body}"),
    }
}

fn decision(outcome: Outcome, category: Category) -> Decision {
    Decision {
        outcome,
        category,
        flags: BTreeSet::from([Flag::SenderUnverified]),
        actions: vec![],
        trace: vec![
            TraceStep {
                clause: Clause::Auth,
                finding: "no trusted DMARC pass".into(),
                facts: vec![],
            },
            TraceStep {
                clause: Clause::P2,
                finding: "received 3 days after purchase".into(),
                facts: vec![("order".into(), ORDER_A.into())],
            },
            TraceStep {
                clause: Clause::Auth,
                finding: "approval becomes review".into(),
                facts: vec![],
            },
        ],
        reply: ReplyKind::ReviewAcknowledged,
        order_id: Some(ORDER_A.into()),
        wallet_id: Some("w_ann".into()),
        generation_id: None,
        reply_facts: ReplyFacts::default(),
    }
}

fn new_case(sender: &str, decision: Decision, status: CaseStatus, at: DateTime<Utc>) -> NewCase {
    NewCase {
        sender: sender.into(),
        subject: "Refund please".into(),
        language: Language::De,
        decision,
        status,
        deadline: (status == CaseStatus::Review).then(|| at + Duration::days(2)),
        at,
    }
}

async fn create_case(store: &Store, case: &NewCase) -> CaseId {
    let mut tx = store.begin().await.unwrap();
    let id = tx.create_case(case).await.unwrap();
    tx.add_case_event(id, &Actor::Engine, None, case.status, "opened", case.at)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn reply(case_id: CaseId, message_id: &str, to: &str, at: DateTime<Utc>) -> NewReply {
    NewReply {
        case_id,
        message_id: message_id.into(),
        to_addr: to.into(),
        subject: "Re: Refund please".into(),
        raw: format!("Message-ID: <{message_id}>\r\n\r\nHello").into_bytes(),
        at,
    }
}

/// Two wallets: ann (two orders, a failed and a succeeded generation, a
/// courtesy credit, a refund, a chargeback) and bob (one order).
async fn seed_ledger(store: &Store) {
    let lines = [
        r#"{"type":"wallet","id":"w_ann","email":"Ann@Example.com","status":"active","created_at":"2026-05-01T00:00:00Z"}"#.to_owned(),
        r#"{"type":"wallet","id":"w_bob","email":"bob@example.com","status":"suspended","created_at":"2026-05-01T00:00:00Z"}"#.to_owned(),
        format!(r#"{{"type":"order","id":"{ORDER_A}","wallet":"w_ann","product":"Starter 50","credits":50,"amount":900,"tax_amount":171,"currency":"EUR","invoice_number":"ANUMI-AAAAAAAB-0001","receipt_number":"RCPT-AAAAAAAB-0001","created_at":"2026-06-01T10:00:00Z"}}"#),
        format!(r#"{{"type":"order","id":"{ORDER_B}","wallet":"w_ann","product":"Pro 200","credits":200,"amount":2900,"currency":"EUR","created_at":"2026-06-02T10:00:00Z"}}"#),
        format!(r#"{{"type":"order","id":"{ORDER_OTHER}","wallet":"w_bob","product":"Starter 50","credits":50,"amount":900,"currency":"USD","invoice_number":"ANUMI-BBBBBBBB-0002","created_at":"2026-06-01T11:00:00Z"}}"#),
        format!(r#"{{"type":"generation","id":"gen_fail","wallet":"w_ann","order":"{ORDER_A}","credits":1,"status":"failed","style":"ghibli","created_at":"2026-06-03T10:00:00Z"}}"#),
        format!(r#"{{"type":"generation","id":"gen_ok","wallet":"w_ann","order":"{ORDER_A}","credits":2,"status":"succeeded","created_at":"2026-06-03T11:00:00Z"}}"#),
        format!(r#"{{"type":"generation","id":"gen_bob","wallet":"w_bob","order":"{ORDER_OTHER}","credits":1,"status":"succeeded","created_at":"2026-06-03T11:00:00Z"}}"#),
        r#"{"type":"wallet_credit","id":"wc_1","wallet":"w_ann","credits":1,"reason":"courtesy","created_at":"2026-06-04T00:00:00Z"}"#.to_owned(),
        format!(r#"{{"type":"refund","id":"rf_1","order":"{ORDER_B}","amount":2900,"created_at":"2026-06-05T00:00:00Z"}}"#),
        format!(r#"{{"type":"refund","id":"rf_bob","order":"{ORDER_OTHER}","amount":900,"created_at":"2026-06-05T00:00:00Z"}}"#),
        format!(r#"{{"type":"chargeback","id":"cb_1","order":"{ORDER_A}","status":"open","created_at":"2026-06-06T00:00:00Z"}}"#),
    ];
    let report = import_jsonl(store, lines.join("\n").as_bytes(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.imported, lines.len() as u64);
}

// ---------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------

async fn a_message_is_stored_once_by_message_id_or_by_bytes(store: Store) {
    let first = new_message(Some("a@x"), "one", t(1, 9));
    let id = match store.insert_message(&first).await.unwrap() {
        Inserted::New(id) => id,
        other => panic!("first insert must be new, got {other:?}"),
    };
    // Same Message-ID, different bytes (re-sent with another Received: line).
    let same_id = new_message(Some("a@x"), "one, again", t(1, 10));
    assert_eq!(
        store.insert_message(&same_id).await.unwrap(),
        Inserted::Duplicate(id)
    );
    // Same bytes, delivered to another folder.
    let mut same_bytes = first.clone();
    same_bytes.source = "maildir:new/other".into();
    assert_eq!(
        store.insert_message(&same_bytes).await.unwrap(),
        Inserted::Duplicate(id)
    );
    // No Message-ID: bytes decide; two different messages without one both land.
    let bare_1 = new_message(None, "bare one", t(1, 11));
    let bare_2 = new_message(None, "bare two", t(1, 12));
    let b1 = store.insert_message(&bare_1).await.unwrap();
    let b2 = store.insert_message(&bare_2).await.unwrap();
    assert!(matches!(b1, Inserted::New(_)) && matches!(b2, Inserted::New(_)));
    assert_eq!(
        store.insert_message(&bare_1).await.unwrap(),
        Inserted::Duplicate(b1.id())
    );

    let stored = store.message(id).await.unwrap().unwrap();
    assert_eq!(stored.raw, first.raw);
    assert_eq!(stored.message_id.as_deref(), Some("a@x"));
    assert_eq!(stored.received_at, t(1, 9));
    assert_eq!(stored.source, "maildir:cur/one");
    assert_eq!(stored.status, MessageStatus::Received);
    assert_eq!(store.unprocessed_messages(10).await.unwrap().len(), 3);
}

/// How many parts of message `id` are stored.
async fn stored_parts(store: &Store, id: i64) -> i64 {
    on_pool!(store, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM message_parts WHERE message_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
    })
    .unwrap()
}

async fn a_large_message_is_kept_in_parts_and_read_back_whole(store: Store) {
    // Two and a half parts of text whose every line differs, so a part
    // read twice, out of order or not at all changes the bytes.
    let mut body = String::from("zebrafinch asks for a refund\r\n");
    let mut line = 0;
    while body.len() < 2 * super::messages::RAW_PART_BYTES + 500_000 {
        body.push_str(&format!("line {line:07} of the attachment\r\n"));
        line += 1;
    }
    let large = new_message(Some("large@x"), &body, t(1, 9));
    let small = new_message(Some("small@x"), "small", t(1, 10));
    let id = store.insert_message(&large).await.unwrap().id();
    let small_id = store.insert_message(&small).await.unwrap().id();
    assert_eq!(stored_parts(&store, id).await, 3);
    assert_eq!(stored_parts(&store, small_id).await, 0);
    // Stored once: the same bytes again are a duplicate, no new parts.
    assert_eq!(
        store.insert_message(&large).await.unwrap(),
        Inserted::Duplicate(id)
    );
    assert_eq!(stored_parts(&store, id).await, 3);

    // Every reader gives the whole message.
    assert!(store.message(id).await.unwrap().unwrap().raw == large.raw);
    let work = store
        .unprocessed_messages_within(10, 100_000_000)
        .await
        .unwrap();
    assert_eq!(work.len(), 2);
    assert!(work[0].raw == large.raw && work[1].raw == small.raw);
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim_next_message().await.unwrap().unwrap();
    assert!(claimed.id == id && claimed.raw == large.raw);
    tx.rollback().await.unwrap();
    let found = store
        .messages_with_words(&["zebrafinch".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].0 == id && found[0].1 == large.raw);

    // Removing the bytes removes the parts.
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.remove_message_raw(id, RawRemoval::Erasure, t(2, 9))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(stored_parts(&store, id).await, 0);
    assert!(store.message(id).await.unwrap().unwrap().raw.is_empty());
}

async fn two_racing_inserts_of_one_message_store_one_row(store: Store) {
    for round in 0..5 {
        let message = new_message(Some(&format!("race-{round}@x")), "race", t(1, 9));
        let (a, b) = tokio::join!(
            tokio::spawn({
                let (store, message) = (store.clone(), message.clone());
                async move { store.insert_message(&message).await }
            }),
            tokio::spawn({
                let (store, message) = (store.clone(), message.clone());
                async move { store.insert_message(&message).await }
            }),
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert_eq!(a.id(), b.id(), "round {round}");
        let news = [a, b]
            .iter()
            .filter(|i| matches!(i, Inserted::New(_)))
            .count();
        assert_eq!(
            news, 1,
            "round {round}: exactly one insert is new ({a:?}, {b:?})"
        );
    }
    assert_eq!(store.unprocessed_messages(100).await.unwrap().len(), 5);
}

async fn the_work_list_is_oldest_first_and_attached_or_failed_messages_leave_it(store: Store) {
    let late = store
        .insert_message(&new_message(Some("late@x"), "late", t(3, 9)))
        .await
        .unwrap()
        .id();
    let early = store
        .insert_message(&new_message(Some("early@x"), "early", t(1, 9)))
        .await
        .unwrap()
        .id();
    let middle = store
        .insert_message(&new_message(Some("middle@x"), "middle", t(2, 9)))
        .await
        .unwrap()
        .id();
    let ids = |list: Vec<StoredMessage>| list.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unprocessed_messages(10).await.unwrap()),
        vec![early, middle, late]
    );
    assert_eq!(
        ids(store.unprocessed_messages(1).await.unwrap()),
        vec![early]
    );

    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Review, Category::CashRefund),
            CaseStatus::Review,
            t(1, 10),
        ),
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    tx.attach_message(early, case).await.unwrap();
    tx.commit().await.unwrap();
    store
        .mark_message_failed(middle, "not a MIME message")
        .await
        .unwrap();

    assert_eq!(
        ids(store.unprocessed_messages(10).await.unwrap()),
        vec![late]
    );
    let failed = store.message(middle).await.unwrap().unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("not a MIME message"));
    let attached = store.case_messages(case).await.unwrap();
    assert_eq!(ids(attached.clone()), vec![early]);
    assert_eq!(attached[0].status, MessageStatus::Processed);
    assert_eq!(attached[0].case_id, Some(case));

    assert!(matches!(
        store.mark_message_failed(9999, "x").await,
        Err(StoreError::NotFound {
            what: "message",
            ..
        })
    ));
    let mut tx = store.begin().await.unwrap();
    assert!(matches!(
        tx.attach_message(9999, case).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------

async fn wallet_facts_carry_everything_about_the_senders_wallet_and_nothing_else(store: Store) {
    seed_ledger(&store).await;
    let facts = store
        .wallet_facts_by_email("ANN@example.COM")
        .await
        .unwrap()
        .expect("ann's wallet, found case-insensitively");
    assert_eq!(facts.wallet.id, "w_ann");
    assert_eq!(facts.wallet.email, "Ann@Example.com", "stored as given");
    assert_eq!(facts.wallet.status, WalletStatus::Active);
    let order_ids: Vec<_> = facts.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(order_ids, vec![ORDER_A, ORDER_B]);
    let a = facts.order(ORDER_A).unwrap();
    assert_eq!(
        (a.amount, a.tax_amount, a.currency.as_str(), a.credits),
        (900, Some(171), "EUR", 50)
    );
    assert_eq!(a.invoice_number.as_deref(), Some("ANUMI-AAAAAAAB-0001"));
    assert_eq!(facts.order(ORDER_B).unwrap().tax_amount, None);
    let gens: Vec<_> = facts
        .generations
        .iter()
        .map(|g| (g.id.as_str(), g.status, g.refunded))
        .collect();
    assert_eq!(
        gens,
        vec![
            ("gen_fail", GenerationStatus::Failed, false),
            ("gen_ok", GenerationStatus::Succeeded, false)
        ]
    );
    assert_eq!(facts.credits_used(ORDER_A), 2);
    assert_eq!(facts.credits.len(), 1);
    assert_eq!(facts.credits[0].reason, CreditReason::Courtesy);
    assert_eq!(
        facts
            .refunds
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["rf_1"],
        "bob's refund is not ann's"
    );
    assert_eq!(facts.refunded_amount(ORDER_B), 2900);
    assert_eq!(facts.chargebacks.len(), 1);
    assert_eq!(facts.chargebacks[0].status, ChargebackStatus::Open);

    assert_eq!(
        store
            .wallet_facts_by_email("carol@example.com")
            .await
            .unwrap(),
        None
    );
}

async fn ledger_facts_tell_own_other_and_unknown_orders_case_insensitively(store: Store) {
    seed_ledger(&store).await;
    let refs = [
        OrderRef::Invoice("anumi-aaaaaaab-0001".into()),
        OrderRef::Receipt("RCPT-AAAAAAAB-0001".into()),
        OrderRef::Uuid(ORDER_B.to_uppercase()),
        OrderRef::Invoice("ANUMI-BBBBBBBB-0002".into()),
        OrderRef::Uuid(ORDER_OTHER.into()),
        OrderRef::Uuid("0d3f5a2c-0000-4222-8333-944455556669".into()),
        OrderRef::Invoice("ANUMI-ZZZZZZZZ-0009".into()),
    ];
    let facts = store.ledger_facts("ann@EXAMPLE.com", &refs).await.unwrap();
    assert_eq!(facts.sender_wallet.as_ref().unwrap().wallet.id, "w_ann");
    assert_eq!(
        facts.cited_orders,
        vec![
            OrderLookup::Own {
                reference: "anumi-aaaaaaab-0001".into(),
                order_id: ORDER_A.into()
            },
            OrderLookup::Own {
                reference: "RCPT-AAAAAAAB-0001".into(),
                order_id: ORDER_A.into()
            },
            OrderLookup::Own {
                reference: ORDER_B.to_uppercase(),
                order_id: ORDER_B.into()
            },
            OrderLookup::OtherWallet {
                reference: "ANUMI-BBBBBBBB-0002".into()
            },
            OrderLookup::OtherWallet {
                reference: ORDER_OTHER.into()
            },
            OrderLookup::Unknown {
                reference: "0d3f5a2c-0000-4222-8333-944455556669".into()
            },
            OrderLookup::Unknown {
                reference: "ANUMI-ZZZZZZZZ-0009".into()
            },
        ]
    );

    // A stranger citing ann's order: it exists, and is not theirs.
    let stranger = store
        .ledger_facts("mallory@example.com", &refs[..1])
        .await
        .unwrap();
    assert_eq!(stranger.sender_wallet, None);
    assert_eq!(
        stranger.cited_orders,
        vec![OrderLookup::OtherWallet {
            reference: "anumi-aaaaaaab-0001".into()
        }]
    );
    assert_eq!(
        store
            .resolve_order_ref(&OrderRef::Receipt("rcpt-aaaaaaab-0001".into()))
            .await
            .unwrap(),
        Some((ORDER_A.to_owned(), "w_ann".to_owned()))
    );
}

async fn a_case_credits_a_wallet_once_per_generation(store: Store) {
    seed_ledger(&store).await;
    let mut d = decision(Outcome::Approved, Category::FailedGeneration);
    let credit = Action::WalletCredit {
        wallet_id: "w_ann".into(),
        credits: 1,
        reason: CreditReason::FailedGeneration,
        generation_id: Some("gen_fail".into()),
    };
    d.actions = vec![credit.clone()];
    let case = create_case(
        &store,
        &new_case("ann@example.com", d, CaseStatus::Resolved, t(7, 9)),
    )
    .await;

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_wallet_credit_once(case, &credit, t(7, 9))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    // The pipeline resumed after a crash, or the customer wrote again.
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.insert_wallet_credit_once(case, &credit, t(7, 10))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    let ours: Vec<_> = facts
        .credits
        .iter()
        .filter(|c| c.reason == CreditReason::FailedGeneration)
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, format!("wc-case-{}-gen_fail", case.0));
    assert_eq!(
        ours[0].id,
        case_credit_id(case, Some("gen_fail"), CreditReason::FailedGeneration)
    );
    assert_eq!((ours[0].credits, ours[0].created_at), (1, t(7, 9)));
    assert_eq!(ours[0].generation_id.as_deref(), Some("gen_fail"));
    let failed = facts
        .generations
        .iter()
        .find(|g| g.id == "gen_fail")
        .unwrap();
    assert!(
        failed.refunded,
        "the next decision sees the generation refunded"
    );

    let actions = store.actions_for_case(case).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].action, credit);
    assert_eq!(actions[0].status, ActionStatus::Done);
    assert_eq!(actions[0].idempotency_key, ours[0].id);

    // A courtesy credit without a generation is keyed by its reason.
    let courtesy = Action::WalletCredit {
        wallet_id: "w_ann".into(),
        credits: 2,
        reason: CreditReason::Courtesy,
        generation_id: None,
    };
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_wallet_credit_once(case, &courtesy, t(7, 11))
            .await
            .unwrap()
    );
    assert!(
        !tx.insert_wallet_credit_once(case, &courtesy, t(7, 11))
            .await
            .unwrap()
    );
    let refund = Action::CashRefund {
        order_id: ORDER_A.into(),
        amount: 900,
        currency: "EUR".into(),
    };
    assert!(matches!(
        tx.insert_wallet_credit_once(case, &refund, t(7, 11)).await,
        Err(StoreError::Invalid { .. })
    ));
    tx.commit().await.unwrap();
    assert_eq!(store.actions_for_case(case).await.unwrap().len(), 2);
}

async fn a_rolled_back_decision_leaves_no_trace(store: Store) {
    seed_ledger(&store).await;
    let message = store
        .insert_message(&new_message(Some("m@x"), "m", t(7, 9)))
        .await
        .unwrap()
        .id();
    let credit = Action::WalletCredit {
        wallet_id: "w_ann".into(),
        credits: 1,
        reason: CreditReason::FailedGeneration,
        generation_id: Some("gen_fail".into()),
    };
    let mut tx = store.begin().await.unwrap();
    let case = tx
        .create_case(&new_case(
            "ann@example.com",
            decision(Outcome::Approved, Category::FailedGeneration),
            CaseStatus::Resolved,
            t(7, 9),
        ))
        .await
        .unwrap();
    tx.attach_message(message, case).await.unwrap();
    assert!(
        tx.insert_wallet_credit_once(case, &credit, t(7, 9))
            .await
            .unwrap()
    );
    tx.enqueue_reply(&reply(case, "r1@refundd", "ann@example.com", t(7, 9)))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert_eq!(store.case(case).await.unwrap(), None);
    assert_eq!(store.unprocessed_messages(10).await.unwrap().len(), 1);
    assert_eq!(store.queued_replies(10).await.unwrap(), vec![]);
    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.credits.len(), 1, "only the imported courtesy credit");
    assert!(!facts.generations.iter().any(|g| g.refunded));
}

// ---------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------

async fn a_stale_version_loses_the_compare_and_set(store: Store) {
    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Review, Category::CashRefund),
            CaseStatus::Review,
            t(7, 9),
        ),
    )
    .await;
    let row = store.case(case).await.unwrap().unwrap();
    assert_eq!(row.version, 1);

    let approved = decision(Outcome::Approved, Category::CashRefund);
    let mut tx = store.begin().await.unwrap();
    let v2 = tx
        .update_case_decision(
            case,
            row.version,
            &approved,
            CaseStatus::Resolved,
            None,
            t(7, 10),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v2, 2);

    // A second reviewer still looking at version 1.
    let denied = decision(Outcome::Denied, Category::CashRefund);
    let mut tx = store.begin().await.unwrap();
    let err = tx
        .update_case_decision(
            case,
            row.version,
            &denied,
            CaseStatus::Resolved,
            None,
            t(7, 11),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "case", .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    drop(tx);

    let now = store.case(case).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    assert_eq!(now.decision.outcome, Outcome::Approved);
    assert_eq!(now.status, CaseStatus::Resolved);
    assert_eq!(now.deadline, None);
    assert_eq!(now.updated_at, t(7, 10));
    assert_eq!(now.created_at, t(7, 9));
}

async fn a_case_keeps_its_decision_and_its_status_history(store: Store) {
    let mut d = decision(Outcome::NeedsInfo, Category::NoResemblance);
    d.generation_id = Some("gen_ok".into());
    d.reply_facts.credits = Some(2);
    let opened = new_case("ann@example.com", d.clone(), CaseStatus::NeedsInfo, t(7, 9));
    let case = create_case(&store, &opened).await;
    assert_eq!(case.to_string(), format!("R-{}", case.0));

    let row = store.case(case).await.unwrap().unwrap();
    assert_eq!(row.decision, d, "the whole decision round-trips");
    assert_eq!(row.sender, "ann@example.com");
    assert_eq!(row.language, Language::De);
    assert_eq!(row.status, CaseStatus::NeedsInfo);

    let mut tx = store.begin().await.unwrap();
    let locked = tx.case(case).await.unwrap().unwrap();
    let review = decision(Outcome::Review, Category::NoResemblance);
    tx.update_case_decision(
        case,
        locked.version,
        &review,
        CaseStatus::Review,
        Some(t(9, 9)),
        t(8, 9),
    )
    .await
    .unwrap();
    tx.add_case_event(
        case,
        &Actor::Customer,
        Some(CaseStatus::NeedsInfo),
        CaseStatus::Review,
        "result attached",
        t(8, 9),
    )
    .await
    .unwrap();
    tx.add_case_event(
        case,
        &Actor::Reviewer("rita@anumi.example".into()),
        Some(CaseStatus::Review),
        CaseStatus::Resolved,
        "approved",
        t(8, 12),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let events = store.case_events(case).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.actor.to_string(),
                e.from_status,
                e.to_status,
                e.reason.as_str(),
                e.at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "engine".into(),
                None,
                CaseStatus::NeedsInfo,
                "opened",
                t(7, 9)
            ),
            (
                "customer".into(),
                Some(CaseStatus::NeedsInfo),
                CaseStatus::Review,
                "result attached",
                t(8, 9)
            ),
            (
                "reviewer:rita@anumi.example".into(),
                Some(CaseStatus::Review),
                CaseStatus::Resolved,
                "approved",
                t(8, 12)
            ),
        ]
    );
    assert!(events.iter().all(|e| e.case_id == case));
    let row = store.case(case).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.deadline),
        (CaseStatus::Review, Some(t(9, 9)))
    );
    assert_eq!(store.case(CaseId(9999)).await.unwrap(), None);
}

async fn an_action_is_recorded_once_per_idempotency_key(store: Store) {
    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Approved, Category::CashRefund),
            CaseStatus::Resolved,
            t(7, 9),
        ),
    )
    .await;
    let refund = Action::CashRefund {
        order_id: ORDER_A.into(),
        amount: 900,
        currency: "EUR".into(),
    };
    let key = format!("refund-{}-{ORDER_A}", case);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_action(case, &refund, ActionStatus::Pending, &key, t(7, 9))
            .await
            .unwrap()
    );
    assert!(
        !tx.insert_action(case, &refund, ActionStatus::Done, &key, t(7, 9))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    let pending = store.pending_actions(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (&pending[0].action, pending[0].status, pending[0].case_id),
        (&refund, ActionStatus::Pending, case)
    );

    store
        .set_action_status(&key, ActionStatus::Done, Some("polar-refund-17"), t(7, 10))
        .await
        .unwrap();
    assert_eq!(store.pending_actions(10).await.unwrap(), vec![]);
    let done = &store.actions_for_case(case).await.unwrap()[0];
    assert_eq!(done.status, ActionStatus::Done);
    assert_eq!(done.detail.as_deref(), Some("polar-refund-17"));
    assert_eq!((done.created_at, done.updated_at), (t(7, 9), t(7, 10)));
    assert!(matches!(
        store
            .set_action_status("nope", ActionStatus::Done, None, t(7, 10))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------

async fn a_reply_moves_from_queued_to_sent_or_failed_exactly_once(store: Store) {
    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Review, Category::CashRefund),
            CaseStatus::Review,
            t(7, 9),
        ),
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    let sent = tx
        .enqueue_reply(&reply(case, "r1@refundd", "ann@example.com", t(7, 9)))
        .await
        .unwrap();
    let flaky = tx
        .enqueue_reply(&reply(case, "r2@refundd", "ann@example.com", t(7, 9)))
        .await
        .unwrap();
    let refused = tx
        .enqueue_reply(&reply(case, "r3@refundd", "ann@example.com", t(7, 9)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let queued: Vec<_> = store
        .queued_replies(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queued, vec![sent, flaky, refused]);

    store.mark_reply_sent(sent, t(7, 10)).await.unwrap();
    let again = store.mark_reply_sent(sent, t(7, 11)).await.unwrap_err();
    assert!(
        matches!(again, StoreError::Conflict { what: "reply", .. }),
        "{again}"
    );

    store
        .mark_reply_failed(flaky, "421 try again later", false)
        .await
        .unwrap();
    store
        .mark_reply_failed(refused, "550 no such user", true)
        .await
        .unwrap();
    assert!(matches!(
        store.mark_reply_failed(refused, "550", true).await,
        Err(StoreError::Conflict { .. })
    ));

    let replies = store.replies_for_case(case).await.unwrap();
    let states: Vec<_> = replies
        .iter()
        .map(|r| {
            (
                r.message_id.as_str(),
                r.status,
                r.attempts,
                r.last_error.as_deref(),
                r.sent_at,
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("r1@refundd", ReplyStatus::Sent, 1, None, Some(t(7, 10))),
            (
                "r2@refundd",
                ReplyStatus::Queued,
                1,
                Some("421 try again later"),
                None
            ),
            (
                "r3@refundd",
                ReplyStatus::Failed,
                1,
                Some("550 no such user"),
                None
            ),
        ]
    );
    assert_eq!(
        replies[0].raw,
        b"Message-ID: <r1@refundd>\r\n\r\nHello".to_vec()
    );
    let queued: Vec<_> = store
        .queued_replies(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queued, vec![flaky], "a transient failure stays queued");

    // Our Message-IDs are unique: the same reply cannot be queued twice.
    let mut tx = store.begin().await.unwrap();
    let dup = tx
        .enqueue_reply(&reply(case, "r1@refundd", "ann@example.com", t(7, 12)))
        .await
        .unwrap_err();
    assert!(dup.is_unique_violation(), "{dup:?}");
}

async fn a_follow_up_finds_its_case_by_our_reply_message_id(store: Store) {
    let first = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::NeedsInfo, Category::CashRefund),
            CaseStatus::NeedsInfo,
            t(7, 9),
        ),
    )
    .await;
    let second = create_case(
        &store,
        &new_case(
            "bob@example.com",
            decision(Outcome::NeedsInfo, Category::CashRefund),
            CaseStatus::NeedsInfo,
            t(7, 9),
        ),
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    tx.enqueue_reply(&reply(first, "r-first@refundd", "ann@example.com", t(7, 9)))
        .await
        .unwrap();
    tx.enqueue_reply(&reply(
        second,
        "r-second@refundd",
        "bob@example.com",
        t(7, 9),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let cited = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (ids, want) in [
        (cited(&["r-first@refundd"]), Some(first)),
        (
            cited(&["customer-own@mail", "r-second@refundd"]),
            Some(second),
        ),
        (
            cited(&["r-second@refundd", "r-first@refundd"]),
            Some(second),
        ),
        (cited(&["unknown@mail"]), None),
        (cited(&[]), None),
    ] {
        assert_eq!(
            store.case_by_reply_message_ids(&ids).await.unwrap(),
            want,
            "{ids:?}"
        );
    }
}

async fn the_loop_guard_counts_recent_replies_to_one_address(store: Store) {
    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Review, Category::CashRefund),
            CaseStatus::Review,
            t(7, 9),
        ),
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    let at = |minutes: i64| t(7, 9) + Duration::minutes(minutes);
    for (n, (to, minute)) in [
        ("ann@example.com", 0),
        ("ANN@example.com", 30),
        ("ann@example.com", 59),
        ("ann@example.com", 61),
        ("bob@example.com", 60),
    ]
    .into_iter()
    .enumerate()
    {
        tx.enqueue_reply(&reply(case, &format!("r{n}@refundd"), to, at(minute)))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    for (addr, since, want) in [
        ("ann@example.com", at(0), 4),
        ("Ann@Example.Com", at(1), 3),
        ("ann@example.com", at(59), 2),
        ("ann@example.com", at(62), 0),
        ("bob@example.com", at(0), 1),
        ("carol@example.com", at(0), 0),
    ] {
        assert_eq!(
            store.count_replies_to_since(addr, since).await.unwrap(),
            want,
            "{addr} since {since}"
        );
    }
}

// ---------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------

async fn the_import_keeps_good_lines_and_names_the_bad_ones(store: Store) {
    let input = format!(
        "{}\n{}\n\n{}\n{}\n{}\n{}\n",
        r#"{"type":"wallet","id":"w_1","email":"ann@example.com","status":"active","created_at":"2026-05-01T00:00:00Z"}"#,
        r#"{"type":"wallet","id":"w_2","email":"bob@example.com","status":"gone","created_at":"2026-05-01T00:00:00Z"}"#,
        format_args!(
            r#"{{"type":"order","id":"{}","wallet":"w_1","product":"Starter 50","credits":50,"amount":900,"currency":"eur","invoice_number":"ANUMI-AAAAAAAB-0001","created_at":"2026-06-01T10:00:00Z"}}"#,
            ORDER_A.to_uppercase()
        ),
        format_args!(
            r#"{{"type":"refund","id":"rf_1","order":"{ORDER_A}","amount":-900,"created_at":"2026-06-05T00:00:00Z"}}"#
        ),
        r#"{"type":"generation","id":"gen_1","wallet":"w_1","credits":1,"status":"failed","created_at":"June 3rd"}"#,
        r#"{"type":"wallet_credit","id":"wc_1","wallet":"w_1","credits":1,"reason":"courtesy","generation":"gen_1","created_at":"2026-06-04T00:00:00+02:00"}"#,
    );
    let mut progress = vec![];
    let report = import_jsonl(&store, input.as_bytes(), |n| progress.push(n))
        .await
        .unwrap();
    assert_eq!(report.imported, 3);
    let rejected: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.line_no, r.reason.as_str()))
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0].0, 2);
    assert!(
        rejected[0].1.contains("unknown variant `gone`"),
        "{}",
        rejected[0].1
    );
    assert_eq!(
        rejected[1],
        (5, "amount must not be negative, got -900"),
        "the blank line 3 still counts"
    );
    assert_eq!(
        rejected[2],
        (6, "created_at `June 3rd` is not an RFC 3339 time")
    );
    assert_eq!(progress.last(), Some(&7));

    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.orders.len(), 1);
    assert_eq!(facts.orders[0].id, ORDER_A, "UUID stored lowercase");
    assert_eq!(facts.orders[0].currency, "EUR", "currency stored uppercase");
    assert_eq!(facts.credits.len(), 1);
    assert_eq!(facts.credits[0].generation_id.as_deref(), Some("gen_1"));
    assert_eq!(
        facts.credits[0].created_at,
        Utc.with_ymd_and_hms(2026, 6, 3, 22, 0, 0).unwrap()
    );
    assert_eq!(
        facts.generations,
        vec![],
        "the bad generation line was not imported"
    );
    assert_eq!(
        store
            .wallet_facts_by_email("bob@example.com")
            .await
            .unwrap(),
        None
    );
}

async fn a_generations_refund_time_is_stored_when_the_ledger_gives_one(store: Store) {
    let input = [
        r#"{"type":"wallet","id":"w_1","email":"ann@example.com","status":"active","created_at":"2026-05-01T00:00:00Z"}"#,
        r#"{"type":"generation","id":"gen_timed","wallet":"w_1","credits":2,"status":"failed","refunded":true,"refunded_at":"2026-06-03T10:00:07+02:00","created_at":"2026-06-03T09:59:00+02:00"}"#,
        r#"{"type":"generation","id":"gen_untimed","wallet":"w_1","credits":1,"status":"failed","refunded":true,"created_at":"2026-06-04T00:00:00Z"}"#,
        r#"{"type":"generation","id":"gen_bad","wallet":"w_1","credits":1,"status":"failed","refunded":true,"refunded_at":"2026-06-31T00:00:00Z","created_at":"2026-06-04T00:00:00Z"}"#,
        r#"{"type":"generation","id":"gen_open","wallet":"w_1","credits":1,"status":"failed","refunded":false,"refunded_at":"2026-06-05T00:00:00Z","created_at":"2026-06-04T00:00:00Z"}"#,
    ]
    .join("\n");
    let report = import_jsonl(&store, input.as_bytes(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.imported, 3);
    let rejected: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.line_no, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (
                4,
                "refunded_at `2026-06-31T00:00:00Z` is not an RFC 3339 time"
            ),
            (5, "refunded_at is given but refunded is not true"),
        ]
    );

    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    let refunded_at: Vec<_> = facts
        .generations
        .iter()
        .map(|g| (g.id.as_str(), g.refunded_at))
        .collect();
    assert_eq!(
        refunded_at,
        vec![
            (
                "gen_timed",
                Some(Utc.with_ymd_and_hms(2026, 6, 3, 8, 0, 7).unwrap())
            ),
            ("gen_untimed", None),
        ]
    );

    // A later export without the time says the ledger no longer knows it.
    let again = r#"{"type":"generation","id":"gen_timed","wallet":"w_1","credits":2,"status":"failed","refunded":true,"created_at":"2026-06-03T09:59:00+02:00"}"#;
    import_jsonl(&store, again.as_bytes(), |_| {})
        .await
        .unwrap();
    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.generations[0].refunded_at, None);
}

async fn the_import_upserts_so_a_second_export_replaces_the_first(store: Store) {
    let first = format!(
        "{}\n{}\n",
        r#"{"type":"wallet","id":"w_1","email":"ann@example.com","status":"active","created_at":"2026-05-01T00:00:00Z"}"#,
        format_args!(
            r#"{{"type":"generation","id":"gen_1","wallet":"w_1","order":"{ORDER_A}","credits":1,"status":"failed","created_at":"2026-06-03T00:00:00Z"}}"#
        ),
    );
    let second = format!(
        "{}\n{}\n{}\n",
        r#"{"type":"wallet","id":"w_1","email":"ann.new@example.com","status":"terminated","created_at":"2026-05-01T00:00:00Z"}"#,
        format_args!(
            r#"{{"type":"generation","id":"gen_1","wallet":"w_1","order":"{ORDER_A}","credits":1,"status":"failed","refunded":true,"created_at":"2026-06-03T00:00:00Z"}}"#
        ),
        format_args!(
            r#"{{"type":"chargeback","id":"cb_1","order":"{ORDER_A}","status":"open","created_at":"2026-06-06T00:00:00Z"}}"#
        ),
    );
    assert_eq!(
        import_jsonl(&store, first.as_bytes(), |_| {})
            .await
            .unwrap()
            .imported,
        2
    );
    assert_eq!(
        import_jsonl(&store, second.as_bytes(), |_| {})
            .await
            .unwrap()
            .imported,
        3
    );
    assert_eq!(
        store
            .wallet_facts_by_email("ann@example.com")
            .await
            .unwrap(),
        None
    );
    let facts = store
        .wallet_facts_by_email("ann.new@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.wallet.status, WalletStatus::Terminated);
    assert_eq!(facts.generations.len(), 1);
    assert!(facts.generations[0].refunded);
    assert_eq!(
        facts.chargebacks,
        vec![],
        "a chargeback shows through the wallet's orders only"
    );

    // The typed upserts do the same, one row at a time.
    store
        .upsert_order(&Order {
            id: ORDER_A.into(),
            wallet_id: "w_1".into(),
            product: "Starter 50".into(),
            credits: 50,
            amount: 900,
            tax_amount: None,
            currency: "EUR".into(),
            invoice_number: None,
            receipt_number: Some("RCPT-AAAAAAAB-0001".into()),
            created_at: t(1, 10),
        })
        .await
        .unwrap();
    store
        .upsert_refund(&Refund {
            id: "rf_1".into(),
            order_id: ORDER_A.into(),
            amount: 300,
            created_at: t(5, 0),
        })
        .await
        .unwrap();
    store
        .upsert_chargeback(&Chargeback {
            id: "cb_1".into(),
            order_id: ORDER_A.into(),
            status: ChargebackStatus::Won,
            created_at: t(6, 0),
        })
        .await
        .unwrap();
    store
        .upsert_generation(&Generation {
            id: "gen_1".into(),
            wallet_id: "w_1".into(),
            order_id: Some(ORDER_A.into()),
            credits: 3,
            status: GenerationStatus::Blocked,
            style: Some("ghibli".into()),
            refunded: false,
            refunded_at: None,
            created_at: t(3, 0),
        })
        .await
        .unwrap();
    store
        .upsert_wallet_credit(&WalletCredit {
            id: "wc_9".into(),
            wallet_id: "w_1".into(),
            credits: 4,
            reason: CreditReason::Goodwill,
            generation_id: None,
            created_at: t(4, 0),
        })
        .await
        .unwrap();
    store
        .upsert_wallet(&Wallet {
            id: "w_1".into(),
            email: "ann@example.com".into(),
            status: WalletStatus::Active,
            created_at: t(1, 0),
        })
        .await
        .unwrap();
    let facts = store
        .wallet_facts_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.refunded_amount(ORDER_A), 300);
    assert_eq!(facts.chargebacks[0].status, ChargebackStatus::Won);
    assert_eq!(
        (facts.generations[0].status, facts.generations[0].credits),
        (GenerationStatus::Blocked, 3)
    );
    assert_eq!(facts.credits[0].reason, CreditReason::Goodwill);
    assert_eq!(facts.wallet.created_at, t(1, 0));
}

// ---------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------

async fn list_cases_gives_what_the_cli_prints(store: Store) {
    let first = store
        .insert_message(&new_message(Some("first@mail"), "first", t(7, 8)))
        .await
        .unwrap()
        .id();
    let follow_up = store
        .insert_message(&new_message(Some("second@mail"), "second", t(7, 12)))
        .await
        .unwrap()
        .id();
    let mut d = decision(Outcome::Approved, Category::CashRefund);
    d.flags.insert(Flag::Chargeback);
    d.actions = vec![Action::CashRefund {
        order_id: ORDER_A.into(),
        amount: 900,
        currency: "EUR".into(),
    }];
    let mut tx = store.begin().await.unwrap();
    let case = tx
        .create_case(&new_case(
            "ann@example.com",
            d.clone(),
            CaseStatus::Resolved,
            t(7, 9),
        ))
        .await
        .unwrap();
    tx.attach_message(first, case).await.unwrap();
    tx.attach_message(follow_up, case).await.unwrap();
    tx.commit().await.unwrap();

    let listed = store.list_cases(&CaseFilter::default()).await.unwrap();
    assert_eq!(
        listed,
        vec![CaseSummary {
            id: case,
            message_id: Some("first@mail".into()),
            from: "ann@example.com".into(),
            subject: "Refund please".into(),
            outcome: Outcome::Approved,
            category: Category::CashRefund,
            flags: vec![Flag::Chargeback, Flag::SenderUnverified],
            actions: d.actions.clone(),
            clauses: vec![Clause::Auth, Clause::P2],
            order_id: Some(ORDER_A.into()),
            wallet_id: Some("w_ann".into()),
            status: CaseStatus::Resolved,
            created_at: t(7, 9),
            deadline: None,
        }]
    );
    let json = serde_json::to_value(&listed[0]).unwrap();
    assert_eq!(json["id"], format!("R-{}", case.0));
    assert_eq!(json["outcome"], "approved");
    assert_eq!(json["clauses"], serde_json::json!(["AUTH", "P2"]));
    assert_eq!(json["actions"][0]["kind"], "cash_refund");
    assert_eq!(json["status"], "resolved");
}

async fn list_cases_filters_and_orders_the_review_queue(store: Store) {
    let mut make = vec![];
    for (day, outcome, status, deadline) in [
        (1, Outcome::Review, CaseStatus::Review, Some(t(20, 0))),
        (2, Outcome::Approved, CaseStatus::Resolved, None),
        (3, Outcome::Review, CaseStatus::Review, Some(t(10, 0))),
        (4, Outcome::NeedsInfo, CaseStatus::NeedsInfo, None),
        (5, Outcome::Review, CaseStatus::Review, Some(t(15, 0))),
    ] {
        let mut case = new_case(
            "ann@example.com",
            decision(outcome, Category::Other),
            status,
            t(day, 0),
        );
        case.deadline = deadline;
        make.push(create_case(&store, &case).await);
    }
    let ids = |list: Vec<CaseSummary>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
    for (filter, want) in [
        (
            CaseFilter::default(),
            vec![make[0], make[1], make[2], make[3], make[4]],
        ),
        (
            CaseFilter {
                outcome: Some(Outcome::Review),
                ..CaseFilter::default()
            },
            vec![make[0], make[2], make[4]],
        ),
        (
            CaseFilter {
                status: Some(CaseStatus::NeedsInfo),
                ..CaseFilter::default()
            },
            vec![make[3]],
        ),
        (
            CaseFilter {
                outcome: Some(Outcome::Denied),
                ..CaseFilter::default()
            },
            vec![],
        ),
        (
            CaseFilter {
                order: CaseOrder::Deadline,
                ..CaseFilter::default()
            },
            vec![make[2], make[4], make[0], make[1], make[3]],
        ),
        (
            CaseFilter {
                status: Some(CaseStatus::Review),
                order: CaseOrder::Deadline,
                limit: Some(2),
                ..CaseFilter::default()
            },
            vec![make[2], make[4]],
        ),
    ] {
        assert_eq!(
            ids(store.list_cases(&filter).await.unwrap()),
            want,
            "{filter:?}"
        );
    }
}

// ---------------------------------------------------------------------
// Ingest checkpoint, claims, migrations
// ---------------------------------------------------------------------

async fn a_mailbox_cursor_is_saved_and_replaced(store: Store) {
    assert_eq!(store.mailbox_cursor("INBOX").await.unwrap(), None);
    let cursor = MailboxCursor {
        folder: "INBOX".into(),
        uidvalidity: 1_700_000_000,
        last_uid: 41,
    };
    store.save_mailbox_cursor(&cursor).await.unwrap();
    assert_eq!(
        store.mailbox_cursor("INBOX").await.unwrap(),
        Some(cursor.clone())
    );
    let moved = MailboxCursor {
        last_uid: 57,
        ..cursor
    };
    store.save_mailbox_cursor(&moved).await.unwrap();
    assert_eq!(store.mailbox_cursor("INBOX").await.unwrap(), Some(moved));
    assert_eq!(store.mailbox_cursor("Archive").await.unwrap(), None);
}

async fn two_instances_claim_different_messages(store: Store) {
    let a = store
        .insert_message(&new_message(Some("a@x"), "a", t(1, 9)))
        .await
        .unwrap()
        .id();
    let b = store
        .insert_message(&new_message(Some("b@x"), "b", t(1, 10)))
        .await
        .unwrap()
        .id();
    let mut first = store.begin().await.unwrap();
    assert_eq!(
        first.claim_next_message().await.unwrap().map(|m| m.id),
        Some(a)
    );
    if store.backend() == Backend::Postgres {
        // The second instance skips the locked row instead of waiting.
        let mut second = store.begin().await.unwrap();
        assert_eq!(
            second.claim_next_message().await.unwrap().map(|m| m.id),
            Some(b)
        );
        second.rollback().await.unwrap();
    }
    first.rollback().await.unwrap();
    // SQLite has one writer: the next transaction sees the same work list.
    let mut again = store.begin().await.unwrap();
    assert_eq!(
        again.claim_next_message().await.unwrap().map(|m| m.id),
        Some(a)
    );
    again.rollback().await.unwrap();

    let case = create_case(
        &store,
        &new_case(
            "ann@example.com",
            decision(Outcome::Review, Category::Other),
            CaseStatus::Review,
            t(1, 9),
        ),
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    tx.enqueue_reply(&reply(case, "r1@refundd", "ann@example.com", t(1, 9)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut sender = store.begin().await.unwrap();
    let claimed = sender.claim_queued_reply().await.unwrap().unwrap();
    assert_eq!(claimed.message_id, "r1@refundd");
    sender.mark_reply_sent(claimed.id, t(1, 10)).await.unwrap();
    sender.commit().await.unwrap();
    let mut next = store.begin().await.unwrap();
    assert_eq!(next.claim_queued_reply().await.unwrap(), None);
}

async fn migrating_again_changes_nothing(store: Store) {
    let id = store
        .insert_message(&new_message(Some("keep@x"), "keep", t(1, 9)))
        .await
        .unwrap()
        .id();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.message(id).await.unwrap().is_some());
}

async fn one_instance_at_a_time_holds_the_mailbox(store: Store) {
    let lease = store.try_lease_mailbox(42).await.unwrap().expect("granted");
    if store.backend() == Backend::Postgres {
        // A second instance (another session) is refused, for this mailbox only.
        assert!(store.try_lease_mailbox(42).await.unwrap().is_none());
        let other = store.try_lease_mailbox(43).await.unwrap().expect("granted");
        lease.release().await.unwrap();
        let again = store.try_lease_mailbox(42).await.unwrap();
        assert!(
            again.is_some(),
            "released: the next instance takes it at once"
        );
        drop(again);
        // A dropped lease closes its session; the server then frees the
        // lock. Poll for that, bounded.
        drop(other);
        let freed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(lease) = store.try_lease_mailbox(43).await.unwrap() {
                    break lease;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(freed.is_ok(), "a dropped lease frees the mailbox");
    } else {
        lease.release().await.unwrap();
    }
}

async fn a_large_import_commits_in_batches_and_reports_progress(store: Store) {
    let lines: Vec<String> = (0..1201)
        .map(|n| {
            format!(
                r#"{{"type":"wallet","id":"w_{n}","email":"user{n}@example.com","status":"active","created_at":"2026-05-01T00:00:00Z"}}"#
            )
        })
        .collect();
    let mut progress = vec![];
    let report = import_jsonl(&store, lines.join("\n").as_bytes(), |n| progress.push(n))
        .await
        .unwrap();
    assert_eq!(report.imported, 1201);
    assert_eq!(report.rejected, vec![]);
    assert_eq!(progress, vec![500, 1000, 1201]);
    let last = store
        .wallet_facts_by_email("USER1200@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.wallet.id, "w_1200");
}

// ---------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------

/// An instant to the millisecond.
fn at_ms(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A case opened at `at` with one message received at `received`, its
/// events and replies written as the pipeline writes them.
async fn report_case(
    store: &Store,
    key: &str,
    outcome: Outcome,
    status: CaseStatus,
    deadline: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
    at: DateTime<Utc>,
) -> CaseId {
    let inserted = store
        .insert_message(&new_message(Some(key), key, received))
        .await
        .unwrap();
    let mut case = new_case(
        &format!("{key}@example.com"),
        decision(outcome, Category::WrongStyle),
        status,
        at,
    );
    case.deadline = deadline;
    let mut tx = store.begin().await.unwrap();
    let id = tx.create_case(&case).await.unwrap();
    tx.add_case_event(id, &Actor::Engine, None, status, "opened", at)
        .await
        .unwrap();
    tx.attach_message(inserted.id(), id).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn answer(store: &Store, case: CaseId, key: &str, to: &str, at: DateTime<Utc>) {
    let mut tx = store.begin().await.unwrap();
    tx.enqueue_reply(&reply(case, key, to, at)).await.unwrap();
    tx.commit().await.unwrap();
}

/// A reviewer's status change; leaving the queue clears the deadline.
async fn review(store: &Store, case: CaseId, reviewer: &str, to: CaseStatus, at: DateTime<Utc>) {
    let mut tx = store.begin().await.unwrap();
    let row = tx.case(case).await.unwrap().unwrap();
    let deadline = if crate::queue::is_open(to) {
        row.deadline
    } else {
        None
    };
    tx.update_case_decision(case, row.version, &row.decision, to, deadline, at)
        .await
        .unwrap();
    tx.add_case_event(
        case,
        &Actor::Reviewer(reviewer.into()),
        Some(row.status),
        to,
        "decided",
        at,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn a_report_sums_local_days_deadlines_first_responses_and_reviewers(store: Store) {
    seed_ledger(&store).await;
    // Berlin days (UTC+2 in June): 1 June starts at 31 May 22:00 UTC.
    let bounds = [
        at_ms("2026-05-31T22:00:00Z"),
        at_ms("2026-06-01T22:00:00Z"),
        at_ms("2026-06-02T22:00:00Z"),
    ];
    let (since, until) = (bounds[0], bounds[2]);
    let cutoff = at_ms("2026-06-02T20:00:00Z");
    let h = |s: &str| at_ms(&format!("2026-06-{s}Z"));

    // Before the period (23:00 on 31 May in Berlin): never counted.
    report_case(
        &store,
        "before",
        Outcome::Approved,
        CaseStatus::Resolved,
        None,
        at_ms("2026-05-31T21:00:00Z"),
        at_ms("2026-05-31T21:00:00Z"),
    )
    .await;
    // Day 1. Decided by the engine, answered within the same second by
    // the clock but one second apart by whole seconds.
    let engine = report_case(
        &store,
        "engine",
        Outcome::Approved,
        CaseStatus::Resolved,
        None,
        h("01T08:00:00.900"),
        h("01T08:00:01"),
    )
    .await;
    answer(
        &store,
        engine,
        "r-engine",
        "engine@example.com",
        h("01T08:00:01.100"),
    )
    .await;
    // 23:30 in Berlin: a review case answered by a reviewer in time; a
    // note to a colleague first is no answer to the customer.
    let in_time = report_case(
        &store,
        "in-time",
        Outcome::Review,
        CaseStatus::Review,
        Some(h("03T21:30:00")),
        h("01T21:29:00"),
        h("01T21:30:00"),
    )
    .await;
    answer(
        &store,
        in_time,
        "r-colleague",
        "rita@anumi.example",
        h("01T21:29:30"),
    )
    .await;
    answer(
        &store,
        in_time,
        "r-in-time",
        "IN-TIME@example.com",
        h("01T21:30:00"),
    )
    .await;
    review(
        &store,
        in_time,
        "rita@anumi.example",
        CaseStatus::Resolved,
        h("02T10:00:00"),
    )
    .await;
    // Day 2 (00:30 in Berlin): due and never answered.
    report_case(
        &store,
        "overdue",
        Outcome::Review,
        CaseStatus::Review,
        Some(h("02T08:00:00")),
        h("01T22:31:00"),
        h("01T22:31:00"),
    )
    .await;
    // Not due yet at the cutoff; acknowledged after two hours.
    let not_due = report_case(
        &store,
        "not-due",
        Outcome::Review,
        CaseStatus::Review,
        Some(h("09T09:00:00")),
        h("02T09:00:00"),
        h("02T09:00:00"),
    )
    .await;
    answer(
        &store,
        not_due,
        "r-not-due",
        "not-due@example.com",
        h("02T11:00:00"),
    )
    .await;
    // Waiting on the customer: paused, not counted for deadlines.
    let waiting = report_case(
        &store,
        "waiting",
        Outcome::Review,
        CaseStatus::Review,
        Some(h("02T11:00:00")),
        h("02T10:00:00"),
        h("02T10:00:00"),
    )
    .await;
    review(
        &store,
        waiting,
        "ann@anumi.example",
        CaseStatus::NeedsInfo,
        h("02T10:30:00"),
    )
    .await;
    report_case(
        &store,
        "ignored",
        Outcome::Ignored,
        CaseStatus::Ignored,
        None,
        h("02T11:00:00"),
        h("02T11:00:00"),
    )
    .await;
    // Answered by a reviewer after the deadline, five hours in.
    let late = report_case(
        &store,
        "late",
        Outcome::Review,
        CaseStatus::Review,
        Some(h("02T14:00:00")),
        h("02T12:00:00"),
        h("02T12:00:00"),
    )
    .await;
    review(
        &store,
        late,
        "rita@anumi.example",
        CaseStatus::Resolved,
        h("02T16:00:00"),
    )
    .await;
    answer(&store, late, "r-late", "late@example.com", h("02T17:00:00")).await;
    // Money: a refund carried out on day 2, a credit granted on day 1.
    let key = refund_key(engine, ORDER_A);
    let refund = Action::CashRefund {
        order_id: ORDER_A.into(),
        amount: 900,
        currency: "EUR".into(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_action(
        engine,
        &refund,
        ActionStatus::Pending,
        &key,
        h("01T08:00:01"),
    )
    .await
    .unwrap();
    tx.insert_wallet_credit_once(
        engine,
        &Action::WalletCredit {
            wallet_id: "w_ann".into(),
            credits: 3,
            reason: CreditReason::Courtesy,
            generation_id: None,
        },
        h("01T08:00:01"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store
        .set_action_status(&key, ActionStatus::Done, Some("polar"), h("02T09:00:00"))
        .await
        .unwrap();

    let (counts, volumes) = store.report_days(&bounds).await.unwrap();
    let day = |d: usize, in_review: bool| -> i64 {
        counts
            .iter()
            .filter(|c| c.day == d && c.ever_in_review == in_review)
            .map(|c| c.cases)
            .sum()
    };
    assert_eq!((day(0, false), day(0, true)), (1, 1), "{counts:?}");
    assert_eq!((day(1, false), day(1, true)), (1, 4), "{counts:?}");
    assert!(
        counts.iter().any(|c| c.day == 1
            && c.outcome == Outcome::Ignored
            && !c.ever_in_review
            && c.cases == 1)
    );
    assert_eq!(
        volumes,
        vec![
            PeriodVolume {
                messages: 2,
                refunded: vec![],
                credits: vec![("courtesy".into(), 3)],
            },
            PeriodVolume {
                messages: 5,
                refunded: vec![("EUR".into(), 900)],
                credits: vec![],
            },
        ]
    );

    // Due: in time (kept after it left the queue), overdue, late.
    let facts = store.report_period(since, until, cutoff).await.unwrap();
    assert_eq!(
        facts,
        PeriodFacts {
            deadlines_due: 3,
            deadlines_met: 1,
            answered: 4,
        }
    );
    // 1 s (whole seconds), 60 s, 2 h, 5 h.
    assert_eq!(
        store
            .first_response_at_ranks(since, until, [1, 2, 4])
            .await
            .unwrap(),
        vec![(1, 1), (2, 60), (4, 5 * 3600)]
    );
    assert_eq!(
        store
            .first_response_at_ranks(since, until, [3, 3, 9])
            .await
            .unwrap(),
        vec![(3, 2 * 3600)]
    );

    let tallies = store.reviewer_tallies(since, until).await.unwrap();
    assert_eq!(
        tallies,
        vec![
            ReviewerTally {
                reviewer: "ann@anumi.example".into(),
                actions: 1,
                cases: 1,
                resolved: 0,
            },
            ReviewerTally {
                reviewer: "rita@anumi.example".into(),
                actions: 2,
                cases: 2,
                resolved: 2,
            },
        ]
    );

    // Erasing a customer replaces their address on the case and on its
    // replies alike: their first response still counts.
    store
        .erase_person(
            "engine@example.com",
            &[],
            "erased-1@erased.invalid",
            "cli",
            h("03T09:00:00"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        store.report_period(since, until, cutoff).await.unwrap(),
        facts
    );
    assert_eq!(
        store
            .first_response_at_ranks(since, until, [1, 2, 4])
            .await
            .unwrap(),
        vec![(1, 1), (2, 60), (4, 5 * 3600)]
    );
}
