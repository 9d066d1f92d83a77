//! The desk's numbers for a period: volume by outcome and category, the
//! auto-decision rate, first-response times, deadline compliance, money
//! refunded and credits granted, and what each reviewer did. Behind
//! `refundd report` and (later) the console's report page.
//!
//! Takes the store's plain rows for `[since, until)` and `now`; gives a
//! [`Report`] (serde), its CSV ([`to_csv`]) and text ([`to_text`]) forms,
//! and [`svg_bar_chart`] for server-rendered charts. [`summarize`] is PURE;
//! [`build`] only reads. Definitions:
//!
//! - *auto-decided*: a case never in review, among cases not ignored;
//! - *first response*: the first reply queued to the customer minus the
//!   arrival of the case's first message (nearest-rank percentiles);
//! - *deadline compliance*: among review cases with a deadline that is due
//!   (passed by `min(until, now)`) or answered, those a reviewer acted on by
//!   the deadline; cases waiting on the customer are paused and not counted;
//! - *refunded*: cash refunds carried out in the period, per currency;
//!   *credits*: wallet credits refundd granted in the period.
//!
//! Fails only with the store's [`StoreError`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::domain::Outcome;
use crate::reply::escape_html;
use crate::store::CaseStatus;
use crate::store::{ReportCase, ReviewerEvent, ShadowAgreement, Store, StoreError};

/// Everything `refundd report` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Cases created in the period.
    pub cases: usize,
    /// Cases by outcome name (`approved`, `review`, …).
    pub by_outcome: BTreeMap<String, usize>,
    /// Cases by category name.
    pub by_category: BTreeMap<String, usize>,
    /// Cases decided without a person, and the share of non-ignored cases.
    pub auto_decided: usize,
    pub not_ignored: usize,
    pub auto_decision_rate: Option<f64>,
    /// Time to the first reply, in seconds.
    pub first_response: Percentiles,
    pub deadlines: Compliance,
    /// Cash refunded, per currency, in minor units.
    pub refunded: Vec<Money>,
    /// Wallet credits granted, by reason.
    pub credits_by_reason: BTreeMap<String, i64>,
    pub credits_total: i64,
    /// One line per reviewer, by address.
    pub reviewers: Vec<ReviewerStats>,
    /// Shadow mode: reviewer decisions on cases the engine only proposed,
    /// and how many matched the proposal (outcome, action, amount).
    pub shadow: ShadowAgreement,
}

/// Nearest-rank percentiles of a duration in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    pub p99_seconds: Option<i64>,
}

/// How often the reply promise was kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Compliance {
    /// Review cases whose deadline fell due (or that were answered).
    pub due: usize,
    /// Of those, answered by a reviewer by the deadline.
    pub met: usize,
    pub rate: Option<f64>,
}

/// An amount of one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    pub currency: String,
    pub amount: i64,
}

/// What one reviewer did in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewerStats {
    pub reviewer: String,
    /// Status changes made.
    pub actions: usize,
    /// Distinct cases touched.
    pub cases: usize,
    /// Changes that resolved a case.
    pub resolved: usize,
}

/// Reads the period's rows and summarizes them.
pub async fn build(
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let cases = store.report_cases(since, until).await?;
    let refunded = store.refunded_by_currency(since, until).await?;
    let credits = store.credits_by_reason(since, until).await?;
    let events = store.reviewer_events(since, until).await?;
    let mut report = summarize(since, until, now, &cases, &refunded, &credits, &events);
    report.shadow = store.shadow_agreement(since, until).await?;
    Ok(report)
}

