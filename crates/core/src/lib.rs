//! Astrocyte's core: domain types, schema-per-tenant primitives, the retrieval pipeline and the
//! [`Engine`] API that every transport calls, plus the [`Store`], [`Embedder`] and [`Llm`]
//! traits that backends and providers implement.
//!
//! This crate holds no SQL, no HTTP and no driver: stores and providers depend on it, never
//! the reverse.
#![deny(missing_docs)]

pub mod browse;
pub mod embed;
pub mod engine;
pub mod entities;
pub mod error;
pub mod jobs;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod portability;
pub mod store;
pub mod tenancy;
pub mod thread;
pub mod timeexpr;

pub use embed::{EmbedPurpose, Embedder, Llm};
pub use engine::{Engine, EngineConfig, ReflectRequest};
pub use error::{Error, ErrorKind, Result};
pub use model::*;
pub use store::{ApiKeyRecord, KeyDirectory, Store, TenantStore};
pub use tenancy::{Schema, TenantContext};
