//! The JSON API under `/api/`: every console action for scripts and
//! tools, authenticated by a reviewer's bearer token (no cookies, so no
//! CSRF token). Documented in `src/web/openapi.yaml`, served at
//! `/api/openapi.yaml`. Errors are `{"error": code, "message": text}` with
//! the status [`WebError`] documents; a lost compare-and-set is 409.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::ApiUser;
use super::pages::{self, BulkResult, QueueQuery, case_id};
use super::{ApiError, WebError, WebState};
use crate::pipeline::review::{Applied, CaseLimits, ReviewChoice, ReviewRequest};
use crate::store::{AuditEntry, CaseEvent, CaseId, QueuePage, StoredReply};

/// The OpenAPI description of this API.
const OPENAPI: &str = include_str!("openapi.yaml");

/// `GET /api/openapi.yaml`.
pub async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    response
}

/// Any other path under `/api/`: 404 in the API's envelope.
pub async fn not_found() -> ApiError {
    ApiError(WebError::NotFound)
}

/// `GET /api/queue`: open cases, earliest deadline first.
pub async fn queue(
    State(state): State<WebState>,
    _user: ApiUser,
    Query(query): Query<QueueQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<QueuePage>, ApiError> {
    let filter = query.filter(page.limit)?;
    Ok(Json(state.store().queue(&filter).await?))
}

/// `limit` of `/api/queue`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
}

/// One message of a case, as the API gives it.
#[derive(Debug, Serialize)]
pub struct ApiMessage {
    pub id: i64,
    pub message_id: Option<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub from: String,
    pub from_name: Option<String>,
    pub subject: String,
    /// The plain text (untrusted: escape before showing).
    pub text: String,
    /// The HTML body sanitized with the console's rules.
    pub html_sanitized: Option<String>,
    pub attachments: Vec<ApiAttachment>,
    /// Set when the raw mail was removed: `removed (retention)` or
    /// `erased` (every other field is then empty).
    pub removed: Option<String>,
}

/// One attachment's metadata.
#[derive(Debug, Serialize)]
pub struct ApiAttachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: usize,
}

/// `GET /api/cases/{id}`: everything the case page shows.
#[derive(Debug, Serialize)]
pub struct ApiCase {
    pub id: CaseId,
    pub sender: String,
    pub subject: String,
    pub status: crate::store::CaseStatus,
    pub version: i64,
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
    pub decision: crate::domain::Decision,
    pub claimed_by: Option<String>,
    pub limits: CaseLimits,
    pub messages: Vec<ApiMessage>,
    pub replies: Vec<ApiReply>,
    pub events: Vec<CaseEvent>,
    pub audit: Vec<AuditEntry>,
}

