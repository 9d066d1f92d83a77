//! What a replay found: [`ReplayReport`], which serializes to the `--json`
//! contract, and the [`Collector`] that builds it one replayed message at
//! a time (PURE: no I/O; only the small per-message summaries and the
//! differing decisions are kept, so a replay of 100,000 messages does not
//! hold 100,000 decisions).
//!
//! The contract (`refundd replay --json`): one object with
//! - `decided`: messages decided;
//! - `decisions`: one entry per message decided: `message_id` (the
//!   `Message-ID`), `case` (stored mail only), and the replayed decision's
//!   `outcome`, `category`, `flags`, `actions`;
//! - `drift`: `[{case, message_id, stored, replayed}]`, stored engine
//!   decisions the configuration in force no longer reproduces (outcome,
//!   category, flags or actions), among those made under the same
//!   fingerprint;
//! - `changed`: `[{case, message_id, before, after, trace}]`, messages
//!   whose outcome or actions (kind, amount) the candidate changes;
//!   `before`/`after` as `refundd cases --json` prints a decision,
//!   `trace` the differing trace lines (`- ` before only, `+ ` after only);
//! - `totals`: `{before, after}`, each `{outcomes: {approved: n, …},
//!   money: {"EUR": minor units, …}, credits: n}`;
//! - `agreement`: `{decided_by_people, agree, disagree: [{case, reviewer,
//!   engine}]}`.
//!
//! Added fields: `source`, `fingerprints`, `other_configuration`,
//! `not_replayed`, `money_delta`, `credits_delta`, `waits_for_person`,
//! per side `categories`, `by_outcome_category`, `auto_decision_rate`;
//! per entry `message`, `source`, `changed`, `drift`; per drift and
//! change `trace`; `agreement.confusion`; `ledger_rejected` (archives).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::domain::{Action, Category, Decision, Flag, Outcome};
use crate::store::{CaseId, DecisionBasis, PeopleDecision};

/// A decision as `refundd cases --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionView {
    pub outcome: Outcome,
    pub category: Category,
    pub flags: Vec<Flag>,
    pub actions: Vec<Action>,
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        DecisionView {
            outcome: d.outcome,
            category: d.category,
            flags: d.flags.iter().copied().collect(),
            actions: d.actions.clone(),
        }
    }
}

impl DecisionView {
    /// The same outcome and actions (kind, order or wallet, amount): what
    /// counts as the same decision for people and candidates alike
    /// ([`Decision::agrees_with`]).
    pub fn agrees_with(&self, other: &DecisionView) -> bool {
        self.outcome == other.outcome && self.actions == other.actions
    }
}

/// Which mail was replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Stored mail, as the desk decided it.
    Stored,
    /// An archive never processed, with a ledger file.
    Archive,
}

/// One message decided by the replay (an entry of `decisions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayedMessage {
    /// The message's `Message-ID`.
    pub message_id: Option<String>,
    /// Its case (stored mail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseId>,
    /// The replayed decision: the candidate's, else the one in force.
    #[serde(flatten)]
    pub decision: DecisionView,
    /// Our row id of the message (stored mail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<i64>,
    /// Where the message came from (`maildir:…`, `imap:…`).
    pub source: String,
    /// Decided alone (`policy`) or with its case's earlier messages (`case`).
    pub basis: DecisionBasis,
    /// The candidate decides it otherwise than the configuration in force.
    pub changed: bool,
    /// The configuration in force no longer decides it as stored.
    pub drift: bool,
    /// The configuration in force's decision (the CSV's `before`).
    #[serde(skip)]
    pub before: DecisionView,
}

/// A stored decision the configuration in force no longer reproduces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub case: Option<CaseId>,
    pub message_id: Option<String>,
    pub stored: DecisionView,
    pub replayed: DecisionView,
    /// The differing trace lines (`- ` stored only, `+ ` replayed only).
    pub trace: Vec<String>,
    pub source: String,
}

/// A message the candidate decides otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub case: Option<CaseId>,
    pub message_id: Option<String>,
    pub before: DecisionView,
    pub after: DecisionView,
    /// The differing trace lines (`- ` before only, `+ ` after only).
    pub trace: Vec<String>,
    pub source: String,
}

