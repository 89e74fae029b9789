//! The SQLite store's services beside memories: the per-tenant job queue (idempotency,
//! exclusive claims across two stores sharing one directory, leases, retries, dead letters,
//! durability across reopen and `kill -9`), the API-key directory file, tenant settings and
//! replacing embeddings.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::jobs::{JobQueue, JobState, NewJob};
use astrocyte_core::store::{ApiKeyRecord, EmbeddingSpace, SearchRequest};
use astrocyte_core::{
    BankId, Embedder, Engine, EngineConfig, ErrorKind, ForgetMode, ForgetSelector, RecallFilter,
    RetainRequest, Schema, Store,
};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore, KEY_DIRECTORY_FILE};
use chrono::Utc;
use serde_json::json;

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("valid schema")
}

fn bank(name: &str) -> BankId {
    BankId::new(name).expect("valid bank")
}

fn open(dir: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir, SqliteOptions::default()).expect("open store"))
}

async fn queue(store: &SqliteStore, tenant: &str) -> Arc<dyn JobQueue> {
    store
        .tenant(&schema(tenant))
        .await
        .expect("tenant")
        .jobs()
        .expect("the sqlite store keeps a job queue")
}

fn new_job(kind: &str, key: Option<&str>, max_attempts: u32) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: json!({"bank_id": "b", "kind": kind}),
        idempotency_key: key.map(str::to_string),
        max_attempts,
        run_at: Utc::now() - chrono::Duration::seconds(1),
    }
}

const LEASE: Duration = Duration::from_secs(60);

