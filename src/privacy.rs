//! Keeping only what the law allows: raw mail of closed cases removed once
//! `[retention] raw_mail_days` have passed (the deadline sweep calls
//! [`expire_raw_mail`]), and a person's erasure request carried out on
//! demand ([`erase`], `refundd erase --sender EMAIL`).
//!
//! Takes the store, [`RetentionConfig`] or the person's address, and `now`;
//! gives counts and an [`ErasureReport`] for the operator. What stays and
//! what goes is the store's to do in one place (`store::privacy`): every
//! record of what was decided and paid stays (cases, decisions, traces,
//! amounts, events, actions, payments, refunds, credits, the audit log);
//! mail goes. This module decides only which messages a person sent: the
//! messages of their cases, and any other message whose `From:` is their
//! address (found through the search index, confirmed by reading the
//! mail). Messages from other people that merely mention the address are
//! not touched but listed, for a person to look at.
//!
//! Never logs the address. Fails with [`PrivacyError`]: a malformed
//! address, or the store's error (an open case or money in flight is a
//! conflict that names the cases).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use crate::parse;
use crate::parse::search::words;
use crate::store::{CaseId, Erasure, Store, StoreError};

/// `[retention]`: how long raw mail is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after which the raw bytes (and attachments) of messages of
    /// closed cases are removed; absent: kept for good.
    pub raw_mail_days: Option<u32>,
}

impl RetentionConfig {
    /// Raw mail received before this is removed (when its case is closed).
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.raw_mail_days
            .map(|days| now - Duration::days(i64::from(days)))
    }
}

/// Why an erasure could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("`{0}` is not an email address")]
    NotAnAddress(String),
    #[error("the erasure was not carried out")]
    Store(#[from] StoreError),
}

impl PrivacyError {
    /// Whether trying again later can help (a busy database; an open case
    /// once it is decided).
    pub fn is_transient(&self) -> bool {
        match self {
            PrivacyError::NotAnAddress(_) => false,
            PrivacyError::Store(e) => e.is_transient(),
        }
    }
}

/// Removes the raw bytes of closed cases' mail older than the retention
/// period (nothing when none is configured); returns how many messages.
pub async fn expire_raw_mail(
    store: &Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    match config.cutoff(now) {
        Some(cutoff) => store.remove_raw_mail_before(cutoff, now).await,
        None => Ok(0),
    }
}

/// What `refundd erase` did (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    pub address: String,
    pub dry_run: bool,
    #[serde(flatten)]
    pub erased: Erasure,
    /// Cases of other people whose mail mentions the address: not changed.
    pub mentioned_in: Vec<CaseId>,
}

/// Erases the person writing from `address` (see the module docs); the
/// audit line names `actor`. With `dry_run`, reports without changing.
pub async fn erase(
    store: &Store,
    address: &str,
    actor: &str,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<ErasureReport, PrivacyError> {
    let address = address.trim().to_lowercase();
    let valid = address
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !address.contains(char::is_whitespace);
    if !valid {
        return Err(PrivacyError::NotAnAddress(address));
    }
    let terms: Vec<String> = words(&address).collect();
    let mut sent = Vec::new();
    let mut mentioned = Vec::new();
    for (id, raw) in store.messages_with_words(&terms).await? {
        let from = parse::parse(&raw)
            .ok()
            .and_then(|p| p.from)
            .map(|f| f.address);
        if from.as_deref() == Some(address.as_str()) {
            sent.push(id);
        } else if String::from_utf8_lossy(&raw)
            .to_lowercase()
            .contains(&address)
        {
            mentioned.push(id);
        }
    }
    let pseudonym = format!(
        "erased-{}@erased.invalid",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let erased = store
        .erase_person(&address, &sent, &pseudonym, actor, now, dry_run)
        .await?;
    let mut mentioned_in = Vec::new();
    for id in mentioned {
        if let Some(case) = store.message(id).await?.and_then(|m| m.case_id)
            && !erased.cases.contains(&case)
            && !mentioned_in.contains(&case)
        {
            mentioned_in.push(case);
        }
    }
    Ok(ErasureReport {
        address,
        dry_run,
        erased,
        mentioned_in,
    })
}

/// The report for the operator's terminal.
pub fn to_text(report: &ErasureReport) -> String {
    let e = &report.erased;
    let tags = |cases: &[CaseId]| {
        cases
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} as {}{}",
        if report.dry_run {
            "Would erase"
        } else {
            "Erased"
        },
        report.address,
        e.pseudonym,
        if report.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  cases: {} — sender replaced, subject and text removed; decisions, traces and amounts kept",
        if e.cases.is_empty() {
            "none".to_owned()
        } else {
            tags(&e.cases)
        }
    );
    let _ = writeln!(
        out,
        "  messages: {} — raw mail, attachments and search words removed",
        e.messages
    );
    let _ = writeln!(
        out,
        "  replies: {} — text removed, address replaced{}",
        e.replies + e.held_replies,
        if e.unsent_replies > 0 {
            format!("; {} not sent yet, now never sent", e.unsent_replies)
        } else {
            String::new()
        }
    );
    if !e.wallets.is_empty() {
        let _ = writeln!(
            out,
            "  ledger: address of wallet {} replaced (the app must erase it too, or the next ledger import brings it back)",
            e.wallets.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  sign-in attempts deleted: {}; webhook deliveries: {}; other records naming the address or holding notes: {}",
        e.login_attempts, e.webhook_deliveries, e.other_records
    );
    let refunded: Vec<String> = e
        .kept_refunded
        .iter()
        .map(|(c, a)| crate::reply::format_money(*a, c))
        .collect();
    let _ = writeln!(
        out,
        "Kept as the law requires: {} action(s) (cash refunds, wallet credits){}, payments, refunds and the audit log.",
        e.kept_actions,
        if refunded.is_empty() {
            String::new()
        } else {
            format!("; refunded {}", refunded.join(", "))
        }
    );
    if !report.mentioned_in.is_empty() {
        let _ = writeln!(
            out,
            "Not changed: other people's mail that mentions the address, in {}. Look at it.",
            tags(&report.mentioned_in)
        );
    }
    if !report.dry_run {
        let _ = writeln!(out, "The audit log has one line for this erasure.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_off_until_configured() {
        let now = DateTime::parse_from_rfc3339("2026-06-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(RetentionConfig::default().cutoff(now), None);
        let config = RetentionConfig {
            raw_mail_days: Some(30),
        };
        assert_eq!(
            config.cutoff(now).unwrap().to_rfc3339(),
            "2026-05-11T12:00:00+00:00"
        );
    }
}
