//! The worker pool: discovers tenants, runs one polling loop per tenant, retries failed jobs
//! with exponential backoff and dead-letters them after `max_attempts`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::jobs::{Job, JobCounts, JobQueue};
use astrocyte_core::tenancy::{use_schema, Tenant};
use astrocyte_core::{Engine, Result, Schema, Store};
use async_trait::async_trait;
use chrono::Utc;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::handlers;

/// Where the pool learns which tenants exist.
#[async_trait]
pub trait TenantSource: Send + Sync {
    /// Every tenant to serve now.
    async fn tenants(&self) -> Result<Vec<Tenant>>;
}

/// Tenants as the store lists them (every schema with data).
pub struct StoreTenants(pub Arc<dyn Store>);

#[async_trait]
impl TenantSource for StoreTenants {
    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.0.list_tenants().await
    }
}

/// Worker tunables.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identifies this process's workers in leases (unique per process).
    pub worker_id: String,
    /// Sleep when a tenant's queue is empty.
    pub poll_interval: Duration,
    /// How often the tenant list is re-read.
    pub tenant_refresh_interval: Duration,
    /// How long a claim is held before another worker may take the job over.
    pub lease: Duration,
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: format!("{}-{}", std::process::id(), uuid_like()),
            poll_interval: Duration::from_millis(200),
            tenant_refresh_interval: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

fn uuid_like() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Told what the workers do, for metrics: the composition root wires it to the exporter.
pub trait JobObserver: Send + Sync {
    /// A job attempt ended: `done`, `retry` or `dead`.
    fn finished(&self, outcome: &'static str);
    /// A tenant's queue as last counted (at most every [`COUNT_EVERY`] per tenant).
    fn counted(&self, tenant: &Schema, counts: JobCounts);
    /// A tenant's worker stopped (the tenant was dropped): forget its counts.
    fn forgotten(&self, tenant: &Schema);
}

/// How often a tenant loop recounts its queue for the observer.
pub const COUNT_EVERY: Duration = Duration::from_secs(15);

/// Runs per-tenant job loops until shut down.
pub struct WorkerPool {
    engine: Arc<Engine>,
    tenants: Arc<dyn TenantSource>,
    config: WorkerConfig,
    observer: Option<Arc<dyn JobObserver>>,
}

impl WorkerPool {
    /// A pool over an engine and a tenant source.
    pub fn new(engine: Arc<Engine>, tenants: Arc<dyn TenantSource>, config: WorkerConfig) -> Self {
        WorkerPool {
            engine,
            tenants,
            config,
            observer: None,
        }
    }

    /// Reports job outcomes and queue sizes to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs until `shutdown` turns true; in-flight jobs finish before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut loops: HashMap<Schema, JoinHandle<()>> = HashMap::new();
        loop {
            match self.tenants.tenants().await {
                Ok(tenants) => {
                    let current: Vec<Schema> = tenants.into_iter().map(|t| t.schema).collect();
                    loops.retain(|schema, handle| {
                        let keep = current.contains(schema) && !handle.is_finished();
                        if !keep {
                            // The tenant was dropped: stop polling it (its jobs went with it).
                            debug!(tenant = %schema, "stopping tenant worker");
                            handle.abort();
                            if let Some(observer) = &self.observer {
                                observer.forgotten(schema);
                            }
                        }
                        keep
                    });
                    for schema in current {
                        if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(schema)
                        {
                            let schema = slot.key().clone();
                            info!(tenant = %schema, "starting tenant worker");
                            slot.insert(tokio::spawn(tenant_loop(
                                self.engine.clone(),
                                schema,
                                self.config.clone(),
                                self.observer.clone(),
                                shutdown.clone(),
                            )));
                        }
                    }
                }
                Err(error) => warn!(%error, "listing tenants failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.tenant_refresh_interval) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        for (_, handle) in loops {
            let _ = handle.await;
        }
    }
}

async fn tenant_loop(
    engine: Arc<Engine>,
    schema: Schema,
    config: WorkerConfig,
    observer: Option<Arc<dyn JobObserver>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = info_span!("tenant_worker", tenant = %schema);
    use_schema(schema.clone(), async move {
        let queue = match engine.store().tenant(&schema).await.map(|t| t.jobs()) {
            Ok(Some(queue)) => queue,
            Ok(None) => {
                debug!("this store keeps no job queue");
                return;
            }
            Err(error) => {
                warn!(%error, "opening the tenant failed; retrying at the next refresh");
                return;
            }
        };
        let mut counted_at: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(observer) = &observer {
                if counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY) {
                    counted_at = Some(std::time::Instant::now());
                    match queue.counts().await {
                        Ok(counts) => observer.counted(&schema, counts),
                        Err(error) => debug!(%error, "counting the queue failed"),
                    }
                }
            }
            let claimed = queue
                .claim(&config.worker_id, config.lease, Utc::now())
                .await;
            match claimed {
                Ok(Some(job)) => {
                    let outcome = execute(&engine, &schema, queue.as_ref(), &config, job).await;
                    if let Some(observer) = &observer {
                        observer.finished(outcome);
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    warn!(%error, "claiming a job failed");
                    tokio::time::sleep(config.poll_interval).await;
                }
            }
        }
    })
    .instrument(span)
    .await
}

async fn execute(
    engine: &Engine,
    schema: &Schema,
    queue: &dyn JobQueue,
    config: &WorkerConfig,
    job: Job,
) -> &'static str {
    let span = info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
    async {
        match handlers::run(engine, schema, &job).await {
            Ok(result) => {
                if let Err(error) = queue.complete(&job.id, &config.worker_id, result).await {
                    warn!(%error, "recording job completion failed");
                }
                "done"
            }
            Err(error) => {
                let retry_at = (job.attempts < job.max_attempts).then(|| {
                    let factor = 2u32.saturating_pow(job.attempts.saturating_sub(1).min(16));
                    let delay = config
                        .base_backoff
                        .saturating_mul(factor)
                        .min(config.max_backoff);
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()
                });
                warn!(%error, dead = retry_at.is_none(), "job failed");
                if let Err(error) = queue
                    .fail(&job.id, &config.worker_id, &error.to_string(), retry_at)
                    .await
                {
                    warn!(%error, "recording job failure failed");
                }
                if retry_at.is_some() {
                    "retry"
                } else {
                    "dead"
                }
            }
        }
    }
    .instrument(span)
    .await
}
