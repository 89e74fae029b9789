//! Gateway overhead: recall latency in process (`Engine::recall`) against the same recall over
//! HTTP and over gRPC on loopback, on the same data, plus sustained HTTP recall throughput.
//!
//! `cargo run --release -p astrocyte-server --example gateway_bench -- [memories] [seconds]`
//! (defaults 10000 memories, 10 s). SQLite in a temp directory, hashing embedder.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The gateway turns strict tenancy on: in-process calls bind their tenant, as requests do.
use astrocyte_core::tenancy::{use_schema, Schema};
use astrocyte_core::{Engine, EngineConfig, RecallRequest, RetainRequest};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::grpc::proto::{self, memory_client::MemoryClient};
use astrocyte_server::{Gateway, ServerConfig};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LATENCY_SAMPLES: usize = 2000;
const WARMUP: usize = 200;
const CONCURRENCY: usize = 8;
const BANK: &str = "bench";

fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ra", "ten", "vo", "su", "zel", "dar", "po", "qui", "ne", "fa", "gor",
        "hu", "is",
    ];
    (0..3000)
        .map(|_| {
            let n = rng.gen_range(2..4);
            (0..n)
                .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
                .collect::<String>()
        })
        .collect()
}

fn sentence(rng: &mut StdRng, words: &[String], len: usize) -> String {
    let mut s: Vec<&str> = (0..len)
        .map(|_| words[rng.gen_range(0..words.len())].as_str())
        .collect();
    s.dedup();
    let mut text = s.join(" ");
    text.push('.');
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let memories: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);

    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path(), SqliteOptions::default())?;
    let engine = Arc::new(Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ));
    let schema = Schema::public();
    let mut rng = StdRng::seed_from_u64(7);
    let words = vocabulary(&mut rng);

    let load_started = Instant::now();
    let mut loaded = 0usize;
    while loaded < memories {
        let batch: Vec<RetainRequest> = (0..500.min(memories - loaded))
            .map(|_| {
                let len = rng.gen_range(8..16);
                RetainRequest {
                    bank_id: BANK.into(),
                    content: sentence(&mut rng, &words, len),
                    ..Default::default()
                }
            })
            .collect();
        loaded += batch.len();
        engine.retain_many(&schema, batch).await?;
    }
    println!(
        "loaded {memories} memories in {:.1} s",
        load_started.elapsed().as_secs_f64()
    );
    let queries: Vec<String> = (0..256).map(|_| sentence(&mut rng, &words, 4)).collect();

    // In process, concurrency 1.
    let recall = |q: &str| RecallRequest {
        query: q.to_string(),
        banks: vec![BANK.into()],
        max_results: Some(10),
        ..Default::default()
    };
    for q in queries.iter().cycle().take(WARMUP) {
        use_schema(schema.clone(), engine.recall(&schema, recall(q))).await?;
    }
    // The gateway on loopback, default (dev) configuration.
    let config = ServerConfig {
        port: 0,
        grpc_port: Some(0),
        ..ServerConfig::default()
    };
    let gateway = Gateway::new(config, engine.clone()).await?;
    let bound = gateway.bind().await?;
    let base = format!("http://{}/v1/recall", bound.local_addr());
    let grpc_addr = bound
        .grpc_addr()
        .ok_or("the gateway serves gRPC when grpc_port is set")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(async move {
        let _ = stop_rx.await;
    }));
    let bodies: Vec<axum::body::Bytes> = queries
        .iter()
        .map(|q| {
            serde_json::to_vec(&serde_json::json!({"query": q, "bank_id": BANK, "max_results": 10}))
                .map(axum::body::Bytes::from)
        })
        .collect::<Result<_, _>>()?;
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let post = |client: &reqwest::Client, body: axum::body::Bytes| {
        client
            .post(&base)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in bodies.iter().cycle().take(WARMUP) {
        let response = post(&client, body.clone()).await?;
        assert_eq!(response.status(), 200);
        response.bytes().await?;
    }
    let mut grpc_client = MemoryClient::connect(format!("http://{grpc_addr}")).await?;
    let grpc_recall = |q: &str| proto::RecallRequest {
        query: q.to_string(),
        bank_id: BANK.into(),
        max_results: Some(10),
        ..Default::default()
    };
    for q in queries.iter().cycle().take(WARMUP) {
        grpc_client.recall(grpc_recall(q)).await?;
    }
    // Interleaved, so both sides see the same machine load: in process, then over HTTP.
    let mut inproc = Vec::with_capacity(LATENCY_SAMPLES);
    let mut http = Vec::with_capacity(LATENCY_SAMPLES);
    let mut live = Vec::with_capacity(LATENCY_SAMPLES);
    let mut grpc = Vec::with_capacity(LATENCY_SAMPLES);
    let live_url = base.replace("/v1/recall", "/live");
    for (q, body) in queries
        .iter()
        .zip(bodies.iter())
        .cycle()
        .take(LATENCY_SAMPLES)
    {
        let t = Instant::now();
        let result = use_schema(schema.clone(), engine.recall(&schema, recall(q))).await?;
        inproc.push(t.elapsed());
        assert!(!result.hits.is_empty());

        let t = Instant::now();
        let response = post(&client, body.clone()).await?;
        let status = response.status();
        response.bytes().await?;
        http.push(t.elapsed());
        assert_eq!(status, 200);

        let t = Instant::now();
        let response = client.get(&live_url).send().await?;
        response.bytes().await?;
        live.push(t.elapsed());

        let t = Instant::now();
        let reply = grpc_client.recall(grpc_recall(q)).await?;
        grpc.push(t.elapsed());
        assert!(!reply.into_inner().hits.is_empty());
    }
    inproc.sort();
    grpc.sort();
    http.sort();
    live.sort();

    // Sustained throughput over HTTP, CONCURRENCY clients for a bounded duration.
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (done, completed, failed, bodies, client, base) = (
            done.clone(),
            completed.clone(),
            failed.clone(),
            bodies.clone(),
            client.clone(),
            base.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !done.load(Ordering::Relaxed) {
                let body = bodies[i % bodies.len()].clone();
                i += CONCURRENCY;
                let ok = match client
                    .post(&base)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    completed.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    // The same load in process, for comparison.
    done.store(false, Ordering::Relaxed);
    let inproc_done = Arc::new(AtomicU64::new(0));
    let queries = Arc::new(queries);
    let inproc_started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (done, counter, queries, engine, schema) = (
            done.clone(),
            inproc_done.clone(),
            queries.clone(),
            engine.clone(),
            schema.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !done.load(Ordering::Relaxed) {
                let request = RecallRequest {
                    query: queries[i % queries.len()].clone(),
                    banks: vec![BANK.into()],
                    max_results: Some(10),
                    ..Default::default()
                };
                i += CONCURRENCY;
                if use_schema(schema.clone(), engine.recall(&schema, request))
                    .await
                    .is_ok()
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let inproc_elapsed = inproc_started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await??;

    let (p50_in, p99_in) = (percentile(&inproc, 50.0), percentile(&inproc, 99.0));
    let (p50_http, p99_http) = (percentile(&http, 50.0), percentile(&http, 99.0));
    println!("recall over {memories} memories, {LATENCY_SAMPLES} samples each, concurrency 1:");
    println!(
        "  in-process  p50 {:.3} ms  p99 {:.3} ms",
        ms(p50_in),
        ms(p99_in)
    );
    println!(
        "  HTTP        p50 {:.3} ms  p99 {:.3} ms",
        ms(p50_http),
        ms(p99_http)
    );
    let (p50_grpc, p99_grpc) = (percentile(&grpc, 50.0), percentile(&grpc, 99.0));
    println!(
        "  gRPC        p50 {:.3} ms  p99 {:.3} ms  (overhead p50 {:.3} ms  p99 {:.3} ms)",
        ms(p50_grpc),
        ms(p99_grpc),
        ms(p50_grpc) - ms(p50_in),
        ms(p99_grpc) - ms(p99_in)
    );
    println!(
        "  GET /live   p50 {:.3} ms  p99 {:.3} ms  (transport floor)",
        ms(percentile(&live, 50.0)),
        ms(percentile(&live, 99.0))
    );
    println!(
        "  overhead    p50 {:.3} ms  p99 {:.3} ms",
        ms(p50_http) - ms(p50_in),
        ms(p99_http) - ms(p99_in)
    );
    println!(
        "HTTP recall throughput, concurrency {CONCURRENCY}, {elapsed:.1} s: {:.0} requests/s ({} ok, {} failed)",
        completed.load(Ordering::Relaxed) as f64 / elapsed,
        completed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "in-process recall throughput, concurrency {CONCURRENCY}, {inproc_elapsed:.1} s: {:.0} recalls/s",
        inproc_done.load(Ordering::Relaxed) as f64 / inproc_elapsed
    );
    Ok(())
}
