//! The console's pages: the queue, a case, the confirmation with the
//! rendered reply, and the POST handlers behind every form (decide, note,
//! claim, release, bulk approval), plus the safe attachment route.
//!
//! Every POST checks the session's CSRF token first. Decisions carry the
//! case version the reviewer saw; losing the compare-and-set answers 409
//! with a message saying someone else acted first. Fails with
//! [`WebError`].

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::auth::SignedIn;
use super::view::{
    Me, Page, SAFE_IMAGE_TYPES, major, message_view, money, parse_major, time_left, to_value,
};
use super::{WebError, WebState};
use crate::domain::{Category, Flag, Outcome, WalletFacts};
use crate::pipeline::review::{
    AskFor, CaseLimits, DenyReasons, ReviewChoice, ReviewError, ReviewRequest, limits_of,
};
use crate::queue;
use crate::store::{AuditEntry, CaseEvent, CaseId, CaseRow, QueueFilter, QueueItem, ReviewerRole};

/// A case number from the path (`R-12` or `12`); anything else is 404.
pub(super) fn case_id(text: &str) -> Result<CaseId, WebError> {
    text.parse().map_err(|_| WebError::NotFound)
}

/// The signed-in reviewer as the page header shows them.
pub(super) fn me(signed: &SignedIn) -> Me {
    Me {
        email: signed.reviewer.email.clone(),
        admin: signed.reviewer.role == ReviewerRole::Admin,
        csrf: signed.csrf.clone(),
    }
}

/// The queue's filters as the query string carries them.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct QueueQuery {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    flag: String,
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: i64,
    /// The case whose reply was just queued (the flash message).
    #[serde(default)]
    sent: String,
}

fn parse_opt<T: std::str::FromStr>(text: &str, what: &str) -> Result<Option<T>, WebError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| WebError::Invalid(format!("unknown {what} `{text}`")))
}

impl QueueQuery {
    pub(super) fn filter(&self, limit: Option<i64>) -> Result<QueueFilter, WebError> {
        Ok(QueueFilter {
            outcome: parse_opt::<Outcome>(&self.outcome, "outcome")?,
            category: parse_opt::<Category>(&self.category, "category")?,
            flag: parse_opt::<Flag>(&self.flag, "flag")?,
            reviewer: Some(self.reviewer.trim().to_lowercase()).filter(|r| !r.is_empty()),
            search: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            limit,
            offset: self.offset.max(0),
        })
    }

    fn href(&self, offset: i64) -> String {
        let mut q = QueueQuery {
            offset,
            ..QueueQuery::default()
        };
        q.outcome.clone_from(&self.outcome);
        q.category.clone_from(&self.category);
        q.flag.clone_from(&self.flag);
        q.reviewer.clone_from(&self.reviewer);
        q.q.clone_from(&self.q);
        format!("/?{}", serde_urlencoded_pairs(&q))
    }
}

