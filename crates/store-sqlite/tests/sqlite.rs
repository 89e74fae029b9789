//! Behaviour specific to the SQLite store: durability across `kill -9` of a real child
//! process, vector index snapshots (reload, catch-up, corruption, purge), files on disk,
//! migrations on reopen, and concurrent readers.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::store::SearchRequest;
use astrocyte_core::{
    BankId, Engine, EngineConfig, ErrorKind, ForgetMode, ForgetSelector, RecallFilter,
    RecallRequest, RetainRequest, Schema, Store,
};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};

fn engine_over(dir: &Path, options: SqliteOptions) -> (Arc<SqliteStore>, Engine) {
    let store = Arc::new(SqliteStore::open(dir, options).expect("open store"));
    let engine = Engine::new(
        store.clone(),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    );
    (store, engine)
}

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("valid schema")
}

fn bank(name: &str) -> BankId {
    BankId::new(name).expect("valid bank")
}

/// Retain requests for `count` distinct notes into bank `b`.
fn notes(count: usize) -> Vec<RetainRequest> {
    (0..count)
        .map(|i| RetainRequest {
            bank_id: "b".into(),
            content: text_of(i),
            ..Default::default()
        })
        .collect()
}

fn text_of(i: usize) -> String {
    format!(
        "Durable note n{i} about harbour h{} and lantern l{}",
        i * 7 + 3,
        i * 13 + 5
    )
}

async fn retain(engine: &Engine, tenant: &Schema, bank: &str, content: &str) -> String {
    let outcome = engine
        .retain(
            tenant,
            RetainRequest {
                bank_id: bank.into(),
                content: content.into(),
                ..Default::default()
            },
        )
        .await
        .expect("retain");
    assert!(outcome.stored, "{outcome:?}");
    outcome.memory_id.expect("id")
}

/// The ids semantic search alone returns for `probe`.
async fn semantic_ids(
    store: &SqliteStore,
    tenant: &Schema,
    bank_name: &str,
    probe: &str,
    limit: usize,
) -> Vec<String> {
    let handle = store.tenant(tenant).await.expect("tenant");
    let response = handle
        .search(&SearchRequest {
            banks: vec![bank(bank_name)],
            vector: Some(HashingEmbedder::default().embed_one(probe)),
            text: None,
            recency: false,
            limit,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    response
        .semantic
        .expect("semantic")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect()
}

const CHILD_DIR: &str = "ASTROCYTE_SQLITE_KILL_CHILD_DIR";

/// Acting as the child: retains memories one by one forever, printing each id once `retain`
/// has returned. The parent kills it with SIGKILL.
fn run_retain_child(dir: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (_store, engine) = engine_over(Path::new(dir), SqliteOptions::default());
        let tenant = schema("durable");
        let mut stdout = std::io::stdout();
        for i in 0.. {
            let id = retain(&engine, &tenant, "log", &text_of(i)).await;
            use std::io::Write;
            writeln!(stdout, "ACK {i} {id}").expect("stdout");
            stdout.flush().expect("flush");
        }
    });
    unreachable!("the child loops until killed")
}

