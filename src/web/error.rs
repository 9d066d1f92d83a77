//! `WebError`: every way a console or API request can fail, each variant
//! documenting the HTTP status it answers with. Pages answer with a short
//! HTML page (or a redirect to sign in); the API answers with
//! `{"error": code, "message": text}` through [`ApiError`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::pipeline::review::ReviewError;
use crate::store::StoreError;

/// A request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// 401: not signed in (pages redirect to `/login`), or a missing or
    /// unknown API token.
    #[error("sign in first")]
    Unauthorized,
    /// 403: a form without the session's CSRF token, or an act the
    /// reviewer's role does not allow.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404: no such case, message or attachment.
    #[error("not found")]
    NotFound,
    /// 409: someone else changed the case first (or holds its claim).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but cannot be done as asked (an
    /// amount beyond what the order allows, an unknown reason).
    #[error("{0}")]
    Invalid(String),
    /// 429: too many failed sign-ins; wait and try again.
    #[error("too many failed sign-ins; try again in 15 minutes")]
    TooManyAttempts,
    /// 500: the database failed.
    #[error("database error")]
    Store(#[from] StoreError),
    /// 500: a reply could not be rendered, or something else broke.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            WebError::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Store(_) | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::Unauthorized => "unauthorized",
            WebError::Forbidden(_) => "forbidden",
            WebError::NotFound => "not_found",
            WebError::Conflict(_) => "conflict",
            WebError::Invalid(_) => "invalid",
            WebError::TooManyAttempts => "too_many_attempts",
            WebError::Store(_) | WebError::Internal(_) => "internal",
        }
    }

    /// Logged once here, where it is turned into a response.
    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = ?self, "console request failed");
        }
    }
}

impl From<ReviewError> for WebError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound(_) => WebError::NotFound,
            ReviewError::Conflict { case, detail } => WebError::Conflict(format!(
                "Someone else acted on case {case} first: {detail}. Nothing was sent."
            )),
            ReviewError::Invalid(reason) => WebError::Invalid(reason),
            ReviewError::Store(source) => WebError::Store(source),
            other @ ReviewError::Reply { .. } => WebError::Internal(format!("{other:#}")),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.log();
        if matches!(self, WebError::Unauthorized) {
            return Redirect::to("/login").into_response();
        }
        let status = self.status();
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title></head>\
             <body><h1>{status}</h1><p id=\"error\">{message}</p><p><a href=\"/\">Back to the queue</a></p></body></html>",
            code = status.as_u16(),
            status = status,
            message = escape(&self.to_string()),
        );
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

/// A [`WebError`] answered as JSON (the `/api` routes).
#[derive(Debug)]
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let mut response = (
            status,
            axum::Json(
                serde_json::json!({ "error": self.0.code(), "message": self.0.to_string() }),
            ),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Minimal HTML escaping for the fixed error page (templates auto-escape).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_answers_with_its_documented_status() {
        for (error, status, code) in [
            (WebError::Unauthorized, 401, "unauthorized"),
            (WebError::Forbidden("csrf"), 403, "forbidden"),
            (WebError::NotFound, 404, "not_found"),
            (WebError::Conflict("x".into()), 409, "conflict"),
            (WebError::Invalid("x".into()), 422, "invalid"),
            (WebError::TooManyAttempts, 429, "too_many_attempts"),
            (WebError::Internal("x".into()), 500, "internal"),
        ] {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn the_error_page_escapes_its_message() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#x27;");
    }
}
