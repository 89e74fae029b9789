//! [`PostgresStore`]: the pool, the tenant directory and tenant handles, and the migration
//! fan-out. Tenant data is only ever touched through [`PostgresTenant`] handles or
//! [`TenantTransaction`]s, both of which run as the tenant's role.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::store::KeyDirectory;
use astrocyte_core::tenancy::{check_bound, Tenant};
use astrocyte_core::{Error, Result, Schema, Store, TenantStore};
use async_trait::async_trait;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_postgres::NoTls;
use tracing::{info, instrument, warn};

use crate::directory::{self, AdminOutcome, OrphanRole, RolePrune, TenantRecord};
use crate::error::{PgError, PgResult};
use crate::keys::PgKeyDirectory;
use crate::migrate::{
    check_migrations, current_version, migrate_tenant, MigrationReport, MigrationStatus,
    TenantMigration, LATEST_MIGRATION,
};
use crate::names::{
    validate_role_prefix, DatabaseTag, HnswParams, RoleName, VectorSql, LOCK_PLACEMENT,
};
use crate::replica::{redact, ReplicaOptions, ReplicaSet, TenantReads};
use crate::servers::{Placement, Server, ServerKey};
use crate::session::{TenantBinding, TenantTransaction};
use crate::tenant::PostgresTenant;

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// Server-side limit per statement (`statement_timeout`); `None` keeps the server default.
    pub statement_timeout: Option<Duration>,
    /// How long to wait for a pooled connection before failing.
    pub pool_wait_timeout: Duration,
    /// Checkouts after which a pooled connection is closed and replaced (0: never). A
    /// PostgreSQL backend keeps the catalog entries of every table it has touched until it
    /// exits, about 0.1 MiB per tenant, so with many tenants a long-lived connection grows
    /// towards the whole catalog; replacing it bounds that.
    pub connection_max_uses: usize,
    /// When true, [`Store::tenant`] creates an unknown tenant on first use; otherwise it
    /// answers `NotFound` and tenants are created explicitly.
    pub auto_create_tenants: bool,
    /// Prefix of the per-tenant role names. Roles are cluster-wide; every role name also
    /// carries a tag of its database (`<prefix><database tag>_<schema head>_<hash>`), so
    /// databases of one cluster never collide even with the same prefix.
    pub role_prefix: String,
    /// Tenants migrated at once by [`PostgresStore::migrate_all_tenants`].
    pub migration_concurrency: usize,
    /// Streaming replicas that recall, the change feed and export may read from.
    pub replicas: ReplicaOptions,
    /// pgvector HNSW `m` (links per node) of the indexes this store builds. An index is built
    /// once per tenant, when its vector dimension is fixed: a change applies to tenants whose
    /// index is built afterwards, existing ones keep theirs.
    pub hnsw_m: usize,
    /// pgvector HNSW `ef_construction` of the indexes this store builds (same rule as `m`).
    pub hnsw_ef_construction: usize,
    /// pgvector `hnsw.ef_search`: the least candidate list of every HNSW scan (a search
    /// fetching more raises it to its fetch); applies at once to every tenant.
    pub hnsw_ef_search: usize,
    /// Further PostgreSQL servers tenants may be placed on, beside the home database given
    /// to [`PostgresStore::connect`] (which keeps the directory, API keys and its own
    /// tenants). Each gets a pool of `pool_size`.
    pub server_urls: Vec<String>,
    /// Where new tenants go.
    pub placement: Placement,
    /// Keyword search scores at most this many rows: the most frequent query words are
    /// dropped (by the table's statistics) until the rest fit, or every word is required when
    /// even the rarest alone does not. 0 scores every row holding any query word.
    pub keyword_posting_budget: usize,
    /// An import into a tenant holding fewer memories than this sets the tenant's vector index
    /// aside and builds it once at the end, several times faster than growing it row by row
    /// (searches meanwhile are exact: right, and slower as the tenant grows). 0: never.
    pub bulk_load_below: usize,
    /// `maintenance_work_mem` in MiB for the vector index builds the store starts (an
    /// import's, a tenant move's). 0 keeps the server's setting.
    pub index_build_memory_mb: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            pool_wait_timeout: Duration::from_secs(30),
            connection_max_uses: 500,
            auto_create_tenants: false,
            role_prefix: "astro_t_".into(),
            migration_concurrency: 4,
            replicas: ReplicaOptions::default(),
            hnsw_m: HNSW_DEFAULT_M,
            hnsw_ef_construction: HNSW_DEFAULT_EF_CONSTRUCTION,
            hnsw_ef_search: HNSW_DEFAULT_EF_SEARCH,
            server_urls: Vec::new(),
            placement: Placement::default(),
            keyword_posting_budget: 2_000,
            bulk_load_below: 10_000,
            index_build_memory_mb: 256,
        }
    }
}

