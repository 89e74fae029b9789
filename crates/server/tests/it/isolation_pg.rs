//! Cross-tenant isolation through HTTP on PostgreSQL: two issued API keys, two tenants, one
//! bank name. Needs the server named by `ASTROCYTE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a missing server fails the test.

use std::sync::Arc;

use astrocyte_core::{Engine, EngineConfig};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::{AppState, Gateway};
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::support::{config, spawn};

pub(crate) fn server_url() -> String {
    std::env::var("ASTROCYTE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

pub(crate) async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server at {url}: {e}"));
    tokio::spawn(connection);
    client
}

pub(crate) async fn cleanup(server: &str, database: &str, role_prefix: &str) {
    let admin = admin_client(server).await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await;
    if let Ok(rows) = admin
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&role_prefix],
        )
        .await
    {
        for row in rows {
            let role: String = row.get(0);
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                .await;
        }
    }
}

/// A throw-away database for one test and the prefix of the roles its tenants get; both are
/// dropped by [`ScratchDatabase::run`] whether or not the test panics.
pub(crate) struct ScratchDatabase {
    pub(crate) server: String,
    pub(crate) name: String,
    pub(crate) role_prefix: String,
    pub(crate) url: String,
}

impl ScratchDatabase {
    /// Creates `astro_<label>_<random>`; `label` is short and lower case (it also starts the
    /// role prefix).
    pub(crate) async fn create(label: &str) -> Self {
        let server = server_url();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("astro_{label}_{}", &unique[..12]);
        let role_prefix = format!("{label}{}_", &unique[12..20]);
        admin_client(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let url = with_database(&server, &name);
        ScratchDatabase {
            server,
            name,
            role_prefix,
            url,
        }
    }

    /// Runs `test` on its own task, cleans up, then re-raises the test's panic if it had one.
    pub(crate) async fn run(self, test: impl std::future::Future<Output = ()> + Send + 'static) {
        let result = tokio::spawn(test).await;
        cleanup(&self.server, &self.name, &self.role_prefix).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic.into_panic());
        }
    }
}

#[tokio::test]
async fn two_api_keys_never_see_each_others_memories_on_postgres() {
    let scratch = ScratchDatabase::create("srv").await;
    let (url, prefix) = (scratch.url.clone(), scratch.role_prefix.clone());
    let outcome = async move {
        let store = PostgresStore::connect(
            &url,
            PostgresOptions {
                pool_size: 4,
                auto_create_tenants: true,
                role_prefix: prefix,
                ..PostgresOptions::default()
            },
        )
        .await
        .expect("connect store");
        // Keys reference tenants in the directory, so the tenants exist before keys are issued.
        for tenant in ["tenant_acme", "tenant_globex"] {
            astrocyte_core::Store::create_tenant(
                &store,
                &astrocyte_core::Schema::new(tenant).expect("valid"),
            )
            .await
            .expect("create tenant");
        }
        let engine = Arc::new(Engine::new(
            Arc::new(store),
            Arc::new(HashingEmbedder::default()),
            EngineConfig::default(),
        ));
        let mut cfg = config();
        cfg.auth_mode = AuthMode::ApiKey;
        cfg.tenant_extension = TenantExtensionKind::ApiKey;
        cfg.api_key_secret = Some(Secret::new("isolation-test-secret-0123456789"));
        cfg.admin_token = Some(Secret::new("adm"));
        // Keys live in the PostgreSQL tenant directory (the store's own KeyDirectory).
        let state = AppState::builder(cfg, engine).build().await.expect("state");
        let running = spawn(Gateway::from_state(state)).await;
        let client = &running.client;
        let mut keys = Vec::new();
        for tenant in ["tenant_acme", "tenant_globex"] {
            let issued: Value = client
                .post(running.url("/v1/admin/keys"))
                .header("x-admin-token", "adm")
                .json(&json!({"tenant": tenant, "principal": format!("agent:{tenant}")}))
                .send()
                .await
                .expect("issue")
                .json()
                .await
                .expect("json");
            keys.push(issued["api_key"].as_str().expect("key").to_string());
        }
        let call = |key: &str, path: &str, body: Value| {
            client
                .post(running.url(path))
                .header("x-api-key", key)
                .json(&body)
                .send()
        };
        let r: Value = call(
            &keys[0],
            "/v1/retain",
            json!({"content": "Acme launches the rocket in June.", "bank_id": "plans"}),
        )
        .await
        .expect("retain")
        .json()
        .await
        .expect("json");
        assert_eq!(r["stored"], true, "{r}");
        let acme_id = r["memory_id"].as_str().expect("id").to_string();
        let r: Value = call(
            &keys[1],
            "/v1/retain",
            json!({"content": "Globex ships the widget in July.", "bank_id": "plans"}),
        )
        .await
        .expect("retain")
        .json()
        .await
        .expect("json");
        assert_eq!(r["stored"], true, "{r}");

        let query = json!({"query": "launches rocket ships widget June July", "bank_id": "plans", "max_results": 50});
        let acme: Value = call(&keys[0], "/v1/recall", query.clone())
            .await
            .expect("recall")
            .json()
            .await
            .expect("json");
        let globex: Value = call(&keys[1], "/v1/recall", query)
            .await
            .expect("recall")
            .json()
            .await
            .expect("json");
        let texts = |v: &Value| -> Vec<String> {
            v["hits"]
                .as_array()
                .expect("hits")
                .iter()
                .filter_map(|h| h["text"].as_str().map(String::from))
                .collect()
        };
        assert_eq!(texts(&acme), ["Acme launches the rocket in June."]);
        assert_eq!(texts(&globex), ["Globex ships the widget in July."]);

        // Globex cannot forget Acme's memory by id, nor see it through history.
        let r: Value = call(
            &keys[1],
            "/v1/forget",
            json!({"bank_id": "plans", "memory_ids": [acme_id]}),
        )
        .await
        .expect("forget")
        .json()
        .await
        .expect("json");
        assert_eq!(r["deleted_count"], 0);
        let past: Value = call(
            &keys[1],
            "/v1/history",
            json!({"query": "rocket", "bank_id": "plans",
            "as_of": chrono::Utc::now().to_rfc3339()}),
        )
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
        assert!(texts(&past).iter().all(|t| !t.contains("Acme")));
        let acme_again: Value = call(
            &keys[0],
            "/v1/recall",
            json!({"query": "rocket", "bank_id": "plans"}),
        )
        .await
        .expect("recall")
        .json()
        .await
        .expect("json");
        assert_eq!(texts(&acme_again), ["Acme launches the rocket in June."]);
        running.stop().await;
    };
    // Clean up even when an assertion fails.
    scratch.run(outcome).await;
}
