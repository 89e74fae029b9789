//! The per-tenant background job queue contract. Stores implement it next to the tenant's
//! memories (a jobs table in the tenant's schema or file) so jobs are isolated like data and
//! survive restarts; the worker runtime that drains it is storage-agnostic.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Timestamp;

/// Job kinds shared by the transports that enqueue jobs and the workers that run them.
pub mod kinds {
    /// An asynchronous retain; payload: a `RetainRequest`.
    pub const RETAIN: &str = "retain";
    /// Re-embedding a bank with the current embedder; payload: `{"bank_id"}`.
    pub const REEMBED: &str = "reembed";
    /// TTL lifecycle of a bank; payload: `{"bank_id", "archive_after_days"?, "delete_after_days"?, "exempt_tags"?}`.
    pub const LIFECYCLE: &str = "lifecycle";
    /// Duplicate consolidation of a bank; payload: `{"bank_id", "threshold"?}`.
    pub const CONSOLIDATE: &str = "consolidate";
    /// Kinds an administrator may queue directly (retain goes through the retain endpoint).
    pub const MAINTENANCE: [&str; 3] = [REEMBED, LIFECYCLE, CONSOLIDATE];
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (possibly until `run_at`, after a failed attempt).
    Queued,
    /// Claimed by a worker whose lease has not expired.
    Running,
    /// Finished successfully.
    Done,
    /// Failed `max_attempts` times; kept for inspection, never retried automatically.
    Dead,
}

impl JobState {
    /// The state's wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What to do (`retain`, `reembed`, `lifecycle`, `consolidate`).
    pub kind: String,
    /// The job's input.
    pub payload: serde_json::Value,
    /// Enqueueing twice with the same key returns the first job instead of a second one.
    pub idempotency_key: Option<String>,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: u32,
    /// Earliest start.
    pub run_at: Timestamp,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Unique id.
    pub id: String,
    /// What to do.
    pub kind: String,
    /// The job's input.
    pub payload: serde_json::Value,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The result of a done job.
    pub result: Option<serde_json::Value>,
    /// The idempotency key it was enqueued with.
    pub idempotency_key: Option<String>,
    /// Earliest next start.
    pub run_at: Timestamp,
    /// Who holds the lease while running.
    pub lease_owner: Option<String>,
    /// When the lease expires; an expired lease means the worker died and the job is reclaimable.
    pub lease_until: Option<Timestamp>,
    /// Enqueue time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One tenant's job queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job, or returns the existing one with the same idempotency key.
    async fn enqueue(&self, job: NewJob) -> Result<Job>;

    /// Atomically claims one runnable job (queued and due, or running with an expired lease)
    /// for `worker` with a lease of `lease`, incrementing its attempts. Two workers — even in
    /// two processes — never hold the same job.
    async fn claim(&self, worker: &str, lease: Duration, now: Timestamp) -> Result<Option<Job>>;

    /// Marks a job done, if `worker` still holds it; false when the lease was lost.
    async fn complete(&self, id: &str, worker: &str, result: serde_json::Value) -> Result<bool>;

    /// Records a failure: back to queued until `retry_at`, or dead when `retry_at` is `None`.
    async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<bool>;

    /// A job by id.
    async fn job(&self, id: &str) -> Result<Option<Job>>;

    /// Jobs in a state, oldest first, at most `limit`.
    async fn list_jobs(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>>;
}