// --- jobs ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_is_idempotent_on_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let jobs = queue(&store, "t1").await;
    let first = jobs
        .enqueue(new_job("retain", Some("k1"), 3))
        .await
        .expect("enqueue");
    assert_eq!(first.state, JobState::Queued);
    assert_eq!((first.attempts, first.max_attempts), (0, 3));
    assert_eq!(first.payload, json!({"bank_id": "b", "kind": "retain"}));
    let again = jobs
        .enqueue(new_job("other", Some("k1"), 5))
        .await
        .expect("enqueue again");
    assert_eq!(again, first, "the same key returns the first job unchanged");
    let keyless_a = jobs.enqueue(new_job("retain", None, 1)).await.expect("a");
    let keyless_b = jobs.enqueue(new_job("retain", None, 1)).await.expect("b");
    assert_ne!(keyless_a.id, keyless_b.id, "jobs without a key never merge");
    assert_eq!(jobs.list_jobs(None, 100).await.expect("list").len(), 3);
    assert_eq!(
        jobs.job(&first.id).await.expect("job"),
        Some(first.clone()),
        "read back as enqueued"
    );
    let zero = jobs.enqueue(new_job("retain", None, 0)).await;
    assert_eq!(
        zero.expect_err("zero attempts").kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_in_two_stores_never_share_a_job_and_drain_the_queue() {
    const JOBS: usize = 100;
    const LOOPS_PER_STORE: usize = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    // Two stores on one directory: two writer connections to one file, as two processes.
    let stores = [open(dir.path()), open(dir.path())];
    let producer = queue(&stores[0], "shared").await;
    let mut enqueued = HashSet::new();
    for i in 0..JOBS {
        let job = producer
            .enqueue(new_job("retain", Some(&format!("job-{i}")), 3))
            .await
            .expect("enqueue");
        enqueued.insert(job.id);
    }
    let mut loops = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for l in 0..LOOPS_PER_STORE {
            let jobs = queue(store, "shared").await;
            let worker = format!("store{s}-loop{l}");
            loops.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = jobs.claim(&worker, LEASE, Utc::now()).await.expect("claim") {
                    assert_eq!(job.state, JobState::Running);
                    assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
                    assert_eq!(job.attempts, 1, "nobody claimed it before");
                    assert!(
                        jobs.complete(&job.id, &worker, json!({"by": worker}))
                            .await
                            .expect("complete"),
                        "the holder completes its job"
                    );
                    claimed.push(job.id);
                }
                claimed
            }));
        }
    }
    let mut seen = HashSet::new();
    for handle in loops {
        let ids = handle.await.expect("claim loop");
        for id in ids {
            assert!(seen.insert(id.clone()), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen, enqueued, "together the claimers took every job");
    let done = producer
        .list_jobs(Some(JobState::Done), 1_000)
        .await
        .expect("list");
    assert_eq!(done.len(), JOBS);
    assert!(done
        .iter()
        .all(|j| j.result.is_some() && j.lease_owner.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_reclaimed_and_the_old_holder_loses_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let jobs = queue(&store, "t1").await;
    let job = jobs
        .enqueue(new_job("reembed", None, 3))
        .await
        .expect("enqueue");
    let now = Utc::now();
    let first = jobs
        .claim("w1", Duration::from_secs(1), now)
        .await
        .expect("claim")
        .expect("a due job");
    assert_eq!(first.id, job.id);
    assert!(
        jobs.claim("w2", LEASE, now).await.expect("claim").is_none(),
        "a live lease is not taken over"
    );
    let later = now + chrono::Duration::seconds(2);
    let second = jobs
        .claim("w2", LEASE, later)
        .await
        .expect("claim")
        .expect("the expired lease is reclaimable");
    assert_eq!(second.id, job.id);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.lease_owner.as_deref(), Some("w2"));
    assert!(
        !jobs
            .complete(&job.id, "w1", json!(1))
            .await
            .expect("complete"),
        "the old holder lost the lease"
    );
    assert!(
        !jobs.fail(&job.id, "w1", "late", None).await.expect("fail"),
        "nor can it fail the job"
    );
    assert!(jobs
        .complete(&job.id, "w2", json!({"ok": true}))
        .await
        .expect("complete"));
    let stored = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(stored.state, JobState::Done);
    assert_eq!(stored.result, Some(json!({"ok": true})));
    assert!(
        !jobs
            .complete(&job.id, "w2", json!(2))
            .await
            .expect("complete"),
        "a done job cannot be completed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let jobs = queue(&store, "t1").await;
    let job = jobs
        .enqueue(new_job("lifecycle", None, 2))
        .await
        .expect("enqueue");
    let now = Utc::now();
    jobs.claim("w", LEASE, now)
        .await
        .expect("claim")
        .expect("due");
    let retry_at = now + chrono::Duration::seconds(30);
    assert!(jobs
        .fail(&job.id, "w", "boom 1", Some(retry_at))
        .await
        .expect("fail"));
    let queued = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.last_error.as_deref(), Some("boom 1"));
    assert_eq!(
        queued.run_at.timestamp_micros(),
        retry_at.timestamp_micros()
    );
    assert!(
        jobs.claim("w", LEASE, now).await.expect("claim").is_none(),
        "not due before retry_at"
    );
    let again = jobs
        .claim("w", LEASE, retry_at + chrono::Duration::seconds(1))
        .await
        .expect("claim")
        .expect("due after retry_at");
    assert_eq!(again.attempts, 2);
    // Attempts are spent: even a retry request dead-letters it.
    assert!(jobs
        .fail(&job.id, "w", "boom 2", Some(retry_at))
        .await
        .expect("fail"));
    let dead = jobs.job(&job.id).await.expect("job").expect("exists");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 2"));
    assert!(jobs
        .claim("w", LEASE, retry_at + chrono::Duration::days(1))
        .await
        .expect("claim")
        .is_none());

    // Without retry_at a job dies at once.
    let other = jobs
        .enqueue(new_job("lifecycle", None, 5))
        .await
        .expect("enqueue");
    jobs.claim("w", LEASE, Utc::now())
        .await
        .expect("claim")
        .expect("due");
    assert!(jobs
        .fail(&other.id, "w", "fatal", None)
        .await
        .expect("fail"));
    assert_eq!(
        jobs.job(&other.id).await.expect("job").map(|j| j.state),
        Some(JobState::Dead)
    );

    // A worker dying during the last attempt: the expired lease buries the job.
    let last = jobs
        .enqueue(new_job("lifecycle", None, 1))
        .await
        .expect("enqueue");
    let now = Utc::now();
    jobs.claim("gone", Duration::from_secs(1), now)
        .await
        .expect("claim")
        .expect("due");
    assert!(jobs
        .claim("w", LEASE, now + chrono::Duration::seconds(5))
        .await
        .expect("claim")
        .is_none());
    let buried = jobs.job(&last.id).await.expect("job").expect("exists");
    assert_eq!((buried.state, buried.attempts), (JobState::Dead, 1));
    let dead = jobs
        .list_jobs(Some(JobState::Dead), 10)
        .await
        .expect("list");
    assert_eq!(dead.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queues_are_per_tenant_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (kept, done) = {
        let store = open(dir.path());
        let t1 = queue(&store, "t1").await;
        let t2 = queue(&store, "t2").await;
        let kept = t1
            .enqueue(new_job("retain", Some("k"), 3))
            .await
            .expect("enqueue");
        let done = t1
            .enqueue(new_job("retain", None, 3))
            .await
            .expect("enqueue");
        assert!(t2.list_jobs(None, 10).await.expect("list").is_empty());
        assert!(t2.job(&kept.id).await.expect("job").is_none());
        assert!(
            t2.claim("w", LEASE, Utc::now())
                .await
                .expect("claim")
                .is_none(),
            "another tenant's jobs are invisible"
        );
        let other = t2
            .enqueue(new_job("retain", Some("k"), 3))
            .await
            .expect("same key, other tenant");
        assert_ne!(other.id, kept.id, "idempotency keys are per tenant");
        let claimed = t1
            .claim("w", LEASE, Utc::now())
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(claimed.id, kept.id, "oldest run_at first");
        assert!(t1.complete(&kept.id, "w", json!("ok")).await.expect("done"));
        (kept, done)
    };
    let store = open(dir.path());
    let t1 = queue(&store, "t1").await;
    let reopened = t1.job(&kept.id).await.expect("job").expect("survived");
    assert_eq!(reopened.state, JobState::Done);
    assert_eq!(reopened.result, Some(json!("ok")));
    let waiting = t1
        .claim("w", LEASE, Utc::now())
        .await
        .expect("claim")
        .expect("the queued job survived");
    assert_eq!(waiting.id, done.id);
    assert_eq!(
        t1.enqueue(new_job("x", Some("k"), 1))
            .await
            .expect("enqueue")
            .id,
        kept.id,
        "the key still dedupes after reopening"
    );
}

const CHILD_DIR: &str = "ASTROCYTE_SQLITE_JOBS_KILL_CHILD_DIR";

/// Acting as the child: enqueues jobs forever, printing each id once `enqueue` returned.
fn run_enqueue_child(dir: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = open(Path::new(dir));
        let jobs = queue(&store, "durable").await;
        let mut stdout = std::io::stdout();
        for i in 0.. {
            let job = jobs
                .enqueue(new_job("retain", Some(&format!("k{i}")), 3))
                .await
                .expect("enqueue");
            use std::io::Write;
            writeln!(stdout, "ACK {}", job.id).expect("stdout");
            stdout.flush().expect("flush");
        }
    });
    unreachable!("the child loops until killed")
}

/// Every job `enqueue` acknowledged before a `kill -9` is there after reopening.
#[test]
fn acknowledged_jobs_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        run_enqueue_child(&dir);
    }
    const WANTED: usize = 30;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "acknowledged_jobs_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(id) = line.strip_prefix("ACK ") {
            acknowledged.push(id.to_string());
        }
        if acknowledged.len() >= WANTED || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap child");
    assert!(!status.success(), "the child was killed, it did not exit");
    assert_eq!(acknowledged.len(), WANTED, "too few acknowledgements");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = open(dir.path());
        let jobs = queue(&store, "durable").await;
        for id in &acknowledged {
            let job = jobs.job(id).await.expect("job");
            assert_eq!(
                job.map(|j| j.state),
                Some(JobState::Queued),
                "job {id} survived"
            );
        }
    });
}

