//! Strict tenancy is process-wide and cannot be turned off, so it gets a test binary of its
//! own: one test, so the lenient half runs before strict mode is on.

use astrocyte_core::tenancy::{
    check_bound, enable_strict_mode, strict_mode, use_schema, Schema, TenancyError,
};
use astrocyte_core::{Error, ErrorKind};

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("test schema names are valid")
}

#[tokio::test]
async fn strict_mode_allows_only_the_bound_tenant() {
    // Lenient by default: nothing bound is fine.
    assert!(!strict_mode());
    assert_eq!(check_bound(&schema("tenant_a")), Ok(()));

    enable_strict_mode();
    assert!(strict_mode());
    assert_eq!(
        check_bound(&schema("tenant_a")),
        Err(TenancyError::NoTenantBound)
    );
    let (same, crossed) = use_schema(schema("tenant_a"), async {
        (
            check_bound(&schema("tenant_a")),
            check_bound(&schema("tenant_b")),
        )
    })
    .await;
    assert_eq!(same, Ok(()));
    assert_eq!(
        crossed,
        Err(TenancyError::Crossed {
            bound: schema("tenant_a"),
            requested: schema("tenant_b"),
        })
    );
    // A nested scope checks against the innermost binding, and the outer one is back after.
    let nested = use_schema(schema("tenant_a"), async {
        let inner = use_schema(schema("tenant_b"), async {
            check_bound(&schema("tenant_b"))
        })
        .await;
        (inner, check_bound(&schema("tenant_b")))
    })
    .await;
    assert_eq!(nested.0, Ok(()));
    assert!(matches!(nested.1, Err(TenancyError::Crossed { .. })));
    // A task spawned without binding again has no tenant.
    let spawned = use_schema(schema("tenant_a"), async {
        tokio::spawn(async { check_bound(&schema("tenant_a")) })
            .await
            .expect("ran")
    })
    .await;
    assert_eq!(spawned, Err(TenancyError::NoTenantBound));

    // A crossed tenant is our bug, never the caller's: transports answer 500 without naming
    // either schema.
    let error = Error::from(TenancyError::Crossed {
        bound: schema("tenant_a"),
        requested: schema("tenant_b"),
    });
    assert_eq!(error.kind(), ErrorKind::Internal);
    assert_eq!(
        Error::from(TenancyError::NoTenantBound).kind(),
        ErrorKind::Internal
    );
}
