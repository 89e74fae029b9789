//! The per-tenant job queue: idempotent enqueue, concurrent claimers in two "processes"
//! (two pools), lease expiry and reclaim, retry and dead-lettering, and isolation between
//! tenants' queues.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::jobs::{JobQueue, JobState, NewJob};
use astrocyte_core::{ErrorKind, Schema, Store, Timestamp};
use astrocyte_store_postgres::PostgresStore;
use serde_json::json;

use crate::support::TestDb;

fn new_job(kind: &str, key: Option<&str>, max_attempts: u32, run_at: Timestamp) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: json!({"kind": kind}),
        idempotency_key: key.map(str::to_string),
        max_attempts,
        run_at,
    }
}

async fn queue(store: &PostgresStore, name: &str) -> Arc<dyn JobQueue> {
    let schema = Schema::new(name).expect("schema");
    if store
        .tenant_record(&schema)
        .await
        .expect("record")
        .is_none()
    {
        store.create_tenant(&schema).await.expect("create");
    }
    store
        .tenant(&schema)
        .await
        .expect("handle")
        .jobs()
        .expect("postgres keeps a job queue")
}

/// Now at PostgreSQL's precision (microseconds), so stored times compare equal.
fn now() -> Timestamp {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

fn seconds(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_is_idempotent_on_its_key() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let jobs = queue(&store, "jobs_idem").await;
    let now = now();

    let first = jobs
        .enqueue(new_job("retain", Some("req-1"), 3, now))
        .await
        .expect("enqueue");
    assert_eq!(first.state, JobState::Queued);
    assert_eq!((first.attempts, first.max_attempts), (0, 3));
    let again = jobs
        .enqueue(new_job("reembed", Some("req-1"), 9, now))
        .await
        .expect("enqueue again");
    assert_eq!(again, first, "the first job is returned unchanged");

    // Many enqueues of one new key at once: one job.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                jobs.enqueue(new_job("retain", Some("req-2"), 3, now))
                    .await
                    .expect("enqueue")
                    .id
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for racer in racers {
        ids.insert(racer.await.expect("join"));
    }
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Without a key every enqueue is a new job.
    let a = jobs
        .enqueue(new_job("retain", None, 3, now))
        .await
        .expect("a");
    let b = jobs
        .enqueue(new_job("retain", None, 3, now))
        .await
        .expect("b");
    assert_ne!(a.id, b.id);
    assert_eq!(jobs.list_jobs(None, 100).await.expect("list").len(), 4);
    assert_eq!(
        jobs.job(&first.id).await.expect("job").map(|j| j.payload),
        Some(json!({"kind": "retain"}))
    );

    let error = jobs
        .enqueue(new_job("retain", None, 0, now))
        .await
        .expect_err("zero attempts");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

/// Claims until the queue is empty, completing each job; returns the ids it claimed.
async fn drain(jobs: Arc<dyn JobQueue>, worker: String) -> Vec<String> {
    let mut claimed = Vec::new();
    while let Some(job) = jobs
        .claim(&worker, Duration::from_secs(60), chrono::Utc::now())
        .await
        .expect("claim")
    {
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
        assert_eq!(job.attempts, 1, "no job is claimed twice");
        assert!(jobs
            .complete(&job.id, &worker, json!({"by": worker}))
            .await
            .expect("complete"));
        claimed.push(job.id);
    }
    claimed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_in_two_processes_share_the_jobs_without_overlap() {
    let db = TestDb::create().await;
    let first = db.store().await;
    // Its own pool: to PostgreSQL, another process.
    let second = db.store().await;
    let jobs_one = queue(&first, "jobs_race").await;
    let jobs_two = queue(&second, "jobs_race").await;
    let now = now();
    let mut enqueued = HashSet::new();
    for index in 0..100 {
        let job = jobs_one
            .enqueue(new_job("retain", Some(&format!("job-{index}")), 3, now))
            .await
            .expect("enqueue");
        enqueued.insert(job.id);
    }

    let mut loops = Vec::new();
    for (process, jobs) in [(1, &jobs_one), (2, &jobs_two)] {
        for worker in 0..20 {
            loops.push(tokio::spawn(drain(
                jobs.clone(),
                format!("p{process}-w{worker}"),
            )));
        }
    }
    let mut claimed = Vec::new();
    for handle in loops {
        claimed.extend(handle.await.expect("join"));
    }
    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), 100, "every job claimed exactly once");
    assert_eq!(unique, enqueued);
    let done = jobs_two
        .list_jobs(Some(JobState::Done), 1000)
        .await
        .expect("list");
    assert_eq!(done.len(), 100);
    assert!(done
        .iter()
        .all(|j| j.attempts == 1 && j.lease_owner.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_reclaimed_and_the_old_holder_loses_it() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let jobs = queue(&store, "jobs_lease").await;
    let t0 = now();
    let job = jobs
        .enqueue(new_job("reembed", None, 3, t0))
        .await
        .expect("enqueue");

    let held = jobs
        .claim("old", Duration::from_secs(30), t0)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(held.id, job.id);
    assert_eq!(held.lease_until, Some(t0 + seconds(30)));
    // Still leased: nobody else gets it.
    assert!(jobs
        .claim("new", Duration::from_secs(30), t0 + seconds(29))
        .await
        .expect("claim")
        .is_none());
    // The lease ran out (the old worker died, as far as anyone can tell).
    let reclaimed = jobs
        .claim("new", Duration::from_secs(30), t0 + seconds(31))
        .await
        .expect("claim")
        .expect("reclaimed");
    assert_eq!(reclaimed.id, job.id);
    assert_eq!(reclaimed.attempts, 2);
    assert_eq!(reclaimed.lease_owner.as_deref(), Some("new"));

    assert!(!jobs
        .complete(&job.id, "old", json!("late"))
        .await
        .expect("complete"));
    assert!(!jobs
        .fail(&job.id, "old", "late failure", None)
        .await
        .expect("fail"));
    assert!(jobs
        .complete(&job.id, "new", json!({"ok": true}))
        .await
        .expect("complete"));
    let stored = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(stored.state, JobState::Done);
    assert_eq!(stored.result, Some(json!({"ok": true})));
    // A finished job cannot be completed or failed again.
    assert!(!jobs
        .complete(&job.id, "new", json!("again"))
        .await
        .expect("complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_until_max_attempts_then_dead_letter() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let jobs = queue(&store, "jobs_retry").await;
    let t0 = now();
    let lease = Duration::from_secs(30);
    let job = jobs
        .enqueue(new_job("lifecycle", None, 2, t0))
        .await
        .expect("enqueue");

    let first = jobs
        .claim("w", lease, t0)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.attempts, 1);
    assert!(jobs
        .fail(&job.id, "w", "boom 1", Some(t0 + seconds(10)))
        .await
        .expect("fail"));
    let queued = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.run_at, t0 + seconds(10));
    assert_eq!(queued.last_error.as_deref(), Some("boom 1"));
    assert!(queued.lease_owner.is_none());
    // Not due yet.
    assert!(jobs
        .claim("w", lease, t0 + seconds(5))
        .await
        .expect("claim")
        .is_none());
    let second = jobs
        .claim("w", lease, t0 + seconds(10))
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(second.attempts, 2);
    // A retry asked for after the last attempt is refused: dead.
    assert!(jobs
        .fail(&job.id, "w", "boom 2", Some(t0 + seconds(20)))
        .await
        .expect("fail"));
    let dead = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 2"));
    assert!(jobs
        .claim("w", lease, t0 + seconds(3600))
        .await
        .expect("claim")
        .is_none());

    // No retry time: dead at once.
    let fatal = jobs
        .enqueue(new_job("lifecycle", None, 5, t0))
        .await
        .expect("enqueue");
    jobs.claim("w", lease, t0)
        .await
        .expect("claim")
        .expect("job");
    assert!(jobs
        .fail(&fatal.id, "w", "bad payload", None)
        .await
        .expect("fail"));
    assert_eq!(
        jobs.job(&fatal.id).await.expect("job").map(|j| j.state),
        Some(JobState::Dead)
    );

    // A worker dying during the last attempt: the job is dead-lettered, not run again.
    let last = jobs
        .enqueue(new_job("lifecycle", None, 1, t0))
        .await
        .expect("enqueue");
    jobs.claim("w", lease, t0)
        .await
        .expect("claim")
        .expect("job");
    assert!(jobs
        .claim("other", lease, t0 + seconds(60))
        .await
        .expect("claim")
        .is_none());
    let buried = jobs.job(&last.id).await.expect("job").expect("exists");
    assert_eq!(buried.state, JobState::Dead);
    assert_eq!(buried.attempts, 1);
    assert!(buried.last_error.is_some());

    let dead_ids: HashSet<String> = jobs
        .list_jobs(Some(JobState::Dead), 10)
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(dead_ids, HashSet::from([job.id, fatal.id, last.id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_queue() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let a = queue(&store, "jobs_a").await;
    let b = queue(&store, "jobs_b").await;
    let now = now();
    let mut a_ids = Vec::new();
    for index in 0..3 {
        a_ids.push(
            a.enqueue(new_job("retain", Some(&format!("k{index}")), 3, now))
                .await
                .expect("enqueue")
                .id,
        );
    }
    // The same idempotency key in B is B's own job.
    let b_job = b
        .enqueue(new_job("retain", Some("k0"), 3, now))
        .await
        .expect("enqueue");
    assert!(!a_ids.contains(&b_job.id));
    let b_claim = b
        .claim("wb", Duration::from_secs(30), now)
        .await
        .expect("claim")
        .expect("b's job");
    assert_eq!(b_claim.id, b_job.id);
    assert!(b
        .claim("wb", Duration::from_secs(30), now)
        .await
        .expect("claim")
        .is_none());
    assert!(b.job(&a_ids[0]).await.expect("job").is_none());
    assert!(!b
        .complete(&a_ids[0], "wb", json!(1))
        .await
        .expect("complete"));
    assert_eq!(b.list_jobs(None, 10).await.expect("list").len(), 1);
    assert_eq!(
        a.list_jobs(Some(JobState::Queued), 10)
            .await
            .expect("list")
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_before_the_jobs_migration_gets_its_queue_on_open() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let schema = Schema::new("jobs_old").expect("schema");
    store.create_tenant(&schema).await.expect("create");
    // As an older release left it: no jobs or settings table, ledger at 3.
    db.admin()
        .await
        .batch_execute(
            "DROP TABLE jobs_old.astrocyte_memory_entities; \
             DROP TABLE jobs_old.astrocyte_changes; DROP INDEX jobs_old.astrocyte_memories_retained; \
             DROP TABLE jobs_old.astrocyte_jobs; DROP TABLE jobs_old.astrocyte_settings; \
             DROP INDEX jobs_old.astrocyte_memories_id; DROP INDEX jobs_old.astrocyte_memories_thread; \
             ALTER TABLE jobs_old.astrocyte_memories DROP COLUMN thread; \
             DELETE FROM jobs_old.astrocyte_migrations WHERE version >= 4; \
             UPDATE public.astrocyte_tenants SET migrated_version = NULL WHERE schema = 'jobs_old'",
        )
        .await
        .expect("roll back");
    // A fresh store has no cached handle, so opening the tenant migrates it.
    let reopened = db.store().await;
    let jobs = queue(&reopened, "jobs_old").await;
    let job = jobs
        .enqueue(new_job("retain", None, 1, chrono::Utc::now()))
        .await
        .expect("enqueue after migration");
    assert_eq!(
        jobs.job(&job.id).await.expect("job").map(|j| j.id),
        Some(job.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_signals_name_the_tenants_with_due_jobs_across_processes() {
    let db = TestDb::create().await;
    let store = db.store().await;
    // Another process: its own pool, and it reads the signals the first one raised.
    let other = db.store().await;
    let signals = other.job_signals().expect("postgres keeps job signals");
    assert!(signals.shared());
    let busy = queue(&store, "sig_busy").await;
    let _quiet = queue(&store, "sig_quiet").await;
    let later = queue(&store, "sig_later").await;
    assert!(
        signals.due(now(), 10).await.expect("due").is_empty(),
        "new tenants have nothing due"
    );
    busy.enqueue(new_job("retain", None, 1, now()))
        .await
        .expect("enqueue");
    later
        .enqueue(new_job("retain", None, 1, now() + seconds(3600)))
        .await
        .expect("enqueue");
    let due = signals.due(now(), 10).await.expect("due");
    let names: Vec<&str> = due.iter().map(|t| t.schema.as_str()).collect();
    assert_eq!(names, ["sig_busy"]);
    let names: Vec<String> = signals
        .due(now() + seconds(7200), 10)
        .await
        .expect("due")
        .into_iter()
        .map(|t| t.schema.to_string())
        .collect();
    assert_eq!(names, ["sig_busy", "sig_later"]);

    // A job enqueued after the signal was read keeps it raised whatever the visit settles.
    let read = due[0].clone();
    busy.enqueue(new_job("retain", None, 1, now()))
        .await
        .expect("enqueue");
    signals
        .settle(&read.schema, Some(read.version), None)
        .await
        .expect("settle");
    let due = signals.due(now(), 10).await.expect("due");
    assert_eq!(due.len(), 1, "the stale settle changed nothing");

    // Claimed, both jobs run under a lease: the next due time is the lease's end.
    let worker = "w1";
    for _ in 0..2 {
        busy.claim(worker, Duration::from_secs(60), now())
            .await
            .expect("claim")
            .expect("a job");
    }
    let next = busy
        .next_due()
        .await
        .expect("next due")
        .expect("running jobs");
    assert!(next > now() + seconds(50), "{next}");
    signals
        .settle(&due[0].schema, Some(due[0].version), Some(next))
        .await
        .expect("settle");
    assert!(signals.due(now(), 10).await.expect("due").is_empty());
    let due = signals.due(next, 10).await.expect("due");
    assert_eq!(due.len(), 1, "due again when the lease ends");
    assert_eq!(due[0].schema.as_str(), "sig_busy");

    // A dropped tenant's signal goes with it.
    store
        .drop_tenant(&Schema::new("sig_later").expect("schema"))
        .await
        .expect("drop");
    let names: Vec<String> = signals
        .due(now() + seconds(7200), 10)
        .await
        .expect("due")
        .into_iter()
        .map(|t| t.schema.to_string())
        .collect();
    assert_eq!(names, ["sig_busy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_from_before_the_signals_are_signalled_once_on_connect() {
    let db = TestDb::create().await;
    let store = db.store().await;
    queue(&store, "sig_legacy").await;
    let admin = db.admin().await;
    // As an older release left it: no signal table at all.
    admin
        .batch_execute("DROP TABLE public.astrocyte_job_signals")
        .await
        .expect("drop the signals");
    let upgraded = db.store().await;
    let signals = upgraded.job_signals().expect("signals");
    let due = signals.due(now(), 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].schema.as_str(), "sig_legacy");
    signals
        .settle(&due[0].schema, Some(due[0].version), None)
        .await
        .expect("settle");
    // Connecting again does not raise it again.
    let again = db.store().await;
    assert!(again
        .job_signals()
        .expect("signals")
        .due(now(), 10)
        .await
        .expect("due")
        .is_empty());
}
