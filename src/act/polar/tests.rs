//! The Polar client against the Polar test server ([`crate::polar_sim`]):
//! reads, pagination, refunds, every typed error, retries and unclear
//! refund outcomes.

use std::time::{Duration, Instant};

use super::{
    Backoff, CreateRefund, DisputeQuery, DisputeStatus, MetadataValue, OrderStatus, PolarClient,
    PolarClientConfig, PolarError, RefundReason, RefundStatus,
};
use crate::polar_sim::{
    Fault, FaultKind, PolarSim, Seed, SeedCustomer, SeedDispute, SeedOrder, SimConfig, SimRoute,
};

const AIKO: &str = "33333333-3333-4333-8333-333333333333";
const REN: &str = "66666666-6666-4666-8666-666666666666";
const ORDER: &str = "22222222-2222-4222-8222-222222222222";
const DISPUTED: &str = "44444444-4444-4444-8444-444444444444";
const UNPAID: &str = "55555555-5555-4555-8555-555555555555";
const UNKNOWN: &str = "99999999-9999-4999-8999-999999999999";
const KEY: &str = "refundd_key";

fn order(id: &str, customer: &str, net: i64, tax: i64) -> SeedOrder {
    SeedOrder {
        id: Some(id.into()),
        customer_id: customer.into(),
        net_amount: net,
        tax_amount: tax,
        currency: "EUR".into(),
        status: "paid".into(),
        invoice_number: Some("ANUMI-AAAAAAAB-0001".into()),
        receipt_number: Some("RCPT-AAAAAAAB-0001".into()),
        product_name: "Starter 50".into(),
        created_at: None,
        has_payment: true,
    }
}

fn seed() -> Seed {
    Seed {
        customers: vec![
            SeedCustomer {
                id: Some(AIKO.into()),
                email: "Aiko@Example.com".into(),
                name: Some("Aiko".into()),
                ..SeedCustomer::default()
            },
            SeedCustomer {
                id: Some(REN.into()),
                email: "aiko@example.co".into(),
                ..SeedCustomer::default()
            },
        ],
        orders: vec![
            order(ORDER, AIKO, 900, 171),
            order(DISPUTED, REN, 500, 95),
            SeedOrder {
                has_payment: false,
                ..order(UNPAID, REN, 500, 0)
            },
        ],
        disputes: vec![SeedDispute {
            id: None,
            order_id: DISPUTED.into(),
            status: "needs_response".into(),
            amount: None,
            reason: Some("fraudulent".into()),
        }],
    }
}

fn client_config(sim: &PolarSim) -> PolarClientConfig {
    PolarClientConfig {
        timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        ..PolarClientConfig::new(sim.base_url(), sim.token())
    }
}

async fn start_with(config: SimConfig) -> (PolarSim, PolarClient) {
    super::install_crypto_provider();
    let sim = PolarSim::start(SimConfig {
        seed: seed(),
        ..config
    })
    .await
    .expect("the test server starts");
    let client = PolarClient::new(client_config(&sim)).expect("the client builds");
    (sim, client)
}

async fn start() -> (PolarSim, PolarClient) {
    start_with(SimConfig::default()).await
}

fn refund_of(order_id: &str, amount: i64, key: &str) -> CreateRefund {
    CreateRefund {
        order_id: order_id.into(),
        reason: RefundReason::CustomerRequest,
        amount,
        comment: Some("refundd test".into()),
        revoke_benefits: false,
        metadata: [(KEY.to_owned(), MetadataValue::from(key))].into(),
    }
}

#[tokio::test]
async fn get_order_returns_amounts_and_sends_token_and_version() {
    let (sim, client) = start().await;
    let order = client.get_order(ORDER).await.unwrap();
    assert_eq!(order.id, ORDER);
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        (order.net_amount, order.tax_amount, order.total_amount),
        (900, 171, 1071)
    );
    assert_eq!(
        (order.refundable_amount, order.refundable_tax_amount),
        (900, 171)
    );
    assert_eq!(order.currency, "eur");
    assert_eq!(order.invoice_number.as_deref(), Some("ANUMI-AAAAAAAB-0001"));
    assert_eq!(order.customer.email.as_deref(), Some("Aiko@Example.com"));
    assert_eq!(order.product.map(|p| p.name).as_deref(), Some("Starter 50"));
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].authorized);
    assert_eq!(requests[0].polar_version.as_deref(), Some("2026-04"));
    sim.shutdown().await;
}

