//! `[polar]`: how refundd reaches Polar and the guard rails on the money it
//! moves.
//!
//! Takes: the `[polar]` table of the settings file, and the environment for
//! the secrets (`REFUNDD_POLAR_TOKEN`, `REFUNDD_POLAR_WEBHOOK_SECRET`).
//! Gives: [`PolarSettings`], validated, and the client configuration built
//! from it. Without a `[polar]` table payments are off: cash refunds stay
//! `pending` ("approved, not yet paid") and replies go out at once.
//! Never: logs or prints a secret (`Debug` redacts both). Fails with
//! [`crate::config::ConfigError::Invalid`] naming the key.
//!
//! Limits are integer minor units of the refund's own currency (900 = 9.00
//! EUR). They are compared per currency: the daily total of EUR refunds is
//! the sum of EUR refunds only. With several currencies of very different
//! value (EUR and JPY), one number per limit is coarse: set it for the
//! smallest unit you sell in.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::polar::PolarClientConfig;
use crate::config::ConfigError;

/// `[polar]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolarSettings {
    /// `https://api.polar.sh`, `https://sandbox-api.polar.sh`, or the test
    /// server's URL.
    pub base_url: String,
    /// Organization access token (`polar_oat_…`). Also `REFUNDD_POLAR_TOKEN`,
    /// which wins over the file.
    pub token: String,
    /// Record what would have been refunded and send nothing to Polar. The
    /// case goes to review (a person pays by hand), and the customer gets
    /// the "a person will look" reply, never a false "refund on its way".
    pub dry_run: bool,
    /// The switch: `false` turns every automatic refund off. Decisions are
    /// still made and recorded; every cash refund goes to review.
    pub auto_refunds: bool,
    /// The largest refund made without a person, in minor units.
    pub max_refund_amount: i64,
    /// The most refunded automatically per UTC day and currency, in minor
    /// units (refunds Polar accepted today plus this one).
    pub max_daily_refund_total: i64,
    /// Standard Webhooks secret (`whsec_…`). Also
    /// `REFUNDD_POLAR_WEBHOOK_SECRET`. Webhooks are refused without one.
    pub webhook_secret: Option<String>,
    /// Seconds between two polls of Polar's disputes.
    pub dispute_poll_interval: u64,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
    /// POSTs with an unclear outcome (timeout, 5xx) a refund may have
    /// before it goes to a person instead of another attempt.
    pub max_attempts: u32,
}

impl Default for PolarSettings {
    fn default() -> Self {
        PolarSettings {
            base_url: "https://api.polar.sh".into(),
            token: String::new(),
            dry_run: false,
            auto_refunds: true,
            max_refund_amount: 5_000,
            max_daily_refund_total: 20_000,
            webhook_secret: None,
            dispute_poll_interval: 900,
            timeout_ms: 10_000,
            max_attempts: 3,
        }
    }
}

impl fmt::Debug for PolarSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolarSettings")
            .field("base_url", &self.base_url)
            .field("token", &"[redacted]")
            .field("dry_run", &self.dry_run)
            .field("auto_refunds", &self.auto_refunds)
            .field("max_refund_amount", &self.max_refund_amount)
            .field("max_daily_refund_total", &self.max_daily_refund_total)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("dispute_poll_interval", &self.dispute_poll_interval)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl PolarSettings {
    /// Overrides from the environment: `REFUNDD_POLAR_TOKEN`,
    /// `REFUNDD_POLAR_WEBHOOK_SECRET`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(token) = var("REFUNDD_POLAR_TOKEN") {
            self.token = token;
        }
        if let Some(secret) = var("REFUNDD_POLAR_WEBHOOK_SECRET") {
            self.webhook_secret = Some(secret);
        }
    }

    /// Checks what serde cannot: a usable URL, a token, positive limits and
    /// timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(invalid("polar.base_url", "must be an http(s) URL"));
        }
        if self.token.trim().is_empty() {
            // Dry-run still reads orders and refunds from Polar.
            return Err(invalid(
                "polar.token",
                "is required (or REFUNDD_POLAR_TOKEN)",
            ));
        }
        if self.max_refund_amount <= 0 {
            return Err(invalid("polar.max_refund_amount", "must be positive"));
        }
        if self.max_daily_refund_total <= 0 {
            return Err(invalid("polar.max_daily_refund_total", "must be positive"));
        }
        if self.dispute_poll_interval == 0 {
            return Err(invalid("polar.dispute_poll_interval", "must be positive"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("polar.timeout_ms", "must be positive"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("polar.max_attempts", "must be at least 1"));
        }
        if self
            .webhook_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(invalid("polar.webhook_secret", "must not be empty"));
        }
        Ok(())
    }

    /// The Polar client configuration these settings describe.
    pub fn client_config(&self) -> PolarClientConfig {
        PolarClientConfig {
            timeout: Duration::from_millis(self.timeout_ms),
            ..PolarClientConfig::new(self.base_url.clone(), self.token.clone())
        }
    }

    /// The dispute poll's period.
    pub fn dispute_poll_period(&self) -> Duration {
        Duration::from_secs(self.dispute_poll_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PolarSettings {
        PolarSettings {
            token: "polar_oat_x".into(),
            ..PolarSettings::default()
        }
    }

    #[test]
    fn the_documented_keys_read_from_toml() {
        let text = r#"
            base_url = "http://127.0.0.1:8089"
            token = "polar_oat_file"
            dry_run = true
            auto_refunds = false
            max_refund_amount = 1500
            max_daily_refund_total = 4000
            webhook_secret = "whsec_abc"
            dispute_poll_interval = 60
            timeout_ms = 500
            max_attempts = 2
        "#;
        let settings: PolarSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.base_url, "http://127.0.0.1:8089");
        assert!(settings.dry_run);
        assert!(!settings.auto_refunds);
        assert_eq!(settings.max_refund_amount, 1500);
        assert_eq!(settings.max_daily_refund_total, 4000);
        assert_eq!(settings.webhook_secret.as_deref(), Some("whsec_abc"));
        assert_eq!(settings.client_config().timeout, Duration::from_millis(500));
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn secrets_from_the_environment_win_and_never_show_in_debug() {
        let mut settings = valid();
        settings.apply_env(|key| match key {
            "REFUNDD_POLAR_TOKEN" => Some("polar_oat_env".into()),
            "REFUNDD_POLAR_WEBHOOK_SECRET" => Some("whsec_env".into()),
            _ => None,
        });
        assert_eq!(settings.token, "polar_oat_env");
        assert_eq!(settings.webhook_secret.as_deref(), Some("whsec_env"));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("polar_oat_env") && !shown.contains("whsec_env"));
    }

    #[test]
    fn unusable_values_are_refused_by_key() {
        let cases: Vec<(PolarSettings, &str)> = vec![
            (
                PolarSettings {
                    token: String::new(),
                    ..valid()
                },
                "polar.token",
            ),
            (
                PolarSettings {
                    base_url: "api.polar.sh".into(),
                    ..valid()
                },
                "polar.base_url",
            ),
            (
                PolarSettings {
                    max_refund_amount: 0,
                    ..valid()
                },
                "polar.max_refund_amount",
            ),
            (
                PolarSettings {
                    max_daily_refund_total: -1,
                    ..valid()
                },
                "polar.max_daily_refund_total",
            ),
            (
                PolarSettings {
                    timeout_ms: 0,
                    ..valid()
                },
                "polar.timeout_ms",
            ),
        ];
        for (settings, key) in cases {
            match settings.validate() {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: expected Invalid, got {other:?}"),
            }
        }
    }
}
