//! The Engine: retain, recall, reflect, forget, export and import over any [`Store`] and
//! [`Embedder`]. Every transport (REST, MCP, CLI, workers) calls these methods; none holds
//! retrieval logic of its own. The tenant is always the first argument.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, Utc};
use std::sync::Mutex;
use tracing::{debug, instrument};

use crate::embed::{dot, ChatMessage, ChatRequest, EmbedPurpose, Embedder, Llm};
use crate::error::{Error, Result};
use crate::model::{
    BankId, ChunkRef, ForgetMode, ForgetSelector, Memory, NewMemory, RecallHit, RecallRequest,
    RecallResult, RecallTrace, ReflectResult, RetainOutcome, RetainRequest, DEFAULT_FACT_TYPE,
};
use crate::pipeline::budget::{estimate_tokens, fit_to_budget};
use crate::pipeline::chunk::{chunk, ChunkParams};
use crate::pipeline::fuse::{apply_time_hint, fuse, FusionParams};
use crate::pipeline::validate::{
    check_content, check_forget_selector, check_metadata_scalars, check_recall_request,
    check_retain_request, normalize_tags, sanitize_metadata, RetainLimits,
};
use crate::store::{EmbeddingSpace, SearchRequest, Store, TenantStore};
use crate::tenancy::Schema;

/// Tunables of the pipeline. Defaults follow the reference where it has one.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Retain validation limits.
    pub limits: RetainLimits,
    /// Chunking.
    pub chunking: ChunkParams,
    /// Fusion weights and constants.
    pub fusion: FusionParams,
    /// Cosine similarity at or above which a new chunk is a near-duplicate of a stored one.
    /// 0.95 keeps paraphrases with different facts (dates, names) apart while catching resends.
    pub dedup_threshold: f32,
    /// Candidates fetched per strategy, as a multiple of `max_results`: fusion needs more
    /// candidates than it returns or a memory ranked well by two strategies is never seen.
    pub overfetch: usize,
    /// Upper clamp for `max_results`.
    pub max_result_limit: usize,
    /// `max_results` when the caller gives none.
    pub default_max_results: usize,
    /// Texts embedded per provider call.
    pub embed_batch_size: usize,
    /// Memories reflect reads.
    pub reflect_max_results: usize,
    /// Whether the embedding covers the date and retrieval context too (otherwise only the
    /// memory's text: dense models blur when neighbours dominate a short turn).
    pub embed_context: bool,
    /// Neighbouring chunks of the same retain added to each chunk's keyword context.
    pub neighbour_context: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: RetainLimits::default(),
            chunking: ChunkParams::default(),
            fusion: FusionParams::default(),
            dedup_threshold: 0.95,
            overfetch: 5,
            max_result_limit: 1000,
            default_max_results: 10,
            embed_batch_size: 64,
            reflect_max_results: 8,
            embed_context: false,
            neighbour_context: 1,
        }
    }
}

/// What a caller asks to reflect on.
#[derive(Debug, Clone, Default)]
pub struct ReflectRequest {
    /// The question.
    pub query: String,
    /// The bank to read.
    pub bank_id: String,
    /// Token budget for the memories given to the answer.
    pub max_tokens: Option<usize>,
}

/// The memory engine.
pub struct Engine {
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
    llm: Option<Arc<dyn Llm>>,
    config: EngineConfig,
    checked_spaces: Mutex<HashSet<Schema>>,
}

/// A chunk on its way into the store.
struct PendingChunk {
    request_index: usize,
    memory: Memory,
    /// What the embedding is computed from.
    embed_text: String,
    /// What the keyword index covers as the memory's own text.
    index_text: String,
    /// What the keyword index covers as context.
    index_context: Option<String>,
}

/// For each vector, the earlier ones of the same bank it is a near-duplicate of (cosine at
/// least `threshold`), in batch order.
fn similar_earlier(vectors: &[Vec<f32>], banks: &[BankId], threshold: f32) -> Vec<Vec<usize>> {
    (0..vectors.len())
        .map(|i| {
            (0..i)
                .filter(|&j| banks[j] == banks[i] && dot(&vectors[j], &vectors[i]) >= threshold)
                .collect()
        })
        .collect()
}

