//! Keyword index snapshots: the live documents and their postings, stored in pieces in
//! `keyword_index_chunks` so that opening a large bank reads them back instead of tokenising
//! every row (3–4 s at 100k memories, most of a restart).
//!
//! A snapshot records the highest row id it covers. Rows after it are caught up from the table
//! at load; rows up to it that changed since (rewritten, forgotten, deleted) are listed in
//! `keyword_index_changed` by triggers, in the transaction of the change, so no write path can
//! leave a stale snapshot behind. Purges delete the snapshot outright: it would still hold the
//! purged words.
//!
//! Format (little-endian, integers as LEB128 varints unless sized):
//!
//! ```text
//! header    magic "ASTRKWIX" | version u32 | documents | terms
//! document* row id delta (from the previous row id, first from 0) | length
//! term*     stem byte length | stem bytes | count | (doc delta | frequency u8) x count
//! ```
//!
//! Documents are written in row-id order and numbered 0.. in that order, the numbering a build
//! from the rows gives them, so a loaded index ranks exactly as a rebuilt one. A checksum of
//! the bytes sits in the `keyword_index` row; anything that fails to parse or check is treated
//! as no snapshot (the index is rebuilt).

use std::collections::HashMap;
use std::io::{self, Write};

use astrocyte_core::BankId;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{renumber_postings, text_at, KeywordIndex, Postings, Tokenizer};
use crate::error::StoreResult;
use crate::pieces::{Checksum, PieceWriter};
use crate::rows::to_micros;

const MAGIC: &[u8; 8] = b"ASTRKWIX";
const VERSION: u32 = 1;

/// Bytes per stored piece: a load holds one piece at a time, and SQLite refuses values over
/// 1 GB.
#[cfg(not(test))]
pub(crate) const KEYWORD_SNAPSHOT_PIECE: usize = 32 << 20;
/// Small pieces in unit tests, so small snapshots are stored in many.
#[cfg(test)]
pub(crate) const KEYWORD_SNAPSHOT_PIECE: usize = 4096;

/// Why a stored snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("{0}")]
    Corrupt(String),
    #[error("reading: {0}")]
    Io(#[from] io::Error),
}

fn corrupt(message: impl Into<String>) -> Unusable {
    Unusable::Corrupt(message.into())
}

/// Writes a snapshot of `index` into `keyword_index` / `keyword_index_chunks` inside `tx`,
/// replacing the bank's previous one (and with it its list of changed rows). The caller holds
/// the writer, so `index` reflects every committed row: it covers row ids up to the newest.
/// Returns the bytes written.
pub(crate) fn store_snapshot(
    tx: &Transaction<'_>,
    bank: &BankId,
    index: &KeywordIndex,
) -> StoreResult<u64> {
    let max_rowid: i64 = tx.query_row(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memories'), 0),
                    COALESCE((SELECT MAX(rowid) FROM memories), 0))",
        [],
        |row| row.get(0),
    )?;
    // The trigger on keyword_index clears the old pieces and the changed-row list.
    tx.execute(
        "DELETE FROM keyword_index WHERE bank_id = ?1",
        [bank.as_str()],
    )?;
    let mut pieces = PieceWriter::new(
        tx,
        "INSERT INTO keyword_index_chunks (bank_id, seq, data) VALUES (?1, ?2, ?3)",
        bank,
        KEYWORD_SNAPSHOT_PIECE,
    );
    pieces.write_all_from(|out| write_index(index, out))?;
    let (seq, bytes, sum) = (pieces.pieces(), pieces.bytes(), pieces.checksum());
    tx.execute(
        "INSERT INTO keyword_index (bank_id, max_rowid, pieces, bytes, checksum, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            bank.as_str(),
            max_rowid,
            seq,
            bytes as i64,
            sum,
            to_micros(chrono::Utc::now())
        ],
    )?;
    Ok(bytes)
}

fn put_varint(out: &mut dyn Write, mut value: u64) -> io::Result<()> {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes[n] = low;
            n += 1;
            break;
        }
        bytes[n] = low | 0x80;
        n += 1;
    }
    out.write_all(&bytes[..n])
}

