//! A replay as CSV: one row per message decided, `case, message_id,
//! source, before_outcome, after_outcome, before_action, after_action,
//! before_amount, after_amount, currency, changed, drift`. `before` is the
//! configuration in force, `after` the candidate (the same decision when
//! there is none). An action is `cash_refund` (amount in minor units of
//! `currency`) or `wallet_credit` (amount in credits, currency
//! `credits`); several are joined with `+`. Cells are quoted as
//! `refundd report --csv` quotes them (never a spreadsheet formula).
//! PURE.

use std::fmt::Write as _;

use super::report::{DecisionView, ReplayReport};
use crate::domain::Action;
use crate::report::csv_field;

/// The report's messages as CSV.
pub fn to_csv(report: &ReplayReport) -> String {
    let mut out = String::from(
        "case,message_id,source,before_outcome,after_outcome,before_action,after_action,before_amount,after_amount,currency,changed,drift\r\n",
    );
    for m in &report.decisions {
        let (before_action, before_amount, before_currency) = action_cells(&m.before);
        let (after_action, after_amount, after_currency) = action_cells(&m.decision);
        let currency = if after_currency.is_empty() {
            before_currency
        } else {
            after_currency
        };
        let cells = [
            m.case.map(|c| c.to_string()).unwrap_or_default(),
            m.message_id.clone().unwrap_or_default(),
            m.source.clone(),
            m.before.outcome.to_string(),
            m.decision.outcome.to_string(),
            before_action,
            after_action,
            before_amount,
            after_amount,
            currency,
            m.changed.to_string(),
            m.drift.to_string(),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        let _ = write!(out, "{}\r\n", row.join(","));
    }
    out
}

/// (kinds, amount, currency) of a decision's actions.
fn action_cells(d: &DecisionView) -> (String, String, String) {
    if d.actions.is_empty() {
        return (String::new(), String::new(), String::new());
    }
    let kinds: Vec<&str> = d
        .actions
        .iter()
        .map(|a| match a {
            Action::CashRefund { .. } => "cash_refund",
            Action::WalletCredit { .. } => "wallet_credit",
        })
        .collect();
    let mut amount = 0i64;
    let mut currency = String::new();
    for action in &d.actions {
        match action {
            Action::CashRefund {
                amount: a,
                currency: c,
                ..
            } => {
                amount += a;
                currency = c.clone();
            }
            Action::WalletCredit { credits, .. } => {
                amount += credits;
                if currency.is_empty() {
                    currency = "credits".into();
                }
            }
        }
    }
    (kinds.join("+"), amount.to_string(), currency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Category, CreditReason, Outcome};
    use crate::replay::report::{
        Agreement, Fingerprints, NotReplayed, ReplayedMessage, SourceKind, Totals,
    };
    use crate::store::{CaseId, DecisionBasis};

    #[test]
    fn one_row_per_message_with_before_and_after() {
        let cash = DecisionView {
            outcome: Outcome::Approved,
            category: Category::CashRefund,
            flags: vec![],
            actions: vec![Action::CashRefund {
                order_id: "o".into(),
                amount: 900,
                currency: "EUR".into(),
            }],
        };
        let denied = DecisionView {
            outcome: Outcome::Denied,
            actions: vec![],
            ..cash.clone()
        };
        let credit = DecisionView {
            actions: vec![Action::WalletCredit {
                wallet_id: "w".into(),
                credits: 5,
                reason: CreditReason::Courtesy,
                generation_id: None,
            }],
            ..cash.clone()
        };
        let entry = |case, before: &DecisionView, after: &DecisionView, id: &str| ReplayedMessage {
            message_id: Some(id.into()),
            case: Some(CaseId(case)),
            decision: after.clone(),
            message: Some(case),
            source: "maildir:new/1".into(),
            basis: DecisionBasis::Policy,
            changed: before != after,
            drift: false,
            before: before.clone(),
        };
        let report = ReplayReport {
            decided: 2,
            decisions: vec![
                entry(1, &cash, &denied, "a@x"),
                entry(2, &credit, &credit, "=cmd|x"),
            ],
            drift: vec![],
            changed: vec![],
            totals: Totals::default(),
            agreement: Agreement::default(),
            source: SourceKind::Stored,
            fingerprints: Fingerprints::default(),
            other_configuration: vec![],
            not_replayed: NotReplayed::default(),
            money_delta: Default::default(),
            credits_delta: 0,
            waits_for_person: vec![],
            ledger_rejected: vec![],
        };
        let csv = to_csv(&report);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "R-1,a@x,maildir:new/1,approved,denied,cash_refund,,900,,EUR,true,false"
        );
        assert_eq!(
            lines[2],
            "R-2,'=cmd|x,maildir:new/1,approved,approved,wallet_credit,wallet_credit,5,5,credits,false,false"
        );
    }
}
