//! `astrocyte serve`: the gateway plus this process's share of the background workers.

use std::sync::Arc;

use anyhow::Context;
use astrocyte_core::{Engine, EngineConfig};
use astrocyte_server::{ConfigOverrides, ServerConfig};
use astrocyte_workers::{StoreTenants, WorkerConfig, WorkerPool};

use crate::args::{GlobalArgs, ServeArgs};
use crate::backend;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_env_and_file(ConfigOverrides {
        config_path: args.config,
        host: args.host,
        port: args.port,
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
    })
    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let store = match &config.database_url {
        Some(url) => backend::open_postgres(url.expose()).await?,
        None => {
            // Serving is the zero-configuration path: create the data directory on first run.
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
            backend::open_sqlite(&config.data_dir)?
        }
    };
    let mut engine_config = EngineConfig::default();
    config.apply_to_engine_config(&mut engine_config);
    let engine = Arc::new(Engine::new(store.clone(), backend::build_embedder(global)?, engine_config));

    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let workers = (!args.no_workers).then(|| {
        let pool = WorkerPool::new(engine.clone(), Arc::new(StoreTenants(store.clone())), WorkerConfig::default());
        tokio::spawn(pool.run(workers_stopped))
    });
    let served = astrocyte_server::serve(config, engine, astrocyte_server::shutdown_signal()).await;
    let _ = stop_workers.send(true);
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    served.context("the gateway stopped with an error")
}
