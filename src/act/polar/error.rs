//! What can go wrong talking to Polar, named for what it means to refundd.
//!
//! Takes: an HTTP status and body (or a transport failure). Gives:
//! [`PolarError`], with Polar's named errors (`RefundedAlready`, …) as their
//! own variants and `is_transient()` for retries. Never hides an unclear
//! refund outcome: that is [`PolarError::Unclear`], never `Transient`.

use std::time::Duration;

use serde::Deserialize;

/// An error from the Polar client.
#[derive(Debug, thiserror::Error)]
pub enum PolarError {
    /// 403 `RefundedAlready`: nothing left to refund on the order.
    #[error("order is already fully refunded: {detail}")]
    RefundedAlready {
        /// Polar's message.
        detail: String,
    },
    /// 403 `RefundDisputedPayment`: the payment has an open chargeback.
    #[error("payment is disputed: {detail}")]
    RefundDisputedPayment {
        /// Polar's message.
        detail: String,
    },
    /// 403 `RefundsBlocked`: refunds are blocked for the organization.
    #[error("refunds are blocked: {detail}")]
    RefundsBlocked {
        /// Polar's message.
        detail: String,
    },
    /// 404 `RefundUnknownPayment`: the order has no payment to refund.
    #[error("no payment found for the order: {detail}")]
    RefundUnknownPayment {
        /// Polar's message.
        detail: String,
    },
    /// 422: the amount is more than the order's refundable amount.
    #[error("refund amount exceeds refundable amount: {detail}")]
    AmountExceedsRefundable {
        /// Polar's message.
        detail: String,
    },
    /// 404 on an order, or 422 "order not found" on a refund.
    #[error("unknown order: {detail}")]
    UnknownOrder {
        /// Polar's message.
        detail: String,
    },
    /// 429 after the allowed retries (or a `Retry-After` longer than we wait).
    #[error("rate limited by Polar (retry after {retry_after:?})")]
    RateLimited {
        /// Polar's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 401, or 403 for a missing scope: the token is wrong.
    #[error("Polar rejected the token ({status})")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
    },
    /// A refund POST whose outcome is unknown (timeout, 5xx, lost response):
    /// the refund may exist. Look it up with `list_refunds_for_order` before
    /// posting again.
    #[error("refund outcome unclear: {reason}")]
    Unclear {
        /// What happened (never contains the token).
        reason: String,
    },
    /// A failure a retry may fix (network, timeout, 5xx on a read), after the
    /// allowed retries. Safe to retry: nothing was changed at Polar.
    #[error("transient Polar failure: {reason}")]
    Transient {
        /// What happened (never contains the token).
        reason: String,
    },
    /// A response Polar should not have sent, or one the client cannot read.
    #[error("unreadable Polar response for {what}")]
    InvalidResponse {
        /// Which call.
        what: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The client could not be built (bad base URL, TLS setup).
    #[error("Polar client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// Any other HTTP error, with its body.
    #[error("Polar answered {status}: {body}")]
    Other {
        /// The HTTP status.
        status: u16,
        /// The response body, as text.
        body: String,
    },
}

impl PolarError {
    /// Whether repeating the same call later may succeed. `Unclear` is not
    /// transient: the caller must reconcile before posting again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }
}

/// Which call a response answers; decides how a 404/422 reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `GET /v1/orders/{id}`.
    GetOrder,
    /// `POST /v1/refunds/`.
    CreateRefund,
    /// Any list.
    List,
}

#[derive(Deserialize)]
struct NamedError {
    error: String,
    #[serde(default)]
    detail: serde_json::Value,
}

