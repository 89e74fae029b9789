//! Browsing and managing a bank: listings, one memory (get, edit, forget), the change feed,
//! bank summaries, and export and import as a download and an upload. Each handler decodes,
//! calls the service and encodes.

use astrocyte_core::browse::MemoryPatch;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::{Arc, OnceLock};

use futures::TryStreamExt;

use super::JsonBody;
use crate::auth::{AdminAccess, Caller};
use crate::dto::browse::{
    BankSummariesResponse, BankSummaryDto, ChangesParams, ChangesResponse, EntitiesParams,
    EntitiesResponse, ExportParams, ForgottenResponse, ListParams, MemoryDetailResponse, MemoryDto,
    MemoryPageResponse, UpdateMemoryBody, UploadParams,
};
use crate::dto::{comma_list, open_range, optional_field_datetime, ErrorDetail, ImportResponse};
use crate::error::ApiError;
use crate::service::ListMemories;
use crate::state::AppState;

/// Lists the caller's readable banks with their memory counts and newest retain.
#[utoipa::path(get, path = "/v1/banks", operation_id = "list_bank_summaries", tag = "memory",
    responses((status = 200, body = BankSummariesResponse), (status = 401, body = ErrorDetail)))]
pub async fn banks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<BankSummariesResponse>, ApiError> {
    let summaries = state.service().bank_summaries(&caller).await?;
    Ok(Json(BankSummariesResponse {
        banks: summaries.into_iter().map(BankSummaryDto::from).collect(),
    }))
}

/// Lists a bank's memories, newest first (or by id), a page at a time.
#[utoipa::path(get, path = "/v1/banks/{bank_id}/memories", operation_id = "list_memories", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"), ListParams),
    responses((status = 200, body = MemoryPageResponse), (status = 400, body = ErrorDetail),
        (status = 403, body = ErrorDetail)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(bank_id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<MemoryPageResponse>, ApiError> {
    // Given but empty is refused as the document says (a date-time), never read as "no bound".
    for (field, value) in [("start", &params.start), ("end", &params.end)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::BadRequest(format!(
                "{field} must be an ISO 8601 date-time"
            )));
        }
    }
    let start = optional_field_datetime("start", params.start)?;
    let end = optional_field_datetime("end", params.end)?;
    let time_range = open_range(start, end);
    let command = ListMemories {
        bank_id,
        limit: params.limit,
        cursor: params.cursor,
        order: params.order,
        tags: comma_list(params.tags.as_deref()),
        fact_types: comma_list(params.fact_type.as_deref()),
        time_range,
        text_prefix: params.text_prefix,
        text_contains: params.contains,
    };
    let page = state.service().list_memories(&caller, command).await?;
    Ok(Json(page.into()))
}

/// One memory with its retain's chunks and its change history.
#[utoipa::path(get, path = "/v1/banks/{bank_id}/memories/{memory_id}", operation_id = "get_memory", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"),
        ("memory_id" = String, Path, description = "The memory")),
    responses((status = 200, body = MemoryDetailResponse), (status = 403, body = ErrorDetail),
        (status = 404, body = ErrorDetail)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((bank_id, memory_id)): Path<(String, String)>,
) -> Result<Json<MemoryDetailResponse>, ApiError> {
    let detail = state
        .service()
        .memory(&caller, &bank_id, &memory_id)
        .await?;
    Ok(Json(detail.into()))
}

/// Replaces a memory's tags and/or metadata.
#[utoipa::path(patch, path = "/v1/banks/{bank_id}/memories/{memory_id}", operation_id = "update_memory", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"),
        ("memory_id" = String, Path, description = "The memory")),
    request_body = UpdateMemoryBody,
    responses((status = 200, body = MemoryDto), (status = 400, body = ErrorDetail),
        (status = 403, body = ErrorDetail), (status = 404, body = ErrorDetail)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((bank_id, memory_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMemoryBody>,
) -> Result<Json<MemoryDto>, ApiError> {
    let patch = MemoryPatch {
        tags: body.tags,
        metadata: body.metadata,
    };
    let memory = state
        .service()
        .update_memory(&caller, &bank_id, &memory_id, patch)
        .await?;
    Ok(Json(memory.into()))
}

/// Forgets one memory.
#[utoipa::path(delete, path = "/v1/banks/{bank_id}/memories/{memory_id}", operation_id = "forget_memory", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"),
        ("memory_id" = String, Path, description = "The memory")),
    responses((status = 200, body = ForgottenResponse), (status = 403, body = ErrorDetail),
        (status = 404, body = ErrorDetail)))]
pub async fn forget(
    State(state): State<AppState>,
    caller: Caller,
    Path((bank_id, memory_id)): Path<(String, String)>,
) -> Result<Json<ForgottenResponse>, ApiError> {
    state
        .service()
        .forget_memory(&caller, &bank_id, &memory_id)
        .await?;
    Ok(Json(ForgottenResponse {
        memory_id,
        forgotten: true,
    }))
}

