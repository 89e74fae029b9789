//! One tenant's memories on PostgreSQL: the [`TenantStore`] implementation. Every method runs
//! in a [`TenantTransaction`] (tenant role, no user schema on the search path) against tables
//! named through `fq_table`; values are always bound parameters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use astrocyte_core::browse::{Change, ChangeQuery, ListQuery, MemoryPatch};
use astrocyte_core::jobs::JobQueue;
use astrocyte_core::store::{
    ContextUpdate, EmbeddingSpace, EntityQuery, EntitySummary, ScoredMemory, SearchRequest,
    SearchResponse, StrategyHits,
};
use astrocyte_core::{
    BankId, Error, ForgetMode, ForgetSelector, Memory, MemoryId, NewMemory, RecallFilter, Result,
    Schema, TenantStore, Timestamp,
};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use tracing::instrument;

use crate::analyze::StatisticsRefresh;
use crate::entities::EntityRows;
use crate::error::{PgError, PgResult};
use crate::jobs::PgJobQueue;
use crate::names::{HNSW_MAX_DIMENSION, LOCK_SPACE};
use crate::replica::TenantReads;
use crate::search::{search_settings, search_sql, KEYWORD, RECENCY, SEMANTIC, SEMANTIC_TIE_MARGIN};
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::{memory_from_row, to_i64, Params, EMBEDDING_COLUMN, MEMORY_COLUMNS};

/// pgvector's `vector` type holds at most this many dimensions.
const VECTOR_MAX_DIMENSION: usize = 16000;

const META_MODEL: &str = "embedding_model";
pub(crate) const META_DIMENSION: &str = "embedding_dimension";
/// Present while a bulk load has the vector index set aside (see `bulk.rs`): the time it did.
pub(crate) const META_INDEX_DEFERRED: &str = "vector_index_deferred";

/// A handle on one tenant's memories.
#[derive(Debug)]
pub struct PostgresTenant {
    pool: Pool,
    pub(crate) binding: TenantBinding,
    /// The vector dimension once known (0 until then). Only `replace_embeddings` on an empty
    /// table changes it afterwards.
    dimension: AtomicUsize,
    /// Re-analyzes the table as it grows, so plans stay on the indexes.
    statistics: Arc<StatisticsRefresh>,
    /// The tenant's job queue, sharing the pool and binding.
    jobs: Arc<PgJobQueue>,
    /// Where recall, change-feed and export reads go (replicas, when configured).
    reads: TenantReads,
    /// Rows a keyword search may score (0: no limit); see `search::keyword_ctes`.
    keyword_posting_budget: usize,
    /// Bulk loads this handle has running (see `bulk.rs`).
    pub(crate) bulk_loads: AtomicUsize,
    /// This handle, for work it hands to a task of its own.
    pub(crate) me: Weak<PostgresTenant>,
}

/// The embedding space as recorded in the tenant's meta table.
#[derive(Debug, Default)]
pub(crate) struct StoredSpace {
    model: Option<String>,
    pub(crate) dimension: Option<usize>,
    /// A bulk load set the vector index aside: typing the column builds none.
    pub(crate) index_deferred: bool,
}

impl PostgresTenant {
    pub(crate) fn new(
        pool: Pool,
        binding: TenantBinding,
        reads: TenantReads,
        keyword_posting_budget: usize,
        me: Weak<PostgresTenant>,
    ) -> Self {
        PostgresTenant {
            me,
            reads,
            keyword_posting_budget,
            dimension: AtomicUsize::new(0),
            bulk_loads: AtomicUsize::new(0),
            statistics: Arc::new(StatisticsRefresh::default()),
            jobs: Arc::new(PgJobQueue::new(pool.clone(), binding.clone())),
            pool,
            binding,
        }
    }

    /// The cached vector dimension, if known.
    fn cached_dimension(&self) -> Option<usize> {
        Some(self.dimension.load(Ordering::Acquire)).filter(|d| *d > 0)
    }

    /// Caches the dimension after the transaction that fixed or checked it committed.
    fn remember_dimension(&self, dimension: usize) {
        self.dimension.store(dimension, Ordering::Release);
    }

    pub(crate) async fn begin(&self, settings: &str) -> PgResult<TenantTransaction> {
        TenantTransaction::begin(&self.pool, &self.binding, settings).await
    }

    /// Runs one read-only statement that a replica may serve (`replica`): recall, the change
    /// feed and export.
    pub(crate) async fn read_rows(
        &self,
        settings: &str,
        sql: &str,
        params: &Params,
    ) -> PgResult<Vec<Row>> {
        self.reads
            .rows(&self.pool, &self.binding, settings, sql, params)
            .await
    }

    /// Notes a committed write, so this tenant's next reads see it on a replica too.
    pub(crate) async fn wrote(&self) {
        self.reads.after_write(&self.pool).await;
    }

