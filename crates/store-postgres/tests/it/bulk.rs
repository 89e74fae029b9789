//! Bulk loads: an import into a small tenant sets the vector index aside and builds it once
//! at the end; searches stay right meanwhile; an import cut short leaves it to be built by
//! whoever uses the tenant next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use astrocyte_core::portability::OnConflict;
use astrocyte_core::{BankId, Memory, NewMemory, Schema, Store};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};

use crate::support::{first_column, TestDb};

/// The tenant's HNSW indexes and whether its meta table holds the set-aside mark.
async fn index_state(admin: &tokio_postgres::Client, schema: &str) -> (usize, bool) {
    let indexes: Vec<String> = first_column(
        admin,
        &format!(
            "SELECT indexname::text FROM pg_indexes \
             WHERE schemaname = '{schema}' AND indexdef LIKE '%USING hnsw%'"
        ),
    )
    .await;
    let marks: Vec<String> = first_column(
        admin,
        &format!("SELECT key FROM \"{schema}\".astrocyte_meta WHERE key = 'vector_index_deferred'"),
    )
    .await;
    (indexes.len(), !marks.is_empty())
}

/// Waits until the tenant has its index back and no mark.
async fn index_rebuilt(admin: &tokio_postgres::Client, schema: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = index_state(admin, schema).await;
        if state == (1, false) {
            return;
        }
        assert!(Instant::now() < deadline, "index never rebuilt: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An import of `records` records into bank `notes` on a task of its own, whose file stays
/// open after them: the import reads them all, then waits for more until `writer` is dropped.
async fn import_in_task(
    store: &Arc<dyn Store>,
    schema: &Schema,
    records: usize,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<astrocyte_core::Result<astrocyte_core::portability::ImportReport>>,
) {
    let (mut writer, reader) = tokio::io::duplex(1 << 20);
    writer.write_all(&ama(records)).await.expect("write");
    let engine = crate::engine(store.clone());
    let schema = schema.clone();
    let importing = tokio::spawn(async move {
        let reader = tokio::io::BufReader::new(reader);
        engine
            .import(&schema, "notes", OnConflict::Skip, reader)
            .await
    });
    (writer, importing)
}

/// Waits until the tenant's memories table holds at least `rows`.
async fn until_stored(admin: &tokio_postgres::Client, schema: &str, rows: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: Vec<i64> = first_column(
            admin,
            &format!("SELECT count(*) FROM \"{schema}\".astrocyte_memories"),
        )
        .await;
        if stored.first().copied().unwrap_or(0) >= rows {
            return;
        }
        assert!(Instant::now() < deadline, "only {stored:?} rows stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pseudo-random vector per `i`: no two of a test's are near-duplicates of each other.
fn vector(i: usize, dimension: usize) -> Vec<f32> {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..dimension)
        .map(|_| {
            state ^= state >> 29;
            state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            state ^= state >> 32;
            (state % 2_001) as f32 / 1_000.0 - 1.0
        })
        .collect()
}

fn rows_of(bank: &BankId, from: usize, count: usize, dimension: usize) -> Vec<NewMemory> {
    (from..from + count)
        .map(|i| {
            let memory = Memory::new(format!("m{i}"), bank.clone(), "text");
            NewMemory::plain(memory, vector(i, dimension))
        })
        .collect()
}

fn rows(bank: &BankId, from: usize, count: usize) -> Vec<NewMemory> {
    rows_of(bank, from, count, 8)
}

fn probe(i: usize) -> Vec<f32> {
    vector(i, 8)
}

async fn tenant_named(store: &PostgresStore, name: &str) -> Schema {
    let schema = Schema::new(name).expect("schema");
    store.create_tenant(&schema).await.expect("create tenant");
    schema
}

fn ama(count: usize) -> Vec<u8> {
    let mut file = String::from(
        "{\"_ama_version\":1,\"bank_id\":\"x\",\"exported_at\":\"2024-01-01T00:00:00Z\",\
         \"provider\":\"test\",\"memory_count\":0}\n",
    );
    for i in 0..count {
        file.push_str(&format!(
            "{{\"id\":\"r{i}\",\"text\":\"record {i} about harbor number {}\"}}\n",
            i * 7
        ));
    }
    file.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_builds_the_index_once_at_its_end_and_searches_stay_right() {
    let db = TestDb::create().await;
    let admin = db.admin().await;
    let store = db
        .store_with(PostgresOptions {
            bulk_load_below: 100,
            ..db.options()
        })
        .await;
    let bank = BankId::new("notes").expect("bank");

    // An untyped tenant: the load's first rows type the column and build no index.
    let schema = tenant_named(&store, "bulk_new").await;
    let tenant = store.tenant(&schema).await.expect("handle");
    assert!(tenant.begin_bulk_load().await.expect("begin"));
    assert_eq!(index_state(&admin, "bulk_new").await, (0, true));
    tenant.insert(rows(&bank, 0, 60)).await.expect("insert");
    tenant.insert(rows(&bank, 60, 60)).await.expect("insert");
    assert_eq!(index_state(&admin, "bulk_new").await, (0, true));
    // Meanwhile a search is exact, and right.
    let found = tenant
        .nearest_each(&bank, &[probe(42), probe(117)], 0.99)
        .await
        .expect("probe");
    let ids: Vec<Option<&str>> = found
        .iter()
        .map(|hit| hit.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    assert_eq!(ids, [Some("m42"), Some("m117")]);
    tenant.end_bulk_load().await.expect("end");
    assert_eq!(index_state(&admin, "bulk_new").await, (1, false));
    let found = tenant
        .nearest_each(&bank, &[probe(42)], 0.99)
        .await
        .expect("probe");
    assert_eq!(found[0].as_ref().map(|(id, _)| id.as_str()), Some("m42"));

    // The tenant now holds 120 rows, past the bound: a second load leaves the index alone.
    assert!(!tenant.begin_bulk_load().await.expect("begin"));
    assert_eq!(index_state(&admin, "bulk_new").await, (1, false));

    // A typed tenant under the bound: its index is dropped, then built again over every row.
    let typed = tenant_named(&store, "bulk_typed").await;
    let small = store.tenant(&typed).await.expect("handle");
    small.insert(rows(&bank, 0, 10)).await.expect("insert");
    assert_eq!(index_state(&admin, "bulk_typed").await, (1, false));
    assert!(small.begin_bulk_load().await.expect("begin"));
    assert_eq!(index_state(&admin, "bulk_typed").await, (0, true));
    small.insert(rows(&bank, 10, 50)).await.expect("insert");
    small.end_bulk_load().await.expect("end");
    assert_eq!(index_state(&admin, "bulk_typed").await, (1, false));
    let found = small
        .nearest_each(&bank, &[probe(7), probe(55)], 0.99)
        .await
        .expect("probe");
    assert!(found.iter().all(Option::is_some), "{found:?}");

    // Bound 0: never.
    let never = db
        .store_with(PostgresOptions {
            bulk_load_below: 0,
            ..db.options()
        })
        .await;
    let off = tenant_named(&never, "bulk_off").await;
    assert!(!never
        .tenant(&off)
        .await
        .expect("handle")
        .begin_bulk_load()
        .await
        .expect("begin"));
    assert_eq!(index_state(&admin, "bulk_off").await, (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_sets_the_index_aside_and_one_cut_short_is_finished_by_the_next_user() {
    let db = TestDb::create().await;
    let admin = db.admin().await;
    let store: Arc<dyn Store> = Arc::new(db.store().await);
    let engine = crate::engine(store.clone());

    // A whole import of two batches and more: the index is there at the end, and recall
    // finds what came in.
    let whole = tenant_named(&db.store().await, "imp_whole").await;
    let report = engine
        .import(&whole, "notes", OnConflict::Skip, ama(600).as_slice())
        .await
        .expect("import");
    assert_eq!((report.imported, report.errors), (600, 0));
    assert_eq!(index_state(&admin, "imp_whole").await, (1, false));
    let hits = crate::recalled(&engine, &whole, "record 123 about harbor").await;
    assert!(hits.contains(&"r123".to_string()), "{hits:?}");

    // One batch is not a bulk load: the index stays.
    let small = tenant_named(&db.store().await, "imp_small").await;
    let (writer, importing) = import_in_task(&store, &small, 400).await;
    until_stored(&admin, "imp_small", 256).await;
    assert_eq!(index_state(&admin, "imp_small").await, (1, false));
    drop(writer);
    let report = importing.await.expect("joined").expect("import");
    assert_eq!(report.imported, 400);

    // An import whose client hangs up half way (its task dropped while it waits for more
    // lines): the load set aside ends all the same, on a task of its own.
    let cut = tenant_named(&db.store().await, "imp_cut").await;
    let (writer, importing) = import_in_task(&store, &cut, 600).await;
    until_stored(&admin, "imp_cut", 512).await;
    assert_eq!(index_state(&admin, "imp_cut").await, (0, true));
    importing.abort();
    index_rebuilt(&admin, "imp_cut").await;
    drop(writer);

    // A process that stopped half way (its store gone without ending the load): the next
    // process to use the tenant builds the index.
    let crashed = tenant_named(&db.store().await, "imp_crash").await;
    {
        let first = db.store().await;
        let tenant = first.tenant(&crashed).await.expect("handle");
        assert!(tenant.begin_bulk_load().await.expect("begin"));
        let bank = BankId::new("notes").expect("bank");
        let dimension = HashingEmbedder::DEFAULT_DIMENSION;
        tenant
            .insert(rows_of(&bank, 0, 30, dimension))
            .await
            .expect("insert");
    }
    assert_eq!(index_state(&admin, "imp_crash").await, (0, true));
    let next: Arc<dyn Store> = Arc::new(db.store().await);
    let later = crate::engine(next);
    later.tenant(&crashed).await.expect("first use");
    index_rebuilt(&admin, "imp_crash").await;
}
