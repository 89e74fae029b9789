//! The server's validated configuration. Values are loaded by `astrocyte-settings` (the one
//! table of every setting, with its environment variable, YAML path and flag); this module holds
//! the types and the cross-setting rules ([`ServerConfig::validate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use astrocyte_core::tenancy::Schema;

use crate::access::AccessPolicy;
use crate::policy::pii::{PiiAction, PiiMode};

/// Default request body cap (10 MiB), as in the reference.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default ceiling for `max_results` / `limit`.
pub const DEFAULT_MAX_RESULT_LIMIT: usize = 1000;
/// Per-tenant requests per second applied when bound to a public address and nothing is set.
pub const DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND: u32 = 100;

/// A configuration value that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call sites are the only places it is read.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Bad configuration: start-up stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has an invalid value.
    #[error("invalid configuration: {setting}: {message}")]
    Invalid {
        /// The environment variable or YAML key at fault.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    fn invalid(setting: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.to_string(),
            message: message.into(),
        }
    }
}

/// How callers (principals) are authenticated: the reference's `ASTROCYTE_AUTH_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Trust `X-Astrocyte-Principal`; only on loopback unless explicitly allowed.
    Dev,
    /// `X-Api-Key`: the configured key plus a principal header, or an issued key.
    ApiKey,
    /// `Authorization: Bearer` HS256; principal = `sub`.
    JwtHs256,
    /// `Authorization: Bearer` RS256/ES256 against a JWKS; issuer and audience required.
    JwtOidc,
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" => Ok(AuthMode::Dev),
            "api_key" => Ok(AuthMode::ApiKey),
            "jwt_hs256" | "jwt" => Ok(AuthMode::JwtHs256),
            "jwt_oidc" => Ok(AuthMode::JwtOidc),
            other => Err(format!(
                "unknown auth mode {other:?} (expected dev, api_key, jwt_hs256 or jwt_oidc)"
            )),
        }
    }
}

/// Which built-in `TenantExtension` maps requests to tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantExtensionKind {
    /// One fixed schema (`ASTROCYTE_DATABASE_SCHEMA`).
    Default,
    /// Issued API keys, each mapped to one tenant in the key directory.
    ApiKey,
    /// A claim of a verified JWT.
    Jwt,
    /// `X-Tenant-Schema` from a trusted proxy.
    TrustedHeader,
}

impl FromStr for TenantExtensionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(TenantExtensionKind::Default),
            "api_key" => Ok(TenantExtensionKind::ApiKey),
            "jwt" => Ok(TenantExtensionKind::Jwt),
            "header" | "trusted_header" => Ok(TenantExtensionKind::TrustedHeader),
            other => Err(format!(
                "unknown tenant extension {other:?} (expected default, api_key, jwt or header)"
            )),
        }
    }
}

/// Where JWKS keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTP(S) at start-up and again when a token names an unknown key id.
    Url(String),
    /// Read from a file at start-up.
    File(PathBuf),
}

/// JWT verification settings shared by the JWT auth modes and the JWT tenant extension.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// HS256 shared secret (`ASTROCYTE_JWT_SECRET`).
    pub hs256_secret: Option<Secret>,
    /// Expected `aud` for HS256 tokens (`ASTROCYTE_JWT_AUDIENCE`).
    pub hs256_audience: Option<String>,
    /// Expected `iss` for HS256 tokens (`ASTROCYTE_JWT_ISSUER`).
    pub hs256_issuer: Option<String>,
    /// JWKS for RS256/ES256 (`ASTROCYTE_OIDC_JWKS_URL` or `ASTROCYTE_OIDC_JWKS_PATH`).
    pub jwks: Option<JwksSource>,
    /// Expected `iss` for JWKS tokens (`ASTROCYTE_OIDC_ISSUER`).
    pub oidc_issuer: Option<String>,
    /// Expected `aud` for JWKS tokens (`ASTROCYTE_OIDC_AUDIENCE`).
    pub oidc_audience: Option<String>,
    /// Actor type prefixed to `sub` when a token has no `astrocyte_principal` (`ASTROCYTE_OIDC_ACTOR_TYPE`).
    pub oidc_actor_type: String,
    /// Claim naming the tenant schema (`ASTROCYTE_JWT_TENANT_CLAIM`, default `tenant`).
    pub tenant_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (`ASTROCYTE_JWT_LEEWAY_SECONDS`).
    pub leeway_seconds: u64,
}

