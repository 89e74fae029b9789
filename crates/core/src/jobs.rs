//! The per-tenant background job queue contract. Stores implement it next to the tenant's
//! memories (a jobs table in the tenant's schema or file) so jobs are isolated like data and
//! survive restarts; the worker runtime that drains it is storage-agnostic.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{BankId, RetainRequest, Timestamp};

/// The kinds of job, their payloads, and the one decoding both the server (when queueing) and
/// the workers (when running) use, so a bad payload is refused at once, never in a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum JobSpec {
    /// An asynchronous retain.
    Retain(RetainRequest),
    /// Re-embedding a bank with the current embedder.
    Reembed(ReembedJob),
    /// TTL lifecycle of a bank.
    Lifecycle(LifecycleJob),
    /// Duplicate consolidation of a bank.
    Consolidate(ConsolidateJob),
    /// Distilling a bank's memories into observations (needs an LLM).
    Observe(ObserveJob),
}

/// Re-embeds every visible memory of a bank with the engine's current embedder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReembedJob {
    /// The bank.
    pub bank_id: String,
}

/// Archives (soft-forgets) or deletes (purges) memories older than a threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleJob {
    /// The bank.
    pub bank_id: String,
    /// Soft-forget memories whose effective time is older than this many days.
    #[serde(deserialize_with = "whole_number")]
    pub archive_after_days: Option<i64>,
    /// Purge memories older than this many days.
    #[serde(deserialize_with = "whole_number")]
    pub delete_after_days: Option<i64>,
    /// Memories with any of these tags are never touched.
    pub exempt_tags: Vec<String>,
}

/// Soft-forgets newer near-duplicates of older memories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidateJob {
    /// The bank.
    pub bank_id: String,
    /// Cosine similarity at or above which two memories are duplicates (default: the
    /// engine's dedup threshold).
    pub threshold: Option<f32>,
}

/// Distils the bank's newest memories not yet cited by an observation into observation
/// memories (`fact_type` `observation`) that name their sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveJob {
    /// The bank.
    pub bank_id: String,
    /// Most source memories read in one run (default [`ObserveJob::DEFAULT_MAX_SOURCES`]).
    pub max_sources: Option<usize>,
}

impl ObserveJob {
    /// Source memories read per run when the job names no bound.
    pub const DEFAULT_MAX_SOURCES: usize = 200;
    /// The largest bound a job may ask for: every source goes through the LLM.
    pub const MAX_SOURCES: usize = 5_000;
}

/// The longest lifecycle threshold, in days (beyond any date a store holds).
pub const MAX_DAYS: i64 = 1_000_000;

/// A whole number given as an integer or as a float without a fraction (`30.0`), as JSON allows.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
            _ => Err(serde::de::Error::custom(format!(
                "{n} is not a whole number"
            ))),
        },
    }
}

