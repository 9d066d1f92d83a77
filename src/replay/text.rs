//! A replay for a terminal: per outcome and category the counts, money
//! and credits (in force, and the candidate beside it), the
//! auto-decision rate, every change with its differing trace lines,
//! drift, decisions made under another configuration, agreement with
//! people (confusion table and disagreements), and what would wait on a
//! person. PURE: a [`ReplayReport`] in, text out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::report::{DecisionView, ReplayReport, Side, SourceKind};
use crate::domain::{Action, Outcome};
use crate::reply::format_money;

/// The report as text for a terminal.
pub fn to_text(report: &ReplayReport) -> String {
    let mut out = String::new();
    let candidate = report.has_candidate();
    let what = match report.source {
        SourceKind::Stored => "stored mail",
        SourceKind::Archive => "an archive never processed",
    };
    let _ = writeln!(
        out,
        "Replay of {what}: {} messages decided; not replayed: {} not policy decisions (screen), {} unreadable",
        report.decided, report.not_replayed.screen, report.not_replayed.unreadable
    );
    let _ = write!(
        out,
        "Configuration in force: {}",
        report.fingerprints.in_force
    );
    if let Some(fp) = &report.fingerprints.candidate {
        let _ = write!(out, "; candidate: {fp}");
    }
    out.push_str("\n\n");

    // Outcome × category.
    let before = &report.totals.before;
    let after = &report.totals.after;
    let mut keys = BTreeSet::new();
    for cell in before
        .by_outcome_category
        .iter()
        .chain(&after.by_outcome_category)
    {
        keys.insert((cell.outcome, cell.category));
    }
    let header = if candidate {
        format!(
            "{:<11} {:<18} {:>7} {:>16} {:>8}   {:>7} {:>16} {:>8}\n",
            "OUTCOME",
            "CATEGORY",
            "IN FORCE",
            "REFUNDED",
            "CREDITS",
            "CANDID.",
            "REFUNDED",
            "CREDITS"
        )
    } else {
        format!(
            "{:<11} {:<18} {:>7} {:>16} {:>8}\n",
            "OUTCOME", "CATEGORY", "COUNT", "REFUNDED", "CREDITS"
        )
    };
    out.push_str(&header);
    for (outcome, category) in keys {
        let find = |side: &Side| {
            side.by_outcome_category
                .iter()
                .find(|c| c.outcome == outcome && c.category == category)
                .map(|c| (c.count, money_list(&c.money), c.credits))
                .unwrap_or((0, String::new(), 0))
        };
        let (n, money, credits) = find(before);
        let _ = write!(
            out,
            "{:<11} {:<18} {:>7} {:>16} {:>8}",
            outcome.as_str(),
            category.as_str(),
            n,
            money,
            credits
        );
        if candidate {
            let (n, money, credits) = find(after);
            let _ = write!(out, "   {n:>7} {money:>16} {credits:>8}");
        }
        out.push('\n');
    }
    let rate = |side: &Side| {
        side.auto_decision_rate
            .map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
    };
    out.push('\n');
    if candidate {
        let _ = writeln!(
            out,
            "Auto-decision rate (not review, of not ignored): {} in force, {} candidate",
            rate(before),
            rate(after)
        );
        let _ = writeln!(
            out,
            "Refunded: {} in force, {} candidate; change {}",
            money_list(&before.money),
            money_list(&after.money),
            money_change(&report.money_delta)
        );
        let _ = writeln!(
            out,
            "Credits: {} in force, {} candidate ({:+})",
            before.credits, after.credits, report.credits_delta
        );
    } else {
        let _ = writeln!(
            out,
            "Auto-decision rate (not review, of not ignored): {}",
            rate(before)
        );
        let _ = writeln!(
            out,
            "Refunded: {}; credits: {}",
            money_list(&before.money),
            before.credits
        );
    }

    if candidate {
        let _ = writeln!(
            out,
            "\nChanged by the candidate: {} message(s)",
            report.changed.len()
        );
        for c in &report.changed {
            let _ = writeln!(
                out,
                "  {} {}: {} -> {}",
                case_name(c.case.map(|c| c.to_string()), &c.source),
                c.message_id.as_deref().unwrap_or("(no Message-ID)"),
                describe(&c.before),
                describe(&c.after)
            );
            for line in &c.trace {
                let _ = writeln!(out, "      {line}");
            }
        }
    }

    let _ = writeln!(
        out,
        "\nDrift (stored decisions the configuration in force no longer makes): {}",
        report.drift.len()
    );
    for d in &report.drift {
        let _ = writeln!(
            out,
            "  {} {}: stored {} -> now {}",
            case_name(d.case.map(|c| c.to_string()), &d.source),
            d.message_id.as_deref().unwrap_or("(no Message-ID)"),
            describe(&d.stored),
            describe(&d.replayed)
        );
        for line in &d.trace {
            let _ = writeln!(out, "      {line}");
        }
    }
    for other in &report.other_configuration {
        let cases: Vec<String> = other.cases.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "  decided under another configuration {}: {} message(s), not compared{}",
            other.fingerprint,
            other.messages,
            if cases.is_empty() {
                String::new()
            } else {
                format!(" ({})", shorten(&cases, 12))
            }
        );
    }

    if report.source == SourceKind::Stored {
        let a = &report.agreement;
        let _ = writeln!(
            out,
            "\nAgreement with people: {} case(s) decided by reviewers; the engine{} would decide {} of them the same",
            a.decided_by_people,
            if candidate { " (candidate)" } else { "" },
            a.agree
        );
        if !a.confusion.is_empty() {
            let engine_outcomes: Vec<&Outcome> = Outcome::ALL.iter().collect();
            let _ = write!(out, "  {:<20}", "reviewer \\ engine");
            for o in &engine_outcomes {
                let _ = write!(out, " {:>10}", o.as_str());
            }
            out.push('\n');
            for (reviewer, row) in &a.confusion {
                let _ = write!(out, "  {reviewer:<20}");
                for o in &engine_outcomes {
                    let _ = write!(out, " {:>10}", row.get(o.as_str()).copied().unwrap_or(0));
                }
                out.push('\n');
            }
        }
        for d in &a.disagree {
            let _ = writeln!(
                out,
                "  {} {}: {} — engine: {}",
                d.case,
                d.reviewer.by,
                describe(&d.reviewer.decision),
                describe(&d.engine)
            );
        }
    }

    let waiting: Vec<String> = report
        .waits_for_person
        .iter()
        .map(|w| case_name(w.case.map(|c| c.to_string()), &w.source))
        .collect();
    let _ = writeln!(
        out,
        "\nWould be answered automatically: {}; would wait on a person: {}{}",
        report.decided - report.waits_for_person.len(),
        report.waits_for_person.len(),
        if waiting.is_empty() {
            String::new()
        } else {
            format!(" ({})", shorten(&waiting, 20))
        }
    );
    for r in &report.ledger_rejected {
        let _ = writeln!(out, "ledger line {} rejected: {}", r.line, r.reason);
    }
    out
}

