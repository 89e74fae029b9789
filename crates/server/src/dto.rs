//! Wire types of the reference contract and their conversions from core types. Core types are
//! never serialised directly, so a JSON change never ripples into core. Request types are lax
//! where the reference is (numeric strings for integers, naive datetimes as UTC, unknown keys
//! ignored) and strict about types otherwise.

use std::collections::BTreeMap;

use astrocyte_core::{RecallHit, RecallResult, RecallTrace, Timestamp};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

pub mod browse;

/// Lenient field parsers shared by the request types.
mod lax {
    use super::*;

    /// An integer given as a JSON number (whole) or a numeric string.
    fn to_int<E: serde::de::Error>(raw: Value) -> Result<i64, E> {
        match raw {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(v), _) => Ok(v),
                // Whole and within i64: a float beyond it would saturate silently.
                (None, Some(v)) if v.fract() == 0.0 && v.is_finite() && v.abs() < 9.2e18 => {
                    Ok(v as i64)
                }
                _ => Err(E::custom(format!("{n} is not an integer"))),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| E::custom(format!("{s:?} is not an integer"))),
            other => Err(E::custom(format!(
                "expected an integer, not {}",
                match other {
                    Value::Bool(_) => "a boolean",
                    Value::Array(_) => "a list",
                    _ => "an object",
                }
            ))),
        }
    }

    /// An optional integer given as a number or a numeric string.
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(raw) => to_int(raw).map(Some),
        }
    }

    /// Parses ISO 8601: with an offset, naive (taken as UTC), or a bare date (midnight UTC).
    pub fn parse_datetime(raw: &str) -> Result<Timestamp, String> {
        let raw = raw.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
            return Ok(t.with_timezone(&Utc));
        }
        for format in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
        ] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(raw, format) {
                return Ok(naive.and_utc());
            }
        }
        if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
                return Ok(midnight.and_utc());
            }
        }
        Err(format!("{raw:?} is not an ISO 8601 datetime"))
    }

    /// An optional ISO 8601 datetime.
    /// An optional ISO 8601 datetime; blank means absent, as MCP's tools read it.
    pub fn opt_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(raw) if raw.trim().is_empty() => Ok(None),
            Some(raw) => parse_datetime(&raw)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    /// A required ISO 8601 datetime.
    pub fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        parse_datetime(&raw).map_err(serde::de::Error::custom)
    }

    /// An optional `[start, end]` pair of datetimes.
    pub fn opt_range<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(Timestamp, Timestamp)>, D::Error> {
        match Option::<Vec<String>>::deserialize(d)? {
            None => Ok(None),
            Some(pair) if pair.len() == 2 => {
                let start = parse_datetime(&pair[0]).map_err(serde::de::Error::custom)?;
                let end = parse_datetime(&pair[1]).map_err(serde::de::Error::custom)?;
                Ok(Some((start, end)))
            }
            Some(other) => Err(serde::de::Error::custom(format!(
                "time_range needs exactly two datetimes, got {}",
                other.len()
            ))),
        }
    }
}

pub use lax::parse_datetime;

/// A datetime field of a transport's request (MCP arguments, gRPC messages), parsed as REST
/// parses its bodies; the error names the field.
pub fn field_datetime(field: &str, raw: &str) -> Result<Timestamp, crate::error::ApiError> {
    parse_datetime(raw).map_err(|e| crate::error::ApiError::BadRequest(format!("{field}: {e}")))
}

/// [`field_datetime`] for an optional field; blank means absent, as in REST bodies.
pub fn optional_field_datetime(
    field: &str,
    raw: Option<String>,
) -> Result<Option<Timestamp>, crate::error::ApiError> {
    raw.filter(|r| !r.trim().is_empty())
        .map(|r| field_datetime(field, &r))
        .transpose()
}

/// Comma-separated values (a query string's list), trimmed, empties dropped; `None` when
/// nothing is left.
pub fn comma_list(raw: Option<&str>) -> Option<Vec<String>> {
    let values: Vec<String> = raw?
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    (!values.is_empty()).then_some(values)
}

/// An inclusive range from optional ends; an open end is the edge of the range every store
/// keeps (0001-01-01 and 9999-12-31). `None` when neither end is given.
pub fn open_range(
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Option<(Timestamp, Timestamp)> {
    use chrono::TimeZone;
    if start.is_none() && end.is_none() {
        return None;
    }
    let first = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single()?;
    let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single()?;
    Some((start.unwrap_or(first), end.unwrap_or(last)))
}

/// Renders a timestamp as ISO 8601 with a `+00:00` offset, as Python's `isoformat()` does
/// (older Python clients cannot parse a `Z` suffix).
pub fn iso(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(t))
}

