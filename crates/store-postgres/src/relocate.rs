//! Moving a tenant between servers ([`PostgresStore::move_tenant`]): the target gets the
//! tenant's role, schema and tables from our own migrations, every table is copied while
//! writes go on, the source is fenced against writes, the rows changed meanwhile are brought
//! over by key and hash, every table is checked (row count and checksum), the directory row is
//! flipped to the target, and the old copy is dropped. Progress lives in the directory row, so
//! a crash at any step leaves the tenant readable on its old server and a re-run finishes (or,
//! aimed back at the tenant's own server, abandons) the move. No replication, no consensus:
//! one directory row decides where a tenant is.
//!
//! The fence is a statement trigger on every table of the tenant's schema on the source that
//! raises [`FENCED_SQLSTATE`]: committed, so it outlives the moving process; taken under a
//! table lock, so every write that committed before it is in the copy; and answered as "storage
//! unavailable, retry" (HTTP 503), so a write during the move is refused, never lost. Reads
//! carry on from the source throughout.

use std::time::{Duration, Instant};

use astrocyte_core::tenancy::{fq_table, validate_identifier, IdentifierLabel};
use astrocyte_core::{Error, Result, Schema};
use futures::{SinkExt, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tracing::{info, instrument, warn};

use crate::directory;
use crate::error::{has_code, PgError, PgResult};
use crate::migrate::{migrate_tenant, MigrationStatus};
use crate::names::{
    quoted_schema, RoleName, CHANGES_TABLE, HNSW_MAX_DIMENSION, LEDGER_TABLE, LOCK_MOVE,
    MEMORIES_TABLE,
};
use crate::servers::{Server, ServerKey};
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::Params;
use crate::store::PostgresStore;

/// The SQLSTATE the fence raises; mapped to "storage unavailable" (503 with Retry-After).
pub(crate) const FENCED_SQLSTATE: &str = "ASMOV";

/// The fence's trigger and function name in the tenant's schema.
const FENCE: &str = "astrocyte_moving";

/// How long the fence waits for a table lock before giving up and trying again. Below
/// PostgreSQL's default `deadlock_timeout` (1 s), so when the fence and a writer wait for each
/// other the fence gives way, instead of the deadlock detector cancelling the writer.
const FENCE_LOCK_TIMEOUT_MS: u32 = 500;

/// Attempts at taking the fence's locks before the move fails (and is undone).
const FENCE_ATTEMPTS: u32 = 40;

/// Settings both ends of the copy share, so values are written and read back in one text form
/// (COPY's text format and the checksums depend on them). The copy of a large tenant is one
/// long statement per table, so the store's statement timeout is lifted for it.
const TEXT_FORM: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; \
     SET LOCAL bytea_output = 'hex'; SET LOCAL statement_timeout = 0;";

/// What a statement's error says about where the tenant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelocationSign {
    /// Nothing: an ordinary error.
    None,
    /// The fence, or the tenant's schema (or, entering the tenant, its role) missing here:
    /// the copy this handle knows is not where the tenant lives now, so the caller is told to
    /// retry, and the retry looks the tenant up again.
    Moved,
    /// A table missing: usually a query's own mistake (reported as such), but possibly a copy
    /// dropped mid-transaction, so the handle is looked up again next time all the same.
    Maybe,
}

/// Reads a statement's error in `schema`'s transaction for signs of a move; `entering` when
/// the statement is the `SET LOCAL ROLE` that starts the transaction.
pub(crate) fn relocation_sign(
    error: &tokio_postgres::Error,
    schema: &Schema,
    entering: bool,
) -> RelocationSign {
    let Some(db) = error.as_db_error() else {
        return RelocationSign::None;
    };
    let code = db.code();
    // Only the tenant's own schema missing says it moved (PostgreSQL reports a qualified
    // name whose schema is gone as a missing relation); a query naming anything else, or
    // an unqualified name, is the query's own mistake. Told apart by SQLSTATE and the name in
    // the message, which is never translated (the words and quotes around it may be).
    let own_schema_missing = (*code == SqlState::INVALID_SCHEMA_NAME
        && names(db.message(), schema.as_str(), false))
        || (*code == SqlState::UNDEFINED_TABLE && names(db.message(), schema.as_str(), true));
    if code.code() == FENCED_SQLSTATE
        || own_schema_missing
        // `SET ROLE` of a role that no longer exists.
        || (entering
            && (*code == SqlState::INVALID_PARAMETER_VALUE || *code == SqlState::UNDEFINED_OBJECT))
    {
        RelocationSign::Moved
    } else if *code == SqlState::INVALID_SCHEMA_NAME
        || *code == SqlState::UNDEFINED_TABLE
        || *code == SqlState::UNDEFINED_OBJECT
    {
        RelocationSign::Maybe
    } else {
        RelocationSign::None
    }
}

/// Whether `message` names `schema` as a whole identifier (followed by a `.` when
/// `qualifying`, as in a relation's qualified name).
fn names(message: &str, schema: &str, qualifying: bool) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    message.match_indices(schema).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + schema.len()..].chars().next();
        !before.is_some_and(is_ident)
            && if qualifying {
                after == Some('.')
            } else {
                !after.is_some_and(is_ident) && after != Some('.')
            }
    })
}

/// The steps of a move, in order; each one's effect is committed before the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MoveStep {
    /// The directory row records the target (`move_to`).
    Marked,
    /// The target holds the tenant's role, schema and empty tables.
    Prepared,
    /// The target holds a copy of one snapshot of the source, made while writes went on;
    /// the source still takes writes. A re-run keeps this copy and carries on from it.
    Snapshotted,
    /// The target holds a copy made while writes went on, and the source refuses writes.
    Fenced,
    /// The target equals the source, table by table, checked.
    Copied,
    /// The directory places the tenant on the target.
    Flipped,
    /// The old copy is dropped; the move is over.
    Cleaned,
}

