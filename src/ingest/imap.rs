//! The refunds mailbox over IMAP (async-imap): Dovecot, Gmail, Microsoft 365.
//!
//! Takes an [`ImapConfig`]; gives the messages of one folder after a UID
//! ([`ImapMailbox::fetch_since`]) with their INTERNALDATE (the receipt time
//! the policy uses) and size, moves a handled message to the processed
//! folder, and waits for new mail (IDLE, or NOOP polling without it).
//! Opened with [`ImapMailbox::examine`] instead, the folder is read-only
//! (EXAMINE): messages are listed and read by UID
//! ([`ImapMailbox::uids`], [`ImapMailbox::list_messages`],
//! [`ImapMailbox::fetch_messages`]) and every change is refused.
//!
//! Never stores anything, never parses a message, never retries on its own:
//! after a transient error ([`ImapError::is_transient`]) the caller calls
//! [`ImapMailbox::reconnect`] and plans again from the fresh UIDVALIDITY
//! ([`plan`]), because a reconnect may find a recreated folder.
//!
//! How it fails: connection, io and timeout errors are transient; a refused
//! login, a missing folder or a broken configuration are not. A command that
//! times out or breaks the connection drops the session, and every later call
//! reports [`ImapError::Disconnected`] until `reconnect`.

mod config;
mod cursor;
mod guard;
mod names;
mod transport;

pub use config::{BURST_WINDOW, ImapAuth, ImapConfig, ImapTls};
pub use cursor::{ImapCursor, ScanPlan, plan};
pub use names::{decode_utf7, encode_utf7, server_name};
pub use transport::ImapStream;

use guard::{Guarded, SkippedLines};

use async_imap::imap_proto::{MailboxDatum, Response};
use async_imap::types::{Capabilities, UnsolicitedResponse};
use async_imap::{Authenticator, Client, Session};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::RawMessage;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// RFC 2177 §3: servers may drop an IDLE client after 30 minutes, so IDLE is
/// ended and re-issued before 29; 25 leaves room for slow links.
const IDLE_REISSUE: Duration = Duration::from_secs(25 * 60);

/// Bodies fetched per `UID FETCH … BODY.PEEK[]` command, at most.
const BODY_BATCH_MESSAGES: usize = 100;

/// Bytes fetched per body batch, at most (one larger message goes alone).
const BODY_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// The keyword a server without UIDPLUS gets on each message refundd
/// copied to the processed folder (when its PERMANENTFLAGS allow
/// keywords): a message carrying it is not copied again after a crash.
pub const PROCESSED_KEYWORD: &str = "$RefunddProcessed";

/// Bytes one partial fetch of a large message reads
/// ([`ImapMailbox::fetch_body_in_parts`]).
const BODY_PART_BYTES: u32 = 4 * 1024 * 1024;

type ImapSession = Session<Guarded<ImapStream>>;

