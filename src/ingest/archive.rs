//! Archived mail read again, read-only: an mbox file, a Maildir folder or an
//! IMAP folder, for `refundd replay` to decide again without side effects.
//!
//! - Takes: a path (mbox file, Maildir folder), or the `[imap]` settings and
//!   a folder name.
//! - Gives: every message as an [`ArchivedMessage`] (its bytes, when our
//!   server received it, where it came from), one at a time: an mbox is
//!   streamed line by line, a Maildir file is read when its turn comes, an
//!   IMAP folder is fetched in bounded batches. Memory stays at about one
//!   message (one IMAP body batch), whatever the archive's size.
//! - Never: changes what it reads. No file is created, moved, renamed or
//!   written (a Maildir is opened with [`Maildir::existing`], not
//!   [`Maildir::open`], which creates folders, and never marked processed);
//!   an IMAP folder is opened with `EXAMINE` and read with `BODY.PEEK[]`, so
//!   no flag changes (not `\Seen`, not `\Recent`), and no STORE, MOVE,
//!   EXPUNGE or CREATE is sent ([`ImapMailbox::examine`] refuses them).
//!   Never stores or redacts a message, nor decodes its body (only an
//!   mbox message's header is read, for its date): ingest redacts Polar
//!   session tokens ([`crate::parse::redact_secrets`]) before storing, so a
//!   replay that compares with stored messages must do the same.
//! - Size: a message over the size limit is kept as ingest keeps it, its
//!   header under a [`super::TRUNCATED_HEADER`] marker and its body dropped
//!   ([`RawMessage::into_kept_bytes`]), so that the replay sees what the
//!   pipeline saw (a case for review). The limit is
//!   [`DEFAULT_MAX_MESSAGE_BYTES`] unless given (`[ingest]
//!   max_message_bytes` for files, `[imap] max_message_bytes` for IMAP, as
//!   in ingest).
//! - Fails: an archive that cannot be opened, an mbox that cannot be read
//!   further, or an IMAP failure ends the read, with the file and line or
//!   the folder and UID where known; [`ArchiveError::is_transient`] says
//!   whether trying again can help. A single bad message (an mbox message
//!   with no receipt time, a Maildir file gone since the listing) is an
//!   `Err` item of its own and reading goes on with the next.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::imap::{FetchedMessage, FolderState, ImapConfig, ImapError, ImapMailbox, MessageInfo};
use super::maildir::{Maildir, MaildirEntry};
use super::{DEFAULT_MAX_MESSAGE_BYTES, IngestError, RawMessage};
use crate::parse;

/// UIDs listed per `UID FETCH (UID RFC822.SIZE INTERNALDATE)` when reading
/// an IMAP folder; bodies then follow in ingest's smaller batches.
const IMAP_LIST_BATCH: usize = 500;

/// How much of a line is looked at to recognise an mbox `From ` line
/// (real ones are well under 200 bytes).
const FROM_LINE_PEEK: usize = 1024;

/// One archived message: its bytes as stored, when our server received it,
/// where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The message as the archive holds it (mbox quoting undone); for a
    /// message over the size limit, the header-only stub ingest would store.
    pub bytes: Vec<u8>,
    /// When our mail server received it: the mbox `From ` line's date (else
    /// the header's, see [`read_mbox`]), the Maildir file's modification
    /// time, or the IMAP INTERNALDATE.
    pub received_at: DateTime<Utc>,
    /// Where it came from, for the record: `mbox:PATH:LINE` (the line of
    /// its `From ` line), `maildir:new/NAME` or `maildir:cur/NAME`, or
    /// `imap:FOLDER:UIDVALIDITY:UID` (as ingest names them).
    pub source: String,
    /// The message's real size when it was over the size limit and `bytes`
    /// holds only its header stub.
    pub truncated_from: Option<u64>,
}

impl From<RawMessage> for ArchivedMessage {
    fn from(raw: RawMessage) -> ArchivedMessage {
        let source = raw.source.clone();
        let received_at = raw.received_at;
        let truncated_from = raw.full_size;
        ArchivedMessage {
            bytes: raw.into_kept_bytes(),
            received_at,
            source,
            truncated_from,
        }
    }
}

