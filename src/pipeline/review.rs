//! A reviewer's decision on an open case: approve (cash refund, full or
//! partial, or a wallet credit), deny with a policy reason, or ask the
//! customer for information — recorded exactly as the engine records its
//! own: the case's compare-and-set update, a case event by
//! [`Actor::Reviewer`], the credits / pending payment, the templated reply
//! (with the reviewer's personal paragraph) and an audit line, in one
//! transaction.
//!
//! Takes the case number, the version the reviewer saw, who they are and
//! what they chose; gives the recorded decision and the queued reply.
//! [`ReviewDesk::preview`] renders the same reply without recording
//! anything, so the reviewer sees what will be sent. Never moves money
//! itself (cash refunds are pending actions for the payment stage) and
//! never calls the clock. Fails with [`ReviewError`]: a case someone else
//! changed first is [`ReviewError::Conflict`]; an amount beyond what the
//! order allows is [`ReviewError::Invalid`], checked here, on the server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::answer::{self, Addressee};
pub use super::deny::{DenyReason, DenyReasons, DenyReply};
use crate::config::Settings;
use crate::domain::{
    Action, Category, Clause, CreditReason, Decision, Outcome, ReplyFacts, ReplyKind, TraceStep,
    WalletFacts,
};
use crate::parse;
use crate::policy::{order_reference, refund_limit};
use crate::queue::{self, CaseStatus, Lifecycle};
use crate::reply::{RenderedReply, ReplyError, Templates};
use crate::store::{Actor, AuditAction, CaseId, CaseRow, Store, StoreError};

/// Why a reviewer's decision cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such case.
    #[error("case {0} not found")]
    NotFound(CaseId),
    /// Someone (another reviewer, a customer's follow-up) changed the case
    /// after the reviewer loaded it, it is no longer open, another reviewer
    /// holds its claim, or another case's approval took what was left of
    /// the order.
    #[error("case {case} was changed by someone else: {detail}")]
    Conflict { case: CaseId, detail: String },
    /// The choice does not fit the case (amount outside what the order
    /// allows, no order or wallet to act on, …): the reviewer must change it.
    #[error("{0}")]
    Invalid(String),
    /// The reply cannot be rendered (a template or fact problem).
    #[error("cannot render the reply for case {case}")]
    Reply {
        case: CaseId,
        #[source]
        source: ReplyError,
    },
    /// The database failed.
    #[error("database error while recording a review")]
    Store(#[source] StoreError),
}

impl ReviewError {
    /// Whether trying again later can help (a busy or broken database).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReviewError::Store(e) if e.is_transient())
    }
}

impl From<StoreError> for ReviewError {
    fn from(source: StoreError) -> Self {
        ReviewError::Store(source)
    }
}

/// What the reviewer asks the customer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskFor {
    /// The order ID (several orders could be meant).
    OrderId,
    /// The generation result (attach or link it, P3/P5).
    Result,
    /// To write from the purchase address with the order ID.
    PurchaseAddress,
    /// To check the order ID (we do not know the one given).
    CheckOrderId,
}

impl AskFor {
    /// Every request, in the order the console lists them.
    pub const ALL: [AskFor; 4] = [
        AskFor::OrderId,
        AskFor::Result,
        AskFor::PurchaseAddress,
        AskFor::CheckOrderId,
    ];

    /// The stable name (`order_id`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            AskFor::OrderId => "order_id",
            AskFor::Result => "result",
            AskFor::PurchaseAddress => "purchase_address",
            AskFor::CheckOrderId => "check_order_id",
        }
    }

    /// What the console shows.
    pub const fn label(self) -> &'static str {
        match self {
            AskFor::OrderId => "ID — which order? ask for the order ID",
            AskFor::Result => "P5 — ask for the generation result",
            AskFor::PurchaseAddress => "ID — write from the purchase address",
            AskFor::CheckOrderId => "ID — the order ID is unknown, ask to check it",
        }
    }

    const fn clause(self) -> Clause {
        match self {
            AskFor::Result => Clause::P5,
            _ => Clause::Id,
        }
    }

    const fn reply(self) -> ReplyKind {
        match self {
            AskFor::OrderId => ReplyKind::NeedOrderId,
            AskFor::Result => ReplyKind::NeedResult,
            AskFor::PurchaseAddress => ReplyKind::UnknownSender,
            AskFor::CheckOrderId => ReplyKind::UnknownOrder,
        }
    }
}

