//! The MCP tool table (`memory_retain`, `memory_recall`, `memory_reflect`, `memory_forget`,
//! `memory_banks`, `memory_health`) and the handler that serves it on either transport. Each
//! tool calls the same [`Engine`] methods as the REST routes, with the same grants, limits and
//! PII barrier when it runs behind the gateway. Failures are tool results `{"error": kind}`;
//! internal details are logged, never returned. No retrieval logic lives here.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use astrocyte_core::tenancy::{self, Schema};
use astrocyte_core::{
    BankId, Engine, ErrorKind, ForgetMode, ForgetSelector, Metadata, RecallFilter, RecallHit,
    RecallRequest, ReflectRequest, RetainRequest,
};
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
use crate::access::Permission;
use crate::auth::Caller;
use crate::dto::{clamp_results, clamp_tokens, parse_datetime};
use crate::error::ApiError;
use crate::metrics;
use crate::policy::pii::PiiScanner;
use crate::policy::{Operation, QuotaTicket};
use crate::routes::memory::authorize;
use crate::state::AppState;

/// The server name clients see, as in the reference.
pub const SERVER_NAME: &str = "astrocyte-memory";

/// Bounds `memory_health` when the store does not answer, as `/health` does.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(8);

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
             Returns {hits: [{text, score, fact_type, bank_id, memory_id}], total_available, truncated}; \
             score is in [0, 1], higher is better.",
            input_schema::<RecallArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    ];
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
            "memory_health",
            "Check memory system health. Returns {healthy, message, latency_ms}.",
            input_schema::<NoArgs>(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    );
    tools
}

/// Where a call's tenant comes from.
#[derive(Clone)]
enum Tenancy {
    /// One tenant for the whole connection, fixed by the composition root (stdio: the local
    /// user owns the process and its data).
    Fixed(Schema),
    /// The authenticated caller of each HTTP request, with the gateway's policy.
    Gateway(AppState),
}

/// One tool call's tenant and, behind the gateway, its caller.
struct Call {
    schema: Schema,
    caller: Option<Caller>,
}

/// The MCP server handler: the tool table over an engine. Cheap to clone; over HTTP one is
/// made per request.
#[derive(Clone)]
pub struct MemoryTools {
    engine: Arc<Engine>,
    tenancy: Tenancy,
    config: Arc<McpConfig>,
    tools: Arc<[Tool]>,
    /// The barrier of stdio; behind the gateway its policy's barrier is used instead.
    pii: Arc<PiiScanner>,
}

impl MemoryTools {
    /// Tools that always run in `schema` (stdio).
    pub fn for_tenant(engine: Arc<Engine>, schema: Schema, config: McpConfig) -> Self {
        MemoryTools::new(engine, Tenancy::Fixed(schema), config)
    }

    /// Tools that run in each request's authenticated tenant, under the gateway's policy.
    pub fn for_gateway(state: AppState, config: McpConfig) -> Self {
        MemoryTools::new(state.engine().clone(), Tenancy::Gateway(state), config)
    }

    fn new(engine: Arc<Engine>, tenancy: Tenancy, config: McpConfig) -> Self {
        let tools: Arc<[Tool]> = tool_table(&config).into();
        let pii = Arc::new(PiiScanner::new(
            config.pii.mode,
            config.pii.action,
            config.pii.type_overrides.clone(),
        ));
        MemoryTools {
            engine,
            tenancy,
            config: Arc::new(config),
            tools,
            pii,
        }
    }

