//! The test server's in-memory Polar: customers, orders, refunds, disputes,
//! and the refund rules of Polar's server (NOTES.md), rendered as the JSON
//! shapes of Polar's OpenAPI description.
//!
//! Takes: seeds and validated requests. Gives: JSON values and Polar-shaped
//! errors. Never does I/O or reads the clock except through the `now`
//! arguments it is given. Fails with [`ApiError`] (an HTTP status and body)
//! or [`SeedError`].

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A Polar-shaped error response: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `{"error", "detail"}` or `{"detail": [...]}`.
    pub body: Value,
}

impl ApiError {
    /// A named error: `{"error": name, "detail": detail}`.
    pub fn named(status: u16, name: &str, detail: &str) -> Self {
        Self {
            status,
            body: json!({"error": name, "detail": detail}),
        }
    }

    /// A 422 with pydantic-style entries (see [`validation_entry`]).
    pub fn validation(entries: Vec<Value>) -> Self {
        Self {
            status: 422,
            body: json!({ "detail": entries }),
        }
    }
}

/// One `ValidationError` entry: `{type, loc, msg, input}`.
pub fn validation_entry(kind: &str, loc: &[&str], msg: &str, input: Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

/// Why a seed was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    /// An order names a customer that is not seeded.
    #[error("order {order} names unknown customer {customer}")]
    UnknownCustomer {
        /// The order id.
        order: String,
        /// The customer id.
        customer: String,
    },
    /// A dispute names an order that is not seeded.
    #[error("dispute {dispute} names unknown order {order}")]
    UnknownOrder {
        /// The dispute id.
        dispute: String,
        /// The order id.
        order: String,
    },
    /// An id is used twice.
    #[error("duplicate id {0}")]
    DuplicateId(String),
    /// An order has a net amount of zero or less.
    #[error("order {0} must have a positive net amount")]
    NonPositiveAmount(String),
}

/// What to load into the server: the `--seed` file's format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seed {
    /// Customers (load before their orders).
    #[serde(default)]
    pub customers: Vec<SeedCustomer>,
    /// Orders of seeded customers.
    #[serde(default)]
    pub orders: Vec<SeedOrder>,
    /// Chargebacks on seeded orders.
    #[serde(default)]
    pub disputes: Vec<SeedDispute>,
}

impl Seed {
    /// The customers and orders of a ledger export (the `ledger import`
    /// JSON Lines contract), as Polar knows them: the customer by the
    /// wallet's email (id `cus-{wallet}`), the order by its UUID, paid.
    /// Other records are skipped. The demo and the tests seed with it.
    pub fn from_ledger_jsonl(ledger: &str) -> Result<Seed, serde_json::Error> {
        let mut seed = Seed::default();
        let mut emails = std::collections::HashMap::new();
        for line in ledger.lines().filter(|l| !l.trim().is_empty()) {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let text = |key: &str| record[key].as_str().map(str::to_owned);
            match record["type"].as_str() {
                Some("wallet") => {
                    emails.insert(
                        text("id").unwrap_or_default(),
                        text("email").unwrap_or_default(),
                    );
                }
                Some("order") => {
                    let wallet = text("wallet").unwrap_or_default();
                    let customer_id = format!("cus-{wallet}");
                    if !seed
                        .customers
                        .iter()
                        .any(|c| c.id.as_deref() == Some(customer_id.as_str()))
                    {
                        seed.customers.push(SeedCustomer {
                            id: Some(customer_id.clone()),
                            email: emails.get(&wallet).cloned().unwrap_or_default(),
                            ..SeedCustomer::default()
                        });
                    }
                    seed.orders.push(SeedOrder {
                        id: text("id"),
                        customer_id,
                        net_amount: record["amount"].as_i64().unwrap_or_default(),
                        tax_amount: record["tax_amount"].as_i64().unwrap_or_default(),
                        currency: text("currency").unwrap_or_default().to_lowercase(),
                        status: "paid".into(),
                        invoice_number: text("invoice_number"),
                        receipt_number: text("receipt_number"),
                        product_name: text("product").unwrap_or_default(),
                        created_at: record["created_at"].as_str().and_then(|t| t.parse().ok()),
                        has_payment: true,
                    });
                }
                _ => {}
            }
        }
        Ok(seed)
    }
}

