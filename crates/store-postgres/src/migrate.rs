//! Versioned per-tenant migrations: the ordered list, the per-schema ledger, and the runner
//! used both at tenant creation and by the fan-out. Every migration runs in its own
//! transaction as the tenant's role, with its ledger row, under a per-schema advisory lock.
//! All DDL is fully qualified through `fq_table`; the search path holds no user schema, so an
//! unqualified name fails instead of landing in `public`.

use std::fmt;

use astrocyte_core::Schema;
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tracing::{info, instrument, warn};

use crate::error::{has_code, PgError, PgResult};
use crate::names::{quoted_schema, HNSW_MAX_DIMENSION, LOCK_MIGRATE, VECTOR_HNSW_INDEX};
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::Params;
use crate::tenant::META_DIMENSION;

/// One schema change, identified by a version that never changes once released.
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) name: &'static str,
    /// The DDL statements, built from the tenant's fully qualified names.
    pub(crate) statements: fn(&TenantBinding) -> Vec<String>,
}

/// Every migration, in order. Append only: editing a released entry would leave tenants that
/// already ran it with a different schema than new ones.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "meta",
        statements: |t| {
            vec![format!(
                "CREATE TABLE {meta} (key text COLLATE \"C\" PRIMARY KEY, value text NOT NULL)",
                meta = t.tables.meta
            )]
        },
    },
    Migration {
        version: 2,
        name: "memories",
        statements: |t| {
            let m = &t.tables.memories;
            // The vector column is untyped until the tenant's embedding space is known; the
            // first `ensure_embedding_space` (or insert) types it and builds the HNSW index.
            // Ids are unique per bank (an import may copy a bank under the same ids), so the
            // key is (bank_id, id), which also serves scans in id order. The keyword index covers
            // `index_text` (the text with its retrieval context) when the engine gave one. GIN
            // indexes skip the pending list (fastupdate off): every search would otherwise scan
            // that list linearly until a vacuum merges it, which autovacuum may never do. Ids and banks use the "C" collation so ordering is bytewise, as in the embedded
            // store, whatever the database locale.
            vec![
                format!(
                    "CREATE TABLE {m} (\
                       id text COLLATE \"C\" NOT NULL, \
                       bank_id text COLLATE \"C\" NOT NULL, \
                       text text NOT NULL, \
                       tags text[] NOT NULL DEFAULT '{{}}', \
                       metadata jsonb NOT NULL DEFAULT '{{}}', \
                       fact_type text NOT NULL, \
                       occurred_at timestamptz, \
                       retained_at timestamptz NOT NULL, \
                       forgotten_at timestamptz, \
                       source text, \
                       chunk_group text, \
                       chunk_index integer, \
                       chunk_count integer, \
                       index_text text, \
                       embedding {vector} NOT NULL, \
                       effective_at timestamptz GENERATED ALWAYS AS (COALESCE(occurred_at, retained_at)) STORED, \
                       tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, COALESCE(index_text, text))) STORED, \
                       PRIMARY KEY (bank_id, id))",
                    vector = t.vector.vector
                ),
                format!("CREATE INDEX astrocyte_memories_recency ON {m} (bank_id, effective_at DESC, id)"),
                format!("CREATE INDEX astrocyte_memories_tsv ON {m} USING gin (tsv) WITH (fastupdate = off)"),
                format!("CREATE INDEX astrocyte_memories_tags ON {m} USING gin (tags) WITH (fastupdate = off)"),
            ]
        },
    },
    Migration {
        version: 3,
        name: "metadata_index",
        statements: |t| {
            vec![format!(
                "CREATE INDEX astrocyte_memories_metadata ON {m} USING gin (metadata jsonb_path_ops) \
                 WITH (fastupdate = off)",
                m = t.tables.memories
            )]
        },
    },
    Migration {
        version: 4,
        name: "jobs_and_settings",
        statements: |t| {
            let jobs = &t.tables.jobs;
            // One partial index per way `claim` finds work (due queued jobs, expired leases), so
            // a claim never scans finished jobs; idempotency keys are unique only when given.
            vec![
                format!(
                    "CREATE TABLE {jobs} (\
                       id text COLLATE \"C\" PRIMARY KEY, \
                       kind text NOT NULL, \
                       payload jsonb NOT NULL, \
                       state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')), \
                       attempts integer NOT NULL DEFAULT 0, \
                       max_attempts integer NOT NULL CHECK (max_attempts > 0), \
                       last_error text, \
                       result jsonb, \
                       idempotency_key text COLLATE \"C\", \
                       run_at timestamptz NOT NULL, \
                       lease_owner text, \
                       lease_until timestamptz, \
                       created_at timestamptz NOT NULL, \
                       updated_at timestamptz NOT NULL)"
                ),
                format!(
                    "CREATE UNIQUE INDEX astrocyte_jobs_idempotency ON {jobs} (idempotency_key) \
                     WHERE idempotency_key IS NOT NULL"
                ),
                format!("CREATE INDEX astrocyte_jobs_due ON {jobs} (run_at, id) WHERE state = 'queued'"),
                format!(
                    "CREATE INDEX astrocyte_jobs_leases ON {jobs} (lease_until) WHERE state = 'running'"
                ),
                format!("CREATE INDEX astrocyte_jobs_listing ON {jobs} (state, created_at, id)"),
                format!(
                    "CREATE TABLE {settings} (key text COLLATE \"C\" PRIMARY KEY, value jsonb NOT NULL)",
                    settings = t.tables.settings
                ),
                // Re-embedding addresses memories by id alone (`replace_embeddings`).
                format!(
                    "CREATE INDEX astrocyte_memories_id ON {m} (id)",
                    m = t.tables.memories
                ),
            ]
        },
    },
    Migration {
        version: 5,
        name: "thread_column",
        statements: |t| {
            // A memory's conversation or thread: its neighbours there (by effective time, then
            // id) lend it keyword context.
            let m = &t.tables.memories;
            vec![
                format!("ALTER TABLE {m} ADD COLUMN thread text"),
                format!(
                    "CREATE INDEX astrocyte_memories_thread ON {m} (bank_id, thread, effective_at, id) \
                     WHERE thread IS NOT NULL"
                ),
            ]
        },
    },
    Migration {
        version: 6,
        name: "change_log",
        statements: |t| {
            let m = &t.tables.memories;
            let changes = &t.tables.changes;
            // Each entry records its transaction: sequence numbers are handed out before
            // commit, so a reader orders by (transaction, sequence) and stops below the oldest
            // transaction still running, past which no entry can appear any more.
            vec![
                format!("CREATE INDEX astrocyte_memories_retained ON {m} (bank_id, retained_at DESC, id DESC)"),
                format!(
                    "CREATE TABLE {changes} (\
                       xid xid8 NOT NULL DEFAULT pg_current_xact_id(), \
                       seq bigserial NOT NULL, \
                       bank_id text COLLATE \"C\" NOT NULL, \
                       memory_id text COLLATE \"C\" NOT NULL, \
                       kind text NOT NULL CHECK (kind IN ('created', 'updated', 'forgotten')), \
                       at timestamptz NOT NULL DEFAULT clock_timestamp(), \
                       PRIMARY KEY (bank_id, xid, seq))"
                ),
                format!("CREATE INDEX astrocyte_changes_memory ON {changes} (bank_id, memory_id, xid, seq)"),
                // What the tenant already holds enters the log at its own times.
                format!(
                    "INSERT INTO {changes} (bank_id, memory_id, kind, at) \
                     SELECT bank_id, id, 'created', retained_at FROM {m} ORDER BY retained_at, id"
                ),
                format!(
                    "INSERT INTO {changes} (bank_id, memory_id, kind, at) \
                     SELECT bank_id, id, 'forgotten', forgotten_at FROM {m} \
                     WHERE forgotten_at IS NOT NULL ORDER BY forgotten_at, id"
                ),
            ]
        },
    },
    Migration {
        version: 7,
        name: "memory_entities",
        statements: |t| {
            let m = &t.tables.memories;
            let entities = &t.tables.entities;
            // The entities each memory mentions, written with it and gone with it (a purge
            // cascades; a soft forget hides them through the memory's `forgotten_at`). Ids are
            // unique per bank, so the memory is referenced by (bank_id, id). Memories stored
            // before this migration have no rows: extraction runs in the engine, not in SQL.
            vec![
                format!(
                    "CREATE TABLE {entities} (\
                       memory_id text COLLATE \"C\" NOT NULL, \
                       bank_id text COLLATE \"C\" NOT NULL, \
                       entity_key text COLLATE \"C\" NOT NULL, \
                       name text NOT NULL, \
                       kind text NOT NULL, \
                       mentions integer NOT NULL, \
                       speaker boolean NOT NULL, \
                       PRIMARY KEY (bank_id, memory_id, entity_key), \
                       FOREIGN KEY (bank_id, memory_id) REFERENCES {m} (bank_id, id) ON DELETE CASCADE)"
                ),
                format!("CREATE INDEX astrocyte_memory_entities_key ON {entities} (bank_id, entity_key)"),
            ]
        },
    },
    Migration {
        version: 8,
        name: "halfvec_hnsw",
        statements: |t| {
            // The HNSW graph moves to the vectors' half-precision cast (see `VectorSql`). A
            // tenant whose column is typed gets the new index built, then the old one dropped
            // in the same transaction (a server of the previous release keeps searching with
            // it until the commit). Writes wait for the build, which is bounded by the
            // tenant's size, not by the request timeout.
            let ddl = t
                .vector
                .index_ddl(&t.tables.memories, "%s")
                .replace('\'', "''");
            let old = format!("{}.{VECTOR_HNSW_INDEX}", quoted_schema(&t.schema));
            vec![
                t.vector.hnsw.build_settings(),
                format!(
                    "DO $migration$ DECLARE dimension integer; BEGIN \
                       SELECT value::integer INTO dimension FROM {meta} WHERE key = '{META_DIMENSION}'; \
                       IF dimension <= {HNSW_MAX_DIMENSION} THEN EXECUTE format('{ddl}', dimension); END IF; \
                       DROP INDEX IF EXISTS {old}; \
                     END $migration$",
                    meta = t.tables.meta
                ),
            ]
        },
    },
    Migration {
        version: 9,
        name: "inline_vectors",
        statements: |t| {
            // pgvector stores vectors out of line (TOAST) once a row passes about 2 kB, which
            // a 384-dimension vector alone nearly does: every exact distance of a search or a
            // near-duplicate probe then costs a lookup in the TOAST table's index, and every
            // insert a second heap row and index entry. Rows now stay whole up to a page;
            // larger ones are still moved out of line. Rows stored before keep their layout
            // until rewritten.
            vec![format!(
                "ALTER TABLE {} SET (toast_tuple_target = {ROW_INLINE_LIMIT})",
                t.tables.memories
            )]
        },
    },
];