fn ser_opt_ts<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&iso(t)),
        None => s.serialize_none(),
    }
}

/// Clamps a requested result count into `[1, ceiling]`; absent means `default`.
pub fn clamp_results(requested: Option<i64>, default: usize, ceiling: usize) -> usize {
    let ceiling = ceiling.max(1);
    match requested {
        None => default.clamp(1, ceiling),
        Some(n) if n < 1 => 1,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(ceiling),
    }
}

/// A token budget is at least one token.
pub fn clamp_tokens(requested: Option<i64>) -> Option<usize> {
    requested.map(|n| usize::try_from(n.max(1)).unwrap_or(usize::MAX))
}

// --- Errors ------------------------------------------------------------------------------------

/// The error body of 400/403/404/413/501/503 responses.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong.
    pub detail: String,
}

/// The body of a 401: `{"error": "authentication_failed"}` when the tenant credential is
/// refused, `{"detail": …}` when the principal's is (no cause is ever given).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuthenticationFailed {
    /// `authentication_failed`, for a refused tenant credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is missing, for a refused principal credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The body of a PII rejection (422).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PiiRejectedBody {
    /// The reference's message.
    pub detail: String,
    /// Detected PII types that caused the rejection.
    pub pii_types: Vec<String>,
}

/// The body of a rate-limit or quota refusal (429).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateLimitedBody {
    /// The reference's message.
    pub detail: String,
    /// Seconds until a retry can succeed.
    pub retry_after_seconds: f64,
}

// --- Health ------------------------------------------------------------------------------------

/// `GET /live` and `/health/live`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveResponse {
    /// Always `ok`.
    pub status: String,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Whether the store answered.
    pub healthy: bool,
    /// A short description.
    pub message: String,
    /// How long the check took.
    pub latency_ms: Option<f64>,
    /// When the check ran.
    #[serde(serialize_with = "ser_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_check_at: Option<Timestamp>,
}

// --- Retain ------------------------------------------------------------------------------------

/// How content is chunked.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContentTypeDto {
    /// Sentences.
    #[default]
    Text,
    /// One chunk per turn.
    Conversation,
    /// Paragraphs, then sentences.
    Document,
}

impl From<ContentTypeDto> for astrocyte_core::ContentType {
    fn from(c: ContentTypeDto) -> Self {
        match c {
            ContentTypeDto::Text => astrocyte_core::ContentType::Text,
            ContentTypeDto::Conversation => astrocyte_core::ContentType::Conversation,
            ContentTypeDto::Document => astrocyte_core::ContentType::Document,
        }
    }
}

/// `POST /v1/retain`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RetainBody {
    /// The content to remember.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub content: String,
    /// Target bank.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// Flat metadata: string keys to scalars.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// When the remembered event happened (ISO 8601).
    #[serde(default, deserialize_with = "lax::opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<Timestamp>,
    /// Chunking mode.
    #[serde(default)]
    pub content_type: Option<ContentTypeDto>,
    /// Queue the retain and answer at once (202 with a `job_id`); the memory becomes
    /// recallable when a background worker has run the job.
    #[serde(default, rename = "async")]
    pub run_async: bool,
    /// With `async`: a second request with the same key returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The conversation or thread this content belongs to; its neighbours there lend each
    /// other keyword context. When absent, the metadata key `thread_id`, `conversation_id`,
    /// `session_id` or `session` (in that order) names it.
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// The retain result, shaped like the reference's `RetainResult`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetainResponse {
    /// Whether anything new was stored.
    pub stored: bool,
    /// The first stored (or matching duplicate) memory id.
    pub memory_id: Option<String>,
    /// Whether some or all of the content was a near-duplicate.
    pub deduplicated: bool,
    /// Why nothing was stored.
    pub error: Option<String>,
    /// Always null (no LLM curation).
    #[schema(value_type = Option<String>)]
    pub retention_action: Option<String>,
    /// Always false.
    pub curated: bool,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub memory_layer: Option<String>,
    /// The queued job, for an `async` retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The job's state, for an `async` retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<String>,
}

