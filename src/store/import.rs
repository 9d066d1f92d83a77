//! The ledger import: DESIGN.md's JSON Lines contract, one object per
//! line, each upserted by id.
//!
//! Takes any `BufRead`; gives an [`ImportReport`] with how many lines were
//! imported and, for every line that was not, its number and a plain
//! reason. A bad line never stops the import: it is validated (known
//! `type`, no unknown fields, non-negative amounts and credits, known
//! statuses, RFC 3339 times, a 3-letter currency made uppercase, order
//! UUIDs made lowercase, a `refunded_at` only on a refunded generation)
//! before anything is written. The contract's optional facts
//! (`tax_amount`, `invoice_number`, `receipt_number`, a generation's
//! `refunded_at`) are stored when given and left empty when not. Good lines are
//! written in transactions of [`BATCH_LINES`] lines. Never deletes a row.
//!
//! Fails with [`StoreError`] only when the input cannot be read or the
//! database fails (then the batches already committed stay imported;
//! re-running the import is safe because every write is an upsert).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::io::BufRead;

use super::{Result, Store, StoreError};
use crate::domain::{
    Chargeback, ChargebackStatus, CreditReason, Generation, GenerationStatus, Order, Refund,
    Wallet, WalletCredit, WalletStatus,
};

/// Lines written per transaction.
pub const BATCH_LINES: usize = 500;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines upserted.
    pub imported: u64,
    /// Lines refused, in file order.
    pub rejected: Vec<RejectedLine>,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 1-based line number in the input.
    pub line_no: u64,
    /// Why, in words (`amount must not be negative, got -5`).
    pub reason: String,
}

/// One line of the contract, as written.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Wallet(WalletLine),
    Order(OrderLine),
    Generation(GenerationLine),
    WalletCredit(CreditLine),
    Refund(RefundLine),
    Chargeback(ChargebackLine),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletLine {
    id: String,
    email: String,
    status: WalletStatus,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderLine {
    id: String,
    wallet: String,
    product: String,
    credits: i64,
    amount: i64,
    #[serde(default)]
    tax_amount: Option<i64>,
    currency: String,
    #[serde(default)]
    invoice_number: Option<String>,
    #[serde(default)]
    receipt_number: Option<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationLine {
    id: String,
    wallet: String,
    #[serde(default)]
    order: Option<String>,
    credits: i64,
    status: GenerationStatus,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    refunded: bool,
    /// Optional: when the credits came back (RFC 3339).
    #[serde(default)]
    refunded_at: Option<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditLine {
    id: String,
    wallet: String,
    credits: i64,
    reason: CreditReason,
    /// Optional extension: the generation the credit compensates.
    #[serde(default)]
    generation: Option<String>,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundLine {
    id: String,
    order: String,
    amount: i64,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargebackLine {
    id: String,
    order: String,
    status: ChargebackStatus,
    created_at: String,
}

/// A validated line, ready to upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Wallet(Wallet),
    Order(Order),
    Generation(Generation),
    Credit(WalletCredit),
    Refund(Refund),
    Chargeback(Chargeback),
}

/// Reads the JSON Lines in `reader` and upserts every valid line; calls
/// `progress` with the number of lines read after each committed batch.
/// Blank lines are skipped.
pub async fn import_jsonl(
    store: &Store,
    reader: impl BufRead,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut batch = Vec::with_capacity(BATCH_LINES);
    let mut line_no = 0u64;
    for line in reader.lines() {
        line_no += 1;
        let line = line.map_err(|source| StoreError::ImportRead { line_no, source })?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(record) => batch.push(record),
            Err(reason) => report.rejected.push(RejectedLine { line_no, reason }),
        }
        if batch.len() >= BATCH_LINES {
            report.imported += write_batch(store, &mut batch).await?;
            progress(line_no);
        }
    }
    report.imported += write_batch(store, &mut batch).await?;
    progress(line_no);
    Ok(report)
}

async fn write_batch(store: &Store, batch: &mut Vec<Record>) -> Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    for record in batch.iter() {
        match record {
            Record::Wallet(w) => tx.upsert_wallet(w).await?,
            Record::Order(o) => tx.upsert_order(o).await?,
            Record::Generation(g) => tx.upsert_generation(g).await?,
            Record::Credit(c) => tx.upsert_wallet_credit(c).await?,
            Record::Refund(r) => tx.upsert_refund(r).await?,
            Record::Chargeback(c) => tx.upsert_chargeback(c).await?,
        }
    }
    tx.commit().await?;
    let written = batch.len() as u64;
    batch.clear();
    Ok(written)
}

/// Parses and validates one line; the error is the reason in words.
fn parse_line(text: &str) -> Result<Record, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| plain_serde_error(&e))?;
    Ok(match line {
        Line::Wallet(w) => {
            let email = w.email.trim();
            if !email.contains('@') {
                return Err(format!("email `{email}` is not an address"));
            }
            Record::Wallet(Wallet {
                id: id("id", w.id)?,
                email: email.to_owned(),
                status: w.status,
                created_at: time("created_at", &w.created_at)?,
            })
        }
        Line::Order(o) => Record::Order(Order {
            id: order_uuid("id", &o.id)?,
            wallet_id: id("wallet", o.wallet)?,
            product: o.product,
            credits: non_negative("credits", o.credits)?,
            amount: non_negative("amount", o.amount)?,
            tax_amount: o
                .tax_amount
                .map(|t| non_negative("tax_amount", t))
                .transpose()?,
            currency: currency(&o.currency)?,
            invoice_number: o.invoice_number.map(|n| n.trim().to_owned()),
            receipt_number: o.receipt_number.map(|n| n.trim().to_owned()),
            created_at: time("created_at", &o.created_at)?,
        }),
        Line::Generation(g) => {
            let refunded_at = g
                .refunded_at
                .as_deref()
                .map(|at| time("refunded_at", at))
                .transpose()?;
            // A refund time on a generation whose credits did not come
            // back cannot both be true; guessing which half is wrong could
            // credit a generation twice or never.
            if refunded_at.is_some() && !g.refunded {
                return Err("refunded_at is given but refunded is not true".to_owned());
            }
            Record::Generation(Generation {
                id: id("id", g.id)?,
                wallet_id: id("wallet", g.wallet)?,
                order_id: g.order.map(|o| order_uuid("order", &o)).transpose()?,
                credits: non_negative("credits", g.credits)?,
                status: g.status,
                style: g.style,
                refunded: g.refunded,
                refunded_at,
                created_at: time("created_at", &g.created_at)?,
            })
        }
        Line::WalletCredit(c) => Record::Credit(WalletCredit {
            id: id("id", c.id)?,
            wallet_id: id("wallet", c.wallet)?,
            credits: non_negative("credits", c.credits)?,
            reason: c.reason,
            generation_id: c.generation.map(|g| id("generation", g)).transpose()?,
            created_at: time("created_at", &c.created_at)?,
        }),
        Line::Refund(r) => Record::Refund(Refund {
            id: id("id", r.id)?,
            order_id: order_uuid("order", &r.order)?,
            amount: non_negative("amount", r.amount)?,
            created_at: time("created_at", &r.created_at)?,
        }),
        Line::Chargeback(c) => Record::Chargeback(Chargeback {
            id: id("id", c.id)?,
            order_id: order_uuid("order", &c.order)?,
            status: c.status,
            created_at: time("created_at", &c.created_at)?,
        }),
    })
}