/// A reviewer's choice on a case. `None` amounts take the proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReviewChoice {
    /// Money back for one of the sender's orders, at most what is left of it.
    ApproveCash {
        #[serde(default)]
        order_id: Option<String>,
        /// Minor units, tax excluded.
        #[serde(default)]
        amount: Option<i64>,
    },
    /// Credits back into the sender's wallet.
    ApproveCredit {
        #[serde(default)]
        credits: Option<i64>,
    },
    /// Refused under a policy clause: the id of a configured deny reason
    /// (the shipped `all_credits_used`, `window_expired`, `subjective`,
    /// `terminated`, or one of `[[review.deny_reasons]]`).
    Deny { reason: String },
    /// The customer must tell us more.
    Ask { ask: AskFor },
}

impl ReviewChoice {
    /// The audit log's name of the act.
    pub const fn audit_action(&self) -> AuditAction {
        match self {
            ReviewChoice::ApproveCash { .. } | ReviewChoice::ApproveCredit { .. } => {
                AuditAction::Approve
            }
            ReviewChoice::Deny { .. } => AuditAction::Deny,
            ReviewChoice::Ask { .. } => AuditAction::Ask,
        }
    }
}

/// One of the sender's orders and how much of it a refund may return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLimit {
    pub order_id: String,
    /// Invoice number, else receipt number, else the id.
    pub reference: String,
    pub product: String,
    pub currency: String,
    /// Net amount paid, minor units.
    pub amount: i64,
    /// Already refunded (ledger) or approved and pending (any case), minor
    /// units.
    pub refunded: i64,
    /// The most a refund may return now: `amount - refunded`.
    pub max_refund: i64,
    /// P2's pro-rated refund of the unused credits, capped at `max_refund`.
    pub prorated: i64,
    pub credits: i64,
    pub credits_used: i64,
    pub purchased_at: DateTime<Utc>,
}

/// What the ledger allows on a case and what the console proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseLimits {
    /// The sender's wallet, when the address matches one.
    pub wallet_id: Option<String>,
    /// The sender's orders, the case's own first.
    pub orders: Vec<OrderLimit>,
    /// The most credits a reviewer may grant (the generation's, else the
    /// largest pack's), 0 without a wallet.
    pub max_credits: i64,
    /// The approval the common path takes: the cash refund P2 would give
    /// for a cash request, else the generation's credits.
    pub proposal: Option<ReviewChoice>,
}

/// A reviewer's decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    pub case_id: CaseId,
    /// The case version the reviewer saw (compare-and-set).
    pub expected_version: i64,
    /// The reviewer's address.
    pub reviewer: String,
    /// The reviewer is an admin: a claim another reviewer holds is taken
    /// over (and audited) instead of refusing the decision.
    pub admin: bool,
    pub choice: ReviewChoice,
    /// A paragraph of the reviewer's own for the customer's reply.
    pub personal_note: Option<String>,
}

/// What [`ReviewDesk::preview`] shows before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub decision: Decision,
    pub reply: RenderedReply,
}

/// What a recorded review did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub case_id: CaseId,
    pub outcome: Outcome,
    pub status: CaseStatus,
    /// The case's version after the update.
    pub version: i64,
    pub actions: Vec<Action>,
    /// Our reply's Message-ID (without angle brackets).
    pub reply_message_id: String,
}

/// Reviewer decisions, built once and shared by the console, the API and
/// the CLI.
pub struct ReviewDesk {
    store: Store,
    templates: Templates,
    deny_reasons: DenyReasons,
    settings: Arc<Settings>,
    lifecycle: Lifecycle,
}

impl ReviewDesk {
    /// Loads the reply templates the settings name (failing at start if
    /// one is broken).
    pub fn new(store: Store, settings: Arc<Settings>) -> Result<ReviewDesk, ReplyError> {
        let templates = Templates::load(settings.reply_templates())?;
        Ok(ReviewDesk::with_templates(store, settings, templates))
    }

    /// A desk answering with `templates`, shared with (and reloaded for)
    /// the rest of the daemon.
    pub fn with_templates(
        store: Store,
        settings: Arc<Settings>,
        templates: Templates,
    ) -> ReviewDesk {
        ReviewDesk {
            store,
            templates,
            deny_reasons: DenyReasons::from_config(&settings.review),
            lifecycle: settings.lifecycle(),
            settings,
        }
    }