/// The largest `toast_tuple_target` PostgreSQL accepts with its default 8 kB pages: a row is
/// moved out of line only when it would not fit a page whole.
const ROW_INLINE_LIMIT: u32 = 8160;

/// The version a fully migrated tenant is at.
pub const LATEST_MIGRATION: u32 = 9;

/// What migrating one tenant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// This run applied the migrations after `from`, leaving the tenant at `to`.
    Applied {
        /// The version found before this run.
        from: u32,
        /// The version reached.
        to: u32,
    },
    /// Nothing to do (possibly because another process applied them concurrently).
    AlreadyCurrent {
        /// The tenant's version.
        version: u32,
    },
    /// A migration failed; the ones before it are committed and a re-run resumes there.
    Failed {
        /// The last version committed for this tenant.
        reached: u32,
        /// Why it failed.
        message: String,
    },
}

impl MigrationStatus {
    /// Whether this tenant ended up fully migrated.
    pub fn is_ok(&self) -> bool {
        !matches!(self, MigrationStatus::Failed { .. })
    }
}

/// The outcome of migrating one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMigration {
    /// The tenant.
    pub schema: Schema,
    /// What happened.
    pub status: MigrationStatus,
}

impl fmt::Display for TenantMigration {
    /// One line per tenant, for the CLI: `acme: ok (1 -> 3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            MigrationStatus::Applied { from, to } => {
                write!(f, "{}: ok ({from} -> {to})", self.schema)
            }
            MigrationStatus::AlreadyCurrent { version } => {
                write!(f, "{}: already current ({version})", self.schema)
            }
            MigrationStatus::Failed { reached, message } => {
                write!(
                    f,
                    "{}: failed (stopped at {reached}): {message}",
                    self.schema
                )
            }
        }
    }
}

