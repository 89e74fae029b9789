//! Admin routes: export and import of a bank to files under the portability roots, the
//! caller's bank list, maintenance jobs, legal holds, and issuing, listing and revoking API
//! keys. All sit behind [`AdminAccess`]; the data routes call the service in the caller's
//! tenant.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::JsonBody;
use crate::auth::{AdminAccess, Caller};
use crate::dto::{
    iso, BanksResponse, ErrorDetail, ExportBody, ExportResponse, ImportBody, ImportResponse,
    IssueKeyBody, IssuedKeyResponse, KeyInfo, KeysResponse, RevokedResponse,
};
use crate::error::ApiError;
use crate::state::AppState;

/// Exports a bank as AMA v1 JSON Lines to a file under the portability roots.
#[utoipa::path(post, path = "/v1/export", tag = "admin", request_body = ExportBody,
    responses(
        (status = 200, body = ExportResponse),
        (status = 400, body = ErrorDetail), (status = 401, body = ErrorDetail),
        (status = 403, body = ErrorDetail)))]
pub async fn export(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    JsonBody(body): JsonBody<ExportBody>,
) -> Result<Json<ExportResponse>, ApiError> {
    let count = state
        .service()
        .export_to_path(&caller, &body.bank_id, &body.path, body.include_embeddings)
        .await?;
    Ok(Json(ExportResponse {
        bank_id: body.bank_id,
        path: body.path,
        exported_count: count,
    }))
}

/// Imports AMA v1 JSON Lines from a file under the portability roots into a bank.
#[utoipa::path(post, path = "/v1/import", tag = "admin", request_body = ImportBody,
    responses(
        (status = 200, body = ImportResponse),
        (status = 400, body = ErrorDetail), (status = 401, body = ErrorDetail),
        (status = 403, body = ErrorDetail)))]
pub async fn import(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    JsonBody(body): JsonBody<ImportBody>,
) -> Result<Json<ImportResponse>, ApiError> {
    let on_conflict = body.on_conflict.into();
    let report = state
        .service()
        .import_from_path(&caller, &body.bank_id, &body.path, on_conflict)
        .await?;
    Ok(Json(ImportResponse::from(report)))
}

/// Lists the banks of the caller's tenant that hold memories.
#[utoipa::path(get, path = "/v1/admin/banks", tag = "admin",
    responses((status = 200, body = BanksResponse), (status = 401, body = ErrorDetail), (status = 403, body = ErrorDetail)))]
pub async fn banks(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
) -> Result<Json<BanksResponse>, ApiError> {
    Ok(Json(BanksResponse {
        banks: state.service().banks(&caller, None).await?,
    }))
}

/// `POST /v1/admin/jobs`: queue a maintenance job in the caller's tenant.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct EnqueueJobBody {
    /// `reembed`, `lifecycle`, `consolidate` or `observe` (asynchronous retain goes through
    /// `/v1/retain`).
    #[schema(pattern = "^(reembed|lifecycle|consolidate|observe)$")]
    pub kind: String,
    /// The job's input; always names a `bank_id`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// A second request with the same key returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Queues a re-embed, lifecycle, consolidate or observe job for a bank of the caller's tenant.
#[utoipa::path(post, path = "/v1/admin/jobs", tag = "admin", request_body = EnqueueJobBody,
    responses((status = 202, body = crate::dto::JobResponse), (status = 400, body = ErrorDetail),
        (status = 409, description = "The idempotency key was used for a different request", body = ErrorDetail),
        (status = 501, body = ErrorDetail)))]
pub async fn enqueue_job(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    JsonBody(body): JsonBody<EnqueueJobBody>,
) -> Result<(axum::http::StatusCode, Json<crate::dto::JobResponse>), ApiError> {
    let job = state
        .service()
        .enqueue_maintenance(&caller, &body.kind, body.payload, body.idempotency_key)
        .await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(job.into())))
}

/// Places (`PUT`) or lifts (`DELETE`) a legal hold on a bank: lifecycle jobs never touch a
/// held bank. Holds are tenant settings, so they persist across restarts.
#[utoipa::path(put, path = "/v1/admin/legal-holds/{bank_id}", tag = "admin",
    params(("bank_id" = String, Path, description = "The bank")),
    responses((status = 200, body = Object), (status = 501, body = ErrorDetail)))]
pub async fn put_legal_hold(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    Path(bank_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_legal_hold(&state, &caller, &bank_id, true).await
}

/// Lifts a legal hold.
#[utoipa::path(delete, path = "/v1/admin/legal-holds/{bank_id}", tag = "admin",
    params(("bank_id" = String, Path, description = "The bank")),
    responses((status = 200, body = Object), (status = 501, body = ErrorDetail)))]
pub async fn delete_legal_hold(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    Path(bank_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_legal_hold(&state, &caller, &bank_id, false).await
}

async fn set_legal_hold(
    state: &AppState,
    caller: &Caller,
    bank_id: &str,
    held: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bank = state
        .service()
        .set_legal_hold(caller, bank_id, held)
        .await?;
    Ok(Json(
        serde_json::json!({"bank_id": bank.to_string(), "legal_hold": held}),
    ))
}

/// Issues an API key for a principal in a tenant; the key is returned once.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = IssueKeyBody,
    responses(
        (status = 200, body = IssuedKeyResponse),
        (status = 400, body = ErrorDetail), (status = 401, body = ErrorDetail),
        (status = 403, body = ErrorDetail), (status = 501, body = ErrorDetail)))]
pub async fn issue_key(
    State(state): State<AppState>,
    _admin: AdminAccess,
    JsonBody(body): JsonBody<IssueKeyBody>,
) -> Result<Json<IssuedKeyResponse>, ApiError> {
    let issued = state
        .service()
        .issue_key(&body.tenant, &body.principal)
        .await?;
    Ok(Json(IssuedKeyResponse {
        key_id: issued.record.key_id,
        api_key: issued.api_key,
        tenant: issued.record.schema.to_string(),
        principal: issued.record.principal,
        created_at: iso(&issued.record.created_at),
    }))
}

/// Query of `GET /v1/admin/keys`.
#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    tenant: Option<String>,
}

/// Lists issued keys (never the keys themselves), optionally of one tenant.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    params(("tenant" = Option<String>, Query, description = "Only keys of this tenant")),
    responses((status = 200, body = KeysResponse), (status = 401, body = ErrorDetail),
        (status = 403, body = ErrorDetail), (status = 501, body = ErrorDetail)))]
pub async fn list_keys(
    State(state): State<AppState>,
    _admin: AdminAccess,
    Query(query): Query<KeysQuery>,
) -> Result<Json<KeysResponse>, ApiError> {
    let records = state.service().list_keys(query.tenant.as_deref()).await?;
    Ok(Json(KeysResponse {
        keys: records.into_iter().map(KeyInfo::from).collect(),
    }))
}

/// Revokes an issued key; it stops authenticating immediately.
#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, description = "The key's public id")),
    responses((status = 200, body = RevokedResponse), (status = 401, body = ErrorDetail),
        (status = 403, body = ErrorDetail), (status = 404, body = ErrorDetail), (status = 501, body = ErrorDetail)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: AdminAccess,
    Path(key_id): Path<String>,
) -> Result<Json<RevokedResponse>, ApiError> {
    state.service().revoke_key(&key_id).await?;
    Ok(Json(RevokedResponse {
        key_id,
        revoked: true,
    }))
}
