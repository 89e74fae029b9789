//! Measures the SQLite store end to end through the engine: batched retain throughput with the
//! hashing embedder, recall latency percentiles (unfiltered and with a tag filter), and the cost
//! of a restart (snapshot flush, then the first recall that loads the index).
//!
//! ```text
//! cargo run --release -p astrocyte-store-sqlite --example sqlite_bench -- --n 100000
//! ```
//!
//! Options: `--n` memories (10000), `--batch` per retain_many (500), `--queries` (500),
//! `--dir` data directory (default: a temporary one), `--seed` (7), `--reuse true` (skip the
//! retain phase and measure recall on the database already in `--dir`, from the same seed).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::store::SearchRequest;
use astrocyte_core::{
    BankId, Engine, EngineConfig, RecallFilter, RecallRequest, RetainRequest, Schema, Store,
};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};

struct Args {
    n: usize,
    batch: usize,
    queries: usize,
    dir: Option<PathBuf>,
    seed: u64,
    reuse: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        n: 10_000,
        batch: 500,
        queries: 500,
        dir: None,
        seed: 7,
        reuse: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--n" => args.n = number()?,
            "--batch" => args.batch = number()?.max(1),
            "--queries" => args.queries = number()?.max(1),
            "--dir" => args.dir = Some(PathBuf::from(&value)),
            "--seed" => args.seed = number()? as u64,
            "--reuse" => args.reuse = value == "true",
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// SplitMix64: a small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Words drawn from a Zipf-like distribution over a synthetic vocabulary, like natural text:
/// a few very common words, a long tail of rare ones.
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(size: usize) -> Self {
        const SYLLABLES: [&str; 20] = [
            "ka", "lo", "mi", "ru", "te", "so", "na", "vi", "do", "pe", "zu", "ba", "ge", "fi",
            "ho", "ja", "qu", "wy", "xe", "ci",
        ];
        let words = (0..size)
            .map(|i| {
                let (a, b, c) = (i % 20, (i / 20) % 20, (i / 400) % 20);
                format!(
                    "{}{}{}{}",
                    SYLLABLES[a],
                    SYLLABLES[b],
                    SYLLABLES[c],
                    if i >= 8000 { "n" } else { "" }
                )
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (0..size)
            .map(|rank| {
                total += 1.0 / (rank as f64 + 1.0);
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = rng.unit() * total;
        let index = self
            .cumulative
            .partition_point(|c| *c < target)
            .min(self.words.len() - 1);
        &self.words[index]
    }

    fn sentence(&self, rng: &mut Rng, min: usize, max: usize) -> String {
        let len = min + (rng.next() as usize % (max - min + 1));
        (0..len)
            .map(|_| self.word(rng))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// CPU time the whole process has used (all threads, user and system), from `/proc/self/stat`
/// on Linux; `None` elsewhere. It separates our cost from time spent waiting for a core on a
/// shared machine. Ticks are assumed to be 1/100 s (`CLK_TCK` on every mainstream Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Load average over the last minute, to put timings on a shared machine in context.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{label:<28} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}

/// Runs every query through the engine with the filter `filter(i)` and prints recall latency
/// percentiles and each strategy's share.
async fn measure(
    engine: &Engine,
    schema: &Schema,
    queries: &[String],
    label: &str,
    filter: impl Fn(usize) -> RecallFilter,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut latencies = Vec::with_capacity(queries.len());
    let mut per_strategy: [Vec<Duration>; 3] = Default::default();
    let cpu_before = process_cpu_seconds();
    for (i, query) in queries.iter().enumerate() {
        let request = RecallRequest {
            query: query.clone(),
            banks: vec!["main".into()],
            max_results: Some(10),
            max_tokens: None,
            filter: filter(i),
        };
        let started = Instant::now();
        let result = engine.recall(schema, request).await?;
        latencies.push(started.elapsed());
        for (slot, name) in ["semantic", "keyword", "recency"].iter().enumerate() {
            let ms = result
                .trace
                .strategy_timings_ms
                .get(*name)
                .copied()
                .unwrap_or(0.0);
            per_strategy[slot].push(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    summary(label, latencies);
    if let Some(cpu) = cpu {
        println!(
            "  on-CPU {:.2} ms per recall (load average {})",
            cpu * 1000.0 / queries.len() as f64,
            load_average()
        );
    }
    for (slot, name) in ["  semantic", "  keyword", "  recency"].iter().enumerate() {
        summary(name, std::mem::take(&mut per_strategy[slot]));
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let schema = Schema::new("bench")?;
    let vocabulary = Vocabulary::new(20_000);
    let mut rng = Rng(args.seed);
    println!(
        "sqlite_bench: n={} batch={} queries={} dir={}",
        args.n,
        args.batch,
        args.queries,
        dir.display()
    );

    let store = Arc::new(SqliteStore::open(&dir, SqliteOptions::default())?);
    let engine = Engine::new(
        store.clone(),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    );

    let started = Instant::now();
    let cpu_before = process_cpu_seconds();
    let mut stored = 0usize;
    let mut deduplicated = 0usize;
    let mut batch_rates: Vec<(usize, f64)> = Vec::new();
    let mut produced = 0usize;
    let embedder = HashingEmbedder::default();
    let mut corpus: Vec<(String, Vec<f32>)> = Vec::with_capacity(args.n);
    let mut corpus_texts: Vec<String> = Vec::new();
    while produced < args.n {
        let size = args.batch.min(args.n - produced);
        let requests: Vec<RetainRequest> = (0..size)
            .map(|i| RetainRequest {
                bank_id: "main".into(),
                content: format!("{}.", vocabulary.sentence(&mut rng, 8, 20)),
                tags: vec![format!("tag{}", (produced + i) % 20)],
                ..Default::default()
            })
            .collect();
        if args.reuse {
            produced += size;
            continue;
        }
        let batch_started = Instant::now();
        let texts: Vec<String> = requests.iter().map(|r| r.content.clone()).collect();
        let outcomes = engine.retain_many(&schema, requests).await?;
        batch_rates.push((size, batch_started.elapsed().as_secs_f64()));
        for (outcome, text) in outcomes.iter().zip(&texts) {
            if let (true, Some(id)) = (outcome.stored, &outcome.memory_id) {
                corpus.push((id.clone(), embedder.embed_one(text)));
                if corpus_texts.len() < 50_000 {
                    corpus_texts.push(text.clone());
                }
            }
        }
        stored += outcomes.iter().filter(|o| o.stored).count();
        deduplicated += outcomes.iter().filter(|o| o.deduplicated).count();
        produced += size;
    }
    let retain_seconds = started.elapsed().as_secs_f64();
    let retain_cpu = cpu_before.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    if !batch_rates.is_empty() {
        let tenth = (batch_rates.len() / 10).max(1);
        // Memories over seconds across the batches, not a mean of per-batch rates.
        let rate = |batches: &[(usize, f64)]| {
            batches.iter().map(|b| b.0 as f64).sum::<f64>()
                / batches.iter().map(|b| b.1).sum::<f64>()
        };
        println!(
            "retain: {} memories in {:.2} s = {:.0} memories/s (stored {}, deduplicated {}); first 10% of batches {:.0}/s, last 10% {:.0}/s",
            args.n,
            retain_seconds,
            args.n as f64 / retain_seconds,
            stored,
            deduplicated,
            rate(&batch_rates[..tenth]),
            rate(&batch_rates[batch_rates.len() - tenth..]),
        );
        if let Some(cpu) = retain_cpu {
            println!(
                "  on-CPU {cpu:.2} s = {:.0} memories per CPU-second (load average {})",
                args.n as f64 / cpu,
                load_average()
            );
        }
    }

    if !corpus_texts.is_empty() {
        // Near-duplicate detection at scale: retaining stored texts again must store nothing.
        let again: Vec<RetainRequest> = (0..500.min(corpus_texts.len()))
            .map(|i| RetainRequest {
                bank_id: "main".into(),
                content: corpus_texts[(i * 7919) % corpus_texts.len()].clone(),
                ..Default::default()
            })
            .collect();
        let count = again.len();
        let outcomes = engine.retain_many(&schema, again).await?;
        let caught = outcomes
            .iter()
            .filter(|o| o.deduplicated && !o.stored)
            .count();
        println!("near-duplicates: {caught} of {count} re-retained texts detected");
    }

    let queries: Vec<String> = (0..args.queries)
        .map(|_| vocabulary.sentence(&mut rng, 3, 6))
        .collect();
    let recall = |query: &str, filter: RecallFilter| RecallRequest {
        query: query.into(),
        banks: vec!["main".into()],
        max_results: Some(10),
        max_tokens: None,
        filter,
    };
    // Warm-up: loads the index if it is not loaded and fills caches.
    for query in queries.iter().take(20) {
        engine
            .recall(&schema, recall(query, RecallFilter::default()))
            .await?;
    }
    measure(&engine, &schema, &queries, "recall (10 hits)", |_| {
        RecallFilter::default()
    })
    .await?;

    // Semantic quality: the index's top 10 against an exact scan of every stored vector.
    let tenant = store.tenant(&schema).await?;
    let mut overlap = 0usize;
    let sample = if corpus.is_empty() {
        0
    } else {
        queries.len().min(200)
    };
    for query in queries.iter().take(sample) {
        let vector = embedder.embed_one(query);
        let response = tenant
            .search(&SearchRequest {
                banks: vec![BankId::new("main")?],
                vector: Some(vector.clone()),
                text: None,
                recency: false,
                limit: 10,
                filter: RecallFilter::default(),
            })
            .await?;
        let found: Vec<String> = response
            .semantic
            .map(|s| s.hits.into_iter().map(|h| h.memory.id).collect())
            .unwrap_or_default();
        let mut exact: Vec<(f32, &str)> = corpus
            .iter()
            .map(|(id, v)| (astrocyte_core::embed::dot(&vector, v), id.as_str()))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let threshold = exact.get(9).map(|e| e.0).unwrap_or(f32::MIN);
        // Ties at the 10th score make several answers exact: count a hit as correct when its
        // exact score reaches the 10th best.
        let scores: std::collections::HashMap<&str, f32> =
            exact.iter().map(|(score, id)| (*id, *score)).collect();
        overlap += found
            .iter()
            .filter(|id| {
                scores
                    .get(id.as_str())
                    .is_some_and(|s| *s >= threshold - 1e-6)
            })
            .count();
    }
    if sample > 0 {
        println!(
            "semantic recall@10 vs exact scan: {:.3} over {sample} queries",
            overlap as f64 / (sample * 10) as f64
        );
    }

    measure(
        &engine,
        &schema,
        &queries,
        "recall, tag filter (1/20)",
        |i| RecallFilter {
            tags: Some(vec![format!("tag{}", i % 20)]),
            ..Default::default()
        },
    )
    .await?;

    let concurrency = 8;
    let engine = Arc::new(engine);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let engine = Arc::clone(&engine);
            let schema = schema.clone();
            let mine: Vec<String> = queries
                .iter()
                .skip(worker)
                .step_by(concurrency)
                .cloned()
                .collect();
            tokio::spawn(async move {
                for query in mine {
                    let request = RecallRequest {
                        query,
                        banks: vec!["main".into()],
                        max_results: Some(10),
                        ..Default::default()
                    };
                    engine.recall(&schema, request).await?;
                }
                Ok::<_, astrocyte_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!(
        "recall with {concurrency} concurrent callers: {:.0} recalls/s",
        queries.len() as f64 / started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    store.flush().await?;
    println!("snapshot flush: {:.2} s", started.elapsed().as_secs_f64());
    drop(engine);
    drop(store);
    let store = Arc::new(SqliteStore::open(&dir, SqliteOptions::default())?);
    let engine = Engine::new(
        store.clone(),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    );
    let started = Instant::now();
    engine
        .recall(&schema, recall(&queries[0], RecallFilter::default()))
        .await?;
    println!(
        "first recall after reopen (loads the snapshot): {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let size = std::fs::metadata(dir.join("bench.db"))?.len();
    println!("database file: {:.1} MB", size as f64 / 1e6);
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sqlite_bench: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(run(args)) {
        eprintln!("sqlite_bench failed: {error}");
        std::process::exit(1);
    }
}
