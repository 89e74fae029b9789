//! Integration tests of the PostgreSQL store against a real server
//! (`ASTROCYTE_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

mod behaviour;
mod conformance;
mod defence;
mod instances;
mod isolation;
mod jobs;
mod keys;
mod migrations;
mod placement;
mod replicas;
mod roles;
mod settings;
mod support;
mod tenants;

use std::sync::Arc;

use astrocyte_core::{Engine, EngineConfig, RetainRequest, Schema, Store};
use astrocyte_providers::HashingEmbedder;

/// An engine over `store` with the reference's hashing embedder.
pub fn engine(store: Arc<dyn Store>) -> Engine {
    Engine::new(
        store,
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    )
}

/// Retains `content` and returns the stored id; panics unless it was stored.
pub async fn retain(engine: &Engine, schema: &Schema, bank: &str, content: &str) -> String {
    let outcome = engine
        .retain(
            schema,
            RetainRequest {
                bank_id: bank.into(),
                content: content.into(),
                ..Default::default()
            },
        )
        .await
        .expect("retain");
    assert!(outcome.stored, "{outcome:?}");
    outcome.memory_id.expect("stored id")
}
