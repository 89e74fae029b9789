//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types, and
//! served at `/openapi.json`. Hand-written paths are deliberately absent.

use axum::Json;
use utoipa::OpenApi;

use crate::dto;
use crate::routes::{admin, health, memory};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Astrocyte",
        description = "Memory for AI agents: retain, recall, reflect and forget over the reference gateway's wire contract."
    ),
    paths(
        health::live, health::health, health::metrics,
        memory::retain, memory::recall, memory::reflect, memory::forget, memory::history, memory::job_status,
        admin::export, admin::import, admin::banks, admin::enqueue_job, admin::put_legal_hold, admin::delete_legal_hold, admin::issue_key, admin::list_keys, admin::revoke_key,
    ),
    components(schemas(
        dto::ErrorDetail, dto::AuthenticationFailed, dto::PiiRejectedBody, dto::RateLimitedBody,
    )),
    tags(
        (name = "memory", description = "Tenant data: needs tenant authentication"),
        (name = "admin", description = "Needs X-Admin-Token, or loopback when no token is configured"),
        (name = "health", description = "Probes and metrics: no authentication"),
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
