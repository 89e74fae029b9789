//! The tenant directory in `public` and tenant administration: bootstrap (extension and
//! directory), create (role, schema, migrations in one transaction) and drop (schema, role
//! and data in one transaction). Runs as the pool's own user; tenant data is never read here.

use std::sync::Arc;

use astrocyte_core::tenancy::fq_table;
use astrocyte_core::{Schema, Timestamp};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tracing::{info, instrument};

use crate::error::{has_code, PgError, PgResult};
use crate::migrate::{apply_in, LATEST_MIGRATION, MIGRATIONS};
use crate::names::{
    is_tagged_role, quoted_schema, DatabaseTag, RoleName, VectorSql, DIRECTORY_TABLE, KEYS_TABLE,
    LOCK_BOOTSTRAP, LOCK_TENANT,
};
use crate::servers::{Server, ServerKey};
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
    /// The server holding the tenant's schema; `None`: the home database.
    pub server: Option<ServerKey>,
    /// While a move is under way (before its flip): the server it goes to.
    pub move_to: Option<ServerKey>,
    /// After a move's flip, until the old copy is dropped: the server holding it.
    pub stale_on: Option<ServerKey>,
    /// The role owning the old copy on `stale_on`.
    pub stale_role: Option<RoleName>,
}

/// The directory columns [`record_from_row`] reads.
const RECORD_COLUMNS: &str =
    "name, schema, role, created_at, state, migrated_version, server, move_to, stale_on, stale_role";

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

/// The table holding one server's identity: a random id made once per database, so two
/// configured URLs reaching the same database (another host spelling) are refused.
pub(crate) fn identity_table() -> String {
    fq_table(&Schema::public(), "astrocyte_server")
        .expect("the server identity table name is a valid identifier")
}

/// What bootstrapping one server found.
pub(crate) struct Bootstrapped {
    /// The schema pgvector lives in.
    pub(crate) vector_schema: Schema,
    /// This database's tag (see [`DatabaseTag`]).
    pub(crate) database: DatabaseTag,
    /// This database's identity (see [`identity_table`]).
    pub(crate) identity: String,
}

/// Ensures pgvector and the job signal table exist on a server, and on the home server
/// (`home`) the directory and the key table too. Serialised by an advisory lock so concurrent
/// first connections do not race on `CREATE EXTENSION`.
pub(crate) async fn bootstrap(pool: &Pool, home: bool) -> PgResult<Bootstrapped> {
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
    let identity = identity_table();
    transaction
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {identity} (\
               one boolean PRIMARY KEY DEFAULT true CHECK (one), \
               id uuid NOT NULL DEFAULT gen_random_uuid()); \
             REVOKE ALL ON TABLE {identity} FROM PUBLIC; \
             INSERT INTO {identity} DEFAULT VALUES ON CONFLICT DO NOTHING"
        ))
        .await?;
    if !home {
        // Another server holds tenant schemas and their job signals only; the directory
        // names which tenants live here, so the signal rows have no key to reference.
        transaction
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS vector; \
                 CREATE TABLE IF NOT EXISTS {signals} (\
                   schema text COLLATE \"C\" PRIMARY KEY, \
                   due_at timestamptz, \
                   version bigint NOT NULL DEFAULT 1); \
                 CREATE INDEX IF NOT EXISTS astrocyte_job_signals_due ON {signals} (due_at) \
                   WHERE due_at IS NOT NULL; \
                 REVOKE ALL ON TABLE {signals} FROM PUBLIC"
            ))
            .await?;
        return bootstrap_finish(transaction, &identity).await;
    }
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
               ALTER TABLE {directory} ADD COLUMN migrated_version integer; END IF; \
               IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
               WHERE attrelid = '{directory}'::regclass AND attname = 'server' \
               AND NOT attisdropped) THEN \
               ALTER TABLE {directory} ADD COLUMN server text COLLATE \"C\", \
                 ADD COLUMN move_to text COLLATE \"C\", ADD COLUMN stale_on text COLLATE \"C\", \
                 ADD COLUMN stale_role text COLLATE \"C\"; END IF; END $$; \
             CREATE TABLE IF NOT EXISTS {signals} (\
               schema text COLLATE \"C\" PRIMARY KEY REFERENCES {directory} (schema) ON DELETE CASCADE, \
               due_at timestamptz, \
               version bigint NOT NULL DEFAULT 1); \
             CREATE INDEX IF NOT EXISTS astrocyte_job_signals_due ON {signals} (due_at) \
               WHERE due_at IS NOT NULL; \
             REVOKE ALL ON TABLE {signals} FROM PUBLIC; \
             INSERT INTO {signals} (schema, due_at) \
               SELECT t.schema, '-infinity' FROM {directory} t \
               WHERE t.server IS NULL AND NOT EXISTS (SELECT 1 FROM {signals} s WHERE s.schema = t.schema) \
             ON CONFLICT DO NOTHING"
        ))
        .await?;
    // The columns are added only when missing: ALTER TABLE would lock the directory against
    // every reader on each connect. The INSERT above: a tenant of this server without a signal
    // row was created by an older release, whose queue may hold jobs; it is visited once and
    // settled like any other.
    bootstrap_finish(transaction, &identity).await
}

