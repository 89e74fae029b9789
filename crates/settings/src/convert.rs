//! From settings to each component's configuration, with the rules that span several settings.
//! Each `Loaded` method builds one component's configuration; errors name the setting as the
//! user set it (its environment variable, flag, or YAML path).

use std::time::Duration;

use astrocyte_core::{BankId, EngineConfig, Schema};
use astrocyte_providers::OpenAiChatConfig;
use astrocyte_server::config::{
    ConfigError, JwksSource, OtlpSettings, RateLimitSettings, TlsFiles,
};
use astrocyte_server::mcp::{AllowList, McpConfig};
use astrocyte_server::ServerConfig;
use astrocyte_store_postgres::{PostgresOptions, ReplicaOptions};
use astrocyte_store_sqlite::SqliteOptions;
use astrocyte_workers::WorkerConfig;

use crate::load::{Loaded, Origin, SettingsError};
use crate::table::TABLE;

/// Per-tenant requests per second applied on a public bind when nothing is set.
pub use astrocyte_server::config::DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND;

fn config_error(error: ConfigError) -> SettingsError {
    match error {
        ConfigError::Invalid { setting, message } => SettingsError(format!("{setting}: {message}")),
    }
}

impl Loaded {
    /// How the user named `field`: the variable or flag that set it, else its YAML path.
    pub fn name_of(&self, field: &str) -> String {
        let spec = TABLE.iter().find(|s| s.field == field);
        match (self.origin(field), spec) {
            (Origin::Env(var), _) => var.clone(),
            (Origin::Flag(flag), _) => flag.to_string(),
            (_, Some(spec)) => spec.yaml.to_string(),
            (_, None) => field.to_string(),
        }
    }

    fn invalid(&self, field: &str, message: impl std::fmt::Display) -> SettingsError {
        SettingsError(format!("{}: {message}", self.name_of(field)))
    }

    fn schema(&self, field: &str, raw: &str) -> Result<Schema, SettingsError> {
        Schema::new(raw).map_err(|e| self.invalid(field, e))
    }

