//! The memory routes: retain, recall, reflect, forget and history. Each handler checks access
//! and policy, converts the DTO, calls the [`Engine`](astrocyte_core::Engine) with the
//! caller's schema, and converts back; none holds retrieval logic.

use std::future::Future;
use std::time::Instant;

use astrocyte_core::jobs::NewJob;
use astrocyte_core::{
    BankId, ForgetMode, ForgetSelector, RecallFilter, RecallRequest, ReflectRequest, RetainRequest,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::JsonBody;
use crate::access::Permission;
use crate::auth::Caller;
use crate::dto::{
    clamp_results, clamp_tokens, ErrorDetail, ForgetBody, ForgetResponse, HistoryBody,
    HistoryResponse, JobResponse, MemoryHitDto, PiiRejectedBody, RateLimitedBody, RecallBody,
    RecallResponse, RecallTraceDto, ReflectBody, ReflectResponse, RetainBody, RetainResponse,
};
use crate::error::ApiError;
use crate::metrics;
use crate::policy::Operation;
use crate::state::AppState;

/// Validates a bank id and checks the caller's permission on it.
pub(crate) fn authorize(
    state: &AppState,
    caller: &Caller,
    bank_id: &str,
    permission: Permission,
) -> Result<BankId, ApiError> {
    let bank = BankId::new(bank_id)?;
    state
        .access()
        .check(
            caller.schema(),
            caller.principal.as_deref(),
            bank.as_str(),
            permission,
        )
        .map_err(ApiError::Forbidden)?;
    Ok(bank)
}

/// Runs an engine call, recording its latency and outcome for the caller's tenant.
async fn timed<T>(
    operation: &str,
    caller: &Caller,
    call: impl Future<Output = astrocyte_core::Result<T>>,
) -> Result<T, ApiError> {
    debug_assert_eq!(
        astrocyte_core::tenancy::bound_schema().as_ref(),
        Some(caller.schema()),
        "the tenant middleware binds the caller's schema"
    );
    let started = Instant::now();
    let result = call.await;
    metrics::global().operation(
        operation,
        caller.schema().as_str(),
        result.is_ok(),
        started.elapsed(),
    );
    Ok(result?)
}

/// Stores content in a bank.
#[utoipa::path(post, path = "/v1/retain", tag = "memory", request_body = RetainBody,
    responses(
        (status = 200, body = RetainResponse),
        (status = 400, body = ErrorDetail), (status = 403, body = ErrorDetail),
        (status = 413, body = ErrorDetail), (status = 422, body = PiiRejectedBody),
        (status = 429, body = RateLimitedBody)))]
pub async fn retain(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RetainBody>,
) -> Result<(StatusCode, Json<RetainResponse>), ApiError> {
    let bank = authorize(&state, &caller, &body.bank_id, Permission::Write)?;
    let ticket = state
        .policy()
        .admit_bank(caller.schema(), bank.as_str(), Operation::Retain)?;
    let content = match state.policy().pii().apply(&body.content) {
        Ok(verdict) => {
            if !verdict.found.is_empty() {
                tracing::warn!(pii_types = ?verdict.found, bank = %bank, "pii detected in retained content");
            }
            verdict.text
        }
        Err(rejected) => {
            state.policy().refund(ticket);
            return Err(ApiError::PiiRejected(rejected.pii_types));
        }
    };
    let request = RetainRequest {
        bank_id: bank.to_string(),
        content,
        tags: body.tags.unwrap_or_default(),
        metadata: body.metadata.unwrap_or_default(),
        occurred_at: body.occurred_at,
        content_type: body.content_type.unwrap_or_default().into(),
        ..Default::default()
    };
    if body.run_async {
        return match enqueue_retain(&state, &caller, request, body.idempotency_key).await {
            Ok(response) => Ok((StatusCode::ACCEPTED, Json(response))),
            Err(error) => {
                state.policy().refund(ticket);
                Err(error)
            }
        };
    }
    match timed(
        "retain",
        &caller,
        state.engine().retain(caller.schema(), request),
    )
    .await
    {
        Ok(outcome) => {
            if !outcome.stored {
                state.policy().refund(ticket);
            }
            Ok((StatusCode::OK, Json(outcome.into())))
        }
        Err(error) => {
            state.policy().refund(ticket);
            Err(error)
        }
    }
}

