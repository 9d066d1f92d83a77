//! Where reading the folder resumes: the pair (UIDVALIDITY, last UID seen)
//! and the pure decision of what to scan next. Takes the stored cursor and
//! the UIDVALIDITY the server reports on SELECT; gives a [`ScanPlan`].
//! Never talks to the server or the database (the caller keeps the cursor
//! in the store's `mailbox_cursors` table) and cannot fail.
//!
//! UIDs are only meaningful together with UIDVALIDITY (RFC 3501 §2.3.1.1):
//! when it changes, every old UID is void and the folder is read again from
//! the start. Messages already stored come back as duplicates, which the
//! store recognises by Message-ID and content hash.

/// The last position read in one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapCursor {
    /// The folder's UIDVALIDITY when `last_uid` was read.
    pub uidvalidity: u32,
    /// The highest UID already stored (0: none yet).
    pub last_uid: u32,
}

impl ImapCursor {
    /// The cursor after storing the message with `uid` (never moves back).
    pub fn advanced_to(self, uid: u32) -> ImapCursor {
        ImapCursor {
            uidvalidity: self.uidvalidity,
            last_uid: self.last_uid.max(uid),
        }
    }
}

/// What to read from the folder on this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanPlan {
    /// No cursor yet: read the whole folder.
    Start {
        /// The cursor to store as messages are read.
        cursor: ImapCursor,
    },
    /// Same UIDVALIDITY: read the UIDs after `cursor.last_uid`.
    Resume {
        /// The stored cursor, unchanged.
        cursor: ImapCursor,
    },
    /// The UIDVALIDITY changed: old UIDs mean nothing now; read the whole
    /// folder again and let the store drop duplicates.
    Rescan {
        /// The UIDVALIDITY the stored cursor had.
        previous_uidvalidity: u32,
        /// The fresh cursor to store as messages are read.
        cursor: ImapCursor,
    },
}

impl ScanPlan {
    /// The cursor to fetch after (`fetch_since(plan.cursor().last_uid)`) and
    /// to advance as messages are stored.
    pub fn cursor(&self) -> ImapCursor {
        match *self {
            ScanPlan::Start { cursor }
            | ScanPlan::Resume { cursor }
            | ScanPlan::Rescan { cursor, .. } => cursor,
        }
    }
}

/// Decides what to read, from the stored cursor and the folder's current
/// UIDVALIDITY.
pub fn plan(stored: Option<ImapCursor>, server_uidvalidity: u32) -> ScanPlan {
    let fresh = ImapCursor {
        uidvalidity: server_uidvalidity,
        last_uid: 0,
    };
    match stored {
        None => ScanPlan::Start { cursor: fresh },
        Some(cursor) if cursor.uidvalidity == server_uidvalidity => ScanPlan::Resume { cursor },
        Some(cursor) => ScanPlan::Rescan {
            previous_uidvalidity: cursor.uidvalidity,
            cursor: fresh,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(uidvalidity: u32, last_uid: u32) -> ImapCursor {
        ImapCursor {
            uidvalidity,
            last_uid,
        }
    }

    #[test]
    fn the_plan_follows_the_stored_cursor_and_uidvalidity() {
        let cases = [
            (
                "no cursor reads everything",
                None,
                7,
                ScanPlan::Start {
                    cursor: cursor(7, 0),
                },
            ),
            (
                "same uidvalidity resumes after the last uid",
                Some(cursor(7, 42)),
                7,
                ScanPlan::Resume {
                    cursor: cursor(7, 42),
                },
            ),
            (
                "a changed uidvalidity rescans from uid 1",
                Some(cursor(7, 42)),
                8,
                ScanPlan::Rescan {
                    previous_uidvalidity: 7,
                    cursor: cursor(8, 0),
                },
            ),
            (
                "a smaller uidvalidity is a change too",
                Some(cursor(9, 42)),
                8,
                ScanPlan::Rescan {
                    previous_uidvalidity: 9,
                    cursor: cursor(8, 0),
                },
            ),
        ];
        for (name, stored, server, expected) in cases {
            assert_eq!(plan(stored, server), expected, "{name}");
        }
    }

    #[test]
    fn the_rescan_cursor_starts_before_uid_1() {
        assert_eq!(plan(Some(cursor(1, 500)), 2).cursor().last_uid, 0);
    }

    #[test]
    fn a_cursor_never_moves_back() {
        assert_eq!(cursor(3, 10).advanced_to(12), cursor(3, 12));
        assert_eq!(cursor(3, 10).advanced_to(4), cursor(3, 10));
    }
}
