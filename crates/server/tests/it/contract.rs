//! Every endpoint of the contract's core table: happy paths, JSON shapes, status codes and
//! error bodies, driven in process through `oneshot`.

use axum::http::Method;
use serde_json::json;

use crate::support::{call, config, post, Harness};

#[tokio::test]
async fn live_and_health_answer_without_credentials() {
    let h = Harness::new();
    let app = h.app(config()).await;
    for path in ["/live", "/health/live"] {
        let r = call(&app, Method::GET, path, None, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json, json!({"status": "ok"}));
    }
    let r = call(&app, Method::GET, "/health", None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["healthy"], true);
    assert!(r.json["message"].is_string());
    assert!(r.json["latency_ms"].as_f64().is_some());
    assert!(r.json["last_check_at"]
        .as_str()
        .is_some_and(|t| t.ends_with("+00:00")));
}

#[tokio::test]
async fn retain_returns_the_reference_shape_and_dedups() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let body = json!({"content": "The deploy key rotates every Monday.", "bank_id": "ops",
        "tags": ["deploy"], "metadata": {"team": "infra", "n": 3}, "occurred_at": "2024-03-01T09:00:00Z",
        "content_type": "text", "unknown_key": {"ignored": true}});
    let r = post(&app, "/v1/retain", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys: Vec<&str> = r
        .json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "curated",
        "deduplicated",
        "error",
        "memory_id",
        "memory_layer",
        "retention_action",
        "stored",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    assert_eq!(r.json["stored"], true);
    assert_eq!(r.json["deduplicated"], false);
    assert_eq!(r.json["curated"], false);
    assert!(
        r.json["retention_action"].is_null()
            && r.json["memory_layer"].is_null()
            && r.json["error"].is_null()
    );
    let id = r.json["memory_id"].as_str().expect("memory id").to_string();

    let again = post(&app, "/v1/retain", body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["stored"], false);
    assert_eq!(again.json["deduplicated"], true);
    assert_eq!(again.json["memory_id"], id.as_str());

    let empty = post(
        &app,
        "/v1/retain",
        json!({"content": "   ", "bank_id": "ops"}),
    )
    .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json["stored"], false);
    assert_eq!(empty.json["error"], "Content is empty");
}

#[tokio::test]
async fn malformed_and_invalid_bodies_get_the_detail_shape() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let cases = [
        (json!({"bank_id": "b"}), "content"),
        (json!({"content": "x", "bank_id": "bad bank!"}), "bank_id"),
        (
            json!({"content": "x", "bank_id": "b", "tags": "not-a-list"}),
            "tags",
        ),
        (
            json!({"content": "x", "bank_id": "b", "occurred_at": "someday"}),
            "occurred_at",
        ),
        (
            json!({"content": "x", "bank_id": "b", "content_type": "poem"}),
            "content_type",
        ),
    ];
    for (body, field) in cases {
        let r = post(&app, "/v1/retain", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let detail = r.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{body} -> {detail}");
    }
    // Not JSON at all.
    let r = call(
        &app,
        Method::POST,
        "/v1/retain",
        None,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json["detail"].is_string());
    let unknown = call(&app, Method::GET, "/v1/nothing", None, &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json, json!({"detail": "Not Found"}));
    let wrong_method = call(&app, Method::GET, "/v1/retain", None, &[]).await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json["detail"].is_string());
}

