//! Integration tests of the PostgreSQL store against a real server
//! (`ASTROCYTE_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

mod behaviour;
mod bulk;
mod conformance;
mod defence;
mod isolation;
mod jobs;
mod keys;
mod migrations;
mod placement;
mod pooler;
mod replicas;
mod roles;
mod settings;
mod support;
mod tenants;

use std::sync::Arc;

use astrocyte_core::{Engine, EngineConfig, RecallRequest, RetainRequest, Schema, Store};
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

/// The ids a recall of bank `notes` returns for `query` (at most 100).
pub async fn recalled(engine: &Engine, schema: &Schema, query: &str) -> Vec<String> {
    engine
        .recall(
            schema,
            RecallRequest {
                query: query.into(),
                banks: vec!["notes".into()],
                max_results: Some(100),
                ..Default::default()
            },
        )
        .await
        .expect("recall")
        .hits
        .into_iter()
        .map(|hit| hit.memory.id)
        .collect()
}
