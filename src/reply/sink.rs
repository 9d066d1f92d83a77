//! Delivery: a [`MailSink`] takes an [`OutgoingMessage`] and a recipient
//! and delivers it; [`FileSink`] writes it as an `.eml` file (the outbox of
//! the embedded default and of tests).
//!
//! The trait returns a boxed future rather than using `async fn`, so that it
//! stays dyn-compatible: the app holds one `Arc<dyn MailSink>` chosen by the
//! configuration (file or SMTP) and the stages never know which.
//!
//! Delivery is idempotent by Message-ID for the file sink: the same message
//! written twice leaves one file. Fails with [`SendError`], which says
//! whether a retry can help.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use super::OutgoingMessage;

/// Why a message was not delivered, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", if *.transient { "temporary send failure" } else { "send failure" })]
pub struct SendError {
    /// A retry later can succeed (disk full, server busy, connection lost).
    pub transient: bool,
    /// What went wrong, without message contents or addresses.
    pub reason: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SendError {
    /// A failure a retry can cure.
    pub fn transient(
        reason: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SendError {
            transient: true,
            reason: reason.into(),
            source,
        }
    }

    /// A failure no retry cures (rejected recipient, bad configuration).
    pub fn permanent(
        reason: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SendError {
            transient: false,
            reason: reason.into(),
            source,
        }
    }

    /// Whether a retry can help.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Somewhere replies go. Implementations must be idempotent by the
/// message's Message-ID where the transport allows it.
pub trait MailSink: Send + Sync {
    /// Delivers `message` to the envelope recipient `to`.
    fn send<'a>(
        &'a self,
        message: &'a OutgoingMessage,
        to: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Writes each message to `<dir>/<message-id>.eml`, atomically (temporary
/// file, fsync, rename, fsync of the directory). The recipient is in the
/// message's `To:`; the envelope recipient is not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing into `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into() }
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a message with this Message-ID is written to.
    pub fn path_for(&self, message_id: &str) -> Result<PathBuf, SendError> {
        let name = file_stem(message_id)
            .ok_or_else(|| SendError::permanent("message id gives no usable file name", None))?;
        Ok(self.dir.join(format!("{name}.eml")))
    }
}

impl MailSink for FileSink {
    fn send<'a>(
        &'a self,
        message: &'a OutgoingMessage,
        _to: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let path = self.path_for(&message.message_id)?;
            let dir = self.dir.clone();
            let raw = message.raw.clone();
            tokio::task::spawn_blocking(move || write_once(&dir, &path, &raw))
                .await
                .map_err(|join| {
                    SendError::transient("file sink task failed", Some(Box::new(join)))
                })?
        })
    }
}

/// The Message-ID without brackets, every character outside
/// `[A-Za-z0-9._@-]` replaced by `_`, at most 200 bytes; none if empty.
fn file_stem(message_id: &str) -> Option<String> {
    let inner = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let stem: String = inner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    let stem = stem.trim_start_matches('.').to_string();
    (!stem.is_empty()).then_some(stem)
}

/// Writes `raw` to `path` unless it exists: temporary file in the same
/// directory, fsync, rename over, fsync of the directory so the rename
/// survives a crash.
fn write_once(dir: &Path, path: &Path, raw: &[u8]) -> Result<(), SendError> {
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create the outbox directory", e))?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut file = std::fs::File::create_new(&tmp)?;
        file.write_all(raw)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(error) = written {
        // The temporary file is ours and useless now; failing to remove it
        // changes nothing about the outcome reported.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("cannot write the message file", error));
    }
    Ok(())
}

fn io_error(reason: &str, error: std::io::Error) -> SendError {
    use std::io::ErrorKind::*;
    let permanent = matches!(
        error.kind(),
        PermissionDenied | InvalidInput | NotADirectory | IsADirectory | ReadOnlyFilesystem
    );
    let source = Some(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
    if permanent {
        SendError::permanent(reason, source)
    } else {
        SendError::transient(reason, source)
    }
}