/// serde_json's message without its ` at line 1 column N` suffix (the
/// line number is reported separately; a column confuses more than it
/// helps).
fn plain_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

fn id(field: &str, value: String) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    Ok(trimmed.to_owned())
}

fn non_negative(field: &str, value: i64) -> Result<i64, String> {
    if value < 0 {
        return Err(format!("{field} must not be negative, got {value}"));
    }
    Ok(value)
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field} `{value}` is not an RFC 3339 time"))
}

fn currency(value: &str) -> Result<String, String> {
    let code = value.trim();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "currency `{value}` is not a 3-letter ISO 4217 code"
        ));
    }
    Ok(code.to_ascii_uppercase())
}

fn order_uuid(field: &str, value: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(value.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("{field} `{value}` is not an order UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "0D3F5A2C-1111-4222-8333-944455556666";

    #[test]
    fn a_valid_line_of_each_type_is_normalised() {
        let order = format!(
            r#"{{"type":"order","id":"{ORDER}","wallet":"w_1","product":"Starter 50","credits":50,"amount":900,"tax_amount":171,"currency":"eur","invoice_number":"ANUMI-AAAAAAAB-0001","created_at":"2026-06-01T10:00:00+02:00"}}"#
        );
        match parse_line(&order).unwrap() {
            Record::Order(o) => {
                assert_eq!(o.id, ORDER.to_lowercase());
                assert_eq!(o.currency, "EUR");
                assert_eq!(o.created_at.to_rfc3339(), "2026-06-01T08:00:00+00:00");
                assert_eq!(o.receipt_number, None);
            }
            other => panic!("expected an order, got {other:?}"),
        }
        let credit = r#"{"type":"wallet_credit","id":"wc_1","wallet":"w_1","credits":1,"reason":"failed_generation","generation":"gen_1","created_at":"2026-06-01T10:00:00Z"}"#;
        match parse_line(credit).unwrap() {
            Record::Credit(c) => {
                assert_eq!(c.reason, CreditReason::FailedGeneration);
                assert_eq!(c.generation_id.as_deref(), Some("gen_1"));
            }
            other => panic!("expected a credit, got {other:?}"),
        }
        let generation = format!(
            r#"{{"type":"generation","id":"gen_1","wallet":"w_1","order":"{ORDER}","credits":1,"status":"failed","style":"ghibli","created_at":"2026-06-01T10:00:00Z"}}"#
        );
        match parse_line(&generation).unwrap() {
            Record::Generation(g) => {
                assert!(!g.refunded, "refunded defaults to false");
                assert_eq!(g.refunded_at, None, "refunded_at is optional");
                assert_eq!(g.order_id, Some(ORDER.to_lowercase()));
            }
            other => panic!("expected a generation, got {other:?}"),
        }
        let refunded = r#"{"type":"generation","id":"gen_2","wallet":"w_1","credits":1,"status":"failed","refunded":true,"refunded_at":"2026-06-01T10:00:05+02:00","created_at":"2026-06-01T09:59:00+02:00"}"#;
        match parse_line(refunded).unwrap() {
            Record::Generation(g) => assert_eq!(
                g.refunded_at.map(|t| t.to_rfc3339()).as_deref(),
                Some("2026-06-01T08:00:05+00:00")
            ),
            other => panic!("expected a generation, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_line_is_refused_with_a_plain_reason() {
        let cases: &[(&str, &str)] = &[
            ("not json", "expected ident"),
            (r#"{"id":"w_1"}"#, "missing field `type`"),
            (r#"{"type":"coupon","id":"c"}"#, "unknown variant `coupon`"),
            (
                r#"{"type":"wallet","id":"w_1","email":"a@x","status":"active","created_at":"2026-06-01T10:00:00Z","vip":true}"#,
                "unknown field `vip`",
            ),
            (
                r#"{"type":"wallet","id":"w_1","email":"a@x","status":"frozen","created_at":"2026-06-01T10:00:00Z"}"#,
                "unknown variant `frozen`",
            ),
            (
                r#"{"type":"wallet","id":"w_1","email":"a@x","status":"active","created_at":"yesterday"}"#,
                "created_at `yesterday` is not an RFC 3339 time",
            ),
            (
                r#"{"type":"wallet","id":" ","email":"a@x","status":"active","created_at":"2026-06-01T10:00:00Z"}"#,
                "id must not be empty",
            ),
            (
                r#"{"type":"wallet","id":"w_1","email":"nobody","status":"active","created_at":"2026-06-01T10:00:00Z"}"#,
                "email `nobody` is not an address",
            ),
            (
                r#"{"type":"generation","id":"g","wallet":"w_1","credits":1,"status":"failed","refunded":true,"refunded_at":"June 3rd","created_at":"2026-06-01T10:00:00Z"}"#,
                "refunded_at `June 3rd` is not an RFC 3339 time",
            ),
            (
                r#"{"type":"generation","id":"g","wallet":"w_1","credits":1,"status":"failed","refunded_at":"2026-06-02T10:00:00Z","created_at":"2026-06-01T10:00:00Z"}"#,
                "refunded_at is given but refunded is not true",
            ),
            (
                r#"{"type":"refund","id":"rf_1","order":"0d3f5a2c-1111-4222-8333-944455556666","amount":-5,"created_at":"2026-06-01T10:00:00Z"}"#,
                "amount must not be negative, got -5",
            ),
            (
                r#"{"type":"refund","id":"rf_1","order":"ord-17","amount":5,"created_at":"2026-06-01T10:00:00Z"}"#,
                "order `ord-17` is not an order UUID",
            ),
            (
                r#"{"type":"order","id":"0d3f5a2c-1111-4222-8333-944455556666","wallet":"w_1","product":"P","credits":5,"amount":9,"currency":"EURO","created_at":"2026-06-01T10:00:00Z"}"#,
                "currency `EURO` is not a 3-letter ISO 4217 code",
            ),
            (
                r#"{"type":"order","id":"0d3f5a2c-1111-4222-8333-944455556666","wallet":"w_1","product":"P","credits":5,"amount":"9","currency":"EUR","created_at":"2026-06-01T10:00:00Z"}"#,
                "invalid type: string \"9\", expected i64",
            ),
        ];
        for (line, want) in cases {
            let reason = parse_line(line).expect_err(line);
            assert!(
                reason.contains(want),
                "line {line}: reason `{reason}` should say `{want}`"
            );
            assert!(!reason.contains("column"), "no column noise in `{reason}`");
        }
    }
}
