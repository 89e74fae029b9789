//! Listings, edits of tags and metadata, and the change log (written by the triggers of
//! migration 5, read here). A change cursor is the log's sequence number: with one writer at a
//! time, sequence order is commit order.

use astrocyte_core::browse::{Change, ChangeKind, ChangeQuery, ListOrder, ListQuery, MemoryPatch};
use astrocyte_core::{BankId, Error, Memory, MemoryId};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, TransactionBehavior};

use crate::error::{StoreError, StoreResult};
use crate::filter::Conditions;
use crate::inner::TenantInner;
use crate::rows::{from_micros, to_micros, RawMemory, MEMORY_COLUMNS};

/// `value` as a LIKE pattern matching itself literally (escape character `\`).
fn like_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A sequence number; `<n>-<seq>` (the PostgreSQL form) is read as its sequence number, so
/// one cursor shape is valid everywhere.
fn decode_since(since: &str) -> StoreResult<i64> {
    let seq = since.split_once('-').map_or(since, |(_, seq)| seq);
    seq.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| Error::invalid(format!("cursor {since:?} is not a change cursor")).into())
}

impl TenantInner {
    pub(crate) fn list(&self, bank: &BankId, query: &ListQuery) -> StoreResult<Vec<Memory>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut conditions = Conditions::for_bank(bank, &query.filter)?;
        if let Some(prefix) = &query.text_prefix {
            conditions.push(
                "m.text LIKE ? ESCAPE '\\'",
                [Value::Text(format!("{}%", like_literal(prefix)))],
            );
        }
        if let Some(needle) = &query.text_contains {
            conditions.push(
                "m.text LIKE ? ESCAPE '\\'",
                [Value::Text(format!("%{}%", like_literal(needle)))],
            );
        }
        if let Some(group) = &query.group_id {
            conditions.push(
                "json_extract(m.chunk, '$.group_id') = ?",
                [Value::Text(group.clone())],
            );
        }
        let order = match query.order {
            ListOrder::Newest => {
                if let Some(after) = &query.after {
                    let at = to_micros(after.retained_at);
                    conditions.push(
                        "(m.retained_at < ? OR (m.retained_at = ? AND m.id < ?))",
                        [
                            Value::Integer(at),
                            Value::Integer(at),
                            Value::Text(after.id.clone()),
                        ],
                    );
                }
                "m.retained_at DESC, m.id DESC"
            }
            ListOrder::Id => {
                if let Some(after) = &query.after {
                    conditions.push("m.id > ?", [Value::Text(after.id.clone())]);
                }
                "m.id"
            }
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m WHERE {} ORDER BY {order} LIMIT {limit}",
            conditions.sql()
        ))?;
        let raw: Vec<RawMemory> = statement
            .query_map(params_from_iter(conditions.params()), |row| {
                RawMemory::from_row(row, false)
            })?
            .collect::<Result<_, _>>()?;
        raw.into_iter().map(RawMemory::into_memory).collect()
    }

    pub(crate) fn text_bytes(&self, bank: &BankId) -> StoreResult<u64> {
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(
            "SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB))), 0) FROM memories
             WHERE bank_id = ?1 AND forgotten_at IS NULL",
        )?;
        let bytes: i64 = statement.query_row([bank.as_str()], |row| row.get(0))?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    pub(crate) fn update(
        &self,
        bank: &BankId,
        id: &MemoryId,
        patch: &MemoryPatch,
    ) -> StoreResult<Option<Memory>> {
        let tags = patch.tags.as_ref().map(serde_json::to_string).transpose()?;
        let metadata = patch
            .metadata
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // One statement, so the change log gets one `updated` entry per edit.
            let rowid: Option<i64> = tx
                .query_row(
                    "UPDATE memories SET tags = COALESCE(?1, tags), metadata = COALESCE(?2, metadata)
                     WHERE bank_id = ?3 AND id = ?4 AND forgotten_at IS NULL RETURNING rowid",
                    params![tags, metadata, bank.as_str(), id],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(rowid) = rowid else {
                return Ok(None);
            };
            if let Some(tags) = &patch.tags {
                tx.execute("DELETE FROM memory_tags WHERE memory_rowid = ?1", [rowid])?;
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO memory_tags (tag, memory_rowid) VALUES (?1, ?2)",
                )?;
                for tag in tags {
                    insert.execute(params![tag, rowid])?;
                }
            }
            let raw = tx.query_row(
                &format!("SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.rowid = ?1"),
                [rowid],
                |row| RawMemory::from_row(row, false),
            )?;
            tx.commit()?;
            raw.into_memory().map(Some)
        })
    }

    pub(crate) fn changes(&self, bank: &BankId, query: &ChangeQuery) -> StoreResult<Vec<Change>> {
        let since = query.since.as_deref().map(decode_since).transpose()?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let reader = self.readers.get()?;
        // Two shapes, so each uses its own index (a memory's history, or the bank's log).
        let one_memory = if query.memory_id.is_some() {
            " AND memory_id = ?4"
        } else {
            ""
        };
        let direction = if query.tail { "DESC" } else { "ASC" };
        let mut statement = reader.prepare_cached(&format!(
            "SELECT seq, memory_id, kind, at FROM memory_changes
             WHERE bank_id = ?1 AND seq > ?2{one_memory} ORDER BY seq {direction} LIMIT ?3"
        ))?;
        let mut values = vec![
            Value::Text(bank.as_str().to_string()),
            Value::Integer(since.unwrap_or(0)),
            Value::Integer(limit),
        ];
        if let Some(id) = &query.memory_id {
            values.push(Value::Text(id.clone()));
        }
        let rows: Vec<(i64, String, String, i64)> = statement
            .query_map(params_from_iter(values), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut rows = rows;
        if query.tail {
            rows.reverse();
        }
        rows.into_iter()
            .map(|(seq, memory_id, kind, at)| {
                Ok(Change {
                    cursor: seq.to_string(),
                    kind: ChangeKind::parse(&kind).ok_or_else(|| {
                        StoreError::CorruptRow(format!("unknown change kind {kind:?}"))
                    })?,
                    memory_id,
                    at: from_micros(at)?,
                })
            })
            .collect()
    }
}