    /// Serialises space changes for this tenant, then reads the recorded space.
    pub(crate) async fn locked_space(
        &self,
        transaction: &TenantTransaction,
    ) -> PgResult<StoredSpace> {
        let mut params = Params::default();
        let class = params.push(LOCK_SPACE, Type::INT4);
        let key = params.push(self.binding.schema.as_str().to_string(), Type::TEXT);
        transaction
            .typed(
                &format!("SELECT pg_advisory_xact_lock({class}, hashtext({key}))"),
                &params,
            )
            .await?;
        let rows = transaction
            .typed(
                &format!("SELECT key, value FROM {}", self.binding.tables.meta),
                &Params::default(),
            )
            .await?;
        let mut space = StoredSpace::default();
        for row in rows {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            match key.as_str() {
                META_MODEL => space.model = Some(value),
                META_INDEX_DEFERRED => space.index_deferred = true,
                META_DIMENSION => {
                    space.dimension = Some(value.parse().map_err(|_| {
                        PgError::Decode(format!("embedding dimension {value:?} is not a number"))
                    })?)
                }
                _ => {}
            }
        }
        Ok(space)
    }

    /// Types the vector column as `vector(dimension)` and builds the HNSW cosine index (unless
    /// a bulk load set it aside: `deferred`). Runs once per tenant, on an empty table, as the
    /// tenant role (which owns the table).
    async fn fix_dimension(
        &self,
        transaction: &TenantTransaction,
        dimension: usize,
        deferred: bool,
    ) -> Result<()> {
        if dimension == 0 || dimension > VECTOR_MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "embedding dimension must be between 1 and {VECTOR_MAX_DIMENSION}, got {dimension}"
            )));
        }
        let table = &self.binding.tables.memories;
        let vector = &self.binding.vector;
        let mut ddl = format!(
            "ALTER TABLE {table} ALTER COLUMN embedding TYPE {ty}({dimension}) USING embedding::{ty}({dimension}); ",
            ty = vector.vector
        );
        if dimension <= HNSW_MAX_DIMENSION && !deferred {
            ddl.push_str(&vector.index_ddl(table, &dimension.to_string()));
        }
        transaction.batch(&ddl).await?;
        let mut params = Params::default();
        let key = params.push(META_DIMENSION.to_string(), Type::TEXT);
        let value = params.push(dimension.to_string(), Type::TEXT);
        transaction
            .typed(
                &format!(
                    "INSERT INTO {} (key, value) VALUES ({key}, {value})",
                    self.binding.tables.meta
                ),
                &params,
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn set_meta(
        &self,
        transaction: &TenantTransaction,
        key: &str,
        value: &str,
    ) -> PgResult<()> {
        let mut params = Params::default();
        let key = params.push(key.to_string(), Type::TEXT);
        let value = params.push(value.to_string(), Type::TEXT);
        transaction
            .typed(
                &format!(
                    "INSERT INTO {} (key, value) VALUES ({key}, {value}) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    self.binding.tables.meta
                ),
                &params,
            )
            .await?;
        Ok(())
    }

    /// Makes sure the vector column is typed for `dimension` (first insert without a recorded
    /// space) and that it matches; returns the tenant's dimension.
    async fn require_dimension(
        &self,
        transaction: &TenantTransaction,
        dimension: usize,
    ) -> Result<usize> {
        let known = match self.cached_dimension() {
            Some(known) => known,
            None => {
                let space = self.locked_space(transaction).await?;
                let known = match space.dimension {
                    Some(known) => known,
                    None => {
                        self.fix_dimension(transaction, dimension, space.index_deferred)
                            .await?;
                        dimension
                    }
                };
                // Cached by the caller once its transaction commits: if it rolls back, a
                // dimension fixed here was never recorded.
                known
            }
        };
        if known != dimension {
            return Err(Error::invalid(format!(
                "vector of dimension {dimension} does not fit this tenant's dimension {known}"
            )));
        }
        Ok(known)
    }

    /// Compares `space` with the recorded one, recording what is missing. Returns whether a
    /// bulk load has the vector index set aside.
    async fn ensure_space_in(
        &self,
        transaction: &TenantTransaction,
        space: &EmbeddingSpace,
    ) -> Result<bool> {
        let stored = self.locked_space(transaction).await?;
        let deferred = stored.index_deferred;
        let mismatch =
            |stored_model: Option<String>, stored_dimension: usize| Error::DimensionMismatch {
                stored_model: stored_model.unwrap_or_else(|| "unknown".into()),
                stored: stored_dimension,
                model: space.model.clone(),
                configured: space.dimension,
            };
        match (stored.dimension, stored.model) {
            (Some(dimension), model) if dimension != space.dimension => {
                Err(mismatch(model, dimension))
            }
            (Some(dimension), Some(model)) if model != space.model => {
                Err(mismatch(Some(model), dimension))
            }
            (Some(_), Some(_)) => Ok(deferred),
            // Typed by an insert before any space was recorded: adopt the model.
            (Some(_), None) => {
                self.set_meta(transaction, META_MODEL, &space.model).await?;
                Ok(deferred)
            }
            (None, _) => {
                self.fix_dimension(transaction, space.dimension, deferred)
                    .await?;
                self.set_meta(transaction, META_MODEL, &space.model).await?;
                Ok(deferred)
            }
        }
    }

    /// Records `space` and writes the vectors, inside `transaction`. A dimension change is
    /// only possible while the table holds no row at all (soft-deleted ones included): their
    /// vectors would no longer fit the column or its index.
    async fn replace_in(
        &self,
        transaction: &TenantTransaction,
        space: &EmbeddingSpace,
        ids: Vec<MemoryId>,
        vectors: Vec<String>,
    ) -> Result<()> {
        let stored = self.locked_space(transaction).await?;
        match stored.dimension {
            None => {
                self.fix_dimension(transaction, space.dimension, stored.index_deferred)
                    .await?
            }
            Some(dimension) if dimension != space.dimension => {
                if !self.is_empty(transaction).await? {
                    return Err(Error::Unsupported(format!(
                        "cannot change tenant {}'s vector dimension from {dimension} to {} while it \
                         holds memories; purge them first or use a model of dimension {dimension}",
                        self.binding.schema, space.dimension
                    )));
                }
                // Empty: drop the old index and record, then type the column afresh.
                let index = self.hnsw_index();
                let mut params = Params::default();
                let key = params.push(META_DIMENSION.to_string(), Type::TEXT);
                transaction
                    .batch(&format!("DROP INDEX IF EXISTS {index}"))
                    .await?;
                transaction
                    .typed(
                        &format!("DELETE FROM {} WHERE key = {key}", self.binding.tables.meta),
                        &params,
                    )
                    .await?;
                self.fix_dimension(transaction, space.dimension, stored.index_deferred)
                    .await?;
            }
            Some(_) => {}
        }
        self.set_meta(transaction, META_MODEL, &space.model).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let mut params = Params::default();
        let ids = params.push(ids, Type::TEXT_ARRAY);
        let vectors = params.push(vectors, Type::TEXT_ARRAY);
        // By id alone (the trait names no bank): an imported copy of a bank shares its ids and
        // texts, so it gets the same vector. Ids no longer stored are skipped.
        transaction
            .typed(
                &format!(
                    "UPDATE {table} m SET embedding = u.v::{vector} \
                     FROM unnest({ids}::text[], {vectors}::text[]) AS u(id, v) WHERE m.id = u.id",
                    table = self.binding.tables.memories,
                    vector = self.binding.vector.vector,
                ),
                &params,
            )
            .await?;
        Ok(())
    }

    /// Whether the memory table holds no row, soft-deleted ones included.
    async fn is_empty(&self, transaction: &TenantTransaction) -> PgResult<bool> {
        let rows = transaction
            .typed(
                &format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {}) AS empty",
                    self.binding.tables.memories
                ),
                &Params::default(),
            )
            .await?;
        match rows.first() {
            Some(row) => Ok(row.try_get("empty")?),
            None => Err(PgError::Decode("emptiness check returned no row".into())),
        }
    }

    fn memory_scan_sql(&self, with_embedding: bool, extra: &str) -> String {
        let embedding = if with_embedding {
            format!(", {EMBEDDING_COLUMN}")
        } else {
            String::new()
        };
        format!(
            "SELECT {MEMORY_COLUMNS}{embedding} FROM {table} m {extra}",
            table = self.binding.tables.memories
        )
    }
}