/// How to run a move.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoveOptions {
    /// Stop once this step is committed, leaving the directory as a crash there would (for
    /// rehearsing a move step by step, and for the tests of resuming one).
    pub stop_after: Option<MoveStep>,
}

/// One table's check after the copy: the same on both servers, or the move fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    /// The table's name in the tenant's schema.
    pub table: String,
    /// Its rows.
    pub rows: i64,
    /// Sum of the first 60 bits of each row's md5 (order-free, so no sort is needed).
    pub checksum: String,
}

/// What a move did.
#[derive(Debug, Clone)]
pub struct MoveReport {
    /// The tenant.
    pub schema: Schema,
    /// The server it was on when this run began.
    pub from: ServerKey,
    /// The server it is on when this run ended.
    pub to: ServerKey,
    /// Whether an earlier, unfinished move of this tenant was found and carried on.
    pub resumed: bool,
    /// The last step committed (`Cleaned`: nothing is left to do).
    pub reached: MoveStep,
    /// The checks of every copied table (empty when this run copied nothing).
    pub tables: Vec<TableCheck>,
    /// How long this run refused the tenant's writes (fence to flip).
    pub fenced_for: Option<Duration>,
    /// Rows deleted or copied under the fence to bring the online copy level with the
    /// source (what was written, changed or removed while it was being made).
    pub synced_rows: u64,
    /// Whether this run abandoned an unfinished move instead (the target named the tenant's
    /// own server): the target's copy is dropped and the source writable again.
    pub abandoned: bool,
}

