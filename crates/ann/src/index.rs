//! The HNSW graph: construction, removal and search.

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use parking_lot::Mutex;

use crate::arena::Arena;
use crate::distance::{code_sims, dot, dot_i8, normalised, quantize, touch};
use crate::visited::VisitedSet;
use crate::{AnnError, HnswParams};

/// Highest level a node can get. Levels come from `-ln(u) / ln(m)` with `u`
/// drawn from 53 bits, so even `m = 2` stays below this.
pub(crate) const MAX_LEVEL: usize = 60;

/// Largest node index plus one; `u32::MAX` is reserved as "none" in snapshots.
pub(crate) const MAX_NODES: usize = u32::MAX as usize - 1;

/// Indexes this small are always searched exactly: a full scan is as cheap
/// as a graph walk and gives perfect answers.
const EXACT_MAX_NODES: usize = 1024;

/// Filter selectivity is estimated from this many sampled nodes.
const FILTER_SAMPLES: u64 = 256;

/// Crossover constant between a filtered graph walk and an exact scan over
/// the matching entries. A walk's cost grows roughly as `1 / selectivity`, a
/// scan's with the number of matches `m`; the scan is chosen when
/// `m * m <= EXACT_CROSSOVER * ef * n`. Measured with `ann_bench`-style data:
/// the two cost the same at about 5% selectivity for 100k x 384 and 10-15%
/// for 20k x 128, which this value reproduces.
const EXACT_CROSSOVER: usize = 4;

/// Exact scans gather this many matching nodes before scoring them.
const EXACT_BLOCK: usize = 64;

/// At most this many idle visited sets are kept for reuse.
const VISITED_POOL_MAX: usize = 32;

/// A near-duplicate check rescores this many of its best walk candidates
/// exactly: the int8 walk orders them within about 0.01 of the truth, far
/// finer than the gap between a near-duplicate and the next vector.
const NEAREST_RESCORE: usize = 16;

/// An [`InsertHint`] is used only while at most this many nodes were added
/// after it was made: they are scored one by one against the new vector,
/// which is cheap for one batch of retains and wasteful beyond.
const HINT_MAX_NEWER: usize = 1024;

/// Source of layout ids. Every index, and every renumbering of one, takes a
/// fresh id, so a hint can tell whether its node numbers still mean what
/// they meant when it was made.
static NEXT_LAYOUT: AtomicU64 = AtomicU64::new(1);

fn next_layout() -> u64 {
    NEXT_LAYOUT.fetch_add(1, AtomicOrdering::Relaxed)
}

/// Where a vector would sit in the graph: the layer-0 neighbourhood that
/// [`HnswIndex::nearest_with_hint`] walked to. Handing it back to
/// [`HnswIndex::insert_hinted`] links that vector without walking the graph a
/// second time, which roughly halves the graph work of a retain that checks
/// for near-duplicates before inserting.
#[derive(Clone, Debug)]
pub struct InsertHint {
    /// The index layout the node numbers belong to.
    layout: u64,
    /// Nodes in the index when the hint was made; later ones are not in `near`.
    nodes: usize,
    /// The `ef_construction` best nodes found, best first.
    near: Vec<Cand>,
}

/// A node and its similarity to the current query.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub(crate) sim: f32,
    pub(crate) idx: u32,
}

// Greater = more similar; equal similarities order by smaller index so heaps
// pop in a reproducible order.
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| other.idx.cmp(&self.idx))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}

/// A vector prepared for graph navigation: its int8 codes and scale.
pub(crate) struct Probe {
    codes: Vec<i8>,
    scale: f32,
}

impl Probe {
    fn new(v: &[f32]) -> Self {
        let mut codes = vec![0; v.len()];
        let scale = quantize(v, &mut codes);
        Self { codes, scale }
    }
}

/// A result as returned to callers: best first = higher similarity, then
/// smaller key.
#[derive(Clone, Copy)]
struct Ranked {
    sim: f32,
    key: u64,
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| other.key.cmp(&self.key))
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// Sorts best first: similarity descending, then key ascending.
fn sort_results(v: &mut [(u64, f32)]) {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The `j`-th node sampled to estimate filter selectivity. Hashed, so the
/// sample is not aligned with any insertion-order pattern in the keys.
fn sample_position(j: u64, n: usize) -> usize {
    (splitmix64(j ^ 0xF11_7E5) % n as u64) as usize
}

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash.
#[inline]
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parameters with out-of-range values clamped to workable ones.
pub(crate) fn sanitise(mut p: HnswParams) -> HnswParams {
    p.m = p.m.clamp(2, 1024);
    p.ef_construction = p.ef_construction.clamp(p.m, 1 << 16);
    p.ef_search = p.ef_search.clamp(1, 1 << 16);
    p
}

/// An HNSW index over `dimension`-length vectors keyed by `u64`.
///
/// Nodes live in flat arenas indexed by a dense `u32`: vectors contiguously in
/// one `Vec<f32>`, layer-0 links in one `Vec<u32>` with a fixed stride. Removal
/// leaves a tombstone that still routes searches but is never returned;
/// [`compact`](Self::compact) rebuilds without them.
///
/// `Send + Sync`: searches take `&self` and can run in parallel; mutation
/// takes `&mut self`.
pub struct HnswIndex {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    /// Max links on layer 0 (`2 * m`).
    pub(crate) m0: usize,
    level_mult: f64,
    /// Node vectors, `dim` floats per node: the exact data, used for scores. Empty in a
    /// codes-only index (see [`HnswIndex::new_codes_only`]).
    pub(crate) vectors: Vec<f32>,
    /// Whether `vectors` is kept; when not, every score is computed from the codes.
    pub(crate) keep_vectors: bool,
    /// The L1 norm of each node's (normalised) vector: with the scales, it bounds how far a
    /// similarity computed from codes can be from the exact one.
    pub(crate) l1: Vec<f32>,
    /// Int8 codes of the vectors, `dim` per node, and one scale per node:
    /// what the graph walk reads (a quarter of the memory traffic).
    pub(crate) codes: Arena<i8>,
    pub(crate) scales: Vec<f32>,
    pub(crate) keys: Vec<u64>,
    pub(crate) levels: Vec<u8>,
    pub(crate) deleted: Vec<bool>,
    /// Layer-0 adjacency: per node `[count, n_0, .., n_{m0-1}]`.
    pub(crate) links0: Arena<u32>,
    /// Upper-layer adjacency per node: for each level `1..=level`,
    /// `[count, n_0, .., n_{m-1}]`. Empty for the ~94% of nodes on layer 0 only.
    pub(crate) upper: Vec<Vec<u32>>,
    /// Live keys only.
    pub(crate) key_to_node: HashMap<u64, u32>,
    pub(crate) entry: Option<u32>,
    pub(crate) max_level: usize,
    /// Changes whenever node numbers may change meaning (see [`InsertHint`]).
    layout: u64,
    visited_pool: Mutex<Vec<VisitedSet>>,
}

impl Clone for HnswIndex {
    fn clone(&self) -> Self {
        Self {
            dim: self.dim,
            params: self.params.clone(),
            m0: self.m0,
            level_mult: self.level_mult,
            vectors: self.vectors.clone(),
            keep_vectors: self.keep_vectors,
            l1: self.l1.clone(),
            codes: self.codes.clone(),
            scales: self.scales.clone(),
            keys: self.keys.clone(),
            levels: self.levels.clone(),
            deleted: self.deleted.clone(),
            links0: self.links0.clone(),
            upper: self.upper.clone(),
            key_to_node: self.key_to_node.clone(),
            entry: self.entry,
            max_level: self.max_level,
            // The copy may diverge from here: hints for one must not fit the other.
            layout: next_layout(),
            // Scratch space only; the copy grows its own.
            visited_pool: Mutex::new(Vec::new()),
        }
    }
}

impl fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dimension", &self.dim)
            .field("len", &self.len())
            .field("tombstones", &self.tombstones())
            .field("max_level", &self.max_level)
            .field("params", &self.params)
            .finish()
    }
}

