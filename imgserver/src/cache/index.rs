//! Where each cached result lives in the arena, and which to evict: the arena is cut into
//! 4 KiB blocks, an entry takes a contiguous run of them (so a hit is one slice, copied once
//! into the connection's send buffer like a result from a ring slot), and eviction is CLOCK
//! (second chance) with the hand sweeping the blocks in address order.
//!
//! Trust boundary: none of its own; pure bookkeeping (no I/O, no clock), unit-tested alone.
//!
//! Why CLOCK and not LRU: a hit only sets a bit (no list to relink), and the hand is also the
//! allocator: a new entry goes where the hand is, into the run it frees. An entry hit since
//! the hand last passed keeps its place once (its bit is cleared and the hand skips it);
//! one not hit is evicted. A scan of one-off results therefore cycles through the cold part
//! of the arena while entries that are asked for again stay.

use std::collections::HashMap;

use super::key::Key;

/// Allocation unit. Small results (thumbnails of a few KiB) waste at most one block.
pub const BLOCK: usize = 4096;
const FREE: u32 = u32::MAX;

/// A published entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the arena and length.
    pub start: usize,
    pub len: usize,
}

struct Slot<M> {
    key: Key,
    first: usize,
    blocks: usize,
    len: usize,
    referenced: bool,
    meta: M,
}

/// The block table, the entries and the key index.
pub struct Index<M> {
    /// Per block: the entry holding it, or FREE.
    owner: Vec<u32>,
    entries: Vec<Option<Slot<M>>>,
    free_ids: Vec<u32>,
    by_key: HashMap<Key, u32>,
    hand: usize,
    bytes: usize,
}

/// What making room cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub entries: u64,
}

impl<M: Copy> Index<M> {
    pub fn new(arena_len: usize) -> Index<M> {
        Index {
            owner: vec![FREE; arena_len / BLOCK],
            entries: Vec::new(),
            free_ids: Vec::new(),
            by_key: HashMap::new(),
            hand: 0,
            bytes: 0,
        }
    }

