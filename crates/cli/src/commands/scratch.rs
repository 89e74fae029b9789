//! A throw-away tenant on the selected store, for `eval` and `bench`: a tenant created (and
//! dropped after) on `--database-url`'s PostgreSQL, else the embedded store in a temporary
//! directory; or one the caller keeps, on either.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use astrocyte_core::{Schema, Store};
use astrocyte_settings::Loaded;

use crate::backend;

/// A tenant that exists for one run.
pub struct ScratchStore {
    store: Arc<dyn Store>,
    schema: Schema,
    /// The embedded store's directory; `None` on PostgreSQL.
    dir: Option<ScratchDir>,
    /// Left in place after the run (never dropped).
    kept: bool,
}

enum ScratchDir {
    /// Deleted when the scratch store is dropped.
    Temporary(tempfile::TempDir),
    /// Left in place for a later run.
    Kept(PathBuf),
}

impl ScratchDir {
    fn path(&self) -> &Path {
        match self {
            ScratchDir::Temporary(dir) => dir.path(),
            ScratchDir::Kept(path) => path,
        }
    }
}

impl ScratchStore {
    /// Creates the tenant `<label>_<random>` on PostgreSQL, or `<label>` in a temporary
    /// embedded store.
    pub async fn open(loaded: &Loaded, label: &str) -> anyhow::Result<Self> {
        match &loaded.settings.database_url {
            Some(url) => {
                let store = backend::open_postgres(loaded, url.expose()).await?;
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                let schema = Schema::new(format!("{label}_{}", &suffix[..12]))?;
                store
                    .create_tenant(&schema)
                    .await
                    .with_context(|| format!("creating the throw-away tenant {schema}"))?;
                Ok(ScratchStore {
                    store,
                    schema,
                    dir: None,
                    kept: false,
                })
            }
            None => {
                let dir = tempfile::tempdir().context("creating a scratch data directory")?;
                let store = backend::open_sqlite(loaded, dir.path())?;
                Ok(ScratchStore {
                    store,
                    schema: Schema::new(label)?,
                    dir: Some(ScratchDir::Temporary(dir)),
                    kept: false,
                })
            }
        }
    }

    /// The embedded store in `dir` (created when missing), tenant `label`, kept after the run.
    pub fn open_kept(loaded: &Loaded, label: &str, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScratchStore {
            store: backend::open_sqlite(loaded, dir)?,
            schema: Schema::new(label)?,
            dir: Some(ScratchDir::Kept(dir.to_path_buf())),
            kept: true,
        })
    }

    /// The tenant `name` on `--database-url`'s PostgreSQL, kept after the run: created when
    /// `create`, else it must exist already.
    pub async fn open_kept_postgres(
        loaded: &Loaded,
        url: &str,
        name: &str,
        create: bool,
    ) -> anyhow::Result<Self> {
        let store = backend::open_postgres(loaded, url).await?;
        let schema = Schema::new(name)?;
        if create {
            store
                .create_tenant(&schema)
                .await
                .with_context(|| format!("creating the kept tenant {schema}"))?;
        } else if store.existing_tenant(&schema).await?.is_none() {
            anyhow::bail!("the kept tenant {schema} does not exist on this server");
        }
        Ok(ScratchStore {
            store,
            schema,
            dir: None,
            kept: true,
        })
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The throw-away tenant.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Closes the embedded store and opens it again over the same directory, as a restart
    /// would; returns how long closing took (it saves vector index snapshots), or `None` on
    /// PostgreSQL, where there is nothing to reopen. Handles to the old store must be gone.
    pub fn reopen(&mut self, loaded: &Loaded) -> anyhow::Result<Option<std::time::Duration>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        // Opening touches no tenant file, so the old store can close after it.
        let reopened = backend::open_sqlite(loaded, dir.path())?;
        let closing = std::time::Instant::now();
        drop(std::mem::replace(&mut self.store, reopened));
        Ok(Some(closing.elapsed()))
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Drops the tenant (its schema and role on PostgreSQL, a temporary directory otherwise);
    /// a kept one stays.
    pub async fn drop(self) -> anyhow::Result<()> {
        if !self.kept && self.dir.is_none() {
            self.store
                .drop_tenant(&self.schema)
                .await
                .with_context(|| format!("dropping the throw-away tenant {}", self.schema))?;
        }
        Ok(())
    }
}