/// Validates like a synchronous retain would, then queues the work in the tenant's job queue.
async fn enqueue_retain(
    state: &AppState,
    caller: &Caller,
    request: RetainRequest,
    idempotency_key: Option<String>,
) -> Result<RetainResponse, ApiError> {
    // Reject what a synchronous retain would reject now, not later inside a worker.
    if let Some(error) = astrocyte_core::pipeline::validate::check_content(
        &request.content,
        &request.tags,
        &state.engine().config().limits,
    ) {
        return Ok(astrocyte_core::RetainOutcome::rejected(error).into());
    }
    let tenant = state.engine().store().tenant(caller.schema()).await?;
    let queue = tenant.jobs().ok_or_else(|| {
        astrocyte_core::Error::Unsupported(
            "this store has no job queue for asynchronous retain".into(),
        )
    })?;
    let payload = serde_json::to_value(&request)
        .map_err(|e| astrocyte_core::Error::Internal(e.to_string()))?;
    let job = queue
        .enqueue(NewJob {
            kind: astrocyte_core::jobs::kinds::RETAIN.into(),
            payload,
            idempotency_key,
            max_attempts: 5,
            run_at: chrono::Utc::now(),
        })
        .await?;
    Ok(RetainResponse {
        stored: false,
        memory_id: None,
        deduplicated: false,
        error: None,
        retention_action: None,
        curated: false,
        memory_layer: None,
        job_id: Some(job.id),
        job_state: Some(job.state.as_str().to_string()),
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
    let tenant = state.engine().store().tenant(caller.schema()).await?;
    let queue = tenant
        .jobs()
        .ok_or_else(|| astrocyte_core::Error::Unsupported("this store has no job queue".into()))?;
    let job = queue
        .job(&job_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {job_id:?}")))?;
    // A job is visible to whoever may read the bank it writes to.
    if let Some(bank) = job.payload.get("bank_id").and_then(|b| b.as_str()) {
        authorize(&state, &caller, bank, Permission::Read)?;
    }
    Ok(Json(job.into()))
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
    let requested = match (body.banks, body.bank_id) {
        (Some(banks), _) if !banks.is_empty() => banks,
        (_, Some(bank)) => vec![bank],
        _ => return Err(ApiError::BadRequest("bank_id or banks is required".into())),
    };
    let mut banks = Vec::with_capacity(requested.len());
    for bank_id in &requested {
        let bank = authorize(&state, &caller, bank_id, Permission::Read)?;
        let _no_quota =
            state
                .policy()
                .admit_bank(caller.schema(), bank.as_str(), Operation::Recall)?;
        banks.push(bank.to_string());
    }
    let limits = state.config().max_result_limit;
    let request = RecallRequest {
        query: body.query,
        banks,
        max_results: Some(clamp_results(body.max_results, 10, limits)),
        max_tokens: clamp_tokens(body.max_tokens),
        filter: RecallFilter {
            tags: body.tags,
            time_range: body.time_range,
            as_of: body.as_of,
            ..Default::default()
        },
    };
    let result = timed(
        "recall",
        &caller,
        state.engine().recall(caller.schema(), request),
    )
    .await?;
    Ok(Json(result.into()))
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
    let bank = authorize(&state, &caller, &body.bank_id, Permission::Read)?;
    let ticket = state
        .policy()
        .admit_bank(caller.schema(), bank.as_str(), Operation::Reflect)?;
    let request = ReflectRequest {
        query: body.query,
        bank_id: bank.to_string(),
        max_tokens: clamp_tokens(body.max_tokens),
    };
    let result = match timed(
        "reflect",
        &caller,
        state.engine().reflect(caller.schema(), request),
    )
    .await
    {
        Ok(result) => result,
        Err(error) => {
            state.policy().refund(ticket);
            return Err(error);
        }
    };
    Ok(Json(ReflectResponse {
        answer: result.answer,
        confidence: Some(result.confidence),
        sources: body
            .include_sources
            .then(|| result.sources.into_iter().map(MemoryHitDto::from).collect()),
        observations: None,
        authority_context: None,
    }))
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
    // Wiping a bank is an admin act; selective forgetting needs `forget`.
    let permission = if all {
        Permission::Admin
    } else {
        Permission::Forget
    };
    let bank = authorize(&state, &caller, &body.bank_id, permission)?;
    let selector = ForgetSelector {
        memory_ids: body.memory_ids,
        tags: body.tags,
        before: body.before_date,
        all,
    };
    let deleted = timed(
        "forget",
        &caller,
        state
            .engine()
            .forget(caller.schema(), bank.as_str(), &selector, ForgetMode::Soft),
    )
    .await?;
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
    let bank = authorize(&state, &caller, &body.bank_id, Permission::Read)?;
    let _no_quota = state
        .policy()
        .admit_bank(caller.schema(), bank.as_str(), Operation::Recall)?;
    let request = RecallRequest {
        query: body.query,
        banks: vec![bank.to_string()],
        max_results: Some(clamp_results(
            body.max_results,
            10,
            state.config().max_result_limit,
        )),
        max_tokens: clamp_tokens(body.max_tokens),
        filter: RecallFilter {
            tags: body.tags,
            as_of: Some(body.as_of),
            ..Default::default()
        },
    };
    let result = timed(
        "history",
        &caller,
        state.engine().recall(caller.schema(), request),
    )
    .await?;
    Ok(Json(HistoryResponse {
        hits: result.hits.into_iter().map(MemoryHitDto::from).collect(),
        total_available: result.total_available,
        truncated: result.truncated,
        as_of: body.as_of,
        bank_id: bank.to_string(),
        trace: Some(RecallTraceDto::from(result.trace)),
    }))
}
