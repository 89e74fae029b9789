//! Isolation under concurrency: 50 tenants sharing one pool, their retains, recalls and
//! forgets interleaved, and every result checked to belong to the tenant that asked.

use std::collections::HashSet;
use std::sync::Arc;

use astrocyte_core::{ForgetMode, ForgetSelector, RecallRequest, Schema, Store};

use crate::support::TestDb;
use crate::{engine, retain};

const TENANTS: usize = 50;
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_interleaved_never_see_each_other() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let schemas: Vec<Schema> = (0..TENANTS)
        .map(|i| Schema::new(format!("iso_{i:02}")).expect("schema"))
        .collect();
    futures::future::try_join_all(schemas.iter().map(|schema| store.create_tenant(schema)))
        .await
        .expect("create tenants");
    let engine = Arc::new(engine(Arc::new(store.clone())));

    let tasks = schemas.iter().enumerate().map(|(index, schema)| {
        let engine = engine.clone();
        let schema = schema.clone();
        tokio::spawn(async move {
            let marker = format!("owner{index:02}");
            let mut mine: HashSet<String> = HashSet::new();
            let mut forgotten: HashSet<String> = HashSet::new();
            for round in 0..ROUNDS {
                // Every tenant writes the same shared words into the same bank name, so a leak
                // would rank well in every strategy.
                for item in 0..2 {
                    let text =
                        format!("shared project roadmap meeting {marker} round{round} item{item}");
                    mine.insert(retain(&engine, &schema, "team", &text).await);
                }
                let recall = engine
                    .recall(
                        &schema,
                        RecallRequest {
                            query: "shared project roadmap meeting".into(),
                            banks: vec!["team".into()],
                            max_results: Some(100),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("recall");
                assert_eq!(
                    recall.hits.len(),
                    mine.len() - forgotten.len(),
                    "{schema} round {round}"
                );
                for hit in &recall.hits {
                    assert!(
                        mine.contains(&hit.memory.id),
                        "{schema} saw a foreign id {}",
                        hit.memory.id
                    );
                    assert!(
                        !forgotten.contains(&hit.memory.id),
                        "{schema} saw a forgotten memory"
                    );
                    assert!(
                        hit.memory.text.contains(&marker),
                        "{schema} saw {:?}",
                        hit.memory.text
                    );
                }
                let victim = recall.hits.last().expect("a hit").memory.id.clone();
                let selector = ForgetSelector {
                    memory_ids: Some(vec![victim.clone()]),
                    ..Default::default()
                };
                let count = engine
                    .forget(&schema, "team", &selector, ForgetMode::Soft)
                    .await
                    .expect("forget");
                assert_eq!(count, 1);
                forgotten.insert(victim);
            }
            (schema, mine, forgotten)
        })
    });
    let results = futures::future::try_join_all(tasks).await.expect("tasks");

    // Afterwards, each tenant holds exactly its own visible memories.
    let mut all_ids: HashSet<String> = HashSet::new();
    for (schema, mine, forgotten) in results {
        let tenant = store.tenant(&schema).await.expect("handle");
        let bank = astrocyte_core::BankId::new("team").expect("bank");
        let visible: HashSet<String> = tenant
            .scan(&bank, None, 1000, false)
            .await
            .expect("scan")
            .into_iter()
            .map(|m| m.id)
            .collect();
        let expected: HashSet<String> = mine.difference(&forgotten).cloned().collect();
        assert_eq!(visible, expected, "{schema}");
        assert!(all_ids.is_disjoint(&mine));
        all_ids.extend(mine);
    }
    assert_eq!(all_ids.len(), TENANTS * ROUNDS * 2);
}