/// A seeded customer; a missing id is generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeedCustomer {
    /// UUID (lowercase); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Email as the customer typed it.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Our id for the customer.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Creation time; the seeding time when absent.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// A seeded order, paid unless `status` says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedOrder {
    /// UUID (lowercase); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// A seeded customer's id.
    pub customer_id: String,
    /// Net amount (minor units, excluding tax), > 0.
    pub net_amount: i64,
    /// Tax on top of the net amount.
    #[serde(default)]
    pub tax_amount: i64,
    /// ISO 4217 code, any case; served lowercase.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// `paid` (default), `pending`, `draft` or `void`; refunds move paid
    /// orders to `partially_refunded` / `refunded`.
    #[serde(default = "default_order_status")]
    pub status: String,
    /// Invoice number as printed, e.g. `ANUMI-AAAAAAAB-0001`.
    #[serde(default)]
    pub invoice_number: Option<String>,
    /// Receipt number as printed, e.g. `RCPT-AAAAAAAB-0001`.
    #[serde(default)]
    pub receipt_number: Option<String>,
    /// Product name (also the order description).
    #[serde(default = "default_product_name")]
    pub product_name: String,
    /// Creation time; the seeding time when absent.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// `false` makes refunds fail with 404 `RefundUnknownPayment`.
    #[serde(default = "default_true")]
    pub has_payment: bool,
}

/// A seeded chargeback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedDispute {
    /// UUID; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// A seeded order's id.
    pub order_id: String,
    /// `needs_response`, `under_review`, `early_warning` (open), or
    /// `prevented`, `lost`, `won` (closed).
    pub status: String,
    /// Disputed net amount; the order's net amount when absent.
    #[serde(default)]
    pub amount: Option<i64>,
    /// The issuer's reason.
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_currency() -> String {
    "eur".into()
}
fn default_order_status() -> String {
    "paid".into()
}
fn default_product_name() -> String {
    "Credit pack".into()
}
fn default_true() -> bool {
    true
}

/// Dispute statuses that block refunds (`RefundDisputedPayment`).
const OPEN_DISPUTE_STATUSES: [&str; 3] = ["early_warning", "needs_response", "under_review"];

#[derive(Debug, Clone)]
pub(crate) struct CustomerRec {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct OrderRec {
    pub id: String,
    pub customer_id: String,
    pub product_id: String,
    pub product_name: String,
    pub net_amount: i64,
    pub tax_amount: i64,
    pub currency: String,
    pub base_status: String,
    pub invoice_number: Option<String>,
    pub receipt_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: Option<DateTime<Utc>>,
    pub has_payment: bool,
    pub refunded_amount: i64,
    pub refunded_tax_amount: i64,
}

impl OrderRec {
    pub fn refundable_amount(&self) -> i64 {
        self.net_amount - self.refunded_amount
    }

    pub fn refundable_tax_amount(&self) -> i64 {
        self.tax_amount - self.refunded_tax_amount
    }

