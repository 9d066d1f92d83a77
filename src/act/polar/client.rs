//! The Polar HTTP client: one method per call refundd makes.
//!
//! Takes: a [`PolarClientConfig`] (base URL, organization access token,
//! timeout, retries, `Polar-Version`). Gives: typed resources; lists are
//! followed across all pages. Retries reads on network errors and 5xx with
//! capped exponential backoff and jitter, and any call on 429 after
//! `Retry-After`. Never retries `POST /v1/refunds/` after it may have reached
//! Polar (Polar has no idempotency keys): a timeout, lost response or 5xx
//! there is [`PolarError::Unclear`], and the caller reconciles with
//! [`PolarClient::list_refunds_for_order`]. Never logs or prints the token.

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::error::{Call, PolarError, classify};
use super::model::{CreateRefund, Customer, Dispute, DisputeQuery, Order, Page, Refund};

/// The API version this client is written against.
pub const DEFAULT_POLAR_VERSION: &str = "2026-04";

/// Pages a list may have before the client stops following it (a guard
/// against a server that never says "last page").
const MAX_PAGES: u64 = 1_000;

pub use crate::retry::Backoff;

/// How to reach Polar. `Debug` redacts the token.
#[derive(Clone)]
pub struct PolarClientConfig {
    /// `https://api.polar.sh`, `https://sandbox-api.polar.sh` or a test server.
    pub base_url: String,
    /// Organization access token (`polar_oat_…`). Secret.
    pub token: String,
    /// Per-request timeout (connect to last body byte).
    pub timeout: Duration,
    /// Retries after the first attempt (reads; 429 for any call).
    pub max_retries: u32,
    /// Sent as `Polar-Version` when set.
    pub polar_version: Option<String>,
    /// Waits between retries of reads.
    pub backoff: Backoff,
    /// The longest `Retry-After` the client waits out itself; longer ones
    /// are returned as [`PolarError::RateLimited`] at once.
    pub max_retry_after: Duration,
    /// Items per page when following lists (1 to 100).
    pub page_size: u32,
}

impl PolarClientConfig {
    /// A configuration with production defaults: 10 s timeout, 3 retries,
    /// `Polar-Version: 2026-04`, backoff 200 ms to 5 s, `Retry-After` up to
    /// 60 s, pages of 100.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: token.into(),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            polar_version: Some(DEFAULT_POLAR_VERSION.to_owned()),
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(5),
            },
            max_retry_after: Duration::from_secs(60),
            page_size: 100,
        }
    }
}

