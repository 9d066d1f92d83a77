//! Deny reasons as data: what a reviewer may deny a request with, each a
//! stable id (what the console form, the JSON API and `refundd decide
//! --reason` send), a label for the console, the policy clause the trace
//! cites and the reply the customer gets.
//!
//! Takes `[review]` ([`ReviewConfig`]); gives [`DenyReasons`], the shipped
//! four (`all_credits_used`, `window_expired`, `subjective`, `terminated`,
//! answered with their shipped replies) followed by the configured ones. A
//! configured reason with a shipped id replaces that one in place; a new id
//! is added after them. A reason's `template` names either a shipped reply
//! kind's template (`subjective_denied`, …: the reply is that kind) or the
//! operator's own body, read from `[reply] templates_dir` as
//! `{lang}/{template}.txt` in every language (the reply is
//! `reason_denied`). Pure: never reads files (the reply stage checks the
//! templates) and fails only in [`ReviewConfig::validate`], at start.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::domain::{Clause, ReplyKind};

/// `[review]`: what reviewers decide with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// `[[review.deny_reasons]]`: reasons beyond (or replacing, by id) the
    /// shipped four.
    pub deny_reasons: Vec<DenyReasonConfig>,
}

/// One `[[review.deny_reasons]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyReasonConfig {
    /// The stable id forms and the API send: lower-case letters, digits and
    /// `_`, starting with a letter (e.g. `duplicate_order`).
    pub id: String,
    /// What the console lists (e.g. `P4 — bought the same pack twice`).
    pub label: String,
    /// The policy clause the decision's trace cites (`P1` … `P7`, `ID`,
    /// `AUTH`).
    pub clause: Clause,
    /// The reply: a shipped kind's template name, or a body of the
    /// operator's in `[reply] templates_dir` (`{lang}/{template}.txt`).
    pub template: String,
}

/// The reply a reason sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReply {
    /// A shipped reply kind, with its own template and facts.
    Kind(ReplyKind),
    /// `reason_denied` with the operator's body template of this name.
    Template(String),
}

/// A reason a reviewer may deny with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyReason {
    /// The stable id (`subjective`, `duplicate_order`).
    pub id: String,
    /// The label the console shows.
    pub label: String,
    /// The clause the trace cites.
    pub clause: Clause,
    /// What the customer is sent.
    pub reply: DenyReply,
}

impl DenyReason {
    fn shipped(id: &str, label: &str, clause: Clause, kind: ReplyKind) -> DenyReason {
        DenyReason {
            id: id.into(),
            label: label.into(),
            clause,
            reply: DenyReply::Kind(kind),
        }
    }

    fn configured(config: &DenyReasonConfig) -> DenyReason {
        let reply = crate::reply::shipped_bodies()
            .find(|(_, name)| *name == config.template)
            .map_or_else(
                || DenyReply::Template(config.template.clone()),
                |(kind, _)| DenyReply::Kind(kind),
            );
        DenyReason {
            id: config.id.clone(),
            label: config.label.clone(),
            clause: config.clause,
            reply,
        }
    }

    /// The reply kind the decision records.
    pub fn reply_kind(&self) -> ReplyKind {
        match &self.reply {
            DenyReply::Kind(kind) => *kind,
            DenyReply::Template(_) => ReplyKind::ReasonDenied,
        }
    }

    /// The operator's body template, for a `reason_denied` reply.
    pub fn body_template(&self) -> Option<&str> {
        match &self.reply {
            DenyReply::Kind(_) => None,
            DenyReply::Template(name) => Some(name),
        }
    }
}

/// Every reason a reviewer may deny with, in the order the console lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyReasons {
    reasons: Vec<DenyReason>,
}

impl Default for DenyReasons {
    fn default() -> Self {
        DenyReasons::shipped()
    }
}

impl DenyReasons {
    /// The shipped four, with the ids the API has always taken.
    pub fn shipped() -> DenyReasons {
        DenyReasons {
            reasons: vec![
                DenyReason::shipped(
                    "all_credits_used",
                    "P2 — every credit of the pack was used",
                    Clause::P2,
                    ReplyKind::CashRefundAllUsed,
                ),
                DenyReason::shipped(
                    "window_expired",
                    "P4 — cash refund asked after the 14-day window",
                    Clause::P4,
                    ReplyKind::WindowExpired,
                ),
                DenyReason::shipped(
                    "subjective",
                    "P4 — subjective dissatisfaction",
                    Clause::P4,
                    ReplyKind::SubjectiveDenied,
                ),
                DenyReason::shipped(
                    "terminated",
                    "P4 — account terminated for ToS violations",
                    Clause::P4,
                    ReplyKind::TerminatedDenied,
                ),
            ],
        }
    }

    /// The shipped reasons with `config`'s applied: a shipped id is
    /// replaced in place, a new one added at the end.
    pub fn from_config(config: &ReviewConfig) -> DenyReasons {
        let mut reasons = DenyReasons::shipped();
        for configured in &config.deny_reasons {
            let reason = DenyReason::configured(configured);
            match reasons.reasons.iter_mut().find(|r| r.id == reason.id) {
                Some(slot) => *slot = reason,
                None => reasons.reasons.push(reason),
            }
        }
        reasons
    }

    /// Every reason, in console order.
    pub fn all(&self) -> &[DenyReason] {
        &self.reasons
    }

    /// The reason with this id.
    pub fn get(&self, id: &str) -> Option<&DenyReason> {
        self.reasons.iter().find(|r| r.id == id)
    }

