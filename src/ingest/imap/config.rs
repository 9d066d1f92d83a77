//! `[imap]` settings: where the refunds mailbox lives and how to log in.
//! Takes TOML (or defaults) and the environment; gives a validated
//! [`ImapConfig`] and, at connect time, the secret it names. Never opens a
//! connection. Fails with [`ImapError::Config`] for a setting that cannot
//! work and [`ImapError::Secret`] when a password file or token source
//! cannot be read.

use serde::{Deserialize, Serialize};

use crate::secret::{self, SecretError};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::ImapError;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapTls {
    /// Plain text: for a loopback test server only (a warning is logged for
    /// any other host, since the password would cross the network in clear).
    None,
    /// Plain connection upgraded with `STARTTLS` (RFC 3501 §6.2.1), port 143.
    Starttls,
    /// TLS from the first byte ("implicit TLS", RFC 8314), port 993.
    #[default]
    Tls,
}

/// How the client proves who it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    /// `LOGIN user password`: Dovecot, most hosted IMAP servers.
    #[default]
    Login,
    /// `AUTHENTICATE XOAUTH2` with an OAuth2 access token: Gmail and
    /// Microsoft 365 accept only this.
    Xoauth2,
}

/// `[imap]`: the mailbox refundd reads.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Server host name (also the name checked against its certificate).
    pub host: String,
    /// Server port; when absent 993 for `tls`, 143 otherwise.
    pub port: Option<u16>,
    /// `"tls"` (default), `"starttls"` or `"none"` (loopback tests only).
    pub tls: ImapTls,
    /// Extra PEM certificate(s) to trust besides the system roots, e.g. a
    /// private CA or a test server's self-signed certificate.
    pub ca_file: Option<PathBuf>,
    /// Login name (for Gmail and Microsoft 365, the mailbox address).
    pub username: String,
    /// Password for `auth = "login"`. Prefer `password_file` or the
    /// `REFUNDD_IMAP_PASSWORD` environment variable (see [`ImapConfig::apply_env`]).
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored); read at each connect.
    pub password_file: Option<PathBuf>,
    /// `"login"` (default) or `"xoauth2"`.
    pub auth: ImapAuth,
    /// For XOAUTH2: a shell command printing a fresh access token on stdout,
    /// run at each connect (tokens expire after about an hour).
    pub oauth_token_command: Option<String>,
    /// For XOAUTH2: a file holding the current access token, kept fresh by
    /// another process; read at each connect.
    pub oauth_token_file: Option<PathBuf>,
    /// The folder to read (default `"INBOX"`).
    pub folder: String,
    /// Where handled messages are moved (default `"Processed"`); created when missing.
    pub processed_folder: String,
    /// Seconds between `NOOP` polls when the server lacks IDLE or `idle` is
    /// off (default 60).
    pub poll_interval: u64,
    /// Use IDLE (RFC 2177) when the server offers it (default true).
    pub idle: bool,
    /// While mail is flowing (for [`BURST_WINDOW`] after a pass that found
    /// mail), also look for more with `NOOP` every this many milliseconds
    /// (default 100; 0 turns it off). IDLE alone answers late on some
    /// servers: Dovecot holds every notification for half a second.
    pub burst_poll_ms: u64,
    /// Messages larger than this many bytes are not downloaded; the caller
    /// gets their size and can read their header (default 25 MiB).
    pub max_message_bytes: u64,
    /// Seconds any one command may take before the connection is given up
    /// as dead (default 120).
    pub command_timeout: u64,
}

/// How long after a pass that found mail refundd keeps looking for more
/// every `burst_poll_ms`: mail that comes in bursts (a forwarded batch, a
/// backlog being delivered, a customer writing twice) is answered without
/// waiting for the server's IDLE notification.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: String::new(),
            port: None,
            tls: ImapTls::Tls,
            ca_file: None,
            username: String::new(),
            password: None,
            password_file: None,
            auth: ImapAuth::Login,
            oauth_token_command: None,
            oauth_token_file: None,
            folder: "INBOX".into(),
            processed_folder: "Processed".into(),
            poll_interval: 60,
            idle: true,
            burst_poll_ms: 100,
            max_message_bytes: crate::ingest::DEFAULT_MAX_MESSAGE_BYTES,
            command_timeout: 120,
        }
    }
}

