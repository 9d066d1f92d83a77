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

    /// How many messages it takes at once: the outbox keeps this many
    /// sends in flight (each reply still goes through exactly one).
    fn parallelism(&self) -> usize {
        1
    }

    /// Ends what the sink holds open (an SMTP server hears `QUIT`); the
    /// daemon calls it once at shutdown, after the last send.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
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

/// Transient unless the error is about the outbox itself being wrong (a
/// file where the directory should be, no permission, read-only).
fn io_error(reason: &str, error: std::io::Error) -> SendError {
    use std::io::ErrorKind::*;
    let permanent = matches!(
        error.kind(),
        PermissionDenied
            | InvalidInput
            | AlreadyExists
            | NotADirectory
            | IsADirectory
            | ReadOnlyFilesystem
    );
    let source = Some(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
    if permanent {
        SendError::permanent(reason, source)
    } else {
        SendError::transient(reason, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: &str) -> OutgoingMessage {
        OutgoingMessage {
            message_id: id.into(),
            raw: format!("Message-ID: {id}\r\n\r\n{body}\r\n").into_bytes(),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_same_message_written_twice_leaves_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let sink = FileSink::new(&outbox);
        let first = message("<abc-1@refundd.example>", "first");
        sink.send(&first, "ann@example.com").await.unwrap();
        sink.send(&first, "ann@example.com").await.unwrap();
        sink.send(
            &message("<abc-1@refundd.example>", "again"),
            "ann@example.com",
        )
        .await
        .unwrap();

        assert_eq!(files(&outbox), ["abc-1@refundd.example.eml"]);
        let written = std::fs::read(outbox.join("abc-1@refundd.example.eml")).unwrap();
        assert_eq!(written, first.raw);
    }

    #[tokio::test]
    async fn different_messages_get_different_files() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        for id in ["<a@x>", "<b@x>"] {
            sink.send(&message(id, id), "ann@example.com")
                .await
                .unwrap();
        }
        assert_eq!(files(dir.path()), ["a@x.eml", "b@x.eml"]);
    }

    #[test]
    fn message_ids_become_safe_file_names() {
        let sink = FileSink::new("/outbox");
        let cases = [
            ("<uuid@refundd.example>", "/outbox/uuid@refundd.example.eml"),
            ("<../../etc/passwd@x>", "/outbox/_.._etc_passwd@x.eml"),
            ("<a/b\\c d@x>", "/outbox/a_b_c_d@x.eml"),
        ];
        for (id, expected) in cases {
            assert_eq!(sink.path_for(id).unwrap(), PathBuf::from(expected), "{id}");
        }
        let error = sink.path_for("<>").unwrap_err();
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn an_outbox_that_is_a_file_is_a_permanent_failure() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("outbox");
        std::fs::write(&not_a_dir, "occupied").unwrap();
        let sink = FileSink::new(&not_a_dir);
        let error = sink
            .send(&message("<a@x>", "a"), "ann@example.com")
            .await
            .unwrap_err();
        assert!(!error.is_transient(), "{error}");
    }

    #[tokio::test]
    async fn a_file_sink_delivers_through_the_trait_object() {
        let dir = tempfile::tempdir().unwrap();
        let sink: std::sync::Arc<dyn MailSink> = std::sync::Arc::new(FileSink::new(dir.path()));
        sink.send(&message("<dyn@x>", "via dyn"), "ann@example.com")
            .await
            .unwrap();
        assert_eq!(files(dir.path()), ["dyn@x.eml"]);
    }
}
