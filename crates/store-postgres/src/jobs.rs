//! [`PgJobQueue`]: one tenant's background jobs in its own schema (`astrocyte_jobs`), every
//! statement run as the tenant role like its memories. Claims use `FOR UPDATE SKIP LOCKED`, so
//! any number of workers in any number of processes never hold the same job. What a job does
//! and when to retry it are the worker runtime's business, not this module's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::jobs::{DueTenant, Job, JobCounts, JobQueue, JobSignals, JobState, NewJob};
use astrocyte_core::Schema;
use astrocyte_core::{Error, Result, Timestamp};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use tracing::{instrument, warn};

use crate::directory::signals_table;
use crate::error::{PgError, PgResult};
use crate::servers::Server;
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::{to_i64, Params};

const JOB_COLUMNS: &str = "j.id, j.kind, j.payload, j.state, j.attempts, j.max_attempts, \
     j.last_error, j.result, j.idempotency_key, j.run_at, j.lease_owner, j.lease_until, \
     j.created_at, j.updated_at";

/// One tenant's job queue (what `TenantStore::jobs` returns).
#[derive(Debug)]
pub struct PgJobQueue {
    pool: Pool,
    binding: TenantBinding,
}

fn state_from(text: &str) -> PgResult<JobState> {
    Ok(match text {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        other => return Err(PgError::Decode(format!("unknown job state {other:?}"))),
    })
}

fn count(row: &Row, name: &str) -> PgResult<u32> {
    let value: i32 = row.try_get(name)?;
    u32::try_from(value).map_err(|_| PgError::Decode(format!("negative {name}")))
}

