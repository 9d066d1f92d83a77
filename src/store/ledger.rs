//! The ledger mirror: upserts by id (what the import writes) and the reads
//! the policy needs — a sender's wallet with everything about it, and how
//! the order references an email cites resolve.
//!
//! Emails are matched case-insensitively (ASCII), UUIDs as lowercase,
//! invoice and receipt numbers case-insensitively. Never discloses another
//! wallet's order: a foreign order resolves to `OtherWallet` with nothing
//! but the reference. Fails with [`StoreError`].

use chrono::{DateTime, Utc};

use super::actions::credit_reason;
use super::error::{corrupt, db};
use super::{Result, Store, Tx, on_pool, on_tx};
use crate::domain::{
    Chargeback, ChargebackStatus, Generation, GenerationStatus, LedgerFacts, Order, OrderRef,
    PendingRefund, Refund, UnknownName, Wallet, WalletCredit, WalletFacts, WalletStatus,
};

/// Declares the stored names of a ledger state enum (the names of the
/// import contract and the migrations' `CHECK`), both ways.
macro_rules! ledger_names {
    ($name_fn:ident, $parse_fn:ident, $ty:ident, $vocab:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        fn $name_fn(value: $ty) -> &'static str {
            match value { $($ty::$variant => $text),+ }
        }

        fn $parse_fn(name: &str) -> Result<$ty> {
            match name {
                $($text => Ok($ty::$variant),)+
                _ => Err(corrupt($vocab)(UnknownName {
                    vocabulary: $vocab,
                    name: name.to_owned(),
                    expected: [$($text),+].join(", "),
                })),
            }
        }
    };
}

ledger_names!(wallet_status_name, parse_wallet_status, WalletStatus, "wallet status" {
    Active => "active", Suspended => "suspended", Terminated => "terminated",
});
ledger_names!(generation_status_name, parse_generation_status, GenerationStatus, "generation status" {
    Succeeded => "succeeded", Failed => "failed", Blocked => "blocked",
});
ledger_names!(chargeback_status_name, parse_chargeback_status, ChargebackStatus, "chargeback status" {
    Open => "open", Won => "won", Lost => "lost",
});

pub(super) type WalletTuple = (String, String, String, DateTime<Utc>);
pub(super) type OrderTuple = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);
pub(super) type GenerationTuple = (
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    bool,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);
pub(super) type CreditTuple = (String, String, i64, String, Option<String>, DateTime<Utc>);
pub(super) type RefundTuple = (String, String, i64, DateTime<Utc>);
pub(super) type ChargebackTuple = (String, String, String, DateTime<Utc>);

pub(super) fn wallet_from((id, email, status, created_at): WalletTuple) -> Result<Wallet> {
    Ok(Wallet {
        id,
        email,
        status: parse_wallet_status(&status)?,
        created_at,
    })
}

pub(super) fn order_from(t: OrderTuple) -> Order {
    let (id, wallet_id, product, credits, amount, tax, currency, invoice, receipt, created_at) = t;
    Order {
        id,
        wallet_id,
        product,
        credits,
        amount,
        tax_amount: tax,
        currency,
        invoice_number: invoice,
        receipt_number: receipt,
        created_at,
    }
}

pub(super) fn generation_from(t: GenerationTuple) -> Result<Generation> {
    let (id, wallet_id, order_id, credits, status, style, refunded, refunded_at, created_at) = t;
    Ok(Generation {
        id,
        wallet_id,
        order_id,
        credits,
        status: parse_generation_status(&status)?,
        style,
        refunded,
        refunded_at,
        created_at,
    })
}

pub(super) fn credit_from(t: CreditTuple) -> Result<WalletCredit> {
    let (id, wallet_id, credits, reason, generation_id, created_at) = t;
    Ok(WalletCredit {
        id,
        wallet_id,
        credits,
        reason: credit_reason(&reason)?,
        generation_id,
        created_at,
    })
}

pub(super) fn chargeback_from(
    (id, order_id, status, created_at): ChargebackTuple,
) -> Result<Chargeback> {
    Ok(Chargeback {
        id,
        order_id,
        status: parse_chargeback_status(&status)?,
        created_at,
    })
}

