//! The table: every setting declared once, with its type, default, YAML path, environment
//! variables (the first is the one documented; the others are accepted aliases), command-line
//! flag, secrecy, an example value and one line of doc. The reference in
//! `docs/configuration.md`, `astrocyte config show` and the loader all read this table.

use std::path::PathBuf;

use astrocyte_core::EngineConfig;
use astrocyte_server::access::DefaultPolicy;
use astrocyte_server::config::{AuthMode, LogFormat, Secret, TenantExtensionKind};
use astrocyte_server::mcp::DEFAULT_MAX_RESULTS_LIMIT;
use astrocyte_server::policy::pii::{PiiAction, PiiMode};
use astrocyte_store_postgres::{Placement, PostgresOptions};
use astrocyte_store_sqlite::SqliteOptions;
use astrocyte_workers::WorkerConfig;

use crate::value::{EmbedderKind, Grants, PiiOverrides, Raw, Value};

/// One setting's declaration, as the loader and the reference see it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The field of [`Settings`].
    pub field: &'static str,
    /// The dotted YAML path.
    pub yaml: &'static str,
    /// Environment variables, the documented one first.
    pub env: &'static [&'static str],
    /// The command-line flag, when there is one.
    pub flag: Option<&'static str>,
    /// Shown as `***` by `config show`.
    pub secret: bool,
    /// One line of doc.
    pub doc: &'static str,
    /// What values are allowed.
    pub kind: &'static str,
    /// A valid value other than the default.
    pub example: &'static str,
    /// The section of the reference.
    pub section: &'static str,
}

const fn first(flags: &[&'static str]) -> Option<&'static str> {
    match flags {
        [flag, ..] => Some(flag),
        [] => None,
    }
}

const fn any(marks: &[bool]) -> bool {
    matches!(marks, [true, ..])
}

macro_rules! settings {
    ($(
        [$section:literal]
        $(
            #[doc = $doc:literal]
            $field:ident : $ty:ty = $default:expr,
            yaml $yaml:literal
            $(, env [$($env:literal),+])?
            $(, flag $flag:literal)?
            $(, secret $secret:literal)?
            , example $example:literal;
        )+
    )+) => {
        /// Every setting, typed; [`Settings::default`] holds the documented defaults.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $($(
                #[doc = $doc]
                pub $field: $ty,
            )+)+
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    $($( $field: $default, )+)+
                }
            }
        }

        /// The table, in reference order.
        pub static TABLE: &[Spec] = &[
            $($(
                Spec {
                    field: stringify!($field),
                    yaml: $yaml,
                    env: &[$($($env),+)?],
                    flag: first(&[$($flag)?]),
                    secret: any(&[$($secret)?]),
                    doc: $doc,
                    kind: <$ty as Value>::KIND,
                    example: $example,
                    section: $section,
                },
            )+)+
        ];

        impl Settings {
            /// Parses `raw` into the field named `field`.
            pub(crate) fn assign(&mut self, field: &str, raw: &Raw) -> Result<(), String> {
                match field {
                    $($( stringify!($field) => self.$field = <$ty as Value>::from_raw(raw)?, )+)+
                    other => return Err(format!("no setting {other}")),
                }
                Ok(())
            }

            /// The field named `field`, shown as a person would write it.
            pub fn show(&self, field: &str) -> Option<String> {
                match field {
                    $($( stringify!($field) => Some(Value::show(&self.$field)), )+)+
                    _ => None,
                }
            }
        }
    };
}

/// The default data directory of every command: `$XDG_DATA_HOME/astrocyte`, else
/// `~/.local/share/astrocyte`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("astrocyte")
}

fn engine() -> EngineConfig {
    EngineConfig::default()
}

fn sqlite() -> SqliteOptions {
    SqliteOptions::default()
}

fn postgres() -> PostgresOptions {
    PostgresOptions::default()
}

