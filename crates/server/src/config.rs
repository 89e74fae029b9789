//! Server configuration: defaults, then the YAML file named by `ASTROCYTE_CONFIG_PATH`, then the
//! reference's environment variables, then command-line overrides; validated once at start-up.
//!
//! Every error names the setting at fault. Building stores and embedders is not done here: the
//! storage settings are carried for the composition root (the CLI) to act on.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use astrocyte_core::tenancy::Schema;
use serde::Deserialize;

use crate::access::{AccessPolicy, Grant, Permission};
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
    /// The configuration file could not be read or parsed.
    #[error("invalid configuration file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong (the YAML error names the key).
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

    /// The setting named by the error, when it names one.
    pub fn setting(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { setting, .. } => Some(setting),
            ConfigError::File { .. } => None,
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
#[derive(Debug, Clone, Default)]
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
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
                oidc_actor_type: "user".into(),
                tenant_claim: "tenant".into(),
                ..Default::default()
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
        }
    }
}

/// Command-line flags that override the environment (the CLI fills what the user passed).
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--config`: a YAML file, instead of `ASTROCYTE_CONFIG_PATH`.
    pub config_path: Option<PathBuf>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--grpc-port`.
    pub grpc_port: Option<u16>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
}

/// The YAML file's shape. Unknown keys are ignored so a reference `astrocyte.yaml` loads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    grpc_port: Option<u16>,
    grpc_tls_cert: Option<PathBuf>,
    grpc_tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_schema: Option<String>,
    auth_mode: Option<String>,
    allow_dev_auth: Option<bool>,
    api_key: Option<String>,
    api_key_secret: Option<String>,
    admin_token: Option<String>,
    tenant_extension: Option<String>,
    max_request_body_bytes: Option<usize>,
    max_result_limit: Option<usize>,
    rate_limit_per_second: Option<u32>,
    portability_roots: Option<Vec<PathBuf>>,
    log_format: Option<String>,
    log_level: Option<String>,
    jwt: FileJwt,
    oidc: FileOidc,
    access_control: FileAccessControl,
    access_grants: Option<Vec<FileGrant>>,
    homeostasis: FileHomeostasis,
    barriers: FileBarriers,
    otlp: FileOtlp,
}

