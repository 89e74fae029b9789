//! The PostgreSQL servers tenants are placed on: the home database (directory, API keys) and
//! any further ones, each with its own pool, pgvector names and database tag, and the policy
//! that places new tenants. Which server holds a tenant is one directory column; nothing here
//! coordinates servers beyond reading it.

use std::sync::Arc;

use astrocyte_core::{Error, Result};
use deadpool_postgres::Pool;
use tokio_postgres::Config;

use crate::names::{DatabaseTag, VectorSql};
use crate::replica::ReplicaSet;

/// Names one configured server in the directory: `host:port/database` of its URL, without
/// user or password, so the directory never holds a secret. Keep a server's host spelling
/// stable: tenants placed there are found by this key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey(String);

impl ServerKey {
    /// The key of a parsed connection URL.
    pub(crate) fn of(config: &Config) -> ServerKey {
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.to_string_lossy().into_owned(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        // libpq's default database is the user's name.
        let database = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        ServerKey(format!("{host}:{port}/{database}"))
    }

    /// The key a user names: a connection URL (its key is taken) or a key as printed.
    pub fn parse(text: &str) -> Result<ServerKey> {
        if text.contains("://") || text.contains('=') {
            let config: Config = text
                .parse()
                .map_err(|error| Error::invalid(format!("invalid server url: {error}")))?;
            return Ok(ServerKey::of(&config));
        }
        if text.is_empty() || !text.contains('/') {
            return Err(Error::invalid(format!(
                "{text:?} is neither a server url nor a server key (host:port/database)"
            )));
        }
        Ok(ServerKey(text.to_string()))
    }

    /// Reads a key back from the directory.
    pub(crate) fn stored(text: String) -> ServerKey {
        ServerKey(text)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where new tenants go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The server holding the fewest tenants in the directory (ties: the home server, then
    /// the configured order).
    #[default]
    LeastTenants,
    /// Always the home server; other servers only receive tenants moved there.
    Home,
}

impl std::str::FromStr for Placement {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "least_tenants" => Ok(Placement::LeastTenants),
            "home" => Ok(Placement::Home),
            other => Err(Error::invalid(format!(
                "unknown placement {other:?} (least_tenants or home)"
            ))),
        }
    }
}

/// One server tenants may live on.
pub(crate) struct Server {
    /// Its directory key.
    pub(crate) key: ServerKey,
    /// Whether this is the home database (directory, keys; `NULL` in the directory's column).
    pub(crate) home: bool,
    pub(crate) pool: Pool,
    /// pgvector's names on this server (the extension's schema may differ per server).
    pub(crate) vector: Arc<VectorSql>,
    /// This database's tag, part of every tenant role created here.
    pub(crate) database: DatabaseTag,
    /// Replicas of this server (the home server only).
    pub(crate) replicas: Option<Arc<ReplicaSet>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("key", &self.key)
            .field("home", &self.home)
            .finish()
    }
}

/// Picks the server for a new tenant: `counts` holds each server's tenants in the directory
/// (a server missing from it holds none).
pub(crate) fn choose<'a>(
    placement: Placement,
    servers: &'a [Arc<Server>],
    counts: &[(Option<ServerKey>, i64)],
) -> &'a Arc<Server> {
    let count_of = |server: &Server| {
        counts
            .iter()
            .filter(|(key, _)| match key {
                None => server.home,
                Some(key) => *key == server.key,
            })
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    match placement {
        Placement::Home => &servers[0],
        // `min_by_key` keeps the first of equals, and the home server is first.
        Placement::LeastTenants => servers
            .iter()
            .min_by_key(|server| count_of(server))
            .unwrap_or(&servers[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_leave_out_credentials_and_fill_in_defaults() {
        let key = |url: &str| ServerKey::parse(url).expect("valid").to_string();
        assert_eq!(
            key("postgres://astro:secret@db1.internal:5433/astrocyte"),
            "db1.internal:5433/astrocyte"
        );
        assert_eq!(key("postgres://astro@db2/mem"), "db2:5432/mem");
        assert_eq!(key("postgres://astro@db3"), "db3:5432/astro");
        assert_eq!(key("host=db4 port=6000 dbname=x user=u"), "db4:6000/x");
        assert_eq!(
            key("db1.internal:5433/astrocyte"),
            "db1.internal:5433/astrocyte"
        );
        assert!(ServerKey::parse("nonsense").is_err());
    }

    #[test]
    fn placement_names_parse() {
        assert_eq!(
            "least_tenants".parse::<Placement>().ok(),
            Some(Placement::LeastTenants)
        );
        assert_eq!("home".parse::<Placement>().ok(), Some(Placement::Home));
        assert!("random".parse::<Placement>().is_err());
    }
}
