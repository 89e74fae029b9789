//! Measures the local embedder: single short-query latency (p50/p99) and batched throughput
//! for ~30-token memories. Figures only; it asserts nothing.
//!
//! `cargo run --release -p astrocyte-embed-local --example embed_bench -- [MODEL_DIR]
//! [--backend onnx|candle] [--threads N] [--query-threads N] [--queries N] [--memories N]
//! [--batches 32,64]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use astrocyte_core::{EmbedPurpose, Embedder};
use astrocyte_embed_local::{LocalBackend, LocalEmbedder, LocalEmbedderOptions};

const SUBJECTS: [&str; 8] = [
    "Alice",
    "The finance team",
    "Our Berlin office",
    "Dr. Okafor",
    "The support rota",
    "Marco",
    "The quarterly review",
    "Priya's onboarding plan",
];
const MIDDLES: [&str; 8] = [
    "moved the budget meeting to Thursday afternoon because",
    "asked whether the deployment checklist should include database backups since",
    "prefers short written summaries over long calls, especially when",
    "reported that the invoice reconciliation is two weeks behind schedule and",
    "mentioned that the new coffee machine on the third floor broke after",
    "decided to postpone the migration of the customer records until",
    "wants every incident report to name an owner and a deadline whenever",
    "noted that travel expenses above five hundred euros need approval before",
];
const ENDINGS: [&str; 8] = [
    "the auditors arrive next month.",
    "nobody had tested the rollback procedure yet.",
    "the team is spread across three time zones.",
    "the vendor changed its pricing without notice.",
    "several people complained during the last retrospective.",
    "the holiday season makes staffing unpredictable.",
    "the new hire starts on Monday morning.",
    "the contract renewal is still under legal review.",
];
const FOLLOW_UPS: [&str; 4] = [
    "Follow up on Friday.",
    "Check again next week.",
    "Raise it at standup.",
    "Ask Sam for details.",
];
const QUERIES: [&str; 8] = [
    "when is the budget meeting?",
    "who owns incident reports",
    "coffee machine broken",
    "travel expense approval limit",
    "what does Alice prefer?",
    "migration of customer records",
    "auditors next month",
    "onboarding plan for Priya",
];