/// The `otlp:` section, mirroring the standard `OTEL_*` variables (which win over it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileOtlp {
    endpoint: Option<String>,
    traces_endpoint: Option<String>,
    service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileJwt {
    secret: Option<String>,
    audience: Option<String>,
    issuer: Option<String>,
    tenant_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileOidc {
    jwks_url: Option<String>,
    jwks_path: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    actor_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileAccessControl {
    enabled: Option<bool>,
    default_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileGrant {
    bank_id: String,
    principal: String,
    permissions: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileHomeostasis {
    rate_limits: FileRateLimits,
    quotas: FileQuotas,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileRateLimits {
    retain_per_minute: Option<u32>,
    recall_per_minute: Option<u32>,
    reflect_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileQuotas {
    retain_per_day: Option<u64>,
    reflect_per_day: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileBarriers {
    pii: FilePii,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilePii {
    mode: Option<String>,
    action: Option<String>,
    type_overrides: Option<BTreeMap<String, FilePiiOverride>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilePiiOverride {
    action: Option<String>,
}

/// Environment lookups, so tests can pass a map instead of touching the process environment.
struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-blank variable, trimmed.
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfigError::invalid(name, format!("{raw:?}: {e}"))),
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(ConfigError::invalid(
                    name,
                    format!("{raw:?} is not a boolean"),
                )),
            },
        }
    }
}

fn parse_setting<T: FromStr<Err = String>>(setting: &str, raw: &str) -> Result<T, ConfigError> {
    raw.parse::<T>()
        .map_err(|e| ConfigError::invalid(setting, e))
}

/// OTLP trace export from the standard variables (the per-signal endpoint beats the generic one,
/// the environment beats the file); `None` when no endpoint is set or `OTEL_SDK_DISABLED` is true.
fn otlp_settings(env: &Env<'_>, file: FileOtlp) -> Result<Option<OtlpSettings>, ConfigError> {
    if env.flag("OTEL_SDK_DISABLED")? == Some(true) {
        return Ok(None);
    }
    // (setting, value, whether the signal path is still to be appended)
    let endpoint = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            false,
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            true,
        ),
        ("otlp.traces_endpoint", file.traces_endpoint, false),
        ("otlp.endpoint", file.endpoint, true),
    ]
    .into_iter()
    .find_map(|(setting, value, append)| {
        value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| (setting, v, append))
    });
    let Some((setting, raw, append)) = endpoint else {
        return Ok(None);
    };
    let url = reqwest::Url::parse(&raw)
        .map_err(|e| ConfigError::invalid(setting, format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            setting,
            format!("{raw:?} is not an http(s) URL with a host"),
        ));
    }
    // Only protobuf over HTTP is built in; a gRPC collector port would silently drop spans.
    for protocol_setting in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env.get(protocol_setting) {
            if protocol != "http/protobuf" {
                return Err(ConfigError::invalid(
                    protocol_setting,
                    format!("{protocol:?} is not supported (only http/protobuf)"),
                ));
            }
            break;
        }
    }
    let traces_endpoint = if append {
        format!("{}/v1/traces", raw.trim_end_matches('/'))
    } else {
        raw
    };
    let service_name = env
        .get("OTEL_SERVICE_NAME")
        .or(file.service_name.map(|n| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_NAME.to_string());
    Ok(Some(OtlpSettings {
        traces_endpoint,
        service_name,
    }))
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
    /// Loads the configuration from the process environment, the YAML file it names (or the
    /// one in `overrides`), and the command-line overrides; validates it.
    pub fn from_env_and_file(overrides: ConfigOverrides) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(&env, overrides)
    }

    /// Same as [`ServerConfig::from_env_and_file`] with an explicit environment map.
    pub fn from_sources(
        env: &HashMap<String, String>,
        overrides: ConfigOverrides,
    ) -> Result<Self, ConfigError> {
        let env = Env(env);
        let path = overrides
            .config_path
            .clone()
            .or_else(|| env.get("ASTROCYTE_CONFIG_PATH").map(PathBuf::from));
        let file = match &path {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Self::parse_yaml(&text).map_err(|message| ConfigError::File {
                    path: path.clone(),
                    message,
                })?
            }
        };
        Self::build(file, &env, overrides)
    }

    /// Loads from a YAML string and an environment map (for tests and embedding).
    pub fn from_yaml_and_env(
        yaml: &str,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = Self::parse_yaml(yaml).map_err(|message| ConfigError::File {
            path: PathBuf::from("<inline>"),
            message,
        })?;
        Self::build(file, &Env(env), ConfigOverrides::default())
    }

    fn parse_yaml(text: &str) -> Result<FileConfig, String> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_yaml::from_str::<FileConfig>(text).map_err(|e| e.to_string())
    }

    fn build(
        file: FileConfig,
        env: &Env<'_>,
        overrides: ConfigOverrides,
    ) -> Result<Self, ConfigError> {
        let mut c = ServerConfig::default();

        // Plain settings: file, then environment, then flags.
        c.host = overrides
            .host
            .or(env.get("ASTROCYTE_HOST"))
            .or(file.host)
            .unwrap_or(c.host);
        c.port = match overrides.port {
            Some(port) => port,
            None => env
                .parse::<u16>("ASTROCYTE_PORT")?
                .or(file.port)
                .unwrap_or(c.port),
        };
        c.grpc_port = match overrides.grpc_port {
            Some(port) => Some(port),
            None => env.parse::<u16>("ASTROCYTE_GRPC_PORT")?.or(file.grpc_port),
        };
        let cert = env
            .get("ASTROCYTE_GRPC_TLS_CERT")
            .map(PathBuf::from)
            .or(file.grpc_tls_cert);
        let key = env
            .get("ASTROCYTE_GRPC_TLS_KEY")
            .map(PathBuf::from)
            .or(file.grpc_tls_key);
        c.grpc_tls =
            match (cert, key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => return Err(ConfigError::Invalid {
                    setting: "ASTROCYTE_GRPC_TLS_CERT".into(),
                    message:
                        "set both ASTROCYTE_GRPC_TLS_CERT and ASTROCYTE_GRPC_TLS_KEY, or neither"
                            .into(),
                }),
            };
        c.data_dir = overrides
            .data_dir
            .or(env.get("ASTROCYTE_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or(c.data_dir);
        c.database_url = overrides
            .database_url
            .or(env.get("DATABASE_URL"))
            .or(env.get("ASTROCYTE_DATABASE_URL"))
            .or(file.database_url)
            .filter(|u| !u.trim().is_empty())
            .map(Secret::new);

        let (schema_setting, schema_raw) = match env.get("ASTROCYTE_DATABASE_SCHEMA") {
            Some(raw) => ("ASTROCYTE_DATABASE_SCHEMA", Some(raw)),
            None => ("database_schema", file.database_schema),
        };
        if let Some(raw) = schema_raw {
            c.database_schema = Schema::new(raw)
                .map_err(|e| ConfigError::invalid(schema_setting, e.to_string()))?;
        }

        let (mode_setting, mode_raw) = match env.get("ASTROCYTE_AUTH_MODE") {
            Some(raw) => ("ASTROCYTE_AUTH_MODE", Some(raw)),
            None => ("auth_mode", file.auth_mode),
        };
        if let Some(raw) = mode_raw {
            c.auth_mode = parse_setting(mode_setting, &raw)?;
        }
        c.allow_dev_auth = env
            .flag("ASTROCYTE_ALLOW_DEV_AUTH")?
            .or(file.allow_dev_auth)
            .unwrap_or(false);
        c.api_key = env
            .get("ASTROCYTE_API_KEY")
            .or(file.api_key)
            .map(Secret::new);
        c.api_key_secret = env
            .get("ASTROCYTE_API_KEY_SECRET")
            .or(file.api_key_secret)
            .map(Secret::new);
        c.admin_token = env
            .get("ASTROCYTE_ADMIN_TOKEN")
            .or(file.admin_token)
            .map(Secret::new);

        let (ext_setting, ext_raw) = match env.get("ASTROCYTE_TENANT_EXTENSION") {
            Some(raw) => ("ASTROCYTE_TENANT_EXTENSION", Some(raw)),
            None => ("tenant_extension", file.tenant_extension),
        };
        if let Some(raw) = ext_raw {
            c.tenant_extension = parse_setting(ext_setting, &raw)?;
        }

        // JWT / OIDC.
        c.jwt.hs256_secret = env
            .get("ASTROCYTE_JWT_SECRET")
            .or(file.jwt.secret)
            .map(Secret::new);
        c.jwt.hs256_audience = env.get("ASTROCYTE_JWT_AUDIENCE").or(file.jwt.audience);
        c.jwt.hs256_issuer = env.get("ASTROCYTE_JWT_ISSUER").or(file.jwt.issuer);
        if let Some(claim) = env
            .get("ASTROCYTE_JWT_TENANT_CLAIM")
            .or(file.jwt.tenant_claim)
        {
            c.jwt.tenant_claim = claim;
        }
        let jwks_url = env.get("ASTROCYTE_OIDC_JWKS_URL").or(file.oidc.jwks_url);
        let jwks_path = env
            .get("ASTROCYTE_OIDC_JWKS_PATH")
            .map(PathBuf::from)
            .or(file.oidc.jwks_path);
        c.jwt.jwks = match (jwks_url, jwks_path) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "ASTROCYTE_OIDC_JWKS_URL",
                    "set either ASTROCYTE_OIDC_JWKS_URL or ASTROCYTE_OIDC_JWKS_PATH, not both",
                ))
            }
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_OIDC_JWKS_URL",
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                Some(JwksSource::Url(url))
            }
            (None, Some(path)) => Some(JwksSource::File(path)),
            (None, None) => None,
        };
        c.jwt.oidc_issuer = env.get("ASTROCYTE_OIDC_ISSUER").or(file.oidc.issuer);
        c.jwt.oidc_audience = env.get("ASTROCYTE_OIDC_AUDIENCE").or(file.oidc.audience);
        if let Some(actor) = env
            .get("ASTROCYTE_OIDC_ACTOR_TYPE")
            .or(file.oidc.actor_type)
        {
            c.jwt.oidc_actor_type = actor.to_ascii_lowercase();
        }

        // Limits.
        let body = env
            .parse::<usize>("ASTROCYTE_MAX_REQUEST_BODY_BYTES")?
            .or(file.max_request_body_bytes);
        if let Some(bytes) = body {
            c.max_request_body_bytes = (bytes > 0).then_some(bytes);
        }
        let (limit_setting, limit) = match env.parse::<usize>("ASTROCYTE_MAX_RESULT_LIMIT")? {
            Some(v) => ("ASTROCYTE_MAX_RESULT_LIMIT", Some(v)),
            None => ("max_result_limit", file.max_result_limit),
        };
        if let Some(limit) = limit {
            if limit == 0 {
                return Err(ConfigError::invalid(limit_setting, "must be at least 1"));
            }
            c.max_result_limit = limit;
        }

        // Rate limits and quotas; 0 disables a limit, as in the reference.
        let tenant_rate = env
            .parse::<u32>("ASTROCYTE_RATE_LIMIT_PER_SECOND")?
            .or(file.rate_limit_per_second);
        c.rate_limits.tenant_per_second = match tenant_rate {
            Some(n) => (n > 0).then_some(n),
            // Default-on only for a public bind: loopback dev, tests and benchmarks stay unlimited.
            None if is_loopback_host(&c.host) => None,
            None => Some(DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND),
        };
        let nonzero = |v: Option<u32>| v.filter(|n| *n > 0);
        c.rate_limits.retain_per_minute = nonzero(file.homeostasis.rate_limits.retain_per_minute);
        c.rate_limits.recall_per_minute = nonzero(file.homeostasis.rate_limits.recall_per_minute);
        c.rate_limits.reflect_per_minute = nonzero(file.homeostasis.rate_limits.reflect_per_minute);
        c.quotas.retain_per_day = file.homeostasis.quotas.retain_per_day;
        c.quotas.reflect_per_day = file.homeostasis.quotas.reflect_per_day;

        // PII barrier.
        if let Some(raw) = env.get("ASTROCYTE_PII_MODE") {
            c.pii.mode = parse_setting("ASTROCYTE_PII_MODE", &raw)?;
        } else if let Some(raw) = file.barriers.pii.mode {
            c.pii.mode = parse_setting("barriers.pii.mode", &raw)?;
        }
        if let Some(raw) = env.get("ASTROCYTE_PII_ACTION") {
            c.pii.action = parse_setting("ASTROCYTE_PII_ACTION", &raw)?;
        } else if let Some(raw) = file.barriers.pii.action {
            c.pii.action = parse_setting("barriers.pii.action", &raw)?;
        }
        for (pii_type, over) in file.barriers.pii.type_overrides.unwrap_or_default() {
            let setting = format!("barriers.pii.type_overrides.{pii_type}.action");
            let raw = over
                .action
                .ok_or_else(|| ConfigError::invalid(&setting, "missing"))?;
            if !crate::policy::pii::DETECTOR_NAMES.contains(&pii_type.as_str()) {
                return Err(ConfigError::invalid(
                    &setting,
                    format!(
                        "unknown PII type {pii_type:?} (known: {})",
                        crate::policy::pii::DETECTOR_NAMES.join(", ")
                    ),
                ));
            }
            c.pii
                .type_overrides
                .insert(pii_type, parse_setting(&setting, &raw)?);
        }

        // Access control.
        c.access.enabled = file.access_control.enabled.unwrap_or(false);
        if let Some(raw) = file.access_control.default_policy {
            c.access.default_policy = parse_setting("access_control.default_policy", &raw)?;
        }
        for (index, grant) in file
            .access_grants
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let setting = format!("access_grants[{index}]");
            let permissions = grant
                .permissions
                .iter()
                .map(|p| parse_setting::<Permission>(&format!("{setting}.permissions"), p))
                .collect::<Result<Vec<_>, _>>()?;
            let tenant = grant
                .tenant
                .map(|t| {
                    Schema::new(t).map_err(|e| {
                        ConfigError::invalid(&format!("{setting}.tenant"), e.to_string())
                    })
                })
                .transpose()?;
            c.access.grants.push(Grant {
                bank_id: grant.bank_id,
                principal: grant.principal,
                permissions,
                tenant,
            });
        }

        // Export/import roots: each must exist now so a typo fails at start-up.
        let (roots_setting, roots) = match env
            .get("ASTROCYTE_PORTABILITY_ROOTS")
            .map(|r| ("ASTROCYTE_PORTABILITY_ROOTS", r))
            .or_else(|| {
                env.get("ASTROCYTE_EXPORT_ROOTS")
                    .map(|r| ("ASTROCYTE_EXPORT_ROOTS", r))
            }) {
            Some((setting, raw)) => (
                setting,
                std::env::split_paths(&raw)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect::<Vec<_>>(),
            ),
            None => (
                "portability_roots",
                file.portability_roots.unwrap_or_default(),
            ),
        };
        for root in &roots {
            if !root.is_dir() {
                return Err(ConfigError::invalid(
                    roots_setting,
                    format!("{} is not an existing directory", root.display()),
                ));
            }
        }
        c.portability_roots = roots;

        // Logging.
        if let Some(raw) = env.get("ASTROCYTE_LOG_FORMAT").or(file.log_format) {
            c.log_format = match raw.to_ascii_lowercase().as_str() {
                "json" | "1" | "true" | "yes" => LogFormat::Json,
                "text" | "plain" | "0" | "false" | "no" => LogFormat::Text,
                _ => {
                    return Err(ConfigError::invalid(
                        "ASTROCYTE_LOG_FORMAT",
                        format!("{raw:?} (expected json or text)"),
                    ))
                }
            };
        }
        if let Some(level) = env.get("ASTROCYTE_LOG_LEVEL").or(file.log_level) {
            c.log_level = level.to_ascii_lowercase();
        }
        c.otlp = otlp_settings(env, file.otlp)?;

        c.validate()?;
        Ok(c)
    }

    /// Cross-setting rules: what each auth mode and tenant extension needs.
    fn validate(&self) -> Result<(), ConfigError> {
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

    /// Copies the settings the engine also enforces (the result ceiling) into its config.
    pub fn apply_to_engine_config(&self, engine: &mut astrocyte_core::EngineConfig) {
        engine.max_result_limit = self.max_result_limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_sources(&env(pairs), ConfigOverrides::default())
    }

    #[test]
    fn no_configuration_means_loopback_dev_embedded() {
        let c = load(&[]).expect("defaults are valid");
        assert_eq!(c.bind_address(), "127.0.0.1:8080");
        assert_eq!(c.auth_mode, AuthMode::Dev);
        assert!(c.database_url.is_none());
        assert_eq!(c.database_schema.as_str(), "public");
        assert_eq!(
            c.max_request_body_bytes,
            Some(DEFAULT_MAX_REQUEST_BODY_BYTES)
        );
        assert_eq!(c.max_result_limit, 1000);
        assert_eq!(c.rate_limits.tenant_per_second, None);
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("astrocyte.yaml");
        std::fs::write(&path, "port: 7000\nhost: 127.0.0.2\nmax_result_limit: 50\n")
            .expect("write");
        let e = env(&[
            ("ASTROCYTE_PORT", "7001"),
            ("ASTROCYTE_CONFIG_PATH", path.to_str().unwrap_or_default()),
        ]);
        let c = ServerConfig::from_sources(&e, ConfigOverrides::default()).expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port, c.max_result_limit),
            ("127.0.0.2", 7001, 50)
        );
        let c = ServerConfig::from_sources(
            &e,
            ConfigOverrides {
                port: Some(7002),
                database_url: Some("postgres://x".into()),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(c.port, 7002);
        assert_eq!(
            c.database_url.as_ref().map(Secret::expose),
            Some("postgres://x")
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ASTROCYTE_PORT", "eighty")], "ASTROCYTE_PORT"),
            (
                &[("ASTROCYTE_DATABASE_SCHEMA", "bad-schema")],
                "ASTROCYTE_DATABASE_SCHEMA",
            ),
            (&[("ASTROCYTE_AUTH_MODE", "magic")], "ASTROCYTE_AUTH_MODE"),
            (&[("ASTROCYTE_HOST", "0.0.0.0")], "ASTROCYTE_AUTH_MODE"),
            (
                &[("ASTROCYTE_AUTH_MODE", "jwt_hs256")],
                "ASTROCYTE_JWT_SECRET",
            ),
            (&[("ASTROCYTE_AUTH_MODE", "api_key")], "ASTROCYTE_API_KEY"),
            (
                &[
                    ("ASTROCYTE_AUTH_MODE", "jwt_oidc"),
                    ("ASTROCYTE_OIDC_JWKS_PATH", "/x"),
                ],
                "ASTROCYTE_OIDC_ISSUER",
            ),
            (
                &[("ASTROCYTE_TENANT_EXTENSION", "api_key")],
                "ASTROCYTE_API_KEY_SECRET",
            ),
            (
                &[("ASTROCYTE_MAX_RESULT_LIMIT", "0")],
                "ASTROCYTE_MAX_RESULT_LIMIT",
            ),
            (
                &[("ASTROCYTE_MAX_REQUEST_BODY_BYTES", "-1")],
                "ASTROCYTE_MAX_REQUEST_BODY_BYTES",
            ),
            (
                &[("ASTROCYTE_PORTABILITY_ROOTS", "/definitely/not/here")],
                "ASTROCYTE_PORTABILITY_ROOTS",
            ),
            (&[("ASTROCYTE_PII_ACTION", "shout")], "ASTROCYTE_PII_ACTION"),
            (&[("ASTROCYTE_LOG_FORMAT", "xml")], "ASTROCYTE_LOG_FORMAT"),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (&[("OTEL_SDK_DISABLED", "maybe")], "OTEL_SDK_DISABLED"),
        ];
        for (pairs, setting) in cases {
            let err = load(pairs).expect_err("invalid configuration must fail");
            assert_eq!(err.setting(), Some(*setting), "{pairs:?} -> {err}");
            assert!(err.to_string().contains(setting), "{err}");
        }
    }

    #[test]
    fn public_bind_gets_a_default_rate_limit_and_dev_needs_opt_in() {
        let c = load(&[
            ("ASTROCYTE_HOST", "0.0.0.0"),
            ("ASTROCYTE_ALLOW_DEV_AUTH", "1"),
        ])
        .expect("valid");
        assert_eq!(
            c.rate_limits.tenant_per_second,
            Some(DEFAULT_PUBLIC_RATE_LIMIT_PER_SECOND)
        );
        let c = load(&[
            ("ASTROCYTE_RATE_LIMIT_PER_SECOND", "0"),
            ("ASTROCYTE_HOST", "0.0.0.0"),
            ("ASTROCYTE_ALLOW_DEV_AUTH", "yes"),
        ])
        .expect("valid");
        assert_eq!(c.rate_limits.tenant_per_second, None);
        let c = load(&[("ASTROCYTE_MAX_REQUEST_BODY_BYTES", "0")]).expect("valid");
        assert_eq!(c.max_request_body_bytes, None);
    }

    #[test]
    fn yaml_policy_sections_parse_and_bad_values_name_their_key() {
        let yaml = r#"
vector_store: in_memory
access_control: {enabled: true, default_policy: deny}
access_grants:
  - {bank_id: "*", principal: "agent:bot", permissions: ["*"]}
homeostasis:
  rate_limits: {recall_per_minute: 5}
  quotas: {retain_per_day: 3}
barriers:
  pii:
    mode: regex
    action: warn
    type_overrides: {credit_card: {action: reject}}
"#;
        let c = ServerConfig::from_yaml_and_env(yaml, &HashMap::new()).expect("valid");
        assert!(c.access.enabled);
        assert_eq!(c.access.grants[0].permissions, vec![Permission::All]);
        assert_eq!(c.rate_limits.recall_per_minute, Some(5));
        assert_eq!(c.quotas.retain_per_day, Some(3));
        assert_eq!(c.pii.action, PiiAction::Warn);
        assert_eq!(
            c.pii.type_overrides.get("credit_card"),
            Some(&PiiAction::Reject)
        );

        let bad = "access_grants:\n  - {bank_id: a, principal: b, permissions: [fly]}\n";
        let err =
            ServerConfig::from_yaml_and_env(bad, &HashMap::new()).expect_err("bad permission");
        assert_eq!(err.setting(), Some("access_grants[0].permissions"));
        let bad = "port: not-a-port\n";
        let err = ServerConfig::from_yaml_and_env(bad, &HashMap::new()).expect_err("bad port");
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(load(&[]).expect("valid").otlp, None);
        let c = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).expect("valid");
        assert_eq!(
            c.otlp,
            Some(OtlpSettings {
                traces_endpoint: "http://collector:4318/v1/traces".into(),
                service_name: "astrocyte".into(),
            })
        );
        let c = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example/otlp/traces",
            ),
            ("OTEL_SERVICE_NAME", "memory-gw"),
        ])
        .expect("valid");
        let otlp = c.otlp.expect("configured");
        assert_eq!(otlp.traces_endpoint, "https://c.example/otlp/traces");
        assert_eq!(otlp.service_name, "memory-gw");
        let c = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .expect("valid");
        assert_eq!(c.otlp, None);
        let yaml = "otlp: {endpoint: 'http://c:4318', service_name: from-yaml}\n";
        let c = ServerConfig::from_yaml_and_env(yaml, &HashMap::new()).expect("valid");
        let otlp = c.otlp.expect("configured");
        assert_eq!(
            (otlp.traces_endpoint.as_str(), otlp.service_name.as_str()),
            ("http://c:4318/v1/traces", "from-yaml")
        );
        let err = ServerConfig::from_yaml_and_env("otlp: {endpoint: 'ftp://c'}\n", &HashMap::new())
            .expect_err("bad scheme");
        assert_eq!(err.setting(), Some("otlp.endpoint"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = load(&[("ASTROCYTE_ADMIN_TOKEN", "hunter2-admin")]).expect("valid");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
