//! Polar webhooks: Standard Webhooks signature verification and typed events.
//!
//! Takes: the webhook secret, the `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers, the raw body and `now`. Gives: `Ok(())` for a
//! genuine, fresh delivery, and [`WebhookEvent`] for its body. Polar's quirk:
//! the HMAC-SHA256 key is the secret string INCLUDING its `whsec_` prefix, as
//! raw bytes (not base64-decoded as generic libraries do). The signed content
//! is `{id}.{timestamp}.{body}`; the header may hold several space-separated
//! `v1,<base64>` signatures, any one of which may match. Never reads the
//! clock itself and never dedupes: dedupe on `webhook-id` (stable across
//! Polar's retries) is the caller's. Fails with [`WebhookError`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::model::{Order, Refund};

/// How far `webhook-timestamp` may be from `now`, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// The three Standard Webhooks headers of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`: stable across retries of the same event.
    pub id: &'a str,
    /// `webhook-timestamp`: Unix seconds.
    pub timestamp: &'a str,
    /// `webhook-signature`: space-separated `v1,<base64>` entries.
    pub signature: &'a str,
}

/// Why a delivery was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A header is empty.
    #[error("missing webhook header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("malformed webhook-timestamp")]
    MalformedTimestamp,
    /// `webhook-signature` holds no `v1,<base64>` entry.
    #[error("malformed webhook-signature")]
    MalformedSignature,
    /// Older than the tolerance: possibly a replay.
    #[error("webhook timestamp too old")]
    TimestampTooOld,
    /// Newer than the tolerance.
    #[error("webhook timestamp in the future")]
    TimestampInFuture,
    /// No signature matches: wrong secret or altered content.
    #[error("webhook signature mismatch")]
    SignatureMismatch,
    /// The verified body is not a webhook event.
    #[error("webhook body is not a Polar event")]
    InvalidPayload(#[source] serde_json::Error),
}

impl WebhookError {
    /// Never: a rejected delivery stays rejected (Polar redelivers itself).
    pub fn is_transient(&self) -> bool {
        false
    }
}

fn mac_for(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value Polar would send (`v1,<base64>`); for test
/// servers and tests.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = mac_for(secret, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Verifies one delivery: headers present, timestamp within
/// [`TOLERANCE_SECONDS`] of `now`, and one `v1` signature matching in
/// constant time.
pub fn verify(
    secret: &str,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    for (name, value) in [
        ("webhook-id", headers.id),
        ("webhook-timestamp", headers.timestamp),
        ("webhook-signature", headers.signature),
    ] {
        if value.trim().is_empty() {
            return Err(WebhookError::MissingHeader(name));
        }
    }
    let sent_at: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::MalformedTimestamp)?;
    let age = now.timestamp() - sent_at;
    if age > TOLERANCE_SECONDS {
        return Err(WebhookError::TimestampTooOld);
    }
    if age < -TOLERANCE_SECONDS {
        return Err(WebhookError::TimestampInFuture);
    }
    let candidates: Vec<Vec<u8>> = headers
        .signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    if candidates.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    let mac = mac_for(secret, headers.id, headers.timestamp, body);
    // `verify_slice` compares in constant time.
    if candidates
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(WebhookError::SignatureMismatch)
    }
}

/// A Polar webhook event refundd cares about; others are kept as `Unknown`.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// `order.paid`.
    OrderPaid(Box<Order>),
    /// `order.refunded`.
    OrderRefunded(Box<Order>),
    /// `refund.created`.
    RefundCreated(Box<Refund>),
    /// `refund.updated`.
    RefundUpdated(Box<Refund>),
    /// Any other event type, with its raw data.
    Unknown {
        /// The `type` field.
        event_type: String,
        /// The `data` field.
        data: serde_json::Value,
    },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// Parses a verified body (`{type, timestamp, data}`) into a typed event.
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(WebhookError::InvalidPayload)?;
    let data = envelope.data;
    let event = match envelope.event_type.as_str() {
        "order.paid" => WebhookEvent::OrderPaid(typed(data)?),
        "order.refunded" => WebhookEvent::OrderRefunded(typed(data)?),
        "refund.created" => WebhookEvent::RefundCreated(typed(data)?),
        "refund.updated" => WebhookEvent::RefundUpdated(typed(data)?),
        _ => WebhookEvent::Unknown {
            event_type: envelope.event_type,
            data,
        },
    };
    Ok(event)
}

