//! [`SqliteTenant`], the [`TenantStore`] handle, and the memory operations of one open tenant:
//! embedding space, insert, forget, the near-duplicate check and plain reads. Search, settings,
//! re-embedding and jobs are in their own modules over the same [`TenantInner`]. Blocking
//! SQLite work runs on tokio's blocking pool; the async trait methods only move arguments
//! there and back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use astrocyte_ann::InsertHint;
use astrocyte_core::browse::{Change, ChangeQuery, ListQuery, MemoryPatch};
use astrocyte_core::store::{
    ContextUpdate, EmbeddingSpace, EntityQuery, EntitySummary, SearchRequest, SearchResponse,
    StrategyHits,
};
use astrocyte_core::{
    BankId, Error, ForgetMode, ForgetSelector, Memory, MemoryId, NewMemory, RecallFilter, Schema,
    TenantStore, Timestamp,
};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use tracing::instrument;

use crate::error::{StoreError, StoreResult};
use crate::filter::json_list;
use crate::graph_write::{BankVectors, GraphWrite, RowVector};
use crate::inner::{read_space, run_blocking, TenantInner};
use crate::jobs::SqliteJobQueue;
use crate::keyword::Document;
use crate::rows::{
    decode_vector, encode_vector, to_micros, vector_hash, RawMemory, EMBEDDING_COLUMN,
    MEMORY_COLUMNS,
};
use crate::signals::LocalSignals;
use crate::vectors::{BankIndex, Twins};

impl TenantInner {
    // --- embedding space ----------------------------------------------------------------

