//! The console's HTTP server itself, beyond its handlers: errors the web
//! framework produces (a body that is not JSON, a query string that does
//! not parse, a wrong content type, an unknown route or method, a body
//! too large) come back in the `/api` error envelope, and connections
//! that do not finish their request header in time are closed.

use reqwest::header::{ALLOW, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

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
