//! The desk's numbers for a period: messages in, volume by outcome and
//! category, the auto-decision rate, first-response times, deadline
//! compliance, money refunded and credits granted (in total and day by
//! day), what each reviewer did, shadow mode's agreement, and the queue as
//! it stands. Behind `refundd report` and the console's overview page
//! (`/overview`): both call [`build`], so they cannot disagree.
//!
//! Takes `[since, until)`, `now` and the calendar's time zone (days are
//! local days); gives a [`Report`] (serde), its CSV ([`to_csv`]) and text
//! ([`to_text`]) forms, and [`svg_bar_chart`] / [`svg_day_chart`] for
//! server-rendered charts. [`build`] only reads, and reads sums: the
//! database counts and adds up per local day (and picks the percentile
//! ranks), so a report over 100,000 cases reads a few hundred rows and
//! holds no case in memory. [`summarize`] is PURE and turns the sums into
//! numbers. Definitions:
//!
//! - *messages*: messages received in the period (duplicates are not
//!   stored twice, so not counted twice);
//! - *auto-decided*: a case never in review, among cases not ignored;
//! - *first response*: the first reply queued to the customer minus the
//!   arrival of the case's first message, in whole seconds (each instant
//!   cut to its second; nearest-rank percentiles);
//! - *deadline compliance*: among review cases with a deadline that is due
//!   (passed by `min(until, now)`) or answered, those a reviewer acted on by
//!   the deadline; cases waiting on the customer are paused and not counted;
//! - *refunded*: cash refunds carried out in the period, per currency;
//!   *credits*: wallet credits refundd granted in the period;
//! - *days*: the same counts per local day of `[calendar] time_zone` (the
//!   first and last day are cut at `since` and `until`); the period's
//!   totals are the sums of its days;
//! - *open now*: the queue when the report was made, whatever the period.
//!
//! Fails only with the store's [`StoreError`].

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::domain::Outcome;
use crate::reply::escape_html;
use crate::store::{
    CaseCount, PeriodFacts, PeriodVolume, QueueGauges, ReviewerTally, ShadowAgreement, Store,
    StoreError,
};

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
    /// Messages received in the period.
    pub messages: i64,
    /// The queue when the report was made (not bound to the period).
    pub open_now: OpenNow,
    /// The period day by day (local days of `[calendar] time_zone`).
    pub days: Vec<Day>,
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

/// The queue at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenNow {
    pub as_of: DateTime<Utc>,
    /// Cases waiting for a reviewer.
    pub review: i64,
    /// Cases waiting on the customer.
    pub needs_info: i64,
    /// The earliest deadline of a case waiting for a reviewer.
    pub oldest_deadline: Option<DateTime<Utc>>,
}

/// One local day of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    /// Messages received.
    pub messages: i64,
    /// Cases created.
    pub cases: usize,
    /// Of those, decided without a person / not ignored.
    pub auto_decided: usize,
    pub not_ignored: usize,
    /// Cash refunded, per currency, in minor units.
    pub refunded: Vec<Money>,
    /// Wallet credits granted.
    pub credits: i64,
}

/// The local days of `[since, until)` in `zone`: (date, start, end), the
/// first starting at `since` and the last ending at `until`.
pub fn day_spans(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    zone: Tz,
) -> Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)> {
    let mut spans = Vec::new();
    let mut start = since;
    while start < until {
        let date = start.with_timezone(&zone).date_naive();
        let end = date
            .succ_opt()
            .and_then(|next| local_midnight(next, zone))
            .map_or(until, |next| next.min(until));
        // A zone whose clocks skip midnight could give a day no length;
        // never loop on it.
        let end = if end <= start { until } else { end };
        spans.push((date, start, end));
        start = end;
    }
    spans
}

