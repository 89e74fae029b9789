//! The storage contract every backend implements. Core holds no SQL: a backend maps its driver
//! errors into [`crate::Error`] in one private function and enforces isolation its own way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::browse::{Change, ChangeQuery, ListQuery, MemoryPatch};
use crate::error::Result;
use crate::model::{
    BankId, ForgetMode, ForgetSelector, Memory, MemoryId, NewMemory, RecallFilter, Timestamp,
};
use crate::tenancy::{Schema, Tenant};

/// A memory with a strategy-specific score (cosine, BM25, or recency time).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMemory {
    /// The memory.
    pub memory: Memory,
    /// Higher is better within one strategy; not comparable across strategies.
    pub score: f32,
}

/// One candidate search across the three strategies. Backends answer all three together so a
/// networked store can do it in one round trip.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Banks to search.
    pub banks: Vec<BankId>,
    /// Query vector for the semantic strategy; `None` skips it.
    pub vector: Option<Vec<f32>>,
    /// Query text for the keyword (BM25) strategy; `None` skips it.
    pub text: Option<String>,
    /// Whether to run the recency strategy.
    pub recency: bool,
    /// Candidates per strategy.
    pub limit: usize,
    /// Filters every strategy applies.
    pub filter: RecallFilter,
}

/// Ranked candidates of one strategy, best first, ties broken by memory id.
#[derive(Debug, Clone, Default)]
pub struct StrategyHits {
    /// The candidates.
    pub hits: Vec<ScoredMemory>,
    /// Time the backend spent on this strategy.
    pub elapsed: Duration,
}

/// Candidates of every strategy that ran.
#[derive(Debug, Clone, Default)]
pub struct SearchResponse {
    /// Cosine similarity ranking; `None` when not requested.
    pub semantic: Option<StrategyHits>,
    /// BM25 ranking; `None` when not requested.
    pub keyword: Option<StrategyHits>,
    /// Most recent effective time first; `None` when not requested.
    pub recency: Option<StrategyHits>,
}

/// The embedding space a tenant's vectors belong to; recorded on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingSpace {
    /// Model name.
    pub model: String,
    /// Vector dimension.
    pub dimension: usize,
}

/// A storage backend holding many tenants.
#[async_trait]
pub trait Store: Send + Sync {
    /// Short backend name for logs and health (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// A handle bound to one tenant. Backends that create tenants lazily (the embedded store)
    /// create it here; others answer `NotFound` for an unknown tenant.
    async fn tenant(&self, schema: &Schema) -> Result<Arc<dyn TenantStore>>;

    /// A handle on the tenant if it exists, never creating it (background work must not bring
    /// back a tenant dropped meanwhile).
    async fn existing_tenant(&self, schema: &Schema) -> Result<Option<Arc<dyn TenantStore>>>;

    /// Creates a tenant with all its tables; `Conflict` when it exists.
    async fn create_tenant(&self, schema: &Schema) -> Result<()>;

    /// Drops a tenant and every byte of its data; `NotFound` when absent.
    async fn drop_tenant(&self, schema: &Schema) -> Result<()>;

    /// Every tenant, sorted by schema.
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    /// Checks the backend is reachable.
    async fn health(&self) -> Result<()>;

    /// The API-key directory kept beside the tenant directory, when the backend has one.
    fn key_directory(&self) -> Option<Arc<dyn KeyDirectory>> {
        None
    }

    /// Which tenants have jobs waiting, when the backend tracks it (workers poll otherwise).
    fn job_signals(&self) -> Option<Arc<dyn crate::jobs::JobSignals>> {
        None
    }
}

/// An issued API key as stored: only its keyed hash, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier of the key (safe to log and show).
    pub key_id: String,
    /// HMAC-SHA256 of the key under the server secret, hex-encoded.
    pub key_hash: String,
    /// The tenant the key authenticates as.
    pub schema: Schema,
    /// The principal the key acts for (e.g. `agent:bot`).
    pub principal: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it was revoked; revoked keys never authenticate.
    pub revoked_at: Option<Timestamp>,
}