fn job_from_row(row: &Row) -> PgResult<Job> {
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        state: state_from(&state)?,
        attempts: count(row, "attempts")?,
        max_attempts: count(row, "max_attempts")?,
        last_error: row.try_get("last_error")?,
        result: row.try_get("result")?,
        idempotency_key: row.try_get("idempotency_key")?,
        run_at: row.try_get("run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn one_job(rows: &[Row]) -> PgResult<Option<Job>> {
    rows.first().map(job_from_row).transpose()
}

impl PgJobQueue {
    pub(crate) fn new(pool: Pool, binding: TenantBinding) -> Self {
        PgJobQueue { pool, binding }
    }

    async fn begin(&self) -> PgResult<TenantTransaction> {
        TenantTransaction::begin(&self.pool, &self.binding, "").await
    }

    /// Runs one statement in its own tenant transaction.
    async fn run(&self, sql: &str, params: &Params) -> PgResult<Vec<Row>> {
        self.begin().await?.typed_then_commit(sql, params).await
    }

    async fn by_idempotency_key(
        &self,
        transaction: &TenantTransaction,
        key: &str,
    ) -> PgResult<Option<Job>> {
        let mut params = Params::default();
        let key = params.push(key.to_string(), Type::TEXT);
        let rows = transaction
            .typed(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM {} j WHERE j.idempotency_key = {key}",
                    self.binding.tables.jobs
                ),
                &params,
            )
            .await?;
        one_job(&rows)
    }

    async fn enqueue_in(&self, transaction: &TenantTransaction, job: NewJob) -> Result<Job> {
        let max_attempts = i32::try_from(job.max_attempts)
            .ok()
            .filter(|max| *max > 0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "max_attempts must be between 1 and {}, got {}",
                    i32::MAX,
                    job.max_attempts
                ))
            })?;
        let key = job.idempotency_key.clone();
        let mut params = Params::default();
        let values = [
            params.push(uuid::Uuid::now_v7().to_string(), Type::TEXT),
            params.push(job.kind, Type::TEXT),
            params.push(job.payload, Type::JSONB),
            params.push(max_attempts, Type::INT4),
            params.push(job.idempotency_key, Type::TEXT),
            params.push(job.run_at, Type::TIMESTAMPTZ),
        ]
        .join(", ");
        // On a duplicate key the insert waits for the other enqueue to commit, then does
        // nothing; the next statement (a fresh snapshot) reads the job that won.
        let sql = format!(
            "INSERT INTO {table} AS j (id, kind, payload, max_attempts, idempotency_key, run_at, \
               state, created_at, updated_at) \
             VALUES ({values}, 'queued', now(), now()) \
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING {JOB_COLUMNS}",
            table = self.binding.tables.jobs
        );
        if let Some(job) = one_job(&transaction.typed(&sql, &params).await?)? {
            self.raise_signal(transaction, job.run_at).await?;
            return Ok(job);
        }
        let key =
            key.ok_or_else(|| Error::Internal("job insert without a key did nothing".into()))?;
        self.by_idempotency_key(transaction, &key)
            .await?
            .ok_or_else(|| Error::Internal(format!("job with idempotency key {key:?} vanished")))
    }

    /// Raises the tenant's job signal in the enqueue's transaction, so the job and its signal
    /// commit together. The signal table is the store's, not the tenant's: the statement runs
    /// as the pool's user (`SET LOCAL ROLE NONE`), after every tenant statement of the
    /// transaction.
    async fn raise_signal(
        &self,
        transaction: &TenantTransaction,
        run_at: Timestamp,
    ) -> PgResult<()> {
        transaction.batch("SET LOCAL ROLE NONE").await?;
        let mut params = Params::default();
        let schema = params.push(self.binding.schema.as_str().to_string(), Type::TEXT);
        let run_at = params.push(run_at, Type::TIMESTAMPTZ);
        let sql = format!(
            "INSERT INTO {signals} AS s (schema, due_at) VALUES ({schema}, {run_at}) \
             ON CONFLICT (schema) DO UPDATE SET due_at = LEAST(s.due_at, EXCLUDED.due_at), \
               version = s.version + 1",
            signals = signals_table()
        );
        transaction.typed(&sql, &params).await?;
        Ok(())
    }

    /// Dead-letters jobs whose worker died during their last allowed attempt, so a claim never
    /// starts attempt `max_attempts + 1`. Rows another claimer holds are skipped, not waited for.
    async fn bury_exhausted(
        &self,
        transaction: &TenantTransaction,
        now: Timestamp,
    ) -> PgResult<()> {
        let mut params = Params::default();
        let now = params.push(now, Type::TIMESTAMPTZ);
        let table = &self.binding.tables.jobs;
        let sql = format!(
            "WITH lost AS (SELECT j.id FROM {table} j WHERE j.state = 'running' \
               AND j.lease_until < {now} AND j.attempts >= j.max_attempts FOR UPDATE SKIP LOCKED) \
             UPDATE {table} j SET state = 'dead', lease_owner = NULL, lease_until = NULL, \
               last_error = COALESCE(j.last_error, 'lease expired during the last attempt'), \
               updated_at = {now} \
             FROM lost WHERE j.id = lost.id"
        );
        transaction.typed(&sql, &params).await?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for PgJobQueue {
    #[instrument(skip_all, fields(tenant = %self.binding.schema, kind = %job.kind))]
    async fn enqueue(&self, job: NewJob) -> Result<Job> {
        let mut transaction = self.begin().await?;
        match self.enqueue_in(&transaction, job).await {
            Ok(job) => {
                transaction.finish("COMMIT").await?;
                Ok(job)
            }
            Err(error) => {
                let _ = transaction.finish("ROLLBACK").await;
                Err(error)
            }
        }
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, worker = %worker))]
    async fn claim(&self, worker: &str, lease: Duration, now: Timestamp) -> Result<Option<Job>> {
        let lease = chrono::Duration::from_std(lease)
            .map_err(|_| Error::invalid("lease duration out of range"))?;
        let until = now
            .checked_add_signed(lease)
            .ok_or_else(|| Error::invalid("lease ends out of range"))?;
        let mut transaction = self.begin().await?;
        if let Err(error) = self.bury_exhausted(&transaction, now).await {
            let _ = transaction.finish("ROLLBACK").await;
            return Err(error.into());
        }
        let mut params = Params::default();
        let now = params.push(now, Type::TIMESTAMPTZ);
        let worker = params.push(worker.to_string(), Type::TEXT);
        let until = params.push(until, Type::TIMESTAMPTZ);
        let table = &self.binding.tables.jobs;
        // SKIP LOCKED: a row another claimer is taking is passed over, never waited for; a row
        // taken (and committed) after this statement's snapshot is re-checked against the
        // WHERE clause when locked, and no longer matches.
        let sql = format!(
            "WITH next AS (SELECT j.id FROM {table} j \
               WHERE (j.state = 'queued' AND j.run_at <= {now}) \
                  OR (j.state = 'running' AND j.lease_until < {now}) \
               ORDER BY j.run_at, j.id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE {table} j SET state = 'running', lease_owner = {worker}, lease_until = {until}, \
               attempts = j.attempts + 1, updated_at = {now} \
             FROM next WHERE j.id = next.id RETURNING {JOB_COLUMNS}"
        );
        let rows = transaction.typed_then_commit(&sql, &params).await?;
        Ok(one_job(&rows)?)
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, job = %id))]
    async fn complete(&self, id: &str, worker: &str, result: serde_json::Value) -> Result<bool> {
        let mut params = Params::default();
        let id = params.push(id.to_string(), Type::TEXT);
        let worker = params.push(worker.to_string(), Type::TEXT);
        let result = params.push(result, Type::JSONB);
        let sql = format!(
            "UPDATE {} j SET state = 'done', result = {result}, lease_owner = NULL, \
               lease_until = NULL, updated_at = now() \
             WHERE j.id = {id} AND j.state = 'running' AND j.lease_owner = {worker} RETURNING j.id",
            self.binding.tables.jobs
        );
        Ok(!self.run(&sql, &params).await?.is_empty())
    }

    #[instrument(skip_all, fields(tenant = %self.binding.schema, job = %id))]
    async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<bool> {
        let mut params = Params::default();
        let id = params.push(id.to_string(), Type::TEXT);
        let worker = params.push(worker.to_string(), Type::TEXT);
        let error = params.push(error.to_string(), Type::TEXT);
        let retry_at = params.push(retry_at, Type::TIMESTAMPTZ);
        // A retry is refused once the attempts are spent, whatever the caller asked.
        let sql = format!(
            "UPDATE {} j SET \
               state = CASE WHEN {retry_at}::timestamptz IS NULL OR j.attempts >= j.max_attempts \
                 THEN 'dead' ELSE 'queued' END, \
               run_at = COALESCE({retry_at}::timestamptz, j.run_at), \
               last_error = {error}, lease_owner = NULL, lease_until = NULL, updated_at = now() \
             WHERE j.id = {id} AND j.state = 'running' AND j.lease_owner = {worker} RETURNING j.id",
            self.binding.tables.jobs
        );
        Ok(!self.run(&sql, &params).await?.is_empty())
    }

    async fn job(&self, id: &str) -> Result<Option<Job>> {
        let mut params = Params::default();
        let id = params.push(id.to_string(), Type::TEXT);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM {} j WHERE j.id = {id}",
            self.binding.tables.jobs
        );
        Ok(one_job(&self.run(&sql, &params).await?)?)
    }

    async fn list_jobs(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>> {
        let mut params = Params::default();
        let filter = match state {
            Some(state) => format!(
                "WHERE j.state = {}",
                params.push(state.as_str().to_string(), Type::TEXT)
            ),
            None => String::new(),
        };
        let limit = params.push(to_i64(limit), Type::INT8);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM {} j {filter} ORDER BY j.created_at, j.id LIMIT {limit}",
            self.binding.tables.jobs
        );
        self.run(&sql, &params)
            .await?
            .iter()
            .map(|row| Ok(job_from_row(row)?))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let table = &self.binding.tables.jobs;
        // Each minimum reads one partial index; LEAST skips the NULL of an empty one.
        let sql = format!(
            "SELECT LEAST(\
               (SELECT min(j.run_at) FROM {table} j WHERE j.state = 'queued'), \
               (SELECT min(j.lease_until) FROM {table} j WHERE j.state = 'running')) AS at"
        );
        let rows = self.run(&sql, &Params::default()).await?;
        Ok(rows
            .first()
            .map(|row| row.try_get::<_, Option<Timestamp>>("at"))
            .transpose()
            .map_err(PgError::from)?
            .flatten())
    }

    async fn counts(&self) -> Result<JobCounts> {
        let sql = format!(
            "SELECT j.state, count(*) AS n FROM {} j \
             WHERE j.state IN ('queued', 'running', 'dead') GROUP BY j.state",
            self.binding.tables.jobs
        );
        let mut counts = JobCounts::default();
        for row in self.run(&sql, &Params::default()).await? {
            let state: String = row.try_get("state").map_err(PgError::from)?;
            let count: i64 = row.try_get("n").map_err(PgError::from)?;
            counts.add(&state, u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }
}

/// The job signals of every tenant, one table per server in `public`: an enqueue raises its
/// tenant's row in its own transaction on the tenant's server, so every process sees every job.
/// `due` asks every server; `settle` goes to the server that reported the tenant (or, for a
/// tenant not seen yet, the one the directory places it on).
#[derive(Debug)]
pub(crate) struct PgJobSignals {
    servers: Vec<Arc<Server>>,
    /// Which server (index into `servers`) last reported each due tenant.
    reported: Mutex<HashMap<Schema, usize>>,
}

impl PgJobSignals {
    pub(crate) fn new(servers: Vec<Arc<Server>>) -> Self {
        PgJobSignals {
            servers,
            reported: Mutex::new(HashMap::new()),
        }
    }

    async fn due_on(server: &Server, now: Timestamp, limit: usize) -> PgResult<Vec<DueTenant>> {
        let client = server.pool.get().await?;
        let limit = to_i64(limit);
        let rows = client
            .query_typed(
                &format!(
                    "SELECT s.schema, s.version FROM {} s WHERE s.due_at <= $1 \
                     ORDER BY s.due_at, s.schema LIMIT $2",
                    signals_table()
                ),
                &[(&now, Type::TIMESTAMPTZ), (&limit, Type::INT8)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let schema: String = row.try_get("schema")?;
                let version: i64 = row.try_get("version")?;
                Ok(DueTenant {
                    schema: Schema::new(schema)
                        .map_err(|error| PgError::Decode(error.to_string()))?,
                    version: u64::try_from(version).unwrap_or(0),
                })
            })
            .collect()
    }

    /// The server holding `schema`'s signal row: the one whose `due` reported it (an entry
    /// used once, so a tenant moved since is looked up afresh next time), else the directory's.
    async fn server_of(&self, schema: &Schema) -> Result<Arc<Server>> {
        let reported = self.reported.lock().remove(schema);
        if let Some(index) = reported {
            return Ok(self.servers[index].clone());
        }
        let home = &self.servers[0];
        let record = crate::directory::lookup(&home.pool, schema).await?;
        let key = record.and_then(|record| record.server);
        Ok(self
            .servers
            .iter()
            .find(|server| match &key {
                None => server.home,
                Some(key) => server.key == *key,
            })
            .unwrap_or(home)
            .clone())
    }
}

#[async_trait]
impl JobSignals for PgJobSignals {
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTenant>> {
        let mut per_server = Vec::with_capacity(self.servers.len());
        for (index, server) in self.servers.iter().enumerate() {
            match Self::due_on(server, now, limit).await {
                Ok(due) => per_server.push((index, due.into_iter())),
                // The home server's failure is the caller's to handle; another server being
                // down only delays its own tenants' jobs.
                Err(error) if server.home => return Err(error.into()),
                Err(error) => warn!(server = %server.key, %error, "job signals unreadable"),
            }
        }
        // Taken in turn from each server, so one server's backlog cannot starve another's.
        let mut due = Vec::new();
        let mut reported = self.reported.lock();
        while due.len() < limit {
            let mut any = false;
            for (index, tenants) in per_server.iter_mut() {
                if let Some(tenant) = tenants.next() {
                    any = true;
                    reported.insert(tenant.schema.clone(), *index);
                    if due.len() < limit {
                        due.push(tenant);
                    }
                }
            }
            if !any {
                break;
            }
        }
        Ok(due)
    }

    async fn settle(
        &self,
        schema: &Schema,
        version: Option<u64>,
        next_due: Option<Timestamp>,
    ) -> Result<()> {
        let server = self.server_of(schema).await?;
        let client = server.pool.get().await.map_err(PgError::from)?;
        let table = signals_table();
        match version {
            Some(version) => {
                // Only the version read: an enqueue since bumped it, and its signal stands.
                let version = i64::try_from(version).unwrap_or(i64::MAX);
                client
                    .query_typed(
                        &format!(
                            "UPDATE {table} SET due_at = $3 WHERE schema = $1 AND version = $2"
                        ),
                        &[
                            (&schema.as_str(), Type::TEXT),
                            (&version, Type::INT8),
                            (&next_due, Type::TIMESTAMPTZ),
                        ],
                    )
                    .await
                    .map_err(PgError::from)?;
            }
            None => {
                let Some(at) = next_due else { return Ok(()) };
                client
                    .query_typed(
                        &format!("UPDATE {table} SET due_at = LEAST(due_at, $2) WHERE schema = $1"),
                        &[(&schema.as_str(), Type::TEXT), (&at, Type::TIMESTAMPTZ)],
                    )
                    .await
                    .map_err(PgError::from)?;
            }
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }
}
