//! HNSW benchmark: insert throughput, search latency percentiles, recall@k
//! against exact search, filtered search and snapshot round trip.
//!
//! ```text
//! cargo run --release -p astrocyte-ann --example ann_bench -- --n 100000 --dim 384
//! ```
//!
//! Options: `--n`, `--dim`, `--queries` (latency sample, default 1000),
//! `--recall-queries` (default 200), `--k` (10), `--m`, `--ef-construction`,
//! `--ef-search`, `--clusters` (100), `--latent` (intrinsic dimension of the
//! synthetic data, default 32; 0 = clusters with full-dimensional isotropic
//! noise), `--seed`, `--codes-only 1` (the embedded store's layout: int8 codes in the
//! index, each shortlist of `ef` rescored exactly from the vectors kept outside it, as the
//! store rescores from its rows; reports recall@k of that against exact search),
//! `--rescore 256,150` (with `--codes-only 1`: rescore only the best N of the shortlist of
//! `--ef-search` by code similarity, one report per N).

use std::time::{Duration, Instant};

use astrocyte_ann::{HnswIndex, HnswParams};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{recall, Clustered};

struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    recall_queries: usize,
    k: usize,
    clusters: usize,
    latent: usize,
    seed: u64,
    codes_only: bool,
    rescore: Vec<usize>,
    params: HnswParams,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        dim: 384,
        queries: 1000,
        recall_queries: 200,
        k: 10,
        clusters: 100,
        latent: 32,
        seed: 42,
        codes_only: false,
        rescore: Vec::new(),
        params: HnswParams::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--n" => a.n = num()?,
            "--dim" => a.dim = num()?,
            "--queries" => a.queries = num()?,
            "--recall-queries" => a.recall_queries = num()?,
            "--k" => a.k = num()?,
            "--clusters" => a.clusters = num()?,
            "--latent" => a.latent = num()?,
            "--seed" => a.seed = num()? as u64,
            "--codes-only" => a.codes_only = num()? != 0,
            "--rescore" => {
                a.rescore = value
                    .split(',')
                    .map(|n| n.parse().map_err(|e| format!("{flag} {value}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--m" => a.params.m = num()?,
            "--ef-construction" => a.params.ef_construction = num()?,
            "--ef-search" => a.params.ef_search = num()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), so the
/// report can separate our cost from time lost to other processes on a
/// shared machine. `None` where unavailable.
fn on_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Latency percentiles and mean recall of `search` vs `search_exact` under a
/// filter.
fn measure(
    idx: &HnswIndex,
    queries: &[Vec<f32>],
    recall_n: usize,
    k: usize,
    ef: usize,
    filter: &dyn Fn(u64) -> bool,
) -> (Duration, Duration, Duration, f64) {
    let mut lat = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let r = idx.search_with_ef(q, k, ef, filter);
        lat.push(t.elapsed());
        std::hint::black_box(r);
    }
    lat.sort();
    let mut total = 0.0;
    let rq = &queries[..recall_n.min(queries.len())];
    for q in rq {
        let approx = idx.search_with_ef(q, k, ef, filter);
        let exact = idx.search_exact(q, k, filter);
        total += recall(&approx, &exact);
    }
    let rec = if rq.is_empty() {
        1.0
    } else {
        total / rq.len() as f64
    };
    (
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        rec,
    )
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ann_bench: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "ann_bench: n={} dim={} k={} params={:?} data: {} clusters, latent dim {}",
        a.n, a.dim, a.k, a.params, a.clusters, a.latent
    );

    let t = Instant::now();
    let mut gen = Clustered::new(a.dim, a.clusters, a.latent, a.seed);
    let data = gen.take(a.n);
    let queries = gen.take(a.queries.max(a.recall_queries));
    println!("generated data in {:.1}s", t.elapsed().as_secs_f64());

    // Insert, timing each tenth separately to show how cost grows with size.
    let mut idx = if a.codes_only {
        HnswIndex::new_codes_only(a.dim, a.params.clone())
    } else {
        HnswIndex::new(a.dim, a.params.clone())
    };
    idx.reserve(a.n);
    let tenth = (a.n / 10).max(1);
    let mut tenths = Vec::new();
    let cpu0 = on_cpu_ns();
    let start = Instant::now();
    let mut t_chunk = Instant::now();
    for (i, v) in data.iter().enumerate() {
        if let Err(e) = idx.insert(i as u64, v) {
            eprintln!("insert failed: {e}");
            std::process::exit(1);
        }
        if (i + 1) % tenth == 0 {
            tenths.push(tenth as f64 / t_chunk.elapsed().as_secs_f64());
            t_chunk = Instant::now();
        }
    }
    let build = start.elapsed();
    println!(
        "insert: {} vectors in {:.2}s = {:.0} inserts/s",
        a.n,
        build.as_secs_f64(),
        a.n as f64 / build.as_secs_f64()
    );
    if let (Some(c0), Some(c1)) = (cpu0, on_cpu_ns()) {
        let cpu = (c1 - c0) as f64 / 1e9;
        println!(
            "  on-CPU {:.2}s ({:.0} inserts per CPU-second); the rest was waiting for a core",
            cpu,
            a.n as f64 / cpu
        );
    }
    if let (Some(first), Some(last)) = (tenths.first(), tenths.last()) {
        println!(
            "insert rate first 10%: {:.0}/s, last 10%: {:.0}/s",
            first, last
        );
    }
    println!("memory: {:.1} MB; {idx:?}", idx.memory_bytes() as f64 / 1e6);

    if a.codes_only {
        codes_only_report(&idx, &data, &queries, &a);
        return;
    }
    let ef = a.params.ef_search;
    let (p50, p95, p99, rec) = measure(&idx, &queries, a.recall_queries, a.k, ef, &|_| true);
    println!(
        "search top-{} (ef={ef}): p50 {:.0}us  p95 {:.0}us  p99 {:.0}us  recall@{} {:.4}",
        a.k,
        us(p50),
        us(p95),
        us(p99),
        a.k,
        rec
    );
    for ef2 in [32usize, 128] {
        let (p50, _, p99, rec) = measure(&idx, &queries, a.recall_queries, a.k, ef2, &|_| true);
        println!(
            "  ef={ef2:>3}: p50 {:.0}us  p99 {:.0}us  recall@{} {:.4}",
            us(p50),
            us(p99),
            a.k,
            rec
        );
    }
    let k1 = measure(&idx, &queries, a.recall_queries, 1, ef, &|_| true);
    println!(
        "search top-1 (near-duplicate check): p50 {:.0}us  p99 {:.0}us  recall@1 {:.4}",
        us(k1.0),
        us(k1.2),
        k1.3
    );

    near_duplicate_probes(&idx, &data, a.recall_queries, a.seed);
    retain_style_build(&a, &data, &queries);

    let few = &queries[..queries.len().min(50)];
    let mut lat: Vec<Duration> = few
        .iter()
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(idx.search_exact(q, a.k, &|_| true));
            t.elapsed()
        })
        .collect();
    lat.sort();
    println!(
        "exact top-{} (brute force): p50 {:.0}us",
        a.k,
        us(percentile(&lat, 0.5))
    );

    for pct in [1u64, 5, 10, 20, 50] {
        // Keyed on a hash so matches are scattered through the graph.
        let filter = move |key: u64| key.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100 < pct;
        let (p50, _, p99, rec) = measure(&idx, &queries, a.recall_queries, a.k, ef, &filter);
        println!(
            "filtered {pct:>2}% top-{}: p50 {:.0}us  p99 {:.0}us  recall@{} {:.4}",
            a.k,
            us(p50),
            us(p99),
            a.k,
            rec
        );
    }

    let t = Instant::now();
    let mut buf = Vec::new();
    if let Err(e) = idx.write_to(&mut buf) {
        eprintln!("snapshot write failed: {e}");
        std::process::exit(1);
    }
    let wt = t.elapsed();
    let t = Instant::now();
    match HnswIndex::read_from(&mut buf.as_slice()) {
        Ok(back) => {
            let rt = t.elapsed();
            let same = queries
                .iter()
                .take(50)
                .all(|q| back.search(q, a.k, &|_| true) == idx.search(q, a.k, &|_| true));
            println!(
                "snapshot: {:.1} MB, write {:.0}ms, read+verify {:.0}ms, identical results: {same}",
                buf.len() as f64 / 1e6,
                wt.as_secs_f64() * 1e3,
                rt.as_secs_f64() * 1e3
            );
        }
        Err(e) => {
            eprintln!("snapshot read failed: {e}");
            std::process::exit(1);
        }
    }
}