    fn ensure_embedding_space(&self, wanted: &EmbeddingSpace) -> StoreResult<()> {
        if let Some(known) = self.space.lock().as_ref() {
            return check_space(known, wanted);
        }
        let recorded = self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = read_space(&tx)?;
            let space = match stored {
                Some(stored) => stored,
                None => {
                    tx.execute(
                        "INSERT INTO embedding_space (singleton, model, dimension, recorded_at) VALUES (1, ?1, ?2, ?3)",
                        params![wanted.model, wanted.dimension as i64, to_micros(chrono::Utc::now())],
                    )?;
                    wanted.clone()
                }
            };
            tx.commit()?;
            Ok(space)
        })?;
        let checked = check_space(&recorded, wanted);
        *self.space.lock() = Some(recorded);
        checked
    }

    // --- writes -------------------------------------------------------------------------

    fn insert(self: &Arc<Self>, mut memories: Vec<NewMemory>) -> StoreResult<()> {
        if memories.is_empty() {
            return Ok(());
        }
        let entered = Instant::now();
        let expected = {
            let reader = self.readers.get()?;
            self.recorded_dimension(&reader)?
        }
        .unwrap_or(memories[0].embedding.len());
        let mut rows = Vec::with_capacity(memories.len());
        for new in &memories {
            if new.embedding.len() != expected {
                return Err(Error::invalid(format!(
                    "embedding of memory {} has dimension {}, the store holds dimension {expected}",
                    new.memory.id,
                    new.embedding.len()
                ))
                .into());
            }
            if new.embedding.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "embedding of memory {} has a non-finite component",
                    new.memory.id
                ))
                .into());
            }
            rows.push(InsertRow::new(&new.memory, &new.embedding)?);
        }
        let prepared = entered.elapsed();
        self.with_writer(|conn| {
            let writer = entered.elapsed();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The writer lock and the immediate transaction make us the only writer, so the row
            // ids AUTOINCREMENT would hand out are known now: the vectors can go into the index
            // on another thread while SQLite writes the rows (see `graph_write`).
            let first: i64 = tx.query_row(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memories'), 0),
                            COALESCE((SELECT MAX(rowid) FROM memories), 0)) + 1",
                [],
                |row| row.get(0),
            )?;
            let rowids: Vec<i64> = (0..memories.len() as i64).map(|i| first + i).collect();
            let mut by_bank: HashMap<&BankId, Vec<RowVector>> = HashMap::new();
            // The vectors move to the graph write: the rows carry their own encoded copies.
            for ((rowid, new), row) in rowids.iter().zip(memories.iter_mut()).zip(&rows) {
                by_bank
                    .entry(&new.memory.bank_id)
                    .or_default()
                    .push(RowVector {
                        rowid: *rowid,
                        vector: std::mem::take(&mut new.embedding),
                        hash: row.embedding_hash,
                    });
            }
            let banks: Vec<BankVectors> = by_bank
                .into_iter()
                .filter_map(|(bank, rows)| {
                    self.loaded_slot(bank).map(|slot| BankVectors {
                        bank: bank.clone(),
                        slot,
                        rows,
                    })
                })
                .collect();
            let begun = entered.elapsed();
            let graph = GraphWrite::start(self, banks)?;
            let locked = entered.elapsed();
            let written = write_rows(&tx, &rows, &memories, &rowids);
            let rows_written = entered.elapsed();
            let written = written.and_then(|()| tx.commit().map_err(StoreError::from));
            let committed = entered.elapsed();
            graph.settle(written.is_ok());
            written?;
            let mut documents: HashMap<&BankId, Vec<Document>> = HashMap::new();
            for (rowid, new) in rowids.iter().zip(&memories) {
                documents.entry(&new.memory.bank_id).or_default().push((
                    *rowid,
                    new.index_text.as_str(),
                    new.index_context.as_deref(),
                ));
            }
            for (bank, documents) in documents {
                self.update_keyword_index(bank, documents, &[]);
            }
            // Where a write's time goes; the graph work runs beside it and logs its own line.
            let us = |d: std::time::Duration| d.as_micros() as u64;
            tracing::debug!(
                rows = memories.len(),
                prepare_us = us(prepared),
                writer_wait_us = us(writer.saturating_sub(prepared)),
                begin_us = us(begun.saturating_sub(writer)),
                lock_us = us(locked.saturating_sub(begun)),
                rows_us = us(rows_written.saturating_sub(locked)),
                commit_us = us(committed.saturating_sub(rows_written)),
                keyword_us = us(entered.elapsed().saturating_sub(committed)),
                "inserted"
            );
            Ok(())
        })
    }

    fn forget(
        self: &Arc<Self>,
        bank: &BankId,
        selector: &ForgetSelector,
        mode: ForgetMode,
        now: Timestamp,
    ) -> StoreResult<u64> {
        if selector.is_empty() {
            return Err(Error::invalid(
                "forget needs memory_ids, tags, before_date or scope \"all\"",
            )
            .into());
        }
        let mut sql = String::from("m.bank_id = ?");
        let mut values = vec![Value::Text(bank.as_str().to_string())];
        if let Some(ids) = &selector.memory_ids {
            sql.push_str(" AND m.id IN (SELECT value FROM json_each(?))");
            values.push(json_list(ids));
        }
        if let Some(tags) = &selector.tags {
            let tags: Vec<String> = tags.iter().map(|t| t.trim().to_string()).collect();
            sql.push_str(" AND m.rowid IN (SELECT t.memory_rowid FROM memory_tags t WHERE t.tag IN (SELECT value FROM json_each(?)))");
            values.push(json_list(&tags));
        }
        if let Some(before) = selector.before {
            sql.push_str(" AND m.effective_at < ?");
            values.push(Value::Integer(to_micros(before)));
        }
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The deleted rows and their vectors' hashes, for the twin map (soft forgets keep
            // rows).
            let mut purged_rows: Vec<(i64, i64)> = Vec::new();
            let rowids: Vec<i64> = match mode {
                ForgetMode::Soft => {
                    let statement = format!(
                        "UPDATE memories AS m SET forgotten_at = ? WHERE {sql} AND m.forgotten_at IS NULL RETURNING rowid"
                    );
                    let mut all = vec![Value::Integer(to_micros(now))];
                    all.extend(values.iter().cloned());
                    let mut statement = tx.prepare(&statement)?;
                    let rowids = statement
                        .query_map(params_from_iter(all), |row| row.get(0))?
                        .collect::<Result<_, _>>()?;
                    rowids
                }
                ForgetMode::Purge => {
                    let statement = format!(
                        "DELETE FROM memories AS m WHERE {sql} RETURNING rowid, embedding_hash"
                    );
                    let mut statement = tx.prepare(&statement)?;
                    let deleted: Vec<(i64, i64)> = statement
                        .query_map(params_from_iter(values.iter()), |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    let rowids: Vec<i64> = deleted.iter().map(|(rowid, _)| *rowid).collect();
                    purged_rows = deleted;
                    drop(statement);
                    if !rowids.is_empty() {
                        // The stored snapshot holds the purged vectors: it goes too, and is
                        // rewritten (compacted) from the live index later.
                        tx.execute("DELETE FROM vector_index WHERE bank_id = ?1", [bank.as_str()])?;
                        // So does the keyword snapshot: it holds the purged words.
                        tx.execute("DELETE FROM keyword_index WHERE bank_id = ?1", [bank.as_str()])?;
                    }
                    rowids
                }
            };
            tx.commit()?;
            if mode == ForgetMode::Purge && !rowids.is_empty() {
                self.keyword_snapshot_deleted(bank);
            }
            self.update_keyword_index(bank, [], &rowids);
            let purged = mode == ForgetMode::Purge;
            // Looked up after the commit: an index whose load began before it already has its
            // slot (and holds its lock until loaded); one loaded later reads the committed rows.
            if let Some(slot) = self.loaded_slot(bank) {
                let wanted = {
                    let mut guard = slot.index.write();
                    match guard.as_mut() {
                        Some(index) => {
                            for rowid in &rowids {
                                index.remove(*rowid, purged);
                            }
                            for (rowid, hash) in &purged_rows {
                                index.twins.remove(*hash, *rowid);
                            }
                            if purged && !rowids.is_empty() {
                                // The stored snapshot was deleted with the rows.
                                index.snapshot_missing = true;
                            }
                            index.wants_background_snapshot(self.options.snapshot_every)
                        }
                        None => false,
                    }
                };
                if purged {
                    slot.purge_generation.fetch_add(1, Ordering::SeqCst);
                }
                self.maybe_schedule_snapshot(bank, &slot, wanted);
            }
            Ok(rowids.len() as u64)
        })
    }

    // --- reads ----------------------------------------------------------------------------

    fn nearest_each(
        self: &Arc<Self>,
        bank: &BankId,
        vectors: &[Vec<f32>],
        min_score: f32,
    ) -> StoreResult<Vec<Option<(MemoryId, f32)>>> {
        let Some(first) = vectors.first() else {
            return Ok(Vec::new());
        };
        let reader = self.readers.get()?;
        // Encoded once: the hashes find twin candidates, the bytes confirm them.
        let blobs: Vec<Vec<u8>> = vectors.iter().map(|v| encode_vector(v)).collect();
        let hashes: Vec<i64> = blobs.iter().map(|blob| vector_hash(blob)).collect();
        let twin_rows = |index: &BankIndex| -> Option<Vec<Vec<i64>>> {
            hashes
                .iter()
                .map(|hash| index.twins.rowids(*hash).map(<[i64]>::to_vec))
                .collect()
        };
        let started = Instant::now();
        let (candidates, found) = self.with_index(&reader, bank, first.len(), |index| {
            let found = in_parallel(vectors.iter().collect(), |vector| {
                index.hnsw.nearest_candidates_with_hint(vector, min_score)
            });
            (twin_rows(index), found)
        })?;
        let candidates = match candidates {
            Some(candidates) => candidates,
            // A large bank's twin map may still be loading: wait for it (or load it here).
            None => {
                let slot = self.slot(bank);
                self.load_twins(bank, &slot)?;
                match self.with_index(&reader, bank, first.len(), twin_rows)? {
                    Some(candidates) => candidates,
                    // Reloaded since (a re-embedding failed): read the rows for this check.
                    None => {
                        let twins = Twins::load(&reader, bank)?;
                        hashes
                            .iter()
                            .map(|hash| twins.rowids(*hash).map_or_else(Vec::new, <[i64]>::to_vec))
                            .collect()
                    }
                }
            }
        };
        let walked = started.elapsed();
        let rescored = found
            .iter()
            .map(|(candidates, _)| candidates.len())
            .sum::<usize>();
        let found = rescore_nearest(&reader, vectors, found)?;
        let rescore = started.elapsed() - walked;
        // Exact twins, confirmed among the rows storing the vector's hash: a graph walk can
        // miss even an identical vector, and "the same text retained twice" must always be
        // caught.
        let twins = exact_twins(&reader, bank, &blobs, &candidates)?;
        let twinned = started.elapsed() - walked - rescore;
        tracing::debug!(
            vectors = vectors.len(),
            rescored,
            walk_us = walked.as_micros() as u64,
            rescore_us = rescore.as_micros() as u64,
            twins_us = twinned.as_micros() as u64,
            "near-duplicates checked"
        );
        let found = found.into_iter().zip(twins.iter().zip(vectors)).map(
            |((hit, hint), (twin, vector))| match twin {
                // Identical vectors have cosine 1, unless both are zero (no words).
                Some(rowid) if vector.iter().any(|x| *x != 0.0) => {
                    (Some((*rowid as u64, 1.0)), hint)
                }
                _ => (hit, hint),
            },
        );
        let mut nearest: Vec<Option<(u64, f32)>> = Vec::with_capacity(vectors.len());
        {
            let slot = self.slot(bank);
            let mut cache = slot.hints.lock();
            for (vector, (hit, hint)) in vectors.iter().zip(found) {
                if let Some(hint) = hint {
                    cache.put(vector, hint);
                }
                nearest.push(hit.filter(|(_, score)| *score >= min_score));
            }
        }
        let rowids: Vec<i64> = nearest
            .iter()
            .flatten()
            .map(|(key, _)| *key as i64)
            .collect();
        if rowids.is_empty() {
            return Ok(vec![None; vectors.len()]);
        }
        // Re-checked against the table: the index may briefly trail a concurrent forget.
        let mut statement = reader.prepare_cached(
            "SELECT rowid, id FROM memories WHERE rowid IN (SELECT value FROM json_each(?1)) AND bank_id = ?2 AND forgotten_at IS NULL",
        )?;
        let ids: HashMap<i64, String> = statement
            .query_map(params![json_list(&rowids), bank.as_str()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(nearest
            .into_iter()
            .map(|hit| {
                hit.and_then(|(key, score)| ids.get(&(key as i64)).map(|id| (id.clone(), score)))
            })
            .collect())
    }

    fn get(&self, bank: &BankId, ids: &[MemoryId]) -> StoreResult<Vec<Memory>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m
             WHERE m.bank_id = ?1 AND m.forgotten_at IS NULL AND m.id IN (SELECT value FROM json_each(?2))"
        ))?;
        let raw: Vec<RawMemory> = statement
            .query_map(params![bank.as_str(), json_list(ids)], |row| {
                RawMemory::from_row(row, false)
            })?
            .collect::<Result<_, _>>()?;
        let mut by_id: HashMap<String, Memory> = HashMap::with_capacity(raw.len());
        for raw in raw {
            let memory = raw.into_memory()?;
            by_id.insert(memory.id.clone(), memory);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    fn existing(&self, bank: &BankId, ids: &[MemoryId]) -> StoreResult<Vec<MemoryId>> {
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(
            "SELECT id FROM memories WHERE bank_id = ?1 AND id IN (SELECT value FROM json_each(?2))",
        )?;
        let wanted = serde_json::to_string(ids)?;
        let found = statement
            .query_map(params![bank.as_str(), wanted], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(found)
    }

    fn list_banks(&self) -> StoreResult<Vec<BankId>> {
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(
            "SELECT DISTINCT bank_id FROM memories WHERE forgotten_at IS NULL ORDER BY bank_id",
        )?;
        let names: Vec<String> = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        names
            .into_iter()
            .map(|name| {
                BankId::new(name)
                    .map_err(|e| StoreError::CorruptRow(format!("stored bank id is invalid: {e}")))
            })
            .collect()
    }

    fn scan(
        &self,
        bank: &BankId,
        after: Option<&MemoryId>,
        limit: usize,
        include_embeddings: bool,
    ) -> StoreResult<Vec<Memory>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reader = self.readers.get()?;
        let columns = if include_embeddings {
            format!("{MEMORY_COLUMNS}, {EMBEDDING_COLUMN}")
        } else {
            MEMORY_COLUMNS.to_string()
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw: Vec<RawMemory> = match after {
            Some(after) => {
                let mut statement = reader.prepare_cached(&format!(
                    "SELECT {columns} FROM memories m
                     WHERE m.bank_id = ?1 AND m.forgotten_at IS NULL AND m.id > ?2 ORDER BY m.id LIMIT ?3"
                ))?;
                let rows = statement
                    .query_map(params![bank.as_str(), after, limit], |row| {
                        RawMemory::from_row(row, include_embeddings)
                    })?
                    .collect::<Result<_, _>>()?;
                rows
            }
            None => {
                let mut statement = reader.prepare_cached(&format!(
                    "SELECT {columns} FROM memories m
                     WHERE m.bank_id = ?1 AND m.forgotten_at IS NULL ORDER BY m.id LIMIT ?2"
                ))?;
                let rows = statement
                    .query_map(params![bank.as_str(), limit], |row| {
                        RawMemory::from_row(row, include_embeddings)
                    })?
                    .collect::<Result<_, _>>()?;
                rows
            }
        };
        raw.into_iter().map(RawMemory::into_memory).collect()
    }

    fn count(&self, bank: &BankId) -> StoreResult<u64> {
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(
            "SELECT COUNT(*) FROM memories WHERE bank_id = ?1 AND forgotten_at IS NULL",
        )?;
        let count: i64 = statement.query_row([bank.as_str()], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Visible members of a thread on each side of a position, nearest first.
    fn thread_neighbours(
        &self,
        bank: &BankId,
        thread: &str,
        at: Timestamp,
        id: &MemoryId,
        radius: usize,
    ) -> StoreResult<(Vec<Memory>, Vec<Memory>)> {
        if radius == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let reader = self.readers.get()?;
        let limit = i64::try_from(radius).unwrap_or(i64::MAX);
        let at = to_micros(at);
        let side = |sql: &str| -> StoreResult<Vec<Memory>> {
            let mut statement = reader.prepare_cached(&format!(
                "SELECT {MEMORY_COLUMNS} FROM memories m
                 WHERE m.bank_id = ?1 AND m.thread = ?2 AND m.forgotten_at IS NULL AND {sql} LIMIT ?5"
            ))?;
            let rows: Vec<RawMemory> = statement
                .query_map(params![bank.as_str(), thread, at, id, limit], |row| {
                    RawMemory::from_row(row, false)
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter().map(RawMemory::into_memory).collect()
        };
        let before = side(
            "(m.effective_at < ?3 OR (m.effective_at = ?3 AND m.id < ?4)) ORDER BY m.effective_at DESC, m.id DESC",
        )?;
        let after = side(
            "(m.effective_at > ?3 OR (m.effective_at = ?3 AND m.id > ?4)) ORDER BY m.effective_at, m.id",
        )?;
        Ok((before, after))
    }

    /// Rewrites the keyword index of memories in one transaction (the FTS triggers follow).
    fn set_index_context(
        self: &Arc<Self>,
        bank: &BankId,
        updates: &[ContextUpdate],
    ) -> StoreResult<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rewritten: Vec<(i64, &ContextUpdate)> = Vec::new();
            {
                let mut update = tx.prepare_cached(
                    "UPDATE memories SET index_text = CASE WHEN ?1 = text THEN NULL ELSE ?1 END, index_context = ?2
                     WHERE bank_id = ?3 AND id = ?4
                       AND (index_text IS NOT (CASE WHEN ?1 = text THEN NULL ELSE ?1 END) OR index_context IS NOT ?2)
                     RETURNING rowid, forgotten_at IS NULL",
                )?;
                for u in updates {
                    let changed: Option<(i64, bool)> = update
                        .query_row(
                            params![u.index_text, u.index_context, bank.as_str(), u.id],
                            |row| Ok((row.get(0)?, row.get(1)?)),
                        )
                        .optional()?;
                    // The keyword index holds visible rows only.
                    if let Some((rowid, true)) = changed {
                        rewritten.push((rowid, u));
                    }
                }
            }
            tx.commit()?;
            self.update_keyword_index(
                bank,
                rewritten
                    .iter()
                    .map(|(rowid, u)| (*rowid, u.index_text.as_str(), u.index_context.as_deref())),
                &[],
            );
            Ok(())
        })
    }
}

/// Maps `items` in order, on several threads when there are enough of them: a retain batch
/// checks hundreds of vectors for near-duplicates, and graph searches share the index freely.
fn in_parallel<T: Send + Sync, R: Send>(items: Vec<T>, map: impl Fn(T) -> R + Sync) -> Vec<R> {
    const PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len() / PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.into_iter().map(map).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(chunk).collect());
    }
    let map = &map;
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(map).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// The nearest row to each vector among its index candidates, scored exactly from the stored
/// vectors (the index keeps int8 codes only). The candidates are those the codes cannot rule
/// out as near-duplicates, usually none, so most retains read no vector at all.
#[allow(clippy::type_complexity)]
fn rescore_nearest(
    conn: &rusqlite::Connection,
    vectors: &[Vec<f32>],
    found: Vec<(Vec<(u64, f32)>, Option<InsertHint>)>,
) -> StoreResult<Vec<(Option<(u64, f32)>, Option<InsertHint>)>> {
    let mut rowids: Vec<i64> = found
        .iter()
        .flat_map(|(candidates, _)| candidates.iter().map(|(key, _)| *key as i64))
        .collect();
    rowids.sort_unstable();
    rowids.dedup();
    let mut stored: HashMap<i64, Vec<f32>> = HashMap::with_capacity(rowids.len());
    if !rowids.is_empty() {
        let mut statement = conn.prepare_cached(
            "SELECT rowid, embedding FROM memories WHERE rowid IN (SELECT value FROM json_each(?1))",
        )?;
        let mut rows = statement.query([json_list(&rowids)])?;
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(1)?;
            stored.insert(row.get(0)?, decode_vector(&blob)?);
        }
    }
    Ok(found
        .into_iter()
        .zip(vectors)
        .map(|((candidates, hint), vector)| {
            let query = crate::search::normalised(vector);
            let best = candidates
                .iter()
                .filter_map(|(key, _)| {
                    let stored = stored.get(&(*key as i64))?;
                    (stored.len() == query.len())
                        .then(|| (*key, crate::search::cosine(&query, stored)))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
            (best, hint)
        })
        .collect())
}

/// Inserts the prepared rows (and their tags) under the given row ids, inside `tx`.
fn write_rows(
    tx: &rusqlite::Transaction<'_>,
    rows: &[InsertRow],
    memories: &[NewMemory],
    rowids: &[i64],
) -> StoreResult<()> {
    let mut insert_memory = tx.prepare_cached(
        "INSERT INTO memories (rowid, id, bank_id, text, tags, metadata, fact_type, occurred_at, retained_at, forgotten_at, effective_at, source, chunk, embedding, index_text, index_context, embedding_hash, thread)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    let mut insert_tag =
        tx.prepare_cached("INSERT OR IGNORE INTO memory_tags (tag, memory_rowid) VALUES (?1, ?2)")?;
    let mut insert_entity = tx.prepare_cached(
        "INSERT OR IGNORE INTO memory_entities (memory_rowid, bank_id, entity_key, name, kind, mentions, speaker)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for ((row, new), rowid) in rows.iter().zip(memories).zip(rowids) {
        let memory = &new.memory;
        insert_memory.execute(params![
            rowid,
            memory.id,
            memory.bank_id.as_str(),
            memory.text,
            row.tags,
            row.metadata,
            memory.fact_type,
            memory.occurred_at.map(to_micros),
            to_micros(memory.retained_at),
            to_micros(memory.effective_time()),
            memory.source,
            row.chunk,
            row.embedding,
            (new.index_text != memory.text).then_some(new.index_text.as_str()),
            new.index_context.as_deref(),
            row.embedding_hash,
            memory.thread,
        ])?;
        for tag in &memory.tags {
            insert_tag.execute(params![tag, rowid])?;
        }
        for entity in &new.entities {
            insert_entity.execute(params![
                rowid,
                memory.bank_id.as_str(),
                entity.key,
                entity.name,
                entity.kind.as_str(),
                entity.count,
                entity.speaker,
            ])?;
        }
    }
    Ok(())
}

/// For each encoded vector, the visible row of `bank` storing exactly those bytes (the smallest
/// id when several do), among the rows `candidates` holds for it (those storing its hash).
fn exact_twins(
    conn: &Connection,
    bank: &BankId,
    blobs: &[Vec<u8>],
    candidates: &[Vec<i64>],
) -> StoreResult<Vec<Option<i64>>> {
    let wanted: Vec<i64> = candidates.iter().flatten().copied().collect();
    if wanted.is_empty() {
        return Ok(vec![None; blobs.len()]);
    }
    // Row-id lookups only: the planner would otherwise walk an index on bank_id first.
    let mut statement = conn.prepare_cached(
        "SELECT rowid, embedding, id FROM memories NOT INDEXED
         WHERE rowid IN (SELECT value FROM json_each(?1)) AND bank_id = ?2
           AND forgotten_at IS NULL",
    )?;
    let stored: HashMap<i64, (Vec<u8>, String)> = statement
        .query_map(params![json_list(&wanted), bank.as_str()], |row| {
            Ok((row.get(0)?, (row.get(1)?, row.get(2)?)))
        })?
        .collect::<Result<_, _>>()?;
    Ok(blobs
        .iter()
        .zip(candidates)
        .map(|(blob, rowids)| {
            rowids
                .iter()
                .filter_map(|rowid| stored.get(rowid).map(|row| (rowid, row)))
                .filter(|(_, (stored, _))| stored == blob)
                .min_by(|a, b| a.1 .1.cmp(&b.1 .1))
                .map(|(rowid, _)| *rowid)
        })
        .collect())
}

/// The JSON and blob columns of one memory, encoded before the writer lock is taken.
struct InsertRow {
    tags: String,
    metadata: String,
    chunk: Option<String>,
    embedding: Vec<u8>,
    embedding_hash: i64,
}

impl InsertRow {
    fn new(memory: &Memory, embedding: &[f32]) -> StoreResult<Self> {
        let embedding = encode_vector(embedding);
        Ok(InsertRow {
            tags: serde_json::to_string(&memory.tags)?,
            metadata: serde_json::to_string(&memory.metadata)?,
            chunk: memory
                .chunk
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            embedding_hash: vector_hash(&embedding),
            embedding,
        })
    }
}

/// A different model is a mismatch even at the same dimension: vectors of two models are not
/// comparable, so mixing them would silently ruin ranking.
fn check_space(stored: &EmbeddingSpace, wanted: &EmbeddingSpace) -> StoreResult<()> {
    if stored == wanted {
        return Ok(());
    }
    Err(Error::DimensionMismatch {
        stored_model: stored.model.clone(),
        stored: stored.dimension,
        model: wanted.model.clone(),
        configured: wanted.dimension,
    }
    .into())
}

/// The [`TenantStore`] handle handed out by [`crate::SqliteStore::tenant`].
pub(crate) struct SqliteTenant {
    pub(crate) inner: Arc<TenantInner>,
    /// The store's job signals, raised when this tenant enqueues.
    pub(crate) signals: Arc<LocalSignals>,
}

impl SqliteTenant {
    /// Runs `operation` on the blocking pool with the tenant kept open.
    async fn blocking<R, F>(&self, operation: F) -> astrocyte_core::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Arc<TenantInner>) -> StoreResult<R> + Send + 'static,
    {
        run_blocking(&self.inner, operation).await
    }
}

#[async_trait]
impl TenantStore for SqliteTenant {
    fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema))]
    async fn ensure_embedding_space(&self, space: &EmbeddingSpace) -> astrocyte_core::Result<()> {
        let space = space.clone();
        self.blocking(move |inner| inner.ensure_embedding_space(&space))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, memories = memories.len()))]
    async fn insert(&self, memories: Vec<NewMemory>) -> astrocyte_core::Result<()> {
        self.blocking(move |inner| inner.insert(memories)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank, vectors = vectors.len()))]
    async fn nearest_each(
        &self,
        bank: &BankId,
        vectors: &[Vec<f32>],
        min_score: f32,
    ) -> astrocyte_core::Result<Vec<Option<(MemoryId, f32)>>> {
        let bank = bank.clone();
        let vectors = vectors.to_vec();
        self.blocking(move |inner| inner.nearest_each(&bank, &vectors, min_score))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, banks = request.banks.len()))]
    async fn search(&self, request: &SearchRequest) -> astrocyte_core::Result<SearchResponse> {
        let request = request.clone();
        self.blocking(move |inner| inner.search(&request)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, banks = banks.len(), keys = keys.len()))]
    async fn entity_hits(
        &self,
        banks: &[BankId],
        keys: &[String],
        hop: bool,
        filter: &RecallFilter,
        limit: usize,
    ) -> astrocyte_core::Result<StrategyHits> {
        let (banks, keys, filter) = (banks.to_vec(), keys.to_vec(), filter.clone());
        self.blocking(move |inner| inner.entity_hits(&banks, &keys, hop, &filter, limit))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn entities(
        &self,
        bank: &BankId,
        query: &EntityQuery,
    ) -> astrocyte_core::Result<Vec<EntitySummary>> {
        let (bank, query) = (bank.clone(), query.clone());
        self.blocking(move |inner| inner.entities(&bank, &query))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn get(&self, bank: &BankId, ids: &[MemoryId]) -> astrocyte_core::Result<Vec<Memory>> {
        let bank = bank.clone();
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.get(&bank, &ids)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn existing(
        &self,
        bank: &BankId,
        ids: &[MemoryId],
    ) -> astrocyte_core::Result<Vec<MemoryId>> {
        let bank = bank.clone();
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.existing(&bank, &ids))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank, ?mode))]
    async fn forget(
        &self,
        bank: &BankId,
        selector: &ForgetSelector,
        mode: ForgetMode,
        now: Timestamp,
    ) -> astrocyte_core::Result<u64> {
        let bank = bank.clone();
        let selector = selector.clone();
        self.blocking(move |inner| inner.forget(&bank, &selector, mode, now))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema))]
    async fn list_banks(&self) -> astrocyte_core::Result<Vec<BankId>> {
        self.blocking(|inner| inner.list_banks()).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn scan(
        &self,
        bank: &BankId,
        after: Option<&MemoryId>,
        limit: usize,
        include_embeddings: bool,
    ) -> astrocyte_core::Result<Vec<Memory>> {
        let bank = bank.clone();
        let after = after.cloned();
        self.blocking(move |inner| inner.scan(&bank, after.as_ref(), limit, include_embeddings))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn list(&self, bank: &BankId, query: &ListQuery) -> astrocyte_core::Result<Vec<Memory>> {
        let bank = bank.clone();
        let query = query.clone();
        self.blocking(move |inner| inner.list(&bank, &query)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn update(
        &self,
        bank: &BankId,
        id: &MemoryId,
        patch: &MemoryPatch,
    ) -> astrocyte_core::Result<Option<Memory>> {
        let (bank, id, patch) = (bank.clone(), id.clone(), patch.clone());
        self.blocking(move |inner| inner.update(&bank, &id, &patch))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn changes(
        &self,
        bank: &BankId,
        query: &ChangeQuery,
    ) -> astrocyte_core::Result<Vec<Change>> {
        let bank = bank.clone();
        let query = query.clone();
        self.blocking(move |inner| inner.changes(&bank, &query))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn text_bytes(&self, bank: &BankId) -> astrocyte_core::Result<u64> {
        let bank = bank.clone();
        self.blocking(move |inner| inner.text_bytes(&bank)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn count(&self, bank: &BankId) -> astrocyte_core::Result<u64> {
        let bank = bank.clone();
        self.blocking(move |inner| inner.count(&bank)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank))]
    async fn thread_neighbours(
        &self,
        bank: &BankId,
        thread: &str,
        at: Timestamp,
        id: &MemoryId,
        radius: usize,
    ) -> astrocyte_core::Result<(Vec<Memory>, Vec<Memory>)> {
        let (bank, thread, id) = (bank.clone(), thread.to_string(), id.clone());
        self.blocking(move |inner| inner.thread_neighbours(&bank, &thread, at, &id, radius))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, bank = %bank, count = updates.len()))]
    async fn set_index_context(
        &self,
        bank: &BankId,
        updates: Vec<ContextUpdate>,
    ) -> astrocyte_core::Result<()> {
        let bank = bank.clone();
        self.blocking(move |inner| inner.set_index_context(&bank, &updates))
            .await
    }

    /// See `TenantInner::replace_embeddings` in `maintenance.rs`: a dimension change is only
    /// accepted while the tenant holds no memories.
    #[instrument(skip_all, fields(tenant = %self.inner.schema, model = %space.model, vectors = vectors.len()))]
    async fn replace_embeddings(
        &self,
        space: &EmbeddingSpace,
        vectors: Vec<(MemoryId, Vec<f32>)>,
    ) -> astrocyte_core::Result<()> {
        let space = space.clone();
        self.blocking(move |inner| inner.replace_embeddings(&space, vectors))
            .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, key))]
    async fn setting(&self, key: &str) -> astrocyte_core::Result<Option<serde_json::Value>> {
        let key = key.to_string();
        self.blocking(move |inner| inner.setting(&key)).await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, key))]
    async fn put_setting(
        &self,
        key: &str,
        value: Option<serde_json::Value>,
    ) -> astrocyte_core::Result<()> {
        let key = key.to_string();
        self.blocking(move |inner| inner.put_setting(&key, value.as_ref()))
            .await
    }

    fn jobs(&self) -> Option<Arc<dyn astrocyte_core::jobs::JobQueue>> {
        Some(Arc::new(SqliteJobQueue::new(
            Arc::clone(&self.inner),
            Arc::clone(&self.signals),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::SqliteOptions;

    fn memory(bank: &BankId, id: &str, vector: Vec<f32>) -> NewMemory {
        let mut memory = Memory::new(id, bank.clone(), format!("memory {id}"));
        memory.tags = vec!["t".into()];
        NewMemory::plain(memory, vector)
    }

    fn open_tenant(dir: &std::path::Path) -> Arc<TenantInner> {
        let schema = Schema::new("t").expect("schema");
        Arc::new(
            TenantInner::open(schema, dir.join("t.db"), SqliteOptions::default(), true)
                .expect("open"),
        )
    }

    fn forget_ids(inner: &Arc<TenantInner>, bank: &BankId, ids: &[&str], mode: ForgetMode) {
        let selector = ForgetSelector {
            memory_ids: Some(ids.iter().map(|id| id.to_string()).collect()),
            ..Default::default()
        };
        inner
            .forget(bank, &selector, mode, chrono::Utc::now())
            .expect("forget");
    }

    fn indexed(inner: &Arc<TenantInner>, bank: &BankId) -> (Vec<u64>, i64) {
        let reader = inner.readers.get().expect("reader");
        inner
            .with_index(&reader, bank, 2, |index| {
                let mut keys: Vec<u64> = index.hnsw.keys().collect();
                keys.sort_unstable();
                (keys, index.max_rowid)
            })
            .expect("index")
    }

    #[test]
    fn a_batch_that_fails_to_commit_leaves_the_index_as_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = open_tenant(dir.path());
        let bank = BankId::new("b").expect("bank");
        inner
            .insert(vec![memory(&bank, "a", vec![1.0, 0.0])])
            .expect("first insert");
        assert_eq!(indexed(&inner, &bank), (vec![1], 1), "loaded from the rows");
        // The second row reuses id "a": the unique index rejects it and the batch rolls back
        // after its vectors were already being indexed.
        let failed = inner.insert(vec![
            memory(&bank, "b", vec![0.0, 1.0]),
            memory(&bank, "a", vec![0.6, 0.8]),
        ]);
        assert!(failed.is_err());
        assert_eq!(
            indexed(&inner, &bank),
            (vec![1], 1),
            "nothing of the failed batch"
        );
        let reader = inner.readers.get().expect("reader");
        let compacted_before_snapshot = inner
            .with_index(&reader, &bank, 2, |index| index.purged_tombstones)
            .expect("index");
        drop(reader);
        assert!(
            compacted_before_snapshot,
            "vectors of rows that never existed are never written to a snapshot"
        );
        inner
            .insert(vec![memory(&bank, "c", vec![0.0, 1.0])])
            .expect("later insert");
        assert_eq!(indexed(&inner, &bank), (vec![1, 2], 2), "row ids continue");
        let hits = inner
            .nearest_each(&bank, &[vec![0.0, 1.0]], -1.0)
            .expect("nearest");
        assert_eq!(hits[0].as_ref().map(|(id, _)| id.as_str()), Some("c"));
    }

    #[test]
    fn an_acknowledged_insert_is_in_the_index_for_the_next_read() {
        // The graph work of an insert may still run after its rows commit and it returns;
        // a read that starts after the return must wait for it and see every vector.
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = open_tenant(dir.path());
        let bank = BankId::new("b").expect("bank");
        let mut state = 0x5EED_u64;
        let mut vector = || -> Vec<f32> {
            (0..48)
                .map(|_| {
                    // Knuth's MMIX generator: plenty for spread-out test vectors.
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        };
        inner
            .insert(vec![memory(&bank, "m0", vector())])
            .expect("first insert");
        assert_eq!(indexed(&inner, &bank).0.len(), 1, "the index is loaded");
        let mut total = 1;
        for batch in 0..6 {
            let vectors: Vec<Vec<f32>> = (0..400).map(|_| vector()).collect();
            let memories = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| memory(&bank, &format!("m{batch}-{i}"), v.clone()))
                .collect();
            inner.insert(memories).expect("insert");
            total += vectors.len();
            let (keys, max_rowid) = indexed(&inner, &bank);
            assert_eq!(keys.len(), total, "every vector of batch {batch}");
            assert_eq!(max_rowid, total as i64);
            let probe = vectors.last().expect("a vector").clone();
            let hits = inner.nearest_each(&bank, &[probe], 0.99).expect("nearest");
            let found = hits[0].as_ref().map(|(id, _)| id.as_str());
            assert_eq!(found, Some(format!("m{batch}-399").as_str()));
        }
    }

    #[test]
    fn exact_twins_are_confirmed_by_their_bytes_and_pick_the_smallest_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = open_tenant(dir.path());
        let bank = BankId::new("b").expect("bank");
        inner
            .insert(vec![
                memory(&bank, "z", vec![0.6, 0.8]),
                memory(&bank, "m", vec![0.6, 0.8]),
                memory(&bank, "q", vec![1.0, 0.0]),
            ])
            .expect("insert");
        let reader = inner.readers.get().expect("reader");
        // Row 3 stands for a hash collision: a candidate whose bytes differ is no twin.
        let blobs: Vec<Vec<u8>> = [vec![0.6, 0.8], vec![0.0, 1.0], vec![1.0, 0.0]]
            .iter()
            .map(|v| encode_vector(v))
            .collect();
        let twins =
            exact_twins(&reader, &bank, &blobs, &[vec![1, 2, 3], vec![3], vec![]]).expect("twins");
        assert_eq!(
            twins,
            vec![Some(2), None, None],
            "row 2 holds id m, smaller than z; row 3 is not named for the last"
        );
        let other = BankId::new("other").expect("bank");
        let twins = exact_twins(&reader, &other, &blobs[..1], &[vec![1, 2]]).expect("twins");
        assert_eq!(twins, vec![None], "rows of another bank are no twins");
        let plans = |sql: &str| -> Vec<String> {
            reader
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan")
                .query_map(params!["b"], |row| row.get::<_, String>(3))
                .expect("plan rows")
                .collect::<Result<_, _>>()
                .expect("plan rows")
        };
        let plan = plans(
            "SELECT rowid, embedding_hash FROM memories INDEXED BY memories_bank_rowid_hash
             WHERE bank_id = ?1",
        );
        assert!(
            plan.iter().any(|step| step.contains("COVERING INDEX")),
            "the twin map loads from the index alone: {plan:?}"
        );
    }

    /// The twin map holds the rows of every stored vector hash: after inserts, across a reopen
    /// (read from the table), and down to none after the last copy is purged.
    #[test]
    fn the_twin_map_follows_inserts_reopens_and_purges() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        let twin = vec![0.6, 0.8];
        let hash = vector_hash(&encode_vector(&twin));
        let rows_of = |inner: &Arc<TenantInner>| {
            let reader = inner.readers.get().expect("reader");
            inner
                .with_index(&reader, &bank, 2, |index| {
                    index.twins.rowids(hash).map(<[i64]>::to_vec)
                })
                .expect("index")
        };
        {
            let inner = open_tenant(dir.path());
            assert_eq!(rows_of(&inner), Some(vec![]), "empty bank");
            inner
                .insert(vec![
                    memory(&bank, "a", twin.clone()),
                    memory(&bank, "b", twin.clone()),
                    memory(&bank, "c", vec![1.0, 0.0]),
                ])
                .expect("insert");
            assert_eq!(rows_of(&inner), Some(vec![1, 2]));
            let found = inner
                .nearest_each(&bank, &[twin.clone(), vec![0.0, 1.0]], 0.99)
                .expect("nearest");
            assert_eq!(found[0].as_ref().map(|(id, _)| id.as_str()), Some("a"));
            assert_eq!(found[1], None);
            inner.close();
        }
        // Three vectors are many in unit tests: the map loads on another thread, or on the
        // first near-duplicate check, which waits for it.
        let inner = open_tenant(dir.path());
        let found = inner
            .nearest_each(&bank, std::slice::from_ref(&twin), 0.99)
            .expect("nearest");
        assert_eq!(found[0].as_ref().map(|(id, _)| id.as_str()), Some("a"));
        assert_eq!(
            rows_of(&inner),
            Some(vec![1, 2]),
            "read from the rows on load"
        );
        let forget = |ids: &[&str], mode| forget_ids(&inner, &bank, ids, mode);
        forget(&["a"], ForgetMode::Purge);
        assert_eq!(rows_of(&inner), Some(vec![2]), "b still stores it");
        forget(&["b"], ForgetMode::Soft);
        assert_eq!(
            rows_of(&inner),
            Some(vec![2]),
            "a soft-forgotten row is still stored"
        );
        let found = inner
            .nearest_each(&bank, std::slice::from_ref(&twin), 0.99)
            .expect("nearest");
        assert_eq!(found, vec![None], "forgotten rows are no twins");
        forget(&["b"], ForgetMode::Purge);
        assert_eq!(rows_of(&inner), Some(vec![]), "no row stores it any more");
    }

    /// Once a bank's keyword index is loaded, inserts, context rewrites, forgets and purges
    /// reach it; after a reopen it is rebuilt from the rows with the same answers. Filtered
    /// searches (exhaustive candidates, filtered by SQL) agree with it on which memories match.
    #[test]
    fn the_keyword_index_follows_writes_and_reopens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        let texted = |id: &str, text: &str| {
            NewMemory::plain(Memory::new(id, bank.clone(), text), vec![1.0, 0.0])
        };
        // A time range covering everything sends the search down the filtered path.
        let everything = chrono::DateTime::from_timestamp(0, 0)
            .zip(chrono::DateTime::from_timestamp(32_503_680_000, 0));
        let find = |inner: &Arc<TenantInner>, text: &str, filter: RecallFilter| {
            let request = SearchRequest {
                banks: vec![bank.clone()],
                vector: None,
                text: Some(text.into()),
                recency: false,
                limit: 10,
                filter,
            };
            let hits = inner
                .search(&request)
                .expect("search")
                .keyword
                .expect("keyword");
            hits.hits
                .into_iter()
                .map(|hit| hit.memory.id)
                .collect::<Vec<_>>()
        };
        let expected = ["a", "c", "b"];
        {
            let inner = open_tenant(dir.path());
            inner
                .insert(vec![texted("a", "apple pie"), texted("b", "banana bread")])
                .expect("insert");
            assert_eq!(
                find(&inner, "apples", RecallFilter::default()),
                vec!["a"],
                "stemmed; loads the index"
            );
            inner
                .insert(vec![
                    texted("c", "apple tart and apple jam"),
                    texted("d", "fig"),
                ])
                .expect("insert");
            inner
                .set_index_context(
                    &bank,
                    &[ContextUpdate {
                        id: "b".into(),
                        index_text: "banana bread".into(),
                        index_context: Some("apple".into()),
                    }],
                )
                .expect("context");
            assert_eq!(
                find(&inner, "apple", RecallFilter::default()),
                expected,
                "own text (shorter first) before context"
            );
            let filtered = RecallFilter {
                time_range: everything,
                ..Default::default()
            };
            assert_eq!(
                find(&inner, "apple", filtered),
                expected,
                "the filtered path agrees"
            );
            inner.close();
        }
        let inner = open_tenant(dir.path());
        assert_eq!(
            find(&inner, "apple", RecallFilter::default()),
            expected,
            "rebuilt from the rows"
        );
        let forget = |ids: &[&str], mode| forget_ids(&inner, &bank, ids, mode);
        forget(&["a"], ForgetMode::Soft);
        forget(&["c"], ForgetMode::Purge);
        assert_eq!(find(&inner, "apple", RecallFilter::default()), vec!["b"]);
        assert_eq!(
            find(&inner, "fig banana", RecallFilter::default()),
            vec!["d", "b"],
            "the shorter document first"
        );
        let tagged = RecallFilter {
            tags: Some(vec!["t".into()]),
            ..Default::default()
        };
        let tagged = find(&inner, "apple", tagged);
        assert!(tagged.is_empty(), "no memory has the tag: {tagged:?}");
    }

    /// A bank of generated texts for the keyword snapshot tests: memories over a small
    /// vocabulary, so queries match many documents and ties happen.
    fn keyword_bank(inner: &Arc<TenantInner>, bank: &BankId, from: usize, to: usize) {
        const WORDS: [&str; 12] = [
            "apple", "river", "stone", "garden", "violin", "cloud", "ember", "harbor", "lantern",
            "meadow", "orbit", "quartz",
        ];
        let memories = (from..to)
            .map(|i| {
                let text: Vec<&str> = (0..1 + i % 7)
                    .map(|j| WORDS[(i * 7 + j * j * 3 + i / 5) % WORDS.len()])
                    .collect();
                NewMemory::plain(
                    Memory::new(format!("m{i}"), bank.clone(), text.join(" ")),
                    vec![1.0, 0.0],
                )
            })
            .collect();
        inner.insert(memories).expect("insert");
    }

    /// Writes [`keyword_bank`]'s 900 memories into a tenant at `dir`, loads their keyword
    /// index, stores its snapshot and closes the tenant.
    fn snapshotted_keyword_bank(dir: &std::path::Path, bank: &BankId) {
        let inner = open_tenant(dir);
        keyword_bank(&inner, bank, 0, 900);
        let reader = inner.readers.get().expect("reader");
        inner
            .with_keyword_index(&reader, bank, |_| ())
            .expect("load");
        drop(reader);
        inner.save_all_snapshots(false).expect("snapshot");
        inner.close();
    }

    /// A keyword index's answers to a list of queries.
    type Answers = Vec<Vec<(i64, f32)>>;

    /// A way to damage a stored snapshot.
    type Damage<'a> = &'a dyn Fn(&mut Connection) -> StoreResult<()>;

    /// Every one- and two-word query over the test vocabulary, at two depths: what the loaded
    /// index answers, scores included.
    fn keyword_answers(index: &crate::keyword::KeywordIndex) -> Answers {
        const WORDS: [&str; 13] = [
            "apple", "river", "stone", "garden", "violin", "cloud", "ember", "harbor", "lantern",
            "meadow", "orbit", "quartz", "jam",
        ];
        let mut answers = Vec::new();
        for a in WORDS {
            for b in WORDS {
                let words = crate::keyword::KeywordIndex::query_stems(&[a.into(), b.into()]);
                answers.push(index.top(&words, 5));
                answers.push(index.top(&words, 1000));
            }
        }
        answers
    }

    /// The bank's keyword index as loaded (snapshot or rebuild) and as rebuilt from the rows
    /// now: answers of both, and whether the load found a usable snapshot.
    fn loaded_and_rebuilt(
        inner: &Arc<TenantInner>,
        bank: &BankId,
    ) -> (Answers, Answers, bool, u64) {
        let reader = inner.readers.get().expect("reader");
        let (loaded, from_snapshot, unsaved) = inner
            .with_keyword_index(&reader, bank, |index| {
                (
                    keyword_answers(index),
                    !index.snapshot_missing,
                    index.unsaved,
                )
            })
            .expect("keyword index");
        let rebuilt = crate::keyword::KeywordIndex::build(&reader, bank).expect("build");
        (loaded, keyword_answers(&rebuilt), from_snapshot, unsaved)
    }

    fn keyword_snapshots(inner: &Arc<TenantInner>) -> (i64, i64) {
        let reader = inner.readers.get().expect("reader");
        reader
            .query_row(
                "SELECT (SELECT COUNT(*) FROM keyword_index), (SELECT COUNT(*) FROM keyword_index_chunks)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("count")
    }

    /// A keyword snapshot is written in pieces, loads back, and catches up with everything
    /// that changed after it (new rows, rewritten contexts, soft forgets, even an edit that
    /// bypassed the store): the loaded index answers exactly, scores and ties included, as one
    /// rebuilt from the rows.
    #[test]
    fn a_keyword_snapshot_catches_up_and_ranks_as_a_rebuild() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        {
            let inner = open_tenant(dir.path());
            keyword_bank(&inner, &bank, 0, 900);
            let (loaded, rebuilt, from_snapshot, _) = loaded_and_rebuilt(&inner, &bank);
            assert!(!from_snapshot, "none written yet");
            assert_eq!(loaded, rebuilt);
            // Some rows change before the snapshot, so the live index has dead numbers and
            // rows out of row-id order that the snapshot must not carry over.
            inner
                .set_index_context(
                    &bank,
                    &[ContextUpdate {
                        id: "m3".into(),
                        index_text: "quartz quartz".into(),
                        index_context: Some("jam".into()),
                    }],
                )
                .expect("context");
            inner.save_all_snapshots(false).expect("snapshot");
            let (rows, pieces) = keyword_snapshots(&inner);
            assert_eq!(rows, 1);
            assert!(pieces >= 2, "{pieces} pieces");
            inner.close();
        }
        {
            let inner = open_tenant(dir.path());
            let (loaded, rebuilt, from_snapshot, unsaved) = loaded_and_rebuilt(&inner, &bank);
            assert!(from_snapshot && unsaved == 0, "loaded as written");
            assert_eq!(loaded, rebuilt);
            inner.close();
        }
        let inner = open_tenant(dir.path());
        keyword_bank(&inner, &bank, 900, 940);
        inner
            .set_index_context(
                &bank,
                &[ContextUpdate {
                    id: "m10".into(),
                    index_text: "orbit".into(),
                    index_context: Some("jam jam".into()),
                }],
            )
            .expect("context");
        let selector = ForgetSelector {
            memory_ids: Some(vec!["m20".into(), "m21".into(), "m905".into()]),
            ..Default::default()
        };
        inner
            .forget(&bank, &selector, ForgetMode::Soft, chrono::Utc::now())
            .expect("forget");
        inner
            .with_writer(|conn| {
                conn.execute(
                    "UPDATE memories SET text = 'jam violin' WHERE bank_id = 'b' AND id = 'm40'",
                    [],
                )?;
                Ok(())
            })
            .expect("edit by hand");
        let (loaded, rebuilt, from_snapshot, unsaved) = loaded_and_rebuilt(&inner, &bank);
        assert!(from_snapshot, "caught up rather than rebuilt");
        assert!(unsaved >= 40 + 3 + 2, "{unsaved} changes caught up");
        assert_eq!(loaded, rebuilt, "stale snapshot caught up exactly");
        let reader = inner.readers.get().expect("reader");
        let jam: Vec<i64> = inner
            .with_keyword_index(&reader, &bank, |index| {
                index
                    .top(&["jam".to_string()], 10)
                    .into_iter()
                    .map(|(rowid, _)| rowid)
                    .collect()
            })
            .expect("search");
        // m3 (row 4) before the snapshot, m10 (row 11) and m40 (row 41) after it.
        // "jam" weighs 2 in m40's text and in m10's context (twice, at half weight), 1 in m3's.
        assert_eq!(
            jam,
            vec![41, 11, 4],
            "the shorter document first, then the heavier"
        );
    }

    /// A damaged or truncated keyword snapshot is not used: the index is rebuilt from the rows
    /// and answers as before.
    #[test]
    fn a_corrupt_keyword_snapshot_is_rebuilt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        snapshotted_keyword_bank(dir.path(), &bank);
        let flip_a_bit = |conn: &mut Connection| -> StoreResult<()> {
            let mut data: Vec<u8> = conn.query_row(
                "SELECT data FROM keyword_index_chunks WHERE seq = 2",
                [],
                |row| row.get(0),
            )?;
            data[1000] ^= 0x04;
            conn.execute(
                "UPDATE keyword_index_chunks SET data = ?1 WHERE seq = 2",
                [data],
            )?;
            Ok(())
        };
        let drop_last_piece = |conn: &mut Connection| -> StoreResult<()> {
            conn.execute(
                "DELETE FROM keyword_index_chunks WHERE seq = (SELECT MAX(seq) FROM keyword_index_chunks)",
                [],
            )?;
            Ok(())
        };
        let garbage_header = |conn: &mut Connection| -> StoreResult<()> {
            conn.execute(
                "UPDATE keyword_index_chunks SET data = zeroblob(4096) WHERE seq = 1",
                [],
            )?;
            Ok(())
        };
        let cases: [Damage; 3] = [&flip_a_bit, &drop_last_piece, &garbage_header];
        for (case, damage) in cases.iter().enumerate() {
            let inner = open_tenant(dir.path());
            inner.with_writer(|conn| damage(conn)).expect("damage");
            let (loaded, rebuilt, from_snapshot, _) = loaded_and_rebuilt(&inner, &bank);
            assert!(!from_snapshot, "case {case}: damaged snapshot used");
            assert_eq!(loaded, rebuilt, "case {case}");
            // A fresh snapshot for the next case to damage.
            inner.save_all_snapshots(false).expect("snapshot");
            assert_eq!(keyword_snapshots(&inner).0, 1);
            inner.close();
        }
    }

    /// Forgetting after a snapshot: a soft forget is caught up at the next load; a purge deletes
    /// the snapshot (it holds the purged words), and the next close writes a new one.
    #[test]
    fn forgets_after_a_keyword_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        let forget = |inner: &Arc<TenantInner>, id: &str, mode| {
            let selector = ForgetSelector {
                memory_ids: Some(vec![id.into()]),
                ..Default::default()
            };
            inner
                .forget(&bank, &selector, mode, chrono::Utc::now())
                .expect("forget");
        };
        let has = |answers: &[Vec<(i64, f32)>], rowid: i64| {
            answers.iter().any(|a| a.iter().any(|(r, _)| *r == rowid))
        };
        snapshotted_keyword_bank(dir.path(), &bank);
        {
            let inner = open_tenant(dir.path());
            // Not loaded: only the trigger sees this forget.
            forget(&inner, "m6", ForgetMode::Soft);
            let (loaded, rebuilt, from_snapshot, _) = loaded_and_rebuilt(&inner, &bank);
            assert!(from_snapshot);
            assert_eq!(loaded, rebuilt);
            assert!(!has(&loaded, 7), "the forgotten row (row id 7) is gone");
            forget(&inner, "m8", ForgetMode::Purge);
            assert_eq!(keyword_snapshots(&inner), (0, 0), "deleted with the purge");
            // What dropping the last handle runs: save what is worth saving.
            inner.save_all_snapshots(true).expect("close");
            inner.close();
        }
        let inner = open_tenant(dir.path());
        assert_eq!(keyword_snapshots(&inner).0, 1, "written again on close");
        let (loaded, rebuilt, from_snapshot, _) = loaded_and_rebuilt(&inner, &bank);
        assert!(from_snapshot);
        assert_eq!(loaded, rebuilt);
        assert!(!has(&loaded, 7) && !has(&loaded, 9));
        assert!(has(&loaded, 10));
    }

    /// A snapshot is stored in pieces (4 KiB in unit tests, 256 MiB otherwise: SQLite refuses
    /// values over 1 GB) and loads back whole; a purge deletes every piece.
    #[test]
    fn snapshots_are_stored_in_pieces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bank = BankId::new("b").expect("bank");
        let vector = |i: usize| (0..16).map(|j| ((i * 16 + j) as f32).sin()).collect();
        let pieces = |inner: &Arc<TenantInner>| -> i64 {
            let reader = inner.readers.get().expect("reader");
            reader
                .query_row("SELECT COUNT(*) FROM vector_index_chunks", [], |row| {
                    row.get(0)
                })
                .expect("count")
        };
        {
            let inner = open_tenant(dir.path());
            let memories = (0..300)
                .map(|i| memory(&bank, &format!("m{i}"), vector(i)))
                .collect();
            inner.insert(memories).expect("insert");
            assert_eq!(indexed(&inner, &bank).0.len(), 300);
            inner.save_all_snapshots(false).expect("snapshot");
            assert!(pieces(&inner) >= 3, "{} pieces", pieces(&inner));
            inner.close();
        }
        let inner = open_tenant(dir.path());
        let reader = inner.readers.get().expect("reader");
        let (keys, unsaved) = inner
            .with_index(&reader, &bank, 16, |index| {
                (index.hnsw.len(), (index.unsaved, index.snapshot_missing))
            })
            .expect("index");
        drop(reader);
        assert_eq!((keys, unsaved), (300, (0, false)), "loaded from the pieces");
        let selector = ForgetSelector {
            memory_ids: Some(vec!["m0".into()]),
            ..Default::default()
        };
        inner
            .forget(&bank, &selector, ForgetMode::Purge, chrono::Utc::now())
            .expect("purge");
        assert_eq!(pieces(&inner), 0, "purged with the snapshot");
    }

    #[test]
    fn parallel_map_keeps_the_order() {
        for size in [0usize, 1, 63, 64, 500, 1001] {
            let items: Vec<usize> = (0..size).collect();
            let doubled = in_parallel(items, |i| i * 2);
            assert_eq!(
                doubled,
                (0..size).map(|i| i * 2).collect::<Vec<_>>(),
                "size {size}"
            );
        }
    }
}
