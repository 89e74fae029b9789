//! Tenant transactions: every statement that touches tenant data runs inside one, under
//! `SET LOCAL ROLE <tenant role>` with a search path that holds no user schema. This module
//! does not build tenant SQL; it only guarantees where that SQL runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use astrocyte_core::{Result, Schema};
use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use tracing::warn;

use crate::error::{PgError, PgResult};
use crate::names::{RoleName, TenantTables, VectorSql};
use crate::sql::Params;

/// Everything needed to run SQL for one tenant: its schema, role, tables and pgvector names.
#[derive(Debug, Clone)]
pub(crate) struct TenantBinding {
    pub(crate) schema: Schema,
    pub(crate) role: RoleName,
    pub(crate) tables: TenantTables,
    pub(crate) vector: Arc<VectorSql>,
    /// Set when a statement found the tenant fenced for a move or its schema or role gone:
    /// the directory may place the tenant elsewhere now, so the store looks it up again
    /// instead of reusing a handle built on this binding.
    pub(crate) relocated: Arc<AtomicBool>,
}

impl TenantBinding {
    pub(crate) fn new(schema: Schema, role: RoleName, vector: Arc<VectorSql>) -> Self {
        TenantBinding {
            tables: TenantTables::new(&schema),
            schema,
            role,
            vector,
            relocated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a statement saw signs of a move (see `relocated`).
    pub(crate) fn is_relocated(&self) -> bool {
        self.relocated.load(Ordering::Acquire)
    }

    /// The statements that put a transaction in the tenant's context. `SET LOCAL ROLE` is the
    /// defence in depth: the role owns only this schema, so SQL that names another tenant or
    /// `public` fails even if it slipped past `fq_table`. The search path holds only
    /// `pg_catalog` (and `pg_temp` last, so temporary objects never shadow anything): an
    /// unqualified table name resolves to nothing instead of silently to `public`. JIT and
    /// parallel workers are off: compiling or starting workers (several ms each) dwarfs these
    /// short statements, whose cost estimates often cross the thresholds anyway.
    fn context_sql(&self) -> String {
        let timeout = self
            .vector
            .statement_timeout_ms
            .map(|ms| format!(" SET LOCAL statement_timeout = {ms};"))
            .unwrap_or_default();
        format!(
            "SET LOCAL ROLE {}; SET LOCAL search_path TO pg_catalog, pg_temp; SET LOCAL jit = off; \
             SET LOCAL max_parallel_workers_per_gather = 0;{timeout}",
            self.role.quoted()
        )
    }
}

/// An open transaction running as one tenant's role, for SQL written by hand (operations
/// tooling, tests of the isolation itself). Store methods use the same type internally.
///
/// Dropping it without [`commit`](Self::commit) or [`rollback`](Self::rollback) closes the
/// connection instead of returning it to the pool, so an open transaction (and its role) can
/// never leak into another tenant's request.
pub struct TenantTransaction {
    client: Option<Object>,
    schema: Schema,
    /// The binding's `relocated` flag, raised by [`TenantTransaction::watch`].
    relocated: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for TenantTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTransaction")
            .field("schema", &self.schema)
            .field("open", &self.client.is_some())
            .finish()
    }
}

impl TenantTransaction {
    /// Opens a transaction as the tenant's role with extra `SET LOCAL` settings.
    pub(crate) async fn begin(
        pool: &Pool,
        binding: &TenantBinding,
        settings: &str,
    ) -> PgResult<Self> {
        let client = pool.get().await?;
        let mut transaction = TenantTransaction {
            client: Some(client),
            schema: binding.schema.clone(),
            relocated: Some(binding.relocated.clone()),
        };
        // Awaited on its own before any tenant statement is sent: if the role switch failed,
        // nothing may run as the pool's (privileged) user.
        let begin = format!("BEGIN; {} {settings}", binding.context_sql());
        let started = transaction.raw()?.batch_execute(&begin).await;
        if let Err(error) = transaction.watch_as(started, true) {
            transaction.discard();
            return Err(error);
        }
        Ok(transaction)
    }

