//! The shared ring of fixed-size slots that carries image bytes between master and workers.
//!
//! Trust boundary: master and workers map the same memfd. Ownership of a slot passes by
//! message (the master fills it, a Job message lends it to one worker, the Done message gives
//! it back), so at any moment exactly one process touches a slot; a slot's generation number
//! changes whenever the master takes it back, so a late message from a dead or replaced worker
//! about an old generation is recognised and ignored.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use memmap2::MmapRaw;

/// Bytes before each slot's payload. Payloads start 64 bytes into a page: copies between a
/// page-aligned socket buffer and a page-aligned slot ran up to 10x slower here (4K aliasing).
const PAYLOAD_OFFSET: u64 = 64;
const PAGE: u64 = 4096;

pub struct Ring {
    map: MmapRaw,
    slots: u32,
    slot_size: u64,
    stride: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring({} x {} bytes)", self.slots, self.slot_size)
    }
}

impl Ring {
    pub fn total_len(slots: u32, slot_size: u64) -> u64 {
        slots as u64 * Self::stride_for(slot_size)
    }

    fn stride_for(slot_size: u64) -> u64 {
        (slot_size + PAYLOAD_OFFSET).div_ceil(PAGE) * PAGE
    }

    /// Creates the ring's memfd (master).
    pub fn create(slots: u32, slot_size: u64) -> std::io::Result<(Ring, OwnedFd)> {
        let fd = crate::shm::create(c"imgserver-ring", Self::total_len(slots, slot_size))?;
        let ring = Ring::map(&fd, slots, slot_size)?;
        Ok((ring, fd))
    }

    /// Maps a ring received from the master (worker).
    pub fn map(fd: &OwnedFd, slots: u32, slot_size: u64) -> std::io::Result<Ring> {
        let map = crate::shm::map(fd, Self::total_len(slots, slot_size))?;
        Ok(Ring {
            map,
            slots,
            slot_size,
            stride: Self::stride_for(slot_size),
        })
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn slot_size(&self) -> u64 {
        self.slot_size
    }

    fn base(&self, slot: u32) -> *mut u8 {
        assert!(slot < self.slots, "slot {slot} out of range");
        // SAFETY: slot < slots, so the offset stays inside the mapping of slots * stride bytes.
        unsafe {
            self.map
                .as_mut_ptr()
                .add((slot as u64 * self.stride + PAYLOAD_OFFSET) as usize)
        }
    }

    /// Copies `data` into an owned slot at `offset`; false if it does not fit.
    pub fn write(&self, slot: u32, offset: u64, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.slot_size)
        {
            return false;
        }
        // SAFETY: bounds checked above; the master only writes slots it owns (job being
        // uploaded), which no worker has been told about yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base(slot).add(offset as usize),
                data.len(),
            )
        };
        true
    }

    /// Reads `len` bytes of an owned slot.
    pub fn read(&self, slot: u32, offset: u64, len: u64) -> Option<&[u8]> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.slot_size)
        {
            return None;
        }
        // SAFETY: bounds checked; the caller owns the slot (its Done message came back), so
        // no other process writes it while this borrow lives.
        Some(unsafe {
            std::slice::from_raw_parts(self.base(slot).add(offset as usize), len as usize)
        })
    }
}

/// The header of a slot (its first [`PAYLOAD_OFFSET`] bytes, never touched by the master)
/// starts with this when a fault-injection worker was told to die once after writing a job's
/// output, followed by the job id and the slot's generation: the retry's worker finds it and
/// runs the job to the end (the test that the input behind which the output went survives).
#[cfg(feature = "failpoints")]
const MARK_MAGIC: [u8; 8] = *b"imgsFPT1";
#[cfg(feature = "failpoints")]
const MARK_LEN: usize = 8 + 8 + 4;

#[cfg(feature = "failpoints")]
impl Ring {
    fn mark_bytes(job: u64, generation: u32) -> [u8; MARK_LEN] {
        let mut mark = [0; MARK_LEN];
        mark[..8].copy_from_slice(&MARK_MAGIC);
        mark[8..16].copy_from_slice(&job.to_le_bytes());
        mark[16..].copy_from_slice(&generation.to_le_bytes());
        mark
    }

    fn header(&self, slot: u32) -> *mut u8 {
        // SAFETY: `base` checked the slot; its payload starts PAYLOAD_OFFSET bytes into the
        // slot's stride, so stepping back stays inside the mapping, at the slot's start.
        unsafe { self.base(slot).sub(PAYLOAD_OFFSET as usize) }
    }

    /// Records in this owned slot's header that attempt (`job`, `generation`) got this far.
    pub fn mark(&mut self, slot: u32, job: u64, generation: u32) {
        if slot >= self.slots {
            return;
        }
        let mark = Self::mark_bytes(job, generation);
        // SAFETY: the header's first MARK_LEN (< PAYLOAD_OFFSET) bytes are inside the slot;
        // the caller owns the slot (`&mut self`, and by protocol between Job and Done) and
        // the master never touches headers, so nothing reads or writes them now.
        unsafe { std::ptr::copy_nonoverlapping(mark.as_ptr(), self.header(slot), mark.len()) };
    }

