//! What a case knows across its messages, and the case tag in subjects.

use regex::Regex;
use std::sync::LazyLock;

use crate::domain::{Category, MessageFacts};

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
