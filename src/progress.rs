//! Progress of long commands (`refundd replay`, `refundd ledger import`)
//! on standard error: how much is done, the rate and the time left.
//!
//! Takes what is being done and counts from the work ([`Progress::begin`],
//! [`Progress::update`]); gives, on a
//! terminal, one line redrawn in place with `\r` (at most ten times a
//! second) and, when standard error is a file or a pipe (a log, CI), a
//! plain line every ten seconds. Never writes to standard output (which
//! stays parseable: `--json`, `--csv`) and never fails: a progress line
//! that cannot be written is dropped.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Something that shows how far a long piece of work is.
pub trait Progress: Send + Sync {
    /// A piece of work begins (`replay`, `deciding the archive`): `total`
    /// units when known. The rate is counted from here.
    fn begin(&self, what: &str, total: Option<u64>);
    /// `done` units of the current piece are finished.
    fn update(&self, done: u64);
    /// The piece is over: a redrawn line is ended.
    fn finish(&self);
}

/// Shows nothing (tests, the web console).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    fn update(&self, _done: u64) {}
    fn finish(&self) {}
}

/// Progress on standard error: redrawn on a terminal, periodic lines
/// otherwise.
#[derive(Debug)]
pub struct StderrProgress {
    unit: String,
    terminal: bool,
    state: Mutex<Shown>,
}

#[derive(Debug)]
struct Shown {
    what: String,
    started: Instant,
    last: Option<Instant>,
    done: u64,
    /// What the last line written said (`done`), so that the closing line
    /// is not a repeat.
    written: Option<u64>,
    total: Option<u64>,
}

/// How often a terminal line is redrawn, at most.
const REDRAW: Duration = Duration::from_millis(100);
/// How often a plain line is written when standard error is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl StderrProgress {
    /// Progress counted in `unit`s (`messages`, `lines`).
    pub fn new(unit: &str) -> StderrProgress {
        StderrProgress {
            unit: unit.to_owned(),
            terminal: std::io::stderr().is_terminal(),
            state: Mutex::new(Shown {
                what: String::new(),
                started: Instant::now(),
                last: None,
                done: 0,
                written: None,
                total: None,
            }),
        }
    }
}

impl Progress for StderrProgress {
    fn begin(&self, what: &str, total: Option<u64>) {
        let Ok(mut shown) = self.state.lock() else {
            return;
        };
        *shown = Shown {
            what: what.to_owned(),
            started: Instant::now(),
            last: None,
            done: 0,
            written: None,
            total,
        };
    }

    fn update(&self, done: u64) {
        let Ok(mut shown) = self.state.lock() else {
            return;
        };
        shown.done = done;
        let now = Instant::now();
        let every = if self.terminal { REDRAW } else { PLAIN_EVERY };
        let due = shown
            .last
            .is_none_or(|last| now.duration_since(last) >= every);
        if !due {
            return;
        }
        shown.last = Some(now);
        shown.written = Some(done);
        let text = line(
            &shown.what,
            &self.unit,
            done,
            shown.total,
            now.duration_since(shown.started),
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            // Clear to the end of the line: the new text may be shorter.
            write!(err, "\r{text}\x1b[K")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
    }

    fn finish(&self) {
        let Ok(mut shown) = self.state.lock() else {
            return;
        };
        if !self.terminal && shown.written == Some(shown.done) {
            return;
        }
        shown.written = Some(shown.done);
        let text = line(
            &shown.what,
            &self.unit,
            shown.done,
            shown.total,
            shown.started.elapsed(),
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            writeln!(err, "\r{text}\x1b[K")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
    }
}

/// One progress line: `replay: 41,200 of 100,000 messages (41%), 8,230/s,
/// 7s left`. PURE.
pub fn line(what: &str, unit: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut text = format!("{what}: {}", grouped(done));
    match total {
        Some(total) if total > 0 => {
            let percent = (done.min(total) * 100) / total;
            text.push_str(&format!(" of {} {unit} ({percent}%)", grouped(total)));
        }
        _ => text.push_str(&format!(" {unit}")),
    }
    text.push_str(&format!(", {}/s", grouped(rate.round() as u64)));
    match total {
        Some(total) if done < total && rate > 0.0 => {
            let left = (total - done) as f64 / rate;
            text.push_str(&format!(", {} left", duration(left)));
        }
        Some(_) if done > 0 => text.push_str(&format!(", done in {}", duration(secs))),
        _ => text.push_str(&format!(", {} so far", duration(secs))),
    }
    text
}

/// `1234567` -> `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `42s`, `3m 05s` or `1h 02m`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_how_far_how_fast_and_how_long_is_left() {
        let text = line(
            "replay",
            "messages",
            41_200,
            Some(100_000),
            Duration::from_secs(5),
        );
        assert_eq!(
            text,
            "replay: 41,200 of 100,000 messages (41%), 8,240/s, 7s left"
        );
    }

    #[test]
    fn without_a_total_the_line_counts_and_says_how_long_so_far() {
        let text = line(
            "ledger import",
            "lines",
            1_500_000,
            None,
            Duration::from_secs(150),
        );
        assert_eq!(
            text,
            "ledger import: 1,500,000 lines, 10,000/s, 2m 30s so far"
        );
    }

    #[test]
    fn a_finished_line_says_how_long_it_took() {
        let text = line(
            "replay",
            "messages",
            10,
            Some(10),
            Duration::from_secs(4000),
        );
        assert_eq!(
            text,
            "replay: 10 of 10 messages (100%), 0/s, done in 1h 06m"
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(grouped(n), want);
        }
    }
}
