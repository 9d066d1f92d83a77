//! Keeping the reply promise: one pass ([`sweep`]) over the open cases,
//! which the daemon runs periodically with the current time.
//!
//! Takes the store, the settings and `now`. Gives a [`SweepReport`] and,
//! in the store: an alert per review case whose deadline is near
//! (`[escalation] warn_before_working_hours` of working time left) or past,
//! once per case, kind and deadline; a case event for each breach; one
//! digest mail to `[escalation] team_address` in the replies outbox naming
//! the newly alerted cases; and, for cases that waited on the customer for
//! `needs_info_close_after_days`, the case resolved with a polite final note
//! in the customer's language (the `needs_info_closed` reply template, which
//! the operator may replace like every other); and, with `[retention]
//! raw_mail_days`, the raw bytes of closed cases' older mail removed
//! ([`crate::privacy`]).
//!
//! A case waiting on the customer (`needs_info`) is paused: it is never
//! warned about or breached (the pipeline gives it a new deadline from the
//! customer's answer). Never sends mail itself (the outbox does) and never
//! reads the clock. Fails with [`SweepError`]; a case the customer answered
//! while it was being closed is a lost compare-and-set and is left alone.

use chrono::{DateTime, Duration, Utc};
use minijinja::{Environment, context};

use crate::config::Settings;
use crate::domain::{ReplyFacts, ReplyKind};
use crate::queue::{BusinessCalendar, Lifecycle};
use crate::reply::{self, RenderedReply, ReplyContext, ReplyEnvelope, ReplyError, Templates};
use crate::store::{AlertKind, CaseId, CaseRow, CaseStatus, NewReply, Store, StoreError};

/// The team digest's body template.
const DIGEST: &str = include_str!("../../templates/escalation/digest.txt");
/// Longest customer subject quoted in the digest, in characters.
const MAX_SUBJECT_CHARS: usize = 80;

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database error during the deadline sweep")]
    Store(#[from] StoreError),
    #[error("cannot render the {what}")]
    Template {
        what: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("cannot compose the {what}")]
    Compose {
        what: &'static str,
        #[source]
        source: ReplyError,
    },
}

impl SweepError {
    /// Whether the next sweep can succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        match self {
            SweepError::Store(source) => source.is_transient(),
            SweepError::Template { .. } | SweepError::Compose { .. } => false,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Review cases newly found near their deadline.
    pub warned: Vec<CaseId>,
    /// Review cases newly found past their deadline.
    pub breached: Vec<CaseId>,
    /// Message-ID (without `<>`) of the digest queued for the team.
    pub digest_message_id: Option<String>,
    /// Cases closed after waiting on the customer.
    pub closed: Vec<CaseId>,
    /// Cases that changed while the sweep closed them (left alone).
    pub conflicts: usize,
    /// Messages whose raw bytes passed `[retention] raw_mail_days`.
    pub raw_removed: u64,
}

/// One pass: alerts and digest, closing abandoned cases (whose final note
/// is rendered with `templates`), then removing raw mail past its
/// retention.
#[tracing::instrument(skip_all, fields(stage = "sweep"))]
pub async fn sweep(
    store: &Store,
    settings: &Settings,
    templates: &Templates,
    now: DateTime<Utc>,
) -> Result<SweepReport, SweepError> {
    let lifecycle = settings.lifecycle();
    let mut report = SweepReport::default();
    escalate(store, settings, &lifecycle, now, &mut report).await?;
    close_abandoned(store, settings, templates, &lifecycle, now, &mut report).await?;
    report.raw_removed = crate::privacy::expire_raw_mail(store, &settings.retention, now).await?;
    if !report.warned.is_empty()
        || !report.breached.is_empty()
        || !report.closed.is_empty()
        || report.raw_removed > 0
    {
        tracing::info!(
            warned = report.warned.len(),
            breached = report.breached.len(),
            closed = report.closed.len(),
            raw_removed = report.raw_removed,
            "deadline sweep"
        );
    }
    Ok(report)
}

/// Whether a review case with `deadline` needs an alert now, given the
/// alerts it already has. Pure.
pub fn alert_due(
    calendar: &BusinessCalendar,
    deadline: DateTime<Utc>,
    warned: bool,
    breached: bool,
    warn_before: Duration,
    now: DateTime<Utc>,
) -> Option<AlertKind> {
    if now >= deadline {
        (!breached).then_some(AlertKind::Breached)
    } else if !warned && calendar.working_time_between(now, deadline) <= warn_before {
        Some(AlertKind::Nearing)
    } else {
        None
    }
}

struct Alerted {
    id: CaseId,
    kind: AlertKind,
    subject: String,
    deadline: DateTime<Utc>,
}