/// Why the mailbox could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// A setting cannot work (see [`ImapConfig::validate`]).
    #[error("config value {key} is invalid: {reason}")]
    Config { key: &'static str, reason: String },
    /// A password file or token source could not be read.
    #[error("cannot read {what}")]
    Secret {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The OAuth2 token command exited unsuccessfully.
    #[error("oauth_token_command failed ({status})")]
    TokenCommand { status: String },
    /// The TCP connection could not be opened.
    #[error("cannot connect to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted certificate is not transient).
    #[error("TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The server refused `STARTTLS`.
    #[error("server refused STARTTLS")]
    StartTls(#[source] async_imap::error::Error),
    /// The server's greeting was not `OK` (e.g. `BYE` when overloaded).
    #[error("server greeting was not OK: {0}")]
    Greeting(String),
    /// The server refused the credentials. With XOAUTH2 this is transient:
    /// an access token expires within the hour, and the token source
    /// (`oauth_token_command`, or the file a refresher keeps) gives a fresh
    /// one at the next connect.
    #[error("login refused for {username}")]
    Auth {
        username: String,
        /// Whether the refused proof was an OAuth2 access token.
        xoauth2: bool,
        #[source]
        source: async_imap::error::Error,
    },
    /// A command failed; transient when the connection broke, not when the
    /// server answered `NO` or `BAD`.
    #[error("IMAP {command} failed")]
    Command {
        command: &'static str,
        #[source]
        source: async_imap::error::Error,
    },
    /// The processed folder does not exist and the server refused to create
    /// it (e.g. Cyrus without `altnamespace` answers `NO Permission
    /// denied` for a top-level folder): permanent until an operator acts.
    #[error("the server refuses to create the processed folder \"{folder}\": {server}")]
    ProcessedFolder {
        /// The folder as configured.
        folder: String,
        /// What the server said.
        server: String,
    },
    /// A command got no answer within `command_timeout`.
    #[error("IMAP {command} timed out")]
    Timeout { command: &'static str },
    /// The session was lost earlier; call [`ImapMailbox::reconnect`].
    #[error("not connected to the IMAP server")]
    Disconnected,
    /// The server left out something RFC 3501 requires.
    #[error("server response lacks {what}")]
    Protocol { what: String },
    /// A command that would change the folder, on a folder opened
    /// read-only ([`ImapMailbox::examine`]); nothing was sent.
    #[error("IMAP {command} refused: the folder is open read-only")]
    ReadOnly { command: &'static str },
}

impl ImapError {
    /// Whether trying again (after [`ImapMailbox::reconnect`]) can help.
    pub fn is_transient(&self) -> bool {
        match self {
            ImapError::Connect { .. }
            | ImapError::Timeout { .. }
            | ImapError::Disconnected
            | ImapError::Greeting(_)
            | ImapError::TokenCommand { .. } => true,
            ImapError::Tls { source, .. } => source.kind() != std::io::ErrorKind::InvalidData,
            ImapError::Command { source, .. } | ImapError::StartTls(source) => {
                breaks_connection(source) || is_throttling(source)
            }
            ImapError::Auth {
                source, xoauth2, ..
            } => *xoauth2 || is_throttling(source),
            ImapError::Config { .. }
            | ImapError::Secret { .. }
            | ImapError::Protocol { .. }
            | ImapError::ProcessedFolder { .. }
            | ImapError::ReadOnly { .. } => false,
        }
    }

    /// Whether the server asked us to slow down (Microsoft 365's `NO
    /// [THROTTLED]`, Gmail's `[UNAVAILABLE]` or "Too many simultaneous
    /// connections", RFC 5530's `[LIMIT]`/`[UNAVAILABLE]`/`[INUSE]`): the
    /// caller waits longer than after an outage, and longer each time.
    pub fn is_throttled(&self) -> bool {
        match self {
            ImapError::Command { source, .. }
            | ImapError::StartTls(source)
            | ImapError::Auth { source, .. } => is_throttling(source),
            _ => false,
        }
    }

    /// What the server itself said, when this error is its answer (`NO`,
    /// `BAD`, a refused folder), tidied for a log line or `check-config`.
    pub fn server_words(&self) -> Option<String> {
        match self {
            ImapError::ProcessedFolder { server, .. } => Some(server.clone()),
            ImapError::Command { source, .. }
            | ImapError::StartTls(source)
            | ImapError::Auth { source, .. } => server_said(source),
            ImapError::Greeting(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn command(command: &'static str) -> impl FnOnce(async_imap::error::Error) -> ImapError {
        move |source| ImapError::Command { command, source }
    }

    /// Whether the session can no longer be used after this error.
    fn kills_session(&self) -> bool {
        match self {
            ImapError::Timeout { .. } | ImapError::Disconnected => true,
            ImapError::Command { source, .. } => breaks_connection(source),
            _ => false,
        }
    }
}

fn breaks_connection(err: &async_imap::error::Error) -> bool {
    use async_imap::error::Error;
    matches!(err, Error::Io(_) | Error::ConnectionLost)
}

/// Response texts that mean "slow down" rather than "no": RFC 5530 codes
/// and the words Gmail and Microsoft 365 use (matched without case).
const THROTTLING_MARKERS: [&str; 7] = [
    "[throttled]",
    "[unavailable]",
    "[limit]",
    "[inuse]",
    "too many",
    "throttl",
    "try again later",
];

fn is_throttling(err: &async_imap::error::Error) -> bool {
    server_said(err).is_some_and(|text| {
        let text = text.to_lowercase();
        THROTTLING_MARKERS.iter().any(|m| text.contains(m))
    })
}

/// The server's `NO`/`BAD` text out of async-imap's error (which renders
/// it as `code: …, info: Some("…")`): `NO Permission denied`.
fn server_said(err: &async_imap::error::Error) -> Option<String> {
    use async_imap::error::Error;
    let (status, raw) = match err {
        Error::No(raw) => ("NO", raw),
        Error::Bad(raw) => ("BAD", raw),
        _ => return None,
    };
    let info = raw
        .find("info: Some(\"")
        .map(|at| &raw[at + "info: Some(\"".len()..])
        .and_then(|rest| rest.rfind("\")").map(|end| &rest[..end]))
        .map(|text| text.replace("\\\"", "\"").replace("\\\\", "\\"));
    let code = raw
        .strip_prefix("code: Some(")
        .and_then(|rest| rest.split_once("), info:"))
        .map(|(code, _)| format!("[{code}] "));
    Some(match info {
        Some(info) => format!("{status} {}{info}", code.unwrap_or_default()),
        None => format!("{status} {raw}"),
    })
}

/// The selected folder's identity and size (RFC 3501 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    /// UIDVALIDITY: when it changes, old UIDs mean nothing (see [`plan`]).
    pub uidvalidity: u32,
    /// The UID the next message will get, when the server says.
    pub uidnext: Option<u32>,
    /// How many messages the folder holds.
    pub exists: u32,
}

/// How the folder is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderAccess {
    /// `SELECT`: handled messages can be moved out (the daemon).
    ReadWrite,
    /// `EXAMINE` (RFC 3501 §6.3.2): the server permits no change to the
    /// folder, not even to `\Recent`, and this client refuses to send one.
    ReadOnly,
}

/// A message's UID, INTERNALDATE and size, without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// The message's UID in the selected folder.
    pub uid: u32,
    /// INTERNALDATE: when the server received the message.
    pub internal_date: DateTime<Utc>,
    /// RFC822.SIZE in bytes.
    pub size: u64,
}

/// One message as listed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The message's UID in the selected folder (valid with its UIDVALIDITY).
    pub uid: u32,
    /// INTERNALDATE: when the server received the message.
    pub internal_date: DateTime<Utc>,
    /// RFC822.SIZE in bytes.
    pub size: u64,
    /// The whole message; `None` when it is larger than `max_message_bytes`
    /// (read its header with [`ImapMailbox::fetch_headers`]).
    pub bytes: Option<Vec<u8>>,
}

/// A server extension this client uses when advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapExtension {
    /// IDLE (RFC 2177): push notification of new mail.
    Idle,
    /// MOVE (RFC 6851): atomic move to the processed folder.
    Move,
    /// UIDPLUS (RFC 4315): `UID EXPUNGE` of just our messages.
    UidPlus,
    /// CONDSTORE (RFC 7162): reported by `check-config`; refundd reads by
    /// UID and does not need it.
    Condstore,
}

impl ImapExtension {
    /// Every extension refundd knows, in the order `check-config` reports them.
    pub const ALL: [ImapExtension; 4] = [
        ImapExtension::Move,
        ImapExtension::UidPlus,
        ImapExtension::Idle,
        ImapExtension::Condstore,
    ];

    /// The capability name the server advertises.
    pub fn capability(self) -> &'static str {
        match self {
            ImapExtension::Idle => "IDLE",
            ImapExtension::Move => "MOVE",
            ImapExtension::UidPlus => "UIDPLUS",
            ImapExtension::Condstore => "CONDSTORE",
        }
    }

    /// What refundd does on a server without it.
    pub fn fallback(self) -> &'static str {
        match self {
            ImapExtension::Move => {
                "handled mail is copied to the processed folder and flagged \\Deleted instead"
            }
            ImapExtension::UidPlus => {
                "without it only a plain EXPUNGE exists: refundd expunges only while no other client's \\Deleted message waits in the folder, else leaves its own flagged until then"
            }
            ImapExtension::Idle => {
                "new mail is noticed by NOOP polling every poll_interval seconds"
            }
            ImapExtension::Condstore => "not needed: refundd reads by UID after its cursor",
        }
    }
}

/// Whether the processed folder was there or had to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessedFolder {
    /// It existed already.
    Exists,
    /// refundd created it just now.
    Created,
}

/// Why [`ImapMailbox::idle_wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server reported a new message count (`EXISTS`): fetch again.
    NewMail,
    /// The timeout passed without news.
    Timeout,
    /// The cancellation token fired.
    Cancelled,
}

/// A logged-in IMAP connection with the configured folder selected (or,
/// read-only, examined).
#[derive(Debug)]
pub struct ImapMailbox {
    config: ImapConfig,
    access: FolderAccess,
    session: Option<ImapSession>,
    advertised: Vec<ImapExtension>,
    disabled: Vec<ImapExtension>,
    folder: FolderState,
    processed_folder_ready: bool,
    /// The folder names as this server wants them (delimiter, UTF-7).
    names: ServerNames,
    /// Whether PERMANENTFLAGS of the selected folder allow keywords (`\*`).
    keywords_allowed: bool,
    /// Untagged lines the guard skipped, not yet logged.
    skipped: SkippedLines,
    /// The shapes of skipped lines already logged at warn level.
    quirks_logged: HashSet<String>,
}

/// The configured folder names, translated for the connected server.
#[derive(Debug, Clone, Default)]
struct ServerNames {
    folder: String,
    processed: String,
}

impl ImapMailbox {
    /// Connects, logs in and selects `config.folder`.
    pub async fn connect(config: &ImapConfig) -> Result<ImapMailbox, ImapError> {
        Self::open(config, FolderAccess::ReadWrite).await
    }

