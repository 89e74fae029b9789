//! The one error type of every handler and middleware, and its exhaustive mapping from core's
//! [`ErrorKind`] to HTTP status and the reference's bodies. Internal details are logged here,
//! once, and never returned.

use astrocyte_core::ErrorKind;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::metrics;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An engine, store or provider error; the status comes from its kind.
    #[error(transparent)]
    Core(#[from] astrocyte_core::Error),
    /// The request is malformed (bad JSON, wrong types, missing fields).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the configured cap.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The tenant extension refused the request (fixed body, detail only in logs).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The caller's principal credential is missing or invalid.
    #[error("{0}")]
    Unauthorized(String),
    /// The principal lacks a permission, or the route is closed to it.
    #[error("{0}")]
    Forbidden(String),
    /// Something named in the path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The PII barrier rejected the content.
    #[error("Content rejected: PII detected ({})", .0.join(", "))]
    PiiRejected(Vec<String>),
    /// A rate limit or quota is exhausted.
    #[error("{detail}")]
    RateLimited {
        /// The reference's message.
        detail: String,
        /// When to retry.
        retry_after_seconds: f64,
    },
    /// A dependency did not answer in time.
    #[error("{0}")]
    Unavailable(String),
}

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

/// Maps a core error class to a status. Exhaustive on purpose: a new kind must be decided here.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Core(error) => {
                let kind = error.kind();
                let status = status_for(kind);
                match kind {
                    ErrorKind::InvalidInput
                    | ErrorKind::NotFound
                    | ErrorKind::Conflict
                    | ErrorKind::Forbidden
                    | ErrorKind::Unsupported => detail(status, error.to_string()),
                    ErrorKind::Unavailable => {
                        tracing::warn!(error = %error, "provider unavailable");
                        metrics::global().store_error("unavailable");
                        detail(status, "Provider unavailable")
                    }
                    ErrorKind::Internal => {
                        tracing::error!(error = %error, "internal error");
                        metrics::global().store_error("internal");
                        detail(status, "Internal server error")
                    }
                }
            }
            ApiError::BadRequest(message) => detail(StatusCode::BAD_REQUEST, message),
            ApiError::PayloadTooLarge => {
                detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            }
            ApiError::AuthenticationFailed => (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "authentication_failed" })),
            )
                .into_response(),
            ApiError::Unauthorized(message) => detail(StatusCode::UNAUTHORIZED, message),
            ApiError::Forbidden(message) => detail(StatusCode::FORBIDDEN, message),
            ApiError::NotFound(message) => detail(StatusCode::NOT_FOUND, message),
            ApiError::PiiRejected(pii_types) => {
                let message = format!("Content rejected: PII detected ({})", pii_types.join(", "));
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "detail": message, "pii_types": pii_types })),
                )
                    .into_response()
            }
            ApiError::RateLimited {
                detail: message,
                retry_after_seconds,
            } => {
                let rounded = (retry_after_seconds * 1000.0).ceil() / 1000.0;
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({ "detail": message, "retry_after_seconds": rounded })),
                )
                    .into_response();
                let whole_seconds = retry_after_seconds.ceil().max(1.0) as u64;
                if let Ok(value) = HeaderValue::from_str(&whole_seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            ApiError::Unavailable(message) => detail(StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status() {
        let cases = [
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::Unsupported, 501),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in cases {
            assert_eq!(status_for(kind).as_u16(), code, "{kind:?}");
        }
    }

    #[test]
    fn internal_details_are_not_returned() {
        let response = ApiError::Core(astrocyte_core::Error::Storage(
            "password=s3cret at db:5432".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = ApiError::RateLimited {
            detail: "x".into(),
            retry_after_seconds: 0.2,
        }
        .into_response();
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
