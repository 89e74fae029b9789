//! MCP settings: the reference's `mcp:` section (default bank, which tools are exposed, the
//! result cap) plus what only the HTTP transport needs (allowed `Host` and `Origin` values,
//! anonymous access on a public bind). Defaults, then the YAML file, then the environment.
//! Nothing here touches the engine or the router.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use astrocyte_core::BankId;
use serde::Deserialize;

use crate::config::{ConfigError, PiiSettings};

/// The reference's cap on `max_results` over MCP.
pub const DEFAULT_MAX_RESULTS_LIMIT: usize = 50;

/// Which values of a request header the HTTP transport accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// Only these values (an empty list accepts none).
    Only(Vec<String>),
    /// Any value (`*`): for deployments where a proxy in front already checks it.
    Any,
}

impl AllowList {
    fn parse(raw: &str) -> AllowList {
        let values: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        if values.iter().any(|v| v == "*") {
            AllowList::Any
        } else {
            AllowList::Only(values)
        }
    }

    fn from_file(values: Vec<String>) -> AllowList {
        AllowList::parse(&values.join(","))
    }
}

/// How the MCP tools behave, on either transport.
#[derive(Debug, Clone, PartialEq)]
pub struct McpConfig {
    /// The bank used when a tool call names none (`ASTROCYTE_MCP_DEFAULT_BANK`,
    /// `mcp.default_bank_id`); without it `bank_id` is required.
    pub default_bank: Option<BankId>,
    /// Whether `memory_reflect` is offered (`ASTROCYTE_MCP_EXPOSE_REFLECT`, default on).
    pub expose_reflect: bool,
    /// Whether `memory_forget` is offered (`ASTROCYTE_MCP_EXPOSE_FORGET`, default off): an
    /// agent deleting memories is opt-in.
    pub expose_forget: bool,
    /// Ceiling for `max_results` (`ASTROCYTE_MCP_MAX_RESULTS_LIMIT`, default 50).
    pub max_results_limit: usize,
    /// Accepted `Host` header values over HTTP (`ASTROCYTE_MCP_ALLOWED_HOSTS`, comma-separated,
    /// `host` or `host:port`, `*` for any). Defaults to the loopback names, which is what
    /// stops DNS rebinding against a local server; a public deployment lists its own names.
    pub allowed_hosts: AllowList,
    /// Accepted `Origin` header values over HTTP (`ASTROCYTE_MCP_ALLOWED_ORIGINS`,
    /// comma-separated, `scheme://host:port` or `:*` for any port, `*` for any). Requests
    /// without an `Origin` (every non-browser client) always pass; by default a request that
    /// carries one is refused, so a web page cannot drive a local server.
    pub allowed_origins: AllowList,
    /// Serve MCP without tenant or principal authentication on a non-loopback bind
    /// (`ASTROCYTE_MCP_ALLOW_ANONYMOUS`, default off).
    pub allow_anonymous: bool,
    /// The PII barrier of stdio, where no gateway policy applies (the gateway's own barrier
    /// governs MCP over HTTP). Defaults to REST's default (redact); the loaders here leave it
    /// so, and a composition root that loaded a [`ServerConfig`](crate::ServerConfig) copies
    /// its `pii` settings in.
    pub pii: PiiSettings,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            default_bank: None,
            expose_reflect: true,
            expose_forget: false,
            max_results_limit: DEFAULT_MAX_RESULTS_LIMIT,
            allowed_hosts: AllowList::Only(vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
            ]),
            allowed_origins: AllowList::Only(Vec::new()),
            allow_anonymous: false,
            pii: PiiSettings::default(),
        }
    }
}

/// The `mcp:` section of the YAML file; reference key names, unknown keys ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileMcp {
    default_bank_id: Option<String>,
    expose_reflect: Option<bool>,
    expose_forget: Option<bool>,
    max_results_limit: Option<usize>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    allow_anonymous: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileRoot {
    mcp: FileMcp,
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        message: message.into(),
    }
}

fn env_value<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn env_flag(env: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ConfigError> {
    match env_value(env, name) {
        None => Ok(None),
        Some(raw) => match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(invalid(name, format!("{raw:?} is not a boolean"))),
        },
    }
}

impl McpConfig {
    /// Loads the settings from the process environment and the YAML file at `config_path`
    /// (else `ASTROCYTE_CONFIG_PATH`, else none). Every error names its setting.
    pub fn from_env_and_file(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(&env, config_path)
    }

