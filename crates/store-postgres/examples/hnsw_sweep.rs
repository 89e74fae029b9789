//! pgvector HNSW parameter sweep, to choose `postgres.hnsw_*` by measurement. For each
//! `m:ef_construction` it bulk-builds the index over all rows but a tail, then inserts the tail
//! in batches (the rate a retain pays at that bank size: pgvector maintains the graph inside
//! the inserting transaction), then times index scans at each `ef_search` and reports their
//! recall@k against exact search.
//!
//! `cargo run --release -p astrocyte-store-postgres --example hnsw_sweep -- --n 100000`
//!
//! Options: `--url` (default `ASTROCYTE_TEST_DATABASE_URL` or the local server), `--n` (rows,
//! 100000), `--dim` (384), `--queries` (held-out query vectors, 200), `--tail` (rows inserted
//! after the build, 5000), `--batch` (rows per insert statement, 500), `--k` (10),
//! `--configs` (`m:ef_construction` list, default `16:64`), `--ef-search` (list, default
//! `40,64,116`), `--seed`, `--source <schema.table>` (read the `embedding` column of that
//! table in `--url`'s database instead of generating vectors), `--halfvec 0` (index the
//! column as stored rather than its `halfvec` cast, which the store builds since migration 8;
//! recall is against exact search on the stored vectors either way). Generated vectors are the
//! hashing embedder's, of made-up text with Zipf-distributed words: nearly orthogonal, the
//! hardest case for a graph index. It works in a database of its own and drops it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use astrocyte_providers::HashingEmbedder;
use futures::SinkExt;
use tokio_postgres::{Client, NoTls};

#[path = "common/mod.rs"]
mod common;

use common::Rng;

struct Args {
    url: String,
    n: usize,
    dim: usize,
    queries: usize,
    tail: usize,
    batch: usize,
    k: usize,
    configs: Vec<(usize, usize)>,
    ef_search: Vec<usize>,
    seed: u64,
    source: Option<String>,
    /// Index the vectors' `halfvec` cast, as the store does (false: the column as stored).
    halfvec: bool,
}

