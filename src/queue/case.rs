//! The lifecycle's vocabulary: a case's number, its states and who moves
//! it. Stored as text by the store (the migrations' `CHECK` constraints
//! allow exactly these names); nothing here does I/O.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::domain::UnknownName;
use crate::domain::vocabulary as state;

/// A case's number. Customers and reviewers see it as the tag `R-{n}`,
/// which is also its `Display`, `FromStr` and JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseId(pub i64);

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R-{}", self.0)
    }
}

impl FromStr for CaseId {
    type Err = UnknownName;

    /// Accepts `R-12` (any case) or a bare `12`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix("R-")
            .or_else(|| s.strip_prefix("r-"))
            .unwrap_or(s);
        digits
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0 && digits.bytes().all(|b| b.is_ascii_digit()))
            .map(CaseId)
            .ok_or_else(|| UnknownName {
                vocabulary: "case id",
                name: s.to_owned(),
                expected: "a case tag like R-12".into(),
            })
    }
}

impl Serialize for CaseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CaseId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

state! {
    /// Where a case stands in the review queue.
    CaseStatus, "case status" {
        /// Waiting for a person.
        Review => "review",
        /// Waiting for the customer.
        NeedsInfo => "needs_info",
        /// Decided and answered.
        Resolved => "resolved",
        /// Automatic mail, recorded and never answered.
        Ignored => "ignored",
    }
}

/// Who changed a case's status. Stored as `engine`, `customer` or
/// `reviewer:{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The pipeline, deciding by policy.
    Engine,
    /// The customer, by writing again.
    Customer,
    /// A reviewer, by the address they sign in with.
    Reviewer(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Engine => f.write_str("engine"),
            Actor::Customer => f.write_str("customer"),
            Actor::Reviewer(who) => write!(f, "reviewer:{who}"),
        }
    }
}

impl FromStr for Actor {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "engine" => Ok(Actor::Engine),
            "customer" => Ok(Actor::Customer),
            _ => match s.strip_prefix("reviewer:") {
                Some(who) if !who.is_empty() => Ok(Actor::Reviewer(who.to_owned())),
                _ => Err(UnknownName {
                    vocabulary: "actor",
                    name: s.to_owned(),
                    expected: "engine, customer, reviewer:ADDRESS".into(),
                }),
            },
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