/// Serialises the live documents of `index` in row-id order (see the module docs).
fn write_index(index: &KeywordIndex, out: &mut dyn Write) -> io::Result<()> {
    let (renumbered, live) = index.renumbering();
    let mut stems: Vec<&str> = vec![""; index.postings.len()];
    for (stem, term) in &index.terms {
        stems[*term as usize] = stem;
    }
    let mut pairs: Vec<(u32, u8)> = Vec::new();
    // Terms left with no live document are not written; count the rest first.
    let terms = index
        .postings
        .iter()
        .filter(|postings| {
            postings
                .docs
                .iter()
                .any(|doc| renumbered[*doc as usize] != u32::MAX)
        })
        .count();
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    put_varint(out, live.len() as u64)?;
    put_varint(out, terms as u64)?;
    let mut previous = 0i64;
    for old in &live {
        let rowid = index.rowids[*old as usize];
        put_varint(out, rowid.wrapping_sub(previous) as u64)?;
        put_varint(out, u64::from(index.lengths[*old as usize]))?;
        previous = rowid;
    }
    for (term, postings) in index.postings.iter().enumerate() {
        renumber_postings(postings, &renumbered, &mut pairs);
        if pairs.is_empty() {
            continue;
        }
        let stem = stems[term].as_bytes();
        put_varint(out, stem.len() as u64)?;
        out.write_all(stem)?;
        put_varint(out, pairs.len() as u64)?;
        let mut previous = 0u32;
        for (doc, freq) in &pairs {
            put_varint(out, u64::from(doc - previous))?;
            out.write_all(&[*freq])?;
            previous = *doc;
        }
    }
    Ok(())
}

/// Reads a snapshot's pieces into one buffer and checks them against the header: the piece
/// count, the byte count and the checksum. The whole snapshot is a tenth of the index it
/// describes (83 MB at 1M memories), and parsing one slice avoids a call per byte.
fn read_pieces(
    conn: &Connection,
    bank: &BankId,
    pieces: i64,
    bytes: i64,
    checksum: i64,
) -> Result<Vec<u8>, Unusable> {
    let io = |error: rusqlite::Error| Unusable::Io(io::Error::other(error));
    let bytes = usize::try_from(bytes).map_err(|_| corrupt("bad byte count"))?;
    let mut data = Vec::new();
    // A damaged header must not abort the process with a failed allocation.
    data.try_reserve_exact(bytes)
        .map_err(|_| corrupt("byte count out of range"))?;
    let mut statement = conn
        .prepare("SELECT seq, data FROM keyword_index_chunks WHERE bank_id = ?1 ORDER BY seq")
        .map_err(io)?;
    let mut rows = statement.query([bank.as_str()]).map_err(io)?;
    let mut seq = 0i64;
    while let Some(row) = rows.next().map_err(io)? {
        seq += 1;
        if row.get::<_, i64>(0).map_err(io)? != seq {
            return Err(corrupt("pieces missing"));
        }
        let piece = row
            .get_ref(1)
            .map_err(io)?
            .as_blob()
            .map_err(|_| corrupt("piece is not a blob"))?;
        if data.len() + piece.len() > bytes {
            return Err(corrupt("pieces longer than recorded"));
        }
        data.extend_from_slice(piece);
    }
    if seq != pieces || data.len() != bytes {
        return Err(corrupt("pieces missing"));
    }
    let mut sum = Checksum::new();
    sum.update(&data);
    if sum.finish() != checksum {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(data)
}

/// A parse position in a snapshot held in memory.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], Unusable> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, Unusable> {
        let b = *self.data.get(self.at).ok_or_else(|| corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Unusable> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint too long"))
    }

    /// A varint that must not exceed `max`.
    fn bounded(&mut self, max: u64, what: &str) -> Result<u64, Unusable> {
        let value = self.varint()?;
        if value > max {
            return Err(corrupt(format!("{what} {value} out of range")));
        }
        Ok(value)
    }

    /// How many items of at least `min_bytes` each the unread bytes can still hold: a bound
    /// on what to allocate for a count read from the data.
    fn room(&self, min_bytes: usize) -> usize {
        (self.data.len() - self.at) / min_bytes
    }
}

