//! The stable vocabularies of POLICY.md: outcome, category, flag and clause.

/// A name that is not part of a vocabulary (e.g. `--outcome aproved`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {vocabulary} `{name}`; expected one of: {expected}")]
pub struct UnknownName {
    /// Which vocabulary was asked (`outcome`, `category`, …).
    pub vocabulary: &'static str,
    /// What was given.
    pub name: String,
    /// The valid names, comma separated.
    pub expected: String,
}

/// Declares a vocabulary enum whose serde, `Display` and `FromStr` forms are
/// all the same fixed string, so the contract lives in one place. Also used
/// by the store for its states (the strings its `CHECK` constraints allow).
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $vocab:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name of this value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownName {
                        vocabulary: $vocab,
                        name: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use vocabulary;

vocabulary! {
    /// What the engine (or a reviewer) decided about a case.
    Outcome, "outcome" {
        /// The request is granted; the decision carries the actions.
        Approved => "approved",
        /// The request is refused under a policy clause.
        Denied => "denied",
        /// A person must decide.
        Review => "review",
        /// The customer must tell us more (order ID, result, address).
        NeedsInfo => "needs_info",
        /// Nothing to do but explain (already refunded, moderation block).
        Answered => "answered",
        /// Auto-replies, bounces, loops: recorded, never answered.
        Ignored => "ignored",
    }
}

vocabulary! {
    /// What the customer asks for, one per message.
    Category, "category" {
        /// Money back for a credit pack (P2/P4).
        CashRefund => "cash_refund",
        /// A generation failed and its credits should come back (P1).
        FailedGeneration => "failed_generation",
        /// The avatar does not resemble the customer (P3).
        NoResemblance => "no_resemblance",
        /// The delivered style is not the one picked (P3).
        WrongStyle => "wrong_style",
        /// Broken or glitched anatomy (P3).
        BrokenAnatomy => "broken_anatomy",
        /// The output violates the content guidelines (P3, always review).
        ContentViolation => "content_violation",
        /// The customer just does not like it (P4).
        Subjective => "subjective",
        /// An upload was blocked by moderation (P4).
        ModerationBlock => "moderation_block",
        /// Anything else.
        Other => "other",
    }
}

impl Category {
    /// The P3 complaints that earn a courtesy credit within the cap.
    pub const fn is_courtesy_complaint(self) -> bool {
        matches!(
            self,
            Category::NoResemblance | Category::WrongStyle | Category::BrokenAnatomy
        )
    }
}

vocabulary! {
    /// Facts worth a reviewer's attention; a decision carries any number.
    Flag, "flag" {
        /// The customer mentions a chargeback or bank dispute, or one is open.
        Chargeback => "chargeback",
        /// The customer invokes consumer-protection law (P7).
        StatutoryRights => "statutory_rights",
        /// The wallet shows a refund-abuse pattern (P4).
        AbusePattern => "abuse_pattern",
        /// The sender's address is not authenticated (AUTH).
        SenderUnverified => "sender_unverified",
        /// The cited order belongs to another wallet (ID).
        SenderMismatch => "sender_mismatch",
        /// A courtesy credit was granted within the cap window (P4).
        CourtesyCap => "courtesy_cap",
        /// The wallet is terminated (P4).
        Terminated => "terminated",
        /// The wallet is suspended (P6).
        Suspended => "suspended",
        /// The message is an automatic reply (RFC 3834).
        AutoReply => "auto_reply",
        /// The message is a bounce / delivery status notification.
        Bounce => "bounce",
        /// The message was delivered before.
        Duplicate => "duplicate",
    }
}

vocabulary! {
    /// The clause ids of POLICY.md that decisions, templates and tests cite.
    Clause, "clause" {
        /// Failed generations are credited back.
        P1 => "P1",
        /// Unused / partly used packs within 14 days.
        P2 => "P2",
        /// Courtesy credits for successful generations.
        P3 => "P3",
        /// Not refundable.
        P4 => "P4",
        /// How to request (evidence, reply target).
        P5 => "P5",
        /// Chargebacks.
        P6 => "P6",
        /// Statutory rights.
        P7 => "P7",
        /// Identifying the wallet and the order.
        Id => "ID",
        /// Sender authentication gate.
        Auth => "AUTH",
        /// Screening of automatic mail (auto-replies, bounces, loops); not a
        /// policy clause but named so every decision has a trace.
        Screen => "SCREEN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_serialize_to_policy_names() {
        assert_eq!(
            serde_json::to_string(&Outcome::NeedsInfo).unwrap(),
            "\"needs_info\""
        );
        assert_eq!(
            serde_json::to_string(&Category::CashRefund).unwrap(),
            "\"cash_refund\""
        );
        assert_eq!(
            serde_json::to_string(&Flag::SenderUnverified).unwrap(),
            "\"sender_unverified\""
        );
        assert_eq!(serde_json::to_string(&Clause::Auth).unwrap(), "\"AUTH\"");
    }

    #[test]
    fn every_name_parses_back_to_its_value() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), *o);
        }
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), *c);
        }
        for f in Flag::ALL {
            assert_eq!(f.as_str().parse::<Flag>().unwrap(), *f);
        }
    }

    #[test]
    fn an_unknown_name_says_what_was_expected() {
        let err = "aproved".parse::<Outcome>().unwrap_err();
        assert!(err.to_string().contains("approved, denied"));
    }
}
