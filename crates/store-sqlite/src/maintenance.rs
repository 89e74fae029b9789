//! Tenant maintenance outside the memory hot path: tenant-level settings (a small JSON
//! key-value table) and replacing stored vectors after an embedding model change. Deciding
//! what to re-embed, and with which model, is the worker's job, not this module's.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use astrocyte_core::store::EmbeddingSpace;
use astrocyte_core::{BankId, Error, MemoryId};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::error::{StoreError, StoreResult};
use crate::inner::{read_space, TenantInner};
use crate::rows::{encode_vector, to_micros, vector_hash};

impl TenantInner {
    /// A setting's JSON value, if set.
    pub(crate) fn setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
        let reader = self.readers.get()?;
        let stored: Option<String> = reader
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        Ok(stored.as_deref().map(serde_json::from_str).transpose()?)
    }

    /// Stores a setting, or removes it when `value` is `None`.
    pub(crate) fn put_setting(
        &self,
        key: &str,
        value: Option<&serde_json::Value>,
    ) -> StoreResult<()> {
        let value = value.map(serde_json::to_string).transpose()?;
        self.with_writer(|conn| {
            match value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )?
                    .execute(params![key, value, to_micros(chrono::Utc::now())])?,
                None => conn
                    .prepare_cached("DELETE FROM settings WHERE key = ?1")?
                    .execute([key])?,
            };
            Ok(())
        })
    }

    /// Replaces the vectors of the memories with the given ids (in every bank holding such an
    /// id, soft-deleted rows included: an imported copy of a bank shares ids and texts) and
    /// records `space`, all in one transaction; ids no longer stored are skipped.
    ///
    /// The stored index snapshots of the touched banks are deleted in the same transaction
    /// (they hold the old vectors) and loaded indexes are updated in place, so searches see
    /// the new vectors at once and a restart rebuilds from the rows.
    ///
    /// A different dimension is `Unsupported` while the tenant holds any memory (soft-deleted
    /// ones included): old and new vectors could not share an index. An empty tenant simply
    /// switches dimension, dropping its (empty) indexes.
    pub(crate) fn replace_embeddings(
        self: &Arc<Self>,
        space: &EmbeddingSpace,
        vectors: Vec<(MemoryId, Vec<f32>)>,
    ) -> StoreResult<()> {
        if space.dimension == 0 {
            return Err(Error::invalid("embedding dimension must be at least 1").into());
        }
        for (id, vector) in &vectors {
            if vector.len() != space.dimension {
                return Err(Error::invalid(format!(
                    "memory {id} has a vector of dimension {}, expected {}",
                    vector.len(),
                    space.dimension
                ))
                .into());
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "memory {id} has a non-finite vector component"
                ))
                .into());
            }
        }
        let blobs: Vec<Vec<u8>> = vectors.iter().map(|(_, v)| encode_vector(v)).collect();
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored_dimension = match read_space(&tx)? {
                Some(stored) => Some(stored.dimension),
                // Rows written without a recorded space still fix the dimension.
                None => tx
                    .query_row("SELECT length(embedding) / 4 FROM memories LIMIT 1", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .optional()?
                    .map(|d| d as usize),
            };
            let dimension_changes = stored_dimension.is_some_and(|d| d != space.dimension);
            if dimension_changes {
                let holds_memories: bool =
                    tx.query_row("SELECT EXISTS (SELECT 1 FROM memories)", [], |row| row.get(0))?;
                if holds_memories {
                    return Err(Error::Unsupported(format!(
                        "cannot change tenant {}'s vector dimension from {} to {} while it holds \
                         memories; purge them first or use a model of dimension {}",
                        self.schema,
                        stored_dimension.unwrap_or_default(),
                        space.dimension,
                        stored_dimension.unwrap_or_default()
                    ))
                    .into());
                }
                tx.execute("DELETE FROM vector_index", [])?;
            }
            // Visible rows replaced per bank, for the loaded indexes after the commit.
            let mut replaced: BTreeMap<BankId, Vec<(i64, usize)>> = BTreeMap::new();
            {
                let mut update = tx.prepare_cached(
                    "UPDATE memories SET embedding = ?2, embedding_hash = ?3 WHERE id = ?1
                     RETURNING rowid, bank_id, forgotten_at IS NULL",
                )?;
                for (position, ((id, _), blob)) in vectors.iter().zip(&blobs).enumerate() {
                    let mut rows = update.query(params![id, blob, vector_hash(blob)])?;
                    while let Some(row) = rows.next()? {
                        let bank: String = row.get(1)?;
                        let bank = BankId::new(bank).map_err(|e| {
                            StoreError::CorruptRow(format!("stored bank id is invalid: {e}"))
                        })?;
                        let entry = replaced.entry(bank).or_default();
                        if row.get::<_, bool>(2)? {
                            entry.push((row.get(0)?, position));
                        }
                    }
                }
            }
            for bank in replaced.keys() {
                tx.execute("DELETE FROM vector_index WHERE bank_id = ?1", [bank.as_str()])?;
            }
            tx.execute(
                "INSERT INTO embedding_space (singleton, model, dimension, recorded_at) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (singleton) DO UPDATE SET model = excluded.model,
                     dimension = excluded.dimension, recorded_at = excluded.recorded_at",
                params![space.model, space.dimension as i64, to_micros(chrono::Utc::now())],
            )?;
            tx.commit()?;
            // Still under the writer lock: index changes follow commit order, as for inserts.
            *self.space.lock() = Some(space.clone());
            if dimension_changes {
                let slots: Vec<_> = self.banks.lock().values().cloned().collect();
                for slot in slots {
                    // The tenant is empty: the next search builds a fresh index of the new size.
                    *slot.index.write() = None;
                    slot.purge_generation.fetch_add(1, Ordering::SeqCst);
                }
            }
            for (bank, rows) in &replaced {
                let Some(slot) = self.loaded_slot(bank) else { continue };
                let wanted = {
                    let mut guard = slot.index.write();
                    match guard.as_mut() {
                        Some(index) => {
                            for (rowid, position) in rows {
                                index.replace(*rowid, &vectors[*position].1);
                            }
                            // Its stored snapshot was deleted with the old vectors.
                            index.snapshot_missing = true;
                            // Rows changed hashes, forgotten ones too: read them afresh.
                            match index.twins.reload(conn, bank) {
                                Ok(()) => {
                                    index.wants_background_snapshot(self.options.snapshot_every)
                                }
                                Err(error) => {
                                    // Unloaded instead: the next use rebuilds it from the table.
                                    tracing::warn!(%error, "twin map reload failed");
                                    *guard = None;
                                    false
                                }
                            }
                        }
                        None => false,
                    }
                };
                // A snapshot captured before this change holds the old vectors: never store it.
                slot.purge_generation.fetch_add(1, Ordering::SeqCst);
                self.maybe_schedule_snapshot(bank, &slot, wanted);
            }
            Ok(())
        })
    }
}