/// Why an archive, or one message of it, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The mbox file or Maildir folder cannot be opened or listed.
    #[error("cannot open archive {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start with an mbox `From ` line.
    #[error("{path} is not an mbox file: its first line is not a \"From \" line")]
    NotMbox { path: PathBuf },
    /// The folder has neither `new/` nor `cur/`.
    #[error("{path} is not a Maildir: it has neither new/ nor cur/")]
    NotMaildir { path: PathBuf },
    /// Reading the mbox failed part way; nothing after `line` is read.
    #[error("cannot read {path} at line {line}")]
    MboxRead {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    /// One mbox message has no receipt time: no date on its `From ` line,
    /// no `Received:` or `Date:` header. The next message is read on.
    #[error(
        "the message at {path} line {line} has no receipt time: no date on its From line, no Received: or Date: header"
    )]
    NoReceiptTime { path: PathBuf, line: u64 },
    /// One Maildir file could not be read (e.g. removed since the listing).
    /// The next file is read on.
    #[error("cannot read Maildir message {path}")]
    MaildirRead {
        path: PathBuf,
        #[source]
        source: IngestError,
    },
    /// The IMAP folder could not be opened or read further.
    #[error("cannot read IMAP folder {folder}{}", .uid.map(|uid| format!(" at UID {uid}")).unwrap_or_default())]
    Imap {
        folder: String,
        uid: Option<u32>,
        #[source]
        source: ImapError,
    },
    /// The folder was recreated while it was read (RFC 3501 §2.3.1.1): the
    /// UIDs read so far mean nothing now, so the read cannot resume.
    #[error("IMAP folder {folder} changed UIDVALIDITY from {before} to {after} while being read")]
    UidValidityChanged {
        folder: String,
        before: u32,
        after: u32,
    },
}

impl ArchiveError {
    /// Whether trying again can help: not for a missing or unreadable
    /// archive, a file that is not an mbox or Maildir, a message without a
    /// receipt time, a refused login; yes for interrupted reads and network
    /// failures.
    pub fn is_transient(&self) -> bool {
        match self {
            ArchiveError::Open { source, .. } | ArchiveError::MboxRead { source, .. } => {
                io_is_transient(source)
            }
            ArchiveError::MaildirRead { source, .. } => match source {
                IngestError::Read { source, .. } => io_is_transient(source),
                other => other.is_transient(),
            },
            ArchiveError::Imap { source, .. } => source.is_transient(),
            ArchiveError::NotMbox { .. }
            | ArchiveError::NotMaildir { .. }
            | ArchiveError::NoReceiptTime { .. }
            | ArchiveError::UidValidityChanged { .. } => false,
        }
    }
}

/// Whether an io error may go away: a missing file or a refused permission
/// stays until someone acts.
fn io_is_transient(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    !matches!(
        err.kind(),
        NotFound | PermissionDenied | InvalidInput | InvalidData | IsADirectory | NotADirectory
    )
}

// ---------------------------------------------------------------- mbox

/// How an mbox file quotes body lines that would look like its `From `
/// separator (<https://www.loc.gov/preservation/digital/formats/fdd/fdd000385.shtml>).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MboxFormat {
    /// mboxrd: the writer added one `>` to every line matching `>*From `,
    /// so reading removes one from each (`>From ` → `From `, `>>From ` →
    /// `>From `). Exact round trip. The default.
    #[default]
    Mboxrd,
    /// mboxo: the writer quoted only `From ` lines (to `>From `); reading
    /// turns `>From ` back into `From ` and leaves `>>From ` alone. A body
    /// line that really was `>From ` comes back as `From ` (the format
    /// cannot tell them apart).
    Mboxo,
}

impl MboxFormat {
    /// The line with its quoting `>` removed, if this format quoted it.
    fn unquote(self, line: &[u8]) -> &[u8] {
        let quoted = match self {
            MboxFormat::Mboxrd => {
                let arrows = line.iter().take_while(|&&b| b == b'>').count();
                arrows > 0 && line[arrows..].starts_with(b"From ")
            }
            MboxFormat::Mboxo => line.starts_with(b">From "),
        };
        if quoted { &line[1..] } else { line }
    }
}

/// How to read an mbox file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MboxOptions {
    /// The quoting convention (default mboxrd).
    pub format: MboxFormat,
    /// Messages larger than this keep only their header (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]; pass `[ingest] max_message_bytes`).
    pub max_message_bytes: u64,
}

