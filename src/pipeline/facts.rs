//! What a stored message says and what a case knows across its messages,
//! and the case tag in subjects.
//!
//! [`FactsReader`] is the one way from stored bytes to the facts the policy
//! reads — of one message (parse, extract, screen) and of a case up to a
//! message (its earlier messages merged in). The pipeline decides with it
//! and replay decides again with it, so a message reads the same both
//! times. Never does I/O: the caller brings the bytes.

use chrono::{DateTime, Utc};
use regex::Regex;
use std::sync::LazyLock;

use crate::config::Settings;
use crate::domain::{Category, MessageFacts};
use crate::extract::{ExtractError, Extractor};
use crate::parse::{self, ParseError, ParsedEmail};
use crate::screen;

static CASE_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[#R-(\d{1,18})\]").expect("valid regex"));

/// The case number in a subject's case tag (`[#R-1042]` -> 1042); the last
/// tag wins when a subject carries several (each reply appends none, but
/// customers forward).
pub fn case_tag(subject: &str) -> Option<i64> {
    CASE_TAG
        .captures_iter(subject)
        .last()
        .and_then(|c| c[1].parse().ok())
}

/// Reads the facts of stored messages with one deciding configuration
/// (`[extract]`, `[sender_auth]`, and `[reply] from` for mail loops).
/// Built once; cheap to clone and to share between threads.
#[derive(Debug, Clone)]
pub struct FactsReader {
    extractor: Extractor,
    own_addresses: Vec<String>,
}

impl FactsReader {
    /// Compiles the extraction rules of `settings`.
    pub fn new(settings: &Settings) -> Result<FactsReader, ExtractError> {
        Ok(FactsReader {
            extractor: Extractor::new(&settings.extract, &settings.sender_auth)?,
            own_addresses: vec![settings.reply.from.to_lowercase()],
        })
    }

    /// The facts of one stored message: parsed, extracted, and screened
    /// for automatic mail. Fails only when the bytes are not mail.
    pub fn message(
        &self,
        raw: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<(ParsedEmail, MessageFacts), ParseError> {
        self.message_verified(raw, received_at, None)
    }

    /// [`message`](Self::message), with the sender verification the
    /// pipeline did before extraction (`[sender_auth] mode` `verify` or
    /// `either`).
    pub fn message_verified(
        &self,
        raw: &[u8],
        received_at: DateTime<Utc>,
        verified: Option<&crate::domain::Verification>,
    ) -> Result<(ParsedEmail, MessageFacts), ParseError> {
        let parsed = parse::parse(raw)?;
        let mut facts = self
            .extractor
            .extract_verified(&parsed, received_at, verified);
        facts.auto = screen::screen(&parsed, &self.own_addresses);
        Ok((parsed, facts))
    }

    /// The facts of a case up to a message: `latest` (that message's
    /// facts) completed by the case's `earlier` messages, as stored
    /// (bytes and receipt time, oldest first); see [`merge_case_facts`].
    /// An earlier message that is not mail adds nothing.
    pub fn case<'a>(
        &self,
        earlier: impl IntoIterator<Item = (&'a [u8], DateTime<Utc>)>,
        latest: MessageFacts,
    ) -> MessageFacts {
        let earlier: Vec<MessageFacts> = earlier
            .into_iter()
            .filter_map(|(raw, received_at)| {
                parse::parse(raw)
                    .ok()
                    .map(|p| self.extractor.extract(&p, received_at))
            })
            .collect();
        merge_case_facts(&earlier, latest)
    }
}

/// Facts of a case: the latest message's, completed by earlier ones.
///
/// - order and generation references: the latest first, then earlier ones;
/// - evidence and flags: anything any message showed;
/// - category: the latest message's, unless it says nothing recognisable
///   ("here is my order ID") — then the latest earlier real request;
/// - receipt time: the FIRST message's, so windows are measured to when the
///   customer first asked;
/// - authentication and language: the latest message's.
pub fn merge_case_facts(earlier: &[MessageFacts], latest: MessageFacts) -> MessageFacts {
    let mut merged = latest;
    for facts in earlier.iter().rev() {
        for r in &facts.order_refs {
            if !merged.order_refs.contains(r) {
                merged.order_refs.push(r.clone());
            }
        }
        for g in &facts.generation_refs {
            if !merged.generation_refs.contains(g) {
                merged.generation_refs.push(g.clone());
            }
        }
        merged.evidence.image_attachment |= facts.evidence.image_attachment;
        merged.evidence.result_link |= facts.evidence.result_link;
        merged.flags.extend(facts.flags.iter().copied());
        if merged.category == Category::Other {
            merged.category = facts.category;
        }
    }
    if let Some(first) = earlier.iter().map(|f| f.received_at).min() {
        merged.received_at = merged.received_at.min(first);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Flag, OrderRef};
    use chrono::{TimeZone, Utc};

    fn facts(category: Category, day: u32) -> MessageFacts {
        MessageFacts {
            message_id: None,
            from: "ann@example.com".into(),
            from_name: None,
            subject: String::new(),
            received_at: Utc.with_ymd_and_hms(2026, 6, day, 12, 0, 0).unwrap(),
            language: Default::default(),
            order_refs: vec![],
            generation_refs: vec![],
            evidence: Default::default(),
            category,
            flags: Default::default(),
            auth: Default::default(),
            auto: None,
        }
    }

    #[test]
    fn case_tags_are_found_anywhere_in_the_subject() {
        assert_eq!(case_tag("Re: Refund please [#R-1042]"), Some(1042));
        assert_eq!(case_tag("AW: [#R-7] Rückerstattung"), Some(7));
        assert_eq!(case_tag("Fwd: [#R-7] Re: [#R-9]"), Some(9));
        assert_eq!(case_tag("R-1042"), None);
        assert_eq!(case_tag("[#R-]"), None);
    }

    #[test]
    fn a_follow_up_with_only_an_order_id_keeps_the_original_request() {
        let mut first = facts(Category::CashRefund, 13);
        first.flags.insert(Flag::StatutoryRights);
        let mut second = facts(Category::Other, 15);
        second
            .order_refs
            .push(OrderRef::Invoice("ANUMI-0001".into()));

        let merged = merge_case_facts(&[first.clone()], second);
        assert_eq!(merged.category, Category::CashRefund);
        assert_eq!(
            merged.order_refs,
            vec![OrderRef::Invoice("ANUMI-0001".into())]
        );
        assert!(merged.flags.contains(&Flag::StatutoryRights));
        assert_eq!(
            merged.received_at, first.received_at,
            "windows measure to the first request"
        );
    }

    #[test]
    fn the_latest_request_wins_over_an_earlier_one() {
        let merged = merge_case_facts(
            &[facts(Category::CashRefund, 1)],
            facts(Category::NoResemblance, 2),
        );
        assert_eq!(merged.category, Category::NoResemblance);
    }
}