#[derive(Deserialize)]
struct ValidationError {
    #[serde(default)]
    loc: Vec<serde_json::Value>,
    #[serde(default)]
    msg: String,
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct HttpValidationError {
    detail: Vec<ValidationError>,
}

fn detail_text(detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn loc_ends_with(loc: &[serde_json::Value], field: &str) -> bool {
    loc.last().and_then(|v| v.as_str()) == Some(field)
}

/// Maps a non-success, non-429, non-5xx response to an error.
pub(crate) fn classify(call: Call, status: u16, body: &str) -> PolarError {
    if status == 401 {
        return PolarError::Unauthorized { status };
    }
    if let Ok(named) = serde_json::from_str::<NamedError>(body) {
        let detail = detail_text(&named.detail);
        match named.error.as_str() {
            "RefundedAlready" => return PolarError::RefundedAlready { detail },
            "RefundDisputedPayment" => return PolarError::RefundDisputedPayment { detail },
            "RefundsBlocked" => return PolarError::RefundsBlocked { detail },
            "RefundUnknownPayment" => return PolarError::RefundUnknownPayment { detail },
            "Unauthorized" | "InsufficientScope" | "NotPermitted" => {
                return PolarError::Unauthorized { status };
            }
            "ResourceNotFound" if call != Call::List => {
                return PolarError::UnknownOrder { detail };
            }
            _ => {}
        }
    }
    if status == 404 && call == Call::GetOrder {
        return PolarError::UnknownOrder {
            detail: body.to_owned(),
        };
    }
    if status == 422
        && let Ok(validation) = serde_json::from_str::<HttpValidationError>(body)
    {
        for entry in &validation.detail {
            if call == Call::CreateRefund
                && loc_ends_with(&entry.loc, "amount")
                && entry.msg.to_lowercase().contains("exceed")
            {
                return PolarError::AmountExceedsRefundable {
                    detail: entry.msg.clone(),
                };
            }
            // A malformed id is also unknown to Polar; a well-formed id that
            // matches nothing comes back as a value error on `order_id`.
            let on_order_id = call == Call::CreateRefund && loc_ends_with(&entry.loc, "order_id");
            let on_path_id = call == Call::GetOrder && loc_ends_with(&entry.loc, "id");
            if (on_order_id && entry.kind != "missing") || on_path_id {
                return PolarError::UnknownOrder {
                    detail: entry.msg.clone(),
                };
            }
        }
    }
    PolarError::Other {
        status,
        body: body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polar_error_bodies_map_to_typed_errors() {
        let cases: Vec<(Call, u16, &str, &str)> = vec![
            (
                Call::CreateRefund,
                403,
                r#"{"error":"RefundedAlready","detail":"Order is already fully refunded."}"#,
                "RefundedAlready",
            ),
            (
                Call::CreateRefund,
                403,
                r#"{"error":"RefundDisputedPayment","detail":"x"}"#,
                "RefundDisputedPayment",
            ),
            (
                Call::CreateRefund,
                403,
                r#"{"error":"RefundsBlocked","detail":"x"}"#,
                "RefundsBlocked",
            ),
            (
                Call::CreateRefund,
                404,
                r#"{"error":"RefundUnknownPayment","detail":"x"}"#,
                "RefundUnknownPayment",
            ),
            (
                Call::CreateRefund,
                422,
                r#"{"detail":[{"type":"value_error","loc":["body","amount"],"msg":"Refund amount exceeds refundable amount.","input":5}]}"#,
                "AmountExceedsRefundable",
            ),
            (
                Call::CreateRefund,
                422,
                r#"{"detail":[{"type":"value_error","loc":["body","order_id"],"msg":"Order not found","input":"x"}]}"#,
                "UnknownOrder",
            ),
            (
                Call::CreateRefund,
                422,
                r#"{"detail":[{"type":"missing","loc":["body","order_id"],"msg":"Field required","input":{}}]}"#,
                "Other",
            ),
            (
                Call::GetOrder,
                404,
                r#"{"error":"ResourceNotFound","detail":"Not found"}"#,
                "UnknownOrder",
            ),
            (Call::GetOrder, 404, "not json", "UnknownOrder"),
            (
                Call::GetOrder,
                422,
                r#"{"detail":[{"type":"uuid_parsing","loc":["path","id"],"msg":"Input should be a valid UUID","input":"x"}]}"#,
                "UnknownOrder",
            ),
            (
                Call::List,
                401,
                r#"{"error":"Unauthorized"}"#,
                "Unauthorized",
            ),
            (
                Call::List,
                403,
                r#"{"error":"InsufficientScope","detail":"x"}"#,
                "Unauthorized",
            ),
            (Call::List, 400, "bad", "Other"),
        ];
        for (call, status, body, expected) in cases {
            let err = classify(call, status, body);
            let name = format!("{err:?}");
            assert!(
                name.starts_with(expected),
                "{call:?} {status} {body} gave {name}, expected {expected}"
            );
        }
    }

    #[test]
    fn only_rate_limits_and_transient_failures_are_transient() {
        let cases = [
            (PolarError::RateLimited { retry_after: None }, true),
            (PolarError::Transient { reason: "x".into() }, true),
            (PolarError::Unclear { reason: "x".into() }, false),
            (PolarError::Unauthorized { status: 401 }, false),
            (
                PolarError::RefundedAlready {
                    detail: String::new(),
                },
                false,
            ),
            (
                PolarError::Other {
                    status: 400,
                    body: String::new(),
                },
                false,
            ),
        ];
        for (err, transient) in cases {
            assert_eq!(err.is_transient(), transient, "{err:?}");
        }
    }
}
