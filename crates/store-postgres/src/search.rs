//! The candidate search: one statement whose CTEs produce the semantic (HNSW), keyword
//! (tsvector, BM25-like) and recency candidates, so a recall costs one round trip. Filters are
//! bound parameters shared by every CTE. Fusion is not done here; core fuses.

use astrocyte_core::store::SearchRequest;
use astrocyte_core::RecallFilter;
use tokio_postgres::types::Type;

use crate::analyze::FrequentLexemes;
use crate::session::TenantBinding;
use crate::sql::{to_i64, Params, MEMORY_COLUMNS};

/// Extra semantic candidates fetched beyond the limit so that ties at the boundary (identical
/// vectors) are all seen and cut by id, as the embedded store does.
pub(crate) const SEMANTIC_TIE_MARGIN: usize = 16;

/// BM25 term-frequency saturation.
const BM25_K1: f64 = 1.2;
/// BM25 length normalisation.
const BM25_B: f64 = 0.75;

/// Strategy tags in the result rows.
pub(crate) const SEMANTIC: i32 = 0;
pub(crate) const KEYWORD: i32 = 1;
pub(crate) const RECENCY: i32 = 2;

/// The filter predicates (on alias `m`) every strategy applies, split so recency can walk
/// each bank separately.
pub(crate) struct FilterSql {
    /// `$n`: the banks as `text[]`.
    pub(crate) banks: String,
    /// The predicate on `m.bank_id`.
    pub(crate) bank: String,
    /// Everything else (visibility and the recall filter); never empty.
    pub(crate) rest: String,
}

impl FilterSql {
    /// Every predicate.
    pub(crate) fn all(&self) -> String {
        format!("{} AND {}", self.bank, self.rest)
    }
}

/// Binds the filter's values and returns its predicates.
pub(crate) fn filter_sql(
    params: &mut Params,
    banks: &[String],
    filter: &RecallFilter,
) -> FilterSql {
    let banks_param = params.push(banks.to_vec(), Type::TEXT_ARRAY);
    let bank = format!("m.bank_id = ANY({banks_param}::text[])");
    let mut clauses = Vec::new();
    match filter.as_of {
        // Time travel: retained by then and not yet forgotten at that instant.
        Some(as_of) => {
            let at = params.push(as_of, Type::TIMESTAMPTZ);
            clauses.push(format!(
                "m.retained_at <= {at} AND (m.forgotten_at IS NULL OR m.forgotten_at > {at})"
            ));
        }
        None => clauses.push("m.forgotten_at IS NULL".into()),
    }
    if let Some(tags) = &filter.tags {
        // Overlap: untagged memories (empty array) never match.
        clauses.push(format!(
            "m.tags && {}::text[]",
            params.push(tags.clone(), Type::TEXT_ARRAY)
        ));
    }
    if let Some((start, end)) = filter.time_range {
        let start = params.push(start, Type::TIMESTAMPTZ);
        let end = params.push(end, Type::TIMESTAMPTZ);
        clauses.push(format!("m.effective_at BETWEEN {start} AND {end}"));
    }
    if let Some(fact_types) = &filter.fact_types {
        clauses.push(format!(
            "m.fact_type = ANY({}::text[])",
            params.push(fact_types.clone(), Type::TEXT_ARRAY)
        ));
    }
    if !filter.metadata.is_empty() {
        // Containment of an object of scalars is per-key equality (numbers compare as numbers)
        // and can use the jsonb_path_ops index.
        let object: serde_json::Map<String, serde_json::Value> = filter
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        clauses.push(format!(
            "m.metadata @> {}::jsonb",
            params.push(serde_json::Value::Object(object), Type::JSONB)
        ));
    }
    FilterSql {
        banks: banks_param,
        bank,
        rest: clauses.join(" AND "),
    }
}

/// Settings for the search transaction: the candidate list is the configured `ef_search`, or
/// the fetch when larger (pgvector's cap is 1000); HNSW iterative scans keep going until enough
/// rows pass the filter (pgvector >= 0.8), in strict distance order so the LIMIT keeps the best.
pub(crate) fn search_settings(fetch: usize, ef_search: usize) -> String {
    let ef_search = fetch.max(ef_search).clamp(1, 1000);
    format!("SET LOCAL hnsw.ef_search = {ef_search}; SET LOCAL hnsw.iterative_scan = strict_order;")
}

