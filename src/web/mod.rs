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
//! their HTTP status; the server stops on the `shutdown` token, and closes
//! connections that do not send their request header within
//! `[web] header_read_timeout_secs`.

pub mod accounts;
mod admin;
mod api;
pub mod auth;
mod error;
mod overview;
mod pages;
pub mod view;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use chrono::{DateTime, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

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
    passwords: auth::PasswordChecker,
    clock: Clock,
    /// The latest replay an admin ran from the console (this process only).
    latest_replay: std::sync::Mutex<Option<admin::LatestReplay>>,
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
        WebState::with_desk(desk, settings, clock)
    }

    /// The console's state answering with `templates`, shared with (and
    /// reloaded for) the rest of the daemon, with the system clock.
    pub fn with_templates(
        store: Store,
        settings: Arc<Settings>,
        templates: crate::reply::Templates,
    ) -> Result<WebState, WebError> {
        let desk = ReviewDesk::with_templates(store, settings.clone(), templates);
        WebState::with_desk(desk, settings, Arc::new(Utc::now))
    }

    fn with_desk(
        desk: ReviewDesk,
        settings: Arc<Settings>,
        clock: Clock,
    ) -> Result<WebState, WebError> {
        Ok(WebState {
            inner: Arc::new(Inner {
                desk,
                settings,
                views: Views::new()?,
                passwords: auth::PasswordChecker::per_core(),
                clock,
                latest_replay: std::sync::Mutex::new(None),
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

    fn passwords(&self) -> &auth::PasswordChecker {
        &self.inner.passwords
    }

    /// The current time, from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }

    fn latest_replay(&self) -> Option<admin::LatestReplay> {
        self.inner
            .latest_replay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn keep_replay(&self, latest: admin::LatestReplay) {
        *self
            .inner
            .latest_replay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(latest);
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
        .route("/admin/replay", get(admin::page).post(admin::run))
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
        .route("/api/deny-reasons", get(api::deny_reasons))
        .route("/api/cases/{id}", get(api::case))
        .route("/api/cases/{id}/preview", post(api::preview))
        .route("/api/cases/{id}/decision", post(api::decide))
        .route("/api/cases/{id}/notes", post(api::note))
        .route(
            "/api/cases/{id}/claim",
            post(api::claim).delete(api::release),
        )
        .route("/api/bulk/approve", post(api::bulk_approve))
        // An unknown /api path is the API's 404 even when this router is
        // merged with others (the daemon adds /metrics and webhooks).
        .route("/api/{*unknown}", any(api::not_found))
        .layer(middleware::from_fn(error::api_envelope))
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
/// requests finish first. Connections that do not send their request
/// header within `[web] header_read_timeout_secs` are closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let header_read_timeout = state.settings().web.header_read_timeout();
    serve_router(listener, router(state), header_read_timeout, shutdown).await
}

/// Serves any router built on the console's (e.g. with `/metrics` and the
/// Polar webhooks merged in, as `refundd run` does) over HTTP/1.1, with
/// the peer address the sign-in rate limit needs (`ConnectInfo`).
///
/// A connection has `header_read_timeout` to send each request header
/// (the first one, and the next one on a kept-alive connection); a client
/// that dribbles its header, or sends nothing, is closed then instead of
/// holding a connection and its task forever. `axum::serve` has no such
/// setting, hence hyper's connection here. On `shutdown` the listener
/// closes, every connection finishes the request it is serving and closes,
/// and this returns when the last one has.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, stage = "web", "console listening");
    }
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    wait_after_accept_error(err).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = served {
                // A timed-out header, a reset, a malformed request: the
                // client's doing, not ours; hyper has answered or closed.
                tracing::debug!(stage = "web", error = %err, "connection closed");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// After a failed `accept`: a connection the peer gave up on is nothing;
/// anything else (out of file descriptors) is logged and waited out for a
/// second, as hyper's and axum's servers do, instead of spinning.
async fn wait_after_accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(stage = "web", error = %err, "cannot accept connections");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
