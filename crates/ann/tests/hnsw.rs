//! Behavioural tests for `HnswIndex`. Sized to stay fast in debug builds.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use astrocyte_ann::{AnnError, HnswIndex, HnswParams};
use common::{normalise, recall, Clustered, Rng};

const DIM: usize = 64;

fn all(_: u64) -> bool {
    true
}

fn build(n: usize, seed: u64) -> (HnswIndex, Vec<Vec<f32>>, Clustered) {
    let mut gen = Clustered::new(DIM, 40, 16, seed);
    let data = gen.take(n);
    let mut idx = HnswIndex::new(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        idx.insert(i as u64, v).expect("insert");
    }
    (idx, data, gen)
}

/// One 5k-vector index plus fresh queries from the same distribution,
/// built once and shared by the read-only tests (debug builds are slow).
fn shared() -> &'static (HnswIndex, Vec<Vec<f32>>) {
    static SHARED: OnceLock<(HnswIndex, Vec<Vec<f32>>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (idx, _, mut gen) = build(5000, 1);
        (idx, gen.take(100))
    })
}

fn snapshot(idx: &HnswIndex) -> Vec<u8> {
    let mut buf = Vec::new();
    idx.write_to(&mut buf).expect("write");
    buf
}

#[test]
fn recall_at_10_against_exact() {
    let (idx, queries) = shared();
    assert_eq!(idx.len(), 5000);
    let mut total = 0.0;
    for q in queries {
        let approx = idx.search(q, 10, &all);
        let exact = idx.search_exact(q, 10, &all);
        assert_eq!(approx.len(), 10);
        assert_eq!(exact.len(), 10);
        // Scores are computed by the same kernel on both paths.
        for (k, s) in &approx {
            if let Some((_, e)) = exact.iter().find(|(ek, _)| ek == k) {
                assert_eq!(s.to_bits(), e.to_bits());
            }
        }
        total += recall(&approx, &exact);
    }
    let r = total / queries.len() as f64;
    assert!(r >= 0.95, "recall@10 = {r}");
}

#[test]
fn results_are_sorted_best_first_with_key_tiebreak() {
    let (mut idx, _, mut gen) = build(1500, 2);
    let dup = gen.sample();
    for key in [9_000_009u64, 9_000_003, 9_000_007, 9_000_001] {
        idx.insert(key, &dup).expect("insert");
    }
    for results in [idx.search(&dup, 4, &all), idx.search_exact(&dup, 4, &all)] {
        let keys: Vec<u64> = results.iter().map(|r| r.0).collect();
        assert_eq!(keys, vec![9_000_001, 9_000_003, 9_000_007, 9_000_009]);
    }
    let q = gen.sample();
    let everything = idx.search(&q, usize::MAX, &all);
    assert_eq!(everything.len(), idx.len());
    assert_eq!(everything, idx.search_exact(&q, usize::MAX, &all));
    assert_eq!(idx.search_with_ef(&q, 3, usize::MAX, &all).len(), 3);
    let r = idx.search(&q, 50, &all);
    assert!(r
        .windows(2)
        .all(|w| w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0)));
}

#[test]
fn selective_filter_returns_exact_top_k() {
    let (idx, queries) = shared();
    // 1% of keys.
    let one_pct = |k: u64| k % 100 == 7;
    for q in &queries[..20] {
        let got = idx.search(q, 10, &one_pct);
        let want = idx.search_exact(q, 10, &one_pct);
        assert_eq!(got.len(), 10);
        assert_eq!(got, want);
        assert!(got.iter().all(|(k, _)| one_pct(*k)));
    }
    // Fewer matches than k: all of them.
    let three = |k: u64| k == 10 || k == 20 || k == 4999;
    let q = &queries[20];
    let got = idx.search(q, 10, &three);
    assert_eq!(got, idx.search_exact(q, 10, &three));
    assert_eq!(got.len(), 3);
    // No matches at all.
    assert!(idx.search(q, 10, &|_| false).is_empty());
}

