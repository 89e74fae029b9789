//! The shared store conformance suite against the SQLite store, twice: with default options,
//! and with options that force every filtered semantic search through the HNSW index (no exact
//! scan of small candidate sets) and snapshot the index after every few changes.

use std::sync::Arc;

use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use astrocyte_store_tests::{store_conformance_tests, TestStore};

fn store_with(options: SqliteOptions) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), options).expect("open store");
    TestStore::new(Arc::new(store), dir)
}

mod default_options {
    use super::*;

    async fn fresh_store() -> TestStore {
        store_with(SqliteOptions::default())
    }

    store_conformance_tests!(fresh_store);
}

mod index_path {
    use super::*;

    async fn fresh_store() -> TestStore {
        store_with(SqliteOptions {
            exact_scan_limit: 0,
            snapshot_every: 500,
            ..SqliteOptions::default()
        })
    }

    store_conformance_tests!(fresh_store);
}