    pub fn status(&self) -> &str {
        if self.base_status != "paid" || self.refunded_amount == 0 {
            &self.base_status
        } else if self.refundable_amount() <= 0 {
            "refunded"
        } else {
            "partially_refunded"
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RefundRec {
    pub id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: i64,
    pub tax_amount: i64,
    pub currency: String,
    pub reason: String,
    pub status: String,
    pub revoke_benefits: bool,
    pub metadata: serde_json::Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub modified_at: Option<DateTime<Utc>>,
    pub settle_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct DisputeRec {
    pub id: String,
    pub order_id: String,
    pub payment_id: String,
    pub status: String,
    pub amount: i64,
    pub tax_amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A validated `RefundCreate` body.
#[derive(Debug, Clone)]
pub(crate) struct RefundRequest {
    pub order_id: String,
    pub reason: String,
    pub amount: i64,
    pub revoke_benefits: bool,
    pub metadata: serde_json::Map<String, Value>,
}

/// Everything the server knows.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub organization_id: String,
    pub customers: Vec<CustomerRec>,
    pub orders: Vec<OrderRec>,
    pub refunds: Vec<RefundRec>,
    pub disputes: Vec<DisputeRec>,
    pub refunds_blocked: bool,
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// RFC 3339 with `Z`, as Polar writes timestamps.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_timestamp(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(timestamp(at)))
}

/// The tax returned with a refund of `amount`: `floor(amount × tax ÷ net)`
/// of the order, except that a refund of everything still refundable
/// returns all the tax still refundable (so rounding never strands cents).
pub fn proportional_tax(
    order_net: i64,
    order_tax: i64,
    refundable: i64,
    refundable_tax: i64,
    amount: i64,
) -> i64 {
    if amount >= refundable {
        return refundable_tax;
    }
    if order_net <= 0 {
        return 0;
    }
    ((amount as i128 * order_tax as i128) / order_net as i128) as i64
}

impl Store {
    pub fn seed(&mut self, seed: &Seed, now: DateTime<Utc>) -> Result<(), SeedError> {
        let taken = |store: &Store, id: &str| {
            store.customers.iter().any(|c| c.id == id)
                || store.orders.iter().any(|o| o.id == id)
                || store.disputes.iter().any(|d| d.id == id)
        };
        for customer in &seed.customers {
            let id = customer.id.clone().unwrap_or_else(new_id).to_lowercase();
            if taken(self, &id) {
                return Err(SeedError::DuplicateId(id));
            }
            self.customers.push(CustomerRec {
                id,
                email: customer.email.clone(),
                name: customer.name.clone(),
                external_id: customer.external_id.clone(),
                created_at: customer.created_at.unwrap_or(now),
            });
        }
        for order in &seed.orders {
            let id = order.id.clone().unwrap_or_else(new_id).to_lowercase();
            if taken(self, &id) {
                return Err(SeedError::DuplicateId(id));
            }
            let customer_id = order.customer_id.to_lowercase();
            if !self.customers.iter().any(|c| c.id == customer_id) {
                return Err(SeedError::UnknownCustomer {
                    order: id,
                    customer: customer_id,
                });
            }
            if order.net_amount <= 0 {
                return Err(SeedError::NonPositiveAmount(id));
            }
            self.orders.push(OrderRec {
                id,
                customer_id,
                product_id: new_id(),
                product_name: order.product_name.clone(),
                net_amount: order.net_amount,
                tax_amount: order.tax_amount,
                currency: order.currency.to_lowercase(),
                base_status: order.status.clone(),
                invoice_number: order.invoice_number.clone(),
                receipt_number: order.receipt_number.clone(),
                created_at: order.created_at.unwrap_or(now),
                modified_at: None,
                has_payment: order.has_payment,
                refunded_amount: 0,
                refunded_tax_amount: 0,
            });
        }
        for dispute in &seed.disputes {
            let id = dispute.id.clone().unwrap_or_else(new_id).to_lowercase();
            if taken(self, &id) {
                return Err(SeedError::DuplicateId(id));
            }
            let order_id = dispute.order_id.to_lowercase();
            let Some(order) = self.orders.iter().find(|o| o.id == order_id) else {
                return Err(SeedError::UnknownOrder {
                    dispute: id,
                    order: order_id,
                });
            };
            let amount = dispute.amount.unwrap_or(order.net_amount);
            let tax_amount = proportional_tax(
                order.net_amount,
                order.tax_amount,
                order.net_amount,
                order.tax_amount,
                amount,
            );
            self.disputes.push(DisputeRec {
                id,
                order_id,
                payment_id: new_id(),
                status: dispute.status.clone(),
                amount,
                tax_amount,
                currency: order.currency.clone(),
                reason: dispute.reason.clone(),
                created_at: now,
            });
        }
        Ok(())
    }

    /// Settles every pending refund whose settle time has come.
    pub fn settle_due(&mut self, now: Instant, wall: DateTime<Utc>) {
        let due: Vec<String> = self
            .refunds
            .iter()
            .filter(|r| r.status == "pending" && r.settle_at.is_some_and(|at| at <= now))
            .map(|r| r.id.clone())
            .collect();
        for id in due {
            self.settle(&id, wall);
        }
    }

    /// Moves a pending refund to `succeeded` (lowering the order's
    /// refundable amount), or to `failed` when the order no longer has that
    /// much refundable (two pending refunds that together exceed it).
    /// Returns false for an unknown or already settled refund.
    pub fn settle(&mut self, refund_id: &str, wall: DateTime<Utc>) -> bool {
        let Some(refund) = self.refunds.iter_mut().find(|r| r.id == refund_id) else {
            return false;
        };
        if refund.status != "pending" {
            return false;
        }
        let Some(order) = self.orders.iter_mut().find(|o| o.id == refund.order_id) else {
            return false;
        };
        refund.modified_at = Some(wall);
        if refund.amount > order.refundable_amount() {
            refund.status = "failed".into();
            return true;
        }
        refund.tax_amount = refund.tax_amount.min(order.refundable_tax_amount());
        refund.status = "succeeded".into();
        order.refunded_amount += refund.amount;
        order.refunded_tax_amount += refund.tax_amount;
        order.modified_at = Some(wall);
        true
    }

    /// Moves a pending refund to `failed`. Returns false when not pending.
    pub fn fail(&mut self, refund_id: &str, wall: DateTime<Utc>) -> bool {
        match self
            .refunds
            .iter_mut()
            .find(|r| r.id == refund_id && r.status == "pending")
        {
            Some(refund) => {
                refund.status = "failed".into();
                refund.modified_at = Some(wall);
                true
            }
            None => false,
        }
    }

    /// Polar's refund rules, in Polar's order of checks.
    pub fn create_refund(
        &mut self,
        request: RefundRequest,
        wall: DateTime<Utc>,
        settle_at: Option<Instant>,
    ) -> Result<Value, ApiError> {
        let Some(order) = self.orders.iter().find(|o| o.id == request.order_id) else {
            return Err(ApiError::validation(vec![validation_entry(
                "value_error",
                &["body", "order_id"],
                "Order not found",
                Value::String(request.order_id.clone()),
            )]));
        };
        if !order.has_payment || !matches!(order.base_status.as_str(), "paid") {
            return Err(ApiError::named(
                404,
                "RefundUnknownPayment",
                "Payment not found for order.",
            ));
        }
        if self.refunds_blocked {
            return Err(ApiError::named(
                403,
                "RefundsBlocked",
                "Refunds are blocked for this organization.",
            ));
        }
        let disputed = self
            .disputes
            .iter()
            .any(|d| d.order_id == order.id && OPEN_DISPUTE_STATUSES.contains(&d.status.as_str()));
        if disputed {
            return Err(ApiError::named(
                403,
                "RefundDisputedPayment",
                "Order payment is disputed.",
            ));
        }
        if order.refundable_amount() <= 0 {
            return Err(ApiError::named(
                403,
                "RefundedAlready",
                "Order is already fully refunded.",
            ));
        }
        if request.amount > order.refundable_amount() {
            return Err(ApiError::validation(vec![validation_entry(
                "value_error",
                &["body", "amount"],
                "Refund amount exceeds refundable amount.",
                json!(request.amount),
            )]));
        }
        let tax_amount = proportional_tax(
            order.net_amount,
            order.tax_amount,
            order.refundable_amount(),
            order.refundable_tax_amount(),
            request.amount,
        );
        let refund = RefundRec {
            id: new_id(),
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            amount: request.amount,
            tax_amount,
            currency: order.currency.clone(),
            reason: request.reason,
            status: "pending".into(),
            revoke_benefits: request.revoke_benefits,
            metadata: request.metadata,
            created_at: wall,
            modified_at: None,
            settle_at,
        };
        let rendered = self.refund_json(&refund);
        self.refunds.push(refund);
        Ok(rendered)
    }

    pub fn customer_json(&self, customer: &CustomerRec) -> Value {
        json!({
            "id": customer.id,
            "created_at": timestamp(customer.created_at),
            "modified_at": null,
            "metadata": {},
            "external_id": customer.external_id,
            "email": customer.email,
            "email_verified": true,
            "type": "individual",
            "name": customer.name,
            "billing_name": customer.name,
            "billing_address": null,
            "tax_id": null,
            "locale": null,
            "organization_id": self.organization_id,
            "default_payment_method_id": null,
            "deleted_at": null,
            "first_user_event_at": null,
            "avatar_url": null,
        })
    }

    pub fn order_json(&self, order: &OrderRec) -> Value {
        let customer = self
            .customers
            .iter()
            .find(|c| c.id == order.customer_id)
            .map_or(Value::Null, |c| self.customer_json(c));
        let paid = !matches!(order.base_status.as_str(), "draft" | "pending" | "void");
        let product = json!({
            "metadata": {},
            "id": order.product_id,
            "created_at": timestamp(order.created_at),
            "modified_at": null,
            "trial_interval": null,
            "trial_interval_count": null,
            "name": order.product_name,
            "description": null,
            "visibility": "public",
            "recurring_interval": null,
            "recurring_interval_count": null,
            "meter_interval": null,
            "meter_interval_count": null,
            "is_recurring": false,
            "is_archived": false,
            "organization_id": self.organization_id,
        });
        let items = json!([{
            "created_at": timestamp(order.created_at),
            "modified_at": null,
            "id": order.product_id,
            "label": order.product_name,
            "amount": order.net_amount,
            "tax_amount": order.tax_amount,
            "proration": false,
            "product_price_id": null,
        }]);
        let mut body = json!({
            "id": order.id,
            "created_at": timestamp(order.created_at),
            "modified_at": opt_timestamp(order.modified_at),
            "status": order.status(),
            "paid": paid,
            "subtotal_amount": order.net_amount,
            "discount_amount": 0,
            "net_amount": order.net_amount,
            "tax_amount": order.tax_amount,
            "total_amount": order.net_amount + order.tax_amount,
            "applied_balance_amount": 0,
            "due_amount": 0,
            "refunded_amount": order.refunded_amount,
            "refunded_tax_amount": order.refunded_tax_amount,
            "currency": order.currency,
        });
        let rest = json!({
            "billing_reason": "purchase",
            "billing_name": customer["name"],
            "billing_address": null,
            "invoice_number": order.invoice_number,
            "is_invoice_generated": order.invoice_number.is_some(),
            "receipt_number": order.receipt_number,
            "seats": null,
            "customer_id": order.customer_id,
            "product_id": order.product_id,
            "discount_id": null,
            "subscription_id": null,
            "checkout_id": null,
            "metadata": {},
            "custom_field_data": {},
            "platform_fee_amount": 0,
            "platform_fee_currency": null,
            "customer": customer,
            "product": product,
            "discount": null,
            "subscription": null,
            "items": items,
            "description": order.product_name,
            "refundable_amount": order.refundable_amount(),
            "refundable_tax_amount": order.refundable_tax_amount(),
        });
        // Two halves: one `json!` of ~40 fields exceeds the macro recursion limit.
        if let (Some(body), Value::Object(rest)) = (body.as_object_mut(), rest) {
            body.extend(rest);
        }
        body
    }

    pub fn refund_json(&self, refund: &RefundRec) -> Value {
        json!({
            "created_at": timestamp(refund.created_at),
            "modified_at": opt_timestamp(refund.modified_at),
            "id": refund.id,
            "metadata": refund.metadata,
            "status": refund.status,
            "reason": refund.reason,
            "amount": refund.amount,
            "tax_amount": refund.tax_amount,
            "currency": refund.currency,
            "organization_id": self.organization_id,
            "order_id": refund.order_id,
            "subscription_id": null,
            "customer_id": refund.customer_id,
            "revoke_benefits": refund.revoke_benefits,
            "dispute": null,
        })
    }

    pub fn dispute_json(&self, dispute: &DisputeRec) -> Value {
        let closed = !OPEN_DISPUTE_STATUSES.contains(&dispute.status.as_str());
        let customer = self
            .orders
            .iter()
            .find(|o| o.id == dispute.order_id)
            .and_then(|o| self.customers.iter().find(|c| c.id == o.customer_id))
            .map_or(Value::Null, |c| self.customer_json(c));
        json!({
            "created_at": timestamp(dispute.created_at),
            "modified_at": null,
            "id": dispute.id,
            "status": dispute.status,
            "resolved": closed,
            "closed": closed,
            "amount": dispute.amount,
            "tax_amount": dispute.tax_amount,
            "currency": dispute.currency,
            "reason": dispute.reason,
            "evidence_due_by": null,
            "past_due": false,
            "order_id": dispute.order_id,
            "payment_id": dispute.payment_id,
            "customer": customer,
            "case_id": null,
        })
    }
}

/// Validates a `POST /v1/refunds/` body against `RefundCreate`, collecting
/// every problem as Polar (pydantic) does.
pub(crate) fn validate_refund_body(body: &[u8]) -> Result<RefundRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(vec![validation_entry(
            "json_invalid",
            &["body"],
            &format!("JSON decode error: {e}"),
            json!({}),
        )])
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::validation(vec![validation_entry(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            value.clone(),
        )]));
    };
    let mut errors = Vec::new();
    let missing = |field: &str, errors: &mut Vec<Value>| {
        errors.push(validation_entry(
            "missing",
            &["body", field],
            "Field required",
            value.clone(),
        ));
    };
    let order_id = match object.get("order_id") {
        None => {
            missing("order_id", &mut errors);
            None
        }
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => Some(s.to_lowercase()),
        Some(other) => {
            errors.push(validation_entry(
                "uuid_parsing",
                &["body", "order_id"],
                "Input should be a valid UUID",
                other.clone(),
            ));
            None
        }
    };
    const REASONS: [&str; 6] = [
        "duplicate",
        "fraudulent",
        "customer_request",
        "service_disruption",
        "satisfaction_guarantee",
        "other",
    ];
    let reason = match object.get("reason") {
        None => {
            missing("reason", &mut errors);
            None
        }
        Some(Value::String(s)) if REASONS.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => {
            errors.push(validation_entry(
                "enum",
                &["body", "reason"],
                "Input should be 'duplicate', 'fraudulent', 'customer_request', 'service_disruption', 'satisfaction_guarantee' or 'other'",
                other.clone(),
            ));
            None
        }
    };
    let amount = match object.get("amount") {
        None => {
            missing("amount", &mut errors);
            None
        }
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            let amount = n.as_i64().unwrap_or_default();
            if amount > 0 {
                Some(amount)
            } else {
                errors.push(validation_entry(
                    "greater_than",
                    &["body", "amount"],
                    "Input should be greater than 0",
                    json!(amount),
                ));
                None
            }
        }
        Some(other) => {
            errors.push(validation_entry(
                "int_type",
                &["body", "amount"],
                "Input should be a valid integer",
                other.clone(),
            ));
            None
        }
    };
    match object.get("comment") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => errors.push(validation_entry(
            "string_type",
            &["body", "comment"],
            "Input should be a valid string",
            other.clone(),
        )),
    }
    let revoke_benefits = match object.get("revoke_benefits") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(validation_entry(
                "bool_type",
                &["body", "revoke_benefits"],
                "Input should be a valid boolean",
                other.clone(),
            ));
            false
        }
    };
    let metadata = match object.get("metadata") {
        None => serde_json::Map::new(),
        Some(Value::Object(map)) => {
            if map.len() > 50 {
                errors.push(validation_entry(
                    "too_long",
                    &["body", "metadata"],
                    "Dictionary should have at most 50 items",
                    Value::Object(map.clone()),
                ));
            }
            for (key, item) in map {
                let key_len = key.chars().count();
                if !(1..=40).contains(&key_len) {
                    errors.push(validation_entry(
                        "string_too_long",
                        &["body", "metadata", key],
                        "Metadata keys must have 1 to 40 characters",
                        Value::String(key.clone()),
                    ));
                }
                let ok = match item {
                    Value::String(s) => (1..=500).contains(&s.chars().count()),
                    Value::Number(_) | Value::Bool(_) => true,
                    _ => false,
                };
                if !ok {
                    errors.push(validation_entry(
                        "value_error",
                        &["body", "metadata", key],
                        "Metadata values must be a string of 1 to 500 characters, a number or a boolean",
                        item.clone(),
                    ));
                }
            }
            map.clone()
        }
        Some(other) => {
            errors.push(validation_entry(
                "dict_type",
                &["body", "metadata"],
                "Input should be a valid dictionary",
                other.clone(),
            ));
            serde_json::Map::new()
        }
    };
    match (order_id, reason, amount) {
        (Some(order_id), Some(reason), Some(amount)) if errors.is_empty() => Ok(RefundRequest {
            order_id,
            reason,
            amount,
            revoke_benefits,
            metadata,
        }),
        _ => Err(ApiError::validation(errors)),
    }
}

