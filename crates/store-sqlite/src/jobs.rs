//! [`SqliteJobQueue`]: one tenant's background jobs in the `jobs` table of its own database
//! file, written through the tenant's writer connection. Every state change is one
//! `BEGIN IMMEDIATE` transaction, so claimers in several processes sharing the file never hold
//! the same job. What a job does and when to retry it are the worker runtime's business.

use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::jobs::{Job, JobCounts, JobQueue, JobState, NewJob};
use astrocyte_core::{Error, Timestamp};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tracing::instrument;

use crate::error::{StoreError, StoreResult};
use crate::inner::{run_blocking, TenantInner};
use crate::rows::{from_micros, to_micros};
use crate::signals::LocalSignals;

const JOB_COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, last_error, result, \
     idempotency_key, run_at, lease_owner, lease_until, created_at, updated_at";

/// One tenant's job queue (what `TenantStore::jobs` returns). Holding it keeps the tenant's
/// database open, like any other handle.
pub(crate) struct SqliteJobQueue {
    inner: Arc<TenantInner>,
    signals: Arc<LocalSignals>,
}

impl SqliteJobQueue {
    pub(crate) fn new(inner: Arc<TenantInner>, signals: Arc<LocalSignals>) -> Self {
        SqliteJobQueue { inner, signals }
    }
}

/// A job row as stored, before its JSON, state and timestamps are decoded (outside the
/// driver's callback, so decoding errors are ours).
struct RawJob {
    id: String,
    kind: String,
    payload: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    last_error: Option<String>,
    result: Option<String>,
    idempotency_key: Option<String>,
    run_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl RawJob {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawJob {
            id: row.get(0)?,
            kind: row.get(1)?,
            payload: row.get(2)?,
            state: row.get(3)?,
            attempts: row.get(4)?,
            max_attempts: row.get(5)?,
            last_error: row.get(6)?,
            result: row.get(7)?,
            idempotency_key: row.get(8)?,
            run_at: row.get(9)?,
            lease_owner: row.get(10)?,
            lease_until: row.get(11)?,
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
        })
    }

    fn into_job(self) -> StoreResult<Job> {
        let count = |value: i64, name: &str| {
            u32::try_from(value)
                .map_err(|_| StoreError::CorruptRow(format!("job {name} {value} is out of range")))
        };
        Ok(Job {
            state: state_from(&self.state)?,
            attempts: count(self.attempts, "attempts")?,
            max_attempts: count(self.max_attempts, "max_attempts")?,
            payload: serde_json::from_str(&self.payload)?,
            result: self
                .result
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            run_at: from_micros(self.run_at)?,
            lease_until: self.lease_until.map(from_micros).transpose()?,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
            id: self.id,
            kind: self.kind,
            last_error: self.last_error,
            idempotency_key: self.idempotency_key,
            lease_owner: self.lease_owner,
        })
    }
}

fn state_from(text: &str) -> StoreResult<JobState> {
    Ok(match text {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        other => {
            return Err(StoreError::CorruptRow(format!(
                "unknown job state {other:?}"
            )))
        }
    })
}

