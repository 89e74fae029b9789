//! `astrocyte serve`: the gateway plus this process's share of the background workers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use astrocyte_server::mcp::McpConfig;
use astrocyte_server::{Gateway, ServerConfig};
use astrocyte_settings::Loaded;
use astrocyte_workers::{JobObserver, StoreTenants, WorkerPool};

use crate::backend;

/// How long shutdown waits for the last spans to reach the OTLP collector.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(loaded: &Loaded, no_workers: bool) -> anyhow::Result<()> {
    let config = loaded
        .server_config()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let mcp_config = loaded
        .mcp_config()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    // A port in use is found now, before the model loads (seconds), not after.
    for (setting, port) in [("port", Some(config.port)), ("grpc.port", config.grpc_port)] {
        let Some(port) = port.filter(|p| *p != 0) else {
            continue;
        };
        let address = astrocyte_server::ServerConfig {
            port,
            ..config.clone()
        }
        .bind_address();
        if let Err(error) = std::net::TcpListener::bind(&address) {
            anyhow::bail!(
                "cannot listen on {address} ({}): {error}",
                loaded.name_of(if setting == "port" {
                    "port"
                } else {
                    "grpc_port"
                })
            );
        }
    }
    let traces = astrocyte_server::otlp::TraceExport::from_config(&config)?;
    crate::init_tracing(loaded, "info", traces.as_ref());
    if let Some(traces) = &traces {
        tracing::info!(
            endpoint = traces.endpoint(),
            "exporting traces over OTLP/HTTP"
        );
    }
    let served = serve(loaded, config, mcp_config, no_workers).await;
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
    loaded: &Loaded,
    config: ServerConfig,
    mcp_config: McpConfig,
    no_workers: bool,
) -> anyhow::Result<()> {
    let store = match &config.database_url {
        Some(url) => {
            let store = backend::open_postgres(loaded, url.expose()).await?;
            // The configured default tenant must be ready for unauthenticated single-tenant use:
            // created now, or already there and usable; anything else stops start-up.
            let default_schema = config.database_schema.clone();
            match store.create_tenant(&default_schema).await {
                Ok(()) | Err(astrocyte_core::Error::Conflict(_)) => {}
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("the default tenant {default_schema} cannot be created")
                    })
                }
            }
            astrocyte_core::tenancy::use_schema(
                default_schema.clone(),
                store.tenant(&default_schema),
            )
            .await
            .with_context(|| format!("the default tenant {default_schema} is not usable"))?;
            store
        }
        None => {
            // Serving is the zero-configuration path: create the data directory on first run.
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating data directory {}", config.data_dir.display())
            })?;
            backend::open_sqlite(loaded, &config.data_dir)?
        }
    };
    let engine = Arc::new(backend::engine_with(
        loaded,
        store.clone(),
        backend::build_embedder(loaded)?,
    )?);

    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let workers = (!no_workers).then(|| {
        let pool = WorkerPool::new(
            engine.clone(),
            Arc::new(StoreTenants(store.clone())),
            loaded.worker_config(),
        )
        .with_observer(Arc::new(JobMetrics));
        tokio::spawn(pool.run(workers_stopped))
    });
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

/// `astrocyte mcp`: MCP over standard input/output for one fixed tenant, under the same
/// settings as `serve` (its PII barrier included).
pub async fn mcp(loaded: &Loaded, schema: astrocyte_core::Schema) -> anyhow::Result<()> {
    let config = loaded
        .mcp_config()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let engine = Arc::new(backend::build_engine(loaded).await?);
    astrocyte_server::mcp::serve_stdio(engine, schema, config)
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio failed: {e}"))
}

/// Feeds the workers' job outcomes and queue sizes to the server's `/metrics`.
struct JobMetrics;

impl JobObserver for JobMetrics {
    fn finished(&self, outcome: &'static str) {
        astrocyte_server::metrics::global().job_finished(outcome);
    }

    fn counted(&self, tenant: &astrocyte_core::Schema, counts: astrocyte_core::jobs::JobCounts) {
        astrocyte_server::metrics::global().job_counts(tenant.as_str(), Some(counts));
    }

    fn forgotten(&self, tenant: &astrocyte_core::Schema) {
        astrocyte_server::metrics::global().job_counts(tenant.as_str(), None);
    }

    fn polled(&self, _tenant: &astrocyte_core::Schema) {
        astrocyte_server::metrics::global().job_polled();
    }
}
