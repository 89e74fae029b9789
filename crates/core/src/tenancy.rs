//! Schema-per-tenant primitives: the validated `Schema`, SQL identifier helpers, the task-local
//! tenant binding used at boundaries, and the pluggable `TenantExtension` contract.
//!
//! Deep code receives a `Schema` explicitly. The task-local binding, set by the gateway
//! middleware, MCP and the workers, is a second check on top of that: in strict mode every
//! store calls [`check_bound`] where it makes a tenant handle, so code holding tenant A's
//! binding cannot obtain tenant B's handle (nor any handle with nothing bound). Nothing here
//! touches storage.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

/// The identifier rule every schema, table and function name must satisfy.
pub const IDENTIFIER_PATTERN: &str = "^[a-zA-Z_][a-zA-Z0-9_]*$";

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1), so two long
/// tenant names could silently collide in one schema: we reject them instead.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The default tenant's schema, so single-schema deployments work unchanged.
pub const DEFAULT_SCHEMA: &str = "public";

/// What kind of identifier failed validation; named in the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierLabel {
    /// A schema (tenant) name.
    Schema,
    /// A table name.
    Table,
    /// A column name.
    Column,
}

impl fmt::Display for IdentifierLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentifierLabel::Schema => "schema",
            IdentifierLabel::Table => "table",
            IdentifierLabel::Column => "column",
        })
    }
}

/// A name that does not satisfy the identifier rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{label} {value:?} {}", if *.reserved { "is reserved (names starting with pg_, and information_schema, belong to PostgreSQL)".to_string() } else { format!("is not a valid PostgreSQL identifier (must match {IDENTIFIER_PATTERN} and be at most {MAX_IDENTIFIER_BYTES} bytes)") })]
pub struct IdentifierError {
    /// Which kind of identifier was rejected.
    pub label: IdentifierLabel,
    /// The rejected value, verbatim.
    pub value: String,
    /// Whether it failed for being a reserved name rather than for its form.
    pub reserved: bool,
}

/// Whether `name` is a schema name PostgreSQL keeps for itself: the `pg_` prefix (`pg_catalog`,
/// `pg_toast`, `pg_temp_*`…) and `information_schema`. Compared case-insensitively so a tenant
/// never differs from a reserved name only by case (SQLite file stems may be case-insensitive).
pub fn is_reserved_schema(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("pg_") || lower == "information_schema"
}

/// Errors of the tenancy layer itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    /// Strict mode is on and tenant storage was touched with no tenant bound.
    #[error("no tenant is bound for this task and strict tenancy is enabled")]
    NoTenantBound,
    /// Strict mode is on and a handle for one tenant was asked for while another is bound:
    /// a bug that would mix tenants' data.
    #[error("tenant {requested} was requested while tenant {bound} is bound")]
    Crossed {
        /// The schema bound to the task.
        bound: Schema,
        /// The schema a handle was asked for.
        requested: Schema,
    },
    /// An identifier failed validation.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
}

/// Checks `value` against the identifier rule: ASCII letter or underscore first, then ASCII
/// letters, digits or underscores, at most 63 bytes. Written by hand (no regex) so there is no
/// Unicode-class or anchor subtlety: every byte is checked.
pub fn validate_identifier(value: &str, label: IdentifierLabel) -> Result<&str, IdentifierError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_IDENTIFIER_BYTES
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(IdentifierError {
            label,
            value: value.to_string(),
            reserved: false,
        })
    }
}

/// A validated PostgreSQL schema name: the only way to name a tenant.
///
/// Invariant: the inner string satisfies [`IDENTIFIER_PATTERN`] and is at most 63 bytes, so it
/// can be interpolated into SQL double-quoted and used as a file stem without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Schema(String);

impl Schema {
    /// Builds a schema name, enforcing the identifier rule and refusing the names PostgreSQL
    /// reserves ([`is_reserved_schema`]), on every store alike.
    pub fn new(name: impl Into<String>) -> Result<Self, IdentifierError> {
        let name = name.into();
        validate_identifier(&name, IdentifierLabel::Schema)?;
        if is_reserved_schema(&name) {
            return Err(IdentifierError {
                label: IdentifierLabel::Schema,
                value: name,
                reserved: true,
            });
        }
        Ok(Schema(name))
    }

    /// The default `public` schema.
    pub fn public() -> Self {
        Schema(DEFAULT_SCHEMA.to_string())
    }

    /// The schema name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Schema {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schema::new(s)
    }
}

impl serde::Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Schema::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Returns `"<schema>"."<table>"`; the table name is validated, the schema already is.
pub fn fq_table(schema: &Schema, table: &str) -> Result<String, IdentifierError> {
    validate_identifier(table, IdentifierLabel::Table)?;
    Ok(format!("\"{}\".\"{}\"", schema.as_str(), table))
}

// --- The task-local binding -------------------------------------------------------------------

tokio::task_local! {
    // Nested scopes each get their own slot, so the outer schema is visible again when an
    // inner scope ends, even on panic.
    static CURRENT_SCHEMA: Schema;
}

static STRICT: AtomicBool = AtomicBool::new(false);

