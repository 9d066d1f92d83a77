//! Business-time arithmetic for the reply promise ("within 2 business
//! days").
//!
//! Takes a [`BusinessCalendar`] (time zone, working days, working hours,
//! public holidays) and instants in UTC; gives deadlines and the working
//! time between two instants. A business day is one working day's worth of
//! working time: with hours 09:00–17:00, a message received on Friday at
//! 16:00 has one hour on Friday, eight on Monday and seven on Tuesday, so
//! two business days end on Tuesday at 16:00. A message that arrives
//! outside working hours starts counting at the next opening.
//!
//! Each working day is an interval of real time in UTC (its local opening
//! and closing times converted through the zone), so the arithmetic is
//! monotonic across daylight-saving changes: a day whose hours straddle a
//! change has one hour more or less of real working time. A local time that
//! does not exist (spring forward) moves to the first instant that does; an
//! ambiguous one (fall back) takes its earlier instant.
//!
//! PURE: never reads the clock, never fails. An empty list of working days
//! counts every day; the search for the next working day gives up after
//! twenty years of holidays and answers the instant it reached.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// How many days the calendar looks ahead for a working day before it
/// gives up (a configuration whose every day is a holiday).
const SEARCH_DAYS: u32 = 20 * 366;

/// Daily working hours in the calendar's zone, `HH:MM-HH:MM` in
/// configuration, opening strictly before closing on the same day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkingHours {
    opens: NaiveTime,
    closes: NaiveTime,
}

/// Why a working-hours text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("working hours {text:?} are invalid: {reason}")]
pub struct WorkingHoursError {
    text: String,
    reason: &'static str,
}

impl WorkingHours {
    /// Hours from `opens` to `closes`; `None` unless `opens < closes`.
    pub fn new(opens: NaiveTime, closes: NaiveTime) -> Option<WorkingHours> {
        (opens < closes).then_some(WorkingHours { opens, closes })
    }

    /// When the working day starts (local time).
    pub fn opens(self) -> NaiveTime {
        self.opens
    }

    /// When the working day ends (local time).
    pub fn closes(self) -> NaiveTime {
        self.closes
    }

    /// The nominal length of one working day (one business day).
    pub fn length(self) -> Duration {
        self.closes - self.opens
    }
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            opens: hm(9, 0),
            closes: hm(17, 0),
        }
    }
}

impl fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.opens.format("%H:%M"),
            self.closes.format("%H:%M")
        )
    }
}

impl std::str::FromStr for WorkingHours {
    type Err = WorkingHoursError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| WorkingHoursError {
            text: text.to_owned(),
            reason,
        };
        let (opens, closes) = text
            .split_once('-')
            .ok_or_else(|| error("expected HH:MM-HH:MM"))?;
        let parse = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| error("expected HH:MM-HH:MM"))
        };
        WorkingHours::new(parse(opens)?, parse(closes)?)
            .ok_or_else(|| error("the day must open before it closes"))
    }
}

impl TryFrom<String> for WorkingHours {
    type Error = WorkingHoursError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<WorkingHours> for String {
    fn from(hours: WorkingHours) -> String {
        hours.to_string()
    }
}

/// When the team works: a zone, working weekdays, daily hours, holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    zone: Tz,
    /// Bit `n` set: the weekday `n` days from Monday is worked.
    working_days: u8,
    hours: WorkingHours,
    holidays: BTreeSet<NaiveDate>,
}

impl Default for BusinessCalendar {
    /// UTC, Monday to Friday, 09:00–17:00, no holidays.
    fn default() -> Self {
        BusinessCalendar::new(Tz::UTC, MONDAY_TO_FRIDAY, WorkingHours::default(), [])
    }
}

/// The usual working week.
pub const MONDAY_TO_FRIDAY: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

impl BusinessCalendar {
    /// A calendar in `zone`. An empty `working_days` counts every day.
    pub fn new(
        zone: Tz,
        working_days: impl IntoIterator<Item = Weekday>,
        hours: WorkingHours,
        holidays: impl IntoIterator<Item = NaiveDate>,
    ) -> BusinessCalendar {
        BusinessCalendar {
            zone,
            working_days: working_days
                .into_iter()
                .fold(0, |mask, day| mask | 1 << day.num_days_from_monday()),
            hours,
            holidays: holidays.into_iter().collect(),
        }
    }

    /// The calendar's time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The daily working hours.
    pub fn hours(&self) -> WorkingHours {
        self.hours
    }

    /// Whether `day` (a local date) is a working day: a working weekday
    /// that is not a holiday. A holiday on a weekend changes nothing.
    pub fn is_business_day(&self, day: NaiveDate) -> bool {
        let worked = self.working_days == 0
            || self.working_days & (1 << day.weekday().num_days_from_monday()) != 0;
        worked && !self.holidays.contains(&day)
    }

    /// Whether `at` falls inside working hours (opening and closing
    /// instants included).
    pub fn is_working_time(&self, at: DateTime<Utc>) -> bool {
        let day = self.local_date(at);
        [day.pred_opt(), Some(day)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.span(d))
            .any(|(opens, closes)| opens <= at && at <= closes)
    }

