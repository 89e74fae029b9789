//! Background workers. One loop per tenant drains that tenant's job queue with the tenant's
//! schema bound; the set of tenants is re-read periodically so tenants created after start-up
//! are served without a restart, and dropped ones stop being polled.
//!
//! Queues live in the stores (`TenantStore::jobs`), so several server processes can share the
//! work: a claim is atomic and leased, and a worker that dies loses its lease, not the job.
#![deny(missing_docs)]

pub mod handlers;
pub mod pool;

pub use pool::{JobObserver, StoreTenants, TenantSource, WorkerConfig, WorkerPool, COUNT_EVERY};