// --- API keys -----------------------------------------------------------------------------

fn key(id: &str, tenant: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.into(),
        key_hash: format!("hash-of-{id}"),
        schema: schema(tenant),
        principal: format!("agent:{id}"),
        created_at: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
            .expect("now"),
        revoked_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_stored_found_revoked_and_listed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let keys = store.key_directory().expect("a key directory");
    assert!(keys.list_keys(None).await.expect("list").is_empty());
    assert!(
        !dir.path().join(KEY_DIRECTORY_FILE).exists(),
        "reads do not create the file"
    );
    let (a, b, c) = (key("key_a", "t1"), key("key_b", "t2"), key("key_c", "t1"));
    for record in [&c, &a, &b] {
        keys.put_key(record).await.expect("put");
    }
    assert!(dir.path().join(KEY_DIRECTORY_FILE).is_file());
    let duplicate = keys.put_key(&key("key_a", "t2")).await;
    assert_eq!(
        duplicate.expect_err("duplicate").kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        keys.find_key_by_hash("hash-of-key_b").await.expect("find"),
        Some(b.clone())
    );
    assert_eq!(keys.find_key_by_hash("nope").await.expect("find"), None);
    let t1_keys = keys.list_keys(Some(&schema("t1"))).await.expect("list");
    assert_eq!(t1_keys, vec![a.clone(), c.clone()], "ordered by key id");
    assert_eq!(keys.list_keys(None).await.expect("list").len(), 3);
    let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("time");
    assert!(keys.revoke_key("key_a", at).await.expect("revoke"));
    assert!(
        keys.revoke_key("key_a", Utc::now())
            .await
            .expect("revoke again"),
        "still a key"
    );
    assert!(!keys.revoke_key("missing", at).await.expect("revoke"));
    let revoked = keys
        .find_key_by_hash("hash-of-key_a")
        .await
        .expect("find")
        .expect("revoked keys are still found");
    assert_eq!(
        revoked.revoked_at,
        Some(at),
        "the first revocation time is kept"
    );

    // The directory file is not a tenant, and keys survive reopening.
    store.create_tenant(&schema("t1")).await.expect("create");
    let tenants: Vec<String> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema.to_string())
        .collect();
    assert_eq!(tenants, vec!["t1"]);
    drop(keys);
    drop(store);
    let store = open(dir.path());
    let keys = store.key_directory().expect("a key directory");
    assert_eq!(keys.list_keys(None).await.expect("list").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_tenant_removes_its_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let keys = store.key_directory().expect("a key directory");
    store.create_tenant(&schema("t1")).await.expect("create");
    keys.put_key(&key("key_1", "t1")).await.expect("put");
    keys.put_key(&key("key_2", "t2")).await.expect("put");
    keys.put_key(&key("key_3", "t3")).await.expect("put");
    store.drop_tenant(&schema("t1")).await.expect("drop");
    assert!(keys
        .find_key_by_hash("hash-of-key_1")
        .await
        .expect("find")
        .is_none());
    // t3 never had a file: its keys still go, and the drop succeeds.
    store
        .drop_tenant(&schema("t3"))
        .await
        .expect("drop keys only");
    let left: Vec<String> = keys
        .list_keys(None)
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(left, vec!["key_2"]);
    let absent = store.drop_tenant(&schema("t3")).await;
    assert_eq!(
        absent.expect_err("nothing left").kind(),
        ErrorKind::NotFound
    );
}