fn workers() -> WorkerConfig {
    WorkerConfig::default()
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

settings! {
    ["Storage and tenants"]
    /// Directory of the embedded store (one SQLite file per tenant), for every command; created by `serve`, other commands want it to exist unless it is the default.
    data_dir: PathBuf = default_data_dir(), yaml "data_dir", env ["ASTROCYTE_DATA_DIR"], flag "--data-dir", example "/var/lib/astrocyte";
    /// PostgreSQL URL; when set, PostgreSQL + pgvector replaces the embedded store.
    database_url: Option<Secret> = None, yaml "database_url", env ["DATABASE_URL", "ASTROCYTE_DATABASE_URL"], flag "--database-url", secret true, example "postgres://astrocyte@db:5432/astrocyte";
    /// The tenant (schema) of the default tenant extension: every unauthenticated request runs in it.
    database_schema: String = "public".into(), yaml "database_schema", env ["ASTROCYTE_DATABASE_SCHEMA"], example "tenant_acme";
    /// The tenant the command-line commands and `astrocyte mcp` act in.
    tenant: String = "public".into(), yaml "tenant", env ["ASTROCYTE_TENANT"], flag "--tenant", example "tenant_acme";
    /// Directories that file export and import may touch; empty disables them.
    portability_roots: Vec<PathBuf> = Vec::new(), yaml "portability_roots", env ["ASTROCYTE_PORTABILITY_ROOTS", "ASTROCYTE_EXPORT_ROOTS"], example "/tmp";
    /// SQLite: fsync every commit, so acknowledged memories also survive power loss.
    sqlite_durable_fsync: bool = sqlite().durable_fsync, yaml "sqlite.durable_fsync", env ["ASTROCYTE_SQLITE_DURABLE_FSYNC"], example "true";
    /// SQLite: how long a connection waits for a lock, in milliseconds.
    sqlite_busy_timeout_ms: u64 = millis(sqlite().busy_timeout), yaml "sqlite.busy_timeout_ms", env ["ASTROCYTE_SQLITE_BUSY_TIMEOUT_MS"], example "10000";
    /// SQLite: idle read-only connections kept per tenant.
    sqlite_max_idle_readers: usize = sqlite().max_idle_readers, yaml "sqlite.max_idle_readers", env ["ASTROCYTE_SQLITE_MAX_IDLE_READERS"], example "8";
    /// SQLite: index changes after which a bank's vector or keyword index snapshot is rewritten (once they are also a quarter of the index).
    sqlite_snapshot_every: u64 = sqlite().snapshot_every, yaml "sqlite.snapshot_every", env ["ASTROCYTE_SQLITE_SNAPSHOT_EVERY"], example "50000";
    /// SQLite: filtered semantic searches with at most this many candidate rows are scored exactly.
    sqlite_exact_scan_limit: usize = sqlite().exact_scan_limit, yaml "sqlite.exact_scan_limit", env ["ASTROCYTE_SQLITE_EXACT_SCAN_LIMIT"], example "5000";
    /// SQLite: filtered keyword search drops the most frequent query words until the rest match at most this many rows (0 keeps every word); unfiltered search uses the bank's keyword index, which needs no budget.
    sqlite_keyword_posting_budget: usize = sqlite().keyword_posting_budget, yaml "sqlite.keyword_posting_budget", env ["ASTROCYTE_SQLITE_KEYWORD_POSTING_BUDGET"], example "10000";
    /// SQLite: tenants kept open at once; idle ones are closed and reopened on demand.
    sqlite_max_open_tenants: usize = sqlite().max_open_tenants, yaml "sqlite.max_open_tenants", env ["ASTROCYTE_SQLITE_MAX_OPEN_TENANTS"], example "1024";
    /// SQLite: least HNSW search breadth (higher: better recall, slower); a search keeps at least its result count, and a bank past 250,000 vectors one candidate per 3,900 vectors.
    sqlite_hnsw_ef_search: usize = sqlite().hnsw.ef_search, yaml "sqlite.hnsw_ef_search", env ["ASTROCYTE_SQLITE_HNSW_EF_SEARCH"], example "128";
    /// PostgreSQL: pooled connections.
    postgres_pool_size: usize = postgres().pool_size, yaml "postgres.pool_size", env ["ASTROCYTE_POSTGRES_POOL_SIZE"], example "32";
    /// PostgreSQL: statement timeout in milliseconds (0 keeps the server's).
    postgres_statement_timeout_ms: u64 = postgres().statement_timeout.map(millis).unwrap_or(0), yaml "postgres.statement_timeout_ms", env ["ASTROCYTE_POSTGRES_STATEMENT_TIMEOUT_MS"], example "60000";
    /// PostgreSQL: how long to wait for a pooled connection, in milliseconds.
    postgres_pool_wait_timeout_ms: u64 = millis(postgres().pool_wait_timeout), yaml "postgres.pool_wait_timeout_ms", env ["ASTROCYTE_POSTGRES_POOL_WAIT_TIMEOUT_MS"], example "5000";
    /// PostgreSQL: checkouts after which a pooled connection is replaced by a new one (0: never); bounds the memory each server backend gathers caching the catalog of every tenant it has served.
    postgres_connection_max_uses: usize = postgres().connection_max_uses, yaml "postgres.connection_max_uses", env ["ASTROCYTE_POSTGRES_CONNECTION_MAX_USES"], example "2000";
    /// PostgreSQL: create an unknown tenant on first use instead of answering that it does not exist.
    auto_create_tenants: bool = postgres().auto_create_tenants, yaml "postgres.auto_create_tenants", env ["ASTROCYTE_AUTO_CREATE_TENANTS"], example "true";
    /// PostgreSQL: prefix of the per-tenant role names.
    role_prefix: String = postgres().role_prefix, yaml "postgres.role_prefix", env ["ASTROCYTE_ROLE_PREFIX"], example "astro_prod_";
    /// PostgreSQL: tenants migrated at once by `migrate --all-tenants`.
    postgres_migration_concurrency: usize = postgres().migration_concurrency, yaml "postgres.migration_concurrency", env ["ASTROCYTE_POSTGRES_MIGRATION_CONCURRENCY"], example "8";
    /// PostgreSQL: streaming replicas (hot standbys of the primary) that recall, history and export may read from; see docs/scaling.md.
    postgres_replica_urls: Vec<String> = postgres().replicas.urls, yaml "postgres.replica_urls", env ["ASTROCYTE_POSTGRES_REPLICA_URLS"], flag "--replica-url", secret true, example "postgres://astrocyte@replica1:5432/astrocyte";
    /// PostgreSQL: a replica further behind the primary than this many milliseconds is not read from.
    postgres_replica_max_lag_ms: u64 = millis(postgres().replicas.max_lag), yaml "postgres.replica_max_lag_ms", env ["ASTROCYTE_POSTGRES_REPLICA_MAX_LAG_MS"], example "250";
    /// PostgreSQL: how long a read after the tenant's own write waits for a replica to replay it before reading from the primary, in milliseconds.
    postgres_replica_wait_ms: u64 = millis(postgres().replicas.wait), yaml "postgres.replica_wait_ms", env ["ASTROCYTE_POSTGRES_REPLICA_WAIT_MS"], example "10";
    /// PostgreSQL: further servers tenants may be placed on, beside the home database of `database_url` (which keeps the tenant directory and API keys); see docs/scaling.md.
    postgres_server_urls: Vec<String> = postgres().server_urls, yaml "postgres.server_urls", env ["ASTROCYTE_POSTGRES_SERVER_URLS"], flag "--server-url", secret true, example "postgres://astrocyte@db2:5432/astrocyte";
    /// PostgreSQL: where new tenants go: `least_tenants` (the server with the fewest tenants in the directory) or `home` (the database of `database_url`; other servers only receive tenants moved there).
    postgres_placement: Placement = postgres().placement, yaml "postgres.placement", env ["ASTROCYTE_POSTGRES_PLACEMENT"], example "home";
    /// PostgreSQL: keyword search scores at most this many rows: the most frequent query words (by the table's statistics) are dropped until the rest fit, or every word is required when even the rarest alone does not (0 scores every row holding any query word).
    postgres_keyword_posting_budget: usize = postgres().keyword_posting_budget, yaml "postgres.keyword_posting_budget", env ["ASTROCYTE_POSTGRES_KEYWORD_POSTING_BUDGET"], example "5000";
    /// PostgreSQL: pgvector HNSW `m` (links per node, 2 to 100) of the vector indexes built from now on; a tenant's index is built when its first vectors arrive (again by migration 8 or a tenant move) and keeps the parameters it was built with.
    postgres_hnsw_m: usize = postgres().hnsw_m, yaml "postgres.hnsw_m", env ["ASTROCYTE_POSTGRES_HNSW_M"], example "24";
    /// PostgreSQL: pgvector HNSW `ef_construction` (candidate list while inserting, 4 to 1000 and at least twice `hnsw_m`) of the vector indexes built from now on; same rule as `hnsw_m`.
    postgres_hnsw_ef_construction: usize = postgres().hnsw_ef_construction, yaml "postgres.hnsw_ef_construction", env ["ASTROCYTE_POSTGRES_HNSW_EF_CONSTRUCTION"], example "100";
    /// PostgreSQL: an import of more than one batch (256 records) into a tenant holding fewer memories than this sets the tenant's vector index aside and builds it once at the end, several times faster than growing it row by row; vector searches of the tenant are exact meanwhile (right, slower as it grows). 0: never.
    postgres_import_builds_index_below: usize = postgres().bulk_load_below, yaml "postgres.import_builds_index_below", env ["ASTROCYTE_POSTGRES_IMPORT_BUILDS_INDEX_BELOW"], example "0";
    /// PostgreSQL: `maintenance_work_mem` in MiB for the vector index builds the store runs (an import's, a tenant move's, migration 8's); 0 keeps the server's. A build whose graph does not fit takes about three times as long.
    postgres_index_build_memory_mb: usize = postgres().index_build_memory_mb, yaml "postgres.index_build_memory_mb", env ["ASTROCYTE_POSTGRES_INDEX_BUILD_MEMORY_MB"], example "1024";
    /// PostgreSQL: pgvector `hnsw.ef_search` (1 to 1000), the least candidate list of every vector index scan (recall and the near-duplicate check; a recall fetching more raises it); applies at once to every tenant.
    postgres_hnsw_ef_search: usize = postgres().hnsw_ef_search, yaml "postgres.hnsw_ef_search", env ["ASTROCYTE_POSTGRES_HNSW_EF_SEARCH"], example "80";

    ["Serving"]
    /// Address `serve` binds.
    host: String = "127.0.0.1".into(), yaml "host", env ["ASTROCYTE_HOST"], flag "--host", example "0.0.0.0";
    /// REST and MCP port (0 picks a free port).
    port: u16 = 8080, yaml "port", env ["ASTROCYTE_PORT"], flag "--port", example "8081";
    /// `Host` values REST and the inspector accept (`host` or `host:port`, `*`: any). Unset: only loopback names while bound to a loopback address (stops DNS rebinding), any otherwise.
    allowed_hosts: Vec<String> = Vec::new(), yaml "allowed_hosts", env ["ASTROCYTE_ALLOWED_HOSTS"], example "memory.example.com";
    /// Most REST and MCP connections served at once (and as many gRPC ones, counted apart); more wait to be accepted.
    max_connections: usize = 1024, yaml "max_connections", env ["ASTROCYTE_MAX_CONNECTIONS"], example "4096";
    /// Milliseconds a REST or MCP client may take to send a request head (from connecting, or after its last reply on a kept-alive connection) before it is disconnected; an HTTP/2 connection with no request open is closed after as long, and one that stops answering pings too. gRPC connections must send their first bytes and answer pings within it.
    request_head_timeout_ms: u64 = 30_000, yaml "request_head_timeout_ms", env ["ASTROCYTE_REQUEST_HEAD_TIMEOUT_MS"], example "10000";
    /// gRPC port on the same host; unset serves no gRPC (0 picks a free port).
    grpc_port: Option<u16> = None, yaml "grpc.port", env ["ASTROCYTE_GRPC_PORT"], flag "--grpc-port", example "9090";
    /// PEM certificate chain for gRPC over TLS (with `grpc.tls_key`).
    grpc_tls_cert: Option<PathBuf> = None, yaml "grpc.tls_cert", env ["ASTROCYTE_GRPC_TLS_CERT"], example "/etc/astrocyte/cert.pem";
    /// PEM private key for gRPC over TLS (with `grpc.tls_cert`).
    grpc_tls_key: Option<PathBuf> = None, yaml "grpc.tls_key", env ["ASTROCYTE_GRPC_TLS_KEY"], example "/etc/astrocyte/key.pem";
    /// Request body cap in bytes (0 disables it).
    max_request_body_bytes: usize = astrocyte_server::config::DEFAULT_MAX_REQUEST_BODY_BYTES, yaml "max_request_body_bytes", env ["ASTROCYTE_MAX_REQUEST_BODY_BYTES"], example "1048576";
    /// Ceiling for `max_results` on every transport.
    max_result_limit: usize = astrocyte_server::config::DEFAULT_MAX_RESULT_LIMIT, yaml "max_result_limit", env ["ASTROCYTE_MAX_RESULT_LIMIT"], example "200";
    /// Log filter: a level (`error` … `trace`) or an env-filter directive.
    log_level: String = "info".into(), yaml "log_level", env ["ASTROCYTE_LOG_LEVEL", "ASTROCYTE_LOG"], example "debug";
    /// Label operation metrics with each tenant (series grow with the tenants; off: one `*` series).
    metrics_per_tenant: bool = false, yaml "metrics.per_tenant", env ["ASTROCYTE_METRICS_PER_TENANT"], example "true";
    /// Log format on standard error.
    log_format: LogFormat = LogFormat::Text, yaml "log_format", env ["ASTROCYTE_LOG_FORMAT"], example "json";
    /// Serve the memory inspector (web pages at `/ui`, behind the API's credentials).
    ui_enabled: bool = true, yaml "ui.enabled", env ["ASTROCYTE_UI_ENABLED"], example "false";

    ["Authentication"]
    /// How principals are authenticated.
    auth_mode: AuthMode = AuthMode::Dev, yaml "auth_mode", env ["ASTROCYTE_AUTH_MODE"], example "api_key";
    /// Allow dev auth (no authentication) on a non-loopback bind, behind a trusted proxy.
    allow_dev_auth: bool = false, yaml "allow_dev_auth", env ["ASTROCYTE_ALLOW_DEV_AUTH"], example "true";
    /// How requests map to tenants.
    tenant_extension: TenantExtensionKind = TenantExtensionKind::Default, yaml "tenant_extension", env ["ASTROCYTE_TENANT_EXTENSION"], example "api_key";
    /// The single static API key of `auth_mode: api_key` (then `X-Astrocyte-Principal` names the principal).
    api_key: Option<Secret> = None, yaml "api_key", env ["ASTROCYTE_API_KEY"], secret true, example "a-long-random-key";
    /// Server secret keying the hashes of issued API keys (at least 16 characters).
    api_key_secret: Option<Secret> = None, yaml "api_key_secret", env ["ASTROCYTE_API_KEY_SECRET"], secret true, example "a-server-secret-of-32-characters";
    /// Token guarding the admin routes; without it they answer only loopback callers of a loopback bind.
    admin_token: Option<Secret> = None, yaml "admin_token", env ["ASTROCYTE_ADMIN_TOKEN"], secret true, example "an-admin-token";
    /// HS256 shared secret for bearer tokens.
    jwt_secret: Option<Secret> = None, yaml "jwt.secret", env ["ASTROCYTE_JWT_SECRET"], secret true, example "a-shared-hs256-secret";
    /// Expected `aud` of HS256 tokens.
    jwt_audience: Option<String> = None, yaml "jwt.audience", env ["ASTROCYTE_JWT_AUDIENCE"], example "astrocyte";
    /// Expected `iss` of HS256 tokens.
    jwt_issuer: Option<String> = None, yaml "jwt.issuer", env ["ASTROCYTE_JWT_ISSUER"], example "https://issuer.example";
    /// Clock skew tolerated on a token's `exp` and `nbf`, in seconds.
    jwt_leeway_seconds: u64 = astrocyte_server::auth::jwt::DEFAULT_JWT_LEEWAY_SECONDS, yaml "jwt.leeway_seconds", env ["ASTROCYTE_JWT_LEEWAY_SECONDS"], example "5";
    /// The token claim naming the tenant (`tenant_extension: jwt`).
    jwt_tenant_claim: String = "tenant".into(), yaml "jwt.tenant_claim", env ["ASTROCYTE_JWT_TENANT_CLAIM"], example "org";
    /// JWKS URL for RS256/ES256 tokens (or `oidc.jwks_path`).
    oidc_jwks_url: Option<String> = None, yaml "oidc.jwks_url", env ["ASTROCYTE_OIDC_JWKS_URL"], example "https://idp.example/.well-known/jwks.json";
    /// JWKS file for RS256/ES256 tokens (or `oidc.jwks_url`).
    oidc_jwks_path: Option<PathBuf> = None, yaml "oidc.jwks_path", env ["ASTROCYTE_OIDC_JWKS_PATH"], example "/etc/astrocyte/jwks.json";
    /// Expected `iss` of JWKS tokens.
    oidc_issuer: Option<String> = None, yaml "oidc.issuer", env ["ASTROCYTE_OIDC_ISSUER"], example "https://idp.example";
    /// Expected `aud` of JWKS tokens.
    oidc_audience: Option<String> = None, yaml "oidc.audience", env ["ASTROCYTE_OIDC_AUDIENCE"], example "astrocyte";
    /// Actor type prefixed to `sub` when a JWKS token names no principal.
    oidc_actor_type: String = "user".into(), yaml "oidc.actor_type", env ["ASTROCYTE_OIDC_ACTOR_TYPE"], example "agent";

    ["Access control, limits and PII"]
    /// Enforce per-bank grants.
    access_enabled: bool = false, yaml "access_control.enabled", env ["ASTROCYTE_ACCESS_CONTROL_ENABLED"], example "true";
    /// What happens when no grant matches.
    access_default_policy: DefaultPolicy = DefaultPolicy::OwnerOnly, yaml "access_control.default_policy", env ["ASTROCYTE_ACCESS_CONTROL_DEFAULT_POLICY"], example "deny";
    /// Grants of read/write/forget/admin (or `*`) on banks (or `*`) to principals (or `*`).
    access_grants: Grants = Grants::default(), yaml "access_grants", env ["ASTROCYTE_ACCESS_GRANTS"], example r#"[{"bank_id": "*", "principal": "agent:bot", "permissions": ["read", "write"]}]"#;
    /// Requests per second per tenant (0 disables; unset: 100 on a public bind, none on loopback).
    rate_limit_per_second: Option<u32> = None, yaml "rate_limit_per_second", env ["ASTROCYTE_RATE_LIMIT_PER_SECOND"], example "50";
    /// Retains per minute per bank (0 or unset: unlimited).
    retain_per_minute: Option<u32> = None, yaml "homeostasis.rate_limits.retain_per_minute", env ["ASTROCYTE_RATE_LIMIT_RETAIN_PER_MINUTE"], example "600";
    /// Recalls, histories and browsing reads (listings, a memory, the change feed, the inspector's bank pages) per minute per bank (0 or unset: unlimited).
    recall_per_minute: Option<u32> = None, yaml "homeostasis.rate_limits.recall_per_minute", env ["ASTROCYTE_RATE_LIMIT_RECALL_PER_MINUTE"], example "600";
    /// Reflects per minute per bank (0 or unset: unlimited).
    reflect_per_minute: Option<u32> = None, yaml "homeostasis.rate_limits.reflect_per_minute", env ["ASTROCYTE_RATE_LIMIT_REFLECT_PER_MINUTE"], example "60";
    /// Retains per UTC day per bank (unset: unlimited).
    retain_per_day: Option<u64> = None, yaml "homeostasis.quotas.retain_per_day", env ["ASTROCYTE_QUOTA_RETAIN_PER_DAY"], example "10000";
    /// Reflects per UTC day per bank (unset: unlimited).
    reflect_per_day: Option<u64> = None, yaml "homeostasis.quotas.reflect_per_day", env ["ASTROCYTE_QUOTA_REFLECT_PER_DAY"], example "1000";
    /// PII detection on retained content (REST, gRPC and both MCP transports).
    pii_mode: PiiMode = PiiMode::Regex, yaml "barriers.pii.mode", env ["ASTROCYTE_PII_MODE"], example "disabled";
    /// What to do with detected PII.
    pii_action: PiiAction = PiiAction::Redact, yaml "barriers.pii.action", env ["ASTROCYTE_PII_ACTION"], example "reject";
    /// Per-type actions that override `barriers.pii.action`.
    pii_type_overrides: PiiOverrides = PiiOverrides::default(), yaml "barriers.pii.type_overrides", env ["ASTROCYTE_PII_TYPE_OVERRIDES"], example r#"{"credit_card": {"action": "reject"}}"#;

    ["MCP"]
    /// The bank MCP tools use when a call names none.
    mcp_default_bank: Option<String> = None, yaml "mcp.default_bank_id", env ["ASTROCYTE_MCP_DEFAULT_BANK"], example "notes";
    /// Offer `memory_reflect`.
    mcp_expose_reflect: bool = true, yaml "mcp.expose_reflect", env ["ASTROCYTE_MCP_EXPOSE_REFLECT"], example "false";
    /// Offer `memory_forget` (an agent deleting memories is opt-in).
    mcp_expose_forget: bool = false, yaml "mcp.expose_forget", env ["ASTROCYTE_MCP_EXPOSE_FORGET"], example "true";
    /// Ceiling for `max_results` over MCP.
    mcp_max_results_limit: usize = DEFAULT_MAX_RESULTS_LIMIT, yaml "mcp.max_results_limit", env ["ASTROCYTE_MCP_MAX_RESULTS_LIMIT"], example "20";
    /// `Host` values MCP over HTTP accepts (`*`: any); stops DNS rebinding.
    mcp_allowed_hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()], yaml "mcp.allowed_hosts", env ["ASTROCYTE_MCP_ALLOWED_HOSTS"], example "memory.example.com";
    /// `Origin` values MCP over HTTP accepts (`*`: any); requests without one always pass.
    mcp_allowed_origins: Vec<String> = Vec::new(), yaml "mcp.allowed_origins", env ["ASTROCYTE_MCP_ALLOWED_ORIGINS"], example "https://app.example.com";
    /// Serve MCP without any authentication on a non-loopback bind.
    mcp_allow_anonymous: bool = false, yaml "mcp.allow_anonymous", env ["ASTROCYTE_MCP_ALLOW_ANONYMOUS"], example "true";

    ["Models"]
    /// The embedding provider.
    embedder: EmbedderKind = EmbedderKind::Local, yaml "embedder", env ["ASTROCYTE_EMBEDDER"], flag "--embedder", example "hashing";
    /// Directory of the local model (`bash scripts/fetch-model.sh DIR` fetches it).
    model_dir: PathBuf = PathBuf::from("models/bge-small-en-v1.5"), yaml "model_dir", env ["ASTROCYTE_MODEL_DIR"], flag "--model-dir", example "/opt/astrocyte/model";
    /// Threads per forward pass of the local model's retain lane (0: one per core).
    model_threads: usize = 0, yaml "model_threads", env ["ASTROCYTE_MODEL_THREADS"], example "2";
    /// Threads of the local model's query lane, a second copy of the model that embeds recall queries so they never wait behind a retain's batches (0: queries share the retain lane). One thread leaves the other cores to the keyword search that runs beside it.
    model_query_threads: usize = 1, yaml "model_query_threads", env ["ASTROCYTE_MODEL_QUERY_THREADS"], example "0";
    /// Base URL of an OpenAI-compatible embeddings API (`embedder: openai`).
    embeddings_url: Option<String> = None, yaml "embeddings.url", env ["ASTROCYTE_EMBEDDINGS_URL"], flag "--embeddings-url", example "http://127.0.0.1:8000/v1";
    /// Embedding model name (`embedder: openai`).
    embeddings_model: Option<String> = None, yaml "embeddings.model", env ["ASTROCYTE_EMBEDDINGS_MODEL"], flag "--embeddings-model", example "text-embedding-3-small";
    /// Embedding dimension (`embedder: openai`).
    embeddings_dimension: Option<usize> = None, yaml "embeddings.dimension", env ["ASTROCYTE_EMBEDDINGS_DIMENSION"], flag "--embeddings-dimension", example "1536";
    /// API key of the embeddings API.
    embeddings_api_key: Option<Secret> = None, yaml "embeddings.api_key", env ["ASTROCYTE_EMBEDDINGS_API_KEY"], secret true, example "sk-embeddings";
    /// Base URL of an OpenAI-compatible chat API; with `llm.model`, reflect uses it.
    llm_base_url: Option<String> = None, yaml "llm.base_url", env ["ASTROCYTE_LLM_BASE_URL"], example "http://127.0.0.1:8000/v1";
    /// Chat model name.
    llm_model: Option<String> = None, yaml "llm.model", env ["ASTROCYTE_LLM_MODEL"], example "gpt-4o-mini";
    /// API key of the chat API.
    llm_api_key: Option<Secret> = None, yaml "llm.api_key", env ["ASTROCYTE_LLM_API_KEY"], secret true, example "sk-chat";
    /// Seconds before a chat request times out.
    llm_timeout_seconds: f64 = astrocyte_providers::OpenAiChatConfig::DEFAULT_TIMEOUT.as_secs_f64(), yaml "llm.timeout_seconds", env ["ASTROCYTE_LLM_TIMEOUT_SECONDS"], example "60";
    /// Retries of a failed chat request.
    llm_max_retries: u32 = astrocyte_providers::OpenAiChatConfig::DEFAULT_MAX_RETRIES, yaml "llm.max_retries", env ["ASTROCYTE_LLM_MAX_RETRIES"], example "5";

    ["Retrieval"]
    /// Cosine similarity at or above which a new chunk is a near-duplicate of a stored one.
    dedup_threshold: f32 = engine().dedup_threshold, yaml "retrieval.dedup_threshold", env ["ASTROCYTE_DEDUP_THRESHOLD"], example "0.9";
    /// Candidates fetched per strategy, as a multiple of `max_results`.
    overfetch: usize = engine().overfetch, yaml "retrieval.overfetch", env ["ASTROCYTE_RETRIEVAL_OVERFETCH"], example "8";
    /// `max_results` when a caller gives none (engine callers; the transports default to 10).
    default_max_results: usize = engine().default_max_results, yaml "retrieval.default_max_results", env ["ASTROCYTE_RETRIEVAL_DEFAULT_MAX_RESULTS"], example "20";
    /// Memories reflect reads.
    reflect_max_results: usize = engine().reflect_max_results, yaml "retrieval.reflect_max_results", env ["ASTROCYTE_REFLECT_MAX_RESULTS"], example "12";
    /// Texts embedded per provider call.
    embed_batch_size: usize = engine().embed_batch_size, yaml "retrieval.embed_batch_size", env ["ASTROCYTE_EMBED_BATCH_SIZE"], example "32";
    /// Embed the date and retrieval context with the text (measured worse with the local model).
    embed_context: bool = engine().embed_context, yaml "retrieval.embed_context", env ["ASTROCYTE_EMBED_CONTEXT"], example "true";
    /// Neighbouring chunks of the same retain added to each chunk's keyword context.
    neighbour_context: usize = engine().neighbour_context, yaml "retrieval.neighbour_context", env ["ASTROCYTE_NEIGHBOUR_CONTEXT"], example "2";
    /// Reciprocal-rank-fusion constant k (measured on LoCoMo).
    rrf_k: f32 = engine().fusion.k, yaml "retrieval.rrf_k", env ["ASTROCYTE_RRF_K"], example "60";
    /// Weight of the semantic ranking in fusion (measured on LoCoMo).
    semantic_weight: f32 = engine().fusion.semantic_weight, yaml "retrieval.semantic_weight", env ["ASTROCYTE_SEMANTIC_WEIGHT"], example "1.0";
    /// Weight of the keyword (BM25) ranking in fusion.
    keyword_weight: f32 = engine().fusion.keyword_weight, yaml "retrieval.keyword_weight", env ["ASTROCYTE_KEYWORD_WEIGHT"], example "0.8";
    /// Weight of the recency ranking in fusion.
    recency_weight: f32 = engine().fusion.recency_weight, yaml "retrieval.recency_weight", env ["ASTROCYTE_RECENCY_WEIGHT"], example "0.1";
    /// Weight of the entity ranking (memories naming the query's people, places, organisations; 0 = off).
    entity_weight: f32 = engine().fusion.entity_weight, yaml "retrieval.entity_weight", env ["ASTROCYTE_ENTITY_WEIGHT"], example "0.5";
    /// Half-life of recency, in days.
    recency_half_life_days: f32 = engine().fusion.recency_half_life_days, yaml "retrieval.recency_half_life_days", env ["ASTROCYTE_RECENCY_HALF_LIFE_DAYS"], example "30";
    /// How much a time expression in the query ("in May 2023", "last week", "when …") lifts the memories it fits (0 = off).
    time_boost: f32 = engine().fusion.time_boost, yaml "retrieval.time_boost", env ["ASTROCYTE_TIME_BOOST"], example "0.3";
    /// How many of the top fused candidates the feature reranker reorders (0 = off; measured on LoCoMo).
    rerank_depth: usize = engine().fusion.rerank_depth, yaml "retrieval.rerank_depth", env ["ASTROCYTE_RERANK_DEPTH"], example "40";
    /// Candidates the semantic strategy fetches: at least the recall's `max_results`, at most what the keyword strategy fetches. Its vector search's cost follows it (measured on LoCoMo and `bench`).
    semantic_depth: usize = engine().fusion.semantic_depth, yaml "retrieval.semantic_depth", env ["ASTROCYTE_SEMANTIC_DEPTH"], example "50";
    /// Longest chunk, in characters.
    chunk_max_chars: usize = engine().chunking.max_chars, yaml "chunking.max_chars", env ["ASTROCYTE_CHUNK_MAX_CHARS"], example "1024";
    /// Characters shared by consecutive chunks.
    chunk_overlap_chars: usize = engine().chunking.overlap_chars, yaml "chunking.overlap_chars", env ["ASTROCYTE_CHUNK_OVERLAP_CHARS"], example "100";

    ["Input limits"]
    /// Longest retained content, in characters.
    max_content_chars: usize = engine().limits.max_content_chars, yaml "limits.max_content_chars", env ["ASTROCYTE_MAX_CONTENT_CHARS"], example "100000";
    /// Most tags per memory.
    max_tags: usize = engine().limits.max_tags, yaml "limits.max_tags", env ["ASTROCYTE_MAX_TAGS"], example "20";
    /// Longest tag, in characters.
    max_tag_chars: usize = engine().limits.max_tag_chars, yaml "limits.max_tag_chars", env ["ASTROCYTE_MAX_TAG_CHARS"], example "64";
    /// Largest metadata, in bytes of JSON.
    max_metadata_bytes: usize = engine().limits.max_metadata_bytes, yaml "limits.max_metadata_bytes", env ["ASTROCYTE_MAX_METADATA_BYTES"], example "16384";
    /// Most metadata keys per memory.
    max_metadata_keys: usize = engine().limits.max_metadata_keys, yaml "limits.max_metadata_keys", env ["ASTROCYTE_MAX_METADATA_KEYS"], example "64";
    /// Longest metadata key, in characters.
    max_metadata_key_chars: usize = engine().limits.max_metadata_key_chars, yaml "limits.max_metadata_key_chars", env ["ASTROCYTE_MAX_METADATA_KEY_CHARS"], example "64";
    /// Longest metadata string value, in characters.
    max_metadata_value_chars: usize = engine().limits.max_metadata_value_chars, yaml "limits.max_metadata_value_chars", env ["ASTROCYTE_MAX_METADATA_VALUE_CHARS"], example "1024";
    /// Metadata keys dropped on retain (they look like credentials); the memory is stored without them.
    blocked_metadata_keys: Vec<String> = engine().limits.blocked_metadata_keys, yaml "limits.blocked_metadata_keys", env ["ASTROCYTE_BLOCKED_METADATA_KEYS"], example "api_key,password,token,secret,ssn";
    /// Longest query, in characters.
    max_query_chars: usize = engine().limits.max_query_chars, yaml "limits.max_query_chars", env ["ASTROCYTE_MAX_QUERY_CHARS"], example "2000";

    ["Background workers"]
    /// How often workers look for tenants with due jobs, in milliseconds (also the first wait before re-polling an idle tenant).
    worker_poll_interval_ms: u64 = millis(workers().poll_interval), yaml "workers.poll_interval_ms", env ["ASTROCYTE_WORKER_POLL_INTERVAL_MS"], example "500";
    /// How often workers re-list the tenants, in milliseconds; with PostgreSQL (whose job signals every process shares, so the list only serves to forget dropped tenants) once per this much per thousand tenants.
    worker_tenant_refresh_ms: u64 = millis(workers().tenant_refresh_interval), yaml "workers.tenant_refresh_ms", env ["ASTROCYTE_WORKER_TENANT_REFRESH_MS"], example "10000";
    /// How long a claimed job is leased before another worker may take it over, in milliseconds.
    worker_lease_ms: u64 = millis(workers().lease), yaml "workers.lease_ms", env ["ASTROCYTE_WORKER_LEASE_MS"], example "120000";
    /// First retry delay of a failed job, in milliseconds (doubles per attempt).
    worker_base_backoff_ms: u64 = millis(workers().base_backoff), yaml "workers.base_backoff_ms", env ["ASTROCYTE_WORKER_BASE_BACKOFF_MS"], example "2000";
    /// Longest retry delay, in milliseconds.
    worker_max_backoff_ms: u64 = millis(workers().max_backoff), yaml "workers.max_backoff_ms", env ["ASTROCYTE_WORKER_MAX_BACKOFF_MS"], example "600000";
    /// Worker tasks per process: tenants worked on at once, however many tenants there are.
    worker_concurrency: usize = workers().concurrency, yaml "workers.concurrency", env ["ASTROCYTE_WORKER_CONCURRENCY"], example "16";
    /// Embedded store: longest wait between two polls of a tenant with no work, in milliseconds (for jobs another process queued; this process's own are seen at once).
    worker_idle_poll_max_ms: u64 = millis(workers().idle_poll_max), yaml "workers.idle_poll_max_ms", env ["ASTROCYTE_WORKER_IDLE_POLL_MAX_MS"], example "300000";
    /// Embedded store: most polls of idle tenants per second, over all tenants.
    worker_idle_polls_per_second: u32 = workers().idle_polls_per_second, yaml "workers.idle_polls_per_second", env ["ASTROCYTE_WORKER_IDLE_POLLS_PER_SECOND"], example "10";

    ["Tracing"]
    /// OTLP/HTTP collector base URL (`/v1/traces` is appended); unset exports nothing.
    otlp_endpoint: Option<String> = None, yaml "otlp.endpoint", env ["OTEL_EXPORTER_OTLP_ENDPOINT"], example "http://127.0.0.1:4318";
    /// Full OTLP/HTTP traces URL; wins over `otlp.endpoint`.
    otlp_traces_endpoint: Option<String> = None, yaml "otlp.traces_endpoint", env ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], example "http://127.0.0.1:4318/v1/traces";
    /// OTLP protocol; only `http/protobuf` is built in, any other value stops start-up.
    otlp_protocol: String = "http/protobuf".into(), yaml "otlp.protocol", env ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"], example "http/json";
    /// `service.name` of exported spans.
    otlp_service_name: String = astrocyte_server::config::DEFAULT_OTEL_SERVICE_NAME.into(), yaml "otlp.service_name", env ["OTEL_SERVICE_NAME"], example "astrocyte-eu";
    /// Turn trace export off even when an endpoint is set.
    otlp_disabled: bool = false, yaml "otlp.disabled", env ["OTEL_SDK_DISABLED"], example "true";
}
