//! Tenant administration: create, list, drop (schema, role and data gone), auto-creation, and
//! `public` as a tenant.

use std::sync::Arc;

use astrocyte_core::{ErrorKind, Schema, Store};

use crate::support::{first_column, TestDb};
use crate::{engine, retain};

async fn schema_exists(admin: &tokio_postgres::Client, schema: &str) -> bool {
    admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .expect("catalog")
        .get::<_, i64>(0)
        == 1
}

async fn role_exists(admin: &tokio_postgres::Client, role: &str) -> bool {
    admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .expect("catalog")
        .get::<_, i64>(0)
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_and_drop_remove_schema_role_and_data() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let (acme, globex) = (
        Schema::new("acme").expect("schema"),
        Schema::new("globex").expect("schema"),
    );
    store.create_tenant(&globex).await.expect("create globex");
    store.create_tenant(&acme).await.expect("create acme");
    let again = store.create_tenant(&acme).await.expect_err("duplicate");
    assert_eq!(again.kind(), ErrorKind::Conflict);

    let listed: Vec<Schema> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema)
        .collect();
    assert_eq!(
        listed,
        vec![acme.clone(), globex.clone()],
        "sorted by schema"
    );
    let records = store.tenant_records().await.expect("records");
    let acme_role = records[0].role.as_str().to_string();
    assert!(acme_role.starts_with(&db.role_prefix), "{acme_role}");
    assert_eq!(
        (records[0].name.as_str(), records[0].state.as_str()),
        ("acme", "active")
    );
    assert!(schema_exists(&admin, "acme").await && role_exists(&admin, &acme_role).await);

    let engine = engine(Arc::new(store.clone()));
    let id = retain(&engine, &acme, "notes", "acme keeps its launch codes here").await;
    assert_eq!(
        store
            .tenant(&acme)
            .await
            .expect("handle")
            .count(&bank("notes"))
            .await
            .expect("count"),
        1
    );

    store.drop_tenant(&acme).await.expect("drop");
    assert!(!schema_exists(&admin, "acme").await, "schema gone");
    assert!(!role_exists(&admin, &acme_role).await, "role gone");
    let leftovers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'acme'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(leftovers, 0, "no relation of the tenant survives");
    assert_eq!(
        store.tenant(&acme).await.err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        store.drop_tenant(&acme).await.expect_err("twice").kind(),
        ErrorKind::NotFound
    );
    let listed: Vec<Schema> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema)
        .collect();
    assert_eq!(listed, vec![globex.clone()]);

    // Re-created under the same name it starts empty.
    store.create_tenant(&acme).await.expect("re-create");
    engine.invalidate_tenant(&acme);
    let fresh = engine.tenant(&acme).await.expect("handle");
    assert!(!fresh.exists(&bank("notes"), &id).await.expect("exists"));
    assert!(fresh.list_banks().await.expect("banks").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenants_are_refused_unless_auto_creation_is_on() {
    let db = TestDb::create().await;
    let strict = db.store().await;
    let newcomer = Schema::new("newcomer").expect("schema");
    assert_eq!(
        strict.tenant(&newcomer).await.err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert!(
        strict.list_tenants().await.expect("list").is_empty(),
        "a refused tenant is not created"
    );

    let lenient = db
        .store_with(astrocyte_store_postgres::PostgresOptions {
            auto_create_tenants: true,
            ..db.options()
        })
        .await;
    let engine = engine(Arc::new(lenient.clone()));
    // Two concurrent first uses: one creates, the other finds it created.
    let (first, second) = tokio::join!(
        retain(
            &engine,
            &newcomer,
            "inbox",
            "first message for the newcomer"
        ),
        retain(
            &engine,
            &newcomer,
            "inbox",
            "second message about something else entirely"
        ),
    );
    assert_ne!(first, second);
    let listed: Vec<Schema> = strict
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.schema)
        .collect();
    assert_eq!(listed, vec![newcomer.clone()]);
    assert_eq!(
        strict
            .tenant(&newcomer)
            .await
            .expect("now known")
            .count(&bank("inbox"))
            .await
            .expect("count"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_can_be_a_tenant_and_dropping_it_keeps_the_directory() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let admin = db.admin().await;
    let public = Schema::public();
    store.create_tenant(&public).await.expect("create public");
    let engine = engine(Arc::new(store.clone()));
    retain(
        &engine,
        &public,
        "default",
        "single-tenant deployments keep working",
    )
    .await;
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.astrocyte_memories'::regclass",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert!(
        owner.starts_with(&db.role_prefix),
        "public's tables belong to its tenant role: {owner}"
    );
    store.drop_tenant(&public).await.expect("drop public");
    let remaining: Vec<String> = first_column(
        &admin,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(
        remaining,
        [
            "astrocyte_api_keys",
            "astrocyte_job_signals",
            "astrocyte_server",
            "astrocyte_tenants"
        ]
    );
    assert!(schema_exists(&admin, "public").await);
}

fn bank(name: &str) -> astrocyte_core::BankId {
    astrocyte_core::BankId::new(name).expect("bank id")
}