/// Paginates `items` as Polar does: 1-based `page`, `max_page =
/// ceil(total / limit)`.
pub(crate) fn paginate(items: Vec<Value>, page: u64, limit: u64) -> Value {
    let total = items.len() as u64;
    let max_page = total.div_ceil(limit);
    let start = ((page - 1) * limit) as usize;
    let slice: Vec<Value> = items.into_iter().skip(start).take(limit as usize).collect();
    json!({"items": slice, "pagination": {"total_count": total, "max_page": max_page}})
}

/// Query pairs grouped by key (repeated keys keep every value).
pub(crate) type QueryMap = BTreeMap<String, Vec<String>>;

/// Reads `page` (default 1, > 0) and `limit` (default 10, 1 to 100).
pub(crate) fn page_and_limit(query: &QueryMap) -> Result<(u64, u64), ApiError> {
    let mut errors = Vec::new();
    let mut read = |key: &str, default: u64, max: Option<u64>| -> u64 {
        let Some(raw) = query.get(key).and_then(|v| v.last()) else {
            return default;
        };
        match raw.parse::<u64>() {
            Ok(0) => {
                errors.push(validation_entry(
                    "greater_than",
                    &["query", key],
                    "Input should be greater than 0",
                    json!(raw),
                ));
                default
            }
            Ok(n) if max.is_some_and(|max| n > max) => {
                errors.push(validation_entry(
                    "less_than_equal",
                    &["query", key],
                    "Input should be less than or equal to 100",
                    json!(raw),
                ));
                default
            }
            Ok(n) => n,
            Err(_) => {
                errors.push(validation_entry(
                    "int_parsing",
                    &["query", key],
                    "Input should be a valid integer, unable to parse string as an integer",
                    json!(raw),
                ));
                default
            }
        }
    };
    let page = read("page", 1, None);
    let limit = read("limit", 10, Some(100));
    if errors.is_empty() {
        Ok((page, limit))
    } else {
        Err(ApiError::validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_is_floored_in_proportion_and_a_final_refund_takes_the_rest() {
        // (net, tax, refundable, refundable_tax, amount) -> tax
        let cases = [
            (900, 171, 900, 171, 450, 85),
            (900, 171, 450, 86, 450, 86),
            (900, 171, 900, 171, 900, 171),
            (900, 0, 900, 0, 300, 0),
            (1000, 200, 1000, 200, 1, 0),
            (1000, 200, 1000, 200, 5, 1),
        ];
        for (net, tax, refundable, refundable_tax, amount, expected) in cases {
            assert_eq!(
                proportional_tax(net, tax, refundable, refundable_tax, amount),
                expected,
                "{amount} of {net}+{tax}"
            );
        }
    }

    #[test]
    fn refund_bodies_are_validated_like_refund_create() {
        let order = "22222222-2222-4222-8222-222222222222";
        let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
            (
                json!({"order_id": order, "reason": "customer_request", "amount": 1}),
                vec![],
            ),
            (
                json!({}),
                vec![
                    ("missing", "order_id"),
                    ("missing", "reason"),
                    ("missing", "amount"),
                ],
            ),
            (
                json!({"order_id": "nope", "reason": "customer_request", "amount": 1}),
                vec![("uuid_parsing", "order_id")],
            ),
            (
                json!({"order_id": order, "reason": "dispute_prevention", "amount": 1}),
                vec![("enum", "reason")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 0}),
                vec![("greater_than", "amount")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 1.5}),
                vec![("int_type", "amount")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 1, "comment": 3}),
                vec![("string_type", "comment")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 1, "revoke_benefits": "yes"}),
                vec![("bool_type", "revoke_benefits")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 1, "metadata": {"k": ""}}),
                vec![("value_error", "k")],
            ),
            (
                json!({"order_id": order, "reason": "other", "amount": 1, "metadata": []}),
                vec![("dict_type", "metadata")],
            ),
        ];
        for (body, expected) in cases {
            let result = validate_refund_body(body.to_string().as_bytes());
            match result {
                Ok(request) => {
                    assert!(expected.is_empty(), "{body} passed");
                    assert_eq!(request.order_id, order);
                }
                Err(err) => {
                    assert_eq!(err.status, 422);
                    let got: Vec<(String, String)> = err.body["detail"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| {
                            let loc = e["loc"].as_array().unwrap();
                            (
                                e["type"].as_str().unwrap().to_owned(),
                                loc.last().unwrap().as_str().unwrap().to_owned(),
                            )
                        })
                        .collect();
                    let expected: Vec<(String, String)> = expected
                        .iter()
                        .map(|(t, l)| (t.to_string(), l.to_string()))
                        .collect();
                    assert_eq!(got, expected, "{body}");
                }
            }
        }
        let err = validate_refund_body(b"{not json").unwrap_err();
        assert_eq!(err.body["detail"][0]["type"], "json_invalid");
    }

    #[test]
    fn pages_count_from_one_and_max_page_rounds_up() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let cases = [
            (1, 2, vec![0, 1], 3),
            (3, 2, vec![4], 3),
            (4, 2, vec![], 3),
            (1, 10, vec![0, 1, 2, 3, 4], 1),
        ];
        for (page, limit, expected, max_page) in cases {
            let out = paginate(items.clone(), page, limit);
            assert_eq!(out["items"], json!(expected), "page {page} limit {limit}");
            assert_eq!(
                out["pagination"],
                json!({"total_count": 5, "max_page": max_page})
            );
        }
        assert_eq!(paginate(vec![], 1, 10)["pagination"]["max_page"], 0);
    }

    #[test]
    fn limits_above_one_hundred_or_zero_pages_are_rejected() {
        let query = |pairs: &[(&str, &str)]| -> QueryMap {
            let mut map = QueryMap::new();
            for (k, v) in pairs {
                map.entry(k.to_string()).or_default().push(v.to_string());
            }
            map
        };
        assert_eq!(page_and_limit(&query(&[])).unwrap(), (1, 10));
        assert_eq!(
            page_and_limit(&query(&[("page", "2"), ("limit", "100")])).unwrap(),
            (2, 100)
        );
        for bad in [
            vec![("limit", "101")],
            vec![("page", "0")],
            vec![("limit", "x")],
        ] {
            assert_eq!(
                page_and_limit(&query(&bad)).unwrap_err().status,
                422,
                "{bad:?}"
            );
        }
    }
}