    /// The gateway's configuration, validated.
    pub fn server_config(&self) -> Result<ServerConfig, SettingsError> {
        let s = &self.settings;
        let mut c = ServerConfig {
            host: s.host.clone(),
            allowed_hosts: s.allowed_hosts.clone(),
            max_connections: s.max_connections,
            request_head_timeout: std::time::Duration::from_millis(
                s.request_head_timeout_ms.max(1),
            ),
            port: s.port,
            grpc_port: s.grpc_port,
            data_dir: s.data_dir.clone(),
            database_url: s.database_url.clone(),
            database_schema: self.schema("database_schema", &s.database_schema)?,
            auth_mode: s.auth_mode,
            allow_dev_auth: s.allow_dev_auth,
            api_key: s.api_key.clone(),
            tenant_extension: s.tenant_extension,
            api_key_secret: s.api_key_secret.clone(),
            admin_token: s.admin_token.clone(),
            max_request_body_bytes: (s.max_request_body_bytes > 0)
                .then_some(s.max_request_body_bytes),
            max_result_limit: s.max_result_limit,
            portability_roots: s.portability_roots.clone(),
            log_format: s.log_format,
            log_level: s.log_level.to_ascii_lowercase(),
            metrics_per_tenant: s.metrics_per_tenant,
            ui_enabled: s.ui_enabled,
            ..ServerConfig::default()
        };
        if s.max_result_limit == 0 {
            return Err(self.invalid("max_result_limit", "must be at least 1"));
        }
        c.grpc_tls = match (&s.grpc_tls_cert, &s.grpc_tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => return Err(self.invalid("grpc_tls_cert", "needs grpc.tls_key too")),
            (None, Some(_)) => return Err(self.invalid("grpc_tls_key", "needs grpc.tls_cert too")),
        };

        c.jwt.hs256_secret = s.jwt_secret.clone();
        c.jwt.hs256_audience = s.jwt_audience.clone();
        c.jwt.hs256_issuer = s.jwt_issuer.clone();
        c.jwt.tenant_claim = s.jwt_tenant_claim.clone();
        c.jwt.leeway_seconds = s.jwt_leeway_seconds;
        c.jwt.jwks = match (&s.oidc_jwks_url, &s.oidc_jwks_path) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "oidc_jwks_url",
                    "set either oidc.jwks_url or oidc.jwks_path, not both",
                ))
            }
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(
                        self.invalid("oidc_jwks_url", format!("{url:?} is not an http(s) URL"))
                    );
                }
                Some(JwksSource::Url(url.clone()))
            }
            (None, Some(path)) => Some(JwksSource::File(path.clone())),
            (None, None) => None,
        };
        c.jwt.oidc_issuer = s.oidc_issuer.clone();
        c.jwt.oidc_audience = s.oidc_audience.clone();
        c.jwt.oidc_actor_type = s.oidc_actor_type.to_ascii_lowercase();

        let nonzero = |v: Option<u32>| v.filter(|n| *n > 0);
        c.rate_limits = RateLimitSettings {
            tenant_per_second: match s.rate_limit_per_second {
                Some(n) => (n > 0).then_some(n),
                // Default-on only for a public bind: loopback dev, tests and benchmarks stay unlimited.
                None if astrocyte_server::config::is_loopback_host(&s.host) => None,
                None => Some(DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND),
            },
            retain_per_minute: nonzero(s.retain_per_minute),
            recall_per_minute: nonzero(s.recall_per_minute),
            reflect_per_minute: nonzero(s.reflect_per_minute),
        };
        c.quotas.retain_per_day = s.retain_per_day;
        c.quotas.reflect_per_day = s.reflect_per_day;

        c.pii.mode = s.pii_mode;
        c.pii.action = s.pii_action;
        c.pii.type_overrides = s.pii_type_overrides.0.clone();

        c.access.enabled = s.access_enabled;
        c.access.default_policy = s.access_default_policy;
        c.access.grants = s.access_grants.0.clone();

        // Export/import roots must exist now, so a typo fails at start-up.
        for root in &s.portability_roots {
            if !root.is_dir() {
                return Err(self.invalid(
                    "portability_roots",
                    format!("{} is not an existing directory", root.display()),
                ));
            }
        }
        c.otlp = self.otlp()?;
        c.validate().map_err(config_error)?;
        Ok(c)
    }

    /// OTLP export: the traces endpoint wins over the base endpoint; off when unset or disabled.
    fn otlp(&self) -> Result<Option<OtlpSettings>, SettingsError> {
        let s = &self.settings;
        if s.otlp_disabled {
            return Ok(None);
        }
        let endpoint = match (&s.otlp_traces_endpoint, &s.otlp_endpoint) {
            (Some(traces), _) => Some(("otlp_traces_endpoint", traces.clone(), false)),
            (None, Some(base)) => Some(("otlp_endpoint", base.clone(), true)),
            (None, None) => None,
        };
        let Some((field, raw, append)) = endpoint else {
            return Ok(None);
        };
        let url = reqwest_like_url(&raw).ok_or_else(|| {
            self.invalid(field, format!("{raw:?} is not an http(s) URL with a host"))
        })?;
        if s.otlp_protocol != "http/protobuf" {
            return Err(self.invalid(
                "otlp_protocol",
                format!(
                    "{:?} is not supported (only http/protobuf)",
                    s.otlp_protocol
                ),
            ));
        }
        Ok(Some(OtlpSettings {
            traces_endpoint: if append {
                format!("{}/v1/traces", url.trim_end_matches('/'))
            } else {
                url
            },
            service_name: s.otlp_service_name.clone(),
        }))
    }

    /// The MCP tools' configuration (the PII barrier is the server's, for stdio too).
    pub fn mcp_config(&self) -> Result<McpConfig, SettingsError> {
        let s = &self.settings;
        let default_bank = s
            .mcp_default_bank
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .map(|b| BankId::new(b.trim()).map_err(|e| self.invalid("mcp_default_bank", e)))
            .transpose()?;
        let mut pii = astrocyte_server::config::PiiSettings {
            mode: s.pii_mode,
            action: s.pii_action,
            ..Default::default()
        };
        pii.type_overrides = s.pii_type_overrides.0.clone();
        let config = McpConfig {
            default_bank,
            expose_reflect: s.mcp_expose_reflect,
            expose_forget: s.mcp_expose_forget,
            max_results_limit: s.mcp_max_results_limit,
            allowed_hosts: AllowList::of(s.mcp_allowed_hosts.clone()),
            allowed_origins: AllowList::of(s.mcp_allowed_origins.clone()),
            allow_anonymous: s.mcp_allow_anonymous,
            pii,
        };
        config.validate().map_err(config_error)?;
        Ok(config)
    }

    /// The engine's tuning.
    pub fn engine_config(&self) -> EngineConfig {
        let s = &self.settings;
        let mut c = EngineConfig {
            dedup_threshold: s.dedup_threshold,
            overfetch: s.overfetch,
            max_result_limit: s.max_result_limit,
            default_max_results: s.default_max_results,
            embed_batch_size: s.embed_batch_size,
            reflect_max_results: s.reflect_max_results,
            embed_context: s.embed_context,
            neighbour_context: s.neighbour_context,
            ..EngineConfig::default()
        };
        c.fusion.k = s.rrf_k;
        c.fusion.semantic_weight = s.semantic_weight;
        c.fusion.keyword_weight = s.keyword_weight;
        c.fusion.recency_weight = s.recency_weight;
        c.fusion.entity_weight = s.entity_weight;
        c.fusion.recency_half_life_days = s.recency_half_life_days;
        c.fusion.time_boost = s.time_boost;
        c.fusion.rerank_depth = s.rerank_depth;
        c.fusion.semantic_depth = s.semantic_depth;
        c.chunking.max_chars = s.chunk_max_chars;
        c.chunking.overlap_chars = s.chunk_overlap_chars;
        c.limits.max_content_chars = s.max_content_chars;
        c.limits.max_tags = s.max_tags;
        c.limits.max_tag_chars = s.max_tag_chars;
        c.limits.max_metadata_bytes = s.max_metadata_bytes;
        c.limits.max_metadata_keys = s.max_metadata_keys;
        c.limits.max_metadata_key_chars = s.max_metadata_key_chars;
        c.limits.max_metadata_value_chars = s.max_metadata_value_chars;
        c.limits.blocked_metadata_keys = s.blocked_metadata_keys.clone();
        c.limits.max_query_chars = s.max_query_chars;
        c
    }

    /// The background workers' tuning.
    pub fn worker_config(&self) -> WorkerConfig {
        let s = &self.settings;
        WorkerConfig {
            poll_interval: Duration::from_millis(s.worker_poll_interval_ms),
            tenant_refresh_interval: Duration::from_millis(s.worker_tenant_refresh_ms),
            lease: Duration::from_millis(s.worker_lease_ms),
            base_backoff: Duration::from_millis(s.worker_base_backoff_ms),
            max_backoff: Duration::from_millis(s.worker_max_backoff_ms),
            concurrency: s.worker_concurrency,
            idle_poll_max: Duration::from_millis(s.worker_idle_poll_max_ms),
            idle_polls_per_second: s.worker_idle_polls_per_second,
            ..WorkerConfig::default()
        }
    }

    /// The embedded store's options.
    pub fn sqlite_options(&self) -> SqliteOptions {
        let s = &self.settings;
        let mut o = SqliteOptions {
            durable_fsync: s.sqlite_durable_fsync,
            busy_timeout: Duration::from_millis(s.sqlite_busy_timeout_ms),
            max_idle_readers: s.sqlite_max_idle_readers,
            snapshot_every: s.sqlite_snapshot_every,
            exact_scan_limit: s.sqlite_exact_scan_limit,
            keyword_posting_budget: s.sqlite_keyword_posting_budget,
            max_open_tenants: s.sqlite_max_open_tenants,
            ..SqliteOptions::default()
        };
        o.hnsw.ef_search = s.sqlite_hnsw_ef_search;
        o
    }

    /// The PostgreSQL store's options.
    pub fn postgres_options(&self) -> PostgresOptions {
        let s = &self.settings;
        PostgresOptions {
            pool_size: s.postgres_pool_size,
            statement_timeout: (s.postgres_statement_timeout_ms > 0)
                .then(|| Duration::from_millis(s.postgres_statement_timeout_ms)),
            pool_wait_timeout: Duration::from_millis(s.postgres_pool_wait_timeout_ms),
            connection_max_uses: s.postgres_connection_max_uses,
            auto_create_tenants: s.auto_create_tenants,
            role_prefix: s.role_prefix.clone(),
            migration_concurrency: s.postgres_migration_concurrency,
            replicas: ReplicaOptions {
                urls: s.postgres_replica_urls.clone(),
                max_lag: Duration::from_millis(s.postgres_replica_max_lag_ms),
                wait: Duration::from_millis(s.postgres_replica_wait_ms),
            },
            hnsw_m: s.postgres_hnsw_m,
            hnsw_ef_construction: s.postgres_hnsw_ef_construction,
            hnsw_ef_search: s.postgres_hnsw_ef_search,
            keyword_posting_budget: s.postgres_keyword_posting_budget,
            bulk_load_below: s.postgres_import_builds_index_below,
            index_build_memory_mb: s.postgres_index_build_memory_mb,
            server_urls: s.postgres_server_urls.clone(),
            placement: s.postgres_placement,
        }
    }

    /// The chat model reflect uses, when `llm.base_url` and `llm.model` are both set.
    pub fn llm_config(&self) -> Result<Option<OpenAiChatConfig>, SettingsError> {
        let s = &self.settings;
        match (&s.llm_base_url, &s.llm_model) {
            (Some(url), Some(model)) => {
                let mut config = OpenAiChatConfig::new(url.clone(), model.clone());
                config.api_key = s.llm_api_key.as_ref().map(|k| k.expose().to_string());
                if s.llm_timeout_seconds <= 0.0 {
                    return Err(self.invalid("llm_timeout_seconds", "must be more than 0"));
                }
                config.timeout = Duration::from_secs_f64(s.llm_timeout_seconds);
                config.max_retries = s.llm_max_retries;
                Ok(Some(config))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.invalid("llm_base_url", "needs llm.model too")),
            (None, Some(_)) => Err(self.invalid("llm_model", "needs llm.base_url too")),
        }
    }
}

