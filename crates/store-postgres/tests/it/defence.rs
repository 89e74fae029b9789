//! Defence in depth: inside tenant A's transaction (its role, no user schema on the search
//! path), hand-written SQL that names tenant B or `public` fails, whatever `fq_table` did.

use std::sync::Arc;

use astrocyte_core::tenancy::fq_table;
use astrocyte_core::{ErrorKind, Schema, Store};
use astrocyte_store_postgres::PostgresStore;

use crate::support::TestDb;
use crate::{engine, retain};

/// Runs `sql` in a fresh transaction of `schema` and returns the error kind it failed with.
async fn refused(store: &PostgresStore, schema: &Schema, sql: &str) -> ErrorKind {
    let transaction = store
        .tenant_transaction(schema)
        .await
        .expect("tenant transaction");
    let error = match transaction.batch_execute(sql).await {
        Ok(()) => panic!("{sql:?} succeeded inside tenant {schema}'s transaction"),
        Err(error) => error,
    };
    transaction.rollback().await.expect("rollback");
    error.kind()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_outside_the_tenant_fails_inside_its_transaction() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let (tenant_a, tenant_b) = (
        Schema::new("tenant_a").expect("schema"),
        Schema::new("tenant_b").expect("schema"),
    );
    store.create_tenant(&tenant_a).await.expect("create a");
    store.create_tenant(&tenant_b).await.expect("create b");
    let engine = engine(Arc::new(store.clone()));
    retain(&engine, &tenant_a, "notes", "tenant a's own note").await;
    retain(&engine, &tenant_b, "notes", "tenant b's secret note").await;
    // A table an operator created in public with default privileges.
    admin
        .batch_execute("CREATE TABLE public.app_secrets (secret text); INSERT INTO public.app_secrets VALUES ('hunter2')")
        .await
        .expect("admin table");

    // The tenant's own table, named through fq_table, works and runs as the tenant role.
    let own = fq_table(&tenant_a, "astrocyte_memories").expect("fq");
    let transaction = store
        .tenant_transaction(&tenant_a)
        .await
        .expect("transaction");
    let rows = transaction
        .query(&format!("SELECT text FROM {own}"), &[])
        .await
        .expect("own table");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "tenant a's own note");
    let who = transaction
        .query(
            "SELECT current_user::text, current_setting('search_path')",
            &[],
        )
        .await
        .expect("whoami");
    let role = store
        .tenant_record(&tenant_a)
        .await
        .expect("record")
        .expect("exists")
        .role;
    assert_eq!(who[0].get::<_, String>(0), role.as_str());
    assert_eq!(who[0].get::<_, String>(1), "pg_catalog, pg_temp");
    transaction.commit().await.expect("commit");

    let b_table = fq_table(&tenant_b, "astrocyte_memories").expect("fq");
    // Another tenant's table, fully qualified: no USAGE on its schema.
    assert_eq!(
        refused(&store, &tenant_a, &format!("SELECT * FROM {b_table}")).await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(&store, &tenant_a, &format!("DELETE FROM {b_table}")).await,
        ErrorKind::Forbidden
    );
    // Through the search path: PostgreSQL skips schemas the role may not use, so the name
    // does not resolve at all.
    assert_eq!(
        refused(
            &store,
            &tenant_a,
            "SET LOCAL search_path TO tenant_b; SELECT * FROM astrocyte_memories"
        )
        .await,
        ErrorKind::NotFound
    );
    // A query that forgot fq_table: the search path holds no user schema.
    assert_eq!(
        refused(&store, &tenant_a, "SELECT * FROM astrocyte_memories").await,
        ErrorKind::NotFound
    );
    assert_eq!(
        refused(&store, &tenant_a, "SELECT * FROM app_secrets").await,
        ErrorKind::NotFound
    );
    // Public data, qualified: the directory and any table not granted to tenant roles.
    assert_eq!(
        refused(&store, &tenant_a, "SELECT * FROM public.astrocyte_tenants").await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(
            &store,
            &tenant_a,
            "INSERT INTO public.astrocyte_tenants (name, schema, role) VALUES ('x', 'x', 'x')"
        )
        .await,
        ErrorKind::Forbidden
    );
    // The API-key table sits beside the directory and is as closed.
    assert_eq!(
        refused(&store, &tenant_a, "SELECT * FROM public.astrocyte_api_keys").await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(
            &store,
            &tenant_a,
            "UPDATE public.astrocyte_api_keys SET revoked_at = NULL"
        )
        .await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(&store, &tenant_a, "SELECT * FROM public.app_secrets").await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(
            &store,
            &tenant_a,
            "UPDATE public.app_secrets SET secret = 'x'"
        )
        .await,
        ErrorKind::Forbidden
    );
    // Creating objects outside the schema: neither in public nor unqualified.
    assert_eq!(
        refused(&store, &tenant_a, "CREATE TABLE public.sneaky (x int)").await,
        ErrorKind::Forbidden
    );
    assert_eq!(
        refused(&store, &tenant_a, "CREATE TABLE sneaky (x int)").await,
        ErrorKind::Forbidden
    );
    // Nothing above changed anything.
    let b_rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {b_table}"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(b_rows, 1);
    let public_tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'sneaky'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(public_tables, 0);
}

async fn pid(transaction: &astrocyte_store_postgres::TenantTransaction) -> i32 {
    transaction
        .query("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")[0]
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_tenant_transaction_never_returns_to_the_pool() {
    let db = TestDb::create().await;
    // One connection, so reuse is observable through the backend pid.
    let store = db
        .store_with(astrocyte_store_postgres::PostgresOptions {
            pool_size: 1,
            ..db.options()
        })
        .await;
    let tenant = Schema::new("leaky").expect("schema");
    store.create_tenant(&tenant).await.expect("create");
    let committed = store
        .tenant_transaction(&tenant)
        .await
        .expect("transaction");
    let first = pid(&committed).await;
    committed.commit().await.expect("commit");
    let reused = store
        .tenant_transaction(&tenant)
        .await
        .expect("transaction");
    assert_eq!(
        pid(&reused).await,
        first,
        "a finished transaction's connection is reused"
    );
    // Dropped while open: its connection (still inside the tenant's role) must be closed.
    drop(reused);
    let next = store
        .tenant_transaction(&tenant)
        .await
        .expect("transaction");
    assert_ne!(
        pid(&next).await,
        first,
        "an open transaction's connection is never pooled again"
    );
    next.rollback().await.expect("rollback");
}
