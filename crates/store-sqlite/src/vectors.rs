//! Per-bank HNSW indexes: loading one from its snapshot plus the rows written after it (or
//! rebuilding it from the rows), keeping it in step with inserts and forgets, and writing
//! snapshots back. The index is derived data: it only ever holds rows that are visible now,
//! and every hit is re-checked against SQLite before it is returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use astrocyte_ann::{HnswIndex, HnswParams, InsertHint};
use astrocyte_core::BankId;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::StoreResult;
use crate::filter::json_list;
use crate::rows::decode_vector;

/// The index slot of one bank; `index` is `None` until the bank is first searched.
#[derive(Default)]
pub(crate) struct BankSlot {
    pub(crate) index: RwLock<Option<BankIndex>>,
    /// The bank's keyword index, `None` until its first unfiltered keyword search.
    pub(crate) keyword: RwLock<Option<crate::keyword::KeywordIndex>>,
    /// Bumped (under the writer lock) by every purge: a snapshot captured before a purge may
    /// hold the purged vectors and must not be written after it.
    pub(crate) purge_generation: AtomicU64,
    /// Whether a background snapshot of this bank's vector index is queued or running.
    pub(crate) snapshot_scheduled: AtomicBool,
    /// Whether a background snapshot of this bank's keyword index is queued or running.
    pub(crate) keyword_snapshot_scheduled: AtomicBool,
    /// Where the near-duplicate check found each new vector's neighbourhood, for the insert.
    pub(crate) hints: Mutex<HintCache>,
}

/// Insert hints left by a retain's near-duplicate check for the insert that follows it.
///
/// The check walks the graph to each new vector's neighbourhood, which is the walk inserting
/// that vector would repeat; keeping the result for the insert halves the graph work of a
/// retain at 100k memories. A hint is looked up by the exact vector, so it can only ever help
/// the vector it was made for, and a hint that went stale is ignored by the index.
#[derive(Default)]
pub(crate) struct HintCache {
    by_vector: HashMap<Box<[u32]>, InsertHint>,
}

impl HintCache {
    /// Hints kept per bank; past this the cache starts over, which bounds its memory when one
    /// retain checks more vectors than this.
    const MAX: usize = 4096;

    fn key(vector: &[f32]) -> Box<[u32]> {
        vector.iter().map(|x| x.to_bits()).collect()
    }

    pub(crate) fn put(&mut self, vector: &[f32], hint: InsertHint) {
        if self.by_vector.len() >= Self::MAX {
            self.by_vector.clear();
        }
        self.by_vector.insert(Self::key(vector), hint);
    }

    /// The hints for these rows' vectors. The rest are dropped, so hints of checks whose insert
    /// never comes (near-duplicates) do not pile up; a retain racing another on the same bank
    /// may lose its hints and walk the graph itself, which costs time, not correctness.
    pub(crate) fn take_all<'a>(
        &mut self,
        vectors: impl ExactSizeIterator<Item = &'a [f32]>,
    ) -> Vec<Option<InsertHint>> {
        if self.by_vector.is_empty() {
            return vec![None; vectors.len()];
        }
        let hints = vectors
            .map(|vector| self.by_vector.remove(&*Self::key(vector)))
            .collect();
        self.by_vector.clear();
        hints
    }
}

/// Which rows of a bank store each vector hash (`embedding_hash`), forgotten rows included:
/// the near-duplicate check's way to exact twins, which a graph walk can miss. A hash with no
/// rows (nearly every new vector) costs one map lookup; the rest are confirmed byte for byte
/// by row id. About 20 bytes per row in memory.
///
/// An SQL index on `(bank_id, embedding_hash)` answered this before. Each insert landed on a
/// random page of it, and at 1M rows that was a third of a retain's commit; the map is loaded
/// from `memories_bank_rowid_hash` instead, whose new entries land at its end.
///
/// Until it is loaded it knows nothing (see [`Twins::rowids`]): a large bank's map loads after
/// its index (see [`TWINS_LATER_FROM`]), off the path of the first search.
#[derive(Default)]
pub(crate) struct Twins {
    /// Hash to its only row, or to [`SHARED`] when several rows store it.
    first: HashMap<i64, i64>,
    /// The rows of the hashes several rows store.
    shared: HashMap<i64, Vec<i64>>,
    loaded: bool,
}

