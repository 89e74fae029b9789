//! The shared store conformance suite against PostgreSQL, each check in a database of its own.

use std::sync::Arc;

use astrocyte_store_tests::{store_conformance_tests, TestStore};

use crate::support::TestDb;

async fn fresh_store() -> TestStore {
    let database = TestDb::create().await;
    let store = database.store().await;
    // The database outlives the store: the guard is dropped after the check.
    TestStore::new(Arc::new(store), database)
}

store_conformance_tests!(fresh_store);
