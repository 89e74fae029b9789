//! PostgreSQL-specific behaviour the shared suite cannot see: selective filters over the HNSW
//! index, the BM25-like keyword ranking, the vector column typed on first use, the statement
//! timeout option, no prepared statements left behind by per-tenant SQL, and pooled
//! connections replaced after `connection_max_uses`.

use std::time::{Duration, Instant};

use astrocyte_core::store::{EmbeddingSpace, SearchRequest};
use astrocyte_core::{
    BankId, ErrorKind, Memory, NewMemory, RecallFilter, Schema, Store, TenantStore,
};
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};

use crate::support::TestDb;

const DIMENSION: usize = 16;

fn bank(name: &str) -> BankId {
    BankId::new(name).expect("bank id")
}

/// A deterministic unit vector (xorshift), so the test needs no random crate.
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values: Vec<f32> = (0..DIMENSION)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    astrocyte_core::embed::l2_normalize(&mut values);
    values
}

fn memory(bank_name: &str, id: &str, text: &str, tags: &[&str], embedding: Vec<f32>) -> NewMemory {
    let mut memory = Memory::new(id, bank(bank_name), text);
    memory.tags = tags.iter().map(|t| t.to_string()).collect();
    NewMemory::plain(memory, embedding)
}

async fn tenant(store: &PostgresStore, name: &str) -> std::sync::Arc<dyn TenantStore> {
    let schema = Schema::new(name).expect("schema");
    store.create_tenant(&schema).await.expect("create");
    store.tenant(&schema).await.expect("handle")
}

fn semantic(bank_name: &str, query: Vec<f32>, limit: usize, filter: RecallFilter) -> SearchRequest {
    SearchRequest {
        banks: vec![bank(bank_name)],
        vector: Some(query),
        text: None,
        recency: false,
        limit,
        filter,
    }
}

fn keyword(bank_name: &str, text: &str, limit: usize) -> SearchRequest {
    SearchRequest {
        banks: vec![bank(bank_name)],
        vector: None,
        text: Some(text.into()),
        recency: false,
        limit,
        filter: RecallFilter::default(),
    }
}

