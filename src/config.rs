//! One typed settings tree, read from a TOML file (`--config FILE` or
//! `REFUNDD_CONFIG`) and validated at start. Without a file the embedded
//! defaults work: SQLite in `refundd.db`, replies as `.eml` files in
//! `outbox/`, POLICY.md's thresholds.
//!
//! Secrets can also come from the environment (see [`Settings::apply_env`]),
//! so that they need not be written into the file.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::act::config::PolarSettings;
pub use crate::extract::config::{ExtractConfig, SenderAuthConfig};
pub use crate::ingest::imap::ImapConfig;
// [review]: the deny reasons, defined next to the review desk.
pub use crate::pipeline::deny::{DenyReasonConfig, ReviewConfig};
pub use crate::policy::PolicyConfig;
// [retention]: defined next to the retention and erasure code.
pub use crate::privacy::RetentionConfig;
// [calendar] and [escalation]: defined next to the deadline code.
pub use crate::queue::config::{CalendarConfig, EscalationConfig};
pub use crate::reply::smtp::SmtpConfig;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config value {key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseConfig,
    pub outbox: OutboxConfig,
    pub sender_auth: SenderAuthConfig,
    pub policy: PolicyConfig,
    pub extract: ExtractConfig,
    pub reply: ReplyConfig,
    /// What reviewers decide with: the deny reasons.
    pub review: ReviewConfig,
    pub ingest: IngestConfig,
    pub web: WebConfig,
    /// Business days for the reply deadline.
    pub calendar: CalendarConfig,
    /// Deadline warnings and closing abandoned cases.
    pub escalation: EscalationConfig,
    /// `[imap]`: when present, `refundd run` reads this mailbox.
    pub imap: Option<ImapConfig>,
    /// `[smtp]`: when present, replies go out over SMTP instead of the
    /// outbox folder.
    pub smtp: Option<SmtpConfig>,
    /// `[daemon]`: pacing of `refundd run`.
    pub daemon: DaemonConfig,
    /// `[polar]` (payments, act::config): absent = payments off, cash
    /// refunds stay pending and replies go out at once.
    pub polar: Option<PolarSettings>,
    /// `[retention]`: how long raw mail of closed cases is kept.
    pub retention: RetentionConfig,
}

/// `[daemon]`: how `refundd run` paces its loops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// A Maildir to watch when no `[imap]` is configured (optional).
    pub maildir: Option<PathBuf>,
    /// Seconds between Maildir scans / outbox passes when nothing wakes them.
    pub poll_interval: u64,
    /// Longest wait between reconnect attempts, in seconds.
    pub max_backoff: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            maildir: None,
            poll_interval: 30,
            max_backoff: 60,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created on first use) or `postgres://…`.
    /// Also `REFUNDD_DATABASE_URL`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://refundd.db".into(),
        }
    }
}

/// `[outbox]`: where replies go as `.eml` files when no SMTP is configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    pub dir: PathBuf,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            dir: PathBuf::from("outbox"),
        }
    }
}

/// `[reply]`: how replies are addressed and paced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyConfig {
    /// The `From:` of replies (the refunds mailbox).
    pub from: String,
    /// The display name on replies.
    pub from_name: String,
    /// Domain of the Message-IDs we generate (`<…@domain>`).
    pub message_id_domain: String,
    /// Loop guard: automatic replies one sender may get per hour.
    pub max_replies_per_hour: u32,
    /// Business days within which reviewers answer (quoted in replies).
    pub review_business_days: u32,
    /// Reply templates that replace the shipped ones file by file, and the
    /// bodies of configured deny reasons (`{lang}/{name}.txt`,
    /// `{lang}/layout.txt`, `{lang}/layout.html`). Relative to the config
    /// file's folder. Unset: the shipped templates.
    pub templates_dir: Option<PathBuf>,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        ReplyConfig {
            from: "refunds@anumi.example".into(),
            from_name: "Anumi Refunds".into(),
            message_id_domain: "refundd.anumi.example".into(),
            max_replies_per_hour: 3,
            review_business_days: 2,
            templates_dir: None,
        }
    }
}

