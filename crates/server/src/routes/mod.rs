//! The router: one module per contract area, the JSON body extractor that gives malformed
//! bodies the contract's `{"detail": ...}` 400 shape, and the middleware stack.

pub mod admin;
pub mod health;
pub mod memory;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::observability;
use crate::state::AppState;

/// A JSON request body. Content type is not checked (the reference's clients do not always set
/// it); parse errors name the offending field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn describe_json_error(error: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let mut message = error.into_inner().to_string();
    // Line and column of a one-line body help nobody; the field path does.
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    if path == "." || path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(deserializer)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(describe_json_error(e)))
    }
}

/// Every route of the contract, without middleware or state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/live", get(health::live))
        .route("/health/live", get(health::live))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/v1/retain", post(memory::retain))
        .route("/v1/recall", post(memory::recall))
        .route("/v1/reflect", post(memory::reflect))
        .route("/v1/forget", post(memory::forget))
        .route("/v1/history", post(memory::history))
        .route("/v1/jobs/{job_id}", get(memory::job_status))
        .route("/v1/export", post(admin::export))
        .route("/v1/import", post(admin::import))
        .route("/v1/admin/banks", get(admin::banks))
        .route("/v1/admin/jobs", post(admin::enqueue_job))
        .route(
            "/v1/admin/legal-holds/{bank_id}",
            axum::routing::put(admin::put_legal_hold).delete(admin::delete_legal_hold),
        )
        .route(
            "/v1/admin/keys",
            post(admin::issue_key).get(admin::list_keys),
        )
        .route("/v1/admin/keys/{key_id}", delete(admin::revoke_key))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

async fn method_not_allowed() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "detail": "Method Not Allowed" })),
    )
}

/// The full application: `routes()` plus `extra` (e.g. MCP) behind one middleware stack —
/// request id, span, metrics and access log outermost, then the body cap, then the tenant
/// middleware around every handler.
pub fn app_with(state: AppState, extra: Vec<Router<AppState>>) -> Router {
    let limit = state.config().max_request_body_bytes;
    let mut router = routes();
    for routes in extra {
        router = router.merge(routes);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::tenant_middleware,
        ))
        .layer(match limit {
            Some(bytes) => DefaultBodyLimit::max(bytes),
            None => DefaultBodyLimit::disable(),
        })
        .layer(middleware::from_fn(
            move |request: Request, next: middleware::Next| {
                observability::body_cap(limit, request, next)
            },
        ))
        .layer(middleware::from_fn(observability::observe))
        .with_state(state)
}
