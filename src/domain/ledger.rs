//! Ledger facts: wallets, orders, generations, wallet credits, refunds and
//! chargebacks, as the Anumi app exports them (DESIGN.md, "Ledger import
//! contract") and as the policy engine reads them.
//!
//! Amounts are integer minor units of the order's currency, excluding tax.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The state of a wallet (an Anumi account's credit balance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    /// In good standing.
    Active,
    /// Suspended (e.g. during a chargeback dispute, P6).
    Suspended,
    /// Terminated for ToS violations (P4: not refundable).
    Terminated,
}

/// A customer's wallet; its email is the address refunds must come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub id: String,
    /// Stored as given; compared case-insensitively.
    pub email: String,
    pub status: WalletStatus,
    pub created_at: DateTime<Utc>,
}

/// A credit pack bought through Polar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Polar's order UUID (lowercase).
    pub id: String,
    pub wallet_id: String,
    pub product: String,
    /// Credits in the pack.
    pub credits: i64,
    /// Net amount in minor units, excluding tax.
    pub amount: i64,
    pub tax_amount: Option<i64>,
    /// ISO 4217 code, uppercase.
    pub currency: String,
    pub invoice_number: Option<String>,
    pub receipt_number: Option<String>,
    /// Purchase time: the start of the P2 window.
    pub created_at: DateTime<Utc>,
}

/// What became of one generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationStatus {
    Succeeded,
    Failed,
    /// The upload was blocked by moderation; no credits were consumed.
    Blocked,
}

/// One generation run (an anime avatar and its bundled deliverables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub id: String,
    pub wallet_id: String,
    /// The order whose credits paid for it, when known.
    pub order_id: Option<String>,
    pub credits: i64,
    pub status: GenerationStatus,
    pub style: Option<String>,
    /// For a failed run: whether its credits already came back (P1).
    pub refunded: bool,
    /// When its credits came back, if the ledger says (optional in the
    /// import contract; only ever set on a refunded generation).
    #[serde(default)]
    pub refunded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Why credits were put back into a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditReason {
    /// P3: a courtesy credit; this is what the 90-day cap counts.
    Courtesy,
    /// P1: the credits of a failed generation.
    FailedGeneration,
    /// Granted by a person outside the policy; not counted by the cap.
    Goodwill,
}

impl CreditReason {
    /// The stable name (`courtesy`, `failed_generation`, `goodwill`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CreditReason::Courtesy => "courtesy",
            CreditReason::FailedGeneration => "failed_generation",
            CreditReason::Goodwill => "goodwill",
        }
    }
}

/// Credits written back into a wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletCredit {
    pub id: String,
    pub wallet_id: String,
    pub credits: i64,
    pub reason: CreditReason,
    /// The generation it compensates, when known (an optional extension
    /// of the import contract: `"generation": "gen_1"`).
    pub generation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Money returned for an order (by refundd or by anyone else at Polar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub order_id: String,
    /// Minor units, excluding tax.
    pub amount: i64,
    pub created_at: DateTime<Utc>,
}

/// State of a card dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargebackStatus {
    Open,
    Won,
    Lost,
}

/// A card dispute on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chargeback {
    pub id: String,
    pub order_id: String,
    pub status: ChargebackStatus,
    pub created_at: DateTime<Utc>,
}

/// Everything the ledger knows about one wallet: what the policy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletFacts {
    pub wallet: Wallet,
    pub orders: Vec<Order>,
    pub generations: Vec<Generation>,
    pub credits: Vec<WalletCredit>,
    pub refunds: Vec<Refund>,
    pub chargebacks: Vec<Chargeback>,
    /// Cash refunds refundd approved (any case) that the ledger does not
    /// show yet: waiting for the payment stage, or in flight at Polar.
    #[serde(default)]
    pub pending_refunds: Vec<PendingRefund>,
}

/// A cash refund refundd approved that is not in the ledger yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefund {
    /// The number of the case that approved it.
    pub case: i64,
    pub order_id: String,
    /// Minor units, excluding tax.
    pub amount: i64,
    pub approved_at: DateTime<Utc>,
}

impl WalletFacts {
    /// Minor units already refunded for `order_id` (the ledger's rows).
    pub fn refunded_amount(&self, order_id: &str) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.amount)
            .sum()
    }

    /// Minor units refunded or approved for `order_id`: the ledger's
    /// refunds plus refundd's approved refunds not in the ledger yet. What
    /// every path that approves money counts as gone.
    pub fn committed_amount(&self, order_id: &str) -> i64 {
        self.refunded_amount(order_id)
            + self
                .pending_refunds
                .iter()
                .filter(|r| r.order_id == order_id)
                .map(|r| r.amount)
                .sum::<i64>()
    }

    /// When money of `order_id` was last refunded or approved, if ever.
    pub fn last_refunded_at(&self, order_id: &str) -> Option<DateTime<Utc>> {
        let ledger = self
            .refunds
            .iter()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.created_at);
        let pending = self
            .pending_refunds
            .iter()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.approved_at);
        ledger.chain(pending).max()
    }

    /// Credits of `order_id` consumed by successful generations. Failed runs
    /// are credited back by P1 and blocked uploads consume nothing, so only
    /// successful runs count as used.
    pub fn credits_used(&self, order_id: &str) -> i64 {
        self.generations
            .iter()
            .filter(|g| g.order_id.as_deref() == Some(order_id))
            .filter(|g| g.status == GenerationStatus::Succeeded)
            .map(|g| g.credits)
            .sum()
    }

    /// The order with this id, if it is one of this wallet's.
    pub fn order(&self, order_id: &str) -> Option<&Order> {
        self.orders.iter().find(|o| o.id == order_id)
    }
}

/// How one order reference in the email resolved against the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum OrderLookup {
    /// The ledger knows no such order.
    Unknown { reference: String },
    /// The order is one of the sender's wallet's orders.
    Own { reference: String, order_id: String },
    /// The order exists but belongs to another wallet. Nothing else about
    /// it is carried, so nothing about it can be disclosed by accident.
    OtherWallet { reference: String },
}

/// The ledger's side of a decision: the sender's wallet (if the address
/// matches one) and how each cited order reference resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFacts {
    pub sender_wallet: Option<WalletFacts>,
    pub cited_orders: Vec<OrderLookup>,
}

impl LedgerFacts {
    /// The ledger's side of a decision from the sender's wallet and, for
    /// each cited reference, the `(order_id, wallet_id)` it names, if any:
    /// the sender's own order, another wallet's (nothing more is said
    /// about it), or unknown. `resolved` is in the order of `refs`.
    pub fn from_resolved(
        sender_wallet: Option<WalletFacts>,
        refs: &[super::OrderRef],
        resolved: impl IntoIterator<Item = Option<(String, String)>>,
    ) -> LedgerFacts {
        let cited_orders = refs
            .iter()
            .zip(resolved)
            .map(|(reference, found)| {
                let text = reference.value().to_owned();
                match found {
                    None => OrderLookup::Unknown { reference: text },
                    Some((order_id, wallet_id))
                        if sender_wallet
                            .as_ref()
                            .is_some_and(|w| w.wallet.id == wallet_id) =>
                    {
                        OrderLookup::Own {
                            reference: text,
                            order_id,
                        }
                    }
                    Some(_) => OrderLookup::OtherWallet { reference: text },
                }
            })
            .collect();
        LedgerFacts {
            sender_wallet,
            cited_orders,
        }
    }
}