const HNSW_DEFAULT_M: usize = 16;
const HNSW_DEFAULT_EF_CONSTRUCTION: usize = 64;
const HNSW_DEFAULT_EF_SEARCH: usize = 40;

impl PostgresOptions {
    /// The HNSW parameters, checked against pgvector's bounds so a bad value fails at
    /// start-up, not at a tenant's first insert.
    fn hnsw(&self) -> Result<HnswParams> {
        let (m, ef_construction, ef_search) =
            (self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef_search);
        if !(2..=100).contains(&m) {
            return Err(Error::invalid(format!(
                "HNSW m must be between 2 and 100, got {m}"
            )));
        }
        if !(4..=1000).contains(&ef_construction) || ef_construction < 2 * m {
            return Err(Error::invalid(format!(
                "HNSW ef_construction must be between 4 and 1000 and at least 2 x m ({}), got {ef_construction}",
                2 * m
            )));
        }
        if !(1..=1000).contains(&ef_search) {
            return Err(Error::invalid(format!(
                "HNSW ef_search must be between 1 and 1000, got {ef_search}"
            )));
        }
        Ok(HnswParams {
            m,
            ef_construction,
            ef_search,
            bulk_load_below: self.bulk_load_below,
            build_memory_mb: self.index_build_memory_mb,
        })
    }
}

/// The PostgreSQL + pgvector store: one schema and one role per tenant.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Every server tenants may live on; the home server (directory, API keys) first.
    pub(crate) servers: Vec<Arc<Server>>,
    pub(crate) options: PostgresOptions,
    /// Open tenant handles; a handle is checked (exists, migrated) once, then reused until a
    /// statement finds signs of a move (see `TenantBinding::relocated`).
    pub(crate) handles: Mutex<HashMap<Schema, Arc<PostgresTenant>>>,
    keys: Arc<PgKeyDirectory>,
}

impl Inner {
    /// The home server: the directory, API keys, and the tenants placed nowhere else.
    pub(crate) fn home(&self) -> &Arc<Server> {
        &self.servers[0]
    }

    /// The server a directory column names (`None`: the home server).
    pub(crate) fn server(&self, key: Option<&ServerKey>) -> Result<Arc<Server>> {
        let Some(key) = key else {
            return Ok(self.home().clone());
        };
        self.servers
            .iter()
            .find(|server| server.key == *key)
            .cloned()
            .ok_or_else(|| {
                Error::StorageUnavailable(format!(
                    "server {key} holds tenants but is not configured here (postgres.server_urls)"
                ))
            })
    }