/// Marks a hash stored by several rows; row ids start at 1.
const SHARED: i64 = 0;

/// Indexes of at least this many vectors get their twin map after the load, in the
/// background: at 1M rows reading the hashes is a scan of 1M index entries and a million map
/// inserts.
#[cfg(not(test))]
pub(crate) const TWINS_LATER_FROM: usize = 10_000;
/// Small in unit tests, so small banks load their map in the background.
#[cfg(test)]
pub(crate) const TWINS_LATER_FROM: usize = 2;

impl Twins {
    /// Reads every row of `bank` (an index-only scan of `memories_bank_rowid_hash`). The
    /// caller must keep the rows from changing until the map is in place (hold the writer).
    pub(crate) fn load(conn: &Connection, bank: &BankId) -> StoreResult<Self> {
        let mut statement = conn.prepare_cached(
            "SELECT rowid, embedding_hash FROM memories INDEXED BY memories_bank_rowid_hash
             WHERE bank_id = ?1",
        )?;
        let mut twins = Twins {
            loaded: true,
            ..Twins::default()
        };
        let mut rows = statement.query([bank.as_str()])?;
        while let Some(row) = rows.next()? {
            twins.add(row.get(1)?, row.get(0)?);
        }
        Ok(twins)
    }

    /// Rebuilds the map from the table, after changes that did not say which hashes went.
    pub(crate) fn reload(&mut self, conn: &Connection, bank: &BankId) -> StoreResult<()> {
        *self = Self::load(conn, bank)?;
        Ok(())
    }

    /// Whether the map is loaded (before, it knows no rows).
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Records a new row's hash. Before the load this is left to the load, which reads the
    /// committed rows under the writer that every change holds.
    pub(crate) fn add(&mut self, hash: i64, rowid: i64) {
        if !self.loaded {
            return;
        }
        let first = self.first.entry(hash).or_insert(rowid);
        if *first == rowid {
            return;
        }
        if *first != SHARED {
            let only = std::mem::replace(first, SHARED);
            self.shared.insert(hash, vec![only]);
        }
        self.shared.entry(hash).or_default().push(rowid);
    }

    pub(crate) fn remove(&mut self, hash: i64, rowid: i64) {
        match self.first.get(&hash) {
            Some(&SHARED) => {
                let rows = self.shared.entry(hash).or_default();
                rows.retain(|row| *row != rowid);
                if let [only] = rows.as_slice() {
                    self.first.insert(hash, *only);
                    self.shared.remove(&hash);
                }
            }
            Some(&only) if only == rowid => {
                self.first.remove(&hash);
            }
            _ => {}
        }
    }

    /// The rows that store a vector with this hash, or `None` before the load.
    pub(crate) fn rowids(&self, hash: i64) -> Option<&[i64]> {
        if !self.loaded {
            return None;
        }
        Some(match self.first.get(&hash) {
            None => &[],
            Some(&SHARED) => self.shared.get(&hash).map_or(&[], Vec::as_slice),
            Some(only) => std::slice::from_ref(only),
        })
    }
}

/// A loaded index and what is needed to snapshot it.
pub(crate) struct BankIndex {
    pub(crate) hnsw: HnswIndex,
    /// Invariant: once loaded, holds the vector hash of every row of the bank (see [`Twins`]).
    pub(crate) twins: Twins,
    /// Invariant: every visible row of the bank with a row id up to this one is in `hnsw`
    /// (rows forgotten since may still be, until their removal is applied).
    pub(crate) max_rowid: i64,
    /// Mutations since the last snapshot.
    pub(crate) unsaved: u64,
    /// Bumped by every mutation; tells a snapshot whether its compacted copy is still current.
    pub(crate) version: u64,
    /// Whether removed nodes of purged rows still sit in the graph as tombstones (they hold
    /// the vectors, so a snapshot must compact them away first).
    pub(crate) purged_tombstones: bool,
    /// Whether the database holds no usable snapshot of this index (never written, unreadable,
    /// or deleted by a purge): the next open would rebuild it from every row.
    pub(crate) snapshot_missing: bool,
}

/// Rows whose re-indexing after a restart costs about as much as writing one snapshot of this
/// many vectors: inserting into the graph is some 40 times dearer than serialising a node.
const REINDEX_COST_RATIO: u64 = 40;

