//! Sends prepared replies over SMTP (lettre's connection, driven by hand).
//!
//! Takes an [`SmtpConfig`] and, per message, the envelope sender, one
//! recipient and the raw RFC 5322 bytes; gives `Ok` once the server
//! accepted the message (`250` after the data), or an [`SmtpError`] that
//! says whether trying later can help. Never builds or alters a message
//! (beyond CRLF line endings, RFC 5321 §2.3.8) and never queues: the outbox
//! keeps unsent replies.
//!
//! Up to `connections` connections (`[smtp] connections`, default 4) are
//! kept open and reused, so that the outbox can hand over several replies
//! at once without a connect per message; each is opened on first use and
//! again after it breaks, and every open one is ended with `QUIT` by
//! [`SmtpSink::close`] at shutdown. The TCP stream is made here with `TCP_NODELAY`:
//! lettre writes the body and the final `.` separately, and with Nagle and
//! delayed ACKs each message would cost ~40 ms (measured, see MAILSTACK.md).
//! A reused connection the server has silently closed is detected when the
//! first command of a transaction fails, and the transaction is retried
//! once on a fresh connection (nothing was delivered yet). A failure after
//! the message data was sent is reported as transient with
//! `maybe_delivered`: a retry may then deliver the reply twice.
//!
//! How it fails: 4xx replies, network errors and timeouts are transient;
//! 5xx replies, bad addresses, refused login and broken settings are not.

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

/// `[smtp] connections` when not set.
pub const DEFAULT_CONNECTIONS: u32 = 4;

/// The most connections `[smtp] connections` may ask for: more only queue
/// at the server (and look like a flood to a submission service).
const MAX_CONNECTIONS: u32 = 32;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: for a loopback test server only.
    None,
    /// Plain connection upgraded with `STARTTLS` (RFC 3207), port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314), port 465.
    Tls,
}

/// How the client logs in, when `username` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpAuth {
    /// `AUTH PLAIN` or `AUTH LOGIN` with a password.
    #[default]
    Password,
    /// `AUTH XOAUTH2` with an OAuth2 access token (Gmail, Microsoft 365).
    Xoauth2,
}

/// `[smtp]`: the server replies are submitted to.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (also the name checked against its certificate).
    pub host: String,
    /// Server port; when absent 465 for `tls`, 587 for `starttls`, 25 for `none`.
    pub port: Option<u16>,
    /// `"starttls"` (default), `"tls"` or `"none"` (loopback tests only).
    pub tls: SmtpTls,
    /// Extra PEM certificate(s) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Login name; no `AUTH` at all when absent (e.g. a local relay).
    pub username: Option<String>,
    /// Password; prefer `password_file` or `REFUNDD_SMTP_PASSWORD`
    /// (see [`SmtpConfig::apply_env`]).
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored); read at each connect.
    pub password_file: Option<PathBuf>,
    /// `"password"` (default) or `"xoauth2"`.
    pub auth: SmtpAuth,
    /// For XOAUTH2: a shell command printing a fresh access token, run at each connect.
    pub oauth_token_command: Option<String>,
    /// For XOAUTH2: a file holding the current access token, read at each connect.
    pub oauth_token_file: Option<PathBuf>,
    /// The envelope sender (`MAIL FROM`) replies use; empty means the
    /// reply's own `From:` address, chosen by the caller.
    pub from: String,
    /// The name sent in `EHLO`; the machine's host name when absent.
    pub hello_name: Option<String>,
    /// Seconds one connect or one message may take (default 60).
    pub timeout: u64,
    /// How many connections replies are sent over at once (default 4,
    /// 1–32): one connection carries ~350 messages/s into a local server,
    /// fewer against a distant one, whose round trips several connections
    /// overlap. Each reply still goes over exactly one of them, once.
    pub connections: u32,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: None,
            tls: SmtpTls::Starttls,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
            auth: SmtpAuth::Password,
            oauth_token_command: None,
            oauth_token_file: None,
            from: String::new(),
            hello_name: None,
            timeout: 60,
            connections: DEFAULT_CONNECTIONS,
        }
    }
}

