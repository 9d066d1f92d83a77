//! Who is asking: reviewer passwords (argon2id), browser sessions (a random
//! secret in an `HttpOnly; SameSite=Strict` cookie, stored as SHA-256 only,
//! expiring after `[web] session_ttl_minutes`), the CSRF token every form
//! echoes, bearer tokens for `/api` (stored as SHA-256 only; they expire,
//! can be revoked, and record their last use), and sign-in
//! rate limiting (`[web] max_failed_logins` per address, four times that
//! per peer, per 15 minutes; counting and recording an attempt is one
//! serialized step, and a refused attempt's password is never checked).
//!
//! Password hashing is slow on purpose; it runs on the blocking pool,
//! a few at a time ([`PasswordChecker`]), never on the async workers that
//! serve every other request.
//!
//! Gives the [`SignedIn`] and [`ApiUser`] extractors the handlers take and
//! the sign-in / sign-out pages. Never stores or logs a password, a cookie
//! secret or a token. Fails with [`WebError`]: 401 when nobody is signed
//! in, 403 on a missing CSRF token, 429 when sign-ins are rate limited.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use chrono::Duration;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use tokio::sync::Semaphore;

use super::{WebError, WebState};
use crate::store::{AuditAction, LoginAttempt, LoginLimit, NewSession, Reviewer};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "refundd_session";
/// The sign-in form's double-submit CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "refundd_login_csrf";
/// The window the sign-in rate limit counts failures in.
const RATE_WINDOW: Duration = Duration::minutes(15);
/// How many more failures one peer may have than one address.
const PEER_FACTOR: i64 = 4;
/// How precisely an API token's last use is recorded.
const TOKEN_USE_RESOLUTION: Duration = Duration::minutes(1);
/// Shortest password `refundd reviewer add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A hash checked when the address is unknown, so that an unknown address
/// costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a real password").expect("hashing works"));

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| WebError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// 32 random bytes, URL-safe base64: session secrets, CSRF tokens, API
/// tokens, CSP nonces.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex SHA-256: what is stored of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks passwords on the blocking pool, at most a few at a time: an
/// argon2 check takes tens of milliseconds of CPU and 19 MiB of memory, and
/// a burst of sign-ins must neither stall the async workers nor start a
/// thread per attempt. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
}

impl PasswordChecker {
    /// Allows `concurrent` checks at once (at least one).
    pub fn new(concurrent: usize) -> PasswordChecker {
        PasswordChecker {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    /// One check per core.
    pub fn per_core() -> PasswordChecker {
        PasswordChecker::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Whether `password` matches `hash`; with no hash (an unknown
    /// address) a dummy hash is checked, so that an unknown address costs
    /// the same time as a wrong password, and the answer is false.
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, WebError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            // The permit goes with the work: a caller that gives up does
            // not free a slot while its hash still runs.
            let _permit = permit;
            match hash {
                Some(hash) => verify_password(&hash, &password),
                None => {
                    verify_password(&DUMMY_HASH, &password);
                    false
                }
            }
        })
        .await
        .map_err(|e| WebError::Internal(format!("password check: {e}")))
    }
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in reviewer (browser session).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub reviewer: Reviewer,
    /// The token this session's forms carry.
    pub csrf: String,
    session_hash: String,
}

impl SignedIn {
    /// 403 unless `token` is this session's CSRF token.
    pub fn check_csrf(&self, token: Option<&str>) -> Result<(), WebError> {
        match token {
            Some(t) if same_token(t, &self.csrf) => Ok(()),
            _ => Err(WebError::Forbidden(
                "the form's security token is missing or stale; reload the page",
            )),
        }
    }

    /// The actor name events and the audit log use.
    pub fn actor(&self) -> String {
        format!("reviewer:{}", self.reviewer.email)
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let secret = cookie(&parts.headers, SESSION_COOKIE).ok_or(WebError::Unauthorized)?;
        let session_hash = digest(secret);
        let session = state
            .store()
            .session(&session_hash, state.now())
            .await?
            .ok_or(WebError::Unauthorized)?;
        Ok(SignedIn {
            reviewer: session.reviewer,
            csrf: session.csrf_token,
            session_hash,
        })
    }
}

/// A reviewer calling `/api` with `Authorization: Bearer TOKEN`: a token
/// neither revoked nor expired, of a reviewer who is not disabled.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub reviewer: Reviewer,
}

impl FromRequestParts<WebState> for ApiUser {
    type Rejection = super::ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, super::ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(WebError::Unauthorized)?;
        let token_hash = digest(token);
        let now = state.now();
        let holder = state
            .store()
            .reviewer_by_token(&token_hash, now)
            .await
            .map_err(WebError::from)?
            .ok_or(WebError::Unauthorized)?;
        // "Last used" is kept to the minute: a busy script does not turn
        // every API read into a database write.
        if holder
            .last_used_at
            .is_none_or(|last| now - last >= TOKEN_USE_RESOLUTION)
        {
            state
                .store()
                .touch_api_token(&token_hash, now)
                .await
                .map_err(WebError::from)?;
        }
        let reviewer = holder.reviewer;
        Ok(ApiUser { reviewer })
    }
}

