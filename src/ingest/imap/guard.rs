//! A guard between the connection and async-imap that keeps one bad
//! untagged line from killing the session. Takes the byte stream; gives the
//! same bytes, minus any complete untagged response line that the IMAP
//! parser cannot read, which it keeps (as text) for the mailbox to log.
//! Never changes tagged lines, continuation requests or literals, and never
//! fails on its own: io errors of the stream pass through.
//!
//! Why: async-imap treats a response it cannot parse as a broken stream and
//! closes the session. GNU Mailutils imap4d answers `EXPUNGE` with
//! `* 1 EXPUNGED`, which is no IMAP response (RFC 3501 §7.4.1 says
//! `EXPUNGE`); the command itself completes with a tagged `OK`. An untagged
//! line is data the server volunteers, so one that cannot be read can be
//! skipped: the tagged completion still says whether the command worked.
//! A response carrying a literal (`{n}`, e.g. a message body) is passed on
//! unread: the guard only tracks its length to know where it ends.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The untagged lines the guard left out, in arrival order, as text.
pub type SkippedLines = Arc<Mutex<Vec<String>>>;

/// Bytes read from the server per read call while looking for a line end.
const READ_CHUNK: usize = 16 * 1024;

/// A skipped line is kept up to this many bytes (enough for any diagnosis).
const KEEP_BYTES: usize = 300;

/// The byte stream with unparsable untagged lines taken out.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// Bytes read from `inner` and not yet classified.
    pending: Vec<u8>,
    /// Classified bytes waiting to be read, from `ready_at` on.
    ready: Vec<u8>,
    ready_at: usize,
    /// Bytes of a literal still to pass through unread.
    literal_left: usize,
    /// Whether the next line starts a response (not the rest of one after
    /// a literal).
    at_response_start: bool,
    skipped: SkippedLines,
}

impl<S> Guarded<S> {
    /// Wraps `inner`; skipped lines are appended to `skipped`.
    pub fn new(inner: S, skipped: SkippedLines) -> Guarded<S> {
        Guarded {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            literal_left: 0,
            at_response_start: true,
            skipped,
        }
    }

    /// The wrapped stream (e.g. to upgrade it with STARTTLS). Bytes the
    /// guard read but did not yet hand on are dropped: call it only between
    /// complete responses.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Classifies what `pending` holds, moving whole lines and literal
    /// bytes to `ready`; returns when it needs more input.
    fn classify(&mut self) {
        loop {
            if self.literal_left > 0 {
                let n = self.literal_left.min(self.pending.len());
                if n == 0 {
                    return;
                }
                self.ready.extend(self.pending.drain(..n));
                self.literal_left -= n;
                continue;
            }
            let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(size) = literal_size(&line) {
                self.literal_left = size;
                self.at_response_start = false;
                self.ready.extend_from_slice(&line);
                continue;
            }
            let starts_response = std::mem::replace(&mut self.at_response_start, true);
            if starts_response && line.starts_with(b"* ") && !parses(&line) {
                let kept = &line[..line.len().min(KEEP_BYTES)];
                let text = String::from_utf8_lossy(kept).trim_end().to_owned();
                if let Ok(mut skipped) = self.skipped.lock() {
                    skipped.push(text);
                }
                continue;
            }
            self.ready.extend_from_slice(&line);
        }
    }
}

/// The size of the literal a line announces at its end (`{n}` or `{n+}`
/// before CRLF, RFC 3501 §4.3 and RFC 7888), if it does.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the IMAP parser async-imap uses reads this complete line.
fn parses(line: &[u8]) -> bool {
    use async_imap::imap_proto::Response;
    match Response::parse(line) {
        Ok(_) => true,
        Err(err) => err.is_incomplete(),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // Inside a literal with nothing buffered: hand the bytes on as
            // they come, without looking for lines in a message body.
            if this.literal_left > 0 && this.pending.is_empty() {
                let mut chunk = [0u8; READ_CHUNK];
                let limit = this.literal_left.min(buf.remaining()).min(READ_CHUNK);
                let mut read = ReadBuf::new(&mut chunk[..limit]);
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                let filled = read.filled();
                if filled.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                buf.put_slice(filled);
                this.literal_left -= filled.len();
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let filled = read.filled();
            if filled.is_empty() {
                // End of stream: hand on whatever is left, unclassified.
                let rest = std::mem::take(&mut this.pending);
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready.extend(rest);
                continue;
            }
            this.pending.extend_from_slice(filled);
            this.classify();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn through_guard(input: &[u8]) -> (Vec<u8>, Vec<String>) {
        let skipped = SkippedLines::default();
        let mut guarded = Guarded::new(input, skipped.clone());
        let mut out = Vec::new();
        guarded.read_to_end(&mut out).await.unwrap();
        let lines = skipped.lock().unwrap().clone();
        (out, lines)
    }

    #[tokio::test]
    async fn the_mailutils_expunged_line_is_skipped_and_kept_for_the_log() {
        let input = b"* 1 EXPUNGED\r\n* 0 EXISTS\r\na3 OK EXPUNGE Completed\r\n";
        let (out, skipped) = through_guard(input).await;
        assert_eq!(out, b"* 0 EXISTS\r\na3 OK EXPUNGE Completed\r\n");
        assert_eq!(skipped, ["* 1 EXPUNGED"]);
    }

    #[tokio::test]
    async fn literals_pass_unread_even_when_they_hold_lines_that_look_broken() {
        let body = b"* 1 EXPUNGED\r\nnot imap at all\r\n";
        let mut input = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b")\r\na1 OK done\r\n");
        let (out, skipped) = through_guard(&input).await;
        assert_eq!(out, input);
        assert!(skipped.is_empty());
    }

    #[tokio::test]
    async fn tagged_and_continuation_lines_are_never_touched() {
        let input = b"+ idling\r\na1 NO [THROTTLED] slow down\r\n* OK still here\r\n";
        let (out, skipped) = through_guard(input).await;
        assert_eq!(out, input);
        assert!(skipped.is_empty());
    }

    #[test]
    fn literal_sizes_are_read_from_the_line_end() {
        let cases: [(&[u8], Option<usize>); 5] = [
            (b"* 1 FETCH (BODY[] {12}\r\n", Some(12)),
            (b"a APPEND x {5+}\r\n", Some(5)),
            (b"* OK no literal\r\n", None),
            (b"* OK {x}\r\n", None),
            (b"* OK {}\r\n", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                literal_size(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