    /// The reasons a reviewer may deny with, in console order.
    pub fn deny_reasons(&self) -> &DenyReasons {
        &self.deny_reasons
    }

    /// The store decisions are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the ledger allows on `case`, and the proposed approval.
    pub async fn limits(&self, case: &CaseRow) -> Result<CaseLimits, ReviewError> {
        let wallet = self.store.wallet_facts_by_email(&case.sender).await?;
        Ok(limits_of(case, wallet.as_ref()))
    }

    /// The decision and the reply a choice would record, without recording.
    pub async fn preview(
        &self,
        case_id: CaseId,
        choice: &ReviewChoice,
        reviewer: &str,
        personal_note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Preview, ReviewError> {
        let case = self
            .store
            .case(case_id)
            .await?
            .ok_or(ReviewError::NotFound(case_id))?;
        let (decision, _, deadline) = self.decide(&case, choice, reviewer, now).await?;
        let to = self.addressee(&case).await?;
        let context = answer::reply_context(case.id, &to, &decision, deadline, personal_note);
        let reply = self
            .templates
            .renderer()
            .render(&context)
            .map_err(|source| ReviewError::Reply {
                case: case.id,
                source,
            })?;
        Ok(Preview { decision, reply })
    }

    /// Records a reviewer's decision as one lifecycle transition — the
    /// case's compare-and-set on `expected_version`, its event, the claim
    /// rule (only the holder decides; an admin takes over, audited), the
    /// credits or the reserved refund (never more than is left of the
    /// order, counting every case's pending refunds) — plus the reply and
    /// the audit line, in one transaction.
    #[tracing::instrument(skip_all, fields(case_id = %request.case_id, stage = "review"))]
    pub async fn apply_reviewer_decision(
        &self,
        request: &ReviewRequest,
        now: DateTime<Utc>,
    ) -> Result<Applied, ReviewError> {
        let case_id = request.case_id;
        let case = self
            .store
            .case(case_id)
            .await?
            .ok_or(ReviewError::NotFound(case_id))?;
        if case.version != request.expected_version || !queue::is_open(case.status) {
            return Err(stale(&case, request.expected_version));
        }
        let (decision, _, _) = self
            .decide(&case, &request.choice, &request.reviewer, now)
            .await?;
        let mut state = case.state();
        state.version = request.expected_version;
        let transition = self
            .lifecycle
            .reviewed(state, decision, &request.reviewer, request.admin, now)
            .map_err(|e| ReviewError::Conflict {
                case: case.id,
                detail: e.to_string(),
            })?;
        let decision = transition
            .decision
            .clone()
            .expect("a reviewer's transition carries the decision");
        let to = self.addressee(&case).await?;
        let context = answer::reply_context(
            case.id,
            &to,
            &decision,
            transition.deadline,
            request.personal_note.clone(),
        );
        let reply = self.compose(&case, &to, &context, now)?;
        // As the engine does: with payments configured, an approved cash
        // refund's reply waits for Polar, a "a person will look" reply
        // beside it in case the refund fails.
        let fallback = if crate::act::payments::holds_reply(&self.settings, &decision) {
            let fallback = answer::payment_fallback(&decision);
            let deadline = Some(self.lifecycle.deadline_from(now));
            let context = answer::reply_context(case.id, &to, &fallback, deadline, None);
            Some(self.compose(&case, &to, &context, now)?)
        } else {
            None
        };

        let mut tx = self.store.begin().await?;
        let after = tx
            .apply_transition(&transition)
            .await
            .map_err(|e| conflict(case.id, e))?;
        answer::queue_or_hold(&mut tx, &reply, fallback.as_ref()).await?;
        // Shadow mode: did the person decide what the engine proposed?
        if let Some(proposal) = tx.latest_engine_decision(case.id).await?
            && proposal.shadow
        {
            let agree = proposal.decision.agrees_with(&decision);
            tx.record_shadow_verdict(case.id, proposal.id, &request.reviewer, agree, now)
                .await?;
        }
        tx.add_audit(
            &transition.actor.to_string(),
            request.choice.audit_action(),
            Some(case.id),
            &serde_json::json!({
                "choice": request.choice,
                "outcome": decision.outcome,
                "actions": decision.actions,
                "reply": decision.reply,
                "from_version": request.expected_version,
                "personal_note": request.personal_note,
                "reply_message_id": reply.message_id,
            }),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(outcome = %decision.outcome, "review recorded");
        Ok(Applied {
            case_id: case.id,
            outcome: decision.outcome,
            status: after.status,
            version: after.version,
            actions: decision.actions,
            reply_message_id: reply.message_id,
        })
    }

    fn compose(
        &self,
        case: &CaseRow,
        to: &Addressee,
        context: &crate::reply::ReplyContext,
        now: DateTime<Utc>,
    ) -> Result<crate::store::NewReply, ReviewError> {
        answer::compose_reply(
            &self.templates.renderer(),
            &self.settings.reply,
            case.id,
            to,
            context,
            now,
        )
        .map_err(|source| ReviewError::Reply {
            case: case.id,
            source,
        })
    }

    /// Records an internal note on a case (the audit log only: no reply,
    /// no status change, so a note never conflicts with a decision).
    pub async fn add_note(
        &self,
        case_id: CaseId,
        reviewer: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, ReviewError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReviewError::Invalid("the note is empty".into()));
        }
        if self.store.case(case_id).await?.is_none() {
            return Err(ReviewError::NotFound(case_id));
        }
        Ok(self
            .store
            .add_audit(
                &Actor::Reviewer(reviewer.to_owned()).to_string(),
                AuditAction::Note,
                Some(case_id),
                &serde_json::json!({ "note": text }),
                now,
            )
            .await?)
    }

