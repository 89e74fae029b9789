//! Probes and scraping: liveness (checks nothing but the process), readiness against the store
//! with an 8 s bound, and Prometheus metrics. None of these needs tenant authentication.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::dto::{ErrorDetail, HealthResponse, LiveResponse};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Bounds `/health` when the store does not answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(8);

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
    let started = Instant::now();
    let checked = tokio::time::timeout(HEALTH_TIMEOUT, state.engine().store().health()).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let backend = state.engine().store().backend();
    match checked {
        Err(_) => Err(ApiError::Unavailable(
            "Health check timed out (dependencies such as the vector store did not respond in time).".into(),
        )),
        Ok(Ok(())) => Ok(Json(HealthResponse {
            healthy: true,
            message: format!("{backend} store reachable"),
            latency_ms,
            last_check_at: Some(chrono::Utc::now()),
        })
        .into_response()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health check failed");
            metrics::global().store_error("health");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthResponse {
                    healthy: false,
                    message: format!("{backend} store unavailable"),
                    latency_ms,
                    last_check_at: Some(chrono::Utc::now()),
                }),
            )
                .into_response())
        }
    }
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