    /// Opens a read-only transaction as the tenant's role on a replica, in the same round trip
    /// asking how far the replica has replayed the primary's WAL (`None`: not in recovery).
    pub(crate) async fn begin_standby(
        pool: &Pool,
        binding: &TenantBinding,
        settings: &str,
    ) -> PgResult<(Self, Option<u64>)> {
        let client = pool.get().await?;
        let mut transaction = TenantTransaction {
            client: Some(client),
            schema: binding.schema.clone(),
            relocated: Some(binding.relocated.clone()),
        };
        // One simple-protocol string: if the role switch fails, the rest is not run.
        let begin = format!(
            "BEGIN READ ONLY; {} {settings} SELECT pg_last_wal_replay_lsn()::text",
            binding.context_sql()
        );
        match transaction.raw()?.simple_query(&begin).await {
            Ok(messages) => Ok((transaction, replay_position(&messages))),
            Err(error) => {
                transaction.discard();
                Err(error.into())
            }
        }
    }

    /// How far the replica this transaction runs on has replayed (`None`: not in recovery).
    pub(crate) async fn replay_position(&self) -> PgResult<Option<u64>> {
        let messages = self
            .raw()?
            .simple_query("SELECT pg_last_wal_replay_lsn()::text")
            .await?;
        Ok(replay_position(&messages))
    }

    /// Opens a plain transaction as the pool's own user, for tenant administration (creating
    /// the role and schema before switching to the role for the migrations).
    pub(crate) async fn begin_admin(pool: &Pool, schema: &Schema) -> PgResult<Self> {
        let client = pool.get().await?;
        let mut transaction = TenantTransaction {
            client: Some(client),
            schema: schema.clone(),
            relocated: None,
        };
        if let Err(error) = transaction.raw()?.batch_execute("BEGIN").await {
            transaction.discard();
            return Err(error.into());
        }
        Ok(transaction)
    }

    /// Switches an admin transaction to the tenant's role for the rest of the transaction.
    pub(crate) async fn become_tenant(&self, binding: &TenantBinding) -> PgResult<()> {
        self.batch(&binding.context_sql()).await
    }

    /// The tenant this transaction runs for.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn raw(&self) -> PgResult<&tokio_postgres::Client> {
        self.client
            .as_deref()
            .map(|wrapper| &**wrapper)
            .ok_or(PgError::Finished)
    }

