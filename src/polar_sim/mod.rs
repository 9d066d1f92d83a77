//! A Polar-compatible API server for tests and demos (axum), stateful and in
//! memory, built from Polar's OpenAPI description and the server behaviour in
//! NOTES.md.
//!
//! Takes: a [`SimConfig`] (token, settle delay, seed). Gives: a running
//! server ([`PolarSim`]) on `127.0.0.1` (port 0 by default) serving
//! `GET /v1/orders/`, `GET /v1/orders/{id}`, `GET /v1/customers/`,
//! `GET /v1/customers/{id}`, `POST /v1/refunds/`, `GET /v1/refunds/`,
//! `GET /v1/disputes/` and `GET /v1/disputes/{id}` with bearer auth.
//!
//! Refund rules (Polar's, per NOTES.md): `amount` excludes tax; the tax
//! returned is `floor(amount × order.tax_amount ÷ order.net_amount)`, except
//! that refunding everything still refundable returns all the tax still
//! refundable. A refund is created `pending` and does NOT lower
//! `refundable_amount` until it succeeds (after `settle_after`, or when a test
//! settles it): two posts can both be accepted — Polar's real trap. At
//! settlement a refund larger than what is then refundable becomes `failed`.
//! Checks, in order: body (422, `detail: [{type, loc, msg, input}]`), unknown
//! order (422 on `order_id`), order without payment (404
//! `RefundUnknownPayment`), refunds blocked switch (403 `RefundsBlocked`), open
//! dispute (403 `RefundDisputedPayment`), nothing refundable (403
//! `RefundedAlready`), amount over refundable (422 on `amount`).
//!
//! Test controls, from Rust ([`PolarSim`] methods) or over HTTP without auth
//! under `/__sim/`: `GET /__sim/state`, `POST /__sim/seed` ([`Seed`]),
//! `POST /__sim/faults` ([`Fault`]), `DELETE /__sim/faults`,
//! `POST /__sim/refunds/{id}/settle`, `POST /__sim/refunds/{id}/fail`,
//! `POST /__sim/refunds-blocked` (`{"blocked": bool}`).
//!
//! Never: talks to the real Polar, persists anything, or listens beyond the
//! address it is given. Fails to start only when the address cannot be bound.

mod state;

#[cfg(test)]
mod conformance;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use state::{
    ApiError, Seed, SeedCustomer, SeedDispute, SeedError, SeedOrder, proportional_tax,
};

use state::{QueryMap, Store, page_and_limit, paginate, validate_refund_body, validation_entry};

/// How the test server starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The only bearer token accepted.
    pub token: String,
    /// The organization every resource belongs to.
    pub organization_id: String,
    /// Pending refunds succeed this long after creation; `None` leaves them
    /// pending until [`PolarSim::settle_refund`] (or the admin route).
    pub settle_after: Option<Duration>,
    /// Loaded at start.
    pub seed: Seed,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "polar_oat_sim_token".into(),
            organization_id: "1dbfc517-0bbf-4301-9ba8-555ca42b9737".into(),
            settle_after: None,
            seed: Seed::default(),
        }
    }
}

/// A route of the simulated API, for faults and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRoute {
    /// `GET /v1/orders/{id}`.
    GetOrder,
    /// `GET /v1/orders/`.
    ListOrders,
    /// `GET /v1/customers/{id}`.
    GetCustomer,
    /// `GET /v1/customers/`.
    ListCustomers,
    /// `POST /v1/refunds/`.
    CreateRefund,
    /// `GET /v1/refunds/`.
    ListRefunds,
    /// `GET /v1/disputes/{id}`.
    GetDispute,
    /// `GET /v1/disputes/`.
    ListDisputes,
}

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Waits, then answers normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Answers with this 5xx status without doing anything.
    ServerError {
        /// HTTP status.
        status: u16,
    },
    /// Answers 429 with `Retry-After` without doing anything.
    RateLimit {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Does the work (e.g. creates the refund), then answers this status
    /// instead of the result: the client never learns the outcome.
    CommitThenError {
        /// HTTP status.
        status: u16,
    },
    /// Does the work, then holds the response this long (past the client's
    /// timeout) before sending it.
    CommitThenHang {
        /// Milliseconds.
        ms: u64,
    },
}