/// Rate limits; `None` disables a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Requests per second per tenant over all data routes (`ASTROCYTE_RATE_LIMIT_PER_SECOND`).
    pub tenant_per_second: Option<u32>,
    /// Retains per minute per bank.
    pub retain_per_minute: Option<u32>,
    /// Recalls (and histories) per minute per bank.
    pub recall_per_minute: Option<u32>,
    /// Reflects per minute per bank.
    pub reflect_per_minute: Option<u32>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Daily quotas per bank (UTC days); `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Retains per day per bank.
    pub retain_per_day: Option<u64>,
    /// Reflects per day per bank.
    pub reflect_per_day: Option<u64>,
}

/// The PII barrier applied to retained content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiSettings {
    /// `regex` or `disabled`.
    pub mode: PiiMode,
    /// What to do with a match.
    pub action: PiiAction,
    /// Per-type action overrides (e.g. reject credit cards, redact the rest).
    pub type_overrides: BTreeMap<String, PiiAction>,
}

impl Default for PiiSettings {
    fn default() -> Self {
        PiiSettings {
            mode: PiiMode::Regex,
            action: PiiAction::Redact,
            type_overrides: BTreeMap::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`ASTROCYTE_LOG_FORMAT=json`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Where finished spans go when OTLP trace export is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector's full traces URL, e.g. `http://collector:4318/v1/traces`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    /// `/v1/traces`).
    pub traces_endpoint: String,
    /// The `service.name` resource attribute (`OTEL_SERVICE_NAME`, default `astrocyte`).
    pub service_name: String,
}