    /// A server named by an operator (a move's target): one not configured is a mistake in
    /// the request, not an outage.
    pub(crate) fn configured(&self, key: &ServerKey) -> Result<Arc<Server>> {
        self.servers
            .iter()
            .find(|server| server.key == *key)
            .cloned()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "server {key} is not configured here (the home database or \
                     postgres.server_urls)"
                ))
            })
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.inner.options)
            .field("servers", &self.inner.servers)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), ensures the `vector` extension and
    /// the tenant directory exist, and returns the store.
    #[instrument(skip_all)]
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self> {
        validate_role_prefix(&options.role_prefix)?;
        let hnsw = options.hnsw()?;
        let timeout_ms = options.statement_timeout.map(|timeout| timeout.as_millis());
        check_migrations()?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| PgError::Config(format!("invalid database url: {error}")))?;
        if config.get_application_name().is_none() {
            config.application_name("astrocyte");
        }
        let pool = build_pool(config.clone(), &options)?;
        let home = directory::bootstrap(&pool, true).await?;
        info!(pgvector_schema = %home.vector_schema, database_tag = %home.database, "connected");
        let replicas = ReplicaSet::start(&pool, &config, options.replicas.clone(), |replica| {
            build_pool(replica, &options)
        })
        .await?;
        let mut identities = vec![home.identity];
        let mut servers = vec![Arc::new(Server {
            key: ServerKey::of(&config),
            home: true,
            pool: pool.clone(),
            vector: Arc::new(VectorSql::new(home.vector_schema, hnsw, timeout_ms)),
            database: home.database,
            replicas,
        })];
        for url in &options.server_urls {
            let mut server_config: tokio_postgres::Config = url.parse().map_err(|error| {
                PgError::Config(format!("invalid server url {}: {error}", redact(url)))
            })?;
            if server_config.get_application_name().is_none() {
                server_config.application_name("astrocyte");
            }
            let key = ServerKey::of(&server_config);
            let server_pool = build_pool(server_config, &options)?;
            let found = directory::bootstrap(&server_pool, false).await?;
            // Two spellings of one database would let a move drop the tenant it copies.
            if servers.iter().any(|s| s.key == key) || identities.contains(&found.identity) {
                return Err(Error::invalid(format!(
                    "server {key} is configured twice (or is the home database under another name)"
                )));
            }
            info!(server = %key, database_tag = %found.database, "server connected");
            identities.push(found.identity);
            servers.push(Arc::new(Server {
                key,
                home: false,
                pool: server_pool,
                vector: Arc::new(VectorSql::new(found.vector_schema, hnsw, timeout_ms)),
                database: found.database,
                replicas: None,
            }));
        }
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                keys: Arc::new(PgKeyDirectory::new(pool)),
                servers,
                options,
                handles: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The key of every server tenants may live on, the home server first.
    pub fn servers(&self) -> Vec<ServerKey> {
        self.inner.servers.iter().map(|s| s.key.clone()).collect()
    }

    /// Creates a tenant on the server the placement policy picks (the home server for
    /// `public`, whose tables share the directory's schema). With several servers, creations
    /// are serialised by a session lock on the home database (on a connection of its own), so tenants created at the same
    /// moment (a `tenant create` fan-out, several gateways) are counted one after another and
    /// spread instead of all landing on the same emptiest server.
    async fn create_placed(&self, schema: &Schema) -> Result<AdminOutcome> {
        let servers = &self.inner.servers;
        let home = self.inner.home();
        if servers.len() == 1 || *schema == Schema::public() {
            return self.create_on(home, schema).await;
        }
        // Detached from the pool: if this future is dropped mid-create, the connection closes
        // and PostgreSQL releases the lock, instead of a pooled connection keeping it and
        // blocking every later create.
        let lock = home.pool.get().await.map_err(PgError::from)?;
        let lock = deadpool_postgres::Object::take(lock);
        lock.query_one("SELECT pg_advisory_lock($1, 0)", &[&LOCK_PLACEMENT])
            .await
            .map_err(PgError::from)?;
        let outcome = async {
            let counts = directory::counts(&home.pool).await?;
            let server = crate::servers::choose(self.inner.options.placement, servers, &counts);
            self.create_on(server, schema).await
        }
        .await;
        // Released at once (closing the connection releases it too, but a create right after
        // could beat the server noticing).
        if let Err(error) = lock
            .query_one("SELECT pg_advisory_unlock($1, 0)", &[&LOCK_PLACEMENT])
            .await
        {
            warn!(%error, "releasing the placement lock failed; closing its connection releases it");
        }
        drop(lock);
        outcome
    }

    async fn create_on(&self, server: &Arc<Server>, schema: &Schema) -> Result<AdminOutcome> {
        // The role carries the tag of the database holding the schema: unique on its cluster.
        let role = RoleName::derive(&self.inner.options.role_prefix, &server.database, schema)?;
        Ok(directory::create(&self.inner.home().pool, server, schema, &role).await?)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// Every directory row (name, schema, role, creation time, state, placement), sorted by
    /// schema.
    pub async fn tenant_records(&self) -> Result<Vec<TenantRecord>> {
        Ok(directory::list(&self.inner.home().pool).await?)
    }

    /// The directory row of one tenant, if it exists.
    pub async fn tenant_record(&self, schema: &Schema) -> Result<Option<TenantRecord>> {
        Ok(directory::lookup(&self.inner.home().pool, schema).await?)
    }

    /// The API-key directory (also what [`Store::key_directory`] returns).
    pub fn keys(&self) -> Arc<PgKeyDirectory> {
        self.inner.keys.clone()
    }

    /// The home database's tag (its OID in hex), part of every tenant role it creates.
    pub fn database_tag(&self) -> &DatabaseTag {
        &self.inner.home().database
    }

    /// Tenant roles this database created (prefix and database tag) that no tenant in its
    /// directory uses, sorted by name. Roles of other databases on the cluster are never
    /// listed: they carry another tag, and a role with anything in another database is skipped.
    pub async fn orphan_roles(&self) -> Result<Vec<OrphanRole>> {
        Ok(directory::orphan_roles(
            &self.inner.home().pool,
            &self.inner.options.role_prefix,
            &self.inner.home().database,
        )
        .await?)
    }

    /// Drops the [`PostgresStore::orphan_roles`] that own nothing, in one transaction; orphans
    /// still owning objects in this database are kept and reported.
    pub async fn prune_orphan_roles(&self) -> Result<RolePrune> {
        Ok(directory::prune_orphan_roles(
            &self.inner.home().pool,
            &self.inner.options.role_prefix,
            &self.inner.home().database,
        )
        .await?)
    }

    async fn binding(&self, schema: &Schema) -> Result<(Arc<Server>, TenantBinding)> {
        let (server, binding, _) = self.binding_and_version(schema).await?;
        Ok((server, binding))
    }

    /// The tenant's server, binding and the migration version its directory row records.
    async fn binding_and_version(
        &self,
        schema: &Schema,
    ) -> Result<(Arc<Server>, TenantBinding, Option<u32>)> {
        let record = directory::lookup(&self.inner.home().pool, schema)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {schema} does not exist")))?;
        let server = self.inner.server(record.server.as_ref())?;
        let binding = TenantBinding::new(record.schema, record.role, server.vector.clone());
        Ok((server, binding, record.migrated_version))
    }

    /// A typed handle on one tenant (what [`Store::tenant`] returns as a trait object). In
    /// strict mode only for the tenant bound to the calling task.
    pub async fn open_tenant(&self, schema: &Schema) -> Result<Arc<PostgresTenant>> {
        check_bound(schema)?;
        {
            let mut handles = self.inner.handles.lock();
            match handles.get(schema) {
                // A handle that saw signs of a move is replaced by a fresh directory look-up.
                Some(handle) if handle.binding.is_relocated() => {
                    handles.remove(schema);
                }
                Some(handle) => return Ok(handle.clone()),
                None => {}
            }
        }
        let (server, binding, recorded) = match self.binding_and_version(schema).await {
            Ok(found) => found,
            Err(Error::NotFound(_)) if self.inner.options.auto_create_tenants => {
                match self.create_tenant(schema).await {
                    // Another request (or process) created it first: just as good.
                    Ok(()) | Err(Error::Conflict(_)) => {}
                    Err(error) => return Err(error),
                }
                self.binding_and_version(schema).await?
            }
            Err(error) => return Err(error),
        };
        // A tenant created by an older release is brought up to date before first use; one
        // the directory records as current needs no look at its ledger.
        let current = recorded.is_some_and(|v| v >= LATEST_MIGRATION);
        if !current && current_version(&server.pool, &binding).await? < LATEST_MIGRATION {
            if let MigrationStatus::Failed { message, .. } =
                migrate_tenant(&self.inner.home().pool, &server.pool, &binding).await
            {
                return Err(Error::Storage(format!(
                    "tenant {schema} could not be migrated: {message}"
                )));
            }
        }
        let reads = TenantReads::open(server.replicas.clone(), &server.pool).await;
        let handle = Arc::new_cyclic(|me| {
            PostgresTenant::new(
                server.pool.clone(),
                binding,
                reads,
                self.inner.options.keyword_posting_budget,
                me.clone(),
            )
        });
        let mut handles = self.inner.handles.lock();
        match handles.get(schema) {
            // Another request opened it meanwhile: share that handle unless it is stale.
            Some(existing) if !existing.binding.is_relocated() => Ok(existing.clone()),
            _ => {
                handles.insert(schema.clone(), handle.clone());
                Ok(handle)
            }
        }
    }

    /// Opens a transaction running as the tenant's role, for hand-written SQL. Name tables
    /// with [`astrocyte_core::tenancy::fq_table`]; anything outside the tenant's schema is
    /// refused by PostgreSQL's privileges.
    pub async fn tenant_transaction(&self, schema: &Schema) -> Result<TenantTransaction> {
        let (server, binding) = self.binding(schema).await?;
        Ok(TenantTransaction::begin(&server.pool, &binding, "").await?)
    }

    /// Brings one tenant to the latest migration.
    pub async fn migrate_tenant(&self, schema: &Schema) -> Result<MigrationStatus> {
        let (server, binding) = self.binding(schema).await?;
        Ok(migrate_tenant(&self.inner.home().pool, &server.pool, &binding).await)
    }

    /// Migrates every tenant in the directory (a few at a time) and reports each tenant's
    /// outcome; one tenant failing does not stop the others. Safe to run from several
    /// processes at once and to re-run after a crash.
    pub async fn migrate_all_tenants(&self) -> Result<MigrationReport> {
        self.migrate_tenants(None).await
    }

    /// [`PostgresStore::migrate_all_tenants`] over the tenants whose schema starts with
    /// `prefix` (all with `None`). One directory query finds the tenants behind; those its
    /// rows record as current are reported without opening their schemas, so a re-run over
    /// thousands of current tenants takes one query.
    #[instrument(skip_all)]
    pub async fn migrate_tenants(&self, prefix: Option<&str>) -> Result<MigrationReport> {
        let records = directory::list(&self.inner.home().pool).await?;
        let (current, behind): (Vec<TenantRecord>, Vec<TenantRecord>) = records
            .into_iter()
            .filter(|r| prefix.is_none_or(|p| r.schema.as_str().starts_with(p)))
            .partition(|r| r.migrated_version.is_some_and(|v| v >= LATEST_MIGRATION));
        let inner = &self.inner;
        let mut tenants: Vec<TenantMigration> = futures::stream::iter(behind)
            .map(|record| async move {
                let server = match inner.server(record.server.as_ref()) {
                    Ok(server) => server,
                    Err(error) => {
                        return TenantMigration {
                            schema: record.schema,
                            status: MigrationStatus::Failed {
                                reached: record.migrated_version.unwrap_or(0),
                                message: error.to_string(),
                            },
                        }
                    }
                };
                let binding =
                    TenantBinding::new(record.schema.clone(), record.role, server.vector.clone());
                TenantMigration {
                    schema: record.schema,
                    status: migrate_tenant(&inner.home().pool, &server.pool, &binding).await,
                }
            })
            .buffer_unordered(self.inner.options.migration_concurrency.max(1))
            .collect()
            .await;
        tenants.extend(current.into_iter().map(|record| TenantMigration {
            status: MigrationStatus::AlreadyCurrent {
                version: record.migrated_version.unwrap_or(LATEST_MIGRATION),
            },
            schema: record.schema,
        }));
        tenants.sort_by(|a, b| a.schema.cmp(&b.schema));
        let report = MigrationReport { tenants };
        info!(
            tenants = report.tenants.len(),
            failed = report.failed().count(),
            "migration fan-out done"
        );
        Ok(report)
    }
}