/// A reply of a case (without its bytes).
#[derive(Debug, Serialize)]
pub struct ApiReply {
    pub message_id: String,
    pub subject: String,
    pub status: crate::store::ReplyStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<StoredReply> for ApiReply {
    fn from(r: StoredReply) -> Self {
        ApiReply {
            message_id: r.message_id,
            subject: r.subject,
            status: r.status,
            created_at: r.created_at,
            sent_at: r.sent_at,
        }
    }
}

/// `GET /api/cases/{id}`.
pub async fn case(
    State(state): State<WebState>,
    _user: ApiUser,
    Path(id): Path<String>,
) -> Result<Json<ApiCase>, ApiError> {
    let id = case_id(&id)?;
    let store = state.store();
    let case = store.case(id).await?.ok_or(WebError::NotFound)?;
    let limits = state.desk().limits(&case).await?;
    let messages = store
        .case_messages(id)
        .await?
        .into_iter()
        .map(|m| {
            let parsed = crate::parse::parse(&m.raw).unwrap_or_default();
            ApiMessage {
                id: m.id,
                message_id: m.message_id,
                received_at: m.received_at,
                from: parsed
                    .from
                    .as_ref()
                    .map(|f| f.address.clone())
                    .unwrap_or_default(),
                from_name: parsed.from.and_then(|f| f.name),
                subject: parsed.subject,
                text: parsed.text,
                html_sanitized: parsed.html.as_deref().map(super::view::sanitize_html),
                attachments: parsed
                    .attachments
                    .into_iter()
                    .map(|a| ApiAttachment {
                        name: a.name,
                        content_type: a.content_type,
                        size: a.size,
                    })
                    .collect(),
                removed: m.removed.map(|(why, _)| why.shown_as().to_owned()),
            }
        })
        .collect();
    Ok(Json(ApiCase {
        id,
        sender: case.sender,
        subject: case.subject,
        status: case.status,
        version: case.version,
        deadline: case.deadline,
        decision: case.decision,
        claimed_by: store.case_claim(id).await?.map(|(who, _)| who),
        limits,
        messages,
        replies: store
            .replies_for_case(id)
            .await?
            .into_iter()
            .map(ApiReply::from)
            .collect(),
        events: store.case_events(id).await?,
        audit: store.audit_log(Some(id), 500).await?,
    }))
}

/// One reason a reviewer may deny with.
#[derive(Debug, Serialize)]
pub struct ApiDenyReason {
    /// What `{"action": "deny", "reason": …}` takes.
    pub id: String,
    pub label: String,
    pub clause: crate::domain::Clause,
    /// The reply kind the decision records (`reason_denied` for an
    /// operator's own template).
    pub reply: crate::domain::ReplyKind,
    /// The operator's body template, for `reason_denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// `GET /api/deny-reasons`: the shipped reasons and `[[review.deny_reasons]]`,
/// in the order the console lists them.
pub async fn deny_reasons(
    State(state): State<WebState>,
    _user: ApiUser,
) -> Json<Vec<ApiDenyReason>> {
    Json(
        state
            .desk()
            .deny_reasons()
            .all()
            .iter()
            .map(|r| ApiDenyReason {
                id: r.id.clone(),
                label: r.label.clone(),
                clause: r.clause,
                reply: r.reply_kind(),
                template: r.body_template().map(str::to_owned),
            })
            .collect(),
    )
}

/// The body of a preview: a choice and an optional personal note.
#[derive(Debug, Deserialize)]
pub struct PreviewBody {
    pub choice: ReviewChoice,
    #[serde(default)]
    pub personal_note: Option<String>,
}

/// What a preview returns.
#[derive(Debug, Serialize)]
pub struct PreviewReply {
    pub outcome: crate::domain::Outcome,
    pub actions: Vec<crate::domain::Action>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// `POST /api/cases/{id}/preview`: the reply a choice would send.
pub async fn preview(
    State(state): State<WebState>,
    user: ApiUser,
    Path(id): Path<String>,
    Json(body): Json<PreviewBody>,
) -> Result<Json<PreviewReply>, ApiError> {
    let id = case_id(&id)?;
    let preview = state
        .desk()
        .preview(
            id,
            &body.choice,
            &user.reviewer.email,
            body.personal_note,
            state.now(),
        )
        .await?;
    Ok(Json(PreviewReply {
        outcome: preview.decision.outcome,
        actions: preview.decision.actions,
        subject: preview.reply.subject,
        text: preview.reply.text,
        html: preview.reply.html,
    }))
}

/// The body of a decision.
#[derive(Debug, Deserialize)]
pub struct DecisionBody {
    /// The case version the caller saw (compare-and-set).
    pub version: i64,
    pub choice: ReviewChoice,
    #[serde(default)]
    pub personal_note: Option<String>,
}

/// `POST /api/cases/{id}/decision`: records a decision; 409 when the
/// version is stale.
pub async fn decide(
    State(state): State<WebState>,
    user: ApiUser,
    Path(id): Path<String>,
    Json(body): Json<DecisionBody>,
) -> Result<Json<Applied>, ApiError> {
    let id = case_id(&id)?;
    let applied = state
        .desk()
        .apply_reviewer_decision(
            &ReviewRequest {
                case_id: id,
                expected_version: body.version,
                reviewer: user.reviewer.email.clone(),
                admin: user.reviewer.role == crate::store::ReviewerRole::Admin,
                choice: body.choice,
                personal_note: body.personal_note,
            },
            state.now(),
        )
        .await?;
    Ok(Json(applied))
}

/// The body of a note.
#[derive(Debug, Deserialize)]
pub struct NoteBody {
    pub text: String,
}

/// `POST /api/cases/{id}/notes`: an internal note.
pub async fn note(
    State(state): State<WebState>,
    user: ApiUser,
    Path(id): Path<String>,
    Json(body): Json<NoteBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = case_id(&id)?;
    let audit_id = state
        .desk()
        .add_note(id, &user.reviewer.email, &body.text, state.now())
        .await?;
    Ok(Json(
        serde_json::json!({ "case_id": id, "audit_id": audit_id }),
    ))
}

/// The body of a claim.
#[derive(Debug, Default, Deserialize)]
pub struct ClaimBody {
    /// Admins only: take over someone else's claim.
    #[serde(default)]
    pub take_over: bool,
}

/// `POST /api/cases/{id}/claim`.
pub async fn claim(
    State(state): State<WebState>,
    user: ApiUser,
    Path(id): Path<String>,
    body: Option<Json<ClaimBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = case_id(&id)?;
    let take_over = body.map(|b| b.take_over).unwrap_or(false);
    pages::claim_case(&state, id, &user.reviewer, take_over).await?;
    Ok(Json(
        serde_json::json!({ "case_id": id, "claimed_by": user.reviewer.email }),
    ))
}

/// `DELETE /api/cases/{id}/claim`.
pub async fn release(
    State(state): State<WebState>,
    user: ApiUser,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = case_id(&id)?;
    pages::release_case(&state, id, &user.reviewer).await?;
    Ok(Json(
        serde_json::json!({ "case_id": id, "claimed_by": null }),
    ))
}

/// One case of a bulk approval.
#[derive(Debug, Deserialize)]
pub struct BulkCase {
    pub id: CaseId,
    pub version: i64,
}

/// The body of a bulk approval.
#[derive(Debug, Deserialize)]
pub struct BulkBody {
    pub cases: Vec<BulkCase>,
}

/// `POST /api/bulk/approve`: approves each case as proposed.
pub async fn bulk_approve(
    State(state): State<WebState>,
    user: ApiUser,
    Json(body): Json<BulkBody>,
) -> Result<Json<Vec<BulkResult>>, ApiError> {
    let cases: Vec<(CaseId, i64)> = body.cases.iter().map(|c| (c.id, c.version)).collect();
    Ok(Json(
        pages::bulk_approve(&state, &user.reviewer.email, &cases).await?,
    ))
}