    /// Connects, logs in and opens `config.folder` read-only (`EXAMINE`):
    /// reading changes nothing on the server (no `\Seen`, no `\Recent`
    /// lost), and [`Self::move_to_processed`] is refused with
    /// [`ImapError::ReadOnly`]. Also after [`Self::reconnect`].
    pub async fn examine(config: &ImapConfig) -> Result<ImapMailbox, ImapError> {
        Self::open(config, FolderAccess::ReadOnly).await
    }

    async fn open(config: &ImapConfig, access: FolderAccess) -> Result<ImapMailbox, ImapError> {
        let skipped = SkippedLines::default();
        let (session, advertised) = open_session(config, skipped.clone()).await?;
        let mut mailbox = ImapMailbox {
            config: config.clone(),
            access,
            session: Some(session),
            advertised,
            disabled: Vec::new(),
            folder: FolderState {
                uidvalidity: 0,
                uidnext: None,
                exists: 0,
            },
            processed_folder_ready: false,
            names: ServerNames::default(),
            keywords_allowed: false,
            skipped,
            quirks_logged: HashSet::new(),
        };
        mailbox.resolve_names().await?;
        mailbox.select().await?;
        Ok(mailbox)
    }

    /// Asks the server for its hierarchy delimiter (`LIST "" ""`, RFC 3501
    /// §6.3.8) and translates the configured names with it.
    async fn resolve_names(&mut self) -> Result<(), ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "LIST", async {
            session
                .list(Some(""), Some("\"\""))
                .await
                .map_err(ImapError::command("LIST"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("LIST"))
        })
        .await;
        let listed = self.check(result)?;
        let delimiter = listed
            .iter()
            .find_map(|name| name.delimiter())
            .and_then(|d| d.chars().next());
        self.names = ServerNames {
            folder: server_name(&self.config.folder, delimiter),
            processed: server_name(&self.config.processed_folder, delimiter),
        };
        Ok(())
    }

    /// Drops the current session (if any) and connects again with the same
    /// settings; returns the folder state, whose UIDVALIDITY must be planned
    /// against again.
    pub async fn reconnect(&mut self) -> Result<FolderState, ImapError> {
        self.session = None;
        self.processed_folder_ready = false;
        let (session, advertised) = open_session(&self.config, self.skipped.clone()).await?;
        self.session = Some(session);
        self.advertised = advertised;
        self.resolve_names().await?;
        self.select().await
    }

    /// Stops using an extension even when the server advertises it (for a
    /// server whose implementation misbehaves, and to test the fallbacks).
    /// Survives [`Self::reconnect`].
    pub fn disable(&mut self, extension: ImapExtension) {
        if !self.disabled.contains(&extension) {
            self.disabled.push(extension);
        }
    }

    /// Whether the extension is advertised and not disabled.
    pub fn uses(&self, extension: ImapExtension) -> bool {
        self.advertised.contains(&extension) && !self.disabled.contains(&extension)
    }

    /// Whether the server advertises the extension (disabled or not).
    pub fn advertises(&self, extension: ImapExtension) -> bool {
        self.advertised.contains(&extension)
    }

    /// Whether the selected folder takes keywords such as
    /// [`PROCESSED_KEYWORD`] (its PERMANENTFLAGS include `\*`).
    pub fn keywords_allowed(&self) -> bool {
        self.keywords_allowed
    }

    /// Whether [`Self::idle_wait`] uses IDLE: the server offers it and
    /// `[imap] idle` is on.
    pub fn idles(&self) -> bool {
        self.config.idle && self.uses(ImapExtension::Idle)
    }

    /// The folder state from the last SELECT.
    pub fn folder(&self) -> FolderState {
        self.folder
    }

    /// How the folder is open.
    pub fn access(&self) -> FolderAccess {
        self.access
    }

    /// (Re)selects `config.folder` (`EXAMINE` when read-only); returns its
    /// UIDVALIDITY, UIDNEXT and size.
    pub async fn select(&mut self) -> Result<FolderState, ImapError> {
        let deadline = self.config.command_deadline();
        let folder = self.names.folder.clone();
        let access = self.access;
        let session = self.session()?;
        let result = match access {
            FolderAccess::ReadWrite => {
                timed(deadline, "SELECT", async {
                    session
                        .select(&folder)
                        .await
                        .map_err(ImapError::command("SELECT"))
                })
                .await
            }
            FolderAccess::ReadOnly => {
                timed(deadline, "EXAMINE", async {
                    session
                        .examine(&folder)
                        .await
                        .map_err(ImapError::command("EXAMINE"))
                })
                .await
            }
        };
        let mailbox = self.check(result)?;
        let uidvalidity = mailbox.uid_validity.ok_or_else(|| ImapError::Protocol {
            what: "UIDVALIDITY in the SELECT response".into(),
        })?;
        self.folder = FolderState {
            uidvalidity,
            uidnext: mailbox.uid_next,
            exists: mailbox.exists,
        };
        self.keywords_allowed = mailbox
            .permanent_flags
            .iter()
            .any(|flag| matches!(flag, async_imap::types::Flag::MayCreate));
        Ok(self.folder)
    }

    /// Every message with a UID above `last_uid`, oldest UID first.
    pub async fn fetch_since(&mut self, last_uid: u32) -> Result<Vec<FetchedMessage>, ImapError> {
        self.fetch_since_limit(last_uid, usize::MAX).await
    }

    /// Like [`Self::fetch_since`], but at most `max_messages` (the lowest
    /// UIDs), so that a large backlog is read in bounded memory.
    pub async fn fetch_since_limit(
        &mut self,
        last_uid: u32,
        max_messages: usize,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let listed = self.list_since(last_uid, max_messages).await?;
        self.fetch_messages(&listed).await
    }

    /// UID, INTERNALDATE and size of at most `max_messages` messages above
    /// `last_uid` (the lowest UIDs), without their content: the daemon
    /// reads the bodies of a pass in byte-bounded chunks with
    /// [`Self::fetch_messages`], so a backlog of large messages is never
    /// held at once. It first syncs (`NOOP`): a server shows another
    /// client's delivery to this session only at a sync point (RFC 3501
    /// §5.2), so everything delivered until now is listed; the EXISTS it
    /// reports is about messages listed here, not a reason to wake later.
    pub async fn list_since(
        &mut self,
        last_uid: u32,
        max_messages: usize,
    ) -> Result<Vec<MessageInfo>, ImapError> {
        let Some(from) = last_uid.checked_add(1) else {
            return Ok(Vec::new());
        };
        // Mail read for handling must be movable afterwards: with a
        // processed folder the server refuses, nothing is listed or
        // downloaded at all (else every pass would read the same mail).
        if self.access == FolderAccess::ReadWrite {
            self.ensure_processed_folder().await?;
        }
        self.poll_new_mail().await?;
        // The UIDs first (a few bytes each), then sizes and dates of only
        // the first `max_messages`: a FETCH over the whole backlog was
        // answered with a response per message, each in a buffer of its
        // own (~6 KB each: 60 MB for 10,000 waiting messages, all to keep
        // 200). Every UID is asked for (`UID SEARCH ALL`) and the range
        // cut here: GNU Mailutils answers `UID SEARCH UID n:*` with
        // nothing, and `UID n:m` with nothing after an EXPUNGE.
        let uids = self.uids().await?;
        let first: Vec<u32> = uids
            .into_iter()
            .filter(|&uid| uid >= from)
            .take(max_messages)
            .collect();
        self.list_messages(&first).await
    }

    /// [`Self::raw_message`] without a copy of the bytes: the fetched
    /// message is consumed (a 25 MB message is held once, not twice).
    pub async fn into_raw_message(
        &mut self,
        message: FetchedMessage,
    ) -> Result<RawMessage, ImapError> {
        match message.bytes {
            Some(bytes) => Ok(RawMessage {
                source: format!(
                    "imap:{}:{}:{}",
                    self.config.folder, self.folder.uidvalidity, message.uid
                ),
                bytes,
                received_at: message.internal_date,
                full_size: None,
            }),
            None => self.raw_message(&message).await,
        }
    }

    /// Stays in IDLE (RFC 2177) on this session and calls `on_new_mail` for
    /// every `EXISTS`, without leaving IDLE in between, until `cancel`
    /// fires (then `DONE` and `Ok`). IDLE is ended and re-issued every 25
    /// minutes (RFC 2177 §3). Meant for a session of its own (opened with
    /// [`Self::examine`]) that only watches while another one works: a
    /// server such as Dovecot sends the first notification of an IDLE
    /// command ~0.5 s after the delivery and later ones within
    /// milliseconds, so a watcher that never leaves IDLE hears of each
    /// message at once. Call it only when [`Self::idles`]; after an error
    /// the session is gone (reconnect).
    pub async fn watch_new_mail(
        &mut self,
        on_new_mail: &(dyn Fn() + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), ImapError> {
        if self.take_new_mail_notice() {
            on_new_mail();
        }
        loop {
            let round_end = Instant::now() + IDLE_REISSUE;
            let wake = self
                .idle_round(round_end, cancel, &|| {
                    on_new_mail();
                    false
                })
                .await?;
            if self.take_new_mail_notice() {
                on_new_mail();
            }
            if wake == Some(Wake::Cancelled) {
                return Ok(());
            }
        }
    }

    /// Every UID in the folder, ascending (`UID SEARCH ALL`): a snapshot,
    /// to read a large folder in batches with [`Self::list_messages`].
    pub async fn uids(&mut self) -> Result<Vec<u32>, ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "UID SEARCH", async {
            session
                .uid_search("ALL")
                .await
                .map_err(ImapError::command("UID SEARCH"))
        })
        .await;
        let mut uids: Vec<u32> = self.check(result)?.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// UID, INTERNALDATE and size of the given messages, by ascending UID;
    /// a UID no longer in the folder is left out.
    pub async fn list_messages(&mut self, uids: &[u32]) -> Result<Vec<MessageInfo>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        self.list(&uid_set(uids), |uid| uids.contains(&uid)).await
    }

    /// `UID FETCH set (UID RFC822.SIZE INTERNALDATE)`, keeping the UIDs
    /// `wanted` accepts (a server also sends FETCH responses about other
    /// messages, e.g. flag changes by another client).
    async fn list(
        &mut self,
        set: &str,
        wanted: impl Fn(u32) -> bool,
    ) -> Result<Vec<MessageInfo>, ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "UID FETCH", async {
            let stream = session
                .uid_fetch(set, "(UID RFC822.SIZE INTERNALDATE)")
                .await
                .map_err(ImapError::command("UID FETCH"))?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID FETCH"))
        })
        .await;
        let fetches = self.check(result)?;

        // RFC 3501 §6.4.8: "n:*" always includes the highest UID, even when
        // it is below n, so the listing is filtered and deduplicated here.
        let mut listed: BTreeMap<u32, MessageInfo> = BTreeMap::new();
        for fetch in &fetches {
            let Some(uid) = fetch.uid.filter(|uid| wanted(*uid)) else {
                continue;
            };
            let (Some(date), Some(size)) = (fetch.internal_date(), fetch.size) else {
                return Err(ImapError::Protocol {
                    what: format!("INTERNALDATE or RFC822.SIZE for UID {uid}"),
                });
            };
            listed.insert(
                uid,
                MessageInfo {
                    uid,
                    internal_date: date.with_timezone(&Utc),
                    size: u64::from(size),
                },
            );
        }
        Ok(listed.into_values().collect())
    }

    /// The listed messages with their content (`BODY.PEEK[]`, which never
    /// sets `\Seen`), in the order given. One larger than
    /// `max_message_bytes` comes without bytes; one expunged meanwhile by
    /// another client is left out.
    pub async fn fetch_messages(
        &mut self,
        listed: &[MessageInfo],
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let max = self.config.max_message_bytes;
        let wanted: Vec<(u32, u64)> = listed
            .iter()
            .filter(|m| m.size <= max)
            .map(|m| (m.uid, m.size))
            .collect();
        let mut bodies = BTreeMap::new();
        for batch in body_batches(&wanted) {
            bodies.extend(self.fetch_bodies(&batch).await?);
        }

        let mut messages = Vec::with_capacity(listed.len());
        for &MessageInfo {
            uid,
            internal_date,
            size,
        } in listed
        {
            let bytes = if size <= max {
                match bodies.remove(&uid) {
                    Some(bytes) => Some(bytes),
                    // Expunged by another client between the two FETCHes:
                    // it is gone, so there is nothing to hand over.
                    None => {
                        tracing::debug!(uid, "message vanished before its body was fetched");
                        continue;
                    }
                }
            } else {
                None
            };
            messages.push(FetchedMessage {
                uid,
                internal_date,
                size,
                bytes,
            });
        }
        Ok(messages)
    }

    /// A fetched message as ingest takes it (source
    /// `imap:FOLDER:UIDVALIDITY:UID`); one over the size limit is
    /// represented by its header only (`BODY.PEEK[HEADER]`), which ingest
    /// turns into a truncated stub.
    pub async fn raw_message(&mut self, message: &FetchedMessage) -> Result<RawMessage, ImapError> {
        let source = format!(
            "imap:{}:{}:{}",
            self.config.folder, self.folder.uidvalidity, message.uid
        );
        let (bytes, full_size) = match &message.bytes {
            Some(bytes) => (bytes.clone(), None),
            None => (
                self.fetch_headers(message.uid).await?.unwrap_or_default(),
                Some(message.size),
            ),
        };
        Ok(RawMessage {
            source,
            bytes,
            received_at: message.internal_date,
            full_size,
        })
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<BTreeMap<u32, Vec<u8>>, ImapError> {
        let deadline = self.config.command_deadline();
        let set = uid_set(uids);
        let session = self.session()?;
        let result = timed(deadline, "UID FETCH BODY", async {
            let stream = session
                .uid_fetch(&set, "(UID BODY.PEEK[])")
                .await
                .map_err(ImapError::command("UID FETCH BODY"))?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID FETCH BODY"))
        })
        .await;
        let fetches = self.check(result)?;
        Ok(fetches
            .iter()
            .filter_map(|fetch| Some((fetch.uid?, fetch.body()?.to_vec())))
            .filter(|(uid, _)| uids.contains(uid))
            .collect())
    }

    /// The whole content of one (large) message, read in parts of 4 MB
    /// (`BODY.PEEK[]<offset.length>`, RFC 3501 §6.4.5) into one buffer of
    /// its size: the connection's read buffer never holds more than one
    /// part, so a 25 MB message is held about once instead of three times.
    /// `None` if no such UID exists.
    pub async fn fetch_body_in_parts(
        &mut self,
        uid: u32,
        size: u64,
    ) -> Result<Option<Vec<u8>>, ImapError> {
        let mut body: Vec<u8> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        loop {
            let deadline = self.config.command_deadline();
            let query = format!("(UID BODY.PEEK[]<{}.{BODY_PART_BYTES}>)", body.len());
            let session = self.session()?;
            let result = timed(deadline, "UID FETCH BODY PART", async {
                let stream = session
                    .uid_fetch(uid.to_string(), &query)
                    .await
                    .map_err(ImapError::command("UID FETCH BODY PART"))?;
                stream
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(ImapError::command("UID FETCH BODY PART"))
            })
            .await;
            let fetches = self.check(result)?;
            let Some(part) = fetches
                .iter()
                .find(|fetch| fetch.uid == Some(uid))
                .and_then(|fetch| fetch.body())
            else {
                return Ok((!body.is_empty()).then_some(body));
            };
            body.extend_from_slice(part);
            if part.len() < BODY_PART_BYTES as usize {
                return Ok(Some(body));
            }
        }
    }

    /// The header of one message (`BODY.PEEK[HEADER]`), e.g. for a message
    /// too large to download; `None` if no such UID exists.
    pub async fn fetch_headers(&mut self, uid: u32) -> Result<Option<Vec<u8>>, ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "UID FETCH HEADER", async {
            let stream = session
                .uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])")
                .await
                .map_err(ImapError::command("UID FETCH HEADER"))?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID FETCH HEADER"))
        })
        .await;
        let fetches = self.check(result)?;
        Ok(fetches
            .iter()
            .find(|fetch| fetch.uid == Some(uid))
            .and_then(|fetch| fetch.header().map(<[u8]>::to_vec)))
    }

    /// Moves the handled messages `uids` to `processed_folder` (created
    /// when missing), in one batch.
    ///
    /// - MOVE (RFC 6851): `UID MOVE set`, atomic.
    /// - UIDPLUS (RFC 4315): `UID COPY set`, `UID STORE set
    ///   +FLAGS.SILENT (\Deleted)`, `UID EXPUNGE set`: only these leave.
    /// - Neither: `UID COPY` (skipping messages already carrying
    ///   [`PROCESSED_KEYWORD`]), then `\Deleted` (and the keyword, when the
    ///   folder takes keywords). A plain `EXPUNGE` removes every `\Deleted`
    ///   message, including one another client only marked (RFC 4315 §1),
    ///   so it is sent only when no such foreign message waits; otherwise
    ///   ours stay flagged (the cursor is past them, they are not read
    ///   again) and go with the next batch's EXPUNGE.
    ///
    /// The caller moves what a pass fetched, in UID order from its cursor:
    /// every message below the lowest of `uids` is then one refundd moved
    /// earlier, so a `\Deleted` message below it is ours, and one above it
    /// not in `uids` is another client's. A crash between COPY and the
    /// flags leaves a copy in both folders; the original is read again,
    /// dedupe drops it, and (with the keyword) it is not copied twice.
    pub async fn move_to_processed(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        if self.access == FolderAccess::ReadOnly {
            return Err(ImapError::ReadOnly { command: "MOVE" });
        }
        if uids.is_empty() {
            return Ok(());
        }
        self.ensure_processed_folder().await?;
        let set = uid_set(uids);
        if self.uses(ImapExtension::Move) {
            return self.transfer(&set, true).await;
        }
        if self.uses(ImapExtension::UidPlus) {
            self.copy(&set).await?;
            self.store_flags(&set, "\\Deleted").await?;
            return self.uid_expunge(&set).await;
        }
        let copied_before = if self.keywords_allowed {
            self.search(&format!("UID {set} KEYWORD {PROCESSED_KEYWORD}"))
                .await?
        } else {
            BTreeSet::new()
        };
        let to_copy: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|uid| !copied_before.contains(uid))
            .collect();
        if !to_copy.is_empty() {
            self.copy(&uid_set(&to_copy)).await?;
        }
        let flags = if self.keywords_allowed {
            format!("\\Deleted {PROCESSED_KEYWORD}")
        } else {
            "\\Deleted".to_owned()
        };
        self.store_flags(&set, &flags).await?;
        self.expunge_if_only_ours(uids).await
    }

    /// Sends a plain `EXPUNGE` only when every `\Deleted` message in the
    /// folder is one refundd moved (see [`Self::move_to_processed`]).
    async fn expunge_if_only_ours(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        let lowest = uids.iter().copied().min().unwrap_or(0);
        let ours: BTreeSet<u32> = uids.iter().copied().collect();
        // Another client's delivery or flag change reaches this session
        // only at a sync point (RFC 3501 §5.2): NOOP first, so that the
        // search sees every \Deleted message the EXPUNGE would remove.
        self.noop().await?;
        let foreign: Vec<u32> = self
            .search("DELETED")
            .await?
            .into_iter()
            .filter(|uid| *uid > lowest && !ours.contains(uid))
            .collect();
        if !foreign.is_empty() {
            tracing::warn!(
                folder = %self.config.folder,
                ours = uids.len(),
                foreign = %uid_set(&foreign),
                "another client marked message(s) \\Deleted without expunging; this server lacks UIDPLUS, so EXPUNGE would remove them too: refundd's handled mail stays flagged \\Deleted until they are gone"
            );
            return Ok(());
        }
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "EXPUNGE", async {
            session
                .expunge()
                .await
                .map_err(ImapError::command("EXPUNGE"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("EXPUNGE"))
        })
        .await;
        self.check(result).map(|_| ())
    }

    /// `UID MOVE set` (or `UID COPY set`) to the processed folder.
    async fn transfer(&mut self, set: &str, moving: bool) -> Result<(), ImapError> {
        let command = if moving { "UID MOVE" } else { "UID COPY" };
        let deadline = self.config.command_deadline();
        let target = self.names.processed.clone();
        let session = self.session()?;
        let result = timed(deadline, command, async {
            let sent = if moving {
                session.uid_mv(set, &target).await
            } else {
                session.uid_copy(set, &target).await
            };
            sent.map_err(ImapError::command(command))
        })
        .await;
        self.check(result)
    }

    async fn copy(&mut self, set: &str) -> Result<(), ImapError> {
        self.transfer(set, false).await
    }

    async fn store_flags(&mut self, set: &str, flags: &str) -> Result<(), ImapError> {
        let deadline = self.config.command_deadline();
        let query = format!("+FLAGS.SILENT ({flags})");
        let session = self.session()?;
        let result = timed(deadline, "UID STORE", async {
            session
                .uid_store(set, &query)
                .await
                .map_err(ImapError::command("UID STORE"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID STORE"))
        })
        .await;
        self.check(result).map(|_| ())
    }

    async fn uid_expunge(&mut self, set: &str) -> Result<(), ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "UID EXPUNGE", async {
            session
                .uid_expunge(set)
                .await
                .map_err(ImapError::command("UID EXPUNGE"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID EXPUNGE"))
        })
        .await;
        self.check(result).map(|_| ())
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "NOOP", async {
            session.noop().await.map_err(ImapError::command("NOOP"))
        })
        .await;
        self.check(result)
    }

    /// `UID SEARCH query`: the matching UIDs.
    async fn search(&mut self, query: &str) -> Result<BTreeSet<u32>, ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(deadline, "UID SEARCH", async {
            session
                .uid_search(query)
                .await
                .map_err(ImapError::command("UID SEARCH"))
        })
        .await;
        Ok(self.check(result)?.into_iter().collect())
    }

    /// Makes sure the processed folder exists (`LIST`, then `CREATE` when
    /// missing); once per session. A refusal is
    /// [`ImapError::ProcessedFolder`] with the server's words: permanent,
    /// since retrying the same CREATE gets the same answer.
    pub async fn ensure_processed_folder(&mut self) -> Result<ProcessedFolder, ImapError> {
        if self.processed_folder_ready {
            return Ok(ProcessedFolder::Exists);
        }
        let deadline = self.config.command_deadline();
        let name = self.names.processed.clone();
        let session = self.session()?;
        let result = timed(deadline, "LIST", async {
            let names = session
                .list(Some(""), Some(&quote(&name)))
                .await
                .map_err(ImapError::command("LIST"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("LIST"))?;
            let found = names.iter().find(|found| found.name() == name).map(|found| {
                found.attributes().iter().any(|attribute| {
                    matches!(
                        attribute,
                        async_imap::imap_proto::NameAttribute::NoSelect
                    )
                })
            });
            match found {
                Some(false) => Ok(ProcessedFolder::Exists),
                Some(true) => Err(ImapError::Protocol {
                    what: format!(
                        "a selectable processed folder: \"{name}\" exists only as a \\Noselect parent"
                    ),
                }),
                None => {
                    session
                        .create(&name)
                        .await
                        .map_err(ImapError::command("CREATE"))?;
                    Ok(ProcessedFolder::Created)
                }
            }
        })
        .await;
        let outcome = match self.check(result) {
            Err(
                err @ ImapError::Command {
                    command: "CREATE", ..
                },
            ) if !err.is_transient() => {
                return Err(ImapError::ProcessedFolder {
                    folder: self.config.processed_folder.clone(),
                    server: err.server_words().unwrap_or_else(|| err.to_string()),
                });
            }
            other => other?,
        };
        self.processed_folder_ready = true;
        Ok(outcome)
    }

    /// Waits until the server reports new mail, `timeout` passes or `cancel`
    /// fires. Uses IDLE (re-issued every 25 minutes) when the server offers
    /// it and `config.idle` is on; otherwise sends `NOOP` every
    /// `poll_interval`. A notification that arrived during an earlier
    /// command returns at once.
    pub async fn idle_wait(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Wake, ImapError> {
        if self.take_new_mail_notice() {
            return Ok(Wake::NewMail);
        }
        let deadline = Instant::now() + timeout;
        if self.config.idle && self.uses(ImapExtension::Idle) {
            self.idle_until(deadline, cancel).await
        } else {
            self.poll_until(deadline, cancel).await
        }
    }

    async fn idle_until(
        &mut self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Wake, ImapError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wake::Timeout);
            }
            let round_end = deadline.min(now + IDLE_REISSUE);
            let wake = self.idle_round(round_end, cancel, &|| true).await?;
            let notice = self.take_new_mail_notice();
            match wake {
                Some(wake) => return Ok(wake),
                None if notice => return Ok(Wake::NewMail),
                None => continue,
            }
        }
    }

    /// One IDLE command (RFC 2177) until `round_end` or `cancel`, then
    /// `DONE`. Every `EXISTS` calls `on_exists`; when it answers true the
    /// round ends with [`Wake::NewMail`]. `None` when the round simply ran
    /// out. IDLE takes the session; it is put back only after DONE, so any
    /// failure leaves the mailbox disconnected.
    async fn idle_round(
        &mut self,
        round_end: Instant,
        cancel: &CancellationToken,
        on_exists: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Option<Wake>, ImapError> {
        let command_deadline = self.config.command_deadline();
        let mut handle = self.session.take().ok_or(ImapError::Disconnected)?.idle();
        timed(command_deadline, "IDLE", async {
            handle.init().await.map_err(ImapError::command("IDLE"))
        })
        .await?;
        let wake = loop {
            let (wait, _interrupt) =
                handle.wait_with_timeout(round_end.saturating_duration_since(Instant::now()));
            tokio::select! {
                response = wait => match response.map_err(ImapError::command("IDLE"))? {
                    async_imap::extensions::idle::IdleResponse::NewData(data) => {
                        if matches!(data.parsed(), Response::MailboxData(MailboxDatum::Exists(_)))
                            && on_exists()
                        {
                            break Some(Wake::NewMail);
                        }
                    }
                    async_imap::extensions::idle::IdleResponse::Timeout
                    | async_imap::extensions::idle::IdleResponse::ManualInterrupt => break None,
                },
                _ = tokio::time::sleep_until(round_end) => break None,
                _ = cancel.cancelled() => break Some(Wake::Cancelled),
            }
        };
        let session = timed(command_deadline, "DONE", async {
            handle.done().await.map_err(ImapError::command("DONE"))
        })
        .await?;
        self.session = Some(session);
        Ok(wake)
    }

    async fn poll_until(
        &mut self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Wake, ImapError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wake::Timeout);
            }
            let next = deadline.min(now + self.config.poll_every());
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = cancel.cancelled() => return Ok(Wake::Cancelled),
            }
            if self.poll_new_mail().await? {
                return Ok(Wake::NewMail);
            }
        }
    }

    /// One `NOOP`: whether the server reported new mail (in its answer, or
    /// during an earlier command).
    pub async fn poll_new_mail(&mut self) -> Result<bool, ImapError> {
        let command_deadline = self.config.command_deadline();
        let session = self.session()?;
        let result = timed(command_deadline, "NOOP", async {
            session.noop().await.map_err(ImapError::command("NOOP"))
        })
        .await;
        self.check(result)?;
        Ok(self.take_new_mail_notice())
    }

    /// Drains the notifications queued during earlier commands; true if one
    /// was `EXISTS`. (async-imap queues at most 100 and drops the rest, so
    /// this runs before every wait.)
    fn take_new_mail_notice(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let mut new_mail = false;
        while let Ok(notice) = session.unsolicited_responses.try_recv() {
            new_mail |= matches!(notice, UnsolicitedResponse::Exists(_));
        }
        new_mail
    }

    /// Says goodbye (`LOGOUT`) and closes the connection.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        let deadline = self.config.command_deadline();
        let session = self.session()?;
        timed(deadline, "LOGOUT", async {
            session.logout().await.map_err(ImapError::command("LOGOUT"))
        })
        .await
    }

    fn session(&mut self) -> Result<&mut ImapSession, ImapError> {
        self.session.as_mut().ok_or(ImapError::Disconnected)
    }

    /// Drops the session after an error that leaves the connection unusable.
    /// Also logs the untagged lines the guard skipped during the command.
    fn check<T>(&mut self, result: Result<T, ImapError>) -> Result<T, ImapError> {
        self.log_skipped_lines();
        if let Err(err) = &result
            && err.kills_session()
        {
            self.session = None;
        }
        result
    }

    /// Logs each line the server sent that is not IMAP: at warn the first
    /// time a line of that shape comes (digits aside), at debug after.
    fn log_skipped_lines(&mut self) {
        let lines = match self.skipped.lock() {
            Ok(mut skipped) => std::mem::take(&mut *skipped),
            Err(_) => return,
        };
        for line in lines {
            let shape: String = line
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect();
            if self.quirks_logged.insert(shape) {
                tracing::warn!(
                    server_line = %line,
                    "the IMAP server sent a line that is not IMAP; refundd skips it and goes by the command's tagged answer"
                );
            } else {
                tracing::debug!(server_line = %line, "skipped a line that is not IMAP");
            }
        }
    }

    /// The untagged lines the server sent this session that were not IMAP
    /// (one of each shape), for `check-config`.
    pub fn skipped_line_shapes(&self) -> Vec<String> {
        let mut shapes: Vec<String> = self.quirks_logged.iter().cloned().collect();
        shapes.sort();
        shapes
    }
}