/// `a=1&b=2` of the queue filters, percent-encoded.
fn serde_urlencoded_pairs(q: &QueueQuery) -> String {
    [
        ("outcome", q.outcome.as_str()),
        ("category", &q.category),
        ("flag", &q.flag),
        ("reviewer", &q.reviewer),
        ("q", &q.q),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", percent(v)))
    .chain(std::iter::once(format!("offset={}", q.offset)))
    .collect::<Vec<_>>()
    .join("&")
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One row of the queue page.
#[derive(Debug, Serialize)]
struct QueueRow {
    tag: String,
    href: String,
    version: i64,
    time_left: String,
    overdue: bool,
    status: String,
    category: String,
    flags: Vec<String>,
    amount: String,
    sender: String,
    subject: String,
    claimed_by: String,
}

fn queue_row(item: &QueueItem, now: chrono::DateTime<chrono::Utc>) -> QueueRow {
    let (left, overdue) = time_left(item.deadline, now);
    QueueRow {
        tag: item.id.to_string(),
        href: format!("/cases/{}", item.id),
        version: item.version,
        time_left: left,
        overdue,
        status: item.status.to_string(),
        category: item.category.to_string(),
        flags: item.flags.iter().map(|f| f.to_string()).collect(),
        amount: match (item.amount, item.currency.as_deref()) {
            (Some(a), Some(c)) => money(a, c),
            _ => String::new(),
        },
        sender: item.sender.clone(),
        subject: item.subject.clone(),
        claimed_by: item.claimed_by.clone().unwrap_or_default(),
    }
}

/// `GET /`: the queue of open cases, oldest deadline first.
pub async fn queue(
    State(state): State<WebState>,
    signed: SignedIn,
    Query(query): Query<QueueQuery>,
) -> Result<Page, WebError> {
    let filter = query.filter(None)?;
    let page = state.store().queue(&filter).await?;
    let now = state.now();
    let rows: Vec<QueueRow> = page.items.iter().map(|i| queue_row(i, now)).collect();
    let shown = rows.len() as i64;
    let offset = filter.offset;
    let page_size = filter.limit.unwrap_or(50);
    let flash = case_id(&query.sent)
        .ok()
        .map(|c| format!("Decision on {c} recorded; the reply is queued to the customer."));
    state.views().page(
        "queue.html",
        context! {
            rows => to_value(&rows),
            total => page.total,
            offset => offset,
            filter => to_value(&query),
            flash => flash,
            outcomes => [Outcome::Review, Outcome::NeedsInfo].map(|o| o.as_str()),
            categories => Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            flags => Flag::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            prev_href => (offset > 0).then(|| query.href((offset - page_size).max(0))),
            next_href => (offset + shown < page.total).then(|| query.href(offset + shown)),
        },
        Some(&me(&signed)),
    )
}

/// A line of a case's history: events and audit lines, in time order.
#[derive(Debug, Serialize)]
struct HistoryLine {
    at: String,
    who: String,
    what: String,
}

fn history(events: &[CaseEvent], audit: &[AuditEntry]) -> Vec<HistoryLine> {
    let mut lines: Vec<(chrono::DateTime<chrono::Utc>, HistoryLine)> = events
        .iter()
        .map(|e| {
            (
                e.at,
                HistoryLine {
                    at: e.at.format("%Y-%m-%d %H:%M").to_string(),
                    who: e.actor.to_string(),
                    what: format!(
                        "{} → {}: {}",
                        e.from_status.map(|s| s.as_str()).unwrap_or("new"),
                        e.to_status,
                        e.reason
                    ),
                },
            )
        })
        .collect();
    lines.extend(audit.iter().map(|a| {
        let what = match a.detail.get("note").and_then(|n| n.as_str()) {
            Some(note) => format!("note: {note}"),
            None => a.action.as_str().replace('_', " "),
        };
        (
            a.at,
            HistoryLine {
                at: a.at.format("%Y-%m-%d %H:%M").to_string(),
                who: a.actor.clone(),
                what,
            },
        )
    }));
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, l)| l).collect()
}

/// The case header every case page shows.
#[derive(Debug, Serialize)]
struct CaseHeader {
    tag: String,
    sender: String,
    subject: String,
    status: String,
    outcome: String,
    category: String,
    flags: Vec<String>,
    time_left: String,
    overdue: bool,
    version: i64,
    open: bool,
    claimed_by: Option<String>,
    claimed_by_me: bool,
}

fn case_header(
    case: &CaseRow,
    claimed_by: Option<String>,
    signed: &SignedIn,
    now: chrono::DateTime<chrono::Utc>,
) -> CaseHeader {
    let (left, overdue) = time_left(case.deadline, now);
    CaseHeader {
        tag: case.id.to_string(),
        sender: case.sender.clone(),
        subject: case.subject.clone(),
        status: case.status.to_string(),
        outcome: case.decision.outcome.to_string(),
        category: case.decision.category.to_string(),
        flags: case.decision.flags.iter().map(|f| f.to_string()).collect(),
        time_left: left,
        overdue,
        version: case.version,
        open: queue::is_open(case.status),
        claimed_by_me: claimed_by.as_deref() == Some(signed.reviewer.email.as_str()),
        claimed_by,
    }
}

