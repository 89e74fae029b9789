//! The three candidate strategies over one tenant: semantic (cosine through the bank's HNSW
//! index, or an exact scan of a small filtered candidate set), keyword (BM25 through the bank's
//! keyword index, top k directly or every candidate then filtered by SQL) and recency.
//! Each runs per bank and merges; every hit is read back through SQL with the full filter, so
//! a stale index entry can never surface a forgotten or filtered-out memory.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use astrocyte_core::store::{ScoredMemory, SearchRequest, SearchResponse, StrategyHits};
use astrocyte_core::{BankId, RecallFilter};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::error::StoreResult;
use crate::filter::{is_selective, json_list, tags_only, Conditions, LISTED_ROWS};
use crate::inner::TenantInner;
use crate::keyword::{KeywordIndex, Tokenizer};
use crate::rows::{decode_vector, RawMemory, MEMORY_COLUMNS};

/// Words of a query used for keyword search; more adds cost and little recall.
const MAX_QUERY_TERMS: usize = 32;

impl TenantInner {
    /// Runs every strategy the request asks for, each over all its banks.
    pub(crate) fn search(self: &Arc<Self>, request: &SearchRequest) -> StoreResult<SearchResponse> {
        let reader = self.readers.get()?;
        let mut banks = request.banks.clone();
        banks.sort();
        banks.dedup();
        let per_bank = banks
            .iter()
            .map(|bank| Ok((bank.clone(), Conditions::for_bank(bank, &request.filter)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let limit = request.limit;
        let mut response = SearchResponse::default();
        if let Some(vector) = &request.vector {
            let started = Instant::now();
            let hits = self.semantic(&reader, &per_bank, &request.filter, vector, limit)?;
            response.semantic = Some(StrategyHits {
                hits,
                elapsed: started.elapsed(),
            });
        }
        if let Some(text) = &request.text {
            let started = Instant::now();
            let hits = keyword(
                self,
                &reader,
                &per_bank,
                !is_selective(&request.filter),
                request.filter.as_of.is_some(),
                text,
                limit,
                self.options.keyword_posting_budget,
            )?;
            response.keyword = Some(StrategyHits {
                hits,
                elapsed: started.elapsed(),
            });
        }
        if request.recency {
            let started = Instant::now();
            let hits = recency(&reader, &per_bank, limit)?;
            response.recency = Some(StrategyHits {
                hits,
                elapsed: started.elapsed(),
            });
        }
        Ok(response)
    }

    /// Cosine ranking. Without a selective filter the bank's index answers directly. With
    /// one, SQL computes the candidates first: a small set is scored exactly from the stored
    /// vectors; a large one is searched in the index restricted to the set, plus an exact
    /// pass over candidates the index cannot hold (forgotten now, visible at `as_of`).
    fn semantic(
        self: &Arc<Self>,
        conn: &Connection,
        per_bank: &[(BankId, Conditions)],
        filter: &RecallFilter,
        vector: &[f32],
        limit: usize,
    ) -> StoreResult<Vec<ScoredMemory>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = normalised(vector);
        let mut hits = Vec::new();
        for (bank, conditions) in per_bank {
            let scored: Vec<(i64, f32)> = if !is_selective(filter) {
                self.index_search(conn, bank, conditions, vector, &query, limit, &|_| true)?
            } else {
                self.filtered_semantic(conn, bank, conditions, filter, vector, &query, limit)?
            };
            hits.extend(fetch_scored(conn, conditions, &scored)?);
        }
        Ok(best_first(hits, limit))
    }

    /// The bank's index search, rescored exactly. The index keeps int8 codes only, so it ranks
    /// a shortlist by approximate similarity (its walk keeps `search_breadth` candidates, more
    /// in larger banks, and the best `rescore_depth` of them are kept); the shortlist's stored
    /// vectors, read from the rows with every condition applied, give the exact scores and the
    /// final `limit`.
    #[allow(clippy::too_many_arguments)]
    fn index_search(
        self: &Arc<Self>,
        conn: &Connection,
        bank: &BankId,
        conditions: &Conditions,
        vector: &[f32],
        query: &[f32],
        limit: usize,
        filter: &dyn Fn(u64) -> bool,
    ) -> StoreResult<Vec<(i64, f32)>> {
        let shortlist: Vec<i64> = self
            .with_index(conn, bank, vector.len(), |index| {
                let ef = index.hnsw.search_breadth(limit);
                index
                    .hnsw
                    .search_with_ef(vector, index.hnsw.rescore_depth(limit), ef, filter)
            })?
            .into_iter()
            .map(|(key, _)| key as i64)
            .collect();
        let vectors = stored_vectors(conn, conditions, &shortlist, false)?;
        score_exactly(query, vectors, limit)
    }

    #[allow(clippy::too_many_arguments)]
    fn filtered_semantic(
        self: &Arc<Self>,
        conn: &Connection,
        bank: &BankId,
        conditions: &Conditions,
        filter: &RecallFilter,
        vector: &[f32],
        query: &[f32],
        limit: usize,
    ) -> StoreResult<Vec<(i64, f32)>> {
        let exact_limit = self.options.exact_scan_limit;
        // A superset of the candidates is enough here: the exact pass below and the final
        // read both re-apply every condition, and the index only holds this bank's visible
        // rows. For the common tags-only filter the tag table alone answers, without touching
        // a memory row.
        let candidates: Vec<i64> = match tags_only(filter) {
            Some(tags) => {
                let mut statement = conn.prepare_cached(
                    "SELECT DISTINCT memory_rowid FROM memory_tags WHERE tag IN (SELECT value FROM json_each(?1))",
                )?;
                let rowids = statement
                    .query_map([json_list(&tags)], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                rowids
            }
            None => {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT m.rowid FROM memories m WHERE {}",
                    conditions.sql()
                ))?;
                let rowids = statement
                    .query_map(params_from_iter(conditions.params()), |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                rowids
            }
        };
        if candidates.len() <= exact_limit {
            let vectors = stored_vectors(conn, conditions, &candidates, false)?;
            return score_exactly(query, vectors, limit);
        }
        let allowed: HashSet<u64> = candidates.iter().map(|rowid| *rowid as u64).collect();
        drop(candidates);
        let mut scored =
            self.index_search(conn, bank, conditions, vector, query, limit, &|key| {
                allowed.contains(&key)
            })?;
        if filter.as_of.is_some() {
            // Rows forgotten since `as_of` are out of the index but were visible then.
            let rowids: Vec<i64> = allowed.iter().map(|key| *key as i64).collect();
            let forgotten = stored_vectors(conn, conditions, &rowids, true)?;
            scored.extend(score_exactly(query, forgotten, limit)?);
        }
        Ok(scored)
    }
}

/// The stored vectors of those `rowids` that satisfy `conditions` (and, with
/// `forgotten_only`, are forgotten now).
fn stored_vectors(
    conn: &Connection,
    conditions: &Conditions,
    rowids: &[i64],
    forgotten_only: bool,
) -> StoreResult<Vec<(i64, Vec<u8>)>> {
    if rowids.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(&format!(
        "SELECT m.rowid, m.embedding FROM {LISTED_ROWS} WHERE {}{}",
        conditions.sql(),
        if forgotten_only {
            " AND m.forgotten_at IS NOT NULL"
        } else {
            ""
        }
    ))?;
    let mut params = vec![json_list(rowids)];
    params.extend(conditions.params().iter().cloned());
    let mut vectors = Vec::new();
    let mut rows = statement.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        vectors.push((row.get(0)?, row.get(1)?));
    }
    Ok(vectors)
}

/// Scores stored vectors against a normalised query; the best `limit`, ties by row id.
fn score_exactly(
    query: &[f32],
    candidates: Vec<(i64, Vec<u8>)>,
    limit: usize,
) -> StoreResult<Vec<(i64, f32)>> {
    let mut scored = Vec::with_capacity(candidates.len());
    for (rowid, blob) in candidates {
        let stored = decode_vector(&blob)?;
        if stored.len() != query.len() {
            continue;
        }
        scored.push((rowid, cosine(query, &stored)));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    Ok(scored)
}

/// Keyword ranking by BM25, higher is better, through the bank's in-memory index
/// (`keyword.rs`). Two steps: rank row ids, then read the memories of the best through SQL
/// with every condition. `visible_now_only` (no filter beyond the bank) takes the index's top
/// k directly. With a filter, the index scores every candidate within the posting budget and
/// SQL keeps those that pass, best first; at an `as_of` instant, the rows forgotten since
/// (which the index no longer holds) are scored beside them.
#[allow(clippy::too_many_arguments)]
fn keyword(
    inner: &Arc<TenantInner>,
    conn: &Connection,
    per_bank: &[(BankId, Conditions)],
    visible_now_only: bool,
    as_of: bool,
    text: &str,
    limit: usize,
    posting_budget: usize,
) -> StoreResult<Vec<ScoredMemory>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let words = query_words(text);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let stems = KeywordIndex::query_stems(&words);
    // A few extra rows so that memories tied with the last one can still be ordered by id.
    let ranked_rows = limit.saturating_add(limit / 4 + 8);
    let mut hits = Vec::new();
    for (bank, conditions) in per_bank {
        if visible_now_only {
            let ranked =
                inner.with_keyword_index(conn, bank, |index| index.top(&stems, ranked_rows))?;
            hits.extend(fetch_scored(conn, conditions, &ranked)?);
        } else {
            let forgotten = if as_of {
                forgotten_documents(conn, conditions)?
            } else {
                Vec::new()
            };
            let mut candidates = inner.with_keyword_index(conn, bank, |index| {
                let (mut candidates, kept) = index.candidates(&stems, posting_budget);
                let mut tokenizer = Tokenizer::new();
                for (rowid, text, context) in &forgotten {
                    let score =
                        index.score_outside(&mut tokenizer, &kept, text, context.as_deref());
                    if score > 0.0 {
                        candidates.push((*rowid, score));
                    }
                }
                candidates
            })?;
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.extend(passing(conn, conditions, &candidates, ranked_rows)?);
        }
    }
    Ok(best_first(hits, limit))
}

/// The rows of a bank forgotten by now but visible under `conditions` (an `as_of` search):
/// row id, text and retrieval context.
fn forgotten_documents(
    conn: &Connection,
    conditions: &Conditions,
) -> StoreResult<Vec<(i64, String, Option<String>)>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT m.rowid, m.search_text, m.index_context FROM memories m
         WHERE m.forgotten_at IS NOT NULL AND {}",
        conditions.sql()
    ))?;
    let rows = statement
        .query_map(params_from_iter(conditions.params().iter()), |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The memories of the first `wanted` of `ranked` (best first) that satisfy `conditions`,
/// read in slices through [`fetch_scored`]: the first twice `wanted`, each next one sized by
/// the share that passed so far, so a filter most rows pass costs one small query and a
/// narrow one (whose own subquery is the cost, such as a tag list) a few.
fn passing(
    conn: &Connection,
    conditions: &Conditions,
    ranked: &[(i64, f32)],
    wanted: usize,
) -> StoreResult<Vec<ScoredMemory>> {
    let mut kept = Vec::with_capacity(wanted);
    let (mut checked, mut slice) = (0usize, wanted.saturating_mul(2).max(64));
    while checked < ranked.len() && kept.len() < wanted {
        let part = &ranked[checked..ranked.len().min(checked + slice)];
        kept.extend(fetch_scored(conn, conditions, part)?);
        checked += part.len();
        // Rows still wanted over the share passing so far, with a fifth to spare.
        let missing = wanted.saturating_sub(kept.len());
        slice = (missing * checked * 6 / (5 * kept.len().max(1))).max(64);
    }
    kept.truncate(wanted);
    Ok(kept)
}

/// Most recent effective time first, ties by id; the score is the effective time in seconds.
fn recency(
    conn: &Connection,
    per_bank: &[(BankId, Conditions)],
    limit: usize,
) -> StoreResult<Vec<ScoredMemory>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut memories = Vec::new();
    for (_, conditions) in per_bank {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m WHERE {} ORDER BY m.effective_at DESC, m.id LIMIT ?",
            conditions.sql()
        ))?;
        let mut params: Vec<Value> = conditions.params().to_vec();
        params.push(Value::Integer(limit as i64));
        let rows: Vec<RawMemory> = statement
            .query_map(params_from_iter(params), |row| {
                RawMemory::from_row(row, false)
            })?
            .collect::<Result<_, _>>()?;
        for raw in rows {
            memories.push(raw.into_memory()?);
        }
    }
    memories.sort_by(|a, b| {
        b.effective_time()
            .cmp(&a.effective_time())
            .then_with(|| a.id.cmp(&b.id))
    });
    memories.truncate(limit);
    Ok(memories
        .into_iter()
        .map(|memory| ScoredMemory {
            score: memory.effective_time().timestamp_micros() as f32 / 1e6,
            memory,
        })
        .collect())
}

