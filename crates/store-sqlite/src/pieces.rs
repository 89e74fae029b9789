//! Writing a large serialised index into SQLite as it is produced, in rows of a fixed size,
//! so a snapshot never exists whole in memory (at 1M memories of 384 dimensions a vector
//! snapshot is 1.6 GB) and no value nears SQLite's 1 GB limit.

use std::io::{self, BufWriter, Write};

use astrocyte_core::BankId;
use rusqlite::{params, Transaction};

use crate::error::{StoreError, StoreResult};

/// Streaming 64-bit checksum over 8-byte words: each step `s -> rotl((s ^ w) * K, 29)` is a
/// bijection in `s` and `w`, so a change confined to one word always changes the result; the
/// length is mixed in at the end. Detects torn writes and bit rot, not forgery.
pub(crate) struct Checksum {
    state: u64,
    tail: Vec<u8>,
    pub(crate) total: u64,
}

impl Checksum {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(crate) fn new() -> Self {
        Checksum {
            state: 0x1357_9BDF_2468_ACE0,
            tail: Vec::with_capacity(8),
            total: 0,
        }
    }

    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(Self::K).rotate_left(29);
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if !self.tail.is_empty() {
            let take = (8 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 8 {
                return;
            }
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.tail);
            self.mix(u64::from_le_bytes(word));
            self.tail.clear();
        }
        let words = data.chunks_exact(8);
        self.tail.extend_from_slice(words.remainder());
        for chunk in words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    /// The checksum, as SQLite stores integers.
    pub(crate) fn finish(&self) -> i64 {
        let mut state = self.state;
        let mut mix = |word: u64| state = (state ^ word).wrapping_mul(Self::K).rotate_left(29);
        if !self.tail.is_empty() {
            let mut word = [0u8; 8];
            word[..self.tail.len()].copy_from_slice(&self.tail);
            mix(u64::from_le_bytes(word));
        }
        mix(self.total);
        state as i64
    }
}

/// Inserts bytes as they are written, one row per `piece` bytes, with `insert` (parameters:
/// bank, 1-based sequence number, data).
pub(crate) struct PieceWriter<'a> {
    tx: &'a Transaction<'a>,
    insert: &'static str,
    bank: &'a BankId,
    piece: usize,
    buffer: Vec<u8>,
    seq: i64,
    sum: Checksum,
    /// The SQLite error behind a failed write, kept whole for the caller.
    failed: Option<rusqlite::Error>,
}

impl<'a> PieceWriter<'a> {
    pub(crate) fn new(
        tx: &'a Transaction<'a>,
        insert: &'static str,
        bank: &'a BankId,
        piece: usize,
    ) -> Self {
        PieceWriter {
            tx,
            insert,
            bank,
            piece: piece.max(1),
            buffer: Vec::new(),
            seq: 0,
            sum: Checksum::new(),
            failed: None,
        }
    }

    /// Runs `write` into this writer (buffered) and stores the last, partial piece.
    pub(crate) fn write_all_from(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> StoreResult<()> {
        let written = {
            let mut out = BufWriter::with_capacity(1 << 16, &mut *self);
            write(&mut out).and_then(|()| out.flush())
        };
        if let Some(error) = self.failed.take() {
            return Err(StoreError::Sqlite(error));
        }
        written?;
        self.flush_piece()?;
        Ok(())
    }

    /// Pieces stored.
    pub(crate) fn pieces(&self) -> i64 {
        self.seq
    }

    /// Bytes stored.
    pub(crate) fn bytes(&self) -> u64 {
        self.sum.total
    }

    /// Checksum of the bytes stored.
    pub(crate) fn checksum(&self) -> i64 {
        self.sum.finish()
    }

    fn flush_piece(&mut self) -> Result<(), rusqlite::Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.tx.execute(
            self.insert,
            params![self.bank.as_str(), self.seq + 1, self.buffer],
        )?;
        self.seq += 1;
        self.sum.update(&self.buffer);
        self.buffer.clear();
        Ok(())
    }
}

impl Write for PieceWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(self.piece);
        }
        let n = buf.len().min(self.piece - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == self.piece {
            if let Err(error) = self.flush_piece() {
                let message = error.to_string();
                self.failed = Some(error);
                return Err(io::Error::other(message));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_chunking_independent_and_sees_every_byte() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = Checksum::new();
        whole.update(&data);
        let mut split = Checksum::new();
        for piece in data.chunks(3) {
            split.update(piece);
        }
        assert_eq!(whole.finish(), split.finish());
        for i in [0usize, 7, 8, 500, 999] {
            let mut changed = data.clone();
            changed[i] ^= 0x10;
            let mut c = Checksum::new();
            c.update(&changed);
            assert_ne!(c.finish(), whole.finish(), "byte {i}");
        }
        let mut longer = Checksum::new();
        longer.update(&data);
        longer.update(&[0]);
        assert_ne!(longer.finish(), whole.finish(), "a trailing zero");
    }
}
