//! The overview page (`GET /overview`, every signed-in reviewer): the desk
//! at a glance, today and over the last days (30 by default, `?days=N` up
//! to a year): messages in, the auto-decision rate, the queue and its
//! oldest deadline, deadline compliance, first-response percentiles, money
//! refunded and credits granted per day, the top categories and shadow
//! mode's agreement.
//!
//! Every number comes from [`report::build`], the function behind
//! `refundd report`, over the same periods a reviewer could ask the
//! command for (local midnights of `[calendar] time_zone` to now), so the
//! page and the command cannot disagree; each number also carries its raw
//! value (`data-metric`/`data-value`) so that tests can hold the two side
//! by side. Charts are inline SVG rendered here: no script, nothing
//! fetched, the page's Content-Security-Policy stays as strict as every
//! other page's. Fails with [`WebError`].

use axum::extract::{Query, State};
use chrono::{DateTime, Duration, Utc};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::auth::SignedIn;
use super::pages::me;
use super::view::{Page, time_left, to_value};
use super::{WebError, WebState};
use crate::report::{self, Report};

/// Longest period the page shows, in days.
const MAX_DAYS: i64 = 366;
/// Default period, in days (today included).
const DEFAULT_DAYS: i64 = 30;
/// Categories listed in the chart.
const TOP_CATEGORIES: usize = 8;

/// `?days=N`.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    days: Option<i64>,
}

/// One number on the page: what it is, how it reads, and its raw value
/// as `refundd report --json` prints it.
#[derive(Debug, Serialize)]
struct Tile {
    /// `{period}.{field}`, e.g. `range.auto_decision_rate`.
    metric: String,
    label: &'static str,
    shown: String,
    /// JSON of the report's value.
    raw: String,
    note: String,
}

/// `GET /overview`: the desk at a glance.
pub async fn overview(
    State(state): State<WebState>,
    signed: SignedIn,
    Query(query): Query<OverviewQuery>,
) -> Result<Page, WebError> {
    let days = query.days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS);
    let now = state.now();
    let zone = state.settings().calendar.time_zone;
    let start = |days: i64| {
        range_start(now, days, zone)
            .ok_or_else(|| WebError::Internal("no midnight in the calendar's time zone".into()))
    };
    let store = state.store();
    let today_report = report::build(store, start(1)?, now, now, zone).await?;
    let range = report::build(store, start(days)?, now, now, zone).await?;

    let charts = charts(&range);
    let open = &range.open_now;
    let (oldest_left, overdue) = time_left(open.oldest_deadline, now);
    state.views().page(
        "overview.html",
        context! {
            days => days,
            zone => zone.name(),
            as_of => now.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string(),
            since => range.since.to_rfc3339(),
            until => range.until.to_rfc3339(),
            today_since => today_report.since.to_rfc3339(),
            today => to_value(tiles("today", &today_report)),
            range => to_value(tiles("range", &range)),
            open => context! {
                review => open.review,
                needs_info => open.needs_info,
                oldest => open.oldest_deadline.map(|d| d.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string()),
                oldest_raw => json(&open.oldest_deadline),
                oldest_left => oldest_left,
                overdue => overdue,
            },
            charts => charts,
            choices => [7, 30, 90].map(|d| context! { days => d, current => d == days }),
        },
        Some(&me(&signed)),
    )
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("–".into(), |r| format!("{:.1} %", r * 100.0))
}

