//! Small helpers shared by every statement: a typed parameter list for one-shot (unnamed)
//! statements, the memory column list and the row decoder. No statement text lives here.

use astrocyte_core::{BankId, ChunkRef, Memory, Metadata};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use crate::error::{PgError, PgResult};

/// Bound parameters with their types, sent with `query_typed`: one round trip and no named
/// prepared statement left on the connection, so per-tenant SQL never fills a cache.
#[derive(Default)]
pub(crate) struct Params {
    values: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
}

impl Params {
    /// Adds a value and returns its placeholder (`$n`).
    pub(crate) fn push<T: ToSql + Sync + Send + 'static>(&mut self, value: T, ty: Type) -> String {
        self.values.push((Box::new(value), ty));
        format!("${}", self.values.len())
    }

    /// The values in the shape `query_typed` takes.
    pub(crate) fn typed(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.values
            .iter()
            .map(|(value, ty)| (&**value as &(dyn ToSql + Sync), ty.clone()))
            .collect()
    }
}

/// The memory columns every read returns, on alias `m`.
pub(crate) const MEMORY_COLUMNS: &str = "m.id, m.bank_id, m.text, m.tags, m.metadata, m.fact_type, \
     m.occurred_at, m.retained_at, m.forgotten_at, m.source, m.chunk_group, m.chunk_index, m.chunk_count, m.thread";

/// The extra column holding the vector as `real[]` when a caller asks for embeddings.
pub(crate) const EMBEDDING_COLUMN: &str = "m.embedding::real[] AS embedding";

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> PgResult<T> {
    row.try_get(name)
        .map_err(|error| PgError::Decode(format!("column {name}: {error}")))
}

/// Decodes a memory from a row produced with [`MEMORY_COLUMNS`] (and optionally
/// [`EMBEDDING_COLUMN`]).
pub(crate) fn memory_from_row(row: &Row, with_embedding: bool) -> PgResult<Memory> {
    let bank: String = column(row, "bank_id")?;
    let bank_id =
        BankId::new(&bank).map_err(|error| PgError::Decode(format!("bank_id: {error}")))?;
    let metadata_value: serde_json::Value = column(row, "metadata")?;
    let metadata: Metadata = match metadata_value {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        other => {
            return Err(PgError::Decode(format!(
                "metadata is not an object: {other}"
            )))
        }
    };
    let chunk_group: Option<String> = column(row, "chunk_group")?;
    let chunk_index: Option<i32> = column(row, "chunk_index")?;
    let chunk_count: Option<i32> = column(row, "chunk_count")?;
    let chunk = match (chunk_group, chunk_index, chunk_count) {
        (Some(group_id), Some(index), Some(count)) => Some(ChunkRef {
            group_id,
            index: u32::try_from(index)
                .map_err(|_| PgError::Decode("negative chunk_index".into()))?,
            count: u32::try_from(count)
                .map_err(|_| PgError::Decode("negative chunk_count".into()))?,
        }),
        _ => None,
    };
    let embedding: Option<Vec<f32>> = if with_embedding {
        column(row, "embedding")?
    } else {
        None
    };
    Ok(Memory {
        id: column(row, "id")?,
        bank_id,
        text: column(row, "text")?,
        tags: column(row, "tags")?,
        metadata,
        fact_type: column(row, "fact_type")?,
        occurred_at: column(row, "occurred_at")?,
        retained_at: column(row, "retained_at")?,
        forgotten_at: column(row, "forgotten_at")?,
        source: column(row, "source")?,
        chunk,
        thread: column(row, "thread")?,
        embedding,
    })
}

/// Converts a count or limit into the `bigint` PostgreSQL expects.
pub(crate) fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