#[tokio::test]
async fn customers_are_found_by_exact_email_ignoring_case() {
    let (sim, client) = start().await;
    let cases = [
        ("AIKO@example.COM", vec![AIKO]),
        ("aiko@example.co", vec![REN]),
        ("aiko@example", vec![]),
        ("nobody@example.com", vec![]),
    ];
    for (email, expected) in cases {
        let found = client.find_customers_by_email(email).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, expected, "{email}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_by_customer_follow_every_page() {
    let (sim, _) = start().await;
    let more: Vec<SeedOrder> = (0..4)
        .map(|i| SeedOrder {
            id: None,
            ..order(&format!("unused-{i}"), AIKO, 100 + i, 0)
        })
        .collect();
    sim.seed(&Seed {
        orders: more,
        ..Seed::default()
    })
    .unwrap();
    let client = PolarClient::new(PolarClientConfig {
        page_size: 2,
        ..client_config(&sim)
    })
    .unwrap();
    let orders = client.list_orders_by_customer(AIKO).await.unwrap();
    assert_eq!(orders.len(), 5);
    assert!(orders.iter().all(|o| o.customer_id == AIKO));
    assert_eq!(sim.request_count(SimRoute::ListOrders), 3);
    assert!(
        client
            .list_orders_by_customer(UNKNOWN)
            .await
            .unwrap()
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refund_is_pending_until_it_succeeds_and_only_then_lowers_refundable() {
    let (sim, client) = start().await;
    let refund = client
        .create_refund(&refund_of(ORDER, 450, "r_1"))
        .await
        .unwrap();
    assert_eq!(refund.status, RefundStatus::Pending);
    assert_eq!((refund.amount, refund.tax_amount), (450, 85));
    assert_eq!(refund.currency, "eur");
    assert_eq!(refund.order_id, ORDER);
    assert_eq!(refund.customer_id, AIKO);
    assert_eq!(refund.metadata[KEY].as_str(), Some("r_1"));

    // Polar's trap: the pending refund does not lower refundable_amount.
    let pending = client.get_order(ORDER).await.unwrap();
    assert_eq!(
        (pending.status, pending.refundable_amount),
        (OrderStatus::Paid, 900)
    );

    assert!(sim.settle_refund(&refund.id));
    let listed = client.list_refunds_for_order(ORDER).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, RefundStatus::Succeeded);
    let settled = client.get_order(ORDER).await.unwrap();
    assert_eq!(settled.status, OrderStatus::PartiallyRefunded);
    assert_eq!(
        (
            settled.refunded_amount,
            settled.refunded_tax_amount,
            settled.refundable_amount,
            settled.refundable_tax_amount
        ),
        (450, 85, 450, 86)
    );

    let rest = client
        .create_refund(&refund_of(ORDER, 450, "r_2"))
        .await
        .unwrap();
    assert_eq!(rest.tax_amount, 86);
    assert!(sim.settle_refund(&rest.id));
    let done = client.get_order(ORDER).await.unwrap();
    assert_eq!(
        (
            done.status,
            done.refundable_amount,
            done.refunded_tax_amount
        ),
        (OrderStatus::Refunded, 0, 171)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn refunds_settle_by_themselves_after_the_configured_delay() {
    let (sim, client) = start_with(SimConfig {
        settle_after: Some(Duration::ZERO),
        ..SimConfig::default()
    })
    .await;
    let refund = client
        .create_refund(&refund_of(ORDER, 900, "r_1"))
        .await
        .unwrap();
    assert_eq!(refund.status, RefundStatus::Pending);
    let listed = client.list_refunds_for_order(ORDER).await.unwrap();
    assert_eq!(listed[0].status, RefundStatus::Succeeded);
    assert_eq!(
        client.get_order(ORDER).await.unwrap().status,
        OrderStatus::Refunded
    );
    sim.shutdown().await;
}

fn variant(err: &PolarError) -> String {
    let debug = format!("{err:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn refund_refusals_come_back_as_typed_errors() {
    let (sim, client) = start().await;
    let full = client
        .create_refund(&refund_of(ORDER, 900, "r_full"))
        .await
        .unwrap();
    let cases: Vec<(&str, CreateRefund, bool, &str)> = vec![
        (
            "amount over refundable",
            refund_of(ORDER, 901, "r"),
            false,
            "AmountExceedsRefundable",
        ),
        (
            "open chargeback",
            refund_of(DISPUTED, 100, "r"),
            false,
            "RefundDisputedPayment",
        ),
        (
            "order without payment",
            refund_of(UNPAID, 100, "r"),
            false,
            "RefundUnknownPayment",
        ),
        (
            "unknown order",
            refund_of(UNKNOWN, 100, "r"),
            false,
            "UnknownOrder",
        ),
        (
            "refunds blocked",
            refund_of(ORDER, 100, "r"),
            true,
            "RefundsBlocked",
        ),
    ];
    for (name, request, blocked, expected) in cases {
        sim.set_refunds_blocked(blocked);
        let err = client.create_refund(&request).await.expect_err(name);
        assert_eq!(variant(&err), expected, "{name}: {err:?}");
        assert!(!err.is_transient(), "{name}");
    }
    sim.set_refunds_blocked(false);
    assert!(sim.settle_refund(&full.id));
    let err = client
        .create_refund(&refund_of(ORDER, 1, "r"))
        .await
        .unwrap_err();
    assert_eq!(variant(&err), "RefundedAlready", "{err:?}");
    assert_eq!(sim.refunds().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_orders_and_bad_tokens_are_typed_errors() {
    let (sim, client) = start().await;
    for id in [UNKNOWN, "not-a-uuid"] {
        let err = client.get_order(id).await.unwrap_err();
        assert_eq!(variant(&err), "UnknownOrder", "{id}: {err:?}");
    }
    let wrong = PolarClient::new(PolarClientConfig {
        token: "polar_oat_WRONGtoken".into(),
        ..client_config(&sim)
    })
    .unwrap();
    let err = wrong.get_order(ORDER).await.unwrap_err();
    assert!(
        matches!(err, PolarError::Unauthorized { status: 401 }),
        "{err:?}"
    );
    assert!(!format!("{err:?} {err}").contains("WRONG"));
    let requests = sim.requests();
    assert!(!requests.last().unwrap().authorized);
    sim.shutdown().await;
}

#[tokio::test]
async fn disputes_are_listed_with_filters() {
    let (sim, client) = start().await;
    let all = client
        .list_disputes(&DisputeQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].order_id, DISPUTED);
    assert_eq!(all[0].status, DisputeStatus::NeedsResponse);
    assert_eq!((all[0].amount, all[0].tax_amount), (500, 95));
    let cases = [
        (
            Some(DISPUTED),
            vec![DisputeStatus::NeedsResponse, DisputeStatus::UnderReview],
            1,
        ),
        (Some(ORDER), vec![], 0),
        (None, vec![DisputeStatus::Won], 0),
    ];
    for (order_id, statuses, expected) in cases {
        let query = DisputeQuery {
            order_id: order_id.map(str::to_owned),
            statuses: statuses.clone(),
        };
        let found = client.list_disputes(&query).await.unwrap();
        assert_eq!(found.len(), expected, "{order_id:?} {statuses:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_read_waits_out_retry_after_then_succeeds() {
    let (sim, client) = start().await;
    sim.inject(Fault {
        route: SimRoute::GetOrder,
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
        times: 1,
    });
    let started = Instant::now();
    let order = client.get_order(ORDER).await.unwrap();
    assert_eq!(order.id, ORDER);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.request_count(SimRoute::GetOrder), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_longer_than_the_client_waits_is_returned_at_once() {
    let (sim, _) = start().await;
    let client = PolarClient::new(PolarClientConfig {
        max_retry_after: Duration::from_secs(30),
        ..client_config(&sim)
    })
    .unwrap();
    sim.inject(Fault {
        route: SimRoute::ListRefunds,
        kind: FaultKind::RateLimit {
            retry_after_secs: 120,
        },
        times: 1,
    });
    let err = client.list_refunds_for_order(ORDER).await.unwrap_err();
    assert!(
        matches!(err, PolarError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(120)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(sim.request_count(SimRoute::ListRefunds), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_refund_post_is_retried_because_polar_did_nothing() {
    let (sim, client) = start().await;
    sim.inject(Fault {
        route: SimRoute::CreateRefund,
        kind: FaultKind::RateLimit {
            retry_after_secs: 0,
        },
        times: 1,
    });
    let refund = client
        .create_refund(&refund_of(ORDER, 100, "r_1"))
        .await
        .unwrap();
    assert_eq!(refund.amount, 100);
    assert_eq!(sim.request_count(SimRoute::CreateRefund), 2);
    assert_eq!(sim.refunds().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_on_reads_are_retried_until_the_retries_run_out() {
    let (sim, client) = start().await;
    sim.inject(Fault {
        route: SimRoute::GetOrder,
        kind: FaultKind::ServerError { status: 503 },
        times: 2,
    });
    assert_eq!(client.get_order(ORDER).await.unwrap().id, ORDER);
    assert_eq!(sim.request_count(SimRoute::GetOrder), 3);

    sim.inject(Fault {
        route: SimRoute::ListCustomers,
        kind: FaultKind::ServerError { status: 502 },
        times: 10,
    });
    let err = client
        .find_customers_by_email("aiko@example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, PolarError::Transient { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(sim.request_count(SimRoute::ListCustomers), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_server_error_on_a_refund_post_is_unclear_and_not_retried() {
    let (sim, client) = start().await;
    sim.inject(Fault {
        route: SimRoute::CreateRefund,
        kind: FaultKind::ServerError { status: 500 },
        times: 5,
    });
    let err = client
        .create_refund(&refund_of(ORDER, 100, "r_1"))
        .await
        .unwrap_err();
    assert!(matches!(err, PolarError::Unclear { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(sim.request_count(SimRoute::CreateRefund), 1);
    assert!(
        client
            .list_refunds_for_order(ORDER)
            .await
            .unwrap()
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refund_whose_response_is_lost_is_unclear_and_found_by_listing() {
    let faults = [
        FaultKind::CommitThenError { status: 500 },
        FaultKind::CommitThenHang { ms: 1_000 },
    ];
    for kind in faults {
        let (sim, _) = start().await;
        let client = PolarClient::new(PolarClientConfig {
            timeout: Duration::from_millis(250),
            ..client_config(&sim)
        })
        .unwrap();
        sim.inject(Fault {
            route: SimRoute::CreateRefund,
            kind: kind.clone(),
            times: 1,
        });
        let err = client
            .create_refund(&refund_of(ORDER, 300, "r_lost"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PolarError::Unclear { .. }),
            "{kind:?}: {err:?}"
        );
        assert_eq!(sim.request_count(SimRoute::CreateRefund), 1, "{kind:?}");
        let found = client.list_refunds_for_order(ORDER).await.unwrap();
        let ours: Vec<_> = found
            .iter()
            .filter(|r| r.metadata.get(KEY).and_then(MetadataValue::as_str) == Some("r_lost"))
            .collect();
        assert_eq!(ours.len(), 1, "{kind:?}");
        assert_eq!(
            (ours[0].amount, ours[0].status.clone()),
            (300, RefundStatus::Pending)
        );
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn connection_failures_are_transient_for_reads_and_refund_posts() {
    super::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let token = "polar_oat_SECRETvalue";
    let client = PolarClient::new(PolarClientConfig {
        max_retries: 1,
        timeout: Duration::from_secs(2),
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
        ..PolarClientConfig::new(format!("http://{addr}"), token)
    })
    .unwrap();
    let read = client.get_order(ORDER).await.unwrap_err();
    assert!(matches!(read, PolarError::Transient { .. }), "{read:?}");
    // Nothing reached Polar, so a refund POST that could not connect is safe to retry.
    let post = client
        .create_refund(&refund_of(ORDER, 1, "r"))
        .await
        .unwrap_err();
    assert!(matches!(post, PolarError::Transient { .. }), "{post:?}");
    for text in [
        format!("{read:?}"),
        format!("{post}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}
