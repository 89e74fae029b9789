//! Keeps a tenant's planner statistics roughly current without relying on autovacuum: after
//! the rows inserted through a handle exceed a fraction of the table, one background `ANALYZE`
//! runs as the tenant role. It never blocks a request and never vacuums.
//!
//! Why: with no statistics PostgreSQL assumes a bank filter matches 0.5% of rows and prefers an
//! exact scan-and-sort to the HNSW index, which turns every probe into a full scan of the
//! bank. Autovacuum normally prevents that, but it lags bulk loads and is off on some servers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tracing::{debug, warn};

use crate::error::PgResult;
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
    let table = params.push(
        binding.tables.memories.clone(),
        tokio_postgres::types::Type::TEXT,
    );
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
