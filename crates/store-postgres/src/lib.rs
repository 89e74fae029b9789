//! The PostgreSQL + pgvector store: every tenant is a schema owned by its own role, every
//! tenant transaction runs under `SET LOCAL ROLE`, and per-tenant migrations are ledgered and
//! fanned out with a per-tenant status. Retrieval logic (fusion, budgets) stays in core.
//!
//! Vector dimension: the memory table's `embedding` column is created untyped by the
//! migrations; the tenant's first `ensure_embedding_space` (or first insert) types it as
//! `vector(N)` and builds the HNSW cosine index, recording model and dimension in the tenant's
//! meta table. A later space with another model or dimension is a `DimensionMismatch`;
//! `replace_embeddings` may switch the model, and the dimension only while the tenant holds no
//! memory (`Unsupported` otherwise).
//!
//! HNSW parameters: the index is built with [`PostgresOptions`]' `hnsw_m` and
//! `hnsw_ef_construction` when the dimension is fixed, so a tenant keeps the parameters its
//! index was built with (a dimension change on an empty tenant rebuilds it with the current
//! ones); `hnsw_ef_search` is set on every scan and so applies at once.
#![deny(missing_docs)]

mod analyze;
mod browse;
mod bulk;
mod directory;
mod entities;
mod error;
mod jobs;
mod keys;
mod migrate;
mod names;
mod relocate;
mod replica;
mod search;
mod servers;
mod session;
mod sql;
mod store;
mod tenant;

pub use directory::{OrphanRole, RolePrune, TenantRecord};
pub use error::PgError;
pub use jobs::PgJobQueue;
pub use keys::PgKeyDirectory;
pub use migrate::{MigrationReport, MigrationStatus, TenantMigration, LATEST_MIGRATION};
pub use names::{DatabaseTag, RoleName};
pub use relocate::{MoveOptions, MoveReport, MoveStep, TableCheck};
pub use replica::ReplicaOptions;
pub use servers::{Placement, ServerKey};
pub use session::TenantTransaction;
pub use store::{PostgresOptions, PostgresStore};
pub use tenant::PostgresTenant;
