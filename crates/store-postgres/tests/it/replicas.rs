//! Reads from a streaming replica, on a primary and a hot standby of the test's own (initdb
//! and `pg_basebackup -R` into temporary directories on free ports; the shared server is never
//! touched): recall, history and export are served by the replica when it may, a tenant's own
//! write is always visible to its next read, a replica too far behind is skipped, and a replica
//! killed under load sends reads to the primary without a failed read or a lost write.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astrocyte_core::browse::ChangeQuery;
use astrocyte_core::{Engine, RecallRequest, Schema, Store};
use astrocyte_store_postgres::{PostgresOptions, PostgresStore, ReplicaOptions};

use crate::support::connect;
use crate::{engine, recalled, retain};
use astrocyte_store_tests::instances::{as_postgres, data_root, Instance};

/// A primary and one streaming replica of it.
struct Pair {
    // Dropped last: the servers stop before their directory goes.
    primary: Instance,
    replica: Instance,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start() -> Pair {
        let dir = data_root();
        let mut primary = Instance::init(
            dir.path(),
            "primary",
            "wal_level = replica\nmax_wal_senders = 4\nfsync = off\n",
        );
        primary.start();
        // The replica is no initdb: pg_basebackup fills its data directory.
        let mut replica = Instance {
            data: dir.path().join("replica"),
            port: astrocyte_store_tests::instances::free_port(),
        };
        let replica_data = replica.data.to_string_lossy().to_string();
        let port = primary.port.to_string();
        // -R writes standby.signal and primary_conninfo: the copy starts as a hot standby.
        as_postgres(
            "pg_basebackup",
            &[
                "-D",
                &replica_data,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        replica.start();
        let client = connect(&replica.url()).await;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("replica answers");
        assert!(row.get::<_, bool>(0), "the copy runs as a standby");
        Pair {
            primary,
            replica,
            _dir: dir,
        }
    }

    async fn store(&self, max_lag: Duration) -> PostgresStore {
        PostgresStore::connect(
            &self.primary.url(),
            PostgresOptions {
                pool_size: 4,
                pool_wait_timeout: Duration::from_secs(5),
                replicas: ReplicaOptions {
                    urls: vec![self.replica.url()],
                    max_lag,
                    wait: Duration::from_millis(50),
                },
                ..PostgresOptions::default()
            },
        )
        .await
        .expect("connect store")
    }

    /// Waits until the replica has replayed everything the primary has written, including
    /// WAL not flushed yet (a read's page pruning, say): a commit that wrote WAL flushes it
    /// (one that only took an xid would not).
    async fn caught_up(&self) {
        let primary = connect(&self.primary.url()).await;
        let replica = connect(&self.replica.url()).await;
        primary
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS flushes (at timestamptz); \
                 INSERT INTO flushes VALUES (now())",
            )
            .await
            .expect("flushing commit");
        let target: String = primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("primary position")
            .get(0);
        let started = Instant::now();
        loop {
            let done: bool = replica
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&target],
                )
                .await
                .expect("replay position")
                .get(0);
            if done {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "replica never caught up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn replica_sql(&self, sql: &str) {
        connect(&self.replica.url())
            .await
            .batch_execute(sql)
            .await
            .expect("replica statement");
    }
}

/// Waits until the monitor of each of `stores` stores has polled the replica (its connection
/// there shows the poll as its last query), then for one more poll (every 250 ms at most):
/// a fixed sleep is not enough on a loaded machine.
async fn monitors_settle(pair: &Pair, stores: i64) {
    let replica = connect(&pair.replica.url()).await;
    let started = Instant::now();
    loop {
        let polled: i64 = replica
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'astrocyte-replica-monitor' \
                 AND query LIKE 'SELECT pg_is_in_recovery()%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if polled >= stores {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {polled} of {stores} monitors polled the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn history(engine: &Engine, schema: &Schema) -> Vec<String> {
    engine
        .changes(
            schema,
            "notes",
            ChangeQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("history")
        .changes
        .into_iter()
        .map(|entry| entry.change.memory_id)
        .collect()
}

async fn exported(engine: &Engine, schema: &Schema) -> String {
    let mut out = Vec::new();
    engine
        .export(schema, "notes", false, &mut out)
        .await
        .expect("export");
    String::from_utf8(out).expect("utf-8 export")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_a_replica_see_their_writes_and_survive_its_death() {
    let pair = Pair::start().await;
    let schema = Schema::new("tenant_replicated").expect("valid");

    // The writer's store trusts the replica whatever its lag: only its guard protects it.
    let writer_store = pair.store(Duration::from_secs(60)).await;
    writer_store
        .create_tenant(&schema)
        .await
        .expect("create tenant");
    let writer = Arc::new(engine(Arc::new(writer_store.clone())));
    let first = retain(&writer, &schema, "notes", "the first note about gardening").await;
    pair.caught_up().await;

    // Two more processes' worth of stores, opened before the next write: one trusts the
    // replica for a minute, one for 300 ms.
    let patient_store = pair.store(Duration::from_secs(60)).await;
    let patient = Arc::new(engine(Arc::new(patient_store)));
    let strict = engine(Arc::new(pair.store(Duration::from_millis(300)).await));
    monitors_settle(&pair, 3).await;
    assert!(recalled(&patient, &schema, "gardening")
        .await
        .contains(&first));
    assert!(recalled(&strict, &schema, "gardening")
        .await
        .contains(&first));

    // With replay paused the replica stays at the first note. It first replays all the
    // primary wrote so far: the readers' targets (the primary's position when they opened)
    // must be behind the pause, or they rightly go to the primary.
    pair.caught_up().await;
    pair.replica_sql("SELECT pg_wal_replay_pause()").await;
    let second = retain(&writer, &schema, "notes", "a second note about beekeeping").await;

    // Read-your-writes: the writer's own reads find its write at once, on every path.
    assert!(recalled(&writer, &schema, "beekeeping")
        .await
        .contains(&second));
    assert!(history(&writer, &schema).await.contains(&second));
    assert!(exported(&writer, &schema).await.contains(&second));

    // Another process knows nothing of that write: its reads come from the replica, which
    // has not replayed it. This is what proves the replica serves them.
    let from_replica = recalled(&patient, &schema, "beekeeping").await;
    assert!(from_replica.contains(&first), "{from_replica:?}");
    assert!(!from_replica.contains(&second), "{from_replica:?}");
    let feed = history(&patient, &schema).await;
    assert!(feed.contains(&first) && !feed.contains(&second), "{feed:?}");
    let export = exported(&patient, &schema).await;
    assert!(export.contains(&first) && !export.contains(&second));
    let replica = connect(&pair.replica.url()).await;
    let readers: i64 = replica
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'astrocyte-replica'",
            &[],
        )
        .await
        .expect("activity")
        .get(0);
    assert!(readers > 0, "no store connection on the replica");

    // Beyond 300 ms of lag the strict store reads from the primary instead.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(recalled(&strict, &schema, "beekeeping")
        .await
        .contains(&second));
    assert!(!recalled(&patient, &schema, "beekeeping")
        .await
        .contains(&second));

    // Replay resumed, the replica serves the second note too.
    pair.replica_sql("SELECT pg_wal_replay_resume()").await;
    pair.caught_up().await;
    assert!(recalled(&patient, &schema, "beekeeping")
        .await
        .contains(&second));

    // Under load, the replica's postmaster is killed. Every retain is followed by a recall of
    // it; every read must succeed and see its write, and no acknowledged write may be lost.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let reads_after_kill = Arc::new(Mutex::new(0usize));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (writer, schema) = (writer.clone(), schema.clone());
            let (patient, acknowledged, failures) =
                (patient.clone(), acknowledged.clone(), failures.clone());
            let (stop, killed, reads_after_kill) =
                (stop.clone(), killed.clone(), reads_after_kill.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let word = format!("loadword{w}x{n}");
                    // Random words, so no two are near-duplicates.
                    let noise: Vec<String> = (0..6)
                        .map(|_| uuid::Uuid::new_v4().simple().to_string()[..10].to_string())
                        .collect();
                    let content = format!("{word} {}", noise.join(" "));
                    let after_kill = killed.load(Ordering::SeqCst);
                    let id = retain(&writer, &schema, "notes", &content).await;
                    acknowledged.lock().expect("ids").push(id.clone());
                    match writer
                        .recall(
                            &schema,
                            RecallRequest {
                                query: word.clone(),
                                banks: vec!["notes".into()],
                                max_results: Some(5),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        Ok(result) if result.hits.iter().any(|h| h.memory.id == id) => {}
                        Ok(_) => failures
                            .lock()
                            .expect("failures")
                            .push(format!("{word} unseen")),
                        Err(error) => failures.lock().expect("failures").push(error.to_string()),
                    }
                    // A reader that never wrote: replica when it can, else the primary.
                    if let Err(error) = patient
                        .recall(
                            &schema,
                            RecallRequest {
                                query: "note".into(),
                                banks: vec!["notes".into()],
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        failures.lock().expect("failures").push(error.to_string());
                    }
                    if after_kill {
                        *reads_after_kill.lock().expect("count") += 2;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The replica serves the load until it dies: store connections on it changed state since
    // the load began.
    let busy: i64 = replica
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'astrocyte-replica' \
             AND state_change > now() - interval '900 milliseconds'",
            &[],
        )
        .await
        .expect("activity")
        .get(0);
    assert!(busy > 0, "the replica served none of the load");
    let status = Command::new("kill")
        .args(["-KILL", &pair.replica.pid()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "the replica's postmaster was signalled");
    killed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    let failures = failures.lock().expect("failures").clone();
    assert!(failures.is_empty(), "failed reads: {failures:?}");
    assert!(
        *reads_after_kill.lock().expect("count") > 0,
        "no read ran after the kill"
    );

    // Every acknowledged write is on the primary.
    let ids = acknowledged.lock().expect("ids").clone();
    assert!(ids.len() > 10, "too little load: {}", ids.len());
    let primary = connect(&pair.primary.url()).await;
    let found: i64 = primary
        .query_one(
            "SELECT count(*) FROM tenant_replicated.astrocyte_memories WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("count on the primary")
        .get(0);
    assert_eq!(found, ids.len() as i64);
}
