//! `astrocyte serve`: the gateway plus this process's share of the background workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use astrocyte_core::EngineConfig;
use astrocyte_server::mcp::McpConfig;
use astrocyte_server::{ConfigOverrides, Gateway, ServerConfig};
use astrocyte_workers::{StoreTenants, WorkerConfig, WorkerPool};

use crate::args::{GlobalArgs, McpArgs, ServeArgs};
use crate::backend;

/// How long shutdown waits for the last spans to reach the OTLP collector.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let config_path = args.config.clone();
    let no_workers = args.no_workers;
    let config = ServerConfig::from_env_and_file(ConfigOverrides {
        config_path: args.config,
        host: args.host,
        port: args.port,
        grpc_port: args.grpc_port,
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
    })
    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let traces = astrocyte_server::otlp::TraceExport::from_config(&config)?;
    crate::init_tracing("info", traces.as_ref());
    if let Some(traces) = &traces {
        tracing::info!(
            endpoint = traces.endpoint(),
            "exporting traces over OTLP/HTTP"
        );
    }
    let served = serve(global, config, config_path, no_workers).await;
    // Last, so the spans of the final requests and jobs (or of a failed start) are sent.
    if let Some(traces) = traces {
        if let Err(error) = traces.shutdown(TRACE_FLUSH_TIMEOUT).await {
            tracing::warn!(%error, "some traces were not exported");
        }
    }
    served
}

/// Opens the store, starts the workers and serves until a shutdown signal.
async fn serve(
    global: &GlobalArgs,
    config: ServerConfig,
    config_path: Option<PathBuf>,
    no_workers: bool,
) -> anyhow::Result<()> {
    let store = match &config.database_url {
        Some(url) => {
            let store = backend::open_postgres(url.expose()).await?;
            // The configured default tenant must exist for unauthenticated single-tenant use.
            let default_schema = config.database_schema.clone();
            match store.create_tenant(&default_schema).await {
                Ok(()) | Err(astrocyte_core::Error::Conflict(_)) => {}
                Err(error) => return Err(error).context("creating the default tenant"),
            }
            store
        }
        None => {
            // Serving is the zero-configuration path: create the data directory on first run.
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating data directory {}", config.data_dir.display())
            })?;
            backend::open_sqlite(&config.data_dir)?
        }
    };
    let mut engine_config = EngineConfig::default();
    config.apply_to_engine_config(&mut engine_config);
    let engine = Arc::new(backend::engine_with(
        store.clone(),
        backend::build_embedder(global)?,
        engine_config,
    )?);

    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let workers = (!no_workers).then(|| {
        let pool = WorkerPool::new(
            engine.clone(),
            Arc::new(StoreTenants(store.clone())),
            WorkerConfig::default(),
        );
        tokio::spawn(pool.run(workers_stopped))
    });
    let mut mcp_config = McpConfig::from_env_and_file(config_path.as_deref())
        .map_err(|e| anyhow::anyhow!("invalid MCP configuration: {e}"))?;
    // One PII policy for both transports.
    mcp_config.pii = config.pii.clone();
    let served: anyhow::Result<()> = async {
        let gateway = Gateway::new(config, engine)
            .await?
            .with_mcp(mcp_config)
            .map_err(|e| anyhow::anyhow!("cannot serve MCP: {e}"))?;
        gateway
            .bind()
            .await?
            .run(astrocyte_server::shutdown_signal())
            .await?;
        Ok(())
    }
    .await;
    let _ = stop_workers.send(true);
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    served.context("the gateway stopped with an error")
}

/// `astrocyte mcp`: MCP over standard input/output for one fixed tenant.
pub async fn mcp(global: &GlobalArgs, args: McpArgs) -> anyhow::Result<()> {
    let schema = astrocyte_core::Schema::new(global.tenant.clone())
        .with_context(|| format!("invalid --tenant {:?}", global.tenant))?;
    let config = McpConfig::from_env_and_file(args.config.as_deref())
        .map_err(|e| anyhow::anyhow!("invalid MCP configuration: {e}"))?;
    let engine = Arc::new(backend::build_engine(global).await?);
    astrocyte_server::mcp::serve_stdio(engine, schema, config)
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio failed: {e}"))
}