/// The `k` nearest of `data` to `query` by exact cosine (vectors are normalised).
fn exact_top(data: &[Vec<f32>], query: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut scored: Vec<(u64, f32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, v.iter().zip(query).map(|(x, y)| x * y).sum()))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |x, y| y.1.total_cmp(&x.1));
    scored.truncate(k);
    scored.sort_by(|x, y| y.1.total_cmp(&x.1));
    scored
}

/// A codes-only index searched as the embedded store does: a shortlist of `ef` by code
/// similarity, rescored exactly from `data` (the store's rows), cut to `k`.
fn codes_only_report(idx: &HnswIndex, data: &[Vec<f32>], queries: &[Vec<f32>], a: &Args) {
    let rq = &queries[..a.recall_queries.min(queries.len())];
    let truth: Vec<Vec<(u64, f32)>> = rq.iter().map(|q| exact_top(data, q, a.k)).collect();
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    // (ef, how many of its shortlist are rescored)
    let runs: Vec<(usize, usize)> = if a.rescore.is_empty() {
        [a.params.ef_search, 32, 128]
            .into_iter()
            .map(|ef| (ef, ef))
            .collect()
    } else {
        a.rescore
            .iter()
            .map(|&n| (a.params.ef_search, n.min(a.params.ef_search)))
            .collect()
    };
    for (ef, rescored) in runs {
        let search = |q: &[f32]| {
            let mut shortlist = idx.search_with_ef(q, rescored.max(a.k), ef, &|_| true);
            for hit in &mut shortlist {
                hit.1 = dot(&data[hit.0 as usize], q);
            }
            shortlist.sort_by(|x, y| y.1.total_cmp(&x.1));
            shortlist.truncate(a.k);
            shortlist
        };
        let mut lat: Vec<Duration> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(search(q));
                t.elapsed()
            })
            .collect();
        lat.sort();
        let rec = rq
            .iter()
            .zip(&truth)
            .map(|(q, exact)| recall(&search(q), exact))
            .sum::<f64>()
            / rq.len().max(1) as f64;
        println!(
            "codes-only, shortlist of ef={ef}, best {rescored} rescored exactly: p50 {:.0}us  p99 {:.0}us  recall@{} {:.4}",
            us(percentile(&lat, 0.5)),
            us(percentile(&lat, 0.99)),
            a.k,
            rec
        );
    }
}

