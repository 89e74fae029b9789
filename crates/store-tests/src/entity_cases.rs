//! Conformance checks of the entity table: the bank listing and the entity strategy.

use std::sync::Arc;

use astrocyte_core::entities::EntityKind;
use astrocyte_core::store::{EntityQuery, EntitySummary, ScoredMemory};
use astrocyte_core::{ForgetMode, ForgetSelector, NewMemory, RecallFilter, TenantStore};

use crate::fixture::{bank_id, day, Fixture};
use crate::TestStore;

/// `text` as memory `id` of `bank`, retained on day `n` of January 2024, with `tags`.
fn dated(fx: &Fixture, bank: &str, id: &str, text: &str, n: u32, tags: &[&str]) -> NewMemory {
    let mut new = fx.new_memory(bank, id, text);
    new.memory.retained_at = day(2024, 1, n);
    new.memory.tags = tags.iter().map(|t| t.to_string()).collect();
    new
}

async fn list(tenant: &Arc<dyn TenantStore>, bank: &str, query: EntityQuery) -> Vec<EntitySummary> {
    tenant
        .entities(&bank_id(bank), &query)
        .await
        .expect("entities")
}

fn query(limit: usize) -> EntityQuery {
    EntityQuery {
        limit,
        ..Default::default()
    }
}

fn keys(entities: &[EntitySummary]) -> Vec<&str> {
    entities.iter().map(|e| e.key.as_str()).collect()
}

fn find<'a>(entities: &'a [EntitySummary], key: &str) -> Option<&'a EntitySummary> {
    entities.iter().find(|e| e.key == key)
}

async fn hits(
    tenant: &Arc<dyn TenantStore>,
    banks: &[&str],
    keys: &[&str],
    hop: bool,
    filter: RecallFilter,
    limit: usize,
) -> Vec<ScoredMemory> {
    let banks: Vec<_> = banks.iter().map(|b| bank_id(b)).collect();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    tenant
        .entity_hits(&banks, &keys, hop, &filter, limit)
        .await
        .expect("entity_hits")
        .hits
}

fn ids(hits: &[ScoredMemory]) -> Vec<&str> {
    hits.iter().map(|h| h.memory.id.as_str()).collect()
}

fn score(hits: &[ScoredMemory], id: &str) -> f32 {
    hits.iter()
        .find(|h| h.memory.id == id)
        .unwrap_or_else(|| panic!("{id} is not among the hits: {:?}", ids(hits)))
        .score
}

async fn forget(tenant: &Arc<dyn TenantStore>, bank: &str, id: &str, mode: ForgetMode) {
    let selector = ForgetSelector {
        memory_ids: Some(vec![id.to_string()]),
        ..Default::default()
    };
    let forgotten = tenant
        .forget(&bank_id(bank), &selector, mode, day(2025, 1, 1))
        .await
        .expect("forget");
    assert_eq!(forgotten, 1, "forget {id} ({mode:?})");
}