/// Builds the search statement. Output rows: `strategy`, `score` (float8: cosine distance,
/// BM25-like score, or effective time in epoch seconds) and the memory columns.
pub(crate) fn search_sql(
    binding: &TenantBinding,
    request: &SearchRequest,
    posting_budget: usize,
    frequent: &FrequentLexemes,
    params: &mut Params,
) -> Option<String> {
    let mut banks: Vec<String> = request
        .banks
        .iter()
        .map(|b| b.as_str().to_string())
        .collect();
    banks.sort();
    banks.dedup();
    let filter_parts = filter_sql(params, &banks, &request.filter);
    let filter = filter_parts.all();
    let table = &binding.tables.memories;
    let limit = params.push(to_i64(request.limit), Type::INT8);
    let mut ctes: Vec<String> = Vec::new();
    // The keyword and recency candidates, (strategy, tid, score).
    let mut selects: Vec<String> = Vec::new();
    // The statement's output: the semantic rows, then the fetched candidates.
    let mut rows: Vec<String> = Vec::new();

    if let Some(vector) = &request.vector {
        let fetch = params.push(to_i64(request.limit + SEMANTIC_TIE_MARGIN), Type::INT8);
        let query = format!(
            "{}::real[]::{}",
            params.push(vector.clone(), Type::FLOAT4_ARRAY),
            binding.vector.vector
        );
        let op = &binding.vector.cosine;
        let order = binding
            .vector
            .indexed_distance("m.embedding", &query, vector.len());
        // `sem_ann` is the HNSW scan (ORDER BY the index's own expression, which is what the
        // index answers; the distance returned is full precision). If it returns fewer rows
        // than the filter admits (`sem_cap`), a selective filter starved it; `sem_exact` then
        // runs an exact scan. Its condition references no row, so PostgreSQL evaluates it once
        // and skips the scan entirely when not needed. Both keep the memory's columns from the
        // row the scan already read, rather than fetching it again by key as the other
        // strategies do.
        ctes.push(format!(
            "sem_ann AS MATERIALIZED (SELECT (m.embedding {op} {query}) AS d, {MEMORY_COLUMNS} FROM {table} m \
               WHERE {filter} ORDER BY {order} LIMIT {fetch}), \
             sem_cap AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT 1 FROM {table} m WHERE {filter} LIMIT {fetch}) c), \
             sem_exact AS MATERIALIZED (SELECT (m.embedding {op} {query}) AS d, {MEMORY_COLUMNS} FROM {table} m \
               WHERE {filter} AND (SELECT count(*) FROM sem_ann) < (SELECT n FROM sem_cap) \
               ORDER BY (m.embedding {op} {query}), m.id, m.bank_id LIMIT {fetch}), \
             sem AS (SELECT * FROM sem_exact UNION ALL \
               SELECT * FROM sem_ann WHERE NOT EXISTS (SELECT 1 FROM sem_exact))"
        ));
        rows.push(format!(
            "SELECT {SEMANTIC} AS strategy, m.d AS score, {MEMORY_COLUMNS} FROM sem m"
        ));
    }

    if let Some(text) = &request.text {
        let text = params.push(text.clone(), Type::TEXT);
        ctes.push(keyword_ctes(
            binding,
            &text,
            posting_budget,
            frequent,
            &filter,
            &limit,
            params,
        ));
        selects.push(format!("SELECT {KEYWORD} AS strategy, tid, score FROM kw"));
    }

    if request.recency {
        // Each bank walks its (bank_id, effective_at DESC, id) index for its newest rows; the
        // banks' lists are then merged. A single `bank_id = ANY(...)` scan could not use the
        // index order and would sort every row of the banks.
        let (banks_param, rest) = (&filter_parts.banks, &filter_parts.rest);
        ctes.push(format!(
            "rec AS (SELECT r.tid, r.score FROM unnest({banks_param}::text[]) AS b(bank_id) \
               CROSS JOIN LATERAL (SELECT m.ctid AS tid, m.bank_id, m.id, m.effective_at, \
                 extract(epoch FROM m.effective_at)::float8 AS score FROM {table} m \
                 WHERE m.bank_id = b.bank_id AND {rest} ORDER BY m.effective_at DESC, m.id LIMIT {limit}) r \
               ORDER BY r.effective_at DESC, r.id, r.bank_id LIMIT {limit})"
        ));
        selects.push(format!("SELECT {RECENCY} AS strategy, tid, score FROM rec"));
    }

    if !selects.is_empty() {
        // The keyword and recency candidates are fetched by the row address their scan saw
        // (`ctid`, stable for the statement's snapshot): one heap page each, where a lookup by
        // key also walks the primary key's index. LATERAL, because the planner cannot estimate
        // the CTEs' sizes and would otherwise scan the whole table for a hash join.
        ctes.push(format!(
            "cand AS MATERIALIZED ({})",
            selects.join(" UNION ALL ")
        ));
        rows.push(format!(
            "SELECT c.strategy, c.score, {MEMORY_COLUMNS} FROM cand c CROSS JOIN LATERAL \
               (SELECT * FROM {table} m WHERE m.ctid = c.tid) m"
        ));
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "WITH {} {}",
        ctes.join(", "),
        rows.join(" UNION ALL ")
    ))
}