/// Storage for hashed API keys, each mapped to one tenant.
#[async_trait]
pub trait KeyDirectory: Send + Sync {
    /// Stores a new key record; `Conflict` when the key id exists.
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<()>;

    /// The record with this hash, revoked or not.
    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// Marks a key revoked; false when no such key.
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<bool>;

    /// Keys of one tenant, or of all tenants, ordered by key id.
    async fn list_keys(&self, schema: Option<&Schema>) -> Result<Vec<ApiKeyRecord>>;
}

/// A new keyword index for one memory: its own text (with its date in words) and its context.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextUpdate {
    /// The memory.
    pub id: MemoryId,
    /// Its own text as indexed (see `NewMemory::index_text`).
    pub index_text: String,
    /// Its retrieval context, if any.
    pub index_context: Option<String>,
}

/// One entity of a bank, counted over its visible memories.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EntitySummary {
    /// Lower-case matching key.
    pub key: String,
    /// The name as most recently written.
    pub name: String,
    /// Best-guess kind.
    pub kind: crate::entities::EntityKind,
    /// Visible memories that mention it.
    pub memories: u64,
    /// Mentions across those memories.
    pub mentions: u64,
    /// Effective time of the newest memory that mentions it.
    pub last_seen: Timestamp,
}

/// Which of a bank's entities to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityQuery {
    /// Keys starting with this (lower case).
    pub prefix: Option<String>,
    /// Only this kind.
    pub kind: Option<crate::entities::EntityKind>,
    /// At most this many, most-mentioned first.
    pub limit: usize,
}