    /// The offered tools.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The tenant of this call: fixed, or the `Caller` the tenant middleware attached to the
    /// HTTP request that carries it. Never cached: each request authenticates on its own.
    fn call(&self, context: &RequestContext<RoleServer>) -> Result<Call, ApiError> {
        match &self.tenancy {
            Tenancy::Fixed(schema) => Ok(Call {
                schema: schema.clone(),
                caller: None,
            }),
            Tenancy::Gateway(_) => {
                let caller = context
                    .extensions
                    .get::<Parts>()
                    .and_then(|parts| parts.extensions.get::<Caller>())
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::Core(astrocyte_core::Error::Internal(
                            "an mcp request reached the tools without the tenant middleware".into(),
                        ))
                    })?;
                Ok(Call {
                    schema: caller.schema().clone(),
                    caller: Some(caller),
                })
            }
        }
    }

    fn gateway(&self) -> Option<&AppState> {
        match &self.tenancy {
            Tenancy::Gateway(state) => Some(state),
            Tenancy::Fixed(_) => None,
        }
    }

    /// The requested bank, else the default; checked against the caller's grants.
    fn bank(
        &self,
        call: &Call,
        requested: Option<&str>,
        permission: Permission,
    ) -> Result<BankId, ApiError> {
        let raw = match requested.map(str::trim).filter(|b| !b.is_empty()) {
            Some(bank) => bank.to_string(),
            None => match &self.config.default_bank {
                Some(bank) => bank.to_string(),
                None => {
                    return Err(ApiError::BadRequest(
                        "bank_id is required (no default bank configured)".into(),
                    ))
                }
            },
        };
        match (self.gateway(), &call.caller) {
            (Some(state), Some(caller)) => authorize(state, caller, &raw, permission),
            _ => Ok(BankId::new(raw)?),
        }
    }

    fn admit(
        &self,
        call: &Call,
        bank: &BankId,
        operation: Operation,
    ) -> Result<Option<QuotaTicket>, ApiError> {
        match self.gateway() {
            Some(state) => Ok(Some(state.policy().admit_bank(
                &call.schema,
                bank.as_str(),
                operation,
            )?)),
            None => Ok(None),
        }
    }

    fn refund(&self, ticket: Option<QuotaTicket>) {
        if let (Some(state), Some(ticket)) = (self.gateway(), ticket) {
            state.policy().refund(ticket);
        }
    }

    fn max_results(&self, requested: i64) -> usize {
        let ceiling = self
            .config
            .max_results_limit
            .min(self.engine.config().max_result_limit);
        clamp_results(Some(requested), 10, ceiling)
    }

    async fn retain(&self, call: &Call, args: RetainArgs) -> Result<Value, ApiError> {
        let bank = self.bank(call, args.bank_id.as_deref(), Permission::Write)?;
        let occurred_at = args
            .occurred_at
            .as_deref()
            .filter(|raw| !raw.trim().is_empty())
            .map(parse_datetime)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("occurred_at: {e}")))?;
        let ticket = self.admit(call, &bank, Operation::Retain)?;
        let scanner = match self.gateway() {
            Some(state) => state.policy().pii(),
            None => &self.pii,
        };
        let content = match scanner.apply(&args.content) {
            Ok(verdict) => {
                if !verdict.found.is_empty() {
                    tracing::warn!(pii_types = ?verdict.found, bank = %bank, "pii detected in retained content");
                }
                verdict.text
            }
            Err(rejected) => {
                self.refund(ticket);
                return Err(ApiError::PiiRejected(rejected.pii_types));
            }
        };
        let request = RetainRequest {
            bank_id: bank.to_string(),
            content,
            tags: args.tags.unwrap_or_default(),
            metadata: args.metadata.unwrap_or_default(),
            occurred_at,
            ..Default::default()
        };
        let outcome = match timed(
            "retain",
            &call.schema,
            self.engine.retain(&call.schema, request),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                self.refund(ticket);
                return Err(error);
            }
        };
        if !outcome.stored {
            self.refund(ticket);
        }
        if let Some(reason) = outcome.error {
            return Err(ApiError::BadRequest(reason));
        }
        Ok(json!({
            "stored": outcome.stored,
            "memory_id": outcome.memory_id,
            "deduplicated": outcome.deduplicated,
        }))
    }

    async fn recall(&self, call: &Call, args: RecallArgs) -> Result<Value, ApiError> {
        let requested: Vec<Option<String>> = match args.banks {
            Some(banks) if !banks.is_empty() => banks.into_iter().map(Some).collect(),
            _ => vec![args.bank_id],
        };
        let mut banks = Vec::with_capacity(requested.len());
        for bank_id in &requested {
            let bank = self.bank(call, bank_id.as_deref(), Permission::Read)?;
            // Recall has rate limits but no quota: nothing to refund.
            let _no_quota = self.admit(call, &bank, Operation::Recall)?;
            banks.push(bank.to_string());
        }
        let request = RecallRequest {
            query: args.query,
            banks,
            max_results: Some(self.max_results(args.max_results)),
            max_tokens: None,
            filter: RecallFilter {
                tags: args.tags,
                ..Default::default()
            },
        };
        let result = timed(
            "recall",
            &call.schema,
            self.engine.recall(&call.schema, request),
        )
        .await?;
        Ok(json!({
            "hits": result.hits.iter().map(hit_json).collect::<Vec<_>>(),
            "total_available": result.total_available,
            "truncated": result.truncated,
        }))
    }

    async fn reflect(&self, call: &Call, args: ReflectArgs) -> Result<Value, ApiError> {
        let bank = self.bank(call, args.bank_id.as_deref(), Permission::Read)?;
        let ticket = self.admit(call, &bank, Operation::Reflect)?;
        let request = ReflectRequest {
            query: args.query,
            bank_id: bank.to_string(),
            max_tokens: clamp_tokens(args.max_tokens),
        };
        let result = match timed(
            "reflect",
            &call.schema,
            self.engine.reflect(&call.schema, request),
        )
        .await
        {
            Ok(result) => result,
            Err(error) => {
                self.refund(ticket);
                return Err(error);
            }
        };
        let mut body = json!({ "answer": result.answer });
        if args.include_sources {
            body["sources"] = result.sources.iter().map(hit_json).collect();
        }
        Ok(body)
    }

    async fn forget(&self, call: &Call, args: ForgetArgs) -> Result<Value, ApiError> {
        let bank = self.bank(call, args.bank_id.as_deref(), Permission::Forget)?;
        let selector = ForgetSelector {
            memory_ids: args.memory_ids,
            tags: args.tags,
            before: None,
            all: false,
        };
        let deleted = timed(
            "forget",
            &call.schema,
            self.engine
                .forget(&call.schema, bank.as_str(), &selector, ForgetMode::Soft),
        )
        .await?;
        Ok(json!({ "deleted_count": deleted }))
    }

    async fn banks(&self, call: &Call) -> Result<Value, ApiError> {
        let stored = timed("banks", &call.schema, self.engine.list_banks(&call.schema)).await?;
        let mut banks: Vec<String> = Vec::with_capacity(stored.len() + 1);
        if let Some(default) = &self.config.default_bank {
            banks.push(default.to_string());
        }
        for bank in stored {
            if !banks.iter().any(|b| b == bank.as_str()) {
                banks.push(bank.to_string());
            }
        }
        // Only banks the caller may read: the list itself would otherwise leak names.
        if let (Some(state), Some(caller)) = (self.gateway(), &call.caller) {
            banks.retain(|bank| {
                state
                    .access()
                    .check(
                        caller.schema(),
                        caller.principal.as_deref(),
                        bank,
                        Permission::Read,
                    )
                    .is_ok()
            });
        }
        Ok(json!({
            "banks": banks,
            "default": self.config.default_bank.as_ref().map(BankId::as_str),
        }))
    }

    async fn health(&self) -> Value {
        let started = Instant::now();
        let store = self.engine.store();
        let checked = tokio::time::timeout(HEALTH_TIMEOUT, store.health()).await;
        let latency_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
        let backend = store.backend();
        let (healthy, message) = match checked {
            Ok(Ok(())) => (true, format!("{backend} store reachable")),
            Ok(Err(error)) => {
                tracing::warn!(%error, "mcp health check failed");
                metrics::global().store_error("health");
                (false, format!("{backend} store unavailable"))
            }
            Err(_) => (false, format!("{backend} store did not answer in time")),
        };
        json!({ "healthy": healthy, "message": message, "latency_ms": latency_ms })
    }

    async fn dispatch(&self, name: &str, call: &Call, arguments: Value) -> Result<Value, ApiError> {
        match name {
            "memory_retain" => self.retain(call, parse(arguments)?).await,
            "memory_recall" => self.recall(call, parse(arguments)?).await,
            "memory_reflect" => self.reflect(call, parse(arguments)?).await,
            "memory_forget" => self.forget(call, parse(arguments)?).await,
            "memory_banks" => self.banks(call).await,
            "memory_health" => Ok(self.health().await),
            other => Err(ApiError::NotFound(format!("unknown tool {other:?}"))),
        }
    }
}