/// Counts and money of one side (`before` = in force, `after` = candidate).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    /// Messages per outcome (every outcome named, 0 included).
    pub outcomes: BTreeMap<String, usize>,
    /// Cash refunded per currency, minor units.
    pub money: BTreeMap<String, i64>,
    /// Wallet credits granted.
    pub credits: i64,
    /// Messages per category.
    pub categories: BTreeMap<String, usize>,
    /// Per outcome and category: count, money, credits.
    pub by_outcome_category: Vec<Cell>,
    /// Messages not ignored, and of those decided without a person
    /// (anything but `review`).
    pub not_ignored: usize,
    pub auto_decided: usize,
    pub auto_decision_rate: Option<f64>,
}

/// One outcome × category cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub outcome: Outcome,
    pub category: Category,
    pub count: usize,
    pub money: BTreeMap<String, i64>,
    pub credits: i64,
}

/// `{before, after}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub before: Side,
    pub after: Side,
}

/// A person's decision on a case, and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonView {
    /// The reviewer's address.
    pub by: String,
    #[serde(flatten)]
    pub decision: DecisionView,
}

/// A case a person decided otherwise than the engine would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub case: CaseId,
    pub reviewer: PersonView,
    pub engine: DecisionView,
}

/// How the replayed engine compares with what people decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// Cases whose last decision was a reviewer's, among those replayed.
    pub decided_by_people: usize,
    /// Of those, the engine would decide the same (outcome, actions).
    pub agree: usize,
    pub disagree: Vec<Disagreement>,
    /// Reviewer outcome -> engine outcome -> cases.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

/// Stored decisions made under another configuration than the one in
/// force: replayed, never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherConfiguration {
    pub fingerprint: String,
    pub messages: usize,
    pub cases: Vec<CaseId>,
}

/// The deciding configurations' fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fingerprints {
    pub in_force: String,
    pub candidate: Option<String>,
}

/// Messages read but not decided again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotReplayed {
    /// Not a policy decision (unreadable or oversized mail, a follow-up
    /// to a case a person is on).
    pub screen: usize,
    /// Stored as a policy decision but no longer readable as mail.
    pub unreadable: usize,
}

/// A case that would wait on a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub case: Option<CaseId>,
    pub message_id: Option<String>,
    pub source: String,
}

/// A ledger line the archive's ledger file could not import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRejected {
    pub line: u64,
    pub reason: String,
}

/// Everything a replay found; serializes to the `--json` contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub decided: usize,
    pub decisions: Vec<ReplayedMessage>,
    pub drift: Vec<Drift>,
    pub changed: Vec<Change>,
    pub totals: Totals,
    pub agreement: Agreement,
    pub source: SourceKind,
    pub fingerprints: Fingerprints,
    pub other_configuration: Vec<OtherConfiguration>,
    pub not_replayed: NotReplayed,
    /// `after` − `before`, per currency, minor units (non-zero only).
    pub money_delta: BTreeMap<String, i64>,
    pub credits_delta: i64,
    /// Messages whose replayed decision waits on a person (`review`).
    pub waits_for_person: Vec<Waiting>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ledger_rejected: Vec<LedgerRejected>,
}

impl ReplayReport {
    /// Whether a candidate was compared.
    pub fn has_candidate(&self) -> bool {
        self.fingerprints.candidate.is_some()
    }
}

/// One stored message replayed, as the collector takes it.
#[derive(Debug, Clone)]
pub struct ReplayedInput<'a> {
    pub case: Option<CaseId>,
    pub message: Option<i64>,
    pub message_id: Option<String>,
    pub source: String,
    pub basis: DecisionBasis,
    /// The stored decision and the fingerprint it was made under.
    pub stored: &'a Decision,
    pub stored_fingerprint: &'a str,
    /// The configuration in force's decision.
    pub before: &'a Decision,
    /// The candidate's, when one is compared.
    pub after: Option<&'a Decision>,
}

/// Builds a [`ReplayReport`] message by message.
#[derive(Debug)]
pub struct Collector {
    report: ReplayReport,
    /// Per case, the replayed engine decision on its latest message.
    last_by_case: HashMap<CaseId, DecisionView>,
    other: BTreeMap<String, (usize, Vec<CaseId>)>,
    cells: [BTreeMap<(Outcome, Category), Cell>; 2],
}