/// Reads pgvector's schema, the database tag and identity, and commits the bootstrap.
async fn bootstrap_finish(
    transaction: deadpool_postgres::Transaction<'_>,
    identity: &str,
) -> PgResult<Bootstrapped> {
    let id = transaction
        .query_typed(&format!("SELECT id::text AS id FROM {identity}"), &[])
        .await?;
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
    let identity: String = id
        .first()
        .ok_or_else(|| PgError::Config("the server identity row is missing".into()))?
        .try_get("id")?;
    Ok(Bootstrapped {
        vector_schema: schema,
        database: DatabaseTag::from_oid(oid),
        identity,
    })
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
        server: row
            .try_get::<_, Option<String>>("server")?
            .map(ServerKey::stored),
        move_to: row
            .try_get::<_, Option<String>>("move_to")?
            .map(ServerKey::stored),
        stale_on: row
            .try_get::<_, Option<String>>("stale_on")?
            .map(ServerKey::stored),
        stale_role: row
            .try_get::<_, Option<String>>("stale_role")?
            .map(|role| RoleName::parse(&role))
            .transpose()?,
    })
}

/// The directory row of one tenant.
pub(crate) async fn lookup(pool: &Pool, schema: &Schema) -> PgResult<Option<TenantRecord>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {} WHERE schema = $1",
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
                "SELECT {RECORD_COLUMNS} FROM {} ORDER BY schema",
                directory_table()
            ),
            &[],
        )
        .await?;
    rows.iter().map(record_from_row).collect()
}

/// How many tenants each server holds, by the directory's `server` column (`None`: home).
pub(crate) async fn counts(pool: &Pool) -> PgResult<Vec<(Option<ServerKey>, i64)>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            &format!(
                "SELECT server, count(*) AS n FROM {} GROUP BY server",
                directory_table()
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<_, Option<String>>("server")?
                    .map(ServerKey::stored),
                row.try_get::<_, i64>("n")?,
            ))
        })
        .collect()
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

/// Records that a move to `to` is under way (`None`: that none is). Refused (`Conflict`)
/// while a move elsewhere is recorded.
pub(crate) async fn mark_move(
    pool: &Pool,
    schema: &Schema,
    to: Option<&ServerKey>,
) -> astrocyte_core::Result<()> {
    let client = pool.get().await.map_err(PgError::from)?;
    let table = directory_table();
    let updated = match to {
        Some(to) => client
            .query_typed(
                &format!(
                    "UPDATE {table} SET move_to = $2 WHERE schema = $1 \
                     AND (move_to IS NULL OR move_to = $2) RETURNING name"
                ),
                &[(&schema.as_str(), Type::TEXT), (&to.as_str(), Type::TEXT)],
            )
            .await
            .map_err(PgError::from)?,
        None => client
            .query_typed(
                &format!("UPDATE {table} SET move_to = NULL WHERE schema = $1 RETURNING name"),
                &[(&schema.as_str(), Type::TEXT)],
            )
            .await
            .map_err(PgError::from)?,
    };
    if updated.is_empty() && to.is_some() {
        return Err(astrocyte_core::Error::Conflict(format!(
            "tenant {schema} is gone or being moved elsewhere"
        )));
    }
    Ok(())
}

