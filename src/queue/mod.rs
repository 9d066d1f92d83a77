//! Case states, the transitions between them and reply deadlines. PURE.
//!
//! - states: [`CaseStatus`], [`CaseId`], [`Actor`], [`status_after`],
//!   [`is_open`];
//! - moves: [`lifecycle`] — the one table of allowed transitions and the
//!   one builder of a [`Transition`](lifecycle::Transition), which the
//!   store applies atomically;
//! - deadlines: [`BusinessCalendar`] (zone, working days and hours,
//!   holidays; [`config`] and [`holidays`] read it from the settings).
//!
//! Never reads the clock and never touches the store: every time is an
//! argument. The store keeps the state; this module says which moves are
//! allowed, which state a decision leads to and when the customer is owed
//! an answer.

mod case;
pub mod config;
mod deadline;
pub mod holidays;
pub mod lifecycle;

pub use case::{Actor, CaseId, CaseStatus};
pub use deadline::{BusinessCalendar, MONDAY_TO_FRIDAY, WorkingHours, WorkingHoursError};
pub use lifecycle::{CaseState, Lifecycle, Transition};

use crate::domain::Outcome;

/// The status a decision with this outcome leaves the case in.
pub const fn status_after(outcome: Outcome) -> CaseStatus {
    match outcome {
        Outcome::Approved | Outcome::Denied | Outcome::Answered => CaseStatus::Resolved,
        Outcome::Review => CaseStatus::Review,
        Outcome::NeedsInfo => CaseStatus::NeedsInfo,
        Outcome::Ignored => CaseStatus::Ignored,
    }
}

/// Whether a person (reviewer or customer) still has to act on a case in
/// this status: the case is in the queue and has a deadline.
pub const fn is_open(status: CaseStatus) -> bool {
    matches!(status, CaseStatus::Review | CaseStatus::NeedsInfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_leads_to_the_status_the_queue_expects() {
        let table = [
            (Outcome::Approved, CaseStatus::Resolved, false),
            (Outcome::Denied, CaseStatus::Resolved, false),
            (Outcome::Answered, CaseStatus::Resolved, false),
            (Outcome::Review, CaseStatus::Review, true),
            (Outcome::NeedsInfo, CaseStatus::NeedsInfo, true),
            (Outcome::Ignored, CaseStatus::Ignored, false),
        ];
        for (outcome, status, open) in table {
            assert_eq!(status_after(outcome), status, "{outcome}");
            assert_eq!(is_open(status), open, "{outcome}");
        }
    }
}
