//! What replay reads: stored engine decisions with their messages, in
//! keyset-paginated batches; the case threads follow-ups were decided
//! with; the ledger of many wallets at once, with what refundd itself did
//! to them (which case wrote a wallet credit, every cash refund it
//! approved and how that went); the orders cited references name; and
//! the cases a person decided last.
//!
//! READ ONLY: nothing here writes, takes a write lock or calls the clock.
//! Sets of ids and addresses are read in chunks of [`CHUNK`] with the
//! same SQL text on both databases (`IN ($1, …, $n)`). Fails with
//! [`StoreError`].

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use std::collections::HashMap;

use super::decisions::DecisionBasis;
use super::error::{corrupt, db};
use super::ledger::{
    ChargebackTuple, CreditTuple, GenerationTuple, OrderTuple, WalletTuple, chargeback_from,
    credit_from, generation_from, order_from, wallet_from,
};
use super::records::{ActionStatus, Actor, CaseId};
use super::{Result, Store, StoreError, on_pool};
use crate::domain::{Decision, OrderRef, PendingRefund, Refund, Verification, WalletFacts};

/// How many ids or addresses one query reads at most.
pub const CHUNK: usize = 500;

/// Which stored engine decisions a replay reads: by the receipt time of
/// their message (`since` inclusive, `until` exclusive) and by case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayScope {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub case: Option<CaseId>,
}

/// One stored engine decision and the message it decided.
#[derive(Debug, Clone, PartialEq)]
pub struct DecidedMessage {
    /// The decision's row id (the keyset cursor).
    pub decision_id: i64,
    /// The message's row id.
    pub message: i64,
    /// The message's `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// Where the message came from (`maildir:…`, `imap:…`).
    pub source: String,
    pub received_at: DateTime<Utc>,
    /// The stored bytes; `None` for a `screen` decision (not replayed).
    pub raw: Option<Vec<u8>>,
    pub case_id: CaseId,
    pub basis: DecisionBasis,
    pub decision: Decision,
    pub fingerprint: String,
    pub shadow: bool,
    pub decided_at: DateTime<Utc>,
    /// refundd's own sender verification of the message, as made when it
    /// was decided (`[sender_auth] mode` `verify` or `either`).
    pub verification: Option<Verification>,
}

/// A message of a case and the engine decision that attached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMessage {
    pub case_id: CaseId,
    /// The message's row id.
    pub message: i64,
    /// The engine decision on it (`None` for messages stored before
    /// decisions were recorded).
    pub decision_id: Option<i64>,
    pub received_at: DateTime<Utc>,
    pub raw: Vec<u8>,
}

/// A wallet as the ledger holds it now, with what refundd did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletHistory {
    /// As [`Store::wallet_facts_by_email`] reads it now.
    pub facts: WalletFacts,
    /// Wallet credits refundd wrote, by credit id, with the case that
    /// granted each (`wallet_credits.case_id`).
    pub credit_cases: Vec<(String, CaseId)>,
    /// Every cash refund refundd approved on the wallet's orders, any
    /// status, oldest first.
    pub cash_refunds: Vec<CashRefundRecord>,
}

/// A cash refund refundd approved (an `actions` row) and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashRefundRecord {
    pub case_id: CaseId,
    pub order_id: String,
    /// Minor units, excluding tax.
    pub amount: i64,
    /// Where it stands now.
    pub status: ActionStatus,
    /// When it was approved (the action was recorded).
    pub approved_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// The Polar refund ids it produced (the action's detail once done,
    /// the payment's refund id): the ledger's refund rows it became.
    pub refund_ids: Vec<String>,
}

/// An order a cited reference may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMatch {
    pub id: String,
    pub wallet_id: String,
    pub invoice_number: Option<String>,
    pub receipt_number: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A case whose last status change was a reviewer's, with the decision
/// the case holds (the person's).
#[derive(Debug, Clone, PartialEq)]
pub struct PeopleDecision {
    pub case_id: CaseId,
    /// The reviewer's address.
    pub reviewer: String,
    pub decision: Decision,
}

