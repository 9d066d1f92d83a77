//! Composing a case's reply for the outbox: the rendered templates of the
//! decision's reply kind, threaded under the customer's latest message.
//! Shared by the engine ([`Pipeline`](super::Pipeline)) and reviewers
//! ([`review`](super::review)), so both send exactly the same mail.
//!
//! Takes the decision, who is answered and the reply stage's renderer;
//! gives a [`NewReply`] to enqueue in the decision's transaction. Never
//! stores or sends anything. Fails with [`ReplyError`] (a broken template,
//! a missing fact, a bad address).

use chrono::{DateTime, Utc};

use crate::config::ReplyConfig;
use crate::domain::{Decision, Language};
use crate::reply::{self, ReplyContext, ReplyEnvelope, ReplyError, ReplyRenderer};
use crate::store::{CaseId, NewReply};

/// Who a reply answers: the customer and the message being answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    /// The customer's address.
    pub to: String,
    /// The customer's display name, as sent (untrusted).
    pub name: Option<String>,
    /// The subject the customer wrote.
    pub subject: String,
    pub language: Language,
    /// The Message-ID of the message answered, without angle brackets.
    pub in_reply_to: Option<String>,
    /// Its `References`, oldest first.
    pub references: Vec<String>,
}

/// The reply context of a decision: its kind and facts, the case tag, the
/// customer's name and subject, the review deadline and a reviewer's note.
pub fn reply_context(
    case_id: CaseId,
    to: &Addressee,
    decision: &Decision,
    deadline: Option<DateTime<Utc>>,
    personal_note: Option<String>,
) -> ReplyContext {
    ReplyContext {
        kind: decision.reply,
        language: to.language,
        case_tag: case_id.to_string(),
        customer_name: to.name.clone(),
        original_subject: to.subject.clone(),
        facts: decision.reply_facts.clone(),
        review_deadline: deadline,
        personal_note,
    }
}

/// Renders and composes the reply of `context` to `to`, ready to enqueue.
pub fn compose_reply(
    renderer: &ReplyRenderer,
    config: &ReplyConfig,
    case_id: CaseId,
    to: &Addressee,
    context: &ReplyContext,
    now: DateTime<Utc>,
) -> Result<NewReply, ReplyError> {
    let rendered = renderer.render(context)?;
    let message_id = reply::new_message_id(&config.message_id_domain);
    let mut envelope = ReplyEnvelope::new(
        config,
        message_id,
        context.case_tag.clone(),
        to.to.clone(),
        now,
    );
    envelope.to_name = to.name.clone();
    envelope.in_reply_to = to.in_reply_to.clone();
    envelope.references = to.references.clone();
    let outgoing = reply::compose(&rendered, &envelope)?;
    Ok(NewReply {
        case_id,
        // Stored without angle brackets, as mail-parser reports the
        // In-Reply-To / References ids follow-ups are matched with.
        message_id: outgoing.message_id.trim_matches(['<', '>']).to_owned(),
        to_addr: to.to.clone(),
        subject: rendered.subject,
        raw: outgoing.raw,
        at: now,
    })
}

/// The decision whose reply stands by while a cash refund waits for Polar:
/// "a person will look", sent instead should the refund fail.
pub fn payment_fallback(decision: &Decision) -> Decision {
    let mut fallback = decision.clone();
    fallback.reply = crate::domain::ReplyKind::ReviewAcknowledged;
    fallback.reply_facts.template = None;
    fallback
}

/// Queues `reply` for sending, or, while the payment stage holds it (a
/// `fallback` is given), holds it beside its fallback; the engine and
/// reviewers both answer through here.
pub async fn queue_or_hold(
    tx: &mut crate::store::Tx,
    reply: &NewReply,
    fallback: Option<&NewReply>,
) -> Result<(), crate::store::StoreError> {
    use crate::store::HeldRole;
    match fallback {
        Some(fallback) => {
            tx.hold_reply(reply, HeldRole::Approved).await?;
            tx.hold_reply(fallback, HeldRole::Review).await?;
        }
        None => {
            tx.enqueue_reply(reply).await?;
        }
    }
    Ok(())
}
