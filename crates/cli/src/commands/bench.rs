//! `astrocyte bench`: speed and memory figures on synthetic but realistic memories (seeded,
//! deterministic): retain throughput (single and batched, and how it holds up as the bank
//! grows), recall latency percentiles, recalls per second at concurrency 1 and 8, peak RSS,
//! one bank and many tenants. Prints a table or JSON and writes an SVG chart of recall latency
//! against bank size next to the JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use astrocyte_core::store::SearchRequest;
use astrocyte_core::{
    BankId, EmbedPurpose, Embedder, Engine, RecallFilter, RecallRequest, RetainRequest, Schema,
};
use astrocyte_settings::Loaded;
use chrono::{TimeZone, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::commands::scratch::ScratchStore;

/// `bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Bank sizes to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub sizes: Vec<usize>,
    /// Tenants for the multi-tenant scenario (0 skips it).
    #[arg(long, default_value_t = 100)]
    pub tenants: usize,
    /// Memories in total across the tenants of the multi-tenant scenario.
    #[arg(long, default_value_t = 10_000)]
    pub tenant_memories: usize,
    /// Recall queries per measurement.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Memories per retain_many batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Random seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Asynchronous retains measured through the job queue and workers (0 skips it).
    #[arg(long, default_value_t = 500)]
    pub async_retains: usize,
    /// Dimension of the hashing embedder (with `--embedder hashing`; unset: its default, 128).
    #[arg(long)]
    pub hashing_dimension: Option<usize>,
    /// Where to write the SVG chart (and, with --json, the JSON report beside it).
    #[arg(long, default_value = "bench-results")]
    pub out_dir: PathBuf,
    /// Keep each bank in an embedded store in `<DIR>/bank-<size>` rather than a temporary
    /// directory (with --database-url: in the tenant `bench_kept_<size>_<seed>`, marked
    /// finished in `<DIR>/postgres-bank-<size>`). A bank an earlier run finished is not built
    /// again: the run only measures its open to first recall, a restart in a fresh process,
    /// and recall latency.
    #[arg(long, value_name = "DIR")]
    pub keep_banks: Option<PathBuf>,
}

/// The bank the bank-size scenarios fill.
const BANK: &str = "bench-bank";

/// Written into a kept bank's directory once the bank is complete and closed.
const KEPT_MARKER: &str = "bench-bank.json";

const NAMES: &[&str] = &[
    "Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya",
];
const PLACES: &[&str] = &[
    "Lisbon",
    "the office",
    "Kyoto",
    "the gym",
    "Nairobi",
    "the library",
    "Toronto",
    "the farmers market",
    "Berlin",
    "the lake house",
    "Austin",
    "the dentist",
];
const ACTIVITIES: &[&str] = &[
    "started learning the cello",
    "finished the quarterly report",
    "adopted a grey cat named Miso",
    "ran a half marathon",
    "switched to a vegetarian diet",
    "booked flights for the summer trip",
    "repaired the old bicycle",
    "signed up for a pottery class",
    "changed teams to work on search",
    "planted tomatoes and basil",
    "read a novel about lighthouses",
    "fixed the flaky deployment pipeline",
];

const FEELINGS: &[&str] = &[
    "was excited about it",
    "found it harder than expected",
    "wants to do it again next month",
    "asked for advice on the next steps",
    "shared photos with the family",
    "said it was the highlight of the week",
];
const TOPICS: &[&str] = &[
    "budget",
    "deadline",
    "recipe",
    "playlist",
    "allergy",
    "birthday",
    "invoice",
    "password reset",
    "conference",
    "mortgage",
    "vaccination",
    "podcast",
];

/// Syllables of the made-up vocabulary; a word spells its rank in base 16 with them.
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "tu", "sha", "vo", "pel", "dri", "nox", "za", "quin", "bel", "tor",
    "fi", "gam",
];

/// Words in the made-up vocabulary.
const VOCABULARY: usize = 50_000;

/// Words drawn from the vocabulary for each memory.
const WORDS_PER_MEMORY: usize = 14;

/// Memories kept as sources of queries.
const QUERY_SOURCES: usize = 4_096;

/// A deterministic generator of agent-like memories: who did what where, then words drawn from
/// a Zipf-distributed vocabulary, so word frequencies look like real text (a few words in most
/// memories, most words rare) and no two memories are near-duplicates, at any bank size.
struct MemoryGenerator {
    rng: StdRng,
    /// Cumulative Zipf (s = 1) weights of the vocabulary by rank.
    cumulative: Vec<f64>,
    /// Word lists of some generated memories; queries ask about them.
    sources: Vec<Vec<usize>>,
    generated: usize,
}

impl MemoryGenerator {
    fn new(seed: u64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        MemoryGenerator {
            rng: StdRng::seed_from_u64(seed),
            cumulative,
            sources: Vec::new(),
            generated: 0,
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.gen_range(0..items.len())]
    }

    /// A vocabulary rank drawn with Zipf weights.
    fn rank(&mut self) -> usize {
        let total = self.cumulative[VOCABULARY - 1];
        let target = self.rng.gen_range(0.0..total);
        self.cumulative
            .partition_point(|c| *c <= target)
            .min(VOCABULARY - 1)
    }

