//! The reference's MCP tools (server name `astrocyte-memory`) over the official Rust SDK: on
//! stdio for one tenant fixed by the composition root ([`serve_stdio`]), and over streamable
//! HTTP at `/mcp` inside the gateway ([`router`]), where every request authenticates through
//! the tenant middleware. Building engines and choosing the tenant of a stdio process is the
//! CLI's job, not this module's.
//!
//! ```no_run
//! # async fn run(engine: std::sync::Arc<astrocyte_core::Engine>) -> Result<(), Box<dyn std::error::Error>> {
//! use astrocyte_core::tenancy::Schema;
//! use astrocyte_server::mcp::{serve_stdio, McpConfig};
//! let config = McpConfig::default();
//! serve_stdio(engine, Schema::new("tenant_acme")?, config).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
mod http;
mod stdio;
mod tools;

use std::sync::Arc;

use astrocyte_core::tenancy::{self, Schema};
use astrocyte_core::Engine;
use rmcp::ServiceExt;
use tracing::Instrument;

pub use config::{AllowList, McpConfig, DEFAULT_MAX_RESULTS_LIMIT};
pub use http::{router, MCP_PATH};
pub use tools::{tool_table, MemoryTools, SERVER_NAME};

/// Why MCP could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// Bad MCP configuration; the message names the setting.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Nothing would authenticate MCP callers on a public address.
    #[error(
        "mcp would be anonymous (default tenant extension, dev auth) on the non-loopback address {host:?}; \
         configure tenant or principal authentication, bind to 127.0.0.1, \
         or set ASTROCYTE_MCP_ALLOW_ANONYMOUS=1 behind a trusted proxy"
    )]
    AnonymousOnPublicBind {
        /// The configured bind host.
        host: String,
    },
    /// The client went away or spoke something else before the MCP handshake completed.
    #[error("mcp handshake failed: {0}")]
    Handshake(String),
    /// The MCP service task failed.
    #[error("mcp service failed: {0}")]
    Service(#[from] tokio::task::JoinError),
}

/// Serves the MCP tools on stdin/stdout until the client closes stdin, every call running in
/// `schema`. Stdout carries the protocol: logs must go to stderr (see [`init_stdio_tracing`]).
///
/// There is no principal on stdio, so per-bank grants, rate limits and quotas (gateway policy)
/// do not apply: whoever runs the process owns the tenant's data. The PII barrier of
/// `config.pii` does.
pub async fn serve_stdio(
    engine: Arc<Engine>,
    schema: Schema,
    config: McpConfig,
) -> Result<(), McpError> {
    // Every tool call binds its tenant; storage reached with none bound is a bug.
    tenancy::enable_strict_mode();
    let span = tracing::info_span!("mcp_stdio", tenant = %schema);
    async move {
        let (transport, written) = stdio::checked(tokio::io::stdin(), tokio::io::stdout());
        let running = MemoryTools::for_tenant(engine, schema, config)
            .await?
            .serve(transport)
            .await
            .map_err(|e| McpError::Handshake(e.to_string()))?;
        tracing::info!("mcp session started on stdio");
        let reason = running.waiting().await?;
        // Every reply reaches stdout before the process may exit.
        let _ = written.await;
        tracing::info!(?reason, "mcp session ended");
        Ok(())
    }
    .instrument(span)
    .await
}

/// Installs a plain-text log subscriber on stderr with `filter` (an env-filter directive such
/// as `info`): over stdio, anything written to stdout would corrupt the protocol.
pub fn init_stdio_tracing(filter: &str) {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}