/// A snapshot rewrites the whole index. After a fixed number of changes alone, the snapshot
/// work per retained memory would grow with the bank: at 100k memories (128 dimensions) one
/// snapshot is 48 MB and held the writer for 300 ms every 20,000 retains, 14% of the retain
/// time. Also waiting for changes worth a quarter of the index keeps that work constant per
/// change; a crash then re-indexes at most a quarter of the bank.
const SNAPSHOT_SHARE: u64 = 4;

/// An index this large is worth snapshotting in the background as soon as it has none.
const SNAPSHOT_WHEN_MISSING_FROM: usize = 1_000;

impl BankIndex {
    fn empty(dimension: usize, params: &HnswParams) -> Self {
        BankIndex {
            // Codes only: the exact vectors are in the rows, read back to rescore shortlists,
            // which keeps a bank of 1M vectors of 384 dimensions at 0.5 GB rather than 2 GB.
            hnsw: HnswIndex::new_codes_only(dimension, params.clone()),
            twins: Twins::default(),
            max_rowid: 0,
            unsaved: 0,
            version: 0,
            purged_tombstones: false,
            snapshot_missing: true,
        }
    }

    /// Whether a background snapshot should be written after a write: enough changes piled up,
    /// `snapshot_every` and at least a [`SNAPSHOT_SHARE`] of the index. A purge deleting the
    /// stored snapshot does not trigger one by itself, so a burst of purges (an import
    /// overwriting a bank) does not compact the graph again and again.
    pub(crate) fn wants_background_snapshot(&self, snapshot_every: u64) -> bool {
        let share = self.hnsw.len() as u64 / SNAPSHOT_SHARE;
        self.unsaved >= snapshot_every.max(share).max(1)
    }

    /// Whether a freshly loaded index should be snapshotted in the background: it had to be
    /// rebuilt from the rows (no usable snapshot) and is large enough for that to be slow next
    /// time, or it caught up with many rows.
    pub(crate) fn wants_snapshot_after_load(&self, snapshot_every: u64) -> bool {
        self.wants_background_snapshot(snapshot_every)
            || (self.snapshot_missing && self.hnsw.len() >= SNAPSHOT_WHEN_MISSING_FROM)
    }

    /// Whether a snapshot should be written now: there are unsaved changes, and with
    /// `on_close` they are worth saving.
    pub(crate) fn wants_saving(&self, on_close: bool) -> bool {
        self.unsaved > 0 && (!on_close || self.worth_saving_on_close())
    }

    /// Whether a snapshot must be written from a compacted copy: purged rows' vectors sit in
    /// tombstones (they must not be persisted), or tombstones are a fifth of the graph.
    pub(crate) fn needs_compaction(&self) -> bool {
        self.purged_tombstones || self.hnsw.tombstones() > self.hnsw.len() / 4
    }

    /// Whether writing a snapshot on close pays for itself: it is missing, or re-indexing the
    /// unsaved rows at the next open would cost more than writing it now.
    pub(crate) fn worth_saving_on_close(&self) -> bool {
        self.unsaved > 0
            && (self.snapshot_missing
                || self.unsaved.saturating_mul(REINDEX_COST_RATIO) >= self.hnsw.len() as u64)
    }

    /// Adds a row's vector unless it is already there; wrong-sized vectors are skipped (the
    /// row stays reachable by keyword and recency) rather than failing a committed write.
    pub(crate) fn add(&mut self, rowid: i64, vector: &[f32]) -> StoreResult<()> {
        self.add_hinted(rowid, vector, None)
    }

    /// [`BankIndex::add`] with the hint the near-duplicate check left for this vector.
    pub(crate) fn add_hinted(
        &mut self,
        rowid: i64,
        vector: &[f32],
        hint: Option<&InsertHint>,
    ) -> StoreResult<()> {
        self.max_rowid = self.max_rowid.max(rowid);
        let key = rowid as u64;
        if self.hnsw.contains(key) {
            return Ok(());
        }
        if vector.len() != self.hnsw.dimension() {
            tracing::warn!(
                rowid,
                dimension = vector.len(),
                expected = self.hnsw.dimension(),
                "vector of the wrong dimension left out of the index"
            );
            return Ok(());
        }
        self.hnsw.insert_hinted(key, vector, hint)?;
        self.unsaved += 1;
        self.version += 1;
        Ok(())
    }

