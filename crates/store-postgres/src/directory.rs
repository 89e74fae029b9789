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
use crate::migrate::{apply_in, MIGRATIONS};
use crate::names::{
    quoted_schema, RoleName, VectorSql, DIRECTORY_TABLE, KEYS_TABLE, LOCK_BOOTSTRAP, LOCK_TENANT,
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
}

/// The directory's fully qualified name.
pub(crate) fn directory_table() -> String {
    fq_table(&Schema::public(), DIRECTORY_TABLE)
        .expect("the directory table name is a valid identifier")
}

/// The API-key table's fully qualified name.
pub(crate) fn keys_table() -> String {
    fq_table(&Schema::public(), KEYS_TABLE).expect("the key table name is a valid identifier")
}

/// Ensures pgvector, the directory and the key table exist, and returns the schema pgvector lives in.
/// Serialised by an advisory lock so concurrent first connections do not race on
/// `CREATE EXTENSION`.
pub(crate) async fn bootstrap(pool: &Pool) -> PgResult<Schema> {
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
             REVOKE ALL ON TABLE {keys} FROM PUBLIC"
        ))
        .await?;
    let rows = transaction
        .query_typed(
            "SELECT n.nspname::text AS schema FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
            &[],
        )
        .await?;
    transaction.commit().await?;
    let name: String = rows
        .first()
        .ok_or_else(|| PgError::Config("the vector extension is not installed".into()))?
        .try_get("schema")?;
    Schema::new(name).map_err(|error| PgError::Config(format!("pgvector schema: {error}")))
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
    })
}

/// The directory row of one tenant.
pub(crate) async fn lookup(pool: &Pool, schema: &Schema) -> PgResult<Option<TenantRecord>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            &format!(
                "SELECT name, schema, role, created_at, state FROM {} WHERE schema = $1",
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
                "SELECT name, schema, role, created_at, state FROM {} ORDER BY schema",
                directory_table()
            ),
            &[],
        )
        .await?;
    rows.iter().map(record_from_row).collect()
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
    let inserted = transaction
        .typed(
            &format!(
                "INSERT INTO {} (name, schema, role) VALUES ({name}, {name}, {role_param}) \
                 ON CONFLICT DO NOTHING RETURNING name",
                directory_table()
            ),
            &params,
        )
        .await?;
    if inserted.is_empty() {
        return Ok(AdminOutcome::Exists);
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
    let mut params = Params::default();
    let role_name = params.push(role.as_str().to_string(), Type::TEXT);
    let role_exists = !transaction
        .typed(
            &format!("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {role_name}"),
            &params,
        )
        .await?
        .is_empty();
    if role_exists {
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
