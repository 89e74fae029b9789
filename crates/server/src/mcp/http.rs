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
    Ok(Router::new().route_service(MCP_PATH, service))
}
