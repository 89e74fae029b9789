//! MCP with the SDK's own client: over streamable HTTP against a gateway on 127.0.0.1:0 (issued
//! API keys, cross-tenant isolation, grants, 401 without a credential, Host/Origin checks,
//! anonymous public binds refused) and over stdio against a real child process (the
//! `mcp_stdio` example). The tool list is snapshot-tested so a change to it is deliberate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use astrocyte_core::tenancy::Schema;
use astrocyte_core::RecallRequest;
use astrocyte_server::access::{AccessPolicy, DefaultPolicy, Grant, Permission};
use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::mcp::{AllowList, McpConfig, McpError};
use astrocyte_server::policy::pii::PiiAction;
use astrocyte_server::{AppState, Gateway, ServerConfig};
use axum::http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::support::{config, engine_at, schema, spawn, Harness, Running};

type Client = RunningService<RoleClient, ()>;

/// The tool list with every tool switched on: names, argument names and required arguments.
/// Changing it changes what agents see; update it only on purpose.
fn tool_list_snapshot() -> Value {
    json!({
        "memory_retain": {"properties": ["bank_id", "content", "content_type", "metadata", "occurred_at", "tags", "thread_id"], "required": ["content"]},
        "memory_recall": {"properties": ["as_of", "bank_id", "banks", "max_results", "max_tokens", "query", "tags", "time_range"], "required": ["query"]},
        "memory_history": {"properties": ["as_of", "bank_id", "max_results", "max_tokens", "query", "tags"], "required": ["query", "as_of"]},
        "memory_reflect": {"properties": ["bank_id", "include_sources", "max_tokens", "query"], "required": ["query"]},
        "memory_forget": {"properties": ["bank_id", "before_date", "memory_ids", "scope", "tags"], "required": []},
        "memory_banks": {"properties": [], "required": []},
        "memory_list": {"properties": ["bank_id", "contains", "cursor", "limit", "tags"], "required": []},
        "memory_job": {"properties": ["job_id"], "required": ["job_id"]},
        "memory_health": {"properties": [], "required": []},
    })
}

fn describe(tools: &[Tool]) -> Value {
    let mut described = serde_json::Map::new();
    for tool in tools {
        let mut properties: Vec<String> = tool
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        properties.sort();
        let required = tool
            .input_schema
            .get("required")
            .cloned()
            .unwrap_or_else(|| json!([]));
        described.insert(
            tool.name.to_string(),
            json!({"properties": properties, "required": required}),
        );
    }
    Value::Object(described)
}

