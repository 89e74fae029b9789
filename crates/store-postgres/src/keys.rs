//! [`PgKeyDirectory`]: hashed API keys in `public.astrocyte_api_keys`, beside the tenant
//! directory and, like it, readable by no tenant role. It stores only keyed hashes; issuing
//! keys and hashing them is the server's job.

use astrocyte_core::store::{ApiKeyRecord, KeyDirectory};
use astrocyte_core::{Error, Result, Schema, Timestamp};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;
use tracing::instrument;

use crate::directory::keys_table;
use crate::error::{has_code, PgError, PgResult};

/// The API-key directory of a [`crate::PostgresStore`] (what `Store::key_directory` returns).
///
/// Runs as the pool's own user, never as a tenant role. A key's row references its tenant's
/// directory row, so dropping a tenant deletes its keys in the same transaction.
#[derive(Debug, Clone)]
pub struct PgKeyDirectory {
    pool: Pool,
}

const KEY_COLUMNS: &str = "key_id, key_hash, schema, principal, created_at, revoked_at";

impl PgKeyDirectory {
    pub(crate) fn new(pool: Pool) -> Self {
        PgKeyDirectory { pool }
    }

    async fn query(&self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> PgResult<Vec<Row>> {
        let client = self.pool.get().await?;
        Ok(client.query_typed(sql, params).await?)
    }
}

fn record_from_row(row: &Row) -> PgResult<ApiKeyRecord> {
    let schema: String = row.try_get("schema")?;
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id")?,
        key_hash: row.try_get("key_hash")?,
        schema: Schema::new(schema).map_err(|error| PgError::Decode(error.to_string()))?,
        principal: row.try_get("principal")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait]
impl KeyDirectory for PgKeyDirectory {
    #[instrument(skip_all, fields(key_id = %record.key_id, tenant = %record.schema))]
    async fn put_key(&self, record: &ApiKeyRecord) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            keys_table()
        );
        let schema = record.schema.as_str();
        let outcome = self
            .query(
                &sql,
                &[
                    (&record.key_id, Type::TEXT),
                    (&record.key_hash, Type::TEXT),
                    (&schema, Type::TEXT),
                    (&record.principal, Type::TEXT),
                    (&record.created_at, Type::TIMESTAMPTZ),
                    (&record.revoked_at, Type::TIMESTAMPTZ),
                ],
            )
            .await;
        match outcome {
            Ok(_) => Ok(()),
            // The key names a tenant the directory does not hold.
            Err(error) if has_code(&error, &SqlState::FOREIGN_KEY_VIOLATION) => Err(
                Error::NotFound(format!("tenant {} does not exist", record.schema)),
            ),
            // Duplicate key id (or, astronomically unlikely, hash): the SQLSTATE maps to Conflict.
            Err(error) => Err(error.into()),
        }
    }

    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {} WHERE key_hash = $1",
            keys_table()
        );
        let rows = self.query(&sql, &[(&key_hash, Type::TEXT)]).await?;
        Ok(rows.first().map(record_from_row).transpose()?)
    }

    #[instrument(skip_all, fields(key_id = %key_id))]
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<bool> {
        // Revoking twice keeps the first revocation time.
        let sql = format!(
            "UPDATE {} SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 RETURNING key_id",
            keys_table()
        );
        let rows = self
            .query(&sql, &[(&key_id, Type::TEXT), (&at, Type::TIMESTAMPTZ)])
            .await?;
        Ok(!rows.is_empty())
    }

    async fn list_keys(&self, schema: Option<&Schema>) -> Result<Vec<ApiKeyRecord>> {
        let rows = match schema {
            Some(schema) => {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM {} WHERE schema = $1 ORDER BY key_id",
                    keys_table()
                );
                self.query(&sql, &[(&schema.as_str(), Type::TEXT)]).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM {} ORDER BY key_id", keys_table());
                self.query(&sql, &[]).await?
            }
        };
        rows.iter().map(|row| Ok(record_from_row(row)?)).collect()
    }
}