// Hand-written so that the password never reaches a log line.
impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("auth", &self.auth)
            .field(
                "oauth_token_command",
                &self.oauth_token_command.as_ref().map(|_| "<set>"),
            )
            .field("oauth_token_file", &self.oauth_token_file)
            .field("folder", &self.folder)
            .field("processed_folder", &self.processed_folder)
            .field("poll_interval", &self.poll_interval)
            .field("idle", &self.idle)
            .field("burst_poll_ms", &self.burst_poll_ms)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl ImapConfig {
    /// The port to connect to: `port`, or the standard one for `tls`.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            ImapTls::Tls => 993,
            ImapTls::Starttls | ImapTls::None => 143,
        })
    }

    /// The `poll_interval` as a duration (at least one second).
    pub fn poll_every(&self) -> Duration {
        Duration::from_secs(self.poll_interval.max(1))
    }

    /// How often to look for more mail while mail is flowing: `None` when
    /// `burst_poll_ms` is 0.
    pub fn burst_poll_every(&self) -> Option<Duration> {
        (self.burst_poll_ms > 0).then(|| Duration::from_millis(self.burst_poll_ms))
    }

    /// The `command_timeout` as a duration (at least one second).
    pub fn command_deadline(&self) -> Duration {
        Duration::from_secs(self.command_timeout.max(1))
    }

    /// Overrides from the environment: `REFUNDD_IMAP_PASSWORD` sets `password`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(password) = var("REFUNDD_IMAP_PASSWORD") {
            self.password = Some(password);
        }
    }

    /// Checks that the settings can work together (after [`Self::apply_env`]).
    pub fn validate(&self) -> Result<(), ImapError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(ImapError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.host.trim().is_empty() {
            return invalid("imap.host", "must name the IMAP server");
        }
        if self.username.is_empty() {
            return invalid("imap.username", "must be set");
        }
        if self.folder.is_empty() || self.processed_folder.is_empty() {
            return invalid("imap.folder", "folder and processed_folder must be set");
        }
        if self.folder == self.processed_folder {
            return invalid(
                "imap.processed_folder",
                "must differ from folder, or processed mail would be read again",
            );
        }
        match self.auth {
            ImapAuth::Login if self.password.is_none() && self.password_file.is_none() => invalid(
                "imap.password",
                "auth = \"login\" needs password, password_file or REFUNDD_IMAP_PASSWORD",
            ),
            ImapAuth::Xoauth2
                if self.oauth_token_command.is_none() && self.oauth_token_file.is_none() =>
            {
                invalid(
                    "imap.oauth_token_command",
                    "auth = \"xoauth2\" needs oauth_token_command or oauth_token_file",
                )
            }
            _ => Ok(()),
        }
    }

    /// The password for `LOGIN`: `password`, else the content of `password_file`.
    pub(super) async fn read_password(&self) -> Result<String, ImapError> {
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        match &self.password_file {
            Some(path) => read_secret_file(path, "imap.password_file").await,
            None => Err(ImapError::Config {
                key: "imap.password",
                reason: "no password configured".into(),
            }),
        }
    }

    /// A fresh OAuth2 access token: from `oauth_token_command`, else `oauth_token_file`.
    pub(super) async fn read_oauth_token(&self) -> Result<String, ImapError> {
        if let Some(command) = &self.oauth_token_command {
            return secret::run_command(command).await.map_err(|err| match err {
                SecretError::CommandFailed { status } => ImapError::TokenCommand { status },
                other => ImapError::Secret {
                    what: "imap.oauth_token_command",
                    source: other.into(),
                },
            });
        }
        match &self.oauth_token_file {
            Some(path) => read_secret_file(path, "imap.oauth_token_file").await,
            None => Err(ImapError::Config {
                key: "imap.oauth_token_command",
                reason: "no OAuth2 token source configured".into(),
            }),
        }
    }
}