/// `GET /v1/jobs/{job_id}`: a background job's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobResponse {
    /// Job id.
    pub job_id: String,
    /// Job kind (`retain`, `reembed`, `lifecycle`, `consolidate`, `observe`).
    pub kind: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// The result of a done job (for a retain: the retain outcome).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Enqueue time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Last change.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<astrocyte_core::jobs::Job> for JobResponse {
    fn from(job: astrocyte_core::jobs::Job) -> Self {
        JobResponse {
            job_id: job.id,
            kind: job.kind,
            state: job.state.as_str().to_string(),
            attempts: job.attempts,
            last_error: job.last_error,
            result: job.result,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

impl From<astrocyte_core::RetainOutcome> for RetainResponse {
    fn from(o: astrocyte_core::RetainOutcome) -> Self {
        RetainResponse {
            stored: o.stored,
            memory_id: o.memory_id,
            deduplicated: o.deduplicated,
            error: o.error,
            retention_action: None,
            curated: false,
            memory_layer: None,
            job_id: None,
            job_state: None,
        }
    }
}

impl From<crate::service::Retained> for RetainResponse {
    fn from(retained: crate::service::Retained) -> Self {
        match retained {
            crate::service::Retained::Done(outcome) => outcome.into(),
            crate::service::Retained::Queued(job) => RetainResponse {
                stored: false,
                memory_id: None,
                deduplicated: false,
                error: None,
                retention_action: None,
                curated: false,
                memory_layer: None,
                job_state: Some(job.state.as_str().to_string()),
                job_id: Some(job.id),
            },
        }
    }
}

// --- Recall ------------------------------------------------------------------------------------

/// `POST /v1/recall`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecallBody {
    /// The query.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub query: String,
    /// One bank (or use `banks`).
    #[serde(default)]
    pub bank_id: Option<String>,
    /// Several banks.
    #[serde(default)]
    pub banks: Option<Vec<String>>,
    /// Maximum hits, clamped to `[1, ASTROCYTE_MAX_RESULT_LIMIT]`; default 10.
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[schema(value_type = Option<i64>)]
    pub max_results: Option<i64>,
    /// Token budget for the returned texts.
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[schema(value_type = Option<i64>)]
    pub max_tokens: Option<i64>,
    /// Only memories sharing at least one tag.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Inclusive `[start, end]` over when memories happened.
    #[serde(default, deserialize_with = "lax::opt_range")]
    #[schema(value_type = Option<Vec<String>>)]
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// Time travel: what was known at this instant.
    #[serde(default, deserialize_with = "lax::opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub as_of: Option<Timestamp>,
}

/// One recalled memory, shaped like the reference's `MemoryHit`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemoryHitDto {
    /// The memory's text.
    pub text: String,
    /// Relevance in [0, 1]: the weighted RRF sum over semantic, keyword and recency rankings
    /// divided by the largest possible sum (first in every ranking); 1.0 = best possible.
    pub score: f32,
    /// Kind of fact.
    pub fact_type: Option<String>,
    /// Metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// When it happened.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<String>,
    /// Origin.
    pub source: Option<String>,
    /// Memory id.
    pub memory_id: Option<String>,
    /// Bank.
    pub bank_id: Option<String>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub memory_layer: Option<String>,
    /// Always null.
    pub utility_score: Option<f32>,
    /// When it was stored.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retained_at: Option<String>,
    /// `<group>:<index>` when the memory is one chunk of a longer retain.
    pub chunk_id: Option<String>,
}

impl From<RecallHit> for MemoryHitDto {
    fn from(hit: RecallHit) -> Self {
        let m = hit.memory;
        MemoryHitDto {
            text: m.text,
            score: hit.score,
            fact_type: Some(m.fact_type),
            metadata: Some(m.metadata),
            tags: Some(m.tags),
            occurred_at: m.occurred_at.as_ref().map(iso),
            source: m.source,
            memory_id: Some(m.id),
            bank_id: Some(m.bank_id.to_string()),
            memory_layer: None,
            utility_score: None,
            retained_at: Some(iso(&m.retained_at)),
            chunk_id: m.chunk.map(|c| format!("{}:{}", c.group_id, c.index)),
        }
    }
}

/// How a recall was computed, shaped like the reference's `RecallTrace`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecallTraceDto {
    /// Strategies that ran.
    pub strategies_used: Vec<String>,
    /// Distinct candidates after fusion.
    pub total_candidates: usize,
    /// Always `rrf`.
    pub fusion_method: String,
    /// Engine wall time.
    pub latency_ms: f64,
    /// Time per strategy (and `embed`).
    pub strategy_timings_ms: BTreeMap<String, f64>,
    /// Candidates per strategy.
    pub strategy_candidate_counts: BTreeMap<String, usize>,
    /// Always null.
    pub tier_used: Option<i64>,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub layer_distribution: Option<BTreeMap<String, i64>>,
    /// Always false (no recall cache).
    pub cache_hit: bool,
    /// Always false.
    pub wiki_tier_used: bool,
}

