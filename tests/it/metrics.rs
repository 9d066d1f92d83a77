//! `/metrics`, `/healthz` and `/readyz` over HTTP on a loopback listener,
//! after real messages went through the pipeline.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

use refundd::config::Settings;
use refundd::metrics::{self, Metrics};
use refundd::pipeline::Pipeline;
use refundd::store::{Inserted, NewMessage, Store};

use crate::support::{TestDb, repo};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 5, 10, 0, 0).unwrap()
}

/// A fixed scrape time: the deadline gauge is then exact.
fn scrape_clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 5, 12, 0, 0).unwrap()
}

/// Serves `router` on 127.0.0.1 with a port chosen by the OS.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// `name{labels} value` lines of an exposition, by series.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[tokio::test]
async fn a_scrape_reports_ingest_decisions_outbox_and_the_oldest_deadline() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let settings: Settings =
        toml::from_str("[sender_auth]\ntrusted_authserv_ids = [\"mx.anumi.example\"]\n").unwrap();
    let pipeline = Pipeline::new(store.clone(), Arc::new(settings)).unwrap();
    let metrics = Metrics::new(at());

    for file in [
        "10-ivan-statutory.eml",
        "14-stranger-no-order.eml",
        "15-out-of-office.eml",
    ] {
        let raw = std::fs::read(repo().join("examples/demo/mail").join(file)).unwrap();
        let sha256 = hex::encode(Sha256::digest(&raw));
        let new = NewMessage {
            message_id: None,
            sha256,
            raw,
            received_at: at(),
            source: file.into(),
        };
        if let Inserted::New(_) = store.insert_message(&new).await.unwrap() {
            metrics.messages_ingested(1);
        }
    }
    let processed = pipeline.process_pending(at()).await.unwrap();
    metrics.observe_processed(&processed);
    metrics.set_imap_connected(true);

    let base = serve(metrics::router_with_clock(
        metrics.clone(),
        store.clone(),
        scrape_clock,
    ))
    .await;
    refundd::act::polar::install_crypto_provider();
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let series = parse(&response.text().await.unwrap());

    assert_eq!(series["refundd_messages_ingested_total"], 3.0);
    let decided: f64 = series
        .iter()
        .filter(|(k, _)| k.starts_with("refundd_decisions_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(decided, 3.0);
    assert_eq!(series["refundd_decisions_total{outcome=\"ignored\"}"], 1.0);
    assert_eq!(series["refundd_decisions_total{outcome=\"approved\"}"], 0.0);
    assert_eq!(
        series["refundd_action_failures_total{kind=\"cash_refund\"}"],
        0.0
    );
    assert_eq!(series["refundd_imap_connected"], 1.0);
    assert_eq!(series["refundd_database_up"], 1.0);
    let queued = store.queued_replies(100).await.unwrap().len() as f64;
    assert!(queued >= 2.0, "the customers were answered");
    assert_eq!(series["refundd_outbox_depth"], queued);
    let review = series["refundd_open_cases{status=\"review\"}"];
    let oldest = store
        .list_cases(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.status == refundd::store::CaseStatus::Review)
        .filter_map(|c| c.deadline)
        .min();
    match oldest {
        Some(deadline) => {
            assert!(review >= 1.0);
            assert_eq!(
                series["refundd_oldest_open_deadline_seconds"],
                (deadline - scrape_clock()).num_seconds() as f64
            );
        }
        None => assert!(!series.contains_key("refundd_oldest_open_deadline_seconds")),
    }
    assert_eq!(
        series["process_start_time_seconds"],
        at().timestamp() as f64
    );

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // The database goes away: still alive, no longer ready, scrape says so.
    store.close().await;
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let after = parse(
        &client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(after["refundd_database_up"], 0.0);
    assert_eq!(after["refundd_messages_ingested_total"], 3.0);
}
