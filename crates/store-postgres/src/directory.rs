//! The tenant directory in `public` and tenant administration: bootstrap (extension and
//! directory), create (role, schema, migrations in one transaction) and drop (schema, role
//! and data in one transaction). Runs as the pool's own user; tenant data is never read here.

use std::sync::Arc;

use astrocyte_core::tenancy::fq_table;
use astrocyte_core::{Schema, Timestamp};
use deadpool_postgres::Pool;
use tokio_postgres::types::Type;
use tracing::{info, instrument};

use crate::error::{PgError, PgResult};
use crate::migrate::{apply_in, LATEST_MIGRATION, MIGRATIONS};
use crate::names::{
    is_tagged_role, quoted_schema, DatabaseTag, RoleName, VectorSql, DIRECTORY_TABLE, KEYS_TABLE,
    LOCK_BOOTSTRAP, LOCK_TENANT,
};
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::Params;

/// One row of the tenant directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's name (its schema name).
    pub name: String,
    /// The tenant's schema.
    pub schema: Schema,
    /// The role owning the schema; every tenant transaction runs as it.
    pub role: RoleName,
    /// When the tenant was created.
    pub created_at: Timestamp,
    /// Lifecycle state; `active` for every tenant a reader can see, since creation and drop
    /// are single transactions.
    pub state: String,
    /// The migration version its ledger reached when last migrated here; `None` when not
    /// recorded (created by an older release), so only its ledger tells.
    pub migrated_version: Option<u32>,
}

/// The directory's fully qualified name.
pub(crate) fn directory_table() -> String {
    fq_table(&Schema::public(), DIRECTORY_TABLE)
        .expect("the directory table name is a valid identifier")
}

/// The job signal table's fully qualified name: per tenant, when a job may next be due.
pub(crate) fn signals_table() -> String {
    fq_table(&Schema::public(), "astrocyte_job_signals")
        .expect("the job signal table name is a valid identifier")
}

/// The API-key table's fully qualified name.
pub(crate) fn keys_table() -> String {
    fq_table(&Schema::public(), KEYS_TABLE).expect("the key table name is a valid identifier")
}

/// Ensures pgvector, the directory and the key table exist, and returns the schema pgvector
/// lives in and this database's tag (see [`DatabaseTag`]).
/// Serialised by an advisory lock so concurrent first connections do not race on
/// `CREATE EXTENSION`.
pub(crate) async fn bootstrap(pool: &Pool) -> PgResult<(Schema, DatabaseTag)> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .query_typed(
            "SELECT pg_advisory_xact_lock($1, 0)",
            &[(&LOCK_BOOTSTRAP, Type::INT4)],
        )
        .await?;
    let directory = directory_table();
    let keys = keys_table();
    let signals = signals_table();
    // The directory and the key table are readable by no tenant role: REVOKE from PUBLIC
    // (owner-only access) means a tenant query that strays into `public` cannot list or alter
    // other tenants or read key hashes. Keys reference their tenant's directory row, so
    // dropping the tenant deletes them in the same transaction.
    transaction
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS vector; \
             CREATE TABLE IF NOT EXISTS {directory} (\
               name text COLLATE \"C\" PRIMARY KEY, \
               schema text COLLATE \"C\" NOT NULL UNIQUE, \
               role text COLLATE \"C\" NOT NULL UNIQUE, \
               created_at timestamptz NOT NULL DEFAULT now(), \
               state text NOT NULL DEFAULT 'active'); \
             REVOKE ALL ON TABLE {directory} FROM PUBLIC; \
             CREATE TABLE IF NOT EXISTS {keys} (\
               key_id text COLLATE \"C\" PRIMARY KEY, \
               key_hash text COLLATE \"C\" NOT NULL UNIQUE, \
               schema text COLLATE \"C\" NOT NULL REFERENCES {directory} (schema) ON DELETE CASCADE, \
               principal text NOT NULL, \
               created_at timestamptz NOT NULL, \
               revoked_at timestamptz); \
             CREATE INDEX IF NOT EXISTS astrocyte_api_keys_schema ON {keys} (schema, key_id); \
             REVOKE ALL ON TABLE {keys} FROM PUBLIC; \
             DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
               WHERE attrelid = '{directory}'::regclass AND attname = 'migrated_version' \
               AND NOT attisdropped) THEN \
               ALTER TABLE {directory} ADD COLUMN migrated_version integer; END IF; END $$; \
             CREATE TABLE IF NOT EXISTS {signals} (\
               schema text COLLATE \"C\" PRIMARY KEY REFERENCES {directory} (schema) ON DELETE CASCADE, \
               due_at timestamptz, \
               version bigint NOT NULL DEFAULT 1); \
             CREATE INDEX IF NOT EXISTS astrocyte_job_signals_due ON {signals} (due_at) \
               WHERE due_at IS NOT NULL; \
             REVOKE ALL ON TABLE {signals} FROM PUBLIC; \
             INSERT INTO {signals} (schema, due_at) \
               SELECT t.schema, '-infinity' FROM {directory} t \
               WHERE NOT EXISTS (SELECT 1 FROM {signals} s WHERE s.schema = t.schema) \
             ON CONFLICT DO NOTHING"
        ))
        .await?;
    // The column is added only when missing: ALTER TABLE would lock the directory against
    // every reader on each connect. The INSERT above: a tenant without a signal row was created by an older release, whose
    // queue may hold jobs; it is visited once and settled like any other.
    let rows = transaction
        .query_typed(
            "SELECT n.nspname::text AS schema FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
            &[],
        )
        .await?;
    let database = transaction
        .query_typed(
            "SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    transaction.commit().await?;
    let oid: u32 = database
        .first()
        .ok_or_else(|| PgError::Config("the current database is not in pg_database".into()))?
        .try_get("oid")?;
    let name: String = rows
        .first()
        .ok_or_else(|| PgError::Config("the vector extension is not installed".into()))?
        .try_get("schema")?;
    let schema =
        Schema::new(name).map_err(|error| PgError::Config(format!("pgvector schema: {error}")))?;
    Ok((schema, DatabaseTag::from_oid(oid)))
}

