//! Snapshot format (little-endian throughout):
//!
//! ```text
//! header  magic "ASTRHNSW" | version u32 | dimension u32
//!         m u32 | ef_construction u32 | ef_search u32 | seed u64
//!         node_count u64 | entry u32 (u32::MAX = none) | max_level u32
//! node*   key u64 | flags u8 (bit 0 = tombstone) | level u8
//!         version 1: vector: dimension x f32
//!         version 2: codes: dimension x i8 | scale f32 | l1 f32
//!         for each layer 0..=level: count u16 | count x neighbour u32
//! trailer checksum u64 over every preceding byte
//! ```
//!
//! Version 1 is written by an index that keeps its vectors, version 2 by a
//! codes-only one ([`HnswIndex::new_codes_only`]): a quarter of the size, and
//! loaded without quantising anything.
//!
//! Tombstones are kept because they still carry graph edges; `compact`
//! before writing to drop them. Everything read is bounds-checked before use
//! and allocation only grows with bytes actually read, so a corrupt or
//! hostile file yields [`AnnError::Corrupt`], never a panic or a huge
//! allocation.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use crate::distance::quantize;
use crate::index::{sanitise, splitmix64, HnswIndex, MAX_LEVEL, MAX_NODES};
use crate::{AnnError, HnswParams};

const MAGIC: &[u8; 8] = b"ASTRHNSW";
/// Nodes carry f32 vectors.
const VERSION: u32 = 1;
/// Nodes carry int8 codes with their scale and L1 norm.
const VERSION_CODES: u32 = 2;
/// Largest dimension a snapshot may hold (no real embedding is close); a
/// bound so a corrupt header cannot request a huge buffer.
const MAX_DIM: usize = 1 << 16;
const NO_ENTRY: u32 = u32::MAX;

/// Streaming 64-bit checksum over 8-byte words.
///
/// Each step `s -> rotl((s ^ w) * K, 29)` is a bijection in both `s` and `w`,
/// so any change confined to one word always changes the result; the byte
/// length is mixed in at the end so truncation to a word boundary is caught
/// too. Not cryptographic: it detects torn writes and bit rot, not forgery.
struct Checksum {
    state: u64,
    tail: [u8; 8],
    tail_len: usize,
    total: u64,
}

impl Checksum {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new() -> Self {
        Self {
            state: 0x243F_6A88_85A3_08D3,
            tail: [0; 8],
            tail_len: 0,
            total: 0,
        }
    }

    #[inline]
    fn mix(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(Self::K).rotate_left(29);
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let chunks = data.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn finish(mut self) -> u64 {
        if self.tail_len > 0 {
            let mut w = [0u8; 8];
            w[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            self.mix(u64::from_le_bytes(w));
        }
        let total = self.total;
        self.mix(total);
        splitmix64(self.state)
    }
}

struct Out<'a> {
    w: BufWriter<&'a mut dyn Write>,
    sum: Checksum,
}

impl Out<'_> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.sum.update(b);
        self.w.write_all(b)
    }
    fn u8(&mut self, v: u8) -> io::Result<()> {
        self.put(&[v])
    }
    fn u16(&mut self, v: u16) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
}

struct In<'a> {
    r: BufReader<&'a mut dyn Read>,
    sum: Checksum,
    /// Holds the bytes of the last [`Source::take`].
    scratch: Vec<u8>,
}

/// Where node records are parsed from: the checksummed stream, or a record lying whole in the
/// stream's buffer (the usual case, parsed in place).
trait Source {
    fn take(&mut self, n: usize) -> Result<&[u8], AnnError>;
}

impl Source for In<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AnnError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(n, 0);
        let read = self.take_into(&mut scratch);
        self.scratch = scratch;
        read.map(|()| self.scratch.as_slice())
    }
}

/// A node record in memory; its bytes are checksummed by the caller.
struct Slice<'a> {
    data: &'a [u8],
    at: usize,
}