#[test]
fn moderate_filter_keeps_recall_and_count() {
    let (idx, queries) = shared();
    let some = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100 < 30;
    let mut total = 0.0;
    let queries = &queries[..50];
    for q in queries {
        let got = idx.search(q, 10, &some);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(k, _)| some(*k)));
        total += recall(&got, &idx.search_exact(q, 10, &some));
    }
    let r = total / queries.len() as f64;
    assert!(r >= 0.9, "filtered recall@10 = {r}");
}

#[test]
fn removed_keys_are_never_returned_and_can_come_back() {
    let (mut idx, data, mut gen) = build(2400, 5);
    for key in (0..2400u64).filter(|k| k % 3 == 0) {
        assert!(idx.remove(key));
        assert!(!idx.remove(key), "second remove is a no-op");
    }
    assert_eq!(idx.len(), 1600);
    assert!(!idx.contains(0));
    assert!(idx.contains(1));
    for q in gen.take(30) {
        for r in [idx.search(&q, 50, &all), idx.search_exact(&q, 50, &all)] {
            assert_eq!(r.len(), 50);
            assert!(r.iter().all(|(k, _)| k % 3 != 0));
        }
    }
    // A removed vector queried directly must not come back either.
    let top = idx.search(&data[30], 5, &all);
    assert!(top.iter().all(|(k, _)| *k != 30));

    // Re-insert: found again, with its (new) vector.
    idx.insert(30, &data[31]).expect("reinsert");
    assert!(idx.contains(30));
    assert_eq!(idx.len(), 1601);
    let top = idx.search(&data[31], 2, &all);
    let keys: Vec<u64> = top.iter().map(|r| r.0).collect();
    assert_eq!(keys, vec![30, 31], "exact duplicates, smaller key first");
    assert!(idx.tombstones() > 0);

    let copy = idx.clone();
    let compacted = idx.compacted();
    assert_eq!(
        idx.tombstones(),
        copy.tombstones(),
        "compacted() leaves self alone"
    );
    idx.compact();
    assert_eq!(snapshot(&idx), snapshot(&compacted));
    assert_eq!(snapshot(&copy.compacted()), snapshot(&compacted));
    assert_eq!(idx.tombstones(), 0);
    assert_eq!(idx.len(), 1601);
    let q = gen.sample();
    assert_eq!(idx.search(&q, 1, &all), idx.search_exact(&q, 1, &all));
}

#[test]
fn insert_replaces_in_place() {
    let (mut idx, data, _) = build(1600, 6);
    let before = idx.len();
    idx.insert(7, &data[1500]).expect("replace");
    assert_eq!(idx.len(), before);
    assert_eq!(idx.get(7), Some(data[1500].as_slice()));
    let top = idx.search(&data[1500], 2, &all);
    assert_eq!(top.iter().map(|r| r.0).collect::<Vec<_>>(), vec![7, 1500]);
    // The old vector no longer finds key 7 at the top, and key 7 appears once.
    let r = idx.search(&data[7], 100, &all);
    assert!(r.iter().filter(|(k, _)| *k == 7).count() <= 1);
    assert_ne!(r.first().map(|x| x.0), Some(7));
    // Re-inserting the identical vector is a no-op (no new tombstone).
    let tombs = idx.tombstones();
    idx.insert(7, &data[1500]).expect("same");
    assert_eq!(idx.tombstones(), tombs);
}

#[test]
fn input_validation() {
    let mut idx = HnswIndex::new(4, HnswParams::default());
    match idx.insert(1, &[1.0, 0.0, 0.0]) {
        Err(AnnError::DimensionMismatch { expected, got }) => {
            assert_eq!((expected, got), (4, 3));
        }
        other => panic!("expected DimensionMismatch, got {other:?}"),
    }
    assert!(matches!(
        idx.insert(1, &[f32::NAN, 0.0, 0.0, 0.0]),
        Err(AnnError::NonFinite)
    ));
    assert!(idx.is_empty());
    idx.insert(1, &[2.0, 0.0, 0.0, 0.0])
        .expect("unnormalised is fine");
    idx.insert(2, &[0.0, 0.0, 0.0, 0.0])
        .expect("zero vector is fine");
    let r = idx.search(&[3.0, 0.0, 0.0, 0.0], 2, &all);
    assert_eq!(r, vec![(1, 1.0), (2, 0.0)], "cosine, normalised both sides");
    assert!(idx.search(&[1.0, 0.0], 2, &all).is_empty(), "wrong dim");
    assert!(
        idx.search_exact(&[1.0, 0.0], 2, &all).is_empty(),
        "wrong dim"
    );
    assert!(idx
        .search(&[f32::INFINITY, 0.0, 0.0, 0.0], 2, &all)
        .is_empty());
    assert!(
        idx.search(&[1.0, 0.0, 0.0, 0.0], 0, &all).is_empty(),
        "k = 0"
    );
}

