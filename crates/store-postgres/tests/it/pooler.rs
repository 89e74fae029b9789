//! The store behind PgBouncer in transaction pooling mode (a process of the test's own in
//! front of the test server): consecutive transactions of one client connection run on
//! whichever server connection is free, so anything a transaction left on its session (a
//! role, a setting, a named statement, a lock) would reach another tenant's next transaction.
//! The whole conformance suite runs through it, and two tenants are driven concurrently
//! through two server connections.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use astrocyte_core::{Schema, Store};
use std::time::Duration;

use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use astrocyte_store_tests::instances::Pooler;
use astrocyte_store_tests::{store_conformance_tests, TestStore};

use crate::support::{connect, server_url, TestDb};
use crate::{engine, recalled, retain};

/// The port of the test server (`ASTROCYTE_TEST_DATABASE_URL`).
fn server_port() -> u16 {
    let url = server_url();
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or(authority);
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432)
}

/// A store on a fresh database, connected through a pooler of its own with two server
/// connections and told to ignore `options`, the startup parameter that carries the
/// statement timeout (`options` adjusts the test database's options).
async fn pooled(
    options: impl FnOnce(PostgresOptions) -> PostgresOptions,
) -> (PostgresStore, Pooler, TestDb) {
    let database = TestDb::create().await;
    let pooler = Pooler::start(server_port(), 2, "options");
    let store = PostgresStore::connect(&pooler.url_for(&database.url), options(database.options()))
        .await
        .expect("connect store through PgBouncer");
    (store, pooler, database)
}

async fn fresh_pooled_store() -> TestStore {
    let (store, pooler, database) = pooled(|options| options).await;
    TestStore::new(Arc::new(store), (pooler, database))
}

mod conformance {
    use super::*;
    store_conformance_tests!(fresh_pooled_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_sharing_two_server_connections_never_see_each_other() {
    let (store, pooler, database) = pooled(|options| options).await;
    let schemas = [
        Schema::new("pooled_a").expect("valid"),
        Schema::new("pooled_b").expect("valid"),
    ];
    for schema in &schemas {
        store.create_tenant(schema).await.expect("create tenant");
    }
    let engine = Arc::new(engine(Arc::new(store)));
    let stored: Arc<[Mutex<HashSet<String>>; 2]> = Arc::new(Default::default());
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (engine, schemas, stored) = (engine.clone(), schemas.clone(), stored.clone());
            tokio::spawn(async move {
                let tenant = task % 2;
                let schema = &schemas[tenant];
                for n in 0..20 {
                    // A word both tenants use, so a leaked read would find the other's rows.
                    let word = format!("shared{}", n % 5);
                    // Random words, so no two are near-duplicates.
                    let noise: Vec<String> = (0..6)
                        .map(|_| uuid::Uuid::new_v4().simple().to_string()[..10].to_string())
                        .collect();
                    let content = format!("{word} {}", noise.join(" "));
                    let id = retain(&engine, schema, "notes", &content).await;
                    stored[tenant].lock().expect("ids").insert(id.clone());
                    let hits = recalled(&engine, schema, &word).await;
                    assert!(hits.contains(&id), "tenant {tenant} lost its own write");
                    // (A hit of its own tenant may not be recorded yet: another task of it
                    // may just have written it.)
                    let theirs = stored[1 - tenant].lock().expect("ids").clone();
                    for hit in &hits {
                        assert!(!theirs.contains(hit), "tenant {tenant} saw {hit}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    // Every row is where it was written, and each tenant holds exactly its own.
    let admin = database.admin().await;
    for (tenant, schema) in schemas.iter().enumerate() {
        let ids: Vec<String> = admin
            .query(
                &format!(
                    "SELECT id::text FROM {}",
                    astrocyte_core::tenancy::fq_table(schema, "astrocyte_memories").expect("name")
                ),
                &[],
            )
            .await
            .expect("rows")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let ids: HashSet<String> = ids.into_iter().collect();
        assert_eq!(ids, *stored[tenant].lock().expect("ids"));
    }
    // The load really was multiplexed: more client connections than server connections.
    let console = connect(&format!(
        "postgres://postgres@127.0.0.1:{}/pgbouncer",
        pooler.port
    ))
    .await;
    let pools = console
        .simple_query("SHOW POOLS")
        .await
        .expect("SHOW POOLS");
    let (mut clients, mut servers) = (0usize, 0usize);
    for message in pools {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            if row.get("database") == Some(database.name.as_str()) {
                let count = |column: &str| -> usize {
                    row.get(column).and_then(|v| v.parse().ok()).unwrap_or(0)
                };
                clients += count("cl_active") + count("cl_waiting");
                servers += count("sv_active") + count("sv_idle") + count("sv_used");
            }
        }
    }
    assert!(servers <= 2, "{servers} server connections");
    assert!(clients > 2, "only {clients} client connections");
}

/// PgBouncer drops the startup parameter that sets the timeout per connection (it must be
/// told to ignore `options`, or it refuses the connection): every tenant transaction sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_timeout_holds_behind_the_pooler() {
    let (store, _pooler, _database) = pooled(|options| PostgresOptions {
        statement_timeout: Some(Duration::from_millis(200)),
        ..options
    })
    .await;
    crate::support::slow_statements_time_out(&store).await;
}

/// A pooler that was not told to ignore `options` refuses the store: the error says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_refusing_the_startup_parameter_is_named_in_the_error() {
    let database = TestDb::create().await;
    let pooler = Pooler::start(server_port(), 2, "");
    let error = PostgresStore::connect(&pooler.url_for(&database.url), database.options())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), astrocyte_core::ErrorKind::Unavailable);
    assert!(error.to_string().contains("options"), "{error}");
}
