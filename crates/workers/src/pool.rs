//! The worker pool: a fixed number of worker tasks visit tenants that have work. Which ones is
//! the store's job signals' answer (one query however many tenants there are), plus, where
//! those signals only see this process, idle tenants polled with a backoff and a global rate.
//! A visit claims and runs due jobs, retries failed ones with exponential backoff and
//! dead-letters them after `max_attempts`, then settles the tenant's signal to its next due time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::jobs::{Job, JobCounts, JobQueue, JobSignals};
use astrocyte_core::tenancy::{use_schema, Tenant};
use astrocyte_core::{Engine, Result, Schema, Store, Timestamp};
use async_trait::async_trait;
use chrono::Utc;
use rand::Rng;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, info_span, warn, Instrument};

use crate::handlers;

/// Tenants per `tenant_refresh_interval` of the wait between two reads of the tenant list when
/// the store's signals are shared.
const TENANTS_PER_REFRESH: usize = 1_000;

/// The wait before the tenant list is read again. Where idle tenants are polled, the list says
/// which to poll and is read every `base`. With shared signals (every process's jobs seen in
/// one query) it only serves to forget dropped tenants, which a visit also notices: the wait
/// grows with the tenants, so the rows read per second stay bounded (10,000 tenants: every
/// 10 `base`s) instead of growing with them.
fn refresh_interval(base: Duration, tenants: usize, poll_idle: bool) -> Duration {
    if poll_idle {
        return base;
    }
    let factor = u32::try_from(tenants / TENANTS_PER_REFRESH)
        .unwrap_or(u32::MAX)
        .max(1);
    base.saturating_mul(factor)
}

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
    /// How often the job signals are read, and the first wait before re-polling an idle
    /// tenant.
    pub poll_interval: Duration,
    /// How often the tenant list is re-read; with shared signals, once per this much per
    /// thousand tenants.
    pub tenant_refresh_interval: Duration,
    /// How long a claim is held before another worker may take the job over.
    pub lease: Duration,
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Worker tasks, i.e. tenants worked on at once, however many tenants there are.
    pub concurrency: usize,
    /// Longest wait between two polls of an idle tenant, where the store's signals do not see
    /// other processes' jobs (the embedded store); the wait doubles from `poll_interval`.
    pub idle_poll_max: Duration,
    /// Most idle-tenant polls per second over all tenants.
    pub idle_polls_per_second: u32,
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
            concurrency: 4,
            idle_poll_max: Duration::from_secs(60),
            idle_polls_per_second: 50,
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
    /// A tenant's queue as last counted (when visited, at most every [`COUNT_EVERY`]).
    fn counted(&self, tenant: &Schema, counts: JobCounts);
    /// A tenant was dropped: forget its counts.
    fn forgotten(&self, tenant: &Schema);
    /// A worker asked a tenant's queue for a job.
    fn polled(&self, tenant: &Schema);
}

/// How often a visited tenant's queue is recounted for the observer.
pub const COUNT_EVERY: Duration = Duration::from_secs(15);

/// Runs the worker tasks until shut down.
pub struct WorkerPool {
    engine: Arc<Engine>,
    tenants: Arc<dyn TenantSource>,
    config: WorkerConfig,
    observer: Option<Arc<dyn JobObserver>>,
}

/// One tenant handed to a worker task.
struct Visit {
    schema: Schema,
    /// The signal version that prompted the visit, if a signal did.
    version: Option<u64>,
    /// Whether to recount the queue for the observer.
    count: bool,
}

/// What a visit found.
struct Visited {
    schema: Schema,
    ran: usize,
    /// The tenant no longer exists.
    gone: bool,
}

