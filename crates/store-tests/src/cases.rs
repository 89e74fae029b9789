//! The conformance checks. Each takes a fresh [`TestStore`], builds a [`Fixture`], asserts one
//! area of the store contract and drops its tenants. They compare sets where fusion order is
//! not the point, and exact orders where it is.

use std::collections::BTreeSet;
use std::time::Duration;

use astrocyte_core::pipeline::budget::estimate_tokens;
use astrocyte_core::portability::OnConflict;
use astrocyte_core::store::{EmbeddingSpace, SearchRequest};
use astrocyte_core::{
    ContentType, Engine, EngineConfig, Error, ErrorKind, ForgetMode, ForgetSelector, Metadata,
    RecallFilter, RecallRequest, RetainRequest,
};
use astrocyte_providers::HashingEmbedder;
use serde_json::json;

pub use crate::browse_cases::{
    change_feed_logs_every_change_in_order, change_feed_never_skips_under_concurrent_writes,
    listing_pages_filters_and_orders, updates_replace_tags_and_metadata,
};
pub use crate::entity_cases::{
    entities_are_isolated_between_tenants, entities_are_listed_with_counts,
    entity_hits_score_rare_entities_higher, forgotten_memories_leave_the_entity_counts,
};
use crate::fixture::{bank_id, day, read_until, sorted, Fixture};
use crate::TestStore;

