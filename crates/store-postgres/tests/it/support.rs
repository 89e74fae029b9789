//! Test databases: each test gets a freshly created database on the server named by
//! `ASTROCYTE_TEST_DATABASE_URL` and a role prefix of its own (roles are cluster-wide), and
//! both are dropped when the guard goes out of scope, even when the test panics. A missing
//! server fails the test; nothing is skipped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use astrocyte_store_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::types::FromSql;
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The first column of every row `sql` (without parameters) returns, in order.
pub async fn first_column<T: for<'a> FromSql<'a>>(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The server URL the tests run against.
pub fn server_url() -> String {
    std::env::var("ASTROCYTE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` with its database replaced by `database` (URL or key/value form).
pub fn with_database(url: &str, database: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => {
            let (base, query) = match url.find('?') {
                Some(q) => (&url[..q], &url[q..]),
                None => (url, ""),
            };
            let after_scheme = scheme_end + 3;
            let base = match base[after_scheme..].find('/') {
                Some(slash) => &base[..after_scheme + slash],
                None => base,
            };
            format!("{base}/{database}{query}")
        }
        None => format!("{url} dbname={database}"),
    }
}

/// Connects one plain client (the caller owns it; the connection task is spawned).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot reach the test PostgreSQL server at {url}: {error}")
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database (and role prefix) that exists for one test.
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// URL of the database.
    pub url: String,
    /// Prefix of every tenant role created by stores of this test.
    pub role_prefix: String,
    server: String,
}

impl TestDb {
    /// Creates a uniquely named database.
    pub async fn create() -> TestDb {
        Self::create_with_prefix(None).await
    }

    /// Creates a uniquely named database whose stores use `prefix` for tenant roles (another
    /// test database's, to put two databases of one cluster under the same prefix), or a
    /// prefix of its own.
    pub async fn create_with_prefix(prefix: Option<&str>) -> TestDb {
        let server = server_url();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("astro_it_{}_{n}_{}", std::process::id(), &unique[..8]);
        let admin = connect(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|error| panic!("create database {name}: {error}"));
        TestDb {
            url: with_database(&server, &name),
            role_prefix: prefix
                .map(str::to_string)
                .unwrap_or_else(|| format!("it{}_", &unique[8..18])),
            name,
            server,
        }
    }

    /// Options for stores of this test: its role prefix and a small pool.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: 8,
            role_prefix: self.role_prefix.clone(),
            statement_timeout: Some(Duration::from_secs(20)),
            ..PostgresOptions::default()
        }
    }

    /// A store on this database with [`TestDb::options`].
    pub async fn store(&self) -> PostgresStore {
        self.store_with(self.options()).await
    }

    /// A store on this database with the given options.
    pub async fn store_with(&self, options: PostgresOptions) -> PostgresStore {
        PostgresStore::connect(&self.url, options)
            .await
            .expect("connect store")
    }

    /// Drops the database now (its tenant roles stay, as they do in production); the guard
    /// still drops the roles with its prefix at the end.
    pub async fn drop_database(&self) {
        connect(&self.server)
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap_or_else(|error| panic!("drop database {}: {error}", self.name));
    }

    /// A superuser client on the server's maintenance database (for cluster-wide checks).
    pub async fn server_admin(&self) -> tokio_postgres::Client {
        connect(&self.server).await
    }

    /// A superuser client on this database, for catalog checks and test set-up.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

async fn cleanup(
    server: String,
    name: String,
    role_prefix: String,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&server, NoTls).await?;
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    // Roles outlive databases; with the database gone they own nothing and can be dropped.
    let roles = client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&role_prefix],
        )
        .await?;
    for row in roles {
        let role: String = row.get(0);
        match client
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .await
        {
            // Another live test database shares the prefix and this role owns something
            // there: that database's guard drops it.
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {}
            other => other?,
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name, prefix) = (
            self.server.clone(),
            self.name.clone(),
            self.role_prefix.clone(),
        );
        // Drop runs inside the test's runtime, which cannot be blocked on; a helper thread with
        // its own runtime does the clean-up and is joined so the database is gone on return.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(cleanup(server, name, prefix))
                .map_err(|error| error.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test database {} not cleaned up: {error}", self.name),
            Err(_) => eprintln!("test database {} clean-up panicked", self.name),
        }
    }
}

#[test]
fn database_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5432", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u@h/db?sslmode=disable", "x"),
        "postgresql://u@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("host=h user=u", "x"),
        "host=h user=u dbname=x"
    );
}

/// A tenant statement of `store` (whose statement timeout must be well under 4 s) that would
/// sleep 5 s is cancelled by the server.
pub async fn slow_statements_time_out(store: &PostgresStore) {
    let schema = astrocyte_core::Schema::new("slow").expect("schema");
    astrocyte_core::Store::create_tenant(store, &schema)
        .await
        .expect("create");
    let transaction = store
        .tenant_transaction(&schema)
        .await
        .expect("transaction");
    let started = std::time::Instant::now();
    let error = transaction
        .query("SELECT pg_sleep(5)", &[])
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(error.to_string().contains("timed out"), "{error}");
    transaction.rollback().await.expect("rollback");
}
