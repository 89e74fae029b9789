//! Opening tenant database connections with the store's pragmas, and the small pool of
//! read-only connections that lets concurrent recalls run in parallel under WAL.
//! It does not know the schema: migrations run elsewhere, on the writer.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

use crate::error::StoreResult;
use crate::options::SqliteOptions;

/// Prepared statements kept per connection; recall builds a handful of query shapes per
/// filter combination, so the driver's default of 16 would thrash.
const STATEMENT_CACHE: usize = 128;

/// Opens the single read-write connection of a tenant, creating the file when `create`.
pub(crate) fn open_writer(
    path: &Path,
    options: &SqliteOptions,
    create: bool,
) -> StoreResult<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL is a property of the file: set once by the writer, readers inherit it.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "sqlite refused WAL mode");
    }
    let synchronous = if options.durable_fsync {
        "FULL"
    } else {
        "NORMAL"
    };
    // secure_delete zeroes freed content so a purged memory's text does not linger in free
    // pages of the file.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;"
    ))?;
    Ok(conn)
}

/// Opens a reader on an existing tenant file. It is opened read-write but set `query_only`:
/// a WAL reader must be able to update the shared-memory index, which a read-only open
/// cannot always do. Its page cache is small because reads go through a memory map, which
/// the OS shares between connections.
fn open_reader(path: &Path, options: &SqliteOptions) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA query_only = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4000;
         PRAGMA mmap_size = 268435456;",
    )?;
    Ok(conn)
}

/// Idle read-only connections of one tenant; a checkout opens a new one when none is idle, so
/// the number of concurrent readers is bounded by the blocking thread pool, not by this pool.
pub(crate) struct ReaderPool {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    /// An empty pool for the tenant file at `path`.
    pub(crate) fn new(path: PathBuf, options: SqliteOptions) -> Self {
        ReaderPool {
            path,
            options,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A reader, returned to the pool when dropped.
    pub(crate) fn get(&self) -> StoreResult<PooledReader<'_>> {
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path, &self.options)?,
        };
        Ok(PooledReader {
            conn: Some(conn),
            pool: self,
        })
    }

    /// Closes every idle connection (the tenant is being dropped or closed).
    pub(crate) fn close_idle(&self) {
        self.idle.lock().clear();
    }
}

/// A checked-out reader.
pub(crate) struct PooledReader<'a> {
    conn: Option<Connection>,
    pool: &'a ReaderPool,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("invariant: a pooled reader holds its connection until dropped")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.idle.lock();
            if idle.len() < self.pool.options.max_idle_readers {
                idle.push(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .expect("pragma")
    }

    #[test]
    fn durability_and_busy_timeout_options_reach_the_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let relaxed = open_writer(&path, &SqliteOptions::default(), true).expect("open");
        assert_eq!(pragma(&relaxed, "synchronous"), 1, "NORMAL by default");
        assert_eq!(pragma(&relaxed, "busy_timeout"), 5_000);
        assert_eq!(pragma(&relaxed, "foreign_keys"), 1);
        drop(relaxed);
        let options = SqliteOptions {
            durable_fsync: true,
            busy_timeout: Duration::from_millis(250),
            ..SqliteOptions::default()
        };
        let durable = open_writer(&path, &options, false).expect("open");
        assert_eq!(
            pragma(&durable, "synchronous"),
            2,
            "FULL when durable_fsync"
        );
        assert_eq!(pragma(&durable, "busy_timeout"), 250);
    }

    #[test]
    fn the_pool_keeps_at_most_max_idle_readers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let _writer = open_writer(&path, &SqliteOptions::default(), true).expect("open");
        let options = SqliteOptions {
            max_idle_readers: 2,
            ..SqliteOptions::default()
        };
        let pool = ReaderPool::new(path, options);
        let readers: Vec<_> = (0..5).map(|_| pool.get().expect("reader")).collect();
        assert_eq!(pragma(&readers[0], "query_only"), 1);
        drop(readers);
        assert_eq!(pool.idle.lock().len(), 2);
    }
}
