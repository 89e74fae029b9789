//! The server's integration tests, one binary. Modules: `contract` (every endpoint, in
//! process), `tenancy` (the reference's middleware cases, shutdown), `auth` (every auth mode,
//! keys, admin guard), `policy` (limits, quotas, PII, grants), `observability` (request ids,
//! metrics), `client` (a reference-contract client over HTTP), `isolation_pg` (two tenants on
//! PostgreSQL), `mcp` (the MCP tools over streamable HTTP and stdio with the SDK's client).

mod auth;
mod client;
mod contract;
mod isolation_pg;
mod mcp;
mod observability;
mod policy;
mod support;
mod tenancy;
