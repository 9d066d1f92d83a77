//! Intent: one category and the text flags (`chargeback`,
//! `statutory_rights`) of a message, scored with the rules data file
//! (`intent_rules.toml`, embedded; or `[extract] rules_file`).
//!
//! - Takes: folded text (see `fold`) of the subject and the customer's
//!   fresh words only; quoted replies and signatures never reach it.
//! - Gives: an [`Intent`]: the category with the highest score (ties go to
//!   the category listed first in `category_priority`; no category at its
//!   `min_score` -> `other`), the flags at their `min_score`, and every
//!   score (for the reviewer trace and tests).
//! - Fails: at load time only, with an [`ExtractError`] naming the file and
//!   the rule; scoring never fails.
//!
//! Scoring. Each `[[rules]]` group gives a target (a category or a text
//! flag), a language label, a weight and patterns. A pattern is a regex
//! matched as whole words (wrapped in `\b(?:…)\b`), case-insensitive, on
//! folded text (ASCII semantics: `\w` is `[0-9A-Za-z_]`); accented letters
//! in patterns are folded like the text, so write them outside `[…]`.
//! Every rule applies to every message whatever its language (customers
//! mix languages); `lang` documents and groups. A pattern counts once per
//! message however often it matches, and a match overlapping a match of
//! an already counted heavier (or equal) pattern of the same target adds
//! nothing, so "refund my order" is not also counted as "refund".
//!
//! Negation. A `[[negations]]` match cancels a match of the same target
//! that it overlaps or that starts at most `negation_window` bytes after it
//! ends ("not a chargeback", "I don't want a refund"). Negations apply to
//! the targets they name only.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use regex::bytes::{Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::ExtractError;
use super::fold::fold_pattern;
use crate::domain::{Category, Flag};

/// The shipped rules.
/// The shipped intent rules (`src/extract/intent_rules.toml`).
pub const BUILT_IN: &str = include_str!("intent_rules.toml");

/// How the shipped rules are named in errors.
pub const BUILT_IN_ORIGIN: &str = "built-in src/extract/intent_rules.toml";

/// `min_score` of targets the file does not list.
pub const DEFAULT_MIN_SCORE: u32 = 2;

/// The languages a rule may be labelled with.
const LANGUAGES: &[&str] = &["en", "de", "fr", "es"];

/// The flags read from text; the others come from the ledger or screening.
const TEXT_FLAGS: &[Flag] = &[Flag::Chargeback, Flag::StatutoryRights];

/// What a rule scores for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Category(Category),
    Flag(Flag),
}

impl Target {
    fn parse(name: &str) -> Option<Target> {
        if let Ok(category) = name.parse::<Category>() {
            return (category != Category::Other).then_some(Target::Category(category));
        }
        let flag = name.parse::<Flag>().ok()?;
        TEXT_FLAGS.contains(&flag).then_some(Target::Flag(flag))
    }
}

/// The intent read from one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub category: Category,
    pub flags: BTreeSet<Flag>,
    /// Score of every target that matched at all.
    pub scores: BTreeMap<Target, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    category_priority: Vec<String>,
    #[serde(default = "default_window")]
    negation_window: usize,
    #[serde(default)]
    min_score: BTreeMap<String, u32>,
    #[serde(default)]
    rules: Vec<RuleGroup>,
    #[serde(default)]
    negations: Vec<NegationGroup>,
}