impl PostgresStore {
    /// Moves `schema` to the server `to` (the home server or one of
    /// [`PostgresOptions::server_urls`](crate::PostgresOptions)). Writes are refused with
    /// "storage unavailable" from the fence until the flip; reads are served throughout. A
    /// failure undoes the move (target copy dropped, source writable); a crash leaves it for a
    /// re-run, which resumes it, or, given the tenant's current server, abandons it.
    #[instrument(skip_all, fields(tenant = %schema, to = %to))]
    pub async fn move_tenant(
        &self,
        schema: &Schema,
        to: &ServerKey,
        options: MoveOptions,
    ) -> Result<MoveReport> {
        if *schema == Schema::public() {
            return Err(Error::invalid(
                "the public tenant shares its schema with the directory and cannot move",
            ));
        }
        let inner = &self.inner;
        let home = inner.home().clone();
        let target = inner.configured(to)?;
        // One move of a tenant at a time: a second one would drop the copy the first is
        // filling. A session lock on its own connection, closed at the end (also by a crash).
        let guard = home.pool.get().await.map_err(PgError::from)?;
        let guard = deadpool_postgres::Object::take(guard);
        let locked: bool = guard
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_MOVE, &schema.as_str()],
            )
            .await
            .map_err(PgError::from)?
            .get(0);
        if !locked {
            return Err(Error::Conflict(format!(
                "another move of tenant {schema} is running"
            )));
        }
        let outcome = self.move_locked(schema, &home, &target, options).await;
        // Released at once (closing the connection releases it too, but not before the
        // server notices, which a re-run right away could beat).
        if let Err(error) = guard
            .query_one(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_MOVE, &schema.as_str()],
            )
            .await
        {
            warn!(%error, "releasing the move lock failed; closing its connection releases it");
        }
        drop(guard);
        outcome
    }

    async fn move_locked(
        &self,
        schema: &Schema,
        home: &std::sync::Arc<Server>,
        target: &std::sync::Arc<Server>,
        options: MoveOptions,
    ) -> Result<MoveReport> {
        let inner = &self.inner;
        let mut record = directory::lookup(&home.pool, schema)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {schema} does not exist")))?;
        let source = inner.server(record.server.as_ref())?;
        let mut report = MoveReport {
            schema: schema.clone(),
            from: source.key.clone(),
            to: source.key.clone(),
            resumed: record.move_to.is_some() || record.stale_on.is_some(),
            reached: MoveStep::Cleaned,
            tables: Vec::new(),
            fenced_for: None,
            synced_rows: 0,
            abandoned: false,
        };
        if let (Some(stale_on), Some(stale_role)) = (&record.stale_on, &record.stale_role) {
            // An earlier move flipped but did not drop its old copy: finish that first.
            self.clean_up(
                &source,
                &source_binding_of(&record, &source),
                stale_on,
                stale_role,
            )
            .await?;
        }
        if source.key == target.key {
            if let Some(abandoned) = &record.move_to {
                let abandoned = inner.server(Some(abandoned))?;
                let role =
                    RoleName::derive(&inner.options.role_prefix, &abandoned.database, schema)?;
                let binding =
                    TenantBinding::new(schema.clone(), record.role.clone(), source.vector.clone());
                self.undo(schema, &source, &binding, &abandoned, &role)
                    .await?;
                report.abandoned = true;
            }
            return Ok(report);
        }
        if let Some(other) = record.move_to.as_ref().filter(|key| **key != target.key) {
            return Err(Error::Conflict(format!(
                "tenant {schema} is being moved to {other}; re-run the move to {other} to finish \
                 it, or to {} to abandon it",
                source.key
            )));
        }
        let source_binding =
            TenantBinding::new(schema.clone(), record.role.clone(), source.vector.clone());
        // Both copies must have the same tables: the target's come from the latest migrations.
        if let MigrationStatus::Failed { message, .. } =
            migrate_tenant(&home.pool, &source.pool, &source_binding).await
        {
            return Err(Error::Storage(format!(
                "tenant {schema} could not be migrated before its move: {message}"
            )));
        }
        directory::mark_move(&home.pool, schema, Some(&target.key)).await?;
        record.move_to = Some(target.key.clone());
        report.reached = MoveStep::Marked;
        if options.stop_after == Some(MoveStep::Marked) {
            return Ok(report);
        }
        let target_role = RoleName::derive(&inner.options.role_prefix, &target.database, schema)?;
        let target_binding =
            TenantBinding::new(schema.clone(), target_role.clone(), target.vector.clone());
        let copied = self
            .copy_across(
                &source,
                &source_binding,
                target,
                &target_binding,
                options,
                &mut report,
            )
            .await;
        match copied {
            Ok(true) => {}
            Ok(false) => return Ok(report),
            Err(error) => {
                warn!(%error, "move failed; undoing it");
                if let Err(undo) = self
                    .undo(schema, &source, &source_binding, target, &target_role)
                    .await
                {
                    return Err(Error::Storage(format!(
                        "move of {schema} failed ({error}) and could not be undone ({undo}); \
                         the tenant is readable but refuses writes until the move is re-run"
                    )));
                }
                return Err(error);
            }
        }
        let fenced_at = Instant::now();
        if !directory::flip(
            &home.pool,
            schema,
            target,
            &target_role,
            &source.key,
            &record.role,
        )
        .await?
        {
            return Err(Error::Conflict(format!(
                "tenant {schema}'s directory row changed during its move (dropped?); nothing was \
                 flipped"
            )));
        }
        inner.handles.lock().remove(schema);
        // The copy is the tenant's now: writable (a crash before this leaves it to the
        // re-run's clean-up, which lifts it first).
        unfence(target, &target_binding).await?;
        report.fenced_for = report.fenced_for.map(|fence| fence + fenced_at.elapsed());
        report.to = target.key.clone();
        report.reached = MoveStep::Flipped;
        info!(from = %source.key, "tenant flipped to its new server");
        if options.stop_after == Some(MoveStep::Flipped) {
            return Ok(report);
        }
        self.clean_up(target, &target_binding, &source.key, &record.role)
            .await?;
        report.reached = MoveStep::Cleaned;
        Ok(report)
    }

    /// Prepares the target, fences the source and copies and checks every table. Returns
    /// false when `stop_after` stopped it early.
    async fn copy_across(
        &self,
        source: &Server,
        source_binding: &TenantBinding,
        target: &Server,
        target_binding: &TenantBinding,
        options: MoveOptions,
        report: &mut MoveReport,
    ) -> Result<bool> {
        let schema = &source_binding.schema;
        // What an earlier run of this move left on the target, if anything.
        let found = copy_progress(target, schema).await?;
        if found.is_none() {
            directory::install_on(target, schema, &target_binding.role, true).await?;
        }
        report.reached = MoveStep::Prepared;
        if options.stop_after == Some(MoveStep::Prepared) {
            return Ok(false);
        }
        // Copied while writes continue; only the rows written meanwhile are copied under
        // the fence.
        if found != Some(MoveStep::Snapshotted) {
            bulk_copy(source, source_binding, target, target_binding).await?;
        }
        report.reached = MoveStep::Snapshotted;
        if options.stop_after == Some(MoveStep::Snapshotted) {
            return Ok(false);
        }
        let tables = fence(source, source_binding).await?;
        let fenced_at = Instant::now();
        report.reached = MoveStep::Fenced;
        if options.stop_after == Some(MoveStep::Fenced) {
            return Ok(false);
        }
        let (checks, synced) =
            sync_and_check(source, source_binding, target, target_binding, &tables).await?;
        report.tables = checks;
        report.synced_rows = synced;
        report.fenced_for = Some(fenced_at.elapsed());
        report.reached = MoveStep::Copied;
        info!(
            tables = report.tables.len(),
            synced, "tenant copied and checked"
        );
        Ok(options.stop_after != Some(MoveStep::Copied))
    }

    /// After the flip: lifts the fence the copy was created with, makes the tenant's job
    /// signal due on its server (its queue arrived with it), drops the old copy and clears the
    /// directory's note of it. Idempotent.
    async fn clean_up(
        &self,
        current: &Server,
        binding: &TenantBinding,
        stale_on: &ServerKey,
        stale_role: &RoleName,
    ) -> Result<()> {
        let schema = &binding.schema;
        unfence(current, binding).await?;
        let mut transaction = TenantTransaction::begin_admin(&current.pool, schema).await?;
        match directory::insert_signal(&transaction, schema, true).await {
            Ok(()) => transaction.finish("COMMIT").await?,
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                return Err(error.into());
            }
        }
        let stale = self.inner.server(Some(stale_on))?;
        directory::drop_copy(&self.inner.home().pool, &stale, schema, stale_role).await?;
        directory::clear_stale(&self.inner.home().pool, schema).await?;
        info!(stale_on = %stale.key, "old copy dropped");
        Ok(())
    }

    /// Undoes a move before its flip: drops the target's copy, lifts the fence and clears the
    /// directory's `move_to`.
    async fn undo(
        &self,
        schema: &Schema,
        source: &Server,
        source_binding: &TenantBinding,
        target: &Server,
        target_role: &RoleName,
    ) -> Result<()> {
        directory::drop_copy(&self.inner.home().pool, target, schema, target_role).await?;
        unfence(source, source_binding).await?;
        directory::mark_move(&self.inner.home().pool, schema, None).await?;
        info!(target = %target.key, "move undone");
        Ok(())
    }
}