    /// When an answer is owed: `received_at` plus `business_days` days of
    /// working time. The result is never before `received_at` and always
    /// inside working hours on a working day.
    pub fn deadline(&self, received_at: DateTime<Utc>, business_days: u32) -> DateTime<Utc> {
        self.add_working_time(received_at, self.hours.length() * business_days as i32)
    }

    /// The same as [`deadline`](Self::deadline); the name the pipeline
    /// has always called.
    pub fn add_business_days(&self, from: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        self.deadline(from, days)
    }

    /// `from` plus `amount` of working time.
    pub fn add_working_time(&self, from: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
        let mut need = amount.max(Duration::zero());
        let mut day = self.local_date(from);
        let mut reached = from;
        for _ in 0..SEARCH_DAYS {
            if let Some((opens, closes)) = self.span(day) {
                let start = opens.max(from);
                if start <= closes {
                    if need <= closes - start {
                        return start + need;
                    }
                    need -= closes - start;
                }
                reached = reached.max(closes);
            }
            day = match day.succ_opt() {
                Some(next) => next,
                None => break,
            };
        }
        reached
    }

    /// Working time between two instants (zero when `to <= from`).
    pub fn working_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::zero();
        }
        let mut total = Duration::zero();
        let mut day = self.local_date(from);
        let last = self.local_date(to);
        while day <= last {
            if let Some((opens, closes)) = self.span(day) {
                let (start, end) = (opens.max(from), closes.min(to));
                if start < end {
                    total += end - start;
                }
            }
            day = match day.succ_opt() {
                Some(next) => next,
                None => break,
            };
        }
        total
    }

    /// The local date of an instant in the calendar's zone.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// A working day's hours as real instants, or `None` on a day off (or
    /// a day whose hours vanish in a time change).
    fn span(&self, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.is_business_day(day) {
            return None;
        }
        let opens = self.instant(day.and_time(self.hours.opens));
        let closes = self.instant(day.and_time(self.hours.closes));
        (opens < closes).then_some((opens, closes))
    }

    /// The instant of a local time: the earlier of two (fall back), or the
    /// first existing one after a gap (spring forward).
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let mut probe = local;
        // Gaps are at most a few hours long; step in minutes past them.
        for _ in 0..(24 * 60) {
            match self.zone.from_local_datetime(&probe) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                    return at.with_timezone(&Utc);
                }
                LocalResult::None => probe += Duration::minutes(1),
            }
        }
        local.and_utc()
    }
}

fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).expect("valid clock time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin};
    use proptest::prelude::*;

    fn berlin(s: &str) -> DateTime<Utc> {
        local(Berlin, s)
    }

    fn local(zone: Tz, s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        zone.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn berlin_calendar(holidays: &[&str]) -> BusinessCalendar {
        BusinessCalendar::new(
            Berlin,
            MONDAY_TO_FRIDAY,
            WorkingHours::default(),
            holidays.iter().map(|d| date(d)),
        )
    }

    #[test]
    fn two_business_days_count_working_hours_in_the_zone() {
        let cal = berlin_calendar(&["2026-12-25", "2026-12-26", "2027-01-01"]);
        let table = [
            (
                "a Friday afternoon message is due Tuesday at the same hour",
                "2026-06-05 16:00",
                "2026-06-09 16:00",
            ),
            (
                "a Wednesday morning message is due Friday morning",
                "2026-06-03 10:30",
                "2026-06-05 10:30",
            ),
            (
                "a message after closing starts at the next opening",
                "2026-06-03 18:45",
                "2026-06-05 17:00",
            ),
            (
                "a message before opening starts at that day's opening",
                "2026-06-03 07:00",
                "2026-06-04 17:00",
            ),
            (
                "a Saturday message starts on Monday",
                "2026-06-06 12:00",
                "2026-06-09 17:00",
            ),
            (
                "a message at closing time starts at the next opening",
                "2026-06-03 17:00",
                "2026-06-05 17:00",
            ),
            (
                "Christmas and the weekend are skipped",
                "2026-12-24 15:00",
                "2026-12-29 15:00",
            ),
            (
                "New Year is skipped across the year end",
                "2026-12-31 12:00",
                "2027-01-05 12:00",
            ),
            (
                "the spring change is a normal working day",
                "2026-03-27 16:00",
                "2026-03-31 16:00",
            ),
            (
                "the autumn change is a normal working day",
                "2026-10-23 11:00",
                "2026-10-27 11:00",
            ),
        ];
        for (why, received, due) in table {
            assert_eq!(cal.deadline(berlin(received), 2), berlin(due), "{why}");
        }
    }

    #[test]
    fn a_holiday_on_a_weekend_changes_nothing() {
        // 26 Dec 2026 is a Saturday.
        let with = berlin_calendar(&["2026-12-26"]);
        let without = berlin_calendar(&[]);
        let at = berlin("2026-12-24 10:00");
        assert_eq!(with.deadline(at, 2), without.deadline(at, 2));
        assert_eq!(with.deadline(at, 2), berlin("2026-12-28 10:00"));
    }

    #[test]
    fn working_time_is_measured_inside_hours_only() {
        let cal = berlin_calendar(&[]);
        let table = [
            ("2026-06-05 16:00", "2026-06-09 16:00", 16),
            ("2026-06-05 18:00", "2026-06-08 08:00", 0),
            ("2026-06-08 08:00", "2026-06-08 12:00", 3),
            ("2026-06-08 12:00", "2026-06-08 11:00", 0),
        ];
        for (from, to, hours) in table {
            assert_eq!(
                cal.working_time_between(berlin(from), berlin(to)),
                Duration::hours(hours),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn working_time_answers_whether_an_instant_is_inside_hours() {
        let cal = berlin_calendar(&["2026-06-04"]);
        for (at, inside) in [
            ("2026-06-03 09:00", true),
            ("2026-06-03 17:00", true),
            ("2026-06-03 17:01", false),
            ("2026-06-04 12:00", false),
            ("2026-06-06 12:00", false),
        ] {
            assert_eq!(cal.is_working_time(berlin(at)), inside, "{at}");
        }
    }

    #[test]
    fn working_hours_read_from_text_and_refuse_an_inverted_day() {
        assert_eq!(
            "08:30-16:00".parse::<WorkingHours>().unwrap().length(),
            Duration::minutes(450)
        );
        assert_eq!(WorkingHours::default().to_string(), "09:00-17:00");
        for bad in ["17:00-09:00", "09:00", "9-17", "09:00-09:00"] {
            assert!(bad.parse::<WorkingHours>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_week_counts_every_day() {
        let cal = BusinessCalendar::new(Tz::UTC, [], WorkingHours::default(), []);
        let at = local(Tz::UTC, "2026-06-06 10:00");
        assert_eq!(cal.deadline(at, 1), local(Tz::UTC, "2026-06-07 10:00"));
    }

    /// Counts working minutes one by one, from the local clock: the
    /// independent reference the property tests compare against.
    fn brute_force_minutes(
        cal: &BusinessCalendar,
        hours: WorkingHours,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> i64 {
        let mut at = from;
        let mut minutes = 0;
        while at < to {
            let local = at.with_timezone(&cal.zone);
            let time = local.time();
            if cal.is_business_day(local.date_naive()) && hours.opens <= time && time < hours.closes
            {
                minutes += 1;
            }
            at += Duration::minutes(1);
        }
        minutes
    }

    /// Instants near the DST changes (Berlin 29 Mar / 25 Oct 2026, New York
    /// 8 Mar / 1 Nov 2026) and the year end, in whole minutes.
    fn received() -> impl Strategy<Value = DateTime<Utc>> {
        let anchors = [
            "2026-03-06T00:00:00Z",
            "2026-03-26T00:00:00Z",
            "2026-10-22T00:00:00Z",
            "2026-10-29T00:00:00Z",
            "2026-12-22T00:00:00Z",
            "2027-03-11T00:00:00Z",
        ];
        (0..anchors.len(), 0i64..(7 * 24 * 60)).prop_map(move |(i, minutes)| {
            DateTime::parse_from_rfc3339(anchors[i])
                .unwrap()
                .with_timezone(&Utc)
                + Duration::minutes(minutes)
        })
    }

    fn calendar() -> impl Strategy<Value = BusinessCalendar> {
        let zones = [Berlin, New_York];
        // 01:00–05:00 straddles both zones' changes: those days are an hour
        // shorter or longer in real time.
        let hours = ["09:00-17:00", "08:30-18:15", "01:00-05:00", "00:00-23:59"];
        let pool = [
            "2026-03-09",
            "2026-03-30",
            "2026-10-26",
            "2026-11-02",
            "2026-12-25",
            "2026-12-26",
            "2027-01-01",
            "2027-01-02",
            "2026-12-31",
        ];
        (
            0..2usize,
            0..hours.len(),
            proptest::collection::vec(0..pool.len(), 0..5),
        )
            .prop_map(move |(z, h, picked)| {
                BusinessCalendar::new(
                    zones[z],
                    MONDAY_TO_FRIDAY,
                    hours[h].parse().unwrap(),
                    picked.into_iter().map(|i| date(pool[i])),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn a_deadline_is_later_inside_hours_and_exactly_n_days_of_work_away(
            cal in calendar(), at in received(), days in 1u32..4,
        ) {
            let due = cal.deadline(at, days);
            prop_assert!(due > at);
            prop_assert!(cal.is_working_time(due), "{due} is outside working hours");
            prop_assert!(cal.is_business_day(cal.local_date(due)));
            let owed = cal.hours().length() * days as i32;
            prop_assert_eq!(cal.working_time_between(at, due), owed);
            prop_assert_eq!(brute_force_minutes(&cal, cal.hours(), at, due), owed.num_minutes());
        }

        #[test]
        fn a_later_message_is_never_due_earlier(
            cal in calendar(), at in received(), later in 0i64..(3 * 24 * 60), days in 1u32..4,
        ) {
            let second = at + Duration::minutes(later);
            prop_assert!(cal.deadline(at, days) <= cal.deadline(second, days));
        }
    }
}
