//! The admins' "before going live" page (`/admin/replay`): shadow mode's
//! agreement figures, the latest replay report, and a replay of stored
//! mail against a candidate configuration pasted into a form.
//!
//! Takes the signed-in admin and, on POST, a candidate configuration (TOML)
//! and an optional period; gives the page. A candidate is validated before
//! anything runs: a bad one is answered 422 with what is wrong and changes
//! nothing. The replay itself writes nothing (see [`crate::replay`]); the
//! latest report is kept in this process's memory only, so each instance
//! of a several-instance desk shows the replay it ran. Fails with
//! [`WebError`]: 403 for reviewers who are not admins.

use axum::extract::{Form, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use minijinja::context;
use serde::Deserialize;

use super::auth::SignedIn;
use super::pages::me;
use super::view::Page;
use super::{WebError, WebState};
use crate::pipeline::error_chain;
use crate::progress::NoProgress;
use crate::replay::{self, ReplayReport, Source};
use crate::store::{ReplayScope, ReviewerRole};

/// The latest replay this process ran from the console.
#[derive(Debug, Clone)]
pub struct LatestReplay {
    pub at: DateTime<Utc>,
    pub by: String,
    pub report: ReplayReport,
}

fn admin_only(signed: &SignedIn) -> Result<(), WebError> {
    if signed.reviewer.role == ReviewerRole::Admin {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "replays and shadow figures are for admins",
        ))
    }
}

/// `GET /admin/replay`.
pub async fn page(State(state): State<WebState>, signed: SignedIn) -> Result<Page, WebError> {
    admin_only(&signed)?;
    render(&state, &signed, None, None).await
}

/// The replay form.
#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    candidate: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    csrf: Option<String>,
}

/// `POST /admin/replay`: validates the candidate, replays stored mail of
/// the period against it, keeps the report and shows the page.
pub async fn run(
    State(state): State<WebState>,
    signed: SignedIn,
    Form(form): Form<ReplayForm>,
) -> Result<Page, WebError> {
    admin_only(&signed)?;
    signed.check_csrf(form.csrf.as_deref())?;
    let candidate = match form.candidate.trim() {
        "" => None,
        text => Some(replay::validate_candidate(text).map_err(|e| {
            WebError::Invalid(format!("the candidate configuration: {}", error_chain(&e)))
        })?),
    };
    let scope = ReplayScope {
        since: day(&form.since, "since")?,
        until: day(&form.until, "until")?.map(|d| d + Duration::days(1)),
        case: None,
    };
    let report = replay::replay(
        state.store(),
        state.settings(),
        candidate.as_ref(),
        Source::Stored(scope),
        &NoProgress,
    )
    .await
    .map_err(|e| WebError::Internal(format!("replay: {}", error_chain(&e))))?;
    let latest = LatestReplay {
        at: state.now(),
        by: signed.reviewer.email.clone(),
        report,
    };
    state.keep_replay(latest.clone());
    render(&state, &signed, Some(latest), Some(form.candidate)).await
}

/// A decision's actions in words ("no action" when none).
fn describe(actions: &[crate::domain::Action]) -> String {
    if actions.is_empty() {
        return "(no action)".to_owned();
    }
    let words: Vec<String> = actions.iter().map(|a| a.describe()).collect();
    format!("({})", words.join("; "))
}

/// `YYYY-MM-DD` as the start of that day (UTC), empty as none.
fn day(text: &str, what: &str) -> Result<Option<DateTime<Utc>>, WebError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
        .map_err(|_| WebError::Invalid(format!("`{text}` is not a date (YYYY-MM-DD) for {what}")))
}

async fn render(
    state: &WebState,
    signed: &SignedIn,
    fresh: Option<LatestReplay>,
    candidate: Option<String>,
) -> Result<Page, WebError> {
    let now = state.now();
    let store = state.store();
    let all_time = store
        .shadow_agreement(DateTime::<Utc>::MIN_UTC, now + Duration::seconds(1))
        .await?;
    let month = store
        .shadow_agreement(now - Duration::days(30), now + Duration::seconds(1))
        .await?;
    let pct = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let latest = fresh.or_else(|| state.latest_replay());
    let report = latest.as_ref().map(|l| {
        let r = &l.report;
        use crate::replay::text::{money_change, money_list};
        context! {
            at => l.at.format("%Y-%m-%d %H:%M UTC").to_string(),
            by => &l.by,
            decided => r.decided,
            drift => r.drift.len(),
            in_force => &r.fingerprints.in_force,
            candidate => &r.fingerprints.candidate,
            before_auto => pct(r.totals.before.auto_decision_rate),
            after_auto => pct(r.totals.after.auto_decision_rate),
            before_money => money_list(&r.totals.before.money),
            after_money => money_list(&r.totals.after.money),
            money_delta => money_change(&r.money_delta),
            credits_delta => r.credits_delta,
            changed => r.changed.iter().take(200).map(|c| context! {
                case => c.case.map(|c| c.to_string()),
                before => format!("{} {}", c.before.outcome, describe(&c.before.actions)),
                after => format!("{} {}", c.after.outcome, describe(&c.after.actions)),
                trace => &c.trace,
            }).collect::<Vec<_>>(),
            changed_total => r.changed.len(),
            decided_by_people => r.agreement.decided_by_people,
            agree => r.agreement.agree,
            disagree => r.agreement.disagree.iter().take(200).map(|d| context! {
                case => d.case.to_string(),
                reviewer => format!("{} {}", d.reviewer.decision.outcome, describe(&d.reviewer.decision.actions)),
                by => &d.reviewer.by,
                engine => format!("{} {}", d.engine.outcome, describe(&d.engine.actions)),
            }).collect::<Vec<_>>(),
            waits => r.waits_for_person.len(),
        }
    });
    state.views().page(
        "replay.html",
        context! {
            shadow_on => state.settings().policy.shadow,
            all_time => context! { decided => all_time.decided, agree => all_time.agree, rate => pct(all_time.rate()) },
            month => context! { decided => month.decided, agree => month.agree, rate => pct(month.rate()) },
            report => report,
            candidate => candidate.unwrap_or_default(),
        },
        Some(&me(signed)),
    )
}