impl HnswIndex {
    /// Creates an empty index for vectors of length `dimension`.
    pub fn new(dimension: usize, params: HnswParams) -> Self {
        let params = sanitise(params);
        let m0 = params.m * 2;
        Self {
            dim: dimension,
            level_mult: 1.0 / (params.m as f64).ln(),
            m0,
            params,
            vectors: Vec::new(),
            keep_vectors: true,
            l1: Vec::new(),
            codes: Arena::new(dimension),
            scales: Vec::new(),
            keys: Vec::new(),
            levels: Vec::new(),
            deleted: Vec::new(),
            links0: Arena::new(m0 + 1),
            upper: Vec::new(),
            key_to_node: HashMap::new(),
            entry: None,
            max_level: 0,
            layout: next_layout(),
            visited_pool: Mutex::new(Vec::new()),
        }
    }

    /// Creates an empty index that keeps only the int8 codes of its vectors: a quarter of
    /// the memory (at 1M vectors of 384 dimensions, 0.4 GB instead of 1.9 GB).
    ///
    /// Every similarity it returns is then computed from codes (within about 0.01 of the
    /// exact cosine; [`HnswIndex::similarity_bound`] gives a guaranteed bound), so a caller
    /// that needs exact scores asks for a shortlist (a `k` of `ef` size) and rescores it from
    /// the vectors it stores elsewhere. [`HnswIndex::get`] returns `None`.
    pub fn new_codes_only(dimension: usize, params: HnswParams) -> Self {
        let mut index = Self::new(dimension, params);
        index.keep_vectors = false;
        index
    }

    /// Whether the index keeps its f32 vectors (and so returns exact scores).
    pub fn keeps_vectors(&self) -> bool {
        self.keep_vectors
    }

    /// Drops the f32 vectors, turning this into a codes-only index (see
    /// [`HnswIndex::new_codes_only`]); the graph is unchanged.
    pub fn drop_vectors(&mut self) {
        self.keep_vectors = false;
        self.vectors = Vec::new();
    }

    /// The vector length this index accepts.
    pub fn dimension(&self) -> usize {
        self.dim
    }

    /// The (sanitised) parameters in use.
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// The candidate list a search for `limit` results should keep: the configured
    /// `ef_search`, at least `limit`, and one candidate per [`VECTORS_PER_CANDIDATE`] entries,
    /// so recall does not fall as the index grows.
    pub fn search_breadth(&self, limit: usize) -> usize {
        self.params
            .ef_search
            .max(limit)
            .max(self.len() / VECTORS_PER_CANDIDATE)
    }

    /// How many of a [`Self::search_breadth`] walk's candidates deserve an exact rescoring
    /// when only `limit` are wanted: the best by code similarity, a quarter more than `limit`
    /// and at least [`RESCORED_AT_LEAST`]. Below the whole breadth only in large indexes.
    pub fn rescore_depth(&self, limit: usize) -> usize {
        (limit + limit / 4)
            .max(RESCORED_AT_LEAST)
            .min(self.search_breadth(limit))
    }

    /// Number of live (non-removed) entries.
    pub fn len(&self) -> usize {
        self.key_to_node.len()
    }

