//! Parity, proved once: one table of cases run against REST, MCP over streamable HTTP and gRPC
//! on one real server (issued API keys, grants, a daily quota, the PII barrier), asserting the
//! same outcome, the same fields and the same error kind on all three. Each transport works in
//! a tenant of its own, so bank names, bank lists and quotas line up case by case.

use std::collections::HashMap;

use astrocyte_server::access::{AccessPolicy, DefaultPolicy, Grant, Permission};
use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::error::ErrorCode;
use astrocyte_server::grpc::proto::{self, memory_client::MemoryClient};
use astrocyte_server::grpc::{status_code, ERROR_KIND_KEY};
use astrocyte_server::mcp::McpConfig;
use astrocyte_server::policy::pii::{PiiAction, PiiMode};
use astrocyte_server::{AppState, Gateway};
use axum::http::{HeaderName, HeaderValue};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::support::{config, schema, spawn_bound, Harness};

type McpClient = RunningService<RoleClient, ()>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Rest,
    Mcp,
    Grpc,
}

/// A case's outcome: the normalised result, or the error kind.
type Outcome = Result<Value, String>;

struct Clients {
    base: String,
    http: reqwest::Client,
    grpc_addr: String,
    mcp: HashMap<String, McpClient>,
}

fn parity_config() -> astrocyte_server::ServerConfig {
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("a-server-secret-of-32-characters"));
    cfg.quotas.retain_per_day = Some(3);
    cfg.pii.mode = PiiMode::Regex;
    cfg.pii.action = PiiAction::Reject;
    cfg.access = AccessPolicy {
        enabled: true,
        default_policy: DefaultPolicy::Deny,
        grants: vec![
            Grant {
                bank_id: "*".into(),
                principal: "agent:alice".into(),
                permissions: vec![Permission::All],
                tenant: None,
            },
            Grant {
                bank_id: "*".into(),
                principal: "agent:bob".into(),
                permissions: vec![Permission::Read],
                tenant: None,
            },
        ],
    };
    cfg
}

fn kind_of_status(status: u16) -> String {
    ErrorCode::ALL
        .iter()
        .find(|c| c.http_status().as_u16() == status)
        .map(|c| c.as_str().to_string())
        .unwrap_or_else(|| format!("http_{status}"))
}

/// What is compared of a retain result (ids differ between tenants; their presence does not).
fn retain_view(body: &Value) -> Value {
    json!({
        "stored": body["stored"],
        "deduplicated": body["deduplicated"],
        "has_memory_id": body["memory_id"].is_string(),
        "error": body["error"],
    })
}

/// What is compared of a hit: everything but ids, the retain time and the exact float.
fn hit_view(hit: &Value) -> Value {
    let score = hit["score"].as_f64().unwrap_or(-1.0);
    let mut metadata = hit["metadata"].clone();
    if metadata.as_object().is_some_and(|m| m.is_empty()) {
        metadata = json!({});
    }
    json!({
        "text": hit["text"],
        "score": (score * 1000.0).round() / 1000.0,
        "tags": hit["tags"],
        "metadata": metadata,
        "occurred_at": hit["occurred_at"],
        "bank_id": hit["bank_id"],
        "fact_type": hit["fact_type"],
    })
}

fn recall_view(body: &Value) -> Value {
    let hits: Vec<Value> = body["hits"]
        .as_array()
        .map(|hits| hits.iter().map(hit_view).collect())
        .unwrap_or_default();
    json!({"hits": hits, "truncated": body["truncated"], "total_available": body["total_available"]})
}

fn reflect_view(body: &Value) -> Value {
    let sources = body["sources"].as_array().map(|s| s.len()).unwrap_or(0);
    json!({"answer": body["answer"], "sources": sources})
}