fn record_from_row(row: &tokio_postgres::Row) -> PgResult<TenantRecord> {
    let schema: String = row.try_get("schema")?;
    let role: String = row.try_get("role")?;
    Ok(TenantRecord {
        name: row.try_get("name")?,
        schema: Schema::new(schema).map_err(|error| PgError::Decode(error.to_string()))?,
        role: RoleName::parse(&role)?,
        created_at: row.try_get("created_at")?,
        state: row.try_get("state")?,
        migrated_version: row
            .try_get::<_, Option<i32>>("migrated_version")?
            .map(|v| u32::try_from(v).unwrap_or(0)),
    })
}

/// The directory row of one tenant.
pub(crate) async fn lookup(pool: &Pool, schema: &Schema) -> PgResult<Option<TenantRecord>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            &format!(
                "SELECT name, schema, role, created_at, state, migrated_version FROM {} WHERE schema = $1",
                directory_table()
            ),
            &[(&schema.as_str(), Type::TEXT)],
        )
        .await?;
    rows.first().map(record_from_row).transpose()
}

/// Every directory row, sorted by schema.
pub(crate) async fn list(pool: &Pool) -> PgResult<Vec<TenantRecord>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            &format!(
                "SELECT name, schema, role, created_at, state, migrated_version FROM {} ORDER BY schema",
                directory_table()
            ),
            &[],
        )
        .await?;
    rows.iter().map(record_from_row).collect()
}

/// Records that `schema`'s ledger reached `version`, so a later fan-out skips it without
/// opening its schema. Never lowers the recorded version.
pub(crate) async fn record_version(pool: &Pool, schema: &Schema, version: u32) -> PgResult<()> {
    let client = pool.get().await?;
    let version = i32::try_from(version).unwrap_or(i32::MAX);
    client
        .query_typed(
            &format!(
                "UPDATE {} SET migrated_version = $2 WHERE schema = $1 \
                 AND (migrated_version IS NULL OR migrated_version < $2)",
                directory_table()
            ),
            &[(&schema.as_str(), Type::TEXT), (&version, Type::INT4)],
        )
        .await?;
    Ok(())
}

/// Why a tenant could not be created or dropped, before mapping into core's error.
#[derive(Debug)]
pub(crate) enum AdminOutcome {
    Done,
    Exists,
    Missing,
}

/// Creates the tenant's role and schema and runs every migration, all in one transaction: a
/// crash or error leaves no half-created tenant behind.
#[instrument(skip_all, fields(tenant = %schema))]
pub(crate) async fn create(
    pool: &Pool,
    schema: &Schema,
    role: &RoleName,
    vector: &Arc<VectorSql>,
) -> PgResult<AdminOutcome> {
    let mut transaction = TenantTransaction::begin_admin(pool, schema).await?;
    match create_in(&transaction, schema, role, vector).await {
        Ok(AdminOutcome::Done) => {
            transaction.finish("COMMIT").await?;
            info!(%role, "tenant created");
            Ok(AdminOutcome::Done)
        }
        Ok(other) => {
            transaction.finish("ROLLBACK").await?;
            Ok(other)
        }
        Err(error) => {
            let _ = transaction.finish("ROLLBACK").await;
            Err(error)
        }
    }
}