/// A fault for the next `times` requests on one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Which route.
    pub route: SimRoute,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// One request the server received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimRequest {
    /// The route.
    pub route: SimRoute,
    /// The `Polar-Version` header, if sent.
    pub polar_version: Option<String>,
    /// Whether the bearer token was accepted.
    pub authorized: bool,
}

/// A refund as the server holds it, for assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimRefund {
    /// Refund id.
    pub id: String,
    /// Order id.
    pub order_id: String,
    /// Net amount.
    pub amount: i64,
    /// Tax amount.
    pub tax_amount: i64,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// Metadata as sent.
    pub metadata: serde_json::Map<String, Value>,
}

/// An order's money as the server holds it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimOrder {
    /// Order status.
    pub status: String,
    /// Net refunded (succeeded refunds).
    pub refunded_amount: i64,
    /// Tax refunded (succeeded refunds).
    pub refunded_tax_amount: i64,
    /// Net still refundable.
    pub refundable_amount: i64,
}

struct Inner {
    store: Store,
    faults: Vec<Fault>,
    requests: Vec<SimRequest>,
}

struct Shared {
    config: SimConfig,
    inner: Mutex<Inner>,
}

impl Shared {
    /// Locks the state, settling refunds that are due first.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.store.settle_due(Instant::now(), Utc::now());
        inner
    }
}

/// A running test server. Dropping it stops the server.
pub struct PolarSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PolarSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolarSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The seed is inconsistent.
    #[error("bad seed")]
    Seed(#[from] SeedError),
    /// The address could not be bound.
    #[error("cannot listen")]
    Listen(#[from] std::io::Error),
}

impl PolarSim {
    /// Seeds the store, binds `config.listen` and serves until shutdown.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let mut store = Store {
            organization_id: config.organization_id.clone(),
            ..Store::default()
        };
        store.seed(&config.seed, Utc::now())?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner {
                store,
                faults: Vec::new(),
                requests: Vec::new(),
            }),
        });
        let cancel = CancellationToken::new();
        let app = router(shared.clone());
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "polar test server stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted bearer token.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Adds customers, orders and disputes.
    pub fn seed(&self, seed: &Seed) -> Result<(), SeedError> {
        self.shared.lock().store.seed(seed, Utc::now())
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Drops queued faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Turns the `RefundsBlocked` switch on or off.
    pub fn set_refunds_blocked(&self, blocked: bool) {
        self.shared.lock().store.refunds_blocked = blocked;
    }

    /// Settles a pending refund now (see the module doc). False when the
    /// refund is unknown or not pending.
    pub fn settle_refund(&self, refund_id: &str) -> bool {
        self.shared.lock().store.settle(refund_id, Utc::now())
    }

    /// Fails a pending refund. False when the refund is unknown or not pending.
    pub fn fail_refund(&self, refund_id: &str) -> bool {
        self.shared.lock().store.fail(refund_id, Utc::now())
    }

    /// Every refund, oldest first.
    pub fn refunds(&self) -> Vec<SimRefund> {
        self.shared
            .lock()
            .store
            .refunds
            .iter()
            .map(|r| SimRefund {
                id: r.id.clone(),
                order_id: r.order_id.clone(),
                amount: r.amount,
                tax_amount: r.tax_amount,
                status: r.status.clone(),
                metadata: r.metadata.clone(),
            })
            .collect()
    }

    /// An order's money, if the order exists.
    pub fn order(&self, order_id: &str) -> Option<SimOrder> {
        let inner = self.shared.lock();
        let order = inner.store.orders.iter().find(|o| o.id == order_id)?;
        Some(SimOrder {
            status: order.status().to_owned(),
            refunded_amount: order.refunded_amount,
            refunded_tax_amount: order.refunded_tax_amount,
            refundable_amount: order.refundable_amount(),
        })
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests hit `route`.
    pub fn request_count(&self, route: SimRoute) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.route == route)
            .count()
    }

    /// Stops accepting, lets in-flight requests finish (at most 2 s), then stops.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for PolarSim {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type Sim = State<Arc<Shared>>;