// Hand-written so that the password never reaches a log line.
impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
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
            .field("from", &self.from)
            .field("hello_name", &self.hello_name)
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .finish()
    }
}

impl SmtpConfig {
    /// The port to connect to: `port`, or the standard one for `tls`.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Tls => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::None => 25,
        })
    }

    /// Overrides from the environment: `REFUNDD_SMTP_PASSWORD` sets `password`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(password) = var("REFUNDD_SMTP_PASSWORD") {
            self.password = Some(password);
        }
    }

    /// Checks that the settings can work together (after [`Self::apply_env`]).
    pub fn validate(&self) -> Result<(), SmtpError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(SmtpError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.host.trim().is_empty() {
            return invalid("smtp.host", "must name the SMTP server");
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return invalid("smtp.connections", "must be between 1 and 32");
        }
        if !self.from.is_empty() && self.from.parse::<Address>().is_err() {
            return invalid("smtp.from", "is not an email address");
        }
        if self.username.is_none() {
            return Ok(());
        }
        match self.auth {
            SmtpAuth::Password if self.password.is_none() && self.password_file.is_none() => {
                invalid(
                    "smtp.password",
                    "username is set but no password, password_file or REFUNDD_SMTP_PASSWORD",
                )
            }
            SmtpAuth::Xoauth2
                if self.oauth_token_command.is_none() && self.oauth_token_file.is_none() =>
            {
                invalid(
                    "smtp.oauth_token_command",
                    "auth = \"xoauth2\" needs a token source",
                )
            }
            _ => Ok(()),
        }
    }

    fn timeout_duration(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    async fn secret(&self) -> Result<String, SmtpError> {
        let (what, value) = match self.auth {
            SmtpAuth::Password => match (&self.password, &self.password_file) {
                (Some(password), _) => return Ok(password.clone()),
                (None, Some(path)) => ("smtp.password_file", read_file(path).await),
                (None, None) => ("smtp.password", Err(missing())),
            },
            SmtpAuth::Xoauth2 => match (&self.oauth_token_command, &self.oauth_token_file) {
                (Some(command), _) => {
                    ("smtp.oauth_token_command", run_token_command(command).await)
                }
                (None, Some(path)) => ("smtp.oauth_token_file", read_file(path).await),
                (None, None) => ("smtp.oauth_token_command", Err(missing())),
            },
        };
        value.map_err(|source| SmtpError::Secret { what, source })
    }
}

fn missing() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "not configured")
}

async fn read_file(path: &std::path::Path) -> io::Result<String> {
    Ok(crate::secret::read_file(path).await?)
}

async fn run_token_command(command: &str) -> io::Result<String> {
    Ok(crate::secret::run_command(command).await?)
}

/// The SMTP step a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpStage {
    /// Opening the connection, TLS, EHLO.
    Connect,
    /// `AUTH`.
    Auth,
    /// `MAIL FROM`.
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// `DATA`.
    Data,
    /// The message content and its final `.`.
    Message,
}