async fn escalate(
    store: &Store,
    settings: &Settings,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), SweepError> {
    let warn_before = settings.escalation.warn_before();
    let due: Vec<Alerted> = store
        .review_deadlines()
        .await?
        .into_iter()
        .filter_map(|c| {
            alert_due(
                lifecycle.calendar(),
                c.deadline,
                c.warned,
                c.breached,
                warn_before,
                now,
            )
            .map(|kind| Alerted {
                id: c.id,
                kind,
                subject: c.subject,
                deadline: c.deadline,
            })
        })
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let team = &settings.escalation.team_address;
    let digest_id =
        (!team.is_empty()).then(|| reply::new_message_id(&settings.reply.message_id_domain));
    let stored_id = digest_id
        .as_deref()
        .map(|id| id.trim_matches(['<', '>']).to_owned());

    let mut tx = store.begin().await?;
    let mut fresh = Vec::new();
    for alert in due {
        if !tx
            .record_deadline_alert(
                alert.id,
                alert.kind,
                alert.deadline,
                stored_id.as_deref(),
                now,
            )
            .await?
        {
            continue;
        }
        if alert.kind == AlertKind::Breached {
            let reason = format!(
                "the reply deadline {} passed without an answer",
                alert.deadline.to_rfc3339()
            );
            let breach = lifecycle
                .breached(alert.id, CaseStatus::Review, alert.deadline, reason, now)
                .map_err(StoreError::from)?;
            tx.apply_transition(&breach).await?;
        }
        tracing::warn!(case_id = %alert.id, kind = alert.kind.as_str(), "reply deadline alert");
        fresh.push(alert);
    }
    if fresh.is_empty() {
        tx.rollback().await?;
        return Ok(());
    }
    if let Some(message_id) = digest_id {
        let digest = digest(settings, lifecycle.calendar(), &fresh, message_id, now)?;
        report.digest_message_id = Some(digest.message_id.clone());
        tx.enqueue_reply(&digest).await?;
    }
    tx.commit().await?;
    for alert in fresh {
        match alert.kind {
            AlertKind::Nearing => report.warned.push(alert.id),
            AlertKind::Breached => report.breached.push(alert.id),
        }
    }
    Ok(())
}

/// The team digest, filed under the most urgent case (the outbox keeps
/// every mail with a case).
fn digest(
    settings: &Settings,
    calendar: &BusinessCalendar,
    alerts: &[Alerted],
    message_id: String,
    now: DateTime<Utc>,
) -> Result<NewReply, SweepError> {
    let line = |a: &Alerted| {
        let left = calendar.working_time_between(now, a.deadline);
        context! {
            tag => a.id.to_string(),
            due => local_time(calendar, a.deadline),
            left => format!("{}h {:02}m", left.num_hours(), left.num_minutes() % 60),
            subject => one_line(&a.subject),
        }
    };
    let breached: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Breached)
        .map(line)
        .collect();
    let nearing: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Nearing)
        .map(line)
        .collect();
    let (past, soon) = (breached.len(), nearing.len());
    let text = render(
        "team digest",
        DIGEST,
        context! {
            breached => breached,
            nearing => nearing,
            warn_hours => settings.escalation.warn_before_working_hours,
            business_days => settings.reply.review_business_days,
        },
    )?;
    let first = alerts
        .iter()
        .min_by_key(|a| a.deadline)
        .expect("a digest names at least one case");
    let subject = format!(
        "[refundd] {} past deadline, {} due soon (first: {})",
        past, soon, first.id
    );
    let rendered = RenderedReply {
        subject: subject.clone(),
        html: html_paragraphs(&text),
        text,
    };
    let envelope = ReplyEnvelope::new(
        &settings.reply,
        message_id,
        first.id.to_string(),
        settings.escalation.team_address.clone(),
        now,
    );
    let outgoing = reply::compose(&rendered, &envelope).map_err(|source| SweepError::Compose {
        what: "team digest",
        source,
    })?;
    Ok(NewReply {
        case_id: first.id,
        message_id: outgoing.message_id.trim_matches(['<', '>']).to_owned(),
        to_addr: settings.escalation.team_address.clone(),
        subject,
        raw: outgoing.raw,
        at: now,
    })
}

async fn close_abandoned(
    store: &Store,
    settings: &Settings,
    templates: &Templates,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), SweepError> {
    let days = settings.escalation.needs_info_close_after_days;
    let before = now - Duration::days(i64::from(days));
    for waiting in store.waiting_since(before).await? {
        let Some(case) = store.case(waiting.id).await? else {
            continue;
        };
        if case.status != CaseStatus::NeedsInfo {
            continue;
        }
        let note = closing_note(store, settings, templates, &case, days, now).await?;
        let reason =
            format!("no answer from the customer for {days} days; closed with a final note");
        let closing = lifecycle
            .abandoned(case.state(), &case.decision, reason, now)
            .map_err(StoreError::from)?;
        let mut tx = store.begin().await?;
        match tx.apply_transition(&closing).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                report.conflicts += 1;
                tx.rollback().await?;
                continue;
            }
            Err(err) => return Err(err.into()),
        }
        tx.enqueue_reply(&note).await?;
        tx.commit().await?;
        tracing::info!(case_id = %case.id, "case closed after waiting on the customer");
        report.closed.push(case.id);
    }
    Ok(())
}