/// One tenant's memories. Every method is scoped to the tenant the handle was opened for.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// The tenant this handle is bound to.
    fn schema(&self) -> &Schema;

    /// Records the embedding space on first use; `DimensionMismatch` when it differs.
    async fn ensure_embedding_space(&self, space: &EmbeddingSpace) -> Result<()>;

    /// Writes all memories in one transaction: all or none become visible.
    async fn insert(&self, memories: Vec<NewMemory>) -> Result<()>;

    /// Readies the tenant for many inserts in a row (an import). A store whose vector index
    /// is much cheaper to build once than to grow row by row may set it aside, searching
    /// exactly meanwhile. Returns whether [`end_bulk_load`](Self::end_bulk_load) must follow.
    async fn begin_bulk_load(&self) -> Result<bool> {
        Ok(false)
    }

    /// Ends a bulk load [`begin_bulk_load`](Self::begin_bulk_load) started: builds what it
    /// set aside.
    async fn end_bulk_load(&self) -> Result<()> {
        Ok(())
    }

    /// For each vector, the most similar visible memory in `bank` and its cosine similarity when
    /// that similarity is at least `min_score`, answered by the vector index (near-duplicate
    /// checks; never a scan of the bank). The bar lets a store skip resolving the ids of the
    /// neighbours nobody asked about: most new memories have no near-duplicate.
    async fn nearest_each(
        &self,
        bank: &BankId,
        vectors: &[Vec<f32>],
        min_score: f32,
    ) -> Result<Vec<Option<(MemoryId, f32)>>>;

    /// Candidates for every requested strategy.
    async fn search(&self, request: &SearchRequest) -> Result<SearchResponse>;

    /// The entity strategy: visible memories of `banks` passing `filter` that mention any of
    /// `keys`, scored by the sum over the keys they mention of `ln(1 + visible / mentioning)`
    /// (a rare entity says more than one in every memory), best first, then newest. With
    /// `hop`, memories that mention only an entity co-occurring with the keys (the 5 that
    /// co-occur most) count too, at half weight.
    async fn entity_hits(
        &self,
        banks: &[BankId],
        keys: &[String],
        hop: bool,
        filter: &RecallFilter,
        limit: usize,
    ) -> Result<StrategyHits>;

    /// A bank's entities, most-mentioned first (ties by key).
    async fn entities(&self, bank: &BankId, query: &EntityQuery) -> Result<Vec<EntitySummary>>;

    /// Visible memories by id (in the given order, missing ids skipped).
    async fn get(&self, bank: &BankId, ids: &[MemoryId]) -> Result<Vec<Memory>>;

    /// Which of `ids` exist in the bank (visible or soft-deleted), in one look-up.
    async fn existing(&self, bank: &BankId, ids: &[MemoryId]) -> Result<Vec<MemoryId>>;

    /// Whether a memory with this id exists in the bank (visible or soft-deleted).
    async fn exists(&self, bank: &BankId, id: &MemoryId) -> Result<bool> {
        Ok(!self
            .existing(bank, std::slice::from_ref(id))
            .await?
            .is_empty())
    }

    /// Forgets what the selector names at `now`; returns how many memories were affected.
    async fn forget(
        &self,
        bank: &BankId,
        selector: &ForgetSelector,
        mode: ForgetMode,
        now: Timestamp,
    ) -> Result<u64>;

    /// Banks holding at least one visible memory, sorted.
    async fn list_banks(&self) -> Result<Vec<BankId>>;

    /// A page of visible memories ordered by id, strictly after `after` (for streaming export).
    async fn scan(
        &self,
        bank: &BankId,
        after: Option<&MemoryId>,
        limit: usize,
        include_embeddings: bool,
    ) -> Result<Vec<Memory>>;

    /// How many visible memories the bank holds.
    async fn count(&self, bank: &BankId) -> Result<u64>;

    /// The UTF-8 bytes of the visible memories' texts (a bank's size as people think of it;
    /// vectors and indexes come on top).
    async fn text_bytes(&self, bank: &BankId) -> Result<u64>;

    /// A page of the bank's memories matching the query, in its order, strictly after its
    /// cursor; at most `query.limit`.
    async fn list(&self, bank: &BankId, query: &ListQuery) -> Result<Vec<Memory>>;

    /// Replaces the tags and/or metadata of a visible memory and logs an `updated` change, in
    /// one transaction; `None` when no visible memory has that id. Tags come normalised.
    async fn update(
        &self,
        bank: &BankId,
        id: &MemoryId,
        patch: &MemoryPatch,
    ) -> Result<Option<Memory>>;

    /// Entries of the bank's change log after `query.since`, oldest first, at most
    /// `query.limit`. Every insert logs `created`, every edit `updated`, and every forget or
    /// erasure of a visible memory `forgotten`, in the transaction that made the change; an
    /// entry is returned only once no earlier-ordered entry can still appear.
    async fn changes(&self, bank: &BankId, query: &ChangeQuery) -> Result<Vec<Change>>;

    /// Replaces the vectors of existing memories (re-embedding after a model change) and
    /// records `space` as the tenant's embedding space, in one transaction.
    async fn replace_embeddings(
        &self,
        _space: &EmbeddingSpace,
        _vectors: Vec<(MemoryId, Vec<f32>)>,
    ) -> Result<()> {
        Err(crate::Error::Unsupported(
            "this store cannot replace embeddings".into(),
        ))
    }

    /// Visible memories of `thread` in `bank` on each side of the position (effective time
    /// `at`, then id), nearest first: up to `radius` before it and up to `radius` after it.
    async fn thread_neighbours(
        &self,
        bank: &BankId,
        thread: &str,
        at: Timestamp,
        id: &MemoryId,
        radius: usize,
    ) -> Result<(Vec<Memory>, Vec<Memory>)>;

    /// Rewrites what the keyword index covers for these memories (their own text and their
    /// context), in one transaction; ids that are gone are skipped.
    async fn set_index_context(&self, bank: &BankId, updates: Vec<ContextUpdate>) -> Result<()>;

    /// A tenant-level setting (lifecycle policies, legal holds), as JSON.
    async fn setting(&self, _key: &str) -> Result<Option<serde_json::Value>> {
        Err(crate::Error::Unsupported(
            "this store keeps no settings".into(),
        ))
    }

    /// Stores a tenant-level setting; `None` removes it.
    async fn put_setting(&self, _key: &str, _value: Option<serde_json::Value>) -> Result<()> {
        Err(crate::Error::Unsupported(
            "this store keeps no settings".into(),
        ))
    }

    /// This tenant's background job queue, when the backend keeps one.
    fn jobs(&self) -> Option<Arc<dyn crate::jobs::JobQueue>> {
        None
    }
}
