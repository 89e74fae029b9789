//! Serves the MCP tools on stdio over a SQLite store in a directory, with the hashing embedder:
//! the child process of the stdio integration test, and a way to try an MCP client without
//! the CLI (which loads every setting; this example takes a default bank and offers every tool).
//! Logs go to stderr.
//!
//! `cargo run -p astrocyte-server --example mcp_stdio -- DATA_DIR [TENANT [DEFAULT_BANK]]`
//! (tenant defaults to `public`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use astrocyte_core::tenancy::Schema;
use astrocyte_core::{Engine, EngineConfig};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::mcp::{init_stdio_tracing, serve_stdio, McpConfig};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let data_dir = args
        .next()
        .map(PathBuf::from)
        .ok_or("usage: mcp_stdio DATA_DIR [TENANT [DEFAULT_BANK]]")?;
    let schema = Schema::new(args.next().unwrap_or_else(|| "public".into()))
        .map_err(|e| format!("tenant: {e}"))?;
    let default_bank = args
        .next()
        .map(astrocyte_core::BankId::new)
        .transpose()
        .map_err(|e| format!("default bank: {e}"))?;
    let config = McpConfig {
        default_bank,
        expose_forget: true,
        ..McpConfig::default()
    };
    let store = SqliteStore::open(&data_dir, SqliteOptions::default())
        .map_err(|e| format!("cannot open {}: {e}", data_dir.display()))?;
    let engine = Arc::new(Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ));
    serve_stdio(engine, schema, config)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_stdio_tracing(&std::env::var("ASTROCYTE_LOG_LEVEL").unwrap_or_else(|_| "warn".into()));
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcp_stdio: {message}");
            ExitCode::FAILURE
        }
    }
}