impl Collector {
    /// An empty report for `source`.
    pub fn new(source: SourceKind, fingerprints: Fingerprints) -> Collector {
        Collector {
            report: ReplayReport {
                decided: 0,
                decisions: vec![],
                drift: vec![],
                changed: vec![],
                totals: Totals::default(),
                agreement: Agreement::default(),
                source,
                fingerprints,
                other_configuration: vec![],
                not_replayed: NotReplayed::default(),
                money_delta: BTreeMap::new(),
                credits_delta: 0,
                waits_for_person: vec![],
                ledger_rejected: vec![],
            },
            last_by_case: HashMap::new(),
            other: BTreeMap::new(),
            cells: [BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// A stored decision that is not the policy's (`screen`).
    pub fn not_replayed_screen(&mut self) {
        self.report.not_replayed.screen += 1;
    }

    /// A stored policy decision whose message no longer reads as mail.
    pub fn not_replayed_unreadable(&mut self) {
        self.report.not_replayed.unreadable += 1;
    }

    /// Ledger lines an archive's ledger file could not import.
    pub fn ledger_rejected(&mut self, rejected: Vec<LedgerRejected>) {
        self.report.ledger_rejected = rejected;
    }

    /// One message decided again; messages come in the order they were
    /// decided.
    pub fn add(&mut self, m: ReplayedInput<'_>) {
        let before = DecisionView::from(m.before);
        let after = m.after.map(DecisionView::from);
        let engine = after.clone().unwrap_or_else(|| before.clone());
        let after_decision = m.after.unwrap_or(m.before);

        let drift = if m.stored_fingerprint == self.report.fingerprints.in_force {
            let stored = DecisionView::from(m.stored);
            let drifted = stored != before;
            if drifted {
                self.report.drift.push(Drift {
                    case: m.case,
                    message_id: m.message_id.clone(),
                    stored,
                    replayed: before.clone(),
                    trace: trace_diff(m.stored, m.before),
                    source: m.source.clone(),
                });
            }
            drifted
        } else {
            let entry = self
                .other
                .entry(m.stored_fingerprint.to_owned())
                .or_default();
            entry.0 += 1;
            if let Some(case) = m.case
                && !entry.1.contains(&case)
            {
                entry.1.push(case);
            }
            false
        };

        let changed = after.as_ref().is_some_and(|a| !before.agrees_with(a));
        if changed {
            self.report.changed.push(Change {
                case: m.case,
                message_id: m.message_id.clone(),
                before: before.clone(),
                after: engine.clone(),
                trace: trace_diff(m.before, after_decision),
                source: m.source.clone(),
            });
        }

        count(&mut self.report.totals.before, &mut self.cells[0], m.before);
        count(
            &mut self.report.totals.after,
            &mut self.cells[1],
            after_decision,
        );

        if engine.outcome == Outcome::Review {
            self.report.waits_for_person.push(Waiting {
                case: m.case,
                message_id: m.message_id.clone(),
                source: m.source.clone(),
            });
        }
        // Messages come in decision order: the last one of a case is
        // the engine's latest word on it.
        if let Some(case) = m.case {
            self.last_by_case.insert(case, engine.clone());
        }
        self.report.decided += 1;
        self.report.decisions.push(ReplayedMessage {
            message_id: m.message_id,
            case: m.case,
            decision: engine,
            message: m.message,
            source: m.source,
            basis: m.basis,
            changed,
            drift,
            before,
        });
    }

    /// The cases replayed, for reading what people decided on them.
    pub fn cases(&self) -> Vec<CaseId> {
        let mut cases: Vec<CaseId> = self.last_by_case.keys().copied().collect();
        cases.sort_unstable_by_key(|c| c.0);
        cases
    }

    /// The report, with what people decided on the cases replayed.
    pub fn finish(mut self, people: &[PeopleDecision]) -> ReplayReport {
        let mut agreement = Agreement::default();
        for person in people {
            let Some(engine) = self.last_by_case.get(&person.case_id) else {
                continue;
            };
            let reviewer = DecisionView::from(&person.decision);
            agreement.decided_by_people += 1;
            *agreement
                .confusion
                .entry(reviewer.outcome.to_string())
                .or_default()
                .entry(engine.outcome.to_string())
                .or_default() += 1;
            if reviewer.agrees_with(engine) {
                agreement.agree += 1;
            } else {
                agreement.disagree.push(Disagreement {
                    case: person.case_id,
                    reviewer: PersonView {
                        by: person.reviewer.clone(),
                        decision: reviewer,
                    },
                    engine: engine.clone(),
                });
            }
        }
        self.report.agreement = agreement;
        let [before_cells, after_cells] = self.cells;
        for (side, cells) in [
            (&mut self.report.totals.before, before_cells),
            (&mut self.report.totals.after, after_cells),
        ] {
            side.by_outcome_category = cells.into_values().collect();
            side.auto_decision_rate =
                (side.not_ignored > 0).then(|| side.auto_decided as f64 / side.not_ignored as f64);
            for outcome in Outcome::ALL {
                side.outcomes.entry(outcome.to_string()).or_insert(0);
            }
        }
        let totals = &self.report.totals;
        let mut delta: BTreeMap<String, i64> = BTreeMap::new();
        for (currency, amount) in &totals.after.money {
            *delta.entry(currency.clone()).or_default() += amount;
        }
        for (currency, amount) in &totals.before.money {
            *delta.entry(currency.clone()).or_default() -= amount;
        }
        delta.retain(|_, v| *v != 0);
        self.report.money_delta = delta;
        self.report.credits_delta = totals.after.credits - totals.before.credits;
        self.report.other_configuration = self
            .other
            .into_iter()
            .map(|(fingerprint, (messages, cases))| OtherConfiguration {
                fingerprint,
                messages,
                cases,
            })
            .collect();
        self.report
    }
}

fn count(side: &mut Side, cells: &mut BTreeMap<(Outcome, Category), Cell>, d: &Decision) {
    *side.outcomes.entry(d.outcome.to_string()).or_default() += 1;
    *side.categories.entry(d.category.to_string()).or_default() += 1;
    if d.outcome != Outcome::Ignored {
        side.not_ignored += 1;
        if d.outcome != Outcome::Review {
            side.auto_decided += 1;
        }
    }
    let cell = cells
        .entry((d.outcome, d.category))
        .or_insert_with(|| Cell {
            outcome: d.outcome,
            category: d.category,
            count: 0,
            money: BTreeMap::new(),
            credits: 0,
        });
    cell.count += 1;
    for action in &d.actions {
        match action {
            Action::CashRefund {
                amount, currency, ..
            } => {
                *side.money.entry(currency.clone()).or_default() += amount;
                *cell.money.entry(currency.clone()).or_default() += amount;
            }
            Action::WalletCredit { credits, .. } => {
                side.credits += credits;
                cell.credits += credits;
            }
        }
    }
}

/// A trace step as one line: `P2: received 3 days after purchase, …`.
pub fn trace_line(step: &crate::domain::TraceStep) -> String {
    format!("{}: {}", step.clause, step.finding)
}

/// The trace lines only one of two decisions has, in trace order: `- `
/// for `a`'s, `+ ` for `b`'s.
pub fn trace_diff(a: &Decision, b: &Decision) -> Vec<String> {
    let a_lines: Vec<String> = a.trace.iter().map(trace_line).collect();
    let b_lines: Vec<String> = b.trace.iter().map(trace_line).collect();
    let mut out: Vec<String> = a_lines
        .iter()
        .filter(|l| !b_lines.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        b_lines
            .iter()
            .filter(|l| !a_lines.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Clause, CreditReason, ReplyKind, TraceStep};

    fn decision(outcome: Outcome, actions: Vec<Action>, finding: &str) -> Decision {
        Decision {
            outcome,
            category: Category::CashRefund,
            flags: Default::default(),
            actions,
            trace: vec![
                TraceStep {
                    clause: Clause::Id,
                    finding: "sender is wallet w".into(),
                    facts: vec![],
                },
                TraceStep {
                    clause: Clause::P2,
                    finding: finding.into(),
                    facts: vec![],
                },
            ],
            reply: ReplyKind::NoReply,
            order_id: None,
            wallet_id: None,
            generation_id: None,
            reply_facts: Default::default(),
        }
    }

    fn cash(amount: i64) -> Action {
        Action::CashRefund {
            order_id: "o1".into(),
            amount,
            currency: "EUR".into(),
        }
    }

    fn input<'a>(
        case: i64,
        stored: &'a Decision,
        fingerprint: &'a str,
        before: &'a Decision,
        after: Option<&'a Decision>,
    ) -> ReplayedInput<'a> {
        ReplayedInput {
            case: Some(CaseId(case)),
            message: Some(case * 10),
            message_id: Some(format!("m{case}@example.com")),
            source: "test".into(),
            basis: DecisionBasis::Policy,
            stored,
            stored_fingerprint: fingerprint,
            before,
            after,
        }
    }

    fn fingerprints() -> Fingerprints {
        Fingerprints {
            in_force: "f-live".into(),
            candidate: Some("f-cand".into()),
        }
    }

    #[test]
    fn a_candidate_change_is_listed_with_both_decisions_the_differing_trace_and_the_money_delta() {
        let approved = decision(
            Outcome::Approved,
            vec![cash(900)],
            "inside the 14-day window",
        );
        let denied = decision(Outcome::Denied, vec![], "outside the 7-day window");
        let mut c = Collector::new(SourceKind::Stored, fingerprints());
        c.add(input(1, &approved, "f-live", &approved, Some(&denied)));
        c.add(input(2, &approved, "f-live", &approved, Some(&approved)));
        let report = c.finish(&[]);
        assert_eq!(report.decided, 2);
        assert!(report.drift.is_empty());
        assert_eq!(report.changed.len(), 1);
        let change = &report.changed[0];
        assert_eq!(change.case, Some(CaseId(1)));
        assert_eq!(change.before.outcome, Outcome::Approved);
        assert_eq!(change.after.outcome, Outcome::Denied);
        assert_eq!(
            change.trace,
            [
                "- P2: inside the 14-day window",
                "+ P2: outside the 7-day window"
            ]
        );
        assert_eq!(report.money_delta["EUR"], -900);
        assert_eq!(report.totals.before.money["EUR"], 1800);
        assert_eq!(report.totals.after.money["EUR"], 900);
        assert_eq!(report.totals.after.outcomes["denied"], 1);
        assert_eq!(report.totals.after.outcomes["review"], 0);
        assert_eq!(report.decisions[0].decision.outcome, Outcome::Denied);
        assert!(report.decisions[0].changed);
    }

    #[test]
    fn drift_is_compared_only_under_the_same_fingerprint() {
        let stored = decision(Outcome::Approved, vec![cash(900)], "full amount");
        let now = decision(Outcome::Approved, vec![cash(450)], "half");
        let mut c = Collector::new(SourceKind::Stored, fingerprints());
        c.add(input(1, &stored, "f-live", &now, None));
        c.add(input(2, &stored, "f-old", &now, None));
        c.add(input(3, &stored, "f-old", &now, None));
        let report = c.finish(&[]);
        assert_eq!(report.drift.len(), 1);
        assert_eq!(report.drift[0].case, Some(CaseId(1)));
        assert_eq!(report.drift[0].trace, ["- P2: full amount", "+ P2: half"]);
        assert_eq!(
            report.other_configuration,
            vec![OtherConfiguration {
                fingerprint: "f-old".into(),
                messages: 2,
                cases: vec![CaseId(2), CaseId(3)],
            }]
        );
    }

    #[test]
    fn people_are_compared_with_the_engine_on_the_case_latest_message() {
        let approved = decision(Outcome::Approved, vec![cash(900)], "ok");
        let review = decision(Outcome::Review, vec![], "a person looks");
        let credit = decision(
            Outcome::Approved,
            vec![Action::WalletCredit {
                wallet_id: "w".into(),
                credits: 5,
                reason: CreditReason::Courtesy,
                generation_id: None,
            }],
            "courtesy",
        );
        let mut c = Collector::new(SourceKind::Stored, fingerprints());
        c.add(input(1, &approved, "f-live", &approved, None));
        c.add(input(2, &review, "f-live", &review, None));
        c.add(input(3, &approved, "f-live", &approved, None));
        let people = vec![
            PeopleDecision {
                case_id: CaseId(1),
                reviewer: "rita@anumi.example".into(),
                decision: approved.clone(),
            },
            PeopleDecision {
                case_id: CaseId(2),
                reviewer: "rita@anumi.example".into(),
                decision: credit.clone(),
            },
            // Not replayed: not counted.
            PeopleDecision {
                case_id: CaseId(9),
                reviewer: "rita@anumi.example".into(),
                decision: credit,
            },
        ];
        let report = c.finish(&people);
        let a = &report.agreement;
        assert_eq!((a.decided_by_people, a.agree), (2, 1));
        assert_eq!(a.disagree.len(), 1);
        assert_eq!(a.disagree[0].case, CaseId(2));
        assert_eq!(a.disagree[0].reviewer.decision.outcome, Outcome::Approved);
        assert_eq!(a.disagree[0].engine.outcome, Outcome::Review);
        assert_eq!(a.confusion["approved"]["approved"], 1);
        assert_eq!(a.confusion["approved"]["review"], 1);
        assert_eq!(report.waits_for_person.len(), 1);
        assert_eq!(report.totals.before.auto_decision_rate, Some(2.0 / 3.0));
    }
}
