//! The entity strategy and a bank's entity table, both read from `memory_entities` joined to
//! the visible memories.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use astrocyte_core::entities::EntityKind;
use astrocyte_core::store::{EntityQuery, EntitySummary, ScoredMemory, StrategyHits};
use astrocyte_core::{BankId, RecallFilter};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::error::StoreResult;
use crate::filter::{json_list, Conditions, LISTED_ROWS};
use crate::inner::TenantInner;
use crate::rows::{from_micros, RawMemory, MEMORY_COLUMNS};

/// Entities co-occurring with the query's that one hop follows.
const HOP_ENTITIES: usize = 5;

/// A key mentioned by more memories than this is a near-stopword in its bank (its weight is
/// small anyway); following it would read that many rows per recall, so it is skipped.
const MAX_KEY_MEMORIES: i64 = 2_000;

impl TenantInner {
    pub(crate) fn entity_hits(
        &self,
        banks: &[BankId],
        keys: &[String],
        hop: bool,
        filter: &RecallFilter,
        limit: usize,
    ) -> StoreResult<StrategyHits> {
        let started = Instant::now();
        let conn = self.readers.get()?;
        let mut banks = banks.to_vec();
        banks.sort();
        banks.dedup();
        let mut hits = Vec::new();
        if limit > 0 && !keys.is_empty() {
            for bank in &banks {
                hits.extend(bank_hits(&conn, bank, keys, hop, filter, limit)?);
            }
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.memory.effective_time().cmp(&a.memory.effective_time()))
                .then_with(|| a.memory.id.cmp(&b.memory.id))
        });
        hits.truncate(limit);
        Ok(StrategyHits {
            hits,
            elapsed: started.elapsed(),
        })
    }

    pub(crate) fn entities(
        &self,
        bank: &BankId,
        query: &EntityQuery,
    ) -> StoreResult<Vec<EntitySummary>> {
        let conn = self.readers.get()?;
        let mut sql = String::from(
            "SELECT e.entity_key, e.name, MAX(m.effective_at) AS last_seen, COUNT(*) AS memories,
                    SUM(e.mentions),
                    SUM(e.kind = 'person'), SUM(e.kind = 'place'),
                    SUM(e.kind = 'organization'), SUM(e.kind = 'product')
             FROM memory_entities e JOIN memories m ON m.rowid = e.memory_rowid
             WHERE e.bank_id = ? AND m.forgotten_at IS NULL",
        );
        let mut params = vec![Value::Text(bank.as_str().to_string())];
        if let Some(prefix) = query.prefix.as_deref().filter(|p| !p.is_empty()) {
            // A key range, not LIKE: the index answers it and no character is special.
            sql.push_str(" AND e.entity_key >= ? AND e.entity_key < ? || char(1114111)");
            let prefix = prefix.to_lowercase();
            params.push(Value::Text(prefix.clone()));
            params.push(Value::Text(prefix));
        }
        // SQLite takes a bare column (the name) from the row holding MAX(): the newest spelling.
        sql.push_str(" GROUP BY e.entity_key ORDER BY memories DESC, e.entity_key");
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(params), |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
                [
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, i64>(8)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, name, last_seen, memories, mentions, kinds) = row?;
            let kind = majority_kind(kinds);
            if query.kind.is_some_and(|wanted| wanted != kind) {
                continue;
            }
            out.push(EntitySummary {
                key,
                name,
                kind,
                memories: memories as u64,
                mentions: mentions as u64,
                last_seen: from_micros(last_seen)?,
            });
            if out.len() >= query.limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The kind most of an entity's mentions were given, `other` when none was classified.
fn majority_kind(counts: [i64; 4]) -> EntityKind {
    let kinds = [
        EntityKind::Person,
        EntityKind::Place,
        EntityKind::Organization,
        EntityKind::Product,
    ];
    let mut best = (0, EntityKind::Other);
    for (count, kind) in counts.into_iter().zip(kinds) {
        if count > best.0 {
            best = (count, kind);
        }
    }
    best.1
}

/// How many visible memories of `bank` mention each of `keys`.
fn mention_counts(
    conn: &Connection,
    bank: &BankId,
    keys: &[String],
) -> StoreResult<BTreeMap<String, i64>> {
    let mut statement = conn.prepare_cached(
        "SELECT e.entity_key, COUNT(*) FROM memory_entities e JOIN memories m ON m.rowid = e.memory_rowid
         WHERE e.bank_id = ? AND e.entity_key IN (SELECT value FROM json_each(?)) AND m.forgotten_at IS NULL
         GROUP BY e.entity_key",
    )?;
    let rows = statement.query_map(
        [Value::Text(bank.as_str().to_string()), json_list(keys)],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn bank_hits(
    conn: &Connection,
    bank: &BankId,
    keys: &[String],
    hop: bool,
    filter: &RecallFilter,
    limit: usize,
) -> StoreResult<Vec<ScoredMemory>> {
    let visible: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM memories WHERE bank_id = ? AND forgotten_at IS NULL")?
        .query_row([bank.as_str()], |row| row.get(0))?;
    let weight = |memories: i64| (1.0 + visible as f64 / memories.max(1) as f64).ln();
    let mut weights: BTreeMap<String, f64> = mention_counts(conn, bank, keys)?
        .into_iter()
        .filter(|(_, memories)| *memories <= MAX_KEY_MEMORIES)
        .map(|(key, memories)| (key, weight(memories)))
        .collect();
    if weights.is_empty() {
        return Ok(Vec::new());
    }
    if hop {
        let direct: Vec<String> = weights.keys().cloned().collect();
        let mut statement = conn.prepare_cached(
            "SELECT o.entity_key, COUNT(*) AS together
             FROM memory_entities e
             JOIN memory_entities o ON o.memory_rowid = e.memory_rowid
             JOIN memories m ON m.rowid = e.memory_rowid
             WHERE e.bank_id = ?1 AND e.entity_key IN (SELECT value FROM json_each(?2))
               AND o.entity_key NOT IN (SELECT value FROM json_each(?2))
               AND m.forgotten_at IS NULL
             GROUP BY o.entity_key ORDER BY together DESC, o.entity_key LIMIT ?3",
        )?;
        let neighbours: Vec<String> = statement
            .query_map(
                [
                    Value::Text(bank.as_str().to_string()),
                    json_list(&direct),
                    Value::Integer(HOP_ENTITIES as i64),
                ],
                |row| row.get(0),
            )?
            .collect::<Result<_, _>>()?;
        // Negative marks a hop: it counts only for memories that name none of the keys.
        for (key, memories) in mention_counts(conn, bank, &neighbours)? {
            if memories <= MAX_KEY_MEMORIES {
                weights.insert(key, -weight(memories) / 2.0);
            }
        }
    }
    // Scores are summed here from the key index alone; SQL then only checks the filter on
    // the candidates and loads the best `limit`.
    let mut statement = conn.prepare_cached(
        "SELECT e.memory_rowid, e.entity_key FROM memory_entities e
         WHERE e.bank_id = ? AND e.entity_key IN (SELECT value FROM json_each(?))",
    )?;
    let keys_json = json_list(&weights.keys().cloned().collect::<Vec<_>>());
    let mut direct: HashMap<i64, f64> = HashMap::new();
    let mut hops: HashMap<i64, f64> = HashMap::new();
    let rows = statement.query_map([Value::Text(bank.as_str().to_string()), keys_json], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (rowid, key) = row?;
        match weights.get(&key) {
            // Negative marks a hop: it counts only for memories that name none of the keys.
            Some(w) if *w < 0.0 => *hops.entry(rowid).or_default() -= w,
            Some(w) => *direct.entry(rowid).or_default() += w,
            None => {}
        }
    }
    for (rowid, score) in hops {
        direct.entry(rowid).or_insert(score);
    }
    let conditions = Conditions::for_bank(bank, filter)?;
    let rowids: Vec<i64> = direct.keys().copied().collect();
    let mut statement = conn.prepare_cached(&format!(
        "SELECT m.rowid, m.id, m.effective_at FROM {LISTED_ROWS} WHERE {}",
        conditions.sql()
    ))?;
    let mut params = vec![json_list(&rowids)];
    params.extend(conditions.params().iter().cloned());
    let mut passing: Vec<(f64, i64, String, i64)> = statement
        .query_map(params_from_iter(params), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?
        .map(|row| {
            row.map(|(rowid, id, at)| (direct.get(&rowid).copied().unwrap_or(0.0), at, id, rowid))
        })
        .collect::<Result<_, _>>()?;
    passing.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    passing.truncate(limit);
    let best: Vec<i64> = passing.iter().map(|p| p.3).collect();
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.rowid IN (SELECT value FROM json_each(?))"
    ))?;
    let mut loaded: HashMap<i64, RawMemory> = statement
        .query_map([json_list(&best)], |row| RawMemory::from_row(row, false))?
        .map(|raw| raw.map(|raw| (raw.rowid, raw)))
        .collect::<Result<_, _>>()?;
    passing
        .into_iter()
        .filter_map(|(score, _, _, rowid)| loaded.remove(&rowid).map(|raw| (raw, score)))
        .map(|(raw, score)| {
            Ok(ScoredMemory {
                memory: raw.into_memory()?,
                score: score as f32,
            })
        })
        .collect()
}
