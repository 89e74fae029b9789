//! Wire types of browsing and managing a bank: listings, one memory, edits, the change feed,
//! bank summaries and uploaded imports.

use std::collections::BTreeMap;

use astrocyte_core::browse::{Change, ChangeEntry, ChangePage, MemoryDetail, MemoryPage};
use astrocyte_core::Memory;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{iso, lax, OnConflictDto};

/// A stored memory as browsing shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemoryDto {
    /// Memory id.
    pub memory_id: String,
    /// Bank.
    pub bank_id: String,
    /// The text.
    pub text: String,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Flat metadata.
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, Value>,
    /// Kind of fact.
    pub fact_type: String,
    /// When it happened, if known.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<String>,
    /// When it was stored.
    #[schema(value_type = String, format = DateTime)]
    pub retained_at: String,
    /// Origin.
    pub source: Option<String>,
    /// `<group>:<index>` when the memory is one chunk of a longer retain.
    pub chunk_id: Option<String>,
    /// Chunks the retain produced (1 when it was not split).
    pub chunk_count: u32,
    /// The conversation or thread it belongs to.
    pub thread: Option<String>,
}

impl From<Memory> for MemoryDto {
    fn from(m: Memory) -> Self {
        MemoryDto {
            memory_id: m.id,
            bank_id: m.bank_id.to_string(),
            text: m.text,
            tags: m.tags,
            metadata: m.metadata,
            fact_type: m.fact_type,
            occurred_at: m.occurred_at.as_ref().map(iso),
            retained_at: iso(&m.retained_at),
            source: m.source,
            chunk_id: m
                .chunk
                .as_ref()
                .map(|c| format!("{}:{}", c.group_id, c.index)),
            chunk_count: m.chunk.as_ref().map_or(1, |c| c.count),
            thread: m.thread,
        }
    }
}

/// Query of `GET /v1/banks/{bank_id}/memories`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 50).
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[param(value_type = Option<i64>)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `newest` (default) or `id`.
    pub order: Option<String>,
    /// Comma-separated tags: memories with any of them.
    pub tags: Option<String>,
    /// Comma-separated fact types.
    pub fact_type: Option<String>,
    /// Only memories that happened at or after this instant (ISO 8601).
    pub start: Option<String>,
    /// Only memories that happened at or before this instant (ISO 8601).
    pub end: Option<String>,
    /// Text starts with this (case-insensitive).
    pub text_prefix: Option<String>,
    /// Text contains this (case-insensitive).
    pub contains: Option<String>,
}

/// A page of memories.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemoryPageResponse {
    /// The memories, in the listing's order.
    pub memories: Vec<MemoryDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl From<MemoryPage> for MemoryPageResponse {
    fn from(page: MemoryPage) -> Self {
        MemoryPageResponse {
            memories: page.memories.into_iter().map(MemoryDto::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// One entry of a change log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeDto {
    /// Pass as `since` to resume after this entry.
    pub cursor: String,
    /// `created`, `updated` or `forgotten`.
    #[schema(pattern = "^(created|updated|forgotten)$")]
    pub kind: String,
    /// The memory.
    pub memory_id: String,
    /// When it happened.
    #[schema(value_type = String, format = DateTime)]
    pub at: String,
}

impl From<Change> for ChangeDto {
    fn from(change: Change) -> Self {
        ChangeDto {
            cursor: change.cursor,
            kind: change.kind.as_str().to_string(),
            memory_id: change.memory_id,
            at: iso(&change.at),
        }
    }
}

/// A change with the memory as it is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeEntryDto {
    /// The change.
    #[serde(flatten)]
    pub change: ChangeDto,
    /// The memory now; null once it is forgotten (a tombstone).
    pub memory: Option<MemoryDto>,
}

impl From<ChangeEntry> for ChangeEntryDto {
    fn from(entry: ChangeEntry) -> Self {
        ChangeEntryDto {
            change: entry.change.into(),
            memory: entry.memory.map(MemoryDto::from),
        }
    }
}

/// Query of `GET /v1/banks/{bank_id}/changes`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// `next_cursor` of the previous read; from the start when absent.
    pub since: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[param(value_type = Option<i64>)]
    pub limit: Option<i64>,
    /// The newest `limit` entries instead of the oldest (still oldest first); `next_cursor`
    /// then follows the feed from the newest.
    #[serde(default)]
    pub tail: bool,
}

/// Which of a bank's entities to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntitiesParams {
    /// Entity keys (lower-case names) starting with this (at most 64 characters).
    pub prefix: Option<String>,
    /// Only this kind: person, place, organization, product or other.
    pub kind: Option<String>,
    /// At most this many, 1 to 1000 (default 100).
    #[serde(default, deserialize_with = "lax::opt_int")]
    #[param(value_type = Option<i64>)]
    pub limit: Option<i64>,
}