/// The store's near-duplicate check asks for the single nearest vector and compares its
/// cosine with a threshold (0.95). This measures, for queries that are perturbed copies of
/// indexed vectors (cosine 0.93 to 0.99 to their source), how often the graph walk at a given
/// `ef` reaches the same verdict as an exact scan, and what it costs.
fn near_duplicate_probes(idx: &HnswIndex, data: &[Vec<f32>], n: usize, seed: u64) {
    const THRESHOLD: f32 = 0.95;
    let mut rng = common::Rng::new(seed ^ 0xD0B1E);
    let dim = data.first().map_or(0, Vec::len);
    let probes: Vec<Vec<f32>> = (0..n.max(1))
        .map(|_| {
            let source = &data[(rng.next_u64() % data.len() as u64) as usize];
            // Noise of norm t on a unit vector gives cosine about 1 / sqrt(1 + t^2).
            let target = 0.93 + 0.06 * rng.unit() as f32;
            let t = (1.0 / (target * target) - 1.0).sqrt();
            let mut noise: Vec<f32> = (0..dim).map(|_| rng.gauss()).collect();
            common::normalise(&mut noise);
            let mut q: Vec<f32> = source.iter().zip(&noise).map(|(s, e)| s + t * e).collect();
            common::normalise(&mut q);
            q
        })
        .collect();
    let exact: Vec<bool> = probes
        .iter()
        .map(|q| {
            idx.search_exact(q, 1, &|_| true)
                .first()
                .is_some_and(|h| h.1 >= THRESHOLD)
        })
        .collect();
    let duplicates = exact.iter().filter(|d| **d).count();
    for ef in [8usize, 16, 32, 64] {
        let mut lat = Vec::with_capacity(probes.len());
        let mut agree = 0usize;
        let mut missed = 0usize;
        for (q, is_dup) in probes.iter().zip(&exact) {
            let t = Instant::now();
            let hit = idx.search_with_ef(q, 1, ef, &|_| true);
            lat.push(t.elapsed());
            let verdict = hit.first().is_some_and(|h| h.1 >= THRESHOLD);
            agree += usize::from(verdict == *is_dup);
            missed += usize::from(*is_dup && !verdict);
        }
        lat.sort();
        println!(
            "near-duplicate probes (ef={ef:>2}): p50 {:.0}us  verdicts agreeing with exact {}/{} ({} duplicates, {} missed)",
            us(percentile(&lat, 0.5)),
            agree,
            probes.len(),
            duplicates,
            missed
        );
    }
}

/// Builds a second index the way a retain does: batches of 256, each vector
/// first checked for a near-duplicate (`nearest_with_hint`, before the batch
/// goes in) and then inserted with the hint that check left. Prints the time
/// of check plus insert, and the recall of the graph it builds, to compare
/// with a check by `search` followed by a plain insert.
fn retain_style_build(a: &Args, data: &[Vec<f32>], queries: &[Vec<f32>]) {
    for hinted in [false, true] {
        let mut idx = HnswIndex::new(a.dim, a.params.clone());
        idx.reserve(a.n);
        let start = Instant::now();
        for (b, batch) in data.chunks(256).enumerate() {
            let hints: Vec<_> = batch
                .iter()
                .map(|v| {
                    if hinted {
                        idx.nearest_with_hint(v).1
                    } else {
                        std::hint::black_box(idx.search(v, 1, &|_| true));
                        None
                    }
                })
                .collect();
            for (i, (v, hint)) in batch.iter().zip(&hints).enumerate() {
                if let Err(e) = idx.insert_hinted((b * 256 + i) as u64, v, hint.as_ref()) {
                    eprintln!("insert failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        let took = start.elapsed();
        let (_, _, _, rec) = measure(
            &idx,
            queries,
            a.recall_queries,
            a.k,
            a.params.ef_search,
            &|_| true,
        );
        println!(
            "retain-style build ({}): check + insert {:.0}/s, recall@{} {:.4}",
            if hinted {
                "insert reuses the check's walk"
            } else {
                "check, then insert walks again"
            },
            a.n as f64 / took.as_secs_f64(),
            a.k,
            rec
        );
    }
}