    /// Whether a previous attempt of (`job`, `generation`) left its mark in this owned slot.
    /// Job ids are never reused by a master, and a new master has a new, zeroed ring.
    pub fn is_marked(&self, slot: u32, job: u64, generation: u32) -> bool {
        if slot >= self.slots {
            return false;
        }
        let mut found = [0; MARK_LEN];
        // SAFETY: as in `mark`: in bounds, and the slot is the caller's.
        unsafe {
            std::ptr::copy_nonoverlapping(self.header(slot), found.as_mut_ptr(), found.len())
        };
        found == Self::mark_bytes(job, generation)
    }
}

impl Ring {
    /// All of an owned slot, to write into (a worker encoding its output in place).
    ///
    /// Takes `&mut self`, so no slice [`read`](Ring::read) from this mapping can still be
    /// alive: a worker that read its input from the slot has finished with it (the borrow
    /// checker says so) before the first output byte overwrites it.
    pub fn slot_mut(&mut self, slot: u32) -> Option<&mut [u8]> {
        if slot >= self.slots {
            return None;
        }
        // SAFETY: in bounds: the payload's `slot_size` bytes start PAYLOAD_OFFSET into the
        // slot's stride, which holds both. Exclusive: `&mut self` rules out any other borrow
        // of this mapping in this process, and by protocol the caller owns the slot (a worker
        // between its Job and Done messages), so no other process reads or writes it.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base(slot), self.slot_size as usize) })
    }
}

/// The master's bookkeeping of which slots are free, and their generations.
#[derive(Debug)]
pub struct SlotTable {
    generation: Vec<u32>,
    free: Vec<u32>,
}

impl SlotTable {
    pub fn new(slots: u32) -> Self {
        SlotTable {
            generation: vec![0; slots as usize],
            free: (0..slots).rev().collect(),
        }
    }

    /// Takes a free slot; returns it with its current generation.
    pub fn alloc(&mut self) -> Option<(u32, u32)> {
        let s = self.free.pop()?;
        Some((s, self.generation[s as usize]))
    }

    /// Returns a slot; its generation advances so stale references to it are detectable.
    pub fn release(&mut self, slot: u32) {
        let g = &mut self.generation[slot as usize];
        *g = g.wrapping_add(1);
        debug_assert!(!self.free.contains(&slot), "double release of slot {slot}");
        self.free.push(slot);
    }

    /// How many slots are free.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.generation.len()
    }

    pub fn generation(&self, slot: u32) -> Option<u32> {
        self.generation.get(slot as usize).copied()
    }
}

/// A read-only view of the first `len` bytes of a mapping this process owns by protocol
/// (a job memfd the master filled before handing it over).
pub fn raw_slice(map: &MmapRaw, len: u64) -> &[u8] {
    let len = (len as usize).min(map.len());
    // SAFETY: in bounds of the mapping; the sender finished writing before passing the fd and
    // does not write it again, so no concurrent mutation happens while the borrow lives.
    unsafe { std::slice::from_raw_parts(map.as_ptr(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_and_offset_from_page_starts() {
        let (ring, fd) = Ring::create(3, 10_000).unwrap();
        for s in 0..3 {
            assert!(ring.write(s, 0, &vec![s as u8 + 1; 10_000]));
            assert_eq!(ring.base(s) as usize % 4096, 64);
        }
        for s in 0..3 {
            assert!(ring
                .read(s, 0, 10_000)
                .unwrap()
                .iter()
                .all(|&b| b == s as u8 + 1));
        }
        assert!(
            !ring.write(0, 9_999, b"xy"),
            "writes past the slot are refused"
        );
        assert!(ring.read(0, 1, 10_000).is_none());
        // A second mapping of the same memfd (as a worker has) sees the same bytes.
        let mut other = Ring::map(&fd, 3, 10_000).unwrap();
        assert_eq!(other.read(2, 0, 3).unwrap(), &[3, 3, 3]);
        // And what it writes through slot_mut, only in that slot.
        let whole = other.slot_mut(1).unwrap();
        assert_eq!(whole.len(), 10_000);
        whole.fill(9);
        assert!(other.slot_mut(3).is_none());
        assert!(ring.read(1, 0, 10_000).unwrap().iter().all(|&b| b == 9));
        assert_eq!(ring.read(0, 9_999, 1).unwrap(), &[1]);
        assert_eq!(ring.read(2, 0, 1).unwrap(), &[3]);
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn marks_name_one_attempt_and_leave_the_payload_alone() {
        let (mut ring, fd) = Ring::create(2, 100).unwrap();
        assert!(ring.write(0, 0, &[7; 100]));
        assert!(!ring.is_marked(0, 5, 1), "a fresh ring has no marks");
        ring.mark(0, 5, 1);
        // Seen through another mapping (the retry's worker), for that attempt only.
        let other = Ring::map(&fd, 2, 100).unwrap();
        assert!(other.is_marked(0, 5, 1));
        assert!(!other.is_marked(0, 5, 2), "a later generation of the slot");
        assert!(!other.is_marked(0, 6, 1), "another job");
        assert!(!other.is_marked(1, 5, 1), "another slot");
        assert_eq!(other.read(0, 0, 100).unwrap(), &[7; 100]);
    }

    #[test]
    fn slot_table_generations_advance_on_release() {
        let mut t = SlotTable::new(2);
        let (a, ga) = t.alloc().unwrap();
        let (b, _) = t.alloc().unwrap();
        assert_ne!(a, b);
        assert!(t.alloc().is_none());
        t.release(a);
        assert_eq!(t.generation(a), Some(ga + 1));
        assert_eq!(t.alloc(), Some((a, ga + 1)));
    }
}