impl Default for MboxOptions {
    fn default() -> MboxOptions {
        MboxOptions {
            format: MboxFormat::Mboxrd,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Every message of an mbox file, read as mboxrd with the default size
/// limit (see [`read_mbox_with`] for mboxo or another limit).
///
/// A message starts at a line beginning `From ` (at the start of the file,
/// after an empty line, or anywhere when it carries a valid date); the one
/// empty line writers put before the next `From ` line is not part of the
/// message; LF and CRLF lines are kept as they are, and a last message
/// without a final newline is kept without one. `>From ` un-quoting follows
/// [`MboxFormat`].
///
/// Receipt time: the date of the `From ` line, in asctime form (`From
/// sender Thu Jun  4 09:12:00 2026`, read as UTC; a numeric zone before or
/// after the year, as Gmail's export writes, is applied); without one, the
/// topmost `Received:` header's date, then `Date:`
/// ([`parse::header_receipt_time`]); without any, that message is an
/// [`ArchiveError::NoReceiptTime`] item and the next one is read.
///
/// Streams: one message is held at a time (at most the size limit of it),
/// so a multi-gigabyte mbox is fine. A message over the limit keeps only
/// its header, as ingest does. Fails at once when the file cannot be
/// opened or does not start with a `From ` line (leading empty lines
/// aside); an empty file holds no messages.
pub fn read_mbox(path: &Path) -> Result<MboxReader<BufReader<File>>, ArchiveError> {
    read_mbox_with(path, MboxOptions::default())
}

/// [`read_mbox`] with a chosen format and size limit.
pub fn read_mbox_with(
    path: &Path,
    options: MboxOptions,
) -> Result<MboxReader<BufReader<File>>, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Open {
        path: path.to_owned(),
        source,
    })?;
    MboxReader::new(BufReader::with_capacity(64 * 1024, file), path, options)
}

/// The messages of one mbox, in file order (an iterator; see [`read_mbox`]).
/// After an [`ArchiveError::MboxRead`] it ends.
#[derive(Debug)]
pub struct MboxReader<R> {
    reader: R,
    path: PathBuf,
    options: MboxOptions,
    /// Lines consumed so far.
    line_no: u64,
    /// The `From ` line that starts the next message, and its line number.
    next_from: Option<(u64, Vec<u8>)>,
    /// Scratch buffer for the current line.
    line: Vec<u8>,
}

impl<R: BufRead> MboxReader<R> {
    /// Reads an mbox from any buffered reader (a decompressor, a pipe);
    /// `path` names it in sources and errors. Reads up to the first `From `
    /// line: fails with [`ArchiveError::NotMbox`] when another line comes
    /// first (empty lines aside).
    pub fn new(
        reader: R,
        path: &Path,
        options: MboxOptions,
    ) -> Result<MboxReader<R>, ArchiveError> {
        let mut mbox = MboxReader {
            reader,
            path: path.to_owned(),
            options,
            line_no: 0,
            next_from: None,
            line: Vec::new(),
        };
        loop {
            let len = mbox.read_line(FROM_LINE_PEEK)?;
            if len == 0 {
                return Ok(mbox);
            }
            if is_blank(&mbox.line) {
                continue;
            }
            if !mbox.line.starts_with(b"From ") {
                return Err(ArchiveError::NotMbox {
                    path: mbox.path.clone(),
                });
            }
            mbox.next_from = Some((mbox.line_no, mbox.line.clone()));
            return Ok(mbox);
        }
    }

    /// Reads the next line into `self.line`, keeping at most `keep` bytes
    /// of it (so that one endless line cannot fill memory); returns its
    /// full length, 0 at the end of the file.
    fn read_line(&mut self, keep: usize) -> Result<u64, ArchiveError> {
        self.line.clear();
        let mut len = 0u64;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ArchiveError::MboxRead {
                        path: self.path.clone(),
                        line: self.line_no + 1,
                        source,
                    });
                }
            };
            if available.is_empty() {
                break;
            }
            let (take, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            let room = keep.saturating_sub(self.line.len());
            self.line.extend_from_slice(&available[..take.min(room)]);
            self.reader.consume(take);
            len += take as u64;
            if complete {
                break;
            }
        }
        if len > 0 {
            self.line_no += 1;
        }
        Ok(len)
    }

    /// Reads one message, up to the next `From ` line or the end.
    fn read_message(&mut self) -> Option<Result<ArchivedMessage, ArchiveError>> {
        let (from_line_no, from_line) = self.next_from.take()?;
        let max = self.options.max_message_bytes;
        let mut bytes: Vec<u8> = Vec::new();
        // The message's full size, counted past the limit.
        let mut size = 0u64;
        // The length of the last line when it was empty (the separator
        // writers put before the next `From ` line).
        let mut trailing_blank: Option<u64> = None;
        loop {
            let room =
                usize::try_from(max.saturating_sub(bytes.len() as u64)).unwrap_or(usize::MAX);
            // One byte more than fits, for the `>` that un-quoting removes.
            let keep = room.saturating_add(1).max(FROM_LINE_PEEK);
            let len = match self.read_line(keep) {
                Ok(0) => break,
                Ok(len) => len,
                Err(err) => return Some(Err(err)),
            };
            let line = &self.line;
            if line.starts_with(b"From ")
                && (trailing_blank.is_some() || from_line_date(line).is_some())
            {
                self.next_from = Some((self.line_no, line.clone()));
                break;
            }
            let unquoted = self.options.format.unquote(line);
            let len = len - (line.len() - unquoted.len()) as u64;
            size += len;
            bytes.extend_from_slice(&unquoted[..unquoted.len().min(room)]);
            trailing_blank = is_blank(line).then_some(len);
        }
        if let Some(blank) = trailing_blank {
            size -= blank;
            bytes.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        }

        let received_at =
            match from_line_date(&from_line).or_else(|| parse::header_receipt_time(&bytes)) {
                Some(at) => at,
                None => {
                    return Some(Err(ArchiveError::NoReceiptTime {
                        path: self.path.clone(),
                        line: from_line_no,
                    }));
                }
            };
        let raw = RawMessage {
            source: format!("mbox:{}:{from_line_no}", self.path.display()),
            bytes,
            received_at,
            full_size: (size > max).then_some(size),
        };
        Some(Ok(raw.into()))
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = Result<ArchivedMessage, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_message()
    }
}

