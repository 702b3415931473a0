//! The shared result cache: encoded results keyed by BLAKE3 of (input, normalised spec,
//! output-relevant settings), held in one arena of `--cache-size` bytes, evicted by CLOCK;
//! and the bounded set of inputs known to be poison.
//!
//! Trust boundary: master-private. Only the master reads or writes the arena (workers never
//! see it, so a worker taken over by a hostile image cannot poison other users' results), and
//! only results a worker reported as successful, after their bytes were copied from the ring
//! slot or the output memfd, go in. Pure apart from the arena's mapping: no clock, no
//! sockets; `docs/DESIGN.md`, "Result cache and collapsed requests", says the rules.

pub mod arena;
pub mod index;
pub mod key;

use std::collections::{HashSet, VecDeque};

pub use arena::Arena;
pub use key::{result_key, InputHasher, Key};

/// How many poison inputs are remembered (the oldest is forgotten first).
pub const POISON_SET: usize = 1024;

/// What a hit answers with besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryMeta {
    pub width: u32,
    pub height: u32,
    pub format: u8,
}

/// Why a result was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Larger than the entry cap.
    TooLarge,
    /// Already there (a racing duplicate when collapsing is not possible).
    Present,
    /// The bytes could not be copied in (an unreadable output memfd): nothing is published.
    Unreadable,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    pub evicted: u64,
}

/// The arena, its index, the entry cap and the poison set.
pub struct ResultCache {
    arena: Arena,
    index: index::Index<EntryMeta>,
    max_entry: usize,
    poison: VecDeque<Key>,
    poison_set: HashSet<Key>,
    settings: String,
}

impl ResultCache {
    /// A cache over `arena`. `settings` is the text of every server setting that changes a
    /// result's bytes (it goes into every key). One entry may take at most an eighth of the
    /// arena, so one large result cannot flush everything.
    pub fn new(arena: Arena, settings: String) -> ResultCache {
        let len = arena.len();
        ResultCache {
            index: index::Index::new(len),
            arena,
            max_entry: len / 8,
            poison: VecDeque::new(),
            poison_set: HashSet::new(),
            settings,
        }
    }

    pub fn capacity(&self) -> usize {
        self.arena.len()
    }

    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    pub fn entries(&self) -> usize {
        self.index.len()
    }

    pub fn bytes(&self) -> usize {
        self.index.bytes()
    }

    /// The key of a result: the input's hash, the spec in canonical form, the settings.
    pub fn key(&self, input: &Key, canonical_spec: &str) -> Key {
        result_key(input, canonical_spec, &self.settings)
    }

    /// A hit: the entry's bytes and metadata (and its CLOCK bit set).
    pub fn get(&mut self, key: &Key) -> Option<(EntryMeta, &[u8])> {
        let (at, meta) = self.index.get(key)?;
        Some((meta, self.arena.bytes(at.start, at.len)))
    }

    /// Stores a result of `len` bytes that `fill` writes into the slice it is given. The entry
    /// is published (made visible to `get`) only after `fill` returned Ok with every byte
    /// written: the index is updated last, so a torn entry can never be served; a failed
    /// `fill` leaves nothing behind but free blocks.
    pub fn insert(
        &mut self,
        key: Key,
        meta: EntryMeta,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
    ) -> Result<Inserted, NotStored> {
        if len > self.max_entry || len == 0 {
            return Err(NotStored::TooLarge);
        }
        if self.index.contains(&key) {
            return Err(NotStored::Present);
        }
        let (at, ev) = self.index.reserve(len).ok_or(NotStored::TooLarge)?;
        if fill(self.arena.bytes_mut(at.start, at.len)).is_err() {
            return Err(NotStored::Unreadable);
        }
        // Last: from here on the entry can be found.
        self.index.publish(key, at, meta);
        Ok(Inserted {
            evicted: ev.entries,
        })
    }

    /// Remembers an input declared POISON_INPUT (bounded: the oldest goes first).
    pub fn add_poison(&mut self, input: Key) {
        if !self.poison_set.insert(input) {
            return;
        }
        self.poison.push_back(input);
        if self.poison.len() > POISON_SET {
            if let Some(old) = self.poison.pop_front() {
                self.poison_set.remove(&old);
            }
        }
    }

