//! The MCP tool table (`memory_retain`, `memory_recall`, `memory_reflect`, `memory_forget`,
//! `memory_banks`, `memory_health`) and the handler that serves it on either transport. Each
//! tool calls the same [`Engine`] methods as the REST routes, with the same grants, limits and
//! PII barrier when it runs behind the gateway. Failures are tool results `{"error": kind}`;
//! internal details are logged, never returned. No retrieval logic lives here.

use std::sync::Arc;

use astrocyte_core::tenancy::Schema;
use astrocyte_core::{BankId, Engine, Metadata};
use axum::http::request::Parts;
use rmcp::handler::server::common::schema_for_input;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::config::McpConfig;
use super::McpError;
use crate::dto::browse::MemoryPageResponse;
use crate::dto::{
    field_datetime, optional_field_datetime, ContentTypeDto, ForgetResponse, JobResponse,
    RecallResponse, ReflectResponse, RetainResponse,
};
use crate::error::ApiError;
use crate::service::{Caller, Forget, History, ListMemories, Recall, Reflect, Retain, Service};
use crate::state::AppState;

/// The server name clients see, as in the reference.
pub const SERVER_NAME: &str = "astrocyte-memory";

const INSTRUCTIONS: &str = "Astrocyte memory server. Use memory_retain to store information, \
memory_recall to search memories, memory_reflect to get an answer from memory, and \
memory_forget (when enabled) to remove memories.";

fn default_max_results() -> i64 {
    10
}

fn default_true() -> bool {
    true
}

/// Arguments of `memory_retain`.
#[derive(Debug, Deserialize, JsonSchema)]
struct RetainArgs {
    /// The text to memorize.
    content: String,
    /// Memory bank to store in; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// Optional tags for filtering.
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Optional key-value metadata (string, number, boolean or null values).
    #[serde(default)]
    metadata: Option<Metadata>,
    /// ISO 8601 timestamp of when the event happened.
    #[serde(default)]
    occurred_at: Option<String>,
    /// How to chunk the content: `text` (sentences, the default), `conversation` (one chunk
    /// per turn) or `document` (paragraphs).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    content_type: Option<ContentTypeDto>,
    /// The conversation or thread this belongs to: turns of one thread lend each other
    /// context, so retain each message with the same thread_id (or a `session` metadata key).
    #[serde(default)]
    thread_id: Option<String>,
}

/// Arguments of `memory_recall`.
#[derive(Debug, Deserialize, JsonSchema)]
struct RecallArgs {
    /// Natural language query.
    query: String,
    /// Single memory bank to search; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// Several banks to search (overrides bank_id).
    #[serde(default)]
    banks: Option<Vec<String>>,
    /// Maximum number of results (capped by the server, 50 by default).
    #[serde(default = "default_max_results")]
    max_results: i64,
    /// Only memories sharing at least one of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Token budget for the returned texts.
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Only memories that happened within `[start, end]` (two ISO 8601 datetimes).
    #[serde(default)]
    time_range: Option<Vec<String>>,
    /// Time travel: what was known at this ISO 8601 instant.
    #[serde(default)]
    as_of: Option<String>,
}

/// Arguments of `memory_history`.
#[derive(Debug, Deserialize, JsonSchema)]
struct HistoryArgs {
    /// Natural language query.
    query: String,
    /// The ISO 8601 instant whose knowledge to reconstruct.
    as_of: String,
    /// Memory bank; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// Maximum number of results.
    #[serde(default = "default_max_results")]
    max_results: i64,
    /// Token budget for the returned texts.
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Only memories sharing at least one of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Arguments of `memory_job`.
#[derive(Debug, Deserialize, JsonSchema)]
struct JobArgs {
    /// The job id an asynchronous retain returned.
    job_id: String,
}

/// Arguments of `memory_reflect`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ReflectArgs {
    /// The question to answer from memory.
    query: String,
    /// Memory bank to read; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// Token budget for the memories the answer rests on.
    #[serde(default)]
    max_tokens: Option<i64>,
    /// Whether to return the source memories (for citations).
    #[serde(default = "default_true")]
    include_sources: bool,
}