impl From<RecallTrace> for RecallTraceDto {
    fn from(t: RecallTrace) -> Self {
        RecallTraceDto {
            strategies_used: t.strategies_used,
            total_candidates: t.total_candidates,
            fusion_method: t.fusion_method,
            latency_ms: t.latency_ms,
            strategy_timings_ms: t.strategy_timings_ms,
            strategy_candidate_counts: t.strategy_candidate_counts,
            tier_used: None,
            layer_distribution: None,
            cache_hit: false,
            wiki_tier_used: false,
        }
    }
}

/// The recall result, shaped like the reference's `RecallResult`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecallResponse {
    /// Hits, best first.
    pub hits: Vec<MemoryHitDto>,
    /// Candidates before truncation.
    pub total_available: usize,
    /// Whether hits were dropped to fit `max_results` or `max_tokens`.
    pub truncated: bool,
    /// How it was computed.
    pub trace: Option<RecallTraceDto>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub authority_context: Option<String>,
    /// Highest cosine similarity among the hits.
    pub top_semantic_score: f32,
}

impl From<RecallResult> for RecallResponse {
    fn from(r: RecallResult) -> Self {
        RecallResponse {
            hits: r.hits.into_iter().map(MemoryHitDto::from).collect(),
            total_available: r.total_available,
            truncated: r.truncated,
            trace: Some(r.trace.into()),
            authority_context: None,
            top_semantic_score: r.top_semantic_score,
        }
    }
}

// --- Reflect -----------------------------------------------------------------------------------

fn default_true() -> bool {
    true
}

/// `POST /v1/reflect`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReflectBody {
    /// The question.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub query: String,
    /// The bank to read.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// Token budget for the memories the answer rests on.
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[schema(value_type = Option<i64>)]
    pub max_tokens: Option<i64>,
    /// Whether to return the supporting memories (default true).
    #[serde(default = "default_true")]
    pub include_sources: bool,
}

/// The reflect result, shaped like the reference's `ReflectResult`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReflectResponse {
    /// The answer.
    pub answer: String,
    /// Confidence in [0, 1].
    pub confidence: Option<f32>,
    /// Supporting memories; null when `include_sources` is false.
    pub sources: Option<Vec<MemoryHitDto>>,
    /// Always null.
    #[schema(value_type = Option<Vec<String>>)]
    pub observations: Option<Vec<String>>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub authority_context: Option<String>,
}

impl ReflectResponse {
    /// The response for `result`, with its sources when asked for.
    pub fn new(result: astrocyte_core::ReflectResult, include_sources: bool) -> Self {
        ReflectResponse {
            answer: result.answer,
            confidence: Some(result.confidence),
            sources: include_sources
                .then(|| result.sources.into_iter().map(MemoryHitDto::from).collect()),
            observations: None,
            authority_context: None,
        }
    }
}

// --- Forget ------------------------------------------------------------------------------------

/// `POST /v1/forget`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgetBody {
    /// The bank.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// These memories.
    #[serde(default)]
    pub memory_ids: Option<Vec<String>>,
    /// Memories with any of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Memories from before this instant.
    #[serde(default, deserialize_with = "lax::opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub before_date: Option<Timestamp>,
    /// `all` forgets the whole bank (needs the admin permission).
    #[serde(default)]
    pub scope: Option<String>,
}

/// The forget result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgetResponse {
    /// Memories forgotten.
    pub deleted_count: u64,
    /// Always 0.
    pub archived_count: u64,
}

// --- History -----------------------------------------------------------------------------------

/// `POST /v1/history`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HistoryBody {
    /// The query.
    #[schema(min_length = 1, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub query: String,
    /// The bank.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// The instant to reconstruct.
    #[serde(deserialize_with = "lax::datetime")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// Maximum hits (clamped); default 10.
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[schema(value_type = Option<i64>)]
    pub max_results: Option<i64>,
    /// Token budget.
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[schema(value_type = Option<i64>)]
    pub max_tokens: Option<i64>,
    /// Tag filter.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// The history result, shaped like the reference's `HistoryResult`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    /// Hits, best first.
    pub hits: Vec<MemoryHitDto>,
    /// Candidates before truncation.
    pub total_available: usize,
    /// Whether hits were dropped.
    pub truncated: bool,
    /// The reconstructed instant.
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// The bank.
    pub bank_id: String,
    /// How it was computed.
    pub trace: Option<RecallTraceDto>,
}

// --- Export / import ---------------------------------------------------------------------------

/// `POST /v1/export`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExportBody {
    /// The bank.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// File path, absolute or relative to the first portability root.
    pub path: String,
    /// Include vectors (default false).
    #[serde(default)]
    pub include_embeddings: bool,
}