    #[cfg(test)]
    pub fn blocks(&self) -> usize {
        self.owner.len()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Bytes of results held (not counting the tail of their last block).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// Looks `key` up and marks it referenced (its second chance).
    pub fn get(&mut self, key: &Key) -> Option<(Extent, M)> {
        let id = *self.by_key.get(key)?;
        let s = self.entries[id as usize].as_mut()?;
        s.referenced = true;
        Some((
            Extent {
                start: s.first * BLOCK,
                len: s.len,
            },
            s.meta,
        ))
    }

    /// Finds room for `len` bytes (`len` ≤ the arena's length / 2, and > 0), evicting as the
    /// CLOCK hand passes. The room is not yet an entry: the caller writes the bytes, then
    /// calls `publish`; nothing can look the key up before that.
    pub fn reserve(&mut self, len: usize) -> Option<(Extent, Evicted)> {
        let n = len.div_ceil(BLOCK).max(1);
        let total = self.owner.len();
        if n > total / 2 {
            return None;
        }
        let mut ev = Evicted::default();
        // Second chances are given during two revolutions of the hand at most; after that
        // whatever stands in the way is evicted, so this ends within about three revolutions
        // of block-table steps (no byte is moved).
        let mut steps = 0usize;
        loop {
            if self.hand + n > total {
                steps += total - self.hand;
                self.hand = 0;
            }
            let window = self.hand..self.hand + n;
            match self.owner[window.clone()].iter().position(|&o| o != FREE) {
                None => {
                    let first = self.hand;
                    self.hand += n;
                    return Some((
                        Extent {
                            start: first * BLOCK,
                            len,
                        },
                        ev,
                    ));
                }
                Some(i) => {
                    let b = window.start + i;
                    let id = self.owner[b];
                    let s = self.entries[id as usize].as_mut().expect("owned block");
                    steps += i + 1;
                    if s.referenced && steps < 2 * total {
                        s.referenced = false;
                        self.hand = s.first + s.blocks;
                        steps += s.blocks;
                    } else {
                        self.remove_id(id);
                        ev.entries += 1;
                    }
                }
            }
        }
    }

    /// Publishes the entry whose bytes were written at `at` (from `reserve`). Called only
    /// after the last byte is written: this is the moment a lookup can find it.
    pub fn publish(&mut self, key: Key, at: Extent, meta: M) {
        debug_assert!(!self.by_key.contains_key(&key));
        let first = at.start / BLOCK;
        let blocks = at.len.div_ceil(BLOCK).max(1);
        let id = match self.free_ids.pop() {
            Some(id) => id,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        for o in &mut self.owner[first..first + blocks] {
            debug_assert_eq!(*o, FREE);
            *o = id;
        }
        self.entries[id as usize] = Some(Slot {
            key,
            first,
            blocks,
            len: at.len,
            referenced: false,
            meta,
        });
        self.by_key.insert(key, id);
        self.bytes += at.len;
    }

    fn remove_id(&mut self, id: u32) {
        let Some(s) = self.entries[id as usize].take() else {
            return;
        };
        for o in &mut self.owner[s.first..s.first + s.blocks] {
            *o = FREE;
        }
        self.by_key.remove(&s.key);
        self.free_ids.push(id);
        self.bytes -= s.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> Key {
        [n; 32]
    }

    fn put(ix: &mut Index<u64>, key: u8, len: usize) -> Evicted {
        let (at, ev) = ix.reserve(len).unwrap();
        ix.publish(k(key), at, key as u64);
        ev
    }

    #[test]
    fn entries_take_contiguous_blocks_and_the_hand_allocates_in_order() {
        let mut ix = Index::<u64>::new(16 * BLOCK);
        assert_eq!(ix.blocks(), 16);
        put(&mut ix, 1, 1);
        put(&mut ix, 2, BLOCK + 1);
        assert_eq!(ix.get(&k(1)).unwrap().0, Extent { start: 0, len: 1 });
        assert_eq!(
            ix.get(&k(2)).unwrap().0,
            Extent {
                start: BLOCK,
                len: BLOCK + 1
            }
        );
        assert_eq!((ix.len(), ix.bytes()), (2, BLOCK + 2));
        assert!(ix.reserve(9 * BLOCK).is_none(), "more than half the arena");
    }

    #[test]
    fn clock_evicts_the_unreferenced_and_gives_the_referenced_a_second_chance() {
        let mut ix = Index::<u64>::new(8 * BLOCK);
        for key in 1..=4 {
            put(&mut ix, key, 2 * BLOCK);
        }
        // Full. 1 and 3 are asked for again; the next two inserts evict 2 and 4.
        ix.get(&k(1));
        ix.get(&k(3));
        assert_eq!(put(&mut ix, 5, 2 * BLOCK).entries, 1);
        assert_eq!(put(&mut ix, 6, 2 * BLOCK).entries, 1);
        assert!(ix.contains(&k(1)) && ix.contains(&k(3)));
        assert!(!ix.contains(&k(2)) && !ix.contains(&k(4)));
        // Their bits were spent: the next insert takes the first of them.
        assert_eq!(put(&mut ix, 7, 2 * BLOCK).entries, 1);
        assert!(!ix.contains(&k(1)));
        assert_eq!(ix.len(), 4);
    }

    #[test]
    fn a_large_entry_evicts_everything_in_its_way_and_the_table_stays_consistent() {
        let mut ix = Index::<u64>::new(16 * BLOCK);
        for key in 1..=16 {
            put(&mut ix, key, 100);
        }
        for key in 1..=16 {
            ix.get(&k(key));
        }
        // All referenced: the hand goes round once clearing bits, then evicts.
        let ev = put(&mut ix, 99, 8 * BLOCK);
        assert_eq!(ev.entries, 8);
        assert_eq!(ix.len(), 9);
        assert_eq!(ix.bytes(), 8 * 100 + 8 * BLOCK);
        for round in 0..200u32 {
            let len = 1 + (round as usize * 7919) % (3 * BLOCK);
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&(1000 + round).to_le_bytes());
            let (at, _) = ix.reserve(len).unwrap();
            ix.publish(key, at, 0);
            let held: usize = ix.owner.iter().filter(|&&o| o != FREE).count();
            let want: usize = ix.entries.iter().flatten().map(|s| s.blocks).sum::<usize>();
            assert_eq!(held, want);
        }
    }
}