/// Midnight of `date` in `zone` (the earliest, when clocks go back; the
/// first instant of the day when midnight is skipped).
pub fn local_midnight(date: NaiveDate, zone: Tz) -> Option<DateTime<Utc>> {
    (0..=3).find_map(|hour| {
        zone.from_local_datetime(&date.and_hms_opt(hour, 0, 0)?)
            .earliest()
            .map(|at| at.with_timezone(&Utc))
    })
}

/// The percentiles a report gives of first-response times.
const PERCENTILES: [usize; 3] = [50, 90, 99];

/// Reads the period's sums (its local days of `zone` in one query, the
/// facts of the whole period in a few more; never the cases themselves)
/// and summarizes them.
pub async fn build(
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<Report, StoreError> {
    let spans = day_spans(since, until, zone);
    let mut bounds: Vec<DateTime<Utc>> = spans.iter().map(|(_, start, _)| *start).collect();
    bounds.extend(spans.last().map(|(_, _, end)| *end));
    let (cases, volumes) = store.report_days(&bounds).await?;
    let facts = store.report_period(since, until, until.min(now)).await?;
    let answered = usize::try_from(facts.answered).unwrap_or(0);
    let first_response = if answered == 0 {
        Vec::new()
    } else {
        let ranks = PERCENTILES.map(|p| nearest_rank(p, answered) as i64);
        store.first_response_at_ranks(since, until, ranks).await?
    };
    let reviewers = store.reviewer_tallies(since, until).await?;
    let gauges = store.queue_gauges().await?;
    let dates: Vec<NaiveDate> = spans.iter().map(|(date, _, _)| *date).collect();
    let mut report = summarize(
        &Period {
            since,
            until,
            now,
            zone,
        },
        &Sums {
            dates: &dates,
            cases: &cases,
            volumes: &volumes,
            facts: &facts,
            first_response: &first_response,
            reviewers: &reviewers,
        },
        &gauges,
    );
    report.shadow = store.shadow_agreement(since, until).await?;
    Ok(report)
}

/// The period a report covers, and when it was made.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Days are local days of this zone.
    pub zone: Tz,
}

/// What the store summed for a period (see [`build`]).
#[derive(Debug, Clone, Copy)]
pub struct Sums<'a> {
    /// The period's local days ([`day_spans`] order).
    pub dates: &'a [NaiveDate],
    /// The cases created, per day (an index into `dates`), outcome,
    /// category and review history.
    pub cases: &'a [CaseCount],
    /// Messages, refunds and credits of each day, in `dates` order.
    pub volumes: &'a [PeriodVolume],
    /// Deadline compliance, and how many cases were answered.
    pub facts: &'a PeriodFacts,
    /// `(rank, seconds)`: first-response times at the [`nearest_rank`]s
    /// of [`PERCENTILES`] among the answered cases.
    pub first_response: &'a [(i64, i64)],
    pub reviewers: &'a [ReviewerTally],
}

