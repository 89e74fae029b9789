//! `/health` when the store really fails: a PostgreSQL store whose database is dropped under
//! it, and a SQLite store whose data directory disappears. Both answer 503 with the unhealthy
//! body and count a store error on `/metrics`, while `/live` stays 200.

use std::sync::Arc;

use astrocyte_core::{Engine, EngineConfig};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::Gateway;
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use serde_json::Value;

use crate::isolation_pg::{admin_client, ScratchDatabase};
use crate::support::{config, engine_at, spawn, Running};

/// The `kind="health"` store-error count on `/metrics`.
async fn health_errors(server: &Running) -> u64 {
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find(|l| l.starts_with("astrocyte_store_errors_total{kind=\"health\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn get(server: &Running, path: &str) -> (u16, Value) {
    let r = server
        .client
        .get(server.url(path))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// 503 with the reference's unhealthy body, and one more health store error counted.
async fn assert_unhealthy(server: &Running, backend: &str, errors_before: u64) {
    let (status, body) = get(server, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["healthy"], false, "{body}");
    assert_eq!(body["message"], format!("{backend} store unavailable"));
    assert!(body["latency_ms"].as_f64().is_some(), "{body}");
    assert!(body["last_check_at"].as_str().is_some(), "{body}");
    // The counter is process-wide and other tests may fail health checks concurrently.
    assert!(
        health_errors(server).await > errors_before,
        "the failure shows on /metrics"
    );
    // Liveness does not depend on the store, so an outage is no restart loop.
    assert_eq!(get(server, "/live").await.0, 200);
}

#[tokio::test]
async fn health_is_503_when_the_postgres_database_is_gone() {
    let scratch = ScratchDatabase::create("hlt").await;
    let (url, admin_url, name, prefix) = (
        scratch.url.clone(),
        scratch.server.clone(),
        scratch.name.clone(),
        scratch.role_prefix.clone(),
    );
    let outcome = async move {
        let store = PostgresStore::connect(
            &url,
            PostgresOptions {
                pool_size: 2,
                role_prefix: prefix,
                pool_wait_timeout: std::time::Duration::from_secs(3),
                ..PostgresOptions::default()
            },
        )
        .await
        .expect("connect store");
        let engine = Arc::new(Engine::new(
            Arc::new(store),
            Arc::new(HashingEmbedder::default()),
            EngineConfig::default(),
        ));
        let state = astrocyte_server::AppState::builder(config(), engine)
            .build()
            .await
            .expect("state");
        let running = spawn(Gateway::from_state(state)).await;
        let (status, body) = get(&running, "/health").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["healthy"], true);
        assert_eq!(body["message"], "postgres store reachable");
        let before = health_errors(&running).await;

        // A real outage: the database goes away, taking the pool's connections with it.
        admin_client(&admin_url)
            .await
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop the store's database");
        assert_unhealthy(&running, "postgres", before).await;
        running.stop().await;
    };
    scratch.run(outcome).await;
}

#[tokio::test]
async fn health_is_503_when_the_sqlite_data_directory_is_gone() {
    let parent = tempfile::tempdir().expect("tempdir");
    let data_dir = parent.path().join("data");
    std::fs::create_dir(&data_dir).expect("data dir");
    let engine = engine_at(&data_dir);
    let state = astrocyte_server::AppState::builder(config(), engine)
        .build()
        .await
        .expect("state");
    let running = spawn(Gateway::from_state(state)).await;
    assert_eq!(get(&running, "/health").await.0, 200);
    let before = health_errors(&running).await;
    // The volume vanished: the directory is no longer there to hold tenant files.
    std::fs::remove_dir_all(&data_dir).expect("remove the data directory");
    assert_unhealthy(&running, "sqlite", before).await;
    running.stop().await;
}