/// Connects, secures, reads the greeting and logs in; returns the session
/// and the extensions it advertises.
async fn open_session(
    config: &ImapConfig,
    skipped: SkippedLines,
) -> Result<(ImapSession, Vec<ImapExtension>), ImapError> {
    let deadline = config.command_deadline();
    let host = config.host.as_str();
    let port = config.effective_port();
    let tcp = timed(deadline, "connect", async {
        ImapStream::connect(host, port)
            .await
            .map_err(|source| ImapError::Connect {
                host: host.to_owned(),
                port,
                source,
            })
    })
    .await?;
    let tls_error = |source| ImapError::Tls {
        host: host.to_owned(),
        source,
    };
    let ca_file = config.ca_file.as_deref();
    let client = match config.tls {
        ImapTls::Tls => {
            let stream = timed(deadline, "TLS handshake", async {
                ImapStream::tls(tcp, host, ca_file).await.map_err(tls_error)
            })
            .await?;
            let mut client = Client::new(Guarded::new(stream, skipped.clone()));
            timed(deadline, "greeting", read_greeting(&mut client)).await?;
            client
        }
        ImapTls::Starttls => {
            let mut client = Client::new(Guarded::new(ImapStream::Plain(tcp), skipped.clone()));
            timed(deadline, "greeting", read_greeting(&mut client)).await?;
            timed(deadline, "STARTTLS", async {
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(ImapError::StartTls)
            })
            .await?;
            // RFC 3501 §6.2.1: nothing after the tagged OK is sent in clear;
            // capabilities learned before TLS are discarded.
            let tcp = client
                .into_inner()
                .into_inner()
                .into_plain()
                .ok_or_else(|| ImapError::Protocol {
                    what: "a plain stream before STARTTLS".into(),
                })?;
            let stream = timed(deadline, "TLS handshake", async {
                ImapStream::tls(tcp, host, ca_file).await.map_err(tls_error)
            })
            .await?;
            Client::new(Guarded::new(stream, skipped.clone()))
        }
        ImapTls::None => {
            if !transport::is_loopback(host) {
                tracing::warn!(
                    host,
                    "IMAP without TLS to a non-loopback host: the password crosses the network in clear"
                );
            }
            let mut client = Client::new(Guarded::new(ImapStream::Plain(tcp), skipped.clone()));
            timed(deadline, "greeting", read_greeting(&mut client)).await?;
            client
        }
    };
    let mut session = timed(deadline, "login", login(config, client)).await?;
    let capabilities = timed(deadline, "CAPABILITY", async {
        session
            .capabilities()
            .await
            .map_err(ImapError::command("CAPABILITY"))
    })
    .await?;
    Ok((session, extensions_in(&capabilities)))
}

