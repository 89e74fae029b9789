//! The worker pool over a real embedded store: jobs run, failures retry with backoff and are
//! dead-lettered, an expired lease is taken over, tenants created after start are served and
//! dropped ones forgotten (and never recreated), and with thousands of tenants the pool keeps a
//! bounded number of tasks and polls while a job queued anywhere still runs promptly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astrocyte_core::jobs::{JobCounts, JobQueue, JobSpec, JobState, NewJob};
use astrocyte_core::{Engine, EngineConfig, RetainRequest, Schema, Store};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use astrocyte_workers::{JobObserver, StoreTenants, WorkerConfig, WorkerPool};
use chrono::Utc;
use tokio::sync::watch;

fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let store = SqliteStore::open(dir, SqliteOptions::default()).expect("store opens");
    Arc::new(Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ))
}

fn config() -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(20),
        tenant_refresh_interval: Duration::from_millis(100),
        base_backoff: Duration::from_millis(150),
        max_backoff: Duration::from_secs(2),
        lease: Duration::from_secs(30),
        ..WorkerConfig::default()
    }
}

#[derive(Default)]
struct Seen {
    polls: AtomicUsize,
    outcomes: Mutex<Vec<&'static str>>,
    forgotten: Mutex<Vec<Schema>>,
}

impl JobObserver for Seen {
    fn finished(&self, outcome: &'static str) {
        self.outcomes.lock().expect("lock").push(outcome);
    }
    fn counted(&self, _tenant: &Schema, _counts: JobCounts) {}
    fn forgotten(&self, tenant: &Schema) {
        self.forgotten.lock().expect("lock").push(tenant.clone());
    }
    fn polled(&self, _tenant: &Schema) {
        self.polls.fetch_add(1, Ordering::Relaxed);
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Seen>,
}

impl Running {
    fn start(engine: &Arc<Engine>, config: WorkerConfig) -> Running {
        let (stop, stopped) = watch::channel(false);
        let seen = Arc::new(Seen::default());
        let pool = WorkerPool::new(
            engine.clone(),
            Arc::new(StoreTenants(engine.store().clone())),
            config,
        )
        .with_observer(seen.clone());
        Running {
            stop,
            task: tokio::spawn(pool.run(stopped)),
            seen,
        }
    }

    async fn stop(self) -> Arc<Seen> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the pool stops")
            .expect("the pool did not panic");
        self.seen
    }
}

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("schema")
}

async fn queue(engine: &Engine, schema: &Schema) -> Arc<dyn JobQueue> {
    engine
        .store()
        .tenant(schema)
        .await
        .expect("tenant")
        .jobs()
        .expect("a queue")
}

fn retain_job(text: &str) -> NewJob {
    JobSpec::Retain(RetainRequest {
        bank_id: "b".into(),
        content: text.into(),
        ..Default::default()
    })
    .into_new_job(None)
    .expect("job")
}