impl Clients {
    /// The MCP session of `key`; a credential the server refuses fails the handshake with
    /// HTTP 401, which is MCP's `unauthenticated`.
    async fn mcp(&mut self, key: &str) -> Result<&McpClient, String> {
        if !self.mcp.contains_key(key) {
            let mut headers = HashMap::new();
            headers.insert(
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(key).expect("header"),
            );
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", self.base))
                    .custom_headers(headers),
            );
            match ().serve(transport).await {
                Ok(client) => {
                    self.mcp.insert(key.to_string(), client);
                }
                // The 401 carries `WWW-Authenticate`, which the SDK reports as "Auth required".
                Err(error)
                    if error.to_string().contains("401")
                        || error.to_string().contains("Auth required") =>
                {
                    return Err("unauthenticated".into())
                }
                Err(error) => panic!("mcp initialize: {error}"),
            }
        }
        Ok(&self.mcp[key])
    }

    async fn grpc(&self) -> MemoryClient<Channel> {
        MemoryClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connects")
    }

    /// Runs `op` (retain, recall, reflect, forget, history, banks) with REST-shaped `args`.
    async fn run(&mut self, via: Via, key: &str, op: &str, args: Value) -> Outcome {
        let raw = match via {
            Via::Rest => self.rest(key, op, args).await,
            Via::Mcp => self.mcp_call(key, op, args).await,
            Via::Grpc => self.grpc_call(key, op, args).await,
        }?;
        Ok(match op {
            "retain" => retain_view(&raw),
            "recall" | "history" => recall_view(&raw),
            "reflect" => reflect_view(&raw),
            "forget" => json!({"deleted_count": raw["deleted_count"]}),
            "banks" => json!({"banks": raw["banks"]}),
            _ => raw,
        })
    }

    async fn rest(&self, key: &str, op: &str, args: Value) -> Outcome {
        let request = match op {
            "banks" => self.http.get(format!("{}/v1/admin/banks", self.base)),
            _ => self.http.post(format!("{}/v1/{op}", self.base)).json(&args),
        };
        let response = request
            .header("x-api-key", key)
            .send()
            .await
            .expect("rest request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            return Err(kind_of_status(status));
        }
        Ok(body)
    }

    async fn mcp_call(&mut self, key: &str, op: &str, args: Value) -> Outcome {
        let client = self.mcp(key).await?;
        let arguments = args.as_object().cloned().unwrap_or_default();
        let result = client
            .call_tool(CallToolRequestParams::new(format!("memory_{op}")).with_arguments(arguments))
            .await
            .expect("mcp call");
        let body = result.structured_content.expect("structured content");
        if result.is_error == Some(true) {
            return Err(body["error"].as_str().unwrap_or("?").to_string());
        }
        Ok(body)
    }

    async fn grpc_call(&self, key: &str, op: &str, args: Value) -> Outcome {
        let mut client = self.grpc().await;
        let text = |v: &Value| v.as_str().map(str::to_string);
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        fn request<T>(key: &str, message: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().expect("ascii key"));
            request
        }
        let result: Result<Value, tonic::Status> = match op {
            "retain" => {
                let metadata = args["metadata"].as_object().map(|m| prost_types::Struct {
                    fields: m.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
                });
                let content_type = match args["content_type"].as_str() {
                    Some("conversation") => proto::ContentType::Conversation,
                    Some("document") => proto::ContentType::Document,
                    _ => proto::ContentType::Unspecified,
                };
                client
                    .retain(request(
                        key,
                        proto::RetainRequest {
                            bank_id: text(&args["bank_id"]).unwrap_or_default(),
                            content: text(&args["content"]).unwrap_or_default(),
                            tags: list(&args["tags"]),
                            metadata,
                            occurred_at: text(&args["occurred_at"]),
                            content_type: content_type as i32,
                            run_async: false,
                            idempotency_key: None,
                            thread_id: None,
                        },
                    ))
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        json!({"stored": r.stored, "deduplicated": r.deduplicated, "memory_id": r.memory_id, "error": r.error})
                    })
            }
            "recall" => {
                let time_range = args["time_range"].as_array().map(|pair| proto::TimeRange {
                    start: text(&pair[0]).unwrap_or_default(),
                    end: text(&pair[1]).unwrap_or_default(),
                });
                client
                    .recall(request(
                        key,
                        proto::RecallRequest {
                            query: text(&args["query"]).unwrap_or_default(),
                            bank_id: text(&args["bank_id"]).unwrap_or_default(),
                            banks: Vec::new(),
                            max_results: args["max_results"].as_i64(),
                            max_tokens: args["max_tokens"].as_i64(),
                            tags: list(&args["tags"]),
                            time_range,
                            as_of: text(&args["as_of"]),
                        },
                    ))
                    .await
                    .map(|r| recall_json(r.into_inner()))
            }
            "history" => client
                .history(request(
                    key,
                    proto::HistoryRequest {
                        query: text(&args["query"]).unwrap_or_default(),
                        bank_id: text(&args["bank_id"]).unwrap_or_default(),
                        as_of: text(&args["as_of"]).unwrap_or_default(),
                        max_results: None,
                        max_tokens: None,
                        tags: Vec::new(),
                    },
                ))
                .await
                .map(|r| recall_json(r.into_inner())),
            "reflect" => client
                .reflect(request(
                    key,
                    proto::ReflectRequest {
                        query: text(&args["query"]).unwrap_or_default(),
                        bank_id: text(&args["bank_id"]).unwrap_or_default(),
                        max_tokens: None,
                        include_sources: Some(true),
                    },
                ))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    json!({"answer": r.answer, "sources": r.sources.iter().map(|_| json!({})).collect::<Vec<_>>()})
                }),
            "forget" => client
                .forget(request(
                    key,
                    proto::ForgetRequest {
                        bank_id: text(&args["bank_id"]).unwrap_or_default(),
                        memory_ids: list(&args["memory_ids"]),
                        tags: list(&args["tags"]),
                        before_date: text(&args["before_date"]),
                        all: args["scope"] == "all",
                    },
                ))
                .await
                .map(|r| json!({"deleted_count": r.into_inner().deleted_count})),
            "banks" => client
                .list_banks(request(key, proto::ListBanksRequest {}))
                .await
                .map(|r| json!({"banks": r.into_inner().banks})),
            other => panic!("no gRPC case for {other}"),
        };
        result.map_err(|status| {
            let kind = status
                .metadata()
                .get(ERROR_KIND_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            let code = ErrorCode::ALL
                .into_iter()
                .find(|c| c.as_str() == kind)
                .unwrap_or_else(|| panic!("unknown kind {kind:?}: {status:?}"));
            assert_eq!(status.code(), status_code(code), "{kind}: {status:?}");
            kind
        })
    }
}