/// The default `service.name` of exported traces.
pub const DEFAULT_OTEL_SERVICE_NAME: &str = "astrocyte";

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bind address (`ASTROCYTE_HOST`, default `127.0.0.1`).
    pub host: String,
    /// `Host` header values REST and the inspector accept (`ASTROCYTE_ALLOWED_HOSTS`; `host`
    /// or `host:port`, `*` for any). Empty: loopback names only while bound to loopback.
    pub allowed_hosts: Vec<String>,
    /// Most REST and MCP connections served at once (`ASTROCYTE_MAX_CONNECTIONS`, default
    /// 1024), and as many gRPC ones apart; the rest wait in the listen backlog, so a flood of
    /// idle sockets cannot take every file descriptor from the store and the workers.
    pub max_connections: usize,
    /// How long a client may take to send a request head, from connecting or after its last
    /// reply (`ASTROCYTE_REQUEST_HEAD_TIMEOUT_MS`, default 30 s); also how long an HTTP/2
    /// connection may sit with no request open, or leave a ping unanswered.
    pub request_head_timeout: std::time::Duration,
    /// Bind port (`ASTROCYTE_PORT`, default 8080; 0 picks a free port).
    pub port: u16,
    /// gRPC port on the same host (`ASTROCYTE_GRPC_PORT`, `--grpc-port`); `None` (the default)
    /// serves no gRPC, 0 picks a free port.
    pub grpc_port: Option<u16>,
    /// PEM certificate chain and private key for gRPC over TLS (`ASTROCYTE_GRPC_TLS_CERT`,
    /// `ASTROCYTE_GRPC_TLS_KEY`); both or neither.
    pub grpc_tls: Option<TlsFiles>,
    /// Embedded store directory (`ASTROCYTE_DATA_DIR`, default `./astrocyte-data`); used by the
    /// composition root when no database URL is set.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`DATABASE_URL` or `ASTROCYTE_DATABASE_URL`); `None` = embedded store.
    pub database_url: Option<Secret>,
    /// The default tenant's schema (`ASTROCYTE_DATABASE_SCHEMA`, default `public`).
    pub database_schema: Schema,
    /// Principal authentication mode.
    pub auth_mode: AuthMode,
    /// Allow dev auth on a non-loopback bind (`ASTROCYTE_ALLOW_DEV_AUTH`).
    pub allow_dev_auth: bool,
    /// The single configured API key of the reference's `api_key` mode (`ASTROCYTE_API_KEY`).
    pub api_key: Option<Secret>,
    /// JWT verification settings.
    pub jwt: JwtSettings,
    /// The tenant extension (`ASTROCYTE_TENANT_EXTENSION`, default `default`).
    pub tenant_extension: TenantExtensionKind,
    /// Server secret keying the HMAC-SHA256 of issued API keys (`ASTROCYTE_API_KEY_SECRET`).
    pub api_key_secret: Option<Secret>,
    /// Token guarding admin routes (`ASTROCYTE_ADMIN_TOKEN`); without it admin is loopback-only.
    pub admin_token: Option<Secret>,
    /// Request body cap; `None` disables it (`ASTROCYTE_MAX_REQUEST_BODY_BYTES=0`).
    pub max_request_body_bytes: Option<usize>,
    /// Ceiling for `max_results` / `limit` (`ASTROCYTE_MAX_RESULT_LIMIT`).
    pub max_result_limit: usize,
    /// Rate limits.
    pub rate_limits: RateLimitSettings,
    /// Daily quotas.
    pub quotas: QuotaSettings,
    /// PII barrier.
    pub pii: PiiSettings,
    /// Per-bank access control.
    pub access: AccessPolicy,
    /// Directories export/import may touch (`ASTROCYTE_PORTABILITY_ROOTS` or
    /// `ASTROCYTE_EXPORT_ROOTS`, `:`-separated); empty disables file export/import.
    pub portability_roots: Vec<PathBuf>,
    /// Log format (`ASTROCYTE_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Log filter (`ASTROCYTE_LOG_LEVEL`, an env-filter directive, default `info`).
    pub log_level: String,
    /// OTLP/HTTP trace export; `None` (the default) exports nothing.
    pub otlp: Option<OtlpSettings>,
    /// Label operation metrics with each tenant (`ASTROCYTE_METRICS_PER_TENANT`); off by
    /// default, since series grow with the number of tenants.
    pub metrics_per_tenant: bool,
    /// Serve the memory inspector at `/ui` (`ASTROCYTE_UI_ENABLED`, on by default).
    pub ui_enabled: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            allowed_hosts: Vec::new(),
            max_connections: 1024,
            request_head_timeout: std::time::Duration::from_secs(30),
            port: 8080,
            grpc_port: None,
            grpc_tls: None,
            data_dir: PathBuf::from("astrocyte-data"),
            database_url: None,
            database_schema: Schema::public(),
            auth_mode: AuthMode::Dev,
            allow_dev_auth: false,
            api_key: None,
            jwt: JwtSettings {
                hs256_secret: None,
                hs256_audience: None,
                hs256_issuer: None,
                jwks: None,
                oidc_issuer: None,
                oidc_audience: None,
                oidc_actor_type: "user".into(),
                tenant_claim: "tenant".into(),
                leeway_seconds: crate::auth::jwt::DEFAULT_JWT_LEEWAY_SECONDS,
            },
            tenant_extension: TenantExtensionKind::Default,
            api_key_secret: None,
            admin_token: None,
            max_request_body_bytes: Some(DEFAULT_MAX_REQUEST_BODY_BYTES),
            max_result_limit: DEFAULT_MAX_RESULT_LIMIT,
            rate_limits: RateLimitSettings::default(),
            quotas: QuotaSettings::default(),
            pii: PiiSettings::default(),
            access: AccessPolicy::default(),
            portability_roots: Vec::new(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp: None,
            metrics_per_tenant: false,
            ui_enabled: true,
        }
    }
}