impl fmt::Display for SmtpStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpStage::Connect => "connect",
            SmtpStage::Auth => "AUTH",
            SmtpStage::MailFrom => "MAIL FROM",
            SmtpStage::RcptTo => "RCPT TO",
            SmtpStage::Data => "DATA",
            SmtpStage::Message => "message data",
        })
    }
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// A setting cannot work (see [`SmtpConfig::validate`]).
    #[error("config value {key} is invalid: {reason}")]
    Config { key: &'static str, reason: String },
    /// A password file or token source could not be read.
    #[error("cannot read {what}")]
    Secret {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// An envelope address is not a valid email address.
    #[error("invalid envelope address: {reason}")]
    Address { reason: String },
    /// The server answered with a negative reply code (RFC 5321 §4.2.1):
    /// 4xx is transient, 5xx permanent.
    #[error("SMTP server replied {code} at {stage}: {text}")]
    Rejected {
        stage: SmtpStage,
        code: u16,
        text: String,
    },
    /// The server refused the login.
    #[error("SMTP login refused")]
    Auth(#[source] lettre::transport::smtp::Error),
    /// The server does not offer STARTTLS although `tls = "starttls"`.
    #[error("SMTP server does not offer STARTTLS")]
    NoStartTls,
    /// The connection failed or broke; `maybe_delivered` when it broke after
    /// the message data was sent, so the server may have accepted it.
    #[error("SMTP connection failed at {stage}{}", if *.maybe_delivered { " (message may have been delivered)" } else { "" })]
    Connection {
        stage: SmtpStage,
        maybe_delivered: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer within `timeout`.
    #[error("SMTP {stage} timed out")]
    Timeout { stage: SmtpStage },
    /// The sink was shut down.
    #[error("the SMTP client is shut down")]
    Closed,
}

impl SmtpError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Rejected { code, .. } => (400..500).contains(code),
            SmtpError::Connection { .. } | SmtpError::Timeout { .. } | SmtpError::Closed => true,
            SmtpError::Config { .. }
            | SmtpError::Secret { .. }
            | SmtpError::Address { .. }
            | SmtpError::Auth(_)
            | SmtpError::NoStartTls => false,
        }
    }

    /// The server's reply code, when it answered negatively.
    pub fn code(&self) -> Option<u16> {
        match self {
            SmtpError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A lettre error at `stage`: a reply code becomes [`SmtpError::Rejected`],
    /// anything else a broken connection.
    fn from_lettre(stage: SmtpStage, err: lettre::transport::smtp::Error) -> SmtpError {
        match err.status() {
            Some(code) => SmtpError::Rejected {
                stage,
                code: code.to_string().parse().unwrap_or(0),
                text: std::error::Error::source(&err)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            },
            None => SmtpError::Connection {
                stage,
                maybe_delivered: stage == SmtpStage::Message,
                source: Box::new(err),
            },
        }
    }
}

/// An SMTP client that keeps up to `connections` connections open, sends
/// over whichever is free, and reconnects by itself.
pub struct SmtpSink {
    config: SmtpConfig,
    hello: ClientId,
    /// Open connections no send is using right now.
    idle: StdMutex<Vec<AsyncSmtpConnection>>,
    /// One permit per connection `[smtp] connections` allows: a send holds
    /// one while it uses (or opens) a connection.
    slots: Semaphore,
    connections_opened: AtomicU64,
}

impl fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSink")
            .field("config", &self.config)
            .field("connections_opened", &self.connections_opened())
            .finish()
    }
}

impl SmtpSink {
    /// A sink for `config` (validated here); connects on first send.
    pub fn new(config: SmtpConfig) -> Result<SmtpSink, SmtpError> {
        config.validate()?;
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let slots = Semaphore::new(config.connections.max(1) as usize);
        Ok(SmtpSink {
            config,
            hello,
            idle: StdMutex::new(Vec::new()),
            slots,
            connections_opened: AtomicU64::new(0),
        })
    }

    /// The configured envelope sender (`smtp.from`), possibly empty.
    pub fn envelope_from(&self) -> &str {
        &self.config.from
    }

    /// How many connections this sink has opened (reuse shows as 1).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// How many messages it can hand over at once (`[smtp] connections`).
    pub fn connections(&self) -> usize {
        self.config.connections.max(1) as usize
    }

    /// A free slot, with the open connection that waits in it (if any).
    async fn take_slot(
        &self,
    ) -> Result<(SemaphorePermit<'_>, Option<AsyncSmtpConnection>), SmtpError> {
        let permit = self.slots.acquire().await.map_err(|_| SmtpError::Closed)?;
        let connection = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Ok((permit, connection))
    }

    /// Puts a working connection back for the next send.
    fn give_back(&self, connection: AsyncSmtpConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
    }