/// A bank's entities are counted over its memories (a speaker label and a possessive both
/// count), most memories first with ties by key, and the prefix, kind and limit narrow them.
pub async fn entities_are_listed_with_counts(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    tenant
        .insert(vec![
            dated(
                &fx,
                "people",
                "e1",
                "Caroline: I met Melanie at the Pride Parade",
                1,
                &[],
            ),
            dated(
                &fx,
                "people",
                "e2",
                "Melanie: Caroline's painting is great",
                2,
                &[],
            ),
            dated(&fx, "people", "e3", "Caroline: hello", 3, &[]),
            dated(&fx, "elsewhere", "x1", "Caroline: another bank", 9, &[]),
        ])
        .await
        .expect("insert");

    let all = list(&tenant, "people", query(100)).await;
    assert!(all.len() >= 2, "{all:?}");
    assert_eq!(keys(&all)[..2], ["caroline", "melanie"], "{all:?}");
    let caroline = &all[0];
    assert_eq!(
        caroline.memories, 3,
        "speaker and possessive count: {all:?}"
    );
    assert!(caroline.mentions >= 3, "{caroline:?}");
    assert_eq!(caroline.name, "Caroline");
    assert_eq!(caroline.kind, EntityKind::Person);
    assert_eq!(
        caroline.last_seen,
        day(2024, 1, 3),
        "this bank's newest memory"
    );
    let melanie = &all[1];
    assert_eq!(melanie.memories, 2, "{all:?}");
    assert_eq!(melanie.last_seen, day(2024, 1, 2));
    // Most memories first, ties by key.
    for pair in all.windows(2) {
        assert!(
            pair[0].memories > pair[1].memories
                || (pair[0].memories == pair[1].memories && pair[0].key < pair[1].key),
            "order: {all:?}"
        );
    }

    let prefixed = |prefix: &str| EntityQuery {
        prefix: Some(prefix.into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        keys(&list(&tenant, "people", prefixed("mel")).await),
        ["melanie"]
    );
    assert_eq!(
        keys(&list(&tenant, "people", prefixed("CAR")).await),
        ["caroline"],
        "the prefix is lower-cased"
    );
    assert!(list(&tenant, "people", prefixed("%")).await.is_empty());
    assert!(list(&tenant, "people", prefixed("_aroline"))
        .await
        .is_empty());

    let people = list(
        &tenant,
        "people",
        EntityQuery {
            kind: Some(EntityKind::Person),
            limit: 100,
            ..Default::default()
        },
    )
    .await;
    assert!(find(&people, "caroline").is_some(), "{people:?}");
    assert!(
        people.iter().all(|e| e.kind == EntityKind::Person),
        "{people:?}"
    );
    let products = list(
        &tenant,
        "people",
        EntityQuery {
            kind: Some(EntityKind::Product),
            limit: 100,
            ..Default::default()
        },
    )
    .await;
    assert!(find(&products, "caroline").is_none(), "{products:?}");

    assert_eq!(keys(&list(&tenant, "people", query(1)).await), ["caroline"]);
    let elsewhere = list(&tenant, "elsewhere", query(100)).await;
    assert_eq!(keys(&elsewhere), ["caroline"]);
    assert_eq!(elsewhere[0].memories, 1);
    assert!(list(&tenant, "empty", query(100)).await.is_empty());
    fx.finish().await;
}

/// A soft forget drops a memory from the counts (its rows stay for time travel); a purge
/// removes them.
pub async fn forgotten_memories_leave_the_entity_counts(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    tenant
        .insert(vec![
            dated(
                &fx,
                "people",
                "e1",
                "Caroline: I met Melanie at the Pride Parade",
                1,
                &[],
            ),
            dated(
                &fx,
                "people",
                "e2",
                "Melanie: Caroline's painting is great",
                2,
                &[],
            ),
            dated(&fx, "people", "e3", "Caroline: hello", 3, &[]),
        ])
        .await
        .expect("insert");
    let count = |entities: &[EntitySummary], key: &str| find(entities, key).map(|e| e.memories);

    forget(&tenant, "people", "e3", ForgetMode::Soft).await;
    let after_soft = list(&tenant, "people", query(100)).await;
    assert_eq!(count(&after_soft, "caroline"), Some(2), "{after_soft:?}");
    assert_eq!(count(&after_soft, "melanie"), Some(2), "{after_soft:?}");
    assert_eq!(
        find(&after_soft, "caroline").map(|e| e.last_seen),
        Some(day(2024, 1, 2))
    );
    let now = hits(
        &tenant,
        &["people"],
        &["caroline"],
        false,
        RecallFilter::default(),
        10,
    )
    .await;
    assert_eq!(ids(&now), ["e2", "e1"]);
    // Before the forget, the soft-forgotten memory still matches.
    let before_forget = RecallFilter {
        as_of: Some(day(2024, 12, 1)),
        ..Default::default()
    };
    let then = hits(
        &tenant,
        &["people"],
        &["caroline"],
        false,
        before_forget.clone(),
        10,
    )
    .await;
    assert_eq!(ids(&then), ["e3", "e2", "e1"]);

    forget(&tenant, "people", "e1", ForgetMode::Purge).await;
    forget(&tenant, "people", "e3", ForgetMode::Purge).await;
    let after_purge = list(&tenant, "people", query(100)).await;
    assert_eq!(count(&after_purge, "caroline"), Some(1), "{after_purge:?}");
    assert_eq!(count(&after_purge, "melanie"), Some(1), "{after_purge:?}");
    assert_eq!(count(&after_purge, "pride parade"), None, "{after_purge:?}");
    let then = hits(
        &tenant,
        &["people"],
        &["caroline"],
        false,
        before_forget,
        10,
    )
    .await;
    assert_eq!(
        ids(&then),
        ["e2"],
        "purged memories are gone for time travel too"
    );

    forget(&tenant, "people", "e2", ForgetMode::Purge).await;
    assert!(list(&tenant, "people", query(100)).await.is_empty());
    fx.finish().await;
}

/// The entity strategy returns only visible memories mentioning the keys, scores rarer
/// entities higher (`ln(1 + visible / mentioning)` summed over the keys), orders ties newest
/// first, honours the filter and the banks, and with `hop` adds memories mentioning only a
/// co-occurring entity, below the direct matches.
pub async fn entity_hits_score_rare_entities_higher(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    tenant
        .insert(vec![
            dated(
                &fx,
                "hits",
                "h1",
                "Caroline: my brother Jon visited",
                1,
                &[],
            ),
            dated(
                &fx,
                "hits",
                "h2",
                "Caroline: the weather is nice",
                2,
                &["x"],
            ),
            dated(&fx, "hits", "h3", "Caroline: I went shopping", 3, &[]),
            dated(&fx, "hits", "h4", "Oscar: I adopted a puppy", 4, &[]),
            dated(&fx, "hits", "h5", "Jon: I play guitar with Maria", 5, &[]),
            dated(&fx, "hits", "h6", "Maria: tango tonight", 6, &[]),
            dated(
                &fx,
                "elsewhere",
                "o1",
                "Jon: a note in another bank",
                7,
                &[],
            ),
        ])
        .await
        .expect("insert");
    let all = RecallFilter::default;
    let close = |actual: f32, expected: f64| (f64::from(actual) - expected).abs() < 1e-4;

    // Ties (same keys, same statistics) come newest first.
    let jon = hits(&tenant, &["hits"], &["jon"], false, all(), 10).await;
    assert_eq!(ids(&jon), ["h5", "h1"]);
    assert!(
        close(jon[0].score, (1.0f64 + 6.0 / 2.0).ln()),
        "{}",
        jon[0].score
    );

    let both = hits(&tenant, &["hits"], &["caroline", "jon"], false, all(), 10).await;
    assert_eq!(
        ids(&both),
        ["h1", "h5", "h3", "h2"],
        "rarer Jon outscores Caroline"
    );
    assert!(
        close(score(&both, "h1"), 4.0f64.ln() + 3.0f64.ln()),
        "scores add up over the keys: {}",
        score(&both, "h1")
    );
    assert!(score(&both, "h5") > score(&both, "h2"));
    assert!(close(score(&both, "h2"), 3.0f64.ln()));
    assert_eq!(
        ids(&hits(&tenant, &["hits"], &["caroline", "jon"], false, all(), 2).await),
        ["h1", "h5"],
        "limit"
    );
    assert!(hits(&tenant, &["hits"], &["nobody"], false, all(), 10)
        .await
        .is_empty());
    assert!(hits(&tenant, &["hits"], &[], false, all(), 10)
        .await
        .is_empty());

    let tagged = RecallFilter {
        tags: Some(vec!["x".into()]),
        ..Default::default()
    };
    assert_eq!(
        ids(&hits(&tenant, &["hits"], &["caroline"], false, tagged, 10).await),
        ["h2"]
    );
    let window = RecallFilter {
        time_range: Some((day(2024, 1, 2), day(2024, 1, 4))),
        ..Default::default()
    };
    assert_eq!(
        ids(&hits(&tenant, &["hits"], &["caroline"], false, window, 10).await),
        ["h3", "h2"]
    );

    // Other banks only when asked for.
    // (Statistics may be per bank or joint, so only the set is fixed.)
    let several = hits(&tenant, &["hits", "elsewhere"], &["jon"], false, all(), 10).await;
    let mut several_ids = ids(&several);
    several_ids.sort();
    assert_eq!(several_ids, ["h1", "h5", "o1"], "{several:?}");
    let o1 = several.iter().find(|h| h.memory.id == "o1").expect("o1");
    assert_eq!(o1.memory.bank_id, bank_id("elsewhere"));
    assert_eq!(o1.memory.text, "Jon: a note in another bank");

    // Hop: Caroline (with Jon in h1) and Maria (with Jon in h5) co-occur; their other
    // memories join at half weight, below the direct matches. Oscar never does.
    let hopped = hits(&tenant, &["hits"], &["jon"], true, all(), 10).await;
    let hopped_ids = ids(&hopped);
    assert_eq!(hopped_ids[..2], ["h5", "h1"], "{hopped_ids:?}");
    for id in ["h2", "h3", "h6"] {
        assert!(
            hopped_ids.contains(&id),
            "{id} joins by hop: {hopped_ids:?}"
        );
        assert!(score(&hopped, id) < score(&hopped, "h1"));
    }
    assert!(!hopped_ids.contains(&"h4"), "{hopped_ids:?}");
    assert_eq!(hopped.len(), 5);
    assert!(
        close(score(&hopped, "h6"), 0.5 * (1.0f64 + 6.0 / 2.0).ln()),
        "half weight: {}",
        score(&hopped, "h6")
    );
    assert!(
        close(score(&hopped, "h1"), (1.0f64 + 6.0 / 2.0).ln()),
        "hop leaves direct scores alone"
    );
    let plain = hits(&tenant, &["hits"], &["jon"], false, all(), 10).await;
    assert!(!ids(&plain).contains(&"h6"));

    // Forgotten memories never match.
    forget(&tenant, "hits", "h5", ForgetMode::Soft).await;
    assert_eq!(
        ids(&hits(&tenant, &["hits"], &["jon"], false, all(), 10).await),
        ["h1"]
    );
    fx.finish().await;
}

/// Another tenant's memories never show in a tenant's entities or entity hits, even under
/// the same bank, id and entity.
pub async fn entities_are_isolated_between_tenants(test_store: TestStore) {
    let mut fx = Fixture::new(test_store).await;
    let other_schema = fx.new_tenant("other").await;
    let tenant = fx.tenant().await;
    let other = fx.engine.tenant(&other_schema).await.expect("other tenant");
    tenant
        .insert(vec![dated(&fx, "shared", "a1", "Caroline: mine", 1, &[])])
        .await
        .expect("insert");
    other
        .insert(vec![
            dated(&fx, "shared", "a1", "Caroline: theirs", 2, &[]),
            dated(&fx, "shared", "b1", "Caroline: also theirs", 3, &[]),
            dated(&fx, "shared", "b2", "Melanie: theirs too", 4, &[]),
        ])
        .await
        .expect("insert other");

    let mine = list(&tenant, "shared", query(100)).await;
    assert_eq!(keys(&mine), ["caroline"]);
    assert_eq!(mine[0].memories, 1);
    assert_eq!(mine[0].last_seen, day(2024, 1, 1));
    let found = hits(
        &tenant,
        &["shared"],
        &["caroline", "melanie"],
        true,
        RecallFilter::default(),
        10,
    )
    .await;
    assert_eq!(ids(&found), ["a1"]);
    assert_eq!(found[0].memory.text, "Caroline: mine");

    let theirs = list(&other, "shared", query(100)).await;
    assert_eq!(find(&theirs, "caroline").map(|e| e.memories), Some(2));
    let found = hits(
        &other,
        &["shared"],
        &["caroline"],
        false,
        RecallFilter::default(),
        10,
    )
    .await;
    assert_eq!(ids(&found), ["b1", "a1"]);
    assert_eq!(found[1].memory.text, "Caroline: theirs");
    fx.finish().await;
}