impl JobSpec {
    /// Kinds an administrator may queue directly (retain goes through the retain endpoint).
    pub const MAINTENANCE: [&'static str; 4] = ["reembed", "lifecycle", "consolidate", "observe"];

    /// The kind's wire name, as stored beside the payload.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Retain(_) => "retain",
            JobSpec::Reembed(_) => "reembed",
            JobSpec::Lifecycle(_) => "lifecycle",
            JobSpec::Consolidate(_) => "consolidate",
            JobSpec::Observe(_) => "observe",
        }
    }

    /// The bank the job works on.
    pub fn bank_id(&self) -> &str {
        match self {
            JobSpec::Retain(r) => &r.bank_id,
            JobSpec::Reembed(j) => &j.bank_id,
            JobSpec::Lifecycle(j) => &j.bank_id,
            JobSpec::Consolidate(j) => &j.bank_id,
            JobSpec::Observe(j) => &j.bank_id,
        }
    }

    /// Decodes a kind and its payload, then validates them; the error names what is wrong.
    pub fn decode(kind: &str, payload: serde_json::Value) -> Result<JobSpec> {
        let tagged = serde_json::json!({ "kind": kind, "payload": payload });
        let spec: JobSpec = serde_json::from_value(tagged).map_err(|e| {
            if kind == "retain" || JobSpec::MAINTENANCE.contains(&kind) {
                Error::invalid(format!("malformed {kind} job payload: {e}"))
            } else {
                Error::invalid(format!(
                    "unknown job kind {kind:?} (expected {})",
                    JobSpec::expected_kinds()
                ))
            }
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// A stored job's spec.
    pub fn of(job: &Job) -> Result<JobSpec> {
        JobSpec::decode(&job.kind, job.payload.clone())
    }

    /// Checks what can be checked before the job runs.
    pub fn validate(&self) -> Result<()> {
        BankId::new(self.bank_id())?;
        let days = |name: &str, value: Option<i64>| match value {
            Some(d) if !(0..=MAX_DAYS).contains(&d) => Err(Error::invalid(format!(
                "{name} must be from 0 to {MAX_DAYS}, not {d}"
            ))),
            _ => Ok(()),
        };
        match self {
            JobSpec::Lifecycle(j) => {
                days("archive_after_days", j.archive_after_days)?;
                days("delete_after_days", j.delete_after_days)?;
                if j.archive_after_days.is_none() && j.delete_after_days.is_none() {
                    return Err(Error::invalid(
                        "a lifecycle job needs archive_after_days or delete_after_days",
                    ));
                }
                Ok(())
            }
            JobSpec::Consolidate(ConsolidateJob {
                threshold: Some(t), ..
            }) if !(t.is_finite() && *t > 0.0 && *t <= 1.0) => Err(Error::invalid(format!(
                "threshold must be in (0, 1], not {t}"
            ))),
            JobSpec::Observe(ObserveJob {
                max_sources: Some(n),
                ..
            }) if !(1..=ObserveJob::MAX_SOURCES).contains(n) => Err(Error::invalid(format!(
                "max_sources must be from 1 to {}, not {n}",
                ObserveJob::MAX_SOURCES
            ))),
            _ => Ok(()),
        }
    }

    /// The maintenance kinds in words, for error messages: `a, b, c or d`.
    pub fn expected_kinds() -> String {
        let kinds = JobSpec::MAINTENANCE;
        match kinds.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => kinds.join(""),
        }
    }

    /// The job to enqueue, due now.
    pub fn into_new_job(self, idempotency_key: Option<String>) -> Result<NewJob> {
        crate::pipeline::validate::check_idempotency_key(idempotency_key.as_deref())?;
        let kind = self.kind().to_string();
        let payload = match serde_json::to_value(&self)
            .map_err(|e| Error::Internal(format!("encoding a {kind} job: {e}")))?
        {
            serde_json::Value::Object(mut tagged) => {
                tagged.remove("payload").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        };
        Ok(NewJob {
            kind,
            payload,
            idempotency_key,
            max_attempts: 5,
            run_at: chrono::Utc::now(),
        })
    }
}

/// The tenant setting that places a bank under legal hold: lifecycle jobs never touch a held
/// bank. One type, so the server that places holds and the workers that honour them agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHoldKey(String);

impl LegalHoldKey {
    /// The hold of `bank`.
    pub fn of(bank: &BankId) -> Self {
        LegalHoldKey(format!("legal_hold:{bank}"))
    }

    /// The setting key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    /// What to do (`retain`, `reembed`, `lifecycle`, `consolidate`, `observe`).
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

    /// How many jobs wait, run, and are dead-lettered.
    async fn counts(&self) -> Result<JobCounts>;

    /// When a claim could next find work: the earliest queued job's `run_at` or running
    /// job's lease end; `None` when nothing is queued or running.
    async fn next_due(&self) -> Result<Option<Timestamp>>;
}

/// A tenant that may have a job due, with the version of its signal (see [`JobSignals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTenant {
    /// The tenant.
    pub schema: crate::Schema,
    /// The signal's version when read; [`JobSignals::settle`] only applies to this version.
    pub version: u64,
}

/// Which tenants have work, kept beside the queues so workers need not poll every tenant.
/// Enqueueing raises a tenant's signal (and its version) in the same step as the job; a worker
/// that found nothing more to claim settles it to the tenant's next due time. A settle is
/// conditional on the version it read, so a job enqueued meanwhile is never hidden.
#[async_trait]
pub trait JobSignals: Send + Sync {
    /// Tenants whose signal is due by `now`, earliest first, at most `limit`.
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTenant>>;

    /// Records the tenant's next due time after a visit. With `version`, replaces the signal
    /// (`None` clears it) unless it changed since; without (a visit not prompted by the signal),
    /// only brings it earlier.
    async fn settle(
        &self,
        schema: &crate::Schema,
        version: Option<u64>,
        next_due: Option<Timestamp>,
    ) -> Result<()>;

    /// Whether every enqueue into this store, from any process, raises a signal. When false
    /// (signals seen by this process only), workers also poll idle tenants now and then.
    fn shared(&self) -> bool;
}

/// The size of a queue by state (finished jobs are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Waiting to run (including retries not yet due).
    pub queued: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Failed for good (dead letters).
    pub dead: u64,
}

impl JobCounts {
    /// Adds a count of `state`.
    pub fn add(&mut self, state: &str, count: u64) {
        match state {
            "queued" => self.queued += count,
            "running" => self.running += count,
            "dead" => self.dead += count,
            _ => {}
        }
    }
}