fn metadata(pairs: &[(&str, serde_json::Value)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A retained memory is found by recall, and by the semantic and keyword strategies alone.
pub async fn retain_then_recall_finds_it(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let cat = fx
        .retain("pets", "Alice adopted a grey cat named Miso")
        .await;
    fx.retain("pets", "The quarterly report is due on Friday")
        .await;
    fx.retain("pets", "Bob plays the cello in an orchestra")
        .await;
    let cat_id = cat.memory_id.expect("stored id");

    let result = fx
        .recall(&["pets"], "Alice cat Miso", RecallFilter::default())
        .await;
    assert_eq!(
        result.hits.first().map(|h| h.memory.id.as_str()),
        Some(cat_id.as_str())
    );
    assert_eq!(
        result.hits[0].memory.text,
        "Alice adopted a grey cat named Miso"
    );
    assert!(
        result.top_semantic_score > 0.5,
        "{}",
        result.top_semantic_score
    );
    for strategy in ["semantic", "keyword", "recency"] {
        assert!(
            result.trace.strategies_used.iter().any(|s| s == strategy),
            "{strategy} ran"
        );
    }

    let tenant = fx.tenant().await;
    let response = tenant
        .search(&SearchRequest {
            banks: vec![bank_id("pets")],
            vector: Some(fx.embedder.embed_one("grey cat Miso")),
            text: Some("grey cat".into()),
            recency: true,
            limit: 10,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    let semantic = response.semantic.expect("semantic ran");
    assert_eq!(semantic.hits[0].memory.id, cat_id);
    assert!(semantic.hits[0].score > 0.5 && semantic.hits[0].score <= 1.0001);
    let keyword = response.keyword.expect("keyword ran");
    assert_eq!(
        keyword.hits.len(),
        1,
        "only one memory mentions grey or cat"
    );
    assert_eq!(keyword.hits[0].memory.id, cat_id);
    assert!(
        keyword.hits[0].score > 0.0,
        "keyword scores are positive, higher is better"
    );
    let recency = response.recency.expect("recency ran");
    assert_eq!(recency.hits.len(), 3);
    fx.finish().await;
}

/// The same recall twice gives identical ids, scores and order; equal scores are ordered by
/// memory id, in the fused result and in each strategy.
pub async fn ranking_is_deterministic_with_ties_by_id(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let topics = ["apples", "pears", "plums", "cherries", "grapes", "melons"];
    for (i, topic) in topics.iter().enumerate() {
        for j in 0..3 {
            fx.retain(
                "fruit",
                &format!("Note {i}{j}: the orchard grows {topic} near river {j} and hill {i}"),
            )
            .await;
        }
    }
    let first = fx
        .recall(
            &["fruit"],
            "orchard grows plums near the river",
            RecallFilter::default(),
        )
        .await;
    let second = fx
        .recall(
            &["fruit"],
            "orchard grows plums near the river",
            RecallFilter::default(),
        )
        .await;
    let view = |r: &astrocyte_core::RecallResult| -> Vec<(String, f32, Option<f32>)> {
        r.hits
            .iter()
            .map(|h| (h.memory.id.clone(), h.score, h.semantic_score))
            .collect()
    };
    assert_eq!(view(&first), view(&second));
    assert_eq!(first.hits.len(), 18);
    for pair in first.hits.windows(2) {
        assert!(pair[0].score >= pair[1].score, "fused hits are best first");
        if pair[0].score == pair[1].score {
            assert!(
                pair[0].memory.id < pair[1].memory.id,
                "fused ties are ordered by id"
            );
        }
    }

    // Three memories with the very same vector: the semantic strategy must order them by id.
    let tenant = fx.tenant().await;
    let mut ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    ids.reverse();
    let twins = ids
        .iter()
        .map(|id| fx.new_memory("twins", id, "identical twin sentence about lanterns"))
        .collect();
    tenant.insert(twins).await.expect("insert twins");
    let request = SearchRequest {
        banks: vec![bank_id("twins")],
        vector: Some(
            fx.embedder
                .embed_one("identical twin sentence about lanterns"),
        ),
        text: Some("lanterns".into()),
        recency: false,
        limit: 10,
        filter: RecallFilter::default(),
    };
    let response = tenant.search(&request).await.expect("search");
    let semantic: Vec<String> = response
        .semantic
        .expect("semantic")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    let keyword: Vec<String> = response
        .keyword
        .expect("keyword")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    assert_eq!(semantic, sorted(ids.clone()));
    assert_eq!(keyword, sorted(ids));
    fx.finish().await;
}

/// Tags (overlap; untagged never match), time range (inclusive, on effective time), fact types
/// and typed metadata equality, alone and combined, through fusion and through each strategy.
pub async fn filters_apply_to_every_strategy(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let retain =
        |content: &str, tags: &[&str], occurred: (i32, u32, u32), fact: &str, meta: Metadata| {
            RetainRequest {
                bank_id: "coffee".into(),
                content: content.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                metadata: meta,
                occurred_at: Some(day(occurred.0, occurred.1, occurred.2)),
                fact_type: Some(fact.into()),
                ..Default::default()
            }
        };
    let requests = vec![
        retain(
            "Coffee tasting notes from a Kenyan farm",
            &["travel", "food"],
            (2024, 1, 10),
            "experience",
            metadata(&[
                ("kind", json!("journal")),
                ("rating", json!(5)),
                ("verified", json!(true)),
            ]),
        ),
        retain(
            "Coffee grinder settings for espresso shots",
            &["food"],
            (2024, 3, 5),
            "world",
            metadata(&[("kind", json!("manual")), ("rating", json!(3))]),
        ),
        retain(
            "Coffee shop opening hours on weekends",
            &[],
            (2024, 6, 1),
            "world",
            metadata(&[("rating", json!(5.0)), ("verified", json!(false))]),
        ),
        retain(
            "Coffee bean price trend this winter",
            &["finance"],
            (2023, 12, 1),
            "opinion",
            metadata(&[("rating", json!("5")), ("kind", serde_json::Value::Null)]),
        ),
    ];
    let mut ids = Vec::new();
    for request in requests {
        ids.push(fx.retain_request(request).await.memory_id.expect("id"));
    }
    let (kenya, grinder, shop, price) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let set = |v: &[&String]| sorted(v.iter().map(|s| s.to_string()).collect());
    let tags = |t: &[&str]| RecallFilter {
        tags: Some(t.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let meta = |pairs: &[(&str, serde_json::Value)]| RecallFilter {
        metadata: metadata(pairs),
        ..Default::default()
    };
    let cases: Vec<(&str, RecallFilter, Vec<String>)> = vec![
        (
            "no filter",
            RecallFilter::default(),
            set(&[kenya, grinder, shop, price]),
        ),
        ("tag food", tags(&["food"]), set(&[kenya, grinder])),
        (
            "tags overlap",
            tags(&["travel", "finance"]),
            set(&[kenya, price]),
        ),
        ("unknown tag", tags(&["nothing-has-this"]), Vec::new()),
        (
            "time range inclusive",
            RecallFilter {
                time_range: Some((day(2024, 1, 10), day(2024, 3, 5))),
                ..Default::default()
            },
            set(&[kenya, grinder]),
        ),
        (
            "fact types",
            RecallFilter {
                fact_types: Some(vec!["world".into(), "opinion".into()]),
                ..Default::default()
            },
            set(&[grinder, shop, price]),
        ),
        (
            "metadata number (1 equals 1.0, not \"5\")",
            meta(&[("rating", json!(5))]),
            set(&[kenya, shop]),
        ),
        (
            "metadata string",
            meta(&[("kind", json!("manual"))]),
            set(&[grinder]),
        ),
        (
            "metadata bool",
            meta(&[("verified", json!(true))]),
            set(&[kenya]),
        ),
        (
            "metadata null",
            meta(&[("kind", serde_json::Value::Null)]),
            set(&[price]),
        ),
        (
            "metadata every key",
            meta(&[("rating", json!(5)), ("kind", json!("journal"))]),
            set(&[kenya]),
        ),
        (
            "metadata missing key",
            meta(&[("absent", json!(1))]),
            Vec::new(),
        ),
        (
            "combined",
            RecallFilter {
                tags: Some(vec!["food".into()]),
                fact_types: Some(vec!["world".into()]),
                ..Default::default()
            },
            set(&[grinder]),
        ),
    ];
    for (label, filter, expected) in cases {
        let recalled = fx.recall_ids(&["coffee"], "coffee", filter.clone()).await;
        assert_eq!(recalled, expected, "recall with {label}");
        let [semantic, keyword, recency] = fx
            .strategy_ids(&fx.schema, "coffee", "coffee", filter)
            .await;
        assert_eq!(semantic, expected, "semantic with {label}");
        assert_eq!(keyword, expected, "keyword with {label}");
        assert_eq!(recency, expected, "recency with {label}");
    }
    fx.finish().await;
}

/// Recall over several banks sees each of them, and only them.
pub async fn recall_spans_several_banks(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let a = fx
        .retain("bank-a", "The violin lesson is on Monday")
        .await
        .memory_id
        .expect("id");
    let b = fx
        .retain("bank-b", "The violin needs new strings")
        .await
        .memory_id
        .expect("id");
    let c = fx
        .retain("bank-c", "The violin case is in the attic")
        .await
        .memory_id
        .expect("id");
    let both = fx
        .recall_ids(&["bank-a", "bank-b"], "violin", RecallFilter::default())
        .await;
    assert_eq!(both, sorted(vec![a.clone(), b.clone()]));
    let one = fx
        .recall_ids(&["bank-c"], "violin", RecallFilter::default())
        .await;
    assert_eq!(one, vec![c.clone()]);
    let all = fx
        .recall_ids(
            &["bank-a", "bank-b", "bank-c", "bank-a"],
            "violin",
            RecallFilter::default(),
        )
        .await;
    assert_eq!(all, sorted(vec![a, b, c]));
    let none = fx
        .recall_ids(&["bank-empty"], "violin", RecallFilter::default())
        .await;
    assert!(none.is_empty());
    fx.finish().await;
}

/// `max_results` is clamped to at least one hit, and `max_tokens` keeps the best prefix whose
/// texts fit the budget.
pub async fn max_results_is_clamped_and_tokens_trimmed(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let words = [
        "tomatoes", "basil", "peppers", "lettuce", "carrots", "onions", "beans", "squash",
    ];
    for (i, word) in words.iter().enumerate() {
        fx.retain(
            "garden",
            &format!("Garden diary entry {i}: planted {word} along the fence row {i}"),
        )
        .await;
    }
    let recall = |max_results: Option<usize>, max_tokens: Option<usize>| {
        fx.engine.recall(
            &fx.schema,
            RecallRequest {
                query: "garden diary planted fence".into(),
                banks: vec!["garden".into()],
                max_results,
                max_tokens,
                filter: RecallFilter::default(),
            },
        )
    };
    let zero = recall(Some(0), None).await.expect("recall");
    assert_eq!(zero.hits.len(), 1, "max_results 0 is clamped to 1");
    assert!(zero.truncated);
    let three = recall(Some(3), None).await.expect("recall");
    assert_eq!(three.hits.len(), 3);
    assert_eq!(three.total_available, 8);
    assert!(three.truncated);
    let huge = recall(Some(1_000_000), None).await.expect("recall");
    assert_eq!(huge.hits.len(), 8);
    assert!(!huge.truncated);
    assert_eq!(
        three.hits.iter().map(|h| &h.memory.id).collect::<Vec<_>>(),
        huge.hits
            .iter()
            .take(3)
            .map(|h| &h.memory.id)
            .collect::<Vec<_>>(),
        "a smaller limit returns a prefix of the larger ranking"
    );

    let per_hit = estimate_tokens(&huge.hits[0].memory.text);
    let budget = per_hit * 2 + per_hit / 2;
    let trimmed = recall(Some(10), Some(budget)).await.expect("recall");
    let used: usize = trimmed
        .hits
        .iter()
        .map(|h| estimate_tokens(&h.memory.text))
        .sum();
    assert_eq!(
        trimmed.hits.len(),
        2,
        "two hits of {per_hit} tokens fit {budget}"
    );
    assert!(used <= budget);
    assert!(trimmed.truncated);
    let tiny = recall(Some(10), Some(1)).await.expect("recall");
    assert_eq!(tiny.hits.len(), 1, "the best hit is kept even over budget");
    fx.finish().await;
}

/// The same text twice: the second retain is a deduplicated no-op pointing at the first.
pub async fn near_duplicates_are_skipped(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let text = "The meeting with Carol moved to Thursday at 3pm";
    let first = fx.retain("calendar", text).await;
    let second = fx
        .engine
        .retain(
            &fx.schema,
            RetainRequest {
                bank_id: "calendar".into(),
                content: text.into(),
                ..Default::default()
            },
        )
        .await
        .expect("retain");
    assert!(!second.stored);
    assert!(second.deduplicated);
    assert_eq!(second.memory_id, first.memory_id);
    assert!(second.memory_ids.is_empty());
    let tenant = fx.tenant().await;
    assert_eq!(tenant.count(&bank_id("calendar")).await.expect("count"), 1);
    // Another bank is not a duplicate.
    fx.retain("calendar-2", text).await;
    // A batch with the same text twice stores it once.
    let batch = fx
        .engine
        .retain_many(
            &fx.schema,
            vec![
                RetainRequest {
                    bank_id: "batch".into(),
                    content: "Paint the shed green".into(),
                    ..Default::default()
                },
                RetainRequest {
                    bank_id: "batch".into(),
                    content: "paint the shed green!".into(),
                    ..Default::default()
                },
            ],
        )
        .await
        .expect("retain_many");
    assert!(batch[0].stored && !batch[1].stored && batch[1].deduplicated);
    assert_eq!(tenant.count(&bank_id("batch")).await.expect("count"), 1);
    fx.finish().await;
}

/// One batch holding near-duplicates of a stored memory and of each other: a twin of a stored
/// memory points at it, a later twin of an earlier item of the batch points at that item, the
/// same text in another bank is stored, and the bank ends up with one copy of each.
pub async fn batch_near_duplicates_of_the_bank_and_of_each_other(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let stored = fx
        .retain("herons", "The blue heron nests by the quiet northern lake")
        .await
        .memory_id
        .expect("stored id");
    let request = |bank: &str, content: &str| RetainRequest {
        bank_id: bank.into(),
        content: content.into(),
        ..Default::default()
    };
    let outcomes = fx
        .engine
        .retain_many(
            &fx.schema,
            vec![
                request("herons", "Paint the old garden fence white on Saturday"),
                request("herons", "the blue heron nests by the quiet northern lake!"),
                request("herons", "paint the old garden fence white on saturday."),
                request("herons-2", "Paint the old garden fence white on Saturday"),
                request(
                    "herons",
                    "The train to Porto leaves at nine from platform four",
                ),
                request("herons", "THE BLUE HERON NESTS BY THE QUIET NORTHERN LAKE"),
            ],
        )
        .await
        .expect("retain_many");
    let fence = outcomes[0].memory_id.clone().expect("fence stored");
    assert!(outcomes[0].stored && !outcomes[0].deduplicated);
    for twin_of_stored in [&outcomes[1], &outcomes[5]] {
        assert!(
            !twin_of_stored.stored && twin_of_stored.deduplicated,
            "{twin_of_stored:?}"
        );
        assert_eq!(twin_of_stored.memory_id.as_deref(), Some(stored.as_str()));
    }
    assert!(
        !outcomes[2].stored && outcomes[2].deduplicated,
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[2].memory_id.as_deref(), Some(fence.as_str()));
    assert!(
        outcomes[3].stored && !outcomes[3].deduplicated,
        "another bank"
    );
    assert!(outcomes[4].stored && !outcomes[4].deduplicated);
    let tenant = fx.tenant().await;
    assert_eq!(tenant.count(&bank_id("herons")).await.expect("count"), 3);
    assert_eq!(tenant.count(&bank_id("herons-2")).await.expect("count"), 1);
    // Only what was stored reached the change feed: exactly three entries, once it settles.
    let query = astrocyte_core::browse::ChangeQuery {
        limit: 100,
        ..Default::default()
    };
    let herons = bank_id("herons");
    let created = read_until(
        || tenant.changes(&herons, &query),
        |page| page.as_ref().map_or(true, |p| p.len() >= 3),
    )
    .await
    .expect("changes");
    assert_eq!(created.len(), 3, "{created:?}");
    fx.finish().await;
}

/// A multi-chunk retain stores every chunk with one group; a batch insert that fails part way
/// (a duplicate id) stores none of it.
pub async fn multi_chunk_retain_and_batch_insert_are_atomic(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let document = "Chapter one describes the lighthouse on the northern cliff.\n\n\
                    Chapter two follows the keeper through a winter storm.\n\n\
                    Chapter three ends with a ship arriving safely at dawn.";
    let outcome = fx
        .retain_request(RetainRequest {
            bank_id: "book".into(),
            content: document.into(),
            content_type: ContentType::Document,
            tags: vec!["novel".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(outcome.memory_ids.len(), 3);
    let tenant = fx.tenant().await;
    let stored = tenant
        .get(&bank_id("book"), &outcome.memory_ids)
        .await
        .expect("get");
    assert_eq!(stored.len(), 3);
    let group = stored[0]
        .chunk
        .as_ref()
        .expect("chunk ref")
        .group_id
        .clone();
    for (index, memory) in stored.iter().enumerate() {
        let chunk = memory.chunk.as_ref().expect("chunk ref");
        assert_eq!(
            (chunk.group_id.as_str(), chunk.index, chunk.count),
            (group.as_str(), index as u32, 3)
        );
        assert_eq!(memory.tags, vec!["novel".to_string()]);
    }

    let id = uuid::Uuid::now_v7().to_string();
    let batch = vec![
        fx.new_memory(
            "atomic",
            &uuid::Uuid::now_v7().to_string(),
            "first of a doomed batch about kites",
        ),
        fx.new_memory("atomic", &id, "second of a doomed batch about sails"),
        fx.new_memory(
            "atomic",
            &id,
            "third reuses the second id and breaks the batch",
        ),
    ];
    let error = tenant
        .insert(batch)
        .await
        .expect_err("a duplicate id fails the batch");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(
        tenant.count(&bank_id("atomic")).await.expect("count"),
        0,
        "nothing of the batch is stored"
    );
    assert!(fx
        .recall_ids(
            &["atomic"],
            "doomed batch kites sails",
            RecallFilter::default()
        )
        .await
        .is_empty());
    fx.finish().await;
}

/// Asserts nothing in `gone` comes back from any strategy (probed with each text), recall,
/// export, or count.
async fn assert_forgotten(
    fx: &Fixture,
    bank: &str,
    gone: &[String],
    probes: &[&str],
    remaining: u64,
) {
    for probe in probes {
        let recalled = fx.recall_ids(&[bank], probe, RecallFilter::default()).await;
        let [semantic, keyword, recency] = fx
            .strategy_ids(&fx.schema, bank, probe, RecallFilter::default())
            .await;
        for id in gone {
            assert!(
                !recalled.contains(id),
                "recall returned forgotten {id} for {probe:?}"
            );
            assert!(!semantic.contains(id), "semantic returned forgotten {id}");
            assert!(!keyword.contains(id), "keyword returned forgotten {id}");
            assert!(!recency.contains(id), "recency returned forgotten {id}");
        }
    }
    let exported = fx.export_ids(&fx.schema, bank).await;
    for id in gone {
        assert!(!exported.contains(id), "export returned forgotten {id}");
    }
    let tenant = fx.tenant().await;
    assert_eq!(exported.len() as u64, remaining);
    assert_eq!(
        tenant.count(&bank_id(bank)).await.expect("count"),
        remaining
    );
    let got = tenant.get(&bank_id(bank), gone).await.expect("get");
    assert!(got.is_empty(), "get returned forgotten memories");
}

/// Forget by ids hides exactly those memories, counts them once, and a second forget counts 0.
pub async fn forget_by_ids(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let keep = fx
        .retain("diary", "Visited the aquarium and saw jellyfish")
        .await
        .memory_id
        .expect("id");
    let drop_a = fx
        .retain("diary", "Forgot my umbrella at the bakery")
        .await
        .memory_id
        .expect("id");
    let drop_b = fx
        .retain("diary", "Lent the ladder to the neighbour")
        .await
        .memory_id
        .expect("id");
    let selector = ForgetSelector {
        memory_ids: Some(vec![drop_a.clone(), drop_b.clone(), "no-such-id".into()]),
        ..Default::default()
    };
    let forgotten = fx
        .engine
        .forget(&fx.schema, "diary", &selector, ForgetMode::Soft)
        .await
        .expect("forget");
    assert_eq!(forgotten, 2);
    let again = fx
        .engine
        .forget(&fx.schema, "diary", &selector, ForgetMode::Soft)
        .await
        .expect("forget");
    assert_eq!(again, 0, "already-forgotten memories are not counted again");
    assert_forgotten(
        &fx,
        "diary",
        &[drop_a, drop_b],
        &[
            "Forgot my umbrella at the bakery",
            "Lent the ladder to the neighbour",
            "umbrella ladder",
        ],
        1,
    )
    .await;
    assert_eq!(
        fx.recall_ids(&["diary"], "aquarium jellyfish", RecallFilter::default())
            .await,
        vec![keep]
    );
    let empty = fx
        .engine
        .forget(
            &fx.schema,
            "diary",
            &ForgetSelector::default(),
            ForgetMode::Soft,
        )
        .await;
    assert_eq!(
        empty.expect_err("empty selector").kind(),
        ErrorKind::InvalidInput
    );
    fx.finish().await;
}

/// Forget by tags, by date (effective time strictly before), and several fields AND-ed.
pub async fn forget_by_tags_before_and_combined(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tagged = |content: &str, tags: &[&str], year: i32| RetainRequest {
        bank_id: "work".into(),
        content: content.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        occurred_at: Some(day(year, 6, 1)),
        ..Default::default()
    };
    let secret_a = fx
        .retain_request(tagged(
            "Project Falcon budget is approved",
            &["falcon"],
            2025,
        ))
        .await
        .memory_id
        .expect("id");
    let secret_b = fx
        .retain_request(tagged(
            "Project Falcon launch slipped a week",
            &["falcon", "launch"],
            2019,
        ))
        .await
        .memory_id
        .expect("id");
    let old = fx
        .retain_request(tagged(
            "The old office had a broken elevator",
            &["office"],
            2018,
        ))
        .await
        .memory_id
        .expect("id");
    let recent = fx
        .retain_request(tagged(
            "The new office has a rooftop garden",
            &["office"],
            2025,
        ))
        .await
        .memory_id
        .expect("id");
    let untagged = fx
        .retain_request(tagged("Lunch options near the station", &[], 2017))
        .await
        .memory_id
        .expect("id");

    // AND-ed: tag office and before 2020 -> only the old office.
    let both = ForgetSelector {
        tags: Some(vec!["office".into()]),
        before: Some(day(2020, 1, 1)),
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&fx.schema, "work", &both, ForgetMode::Soft)
            .await
            .expect("forget"),
        1
    );
    assert_forgotten(
        &fx,
        "work",
        std::slice::from_ref(&old),
        &["old office broken elevator"],
        4,
    )
    .await;

    let by_tag = ForgetSelector {
        tags: Some(vec!["falcon".into(), "nonexistent".into()]),
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&fx.schema, "work", &by_tag, ForgetMode::Soft)
            .await
            .expect("forget"),
        2
    );
    assert_forgotten(
        &fx,
        "work",
        &[secret_a, secret_b],
        &["Project Falcon budget launch"],
        2,
    )
    .await;

    // Purge erases every matching row, the already soft-forgotten ones (2018, 2019) included.
    let before = ForgetSelector {
        before: Some(day(2020, 1, 1)),
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&fx.schema, "work", &before, ForgetMode::Purge)
            .await
            .expect("forget"),
        3
    );
    assert_forgotten(
        &fx,
        "work",
        &[untagged],
        &["Lunch options near the station"],
        1,
    )
    .await;
    assert_eq!(
        fx.recall_ids(&["work"], "office rooftop", RecallFilter::default())
            .await,
        vec![recent]
    );
    fx.finish().await;
}

/// Forget `all` empties the bank: it leaves `list_banks`, export and every strategy; other
/// banks are untouched.
pub async fn forget_all_empties_the_bank(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let mut gone = Vec::new();
    for text in [
        "Swim practice at seven",
        "Bring goggles and a towel",
        "Pool closes early on Sunday",
    ] {
        gone.push(fx.retain("swim", text).await.memory_id.expect("id"));
    }
    let other = fx
        .retain("chess", "Practice the Sicilian defence")
        .await
        .memory_id
        .expect("id");
    let tenant = fx.tenant().await;
    assert_eq!(
        tenant.list_banks().await.expect("banks"),
        vec![bank_id("chess"), bank_id("swim")]
    );
    let all = ForgetSelector {
        all: true,
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&fx.schema, "swim", &all, ForgetMode::Soft)
            .await
            .expect("forget"),
        3
    );
    assert_forgotten(
        &fx,
        "swim",
        &gone,
        &["swim practice goggles pool", "Pool closes early on Sunday"],
        0,
    )
    .await;
    assert_eq!(
        tenant.list_banks().await.expect("banks"),
        vec![bank_id("chess")]
    );
    assert_eq!(
        fx.recall_ids(&["chess", "swim"], "practice", RecallFilter::default())
            .await,
        vec![other]
    );
    fx.finish().await;
}

/// Soft forget keeps what `as_of` saw before it; purge erases it even from time travel.
pub async fn soft_forget_keeps_time_travel_and_purge_does_not(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let before_retain = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = fx
        .retain("history", "The lighthouse keeper retired in May")
        .await
        .memory_id
        .expect("id");
    fx.retain("history", "The harbour was dredged last spring")
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let while_visible = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let selector = ForgetSelector {
        memory_ids: Some(vec![id.clone()]),
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&fx.schema, "history", &selector, ForgetMode::Soft)
            .await
            .expect("forget"),
        1
    );
    let probe = "lighthouse keeper retired";
    let as_of = |t| RecallFilter {
        as_of: Some(t),
        ..Default::default()
    };

    assert!(!fx
        .recall_ids(&["history"], probe, RecallFilter::default())
        .await
        .contains(&id));
    assert!(fx
        .recall_ids(&["history"], probe, as_of(while_visible))
        .await
        .contains(&id));
    for strategy in fx
        .strategy_ids(&fx.schema, "history", probe, as_of(while_visible))
        .await
    {
        assert!(
            strategy.contains(&id),
            "every strategy sees the memory as of before the forget"
        );
    }
    assert!(
        !fx.recall_ids(&["history"], probe, as_of(before_retain))
            .await
            .contains(&id),
        "not yet retained then"
    );
    assert!(!fx
        .recall_ids(&["history"], probe, as_of(chrono::Utc::now()))
        .await
        .contains(&id));
    let tenant = fx.tenant().await;
    assert!(
        tenant
            .exists(&bank_id("history"), &id)
            .await
            .expect("exists"),
        "soft-forgotten rows still exist"
    );

    assert_eq!(
        fx.engine
            .forget(&fx.schema, "history", &selector, ForgetMode::Purge)
            .await
            .expect("purge"),
        1
    );
    assert!(!fx
        .recall_ids(&["history"], probe, as_of(while_visible))
        .await
        .contains(&id));
    for strategy in fx
        .strategy_ids(&fx.schema, "history", probe, as_of(while_visible))
        .await
    {
        assert!(
            !strategy.contains(&id),
            "purged memories are gone even from time travel"
        );
    }
    assert!(!tenant
        .exists(&bank_id("history"), &id)
        .await
        .expect("exists"));
    assert_eq!(tenant.count(&bank_id("history")).await.expect("count"), 1);
    fx.finish().await;
}

/// Export streams a bank larger than one page whole; import into another bank round-trips,
/// then skips or overwrites existing ids. Also checks the `max_results` upper clamp (1000).
pub async fn export_streams_every_memory_and_import_round_trips(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    const TOTAL: usize = 1_200;
    let mut retained = Vec::with_capacity(TOTAL);
    for batch in 0..(TOTAL / 300) {
        let requests = (batch * 300..(batch + 1) * 300)
            .map(|i| RetainRequest {
                bank_id: "bulk".into(),
                content: format!(
                    "Record r{i} filed under k{} with code c{} and mark m{}",
                    i * 7,
                    i * 13 + 1,
                    i * 31 + 2
                ),
                tags: vec![format!("group-{}", i % 4)],
                metadata: metadata(&[("n", json!(i))]),
                ..Default::default()
            })
            .collect();
        for outcome in fx
            .engine
            .retain_many(&fx.schema, requests)
            .await
            .expect("retain_many")
        {
            assert!(outcome.stored, "{outcome:?}");
            retained.push(outcome.memory_id.expect("id"));
        }
    }
    let (header, records) = fx.export_lines(&fx.schema, "bulk").await;
    assert_eq!(header["_ama_version"], json!(1));
    assert_eq!(header["memory_count"], json!(TOTAL));
    assert_eq!(records.len(), TOTAL);
    let exported: BTreeSet<String> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(
        exported,
        retained.iter().cloned().collect::<BTreeSet<_>>(),
        "every memory exported exactly once"
    );

    let clamped = fx
        .engine
        .recall(
            &fx.schema,
            RecallRequest {
                query: "record filed under code".into(),
                banks: vec!["bulk".into()],
                max_results: Some(5_000),
                ..Default::default()
            },
        )
        .await
        .expect("recall");
    assert_eq!(clamped.hits.len(), 1_000, "max_results is clamped to 1000");

    let mut ama = Vec::new();
    fx.engine
        .export(&fx.schema, "bulk", false, &mut ama)
        .await
        .expect("export");
    let report = fx.import("bulk-copy", &ama, OnConflict::Skip).await;
    assert_eq!(
        (report.imported, report.skipped, report.errors),
        (TOTAL as u64, 0, 0)
    );
    let tenant = fx.tenant().await;
    assert_eq!(
        tenant.count(&bank_id("bulk-copy")).await.expect("count"),
        TOTAL as u64
    );
    let sample = retained[TOTAL / 2].clone();
    let original = tenant
        .get(&bank_id("bulk"), std::slice::from_ref(&sample))
        .await
        .expect("get");
    let copy = tenant
        .get(&bank_id("bulk-copy"), std::slice::from_ref(&sample))
        .await
        .expect("get");
    assert_eq!(copy.len(), 1);
    assert_eq!(
        (
            &copy[0].text,
            &copy[0].tags,
            &copy[0].metadata,
            &copy[0].fact_type,
            copy[0].retained_at.timestamp_micros()
        ),
        (
            &original[0].text,
            &original[0].tags,
            &original[0].metadata,
            &original[0].fact_type,
            original[0].retained_at.timestamp_micros()
        ),
    );
    assert!(fx
        .recall_ids(&["bulk-copy"], &original[0].text, RecallFilter::default())
        .await
        .contains(&sample));

    // Conflicts, on a slice of the file whose first record was edited: skip keeps the stored
    // text, overwrite replaces it.
    const SLICE: usize = 200;
    let text = String::from_utf8(ama.clone()).expect("utf-8 export");
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .take(SLICE + 1)
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    let edited_id = lines[1]["id"].as_str().expect("id").to_string();
    lines[1]["text"] = json!("Edited record replaces the original text");
    let slice: Vec<u8> = lines
        .iter()
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        .into_bytes();
    let text_of = |memories: Vec<astrocyte_core::Memory>| {
        memories.into_iter().map(|m| m.text).collect::<Vec<_>>()
    };
    let again = fx.import("bulk-copy", &slice, OnConflict::Skip).await;
    assert_eq!((again.imported, again.skipped), (0, SLICE as u64));
    let kept = tenant
        .get(&bank_id("bulk-copy"), std::slice::from_ref(&edited_id))
        .await
        .expect("get");
    assert_ne!(
        text_of(kept),
        vec!["Edited record replaces the original text".to_string()]
    );
    let overwrite = fx.import("bulk-copy", &slice, OnConflict::Overwrite).await;
    assert_eq!((overwrite.imported, overwrite.skipped), (SLICE as u64, 0));
    let replaced = tenant
        .get(&bank_id("bulk-copy"), std::slice::from_ref(&edited_id))
        .await
        .expect("get");
    assert_eq!(
        text_of(replaced),
        vec!["Edited record replaces the original text".to_string()]
    );
    assert_eq!(
        tenant.count(&bank_id("bulk-copy")).await.expect("count"),
        TOTAL as u64
    );
    assert_eq!(fx.export_ids(&fx.schema, "bulk-copy").await.len(), TOTAL);
    fx.finish().await;
}

/// An import refuses a line that is not UTF-8 on its own, and an id repeated within one file
/// is imported once: the first kept (skip) or the last (overwrite), never a failed file.
pub async fn import_refuses_bad_lines_alone_and_repeated_ids_once(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let header = br#"{"_ama_version":1,"bank_id":"x","exported_at":"2024-01-01T00:00:00Z","provider":"p","memory_count":3}"#;
    let mut ama = header.to_vec();
    ama.extend_from_slice(b"\n{\"id\":\"l1\",\"text\":\"caf\xe9 au lait\"}\r\n");
    ama.extend_from_slice(b"{\"id\":\"d1\",\"text\":\"The first copy of d1.\"}\n");
    ama.extend_from_slice(b"{\"id\":\"d1\",\"text\":\"The second copy of d1.\"}\n");
    let skip = fx.import("dupes", &ama, OnConflict::Skip).await;
    assert_eq!((skip.imported, skip.skipped, skip.errors), (1, 1, 1));
    assert_eq!(skip.rejected[0].line, 2, "{:?}", skip.rejected);
    let tenant = fx.tenant().await;
    let text = |memories: Vec<astrocyte_core::Memory>| {
        memories.into_iter().map(|m| m.text).collect::<Vec<_>>()
    };
    let d1 = || vec!["d1".to_string()];
    let stored = tenant.get(&bank_id("dupes"), &d1()).await.expect("get");
    assert_eq!(text(stored), vec!["The first copy of d1.".to_string()]);

    let over = fx.import("fresh", &ama, OnConflict::Overwrite).await;
    assert_eq!((over.imported, over.errors), (1, 1));
    let stored = tenant.get(&bank_id("fresh"), &d1()).await.expect("get");
    assert_eq!(text(stored), vec!["The second copy of d1.".to_string()]);

    // A header that is not UTF-8 is a refused file, not a failure of the server.
    let mut bad_header = b"{\"_ama_version\":1,\"bank_id\":\"\xff\"}\n".to_vec();
    bad_header.extend_from_slice(b"{\"id\":\"z\",\"text\":\"never read\"}\n");
    let refused = fx
        .engine
        .import(&fx.schema, "dupes", OnConflict::Skip, bad_header.as_slice())
        .await
        .expect_err("refused");
    assert_eq!(
        refused.kind(),
        astrocyte_core::ErrorKind::InvalidInput,
        "{refused}"
    );
    fx.finish().await;
}

/// Two tenants with the same bank name never see each other; dropping one leaves the other
/// whole.
pub async fn tenants_are_isolated_and_drop_removes_one(test_store: TestStore) {
    let mut fx = Fixture::new(test_store).await;
    let tenant_a = fx.schema.clone();
    let tenant_b = fx.new_tenant("other").await;
    let retain = |schema: &astrocyte_core::Schema, content: &str| {
        let request = RetainRequest {
            bank_id: "shared".into(),
            content: content.into(),
            ..Default::default()
        };
        let schema = schema.clone();
        let engine = &fx.engine;
        async move {
            engine
                .retain(&schema, request)
                .await
                .expect("retain")
                .memory_id
                .expect("id")
        }
    };
    let a_id = retain(&tenant_a, "Tenant A secret: the vault code is 4321").await;
    let b_id = retain(&tenant_b, "Tenant B note: the vault is empty on Sundays").await;
    let query = RecallRequest {
        query: "vault code secret empty Sundays".into(),
        banks: vec!["shared".into()],
        max_results: Some(50),
        ..Default::default()
    };
    let seen_by_a: Vec<String> = fx
        .engine
        .recall(&tenant_a, query.clone())
        .await
        .expect("recall")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    let seen_by_b: Vec<String> = fx
        .engine
        .recall(&tenant_b, query.clone())
        .await
        .expect("recall")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    assert_eq!(seen_by_a, vec![a_id.clone()]);
    assert_eq!(seen_by_b, vec![b_id.clone()]);
    assert_eq!(fx.export_ids(&tenant_a, "shared").await, vec![a_id.clone()]);
    assert_eq!(fx.export_ids(&tenant_b, "shared").await, vec![b_id.clone()]);
    let handle_a = fx.store.tenant(&tenant_a).await.expect("tenant a");
    let handle_b = fx.store.tenant(&tenant_b).await.expect("tenant b");
    assert!(!handle_a
        .exists(&bank_id("shared"), &b_id)
        .await
        .expect("exists"));
    assert!(handle_a
        .get(&bank_id("shared"), std::slice::from_ref(&b_id))
        .await
        .expect("get")
        .is_empty());
    let forget_b_from_a = ForgetSelector {
        memory_ids: Some(vec![b_id.clone()]),
        ..Default::default()
    };
    assert_eq!(
        fx.engine
            .forget(&tenant_a, "shared", &forget_b_from_a, ForgetMode::Purge)
            .await
            .expect("forget"),
        0
    );
    handle_b
        .insert(vec![fx.new_memory(
            "only-b",
            &uuid::Uuid::now_v7().to_string(),
            "bank only tenant B has",
        )])
        .await
        .expect("insert");
    assert_eq!(
        handle_a.list_banks().await.expect("banks"),
        vec![bank_id("shared")]
    );
    assert_eq!(
        handle_b.list_banks().await.expect("banks"),
        vec![bank_id("only-b"), bank_id("shared")]
    );

    fx.store
        .drop_tenant(&tenant_a)
        .await
        .expect("drop tenant a");
    let listed: Vec<_> = fx
        .store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema)
        .collect();
    assert!(!listed.contains(&tenant_a), "dropped tenant is not listed");
    assert!(listed.contains(&tenant_b));
    let again = fx
        .store
        .drop_tenant(&tenant_a)
        .await
        .expect_err("dropping twice");
    assert_eq!(again.kind(), ErrorKind::NotFound);
    // A backend either refuses the unknown tenant or hands out an empty one.
    match fx.store.tenant(&tenant_a).await {
        Err(error) => assert_eq!(error.kind(), ErrorKind::NotFound),
        Ok(fresh) => {
            assert!(
                fresh.list_banks().await.expect("banks").is_empty(),
                "nothing of tenant A survives"
            );
            assert!(!fresh
                .exists(&bank_id("shared"), &a_id)
                .await
                .expect("exists"));
        }
    }
    let b_after: Vec<String> = fx
        .engine
        .recall(&tenant_b, query)
        .await
        .expect("recall")
        .hits
        .into_iter()
        .map(|h| h.memory.id)
        .collect();
    assert_eq!(b_after, vec![b_id]);
    assert_eq!(
        fx.store
            .tenant(&tenant_b)
            .await
            .expect("b")
            .count(&bank_id("shared"))
            .await
            .expect("count"),
        1
    );
    fx.finish().await;
}

/// An embedder with another dimension, or another model of the same dimension, is refused with
/// `DimensionMismatch`, and nothing is written.
pub async fn embedding_space_mismatch_is_a_clear_error(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    fx.retain("space", "Vectors of one model only").await;
    let narrow = Engine::new(
        fx.store.clone(),
        std::sync::Arc::new(HashingEmbedder::new(64)),
        EngineConfig::default(),
    );
    let error = narrow
        .retain(
            &fx.schema,
            RetainRequest {
                bank_id: "space".into(),
                content: "a different space".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("dimension mismatch");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    match &error {
        Error::DimensionMismatch {
            stored, configured, ..
        } => assert_eq!((*stored, *configured), (128, 64)),
        other => panic!("expected DimensionMismatch, got {other:?}"),
    }
    assert!(error.to_string().contains("dimension"), "{error}");
    let recall = narrow
        .recall(
            &fx.schema,
            RecallRequest {
                query: "vectors".into(),
                banks: vec!["space".into()],
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(recall, Err(Error::DimensionMismatch { .. })));

    let tenant = fx.store.tenant(&fx.schema).await.expect("tenant");
    let renamed = tenant
        .ensure_embedding_space(&EmbeddingSpace {
            model: "another-model".into(),
            dimension: 128,
        })
        .await
        .expect_err("model change");
    assert!(
        matches!(renamed, Error::DimensionMismatch { .. }),
        "{renamed:?}"
    );
    tenant
        .ensure_embedding_space(&EmbeddingSpace {
            model: astrocyte_core::Embedder::model(fx.embedder.as_ref()).into(),
            dimension: 128,
        })
        .await
        .expect("the recorded space is accepted");
    let wrong_vector = {
        let mut memory = fx.new_memory("space", &uuid::Uuid::now_v7().to_string(), "short vector");
        memory.embedding.truncate(64);
        memory
    };
    assert!(
        tenant.insert(vec![wrong_vector]).await.is_err(),
        "a vector of the wrong dimension is refused"
    );
    assert_eq!(tenant.count(&bank_id("space")).await.expect("count"), 1);
    fx.finish().await;
}

/// Empty content is rejected as an outcome, stores nothing and leaves stored memories intact;
/// an invalid bank id is an error.
pub async fn validation_failure_stores_nothing_and_loses_nothing(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let kept = fx
        .retain("notes", "Water the ferns every Tuesday")
        .await
        .memory_id
        .expect("id");
    let empty = fx
        .engine
        .retain(
            &fx.schema,
            RetainRequest {
                bank_id: "notes".into(),
                content: "   ".into(),
                ..Default::default()
            },
        )
        .await
        .expect("validation failures are outcomes");
    assert!(!empty.stored);
    assert_eq!(empty.error.as_deref(), Some("Content is empty"));
    let mixed = fx
        .engine
        .retain_many(
            &fx.schema,
            vec![
                RetainRequest {
                    bank_id: "notes".into(),
                    content: "".into(),
                    ..Default::default()
                },
                RetainRequest {
                    bank_id: "notes".into(),
                    content: "Repot the cactus in spring".into(),
                    ..Default::default()
                },
            ],
        )
        .await
        .expect("retain_many");
    assert!(!mixed[0].stored && mixed[1].stored);
    let bad_bank = fx
        .engine
        .retain(
            &fx.schema,
            RetainRequest {
                bank_id: "no spaces allowed".into(),
                content: "x".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("invalid bank id");
    assert_eq!(bad_bank.kind(), ErrorKind::InvalidInput);
    let tenant = fx.tenant().await;
    assert_eq!(tenant.count(&bank_id("notes")).await.expect("count"), 2);
    assert!(fx
        .recall_ids(&["notes"], "water ferns Tuesday", RecallFilter::default())
        .await
        .contains(&kept));
    fx.finish().await;
}

/// `scan` pages in id order without gaps, with embeddings only when asked; `get` keeps the
/// caller's order and skips missing ids; `exists` sees soft-forgotten rows; `count` does not.
pub async fn store_reads_scan_get_exists_count(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    let bank = bank_id("reads");
    let memories: Vec<_> = (0..25)
        .map(|i| {
            fx.new_memory(
                "reads",
                &uuid::Uuid::now_v7().to_string(),
                &format!("reading list item {i} volume v{}", i * 3),
            )
        })
        .collect();
    let mut ids: Vec<String> = memories.iter().map(|m| m.memory.id.clone()).collect();
    tenant.insert(memories).await.expect("insert");
    ids.sort();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = tenant
            .scan(&bank, after.as_ref(), 7, false)
            .await
            .expect("scan");
        assert!(page.len() <= 7);
        assert!(page.iter().all(|m| m.embedding.is_none()));
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(paged, ids, "pages cover every memory once, in id order");
    let with_vectors = tenant.scan(&bank, None, 2, true).await.expect("scan");
    let vector = with_vectors[0]
        .embedding
        .as_ref()
        .expect("embedding when asked");
    assert_eq!(vector.len(), 128);
    assert_eq!(
        vector,
        &fx.embedder.embed_one(&with_vectors[0].text),
        "vectors round-trip exactly"
    );

    let wanted = vec![ids[5].clone(), "missing".to_string(), ids[2].clone()];
    let got: Vec<String> = tenant
        .get(&bank, &wanted)
        .await
        .expect("get")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, vec![ids[5].clone(), ids[2].clone()]);
    let selector = ForgetSelector {
        memory_ids: Some(vec![ids[5].clone()]),
        ..Default::default()
    };
    tenant
        .forget(&bank, &selector, ForgetMode::Soft, chrono::Utc::now())
        .await
        .expect("forget");
    assert!(tenant.exists(&bank, &ids[5]).await.expect("exists"));
    assert!(!tenant
        .exists(&bank, &"missing".to_string())
        .await
        .expect("exists"));
    assert!(
        !tenant
            .exists(&bank_id("other-bank"), &ids[2])
            .await
            .expect("exists"),
        "exists is per bank"
    );
    assert_eq!(tenant.count(&bank).await.expect("count"), 24);
    assert_eq!(
        tenant
            .scan(&bank, None, 100, false)
            .await
            .expect("scan")
            .len(),
        24
    );
    fx.finish().await;
}

/// `create_tenant` refuses an existing tenant, `drop_tenant` an unknown one; `list_tenants`
/// is sorted and includes created tenants; `health` answers.
pub async fn tenant_lifecycle(test_store: TestStore) {
    let mut fx = Fixture::new(test_store).await;
    fx.store.health().await.expect("healthy");
    let conflict = fx
        .store
        .create_tenant(&fx.schema)
        .await
        .expect_err("exists");
    assert_eq!(conflict.kind(), ErrorKind::Conflict);
    let second = fx.new_tenant("second").await;
    let listed: Vec<_> = fx
        .store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema)
        .collect();
    assert!(listed.contains(&fx.schema) && listed.contains(&second));
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    let unknown = astrocyte_core::Schema::new(format!(
        "ct_never_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .expect("schema");
    assert_eq!(
        fx.store
            .drop_tenant(&unknown)
            .await
            .expect_err("unknown")
            .kind(),
        ErrorKind::NotFound
    );
    assert!(!fx.store.backend().is_empty());
    fx.finish().await;
}

/// Query text full of FTS/regex operators and quotes is searched as plain words, never an
/// error; text with no words yields no keyword hits.
pub async fn keyword_search_accepts_any_text(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let id = fx
        .retain(
            "syntax",
            "Remember: C++ \"templates\" AND NOT macros (really) near* the end",
        )
        .await
        .memory_id
        .expect("id");
    for query in [
        "AND OR NOT",
        "\"unbalanced quote",
        "templates* (near) ^start",
        "col:templates",
        "'; DROP TABLE memories; --",
        "ñandú café",
        "🦀",
    ] {
        let result = fx.recall(&["syntax"], query, RecallFilter::default()).await;
        assert!(result.hits.len() <= 1, "{query}");
    }
    let tenant = fx.tenant().await;
    let response = tenant
        .search(&SearchRequest {
            banks: vec![bank_id("syntax")],
            vector: None,
            text: Some("\"templates\" AND (macros".into()),
            recency: false,
            limit: 5,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    assert!(response.semantic.is_none() && response.recency.is_none());
    assert_eq!(
        response
            .keyword
            .expect("keyword")
            .hits
            .into_iter()
            .map(|h| h.memory.id)
            .collect::<Vec<_>>(),
        vec![id]
    );
    let nothing = tenant
        .search(&SearchRequest {
            banks: vec![bank_id("syntax")],
            vector: None,
            text: Some("?! ... --".into()),
            recency: false,
            limit: 5,
            filter: RecallFilter::default(),
        })
        .await
        .expect("search");
    assert!(nothing.keyword.expect("keyword").hits.is_empty());
    fx.finish().await;
}

/// `nearest_each` answers per vector, in order, with the most similar visible memory of the
/// bank, `None` on an empty bank or under the score bar, and never a forgotten memory.
pub async fn nearest_each_finds_the_closest_visible_memory(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    let bank = bank_id("near");
    let empty = tenant
        .nearest_each(&bank, &[fx.embedder.embed_one("anything")], -1.0)
        .await
        .expect("nearest");
    assert_eq!(empty, vec![None]);
    let kites = fx
        .retain("near", "Flying kites on the windy beach")
        .await
        .memory_id
        .expect("id");
    let soup = fx
        .retain("near", "Tomato soup recipe with fresh basil")
        .await
        .memory_id
        .expect("id");
    let probes = vec![
        fx.embedder.embed_one("Flying kites on the windy beach"),
        fx.embedder.embed_one("basil tomato soup"),
    ];
    let found = tenant
        .nearest_each(&bank, &probes, -1.0)
        .await
        .expect("nearest");
    let (first_id, first_score) = found[0].clone().expect("a neighbour");
    assert_eq!(first_id, kites);
    assert!(
        (first_score - 1.0).abs() < 1e-4,
        "identical text has cosine 1: {first_score}"
    );
    assert_eq!(
        found[1].as_ref().map(|(id, _)| id.clone()),
        Some(soup.clone())
    );
    // Below the bar a neighbour is not reported at all.
    let (_, soup_score) = found[1].clone().expect("a neighbour");
    let barred = tenant
        .nearest_each(&bank, &probes, soup_score + 0.01)
        .await
        .expect("nearest");
    assert_eq!(
        barred[0].as_ref().map(|(id, _)| id.clone()),
        Some(kites.clone())
    );
    assert_eq!(barred[1], None, "{soup_score} is under the bar");
    // A large batch (a store may split it over connections) answers every probe, in order.
    let many: Vec<Vec<f32>> = (0..131).map(|i| probes[i % 2].clone()).collect();
    let answered = tenant
        .nearest_each(&bank, &many, -1.0)
        .await
        .expect("nearest");
    assert_eq!(answered.len(), many.len());
    for (i, hit) in answered.iter().enumerate() {
        let expected = if i % 2 == 0 { &kites } else { &soup };
        assert_eq!(hit.as_ref().map(|(id, _)| id), Some(expected), "probe {i}");
    }
    let selector = ForgetSelector {
        memory_ids: Some(vec![kites.clone()]),
        ..Default::default()
    };
    tenant
        .forget(&bank, &selector, ForgetMode::Soft, chrono::Utc::now())
        .await
        .expect("forget");
    let after = tenant
        .nearest_each(&bank, &probes[..1], -1.0)
        .await
        .expect("nearest");
    assert_ne!(
        after[0].as_ref().map(|(id, _)| id.clone()),
        Some(kites),
        "forgotten memories are not neighbours"
    );
    fx.finish().await;
}

/// The keyword index covers a memory's retrieval context (`NewMemory::index_text`: the date in
/// words; `NewMemory::index_context`: the caller's context), but recall returns only the
/// memory's own text.
pub async fn keyword_index_covers_context_never_returned(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let outcome = fx
        .retain_request(RetainRequest {
            bank_id: "context".into(),
            content: "We should go there next weekend".into(),
            context: Some("Talking about the zeppelin museum in Friedrichshafen".into()),
            occurred_at: Some(day(2023, 5, 8)),
            ..Default::default()
        })
        .await;
    let id = outcome.memory_id.expect("id");
    let tenant = fx.tenant().await;
    for words in ["zeppelin museum", "May 2023", "Monday"] {
        let response = tenant
            .search(&SearchRequest {
                banks: vec![bank_id("context")],
                vector: None,
                text: Some(words.into()),
                recency: false,
                limit: 5,
                filter: RecallFilter::default(),
            })
            .await
            .expect("search");
        let hits = response.keyword.expect("keyword").hits;
        assert_eq!(hits.len(), 1, "context words {words:?} find the memory");
        assert_eq!(hits[0].memory.id, id);
        assert_eq!(
            hits[0].memory.text, "We should go there next weekend",
            "context is never returned"
        );
    }
    let exported = fx.export_lines(&fx.schema, "context").await.1;
    assert_eq!(
        exported[0]["text"],
        json!("We should go there next weekend")
    );
    fx.finish().await;
}

/// Input a store cannot hold is refused in core, before any store, with one message: a NUL
/// character anywhere, a date outside 0001..=9999, an over-long id. The extreme dates and ids
/// that are allowed are stored and matched on every store alike.
pub async fn hostile_inputs_are_refused_alike(test_store: TestStore) {
    use chrono::TimeZone;
    let fx = Fixture::new(test_store).await;
    let retain = |change: &dyn Fn(&mut RetainRequest)| {
        let mut request = RetainRequest {
            bank_id: "notes".into(),
            content: "The boiler was serviced".into(),
            ..Default::default()
        };
        change(&mut request);
        request
    };
    let too_early = chrono::Utc
        .with_ymd_and_hms(0, 12, 31, 23, 59, 59)
        .single()
        .expect("a valid chrono date");
    let too_late = chrono::Utc
        .with_ymd_and_hms(10000, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid chrono date");
    let refused: Vec<(RetainRequest, &str)> = vec![
        (
            retain(&|r| r.content = "nul \0 here".into()),
            "content must not contain a NUL character",
        ),
        (
            retain(&|r| r.tags = vec!["a\0b".into()]),
            "tags must not contain a NUL character",
        ),
        (
            retain(&|r| {
                r.metadata = metadata(&[("k\0", json!("v"))]);
            }),
            "metadata key must not contain a NUL character",
        ),
        (
            retain(&|r| r.metadata = metadata(&[("k", json!("v\0"))])),
            "metadata value for \"k\" must not contain a NUL character",
        ),
        (
            retain(&|r| r.occurred_at = Some(too_early)),
            "occurred_at must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
        (
            retain(&|r| r.occurred_at = Some(too_late)),
            "occurred_at must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
        (
            retain(&|r| r.source = Some("\0".into())),
            "source must not contain a NUL character",
        ),
    ];
    for (request, message) in refused {
        let error = fx
            .engine
            .retain(&fx.schema, request)
            .await
            .expect_err(message);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{message}");
        assert_eq!(error.to_string(), message);
    }
    let recall = |change: &dyn Fn(&mut RecallRequest)| {
        let mut request = RecallRequest {
            query: "boiler".into(),
            banks: vec!["notes".into()],
            ..Default::default()
        };
        change(&mut request);
        request
    };
    let refused: Vec<(RecallRequest, &str)> = vec![
        (
            recall(&|r| r.query = "boi\0ler".into()),
            "query must not contain a NUL character",
        ),
        (
            recall(&|r| r.filter.tags = Some(vec!["\0".into()])),
            "tags must not contain a NUL character",
        ),
        (
            recall(&|r| r.filter.as_of = Some(too_late)),
            "as_of must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
        (
            recall(&|r| r.filter.time_range = Some((too_early, too_late))),
            "time_range must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
    ];
    for (request, message) in refused {
        let error = fx
            .engine
            .recall(&fx.schema, request)
            .await
            .expect_err(message);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{message}");
        assert_eq!(error.to_string(), message);
    }
    let fx_ref = &fx;
    let forget = |selector: ForgetSelector| async move {
        fx_ref
            .engine
            .forget(&fx_ref.schema, "notes", &selector, ForgetMode::Soft)
            .await
    };
    for (selector, message) in [
        (
            ForgetSelector {
                memory_ids: Some(vec!["id\0".into()]),
                ..Default::default()
            },
            "memory_ids must not contain a NUL character",
        ),
        (
            ForgetSelector {
                memory_ids: Some(vec!["x".repeat(129)]),
                ..Default::default()
            },
            "memory_ids is longer than 128 bytes",
        ),
        (
            ForgetSelector {
                before: Some(too_late),
                ..Default::default()
            },
            "before_date must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
    ] {
        let error = forget(selector).await.expect_err(message);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{message}");
        assert_eq!(error.to_string(), message);
    }

    // The edges of the range are stored and found, by every store.
    let earliest = chrono::Utc
        .with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let latest = chrono::Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("date");
    let old = fx
        .retain_request(retain(&|r| {
            r.content = "The oldest record of the boiler".into();
            r.occurred_at = Some(earliest);
        }))
        .await
        .memory_id
        .expect("id");
    let future = fx
        .retain_request(retain(&|r| {
            r.content = "A far future boiler note".into();
            r.occurred_at = Some(latest);
        }))
        .await
        .memory_id
        .expect("id");
    let found = fx
        .recall_ids(
            &["notes"],
            "boiler",
            RecallFilter {
                time_range: Some((earliest, latest)),
                as_of: Some(latest),
                ..Default::default()
            },
        )
        .await;
    assert!(found.contains(&old) && found.contains(&future), "{found:?}");
    let forgotten = forget(ForgetSelector {
        memory_ids: Some(vec!["x".repeat(128)]),
        before: Some(earliest),
        ..Default::default()
    })
    .await
    .expect("a 128-byte id and the earliest date are valid");
    assert_eq!(forgotten, 0);
    fx.finish().await;
}

/// Turns retained one at a time into one thread lend each other their words as keyword context,
/// as a whole-conversation retain's turns do: a turn is found by its neighbours' words, also by
/// those of a neighbour that arrived after it; a forgotten turn stops lending; an export and
/// import keeps the thread and rebuilds the context; other threads never lend.
pub async fn threaded_turns_lend_their_neighbours_context(test_store: TestStore) {
    let mut fx = Fixture::new(test_store).await;
    let copy = fx.new_tenant("thread_copy").await;
    let turn = |content: &str, session: &str| RetainRequest {
        bank_id: "chat".into(),
        content: content.into(),
        metadata: [("session".to_string(), json!(session))]
            .into_iter()
            .collect(),
        occurred_at: Some(day(2023, 5, 8)),
        ..Default::default()
    };
    let keyword_ids = |words: &'static str| {
        let fx = &fx;
        async move {
            let tenant = fx.tenant().await;
            let response = tenant
                .search(&SearchRequest {
                    banks: vec![bank_id("chat")],
                    vector: None,
                    text: Some(words.into()),
                    recency: false,
                    limit: 10,
                    filter: RecallFilter::default(),
                })
                .await
                .expect("search");
            let mut ids: Vec<String> = response
                .keyword
                .expect("keyword")
                .hits
                .into_iter()
                .map(|h| h.memory.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let first = fx
        .retain_request(turn("Have you ever been to Friedrichshafen?", "1"))
        .await
        .memory_id
        .expect("first");
    let second = fx
        .retain_request(turn("Yes, the zeppelin museum there is wonderful.", "1"))
        .await
        .memory_id
        .expect("second");
    let other = fx
        .retain_request(turn("My violin lessons start on Tuesday.", "2"))
        .await
        .memory_id
        .expect("other thread");
    // The first turn is found by the words of the turn that arrived after it, and the second
    // by the first's; the other thread lends nothing.
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(keyword_ids("zeppelin museum").await, both);
    assert_eq!(keyword_ids("Friedrichshafen").await, both);
    assert_eq!(keyword_ids("violin lessons").await, vec![other.clone()]);
    let tenant = fx.tenant().await;
    let stored = tenant
        .get(&bank_id("chat"), std::slice::from_ref(&first))
        .await
        .expect("get");
    assert_eq!(
        stored[0].thread.as_deref(),
        Some("1"),
        "the thread is stored"
    );
    assert_eq!(
        stored[0].text, "Have you ever been to Friedrichshafen?",
        "context is never returned"
    );

    // Export and import into another tenant keep the thread and rebuild the context.
    let (header, lines) = fx.export_lines(&fx.schema, "chat").await;
    assert!(lines.iter().all(|l| l["thread"].is_string()), "{lines:?}");
    let mut text = serde_json::to_string(&header).expect("header");
    for line in &lines {
        text.push('\n');
        text.push_str(&serde_json::to_string(line).expect("line"));
    }
    fx.engine
        .import(&copy, "chat", OnConflict::Skip, text.as_bytes())
        .await
        .expect("import");
    let copied_tenant = fx.engine.tenant(&copy).await.expect("copy tenant");
    let copied = astrocyte_core::tenancy::use_schema(copy.clone(), async {
        copied_tenant
            .search(&SearchRequest {
                banks: vec![bank_id("chat")],
                vector: None,
                text: Some("zeppelin museum".into()),
                recency: false,
                limit: 10,
                filter: RecallFilter::default(),
            })
            .await
    })
    .await
    .expect("search")
    .keyword
    .expect("keyword")
    .hits;
    assert_eq!(
        copied.len(),
        2,
        "the imported turns lend each other context"
    );

    // Forgetting the second turn: the first no longer carries its words.
    fx.engine
        .forget(
            &fx.schema,
            "chat",
            &ForgetSelector {
                memory_ids: Some(vec![second.clone()]),
                ..Default::default()
            },
            ForgetMode::Soft,
        )
        .await
        .expect("forget");
    assert_eq!(keyword_ids("zeppelin museum").await, Vec::<String>::new());
    assert_eq!(keyword_ids("Friedrichshafen").await, vec![first.clone()]);
    fx.finish().await;
}