/// `2 h 05 min`, `3 min`, `45 s`.
fn duration(seconds: Option<i64>) -> String {
    let Some(s) = seconds else {
        return "–".into();
    };
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn minor(amount: i64, currency: &str) -> String {
    super::view::money(amount, currency)
}

/// The numbers of one period, in the order the page shows them.
fn tiles(period: &str, r: &Report) -> Vec<Tile> {
    let tile = |field: &str, label, shown: String, raw: String, note: String| Tile {
        metric: format!("{period}.{field}"),
        label,
        shown,
        raw,
        note,
    };
    let fr = &r.first_response;
    let mut tiles = vec![
        tile(
            "messages",
            "Messages in",
            r.messages.to_string(),
            json(&r.messages),
            String::new(),
        ),
        tile(
            "cases",
            "Cases opened",
            r.cases.to_string(),
            json(&r.cases),
            String::new(),
        ),
        tile(
            "auto_decision_rate",
            "Decided without a person",
            percent(r.auto_decision_rate),
            json(&r.auto_decision_rate),
            format!("{} of {} cases", r.auto_decided, r.not_ignored),
        ),
        tile(
            "deadlines.rate",
            "Deadlines kept",
            percent(r.deadlines.rate),
            json(&r.deadlines.rate),
            format!("{} of {} due", r.deadlines.met, r.deadlines.due),
        ),
        tile(
            "first_response.p50_seconds",
            "First response, median",
            duration(fr.p50_seconds),
            json(&fr.p50_seconds),
            format!("{} answered", fr.count),
        ),
        tile(
            "first_response.p90_seconds",
            "First response, p90",
            duration(fr.p90_seconds),
            json(&fr.p90_seconds),
            String::new(),
        ),
        tile(
            "first_response.p99_seconds",
            "First response, p99",
            duration(fr.p99_seconds),
            json(&fr.p99_seconds),
            String::new(),
        ),
    ];
    if r.refunded.is_empty() {
        tiles.push(tile(
            "refunded",
            "Refunded",
            "nothing".into(),
            json(&r.refunded),
            String::new(),
        ));
    }
    for m in &r.refunded {
        tiles.push(tile(
            &format!("refunded.{}", m.currency),
            "Refunded",
            minor(m.amount, &m.currency),
            json(&m.amount),
            String::new(),
        ));
    }
    tiles.push(tile(
        "credits_total",
        "Credits granted",
        r.credits_total.to_string(),
        json(&r.credits_total),
        r.credits_by_reason
            .iter()
            .map(|(reason, n)| format!("{n} {}", reason.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    tiles.push(tile(
        "shadow.rate",
        "Shadow mode agreement",
        percent(r.shadow.rate()),
        json(&r.shadow.rate()),
        format!(
            "{} of {} reviewer decisions as proposed",
            r.shadow.agree, r.shadow.decided
        ),
    ));
    tiles
}

/// One chart: a heading and its SVG (ours: labels escaped, no script).
fn chart(title: String, svg: String) -> Value {
    context! { title => title, svg => Value::from_safe_string(svg) }
}

/// The range's charts: messages and auto-decision rate per day, money
/// refunded per day (one chart per currency), credits per day, and the
/// top categories.
fn charts(r: &Report) -> Vec<Value> {
    let label = |d: &report::Day| d.date.format("%d %b").to_string();
    let series = |value: &dyn Fn(&report::Day) -> f64| -> Vec<(String, f64)> {
        r.days.iter().map(|d| (label(d), value(d))).collect()
    };
    let mut out = vec![
        chart(
            "Messages in per day".into(),
            report::svg_day_chart(&series(&|d| d.messages as f64), "messages"),
        ),
        chart(
            "Decided without a person, per day".into(),
            report::svg_day_chart(
                &series(&|d| {
                    if d.not_ignored == 0 {
                        0.0
                    } else {
                        (d.auto_decided as f64 / d.not_ignored as f64 * 1000.0).round() / 10.0
                    }
                }),
                "%",
            ),
        ),
    ];
    for m in &r.refunded {
        let currency = m.currency.clone();
        out.push(chart(
            format!("Refunded per day ({currency})"),
            report::svg_day_chart(
                &series(&|d| {
                    d.refunded
                        .iter()
                        .filter(|x| x.currency == currency)
                        .map(|x| x.amount as f64 / 100.0)
                        .sum()
                }),
                &currency,
            ),
        ));
    }
    out.push(chart(
        "Credits granted per day".into(),
        report::svg_day_chart(&series(&|d| d.credits as f64), "credits"),
    ));
    let mut categories: Vec<(&String, &usize)> = r.by_category.iter().collect();
    categories.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let bars: Vec<(String, f64)> = categories
        .into_iter()
        .take(TOP_CATEGORIES)
        .map(|(c, n)| (c.replace('_', " "), *n as f64))
        .collect();
    let bars: Vec<(&str, f64)> = bars.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    out.push(chart("Top categories".into(), report::svg_bar_chart(&bars)));
    out
}

/// The start of the day `days - 1` days before `now`'s, in `zone`: where
/// the page's range begins (exposed for tests and benchmarks).
pub fn range_start(now: DateTime<Utc>, days: i64, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&zone).date_naive();
    report::local_midnight(today - Duration::days(days.clamp(1, MAX_DAYS) - 1), zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_sensible_unit() {
        for (s, want) in [
            (Some(45), "45 s"),
            (Some(600), "10 min"),
            (Some(3900), "1 h 05 min"),
            (Some(90_000), "1 d 1 h"),
            (None, "–"),
        ] {
            assert_eq!(duration(s), want);
        }
    }

    #[test]
    fn the_range_starts_at_local_midnight_days_back() {
        let now = DateTime::parse_from_rfc3339("2026-06-10T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 01:30 on 11 June in Berlin: the range's last day is the 11th.
        let start = range_start(now, 30, chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-05-12T22:00:00+00:00");
        assert_eq!(
            range_start(now, 1, chrono_tz::UTC).unwrap().to_rfc3339(),
            "2026-06-10T00:00:00+00:00"
        );
    }
}