    /// The ids, comma separated, for messages.
    pub fn ids(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The operator's body templates the reasons need (each once).
    pub fn body_templates(&self) -> Vec<String> {
        let mut bodies: Vec<String> = self
            .reasons
            .iter()
            .filter_map(|r| r.body_template().map(str::to_owned))
            .collect();
        bodies.sort();
        bodies.dedup();
        bodies
    }
}

impl ReviewConfig {
    /// Ids and template names are names (they reach URLs, forms and file
    /// names), every id once, every label said.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "review.deny_reasons",
            reason,
        };
        let mut seen = std::collections::BTreeSet::new();
        for reason in &self.deny_reasons {
            if !is_name(&reason.id) {
                return Err(invalid(format!(
                    "id `{}` must be 1–64 lower-case letters, digits and `_`, starting with a letter",
                    reason.id
                )));
            }
            if !seen.insert(reason.id.as_str()) {
                return Err(invalid(format!("id `{}` is configured twice", reason.id)));
            }
            if reason.label.trim().is_empty() {
                return Err(invalid(format!("reason `{}` has no label", reason.id)));
            }
            if !is_name(&reason.template) || reason.template == "layout" {
                return Err(invalid(format!(
                    "reason `{}`: template `{}` must be a file name without extension: 1–64 \
                     lower-case letters, digits and `_`, starting with a letter (not `layout`)",
                    reason.id, reason.template
                )));
            }
            if matches!(reason.template.as_str(), "no_reply" | "reason_denied") {
                return Err(invalid(format!(
                    "reason `{}`: `{}` is not a template",
                    reason.id, reason.template
                )));
            }
            // A shipped reply that must quote what a denial never carries
            // (money refunded, credits granted, a deadline) cannot deny.
            if let Some((kind, _)) =
                crate::reply::shipped_bodies().find(|(_, name)| *name == reason.template)
                && !crate::reply::required_facts(kind).is_empty()
            {
                return Err(invalid(format!(
                    "reason `{}`: the `{}` reply needs {}, which a denial does not have; \
                     write a template of your own",
                    reason.id,
                    reason.template,
                    crate::reply::required_facts(kind).join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// `[a-z][a-z0-9_]{0,63}`.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(id: &str, template: &str) -> DenyReasonConfig {
        DenyReasonConfig {
            id: id.into(),
            label: format!("P4 — {id}"),
            clause: Clause::P4,
            template: template.into(),
        }
    }

    #[test]
    fn the_shipped_reasons_keep_their_ids_and_replies() {
        let reasons = DenyReasons::shipped();
        let ids: Vec<_> = reasons.all().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "all_credits_used",
                "window_expired",
                "subjective",
                "terminated"
            ]
        );
        assert_eq!(
            reasons.get("subjective").unwrap().reply_kind(),
            ReplyKind::SubjectiveDenied
        );
        assert_eq!(reasons.get("all_credits_used").unwrap().clause, Clause::P2);
        assert!(reasons.body_templates().is_empty());
    }

    #[test]
    fn a_configured_reason_is_added_and_a_shipped_id_is_replaced_in_place() {
        let config = ReviewConfig {
            deny_reasons: vec![
                reason("duplicate_order", "deny_duplicate_order"),
                DenyReasonConfig {
                    label: "P4 — not to the customer's taste".into(),
                    ..reason("subjective", "subjective_denied")
                },
                reason("reseller", "terminated_denied"),
            ],
        };
        config.validate().unwrap();
        let reasons = DenyReasons::from_config(&config);
        let ids: Vec<_> = reasons.all().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "all_credits_used",
                "window_expired",
                "subjective",
                "terminated",
                "duplicate_order",
                "reseller"
            ]
        );
        let duplicate = reasons.get("duplicate_order").unwrap();
        assert_eq!(duplicate.reply_kind(), ReplyKind::ReasonDenied);
        assert_eq!(duplicate.body_template(), Some("deny_duplicate_order"));
        assert_eq!(
            reasons.get("subjective").unwrap().label,
            "P4 — not to the customer's taste"
        );
        assert_eq!(
            reasons.get("reseller").unwrap().reply_kind(),
            ReplyKind::TerminatedDenied,
            "a shipped kind's template name reuses that kind"
        );
        assert_eq!(reasons.body_templates(), ["deny_duplicate_order"]);
    }

    #[test]
    fn bad_ids_templates_and_labels_are_refused_at_start() {
        for bad in [
            reason("Duplicate", "deny_x"),
            reason("dup order", "deny_x"),
            reason("", "deny_x"),
            reason("dup", "../etc/passwd"),
            reason("dup", "deny.x"),
            reason("dup", "layout"),
            reason("dup", "no_reply"),
            reason("dup", "cash_refund_approved"),
            reason("dup", "review_acknowledged"),
            DenyReasonConfig {
                label: " ".into(),
                ..reason("dup", "deny_x")
            },
        ] {
            let config = ReviewConfig {
                deny_reasons: vec![bad.clone()],
            };
            assert!(config.validate().is_err(), "{bad:?}");
        }
        let twice = ReviewConfig {
            deny_reasons: vec![reason("dup", "deny_x"), reason("dup", "deny_y")],
        };
        assert!(twice.validate().is_err());
    }

    #[test]
    fn a_reason_table_reads_from_toml() {
        let config: ReviewConfig = toml::from_str(
            r#"
            [[deny_reasons]]
            id = "duplicate_order"
            label = "P4 — bought the same pack twice"
            clause = "P4"
            template = "deny_duplicate_order"
            "#,
        )
        .unwrap();
        assert_eq!(config.deny_reasons[0].clause, Clause::P4);
        let unknown = toml::from_str::<ReviewConfig>(
            "[[deny_reasons]]\nid = \"x\"\nlabel = \"x\"\nclause = \"P9\"\ntemplate = \"x\"\n",
        );
        assert!(unknown.is_err());
    }
}
