//! [`SqliteKeyDirectory`]: hashed API keys in their own database file beside the tenant files,
//! `<data_dir>/_directory.keys.db`. Its stem holds a '.', which no schema name may, so it can
//! never be mistaken for (or collide with) a tenant. It stores only keyed hashes; issuing and
//! hashing keys is the server's job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use astrocyte_core::store::{ApiKeyRecord, KeyDirectory};
use astrocyte_core::{Error, Schema, Timestamp};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tracing::instrument;

use crate::connection::open_writer;
use crate::error::{StoreError, StoreResult};
use crate::migrations::migrate_key_directory;
use crate::options::SqliteOptions;
use crate::rows::{from_micros, to_micros};

/// The key directory's file name inside the data directory.
pub const KEY_DIRECTORY_FILE: &str = "_directory.keys.db";

const KEY_COLUMNS: &str = "key_id, key_hash, schema, principal, created_at, revoked_at";

/// The API-key directory of a [`crate::SqliteStore`] (what `Store::key_directory` returns).
/// The file is created on first use; several processes may share it (WAL, busy timeout).
#[derive(Clone)]
pub(crate) struct SqliteKeyDirectory {
    file: Arc<KeyFile>,
}

struct KeyFile {
    path: PathBuf,
    options: SqliteOptions,
    /// Opened (and migrated) on first use.
    conn: Mutex<Option<Connection>>,
}

impl KeyFile {
    /// Runs `operation` on the connection, opening the file first; with `create` false and no
    /// file yet, answers `None` without creating it.
    fn with_conn<R>(
        &self,
        create: bool,
        operation: impl FnOnce(&mut Connection) -> StoreResult<R>,
    ) -> StoreResult<Option<R>> {
        let mut guard = self.conn.lock();
        if guard.is_none() {
            if !create && !self.path.exists() {
                return Ok(None);
            }
            let mut conn = open_writer(&self.path, &self.options, true)?;
            migrate_key_directory(&mut conn)?;
            *guard = Some(conn);
        }
        let conn = guard
            .as_mut()
            .expect("invariant: the connection was opened above");
        operation(conn).map(Some)
    }
}

struct RawKey {
    key_id: String,
    key_hash: String,
    schema: String,
    principal: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl RawKey {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawKey {
            key_id: row.get(0)?,
            key_hash: row.get(1)?,
            schema: row.get(2)?,
            principal: row.get(3)?,
            created_at: row.get(4)?,
            revoked_at: row.get(5)?,
        })
    }

    fn into_record(self) -> StoreResult<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            schema: Schema::new(self.schema)
                .map_err(|e| StoreError::CorruptRow(format!("stored schema is invalid: {e}")))?,
            created_at: from_micros(self.created_at)?,
            revoked_at: self.revoked_at.map(from_micros).transpose()?,
            key_id: self.key_id,
            key_hash: self.key_hash,
            principal: self.principal,
        })
    }
}

impl SqliteKeyDirectory {
    pub(crate) fn new(data_dir: &Path, options: SqliteOptions) -> Self {
        SqliteKeyDirectory {
            file: Arc::new(KeyFile {
                path: data_dir.join(KEY_DIRECTORY_FILE),
                options,
                conn: Mutex::new(None),
            }),
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        create: bool,
        operation: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> astrocyte_core::Result<Option<R>> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || file.with_conn(create, operation))
            .await
            .map_err(StoreError::from)?
            .map_err(Error::from)
    }

    /// Deletes every key of `schema` (its tenant is being dropped); how many there were.
    pub(crate) async fn remove_tenant(&self, schema: &Schema) -> astrocyte_core::Result<u64> {
        let schema = schema.to_string();
        let removed = self
            .blocking(false, move |conn| {
                Ok(conn.execute("DELETE FROM api_keys WHERE schema = ?1", [schema])? as u64)
            })
            .await?;
        Ok(removed.unwrap_or(0))
    }
}

#[async_trait]
impl KeyDirectory for SqliteKeyDirectory {
    /// A key may name a tenant whose file does not exist yet: the embedded store creates
    /// tenants on first use.
    #[instrument(skip_all, fields(key_id = %record.key_id, tenant = %record.schema))]
    async fn put_key(&self, record: &ApiKeyRecord) -> astrocyte_core::Result<()> {
        let record = record.clone();
        self.blocking(true, move |conn| {
            // A duplicate key id (or hash) is a constraint violation, mapped to Conflict.
            conn.prepare_cached(&format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                record.key_id,
                record.key_hash,
                record.schema.as_str(),
                record.principal,
                to_micros(record.created_at),
                record.revoked_at.map(to_micros),
            ])?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn find_key_by_hash(
        &self,
        key_hash: &str,
    ) -> astrocyte_core::Result<Option<ApiKeyRecord>> {
        let key_hash = key_hash.to_string();
        let found = self
            .blocking(false, move |conn| {
                let raw = conn
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
                    ))?
                    .query_row([key_hash], RawKey::from_row)
                    .optional()?;
                raw.map(RawKey::into_record).transpose()
            })
            .await?;
        Ok(found.flatten())
    }

    #[instrument(skip_all, fields(key_id = %key_id))]
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> astrocyte_core::Result<bool> {
        let key_id = key_id.to_string();
        let revoked = self
            .blocking(false, move |conn| {
                // Revoking twice keeps the first revocation time.
                let changed = conn
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1",
                    )?
                    .execute(params![key_id, to_micros(at)])?;
                Ok(changed > 0)
            })
            .await?;
        Ok(revoked.unwrap_or(false))
    }

    async fn list_keys(
        &self,
        schema: Option<&Schema>,
    ) -> astrocyte_core::Result<Vec<ApiKeyRecord>> {
        let schema = schema.map(|s| s.to_string());
        let keys = self
            .blocking(false, move |conn| {
                let raw: Vec<RawKey> = match schema {
                    Some(schema) => conn
                        .prepare_cached(&format!(
                            "SELECT {KEY_COLUMNS} FROM api_keys WHERE schema = ?1 ORDER BY key_id"
                        ))?
                        .query_map([schema], RawKey::from_row)?
                        .collect::<Result<_, _>>()?,
                    None => conn
                        .prepare_cached(&format!(
                            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY key_id"
                        ))?
                        .query_map([], RawKey::from_row)?
                        .collect::<Result<_, _>>()?,
                };
                raw.into_iter().map(RawKey::into_record).collect()
            })
            .await?;
        Ok(keys.unwrap_or_default())
    }
}