/// Parses a snapshot. Every count is checked against what was read before it and allocation
/// is bounded by the bytes left to read, so damaged data is an error, never a panic or a huge
/// allocation.
fn read_index(input: &mut Input<'_>) -> Result<KeywordIndex, Unusable> {
    if input.bytes(MAGIC.len())? != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(input.bytes(4)?);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(corrupt(format!("unsupported version {version}")));
    }
    let documents = input.bounded(u64::from(u32::MAX - 1), "document count")? as usize;
    let terms = input.bounded(u64::from(u32::MAX - 1), "term count")? as usize;
    let mut index = KeywordIndex::default();
    // A document takes at least two bytes, a term at least four.
    let reserve = documents.min(input.room(2));
    index.rowids.reserve_exact(reserve);
    index.lengths.reserve_exact(reserve);
    let mut rowid = 0i64;
    for number in 0..documents {
        let delta = input.bounded(i64::MAX as u64, "row id delta")?;
        if delta == 0 {
            return Err(corrupt("row ids out of order"));
        }
        rowid = rowid
            .checked_add(delta as i64)
            .ok_or_else(|| corrupt("row id overflow"))?;
        let length = input.bounded(u64::from(u16::MAX), "document length")? as u16;
        if length == 0 {
            return Err(corrupt("empty document"));
        }
        index.rowids.push(rowid);
        index.lengths.push(length);
        index.live_length += u64::from(length);
        index.min_length = if number == 0 {
            length
        } else {
            index.min_length.min(length)
        };
    }
    index.numbers = index
        .rowids
        .iter()
        .enumerate()
        .map(|(number, rowid)| (*rowid, number as u32))
        .collect();
    let reserve = terms.min(input.room(4));
    index.terms = HashMap::with_capacity(reserve);
    index.postings.reserve_exact(reserve);
    for term in 0..terms {
        let length = input.bounded(1 << 16, "stem length")? as usize;
        let text =
            std::str::from_utf8(input.bytes(length)?).map_err(|_| corrupt("stem is not utf-8"))?;
        let text: Box<str> = text.into();
        let count = input.bounded(documents as u64, "posting count")? as usize;
        if count == 0 {
            return Err(corrupt("term without documents"));
        }
        // A posting takes at least two bytes.
        let reserve = count.min(input.room(2));
        let mut postings = Postings {
            docs: Vec::with_capacity(reserve),
            freqs: Vec::with_capacity(reserve),
            max_freq: 0,
        };
        let mut doc = 0u64;
        for i in 0..count {
            let delta = input.bounded(documents as u64, "document delta")?;
            if i > 0 && delta == 0 {
                return Err(corrupt("postings out of order"));
            }
            doc += delta;
            if doc >= documents as u64 {
                return Err(corrupt("posting past the last document"));
            }
            let freq = input.byte()?;
            if freq == 0 {
                return Err(corrupt("zero frequency"));
            }
            postings.docs.push(doc as u32);
            postings.freqs.push(freq);
            postings.max_freq = postings.max_freq.max(freq);
        }
        if index.terms.insert(text, term as u32).is_some() {
            return Err(corrupt("duplicate stem"));
        }
        index.postings.push(postings);
    }
    if input.at != input.data.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(index)
}

/// Reads the bank's stored snapshot and catches it up with the rows changed since (`conn`
/// should be in a transaction). `None` when there is none or it is unusable (logged).
pub(super) fn load_snapshot(conn: &Connection, bank: &BankId) -> StoreResult<Option<KeywordIndex>> {
    let header: Option<(i64, i64, i64, i64)> = conn
        .query_row(
            "SELECT max_rowid, pieces, bytes, checksum FROM keyword_index WHERE bank_id = ?1",
            [bank.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((max_rowid, pieces, bytes, checksum)) = header else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let parsed = read_pieces(conn, bank, pieces, bytes, checksum).and_then(|data| {
        let read_ms = started.elapsed().as_millis() as u64;
        let index = read_index(&mut Input { data: &data, at: 0 })?;
        tracing::debug!(bank = %bank, bytes = data.len(), read_ms, parse_ms = started.elapsed().as_millis() as u64 - read_ms, "keyword index snapshot read");
        Ok(index)
    });
    let mut index = match parsed {
        Ok(index) => index,
        Err(error) => {
            tracing::warn!(bank = %bank, %error, "keyword index snapshot unusable; rebuilding from rows");
            return Ok(None);
        }
    };
    catch_up(conn, bank, &mut index, max_rowid)?;
    Ok(Some(index))
}

/// Applies the rows changed since the snapshot: those up to `max_rowid` that its triggers
/// listed, then every visible row after it. Renumbers in row-id order afterwards when anything
/// was rewritten or removed, so the index is the one a rebuild would give.
fn catch_up(
    conn: &Connection,
    bank: &BankId,
    index: &mut KeywordIndex,
    max_rowid: i64,
) -> StoreResult<()> {
    let mut tokenizer = Tokenizer::new();
    let mut reordered = false;
    {
        let mut statement = conn.prepare(
            "SELECT c.memory_rowid, m.search_text, m.index_context,
                    m.rowid IS NOT NULL AND m.bank_id = c.bank_id AND m.forgotten_at IS NULL
             FROM keyword_index_changed c LEFT JOIN memories m ON m.rowid = c.memory_rowid
             WHERE c.bank_id = ?1 AND c.memory_rowid <= ?2",
        )?;
        let mut rows = statement.query(params![bank.as_str(), max_rowid])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            reordered = true;
            if row.get::<_, bool>(3)? {
                let text = text_at(row, 1)?.unwrap_or_default();
                let context = text_at(row, 2)?;
                index.add(&mut tokenizer, rowid, &text, context.as_deref());
            } else {
                index.remove(rowid);
            }
        }
    }
    let mut statement = conn.prepare(
        "SELECT rowid, search_text, index_context FROM memories
         WHERE bank_id = ?1 AND forgotten_at IS NULL AND rowid > ?2 ORDER BY rowid",
    )?;
    let mut rows = statement.query(params![bank.as_str(), max_rowid])?;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let text = text_at(row, 1)?.unwrap_or_default();
        let context = text_at(row, 2)?;
        index.add(&mut tokenizer, rowid, &text, context.as_deref());
    }
    if reordered {
        index.compact();
    }
    Ok(())
}