/// The comment a move's copy carries on its schema until the flip: how far it got.
const SNAPSHOT_MARK: &str = "astrocyte move: snapshot copied";

/// How far an earlier run got with the copy on the target: `None` when there is no
/// (finished) copy there, `Prepared` for the empty tables, `Snapshotted` once the online copy
/// committed. Only a fenced copy (created by a move, never yet flipped to) counts.
async fn copy_progress(target: &Server, schema: &Schema) -> Result<Option<MoveStep>> {
    let client = target.pool.get().await.map_err(PgError::from)?;
    let function = qualified(schema, FENCE)?;
    let row = client
        .query_one(
            "SELECT to_regprocedure($1 || '()') IS NOT NULL AS fenced, \
               obj_description(to_regnamespace(quote_ident($2)), 'pg_namespace') AS mark",
            &[&function, &schema.as_str()],
        )
        .await
        .map_err(PgError::from)?;
    let fenced: bool = row.try_get("fenced").map_err(PgError::from)?;
    let mark: Option<String> = row.try_get("mark").map_err(PgError::from)?;
    Ok(match (fenced, mark.as_deref()) {
        (false, _) => None,
        (true, Some(SNAPSHOT_MARK)) => Some(MoveStep::Snapshotted),
        (true, _) => Some(MoveStep::Prepared),
    })
}

/// The binding of the tenant's copy on `server`, where its directory row places it.
fn source_binding_of(record: &directory::TenantRecord, server: &Server) -> TenantBinding {
    TenantBinding::new(
        record.schema.clone(),
        record.role.clone(),
        server.vector.clone(),
    )
}

/// The tenant's tables on a server (the ledger included), memories first: writers take it
/// first too, which keeps the fence's lock waits short.
async fn tenant_tables(transaction: &TenantTransaction, schema: &Schema) -> PgResult<Vec<String>> {
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT c.relname::text AS name FROM pg_catalog.pg_class c \
                 WHERE c.relnamespace = to_regnamespace(quote_ident({name})) \
                   AND c.relkind IN ('r', 'p') \
                 ORDER BY c.relname <> '{MEMORIES_TABLE}', c.relname"
            ),
            &params,
        )
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<_, String>("name")?))
        .collect()
}

fn qualified(schema: &Schema, table: &str) -> PgResult<String> {
    fq_table(schema, table).map_err(|error| PgError::Decode(error.to_string()))
}

/// Fences the source: under a lock on every table of the schema (so writes in flight finish
/// first), a statement trigger refusing every write is created on each, and committed.
/// Idempotent. Returns the tables.
async fn fence(source: &Server, binding: &TenantBinding) -> Result<Vec<String>> {
    let tables = under_table_locks(source, binding, FenceChange::Raise).await?;
    info!("source fenced");
    Ok(tables)
}

/// What [`under_table_locks`] does to the fence.
#[derive(Debug, Clone, Copy)]
enum FenceChange {
    Raise,
    Lift,
}