fn names(tools: &[Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

fn all_tools() -> McpConfig {
    McpConfig {
        expose_forget: true,
        ..McpConfig::default()
    }
}

/// The configuration of a gateway whose tenants come from issued API keys.
fn key_config() -> ServerConfig {
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("a-server-secret-of-32-characters"));
    cfg
}

async fn key_state(h: &Harness) -> AppState {
    AppState::builder(key_config(), h.engine.clone())
        .build()
        .await
        .expect("state")
}

async fn issue(state: &AppState, tenant: &str, principal: &str) -> String {
    state
        .api_keys()
        .expect("issued keys are configured")
        .issue(&schema(tenant), principal)
        .await
        .expect("key issued")
        .api_key
}

async fn serve_mcp(state: AppState, mcp: McpConfig) -> Running {
    spawn(
        Gateway::from_state(state)
            .with_mcp(mcp)
            .expect("mcp mounts"),
    )
    .await
}

async fn connect(
    server: &Running,
    headers: &[(&'static str, &str)],
) -> Result<Client, rmcp::service::ClientInitializeError> {
    let mut custom = HashMap::new();
    for (name, value) in headers {
        custom.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")).custom_headers(custom),
    );
    ().serve(transport).await
}

/// Calls a tool; returns whether it reported an error and its structured result.
async fn call(client: &Client, tool: &str, arguments: Value) -> (bool, Value) {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool} call fails at the protocol level: {e}"));
    let body = result
        .structured_content
        .unwrap_or_else(|| panic!("{tool} returns structured content"));
    (result.is_error == Some(true), body)
}

async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let (is_error, body) = call(client, tool, arguments).await;
    assert!(!is_error, "{tool} failed: {body}");
    body
}

fn hit_texts(recall: &Value) -> Vec<String> {
    recall["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["text"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Retain → recall → reflect → forget → recall through `client`; `bank` is the bank named in
/// each call (`None` relies on the configured default bank).
async fn memory_round_trip(client: &Client, bank: Option<&str>) {
    let with_bank = |mut args: Value| {
        if let Some(bank) = bank {
            args["bank_id"] = json!(bank);
        }
        args
    };
    let kept = ok(
        client,
        "memory_retain",
        with_bank(json!({
            "content": "The staging database moved to the Frankfurt region in March.",
            "tags": ["infra"],
            "metadata": {"source": "standup", "ticket": 42},
            "occurred_at": "2024-03-12T09:30:00+01:00",
        })),
    )
    .await;
    assert_eq!(kept["stored"], true, "{kept}");
    let dropped = ok(
        client,
        "memory_retain",
        with_bank(
            json!({"content": "Quarterly offsite booked at the lake hotel.", "tags": ["events"]}),
        ),
    )
    .await;
    let dropped_id = dropped["memory_id"]
        .as_str()
        .expect("memory id")
        .to_string();

    let recall = ok(
        client,
        "memory_recall",
        with_bank(json!({"query": "where is the staging database", "max_results": 5})),
    )
    .await;
    let found = recall["hits"]
        .as_array()
        .and_then(|hits| {
            hits.iter().find(|h| {
                h["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Frankfurt region"))
            })
        })
        .unwrap_or_else(|| panic!("the retained memory is recalled: {recall}"));
    assert_eq!(found["memory_id"], kept["memory_id"]);
    assert_eq!(found["fact_type"], "world");
    assert_eq!(found["bank_id"].as_str(), Some(bank.unwrap_or("journal")));
    let score = found["score"].as_f64().expect("score");
    assert!(score > 0.0 && score <= 1.0, "{score}");
    assert!(recall["total_available"].as_u64().is_some_and(|n| n >= 1));

    let tagged = ok(
        client,
        "memory_recall",
        with_bank(json!({"query": "offsite", "tags": ["events"]})),
    )
    .await;
    assert_eq!(hit_texts(&tagged).len(), 1, "{tagged}");

    let reflect = ok(
        client,
        "memory_reflect",
        with_bank(json!({"query": "Which region hosts the staging database?"})),
    )
    .await;
    assert!(
        reflect["answer"]
            .as_str()
            .is_some_and(|a| a.contains("Frankfurt")),
        "{reflect}"
    );
    assert!(reflect["sources"].as_array().is_some_and(|s| !s.is_empty()));
    let bare = ok(
        client,
        "memory_reflect",
        with_bank(json!({"query": "staging database region", "include_sources": false})),
    )
    .await;
    assert!(bare["sources"].is_null(), "{bare}");

    // The newest memory is listed first; a second page follows its cursor.
    let listed = ok(client, "memory_list", with_bank(json!({"limit": 1}))).await;
    assert_eq!(
        listed["memories"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let cursor = listed["next_cursor"]
        .as_str()
        .expect("more than one memory");
    let next = ok(
        client,
        "memory_list",
        with_bank(json!({"limit": 1, "cursor": cursor})),
    )
    .await;
    assert_ne!(
        next["memories"][0]["memory_id"],
        listed["memories"][0]["memory_id"]
    );

    let forgotten = ok(
        client,
        "memory_forget",
        with_bank(json!({"memory_ids": [dropped_id]})),
    )
    .await;
    assert_eq!(forgotten, json!({"deleted_count": 1, "archived_count": 0}));
    let after = ok(
        client,
        "memory_recall",
        with_bank(json!({"query": "quarterly offsite lake hotel"})),
    )
    .await;
    assert!(
        hit_texts(&after).iter().all(|t| !t.contains("offsite")),
        "{after}"
    );
}

#[tokio::test]
async fn sdk_client_uses_every_tool_over_streamable_http() {
    let h = Harness::new();
    let state = key_state(&h).await;
    let key = issue(&state, "tenant_a", "agent:a").await;
    let server = serve_mcp(state, all_tools()).await;

    let client = connect(&server, &[("x-api-key", &key)])
        .await
        .expect("initialize");
    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("astrocyte-memory")
    );
    assert!(info.capabilities.tools.is_some());
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(describe(&tools), tool_list_snapshot());

    memory_round_trip(&client, Some("notes")).await;

    let banks = ok(&client, "memory_banks", json!({})).await;
    assert_eq!(banks, json!({"banks": ["notes"], "default": null}));
    let health = ok(&client, "memory_health", json!({})).await;
    assert_eq!(health["healthy"], true, "{health}");

    // Failures are tool results carrying a kind; the caller can act on the detail.
    let (is_error, body) = call(&client, "memory_recall", json!({"query": "anything"})).await;
    assert!(is_error);
    assert_eq!(body["error"], "invalid_input", "{body}");
    let (is_error, body) = call(
        &client,
        "memory_retain",
        json!({"content": "x", "bank_id": "bad bank!"}),
    )
    .await;
    assert!(is_error);
    assert_eq!(body["error"], "invalid_input", "{body}");
    // A retain that stores nothing is a failed call, with the reason.
    let (is_error, body) = call(
        &client,
        "memory_retain",
        json!({"content": "x".repeat(60_000), "bank_id": "notes"}),
    )
    .await;
    assert!(is_error, "{body}");
    assert_eq!(body["stored"], false, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too long")),
        "{body}"
    );
    let (is_error, body) = call(&client, "memory_forget", json!({"bank_id": "notes"})).await;
    assert!(is_error, "an empty selector never means everything");
    assert_eq!(body["error"], "invalid_input", "{body}");

    client.cancel().await.expect("client closes");
    server.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_other_over_mcp() {
    let h = Harness::new();
    let state = key_state(&h).await;
    let key_a = issue(&state, "tenant_a", "agent:a").await;
    let key_b = issue(&state, "tenant_b", "agent:b").await;
    let server = serve_mcp(state, all_tools()).await;
    let alice = connect(&server, &[("x-api-key", &key_a)])
        .await
        .expect("tenant a initializes");
    let bob = connect(&server, &[("x-api-key", &key_b)])
        .await
        .expect("tenant b initializes");

    let secret = ok(
        &alice,
        "memory_retain",
        json!({"content": "Tenant A launch code is amber falcon.", "bank_id": "shared"}),
    )
    .await;
    let secret_id = secret["memory_id"].as_str().expect("id").to_string();
    ok(
        &bob,
        "memory_retain",
        json!({"content": "Tenant B prefers green tea.", "bank_id": "shared"}),
    )
    .await;

    let seen_by_b = ok(
        &bob,
        "memory_recall",
        json!({"query": "launch code amber falcon", "bank_id": "shared"}),
    )
    .await;
    assert!(
        hit_texts(&seen_by_b).iter().all(|t| !t.contains("amber")),
        "{seen_by_b}"
    );
    let answer_for_b = ok(
        &bob,
        "memory_reflect",
        json!({"query": "What is the launch code?", "bank_id": "shared"}),
    )
    .await;
    assert!(
        !answer_for_b.to_string().contains("amber"),
        "{answer_for_b}"
    );
    let forget_by_b = ok(
        &bob,
        "memory_forget",
        json!({"bank_id": "shared", "memory_ids": [secret_id]}),
    )
    .await;
    assert_eq!(forget_by_b["deleted_count"], 0);
    let seen_by_a = ok(
        &alice,
        "memory_recall",
        json!({"query": "launch code amber falcon", "bank_id": "shared"}),
    )
    .await;
    assert_eq!(seen_by_a["hits"][0]["memory_id"], secret_id.as_str());
    assert!(hit_texts(&seen_by_a)
        .iter()
        .all(|t| !t.contains("green tea")));

    // No MCP session holds a tenant: a request carrying B's key runs in B even with no
    // handshake of its own.
    let raw = server
        .client
        .post(server.url("/mcp"))
        .header("x-api-key", &key_b)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "memory_recall", "arguments": {"query": "amber falcon launch code", "bank_id": "shared"}},
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), 200);
    let raw: Value = raw.json().await.expect("json-rpc response");
    let hits = &raw["result"]["structuredContent"]["hits"];
    assert!(hits.as_array().is_some_and(|h| !h.is_empty()), "{raw}");
    assert!(!hits.to_string().contains("amber"), "{raw}");

    alice.cancel().await.expect("close a");
    bob.cancel().await.expect("close b");
    server.stop().await;
}

fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
    })
}

