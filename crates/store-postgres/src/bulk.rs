//! Bulk loads: an import into a (nearly) empty tenant sets its vector index aside and builds
//! it once at the end.
//!
//! pgvector grows an HNSW graph row by row inside each inserting transaction, about 2 ms a
//! row at 100,000 rows on one core; building the same graph over rows already stored costs a
//! tenth of that (docs/benchmarks/postgres-hnsw.md). So a load into a tenant holding fewer
//! than `HnswParams::bulk_load_below` rows drops the index, records that in the tenant's meta
//! table (`META_INDEX_DEFERRED`) and builds it again when the load ends. Meanwhile a vector
//! search is an exact scan: every answer stays right, only slower as the tenant grows.
//!
//! Whoever finds the mark builds the index: the load's end, or the next process to use the
//! tenant (after a crash, or while another process loads: the load then goes on row by row).
//! A load is never undercut by its own handle: `bulk_loads` counts them, and is raised before
//! the mark is written.

use std::sync::atomic::Ordering;

use astrocyte_core::tenancy::fq_table;
use astrocyte_core::Result;
use chrono::Utc;
use tokio_postgres::types::Type;

use crate::error::PgResult;
use crate::names::{HNSW_INDEX, HNSW_MAX_DIMENSION};
use crate::session::TenantTransaction;
use crate::sql::Params;
use crate::tenant::{PostgresTenant, META_INDEX_DEFERRED};

impl PostgresTenant {
    /// Sets the vector index aside for a bulk load when the tenant holds fewer rows than the
    /// configured bound. Returns whether the caller must call [`Self::finish_bulk_load`].
    pub(crate) async fn start_bulk_load(&self) -> Result<bool> {
        let below = self.binding.vector.hnsw.bulk_load_below;
        if below == 0 {
            return Ok(false);
        }
        // Counted before the mark exists, so this handle's recovery never takes it for a
        // crashed load's.
        self.bulk_loads.fetch_add(1, Ordering::SeqCst);
        let deferred = self.defer(below).await;
        if !matches!(deferred, Ok(true)) {
            self.bulk_loads.fetch_sub(1, Ordering::SeqCst);
        }
        deferred
    }

    /// [`Self::defer_index`] in a transaction of its own.
    async fn defer(&self, below: usize) -> Result<bool> {
        let mut transaction = self.begin("").await?;
        let deferred = self.defer_index(&transaction, below).await;
        let finished = match &deferred {
            Ok(_) => transaction.finish("COMMIT").await,
            Err(_) => transaction.finish("ROLLBACK").await,
        };
        let deferred = deferred?;
        finished?;
        Ok(deferred)
    }

    /// Under the space lock: marks the index set aside and drops it, when the tenant is small
    /// enough and its vectors are indexed at all.
    async fn defer_index(&self, transaction: &TenantTransaction, below: usize) -> PgResult<bool> {
        let space = self.locked_space(transaction).await?;
        if space.dimension.is_some_and(|d| d > HNSW_MAX_DIMENSION) {
            return Ok(false);
        }
        let mut params = Params::default();
        let bound = params.push(i64::try_from(below).unwrap_or(i64::MAX), Type::INT8);
        let rows = transaction
            .typed(
                &format!(
                    "SELECT count(*) AS n FROM (SELECT 1 FROM {} LIMIT {bound}) s",
                    self.binding.tables.memories
                ),
                &params,
            )
            .await?;
        let held: i64 = rows
            .first()
            .map(|row| row.try_get("n"))
            .transpose()?
            .unwrap_or(0);
        if usize::try_from(held).unwrap_or(usize::MAX) >= below {
            return Ok(false);
        }
        self.set_meta(transaction, META_INDEX_DEFERRED, &Utc::now().to_rfc3339())
            .await?;
        transaction
            .batch(&format!("DROP INDEX IF EXISTS {}", self.hnsw_index()))
            .await?;
        Ok(true)
    }

    /// Ends a bulk load [`Self::start_bulk_load`] started: builds the index it set aside.
    pub(crate) async fn finish_bulk_load(&self) -> Result<()> {
        let built = self.build_deferred_index().await;
        self.bulk_loads.fetch_sub(1, Ordering::SeqCst);
        built
    }

    /// Builds, on a task of its own, an index a bulk load set aside, unless a load of this
    /// handle is running: another process's load, or one that ended in a crash. The caller
    /// has just seen the mark.
    pub(crate) fn recover_deferred_index(&self) {
        // The mark first, then the count: a load of ours raised the count before writing it.
        if self.bulk_loads.load(Ordering::SeqCst) > 0 {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            match me.build_deferred_index().await {
                Ok(()) => tracing::info!(
                    tenant = %me.binding.schema,
                    "built the vector index a bulk load had set aside"
                ),
                Err(error) => tracing::warn!(
                    tenant = %me.binding.schema,
                    %error,
                    "could not build the vector index a bulk load had set aside"
                ),
            }
        });
    }

    /// Builds the index if the mark is still there, and removes the mark, in one transaction:
    /// writes to the tenant wait for the build, reads go on (exactly, until it commits).
    async fn build_deferred_index(&self) -> Result<()> {
        let mut transaction = self
            .begin(&self.binding.vector.hnsw.build_settings())
            .await?;
        let built = self.build_in(&transaction).await;
        let finished = match &built {
            Ok(()) => transaction.finish("COMMIT").await,
            Err(_) => transaction.finish("ROLLBACK").await,
        };
        built?;
        Ok(finished?)
    }

    async fn build_in(&self, transaction: &TenantTransaction) -> PgResult<()> {
        let space = self.locked_space(transaction).await?;
        if !space.index_deferred {
            return Ok(());
        }
        if let Some(dimension) = space.dimension.filter(|d| *d <= HNSW_MAX_DIMENSION) {
            let table = &self.binding.tables.memories;
            transaction
                .batch(&self.binding.vector.index_ddl(table, &dimension.to_string()))
                .await?;
        }
        let mut params = Params::default();
        let key = params.push(META_INDEX_DEFERRED.to_string(), Type::TEXT);
        transaction
            .typed(
                &format!("DELETE FROM {} WHERE key = {key}", self.binding.tables.meta),
                &params,
            )
            .await?;
        Ok(())
    }

    pub(crate) fn hnsw_index(&self) -> String {
        fq_table(&self.binding.schema, HNSW_INDEX)
            .expect("the index name constant is a valid identifier")
    }
}