#[test]
fn empty_index() {
    let idx = HnswIndex::new(8, HnswParams::default());
    assert!(idx.is_empty());
    assert_eq!(idx.len(), 0);
    assert_eq!(idx.dimension(), 8);
    assert!(!idx.contains(1));
    assert!(idx.search(&[0.5; 8], 10, &all).is_empty());
    assert!(idx.search_exact(&[0.5; 8], 10, &all).is_empty());
    let back = HnswIndex::read_from(&mut snapshot(&idx).as_slice()).expect("read");
    assert!(back.is_empty());
    assert_eq!(back.dimension(), 8);
}

#[test]
fn snapshot_round_trip_is_identical() {
    let (mut idx, data, mut gen) = build(2000, 7);
    for k in (0..2000u64).step_by(10) {
        idx.remove(k);
    }
    idx.insert(5, &data[1999]).expect("replace");
    let bytes = snapshot(&idx);
    let back = HnswIndex::read_from(&mut bytes.as_slice()).expect("read");
    assert_eq!(back.len(), idx.len());
    assert_eq!(back.tombstones(), idx.tombstones());
    assert_eq!(back.dimension(), DIM);
    assert_eq!(back.params(), idx.params());
    assert!(!back.contains(10) && back.contains(5));
    assert_eq!(
        snapshot(&back),
        bytes,
        "re-serialising gives the same bytes"
    );
    let filt = |k: u64| k % 2 == 1;
    for q in gen.take(30) {
        assert_eq!(back.search(&q, 10, &all), idx.search(&q, 10, &all));
        assert_eq!(back.search(&q, 10, &filt), idx.search(&q, 10, &filt));
        assert_eq!(
            back.search_exact(&q, 10, &all),
            idx.search_exact(&q, 10, &all)
        );
    }
    // A loaded index keeps evolving exactly like the original.
    let mut back = back;
    let extra = gen.take(50);
    for (i, v) in extra.iter().enumerate() {
        idx.insert(10_000 + i as u64, v).expect("insert");
        back.insert(10_000 + i as u64, v).expect("insert");
    }
    assert_eq!(snapshot(&back), snapshot(&idx));
}

#[test]
fn corrupt_snapshots_are_errors_not_panics() {
    // Small index so that trying many corruptions stays quick.
    let mut gen = Clustered::new(8, 4, 0, 8);
    let mut idx = HnswIndex::new(
        8,
        HnswParams {
            m: 4,
            ..HnswParams::default()
        },
    );
    for (i, v) in gen.take(200).iter().enumerate() {
        idx.insert(i as u64, v).expect("insert");
    }
    idx.remove(3);
    let bytes = snapshot(&idx);
    assert!(HnswIndex::read_from(&mut bytes.as_slice()).is_ok());

    let mut positions: Vec<usize> = (0..64.min(bytes.len())).collect();
    positions.extend((64..bytes.len()).step_by(37));
    positions.extend(bytes.len().saturating_sub(16)..bytes.len());
    for &p in &positions {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[p] ^= flip;
            match HnswIndex::read_from(&mut bad.as_slice()) {
                Err(AnnError::Corrupt(_)) => {}
                other => panic!("byte {p} ^ {flip:#x}: expected Corrupt, got {other:?}"),
            }
        }
    }
    for len in (0..bytes.len())
        .step_by(29)
        .chain([bytes.len() - 1, bytes.len() - 8])
    {
        match HnswIndex::read_from(&mut &bytes[..len]) {
            Err(AnnError::Corrupt(_)) => {}
            other => panic!("truncated to {len}: expected Corrupt, got {other:?}"),
        }
    }
    assert!(HnswIndex::read_from(&mut &b"not a snapshot at all"[..]).is_err());
}

