//! Case states, the transitions between them, and reply deadlines.
//!
//! PURE: takes times as arguments, never reads the clock. The store keeps
//! the state; this module says which state a decision leads to and when
//! the customer is owed an answer.

mod deadline;

pub use deadline::BusinessCalendar;

use serde::{Deserialize, Serialize};

use crate::domain::Outcome;

/// Where a case stands. Stored as these snake_case strings (SQL `CHECK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Waiting for a reviewer.
    Review,
    /// Waiting for the customer to tell us more.
    NeedsInfo,
    /// Decided and answered (approved, denied, answered).
    Resolved,
    /// Automatic mail; never answered.
    Ignored,
}

impl CaseStatus {
    /// The stable name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Review => "review",
            CaseStatus::NeedsInfo => "needs_info",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Ignored => "ignored",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<CaseStatus> {
        [CaseStatus::Review, CaseStatus::NeedsInfo, CaseStatus::Resolved, CaseStatus::Ignored]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// The status a decision with this outcome leaves the case in.
    pub const fn after(outcome: Outcome) -> CaseStatus {
        match outcome {
            Outcome::Approved | Outcome::Denied | Outcome::Answered => CaseStatus::Resolved,
            Outcome::Review => CaseStatus::Review,
            Outcome::NeedsInfo => CaseStatus::NeedsInfo,
            Outcome::Ignored => CaseStatus::Ignored,
        }
    }

    /// Whether a person (reviewer or customer) still has to act.
    pub const fn is_open(self) -> bool {
        matches!(self, CaseStatus::Review | CaseStatus::NeedsInfo)
    }
}

impl std::fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_leads_to_the_status_the_queue_expects() {
        let table = [
            (Outcome::Approved, CaseStatus::Resolved),
            (Outcome::Denied, CaseStatus::Resolved),
            (Outcome::Answered, CaseStatus::Resolved),
            (Outcome::Review, CaseStatus::Review),
            (Outcome::NeedsInfo, CaseStatus::NeedsInfo),
            (Outcome::Ignored, CaseStatus::Ignored),
        ];
        for (outcome, status) in table {
            assert_eq!(CaseStatus::after(outcome), status, "{outcome}");
            assert_eq!(CaseStatus::parse(status.as_str()), Some(status));
        }
    }
}