/// Arguments of `memory_forget`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ForgetArgs {
    /// Memory bank; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// Specific memory ids to delete.
    #[serde(default)]
    memory_ids: Option<Vec<String>>,
    /// Delete memories carrying any of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Delete memories from before this ISO 8601 instant.
    #[serde(default)]
    before_date: Option<String>,
    /// `all` forgets the whole bank (needs the admin permission).
    #[serde(default)]
    scope: Option<String>,
}

/// Arguments of `memory_list`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ListArgs {
    /// Memory bank; the configured default when omitted.
    #[serde(default)]
    bank_id: Option<String>,
    /// How many memories, newest first (1 to 1000; default 20).
    #[serde(default)]
    limit: Option<i64>,
    /// `next_cursor` of the previous call, for the next page.
    #[serde(default)]
    cursor: Option<String>,
    /// Only memories carrying any of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Only memories whose text contains this (case-insensitive).
    #[serde(default)]
    contains: Option<String>,
}

/// Tools without arguments.
#[derive(Debug, Deserialize, JsonSchema)]
struct NoArgs {}

fn input_schema<T: JsonSchema + 'static>() -> Arc<rmcp::model::JsonObject> {
    schema_for_input::<T>().expect("every argument type is a struct, so its schema is an object")
}

/// The tools offered under `config`: reflect and forget follow their switches.
pub fn tool_table(config: &McpConfig) -> Vec<Tool> {
    let mut tools = vec![
        Tool::new(
            "memory_retain",
            "Store content into memory. Returns {stored, memory_id}.",
            input_schema::<RetainArgs>(),
        )
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(false),
        ),
        Tool::new(
            "memory_recall",
            "Retrieve the memories most relevant to a query (raw retrieval, no synthesis). \
             Returns {hits: [{text, score, tags, metadata, occurred_at, bank_id, memory_id, ...}], \
             total_available, truncated}; score is in [0, 1], higher is better.",
            input_schema::<RecallArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
        Tool::new(
            "memory_history",
            "Recall what a bank held at a past instant (as_of). Same result shape as memory_recall.",
            input_schema::<HistoryArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    ];
    tools.push(
        Tool::new(
            "memory_list",
            "List a bank's most recent memories, newest first (browsing, not search). Returns \
             {memories: [{memory_id, text, tags, metadata, occurred_at, retained_at, ...}], next_cursor}.",
            input_schema::<ListArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    );
    if config.expose_reflect {
        tools.push(
            Tool::new(
                "memory_reflect",
                "Answer a question from memory. Returns {answer, sources?}: quote or paraphrase \
                 the answer, and show sources as citations.",
                input_schema::<ReflectArgs>(),
            )
            .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
        );
    }
    if config.expose_forget {
        tools.push(
            Tool::new(
                "memory_forget",
                "Remove memories from a bank by id or tag. Returns {deleted_count}.",
                input_schema::<ForgetArgs>(),
            )
            .with_annotations(
                ToolAnnotations::new()
                    .read_only(false)
                    .destructive(true)
                    .idempotent(true)
                    .open_world(false),
            ),
        );
    }
    tools.push(
        Tool::new(
            "memory_banks",
            "List the memory banks you can read and the default bank. Returns {banks, default}.",
            input_schema::<NoArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    );
    tools.push(
        Tool::new(
            "memory_job",
            "The state of a background job (an asynchronous retain). Returns {job_id, kind, state, attempts, result}.",
            input_schema::<JobArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    );
    tools.push(
        Tool::new(
            "memory_health",
            "Check memory system health. Returns {healthy, message, latency_ms}.",
            input_schema::<NoArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    );
    tools
}

/// Where a call's caller comes from.
#[derive(Clone)]
enum Tenancy {
    /// One caller for the whole connection, fixed by the composition root (stdio: the local
    /// user owns the process and its data).
    Fixed(Caller),
    /// The authenticated caller of each HTTP request.
    PerRequest,
}

/// The MCP server handler: the tool table over the service. Cheap to clone; over HTTP one is
/// made per request.
#[derive(Clone)]
pub struct MemoryTools {
    service: Service,
    tenancy: Tenancy,
    config: Arc<McpConfig>,
    tools: Arc<[Tool]>,
}

impl MemoryTools {
    /// Tools that always run in `schema` (stdio), under a service with no grants or rate limits
    /// and the PII barrier of `config`.
    pub async fn for_tenant(
        engine: Arc<Engine>,
        schema: Schema,
        config: McpConfig,
    ) -> Result<Self, McpError> {
        let server = crate::ServerConfig {
            database_schema: schema.clone(),
            pii: config.pii.clone(),
            ..crate::ServerConfig::default()
        };
        let state = AppState::builder(server, engine)
            .build()
            .await
            .map_err(|e| McpError::Handshake(e.to_string()))?;
        Ok(MemoryTools::new(
            state.service(),
            Tenancy::Fixed(Caller::local(schema)),
            config,
        ))
    }

    /// Tools that run in each request's authenticated tenant, under the gateway's policy.
    pub fn for_gateway(state: AppState, config: McpConfig) -> Self {
        MemoryTools::new(state.service(), Tenancy::PerRequest, config)
    }

    fn new(service: Service, tenancy: Tenancy, config: McpConfig) -> Self {
        MemoryTools {
            service,
            tenancy,
            tools: tool_table(&config).into(),
            config: Arc::new(config),
        }
    }

    /// The offered tools.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The caller of this call: fixed, or the one the tenant middleware attached to the HTTP
    /// request that carries it. Never cached: each request authenticates on its own.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, ApiError> {
        match &self.tenancy {
            Tenancy::Fixed(caller) => Ok(caller.clone()),
            Tenancy::PerRequest => context
                .extensions
                .get::<Parts>()
                .and_then(|parts| parts.extensions.get::<Caller>())
                .cloned()
                .ok_or_else(|| {
                    ApiError::Core(astrocyte_core::Error::Internal(
                        "an mcp request reached the tools without the tenant middleware".into(),
                    ))
                }),
        }
    }

    /// The requested bank, else the configured default.
    fn bank(&self, requested: Option<String>) -> Result<String, ApiError> {
        match requested.filter(|b| !b.trim().is_empty()) {
            Some(bank) => Ok(bank),
            None => self
                .config
                .default_bank
                .as_ref()
                .map(BankId::to_string)
                .ok_or_else(|| {
                    ApiError::BadRequest("bank_id is required (no default bank configured)".into())
                }),
        }
    }

    /// MCP's own ceiling on results (the service applies the server's on top).
    fn max_results(&self, requested: i64) -> Option<i64> {
        let ceiling = i64::try_from(self.config.max_results_limit).unwrap_or(i64::MAX);
        Some(requested.min(ceiling))
    }

    async fn dispatch(
        &self,
        name: &str,
        caller: &Caller,
        arguments: Value,
    ) -> Result<Value, ApiError> {
        let service = &self.service;
        match name {
            "memory_retain" => {
                let args: RetainArgs = parse(arguments)?;
                let command = Retain {
                    bank_id: self.bank(args.bank_id)?,
                    content: args.content,
                    tags: args.tags.unwrap_or_default(),
                    metadata: args.metadata.unwrap_or_default(),
                    occurred_at: optional_field_datetime("occurred_at", args.occurred_at)?,
                    content_type: args.content_type.unwrap_or_default().into(),
                    run_async: false,
                    idempotency_key: None,
                    thread_id: args.thread_id,
                };
                encode(RetainResponse::from(service.retain(caller, command).await?))
            }
            "memory_recall" => {
                let args: RecallArgs = parse(arguments)?;
                let banks = match args.banks {
                    Some(banks) if !banks.is_empty() => banks,
                    _ => vec![self.bank(args.bank_id)?],
                };
                let time_range = match args.time_range {
                    None => None,
                    Some(pair) => match pair.as_slice() {
                        [start, end] => Some((
                            field_datetime("time_range", start)?,
                            field_datetime("time_range", end)?,
                        )),
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "time_range needs exactly two datetimes, got {}",
                                other.len()
                            )))
                        }
                    },
                };
                let command = Recall {
                    query: args.query,
                    banks,
                    max_results: self.max_results(args.max_results),
                    max_tokens: args.max_tokens,
                    tags: args.tags,
                    time_range,
                    as_of: optional_field_datetime("as_of", args.as_of)?,
                };
                encode(RecallResponse::from(service.recall(caller, command).await?))
            }
            "memory_history" => {
                let args: HistoryArgs = parse(arguments)?;
                let command = History {
                    query: args.query,
                    bank_id: self.bank(args.bank_id)?,
                    as_of: field_datetime("as_of", &args.as_of)?,
                    max_results: self.max_results(args.max_results),
                    max_tokens: args.max_tokens,
                    tags: args.tags,
                };
                let (_, result) = service.history(caller, command).await?;
                encode(RecallResponse::from(result))
            }
            "memory_reflect" => {
                let args: ReflectArgs = parse(arguments)?;
                let command = Reflect {
                    query: args.query,
                    bank_id: self.bank(args.bank_id)?,
                    max_tokens: args.max_tokens,
                };
                let result = service.reflect(caller, command).await?;
                encode(ReflectResponse::new(result, args.include_sources))
            }
            "memory_forget" => {
                let args: ForgetArgs = parse(arguments)?;
                let all = match args.scope.as_deref() {
                    None => false,
                    Some("all") => true,
                    Some(other) => {
                        return Err(ApiError::BadRequest(format!(
                            "scope must be \"all\" when given, not {other:?}"
                        )))
                    }
                };
                let command = Forget {
                    bank_id: self.bank(args.bank_id)?,
                    memory_ids: args.memory_ids,
                    tags: args.tags,
                    before: optional_field_datetime("before_date", args.before_date)?,
                    all,
                };
                let deleted = service.forget(caller, command).await?;
                encode(ForgetResponse {
                    deleted_count: deleted,
                    archived_count: 0,
                })
            }
            "memory_list" => {
                let args: ListArgs = parse(arguments)?;
                let command = ListMemories {
                    bank_id: self.bank(args.bank_id)?,
                    limit: Some(args.limit.unwrap_or(20)),
                    cursor: args.cursor,
                    tags: args.tags,
                    text_contains: args.contains,
                    ..Default::default()
                };
                encode(MemoryPageResponse::from(
                    service.list_memories(caller, command).await?,
                ))
            }
            "memory_banks" => {
                let banks = service
                    .banks(caller, self.config.default_bank.as_ref())
                    .await?;
                Ok(json!({
                    "banks": banks,
                    "default": self.config.default_bank.as_ref().map(BankId::as_str),
                }))
            }
            "memory_job" => {
                let args: JobArgs = parse(arguments)?;
                encode(JobResponse::from(service.job(caller, &args.job_id).await?))
            }
            "memory_health" => {
                let health = service.health().await;
                Ok(json!({
                    "healthy": health.healthy,
                    "message": health.message,
                    "latency_ms": health.latency_ms,
                }))
            }
            other => Err(ApiError::NotFound(format!("unknown tool {other:?}"))),
        }
    }
}