    /// The made-up word of a rank: its base-16 digits as syllables, at least two.
    fn word(rank: usize) -> String {
        let mut digits = Vec::new();
        let mut n = rank;
        loop {
            digits.push(n % SYLLABLES.len());
            n /= SYLLABLES.len();
            if n == 0 && digits.len() >= 2 {
                break;
            }
        }
        digits.iter().rev().map(|d| SYLLABLES[*d]).collect()
    }

    fn memory(&mut self, _n: usize) -> String {
        let who = self.pick(NAMES);
        let what = self.pick(ACTIVITIES);
        let place = self.pick(PLACES);
        let feeling = self.pick(FEELINGS);
        let topic = self.pick(TOPICS);
        let day = self.rng.gen_range(1..28);
        let ranks: Vec<usize> = (0..WORDS_PER_MEMORY).map(|_| self.rank()).collect();
        let words: Vec<String> = ranks.iter().map(|r| Self::word(*r)).collect();
        // Reservoir sampling keeps the query sources a uniform sample of the bank.
        self.generated += 1;
        if self.sources.len() < QUERY_SOURCES {
            self.sources.push(ranks);
        } else {
            let slot = self.rng.gen_range(0..self.generated);
            if slot < QUERY_SOURCES {
                self.sources[slot] = ranks;
            }
        }
        format!(
            "{who} {what} in {place} on day {day} and {feeling}; about the {topic}: {}.",
            words.join(" ")
        )
    }

    /// A question about a generated memory: its person and topic words, some of them.
    fn query(&mut self) -> String {
        let who = self.pick(NAMES);
        let place = self.pick(PLACES);
        let words = match self.sources.len() {
            0 => vec![Self::word(self.rank())],
            n => {
                let source = self.sources[self.rng.gen_range(0..n)].clone();
                let take = self.rng.gen_range(2..=4);
                (0..take)
                    .map(|_| Self::word(source[self.rng.gen_range(0..source.len())]))
                    .collect()
            }
        };
        format!("what did {who} say in {place} about {}", words.join(" "))
    }
}

fn percentiles(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if samples.is_empty() {
            0.0
        } else {
            samples[(((p / 100.0) * (samples.len() - 1) as f64).round() as usize)
                .min(samples.len() - 1)]
        }
    };
    json!({"p50": round3(at(50.0)), "p95": round3(at(95.0)), "p99": round3(at(99.0))})
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Peak resident set size of this process in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn request(bank: &str, text: String, n: usize) -> RetainRequest {
    RetainRequest {
        bank_id: bank.to_string(),
        content: text,
        tags: vec![format!("t{}", n % 16)],
        occurred_at: Utc
            .timestamp_opt(1_700_000_000 + (n as i64) * 60, 0)
            .single(),
        ..Default::default()
    }
}

/// Recall latencies, and each strategy's own time per query (from the recall trace), so a
/// slow recall shows where it went.
struct RecallTimings {
    total_ms: Vec<f64>,
    /// The total less the query's embedding, which a hosted model would dominate.
    without_embed_ms: Vec<f64>,
    by_strategy_ms: BTreeMap<String, Vec<f64>>,
    /// Candidates each strategy returned per query.
    candidates: BTreeMap<String, Vec<f64>>,
}

async fn recall_latencies(
    engine: &Engine,
    schemas: &[Schema],
    bank: &str,
    queries: &[String],
) -> anyhow::Result<RecallTimings> {
    let mut timings = RecallTimings {
        total_ms: Vec::with_capacity(queries.len()),
        without_embed_ms: Vec::with_capacity(queries.len()),
        by_strategy_ms: BTreeMap::new(),
        candidates: BTreeMap::new(),
    };
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let result = engine
            .recall(
                &schemas[i % schemas.len()],
                RecallRequest {
                    query: q.clone(),
                    banks: vec![bank.into()],
                    ..Default::default()
                },
            )
            .await?;
        let total = t.elapsed().as_secs_f64() * 1000.0;
        let embed = result
            .trace
            .strategy_timings_ms
            .get("embed")
            .copied()
            .unwrap_or(0.0);
        timings.total_ms.push(total);
        timings.without_embed_ms.push((total - embed).max(0.0));
        for (strategy, ms) in result.trace.strategy_timings_ms {
            timings.by_strategy_ms.entry(strategy).or_default().push(ms);
        }
        for (strategy, n) in result.trace.strategy_candidate_counts {
            timings
                .candidates
                .entry(strategy)
                .or_default()
                .push(n as f64);
        }
    }
    Ok(timings)
}