    /// Replaces a row's vector (re-embedding). The old node's tombstone holds the old vector,
    /// so it is marked like a purge: compacted away before the next snapshot. A vector the
    /// index refuses is logged and left out, as in [`BankIndex::add`]: the row is committed.
    pub(crate) fn replace(&mut self, rowid: i64, vector: &[f32]) {
        self.remove(rowid, true);
        if let Err(error) = self.add(rowid, vector) {
            tracing::warn!(rowid, %error, "replaced vector left out of the index");
        }
    }

    /// Removes a row's vector; `purged` marks the tombstone as one that must not be persisted.
    pub(crate) fn remove(&mut self, rowid: i64, purged: bool) {
        if self.hnsw.remove(rowid as u64) {
            self.unsaved += 1;
            self.version += 1;
            self.purged_tombstones |= purged;
        }
    }
}

/// Builds a bank's index from its snapshot and rows, inside one read transaction so the rows
/// are a consistent picture. `dimension` is the tenant's embedding dimension (or, when none is
/// recorded, a guess from the rows or the caller's vector).
pub(crate) fn load_index(
    conn: &Connection,
    bank: &BankId,
    dimension: usize,
    params: &HnswParams,
) -> StoreResult<BankIndex> {
    let started = std::time::Instant::now();
    let tx = conn.unchecked_transaction()?;
    let snapshot: Option<(i64, i64, Vec<u8>)> = tx
        .query_row(
            "SELECT max_rowid, dimension, data FROM vector_index WHERE bank_id = ?1",
            [bank.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let mut index = match snapshot {
        Some((max_rowid, stored_dimension, data)) if stored_dimension as usize == dimension => {
            let mut pieces = SnapshotPieces {
                conn: &tx,
                bank,
                first: data,
                at: 0,
                chunk: None,
                next_seq: 1,
            };
            match HnswIndex::read_from(&mut pieces) {
                Ok(mut hnsw) if hnsw.dimension() == dimension => BankIndex {
                    hnsw: {
                        // A snapshot written before the index kept codes only.
                        hnsw.drop_vectors();
                        hnsw
                    },
                    twins: Twins::default(),
                    max_rowid,
                    unsaved: 0,
                    version: 0,
                    purged_tombstones: false,
                    snapshot_missing: false,
                },
                Ok(_) | Err(_) => {
                    tracing::warn!(bank = %bank, "vector index snapshot unusable; rebuilding from rows");
                    BankIndex::empty(dimension, params)
                }
            }
        }
        Some(_) => {
            tracing::warn!(bank = %bank, "vector index snapshot has another dimension; rebuilding");
            BankIndex::empty(dimension, params)
        }
        None => BankIndex::empty(dimension, params),
    };
    let read_ms = started.elapsed().as_millis() as u64;
    if index.max_rowid > 0 {
        reconcile(&tx, bank, &mut index)?;
    }
    let mut statement = tx.prepare(
        "SELECT rowid, embedding FROM memories
         WHERE bank_id = ?1 AND forgotten_at IS NULL AND rowid > ?2 ORDER BY rowid",
    )?;
    let mut rows = statement.query(params![bank.as_str(), index.max_rowid])?;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let blob: Vec<u8> = row.get(1)?;
        index.add(rowid, &decode_vector(&blob)?)?;
    }
    drop(rows);
    drop(statement);
    let newest: i64 = tx.query_row(
        "SELECT COALESCE(MAX(rowid), 0) FROM memories WHERE bank_id = ?1",
        [bank.as_str()],
        |row| row.get(0),
    )?;
    index.max_rowid = index.max_rowid.max(newest);
    let rows_ms = started.elapsed().as_millis() as u64 - read_ms;
    if index.hnsw.len() < TWINS_LATER_FROM {
        index.twins = Twins::load(&tx, bank)?;
    }
    tracing::debug!(bank = %bank, vectors = index.hnsw.len(), caught_up = index.unsaved, read_ms, rows_ms, ms = started.elapsed().as_millis() as u64, "vector index loaded");
    Ok(index)
}

/// A stored snapshot as one stream: the first piece (in `vector_index`), then the pieces of
/// `vector_index_chunks` in order. Chunks are read incrementally: SQLite copies their pages
/// straight into the caller's buffer, with no copy of the whole 32 MiB piece in between
/// (freshly mapped and faulted in for each piece, 490 MB at 1M vectors).
struct SnapshotPieces<'a> {
    conn: &'a Connection,
    bank: &'a BankId,
    first: Vec<u8>,
    at: usize,
    chunk: Option<rusqlite::blob::Blob<'a>>,
    next_seq: i64,
}

