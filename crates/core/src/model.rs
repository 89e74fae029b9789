//! Domain types: banks, memories, and the requests and results of the Engine API. These are
//! not wire types; the server defines its own DTOs and converts.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Timestamps are UTC throughout; offsets are normalised at the edges.
pub type Timestamp = DateTime<Utc>;

/// A validated bank identifier: `^[a-zA-Z0-9][a-zA-Z0-9._:@\-]{0,254}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BankId(String);

impl BankId {
    /// Validates a bank id against the contract's rule.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 255
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
            });
        if ok {
            Ok(BankId(value))
        } else {
            Err(Error::invalid(format!(
                "Invalid bank_id {value:?}: must be 1-255 characters, start with alphanumeric, and contain only [a-zA-Z0-9._:@-]"
            )))
        }
    }

    /// The bank id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BankId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        BankId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A memory id: a UUID (v7, so ids sort roughly by creation) rendered as text.
pub type MemoryId = String;

/// Flat metadata: keys to scalars (string, number, bool or null).
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// The fact type given when the caller names none.
pub const DEFAULT_FACT_TYPE: &str = "world";

/// Which chunk of which retained content a memory is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Id shared by every chunk of one retain call.
    pub group_id: String,
    /// Zero-based position of this chunk.
    pub index: u32,
    /// How many chunks the retain produced.
    pub count: u32,
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Unique id.
    pub id: MemoryId,
    /// The bank it belongs to.
    pub bank_id: BankId,
    /// The text (one chunk of what was retained).
    pub text: String,
    /// Tags, sorted and de-duplicated.
    pub tags: Vec<String>,
    /// Flat scalar metadata.
    pub metadata: Metadata,
    /// Kind of fact (`world`, `experience`, `opinion`, `observation`, …).
    pub fact_type: String,
    /// When the remembered event happened, if known.
    pub occurred_at: Option<Timestamp>,
    /// When it was stored.
    pub retained_at: Timestamp,
    /// When it was soft-deleted; `None` while visible.
    pub forgotten_at: Option<Timestamp>,
    /// Free-form origin identifier.
    pub source: Option<String>,
    /// Position within the retained content.
    pub chunk: Option<ChunkRef>,
    /// The conversation or thread the memory belongs to: its neighbours there (by event time,
    /// then arrival) lend it their words as keyword context, as a whole-conversation retain's
    /// turns lend each other theirs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thread: Option<String>,
    /// The vector, only when a caller asked for it (export with embeddings).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub embedding: Option<Vec<f32>>,
}

impl Memory {
    /// A visible memory of `text` stored now, with no tags, metadata, event time, source or
    /// chunk, of the default fact type: the starting point for callers that build memories
    /// themselves (imports, tests) and set only what they know.
    pub fn new(id: impl Into<MemoryId>, bank_id: BankId, text: impl Into<String>) -> Self {
        Memory {
            id: id.into(),
            bank_id,
            text: text.into(),
            tags: Vec::new(),
            metadata: Metadata::new(),
            fact_type: DEFAULT_FACT_TYPE.to_string(),
            occurred_at: None,
            retained_at: chrono::Utc::now(),
            forgotten_at: None,
            source: None,
            chunk: None,
            thread: None,
            embedding: None,
        }
    }

    /// The time recency is measured from: when it happened, else when it was stored.
    pub fn effective_time(&self) -> Timestamp {
        self.occurred_at.unwrap_or(self.retained_at)
    }
}

/// A memory ready to be written, with its vector.
#[derive(Debug, Clone)]
pub struct NewMemory {
    /// The memory (its `forgotten_at` is `None`, its `embedding` ignored).
    pub memory: Memory,
    /// Its embedding, L2-normalised, of the store's dimension.
    pub embedding: Vec<f32>,
    /// The text the keyword index must cover as the memory's own: its text, preceded by its
    /// date in words when it has one. Backends index this, not `memory.text`, and never
    /// return it; it equals `memory.text` when there is nothing to add.
    pub index_text: String,
    /// Retrieval context the keyword index also covers, at a lower weight where the backend
    /// can weigh fields (neighbouring chunks, the caller's `context`); never returned.
    pub index_context: Option<String>,
    /// The entities its text mentions, for the bank's entity table.
    pub entities: Vec<crate::entities::Mention>,
}

impl NewMemory {
    /// A memory whose keyword index covers just its text (no date, no context).
    pub fn plain(memory: Memory, embedding: Vec<f32>) -> Self {
        NewMemory {
            index_text: memory.text.clone(),
            index_context: None,
            entities: crate::entities::extract(&memory.text),
            memory,
            embedding,
        }
    }
}

/// How content should be chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// Plain text: sentence chunks.
    #[default]
    Text,
    /// A conversation: one chunk per turn.
    Conversation,
    /// A document: paragraphs, then sentences.
    Document,
}

/// What a caller asks to retain. Serialisable so it can wait in a job queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RetainRequest {
    /// Target bank.
    pub bank_id: String,
    /// The content.
    pub content: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata (validated and sanitised).
    pub metadata: Metadata,
    /// When it happened.
    pub occurred_at: Option<Timestamp>,
    /// Chunking mode.
    pub content_type: ContentType,
    /// Fact type; `world` when absent.
    pub fact_type: Option<String>,
    /// Origin identifier.
    pub source: Option<String>,
    /// Retrieval context: words that describe the memory's surroundings (a date, the turns
    /// around it) and should make it findable, without being part of what recall returns.
    /// For a threaded retain the thread supplies this instead.
    pub context: Option<String>,
    /// The conversation or thread this content belongs to; when absent, the first of the
    /// metadata keys `thread_id`, `conversation_id`, `session_id`, `session` names it.
    pub thread_id: Option<String>,
}

