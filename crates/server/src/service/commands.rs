//! The typed commands each transport decodes its requests into.

use astrocyte_core::jobs::Job;
use astrocyte_core::{ContentType, Metadata, RetainOutcome, Timestamp};

/// Store content in a bank.
#[derive(Debug, Clone, Default)]
pub struct Retain {
    /// Target bank.
    pub bank_id: String,
    /// The content.
    pub content: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Flat metadata.
    pub metadata: Metadata,
    /// When the remembered event happened.
    pub occurred_at: Option<Timestamp>,
    /// Chunking mode.
    pub content_type: ContentType,
    /// Queue the work and answer at once.
    pub run_async: bool,
    /// With `run_async`: a second request with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// The conversation or thread it belongs to (else a thread metadata key names it).
    pub thread_id: Option<String>,
}

/// What a retain did.
#[derive(Debug, Clone)]
pub enum Retained {
    /// Ran now: stored, deduplicated, or rejected with a reason.
    Done(RetainOutcome),
    /// Queued for a background worker.
    Queued(Job),
}

/// Recall from one or more banks.
#[derive(Debug, Clone, Default)]
pub struct Recall {
    /// The query.
    pub query: String,
    /// The banks (at least one).
    pub banks: Vec<String>,
    /// Maximum hits, clamped to the server's ceiling; default 10.
    pub max_results: Option<i64>,
    /// Token budget for the returned texts.
    pub max_tokens: Option<i64>,
    /// Only memories sharing at least one tag.
    pub tags: Option<Vec<String>>,
    /// Inclusive range over when memories happened.
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// What was known at this instant.
    pub as_of: Option<Timestamp>,
}

/// Recall what a bank held at a past instant.
#[derive(Debug, Clone)]
pub struct History {
    /// The query.
    pub query: String,
    /// The bank.
    pub bank_id: String,
    /// The instant to reconstruct.
    pub as_of: Timestamp,
    /// Maximum hits; default 10.
    pub max_results: Option<i64>,
    /// Token budget.
    pub max_tokens: Option<i64>,
    /// Tag filter.
    pub tags: Option<Vec<String>>,
}

/// Answer a question from a bank.
#[derive(Debug, Clone, Default)]
pub struct Reflect {
    /// The question.
    pub query: String,
    /// The bank.
    pub bank_id: String,
    /// Token budget for the memories the answer rests on.
    pub max_tokens: Option<i64>,
}

/// Forget memories of a bank.
#[derive(Debug, Clone, Default)]
pub struct Forget {
    /// The bank.
    pub bank_id: String,
    /// These memories.
    pub memory_ids: Option<Vec<String>>,
    /// Memories with any of these tags.
    pub tags: Option<Vec<String>>,
    /// Memories from before this instant.
    pub before: Option<Timestamp>,
    /// The whole bank (an admin act).
    pub all: bool,
}
