//! The three candidate strategies over one tenant: semantic (cosine through the bank's HNSW
//! index, or an exact scan of a small filtered candidate set), keyword (BM25 through the bank's
//! keyword index, or FTS5 when filtered) and recency.
//! Each runs per bank and merges; every hit is read back through SQL with the full filter, so
//! a stale index entry can never surface a forgotten or filtered-out memory.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use astrocyte_core::store::{ScoredMemory, SearchRequest, SearchResponse, StrategyHits};
use astrocyte_core::{BankId, RecallFilter};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::error::StoreResult;
use crate::filter::{is_selective, json_list, tags_only, Conditions};
use crate::inner::TenantInner;
use crate::keyword::KeywordIndex;
use crate::rows::{decode_vector, RawMemory, MEMORY_COLUMNS};

/// BM25 weight of a memory's retrieval context relative to its own text (1.0). On LoCoMo
/// (`astrocyte eval locomo`) 0.5 beat both 1.0 (one undivided column) and 0.35.
const CONTEXT_WEIGHT: f64 = 0.5;

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
        "SELECT m.rowid, m.embedding FROM memories m
         WHERE m.rowid IN (SELECT value FROM json_each(?)) AND {}{}",
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

/// Keyword ranking by BM25, higher is better. Two steps: rank row ids, then read the memories
/// of the best through SQL with every condition. `visible_now_only` (no filter beyond the bank)
/// ranks through the bank's in-memory index (`keyword.rs`); otherwise FTS5 ranks the rows
/// that satisfy the filter, the query's words each quoted and OR-ed, so any user text is a
/// valid FTS5 query.
fn keyword(
    inner: &Arc<TenantInner>,
    conn: &Connection,
    per_bank: &[(BankId, Conditions)],
    visible_now_only: bool,
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
    // Unfiltered: the bank's own index ranks every word at little cost. Filtered: FTS5, with
    // the frequent words dropped to fit the budget.
    let (plan, query, stems) = if visible_now_only {
        let stems = KeywordIndex::query_stems(&words);
        (
            KeywordPlan {
                words,
                min_rowid: 0,
            },
            String::new(),
            stems,
        )
    } else {
        let plan = plan_keyword(conn, words, posting_budget)?;
        let Some(query) = match_query(&plan.words) else {
            return Ok(Vec::new());
        };
        (plan, query, Vec::new())
    };
    // A few extra rows so that memories tied with the last one can still be ordered by id.
    let ranked_rows = limit.saturating_add(limit / 4 + 8);
    let mut hits = Vec::new();
    for (bank, conditions) in per_bank {
        let ranked: Vec<(i64, f32)> = if visible_now_only {
            inner.with_keyword_index(conn, bank, |index| index.top(&stems, ranked_rows))?
        } else {
            fts5_ranked(conn, conditions, &plan, &query, ranked_rows)?
        };
        hits.extend(fetch_scored(conn, conditions, &ranked)?);
    }
    Ok(best_first(hits, limit))
}

/// FTS5's BM25 ranking of the rows satisfying `conditions`: every matching row is scored and
/// sorted, so this step carries only the id and the score.
fn fts5_ranked(
    conn: &Connection,
    conditions: &Conditions,
    plan: &KeywordPlan,
    query: &str,
    ranked_rows: usize,
) -> StoreResult<Vec<(i64, f32)>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT m.rowid, bm25(memories_fts, 1.0, {CONTEXT_WEIGHT}) AS keyword_rank
         FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid
         WHERE memories_fts MATCH ? AND memories_fts.rowid >= ? AND {}
         ORDER BY keyword_rank LIMIT ?",
        conditions.sql()
    ))?;
    let mut params = vec![
        Value::Text(query.to_string()),
        Value::Integer(plan.min_rowid),
    ];
    params.extend(conditions.params().iter().cloned());
    params.push(Value::Integer(
        i64::try_from(ranked_rows).unwrap_or(i64::MAX),
    ));
    let ranked = statement
        .query_map(params_from_iter(params), |row| {
            Ok((row.get(0)?, -(row.get::<_, f64>(1)? as f32)))
        })?
        .collect::<Result<_, _>>()?;
    Ok(ranked)
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
        "SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.rowid IN (SELECT value FROM json_each(?)) AND {}",
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

