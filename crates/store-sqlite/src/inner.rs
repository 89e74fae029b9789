//! [`TenantInner`]: the shared state of one open tenant database (its writer connection,
//! reader pool, gate and bank vector and keyword indexes) and [`run_blocking`], which every async entry
//! point uses to reach it. The operations live above it: memories in `tenant.rs`, search in
//! `search.rs`, settings and re-embedding in `maintenance.rs`, jobs in `jobs.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use astrocyte_core::store::EmbeddingSpace;
use astrocyte_core::{BankId, Error, Schema};
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};

use crate::connection::{open_writer, ReaderPool};
use crate::error::{StoreError, StoreResult};
use crate::keyword::{store_snapshot, Document, KeywordIndex, Tokenizer};
use crate::migrations::migrate;
use crate::options::SqliteOptions;
use crate::pieces::PieceWriter;
use crate::rows::to_micros;
use crate::vectors::{capture_snapshot, load_index, snapshot_stored, BankIndex, BankSlot, Twins};

/// Bytes of a vector index snapshot per stored piece: the writer buffers one piece (and SQLite
/// copies it once more), so pieces stay small next to the index; SQLite refuses values over
/// 1 GB.
#[cfg(not(test))]
const SNAPSHOT_PIECE: usize = 32 << 20;
/// Small pieces in unit tests, so small snapshots are stored in many.
#[cfg(test)]
const SNAPSHOT_PIECE: usize = 4096;

/// The state of one open tenant database, shared by every handle to it.
pub(crate) struct TenantInner {
    pub(crate) schema: Schema,
    pub(crate) options: SqliteOptions,
    /// `true` while open. Every operation holds it shared; closing takes it exclusively, so
    /// files are only deleted once nothing is using a connection.
    gate: RwLock<bool>,
    /// The single writer; `None` once closed.
    writer: Mutex<Option<Connection>>,
    pub(crate) readers: ReaderPool,
    pub(crate) space: Mutex<Option<EmbeddingSpace>>,
    pub(crate) banks: Mutex<HashMap<BankId, Arc<BankSlot>>>,
}