async fn read_greeting(client: &mut Client<Guarded<ImapStream>>) -> Result<(), ImapError> {
    let greeting = client
        .read_response()
        .await
        .map_err(|source| ImapError::command("greeting")(source.into()))?
        .ok_or(ImapError::Command {
            command: "greeting",
            source: async_imap::error::Error::ConnectionLost,
        })?;
    match greeting.parsed() {
        Response::Data {
            status: async_imap::imap_proto::Status::Ok,
            ..
        } => Ok(()),
        other => Err(ImapError::Greeting(format!("{other:?}"))),
    }
}

async fn login(
    config: &ImapConfig,
    client: Client<Guarded<ImapStream>>,
) -> Result<ImapSession, ImapError> {
    let refused = |(source, _client): (async_imap::error::Error, Client<Guarded<ImapStream>>)| {
        if breaks_connection(&source) {
            ImapError::Command {
                command: "login",
                source,
            }
        } else {
            ImapError::Auth {
                username: config.username.clone(),
                xoauth2: config.auth == ImapAuth::Xoauth2,
                source,
            }
        }
    };
    match config.auth {
        ImapAuth::Login => {
            let password = config.read_password().await?;
            client
                .login(&config.username, &password)
                .await
                .map_err(refused)
        }
        ImapAuth::Xoauth2 => {
            let token = config.read_oauth_token().await?;
            let authenticator = XOAuth2 {
                initial: xoauth2_response(&config.username, &token),
                sent: false,
            };
            client
                .authenticate("XOAUTH2", authenticator)
                .await
                .map_err(refused)
        }
    }
}