    /// Submits `raw` to one recipient. `envelope_from` empty sends the null
    /// reverse-path `<>` (RFC 5321 §4.5.5). After a negative reply the
    /// transaction is reset (`RSET`) and the connection kept.
    pub async fn send_raw(
        &self,
        envelope_from: &str,
        to: &str,
        raw: &[u8],
    ) -> Result<(), SmtpError> {
        let from = match envelope_from {
            "" => None,
            address => Some(parse_address(address)?),
        };
        let to = parse_address(to)?;
        let body = wire_body(raw);
        let deadline = self.config.timeout_duration();

        let (_permit, mut slot) = self.take_slot().await?;
        let mut retried = false;
        loop {
            let reused = slot.is_some();
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(self.open().await?),
            };
            let outcome = tokio::time::timeout(
                deadline,
                transaction(connection, from.clone(), to.clone(), &body),
            )
            .await
            .unwrap_or(Err(SmtpError::Timeout {
                stage: SmtpStage::Message,
            }));
            match outcome {
                Ok(()) => {
                    if let Some(connection) = slot {
                        self.give_back(connection);
                    }
                    return Ok(());
                }
                Err(err @ SmtpError::Rejected { .. }) => {
                    // RFC 5321 §4.1.1.5: RSET aborts the transaction so the
                    // connection can carry the next message.
                    let reset = tokio::time::timeout(deadline, connection.command(Rset)).await;
                    if matches!(reset, Ok(Ok(_)))
                        && let Some(connection) = slot
                    {
                        self.give_back(connection);
                    }
                    return Err(err);
                }
                Err(err) => {
                    if let Some(mut broken) = slot.take() {
                        broken.abort().await;
                    }
                    let nothing_sent = matches!(&err, SmtpError::Connection { maybe_delivered: false, stage, .. } if *stage == SmtpStage::MailFrom);
                    if reused && nothing_sent && !retried {
                        tracing::debug!("SMTP connection went stale; reconnecting");
                        retried = true;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Connects, greets, negotiates TLS and logs in as a send would, then
    /// keeps the connection for the next send: what `check-config` runs.
    pub async fn check(&self) -> Result<(), SmtpError> {
        let (_permit, slot) = self.take_slot().await?;
        let connection = match slot {
            Some(connection) => connection,
            None => self.open().await?,
        };
        self.give_back(connection);
        Ok(())
    }

    /// Ends every open connection politely (`QUIT`, RFC 5321 §4.1.1.10),
    /// after the sends in progress finish; later sends connect again.
    pub async fn close(&self) {
        let all = u32::try_from(self.connections()).unwrap_or(u32::MAX);
        // Every permit: no send is using a connection while they are closed.
        let Ok(_all) = self.slots.acquire_many(all).await else {
            return;
        };
        let open: Vec<_> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = self.config.timeout_duration();
        for mut connection in open {
            match tokio::time::timeout(deadline, connection.command(Quit)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::debug!(error = %err, "SMTP QUIT failed"),
                Err(_) => tracing::debug!("SMTP QUIT timed out"),
            }
        }
    }

    /// Connects, secures, greets and logs in.
    async fn open(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let deadline = self.config.timeout_duration();
        let connection = tokio::time::timeout(deadline, self.open_inner())
            .await
            .unwrap_or(Err(SmtpError::Timeout {
                stage: SmtpStage::Connect,
            }))?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(connection)
    }

    async fn open_inner(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let config = &self.config;
        let host = config.host.as_str();
        let broken = |source: Box<dyn std::error::Error + Send + Sync>| SmtpError::Connection {
            stage: SmtpStage::Connect,
            maybe_delivered: false,
            source,
        };
        let tcp = TcpStream::connect((host, config.effective_port()))
            .await
            .map_err(|err| broken(Box::new(err)))?;
        // The point of building the stream here (see the module doc).
        tcp.set_nodelay(true).map_err(|err| broken(Box::new(err)))?;
        let stream: Box<dyn AsyncTokioStream> = match config.tls {
            SmtpTls::Tls => Box::new(TlsTcp(
                implicit_tls(tcp, host, config)
                    .await
                    .map_err(|err| broken(Box::new(err)))?,
            )),
            SmtpTls::Starttls | SmtpTls::None => Box::new(tcp),
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|err| SmtpError::from_lettre(SmtpStage::Connect, err))?;
        match config.tls {
            SmtpTls::Starttls => {
                if !connection.can_starttls() {
                    connection.abort().await;
                    return Err(SmtpError::NoStartTls);
                }
                let parameters = starttls_parameters(host, config).await?;
                connection
                    .starttls(parameters, &self.hello)
                    .await
                    .map_err(|err| SmtpError::from_lettre(SmtpStage::Connect, err))?;
            }
            SmtpTls::None if !is_loopback(host) => {
                tracing::warn!(host, "SMTP without TLS to a non-loopback host");
            }
            SmtpTls::None | SmtpTls::Tls => {}
        }
        if let Some(username) = &config.username {
            let secret = config.secret().await?;
            let mechanisms: &[Mechanism] = match config.auth {
                SmtpAuth::Password => &[Mechanism::Plain, Mechanism::Login],
                SmtpAuth::Xoauth2 => &[Mechanism::Xoauth2],
            };
            connection
                .auth(mechanisms, &Credentials::new(username.clone(), secret))
                .await
                .map_err(|err| match err.status() {
                    Some(_) => SmtpError::Auth(err),
                    None => SmtpError::from_lettre(SmtpStage::Auth, err),
                })?;
        }
        Ok(connection)
    }
}

/// One mail transaction on an open connection.
async fn transaction(
    connection: &mut AsyncSmtpConnection,
    from: Option<Address>,
    to: Address,
    body: &[u8],
) -> Result<(), SmtpError> {
    let info = connection.server_info();
    let mut parameters = Vec::new();
    if !body.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let non_ascii_address = from
        .iter()
        .chain([&to])
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(SmtpError::Address {
                reason: "non-ASCII address and the server lacks SMTPUTF8".into(),
            });
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    step(
        connection.command(Mail::new(from, parameters)),
        SmtpStage::MailFrom,
    )
    .await?;
    step(
        connection.command(Rcpt::new(to, Vec::new())),
        SmtpStage::RcptTo,
    )
    .await?;
    step(connection.command(Data), SmtpStage::Data).await?;
    step(connection.message(body), SmtpStage::Message).await?;
    Ok(())
}

async fn step<T>(
    work: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    stage: SmtpStage,
) -> Result<T, SmtpError> {
    work.await.map_err(|err| SmtpError::from_lettre(stage, err))
}

/// Whether `host` names this machine (plain text is tolerated only there).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_address(address: &str) -> Result<Address, SmtpError> {
    address
        .trim()
        .parse::<Address>()
        .map_err(|err| SmtpError::Address {
            reason: format!("{err}"),
        })
}

/// The message as it goes on the wire: every line ending CRLF (RFC 5321
/// §2.3.8), without the final CRLF that lettre adds before the `.` line
/// (so the stored message is byte for byte the one given).
fn wire_body(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50);
    let mut previous = 0u8;
    for &byte in raw {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

async fn starttls_parameters(host: &str, config: &SmtpConfig) -> Result<TlsParameters, SmtpError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = &config.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|source| SmtpError::Secret {
                what: "smtp.ca_file",
                source,
            })?;
        let certificate = Certificate::from_pem(&pem).map_err(|err| SmtpError::Config {
            key: "smtp.ca_file",
            reason: err.to_string(),
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|err| SmtpError::Config {
        key: "smtp.tls",
        reason: err.to_string(),
    })
}

/// TLS from the first byte, with rustls on the ring provider (chosen
/// explicitly: rustls' process default would panic with two providers linked).
async fn implicit_tls(
    tcp: TcpStream,
    host: &str,
    config: &SmtpConfig,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let invalid = |err: String| io::Error::new(io::ErrorKind::InvalidData, err);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &config.ca_file {
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|err| invalid(err.to_string()))?
        {
            roots
                .add(cert.map_err(|err| invalid(err.to_string()))?)
                .map_err(|err| invalid(err.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
}

/// A TLS stream lettre can drive as its "plain" transport.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// SMTP as the reply stage's [`MailSink`](super::MailSink): the envelope
/// sender is `[smtp] from`, 4xx and broken connections are transient, 5xx
/// and bad settings permanent.
impl super::MailSink for SmtpSink {
    fn send<'a>(
        &'a self,
        message: &'a super::OutgoingMessage,
        to: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), super::SendError>> {
        Box::pin(async move {
            self.send_raw(self.envelope_from(), to, &message.raw)
                .await
                .map_err(|err| {
                    let reason = err.to_string();
                    if err.is_transient() {
                        super::SendError::transient(reason, Some(Box::new(err)))
                    } else {
                        super::SendError::permanent(reason, Some(Box::new(err)))
                    }
                })
        })
    }

    fn parallelism(&self) -> usize {
        self.connections()
    }

    fn close(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(SmtpSink::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_crlf_and_the_last_one_is_left_to_the_terminator() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody"),
            (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody"),
            (b"a\r\nb\nc", b"a\r\nb\r\nc"),
            (b"no newline", b"no newline"),
        ];
        for (raw, wire) in cases {
            assert_eq!(wire_body(raw), wire, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn reply_codes_decide_transience() {
        let rejected = |code| SmtpError::Rejected {
            stage: SmtpStage::Message,
            code,
            text: "x".into(),
        };
        let cases = [
            ("451 try again later", rejected(451), true),
            ("452 mailbox full for now", rejected(452), true),
            ("550 no such user", rejected(550), false),
            ("554 rejected as spam", rejected(554), false),
            (
                "connection dropped",
                SmtpError::Connection {
                    stage: SmtpStage::MailFrom,
                    maybe_delivered: false,
                    source: "reset".into(),
                },
                true,
            ),
            (
                "timeout",
                SmtpError::Timeout {
                    stage: SmtpStage::Data,
                },
                true,
            ),
            (
                "bad address",
                SmtpError::Address { reason: "x".into() },
                false,
            ),
        ];
        for (name, err, transient) in cases {
            assert_eq!(err.is_transient(), transient, "{name}");
        }
    }

    #[test]
    fn ports_default_by_tls_mode() {
        for (tls, port) in [("tls", 465), ("starttls", 587), ("none", 25)] {
            let config: SmtpConfig = toml::from_str(&format!("tls = \"{tls}\"")).unwrap();
            assert_eq!(config.effective_port(), port, "{tls}");
        }
    }

    #[test]
    fn validation_names_the_broken_setting() {
        let base = SmtpConfig {
            host: "smtp.example".into(),
            ..SmtpConfig::default()
        };
        let cases: Vec<(&str, SmtpConfig, Option<&str>)> = vec![
            ("a relay without login passes", base.clone(), None),
            (
                "no host",
                SmtpConfig {
                    host: String::new(),
                    ..base.clone()
                },
                Some("smtp.host"),
            ),
            (
                "a from that is no address",
                SmtpConfig {
                    from: "refunds".into(),
                    ..base.clone()
                },
                Some("smtp.from"),
            ),
            (
                "a username without password",
                SmtpConfig {
                    username: Some("u".into()),
                    ..base.clone()
                },
                Some("smtp.password"),
            ),
            (
                "xoauth2 without token",
                SmtpConfig {
                    username: Some("u".into()),
                    auth: SmtpAuth::Xoauth2,
                    ..base.clone()
                },
                Some("smtp.oauth_token_command"),
            ),
        ];
        for (name, config, expected) in cases {
            let got = match config.validate() {
                Ok(()) => None,
                Err(SmtpError::Config { key, .. }) => Some(key),
                Err(other) => panic!("{name}: unexpected {other}"),
            };
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_environment_password_overrides_the_file_and_debug_hides_it() {
        let mut config = SmtpConfig::default();
        config.apply_env(|key| (key == "REFUNDD_SMTP_PASSWORD").then(|| "hunter2".to_owned()));
        assert_eq!(config.password.as_deref(), Some("hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
