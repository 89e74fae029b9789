//! The maintenance job handlers over a real embedded store: lifecycle with exempt tags and
//! persistent legal holds, duplicate consolidation, re-embedding, and twice-safety.

use std::sync::Arc;

use astrocyte_core::jobs::{Job, JobState};
use astrocyte_core::portability::OnConflict;
use astrocyte_core::{Engine, EngineConfig, RecallRequest, RetainRequest, Schema};
use astrocyte_providers::HashingEmbedder;
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use astrocyte_workers::handlers::run;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

fn engine(dir: &std::path::Path) -> Engine {
    let store = SqliteStore::open(dir, SqliteOptions::default()).expect("store opens");
    Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    )
}

fn job(kind: &str, payload: Value) -> Job {
    let now = Utc::now();
    Job {
        id: "test-job".into(),
        kind: kind.into(),
        payload,
        state: JobState::Running,
        attempts: 1,
        max_attempts: 3,
        last_error: None,
        result: None,
        idempotency_key: None,
        run_at: now,
        lease_owner: None,
        lease_until: None,
        created_at: now,
        updated_at: now,
    }
}

async fn texts(engine: &Engine, schema: &Schema, bank: &str) -> Vec<String> {
    let result = engine
        .recall(
            schema,
            RecallRequest {
                query: "note".into(),
                banks: vec![bank.into()],
                max_results: Some(100),
                ..Default::default()
            },
        )
        .await
        .expect("recall");
    let mut out: Vec<String> = result.hits.into_iter().map(|h| h.memory.text).collect();
    out.sort();
    out
}

#[tokio::test]
async fn lifecycle_archives_old_memories_except_exempt_tags_and_held_banks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let schema = Schema::new("t_life").expect("valid");
    let old = Utc::now() - Duration::days(40);
    for (text, tags, at) in [
        ("note old plain", vec![], Some(old)),
        ("note old kept", vec!["keep".to_string()], Some(old)),
        ("note fresh", vec![], None),
    ] {
        engine
            .retain(
                &schema,
                RetainRequest {
                    bank_id: "b".into(),
                    content: text.into(),
                    tags,
                    occurred_at: at,
                    ..Default::default()
                },
            )
            .await
            .expect("retain");
    }
    let payload = json!({"bank_id": "b", "archive_after_days": 30, "exempt_tags": ["keep"]});

    // A legal hold, stored as a tenant setting, stops lifecycle and outlives the process.
    let tenant = engine.store().tenant(&schema).await.expect("tenant");
    tenant
        .put_setting("legal_hold:b", Some(json!({"by": "counsel"})))
        .await
        .expect("hold");
    drop(tenant);
    drop(engine);
    let engine = self::engine(dir.path());
    let held = run(&engine, &schema, &job("lifecycle", payload.clone()))
        .await
        .expect("runs");
    assert_eq!(held["skipped"], "legal_hold");
    assert_eq!(texts(&engine, &schema, "b").await.len(), 3);

    let tenant = engine.store().tenant(&schema).await.expect("tenant");
    tenant
        .put_setting("legal_hold:b", None)
        .await
        .expect("lift");
    let result = run(&engine, &schema, &job("lifecycle", payload.clone()))
        .await
        .expect("runs");
    assert_eq!(result["archived"], 1);
    assert_eq!(
        texts(&engine, &schema, "b").await,
        vec!["note fresh", "note old kept"]
    );
    // Twice-safe: a second run archives nothing more.
    let again = run(&engine, &schema, &job("lifecycle", payload))
        .await
        .expect("runs");
    assert_eq!(again["archived"], 0);
}

#[tokio::test]
async fn consolidation_forgets_newer_duplicates_and_keeps_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let schema = Schema::new("t_dup").expect("valid");
    // Import bypasses the retain-time dedup, as duplicates from other systems would.
    let lines = [
        json!({"_ama_version": 1, "bank_id": "b", "exported_at": Utc::now(), "provider": "test", "memory_count": 3}),
        json!({"id": "01-a", "text": "note the boiler service is due in March"}),
        json!({"id": "02-b", "text": "note the boiler service is due in March"}),
        json!({"id": "03-c", "text": "note the library closes at six on Sundays"}),
    ];
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let report = engine
        .import(
            &schema,
            "b",
            OnConflict::Skip,
            tokio::io::BufReader::new(file.as_bytes()),
        )
        .await
        .expect("import");
    assert_eq!(report.imported, 3);
    let result = run(
        &engine,
        &schema,
        &job("consolidate", json!({"bank_id": "b"})),
    )
    .await
    .expect("runs");
    assert_eq!(result["consolidated"], 1);
    let tenant = engine.store().tenant(&schema).await.expect("tenant");
    let bank = astrocyte_core::BankId::new("b").expect("valid");
    assert!(
        tenant
            .get(&bank, &["01-a".to_string()])
            .await
            .expect("get")
            .len()
            == 1,
        "the oldest stays"
    );
    assert!(
        tenant
            .get(&bank, &["02-b".to_string()])
            .await
            .expect("get")
            .is_empty(),
        "the newer twin goes"
    );
    let again = run(
        &engine,
        &schema,
        &job("consolidate", json!({"bank_id": "b"})),
    )
    .await
    .expect("runs");
    assert_eq!(again["consolidated"], 0);
}

#[tokio::test]
async fn reembed_rewrites_every_vector_and_keeps_memories_recallable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let schema = Schema::new("t_re").expect("valid");
    let topics = [
        "garden shed",
        "tax return",
        "piano lesson",
        "bike repair",
        "dentist visit",
        "book club",
        "ski trip",
    ];
    for topic in topics {
        engine
            .retain(
                &schema,
                RetainRequest {
                    bank_id: "b".into(),
                    content: format!("note about the {topic}"),
                    ..Default::default()
                },
            )
            .await
            .expect("retain");
    }
    let result = run(&engine, &schema, &job("reembed", json!({"bank_id": "b"})))
        .await
        .expect("runs");
    assert_eq!(result["reembedded"], 7);
    assert_eq!(texts(&engine, &schema, "b").await.len(), 7);
    let unknown = run(&engine, &schema, &job("teleport", json!({}))).await;
    assert!(
        unknown.is_err(),
        "unknown kinds are errors, not silent successes"
    );
}