/// Raises or lifts the fence in a transaction of the tenant that first locks every table of
/// its schema, memories first as writers do. The lock waits are short and retried: when the
/// fence's DDL and a writer wait for each other, the DDL gives way instead of the deadlock
/// detector cancelling the writer. Returns the tables.
async fn under_table_locks(
    server: &Server,
    binding: &TenantBinding,
    change: FenceChange,
) -> Result<Vec<String>> {
    // Creating a trigger blocks writes; dropping one (PostgreSQL 15) locks reads out too.
    let mode = match change {
        FenceChange::Raise => "SHARE ROW EXCLUSIVE",
        FenceChange::Lift => "ACCESS EXCLUSIVE",
    };
    let schema = &binding.schema;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let settings = format!("SET LOCAL lock_timeout = {FENCE_LOCK_TIMEOUT_MS};");
        let mut transaction = TenantTransaction::begin(&server.pool, binding, &settings).await?;
        let outcome = async {
            let tables = tenant_tables(&transaction, schema).await?;
            let names = tables
                .iter()
                .map(|table| qualified(schema, table))
                .collect::<PgResult<Vec<_>>>()?;
            transaction
                .batch(&format!("LOCK TABLE {} IN {mode} MODE", names.join(", ")))
                .await?;
            match change {
                FenceChange::Raise => fence_tables(&transaction, schema).await?,
                FenceChange::Lift => unfence_in(&transaction, schema).await?,
            }
            Ok(tables)
        }
        .await;
        match outcome {
            Ok(tables) => {
                transaction.finish("COMMIT").await?;
                return Ok(tables);
            }
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                let busy = has_code(&error, &SqlState::LOCK_NOT_AVAILABLE)
                    || has_code(&error, &SqlState::T_R_DEADLOCK_DETECTED);
                if !busy || attempt >= FENCE_ATTEMPTS {
                    return Err(error.into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Creates the fence on every table of the tenant's schema in `transaction` (as the tenant's
/// role): the source's, and a move's target copy from its creation until the flip, so a
/// process still holding a handle on that server from an earlier stay there cannot write into
/// the unfinished copy (the sync would delete such rows as stale). Only a transaction that set
/// [`MOVER_SETTING`] to the tenant, which only the mover does, gets through.
pub(crate) async fn fence_tables(transaction: &TenantTransaction, schema: &Schema) -> PgResult<()> {
    let function = qualified(schema, FENCE)?;
    let mut ddl = format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fence$ \
         BEGIN \
           IF current_setting('{MOVER_SETTING}', true) = TG_TABLE_SCHEMA THEN RETURN NULL; END IF; \
           RAISE EXCEPTION USING ERRCODE = '{FENCED_SQLSTATE}', \
             MESSAGE = 'tenant is moving to another server, retry shortly'; END $fence$; "
    );
    for table in tenant_tables(transaction, schema).await? {
        let name = qualified(schema, &table)?;
        ddl.push_str(&format!(
            "DROP TRIGGER IF EXISTS {FENCE} ON {name}; \
             CREATE TRIGGER {FENCE} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {name} \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}(); "
        ));
    }
    transaction.batch(&ddl).await
}

/// The setting the mover's transactions on a target copy carry (the tenant's schema name):
/// the fence lets them write there.
const MOVER_SETTING: &str = "astrocyte.moving";

/// The settings of the mover's transactions on the target: [`TEXT_FORM`] and the pass
/// through the target copy's fence.
fn mover_settings(schema: &Schema) -> String {
    format!(
        "{TEXT_FORM} SET LOCAL {MOVER_SETTING} = '{}';",
        schema.as_str().replace('\'', "''")
    )
}

/// Lifts the fence: from the source (a move undone), or from the target's copy (at the flip).
/// `DROP TRIGGER` locks each table exclusively, so the tables are locked first, in the
/// writers' order (see [`under_table_locks`]). Idempotent.
async fn unfence(server: &Server, binding: &TenantBinding) -> Result<()> {
    under_table_locks(server, binding, FenceChange::Lift).await?;
    Ok(())
}

async fn unfence_in(transaction: &TenantTransaction, schema: &Schema) -> PgResult<()> {
    let mut ddl = String::new();
    for table in tenant_tables(transaction, schema).await? {
        ddl.push_str(&format!(
            "DROP TRIGGER IF EXISTS {FENCE} ON {}; ",
            qualified(schema, &table)?
        ));
    }
    ddl.push_str(&format!(
        "DROP FUNCTION IF EXISTS {}(); COMMENT ON SCHEMA {} IS NULL",
        qualified(schema, FENCE)?,
        quoted_schema(schema)
    ));
    transaction.batch(&ddl).await
}

/// A table's stored columns (generated ones are recomputed by the target), in order, each
/// with its type: the type's own name and modifier (a vector's dimension), not its schema,
/// which may differ between servers.
async fn stored_columns(
    transaction: &TenantTransaction,
    table: &str,
) -> PgResult<Vec<(String, String)>> {
    let mut params = Params::default();
    let name = params.push(table.to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT a.attname::text AS name, t.typname::text || '/' || a.atttypmod AS ty \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = {name}::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                   AND a.attgenerated = '' ORDER BY a.attnum"
            ),
            &params,
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                quoted_column(&row.try_get::<_, String>("name")?)?,
                row.try_get::<_, String>("ty")?,
            ))
        })
        .collect()
}

/// The tables to copy (all but the ledger, which the target's migrations wrote), each after
/// the tables its foreign keys reference.
async fn copy_order(
    transaction: &TenantTransaction,
    schema: &Schema,
    tables: &[String],
) -> PgResult<Vec<String>> {
    let mut params = Params::default();
    let name = params.push(schema.as_str().to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT child.relname::text AS child, parent.relname::text AS parent \
                 FROM pg_catalog.pg_constraint f \
                 JOIN pg_catalog.pg_class child ON child.oid = f.conrelid \
                 JOIN pg_catalog.pg_class parent ON parent.oid = f.confrelid \
                 WHERE f.contype = 'f' AND f.connamespace = to_regnamespace(quote_ident({name}))"
            ),
            &params,
        )
        .await?;
    let mut edges = Vec::new();
    for row in &rows {
        let child: String = row.try_get("child")?;
        let parent: String = row.try_get("parent")?;
        if child != parent {
            edges.push((child, parent));
        }
    }
    let mut pending: Vec<String> = tables
        .iter()
        .filter(|table| table.as_str() != LEDGER_TABLE)
        .cloned()
        .collect();
    let mut ordered: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|table| {
            edges
                .iter()
                .filter(|(child, _)| child == table)
                .all(|(_, parent)| !pending.contains(parent))
        });
        let Some(index) = ready else {
            return Err(PgError::Config(format!(
                "the foreign keys of tenant {schema}'s tables form a cycle"
            )));
        };
        ordered.push(pending.remove(index));
    }
    Ok(ordered)
}