/// Decodes tool arguments; unknown keys are ignored, as on REST.
fn parse<T: DeserializeOwned>(arguments: Value) -> Result<T, ApiError> {
    serde_json::from_value(arguments).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The reference's MCP hit: fewer fields than REST's `MemoryHit`, score rounded to 4 places.
fn hit_json(hit: &RecallHit) -> Value {
    json!({
        "text": hit.memory.text,
        "score": (f64::from(hit.score) * 10_000.0).round() / 10_000.0,
        "fact_type": hit.memory.fact_type,
        "bank_id": hit.memory.bank_id.as_str(),
        "memory_id": hit.memory.id,
    })
}

/// Runs an engine call, recording its latency and outcome for the tenant as REST does.
async fn timed<T>(
    operation: &str,
    schema: &Schema,
    call: impl Future<Output = astrocyte_core::Result<T>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let result = call.await;
    metrics::global().operation(
        operation,
        schema.as_str(),
        result.is_ok(),
        started.elapsed(),
    );
    Ok(result?)
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

/// The tool result of a failure: `{"error": kind}`, with a `detail` only when the caller can
/// act on it. Dependency and internal failures are logged here, once.
fn error_body(tool: &str, error: ApiError) -> Value {
    match error {
        ApiError::Core(error) => {
            let kind = error.kind();
            match kind {
                ErrorKind::InvalidInput
                | ErrorKind::NotFound
                | ErrorKind::Conflict
                | ErrorKind::Forbidden
                | ErrorKind::Unsupported => {
                    json!({ "error": kind_name(kind), "detail": error.to_string() })
                }
                ErrorKind::Unavailable => {
                    tracing::warn!(tool, %error, "mcp tool: provider unavailable");
                    metrics::global().store_error("unavailable");
                    json!({ "error": kind_name(kind) })
                }
                ErrorKind::Internal => {
                    tracing::error!(tool, %error, "mcp tool: internal error");
                    metrics::global().store_error("internal");
                    json!({ "error": kind_name(kind) })
                }
            }
        }
        ApiError::BadRequest(detail) => json!({ "error": "invalid_input", "detail": detail }),
        ApiError::PayloadTooLarge => {
            json!({ "error": "invalid_input", "detail": "content too large" })
        }
        ApiError::AuthenticationFailed | ApiError::Unauthorized(_) => {
            json!({ "error": "unauthenticated" })
        }
        ApiError::Forbidden(detail) => json!({ "error": "forbidden", "detail": detail }),
        ApiError::NotFound(detail) => json!({ "error": "not_found", "detail": detail }),
        ApiError::PiiRejected(pii_types) => {
            json!({ "error": "pii_rejected", "pii_types": pii_types })
        }
        ApiError::RateLimited {
            retry_after_seconds,
            ..
        } => json!({
            "error": "rate_limited",
            "retry_after_seconds": (retry_after_seconds * 1000.0).ceil() / 1000.0,
        }),
        ApiError::Unavailable(detail) => {
            tracing::warn!(tool, %detail, "mcp tool: unavailable");
            json!({ "error": "unavailable" })
        }
    }
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
        let call = match self.call(&context) {
            Ok(call) => call,
            Err(error) => {
                return Ok(CallToolResult::structured_error(error_body(name, error)).into())
            }
        };
        let span = tracing::info_span!("mcp_tool", tool = name, tenant = %call.schema);
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        // The HTTP transport runs handlers on their own task, so the middleware's binding does
        // not reach here: bind the call's tenant for its whole duration.
        let outcome =
            tenancy::use_schema(call.schema.clone(), self.dispatch(name, &call, arguments))
                .instrument(span)
                .await;
        let result = match outcome {
            Ok(body) => CallToolResult::structured(body),
            Err(error) => CallToolResult::structured_error(error_body(name, error)),
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
                "memory_reflect",
                "memory_banks",
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
                "memory_forget",
                "memory_banks",
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
        let internal = error_body(
            "memory_recall",
            ApiError::Core(astrocyte_core::Error::Storage(
                "password=s3cret at db:5432".into(),
            )),
        );
        assert_eq!(internal, json!({"error": "internal"}));
        let unavailable = error_body(
            "memory_reflect",
            ApiError::Core(astrocyte_core::Error::Provider(
                "upstream 10.0.0.7 refused".into(),
            )),
        );
        assert_eq!(unavailable, json!({"error": "unavailable"}));
        let invalid = error_body(
            "memory_retain",
            ApiError::Core(astrocyte_core::Error::invalid("content is empty")),
        );
        assert_eq!(
            invalid,
            json!({"error": "invalid_input", "detail": "content is empty"})
        );
        let limited = error_body(
            "memory_retain",
            ApiError::RateLimited {
                detail: "x".into(),
                retry_after_seconds: 0.2501,
            },
        );
        assert_eq!(
            limited,
            json!({"error": "rate_limited", "retry_after_seconds": 0.251})
        );
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Forbidden,
            ErrorKind::Unsupported,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            assert!(kind_name(kind)
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