/// The report from the store's sums (PURE): the rules that make numbers of
/// counts live here (what counts as decided without a person, rates,
/// nearest-rank percentiles, the period as the sum of its days).
pub fn summarize(period: &Period, sums: &Sums<'_>, gauges: &QueueGauges) -> Report {
    let Period {
        since, until, now, ..
    } = *period;
    let counts_as_decided = |c: &CaseCount| c.outcome != Outcome::Ignored;
    let auto = |c: &CaseCount| counts_as_decided(c) && !c.ever_in_review;
    let mut by_outcome = BTreeMap::new();
    let mut by_category = BTreeMap::new();
    // Cases by day: (cases, auto-decided, not ignored).
    let mut by_day = vec![(0_usize, 0_usize, 0_usize); sums.dates.len()];
    for count in sums.cases {
        let n = usize::try_from(count.cases).unwrap_or(0);
        *by_outcome.entry(count.outcome.to_string()).or_insert(0) += n;
        *by_category.entry(count.category.to_string()).or_insert(0) += n;
        if let Some(day) = by_day.get_mut(count.day) {
            day.0 += n;
            day.1 += if auto(count) { n } else { 0 };
            day.2 += if counts_as_decided(count) { n } else { 0 };
        }
    }
    let total = |pick: fn(&(usize, usize, usize)) -> usize| by_day.iter().map(pick).sum::<usize>();
    let (cases, auto_decided, not_ignored) = (total(|d| d.0), total(|d| d.1), total(|d| d.2));

    let answered = usize::try_from(sums.facts.answered).unwrap_or(0);
    let at_percentile = |p: usize| {
        let rank = nearest_rank(p, answered) as i64;
        (answered > 0)
            .then(|| {
                sums.first_response
                    .iter()
                    .find(|(r, _)| *r == rank)
                    .map(|(_, seconds)| *seconds)
            })
            .flatten()
    };

    let due = usize::try_from(sums.facts.deadlines_due).unwrap_or(0);
    let met = usize::try_from(sums.facts.deadlines_met).unwrap_or(0);

    // The period's money is the sum of its days.
    let mut refunded: BTreeMap<String, i64> = BTreeMap::new();
    let mut credits: BTreeMap<String, i64> = BTreeMap::new();
    let mut messages = 0;
    let mut days = Vec::with_capacity(sums.dates.len());
    for (i, date) in sums.dates.iter().enumerate() {
        let empty = PeriodVolume::default();
        let volume = sums.volumes.get(i).unwrap_or(&empty);
        messages += volume.messages;
        for (currency, amount) in &volume.refunded {
            *refunded.entry(currency.clone()).or_default() += amount;
        }
        for (reason, n) in &volume.credits {
            *credits.entry(reason.clone()).or_default() += n;
        }
        let (n, auto_n, decided_n) = by_day[i];
        days.push(Day {
            date: *date,
            messages: volume.messages,
            cases: n,
            auto_decided: auto_n,
            not_ignored: decided_n,
            refunded: money_list(&volume.refunded),
            credits: volume.credits.iter().map(|(_, n)| n).sum(),
        });
    }

    Report {
        since,
        until,
        cases,
        by_outcome,
        by_category,
        auto_decided,
        not_ignored,
        auto_decision_rate: ratio(auto_decided, not_ignored),
        first_response: Percentiles {
            count: answered,
            p50_seconds: at_percentile(PERCENTILES[0]),
            p90_seconds: at_percentile(PERCENTILES[1]),
            p99_seconds: at_percentile(PERCENTILES[2]),
        },
        deadlines: Compliance {
            due,
            met,
            rate: ratio(met, due),
        },
        refunded: refunded
            .into_iter()
            .map(|(currency, amount)| Money { currency, amount })
            .collect(),
        credits_total: credits.values().sum(),
        credits_by_reason: credits,
        reviewers: sums
            .reviewers
            .iter()
            .map(|r| ReviewerStats {
                reviewer: r.reviewer.clone(),
                actions: usize::try_from(r.actions).unwrap_or(0),
                cases: usize::try_from(r.cases).unwrap_or(0),
                resolved: usize::try_from(r.resolved).unwrap_or(0),
            })
            .collect(),
        shadow: ShadowAgreement::default(),
        messages,
        open_now: OpenNow {
            as_of: now,
            review: gauges.in_review,
            needs_info: gauges.needs_info,
            oldest_deadline: gauges.oldest_open_deadline,
        },
        days,
    }
}