/// A vector in pgvector's text form (`[0.1,0.2]`). Rust prints the shortest text that parses
/// back to the same f32, so the round trip is exact; text beats a sliced `real[]` parameter,
/// which PostgreSQL copies whole for every slice.
fn vector_literal(vector: &[f32]) -> String {
    let mut text = String::with_capacity(vector.len() * 12 + 2);
    text.push('[');
    for (index, value) in vector.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&value.to_string());
    }
    text.push(']');
    text
}

/// Orders best-first by score, ties by memory id (the embedded store's rule).
fn sort_best_first(hits: &mut [ScoredMemory]) {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.memory.id.cmp(&b.memory.id))
    });
}

/// Batches of at least this many near-duplicate probes are split over two connections.
const SPLIT_PROBES_FROM: usize = 64;

/// Cosine similarity from pgvector's distance; a zero vector has no direction, so its
/// similarity is 0 (pgvector answers NaN).
fn similarity(distance: f64) -> f32 {
    if distance.is_nan() {
        0.0
    } else {
        (1.0 - distance) as f32
    }
}

impl PostgresTenant {
    /// The near-duplicate probes of `vectors`, in one statement.
    async fn nearest_each_statement(
        &self,
        bank: &BankId,
        vectors: &[Vec<f32>],
        min_score: f32,
    ) -> Result<Vec<Option<(MemoryId, f32)>>> {
        let Some(first) = vectors.first() else {
            return Ok(Vec::new());
        };
        let dimension = first.len();
        if vectors.iter().any(|v| v.len() != dimension) {
            return Err(Error::invalid("query vectors differ in dimension"));
        }
        let mut params = Params::default();
        let literals: Vec<String> = vectors.iter().map(|v| vector_literal(v)).collect();
        let literals = params.push(literals, Type::TEXT_ARRAY);
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let op = &self.binding.vector.cosine;
        let order = self
            .binding
            .vector
            .indexed_distance("m.embedding", "q.v", dimension);
        // One HNSW probe per vector through a lateral join: one statement for the whole batch.
        // `q` is MATERIALIZED so each query vector is parsed once, not once per row compared.
        let sql = format!(
            "WITH q AS MATERIALIZED (SELECT i::int AS i, v::{vector} AS v \
               FROM unnest({literals}::text[]) WITH ORDINALITY AS u(v, i)) \
             SELECT q.i, n.id, n.d FROM q LEFT JOIN LATERAL (\
               SELECT m.id, (m.embedding {op} q.v) AS d FROM {table} m \
               WHERE m.bank_id = {bank} AND m.forgotten_at IS NULL \
               ORDER BY {order} LIMIT 1) n ON true ORDER BY q.i",
            vector = self.binding.vector.vector,
            table = self.binding.tables.memories,
        );
        // Dedup probes must be index lookups (the trait's contract), whatever the planner's
        // statistics say: every path that is not an ordered index scan is switched off.
        let settings = format!(
            "{} SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off;",
            search_settings(1, self.binding.vector.hnsw.ef_search)
        );
        let transaction = self.begin(&settings).await?;
        let rows = transaction.typed_then_commit(&sql, &params).await?;
        let mut out = vec![None; vectors.len()];
        for row in rows {
            let index: i32 = row.try_get("i").map_err(PgError::from)?;
            let id: Option<String> = row.try_get("id").map_err(PgError::from)?;
            let distance: Option<f64> = row.try_get("d").map_err(PgError::from)?;
            if let (Some(id), Some(distance), Ok(slot)) = (id, distance, usize::try_from(index - 1))
            {
                let score = similarity(distance);
                if let Some(entry) = out.get_mut(slot).filter(|_| score >= min_score) {
                    *entry = Some((id, score));
                }
            }
        }
        Ok(out)
    }

