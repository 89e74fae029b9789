//! A PostgreSQL outage under load, on a PostgreSQL instance of the test's own (initdb into a
//! temporary directory on a free port; the machine's shared server is never touched): while it
//! is down every request is a 503 with `Retry-After` (never a 500, never a 401 for a valid API
//! key), it recovers without a restart of the gateway, and no acknowledged write is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astrocyte_core::tenancy::{self, Schema};
use astrocyte_core::{BankId, Engine, EngineConfig, Store};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::{AppState, Gateway};
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use astrocyte_store_tests::instances::{data_root, Instance};
use serde_json::{json, Value};

use crate::support::{config, spawn};

/// A throwaway PostgreSQL cluster; the server stops before its directory goes.
struct OwnPostgres {
    server: Instance,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = data_root();
        let mut server = Instance::init(dir.path(), "data", "");
        server.start();
        OwnPostgres { server, _dir: dir }
    }
}

#[derive(Default)]
struct Tally {
    acknowledged: Vec<String>,
    statuses: Vec<u16>,
    unavailable_without_retry_after: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_503_then_recovers_and_loses_no_acknowledged_write() {
    let pg = OwnPostgres::start();
    let store = PostgresStore::connect(
        &pg.server.url(),
        PostgresOptions {
            pool_size: 4,
            pool_wait_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        },
    )
    .await
    .expect("connect store");
    let schema = Schema::new("tenant_outage").expect("valid");
    store.create_tenant(&schema).await.expect("create tenant");
    let engine = Arc::new(Engine::new(
        Arc::new(store.clone()),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ));
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("outage-test-secret-0123456789abc"));
    let state = AppState::builder(cfg, engine).build().await.expect("state");
    let key = state
        .api_keys()
        .expect("issued keys")
        .issue(&schema, "agent:writer")
        .await
        .expect("issued")
        .api_key;
    let server = spawn(Gateway::from_state(state)).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, key) = (server.client.clone(), server.url("/v1/retain"), key.clone());
            let (tally, stop) = (tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let content = format!("writer {w} note {n} about topic {}", w * 100_000 + n);
                    let Ok(response) = client
                        .post(&url)
                        .header("x-api-key", &key)
                        .json(&json!({"bank_id": "load", "content": content}))
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    {
                        let mut tally = tally.lock().expect("tally");
                        tally.statuses.push(status);
                        if status == 503 && !retry_after {
                            tally.unavailable_without_retry_after += 1;
                        }
                        if status == 200 && body["stored"] == true {
                            if let Some(id) = body["memory_id"].as_str() {
                                tally.acknowledged.push(id.to_string());
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    let statuses = |tally: &Arc<Mutex<Tally>>| tally.lock().expect("tally").statuses.len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_outage = statuses(&tally);
    pg.server.stop();
    let outage_started = statuses(&tally);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outage_ended = statuses(&tally);
    pg.server.restart();
    // Recovery without restarting the gateway: a retain succeeds again within 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recovered = {
            let tally = tally.lock().expect("tally");
            tally.statuses[outage_ended..].contains(&200)
        };
        if recovered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no retain succeeded after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer");
    }

    // Every writer has stopped: take the tally out of its lock.
    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    let during = &tally.statuses[outage_started..outage_ended];
    assert!(before_outage > 0, "writes ran before the outage");
    assert!(during.contains(&503), "the outage answered 503: {during:?}");
    let unexpected: Vec<u16> = tally
        .statuses
        .iter()
        .copied()
        .filter(|s| *s != 200 && *s != 503)
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 200 and 503, never 500 or 401: {unexpected:?}"
    );
    assert_eq!(
        tally.unavailable_without_retry_after, 0,
        "every 503 has Retry-After"
    );

    // Every acknowledged write is in the store.
    let bank = BankId::new("load").expect("bank");
    let acknowledged = tally.acknowledged.clone();
    assert!(acknowledged.len() > 10, "{} writes", acknowledged.len());
    let missing = tenancy::use_schema(schema.clone(), async {
        let tenant = store.tenant(&schema).await.expect("tenant");
        let mut missing = Vec::new();
        for id in &acknowledged {
            if !tenant.exists(&bank, id).await.expect("exists") {
                missing.push(id.clone());
            }
        }
        missing
    })
    .await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    server.stop().await;
}
