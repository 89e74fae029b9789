//! Listings, edits of tags and metadata, and the change log. Entries are written by the
//! statement that makes the change (insert, forget, erase, edit), so they commit with it.
//!
//! Sequence numbers are handed out before commit, so they are not in commit order: a reader
//! that resumed after sequence 9 could miss an 8 committed later. Each entry therefore records
//! its transaction id and the feed is ordered by (transaction, sequence); only entries of
//! transactions older than the oldest one still running are final, so a read stops there
//! (and waits briefly for short write transactions to end). A change cursor is
//! `<transaction>-<sequence>`.

use std::time::Duration;

use astrocyte_core::browse::{Change, ChangeKind, ChangeQuery, ListOrder, ListQuery, MemoryPatch};
use astrocyte_core::{BankId, Error, Memory, MemoryId, Result, Timestamp};
use tokio_postgres::types::Type;

use crate::error::PgError;
use crate::search::filter_sql;
use crate::sql::{memory_from_row, to_i64, Params, MEMORY_COLUMNS};
use crate::tenant::PostgresTenant;

/// How long a change-feed read waits for older write transactions to end before returning
/// what is final so far.
const FEED_SETTLE: Duration = Duration::from_secs(1);

/// `value` as an ILIKE pattern matching itself literally (escape character `\`).
pub(crate) fn like_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn decode_since(since: &str) -> Result<(u64, i64)> {
    let invalid = || Error::invalid(format!("cursor {since:?} is not a change cursor"));
    // A bare sequence number (the embedded store's form) starts from the oldest transaction.
    let (xid, seq) = since.split_once('-').unwrap_or(("0", since));
    Ok((
        xid.parse().map_err(|_| invalid())?,
        seq.parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(invalid)?,
    ))
}

impl PostgresTenant {
    pub(crate) async fn list_memories(
        &self,
        bank: &BankId,
        query: &ListQuery,
    ) -> Result<Vec<Memory>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let filter = filter_sql(&mut params, &[bank.as_str().to_string()], &query.filter);
        let mut clauses = vec![filter.all()];
        if let Some(prefix) = &query.text_prefix {
            let pattern = params.push(format!("{}%", like_literal(prefix)), Type::TEXT);
            clauses.push(format!("m.text ILIKE {pattern} ESCAPE '\\'"));
        }
        if let Some(needle) = &query.text_contains {
            let pattern = params.push(format!("%{}%", like_literal(needle)), Type::TEXT);
            clauses.push(format!("m.text ILIKE {pattern} ESCAPE '\\'"));
        }
        if let Some(group) = &query.group_id {
            clauses.push(format!(
                "m.chunk_group = {}",
                params.push(group.clone(), Type::TEXT)
            ));
        }
        let order = match query.order {
            ListOrder::Newest => {
                if let Some(after) = &query.after {
                    let at = params.push(after.retained_at, Type::TIMESTAMPTZ);
                    let id = params.push(after.id.clone(), Type::TEXT);
                    clauses.push(format!("(m.retained_at, m.id) < ({at}, {id})"));
                }
                "m.retained_at DESC, m.id DESC"
            }
            ListOrder::Id => {
                if let Some(after) = &query.after {
                    clauses.push(format!(
                        "m.id > {}",
                        params.push(after.id.clone(), Type::TEXT)
                    ));
                }
                "m.id"
            }
        };
        let limit = params.push(to_i64(query.limit), Type::INT8);
        let sql = format!(
            "SELECT {MEMORY_COLUMNS} FROM {table} m WHERE {} ORDER BY {order} LIMIT {limit}",
            clauses.join(" AND "),
            table = self.binding.tables.memories
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        rows.iter()
            .map(|row| Ok(memory_from_row(row, false)?))
            .collect()
    }