/// The ledger facts as the case page lists them.
fn ledger_view(
    case: &CaseRow,
    wallet: Option<&WalletFacts>,
    limits: &CaseLimits,
) -> (
    minijinja::Value,
    Vec<minijinja::Value>,
    Vec<minijinja::Value>,
    Vec<String>,
) {
    let Some(w) = wallet else {
        return (minijinja::Value::from(()), vec![], vec![], vec![]);
    };
    let wallet_value = context! {
        id => &w.wallet.id,
        status => format!("{:?}", w.wallet.status).to_lowercase(),
        created_at => w.wallet.created_at.format("%Y-%m-%d").to_string(),
    };
    let orders = limits
        .orders
        .iter()
        .map(|o| {
            context! {
                order_id => &o.order_id,
                reference => &o.reference,
                product => &o.product,
                amount => money(o.amount, &o.currency),
                refunded => money(o.refunded, &o.currency),
                max_refund => money(o.max_refund, &o.currency),
                credits => o.credits,
                credits_used => o.credits_used,
                purchased_at => o.purchased_at.format("%Y-%m-%d %H:%M").to_string(),
                is_case_order => case.decision.order_id.as_deref() == Some(o.order_id.as_str()),
            }
        })
        .collect();
    let mut generations: Vec<_> = w.generations.iter().collect();
    generations.sort_by_key(|g| std::cmp::Reverse(g.created_at));
    let generations = generations
        .into_iter()
        .take(20)
        .map(|g| {
            context! {
                id => &g.id,
                status => format!("{:?}", g.status).to_lowercase(),
                credits => g.credits,
                style => &g.style,
                created_at => g.created_at.format("%Y-%m-%d %H:%M").to_string(),
                is_case_generation => case.decision.generation_id.as_deref() == Some(g.id.as_str()),
            }
        })
        .collect();
    let mut earlier: Vec<String> = w
        .credits
        .iter()
        .map(|c| {
            format!(
                "wallet credit {} of {} credit(s), {} on {}",
                c.id,
                c.credits,
                c.reason.as_str(),
                c.created_at.format("%Y-%m-%d")
            )
        })
        .collect();
    earlier.extend(w.refunds.iter().map(|r| {
        format!(
            "refund {} of {} minor units on order {} on {}",
            r.id,
            r.amount,
            r.order_id,
            r.created_at.format("%Y-%m-%d")
        )
    }));
    earlier.extend(w.chargebacks.iter().map(|c| {
        format!(
            "chargeback {} ({:?}) on order {} on {}",
            c.id,
            c.status,
            c.order_id,
            c.created_at.format("%Y-%m-%d")
        )
    }));
    (wallet_value, orders, generations, earlier)
}

/// A choice in words, for the proposal and the confirmation.
fn describe(choice: &ReviewChoice, limits: &CaseLimits, reasons: &DenyReasons) -> String {
    match choice {
        ReviewChoice::ApproveCash { order_id, amount } => {
            let order = limits
                .orders
                .iter()
                .find(|o| Some(&o.order_id) == order_id.as_ref());
            match (order, amount) {
                (Some(o), Some(a)) => format!(
                    "cash refund of {} for order {} (up to {} allowed)",
                    money(*a, &o.currency),
                    o.reference,
                    money(o.max_refund, &o.currency)
                ),
                _ => "cash refund".into(),
            }
        }
        ReviewChoice::ApproveCredit { credits } => {
            format!("wallet credit of {} credit(s)", credits.unwrap_or(1))
        }
        ReviewChoice::Deny { reason } => match reasons.get(reason) {
            Some(reason) => format!("deny — {}", reason.label),
            None => format!("deny ({reason})"),
        },
        ReviewChoice::Ask { ask } => format!("ask the customer — {}", ask.label()),
    }
}

/// Query-string fields that carry a concrete choice to the confirmation.
fn choice_fields(choice: &ReviewChoice) -> Vec<(&'static str, String)> {
    match choice {
        ReviewChoice::ApproveCash { order_id, amount } => {
            let mut f = vec![("action", "approve_cash".to_owned())];
            if let Some(o) = order_id {
                f.push(("order_id", o.clone()));
            }
            if let Some(a) = amount {
                f.push(("amount", major(*a)));
            }
            f
        }
        ReviewChoice::ApproveCredit { credits } => {
            let mut f = vec![("action", "approve_credit".to_owned())];
            if let Some(c) = credits {
                f.push(("credits", c.to_string()));
            }
            f
        }
        ReviewChoice::Deny { reason } => {
            vec![("action", "deny".into()), ("reason", reason.clone())]
        }
        ReviewChoice::Ask { ask } => vec![("action", "ask".into()), ("ask", ask.as_str().into())],
    }
}