fn typed<T: serde::de::DeserializeOwned>(data: serde_json::Value) -> Result<Box<T>, WebhookError> {
    serde_json::from_value(data)
        .map(Box::new)
        .map_err(WebhookError::InvalidPayload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::polar::model::{OrderStatus, RefundStatus};
    use chrono::TimeZone;

    const SECRET: &str = "whsec_TESTSECRETdoNotUseInProd0123456789abcdef";
    const ID: &str = "7d0f2a52-6c1e-4b0a-9a4e-2f7d5c3b9e11";
    const TIMESTAMP: &str = "1767225600";
    const BODY: &str = r#"{"type":"refund.created","timestamp":"2026-01-01T00:00:00Z","data":{"id":"0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c"}}"#;
    const SIGNATURE: &str = "v1,YMM13wY+k+9yE5QowbmX5yEuQe5dpJuQZXh9Oa1GC8Q=";

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> WebhookHeaders<'a> {
        WebhookHeaders {
            id,
            timestamp,
            signature,
        }
    }

    #[test]
    fn the_known_answer_vector_verifies_and_signs_identically() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        verify(
            SECRET,
            &headers(ID, TIMESTAMP, SIGNATURE),
            BODY.as_bytes(),
            at(1_767_225_600),
        )
        .unwrap();
    }

    #[test]
    fn any_matching_signature_among_several_is_accepted() {
        let many = format!("v1,AAAA v1a,zzzz {SIGNATURE}");
        verify(
            SECRET,
            &headers(ID, TIMESTAMP, &many),
            BODY.as_bytes(),
            at(1_767_225_600),
        )
        .unwrap();
    }

    #[test]
    fn tampered_wrong_stale_future_or_malformed_deliveries_are_rejected() {
        let now = 1_767_225_600;
        let tampered = BODY.replace("refund.created", "refund.updated");
        let decoded_key_secret = "TESTSECRETdoNotUseInProd0123456789abcdef";
        let cases: Vec<(&str, &str, &str, &str, &str, i64, &str)> = vec![
            (
                "tampered body",
                SECRET,
                ID,
                TIMESTAMP,
                SIGNATURE,
                now,
                "SignatureMismatch",
            ),
            (
                "wrong secret",
                "whsec_other",
                ID,
                TIMESTAMP,
                SIGNATURE,
                now,
                "SignatureMismatch",
            ),
            (
                "secret without prefix",
                decoded_key_secret,
                ID,
                TIMESTAMP,
                SIGNATURE,
                now,
                "SignatureMismatch",
            ),
            (
                "other webhook id",
                SECRET,
                "other-id",
                TIMESTAMP,
                SIGNATURE,
                now,
                "SignatureMismatch",
            ),
            (
                "stale by 301 s",
                SECRET,
                ID,
                TIMESTAMP,
                SIGNATURE,
                now + 301,
                "TimestampTooOld",
            ),
            (
                "future by 301 s",
                SECRET,
                ID,
                TIMESTAMP,
                SIGNATURE,
                now - 301,
                "TimestampInFuture",
            ),
            (
                "non-numeric timestamp",
                SECRET,
                ID,
                "yesterday",
                SIGNATURE,
                now,
                "MalformedTimestamp",
            ),
            (
                "no v1 entry",
                SECRET,
                ID,
                TIMESTAMP,
                "v2,abc",
                now,
                "MalformedSignature",
            ),
            (
                "not base64",
                SECRET,
                ID,
                TIMESTAMP,
                "v1,!!!",
                now,
                "MalformedSignature",
            ),
            (
                "empty signature",
                SECRET,
                ID,
                TIMESTAMP,
                "",
                now,
                "MissingHeader",
            ),
            (
                "empty id",
                SECRET,
                "",
                TIMESTAMP,
                SIGNATURE,
                now,
                "MissingHeader",
            ),
        ];
        for (name, secret, id, timestamp, signature, now, expected) in cases {
            let body = if name == "tampered body" {
                tampered.as_str()
            } else {
                BODY
            };
            let err = verify(
                secret,
                &headers(id, timestamp, signature),
                body.as_bytes(),
                at(now),
            )
            .expect_err(name);
            assert!(format!("{err:?}").starts_with(expected), "{name}: {err:?}");
        }
    }

    #[test]
    fn timestamps_at_the_edge_of_the_tolerance_are_accepted() {
        for now in [1_767_225_600 + 300, 1_767_225_600 - 300] {
            verify(
                SECRET,
                &headers(ID, TIMESTAMP, SIGNATURE),
                BODY.as_bytes(),
                at(now),
            )
            .unwrap();
        }
    }

    fn refund_json() -> serde_json::Value {
        serde_json::json!({
            "id": "0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c",
            "created_at": "2026-01-01T00:00:00Z",
            "modified_at": null,
            "status": "pending",
            "reason": "dispute_prevention",
            "amount": 450, "tax_amount": 85, "currency": "eur",
            "organization_id": "11111111-1111-4111-8111-111111111111",
            "order_id": "22222222-2222-4222-8222-222222222222",
            "subscription_id": null,
            "customer_id": "33333333-3333-4333-8333-333333333333",
            "revoke_benefits": false,
            "metadata": {"refundd_key": "r_1"},
            "dispute": null
        })
    }

    fn order_json() -> serde_json::Value {
        serde_json::json!({
            "id": "22222222-2222-4222-8222-222222222222",
            "created_at": "2026-01-01T00:00:00Z",
            "status": "partially_refunded", "paid": true,
            "net_amount": 900, "tax_amount": 171, "total_amount": 1071,
            "refunded_amount": 450, "refunded_tax_amount": 85,
            "refundable_amount": 450, "refundable_tax_amount": 86,
            "currency": "eur", "invoice_number": "ANUMI-AAAAAAAB-0001", "receipt_number": null,
            "customer_id": "33333333-3333-4333-8333-333333333333",
            "customer": {"id": "33333333-3333-4333-8333-333333333333", "email": "a@example.com"},
            "product": null, "description": "Starter 50", "metadata": {}
        })
    }

    #[test]
    fn events_of_interest_parse_into_typed_variants() {
        let cases = [
            ("refund.created", refund_json()),
            ("refund.updated", refund_json()),
            ("order.paid", order_json()),
            ("order.refunded", order_json()),
            ("checkout.created", serde_json::json!({"id": "c"})),
        ];
        for (event_type, data) in cases {
            let body = serde_json::json!({"type": event_type, "timestamp": "2026-01-01T00:00:00Z", "data": data});
            let event = parse_event(body.to_string().as_bytes()).unwrap();
            match (event_type, event) {
                ("refund.created", WebhookEvent::RefundCreated(refund)) => {
                    assert_eq!(refund.status, RefundStatus::Pending);
                    assert_eq!(refund.metadata["refundd_key"].as_str(), Some("r_1"));
                }
                ("refund.updated", WebhookEvent::RefundUpdated(refund)) => {
                    assert_eq!(refund.amount, 450)
                }
                ("order.paid", WebhookEvent::OrderPaid(order)) => assert_eq!(order.net_amount, 900),
                ("order.refunded", WebhookEvent::OrderRefunded(order)) => {
                    assert_eq!(order.status, OrderStatus::PartiallyRefunded)
                }
                ("checkout.created", WebhookEvent::Unknown { event_type, data }) => {
                    assert_eq!(event_type, "checkout.created");
                    assert_eq!(data["id"], "c");
                }
                (kind, other) => panic!("{kind} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn a_known_event_with_unreadable_data_is_an_invalid_payload() {
        let err = parse_event(BODY.as_bytes()).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidPayload(_)));
        assert!(matches!(
            parse_event(b"not json"),
            Err(WebhookError::InvalidPayload(_))
        ));
    }
}
