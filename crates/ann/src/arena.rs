//! A growable array for the index's two large arenas (int8 codes and layer-0 links).
//!
//! A graph walk reads codes and link lists scattered over the whole arena. At 1M vectors that
//! is about 500 MB; with 4 KiB pages nearly every such read also misses the TLB. Once an arena
//! is large, it moves to an anonymous mapping the kernel is asked to back with transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`: the default THP mode on many distributions leaves other
//! memory on small pages). Small arenas, which most banks have, stay ordinary `Vec`s, so ten
//! thousand small indexes do not cost ten thousand mappings.

use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use memmap2::MmapMut;

/// Arenas move to a huge-page mapping when they grow past this many bytes (far less in the
/// crate's own tests, so the index's tests run on mapped arenas too).
const MAPPED_FROM_BYTES: usize = if cfg!(test) { 32 << 10 } else { 8 << 20 };

/// Mappings are sized in whole huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// A `Vec<T>`-like array that moves to a huge-page mapping once large (see the module docs).
pub(crate) struct Arena<T: Pod> {
    storage: Storage<T>,
}

enum Storage<T> {
    Heap(Vec<T>),
    /// `len` elements in use at the start of `map`.
    Mapped {
        map: MmapMut,
        len: usize,
    },
}

impl<T: Pod> Arena<T> {
    pub(crate) const fn new() -> Self {
        Self {
            storage: Storage::Heap(Vec::new()),
        }
    }

    /// Whether the arena lives in a huge-page mapping.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Elements the arena holds without growing.
    pub(crate) fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Heap(v) => v.capacity(),
            Storage::Mapped { map, .. } => map.len() / size_of::<T>().max(1),
        }
    }

    /// Makes room for `additional` more elements.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len().saturating_add(additional);
        if needed <= self.capacity() {
            return;
        }
        let bytes = needed.saturating_mul(size_of::<T>());
        match &mut self.storage {
            Storage::Heap(v) if bytes < MAPPED_FROM_BYTES || !huge_pages_apply() => {
                v.reserve(additional);
            }
            _ => self.remap(needed),
        }
    }

    /// Appends `n` copies of `value`.
    pub(crate) fn extend_repeat(&mut self, value: T, n: usize) {
        self.grow_for(n);
        match &mut self.storage {
            Storage::Heap(v) => v.extend(std::iter::repeat_n(value, n)),
            Storage::Mapped { map, len } => {
                let start = *len;
                *len += n;
                elements_mut::<T>(map, *len)[start..].fill(value);
            }
        }
    }

    /// Amortised growth, as `Vec` does: at least double, so appends stay O(1).
    fn grow_for(&mut self, additional: usize) {
        let needed = self.len().saturating_add(additional);
        let capacity = self.capacity();
        if needed > capacity {
            self.reserve(needed.max(capacity.saturating_mul(2)) - self.len());
        }
    }

    /// Moves the contents into a fresh huge-page mapping with room for `capacity` elements.
    fn remap(&mut self, capacity: usize) {
        let bytes = capacity
            .saturating_mul(size_of::<T>())
            .next_multiple_of(HUGE_PAGE);
        let mut map = match MmapMut::map_anon(bytes) {
            Ok(map) => map,
            // Address space refused: a plain allocation is slower, never wrong.
            Err(_) => return self.fall_back_to_heap(capacity),
        };
        #[cfg(target_os = "linux")]
        {
            // Advice only: without huge pages the arena works as before.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let len = self.len();
        elements_mut::<T>(&mut map, len).copy_from_slice(self);
        self.storage = Storage::Mapped { map, len };
    }

    fn fall_back_to_heap(&mut self, capacity: usize) {
        let mut v = Vec::with_capacity(capacity);
        v.extend_from_slice(self);
        self.storage = Storage::Heap(v);
    }
}

/// Whether moving to a huge-page mapping can help on this platform.
const fn huge_pages_apply() -> bool {
    cfg!(target_os = "linux")
}

fn elements<T: Pod>(map: &MmapMut, len: usize) -> &[T] {
    bytemuck::cast_slice(&map[..len * size_of::<T>()])
}

fn elements_mut<T: Pod>(map: &mut MmapMut, len: usize) -> &mut [T] {
    bytemuck::cast_slice_mut(&mut map[..len * size_of::<T>()])
}

impl<T: Pod> Deref for Arena<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Heap(v) => v,
            Storage::Mapped { map, len } => elements(map, *len),
        }
    }
}

impl<T: Pod> DerefMut for Arena<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Heap(v) => v,
            Storage::Mapped { map, len } => elements_mut(map, *len),
        }
    }
}

impl<T: Pod> Extend<T> for Arena<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            self.grow_for(items.size_hint().0.max(1));
            match &mut self.storage {
                Storage::Heap(v) => v.extend(&mut items),
                Storage::Mapped { map, len } => {
                    let capacity = map.len() / size_of::<T>();
                    let free = &mut elements_mut::<T>(map, capacity)[*len..];
                    for (slot, item) in free.iter_mut().zip(&mut items) {
                        *slot = item;
                        *len += 1;
                    }
                }
            }
        }
    }
}

impl<T: Pod> Clone for Arena<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        copy.reserve(self.len());
        copy.extend(self.iter().copied());
        copy
    }
}

impl<T: Pod> Default for Arena<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_arena_moves_to_a_mapping_and_keeps_its_contents() {
        let mut links: Arena<u32> = Arena::new();
        let n = MAPPED_FROM_BYTES / size_of::<u32>() * 3;
        links.extend(0..10u32);
        assert!(!links.is_mapped());
        links.extend(10..n as u32);
        links.extend_repeat(7, 5);
        assert_eq!(links.len(), n + 5);
        assert_eq!(links.is_mapped(), huge_pages_apply());
        assert!(links[..n].iter().enumerate().all(|(i, &x)| x == i as u32));
        assert_eq!(&links[n..], &[7; 5]);
        links[3] = 99;
        let copy = links.clone();
        assert_eq!(copy.len(), links.len());
        assert_eq!(copy[3], 99);
        assert!(copy.capacity() >= copy.len());
    }

    #[test]
    fn a_small_arena_stays_on_the_heap() {
        let mut codes: Arena<i8> = Arena::new();
        codes.reserve(1000);
        codes.extend([1i8, -2, 3]);
        codes.extend_repeat(0, 2);
        assert!(!codes.is_mapped());
        assert_eq!(&codes[..], &[1, -2, 3, 0, 0]);
    }
}