impl fmt::Debug for PolarClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolarClientConfig")
            .field("base_url", &self.base_url)
            .field("token", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("polar_version", &self.polar_version)
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// A Polar API client. Cheap to clone; `Debug` redacts the token.
#[derive(Clone)]
pub struct PolarClient {
    http: reqwest::Client,
    base_url: Url,
    auth: HeaderValue,
    config: PolarClientConfig,
}

impl fmt::Debug for PolarClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolarClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PolarClient {
    /// Builds a client. Installs the rustls `ring` provider if none is
    /// installed. Fails with [`PolarError::Config`] on a bad URL, token or
    /// page size.
    pub fn new(config: PolarClientConfig) -> Result<Self, PolarError> {
        super::install_crypto_provider();
        let base_url =
            Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| PolarError::Config {
                reason: format!("base_url: {e}"),
            })?;
        if base_url.cannot_be_a_base() {
            return Err(PolarError::Config {
                reason: "base_url cannot be a base".into(),
            });
        }
        if !(1..=100).contains(&config.page_size) {
            return Err(PolarError::Config {
                reason: format!("page_size {} is not within 1..=100", config.page_size),
            });
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|_| {
                PolarError::Config {
                    reason: "token is not a valid header value".into(),
                }
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        if let Some(version) = &config.polar_version {
            let value = HeaderValue::from_str(version).map_err(|_| PolarError::Config {
                reason: "polar_version is not a valid header value".into(),
            })?;
            headers.insert("Polar-Version", value);
        }
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .default_headers(headers)
            .user_agent(concat!("refundd/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| PolarError::Config {
                reason: format!("http client: {e}"),
            })?;
        Ok(Self {
            http,
            base_url,
            auth,
            config,
        })
    }

    /// `GET /v1/orders/{id}`. Unknown or malformed ids are
    /// [`PolarError::UnknownOrder`].
    pub async fn get_order(&self, id: &str) -> Result<Order, PolarError> {
        let url = self.url(&["v1", "orders", id])?;
        let text = self.execute(Call::GetOrder, Method::GET, url, None).await?;
        decode("order", &text)
    }

    /// `GET /v1/customers/?email=`: Polar matches exactly, ignoring case.
    pub async fn find_customers_by_email(&self, email: &str) -> Result<Vec<Customer>, PolarError> {
        self.list_all(
            "customers",
            &["v1", "customers", ""],
            &[("email", email.to_owned())],
        )
        .await
    }

    /// `GET /v1/orders/?customer_id=`, every page.
    pub async fn list_orders_by_customer(
        &self,
        customer_id: &str,
    ) -> Result<Vec<Order>, PolarError> {
        self.list_all(
            "orders",
            &["v1", "orders", ""],
            &[("customer_id", customer_id.to_owned())],
        )
        .await
    }

    /// `POST /v1/refunds/`. Sent once: a timeout, lost or unreadable
    /// response, or 5xx is [`PolarError::Unclear`] (the refund may exist); a
    /// connection that could not be made is [`PolarError::Transient`]
    /// (nothing was sent); only a 429, which Polar answers before doing
    /// anything, is retried here.
    pub async fn create_refund(&self, request: &CreateRefund) -> Result<Refund, PolarError> {
        let url = self.url(&["v1", "refunds", ""])?;
        let body = serde_json::to_vec(request).map_err(|source| PolarError::InvalidResponse {
            what: "refund request",
            source,
        })?;
        let text = self
            .execute(Call::CreateRefund, Method::POST, url, Some(body))
            .await?;
        // The refund exists if Polar said 2xx, even when we cannot read it.
        serde_json::from_str(&text).map_err(|e| PolarError::Unclear {
            reason: format!("unreadable refund response: {e}"),
        })
    }

    /// `GET /v1/refunds/?order_id=`, every page, any status.
    pub async fn list_refunds_for_order(&self, order_id: &str) -> Result<Vec<Refund>, PolarError> {
        self.list_all(
            "refunds",
            &["v1", "refunds", ""],
            &[("order_id", order_id.to_owned())],
        )
        .await
    }

    /// `GET /v1/disputes/` with the query's filters, every page.
    pub async fn list_disputes(&self, query: &DisputeQuery) -> Result<Vec<Dispute>, PolarError> {
        let mut filters = Vec::new();
        if let Some(order_id) = &query.order_id {
            filters.push(("order_id", order_id.clone()));
        }
        for status in &query.statuses {
            filters.push(("status", status.as_str().to_owned()));
        }
        self.list_all("disputes", &["v1", "disputes", ""], &filters)
            .await
    }

    /// The base URL with `segments` appended, each percent-encoded; a final
    /// empty segment gives the trailing slash Polar's collection paths have.
    fn url(&self, segments: &[&str]) -> Result<Url, PolarError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| PolarError::Config {
                reason: "base_url cannot be a base".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn list_all<T: DeserializeOwned>(
        &self,
        what: &'static str,
        segments: &[&str],
        filters: &[(&str, String)],
    ) -> Result<Vec<T>, PolarError> {
        let mut items = Vec::new();
        let mut page = 1u64;
        loop {
            let mut url = self.url(segments)?;
            {
                let mut query = url.query_pairs_mut();
                for (key, value) in filters {
                    query.append_pair(key, value);
                }
                query.append_pair("page", &page.to_string());
                query.append_pair("limit", &self.config.page_size.to_string());
            }
            let text = self.execute(Call::List, Method::GET, url, None).await?;
            let batch: Page<T> = decode(what, &text)?;
            let count = batch.items.len();
            items.extend(batch.items);
            if count == 0 || page >= batch.pagination.max_page || page >= MAX_PAGES {
                return Ok(items);
            }
            page += 1;
        }
    }

    /// Sends one call with the retry rules in the module doc; returns the
    /// body of a 2xx response.
    async fn execute(
        &self,
        call: Call,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<String, PolarError> {
        let is_refund_post = call == Call::CreateRefund;
        let mut attempt = 0u32;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .timeout(self.config.timeout);
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let retries_left = attempt < self.config.max_retries;
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let reason = describe(&err);
                    if is_refund_post {
                        // A failed connect never reached Polar; anything later may have.
                        return Err(if err.is_connect() {
                            PolarError::Transient { reason }
                        } else {
                            PolarError::Unclear { reason }
                        });
                    }
                    if retries_left {
                        tokio::time::sleep(self.config.backoff.delay(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(PolarError::Transient { reason });
                }
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(response.headers());
                let wait = retry_after.unwrap_or_else(|| self.config.backoff.delay(attempt));
                if retries_left && wait <= self.config.max_retry_after {
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "polar rate limited"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                return Err(PolarError::RateLimited { retry_after });
            }
            let text = match response.text().await {
                Ok(text) => text,
                Err(err) => {
                    let reason = format!("reading {status} response: {}", describe(&err));
                    if is_refund_post {
                        return Err(PolarError::Unclear { reason });
                    }
                    if retries_left {
                        tokio::time::sleep(self.config.backoff.delay(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(PolarError::Transient { reason });
                }
            };
            if status.is_success() {
                return Ok(text);
            }
            if status.is_server_error() {
                let reason = format!("HTTP {status}");
                if is_refund_post {
                    return Err(PolarError::Unclear { reason });
                }
                if retries_left {
                    tracing::debug!(
                        status = status.as_u16(),
                        attempt,
                        "polar server error, retrying"
                    );
                    tokio::time::sleep(self.config.backoff.delay(attempt)).await;
                    attempt += 1;
                    continue;
                }
                return Err(PolarError::Transient { reason });
            }
            return Err(classify(call, status.as_u16(), &text));
        }
    }
}

/// A transport error as text, without the URL's query (which may hold an
/// email address) and never with headers.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut root = String::new();
    while let Some(inner) = source {
        root = inner.to_string();
        source = inner.source();
    }
    if root.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {root}")
    }
}

/// `Retry-After` in seconds (Polar sends seconds; HTTP dates are not used).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn decode<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, PolarError> {
    serde_json::from_str(text).map_err(|source| PolarError::InvalidResponse { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_doubles_and_stays_under_the_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1_000),
        };
        let cases = [
            (0, 50, 100),
            (1, 100, 200),
            (2, 200, 400),
            (3, 400, 800),
            (4, 500, 1_000),
            (30, 500, 1_000),
        ];
        for (attempt, low, high) in cases {
            for _ in 0..20 {
                let ms = backoff.delay(attempt).as_millis() as u64;
                assert!((low..=high).contains(&ms), "attempt {attempt}: {ms} ms");
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates() {
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            (" 30 ", Some(Duration::from_secs(30))),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(retry_after(&headers), expected, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn urls_keep_trailing_slashes_and_encode_ids() {
        let client = PolarClient::new(PolarClientConfig::new("http://127.0.0.1:9/", "t")).unwrap();
        assert_eq!(
            client.url(&["v1", "refunds", ""]).unwrap().as_str(),
            "http://127.0.0.1:9/v1/refunds/"
        );
        assert_eq!(
            client.url(&["v1", "orders", "a/b?c"]).unwrap().as_str(),
            "http://127.0.0.1:9/v1/orders/a%2Fb%3Fc"
        );
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = "polar_oat_SECRETsecret123";
        let config = PolarClientConfig::new("http://127.0.0.1:9", token);
        let client = PolarClient::new(config.clone()).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{client:#?}"),
        ] {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}
