//! Business-day arithmetic for the reply promise ("within 2 business days").
//!
//! The calendar counts whole working days in UTC, skipping weekends and the
//! listed holidays: a message received on Friday 15:00 is owed an answer by
//! Tuesday 15:00. Working hours and time zones are a later refinement; the
//! deadline this gives is never later than the promise.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Which days count as business days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessCalendar {
    /// Days that are not worked (default Saturday and Sunday).
    pub weekend: Vec<Weekday>,
    /// Public holidays (dates, `YYYY-MM-DD`).
    pub holidays: Vec<NaiveDate>,
}

impl Default for BusinessCalendar {
    fn default() -> Self {
        BusinessCalendar {
            weekend: vec![Weekday::Sat, Weekday::Sun],
            holidays: Vec::new(),
        }
    }
}

impl BusinessCalendar {
    /// Whether `day` is a working day.
    pub fn is_business_day(&self, day: NaiveDate) -> bool {
        !self.weekend.contains(&day.weekday()) && !self.holidays.contains(&day)
    }

    /// `from` plus `days` business days: each step moves one calendar day
    /// and repeats until it lands on a business day. A message that arrives
    /// on a non-working day starts counting from the next working day's
    /// start (00:00 UTC).
    pub fn add_business_days(&self, from: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        let mut at = from;
        if !self.is_business_day(at.date_naive()) {
            at = self.next_business_day_start(at);
        }
        for _ in 0..days {
            at += Duration::days(1);
            while !self.is_business_day(at.date_naive()) {
                at += Duration::days(1);
            }
        }
        at
    }

    fn next_business_day_start(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let mut day = at.date_naive();
        loop {
            day = day.succ_opt().expect("date in range");
            if self.is_business_day(day) {
                return day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn two_business_days_skip_the_weekend_and_holidays() {
        let cal = BusinessCalendar {
            holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()],
            ..BusinessCalendar::default()
        };
        let table = [
            // Wednesday -> Friday
            ("2026-06-03T10:00:00Z", "2026-06-05T10:00:00Z"),
            // Friday -> Tuesday
            ("2026-06-05T15:00:00Z", "2026-06-09T15:00:00Z"),
            // Saturday counts from Monday 00:00 -> Wednesday 00:00
            ("2026-06-06T15:00:00Z", "2026-06-10T00:00:00Z"),
            // Thursday 24 Dec: Friday 25 is a holiday -> Tuesday 29
            ("2026-12-24T09:00:00Z", "2026-12-29T09:00:00Z"),
        ];
        for (from, due) in table {
            assert_eq!(cal.add_business_days(t(from), 2), t(due), "from {from}");
        }
    }
}