/// The report from the rows (PURE).
pub fn summarize(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    cases: &[ReportCase],
    refunded: &[(String, i64)],
    credits: &[(String, i64)],
    events: &[ReviewerEvent],
) -> Report {
    let mut by_outcome = BTreeMap::new();
    let mut by_category = BTreeMap::new();
    for case in cases {
        *by_outcome.entry(case.outcome.to_string()).or_insert(0) += 1;
        *by_category.entry(case.category.to_string()).or_insert(0) += 1;
    }
    let not_ignored = cases
        .iter()
        .filter(|c| c.outcome != Outcome::Ignored)
        .count();
    let auto_decided = cases
        .iter()
        .filter(|c| c.outcome != Outcome::Ignored && !c.ever_in_review)
        .count();

    let mut waits: Vec<i64> = cases
        .iter()
        .filter_map(|c| {
            Some(
                (c.first_reply_at? - c.first_received_at?)
                    .num_seconds()
                    .max(0),
            )
        })
        .collect();
    waits.sort_unstable();

    let cutoff = until.min(now);
    let mut deadlines = Compliance::default();
    for case in cases
        .iter()
        .filter(|c| c.ever_in_review && c.status != CaseStatus::NeedsInfo)
    {
        let Some(deadline) = case.deadline else {
            continue;
        };
        if deadline <= cutoff || case.first_reviewer_at.is_some() {
            deadlines.due += 1;
            if case.first_reviewer_at.is_some_and(|at| at <= deadline) {
                deadlines.met += 1;
            }
        }
    }
    deadlines.rate = ratio(deadlines.met, deadlines.due);

    let mut reviewers: BTreeMap<&str, (usize, Vec<i64>, usize)> = BTreeMap::new();
    for event in events {
        let entry = reviewers.entry(&event.reviewer).or_default();
        entry.0 += 1;
        if !entry.1.contains(&event.case_id.0) {
            entry.1.push(event.case_id.0);
        }
        if event.to_status == CaseStatus::Resolved {
            entry.2 += 1;
        }
    }

    Report {
        since,
        until,
        cases: cases.len(),
        by_outcome,
        by_category,
        auto_decided,
        not_ignored,
        auto_decision_rate: ratio(auto_decided, not_ignored),
        first_response: Percentiles {
            count: waits.len(),
            p50_seconds: percentile(&waits, 50),
            p90_seconds: percentile(&waits, 90),
            p99_seconds: percentile(&waits, 99),
        },
        deadlines,
        refunded: refunded
            .iter()
            .map(|(currency, amount)| Money {
                currency: currency.clone(),
                amount: *amount,
            })
            .collect(),
        credits_by_reason: credits.iter().cloned().collect(),
        credits_total: credits.iter().map(|(_, n)| n).sum(),
        reviewers: reviewers
            .into_iter()
            .map(|(reviewer, (actions, cases, resolved))| ReviewerStats {
                reviewer: reviewer.to_owned(),
                actions,
                cases: cases.len(),
                resolved,
            })
            .collect(),
        shadow: ShadowAgreement::default(),
    }
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// The report as CSV: `section,key,value` rows, one fact per row.
pub fn to_csv(report: &Report) -> String {
    let mut rows: Vec<(String, String, String)> = vec![
        ("period".into(), "since".into(), report.since.to_rfc3339()),
        ("period".into(), "until".into(), report.until.to_rfc3339()),
        ("volume".into(), "cases".into(), report.cases.to_string()),
    ];
    rows.extend(
        report
            .by_outcome
            .iter()
            .map(|(k, v)| ("outcome".into(), k.clone(), v.to_string())),
    );
    rows.extend(
        report
            .by_category
            .iter()
            .map(|(k, v)| ("category".into(), k.clone(), v.to_string())),
    );
    rows.push((
        "auto".into(),
        "decided".into(),
        report.auto_decided.to_string(),
    ));
    rows.push((
        "auto".into(),
        "not_ignored".into(),
        report.not_ignored.to_string(),
    ));
    rows.push((
        "auto".into(),
        "rate".into(),
        fraction(report.auto_decision_rate),
    ));
    let fr = &report.first_response;
    rows.push((
        "first_response".into(),
        "count".into(),
        fr.count.to_string(),
    ));
    for (key, value) in [
        ("p50_seconds", fr.p50_seconds),
        ("p90_seconds", fr.p90_seconds),
        ("p99_seconds", fr.p99_seconds),
    ] {
        rows.push((
            "first_response".into(),
            key.into(),
            value.map(|v| v.to_string()).unwrap_or_default(),
        ));
    }
    rows.push((
        "deadlines".into(),
        "due".into(),
        report.deadlines.due.to_string(),
    ));
    rows.push((
        "deadlines".into(),
        "met".into(),
        report.deadlines.met.to_string(),
    ));
    rows.push((
        "deadlines".into(),
        "rate".into(),
        fraction(report.deadlines.rate),
    ));
    rows.extend(report.refunded.iter().map(|m| {
        (
            "refunded_minor".into(),
            m.currency.clone(),
            m.amount.to_string(),
        )
    }));
    rows.extend(
        report
            .credits_by_reason
            .iter()
            .map(|(k, v)| ("credits".into(), k.clone(), v.to_string())),
    );
    rows.push((
        "credits".into(),
        "total".into(),
        report.credits_total.to_string(),
    ));
    for r in &report.reviewers {
        rows.push((
            "reviewer_actions".into(),
            r.reviewer.clone(),
            r.actions.to_string(),
        ));
        rows.push((
            "reviewer_cases".into(),
            r.reviewer.clone(),
            r.cases.to_string(),
        ));
        rows.push((
            "reviewer_resolved".into(),
            r.reviewer.clone(),
            r.resolved.to_string(),
        ));
    }
    rows.push((
        "shadow".into(),
        "decided".into(),
        report.shadow.decided.to_string(),
    ));
    rows.push((
        "shadow".into(),
        "agree".into(),
        report.shadow.agree.to_string(),
    ));
    rows.push((
        "shadow".into(),
        "agreement_rate".into(),
        report
            .shadow
            .rate()
            .map_or(String::new(), |r| format!("{r:.4}")),
    ));
    let mut out = String::from("section,key,value\r\n");
    for (section, key, value) in rows {
        let _ = write!(
            out,
            "{},{},{}\r\n",
            csv_field(&section),
            csv_field(&key),
            csv_field(&value)
        );
    }
    out
}

/// RFC 4180 quoting, and a leading `'` for cells a spreadsheet would run
/// as a formula (a reviewer address is not trusted text).
pub(crate) fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) && value.parse::<f64>().is_err() {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn fraction(rate: Option<f64>) -> String {
    rate.map(|r| format!("{r:.4}")).unwrap_or_default()
}

/// The report for a terminal.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let pct = |rate: Option<f64>| rate.map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let dur = |s: Option<i64>| {
        s.map_or("n/a".to_owned(), |s| {
            format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
        })
    };
    let _ = writeln!(
        out,
        "Report {} .. {}",
        report.since.to_rfc3339(),
        report.until.to_rfc3339()
    );
    let _ = writeln!(out, "Cases: {}", report.cases);
    for (outcome, n) in &report.by_outcome {
        let _ = writeln!(out, "  {outcome:<20} {n}");
    }
    let _ = writeln!(out, "By category:");
    for (category, n) in &report.by_category {
        let _ = writeln!(out, "  {category:<20} {n}");
    }
    let _ = writeln!(
        out,
        "Auto-decided: {} of {} ({})",
        report.auto_decided,
        report.not_ignored,
        pct(report.auto_decision_rate)
    );
    let fr = &report.first_response;
    let _ = writeln!(
        out,
        "First response ({} cases): p50 {}, p90 {}, p99 {}",
        fr.count,
        dur(fr.p50_seconds),
        dur(fr.p90_seconds),
        dur(fr.p99_seconds)
    );
    let _ = writeln!(
        out,
        "Deadlines: {} of {} met ({})",
        report.deadlines.met,
        report.deadlines.due,
        pct(report.deadlines.rate)
    );
    for m in &report.refunded {
        let _ = writeln!(
            out,
            "Refunded: {} {}.{:02}",
            m.currency,
            m.amount / 100,
            m.amount % 100
        );
    }
    let _ = writeln!(out, "Credits granted: {}", report.credits_total);
    if report.shadow.decided > 0 {
        let _ = writeln!(
            out,
            "Shadow mode: reviewers decided as the engine proposed in {} of {} cases ({})",
            report.shadow.agree,
            report.shadow.decided,
            pct(report.shadow.rate())
        );
    }
    for (reason, n) in &report.credits_by_reason {
        let _ = writeln!(out, "  {reason:<20} {n}");
    }
    for r in &report.reviewers {
        let _ = writeln!(
            out,
            "Reviewer {}: {} actions on {} cases, {} resolved",
            r.reviewer, r.actions, r.cases, r.resolved
        );
    }
    out
}