type Pairs = Query<Vec<(String, String)>>;

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/orders/", get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/customers/", get(list_customers))
        .route("/v1/customers/{id}", get(get_customer))
        .route("/v1/refunds/", post(create_refund).get(list_refunds))
        .route("/v1/disputes/", get(list_disputes))
        .route("/v1/disputes/{id}", get(get_dispute))
        .route("/__sim/state", get(admin_state))
        .route("/__sim/seed", post(admin_seed))
        .route(
            "/__sim/faults",
            post(admin_add_fault).delete(admin_clear_faults),
        )
        .route("/__sim/refunds/{id}/settle", post(admin_settle))
        .route("/__sim/refunds/{id}/fail", post(admin_fail))
        .route("/__sim/refunds-blocked", post(admin_block))
        .with_state(shared)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body.clone())).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// What the request should do after auth and faults.
enum Proceed {
    Normally,
    ThenError(u16),
    ThenHang(Duration),
}

/// Logs the request, checks the token and applies the route's next fault.
async fn enter(shared: &Shared, route: SimRoute, headers: &HeaderMap) -> Result<Proceed, Response> {
    let expected = format!("Bearer {}", shared.config.token);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let fault = {
        let mut inner = shared.lock();
        inner.requests.push(SimRequest {
            route,
            polar_version: headers
                .get("polar-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            authorized,
        });
        if !authorized {
            return Err(
                ApiError::named(401, "Unauthorized", "Invalid or missing access token.")
                    .into_response(),
            );
        }
        let position = inner.faults.iter().position(|f| f.route == route);
        position.map(|index| {
            let fault = &mut inner.faults[index];
            let kind = fault.kind.clone();
            fault.times = fault.times.saturating_sub(1);
            if fault.times == 0 {
                inner.faults.remove(index);
            }
            kind
        })
    };
    match fault {
        None => Ok(Proceed::Normally),
        Some(FaultKind::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Proceed::Normally)
        }
        Some(FaultKind::ServerError { status }) => {
            Err(
                ApiError::named(status, "InternalServerError", "Injected server error.")
                    .into_response(),
            )
        }
        Some(FaultKind::RateLimit { retry_after_secs }) => {
            let mut response =
                ApiError::named(429, "TooManyRequests", "Rate limit exceeded.").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Err(response)
        }
        Some(FaultKind::CommitThenError { status }) => Ok(Proceed::ThenError(status)),
        Some(FaultKind::CommitThenHang { ms }) => Ok(Proceed::ThenHang(Duration::from_millis(ms))),
    }
}

/// Applies a commit-then-* fault to a finished response.
async fn finish(proceed: Proceed, response: Response) -> Response {
    match proceed {
        Proceed::Normally => response,
        Proceed::ThenError(status) => ApiError::named(
            status,
            "InternalServerError",
            "Injected failure after commit.",
        )
        .into_response(),
        Proceed::ThenHang(wait) => {
            tokio::time::sleep(wait).await;
            response
        }
    }
}

fn group(pairs: Vec<(String, String)>) -> QueryMap {
    let mut map = QueryMap::new();
    for (key, value) in pairs {
        map.entry(key).or_default().push(value);
    }
    map
}

/// Values of a filter; empty when absent.
fn filter<'a>(query: &'a QueryMap, key: &str) -> &'a [String] {
    query.get(key).map_or(&[], Vec::as_slice)
}

fn matches_filter(values: &[String], actual: &str) -> bool {
    values.is_empty() || values.iter().any(|v| v.eq_ignore_ascii_case(actual))
}