impl Store {
    /// Everything the ledger knows about the wallet whose email is `email`
    /// (case-insensitive). Should several wallets share the address, an
    /// active one wins, then the newest.
    pub async fn wallet_facts_by_email(&self, email: &str) -> Result<Option<WalletFacts>> {
        let wallet: Option<WalletTuple> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, email, status, created_at FROM wallets
                 WHERE lower(email) = lower($1)
                 ORDER BY CASE status WHEN 'active' THEN 0 ELSE 1 END, created_at DESC, id
                 LIMIT 1",
            )
            .bind(email.trim())
            .fetch_optional(pool)
            .await
        })
        .map_err(db("find a wallet by email"))?;
        let Some(wallet) = wallet else {
            return Ok(None);
        };
        let wallet = wallet_from(wallet)?;
        let id = wallet.id.as_str();
        let (orders, generations, credits, refunds, chargebacks, pending) = on_pool!(self, pool => {
            let orders: Vec<OrderTuple> = sqlx::query_as(
                "SELECT id, wallet_id, product, credits, amount, tax_amount, currency,
                        invoice_number, receipt_number, created_at
                 FROM orders WHERE wallet_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's orders"))?;
            let generations: Vec<GenerationTuple> = sqlx::query_as(
                "SELECT id, wallet_id, order_id, credits, status, style, refunded, refunded_at,
                        created_at
                 FROM generations WHERE wallet_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's generations"))?;
            let credits: Vec<CreditTuple> = sqlx::query_as(
                "SELECT id, wallet_id, credits, reason, generation_id, created_at
                 FROM wallet_credits WHERE wallet_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's credits"))?;
            let refunds: Vec<RefundTuple> = sqlx::query_as(
                "SELECT r.id, r.order_id, r.amount, r.created_at
                 FROM refunds r JOIN orders o ON o.id = r.order_id
                 WHERE o.wallet_id = $1 ORDER BY r.created_at, r.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's refunds"))?;
            let chargebacks: Vec<ChargebackTuple> = sqlx::query_as(
                "SELECT c.id, c.order_id, c.status, c.created_at
                 FROM chargebacks c JOIN orders o ON o.id = c.order_id
                 WHERE o.wallet_id = $1 ORDER BY c.created_at, c.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's chargebacks"))?;
            let pending: Vec<(i64, String, i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT a.case_id, a.order_id, a.amount, a.created_at
                 FROM actions a JOIN orders o ON o.id = a.order_id
                 WHERE o.wallet_id = $1 AND a.kind = 'cash_refund' AND a.status = 'pending'
                 ORDER BY a.created_at, a.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db("read a wallet's pending refunds"))?;
            (orders, generations, credits, refunds, chargebacks, pending)
        });
        Ok(Some(WalletFacts {
            orders: orders.into_iter().map(order_from).collect(),
            generations: generations
                .into_iter()
                .map(generation_from)
                .collect::<Result<_>>()?,
            credits: credits
                .into_iter()
                .map(credit_from)
                .collect::<Result<_>>()?,
            refunds: refunds
                .into_iter()
                .map(|(id, order_id, amount, created_at)| Refund {
                    id,
                    order_id,
                    amount,
                    created_at,
                })
                .collect(),
            chargebacks: chargebacks
                .into_iter()
                .map(chargeback_from)
                .collect::<Result<_>>()?,
            pending_refunds: pending
                .into_iter()
                .map(|(case, order_id, amount, approved_at)| PendingRefund {
                    case,
                    order_id,
                    amount,
                    approved_at,
                })
                .collect(),
            wallet,
        }))
    }

    /// The order a reference names, as `(order_id, wallet_id)`: a UUID by
    /// id (lowercased), an invoice or receipt number case-insensitively.
    pub async fn resolve_order_ref(
        &self,
        reference: &OrderRef,
    ) -> Result<Option<(String, String)>> {
        let value = reference.value().trim();
        let found: Option<(String, String)> = on_pool!(self, pool => {
            let query = match reference {
                OrderRef::Uuid(_) => sqlx::query_as(
                    "SELECT id, wallet_id FROM orders WHERE id = lower($1)",
                ),
                OrderRef::Invoice(_) => sqlx::query_as(
                    "SELECT id, wallet_id FROM orders WHERE upper(invoice_number) = upper($1)
                     ORDER BY created_at, id LIMIT 1",
                ),
                OrderRef::Receipt(_) => sqlx::query_as(
                    "SELECT id, wallet_id FROM orders WHERE upper(receipt_number) = upper($1)
                     ORDER BY created_at, id LIMIT 1",
                ),
            };
            query.bind(value).fetch_optional(pool).await
        })
        .map_err(db("resolve an order reference"))?;
        Ok(found)
    }

    /// The ledger's side of a decision: the sender's wallet (by address)
    /// and how each cited reference resolved — the sender's own order,
    /// another wallet's (nothing more is said about it), or unknown.
    pub async fn ledger_facts(&self, sender: &str, refs: &[OrderRef]) -> Result<LedgerFacts> {
        let sender_wallet = self.wallet_facts_by_email(sender).await?;
        let mut resolved = Vec::with_capacity(refs.len());
        for reference in refs {
            resolved.push(self.resolve_order_ref(reference).await?);
        }
        Ok(LedgerFacts::from_resolved(sender_wallet, refs, resolved))
    }

    /// Upserts one wallet by id (its own transaction).
    pub async fn upsert_wallet(&self, wallet: &Wallet) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_wallet(wallet).await?;
        tx.commit().await
    }

    /// Upserts one order by id (its own transaction).
    pub async fn upsert_order(&self, order: &Order) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_order(order).await?;
        tx.commit().await
    }

    /// Upserts one generation by id (its own transaction).
    pub async fn upsert_generation(&self, generation: &Generation) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_generation(generation).await?;
        tx.commit().await
    }

    /// Upserts one wallet credit by id (its own transaction).
    pub async fn upsert_wallet_credit(&self, credit: &WalletCredit) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_wallet_credit(credit).await?;
        tx.commit().await
    }

    /// Upserts one refund by id (its own transaction).
    pub async fn upsert_refund(&self, refund: &Refund) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_refund(refund).await?;
        tx.commit().await
    }

    /// Upserts one chargeback by id (its own transaction).
    pub async fn upsert_chargeback(&self, chargeback: &Chargeback) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.upsert_chargeback(chargeback).await?;
        tx.commit().await
    }
}