/// The row count and checksum of one table, over `columns` (text forms fixed by
/// [`TEXT_FORM`]).
async fn check_table(
    transaction: &TenantTransaction,
    qualified_table: &str,
    columns: &[String],
) -> PgResult<(i64, String)> {
    let row = format!(
        "ROW({})::text",
        columns
            .iter()
            .map(|column| format!("t.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = transaction
        .typed(
            &format!(
                "SELECT count(*) AS n, COALESCE(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint), 0)::text AS sum \
                 FROM {qualified_table} t"
            ),
            &Params::default(),
        )
        .await?;
    let first = rows
        .first()
        .ok_or_else(|| PgError::Decode("a checksum query returned no row".into()))?;
    Ok((first.try_get("n")?, first.try_get("sum")?))
}

/// A source transaction (as the source role) and a target transaction (as the target
/// role), committed together when the work in them succeeded.
struct Both {
    reading: TenantTransaction,
    writing: TenantTransaction,
}

impl Both {
    async fn begin(
        source: &Server,
        source_binding: &TenantBinding,
        reading_settings: &str,
        target: &Server,
        target_binding: &TenantBinding,
    ) -> Result<Both> {
        let mut reading =
            TenantTransaction::begin(&source.pool, source_binding, reading_settings).await?;
        let settings = mover_settings(&target_binding.schema);
        match TenantTransaction::begin(&target.pool, target_binding, &settings).await {
            Ok(writing) => Ok(Both { reading, writing }),
            Err(error) => {
                let _ = reading.finish("ROLLBACK").await;
                Err(error.into())
            }
        }
    }

    /// Commits both after `outcome` succeeded, else rolls both back; passes `outcome` on.
    async fn end<T>(mut self, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(value) => {
                self.writing.finish("COMMIT").await?;
                self.reading.finish("COMMIT").await?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.writing.finish("ROLLBACK").await;
                let _ = self.reading.finish("ROLLBACK").await;
                Err(error)
            }
        }
    }
}

/// The online copy, before the fence: every table from one snapshot of the source
/// (repeatable read, so rows of different tables agree), with the vector column typed first
/// and the indexes built, while the tenant's writes carry on.
async fn bulk_copy(
    source: &Server,
    source_binding: &TenantBinding,
    target: &Server,
    target_binding: &TenantBinding,
) -> Result<()> {
    let schema = &source_binding.schema;
    let settings = format!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; {TEXT_FORM}");
    let both = Both::begin(source, source_binding, &settings, target, target_binding).await?;
    let outcome = async {
        let tables = tenant_tables(&both.reading, schema).await?;
        copy_in_transactions(&both.reading, &both.writing, schema, target, &tables).await?;
        both.writing
            .batch(&format!(
                "COMMENT ON SCHEMA {} IS '{SNAPSHOT_MARK}'",
                quoted_schema(schema)
            ))
            .await?;
        Ok(())
    }
    .await;
    both.end(outcome).await
}

/// Under the fence: brings the target's copy level with the (now still) source, row by row
/// where they differ, then checks every table and commits.
async fn sync_and_check(
    source: &Server,
    source_binding: &TenantBinding,
    target: &Server,
    target_binding: &TenantBinding,
    tables: &[String],
) -> Result<(Vec<TableCheck>, u64)> {
    let schema = &source_binding.schema;
    let both = Both::begin(source, source_binding, TEXT_FORM, target, target_binding).await?;
    let outcome = async {
        let (reading, writing) = (&both.reading, &both.writing);
        let order = copy_order(reading, schema, tables).await?;
        if level_embedding(reading, writing, schema, target).await? {
            info!("vector column typed and indexed on the target under the fence");
        }
        let changed = sync_rows(reading, writing, schema, &order).await?;
        continue_sequences(writing, schema, &order).await?;
        let checks = check_tables(reading, writing, schema, &order).await?;
        Ok((checks, changed))
    }
    .await;
    both.end(outcome).await
}

/// A table's stored columns, the same (names and types) on both servers, else the move stops.
async fn same_columns(
    reading: &TenantTransaction,
    writing: &TenantTransaction,
    table: &str,
    name: &str,
) -> Result<Vec<String>> {
    let columns = stored_columns(reading, name).await?;
    let target_columns = stored_columns(writing, name).await?;
    if columns != target_columns {
        return Err(Error::Storage(format!(
            "table {table} has other columns on the target ({target_columns:?} vs {columns:?})"
        )));
    }
    Ok(columns.into_iter().map(|(column, _)| column).collect())
}

/// A column name as SQL: validated by the identifier rule (every column of our migrations
/// passes), so quoting it needs no escaping; anything else stops the move.
fn quoted_column(name: &str) -> PgResult<String> {
    validate_identifier(name, IdentifierLabel::Column)
        .map(|name| format!("\"{name}\""))
        .map_err(|error| PgError::Decode(error.to_string()))
}

/// Whether `column` (quoted) is the change log's transaction id, which a copy rewrites (see
/// [`copied_as`]) and the comparisons leave out.
fn is_rewritten(table: &str, column: &str) -> bool {
    table == CHANGES_TABLE && column == "\"xid\""
}

/// What a copied column is selected as: a change-log entry's transaction id means nothing on
/// another server, so it arrives as the oldest possible transaction, which the target's feed
/// orders before everything written there and never waits on.
fn copied_as(table: &str, column: &str) -> String {
    if is_rewritten(table, column) {
        "'3'::xid8".to_string()
    } else {
        column.to_string()
    }
}

/// The columns compared between the copies (all but the change log's rewritten ids).
fn compared(table: &str, columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|column| !is_rewritten(table, column))
        .cloned()
        .collect()
}

async fn copy_in_transactions(
    reading: &TenantTransaction,
    writing: &TenantTransaction,
    schema: &Schema,
    target: &Server,
    tables: &[String],
) -> Result<()> {
    let memories = qualified(schema, MEMORIES_TABLE)?;
    // The vector column is typed (and its index built) the way the tenant's first vectors
    // did it on the source: typed before the copy, indexed after it.
    let dimension = source_dimension(reading, schema).await?;
    if let Some(dimension) = dimension {
        type_embedding(writing, &memories, target, dimension).await?;
    }
    for table in copy_order(reading, schema, tables).await? {
        let name = qualified(schema, &table)?;
        let columns = same_columns(reading, writing, &table, &name).await?;
        let select = columns
            .iter()
            .map(|column| copied_as(&table, column))
            .collect::<Vec<_>>()
            .join(", ");
        let list = columns.join(", ");
        let out = reading
            .copy_out(&format!("COPY (SELECT {select} FROM {name}) TO STDOUT"))
            .await?;
        let sink = writing
            .copy_in(&format!("COPY {name} ({list}) FROM STDIN"))
            .await?;
        futures::pin_mut!(out, sink);
        while let Some(chunk) = out.next().await {
            sink.send(chunk.map_err(PgError::from)?)
                .await
                .map_err(PgError::from)?;
        }
        sink.as_mut().finish().await.map_err(PgError::from)?;
        writing.batch(&format!("ANALYZE {name}")).await?;
    }
    if let Some(dimension) = dimension {
        index_embedding(writing, &memories, target, dimension).await?;
    }
    Ok(())
}

/// Types the target's vector column with the dimension the tenant's first vectors fixed.
async fn type_embedding(
    writing: &TenantTransaction,
    memories: &str,
    target: &Server,
    dimension: usize,
) -> PgResult<()> {
    writing
        .batch(&format!(
            "ALTER TABLE {memories} ALTER COLUMN embedding TYPE {ty}({dimension}) \
             USING embedding::{ty}({dimension})",
            ty = target.vector.vector
        ))
        .await
}

/// Builds the target's HNSW index, as the source has one for vectors of this dimension.
async fn index_embedding(
    writing: &TenantTransaction,
    memories: &str,
    target: &Server,
    dimension: usize,
) -> PgResult<()> {
    if dimension > HNSW_MAX_DIMENSION {
        return Ok(());
    }
    writing
        .batch(&format!(
            "{} {}",
            target.vector.hnsw.build_settings(),
            target.vector.index_ddl(memories, &dimension.to_string())
        ))
        .await
}

/// Under the fence: when the tenant's first vectors arrived after the snapshot, the source's
/// vector column got its dimension (and index) since; the target's gets them now, before the
/// rows are brought over. Returns whether it did.
async fn level_embedding(
    reading: &TenantTransaction,
    writing: &TenantTransaction,
    schema: &Schema,
    target: &Server,
) -> Result<bool> {
    let Some(dimension) = source_dimension(reading, schema).await? else {
        return Ok(false);
    };
    let memories = qualified(schema, MEMORIES_TABLE)?;
    if stored_columns(reading, &memories).await? == stored_columns(writing, &memories).await? {
        return Ok(false);
    }
    type_embedding(writing, &memories, target, dimension).await?;
    index_embedding(writing, &memories, target, dimension).await?;
    Ok(true)
}

/// The key of a table's rows as compared across servers: its primary key (for the change
/// log without the rewritten transaction id; its sequence number is unique on its own).
async fn key_columns(
    transaction: &TenantTransaction,
    table: &str,
    name: &str,
) -> Result<Vec<String>> {
    let mut params = Params::default();
    let relation = params.push(name.to_string(), Type::TEXT);
    let rows = transaction
        .typed(
            &format!(
                "SELECT a.attname::text AS name FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid \
                   AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = {relation}::regclass AND i.indisprimary ORDER BY a.attnum"
            ),
            &params,
        )
        .await?;
    let mut keys = Vec::new();
    for row in &rows {
        let column = quoted_column(&row.try_get::<_, String>("name").map_err(PgError::from)?)?;
        if !is_rewritten(table, &column) {
            keys.push(column);
        }
    }
    if keys.is_empty() {
        return Err(Error::Storage(format!(
            "table {table} has no primary key to compare its copies by"
        )));
    }
    Ok(keys)
}

/// Each row's key and a hash of its compared columns.
async fn row_hashes(
    transaction: &TenantTransaction,
    name: &str,
    keys: &[String],
    columns: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    let key = keys
        .iter()
        .map(|k| format!("t.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = columns
        .iter()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = transaction
        .typed(
            &format!("SELECT ROW({key}, 0)::text AS k, md5(ROW({row})::text) AS h FROM {name} t"),
            &Params::default(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>("k").map_err(PgError::from)?,
                r.try_get::<_, String>("h").map_err(PgError::from)?,
            ))
        })
        .collect()
}

/// Rows copied per statement while syncing.
const SYNC_BATCH: usize = 500;

/// Makes every table of the target equal to the fenced source: rows the source no longer
/// has, or has otherwise, are deleted on the target (children first, so a cascade cannot
/// remove what is compared later), then rows the target lacks are copied (parents first,
/// compared afresh after the deletes). Returns the rows deleted and inserted.
async fn sync_rows(
    reading: &TenantTransaction,
    writing: &TenantTransaction,
    schema: &Schema,
    order: &[String],
) -> Result<u64> {
    let mut changed = 0u64;
    let mut plans = Vec::new();
    for table in order {
        let name = qualified(schema, table)?;
        let columns = same_columns(reading, writing, table, &name).await?;
        let keys = key_columns(reading, table, &name).await?;
        let source = row_hashes(reading, &name, &keys, &compared(table, &columns)).await?;
        plans.push((table.clone(), name, columns, keys, source));
    }
    for (table, name, columns, keys, source) in plans.iter().rev() {
        let target = row_hashes(writing, name, keys, &compared(table, columns)).await?;
        let stale: Vec<String> = target
            .iter()
            .filter(|(key, hash)| source.get(*key) != Some(*hash))
            .map(|(key, _)| key.clone())
            .collect();
        let key = keys.join(", ");
        for batch in stale.chunks(SYNC_BATCH) {
            let mut params = Params::default();
            let list = params.push(batch.to_vec(), Type::TEXT_ARRAY);
            writing
                .typed(
                    &format!("DELETE FROM {name} t WHERE ROW({key}, 0)::text = ANY({list})"),
                    &params,
                )
                .await?;
        }
        changed += stale.len() as u64;
    }
    for (table, name, columns, keys, source) in &plans {
        let target = row_hashes(writing, name, keys, &compared(table, columns)).await?;
        let missing: Vec<String> = source
            .keys()
            .filter(|key| !target.contains_key(*key))
            .cloned()
            .collect();
        let key = keys.join(", ");
        let list_columns = columns.join(", ");
        let select = columns
            .iter()
            .map(|column| copied_as(table, column))
            .collect::<Vec<_>>()
            .join(", ");
        for batch in missing.chunks(SYNC_BATCH) {
            let mut params = Params::default();
            let list = params.push(batch.to_vec(), Type::TEXT_ARRAY);
            let rows = reading
                .typed(
                    &format!(
                        "SELECT json_agg(row_to_json(t))::text AS rows FROM {name} t \
                         WHERE ROW({key}, 0)::text = ANY({list})"
                    ),
                    &params,
                )
                .await?;
            let json: Option<String> = rows
                .first()
                .map(|row| row.try_get("rows"))
                .transpose()
                .map_err(PgError::from)?
                .flatten();
            let Some(json) = json else { continue };
            let mut params = Params::default();
            let json = params.push(json, Type::TEXT);
            // Through the table's own row type, so every value parses as it was stored.
            writing
                .typed(
                    &format!(
                        "INSERT INTO {name} ({list_columns}) SELECT {select} \
                         FROM json_populate_recordset(NULL::{name}, {json}::json)"
                    ),
                    &params,
                )
                .await?;
        }
        changed += missing.len() as u64;
    }
    Ok(changed)
}

/// Serial columns continue after the copied values.
async fn continue_sequences(
    writing: &TenantTransaction,
    schema: &Schema,
    order: &[String],
) -> Result<()> {
    for table in order {
        let name = qualified(schema, table)?;
        let mut params = Params::default();
        let table_param = params.push(name.clone(), Type::TEXT);
        for row in writing
            .typed(
                &format!(
                    "SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a \
                     WHERE a.attrelid = {table_param}::regclass AND a.attnum > 0 \
                       AND NOT a.attisdropped \
                       AND pg_get_serial_sequence({table_param}, a.attname) IS NOT NULL"
                ),
                &params,
            )
            .await?
        {
            let column: String = row.try_get("name").map_err(PgError::from)?;
            let mut params = Params::default();
            let table_param = params.push(name.clone(), Type::TEXT);
            let column_param = params.push(column.clone(), Type::TEXT);
            let quoted = quoted_column(&column)?;
            writing
                .typed(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence({table_param}, {column_param}), \
                           COALESCE((SELECT max({quoted}) FROM {name}), 0) + 1, false)"
                    ),
                    &params,
                )
                .await?;
        }
    }
    Ok(())
}