/// Hands out at most `step` bytes per read, so node records straddle every buffer refill.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn snapshots_read_alike_whole_or_in_driblets() {
    let mut gen = Clustered::new(8, 4, 0, 8);
    for keep_vectors in [true, false] {
        let params = HnswParams {
            m: 4,
            ..HnswParams::default()
        };
        let mut idx = if keep_vectors {
            HnswIndex::new(8, params)
        } else {
            HnswIndex::new_codes_only(8, params)
        };
        for (i, v) in gen.take(300).iter().enumerate() {
            idx.insert(i as u64, v).expect("insert");
        }
        idx.remove(7);
        let bytes = snapshot(&idx);
        for step in [1, 5, 64, 1000] {
            let back = HnswIndex::read_from(&mut Trickle { data: &bytes, step })
                .unwrap_or_else(|e| panic!("step {step}: {e:?}"));
            assert_eq!(snapshot(&back), bytes, "step {step}");
            assert_eq!(
                (back.len(), back.tombstones()),
                (idx.len(), idx.tombstones())
            );
        }
        // Damage found whichever way a record is read.
        let mut bad = bytes.clone();
        let at = bytes.len() / 2;
        bad[at] ^= 0x40;
        for step in [3, bytes.len()] {
            match HnswIndex::read_from(&mut Trickle { data: &bad, step }) {
                Err(AnnError::Corrupt(_)) => {}
                other => panic!("step {step}: expected Corrupt, got {other:?}"),
            }
        }
    }
}

#[test]
fn construction_is_deterministic() {
    let (a, _, mut gen) = build(1500, 9);
    let (b, _, _) = build(1500, 9);
    assert_eq!(snapshot(&a), snapshot(&b));
    for q in gen.take(20) {
        assert_eq!(a.search(&q, 10, &all), b.search(&q, 10, &all));
    }
    let mut c = HnswIndex::new(
        DIM,
        HnswParams {
            seed: 12345,
            ..HnswParams::default()
        },
    );
    let mut gen = Clustered::new(DIM, 40, 16, 9);
    for (i, v) in gen.take(1500).iter().enumerate() {
        c.insert(i as u64, v).expect("insert");
    }
    assert_ne!(snapshot(&a), snapshot(&c), "the seed changes the graph");
}

#[test]
fn random_operations_match_a_model() {
    let mut rng = Rng::new(10);
    let mut idx = HnswIndex::new(
        16,
        HnswParams {
            m: 8,
            ef_construction: 32,
            ..HnswParams::default()
        },
    );
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    let vec16 = |rng: &mut Rng| {
        let mut v: Vec<f32> = (0..16).map(|_| rng.gauss()).collect();
        normalise(&mut v);
        v
    };
    for step in 0..4000 {
        let key = rng.next_u64() % 1500;
        if rng.next_u64().is_multiple_of(4) {
            assert_eq!(idx.remove(key), model.remove(&key).is_some());
        } else {
            let v = vec16(&mut rng);
            idx.insert(key, &v).expect("insert");
            model.insert(key, v);
        }
        if step % 500 == 499 {
            assert_eq!(idx.len(), model.len());
            let q = vec16(&mut rng);
            let got = idx.search(&q, 20, &all);
            assert_eq!(got.len(), 20.min(model.len()));
            assert!(got.iter().all(|(k, _)| model.contains_key(k)));
            let exact = idx.search_exact(&q, 20, &all);
            let mut want: Vec<(u64, f32)> = model
                .iter()
                .map(|(k, v)| (*k, v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>()))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want_keys: Vec<u64> = want.iter().take(20).map(|w| w.0).collect();
            let exact_keys: Vec<u64> = exact.iter().map(|w| w.0).collect();
            // Summation order differs from the naive model, so compare keys
            // with a tolerance for near-ties at the boundary.
            let overlap = exact_keys.iter().filter(|k| want_keys.contains(k)).count();
            assert!(overlap >= 19, "exact search disagrees with the model");
        }
    }
}