// --- settings -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_per_tenant_json_and_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path());
        let t1 = store.tenant(&schema("t1")).await.expect("tenant");
        let t2 = store.tenant(&schema("t2")).await.expect("tenant");
        assert_eq!(t1.setting("legal_hold:b").await.expect("read"), None);
        t1.put_setting("legal_hold:b", Some(json!({"reason": "audit"})))
            .await
            .expect("put");
        t1.put_setting("policy", Some(json!(1))).await.expect("put");
        t1.put_setting("policy", Some(json!([1, 2])))
            .await
            .expect("overwrite");
        t1.put_setting("gone", Some(json!(true)))
            .await
            .expect("put");
        t1.put_setting("gone", None).await.expect("remove");
        t1.put_setting("never", None)
            .await
            .expect("removing nothing is fine");
        assert_eq!(
            t2.setting("policy").await.expect("read"),
            None,
            "per tenant"
        );
    }
    let store = open(dir.path());
    let t1 = store.tenant(&schema("t1")).await.expect("tenant");
    assert_eq!(
        t1.setting("legal_hold:b").await.expect("read"),
        Some(json!({"reason": "audit"}))
    );
    assert_eq!(
        t1.setting("policy").await.expect("read"),
        Some(json!([1, 2]))
    );
    assert_eq!(t1.setting("gone").await.expect("read"), None);
}

// --- replacing embeddings -----------------------------------------------------------------

