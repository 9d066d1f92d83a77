//! A candidate configuration: a whole refundd config file of which only
//! the deciding parts count — `[policy]` thresholds, `[extract]` (with
//! its intent rules file) and `[sender_auth]`. Everything else (database,
//! mail, payments, `[policy] shadow`) stays as in force.
//!
//! Takes the file's text; gives validated [`Settings`] or a
//! [`CandidateError`] that says what is wrong (TOML syntax with line and
//! column, a value out of range, a rules file that is missing or does not
//! compile). Never writes anything: a bad candidate changes nothing.

use crate::config::{ConfigError, Settings};
use crate::extract::ExtractError;
use crate::pipeline::FactsReader;
use crate::policy::PolicyConfig;

/// Why a candidate (or the configuration in force) cannot decide.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// Not TOML, or not the shape of a refundd configuration (the cause
    /// names the line and column, or the unknown key).
    #[error("the candidate is not a valid refundd configuration file")]
    Parse(#[source] toml::de::Error),
    /// A value is out of range or malformed.
    #[error("the candidate has an invalid value")]
    Invalid(#[source] ConfigError),
    /// The extraction patterns or the intent rules file do not compile
    /// (or the rules file cannot be read).
    #[error("the candidate's extraction rules cannot be used")]
    Rules(#[source] ExtractError),
}

/// Reads and checks a candidate configuration file's text: TOML, values,
/// and that its extraction rules compile. `[extract] rules_file` is read
/// relative to the working directory.
pub fn validate_candidate(text: &str) -> Result<Settings, CandidateError> {
    let settings: Settings = toml::from_str(text).map_err(CandidateError::Parse)?;
    settings.validate().map_err(CandidateError::Invalid)?;
    Deciding::new(&settings, &settings)?;
    Ok(settings)
}

/// `in_force` deciding with `candidate`'s `[policy]`, `[extract]` and
/// `[sender_auth]`; everything else, `[policy] shadow` included, as in
/// force.
pub fn deciding_settings(in_force: &Settings, candidate: &Settings) -> Settings {
    let mut settings = in_force.clone();
    settings.policy = PolicyConfig {
        shadow: in_force.policy.shadow,
        ..candidate.policy.clone()
    };
    settings.extract = candidate.extract.clone();
    settings.sender_auth = candidate.sender_auth.clone();
    settings
}

/// One deciding configuration, compiled: how messages read and the
/// policy's thresholds, with its fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct Deciding {
    pub reader: FactsReader,
    pub policy: PolicyConfig,
    /// [`Settings::decision_fingerprint`].
    pub fingerprint: String,
    /// What reads messages (`[extract]`, `[sender_auth]`): two
    /// configurations with equal keys read every message alike.
    pub reading_key: String,
}

impl Deciding {
    /// `in_force` deciding with `deciding`'s deciding parts.
    pub fn new(in_force: &Settings, deciding: &Settings) -> Result<Deciding, CandidateError> {
        let settings = deciding_settings(in_force, deciding);
        let reader = FactsReader::new(&settings).map_err(CandidateError::Rules)?;
        let fingerprint = settings
            .decision_fingerprint()
            .map_err(CandidateError::Invalid)?;
        let rules = crate::extract::rules_text(&settings.extract).map_err(|source| {
            CandidateError::Rules(ExtractError::ReadRules {
                path: settings.extract.rules_file.clone().unwrap_or_default(),
                source,
            })
        })?;
        let reading_key = serde_json::json!({
            "extract": settings.extract,
            "rules": rules,
            "sender_auth": settings.sender_auth,
            "from": settings.reply.from,
        })
        .to_string();
        Ok(Deciding {
            reader,
            policy: settings.policy,
            fingerprint,
            reading_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    fn chain(err: &dyn Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    #[test]
    fn a_candidate_with_a_shorter_window_is_accepted() {
        let settings = validate_candidate("[policy]\nrefund_window_days = 7\n").unwrap();
        assert_eq!(settings.policy.refund_window_days, 7);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = validate_candidate("[policy]\nrefund_window_days = \n").unwrap_err();
        assert!(matches!(err, CandidateError::Parse(_)));
        assert!(chain(&err).contains("line 2"), "{}", chain(&err));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = validate_candidate("[policy]\nrefund_window = 7\n").unwrap_err();
        assert!(chain(&err).contains("refund_window"), "{}", chain(&err));
    }

    #[test]
    fn a_value_out_of_range_is_named() {
        let err = validate_candidate("[policy]\nrefund_window_days = 0\n").unwrap_err();
        assert!(matches!(err, CandidateError::Invalid(_)));
        assert!(
            chain(&err).contains("policy.refund_window_days"),
            "{}",
            chain(&err)
        );
    }

    #[test]
    fn a_missing_rules_file_is_refused() {
        let err = validate_candidate("[extract]\nrules_file = \"/nonexistent/rules.toml\"\n")
            .unwrap_err();
        assert!(matches!(err, CandidateError::Rules(_)));
        assert!(
            chain(&err).contains("/nonexistent/rules.toml"),
            "{}",
            chain(&err)
        );
    }

    #[test]
    fn only_the_deciding_parts_of_a_candidate_count() {
        let mut in_force = Settings::default();
        in_force.database.url = "sqlite://live.db".into();
        in_force.policy.shadow = true;
        let mut candidate = Settings::default();
        candidate.database.url = "sqlite://elsewhere.db".into();
        candidate.policy.refund_window_days = 7;
        candidate.sender_auth.trusted_authserv_ids = vec!["mx.example".into()];
        let merged = deciding_settings(&in_force, &candidate);
        assert_eq!(merged.database.url, "sqlite://live.db");
        assert!(merged.policy.shadow, "shadow is not a deciding part");
        assert_eq!(merged.policy.refund_window_days, 7);
        assert_eq!(merged.sender_auth.trusted_authserv_ids, ["mx.example"]);
    }

    #[test]
    fn a_candidate_changing_only_thresholds_reads_messages_alike() {
        let in_force = Settings::default();
        let mut candidate = Settings::default();
        candidate.policy.refund_window_days = 7;
        let a = Deciding::new(&in_force, &in_force).unwrap();
        let b = Deciding::new(&in_force, &candidate).unwrap();
        assert_eq!(a.reading_key, b.reading_key);
        assert_ne!(a.fingerprint, b.fingerprint);
        candidate.extract.invoice_prefix = "SHOP".into();
        let c = Deciding::new(&in_force, &candidate).unwrap();
        assert_ne!(a.reading_key, c.reading_key);
    }
}
