//! Benchmark of the PostgreSQL store on a local server: retain throughput (batched, hashing
//! embedder), recall latency percentiles at N memories in one tenant (through `Engine::recall`),
//! and the time to create and migrate many tenants, then to re-run the fan-out when all are
//! current. It creates its own database and drops it (and its roles) at the end.
//!
//! `cargo run --release -p astrocyte-store-postgres --example pg_bench -- --memories 100000 --tenants 500`
//!
//! Options: `--url` (default `ASTROCYTE_TEST_DATABASE_URL` or the local server), `--batch`
//! (memories per retain call, 500), `--queries` (recalls timed, 300), `--keep` (leave the
//! database for inspection), `--reuse <database>` (time recalls again on a kept database:
//! no retains, no tenants, nothing dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::{Engine, EngineConfig, RecallRequest, RetainRequest, Schema, Store};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use futures::StreamExt;
use tokio_postgres::NoTls;

#[path = "common/mod.rs"]
mod common;

use common::Rng;

struct Args {
    url: String,
    memories: usize,
    tenants: usize,
    batch: usize,
    queries: usize,
    keep: bool,
    reuse: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: std::env::var("ASTROCYTE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        memories: 100_000,
        tenants: 500,
        batch: 500,
        queries: 300,
        keep: false,
        reuse: None,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = |name: &str| raw.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{text}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value("--url")?,
            "--memories" => args.memories = number(value("--memories")?)?,
            "--tenants" => args.tenants = number(value("--tenants")?)?,
            "--batch" => args.batch = number(value("--batch")?)?.max(1),
            "--queries" => args.queries = number(value("--queries")?)?.max(1),
            "--keep" => args.keep = true,
            "--reuse" => args.reuse = Some(value("--reuse")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// English function words: the most frequent ranks of the vocabulary, as in real text, where
/// they are about half of all tokens. PostgreSQL's `english` configuration drops them from the
/// keyword index, as it would for real text.
const STOPWORDS: [&str; 127] = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "that",
    "was",
    "he",
    "for",
    "on",
    "are",
    "with",
    "as",
    "i",
    "his",
    "they",
    "be",
    "at",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "but",
    "what",
    "some",
    "we",
    "can",
    "were",
    "all",
    "there",
    "when",
    "your",
    "which",
    "their",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "so",
    "these",
    "her",
    "him",
    "has",
    "more",
    "no",
    "way",
    "could",
    "my",
    "than",
    "been",
    "who",
    "its",
    "now",
    "did",
    "down",
    "only",
    "very",
    "through",
    "just",
    "where",
    "most",
    "before",
    "after",
    "our",
    "me",
    "should",
    "because",
    "does",
    "here",
    "both",
    "few",
    "those",
    "while",
    "same",
    "other",
    "any",
    "into",
    "over",
    "again",
    "further",
    "once",
    "why",
    "own",
    "such",
    "nor",
    "not",
    "too",
    "off",
    "under",
    "until",
    "above",
    "below",
    "between",
    "against",
    "during",
    "am",
    "an",
    "being",
    "having",
    "doing",
    "you",
    "yours",
    "ours",
    "hers",
    "theirs",
    "itself",
    "himself",
    "herself",
    "myself",
    "themselves",
    "ourselves",
    "whom",
    "don",
    "s",
    "t",
];

/// A Zipf-distributed vocabulary: the stop words above, then pronounceable pseudo-words, so
/// term frequencies are skewed like natural text's.
struct Corpus {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Corpus {
    fn new(size: usize) -> Self {
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "za", "be", "do", "fi", "go",
            "ha", "ji", "ke", "lu", "ma", "ne", "po", "ri", "su", "te",
        ];
        let content = (0..size.saturating_sub(STOPWORDS.len())).map(|i| {
            let mut word = String::new();
            let mut n = i + 1;
            while n > 0 {
                word.push_str(SYLLABLES[n % SYLLABLES.len()]);
                n /= SYLLABLES.len();
            }
            word.push('x');
            word
        });
        let words: Vec<String> = STOPWORDS
            .iter()
            .map(|w| w.to_string())
            .chain(content)
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.iter().map(|c| c / total).collect();
        Corpus { words, cumulative }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let target = rng.unit();
        let index = self.cumulative.partition_point(|c| *c < target);
        &self.words[index.min(self.words.len() - 1)]
    }

    fn sentence(&self, rng: &mut Rng, min: usize, max: usize) -> String {
        let count = min + (rng.next() as usize) % (max - min + 1);
        (0..count)
            .map(|_| self.word(rng))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn admin(url: &str) -> Result<tokio_postgres::Client, Box<dyn std::error::Error>> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn with_database(url: &str, database: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => {
            let (base, query) = url.find('?').map_or((url, ""), |q| (&url[..q], &url[q..]));
            let after = scheme_end + 3;
            let base = base[after..]
                .find('/')
                .map_or(base, |slash| &base[..after + slash]);
            format!("{base}/{database}{query}")
        }
        None => format!("{url} dbname={database}"),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let role_prefix = format!("ab{}_", std::process::id());
    if let Some(database) = &args.reuse {
        return run(&args, &with_database(&args.url, database), &role_prefix).await;
    }
    let database = format!("astro_bench_{}", std::process::id());
    let server = admin(&args.url).await?;
    server
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await?;
    let outcome = run(&args, &with_database(&args.url, &database), &role_prefix).await;
    if args.keep {
        println!("kept database {database} (roles prefixed {role_prefix})");
    } else {
        server
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
            ))
            .await?;
        for row in server
            .query(
                "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
                &[&role_prefix],
            )
            .await?
        {
            let role: String = row.get(0);
            server
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                .await?;
        }
    }
    outcome
}

async fn run(args: &Args, url: &str, role_prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(
        url,
        PostgresOptions {
            pool_size: 8,
            role_prefix: role_prefix.into(),
            statement_timeout: Some(Duration::from_secs(600)),
            migration_concurrency: 8,
            ..PostgresOptions::default()
        },
    )
    .await?;
    let engine = Arc::new(Engine::new(
        Arc::new(store.clone()),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ));
    let corpus = Corpus::new(20_000);
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    println!(
        "pg_bench: {} memories in one tenant, batches of {}, {} recalls, {} tenants",
        args.memories, args.batch, args.queries, args.tenants
    );

    // Retain throughput: batched retain_many calls (dedup probe + one insert transaction each).
    let schema = Schema::new("bench_main")?;
    if args.reuse.is_none() {
        store.create_tenant(&schema).await?;
    }
    let started = Instant::now();
    let mut stored = if args.reuse.is_some() {
        args.memories
    } else {
        0
    };
    let mut last_report = Instant::now();
    while stored < args.memories {
        let size = args.batch.min(args.memories - stored);
        let requests: Vec<RetainRequest> = (0..size)
            .map(|_| RetainRequest {
                bank_id: "main".into(),
                content: corpus.sentence(&mut rng, 8, 20),
                ..Default::default()
            })
            .collect();
        let outcomes = engine.retain_many(&schema, requests).await?;
        stored += size;
        let kept = outcomes.iter().filter(|o| o.stored).count();
        if kept < size {
            eprintln!("  {} of {size} were near-duplicates", size - kept);
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  {stored} retained, {:.0}/s",
                stored as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let retain_elapsed = started.elapsed();
    let count = store
        .tenant(&schema)
        .await?
        .count(&astrocyte_core::BankId::new("main")?)
        .await?;
    if args.reuse.is_none() {
        println!(
            "retain: {count} memories stored in {:.1}s = {:.0} memories/s (batches of {})",
            retain_elapsed.as_secs_f64(),
            count as f64 / retain_elapsed.as_secs_f64(),
            args.batch
        );
    }

    // Recall latency at that size.
    let queries: Vec<String> = (0..args.queries + 20)
        .map(|_| corpus.sentence(&mut rng, 4, 10))
        .collect();
    let mut latencies = Vec::with_capacity(args.queries);
    let mut statement = Vec::with_capacity(args.queries);
    for (index, query) in queries.iter().enumerate() {
        let started = Instant::now();
        let result = engine
            .recall(
                &schema,
                RecallRequest {
                    query: query.clone(),
                    banks: vec!["main".into()],
                    max_results: Some(10),
                    ..Default::default()
                },
            )
            .await?;
        let elapsed = started.elapsed();
        // The first 20 warm the caches and are not counted.
        if index >= 20 {
            latencies.push(elapsed);
            statement.push(Duration::from_secs_f64(
                result
                    .trace
                    .strategy_timings_ms
                    .get("semantic")
                    .copied()
                    .unwrap_or(0.0)
                    / 1000.0,
            ));
        }
    }
    latencies.sort();
    statement.sort();
    println!(
        "recall @ {count} memories, max_results 10 ({} queries): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (search statement alone: p50 {:.1} ms, p95 {:.1} ms)",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&statement, 0.50)),
        ms(percentile(&statement, 0.95)),
    );

    // Tenants: create (role, schema, all migrations) a few at a time, then re-run the fan-out.
    if args.tenants > 0 && args.reuse.is_none() {
        let names: Vec<Schema> = (0..args.tenants)
            .map(|i| Schema::new(format!("bench_t{i:04}")))
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        let created: Vec<astrocyte_core::Result<()>> = futures::stream::iter(names.iter())
            .map(|schema| store.create_tenant(schema))
            .buffer_unordered(8)
            .collect()
            .await;
        let create_elapsed = started.elapsed();
        let failures = created.iter().filter(|r| r.is_err()).count();
        println!(
            "tenants: created and migrated {} tenants in {:.2}s ({:.1} ms each, 8 at a time){}",
            args.tenants,
            create_elapsed.as_secs_f64(),
            ms(create_elapsed) / args.tenants as f64,
            if failures > 0 {
                format!(", {failures} FAILED")
            } else {
                String::new()
            }
        );
        let started = Instant::now();
        let report = store.migrate_all_tenants().await?;
        let rerun = started.elapsed();
        println!(
            "migrate fan-out, all current: {} tenants in {:.2}s ({} ok, {} failed)",
            report.tenants.len(),
            rerun.as_secs_f64(),
            report.tenants.iter().filter(|t| t.status.is_ok()).count(),
            report.failed().count()
        );
    }
    Ok(())
}