/// The keyword CTEs, ending in `kw` (bank_id, id, tid, score), for the query text `text` (a
/// parameter).
///
/// The query's lexemes come from the same parser and stemmer as the documents', then are
/// joined into a tsquery of quoted lexemes, so arbitrary text never fails to parse. Scores are
/// BM25 with statistics over the matching set (N = matches, df = matches holding the term,
/// length = distinct lexemes): cheap, deterministic, and ranked like BM25 (rare terms, repeated
/// terms and short documents score higher). Each match's vector is cut down to the query's
/// lexemes in C (setweight + ts_filter) before it is unnested, and the intermediate CTEs are
/// MATERIALIZED so the statistics are computed once, not per row.
///
/// Every matching row is read and scored, so with a `posting_budget` the lexemes are first
/// planned from the table's statistics (`frequent`: the most common lexemes and the rows
/// holding each, as `ANALYZE` recorded them): the rarest are OR-ed while their estimated
/// rows stay within the budget and the more frequent are dropped, as in the embedded store.
/// When even the rarest alone is over the budget, every query lexeme is required (AND)
/// instead. Either way at most `posting_budget` rows are scored. A lexeme missing from the
/// statistics is rarer than every listed one, so it counts as no rows.
fn keyword_ctes(
    binding: &TenantBinding,
    text: &str,
    posting_budget: usize,
    frequent: &FrequentLexemes,
    filter: &str,
    limit: &str,
    params: &mut Params,
) -> String {
    let table = &binding.tables.memories;
    let (k1, b) = (BM25_K1, BM25_B);
    let (plan, cap) = if posting_budget == 0 {
        (
            "kw_plan AS (SELECT lex, false AS every FROM kw_lex)".to_string(),
            String::new(),
        )
    } else {
        let budget = params.push(to_i64(posting_budget), Type::INT8);
        let lexemes = params.push(frequent.lexemes.clone(), Type::TEXT_ARRAY);
        let rows = params.push(frequent.rows.clone(), Type::FLOAT8_ARRAY);
        let plan = format!(
            "kw_rows AS (SELECT l.lexeme, COALESCE(({rows}::float8[])[array_position({lexemes}::text[], l.lexeme)], 0) AS est \
               FROM unnest((SELECT lex FROM kw_lex)) AS l(lexeme)), \
             kw_cum AS (SELECT lexeme, sum(est) OVER (ORDER BY est, lexeme) AS total FROM kw_rows), \
             kw_plan AS (SELECT CASE WHEN min(total) > {budget} THEN array_agg(lexeme) \
                 ELSE array_agg(lexeme) FILTER (WHERE total <= {budget}) END AS lex, \
                 COALESCE(min(total) > {budget}, false) AS every FROM kw_cum)"
        );
        (plan, format!(" LIMIT {budget}"))
    };
    format!(
        "kw_lex AS (SELECT COALESCE(array_agg(u.lexeme), '{{}}') AS lex \
           FROM unnest(to_tsvector('english'::regconfig, {text})) u), \
         {plan}, \
         kw_query AS (SELECT COALESCE(lex, '{{}}') AS lex, CASE WHEN COALESCE(cardinality(lex), 0) = 0 THEN NULL ELSE \
           array_to_string(ARRAY(SELECT '''' || replace(replace(l, '\\', '\\\\'), '''', '''''') || '''' \
             FROM unnest(lex) l), CASE WHEN every THEN ' & ' ELSE ' | ' END)::tsquery END AS q FROM kw_plan), \
         kw_match AS MATERIALIZED (SELECT m.bank_id, m.id, m.ctid AS tid, length(m.tsv)::float8 AS dl, \
             ts_filter(setweight(m.tsv, 'A', (SELECT lex FROM kw_query)), '{{a}}') AS qv \
           FROM {table} m WHERE m.tsv @@ (SELECT q FROM kw_query) AND {filter}{cap}), \
         kw_tf AS MATERIALIZED (SELECT k.bank_id, k.id, k.tid, k.dl, u.lexeme, cardinality(u.positions)::float8 AS tf \
           FROM kw_match k CROSS JOIN LATERAL unnest(k.qv) u), \
         kw_df AS MATERIALIZED (SELECT lexeme, count(*)::float8 AS df FROM kw_tf GROUP BY lexeme), \
         kw_stat AS MATERIALIZED (SELECT count(*)::float8 AS n, COALESCE(avg(dl), 1)::float8 AS avgdl FROM kw_match), \
         kw AS (SELECT t.bank_id, t.id, t.tid, sum(ln(1 + (s.n - f.df + 0.5) / (f.df + 0.5)) \
             * (t.tf * ({k1} + 1)) / (t.tf + {k1} * (1 - {b} + {b} * t.dl / GREATEST(s.avgdl, 1)))) AS score \
           FROM kw_tf t JOIN kw_df f USING (lexeme) CROSS JOIN kw_stat s \
           GROUP BY t.bank_id, t.id, t.tid ORDER BY score DESC, t.id, t.bank_id LIMIT {limit})"
    )
}

#[cfg(test)]
mod tests {
    use super::search_settings;

    #[test]
    fn ef_search_is_the_configured_floor_raised_by_the_fetch_and_capped() {
        assert!(search_settings(1, 12).contains("hnsw.ef_search = 12;"));
        assert!(search_settings(26, 12).contains("hnsw.ef_search = 26;"));
        assert!(search_settings(26, 64).contains("hnsw.ef_search = 64;"));
        assert!(search_settings(5_000, 40).contains("hnsw.ef_search = 1000;"));
    }
}