    pub(crate) async fn update_memory(
        &self,
        bank: &BankId,
        id: &MemoryId,
        patch: &MemoryPatch,
    ) -> Result<Option<Memory>> {
        let mut params = Params::default();
        let tags = params.push(patch.tags.clone(), Type::TEXT_ARRAY);
        let metadata = params.push(
            patch.metadata.as_ref().map(|m| {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }),
            Type::JSONB,
        );
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let id = params.push(id.clone(), Type::TEXT);
        let sql = format!(
            "WITH updated AS (UPDATE {table} m SET tags = COALESCE({tags}::text[], m.tags), \
               metadata = COALESCE({metadata}::jsonb, m.metadata) \
               WHERE m.bank_id = {bank} AND m.id = {id} AND m.forgotten_at IS NULL \
               RETURNING {MEMORY_COLUMNS}), \
             logged AS (INSERT INTO {changes} (bank_id, memory_id, kind) \
               SELECT bank_id, id, 'updated' FROM updated) \
             SELECT * FROM updated",
            table = self.binding.tables.memories,
            changes = self.binding.tables.changes,
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        self.wrote().await;
        rows.first()
            .map(|row| Ok(memory_from_row(row, false)?))
            .transpose()
    }

    pub(crate) async fn read_changes(
        &self,
        bank: &BankId,
        query: &ChangeQuery,
    ) -> Result<Vec<Change>> {
        let (xid, seq) = match &query.since {
            Some(since) => decode_since(since)?,
            None => (0, 0),
        };
        let mut params = Params::default();
        let bank_param = params.push(bank.as_str().to_string(), Type::TEXT);
        let xid_param = params.push(xid.to_string(), Type::TEXT);
        let seq_param = params.push(seq, Type::INT8);
        let limit = params.push(to_i64(query.limit), Type::INT8);
        let one_memory = match &query.memory_id {
            Some(id) => format!(" AND c.memory_id = {}", params.push(id.clone(), Type::TEXT)),
            None => String::new(),
        };
        // A tail reads back from the newest final entry: nothing past the horizon, no wait.
        let (settled, order) = if query.tail {
            (
                " AND c.xid < pg_snapshot_xmin(pg_current_snapshot())",
                "c.xid DESC, c.seq DESC",
            )
        } else {
            ("", "c.xid, c.seq")
        };
        let sql = format!(
            "SELECT c.xid::text AS xid, c.seq, c.memory_id, c.kind, c.at, \
               pg_snapshot_xmin(pg_current_snapshot())::text AS horizon \
             FROM {changes} c \
             WHERE c.bank_id = {bank_param} AND (c.xid, c.seq) > ({xid_param}::text::xid8, {seq_param}){one_memory}{settled} \
             ORDER BY {order} LIMIT {limit}",
            changes = self.binding.tables.changes
        );
        let started = tokio::time::Instant::now();
        loop {
            // The feed may come from a replica: its snapshot's horizon is as safe as the
            // primary's, since a standby counts every transaction it has not seen end as running.
            let rows = self.read_rows("", &sql, &params).await?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut unsettled = false;
            for row in &rows {
                let text = |name: &str| -> Result<String> {
                    row.try_get(name)
                        .map_err(|e| PgError::Decode(format!("column {name}: {e}")).into())
                };
                let number = |value: String| {
                    value
                        .parse::<u64>()
                        .map_err(|_| PgError::Decode(format!("transaction id {value:?}")))
                };
                let xid = number(text("xid")?)?;
                // A memory's history is read whole; only the bank's feed must never skip.
                if query.memory_id.is_none() && !query.tail && xid >= number(text("horizon")?)? {
                    unsettled = true;
                    break;
                }
                let seq: i64 = row.try_get("seq").map_err(PgError::from)?;
                let kind = text("kind")?;
                let at: Timestamp = row.try_get("at").map_err(PgError::from)?;
                changes.push(Change {
                    cursor: format!("{xid}-{seq}"),
                    kind: ChangeKind::parse(&kind)
                        .ok_or_else(|| PgError::Decode(format!("unknown change kind {kind:?}")))?,
                    memory_id: text("memory_id")?,
                    at,
                });
            }
            if query.tail {
                changes.reverse();
                return Ok(changes);
            }
            if !unsettled || started.elapsed() >= FEED_SETTLE {
                return Ok(changes);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