    /// The new decision, status and deadline a choice leads to.
    async fn decide(
        &self,
        case: &CaseRow,
        choice: &ReviewChoice,
        reviewer: &str,
        now: DateTime<Utc>,
    ) -> Result<(Decision, CaseStatus, Option<DateTime<Utc>>), ReviewError> {
        let wallet = self.store.wallet_facts_by_email(&case.sender).await?;
        let limits = limits_of(case, wallet.as_ref());
        let decision = decide(
            case,
            &limits,
            wallet.as_ref(),
            choice,
            reviewer,
            &Rules {
                settings: &self.settings,
                deny_reasons: &self.deny_reasons,
            },
        )?;
        let status = queue::status_after(decision.outcome);
        let deadline = queue::is_open(status).then(|| self.lifecycle.deadline_from(now));
        Ok((decision, status, deadline))
    }

    /// Who the reply goes to: the case's sender, threaded under the latest
    /// message of the case.
    async fn addressee(&self, case: &CaseRow) -> Result<Addressee, ReviewError> {
        let messages = self.store.case_messages(case.id).await?;
        let latest = messages
            .iter()
            .rev()
            .find_map(|m| parse::parse(&m.raw).ok());
        let (name, in_reply_to, mut references) = match latest {
            Some(p) => (p.from.and_then(|f| f.name), p.message_id, p.references),
            None => (None, None, Vec::new()),
        };
        if let Some(id) = &in_reply_to
            && !references.contains(id)
        {
            references.push(id.clone());
        }
        Ok(Addressee {
            to: case.sender.clone(),
            name,
            subject: case.subject.clone(),
            language: case.language,
            in_reply_to,
            references,
        })
    }
}

fn stale(case: &CaseRow, expected: i64) -> ReviewError {
    let detail = if case.version != expected {
        format!(
            "it is at version {} and you saw version {expected}; reload it to see what changed",
            case.version
        )
    } else {
        format!("it is already {}", case.status)
    };
    ReviewError::Conflict {
        case: case.id,
        detail,
    }
}

/// A transition the store refused because the world moved: the case
/// changed, another reviewer holds it, or the order has less left than
/// the decision approves.
fn conflict(case: CaseId, e: StoreError) -> ReviewError {
    match e {
        StoreError::Conflict { detail, .. } => ReviewError::Conflict { case, detail },
        StoreError::OverRefund { order_id, left, .. } => ReviewError::Conflict {
            case,
            detail: format!(
                "only {left} minor units are left to refund of order {order_id} (another case's \
                 approval counts); reload it to see what is left"
            ),
        },
        other => ReviewError::Store(other),
    }
}