#[test]
fn concurrent_searches_share_the_index() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HnswIndex>();
    let (idx, queries) = shared();
    let expected: Vec<_> = queries.iter().map(|q| idx.search(q, 10, &all)).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let expected = &expected;
            s.spawn(move || {
                for (q, e) in queries.iter().zip(expected).skip(t) {
                    assert_eq!(&idx.search(q, 10, &all), e);
                }
            });
        }
    });
}

/// Builds like a retain does: batches of 64, each vector first checked with
/// `nearest_with_hint` against the index as it was before the batch, then
/// inserted with that hint.
fn build_hinted(data: &[Vec<f32>]) -> (HnswIndex, usize) {
    let mut idx = HnswIndex::new(DIM, HnswParams::default());
    let mut hinted = 0;
    for (b, batch) in data.chunks(64).enumerate() {
        let hints: Vec<_> = batch.iter().map(|v| idx.nearest_with_hint(v).1).collect();
        hinted += hints.iter().flatten().count();
        for (i, (v, hint)) in batch.iter().zip(&hints).enumerate() {
            let key = (b * 64 + i) as u64;
            idx.insert_hinted(key, v, hint.as_ref()).expect("insert");
        }
    }
    (idx, hinted)
}

#[test]
fn hinted_inserts_build_a_graph_as_good_as_plain_ones() {
    let mut gen = Clustered::new(DIM, 40, 16, 7);
    let data = gen.take(4000);
    let queries = gen.take(100);
    let (hinted, used) = build_hinted(&data);
    // Below EXACT_MAX_NODES there is no graph walk to reuse, so no hint.
    assert!(used > 2500, "only {used} hints were made");
    assert_eq!(hinted.len(), data.len());
    let mut plain = HnswIndex::new(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        plain.insert(i as u64, v).expect("insert");
    }
    let mut recall_hinted = 0.0;
    let mut recall_plain = 0.0;
    for q in &queries {
        let exact = plain.search_exact(q, 10, &all);
        recall_hinted += recall(&hinted.search(q, 10, &all), &exact);
        recall_plain += recall(&plain.search(q, 10, &all), &exact);
    }
    let (h, p) = (recall_hinted / 100.0, recall_plain / 100.0);
    assert!(
        h >= 0.95 && h >= p - 0.02,
        "recall@10 hinted {h}, plain {p}"
    );
    // Every vector is reachable: searching for it finds it first.
    for (i, v) in data.iter().enumerate().step_by(7) {
        assert_eq!(hinted.search(v, 1, &all)[0].0, i as u64, "vector {i}");
    }
}

#[test]
fn nearest_with_hint_agrees_with_exact_search() {
    let (idx, queries) = shared();
    for q in queries.iter().chain(idx_vectors(idx).iter()) {
        let (best, hint) = idx.nearest_with_hint(q);
        assert!(hint.is_some());
        let exact = idx.search_exact(q, 1, &all)[0];
        let (key, score) = best.expect("a nearest entry");
        // A miss is allowed only between near-equal scores.
        assert!(
            key == exact.0 || score >= exact.1 - 1e-3,
            "{key} {score} vs {exact:?}"
        );
    }
}

fn idx_vectors(idx: &HnswIndex) -> Vec<Vec<f32>> {
    (0..50u64)
        .filter_map(|k| idx.get(k * 97).map(<[f32]>::to_vec))
        .collect()
}

