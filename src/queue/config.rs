//! `[calendar]` and `[escalation]`: when the team works and how the reply
//! promise is kept. Part of [`Settings`](crate::config::Settings).
//!
//! Takes TOML (zone names from the IANA database, weekdays as `Mon`…,
//! hours as `HH:MM-HH:MM`, dates as `YYYY-MM-DD`); gives a
//! [`BusinessCalendar`] and the escalation thresholds. Holiday files are
//! read once, at load ([`CalendarConfig::load_holiday_files`]); building
//! the calendar afterwards never fails. Fails with
//! [`ConfigError`](crate::config::ConfigError).

use chrono::{Duration, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::deadline::{BusinessCalendar, MONDAY_TO_FRIDAY, WorkingHours};
use super::holidays::HolidayFile;
use crate::config::ConfigError;

/// `[calendar]`: the business days the reply deadline counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// IANA zone the team works in, e.g. `Europe/Berlin`.
    pub time_zone: Tz,
    /// Working weekdays (`Mon` … `Sun`).
    pub working_days: Vec<Weekday>,
    /// Daily working hours, `HH:MM-HH:MM` in `time_zone`.
    pub hours: WorkingHours,
    /// Extra days off (`YYYY-MM-DD`): regional holidays, company days.
    pub holidays: Vec<NaiveDate>,
    /// Holiday files (see `examples/holidays/README.md`); relative paths
    /// are taken from the configuration file's folder.
    pub holiday_files: Vec<PathBuf>,
    /// The dates read from `holiday_files` (filled at load).
    #[serde(skip)]
    pub file_holidays: Vec<NaiveDate>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            time_zone: Tz::UTC,
            working_days: MONDAY_TO_FRIDAY.to_vec(),
            hours: WorkingHours::default(),
            holidays: Vec::new(),
            holiday_files: Vec::new(),
            file_holidays: Vec::new(),
        }
    }
}

impl CalendarConfig {
    /// Reads every holiday file (relative paths from `base`) into
    /// `file_holidays`.
    pub fn load_holiday_files(&mut self, base: Option<&Path>) -> Result<(), ConfigError> {
        let mut dates = Vec::new();
        for path in &self.holiday_files {
            let path = match base {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.clone(),
            };
            dates.extend(HolidayFile::load(&path)?.dates());
        }
        self.file_holidays = dates;
        Ok(())
    }

    /// The calendar these settings describe.
    pub fn calendar(&self) -> BusinessCalendar {
        let holidays = self.holidays.iter().chain(&self.file_holidays).copied();
        BusinessCalendar::new(
            self.time_zone,
            self.working_days.iter().copied(),
            self.hours,
            holidays,
        )
    }

    /// At least one working day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.working_days.is_empty() {
            return Err(ConfigError::Invalid {
                key: "calendar.working_days",
                reason: "name at least one weekday".into(),
            });
        }
        Ok(())
    }
}

/// `[escalation]`: warnings before the reply deadline and closing cases
/// the customer abandoned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Where the digest of cases nearing or past their deadline goes.
    /// Empty: escalations are recorded (console, metrics) but not mailed.
    pub team_address: String,
    /// A review case is escalated when this much working time is left.
    pub warn_before_working_hours: u32,
    /// A case waiting on the customer is closed after this many calendar
    /// days without an answer.
    pub needs_info_close_after_days: u32,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            team_address: "refunds-team@anumi.example".into(),
            warn_before_working_hours: 4,
            needs_info_close_after_days: 14,
        }
    }
}

impl EscalationConfig {
    /// The warning threshold as working time.
    pub fn warn_before(&self) -> Duration {
        Duration::hours(i64::from(self.warn_before_working_hours))
    }

    /// An address when one is set; a positive close-after.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.team_address.is_empty() && !self.team_address.contains('@') {
            return Err(ConfigError::Invalid {
                key: "escalation.team_address",
                reason: "must be an email address or empty".into(),
            });
        }
        if self.needs_info_close_after_days == 0 {
            return Err(ConfigError::Invalid {
                key: "escalation.needs_info_close_after_days",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_section_reads_zone_days_hours_and_holiday_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.toml"),
            "country = \"X\"\n[[holiday]]\ndate = \"2026-06-08\"\nname = \"Day\"\n",
        )
        .unwrap();
        let mut config: CalendarConfig = toml::from_str(
            r#"
            time_zone = "Europe/Berlin"
            working_days = ["Mon", "Tue", "Wed", "Thu"]
            hours = "08:00-16:00"
            holidays = ["2026-06-09"]
            holiday_files = ["x.toml"]
            "#,
        )
        .unwrap();
        config.load_holiday_files(Some(dir.path())).unwrap();
        let cal = config.calendar();
        assert_eq!(cal.zone(), chrono_tz::Europe::Berlin);
        assert_eq!(cal.hours().to_string(), "08:00-16:00");
        for (day, working) in [
            ("2026-06-08", false),
            ("2026-06-09", false),
            ("2026-06-10", true),
            ("2026-06-12", false),
        ] {
            assert_eq!(cal.is_business_day(day.parse().unwrap()), working, "{day}");
        }
    }

    #[test]
    fn a_misspelt_zone_or_inverted_hours_is_refused_at_load() {
        for text in [
            "time_zone = \"Europe/Berlinn\"",
            "hours = \"17:00-09:00\"",
            "working_days = [\"Funday\"]",
        ] {
            assert!(toml::from_str::<CalendarConfig>(text).is_err(), "{text}");
        }
        let empty = CalendarConfig {
            working_days: vec![],
            ..CalendarConfig::default()
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn a_missing_holiday_file_stops_the_load() {
        let mut config = CalendarConfig {
            holiday_files: vec!["nowhere.toml".into()],
            ..CalendarConfig::default()
        };
        assert!(matches!(
            config.load_holiday_files(None),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn escalation_settings_check_the_address_and_the_close_after() {
        assert!(EscalationConfig::default().validate().is_ok());
        let no_at = EscalationConfig {
            team_address: "team".into(),
            ..EscalationConfig::default()
        };
        assert!(no_at.validate().is_err());
        let zero = EscalationConfig {
            needs_info_close_after_days: 0,
            ..EscalationConfig::default()
        };
        assert!(zero.validate().is_err());
        let silent = EscalationConfig {
            team_address: String::new(),
            ..EscalationConfig::default()
        };
        assert!(silent.validate().is_ok());
    }
}