/// At most one job matching `sql`'s parameters, decoded.
fn one_job(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<Job>> {
    let raw = conn
        .prepare_cached(sql)?
        .query_row(params, RawJob::from_row)
        .optional()?;
    raw.map(RawJob::into_job).transpose()
}

fn now_micros() -> i64 {
    to_micros(chrono::Utc::now())
}

impl TenantInner {
    fn enqueue_job(&self, job: NewJob) -> StoreResult<Job> {
        if job.max_attempts == 0 {
            return Err(Error::invalid("max_attempts must be at least 1").into());
        }
        let payload = serde_json::to_string(&job.payload)?;
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Inside the write transaction nobody else can insert the same key meanwhile.
            if let Some(key) = &job.idempotency_key {
                let existing = one_job(
                    &tx,
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?1"),
                    [key],
                )?;
                if let Some(existing) = existing {
                    tx.commit()?;
                    return Ok(existing);
                }
            }
            let now = now_micros();
            let inserted = one_job(
                &tx,
                &format!(
                    "INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, idempotency_key, run_at, created_at, updated_at)
                     VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?5, ?6, ?7, ?7) RETURNING {JOB_COLUMNS}"
                ),
                params![
                    uuid::Uuid::now_v7().to_string(),
                    job.kind,
                    payload,
                    i64::from(job.max_attempts),
                    job.idempotency_key,
                    to_micros(job.run_at),
                    now,
                ],
            )?
            .ok_or_else(|| StoreError::CorruptRow("job insert returned no row".into()))?;
            tx.commit()?;
            Ok(inserted)
        })
    }

    fn claim_job(&self, worker: &str, lease: Duration, now: Timestamp) -> StoreResult<Option<Job>> {
        let until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .ok_or_else(|| Error::invalid("lease duration out of range"))?;
        let now = to_micros(now);
        self.with_writer(|conn| {
            // IMMEDIATE takes the file's write lock before reading, so another process cannot
            // pick the same row between this read and the update.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A worker that died during the last allowed attempt leaves a running job with an
            // expired lease: it is dead, never started an extra time.
            tx.prepare_cached(
                "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL,
                     last_error = COALESCE(last_error, 'lease expired during the last attempt'),
                     updated_at = ?1
                 WHERE state = 'running' AND lease_until < ?1 AND attempts >= max_attempts",
            )?
            .execute([now])?;
            let claimed = one_job(
                &tx,
                &format!(
                    "UPDATE jobs SET state = 'running', lease_owner = ?2, lease_until = ?3,
                         attempts = attempts + 1, updated_at = ?1
                     WHERE id = (
                         SELECT id FROM (
                             SELECT id, run_at FROM (SELECT id, run_at FROM jobs
                                 WHERE state = 'queued' AND run_at <= ?1 ORDER BY run_at, id LIMIT 1)
                             UNION ALL
                             SELECT id, run_at FROM (SELECT id, run_at FROM jobs
                                 WHERE state = 'running' AND lease_until < ?1 ORDER BY run_at, id LIMIT 1)
                         ) ORDER BY run_at, id LIMIT 1)
                     RETURNING {JOB_COLUMNS}"
                ),
                params![now, worker, to_micros(until)],
            )?;
            tx.commit()?;
            Ok(claimed)
        })
    }

    fn complete_job(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
    ) -> StoreResult<bool> {
        let result = serde_json::to_string(result)?;
        self.with_writer(|conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'done', result = ?3, lease_owner = NULL, lease_until = NULL,
                         updated_at = ?4
                     WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                )?
                .execute(params![id, worker, result, now_micros()])?;
            Ok(changed > 0)
        })
    }

    fn fail_job(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        self.with_writer(|conn| {
            // A retry is refused once the attempts are spent, whatever the caller asked.
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET
                         state = CASE WHEN ?4 IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                         run_at = COALESCE(?4, run_at),
                         last_error = ?3, lease_owner = NULL, lease_until = NULL, updated_at = ?5
                     WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                )?
                .execute(params![id, worker, error, retry_at.map(to_micros), now_micros()])?;
            Ok(changed > 0)
        })
    }

    fn job(&self, id: &str) -> StoreResult<Option<Job>> {
        let reader = self.readers.get()?;
        one_job(
            &reader,
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
        )
    }

    fn list_jobs(&self, state: Option<JobState>, limit: usize) -> StoreResult<Vec<Job>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let reader = self.readers.get()?;
        let raw: Vec<RawJob> = match state {
            Some(state) => reader
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY created_at, id LIMIT ?2"
                ))?
                .query_map(params![state.as_str(), limit], RawJob::from_row)?
                .collect::<Result<_, _>>()?,
            None => reader
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at, id LIMIT ?1"
                ))?
                .query_map([limit], RawJob::from_row)?
                .collect::<Result<_, _>>()?,
        };
        raw.into_iter().map(RawJob::into_job).collect()
    }

    fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        let reader = self.readers.get()?;
        // Two index-backed minimums rather than one scan over both states.
        let next: Option<i64> = reader
            .prepare_cached(
                "SELECT MIN(at) FROM (
                     SELECT MIN(run_at) AS at FROM jobs WHERE state = 'queued'
                     UNION ALL
                     SELECT MIN(lease_until) AS at FROM jobs WHERE state = 'running')",
            )?
            .query_row([], |row| row.get(0))?;
        next.map(from_micros).transpose()
    }

    fn job_counts(&self) -> StoreResult<JobCounts> {
        let reader = self.readers.get()?;
        let mut statement = reader.prepare_cached(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running', 'dead') GROUP BY state",
        )?;
        let rows: Vec<(String, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut counts = JobCounts::default();
        for (state, count) in rows {
            counts.add(&state, u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }
}

#[async_trait]
impl JobQueue for SqliteJobQueue {
    #[instrument(skip_all, fields(tenant = %self.inner.schema, kind = %job.kind))]
    async fn enqueue(&self, job: NewJob) -> astrocyte_core::Result<Job> {
        let job = run_blocking(&self.inner, move |inner| inner.enqueue_job(job)).await?;
        if job.state == JobState::Queued {
            self.signals.raise(&self.inner.schema, job.run_at);
        }
        Ok(job)
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, worker = %worker))]
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        now: Timestamp,
    ) -> astrocyte_core::Result<Option<Job>> {
        let worker = worker.to_string();
        run_blocking(&self.inner, move |inner| {
            inner.claim_job(&worker, lease, now)
        })
        .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, job = %id))]
    async fn complete(
        &self,
        id: &str,
        worker: &str,
        result: serde_json::Value,
    ) -> astrocyte_core::Result<bool> {
        let (id, worker) = (id.to_string(), worker.to_string());
        run_blocking(&self.inner, move |inner| {
            inner.complete_job(&id, &worker, &result)
        })
        .await
    }

    #[instrument(skip_all, fields(tenant = %self.inner.schema, job = %id))]
    async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> astrocyte_core::Result<bool> {
        let (id, worker, error) = (id.to_string(), worker.to_string(), error.to_string());
        run_blocking(&self.inner, move |inner| {
            inner.fail_job(&id, &worker, &error, retry_at)
        })
        .await
    }

    async fn job(&self, id: &str) -> astrocyte_core::Result<Option<Job>> {
        let id = id.to_string();
        run_blocking(&self.inner, move |inner| inner.job(&id)).await
    }

    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> astrocyte_core::Result<Vec<Job>> {
        run_blocking(&self.inner, move |inner| inner.list_jobs(state, limit)).await
    }

    async fn counts(&self) -> astrocyte_core::Result<JobCounts> {
        run_blocking(&self.inner, |inner| inner.job_counts()).await
    }

    async fn next_due(&self) -> astrocyte_core::Result<Option<Timestamp>> {
        run_blocking(&self.inner, |inner| inner.next_due()).await
    }
}