#[test]
fn stale_hints_are_ignored() {
    let mut gen = Clustered::new(DIM, 40, 16, 11);
    let data = gen.take(3000);
    let mut idx = HnswIndex::new(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate().take(2000) {
        idx.insert(i as u64, v).expect("insert");
    }
    let probe = &data[2500];
    let (_, hint) = idx.nearest_with_hint(probe);
    let hint = hint.expect("a hint");
    // Compaction renumbers the nodes: the hint no longer fits and the
    // insert walks the graph instead of linking to the wrong nodes.
    idx.remove(3);
    idx.compact();
    idx.insert_hinted(2500, probe, Some(&hint)).expect("insert");
    assert_eq!(idx.search(probe, 1, &all)[0].0, 2500);
    // Too many nodes added since the hint: ignored as well.
    let (_, hint) = idx.nearest_with_hint(&data[2999]);
    for (i, v) in data.iter().enumerate().skip(2000).take(1100) {
        if i != 2500 && i != 2999 {
            idx.insert(i as u64, v).expect("insert");
        }
    }
    idx.insert_hinted(2999, &data[2999], hint.as_ref())
        .expect("insert");
    assert_eq!(idx.search(&data[2999], 1, &all)[0].0, 2999);
}

// ----- codes-only indexes ---------------------------------------------------

/// The exact cosine of two unit vectors, computed independently of the index.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>() as f32
}