/// The dispatcher's view of one known tenant.
struct TenantState {
    next_poll: Instant,
    backoff: Duration,
    in_flight: bool,
    counted_at: Option<Instant>,
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
        let concurrency = self.config.concurrency.max(1);
        let signals = self.engine.store().job_signals();
        // Shared signals see every process's jobs: idle tenants need no polling at all.
        let poll_idle = !signals.as_ref().is_some_and(|s| s.shared());
        let (visits, inbox) = mpsc::channel::<Visit>(concurrency);
        let inbox = Arc::new(Mutex::new(inbox));
        let (report, mut reports) = mpsc::unbounded_channel::<Visited>();
        let workers: Vec<JoinHandle<()>> = (0..concurrency)
            .map(|_| {
                tokio::spawn(worker(
                    self.engine.clone(),
                    signals.clone(),
                    self.config.clone(),
                    self.observer.clone(),
                    inbox.clone(),
                    report.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        drop(report);

        let mut known: HashMap<Schema, TenantState> = HashMap::new();
        let mut in_flight = 0usize;
        let mut refresh_at = Instant::now();
        let mut idle_budget = 0.0f64;
        let mut budget_at = Instant::now();
        while !*shutdown.borrow() {
            let now = Instant::now();
            if now >= refresh_at {
                self.refresh(&mut known, now).await;
                refresh_at = now
                    + refresh_interval(self.config.tenant_refresh_interval, known.len(), poll_idle);
            }
            while let Ok(done) = reports.try_recv() {
                in_flight -= 1;
                self.visited(&mut known, done);
            }
            let mut batch: Vec<Visit> = Vec::new();
            if let Some(signals) = &signals {
                let limit = in_flight + concurrency * 2;
                match signals.due(Utc::now(), limit).await {
                    Ok(due) => {
                        for tenant in due {
                            if in_flight + batch.len() >= concurrency {
                                break;
                            }
                            let state = known.entry(tenant.schema.clone()).or_insert_with(|| {
                                TenantState::new(now, self.config.poll_interval)
                            });
                            if state.in_flight {
                                continue;
                            }
                            state.in_flight = true;
                            batch.push(Visit {
                                count: state.count_due(),
                                schema: tenant.schema,
                                version: Some(tenant.version),
                            });
                        }
                    }
                    Err(error) => warn!(%error, "reading the job signals failed"),
                }
            }
            if poll_idle {
                let rate = f64::from(self.config.idle_polls_per_second.max(1));
                idle_budget = (idle_budget + budget_at.elapsed().as_secs_f64() * rate).min(rate);
                budget_at = Instant::now();
                let free = concurrency.saturating_sub(in_flight + batch.len());
                let mut idle: Vec<(&Schema, &TenantState)> = known
                    .iter()
                    .filter(|(_, s)| !s.in_flight && s.next_poll <= now)
                    .collect();
                idle.sort_by_key(|(_, s)| s.next_poll);
                let take = free.min(idle_budget.floor() as usize);
                let chosen: Vec<Schema> = idle
                    .into_iter()
                    .take(take)
                    .map(|(s, _)| s.clone())
                    .collect();
                idle_budget -= chosen.len() as f64;
                for schema in chosen {
                    if let Some(state) = known.get_mut(&schema) {
                        state.in_flight = true;
                        batch.push(Visit {
                            count: state.count_due(),
                            schema,
                            version: None,
                        });
                    }
                }
            }
            for visit in batch {
                // Never blocks: at most `concurrency` visits are out, the channel's capacity.
                if visits.send(visit).await.is_err() {
                    break;
                }
                in_flight += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                done = reports.recv() => {
                    // A worker is free: look for more work at once.
                    if let Some(done) = done {
                        in_flight -= 1;
                        self.visited(&mut known, done);
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
        drop(visits);
        for handle in workers {
            let _ = handle.await;
        }
    }

    /// Re-reads the tenant list: new tenants are polled soon, dropped ones forgotten.
    async fn refresh(&self, known: &mut HashMap<Schema, TenantState>, now: Instant) {
        let tenants = match self.tenants.tenants().await {
            Ok(tenants) => tenants,
            Err(error) => {
                warn!(%error, "listing tenants failed");
                return;
            }
        };
        let current: std::collections::HashSet<Schema> =
            tenants.into_iter().map(|t| t.schema).collect();
        known.retain(|schema, state| {
            // One being visited stays until its visit ends.
            let keep = current.contains(schema) || state.in_flight;
            if !keep {
                debug!(tenant = %schema, "forgetting a dropped tenant");
                if let Some(observer) = &self.observer {
                    observer.forgotten(schema);
                }
            }
            keep
        });
        for schema in current {
            known
                .entry(schema)
                .or_insert_with(|| TenantState::new(now, self.config.poll_interval));
        }
    }

    fn visited(&self, known: &mut HashMap<Schema, TenantState>, done: Visited) {
        if done.gone {
            if known.remove(&done.schema).is_some() {
                if let Some(observer) = &self.observer {
                    observer.forgotten(&done.schema);
                }
            }
            return;
        }
        if let Some(state) = known.get_mut(&done.schema) {
            state.in_flight = false;
            state.backoff = if done.ran > 0 {
                self.config.poll_interval
            } else {
                state
                    .backoff
                    .saturating_mul(2)
                    .min(self.config.idle_poll_max.max(self.config.poll_interval))
            };
            state.next_poll = Instant::now() + state.backoff;
        }
    }
}

impl TenantState {
    fn new(now: Instant, poll_interval: Duration) -> Self {
        TenantState {
            next_poll: now,
            backoff: poll_interval,
            in_flight: false,
            counted_at: None,
        }
    }

    /// Whether this visit recounts the queue (and notes that it does).
    fn count_due(&mut self) -> bool {
        let due = self.counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY);
        if due {
            self.counted_at = Some(Instant::now());
        }
        due
    }
}

/// Jobs one visit runs at most before handing the worker to another tenant.
const JOBS_PER_VISIT: usize = 32;

async fn worker(
    engine: Arc<Engine>,
    signals: Option<Arc<dyn JobSignals>>,
    config: WorkerConfig,
    observer: Option<Arc<dyn JobObserver>>,
    inbox: Arc<Mutex<mpsc::Receiver<Visit>>>,
    report: mpsc::UnboundedSender<Visited>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = inbox.lock().await.recv().await;
        let Some(job) = next else { return };
        let schema = job.schema.clone();
        let span = info_span!("tenant_worker", tenant = %schema);
        let done = use_schema(
            schema.clone(),
            visit(
                &engine,
                signals.as_deref(),
                &config,
                observer.as_deref(),
                job,
                &shutdown,
            )
            .instrument(span),
        )
        .await;
        if report.send(done).is_err() {
            return;
        }
    }
}

/// Runs the tenant's due jobs (up to [`JOBS_PER_VISIT`]), then settles its signal.
async fn visit(
    engine: &Engine,
    signals: Option<&dyn JobSignals>,
    config: &WorkerConfig,
    observer: Option<&dyn JobObserver>,
    job: Visit,
    shutdown: &watch::Receiver<bool>,
) -> Visited {
    let Visit {
        schema,
        version,
        count,
    } = job;
    let mut done = Visited {
        schema: schema.clone(),
        ran: 0,
        gone: false,
    };
    // Never `tenant()`: on the embedded store that would recreate a tenant dropped meanwhile.
    let queue = match engine.store().existing_tenant(&schema).await {
        Ok(Some(tenant)) => match tenant.jobs() {
            Some(queue) => queue,
            None => {
                debug!("this store keeps no job queue");
                return done;
            }
        },
        Ok(None) => {
            // Its signal, if any, is stale: cleared so it prompts no further visits.
            if let Some(signals) = signals {
                let _ = signals.settle(&schema, version, None).await;
            }
            done.gone = true;
            return done;
        }
        Err(error) => {
            warn!(%error, "opening the tenant failed");
            return done;
        }
    };
    while done.ran < JOBS_PER_VISIT && !*shutdown.borrow() {
        if let Some(observer) = observer {
            observer.polled(&schema);
        }
        match queue
            .claim(&config.worker_id, config.lease, Utc::now())
            .await
        {
            Ok(Some(job)) => {
                let outcome = execute(engine, &schema, queue.as_ref(), config, job).await;
                if let Some(observer) = observer {
                    observer.finished(outcome);
                }
                done.ran += 1;
            }
            Ok(None) => break,
            Err(error) => {
                warn!(%error, "claiming a job failed");
                break;
            }
        }
    }
    if let Some(signals) = signals {
        settle(signals, queue.as_ref(), &schema, version).await;
    }
    if let Some(observer) = observer {
        if count || done.ran > 0 {
            match queue.counts().await {
                Ok(counts) => observer.counted(&schema, counts),
                Err(error) => debug!(%error, "counting the queue failed"),
            }
        }
    }
    done
}

async fn settle(
    signals: &dyn JobSignals,
    queue: &dyn JobQueue,
    schema: &Schema,
    version: Option<u64>,
) {
    let next: Result<Option<Timestamp>> = queue.next_due().await;
    match next {
        Ok(next) => {
            if let Err(error) = signals.settle(schema, version, next).await {
                warn!(%error, "settling the job signal failed");
            }
        }
        // The signal stays as it is: the tenant is visited again.
        Err(error) => warn!(%error, "reading the next due job failed"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_shared_signals_the_tenant_list_is_read_less_often_as_tenants_grow() {
        let base = Duration::from_secs(2);
        assert_eq!(refresh_interval(base, 10_000, true), base, "polled tenants");
        assert_eq!(refresh_interval(base, 0, false), base);
        assert_eq!(refresh_interval(base, 1_999, false), base);
        assert_eq!(refresh_interval(base, 10_000, false), base * 10);
        assert_eq!(
            refresh_interval(base, usize::MAX, false),
            base.saturating_mul(u32::MAX)
        );
    }
}
