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
    /// The body is declared as something other than JSON (a 415; invalid input elsewhere).
    #[error("Body is not JSON: send it with Content-Type: application/json, not {0}")]
    NotJson(String),
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

/// The transport-neutral kind of every failure: what REST maps to a status, MCP names in
/// `{"error": …}` and gRPC maps to a status code. One table, in [`ErrorCode::as_str`] and
/// [`ErrorCode::http_status`] here and `grpc::status_code` for gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed or invalid input.
    InvalidInput,
    /// No valid credential (the cause is never returned).
    Unauthenticated,
    /// The principal lacks a permission.
    Forbidden,
    /// Something named does not exist.
    NotFound,
    /// The request conflicts with stored state.
    Conflict,
    /// The body is over the cap.
    PayloadTooLarge,
    /// The PII barrier rejected the content.
    PiiRejected,
    /// A rate limit or quota is exhausted.
    RateLimited,
    /// Not supported by this deployment.
    Unsupported,
    /// A dependency did not answer.
    Unavailable,
    /// Our fault.
    Internal,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidInput,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::PiiRejected,
        ErrorCode::RateLimited,
        ErrorCode::Unsupported,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The wire name (MCP's `error`, gRPC's `x-astrocyte-error` trailer).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::PiiRejected => "pii_rejected",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PiiRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ErrorKind> for ErrorCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidInput => ErrorCode::InvalidInput,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Conflict => ErrorCode::Conflict,
            ErrorKind::Forbidden => ErrorCode::Forbidden,
            ErrorKind::Unsupported => ErrorCode::Unsupported,
            ErrorKind::Unavailable => ErrorCode::Unavailable,
            ErrorKind::Internal => ErrorCode::Internal,
        }
    }
}

impl ApiError {
    /// Whether writing to the client failed because it went away (a cancelled download):
    /// not a failure of the server, so neither logged nor counted as one.
    pub fn is_client_gone(&self) -> bool {
        matches!(self, ApiError::Core(astrocyte_core::Error::Io(error)) if matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        ))
    }

    /// The failure's kind.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Core(error) => error.kind().into(),
            ApiError::BadRequest(_) | ApiError::NotJson(_) => ErrorCode::InvalidInput,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::AuthenticationFailed | ApiError::Unauthorized(_) => {
                ErrorCode::Unauthenticated
            }
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::PiiRejected(_) => ErrorCode::PiiRejected,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// What the caller may read: the message for errors it can act on, a fixed text for a
    /// dependency or internal failure, whose cause is logged (and counted) here, once.
    pub fn public_detail(&self) -> String {
        match self {
            ApiError::Core(error) => match error.kind() {
                ErrorKind::Unavailable => {
                    tracing::warn!(error = %error, "dependency unavailable");
                    metrics::global().store_error("unavailable");
                    match error {
                        astrocyte_core::Error::StorageUnavailable(_) => {
                            "Storage unavailable".into()
                        }
                        _ => "Provider unavailable".into(),
                    }
                }
                ErrorKind::Internal => {
                    tracing::error!(error = %error, "internal error");
                    metrics::global().store_error("internal");
                    "Internal server error".into()
                }
                _ => error.to_string(),
            },
            ApiError::PayloadTooLarge => "Request body too large".into(),
            ApiError::AuthenticationFailed => "authentication failed".into(),
            ApiError::Unavailable(message) => {
                tracing::warn!(%message, "unavailable");
                message.clone()
            }
            other => other.to_string(),
        }
    }

    /// Seconds until a retry can succeed, rounded up to the millisecond (rate limits only).
    pub fn retry_after_seconds(&self) -> Option<f64> {
        match self {
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => Some((retry_after_seconds * 1000.0).ceil() / 1000.0),
            _ => None,
        }
    }
}

/// The challenge every 401 carries: issued API keys and JWTs are both accepted as bearer
/// tokens. It names the scheme only, never why the credential was refused.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"astrocyte\"";

/// Seconds a client should wait before retrying after a 503.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::NotJson(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => self.code().http_status(),
        };
        let mut response = self.body_response(status);
        match self.code() {
            ErrorCode::Unauthenticated => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(WWW_AUTHENTICATE),
                );
            }
            ErrorCode::Unavailable => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        if matches!(self, ApiError::PayloadTooLarge | ApiError::NotJson(_)) {
            // Refused before the body was read: the connection cannot carry another request,
            // and a client told so will not send its next one down a closing socket.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl ApiError {
    fn body_response(&self, status: StatusCode) -> Response {
        match self {
            ApiError::AuthenticationFailed => {
                (status, Json(json!({ "error": "authentication_failed" }))).into_response()
            }
            ApiError::PiiRejected(pii_types) => (
                status,
                Json(json!({ "detail": self.public_detail(), "pii_types": pii_types })),
            )
                .into_response(),
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => {
                let mut response = (
                    status,
                    Json(json!({
                        "detail": self.public_detail(),
                        "retry_after_seconds": self.retry_after_seconds(),
                    })),
                )
                    .into_response();
                let whole_seconds = retry_after_seconds.ceil().max(1.0) as u64;
                if let Ok(value) = HeaderValue::from_str(&whole_seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            _ => (status, Json(json!({ "detail": self.public_detail() }))).into_response(),
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
            assert_eq!(
                ErrorCode::from(kind).http_status().as_u16(),
                code,
                "{kind:?}"
            );
        }
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "names are distinct");
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
