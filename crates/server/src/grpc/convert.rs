//! Conversions between the generated protobuf messages and the service's commands and results.
//! Times are ISO 8601 strings parsed exactly as REST parses them; metadata is a
//! `google.protobuf.Struct` whose whole numbers come back as JSON integers, as REST stores them.

use std::collections::BTreeMap;

use astrocyte_core::browse::{Change, ChangePage, MemoryDetail, MemoryPatch};
use astrocyte_core::jobs::Job;
use astrocyte_core::{
    ContentType, Memory, Metadata, RecallHit, RecallResult, RetainOutcome, Timestamp,
};
use prost_types::value::Kind;
use serde_json::Value as Json;

use super::proto;
use crate::dto::{field_datetime, iso, open_range, optional_field_datetime};
use crate::error::ApiError;
use crate::service::{Forget, History, ListMemories, Recall, Retain, Retained};

/// An empty repeated field means "not given", as an absent JSON list does.
fn optional_list(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// JSON of a protobuf value, refusing what JSON cannot hold (as REST's parser refuses it):
/// a value with no kind, NaN or an infinity.
fn to_json(field: &str, value: prost_types::Value) -> Result<Json, ApiError> {
    Ok(match value.kind {
        None => {
            return Err(ApiError::BadRequest(format!(
                "{field}: a value must have a kind (use null_value for null)"
            )))
        }
        Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::NumberValue(n)) => {
            // Protobuf has only doubles; a whole number within i64 is the integer a JSON
            // client would have sent.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Json::from(n as i64)
            } else {
                Json::Number(serde_json::Number::from_f64(n).ok_or_else(|| {
                    ApiError::BadRequest(format!("{field}: {n} is not a JSON number"))
                })?)
            }
        }
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(&format!("{field}[{i}]"), v))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(object)) => Json::Object(fields(field, object)?),
    })
}

fn fields(
    field: &str,
    object: prost_types::Struct,
) -> Result<serde_json::Map<String, Json>, ApiError> {
    object
        .fields
        .into_iter()
        .map(|(k, v)| {
            let value = to_json(&format!("{field}.{k}"), v)?;
            Ok((k, value))
        })
        .collect()
}