/// `GET /cases/{id}`: the case as the customer wrote it, what the engine
/// found and why it stopped, the ledger facts, the proposal with the reply
/// it would send, the decision forms and the history.
pub async fn case(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Page, WebError> {
    let id = case_id(&id)?;
    let store = state.store();
    let case = store.case(id).await?.ok_or(WebError::NotFound)?;
    let now = state.now();
    let messages: Vec<_> = store
        .case_messages(id)
        .await?
        .iter()
        .map(|m| message_view(&id.to_string(), m))
        .collect();
    let wallet = store.wallet_facts_by_email(&case.sender).await?;
    let limits = limits_of(&case, wallet.as_ref());
    let claim = store.case_claim(id).await?.map(|(who, _)| who);
    let (prev, next) = store.queue_neighbours(id, case.deadline).await?;
    let events = store.case_events(id).await?;
    let audit = store.audit_log(Some(id), 500).await?;
    let engine: Vec<_> = store
        .engine_decisions(id)
        .await?
        .iter()
        .map(|e| {
            let actions: Vec<String> = e.decision.actions.iter().map(|a| a.describe()).collect();
            context! {
                outcome => e.decision.outcome.as_str(),
                actions => if actions.is_empty() { "no action".to_owned() } else { actions.join("; ") },
                shadow => e.shadow,
                decided_at => e.decided_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                fingerprint => &e.fingerprint,
                version => &e.version,
                basis => e.basis.as_str(),
            }
        })
        .collect();
    let open = queue::is_open(case.status);

    let proposal = match (&limits.proposal, open) {
        (Some(p), true) => Some(p.clone()),
        _ => None,
    };
    let preview = match &proposal {
        Some(p) => match state
            .desk()
            .preview(id, p, &signed.reviewer.email, None, now)
            .await
        {
            Ok(preview) => {
                Some(context! { subject => preview.reply.subject, text => preview.reply.text })
            }
            Err(ReviewError::Store(e)) => return Err(e.into()),
            Err(other) => {
                tracing::warn!(case_id = %id, error = %other, "no preview for the proposal");
                None
            }
        },
        None => None,
    };
    let proposal_view = proposal.as_ref().map(|p| {
        let mut href = format!("/cases/{id}/confirm?version={}", case.version);
        for (k, v) in choice_fields(p) {
            href.push_str(&format!("&{k}={}", percent(&v)));
        }
        context! { label => describe(p, &limits, state.desk().deny_reasons()), href => href }
    });
    let (wallet_value, orders, generations, earlier) = ledger_view(&case, wallet.as_ref(), &limits);
    let cash_default = match &limits.proposal {
        Some(ReviewChoice::ApproveCash {
            amount: Some(a), ..
        }) => major(*a),
        _ => limits
            .orders
            .first()
            .map(|o| major(o.max_refund))
            .unwrap_or_default(),
    };
    let credit_default = match &limits.proposal {
        Some(ReviewChoice::ApproveCredit { credits: Some(c) }) => *c,
        _ => 1,
    };
    let trace: Vec<_> = case
        .decision
        .trace
        .iter()
        .map(|s| context! { clause => s.clause.as_str(), finding => &s.finding, facts => to_value(&s.facts) })
        .collect();
    state.views().page(
        "case.html",
        context! {
            case => to_value(case_header(&case, claim, &signed, now)),
            messages => to_value(&messages),
            trace => trace,
            engine => engine,
            stopped => case.decision.trace.last().map(|s| s.finding.clone()).unwrap_or_default(),
            wallet => wallet_value,
            orders => orders,
            generations => generations,
            earlier => earlier,
            max_credits => limits.max_credits,
            cash_default => cash_default,
            credit_default => credit_default,
            proposal => proposal_view,
            preview => preview,
            deny_reasons => state
                .desk()
                .deny_reasons()
                .all()
                .iter()
                .map(|r| (r.id.clone(), r.label.clone()))
                .collect::<Vec<_>>(),
            asks => AskFor::ALL.map(|a| (a.as_str(), a.label())),
            history => to_value(history(&events, &audit)),
            prev_href => prev.map(|c| format!("/cases/{c}")),
            next_href => next.map(|c| format!("/cases/{c}")),
        },
        Some(&me(&signed)),
    )
}

/// A decision as forms and query strings carry it.
#[derive(Debug, Default, Deserialize)]
pub struct ChoiceForm {
    #[serde(default)]
    action: String,
    order_id: Option<String>,
    amount: Option<String>,
    credits: Option<String>,
    reason: Option<String>,
    ask: Option<String>,
    note: Option<String>,
    version: Option<String>,
    csrf: Option<String>,
}

fn filled(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ChoiceForm {
    fn choice(&self, limits: &CaseLimits, reasons: &DenyReasons) -> Result<ReviewChoice, WebError> {
        match self.action.as_str() {
            "approve" => limits.proposal.clone().ok_or_else(|| {
                WebError::Invalid(
                    "there is no proposed approval for this case; choose a cash refund or a wallet credit".into(),
                )
            }),
            "approve_cash" => Ok(ReviewChoice::ApproveCash {
                order_id: filled(&self.order_id).map(str::to_owned),
                amount: filled(&self.amount)
                    .map(|a| {
                        parse_major(a).ok_or_else(|| {
                            WebError::Invalid(format!("`{a}` is not an amount like 7.20"))
                        })
                    })
                    .transpose()?,
            }),
            "approve_credit" => Ok(ReviewChoice::ApproveCredit {
                credits: filled(&self.credits)
                    .map(|c| {
                        c.parse::<i64>()
                            .map_err(|_| WebError::Invalid(format!("`{c}` is not a number of credits")))
                    })
                    .transpose()?,
            }),
            "deny" => {
                let name = filled(&self.reason).unwrap_or_default();
                reasons
                    .get(name)
                    .map(|reason| ReviewChoice::Deny {
                        reason: reason.id.clone(),
                    })
                    .ok_or_else(|| {
                        WebError::Invalid(format!(
                            "unknown deny reason `{name}`; the configured reasons are: {}",
                            reasons.ids()
                        ))
                    })
            }
            "ask" => {
                let name = filled(&self.ask).unwrap_or_default();
                AskFor::ALL
                    .into_iter()
                    .find(|a| a.as_str() == name)
                    .map(|ask| ReviewChoice::Ask { ask })
                    .ok_or_else(|| WebError::Invalid(format!("unknown request `{name}`")))
            }
            other => Err(WebError::Invalid(format!("unknown action `{other}`"))),
        }
    }

    fn version(&self) -> Result<Option<i64>, WebError> {
        filled(&self.version)
            .map(|v| {
                v.parse()
                    .map_err(|_| WebError::Invalid(format!("`{v}` is not a case version")))
            })
            .transpose()
    }
}

/// `GET /cases/{id}/confirm`: what will happen and the exact reply, with
/// a field for the reviewer's own paragraph; Send posts it.
pub async fn confirm(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Query(form): Query<ChoiceForm>,
) -> Result<Page, WebError> {
    let id = case_id(&id)?;
    let store = state.store();
    let case = store.case(id).await?.ok_or(WebError::NotFound)?;
    let wallet = store.wallet_facts_by_email(&case.sender).await?;
    let limits = limits_of(&case, wallet.as_ref());
    let choice = form.choice(&limits, state.desk().deny_reasons())?;
    let version = form.version()?.unwrap_or(case.version);
    let note = filled(&form.note).map(str::to_owned);
    let preview = state
        .desk()
        .preview(
            id,
            &choice,
            &signed.reviewer.email,
            note.clone(),
            state.now(),
        )
        .await?;
    // The posted form carries the concrete choice (the proposal resolved),
    // so what is sent is what was shown.
    let concrete = match (&choice, preview.decision.actions.first()) {
        (
            ReviewChoice::ApproveCash { .. },
            Some(crate::domain::Action::CashRefund {
                order_id, amount, ..
            }),
        ) => ReviewChoice::ApproveCash {
            order_id: Some(order_id.clone()),
            amount: Some(*amount),
        },
        (
            ReviewChoice::ApproveCredit { .. },
            Some(crate::domain::Action::WalletCredit { credits, .. }),
        ) => ReviewChoice::ApproveCredit {
            credits: Some(*credits),
        },
        (other, _) => other.clone(),
    };
    let claim = store.case_claim(id).await?.map(|(who, _)| who);
    state.views().page(
        "confirm.html",
        context! {
            case => to_value(case_header(&case, claim, &signed, state.now())),
            summary => format!(
                "You are about to {} on {id}.",
                describe(&concrete, &limits, state.desk().deny_reasons())
            ),
            version => version,
            fields => choice_fields(&concrete),
            reply => context! { subject => preview.reply.subject, text => preview.reply.text },
            note => note,
        },
        Some(&me(&signed)),
    )
}

/// `POST /cases/{id}/decide`: records the decision (compare-and-set on the
/// version in the form) and goes back to the queue.
pub async fn decide(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ChoiceForm>,
) -> Result<Response, WebError> {
    signed.check_csrf(form.csrf.as_deref())?;
    let id = case_id(&id)?;
    let store = state.store();
    let case = store.case(id).await?.ok_or(WebError::NotFound)?;
    let wallet = store.wallet_facts_by_email(&case.sender).await?;
    let limits = limits_of(&case, wallet.as_ref());
    let choice = form.choice(&limits, state.desk().deny_reasons())?;
    let version = form
        .version()?
        .ok_or_else(|| WebError::Invalid("the form carries no case version".into()))?;
    let applied = state
        .desk()
        .apply_reviewer_decision(
            &ReviewRequest {
                case_id: id,
                expected_version: version,
                reviewer: signed.reviewer.email.clone(),
                admin: signed.reviewer.role == ReviewerRole::Admin,
                choice,
                personal_note: filled(&form.note).map(str::to_owned),
            },
            state.now(),
        )
        .await?;
    Ok(Redirect::to(&format!("/?sent={}", applied.case_id)).into_response())
}

/// The internal-note form.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    text: String,
    csrf: Option<String>,
}

/// `POST /cases/{id}/notes`: an internal note (audit log only).
pub async fn note(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<NoteForm>,
) -> Result<Response, WebError> {
    signed.check_csrf(form.csrf.as_deref())?;
    let id = case_id(&id)?;
    state
        .desk()
        .add_note(id, &signed.reviewer.email, &form.text, state.now())
        .await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}

/// `POST /cases/{id}/claim`: claims the case (admins may take it over).
pub async fn claim(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<super::auth::CsrfForm>,
) -> Result<Response, WebError> {
    signed.check_csrf(form.csrf.as_deref())?;
    let id = case_id(&id)?;
    claim_case(&state, id, &signed.reviewer, true).await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}

/// Claims a case for `reviewer`; only admins take over someone's claim
/// (and only when `take_over`).
pub(super) async fn claim_case(
    state: &WebState,
    id: CaseId,
    reviewer: &crate::store::Reviewer,
    take_over: bool,
) -> Result<(), WebError> {
    let case = state.store().case(id).await?.ok_or(WebError::NotFound)?;
    if !queue::is_open(case.status) {
        return Err(WebError::Conflict(format!(
            "{id} is {}; there is nothing to claim",
            case.status
        )));
    }
    let admin = reviewer.role == ReviewerRole::Admin;
    state
        .store()
        .claim_case(id, &reviewer.email, take_over && admin, state.now())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { detail, .. } => {
                WebError::Conflict(format!("{id} is already {detail}"))
            }
            other => other.into(),
        })
}

