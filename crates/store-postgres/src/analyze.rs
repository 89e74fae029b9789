//! Keeps a tenant's planner statistics roughly current without relying on autovacuum: after
//! the rows inserted through a handle exceed a fraction of the table, one background `ANALYZE`
//! runs as the tenant role. It never blocks a request and never vacuums.
//!
//! Why: with no statistics PostgreSQL assumes a bank filter matches 0.5% of rows and prefers an
//! exact scan-and-sort to the HNSW index, which turns every probe into a full scan of the
//! bank. Autovacuum normally prevents that, but it lags bulk loads and is off on some servers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio_postgres::types::Type;
use tracing::{debug, warn};

use crate::error::PgResult;
use crate::names::MEMORIES_TABLE;
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::Params;

/// Rows inserted before the first `ANALYZE` of a fresh table.
const FIRST_ANALYZE_ROWS: u64 = 500;
/// Later, re-analyze once inserts reach this fraction of the analyzed size (like autovacuum's
/// `autovacuum_analyze_scale_factor`, doubled because a bulk load re-analyzes often anyway).
const GROWTH_FRACTION: u64 = 5;

/// Insert counts since the last `ANALYZE` this process ran for one tenant.
#[derive(Debug, Default)]
pub(crate) struct StatisticsRefresh {
    running: AtomicBool,
    /// Rows the table held at the last analyze (0 before the first).
    analyzed_rows: AtomicU64,
    /// Rows inserted since.
    inserted: AtomicU64,
    /// What keyword search knows of the table's frequent lexemes; dropped after an analyze.
    pub(crate) frequent: FrequentLexemesCache,
}

impl StatisticsRefresh {
    /// Counts `rows` inserted and, past the threshold, starts one background `ANALYZE`.
    pub(crate) fn note_inserted(
        self: &Arc<Self>,
        rows: usize,
        pool: &Pool,
        binding: &TenantBinding,
    ) {
        let inserted = self.inserted.fetch_add(rows as u64, Ordering::Relaxed) + rows as u64;
        let analyzed = self.analyzed_rows.load(Ordering::Relaxed);
        if inserted < FIRST_ANALYZE_ROWS.max(analyzed / GROWTH_FRACTION) {
            return;
        }
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (state, pool, binding) = (self.clone(), pool.clone(), binding.clone());
        tokio::spawn(async move {
            match analyze(&pool, &binding).await {
                Ok(rows) => {
                    state.analyzed_rows.store(rows, Ordering::Relaxed);
                    state.inserted.store(0, Ordering::Relaxed);
                    state.frequent.invalidate();
                    debug!(tenant = %binding.schema, rows, "statistics refreshed");
                }
                // The planner keeps its old statistics; the next insert tries again.
                Err(error) => warn!(tenant = %binding.schema, %error, "statistics refresh failed"),
            }
            state.running.store(false, Ordering::Release);
        });
    }
}