/// `raw` when it is an http(s) URL with a host.
fn reqwest_like_url(raw: &str) -> Option<String> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!host.is_empty() && !host.starts_with(':')).then(|| raw.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::load::load_yaml;

    fn with(vars: &[(&str, &str)], yaml: &str) -> crate::Loaded {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_yaml(Path::new("t.yaml"), yaml, env).expect("loads")
    }

    #[test]
    fn cross_setting_rules_name_what_the_user_set() {
        let error = with(&[("ASTROCYTE_DATABASE_SCHEMA", "tenant-bad")], "")
            .server_config()
            .expect_err("invalid schema");
        assert!(
            error.0.starts_with("ASTROCYTE_DATABASE_SCHEMA: "),
            "{error}"
        );
        let error = with(&[], "database_schema: tenant-bad\n")
            .server_config()
            .expect_err("invalid schema");
        assert!(error.0.starts_with("database_schema: "), "{error}");

        let error = with(&[("ASTROCYTE_HOST", "0.0.0.0")], "")
            .server_config()
            .expect_err("dev auth on a public bind");
        assert!(error.0.contains("ASTROCYTE_AUTH_MODE"), "{error}");
        let public = with(
            &[
                ("ASTROCYTE_HOST", "0.0.0.0"),
                ("ASTROCYTE_ALLOW_DEV_AUTH", "yes"),
            ],
            "",
        )
        .server_config()
        .expect("allowed");
        assert_eq!(
            public.rate_limits.tenant_per_second,
            Some(super::DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND)
        );
        let loopback = with(&[], "").server_config().expect("defaults");
        assert_eq!(loopback.rate_limits.tenant_per_second, None);

        let error = with(
            &[
                ("ASTROCYTE_OIDC_JWKS_URL", "https://idp/jwks"),
                ("ASTROCYTE_OIDC_JWKS_PATH", "/jwks.json"),
            ],
            "",
        )
        .server_config()
        .expect_err("both");
        assert!(error.0.starts_with("ASTROCYTE_OIDC_JWKS_URL"), "{error}");
        let error = with(&[("ASTROCYTE_GRPC_TLS_CERT", "/c.pem")], "")
            .server_config()
            .expect_err("half");
        assert!(error.0.contains("grpc.tls_key"), "{error}");
    }

    #[test]
    fn otlp_endpoints_combine_as_the_standard_says() {
        let base = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")], "")
            .server_config()
            .expect("valid")
            .otlp
            .expect("on");
        assert_eq!(base.traces_endpoint, "http://c:4318/v1/traces");
        let traces = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
            ],
            "",
        )
        .server_config()
        .expect("valid")
        .otlp
        .expect("on");
        assert_eq!(traces.traces_endpoint, "http://t:1/x");
        let off = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            "",
        )
        .server_config()
        .expect("valid");
        assert!(off.otlp.is_none());
        let error = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")], "")
            .server_config()
            .expect_err("not http");
        assert!(
            error.0.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{error}"
        );
    }

    #[test]
    fn placement_settings_reach_the_postgres_options() {
        let defaults = with(&[], "").postgres_options();
        assert!(defaults.server_urls.is_empty());
        assert_eq!(
            defaults.placement,
            astrocyte_store_postgres::Placement::LeastTenants
        );
        let options = with(
            &[(
                "ASTROCYTE_POSTGRES_SERVER_URLS",
                "postgres://a@db2/x,postgres://a@db3/x",
            )],
            "postgres:\n  placement: home\n",
        )
        .postgres_options();
        assert_eq!(
            options.server_urls,
            vec![
                "postgres://a@db2/x".to_string(),
                "postgres://a@db3/x".to_string()
            ]
        );
        assert_eq!(options.placement, astrocyte_store_postgres::Placement::Home);
    }

    #[test]
    fn hnsw_settings_reach_the_postgres_options() {
        let defaults = with(&[], "").postgres_options();
        let store_defaults = astrocyte_store_postgres::PostgresOptions::default();
        assert_eq!(
            (
                defaults.hnsw_m,
                defaults.hnsw_ef_construction,
                defaults.hnsw_ef_search
            ),
            (
                store_defaults.hnsw_m,
                store_defaults.hnsw_ef_construction,
                store_defaults.hnsw_ef_search
            )
        );
        // YAML sets two, the environment overrides one of them.
        let options = with(
            &[("ASTROCYTE_POSTGRES_HNSW_EF_SEARCH", "55")],
            "postgres:\n  hnsw_m: 12\n  hnsw_ef_construction: 48\n  hnsw_ef_search: 20\n",
        )
        .postgres_options();
        assert_eq!(
            (
                options.hnsw_m,
                options.hnsw_ef_construction,
                options.hnsw_ef_search
            ),
            (12, 48, 55)
        );
    }

    #[test]
    fn mcp_rules_apply_to_loaded_values() {
        let error = with(&[("ASTROCYTE_MCP_ALLOWED_HOSTS", ",")], "")
            .mcp_config()
            .expect_err("empty host list");
        assert!(error.0.contains("ASTROCYTE_MCP_ALLOWED_HOSTS"), "{error}");
        let error = with(&[], "mcp:\n  default_bank_id: not a bank!\n")
            .mcp_config()
            .expect_err("bad bank");
        assert!(error.0.starts_with("mcp.default_bank_id"), "{error}");
        let mcp = with(
            &[("ASTROCYTE_PII_ACTION", "reject")],
            "mcp:\n  expose_forget: on\n  allowed_hosts: ['*']\n",
        )
        .mcp_config()
        .expect("valid");
        assert!(mcp.expose_forget);
        assert_eq!(mcp.allowed_hosts, astrocyte_server::mcp::AllowList::Any);
        assert_eq!(
            mcp.pii.action,
            astrocyte_server::policy::pii::PiiAction::Reject,
            "stdio MCP gets the server's PII barrier"
        );
    }
}