/// Reads the memories behind scored row ids, keeping only those that still satisfy the
/// conditions (visibility and filters) at read time.
fn fetch_scored(
    conn: &Connection,
    conditions: &Conditions,
    scored: &[(i64, f32)],
) -> StoreResult<Vec<ScoredMemory>> {
    if scored.is_empty() {
        return Ok(Vec::new());
    }
    let rowids: Vec<i64> = scored.iter().map(|(rowid, _)| *rowid).collect();
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MEMORY_COLUMNS} FROM {LISTED_ROWS} WHERE {}",
        conditions.sql()
    ))?;
    let mut params = vec![json_list(&rowids)];
    params.extend(conditions.params().iter().cloned());
    let rows: Vec<RawMemory> = statement
        .query_map(params_from_iter(params), |row| {
            RawMemory::from_row(row, false)
        })?
        .collect::<Result<_, _>>()?;
    let mut by_rowid: HashMap<i64, RawMemory> =
        rows.into_iter().map(|raw| (raw.rowid, raw)).collect();
    let mut hits = Vec::with_capacity(scored.len());
    for (rowid, score) in scored {
        if let Some(raw) = by_rowid.remove(rowid) {
            hits.push(ScoredMemory {
                memory: raw.into_memory()?,
                score: *score,
            });
        }
    }
    Ok(hits)
}