/// The name of a `host[:port]` (IPv6 in brackets), without the port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Whether a bind host is a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl ServerConfig {
    /// Whether a request's `Host` header may reach REST or the inspector: a page on a
    /// rebound DNS name must not read a server listening on loopback.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if self.allowed_hosts.is_empty() && !is_loopback_host(&self.host) {
            return true;
        }
        // HTTP/1.1 always sends a Host; a client that sends none is not a browser.
        let Some(host) = host else {
            return true;
        };
        let name = host_name(host);
        if self.allowed_hosts.is_empty() {
            return is_loopback_host(name);
        }
        self.allowed_hosts.iter().any(|allowed| {
            allowed == "*"
                || allowed.eq_ignore_ascii_case(host)
                || (host_name(allowed) == allowed && allowed.eq_ignore_ascii_case(name))
        })
    }

    /// Cross-setting rules: what each auth mode and tenant extension needs. The settings
    /// loader calls it once the values are parsed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.auth_mode == AuthMode::Dev && !is_loopback_host(&self.host) && !self.allow_dev_auth
        {
            return Err(ConfigError::invalid(
                "ASTROCYTE_AUTH_MODE",
                format!(
                    "auth mode is dev (no authentication) but ASTROCYTE_HOST={:?} is not a loopback address; \
                     set ASTROCYTE_AUTH_MODE to api_key, jwt_hs256 or jwt_oidc, bind to 127.0.0.1, \
                     or set ASTROCYTE_ALLOW_DEV_AUTH=1 behind a trusted proxy",
                    self.host
                ),
            ));
        }
        match self.auth_mode {
            AuthMode::Dev => {}
            AuthMode::ApiKey => {
                if self.api_key.is_none() && self.tenant_extension != TenantExtensionKind::ApiKey {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_API_KEY",
                        "api_key auth needs ASTROCYTE_API_KEY or issued keys (ASTROCYTE_TENANT_EXTENSION=api_key)",
                    ));
                }
            }
            AuthMode::JwtHs256 => {
                if self.jwt.hs256_secret.is_none() {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_JWT_SECRET",
                        "required when ASTROCYTE_AUTH_MODE=jwt_hs256",
                    ));
                }
            }
            AuthMode::JwtOidc => self.require_oidc("ASTROCYTE_AUTH_MODE=jwt_oidc")?,
        }
        match self.tenant_extension {
            TenantExtensionKind::Default | TenantExtensionKind::TrustedHeader => {}
            TenantExtensionKind::ApiKey => match &self.api_key_secret {
                None => {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_API_KEY_SECRET",
                        "required when ASTROCYTE_TENANT_EXTENSION=api_key (it keys the hashes of issued keys)",
                    ))
                }
                Some(secret) if secret.expose().len() < 16 => {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_API_KEY_SECRET",
                        "must be at least 16 characters",
                    ))
                }
                Some(_) => {}
            },
            TenantExtensionKind::Jwt => {
                if self.jwt.jwks.is_some() {
                    self.require_oidc("ASTROCYTE_TENANT_EXTENSION=jwt with a JWKS")?;
                } else if self.jwt.hs256_secret.is_none() {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_JWT_SECRET",
                        "ASTROCYTE_TENANT_EXTENSION=jwt needs ASTROCYTE_JWT_SECRET or a JWKS (ASTROCYTE_OIDC_JWKS_URL / ASTROCYTE_OIDC_JWKS_PATH)",
                    ));
                }
                if self.jwt.tenant_claim.trim().is_empty() {
                    return Err(ConfigError::invalid("ASTROCYTE_JWT_TENANT_CLAIM", "must not be empty"));
                }
            }
        }
        Ok(())
    }

    fn require_oidc(&self, why: &str) -> Result<(), ConfigError> {
        if self.jwt.jwks.is_none() {
            return Err(ConfigError::invalid(
                "ASTROCYTE_OIDC_JWKS_URL",
                format!(
                    "ASTROCYTE_OIDC_JWKS_URL or ASTROCYTE_OIDC_JWKS_PATH is required for {why}"
                ),
            ));
        }
        if self.jwt.oidc_issuer.is_none() {
            return Err(ConfigError::invalid(
                "ASTROCYTE_OIDC_ISSUER",
                format!("required for {why}"),
            ));
        }
        if self.jwt.oidc_audience.is_none() {
            return Err(ConfigError::invalid(
                "ASTROCYTE_OIDC_AUDIENCE",
                format!("required for {why}"),
            ));
        }
        Ok(())
    }

    /// The bind address `host:port`.
    pub fn bind_address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