fn to_proto(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        other => Kind::StringValue(other.to_string()),
    };
    prost_types::Value { kind: Some(kind) }
}

fn from_proto(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 => json!(*n as i64),
        Some(Kind::NumberValue(n)) => json!(n),
        _ => Value::Null,
    }
}

fn recall_json(r: proto::RecallResponse) -> Value {
    let hits: Vec<Value> = r
        .hits
        .into_iter()
        .map(|h| {
            let metadata: serde_json::Map<String, Value> = h
                .metadata
                .map(|m| {
                    m.fields
                        .iter()
                        .map(|(k, v)| (k.clone(), from_proto(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "text": h.text, "score": h.score, "tags": h.tags, "metadata": metadata,
                "occurred_at": h.occurred_at, "bank_id": h.bank_id, "fact_type": h.fact_type,
            })
        })
        .collect();
    json!({"hits": hits, "truncated": r.truncated, "total_available": r.total_available})
}

/// The table: every case in order, for one transport. Later cases use ids earlier ones got.
async fn cases(clients: &mut Clients, via: Via, alice: &str, bob: &str) -> Vec<(String, Outcome)> {
    let mut out: Vec<(String, Outcome)> = Vec::new();
    macro_rules! case {
        ($name:expr, $key:expr, $op:expr, $args:expr) => {{
            let outcome = clients.run(via, $key, $op, $args).await;
            out.push(($name.to_string(), outcome));
        }};
    }
    case!(
        "retain",
        alice,
        "retain",
        json!({"bank_id": "notes", "content": "The staging database moved to the Frankfurt region in March."})
    );
    assert_eq!(
        out[0].1.as_ref().map(|v| v["stored"].clone()),
        Ok(json!(true)),
        "{via:?}"
    );
    case!(
        "duplicate retain",
        alice,
        "retain",
        json!({"bank_id": "notes", "content": "The staging database moved to the Frankfurt region in March."})
    );
    case!(
        "retain with tags, metadata, occurred_at and content_type",
        alice,
        "retain",
        json!({"bank_id": "notes", "content": "Miso the cat sleeps on the window seat every afternoon.",
               "tags": ["pets", "home"], "metadata": {"owner": "ann", "age": 3, "indoor": true},
               "occurred_at": "2024-05-01T10:00:00+00:00", "content_type": "conversation"})
    );
    case!(
        "recall with a tag filter",
        alice,
        "recall",
        json!({"bank_id": "notes", "query": "where does the cat sleep", "tags": ["pets"]})
    );
    case!(
        "recall with a time range",
        alice,
        "recall",
        json!({"bank_id": "notes", "query": "cat window seat",
               "time_range": ["2024-04-01T00:00:00", "2024-06-01T00:00:00"]})
    );
    case!(
        "recall with max_tokens and max_results",
        alice,
        "recall",
        json!({"bank_id": "notes", "query": "staging database cat", "max_tokens": 12, "max_results": 5})
    );
    case!(
        "reflect",
        alice,
        "reflect",
        json!({"bank_id": "notes", "query": "Where did the staging database move?"})
    );
    case!(
        "history before anything was stored",
        alice,
        "history",
        json!({"bank_id": "notes", "query": "staging database", "as_of": "2001-01-01T00:00:00+00:00"})
    );
    case!(
        "history now",
        alice,
        "history",
        json!({"bank_id": "notes", "query": "staging database", "as_of": "2999-01-01T00:00:00+00:00"})
    );
    case!("banks", alice, "banks", json!({}));
    let cat = clients
        .run(
            via,
            alice,
            "recall",
            json!({"bank_id": "notes", "query": "Miso cat", "tags": ["pets"]}),
        )
        .await;
    assert!(cat.is_ok(), "{via:?}: {cat:?}");
    // Ids are transport-specific: fetch the raw one for the forget-by-id case.
    let raw_id = match via {
        Via::Rest => clients
            .rest(
                alice,
                "recall",
                json!({"bank_id": "notes", "query": "Miso cat", "tags": ["pets"]}),
            )
            .await
            .map(|b| b["hits"][0]["memory_id"].clone()),
        Via::Mcp => clients
            .mcp_call(
                alice,
                "recall",
                json!({"bank_id": "notes", "query": "Miso cat", "tags": ["pets"]}),
            )
            .await
            .map(|b| b["hits"][0]["memory_id"].clone()),
        Via::Grpc => {
            let mut client = clients.grpc().await;
            let mut request = tonic::Request::new(proto::RecallRequest {
                query: "Miso cat".into(),
                bank_id: "notes".into(),
                tags: vec!["pets".into()],
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("x-api-key", alice.parse().expect("key"));
            Ok(json!(
                client
                    .recall(request)
                    .await
                    .expect("recall")
                    .into_inner()
                    .hits[0]
                    .memory_id
            ))
        }
    }
    .expect("memory id");
    case!(
        "forget by id",
        alice,
        "forget",
        json!({"bank_id": "notes", "memory_ids": [raw_id]})
    );
    for content in [
        "An old note about the first office.",
        "An old note about the second office.",
    ] {
        clients
            .run(
                via,
                alice,
                "retain",
                json!({"bank_id": "archive", "content": content, "tags": ["old"]}),
            )
            .await
            .expect("archive retain");
    }
    case!(
        "forget by tag",
        alice,
        "forget",
        json!({"bank_id": "archive", "tags": ["old"]})
    );
    clients
        .run(
            via,
            alice,
            "retain",
            json!({"bank_id": "dated", "content": "A note from long ago.", "occurred_at": "2001-02-03"}),
        )
        .await
        .expect("dated retain");
    case!(
        "forget by date",
        alice,
        "forget",
        json!({"bank_id": "dated", "before_date": "2010-01-01T00:00:00+00:00"})
    );
    case!(
        "forget with no selector",
        alice,
        "forget",
        json!({"bank_id": "dated"})
    );
    case!(
        "bad bank id",
        alice,
        "retain",
        json!({"bank_id": "not a bank!", "content": "anything"})
    );
    case!(
        "empty query",
        alice,
        "recall",
        json!({"bank_id": "notes", "query": "   "})
    );
    case!(
        "bad datetime",
        alice,
        "recall",
        json!({"bank_id": "notes", "query": "cat", "as_of": "yesterday-ish"})
    );
    for n in 0..3 {
        case!(
            format!("retain {n} within the quota"),
            alice,
            "retain",
            json!({"bank_id": "quota", "content": format!("Quota note number {n} about tides.")})
        );
    }
    case!(
        "over quota",
        alice,
        "retain",
        json!({"bank_id": "quota", "content": "One note too many."})
    );
    case!(
        "PII rejected",
        alice,
        "retain",
        json!({"bank_id": "notes", "content": "My SSN is 123-45-6789."})
    );
    case!(
        "forbidden bank (read-only principal writes)",
        bob,
        "retain",
        json!({"bank_id": "notes", "content": "Bob was here."})
    );
    case!(
        "read-only principal reads",
        bob,
        "recall",
        json!({"bank_id": "notes", "query": "staging database"})
    );
    case!(
        "unknown tenant credential",
        "ak_not_a_real_key",
        "recall",
        json!({"bank_id": "notes", "query": "staging database"})
    );
    out
}

#[tokio::test]
async fn rest_mcp_and_grpc_agree_on_every_case() {
    let h = Harness::new();
    let state: AppState = h.state(parity_config()).await;
    let keys_state = state.clone();
    let keys = keys_state.api_keys().expect("issued keys");
    let mcp = McpConfig {
        expose_forget: true,
        ..McpConfig::default()
    };
    let server = spawn_bound(Gateway::from_state(state).with_mcp(mcp).expect("mcp")).await;
    let mut clients = Clients {
        base: server.base.clone(),
        http: reqwest::Client::new(),
        grpc_addr: server.grpc_addr.clone().expect("grpc is served"),
        mcp: HashMap::new(),
    };
    let mut tables = Vec::new();
    for (via, tenant) in [
        (Via::Rest, "parity_rest"),
        (Via::Mcp, "parity_mcp"),
        (Via::Grpc, "parity_grpc"),
    ] {
        let alice = keys
            .issue(&schema(tenant), "agent:alice")
            .await
            .expect("key")
            .api_key;
        let bob = keys
            .issue(&schema(tenant), "agent:bob")
            .await
            .expect("key")
            .api_key;
        tables.push((via, cases(&mut clients, via, &alice, &bob).await));
    }
    let (_, rest) = &tables[0];
    // The table says what each case must be, so agreement on a wrong answer fails too.
    let expect_error = |name: &str, kind: &str| {
        let (_, outcome) = rest
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no case {name}"));
        assert_eq!(outcome, &Err(kind.to_string()), "{name}");
    };
    expect_error("bad bank id", "invalid_input");
    expect_error("empty query", "invalid_input");
    expect_error("bad datetime", "invalid_input");
    expect_error("forget with no selector", "invalid_input");
    expect_error("over quota", "rate_limited");
    expect_error("PII rejected", "pii_rejected");
    expect_error("forbidden bank (read-only principal writes)", "forbidden");
    expect_error("unknown tenant credential", "unauthenticated");
    let value = |name: &str| -> Value {
        rest.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, o)| o.clone().ok())
            .unwrap_or_else(|| panic!("{name} succeeded"))
    };
    assert_eq!(value("duplicate retain")["deduplicated"], true);
    assert_eq!(value("duplicate retain")["has_memory_id"], true);
    let tagged = value("recall with a tag filter");
    assert_eq!(tagged["hits"].as_array().map(Vec::len), Some(1), "{tagged}");
    assert_eq!(
        tagged["hits"][0]["metadata"],
        json!({"owner": "ann", "age": 3, "indoor": true})
    );
    assert_eq!(
        tagged["hits"][0]["occurred_at"],
        "2024-05-01T10:00:00+00:00"
    );
    assert_eq!(tagged["hits"][0]["tags"], json!(["home", "pets"]));
    assert_eq!(
        value("history before anything was stored")["hits"],
        json!([])
    );
    assert_eq!(value("forget by id")["deleted_count"], 1);
    assert_eq!(value("forget by tag")["deleted_count"], 2);
    assert_eq!(value("forget by date")["deleted_count"], 1);
    assert_eq!(value("banks")["banks"], json!(["notes"]));

    for (via, table) in &tables[1..] {
        assert_eq!(table.len(), rest.len());
        for ((name, expected), (other_name, got)) in rest.iter().zip(table) {
            assert_eq!(name, other_name);
            assert_eq!(got, expected, "{via:?} differs from REST on {name:?}");
        }
    }
    for client in clients.mcp.into_values() {
        let _ = client.cancel().await;
    }
    server.stop().await;
}
