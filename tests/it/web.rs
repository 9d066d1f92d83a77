//! The console's HTTP server itself, beyond its handlers: errors the web
//! framework produces (a body that is not JSON, a query string that does
//! not parse, a wrong content type, an unknown route or method, a body
//! too large) come back in the `/api` error envelope, and connections
//! that do not finish their request header in time are closed.

use reqwest::header::{ALLOW, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::console::Console;
use crate::support::TestDb;

/// Asserts a response is the documented envelope `{"error", "message"}`
/// with this status and code; returns the message.
async fn envelope(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    let what = format!("{} {}", response.status(), response.url());
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json", "{what}");
    let body: serde_json::Value = response.json().await.unwrap();
    let object = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message"], "{what}: {body}");
    assert_eq!(body["error"], code, "{what}: {body}");
    let message = body["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty(), "{what}");
    message
}

#[tokio::test]
async fn errors_the_framework_produces_come_back_in_the_api_error_envelope() {
    let db = TestDb::sqlite();
    let console = Console::start(&db).await;
    let token = console.token("rita@anumi.example").await;
    let api = |method: Method, path: &str| {
        console
            .http
            .request(method, format!("{}{path}", console.base))
            .bearer_auth(&token)
    };
    let decision = "/api/cases/R-1/decision";

    let not_json = api(Method::POST, decision)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"version\": 1, \"choice\":")
        .send()
        .await
        .unwrap();
    envelope(not_json, StatusCode::BAD_REQUEST, "bad_request").await;

    let wrong_shape = api(Method::POST, decision)
        .json(&serde_json::json!({ "version": "one" }))
        .send()
        .await
        .unwrap();
    let message = envelope(wrong_shape, StatusCode::UNPROCESSABLE_ENTITY, "invalid").await;
    assert!(message.contains("version"), "{message}");

    let wrong_type = api(Method::POST, decision)
        .header(CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    envelope(
        wrong_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let bad_query = api(Method::GET, "/api/queue?limit=many")
        .send()
        .await
        .unwrap();
    let message = envelope(bad_query, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(message.contains("limit"), "{message}");

    let bad_path = api(Method::GET, "/api/cases/%FF").send().await.unwrap();
    envelope(bad_path, StatusCode::BAD_REQUEST, "bad_request").await;

    let too_large = api(Method::POST, "/api/cases/R-1/notes")
        .json(&serde_json::json!({ "text": "x".repeat(3 << 20) }))
        .send()
        .await
        .unwrap();
    envelope(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;

    let unknown = api(Method::GET, "/api/nothing-here").send().await.unwrap();
    envelope(unknown, StatusCode::NOT_FOUND, "not_found").await;
    // Also with the console merged into a bigger router, as `refundd run`
    // serves it (with /metrics and the webhooks).
    let state = refundd::web::WebState::new(
        console.store.clone(),
        std::sync::Arc::new(refundd::config::Settings::default()),
    )
    .unwrap();
    let merged = refundd::web::router(state)
        .merge(axum::Router::new().route("/metrics", axum::routing::get(|| async { "metrics" })));
    let answer = tower::ServiceExt::oneshot(
        merged,
        axum::http::Request::get("/api/nothing/here")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "not_found");

    let wrong_method = api(Method::DELETE, "/api/queue").send().await.unwrap();
    assert_eq!(wrong_method.headers()[ALLOW], "GET,HEAD");
    envelope(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;

    // Pages keep answering as pages.
    let page = console
        .http
        .get(format!("{}/nothing-here", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.headers()
            .get(CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    );
}

/// Reads until the server closes the connection (end of stream or a
/// reset); `false` if it is still open after `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_connection_that_does_not_finish_its_request_header_in_time_is_closed() {
    let db = TestDb::sqlite();
    let console = Console::start_with(&db, |s| s.web.header_read_timeout_secs = 1).await;
    let addr = console.base.trim_start_matches("http://").to_owned();

    // Half a request line, then nothing: a slowloris client; and one that
    // connects and sends nothing at all.
    let connected = Instant::now();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /login HT").await.unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    for (name, stream) in [("half a request line", &mut slow), ("nothing", &mut silent)] {
        assert!(
            closed_by_server(stream, Duration::from_secs(5)).await,
            "sent {name}: still open after 5 s"
        );
        let after = connected.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "sent {name}: closed after {after:?}, before the 1 s timeout"
        );
    }

    // A client that sends its header in time is served as always, and a
    // request that arrives over several writes within the timeout too.
    let page = console
        .http
        .get(format!("{}/login", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let mut chatty = TcpStream::connect(&addr).await.unwrap();
    for part in [
        "GET /login HTTP/1.1\r\n",
        "Host: x\r\n",
        "Connection: close\r\n\r\n",
    ] {
        chatty.write_all(part.as_bytes()).await.unwrap();
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), chatty.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn on_shutdown_the_request_in_flight_is_answered_before_the_server_returns() {
    use std::sync::Arc;
    let (entered, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let app = {
        let (entered, release) = (entered.clone(), release.clone());
        axum::Router::new().route(
            "/slow",
            axum::routing::get(
                move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                    std::net::SocketAddr,
                >| async move {
                    entered.notify_one();
                    release.notified().await;
                    peer.ip().to_string()
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(refundd::web::serve_router(
        listener,
        app,
        Duration::from_secs(5),
        shutdown.clone(),
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let in_flight = tokio::spawn(reqwest::get(format!("{base}/slow")));
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .expect("the request reaches its handler");
    shutdown.cancel();
    release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the request in flight is answered")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.text().await.unwrap(),
        "127.0.0.1",
        "the peer address"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_standalone_webhook_server_closes_a_connection_that_dribbles_its_header() {
    let db = TestDb::sqlite();
    let store = refundd::store::Store::connect(&db.url).await.unwrap();
    let state = refundd::act::webhooks::WebhookState::new(store, "whsec_test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(refundd::act::webhooks::serve(
        listener,
        state,
        None,
        refundd::config::Settings::default().lifecycle(),
        Duration::from_secs(1),
        shutdown.clone(),
    ));

    let connected = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /webhooks/polar HT").await.unwrap();
    assert!(
        closed_by_server(&mut slow, Duration::from_secs(5)).await,
        "a dribbling client still holds its connection after 5 s"
    );
    assert!(connected.elapsed() >= Duration::from_millis(900));

    // A whole request is answered (unsigned: refused, but answered).
    let mut whole = TcpStream::connect(addr).await.unwrap();
    whole
        .write_all(
            b"POST /webhooks/polar HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), whole.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
