//! The composition root: turns configuration into a concrete store and embedder. This is the
//! only place that names backend crates.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use astrocyte_core::{Embedder, Engine, EngineConfig, Llm, Store};
use astrocyte_embed_local::{LocalEmbedder, LocalEmbedderOptions};
use astrocyte_providers::{
    HashingEmbedder, OpenAiChat, OpenAiChatConfig, OpenAiEmbedder, OpenAiEmbedderConfig,
};
use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};

use crate::args::{EmbedderKind, GlobalArgs};

/// The default data directory: `$XDG_DATA_HOME/astrocyte`, else `~/.local/share/astrocyte`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("astrocyte")
}

/// Opens the store the options select: PostgreSQL with a database URL, else the embedded one.
/// An explicit data directory must exist (a typo should not silently start an empty store);
/// the default one is created.
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &global.database_url {
        return open_postgres(url).await;
    }
    let dir = match &global.data_dir {
        Some(dir) => {
            if !dir.is_dir() {
                bail!(
                    "data directory {} does not exist (create it, or omit --data-dir to use {})",
                    dir.display(),
                    default_data_dir().display()
                );
            }
            dir.clone()
        }
        None => {
            let dir = default_data_dir();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
            dir
        }
    };
    open_sqlite(&dir)
}

/// Opens the embedded store in an existing directory.
pub fn open_sqlite(dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open(dir, SqliteOptions::default())
        .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Connects to PostgreSQL. Tenants are created explicitly (`astrocyte tenant create`) unless
/// `ASTROCYTE_AUTO_CREATE_TENANTS=1`, so a typo in a tenant name cannot create a schema.
pub async fn open_postgres(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(connect_postgres(url).await?))
}

/// Connects to PostgreSQL, keeping the concrete type for PostgreSQL-only commands.
pub async fn connect_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    let mut options = PostgresOptions {
        auto_create_tenants: std::env::var("ASTROCYTE_AUTO_CREATE_TENANTS")
            .is_ok_and(|v| v == "1" || v == "true"),
        ..PostgresOptions::default()
    };
    // Roles are cluster-wide: deployments sharing a cluster (or test runs) need distinct prefixes.
    if let Ok(prefix) = std::env::var("ASTROCYTE_ROLE_PREFIX") {
        options.role_prefix = prefix;
    }
    PostgresStore::connect(url, options)
        .await
        .context("connecting to PostgreSQL")
}

/// Builds the configured embedder.
pub fn build_embedder(global: &GlobalArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    match global.embedder {
        EmbedderKind::Local => {
            let options = LocalEmbedderOptions {
                onnxruntime_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
                ..LocalEmbedderOptions::default()
            };
            Ok(Arc::new(LocalEmbedder::load(&global.model_dir, options)?))
        }
        EmbedderKind::Hashing => Ok(Arc::new(HashingEmbedder::default())),
        EmbedderKind::Openai => {
            let (Some(url), Some(model), Some(dimension)) = (
                global.embeddings_url.clone(),
                global.embeddings_model.clone(),
                global.embeddings_dimension,
            ) else {
                bail!("--embedder openai needs --embeddings-url, --embeddings-model and --embeddings-dimension (or ASTROCYTE_EMBEDDINGS_URL/_MODEL/_DIMENSION)");
            };
            let mut config = OpenAiEmbedderConfig::new(url, model, dimension);
            config.api_key = std::env::var("ASTROCYTE_EMBEDDINGS_API_KEY").ok();
            Ok(Arc::new(OpenAiEmbedder::new(config)?))
        }
    }
}

/// The LLM reflect uses, when `ASTROCYTE_LLM_BASE_URL` and `ASTROCYTE_LLM_MODEL` name an
/// OpenAI-compatible chat API (`ASTROCYTE_LLM_API_KEY`, `ASTROCYTE_LLM_TIMEOUT_SECONDS`
/// optional); without them reflect stays extractive.
pub fn build_llm() -> anyhow::Result<Option<Arc<dyn Llm>>> {
    let (Ok(url), Ok(model)) = (
        std::env::var("ASTROCYTE_LLM_BASE_URL"),
        std::env::var("ASTROCYTE_LLM_MODEL"),
    ) else {
        return Ok(None);
    };
    let mut config = OpenAiChatConfig::new(url, model);
    config.api_key = std::env::var("ASTROCYTE_LLM_API_KEY").ok();
    if let Ok(raw) = std::env::var("ASTROCYTE_LLM_TIMEOUT_SECONDS") {
        let seconds: f64 = raw
            .parse()
            .with_context(|| format!("ASTROCYTE_LLM_TIMEOUT_SECONDS {raw:?} is not a number"))?;
        config.timeout = std::time::Duration::from_secs_f64(seconds);
    }
    if let Ok(raw) = std::env::var("ASTROCYTE_LLM_MAX_RETRIES") {
        config.max_retries = raw
            .parse()
            .with_context(|| format!("ASTROCYTE_LLM_MAX_RETRIES {raw:?} is not a whole number"))?;
    }
    Ok(Some(Arc::new(OpenAiChat::new(config)?)))
}

/// Wraps a store and embedder into an engine, with the LLM when one is configured.
pub fn engine_with(
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
    config: EngineConfig,
) -> anyhow::Result<Engine> {
    let engine = Engine::new(store, embedder, config);
    Ok(match build_llm()? {
        Some(llm) => engine.with_llm(llm),
        None => engine,
    })
}

/// Store + embedder + engine, ready for a command.
pub async fn build_engine(global: &GlobalArgs) -> anyhow::Result<Engine> {
    let store = open_store(global).await?;
    let embedder = build_embedder(global)?;
    engine_with(store, embedder, EngineConfig::default())
}