/// A horizontal bar chart as a standalone SVG: one bar per `(label,
/// value)`, scaled to the largest value; labels are escaped (the crate's
/// one HTML escaper, which is also right for SVG text). Negative
/// values draw as empty bars.
pub fn svg_bar_chart(bars: &[(&str, f64)]) -> String {
    const ROW: usize = 24;
    const LABEL: usize = 180;
    const BAR: f64 = 300.0;
    let max = bars.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let height = ROW * bars.len().max(1);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">\n",
        LABEL + BAR as usize + 80
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i * ROW;
        let width = if max > 0.0 && value.is_finite() {
            (value.max(0.0) / max * BAR).round()
        } else {
            0.0
        };
        let label = escape_html(label);
        let shown = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        let _ = writeln!(
            svg,
            "  <text x=\"0\" y=\"{}\" font-size=\"12\">{label}</text>\n  <rect x=\"{LABEL}\" y=\"{}\" width=\"{width}\" height=\"{}\" fill=\"#4a7bd0\"><title>{label}: {shown}</title></rect>\n  <text x=\"{}\" y=\"{}\" font-size=\"12\">{shown}</text>",
            y + 16,
            y + 4,
            ROW - 8,
            LABEL as f64 + width + 6.0,
            y + 16,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;
    use crate::store::CaseId;
    use chrono::Duration;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::hours(hours)
    }

    fn case(id: i64, outcome: Outcome, in_review: bool) -> ReportCase {
        ReportCase {
            id: CaseId(id),
            outcome,
            category: Category::CashRefund,
            status: crate::queue::status_after(outcome),
            created_at: t(0),
            deadline: None,
            first_received_at: Some(t(0)),
            first_reply_at: Some(t(1)),
            ever_in_review: in_review,
            first_reviewer_at: None,
        }
    }

    #[test]
    fn a_period_is_counted_by_outcome_automation_deadlines_money_and_reviewer() {
        let mut cases = vec![
            case(1, Outcome::Approved, false),
            case(2, Outcome::Denied, false),
            case(3, Outcome::Ignored, false),
            case(4, Outcome::Approved, true),
            case(5, Outcome::Review, true),
            case(6, Outcome::Review, true),
        ];
        // 4: answered in time; 5: due and unanswered; 6: not due yet.
        cases[3].deadline = Some(t(48));
        cases[3].first_reviewer_at = Some(t(20));
        cases[4].deadline = Some(t(10));
        cases[5].deadline = Some(t(500));
        cases[2].first_reply_at = None;
        cases[0].first_reply_at = Some(t(3));
        let events = vec![
            ReviewerEvent {
                reviewer: "ann@x".into(),
                case_id: CaseId(4),
                to_status: CaseStatus::Resolved,
                at: t(20),
            },
            ReviewerEvent {
                reviewer: "ann@x".into(),
                case_id: CaseId(4),
                to_status: CaseStatus::Review,
                at: t(21),
            },
        ];
        let report = summarize(
            t(0),
            t(100),
            t(100),
            &cases,
            &[("EUR".into(), 1499)],
            &[("courtesy".into(), 5), ("failed_generation".into(), 2)],
            &events,
        );
        assert_eq!(report.cases, 6);
        assert_eq!(report.by_outcome["approved"], 2);
        assert_eq!((report.auto_decided, report.not_ignored), (2, 5));
        assert_eq!(report.first_response.count, 5);
        assert_eq!(report.first_response.p50_seconds, Some(3600));
        assert_eq!(report.first_response.p99_seconds, Some(3 * 3600));
        assert_eq!((report.deadlines.due, report.deadlines.met), (2, 1));
        assert_eq!(
            report.refunded,
            vec![Money {
                currency: "EUR".into(),
                amount: 1499
            }]
        );
        assert_eq!(report.credits_total, 7);
        assert_eq!(
            report.reviewers,
            vec![ReviewerStats {
                reviewer: "ann@x".into(),
                actions: 2,
                cases: 1,
                resolved: 1
            }]
        );
        let csv = to_csv(&report);
        assert!(csv.starts_with("section,key,value\r\n"));
        assert!(csv.contains("auto,rate,0.4000\r\n"));
        assert!(csv.contains("refunded_minor,EUR,1499\r\n"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<i64> = (1..=10).collect();
        for (p, want) in [(50, 5), (90, 9), (99, 10), (1, 1)] {
            assert_eq!(percentile(&values, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn a_csv_cell_is_quoted_and_never_a_formula() {
        for (raw, cell) in [
            ("a,b", "\"a,b\""),
            ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
            ("-12", "-12"),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
        ] {
            assert_eq!(csv_field(raw), cell, "{raw}");
        }
    }

    #[test]
    fn a_bar_chart_scales_bars_and_escapes_labels() {
        let svg = svg_bar_chart(&[("<script>", 10.0), ("b & c", 5.0), ("none", 0.0)]);
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("b &amp; c"));
        assert!(svg.contains("width=\"300\""));
        assert!(svg.contains("width=\"150\""));
        assert!(svg.contains("width=\"0\""));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
