//! A Maildir folder as a mailbox: `new/` and `cur/` are read in one pass,
//! the receipt time of each message is its file's modification time (what
//! Dovecot uses as INTERNALDATE), and a processed message moves from `new/`
//! to `cur/` with the Seen flag, per the Maildir rules
//! (<https://cr.yp.to/proto/maildir.html>): `cur/NAME:2,FLAGS`.
//!
//! Files are only moved after their case is committed, so a crash between
//! storing and moving re-reads the file on the next pass, where dedupe
//! recognises it.

use chrono::{DateTime, Utc};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{IngestError, RawMessage};

/// One message file found in the Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirEntry {
    pub path: PathBuf,
    /// `new` or `cur`.
    pub subdir: &'static str,
    pub received_at: DateTime<Utc>,
}

/// A Maildir folder (the directory holding `new/`, `cur/`, `tmp/`).
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// A Maildir at `root`; `new/`, `cur/` and `tmp/` are created if missing.
    pub fn open(root: &Path) -> std::io::Result<Maildir> {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Maildir {
            root: root.to_owned(),
        })
    }

    /// A Maildir at `root` that must exist already, opened to be read
    /// only: nothing is created (replay reads archives it never changes).
    pub fn existing(root: &Path) -> std::io::Result<Maildir> {
        for sub in ["new", "cur"] {
            let dir = root.join(sub);
            if !dir.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} is not a Maildir: {} is missing",
                        root.display(),
                        dir.display()
                    ),
                ));
            }
        }
        Ok(Maildir {
            root: root.to_owned(),
        })
    }

    /// The folder's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every message file in `new/` and `cur/`, oldest receipt first (ties by
    /// name), skipping dot files (Maildir clients keep state in them).
    pub fn scan(&self) -> std::io::Result<Vec<MaildirEntry>> {
        let mut entries = Vec::new();
        for subdir in ["new", "cur"] {
            for dirent in std::fs::read_dir(self.root.join(subdir))? {
                let dirent = dirent?;
                if dirent.file_name().to_string_lossy().starts_with('.')
                    || !dirent.file_type()?.is_file()
                {
                    continue;
                }
                let received_at: DateTime<Utc> = dirent.metadata()?.modified()?.into();
                entries.push(MaildirEntry {
                    path: dirent.path(),
                    subdir,
                    received_at,
                });
            }
        }
        entries.sort_by(|a, b| {
            a.received_at
                .cmp(&b.received_at)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(entries)
    }

    /// Reads one entry, at most `max_bytes` of it.
    pub fn read(&self, entry: &MaildirEntry, max_bytes: u64) -> Result<RawMessage, IngestError> {
        let source_name = self.source_name(entry);
        let read = || -> std::io::Result<(Vec<u8>, u64)> {
            let file = std::fs::File::open(&entry.path)?;
            let size = file.metadata()?.len();
            let mut bytes = Vec::with_capacity(size.min(max_bytes) as usize);
            file.take(max_bytes).read_to_end(&mut bytes)?;
            Ok((bytes, size))
        };
        let (bytes, size) = read().map_err(|source| IngestError::Read {
            source_name: source_name.clone(),
            source,
        })?;
        Ok(RawMessage {
            source: source_name,
            full_size: (size > max_bytes).then_some(size),
            bytes,
            received_at: entry.received_at,
        })
    }

    /// Moves a processed message from `new/` to `cur/` and marks it Seen;
    /// a message already in `cur/` only gets the Seen flag. Idempotent.
    pub fn mark_processed(&self, entry: &MaildirEntry) -> std::io::Result<PathBuf> {
        let name = entry
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = self.root.join("cur").join(seen_name(&name));
        if target != entry.path {
            std::fs::rename(&entry.path, &target)?;
        }
        Ok(target)
    }

    fn source_name(&self, entry: &MaildirEntry) -> String {
        let name = entry
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("maildir:{}/{}", entry.subdir, name)
    }
}

/// The file name with the `S` (Seen) flag in its `:2,` info, flags kept
/// sorted as the Maildir spec asks.
fn seen_name(name: &str) -> String {
    match name.split_once(":2,") {
        Some((base, flags)) if flags.contains('S') => format!("{base}:2,{flags}"),
        Some((base, flags)) => {
            let mut f: Vec<char> = flags.chars().chain(['S']).collect();
            f.sort_unstable();
            format!("{base}:2,{}", f.into_iter().collect::<String>())
        }
        None => format!("{name}:2,S"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_flag_is_added_once_and_kept_sorted() {
        let table = [
            ("1700.M1.host", "1700.M1.host:2,S"),
            ("1700.M1.host:2,", "1700.M1.host:2,S"),
            ("1700.M1.host:2,FR", "1700.M1.host:2,FRS"),
            ("1700.M1.host:2,ST", "1700.M1.host:2,ST"),
        ];
        for (name, want) in table {
            assert_eq!(seen_name(name), want);
        }
    }

    #[test]
    fn a_processed_message_moves_from_new_to_cur_and_keeps_its_receipt_time() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        let path = dir.path().join("new/1.eml");
        std::fs::write(&path, b"Subject: x\r\n\r\nbody").unwrap();
        let when =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();

        let entries = maildir.scan().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].received_at.timestamp(), 1_780_000_000);
        let raw = maildir.read(&entries[0], 1024).unwrap();
        assert_eq!(raw.source, "maildir:new/1.eml");
        assert_eq!(raw.full_size, None);

        let moved = maildir.mark_processed(&entries[0]).unwrap();
        assert_eq!(moved, dir.path().join("cur/1.eml:2,S"));
        assert!(!path.exists());
        let again = maildir.scan().unwrap();
        assert_eq!(again[0].subdir, "cur");
        assert_eq!(maildir.mark_processed(&again[0]).unwrap(), moved);
    }

    #[test]
    fn a_message_over_the_limit_is_read_only_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("new/big"), vec![b'x'; 4096]).unwrap();
        let entry = &maildir.scan().unwrap()[0];
        let raw = maildir.read(entry, 1000).unwrap();
        assert_eq!(raw.bytes.len(), 1000);
        assert_eq!(raw.full_size, Some(4096));
    }
}
