//! MCP over streamable HTTP at `/mcp`, merged into the gateway behind the same tenant
//! middleware as REST. The transport is stateless: no MCP session is kept, so each request's
//! tools run in the tenant its own credential authenticates. Host and Origin checks are the
//! SDK's, configured from [`McpConfig`]; this module does no authentication of its own.

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::config::{AllowList, McpConfig};
use super::tools::MemoryTools;
use super::McpError;
use crate::config::{is_loopback_host, AuthMode};
use crate::state::AppState;

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// Whether neither the tenant nor the principal of a request is authenticated.
fn is_anonymous(state: &AppState) -> bool {
    !state.tenants_authenticated() && state.config().auth_mode == AuthMode::Dev
}

/// The `/mcp` routes for the gateway over `state`, to pass to
/// [`Gateway::merge`](crate::Gateway::merge).
///
/// Refuses anonymous MCP (the default tenant extension with dev auth) on a non-loopback bind
/// unless `config.allow_anonymous` says so.
pub fn router(state: &AppState, config: McpConfig) -> Result<Router<AppState>, McpError> {
    let server = state.config();
    let public = !is_loopback_host(&server.host);
    if public && is_anonymous(state) && !config.allow_anonymous {
        return Err(McpError::AnonymousOnPublicBind {
            host: server.host.clone(),
        });
    }
    if public && config.allowed_hosts == McpConfig::default().allowed_hosts {
        tracing::warn!(
            host = %server.host,
            "mcp accepts only loopback Host headers; set ASTROCYTE_MCP_ALLOWED_HOSTS to the names clients use"
        );
    }

    let mut http = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(server.max_request_body_bytes.unwrap_or(usize::MAX));
    http = match &config.allowed_hosts {
        AllowList::Any => http.disable_allowed_hosts(),
        AllowList::Only(hosts) => http.with_allowed_hosts(hosts.clone()),
    };
    http = match &config.allowed_origins {
        AllowList::Any => http.disable_allowed_origins(),
        // Enforced even when empty: then any request carrying an Origin is refused.
        AllowList::Only(origins) => http
            .with_allowed_origins(origins.clone())
            .enforce_origin_validation(),
    };

    let tools = MemoryTools::for_gateway(state.clone(), config);
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        http,
    );
    Ok(Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(jsonrpc_refusals)))
}

/// Answers a POST the SDK would refuse as a transport failure (a 415 with a line of text)
/// with the JSON-RPC error the protocol defines, status 400: -32700 when the body is not
/// JSON, -32600 when it is not one JSON-RPC 2.0 message, -32602 when a `tools/call` or
/// `initialize` cannot be read.
async fn jsonrpc_refusals(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // Anything but a JSON POST is the SDK's to refuse (405, 415).
    if request.method() != axum::http::Method::POST || !json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The gateway's body cap has already bounded this body.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return crate::error::ApiError::PayloadTooLarge.into_response(),
    };
    if let Some(error) = jsonrpc_refusal(&bytes) {
        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

/// The JSON-RPC error for a message that cannot be served, or `None` to serve it.
pub(crate) fn jsonrpc_refusal(bytes: &[u8]) -> Option<serde_json::Value> {
    use serde_json::{json, Value};
    let error = |id: Value, code: i64, message: String| {
        Some(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
    };
    let is_id = |id: &Value| id.is_string() || id.is_i64() || id.is_u64();
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => return error(Value::Null, -32700, format!("Parse error: {e}")),
    };
    let Value::Object(message) = &value else {
        return error(
            Value::Null,
            -32600,
            "Invalid Request: one JSON-RPC 2.0 object is expected (batches are not supported)"
                .into(),
        );
    };
    let id = message.get("id").filter(|id| is_id(id)).cloned();
    let invalid = |why: &str| {
        error(
            id.clone().unwrap_or(Value::Null),
            -32600,
            format!("Invalid Request: {why}"),
        )
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("jsonrpc must be \"2.0\"");
    }
    if message.get("id").is_some() && id.is_none() {
        return invalid("id must be a string or an integer");
    }
    let method = match message.get("method") {
        Some(Value::String(method)) => method.as_str(),
        Some(_) => return invalid("method must be a string"),
        // A response from the client (to a request of ours): the SDK's to judge.
        None if message.contains_key("result") || message.contains_key("error") => return None,
        None => return invalid("a request needs a method"),
    };
    let params = message.get("params");
    let object = |key: &str| {
        params
            .and_then(Value::as_object)
            .and_then(|p| p.get(key))
            .is_some_and(Value::is_object)
    };
    let text = |key: &str| {
        params
            .and_then(Value::as_object)
            .and_then(|p| p.get(key))
            .is_some_and(Value::is_string)
    };
    let readable = match method {
        "tools/call" => {
            text("name")
                && params
                    .and_then(|p| p.get("arguments"))
                    .is_none_or(|a| a.is_object() || a.is_null())
        }
        "initialize" => text("protocolVersion") && object("capabilities") && object("clientInfo"),
        _ => params.is_none_or(|p| p.is_object() || p.is_null()),
    };
    if readable {
        None
    } else {
        error(
            id.unwrap_or(Value::Null),
            -32602,
            format!("Invalid params for {method}"),
        )
    }
}