/// `POST /cases/{id}/release`: gives the case back to the queue.
pub async fn release(
    State(state): State<WebState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<super::auth::CsrfForm>,
) -> Result<Response, WebError> {
    signed.check_csrf(form.csrf.as_deref())?;
    let id = case_id(&id)?;
    release_case(&state, id, &signed.reviewer).await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}

/// Releases `reviewer`'s claim (an admin's releases anyone's).
pub(super) async fn release_case(
    state: &WebState,
    id: CaseId,
    reviewer: &crate::store::Reviewer,
) -> Result<(), WebError> {
    state
        .store()
        .release_case(
            id,
            &reviewer.email,
            reviewer.role == ReviewerRole::Admin,
            state.now(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { detail, .. } => {
                WebError::Conflict(format!("{id}: {detail}"))
            }
            other => other.into(),
        })
}

/// One case's result in a bulk approval.
#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    pub tag: String,
    /// `approved`, `skipped` (no clear proposal, or another reviewer holds
    /// the case: the message names them), `conflict` or `invalid`.
    pub kind: &'static str,
    pub message: String,
}

/// Approves each `(case, version)` as proposed; cases without a proposal
/// and cases another reviewer has claimed are skipped (never taken over,
/// even by an admin: a take-over is a decision about one case), conflicts
/// and refusals reported per case.
pub(super) async fn bulk_approve(
    state: &WebState,
    reviewer: &str,
    cases: &[(CaseId, i64)],
) -> Result<Vec<BulkResult>, WebError> {
    let mut results = Vec::with_capacity(cases.len());
    for &(id, version) in cases {
        let result = |kind, message: String| BulkResult {
            tag: id.to_string(),
            kind,
            message,
        };
        let Some(case) = state.store().case(id).await? else {
            results.push(result("invalid", "no such case".into()));
            continue;
        };
        if let Some((holder, _)) = state.store().case_claim(id).await?
            && !holder.eq_ignore_ascii_case(reviewer)
        {
            results.push(result(
                "skipped",
                format!("claimed by {holder}; only they decide it"),
            ));
            continue;
        }
        let limits = state.desk().limits(&case).await?;
        let Some(choice) = limits.proposal.clone() else {
            results.push(result(
                "skipped",
                "no clear proposal; decide it on its page".into(),
            ));
            continue;
        };
        let request = ReviewRequest {
            case_id: id,
            expected_version: version,
            reviewer: reviewer.to_owned(),
            admin: false,
            choice: choice.clone(),
            personal_note: None,
        };
        match state
            .desk()
            .apply_reviewer_decision(&request, state.now())
            .await
        {
            Ok(_) => results.push(result(
                "approved",
                format!(
                    "approved: {}",
                    describe(&choice, &limits, state.desk().deny_reasons())
                ),
            )),
            Err(ReviewError::Conflict { detail, .. }) => results.push(result(
                "conflict",
                format!("someone else acted first: {detail}"),
            )),
            Err(ReviewError::Invalid(reason)) => results.push(result("invalid", reason)),
            Err(other) => return Err(other.into()),
        }
    }
    Ok(results)
}