fn memory(index: usize) -> String {
    // Stride through the three lists differently so neighbouring memories differ.
    format!(
        "{} {} {} {}",
        SUBJECTS[index % 8],
        MIDDLES[(index / 8 + index) % 8],
        ENDINGS[(index / 64 + index * 3) % 8],
        FOLLOW_UPS[(index / 3) % 4]
    )
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// CPU time this process has used (user + system), from /proc; zero where /proc is absent.
/// Reported beside wall time because the machine may be shared while we measure.
fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&index| {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
        })
        .sum();
    // Linux reports in USER_HZ, which is 100 on every mainstream configuration.
    Duration::from_millis(ticks * 10)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut model_dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/all-MiniLM-L6-v2"
    ));
    let mut query_count = 300usize;
    let mut memory_count = 640usize;
    let mut base_options = LocalEmbedderOptions::default();
    let mut batch_sizes = vec![32usize, 64];
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--queries" => query_count = arguments.next().ok_or("--queries needs N")?.parse()?,
            "--memories" => memory_count = arguments.next().ok_or("--memories needs N")?.parse()?,
            "--batches" => {
                batch_sizes = arguments
                    .next()
                    .ok_or("--batches needs a list")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--threads" => {
                base_options.threads = arguments.next().ok_or("--threads needs N")?.parse()?
            }
            "--query-threads" => {
                base_options.query_threads =
                    arguments.next().ok_or("--query-threads needs N")?.parse()?
            }
            "--backend" => {
                base_options.backend = match arguments.next().as_deref() {
                    Some("onnx") => LocalBackend::Onnx,
                    Some("candle") => LocalBackend::Candle,
                    _ => return Err("--backend takes onnx or candle".into()),
                }
            }
            other => model_dir = PathBuf::from(other),
        }
    }

    let tokenizer = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json"))?;
    let token_count = |text: &str| -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        Ok(tokenizer
            .encode(text, true)?
            .get_ids()
            .iter()
            .filter(|&&id| id != 0)
            .count())
    };
    let memories: Vec<String> = (0..memory_count).map(memory).collect();
    let mut memory_tokens = 0;
    for text in &memories {
        memory_tokens += token_count(text)?;
    }
    let mut query_tokens = 0;
    for text in QUERIES {
        query_tokens += token_count(text)?;
    }
    println!(
        "inputs: memories average {:.1} tokens, queries average {:.1} tokens (with [CLS]/[SEP])",
        memory_tokens as f64 / memories.len() as f64,
        query_tokens as f64 / QUERIES.len() as f64
    );

    let started = Instant::now();
    println!("options: {base_options:?}");
    let embedder = std::sync::Arc::new(LocalEmbedder::load(&model_dir, base_options.clone())?);
    println!("load: {:.0} ms", millis(started.elapsed()));

    // Warm-up: first passes allocate and fault in the weights.
    for query in QUERIES {
        embedder
            .embed(&[query.to_owned()], EmbedPurpose::Query)
            .await?;
    }
    println!("load average before: {}", load_average());
    let cpu_before = process_cpu_time();
    let mut latencies = Vec::with_capacity(query_count);
    for index in 0..query_count {
        let query = vec![QUERIES[index % QUERIES.len()].to_owned()];
        let started = Instant::now();
        embedder.embed(&query, EmbedPurpose::Query).await?;
        latencies.push(started.elapsed());
    }
    let cpu_used = process_cpu_time() - cpu_before;
    latencies.sort();
    println!(
        "single query ({query_count} runs): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, cpu {:.2} ms per query",
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
        millis(percentile(&latencies, 1.0)),
        millis(cpu_used) / query_count as f64,
    );

    // Queries while a bulk retain embeds: what a recall waits when ingest is running.
    let bulk = {
        let embedder = embedder.clone();
        let memories = memories.clone();
        tokio::spawn(async move { embedder.embed(&memories, EmbedPurpose::Document).await })
    };
    let mut during_bulk = Vec::with_capacity(query_count);
    for index in 0..query_count {
        if bulk.is_finished() {
            break;
        }
        let query = vec![QUERIES[index % QUERIES.len()].to_owned()];
        let started = Instant::now();
        embedder.embed(&query, EmbedPurpose::Query).await?;
        during_bulk.push(started.elapsed());
    }
    bulk.await??;
    during_bulk.sort();
    if !during_bulk.is_empty() {
        println!(
            "single query during a bulk embed ({} runs): p50 {:.2} ms, p99 {:.2} ms",
            during_bulk.len(),
            millis(percentile(&during_bulk, 0.50)),
            millis(percentile(&during_bulk, 0.99)),
        );
    }

    for batch_size in batch_sizes {
        let embedder = LocalEmbedder::load(
            &model_dir,
            LocalEmbedderOptions {
                max_batch: batch_size,
                ..base_options.clone()
            },
        )?;
        embedder
            .embed(
                &memories[..batch_size.min(memories.len())],
                EmbedPurpose::Document,
            )
            .await?;
        let cpu_before = process_cpu_time();
        let started = Instant::now();
        for chunk in memories.chunks(batch_size) {
            embedder.embed(chunk, EmbedPurpose::Document).await?;
        }
        let elapsed = started.elapsed();
        let cpu_used = process_cpu_time() - cpu_before;
        println!(
            "batch {batch_size}: {} memories in {:.0} ms = {:.0} memories/s ({:.2} ms per memory, cpu {:.2} ms per memory)",
            memories.len(),
            millis(elapsed),
            memories.len() as f64 / elapsed.as_secs_f64(),
            millis(elapsed) / memories.len() as f64,
            millis(cpu_used) / memories.len() as f64,
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}