/// Runs `ANALYZE` on the tenant's memories (the role owns the table) and returns the row
/// estimate it recorded.
async fn analyze(pool: &Pool, binding: &TenantBinding) -> PgResult<u64> {
    let mut transaction = TenantTransaction::begin(pool, binding, "").await?;
    transaction
        .batch(&format!("ANALYZE {}", binding.tables.memories))
        .await?;
    let mut params = Params::default();
    let table = params.push(binding.tables.memories.clone(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!("SELECT GREATEST(reltuples, 0)::int8 AS n FROM pg_catalog.pg_class WHERE oid = {table}::regclass"),
            &params,
        )
        .await?;
    transaction.finish("COMMIT").await?;
    let estimate: i64 = rows
        .first()
        .map(|row| row.try_get("n"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(estimate).unwrap_or(0))
}

/// How long the frequent lexemes read from `pg_stats` are trusted when no `ANALYZE` of this
/// process says they changed (another process, or autovacuum, may have analyzed).
const FREQUENT_LEXEMES_TTL: Duration = Duration::from_secs(30);

/// The table's most frequent lexemes and the rows estimated to hold each, as `ANALYZE` last
/// recorded them (`pg_stats.most_common_elems` of `tsv`, times the table's row estimate).
/// Keyword search plans its words with them; lexemes not listed are rarer than all listed.
#[derive(Debug, Default)]
pub(crate) struct FrequentLexemes {
    pub(crate) lexemes: Vec<String>,
    pub(crate) rows: Vec<f64>,
}

/// The cached [`FrequentLexemes`] of one tenant.
#[derive(Debug, Default)]
pub(crate) struct FrequentLexemesCache {
    cached: Mutex<Option<(Instant, Arc<FrequentLexemes>)>>,
    /// Held while the list is read, so one request reads it at a time.
    reading: tokio::sync::Mutex<()>,
}

impl FrequentLexemesCache {
    /// The lexemes estimated in at least `floor` rows. Read again when older than the TTL or
    /// after this process analyzed the table. Until the first read ends, other requests wait
    /// for it; after that, they keep using the previous list while one request reads the
    /// next. A failed read leaves the cache as it was (empty: no word is dropped, the cap
    /// still holds).
    pub(crate) async fn get(
        &self,
        pool: &Pool,
        binding: &TenantBinding,
        floor: f64,
    ) -> Arc<FrequentLexemes> {
        let fresh = |cached: &Option<(Instant, Arc<FrequentLexemes>)>| {
            cached
                .as_ref()
                .filter(|(at, _)| at.elapsed() < FREQUENT_LEXEMES_TTL)
                .map(|(_, lexemes)| lexemes.clone())
        };
        let stale = {
            let cached = self.cached.lock();
            if let Some(lexemes) = fresh(&cached) {
                return lexemes;
            }
            cached.as_ref().map(|(_, lexemes)| lexemes.clone())
        };
        let _reading = match &stale {
            Some(stale) => match self.reading.try_lock() {
                Ok(guard) => guard,
                Err(_) => return stale.clone(),
            },
            None => self.reading.lock().await,
        };
        // Another request may have read it while this one waited.
        if let Some(lexemes) = fresh(&self.cached.lock()) {
            return lexemes;
        }
        match frequent_lexemes(pool, binding, floor).await {
            Ok(lexemes) => {
                let lexemes = Arc::new(lexemes);
                *self.cached.lock() = Some((Instant::now(), lexemes.clone()));
                lexemes
            }
            Err(error) => {
                debug!(tenant = %binding.schema, %error, "keyword statistics unreadable");
                stale.unwrap_or_default()
            }
        }
    }

    /// Forgets the list: the table was just analyzed.
    pub(crate) fn invalidate(&self) {
        *self.cached.lock() = None;
    }
}

async fn frequent_lexemes(
    pool: &Pool,
    binding: &TenantBinding,
    floor: f64,
) -> PgResult<FrequentLexemes> {
    let mut transaction = TenantTransaction::begin(pool, binding, "").await?;
    let mut params = Params::default();
    let table = params.push(binding.tables.memories.clone(), Type::TEXT);
    let schema = params.push(binding.schema.as_str().to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT s.most_common_elems::text::text[] AS lexemes, s.most_common_elem_freqs AS freqs, \
                   GREATEST(c.reltuples, 0)::float8 AS n \
                 FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = {schema} \
                   AND s.tablename = '{MEMORIES_TABLE}' AND s.attname = 'tsv' \
                 WHERE c.oid = {table}::regclass"
            ),
            &params,
        )
        .await?;
    transaction.finish("COMMIT").await?;
    let mut frequent = FrequentLexemes::default();
    let Some(row) = rows.first() else {
        return Ok(frequent);
    };
    let lexemes: Option<Vec<String>> = row.try_get("lexemes")?;
    let freqs: Option<Vec<f32>> = row.try_get("freqs")?;
    let n: f64 = row.try_get("n")?;
    // The frequencies carry three more entries (min, max, null share) after the lexemes'.
    for (lexeme, freq) in lexemes
        .unwrap_or_default()
        .into_iter()
        .zip(freqs.unwrap_or_default())
    {
        let rows = f64::from(freq) * n;
        if rows >= floor {
            frequent.lexemes.push(lexeme);
            frequent.rows.push(rows);
        }
    }
    Ok(frequent)
}
