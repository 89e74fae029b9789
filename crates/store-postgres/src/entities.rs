//! The entity table: which entities each memory mentions, written with the memory, and the
//! two reads over it (the entity recall strategy and a bank's entity listing). Rows of
//! forgotten memories stay until a purge cascades them away; every read joins the memory and
//! applies its visibility, so a soft forget (or an `as_of`) hides them at once.

use std::collections::HashMap;
use std::time::Instant;

use astrocyte_core::entities::{EntityKind, Mention};
use astrocyte_core::store::{EntityQuery, EntitySummary, ScoredMemory, StrategyHits};
use astrocyte_core::{BankId, RecallFilter, Result, Timestamp};
use tokio_postgres::types::Type;

use crate::browse::like_literal;
use crate::error::PgError;
use crate::search::filter_sql;
use crate::sql::{memory_from_row, to_i64, Params, MEMORY_COLUMNS};
use crate::tenant::PostgresTenant;

/// How many co-occurring entities a `hop` adds to the keys.
const HOP_ENTITIES: i64 = 5;

/// Weight of a hop entity's match relative to a key's.
const HOP_WEIGHT: f64 = 0.5;

/// The entity rows of one insert, as parallel arrays for `unnest`.
#[derive(Default)]
pub(crate) struct EntityRows {
    memory_ids: Vec<String>,
    banks: Vec<String>,
    keys: Vec<String>,
    names: Vec<String>,
    kinds: Vec<String>,
    mentions: Vec<i32>,
    speakers: Vec<bool>,
}

impl EntityRows {
    /// Adds one memory's mentions; mentions repeating a key are merged (counts summed,
    /// first name and kind kept), so the row key stays unique.
    pub(crate) fn push(&mut self, memory_id: &str, bank: &str, mentions: Vec<Mention>) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for mention in mentions {
            let key = mention.key.trim().to_lowercase();
            if key.is_empty() {
                continue;
            }
            let count = i32::try_from(mention.count).unwrap_or(i32::MAX);
            if let Some(&at) = seen.get(&key) {
                self.mentions[at] = self.mentions[at].saturating_add(count);
                self.speakers[at] |= mention.speaker;
                continue;
            }
            seen.insert(key.clone(), self.keys.len());
            self.memory_ids.push(memory_id.to_string());
            self.banks.push(bank.to_string());
            self.keys.push(key);
            self.names.push(mention.name);
            self.kinds.push(mention.kind.as_str().to_string());
            self.mentions.push(count);
            self.speakers.push(mention.speaker);
        }
    }

    /// A `, name AS (INSERT …)` CTE writing the rows in the insert's statement (empty when
    /// there are none). The foreign key to the memories is checked at the statement's end,
    /// after the memories' own CTE ran.
    pub(crate) fn insert_cte(self, params: &mut Params, table: &str) -> String {
        if self.keys.is_empty() {
            return String::new();
        }
        let ids = params.push(self.memory_ids, Type::TEXT_ARRAY);
        let banks = params.push(self.banks, Type::TEXT_ARRAY);
        let keys = params.push(self.keys, Type::TEXT_ARRAY);
        let names = params.push(self.names, Type::TEXT_ARRAY);
        let kinds = params.push(self.kinds, Type::TEXT_ARRAY);
        let mentions = params.push(self.mentions, Type::INT4_ARRAY);
        let speakers = params.push(self.speakers, Type::BOOL_ARRAY);
        format!(
            ", entities_written AS (INSERT INTO {table} \
               (memory_id, bank_id, entity_key, name, kind, mentions, speaker) \
             SELECT * FROM unnest({ids}::text[], {banks}::text[], {keys}::text[], {names}::text[], \
               {kinds}::text[], {mentions}::int4[], {speakers}::bool[]))"
        )
    }
}