/// `[ingest]`: limits on what is read from the mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Messages larger than this are stored truncated and flagged for review.
    pub max_message_bytes: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_message_bytes: crate::ingest::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// `[web]`: the reviewers' console and its JSON API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Where the console listens (default `127.0.0.1:8080`: loopback only).
    pub listen: String,
    /// How long a sign-in lasts, in minutes (default 480).
    pub session_ttl_minutes: i64,
    /// Mark the session cookie `Secure` (default true; turn off only for
    /// plain-HTTP access on loopback).
    pub secure_cookies: bool,
    /// Failed sign-ins allowed per address per 15 minutes (four times as
    /// many per peer address).
    pub max_failed_logins: i64,
    /// How long an API token works after it is issued, in days (default 90).
    pub token_ttl_days: i64,
    /// Seconds a connection has to send its whole request header; slower
    /// connections are closed (default 10).
    pub header_read_timeout_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8080".into(),
            session_ttl_minutes: 480,
            secure_cookies: true,
            max_failed_logins: 5,
            token_ttl_days: 90,
            header_read_timeout_secs: 10,
        }
    }
}

impl WebConfig {
    /// How long an API token works.
    pub fn token_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(self.token_ttl_days)
    }

    /// How long a connection may take to send its request header.
    pub fn header_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_read_timeout_secs)
    }
}

impl Settings {
    /// The fingerprint of everything that decides a message: the policy's
    /// thresholds, the extract patterns and the intent rules' text, the
    /// sender-auth settings and our own address (`[reply] from`, whose mail
    /// is never a request) — 16 hex digits of a SHA-256. Two settings that
    /// decide alike have the same fingerprint; shadow mode and everything
    /// outside these sections do not change it.
    pub fn decision_fingerprint(&self) -> Result<String, ConfigError> {
        use sha2::{Digest, Sha256};
        let rules =
            crate::extract::rules_text(&self.extract).map_err(|e| ConfigError::Invalid {
                key: "extract.rules_file",
                reason: e.to_string(),
            })?;
        let mut policy = self.policy.clone();
        policy.shadow = false;
        let mut extract = self.extract.clone();
        extract.rules_file = None;
        // `[reply] from` decides too: mail from our own address is a loop,
        // never a customer's request.
        let deciding = serde_json::json!({
            "policy": policy,
            "extract": extract,
            "intent_rules": rules,
            "sender_auth": self.sender_auth,
            "own_address": self.reply.from.to_lowercase(),
        });
        let digest = Sha256::digest(deciding.to_string().as_bytes());
        Ok(hex::encode(&digest[..8]))
    }

    /// The case lifecycle with the configured business calendar and reply
    /// promise (`[calendar]`, `[reply] review_business_days`): every path
    /// that moves a case builds its transitions with it.
    pub fn lifecycle(&self) -> crate::queue::Lifecycle {
        crate::queue::Lifecycle::new(self.calendar.calendar(), self.reply.review_business_days)
    }

    /// What the reply templates are loaded from: `[reply] templates_dir`,
    /// the configured deny reasons' body templates and `[calendar]
    /// time_zone`, in which customers are told dates.
    pub fn reply_templates(&self) -> crate::reply::TemplateSource {
        crate::reply::TemplateSource {
            dir: self.reply.templates_dir.clone(),
            bodies: crate::pipeline::deny::DenyReasons::from_config(&self.review).body_templates(),
            time_zone: self.calendar.time_zone,
        }
    }

