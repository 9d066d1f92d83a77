//! Time windows of the policy, measured to the email's receipt time.
//!
//! Takes instants and day counts from [`super::PolicyConfig`]; gives
//! inclusive window tests and sentences describing elapsed time. Never
//! reads the clock and never panics: a day count too large for `chrono`
//! is a window that never ends.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// The end of a window of `days` that starts at `start`, or `None` when the
/// sum does not fit in a timestamp (a window that never ends).
pub(super) fn window_end(start: DateTime<Utc>, days: i64) -> Option<DateTime<Utc>> {
    TimeDelta::try_days(days).and_then(|span| start.checked_add_signed(span))
}

/// Whether `at` is no later than `start + days`: the P2 window. The end is
/// inclusive to the instant, so exactly 14 days is inside and 14 days and
/// one minute is outside.
pub(super) fn inside(start: DateTime<Utc>, days: i64, at: DateTime<Utc>) -> bool {
    window_end(start, days).is_none_or(|end| at <= end)
}

/// Whether `t` lies in the `days` before `received_at`, both ends included:
/// the look-back of the courtesy cap and of the abuse pattern.
pub(super) fn in_days_before(t: DateTime<Utc>, days: i64, received_at: DateTime<Utc>) -> bool {
    t <= received_at && inside(t, days, received_at)
}

/// When `to` was, seen from `from`: "13 days 2 hours 5 minutes after",
/// or "1 day before" when `to` precedes `from` (a message dated before the
/// order it cites reads so, not as a negative span).
pub(super) fn relative(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let span = to.signed_duration_since(from);
    if span < TimeDelta::zero() {
        format!("{} before", span_words(-span))
    } else {
        format!("{} after", span_words(span))
    }
}

/// An instant as RFC 3339 in UTC, to the second.
pub(super) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn span_words(span: TimeDelta) -> String {
    let days = span.num_days();
    let hours = span.num_hours() - days * 24;
    let minutes = span.num_minutes() - span.num_hours() * 60;
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match (days, hours, minutes) {
        (0, 0, m) => unit(m, "minute"),
        (0, h, 0) => unit(h, "hour"),
        (0, h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (d, 0, 0) => unit(d, "day"),
        (d, h, 0) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
        (d, h, m) => format!(
            "{} {} {}",
            unit(d, "day"),
            unit(h, "hour"),
            unit(m, "minute")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_window_end_is_inclusive_to_the_instant() {
        let start = t("2026-06-01T10:00:00Z");
        for (at, expected) in [
            ("2026-06-15T10:00:00Z", true),
            ("2026-06-15T10:00:59Z", false),
            ("2026-06-15T10:01:00Z", false),
            ("2026-06-14T09:59:00Z", true),
        ] {
            assert_eq!(inside(start, 14, t(at)), expected, "{at}");
        }
    }

    #[test]
    fn a_window_too_long_for_a_timestamp_never_ends() {
        assert!(inside(
            t("2026-06-01T10:00:00Z"),
            i64::MAX,
            t("9999-01-01T00:00:00Z")
        ));
    }

    #[test]
    fn the_look_back_includes_both_ends_and_nothing_after_receipt() {
        let received = t("2026-09-01T00:00:00Z");
        for (when, expected) in [
            ("2026-06-03T00:00:00Z", true),  // exactly 90 days before
            ("2026-06-02T23:59:00Z", false), // 90 days and a minute
            ("2026-09-01T00:00:00Z", true),  // the same instant
            ("2026-09-01T00:01:00Z", false), // after receipt
        ] {
            assert_eq!(in_days_before(t(when), 90, received), expected, "{when}");
        }
    }

    #[test]
    fn elapsed_time_reads_as_days_hours_and_minutes_after_or_before() {
        let from = t("2026-06-01T10:00:00Z");
        for (to, expected) in [
            ("2026-06-14T12:05:00Z", "13 days 2 hours 5 minutes after"),
            ("2026-06-15T10:00:00Z", "14 days after"),
            ("2026-06-01T11:00:00Z", "1 hour after"),
            ("2026-06-01T10:00:00Z", "0 minutes after"),
            ("2026-05-31T10:00:00Z", "1 day before"),
        ] {
            assert_eq!(relative(from, t(to)), expected);
        }
    }
}