async fn create_in(
    transaction: &TenantTransaction,
    schema: &Schema,
    role: &RoleName,
    vector: &Arc<VectorSql>,
) -> PgResult<AdminOutcome> {
    lock_tenant(transaction, schema).await?;
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let role_param = params.push(role.as_str().to_string(), Type::TEXT);
    let latest = params.push(LATEST_MIGRATION as i32, Type::INT4);
    // Every migration runs below in this same transaction, so the version recorded is true
    // once it commits.
    let inserted = transaction
        .typed(
            &format!(
                "INSERT INTO {} (name, schema, role, migrated_version) \
                 VALUES ({name}, {name}, {role_param}, {latest}) \
                 ON CONFLICT DO NOTHING RETURNING name",
                directory_table()
            ),
            &params,
        )
        .await?;
    if inserted.is_empty() {
        return Ok(AdminOutcome::Exists);
    }
    // A new tenant has no jobs: its signal row exists, not due.
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    transaction
        .typed(
            &format!(
                "INSERT INTO {} (schema) VALUES ({name}) ON CONFLICT DO NOTHING",
                signals_table()
            ),
            &params,
        )
        .await?;
    if role_exists(transaction, role).await? {
        // Left behind by a tenant of this database whose directory row is gone (or by a
        // dropped database whose OID this one reuses): say how to clear it.
        return Err(PgError::Config(format!(
            "role {role} already exists but no tenant of this database uses it; \
             `astrocyte tenant roles` lists such roles and `astrocyte tenant prune-roles` removes them"
        )));
    }
    let role_sql = role.quoted();
    // NOLOGIN: the role is only ever entered through SET ROLE by the pool's user, which is
    // granted membership so this also works for a non-superuser owner role.
    let mut ddl = format!("CREATE ROLE {role_sql} NOLOGIN; GRANT {role_sql} TO CURRENT_USER; ");
    if *schema == Schema::public() {
        // `public` as a tenant (single-tenant deployments): its tables live in public, owned
        // by its role like any other tenant's.
        ddl.push_str(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {role_sql}; "
        ));
    } else {
        ddl.push_str(&format!(
            "CREATE SCHEMA {} AUTHORIZATION {role_sql}; ",
            quoted_schema(schema)
        ));
    }
    if vector.schema != *schema && vector.schema != Schema::public() {
        ddl.push_str(&format!(
            "GRANT USAGE ON SCHEMA {} TO {role_sql}; ",
            quoted_schema(&vector.schema)
        ));
    }
    transaction.batch(&ddl).await?;
    let binding = TenantBinding::new(schema.clone(), role.clone(), vector.clone());
    // Everything the migrations create is owned by the tenant role.
    transaction.become_tenant(&binding).await?;
    for migration in MIGRATIONS {
        apply_in(transaction, &binding, migration).await?;
    }
    Ok(AdminOutcome::Done)
}

/// Drops the tenant's schema, everything its role owns, the role, and its directory row, in one
/// transaction.
#[instrument(skip_all, fields(tenant = %schema))]
pub(crate) async fn drop(pool: &Pool, schema: &Schema) -> PgResult<AdminOutcome> {
    let mut transaction = TenantTransaction::begin_admin(pool, schema).await?;
    match drop_in(&transaction, schema).await {
        Ok(AdminOutcome::Done) => {
            transaction.finish("COMMIT").await?;
            info!("tenant dropped");
            Ok(AdminOutcome::Done)
        }
        Ok(other) => {
            transaction.finish("ROLLBACK").await?;
            Ok(other)
        }
        Err(error) => {
            let _ = transaction.finish("ROLLBACK").await;
            Err(error)
        }
    }
}

async fn drop_in(transaction: &TenantTransaction, schema: &Schema) -> PgResult<AdminOutcome> {
    lock_tenant(transaction, schema).await?;
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let deleted = transaction
        .typed(
            &format!(
                "DELETE FROM {} WHERE schema = {name} RETURNING role",
                directory_table()
            ),
            &params,
        )
        .await?;
    let Some(row) = deleted.first() else {
        return Ok(AdminOutcome::Missing);
    };
    let role = RoleName::parse(&row.try_get::<_, String>("role")?)?;
    let mut ddl = String::new();
    if *schema != Schema::public() {
        ddl.push_str(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; ",
            quoted_schema(schema)
        ));
    }
    if role_exists(transaction, &role).await? {
        // DROP OWNED removes whatever else the role owns here (its tables when the tenant is
        // `public`) and its grants, which DROP ROLE requires.
        let role_sql = role.quoted();
        ddl.push_str(&format!(
            "DROP OWNED BY {role_sql} CASCADE; DROP ROLE {role_sql}; "
        ));
    }
    transaction.batch(&ddl).await?;
    Ok(AdminOutcome::Done)
}