fn case_name(case: Option<String>, source: &str) -> String {
    case.unwrap_or_else(|| source.to_owned())
}

/// `approved (cash refund 9.00 EUR)`, `denied`, `approved (credit 5)`.
pub(crate) fn describe(d: &DecisionView) -> String {
    if d.actions.is_empty() {
        return d.outcome.as_str().to_owned();
    }
    let actions: Vec<String> = d.actions.iter().map(action_words).collect();
    format!("{} ({})", d.outcome.as_str(), actions.join(", "))
}

/// One action in a few words.
pub(crate) fn action_words(action: &Action) -> String {
    match action {
        Action::CashRefund {
            amount, currency, ..
        } => format!("cash refund {}", format_money(*amount, currency)),
        Action::WalletCredit { credits, .. } => format!("credit {credits}"),
    }
}

/// `9.00 EUR, 12.50 USD`, or `0` when empty.
/// Amounts per currency, `43.40 EUR, 1200 JPY`; `0` when there are none.
pub fn money_list(money: &std::collections::BTreeMap<String, i64>) -> String {
    if money.is_empty() {
        return "0".to_owned();
    }
    money
        .iter()
        .map(|(currency, amount)| format_money(*amount, currency))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A change of money per currency, signed: `+14.60 EUR, -9.00 USD`;
/// `none` when nothing changes.
pub fn money_change(delta: &std::collections::BTreeMap<String, i64>) -> String {
    if delta.values().all(|amount| *amount == 0) {
        return "none".to_owned();
    }
    delta
        .iter()
        .filter(|(_, amount)| **amount != 0)
        .map(|(currency, amount)| {
            let sign = if *amount > 0 { "+" } else { "" };
            format!("{sign}{}", format_money(*amount, currency))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn shorten(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{}, … {} more", items[..max].join(", "), items.len() - max)
    }
}
