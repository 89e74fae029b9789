//! Conversions between SQLite rows and domain values: memories, timestamps (integer
//! microseconds since the epoch, UTC) and vectors (little-endian `f32` blobs).

use astrocyte_core::{BankId, ChunkRef, Memory, Metadata, Timestamp};
use chrono::DateTime;
use rusqlite::Row;

use crate::error::{StoreError, StoreResult};

/// Columns read for a memory, in the order [`RawMemory::from_row`] expects; the table alias
/// is `m`. Append [`EMBEDDING_COLUMN`] to read the vector as well.
pub(crate) const MEMORY_COLUMNS: &str = "m.rowid, m.id, m.bank_id, m.text, m.tags, m.metadata, m.fact_type, m.occurred_at, m.retained_at, m.forgotten_at, m.source, m.chunk, m.thread";

/// The vector column, read after [`MEMORY_COLUMNS`] when a caller wants embeddings.
pub(crate) const EMBEDDING_COLUMN: &str = "m.embedding";

/// A memory row as stored, before its JSON and timestamps are decoded. Decoding happens outside
/// the driver's row callback so its errors are ours, not the driver's.
pub(crate) struct RawMemory {
    pub(crate) rowid: i64,
    id: String,
    bank_id: String,
    text: String,
    tags: String,
    metadata: String,
    fact_type: String,
    occurred_at: Option<i64>,
    retained_at: i64,
    forgotten_at: Option<i64>,
    source: Option<String>,
    chunk: Option<String>,
    thread: Option<String>,
    embedding: Option<Vec<u8>>,
}

impl RawMemory {
    /// Reads [`MEMORY_COLUMNS`], plus the embedding when `with_embedding`.
    pub(crate) fn from_row(row: &Row<'_>, with_embedding: bool) -> rusqlite::Result<Self> {
        Ok(RawMemory {
            rowid: row.get(0)?,
            id: row.get(1)?,
            bank_id: row.get(2)?,
            text: row.get(3)?,
            tags: row.get(4)?,
            metadata: row.get(5)?,
            fact_type: row.get(6)?,
            occurred_at: row.get(7)?,
            retained_at: row.get(8)?,
            forgotten_at: row.get(9)?,
            source: row.get(10)?,
            chunk: row.get(11)?,
            thread: row.get(12)?,
            embedding: if with_embedding {
                Some(row.get(13)?)
            } else {
                None
            },
        })
    }

    /// Decodes the row into a memory.
    pub(crate) fn into_memory(self) -> StoreResult<Memory> {
        let bank_id = BankId::new(self.bank_id)
            .map_err(|e| StoreError::CorruptRow(format!("stored bank id is invalid: {e}")))?;
        let tags: Vec<String> = serde_json::from_str(&self.tags)?;
        let metadata: Metadata = serde_json::from_str(&self.metadata)?;
        let chunk: Option<ChunkRef> = match self.chunk {
            Some(json) => Some(serde_json::from_str(&json)?),
            None => None,
        };
        let embedding = match self.embedding {
            Some(blob) => Some(decode_vector(&blob)?),
            None => None,
        };
        Ok(Memory {
            id: self.id,
            bank_id,
            text: self.text,
            tags,
            metadata,
            fact_type: self.fact_type,
            occurred_at: self.occurred_at.map(from_micros).transpose()?,
            retained_at: from_micros(self.retained_at)?,
            forgotten_at: self.forgotten_at.map(from_micros).transpose()?,
            source: self.source,
            chunk,
            thread: self.thread,
            embedding,
        })
    }
}

/// A timestamp as stored: microseconds since the Unix epoch (PostgreSQL's precision too).
pub(crate) fn to_micros(timestamp: Timestamp) -> i64 {
    timestamp.timestamp_micros()
}

/// The inverse of [`to_micros`].
pub(crate) fn from_micros(micros: i64) -> StoreResult<Timestamp> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::CorruptRow(format!("timestamp {micros} is out of range")))
}

/// A vector as stored: its components as little-endian `f32`, back to back.
pub(crate) fn encode_vector(vector: &[f32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(vector.len() * 4);
    for component in vector {
        blob.extend_from_slice(&component.to_le_bytes());
    }
    blob
}

/// FNV-1a (64-bit) of a vector blob, as a signed integer for SQLite. Persisted, so it must
/// never change: `std`'s hasher is not stable across releases, this one is fixed.
pub(crate) fn vector_hash(blob: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in blob {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// The inverse of [`encode_vector`].
pub(crate) fn decode_vector(blob: &[u8]) -> StoreResult<Vec<f32>> {
    if !blob.len().is_multiple_of(4) {
        return Err(StoreError::CorruptRow(format!(
            "vector blob of {} bytes is not a whole number of f32",
            blob.len()
        )));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_timestamps_round_trip() {
        let vector = vec![0.5f32, -1.25, 3.0e-8, 0.0];
        assert_eq!(
            decode_vector(&encode_vector(&vector)).expect("decode"),
            vector
        );
        assert!(decode_vector(&[0, 1, 2]).is_err());
        // FNV-1a reference values: the empty input and "a".
        assert_eq!(vector_hash(b"") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(vector_hash(b"a") as u64, 0xaf63_dc4c_8601_ec8c);
        let now = chrono::Utc::now();
        let back = from_micros(to_micros(now)).expect("in range");
        assert_eq!(to_micros(back), to_micros(now));
        assert!((now - back).num_microseconds().unwrap_or(i64::MAX) < 1);
    }
}
