//! MCP settings: the reference's `mcp:` section (default bank, which tools are exposed, the
//! result cap) plus what only the HTTP transport needs (allowed `Host` and `Origin` values,
//! anonymous access on a public bind). `astrocyte-settings` loads them; nothing here touches
//! the engine or the router.

use astrocyte_core::BankId;

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
    /// The list of `values`; `*` among them accepts any value.
    pub fn of(values: Vec<String>) -> AllowList {
        let values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.iter().any(|v| v == "*") {
            AllowList::Any
        } else {
            AllowList::Only(values)
        }
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

impl McpConfig {
    /// Cross-setting rules, once the values are loaded: a positive result cap, a host list
    /// that accepts something, origins with a scheme.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, message: String| ConfigError::Invalid {
            setting: setting.to_string(),
            message,
        };
        if self.max_results_limit == 0 {
            return Err(invalid(
                "ASTROCYTE_MCP_MAX_RESULTS_LIMIT",
                "must be at least 1".into(),
            ));
        }
        if self.allowed_hosts == AllowList::Only(Vec::new()) {
            return Err(invalid(
                "ASTROCYTE_MCP_ALLOWED_HOSTS",
                "an empty list would refuse every request; list host names or use *".into(),
            ));
        }
        if let AllowList::Only(origins) = &self.allowed_origins {
            if let Some(bad) = origins.iter().find(|o| *o != "null" && !o.contains("://")) {
                return Err(invalid(
                    "ASTROCYTE_MCP_ALLOWED_ORIGINS",
                    format!("{bad:?} needs a scheme, e.g. https://app.example.com:443"),
                ));
            }
        }
        Ok(())
    }
}