impl Engine {
    /// Builds an engine over a store and an embedder.
    pub fn new(store: Arc<dyn Store>, embedder: Arc<dyn Embedder>, config: EngineConfig) -> Self {
        Engine {
            store,
            embedder,
            llm: None,
            config,
            checked_spaces: Mutex::new(HashSet::new()),
        }
    }

    /// Adds an LLM: reflect then synthesises answers instead of extracting them.
    pub fn with_llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// The LLM, when one is configured.
    pub fn llm(&self) -> Option<&Arc<dyn Llm>> {
        self.llm.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A tenant handle whose embedding space has been checked against the embedder once.
    pub async fn tenant(&self, schema: &Schema) -> Result<Arc<dyn TenantStore>> {
        let tenant = self.store.tenant(schema).await?;
        let known = self
            .checked_spaces
            .lock()
            .map(|s| s.contains(schema))
            .unwrap_or(false);
        if !known {
            tenant
                .ensure_embedding_space(&EmbeddingSpace {
                    model: self.embedder.model().to_string(),
                    dimension: self.embedder.dimension(),
                })
                .await?;
            if let Ok(mut set) = self.checked_spaces.lock() {
                set.insert(schema.clone());
            }
        }
        Ok(tenant)
    }

    /// Forgets which tenants were checked (after a tenant is dropped and re-created).
    pub fn invalidate_tenant(&self, schema: &Schema) {
        if let Ok(mut set) = self.checked_spaces.lock() {
            set.remove(schema);
        }
    }

    /// Embeds texts in provider-sized batches.
    pub async fn embed_all(
        &self,
        texts: &[String],
        purpose: EmbedPurpose,
    ) -> Result<Vec<Vec<f32>>> {
        // Batches of similar length: a model pads every text of a batch to the longest one,
        // so sorting first (by bytes, a cheap stand-in for tokens) wastes less work on padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for members in order.chunks(self.config.embed_batch_size.max(1)) {
            let batch: Vec<String> = members.iter().map(|&i| texts[i].clone()).collect();
            let vectors = self.embedder.embed(&batch, purpose).await?;
            if vectors.len() != batch.len() {
                return Err(Error::Provider(format!(
                    "embedder returned {} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                )));
            }
            if let Some(v) = vectors
                .iter()
                .find(|v| v.len() != self.embedder.dimension())
            {
                return Err(Error::Provider(format!(
                    "embedder returned a vector of dimension {}, expected {}",
                    v.len(),
                    self.embedder.dimension()
                )));
            }
            for (&i, vector) in members.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// Retains one piece of content. Validation failures are outcomes (`stored: false` with
    /// the reference's message), not errors; an invalid bank id is an error.
    pub async fn retain(&self, schema: &Schema, request: RetainRequest) -> Result<RetainOutcome> {
        let mut outcomes = self.retain_many(schema, vec![request]).await?;
        outcomes
            .pop()
            .ok_or_else(|| Error::Internal("retain_many returned no outcome".into()))
    }

    /// Retains a batch: one embedding pass over every chunk and one transaction for all of
    /// them, so either the whole batch is durable or none of it is.
    #[instrument(skip_all, fields(tenant = %schema, items = requests.len()))]
    pub async fn retain_many(
        &self,
        schema: &Schema,
        requests: Vec<RetainRequest>,
    ) -> Result<Vec<RetainOutcome>> {
        let now = Utc::now();
        // Phase timings go to the debug log: where a retain's time goes as a bank grows.
        let started = Instant::now();
        // Validation, metadata sanitising and chunking are CPU work proportional to the
        // request: they run on the blocking pool, never on the runtime's worker threads.
        let config = self.config.clone();
        let (mut outcomes, pending) =
            tokio::task::spawn_blocking(move || prepare_retains(requests, &config, now))
                .await
                .map_err(|e| Error::Internal(format!("retain preparation failed: {e}")))??;
        if pending.is_empty() {
            return Ok(outcomes);
        }
        let tenant = self.tenant(schema).await?;
        let texts: Vec<String> = pending.iter().map(|p| p.embed_text.clone()).collect();
        let vectors = Arc::new(self.embed_all(&texts, EmbedPurpose::Document).await?);
        let embedded = Instant::now();
        let threshold = self.config.dedup_threshold;

        // Near-duplicates within this batch are found on the blocking pool while the bank's
        // index is searched: the pairwise check costs milliseconds for a large batch, and the
        // search may first wait for the previous insert's graph work.
        let banks: Vec<BankId> = pending.iter().map(|p| p.memory.bank_id.clone()).collect();
        let batch_vectors = Arc::clone(&vectors);
        let similar_earlier =
            tokio::task::spawn_blocking(move || similar_earlier(&batch_vectors, &banks, threshold));

        // Near-duplicates against the bank, through the vector index.
        let mut nearest_by_bank: Vec<Option<(String, f32)>> = vec![None; pending.len()];
        let mut distinct_banks: Vec<&BankId> = pending.iter().map(|p| &p.memory.bank_id).collect();
        distinct_banks.sort();
        distinct_banks.dedup();
        for bank in distinct_banks {
            let indexes: Vec<usize> = (0..pending.len())
                .filter(|i| &pending[*i].memory.bank_id == bank)
                .collect();
            let query: Vec<Vec<f32>> = indexes.iter().map(|i| vectors[*i].clone()).collect();
            let found = tenant.nearest_each(bank, &query, threshold).await?;
            for (i, hit) in indexes.into_iter().zip(found) {
                nearest_by_bank[i] = hit;
            }
        }
        let similar_earlier = similar_earlier
            .await
            .map_err(|e| Error::Internal(format!("near-duplicate check failed: {e}")))?;
        let checked = Instant::now();
        // The id each chunk of the batch was stored under, if it was.
        let mut stored_ids: Vec<Option<String>> = vec![None; pending.len()];
        let mut to_insert: Vec<NewMemory> = Vec::new();
        for (i, chunk) in pending.into_iter().enumerate() {
            let outcome = &mut outcomes[chunk.request_index];
            let stored_twin = nearest_by_bank[i]
                .as_ref()
                .filter(|(_, score)| *score >= threshold)
                .map(|(id, _)| id.clone());
            // The first earlier chunk of this batch that was stored and is this one's twin.
            let batch_twin = similar_earlier[i]
                .iter()
                .find_map(|j| stored_ids[*j].clone());
            if let Some(twin) = stored_twin.or(batch_twin) {
                outcome.deduplicated = true;
                if outcome.memory_id.is_none() && !outcome.stored {
                    outcome.memory_id = Some(twin);
                }
                continue;
            }
            outcome.memory_ids.push(chunk.memory.id.clone());
            if !outcome.stored {
                outcome.memory_id = Some(chunk.memory.id.clone());
            }
            outcome.stored = true;
            stored_ids[i] = Some(chunk.memory.id.clone());
            to_insert.push(NewMemory {
                entities: crate::entities::extract(&chunk.memory.text),
                memory: chunk.memory,
                embedding: vectors[i].clone(),
                index_text: chunk.index_text,
                index_context: chunk.index_context,
            });
        }
        for outcome in outcomes.iter_mut() {
            if !outcome.stored && outcome.deduplicated && outcome.error.is_none() {
                outcome.error = Some("All chunks are near-duplicates".into());
            }
        }
        let inserted = to_insert.len();
        let threaded: Vec<Memory> = to_insert
            .iter()
            .filter(|n| n.memory.thread.is_some())
            .map(|n| n.memory.clone())
            .collect();
        let decided = Instant::now();
        if inserted > 0 {
            tenant.insert(to_insert).await?;
        }
        if !threaded.is_empty() {
            self.relink_threads(tenant.as_ref(), &threaded, true)
                .await?;
        }
        let us = |from: Instant, to: Instant| (to - from).as_micros() as u64;
        debug!(
            inserted,
            prepare_embed_us = us(started, embedded),
            near_duplicates_us = us(embedded, checked),
            within_batch_us = us(checked, decided),
            store_us = us(decided, Instant::now()),
            "retained"
        );
        Ok(outcomes)
    }

    /// Recalls memories by hybrid retrieval: semantic, keyword and recency candidates fused by
    /// weighted RRF, trimmed to `max_results` and the token budget.
    #[instrument(skip_all, fields(tenant = %schema, banks = request.banks.len()))]
    pub async fn recall(&self, schema: &Schema, request: RecallRequest) -> Result<RecallResult> {
        let started = Instant::now();
        let query = request.query.trim();
        if query.is_empty() {
            return Err(Error::invalid("query must not be empty"));
        }
        if request.banks.is_empty() {
            return Err(Error::invalid("bank_id or banks is required"));
        }
        check_recall_request(&request, &self.config.limits)?;
        let mut banks = request
            .banks
            .iter()
            .map(BankId::new)
            .collect::<Result<Vec<_>>>()?;
        banks.sort();
        banks.dedup();
        let max_results = request
            .max_results
            .unwrap_or(self.config.default_max_results)
            .clamp(1, self.config.max_result_limit.max(1));
        let tenant = self.tenant(schema).await?;
        // The reranker reorders the top `rerank_depth` fused candidates, so each strategy
        // fetches at least that many whatever `max_results` is. (Fetching `overfetch` times
        // that measured no better on LoCoMo: 0.785 against 0.789 on the held-out half.)
        let limit = max_results
            .saturating_mul(self.config.overfetch.max(1))
            .max(self.config.fusion.rerank_depth);
        // Keyword and recency need no vector: they run while the query is embedded (a model
        // pass or a provider round trip), and only the semantic strategy waits for it.
        let lexical = SearchRequest {
            banks: banks.clone(),
            vector: None,
            text: Some(query.to_string()),
            recency: self.config.fusion.recency_weight > 0.0,
            limit,
            filter: request.filter.clone(),
        };
        // The semantic strategy's own depth: its index search costs in proportion to it.
        let semantic_limit = max_results
            .max(self.config.fusion.semantic_depth)
            .min(limit);
        let embed_started = Instant::now();
        // The semantic strategy starts as soon as its vector is ready, beside the keyword
        // search rather than after it.
        let semantic_search = async {
            let vector = self
                .embedder
                .embed(&[query.to_string()], EmbedPurpose::Query)
                .await?
                .pop()
                .ok_or_else(|| Error::Provider("embedder returned no vector".into()))?;
            let embed_ms = embed_started.elapsed().as_secs_f64() * 1000.0;
            let semantic = SearchRequest {
                banks: banks.clone(),
                vector: Some(vector),
                text: None,
                recency: false,
                limit: semantic_limit,
                filter: request.filter.clone(),
            };
            let hits = tenant.search(&semantic).await?.semantic;
            Ok::<_, Error>((hits, embed_ms))
        };
        // The entity strategy: memories naming the query's entities, one hop further for
        // questions that connect facts.
        let entity_keys = if self.config.fusion.entity_weight > 0.0 {
            crate::entities::keys(query)
        } else {
            Vec::new()
        };
        let entity_search = async {
            if entity_keys.is_empty() {
                return Ok(None);
            }
            tenant
                .entity_hits(&banks, &entity_keys, true, &request.filter, limit)
                .await
                .map(Some)
        };
        let (semantic, lexical, entity) =
            tokio::join!(semantic_search, tenant.search(&lexical), entity_search);
        let (semantic, embed_ms) = semantic?;
        let mut response = lexical?;
        let entity = entity?;
        response.semantic = semantic;
        let now = Utc::now();
        let mut fused = fuse(
            response.semantic.as_ref(),
            response.keyword.as_ref(),
            response.recency.as_ref(),
            entity.as_ref(),
            &self.config.fusion,
            now,
        );
        // Relative expressions ("last week") are read against the instant the caller asks
        // about, else now.
        let time_hint =
            crate::timeexpr::parse_query_time(query, request.filter.as_of.unwrap_or(now));
        let time_note = time_hint.as_ref().map(|hint| {
            let lifted = apply_time_hint(&mut fused, hint, self.config.fusion.time_boost);
            format!(
                "{:?} {:?}: {} .. {} ({lifted} lifted)",
                hint.kind,
                hint.matched,
                hint.start.format("%Y-%m-%d"),
                hint.end.format("%Y-%m-%d")
            )
        });
        crate::pipeline::rerank::rerank(query, &mut fused, self.config.fusion.rerank_depth);
        let total_available = fused.len();
        let mut hits: Vec<RecallHit> = fused
            .into_iter()
            .take(max_results)
            .map(|f| RecallHit {
                memory: f.memory,
                score: f.score,
                semantic_score: f.semantic_score,
                ranks: f.ranks,
            })
            .collect();
        let mut dropped_by_token_budget = 0;
        if let Some(max_tokens) = request.max_tokens {
            let keep = fit_to_budget(hits.iter().map(|h| h.memory.text.as_str()), max_tokens);
            dropped_by_token_budget = hits.len() - keep.min(hits.len());
            hits.truncate(keep);
        }
        let mut trace = RecallTrace {
            fusion_method: "rrf".into(),
            total_candidates: total_available,
            dropped_by_token_budget,
            time_hint: time_note,
            ..Default::default()
        };
        trace.strategy_timings_ms.insert("embed".into(), embed_ms);
        for (name, strategy) in [
            ("semantic", &response.semantic),
            ("keyword", &response.keyword),
            ("recency", &response.recency),
            ("entity", &entity),
        ] {
            if let Some(strategy) = strategy {
                trace.strategies_used.push(name.into());
                trace
                    .strategy_timings_ms
                    .insert(name.into(), strategy.elapsed.as_secs_f64() * 1000.0);
                trace
                    .strategy_candidate_counts
                    .insert(name.into(), strategy.hits.len());
            }
        }
        trace.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let top_semantic_score = hits
            .iter()
            .filter_map(|h| h.semantic_score)
            .fold(0.0f32, f32::max);
        Ok(RecallResult {
            truncated: hits.len() < total_available,
            hits,
            total_available,
            trace,
            top_semantic_score,
        })
    }

    /// Answers a question from recalled memories: synthesised by the LLM when one is
    /// configured (citing memory ids), otherwise extractive (the best memories, verbatim).
    #[instrument(skip_all, fields(tenant = %schema))]
    pub async fn reflect(&self, schema: &Schema, request: ReflectRequest) -> Result<ReflectResult> {
        let recall = self
            .recall(
                schema,
                RecallRequest {
                    query: request.query.clone(),
                    banks: vec![request.bank_id.clone()],
                    max_results: Some(self.config.reflect_max_results),
                    max_tokens: request.max_tokens,
                    ..Default::default()
                },
            )
            .await?;
        if recall.hits.is_empty() {
            return Ok(ReflectResult {
                answer: "I have no memories that answer this.".into(),
                confidence: 0.0,
                sources: Vec::new(),
                mode: if self.llm.is_some() {
                    "llm"
                } else {
                    "extractive"
                }
                .into(),
            });
        }
        let confidence = recall.hits.first().map(|h| h.score).unwrap_or(0.0);
        match &self.llm {
            None => Ok(extractive_answer(recall.hits, confidence)),
            Some(llm) => synthesised_answer(llm.as_ref(), &request, recall.hits, confidence).await,
        }
    }

    /// Forgets memories in one bank; an empty selector is rejected rather than read as "all".
    #[instrument(skip_all, fields(tenant = %schema, bank = %bank_id))]
    pub async fn forget(
        &self,
        schema: &Schema,
        bank_id: &str,
        selector: &ForgetSelector,
        mode: ForgetMode,
    ) -> Result<u64> {
        let bank = BankId::new(bank_id)?;
        check_forget_selector(selector, &self.config.limits)?;
        if selector.is_empty() {
            return Err(Error::invalid(
                "forget needs memory_ids, tags, before_date or scope \"all\"",
            ));
        }
        let tenant = self.store.tenant(schema).await?;
        let victims = self
            .threaded_victims(tenant.as_ref(), &bank, selector)
            .await?;
        let forgotten = tenant.forget(&bank, selector, mode, Utc::now()).await?;
        // A forgotten turn stops lending its words to its neighbours.
        if !victims.is_empty() {
            self.relink_threads(tenant.as_ref(), &victims, false)
                .await?;
        }
        Ok(forgotten)
    }

    /// Banks of a tenant holding visible memories.
    pub async fn list_banks(&self, schema: &Schema) -> Result<Vec<BankId>> {
        self.store.tenant(schema).await?.list_banks().await
    }
}

/// Validates, sanitises and chunks a batch of retains: one outcome per request and the chunks
/// to embed. Pure CPU work, run on the blocking pool.
fn prepare_retains(
    requests: Vec<RetainRequest>,
    config: &EngineConfig,
    now: crate::model::Timestamp,
) -> Result<(Vec<RetainOutcome>, Vec<PendingChunk>)> {
    let mut outcomes: Vec<RetainOutcome> = Vec::with_capacity(requests.len());
    let mut pending: Vec<PendingChunk> = Vec::new();
    for (request_index, request) in requests.into_iter().enumerate() {
        let bank = BankId::new(&request.bank_id)?;
        check_retain_request(&request, &config.limits)?;
        if let Some(error) = check_content(&request.content, &request.tags, &config.limits)
            .or_else(|| check_metadata_scalars(&request.metadata))
        {
            outcomes.push(RetainOutcome::rejected(error));
            continue;
        }
        let fact_type = request
            .fact_type
            .clone()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FACT_TYPE.to_string());
        // Before the metadata is sanitised (and moved): a thread key may live there.
        let thread = crate::thread::thread_key(&request);
        let (metadata, warnings) = sanitize_metadata(request.metadata, &config.limits);
        let tags = normalize_tags(&request.tags);
        let chunks = chunk(&request.content, request.content_type, config.chunking);
        let group_id = uuid::Uuid::now_v7().to_string();
        let count = chunks.len() as u32;
        let dated = request.occurred_at.map(date_words);
        let occurred_at = request.occurred_at;
        for (index, text) in chunks.iter().enumerate() {
            // A threaded chunk's neighbours (this retain's other chunks among them) come from
            // the stored thread once it is written.
            let neighbours = match thread {
                Some(_) => None,
                None => neighbour_text(&chunks, index, config.neighbour_context),
            };
            let context = join_nonempty(&[request.context.as_deref(), neighbours.as_deref()]);
            // The date and context go to the keyword index, not (by default) to the
            // embedding: on LoCoMo the plain text embedded gave better fused recall than
            // the dated text (0.732 vs 0.726 @10) and is some 6 tokens shorter to encode.
            let embed_text = if config.embed_context {
                join_nonempty(&[dated.as_deref(), context.as_deref(), Some(text)])
            } else {
                None
            };
            pending.push(PendingChunk {
                request_index,
                embed_text: embed_text.unwrap_or_else(|| text.clone()),
                index_text: own_index_text(text, occurred_at),
                index_context: context,
                memory: Memory {
                    id: uuid::Uuid::now_v7().to_string(),
                    bank_id: bank.clone(),
                    text: text.clone(),
                    tags: tags.clone(),
                    metadata: metadata.clone(),
                    fact_type: fact_type.clone(),
                    occurred_at: request.occurred_at,
                    retained_at: now,
                    forgotten_at: None,
                    source: request.source.clone(),
                    chunk: (count > 1).then(|| ChunkRef {
                        group_id: group_id.clone(),
                        index: index as u32,
                        count,
                    }),
                    thread: thread.clone(),
                    embedding: None,
                },
            });
        }
        outcomes.push(RetainOutcome {
            stored: false,
            memory_id: None,
            memory_ids: Vec::new(),
            deduplicated: false,
            error: None,
            warnings,
        });
    }
    Ok((outcomes, pending))
}

/// A date in words (`8 May 2023, Monday`) so keyword search matches how people ask about time.
pub(crate) fn date_words(at: crate::model::Timestamp) -> String {
    at.format("%-d %B %Y, %A").to_string()
}

/// What the keyword index covers as a memory's own text: its date in words, the dates its
/// own time expressions name ("yesterday" in a memory of 8 May 2023 is "7 May 2023"), then
/// the text. A question that names the date then finds the memory that only said "yesterday".
pub(crate) fn own_index_text(text: &str, occurred_at: Option<crate::model::Timestamp>) -> String {
    let Some(at) = occurred_at else {
        return text.to_string();
    };
    let mut words = vec![date_words(at)];
    for hint in crate::timeexpr::resolve_in_text(text, at) {
        let (start, end) = (hint.start.date_naive(), hint.end.date_naive());
        let named = if start == end {
            start.format("%-d %B %Y").to_string()
        } else if (start.year(), start.month()) == (end.year(), end.month()) {
            start.format("%B %Y").to_string()
        } else if start.year() == end.year() {
            start.format("%Y").to_string()
        } else {
            continue;
        };
        if !words.contains(&named) {
            words.push(named);
        }
    }
    format!("{}\n{text}", words.join("; "))
}

/// Up to `radius` chunks on each side of `index`, in order.
fn neighbour_text(chunks: &[String], index: usize, radius: usize) -> Option<String> {
    if radius == 0 || chunks.len() < 2 {
        return None;
    }
    let start = index.saturating_sub(radius);
    let end = (index + radius + 1).min(chunks.len());
    let around: Vec<&str> = (start..end)
        .filter(|i| *i != index)
        .map(|i| chunks[i].as_str())
        .collect();
    (!around.is_empty()).then(|| around.join("\n"))
}

fn join_nonempty(parts: &[Option<&str>]) -> Option<String> {
    let kept: Vec<&str> = parts
        .iter()
        .flatten()
        .copied()
        .filter(|p| !p.trim().is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("\n"))
}

fn extractive_answer(hits: Vec<RecallHit>, confidence: f32) -> ReflectResult {
    let mut answer = String::from(
        "Extractive answer (no language model configured); the most relevant memories:\n",
    );
    for hit in &hits {
        let when = hit
            .memory
            .occurred_at
            .map(|t| format!(" ({})", t.format("%Y-%m-%d")))
            .unwrap_or_default();
        answer.push_str(&format!("- {}{}\n", hit.memory.text, when));
    }
    ReflectResult {
        answer: answer.trim_end().to_string(),
        confidence,
        sources: hits,
        mode: "extractive".into(),
    }
}

async fn synthesised_answer(
    llm: &dyn Llm,
    request: &ReflectRequest,
    hits: Vec<RecallHit>,
    confidence: f32,
) -> Result<ReflectResult> {
    let mut context = String::new();
    for hit in &hits {
        context.push_str(&format!("[{}] {}\n", hit.memory.id, hit.memory.text));
    }
    let chat = ChatRequest {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "Answer the question using only the memories given. Cite every memory you use by its id in square brackets, e.g. [id]. If the memories do not contain the answer, say that you have no evidence.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: format!("Memories:\n{context}\nQuestion: {}", request.query),
            },
        ],
        max_tokens: request.max_tokens.map(|t| t.clamp(64, 4096)),
        temperature: Some(0.0),
    };
    let answer = llm.complete(&chat).await?;
    let cited: Vec<RecallHit> = hits
        .into_iter()
        .filter(|h| answer.contains(&h.memory.id))
        .collect();
    debug!(
        cited = cited.len(),
        tokens = estimate_tokens(&answer),
        "reflected"
    );
    Ok(ReflectResult {
        confidence: if cited.is_empty() { 0.0 } else { confidence },
        answer,
        sources: cited,
        mode: "llm".into(),
    })
}
