//! Migrations: where the DDL lands, the fan-out's per-tenant report, resuming after a crash,
//! a failing tenant not stopping the others, and two processes migrating at once.

use astrocyte_core::{Schema, Store};
use astrocyte_store_postgres::{MigrationStatus, PostgresStore, LATEST_MIGRATION};

use crate::support::{first_column, TestDb};

const TENANT_TABLES: [&str; 7] = [
    "astrocyte_changes",
    "astrocyte_jobs",
    "astrocyte_memories",
    "astrocyte_memory_entities",
    "astrocyte_meta",
    "astrocyte_migrations",
    "astrocyte_settings",
];

/// The full ledger of a current tenant.
const ALL: [i32; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

async fn create_tenants(store: &PostgresStore, names: &[&str]) -> Vec<Schema> {
    let mut schemas = Vec::new();
    for name in names {
        let schema = Schema::new(*name).expect("schema");
        store.create_tenant(&schema).await.expect("create tenant");
        schemas.push(schema);
    }
    schemas
}

async fn ledger(admin: &tokio_postgres::Client, schema: &str) -> Vec<i32> {
    first_column(
        admin,
        &format!("SELECT version FROM \"{schema}\".astrocyte_migrations ORDER BY version"),
    )
    .await
}

/// Simulates a tenant whose last migrations never committed (a crash mid-fan-out, or a tenant
/// created by an older release): rolls it back to `version`.
async fn roll_back_to(admin: &tokio_postgres::Client, schema: &str, version: i32) {
    let mut sql = String::new();
    if (2..9).contains(&version) {
        sql.push_str(&format!(
            "ALTER TABLE \"{schema}\".astrocyte_memories RESET (toast_tuple_target); "
        ));
    }
    if version < 7 {
        sql.push_str(&format!(
            "DROP TABLE \"{schema}\".astrocyte_memory_entities; "
        ));
    }
    if version < 6 {
        sql.push_str(&format!(
            "DROP TABLE \"{schema}\".astrocyte_changes; \
             DROP INDEX \"{schema}\".astrocyte_memories_retained; "
        ));
    }
    if (2..5).contains(&version) {
        sql.push_str(&format!(
            "DROP INDEX \"{schema}\".astrocyte_memories_thread; \
             ALTER TABLE \"{schema}\".astrocyte_memories DROP COLUMN thread; "
        ));
    }
    if version < 4 {
        sql.push_str(&format!(
            "DROP TABLE \"{schema}\".astrocyte_jobs; DROP TABLE \"{schema}\".astrocyte_settings; \
             DROP INDEX \"{schema}\".astrocyte_memories_id; "
        ));
    }
    if version < 3 {
        sql.push_str(&format!(
            "DROP INDEX \"{schema}\".astrocyte_memories_metadata; "
        ));
    }
    if version < 2 {
        sql.push_str(&format!("DROP TABLE \"{schema}\".astrocyte_memories; "));
    }
    sql.push_str(&format!(
        "DELETE FROM \"{schema}\".astrocyte_migrations WHERE version > {version}; "
    ));
    // An older release recorded no version in the directory.
    sql.push_str(&format!(
        "UPDATE public.astrocyte_tenants SET migrated_version = NULL WHERE schema = '{schema}'"
    ));
    admin.batch_execute(&sql).await.expect("roll back");
}

async fn public_relations(admin: &tokio_postgres::Client) -> Vec<String> {
    first_column(
        admin,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' ORDER BY 1",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_lands_in_its_tenant_schema_and_public_gains_nothing() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let before = public_relations(&admin).await;
    let schemas = create_tenants(&store, &["cat_one", "cat_two", "cat_three"]).await;
    let report = store.migrate_all_tenants().await.expect("fan-out");
    assert!(report.all_ok());
    for schema in &schemas {
        let role = store
            .tenant_record(schema)
            .await
            .expect("record")
            .expect("exists")
            .role;
        // Everything the tenant role owns lives in the tenant's schema (TOAST tables aside,
        // which PostgreSQL always keeps in pg_toast).
        let owned = admin
            .query(
                "SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1) \
                 AND n.nspname <> 'pg_toast'",
                &[&role.as_str()],
            )
            .await
            .expect("catalog");
        assert!(owned.len() >= 3);
        for row in &owned {
            assert_eq!(
                row.get::<_, String>(0),
                schema.as_str(),
                "{} is outside its schema",
                row.get::<_, String>(1)
            );
        }
        let mut tables: Vec<String> = owned
            .iter()
            .filter(|row| row.get::<_, String>(2) == "r")
            .map(|row| row.get(1))
            .collect();
        tables.sort();
        assert_eq!(tables, TENANT_TABLES);
        let schema_owner: String = admin
            .query_one(
                "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1",
                &[&schema.as_str()],
            )
            .await
            .expect("catalog")
            .get(0);
        assert_eq!(schema_owner, role.as_str());
        assert_eq!(ledger(&admin, schema.as_str()).await, ALL);
    }
    assert_eq!(
        public_relations(&admin).await,
        before,
        "public gained nothing"
    );
    assert!(before.contains(&"astrocyte_tenants".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reports_each_tenant_and_resumes_after_a_crash() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let schemas = create_tenants(&store, &["mig_a", "mig_b", "mig_c"]).await;

    let current = store.migrate_all_tenants().await.expect("fan-out");
    assert_eq!(current.tenants.len(), 3);
    assert!(current.tenants.iter().all(|t| t.status
        == MigrationStatus::AlreadyCurrent {
            version: LATEST_MIGRATION
        }));
    assert_eq!(
        current
            .tenants
            .iter()
            .map(|t| t.schema.clone())
            .collect::<Vec<_>>(),
        schemas
    );

    roll_back_to(&admin, "mig_b", 2).await;
    roll_back_to(&admin, "mig_c", 1).await;
    let resumed = store.migrate_all_tenants().await.expect("fan-out");
    let statuses: Vec<(String, MigrationStatus)> = resumed
        .tenants
        .iter()
        .map(|t| (t.schema.to_string(), t.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (
                "mig_a".into(),
                MigrationStatus::AlreadyCurrent {
                    version: LATEST_MIGRATION
                }
            ),
            (
                "mig_b".into(),
                MigrationStatus::Applied {
                    from: 2,
                    to: LATEST_MIGRATION
                }
            ),
            (
                "mig_c".into(),
                MigrationStatus::Applied {
                    from: 1,
                    to: LATEST_MIGRATION
                }
            ),
        ]
    );
    let lines: Vec<String> = resumed.tenants.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        lines,
        [
            "mig_a: already current (9)",
            "mig_b: ok (2 -> 9)",
            "mig_c: ok (1 -> 9)"
        ]
    );
    for name in ["mig_a", "mig_b", "mig_c"] {
        assert_eq!(ledger(&admin, name).await, ALL);
    }
    // A tenant behind is also brought up to date when first opened.
    roll_back_to(&admin, "mig_a", 2).await;
    store.tenant(&schemas[0]).await.expect("handle");
    assert_eq!(ledger(&admin, "mig_a").await, ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_is_reported_and_the_others_still_migrate() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    create_tenants(&store, &["ok_one", "broken", "ok_two"]).await;
    roll_back_to(&admin, "ok_one", 2).await;
    roll_back_to(&admin, "ok_two", 2).await;
    // The ledger says 3 is missing but its index exists: migration 3 fails on this tenant.
    roll_back_to(&admin, "broken", 3).await;
    admin
        .batch_execute("DELETE FROM broken.astrocyte_migrations WHERE version = 3")
        .await
        .expect("break");
    let report = store.migrate_all_tenants().await.expect("fan-out");
    assert!(!report.all_ok());
    let failed: Vec<String> = report.failed().map(|t| t.schema.to_string()).collect();
    assert_eq!(failed, vec!["broken".to_string()]);
    let broken = &report.tenants[0];
    match &broken.status {
        MigrationStatus::Failed { reached, message } => {
            assert_eq!(*reached, 2);
            assert!(message.contains("already exists"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(broken.to_string().starts_with("broken: failed"), "{broken}");
    assert_eq!(
        ledger(&admin, "broken").await,
        vec![1, 2],
        "the failed migration left no ledger row"
    );
    assert_eq!(ledger(&admin, "ok_one").await, ALL);
    assert_eq!(ledger(&admin, "ok_two").await, ALL);

    // Repaired, a re-run finishes it.
    admin
        .batch_execute("DROP INDEX broken.astrocyte_memories_metadata")
        .await
        .expect("repair");
    let rerun = store.migrate_all_tenants().await.expect("fan-out");
    assert!(rerun.all_ok());
    assert_eq!(
        rerun.tenants[0].status,
        MigrationStatus::Applied {
            from: 2,
            to: LATEST_MIGRATION
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_both_succeed() {
    let db = TestDb::create().await;
    let first = db.store().await;
    // A second store has its own pool: as far as PostgreSQL is concerned, another process.
    let second = db.store().await;
    let names = ["race_a", "race_b", "race_c", "race_d", "race_e", "race_f"];
    create_tenants(&first, &names).await;
    let admin = db.admin().await;
    for name in names {
        roll_back_to(&admin, name, 1).await;
    }
    let (one, two) = tokio::join!(first.migrate_all_tenants(), second.migrate_all_tenants());
    let (one, two) = (one.expect("fan-out one"), two.expect("fan-out two"));
    assert!(one.all_ok(), "{:?}", one.failed().collect::<Vec<_>>());
    assert!(two.all_ok(), "{:?}", two.failed().collect::<Vec<_>>());
    for (index, name) in names.iter().enumerate() {
        assert_eq!(ledger(&admin, name).await, ALL);
        let applied = |status: &MigrationStatus| matches!(status, MigrationStatus::Applied { .. });
        assert!(
            applied(&one.tenants[index].status) || applied(&two.tenants[index].status),
            "someone applied {name}'s migrations"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_skips_tenants_the_directory_records_as_current() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let schemas = create_tenants(&store, &["rec_a", "rec_b", "other_c"]).await;
    for schema in &schemas {
        let record = store
            .tenant_record(schema)
            .await
            .expect("record")
            .expect("exists");
        assert_eq!(
            record.migrated_version,
            Some(LATEST_MIGRATION),
            "recorded at creation"
        );
    }
    // Tenant roles cannot even read their ledger any more: a fan-out that opened a schema
    // recorded as current would fail on it.
    admin
        .batch_execute(
            "REVOKE ALL ON rec_a.astrocyte_migrations FROM PUBLIC; \
             ALTER TABLE rec_a.astrocyte_migrations OWNER TO postgres",
        )
        .await
        .expect("lock the ledger");
    let report = store.migrate_tenants(Some("rec_")).await.expect("fan-out");
    assert!(report.all_ok(), "{:?}", report.failed().collect::<Vec<_>>());
    let lines: Vec<String> = report.tenants.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        lines,
        ["rec_a: already current (9)", "rec_b: already current (9)"]
    );

    // One not recorded (an older release's) is checked through its ledger and recorded.
    roll_back_to(&admin, "rec_b", 4).await;
    assert_eq!(
        store
            .tenant_record(&schemas[1])
            .await
            .expect("record")
            .expect("exists")
            .migrated_version,
        None
    );
    let report = store.migrate_tenants(Some("rec_b")).await.expect("fan-out");
    assert_eq!(
        report.tenants[0].status,
        MigrationStatus::Applied {
            from: 4,
            to: LATEST_MIGRATION
        }
    );
    assert_eq!(
        store
            .tenant_record(&schemas[1])
            .await
            .expect("record")
            .expect("exists")
            .migrated_version,
        Some(LATEST_MIGRATION)
    );
    assert_eq!(ledger(&admin, "rec_b").await, ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_precision_index_is_rebuilt_on_the_half_precision_cast_by_migration_8() {
    use astrocyte_core::{BankId, Memory, NewMemory};

    let db = TestDb::create().await;
    let admin = db.admin().await;
    let schema = {
        let store = db.store().await;
        let schema = create_tenants(&store, &["half"]).await.remove(0);
        let tenant = store.tenant(&schema).await.expect("handle");
        let bank = BankId::new("notes").expect("bank");
        let rows = (0..40)
            .map(|i| {
                let mut v = vec![0.0f32; 6];
                v[i % 6] = 1.0;
                v[(i + 1) % 6] = i as f32 / 40.0;
                NewMemory::plain(Memory::new(format!("m{i}"), bank.clone(), "text"), v)
            })
            .collect();
        tenant.insert(rows).await.expect("insert");
        schema
    };
    // As a tenant of the previous release left it: the graph over the full-precision column.
    admin
        .batch_execute(
            "DROP INDEX half.astrocyte_memories_halfvec_hnsw; \
             CREATE INDEX astrocyte_memories_embedding_hnsw ON half.astrocyte_memories \
               USING hnsw (embedding vector_cosine_ops)",
        )
        .await
        .expect("old index");
    roll_back_to(&admin, "half", 7).await;

    // Opening it migrates it: one index, on the cast, at the store's parameters.
    let store = db.store().await;
    let tenant = store.tenant(&schema).await.expect("handle");
    assert_eq!(ledger(&admin, "half").await, ALL);
    let indexes: Vec<String> = first_column(
        &admin,
        "SELECT indexname || ': ' || indexdef FROM pg_indexes \
         WHERE schemaname = 'half' AND indexdef LIKE '%USING hnsw%'",
    )
    .await;
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(
        indexes[0].starts_with("astrocyte_memories_halfvec_hnsw: ")
            && indexes[0].contains("(embedding)::halfvec(6)")
            && indexes[0].contains("halfvec_cosine_ops"),
        "{indexes:?}"
    );
    let mut probe = vec![0.0f32; 6];
    probe[3] = 1.0;
    probe[4] = 3.0 / 40.0;
    let found = tenant
        .nearest_each(&BankId::new("notes").expect("bank"), &[probe], 0.99)
        .await
        .expect("probe");
    assert_eq!(found[0].as_ref().map(|(id, _)| id.as_str()), Some("m3"));
    // A tenant whose column was never typed has no index to rebuild; it migrates all the same.
    create_tenants(&store, &["untyped"]).await;
    roll_back_to(&admin, "untyped", 7).await;
    let report = store.migrate_all_tenants().await.expect("fan-out");
    assert!(report.all_ok());
    assert_eq!(ledger(&admin, "untyped").await, ALL);
    let untyped: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'untyped' AND indexdef LIKE '%hnsw%'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(untyped, 0);
}

/// Bytes in the TOAST table of a tenant's memories: what went out of line.
async fn out_of_line_bytes(admin: &tokio_postgres::Client, schema: &str) -> i64 {
    let sizes: Vec<i64> = first_column(
        admin,
        &format!(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class \
             WHERE oid = '{schema}.astrocyte_memories'::regclass"
        ),
    )
    .await;
    sizes[0]
}

/// `count` pseudo-random words: text that compression cannot shrink much.
fn varied_words(seed: u64, count: usize) -> String {
    let mut state = seed + 1;
    let words: Vec<String> = (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            format!("w{:x}", state >> 44)
        })
        .collect();
    words.join(" ")
}

/// Memories of 384-dimension vectors (1,544 bytes each) with a text that takes the row past
/// the 2 kB at which PostgreSQL starts moving values out of line.
fn wide_rows(bank: &astrocyte_core::BankId, from: usize) -> Vec<astrocyte_core::NewMemory> {
    use astrocyte_core::{Memory, NewMemory};
    (from..from + 60)
        .map(|i| {
            let mut v = vec![0.01f32; 384];
            v[i % 384] = 1.0;
            v[(i * 7 + 1) % 384] = 0.5;
            let text = format!("memory {i}: {}", varied_words(i as u64, 120));
            NewMemory::plain(Memory::new(format!("m{i}"), bank.clone(), text), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_stay_in_their_rows_from_migration_9() {
    use astrocyte_core::BankId;

    let db = TestDb::create().await;
    let admin = db.admin().await;
    let bank = BankId::new("notes").expect("bank");
    let schema = {
        let store = db.store().await;
        let schema = create_tenants(&store, &["inline"]).await.remove(0);
        let tenant = store.tenant(&schema).await.expect("handle");
        // As the previous release left a tenant: such rows go out of line.
        roll_back_to(&admin, "inline", 8).await;
        tenant.insert(wide_rows(&bank, 0)).await.expect("insert");
        schema
    };
    let before = out_of_line_bytes(&admin, "inline").await;
    assert!(
        before > 0,
        "without migration 9 the vectors went out of line"
    );

    // Opening the tenant migrates it; new rows of the same size stay whole.
    let store = db.store().await;
    let tenant = store.tenant(&schema).await.expect("handle");
    assert_eq!(ledger(&admin, "inline").await, ALL);
    let options: Vec<String> = first_column(
        &admin,
        "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'inline.astrocyte_memories'::regclass",
    )
    .await;
    assert_eq!(options, ["toast_tuple_target=8160"]);
    tenant.insert(wide_rows(&bank, 60)).await.expect("insert");
    assert_eq!(out_of_line_bytes(&admin, "inline").await, before);
    // A row too large for a page still goes out of line and reads back whole.
    let text = varied_words(7, 4_000);
    let mut v = vec![0.02f32; 384];
    v[5] = 1.0;
    let big = astrocyte_core::Memory::new("big", bank.clone(), text.clone());
    tenant
        .insert(vec![astrocyte_core::NewMemory::plain(big, v)])
        .await
        .expect("insert a large row");
    assert!(out_of_line_bytes(&admin, "inline").await > before);
    let read = tenant.get(&bank, &["big".to_string()]).await.expect("get");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].text, text);
}
