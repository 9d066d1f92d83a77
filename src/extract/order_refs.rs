//! Order references in customer text (NOTES.md, "What customers quote"):
//! invoice numbers `{PREFIX}-{8 letters}-{NNNN}` and `{PREFIX}-{NNNN}`
//! (prefix configured, any case), receipt numbers `RCPT-{8 letters}-{NNNN}`
//! and order UUIDs (bare, or inside portal links `…/portal/orders/{uuid}`
//! and `…?…id={uuid}`, which are found as the UUID they carry).
//!
//! Values are normalised (invoice and receipt numbers uppercase, UUIDs
//! lowercase), reported in order of appearance without repeats. A bare
//! UUID is reported as [`OrderRef::Uuid`]; whether it is an order is the
//! ledger's call. Matches need ASCII word boundaries on both sides, so
//! `XANUMI-0001` or `ANUMI-00012` are not references.

use regex::Regex;

use super::ExtractError;
use crate::domain::OrderRef;

/// Finds order references; built once from the configured prefix.
#[derive(Debug, Clone)]
pub struct OrderRefFinder {
    pattern: Regex,
}

impl OrderRefFinder {
    /// A finder for invoice numbers with `invoice_prefix` (letters and
    /// digits only).
    pub fn new(invoice_prefix: &str) -> Result<Self, ExtractError> {
        let prefix = invoice_prefix.trim();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ExtractError::InvalidPrefix {
                prefix: invoice_prefix.to_owned(),
            });
        }
        let hex = "[0-9a-f]";
        let pattern = format!(
            r"(?i-u)\b(?:(?P<receipt>RCPT-[a-z]{{8}}-[0-9]{{4}})|(?P<invoice>{prefix}-(?:[a-z]{{8}}-)?[0-9]{{4}})|(?P<uuid>{hex}{{8}}-{hex}{{4}}-{hex}{{4}}-{hex}{{4}}-{hex}{{12}}))\b"
        );
        let pattern = Regex::new(&pattern).map_err(|source| ExtractError::ConfigPattern {
            setting: "invoice_prefix",
            pattern: invoice_prefix.to_owned(),
            source,
        })?;
        Ok(OrderRefFinder { pattern })
    }

    /// References in `texts`, in order of appearance, without repeats.
    pub fn find<'t>(&self, texts: impl IntoIterator<Item = &'t str>) -> Vec<OrderRef> {
        let mut found = Vec::new();
        for text in texts {
            for caps in self.pattern.captures_iter(text) {
                let reference = if let Some(m) = caps.name("receipt") {
                    OrderRef::Receipt(m.as_str().to_ascii_uppercase())
                } else if let Some(m) = caps.name("invoice") {
                    OrderRef::Invoice(m.as_str().to_ascii_uppercase())
                } else if let Some(m) = caps.name("uuid") {
                    OrderRef::Uuid(m.as_str().to_ascii_lowercase())
                } else {
                    continue;
                };
                if !found.contains(&reference) {
                    found.push(reference);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c";

    fn inv(v: &str) -> OrderRef {
        OrderRef::Invoice(v.into())
    }

    fn uuid(v: &str) -> OrderRef {
        OrderRef::Uuid(v.into())
    }

    #[test]
    fn every_form_customers_quote_is_found_and_normalised() {
        let finder = OrderRefFinder::new("ANUMI").unwrap();
        let cases: Vec<(&str, Vec<OrderRef>)> = vec![
            (
                "invoice ANUMI-ABCDEFGH-0001 please",
                vec![inv("ANUMI-ABCDEFGH-0001")],
            ),
            ("short anumi-0042.", vec![inv("ANUMI-0042")]),
            (
                "mixed Anumi-AbCdEfGh-1234",
                vec![inv("ANUMI-ABCDEFGH-1234")],
            ),
            (
                "receipt rcpt-abcdefgh-0001",
                vec![OrderRef::Receipt("RCPT-ABCDEFGH-0001".into())],
            ),
            (
                "https://polar.sh/anumi/portal/orders/0B8C2A1E-3F4D-4E5A-8B6C-7D8E9F0A1B2C?customer_session_token=REDACTED",
                vec![uuid(UUID)],
            ),
            (
                "https://polar.sh/anumi/portal?customer_session_token=REDACTED&id=0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c",
                vec![uuid(UUID)],
            ),
            (
                "bare 0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2c.",
                vec![uuid(UUID)],
            ),
            (
                "ANUMI-0001, ANUMI-0002 and again ANUMI-0001",
                vec![inv("ANUMI-0001"), inv("ANUMI-0002")],
            ),
            (
                "(ANUMI-0001)/ANUMI-0003",
                vec![inv("ANUMI-0001"), inv("ANUMI-0003")],
            ),
            (
                "XANUMI-0001 ANUMI-00012 ANUMI-ABC-0001 ANUMI-ABCDEFGHI-0001",
                vec![],
            ),
            ("OTHER-ABCDEFGH-0001 RCPT-0001", vec![]),
            ("not a uuid 0b8c2a1e-3f4d-4e5a-8b6c-7d8e9f0a1b2", vec![]),
            ("Rückerstattung für ANUMI-0007ü", vec![inv("ANUMI-0007")]),
        ];
        for (text, expected) in cases {
            assert_eq!(finder.find([text]), expected, "{text}");
        }
    }

    #[test]
    fn references_keep_the_order_of_the_texts_given() {
        let finder = OrderRefFinder::new("anumi").unwrap();
        let found = finder.find(["Re: ANUMI-0002", "body ANUMI-0001 and ANUMI-0002", UUID]);
        assert_eq!(
            found,
            vec![inv("ANUMI-0002"), inv("ANUMI-0001"), uuid(UUID)]
        );
    }

    #[test]
    fn a_prefix_that_is_not_letters_and_digits_is_refused() {
        for prefix in ["", "  ", "AN-UMI", "A.*"] {
            assert!(
                matches!(
                    OrderRefFinder::new(prefix),
                    Err(ExtractError::InvalidPrefix { .. })
                ),
                "{prefix:?}"
            );
        }
    }
}