/// A pool on `config` with the store's size, timeouts and statement timeout.
fn build_pool(mut config: tokio_postgres::Config, options: &PostgresOptions) -> PgResult<Pool> {
    if let Some(timeout) = options.statement_timeout {
        let existing = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{existing} -c statement_timeout={}", timeout.as_millis()).trim());
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.pool_wait_timeout))
        .create_timeout(Some(options.pool_wait_timeout));
    let max_uses = options.connection_max_uses;
    if max_uses > 0 {
        // Refusing to recycle drops the connection; the pool opens a fresh one in its place.
        builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.recycle_count.saturating_add(1) >= max_uses {
                Err(HookError::Message("connection used up".into()))
            } else {
                Ok(())
            }
        }));
    }
    Ok(builder.build()?)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn tenant(&self, schema: &Schema) -> Result<Arc<dyn TenantStore>> {
        Ok(self.open_tenant(schema).await?)
    }

    async fn existing_tenant(&self, schema: &Schema) -> Result<Option<Arc<dyn TenantStore>>> {
        check_bound(schema)?;
        let known = self.inner.handles.lock().contains_key(schema);
        // Looked up first so that auto-creation never brings back a dropped tenant.
        if !known
            && directory::lookup(&self.inner.home().pool, schema)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        Ok(Some(self.open_tenant(schema).await?))
    }

    #[instrument(skip_all, fields(tenant = %schema))]
    async fn create_tenant(&self, schema: &Schema) -> Result<()> {
        match self.create_placed(schema).await? {
            AdminOutcome::Done => Ok(()),
            AdminOutcome::Exists => Err(Error::Conflict(format!("tenant {schema} already exists"))),
            AdminOutcome::Missing | AdminOutcome::Moving(_) => Err(Error::Internal(
                "create reported a missing or moving tenant".into(),
            )),
        }
    }

    #[instrument(skip_all, fields(tenant = %schema))]
    async fn drop_tenant(&self, schema: &Schema) -> Result<()> {
        let (outcome, leftovers) = directory::drop(&self.inner.home().pool, schema).await?;
        self.inner.handles.lock().remove(schema);
        // The directory row is gone, so the tenant is gone for every reader; its copies on
        // other servers are dropped next. One that fails stays behind as an orphan schema,
        // and the error says where.
        for leftover in leftovers {
            let server = self.inner.server(leftover.server.as_ref())?;
            if let Err(error) =
                directory::drop_copy(&self.inner.home().pool, &server, schema, &leftover.role).await
            {
                return Err(Error::Storage(format!(
                    "tenant {schema} is dropped from the directory, but its schema on server {} \
                     could not be removed (drop it there by hand): {}",
                    server.key,
                    Error::from(error)
                )));
            }
        }
        match outcome {
            AdminOutcome::Done => Ok(()),
            AdminOutcome::Missing => {
                Err(Error::NotFound(format!("tenant {schema} does not exist")))
            }
            AdminOutcome::Exists => Err(Error::Internal("drop reported an existing tenant".into())),
            AdminOutcome::Moving(to) => Err(Error::Conflict(format!(
                "tenant {schema} has an unfinished move to {to}; finish it (re-run the move) or \
                 abandon it (move it to its current server) before dropping it"
            ))),
        }
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(directory::list(&self.inner.home().pool)
            .await?
            .into_iter()
            .map(|record| Tenant {
                schema: record.schema,
            })
            .collect())
    }

    fn key_directory(&self) -> Option<Arc<dyn KeyDirectory>> {
        Some(self.inner.keys.clone())
    }

    fn job_signals(&self) -> Option<Arc<dyn astrocyte_core::jobs::JobSignals>> {
        Some(Arc::new(crate::jobs::PgJobSignals::new(
            self.inner.servers.clone(),
        )))
    }

    /// Checks the home database only: a server of a few tenants being down must not take
    /// the whole gateway out of its load balancer.
    async fn health(&self) -> Result<()> {
        let client = self.inner.home().pool.get().await.map_err(PgError::from)?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(PgError::from)?;
        Ok(())
    }
}