/// What the ledger allows on a case (pure).
pub fn limits_of(case: &CaseRow, wallet: Option<&WalletFacts>) -> CaseLimits {
    let Some(w) = wallet else {
        return CaseLimits {
            wallet_id: None,
            orders: Vec::new(),
            max_credits: 0,
            proposal: None,
        };
    };
    let mut orders: Vec<OrderLimit> = w
        .orders
        .iter()
        .map(|o| {
            // The policy's numbers: what is left counts every case's
            // pending refunds, the pro-rating is P2's own.
            let p2 = refund_limit(o, w);
            OrderLimit {
                order_id: o.id.clone(),
                reference: order_reference(o),
                product: o.product.clone(),
                currency: o.currency.clone(),
                amount: o.amount,
                refunded: p2.committed,
                max_refund: p2.left,
                prorated: p2.refundable,
                credits: o.credits,
                credits_used: p2.credits_used,
                purchased_at: o.created_at,
            }
        })
        .collect();
    let own = case.decision.order_id.as_deref();
    orders.sort_by_key(|o| {
        (
            Some(o.order_id.as_str()) != own,
            std::cmp::Reverse(o.purchased_at),
        )
    });
    let generation = case
        .decision
        .generation_id
        .as_deref()
        .and_then(|g| w.generations.iter().find(|x| x.id == g));
    let max_credits = match generation {
        Some(g) => g.credits,
        None => w.orders.iter().map(|o| o.credits).max().unwrap_or(0),
    };
    let category = case.decision.category;
    let case_order = orders.first().filter(|o| Some(o.order_id.as_str()) == own);
    let proposal = match (category, case_order, generation) {
        (Category::CashRefund, Some(o), _) if o.max_refund > 0 => Some(ReviewChoice::ApproveCash {
            order_id: Some(o.order_id.clone()),
            amount: Some(if o.prorated > 0 {
                o.prorated
            } else {
                o.max_refund
            }),
        }),
        (_, _, Some(g)) if category != Category::CashRefund && g.credits > 0 => {
            Some(ReviewChoice::ApproveCredit {
                credits: Some(g.credits),
            })
        }
        _ => None,
    };
    CaseLimits {
        wallet_id: Some(w.wallet.id.clone()),
        orders,
        max_credits,
        proposal,
    }
}

/// What a reviewer's choice is weighed against besides the case: the
/// settings and the configured deny reasons.
struct Rules<'a> {
    settings: &'a Settings,
    deny_reasons: &'a DenyReasons,
}