impl Tx {
    /// Inserts a wallet, or replaces the one with the same id.
    pub async fn upsert_wallet(&mut self, w: &Wallet) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO wallets (id, email, status, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE
                 SET email = excluded.email, status = excluded.status,
                     created_at = excluded.created_at",
            )
            .bind(&w.id)
            .bind(&w.email)
            .bind(wallet_status_name(w.status))
            .bind(w.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert a wallet"))?;
        Ok(())
    }

    /// Inserts an order, or replaces the one with the same id.
    pub async fn upsert_order(&mut self, o: &Order) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO orders (id, wallet_id, product, credits, amount, tax_amount, currency,
                                     invoice_number, receipt_number, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE
                 SET wallet_id = excluded.wallet_id, product = excluded.product,
                     credits = excluded.credits, amount = excluded.amount,
                     tax_amount = excluded.tax_amount, currency = excluded.currency,
                     invoice_number = excluded.invoice_number,
                     receipt_number = excluded.receipt_number, created_at = excluded.created_at",
            )
            .bind(&o.id)
            .bind(&o.wallet_id)
            .bind(&o.product)
            .bind(o.credits)
            .bind(o.amount)
            .bind(o.tax_amount)
            .bind(&o.currency)
            .bind(&o.invoice_number)
            .bind(&o.receipt_number)
            .bind(o.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert an order"))?;
        Ok(())
    }

    /// Inserts a generation, or replaces the one with the same id (its
    /// refund time too: an export without one says the ledger no longer
    /// knows it).
    pub async fn upsert_generation(&mut self, g: &Generation) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO generations (id, wallet_id, order_id, credits, status, style,
                                          refunded, refunded_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE
                 SET wallet_id = excluded.wallet_id, order_id = excluded.order_id,
                     credits = excluded.credits, status = excluded.status,
                     style = excluded.style, refunded = excluded.refunded,
                     refunded_at = excluded.refunded_at, created_at = excluded.created_at",
            )
            .bind(&g.id)
            .bind(&g.wallet_id)
            .bind(&g.order_id)
            .bind(g.credits)
            .bind(generation_status_name(g.status))
            .bind(&g.style)
            .bind(g.refunded)
            .bind(g.refunded_at)
            .bind(g.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert a generation"))?;
        Ok(())
    }

    /// Inserts a wallet credit, or replaces the one with the same id. The
    /// case that granted it, if refundd did, is kept.
    pub async fn upsert_wallet_credit(&mut self, c: &WalletCredit) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO wallet_credits (id, wallet_id, credits, reason, generation_id,
                                             created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE
                 SET wallet_id = excluded.wallet_id, credits = excluded.credits,
                     reason = excluded.reason, generation_id = excluded.generation_id,
                     created_at = excluded.created_at",
            )
            .bind(&c.id)
            .bind(&c.wallet_id)
            .bind(c.credits)
            .bind(c.reason.as_str())
            .bind(&c.generation_id)
            .bind(c.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert a wallet credit"))?;
        Ok(())
    }

    /// Inserts a refund, or replaces the one with the same id.
    pub async fn upsert_refund(&mut self, r: &Refund) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO refunds (id, order_id, amount, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE
                 SET order_id = excluded.order_id, amount = excluded.amount,
                     created_at = excluded.created_at",
            )
            .bind(&r.id)
            .bind(&r.order_id)
            .bind(r.amount)
            .bind(r.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert a refund"))?;
        Ok(())
    }

    /// Inserts a chargeback, or replaces the one with the same id.
    pub async fn upsert_chargeback(&mut self, c: &Chargeback) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO chargebacks (id, order_id, status, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE
                 SET order_id = excluded.order_id, status = excluded.status,
                     created_at = excluded.created_at",
            )
            .bind(&c.id)
            .bind(&c.order_id)
            .bind(chargeback_status_name(c.status))
            .bind(c.created_at)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db("upsert a chargeback"))?;
        Ok(())
    }
}