/// A word as an FTS5 string: double-quoted, so operators and punctuation are just text.
fn quoted(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

/// An FTS5 query matching any of `words` (each quoted, OR-ed); `None` when there are none.
fn match_query(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words.iter().map(|word| quoted(word)).collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

/// What keyword search evaluates: a subset of the query's words, and the oldest row id it
/// scores.
#[derive(Debug, PartialEq)]
struct KeywordPlan {
    words: Vec<String>,
    min_rowid: i64,
}

/// Keeps the keyword search within `budget` scored rows (`budget` 0: no limit).
///
/// BM25 must score every row an OR query matches, so a frequent word ("the") costs time in
/// proportion to the bank while adding almost nothing to the ranking: its IDF is near zero
/// (FTS5 clamps it to 1e-6 once the word is in half the rows). So the rarest words are kept
/// while their rows fit the budget and the frequent rest is dropped, like a stop list that
/// adapts to the data; the rarest word that occurs is always kept. When even it matches more
/// rows than the budget (a query of only very common words), only its newest `budget` rows are
/// scored: such a query carries little keyword signal, and recency is the better tie-breaker.
/// Counting stops at the budget, so each word costs at most `budget` index entries to count.
fn plan_keyword(conn: &Connection, words: Vec<String>, budget: usize) -> StoreResult<KeywordPlan> {
    if budget == 0 || words.is_empty() {
        return Ok(KeywordPlan {
            words,
            min_rowid: 0,
        });
    }
    let budget = budget as i64;
    let mut count = conn.prepare_cached(
        "SELECT COUNT(*) FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ?1 LIMIT ?2)",
    )?;
    let mut counted: Vec<(i64, String)> = Vec::with_capacity(words.len());
    for word in words {
        let rows: i64 = count.query_row(rusqlite::params![quoted(&word), budget + 1], |row| {
            row.get(0)
        })?;
        if rows > 0 {
            counted.push((rows, word));
        }
    }
    counted.sort();
    let mut kept = Vec::with_capacity(counted.len());
    let mut total = 0i64;
    for (rows, word) in counted {
        if !kept.is_empty() && total + rows > budget {
            break;
        }
        total += rows;
        kept.push(word);
    }
    let mut min_rowid = 0;
    if total > budget {
        let mut newest = conn.prepare_cached(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2",
        )?;
        min_rowid = newest
            .query_row(rusqlite::params![quoted(&kept[0]), budget - 1], |row| {
                row.get(0)
            })
            .optional()?
            .unwrap_or(0);
    }
    Ok(KeywordPlan {
        words: kept,
        min_rowid,
    })
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

    #[test]
    fn user_text_becomes_a_safe_or_query() {
        let query = |text: &str| match_query(&query_words(text));
        assert_eq!(
            query("Who's \"the\" cat? AND (NOT) near*").as_deref(),
            Some("\"s\" OR \"cat\" OR \"near\""),
            "operators and function words are neither syntax nor terms"
        );
        assert_eq!(
            query("AND \"OR\" NOT").as_deref(),
            Some("\"and\" OR \"or\" OR \"not\""),
            "a query of function words alone keeps them, quoted"
        );
        assert_eq!(query("  ?!  ").as_deref(), None);
        assert_eq!(query("café café Café").as_deref(), Some("\"café\""));
    }

    #[test]
    fn frequent_words_are_dropped_to_fit_the_budget() {
        let mut conn = Connection::open_in_memory().expect("sqlite");
        crate::migrations::migrate(&mut conn).expect("migrate");
        for i in 0..10 {
            let text = if i == 0 {
                "common rare"
            } else {
                "common filler"
            };
            conn.execute(
                "INSERT INTO memories (id, bank_id, text, fact_type, retained_at, effective_at, embedding, embedding_hash)
                 VALUES (?1, 'b', ?2, 'world', 0, 0, x'', 0)",
                rusqlite::params![format!("m{i}"), text],
            )
            .expect("insert");
        }
        let plan =
            |text: &str, budget| plan_keyword(&conn, query_words(text), budget).expect("plan");
        let words = |text: &str, budget| plan(text, budget).words;
        assert_eq!(
            words("common rare absent", 5),
            vec!["rare"],
            "the frequent word does not fit"
        );
        assert_eq!(
            words("common rare absent", 11),
            vec!["rare", "common"],
            "rarest first while it fits"
        );
        assert_eq!(
            words("common rare", 0),
            vec!["common", "rare"],
            "budget 0 keeps all"
        );
        assert_eq!(
            plan("common rare", 11).min_rowid,
            0,
            "within budget every row is scored"
        );
        // Only "common" matches (row ids 1..=10) with a budget of 4: its newest 4 rows are scored.
        assert_eq!(
            plan("common absent", 4),
            KeywordPlan {
                words: vec!["common".into()],
                min_rowid: 7
            }
        );
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
