//! The server's integration tests, one binary. Modules: `contract` (every endpoint, in
//! process), `tenancy` (the reference's middleware cases, shutdown), `auth` (every auth mode,
//! keys, admin guard), `policy` (limits, quotas, PII, grants), `observability` (request ids,
//! metrics), `client` (a reference-contract client over HTTP), `isolation_pg` (two tenants on
//! PostgreSQL), `mcp` (the MCP tools over streamable HTTP and stdio with the SDK's client),
//! `health` (503 when the store really fails), `hardening` (hostile input, error shapes, `/live`
//! under the largest allowed requests), `outage_pg` (a PostgreSQL of its own stopped under load: 503s,
//! recovery, no acknowledged write lost). JSON logs and OTLP export have binaries of their
//! own (`tests/logs.rs`, `tests/otlp.rs`): tracing subscribers are process-wide.

mod auth;
mod browse;
mod client;
mod contract;
mod grpc;
mod hardening;
mod health;
mod isolation_pg;
mod mcp;
mod observability;
mod outage_pg;
mod parity;
mod policy;
mod support;
mod tenancy;
mod ui;