async fn read_secret_file(path: &std::path::Path, what: &'static str) -> Result<String, ImapError> {
    secret::read_file(path)
        .await
        .map_err(|err| ImapError::Secret {
            what,
            source: err.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_table_gets_the_documented_defaults() {
        let config: ImapConfig = toml::from_str(
            r#"
            host = "imap.gmail.com"
            username = "refunds@anumi.example"
            auth = "xoauth2"
            oauth_token_command = "print-token"
            "#,
        )
        .unwrap();
        assert_eq!(config.tls, ImapTls::Tls);
        assert_eq!(config.effective_port(), 993);
        assert_eq!(config.folder, "INBOX");
        assert_eq!(config.processed_folder, "Processed");
        assert_eq!(config.poll_interval, 60);
        assert!(config.idle);
        assert_eq!(config.burst_poll_every(), Some(Duration::from_millis(100)));
        assert_eq!(config.max_message_bytes, 25 * 1024 * 1024);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn starttls_and_plain_default_to_port_143() {
        for (tls, port) in [("starttls", 143), ("none", 143), ("tls", 993)] {
            let config: ImapConfig = toml::from_str(&format!("tls = \"{tls}\"")).unwrap();
            assert_eq!(config.effective_port(), port, "tls = {tls}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        assert!(toml::from_str::<ImapConfig>("hostname = \"x\"").is_err());
    }

    #[test]
    fn validation_names_the_missing_setting() {
        let base = ImapConfig {
            host: "imap.example".into(),
            username: "refunds".into(),
            password: Some("secret".into()),
            ..ImapConfig::default()
        };
        let cases: Vec<(&str, ImapConfig, Option<&str>)> = vec![
            ("complete login settings pass", base.clone(), None),
            (
                "no host",
                ImapConfig {
                    host: " ".into(),
                    ..base.clone()
                },
                Some("imap.host"),
            ),
            (
                "login without any password source",
                ImapConfig {
                    password: None,
                    ..base.clone()
                },
                Some("imap.password"),
            ),
            (
                "xoauth2 without a token source",
                ImapConfig {
                    auth: ImapAuth::Xoauth2,
                    ..base.clone()
                },
                Some("imap.oauth_token_command"),
            ),
            (
                "processed folder equal to the folder read",
                ImapConfig {
                    processed_folder: "INBOX".into(),
                    ..base.clone()
                },
                Some("imap.processed_folder"),
            ),
        ];
        for (name, config, expected) in cases {
            let got = match config.validate() {
                Ok(()) => None,
                Err(ImapError::Config { key, .. }) => Some(key),
                Err(other) => panic!("{name}: unexpected {other}"),
            };
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_environment_password_overrides_the_file_value() {
        let mut config = ImapConfig {
            password: Some("from-file".into()),
            ..ImapConfig::default()
        };
        config.apply_env(|key| (key == "REFUNDD_IMAP_PASSWORD").then(|| "from-env".to_owned()));
        assert_eq!(config.password.as_deref(), Some("from-env"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = ImapConfig {
            password: Some("hunter2".into()),
            ..ImapConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn the_password_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let config = ImapConfig {
            password_file: Some(path),
            ..ImapConfig::default()
        };
        assert_eq!(config.read_password().await.unwrap(), "s3cret");
    }

    #[tokio::test]
    async fn the_token_command_output_is_the_token() {
        let config = ImapConfig {
            auth: ImapAuth::Xoauth2,
            oauth_token_command: Some("echo ya29.token".into()),
            ..ImapConfig::default()
        };
        assert_eq!(config.read_oauth_token().await.unwrap(), "ya29.token");
        let failing = ImapConfig {
            oauth_token_command: Some("exit 3".into()),
            ..config
        };
        assert!(matches!(
            failing.read_oauth_token().await,
            Err(ImapError::TokenCommand { .. })
        ));
    }
}