type DecidedTuple = (
    i64,
    i64,
    Option<String>,
    String,
    DateTime<Utc>,
    Option<Vec<u8>>,
    i64,
    String,
    Json<Decision>,
    String,
    bool,
    DateTime<Utc>,
    Option<Json<Verification>>,
    i32,
);

type ThreadTuple = (i64, i64, Option<i64>, DateTime<Utc>, Vec<u8>, i32);

/// `$from, $from+1, …` for `n` values.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The case-insensitive key of an address, as the store compares them.
pub fn address_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Store {
    /// How many engine decisions `scope` holds (the replay's total).
    pub async fn count_replay_decisions(&self, scope: &ReplayScope) -> Result<i64> {
        on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM engine_decisions d JOIN messages m ON m.id = d.message_id
                 WHERE ($1 IS NULL OR m.received_at >= $1) AND ($2 IS NULL OR m.received_at < $2)
                   AND ($3 IS NULL OR d.case_id = $3)",
            )
            .bind(scope.since)
            .bind(scope.until)
            .bind(scope.case.map(|c| c.0))
            .fetch_one(pool)
            .await
        })
        .map_err(db("count decisions to replay"))
    }

    /// The next `limit` engine decisions of `scope` after decision
    /// `after`, in decision order, each with its message (messages and
    /// decisions in one query; a `screen` decision's bytes are not read).
    pub async fn replay_batch(
        &self,
        scope: &ReplayScope,
        after: i64,
        limit: i64,
    ) -> Result<Vec<DecidedMessage>> {
        let rows: Vec<DecidedTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT d.id, d.message_id, m.message_id, m.source, m.received_at,
                        CASE WHEN d.basis = 'screen' THEN NULL ELSE m.raw END,
                        d.case_id, d.basis, d.decision, d.fingerprint, d.shadow, d.decided_at,
                        d.verification, CASE WHEN d.basis = 'screen' THEN 0 ELSE m.raw_parts END
                 FROM engine_decisions d JOIN messages m ON m.id = d.message_id
                 WHERE d.id > $1
                   AND ($2 IS NULL OR m.received_at >= $2) AND ($3 IS NULL OR m.received_at < $3)
                   AND ($4 IS NULL OR d.case_id = $4)
                 ORDER BY d.id LIMIT $5",
            )
            .bind(after)
            .bind(scope.since)
            .bind(scope.until)
            .bind(scope.case.map(|c| c.0))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db("read decisions to replay"))?;
        let mut decided = Vec::with_capacity(rows.len());
        for t in rows {
            decided.push({
                let (
                    decision_id,
                    message,
                    message_id,
                    source,
                    received_at,
                    raw,
                    case_id,
                    basis,
                    decision,
                    fingerprint,
                    shadow,
                    decided_at,
                    verification,
                    raw_parts,
                ) = t;
                let raw = match raw {
                    Some(raw) => Some(self.whole_raw(message, raw, raw_parts).await?),
                    None => None,
                };
                DecidedMessage {
                    decision_id,
                    message,
                    message_id,
                    source,
                    received_at,
                    raw,
                    case_id: CaseId(case_id),
                    basis: basis.parse().map_err(corrupt("decision basis"))?,
                    decision: decision.0,
                    fingerprint,
                    shadow,
                    decided_at,
                    verification: verification.map(|v| v.0),
                }
            });
        }
        Ok(decided)
    }

    /// Every message of these cases, by case and message id, each with
    /// the engine decision that attached it.
    pub async fn case_threads(&self, cases: &[CaseId]) -> Result<Vec<ThreadMessage>> {
        let mut out = Vec::new();
        for chunk in cases.chunks(CHUNK) {
            let sql = format!(
                "SELECT m.case_id, m.id,
                        (SELECT MIN(d.id) FROM engine_decisions d WHERE d.message_id = m.id),
                        m.received_at, m.raw, m.raw_parts
                 FROM messages m WHERE m.case_id IN ({})
                 ORDER BY m.case_id, m.id",
                placeholders(1, chunk.len())
            );
            let rows: Vec<ThreadTuple> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                for case in chunk {
                    query = query.bind(case.0);
                }
                query.fetch_all(pool).await
            })
            .map_err(db("read case threads"))?;
            for (case_id, message, decision_id, received_at, raw, parts) in rows {
                out.push(ThreadMessage {
                    case_id: CaseId(case_id),
                    message,
                    decision_id,
                    received_at,
                    raw: self.whole_raw(message, raw, parts).await?,
                });
            }
        }
        Ok(out)
    }

    /// The wallets of these sender addresses (keyed by [`address_key`]),
    /// each read as [`Store::wallet_facts_by_email`] reads one — the same
    /// choice among several wallets of one address, the same order of
    /// rows — with refundd's credits and cash refunds on it.
    pub async fn wallet_histories(
        &self,
        emails: &[String],
    ) -> Result<HashMap<String, WalletHistory>> {
        let mut keys: Vec<String> = emails.iter().map(|e| address_key(e)).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut chosen: HashMap<String, crate::domain::Wallet> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, email, status, created_at FROM wallets
                 WHERE lower(email) IN ({})
                 ORDER BY CASE status WHEN 'active' THEN 0 ELSE 1 END, created_at DESC, id",
                placeholders(1, chunk.len())
            );
            let rows: Vec<WalletTuple> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                for key in chunk {
                    query = query.bind(key);
                }
                query.fetch_all(pool).await
            })
            .map_err(db("read wallets by address"))?;
            for row in rows {
                let wallet = wallet_from(row)?;
                chosen.entry(address_key(&wallet.email)).or_insert(wallet);
            }
        }
        let mut by_id: HashMap<String, WalletHistory> = chosen
            .into_values()
            .map(|wallet| {
                let id = wallet.id.clone();
                let facts = WalletFacts {
                    wallet,
                    orders: vec![],
                    generations: vec![],
                    credits: vec![],
                    refunds: vec![],
                    chargebacks: vec![],
                    pending_refunds: vec![],
                };
                (
                    id,
                    WalletHistory {
                        facts,
                        credit_cases: vec![],
                        cash_refunds: vec![],
                    },
                )
            })
            .collect();
        let ids: Vec<String> = {
            let mut ids: Vec<String> = by_id.keys().cloned().collect();
            ids.sort_unstable();
            ids
        };
        for chunk in ids.chunks(CHUNK) {
            self.fill_wallets(chunk, &mut by_id).await?;
        }
        Ok(by_id
            .into_values()
            .map(|h| (address_key(&h.facts.wallet.email), h))
            .collect())
    }

    async fn fill_wallets(
        &self,
        ids: &[String],
        by_id: &mut HashMap<String, WalletHistory>,
    ) -> Result<()> {
        let list = placeholders(1, ids.len());
        let missing = |what: &'static str| {
            move |wallet: &str| StoreError::Corrupt {
                what,
                reason: format!("a row names wallet {wallet}, which was not read"),
            }
        };
        let sql = format!(
            "SELECT id, wallet_id, product, credits, amount, tax_amount, currency,
                    invoice_number, receipt_number, created_at
             FROM orders WHERE wallet_id IN ({list}) ORDER BY created_at, id"
        );
        let orders: Vec<OrderTuple> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })
        .map_err(db("read wallets' orders"))?;
        for row in orders {
            let order = order_from(row);
            by_id
                .get_mut(&order.wallet_id)
                .ok_or_else(|| missing("order")(&order.wallet_id))?
                .facts
                .orders
                .push(order);
        }

        let sql = format!(
            "SELECT id, wallet_id, order_id, credits, status, style, refunded, refunded_at,
                    created_at
             FROM generations WHERE wallet_id IN ({list}) ORDER BY created_at, id"
        );
        let generations: Vec<GenerationTuple> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })
        .map_err(db("read wallets' generations"))?;
        for row in generations {
            let generation = generation_from(row)?;
            by_id
                .get_mut(&generation.wallet_id)
                .ok_or_else(|| missing("generation")(&generation.wallet_id))?
                .facts
                .generations
                .push(generation);
        }

        let sql = format!(
            "SELECT id, wallet_id, credits, reason, generation_id, created_at, case_id
             FROM wallet_credits WHERE wallet_id IN ({list}) ORDER BY created_at, id"
        );
        type CreditCaseTuple = (
            String,
            String,
            i64,
            String,
            Option<String>,
            DateTime<Utc>,
            Option<i64>,
        );
        let credits: Vec<CreditCaseTuple> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })
        .map_err(db("read wallets' credits"))?;
        for (id, wallet_id, credits, reason, generation_id, created_at, case_id) in credits {
            let tuple: CreditTuple = (id, wallet_id, credits, reason, generation_id, created_at);
            let credit = credit_from(tuple)?;
            let history = by_id
                .get_mut(&credit.wallet_id)
                .ok_or_else(|| missing("wallet credit")(&credit.wallet_id))?;
            if let Some(case) = case_id {
                history.credit_cases.push((credit.id.clone(), CaseId(case)));
            }
            history.facts.credits.push(credit);
        }

        let sql = format!(
            "SELECT o.wallet_id, r.id, r.order_id, r.amount, r.created_at
             FROM refunds r JOIN orders o ON o.id = r.order_id
             WHERE o.wallet_id IN ({list}) ORDER BY r.created_at, r.id"
        );
        let refunds: Vec<(String, String, String, i64, DateTime<Utc>)> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })
        .map_err(db("read wallets' refunds"))?;
        for (wallet_id, id, order_id, amount, created_at) in refunds {
            by_id
                .get_mut(&wallet_id)
                .ok_or_else(|| missing("refund")(&wallet_id))?
                .facts
                .refunds
                .push(Refund {
                    id,
                    order_id,
                    amount,
                    created_at,
                });
        }

        let sql = format!(
            "SELECT o.wallet_id, c.id, c.order_id, c.status, c.created_at
             FROM chargebacks c JOIN orders o ON o.id = c.order_id
             WHERE o.wallet_id IN ({list}) ORDER BY c.created_at, c.id"
        );
        let chargebacks: Vec<(String, String, String, String, DateTime<Utc>)> =
            on_pool!(self, pool => {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                for id in ids {
                    query = query.bind(id);
                }
                query.fetch_all(pool).await
            })
            .map_err(db("read wallets' chargebacks"))?;
        for (wallet_id, id, order_id, status, created_at) in chargebacks {
            let tuple: ChargebackTuple = (id, order_id, status, created_at);
            by_id
                .get_mut(&wallet_id)
                .ok_or_else(|| missing("chargeback")(&wallet_id))?
                .facts
                .chargebacks
                .push(chargeback_from(tuple)?);
        }

        let sql = format!(
            "SELECT o.wallet_id, a.case_id, a.order_id, a.amount, a.status, a.created_at,
                    a.updated_at, a.detail, p.polar_refund_id
             FROM actions a JOIN orders o ON o.id = a.order_id
             LEFT JOIN payments p ON p.action_id = a.id
             WHERE o.wallet_id IN ({list}) AND a.kind = 'cash_refund'
             ORDER BY a.created_at, a.id"
        );
        type ActionTuple = (
            String,
            i64,
            String,
            Option<i64>,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<String>,
            Option<String>,
        );
        let actions: Vec<ActionTuple> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })
        .map_err(db("read wallets' cash refunds"))?;
        for (
            wallet_id,
            case_id,
            order_id,
            amount,
            status,
            approved_at,
            updated_at,
            detail,
            polar,
        ) in actions
        {
            let status: ActionStatus = status.parse().map_err(corrupt("action status"))?;
            let amount = amount.ok_or_else(|| StoreError::Corrupt {
                what: "action",
                reason: format!("a cash refund of case R-{case_id} has no amount"),
            })?;
            // A done action's detail is Polar's refund id; otherwise it
            // says why (and names no refund row).
            let mut refund_ids: Vec<String> = polar.into_iter().collect();
            if status == ActionStatus::Done
                && let Some(detail) = detail
                && !refund_ids.contains(&detail)
            {
                refund_ids.push(detail);
            }
            let history = by_id
                .get_mut(&wallet_id)
                .ok_or_else(|| missing("cash refund")(&wallet_id))?;
            if status == ActionStatus::Pending {
                history.facts.pending_refunds.push(PendingRefund {
                    case: case_id,
                    order_id: order_id.clone(),
                    amount,
                    approved_at,
                });
            }
            history.cash_refunds.push(CashRefundRecord {
                case_id: CaseId(case_id),
                order_id,
                amount,
                status,
                approved_at,
                updated_at,
                refund_ids,
            });
        }
        Ok(())
    }

    /// Every order these references may name: by id (lowercased), by
    /// invoice or receipt number (any case). Several may match one
    /// reference; the caller picks as [`Store::resolve_order_ref`] does.
    pub async fn order_matches(&self, refs: &[OrderRef]) -> Result<Vec<OrderMatch>> {
        let mut values: Vec<(u8, String)> = refs
            .iter()
            .map(|r| match r {
                OrderRef::Uuid(v) => (0, v.trim().to_lowercase()),
                OrderRef::Invoice(v) => (1, v.trim().to_uppercase()),
                OrderRef::Receipt(v) => (2, v.trim().to_uppercase()),
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        let mut out: Vec<OrderMatch> = Vec::new();
        for chunk in values.chunks(CHUNK) {
            let column = |kind: u8| match kind {
                0 => "id",
                1 => "upper(invoice_number)",
                _ => "upper(receipt_number)",
            };
            let mut clauses = Vec::new();
            let mut next = 1;
            for kind in 0..3u8 {
                let n = chunk.iter().filter(|(k, _)| *k == kind).count();
                if n > 0 {
                    clauses.push(format!("{} IN ({})", column(kind), placeholders(next, n)));
                    next += n;
                }
            }
            let sql = format!(
                "SELECT id, wallet_id, invoice_number, receipt_number, created_at FROM orders
                 WHERE {}",
                clauses.join(" OR ")
            );
            type MatchTuple = (
                String,
                String,
                Option<String>,
                Option<String>,
                DateTime<Utc>,
            );
            let rows: Vec<MatchTuple> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                // `chunk` is sorted by kind: the binds follow the clauses.
                for (_, value) in chunk {
                    query = query.bind(value);
                }
                query.fetch_all(pool).await
            })
            .map_err(db("read cited orders"))?;
            for (id, wallet_id, invoice_number, receipt_number, created_at) in rows {
                if !out.iter().any(|o| o.id == id) {
                    out.push(OrderMatch {
                        id,
                        wallet_id,
                        invoice_number,
                        receipt_number,
                        created_at,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Of these cases, those whose last status change was a reviewer's,
    /// with the decision the case holds (what the person decided).
    pub async fn people_decisions(&self, cases: &[CaseId]) -> Result<Vec<PeopleDecision>> {
        let mut out = Vec::new();
        for chunk in cases.chunks(CHUNK) {
            let sql = format!(
                "SELECT c.id, e.actor, c.decision FROM cases c
                 JOIN case_events e ON e.case_id = c.id
                 WHERE c.id IN ({})
                   AND e.id = (SELECT MAX(l.id) FROM case_events l WHERE l.case_id = c.id)
                   AND e.actor LIKE 'reviewer:%'
                 ORDER BY c.id",
                placeholders(1, chunk.len())
            );
            let rows: Vec<(i64, String, Json<Decision>)> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                for case in chunk {
                    query = query.bind(case.0);
                }
                query.fetch_all(pool).await
            })
            .map_err(db("read cases people decided"))?;
            for (case_id, actor, decision) in rows {
                let reviewer = match actor
                    .parse::<Actor>()
                    .map_err(corrupt("case event actor"))?
                {
                    Actor::Reviewer(who) => who,
                    other => other.to_string(),
                };
                out.push(PeopleDecision {
                    case_id: CaseId(case_id),
                    reviewer,
                    decision: decision.0,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_on_from_where_they_start() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(4, 1), "$4");
        assert_eq!(placeholders(1, 0), "");
    }
}