#[tokio::test]
async fn recall_returns_hits_with_every_field_and_clamps_limits() {
    let h = Harness::new();
    let app = h.app(config()).await;
    for (i, text) in [
        "Alice prefers green tea in the morning.",
        "Bob drinks espresso after lunch.",
        "The office plant needs water on Fridays.",
    ]
    .iter()
    .enumerate()
    {
        let r = post(
            &app,
            "/v1/retain",
            json!({"content": text, "bank_id": "kitchen", "tags": [format!("t{i}")]}),
        )
        .await;
        assert_eq!(r.json["stored"], true, "{}", r.text);
    }
    let r = post(
        &app,
        "/v1/recall",
        json!({"query": "what tea does Alice like", "bank_id": "kitchen", "max_results": "2"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hits = r.json["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["text"], "Alice prefers green tea in the morning.");
    for field in [
        "text",
        "score",
        "fact_type",
        "metadata",
        "tags",
        "occurred_at",
        "source",
        "memory_id",
        "bank_id",
        "memory_layer",
        "utility_score",
        "retained_at",
        "chunk_id",
    ] {
        assert!(hits[0].get(field).is_some(), "MemoryHit lacks {field}");
    }
    let score = hits[0]["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score));
    assert_eq!(r.json["truncated"], true);
    assert_eq!(r.json["total_available"], 3);
    assert!(r.json["authority_context"].is_null());
    assert!(r.json["top_semantic_score"].as_f64().is_some());
    let trace = &r.json["trace"];
    assert_eq!(trace["fusion_method"], "rrf");
    for field in [
        "strategies_used",
        "total_candidates",
        "latency_ms",
        "strategy_timings_ms",
        "strategy_candidate_counts",
        "tier_used",
        "layer_distribution",
        "cache_hit",
        "wiki_tier_used",
    ] {
        assert!(trace.get(field).is_some(), "RecallTrace lacks {field}");
    }

    // Clamped, not rejected: 0 becomes 1, a huge value the ceiling.
    let one = post(
        &app,
        "/v1/recall",
        json!({"query": "tea", "bank_id": "kitchen", "max_results": 0}),
    )
    .await;
    assert_eq!(one.json["hits"].as_array().map(Vec::len), Some(1));
    let many = post(
        &app,
        "/v1/recall",
        json!({"query": "tea", "banks": ["kitchen"], "max_results": 10_000_000}),
    )
    .await;
    assert_eq!(many.status, 200);
    assert_eq!(many.json["hits"].as_array().map(Vec::len), Some(3));

    let tagged = post(
        &app,
        "/v1/recall",
        json!({"query": "water", "bank_id": "kitchen", "tags": ["t2"]}),
    )
    .await;
    assert_eq!(tagged.json["hits"].as_array().map(Vec::len), Some(1));

    let none = post(&app, "/v1/recall", json!({"query": "tea"})).await;
    assert_eq!(none.status, 400);
    assert_eq!(none.json["detail"], "bank_id or banks is required");
    let bad = post(
        &app,
        "/v1/recall",
        json!({"query": "tea", "banks": ["ok", "no way"]}),
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn reflect_answers_with_optional_sources() {
    let h = Harness::new();
    let app = h.app(config()).await;
    post(
        &app,
        "/v1/retain",
        json!({"content": "The launch date is May 4th.", "bank_id": "plans"}),
    )
    .await;
    let r = post(
        &app,
        "/v1/reflect",
        json!({"query": "When is the launch?", "bank_id": "plans"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["answer"]
        .as_str()
        .is_some_and(|a| a.contains("May 4th")));
    assert!(r.json["confidence"].as_f64().is_some());
    assert_eq!(r.json["sources"].as_array().map(Vec::len), Some(1));
    assert!(r.json["observations"].is_null() && r.json["authority_context"].is_null());
    let r = post(
        &app,
        "/v1/reflect",
        json!({"query": "When?", "bank_id": "plans", "include_sources": false}),
    )
    .await;
    assert!(r.json["sources"].is_null());
    let r = post(&app, "/v1/reflect", json!({"query": "When?"})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn forget_by_id_tag_and_scope_then_history_still_sees_the_past() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let a = post(
        &app,
        "/v1/retain",
        json!({"content": "Server alpha runs Debian.", "bank_id": "infra", "tags": ["alpha"]}),
    )
    .await;
    post(
        &app,
        "/v1/retain",
        json!({"content": "Server beta runs Alpine Linux.", "bank_id": "infra", "tags": ["beta"]}),
    )
    .await;
    post(
        &app,
        "/v1/retain",
        json!({"content": "Server gamma runs FreeBSD.", "bank_id": "infra", "tags": ["gamma"]}),
    )
    .await;
    let before_forget = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let id = a.json["memory_id"].as_str().expect("id");
    let r = post(
        &app,
        "/v1/forget",
        json!({"bank_id": "infra", "memory_ids": [id]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"deleted_count": 1, "archived_count": 0}));
    let r = post(
        &app,
        "/v1/forget",
        json!({"bank_id": "infra", "tags": ["beta"]}),
    )
    .await;
    assert_eq!(r.json["deleted_count"], 1);

    let now = post(
        &app,
        "/v1/recall",
        json!({"query": "server runs", "bank_id": "infra"}),
    )
    .await;
    assert_eq!(now.json["hits"].as_array().map(Vec::len), Some(1));

    let past = post(
        &app,
        "/v1/history",
        json!({"query": "server runs", "bank_id": "infra",
        "as_of": before_forget.to_rfc3339()}),
    )
    .await;
    assert_eq!(past.status, 200, "{}", past.text);
    assert_eq!(past.json["hits"].as_array().map(Vec::len), Some(3));
    assert_eq!(past.json["bank_id"], "infra");
    assert!(past.json["as_of"]
        .as_str()
        .is_some_and(|s| s.ends_with("+00:00")));
    assert!(past.json["trace"].is_object());
    let missing = post(
        &app,
        "/v1/history",
        json!({"query": "x", "bank_id": "infra"}),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(missing.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("as_of")));

    let r = post(
        &app,
        "/v1/forget",
        json!({"bank_id": "infra", "scope": "all"}),
    )
    .await;
    assert_eq!(r.json["deleted_count"], 1);
    let r = post(&app, "/v1/forget", json!({"bank_id": "infra"})).await;
    assert_eq!(r.status, 400, "an empty selector is never read as all");
    let r = post(
        &app,
        "/v1/forget",
        json!({"bank_id": "infra", "scope": "everything"}),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn export_and_import_round_trip_inside_the_roots_only() {
    let h = Harness::new();
    let roots = tempfile::tempdir().expect("roots");
    let mut cfg = config();
    cfg.portability_roots = vec![roots.path().to_path_buf()];
    let app = h.app(cfg).await;
    for text in [
        "First exported memory.",
        "Second exported memory, different words.",
    ] {
        post(
            &app,
            "/v1/retain",
            json!({"content": text, "bank_id": "src"}),
        )
        .await;
    }
    let r = post(
        &app,
        "/v1/export",
        json!({"bank_id": "src", "path": "src.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"bank_id": "src", "path": "src.jsonl", "exported_count": 2})
    );
    let text = std::fs::read_to_string(roots.path().join("src.jsonl")).expect("file written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].contains("\"_ama_version\":1"));

    let r = post(
        &app,
        "/v1/import",
        json!({"bank_id": "dst", "path": "src.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"imported": 2, "skipped": 0, "errors": 0, "rejected": []})
    );
    let r = post(
        &app,
        "/v1/import",
        json!({"bank_id": "dst", "path": "src.jsonl", "on_conflict": "skip"}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"imported": 0, "skipped": 2, "errors": 0, "rejected": []})
    );
    let r = post(
        &app,
        "/v1/recall",
        json!({"query": "exported memory", "bank_id": "dst"}),
    )
    .await;
    assert_eq!(r.json["hits"].as_array().map(Vec::len), Some(2));

    let r = post(
        &app,
        "/v1/export",
        json!({"bank_id": "src", "path": "../escape.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(
        &app,
        "/v1/export",
        json!({"bank_id": "src", "path": "/etc/astrocyte.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post(
        &app,
        "/v1/import",
        json!({"bank_id": "dst", "path": "absent.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(
        &app,
        "/v1/import",
        json!({"bank_id": "dst", "path": "src.jsonl", "on_conflict": "merge"}),
    )
    .await;
    assert_eq!(r.status, 400);

    let banks = call(&app, Method::GET, "/v1/admin/banks", None, &[]).await;
    assert_eq!(banks.status, 200);
    assert_eq!(banks.json, json!({"banks": ["dst", "src"]}));
}

#[tokio::test]
async fn export_is_forbidden_without_configured_roots() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let r = post(
        &app,
        "/v1/export",
        json!({"bank_id": "b", "path": "x.jsonl"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("export roots")));
}

#[tokio::test]
async fn openapi_document_lists_every_core_path() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let r = call(&app, Method::GET, "/openapi.json", None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.json["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let paths = r.json["paths"].as_object().expect("paths");
    for path in [
        "/live",
        "/health",
        "/metrics",
        "/v1/retain",
        "/v1/recall",
        "/v1/reflect",
        "/v1/forget",
        "/v1/history",
        "/v1/export",
        "/v1/import",
        "/v1/admin/banks",
        "/v1/admin/keys",
        "/v1/admin/keys/{key_id}",
        "/v1/banks",
        "/v1/banks/{bank_id}/memories",
        "/v1/banks/{bank_id}/memories/{memory_id}",
        "/v1/banks/{bank_id}/changes",
        "/v1/banks/{bank_id}/export",
        "/v1/banks/{bank_id}/import",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    // OpenAPI wants every operationId unique; generators refuse the document otherwise.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().into_iter().flat_map(|ops| ops.values()))
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "repeated operationIds");
    let schemas = r.json["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "RetainBody",
        "RecallResponse",
        "MemoryHitDto",
        "ErrorDetail",
        "PiiRejectedBody",
        "RateLimitedBody",
    ] {
        assert!(
            schemas.contains_key(schema),
            "openapi lacks schema {schema}"
        );
    }
}

#[tokio::test]
async fn time_range_and_before_date_use_when_memories_happened() {
    let h = Harness::new();
    let app = h.app(config()).await;
    for (text, when) in [
        ("Trip to Lisbon with the team.", "2023-05-10T12:00:00+00:00"),
        ("Trip to Oslo with the family.", "2024-08-01T12:00:00"),
    ] {
        let r = post(
            &app,
            "/v1/retain",
            json!({"content": text, "bank_id": "trips", "occurred_at": when}),
        )
        .await;
        assert_eq!(r.json["stored"], true, "{}", r.text);
    }
    let r = post(
        &app,
        "/v1/recall",
        json!({"query": "trip with", "bank_id": "trips",
        "time_range": ["2024-01-01T00:00:00Z", "2024-12-31T23:59:59Z"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hits = r.json["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["text"], "Trip to Oslo with the family.");
    assert_eq!(hits[0]["occurred_at"], "2024-08-01T12:00:00+00:00");
    let bad = post(
        &app,
        "/v1/recall",
        json!({"query": "trip", "bank_id": "trips", "time_range": ["2024-01-01"]}),
    )
    .await;
    assert_eq!(bad.status, 400);

    let r = post(
        &app,
        "/v1/forget",
        json!({"bank_id": "trips", "before_date": "2024-01-01"}),
    )
    .await;
    assert_eq!(r.json["deleted_count"], 1);
    let r = post(
        &app,
        "/v1/recall",
        json!({"query": "trip with", "bank_id": "trips"}),
    )
    .await;
    let texts: Vec<&str> = r.json["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["text"].as_str())
        .collect();
    assert_eq!(texts, ["Trip to Oslo with the family."]);
}
