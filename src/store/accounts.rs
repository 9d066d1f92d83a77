//! Who may use the console, as records: sign-in attempts and the rate
//! limit over them, browser sessions, API tokens (expiring, revocable,
//! remembering their last use), and reviewers disabled and enabled as
//! people come and go.
//!
//! Takes digests, never secrets (the web layer hashes cookies and tokens),
//! and times from the caller. The rate limit's count and the attempt it
//! admits are one serialized step ([`Store::admit_login_attempt`]), so a
//! burst of parallel guesses cannot all read "under the limit" before any
//! of them is recorded. Administrative changes are [`Tx`] methods, so that
//! the change and its audit line land together. Fails with [`StoreError`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::db;
use super::reviewers::{Reviewer, reviewer_from};
use super::{Result, Store, StoreError, Tx, TxInner, on_pool, on_tx};

/// PostgreSQL advisory lock classes (the first key of the two-key
/// `pg_advisory_xact_lock`) that serialize sign-in attempts per address
/// and per peer. Two-key locks never collide with the one-key mailbox lease.
const LOGIN_ADDRESS_LOCK: i32 = 0x5246_0001;
const LOGIN_PEER_LOCK: i32 = 0x5246_0002;

/// One sign-in attempt, about to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt<'a> {
    /// The address typed (lowercased), whether or not it exists.
    pub email: &'a str,
    /// The peer address, when known.
    pub remote: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// How many failed sign-ins the rate limit allows since `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    pub per_address: i64,
    pub per_peer: i64,
    /// The start of the window failures are counted in.
    pub since: DateTime<Utc>,
}

/// An attempt the rate limit admitted: recorded as failed until
/// [`Tx::sign_in_succeeded`] says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmittedAttempt(i64);

/// A signed-in browser session, found by the hash of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub reviewer: Reviewer,
    /// The token every form of this session must echo.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A session to open: `id_hash` is the SHA-256 (hex) of the cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub reviewer_id: i64,
    pub csrf_token: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// A reviewer as `refundd reviewer list` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewerSummary {
    #[serde(flatten)]
    pub reviewer: Reviewer,
    /// When they last signed in to the console, if ever.
    pub last_login_at: Option<DateTime<Utc>>,
    /// API tokens neither revoked nor expired.
    pub active_tokens: i64,
    /// The latest use of any of their API tokens (to the minute).
    pub token_last_used_at: Option<DateTime<Utc>>,
}

/// One API token as listed. Its secret is never stored, so never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenInfo {
    pub label: String,
    pub created_at: DateTime<Utc>,
    /// `None` only for a token stored without one, which counts as expired.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its latest use, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiTokenInfo {
    /// Whether the token still works at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_some_and(|e| e > now)
    }
}

/// The reviewer a live API token belongs to, and when it was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    pub reviewer: Reviewer,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What disabling a reviewer ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccessEnded {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
    /// Cases they had claimed, back in the queue for anyone.
    pub claims_released: u64,
}