/// The flip of a move: the directory places the tenant on `target` under `role`, and notes
/// the old copy (`stale_on`, `stale_role`) still to drop. Only while the move to `target` is
/// recorded; returns whether the row was flipped.
pub(crate) async fn flip(
    pool: &Pool,
    schema: &Schema,
    target: &Server,
    role: &RoleName,
    stale_on: &ServerKey,
    stale_role: &RoleName,
) -> PgResult<bool> {
    let client = pool.get().await?;
    let placed = (!target.home).then(|| target.key.as_str());
    let latest = LATEST_MIGRATION as i32;
    let updated = client
        .query_typed(
            &format!(
                "UPDATE {} SET server = $2, role = $3, move_to = NULL, stale_on = $4, \
                 stale_role = $5, migrated_version = $6 \
                 WHERE schema = $1 AND move_to = $7 RETURNING name",
                directory_table()
            ),
            &[
                (&schema.as_str(), Type::TEXT),
                (&placed, Type::TEXT),
                (&role.as_str(), Type::TEXT),
                (&stale_on.as_str(), Type::TEXT),
                (&stale_role.as_str(), Type::TEXT),
                (&latest, Type::INT4),
                (&target.key.as_str(), Type::TEXT),
            ],
        )
        .await?;
    Ok(!updated.is_empty())
}

