//! The second tenancy check against the real store: in strict mode `Store::tenant` hands out
//! only the tenant bound to the task. Strict mode is process-wide, so this is a test binary of
//! its own with a single test.

use astrocyte_core::tenancy::{enable_strict_mode, use_schema, TenancyError};
use astrocyte_core::{Error, ErrorKind, Schema, Store};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("test schema names are valid")
}

#[tokio::test]
async fn a_crossed_tenant_handle_is_refused_in_strict_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    // Lenient (the default): any tenant, bound or not.
    store.tenant(&schema("b")).await.expect("lenient");

    enable_strict_mode();
    let (crossed, same) = use_schema(schema("a"), async {
        (
            store.tenant(&schema("b")).await.map(|_| ()),
            store.tenant(&schema("a")).await.map(|t| t.schema().clone()),
        )
    })
    .await;
    match crossed {
        Err(Error::Tenancy(TenancyError::Crossed { bound, requested })) => {
            assert_eq!(bound, schema("a"));
            assert_eq!(requested, schema("b"));
        }
        other => panic!("expected a crossed-tenant error, got {other:?}"),
    }
    assert_eq!(same.expect("the bound tenant"), schema("a"));

    let unbound = store.tenant(&schema("a")).await.map(|_| ());
    match unbound {
        Err(error @ Error::Tenancy(TenancyError::NoTenantBound)) => {
            assert_eq!(error.kind(), ErrorKind::Internal);
        }
        other => panic!("expected a no-tenant-bound error, got {other:?}"),
    }
    // The refused calls opened nothing: `a` (strict, bound) and `b` (lenient) only.
    assert_eq!(store.open_tenant_count().await, 2);
}