/// An empty line, LF or CRLF.
fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\n" | b"\r\n")
}

/// The date of an mbox `From ` line (`From SENDER DATE [remote from HOST]`,
/// DATE as C's asctime: `Thu Jun  4 09:12:00 2026`). asctime has no zone:
/// the date is read as UTC (writers that used their local time are off by
/// its offset). A numeric zone (`+0200`) or `UTC`/`GMT` before or after the
/// year is applied. `None` when the line holds no such date.
fn from_line_date(line: &[u8]) -> Option<DateTime<Utc>> {
    let text = String::from_utf8_lossy(line.strip_prefix(b"From ")?);
    let tokens: Vec<&str> = text.split_whitespace().collect();
    // Found by shape, not position: the sender may be missing or odd.
    let (at, month, day) = tokens.windows(3).enumerate().find_map(|(i, w)| {
        let month = month_number(w[0])?;
        let day: u32 = w[1].parse().ok().filter(|d| (1..=31).contains(d))?;
        is_time(w[2]).then_some((i, month, day))
    })?;
    let (hour, minute, second) = time_of_day(tokens[at + 2])?;
    let mut year: Option<i32> = None;
    let mut offset_seconds = 0;
    for token in tokens.iter().skip(at + 3).take(2) {
        if let Some(offset) = zone_offset(token) {
            offset_seconds = offset;
        } else if token.len() == 4
            && let Ok(y) = token.parse::<i32>()
        {
            year = Some(y);
        } else {
            break;
        }
    }
    let local = NaiveDate::from_ymd_opt(year?, month, day)?.and_hms_opt(hour, minute, second)?;
    FixedOffset::east_opt(offset_seconds)?
        .from_local_datetime(&local)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

fn month_number(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let token = token.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == token)
        .map(|i| i as u32 + 1)
}

fn is_time(token: &str) -> bool {
    time_of_day(token).is_some()
}

/// `HH:MM:SS` or `HH:MM`.
fn time_of_day(token: &str) -> Option<(u32, u32, u32)> {
    let mut parts = token.split(':');
    let hour = parts.next()?.parse().ok()?;
    let minute = parts.next()?.parse().ok()?;
    let second = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((hour, minute, second))
}