/// Turns strict tenancy on for the whole process: from then on [`check_bound`] refuses a
/// tenant handle unless that very tenant is bound to the task. Servers enable it at start-up;
/// there is deliberately no way to turn it off again.
pub fn enable_strict_mode() {
    STRICT.store(true, Ordering::SeqCst);
}

/// Whether strict tenancy is on.
pub fn strict_mode() -> bool {
    STRICT.load(Ordering::SeqCst)
}

/// The schema bound to this task, if any.
pub fn bound_schema() -> Option<Schema> {
    CURRENT_SCHEMA.try_with(Schema::clone).ok()
}

/// The second tenancy check, called by stores where they make a tenant handle. Lenient mode
/// (the default, for the CLI and embedded use): always `Ok`. Strict mode: `Ok` only when
/// `schema` is the schema bound to this task; `Crossed` when another one is,
/// `NoTenantBound` when none is.
pub fn check_bound(schema: &Schema) -> Result<(), TenancyError> {
    if !strict_mode() {
        return Ok(());
    }
    match bound_schema() {
        Some(bound) if &bound == schema => Ok(()),
        Some(bound) => Err(TenancyError::Crossed {
            bound,
            requested: schema.clone(),
        }),
        None => Err(TenancyError::NoTenantBound),
    }
}

/// Runs `future` with `schema` bound; the binding ends with the future, including on error,
/// cancellation and panic, and the outer binding (if any) is visible again afterwards.
/// Tasks spawned inside do not inherit it: bind again there.
pub async fn use_schema<F: Future>(schema: Schema, future: F) -> F::Output {
    CURRENT_SCHEMA.scope(schema, future).await
}

// --- Tenant extension contract ----------------------------------------------------------------

/// The result of authenticating a request: just the schema it must run in. Richer identity
/// (principal, grants) lives in the server's auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    /// The schema to bind for the request.
    pub schema: Schema,
}

impl TenantContext {
    /// Wraps a validated schema.
    pub fn new(schema: Schema) -> Self {
        TenantContext { schema }
    }
}

/// A tenant that background workers must serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant {
    /// The tenant's schema.
    pub schema: Schema,
}

/// An extension could not map a request to a tenant. The message is for logs only: gateways
/// answer with a fixed body so schema names or token details never leak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: {0}")]
pub struct AuthenticationError(pub String);

impl AuthenticationError {
    /// What every [`AuthenticationError::unavailable`] message starts with.
    pub const UNAVAILABLE_PREFIX: &'static str = "credential store unavailable: ";

    /// The credential could not be checked because what holds the credentials (the key
    /// directory) cannot be reached: gateways answer 503, never 401, since the credential may
    /// well be valid.
    pub fn unavailable(cause: impl fmt::Display) -> Self {
        AuthenticationError(format!("{}{cause}", Self::UNAVAILABLE_PREFIX))
    }

    /// Whether this is an outage of the credential store rather than a refused credential.
    /// Extensions build every other message from fixed text first, so none starts this way.
    pub fn is_unavailable(&self) -> bool {
        self.0.starts_with(Self::UNAVAILABLE_PREFIX)
    }
}

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// REST over HTTP.
    Http,
    /// Model Context Protocol (stdio or streamable HTTP).
    Mcp,
    /// gRPC.
    Grpc,
    /// A caller inside the process (CLI, workers, tests).
    InProcess,
}

/// A transport-neutral description of an inbound request, enough for any extension to decide.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Where the request came from.
    pub transport: Transport,
    /// Header-like credentials, names lower-cased (HTTP headers, MCP auth metadata, gRPC metadata).
    pub headers: Vec<(String, String)>,
    /// The peer address, when known.
    pub peer: Option<SocketAddr>,
    /// The route or method name, when known.
    pub path: Option<String>,
}

impl RequestInfo {
    /// An in-process request with no credentials.
    pub fn in_process() -> Self {
        RequestInfo {
            transport: Transport::InProcess,
            headers: Vec::new(),
            peer: None,
            path: None,
        }
    }

    /// Adds a header; the name is lower-cased.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Pluggable mapping from a request to a tenant schema.
#[async_trait]
pub trait TenantExtension: Send + Sync {
    /// Validates the request's credentials and returns the schema it must run in.
    async fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError>;

    /// Every tenant whose schema background workers should serve; called repeatedly so new
    /// tenants are picked up without a restart.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError>;
}

/// Single-tenant default: no authentication, one fixed schema (validated at construction).
#[derive(Debug, Clone)]
pub struct DefaultTenantExtension {
    schema: Schema,
}

impl DefaultTenantExtension {
    /// Validates `schema` now, so a bad configuration fails at start-up, not on a request.
    pub fn new(schema: &str) -> Result<Self, IdentifierError> {
        Ok(DefaultTenantExtension {
            schema: Schema::new(schema)?,
        })
    }
}

impl Default for DefaultTenantExtension {
    fn default() -> Self {
        DefaultTenantExtension {
            schema: Schema::public(),
        }
    }
}

#[async_trait]
impl TenantExtension for DefaultTenantExtension {
    async fn authenticate(
        &self,
        _request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError> {
        Ok(TenantContext::new(self.schema.clone()))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(vec![Tenant {
            schema: self.schema.clone(),
        }])
    }
}