    /// Reads `path` (or the defaults when `None`), applies the environment
    /// and validates.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut settings = match path {
            Some(path) => Self::from_toml(path)?,
            None => Settings::default(),
        };
        settings.apply_env(|k| std::env::var(k).ok());
        // Holiday files are read once, relative to the config file.
        let base = path.and_then(Path::parent);
        settings.calendar.load_holiday_files(base)?;
        // Operator files live beside the config, whatever the working
        // directory of the service.
        if let (Some(base), Some(dir)) = (base, settings.reply.templates_dir.as_mut())
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        settings.validate()?;
        Ok(settings)
    }

    fn from_toml(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Overrides from the environment: `REFUNDD_DATABASE_URL`; with a
    /// `[polar]` table, `REFUNDD_POLAR_TOKEN` and
    /// `REFUNDD_POLAR_WEBHOOK_SECRET`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(url) = var("REFUNDD_DATABASE_URL") {
            self.database.url = url;
        }
        if let Some(imap) = &mut self.imap {
            imap.apply_env(&var);
        }
        if let Some(smtp) = &mut self.smtp {
            smtp.apply_env(&var);
        }
        if let Some(polar) = self.polar.as_mut() {
            polar.apply_env(&var);
        }
    }

    /// Checks what serde cannot: ranges and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.policy;
        for (key, days) in [
            ("policy.refund_window_days", p.refund_window_days),
            ("policy.courtesy_window_days", p.courtesy_window_days),
            ("policy.abuse_window_days", p.abuse_window_days),
        ] {
            if days <= 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("must be positive, is {days}"),
                });
            }
        }
        if self.retention.raw_mail_days == Some(0) {
            return Err(ConfigError::Invalid {
                key: "retention.raw_mail_days",
                reason: "must be at least 1 (leave it out to keep raw mail)".into(),
            });
        }
        if p.abuse_refunded_share_percent > 100 {
            return Err(ConfigError::Invalid {
                key: "policy.abuse_refunded_share_percent",
                reason: "is a percentage (0–100)".into(),
            });
        }
        if self.web.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "web.listen",
                reason: format!("`{}` is not an address:port", self.web.listen),
            });
        }
        for (key, value) in [
            ("web.session_ttl_minutes", self.web.session_ttl_minutes),
            ("web.max_failed_logins", self.web.max_failed_logins),
        ] {
            if value <= 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("must be positive, is {value}"),
                });
            }
        }
        if !(1..=3650).contains(&self.web.token_ttl_days) {
            return Err(ConfigError::Invalid {
                key: "web.token_ttl_days",
                reason: format!(
                    "must be between 1 and 3650 days, is {}",
                    self.web.token_ttl_days
                ),
            });
        }
        if !(1..=3600).contains(&self.web.header_read_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "web.header_read_timeout_secs",
                reason: format!(
                    "must be between 1 and 3600 seconds, is {}",
                    self.web.header_read_timeout_secs
                ),
            });
        }
        if let Some(imap) = &self.imap {
            imap.validate().map_err(|e| ConfigError::Invalid {
                key: "imap",
                reason: e.to_string(),
            })?;
        }
        if let Some(smtp) = &self.smtp {
            smtp.validate().map_err(|e| ConfigError::Invalid {
                key: "smtp",
                reason: e.to_string(),
            })?;
        }
        if let Some(polar) = &self.polar {
            polar.validate()?;
        }
        if !self.reply.from.contains('@') {
            return Err(ConfigError::Invalid {
                key: "reply.from",
                reason: "must be an email address".into(),
            });
        }
        self.review.validate()?;
        self.sender_auth
            .validate()
            .map_err(|reason| ConfigError::Invalid {
                key: "sender_auth",
                reason,
            })?;
        // The calendar and escalation sections.
        self.calendar.validate()?;
        self.escalation.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_keys_out_of_range_are_refused_by_name() {
        type Break = fn(&mut WebConfig);
        let cases: [(Break, &str); 5] = [
            (|w| w.max_failed_logins = 0, "web.max_failed_logins"),
            (|w| w.session_ttl_minutes = -1, "web.session_ttl_minutes"),
            (|w| w.token_ttl_days = 0, "web.token_ttl_days"),
            (|w| w.token_ttl_days = 100_000, "web.token_ttl_days"),
            (
                |w| w.header_read_timeout_secs = 0,
                "web.header_read_timeout_secs",
            ),
        ];
        for (break_it, named) in cases {
            let mut settings = Settings::default();
            break_it(&mut settings.web);
            match settings.validate() {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, named),
                other => panic!("{named}: {other:?}"),
            }
        }
        assert!(Settings::default().validate().is_ok());
    }
}