    /// Same as [`McpConfig::from_env_and_file`] with an explicit environment map.
    pub fn from_sources(
        env: &HashMap<String, String>,
        config_path: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let path = config_path
            .map(Path::to_path_buf)
            .or_else(|| env_value(env, "ASTROCYTE_CONFIG_PATH").map(PathBuf::from));
        let yaml = match &path {
            None => String::new(),
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?,
        };
        Self::from_yaml_and_env(&yaml, env).map_err(|error| match (error, &path) {
            (ConfigError::File { message, .. }, Some(path)) => ConfigError::File {
                path: path.clone(),
                message,
            },
            (other, _) => other,
        })
    }

    /// Loads from a YAML string and an environment map (for tests and embedding).
    pub fn from_yaml_and_env(
        yaml: &str,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = if yaml.trim().is_empty() {
            FileMcp::default()
        } else {
            serde_yaml::from_str::<FileRoot>(yaml)
                .map_err(|e| ConfigError::File {
                    path: PathBuf::from("<inline>"),
                    message: e.to_string(),
                })?
                .mcp
        };
        let mut config = McpConfig::default();

        let bank = env_value(env, "ASTROCYTE_MCP_DEFAULT_BANK")
            .map(|raw| ("ASTROCYTE_MCP_DEFAULT_BANK", raw.to_string()))
            .or_else(|| {
                file.default_bank_id
                    .filter(|b| !b.trim().is_empty())
                    .map(|raw| ("mcp.default_bank_id", raw))
            });
        if let Some((setting, raw)) = bank {
            config.default_bank =
                Some(BankId::new(raw.trim()).map_err(|e| invalid(setting, e.to_string()))?);
        }
        config.expose_reflect = env_flag(env, "ASTROCYTE_MCP_EXPOSE_REFLECT")?
            .or(file.expose_reflect)
            .unwrap_or(config.expose_reflect);
        config.expose_forget = env_flag(env, "ASTROCYTE_MCP_EXPOSE_FORGET")?
            .or(file.expose_forget)
            .unwrap_or(config.expose_forget);
        let limit = match env_value(env, "ASTROCYTE_MCP_MAX_RESULTS_LIMIT") {
            Some(raw) => Some((
                "ASTROCYTE_MCP_MAX_RESULTS_LIMIT",
                raw.parse::<usize>().map_err(|_| {
                    invalid(
                        "ASTROCYTE_MCP_MAX_RESULTS_LIMIT",
                        format!("{raw:?} is not a positive integer"),
                    )
                })?,
            )),
            None => file
                .max_results_limit
                .map(|limit| ("mcp.max_results_limit", limit)),
        };
        if let Some((setting, limit)) = limit {
            if limit == 0 {
                return Err(invalid(setting, "must be at least 1"));
            }
            config.max_results_limit = limit;
        }
        if let Some(raw) = env_value(env, "ASTROCYTE_MCP_ALLOWED_HOSTS") {
            config.allowed_hosts = AllowList::parse(raw);
        } else if let Some(hosts) = file.allowed_hosts {
            config.allowed_hosts = AllowList::from_file(hosts);
        }
        if config.allowed_hosts == AllowList::Only(Vec::new()) {
            return Err(invalid(
                "ASTROCYTE_MCP_ALLOWED_HOSTS",
                "an empty list would refuse every request; list host names or use *",
            ));
        }
        if let Some(raw) = env_value(env, "ASTROCYTE_MCP_ALLOWED_ORIGINS") {
            config.allowed_origins = AllowList::parse(raw);
        } else if let Some(origins) = file.allowed_origins {
            config.allowed_origins = AllowList::from_file(origins);
        }
        if let AllowList::Only(origins) = &config.allowed_origins {
            if let Some(bad) = origins.iter().find(|o| *o != "null" && !o.contains("://")) {
                return Err(invalid(
                    "ASTROCYTE_MCP_ALLOWED_ORIGINS",
                    format!("{bad:?} needs a scheme, e.g. https://app.example.com:443"),
                ));
            }
        }
        config.allow_anonymous = env_flag(env, "ASTROCYTE_MCP_ALLOW_ANONYMOUS")?
            .or(file.allow_anonymous)
            .unwrap_or(config.allow_anonymous);
        Ok(config)
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

    #[test]
    fn defaults_follow_the_reference() {
        let config = McpConfig::from_yaml_and_env("", &env(&[])).expect("defaults load");
        assert_eq!(config, McpConfig::default());
        assert!(config.expose_reflect);
        assert!(!config.expose_forget);
        assert_eq!(config.max_results_limit, 50);
        assert_eq!(config.default_bank, None);
        assert_eq!(config.allowed_origins, AllowList::Only(vec![]));
    }

    #[test]
    fn the_file_section_uses_reference_keys_and_the_environment_wins() {
        let yaml = "mcp:\n  default_bank_id: notes\n  expose_reflect: false\n  expose_forget: true\n  max_results_limit: 20\n  allowed_hosts: [memory.example.com]\n  allowed_origins: ['https://app.example.com:443']\n  allow_anonymous: true\nother: ignored\n";
        let config = McpConfig::from_yaml_and_env(yaml, &env(&[])).expect("file loads");
        assert_eq!(
            config.default_bank.as_ref().map(BankId::as_str),
            Some("notes")
        );
        assert!(!config.expose_reflect);
        assert!(config.expose_forget);
        assert_eq!(config.max_results_limit, 20);
        assert_eq!(
            config.allowed_hosts,
            AllowList::Only(vec!["memory.example.com".into()])
        );
        assert_eq!(
            config.allowed_origins,
            AllowList::Only(vec!["https://app.example.com:443".into()])
        );
        assert!(config.allow_anonymous);

        let config = McpConfig::from_yaml_and_env(
            yaml,
            &env(&[
                ("ASTROCYTE_MCP_DEFAULT_BANK", "work"),
                ("ASTROCYTE_MCP_EXPOSE_REFLECT", "1"),
                ("ASTROCYTE_MCP_EXPOSE_FORGET", "off"),
                ("ASTROCYTE_MCP_MAX_RESULTS_LIMIT", "5"),
                ("ASTROCYTE_MCP_ALLOWED_HOSTS", "a.example, b.example:8443"),
                ("ASTROCYTE_MCP_ALLOWED_ORIGINS", "*"),
                ("ASTROCYTE_MCP_ALLOW_ANONYMOUS", "no"),
            ]),
        )
        .expect("environment loads");
        assert_eq!(
            config.default_bank.as_ref().map(BankId::as_str),
            Some("work")
        );
        assert!(config.expose_reflect);
        assert!(!config.expose_forget);
        assert_eq!(config.max_results_limit, 5);
        assert_eq!(
            config.allowed_hosts,
            AllowList::Only(vec!["a.example".into(), "b.example:8443".into()])
        );
        assert_eq!(config.allowed_origins, AllowList::Any);
        assert!(!config.allow_anonymous);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("ASTROCYTE_MCP_DEFAULT_BANK", "bad bank!")],
                "ASTROCYTE_MCP_DEFAULT_BANK",
            ),
            (
                &[("ASTROCYTE_MCP_EXPOSE_FORGET", "maybe")],
                "ASTROCYTE_MCP_EXPOSE_FORGET",
            ),
            (
                &[("ASTROCYTE_MCP_MAX_RESULTS_LIMIT", "0")],
                "ASTROCYTE_MCP_MAX_RESULTS_LIMIT",
            ),
            (
                &[("ASTROCYTE_MCP_MAX_RESULTS_LIMIT", "-3")],
                "ASTROCYTE_MCP_MAX_RESULTS_LIMIT",
            ),
            (
                &[("ASTROCYTE_MCP_ALLOWED_ORIGINS", "app.example.com")],
                "ASTROCYTE_MCP_ALLOWED_ORIGINS",
            ),
            (
                &[("ASTROCYTE_MCP_ALLOW_ANONYMOUS", "sure")],
                "ASTROCYTE_MCP_ALLOW_ANONYMOUS",
            ),
        ];
        for (pairs, setting) in cases {
            let error = McpConfig::from_yaml_and_env("", &env(pairs)).expect_err("invalid");
            assert_eq!(error.setting(), Some(*setting), "{error}");
        }
        let error = McpConfig::from_yaml_and_env("mcp:\n  allowed_hosts: []\n", &env(&[]))
            .expect_err("empty host list");
        assert_eq!(error.setting(), Some("ASTROCYTE_MCP_ALLOWED_HOSTS"));
        let error = McpConfig::from_yaml_and_env("mcp: [1, 2]\n", &env(&[])).expect_err("shape");
        assert!(matches!(error, ConfigError::File { .. }), "{error}");
    }

    #[test]
    fn the_file_comes_from_the_path_or_astrocyte_config_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("astrocyte.yaml");
        std::fs::write(&path, "mcp:\n  expose_forget: true\n").expect("write");
        let from_flag = McpConfig::from_sources(&env(&[]), Some(&path)).expect("loads");
        assert!(from_flag.expose_forget);
        let from_env = McpConfig::from_sources(
            &env(&[("ASTROCYTE_CONFIG_PATH", path.to_str().expect("utf-8 path"))]),
            None,
        )
        .expect("loads");
        assert!(from_env.expose_forget);
        let missing = McpConfig::from_sources(&env(&[]), Some(&dir.path().join("nope.yaml")))
            .expect_err("missing file");
        assert!(matches!(missing, ConfigError::File { .. }));
    }
}
