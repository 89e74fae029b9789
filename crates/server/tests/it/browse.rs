//! Browsing and managing a bank over real HTTP and gRPC: listings with cursors and filters,
//! one memory with chunks and history, edits, forgetting by id, the change feed, and export
//! as a download re-imported as an upload.

use astrocyte_server::grpc::proto::{self, memory_client::MemoryClient};
use astrocyte_server::Gateway;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{config, serve, spawn_bound, Harness, Running};

async fn send(
    server: &Running,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let json = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, json)
}

async fn retain(server: &Running, bank: &str, content: &str, tags: &[&str]) -> String {
    let (status, body) = send(
        server,
        reqwest::Method::POST,
        "/v1/retain",
        Some(json!({"bank_id": bank, "content": content, "tags": tags})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["memory_id"].as_str().expect("stored").to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["memory_id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn rest_lists_gets_edits_forgets_feeds_and_moves_a_bank() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let mut written = Vec::new();
    for i in 0..7 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let text = format!("Entry number {i} mentions the lighthouse keeper k{i}");
        written.push(retain(&server, "journal", &text, &[tag]).await);
    }
    retain(&server, "other", "A note in another bank", &[]).await;

    // Newest first, three at a time, every memory once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/banks/journal/memories?limit=3&cursor={c}"),
            None => "/v1/banks/journal/memories?limit=3".to_string(),
        };
        let (status, page) = send(&server, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut newest_first = written.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let (_, odd) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/journal/memories?tags=odd&limit=100",
        None,
    )
    .await;
    assert_eq!(ids(&odd).len(), 3);
    let (_, found) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/journal/memories?contains=KEEPER%20k4",
        None,
    )
    .await;
    assert_eq!(ids(&found), vec![written[4].clone()]);
    for bad in [
        "/v1/banks/journal/memories?limit=0",
        "/v1/banks/journal/memories?limit=5000",
        "/v1/banks/journal/memories?cursor=garbage",
        "/v1/banks/journal/memories?order=oldest",
        "/v1/banks/journal/memories?start=yesterday-ish",
        "/v1/banks/journal/changes?since=nonsense",
        "/v1/banks/journal/changes?since=-1",
        "/v1/banks/journal/changes?since=abc-1",
        "/v1/banks/bad%20bank/memories",
    ]
    .into_iter()
    .map(String::from)
    // Past the text filters' limit: refused before any store sees it. (Far longer targets
    // are refused before routing, with 414: `hardening::oversized_request_heads_…`.)
    .chain(["contains", "text_prefix"].map(|filter| {
        let long = "c".repeat(astrocyte_core::browse::MAX_TEXT_FILTER_BYTES + 1);
        format!("/v1/banks/journal/memories?{filter}={long}")
    })) {
        let bad = bad.as_str();
        let (status, body) = send(&server, reqwest::Method::GET, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{bad}: {body}");
    }

    let one = &written[2];
    let (status, edited) = send(
        &server,
        reqwest::Method::PATCH,
        &format!("/v1/banks/journal/memories/{one}"),
        Some(json!({"tags": ["checked", "even"], "metadata": {"reviewer": "ana"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["tags"], json!(["checked", "even"]));
    let (status, refused) = send(
        &server,
        reqwest::Method::PATCH,
        &format!("/v1/banks/journal/memories/{one}"),
        Some(json!({"metadata": {"nested": {"no": 1}}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, detail) = send(
        &server,
        reqwest::Method::GET,
        &format!("/v1/banks/journal/memories/{one}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["memory"]["metadata"], json!({"reviewer": "ana"}));
    let history: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(history, vec!["created", "updated"]);
    assert_eq!(detail["chunks"].as_array().map(Vec::len), Some(1));

    let path = format!("/v1/banks/journal/memories/{}", written[0]);
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    for method in [reqwest::Method::DELETE, reqwest::Method::GET] {
        let (status, body) = send(&server, method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {body}");
    }

    let (status, feed) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/journal/changes?limit=1000",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let kinds: Vec<&str> = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds.len(), 9);
    assert_eq!(&kinds[7..], ["updated", "forgotten"]);
    let tombstone = &feed["changes"][8];
    assert_eq!(tombstone["memory_id"], json!(written[0]));
    assert!(tombstone["memory"].is_null());
    let since = feed["next_cursor"].as_str().expect("cursor");
    let (_, nothing) = send(
        &server,
        reqwest::Method::GET,
        &format!("/v1/banks/journal/changes?since={since}"),
        None,
    )
    .await;
    assert_eq!(nothing["changes"], json!([]));
    assert_eq!(nothing["next_cursor"], json!(since));

    let (status, banks) = send(&server, reqwest::Method::GET, "/v1/banks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(banks["banks"][0]["bank_id"], json!("journal"));
    assert_eq!(banks["banks"][0]["memory_count"], json!(6));
    let bytes: usize = (1..7)
        .map(|i| format!("Entry number {i} mentions the lighthouse keeper k{i}").len())
        .sum();
    assert_eq!(banks["banks"][0]["text_bytes"], json!(bytes));
    assert!(banks["banks"][0]["last_retained_at"].is_string());

    // Download the bank and upload it into a new one, with two bad lines added.
    let response = server
        .client
        .get(server.url("/v1/banks/journal/export"))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let mut file = response.text().await.expect("export body");
    assert_eq!(file.lines().count(), 7, "header and six memories");
    file.push_str("this is not json\n{\"id\": \"\", \"text\": \"no id\"}\n");
    let response = server
        .client
        .post(server.url("/v1/banks/copy/import"))
        .body(file)
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("report");
    assert_eq!(report["imported"], json!(6));
    assert_eq!(report["errors"], json!(2));
    let lines: Vec<u64> = report["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![8, 9]);
    let (_, copy) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/copy/memories?order=id&limit=100",
        None,
    )
    .await;
    let mut expected: Vec<String> = written[1..].to_vec();
    expected.sort();
    assert_eq!(ids(&copy), expected);
    let response = server
        .client
        .post(server.url("/v1/banks/copy/import"))
        .body("not an AMA header\n")
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn an_upload_over_the_body_cap_is_a_413_even_when_chunked() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.max_request_body_bytes = Some(4096);
    let server = serve(&h, cfg).await;
    let header = json!({"_ama_version": 1, "bank_id": "x", "exported_at": "2024-01-01T00:00:00Z",
        "provider": "test", "memory_count": 200})
    .to_string()
        + "\n";
    let line = "{\"id\": \"a\", \"text\": \"padding padding padding\"}\n";
    let chunks: Vec<Result<String, std::io::Error>> = std::iter::once(Ok(header))
        .chain((0..200).map(|_| Ok(line.to_string())))
        .collect();
    let response = server
        .client
        .post(server.url("/v1/banks/big/import"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn grpc_lists_gets_edits_deletes_and_follows_changes() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc");
    let mut client = MemoryClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let mut ids = Vec::new();
    for text in [
        "The red bicycle is in the shed",
        "Grandma's recipe needs two eggs",
    ] {
        let reply = client
            .retain(proto::RetainRequest {
                bank_id: "home".into(),
                content: text.into(),
                ..Default::default()
            })
            .await
            .expect("retain")
            .into_inner();
        ids.push(reply.memory_id.expect("stored"));
    }
    let page = client
        .list_memories(proto::ListMemoriesRequest {
            bank_id: "home".into(),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.memories[0].memory_id, ids[1]);
    let next = client
        .list_memories(proto::ListMemoriesRequest {
            bank_id: "home".into(),
            limit: Some(1),
            cursor: page.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(next.memories[0].memory_id, ids[0]);
    assert_eq!(next.next_cursor, None);

    let edited = client
        .update_memory(proto::UpdateMemoryRequest {
            bank_id: "home".into(),
            memory_id: ids[0].clone(),
            tags: Some(proto::TagList {
                tags: vec!["garden".into()],
            }),
            metadata: None,
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(edited.tags, vec!["garden"]);
    let detail = client
        .get_memory(proto::GetMemoryRequest {
            bank_id: "home".into(),
            memory_id: ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(detail.history.len(), 2);
    client
        .delete_memory(proto::DeleteMemoryRequest {
            bank_id: "home".into(),
            memory_id: ids[1].clone(),
        })
        .await
        .expect("delete");
    let missing = client
        .delete_memory(proto::DeleteMemoryRequest {
            bank_id: "home".into(),
            memory_id: ids[1].clone(),
        })
        .await
        .expect_err("already forgotten");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = client
        .list_memories(proto::ListMemoriesRequest {
            bank_id: "home".into(),
            cursor: Some("garbage".into()),
            ..Default::default()
        })
        .await
        .expect_err("bad cursor");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let feed = client
        .list_changes(proto::ListChangesRequest {
            bank_id: "home".into(),
            ..Default::default()
        })
        .await
        .expect("changes")
        .into_inner();
    let kinds: Vec<&str> = feed.changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, vec!["created", "created", "updated", "forgotten"]);
    assert!(feed.changes[3].memory.is_none());
    server.stop().await;
}

#[tokio::test]
async fn rest_lists_a_banks_entities_and_recall_uses_them() {
    // The entity strategy is off by default (see FusionParams::default); this bank turns it on.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = astrocyte_store_sqlite::SqliteStore::open(
        dir.path(),
        astrocyte_store_sqlite::SqliteOptions::default(),
    )
    .expect("sqlite store opens");
    let mut engine_config = astrocyte_core::EngineConfig::default();
    engine_config.fusion.entity_weight = 0.5;
    let h = Harness {
        engine: std::sync::Arc::new(astrocyte_core::Engine::new(
            std::sync::Arc::new(store),
            std::sync::Arc::new(astrocyte_providers::HashingEmbedder::default()),
            engine_config,
        )),
        dir,
    };
    let server = serve(&h, config()).await;
    retain(
        &server,
        "crew",
        "Caroline: I met Melanie at the Pride Parade in Boston.",
        &[],
    )
    .await;
    retain(
        &server,
        "crew",
        "Melanie: Caroline's painting hangs at Acme University now.",
        &[],
    )
    .await;
    let quiet = retain(
        &server,
        "crew",
        "Caroline: the weather was grey all week.",
        &[],
    )
    .await;
    retain(
        &server,
        "elsewhere",
        "Caroline: a different bank entirely.",
        &[],
    )
    .await;

    let (status, body) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/crew/entities",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entities = body["entities"].as_array().expect("entities");
    assert_eq!(entities[0]["key"], "caroline", "{body}");
    assert_eq!(entities[0]["memories"], 3, "{body}");
    assert_eq!(entities[0]["kind"], "person", "{body}");
    assert_eq!(entities[1]["key"], "melanie", "{body}");
    assert_eq!(entities[1]["memories"], 2, "{body}");
    let keys: Vec<&str> = entities.iter().filter_map(|e| e["key"].as_str()).collect();
    assert!(keys.contains(&"acme university"), "{keys:?}");
    assert!(keys.contains(&"boston"), "{keys:?}");

    let (_, body) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/crew/entities?prefix=Mel&limit=5",
        None,
    )
    .await;
    let keys: Vec<&str> = body["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["melanie"]);
    let (_, body) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/crew/entities?kind=organization",
        None,
    )
    .await;
    assert_eq!(body["entities"][0]["key"], "acme university", "{body}");

    // Forgetting a memory takes it out of the counts.
    let (status, _) = send(
        &server,
        reqwest::Method::DELETE,
        &format!("/v1/banks/crew/memories/{quiet}"),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (_, body) = send(
        &server,
        reqwest::Method::GET,
        "/v1/banks/crew/entities",
        None,
    )
    .await;
    assert_eq!(body["entities"][0]["memories"], 2, "{body}");

    // Bad input is a 400 with the documented body.
    for path in [
        "/v1/banks/crew/entities?kind=planet",
        "/v1/banks/crew/entities?kind=",
        "/v1/banks/crew/entities?limit=0",
        "/v1/banks/crew/entities?limit=abc",
        "/v1/banks/bad%20bank/entities",
    ] {
        let (status, body) = send(&server, reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["detail"].is_string(), "{path}: {body}");
    }

    // The entity strategy shows in the trace of a recall that names one.
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/v1/recall",
        Some(json!({"bank_id": "crew", "query": "What did Melanie paint?"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let used = body["trace"]["strategies_used"].to_string();
    assert!(used.contains("entity"), "{body}");
}