/// The export result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportResponse {
    /// The bank.
    pub bank_id: String,
    /// The path as given.
    pub path: String,
    /// Memories written.
    pub exported_count: u64,
}

/// What to do with ids that already exist.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflictDto {
    /// Keep the stored memory.
    #[default]
    Skip,
    /// Replace it.
    Overwrite,
}

impl From<OnConflictDto> for astrocyte_core::portability::OnConflict {
    fn from(dto: OnConflictDto) -> Self {
        match dto {
            OnConflictDto::Skip => Self::Skip,
            OnConflictDto::Overwrite => Self::Overwrite,
        }
    }
}

/// `POST /v1/import`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportBody {
    /// The destination bank.
    #[schema(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,254}$")]
    pub bank_id: String,
    /// File path, absolute or relative to the first portability root.
    pub path: String,
    /// `skip` (default) or `overwrite`.
    #[serde(default)]
    pub on_conflict: OnConflictDto,
}

/// The import result, shaped like the reference's `ImportResult`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    /// Memories written.
    pub imported: u64,
    /// Memories skipped because their id existed.
    pub skipped: u64,
    /// Lines that could not be imported.
    pub errors: u64,
    /// Line number and reason of the first 10,000 refused lines (the header is line 1).
    #[serde(default)]
    pub rejected: Vec<RejectedLineDto>,
}

/// A refused import line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedLineDto {
    /// 1-based line number.
    pub line: u64,
    /// Why it was refused.
    pub reason: String,
}

impl From<astrocyte_core::portability::ImportReport> for ImportResponse {
    fn from(report: astrocyte_core::portability::ImportReport) -> Self {
        ImportResponse {
            imported: report.imported,
            skipped: report.skipped,
            errors: report.errors,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| RejectedLineDto {
                    line: r.line,
                    reason: r.reason,
                })
                .collect(),
        }
    }
}

// --- Admin -------------------------------------------------------------------------------------

/// `GET /v1/admin/banks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BanksResponse {
    /// Banks of the caller's tenant holding memories.
    pub banks: Vec<String>,
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IssueKeyBody {
    /// The tenant (schema) the key authenticates as.
    pub tenant: String,
    /// The principal the key acts for, e.g. `agent:bot`.
    pub principal: String,
}

/// A newly issued key: the only time the plaintext key is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedKeyResponse {
    /// Public identifier.
    pub key_id: String,
    /// The key itself; send it as `X-Api-Key`.
    pub api_key: String,
    /// Its tenant.
    pub tenant: String,
    /// Its principal.
    pub principal: String,
    /// When it was issued.
    pub created_at: String,
}

/// An issued key as listed (never the key itself).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// Public identifier.
    pub key_id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its principal.
    pub principal: String,
    /// When it was issued.
    pub created_at: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

impl From<astrocyte_core::ApiKeyRecord> for KeyInfo {
    fn from(r: astrocyte_core::ApiKeyRecord) -> Self {
        KeyInfo {
            key_id: r.key_id,
            tenant: r.schema.to_string(),
            principal: r.principal,
            created_at: iso(&r.created_at),
            revoked_at: r.revoked_at.as_ref().map(iso),
        }
    }
}

/// `GET /v1/admin/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysResponse {
    /// Keys, ordered by id.
    pub keys: Vec<KeyInfo>,
}

/// `DELETE /v1/admin/keys/{key_id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedResponse {
    /// The key.
    pub key_id: String,
    /// Always true (an unknown key is a 404).
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_accept_numeric_strings_and_clamp() {
        let body: RecallBody =
            serde_json::from_str(r#"{"query":"q","bank_id":"b","max_results":"5","extra":1}"#)
                .expect("lax integer");
        assert_eq!(body.max_results, Some(5));
        assert!(
            serde_json::from_str::<RecallBody>(r#"{"query":"q","max_results":"five"}"#).is_err()
        );
        assert_eq!(clamp_results(Some(0), 10, 1000), 1);
        assert_eq!(clamp_results(Some(-4), 10, 1000), 1);
        assert_eq!(clamp_results(Some(5000), 10, 1000), 1000);
        assert_eq!(clamp_results(None, 10, 5), 5);
    }

    #[test]
    fn datetimes_accept_offsets_naive_and_dates() {
        let a = parse_datetime("2024-05-01T10:00:00+02:00").expect("offset");
        assert_eq!(iso(&a), "2024-05-01T08:00:00+00:00");
        let b = parse_datetime("2024-05-01T08:00:00").expect("naive");
        assert_eq!(a, b);
        assert!(parse_datetime("2024-05-01").is_ok());
        assert!(parse_datetime("yesterday").is_err());
    }
}