    /// Runs a statement that yields one `n` column (a count) in a tenant transaction.
    async fn count_rows(&self, sql: &str, params: &Params) -> Result<u64> {
        let rows = self.begin("").await?.typed_then_commit(sql, params).await?;
        first_count(&rows)
    }
}

/// The `n` column of the first row (0 without a row).
fn first_count(rows: &[Row]) -> Result<u64> {
    let count: i64 = rows
        .first()
        .map(|row| row.try_get("n"))
        .transpose()
        .map_err(PgError::from)?
        .unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

#[async_trait]
impl TenantStore for PostgresTenant {
    fn schema(&self) -> &Schema {
        &self.binding.schema
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema))]
    async fn ensure_embedding_space(&self, space: &EmbeddingSpace) -> Result<()> {
        let mut transaction = self.begin("").await?;
        let deferred = match self.ensure_space_in(&transaction, space).await {
            Ok(deferred) => {
                transaction.finish("COMMIT").await?;
                deferred
            }
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                return Err(error);
            }
        };
        self.remember_dimension(space.dimension);
        // Seen on a tenant's first use by this process: a bulk load elsewhere, or one that
        // ended in a crash.
        if deferred {
            self.recover_deferred_index();
        }
        Ok(())
    }

    async fn begin_bulk_load(&self) -> Result<bool> {
        self.start_bulk_load().await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.finish_bulk_load().await
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, count = memories.len()))]
    async fn insert(&self, memories: Vec<NewMemory>) -> Result<()> {
        let Some(first) = memories.first() else {
            return Ok(());
        };
        let dimension = first.embedding.len();
        if let Some(bad) = memories.iter().find(|m| m.embedding.len() != dimension) {
            return Err(Error::invalid(format!(
                "memory {} has a vector of dimension {}, expected {dimension}",
                bad.memory.id,
                bad.embedding.len()
            )));
        }
        let count = memories.len();
        let mut ids = Vec::with_capacity(count);
        let mut banks = Vec::with_capacity(count);
        let mut texts = Vec::with_capacity(count);
        let mut tags = Vec::with_capacity(count);
        let mut metadata = Vec::with_capacity(count);
        let mut fact_types = Vec::with_capacity(count);
        let mut occurred = Vec::with_capacity(count);
        let mut retained = Vec::with_capacity(count);
        let mut forgotten = Vec::with_capacity(count);
        let mut sources = Vec::with_capacity(count);
        let mut groups = Vec::with_capacity(count);
        let mut indexes = Vec::with_capacity(count);
        let mut counts = Vec::with_capacity(count);
        let mut index_texts = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut vectors: Vec<String> = Vec::with_capacity(count);
        let mut entities = EntityRows::default();
        for new in memories {
            let memory = new.memory;
            entities.push(&memory.id, memory.bank_id.as_str(), new.entities);
            // Stored only when it differs, so plain memories cost nothing extra. One tsvector
            // column covers both: context is not weighted apart on PostgreSQL.
            let index_text = match new.index_context {
                Some(context) if !context.trim().is_empty() => {
                    format!("{}\n{}", new.index_text, context)
                }
                _ => new.index_text,
            };
            index_texts.push((index_text != memory.text).then_some(index_text));
            ids.push(memory.id);
            banks.push(memory.bank_id.as_str().to_string());
            texts.push(memory.text);
            tags.push(serde_json::Value::from(memory.tags));
            metadata.push(serde_json::Value::Object(
                memory.metadata.into_iter().collect(),
            ));
            fact_types.push(memory.fact_type);
            occurred.push(memory.occurred_at);
            retained.push(memory.retained_at);
            forgotten.push(memory.forgotten_at);
            sources.push(memory.source);
            threads.push(memory.thread);
            let chunk_field = |value: u32| {
                i32::try_from(value).map_err(|_| Error::invalid("chunk position out of range"))
            };
            match memory.chunk {
                Some(chunk) => {
                    groups.push(Some(chunk.group_id));
                    indexes.push(Some(chunk_field(chunk.index)?));
                    counts.push(Some(chunk_field(chunk.count)?));
                }
                None => {
                    groups.push(None);
                    indexes.push(None);
                    counts.push(None);
                }
            }
            vectors.push(vector_literal(&new.embedding));
        }
        let mut transaction = self.begin("").await?;
        let known = match self.require_dimension(&transaction, dimension).await {
            Ok(known) => known,
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                return Err(error);
            }
        };
        let mut params = Params::default();
        let p = [
            params.push(ids, Type::TEXT_ARRAY),
            params.push(banks, Type::TEXT_ARRAY),
            params.push(texts, Type::TEXT_ARRAY),
            params.push(tags, Type::JSONB_ARRAY),
            params.push(metadata, Type::JSONB_ARRAY),
            params.push(fact_types, Type::TEXT_ARRAY),
            params.push(occurred, Type::TIMESTAMPTZ_ARRAY),
            params.push(retained, Type::TIMESTAMPTZ_ARRAY),
            params.push(forgotten, Type::TIMESTAMPTZ_ARRAY),
            params.push(sources, Type::TEXT_ARRAY),
            params.push(groups, Type::TEXT_ARRAY),
            params.push(indexes, Type::INT4_ARRAY),
            params.push(counts, Type::INT4_ARRAY),
            params.push(index_texts, Type::TEXT_ARRAY),
            params.push(threads, Type::TEXT_ARRAY),
        ];
        let vectors = params.push(vectors, Type::TEXT_ARRAY);
        let entity_cte = entities.insert_cte(&mut params, &self.binding.tables.entities);
        let sql = format!(
            "WITH inserted AS (INSERT INTO {table} (id, bank_id, text, tags, metadata, fact_type, occurred_at, \
               retained_at, forgotten_at, source, chunk_group, chunk_index, chunk_count, index_text, thread, embedding) \
             SELECT u.id, u.bank_id, u.text, ARRAY(SELECT jsonb_array_elements_text(u.tags)), u.metadata, \
               u.fact_type, u.occurred_at, u.retained_at, u.forgotten_at, u.source, u.chunk_group, \
               u.chunk_index, u.chunk_count, u.index_text, u.thread, u.embedding::{vector} \
             FROM unnest({}::text[], {}::text[], {}::text[], {}::jsonb[], {}::jsonb[], {}::text[], \
               {}::timestamptz[], {}::timestamptz[], {}::timestamptz[], {}::text[], {}::text[], \
               {}::int4[], {}::int4[], {}::text[], {}::text[], {vectors}::text[]) AS u(id, bank_id, text, tags, metadata, \
               fact_type, occurred_at, retained_at, forgotten_at, source, chunk_group, chunk_index, \
               chunk_count, index_text, thread, embedding) RETURNING bank_id, id){entity_cte} \
             INSERT INTO {changes} (bank_id, memory_id, kind) SELECT bank_id, id, 'created' FROM inserted",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14],
            table = self.binding.tables.memories,
            changes = self.binding.tables.changes,
            vector = self.binding.vector.vector,
        );
        transaction.typed_then_commit(&sql, &params).await?;
        self.wrote().await;
        self.remember_dimension(known);
        self.statistics
            .note_inserted(count, &self.pool, &self.binding);
        Ok(())
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, count = vectors.len()))]
    async fn nearest_each(
        &self,
        bank: &BankId,
        vectors: &[Vec<f32>],
        min_score: f32,
    ) -> Result<Vec<Option<(MemoryId, f32)>>> {
        // Each probe walks the graph in its backend and the retain waits for all of them: a
        // large batch's probes are split over two connections, so two server cores walk.
        if vectors.len() < SPLIT_PROBES_FROM {
            return self.nearest_each_statement(bank, vectors, min_score).await;
        }
        let (first, second) = vectors.split_at(vectors.len() / 2);
        let (mut found, rest) = tokio::try_join!(
            self.nearest_each_statement(bank, first, min_score),
            self.nearest_each_statement(bank, second, min_score)
        )?;
        found.extend(rest);
        Ok(found)
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, banks = request.banks.len()))]
    async fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let mut params = Params::default();
        let budget = self.keyword_posting_budget;
        let frequent = if request.text.is_some() && budget > 0 {
            // Lexemes far below the budget barely change the plan (the cap still holds).
            let floor = budget as f64 / 64.0;
            self.statistics
                .frequent
                .get(&self.pool, &self.binding, floor)
                .await
        } else {
            Default::default()
        };
        let Some(sql) = search_sql(&self.binding, request, budget, &frequent, &mut params) else {
            return Ok(SearchResponse::default());
        };
        let started = Instant::now();
        let rows = self
            .read_rows(
                &search_settings(
                    request.limit + SEMANTIC_TIE_MARGIN,
                    self.binding.vector.hnsw.ef_search,
                ),
                &sql,
                &params,
            )
            .await?;
        // The three strategies ran in one statement; each reports the statement's time.
        let elapsed = started.elapsed();
        let mut semantic = Vec::new();
        let mut keyword = Vec::new();
        let mut recency = Vec::new();
        for row in rows {
            let strategy: i32 = row.try_get("strategy").map_err(PgError::from)?;
            let score: f64 = row.try_get("score").map_err(PgError::from)?;
            let memory = memory_from_row(&row, false)?;
            match strategy {
                SEMANTIC => semantic.push(ScoredMemory {
                    memory,
                    score: similarity(score),
                }),
                KEYWORD => keyword.push(ScoredMemory {
                    memory,
                    score: score as f32,
                }),
                RECENCY => recency.push(ScoredMemory {
                    memory,
                    score: score as f32,
                }),
                other => return Err(Error::Internal(format!("unknown strategy tag {other}"))),
            }
        }
        sort_best_first(&mut semantic);
        semantic.truncate(request.limit);
        sort_best_first(&mut keyword);
        // Recency is ordered by the exact time, not by its lossy f32 score.
        recency.sort_by(|a, b| {
            b.memory
                .effective_time()
                .cmp(&a.memory.effective_time())
                .then_with(|| a.memory.id.cmp(&b.memory.id))
        });
        let hits = |hits: Vec<ScoredMemory>| StrategyHits { hits, elapsed };
        Ok(SearchResponse {
            semantic: request.vector.is_some().then(|| hits(semantic)),
            keyword: request.text.is_some().then(|| hits(keyword)),
            recency: request.recency.then(|| hits(recency)),
        })
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, banks = banks.len(), keys = keys.len()))]
    async fn entity_hits(
        &self,
        banks: &[BankId],
        keys: &[String],
        hop: bool,
        filter: &RecallFilter,
        limit: usize,
    ) -> Result<StrategyHits> {
        self.entity_hits_in(banks, keys, hop, filter, limit).await
    }

    async fn entities(&self, bank: &BankId, query: &EntityQuery) -> Result<Vec<EntitySummary>> {
        self.list_entities(bank, query).await
    }

    async fn get(&self, bank: &BankId, ids: &[MemoryId]) -> Result<Vec<Memory>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let wanted = params.push(ids.to_vec(), Type::TEXT_ARRAY);
        let sql = self.memory_scan_sql(
            false,
            &format!("WHERE m.bank_id = {bank} AND m.id = ANY({wanted}::text[]) AND m.forgotten_at IS NULL"),
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        let mut found: HashMap<String, Memory> = HashMap::with_capacity(rows.len());
        for row in rows {
            let memory = memory_from_row(&row, false)?;
            found.insert(memory.id.clone(), memory);
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    async fn existing(&self, bank: &BankId, ids: &[MemoryId]) -> Result<Vec<MemoryId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let wanted = params.push(ids.to_vec(), Type::TEXT_ARRAY);
        let sql = format!(
            "SELECT m.id FROM {} m WHERE m.bank_id = {bank} AND m.id = ANY({wanted}::text[])",
            self.binding.tables.memories
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<_, String>("id").map_err(PgError::from)?))
            .collect()
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, bank = %bank))]
    async fn forget(
        &self,
        bank: &BankId,
        selector: &ForgetSelector,
        mode: ForgetMode,
        now: Timestamp,
    ) -> Result<u64> {
        if selector.is_empty() {
            return Err(Error::invalid(
                "forget needs memory_ids, tags, before or all",
            ));
        }
        let mut params = Params::default();
        let mut clauses = vec![format!(
            "m.bank_id = {}",
            params.push(bank.as_str().to_string(), Type::TEXT)
        )];
        // Selector fields are AND-ed; `all` adds no restriction of its own.
        if let Some(ids) = &selector.memory_ids {
            clauses.push(format!(
                "m.id = ANY({}::text[])",
                params.push(ids.clone(), Type::TEXT_ARRAY)
            ));
        }
        if let Some(tags) = &selector.tags {
            clauses.push(format!(
                "m.tags && {}::text[]",
                params.push(tags.clone(), Type::TEXT_ARRAY)
            ));
        }
        if let Some(before) = selector.before {
            clauses.push(format!(
                "m.effective_at < {}",
                params.push(before, Type::TIMESTAMPTZ)
            ));
        }
        let table = &self.binding.tables.memories;
        let changes = &self.binding.tables.changes;
        // The change log is written by the same statement: a forget of a visible memory is a
        // `forgotten` entry, an erasure of a forgotten one adds none.
        let sql = match mode {
            ForgetMode::Soft => {
                let now = params.push(now, Type::TIMESTAMPTZ);
                format!(
                    "WITH changed AS (UPDATE {table} m SET forgotten_at = {now} \
                       WHERE {} AND m.forgotten_at IS NULL RETURNING m.bank_id, m.id), \
                     logged AS (INSERT INTO {changes} (bank_id, memory_id, kind, at) \
                       SELECT bank_id, id, 'forgotten', {now} FROM changed) \
                     SELECT count(*) AS n FROM changed",
                    clauses.join(" AND ")
                )
            }
            ForgetMode::Purge => format!(
                "WITH gone AS (DELETE FROM {table} m WHERE {} RETURNING m.bank_id, m.id, m.forgotten_at), \
                 logged AS (INSERT INTO {changes} (bank_id, memory_id, kind) \
                   SELECT bank_id, id, 'forgotten' FROM gone WHERE forgotten_at IS NULL) \
                 SELECT count(*) AS n FROM gone",
                clauses.join(" AND ")
            ),
        };
        let forgotten = self.count_rows(&sql, &params).await?;
        self.wrote().await;
        Ok(forgotten)
    }

    async fn list(&self, bank: &BankId, query: &ListQuery) -> Result<Vec<Memory>> {
        self.list_memories(bank, query).await
    }

    async fn update(
        &self,
        bank: &BankId,
        id: &MemoryId,
        patch: &MemoryPatch,
    ) -> Result<Option<Memory>> {
        self.update_memory(bank, id, patch).await
    }

    async fn changes(&self, bank: &BankId, query: &ChangeQuery) -> Result<Vec<Change>> {
        self.read_changes(bank, query).await
    }

    async fn list_banks(&self) -> Result<Vec<BankId>> {
        // A loose index scan: each step seeks the next bank in the (bank_id, id) key instead
        // of reading every row, so the cost follows the number of banks, not of memories.
        let sql = format!(
            "WITH RECURSIVE banks AS (\
               (SELECT m.bank_id FROM {table} m WHERE m.forgotten_at IS NULL ORDER BY m.bank_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT m.bank_id FROM {table} m WHERE m.bank_id > banks.bank_id \
                 AND m.forgotten_at IS NULL ORDER BY m.bank_id LIMIT 1) \
               FROM banks WHERE banks.bank_id IS NOT NULL) \
             SELECT bank_id FROM banks WHERE bank_id IS NOT NULL ORDER BY bank_id",
            table = self.binding.tables.memories
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &Params::default())
            .await?;
        rows.iter()
            .map(|row| {
                let bank: String = row.try_get("bank_id").map_err(PgError::from)?;
                BankId::new(bank)
            })
            .collect()
    }

    async fn thread_neighbours(
        &self,
        bank: &BankId,
        thread: &str,
        at: Timestamp,
        id: &MemoryId,
        radius: usize,
    ) -> Result<(Vec<Memory>, Vec<Memory>)> {
        if radius == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let thread = params.push(thread.to_string(), Type::TEXT);
        let at = params.push(at, Type::TIMESTAMPTZ);
        let id = params.push(id.clone(), Type::TEXT);
        let limit = params.push(to_i64(radius), Type::INT8);
        let side = |order: &str, sql: String| {
            self.memory_scan_sql(
                false,
                &format!(
                    "WHERE m.bank_id = {bank} AND m.thread = {thread} AND m.forgotten_at IS NULL \
                     AND {sql} ORDER BY m.effective_at {order}, m.id {order} LIMIT {limit}"
                ),
            )
        };
        let sql = format!(
            "(SELECT *, 0 AS side FROM ({}) b) UNION ALL (SELECT *, 1 AS side FROM ({}) a)",
            side("DESC", format!("(m.effective_at, m.id) < ({at}, {id})")),
            side("ASC", format!("(m.effective_at, m.id) > ({at}, {id})")),
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        let mut before = Vec::new();
        let mut after = Vec::new();
        for row in &rows {
            let side: i32 = row
                .try_get("side")
                .map_err(|e| Error::Storage(e.to_string()))?;
            let memory = memory_from_row(row, false)?;
            if side == 0 {
                before.push(memory);
            } else {
                after.push(memory);
            }
        }
        Ok((before, after))
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, count = updates.len()))]
    async fn set_index_context(&self, bank: &BankId, updates: Vec<ContextUpdate>) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        // One tsvector covers text and context here, as at insert.
        let (ids, texts): (Vec<String>, Vec<String>) = updates
            .into_iter()
            .map(|u| {
                let index_text = match u.index_context {
                    Some(context) if !context.trim().is_empty() => {
                        format!("{}\n{}", u.index_text, context)
                    }
                    _ => u.index_text,
                };
                (u.id, index_text)
            })
            .unzip();
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let ids = params.push(ids, Type::TEXT_ARRAY);
        let texts = params.push(texts, Type::TEXT_ARRAY);
        let sql = format!(
            "UPDATE {table} m SET index_text = NULLIF(u.index_text, m.text) \
             FROM unnest({ids}::text[], {texts}::text[]) AS u(id, index_text) \
             WHERE m.bank_id = {bank} AND m.id = u.id \
               AND m.index_text IS DISTINCT FROM NULLIF(u.index_text, m.text)",
            table = self.binding.tables.memories
        );
        self.begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        self.wrote().await;
        Ok(())
    }

    async fn scan(
        &self,
        bank: &BankId,
        after: Option<&MemoryId>,
        limit: usize,
        include_embeddings: bool,
    ) -> Result<Vec<Memory>> {
        let mut params = Params::default();
        let mut condition = format!(
            "WHERE m.bank_id = {} AND m.forgotten_at IS NULL",
            params.push(bank.as_str().to_string(), Type::TEXT)
        );
        if let Some(after) = after {
            condition.push_str(&format!(
                " AND m.id > {}",
                params.push(after.clone(), Type::TEXT)
            ));
        }
        let limit = params.push(to_i64(limit), Type::INT8);
        let sql = self.memory_scan_sql(
            include_embeddings,
            &format!("{condition} ORDER BY m.id LIMIT {limit}"),
        );
        // Export's pages (and the workers' scans): a replica may answer.
        let rows = self.read_rows("", &sql, &params).await?;
        rows.iter()
            .map(|row| Ok(memory_from_row(row, include_embeddings)?))
            .collect()
    }

    /// Replaces vectors by memory id and records `space`, in one transaction. The dimension
    /// may only change while the tenant holds no memory at all (`Unsupported` otherwise);
    /// other handles on the tenant (in other processes) then learn the new dimension only when
    /// reopened.
    #[instrument(skip_all, fields(tenant = %self.binding.schema, count = vectors.len()))]
    async fn replace_embeddings(
        &self,
        space: &EmbeddingSpace,
        vectors: Vec<(MemoryId, Vec<f32>)>,
    ) -> Result<()> {
        if let Some((id, bad)) = vectors.iter().find(|(_, v)| v.len() != space.dimension) {
            return Err(Error::invalid(format!(
                "memory {id} has a vector of dimension {}, expected {}",
                bad.len(),
                space.dimension
            )));
        }
        let (ids, literals): (Vec<MemoryId>, Vec<String>) = vectors
            .into_iter()
            .map(|(id, vector)| (id, vector_literal(&vector)))
            .unzip();
        let mut transaction = self.begin("").await?;
        match self.replace_in(&transaction, space, ids, literals).await {
            Ok(()) => transaction.finish("COMMIT").await?,
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                return Err(error);
            }
        }
        self.wrote().await;
        self.remember_dimension(space.dimension);
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let mut params = Params::default();
        let key = params.push(key.to_string(), Type::TEXT);
        let sql = format!(
            "SELECT value FROM {} WHERE key = {key}",
            self.binding.tables.settings
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        Ok(rows
            .first()
            .map(|row| row.try_get("value"))
            .transpose()
            .map_err(PgError::from)?)
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, key = %key))]
    async fn put_setting(&self, key: &str, value: Option<serde_json::Value>) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("setting key must not be empty"));
        }
        let mut params = Params::default();
        let key = params.push(key.to_string(), Type::TEXT);
        let table = &self.binding.tables.settings;
        let sql = match value {
            Some(value) => {
                let value = params.push(value, Type::JSONB);
                format!(
                    "INSERT INTO {table} (key, value) VALUES ({key}, {value}) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                )
            }
            None => format!("DELETE FROM {table} WHERE key = {key}"),
        };
        self.begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        Ok(())
    }

    fn jobs(&self) -> Option<Arc<dyn JobQueue>> {
        Some(self.jobs.clone())
    }

    async fn text_bytes(&self, bank: &BankId) -> Result<u64> {
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let sql = format!(
            "SELECT COALESCE(sum(octet_length(m.text)), 0)::bigint AS n FROM {} m \
             WHERE m.bank_id = {bank} AND m.forgotten_at IS NULL",
            self.binding.tables.memories
        );
        self.count_rows(&sql, &params).await
    }

    async fn count(&self, bank: &BankId) -> Result<u64> {
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let sql = format!(
            "SELECT count(*) AS n FROM {} m WHERE m.bank_id = {bank} AND m.forgotten_at IS NULL",
            self.binding.tables.memories
        );
        // Export's header: a replica may answer.
        let rows = self.read_rows("", &sql, &params).await?;
        first_count(&rows)
    }
}