/// The outcome of a fan-out over every tenant, sorted by schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// One entry per tenant in the directory.
    pub tenants: Vec<TenantMigration>,
}

impl MigrationReport {
    /// Whether every tenant is fully migrated (the CLI exits non-zero otherwise).
    pub fn all_ok(&self) -> bool {
        self.tenants.iter().all(|t| t.status.is_ok())
    }

    /// The tenants that failed.
    pub fn failed(&self) -> impl Iterator<Item = &TenantMigration> {
        self.tenants.iter().filter(|t| !t.status.is_ok())
    }
}

/// Creates the ledger if needed; runs inside a migration transaction, under its lock.
fn ledger_sql(binding: &TenantBinding) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {ledger} (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
        ledger = binding.tables.ledger
    )
}

/// Applies `migration` inside `transaction` (already running as the tenant role) unless its
/// ledger row exists. The advisory lock serialises concurrent runners per schema; the ledger
/// is read after taking it, so a migration committed meanwhile is seen and skipped.
pub(crate) async fn apply_in(
    transaction: &TenantTransaction,
    binding: &TenantBinding,
    migration: &Migration,
) -> PgResult<bool> {
    let mut params = Params::default();
    let class = params.push(LOCK_MIGRATE, Type::INT4);
    let key = params.push(binding.schema.as_str().to_string(), Type::TEXT);
    transaction
        .typed(
            &format!("SELECT pg_advisory_xact_lock({class}, hashtext({key}))"),
            &params,
        )
        .await?;
    transaction.batch(&ledger_sql(binding)).await?;
    let mut params = Params::default();
    let version = params.push(migration.version as i32, Type::INT4);
    let done = transaction
        .typed(
            &format!(
                "SELECT 1 FROM {} WHERE version = {version}",
                binding.tables.ledger
            ),
            &params,
        )
        .await?;
    if !done.is_empty() {
        return Ok(false);
    }
    for statement in (migration.statements)(binding) {
        transaction.batch(&statement).await?;
    }
    let mut params = Params::default();
    let version = params.push(migration.version as i32, Type::INT4);
    let name = params.push(migration.name.to_string(), Type::TEXT);
    transaction
        .typed(
            &format!(
                "INSERT INTO {} (version, name) VALUES ({version}, {name})",
                binding.tables.ledger
            ),
            &params,
        )
        .await?;
    Ok(true)
}

