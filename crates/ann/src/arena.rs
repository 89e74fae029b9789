//! Per-node arrays of the graph (codes, links) in fixed-size chunks that never move.
//!
//! A walk reads a few thousand nodes at random. With 4 KiB pages, a large index spans far
//! more pages than the TLB maps, so nearly every read also walked the page tables. Once an
//! index outgrows its first chunk, every chunk is an anonymous map advised for transparent
//! huge pages (2 MiB on x86-64). `ann_bench --n 1000000` with every allocation on huge pages built 13% faster and
//! searched 12% faster; docs/benchmarks/sqlite-1m.md has the whole store's figures. Chunks
//! are never reallocated, so growing costs no copy and no second arena beside the first (a
//! `Vec` doubling 384 MB of codes would hold both for a moment).
//!
//! Small indexes (most tenants' banks) stay in one heap-allocated chunk: a map per bank
//! would round every one of them up to whole pages.

use bytemuck::Pod;
use memmap2::MmapMut;

/// Nodes per chunk, as a shift: finding a node's chunk is a shift, its place a mask.
const CHUNK_SHIFT: u32 = 16;
const CHUNK_NODES: usize = 1 << CHUNK_SHIFT;

/// `stride` values of type `T` per node, for nodes `0..len`.
pub(crate) struct Arena<T: Pod> {
    stride: usize,
    len: usize,
    chunks: Vec<Chunk<T>>,
}

enum Chunk<T: Pod> {
    /// The first chunk while it is the only one: grows like a `Vec`.
    Heap(Vec<T>),
    /// A full-size chunk in its own map (zero-filled by the kernel).
    Mapped(MmapMut),
}

impl<T: Pod> Chunk<T> {
    #[inline(always)]
    fn values(&self) -> &[T] {
        match self {
            Chunk::Heap(values) => values,
            Chunk::Mapped(map) => bytemuck::cast_slice(map),
        }
    }

    #[inline(always)]
    fn values_mut(&mut self) -> &mut [T] {
        match self {
            Chunk::Heap(values) => values,
            Chunk::Mapped(map) => bytemuck::cast_slice_mut(map),
        }
    }

    /// A full-size chunk holding `values` (and zeros after them): mapped and advised when
    /// the system allows, on the heap otherwise.
    fn full(stride: usize, values: &[T]) -> Self {
        let len = CHUNK_NODES * stride;
        match MmapMut::map_anon(len * size_of::<T>()) {
            Ok(mut map) => {
                // Only a hint: without transparent huge pages the map works the same.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                bytemuck::cast_slice_mut::<u8, T>(&mut map)[..values.len()].copy_from_slice(values);
                Chunk::Mapped(map)
            }
            Err(_) => {
                let mut heap = Vec::with_capacity(len);
                heap.extend_from_slice(values);
                heap.resize(len, T::zeroed());
                Chunk::Heap(heap)
            }
        }
    }
}

impl<T: Pod> Arena<T> {
    pub(crate) fn new(stride: usize) -> Self {
        Arena {
            stride,
            len: 0,
            chunks: Vec::new(),
        }
    }

    /// The values of node `i`.
    #[inline(always)]
    pub(crate) fn node(&self, i: usize) -> &[T] {
        let at = (i & (CHUNK_NODES - 1)) * self.stride;
        &self.chunks[i >> CHUNK_SHIFT].values()[at..at + self.stride]
    }

    #[inline(always)]
    pub(crate) fn node_mut(&mut self, i: usize) -> &mut [T] {
        let at = (i & (CHUNK_NODES - 1)) * self.stride;
        &mut self.chunks[i >> CHUNK_SHIFT].values_mut()[at..at + self.stride]
    }

    /// Appends a node of zeros and returns its values to fill.
    pub(crate) fn push_zeroed(&mut self) -> &mut [T] {
        let i = self.len;
        if i == CHUNK_NODES {
            // The first chunk is full: it moves into a map of its own, as later ones are.
            if let Some(Chunk::Heap(first)) = self.chunks.first() {
                let moved = Chunk::full(self.stride, first);
                self.chunks[0] = moved;
            }
        }
        if i >= CHUNK_NODES {
            if i & (CHUNK_NODES - 1) == 0 {
                self.chunks.push(Chunk::full(self.stride, &[]));
            }
        } else {
            match self.chunks.first_mut() {
                Some(Chunk::Heap(first)) => first.resize((i + 1) * self.stride, T::zeroed()),
                _ => self
                    .chunks
                    .push(Chunk::Heap(vec![T::zeroed(); self.stride])),
            }
        }
        self.len += 1;
        self.node_mut(i)
    }

    /// Makes room for `additional` more nodes in the first chunk (later chunks are allocated
    /// whole when reached).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let room = additional.min(CHUNK_NODES.saturating_sub(self.len));
        if room == 0 {
            return;
        }
        match self.chunks.first_mut() {
            Some(Chunk::Heap(first)) => first.reserve(room * self.stride),
            Some(Chunk::Mapped(_)) => {}
            None => self
                .chunks
                .push(Chunk::Heap(Vec::with_capacity(room * self.stride))),
        }
    }

    /// Bytes allocated (mapped chunks count whole, though untouched pages take no memory).
    pub(crate) fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|chunk| match chunk {
                Chunk::Heap(values) => values.capacity() * size_of::<T>(),
                Chunk::Mapped(map) => map.len(),
            })
            .sum()
    }
}

impl<T: Pod> Clone for Arena<T> {
    fn clone(&self) -> Self {
        let chunks = self
            .chunks
            .iter()
            .map(|chunk| match chunk {
                Chunk::Heap(values) => Chunk::Heap(values.clone()),
                Chunk::Mapped(_) => Chunk::full(self.stride, chunk.values()),
            })
            .collect();
        Arena {
            stride: self.stride,
            len: self.len,
            chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_their_values_across_chunks_and_clones() {
        let mut arena: Arena<u32> = Arena::new(3);
        arena.reserve(10);
        let total = 2 * CHUNK_NODES + 5;
        for i in 0..total {
            let node = arena.push_zeroed();
            assert_eq!(node, &[0, 0, 0], "node {i} starts zeroed");
            node.copy_from_slice(&[i as u32, 7, !(i as u32)]);
        }
        assert_eq!(arena.len, total);
        assert_eq!(arena.chunks.len(), 3);
        assert!(
            arena
                .chunks
                .iter()
                .all(|chunk| matches!(chunk, Chunk::Mapped(_))),
            "the first chunk moved into a map once a second one was needed"
        );
        let copy = arena.clone();
        for i in [0, 1, CHUNK_NODES - 1, CHUNK_NODES, 2 * CHUNK_NODES + 4] {
            assert_eq!(arena.node(i), &[i as u32, 7, !(i as u32)]);
            assert_eq!(copy.node(i), arena.node(i));
        }
        arena.node_mut(5)[1] = 9;
        assert_eq!(
            (arena.node(5)[1], copy.node(5)[1]),
            (9, 7),
            "clones are apart"
        );
    }

    #[test]
    fn a_small_arena_stays_on_the_heap() {
        let mut arena: Arena<i8> = Arena::new(384);
        for _ in 0..100 {
            arena.push_zeroed()[0] = -1;
        }
        assert!(matches!(arena.chunks.as_slice(), [Chunk::Heap(_)]));
        assert!(arena.bytes() >= 100 * 384);
        assert_eq!(arena.node(99)[..2], [-1, 0]);
    }
}
