//! The memory routes: retain, recall, reflect, forget, history and job status. Each handler
//! decodes its body into a service command, calls the [`Service`](crate::service::Service)
//! and encodes the result; grants, limits, PII and metrics live in the service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::JsonBody;
use crate::auth::Caller;
use crate::dto::{
    ErrorDetail, ForgetBody, ForgetResponse, HistoryBody, HistoryResponse, JobResponse,
    MemoryHitDto, PiiRejectedBody, RateLimitedBody, RecallBody, RecallResponse, RecallTraceDto,
    ReflectBody, ReflectResponse, RetainBody, RetainResponse,
};
use crate::error::ApiError;
use crate::service::{Forget, History, Recall, Reflect, Retain, Retained};
use crate::state::AppState;

/// Stores content in a bank.
#[utoipa::path(post, path = "/v1/retain", tag = "memory", request_body = RetainBody,
    responses(
        (status = 200, body = RetainResponse),
        (status = 202, description = "Queued (`async`): `job_id` and `job_state`", body = RetainResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 409, description = "`async` with an idempotency key used for a different request", body = ErrorDetail),
        (status = 413, body = ErrorDetail), (status = 422, body = PiiRejectedBody),
        (status = 429, body = RateLimitedBody)))]
pub async fn retain(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RetainBody>,
) -> Result<(StatusCode, Json<RetainResponse>), ApiError> {
    let command = Retain {
        bank_id: body.bank_id,
        content: body.content,
        tags: body.tags.unwrap_or_default(),
        metadata: body.metadata.unwrap_or_default(),
        occurred_at: body.occurred_at,
        content_type: body.content_type.unwrap_or_default().into(),
        run_async: body.run_async,
        idempotency_key: body.idempotency_key,
        thread_id: body.thread_id,
    };
    Ok(match state.service().retain(&caller, command).await? {
        retained @ Retained::Queued(_) => (StatusCode::ACCEPTED, Json(retained.into())),
        retained @ Retained::Done(_) => (StatusCode::OK, Json(retained.into())),
    })
}

/// Reports a background job of the caller's tenant.
#[utoipa::path(get, path = "/v1/jobs/{job_id}", tag = "memory",
    params(("job_id" = String, Path, description = "The job id")),
    responses((status = 200, body = JobResponse), (status = 404, body = ErrorDetail)))]
pub async fn job_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    Ok(Json(state.service().job(&caller, &job_id).await?.into()))
}

/// Recalls memories from one or more banks by hybrid retrieval.
#[utoipa::path(post, path = "/v1/recall", tag = "memory", request_body = RecallBody,
    responses(
        (status = 200, body = RecallResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 429, body = RateLimitedBody)))]
pub async fn recall(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RecallBody>,
) -> Result<Json<RecallResponse>, ApiError> {
    // `banks` wins over `bank_id`, but a malformed `bank_id` is refused, never ignored.
    if let Some(bank) = &body.bank_id {
        astrocyte_core::BankId::new(bank)?;
    }
    let banks = match (body.banks, body.bank_id) {
        (Some(banks), _) if !banks.is_empty() => banks,
        (_, Some(bank)) => vec![bank],
        _ => Vec::new(),
    };
    let command = Recall {
        query: body.query,
        banks,
        max_results: body.max_results,
        max_tokens: body.max_tokens,
        tags: body.tags,
        time_range: body.time_range,
        as_of: body.as_of,
    };
    Ok(Json(state.service().recall(&caller, command).await?.into()))
}

/// Answers a question from a bank's memories.
#[utoipa::path(post, path = "/v1/reflect", tag = "memory", request_body = ReflectBody,
    responses(
        (status = 200, body = ReflectResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 429, body = RateLimitedBody), (status = 503, body = ErrorDetail)))]
pub async fn reflect(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ReflectBody>,
) -> Result<Json<ReflectResponse>, ApiError> {
    let command = Reflect {
        query: body.query,
        bank_id: body.bank_id,
        max_tokens: body.max_tokens,
    };
    let result = state.service().reflect(&caller, command).await?;
    Ok(Json(ReflectResponse::new(result, body.include_sources)))
}

/// Forgets memories by id, tag or date, or a whole bank with `scope: "all"`.
#[utoipa::path(post, path = "/v1/forget", tag = "memory", request_body = ForgetBody,
    responses(
        (status = 200, body = ForgetResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail)))]
pub async fn forget(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ForgetBody>,
) -> Result<Json<ForgetResponse>, ApiError> {
    let all = match body.scope.as_deref() {
        None => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "scope must be \"all\" when given, not {other:?}"
            )))
        }
    };
    let command = Forget {
        bank_id: body.bank_id,
        memory_ids: body.memory_ids,
        tags: body.tags,
        before: body.before_date,
        all,
    };
    let deleted = state.service().forget(&caller, command).await?;
    Ok(Json(ForgetResponse {
        deleted_count: deleted,
        archived_count: 0,
    }))
}

/// Recalls what a bank held at a past instant.
#[utoipa::path(post, path = "/v1/history", tag = "memory", request_body = HistoryBody,
    responses(
        (status = 200, body = HistoryResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 429, body = RateLimitedBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<HistoryBody>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let command = History {
        query: body.query,
        bank_id: body.bank_id,
        as_of: body.as_of,
        max_results: body.max_results,
        max_tokens: body.max_tokens,
        tags: body.tags,
    };
    let (bank, result) = state.service().history(&caller, command).await?;
    Ok(Json(HistoryResponse {
        hits: result.hits.into_iter().map(MemoryHitDto::from).collect(),
        total_available: result.total_available,
        truncated: result.truncated,
        as_of: body.as_of,
        bank_id: bank.to_string(),
        trace: Some(RecallTraceDto::from(result.trace)),
    }))
}