async fn top_semantic(store: &SqliteStore, tenant: &Schema, vector: Vec<f32>) -> Option<String> {
    let handle = store.tenant(tenant).await.expect("tenant");
    let response = handle
        .search(&SearchRequest {
            banks: vec![bank("b")],
            vector: Some(vector),
            text: None,
            recency: false,
            limit: 3,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    response
        .semantic
        .expect("semantic")
        .hits
        .first()
        .map(|h| h.memory.id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_embeddings_are_searched_at_once_and_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tenant = schema("t1");
    let embedder = HashingEmbedder::default();
    let space = EmbeddingSpace {
        model: "reembedded-128".into(),
        dimension: HashingEmbedder::DEFAULT_DIMENSION,
    };
    let (target, probe) = {
        let store = open(dir.path());
        let engine = Engine::new(
            store.clone(),
            Arc::new(embedder.clone()),
            EngineConfig::default(),
        );
        let mut ids = Vec::new();
        for i in 0..40 {
            let outcome = engine
                .retain(
                    &tenant,
                    RetainRequest {
                        bank_id: "b".into(),
                        content: format!(
                            "Ledger entry {i} about quarry q{} and kiln k{}",
                            i * 3,
                            i * 5
                        ),
                        ..Default::default()
                    },
                )
                .await
                .expect("retain");
            ids.push(outcome.memory_id.expect("stored"));
        }
        let probe = embedder.embed_one("violet marmalade orchestra tangent");
        // The index is loaded (and snapshotted) before the replacement.
        assert_ne!(
            top_semantic(&store, &tenant, probe.clone()).await,
            Some(ids[7].clone())
        );
        store.flush().await.expect("snapshot");
        let handle = store.tenant(&tenant).await.expect("tenant");
        let wrong = handle
            .replace_embeddings(&space, vec![(ids[7].clone(), vec![0.5; 3])])
            .await;
        assert_eq!(
            wrong.expect_err("dimension").kind(),
            ErrorKind::InvalidInput
        );
        handle
            .replace_embeddings(
                &space,
                vec![
                    (ids[7].clone(), probe.clone()),
                    ("no-such-id".into(), probe.clone()),
                ],
            )
            .await
            .expect("replace");
        assert_eq!(
            top_semantic(&store, &tenant, probe.clone()).await,
            Some(ids[7].clone()),
            "the loaded index holds the new vector"
        );
        let stored = handle
            .scan(&bank("b"), None, 100, true)
            .await
            .expect("scan")
            .into_iter()
            .find(|m| m.id == ids[7])
            .and_then(|m| m.embedding)
            .expect("embedding");
        assert_eq!(stored, probe);
        handle
            .ensure_embedding_space(&space)
            .await
            .expect("the new space is recorded");
        let old = EmbeddingSpace {
            model: embedder.model().to_string(),
            dimension: embedder.dimension(),
        };
        let mismatch = handle.ensure_embedding_space(&old).await;
        assert!(
            matches!(
                mismatch,
                Err(astrocyte_core::Error::DimensionMismatch { .. })
            ),
            "the old model no longer matches: {mismatch:?}"
        );
        let bigger = EmbeddingSpace {
            model: "bigger".into(),
            dimension: 256,
        };
        let refused = handle.replace_embeddings(&bigger, Vec::new()).await;
        assert_eq!(
            refused.expect_err("non-empty tenant").kind(),
            ErrorKind::Unsupported
        );
        (ids[7].clone(), probe)
    };
    // The stale snapshot was deleted: the reopened index is rebuilt with the new vector.
    let store = open(dir.path());
    assert_eq!(top_semantic(&store, &tenant, probe).await, Some(target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tenant_may_change_dimension() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let tenant = schema("t1");
    let engine = Engine::new(
        store.clone(),
        Arc::new(HashingEmbedder::new(16)),
        EngineConfig::default(),
    );
    let outcome = engine
        .retain(
            &tenant,
            RetainRequest {
                bank_id: "b".into(),
                content: "short lived note".into(),
                ..Default::default()
            },
        )
        .await
        .expect("retain");
    let handle = store.tenant(&tenant).await.expect("tenant");
    let wide_embedder = HashingEmbedder::new(32);
    let wider = EmbeddingSpace {
        model: wide_embedder.model().to_string(),
        dimension: 32,
    };
    assert_eq!(
        handle
            .replace_embeddings(&wider, Vec::new())
            .await
            .expect_err("holds a memory")
            .kind(),
        ErrorKind::Unsupported
    );
    let selector = ForgetSelector {
        memory_ids: Some(vec![outcome.memory_id.expect("id")]),
        ..Default::default()
    };
    handle
        .forget(&bank("b"), &selector, ForgetMode::Purge, Utc::now())
        .await
        .expect("purge");
    handle
        .replace_embeddings(&wider, Vec::new())
        .await
        .expect("an empty tenant switches dimension");
    // An engine with the new model now retains and finds dimension-32 memories.
    let wide_engine = Engine::new(
        store.clone(),
        Arc::new(wide_embedder.clone()),
        EngineConfig::default(),
    );
    let wide = wide_engine
        .retain(
            &tenant,
            RetainRequest {
                bank_id: "b".into(),
                content: "note in the wider space".into(),
                ..Default::default()
            },
        )
        .await
        .expect("retain in the new space")
        .memory_id
        .expect("stored");
    assert_eq!(
        top_semantic(
            &store,
            &tenant,
            wide_embedder.embed_one("note in the wider space")
        )
        .await,
        Some(wide)
    );
}