    /// Runs a statement with positional parameters and returns its rows. The statement is
    /// prepared for this call only and closed afterwards (no statement cache).
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let rows = self.raw()?.query(sql, params).await;
        Ok(self.watch(rows)?)
    }

    /// Runs a statement with positional parameters and returns the number of rows affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let count = self.raw()?.execute(sql, params).await;
        Ok(self.watch(count)?)
    }

    /// Runs one or more statements without parameters.
    pub async fn batch_execute(&self, sql: &str) -> Result<()> {
        let done = self.raw()?.batch_execute(sql).await;
        Ok(self.watch(done)?)
    }

    /// Commits and returns the connection to the pool.
    pub async fn commit(mut self) -> Result<()> {
        Ok(self.finish("COMMIT").await?)
    }

    /// Rolls back and returns the connection to the pool.
    pub async fn rollback(mut self) -> Result<()> {
        Ok(self.finish("ROLLBACK").await?)
    }

    /// Runs a one-shot typed statement (no named prepared statement is created).
    pub(crate) async fn typed(&self, sql: &str, params: &Params) -> PgResult<Vec<Row>> {
        let rows = self.raw()?.query_typed(sql, &params.typed()).await;
        self.watch(rows)
    }

    /// Runs a statement without parameters through the simple protocol.
    pub(crate) async fn batch(&self, sql: &str) -> PgResult<()> {
        let done = self.raw()?.batch_execute(sql).await;
        self.watch(done)
    }

    /// Starts `COPY … TO STDOUT` in this transaction (moving a tenant between servers).
    pub(crate) async fn copy_out(&self, sql: &str) -> PgResult<tokio_postgres::CopyOutStream> {
        Ok(self.raw()?.copy_out(sql).await?)
    }

    /// Starts `COPY … FROM STDIN` in this transaction (moving a tenant between servers).
    pub(crate) async fn copy_in(
        &self,
        sql: &str,
    ) -> PgResult<tokio_postgres::CopyInSink<bytes::Bytes>> {
        Ok(self.raw()?.copy_in(sql).await?)
    }

    /// Passes a statement's outcome on, first raising the binding's `relocated` flag when the
    /// error shows signs of a move (see [`crate::relocate::relocation_sign`]); a sure sign
    /// becomes [`PgError::Relocated`] ("retry"), since the tenant lives elsewhere now.
    fn watch<T>(&self, outcome: std::result::Result<T, tokio_postgres::Error>) -> PgResult<T> {
        self.watch_as(outcome, false)
    }

    fn watch_as<T>(
        &self,
        outcome: std::result::Result<T, tokio_postgres::Error>,
        entering: bool,
    ) -> PgResult<T> {
        use crate::relocate::{relocation_sign, RelocationSign};
        match (outcome, &self.relocated) {
            (Err(error), Some(flag)) => match relocation_sign(&error, &self.schema, entering) {
                RelocationSign::Moved => {
                    flag.store(true, Ordering::Release);
                    Err(PgError::Relocated(error))
                }
                RelocationSign::Maybe => {
                    flag.store(true, Ordering::Release);
                    Err(error.into())
                }
                RelocationSign::None => Err(error.into()),
            },
            (outcome, _) => Ok(outcome?),
        }
    }

    /// Runs the last statement of a transaction and its `COMMIT` in one round trip. If the
    /// statement fails, PostgreSQL turns the pipelined `COMMIT` into a rollback.
    pub(crate) async fn typed_then_commit(
        mut self,
        sql: &str,
        params: &Params,
    ) -> PgResult<Vec<Row>> {
        let client = self.raw()?;
        let typed = params.typed();
        // `join` polls in order and both calls send on first poll, so the server receives the
        // statement before the COMMIT.
        let (rows, commit) = futures::join!(
            client.query_typed(sql, &typed),
            client.batch_execute("COMMIT")
        );
        drop(typed);
        let rows = self.watch(rows);
        match (rows, commit) {
            (Ok(rows), Ok(())) => {
                self.release();
                Ok(rows)
            }
            (Err(error), Ok(())) => {
                self.release();
                Err(error)
            }
            (_, Err(error)) => {
                self.discard();
                Err(error.into())
            }
        }
    }

    /// Commits (or rolls back) and returns the connection to the pool.
    pub(crate) async fn finish(&mut self, command: &str) -> PgResult<()> {
        match self.raw()?.batch_execute(command).await {
            Ok(()) => {
                self.release();
                Ok(())
            }
            Err(error) => {
                self.discard();
                Err(error.into())
            }
        }
    }

    /// Returns a connection whose transaction has ended to the pool.
    fn release(&mut self) {
        drop(self.client.take());
    }

    /// Closes a connection whose transaction state is unknown instead of pooling it.
    fn discard(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// The replay position a simple query's first row holds, parsed.
fn replay_position(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<u64> {
    messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => {
            row.get(0).and_then(crate::replica::parse_lsn)
        }
        _ => None,
    })
}

impl Drop for TenantTransaction {
    fn drop(&mut self) {
        if self.client.is_some() {
            warn!(tenant = %self.schema, "tenant transaction dropped while open; closing its connection");
            self.discard();
        }
    }
}
