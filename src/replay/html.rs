//! A replay as one self-contained HTML page, viewable offline: inline
//! CSS, charts as inline SVG rendered here (no scripts, no fonts, no
//! images or links to fetch; a Content-Security-Policy that forbids
//! them). Every text that comes from mail or people — Message-IDs,
//! sources, trace lines, reviewer addresses — goes through the crate's
//! one HTML escaper. PURE: a [`ReplayReport`] in, a page out.

use std::fmt::Write as _;

use super::report::{DecisionView, ReplayReport, Side, SourceKind};
use super::text::{describe, money_change, money_list};
use crate::domain::Outcome;
use crate::reply::escape_html;
use crate::report::svg_bar_chart;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}td.n{text-align:right}.trace{font:12px monospace;white-space:pre-wrap;color:#555}\
.minus{color:#a33}.plus{color:#262}.muted{color:#777}.charts{display:flex;gap:2em;flex-wrap:wrap}";

/// The report as a self-contained HTML page.
pub fn to_html(report: &ReplayReport) -> String {
    let e = escape_html;
    let candidate = report.has_candidate();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>refundd replay</title><style>{STYLE}</style></head><body>\n"
    );
    let what = match report.source {
        SourceKind::Stored => "stored mail",
        SourceKind::Archive => "an archive never processed",
    };
    let _ = writeln!(
        out,
        "<h1>Replay of {what}</h1><p>{} messages decided; not replayed: {} not policy decisions, {} unreadable.<br>\
         Configuration in force <code>{}</code>{}</p>",
        report.decided,
        report.not_replayed.screen,
        report.not_replayed.unreadable,
        e(&report.fingerprints.in_force),
        report
            .fingerprints
            .candidate
            .as_deref()
            .map(|c| format!("; candidate <code>{}</code>", e(c)))
            .unwrap_or_default()
    );

    // Charts.
    out.push_str("<div class=\"charts\">");
    let mut bars: Vec<(String, f64)> = Vec::new();
    for outcome in Outcome::ALL {
        let name = outcome.as_str();
        let n = |side: &Side| side.outcomes.get(name).copied().unwrap_or(0) as f64;
        if candidate {
            bars.push((format!("{name}, in force"), n(&report.totals.before)));
            bars.push((format!("{name}, candidate"), n(&report.totals.after)));
        } else {
            bars.push((name.to_owned(), n(&report.totals.before)));
        }
    }
    chart(&mut out, "Messages by outcome", &bars);
    let mut money: Vec<(String, f64)> = Vec::new();
    let currencies: std::collections::BTreeSet<&String> = report
        .totals
        .before
        .money
        .keys()
        .chain(report.totals.after.money.keys())
        .collect();
    for currency in currencies {
        let amount = |side: &Side| side.money.get(currency).copied().unwrap_or(0) as f64 / 100.0;
        if candidate {
            money.push((
                format!("{currency}, in force"),
                amount(&report.totals.before),
            ));
            money.push((
                format!("{currency}, candidate"),
                amount(&report.totals.after),
            ));
        } else {
            money.push((currency.clone(), amount(&report.totals.before)));
        }
    }
    if !money.is_empty() {
        chart(&mut out, "Refunded (major units)", &money);
    }
    out.push_str("</div>\n");

    // Outcome × category.
    out.push_str("<h2>By outcome and category</h2><table><tr><th>outcome</th><th>category</th>");
    if candidate {
        out.push_str("<th>in force</th><th>refunded</th><th>credits</th><th>candidate</th><th>refunded</th><th>credits</th>");
    } else {
        out.push_str("<th>messages</th><th>refunded</th><th>credits</th>");
    }
    out.push_str("</tr>\n");
    let mut keys = std::collections::BTreeSet::new();
    for cell in report
        .totals
        .before
        .by_outcome_category
        .iter()
        .chain(&report.totals.after.by_outcome_category)
    {
        keys.insert((cell.outcome, cell.category));
    }
    for (outcome, category) in keys {
        let _ = write!(out, "<tr><td>{outcome}</td><td>{category}</td>");
        let sides: &[&Side] = if candidate {
            &[&report.totals.before, &report.totals.after]
        } else {
            &[&report.totals.before]
        };
        for side in sides {
            let cell = side
                .by_outcome_category
                .iter()
                .find(|c| c.outcome == outcome && c.category == category);
            let _ = write!(
                out,
                "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                cell.map_or(0, |c| c.count),
                e(&cell.map_or("0".to_owned(), |c| money_list(&c.money))),
                cell.map_or(0, |c| c.credits)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>");
    let rate = |side: &Side| {
        side.auto_decision_rate
            .map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
    };
    let _ = writeln!(
        out,
        "<p>Auto-decision rate: {}{}. Refunded: {}{}. Credits: {}{}.</p>",
        rate(&report.totals.before),
        if candidate {
            format!(" in force, {} candidate", rate(&report.totals.after))
        } else {
            String::new()
        },
        e(&money_list(&report.totals.before.money)),
        if candidate {
            format!(
                " in force, {} candidate (change: {})",
                e(&money_list(&report.totals.after.money)),
                e(&money_change(&report.money_delta))
            )
        } else {
            String::new()
        },
        report.totals.before.credits,
        if candidate {
            format!(" in force, {} candidate", report.totals.after.credits)
        } else {
            String::new()
        },
    );

    if candidate {
        let _ = write!(
            out,
            "<h2>Changed by the candidate ({})</h2>",
            report.changed.len()
        );
        differences(
            &mut out,
            "in force",
            "candidate",
            report.changed.iter().map(|c| {
                (
                    c.case
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| c.source.clone()),
                    c.message_id.as_deref(),
                    &c.before,
                    &c.after,
                    &c.trace,
                )
            }),
        );
    }

    let _ = write!(out, "<h2>Drift ({})</h2>", report.drift.len());
    if report.drift.is_empty() {
        out.push_str("<p class=\"muted\">Every stored decision made under the configuration in force is made again.</p>");
    }
    differences(
        &mut out,
        "stored",
        "replayed",
        report.drift.iter().map(|d| {
            (
                d.case
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| d.source.clone()),
                d.message_id.as_deref(),
                &d.stored,
                &d.replayed,
                &d.trace,
            )
        }),
    );
    for other in &report.other_configuration {
        let cases: Vec<String> = other.cases.iter().map(|c| c.to_string()).collect();
        let _ = write!(
            out,
            "<p>Decided under another configuration <code>{}</code>: {} message(s), not compared {}</p>",
            e(&other.fingerprint),
            other.messages,
            e(&cases.join(", "))
        );
    }

    if report.source == SourceKind::Stored {
        let a = &report.agreement;
        let _ = write!(
            out,
            "<h2>Agreement with people</h2><p>{} case(s) decided by reviewers; the engine would decide {} of them the same.</p>",
            a.decided_by_people, a.agree
        );
        if !a.confusion.is_empty() {
            out.push_str("<table><tr><th>reviewer \\ engine</th>");
            for o in Outcome::ALL {
                let _ = write!(out, "<th>{o}</th>");
            }
            out.push_str("</tr>");
            for (reviewer, row) in &a.confusion {
                let _ = write!(out, "<tr><th>{}</th>", e(reviewer));
                for o in Outcome::ALL {
                    let _ = write!(
                        out,
                        "<td class=\"n\">{}</td>",
                        row.get(o.as_str()).copied().unwrap_or(0)
                    );
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>\n");
        }
        if !a.disagree.is_empty() {
            out.push_str(
                "<table><tr><th>case</th><th>reviewer</th><th>decided</th><th>engine</th></tr>",
            );
            for d in &a.disagree {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    d.case,
                    e(&d.reviewer.by),
                    e(&describe(&d.reviewer.decision)),
                    e(&describe(&d.engine))
                );
            }
            out.push_str("</table>\n");
        }
    }

    let _ = write!(
        out,
        "<h2>Who answers</h2><p>Answered automatically: {}; waiting on a person: {}.</p>",
        report.decided - report.waits_for_person.len(),
        report.waits_for_person.len()
    );
    if !report.waits_for_person.is_empty() {
        out.push_str("<table><tr><th>case</th><th>Message-ID</th></tr>");
        for w in &report.waits_for_person {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                e(&w.case
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| w.source.clone())),
                e(w.message_id.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>\n");
    }
    if !report.ledger_rejected.is_empty() {
        out.push_str("<h2>Ledger lines rejected</h2><ul>");
        for r in &report.ledger_rejected {
            let _ = write!(out, "<li>line {}: {}</li>", r.line, e(&r.reason));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}

fn chart(out: &mut String, title: &str, bars: &[(String, f64)]) {
    let bars: Vec<(&str, f64)> = bars.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    let _ = write!(
        out,
        "<figure><figcaption>{}</figcaption>{}</figure>",
        escape_html(title),
        svg_bar_chart(&bars)
    );
}

type Row<'a> = (
    String,
    Option<&'a str>,
    &'a DecisionView,
    &'a DecisionView,
    &'a Vec<String>,
);

fn differences<'a>(out: &mut String, left: &str, right: &str, rows: impl Iterator<Item = Row<'a>>) {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return;
    }
    let _ = write!(
        out,
        "<table><tr><th>case</th><th>Message-ID</th><th>{left}</th><th>{right}</th><th>differing trace</th></tr>"
    );
    for (case, message_id, a, b, trace) in rows {
        let lines: Vec<String> = trace
            .iter()
            .map(|l| {
                let class = if l.starts_with('-') { "minus" } else { "plus" };
                format!("<span class=\"{class}\">{}</span>", escape_html(l))
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"trace\">{}</td></tr>",
            escape_html(&case),
            escape_html(message_id.unwrap_or("")),
            escape_html(&describe(a)),
            escape_html(&describe(b)),
            lines.join("\n")
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Category, Decision, ReplyKind, TraceStep};
    use crate::replay::report::{Collector, Fingerprints, ReplayedInput};
    use crate::store::{CaseId, DecisionBasis};

    #[test]
    fn the_page_is_self_contained_and_escapes_customer_text() {
        let decision = |outcome, finding: &str| Decision {
            outcome,
            category: Category::CashRefund,
            flags: Default::default(),
            actions: vec![],
            trace: vec![TraceStep {
                clause: crate::domain::Clause::Id,
                finding: finding.into(),
                facts: vec![],
            }],
            reply: ReplyKind::NoReply,
            order_id: None,
            wallet_id: None,
            generation_id: None,
            reply_facts: Default::default(),
        };
        let before = decision(Outcome::Review, "cited <script>alert(1)</script>");
        let after = decision(Outcome::Denied, "cited <img src=x onerror=alert(1)>");
        let mut c = Collector::new(
            SourceKind::Stored,
            Fingerprints {
                in_force: "a".into(),
                candidate: Some("b".into()),
            },
        );
        c.add(ReplayedInput {
            case: Some(CaseId(1)),
            message: Some(1),
            message_id: Some("<x\"onmouseover=alert(1)>@evil".into()),
            source: "maildir:new/<b>".into(),
            basis: DecisionBasis::Policy,
            stored: &before,
            stored_fingerprint: "a",
            before: &before,
            after: Some(&after),
        });
        let page = to_html(&c.finish(&[]));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(
            !page.contains("<script"),
            "no script, even escaped text stays text"
        );
        assert!(!page.contains("<img"));
        assert!(!page.contains("src=\"http") && !page.contains("href="));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;onmouseover=alert(1)&gt;@evil"));
        assert!(page.contains("<svg"));
        assert!(page.contains("default-src 'none'"));
    }
}
