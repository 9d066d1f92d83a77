//! `WebError`: every way a console or API request can fail, each variant
//! documenting the HTTP status it answers with. Pages answer with a short
//! HTML page (or a redirect to sign in); the API answers with
//! `{"error": code, "message": text}` through [`ApiError`], also for the
//! errors the web framework produces before a handler runs (a body that is
//! not JSON, a query string that does not parse, an unknown route, …):
//! [`api_envelope`] turns those into the envelope.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
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
    /// 400: the request cannot be read: a body that is not JSON, a query
    /// string or a path that does not parse (the framework's rejections).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such case, message, attachment or route.
    #[error("not found")]
    NotFound,
    /// 405: the route exists, but not with this method.
    #[error("this route does not take this method")]
    MethodNotAllowed,
    /// 409: someone else changed the case first (or holds its claim).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the console reads (2 MiB).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415: a body without the content type the route reads (JSON for
    /// `/api`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the request is well-formed but cannot be done as asked (an
    /// amount beyond what the order allows, an unknown reason, a JSON body
    /// of the wrong shape).
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
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
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
            WebError::BadRequest(_) => "bad_request",
            WebError::Forbidden(_) => "forbidden",
            WebError::NotFound => "not_found",
            WebError::MethodNotAllowed => "method_not_allowed",
            WebError::Conflict(_) => "conflict",
            WebError::PayloadTooLarge => "payload_too_large",
            WebError::UnsupportedMediaType(_) => "unsupported_media_type",
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

/// The most of a framework error's text that is read to quote it.
const REJECTION_TEXT_LIMIT: usize = 16 * 1024;

/// Middleware: under `/api`, an error response that is not JSON (one the
/// web framework produced itself: a rejected body, query string or path,
/// an unknown route or method, a body too large) is answered again as the
/// envelope, with the same status and the framework's explanation as the
/// message. Responses the API's handlers made are left alone.
pub(super) async fn api_envelope(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path != "/api" && !path.starts_with("/api/") {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let framework_error: fn(String) -> WebError = match status {
        _ if is_json => return response,
        StatusCode::BAD_REQUEST => WebError::BadRequest,
        StatusCode::NOT_FOUND => |_| WebError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => |_| WebError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => |_| WebError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => WebError::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => WebError::Invalid,
        _ if status.is_server_error() => WebError::Internal,
        _ => return response,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_LIMIT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request rejected")
            .to_owned()
    } else {
        text
    };
    let mut answer = ApiError(framework_error(text)).into_response();
    // 405 says which methods the route takes.
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// HTML escaping for the fixed error page (templates auto-escape).
pub(crate) use crate::reply::escape_html as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_answers_with_its_documented_status() {
        for (error, status, code) in [
            (WebError::BadRequest("x".into()), 400, "bad_request"),
            (WebError::Unauthorized, 401, "unauthorized"),
            (WebError::Forbidden("csrf"), 403, "forbidden"),
            (WebError::NotFound, 404, "not_found"),
            (WebError::MethodNotAllowed, 405, "method_not_allowed"),
            (WebError::Conflict("x".into()), 409, "conflict"),
            (WebError::PayloadTooLarge, 413, "payload_too_large"),
            (
                WebError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
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
