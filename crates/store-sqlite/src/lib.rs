//! The embedded default store: one SQLite file per tenant (`<data_dir>/<schema>.db`) holding
//! memories and snapshots of the per-bank indexes kept in memory: HNSW for vectors, an inverted
//! index for BM25 keyword search. It needs no server; isolation between tenants is physical (separate files).
//!
//! # Durability
//! Databases run in WAL mode. With the default `synchronous = NORMAL` a memory acknowledged by
//! `insert` survives the process being killed (the commit is in the WAL, which the OS holds);
//! surviving power loss or an OS crash needs an fsync per commit, which
//! [`SqliteOptions::durable_fsync`] turns on (`synchronous = FULL`) at some cost to write latency.
//!
//! # Vector search
//! SQLite rows are the source of truth. Each bank gets an in-memory HNSW index
//! ([`astrocyte_ann::HnswIndex`]) keyed by row id, built on first use from a snapshot stored in
//! the tenant's database plus the rows written after it; a missing or corrupt snapshot is
//! rebuilt from the rows. Snapshots are rewritten in the background every
//! [`SqliteOptions::snapshot_every`] index changes (and at least a quarter of the index) and, when
//! it pays off, as the tenant closes.
//! Selective filters are resolved in SQL first: small candidate sets are scored exactly, large
//! ones searched through the index with a membership filter. Every hit is re-read through SQL
//! with the full filter, so the index can trail a write without ever surfacing a forgotten
//! memory. The near-duplicate check (`nearest_each`) looks for an identical vector among the
//! rows storing its hash, through the bank's in-memory twin map (vector hash to rows), so
//! re-sending the same text is always caught, and asks the graph.
//! The graph walk of that check ends where the new vector belongs, so it leaves an insert hint
//! per vector (`astrocyte_ann::InsertHint`) and the insert that follows links from there
//! instead of walking again: half the graph work of a retain.
//!
//! # Keyword search
//! BM25 over each memory's index text (its text plus retrieval context, the latter at half
//! weight), ranked through a per-bank in-memory inverted index (`keyword`), built from the
//! rows on first use and kept in step by writes. An unfiltered search only scores documents
//! that can still reach the top k (MaxScore), so frequent words cost little at any bank size.
//! A filtered search scores every document holding a query word, best first, and SQL keeps
//! those passing the filter; on large banks the most frequent words are dropped to keep those
//! documents within [`SqliteOptions::keyword_posting_budget`].
//!
//! # Purge
//! Purging deletes rows, tags and the bank's stored index snapshots in one transaction, with `secure_delete` on so freed pages are zeroed; the
//! snapshot is rewritten compacted, without the purged vectors. Pages of the WAL file are
//! overwritten at the next checkpoints, not at once.
//!
//! # Jobs, settings, API keys
//! Each tenant file also holds its background job queue (`TenantStore::jobs`) and its settings.
//! Every queue change is one `BEGIN IMMEDIATE` transaction on the file, so claimers in several
//! processes sharing the data directory never hold the same job, and an acknowledged enqueue is
//! as durable as a memory. Hashed API keys live in [`KEY_DIRECTORY_FILE`], whose stem can never
//! be a schema name; dropping a tenant deletes its keys.
//!
//! # Re-embedding
//! `replace_embeddings` rewrites vectors and the recorded embedding space in one transaction and
//! updates loaded indexes in place. Changing the dimension is `Unsupported` while the tenant
//! holds any memory (soft-deleted included): an empty tenant may switch.
//!
//! This crate deliberately knows nothing about HTTP, embedding models or fusion: it answers
//! [`astrocyte_core::TenantStore`] calls and nothing more.
#![deny(missing_docs)]

// Module layering: each module uses only modules on lower lines, so there are no cycles.
//   store                          SqliteStore: the tenant registry, `Store`
//   tenant                         SqliteTenant: `TenantStore`, memory writes and reads
//   jobs, search, maintenance      more operations on one open tenant
//   inner                          TenantInner (connections, gate, bank indexes), run_blocking
//   keys, vectors                  the API-key directory file; HNSW indexes and snapshots
//   keyword                        per-bank in-memory BM25 indexes (MaxScore top-k)
//   connection, filter             connections and reader pool; SQL filters
//   migrations, rows, options      schema migrations; row codecs; SqliteOptions
//   error                          StoreError
mod browse;
mod connection;
mod entities;
mod error;
mod filter;
mod graph_write;
mod inner;
mod jobs;
mod keys;
mod keyword;
mod maintenance;
mod migrations;
mod options;
mod pieces;
mod rows;
mod search;
mod signals;
mod store;
mod tenant;
mod vectors;

pub use astrocyte_ann::HnswParams;
pub use keys::KEY_DIRECTORY_FILE;
pub use options::SqliteOptions;
pub use store::SqliteStore;
