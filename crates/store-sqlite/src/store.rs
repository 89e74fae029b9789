//! [`SqliteStore`]: the tenant registry over a data directory, one database file per tenant,
//! opened lazily and cached, plus the API-key directory file. It creates, drops and lists
//! tenant files; everything inside a tenant lives in `inner.rs` and the modules above it.

use astrocyte_core::jobs::JobSignals;
use astrocyte_core::store::KeyDirectory;
use astrocyte_core::tenancy::{check_bound, Tenant};
use astrocyte_core::{Error, Result, Schema, Store, TenantStore};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::instrument;

use crate::error::StoreError;
use crate::inner::TenantInner;
use crate::keys::SqliteKeyDirectory;
use crate::options::SqliteOptions;
use crate::signals::LocalSignals;
use crate::tenant::SqliteTenant;

/// The embedded store: `<data_dir>/<schema>.db` per tenant.
pub struct SqliteStore {
    data_dir: PathBuf,
    options: SqliteOptions,
    /// Held across a tenant's open so two callers never open one file twice.
    tenants: tokio::sync::Mutex<OpenTenants>,
    /// API keys, in their own file beside the tenants.
    keys: SqliteKeyDirectory,
    /// Tenants with jobs enqueued through this store.
    signals: Arc<LocalSignals>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("data_dir", &self.data_dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store over an existing directory; `InvalidInput` naming the path when it does
    /// not exist or is not a directory. Tenant files are opened on first use.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        if !data_dir.is_dir() {
            return Err(Error::invalid(format!(
                "data directory {} does not exist or is not a directory",
                data_dir.display()
            )));
        }
        Ok(SqliteStore {
            data_dir: data_dir.to_path_buf(),
            keys: SqliteKeyDirectory::new(data_dir, options.clone()),
            options,
            tenants: tokio::sync::Mutex::new(OpenTenants::default()),
            signals: Arc::default(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Writes the vector index snapshot of every loaded bank with unsaved changes, so the next
    /// open loads it instead of re-indexing rows. Dropping the store also saves, but only the
    /// snapshots that pay for themselves (missing ones, or many unsaved rows), and blocks the
    /// dropping thread while it does.
    pub async fn flush(&self) -> Result<()> {
        let tenants: Vec<Arc<TenantInner>> = self
            .tenants
            .lock()
            .await
            .open
            .values()
            .map(|(inner, _)| Arc::clone(inner))
            .collect();
        for tenant in tenants {
            tokio::task::spawn_blocking(move || tenant.save_all_snapshots(false))
                .await
                .map_err(StoreError::from)??;
        }
        Ok(())
    }

    /// How many tenant databases are open (at most about
    /// [`SqliteOptions::max_open_tenants`] while handles are not held elsewhere).
    pub async fn open_tenant_count(&self) -> usize {
        self.tenants.lock().await.open.len()
    }

    fn path_of(&self, schema: &Schema) -> PathBuf {
        self.data_dir.join(format!("{}.db", schema.as_str()))
    }

    async fn open_tenant(&self, schema: &Schema, create: bool) -> Result<Arc<TenantInner>> {
        let path = self.path_of(schema);
        let options = self.options.clone();
        let schema = schema.clone();
        let inner =
            tokio::task::spawn_blocking(move || TenantInner::open(schema, path, options, create))
                .await
                .map_err(StoreError::from)??;
        Ok(Arc::new(inner))
    }
}

/// Open tenants with the tick of their last use, for least-recently-used eviction, and the
/// evicted ones still closing.
#[derive(Default)]
struct OpenTenants {
    open: HashMap<Schema, (Arc<TenantInner>, u64)>,
    closing: HashMap<Schema, tokio::task::JoinHandle<()>>,
    clock: u64,
}

impl OpenTenants {
    /// Waits until an evicted `schema` has finished closing: its file must never be open twice,
    /// or a late snapshot of the old index could overwrite what the new handle wrote (even
    /// vectors it purged since).
    async fn settle(&mut self, schema: &Schema) {
        self.closing.retain(|_, task| !task.is_finished());
        if let Some(task) = self.closing.remove(schema) {
            if let Err(error) = task.await {
                tracing::warn!(tenant = %schema, %error, "closing an idle tenant failed");
            }
        }
    }

    fn touch(&mut self, schema: &Schema) -> Option<Arc<TenantInner>> {
        self.clock += 1;
        let clock = self.clock;
        self.open.get_mut(schema).map(|(inner, used)| {
            *used = clock;
            Arc::clone(inner)
        })
    }

    fn insert(&mut self, schema: Schema, inner: Arc<TenantInner>) {
        self.clock += 1;
        self.open.insert(schema, (inner, self.clock));
    }

    /// Closes least recently used tenants beyond `max` that nobody else holds. A tenant with
    /// a live handle is never evicted: reopening it would give the same file a second,
    /// diverging vector index. Their connections close (and snapshots save) off the runtime.
    fn evict_idle(&mut self, max: usize) {
        while self.open.len() > max.max(1) {
            let idle = self
                .open
                .iter()
                .filter(|(_, (inner, _))| Arc::strong_count(inner) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(schema, _)| schema.clone());
            let Some(schema) = idle else { return };
            if let Some((inner, _)) = self.open.remove(&schema) {
                tracing::debug!(tenant = %schema, "closing idle tenant");
                let task = tokio::task::spawn_blocking(move || drop(inner));
                self.closing.insert(schema, task);
            }
        }
    }
}

fn handle(inner: &Arc<TenantInner>, signals: &Arc<LocalSignals>) -> Arc<dyn TenantStore> {
    Arc::new(SqliteTenant {
        inner: Arc::clone(inner),
        signals: Arc::clone(signals),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Opens the tenant's file, creating and migrating it when missing. In strict mode only
    /// for the tenant bound to the calling task.
    #[instrument(skip_all, fields(tenant = %schema))]
    async fn tenant(&self, schema: &Schema) -> Result<Arc<dyn TenantStore>> {
        check_bound(schema)?;
        let mut tenants = self.tenants.lock().await;
        if let Some(inner) = tenants.touch(schema) {
            return Ok(handle(&inner, &self.signals));
        }
        tenants.settle(schema).await;
        let inner = self.open_tenant(schema, true).await?;
        tenants.insert(schema.clone(), Arc::clone(&inner));
        tenants.evict_idle(self.options.max_open_tenants);
        Ok(handle(&inner, &self.signals))
    }

    async fn existing_tenant(&self, schema: &Schema) -> Result<Option<Arc<dyn TenantStore>>> {
        check_bound(schema)?;
        let mut tenants = self.tenants.lock().await;
        if let Some(inner) = tenants.touch(schema) {
            return Ok(Some(handle(&inner, &self.signals)));
        }
        tenants.settle(schema).await;
        if !self.path_of(schema).exists() {
            return Ok(None);
        }
        let inner = self.open_tenant(schema, false).await?;
        tenants.insert(schema.clone(), Arc::clone(&inner));
        tenants.evict_idle(self.options.max_open_tenants);
        Ok(Some(handle(&inner, &self.signals)))
    }

    #[instrument(skip_all, fields(tenant = %schema))]
    async fn create_tenant(&self, schema: &Schema) -> Result<()> {
        let mut tenants = self.tenants.lock().await;
        tenants.settle(schema).await;
        if tenants.open.contains_key(schema) || self.path_of(schema).exists() {
            return Err(Error::Conflict(format!("tenant {schema} already exists")));
        }
        let inner = self.open_tenant(schema, true).await?;
        tenants.insert(schema.clone(), inner);
        tenants.evict_idle(self.options.max_open_tenants);
        Ok(())
    }

    /// Deletes the tenant's API keys, closes its connections once in-flight operations end,
    /// then deletes its database, WAL and shared-memory files. Handles still held elsewhere
    /// answer `NotFound`. Keys are deleted even when the file never existed (a key may be
    /// issued before the tenant's first use); `NotFound` only when there was neither.
    #[instrument(skip_all, fields(tenant = %schema))]
    async fn drop_tenant(&self, schema: &Schema) -> Result<()> {
        let mut tenants = self.tenants.lock().await;
        let path = self.path_of(schema);
        tenants.settle(schema).await;
        // Keys first: a key left behind would recreate the tenant on its next use.
        let keys_removed = self.keys.remove_tenant(schema).await?;
        self.signals.forget(schema);
        let cached = tenants.open.remove(schema).map(|(inner, _)| inner);
        if cached.is_none() && !path.exists() {
            if keys_removed > 0 {
                tracing::info!(tenant = %schema, keys = keys_removed, "keys of a tenant without data dropped");
                return Ok(());
            }
            return Err(Error::NotFound(format!("tenant {schema} does not exist")));
        }
        tokio::task::spawn_blocking(move || -> std::result::Result<(), StoreError> {
            if let Some(inner) = cached {
                inner.close();
            }
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(())
        })
        .await
        .map_err(StoreError::from)??;
        tracing::info!(tenant = %schema, "tenant dropped");
        Ok(())
    }

    /// Tenants are the `*.db` files whose stem is a valid schema name, sorted (the key
    /// directory's stem holds a '.', so it is never one).
    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let data_dir = self.data_dir.clone();
        let mut tenants =
            tokio::task::spawn_blocking(move || -> std::result::Result<Vec<Tenant>, StoreError> {
                let mut tenants = Vec::new();
                for entry in std::fs::read_dir(&data_dir)? {
                    let path = entry?.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("db") || !path.is_file() {
                        continue;
                    }
                    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    if let Ok(schema) = Schema::new(stem) {
                        tenants.push(Tenant { schema });
                    }
                }
                Ok(tenants)
            })
            .await
            .map_err(StoreError::from)??;
        tenants.sort();
        Ok(tenants)
    }

    /// Hashed API keys in `<data_dir>/_directory.keys.db` ([`crate::KEY_DIRECTORY_FILE`]).
    fn key_directory(&self) -> Option<Arc<dyn KeyDirectory>> {
        Some(Arc::new(self.keys.clone()))
    }

    fn job_signals(&self) -> Option<Arc<dyn JobSignals>> {
        Some(self.signals.clone())
    }

    async fn health(&self) -> Result<()> {
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = std::fs::metadata(&data_dir)?;
            if metadata.is_dir() && !metadata.permissions().readonly() {
                Ok(())
            } else {
                Err(Error::Storage(format!(
                    "data directory {} is not a writable directory",
                    data_dir.display()
                )))
            }
        })
        .await
        .map_err(StoreError::from)?
    }
}