impl Source for Slice<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AnnError> {
        let bytes = self
            .data
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| corrupt("truncated snapshot"))?;
        self.at += n;
        Ok(bytes)
    }
}

/// The length of the node record at the start of `buf` when `buf` holds all of it; `vlen` is
/// the length of its vector or codes. Validates nothing: the record is parsed afterwards.
fn whole_node_len(buf: &[u8], vlen: usize) -> Option<usize> {
    let level = *buf.get(9)? as usize;
    let mut at = 10 + vlen;
    for _ in 0..=level {
        let count = buf.get(at..at + 2)?;
        at += 2 + 4 * u16::from_le_bytes([count[0], count[1]]) as usize;
    }
    (at <= buf.len()).then_some(at)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_f32(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses node `i` from `src` into `idx`.
fn read_node(
    idx: &mut HnswIndex,
    i: usize,
    src: &mut impl Source,
    with_vectors: bool,
    max_level: usize,
) -> Result<(), AnnError> {
    let dim = idx.dim;
    let head = src.take(10)?;
    let mut key = [0u8; 8];
    key.copy_from_slice(&head[..8]);
    let key = u64::from_le_bytes(key);
    let (flags, level) = (head[8], head[9]);
    if flags > 1 {
        return Err(corrupt(format!("node {i}: unknown flags {flags:#x}")));
    }
    if level as usize > max_level {
        return Err(corrupt(format!("node {i}: level {level} out of range")));
    }
    if with_vectors {
        let data = src.take(dim * 4)?;
        let start = idx.vectors.len();
        for c in data.chunks_exact(4) {
            let x = le_f32(c);
            if !x.is_finite() {
                return Err(corrupt(format!("node {i}: non-finite component")));
            }
            idx.vectors.push(x);
        }
        // Navigation codes are derived, not stored: recomputing them is
        // deterministic and keeps the format independent of them.
        let v = &idx.vectors[start..];
        idx.l1.push(v.iter().map(|x| x.abs()).sum());
        let scale = quantize(v, idx.codes.push_zeroed());
        idx.scales.push(scale);
    } else {
        let data = src.take(dim + 8)?;
        for (code, &byte) in idx.codes.push_zeroed().iter_mut().zip(&data[..dim]) {
            *code = byte as i8;
        }
        let scale = le_f32(&data[dim..]);
        let l1 = le_f32(&data[dim + 4..]);
        let plausible = |x: f32| x.is_finite() && x >= 0.0;
        if !plausible(scale) || !plausible(l1) {
            return Err(corrupt(format!("node {i}: bad scale or norm")));
        }
        idx.scales.push(scale);
        idx.l1.push(l1);
    }
    idx.keys.push(key);
    idx.deleted.push(flags == 1);
    idx.levels.push(level);
    idx.links0.push_zeroed();
    idx.upper.push(vec![0; level as usize * (idx.params.m + 1)]);
    for lc in 0..=level as usize {
        let count = src.take(2)?;
        let count = u16::from_le_bytes([count[0], count[1]]) as usize;
        if count > idx.max_links(lc) {
            return Err(corrupt(format!("node {i}: too many links on layer {lc}")));
        }
        let links = src.take(count * 4)?;
        idx.set_links(i as u32, lc, links.chunks_exact(4).map(le_u32));
    }
    Ok(())
}

impl In<'_> {
    fn raw(&mut self, buf: &mut [u8]) -> Result<(), AnnError> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                AnnError::Corrupt("truncated snapshot".into())
            } else {
                AnnError::Io(e)
            }
        })
    }
    fn take_into(&mut self, buf: &mut [u8]) -> Result<(), AnnError> {
        self.raw(buf)?;
        self.sum.update(buf);
        Ok(())
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], AnnError> {
        let mut b = [0u8; N];
        self.take_into(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, AnnError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, AnnError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
}

fn corrupt(msg: impl Into<String>) -> AnnError {
    AnnError::Corrupt(msg.into())
}

fn to_u32(v: usize, what: &str) -> io::Result<u32> {
    u32::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too large")))
}

impl HnswIndex {
    /// Writes a snapshot of the whole index (tombstones included; call
    /// [`compact`](Self::compact) first to drop them). Output is buffered
    /// internally and flushed before returning.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut out = Out {
            w: BufWriter::with_capacity(1 << 16, w),
            sum: Checksum::new(),
        };
        if self.dim > MAX_DIM {
            // read_from would refuse it; fail now rather than at load time.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "dimension {} exceeds the snapshot limit {MAX_DIM}",
                    self.dim
                ),
            ));
        }
        out.put(MAGIC)?;
        out.u32(if self.keep_vectors {
            VERSION
        } else {
            VERSION_CODES
        })?;
        out.u32(to_u32(self.dim, "dimension")?)?;
        out.u32(to_u32(self.params.m, "m")?)?;
        out.u32(to_u32(self.params.ef_construction, "ef_construction")?)?;
        out.u32(to_u32(self.params.ef_search, "ef_search")?)?;
        out.u64(self.params.seed)?;
        out.u64(self.keys.len() as u64)?;
        out.u32(self.entry.unwrap_or(NO_ENTRY))?;
        out.u32(to_u32(self.max_level, "max_level")?)?;

        let mut vbuf = Vec::with_capacity(self.dim * 4);
        for i in 0..self.keys.len() {
            out.u64(self.keys[i])?;
            out.u8(u8::from(self.deleted[i]))?;
            out.u8(self.levels[i])?;
            vbuf.clear();
            if self.keep_vectors {
                for x in self.vec(i as u32) {
                    vbuf.extend_from_slice(&x.to_le_bytes());
                }
            } else {
                vbuf.extend(self.codes.node(i).iter().map(|&c| c as u8));
                vbuf.extend_from_slice(&self.scales[i].to_le_bytes());
                vbuf.extend_from_slice(&self.l1[i].to_le_bytes());
            }
            out.put(&vbuf)?;
            for lc in 0..=self.levels[i] as usize {
                let links = self.links(i as u32, lc);
                // At most 2 * m <= 2048 links, so this cannot truncate.
                out.u16(links.len() as u16)?;
                vbuf.clear();
                for &n in links {
                    vbuf.extend_from_slice(&n.to_le_bytes());
                }
                out.put(&vbuf)?;
            }
        }
        let sum = std::mem::replace(&mut out.sum, Checksum::new()).finish();
        out.w.write_all(&sum.to_le_bytes())?;
        out.w.flush()
    }

    /// Reads a snapshot written by [`write_to`](Self::write_to).
    ///
    /// Any damage (wrong magic or version, bad checksum, truncation, or an
    /// internally inconsistent graph) is reported as [`AnnError::Corrupt`];
    /// the caller should then rebuild from the source of truth. Reading is
    /// buffered internally and may consume bytes past the end of the
    /// snapshot, so give it a reader that holds only the snapshot.
    pub fn read_from(r: &mut dyn Read) -> Result<Self, AnnError> {
        let mut inp = In {
            // Large enough that few node records straddle a refill.
            r: BufReader::with_capacity(1 << 20, r),
            sum: Checksum::new(),
            scratch: Vec::new(),
        };
        if &inp.arr::<8>()? != MAGIC {
            return Err(corrupt("not an astrocyte-ann snapshot (bad magic)"));
        }
        let version = inp.u32()?;
        if version != VERSION && version != VERSION_CODES {
            return Err(corrupt(format!("unsupported snapshot version {version}")));
        }
        let with_vectors = version == VERSION;
        let dim = inp.u32()? as usize;
        if dim > MAX_DIM {
            return Err(corrupt(format!("implausible dimension {dim}")));
        }
        let params = HnswParams {
            m: inp.u32()? as usize,
            ef_construction: inp.u32()? as usize,
            ef_search: inp.u32()? as usize,
            seed: inp.u64()?,
        };
        if sanitise(params.clone()) != params {
            return Err(corrupt("parameters out of range"));
        }
        let nodes = inp.u64()?;
        if nodes > MAX_NODES as u64 {
            return Err(corrupt("node count out of range"));
        }
        let nodes = nodes as usize;
        let entry = inp.u32()?;
        let max_level = inp.u32()? as usize;
        if max_level > MAX_LEVEL {
            return Err(corrupt("max level out of range"));
        }

        let mut idx = if with_vectors {
            HnswIndex::new(dim, params)
        } else {
            HnswIndex::new_codes_only(dim, params)
        };
        // Reserve for a plausible prefix only; a lying count cannot force a
        // large allocation before the data is actually there.
        let reserve = nodes.min(1 << 16);
        if with_vectors {
            idx.vectors.reserve(reserve * dim);
        }
        idx.codes.reserve(reserve);
        idx.l1.reserve(reserve);
        idx.keys.reserve(reserve);
        idx.links0.reserve(reserve);

        let vlen = if with_vectors { dim * 4 } else { dim + 8 };
        for i in 0..nodes {
            let buffered = inp.r.fill_buf().map_err(AnnError::Io)?;
            match whole_node_len(buffered, vlen) {
                Some(len) => {
                    let record = &buffered[..len];
                    read_node(
                        &mut idx,
                        i,
                        &mut Slice {
                            data: record,
                            at: 0,
                        },
                        with_vectors,
                        max_level,
                    )?;
                    inp.sum.update(record);
                    inp.r.consume(len);
                }
                // The record runs past the buffer: read it field by field.
                None => read_node(&mut idx, i, &mut inp, with_vectors, max_level)?,
            }
        }
        let expected = std::mem::replace(&mut inp.sum, Checksum::new()).finish();
        let mut stored = [0u8; 8];
        inp.raw(&mut stored)?;
        if u64::from_le_bytes(stored) != expected {
            return Err(corrupt("checksum mismatch"));
        }

        // The checksum says the bytes are what was written; still verify the
        // structure so no later search can index out of bounds even if a
        // buggy writer produced it.
        for i in 0..nodes {
            for lc in 0..=idx.levels[i] as usize {
                for &n in idx.links(i as u32, lc) {
                    let ok = (n as usize) < nodes
                        && n as usize != i
                        && idx.levels[n as usize] as usize >= lc;
                    if !ok {
                        return Err(corrupt(format!("node {i}: bad link to {n} on layer {lc}")));
                    }
                }
            }
        }
        if nodes == 0 {
            if entry != NO_ENTRY || max_level != 0 {
                return Err(corrupt("entry point in an empty graph"));
            }
        } else {
            let top = idx.levels.iter().copied().max().unwrap_or(0) as usize;
            let ok = (entry as usize) < nodes
                && top == max_level
                && idx.levels[entry as usize] as usize == max_level;
            if !ok {
                return Err(corrupt("bad entry point"));
            }
            idx.entry = Some(entry);
            idx.max_level = max_level;
        }
        let mut map = HashMap::with_capacity(nodes);
        for i in 0..nodes {
            if !idx.deleted[i] && map.insert(idx.keys[i], i as u32).is_some() {
                return Err(corrupt(format!("duplicate live key {}", idx.keys[i])));
            }
        }
        idx.key_to_node = map;
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_chunking_independent() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut a = Checksum::new();
        a.update(&data);
        let mut b = Checksum::new();
        for piece in data.chunks(3) {
            b.update(piece);
        }
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn checksum_detects_single_byte_changes_and_truncation() {
        let data: Vec<u8> = (0..64u8).collect();
        let base = {
            let mut c = Checksum::new();
            c.update(&data);
            c.finish()
        };
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 0x40;
            let mut c = Checksum::new();
            c.update(&d);
            assert_ne!(c.finish(), base, "byte {i}");
        }
        let mut z = data.clone();
        z.extend_from_slice(&[0; 8]);
        let mut c = Checksum::new();
        c.update(&z);
        assert_ne!(c.finish(), base, "trailing zeros");
    }
}