async fn recalls_per_second(
    engine: Arc<Engine>,
    schema: Schema,
    bank: &str,
    queries: Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let engine = engine.clone();
        let schema = schema.clone();
        let bank = bank.to_string();
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            for q in queries.iter().skip(worker).step_by(concurrency) {
                engine
                    .recall(
                        &schema,
                        RecallRequest {
                            query: q.clone(),
                            banks: vec![bank.clone()],
                            ..Default::default()
                        },
                    )
                    .await?;
                done += 1;
            }
            Ok::<usize, astrocyte_core::Error>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.context("recall task panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Runs one bank-size scenario.
async fn bank_scenario(
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    size: usize,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    let Some(root) = &args.keep_banks else {
        let mut scratch = ScratchStore::open(loaded, "bench").await?;
        let result = bank_run(&mut scratch, loaded, embedder, size, args).await;
        scratch.drop().await?;
        return result;
    };
    let kept = KeptBank::new(loaded, root, size, args);
    if kept.finished() {
        return reopen_kept(loaded, embedder, size, &kept, args).await;
    }
    if kept.dir.exists() {
        anyhow::bail!(
            "{} holds no finished bank of {size} memories with seed {}; delete it{} to build one",
            kept.dir.display(),
            args.seed,
            match &kept.postgres {
                Some((_, tenant)) => format!(" and drop the tenant {tenant}"),
                None => String::new(),
            }
        );
    }
    let mut scratch = kept.open(loaded, true).await?;
    let result = bank_run(&mut scratch, loaded, embedder, size, args).await?;
    // Closing writes the snapshots a restart reads; only then is the bank complete.
    drop(scratch);
    kept.mark_finished()?;
    Ok(result)
}

/// Where `--keep-banks` keeps the bank of one size: the embedded store in `<DIR>/bank-<size>`,
/// or on PostgreSQL the tenant `bench_kept_<size>_<seed>`, with `<DIR>/postgres-bank-<size>`
/// holding only the marker that a run finished it.
struct KeptBank {
    /// The embedded store's directory, or the PostgreSQL marker's.
    dir: std::path::PathBuf,
    /// `--database-url` and the tenant, when the bank is a PostgreSQL tenant.
    postgres: Option<(String, String)>,
    /// What the marker holds once the bank is complete.
    wanted: Value,
}

impl KeptBank {
    fn new(loaded: &Loaded, root: &std::path::Path, size: usize, args: &BenchArgs) -> Self {
        let postgres = loaded.settings.database_url.as_ref().map(|url| {
            let tenant = format!("bench_kept_{size}_{}", args.seed);
            (url.expose().to_string(), tenant)
        });
        let (dir, wanted) = match &postgres {
            Some((_, tenant)) => (
                root.join(format!("postgres-bank-{size}")),
                json!({"bank_size": size, "seed": args.seed, "tenant": tenant}),
            ),
            None => (
                root.join(format!("bank-{size}")),
                json!({"bank_size": size, "seed": args.seed}),
            ),
        };
        KeptBank {
            dir,
            postgres,
            wanted,
        }
    }

    fn marker(&self) -> std::path::PathBuf {
        self.dir.join(KEPT_MARKER)
    }

    /// Whether an earlier run completed this bank.
    fn finished(&self) -> bool {
        std::fs::read_to_string(self.marker())
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .as_ref()
            == Some(&self.wanted)
    }

    /// The bank's store and tenant; a PostgreSQL tenant is created when `create`, else it
    /// must exist.
    async fn open(&self, loaded: &Loaded, create: bool) -> anyhow::Result<ScratchStore> {
        match &self.postgres {
            Some((url, tenant)) => {
                if create {
                    std::fs::create_dir_all(&self.dir)
                        .with_context(|| format!("creating {}", self.dir.display()))?;
                }
                ScratchStore::open_kept_postgres(loaded, url, tenant, create).await
            }
            None => ScratchStore::open_kept(loaded, "bench", &self.dir),
        }
    }

    fn mark_finished(&self) -> anyhow::Result<()> {
        std::fs::write(self.marker(), self.wanted.to_string())
            .with_context(|| format!("writing {}", self.marker().display()))
    }

    /// How the report names the bank: its directory, or its PostgreSQL tenant.
    fn label(&self) -> String {
        match &self.postgres {
            Some((_, tenant)) => tenant.clone(),
            None => self.dir.display().to_string(),
        }
    }
}

/// Opens a kept bank in this fresh process and answers one recall: a restart's cost, with
/// the indexes loaded from their snapshots. The process's peak RSS is then mostly the open's.
/// Then it measures recall latency with the queries the run that built the bank asked, so a
/// quiet machine can measure a bank that took a loaded one an hour to build.
async fn reopen_kept(
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    size: usize,
    kept: &KeptBank,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    let query = MemoryGenerator::new(args.seed).query();
    let opened = Instant::now();
    let scratch = kept.open(loaded, false).await?;
    let engine = Engine::new(scratch.store(), embedder, loaded.engine_config());
    recall_latencies(
        &engine,
        std::slice::from_ref(scratch.schema()),
        BANK,
        &[query],
    )
    .await?;
    let open_ms = opened.elapsed().as_secs_f64() * 1000.0;
    let peak = peak_rss_mib();
    // The generator's queries draw on the memories it has made: replay them as `bank_run` did.
    let mut generator = MemoryGenerator::new(args.seed);
    for i in 0..size + single_retains(size) {
        generator.memory(i);
    }
    let queries: Vec<String> = (0..args.queries).map(|_| generator.query()).collect();
    let schemas = std::slice::from_ref(scratch.schema());
    recall_latencies(&engine, schemas, BANK, &queries[..queries.len().min(20)]).await?;
    let timings = recall_latencies(&engine, schemas, BANK, &queries).await?;
    drop(engine);
    let closing = Instant::now();
    drop(scratch);
    Ok(json!({
        "bank_size": size,
        "kept_bank": kept.label(),
        "restart": {"close_ms": round3(closing.elapsed().as_secs_f64() * 1000.0), "open_to_first_recall_ms": round3(open_ms)},
        "peak_rss_mib": round3(peak),
        "recall_latency_ms": percentiles(timings.total_ms),
        "recall_latency_without_embed_ms": percentiles(timings.without_embed_ms),
        "recall_strategy_ms": strategy_percentiles(timings.by_strategy_ms),
        "recall_strategy_candidates": strategy_percentiles(timings.candidates),
    }))
}

/// Single retains `bank_run` times after the batched ones.
fn single_retains(size: usize) -> usize {
    200.min(size.max(1))
}

fn strategy_percentiles(by_strategy_ms: BTreeMap<String, Vec<f64>>) -> Value {
    Value::Object(
        by_strategy_ms
            .into_iter()
            .map(|(name, samples)| (name, percentiles(samples)))
            .collect(),
    )
}

async fn bank_run(
    scratch: &mut ScratchStore,
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    size: usize,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    let engine = Arc::new(Engine::new(
        scratch.store(),
        embedder.clone(),
        loaded.engine_config(),
    ));
    let schema = scratch.schema().clone();
    let bank = BANK;
    let mut generator = MemoryGenerator::new(args.seed);
    let mut segments: Vec<Value> = Vec::new();
    let started = Instant::now();
    let segment = (size / 10).max(args.batch);
    let mut seg_start = Instant::now();
    let mut seg_count = 0usize;
    let mut n = 0usize;
    while n < size {
        let take = args.batch.min(size - n);
        let batch: Vec<RetainRequest> = (n..n + take)
            .map(|i| request(bank, generator.memory(i), i))
            .collect();
        engine.retain_many(&schema, batch).await?;
        n += take;
        seg_count += take;
        if seg_count >= segment || n == size {
            segments.push(json!({"bank_size": n, "per_second": round3(seg_count as f64 / seg_start.elapsed().as_secs_f64().max(1e-9))}));
            seg_start = Instant::now();
            seg_count = 0;
        }
    }
    let batched = size as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let singles = single_retains(size);
    let t = Instant::now();
    for i in 0..singles {
        engine
            .retain(&schema, request(bank, generator.memory(size + i), size + i))
            .await?;
    }
    let single = singles as f64 / t.elapsed().as_secs_f64().max(1e-9);
    // Retains of a large bank take minutes: say where the run is.
    eprintln!(
        "bench: {size} memories retained in {:.0} s; measuring recall",
        started.elapsed().as_secs_f64()
    );
    let queries: Vec<String> = (0..args.queries).map(|_| generator.query()).collect();
    // Warm the index and caches once; first-touch costs are a start-up figure, not a latency.
    recall_latencies(
        &engine,
        std::slice::from_ref(&schema),
        bank,
        &queries[..queries.len().min(20)],
    )
    .await?;
    let timings = recall_latencies(&engine, std::slice::from_ref(&schema), bank, &queries).await?;
    let strategies = strategy_percentiles(timings.by_strategy_ms);
    let candidates = strategy_percentiles(timings.candidates);
    let semantic_recall =
        semantic_recall_at_10(&engine, &schema, bank, &embedder, &queries).await?;
    let queries = Arc::new(queries);
    let rps1 = recalls_per_second(engine.clone(), schema.clone(), bank, queries.clone(), 1).await?;
    let rps8 = recalls_per_second(engine.clone(), schema.clone(), bank, queries.clone(), 8).await?;
    // A restart: close the store, open it again and serve a first recall (index loads
    // included), the time a bank of this size takes to come back.
    drop(engine);
    let restart = match scratch.reopen(loaded)? {
        Some(closing) => {
            let opened = Instant::now();
            let engine = Engine::new(scratch.store(), embedder, loaded.engine_config());
            recall_latencies(&engine, std::slice::from_ref(&schema), bank, &queries[..1]).await?;
            json!({"close_ms": round3(closing.as_secs_f64() * 1000.0), "open_to_first_recall_ms": round3(opened.elapsed().as_secs_f64() * 1000.0)})
        }
        None => Value::Null,
    };
    Ok(json!({
        "bank_size": size,
        "retain_batched_per_second": round3(batched),
        "retain_batched_by_bank_size": segments,
        "retain_single_per_second": round3(single),
        "recall_latency_ms": percentiles(timings.total_ms),
        "recall_latency_without_embed_ms": percentiles(timings.without_embed_ms),
        "recall_strategy_ms": strategies,
        "recall_strategy_candidates": candidates,
        "restart": restart,
        "recalls_per_second": {"concurrency_1": round3(rps1), "concurrency_8": round3(rps8)},
        "semantic_recall_at_10": round3(semantic_recall),
        "peak_rss_mib": round3(peak_rss_mib()),
    }))
}

/// Top-k of the recall (ANN) measure.
const RECALL_K: usize = 10;

/// Recall@10 of the store's vector index against an exact search: each query's top 10 from
/// the semantic strategy alone, against cosine over every stored vector of the bank (scanned
/// out and compared here, so no index is involved). A hit counts when its exact similarity
/// reaches the exact 10th best: ties at the boundary are interchangeable.
///
/// The stored vectors are compared page by page and never held together: at 1M memories of
/// 384 dimensions they would be 1.5 GB of this process's peak memory, which is measured too.
async fn semantic_recall_at_10(
    engine: &Engine,
    schema: &Schema,
    bank: &str,
    embedder: &Arc<dyn Embedder>,
    queries: &[String],
) -> anyhow::Result<f64> {
    let tenant = engine.tenant(schema).await?;
    let bank_id = BankId::new(bank)?;
    if queries.is_empty() {
        return Ok(0.0);
    }
    let vectors = embedder.embed(queries, EmbedPurpose::Query).await?;
    // The index's answers first, then one pass over the rows for the exact ones.
    let mut probes = Vec::with_capacity(vectors.len());
    for vector in vectors {
        let response = tenant
            .search(&SearchRequest {
                banks: vec![bank_id.clone()],
                vector: Some(vector.clone()),
                text: None,
                recency: false,
                limit: RECALL_K,
                filter: RecallFilter::default(),
            })
            .await?;
        let hits: HashMap<String, Option<f32>> = response
            .semantic
            .map(|s| s.hits)
            .unwrap_or_default()
            .into_iter()
            .take(RECALL_K)
            .map(|hit| (hit.memory.id, None))
            .collect();
        probes.push(ExactProbe {
            query: unit(vector),
            best: std::collections::BinaryHeap::new(),
            hits,
        });
    }
    let mut stored = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page = tenant.scan(&bank_id, after.as_ref(), 5_000, true).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for memory in page {
            let vector = unit(
                memory
                    .embedding
                    .context("a scan with embeddings returned a memory without one")?,
            );
            stored += 1;
            for probe in &mut probes {
                let similarity = dot(&probe.query, &vector);
                if let Some(exact) = probe.hits.get_mut(&memory.id) {
                    *exact = Some(similarity);
                }
                probe.best.push(std::cmp::Reverse(Similarity(similarity)));
                if probe.best.len() > RECALL_K {
                    probe.best.pop();
                }
            }
        }
    }
    if stored == 0 {
        return Ok(0.0);
    }
    let k = RECALL_K.min(stored);
    let (mut found, mut wanted) = (0usize, 0usize);
    for probe in probes {
        // The k-th best exact similarity; similarities differ in the last bits between the
        // store's arithmetic and ours.
        let boundary = probe.best.peek().map_or(f32::NEG_INFINITY, |w| w.0 .0) - 1e-5;
        found += probe
            .hits
            .values()
            .filter(|exact| exact.is_some_and(|s| s >= boundary))
            .count();
        wanted += k;
    }
    Ok(found as f64 / wanted as f64)
}

/// A query of the recall measure: its unit vector, the k best exact similarities so far (the
/// worst on top), and the index's hits with their exact similarity once scanned.
struct ExactProbe {
    query: Vec<f32>,
    best: std::collections::BinaryHeap<std::cmp::Reverse<Similarity>>,
    hits: HashMap<String, Option<f32>>,
}

/// A similarity ordered totally, for the heap.
#[derive(PartialEq)]
struct Similarity(f32);

impl Eq for Similarity {}

impl PartialOrd for Similarity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Similarity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn unit(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// Dot product in eight independent sums, which the compiler turns into SIMD: the recall
/// measure compares every query with every stored vector (2 * 10^11 products at 1M memories).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_whole, b_whole) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_whole
        .remainder()
        .iter()
        .zip(b_whole.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_whole.zip(b_whole) {
        for ((sum, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Resident set size of this process now, in MiB (VmRSS).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Tenants created (or dropped) at once on PostgreSQL.
const TENANT_ADMIN_CONCURRENCY: usize = 8;

/// Runs the many-tenants scenario: `tenants` schemas created, the same total of memories spread
/// over them, then a mixed load (recall and retain) over random tenants, the first request of
/// tenants not open, and the open files and memory it all takes.
async fn tenants_scenario(
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    use futures::StreamExt;
    let scratch = ScratchStore::open(loaded, "bench_tenants").await?;
    let store = scratch.store();
    // The other tenants are named after the throw-away one, so they never meet real ones.
    let schemas: Vec<Schema> = (0..args.tenants)
        .map(|i| Schema::new(format!("{}_{i:05}", scratch.schema())))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let created: Vec<(Schema, astrocyte_core::Result<()>)> = futures::stream::iter(schemas.clone())
        .map(|schema| {
            let store = store.clone();
            async move {
                let outcome = store.create_tenant(&schema).await;
                (schema, outcome)
            }
        })
        .buffer_unordered(TENANT_ADMIN_CONCURRENCY)
        .collect()
        .await;
    let create_seconds = started.elapsed().as_secs_f64();
    let mut made = Vec::new();
    let mut failure = None;
    for (schema, outcome) in created {
        match outcome {
            Ok(()) => made.push(schema),
            Err(error) => failure = Some(format!("creating tenant {schema}: {error}")),
        }
    }
    let result = match failure {
        Some(failure) => Err(anyhow::anyhow!(failure)),
        None => {
            tenants_run(
                loaded,
                store.clone(),
                &schemas,
                embedder,
                args,
                create_seconds,
            )
            .await
        }
    };
    // Dropped whatever happened above: on a shared database they are nobody's.
    let dropped: Vec<astrocyte_core::Result<()>> = futures::stream::iter(made)
        .map(|schema| {
            let store = store.clone();
            async move { store.drop_tenant(&schema).await }
        })
        .buffer_unordered(TENANT_ADMIN_CONCURRENCY)
        .collect()
        .await;
    scratch.drop().await?;
    if let Some(Err(error)) = dropped.into_iter().find(|d| d.is_err()) {
        anyhow::bail!("dropping a bench tenant: {error}");
    }
    result
}

async fn tenants_run(
    loaded: &Loaded,
    store: Arc<dyn astrocyte_core::Store>,
    schemas: &[Schema],
    embedder: Arc<dyn Embedder>,
    args: &BenchArgs,
    create_seconds: f64,
) -> anyhow::Result<Value> {
    let engine = Arc::new(Engine::new(
        store.clone(),
        embedder.clone(),
        loaded.engine_config(),
    ));
    let per_tenant = (args.tenant_memories / args.tenants.max(1)).max(1);
    let mut generator = MemoryGenerator::new(args.seed ^ 0x5eed);
    let bank = "bench-bank";
    let mut max_fds = open_fds();
    let started = Instant::now();
    for (t, schema) in schemas.iter().enumerate() {
        let mut n = 0;
        while n < per_tenant {
            let take = args.batch.min(per_tenant - n);
            let batch = (n..n + take)
                .map(|i| request(bank, generator.memory(i), i))
                .collect();
            engine.retain_many(schema, batch).await?;
            n += take;
        }
        if t % 100 == 0 {
            max_fds = max_fds.max(open_fds());
        }
    }
    let retained = per_tenant * schemas.len();
    let retain_seconds = started.elapsed().as_secs_f64();

    // The mixed load: random tenants, four recalls to one retain, 8 requests in flight.
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x11);
    let operations: Vec<(usize, bool, String)> = (0..args.queries)
        .map(|i| {
            let tenant = rng.gen_range(0..schemas.len());
            let recall = i % 5 != 4;
            let text = if recall {
                generator.query()
            } else {
                generator.memory(per_tenant + i)
            };
            (tenant, recall, text)
        })
        .collect();
    let touched: std::collections::HashSet<usize> = operations.iter().map(|(t, _, _)| *t).collect();
    let schemas_shared = Arc::new(schemas.to_vec());
    let operations = Arc::new(operations);
    let peak_fds = Arc::new(std::sync::atomic::AtomicUsize::new(max_fds));
    let started = Instant::now();
    let lanes = 8;
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (engine, schemas, operations, peak_fds) = (
            engine.clone(),
            schemas_shared.clone(),
            operations.clone(),
            peak_fds.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut recalls, mut retains) = (Vec::new(), Vec::new());
            for (i, (tenant, recall, text)) in
                operations.iter().enumerate().skip(lane).step_by(lanes)
            {
                let schema = &schemas[*tenant];
                let t = Instant::now();
                if *recall {
                    engine
                        .recall(
                            schema,
                            RecallRequest {
                                query: text.clone(),
                                banks: vec![bank.into()],
                                ..Default::default()
                            },
                        )
                        .await?;
                    recalls.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    engine
                        .retain(schema, request(bank, text.clone(), i))
                        .await?;
                    retains.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                if i % 50 == 0 {
                    peak_fds.fetch_max(open_fds(), std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok::<_, astrocyte_core::Error>((recalls, retains))
        }));
    }
    let (mut recalls, mut retains) = (Vec::new(), Vec::new());
    for task in tasks {
        let (r, w) = task.await.context("a load task panicked")??;
        recalls.extend(r);
        retains.extend(w);
    }
    let mixed_seconds = started.elapsed().as_secs_f64();
    let mut max_fds = peak_fds.load(std::sync::atomic::Ordering::Relaxed);

    // Cold tenants: untouched by the mixed load and retained into long ago (the embedded
    // store keeps only the most recently used open); on PostgreSQL a fresh store, as a new
    // process would be, whose first request to a tenant looks it up and checks its version.
    let cold_store: Arc<dyn astrocyte_core::Store> = match &loaded.settings.database_url {
        Some(url) => crate::backend::open_postgres(loaded, url.expose()).await?,
        None => store.clone(),
    };
    let cold_engine = Engine::new(cold_store, embedder, loaded.engine_config());
    let cold: Vec<&Schema> = schemas
        .iter()
        .enumerate()
        .take(schemas.len() / 2)
        .filter(|(t, _)| !touched.contains(t))
        .map(|(_, s)| s)
        .step_by(7)
        .take(100)
        .collect();
    let mut cold_ms = Vec::with_capacity(cold.len());
    for schema in &cold {
        let t = Instant::now();
        cold_engine
            .recall(
                schema,
                RecallRequest {
                    query: generator.query(),
                    banks: vec![bank.into()],
                    ..Default::default()
                },
            )
            .await?;
        cold_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    max_fds = max_fds.max(open_fds());
    Ok(json!({
        "tenants": schemas.len(),
        "memories_per_tenant": per_tenant,
        "create_seconds": round3(create_seconds),
        "creates_per_second": round3(schemas.len() as f64 / create_seconds.max(1e-9)),
        "retain_batched_per_second": round3(retained as f64 / retain_seconds.max(1e-9)),
        "mixed_operations": recalls.len() + retains.len(),
        "mixed_per_second": round3((recalls.len() + retains.len()) as f64 / mixed_seconds.max(1e-9)),
        "recall_latency_ms": percentiles(recalls),
        "retain_latency_ms": percentiles(retains),
        "cold_first_request_ms": percentiles(cold_ms),
        "cold_tenants": cold.len(),
        "open_fds_max": max_fds,
        "open_fds_end": open_fds(),
        "rss_mib_end": round3(rss_mib()),
        "peak_rss_mib": round3(peak_rss_mib()),
    }))
}

/// Queues retains through the tenant's job queue while the worker pool drains it; reports
/// throughput and the lag from enqueue to recallable (job done) per job.
async fn async_scenario(
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    let scratch = ScratchStore::open(loaded, "bench_async").await?;
    let result = async_run(&scratch, loaded, embedder, args).await;
    scratch.drop().await?;
    result
}

async fn async_run(
    scratch: &ScratchStore,
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    use astrocyte_core::jobs::{JobSpec, JobState};
    use astrocyte_core::tenancy::Tenant;
    use astrocyte_workers::{TenantSource, WorkerConfig, WorkerPool};
    /// Only the throw-away tenant: on a shared database the others are not ours to drain.
    struct One(Schema);
    #[async_trait::async_trait]
    impl TenantSource for One {
        async fn tenants(&self) -> astrocyte_core::Result<Vec<Tenant>> {
            Ok(vec![Tenant {
                schema: self.0.clone(),
            }])
        }
    }
    let store = scratch.store();
    let engine = Arc::new(Engine::new(store.clone(), embedder, loaded.engine_config()));
    let schema = scratch.schema().clone();
    let queue = engine
        .tenant(&schema)
        .await?
        .jobs()
        .context("this store has no job queue")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        poll_interval: std::time::Duration::from_millis(20),
        tenant_refresh_interval: std::time::Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let workers = tokio::spawn(
        WorkerPool::new(engine.clone(), Arc::new(One(schema.clone())), config).run(stopped),
    );
    let mut generator = MemoryGenerator::new(args.seed ^ 0xa5);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.async_retains);
    for i in 0..args.async_retains {
        let request = request("async-bank", generator.memory(i), i);
        let job = queue
            .enqueue(JobSpec::Retain(request).into_new_job(None)?)
            .await?;
        ids.push(job.id);
    }
    let mut lags = Vec::with_capacity(ids.len());
    for id in &ids {
        loop {
            let job = queue.job(id).await?.context("a queued job vanished")?;
            match job.state {
                JobState::Done => {
                    lags.push(
                        (job.updated_at - job.created_at)
                            .num_microseconds()
                            .unwrap_or(0) as f64
                            / 1000.0,
                    );
                    break;
                }
                JobState::Dead => anyhow::bail!("async retain job {id} died: {:?}", job.last_error),
                _ => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = workers.await;
    Ok(json!({
        "jobs": ids.len(),
        "retains_per_second": round3(ids.len() as f64 / elapsed.max(1e-9)),
        "enqueue_to_done_ms": percentiles(lags),
    }))
}

/// An SVG line chart of recall latency percentiles against bank size.
fn latency_chart(embedder: &str, banks: &[Value]) -> String {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let points: Vec<(f64, [f64; 3])> = banks
        .iter()
        .filter_map(|b| {
            let size = b["bank_size"].as_f64()?;
            let l = &b["recall_latency_ms"];
            Some((
                size,
                [l["p50"].as_f64()?, l["p95"].as_f64()?, l["p99"].as_f64()?],
            ))
        })
        .collect();
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().flat_map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| pad + (w - 2.0 * pad) * v / max_x;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max_y;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Recall latency vs bank size ({embedder})</text>\n", w / 2.0);
    svg += &format!("<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n", h - pad, w - pad, h - pad, h - pad);
    svg += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">memories in bank</text><text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">ms</text>\n", w / 2.0, h - 15.0, h / 2.0, h / 2.0);
    for i in 0..=4 {
        let v = max_y * i as f64 / 4.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>\n",
            pad - 6.0,
            y(v) + 4.0
        );
    }
    for (size, _) in &points {
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{size}</text>\n",
            x(*size),
            h - pad + 16.0
        );
    }
    for (i, (name, colour)) in [("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#d62728")]
        .iter()
        .enumerate()
    {
        let path: Vec<String> = points
            .iter()
            .map(|(s, l)| format!("{:.1},{:.1}", x(*s), y(l[i])))
            .collect();
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        );
        for (s, l) in &points {
            svg += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n",
                x(*s),
                y(l[i])
            );
        }
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            w - pad - 40.0,
            pad + 16.0 * i as f64
        );
    }
    svg + "</svg>\n"
}

/// Runs the benchmark for one embedder and prints its figures.
pub async fn run(
    args: BenchArgs,
    loaded: &Loaded,
    embedder: Arc<dyn Embedder>,
    json_output: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let mut banks = Vec::new();
    for size in &args.sizes {
        eprintln!(
            "bench: {} memories in one bank with {}",
            size,
            embedder.model()
        );
        banks.push(bank_scenario(loaded, embedder.clone(), *size, &args).await?);
    }
    let tenants = if args.tenants > 0 {
        eprintln!(
            "bench: {} memories across {} tenants",
            args.tenant_memories, args.tenants
        );
        Some(tenants_scenario(loaded, embedder.clone(), &args).await?)
    } else {
        None
    };
    let async_retain = if args.async_retains > 0 {
        eprintln!(
            "bench: {} asynchronous retains through the job queue",
            args.async_retains
        );
        Some(async_scenario(loaded, embedder.clone(), &args).await?)
    } else {
        None
    };
    let report = json!({
        "store": if loaded.settings.database_url.is_some() { "postgres" } else { "sqlite" },
        "embedder": embedder.model(),
        "async_retain": async_retain,
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "banks": banks,
        "tenants": tenants,
        "peak_rss_mib": round3(peak_rss_mib()),
    });
    let stem = format!(
        "bench-{}",
        embedder
            .model()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    let chart = args.out_dir.join(format!("{stem}.svg"));
    std::fs::write(&chart, latency_chart(embedder.model(), &banks))?;
    // The figures always land next to the chart, as the README says.
    let figures = args.out_dir.join(format!("{stem}.json"));
    std::fs::write(&figures, serde_json::to_string_pretty(&report)?)?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprintln!("bench: wrote {} and {}", figures.display(), chart.display());
        return Ok(());
    }
    println!("embedder {}", embedder.model());
    println!(
        "{:>10} {:>14} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "bank", "retain batch/s", "retain 1/s", "p50 ms", "p95 ms", "p99 ms", "rps c=1", "rps c=8"
    );
    for b in &banks {
        if let Some(dir) = b["kept_bank"].as_str() {
            let l = &b["recall_latency_ms"];
            println!(
                "{:>10} kept bank {dir}: open to first recall {:.0} ms; peak RSS {:.1} MiB; recall p50 {:.2} p95 {:.2} p99 {:.2} ms",
                b["bank_size"],
                b["restart"]["open_to_first_recall_ms"]
                    .as_f64()
                    .unwrap_or(0.0),
                b["peak_rss_mib"].as_f64().unwrap_or(0.0),
                l["p50"].as_f64().unwrap_or(0.0),
                l["p95"].as_f64().unwrap_or(0.0),
                l["p99"].as_f64().unwrap_or(0.0)
            );
            continue;
        }
        let l = &b["recall_latency_ms"];
        let r = &b["recalls_per_second"];
        println!(
            "{:>10} {:>14.0} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>10.0} {:>10.0}",
            b["bank_size"],
            b["retain_batched_per_second"].as_f64().unwrap_or(0.0),
            b["retain_single_per_second"].as_f64().unwrap_or(0.0),
            l["p50"].as_f64().unwrap_or(0.0),
            l["p95"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            r["concurrency_1"].as_f64().unwrap_or(0.0),
            r["concurrency_8"].as_f64().unwrap_or(0.0)
        );
        let segs: Vec<String> = b["retain_batched_by_bank_size"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}:{:.0}/s",
                    s["bank_size"],
                    s["per_second"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!("           retain as the bank grows: {}", segs.join("  "));
        let parts: Vec<String> = b["recall_strategy_ms"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, p)| {
                format!(
                    "{name} {:.2}/{:.2}",
                    p["p50"].as_f64().unwrap_or(0.0),
                    p["p99"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!(
            "           recall time by strategy, p50/p99 ms (embed overlaps keyword and recency): {}",
            parts.join("  ")
        );
        println!(
            "           semantic recall@10 of the vector index against exact search: {:.3}",
            b["semantic_recall_at_10"].as_f64().unwrap_or(0.0)
        );
        let bare = &b["recall_latency_without_embed_ms"];
        println!(
            "           recall without the query embedding: p50 {:.2} ms p99 {:.2} ms",
            bare["p50"].as_f64().unwrap_or(0.0),
            bare["p99"].as_f64().unwrap_or(0.0)
        );
        if let Some(restart) = b["restart"].as_object() {
            println!(
                "           restart: close {:.0} ms, open to first recall {:.0} ms; peak RSS so far {:.1} MiB",
                restart["close_ms"].as_f64().unwrap_or(0.0),
                restart["open_to_first_recall_ms"].as_f64().unwrap_or(0.0),
                b["peak_rss_mib"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if let Some(t) = &tenants {
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        let (l, r, c) = (
            &t["recall_latency_ms"],
            &t["retain_latency_ms"],
            &t["cold_first_request_ms"],
        );
        println!(
            "{} tenants x {} memories: created in {:.1} s ({:.0}/s), retain {:.0}/s",
            t["tenants"],
            t["memories_per_tenant"],
            f(&t["create_seconds"]),
            f(&t["creates_per_second"]),
            f(&t["retain_batched_per_second"])
        );
        println!(
            "           mixed load over random tenants ({} ops, {:.0}/s): recall p50 {:.2} ms p99 {:.2} ms, retain p50 {:.2} ms p99 {:.2} ms",
            t["mixed_operations"],
            f(&t["mixed_per_second"]),
            f(&l["p50"]),
            f(&l["p99"]),
            f(&r["p50"]),
            f(&r["p99"])
        );
        println!(
            "           cold tenant first request ({} tenants): p50 {:.2} ms p99 {:.2} ms; open fds max {} (end {}); RSS end {:.1} MiB, peak {:.1} MiB",
            t["cold_tenants"],
            f(&c["p50"]),
            f(&c["p99"]),
            t["open_fds_max"],
            t["open_fds_end"],
            f(&t["rss_mib_end"]),
            f(&t["peak_rss_mib"])
        );
    }
    if let Some(a) = &report["async_retain"].as_object() {
        let l = &a["enqueue_to_done_ms"];
        println!(
            "async retain: {} jobs at {:.0}/s, enqueue-to-recallable p50 {:.1} ms p95 {:.1} ms",
            a["jobs"],
            a["retains_per_second"].as_f64().unwrap_or(0.0),
            l["p50"].as_f64().unwrap_or(0.0),
            l["p95"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "peak RSS {:.1} MiB; chart {}, figures {}",
        peak_rss_mib(),
        chart.display(),
        figures.display()
    );
    Ok(())
}