/// Exact ranking by cosine (vectors are unit length), ties by id.
fn brute_force(candidates: &[(String, Vec<f32>)], query: &[f32], limit: usize) -> Vec<String> {
    let mut scored: Vec<(f32, &String)> = candidates
        .iter()
        .map(|(id, v)| (astrocyte_core::embed::dot(v, query), id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(limit)
        .map(|(_, id)| id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_filters_still_return_every_match_in_order() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let tenant = tenant(&store, "selective").await;
    tenant
        .ensure_embedding_space(&EmbeddingSpace {
            model: "test-vectors".into(),
            dimension: DIMENSION,
        })
        .await
        .expect("space");
    let mut batch = Vec::new();
    let mut rare = Vec::new();
    let mut small = Vec::new();
    for i in 0..3000u64 {
        let id = format!("big-{i:05}");
        let tags: &[&str] = if i % 1000 == 7 {
            &["rare"]
        } else {
            &["common"]
        };
        if tags == ["rare"] {
            rare.push((id.clone(), vector(i)));
        }
        batch.push(memory(
            "big",
            &id,
            &format!("bulk row {i}"),
            tags,
            vector(i),
        ));
    }
    for i in 0..5u64 {
        let id = format!("small-{i}");
        small.push((id.clone(), vector(10_000 + i)));
        batch.push(memory(
            "small",
            &id,
            &format!("small row {i}"),
            &[],
            vector(10_000 + i),
        ));
    }
    tenant.insert(batch).await.expect("insert");
    let probe = vector(424_242);

    // A bank of 5 among 3005 rows: all 5 come back, in exact order.
    let hits = tenant
        .search(&semantic(
            "small",
            probe.clone(),
            10,
            RecallFilter::default(),
        ))
        .await
        .expect("search");
    let ids: Vec<String> = hits
        .semantic
        .expect("semantic")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    assert_eq!(ids, brute_force(&small, &probe, 10));

    // A tag matching 3 of 3000 rows in the same bank.
    let filter = RecallFilter {
        tags: Some(vec!["rare".into()]),
        ..Default::default()
    };
    let hits = tenant
        .search(&semantic("big", probe.clone(), 10, filter))
        .await
        .expect("search");
    let ids: Vec<String> = hits
        .semantic
        .expect("semantic")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    assert_eq!(ids, brute_force(&rare, &probe, 10));

    // Through the index, a stored vector finds itself first.
    let hits = tenant
        .search(&semantic("big", vector(1234), 10, RecallFilter::default()))
        .await
        .expect("search");
    let best = &hits.semantic.expect("semantic").hits[0];
    assert_eq!(best.memory.id, "big-01234");
    assert!((best.score - 1.0).abs() < 1e-5, "{}", best.score);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_ranking_favours_rare_and_repeated_terms() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let tenant = tenant(&store, "keywords").await;
    let rows = [
        ("k1", "apple banana smoothie"),
        ("k2", "apple apple apple pie"),
        ("k3", "apple dates"),
        ("k4", "zebra apple orchard"),
        ("k5", "nothing relevant here"),
    ];
    tenant
        .insert(
            rows.iter()
                .enumerate()
                .map(|(i, (id, text))| memory("fruit", id, text, &[], vector(i as u64)))
                .collect(),
        )
        .await
        .expect("insert");
    let keyword = |text: &str| keyword("fruit", text, 10);
    let ranked = |response: astrocyte_core::store::SearchResponse| -> Vec<(String, f32)> {
        response
            .keyword
            .expect("keyword")
            .hits
            .into_iter()
            .map(|h| (h.memory.id, h.score))
            .collect()
    };
    let apple = ranked(tenant.search(&keyword("apples")).await.expect("search"));
    assert_eq!(apple.len(), 4, "stemmed: 'apples' matches 'apple'");
    assert_eq!(apple[0].0, "k2", "three occurrences rank first: {apple:?}");
    assert!(
        apple.windows(2).all(|w| w[0].1 >= w[1].1 && w[1].1 > 0.0),
        "{apple:?}"
    );
    let zebra = ranked(
        tenant
            .search(&keyword("zebra apple"))
            .await
            .expect("search"),
    );
    assert_eq!(zebra[0].0, "k4", "the rare term decides: {zebra:?}");
    // Operators and quotes are plain text.
    let odd = ranked(
        tenant
            .search(&keyword("zebra & !apple | 'pie"))
            .await
            .expect("search"),
    );
    assert_eq!(odd.len(), 4);
}

/// With a posting budget, the table's statistics decide which words a keyword search scores:
/// a word more frequent than the budget is dropped beside a rarer one, and a query of only
/// frequent words requires all of them. Without a budget every row holding any word scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posting_budget_drops_frequent_words_or_requires_them_all() {
    let db = TestDb::create().await;
    let budgeted = db
        .store_with(PostgresOptions {
            keyword_posting_budget: 60,
            ..db.options()
        })
        .await;
    let tenant = tenant(&budgeted, "budget").await;
    // 400 rows: `river` in every one, `meadow` in every other, `heron` in four.
    let rows: Vec<NewMemory> = (0..400)
        .map(|i| {
            let mut text = format!("river entry{i}");
            if i % 2 == 0 {
                text.push_str(" meadow");
            }
            if i % 100 == 7 {
                text.push_str(" heron");
            }
            memory("birds", &format!("b{i:03}"), &text, &[], vector(i))
        })
        .collect();
    tenant.insert(rows).await.expect("insert");
    db.admin()
        .await
        .batch_execute("ANALYZE budget.astrocyte_memories")
        .await
        .expect("analyze");
    let keyword = |text: &str| keyword("birds", text, 50);
    let ids = |response: astrocyte_core::store::SearchResponse| -> Vec<String> {
        let mut ids: Vec<String> = response
            .keyword
            .expect("keyword")
            .hits
            .into_iter()
            .map(|h| h.memory.id)
            .collect();
        ids.sort();
        ids
    };

    // `river` (400 rows) is over the budget beside `heron` (4): only heron rows are scored.
    let heron = ids(tenant
        .search(&keyword("heron by the river"))
        .await
        .expect("search"));
    assert_eq!(heron, ["b007", "b107", "b207", "b307"].map(String::from));

    // Both words are over the budget: rows must hold both.
    let both = ids(tenant
        .search(&keyword("river meadow"))
        .await
        .expect("search"));
    assert_eq!(both.len(), 50, "{both:?}");
    assert!(
        both.iter()
            .all(|id| id[1..].parse::<u32>().expect("number") % 2 == 0),
        "a row without meadow: {both:?}"
    );

    // Without a budget, river-only rows score too.
    let unbounded = db
        .store_with(PostgresOptions {
            keyword_posting_budget: 0,
            ..db.options()
        })
        .await;
    let tenant = unbounded
        .tenant(&Schema::new("budget").expect("schema"))
        .await
        .expect("handle");
    let all = ids(tenant
        .search(&keyword("heron by the river"))
        .await
        .expect("search"));
    assert_eq!(all.len(), 50);
    assert!(all.iter().any(|id| !id.ends_with("07")), "{all:?}");
}

async fn column_type(admin: &tokio_postgres::Client, schema: &str) -> String {
    admin
        .query_one(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = (quote_ident($1) || '.astrocyte_memories')::regclass AND a.attname = 'embedding'",
            &[&schema],
        )
        .await
        .expect("catalog")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_column_is_typed_on_first_use() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let spaced = tenant(&store, "spaced").await;
    assert_eq!(column_type(&admin, "spaced").await, "vector");
    spaced
        .ensure_embedding_space(&EmbeddingSpace {
            model: "m".into(),
            dimension: 24,
        })
        .await
        .expect("space");
    assert_eq!(column_type(&admin, "spaced").await, "vector(24)");
    let index: String = admin
        .query_one("SELECT indexdef FROM pg_indexes WHERE schemaname = 'spaced' AND indexname LIKE '%hnsw'", &[])
        .await
        .expect("hnsw index")
        .get(0);
    assert!(
        index.contains("USING hnsw") && index.contains("halfvec(24)) halfvec_cosine_ops"),
        "{index}"
    );
    let mismatch = spaced
        .ensure_embedding_space(&EmbeddingSpace {
            model: "m".into(),
            dimension: 32,
        })
        .await
        .expect_err("other dimension");
    assert_eq!(mismatch.kind(), ErrorKind::Conflict);

    // A tenant written to without a recorded space takes the first vectors' dimension.
    let implicit = tenant(&store, "implicit").await;
    let mut first = vector(1);
    first.truncate(8);
    // A first batch that fails (duplicate ids) leaves nothing typed behind, not even in the
    // handle's memory of the dimension.
    let doomed = vec![
        memory("b", "twice", "eight dims", &[], first.clone()),
        memory("b", "twice", "eight dims again", &[], first.clone()),
    ];
    assert_eq!(
        implicit.insert(doomed).await.expect_err("duplicate").kind(),
        ErrorKind::Conflict
    );
    assert_eq!(column_type(&admin, "implicit").await, "vector");
    implicit
        .insert(vec![memory("b", "only", "eight dims", &[], first)])
        .await
        .expect("insert");
    assert_eq!(column_type(&admin, "implicit").await, "vector(8)");
    let indexes: i64 = admin
        .query_one("SELECT count(*) FROM pg_indexes WHERE schemaname = 'implicit' AND indexname LIKE '%hnsw'", &[])
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(indexes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_option_limits_every_statement() {
    let db = TestDb::create().await;
    let store = db
        .store_with(PostgresOptions {
            statement_timeout: Some(Duration::from_millis(200)),
            ..db.options()
        })
        .await;
    crate::support::slow_statements_time_out(&store).await;
}

/// The pid of the backend serving each of ten tenant transactions.
async fn backend_pids(store: &PostgresStore, schema: &Schema) -> Vec<i32> {
    let mut pids = Vec::new();
    for _ in 0..10 {
        let transaction = store.tenant_transaction(schema).await.expect("transaction");
        let rows = transaction
            .query("SELECT pg_backend_pid() AS pid", &[])
            .await
            .expect("pid");
        pids.push(rows[0].get::<_, i32>("pid"));
        transaction.rollback().await.expect("rollback");
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_replaced_after_their_uses() {
    let db = TestDb::create().await;
    let schema = Schema::new("reused").expect("schema");
    // One connection, never replaced: every transaction meets the same backend.
    let kept = db
        .store_with(PostgresOptions {
            pool_size: 1,
            connection_max_uses: 0,
            ..db.options()
        })
        .await;
    kept.create_tenant(&schema).await.expect("create");
    let pids = backend_pids(&kept, &schema).await;
    assert!(pids.iter().all(|pid| *pid == pids[0]), "{pids:?}");
    drop(kept);
    // Four checkouts each (a transaction takes at least one): no backend serves more than
    // four transactions, and the replaced ones exit instead of idling in the pool.
    let replaced = db
        .store_with(PostgresOptions {
            pool_size: 1,
            connection_max_uses: 4,
            ..db.options()
        })
        .await;
    let pids = backend_pids(&replaced, &schema).await;
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for pid in &distinct {
        let served = pids.iter().filter(|p| *p == pid).count();
        assert!(served <= 4, "backend {pid} served {served}: {pids:?}");
    }
    assert!(distinct.len() >= 3, "{pids:?}");
    let admin = db.admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&distinct],
            )
            .await
            .expect("activity")
            .get(0);
        // The pool's one connection may still be among them.
        if alive <= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} replaced backends still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_sql_leaves_no_prepared_statements_behind() {
    let db = TestDb::create().await;
    // One connection: every statement below ran on the session inspected at the end.
    let store = db
        .store_with(PostgresOptions {
            pool_size: 1,
            ..db.options()
        })
        .await;
    for name in ["prep_a", "prep_b", "prep_c"] {
        let tenant = tenant(&store, name).await;
        tenant
            .insert(
                (0..5)
                    .map(|i| {
                        memory(
                            "b",
                            &format!("m{i}"),
                            &format!("text number {i}"),
                            &[],
                            vector(i),
                        )
                    })
                    .collect(),
            )
            .await
            .expect("insert");
        let request = SearchRequest {
            banks: vec![bank("b")],
            vector: Some(vector(99)),
            text: Some("text number".into()),
            recency: true,
            limit: 3,
            filter: RecallFilter::default(),
        };
        for _ in 0..5 {
            tenant.search(&request).await.expect("search");
        }
        tenant
            .nearest_each(&bank("b"), &[vector(7)], -1.0)
            .await
            .expect("nearest");
        tenant.count(&bank("b")).await.expect("count");
        tenant.scan(&bank("b"), None, 10, true).await.expect("scan");
    }
    let transaction = store
        .tenant_transaction(&Schema::new("prep_a").expect("schema"))
        .await
        .expect("transaction");
    let rows = transaction
        .query(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "no named statement survives its use"
    );
    transaction.rollback().await.expect("rollback");
}