async fn role_exists(transaction: &TenantTransaction, role: &RoleName) -> PgResult<bool> {
    let mut params = Params::default();
    let role_name = params.push(role.as_str().to_string(), Type::TEXT);
    Ok(!transaction
        .typed(
            &format!("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {role_name}"),
            &params,
        )
        .await?
        .is_empty())
}

/// A role this database created for a tenant that its directory no longer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanRole {
    /// The role.
    pub role: RoleName,
    /// Objects the role still owns in this database (a schema left behind, say). Such a role
    /// is listed but never pruned: its objects may hold data someone wants back.
    pub owned_objects: i64,
}

/// What [`prune_orphan_roles`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePrune {
    /// The roles dropped (each owned nothing; its privileges here were revoked first).
    pub removed: Vec<RoleName>,
    /// Orphans kept because they still own objects in this database.
    pub kept: Vec<OrphanRole>,
}

/// The orphan candidates: roles named `<prefix><this database's tag>_…` in exactly the shape
/// this database gives tenant roles, not in its directory, and with no dependency (owned
/// object, privilege) in any other database. A role of another database carries that
/// database's tag, and a role in use elsewhere has dependencies there, so neither is listed.
const ORPHANS_SQL: &str = "\
    SELECT r.rolname::text AS role, \
      (SELECT count(*) FROM pg_catalog.pg_shdepend d \
        WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid \
          AND d.dbid = here.oid AND d.deptype = 'o') AS owned_here \
    FROM pg_catalog.pg_roles r, \
      (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) here \
    WHERE starts_with(r.rolname::text, $1) \
      AND NOT EXISTS (SELECT 1 FROM {directory} t WHERE t.role = r.rolname::text) \
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend d \
        WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid \
          AND d.dbid <> here.oid) \
    ORDER BY 1";

async fn orphans_in(
    transaction: &deadpool_postgres::Transaction<'_>,
    prefix: &str,
    database: &DatabaseTag,
) -> PgResult<Vec<OrphanRole>> {
    let start = format!("{prefix}{database}_");
    let rows = transaction
        .query_typed(
            &ORPHANS_SQL.replace("{directory}", &directory_table()),
            &[(&start, Type::TEXT)],
        )
        .await?;
    let mut orphans = Vec::new();
    for row in rows {
        let role: String = row.try_get("role")?;
        if !is_tagged_role(prefix, database, &role) {
            continue;
        }
        orphans.push(OrphanRole {
            role: RoleName::parse(&role)?,
            owned_objects: row.try_get("owned_here")?,
        });
    }
    Ok(orphans)
}

/// Lists the tenant roles this database created that no tenant of its directory uses.
pub(crate) async fn orphan_roles(
    pool: &Pool,
    prefix: &str,
    database: &DatabaseTag,
) -> PgResult<Vec<OrphanRole>> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let orphans = orphans_in(&transaction, prefix, database).await?;
    transaction.commit().await?;
    Ok(orphans)
}

/// Drops every orphan of [`orphan_roles`] that owns nothing, in one transaction holding the
/// directory in SHARE mode (so no tenant is created meanwhile): the list is taken again
/// inside it, each role's privileges here are revoked (`DROP OWNED`, which with nothing owned
/// only revokes) and the role is dropped.
#[instrument(skip_all)]
pub(crate) async fn prune_orphan_roles(
    pool: &Pool,
    prefix: &str,
    database: &DatabaseTag,
) -> PgResult<RolePrune> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", directory_table()))
        .await?;
    let mut prune = RolePrune::default();
    for orphan in orphans_in(&transaction, prefix, database).await? {
        if orphan.owned_objects > 0 {
            prune.kept.push(orphan);
            continue;
        }
        let role_sql = orphan.role.quoted();
        transaction
            .batch_execute(&format!("DROP OWNED BY {role_sql}; DROP ROLE {role_sql}"))
            .await?;
        info!(role = %orphan.role, "orphaned tenant role dropped");
        prune.removed.push(orphan.role);
    }
    transaction.commit().await?;
    Ok(prune)
}

async fn lock_tenant(transaction: &TenantTransaction, schema: &Schema) -> PgResult<()> {
    let mut params = Params::default();
    let class = params.push(LOCK_TENANT, Type::INT4);
    let key = params.push(schema.as_str().to_string(), Type::TEXT);
    transaction
        .typed(
            &format!("SELECT pg_advisory_xact_lock({class}, hashtext({key}))"),
            &params,
        )
        .await?;
    Ok(())
}
