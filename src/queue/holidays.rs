//! Holiday files: the public holidays of one country (or region) in a small
//! TOML format, loadable by path from `[calendar] holiday_files`.
//!
//! ```toml
//! # Germany, nationwide public holidays.
//! country = "DE"            # free text, for people
//! [[holiday]]
//! date = "2026-01-01"       # YYYY-MM-DD, quoted (local date in the calendar's zone)
//! name = "Neujahr"          # free text, for people
//! ```
//!
//! Takes a path; gives the dates. Never guesses substitute days: a country
//! that moves a holiday off a weekend lists the substitute day itself.
//! Fails with [`ConfigError`] (`Read` or `Parse`, naming the file) so that
//! a missing or misspelt file stops the start.

use chrono::NaiveDate;
use serde::Deserialize;
use std::path::Path;

use crate::config::ConfigError;

/// One holiday file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidayFile {
    /// Which country or region the file is for (for people).
    #[serde(default)]
    pub country: String,
    /// The holidays, in any order.
    #[serde(default, rename = "holiday")]
    pub holidays: Vec<Holiday>,
}

/// One public holiday.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// The local date.
    pub date: NaiveDate,
    /// Its name (for people).
    #[serde(default)]
    pub name: String,
}

impl HolidayFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<HolidayFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// The dates of the file's holidays.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.holidays.iter().map(|h| h.date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn every_shipped_holiday_file_parses_and_covers_2026_and_2027() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/holidays");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            seen += 1;
            let file = HolidayFile::load(&path).unwrap();
            assert!(!file.country.is_empty(), "{}", path.display());
            for year in [2026, 2027] {
                assert!(
                    file.dates().any(|d| d.year() == year && d.ordinal() == 1),
                    "{} lacks 1 Jan {year}",
                    path.display()
                );
                assert!(
                    file.dates().filter(|d| d.year() == year).count() >= 6,
                    "{} {year}",
                    path.display()
                );
            }
            assert!(
                file.holidays.iter().all(|h| !h.name.is_empty()),
                "{}",
                path.display()
            );
        }
        assert!(
            seen >= 5,
            "found only {seen} holiday files in {}",
            dir.display()
        );
    }

    #[test]
    fn an_unknown_key_or_bad_date_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (text, what) in [
            ("[[holiday]]\ndate = \"2026-13-01\"\n", "bad date"),
            ("[[holiday]]\nday = \"2026-01-01\"\n", "unknown key"),
        ] {
            let path = dir.path().join("x.toml");
            std::fs::write(&path, text).unwrap();
            let err = HolidayFile::load(&path).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{what}");
            assert!(err.to_string().contains("x.toml"), "{what}");
        }
        assert!(matches!(
            HolidayFile::load(&dir.path().join("missing.toml")),
            Err(ConfigError::Read { .. })
        ));
    }
}
