//! `POST /webhooks/polar`: Polar's webhooks, verified, stored once per
//! `webhook-id`, answered at once and applied by a task afterwards.
//!
//! Takes: deliveries signed per Standard Webhooks with Polar's key quirk
//! (see [`super::polar::webhook`]). Gives: `202 Accepted` once the delivery
//! is stored (a replay of a stored `webhook-id` is also 202 and is not
//! stored again), then [`super::ledger_sync::apply_received`] applies it.
//! The answer never waits on Polar or on applying: storing is bounded by
//! [`STORE_TIMEOUT`], well inside the 2 s refundd promises (Polar gives up
//! after 10 s and retries). Never: trusts an unverified body, or logs
//! bodies (they hold customer emails). Fails per [`Rejection`], whose
//! variants say their HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::queue::Lifecycle;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ledger_sync;
use super::polar::PolarClient;
use super::polar::webhook::{WebhookError, WebhookHeaders, verify};
use crate::store::Store;

/// How long storing a delivery may take before the answer is 503 (Polar
/// retries it).
pub const STORE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often the applier looks for stored deliveries without being woken
/// (a delivery stored by another instance, or left by a failed attempt).
pub const APPLY_INTERVAL: Duration = Duration::from_secs(30);

/// The clock the endpoint checks `webhook-timestamp` against (injected so
/// tests can use Polar's known-answer vector).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What the endpoint needs.
#[derive(Clone)]
pub struct WebhookState {
    /// Where deliveries are stored.
    pub store: Store,
    /// The `whsec_…` secret, used as raw bytes (Polar's quirk).
    pub secret: Arc<str>,
    /// Now, for the timestamp tolerance.
    pub clock: Clock,
    /// Woken after each stored delivery.
    pub wake: Arc<Notify>,
}

impl WebhookState {
    /// State with the system clock and a fresh wake-up.
    pub fn new(store: Store, secret: &str) -> WebhookState {
        WebhookState {
            store,
            secret: Arc::from(secret),
            clock: Arc::new(Utc::now),
            wake: Arc::new(Notify::new()),
        }
    }
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// 401: no signature matches (wrong secret or altered content).
    #[error("webhook signature does not match")]
    BadSignature,
    /// 400: a header is missing or malformed, or the timestamp is outside
    /// the tolerance (a replay of an old delivery).
    #[error("webhook headers rejected: {0}")]
    BadHeaders(#[source] WebhookError),
    /// 503: the delivery could not be stored in time; Polar retries.
    #[error("webhook delivery could not be stored")]
    Unavailable,
}

impl Rejection {
    /// The HTTP status of each variant.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::BadHeaders(_) => StatusCode::BAD_REQUEST,
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<WebhookError> for Rejection {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::SignatureMismatch => Rejection::BadSignature,
            other => Rejection::BadHeaders(other),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}

/// The webhook router: `POST /webhooks/polar`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhooks/polar", post(receive))
        .with_state(state)
}

#[derive(serde::Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    event_type: String,
}

async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Rejection> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let signed = WebhookHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let now = (state.clock)();
    if let Err(err) = verify(&state.secret, &signed, &body, now) {
        tracing::warn!(webhook_id = %signed.id, error = %err, "webhook rejected");
        return Err(err.into());
    }
    let event_type = serde_json::from_slice::<TypeOnly>(&body)
        .map(|t| t.event_type)
        .unwrap_or_default();
    let stored = tokio::time::timeout(
        STORE_TIMEOUT,
        state
            .store
            .insert_webhook_delivery(signed.id, &event_type, &body, now),
    )
    .await;
    match stored {
        Ok(Ok(new)) => {
            if new {
                state.wake.notify_one();
            }
            tracing::info!(webhook_id = %signed.id, event_type = %event_type, replay = !new, "webhook stored");
            Ok(StatusCode::ACCEPTED)
        }
        Ok(Err(err)) => {
            tracing::error!(webhook_id = %signed.id, error = %err, "cannot store webhook delivery");
            Err(Rejection::Unavailable)
        }
        Err(_) => {
            tracing::error!(webhook_id = %signed.id, "storing a webhook delivery timed out");
            Err(Rejection::Unavailable)
        }
    }
}

/// Applies stored deliveries whenever woken (or every [`APPLY_INTERVAL`])
/// until `shutdown`; finishes the delivery at hand before returning.
pub async fn run_applier(
    store: Store,
    client: Option<PolarClient>,
    lifecycle: Lifecycle,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(err) =
            ledger_sync::apply_received(&store, client.as_ref(), &lifecycle, Utc::now()).await
        {
            tracing::error!(error = %err, transient = err.is_transient(), "applying webhook deliveries failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(APPLY_INTERVAL) => {}
        }
    }
}

/// Serves the webhook endpoint on `listener` and applies deliveries in a
/// task beside it, until `shutdown`. Connections are served as the
/// console's are ([`crate::web::serve_router`]): one that does not send its
/// request header within `header_read_timeout` is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebhookState,
    client: Option<PolarClient>,
    lifecycle: Lifecycle,
    header_read_timeout: std::time::Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let applier = tokio::spawn(run_applier(
        state.store.clone(),
        client,
        lifecycle,
        state.wake.clone(),
        shutdown.clone(),
    ));
    let served = crate::web::serve_router(
        listener,
        router(state),
        header_read_timeout,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Err(err) = applier.await {
        tracing::error!(error = %err, "webhook applier task failed");
    }
    served
}

/// Binds `addr` and [`serve`]s on it.
pub async fn serve_on(
    addr: SocketAddr,
    state: WebhookState,
    client: Option<PolarClient>,
    lifecycle: Lifecycle,
    header_read_timeout: std::time::Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving Polar webhooks");
    serve(
        listener,
        state,
        client,
        lifecycle,
        header_read_timeout,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_signature_is_401_and_bad_headers_are_400() {
        let cases = [
            (WebhookError::SignatureMismatch, StatusCode::UNAUTHORIZED),
            (WebhookError::TimestampTooOld, StatusCode::BAD_REQUEST),
            (WebhookError::TimestampInFuture, StatusCode::BAD_REQUEST),
            (
                WebhookError::MissingHeader("webhook-id"),
                StatusCode::BAD_REQUEST,
            ),
            (WebhookError::MalformedSignature, StatusCode::BAD_REQUEST),
        ];
        for (err, status) in cases {
            assert_eq!(Rejection::from(err).status(), status);
        }
        assert_eq!(
            Rejection::Unavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