/// A shortlist from a codes-only index, rescored with the caller's own vectors: the top `k`.
fn rescored(idx: &HnswIndex, data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let ef = idx.params().ef_search;
    let mut out: Vec<(u64, f32)> = idx
        .search_with_ef(q, ef, ef, &all)
        .into_iter()
        .map(|(key, _)| (key, cosine(q, &data[key as usize])))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// Brute force over the caller's vectors.
fn brute_force(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut out: Vec<(u64, f32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, cosine(q, v)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// A codes-only index over seeded clustered data, 384 dimensions as the local model gives:
/// its `ef` shortlist rescored exactly finds the exact top 10 at least 98% of the time, and it
/// holds a fraction of the memory of an index that keeps its vectors.
#[test]
fn codes_only_shortlists_rescored_keep_recall() {
    const DIM384: usize = 384;
    let mut gen = Clustered::new(DIM384, 60, 32, 77);
    let data = gen.take(4000);
    let queries = gen.take(60);
    let mut codes = HnswIndex::new_codes_only(DIM384, HnswParams::default());
    let mut full = HnswIndex::new(DIM384, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        codes.insert(i as u64, v).expect("insert");
        full.insert(i as u64, v).expect("insert");
    }
    assert!(!codes.keeps_vectors() && full.keeps_vectors());
    assert!(codes.get(3).is_none() && full.get(3).is_some());
    assert!(
        codes.memory_bytes() * 2 < full.memory_bytes(),
        "{} vs {}",
        codes.memory_bytes(),
        full.memory_bytes()
    );
    let mut total = 0.0;
    for q in &queries {
        let exact = brute_force(&data, q, 10);
        let got = rescored(&codes, &data, q, 10);
        assert_eq!(got.len(), 10);
        total += recall(&got, &exact);
    }
    let r = total / queries.len() as f64;
    assert!(r >= 0.98, "codes-only recall@10 after rescoring = {r}");
}

/// Every similarity a codes-only index computes is within its stated bound of the exact
/// cosine, for clustered data and for spiky vectors (one large component), where int8 steps
/// are coarsest.
#[test]
fn similarity_bounds_hold() {
    let mut gen = Clustered::new(DIM, 10, 8, 5);
    let mut data = gen.take(1500);
    let mut rng = Rng::new(9);
    for _ in 0..100 {
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.gauss() * 0.05).collect();
        v[(rng.next_u64() % DIM as u64) as usize] = 1.0;
        normalise(&mut v);
        data.push(v);
    }
    let mut idx = HnswIndex::new_codes_only(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        idx.insert(i as u64, v).expect("insert");
    }
    let queries: Vec<Vec<f32>> = gen
        .take(10)
        .into_iter()
        .chain(data[1500..1510].iter().cloned())
        .collect();
    let mut widest = 0.0f32;
    for q in &queries {
        for (key, approx) in idx.search_exact(q, data.len(), &all) {
            let exact = cosine(q, &data[key as usize]);
            let bound = idx.similarity_bound(q, key).expect("live key");
            assert!(
                (approx - exact).abs() <= bound,
                "key {key}: approx {approx} exact {exact} bound {bound}"
            );
            widest = widest.max(bound);
        }
    }
    assert!(widest < 0.2, "bounds are useful, not vacuous: {widest}");
    assert_eq!(idx.similarity_bound(&queries[0], 1_000_000), None);
}

/// Near-duplicate candidates: a vector close to a stored one yields that one as a candidate
/// at a high threshold; a threshold no stored vector can reach yields none (the bound rules
/// them all out without rescoring).
#[test]
fn nearest_candidates_are_ruled_out_by_their_bounds() {
    let mut gen = Clustered::new(DIM, 40, 16, 13);
    let data = gen.take(3000);
    let mut idx = HnswIndex::new_codes_only(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        idx.insert(i as u64, v).expect("insert");
    }
    let mut near = data[1234].clone();
    near[0] += 0.01;
    normalise(&mut near);
    let (candidates, hint) = idx.nearest_candidates_with_hint(&near, 0.95);
    assert!(hint.is_some());
    assert!(
        candidates.iter().any(|(key, _)| *key == 1234),
        "{candidates:?}"
    );
    let other = gen.sample();
    let threshold = brute_force(&data, &other, 1)[0].1 + 0.25;
    let (none, _) = idx.nearest_candidates_with_hint(&other, threshold);
    assert!(none.is_empty(), "{none:?}");
    // An index that keeps its vectors answers with the exact best, if it reaches the threshold.
    let (full, _, _) = build(1200, 3);
    let q = full.get(17).expect("kept").to_vec();
    let (best, _) = full.nearest_candidates_with_hint(&q, 0.99);
    assert_eq!(best.first().map(|(key, _)| *key), Some(17));
}

/// A codes-only snapshot stores codes (version 2, about a quarter of the bytes), loads back
/// answering identically, and compaction of a codes-only index keeps it searchable.
#[test]
fn codes_only_snapshots_and_compaction() {
    let mut gen = Clustered::new(DIM, 40, 16, 21);
    let data = gen.take(2500);
    let mut codes = HnswIndex::new_codes_only(DIM, HnswParams::default());
    let mut full = HnswIndex::new(DIM, HnswParams::default());
    for (i, v) in data.iter().enumerate() {
        codes.insert(i as u64, v).expect("insert");
        full.insert(i as u64, v).expect("insert");
    }
    let small = snapshot(&codes);
    let large = snapshot(&full);
    assert!(
        small.len() * 2 < large.len(),
        "{} vs {}",
        small.len(),
        large.len()
    );
    let loaded = HnswIndex::read_from(&mut small.as_slice()).expect("read");
    assert!(!loaded.keeps_vectors());
    let queries = gen.take(20);
    for q in &queries {
        assert_eq!(loaded.search(q, 10, &all), codes.search(q, 10, &all));
    }
    // Damage is caught as for version 1.
    let mut damaged = small.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x20;
    assert!(matches!(
        HnswIndex::read_from(&mut damaged.as_slice()),
        Err(AnnError::Corrupt(_))
    ));
    // A full index's snapshot can be loaded and turned codes-only.
    let mut converted = HnswIndex::read_from(&mut large.as_slice()).expect("read");
    converted.drop_vectors();
    assert_eq!(snapshot(&converted), small, "same graph, same codes");
    // Compaction after removals: live entries only, still found by rescoring.
    for key in (0..2500u64).filter(|k| k % 2 == 0) {
        codes.remove(key);
    }
    codes.compact();
    assert_eq!((codes.len(), codes.tombstones()), (1250, 0));
    let live: Vec<Vec<f32>> = data.clone();
    let mut total = 0.0;
    for q in &queries {
        let exact: Vec<(u64, f32)> = brute_force(&live, q, data.len())
            .into_iter()
            .filter(|(key, _)| key % 2 == 1)
            .take(10)
            .collect();
        total += recall(&rescored(&codes, &live, q, 10), &exact);
    }
    assert!(
        total / queries.len() as f64 >= 0.95,
        "{}",
        total / queries.len() as f64
    );
}