/// The tenant's current version: the highest ledger row, 0 when there is no ledger yet.
pub(crate) async fn current_version(pool: &Pool, binding: &TenantBinding) -> PgResult<u32> {
    let transaction = TenantTransaction::begin(pool, binding, "").await?;
    let sql = format!(
        "SELECT COALESCE(max(version), 0) AS version FROM {}",
        binding.tables.ledger
    );
    match transaction
        .typed_then_commit(&sql, &Params::default())
        .await
    {
        Ok(rows) => {
            let version: i32 = rows
                .first()
                .map(|row| row.try_get("version"))
                .transpose()?
                .unwrap_or(0);
            Ok(u32::try_from(version).unwrap_or(0))
        }
        Err(error) if has_code(&error, &SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(error) => Err(error),
    }
}

/// Brings one tenant to [`LATEST_MIGRATION`], one transaction per migration, on the server
/// `pool` reaches; the version reached is recorded in the directory on `directory`.
#[instrument(skip_all, fields(tenant = %binding.schema))]
pub(crate) async fn migrate_tenant(
    directory: &Pool,
    pool: &Pool,
    binding: &TenantBinding,
) -> MigrationStatus {
    let from = match current_version(pool, binding).await {
        Ok(version) => version,
        Err(error) => {
            return MigrationStatus::Failed {
                reached: 0,
                message: astrocyte_core::Error::from(error).to_string(),
            }
        }
    };
    if from >= LATEST_MIGRATION {
        remember(directory, binding, from).await;
        return MigrationStatus::AlreadyCurrent { version: from };
    }
    let mut reached = from;
    let mut applied_any = false;
    for migration in MIGRATIONS.iter().filter(|m| m.version > from) {
        match apply_one(pool, binding, migration).await {
            Ok(applied) => {
                applied_any |= applied;
                reached = migration.version;
            }
            Err(error) => {
                let message = astrocyte_core::Error::from(error).to_string();
                warn!(version = migration.version, %message, "migration failed");
                return MigrationStatus::Failed { reached, message };
            }
        }
    }
    remember(directory, binding, reached).await;
    if applied_any {
        info!(from, to = reached, "migrated");
        MigrationStatus::Applied { from, to: reached }
    } else {
        MigrationStatus::AlreadyCurrent { version: reached }
    }
}

/// Records the version in the directory; a failure only costs the next fan-out a look at
/// this tenant's ledger.
async fn remember(pool: &Pool, binding: &TenantBinding, version: u32) {
    if let Err(error) = crate::directory::record_version(pool, &binding.schema, version).await {
        warn!(%error, "recording the migrated version failed");
    }
}

async fn apply_one(pool: &Pool, binding: &TenantBinding, migration: &Migration) -> PgResult<bool> {
    let mut transaction = TenantTransaction::begin(pool, binding, "").await?;
    match apply_in(&transaction, binding, migration).await {
        Ok(applied) => {
            transaction.finish("COMMIT").await?;
            Ok(applied)
        }
        Err(error) => {
            // The transaction is aborted; a failed rollback only means the connection is gone.
            let _ = transaction.finish("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Checks the list is well formed: versions strictly increasing from 1, ending at the latest.
pub(crate) fn check_migrations() -> Result<(), PgError> {
    let ordered = MIGRATIONS
        .iter()
        .enumerate()
        .all(|(index, m)| m.version as usize == index + 1);
    if ordered && MIGRATIONS.last().map(|m| m.version) == Some(LATEST_MIGRATION) {
        Ok(())
    } else {
        Err(PgError::Config(
            "migration list is not numbered 1..=LATEST_MIGRATION".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_list_is_contiguous() {
        assert!(check_migrations().is_ok());
    }

    #[test]
    fn report_lines_name_the_tenant_and_outcome() {
        let schema = Schema::new("acme").expect("valid");
        let line = |status| {
            TenantMigration {
                schema: schema.clone(),
                status,
            }
            .to_string()
        };
        assert_eq!(
            line(MigrationStatus::Applied { from: 1, to: 3 }),
            "acme: ok (1 -> 3)"
        );
        assert_eq!(
            line(MigrationStatus::AlreadyCurrent { version: 3 }),
            "acme: already current (3)"
        );
        assert_eq!(
            line(MigrationStatus::Failed {
                reached: 2,
                message: "boom".into()
            }),
            "acme: failed (stopped at 2): boom"
        );
        let report = MigrationReport {
            tenants: vec![TenantMigration {
                schema,
                status: MigrationStatus::Failed {
                    reached: 0,
                    message: "x".into(),
                },
            }],
        };
        assert!(!report.all_ok());
        assert_eq!(report.failed().count(), 1);
    }
}