/// A bank's change feed: created, updated and forgotten entries after a cursor, oldest first.
#[utoipa::path(get, path = "/v1/banks/{bank_id}/changes", operation_id = "list_changes", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"), ChangesParams),
    responses((status = 200, body = ChangesResponse), (status = 400, body = ErrorDetail),
        (status = 403, body = ErrorDetail)))]
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    Path(bank_id): Path<String>,
    Query(params): Query<ChangesParams>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let page = state
        .service()
        .changes(&caller, &bank_id, params.since, params.limit, params.tail)
        .await?;
    Ok(Json(page.into()))
}

/// A bank's entities (people, places, organisations, products its memories name), counted over
/// its visible memories, most-mentioned first.
#[utoipa::path(get, path = "/v1/banks/{bank_id}/entities", operation_id = "list_entities", tag = "memory",
    params(("bank_id" = String, Path, description = "The bank"), EntitiesParams),
    responses((status = 200, body = EntitiesResponse), (status = 400, body = ErrorDetail),
        (status = 403, body = ErrorDetail)))]
pub async fn entities(
    State(state): State<AppState>,
    caller: Caller,
    Path(bank_id): Path<String>,
    Query(params): Query<EntitiesParams>,
) -> Result<Json<EntitiesResponse>, ApiError> {
    let entities = state
        .service()
        .entities(&caller, &bank_id, params.prefix, params.kind, params.limit)
        .await?;
    Ok(Json(EntitiesResponse {
        entities: entities.into_iter().map(Into::into).collect(),
    }))
}

/// Downloads a bank as AMA v1 JSON Lines, streamed.
#[utoipa::path(get, path = "/v1/banks/{bank_id}/export", operation_id = "export_bank", tag = "admin",
    params(("bank_id" = String, Path, description = "The bank"), ExportParams),
    responses((status = 200, description = "AMA v1 JSON Lines", content_type = "application/x-ndjson", body = String),
        (status = 401, body = ErrorDetail), (status = 403, body = ErrorDetail)))]
pub async fn export(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    Path(bank_id): Path<String>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let stream = state
        .service()
        .export_stream(&caller, &bank_id, params.include_embeddings)?;
    let disposition = format!(
        "attachment; filename=\"{}.jsonl\"",
        bank_id.replace(['"', '\\'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Imports AMA v1 JSON Lines sent as the request body into a bank.
#[utoipa::path(post, path = "/v1/banks/{bank_id}/import", operation_id = "import_bank", tag = "admin",
    params(("bank_id" = String, Path, description = "The bank"), UploadParams),
    request_body(content = String, content_type = "application/x-ndjson", description = "AMA v1 JSON Lines"),
    responses((status = 200, body = ImportResponse), (status = 400, body = ErrorDetail),
        (status = 401, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 413, body = ErrorDetail)))]
pub async fn import(
    State(state): State<AppState>,
    _admin: AdminAccess,
    caller: Caller,
    Path(bank_id): Path<String>,
    Query(params): Query<UploadParams>,
    body: Body,
) -> Result<Json<ImportResponse>, ApiError> {
    let on_conflict = params.on_conflict.into();
    // A body over the cap (sent chunked, so not refused up front) or cut off is the
    // client's fault: a 413 or a 400, never the store error the import would report.
    let limit = state.config().max_request_body_bytes;
    let fault: Arc<OnceLock<BodyFault>> = Arc::default();
    let seen = fault.clone();
    let mut received = 0usize;
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            received += chunk.len();
            let over = limit.is_some_and(|limit| received > limit);
            if over {
                let _ = seen.set(BodyFault::TooLarge);
            }
            std::future::ready(if over {
                Err(std::io::Error::other("request body too large"))
            } else {
                Ok(chunk)
            })
        });
    let broken = fault.clone();
    let stream = stream.inspect_err(move |error| {
        let _ = broken.set(BodyFault::Broken(error.to_string()));
    });
    let reader = tokio::io::BufReader::new(tokio_util::io::StreamReader::new(stream));
    let result = state
        .service()
        .import_from(&caller, &bank_id, on_conflict, reader)
        .await;
    match (result, fault.get()) {
        (Ok(report), None) => Ok(Json(report.into())),
        (_, Some(BodyFault::TooLarge)) => Err(ApiError::PayloadTooLarge),
        (_, Some(BodyFault::Broken(reason))) => Err(ApiError::BadRequest(format!(
            "the request body could not be read: {reason}"
        ))),
        (Err(error), None) => Err(error),
    }
}

/// Why an uploaded body stopped.
#[derive(Debug)]
enum BodyFault {
    TooLarge,
    Broken(String),
}