fn list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|v| v.trim().parse::<usize>().map_err(|e| format!("{v}: {e}")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: std::env::var("ASTROCYTE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        n: 100_000,
        dim: 384,
        queries: 200,
        tail: 5_000,
        batch: 500,
        k: 10,
        configs: vec![(16, 64)],
        ef_search: vec![40, 64, 116],
        seed: 42,
        source: None,
        halfvec: true,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{value}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--n" => args.n = number()?,
            "--dim" => args.dim = number()?,
            "--queries" => args.queries = number()?.max(1),
            "--tail" => args.tail = number()?,
            "--batch" => args.batch = number()?.max(1),
            "--k" => args.k = number()?.max(1),
            "--seed" => args.seed = number()? as u64,
            "--ef-search" => args.ef_search = list(&value)?,
            "--source" => args.source = Some(value),
            "--halfvec" => args.halfvec = number()? != 0,
            "--configs" => {
                args.configs = value
                    .split(',')
                    .map(|pair| {
                        let (m, ef) = pair
                            .split_once(':')
                            .ok_or_else(|| format!("{pair}: expected m:ef_construction"))?;
                        let m = m.trim().parse().map_err(|e| format!("{m}: {e}"))?;
                        let ef = ef.trim().parse().map_err(|e| format!("{ef}: {e}"))?;
                        Ok((m, ef))
                    })
                    .collect::<Result<_, String>>()?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.tail >= args.n {
        return Err("--tail must be smaller than --n".into());
    }
    Ok(args)
}

/// Hashing-embedder vectors of made-up sentences: 14 words each from a 30,000-word vocabulary
/// drawn with Zipf (s = 1) weights, so a few words are in most texts and most words are rare.
fn generated(count: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    const VOCABULARY: usize = 30_000;
    let cumulative: Vec<f64> = (1..=VOCABULARY)
        .scan(0.0, |sum, rank| {
            *sum += 1.0 / rank as f64;
            Some(*sum)
        })
        .collect();
    let total = cumulative[VOCABULARY - 1];
    let embedder = HashingEmbedder::new(dim);
    let mut rng = Rng(seed.max(1));
    (0..count)
        .map(|_| {
            let words: Vec<String> = (0..14)
                .map(|_| {
                    let u = rng.unit() * total;
                    format!("w{}", cumulative.partition_point(|&c| c < u))
                })
                .collect();
            embedder.embed_one(&words.join(" "))
        })
        .collect()
}

fn literal(vector: &[f32]) -> String {
    let parts: Vec<String> = vector.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn parse_literal(text: &str) -> Result<Vec<f32>, String> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|x| x.parse::<f32>().map_err(|e| format!("{x}: {e}")))
        .collect()
}

async fn read_source(client: &Client, table: &str, limit: usize) -> Result<Vec<Vec<f32>>, String> {
    let sql = format!(
        "SELECT embedding::text FROM {table} WHERE embedding IS NOT NULL ORDER BY id LIMIT {limit}"
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| e.to_string())?;
    rows.iter()
        .map(|row| parse_literal(&row.get::<_, String>(0)))
        .collect()
}

fn with_database(url: &str, database: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, tail)) if url.contains("://") => {
            let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
            format!("{base}/{database}{query}")
        }
        _ => format!("{url} dbname={database}"),
    }
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn copy_rows(client: &Client, rows: &[(i32, &Vec<f32>)]) -> Result<(), String> {
    let sink = client
        .copy_in("COPY v (id, embedding) FROM STDIN")
        .await
        .map_err(|e| e.to_string())?;
    futures::pin_mut!(sink);
    for chunk in rows.chunks(1_000) {
        let mut text = String::new();
        for (id, vector) in chunk {
            text.push_str(&format!("{id}\t{}\n", literal(vector)));
        }
        sink.send(bytes::Bytes::from(text))
            .await
            .map_err(|e| e.to_string())?;
    }
    sink.finish().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The indexed expression and the type a query is cast to: the column itself, or its
/// `halfvec` cast (then only a query ordered by that same expression uses the index).
fn indexed(halfvec: Option<usize>) -> (String, String) {
    match halfvec {
        Some(dim) => (
            format!("(embedding::halfvec({dim}))"),
            format!("halfvec({dim})"),
        ),
        None => ("embedding".into(), "vector".into()),
    }
}

async fn top_k(
    client: &Client,
    query: &str,
    k: usize,
    halfvec: Option<usize>,
) -> Result<Vec<i32>, String> {
    let (column, ty) = indexed(halfvec);
    let sql = format!("SELECT id FROM v ORDER BY {column} <=> $1::text::{ty} LIMIT {k}");
    let rows = client
        .query(&sql, &[&query])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

async fn sweep(args: &Args, client: &Client, vectors: Vec<Vec<f32>>) -> Result<(), String> {
    if vectors.len() <= args.queries + args.tail {
        return Err(format!("only {} vectors to sweep over", vectors.len()));
    }
    let dim = vectors[0].len();
    let (data, queries) = vectors.split_at(vectors.len() - args.queries);
    let rows: Vec<(i32, &Vec<f32>)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i32, v))
        .collect();
    let queries: Vec<String> = queries.iter().map(|q| literal(q)).collect();
    let head = rows.len() - args.tail;
    println!(
        "{} rows of dimension {dim} ({}), {} held-out queries, tail of {} inserted in batches of {}",
        rows.len(),
        args.source.as_deref().unwrap_or("generated hashing vectors"),
        queries.len(),
        args.tail,
        args.batch
    );
    let exec = |sql: String| async move {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))
    };
    exec(format!(
        "CREATE EXTENSION IF NOT EXISTS vector; \
         CREATE TABLE v (id int4 PRIMARY KEY, embedding vector({dim}))"
    ))
    .await?;
    copy_rows(client, &rows).await?;
    // Exact answers: no index exists yet, so these are sequential scans.
    let mut exact = Vec::with_capacity(queries.len());
    for query in &queries {
        exact.push(top_k(client, query, args.k, None).await?);
    }
    let halfvec = args.halfvec.then_some(dim);
    let (column, ty) = indexed(halfvec);
    let ops = if halfvec.is_some() {
        "halfvec_cosine_ops"
    } else {
        "vector_cosine_ops"
    };
    println!("index on {column} ({ty}, {ops})");
    for &(m, ef_construction) in &args.configs {
        exec("DROP INDEX IF EXISTS v_hnsw; TRUNCATE v".into()).await?;
        copy_rows(client, &rows[..head]).await?;
        let started = Instant::now();
        exec(format!(
            "SET maintenance_work_mem = '1GB'; CREATE INDEX v_hnsw ON v USING hnsw \
             ({column} {ops}) WITH (m = {m}, ef_construction = {ef_construction})"
        ))
        .await?;
        let build = started.elapsed();
        let started = Instant::now();
        for chunk in rows[head..].chunks(args.batch) {
            let ids: Vec<i32> = chunk.iter().map(|(id, _)| *id).collect();
            let texts: Vec<String> = chunk.iter().map(|(_, v)| literal(v)).collect();
            client
                .execute(
                    "INSERT INTO v SELECT u.id, u.e::vector FROM unnest($1::int4[], $2::text[]) u(id, e)",
                    &[&ids, &texts],
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        let rate = args.tail as f64 / started.elapsed().as_secs_f64();
        println!(
            "m {m} ef_construction {ef_construction}: build of {head} rows {:.1} s; \
             insert at {} rows {rate:.0} rows/s",
            build.as_secs_f64(),
            rows.len()
        );
        for &ef in &args.ef_search {
            exec(format!("SET hnsw.ef_search = {ef}")).await?;
            let mut found = 0usize;
            let mut times = Vec::with_capacity(queries.len());
            for (query, truth) in queries.iter().zip(&exact) {
                let started = Instant::now();
                let got = top_k(client, query, args.k, halfvec).await?;
                times.push(started.elapsed());
                let truth: HashSet<&i32> = truth.iter().collect();
                found += got.iter().filter(|id| truth.contains(id)).count();
            }
            times.sort();
            println!(
                "  ef_search {ef}: recall@{} {:.4}, scan p50 {:.2} ms p99 {:.2} ms",
                args.k,
                found as f64 / (queries.len() * args.k) as f64,
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let admin = connect(&args.url).await?;
    let total = args.n + args.queries;
    let vectors = match &args.source {
        Some(table) => read_source(&admin, table, total).await?,
        None => generated(total, args.dim, args.seed),
    };
    let database = format!("astro_hnsw_sweep_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await
        .map_err(|e| e.to_string())?;
    let outcome = async {
        let client = connect(&with_database(&args.url, &database)).await?;
        sweep(&args, &client, vectors).await
    }
    .await;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await
        .map_err(|e| e.to_string())?;
    outcome
}