fn default_window() -> usize {
    8
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    target: String,
    lang: String,
    weight: u32,
    patterns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NegationGroup {
    targets: Vec<String>,
    lang: String,
    patterns: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    target: Target,
    weight: u32,
    regex: Regex,
}

#[derive(Debug, Clone)]
struct Negation {
    targets: Vec<Target>,
    regex: Regex,
}

/// Compiled intent rules; built once, shared by every message.
#[derive(Debug, Clone)]
pub struct IntentRules {
    rule_set: RegexSet,
    rules: Vec<Rule>,
    negation_set: RegexSet,
    negations: Vec<Negation>,
    priority: Vec<Category>,
    min_score: BTreeMap<Target, u32>,
    window: usize,
}

impl IntentRules {
    /// The shipped rules.
    pub fn built_in() -> Result<Self, ExtractError> {
        Self::from_toml(BUILT_IN, BUILT_IN_ORIGIN)
    }

    /// Rules read from `path`.
    pub fn from_file(path: &Path) -> Result<Self, ExtractError> {
        let source = std::fs::read_to_string(path).map_err(|source| ExtractError::ReadRules {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&source, &path.display().to_string())
    }

    /// Rules from TOML `source`; `origin` names it in errors.
    pub fn from_toml(source: &str, origin: &str) -> Result<Self, ExtractError> {
        let bad = |message: String| ExtractError::Rules {
            origin: origin.to_owned(),
            message,
        };
        let file: RulesFile = toml::from_str(source).map_err(|e| bad(e.to_string()))?;
        let priority = category_priority(&file.category_priority).map_err(&bad)?;
        let min_score = file
            .min_score
            .iter()
            .map(|(name, score)| {
                let target = Target::parse(name)
                    .ok_or_else(|| bad(format!("min_score: unknown target `{name}`")))?;
                Ok((target, *score))
            })
            .collect::<Result<_, ExtractError>>()?;
        let rules = compile_rules(&file.rules, origin)?;
        let negations = compile_negations(&file.negations, origin)?;
        Ok(IntentRules {
            rule_set: regex_set(rules.iter().map(|r| r.regex.as_str()), origin)?,
            rules,
            negation_set: regex_set(negations.iter().map(|n| n.regex.as_str()), origin)?,
            negations,
            priority,
            min_score,
            window: file.negation_window,
        })
    }

    /// The intent of `folded` text (subject and fresh words, folded).
    pub fn classify(&self, folded: &str) -> Intent {
        let haystack = folded.as_bytes();
        let negated = self.negated_spans(haystack);
        let mut hits: BTreeMap<Target, Vec<WeightedSpans>> = BTreeMap::new();
        for index in self.rule_set.matches(haystack).iter() {
            let rule = &self.rules[index];
            let spans: Vec<Range<usize>> = rule
                .regex
                .find_iter(haystack)
                .map(|m| m.range())
                .filter(|span| !self.cancelled(rule.target, span, &negated))
                .collect();
            if !spans.is_empty() {
                hits.entry(rule.target)
                    .or_default()
                    .push((rule.weight, spans));
            }
        }
        let scores: BTreeMap<Target, u32> = hits
            .into_iter()
            .map(|(target, matched)| (target, merged_score(matched)))
            .collect();
        Intent {
            category: self.best_category(&scores),
            flags: self.flags(&scores),
            scores,
        }
    }

    fn negated_spans(&self, haystack: &[u8]) -> Vec<(Target, Range<usize>)> {
        let mut spans = Vec::new();
        for index in self.negation_set.matches(haystack).iter() {
            let negation = &self.negations[index];
            for m in negation.regex.find_iter(haystack) {
                spans.extend(negation.targets.iter().map(|t| (*t, m.range())));
            }
        }
        spans
    }

    fn cancelled(
        &self,
        target: Target,
        span: &Range<usize>,
        negated: &[(Target, Range<usize>)],
    ) -> bool {
        negated
            .iter()
            .any(|(t, n)| *t == target && n.start < span.end && n.end + self.window >= span.start)
    }

    fn min_score(&self, target: Target) -> u32 {
        self.min_score
            .get(&target)
            .copied()
            .unwrap_or(DEFAULT_MIN_SCORE)
    }

    fn best_category(&self, scores: &BTreeMap<Target, u32>) -> Category {
        let mut best: Option<(Category, u32)> = None;
        for category in &self.priority {
            let target = Target::Category(*category);
            let score = scores.get(&target).copied().unwrap_or(0);
            let beats = best.is_none_or(|(_, top)| score > top);
            if score > 0 && score >= self.min_score(target) && beats {
                best = Some((*category, score));
            }
        }
        best.map_or(Category::Other, |(c, _)| c)
    }

    fn flags(&self, scores: &BTreeMap<Target, u32>) -> BTreeSet<Flag> {
        scores
            .iter()
            .filter_map(|(target, score)| match target {
                Target::Flag(flag) if *score >= self.min_score(*target) => Some(*flag),
                _ => None,
            })
            .collect()
    }
}

/// One matched pattern: its weight and where it matched (not negated).
type WeightedSpans = (u32, Vec<Range<usize>>);

/// The score of one target: heaviest patterns first, each counted once,
/// and only if it matched somewhere no counted pattern already covers.
fn merged_score(mut matched: Vec<WeightedSpans>) -> u32 {
    matched.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    let mut covered: Vec<Range<usize>> = Vec::new();
    let mut score = 0;
    for (weight, spans) in matched {
        let new: Vec<Range<usize>> = spans
            .into_iter()
            .filter(|s| !covered.iter().any(|c| c.start < s.end && s.start < c.end))
            .collect();
        if !new.is_empty() {
            score += weight;
            covered.extend(new);
        }
    }
    score
}

/// The tie order: every category but `other`, each once.
fn category_priority(names: &[String]) -> Result<Vec<Category>, String> {
    let mut priority = Vec::new();
    for name in names {
        let category: Category = name
            .parse()
            .map_err(|_| format!("category_priority: unknown category `{name}`"))?;
        if category == Category::Other || priority.contains(&category) {
            return Err(format!(
                "category_priority: `{name}` is `other` or listed twice"
            ));
        }
        priority.push(category);
    }
    let missing: Vec<&str> = Category::ALL
        .iter()
        .filter(|c| **c != Category::Other && !priority.contains(c))
        .map(|c| c.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("category_priority: missing {}", missing.join(", ")));
    }
    Ok(priority)
}

fn compile_rules(groups: &[RuleGroup], origin: &str) -> Result<Vec<Rule>, ExtractError> {
    let mut rules = Vec::new();
    for (n, group) in groups.iter().enumerate() {
        let context = format!(
            "rules #{} (target `{}`, lang `{}`)",
            n + 1,
            group.target,
            group.lang
        );
        check_group(&group.lang, &group.patterns, origin, &context)?;
        let target = known_target(&group.target, origin, &context)?;
        if group.weight == 0 {
            return Err(rules_error(
                origin,
                format!("{context}: weight must be at least 1"),
            ));
        }
        for pattern in &group.patterns {
            rules.push(Rule {
                target,
                weight: group.weight,
                regex: compile_pattern(pattern, origin, &context)?,
            });
        }
    }
    Ok(rules)
}

fn compile_negations(
    groups: &[NegationGroup],
    origin: &str,
) -> Result<Vec<Negation>, ExtractError> {
    let mut negations = Vec::new();
    for (n, group) in groups.iter().enumerate() {
        let context = format!(
            "negations #{} (targets {:?}, lang `{}`)",
            n + 1,
            group.targets,
            group.lang
        );
        check_group(&group.lang, &group.patterns, origin, &context)?;
        if group.targets.is_empty() {
            return Err(rules_error(origin, format!("{context}: no targets")));
        }
        let targets = group
            .targets
            .iter()
            .map(|t| known_target(t, origin, &context))
            .collect::<Result<Vec<_>, _>>()?;
        for pattern in &group.patterns {
            negations.push(Negation {
                targets: targets.clone(),
                regex: compile_pattern(pattern, origin, &context)?,
            });
        }
    }
    Ok(negations)
}

fn check_group(
    lang: &str,
    patterns: &[String],
    origin: &str,
    context: &str,
) -> Result<(), ExtractError> {
    if !LANGUAGES.contains(&lang) {
        return Err(rules_error(
            origin,
            format!("{context}: lang must be one of en, de, fr, es"),
        ));
    }
    if patterns.is_empty() {
        return Err(rules_error(origin, format!("{context}: no patterns")));
    }
    Ok(())
}

fn known_target(name: &str, origin: &str, context: &str) -> Result<Target, ExtractError> {
    Target::parse(name).ok_or_else(|| {
        rules_error(
            origin,
            format!("{context}: unknown target `{name}` (a category other than `other`, or chargeback / statutory_rights)"),
        )
    })
}

fn rules_error(origin: &str, message: String) -> ExtractError {
    ExtractError::Rules {
        origin: origin.to_owned(),
        message,
    }
}

/// One pattern as a whole-word, case-insensitive, ASCII bytes regex.
fn compile_pattern(pattern: &str, origin: &str, context: &str) -> Result<Regex, ExtractError> {
    let wrapped = format!(r"(?i-u)\b(?:{})\b", fold_pattern(pattern.trim()));
    Regex::new(&wrapped).map_err(|source| ExtractError::RulePattern {
        origin: origin.to_owned(),
        rule: context.to_owned(),
        pattern: pattern.to_owned(),
        source,
    })
}

fn regex_set<'a>(
    patterns: impl Iterator<Item = &'a str>,
    origin: &str,
) -> Result<RegexSet, ExtractError> {
    RegexSetBuilder::new(patterns)
        .size_limit(64 << 20)
        .build()
        .map_err(|e| rules_error(origin, format!("the rules together are too large: {e}")))
}

#[cfg(test)]
mod tests;