    pub fn is_poison(&self, input: &Key) -> bool {
        self.poison_set.contains(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(len: usize) -> ResultCache {
        ResultCache::new(Arena::heap(len), "test".into())
    }

    fn meta(w: u32) -> EntryMeta {
        EntryMeta {
            width: w,
            height: 2,
            format: 1,
        }
    }

    fn put(c: &mut ResultCache, k: Key, bytes: &[u8]) -> Result<Inserted, NotStored> {
        c.insert(k, meta(bytes.len() as u32), bytes.len(), |dst| {
            dst.copy_from_slice(bytes);
            Ok(())
        })
    }

    #[test]
    fn a_stored_result_comes_back_byte_for_byte_with_its_metadata() {
        let mut c = cache(64 * index::BLOCK);
        let k = c.key(&[7; 32], "blur:2");
        assert!(c.get(&k).is_none());
        put(&mut c, k, b"encoded result").unwrap();
        let (m, bytes) = c.get(&k).unwrap();
        assert_eq!((m, bytes), (meta(14), &b"encoded result"[..]));
        assert_eq!((c.entries(), c.bytes()), (1, 14));
        assert_eq!(put(&mut c, k, b"other"), Err(NotStored::Present));
    }

    #[test]
    fn the_entry_cap_is_an_eighth_of_the_arena() {
        let mut c = cache(64 * index::BLOCK);
        assert_eq!(c.max_entry(), 8 * index::BLOCK);
        let big = vec![1u8; 8 * index::BLOCK + 1];
        assert_eq!(put(&mut c, [1; 32], &big), Err(NotStored::TooLarge));
        assert!(put(&mut c, [2; 32], &big[1..]).is_ok());
        assert_eq!(c.entries(), 1);
    }

    #[test]
    fn a_torn_write_is_never_published() {
        let mut c = cache(64 * index::BLOCK);
        let k = [3; 32];
        let r = c.insert(k, meta(1), 5000, |dst| {
            dst[..100].fill(9);
            Err(std::io::Error::other("short read"))
        });
        assert_eq!(r, Err(NotStored::Unreadable));
        assert!(c.get(&k).is_none());
        assert_eq!((c.entries(), c.bytes()), (0, 0));
        // The room it had is reused.
        put(&mut c, k, &[5; 5000]).unwrap();
        assert_eq!(c.get(&k).unwrap().1, &[5; 5000][..]);
    }

    #[test]
    fn eviction_keeps_every_entry_intact_in_a_small_arena() {
        let mut c = cache(16 * index::BLOCK);
        let mut evicted = 0;
        for i in 0..100u32 {
            let bytes: Vec<u8> = (0..(i as usize * 311) % (2 * index::BLOCK) + 1)
                .map(|j| (j as u32 ^ i) as u8)
                .collect();
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            evicted += put(&mut c, k, &bytes).unwrap().evicted;
            for j in 0..=i {
                let mut kj = [0; 32];
                kj[..4].copy_from_slice(&j.to_le_bytes());
                if let Some((m, got)) = c.get(&kj) {
                    let want: Vec<u8> = (0..(j as usize * 311) % (2 * index::BLOCK) + 1)
                        .map(|x| (x as u32 ^ j) as u8)
                        .collect();
                    assert_eq!(got, &want[..], "entry {j}");
                    assert_eq!(m.width as usize, want.len());
                }
            }
        }
        assert!(evicted > 50);
        assert_eq!(c.entries() as u64, 100 - evicted);
    }

    #[test]
    fn the_poison_set_is_bounded_oldest_out() {
        let mut c = cache(64 * index::BLOCK);
        for i in 0..=POISON_SET as u32 {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            c.add_poison(k);
            c.add_poison(k);
        }
        assert!(!c.is_poison(&[0; 32]), "the first one was pushed out");
        let mut last = [0; 32];
        last[..4].copy_from_slice(&(POISON_SET as u32).to_le_bytes());
        assert!(c.is_poison(&last));
    }
}