impl TenantInner {
    /// Opens (and with `create`, creates) the tenant file and migrates it.
    pub(crate) fn open(
        schema: Schema,
        path: PathBuf,
        options: SqliteOptions,
        create: bool,
    ) -> StoreResult<Self> {
        let mut writer = open_writer(&path, &options, create)?;
        migrate(&mut writer)?;
        Ok(TenantInner {
            schema,
            readers: ReaderPool::new(path, options.clone()),
            options,
            gate: RwLock::new(true),
            writer: Mutex::new(Some(writer)),
            space: Mutex::new(None),
            banks: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `operation` unless the tenant was closed, keeping it open meanwhile. Entry points
    /// only: the gate is never taken twice by one thread.
    pub(crate) fn guarded<R>(
        self: &Arc<Self>,
        operation: impl FnOnce(&Arc<Self>) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let open = self.gate.read();
        if !*open {
            return Err(StoreError::TenantDropped(self.schema.to_string()));
        }
        let result = operation(self);
        drop(open);
        result
    }

    /// Closes every connection once in-flight operations (background snapshots included)
    /// finish, without saving anything: the tenant is being dropped. Later calls fail with
    /// `TenantDropped`.
    pub(crate) fn close(&self) {
        let mut open = self.gate.write();
        if !*open {
            return;
        }
        *open = false;
        self.writer.lock().take();
        self.readers.close_idle();
    }

    /// Runs `operation` on the single writer connection (`TenantDropped` once closed).
    pub(crate) fn with_writer<R>(
        &self,
        operation: impl FnOnce(&mut Connection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let mut guard = self.writer.lock();
        let conn = guard
            .as_mut()
            .ok_or_else(|| StoreError::TenantDropped(self.schema.to_string()))?;
        operation(conn)
    }

    /// The recorded embedding dimension, if any.
    pub(crate) fn recorded_dimension(&self, conn: &Connection) -> StoreResult<Option<usize>> {
        if let Some(space) = self.space.lock().as_ref() {
            return Ok(Some(space.dimension));
        }
        let stored = read_space(conn)?;
        let dimension = stored.as_ref().map(|s| s.dimension);
        if let Some(space) = stored {
            *self.space.lock() = Some(space);
        }
        Ok(dimension)
    }

    // --- vector indexes -------------------------------------------------------------------

    /// The slot of `bank`, created empty when missing.
    pub(crate) fn slot(&self, bank: &BankId) -> Arc<BankSlot> {
        Arc::clone(self.banks.lock().entry(bank.clone()).or_default())
    }

    /// The slot of `bank` if one exists (its index may still be unloaded).
    pub(crate) fn loaded_slot(&self, bank: &BankId) -> Option<Arc<BankSlot>> {
        self.banks.lock().get(bank).cloned()
    }

    /// Runs `read` on the bank's index, loading it first when needed. `dimension_hint` sizes a
    /// brand-new index when the tenant has no recorded embedding space.
    pub(crate) fn with_index<R>(
        self: &Arc<Self>,
        conn: &Connection,
        bank: &BankId,
        dimension_hint: usize,
        read: impl FnOnce(&BankIndex) -> R,
    ) -> StoreResult<R> {
        let slot = self.slot(bank);
        {
            let guard = slot.index.read();
            if let Some(index) = guard.as_ref() {
                return Ok(read(index));
            }
        }
        let mut guard = slot.index.write();
        if guard.is_none() {
            let dimension = match self.recorded_dimension(conn)? {
                Some(dimension) => dimension,
                None => first_vector_dimension(conn, bank)?.unwrap_or(dimension_hint),
            };
            let index = load_index(conn, bank, dimension, &self.options.hnsw)?;
            let wanted = index.wants_snapshot_after_load(self.options.snapshot_every);
            let twins_later = !index.twins.is_loaded();
            *guard = Some(index);
            // Kept locked from the load to the read: a failed graph write may unload the
            // index (see `graph_write`), which must not fall in between.
            let guard = parking_lot::RwLockWriteGuard::downgrade(guard);
            if twins_later {
                self.load_twins_later(bank, &slot);
            }
            self.maybe_schedule_snapshot(bank, &slot, wanted);
            let index = guard
                .as_ref()
                .expect("invariant: loaded under this lock, held since");
            return Ok(read(index));
        }
        let guard = parking_lot::RwLockWriteGuard::downgrade(guard);
        let index = guard
            .as_ref()
            .expect("invariant: checked to be loaded under the write lock");
        Ok(read(index))
    }

    /// Loads the twin map of a just-loaded index on another thread (see [`Self::load_twins`]).
    fn load_twins_later(self: &Arc<Self>, bank: &BankId, slot: &Arc<BankSlot>) {
        let inner = Arc::clone(self);
        let bank = bank.clone();
        let slot = Arc::clone(slot);
        let spawned = std::thread::Builder::new()
            .name("astrocyte-twins".into())
            .spawn(move || match inner.guarded(|inner| inner.load_twins(&bank, &slot)) {
                Ok(()) | Err(StoreError::TenantDropped(_)) => {}
                Err(error) => {
                    // The next near-duplicate check of the bank loads it instead.
                    tracing::warn!(tenant = %inner.schema, bank = %bank, %error, "twin map load failed");
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start the twin map thread");
        }
    }

    /// Loads the twin map of the bank's index unless it is loaded (or the index is not). It
    /// reads the rows under the writer and installs the map before letting go, so no change
    /// falls between the two.
    pub(crate) fn load_twins(&self, bank: &BankId, slot: &BankSlot) -> StoreResult<()> {
        self.with_writer(|conn| {
            let unloaded = |slot: &BankSlot| {
                matches!(slot.index.read().as_ref(), Some(index) if !index.twins.is_loaded())
            };
            if !unloaded(slot) {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let twins = Twins::load(conn, bank)?;
            if let Some(index) = slot.index.write().as_mut() {
                if !index.twins.is_loaded() {
                    index.twins = twins;
                }
            }
            tracing::debug!(bank = %bank, ms = started.elapsed().as_millis() as u64, "twin map loaded");
            Ok(())
        })
    }

    // --- keyword indexes ------------------------------------------------------------------

    /// Runs `read` on the bank's keyword index, building it from the rows first when needed.
    pub(crate) fn with_keyword_index<R>(
        self: &Arc<Self>,
        conn: &Connection,
        bank: &BankId,
        read: impl FnOnce(&KeywordIndex) -> R,
    ) -> StoreResult<R> {
        let slot = self.slot(bank);
        {
            let guard = slot.keyword.read();
            if let Some(index) = guard.as_ref() {
                return Ok(read(index));
            }
        }
        let mut guard = slot.keyword.write();
        if guard.is_none() {
            self.prefetch_vector_index(bank, &slot);
            let index = KeywordIndex::load(conn, bank)?;
            let wanted = index.wants_snapshot_after_load(self.options.snapshot_every);
            *guard = Some(index);
            if wanted {
                self.schedule_keyword_snapshot(bank, &slot);
            }
        }
        let guard = parking_lot::RwLockWriteGuard::downgrade(guard);
        let index = guard
            .as_ref()
            .expect("invariant: loaded under the write lock and never unloaded");
        Ok(read(index))
    }

    /// Loads the bank's vector index on another thread unless it is loaded: a bank's first
    /// recall builds the keyword index meanwhile, and its semantic search then finds the
    /// vectors ready instead of loading them after (at 1M memories each load takes seconds).
    fn prefetch_vector_index(self: &Arc<Self>, bank: &BankId, slot: &BankSlot) {
        if slot.index.read().is_some() {
            return;
        }
        let inner = Arc::clone(self);
        let bank = bank.clone();
        let spawned = std::thread::Builder::new()
            .name("astrocyte-prefetch".into())
            .spawn(move || {
                let result = inner.guarded(|inner| {
                    let reader = inner.readers.get()?;
                    // Only a tenant with a recorded dimension has vectors to load.
                    match inner.recorded_dimension(&reader)? {
                        Some(dimension) => inner.with_index(&reader, &bank, dimension, |_| ()),
                        None => Ok(()),
                    }
                });
                if let Err(error) = result {
                    tracing::debug!(tenant = %inner.schema, bank = %bank, %error, "vector index prefetch failed");
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start the prefetch thread");
        }
    }

    /// Applies committed changes of a bank's rows to its keyword index, if it is loaded:
    /// `documents` are added or rewritten, `removed` dropped. Callers hold the writer lock and
    /// call this after their commit, so the index follows commit order; an index whose load
    /// began before the commit holds its lock until loaded, one loaded later read the rows.
    pub(crate) fn update_keyword_index<'a>(
        self: &Arc<Self>,
        bank: &BankId,
        documents: impl IntoIterator<Item = Document<'a>>,
        removed: &[i64],
    ) {
        let Some(slot) = self.loaded_slot(bank) else {
            return;
        };
        let mut guard = slot.keyword.write();
        let Some(index) = guard.as_mut() else {
            return;
        };
        let mut tokenizer = Tokenizer::new();
        for (rowid, text, context) in documents {
            index.add(&mut tokenizer, rowid, text, context);
        }
        for rowid in removed {
            index.remove(*rowid);
        }
        index.compact_if_worthwhile();
        let wanted = index.wants_background_snapshot(self.options.snapshot_every);
        drop(guard);
        if wanted {
            self.schedule_keyword_snapshot(bank, &slot);
        }
    }

    /// Records that a purge deleted the bank's keyword snapshot (it held the purged words), so
    /// the loaded index is written again at the latest on close.
    pub(crate) fn keyword_snapshot_deleted(&self, bank: &BankId) {
        if let Some(slot) = self.loaded_slot(bank) {
            if let Some(index) = slot.keyword.write().as_mut() {
                index.snapshot_missing = true;
            }
        }
    }

    /// Snapshots the bank's keyword index on a background thread (at most one per bank in
    /// flight), so a restart reads it back and no request waits for the write.
    fn schedule_keyword_snapshot(self: &Arc<Self>, bank: &BankId, slot: &Arc<BankSlot>) {
        let inner = Arc::clone(self);
        if slot.keyword_snapshot_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let bank = bank.clone();
        let slot_for_thread = Arc::clone(slot);
        let spawned = std::thread::Builder::new()
            .name("astrocyte-kw-snapshot".into())
            .spawn(move || {
                let result = inner
                    .guarded(|inner| inner.save_keyword_snapshot(&bank, &slot_for_thread, false));
                slot_for_thread
                    .keyword_snapshot_scheduled
                    .store(false, Ordering::SeqCst);
                if let Err(error) = result {
                    tracing::warn!(tenant = %inner.schema, bank = %bank, %error, "keyword index snapshot failed");
                }
            });
        if let Err(error) = spawned {
            slot.keyword_snapshot_scheduled
                .store(false, Ordering::SeqCst);
            tracing::warn!(%error, "could not start the keyword snapshot thread");
        }
    }

    /// Writes the bank's keyword snapshot if it has unsaved changes (with `on_close`, only when
    /// that pays for itself). Streams it into SQLite under the writer, which every change to
    /// the index also holds (taken before the index lock, in the same order), so the snapshot
    /// matches the committed rows exactly and readers are not held up meanwhile.
    fn save_keyword_snapshot(
        &self,
        bank: &BankId,
        slot: &BankSlot,
        on_close: bool,
    ) -> StoreResult<()> {
        self.with_writer(|conn| {
            let guard = slot.keyword.upgradable_read();
            let Some(index) = guard.as_ref() else {
                return Ok(());
            };
            let wanted = if on_close {
                index.worth_saving_on_close()
            } else {
                index.unsaved > 0 || index.snapshot_missing
            };
            if !wanted || index.documents() == 0 {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let tx = conn.transaction()?;
            let bytes = store_snapshot(&tx, bank, index)?;
            tx.commit()?;
            let mut guard = parking_lot::RwLockUpgradableReadGuard::upgrade(guard);
            if let Some(index) = guard.as_mut() {
                index.unsaved = 0;
                index.snapshot_missing = false;
            }
            tracing::debug!(tenant = %self.schema, bank = %bank, bytes, ms = started.elapsed().as_millis() as u64, "keyword index snapshot written");
            Ok(())
        })
    }

    /// Snapshots the bank's index on a background thread when `wanted` (see
    /// [`BankIndex::wants_background_snapshot`]), so a restart catches up with few rows and no
    /// request waits for the write. At most one snapshot per bank is in flight.
    pub(crate) fn maybe_schedule_snapshot(
        self: &Arc<Self>,
        bank: &BankId,
        slot: &Arc<BankSlot>,
        wanted: bool,
    ) {
        if !wanted || slot.snapshot_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(self);
        let bank = bank.clone();
        let slot_for_thread = Arc::clone(slot);
        let spawned = std::thread::Builder::new()
            .name("astrocyte-snapshot".into())
            .spawn(move || {
                let result =
                    inner.guarded(|inner| inner.save_snapshot(&bank, &slot_for_thread, false));
                slot_for_thread.snapshot_scheduled.store(false, Ordering::SeqCst);
                if let Err(error) = result {
                    tracing::warn!(tenant = %inner.schema, bank = %bank, %error, "vector index snapshot failed");
                }
            });
        if let Err(error) = spawned {
            slot.snapshot_scheduled.store(false, Ordering::SeqCst);
            tracing::warn!(%error, "could not start the snapshot thread");
        }
    }

    /// Writes the bank's snapshot if it has unsaved changes; with `on_close`, only when that
    /// pays for itself (see [`BankIndex::worth_saving_on_close`]).
    fn save_snapshot(&self, bank: &BankId, slot: &BankSlot, on_close: bool) -> StoreResult<()> {
        let compact = match slot.index.read().as_ref() {
            Some(index) if index.wants_saving(on_close) => index.needs_compaction(),
            _ => return Ok(()),
        };
        if !compact {
            return self.stream_snapshot(bank, slot, on_close);
        }
        // Compaction rebuilds a copy of the graph, outside every lock; the copy is written.
        let Some(snapshot) = capture_snapshot(slot, on_close)? else {
            return Ok(());
        };
        let stored = self.with_writer(|conn| {
            if slot.purge_generation.load(Ordering::SeqCst) != snapshot.purge_generation {
                // A purge ran after the capture: the data may hold its vectors.
                return Ok(false);
            }
            let tx = conn.transaction()?;
            let mut pieces = snapshot.data.chunks(SNAPSHOT_PIECE);
            tx.execute(
                "INSERT INTO vector_index (bank_id, max_rowid, dimension, data, written_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bank_id) DO UPDATE SET max_rowid = excluded.max_rowid, dimension = excluded.dimension,
                     data = excluded.data, written_at = excluded.written_at",
                params![
                    bank.as_str(),
                    snapshot.max_rowid,
                    snapshot.dimension as i64,
                    pieces.next().unwrap_or_default(),
                    to_micros(chrono::Utc::now())
                ],
            )?;
            tx.execute(
                "DELETE FROM vector_index_chunks WHERE bank_id = ?1",
                [bank.as_str()],
            )?;
            for (seq, piece) in (1i64..).zip(pieces) {
                tx.execute(
                    "INSERT INTO vector_index_chunks (bank_id, seq, data) VALUES (?1, ?2, ?3)",
                    params![bank.as_str(), seq, piece],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if stored {
            tracing::debug!(tenant = %self.schema, bank = %bank, bytes = snapshot.data.len(), "vector index snapshot written");
            snapshot_stored(slot, snapshot);
        }
        Ok(())
    }

    /// Writes the bank's vector snapshot straight from the live index into SQLite, piece by
    /// piece, under the writer (which every change to the index holds, taken before the index
    /// lock) and a read lock that lets searches go on. Holding the whole snapshot in memory
    /// instead cost as much again as the index (1.6 GB at 1M vectors of 384 dimensions).
    fn stream_snapshot(&self, bank: &BankId, slot: &BankSlot, on_close: bool) -> StoreResult<()> {
        self.with_writer(|conn| {
            let guard = slot.index.upgradable_read();
            let Some(index) = guard.as_ref() else {
                return Ok(());
            };
            // It may have changed since the caller looked: the next snapshot sees to it.
            if !index.wants_saving(on_close) || index.needs_compaction() {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let tx = conn.transaction()?;
            // Every piece goes to vector_index_chunks; the first, in vector_index, is empty.
            tx.execute(
                "INSERT INTO vector_index (bank_id, max_rowid, dimension, data, written_at) VALUES (?1, ?2, ?3, X'', ?4)
                 ON CONFLICT (bank_id) DO UPDATE SET max_rowid = excluded.max_rowid, dimension = excluded.dimension,
                     data = excluded.data, written_at = excluded.written_at",
                params![
                    bank.as_str(),
                    index.max_rowid,
                    index.hnsw.dimension() as i64,
                    to_micros(chrono::Utc::now())
                ],
            )?;
            tx.execute(
                "DELETE FROM vector_index_chunks WHERE bank_id = ?1",
                [bank.as_str()],
            )?;
            let mut pieces = PieceWriter::new(
                &tx,
                "INSERT INTO vector_index_chunks (bank_id, seq, data) VALUES (?1, ?2, ?3)",
                bank,
                SNAPSHOT_PIECE,
            );
            pieces.write_all_from(|out| index.hnsw.write_to(out))?;
            let bytes = pieces.bytes();
            drop(pieces);
            tx.commit()?;
            let mut guard = parking_lot::RwLockUpgradableReadGuard::upgrade(guard);
            if let Some(index) = guard.as_mut() {
                index.unsaved = 0;
                index.snapshot_missing = false;
            }
            tracing::debug!(tenant = %self.schema, bank = %bank, bytes, ms = started.elapsed().as_millis() as u64, "vector index snapshot written");
            Ok(())
        })
    }

    /// Snapshots every loaded index with unsaved changes; with `on_close`, only those where
    /// that pays for itself (closing must not stall on a large index with a few new rows).
    pub(crate) fn save_all_snapshots(&self, on_close: bool) -> StoreResult<()> {
        let open = self.gate.read();
        if !*open {
            return Ok(());
        }
        let slots: Vec<(BankId, Arc<BankSlot>)> = self
            .banks
            .lock()
            .iter()
            .map(|(bank, slot)| (bank.clone(), Arc::clone(slot)))
            .collect();
        for (bank, slot) in slots {
            self.save_snapshot(&bank, &slot, on_close)?;
            self.save_keyword_snapshot(&bank, &slot, on_close)?;
        }
        drop(open);
        Ok(())
    }
}

impl Drop for TenantInner {
    /// Saves vector indexes when the last handle goes away, where that pays for itself (a no-op
    /// once closed), so the next open loads a snapshot instead of re-indexing rows.
    fn drop(&mut self) {
        if let Err(error) = self.save_all_snapshots(true) {
            tracing::warn!(tenant = %self.schema, %error, "vector index snapshot failed on drop");
        }
    }
}

/// The embedding space recorded in the tenant file, if any.
pub(crate) fn read_space(conn: &Connection) -> StoreResult<Option<EmbeddingSpace>> {
    Ok(conn
        .query_row(
            "SELECT model, dimension FROM embedding_space WHERE singleton = 1",
            [],
            |row| {
                Ok(EmbeddingSpace {
                    model: row.get(0)?,
                    dimension: row.get::<_, i64>(1)? as usize,
                })
            },
        )
        .optional()?)
}

fn first_vector_dimension(conn: &Connection, bank: &BankId) -> StoreResult<Option<usize>> {
    Ok(conn
        .query_row(
            "SELECT length(embedding) FROM memories WHERE bank_id = ?1 LIMIT 1",
            [bank.as_str()],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .map(|bytes| bytes as usize / 4))
}

/// Runs `operation` on tokio's blocking pool with the tenant kept open, mapping errors into
/// core's terms.
pub(crate) async fn run_blocking<R, F>(
    inner: &Arc<TenantInner>,
    operation: F,
) -> astrocyte_core::Result<R>
where
    R: Send + 'static,
    F: FnOnce(&Arc<TenantInner>) -> StoreResult<R> + Send + 'static,
{
    let inner = Arc::clone(inner);
    let joined = tokio::task::spawn_blocking(move || inner.guarded(operation)).await;
    match joined {
        Ok(result) => result.map_err(Error::from),
        Err(join) => Err(StoreError::from(join).into()),
    }
}