/// Compares every table's row count and checksum between the copies.
async fn check_tables(
    reading: &TenantTransaction,
    writing: &TenantTransaction,
    schema: &Schema,
    order: &[String],
) -> Result<Vec<TableCheck>> {
    let mut checks = Vec::new();
    for table in order {
        let name = qualified(schema, table)?;
        let columns = compared(table, &same_columns(reading, writing, table, &name).await?);
        let (rows, checksum) = check_table(reading, &name, &columns).await?;
        let (copied_rows, copied_checksum) = check_table(writing, &name, &columns).await?;
        if (rows, &checksum) != (copied_rows, &copied_checksum) {
            return Err(Error::Storage(format!(
                "table {table} differs after the copy: {rows} rows (checksum {checksum}) on the \
                 source, {copied_rows} (checksum {copied_checksum}) on the target"
            )));
        }
        checks.push(TableCheck {
            table: table.clone(),
            rows,
            checksum,
        });
    }
    Ok(checks)
}

/// The vector dimension the source's meta table records, if its first vectors fixed one.
async fn source_dimension(reading: &TenantTransaction, schema: &Schema) -> Result<Option<usize>> {
    let meta = qualified(schema, crate::names::META_TABLE)?;
    let rows = reading
        .typed(
            &format!("SELECT value FROM {meta} WHERE key = 'embedding_dimension'"),
            &Params::default(),
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let value: String = row.try_get("value").map_err(PgError::from)?;
    value
        .parse()
        .map(Some)
        .map_err(|_| Error::Internal(format!("embedding dimension {value:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_schema_is_recognised_by_its_name_in_any_language() {
        // English, and the forms German messages take (other words and quotes).
        assert!(names(
            "relation \"pl_a.astrocyte_memories\" does not exist",
            "pl_a",
            true
        ));
        assert!(names(
            "Relation »pl_a.astrocyte_memories« existiert nicht",
            "pl_a",
            true
        ));
        assert!(names("Schema »pl_a« existiert nicht", "pl_a", false));
        // Another schema whose name contains this one's, an unqualified table, a table
        // named like the schema.
        assert!(!names("relation \"xpl_a.t\" does not exist", "pl_a", true));
        assert!(!names("relation \"pl_ab.t\" does not exist", "pl_a", true));
        assert!(!names(
            "relation \"astrocyte_memories\" does not exist",
            "pl_a",
            true
        ));
        assert!(!names(
            "relation \"other.pl_a\" does not exist",
            "pl_a",
            true
        ));
        assert!(!names("Schema »pl_ab« existiert nicht", "pl_a", false));
    }

    #[test]
    fn steps_are_ordered() {
        assert!(MoveStep::Marked < MoveStep::Prepared);
        assert!(MoveStep::Fenced < MoveStep::Copied);
        assert!(MoveStep::Flipped < MoveStep::Cleaned);
    }

    #[test]
    fn the_fence_code_is_a_valid_sqlstate() {
        assert_eq!(FENCED_SQLSTATE.len(), 5);
        assert!(FENCED_SQLSTATE
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    }
}
