//! Background workers. A fixed number of worker tasks drain the queues of the tenants that have
//! due jobs, with the tenant's schema bound; the store's job signals say which (one query for
//! any number of tenants), so tenants created after start-up are served without a restart and
//! idle ones cost nothing, or, where the signals see only this process, a rare rate-limited poll.
//!
//! Queues live in the stores (`TenantStore::jobs`), so several server processes can share the
//! work: a claim is atomic and leased, and a worker that dies loses its lease, not the job.
#![deny(missing_docs)]

pub mod handlers;
pub mod pool;

pub use pool::{JobObserver, StoreTenants, TenantSource, WorkerConfig, WorkerPool, COUNT_EVERY};