fn from_json(value: Json) -> prost_types::Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(from_json).collect(),
        }),
        Json::Object(object) => Kind::StructValue(prost_types::Struct {
            fields: object.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn metadata(object: Option<prost_types::Struct>) -> Result<Metadata, ApiError> {
    Ok(match object {
        Some(object) => fields("metadata", object)?.into_iter().collect(),
        None => Metadata::default(),
    })
}

fn struct_of(metadata: Metadata) -> prost_types::Struct {
    prost_types::Struct {
        fields: metadata
            .into_iter()
            .map(|(k, v)| (k, from_json(v)))
            .collect(),
    }
}

/// A retain request.
pub fn retain(request: proto::RetainRequest) -> Result<Retain, ApiError> {
    let content_type = match proto::ContentType::try_from(request.content_type) {
        Ok(proto::ContentType::Unspecified | proto::ContentType::Text) => ContentType::Text,
        Ok(proto::ContentType::Conversation) => ContentType::Conversation,
        Ok(proto::ContentType::Document) => ContentType::Document,
        Err(_) => {
            return Err(ApiError::BadRequest(format!(
                "content_type {} is not a known content type",
                request.content_type
            )))
        }
    };
    Ok(Retain {
        bank_id: request.bank_id,
        content: request.content,
        tags: request.tags,
        metadata: metadata(request.metadata)?,
        occurred_at: optional_field_datetime("occurred_at", request.occurred_at)?,
        content_type,
        run_async: request.run_async,
        idempotency_key: request.idempotency_key,
        thread_id: request.thread_id,
    })
}

/// A retain outcome.
pub fn retain_outcome(outcome: RetainOutcome) -> proto::RetainResponse {
    proto::RetainResponse {
        stored: outcome.stored,
        memory_id: outcome.memory_id,
        deduplicated: outcome.deduplicated,
        error: outcome.error,
        job_id: None,
        job_state: None,
    }
}

/// What a retain did.
pub fn retained(retained: Retained) -> proto::RetainResponse {
    match retained {
        Retained::Done(outcome) => retain_outcome(outcome),
        Retained::Queued(job) => proto::RetainResponse {
            stored: false,
            memory_id: None,
            deduplicated: false,
            error: None,
            job_state: Some(job.state.as_str().to_string()),
            job_id: Some(job.id),
        },
    }
}

/// A recall request.
pub fn recall(request: proto::RecallRequest) -> Result<Recall, ApiError> {
    // An empty `bank_id` is proto3's "not given"; an empty name in `banks` was given, and is
    // refused by the service as REST refuses it.
    let banks = match (request.banks.is_empty(), request.bank_id.is_empty()) {
        (false, _) => request.banks,
        (true, false) => vec![request.bank_id],
        (true, true) => Vec::new(),
    };
    let time_range = time_range(request.time_range)?;
    Ok(Recall {
        query: request.query,
        banks,
        max_results: request.max_results,
        max_tokens: request.max_tokens,
        tags: optional_list(request.tags),
        time_range,
        as_of: optional_field_datetime("as_of", request.as_of)?,
    })
}

/// A time range; an empty end is open (REST's `since` or `until` alone), both empty is none.
fn time_range(range: Option<proto::TimeRange>) -> Result<Option<(Timestamp, Timestamp)>, ApiError> {
    let Some(range) = range else {
        return Ok(None);
    };
    Ok(open_range(
        optional_field_datetime("time_range.start", Some(range.start))?,
        optional_field_datetime("time_range.end", Some(range.end))?,
    ))
}

/// A listing request.
pub fn list(request: proto::ListMemoriesRequest) -> Result<ListMemories, ApiError> {
    Ok(ListMemories {
        bank_id: request.bank_id,
        limit: request.limit,
        cursor: request.cursor,
        order: request.order,
        tags: optional_list(request.tags),
        fact_types: optional_list(request.fact_types),
        time_range: time_range(request.time_range)?,
        text_prefix: request.text_prefix,
        text_contains: request.contains,
    })
}

/// An edit.
pub fn patch(request: &mut proto::UpdateMemoryRequest) -> Result<MemoryPatch, ApiError> {
    Ok(MemoryPatch {
        tags: request.tags.take().map(|list| list.tags),
        metadata: match request.metadata.take() {
            Some(object) => Some(metadata(Some(object))?),
            None => None,
        },
    })
}

/// A stored memory.
pub fn stored(m: Memory) -> proto::StoredMemory {
    proto::StoredMemory {
        chunk_id: m
            .chunk
            .as_ref()
            .map(|c| format!("{}:{}", c.group_id, c.index)),
        chunk_count: m.chunk.as_ref().map_or(1, |c| c.count),
        memory_id: m.id,
        bank_id: m.bank_id.to_string(),
        text: m.text,
        tags: m.tags,
        metadata: Some(struct_of(m.metadata)),
        fact_type: m.fact_type,
        occurred_at: m.occurred_at.as_ref().map(iso),
        retained_at: iso(&m.retained_at),
        source: m.source,
        thread: m.thread,
    }
}

fn change(change: Change, memory: Option<Memory>) -> proto::Change {
    proto::Change {
        cursor: change.cursor,
        kind: change.kind.as_str().to_string(),
        memory_id: change.memory_id,
        at: iso(&change.at),
        memory: memory.map(stored),
    }
}

/// A memory with its chunks and history.
pub fn detail(detail: MemoryDetail) -> proto::MemoryDetail {
    proto::MemoryDetail {
        memory: Some(stored(detail.memory)),
        chunks: detail.chunks.into_iter().map(stored).collect(),
        history: detail
            .history
            .into_iter()
            .map(|c| change(c, None))
            .collect(),
    }
}

/// A page of the change feed.
pub fn changes(page: ChangePage) -> proto::ListChangesResponse {
    proto::ListChangesResponse {
        changes: page
            .changes
            .into_iter()
            .map(|entry| change(entry.change, entry.memory))
            .collect(),
        next_cursor: page.next_cursor,
        has_more: page.has_more,
    }
}

/// A history request.
pub fn history(request: proto::HistoryRequest) -> Result<History, ApiError> {
    Ok(History {
        as_of: field_datetime("as_of", &request.as_of)?,
        query: request.query,
        bank_id: request.bank_id,
        max_results: request.max_results,
        max_tokens: request.max_tokens,
        tags: optional_list(request.tags),
    })
}

/// A forget request.
pub fn forget(request: proto::ForgetRequest) -> Result<Forget, ApiError> {
    Ok(Forget {
        bank_id: request.bank_id,
        memory_ids: optional_list(request.memory_ids),
        tags: optional_list(request.tags),
        before: optional_field_datetime("before_date", request.before_date)?,
        all: request.all,
    })
}

/// One recalled memory.
pub fn hit(hit: RecallHit) -> proto::MemoryHit {
    let m = hit.memory;
    proto::MemoryHit {
        text: m.text,
        score: hit.score,
        fact_type: m.fact_type,
        metadata: Some(struct_of(m.metadata)),
        tags: m.tags,
        occurred_at: m.occurred_at.as_ref().map(iso),
        source: m.source,
        memory_id: m.id,
        bank_id: m.bank_id.to_string(),
        retained_at: iso(&m.retained_at),
        chunk_id: m.chunk.map(|c| format!("{}:{}", c.group_id, c.index)),
    }
}

/// A recall (or history) result.
pub fn recall_result(result: RecallResult) -> proto::RecallResponse {
    let trace = result.trace;
    proto::RecallResponse {
        hits: result.hits.into_iter().map(hit).collect(),
        total_available: result.total_available as u64,
        truncated: result.truncated,
        trace: Some(proto::RecallTrace {
            strategies_used: trace.strategies_used,
            total_candidates: trace.total_candidates as u64,
            fusion_method: trace.fusion_method,
            latency_ms: trace.latency_ms,
            strategy_timings_ms: trace.strategy_timings_ms.into_iter().collect(),
            strategy_candidate_counts: trace
                .strategy_candidate_counts
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        }),
        top_semantic_score: result.top_semantic_score,
    }
}

/// A background job.
pub fn job(job: Job) -> proto::Job {
    proto::Job {
        job_id: job.id,
        kind: job.kind,
        state: job.state.as_str().to_string(),
        attempts: job.attempts,
        last_error: job.last_error,
        result: job.result.map(from_json),
        created_at: iso(&job.created_at),
        updated_at: iso(&job.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_with_whole_numbers_as_integers() {
        let original: Metadata = serde_json::from_value(serde_json::json!({
            "n": 3, "x": 2.5, "s": "text", "b": true, "z": null
        }))
        .expect("metadata");
        let back = metadata(Some(struct_of(original.clone()))).expect("convertible");
        assert_eq!(back, original);
    }

    #[test]
    fn values_json_cannot_hold_are_refused() {
        let number = |n: f64| prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        };
        for bad in [
            number(f64::NAN),
            number(f64::INFINITY),
            number(f64::NEG_INFINITY),
            prost_types::Value { kind: None },
        ] {
            let object = prost_types::Struct {
                fields: [("x".to_string(), bad)].into_iter().collect(),
            };
            let refused = metadata(Some(object)).expect_err("refused");
            assert!(refused.to_string().starts_with("metadata.x: "), "{refused}");
        }
        let nested = prost_types::Struct {
            fields: [(
                "list".to_string(),
                prost_types::Value {
                    kind: Some(Kind::ListValue(prost_types::ListValue {
                        values: vec![number(1.0), number(f64::NAN)],
                    })),
                },
            )]
            .into_iter()
            .collect(),
        };
        let refused = metadata(Some(nested)).expect_err("refused");
        assert!(
            refused.to_string().starts_with("metadata.list[1]: "),
            "{refused}"
        );
    }
}
