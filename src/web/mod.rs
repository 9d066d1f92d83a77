//! The reviewers' console and its JSON API (axum).
//!
//! Takes the store and the settings; gives [`router`] (pages under `/`,
//! JSON under `/api/`, the OpenAPI description at `/api/openapi.yaml`) and
//! [`serve`], which `refundd run` and `refundd serve` mount on
//! `[web] listen` (loopback by default). Pages are server-rendered
//! minijinja templates (`templates/console/`) with a small inline script
//! for keyboard shortcuts, allowed by a per-response CSP nonce.
//!
//! Decisions go through [`ReviewDesk`](crate::pipeline::review::ReviewDesk),
//! so a reviewer's approval records the same actions and sends the same
//! templated reply as the engine's. Security: reviewer accounts with
//! argon2 hashes and roles, `HttpOnly; SameSite=Strict` session cookies
//! (`Secure` unless `[web] secure_cookies = false`) that expire, a CSRF
//! token on every form, sign-in rate limiting, bearer tokens for the API
//! (stored hashed), an audit line for every human act, and customer mail
//! shown only as escaped text or ammonia-sanitized HTML without images.
//!
//! Never: sends mail or moves money itself (the outbox and payment stages
//! do), reads the clock outside the injected [`Clock`], or logs customer
//! text. Fails per request with [`WebError`], whose variants document
//! their HTTP status; the server stops on the `shutdown` token.

mod api;
pub mod auth;
mod error;
mod overview;
mod pages;
pub mod view;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, WebError};

use crate::config::Settings;
use crate::pipeline::review::ReviewDesk;
use crate::store::Store;
use view::Views;

/// Where the console reads the time (injected so tests control it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    desk: ReviewDesk,
    settings: Arc<Settings>,
    views: Views,
    clock: Clock,
}

impl WebState {
    /// The console's state over `store`, with the system clock.
    pub fn new(store: Store, settings: Arc<Settings>) -> Result<WebState, WebError> {
        WebState::with_clock(store, settings, Arc::new(Utc::now))
    }

    /// The console's state with a given clock (tests, benchmarks).
    pub fn with_clock(
        store: Store,
        settings: Arc<Settings>,
        clock: Clock,
    ) -> Result<WebState, WebError> {
        let desk = ReviewDesk::new(store, settings.clone())
            .map_err(|e| WebError::Internal(format!("reply templates: {e:#}")))?;
        Ok(WebState {
            inner: Arc::new(Inner {
                desk,
                settings,
                views: Views::new()?,
                clock,
            }),
        })
    }

    /// The database.
    pub fn store(&self) -> &Store {
        self.inner.desk.store()
    }

    /// Reviewer decisions.
    pub fn desk(&self) -> &ReviewDesk {
        &self.inner.desk
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn views(&self) -> &Views {
        &self.inner.views
    }

    /// The current time, from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }
}

/// Every route of the console and the API.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/", get(pages::queue))
        .route("/overview", get(overview::overview))
        .route("/audit", get(pages::audit))
        .route("/cases/bulk", post(pages::bulk))
        .route("/cases/{id}", get(pages::case))
        .route("/cases/{id}/confirm", get(pages::confirm))
        .route("/cases/{id}/decide", post(pages::decide))
        .route("/cases/{id}/notes", post(pages::note))
        .route("/cases/{id}/claim", post(pages::claim))
        .route("/cases/{id}/release", post(pages::release))
        .route(
            "/cases/{id}/messages/{message}/attachments/{n}",
            get(pages::attachment),
        )
        .route("/api/openapi.yaml", get(api::openapi))
        .route("/api/queue", get(api::queue))
        .route("/api/cases/{id}", get(api::case))
        .route("/api/cases/{id}/preview", post(api::preview))
        .route("/api/cases/{id}/decision", post(api::decide))
        .route("/api/cases/{id}/notes", post(api::note))
        .route(
            "/api/cases/{id}/claim",
            post(api::claim).delete(api::release),
        )
        .route("/api/bulk/approve", post(api::bulk_approve))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every response carries; pages set their own CSP (with a
/// nonce), everything else gets one that allows nothing.
async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
    response
}

/// Serves the console on `listener` until `shutdown` is cancelled; open
/// requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves any router built on the console's (e.g. with `/metrics` and the
/// Polar webhooks merged in, as `refundd run` does) with the peer address
/// the sign-in rate limit needs.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, stage = "web", "console listening");
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