impl PostgresTenant {
    /// The entity strategy (see [`astrocyte_core::TenantStore::entity_hits`]). Statistics are
    /// per bank, over the memories passing the filter: `visible` is how many of the bank's
    /// memories pass it, `mentioning` how many of those mention the key.
    pub(crate) async fn entity_hits_in(
        &self,
        banks: &[BankId],
        keys: &[String],
        hop: bool,
        filter: &RecallFilter,
        limit: usize,
    ) -> Result<StrategyHits> {
        let started = Instant::now();
        let mut keys: Vec<String> = keys
            .iter()
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys.dedup();
        let mut banks: Vec<String> = banks.iter().map(|b| b.as_str().to_string()).collect();
        banks.sort();
        banks.dedup();
        if keys.is_empty() || banks.is_empty() || limit == 0 {
            return Ok(StrategyHits {
                hits: Vec::new(),
                elapsed: started.elapsed(),
            });
        }
        let mut params = Params::default();
        let filter = filter_sql(&mut params, &banks, filter).all();
        let keys = params.push(keys, Type::TEXT_ARRAY);
        let limit = params.push(to_i64(limit), Type::INT8);
        let memories = &self.binding.tables.memories;
        let entities = &self.binding.tables.entities;
        // The rows of visible memories mentioning the keys, and (with `hop`) those mentioning
        // the entities that co-occur most with them in those memories.
        let hop_ctes = if hop {
            format!(
                "hop_keys AS MATERIALIZED (SELECT e.entity_key FROM {entities} e \
                   JOIN (SELECT DISTINCT bank_id, memory_id FROM direct) d \
                     ON e.bank_id = d.bank_id AND e.memory_id = d.memory_id \
                   WHERE e.entity_key <> ALL({keys}::text[]) \
                   GROUP BY e.entity_key ORDER BY count(*) DESC, e.entity_key LIMIT {HOP_ENTITIES}), \
                 hopped AS MATERIALIZED (SELECT e.bank_id, e.memory_id, e.entity_key FROM {entities} e \
                   JOIN {memories} m ON m.bank_id = e.bank_id AND m.id = e.memory_id \
                   WHERE e.entity_key IN (SELECT entity_key FROM hop_keys) AND {filter}),"
            )
        } else {
            "hopped AS (SELECT NULL::text AS bank_id, NULL::text AS memory_id, \
               NULL::text AS entity_key WHERE false),"
                .to_string()
        };
        // Only memories mentioning none of the keys earn hop weight: hop adds memories, it
        // does not reorder the direct matches.
        let sql = format!(
            "WITH direct AS MATERIALIZED (SELECT e.bank_id, e.memory_id, e.entity_key FROM {entities} e \
               JOIN {memories} m ON m.bank_id = e.bank_id AND m.id = e.memory_id \
               WHERE e.entity_key = ANY({keys}::text[]) AND {filter}), \
             {hop_ctes} \
             visible AS MATERIALIZED (SELECT m.bank_id, count(*)::float8 AS n FROM {memories} m \
               WHERE {filter} GROUP BY m.bank_id), \
             df AS MATERIALIZED (SELECT bank_id, entity_key, count(*)::float8 AS df FROM \
               (SELECT bank_id, entity_key FROM direct UNION ALL SELECT bank_id, entity_key FROM hopped) r \
               GROUP BY bank_id, entity_key), \
             scored AS MATERIALIZED (\
               SELECT d.bank_id, d.memory_id, sum(ln(1 + v.n / f.df)) AS score FROM direct d \
                 JOIN df f ON f.bank_id = d.bank_id AND f.entity_key = d.entity_key \
                 JOIN visible v ON v.bank_id = d.bank_id GROUP BY d.bank_id, d.memory_id \
               UNION ALL \
               SELECT h.bank_id, h.memory_id, {HOP_WEIGHT} * sum(ln(1 + v.n / f.df)) AS score FROM hopped h \
                 JOIN df f ON f.bank_id = h.bank_id AND f.entity_key = h.entity_key \
                 JOIN visible v ON v.bank_id = h.bank_id \
                 WHERE NOT EXISTS (SELECT 1 FROM direct d WHERE d.bank_id = h.bank_id AND d.memory_id = h.memory_id) \
                 GROUP BY h.bank_id, h.memory_id) \
             SELECT s.score, {MEMORY_COLUMNS} FROM scored s \
               JOIN {memories} m ON m.bank_id = s.bank_id AND m.id = s.memory_id \
             ORDER BY s.score DESC, m.effective_at DESC, m.id, m.bank_id LIMIT {limit}"
        );
        // Recall: a replica may answer.
        let rows = self.read_rows("", &sql, &params).await?;
        let hits = rows
            .iter()
            .map(|row| {
                let score: f64 = row.try_get("score").map_err(PgError::from)?;
                Ok(ScoredMemory {
                    memory: memory_from_row(row, false)?,
                    score: score as f32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StrategyHits {
            hits,
            elapsed: started.elapsed(),
        })
    }

    /// A bank's entities over its visible memories (see
    /// [`astrocyte_core::TenantStore::entities`]): most memories first, ties by key. The name
    /// is the newest memory's spelling; the kind the most frequent one other than `other`
    /// (ties by kind name), `other` when none.
    pub(crate) async fn list_entities(
        &self,
        bank: &BankId,
        query: &EntityQuery,
    ) -> Result<Vec<EntitySummary>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let bank = params.push(bank.as_str().to_string(), Type::TEXT);
        let mut row_clauses = vec![
            format!("e.bank_id = {bank}"),
            "m.forgotten_at IS NULL".to_string(),
        ];
        if let Some(prefix) = query.prefix.as_deref().filter(|p| !p.is_empty()) {
            let pattern = params.push(
                format!("{}%", like_literal(&prefix.to_lowercase())),
                Type::TEXT,
            );
            row_clauses.push(format!("e.entity_key LIKE {pattern} ESCAPE '\\'"));
        }
        let kind_clause = match query.kind {
            Some(kind) => format!(
                "WHERE s.kind = {}",
                params.push(kind.as_str().to_string(), Type::TEXT)
            ),
            None => String::new(),
        };
        let limit = params.push(to_i64(query.limit), Type::INT8);
        let sql = format!(
            "WITH r AS MATERIALIZED (SELECT e.entity_key, e.name, e.kind, e.mentions, m.effective_at, m.id \
               FROM {entities} e JOIN {memories} m ON m.bank_id = e.bank_id AND m.id = e.memory_id \
               WHERE {rows}), \
             kinds AS (SELECT DISTINCT ON (entity_key) entity_key, kind FROM r WHERE kind <> 'other' \
               GROUP BY entity_key, kind ORDER BY entity_key, count(*) DESC, kind), \
             s AS (SELECT r.entity_key, \
                 (array_agg(r.name ORDER BY r.effective_at DESC, r.id DESC))[1] AS name, \
                 COALESCE(min(k.kind), 'other') AS kind, \
                 count(*)::int8 AS memories, sum(r.mentions)::int8 AS mentions, \
                 max(r.effective_at) AS last_seen \
               FROM r LEFT JOIN kinds k ON k.entity_key = r.entity_key GROUP BY r.entity_key) \
             SELECT s.entity_key, s.name, s.kind, s.memories, s.mentions, s.last_seen FROM s {kind_clause} \
             ORDER BY s.memories DESC, s.entity_key LIMIT {limit}",
            entities = self.binding.tables.entities,
            memories = self.binding.tables.memories,
            rows = row_clauses.join(" AND "),
        );
        let rows = self
            .begin("")
            .await?
            .typed_then_commit(&sql, &params)
            .await?;
        rows.iter()
            .map(|row| {
                let get = |name: &str| PgError::Decode(format!("entity column {name}"));
                let kind: String = row.try_get("kind").map_err(|_| get("kind"))?;
                let memories: i64 = row.try_get("memories").map_err(|_| get("memories"))?;
                let mentions: i64 = row.try_get("mentions").map_err(|_| get("mentions"))?;
                let last_seen: Timestamp =
                    row.try_get("last_seen").map_err(|_| get("last_seen"))?;
                Ok(EntitySummary {
                    key: row.try_get("entity_key").map_err(|_| get("entity_key"))?,
                    name: row.try_get("name").map_err(|_| get("name"))?,
                    kind: EntityKind::parse(&kind).unwrap_or(EntityKind::Other),
                    memories: u64::try_from(memories).unwrap_or(0),
                    mentions: u64::try_from(mentions).unwrap_or(0),
                    last_seen,
                })
            })
            .collect()
    }
}