impl Store {
    /// Records `attempt` as failed and counts it with the failures before
    /// it, in one transaction that is serialized with every other attempt
    /// for the same address or from the same peer (SQLite: the write lock
    /// `BEGIN IMMEDIATE` takes; PostgreSQL: transaction advisory locks on
    /// the address and the peer). Over `limit` the transaction rolls back
    /// and the attempt is refused (`None`): its password must not be
    /// checked. Admitted attempts in flight count as failures, so at most
    /// `limit` passwords are ever being checked or have failed per window.
    pub async fn admit_login_attempt(
        &self,
        attempt: &LoginAttempt<'_>,
        limit: &LoginLimit,
    ) -> Result<Option<AdmittedAttempt>> {
        let mut tx = self.begin().await?;
        if let TxInner::Postgres(conn) = &mut tx.inner {
            // Always the address first, then the peer: one order, so two
            // attempts can never wait on each other in a cycle.
            let locks = [
                (LOGIN_ADDRESS_LOCK, Some(attempt.email)),
                (LOGIN_PEER_LOCK, attempt.remote),
            ];
            for (class, key) in locks {
                let Some(key) = key else { continue };
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(class)
                    .bind(key)
                    .execute(&mut **conn)
                    .await
                    .map_err(db("serialize sign-in attempts"))?;
            }
        }
        let id: i64 = on_tx!(tx, conn => {
            sqlx::query_scalar(
                "INSERT INTO login_attempts (email, remote, success, at)
                 VALUES ($1, $2, FALSE, $3) RETURNING id",
            )
            .bind(attempt.email)
            .bind(attempt.remote)
            .bind(attempt.at)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("record a sign-in attempt"))?;
        let (by_address, by_peer): (i64, i64) = on_tx!(tx, conn => {
            sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN email = $1 THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN remote = $2 THEN 1 ELSE 0 END), 0)
                 FROM login_attempts
                 WHERE NOT success AND at >= $3 AND (email = $1 OR remote = $2)",
            )
            .bind(attempt.email)
            .bind(attempt.remote)
            .bind(limit.since)
            .fetch_one(&mut *conn)
            .await
        })
        .map_err(db("count failed sign-ins"))?;
        if by_address > limit.per_address || by_peer > limit.per_peer {
            // A refused attempt is not recorded: a guesser hammering the
            // form does not grow the table, and cannot extend the window.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(AdmittedAttempt(id)))
    }

    /// The live session with this cookie hash: not expired at `now`, of a
    /// reviewer who is not disabled.
    pub async fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        type Row = (
            i64,
            String,
            String,
            String,
            bool,
            DateTime<Utc>,
            String,
            DateTime<Utc>,
        );
        let row: Option<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.id, r.email, r.password_hash, r.role, r.disabled, r.created_at,
                        s.csrf_token, s.expires_at
                 FROM reviewer_sessions s JOIN reviewers r ON r.id = s.reviewer_id
                 WHERE s.id_hash = $1 AND s.expires_at > $2 AND NOT r.disabled",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read a session"))?;
        row.map(
            |(id, email, hash, role, disabled, created, csrf, expires)| {
                Ok(Session {
                    reviewer: reviewer_from((id, email, hash, role, disabled, created))?,
                    csrf_token: csrf,
                    expires_at: expires,
                })
            },
        )
        .transpose()
    }

    /// The enabled reviewer a live API token hash belongs to: the token is
    /// neither revoked nor expired at `now`.
    pub async fn reviewer_by_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenHolder>> {
        type Row = (
            i64,
            String,
            String,
            String,
            bool,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        );
        let row: Option<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.id, r.email, r.password_hash, r.role, r.disabled, r.created_at,
                        t.last_used_at
                 FROM api_tokens t JOIN reviewers r ON r.id = t.reviewer_id
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2
                   AND NOT r.disabled",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
        })
        .map_err(db("read an API token"))?;
        row.map(|(id, email, hash, role, disabled, created, last_used_at)| {
            Ok(TokenHolder {
                reviewer: reviewer_from((id, email, hash, role, disabled, created))?,
                last_used_at,
            })
        })
        .transpose()
    }

    /// Notes that an API token was used at `at`.
    pub async fn touch_api_token(&self, token_hash: &str, at: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1")
                .bind(token_hash)
                .bind(at)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("note an API token's use"))?;
        Ok(())
    }

    /// A reviewer's API tokens, oldest first, live or not.
    pub async fn api_tokens(&self, reviewer_id: i64) -> Result<Vec<ApiTokenInfo>> {
        type Row = (
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT label, created_at, expires_at, last_used_at, revoked_at
                 FROM api_tokens WHERE reviewer_id = $1 ORDER BY created_at, token_hash",
            )
            .bind(reviewer_id)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list API tokens"))?;
        Ok(rows
            .into_iter()
            .map(
                |(label, created_at, expires_at, last_used_at, revoked_at)| ApiTokenInfo {
                    label,
                    created_at,
                    expires_at,
                    last_used_at,
                    revoked_at,
                },
            )
            .collect())
    }

    /// Every reviewer, by address, with their last sign-in and their
    /// tokens live at `now`.
    pub async fn reviewers(&self, now: DateTime<Utc>) -> Result<Vec<ReviewerSummary>> {
        type Row = (
            i64,
            String,
            String,
            String,
            bool,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            i64,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.id, r.email, r.password_hash, r.role, r.disabled, r.created_at,
                        r.last_login_at,
                        (SELECT COUNT(*) FROM api_tokens t
                          WHERE t.reviewer_id = r.id AND t.revoked_at IS NULL
                            AND t.expires_at > $1),
                        (SELECT MAX(t.last_used_at) FROM api_tokens t WHERE t.reviewer_id = r.id)
                 FROM reviewers r ORDER BY r.email",
            )
            .bind(now)
            .fetch_all(pool)
            .await
        })
        .map_err(db("list reviewers"))?;
        rows.into_iter()
            .map(
                |(id, email, hash, role, disabled, created, last_login_at, active, used)| {
                    Ok(ReviewerSummary {
                        reviewer: reviewer_from((id, email, hash, role, disabled, created))?,
                        last_login_at,
                        active_tokens: active,
                        token_last_used_at: used,
                    })
                },
            )
            .collect()
    }

    /// Ends a session (signing out); expired sessions of anyone go too.
    pub async fn delete_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM reviewer_sessions WHERE id_hash = $1 OR expires_at <= $2")
                .bind(id_hash)
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("end a session"))?;
        Ok(())
    }
}