    /// True when there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.key_to_node.is_empty()
    }

    /// Number of removed or replaced nodes still held in the graph. When this
    /// grows large relative to [`len`](Self::len), [`compact`](Self::compact)
    /// reclaims the memory and restores search speed.
    pub fn tombstones(&self) -> usize {
        self.keys.len() - self.key_to_node.len()
    }

    /// True if `key` is a live entry.
    pub fn contains(&self, key: u64) -> bool {
        self.key_to_node.contains_key(&key)
    }

    /// The stored (normalised) vector for a live `key`.
    pub fn get(&self, key: u64) -> Option<&[f32]> {
        if !self.keep_vectors {
            return None;
        }
        self.key_to_node.get(&key).map(|&i| self.vec(i))
    }

    /// A bound on how far the similarity of `query` to the live entry `key` as this index
    /// computes it from int8 codes can be from the exact cosine: the exact value lies within
    /// `computed ± bound`. `None` for an absent key or an unusable query. Each component of a
    /// code is within half a step (`scale / 2`) of the true value, so the error of the dot
    /// product is at most `(|a|_1 * s_b + |b|_1 * s_a) / 2 + dim * s_a * s_b / 4`.
    pub fn similarity_bound(&self, query: &[f32], key: u64) -> Option<f32> {
        let &i = self.key_to_node.get(&key)?;
        if query.len() != self.dim {
            return None;
        }
        let q = normalised(query)?;
        let probe = Probe::new(&q);
        let l1q: f32 = q.iter().map(|x| x.abs()).sum();
        Some(self.bound(&probe, l1q, i))
    }

    /// Live keys, in node order (the order they were inserted in, until a
    /// compaction): walking the node arrays is sequential, a map is not.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys
            .iter()
            .zip(&self.deleted)
            .filter(|(_, deleted)| !**deleted)
            .map(|(key, _)| *key)
    }

    /// Reserves room for `additional` more nodes, so a bulk rebuild does not
    /// repeatedly reallocate (and copy) the arenas.
    pub fn reserve(&mut self, additional: usize) {
        if self.keep_vectors {
            self.vectors.reserve(additional * self.dim);
        }
        self.l1.reserve(additional);
        self.codes.reserve(additional);
        self.scales.reserve(additional);
        self.keys.reserve(additional);
        self.levels.reserve(additional);
        self.deleted.reserve(additional);
        self.links0.reserve(additional);
        self.upper.reserve(additional);
        self.key_to_node.reserve(additional);
    }

    /// Approximate heap memory held by the index, in bytes (for metrics).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let upper: usize = self
            .upper
            .iter()
            .map(|u| u.capacity() * size_of::<u32>())
            .sum();
        let visited: usize = self.visited_pool.lock().iter().map(|v| v.bytes()).sum();
        self.vectors.capacity() * size_of::<f32>()
            + self.l1.capacity() * size_of::<f32>()
            + self.codes.bytes()
            + self.scales.capacity() * size_of::<f32>()
            + self.keys.capacity() * size_of::<u64>()
            + self.levels.capacity()
            + self.deleted.capacity()
            + self.links0.bytes()
            + self.upper.capacity() * size_of::<Vec<u32>>()
            + upper
            // hashbrown: key, value and one control byte per bucket.
            + self.key_to_node.capacity() * (size_of::<u64>() + size_of::<u32>() + 1)
            + visited
    }

    /// Inserts or replaces the vector stored under `key`.
    ///
    /// Replacing tombstones the old node and links a new one (HNSW cannot
    /// move a node cheaply); re-inserting an identical vector is a no-op.
    pub fn insert(&mut self, key: u64, vector: &[f32]) -> Result<(), AnnError> {
        self.insert_hinted(key, vector, None)
    }

    /// Like [`insert`](Self::insert), linking the node from `hint` when the
    /// hint still fits: same layout, few nodes added since, and a node that
    /// lives on layer 0 only (about 94% of them; the rest need a walk of the
    /// upper layers anyway). Nodes added after the hint was made are scored
    /// directly, so the vectors of one batch still find each other. A hint
    /// that does not fit is ignored.
    pub fn insert_hinted(
        &mut self,
        key: u64,
        vector: &[f32],
        hint: Option<&InsertHint>,
    ) -> Result<(), AnnError> {
        if vector.len() != self.dim {
            return Err(AnnError::DimensionMismatch {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let v = normalised(vector).ok_or(AnnError::NonFinite)?;
        if let Some(&old) = self.key_to_node.get(&key) {
            if self.keep_vectors && self.vec(old) == &*v {
                return Ok(());
            }
        }
        if self.keys.len() >= MAX_NODES {
            return Err(AnnError::CapacityExceeded);
        }
        if let Some(old) = self.key_to_node.remove(&key) {
            self.deleted[old as usize] = true;
        }
        if self.key_to_node.is_empty() && !self.keys.is_empty() {
            // Only tombstones left: they can never be returned, so start over.
            self.clear_storage();
        }
        let idx = self.keys.len() as u32;
        let level = self.level_for(key);
        if self.keep_vectors {
            self.vectors.extend_from_slice(&v);
        }
        self.l1.push(v.iter().map(|x| x.abs()).sum());
        let scale = quantize(&v, self.codes.push_zeroed());
        self.scales.push(scale);
        self.keys.push(key);
        self.levels.push(level as u8);
        self.deleted.push(false);
        self.links0.push_zeroed();
        self.upper.push(vec![0; level * (self.params.m + 1)]);
        self.key_to_node.insert(key, idx);
        match hint.filter(|h| level == 0 && self.hint_fits(h)) {
            Some(hint) => self.link_from_hint(idx, hint),
            None => self.link_new(idx),
        }
        Ok(())
    }

    /// Whether `hint`'s node numbers are current and few enough nodes came after it.
    fn hint_fits(&self, hint: &InsertHint) -> bool {
        hint.layout == self.layout
            && self.entry.is_some()
            && hint.nodes <= self.keys.len()
            && self.keys.len() - hint.nodes <= HINT_MAX_NEWER
    }

    /// The most similar live entry to `query` (exact score), plus an
    /// [`InsertHint`] for inserting `query` itself afterwards.
    ///
    /// This is the near-duplicate check of a retain: the walk is the one an
    /// insert of `query` would make (`ef_construction` wide on layer 0), so
    /// the hint saves the insert from repeating it. Small indexes are scanned
    /// exactly and give no hint.
    pub fn nearest_with_hint(&self, query: &[f32]) -> (Option<(u64, f32)>, Option<InsertHint>) {
        let Some((q, ids, hint)) = self.nearest_walk(query) else {
            return (None, None);
        };
        (self.rescored(&q, &ids).into_iter().next(), hint)
    }

    /// For a codes-only index (see [`HnswIndex::new_codes_only`]): the live entries that may
    /// be the most similar to `query` with an exact similarity of at least `threshold`, best
    /// first by the similarity computed from codes, plus the hint as
    /// [`nearest_with_hint`](Self::nearest_with_hint) gives it. An entry is left out only when
    /// its [bound](Self::similarity_bound) proves it below `threshold`, so a caller that
    /// rescores these exactly learns whether a near-duplicate exists, and usually has nothing
    /// to rescore. On an index that keeps its vectors the scores are exact.
    pub fn nearest_candidates_with_hint(
        &self,
        query: &[f32],
        threshold: f32,
    ) -> (Vec<(u64, f32)>, Option<InsertHint>) {
        let Some((q, ids, hint)) = self.nearest_walk(query) else {
            return (Vec::new(), None);
        };
        if self.keep_vectors {
            let mut best = self.rescored(&q, &ids);
            best.truncate(1);
            best.retain(|(_, sim)| *sim >= threshold);
            return (best, hint);
        }
        let probe = Probe::new(&q);
        let l1q: f32 = q.iter().map(|x| x.abs()).sum();
        let mut out: Vec<(u64, f32)> = ids
            .iter()
            .map(|&i| (i, self.approx(&probe, i)))
            .filter(|&(i, sim)| sim + self.bound(&probe, l1q, i) >= threshold)
            .map(|(i, sim)| (self.keys[i as usize], sim))
            .collect();
        sort_results(&mut out);
        (out, hint)
    }

    /// The walk of a near-duplicate check: the normalised query, the best live nodes found
    /// (at most [`NEAREST_RESCORE`], best first by codes) and the insert hint.
    #[allow(clippy::type_complexity)]
    fn nearest_walk<'q>(
        &self,
        query: &'q [f32],
    ) -> Option<(Cow<'q, [f32]>, Vec<u32>, Option<InsertHint>)> {
        if self.is_empty() || query.len() != self.dim {
            return None;
        }
        let q = normalised(query)?;
        let entry = self.entry?;
        if self.keys.len() <= EXACT_MAX_NODES {
            let ids = self.exact_nodes(&q, NEAREST_RESCORE, &|_| true);
            return Some((q, ids, None));
        }
        let probe = Probe::new(&q);
        let cur = self.descend(&probe, entry);
        let mut visited = self.take_visited();
        let near = self.search_layer(
            &probe,
            &[cur],
            self.params.ef_construction,
            0,
            &mut visited,
            |_| true,
            usize::MAX,
        );
        self.give_visited(visited);
        let mut ids: Vec<u32> = near
            .iter()
            .map(|c| c.idx)
            .filter(|&i| !self.deleted[i as usize])
            .take(NEAREST_RESCORE)
            .collect();
        if ids.is_empty() {
            // Only tombstones around: the live entries are elsewhere.
            ids = self.exact_nodes(&q, NEAREST_RESCORE, &|_| true);
        }
        let hint = InsertHint {
            layout: self.layout,
            nodes: self.keys.len(),
            near,
        };
        Some((q, ids, Some(hint)))
    }

    /// Removes `key`. Returns false if it was not present.
    ///
    /// The node stays in the graph as a tombstone (it still helps route
    /// searches) but is never returned again. The key can be inserted again
    /// later.
    pub fn remove(&mut self, key: u64) -> bool {
        let Some(idx) = self.key_to_node.remove(&key) else {
            return false;
        };
        self.deleted[idx as usize] = true;
        if self.key_to_node.is_empty() {
            self.clear_storage();
        }
        true
    }

    /// Rebuilds the graph from the live entries only, dropping tombstones.
    /// Deterministic: live nodes are re-inserted in their original order.
    pub fn compact(&mut self) {
        *self = self.compacted();
    }

    /// Like [`compact`](Self::compact) but builds the new index from a shared
    /// reference, so a caller can compact a copy without blocking readers
    /// and swap it in afterwards. Costs a full rebuild (insert speed).
    pub fn compacted(&self) -> HnswIndex {
        let mut fresh = HnswIndex::new(self.dim, self.params.clone());
        fresh.reserve(self.len());
        fresh.keep_vectors = self.keep_vectors;
        let mut decoded = Vec::with_capacity(self.dim);
        for i in 0..self.keys.len() {
            if !self.deleted[i] {
                let vector = if self.keep_vectors {
                    self.vec(i as u32)
                } else {
                    // Codes are all a codes-only index has; quantising the decoded vector
                    // (scaled to unit length) gives back the same codes.
                    let scale = self.scales[i];
                    decoded.clear();
                    decoded.extend(self.code(i as u32).iter().map(|&c| f32::from(c) * scale));
                    &decoded
                };
                // Cannot fail: dimension and finiteness were checked on the
                // way in and the new index holds fewer nodes than this one.
                let _ = fresh.insert(self.keys[i], vector);
                if !self.keep_vectors {
                    // The decoded vector is not unit length: keep the original's norm.
                    if let Some(l1) = fresh.l1.last_mut() {
                        *l1 = self.l1[i];
                    }
                }
            }
        }
        fresh
    }

    /// Top-`k` live entries by cosine similarity to `query`, best first (ties
    /// broken by smaller key), restricted to keys for which `filter` is true.
    ///
    /// Approximate, using the default `ef_search`. If fewer than `k` matches
    /// are reachable through the graph (a selective filter) the search falls
    /// back to an exact scan over the matching entries, so `k` results are
    /// returned whenever `k` matching entries exist. A query of the wrong
    /// dimension or with non-finite components returns no results. In a
    /// codes-only index scores and order come from the codes.
    pub fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        self.search_with_ef(query, k, self.params.ef_search, filter)
    }

    /// [`search`](Self::search) with an explicit candidate list size `ef`
    /// (raised to `k` if smaller); larger is slower and more accurate.
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let Some(q) = normalised(query) else {
            return Vec::new();
        };
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        // Nothing can return more than every live entry; clamping also keeps
        // heap capacities sane for absurd `k` or `ef`.
        let k = k.min(self.len());
        let ef = ef.max(k).min(self.keys.len());
        if self.prefer_exact(ef, filter) {
            return self.exact(&q, k, filter);
        }

        let probe = Probe::new(&q);
        let cur = self.descend(&probe, entry);
        let accept = |i: u32| {
            let i = i as usize;
            !self.deleted[i] && filter(self.keys[i])
        };
        let n = self.keys.len();
        // Past this many distance computations an exact scan is cheaper (the
        // selectivity estimate was wrong, or matches are far from the query).
        let budget = (n / 4).max(ef * 64);
        let mut visited = self.take_visited();
        let found = self.search_layer(&probe, &[cur], ef, 0, &mut visited, accept, budget);
        self.give_visited(visited);

        if found.len() < k {
            // The walk could not reach enough matches: iterate no further,
            // scan exactly (cheap when matches are rare, which is why we
            // got here).
            return self.exact(&q, k, filter);
        }
        // The walk ranked candidates by int8 similarity; rescore the `ef`
        // survivors exactly so scores and order match `search_exact`.
        let ids: Vec<u32> = found.iter().map(|c| c.idx).collect();
        let mut out = self.rescored(&q, &ids);
        out.truncate(k);
        out
    }

    /// Greedy descent from `entry` through every upper layer: where a layer-0
    /// walk for `probe` starts.
    fn descend(&self, probe: &Probe, entry: u32) -> Cand {
        let mut cur = Cand {
            sim: self.approx(probe, entry),
            idx: entry,
        };
        for level in (1..=self.max_level).rev() {
            cur = self.greedy(probe, cur, level);
        }
        cur
    }

    /// `ids` with their exact similarity to `q` (normalised), best first; from codes in a
    /// codes-only index.
    fn rescored(&self, q: &[f32], ids: &[u32]) -> Vec<(u64, f32)> {
        let probe = (!self.keep_vectors).then(|| Probe::new(q));
        let mut sims = Vec::with_capacity(ids.len());
        self.exact_into(q, probe.as_ref(), ids, &mut sims);
        let mut out: Vec<(u64, f32)> = ids
            .iter()
            .zip(&sims)
            .map(|(&i, &sim)| (self.keys[i as usize], sim))
            .collect();
        sort_results(&mut out);
        out
    }

    /// Exact brute-force top-`k`, same ordering and filtering contract as
    /// [`search`](Self::search) (in a codes-only index, a scan of the codes).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        match normalised(query) {
            Some(q) => self.exact(&q, k, filter),
            None => Vec::new(),
        }
    }

    // ----- internals -------------------------------------------------------

    #[inline]
    pub(crate) fn vec(&self, i: u32) -> &[f32] {
        let s = i as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    #[inline]
    fn code(&self, i: u32) -> &[i8] {
        self.codes.node(i as usize)
    }

    /// Approximate similarity of a probe to node `i` from int8 codes.
    #[inline]
    fn approx(&self, p: &Probe, i: u32) -> f32 {
        dot_i8(&p.codes, self.code(i)) as f32 * (p.scale * self.scales[i as usize])
    }

    /// How far [`Self::approx`] of `p` (whose vector has L1 norm `l1p`) to node `i` can be
    /// from the exact similarity (see [`HnswIndex::similarity_bound`]).
    #[inline]
    fn bound(&self, p: &Probe, l1p: f32, i: u32) -> f32 {
        let (sp, si) = (p.scale, self.scales[i as usize]);
        // Rounded up a little: the bound must hold in f32 arithmetic too.
        ((l1p * si + self.l1[i as usize] * sp) / 2.0 + self.dim as f32 * sp * si / 4.0) * 1.001
            + 1e-6
    }

    /// Approximate similarity between two nodes; same formula as
    /// [`Self::approx`] with `a`'s own probe.
    #[inline]
    fn approx_pair(&self, a: u32, b: u32) -> f32 {
        dot_i8(self.code(a), self.code(b)) as f32
            * (self.scales[a as usize] * self.scales[b as usize])
    }

    /// The probe for an existing node (used while linking it).
    fn node_probe(&self, i: u32) -> Probe {
        Probe {
            codes: self.code(i).to_vec(),
            scale: self.scales[i as usize],
        }
    }

    /// Max links on `level`.
    #[inline]
    pub(crate) fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.params.m
        }
    }

    #[inline]
    pub(crate) fn links(&self, i: u32, level: usize) -> &[u32] {
        let (slots, base) = self.slot_range(i, level);
        let count = (slots[base] as usize).min(self.max_links(level));
        &slots[base + 1..base + 1 + count]
    }

    #[inline]
    fn slot_range(&self, i: u32, level: usize) -> (&[u32], usize) {
        if level == 0 {
            (self.links0.node(i as usize), 0)
        } else {
            (&self.upper[i as usize], (level - 1) * (self.params.m + 1))
        }
    }

    pub(crate) fn set_links(
        &mut self,
        i: u32,
        level: usize,
        nbrs: impl ExactSizeIterator<Item = u32>,
    ) {
        let cap = self.max_links(level);
        let (slots, base) = if level == 0 {
            (self.links0.node_mut(i as usize), 0)
        } else {
            (
                self.upper[i as usize].as_mut_slice(),
                (level - 1) * (self.params.m + 1),
            )
        };
        let count = nbrs.len().min(cap);
        slots[base] = count as u32;
        for (slot, n) in slots[base + 1..base + 1 + cap].iter_mut().zip(nbrs) {
            *slot = n;
        }
    }

    fn clear_storage(&mut self) {
        self.vectors = Vec::new();
        self.l1 = Vec::new();
        self.codes = Arena::new(self.dim);
        self.scales = Vec::new();
        self.keys = Vec::new();
        self.levels = Vec::new();
        self.deleted = Vec::new();
        self.links0 = Arena::new(self.m0 + 1);
        self.upper = Vec::new();
        self.key_to_node = HashMap::new();
        self.entry = None;
        self.max_level = 0;
        self.layout = next_layout();
        self.visited_pool.get_mut().clear();
    }

    /// Deterministic level from `(seed, key)`: geometric with ratio `1/m`.
    fn level_for(&self, key: u64) -> usize {
        let h = splitmix64(self.params.seed ^ splitmix64(key));
        // Uniform in (0, 1): 53 random bits, offset by half a step.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let l = (-u.ln() * self.level_mult).floor();
        (l as usize).min(MAX_LEVEL)
    }

    fn take_visited(&self) -> VisitedSet {
        let mut v = self.visited_pool.lock().pop().unwrap_or_default();
        v.reset(self.keys.len());
        v
    }

    fn give_visited(&self, v: VisitedSet) {
        let mut pool = self.visited_pool.lock();
        if pool.len() < VISITED_POOL_MAX {
            pool.push(v);
        }
    }

    /// Decides whether an exact scan is cheaper than a filtered graph walk.
    ///
    /// Selectivity is estimated from a fixed pseudo-random sample of nodes;
    /// see [`EXACT_CROSSOVER`] for the rule.
    fn prefer_exact(&self, ef: usize, filter: &dyn Fn(u64) -> bool) -> bool {
        let n = self.keys.len();
        if n <= EXACT_MAX_NODES {
            return true;
        }
        let (mut seen, mut hit) = (0u64, 0u64);
        for j in 0..FILTER_SAMPLES {
            let i = sample_position(j, n);
            if !self.deleted[i] {
                seen += 1;
                if filter(self.keys[i]) {
                    hit += 1;
                }
            }
        }
        if seen == 0 {
            return true;
        }
        let est = hit as f64 / seen as f64 * self.len() as f64;
        est * est <= (EXACT_CROSSOVER * ef) as f64 * n as f64
    }

    /// The nodes of the `k` best live entries passing `filter`, best first.
    fn exact_nodes(&self, q: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<u32> {
        self.exact(q, k, filter)
            .into_iter()
            .filter_map(|(key, _)| self.key_to_node.get(&key).copied())
            .collect()
    }

    /// Brute-force top-`k` (scores from codes in a codes-only index).
    fn exact(&self, q: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        let probe = (!self.keep_vectors).then(|| Probe::new(q));
        // Min-heap of the best k so far (worst on top).
        let mut heap: BinaryHeap<Reverse<Ranked>> =
            BinaryHeap::with_capacity(k.min(self.len()) + 1);
        // Gather matches in blocks and score each block together: with a
        // selective filter the matching vectors are scattered, and batching
        // overlaps their cache misses.
        let mut ids: Vec<u32> = Vec::with_capacity(EXACT_BLOCK);
        let mut sims: Vec<f32> = Vec::with_capacity(EXACT_BLOCK);
        let mut i = 0usize;
        let n = self.keys.len();
        while i < n {
            ids.clear();
            while i < n && ids.len() < EXACT_BLOCK {
                if !self.deleted[i] && filter(self.keys[i]) {
                    ids.push(i as u32);
                }
                i += 1;
            }
            self.exact_into(q, probe.as_ref(), &ids, &mut sims);
            for (&id, &sim) in ids.iter().zip(&sims) {
                let r = Ranked {
                    sim,
                    key: self.keys[id as usize],
                };
                if heap.len() < k {
                    heap.push(Reverse(r));
                } else if heap.peek().is_some_and(|w| r > w.0) {
                    heap.pop();
                    heap.push(Reverse(r));
                }
            }
        }
        // Ascending Reverse = descending Ranked = best first.
        heap.into_sorted_vec()
            .into_iter()
            .map(|Reverse(r)| (r.key, r.sim))
            .collect()
    }

    /// Greedy descent on an upper layer: move to the most similar neighbour
    /// until none improves.
    fn greedy(&self, q: &Probe, mut cur: Cand, level: usize) -> Cand {
        let mut sims = Vec::new();
        loop {
            let links = self.links(cur.idx, level);
            self.sims_into(q, links, &mut sims);
            let mut improved = false;
            for (&nb, &sim) in links.iter().zip(&sims) {
                if sim > cur.sim {
                    cur = Cand { sim, idx: nb };
                    improved = true;
                }
            }
            if !improved {
                return cur;
            }
        }
    }

    /// Approximate similarities of `q` to each node in `ids`, into `out`
    /// (cleared first). All the code vectors are touched first so their
    /// cache misses overlap; see [`touch`].
    fn sims_into(&self, q: &Probe, ids: &[u32], out: &mut Vec<f32>) {
        code_sims(&q.codes, q.scale, &self.codes, &self.scales, ids, out);
    }

    /// Exact similarities of `q` to each node in `ids`, into `out` (cleared
    /// first), with the same cache-miss batching as [`Self::sims_into`]. A
    /// codes-only index passes `q`'s `probe` and scores from codes.
    fn exact_into(&self, q: &[f32], probe: Option<&Probe>, ids: &[u32], out: &mut Vec<f32>) {
        if let Some(probe) = probe {
            self.sims_into(probe, ids, out);
            return;
        }
        let mut t = 0u32;
        for &i in ids {
            t ^= touch(self.vec(i));
        }
        std::hint::black_box(t);
        out.clear();
        out.extend(ids.iter().map(|&i| dot(q, self.vec(i))));
    }

    /// Best-first search on one layer. Every reachable node routes the walk,
    /// but only nodes passing `accept` enter the result list, which keeps the
    /// `ef` best. Stops when the best unexpanded candidate is worse than the
    /// worst result (with a full result list), or after `budget` distance
    /// computations. Returns results best first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer<F: Fn(u32) -> bool>(
        &self,
        q: &Probe,
        entry: &[Cand],
        ef: usize,
        level: usize,
        visited: &mut VisitedSet,
        accept: F,
        budget: usize,
    ) -> Vec<Cand> {
        let mut cands: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef + 1);
        for &e in entry {
            if visited.insert(e.idx) {
                cands.push(e);
                if accept(e.idx) {
                    results.push(Reverse(e));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut computed = 0usize;
        let mut pending: Vec<u32> = Vec::with_capacity(self.m0);
        let mut sims: Vec<f32> = Vec::with_capacity(self.m0);
        while let Some(c) = cands.pop() {
            let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.sim);
            if results.len() >= ef && c.sim < worst {
                break;
            }
            pending.clear();
            pending.extend(
                self.links(c.idx, level)
                    .iter()
                    .copied()
                    .filter(|&nb| visited.insert(nb)),
            );
            self.sims_into(q, &pending, &mut sims);
            computed += pending.len();
            for (&nb, &sim) in pending.iter().zip(&sims) {
                let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.sim);
                if results.len() < ef || sim > worst {
                    let cand = Cand { sim, idx: nb };
                    cands.push(cand);
                    if accept(nb) {
                        results.push(Reverse(cand));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            if computed >= budget {
                break;
            }
        }
        results
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(c)| c)
            .collect()
    }

    /// HNSW neighbour-selection heuristic: walking candidates best first, keep
    /// one only if it is closer to the base than to every neighbour already
    /// kept. This spreads links across directions, which keeps clustered data
    /// navigable. `cands` must be sorted best first.
    fn select_neighbors(&self, cands: &[Cand], m: usize, out: &mut Vec<Cand>) {
        out.clear();
        for &c in cands {
            if out.len() >= m {
                break;
            }
            if out.iter().all(|s| self.approx_pair(c.idx, s.idx) <= c.sim) {
                out.push(c);
            }
        }
    }

    /// Links freshly appended node `idx` into every layer up to its level.
    fn link_new(&mut self, idx: u32) {
        let level = self.levels[idx as usize] as usize;
        let Some(ep) = self.entry else {
            self.entry = Some(idx);
            self.max_level = level;
            return;
        };
        let probe = self.node_probe(idx);
        let q = &probe;
        let mut cur = Cand {
            sim: self.approx(q, ep),
            idx: ep,
        };
        for lc in (level + 1..=self.max_level).rev() {
            cur = self.greedy(q, cur, lc);
        }
        let mut visited = self.visited_pool.get_mut().pop().unwrap_or_default();
        let mut entry = vec![cur];
        let mut live = Vec::new();
        let mut selected = Vec::with_capacity(self.params.m);
        for lc in (0..=level.min(self.max_level)).rev() {
            visited.reset(self.keys.len());
            let found = self.search_layer(
                q,
                &entry,
                self.params.ef_construction,
                lc,
                &mut visited,
                |_| true,
                usize::MAX,
            );
            self.link_level(idx, lc, &found, &mut live, &mut selected);
            entry = found;
        }
        self.visited_pool.get_mut().push(visited);
        if level > self.max_level {
            self.entry = Some(idx);
            self.max_level = level;
        }
    }

    /// Links `idx` on `level` to the best of `found` (sorted best first) and
    /// adds the back-links. `live` and `selected` are scratch space.
    fn link_level(
        &mut self,
        idx: u32,
        level: usize,
        found: &[Cand],
        live: &mut Vec<Cand>,
        selected: &mut Vec<Cand>,
    ) {
        // Tombstones are never useful as neighbours of a new node (least of
        // all the old version of a replaced key); fall back to them only if
        // nothing live is nearby, so the new node is not left unreachable.
        live.clear();
        live.extend(
            found
                .iter()
                .filter(|c| c.idx != idx && !self.deleted[c.idx as usize]),
        );
        if live.is_empty() {
            live.extend(found.iter().filter(|c| c.idx != idx));
        }
        self.select_neighbors(live, self.params.m, selected);
        self.set_links(idx, level, selected.iter().map(|c| c.idx));
        for s in selected.iter() {
            self.add_link(s.idx, idx, s.sim, level);
        }
    }

    /// Links layer-0 node `idx` from a fitting hint: the hint's neighbourhood
    /// plus every node added since it was made, scored directly.
    fn link_from_hint(&mut self, idx: u32, hint: &InsertHint) {
        let mut found: Vec<Cand> = hint.near.clone();
        let newer: Vec<u32> = (hint.nodes as u32..idx).collect();
        let probe = self.node_probe(idx);
        let mut sims = Vec::with_capacity(newer.len());
        self.sims_into(&probe, &newer, &mut sims);
        found.extend(
            newer
                .iter()
                .zip(&sims)
                .map(|(&idx, &sim)| Cand { sim, idx }),
        );
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.truncate(self.params.ef_construction);
        let mut live = Vec::with_capacity(found.len());
        let mut selected = Vec::with_capacity(self.params.m);
        self.link_level(idx, 0, &found, &mut live, &mut selected);
    }

    /// Adds the back-link `target -> new` on `level`, re-pruning `target`'s
    /// list with the heuristic when it is full.
    fn add_link(&mut self, target: u32, new: u32, sim: f32, level: usize) {
        let cap = self.max_links(level);
        let current = self.links(target, level);
        if current.len() < cap {
            let (slots, base) = if level == 0 {
                (self.links0.node_mut(target as usize), 0)
            } else {
                (
                    self.upper[target as usize].as_mut_slice(),
                    (level - 1) * (self.params.m + 1),
                )
            };
            let count = slots[base] as usize;
            slots[base + 1 + count] = new;
            slots[base] = (count + 1) as u32;
            return;
        }
        let tv = self.node_probe(target);
        // Tombstoned neighbours are dropped here, so removed nodes gradually
        // fall out of the graph as their neighbourhoods are updated.
        let live: Vec<u32> = current
            .iter()
            .copied()
            .filter(|&n| !self.deleted[n as usize])
            .collect();
        let mut sims = Vec::with_capacity(live.len());
        self.sims_into(&tv, &live, &mut sims);
        let mut cands: Vec<Cand> = live
            .iter()
            .zip(&sims)
            .map(|(&idx, &sim)| Cand { sim, idx })
            .collect();
        cands.push(Cand { sim, idx: new });
        cands.sort_unstable_by(|a, b| b.cmp(a));
        let mut selected = Vec::with_capacity(cap);
        self.select_neighbors(&cands, cap, &mut selected);
        self.set_links(target, level, selected.iter().map(|c| c.idx));
    }
}

/// Entries per candidate of [`HnswIndex::search_breadth`]. `ann_bench --codes-only 1` (384
/// dimensions, clustered data, shortlists rescored exactly) kept recall@10 at 0.999 with 64
/// candidates at 100,000 vectors and 0.996 with 100 at 300,000, but gave 0.951 with 64, 0.971
/// with 128 and 0.986 with 256 at 1,000,000: 256 candidates there.
pub const VECTORS_PER_CANDIDATE: usize = 3_900;

/// The fewest candidates [`HnswIndex::rescore_depth`] keeps. `ann_bench --n 1000000
/// --codes-only 1 --ef-search 256 --rescore 256,192,160,128,110` gave recall@10 0.9817 for
/// each: the exact ten best were always among the 110 best by code similarity, and rescoring
/// fewer of the 256 read fewer rows.
pub const RESCORED_AT_LEAST: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_index_searches_wider() {
        let params = HnswParams {
            ef_search: 2,
            ..HnswParams::default()
        };
        let mut idx = HnswIndex::new(3, params);
        for k in 0..(3 * VECTORS_PER_CANDIDATE) as u64 {
            let f = k as f32 * 0.001;
            idx.insert(k, &unit(&[f.sin(), f.cos(), 0.5]))
                .expect("insert");
            if k as usize + 1 == VECTORS_PER_CANDIDATE {
                assert_eq!(idx.search_breadth(1), 2, "the configured breadth");
                assert_eq!(idx.search_breadth(5), 5, "at least the limit");
            }
        }
        assert_eq!(
            idx.search_breadth(1),
            3,
            "one candidate per VECTORS_PER_CANDIDATE"
        );
    }

    #[test]
    fn only_large_shortlists_are_rescored_in_part() {
        let params = HnswParams {
            ef_search: 300,
            ..HnswParams::default()
        };
        let mut idx = HnswIndex::new(3, params);
        idx.insert(1, &unit(&[1.0, 0.0, 0.0])).expect("insert");
        assert_eq!(idx.rescore_depth(10), RESCORED_AT_LEAST);
        assert_eq!(idx.rescore_depth(200), 250, "a quarter past the limit");
        assert_eq!(idx.rescore_depth(280), 300, "never past the breadth");
        let narrow = HnswIndex::new(
            3,
            HnswParams {
                ef_search: 64,
                ..HnswParams::default()
            },
        );
        assert_eq!(narrow.rescore_depth(100), 100, "the whole breadth");
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn levels_are_deterministic_and_geometric() {
        let idx = HnswIndex::new(4, HnswParams::default());
        let levels: Vec<usize> = (0..20_000u64).map(|k| idx.level_for(k)).collect();
        let again: Vec<usize> = (0..20_000u64).map(|k| idx.level_for(k)).collect();
        assert_eq!(levels, again);
        let above0 = levels.iter().filter(|&&l| l > 0).count() as f64 / 20_000.0;
        // Expected 1/16 = 0.0625.
        assert!((0.04..0.09).contains(&above0), "{above0}");
    }

    #[test]
    fn small_graph_links_are_consistent() {
        let mut idx = HnswIndex::new(3, HnswParams::default());
        for k in 0..300u64 {
            let f = k as f32;
            idx.insert(k, &unit(&[f.sin(), f.cos(), 0.3]))
                .expect("insert");
        }
        for i in 0..idx.keys.len() as u32 {
            for l in 0..=idx.levels[i as usize] as usize {
                let links = idx.links(i, l);
                assert!(links.len() <= idx.max_links(l));
                for &n in links {
                    assert_ne!(n, i);
                    assert!(idx.levels[n as usize] as usize >= l);
                }
            }
        }
    }

    #[test]
    fn graph_walk_falls_back_to_exact_scan() {
        let mut idx = HnswIndex::new(3, HnswParams::default());
        for k in 0..3000u64 {
            let f = k as f32 * 0.01;
            idx.insert(k, &unit(&[f.sin(), f.cos(), (f * 0.3).sin()]))
                .expect("insert");
        }
        // Accept exactly the sampled nodes: the estimate says "everything
        // matches", so the graph is walked, but it can supply at most ~256
        // matches and k is larger: the exact scan must take over.
        let sampled: std::collections::HashSet<u64> = (0..FILTER_SAMPLES)
            .map(|j| sample_position(j, idx.keys.len()) as u64)
            .collect();
        let filter = |k: u64| sampled.contains(&k);
        assert!(!idx.prefer_exact(64, &filter));
        let q = unit(&[0.2, 0.9, 0.1]);
        let got = idx.search(&q, 300, &filter);
        assert_eq!(got.len(), sampled.len());
        assert_eq!(got, idx.search_exact(&q, 300, &filter));
    }

    #[test]
    fn remove_everything_then_reuse() {
        let mut idx = HnswIndex::new(2, HnswParams::default());
        idx.insert(1, &[1.0, 0.0]).expect("insert");
        idx.insert(2, &[0.0, 1.0]).expect("insert");
        assert!(idx.remove(1));
        assert!(idx.remove(2));
        assert_eq!(idx.tombstones(), 0, "storage reset once nothing is live");
        idx.insert(2, &[0.0, 1.0]).expect("insert");
        assert_eq!(idx.search(&[0.0, 1.0], 5, &|_| true), vec![(2, 1.0)]);
    }

    #[test]
    fn zero_dimension_is_degenerate_but_safe() {
        let mut idx = HnswIndex::new(0, HnswParams::default());
        idx.insert(3, &[]).expect("insert");
        idx.insert(1, &[]).expect("insert");
        assert_eq!(idx.search(&[], 5, &|_| true), vec![(1, 0.0), (3, 0.0)]);
    }
}