/// `+HHMM` / `-HHMM` in seconds east of UTC; `UTC`, `GMT`, `Z` as 0.
fn zone_offset(token: &str) -> Option<i32> {
    if ["UTC", "GMT", "Z"]
        .iter()
        .any(|z| token.eq_ignore_ascii_case(z))
    {
        return Some(0);
    }
    let (sign, digits) = match token.as_bytes().first()? {
        b'+' => (1, &token[1..]),
        b'-' => (-1, &token[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Some(sign * (hours * 3600 + minutes * 60))
}

// ---------------------------------------------------------------- Maildir

/// Every message of a Maildir folder (`new/` and `cur/`, not its
/// sub-folders), oldest receipt first, read-only with the default size
/// limit (see [`read_maildir_with`]).
///
/// Never moves, renames, creates or writes a file or folder, unlike ingest
/// (which moves `new/` to `cur/`). Receipt time is the file's modification
/// time, as ingest takes it ([`Maildir::scan`]). The folder is listed at
/// once; each file is read when the iterator reaches it, so a file removed
/// meanwhile is an [`ArchiveError::MaildirRead`] item and the next file is
/// read. A message over the limit keeps only its header, as ingest does.
/// Fails at once when the folder cannot be listed or has neither `new/`
/// nor `cur/`.
pub fn read_maildir(dir: &Path) -> Result<MaildirReader, ArchiveError> {
    read_maildir_with(dir, DEFAULT_MAX_MESSAGE_BYTES)
}

/// [`read_maildir`] with a chosen size limit (pass `[ingest] max_message_bytes`).
pub fn read_maildir_with(
    dir: &Path,
    max_message_bytes: u64,
) -> Result<MaildirReader, ArchiveError> {
    let open_error = |source| ArchiveError::Open {
        path: dir.to_owned(),
        source,
    };
    std::fs::metadata(dir).map_err(open_error)?;
    let maildir = Maildir::existing(dir).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ArchiveError::NotMaildir {
            path: dir.to_owned(),
        },
        _ => open_error(err),
    })?;
    let entries = maildir.scan().map_err(open_error)?;
    Ok(MaildirReader {
        maildir,
        entries: entries.into_iter(),
        max_message_bytes,
    })
}

/// The messages of one Maildir folder (an iterator; see [`read_maildir`]).
#[derive(Debug)]
pub struct MaildirReader {
    maildir: Maildir,
    entries: std::vec::IntoIter<MaildirEntry>,
    max_message_bytes: u64,
}

impl Iterator for MaildirReader {
    type Item = Result<ArchivedMessage, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        Some(
            self.maildir
                .read(&entry, self.max_message_bytes)
                .map(ArchivedMessage::from)
                .map_err(|source| ArchiveError::MaildirRead {
                    path: entry.path.clone(),
                    source,
                }),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for MaildirReader {}

// ---------------------------------------------------------------- IMAP

/// Every message of an IMAP folder, read without changing it, handed to
/// `sink` in UID order; returns how many were read.
///
/// Uses the `[imap]` settings and connection code as the daemon does (TLS,
/// STARTTLS or plain; LOGIN or XOAUTH2; `command_timeout`;
/// `max_message_bytes`), with `folder` in place of `config.folder`. What is
/// sent: `EXAMINE` (read-only select), `UID SEARCH ALL` (the snapshot read:
/// mail arriving later is not included), then per 500 UIDs `UID FETCH
/// (UID RFC822.SIZE INTERNALDATE)`, then the bodies with `UID FETCH (UID
/// BODY.PEEK[])` in ingest's batches (at most 100 messages, 16 MiB), and
/// `BODY.PEEK[HEADER]` for a message over `max_message_bytes`, which is
/// never downloaded whole and keeps only its header, as in ingest. Never
/// STORE, MOVE, COPY, EXPUNGE or CREATE. Receipt time = INTERNALDATE.
/// A message expunged by another client meanwhile is left out.
///
/// Gives up at the first error, without retrying; to resume a long read
/// after a transient one, use [`ImapFolderReader`] and its
/// [`ImapFolderReader::reconnect`].
#[tracing::instrument(skip_all, fields(stage = "archive", folder = %folder))]
pub async fn read_imap_folder(
    config: &ImapConfig,
    folder: &str,
    mut sink: impl FnMut(ArchivedMessage),
) -> Result<usize, ArchiveError> {
    let mut reader = ImapFolderReader::open(config, folder).await?;
    let mut count = 0;
    while let Some(message) = reader.next_message().await? {
        sink(message);
        count += 1;
    }
    reader.close().await;
    tracing::debug!(count, "IMAP folder read");
    Ok(count)
}

/// An IMAP folder being read, one message at a time (what
/// [`read_imap_folder`] drives; use it directly to await between messages,
/// or to resume after a dropped connection).
#[derive(Debug)]
pub struct ImapFolderReader {
    mailbox: ImapMailbox,
    folder: String,
    uidvalidity: u32,
    max_message_bytes: u64,
    /// The snapshot: every UID the folder held when opened, ascending.
    uids: Vec<u32>,
    /// Index in `uids` of the first UID not yet listed.
    unlisted: usize,
    /// Listed, body not fetched yet.
    listed: VecDeque<MessageInfo>,
    /// Fetched, not handed out yet.
    fetched: VecDeque<FetchedMessage>,
    /// The last UID handed out.
    last_uid: Option<u32>,
}

impl ImapFolderReader {
    /// Connects with the `[imap]` settings, opens `folder` read-only
    /// (`EXAMINE`) and takes the snapshot of its UIDs.
    pub async fn open(config: &ImapConfig, folder: &str) -> Result<ImapFolderReader, ArchiveError> {
        let config = ImapConfig {
            folder: folder.to_owned(),
            ..config.clone()
        };
        let failed = imap_error(folder, None);
        let mut mailbox = ImapMailbox::examine(&config).await.map_err(&failed)?;
        let uids = mailbox.uids().await.map_err(&failed)?;
        Ok(ImapFolderReader {
            uidvalidity: mailbox.folder().uidvalidity,
            max_message_bytes: config.max_message_bytes,
            mailbox,
            folder: folder.to_owned(),
            uids,
            unlisted: 0,
            listed: VecDeque::new(),
            fetched: VecDeque::new(),
            last_uid: None,
        })
    }

    /// How many messages the folder held when opened (the most this reader
    /// hands out).
    pub fn total(&self) -> usize {
        self.uids.len()
    }

    /// The folder's state as last examined (UIDVALIDITY, UIDNEXT, size).
    pub fn folder_state(&self) -> FolderState {
        self.mailbox.folder()
    }

    /// The next message by UID, `None` after the last.
    pub async fn next_message(&mut self) -> Result<Option<ArchivedMessage>, ArchiveError> {
        loop {
            if let Some(message) = self.fetched.pop_front() {
                let raw = self
                    .mailbox
                    .raw_message(&message)
                    .await
                    .map_err(imap_error(&self.folder, Some(message.uid)))?;
                self.last_uid = Some(message.uid);
                return Ok(Some(raw.into()));
            }
            if self.listed.is_empty() {
                let end = (self.unlisted + IMAP_LIST_BATCH).min(self.uids.len());
                if self.unlisted == end {
                    return Ok(None);
                }
                let batch = &self.uids[self.unlisted..end];
                let listed = self
                    .mailbox
                    .list_messages(batch)
                    .await
                    .map_err(imap_error(&self.folder, batch.first().copied()))?;
                self.unlisted = end;
                self.listed = listed.into();
                continue;
            }
            // Bodies in the same batches ingest uses; a message over the
            // limit costs only its header, so it does not count.
            let max = self.max_message_bytes;
            let sizes: Vec<(u32, u64)> = self
                .listed
                .iter()
                .map(|m| (m.uid, if m.size <= max { m.size } else { 0 }))
                .collect();
            let take = super::imap::body_batches(&sizes)
                .first()
                .map_or(self.listed.len(), Vec::len);
            let chunk: Vec<MessageInfo> = self.listed.drain(..take).collect();
            let fetched = self
                .mailbox
                .fetch_messages(&chunk)
                .await
                .map_err(imap_error(&self.folder, chunk.first().map(|m| m.uid)))?;
            self.fetched = fetched.into();
        }
    }

    /// Connects again after a transient error and goes on after the last
    /// message handed out. Fails with [`ArchiveError::UidValidityChanged`]
    /// when the folder was recreated meanwhile: then only a fresh read
    /// means anything.
    pub async fn reconnect(&mut self) -> Result<(), ArchiveError> {
        let state = self
            .mailbox
            .reconnect()
            .await
            .map_err(imap_error(&self.folder, None))?;
        if state.uidvalidity != self.uidvalidity {
            return Err(ArchiveError::UidValidityChanged {
                folder: self.folder.clone(),
                before: self.uidvalidity,
                after: state.uidvalidity,
            });
        }
        self.listed.clear();
        self.fetched.clear();
        self.unlisted = match self.last_uid {
            Some(last) => self.uids.partition_point(|&uid| uid <= last),
            None => 0,
        };
        Ok(())
    }

    /// Logs out. Everything was read already, so a failure here is logged
    /// (at debug) and otherwise ignored: the server drops the session.
    pub async fn close(self) {
        if let Err(err) = self.mailbox.logout().await {
            tracing::debug!(error = %err, "IMAP LOGOUT after reading the folder failed");
        }
    }

    /// The reader as a stream of messages; it ends after the last message
    /// or after the first error (without LOGOUT: dropping the stream closes
    /// the connection).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<ArchivedMessage, ArchiveError>> {
        futures::stream::try_unfold(self, |mut reader| async move {
            Ok(reader
                .next_message()
                .await?
                .map(|message| (message, reader)))
        })
    }
}

fn imap_error(folder: &str, uid: Option<u32>) -> impl Fn(ImapError) -> ArchiveError {
    let folder = folder.to_owned();
    move |source| ArchiveError::Imap {
        folder: folder.clone(),
        uid,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn read(mbox: &[u8], options: MboxOptions) -> Vec<Result<ArchivedMessage, ArchiveError>> {
        MboxReader::new(Cursor::new(mbox.to_vec()), Path::new("test.mbox"), options)
            .unwrap()
            .collect()
    }

    fn read_ok(mbox: &[u8], options: MboxOptions) -> Vec<ArchivedMessage> {
        read(mbox, options)
            .into_iter()
            .map(|m| m.expect("a message"))
            .collect()
    }

    #[test]
    fn from_line_dates_are_read_in_the_forms_writers_use() {
        let cases: [(&str, &str, Option<DateTime<Utc>>); 10] = [
            (
                "asctime with a padded day",
                "From ann@example.com Thu Jun  4 09:12:00 2026\n",
                Some(utc(2026, 6, 4, 9, 12, 0)),
            ),
            (
                "a two-digit day, CRLF",
                "From MAILER-DAEMON Fri Dec 11 23:59:59 2026\r\n",
                Some(utc(2026, 12, 11, 23, 59, 59)),
            ),
            (
                "Gmail's export: zone before the year",
                "From 1505237834587473619@xxx Wed Jun 03 09:40:13 +0000 2026\r\n",
                Some(utc(2026, 6, 3, 9, 40, 13)),
            ),
            (
                "a zone after the year is applied",
                "From a@b Thu Jun  4 11:12:00 2026 +0200\n",
                Some(utc(2026, 6, 4, 9, 12, 0)),
            ),
            (
                "Thunderbird's dash sender",
                "From - Thu Jun  4 09:12:00 2026\n",
                Some(utc(2026, 6, 4, 9, 12, 0)),
            ),
            (
                "UUCP's remote from",
                "From ann Thu Jun  4 09:12 2026 remote from uunet\n",
                Some(utc(2026, 6, 4, 9, 12, 0)),
            ),
            ("no date at all", "From ann@example.com\n", None),
            (
                "a body line that starts like one",
                "From the desk of Ann: June 4 was great\n",
                None,
            ),
            (
                "an impossible date",
                "From a@b Thu Feb 30 09:12:00 2026\n",
                None,
            ),
            (
                "not a From line",
                "Subject: Thu Jun  4 09:12:00 2026\n",
                None,
            ),
        ];
        for (name, line, expected) in cases {
            assert_eq!(from_line_date(line.as_bytes()), expected, "{name}");
        }
    }

    #[test]
    fn mboxrd_removes_one_quote_level_and_mboxo_only_from_single_quotes() {
        let cases = [
            (MboxFormat::Mboxrd, ">From x\n", "From x\n"),
            (MboxFormat::Mboxrd, ">>From x\n", ">From x\n"),
            (MboxFormat::Mboxrd, ">>>From x\n", ">>From x\n"),
            (MboxFormat::Mboxrd, "> From x\n", "> From x\n"),
            (MboxFormat::Mboxrd, ">Fromage\n", ">Fromage\n"),
            (MboxFormat::Mboxo, ">From x\n", "From x\n"),
            (MboxFormat::Mboxo, ">>From x\n", ">>From x\n"),
        ];
        for (format, line, expected) in cases {
            let got = format.unquote(line.as_bytes());
            assert_eq!(got, expected.as_bytes(), "{format:?} {line:?}");
        }
    }

    #[test]
    fn messages_split_at_from_lines_and_lose_only_the_separating_blank_line() {
        let mbox = b"From a Thu Jun  4 09:12:00 2026\nSubject: one\n\nbody one\n\n\
From b Thu Jun  4 10:00:00 2026\nSubject: two\n\nends with a blank line\n\n\n\
From c Thu Jun  4 11:00:00 2026\nSubject: three\n\nno newline at the end";
        let messages = read_ok(mbox, MboxOptions::default());
        let bytes: Vec<&[u8]> = messages.iter().map(|m| m.bytes.as_slice()).collect();
        assert_eq!(
            bytes,
            [
                &b"Subject: one\n\nbody one\n"[..],
                b"Subject: two\n\nends with a blank line\n\n",
                b"Subject: three\n\nno newline at the end",
            ]
        );
        let sources: Vec<&str> = messages.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(
            sources,
            ["mbox:test.mbox:1", "mbox:test.mbox:6", "mbox:test.mbox:12"]
        );
        assert_eq!(messages[2].received_at, utc(2026, 6, 4, 11, 0, 0));
    }

    #[test]
    fn a_from_line_without_the_blank_line_before_it_still_starts_a_message_when_dated() {
        let mbox =
            b"From a Thu Jun  4 09:12:00 2026\nSubject: one\n\nhi\nFrom the desk of Ann\nbye\n\
From b Thu Jun  4 10:00:00 2026\nSubject: two\n\nx\n";
        let messages = read_ok(mbox, MboxOptions::default());
        assert_eq!(messages.len(), 2);
        // An unquoted "From " body line without a date, not after an empty
        // line, stays in the body.
        assert_eq!(
            messages[0].bytes,
            b"Subject: one\n\nhi\nFrom the desk of Ann\nbye\n"
        );
        assert_eq!(messages[1].bytes, b"Subject: two\n\nx\n");
    }

    #[test]
    fn without_a_from_line_date_the_header_gives_the_receipt_time() {
        let mbox = b"From a\nReceived: from x by mx; Thu, 4 Jun 2026 09:00:00 +0000\nDate: Wed, 3 Jun 2026 09:00:00 +0000\n\nx\n\n\
From b\nDate: Wed, 3 Jun 2026 08:00:00 +0000\n\nx\n\n\
From c\nSubject: no date anywhere\n\nx\n\n\
From d Thu Jun  4 12:00:00 2026\nSubject: after the bad one\n\nx\n";
        let results = read(mbox, MboxOptions::default());
        assert_eq!(results.len(), 4);
        assert_eq!(
            results[0].as_ref().unwrap().received_at,
            utc(2026, 6, 4, 9, 0, 0)
        );
        assert_eq!(
            results[1].as_ref().unwrap().received_at,
            utc(2026, 6, 3, 8, 0, 0)
        );
        match &results[2] {
            Err(err @ ArchiveError::NoReceiptTime { line, .. }) => {
                assert_eq!(*line, 12);
                assert!(!err.is_transient());
            }
            other => panic!("expected NoReceiptTime, got {other:?}"),
        }
        assert_eq!(
            results[3].as_ref().unwrap().received_at,
            utc(2026, 6, 4, 12, 0, 0)
        );
    }

    #[test]
    fn a_message_over_the_limit_keeps_its_header_like_ingest() {
        let body = "x".repeat(5000);
        let mbox = format!(
            "From a Thu Jun  4 09:12:00 2026\nSubject: big\nMessage-ID: <big@x>\n\n{body}\n\n\
From b Thu Jun  4 10:00:00 2026\nSubject: small\n\nok\n"
        );
        let options = MboxOptions {
            max_message_bytes: 1000,
            ..MboxOptions::default()
        };
        let messages = read_ok(mbox.as_bytes(), options);
        assert_eq!(messages.len(), 2);
        let full = "Subject: big\nMessage-ID: <big@x>\n\n".len() + body.len() + 1;
        assert_eq!(messages[0].truncated_from, Some(full as u64));
        let stub = String::from_utf8(messages[0].bytes.clone()).unwrap();
        assert!(
            stub.starts_with(&format!(
                "{}: {full}\r\nSubject: big\nMessage-ID: <big@x>",
                super::super::TRUNCATED_HEADER
            )),
            "{stub}"
        );
        assert!(!stub.contains("xxxx"));
        assert_eq!(messages[1].bytes, b"Subject: small\n\nok\n");
        assert_eq!(messages[1].truncated_from, None);
    }

    #[test]
    fn a_message_exactly_at_the_limit_is_kept_whole() {
        let message = "Subject: edge\n\n12345\n";
        let mbox = format!("From a Thu Jun  4 09:12:00 2026\n{message}\n");
        let options = MboxOptions {
            max_message_bytes: message.len() as u64,
            ..MboxOptions::default()
        };
        let messages = read_ok(mbox.as_bytes(), options);
        assert_eq!(messages[0].bytes, message.as_bytes());
        assert_eq!(messages[0].truncated_from, None);
    }

    #[test]
    fn an_empty_file_has_no_messages_and_other_text_is_not_an_mbox() {
        assert!(read(b"", MboxOptions::default()).is_empty());
        assert!(read(b"\n\n", MboxOptions::default()).is_empty());
        let err = MboxReader::new(
            Cursor::new(b"Subject: x\n\nbody\n".to_vec()),
            Path::new("x.eml"),
            MboxOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::NotMbox { .. }), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn a_read_error_ends_the_mbox_with_the_line_it_happened_at() {
        struct FailsAfter(Cursor<Vec<u8>>);
        impl io::Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
                    n => Ok(n),
                }
            }
        }
        let data = b"From a Thu Jun  4 09:12:00 2026\nSubject: x\n".to_vec();
        let reader = BufReader::new(FailsAfter(Cursor::new(data)));
        let results: Vec<_> =
            MboxReader::new(reader, Path::new("net.mbox"), MboxOptions::default())
                .unwrap()
                .collect();
        assert_eq!(results.len(), 1);
        match &results[0] {
            Err(err @ ArchiveError::MboxRead { line, .. }) => {
                assert_eq!(*line, 3);
                assert!(err.is_transient());
            }
            other => panic!("expected MboxRead, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_archive_is_a_permanent_open_error() {
        let err = read_mbox(Path::new("/nonexistent/archive.mbox")).unwrap_err();
        assert!(matches!(err, ArchiveError::Open { .. }), "{err:?}");
        assert!(!err.is_transient());
        let err = read_maildir(Path::new("/nonexistent/Maildir")).unwrap_err();
        assert!(matches!(err, ArchiveError::Open { .. }), "{err:?}");
        let empty = tempfile::tempdir().unwrap();
        let err = read_maildir(empty.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::NotMaildir { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }
}
