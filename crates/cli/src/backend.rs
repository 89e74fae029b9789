//! The composition root: turns the loaded settings into a concrete store, embedder and LLM.
//! This is the only place that names backend crates.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use astrocyte_core::{Embedder, Engine, Llm, Store};
use astrocyte_embed_local::{LocalEmbedder, LocalEmbedderOptions};
use astrocyte_providers::{HashingEmbedder, OpenAiChat, OpenAiEmbedder, OpenAiEmbedderConfig};
use astrocyte_settings::{EmbedderKind, Loaded};
use astrocyte_store_postgres::PostgresStore;
use astrocyte_store_sqlite::SqliteStore;

/// Opens the store the settings select: PostgreSQL with a database URL, else the embedded one.
/// A data directory the user named must exist (a typo should not silently start an empty
/// store); the default one is created.
pub async fn open_store(loaded: &Loaded) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &loaded.settings.database_url {
        return open_postgres(loaded, url.expose()).await;
    }
    let dir = &loaded.settings.data_dir;
    if loaded.is_set("data_dir") {
        if !dir.is_dir() {
            bail!(
                "data directory {} does not exist (create it, or leave {} unset to use {})",
                dir.display(),
                loaded.name_of("data_dir"),
                astrocyte_settings::default_data_dir().display()
            );
        }
    } else {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    open_sqlite(loaded, dir)
}

/// Opens the embedded store in an existing directory.
pub fn open_sqlite(loaded: &Loaded, dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open(dir, loaded.sqlite_options())
        .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Connects to PostgreSQL. Tenants are created explicitly (`astrocyte tenant create`) unless
/// `postgres.auto_create_tenants` is on, so a typo in a tenant name cannot create a schema.
pub async fn open_postgres(loaded: &Loaded, url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(connect_postgres(loaded, url).await?))
}

/// Connects to PostgreSQL, keeping the concrete type for PostgreSQL-only commands.
pub async fn connect_postgres(loaded: &Loaded, url: &str) -> anyhow::Result<PostgresStore> {
    PostgresStore::connect(url, loaded.postgres_options())
        .await
        .context("connecting to PostgreSQL")
}

/// Builds the configured embedder.
pub fn build_embedder(loaded: &Loaded) -> anyhow::Result<Arc<dyn Embedder>> {
    let settings = &loaded.settings;
    match settings.embedder {
        EmbedderKind::Local => {
            let options = LocalEmbedderOptions {
                // ONNX Runtime's own variable, read by its loader too.
                onnxruntime_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
                threads: settings.model_threads,
                query_threads: settings.model_query_threads,
                ..LocalEmbedderOptions::default()
            };
            Ok(Arc::new(LocalEmbedder::load(&settings.model_dir, options)?))
        }
        EmbedderKind::Hashing => Ok(Arc::new(HashingEmbedder::default())),
        EmbedderKind::Openai => {
            let (Some(url), Some(model), Some(dimension)) = (
                settings.embeddings_url.clone(),
                settings.embeddings_model.clone(),
                settings.embeddings_dimension,
            ) else {
                bail!("--embedder openai needs --embeddings-url, --embeddings-model and --embeddings-dimension (or ASTROCYTE_EMBEDDINGS_URL/_MODEL/_DIMENSION)");
            };
            let mut config = OpenAiEmbedderConfig::new(url, model, dimension);
            config.api_key = settings
                .embeddings_api_key
                .as_ref()
                .map(|k| k.expose().to_string());
            Ok(Arc::new(OpenAiEmbedder::new(config)?))
        }
    }
}

/// The embedder of `bench`: the configured one, or the hashing embedder at `hashing_dimension`
/// (which needs `embedder: hashing`), so large banks can be measured at a model's dimension.
pub fn bench_embedder(
    loaded: &Loaded,
    hashing_dimension: Option<usize>,
) -> anyhow::Result<Arc<dyn Embedder>> {
    match hashing_dimension {
        None => build_embedder(loaded),
        Some(dimension) if loaded.settings.embedder == EmbedderKind::Hashing && dimension > 0 => {
            Ok(Arc::new(HashingEmbedder::new(dimension)))
        }
        Some(0) => bail!("--hashing-dimension must be at least 1"),
        Some(_) => bail!("--hashing-dimension needs --embedder hashing"),
    }
}

/// The LLM reflect uses, when `llm.base_url` and `llm.model` name an OpenAI-compatible chat
/// API; without them reflect stays extractive.
pub fn build_llm(loaded: &Loaded) -> anyhow::Result<Option<Arc<dyn Llm>>> {
    match loaded.llm_config()? {
        Some(config) => Ok(Some(Arc::new(OpenAiChat::new(config)?))),
        None => Ok(None),
    }
}

/// Wraps a store and embedder into an engine tuned by the settings, with the LLM when one is
/// configured.
pub fn engine_with(
    loaded: &Loaded,
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
) -> anyhow::Result<Engine> {
    let engine = Engine::new(store, embedder, loaded.engine_config());
    Ok(match build_llm(loaded)? {
        Some(llm) => engine.with_llm(llm),
        None => engine,
    })
}

/// Store + embedder + engine, ready for a command.
pub async fn build_engine(loaded: &Loaded) -> anyhow::Result<Engine> {
    let store = open_store(loaded).await?;
    let embedder = build_embedder(loaded)?;
    engine_with(loaded, store, embedder)
}