/// The outcome of one retain, shaped like the reference's `RetainResult`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetainOutcome {
    /// Whether anything new was stored.
    pub stored: bool,
    /// The first stored (or matching duplicate) memory id.
    pub memory_id: Option<MemoryId>,
    /// Every stored chunk id.
    pub memory_ids: Vec<MemoryId>,
    /// Whether some or all chunks were skipped as near-duplicates.
    pub deduplicated: bool,
    /// Why nothing was stored, when it was not.
    pub error: Option<String>,
    /// Sanitiser warnings (blocked metadata keys, truncation).
    pub warnings: Vec<String>,
}

impl RetainOutcome {
    /// A rejected retain: nothing stored.
    pub fn rejected(error: impl Into<String>) -> Self {
        RetainOutcome {
            stored: false,
            memory_id: None,
            memory_ids: Vec::new(),
            deduplicated: false,
            error: Some(error.into()),
            warnings: Vec::new(),
        }
    }
}

/// Filters applied by every retrieval strategy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecallFilter {
    /// Match memories sharing at least one tag; untagged memories never match. `None` = no filter.
    pub tags: Option<Vec<String>>,
    /// Inclusive range over the effective time (occurred_at, else retained_at).
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// Time travel: what was visible at this instant (retained by then, not yet forgotten).
    pub as_of: Option<Timestamp>,
    /// Allowed fact types. `None` = any.
    pub fact_types: Option<Vec<String>>,
    /// Metadata equality on every listed key.
    pub metadata: Metadata,
}

/// What a caller asks to recall.
#[derive(Debug, Clone, Default)]
pub struct RecallRequest {
    /// The query text.
    pub query: String,
    /// Banks to search (at least one).
    pub banks: Vec<String>,
    /// Maximum hits; clamped to 1..=1000; 10 when `None`.
    pub max_results: Option<usize>,
    /// Token budget for the returned texts.
    pub max_tokens: Option<usize>,
    /// Filters.
    pub filter: RecallFilter,
}

/// One recalled memory with its fused score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallHit {
    /// The memory.
    pub memory: Memory,
    /// Fused score in [0, 1]: the weighted reciprocal-rank-fusion sum divided by the largest sum
    /// possible (rank 1 in every strategy at full recency weight). 1.0 means "first everywhere".
    pub score: f32,
    /// Cosine similarity to the query, when the semantic strategy found it.
    pub semantic_score: Option<f32>,
    /// Its rank and score in each strategy that found it (for explaining a recall).
    pub ranks: Vec<crate::pipeline::fuse::StrategyRank>,
}

/// How a recall was computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecallTrace {
    /// Strategies that ran, in order.
    pub strategies_used: Vec<String>,
    /// Distinct candidates after fusion.
    pub total_candidates: usize,
    /// Always `rrf`.
    pub fusion_method: String,
    /// Wall time of the whole recall.
    pub latency_ms: f64,
    /// Wall time per strategy (and `embed` for the query embedding).
    pub strategy_timings_ms: BTreeMap<String, f64>,
    /// Candidates each strategy returned.
    pub strategy_candidate_counts: BTreeMap<String, usize>,
    /// Hits the token budget dropped (after `max_results`).
    pub dropped_by_token_budget: usize,
    /// The time expression found in the query and how it was read, when there was one.
    pub time_hint: Option<String>,
}

/// The result of a recall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallResult {
    /// Hits, best first; ties broken by memory id.
    pub hits: Vec<RecallHit>,
    /// Distinct candidates before truncation to `max_results` and the token budget.
    pub total_available: usize,
    /// Whether hits were dropped to fit `max_results` or `max_tokens`.
    pub truncated: bool,
    /// How it was computed.
    pub trace: RecallTrace,
    /// Highest cosine similarity among the hits (0 when none).
    pub top_semantic_score: f32,
}

/// What to forget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgetSelector {
    /// These ids.
    pub memory_ids: Option<Vec<MemoryId>>,
    /// Memories with any of these tags.
    pub tags: Option<Vec<String>>,
    /// Memories whose effective time is strictly before this instant.
    pub before: Option<Timestamp>,
    /// Every memory in the bank.
    pub all: bool,
}

impl ForgetSelector {
    /// Whether the selector names anything at all (an empty selector is rejected, never "all").
    pub fn is_empty(&self) -> bool {
        !self.all && self.memory_ids.is_none() && self.tags.is_none() && self.before.is_none()
    }
}

/// Soft delete keeps time travel; purge erases text and vectors for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForgetMode {
    /// Mark forgotten; still visible to `as_of` queries before the forget.
    #[default]
    Soft,
    /// Erase the rows (GDPR); not even time travel sees them.
    Purge,
}

/// The result of a reflect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReflectResult {
    /// The answer.
    pub answer: String,
    /// Confidence in [0, 1]; 0 when there is no evidence.
    pub confidence: f32,
    /// The memories the answer rests on.
    pub sources: Vec<RecallHit>,
    /// `extractive` or `llm`.
    pub mode: String,
}
