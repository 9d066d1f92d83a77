//! Polar's resources as refundd reads them, from Polar's published OpenAPI
//! description (`tests/fixtures/polar/openapi-subset.json`).
//!
//! Takes: JSON from Polar. Gives: typed values holding the fields refundd
//! uses; fields it does not use are ignored, so Polar adding fields breaks
//! nothing. Every enum is open: a value this crate does not know is kept as
//! `Unknown(String)` and serializes back unchanged. Amounts are integer minor
//! units; `currency` is lowercase as Polar sends it. Never fails by itself:
//! decoding errors surface in [`super::PolarError::InvalidResponse`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines an open string enum: known variants plus `Unknown(String)`.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this crate does not know yet, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The value as Polar spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Unknown(other) => other,
                }
            }

            /// Parses Polar's spelling; anything else becomes `Unknown`.
            pub fn parse(wire: &str) -> Self {
                match wire {
                    $( $wire => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = String::deserialize(deserializer)?;
                Ok(Self::parse(&wire))
            }
        }
    };
}

open_enum! {
    /// `OrderStatus`.
    OrderStatus {
        /// Not yet submitted.
        Draft => "draft",
        /// Awaiting payment.
        Pending => "pending",
        /// Paid, nothing refunded.
        Paid => "paid",
        /// Fully refunded.
        Refunded => "refunded",
        /// Part of the net amount refunded.
        PartiallyRefunded => "partially_refunded",
        /// Cancelled before payment.
        Void => "void",
    }
}

open_enum! {
    /// `RefundStatus`.
    RefundStatus {
        /// Created; does not yet lower the order's refundable amount.
        Pending => "pending",
        /// Money returned; counted in the order's refunded amount.
        Succeeded => "succeeded",
        /// The payment processor refused it.
        Failed => "failed",
        /// Cancelled before it went through.
        Canceled => "canceled",
    }
}

open_enum! {
    /// `RefundReason`. Requests may use all but `DisputePrevention`, which
    /// only Polar sets.
    RefundReason {
        /// Charged twice.
        Duplicate => "duplicate",
        /// Payment was fraudulent.
        Fraudulent => "fraudulent",
        /// The customer asked.
        CustomerRequest => "customer_request",
        /// The service did not work.
        ServiceDisruption => "service_disruption",
        /// Satisfaction guarantee.
        SatisfactionGuarantee => "satisfaction_guarantee",
        /// Refunded by Polar to head off a chargeback.
        DisputePrevention => "dispute_prevention",
        /// Anything else.
        Other => "other",
    }
}

open_enum! {
    /// `DisputeStatus` (chargebacks).
    DisputeStatus {
        /// Refunded before it became a dispute.
        Prevented => "prevented",
        /// The issuer warned of a likely dispute.
        EarlyWarning => "early_warning",
        /// Evidence is due.
        NeedsResponse => "needs_response",
        /// The issuer is deciding.
        UnderReview => "under_review",
        /// Decided for the customer.
        Lost => "lost",
        /// Decided for the merchant.
        Won => "won",
    }
}

impl DisputeStatus {
    /// Whether the dispute is still open (not prevented, lost or won).
    /// Unknown statuses count as open: the safe reading for refunds.
    pub fn is_open(&self) -> bool {
        !matches!(self, Self::Prevented | Self::Lost | Self::Won)
    }
}

/// One metadata value (`MetadataOutputType`): string, integer, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetadataValue {
    /// A string (1 to 500 characters in requests).
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl MetadataValue {
    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for MetadataValue {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

/// Metadata as Polar stores it: up to 50 keys of 1 to 40 characters.
pub type Metadata = BTreeMap<String, MetadataValue>;

/// The customer embedded in an order (`OrderCustomer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCustomer {
    /// Polar's customer UUID.
    pub id: String,
    /// Email, as the customer typed it.
    #[serde(default)]
    pub email: Option<String>,
    /// Our id for the customer, if we gave one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// The product embedded in an order, reduced to what refundd shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderProduct {
    /// Polar's product UUID.
    pub id: String,
    /// Product name, e.g. "Starter 50".
    pub name: String,
}

/// An order (`Order`). Amounts exclude tax unless named `tax_` or `total_`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Lowercase UUID v4.
    pub id: String,
    /// When the order was created.
    pub created_at: DateTime<Utc>,
    /// Lifecycle state.
    pub status: OrderStatus,
    /// Whether the order was paid.
    pub paid: bool,
    /// Amount after discounts, before tax.
    pub net_amount: i64,
    /// Sales tax.
    pub tax_amount: i64,
    /// `net_amount + tax_amount`.
    pub total_amount: i64,
    /// Net amount refunded so far (succeeded refunds only).
    pub refunded_amount: i64,
    /// Tax refunded so far (succeeded refunds only).
    pub refunded_tax_amount: i64,
    /// Net amount still refundable. Pending refunds do NOT lower it.
    pub refundable_amount: i64,
    /// Tax still refundable.
    pub refundable_tax_amount: i64,
    /// ISO 4217 code, lowercase.
    pub currency: String,
    /// `{PREFIX}-…-NNNN`, as printed on the invoice.
    #[serde(default)]
    pub invoice_number: Option<String>,
    /// `RCPT-…-NNNN`, as printed on the receipt.
    #[serde(default)]
    pub receipt_number: Option<String>,
    /// The buyer's customer UUID.
    pub customer_id: String,
    /// The buyer.
    pub customer: OrderCustomer,
    /// The product bought, if it still exists.
    #[serde(default)]
    pub product: Option<OrderProduct>,
    /// A summary, e.g. the product name.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

/// A customer (`Customer`: individual or team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Polar's customer UUID.
    pub id: String,
    /// Email (absent for some team customers).
    #[serde(default)]
    pub email: Option<String>,
    /// Our id for the customer, if we gave one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// Set when the customer was soft-deleted.
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The dispute a refund answers, if any (`RefundDispute`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundDispute {
    /// Dispute UUID.
    pub id: String,
    /// Dispute state.
    pub status: DisputeStatus,
    /// Disputed net amount.
    pub amount: i64,
}

/// A refund (`Refund`). `amount` excludes tax; `tax_amount` is Polar's share
/// of tax returned with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    /// Refund UUID.
    pub id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change, if any.
    #[serde(default)]
    pub modified_at: Option<DateTime<Utc>>,
    /// Lifecycle state.
    pub status: RefundStatus,
    /// Why it was made.
    pub reason: RefundReason,
    /// Net amount refunded, excluding tax.
    pub amount: i64,
    /// Tax refunded with it.
    pub tax_amount: i64,
    /// ISO 4217 code, lowercase.
    pub currency: String,
    /// The order refunded.
    pub order_id: String,
    /// The customer refunded.
    pub customer_id: String,
    /// Whether the order's benefits were revoked.
    pub revoke_benefits: bool,
    /// Metadata sent with the request (our idempotency key lives here).
    #[serde(default)]
    pub metadata: Metadata,
    /// The dispute this refund answers, if any.
    #[serde(default)]
    pub dispute: Option<RefundDispute>,
}

/// A chargeback (`Dispute`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    /// Dispute UUID.
    pub id: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// State.
    pub status: DisputeStatus,
    /// Whether it is resolved.
    pub resolved: bool,
    /// Whether it is closed.
    pub closed: bool,
    /// Disputed net amount.
    pub amount: i64,
    /// Disputed tax.
    pub tax_amount: i64,
    /// ISO 4217 code, lowercase.
    pub currency: String,
    /// The issuer's reason, if given.
    #[serde(default)]
    pub reason: Option<String>,
    /// Evidence deadline, if any.
    #[serde(default)]
    pub evidence_due_by: Option<DateTime<Utc>>,
    /// The disputed order.
    pub order_id: String,
}

