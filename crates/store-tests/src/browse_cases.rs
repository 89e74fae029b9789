//! Conformance checks of listings, edits and the change feed.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use astrocyte_core::browse::{
    ChangeKind, ChangeQuery, ListCursor, ListOrder, ListQuery, MemoryPatch,
};
use astrocyte_core::{
    ChunkRef, ErrorKind, ForgetMode, ForgetSelector, Metadata, RecallFilter, RetainRequest,
};
use serde_json::json;

use crate::fixture::{bank_id, day, read_until, sorted, Fixture};
use crate::TestStore;

async fn list_all(fx: &Fixture, bank: &str, mut query: ListQuery) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = fx
            .engine
            .list(&fx.schema, bank, query.clone())
            .await
            .expect("list");
        assert!(page.memories.len() <= query.limit);
        ids.extend(page.memories.iter().map(|m| m.id.clone()));
        match page.next_cursor {
            Some(cursor) => {
                query.after = Some(ListCursor::decode(&cursor).expect("cursor decodes"));
            }
            None => return ids,
        }
    }
}

/// Listings page with cursors in both orders, and every filter narrows them; forgotten
/// memories never show.
pub async fn listing_pages_filters_and_orders(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let tenant = fx.tenant().await;
    let mut memories = Vec::new();
    for i in 0..12u32 {
        let text = if i % 2 == 0 {
            format!("Note {i} about apples")
        } else {
            format!("Diary {i} about pears")
        };
        let mut new = fx.new_memory("browse", &format!("m{:02}", 11 - i), &text);
        // Retention times rise with i while ids fall: the two orders differ.
        new.memory.retained_at = day(2024, 1, i + 1);
        new.memory.tags = vec![if i % 2 == 0 { "even" } else { "odd" }.to_string()];
        new.memory.fact_type = if i < 6 { "world" } else { "experience" }.to_string();
        if i >= 9 {
            new.memory.chunk = Some(ChunkRef {
                group_id: "g1".into(),
                index: i - 9,
                count: 3,
            });
        }
        memories.push(new);
    }
    // Same retention time as m00 (i = 11): ties break by id.
    let mut twin = fx.new_memory("browse", "m99", "100% sure_thing, café");
    twin.memory.retained_at = day(2024, 1, 12);
    memories.push(twin);
    tenant.insert(memories).await.expect("insert");
    fx.retain("elsewhere", "Note in another bank about apples")
        .await;

    let newest = list_all(
        &fx,
        "browse",
        ListQuery {
            limit: 5,
            ..Default::default()
        },
    )
    .await;
    let mut expected: Vec<String> = vec!["m99".into()];
    expected.extend((0..12).map(|i| format!("m{i:02}")));
    assert_eq!(newest, expected, "newest first, ties by larger id");
    let by_id = list_all(
        &fx,
        "browse",
        ListQuery {
            order: ListOrder::Id,
            limit: 4,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_id, sorted(expected.clone()));

    let count = |query: ListQuery| {
        let fx = &fx;
        async move { list_all(fx, "browse", query).await }
    };
    let tags = count(ListQuery {
        filter: RecallFilter {
            tags: Some(vec!["even".into()]),
            ..Default::default()
        },
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(tags.len(), 6);
    let prefix = count(ListQuery {
        text_prefix: Some("note".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(prefix.len(), 6, "prefix is case-insensitive: {prefix:?}");
    let contains = count(ListQuery {
        text_contains: Some("PEARS".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(contains.len(), 6);
    for literal in ["%", "_"] {
        let found = count(ListQuery {
            text_contains: Some(literal.into()),
            limit: 100,
            ..Default::default()
        })
        .await;
        assert_eq!(found, vec!["m99"], "{literal:?} is matched literally");
    }
    let range = count(ListQuery {
        filter: RecallFilter {
            time_range: Some((day(2024, 1, 2), day(2024, 1, 4))),
            ..Default::default()
        },
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(range, vec!["m08", "m09", "m10"]);
    let kinds = count(ListQuery {
        filter: RecallFilter {
            fact_types: Some(vec!["experience".into()]),
            ..Default::default()
        },
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(kinds.len(), 6);
    let group = count(ListQuery {
        group_id: Some("g1".into()),
        order: ListOrder::Id,
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(group, vec!["m00", "m01", "m02"]);

    fx.engine
        .forget(
            &fx.schema,
            "browse",
            &ForgetSelector {
                memory_ids: Some(vec!["m05".into()]),
                ..Default::default()
            },
            ForgetMode::Soft,
        )
        .await
        .expect("forget");
    let after_forget = count(ListQuery {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(after_forget.len(), 12);
    assert!(!after_forget.contains(&"m05".to_string()));
    // Forgotten memories do not count.
    let visible_bytes: u64 = tenant
        .list(
            &bank_id("browse"),
            &ListQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list")
        .iter()
        .map(|m| m.text.len() as u64)
        .sum();
    assert_eq!(
        tenant.text_bytes(&bank_id("browse")).await.expect("bytes"),
        visible_bytes
    );
    assert_eq!(
        tenant.text_bytes(&bank_id("nothing")).await.expect("bytes"),
        0
    );

    let detail = fx
        .engine
        .memory(&fx.schema, "browse", "m01")
        .await
        .expect("memory")
        .expect("found");
    let chunk_ids: Vec<&str> = detail.chunks.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        chunk_ids,
        vec!["m02", "m01", "m00"],
        "chunks in chunk order"
    );
    assert!(fx
        .engine
        .memory(&fx.schema, "browse", "m05")
        .await
        .expect("memory")
        .is_none());

    for limit in [0, 1001] {
        let error = fx
            .engine
            .list(
                &fx.schema,
                "browse",
                ListQuery {
                    limit,
                    ..Default::default()
                },
            )
            .await
            .expect_err("limit out of range");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
    fx.finish().await;
}

/// Edits replace tags (filters follow) and metadata, refuse what a retain would refuse, and
/// never touch a forgotten memory.
pub async fn updates_replace_tags_and_metadata(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let outcome = fx
        .retain_request(RetainRequest {
            bank_id: "edits".into(),
            content: "The blue kettle lives on the top shelf".into(),
            tags: vec!["kitchen".into()],
            metadata: Metadata::from([("room".to_string(), json!("kitchen"))]),
            ..Default::default()
        })
        .await;
    let id = outcome.memory_id.expect("id");
    let patch = MemoryPatch {
        tags: Some(vec![" storage ".into(), "home".into(), "home".into()]),
        metadata: None,
    };
    let updated = fx
        .engine
        .update_memory(&fx.schema, "edits", &id, patch)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.tags, vec!["home", "storage"]);
    assert_eq!(updated.metadata.get("room"), Some(&json!("kitchen")));
    let with = |tag: &str| RecallFilter {
        tags: Some(vec![tag.to_string()]),
        ..Default::default()
    };
    assert_eq!(
        fx.recall_ids(&["edits"], "blue kettle", with("storage"))
            .await,
        vec![id.clone()]
    );
    assert!(fx
        .recall_ids(&["edits"], "blue kettle", with("kitchen"))
        .await
        .is_empty());

    let metadata = Metadata::from([("shelf".to_string(), json!(3))]);
    let updated = fx
        .engine
        .update_memory(
            &fx.schema,
            "edits",
            &id,
            MemoryPatch {
                tags: None,
                metadata: Some(metadata.clone()),
            },
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.metadata, metadata, "metadata is replaced whole");
    assert_eq!(updated.tags, vec!["home", "storage"], "tags kept");
    let filtered = fx
        .recall_ids(
            &["edits"],
            "kettle",
            RecallFilter {
                metadata: metadata.clone(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(filtered, vec![id.clone()]);

    let unchanged = fx
        .engine
        .update_memory(&fx.schema, "edits", &id, MemoryPatch::default())
        .await
        .expect("an empty edit")
        .expect("found");
    assert_eq!(
        unchanged.metadata, metadata,
        "an empty edit changes nothing"
    );
    let sanitised = fx
        .engine
        .update_memory(
            &fx.schema,
            "edits",
            &id,
            MemoryPatch {
                tags: None,
                metadata: Some(Metadata::from([
                    ("api_token".to_string(), json!("x")),
                    ("shelf".to_string(), json!(3)),
                ])),
            },
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(
        sanitised.metadata, metadata,
        "blocked keys are dropped, as at retain"
    );
    let refused = [
        MemoryPatch {
            tags: Some(vec!["  ".into()]),
            metadata: None,
        },
        MemoryPatch {
            tags: None,
            metadata: Some(Metadata::from([("nested".to_string(), json!({"a": 1}))])),
        },
        MemoryPatch {
            tags: None,
            metadata: Some(Metadata::from([("bad".to_string(), json!("a\u{0}b"))])),
        },
    ];
    for patch in refused {
        let error = fx
            .engine
            .update_memory(&fx.schema, "edits", &id, patch.clone())
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{patch:?}");
    }
    let kept = fx
        .engine
        .memory(&fx.schema, "edits", &id)
        .await
        .expect("memory")
        .expect("found");
    assert_eq!(
        kept.memory.metadata, metadata,
        "a refused edit changes nothing"
    );

    let tag_patch = || MemoryPatch {
        tags: Some(vec!["x".into()]),
        metadata: None,
    };
    assert!(fx
        .engine
        .update_memory(&fx.schema, "edits", "missing", tag_patch())
        .await
        .expect("update")
        .is_none());
    assert!(
        fx.engine
            .update_memory(&fx.schema, "other", &id, tag_patch())
            .await
            .expect("update")
            .is_none(),
        "edits are per bank"
    );
    fx.engine
        .forget(
            &fx.schema,
            "edits",
            &ForgetSelector {
                memory_ids: Some(vec![id.clone()]),
                ..Default::default()
            },
            ForgetMode::Soft,
        )
        .await
        .expect("forget");
    assert!(fx
        .engine
        .update_memory(&fx.schema, "edits", &id, tag_patch())
        .await
        .expect("update")
        .is_none());
    fx.finish().await;
}

/// The feed logs created, updated and forgotten (soft and erased) in order, pages by cursor,
/// keeps banks apart, and a memory's history is its own entries.
pub async fn change_feed_logs_every_change_in_order(test_store: TestStore) {
    let fx = Fixture::new(test_store).await;
    let mut ids = Vec::new();
    for text in [
        "First entry about the garden",
        "Second entry about the garage",
        "Third entry about the attic",
    ] {
        ids.push(fx.retain("feed", text).await.memory_id.expect("id"));
    }
    fx.retain("other-feed", "Unrelated entry in another bank")
        .await;
    fx.engine
        .update_memory(
            &fx.schema,
            "feed",
            &ids[0],
            MemoryPatch {
                tags: Some(vec!["outside".into()]),
                metadata: None,
            },
        )
        .await
        .expect("update")
        .expect("found");
    let forget = |id: &str, mode| {
        let selector = ForgetSelector {
            memory_ids: Some(vec![id.to_string()]),
            ..Default::default()
        };
        let fx = &fx;
        async move {
            fx.engine
                .forget(&fx.schema, "feed", &selector, mode)
                .await
                .expect("forget")
        }
    };
    forget(&ids[1], ForgetMode::Soft).await;
    forget(&ids[2], ForgetMode::Purge).await;
    // Erasing an already forgotten memory logs nothing more.
    forget(&ids[1], ForgetMode::Purge).await;

    let expected = vec![
        (ChangeKind::Created, ids[0].clone()),
        (ChangeKind::Created, ids[1].clone()),
        (ChangeKind::Created, ids[2].clone()),
        (ChangeKind::Updated, ids[0].clone()),
        (ChangeKind::Forgotten, ids[1].clone()),
        (ChangeKind::Forgotten, ids[2].clone()),
    ];
    let whole = read_until(
        || {
            fx.engine.changes(
                &fx.schema,
                "feed",
                ChangeQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
        },
        |page| {
            page.as_ref()
                .map_or(true, |p| p.changes.len() >= expected.len())
        },
    )
    .await
    .expect("changes");
    let seen: Vec<(ChangeKind, String)> = whole
        .changes
        .iter()
        .map(|e| (e.change.kind, e.change.memory_id.clone()))
        .collect();
    assert_eq!(seen, expected);
    assert!(!whole.has_more);
    assert!(whole.changes[0].memory.is_some(), "visible memory attached");
    assert_eq!(
        whole.changes[0].memory.as_ref().map(|m| m.tags.clone()),
        Some(vec!["outside".to_string()]),
        "as it is now"
    );
    assert!(whole.changes[4].memory.is_none(), "tombstone has no memory");

    let mut paged = Vec::new();
    let mut since = None;
    loop {
        let page = fx
            .engine
            .changes(
                &fx.schema,
                "feed",
                ChangeQuery {
                    since: since.clone(),
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .expect("changes");
        if page.changes.is_empty() {
            assert_eq!(page.next_cursor, since, "an empty read keeps the cursor");
            assert!(!page.has_more);
            break;
        }
        paged.extend(
            page.changes
                .iter()
                .map(|e| (e.change.kind, e.change.memory_id.clone())),
        );
        since = page.next_cursor;
    }
    assert_eq!(paged, expected, "paging sees every entry once");

    let tail = fx
        .engine
        .changes(
            &fx.schema,
            "feed",
            ChangeQuery {
                limit: 2,
                tail: true,
                ..Default::default()
            },
        )
        .await
        .expect("tail");
    let newest: Vec<(ChangeKind, String)> = tail
        .changes
        .iter()
        .map(|e| (e.change.kind, e.change.memory_id.clone()))
        .collect();
    assert_eq!(
        newest,
        expected[4..].to_vec(),
        "the newest two, oldest first"
    );
    assert!(tail.has_more, "older entries exist");
    assert_eq!(
        tail.next_cursor, whole.next_cursor,
        "a tail is followed from its newest entry"
    );

    let detail = fx
        .engine
        .memory(&fx.schema, "feed", &ids[0])
        .await
        .expect("memory")
        .expect("found");
    let history: Vec<ChangeKind> = detail.history.iter().map(|c| c.kind).collect();
    assert_eq!(history, vec![ChangeKind::Created, ChangeKind::Updated]);

    for bad in ["not a cursor", "x-y", "1-x"] {
        let error = fx
            .engine
            .changes(
                &fx.schema,
                "feed",
                ChangeQuery {
                    since: Some(bad.into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect_err("bad cursor");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let tenant = fx.tenant().await;
    let other = tenant
        .changes(
            &bank_id("other-feed"),
            &ChangeQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("changes");
    assert_eq!(other.len(), 1, "banks have their own feeds");
    fx.finish().await;
}

/// A reader following the feed while several writers retain at once sees every memory
/// exactly once, whatever order the writers' transactions commit in.
pub async fn change_feed_never_skips_under_concurrent_writes(test_store: TestStore) {
    let fx = Arc::new(Fixture::new(test_store).await);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let fx = Arc::clone(&fx);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    let text = format!("writer {w} wrote entry {i} with words w{w}x{i} y{i}w{w}");
                    ids.push(fx.retain("busy", &text).await.memory_id.expect("id"));
                }
                ids
            })
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    let mut since: Option<String> = None;
    let read = |since: Option<String>| {
        let fx = Arc::clone(&fx);
        async move {
            fx.engine
                .changes(
                    &fx.schema,
                    "busy",
                    ChangeQuery {
                        since,
                        limit: 7,
                        ..Default::default()
                    },
                )
                .await
                .expect("changes")
        }
    };
    while !writers.iter().all(|w| w.is_finished()) {
        let page = read(since.clone()).await;
        seen.extend(page.changes.iter().map(|e| e.change.memory_id.clone()));
        since = page.next_cursor;
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer"));
    }
    // An empty page means nothing more is settled yet, not the end: on a shared server
    // another session's transaction can hold the feed's horizon back for a while. A skipped
    // entry never comes, and the deadline fails the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.iter().cloned().collect::<BTreeSet<_>>() != written
        && std::time::Instant::now() < deadline
    {
        let page = read(since.clone()).await;
        if page.changes.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        seen.extend(page.changes.iter().map(|e| e.change.memory_id.clone()));
        since = page.next_cursor.or(since);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no entry twice");
    assert_eq!(
        seen.iter().cloned().collect::<BTreeSet<_>>(),
        written,
        "every write seen"
    );
    match Arc::try_unwrap(fx) {
        Ok(fx) => fx.finish().await,
        Err(_) => panic!("fixture still shared"),
    }
}