/// `POST /cases/bulk`: the queue's bulk approval (`case=R-1:3` per
/// selected row).
pub async fn bulk(
    State(state): State<WebState>,
    signed: SignedIn,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Page, WebError> {
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    signed.check_csrf(csrf)?;
    let mut cases = Vec::new();
    for (_, value) in fields.iter().filter(|(k, _)| k == "case") {
        let (tag, version) = value
            .split_once(':')
            .ok_or_else(|| WebError::Invalid(format!("`{value}` is not CASE:VERSION")))?;
        let version = version
            .parse()
            .map_err(|_| WebError::Invalid(format!("`{value}` is not CASE:VERSION")))?;
        cases.push((case_id(tag)?, version));
    }
    if cases.is_empty() {
        return Err(WebError::Invalid("select at least one case".into()));
    }
    let results = bulk_approve(&state, &signed.reviewer.email, &cases).await?;
    state.views().page(
        "bulk.html",
        context! { results => to_value(&results) },
        Some(&me(&signed)),
    )
}

/// `GET /cases/{id}/messages/{message}/attachments/{n}`: one attachment's
/// bytes, always as a download (`Content-Disposition: attachment`, a
/// generated file name, `nosniff`, a sandboxing CSP). Only raster images
/// keep their type (so `<img>` shows them); everything else is
/// `application/octet-stream`.
pub async fn attachment(
    State(state): State<WebState>,
    _signed: SignedIn,
    Path((id, message, n)): Path<(String, i64, usize)>,
) -> Result<Response, WebError> {
    let id = case_id(&id)?;
    let stored = state
        .store()
        .message(message)
        .await?
        .filter(|m| m.case_id == Some(id))
        .ok_or(WebError::NotFound)?;
    let parsed = mail_parser::MessageParser::default()
        .parse(&stored.raw)
        .ok_or(WebError::NotFound)?;
    let part = u32::try_from(n)
        .ok()
        .and_then(|n| parsed.attachment(n))
        .ok_or(WebError::NotFound)?;
    let content_type = {
        use mail_parser::MimeHeaders;
        part.content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
                None => ct.ctype().to_ascii_lowercase(),
            })
            .unwrap_or_default()
    };
    let (served_type, extension) = match content_type.as_str() {
        t if SAFE_IMAGE_TYPES.contains(&t) => {
            (t.to_owned(), t.trim_start_matches("image/").to_owned())
        }
        _ => ("application/octet-stream".to_owned(), "bin".to_owned()),
    };
    let mut response = part.contents().to_vec().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&served_type).map_err(|e| WebError::Internal(e.to_string()))?,
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "attachment; filename=\"{id}-{message}-{n}.{extension}\""
        ))
        .map_err(|e| WebError::Internal(e.to_string()))?,
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(response)
}