/// Every memory `retain` acknowledged before a `kill -9` is there after reopening, and
/// recallable. The test re-executes its own binary as the child process.
#[test]
fn acknowledged_memories_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        run_retain_child(&dir);
    }
    const WANTED: usize = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "acknowledged_memories_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged: Vec<(usize, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (index, id) = rest.split_once(' ').expect("ACK <index> <id>");
            acknowledged.push((index.parse().expect("index"), id.to_string()));
        }
        if acknowledged.len() >= WANTED || Instant::now() > deadline {
            break;
        }
    }
    // std's kill sends SIGKILL on Unix: no destructor, no checkpoint, no snapshot.
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap child");
    assert!(!status.success(), "the child was killed, it did not exit");
    assert_eq!(
        acknowledged.len(),
        WANTED,
        "child acknowledged too few memories before the deadline"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (store, engine) = engine_over(dir.path(), SqliteOptions::default());
        let tenant = schema("durable");
        let handle = store.tenant(&tenant).await.expect("tenant");
        let ids: Vec<String> = acknowledged.iter().map(|(_, id)| id.clone()).collect();
        let found = handle.get(&bank("log"), &ids).await.expect("get");
        assert_eq!(found.len(), WANTED, "every acknowledged memory survived");
        assert!(handle.count(&bank("log")).await.expect("count") >= WANTED as u64);
        for (index, id) in acknowledged.iter().step_by(7) {
            let recalled = engine
                .recall(
                    &tenant,
                    RecallRequest {
                        query: text_of(*index),
                        banks: vec!["log".into()],
                        ..Default::default()
                    },
                )
                .await
                .expect("recall");
            assert_eq!(
                recalled.hits.first().map(|h| &h.memory.id),
                Some(id),
                "memory {index} is recallable"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_data_dir_is_invalid_input_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("does-not-exist");
    let error = SqliteStore::open(&missing, SqliteOptions::default()).expect_err("missing dir");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains("does-not-exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_per_tenant_and_drop_leaves_nothing_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, engine) = engine_over(dir.path(), SqliteOptions::default());
    let (alpha, beta) = (schema("alpha"), schema("beta"));
    retain(&engine, &alpha, "b", "Alpha remembers the red door").await;
    retain(&engine, &beta, "b", "Beta remembers the blue window").await;
    std::fs::write(dir.path().join("not-a-tenant!.db"), b"").expect("stray file");
    std::fs::write(dir.path().join("notes.txt"), b"").expect("stray file");
    assert!(dir.path().join("alpha.db").is_file() && dir.path().join("beta.db").is_file());
    let listed: Vec<String> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema.to_string())
        .collect();
    assert_eq!(listed, vec!["alpha", "beta"]);

    let held = store
        .tenant(&alpha)
        .await
        .expect("handle kept across the drop");
    store.drop_tenant(&alpha).await.expect("drop");
    let left: BTreeSet<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|name| !name.starts_with("alpha")),
        "nothing of alpha remains: {left:?}"
    );
    assert!(left.contains("beta.db"));
    let stale = held
        .count(&bank("b"))
        .await
        .expect_err("a handle of a dropped tenant is dead");
    assert_eq!(stale.kind(), ErrorKind::NotFound);
    let recalled = engine
        .recall(
            &beta,
            RecallRequest {
                query: "blue window".into(),
                banks: vec!["b".into()],
                ..Default::default()
            },
        )
        .await
        .expect("recall");
    assert_eq!(recalled.hits.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_and_applies_migrations_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tenant = schema("reopen");
    let id = {
        let (_store, engine) = engine_over(dir.path(), SqliteOptions::default());
        retain(
            &engine,
            &tenant,
            "b",
            "The spare key is under the blue flowerpot",
        )
        .await
    };
    for _ in 0..2 {
        let (store, _engine) = engine_over(dir.path(), SqliteOptions::default());
        assert_eq!(
            semantic_ids(&store, &tenant, "b", "spare key flowerpot", 5).await,
            vec![id.clone()]
        );
    }
    let conn = rusqlite::Connection::open(dir.path().join("reopen.db")).expect("open file");
    let (count, journal): (i64, String) = (
        conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .expect("ledger"),
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode"),
    );
    assert_eq!(count, 10, "each of the ten migrations recorded once");
    assert_eq!(journal, "wal");
}

/// Reads a bank's stored snapshot: (max_rowid, index).
fn stored_snapshot(db: &Path, bank_name: &str) -> Option<(i64, astrocyte_ann::HnswIndex)> {
    let conn = rusqlite::Connection::open(db).expect("open file");
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT max_rowid, data FROM vector_index WHERE bank_id = ?1",
            [bank_name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    row.map(|(max, mut data)| {
        // The first piece is in vector_index (empty when streamed), the rest follow in order.
        let mut statement = conn
            .prepare("SELECT data FROM vector_index_chunks WHERE bank_id = ?1 ORDER BY seq")
            .expect("prepare");
        let pieces = statement
            .query_map([bank_name], |r| r.get::<_, Vec<u8>>(0))
            .expect("pieces");
        for piece in pieces {
            data.extend(piece.expect("piece"));
        }
        (
            max,
            astrocyte_ann::HnswIndex::read_from(&mut data.as_slice()).expect("readable snapshot"),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_index_snapshot_is_reused_caught_up_and_rebuilt_when_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tenant = schema("snap");
    let db = dir.path().join("snap.db");
    let options = SqliteOptions::default();
    let mut ids = Vec::new();
    {
        let (store, engine) = engine_over(dir.path(), options.clone());
        for i in 0..60 {
            ids.push(retain(&engine, &tenant, "b", &text_of(i)).await);
        }
        store.flush().await.expect("flush snapshots");
    }
    let (max_rowid, index) = stored_snapshot(&db, "b").expect("a snapshot was written");
    assert_eq!(index.len(), 60);
    assert_eq!(max_rowid, 60);

    // Rows written and forgotten behind the snapshot's back (the index is never loaded here).
    {
        let (store, engine) = engine_over(dir.path(), options.clone());
        let handle = store.tenant(&tenant).await.expect("tenant");
        handle.count(&bank("b")).await.expect("count");
        let conn = rusqlite::Connection::open(&db).expect("open file");
        conn.execute(
            "UPDATE memories SET forgotten_at = 1 WHERE id = ?1",
            [&ids[3]],
        )
        .expect("forget by hand");
        drop(conn);
        for i in 60..70 {
            ids.push(retain_without_index(&engine, &tenant, i).await);
        }
    }
    {
        let (store, _engine) = engine_over(dir.path(), options.clone());
        assert_eq!(
            semantic_ids(&store, &tenant, "b", &text_of(65), 1).await,
            vec![ids[65].clone()],
            "caught up"
        );
        assert!(
            !semantic_ids(&store, &tenant, "b", &text_of(3), 80)
                .await
                .contains(&ids[3]),
            "forgotten row dropped"
        );
        assert_eq!(
            semantic_ids(&store, &tenant, "b", &text_of(10), 1).await,
            vec![ids[10].clone()]
        );
    }
    let (max_rowid, index) = stored_snapshot(&db, "b").expect("snapshot rewritten on drop");
    assert_eq!((max_rowid, index.len()), (70, 69));

    let conn = rusqlite::Connection::open(&db).expect("open file");
    conn.execute("UPDATE vector_index SET data = x'00112233445566778899'", [])
        .expect("corrupt it");
    drop(conn);
    let (store, _engine) = engine_over(dir.path(), options);
    assert_eq!(
        semantic_ids(&store, &tenant, "b", &text_of(42), 1).await,
        vec![ids[42].clone()],
        "rebuilt from rows"
    );
    assert_eq!(
        semantic_ids(&store, &tenant, "b", &text_of(3), 80)
            .await
            .len(),
        69
    );
}

/// Inserts through the tenant handle without ever loading the bank's index in this process.
async fn retain_without_index(engine: &Engine, tenant: &Schema, i: usize) -> String {
    let handle = engine.tenant(tenant).await.expect("tenant");
    let text = text_of(i);
    let id = uuid::Uuid::now_v7().to_string();
    let memory = astrocyte_core::Memory::new(id.clone(), bank("b"), text.clone());
    let embedding = HashingEmbedder::default().embed_one(&text);
    handle
        .insert(vec![astrocyte_core::NewMemory::plain(memory, embedding)])
        .await
        .expect("insert");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_erases_vectors_from_snapshots_and_text_from_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tenant = schema("gdpr");
    let db = dir.path().join("gdpr.db");
    let (store, engine) = engine_over(dir.path(), SqliteOptions::default());
    for i in 0..30 {
        retain(&engine, &tenant, "b", &text_of(i)).await;
    }
    let secret = retain(
        &engine,
        &tenant,
        "b",
        "Patient zqxwvmarker was diagnosed with flu",
    )
    .await;
    store.flush().await.expect("flush");
    let (_, before) = stored_snapshot(&db, "b").expect("snapshot");
    assert_eq!(before.len(), 31);

    let selector = ForgetSelector {
        memory_ids: Some(vec![secret.clone()]),
        ..Default::default()
    };
    assert_eq!(
        engine
            .forget(&tenant, "b", &selector, ForgetMode::Purge)
            .await
            .expect("purge"),
        1
    );
    assert!(
        stored_snapshot(&db, "b").is_none(),
        "the snapshot holding the vector is deleted with the row"
    );
    store.flush().await.expect("flush");
    let (_, after) = stored_snapshot(&db, "b").expect("snapshot rewritten");
    assert_eq!(
        (after.len(), after.tombstones()),
        (30, 0),
        "rewritten compacted: no purged vector inside"
    );

    let conn = rusqlite::Connection::open(&db).expect("open file");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    let bytes = std::fs::read(&db).expect("read db");
    let needle = b"zqxwvmarker";
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "purged text left in the database file"
    );
    assert!(!semantic_ids(
        &store,
        &tenant,
        "b",
        "Patient zqxwvmarker was diagnosed with flu",
        40
    )
    .await
    .contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recalls_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_store, engine) = engine_over(dir.path(), SqliteOptions::default());
    let engine = Arc::new(engine);
    let tenant = schema("busy");
    engine
        .retain_many(&tenant, notes(200))
        .await
        .expect("retain_many");
    let query = || RecallRequest {
        query: text_of(77),
        banks: vec!["b".into()],
        ..Default::default()
    };
    let expected: Vec<String> = engine
        .recall(&tenant, query())
        .await
        .expect("recall")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let tenant = tenant.clone();
            let query = query();
            tokio::spawn(async move {
                let mut last = Vec::new();
                for _ in 0..10 {
                    last = engine
                        .recall(&tenant, query.clone())
                        .await
                        .expect("recall")
                        .hits
                        .into_iter()
                        .map(|h| h.memory.id)
                        .collect();
                }
                last
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tenants_are_closed_beyond_the_limit_and_reopen_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        max_open_tenants: 2,
        ..SqliteOptions::default()
    };
    let (store, engine) = engine_over(dir.path(), options);
    let names = ["t_one", "t_two", "t_three", "t_four"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(
            retain(
                &engine,
                &schema(name),
                "b",
                &format!("Tenant {name} keeps the amber compass"),
            )
            .await,
        );
        assert!(
            store.open_tenant_count().await <= 2,
            "idle tenants beyond the limit are closed"
        );
    }
    for (name, id) in names.iter().zip(&ids) {
        assert_eq!(
            semantic_ids(
                &store,
                &schema(name),
                "b",
                &format!("Tenant {name} keeps the amber compass"),
                1
            )
            .await,
            vec![id.clone()]
        );
    }
    // Held handles are never closed under their holder, even past the limit.
    let held: Vec<_> = hold_all(&store, &names).await;
    assert_eq!(store.open_tenant_count().await, 4);
    for handle in &held {
        assert_eq!(handle.count(&bank("b")).await.expect("count"), 1);
    }
    drop(held);
    store
        .drop_tenant(&schema("t_one"))
        .await
        .expect("drop an evicted or open tenant");
    assert!(!dir.path().join("t_one.db").exists());
}

async fn hold_all(
    store: &SqliteStore,
    names: &[&str],
) -> Vec<Arc<dyn astrocyte_core::TenantStore>> {
    let mut handles = Vec::new();
    for name in names {
        handles.push(store.tenant(&schema(name)).await.expect("tenant"));
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_written_in_the_background_every_n_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        snapshot_every: 20,
        ..SqliteOptions::default()
    };
    let (_store, engine) = engine_over(dir.path(), options);
    let tenant = schema("background");
    // The first retain loads the (empty) index; later ones add to it.
    for i in 0..25 {
        retain(&engine, &tenant, "b", &text_of(i)).await;
    }
    let db = dir.path().join("background.db");
    let deadline = Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        if let Some(found) = stored_snapshot(&db, "b") {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no background snapshot after 20 changes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        snapshot.1.len() >= 20,
        "the snapshot holds the indexed rows: {}",
        snapshot.1.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_semantic_strategy_fetches_its_own_depth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open"));
    let tenant = schema("deep");
    let engine = |semantic_depth: usize| {
        let mut config = EngineConfig::default();
        config.fusion.semantic_depth = semantic_depth;
        Engine::new(store.clone(), Arc::new(HashingEmbedder::default()), config)
    };
    engine(100)
        .retain_many(&tenant, notes(200))
        .await
        .expect("retain_many");
    // Candidates per strategy for (semantic depth, max_results): the semantic strategy
    // fetches its depth, at least max_results, at most what the others fetch (the reranker's
    // depth, 100, or max_results × overfetch, 5, when that is more).
    for (depth, max_results, semantic, keyword) in [
        (100, 10, 100, 100),
        (30, 10, 30, 100),
        (70, 10, 70, 100),
        (30, 40, 40, 200),
        (500, 10, 100, 100),
    ] {
        let recalled = engine(depth)
            .recall(
                &tenant,
                RecallRequest {
                    query: "durable note about harbour and lantern".into(),
                    banks: vec!["b".into()],
                    max_results: Some(max_results),
                    ..Default::default()
                },
            )
            .await
            .expect("recall");
        let counts = &recalled.trace.strategy_candidate_counts;
        assert_eq!(
            counts.get("semantic"),
            Some(&semantic),
            "depth {depth}: {counts:?}"
        );
        assert_eq!(
            counts.get("keyword"),
            Some(&keyword),
            "depth {depth}: {counts:?}"
        );
    }
}