/// Waits until the job reaches `state`, failing after `within`.
async fn wait_for(queue: &dyn JobQueue, id: &str, state: JobState, within: Duration) {
    let started = Instant::now();
    loop {
        let job = queue.job(id).await.expect("job").expect("exists");
        if job.state == state {
            return;
        }
        assert!(
            started.elapsed() < within,
            "job {id} still {:?} after {within:?}",
            job.state
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_and_failures_retry_with_backoff_until_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let tenant = schema("acme");
    let queue = queue(&engine, &tenant).await;
    let running = Running::start(&engine, config());
    let good = queue
        .enqueue(retain_job("Alice moved to Lisbon"))
        .await
        .expect("enqueue");
    // An unknown kind fails in the worker on every attempt.
    let bad = queue
        .enqueue(NewJob {
            kind: "no_such_kind".into(),
            payload: serde_json::json!({}),
            idempotency_key: None,
            max_attempts: 3,
            run_at: Utc::now(),
        })
        .await
        .expect("enqueue");
    wait_for(
        queue.as_ref(),
        &good.id,
        JobState::Done,
        Duration::from_secs(10),
    )
    .await;
    wait_for(
        queue.as_ref(),
        &bad.id,
        JobState::Dead,
        Duration::from_secs(10),
    )
    .await;
    let dead = queue.job(&bad.id).await.expect("job").expect("exists");
    assert_eq!(dead.attempts, 3, "every allowed attempt was made, no more");
    assert!(dead.last_error.is_some());
    // Two retries waited 150 ms and 300 ms: the job cannot have died sooner.
    let lived = dead.updated_at - dead.created_at;
    assert!(
        lived >= chrono::Duration::milliseconds(450),
        "retries waited their backoff: died after {lived}"
    );
    let seen = running.stop().await;
    let outcomes = seen.outcomes.lock().expect("lock").clone();
    assert_eq!(outcomes.iter().filter(|o| **o == "done").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "retry").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| **o == "dead").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_taken_over_when_its_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let tenant = schema("leased");
    let queue = queue(&engine, &tenant).await;
    let job = queue
        .enqueue(retain_job("Bob fixed the bike"))
        .await
        .expect("enqueue");
    // Another process claimed it and died.
    let claimed = queue
        .claim("ghost", Duration::from_millis(600), Utc::now())
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.id, job.id);
    let started = Instant::now();
    let running = Running::start(&engine, config());
    wait_for(
        queue.as_ref(),
        &job.id,
        JobState::Done,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not taken before the lease ran out"
    );
    let done = queue.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(done.attempts, 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tenants_are_served_without_a_restart_and_dropped_ones_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let old = schema("old_tenant");
    engine.store().create_tenant(&old).await.expect("create");
    let running = Running::start(&engine, config());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Queued through another store over the same directory: another process, which this
    // pool's signals do not see; the idle polls find it.
    let other = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("store");
    let fresh = schema("fresh_tenant");
    other.create_tenant(&fresh).await.expect("create");
    let other_queue = other
        .tenant(&fresh)
        .await
        .expect("tenant")
        .jobs()
        .expect("queue");
    let job = other_queue
        .enqueue(retain_job("Chen ran a marathon"))
        .await
        .expect("enqueue");
    wait_for(
        other_queue.as_ref(),
        &job.id,
        JobState::Done,
        Duration::from_secs(10),
    )
    .await;
    drop(other_queue);
    drop(other);

    engine.store().drop_tenant(&old).await.expect("drop");
    let started = Instant::now();
    while !running.seen.forgotten.lock().expect("lock").contains(&old) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dropped tenant is forgotten"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert!(
        !dir.path().join("old_tenant.db").exists(),
        "the workers never recreate a dropped tenant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_tenants_cost_bounded_tasks_and_polls() {
    const TENANTS: usize = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let schemas: Vec<Schema> = (0..TENANTS).map(|i| schema(&format!("t{i:05}"))).collect();
    // Creating thousands of tenants one by one takes a minute in a debug build; copies of one
    // closed tenant file are the same tenants to the store.
    let template = tempfile::tempdir().expect("tempdir");
    {
        let store = SqliteStore::open(template.path(), SqliteOptions::default()).expect("store");
        store
            .create_tenant(&schema("template"))
            .await
            .expect("create");
    }
    let file = template.path().join("template.db");
    assert!(file.exists() && !template.path().join("template.db-wal").exists());
    for schema in &schemas {
        std::fs::copy(&file, dir.path().join(format!("{schema}.db"))).expect("copy");
    }
    assert_eq!(
        engine.store().list_tenants().await.expect("list").len(),
        TENANTS
    );
    let config = WorkerConfig {
        concurrency: 4,
        idle_polls_per_second: 50,
        ..config()
    };
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let running = Running::start(&engine, config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        - tasks_before;
    // The dispatcher and 4 workers (a blocking store call may add one each).
    assert!(tasks <= 1 + 4 * 2, "{tasks} tasks for {TENANTS} tenants");

    let polls_before = running.seen.polls.load(Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = running.seen.polls.load(Ordering::Relaxed) - polls_before;
    let per_second = polls as f64 / window.elapsed().as_secs_f64();
    // One loop per tenant at this poll interval would be 100,000 polls a second.
    assert!(
        per_second <= 60.0,
        "{per_second:.0} polls/s over {TENANTS} idle tenants"
    );
    assert!(polls > 0, "idle tenants are still polled now and then");

    // A job queued in a random tenant still runs promptly.
    let picked = &schemas[(Utc::now().timestamp_subsec_nanos() as usize) % TENANTS];
    let queue = queue(&engine, picked).await;
    let queued = Instant::now();
    let job = queue
        .enqueue(retain_job("Dana planted basil"))
        .await
        .expect("enqueue");
    wait_for(
        queue.as_ref(),
        &job.id,
        JobState::Done,
        Duration::from_secs(5),
    )
    .await;
    let took = queued.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let seen = running.stop().await;
    assert!(seen.forgotten.lock().expect("lock").is_empty());
}