/// `GET /audit`: the latest audit lines (admins only).
pub async fn audit(State(state): State<WebState>, signed: SignedIn) -> Result<Page, WebError> {
    if signed.reviewer.role != ReviewerRole::Admin {
        return Err(WebError::Forbidden("the audit log is for admins"));
    }
    let entries: Vec<_> = state
        .store()
        .audit_log(None, 1000)
        .await?
        .into_iter()
        .rev()
        .map(|e| {
            context! {
                at => e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                actor => e.actor,
                action => e.action.as_str(),
                case => e.case_id.map(|c| c.to_string()),
                detail => e.detail.to_string(),
            }
        })
        .collect();
    state.views().page(
        "audit.html",
        context! { entries => entries },
        Some(&me(&signed)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_choices_read_as_review_choices() {
        let limits = CaseLimits {
            wallet_id: None,
            orders: vec![],
            max_credits: 0,
            proposal: None,
        };
        let form = |action: &str, field: (&str, &str)| {
            let mut f = ChoiceForm {
                action: action.into(),
                ..ChoiceForm::default()
            };
            match field.0 {
                "amount" => f.amount = Some(field.1.into()),
                "credits" => f.credits = Some(field.1.into()),
                "reason" => f.reason = Some(field.1.into()),
                "ask" => f.ask = Some(field.1.into()),
                _ => {}
            }
            f.choice(&limits, &DenyReasons::shipped())
        };
        assert_eq!(
            form("approve_cash", ("amount", "7.20")).unwrap(),
            ReviewChoice::ApproveCash {
                order_id: None,
                amount: Some(720)
            }
        );
        assert_eq!(
            form("approve_credit", ("credits", "2")).unwrap(),
            ReviewChoice::ApproveCredit { credits: Some(2) }
        );
        assert_eq!(
            form("deny", ("reason", "subjective")).unwrap(),
            ReviewChoice::Deny {
                reason: "subjective".into()
            }
        );
        assert_eq!(
            form("ask", ("ask", "result")).unwrap(),
            ReviewChoice::Ask {
                ask: AskFor::Result
            }
        );
        for (action, field) in [
            ("approve", ("", "")),
            ("deny", ("reason", "because")),
            ("approve_cash", ("amount", "lots")),
            ("launch", ("", "")),
        ] {
            assert!(
                matches!(form(action, field), Err(WebError::Invalid(_))),
                "{action}"
            );
        }
    }

    #[test]
    fn a_concrete_choice_round_trips_through_its_form_fields() {
        let choice = ReviewChoice::ApproveCash {
            order_id: Some("o1".into()),
            amount: Some(720),
        };
        let fields = choice_fields(&choice);
        assert_eq!(
            fields,
            vec![
                ("action", "approve_cash".into()),
                ("order_id", "o1".into()),
                ("amount", "7.20".into())
            ]
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
    }
}
