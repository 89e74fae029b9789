//! `astrocyte-ann`: an in-memory HNSW (hierarchical navigable small world)
//! index for approximate nearest-neighbour search over f32 vectors by cosine
//! similarity.
//!
//! The SQLite store uses it to answer "top-k most similar memories in a bank"
//! and near-duplicate checks (`k = 1`) without scanning every row. SQLite stays
//! the source of truth: this index is derived data that can always be rebuilt
//! from the rows, or loaded from a snapshot written by
//! [`HnswIndex::write_to`].
//!
//! What it does:
//! - insert / replace / remove by `u64` key, top-k search with an arbitrary
//!   key filter (falling back to an exact scan when the filter is so
//!   selective that the graph cannot supply `k` matches);
//! - deterministic construction: node levels come from a hash of
//!   `(seed, key)`, so the same sequence of operations always yields the same
//!   graph and the same answers;
//! - compact, checksummed binary snapshots.
//!
//! What it deliberately does not do:
//! - no persistence of its own beyond explicit snapshots (no WAL, no
//!   background saving, no files it opens itself);
//! - no SQL, no knowledge of banks, tenants or memory rows: callers map their
//!   ids to `u64` keys and express scoping as a filter;
//! - no internal locking for writers: mutation takes `&mut self`, so callers
//!   wrap it in a `RwLock`; searches take `&self` and may run concurrently;
//! - no distance metrics other than cosine;
//! - no parallel build and no in-place graph repair on removal: removed
//!   entries become tombstones until [`HnswIndex::compact`] rebuilds.
//!
//! Vectors are expected to be L2-normalised; any that are not are normalised
//! on the way in (queries included), so scores are always cosine similarity.
//! Internally the graph walk compares int8-quantised copies of the vectors
//! (a quarter of the memory traffic, which dominates at 100k+ vectors); the
//! candidates it finds are then rescored with the f32 vectors, so returned
//! scores are exact and identical to [`HnswIndex::search_exact`]'s.
//!
//! An index made with [`HnswIndex::new_codes_only`] keeps the int8 codes and
//! no f32 vectors, a quarter of the memory: its scores come from the codes,
//! and a caller that stores the vectors elsewhere rescores a shortlist
//! exactly (asking for `ef` results rather than `k`), as the SQLite store
//! does. [`HnswIndex::similarity_bound`] bounds the error of such a score.
//!
//! ```
//! use astrocyte_ann::{HnswIndex, HnswParams};
//!
//! let mut index = HnswIndex::new(3, HnswParams::default());
//! index.insert(1, &[1.0, 0.0, 0.0])?;
//! index.insert(2, &[0.0, 1.0, 0.0])?;
//! index.insert(3, &[0.7, 0.7, 0.0])?;
//!
//! let hits = index.search(&[1.0, 0.1, 0.0], 2, &|key| key != 3);
//! assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 2]);
//!
//! let mut snapshot = Vec::new();
//! index.write_to(&mut snapshot)?;
//! let restored = HnswIndex::read_from(&mut snapshot.as_slice())?;
//! assert_eq!(restored.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod arena;
mod distance;
mod index;
mod snapshot;
mod visited;

pub use index::{HnswIndex, InsertHint};

/// Construction and search parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on the upper layers; layer 0 allows `2 * m`.
    /// Values below 2 are raised to 2.
    pub m: usize,
    /// Candidate list size while inserting. Larger builds a better graph,
    /// more slowly. Raised to at least `m`.
    pub ef_construction: usize,
    /// Default candidate list size while searching (raised to `k` if smaller).
    pub ef_search: usize,
    /// Seed mixed into every node's level; part of what makes builds
    /// reproducible.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 80,
            ef_search: 64,
            seed: 0x5EED_A57C,
        }
    }
}

/// Errors returned by the index.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum AnnError {
    /// The vector's length does not match the index dimension.
    #[error("vector dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The index dimension.
        expected: usize,
        /// The length of the vector that was passed.
        got: usize,
    },
    /// The vector contains NaN or an infinity.
    #[error("vector contains a non-finite component")]
    NonFinite,
    /// The index already holds the maximum number of nodes (`u32::MAX - 1`,
    /// counting tombstones; [`HnswIndex::compact`] reclaims those).
    #[error("index is full")]
    CapacityExceeded,
    /// A snapshot failed validation (bad magic, version, checksum, truncated
    /// or structurally inconsistent). Callers should rebuild from the source
    /// of truth.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// An I/O error while reading a snapshot.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