async fn post_initialize(server: &Running, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn mcp_without_a_valid_credential_is_401() {
    let h = Harness::new();
    let state = key_state(&h).await;
    let server = serve_mcp(state, all_tools()).await;

    for headers in [&[][..], &[("x-api-key", "ak_not_a_real_key")][..]] {
        let response = post_initialize(&server, headers).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"error": "authentication_failed"})
        );
    }
    assert!(
        connect(&server, &[]).await.is_err(),
        "the sdk client cannot initialize without a key"
    );
    server.stop().await;
}

#[tokio::test]
async fn grants_apply_to_mcp_calls_and_the_bank_list() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.access = AccessPolicy {
        enabled: true,
        default_policy: DefaultPolicy::Deny,
        grants: vec![
            Grant {
                bank_id: "notes".into(),
                principal: "agent:reader".into(),
                permissions: vec![Permission::Read],
                tenant: None,
            },
            Grant {
                bank_id: "*".into(),
                principal: "agent:writer".into(),
                permissions: vec![Permission::All],
                tenant: None,
            },
        ],
    };
    let server = serve_mcp(h.state(cfg).await, all_tools()).await;
    let writer = connect(&server, &[("x-astrocyte-principal", "agent:writer")])
        .await
        .expect("writer initializes");
    let reader = connect(&server, &[("x-astrocyte-principal", "agent:reader")])
        .await
        .expect("reader initializes");
    for bank in ["notes", "private"] {
        ok(
            &writer,
            "memory_retain",
            json!({"content": format!("A memory kept in {bank}."), "bank_id": bank}),
        )
        .await;
    }

    let (is_error, body) = call(
        &reader,
        "memory_retain",
        json!({"content": "not allowed", "bank_id": "notes"}),
    )
    .await;
    assert!(is_error);
    assert_eq!(body["error"], "forbidden", "{body}");
    let (is_error, body) = call(
        &reader,
        "memory_recall",
        json!({"query": "memory", "bank_id": "private"}),
    )
    .await;
    assert!(is_error);
    assert_eq!(body["error"], "forbidden", "{body}");
    let readable = ok(
        &reader,
        "memory_recall",
        json!({"query": "memory kept", "bank_id": "notes"}),
    )
    .await;
    assert_eq!(hit_texts(&readable), ["A memory kept in notes."]);
    let banks = ok(&reader, "memory_banks", json!({})).await;
    assert_eq!(banks["banks"], json!(["notes"]));
    let banks = ok(&writer, "memory_banks", json!({})).await;
    assert_eq!(banks["banks"], json!(["notes", "private"]));

    writer.cancel().await.expect("close");
    reader.cancel().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn gateway_policy_and_the_result_cap_apply_to_mcp() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.pii.action = PiiAction::Reject;
    cfg.quotas.retain_per_day = Some(3);
    let capped = McpConfig {
        max_results_limit: 2,
        ..McpConfig::default()
    };
    let server = serve_mcp(h.state(cfg).await, capped).await;
    let client = connect(&server, &[]).await.expect("initialize");

    let (is_error, body) = call(
        &client,
        "memory_retain",
        json!({"content": "My SSN is 123-45-6789.", "bank_id": "notes"}),
    )
    .await;
    assert!(is_error);
    assert_eq!(
        body,
        json!({"error": "pii_rejected", "detail": "Content rejected: PII detected (ssn)", "pii_types": ["ssn"]})
    );
    for n in 0..3 {
        ok(
            &client,
            "memory_retain",
            json!({"content": format!("Plain note number {n} about gardening."), "bank_id": "notes"}),
        )
        .await;
    }
    let (is_error, body) = call(
        &client,
        "memory_retain",
        json!({"content": "One note too many.", "bank_id": "notes"}),
    )
    .await;
    assert!(
        is_error,
        "the rejected retain did not spend the quota, three did"
    );
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(body["retry_after_seconds"]
        .as_f64()
        .is_some_and(|s| s > 0.0));

    let recall = ok(
        &client,
        "memory_recall",
        json!({"query": "gardening note", "bank_id": "notes", "max_results": 10}),
    )
    .await;
    assert_eq!(hit_texts(&recall).len(), 2, "{recall}");
    assert_eq!(recall["truncated"], true);
    assert_eq!(recall["total_available"], 3);

    client.cancel().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn host_and_origin_are_checked_and_configurable() {
    let h = Harness::new();
    let server = serve_mcp(h.state(config()).await, McpConfig::default()).await;
    assert_eq!(post_initialize(&server, &[]).await.status(), 200);
    assert_eq!(
        post_initialize(&server, &[("origin", "https://evil.example")])
            .await
            .status(),
        403,
        "a web page cannot drive a local server"
    );
    assert_eq!(
        post_initialize(&server, &[("host", "evil.example")])
            .await
            .status(),
        403,
        "dns rebinding"
    );
    // Switched-off tools are not offered and cannot be called.
    let client = connect(&server, &[]).await.expect("initialize");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(
        names(&tools),
        [
            "memory_retain",
            "memory_recall",
            "memory_history",
            "memory_list",
            "memory_reflect",
            "memory_banks",
            "memory_job",
            "memory_health"
        ]
    );
    let forget = client
        .call_tool(
            CallToolRequestParams::new("memory_forget").with_arguments(
                json!({"bank_id": "notes", "memory_ids": ["x"]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await;
    assert!(forget.is_err(), "memory_forget is off by default");
    client.cancel().await.expect("close");
    server.stop().await;

    let public = McpConfig {
        allowed_hosts: AllowList::Only(vec!["memory.example".into()]),
        allowed_origins: AllowList::Only(vec!["https://app.example:443".into()]),
        ..McpConfig::default()
    };
    let server = serve_mcp(h.state(config()).await, public).await;
    let allowed = post_initialize(
        &server,
        &[
            ("host", "memory.example"),
            ("origin", "https://app.example"),
        ],
    )
    .await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        post_initialize(&server, &[]).await.status(),
        403,
        "loopback names are no longer listed"
    );
    assert_eq!(
        post_initialize(
            &server,
            &[
                ("host", "memory.example"),
                ("origin", "https://other.example")
            ]
        )
        .await
        .status(),
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn anonymous_mcp_on_a_public_bind_is_refused_unless_allowed() {
    let h = Harness::new();
    let mut public = config();
    public.host = "0.0.0.0".into();
    public.allow_dev_auth = true;
    let state = h.state(public.clone()).await;
    let refused = Gateway::from_state(state.clone()).with_mcp(McpConfig::default());
    assert!(
        matches!(refused, Err(McpError::AnonymousOnPublicBind { .. })),
        "default tenant extension + dev auth on 0.0.0.0"
    );
    let allowed = McpConfig {
        allow_anonymous: true,
        ..McpConfig::default()
    };
    assert!(Gateway::from_state(state).with_mcp(allowed).is_ok());

    let mut keyed = key_config();
    keyed.host = "0.0.0.0".into();
    let state = AppState::builder(keyed, h.engine.clone())
        .build()
        .await
        .expect("state");
    assert!(
        Gateway::from_state(state)
            .with_mcp(McpConfig::default())
            .is_ok(),
        "authenticated tenants may serve mcp publicly"
    );
    assert!(
        Gateway::from_state(h.state(config()).await)
            .with_mcp(McpConfig::default())
            .is_ok(),
        "anonymous is fine on loopback"
    );
}

/// The newest modification time under `path` (a file or a directory tree).
fn newest_mtime(path: &Path) -> std::time::SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    match std::fs::read_dir(path) {
        Err(_) => own,
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| newest_mtime(&entry.path()))
            .fold(own, std::cmp::max),
    }
}

/// The `mcp_stdio` example. `cargo test` builds examples, so it is normally there and fresh;
/// after `cargo test --test it` alone it may be missing or older than this crate's sources,
/// and a stale server would test old code, so then it is built here.
fn stdio_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("mcp_stdio{}", std::env::consts::EXE_SUFFIX));
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = ["src", "examples", "Cargo.toml"]
        .iter()
        .map(|p| newest_mtime(&crate_dir.join(p)))
        .fold(std::time::UNIX_EPOCH, std::cmp::max);
    let fresh = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= sources);
    if fresh {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut build = std::process::Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "--manifest-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        "--example",
        "mcp_stdio",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    } else {
        build.args(["--profile", "test"]);
    }
    // Cargo sets these for the running test; build scripts that track them (ring tracks
    // CARGO_MANIFEST_DIR) would otherwise rebuild on every run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            build.env_remove(name.as_ref());
        }
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the mcp_stdio example failed");
    binary
}