/// Forgets the old copy of a moved tenant once it is dropped.
pub(crate) async fn clear_stale(pool: &Pool, schema: &Schema) -> PgResult<()> {
    let client = pool.get().await?;
    client
        .query_typed(
            &format!(
                "UPDATE {} SET stale_on = NULL, stale_role = NULL WHERE schema = $1",
                directory_table()
            ),
            &[(&schema.as_str(), Type::TEXT)],
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
    /// A drop refused: a move of the tenant to this server is unfinished.
    Moving(ServerKey),
}

/// Creates the tenant on `server`. On the home server the directory row, role, schema and
/// every migration commit in one transaction: a crash or error leaves no half-created tenant
/// behind. On another server the directory transaction (row and tenant lock) stays open
/// while the server's own transaction creates role, schema, migrations and signal row, and
/// commits last: a crash between the two commits leaves an orphan schema on that server with
/// no directory row, which the next create of the name replaces.
#[instrument(skip_all, fields(tenant = %schema, server = %server.key))]
pub(crate) async fn create(
    home: &Pool,
    server: &Server,
    schema: &Schema,
    role: &RoleName,
) -> PgResult<AdminOutcome> {
    let mut directory = TenantTransaction::begin_admin(home, schema).await?;
    let outcome = match create_in(&directory, server, schema, role).await {
        Ok(AdminOutcome::Done) if !server.home => {
            match install_on(server, schema, role, false).await {
                Ok(()) => Ok(AdminOutcome::Done),
                Err(error) => Err(error),
            }
        }
        other => other,
    };
    match outcome {
        Ok(AdminOutcome::Done) => {
            directory.finish("COMMIT").await?;
            info!(%role, "tenant created");
            Ok(AdminOutcome::Done)
        }
        Ok(other) => {
            directory.finish("ROLLBACK").await?;
            Ok(other)
        }
        Err(error) => {
            let _ = directory.finish("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Inserts the directory row (and, on the home server, everything else) in the directory's
/// transaction.
async fn create_in(
    transaction: &TenantTransaction,
    server: &Server,
    schema: &Schema,
    role: &RoleName,
) -> PgResult<AdminOutcome> {
    lock_tenant(transaction, schema).await?;
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let role_param = params.push(role.as_str().to_string(), Type::TEXT);
    let latest = params.push(LATEST_MIGRATION as i32, Type::INT4);
    let placed = params.push(
        (!server.home).then(|| server.key.as_str().to_string()),
        Type::TEXT,
    );
    // Every migration runs in the same transaction as the row (or in the server's, which
    // commits first), so the version recorded is true once it commits.
    let inserted = transaction
        .typed(
            &format!(
                "INSERT INTO {} (name, schema, role, migrated_version, server) \
                 VALUES ({name}, {name}, {role_param}, {latest}, {placed}) \
                 ON CONFLICT DO NOTHING RETURNING name",
                directory_table()
            ),
            &params,
        )
        .await?;
    if inserted.is_empty() {
        return Ok(AdminOutcome::Exists);
    }
    if !server.home {
        return Ok(AdminOutcome::Done);
    }
    insert_signal(transaction, schema, false).await?;
    if role_exists(transaction, role).await? {
        // Left behind by a tenant of this database whose directory row is gone (or by a
        // dropped database whose OID this one reuses): say how to clear it.
        return Err(PgError::Config(format!(
            "role {role} already exists but no tenant of this database uses it; \
             `astrocyte tenant roles` lists such roles and `astrocyte tenant prune-roles` removes them"
        )));
    }
    install_in(transaction, schema, role, &server.vector).await?;
    Ok(AdminOutcome::Done)
}

/// Creates the tenant's role, schema and (empty) tables on a server that does not hold the
/// tenant (a new tenant placed away from home, or a move's target), in one transaction of
/// that server. Whatever a crashed create or move left under this name there (schema, role's
/// objects) is removed first: the directory places no live copy there, and the caller holds
/// the directory row's lock (a create) or the tenant's move lock (a move). A move's copy is
/// created `fenced` (see [`crate::relocate::fence_tables`]); the move lifts it at the flip.
pub(crate) async fn install_on(
    server: &Server,
    schema: &Schema,
    role: &RoleName,
    fenced: bool,
) -> PgResult<()> {
    let mut transaction = TenantTransaction::begin_admin(&server.pool, schema).await?;
    let outcome = async {
        lock_tenant(&transaction, schema).await?;
        let mut ddl = format!("DROP SCHEMA IF EXISTS {} CASCADE; ", quoted_schema(schema));
        if role_exists(&transaction, role).await? {
            // The role name carries this server's database tag, so only this database's
            // tenants ever had it: it is a leftover of this very tenant.
            ddl.push_str(&format!("DROP OWNED BY {} CASCADE; ", role.quoted()));
        }
        transaction.batch(&ddl).await?;
        install_in(&transaction, schema, role, &server.vector).await?;
        if fenced {
            crate::relocate::fence_tables(&transaction, schema).await?;
        }
        // The signal row is the store's: written as the pool's user again.
        transaction.batch("SET LOCAL ROLE NONE").await?;
        insert_signal(&transaction, schema, false).await
    }
    .await;
    match outcome {
        Ok(()) => transaction.finish("COMMIT").await,
        Err(error) => {
            let _ = transaction.finish("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Inserts the tenant's job signal row on the transaction's server: not due for a new tenant,
/// due at once (`due`) for a tenant arriving with its queue.
pub(crate) async fn insert_signal(
    transaction: &TenantTransaction,
    schema: &Schema,
    due: bool,
) -> PgResult<()> {
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let due_at = if due { "'-infinity'" } else { "NULL" };
    transaction
        .typed(
            &format!(
                "INSERT INTO {} AS s (schema, due_at) VALUES ({name}, {due_at}) \
                 ON CONFLICT (schema) DO UPDATE SET due_at = LEAST(s.due_at, EXCLUDED.due_at), \
                   version = s.version + 1",
                signals_table()
            ),
            &params,
        )
        .await?;
    Ok(())
}

/// Creates the role (or grants the pool's user an existing one) and the schema, then runs
/// every migration as the role, inside `transaction` (the pool's user).
async fn install_in(
    transaction: &TenantTransaction,
    schema: &Schema,
    role: &RoleName,
    vector: &Arc<VectorSql>,
) -> PgResult<()> {
    let role_sql = role.quoted();
    // NOLOGIN: the role is only ever entered through SET ROLE by the pool's user, which is
    // granted membership so this also works for a non-superuser owner role.
    let mut ddl = if role_exists(transaction, role).await? {
        format!("GRANT {role_sql} TO CURRENT_USER; ")
    } else {
        format!("CREATE ROLE {role_sql} NOLOGIN; GRANT {role_sql} TO CURRENT_USER; ")
    };
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
    Ok(())
}

/// A copy of a tenant on some server that is no longer (or never was) in the directory and
/// still has to be dropped there.
#[derive(Debug, Clone)]
pub(crate) struct Leftover {
    /// The server holding it; `None`: the home server.
    pub(crate) server: Option<ServerKey>,
    /// The role owning it.
    pub(crate) role: RoleName,
}

/// Drops the tenant: its directory row, and in the same transaction its schema, role and data
/// when they live on the home server. A tenant on another server is dropped from the
/// directory first (so it is gone for every reader at once); its copy there, and any old copy
/// of an unfinished move, are returned for the caller to drop with [`drop_copy`].
#[instrument(skip_all, fields(tenant = %schema))]
pub(crate) async fn drop(pool: &Pool, schema: &Schema) -> PgResult<(AdminOutcome, Vec<Leftover>)> {
    let mut transaction = TenantTransaction::begin_admin(pool, schema).await?;
    match drop_in(&transaction, schema).await {
        Ok((AdminOutcome::Done, leftovers)) => {
            transaction.finish("COMMIT").await?;
            info!("tenant dropped");
            Ok((AdminOutcome::Done, leftovers))
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

async fn drop_in(
    transaction: &TenantTransaction,
    schema: &Schema,
) -> PgResult<(AdminOutcome, Vec<Leftover>)> {
    lock_tenant(transaction, schema).await?;
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let deleted = transaction
        .typed(
            &format!(
                "DELETE FROM {} WHERE schema = {name} RETURNING role, server, move_to, stale_on, stale_role",
                directory_table()
            ),
            &params,
        )
        .await?;
    let Some(row) = deleted.first() else {
        return Ok((AdminOutcome::Missing, Vec::new()));
    };
    if let Some(to) = row.try_get::<_, Option<String>>("move_to")? {
        // The move's partial copy on its target is named nowhere else: the move is finished
        // or abandoned first (the caller rolls this delete back).
        return Ok((AdminOutcome::Moving(ServerKey::stored(to)), Vec::new()));
    }
    let role = RoleName::parse(&row.try_get::<_, String>("role")?)?;
    let server = row
        .try_get::<_, Option<String>>("server")?
        .map(ServerKey::stored);
    let mut leftovers = Vec::new();
    if let (Some(stale_on), Some(stale_role)) = (
        row.try_get::<_, Option<String>>("stale_on")?,
        row.try_get::<_, Option<String>>("stale_role")?,
    ) {
        leftovers.push(Leftover {
            server: Some(ServerKey::stored(stale_on)),
            role: RoleName::parse(&stale_role)?,
        });
    }
    if server.is_some() {
        leftovers.push(Leftover { server, role });
        return Ok((AdminOutcome::Done, leftovers));
    }
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
    Ok((AdminOutcome::Done, leftovers))
}

/// Drops one copy of a tenant on a server: its schema, what its role owns in this database,
/// its signal row, and the role unless it still owns something in another database of the
/// cluster. Idempotent, so a crashed clean-up is simply run again.
///
/// Nothing is dropped when the directory (on `home`) places the tenant on this server: a
/// tenant of the same name created there since (an auto-create right after a drop) is not
/// the copy the caller meant. Checked under the directory's tenant lock, which a create
/// holds until its row and its install on the server are both committed; taken before the
/// server's, in the order a create takes them.
pub(crate) async fn drop_copy(
    home: &Pool,
    server: &Server,
    schema: &Schema,
    role: &RoleName,
) -> PgResult<()> {
    if server.home {
        // The directory is in this very database: checked in the drop's own transaction.
        return drop_copy_in(&server.pool, server, schema, role).await;
    }
    let mut directory = TenantTransaction::begin_admin(home, schema).await?;
    let outcome = async {
        lock_tenant(&directory, schema).await?;
        if placed_on(&directory, schema, server).await? {
            return Ok(());
        }
        drop_copy_in(&server.pool, server, schema, role).await
    }
    .await;
    let _ = directory.finish("ROLLBACK").await;
    outcome
}

/// Whether the directory row (read in `transaction` on the home database) places the tenant
/// on `server`.
async fn placed_on(
    transaction: &TenantTransaction,
    schema: &Schema,
    server: &Server,
) -> PgResult<bool> {
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT server FROM {} WHERE schema = {name}",
                directory_table()
            ),
            &params,
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let placed: Option<String> = row.try_get("server")?;
    let here = placed.map_or(server.home, |key| key == server.key.as_str());
    if here {
        info!(server = %server.key, "not dropped: the directory places the tenant here");
    }
    Ok(here)
}

async fn drop_copy_in(
    pool: &Pool,
    server: &Server,
    schema: &Schema,
    role: &RoleName,
) -> PgResult<()> {
    let mut transaction = TenantTransaction::begin_admin(pool, schema).await?;
    let outcome = async {
        lock_tenant(&transaction, schema).await?;
        if server.home && placed_on(&transaction, schema, server).await? {
            return Ok(());
        }
        let mut params = Params::default();
        let name = params.push(schema.as_str().to_string(), Type::TEXT);
        transaction
            .typed(
                &format!("DELETE FROM {} WHERE schema = {name}", signals_table()),
                &params,
            )
            .await?;
        transaction
            .batch(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quoted_schema(schema)
            ))
            .await?;
        if role_exists(&transaction, role).await? {
            let role_sql = role.quoted();
            transaction
                .batch(&format!(
                    "DROP OWNED BY {role_sql} CASCADE; SAVEPOINT role_drop"
                ))
                .await?;
            match transaction.batch(&format!("DROP ROLE {role_sql}")).await {
                Ok(()) => {}
                // Still owning objects in another database of this cluster (another server
                // of the deployment on the same cluster): that database's drop removes it.
                Err(error) if has_code(&error, &SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
                    transaction.batch("ROLLBACK TO SAVEPOINT role_drop").await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => transaction.finish("COMMIT").await,
        Err(error) => {
            let _ = transaction.finish("ROLLBACK").await;
            Err(error)
        }
    }
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
