//! Strict tenancy is process-wide, so it gets a test binary of its own.

use astrocyte_core::tenancy::{
    enable_strict_mode, fq_table_current, require_current_schema, use_schema, Schema, TenancyError,
};

#[tokio::test]
async fn strict_mode_refuses_storage_access_with_no_tenant_bound() {
    // Lenient by default: the seed's fall-back to public.
    assert_eq!(
        require_current_schema().map(|s| s.to_string()).as_deref(),
        Ok("public")
    );
    enable_strict_mode();
    assert_eq!(require_current_schema(), Err(TenancyError::NoTenantBound));
    assert_eq!(
        fq_table_current("memories"),
        Err(TenancyError::NoTenantBound)
    );
    let bound = use_schema(Schema::new("tenant_a").expect("valid"), async {
        fq_table_current("memories")
    })
    .await;
    assert_eq!(bound.as_deref(), Ok("\"tenant_a\".\"memories\""));
}
