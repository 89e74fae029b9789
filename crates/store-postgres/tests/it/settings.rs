//! Tenant settings and re-embedding: settings are per tenant JSON values; `replace_embeddings`
//! rewrites vectors and the recorded space in one transaction, and refuses a dimension change
//! unless the tenant holds no memory.

use astrocyte_core::store::{EmbeddingSpace, SearchRequest, TenantStore};
use astrocyte_core::{BankId, ErrorKind, Memory, NewMemory, RecallFilter, Schema, Store};
use astrocyte_store_postgres::PostgresStore;
use serde_json::json;

use crate::support::TestDb;

fn unit(dimension: usize, hot: usize) -> Vec<f32> {
    let mut v = vec![0.0; dimension];
    v[hot % dimension] = 1.0;
    v
}

fn memory(id: &str, embedding: Vec<f32>) -> NewMemory {
    let bank = BankId::new("notes").expect("bank");
    NewMemory::plain(Memory::new(id, bank, format!("memory {id}")), embedding)
}

fn space(model: &str, dimension: usize) -> EmbeddingSpace {
    EmbeddingSpace {
        model: model.into(),
        dimension,
    }
}

async fn create(store: &PostgresStore, name: &str) -> Schema {
    let schema = Schema::new(name).expect("schema");
    store.create_tenant(&schema).await.expect("create");
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_json_values_per_tenant() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let a = store
        .tenant(&create(&store, "set_a").await)
        .await
        .expect("a");
    let b = store
        .tenant(&create(&store, "set_b").await)
        .await
        .expect("b");

    assert_eq!(a.setting("legal_hold:notes").await.expect("get"), None);
    a.put_setting("legal_hold:notes", Some(json!({"reason": "audit"})))
        .await
        .expect("put");
    a.put_setting("policy", Some(json!([1, 2])))
        .await
        .expect("put");
    a.put_setting("policy", Some(json!({"ttl_days": 30})))
        .await
        .expect("overwrite");
    assert_eq!(
        a.setting("legal_hold:notes").await.expect("get"),
        Some(json!({"reason": "audit"}))
    );
    assert_eq!(
        a.setting("policy").await.expect("get"),
        Some(json!({"ttl_days": 30}))
    );
    // Another tenant sees none of it.
    assert_eq!(b.setting("policy").await.expect("get"), None);
    // A fresh store reads what was stored.
    let other = db.store().await;
    let a_again = other
        .tenant(&Schema::new("set_a").expect("schema"))
        .await
        .expect("a");
    assert_eq!(
        a_again.setting("policy").await.expect("get"),
        Some(json!({"ttl_days": 30}))
    );
    a.put_setting("policy", None).await.expect("remove");
    assert_eq!(a.setting("policy").await.expect("get"), None);
    // Removing what is absent is fine.
    a.put_setting("policy", None).await.expect("remove again");
    let error = a
        .put_setting("", Some(json!(1)))
        .await
        .expect_err("empty key");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_embeddings_rewrites_vectors_and_the_recorded_model() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let schema = create(&store, "reembed").await;
    let tenant = store.tenant(&schema).await.expect("handle");
    let bank = BankId::new("notes").expect("bank");
    tenant
        .ensure_embedding_space(&space("old-model", 8))
        .await
        .expect("space");
    tenant
        .insert(vec![memory("m1", unit(8, 0)), memory("m2", unit(8, 1))])
        .await
        .expect("insert");

    // m1 moves to where m2 was not: axis 5.
    tenant
        .replace_embeddings(&space("new-model", 8), vec![("m1".into(), unit(8, 5))])
        .await
        .expect("replace");
    let nearest = tenant
        .nearest_each(&bank, &[unit(8, 5), unit(8, 1)], -1.0)
        .await
        .expect("nearest");
    let ids: Vec<Option<String>> = nearest
        .iter()
        .map(|n| n.as_ref().map(|(id, _)| id.clone()))
        .collect();
    assert_eq!(ids, [Some("m1".to_string()), Some("m2".to_string())]);
    let (_, similarity) = nearest[0].clone().expect("hit");
    assert!((similarity - 1.0).abs() < 1e-5, "{similarity}");
    let scanned = tenant.scan(&bank, None, 10, true).await.expect("scan");
    assert_eq!(scanned[0].embedding.as_deref(), Some(&unit(8, 5)[..]));
    assert_eq!(scanned[1].embedding.as_deref(), Some(&unit(8, 1)[..]));
    // The recorded model moved too.
    tenant
        .ensure_embedding_space(&space("new-model", 8))
        .await
        .expect("new model recorded");
    let error = tenant
        .ensure_embedding_space(&space("old-model", 8))
        .await
        .expect_err("old model no longer matches");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");

    // A vector of the wrong length, and a dimension change on a non-empty tenant: refused,
    // and nothing changed.
    let error = tenant
        .replace_embeddings(&space("new-model", 8), vec![("m2".into(), unit(4, 0))])
        .await
        .expect_err("wrong length");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let error = tenant
        .replace_embeddings(&space("big-model", 16), vec![("m2".into(), unit(16, 0))])
        .await
        .expect_err("dimension change");
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    tenant
        .ensure_embedding_space(&space("new-model", 8))
        .await
        .expect("space unchanged");
    let scanned = tenant.scan(&bank, None, 10, true).await.expect("scan");
    assert_eq!(scanned[1].embedding.as_deref(), Some(&unit(8, 1)[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tenant_may_change_its_dimension() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let schema = create(&store, "redim").await;
    let tenant = store.tenant(&schema).await.expect("handle");
    let bank = BankId::new("notes").expect("bank");
    tenant
        .ensure_embedding_space(&space("small", 4))
        .await
        .expect("space");
    tenant
        .replace_embeddings(&space("large", 12), Vec::new())
        .await
        .expect("empty tenant re-typed");
    tenant
        .insert(vec![memory("m1", unit(12, 3))])
        .await
        .expect("insert at the new dimension");
    let nearest = tenant
        .nearest_each(&bank, &[unit(12, 3)], -1.0)
        .await
        .expect("nearest");
    assert_eq!(nearest[0].as_ref().map(|(id, _)| id.as_str()), Some("m1"));
    let error = tenant
        .insert(vec![memory("m2", unit(4, 0))])
        .await
        .expect_err("old dimension");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    // The index was rebuilt for the new dimension.
    let indexed: i64 = db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'redim' \
             AND indexname = 'astrocyte_memories_halfvec_hnsw' AND indexdef LIKE '%hnsw%'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(indexed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_indexes_are_built_with_the_configured_parameters() {
    let db = TestDb::create().await;
    let store = db
        .store_with(astrocyte_store_postgres::PostgresOptions {
            hnsw_m: 8,
            hnsw_ef_construction: 24,
            hnsw_ef_search: 12,
            ..db.options()
        })
        .await;
    let schema = create(&store, "hnsw_params").await;
    let tenant = store.tenant(&schema).await.expect("handle");
    tenant
        .insert(vec![memory("m1", unit(4, 1))])
        .await
        .expect("insert fixes the dimension and builds the index");
    let options: Vec<String> = db
        .admin()
        .await
        .query_one(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'hnsw_params' AND c.relname = 'astrocyte_memories_halfvec_hnsw'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(options, vec!["m=8", "ef_construction=24"]);
    let nearest = tenant
        .nearest_each(&BankId::new("notes").expect("bank"), &[unit(4, 1)], 0.9)
        .await
        .expect("probe with the configured ef_search");
    assert_eq!(nearest[0].as_ref().map(|(id, _)| id.as_str()), Some("m1"));
}

/// The ids of a semantic search of the `notes` bank for `query`, best first.
async fn semantic_ids(tenant: &dyn TenantStore, query: Vec<f32>, limit: usize) -> Vec<String> {
    let found = tenant
        .search(&SearchRequest {
            banks: vec![BankId::new("notes").expect("bank")],
            vector: Some(query),
            text: None,
            recency: false,
            limit,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    found
        .semantic
        .map(|s| {
            s.hits
                .into_iter()
                .map(|hit| hit.memory.id.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// How many scans the tenant's HNSW index has answered, once the store's connections have
/// reported them (an idle backend sends its statistics within a second or so).
async fn index_scans_reach(admin: &tokio_postgres::Client, schema: &str, at_least: i64) -> i64 {
    let mut scans = 0;
    for _ in 0..150 {
        scans = admin
            .query_one(
                "SELECT COALESCE(sum(idx_scan), 0)::int8 FROM pg_stat_user_indexes \
                 WHERE schemaname = $1 AND indexrelname = 'astrocyte_memories_halfvec_hnsw'",
                &[&schema],
            )
            .await
            .expect("statistics")
            .get(0);
        if scans >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    scans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_duplicate_probes_are_answered_by_the_hnsw_index() {
    // The index is built on an expression (the half-precision cast): a statement that orders
    // by anything else silently scans the whole table. The index's own counter shows which.
    let db = TestDb::create().await;
    let admin = db.admin().await;
    let store = db.store().await;
    let schema = create(&store, "indexed").await;
    let tenant = store.tenant(&schema).await.expect("handle");
    let dimension = 16;
    let spread = |i: usize| {
        let mut v = unit(dimension, i);
        v[(i / dimension) % dimension] += 0.5;
        v[(i * 7 + 3) % dimension] += (i % 13) as f32 / 13.0;
        v
    };
    for batch in 0..4 {
        let rows = (batch * 500..(batch + 1) * 500)
            .map(|i| memory(&format!("m{i}"), spread(i)))
            .collect();
        tenant.insert(rows).await.expect("insert");
    }
    admin
        .batch_execute("ANALYZE indexed.astrocyte_memories")
        .await
        .expect("analyze");
    let before = index_scans_reach(&admin, "indexed", 0).await;

    let found = semantic_ids(tenant.as_ref(), spread(1234), 10).await;
    assert_eq!(found.first().map(String::as_str), Some("m1234"));
    let after_search = index_scans_reach(&admin, "indexed", before + 1).await;
    assert!(
        after_search > before,
        "the search scanned the table instead"
    );

    let nearest = tenant
        .nearest_each(&BankId::new("notes").expect("bank"), &[spread(77)], 0.99)
        .await
        .expect("probe");
    assert_eq!(nearest[0].as_ref().map(|(id, _)| id.as_str()), Some("m77"));
    let after_probe = index_scans_reach(&admin, "indexed", after_search + 1).await;
    assert!(
        after_probe > after_search,
        "the probe scanned the table instead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_up_to_4000_dimensions_are_indexed_and_larger_ones_searched_exactly() {
    let db = TestDb::create().await;
    let admin = db.admin().await;
    let store = db.store().await;
    // pgvector's HNSW takes `halfvec` up to 4,000 dimensions (`vector` only up to 2,000).
    for (name, dimension, indexed) in [("wide", 3072, 1), ("widest", 4001, 0)] {
        let tenant = store
            .tenant(&create(&store, name).await)
            .await
            .expect("handle");
        let rows = (0..5)
            .map(|i| memory(&format!("m{i}"), unit(dimension, i * 700)))
            .collect();
        tenant.insert(rows).await.expect("insert");
        let indexes: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%USING hnsw%'",
                &[&name],
            )
            .await
            .expect("catalog")
            .get(0);
        assert_eq!(indexes, indexed, "{name}");
        let mut query = unit(dimension, 3 * 700);
        query[1] = 0.2;
        let ids = semantic_ids(tenant.as_ref(), query.clone(), 2).await;
        assert_eq!(
            ids.first().map(String::as_str),
            Some("m3"),
            "{name}: {ids:?}"
        );
        let nearest = tenant
            .nearest_each(&BankId::new("notes").expect("bank"), &[query], 0.9)
            .await
            .expect("probe");
        assert_eq!(
            nearest[0].as_ref().map(|(id, _)| id.as_str()),
            Some("m3"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_parameters_outside_pgvector_bounds_are_refused_at_connect() {
    let db = TestDb::create().await;
    let base = db.options();
    for (m, ef_construction, ef_search) in [(1, 64, 40), (16, 20, 40), (16, 64, 0), (16, 64, 1001)]
    {
        let options = astrocyte_store_postgres::PostgresOptions {
            hnsw_m: m,
            hnsw_ef_construction: ef_construction,
            hnsw_ef_search: ef_search,
            ..base.clone()
        };
        let error = PostgresStore::connect(&db.url, options)
            .await
            .expect_err("out of bounds");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("HNSW"), "{error}");
    }
}
