//! Reviewers as people come and go: accounts added, disabled and enabled
//! again, API tokens issued (expiring after `[web] token_ttl_days`) and
//! revoked. What `refundd reviewer …` runs.
//!
//! Every act writes one audit line in the transaction of the change it
//! records, naming the `actor` (`cli` for the command line). Disabling a
//! reviewer ends their sessions and revokes their tokens in that same
//! transaction: their next request is refused, and enabling them again
//! brings neither back. Never prints or stores a token's secret beyond
//! handing it to the caller once. Fails with [`WebError`]: an unknown
//! address or a bad password is [`WebError::Invalid`], an address already
//! taken [`WebError::Conflict`].

use chrono::{DateTime, Duration, Utc};

use super::WebError;
use super::auth::{MIN_PASSWORD_CHARS, digest, hash_password, new_secret};
use crate::store::{AccessEnded, AuditAction, Reviewer, ReviewerRole, Store, StoreError};

/// A token just issued: the secret (shown once) and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Which of a reviewer's tokens to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSelection<'a> {
    /// Every token.
    All,
    /// The tokens issued with this label.
    Label(&'a str),
}

/// The reviewer with this address, or [`WebError::Invalid`] naming it.
pub async fn reviewer(store: &Store, email: &str) -> Result<Reviewer, WebError> {
    store
        .reviewer_by_email(email)
        .await?
        .ok_or_else(|| WebError::Invalid(format!("there is no reviewer {}", email.trim())))
}

/// Creates a reviewer account (`refundd reviewer add`), audited.
pub async fn add_reviewer(
    store: &Store,
    email: &str,
    password: &str,
    role: ReviewerRole,
    now: DateTime<Utc>,
) -> Result<Reviewer, WebError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.chars().any(char::is_whitespace) {
        return Err(WebError::Invalid(format!(
            "`{email}` is not an email address"
        )));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WebError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let hash = hash_password(password)?;
    let reviewer = store
        .create_reviewer(&email, &hash, role, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => WebError::Conflict(format!("reviewer {email} exists")),
            other => WebError::Store(other),
        })?;
    store
        .add_audit(
            "cli",
            AuditAction::ReviewerAdded,
            None,
            &serde_json::json!({ "email": reviewer.email, "role": role.as_str() }),
            now,
        )
        .await?;
    Ok(reviewer)
}

/// Issues an API token for an enabled reviewer, valid for `ttl`; returns
/// the token (shown once, stored only as its digest).
pub async fn create_api_token(
    store: &Store,
    actor: &str,
    reviewer: &Reviewer,
    label: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<IssuedToken, WebError> {
    if reviewer.disabled {
        return Err(WebError::Invalid(format!(
            "{} is disabled; enable them first",
            reviewer.email
        )));
    }
    let token = format!("rfd_{}", new_secret());
    let expires_at = now + ttl;
    let mut tx = store.begin().await?;
    tx.create_api_token(&digest(&token), reviewer.id, label, now, expires_at)
        .await?;
    tx.add_audit(
        actor,
        AuditAction::TokenCreated,
        None,
        &serde_json::json!({
            "email": reviewer.email,
            "label": label,
            "expires_at": expires_at,
        }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedToken { token, expires_at })
}

/// Disables a reviewer: they can no longer sign in, their sessions and
/// API tokens end at once, and the cases they claimed go back to the queue. Audited even when they were disabled already
/// (whatever access was left is ended all the same).
pub async fn disable_reviewer(
    store: &Store,
    actor: &str,
    email: &str,
    now: DateTime<Utc>,
) -> Result<AccessEnded, WebError> {
    let reviewer = reviewer(store, email).await?;
    let mut tx = store.begin().await?;
    let changed = tx.set_reviewer_disabled(reviewer.id, true).await?;
    let ended = tx.end_reviewer_access(reviewer.id, now).await?;
    tx.add_audit(
        actor,
        AuditAction::ReviewerDisabled,
        None,
        &serde_json::json!({
            "email": reviewer.email,
            "was_disabled": !changed,
            "sessions_ended": ended.sessions_ended,
            "tokens_revoked": ended.tokens_revoked,
            "claims_released": ended.claims_released,
        }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(ended)
}

/// Enables a disabled reviewer again: they can sign in; tokens revoked on
/// disabling stay revoked. `false` (and no audit line) when they were not
/// disabled.
pub async fn enable_reviewer(
    store: &Store,
    actor: &str,
    email: &str,
    now: DateTime<Utc>,
) -> Result<bool, WebError> {
    let reviewer = reviewer(store, email).await?;
    let mut tx = store.begin().await?;
    if !tx.set_reviewer_disabled(reviewer.id, false).await? {
        return Ok(false);
    }
    tx.add_audit(
        actor,
        AuditAction::ReviewerEnabled,
        None,
        &serde_json::json!({ "email": reviewer.email }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes a reviewer's tokens (by label, or all); their next request with
/// one is refused. Returns how many were revoked; an audit line is written
/// when any was.
pub async fn revoke_tokens(
    store: &Store,
    actor: &str,
    email: &str,
    which: TokenSelection<'_>,
    now: DateTime<Utc>,
) -> Result<u64, WebError> {
    let reviewer = reviewer(store, email).await?;
    let label = match which {
        TokenSelection::All => None,
        TokenSelection::Label(label) => Some(label),
    };
    let mut tx = store.begin().await?;
    let revoked = tx.revoke_api_tokens(reviewer.id, label, now).await?;
    if revoked == 0 {
        return Ok(0);
    }
    tx.add_audit(
        actor,
        AuditAction::TokenRevoked,
        None,
        &serde_json::json!({ "email": reviewer.email, "label": label, "revoked": revoked }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(revoked)
}