/// The SASL XOAUTH2 initial response (Google and Microsoft use the same
/// format): `user=U ^A auth=Bearer T ^A ^A`.
fn xoauth2_response(username: &str, token: &str) -> String {
    format!("user={username}\x01auth=Bearer {token}\x01\x01")
}

/// Sends the XOAUTH2 response once; on failure the server sends a JSON error
/// as a second challenge, which must be answered with an empty line.
struct XOAuth2 {
    initial: String,
    sent: bool,
}

impl Authenticator for XOAuth2 {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if std::mem::replace(&mut self.sent, true) {
            String::new()
        } else {
            self.initial.clone()
        }
    }
}

fn extensions_in(capabilities: &Capabilities) -> Vec<ImapExtension> {
    ImapExtension::ALL
        .into_iter()
        .filter(|ext| capabilities.has_str(ext.capability()))
        .collect()
}

async fn timed<T>(
    limit: Duration,
    command: &'static str,
    work: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ImapError::Timeout { command })?
}

/// A mailbox name as an IMAP quoted string (RFC 3501 §4.3).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A compact UID set: sorted UIDs as `1:3,7,9:10` (RFC 3501 §9 sequence-set).
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
    }
    parts.join(",")
}

/// Groups (uid, size) pairs into body-fetch batches of at most
/// [`BODY_BATCH_MESSAGES`] messages and [`BODY_BATCH_BYTES`] bytes.
pub(super) fn body_batches(wanted: &[(u32, u64)]) -> Vec<Vec<u32>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in wanted {
        if !batch.is_empty()
            && (batch.len() == BODY_BATCH_MESSAGES || bytes + size > BODY_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        batch.push(uid);
        bytes += size;
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs_into_ranges() {
        let cases: [(&[u32], &str); 5] = [
            (&[5], "5"),
            (&[1, 2, 3], "1:3"),
            (&[9, 1, 2, 3, 7, 10], "1:3,7,9:10"),
            (&[4, 4, 5], "4:5"),
            (&[], ""),
        ];
        for (uids, expected) in cases {
            assert_eq!(uid_set(uids), expected, "{uids:?}");
        }
    }

    #[test]
    fn body_batches_respect_the_count_and_byte_limits() {
        let small: Vec<(u32, u64)> = (1..=250).map(|uid| (uid, 1000)).collect();
        let sizes: Vec<usize> = body_batches(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);

        let big = [
            (1, BODY_BATCH_BYTES - 10),
            (2, 20),
            (3, BODY_BATCH_BYTES * 2),
            (4, 5),
        ];
        assert_eq!(body_batches(&big), vec![vec![1], vec![2], vec![3], vec![4]]);
    }

    #[test]
    fn the_xoauth2_response_has_the_documented_layout() {
        assert_eq!(
            xoauth2_response("refunds@anumi.example", "ya29.abc"),
            "user=refunds@anumi.example\u{1}auth=Bearer ya29.abc\u{1}\u{1}"
        );
    }

    #[test]
    fn the_xoauth2_authenticator_answers_an_error_challenge_with_an_empty_line() {
        let mut auth = XOAuth2 {
            initial: "payload".into(),
            sent: false,
        };
        assert_eq!(auth.process(b""), "payload");
        assert_eq!(auth.process(br#"{"status":"400"}"#), "");
    }

    #[test]
    fn mailbox_names_are_quoted_with_escapes() {
        assert_eq!(quote("Processed"), "\"Processed\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    fn no(text: &str) -> async_imap::error::Error {
        // async-imap's own rendering of a tagged NO.
        async_imap::error::Error::No(format!("code: None, info: Some({text:?})"))
    }

    #[test]
    fn throttling_answers_are_transient_and_slow_us_down() {
        let cases = [
            (
                "Microsoft 365",
                "[THROTTLED] Request is throttled. Suggested Backoff Time: 1234 milliseconds",
                true,
            ),
            ("Gmail", "[UNAVAILABLE] Temporary System Error", true),
            ("RFC 5530 limit", "[LIMIT] Too many mailboxes open", true),
            (
                "Gmail connections",
                "Too many simultaneous connections. (Failure)",
                true,
            ),
            ("a real refusal", "Permission denied", false),
            (
                "no such folder",
                "[NONEXISTENT] Mailbox doesn't exist: Refunds",
                false,
            ),
        ];
        for (name, text, throttled) in cases {
            let err = ImapError::Command {
                command: "UID FETCH",
                source: no(text),
            };
            assert_eq!(err.is_throttled(), throttled, "{name}");
            assert_eq!(err.is_transient(), throttled, "{name}");
            let login = ImapError::Auth {
                username: "u".into(),
                xoauth2: false,
                source: no(text),
            };
            assert_eq!(login.is_transient(), throttled, "{name} at login");
        }
    }

    #[test]
    fn the_servers_words_are_taken_out_of_async_imaps_rendering() {
        let cases = [
            (no("Permission denied"), Some("NO Permission denied")),
            (
                async_imap::error::Error::No(
                    "code: Some(TryCreate), info: Some(\"Mailbox doesn't exist\")".into(),
                ),
                Some("NO [TryCreate] Mailbox doesn't exist"),
            ),
            (
                async_imap::error::Error::Bad(
                    "code: None, info: Some(\"Unrecognized flag\")".into(),
                ),
                Some("BAD Unrecognized flag"),
            ),
            (async_imap::error::Error::ConnectionLost, None),
        ];
        for (source, expected) in cases {
            let err = ImapError::Command {
                command: "CREATE",
                source,
            };
            assert_eq!(err.server_words().as_deref(), expected, "{err:?}");
        }
    }

    #[test]
    fn transience_separates_outages_from_refusals() {
        use async_imap::error::Error;
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases = [
            (
                "connection refused",
                ImapError::Connect {
                    host: "h".into(),
                    port: 1,
                    source: io(),
                },
                true,
            ),
            ("timeout", ImapError::Timeout { command: "NOOP" }, true),
            ("lost session", ImapError::Disconnected, true),
            (
                "io during a command",
                ImapError::Command {
                    command: "SELECT",
                    source: Error::Io(io()),
                },
                true,
            ),
            (
                "server said NO",
                ImapError::Command {
                    command: "SELECT",
                    source: Error::No("no such folder".into()),
                },
                false,
            ),
            (
                "login refused",
                ImapError::Auth {
                    username: "u".into(),
                    xoauth2: false,
                    source: Error::No("bad".into()),
                },
                false,
            ),
            (
                "an expired OAuth2 token (a fresh one comes at the next connect)",
                ImapError::Auth {
                    username: "u".into(),
                    xoauth2: true,
                    source: Error::No("[AUTHENTICATIONFAILED] Authentication failed.".into()),
                },
                true,
            ),
            (
                "untrusted certificate",
                ImapError::Tls {
                    host: "h".into(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "cert"),
                },
                false,
            ),
            (
                "handshake reset",
                ImapError::Tls {
                    host: "h".into(),
                    source: io(),
                },
                true,
            ),
            (
                "a change on a read-only folder",
                ImapError::ReadOnly { command: "MOVE" },
                false,
            ),
            (
                "bad config",
                ImapError::Config {
                    key: "imap.host",
                    reason: "empty".into(),
                },
                false,
            ),
        ];
        for (name, err, transient) in cases {
            assert_eq!(err.is_transient(), transient, "{name}");
        }
    }
}
