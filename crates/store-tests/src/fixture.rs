//! The fixture every check starts from: an engine over the store under test with the hashing
//! embedder, a fresh uniquely named tenant, and small helpers that keep the checks readable.

use std::any::Any;
use std::sync::Arc;

use astrocyte_core::portability::OnConflict;
use astrocyte_core::store::SearchRequest;
use astrocyte_core::{
    BankId, Engine, EngineConfig, Memory, NewMemory, RecallFilter, RecallRequest, RecallResult,
    RetainOutcome, RetainRequest, Schema, Store, TenantStore, Timestamp,
};
use astrocyte_providers::HashingEmbedder;
use chrono::TimeZone;

use crate::TestStore;

/// An engine, its store and the tenants a check created.
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// An engine over it with the 128-dimension hashing embedder.
    pub engine: Engine,
    /// The same embedder, for vectors of direct store calls.
    pub embedder: Arc<HashingEmbedder>,
    /// The check's main tenant (already created).
    pub schema: Schema,
    created: Vec<Schema>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    /// Builds the engine and creates the main tenant.
    pub async fn new(test_store: TestStore) -> Fixture {
        let embedder = Arc::new(HashingEmbedder::default());
        let engine = Engine::new(
            Arc::clone(&test_store.store),
            embedder.clone(),
            EngineConfig::default(),
        );
        let mut fixture = Fixture {
            store: test_store.store,
            engine,
            embedder,
            schema: Schema::public(),
            created: Vec::new(),
            _guard: test_store.guard,
        };
        fixture.schema = fixture.new_tenant("main").await;
        fixture
    }

    /// Creates a tenant with a unique name and remembers to drop it.
    pub async fn new_tenant(&mut self, label: &str) -> Schema {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let schema =
            Schema::new(format!("ct_{label}_{}", &suffix[..12])).expect("valid schema name");
        self.store
            .create_tenant(&schema)
            .await
            .expect("create_tenant of a fresh name");
        self.created.push(schema.clone());
        schema
    }

    /// The main tenant's handle, its embedding space checked.
    pub async fn tenant(&self) -> Arc<dyn TenantStore> {
        self.engine
            .tenant(&self.schema)
            .await
            .expect("tenant handle")
    }

    /// Retains `content` into `bank` of the main tenant; panics unless something was stored.
    pub async fn retain(&self, bank: &str, content: &str) -> RetainOutcome {
        self.retain_request(RetainRequest {
            bank_id: bank.into(),
            content: content.into(),
            ..Default::default()
        })
        .await
    }

    /// Retains a full request into the main tenant; panics unless something was stored.
    pub async fn retain_request(&self, request: RetainRequest) -> RetainOutcome {
        let outcome = self
            .engine
            .retain(&self.schema, request)
            .await
            .expect("retain");
        assert!(outcome.stored, "retain stored nothing: {outcome:?}");
        outcome
    }

    /// Recalls from the main tenant.
    pub async fn recall(&self, banks: &[&str], query: &str, filter: RecallFilter) -> RecallResult {
        self.engine
            .recall(
                &self.schema,
                RecallRequest {
                    query: query.into(),
                    banks: banks.iter().map(|b| b.to_string()).collect(),
                    max_results: Some(100),
                    max_tokens: None,
                    filter,
                },
            )
            .await
            .expect("recall")
    }

    /// Ids recalled from the main tenant, sorted (for set comparisons).
    pub async fn recall_ids(
        &self,
        banks: &[&str],
        query: &str,
        filter: RecallFilter,
    ) -> Vec<String> {
        let mut ids: Vec<String> = self
            .recall(banks, query, filter)
            .await
            .hits
            .into_iter()
            .map(|h| h.memory.id)
            .collect();
        ids.sort();
        ids
    }

    /// Every strategy of the store directly, unfused: ids of semantic (for `probe`'s vector),
    /// keyword (for `probe`'s words) and recency, each sorted.
    pub async fn strategy_ids(
        &self,
        schema: &Schema,
        bank: &str,
        probe: &str,
        filter: RecallFilter,
    ) -> [Vec<String>; 3] {
        let tenant = self.engine.tenant(schema).await.expect("tenant handle");
        let response = tenant
            .search(&SearchRequest {
                banks: vec![bank_id(bank)],
                vector: Some(self.embedder.embed_one(probe)),
                text: Some(probe.into()),
                recency: true,
                limit: 1000,
                filter,
            })
            .await
            .expect("search");
        let ids = |hits: Option<astrocyte_core::store::StrategyHits>| {
            let mut ids: Vec<String> = hits
                .expect("strategy ran")
                .hits
                .into_iter()
                .map(|h| h.memory.id)
                .collect();
            ids.sort();
            ids
        };
        [
            ids(response.semantic),
            ids(response.keyword),
            ids(response.recency),
        ]
    }

    /// Exports a bank of `schema` to memory; returns the AMA lines after the header.
    pub async fn export_lines(
        &self,
        schema: &Schema,
        bank: &str,
    ) -> (serde_json::Value, Vec<serde_json::Value>) {
        let mut buffer: Vec<u8> = Vec::new();
        let written = self
            .engine
            .export(schema, bank, false, &mut buffer)
            .await
            .expect("export");
        let text = String::from_utf8(buffer).expect("utf-8 export");
        let mut lines = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"));
        let header = lines.next().expect("header line");
        let records: Vec<serde_json::Value> = lines.collect();
        assert_eq!(
            records.len() as u64,
            written,
            "export's count matches its lines"
        );
        (header, records)
    }

    /// Ids exported from a bank of `schema`, sorted.
    pub async fn export_ids(&self, schema: &Schema, bank: &str) -> Vec<String> {
        let (_, records) = self.export_lines(schema, bank).await;
        let mut ids: Vec<String> = records
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Imports AMA text into a bank of the main tenant.
    pub async fn import(
        &self,
        bank: &str,
        ama: &[u8],
        on_conflict: OnConflict,
    ) -> astrocyte_core::portability::ImportReport {
        self.engine
            .import(&self.schema, bank, on_conflict, ama)
            .await
            .expect("import")
    }

    /// A memory ready for a direct `insert`, embedded with the fixture's embedder.
    pub fn new_memory(&self, bank: &str, id: &str, text: &str) -> NewMemory {
        NewMemory::plain(
            Memory::new(id, bank_id(bank), text),
            self.embedder.embed_one(text),
        )
    }

    /// Drops every tenant the check created (those already dropped are skipped).
    pub async fn finish(self) {
        for schema in &self.created {
            match self.store.drop_tenant(schema).await {
                Ok(()) => {}
                Err(error) if error.kind() == astrocyte_core::ErrorKind::NotFound => {}
                Err(error) => panic!("drop_tenant {schema}: {error}"),
            }
        }
    }
}

/// A valid bank id.
pub fn bank_id(name: &str) -> BankId {
    BankId::new(name).expect("valid bank id")
}

/// Midnight UTC of a date.
pub fn day(year: i32, month: u32, date: u32) -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(year, month, date, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// Sorted copy.
/// Reads until `settled` holds, for up to 20 s. The change feed may lag (never skip) while a
/// transaction elsewhere in the cluster is open (PostgreSQL: entries wait below the oldest
/// running transaction), and other tests run beside the checks.
pub async fn read_until<T, F, Fut>(mut read: F, settled: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = std::time::Instant::now();
    loop {
        let value = read().await;
        if settled(&value) || started.elapsed().as_secs() >= 20 {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}
