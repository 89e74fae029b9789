//! Hostile input over real HTTP on loopback (issue 13): every bad input a clear 4xx with the
//! documented JSON body, 401s with a challenge and no cause, exports confined to their root,
//! and a server that keeps answering `/live` while it works through the largest requests it
//! accepts.

use std::time::{Duration, Instant};

use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::mcp::McpConfig;
use astrocyte_server::{AppState, Gateway, ServerConfig};
use serde_json::{json, Value};

use crate::support::{self, config, serve, spawn, Harness, Running};

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
    text: String,
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
        text,
    }
}

async fn post_raw(server: &Running, path: &str, body: impl Into<reqwest::Body>) -> Reply {
    send(
        server
            .client
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

async fn post(server: &Running, path: &str, body: Value) -> Reply {
    post_raw(server, path, body.to_string()).await
}

fn assert_detail(reply: &Reply, status: u16, contains: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let detail = reply.json["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("not the JSON error shape: {:?}", reply.text));
    assert!(detail.contains(contains), "{detail:?} lacks {contains:?}");
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_with_the_same_message_everywhere() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let cases = [
        (
            json!({"bank_id": "b", "content": "nul \u{0} here"}),
            "content must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "content": "x", "tags": ["a\u{0}"]}),
            "tags must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "content": "x", "metadata": {"k": "v\u{0}"}}),
            "metadata value for \"k\" must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "content": "x", "occurred_at": "0000-06-01T00:00:00Z"}),
            "occurred_at must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
        (
            json!({"bank_id": "b", "content": "x", "async": true, "idempotency_key": "k".repeat(1_000_000)}),
            "idempotency_key is longer than 256 bytes",
        ),
        (
            json!({"bank_id": "b", "content": "x", "metadata": (0..257).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<String, Value>>()}),
            "metadata has 257 keys, more than 256",
        ),
        (
            json!({"bank_id": "b", "content": "x", "metadata": {"k".repeat(257): 1}}),
            "metadata key is longer than 256 characters",
        ),
        (
            json!({"bank_id": "b", "content": "x", "thread_id": "t\u{0}"}),
            "thread_id must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "content": "x", "thread_id": "t".repeat(257)}),
            "thread_id is longer than 256 characters",
        ),
    ];
    for (body, message) in cases {
        let reply = post(&server, "/v1/retain", body).await;
        assert_detail(&reply, 400, message);
    }
    for (body, message) in [
        (
            json!({"bank_id": "b", "query": "q\u{0}"}),
            "query must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "query": "q", "tags": ["\u{0}"]}),
            "tags must not contain a NUL character",
        ),
        (
            json!({"bank_id": "b", "query": "q", "as_of": "0000-01-01"}),
            "as_of must be between",
        ),
        (
            json!({"bank_id": "b", "query": "q", "time_range": ["0000-01-01", "2020-01-01"]}),
            "time_range must be between",
        ),
        (
            json!({"bank_id": "b", "query": "q", "max_results": true}),
            "expected an integer, not a boolean",
        ),
    ] {
        assert_detail(&post(&server, "/v1/recall", body).await, 400, message);
    }
    assert_detail(
        &post(
            &server,
            "/v1/forget",
            json!({"bank_id": "b", "memory_ids": ["a\u{0}"]}),
        )
        .await,
        400,
        "memory_ids must not contain a NUL character",
    );
    assert_detail(
        &post(
            &server,
            "/v1/forget",
            json!({"bank_id": "b", "before_date": "0000-01-01"}),
        )
        .await,
        400,
        "before_date must be between",
    );
    let job = send(server.client.get(server.url("/v1/jobs/%00"))).await;
    assert_detail(&job, 400, "job_id must not contain a NUL character");
    // A credential named twice is refused: which one would win is a guess.
    let twice = send(
        server
            .client
            .post(server.url("/v1/recall"))
            .header("x-astrocyte-principal", "agent:client")
            .header("x-astrocyte-principal", "agent:proxy")
            .json(&json!({"bank_id": "b", "query": "x"})),
    )
    .await;
    assert_detail(
        &twice,
        400,
        "x-astrocyte-principal header is given more than once",
    );

    // Nothing above was stored.
    let recall = post(&server, "/v1/recall", json!({"bank_id": "b", "query": "x"})).await;
    assert_eq!(recall.status, 200);
    assert_eq!(recall.json["hits"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_data_after_the_body_is_refused() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    for body in [
        r#"{"bank_id": "b", "content": "first"} GARBAGE"#,
        r#"{"bank_id": "b", "content": "first"}{"bank_id": "b", "content": "second"}"#,
    ] {
        let reply = post_raw(&server, "/v1/retain", body).await;
        assert_detail(&reply, 400, "unexpected data after the JSON body");
    }
    let fine = post_raw(
        &server,
        "/v1/retain",
        "{\"bank_id\": \"b\", \"content\": \"first\"}\n\t ",
    )
    .await;
    assert_eq!(
        fine.status, 200,
        "trailing whitespace is fine: {}",
        fine.text
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_body_is_json() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    // An undecodable path segment (axum's plain-text `Path` rejection).
    let hold = send(
        server
            .client
            .put(server.url("/v1/admin/legal-holds/%ff%fe")),
    )
    .await;
    assert_eq!(hold.status, 400, "{}", hold.text);
    assert!(hold.json["detail"].is_string(), "{}", hold.text);
    // A query string the handler cannot decode (axum's plain-text `Query` rejection).
    let keys = send(
        server
            .client
            .get(server.url("/v1/admin/banks?max_results=many")),
    )
    .await;
    assert!(
        keys.json.is_object(),
        "status {} body {:?}",
        keys.status,
        keys.text
    );
    // Wrong method and unknown route.
    let wrong = send(server.client.delete(server.url("/v1/retain"))).await;
    assert_detail(&wrong, 405, "Method Not Allowed");
    let missing = send(server.client.get(server.url("/nope"))).await;
    assert_detail(&missing, 404, "Not Found");
    // A Content-Length that is not a number.
    let bad_length = send(
        server
            .client
            .post(server.url("/v1/retain"))
            .header("content-length", "12")
            .body("{\"x\": 1}    "),
    )
    .await;
    assert!(bad_length.json.is_object() || bad_length.status < 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_json_errors() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let with_headers = |count: usize| {
        (0..count).fold(server.client.get(server.url("/health")), |request, i| {
            request.header(format!("x-filler-{i}"), "v")
        })
    };
    // 150 headers: past the 100 served, below what the connection's parser takes.
    let many = send(with_headers(150)).await;
    assert_detail(&many, 431, "at most 100");
    let fewer = send(with_headers(90)).await;
    assert_eq!(fewer.status, 200, "{}", fewer.text);
    let target = |bytes: usize| server.url(&format!("/health?pad={}", "a".repeat(bytes)));
    let long = send(server.client.get(target(40_000))).await;
    assert_detail(&long, 414, "at most 32768");
    let shorter = send(server.client.get(target(30_000))).await;
    assert_eq!(shorter.status, 200, "{}", shorter.text);
    // The connection still serves after a refusal.
    let again = send(server.client.get(server.url("/health"))).await;
    assert_eq!(again.status, 200, "{}", again.text);
    server.stop().await;
}

async fn mcp_server(h: &Harness, cfg: ServerConfig) -> Running {
    let state = AppState::builder(cfg, h.engine.clone())
        .build()
        .await
        .expect("state");
    spawn(
        Gateway::from_state(state)
            .with_mcp(McpConfig::default())
            .expect("mcp mounts"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_transport_errors_are_json() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.max_request_body_bytes = Some(64 * 1024);
    let server = mcp_server(&h, cfg).await;
    let wrong_type = send(
        server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text);
    assert!(wrong_type.json["detail"].is_string(), "{}", wrong_type.text);
    let too_large = send(
        server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(format!("\"{}\"", "x".repeat(200 * 1024))),
    )
    .await;
    assert_eq!(too_large.status, 413, "{}", too_large.text);
    assert!(too_large.json["detail"].is_string(), "{}", too_large.text);
    // The unread body ends the connection, and the client is told, so it does not send the
    // next request down a closing socket.
    assert_eq!(
        too_large.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // A JSON body that is no JSON-RPC message gets the protocol's error, with its id when
    // it has one.
    for (body, code, id) in [
        ("{bad json".to_string(), -32700, Value::Null),
        ("[]".to_string(), -32600, Value::Null),
        (json!({"jsonrpc": "1.0", "id": 3, "method": "ping"}).to_string(), -32600, json!(3)),
        (json!({"jsonrpc": "2.0", "id": null, "method": "ping"}).to_string(), -32600, Value::Null),
        (
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"arguments": "x"}})
                .to_string(),
            -32602,
            json!(7),
        ),
    ] {
        let reply = send(
            server
                .client
                .post(server.url("/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.json["jsonrpc"], "2.0", "{body}: {}", reply.text);
        assert_eq!(reply.json["error"]["code"], code, "{body}: {}", reply.text);
        assert_eq!(reply.json["id"], id, "{body}: {}", reply.text);
    }
    server.stop().await;
}

fn key_config() -> ServerConfig {
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("a-server-secret-of-32-characters"));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_key_works_as_a_bearer_token_and_401s_carry_a_challenge() {
    let h = Harness::new();
    let state = AppState::builder(key_config(), h.engine.clone())
        .build()
        .await
        .expect("state");
    let key = state
        .api_keys()
        .expect("issued keys are configured")
        .issue(&support::schema("tenant_a"), "agent:a")
        .await
        .expect("issued")
        .api_key;
    let server = spawn(
        Gateway::from_state(state)
            .with_mcp(McpConfig::default())
            .expect("mcp mounts"),
    )
    .await;
    let bearer = format!("Bearer {key}");

    let stored = send(
        server
            .client
            .post(server.url("/v1/retain"))
            .header("authorization", &bearer)
            .json(&json!({"bank_id": "notes", "content": "Bearer keys work"})),
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.json["stored"], true);

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
    });
    let mcp = |auth: Option<&str>| {
        let mut request = server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        send(request)
    };
    let accepted = mcp(Some(&bearer)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);

    for refused in [
        mcp(None).await,
        mcp(Some("Bearer ak_not_a_key")).await,
        send(
            server
                .client
                .post(server.url("/v1/recall"))
                .header("authorization", "Bearer ak_not_a_key")
                .json(&json!({"bank_id": "notes", "query": "x"})),
        )
        .await,
    ] {
        assert_eq!(refused.status, 401, "{}", refused.text);
        assert_eq!(
            refused
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"astrocyte\"")
        );
        assert_eq!(refused.json, json!({"error": "authentication_failed"}));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_schema_names_are_a_401() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.tenant_extension = TenantExtensionKind::TrustedHeader;
    let server = serve(&h, cfg).await;
    for reserved in [
        "pg_catalog",
        "pg_toast",
        "pg_temp",
        "pg_x",
        "PG_X",
        "information_schema",
    ] {
        let reply = send(
            server
                .client
                .post(server.url("/v1/recall"))
                .header("x-tenant-schema", reserved)
                .json(&json!({"bank_id": "b", "query": "x"})),
        )
        .await;
        assert_eq!(reply.status, 401, "{reserved}: {}", reply.text);
        assert_eq!(reply.json, json!({"error": "authentication_failed"}));
    }
    let fine = send(
        server
            .client
            .post(server.url("/v1/recall"))
            .header("x-tenant-schema", "pgx_tenant")
            .json(&json!({"bank_id": "b", "query": "x"})),
    )
    .await;
    assert_eq!(fine.status, 200, "{}", fine.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_never_writes_outside_its_root() {
    let h = Harness::new();
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("exports");
    std::fs::create_dir(&root).expect("root");
    std::fs::create_dir(root.join("sub")).expect("sub");
    let mut cfg = config();
    cfg.portability_roots = vec![root.clone()];
    let server = serve(&h, cfg).await;
    let stored = post(
        &server,
        "/v1/retain",
        json!({"bank_id": "b", "content": "Exported memory"}),
    )
    .await;
    assert_eq!(stored.status, 200);
    let root_text = root.to_string_lossy().to_string();
    let long_name = "n".repeat(300);
    let long_path = format!("{}/x.jsonl", "d/".repeat(2100));
    for (path, message) in [
        (".", "is a directory"),
        ("./", "is a directory"),
        (root_text.as_str(), "is a directory"),
        ("sub", "is a directory"),
        ("a\u{0}b.jsonl", "must not contain a NUL character"),
        (long_name.as_str(), "longer than 255 bytes"),
        (long_path.as_str(), "longer than 4096 bytes"),
    ] {
        let reply = post(&server, "/v1/export", json!({"bank_id": "b", "path": path})).await;
        assert_detail(&reply, 400, message);
    }
    let ok = post(
        &server,
        "/v1/export",
        json!({"bank_id": "b", "path": "sub/b.jsonl"}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let outside: Vec<String> = std::fs::read_dir(outer.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        outside,
        vec!["exports".to_string()],
        "nothing beside the root"
    );
    server.stop().await;
}

/// The largest retain the limits allow: content at the cap in many sentences, the most tags
/// of the longest length, the most metadata keys of the longest length with the longest values.
fn worst_allowed_retain(i: usize) -> Value {
    let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
    let content: String = sentence.repeat(50_000 / sentence.len());
    let tags: Vec<String> = (0..100)
        .map(|t| format!("{t:03}{}", "t".repeat(253)))
        .collect();
    let metadata: serde_json::Map<String, Value> = (0..256)
        .map(|k| {
            (
                format!("{k:03}{}", "k".repeat(253)),
                json!("v".repeat(4096)),
            )
        })
        .collect();
    json!({"bank_id": format!("worst{i}"), "content": content, "tags": tags, "metadata": metadata})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stays_fast_while_the_worst_allowed_retains_run() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let bodies: Vec<String> = (0..6)
        .map(|i| worst_allowed_retain(i).to_string())
        .collect();
    assert!(bodies[0].len() > 1_000_000, "about 1.2 MB each");
    let started = Instant::now();
    let retains: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let client = server.client.clone();
            let url = server.url("/v1/retain");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let status = response.status().as_u16();
                let json: Value = response.json().await.expect("json");
                (status, json)
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while retains.iter().any(|r| !r.is_finished()) {
        let probe = Instant::now();
        let live = server
            .client
            .get(server.url("/live"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("live answers");
        assert_eq!(live.status(), 200);
        slowest = slowest.max(probe.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = started.elapsed();
    for retain in retains {
        let (status, json) = retain.await.expect("task");
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["stored"], true, "{json}");
    }
    eprintln!("{probes} probes of /live, slowest {slowest:?}, retains busy for {busy:?}");
    assert!(probes >= 1);
    assert!(
        slowest < Duration::from_millis(500),
        "/live took {slowest:?} at worst over {probes} probes while the retains ran for {busy:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn browsers_cannot_be_made_to_write_or_read_under_another_name() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let body = json!({"bank_id": "csrf", "content": "Stored by a client that sends JSON."});
    assert_eq!(post(&server, "/v1/retain", body.clone()).await.status, 200);
    // A form, or a page's no-cors fetch, declares something other than JSON: 415.
    for declared in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let reply = send(
            server
                .client
                .post(server.url("/v1/forget"))
                .header("content-type", declared)
                .body(json!({"bank_id": "csrf", "scope": "all"}).to_string()),
        )
        .await;
        assert_detail(&reply, 415, "Body is not JSON");
        assert_eq!(
            reply.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
    }
    // No content type at all is what the reference's clients sometimes send: accepted.
    let reply = send(
        server
            .client
            .post(server.url("/v1/recall"))
            .body(json!({"bank_id": "csrf", "query": "client"}).to_string()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // Another site's page, whatever it declares, cannot change anything.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let reply = send(
            server
                .client
                .post(server.url("/v1/forget"))
                .header(name, value)
                .body(json!({"bank_id": "csrf", "scope": "all"}).to_string()),
        )
        .await;
        assert_eq!(reply.status, 403, "{name}: {}", reply.text);
    }
    // The same origin may (the inspector's own pages).
    let own = server.base.clone();
    let reply = send(
        server
            .client
            .post(server.url("/v1/recall"))
            .header("origin", own)
            .json(&json!({"bank_id": "csrf", "query": "client"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["hits"].as_array().map(Vec::len),
        Some(1),
        "{}",
        reply.text
    );
    // A rebound DNS name reaches a loopback server, but is not served.
    let reply = send(
        server
            .client
            .get(server.url("/v1/banks"))
            .header("host", "attacker.example"),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    let reply = send(
        server
            .client
            .get(server.url("/v1/banks"))
            .header("host", "localhost:1"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // No other site may frame a page of this server.
    let page = send(server.client.get(server.url("/ui"))).await;
    assert_eq!(page.status, 200);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(
            page.headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    server.stop().await;

    // Named hosts are served when listed.
    let mut cfg = config();
    cfg.allowed_hosts = vec!["memory.example.com".into()];
    let server = serve(&h, cfg).await;
    let named = |host: &'static str| {
        server
            .client
            .get(server.url("/v1/banks"))
            .header("host", host)
    };
    assert_eq!(send(named("memory.example.com:8080")).await.status, 200);
    assert_eq!(send(named("attacker.example")).await.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_their_turn() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::new();
    let mut cfg = config();
    cfg.max_connections = 1;
    let server = serve(&h, cfg).await;
    let address = server.base.trim_start_matches("http://").to_string();
    // One client holds the only slot with half a request.
    let mut idle = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    idle.write_all(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let waiting = tokio::spawn({
        let client = reqwest::Client::new();
        let url = server.url("/live");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once the slot is free")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
    // A connection that never speaks (a client's spare pooled one) does not hold up a stop.
    let _spare = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;

    // A client that connects and sends nothing, or half a head, loses its slot at the timeout.
    let mut cfg = config();
    cfg.max_connections = 1;
    cfg.request_head_timeout = Duration::from_millis(300);
    let server = serve(&h, cfg).await;
    for opening in [&b""[..], &b"GET /live HTTP/1.1\r\n"[..]] {
        let mut silent = tokio::net::TcpStream::connect(&address_of(&server))
            .await
            .expect("connect");
        silent.write_all(opening).await.expect("write");
        let started = Instant::now();
        let status = reqwest::Client::new()
            .get(server.url("/live"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("served after the timeout")
            .status();
        assert_eq!(status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }
    server.stop().await;
}

/// An HTTP/2 connection with no request open is closed once the head timeout passes, as an
/// idle HTTP/1 keep-alive one is: otherwise idle HTTP/2 clients would hold every slot.
#[tokio::test]
async fn an_idle_http2_connection_gives_its_slot_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new();
    let mut cfg = config();
    cfg.max_connections = 1;
    cfg.request_head_timeout = Duration::from_millis(300);
    let server = serve(&h, cfg).await;
    let mut h2 = tokio::net::TcpStream::connect(&address_of(&server))
        .await
        .expect("connect");
    // The client preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let started = Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 512];
        loop {
            match h2.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // The server spoke HTTP/2 (its SETTINGS frame, type 4, comes first) before going away.
    assert_eq!(received.get(3), Some(&4u8), "{received:?}");
    // The slot is free again: a plain request is served.
    let status = reqwest::Client::new()
        .get(server.url("/live"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("served")
        .status();
    assert_eq!(status, 200);
    server.stop().await;
}

/// A well-behaved HTTP/2 client (it answers pings) that stops sending requests is sent away
/// once the head timeout passes; its request, with no `Host` header but an `:authority`,
/// was served.
#[tokio::test]
async fn an_http2_client_that_stops_asking_is_sent_away() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.request_head_timeout = Duration::from_millis(300);
    let server = serve(&h, cfg).await;
    let tcp = tokio::net::TcpStream::connect(&address_of(&server))
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    let driven = tokio::spawn(connection);
    let request = axum::http::Request::get(server.url("/live"))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), driven).await;
    assert!(ended.is_ok(), "an idle HTTP/2 client was never sent away");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    drop(client);
    server.stop().await;
}

fn address_of(server: &Running) -> String {
    server.base.trim_start_matches("http://").to_string()
}