#[tokio::test]
async fn sdk_client_uses_every_tool_over_stdio_in_the_fixed_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = tokio::process::Command::new(stdio_server_binary()).configure(|cmd| {
        cmd.arg(dir.path())
            .arg("tenant_stdio")
            .arg("journal")
            .env("ASTROCYTE_LOG_LEVEL", "info");
    });
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .expect("child spawns");
    let mut stderr = stderr.expect("stderr is piped");
    let client = ().serve(transport).await.expect("initialize over stdio");
    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("astrocyte-memory")
    );
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(describe(&tools), tool_list_snapshot());

    memory_round_trip(&client, None).await;
    let banks = ok(&client, "memory_banks", json!({})).await;
    assert_eq!(banks, json!({"banks": ["journal"], "default": "journal"}));
    // The default PII barrier (redact) applies on stdio too.
    ok(
        &client,
        "memory_retain",
        json!({"content": "Page the on-call at oncall@example.com.", "bank_id": "contacts"}),
    )
    .await;
    let contacts = ok(
        &client,
        "memory_recall",
        json!({"query": "page the on-call", "bank_id": "contacts"}),
    )
    .await;
    assert_eq!(
        hit_texts(&contacts),
        ["Page the on-call at [EMAIL_REDACTED]."]
    );

    // Closing stdin ends the server cleanly.
    client.cancel().await.expect("client closes");
    let mut log = String::new();
    stderr.read_to_string(&mut log).await.expect("child stderr");
    assert!(log.contains("mcp session ended"), "{log}");

    // The data landed in the tenant named on the command line, and only there.
    let engine = engine_at(dir.path());
    let recall = |tenant: &'static str| {
        let engine = engine.clone();
        async move {
            let schema = Schema::new(tenant).expect("valid");
            // Strict tenancy may be on in this process: bind the tenant read.
            astrocyte_core::tenancy::use_schema(
                schema.clone(),
                engine.recall(
                    &schema,
                    RecallRequest {
                        query: "staging database Frankfurt".into(),
                        banks: vec!["journal".into()],
                        ..Default::default()
                    },
                ),
            )
            .await
            .expect("recall")
            .hits
            .len()
        }
    };
    assert_eq!(recall("tenant_stdio").await, 1);
    assert_eq!(recall("public").await, 0);
}