/// One entity of a bank.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntityDto {
    /// Lower-case matching key.
    pub key: String,
    /// The name as most recently written.
    pub name: String,
    /// person, place, organization, product or other (a heuristic without an LLM).
    pub kind: String,
    /// Visible memories that mention it.
    pub memories: u64,
    /// Mentions across those memories.
    pub mentions: u64,
    /// Event (else retention) time of the newest memory that mentions it.
    pub last_seen: chrono::DateTime<chrono::Utc>,
}

impl From<astrocyte_core::store::EntitySummary> for EntityDto {
    fn from(e: astrocyte_core::store::EntitySummary) -> Self {
        EntityDto {
            key: e.key,
            name: e.name,
            kind: e.kind.as_str().to_string(),
            memories: e.memories,
            mentions: e.mentions,
            last_seen: e.last_seen,
        }
    }
}

/// A bank's entities.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntitiesResponse {
    /// Most-mentioned first (ties by key).
    pub entities: Vec<EntityDto>,
}

/// A page of the change feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangesResponse {
    /// Entries, oldest first.
    pub changes: Vec<ChangeEntryDto>,
    /// Pass as `since` for the next read (unchanged when nothing was new).
    pub next_cursor: Option<String>,
    /// Whether more entries are ready now.
    pub has_more: bool,
}

impl From<ChangePage> for ChangesResponse {
    fn from(page: ChangePage) -> Self {
        ChangesResponse {
            changes: page.changes.into_iter().map(ChangeEntryDto::from).collect(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        }
    }
}

/// One memory with its retain's chunks and its change history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemoryDetailResponse {
    /// The memory.
    pub memory: MemoryDto,
    /// Every visible chunk of the same retain, in order (the memory included).
    pub chunks: Vec<MemoryDto>,
    /// Its change log, oldest first.
    pub history: Vec<ChangeDto>,
}

impl From<MemoryDetail> for MemoryDetailResponse {
    fn from(detail: MemoryDetail) -> Self {
        MemoryDetailResponse {
            memory: detail.memory.into(),
            chunks: detail.chunks.into_iter().map(MemoryDto::from).collect(),
            history: detail.history.into_iter().map(ChangeDto::from).collect(),
        }
    }
}

/// `PATCH /v1/banks/{bank_id}/memories/{memory_id}`: each field given replaces the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemoryBody {
    /// The new tags.
    pub tags: Option<Vec<String>>,
    /// The new metadata (flat: string, number, boolean or null values).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// The result of forgetting one memory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgottenResponse {
    /// The memory.
    pub memory_id: String,
    /// Always true (a missing memory is a 404).
    pub forgotten: bool,
}

/// A bank with its counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BankSummaryDto {
    /// The bank.
    pub bank_id: String,
    /// Visible memories.
    pub memory_count: u64,
    /// When the newest visible memory was retained.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_retained_at: Option<String>,
    /// UTF-8 bytes of the visible memories' texts (vectors and indexes come on top).
    pub text_bytes: u64,
}

impl From<crate::service::BankSummary> for BankSummaryDto {
    fn from(summary: crate::service::BankSummary) -> Self {
        BankSummaryDto {
            bank_id: summary.bank_id,
            memory_count: summary.memory_count,
            text_bytes: summary.text_bytes,
            last_retained_at: summary.last_retained_at.as_ref().map(iso),
        }
    }
}

/// `GET /v1/banks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BankSummariesResponse {
    /// The caller's readable banks holding memories.
    pub banks: Vec<BankSummaryDto>,
}

/// Query of `GET /v1/banks/{bank_id}/export`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Include vectors (default false).
    #[serde(default)]
    pub include_embeddings: bool,
}

/// Query of `POST /v1/banks/{bank_id}/import`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// `skip` (default) or `overwrite`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub on_conflict: OnConflictDto,
}