/// The peer's IP address, when the server knows it.
#[derive(Debug, Clone)]
pub struct Remote(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        ))
    }
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie_attrs(state: &WebState, max_age_secs: i64) -> String {
    let secure = if state.settings().web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// `GET /login`: the sign-in form, with a fresh double-submit CSRF token.
pub async fn login_page(State(state): State<WebState>) -> Result<Response, WebError> {
    let token = new_secret();
    let page = state.views().page(
        "login.html",
        minijinja::context! { csrf => &token, error => Option::<String>::None },
        None,
    )?;
    let mut response = page.into_response();
    set_cookie(
        &mut response,
        format!("{LOGIN_CSRF_COOKIE}={token}; {}", cookie_attrs(&state, 600)),
    );
    Ok(response)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    csrf: Option<String>,
}

/// `POST /login`: checks the CSRF cookie, then the rate limit (which
/// records the attempt in the same step), then the password; opens a
/// session and goes to the queue.
pub async fn login(
    State(state): State<WebState>,
    Remote(remote): Remote,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_token(form.csrf.as_deref().unwrap_or_default(), expected) {
        return Err(WebError::Forbidden(
            "the sign-in form expired; reload the page",
        ));
    }
    let now = state.now();
    let email = form.email.trim().to_lowercase();
    let store = state.store();
    // One address is limited tightly; one peer (an office behind one NAT
    // address) more loosely, so a guesser cannot lock the whole team out.
    let per_address = state.settings().web.max_failed_logins;
    let limit = LoginLimit {
        per_address,
        per_peer: per_address * PEER_FACTOR,
        since: now - RATE_WINDOW,
    };
    let attempt = LoginAttempt {
        email: &email,
        remote: remote.as_deref(),
        at: now,
    };
    let Some(admitted) = store.admit_login_attempt(&attempt, &limit).await? else {
        return Err(WebError::TooManyAttempts);
    };
    let reviewer = store.reviewer_by_email(&email).await?;
    let verified = state
        .passwords()
        .verify(
            reviewer.as_ref().map(|r| r.password_hash.clone()),
            form.password,
        )
        .await?;
    let Some(reviewer) = reviewer.filter(|r| verified && !r.disabled) else {
        store
            .add_audit(
                &format!("reviewer:{email}"),
                AuditAction::LoginFailed,
                None,
                &serde_json::json!({ "remote": remote }),
                now,
            )
            .await?;
        let token = new_secret();
        let page = state.views().page(
            "login.html",
            minijinja::context! { csrf => &token, error => "Wrong address or password." },
            None,
        )?;
        let mut response = (axum::http::StatusCode::UNAUTHORIZED, page).into_response();
        set_cookie(
            &mut response,
            format!("{LOGIN_CSRF_COOKIE}={token}; {}", cookie_attrs(&state, 600)),
        );
        return Ok(response);
    };
    let secret = new_secret();
    let ttl = Duration::minutes(state.settings().web.session_ttl_minutes);
    let mut tx = store.begin().await?;
    tx.sign_in_succeeded(admitted, reviewer.id, now).await?;
    tx.create_session(
        &NewSession {
            id_hash: &digest(&secret),
            reviewer_id: reviewer.id,
            csrf_token: &new_secret(),
            expires_at: now + ttl,
        },
        now,
    )
    .await?;
    tx.add_audit(
        &format!("reviewer:{}", reviewer.email),
        AuditAction::Login,
        None,
        &serde_json::json!({ "remote": remote }),
        now,
    )
    .await?;
    tx.commit().await?;
    let mut response = Redirect::to("/").into_response();
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={secret}; {}",
            cookie_attrs(&state, ttl.num_seconds())
        ),
    );
    set_cookie(
        &mut response,
        format!("{LOGIN_CSRF_COOKIE}=; {}", cookie_attrs(&state, 0)),
    );
    Ok(response)
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(state): State<WebState>,
    signed: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    signed.check_csrf(form.csrf.as_deref())?;
    let now = state.now();
    state
        .store()
        .delete_session(&signed.session_hash, now)
        .await?;
    state
        .store()
        .add_audit(
            &signed.actor(),
            AuditAction::Logout,
            None,
            &serde_json::json!({}),
            now,
        )
        .await?;
    let mut response = Redirect::to("/login").into_response();
    set_cookie(
        &mut response,
        format!("{SESSION_COOKIE}=; {}", cookie_attrs(&state, 0)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterz"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        for (a, b, same) in [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("abc", "ab", false),
            ("", "", true),
        ] {
            assert_eq!(same_token(a, b), same, "{a} vs {b}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; refundd_session=s3cr3t; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("s3cr3t"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