fn money_list(pairs: &[(String, i64)]) -> Vec<Money> {
    pairs
        .iter()
        .map(|(currency, amount)| Money {
            currency: currency.clone(),
            amount: *amount,
        })
        .collect()
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The 1-based rank of the `p`th percentile among `count` sorted values
/// (nearest rank: the smallest value with at least `p` % at or below it).
pub fn nearest_rank(p: usize, count: usize) -> usize {
    (p * count).div_ceil(100).max(1)
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
    rows.push((
        "volume".into(),
        "messages".into(),
        report.messages.to_string(),
    ));
    let open = &report.open_now;
    rows.push(("open_now".into(), "as_of".into(), open.as_of.to_rfc3339()));
    rows.push(("open_now".into(), "review".into(), open.review.to_string()));
    rows.push((
        "open_now".into(),
        "needs_info".into(),
        open.needs_info.to_string(),
    ));
    rows.push((
        "open_now".into(),
        "oldest_deadline".into(),
        open.oldest_deadline
            .map(|d| d.to_rfc3339())
            .unwrap_or_default(),
    ));
    for day in &report.days {
        let date = day.date.to_string();
        for (section, value) in [
            ("messages_by_day", day.messages.to_string()),
            ("cases_by_day", day.cases.to_string()),
            ("auto_decided_by_day", day.auto_decided.to_string()),
            ("not_ignored_by_day", day.not_ignored.to_string()),
            ("credits_by_day", day.credits.to_string()),
        ] {
            rows.push((section.into(), date.clone(), value));
        }
        rows.extend(day.refunded.iter().map(|m| {
            (
                "refunded_minor_by_day".into(),
                format!("{date} {}", m.currency),
                m.amount.to_string(),
            )
        }));
    }
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
        let _ = writeln!(out, "Refunded: {} {}", m.currency, minor_units(m.amount));
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
    let _ = writeln!(out, "Messages in: {}", report.messages);
    let open = &report.open_now;
    let _ = writeln!(
        out,
        "Open at {}: {} in review, {} waiting on the customer{}",
        open.as_of.to_rfc3339(),
        open.review,
        open.needs_info,
        open.oldest_deadline
            .map(|d| format!("; oldest deadline {}", d.to_rfc3339()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "By day:      messages  cases  auto   credits  refunded"
    );
    for day in &report.days {
        let refunded: Vec<String> = day
            .refunded
            .iter()
            .map(|m| format!("{} {}", minor_units(m.amount), m.currency))
            .collect();
        let _ = writeln!(
            out,
            "  {} {:>8} {:>6} {:>5} {:>9}  {}",
            day.date,
            day.messages,
            day.cases,
            pct(ratio(day.auto_decided, day.not_ignored)),
            day.credits,
            refunded.join(", ")
        );
    }
    out
}

/// Minor units as a decimal (`1499` → `14.99`).
fn minor_units(amount: i64) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", amount.abs() / 100, amount.abs() % 100)
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

/// A column chart of one value per day as a standalone SVG: one column
/// per `(label, value)` in order, scaled to the largest value, each with a
/// `<title>` (`label: value`, what a pointer shows); the first, middle and
/// last labels are written under the axis and the largest value above it.
/// Labels are XML-escaped; negative or non-finite values draw as nothing.
pub fn svg_day_chart(columns: &[(String, f64)], unit: &str) -> String {
    const WIDTH: f64 = 560.0;
    const PLOT: f64 = 120.0;
    const TOP: f64 = 16.0;
    let max = columns
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let n = columns.len().max(1) as f64;
    let step = WIDTH / n;
    let bar = (step * 0.8).max(1.0);
    let shown = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let unit = xml_escape(unit);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\">\n",
        WIDTH,
        TOP + PLOT + 20.0,
        WIDTH,
        TOP + PLOT + 20.0
    );
    let _ = writeln!(
        svg,
        "  <text x=\"0\" y=\"11\" font-size=\"11\" fill=\"#555\">max {} {unit}</text>\n  <line x1=\"0\" y1=\"{}\" x2=\"{WIDTH}\" y2=\"{}\" stroke=\"#bbb\"/>",
        shown(max),
        TOP + PLOT,
        TOP + PLOT
    );
    for (i, (label, value)) in columns.iter().enumerate() {
        let height = if max > 0.0 && value.is_finite() {
            (value.max(0.0) / max * PLOT).round()
        } else {
            0.0
        };
        let x = i as f64 * step + (step - bar) / 2.0;
        let label = xml_escape(label);
        let _ = writeln!(
            svg,
            "  <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{height}\" fill=\"#4a7bd0\"><title>{label}: {} {unit}</title></rect>",
            TOP + PLOT - height,
            shown(*value),
        );
    }
    let last = columns.len().saturating_sub(1);
    let mut marks = vec![0, last / 2, last];
    marks.dedup();
    for i in marks {
        if let Some((label, _)) = columns.get(i) {
            let x = (i as f64 * step + step / 2.0).clamp(30.0, WIDTH - 30.0);
            let _ = writeln!(
                svg,
                "  <text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                TOP + PLOT + 14.0,
                xml_escape(label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;
    use chrono::Duration;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::hours(hours)
    }

    fn count(day: usize, outcome: Outcome, ever_in_review: bool, cases: i64) -> CaseCount {
        CaseCount {
            day,
            outcome,
            category: Category::CashRefund,
            ever_in_review,
            cases,
        }
    }

    #[test]
    fn a_period_is_counted_by_outcome_automation_deadlines_money_and_reviewer() {
        // Day 1: an approval by the engine, an ignored out-of-office, an
        // approval after review and two cases still in review. Day 2: a
        // denial by the engine.
        let cases = vec![
            count(0, Outcome::Approved, false, 1),
            count(0, Outcome::Ignored, false, 1),
            count(0, Outcome::Approved, true, 1),
            count(0, Outcome::Review, true, 2),
            count(1, Outcome::Denied, false, 1),
        ];
        // Two review cases were due, one answered in time; five customers
        // were answered, the 3rd fastest in an hour, the slowest in three.
        let facts = PeriodFacts {
            deadlines_due: 2,
            deadlines_met: 1,
            answered: 5,
        };
        let first_response = [(3, 3600), (5, 3 * 3600)];
        let reviewers = vec![ReviewerTally {
            reviewer: "ann@x".into(),
            actions: 2,
            cases: 1,
            resolved: 1,
        }];
        let period = Period {
            since: t(0),
            until: t(48),
            now: t(100),
            zone: chrono_tz::UTC,
        };
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 6, d).unwrap();
        let dates = [day(1), day(2)];
        let volumes = vec![
            PeriodVolume {
                messages: 7,
                refunded: vec![("EUR".into(), 1000)],
                credits: vec![("courtesy".into(), 5)],
            },
            PeriodVolume {
                messages: 2,
                refunded: vec![("EUR".into(), 499), ("USD".into(), 100)],
                credits: vec![("courtesy".into(), 0), ("failed_generation".into(), 2)],
            },
        ];
        let gauges = QueueGauges {
            in_review: 2,
            needs_info: 1,
            oldest_open_deadline: Some(t(10)),
            ..QueueGauges::default()
        };
        let sums = Sums {
            dates: &dates,
            cases: &cases,
            volumes: &volumes,
            facts: &facts,
            first_response: &first_response,
            reviewers: &reviewers,
        };
        let report = summarize(&period, &sums, &gauges);
        assert_eq!(report.cases, 6);
        assert_eq!(report.by_outcome["approved"], 2);
        assert_eq!(report.by_outcome["review"], 2);
        assert_eq!(report.by_category["cash_refund"], 6);
        // Ignored cases are not decided at all; a case a person looked at
        // was not decided without one.
        assert_eq!((report.auto_decided, report.not_ignored), (2, 5));
        assert_eq!(report.auto_decision_rate, Some(0.4));
        assert_eq!(report.first_response.count, 5);
        assert_eq!(report.first_response.p50_seconds, Some(3600));
        assert_eq!(report.first_response.p90_seconds, Some(3 * 3600));
        assert_eq!(report.first_response.p99_seconds, Some(3 * 3600));
        assert_eq!((report.deadlines.due, report.deadlines.met), (2, 1));
        assert_eq!(report.deadlines.rate, Some(0.5));
        assert_eq!(
            report.refunded,
            vec![
                Money {
                    currency: "EUR".into(),
                    amount: 1499
                },
                Money {
                    currency: "USD".into(),
                    amount: 100
                }
            ]
        );
        assert_eq!(report.credits_total, 7);
        assert_eq!(report.credits_by_reason["courtesy"], 5);
        assert_eq!(report.messages, 9);
        assert_eq!((report.open_now.review, report.open_now.needs_info), (2, 1));
        assert_eq!(report.days.len(), 2);
        assert_eq!((report.days[0].cases, report.days[0].auto_decided), (5, 1));
        assert_eq!((report.days[1].cases, report.days[1].auto_decided), (1, 1));
        assert_eq!(report.days[1].credits, 2);
        assert_eq!(
            report.days.iter().map(|d| d.cases).sum::<usize>(),
            report.cases,
            "the days add up to the period"
        );
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
        assert!(csv.contains("volume,messages,9\r\n"));
        assert!(csv.contains("cases_by_day,2026-06-02,1\r\n"));
        assert!(csv.contains("refunded_minor_by_day,2026-06-02 USD,100\r\n"));
        let text = to_text(&report);
        assert!(text.contains("Refunded: EUR 14.99"), "{text}");
        assert!(text.contains("  2026-06-02        2      1"), "{text}");
    }

    #[test]
    fn days_are_local_days_cut_at_the_period_and_survive_clock_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Sunday 29 March 2026: clocks go forward at 02:00 (a 23-hour day).
        let spans = day_spans(
            at("2026-03-28T12:00:00+01:00"),
            at("2026-03-30T08:00:00+02:00"),
            berlin,
        );
        let dates: Vec<String> = spans.iter().map(|(d, _, _)| d.to_string()).collect();
        assert_eq!(dates, ["2026-03-28", "2026-03-29", "2026-03-30"]);
        assert_eq!(spans[0].1, at("2026-03-28T12:00:00+01:00"));
        assert_eq!(spans[1].1, at("2026-03-29T00:00:00+01:00"));
        assert_eq!(spans[1].2 - spans[1].1, Duration::hours(23));
        assert_eq!(spans[2].2, at("2026-03-30T08:00:00+02:00"));
        assert!(day_spans(t(5), t(5), berlin).is_empty());
    }

    #[test]
    fn a_day_chart_draws_one_column_per_day_with_escaped_labels() {
        let svg = svg_day_chart(
            &[
                ("06-01".into(), 4.0),
                ("<b>".into(), 2.0),
                ("06-03".into(), 0.0),
            ],
            "messages",
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"120\""));
        assert!(svg.contains("height=\"60\""));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(svg.contains("max 4 messages"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        for (p, count, want) in [
            (50, 10, 5),
            (90, 10, 9),
            (99, 10, 10),
            (1, 10, 1),
            (50, 1, 1),
            (99, 1, 1),
            (50, 5, 3),
            (99, 1000, 990),
        ] {
            assert_eq!(nearest_rank(p, count), want, "p{p} of {count}");
        }
    }

    #[test]
    fn a_period_nobody_was_answered_in_has_no_percentiles_and_no_rates() {
        let period = Period {
            since: t(0),
            until: t(24),
            now: t(24),
            zone: chrono_tz::UTC,
        };
        let dates = [NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()];
        let cases = [count(0, Outcome::Ignored, false, 3)];
        let report = summarize(
            &period,
            &Sums {
                dates: &dates,
                cases: &cases,
                volumes: &[PeriodVolume::default()],
                facts: &PeriodFacts::default(),
                first_response: &[],
                reviewers: &[],
            },
            &QueueGauges::default(),
        );
        assert_eq!(report.cases, 3);
        assert_eq!(report.first_response, Percentiles::default());
        assert_eq!(report.auto_decision_rate, None);
        assert_eq!(report.deadlines.rate, None);
        assert_eq!(report.days.len(), 1);
        assert_eq!(report.refunded, vec![]);
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