/// Runs a list route: auth, faults, page/limit, then `select`'s items.
async fn list(
    shared: Arc<Shared>,
    route: SimRoute,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
    select: impl FnOnce(&Store, &QueryMap) -> Vec<Value>,
) -> Response {
    let proceed = match enter(&shared, route, &headers).await {
        Ok(proceed) => proceed,
        Err(response) => return response,
    };
    let query = group(pairs);
    let (page, limit) = match page_and_limit(&query) {
        Ok(paging) => paging,
        Err(err) => return err.into_response(),
    };
    let items = select(&shared.lock().store, &query);
    finish(proceed, json_response(200, &paginate(items, page, limit))).await
}

/// Runs a get-by-id route: auth, faults, UUID check, then `find`.
async fn get_one(
    shared: Arc<Shared>,
    route: SimRoute,
    headers: HeaderMap,
    id: String,
    find: impl FnOnce(&Store, &str) -> Option<Value>,
) -> Response {
    let proceed = match enter(&shared, route, &headers).await {
        Ok(proceed) => proceed,
        Err(response) => return response,
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return ApiError::validation(vec![validation_entry(
            "uuid_parsing",
            &["path", "id"],
            "Input should be a valid UUID",
            Value::String(id),
        )])
        .into_response();
    }
    let found = find(&shared.lock().store, &id.to_lowercase());
    let response = match found {
        Some(body) => json_response(200, &body),
        None => ApiError::named(404, "ResourceNotFound", "Not found").into_response(),
    };
    finish(proceed, response).await
}

async fn get_order(State(shared): Sim, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(shared, SimRoute::GetOrder, headers, id, |store, id| {
        store
            .orders
            .iter()
            .find(|o| o.id == id)
            .map(|o| store.order_json(o))
    })
    .await
}

async fn get_customer(State(shared): Sim, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(shared, SimRoute::GetCustomer, headers, id, |store, id| {
        store
            .customers
            .iter()
            .find(|c| c.id == id)
            .map(|c| store.customer_json(c))
    })
    .await
}

async fn get_dispute(State(shared): Sim, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(shared, SimRoute::GetDispute, headers, id, |store, id| {
        store
            .disputes
            .iter()
            .find(|d| d.id == id)
            .map(|d| store.dispute_json(d))
    })
    .await
}

async fn list_orders(State(shared): Sim, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    list(
        shared,
        SimRoute::ListOrders,
        headers,
        pairs,
        |store, query| {
            let mut orders: Vec<_> = store
                .orders
                .iter()
                .filter(|o| matches_filter(filter(query, "customer_id"), &o.customer_id))
                .filter(|o| matches_filter(filter(query, "status"), o.status()))
                .collect();
            // Polar's default sorting: newest first.
            orders.sort_by_key(|item| std::cmp::Reverse(item.created_at));
            orders.into_iter().map(|o| store.order_json(o)).collect()
        },
    )
    .await
}

async fn list_customers(State(shared): Sim, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    list(
        shared,
        SimRoute::ListCustomers,
        headers,
        pairs,
        |store, query| {
            let emails = filter(query, "email");
            store
                .customers
                .iter()
                .filter(|c| {
                    emails.is_empty()
                        || emails
                            .iter()
                            .any(|e| e.to_lowercase() == c.email.to_lowercase())
                })
                .map(|c| store.customer_json(c))
                .collect()
        },
    )
    .await
}

async fn list_refunds(State(shared): Sim, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    list(
        shared,
        SimRoute::ListRefunds,
        headers,
        pairs,
        |store, query| {
            let succeeded = query
                .get("succeeded")
                .and_then(|v| v.last())
                .map(|v| v == "true");
            let mut refunds: Vec<_> = store
                .refunds
                .iter()
                .filter(|r| matches_filter(filter(query, "order_id"), &r.order_id))
                .filter(|r| matches_filter(filter(query, "customer_id"), &r.customer_id))
                .filter(|r| matches_filter(filter(query, "id"), &r.id))
                .filter(|r| succeeded.is_none_or(|want| (r.status == "succeeded") == want))
                .collect();
            refunds.sort_by_key(|item| std::cmp::Reverse(item.created_at));
            refunds.into_iter().map(|r| store.refund_json(r)).collect()
        },
    )
    .await
}

