//! Tenant roles across the databases of one cluster: the same tenant name in two databases,
//! orphaned roles listed and pruned only for the database that created them, and tenants
//! whose role predates the per-database tag.

use std::sync::Arc;

use astrocyte_core::{ErrorKind, Schema, Store};
use astrocyte_store_postgres::{PostgresStore, RoleName};

use crate::support::TestDb;
use crate::{engine, retain};

fn schema(name: &str) -> Schema {
    Schema::new(name).expect("schema")
}

async fn role_exists(admin: &tokio_postgres::Client, role: &str) -> bool {
    admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .expect("catalog")
        .get::<_, i64>(0)
        == 1
}

async fn role_of(store: &PostgresStore, name: &str) -> String {
    store
        .tenant_record(&schema(name))
        .await
        .expect("lookup")
        .expect("tenant exists")
        .role
        .as_str()
        .to_string()
}

async fn count(store: &PostgresStore, name: &str) -> u64 {
    store
        .tenant(&schema(name))
        .await
        .expect("tenant opens")
        .count(&astrocyte_core::BankId::new("notes").expect("bank"))
        .await
        .expect("count")
}

/// Two databases of the shared cluster under the same role prefix.
async fn two_databases() -> (TestDb, TestDb) {
    let a = TestDb::create().await;
    let b = TestDb::create_with_prefix(Some(&a.role_prefix)).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tenant_name_works_in_two_databases_of_one_cluster() {
    let (db_a, db_b) = two_databases().await;
    let (store_a, store_b) = (db_a.store().await, db_b.store().await);
    assert_ne!(store_a.database_tag(), store_b.database_tag());
    store_a
        .create_tenant(&schema("acme"))
        .await
        .expect("acme in a");
    // Before roles carried the database tag this failed with `role … already exists`.
    store_b
        .create_tenant(&schema("acme"))
        .await
        .expect("acme in b");

    let (role_a, role_b) = (
        role_of(&store_a, "acme").await,
        role_of(&store_b, "acme").await,
    );
    assert_ne!(role_a, role_b);
    for (role, store) in [(&role_a, &store_a), (&role_b, &store_b)] {
        let expected = format!("{}{}_acme_", db_a.role_prefix, store.database_tag());
        assert!(
            role.starts_with(&expected),
            "{role} should start {expected}"
        );
        assert!(role.len() <= 63);
    }
    let admin = db_a.server_admin().await;
    assert!(role_exists(&admin, &role_a).await && role_exists(&admin, &role_b).await);

    // Each database's tenant holds its own data, under its own role.
    let engine_a = engine(Arc::new(store_a.clone()));
    let engine_b = engine(Arc::new(store_b.clone()));
    retain(
        &engine_a,
        &schema("acme"),
        "notes",
        "database a keeps the anvils",
    )
    .await;
    retain(
        &engine_b,
        &schema("acme"),
        "notes",
        "database b keeps the rockets",
    )
    .await;
    retain(
        &engine_b,
        &schema("acme"),
        "notes",
        "database b keeps the magnets too",
    )
    .await;
    assert_eq!(count(&store_a, "acme").await, 1);
    assert_eq!(count(&store_b, "acme").await, 2);
    let transaction = store_b
        .tenant_transaction(&schema("acme"))
        .await
        .expect("transaction");
    let user: String = transaction
        .query("SELECT current_user::text", &[])
        .await
        .expect("current user")[0]
        .get(0);
    transaction.rollback().await.expect("rollback");
    assert_eq!(user, role_b);
    // Neither database sees the other's live roles as orphans.
    assert!(store_a.orphan_roles().await.expect("list a").is_empty());
    assert!(store_b.orphan_roles().await.expect("list b").is_empty());

    // Dropping the tenant in one database leaves the other's intact.
    store_a
        .drop_tenant(&schema("acme"))
        .await
        .expect("drop in a");
    assert!(!role_exists(&admin, &role_a).await);
    assert!(role_exists(&admin, &role_b).await);
    assert_eq!(count(&store_b, "acme").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_after_another_database_was_dropped_removes_none_of_its_roles() {
    let (db_a, db_b) = two_databases().await;
    let (store_a, store_b) = (db_a.store().await, db_b.store().await);
    for name in ["acme", "globex"] {
        store_a
            .create_tenant(&schema(name))
            .await
            .expect("create in a");
        store_b
            .create_tenant(&schema(name))
            .await
            .expect("create in b");
    }
    let roles_a = [
        role_of(&store_a, "acme").await,
        role_of(&store_a, "globex").await,
    ];
    let roles_b = [
        role_of(&store_b, "acme").await,
        role_of(&store_b, "globex").await,
    ];
    drop(store_a);
    // A dropped database leaves its roles behind: they own nothing any more and no directory
    // lists them, but they are not this database's to remove.
    db_a.drop_database().await;
    let admin = db_b.server_admin().await;
    for role in &roles_a {
        assert!(
            role_exists(&admin, role).await,
            "{role} survives its database"
        );
    }

    assert_eq!(store_b.orphan_roles().await.expect("list"), vec![]);
    let prune = store_b.prune_orphan_roles().await.expect("prune");
    assert!(
        prune.removed.is_empty() && prune.kept.is_empty(),
        "{prune:?}"
    );
    for role in roles_a.iter().chain(&roles_b) {
        assert!(role_exists(&admin, role).await, "{role} was removed");
    }
    // B's tenants still work.
    let engine_b = engine(Arc::new(store_b.clone()));
    retain(
        &engine_b,
        &schema("globex"),
        "notes",
        "globex survives the prune",
    )
    .await;
    assert_eq!(count(&store_b, "globex").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_dropped_tenant_are_listed_and_removed() {
    let (db, neighbour) = two_databases().await;
    let (store, other) = (db.store().await, neighbour.store().await);
    for name in ["acme", "globex", "initech"] {
        store.create_tenant(&schema(name)).await.expect("create");
    }
    other
        .create_tenant(&schema("acme"))
        .await
        .expect("create in the neighbour");
    let other_acme = role_of(&other, "acme").await;
    let (acme, globex) = (
        role_of(&store, "acme").await,
        role_of(&store, "globex").await,
    );
    let engine = engine(Arc::new(store.clone()));
    retain(
        &engine,
        &schema("initech"),
        "notes",
        "initech keeps its staplers",
    )
    .await;

    // Tenants dropped by hand (or by a restored directory): acme's schema and row are gone,
    // globex lost only its row, so its role still owns its schema.
    let admin = db.admin().await;
    admin
        .batch_execute(
            "DROP SCHEMA acme CASCADE; \
             DELETE FROM public.astrocyte_tenants WHERE schema IN ('acme', 'globex')",
        )
        .await
        .expect("hand-made orphans");
    let orphans = store.orphan_roles().await.expect("list");
    let listed: Vec<(&str, bool)> = orphans
        .iter()
        .map(|o| (o.role.as_str(), o.owned_objects > 0))
        .collect();
    assert_eq!(
        listed,
        vec![(acme.as_str(), false), (globex.as_str(), true)]
    );
    assert!(other
        .orphan_roles()
        .await
        .expect("neighbour list")
        .is_empty());

    // The leftover role blocks re-creating the tenant, with a message that says what to do.
    let error = store
        .create_tenant(&schema("acme"))
        .await
        .expect_err("role is still there");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("prune-roles"), "{error}");

    let prune = store.prune_orphan_roles().await.expect("prune");
    assert_eq!(
        prune
            .removed
            .iter()
            .map(RoleName::as_str)
            .collect::<Vec<_>>(),
        vec![acme.as_str()]
    );
    assert_eq!(
        prune
            .kept
            .iter()
            .map(|o| o.role.as_str())
            .collect::<Vec<_>>(),
        vec![globex.as_str()],
        "a role still owning a schema is kept"
    );
    let server = db.server_admin().await;
    assert!(!role_exists(&server, &acme).await);
    assert!(role_exists(&server, &globex).await);
    assert!(
        role_exists(&server, &other_acme).await,
        "the neighbour's acme"
    );
    assert_eq!(count(&store, "initech").await, 1);
    assert_eq!(count(&other, "acme").await, 0);

    // Pruning again finds only the kept one, and the freed name can be used again.
    let again = store.prune_orphan_roles().await.expect("prune again");
    assert!(again.removed.is_empty());
    store
        .create_tenant(&schema("acme"))
        .await
        .expect("re-create acme");
    assert_eq!(role_of(&store, "acme").await, acme);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_role_predates_the_database_tag_still_opens() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let acme = schema("acme");
    store.create_tenant(&acme).await.expect("create");
    let engine_before = engine(Arc::new(store.clone()));
    retain(&engine_before, &acme, "notes", "written by the old release").await;
    drop(engine_before);
    drop(store);

    // What a release before the database tag left behind: the same tenant under a role named
    // `<prefix><schema>_<hash>`, recorded in the directory.
    let legacy = RoleName::legacy(&db.role_prefix, &acme).expect("legacy name");
    let admin = db.admin().await;
    let tagged: String = admin
        .query_one(
            "SELECT role FROM public.astrocyte_tenants WHERE schema = 'acme'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_ne!(tagged, legacy.as_str());
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{tagged}\" RENAME TO \"{legacy}\"; \
             UPDATE public.astrocyte_tenants SET role = '{legacy}' WHERE schema = 'acme'"
        ))
        .await
        .expect("make the tenant old-style");
    // An untagged role of the old scheme with no tenant is not provably this database's.
    let ghost = RoleName::legacy(&db.role_prefix, &schema("ghost")).expect("name");
    admin
        .batch_execute(&format!("CREATE ROLE \"{ghost}\" NOLOGIN"))
        .await
        .expect("ghost role");

    let store = db.store().await;
    assert_eq!(role_of(&store, "acme").await, legacy.as_str());
    assert_eq!(count(&store, "acme").await, 1, "the old tenant opens");
    let engine = engine(Arc::new(store.clone()));
    retain(&engine, &acme, "notes", "written by the new release").await;
    assert_eq!(count(&store, "acme").await, 2);
    let transaction = store.tenant_transaction(&acme).await.expect("transaction");
    let user: String = transaction
        .query("SELECT current_user::text", &[])
        .await
        .expect("user")[0]
        .get(0);
    transaction.rollback().await.expect("rollback");
    assert_eq!(user, legacy.as_str());

    assert!(store.orphan_roles().await.expect("list").is_empty());
    assert!(store
        .prune_orphan_roles()
        .await
        .expect("prune")
        .removed
        .is_empty());
    let server = db.server_admin().await;
    assert!(role_exists(&server, ghost.as_str()).await);
    // A new tenant beside it gets a tagged role; dropping the old one drops its role.
    store
        .create_tenant(&schema("globex"))
        .await
        .expect("globex");
    assert!(role_of(&store, "globex").await.starts_with(&format!(
        "{}{}_",
        db.role_prefix,
        store.database_tag()
    )));
    store.drop_tenant(&acme).await.expect("drop");
    assert!(!role_exists(&server, legacy.as_str()).await);
}