/// Paging facts of a list response (`Pagination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Items across all pages.
    pub total_count: u64,
    /// The last page number (1-based; 0 or 1 when empty).
    pub max_page: u64,
}

/// One page of a list (`ListResource_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Items on this page.
    pub items: Vec<T>,
    /// Paging facts.
    pub pagination: Pagination,
}

/// A refund request (`RefundCreate`). `amount` EXCLUDES tax: Polar adds the
/// proportional tax itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateRefund {
    /// The order to refund.
    pub order_id: String,
    /// Why (must not be `DisputePrevention` or `Unknown`).
    pub reason: RefundReason,
    /// Net amount in minor units, > 0.
    pub amount: i64,
    /// Internal note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Remove the order's benefits (the whole pack's credits).
    pub revoke_benefits: bool,
    /// Sent back on the refund: put the caller's idempotency key here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
}

/// Filters for [`super::PolarClient::list_disputes`]; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisputeQuery {
    /// Only disputes of this order.
    pub order_id: Option<String>,
    /// Only disputes in one of these states.
    pub statuses: Vec<DisputeStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_round_trip_known_and_unknown_values() {
        let cases = [
            (r#""partially_refunded""#, OrderStatus::PartiallyRefunded),
            (r#""chargeback""#, OrderStatus::Unknown("chargeback".into())),
        ];
        for (wire, expected) in cases {
            let parsed: OrderStatus = serde_json::from_str(wire).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(serde_json::to_string(&parsed).unwrap(), wire);
        }
        let reasons = [
            ("dispute_prevention", RefundReason::DisputePrevention),
            ("goodwill", RefundReason::Unknown("goodwill".into())),
        ];
        for (wire, expected) in reasons {
            assert_eq!(RefundReason::parse(wire), expected);
            assert_eq!(expected.as_str(), wire);
        }
        let status: RefundStatus = serde_json::from_str(r#""reversed""#).unwrap();
        assert_eq!(serde_json::to_value(&status).unwrap(), "reversed");
        let dispute: DisputeStatus = serde_json::from_str(r#""charge_refunded""#).unwrap();
        assert_eq!(dispute.to_string(), "charge_refunded");
    }

    #[test]
    fn unknown_dispute_statuses_count_as_open() {
        let cases = [
            (DisputeStatus::NeedsResponse, true),
            (DisputeStatus::EarlyWarning, true),
            (DisputeStatus::Unknown("new".into()), true),
            (DisputeStatus::Won, false),
            (DisputeStatus::Lost, false),
            (DisputeStatus::Prevented, false),
        ];
        for (status, open) in cases {
            assert_eq!(status.is_open(), open, "{status}");
        }
    }

    #[test]
    fn metadata_values_keep_their_json_type() {
        let json = r#"{"key":"r_1","n":3,"x":1.5,"flag":true}"#;
        let meta: Metadata = serde_json::from_str(json).unwrap();
        assert_eq!(meta["key"], MetadataValue::Str("r_1".into()));
        assert_eq!(meta["n"], MetadataValue::Int(3));
        assert_eq!(meta["x"], MetadataValue::Float(1.5));
        assert_eq!(meta["flag"], MetadataValue::Bool(true));
    }

    #[test]
    fn create_refund_omits_empty_optional_fields() {
        let body = CreateRefund {
            order_id: "o".into(),
            reason: RefundReason::CustomerRequest,
            amount: 450,
            comment: None,
            revoke_benefits: false,
            metadata: Metadata::new(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"order_id":"o","reason":"customer_request","amount":450,"revoke_benefits":false})
        );
    }
}