impl std::io::Read for SnapshotPieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at < self.first.len() {
            let n = buf.len().min(self.first.len() - self.at);
            buf[..n].copy_from_slice(&self.first[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        loop {
            if let Some(chunk) = self.chunk.as_mut() {
                let n = chunk.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.chunk = None;
            }
            let rowid: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT rowid FROM vector_index_chunks WHERE bank_id = ?1 AND seq = ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![self.bank.as_str(), self.next_seq], |row| row.get(0))
                        .optional()
                })
                .map_err(std::io::Error::other)?;
            let Some(rowid) = rowid else {
                return Ok(0);
            };
            let chunk = self
                .conn
                .blob_open(
                    rusqlite::DatabaseName::Main,
                    "vector_index_chunks",
                    "data",
                    rowid,
                    true,
                )
                .map_err(std::io::Error::other)?;
            self.chunk = Some(chunk);
            self.next_seq += 1;
        }
    }
}

/// Brings a snapshot's rows (those up to `max_rowid`) in line with the table: drops vectors
/// of rows forgotten or purged since it was written, adds visible rows it lacks.
///
/// The visible row ids (an index-only scan, in row-id order) are merged with the index's keys
/// sorted: no hashing, which at 1M rows took a tenth of the load in map lookups.
fn reconcile(conn: &Connection, bank: &BankId, index: &mut BankIndex) -> StoreResult<()> {
    // Node order is nearly row-id order, which the sort runs through quickly.
    let mut live: Vec<u64> = index.hnsw.keys().collect();
    live.sort_unstable();
    let mut statement = conn.prepare(
        "SELECT rowid FROM memories INDEXED BY memories_bank_forgotten
         WHERE bank_id = ?1 AND forgotten_at IS NULL AND rowid <= ?2 ORDER BY rowid",
    )?;
    let mut stale: Vec<u64> = Vec::new();
    let mut missing: Vec<i64> = Vec::new();
    let mut next = live.iter().copied().peekable();
    let mut rows = statement.query(params![bank.as_str(), index.max_rowid])?;
    while let Some(row) = rows.next()? {
        let rowid = row.get::<_, i64>(0)? as u64;
        while let Some(key) = next.next_if(|key| *key < rowid) {
            stale.push(key);
        }
        if next.next_if_eq(&rowid).is_none() {
            missing.push(rowid as i64);
        }
    }
    drop(rows);
    stale.extend(next);
    for key in stale {
        index.remove(key as i64, false);
    }
    if !missing.is_empty() {
        let mut statement = conn.prepare(
            "SELECT rowid, embedding FROM memories WHERE rowid IN (SELECT value FROM json_each(?1)) ORDER BY rowid",
        )?;
        let mut rows = statement.query([json_list(&missing)])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let blob: Vec<u8> = row.get(1)?;
            index.add(rowid, &decode_vector(&blob)?)?;
        }
    }
    Ok(())
}

/// A snapshot ready to be stored, captured from a live index.
pub(crate) struct CapturedSnapshot {
    pub(crate) data: Vec<u8>,
    pub(crate) max_rowid: i64,
    pub(crate) dimension: usize,
    pub(crate) unsaved: u64,
    pub(crate) version: u64,
    pub(crate) purge_generation: u64,
    /// The compacted index the data was written from, to replace the live one if nothing
    /// changed meanwhile.
    pub(crate) compacted: Option<HnswIndex>,
}

/// Serialises a bank's index if it has unsaved changes (and, with `on_close`, only if that pays
/// for itself). Compaction (dropping tombstones, and with them the vectors of purged rows) runs
/// on a copy, outside every lock.
pub(crate) fn capture_snapshot(
    slot: &BankSlot,
    on_close: bool,
) -> StoreResult<Option<CapturedSnapshot>> {
    let purge_generation = slot.purge_generation.load(Ordering::SeqCst);
    let (mut data, max_rowid, dimension, unsaved, version, compact) = {
        let guard = slot.index.read();
        let Some(index) = guard.as_ref() else {
            return Ok(None);
        };
        if !index.wants_saving(on_close) {
            return Ok(None);
        }
        let mut data = Vec::new();
        index.hnsw.write_to(&mut data)?;
        let compact = index.needs_compaction();
        (
            data,
            index.max_rowid,
            index.hnsw.dimension(),
            index.unsaved,
            index.version,
            compact,
        )
    };
    let mut compacted = None;
    if compact {
        let mut copy = HnswIndex::read_from(&mut data.as_slice())?;
        copy.compact();
        data.clear();
        copy.write_to(&mut data)?;
        compacted = Some(copy);
    }
    Ok(Some(CapturedSnapshot {
        data,
        max_rowid,
        dimension,
        unsaved,
        version,
        purge_generation,
        compacted,
    }))
}