/// Decodes tool arguments; unknown keys are ignored, as on REST.
fn parse<T: DeserializeOwned>(arguments: Value) -> Result<T, ApiError> {
    serde_json::from_value(arguments).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Encodes a result with REST's wire types, so both transports return the same fields.
fn encode<T: serde::Serialize>(value: T) -> Result<Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|e| ApiError::Core(astrocyte_core::Error::Internal(e.to_string())))
}

/// The tool result of a failure: `{"error": code}` with a `detail`, plus `pii_types` or
/// `retry_after_seconds` where they apply. Dependency and internal failures carry a fixed
/// detail; their cause is logged by [`ApiError::public_detail`].
fn error_body(error: ApiError) -> Value {
    let mut body = json!({
        "error": error.code().as_str(),
        "detail": error.public_detail(),
    });
    if let ApiError::PiiRejected(pii_types) = &error {
        body["pii_types"] = json!(pii_types);
    }
    if let Some(retry) = error.retry_after_seconds() {
        body["retry_after_seconds"] = json!(retry);
    }
    body
}

impl ServerHandler for MemoryTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        // A switched-off tool is as unknown as a misspelt one: a protocol error, per the spec.
        if !self.tools.iter().any(|tool| tool.name == name) {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            ));
        }
        let caller = match self.caller(&context) {
            Ok(caller) => caller,
            Err(error) => return Ok(CallToolResult::structured_error(error_body(error)).into()),
        };
        let span = tracing::info_span!("mcp_tool", tool = name, tenant = %caller.schema());
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let outcome = self
            .dispatch(name, &caller, arguments)
            .instrument(span)
            .await;
        let result = match outcome {
            // A retain that stored nothing for a reason (too long, refused) failed, though
            // it is not an error of the protocol: the agent must not read it as success. A
            // near-duplicate is already stored: that is a success.
            Ok(body)
                if name == "memory_retain"
                    && body["error"].is_string()
                    && body["deduplicated"] != true =>
            {
                CallToolResult::structured_error(body)
            }
            Ok(body) => CallToolResult::structured(body),
            Err(error) => CallToolResult::structured_error(error_body(error)),
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property_names(tool: &Tool) -> Vec<String> {
        tool.input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn switches_decide_which_tools_are_offered() {
        let names = |config: &McpConfig| -> Vec<String> {
            tool_table(config)
                .into_iter()
                .map(|t| t.name.to_string())
                .collect()
        };
        assert_eq!(
            names(&McpConfig::default()),
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
        let config = McpConfig {
            expose_reflect: false,
            expose_forget: true,
            ..McpConfig::default()
        };
        assert_eq!(
            names(&config),
            [
                "memory_retain",
                "memory_recall",
                "memory_history",
                "memory_list",
                "memory_forget",
                "memory_banks",
                "memory_job",
                "memory_health"
            ]
        );
    }

    #[test]
    fn required_arguments_are_the_references() {
        let config = McpConfig {
            expose_forget: true,
            ..McpConfig::default()
        };
        for tool in tool_table(&config) {
            let required: Vec<&str> = tool
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let expected: &[&str] = match tool.name.as_ref() {
                "memory_retain" => &["content"],
                "memory_recall" | "memory_reflect" => &["query"],
                "memory_history" => &["query", "as_of"],
                "memory_job" => &["job_id"],
                _ => &[],
            };
            assert_eq!(required, expected, "{}", tool.name);
            assert_eq!(
                tool.input_schema.get("type").and_then(Value::as_str),
                Some("object")
            );
            assert!(
                !property_names(&tool).is_empty() || expected.is_empty(),
                "{}",
                tool.name
            );
        }
    }

    #[test]
    fn failures_carry_a_kind_and_never_internal_details() {
        let internal = error_body(ApiError::Core(astrocyte_core::Error::Storage(
            "password=s3cret at db:5432".into(),
        )));
        assert_eq!(
            internal,
            json!({"error": "internal", "detail": "Internal server error"})
        );
        let unavailable = error_body(ApiError::Core(astrocyte_core::Error::Provider(
            "upstream 10.0.0.7 refused".into(),
        )));
        assert_eq!(
            unavailable,
            json!({"error": "unavailable", "detail": "Provider unavailable"})
        );
        let invalid = error_body(ApiError::Core(astrocyte_core::Error::invalid(
            "content is empty",
        )));
        assert_eq!(
            invalid,
            json!({"error": "invalid_input", "detail": "content is empty"})
        );
        let limited = error_body(ApiError::RateLimited {
            detail: "x".into(),
            retry_after_seconds: 0.2501,
        });
        assert_eq!(
            limited,
            json!({"error": "rate_limited", "detail": "x", "retry_after_seconds": 0.251})
        );
    }
}
