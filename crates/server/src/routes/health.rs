//! Probes and scraping: liveness (checks nothing but the process), readiness against the store
//! with an 8 s bound, and Prometheus metrics. None of these needs tenant authentication.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::dto::{ErrorDetail, HealthResponse, LiveResponse};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// The process is up (does not check dependencies, so a database outage is no restart loop).
#[utoipa::path(get, path = "/live", tag = "health", responses((status = 200, body = LiveResponse)))]
pub async fn live() -> Json<LiveResponse> {
    Json(LiveResponse {
        status: "ok".into(),
    })
}

/// The store answers; 503 when it does not, or not within 8 s.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let health = state.service().health().await;
    if health.timed_out {
        return Err(ApiError::Unavailable(
            "Health check timed out (dependencies such as the vector store did not respond in time).".into(),
        ));
    }
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(HealthResponse {
            healthy: health.healthy,
            message: health.message,
            latency_ms: Some(health.latency_ms),
            last_check_at: Some(chrono::Utc::now()),
        }),
    )
        .into_response())
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 500, body = ErrorDetail)))]
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::global().render(),
    )
        .into_response()
}