async fn list_disputes(State(shared): Sim, headers: HeaderMap, Query(pairs): Pairs) -> Response {
    list(
        shared,
        SimRoute::ListDisputes,
        headers,
        pairs,
        |store, query| {
            let mut disputes: Vec<_> = store
                .disputes
                .iter()
                .filter(|d| matches_filter(filter(query, "order_id"), &d.order_id))
                .filter(|d| matches_filter(filter(query, "status"), &d.status))
                .collect();
            disputes.sort_by_key(|item| std::cmp::Reverse(item.created_at));
            disputes
                .into_iter()
                .map(|d| store.dispute_json(d))
                .collect()
        },
    )
    .await
}

async fn create_refund(State(shared): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let proceed = match enter(&shared, SimRoute::CreateRefund, &headers).await {
        Ok(proceed) => proceed,
        Err(response) => return response,
    };
    let request = match validate_refund_body(&body) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let settle_at = shared
        .config
        .settle_after
        .map(|after| Instant::now() + after);
    let created = shared
        .lock()
        .store
        .create_refund(request, Utc::now(), settle_at);
    let response = match created {
        Ok(refund) => json_response(201, &refund),
        Err(err) => err.into_response(),
    };
    finish(proceed, response).await
}

async fn admin_state(State(shared): Sim) -> Response {
    let inner = shared.lock();
    let store = &inner.store;
    let body = json!({
        "customers": store.customers.iter().map(|c| store.customer_json(c)).collect::<Vec<_>>(),
        "orders": store.orders.iter().map(|o| store.order_json(o)).collect::<Vec<_>>(),
        "refunds": store.refunds.iter().map(|r| store.refund_json(r)).collect::<Vec<_>>(),
        "disputes": store.disputes.iter().map(|d| store.dispute_json(d)).collect::<Vec<_>>(),
        "refunds_blocked": store.refunds_blocked,
        "faults": inner.faults,
        "requests": inner.requests,
    });
    json_response(200, &body)
}

async fn admin_seed(State(shared): Sim, axum::Json(seed): axum::Json<Seed>) -> Response {
    match shared.lock().store.seed(&seed, Utc::now()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => json_response(400, &json!({"error": "BadSeed", "detail": err.to_string()})),
    }
}

async fn admin_add_fault(State(shared): Sim, axum::Json(fault): axum::Json<Fault>) -> StatusCode {
    shared.lock().faults.push(fault);
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(State(shared): Sim) -> StatusCode {
    shared.lock().faults.clear();
    StatusCode::NO_CONTENT
}

fn admin_refund(shared: &Shared, id: &str, changed: bool) -> Response {
    let inner = shared.lock();
    match inner.store.refunds.iter().find(|r| r.id == id) {
        Some(refund) if changed => json_response(200, &inner.store.refund_json(refund)),
        Some(refund) => json_response(409, &inner.store.refund_json(refund)),
        None => ApiError::named(404, "ResourceNotFound", "Not found").into_response(),
    }
}

async fn admin_settle(State(shared): Sim, Path(id): Path<String>) -> Response {
    let changed = shared.lock().store.settle(&id, Utc::now());
    admin_refund(&shared, &id, changed)
}

async fn admin_fail(State(shared): Sim, Path(id): Path<String>) -> Response {
    let changed = shared.lock().store.fail(&id, Utc::now());
    admin_refund(&shared, &id, changed)
}

#[derive(Deserialize)]
struct Blocked {
    blocked: bool,
}

async fn admin_block(State(shared): Sim, axum::Json(body): axum::Json<Blocked>) -> StatusCode {
    shared.lock().store.refunds_blocked = body.blocked;
    StatusCode::NO_CONTENT
}