/// Best score first, ties by memory id, at most `limit`.
fn best_first(mut hits: Vec<ScoredMemory>, limit: usize) -> Vec<ScoredMemory> {
    hits.sort_by(|a, b| match b.score.total_cmp(&a.score) {
        Ordering::Equal => a.memory.id.cmp(&b.memory.id),
        other => other,
    });
    hits.truncate(limit);
    hits
}

/// The words of a query keyword search looks for (function words dropped).
fn query_words(text: &str) -> Vec<String> {
    astrocyte_core::pipeline::query::keyword_terms(text, MAX_QUERY_TERMS)
}

pub(crate) fn normalised(vector: &[f32]) -> Vec<f32> {
    let mut copy = vector.to_vec();
    astrocyte_core::embed::l2_normalize(&mut copy);
    copy
}

/// Cosine similarity with an already normalised query.
pub(crate) fn cosine(query: &[f32], stored: &[f32]) -> f32 {
    let norm = stored.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return 0.0;
    }
    astrocyte_core::embed::dot(query, stored) / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A narrow filter needs several slices; the rows kept are the best passing ones, in order.
    #[test]
    fn passing_keeps_the_best_rows_the_filter_lets_through() {
        let mut conn = Connection::open_in_memory().expect("sqlite");
        crate::migrations::migrate(&mut conn).expect("migrate");
        for i in 1..=1000i64 {
            conn.execute(
                "INSERT INTO memories (rowid, id, bank_id, text, fact_type, retained_at, effective_at, embedding, embedding_hash)
                 VALUES (?1, ?2, 'b', 'x', 'world', 0, 0, x'', 0)",
                rusqlite::params![i, format!("m{i}")],
            )
            .expect("insert");
            if i % 17 == 0 {
                conn.execute(
                    "INSERT INTO memory_tags (tag, memory_rowid) VALUES ('rare', ?1)",
                    [i],
                )
                .expect("tag");
            }
        }
        let bank = BankId::new("b").expect("bank");
        let filter = RecallFilter {
            tags: Some(vec!["rare".into()]),
            ..Default::default()
        };
        let conditions = Conditions::for_bank(&bank, &filter).expect("conditions");
        // Best first: descending row id.
        let ranked: Vec<(i64, f32)> = (1..=1000i64).rev().map(|i| (i, i as f32)).collect();
        let kept = passing(&conn, &conditions, &ranked, 40).expect("passing");
        let expected: Vec<String> = (1..=1000i64)
            .rev()
            .filter(|i| i % 17 == 0)
            .take(40)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(
            kept.iter()
                .map(|hit| hit.memory.id.clone())
                .collect::<Vec<_>>(),
            expected
        );
        let all = passing(&conn, &conditions, &ranked, 1000).expect("passing");
        assert_eq!(all.len(), 58, "every passing row when fewer than wanted");
    }

    #[test]
    fn ties_are_broken_by_id() {
        let memory =
            |id: &str| astrocyte_core::Memory::new(id, BankId::new("b").expect("valid bank"), id);
        let hits = vec![
            ScoredMemory {
                memory: memory("c"),
                score: 0.5,
            },
            ScoredMemory {
                memory: memory("a"),
                score: 0.5,
            },
            ScoredMemory {
                memory: memory("b"),
                score: 0.9,
            },
        ];
        let ordered: Vec<String> = best_first(hits, 2)
            .into_iter()
            .map(|h| h.memory.id)
            .collect();
        assert_eq!(ordered, vec!["b", "a"]);
    }
}
