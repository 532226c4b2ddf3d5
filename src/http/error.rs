//! One error type for the whole API; every error leaves as RFC 7807 problem JSON.

use crate::validation::InvalidParam;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use std::time::Duration;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Invalid { detail: String, params: Vec<InvalidParam> },
    #[error("{0}")]
    BadRequest(String),
    /// `challenge` is the WWW-Authenticate value: Bearer for the Voice API, Basic for account APIs.
    #[error("{detail}")]
    Unauthorized { detail: String, challenge: &'static str },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than the {0} bytes allowed")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A file refused whole; each entry names a line, a column and what is wrong there.
    #[error("{detail}")]
    InvalidRows { detail: String, rows: Vec<crate::billing::deck::RowError> },
    /// A Numbers API request refused, answered as Vonage answers it (HTTP 420, `error-code`
    /// "420" and the reason as `error-code-label`) in a problem JSON body.
    #[error("{label}")]
    NumberRefused { label: String, params: Vec<InvalidParam> },
    /// The account cannot pay for what it asked (Vonage's `low-balance`).
    #[error("{0}")]
    LowBalance(String),
    #[error("too many requests")]
    RateLimited { retry_after: Duration, what: &'static str },
    /// The client address, or the key it tries, failed to log in too often lately.
    #[error("too many failed logins")]
    LoginsThrottled { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(params: Vec<InvalidParam>) -> ApiError {
        ApiError::Invalid { detail: "Invalid request. See invalid_parameters field for details".into(), params }
    }

    fn code_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Invalid { .. } | ApiError::BadRequest(_) => ("bad-request", "Bad Request"),
            ApiError::Unauthorized { .. } => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not Found"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method Not Allowed"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload Too Large"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported Media Type"),
            ApiError::Unprocessable(_) => ("unprocessable-entity", "Unprocessable Entity"),
            ApiError::InvalidRows { .. } => ("invalid-rows", "Unprocessable Entity"),
            ApiError::NumberRefused { .. } => ("method-failed", "Method Failed"),
            ApiError::LowBalance(_) => ("low-balance", "Low balance"),
            ApiError::RateLimited { .. } | ApiError::LoginsThrottled { .. } => ("rate-limit", "Too Many Requests"),
            ApiError::Unavailable(_) => ("service-unavailable", "Service Unavailable"),
            ApiError::Internal(_) => ("internal-error", "Internal Server Error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::RateLimited { retry_after, what } => format!(
                "Too many {what} for this account; retry after {} s",
                retry_after.as_secs_f64().ceil().max(1.0)
            ),
            ApiError::LoginsThrottled { retry_after } => format!(
                "Too many failed logins from this address or with these credentials; retry after {} s",
                retry_after.as_secs_f64().ceil().max(1.0)
            ),
            // The cause is logged, never shown.
            ApiError::Internal(_) => "Something went wrong on our side; the request was not completed. Retry it.".into(),
            other => other.to_string(),
        }
    }
}

/// A problem JSON body; `instance` is a fresh id.
fn problem_body(code: &str, title: &str, detail: &str) -> serde_json::Value {
    json!({
        "type": format!("https://developer.vonage.com/api-errors#{code}"),
        "title": title,
        "detail": detail,
        "instance": uuid::Uuid::new_v4().simple().to_string(),
    })
}

/// A problem JSON response; `instance` is a fresh id that also appears in the logs.
pub fn problem(status: StatusCode, code: &str, title: &str, detail: &str, params: Option<&[InvalidParam]>) -> HttpResponse {
    let mut body = problem_body(code, title, detail);
    if let Some(params) = params {
        body["invalid_parameters"] = json!(params);
    }
    if status.is_server_error() {
        let instance = body["instance"].as_str().unwrap_or_default();
        tracing::error!(%instance, %status, detail, "request failed");
    }
    HttpResponse::build(status).content_type(PROBLEM_JSON).body(body.to_string())
}

/// A problem JSON response with one more member (`invalid_rows`, …).
pub fn problem_with(status: StatusCode, code: &str, title: &str, detail: &str, member: &str, value: serde_json::Value) -> HttpResponse {
    let mut body = problem_body(code, title, detail);
    body[member] = value;
    HttpResponse::build(status).content_type(PROBLEM_JSON).body(body.to_string())
}

/// Vonage's Numbers API answers a refusal with HTTP 420 (not a registered status: Vonage's own).
fn method_failed() -> StatusCode {
    StatusCode::from_u16(420).expect("420 is a valid status code")
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::InvalidRows { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NumberRefused { .. } => method_failed(),
            ApiError::LowBalance(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::RateLimited { .. } | ApiError::LoginsThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(cause, "internal error");
        }
        let (code, title) = self.code_and_title();
        let params = match self {
            ApiError::Invalid { params, .. } => Some(params.as_slice()),
            ApiError::NumberRefused { params, .. } if !params.is_empty() => Some(params.as_slice()),
            _ => None,
        };
        let mut response = match self {
            ApiError::InvalidRows { rows, .. } => problem_with(self.status_code(), code, title, &self.detail(), "invalid_rows", json!(rows)),
            ApiError::NumberRefused { label, .. } => {
                // Vonage's members, which the SDKs' users read, beside the problem's.
                let mut body = problem_body(code, title, label);
                body["error-code"] = json!("420");
                body["error-code-label"] = json!(label);
                if let Some(params) = params {
                    body["invalid_parameters"] = json!(params);
                }
                HttpResponse::build(self.status_code()).content_type(PROBLEM_JSON).body(body.to_string())
            }
            _ => problem(self.status_code(), code, title, &self.detail(), params),
        };
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized { challenge, .. } => {
                headers.insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
            }
            ApiError::RateLimited { retry_after, .. } | ApiError::LoginsThrottled { retry_after } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => ApiError::Unavailable("The database is busy; retry shortly".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