impl Tx {
    /// An admitted attempt's password was right: it stops counting as a
    /// failure, and the reviewer's last sign-in is now.
    pub async fn sign_in_succeeded(
        &mut self,
        attempt: AdmittedAttempt,
        reviewer_id: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let marked = on_tx!(self, conn => {
            sqlx::query("UPDATE login_attempts SET success = TRUE WHERE id = $1")
                .bind(attempt.0)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("record a successful sign-in"))?;
        if marked != 1 {
            return Err(StoreError::NotFound {
                what: "sign-in attempt",
                id: attempt.0.to_string(),
            });
        }
        on_tx!(self, conn => {
            sqlx::query("UPDATE reviewers SET last_login_at = $2 WHERE id = $1")
                .bind(reviewer_id)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("record a reviewer's sign-in"))?;
        Ok(())
    }

    /// Opens a session for a reviewer.
    pub async fn create_session(
        &mut self,
        session: &NewSession<'_>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO reviewer_sessions (id_hash, reviewer_id, csrf_token, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(session.id_hash)
            .bind(session.reviewer_id)
            .bind(session.csrf_token)
            .bind(at)
            .bind(session.expires_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("open a session"))?;
        Ok(())
    }

    /// Stores an API token's hash for a reviewer, valid until `expires_at`.
    pub async fn create_api_token(
        &mut self,
        token_hash: &str,
        reviewer_id: i64,
        label: &str,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO api_tokens (token_hash, reviewer_id, label, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(reviewer_id)
            .bind(label)
            .bind(at)
            .bind(expires_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("store an API token"))?;
        Ok(())
    }

    /// Revokes a reviewer's tokens not revoked yet: those labelled `label`,
    /// or all of them. Returns how many.
    pub async fn revoke_api_tokens(
        &mut self,
        reviewer_id: i64,
        label: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $3
                 WHERE reviewer_id = $1 AND revoked_at IS NULL AND ($2 IS NULL OR label = $2)",
            )
            .bind(reviewer_id)
            .bind(label)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("revoke API tokens"))
    }

    /// Disables or enables a reviewer; `false` when they already were.
    /// A disabled reviewer's sessions and tokens are refused by every
    /// lookup; [`Tx::end_reviewer_access`] also ends them for good.
    pub async fn set_reviewer_disabled(
        &mut self,
        reviewer_id: i64,
        disabled: bool,
    ) -> Result<bool> {
        let changed = on_tx!(self, conn => {
            sqlx::query("UPDATE reviewers SET disabled = $2 WHERE id = $1 AND disabled <> $2")
                .bind(reviewer_id)
                .bind(disabled)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("disable or enable a reviewer"))?;
        Ok(changed == 1)
    }

    /// Ends every session of a reviewer, revokes every token, so that
    /// enabling them again later does not bring either back, and releases
    /// the cases they claimed: a reviewer who left must not hold cases
    /// that only they (or an admin taking over) could decide.
    pub async fn end_reviewer_access(
        &mut self,
        reviewer_id: i64,
        at: DateTime<Utc>,
    ) -> Result<AccessEnded> {
        let sessions_ended = on_tx!(self, conn => {
            sqlx::query("DELETE FROM reviewer_sessions WHERE reviewer_id = $1")
                .bind(reviewer_id)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db("end a reviewer's sessions"))?;
        let tokens_revoked = self.revoke_api_tokens(reviewer_id, None, at).await?;
        let claims_released = on_tx!(self, conn => {
            sqlx::query(
                "DELETE FROM case_claims
                 WHERE LOWER(reviewer) = (SELECT LOWER(email) FROM reviewers WHERE id = $1)",
            )
            .bind(reviewer_id)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("release a reviewer's claims"))?;
        Ok(AccessEnded {
            sessions_ended,
            claims_released,
            tokens_revoked,
        })
    }
}