/// Records that `snapshot` was stored: its mutations are saved, and its compacted copy replaces
/// the live index when no mutation happened since it was captured.
pub(crate) fn snapshot_stored(slot: &BankSlot, snapshot: CapturedSnapshot) {
    let mut guard = slot.index.write();
    if let Some(index) = guard.as_mut() {
        index.unsaved = index.unsaved.saturating_sub(snapshot.unsaved);
        index.snapshot_missing = false;
        if let Some(compacted) = snapshot.compacted {
            if index.version == snapshot.version {
                index.hnsw = compacted;
                index.purged_tombstones = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(vectors: usize) -> BankIndex {
        let mut index = BankIndex::empty(4, &HnswParams::default());
        for rowid in 1..=vectors as i64 {
            let angle = rowid as f32;
            index
                .add(rowid, &[angle.sin(), angle.cos(), 1.0, 0.5])
                .expect("valid vector");
        }
        index
    }

    #[test]
    fn snapshots_are_written_when_they_pay_for_themselves() {
        let mut index = index_with(1_000);
        assert!(index.snapshot_missing && index.worth_saving_on_close());
        assert!(
            index.wants_snapshot_after_load(u64::MAX),
            "a large index without snapshot"
        );
        assert!(
            !index.wants_background_snapshot(u64::MAX),
            "writes alone wait for the count"
        );
        index.snapshot_missing = false;
        index.unsaved = 10;
        assert!(
            !index.worth_saving_on_close(),
            "10 rows re-index faster than 1,000 serialise"
        );
        index.unsaved = 30;
        assert!(index.worth_saving_on_close());
        assert!(
            !index.wants_background_snapshot(30),
            "30 changes are not a quarter of 1,000 vectors"
        );
        index.unsaved = 250;
        assert!(!index.wants_background_snapshot(251));
        assert!(index.wants_background_snapshot(250));
        assert!(index.wants_background_snapshot(10));
        index.unsaved = 0;
        assert!(!index.worth_saving_on_close(), "nothing to save");
    }

    #[test]
    fn the_twin_map_follows_rows_sharing_a_hash() {
        let mut twins = Twins::default();
        twins.add(7, 1);
        assert_eq!(twins.rowids(7), None, "unknown before the load");
        twins.loaded = true;
        assert_eq!(
            twins.rowids(7),
            Some(&[][..]),
            "adds before the load are left to the load"
        );
        twins.add(7, 1);
        twins.add(7, 1);
        twins.add(7, 4);
        twins.add(7, 9);
        twins.add(8, 2);
        assert_eq!(twins.rowids(7), Some(&[1, 4, 9][..]));
        assert_eq!(twins.rowids(8), Some(&[2][..]));
        twins.remove(7, 4);
        twins.remove(7, 5);
        assert_eq!(twins.rowids(7), Some(&[1, 9][..]));
        twins.remove(7, 1);
        assert_eq!(twins.rowids(7), Some(&[9][..]));
        assert!(
            twins.shared.is_empty(),
            "a hash of one row is back in the plain map"
        );
        twins.remove(7, 9);
        twins.remove(8, 3);
        assert_eq!(
            (twins.rowids(7), twins.rowids(8)),
            (Some(&[][..]), Some(&[2][..]))
        );
    }

    #[test]
    fn removing_a_purged_row_marks_its_tombstone() {
        let mut index = index_with(10);
        index.remove(3, false);
        assert!(!index.purged_tombstones);
        index.remove(4, true);
        assert!(index.purged_tombstones);
        assert_eq!((index.hnsw.len(), index.unsaved), (8, 12));
        index.remove(4, true);
        assert_eq!(index.unsaved, 12, "removing an absent row changes nothing");
    }
}
