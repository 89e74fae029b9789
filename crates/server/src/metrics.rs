//! Prometheus metrics of the process: HTTP requests by route and status with latency
//! histograms, retain/recall counts and latencies per tenant, and store errors. One registry per
//! process, because one process serves one gateway; nothing here is pushed anywhere.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use astrocyte_core::jobs::JobCounts;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 100 µs to 10 s: recall on loopback sits well under a millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    operations: IntCounterVec,
    operation_latency: HistogramVec,
    store_errors: IntCounterVec,
    resident_memory: IntGauge,
    open_fds: IntGauge,
    jobs_finished: IntCounterVec,
    job_polls: IntCounter,
    jobs_by_state: IntGaugeVec,
    /// Each tenant's last counted queue, summed into `jobs_by_state` (no tenant label: bounded).
    queues: Mutex<HashMap<String, JobCounts>>,
}

/// The tenant label when per-tenant series are off (`metrics.per_tenant`): one series per
/// operation, however many tenants there are.
pub const ALL_TENANTS: &str = "*";

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("metric names are static and valid");
    registry
        .register(Box::new(gauge.clone()))
        .expect("each metric is registered once");
    gauge
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric names and labels are static and valid");
    registry
        .register(Box::new(counter.clone()))
        .expect("each metric is registered once");
    counter
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let histogram = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("metric names and labels are static and valid");
    registry
        .register(Box::new(histogram.clone()))
        .expect("each metric is registered once");
    histogram
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let metrics = Metrics {
            http_requests: counter(
                &registry,
                "astrocyte_http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            ),
            http_latency: histogram(
                &registry,
                "astrocyte_http_request_duration_seconds",
                "HTTP request latency by route and method",
                &["route", "method"],
            ),
            operations: counter(
                &registry,
                "astrocyte_operations_total",
                "Memory operations (retain, recall, reflect, forget, history) by tenant and outcome",
                &["operation", "tenant", "outcome"],
            ),
            operation_latency: histogram(
                &registry,
                "astrocyte_operation_duration_seconds",
                "Engine latency of memory operations by tenant",
                &["operation", "tenant"],
            ),
            store_errors: counter(
                &registry,
                "astrocyte_store_errors_total",
                "Store and provider failures answered as 5xx, by class",
                &["kind"],
            ),
            resident_memory: gauge(
                &registry,
                "process_resident_memory_bytes",
                "Resident memory of the process",
            ),
            open_fds: gauge(
                &registry,
                "process_open_fds",
                "Open file descriptors of the process",
            ),
            jobs_finished: counter(
                &registry,
                "astrocyte_jobs_finished_total",
                "Background job attempts by outcome (done, retry, dead)",
                &["outcome"],
            ),
            job_polls: {
                let polls = IntCounter::new(
                    "astrocyte_job_polls_total",
                    "Times a worker asked a tenant's queue for a job (idle tenants are polled less and less often)",
                )
                .expect("metric names are static and valid");
                registry
                    .register(Box::new(polls.clone()))
                    .expect("each metric is registered once");
                polls
            },
            jobs_by_state: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "astrocyte_jobs",
                        "Background jobs by state over every tenant (dead = dead letters), as the workers last counted them",
                    ),
                    &["state"],
                )
                .expect("metric names and labels are static and valid");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("each metric is registered once");
                gauge
            },
            queues: Mutex::new(HashMap::new()),
            registry,
        };
        // Pre-registered, so a dashboard sees 0 before the first failure.
        for kind in ["unavailable", "internal", "health"] {
            metrics.store_errors.with_label_values(&[kind]);
        }
        for outcome in ["done", "retry", "dead"] {
            metrics.jobs_finished.with_label_values(&[outcome]);
        }
        for state in ["queued", "running", "dead"] {
            metrics.jobs_by_state.with_label_values(&[state]);
        }
        let build = IntGaugeVec::new(
            Opts::new("astrocyte_build_info", "The running build (always 1)"),
            &["version"],
        )
        .expect("metric names and labels are static and valid");
        if metrics.registry.register(Box::new(build.clone())).is_ok() {
            build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        }
        metrics
    }

    /// Records one HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one engine operation for a tenant (or [`ALL_TENANTS`]); `outcome` is `ok`,
    /// `rejected` (the caller's input or rights: a 4xx), `cancelled` (the client went away
    /// mid-download) or `error` (ours or a dependency's).
    pub fn operation(&self, operation: &str, tenant: &str, outcome: &str, elapsed: Duration) {
        self.operations
            .with_label_values(&[operation, tenant, outcome])
            .inc();
        self.operation_latency
            .with_label_values(&[operation, tenant])
            .observe(elapsed.as_secs_f64());
    }

    /// Records the end of a job attempt.
    pub fn job_finished(&self, outcome: &str) {
        self.jobs_finished.with_label_values(&[outcome]).inc();
    }

    /// Records one poll of a tenant's queue.
    pub fn job_polled(&self) {
        self.job_polls.inc();
    }

    /// Records a tenant's queue sizes (`None`: the tenant is gone) and updates the totals.
    pub fn job_counts(&self, tenant: &str, counts: Option<JobCounts>) {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts {
            Some(counts) => queues.insert(tenant.to_string(), counts),
            None => queues.remove(tenant),
        };
        let total = queues.values().fold(JobCounts::default(), |mut sum, c| {
            sum.queued += c.queued;
            sum.running += c.running;
            sum.dead += c.dead;
            sum
        });
        drop(queues);
        for (state, count) in [
            ("queued", total.queued),
            ("running", total.running),
            ("dead", total.dead),
        ] {
            self.jobs_by_state
                .with_label_values(&[state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records a store or provider failure.
    pub fn store_error(&self, kind: &str) {
        self.store_errors.with_label_values(&[kind]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.sample_process();
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::error!(%error, "metrics encoding failed");
                String::new()
            })
    }
}

impl Metrics {
    /// Reads the process's memory and descriptors from /proc (Linux; elsewhere they stay 0).
    fn sample_process(&self) {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            if let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
            {
                self.resident_memory.set(pages * 4096);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}