/// The decision a choice makes of a case (pure; validates the choice
/// against the limits and the configured reasons).
fn decide(
    case: &CaseRow,
    limits: &CaseLimits,
    wallet: Option<&WalletFacts>,
    choice: &ReviewChoice,
    reviewer: &str,
    rules: &Rules<'_>,
) -> Result<Decision, ReviewError> {
    let settings = rules.settings;
    let mut d = case.decision.clone();
    d.actions.clear();
    d.reply_facts = ReplyFacts::default();
    let who = format!("Reviewer {reviewer}");
    let (clause, finding, facts) = match choice {
        ReviewChoice::ApproveCash { order_id, amount } => {
            let proposed = match &limits.proposal {
                Some(ReviewChoice::ApproveCash { order_id, amount }) => (order_id.clone(), *amount),
                _ => (None, None),
            };
            let order_id = order_id
                .clone()
                .filter(|o| !o.trim().is_empty())
                .or(proposed.0)
                .or_else(|| d.order_id.clone())
                .ok_or_else(|| ReviewError::Invalid("choose the order to refund".into()))?;
            let limit = limits
                .orders
                .iter()
                .find(|o| o.order_id == order_id)
                .ok_or_else(|| {
                    ReviewError::Invalid(
                        "the order is not one of the sender's wallet's orders".into(),
                    )
                })?;
            let amount = amount
                .or(proposed
                    .1
                    .filter(|_| Some(&limit.order_id) == d.order_id.as_ref()))
                .unwrap_or(limit.max_refund);
            if limit.max_refund <= 0 {
                return Err(ReviewError::Invalid(format!(
                    "order {} is already refunded in full",
                    limit.reference
                )));
            }
            if amount <= 0 || amount > limit.max_refund {
                return Err(ReviewError::Invalid(format!(
                    "the amount must be between 1 and {} (minor units of {}): what is left of order {}",
                    limit.max_refund, limit.currency, limit.reference
                )));
            }
            d.outcome = Outcome::Approved;
            d.reply = ReplyKind::CashRefundApproved;
            d.order_id = Some(order_id.clone());
            d.actions.push(Action::CashRefund {
                order_id: order_id.clone(),
                amount,
                currency: limit.currency.clone(),
            });
            d.reply_facts.amount = Some(amount);
            d.reply_facts.currency = Some(limit.currency.clone());
            d.reply_facts.order_reference = Some(limit.reference.clone());
            if amount == limit.prorated && limit.credits_used > 0 {
                d.reply_facts.credits_total = Some(limit.credits);
                d.reply_facts.credits_remaining = Some((limit.credits - limit.credits_used).max(0));
            }
            (
                Clause::P2,
                format!(
                    "{who} approved a cash refund of {amount} {} (minor units) for order {} (at most {} was left).",
                    limit.currency, limit.reference, limit.max_refund
                ),
                vec![
                    ("order_id".to_owned(), order_id),
                    ("amount".to_owned(), amount.to_string()),
                    ("max_refund".to_owned(), limit.max_refund.to_string()),
                ],
            )
        }
        ReviewChoice::ApproveCredit { credits } => {
            let wallet_id = limits
                .wallet_id
                .clone()
                .ok_or_else(|| ReviewError::Invalid("the sender has no wallet to credit".into()))?;
            let proposed = match &limits.proposal {
                Some(ReviewChoice::ApproveCredit { credits }) => *credits,
                _ => None,
            };
            let credits = credits.or(proposed).unwrap_or(1);
            if credits <= 0 || credits > limits.max_credits {
                return Err(ReviewError::Invalid(format!(
                    "the credits must be between 1 and {}",
                    limits.max_credits
                )));
            }
            let reason = if d.category == Category::FailedGeneration {
                CreditReason::FailedGeneration
            } else if d.category.is_courtesy_complaint() {
                CreditReason::Courtesy
            } else {
                CreditReason::Goodwill
            };
            d.outcome = Outcome::Approved;
            d.reply = if reason == CreditReason::FailedGeneration {
                ReplyKind::FailedGenerationCredited
            } else {
                ReplyKind::CourtesyCredited
            };
            d.actions.push(Action::WalletCredit {
                wallet_id: wallet_id.clone(),
                credits,
                reason,
                generation_id: d.generation_id.clone(),
            });
            d.wallet_id = Some(wallet_id);
            d.reply_facts.credits = Some(credits);
            let clause = if reason == CreditReason::FailedGeneration {
                Clause::P1
            } else {
                Clause::P3
            };
            (
                clause,
                format!(
                    "{who} approved a {} wallet credit of {credits} credit(s).",
                    reason.as_str()
                ),
                vec![("credits".to_owned(), credits.to_string())],
            )
        }
        ReviewChoice::Deny { reason } => {
            let reason = rules.deny_reasons.get(reason).ok_or_else(|| {
                ReviewError::Invalid(format!(
                    "unknown deny reason `{}`; the configured reasons are: {}",
                    reason.chars().take(64).collect::<String>(),
                    rules.deny_reasons.ids()
                ))
            })?;
            d.outcome = Outcome::Denied;
            d.reply = reason.reply_kind();
            d.reply_facts.template = reason.body_template().map(str::to_owned);
            // The window reply quotes the purchase and the window; an
            // operator's own reply may quote the order (each only when
            // the case knows it).
            if matches!(d.reply, ReplyKind::WindowExpired | ReplyKind::ReasonDenied) {
                let order = d
                    .order_id
                    .as_deref()
                    .and_then(|id| wallet.and_then(|w| w.order(id)));
                d.reply_facts.purchased_at = order.map(|o| o.created_at);
                d.reply_facts.order_reference = order.map(order_reference);
                d.reply_facts.window_days = Some(settings.policy.refund_window_days);
            }
            (
                reason.clause,
                format!("{who} denied the request: {}.", reason.label),
                vec![("reason".to_owned(), reason.id.clone())],
            )
        }
        ReviewChoice::Ask { ask } => {
            d.outcome = Outcome::NeedsInfo;
            d.reply = ask.reply();
            (
                ask.clause(),
                format!("{who} asked the customer: {}.", ask.label()),
                vec![("ask".to_owned(), ask.as_str().to_owned())],
            )
        }
    };
    d.trace.push(TraceStep {
        clause,
        finding,
        facts,
    });
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Generation, GenerationStatus, Language, Order, Refund, Wallet, WalletStatus,
    };
    use chrono::TimeZone;

    fn rules<'a>(settings: &'a Settings, deny_reasons: &'a DenyReasons) -> Rules<'a> {
        Rules {
            settings,
            deny_reasons,
        }
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, day, 12, 0, 0).unwrap()
    }

    fn order(id: &str, credits: i64, amount: i64) -> Order {
        Order {
            id: id.into(),
            wallet_id: "w_1".into(),
            product: "Starter".into(),
            credits,
            amount,
            tax_amount: None,
            currency: "EUR".into(),
            invoice_number: Some(format!("ANUMI-{id}")),
            receipt_number: None,
            created_at: t(1),
        }
    }

    fn wallet(used: i64, refunded: i64) -> WalletFacts {
        WalletFacts {
            wallet: Wallet {
                id: "w_1".into(),
                email: "ann@example.com".into(),
                status: WalletStatus::Active,
                created_at: t(1),
            },
            orders: vec![order("o1", 50, 900)],
            generations: (0..used)
                .map(|i| Generation {
                    id: format!("g{i}"),
                    wallet_id: "w_1".into(),
                    order_id: Some("o1".into()),
                    credits: 1,
                    status: GenerationStatus::Succeeded,
                    style: None,
                    refunded: false,
                    refunded_at: None,
                    created_at: t(2),
                })
                .collect(),
            credits: vec![],
            refunds: if refunded > 0 {
                vec![Refund {
                    id: "rf".into(),
                    order_id: "o1".into(),
                    amount: refunded,
                    created_at: t(3),
                }]
            } else {
                vec![]
            },
            chargebacks: vec![],
            pending_refunds: vec![],
        }
    }

    fn case(category: Category, order_id: Option<&str>, generation: Option<&str>) -> CaseRow {
        CaseRow {
            id: CaseId(7),
            sender: "ann@example.com".into(),
            subject: "refund".into(),
            language: Language::En,
            decision: Decision {
                outcome: Outcome::Review,
                category,
                flags: Default::default(),
                actions: vec![],
                trace: vec![],
                reply: ReplyKind::ReviewAcknowledged,
                order_id: order_id.map(str::to_owned),
                wallet_id: Some("w_1".into()),
                generation_id: generation.map(str::to_owned),
                reply_facts: Default::default(),
            },
            status: CaseStatus::Review,
            deadline: Some(t(5)),
            version: 3,
            created_at: t(4),
            updated_at: t(4),
        }
    }

    #[test]
    fn a_cash_request_proposes_the_pro_rated_refund_of_what_is_left() {
        for (used, refunded, want) in [
            (0, 0, Some(900)),
            (10, 0, Some(720)),
            (0, 500, Some(400)),
            (50, 0, Some(900)),
            (0, 900, None),
        ] {
            let limits = limits_of(
                &case(Category::CashRefund, Some("o1"), None),
                Some(&wallet(used, refunded)),
            );
            let proposed = match limits.proposal {
                Some(ReviewChoice::ApproveCash { amount, .. }) => amount,
                _ => None,
            };
            assert_eq!(proposed, want, "used {used}, refunded {refunded}");
        }
    }

    #[test]
    fn an_amount_beyond_what_the_order_allows_is_refused() {
        let w = wallet(0, 500);
        let c = case(Category::CashRefund, Some("o1"), None);
        let limits = limits_of(&c, Some(&w));
        let settings = Settings::default();
        let reasons = DenyReasons::shipped();
        for (amount, ok) in [
            (Some(400), true),
            (Some(401), false),
            (Some(0), false),
            (Some(-5), false),
            (None, true),
        ] {
            let choice = ReviewChoice::ApproveCash {
                order_id: None,
                amount,
            };
            let result = decide(
                &c,
                &limits,
                Some(&w),
                &choice,
                "rev@x",
                &rules(&settings, &reasons),
            );
            assert_eq!(result.is_ok(), ok, "amount {amount:?}");
        }
    }

    #[test]
    fn a_credit_is_bounded_by_the_generation_and_names_its_reason() {
        let mut w = wallet(1, 0);
        w.generations[0].credits = 2;
        let c = case(Category::NoResemblance, None, Some("g0"));
        let limits = limits_of(&c, Some(&w));
        assert_eq!(limits.max_credits, 2);
        assert_eq!(
            limits.proposal,
            Some(ReviewChoice::ApproveCredit { credits: Some(2) })
        );
        let settings = Settings::default();
        let reasons = DenyReasons::shipped();
        let d = decide(
            &c,
            &limits,
            Some(&w),
            &ReviewChoice::ApproveCredit { credits: None },
            "rev@x",
            &rules(&settings, &reasons),
        )
        .unwrap();
        assert_eq!(d.outcome, Outcome::Approved);
        assert_eq!(d.reply, ReplyKind::CourtesyCredited);
        assert!(matches!(
            &d.actions[..],
            [Action::WalletCredit {
                credits: 2,
                reason: CreditReason::Courtesy,
                ..
            }]
        ));
        assert_eq!(d.trace.last().unwrap().clause, Clause::P3);
        let too_many = decide(
            &c,
            &limits,
            Some(&w),
            &ReviewChoice::ApproveCredit { credits: Some(3) },
            "rev@x",
            &rules(&settings, &reasons),
        );
        assert!(matches!(too_many, Err(ReviewError::Invalid(_))));
    }

    #[test]
    fn denials_and_questions_carry_their_clause_reply_and_no_action() {
        let w = wallet(0, 0);
        let c = case(Category::CashRefund, Some("o1"), None);
        let limits = limits_of(&c, Some(&w));
        let settings = Settings::default();
        let reasons = DenyReasons::shipped();
        for (choice, outcome, reply, clause) in [
            (
                ReviewChoice::Deny {
                    reason: "window_expired".into(),
                },
                Outcome::Denied,
                ReplyKind::WindowExpired,
                Clause::P4,
            ),
            (
                ReviewChoice::Deny {
                    reason: "all_credits_used".into(),
                },
                Outcome::Denied,
                ReplyKind::CashRefundAllUsed,
                Clause::P2,
            ),
            (
                ReviewChoice::Ask {
                    ask: AskFor::Result,
                },
                Outcome::NeedsInfo,
                ReplyKind::NeedResult,
                Clause::P5,
            ),
            (
                ReviewChoice::Ask {
                    ask: AskFor::OrderId,
                },
                Outcome::NeedsInfo,
                ReplyKind::NeedOrderId,
                Clause::Id,
            ),
        ] {
            let d = decide(
                &c,
                &limits,
                Some(&w),
                &choice,
                "rev@x",
                &rules(&settings, &reasons),
            )
            .unwrap();
            assert_eq!((d.outcome, d.reply), (outcome, reply), "{choice:?}");
            assert!(d.actions.is_empty());
            assert_eq!(d.trace.last().unwrap().clause, clause);
        }
    }

    #[test]
    fn a_configured_reason_denies_with_its_clause_and_template_and_an_unknown_one_is_refused() {
        let w = wallet(0, 0);
        let c = case(Category::CashRefund, Some("o1"), None);
        let limits = limits_of(&c, Some(&w));
        let mut settings = Settings::default();
        settings.review.deny_reasons = vec![crate::pipeline::deny::DenyReasonConfig {
            id: "duplicate_order".into(),
            label: "P4 — bought the same pack twice".into(),
            clause: Clause::P4,
            template: "deny_duplicate_order".into(),
        }];
        let reasons = DenyReasons::from_config(&settings.review);
        let deny = |reason: &str| ReviewChoice::Deny {
            reason: reason.into(),
        };
        let d = decide(
            &c,
            &limits,
            Some(&w),
            &deny("duplicate_order"),
            "rev@x",
            &rules(&settings, &reasons),
        )
        .unwrap();
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(d.reply, ReplyKind::ReasonDenied);
        assert_eq!(
            d.reply_facts.template.as_deref(),
            Some("deny_duplicate_order")
        );
        assert_eq!(d.reply_facts.order_reference.as_deref(), Some("ANUMI-o1"));
        let step = d.trace.last().unwrap();
        assert_eq!(step.clause, Clause::P4);
        assert!(
            step.finding.contains("bought the same pack twice"),
            "{}",
            step.finding
        );
        assert_eq!(
            step.facts,
            [("reason".to_owned(), "duplicate_order".to_owned())]
        );

        let shipped = decide(
            &c,
            &limits,
            Some(&w),
            &deny("subjective"),
            "rev@x",
            &rules(&settings, &reasons),
        )
        .unwrap();
        assert_eq!(shipped.reply, ReplyKind::SubjectiveDenied);
        assert_eq!(shipped.reply_facts.template, None);

        let unknown = decide(
            &c,
            &limits,
            Some(&w),
            &deny("because"),
            "rev@x",
            &rules(&settings, &reasons),
        );
        match unknown {
            Err(ReviewError::Invalid(message)) => {
                assert!(
                    message.contains("unknown deny reason `because`"),
                    "{message}"
                );
                assert!(message.contains("duplicate_order"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
