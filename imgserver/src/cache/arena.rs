//! The cache's bytes: one fixed-size region, either a memfd mapped `MAP_SHARED` by the master
//! (the server) or a plain `Vec<u8>` (unit tests). Only the master maps the memfd and it is
//! never passed to a worker: workers are the untrusted side (a hostile image may take one
//! over), and a worker that could write here could poison other users' results.
//!
//! Trust boundary: master-private memory. The memfd lives outside the master's heap (the
//! operator sized it with `--cache-size`; its pages are allocated only when first written).
#![allow(unsafe_code)]

use memmap2::MmapRaw;

/// The region the index hands out ranges of.
pub enum Arena {
    Mapped(MmapRaw),
    /// The unit tests' arena.
    #[cfg_attr(not(test), allow(dead_code))]
    Heap(Vec<u8>),
}

impl Arena {
    /// A memfd of `len` bytes, sealed against resizing, mapped shared by this process only.
    /// The fd is closed at once: the mapping keeps the memory, and no other process can ever
    /// be handed it.
    pub fn memfd(len: u64) -> std::io::Result<Arena> {
        let fd = crate::shm::create(c"imgserver-cache", len)?;
        Ok(Arena::Mapped(crate::shm::map(&fd, len)?))
    }

    /// A heap arena (the unit tests).
    #[cfg(test)]
    pub fn heap(len: usize) -> Arena {
        Arena::Heap(vec![0; len])
    }

    pub fn len(&self) -> usize {
        match self {
            Arena::Mapped(m) => m.len(),
            Arena::Heap(v) => v.len(),
        }
    }

    pub fn bytes(&self, start: usize, len: usize) -> &[u8] {
        match self {
            Arena::Mapped(m) => {
                assert!(start.checked_add(len).is_some_and(|e| e <= m.len()));
                // SAFETY: in bounds (asserted); the mapping lives as long as `self`; only this
                // process maps the memfd (its fd was closed after mapping and never sent), so
                // nothing else writes these bytes, and `&self` excludes a writer in this one.
                unsafe { std::slice::from_raw_parts(m.as_ptr().add(start), len) }
            }
            Arena::Heap(v) => &v[start..start + len],
        }
    }

    pub fn bytes_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        match self {
            Arena::Mapped(m) => {
                assert!(start.checked_add(len).is_some_and(|e| e <= m.len()));
                // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
                unsafe { std::slice::from_raw_parts_mut(m.as_mut_ptr().add(start), len) }
            }
            Arena::Heap(v) => &mut v[start..start + len],
        }
    }
}