/// The final note, threaded under the customer's messages.
async fn closing_note(
    store: &Store,
    settings: &Settings,
    templates: &Templates,
    case: &CaseRow,
    days: u32,
    now: DateTime<Utc>,
) -> Result<NewReply, SweepError> {
    let tag = case.id.to_string();
    let context = ReplyContext {
        kind: ReplyKind::NeedsInfoClosed,
        language: case.language,
        case_tag: tag.clone(),
        customer_name: None,
        original_subject: case.subject.clone(),
        facts: ReplyFacts {
            waited_days: Some(i64::from(days)),
            ..ReplyFacts::default()
        },
        review_deadline: None,
        personal_note: None,
    };
    let rendered = templates
        .renderer()
        .render(&context)
        .map_err(|source| SweepError::Compose {
            what: "final note",
            source,
        })?;
    let subject = rendered.subject.clone();
    let message_id = reply::new_message_id(&settings.reply.message_id_domain);
    let mut envelope =
        ReplyEnvelope::new(&settings.reply, message_id, tag, case.sender.clone(), now);
    let thread: Vec<String> = store
        .case_messages(case.id)
        .await?
        .into_iter()
        .filter_map(|m| m.message_id)
        .collect();
    envelope.in_reply_to = thread.last().cloned();
    envelope.references = thread;
    let outgoing = reply::compose(&rendered, &envelope).map_err(|source| SweepError::Compose {
        what: "final note",
        source,
    })?;
    Ok(NewReply {
        case_id: case.id,
        message_id: outgoing.message_id.trim_matches(['<', '>']).to_owned(),
        to_addr: case.sender.clone(),
        subject,
        raw: outgoing.raw,
        at: now,
    })
}

fn render(
    what: &'static str,
    source: &str,
    values: minijinja::Value,
) -> Result<String, SweepError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("default delimiters are a valid syntax");
    env.set_syntax(syntax);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(source, values)
        .map_err(|source| SweepError::Template { what, source })
}

/// `Tue 9 Jun 2026 16:00 CEST`: a deadline as the team reads it.
pub fn local_time(calendar: &BusinessCalendar, at: DateTime<Utc>) -> String {
    at.with_timezone(&calendar.zone())
        .format("%a %-d %b %Y %H:%M %Z")
        .to_string()
}

/// Customer text on one line, without control characters, capped.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_SUBJECT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// The plain text as an HTML document: escaped, one `<p>` per paragraph.
fn html_paragraphs(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let body: String = escaped
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>\n", p.trim().replace('\n', "<br>\n")))
        .collect();
    format!("<!DOCTYPE html>\n<html><body>\n{body}</body></html>\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Berlin
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_alert_is_raised_once_per_kind_as_the_deadline_approaches() {
        let cal = BusinessCalendar::new(
            Berlin,
            crate::queue::MONDAY_TO_FRIDAY,
            Default::default(),
            [],
        );
        let deadline = berlin(2026, 6, 9, 16, 0); // Tuesday
        let four = Duration::hours(4);
        let table = [
            (
                "a day and a half ahead is quiet",
                berlin(2026, 6, 8, 9, 0),
                false,
                false,
                None,
            ),
            (
                "Monday evening has 7 working hours left: quiet",
                berlin(2026, 6, 8, 18, 0),
                false,
                false,
                None,
            ),
            (
                "4 working hours left warns",
                berlin(2026, 6, 9, 12, 0),
                false,
                false,
                Some(AlertKind::Nearing),
            ),
            (
                "a warned case is not warned again",
                berlin(2026, 6, 9, 13, 0),
                true,
                false,
                None,
            ),
            (
                "at the deadline it is breached",
                berlin(2026, 6, 9, 16, 0),
                true,
                false,
                Some(AlertKind::Breached),
            ),
            (
                "never warned, past the deadline: breached only",
                berlin(2026, 6, 10, 9, 0),
                false,
                false,
                Some(AlertKind::Breached),
            ),
            (
                "a breached case is not breached again",
                berlin(2026, 6, 10, 9, 0),
                true,
                true,
                None,
            ),
        ];
        for (why, now, warned, breached, want) in table {
            assert_eq!(
                alert_due(&cal, deadline, warned, breached, four, now),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn customer_text_is_one_escaped_line_in_team_mail() {
        assert_eq!(one_line("Refund\r\nBcc: x@y"), "Refund Bcc: x@y");
        assert_eq!(
            one_line(&"a".repeat(100)).chars().count(),
            MAX_SUBJECT_CHARS + 1
        );
        assert_eq!(
            html_paragraphs("a <b>\n\nc & d"),
            "<!DOCTYPE html>\n<html><body>\n<p>a &lt;b&gt;</p>\n<p>c &amp; d</p>\n</body></html>\n"
        );
    }
}
