//! The router: one module per contract area, the JSON body extractor that gives malformed
//! bodies the contract's `{"detail": ...}` 400 shape, and the middleware stack.

pub mod admin;
pub mod browse;
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

/// A JSON request body: no `Content-Type` (the reference's clients do not always set one), or
/// a JSON one (`application/json`, `application/*+json`); any other is a 415, as the
/// reference answers it, which also keeps a form on another site from posting here. Parse
/// errors name the offending field.
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

/// Bodies longer than this (in bytes) are parsed on the blocking pool, not a worker thread.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// Parses one JSON value and refuses anything after it but whitespace (`{…} GARBAGE` and two
/// concatenated objects are 400s, never "the first one").
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| ApiError::BadRequest(describe_json_error(e)))?;
    deserializer
        .end()
        .map_err(|_| ApiError::BadRequest("unexpected data after the JSON body".into()))?;
    Ok(value)
}

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(declared) = request.headers().get(axum::http::header::CONTENT_TYPE) {
            let text = declared.to_str().unwrap_or_default();
            let essence = text.split(';').next().unwrap_or_default().trim();
            let is_json = essence
                .to_ascii_lowercase()
                .strip_prefix("application/")
                .is_some_and(|sub| sub == "json" || sub.ends_with("+json"));
            if !is_json {
                let shown: String = text.chars().take(100).collect();
                return Err(ApiError::NotJson(format!("{shown:?}")));
            }
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        if bytes.len() > BLOCKING_PARSE_BYTES {
            tokio::task::spawn_blocking(move || parse_json(&bytes))
                .await
                .map_err(|e| {
                    ApiError::Core(astrocyte_core::Error::Internal(format!(
                        "parsing the body failed: {e}"
                    )))
                })?
                .map(JsonBody)
        } else {
            parse_json(&bytes).map(JsonBody)
        }
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
        .route("/v1/banks", get(browse::banks))
        .route("/v1/banks/{bank_id}/memories", get(browse::list))
        .route(
            "/v1/banks/{bank_id}/memories/{memory_id}",
            get(browse::get)
                .patch(browse::update)
                .delete(browse::forget),
        )
        .route("/v1/banks/{bank_id}/changes", get(browse::changes))
        .route("/v1/banks/{bank_id}/entities", get(browse::entities))
        .route("/v1/banks/{bank_id}/export", get(browse::export))
        .route("/v1/banks/{bank_id}/import", post(browse::import))
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

/// Longest non-JSON error body kept as the `detail` of its JSON replacement.
const MAX_PLAIN_ERROR_BYTES: usize = 4096;

/// Gives every error response the documented JSON shape: a 4xx or 5xx whose body is not JSON
/// (axum's plain-text `Path`/`Query` rejections, an undecodable path segment, the MCP
/// transport's 413/415, an empty HTTP-layer 400) becomes `{"detail": <its text or reason>}`
/// with the same status and headers.
async fn json_errors(request: Request, next: middleware::Next) -> axum::response::Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // JSON is already the shape; an HTML page (the inspector's) is for a person, not a client.
    if content_type.starts_with("application/json")
        || content_type.contains("+json")
        || content_type.starts_with("text/html")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string()
    } else {
        text
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// Most request headers served (hyper's own default cap); the connection's parser allows
/// up to [`crate::HTTP1_MAX_HEADERS`], so that past this one the refusal carries a JSON body.
pub(crate) const MAX_REQUEST_HEADERS: usize = 100;
/// Longest request target (path and query) served, in bytes: room for a listing's two text
/// filters at their longest (`MAX_TEXT_FILTER_BYTES`) percent-encoded, three bytes a byte.
/// Past 64 KiB hyper refuses a target itself, with an empty body.
pub(crate) const MAX_REQUEST_TARGET_BYTES: usize = 32 * 1024;

/// Refuses a request head past the limits above with 431 or 414; `json_errors` gives the
/// message the JSON error shape.
async fn request_head_limits(request: Request, next: middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let headers = request.headers().len();
    if headers > MAX_REQUEST_HEADERS {
        let detail = format!("Too many request headers: {headers}, at most {MAX_REQUEST_HEADERS}");
        return (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, detail).into_response();
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_REQUEST_TARGET_BYTES {
        let detail = format!(
            "The request target (path and query) is {target} bytes, at most {MAX_REQUEST_TARGET_BYTES}"
        );
        return (StatusCode::URI_TOO_LONG, detail).into_response();
    }
    next.run(request).await
}

/// The full application: `routes()` plus `extra` (e.g. MCP) behind one middleware stack —
/// request id, span, metrics and access log outermost, then the body cap, then the tenant
/// middleware around every handler.
pub fn app_with(state: AppState, extra: Vec<Router<AppState>>) -> Router {
    let limit = state.config().max_request_body_bytes;
    let mut router = routes();
    if state.config().ui_enabled {
        router = router.merge(crate::ui::routes());
    }
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
        .layer(middleware::from_fn_with_state(state.clone(), browser_guard))
        .layer(middleware::from_fn(request_head_limits))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(observability::observe))
        .with_state(state)
}

/// What a browser must not be made to do: read this server under another DNS name (the
/// `Host` allow-list), change it from another site's page (a cross-site write), or show it in
/// another site's frame (the security headers). MCP keeps its own host and origin lists.
async fn browser_guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path();
    if path == crate::mcp::MCP_PATH || path.starts_with("/mcp/") {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    if !state.config().host_allowed(host) {
        return ApiError::Forbidden(
            "Host header is not allowed (see ASTROCYTE_ALLOWED_HOSTS)".into(),
        )
        .into_response();
    }
    if !request.method().is_safe() {
        if let Err(refused) = same_origin(request.headers()) {
            // The inspector's refusals are pages, as its own are; the API's are JSON.
            let mut response = if path == "/ui" || path.starts_with("/ui/") {
                crate::ui::error_page(refused)
            } else {
                refused.into_response()
            };
            // The body is left unread: the connection closes after this answer.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return response;
        }
    }
    let mut response = next.run(request).await;
    // No other site may frame a page (a hidden inspector button under a user's click), and
    // nothing served is to be sniffed into another type or leak its URL to other sites.
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers
            .entry(name)
            .or_insert(axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Refuses a write that another site made the browser send.
fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let text =
        |name: axum::http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(axum::http::header::HeaderName::from_static(
        "sec-fetch-site",
    ))
    .is_some_and(|site| site == "cross-site" || site == "same-site")
    {
        return Err(ApiError::Forbidden(
            "a form on another site cannot change this server's memories".into(),
        ));
    }
    if let (Some(origin), Some(host)) = (
        text(axum::http::header::ORIGIN),
        text(axum::http::header::HOST),
    ) {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(origin);
        if origin_host != host {
            return Err(ApiError::Forbidden(
                "a form on another site cannot change this server's memories".into(),
            ));
        }
    }
    Ok(())
}
