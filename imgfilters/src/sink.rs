//! [`Sink`]: where an encoder writes the encoded image. It fills a caller-provided region of
//! fixed capacity first (a filter worker's ring slot, so the output needs no copy into it) and,
//! only if the output outgrows the region, moves what it has into a growing `Vec<u8>` and
//! continues there.
//!
//! Trust boundary: none crossed. A sink only receives bytes this crate's encoders produce
//! from an image that was already decoded and checked; the region may be shared memory, which
//! the caller owns for as long as it lends it (the `&mut` borrow).
//!
//! A sink behaves like a `std::io::Cursor<Vec<u8>>` (`Write` at the position, `Seek` anywhere,
//! a write past the end fills the gap with zeros) plus the `Vec` helpers an encoder uses on
//! its output buffer (`clear`, `extend_from_slice`, `len`), so encoders written against
//! `std::io::Write` or `&mut Vec<u8>` take a `&mut Sink` unchanged.

use std::io::{self, Seek, SeekFrom, Write};

/// An output buffer that writes into a fixed region first and spills into a `Vec` when the
/// region is too small. See the module documentation.
pub struct Sink<'a> {
    region: &'a mut [u8],
    /// Where the output lives: `region[..len]` until it spilled, then all of `spill`.
    spilled: bool,
    /// Bytes of output so far (in the region, or `spill.len()` once spilled).
    len: usize,
    /// Write position, as a cursor's; may be past `len` after a seek.
    pos: usize,
    /// The overflow buffer. Empty (but keeping any capacity it was given) until it spills.
    spill: Vec<u8>,
}

/// Where a finished sink's output ended up.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// The first `n` bytes of the region.
    InRegion(usize),
    /// Larger than the region: all of it in this `Vec` (the region's content is undefined).
    Spilled(Vec<u8>),
}

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("region", &self.region.len())
            .field("spilled", &self.spilled)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> Sink<'a> {
    /// A sink writing into `region` (whatever it holds now is overwritten).
    pub fn new(region: &'a mut [u8]) -> Self {
        Self::with_spill(region, Vec::new())
    }

    /// A sink writing into `region` that spills into `spill` (cleared; its capacity is
    /// reused). With an empty region the output goes straight to `spill`: that is how
    /// [`run_into`](crate::run_into) keeps its caller's `Vec` and its capacity.
    pub fn with_spill(region: &'a mut [u8], mut spill: Vec<u8>) -> Self {
        spill.clear();
        Sink {
            region,
            spilled: false,
            len: 0,
            pos: 0,
            spill,
        }
    }

    /// Bytes of output so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region's capacity.
    pub fn region_len(&self) -> usize {
        self.region.len()
    }

    /// Whether the output outgrew the region.
    pub fn spilled(&self) -> bool {
        self.spilled
    }

    /// The output so far.
    pub fn as_slice(&self) -> &[u8] {
        if self.spilled {
            &self.spill
        } else {
            &self.region[..self.len]
        }
    }

    /// Drops all output and goes back to writing at the start of the region.
    pub fn clear(&mut self) {
        self.spill.clear();
        self.spilled = false;
        self.len = 0;
        self.pos = 0;
    }

    /// Appends `data` at the end (as `Vec::extend_from_slice`), wherever the position was;
    /// the position moves to the new end.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.pos = self.len;
        self.put(data);
    }

    /// Lets `fill` write up to `max_len` bytes straight into the region after the current
    /// end, when the output is still in the region and at least `max_len` bytes of it are
    /// left; `fill` returns how many bytes it wrote, which are appended. `None` (and `fill`
    /// not called) when there is no such room: the caller then writes another way. For
    /// encoders that write into a slice of a worst-case size they can compute first.
    pub fn append_in_region<E>(
        &mut self,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Option<Result<usize, E>> {
        if self.spilled || self.region.len() - self.len < max_len {
            return None;
        }
        let tail = &mut self.region[self.len..];
        Some(fill(tail).map(|n| {
            // An encoder cannot report more than the slice it was given; clamp anyway.
            let n = n.min(tail.len());
            self.len += n;
            self.pos = self.len;
            n
        }))
    }

    /// Where the output ended up.
    pub fn finish(self) -> Finished {
        if self.spilled {
            Finished::Spilled(self.spill)
        } else {
            Finished::InRegion(self.len)
        }
    }

    /// The output as a `Vec`: the spill buffer, or the region's bytes copied into it.
    pub fn into_vec(mut self) -> Vec<u8> {
        if !self.spilled {
            self.spill.clear();
            self.spill.extend_from_slice(&self.region[..self.len]);
        }
        self.spill
    }

    /// Writes `data` at the position (zero-filling any gap after the end), spilling first if
    /// it would not fit the region.
    fn put(&mut self, data: &[u8]) {
        let end = self.pos + data.len();
        if !self.spilled && end <= self.region.len() {
            if self.pos > self.len {
                self.region[self.len..self.pos].fill(0);
            }
            self.region[self.pos..end].copy_from_slice(data);
            self.len = self.len.max(end);
        } else {
            self.spill_out(end);
            let v = &mut self.spill;
            if v.len() < self.pos {
                v.resize(self.pos, 0);
            }
            let overlap = (v.len() - self.pos).min(data.len());
            v[self.pos..self.pos + overlap].copy_from_slice(&data[..overlap]);
            v.extend_from_slice(&data[overlap..]);
            self.len = v.len();
        }
        self.pos = end;
    }

    /// Moves the output from the region into the spill buffer, with room for `need` bytes.
    fn spill_out(&mut self, need: usize) {
        if self.spilled {
            return;
        }
        self.spill.clear();
        self.spill.reserve(need.max(self.len));
        self.spill.extend_from_slice(&self.region[..self.len]);
        self.spilled = true;
    }
}

impl AsRef<[u8]> for Sink<'_> {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Writing nothing changes nothing (not even after a seek past the end).
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos.checked_add(buf.len()).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write position overflows",
            ));
        }
        self.put(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Sink<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, off) = match to {
            SeekFrom::Start(n) => (0, i128::from(n)),
            SeekFrom::End(d) => (self.len, i128::from(d)),
            SeekFrom::Current(d) => (self.pos, i128::from(d)),
        };
        let pos = base as i128 + off;
        let pos = usize::try_from(pos).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid seek to a negative or overflowing position",
            )
        })?;
        self.pos = pos;
        Ok(pos as u64)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn exact_fit_stays_in_the_region() {
        let mut region = [0xAAu8; 8];
        let mut sink = Sink::new(&mut region);
        sink.write_all(b"abc").unwrap();
        sink.extend_from_slice(b"defgh");
        assert_eq!(sink.len(), 8);
        assert!(!sink.spilled());
        assert_eq!(sink.as_slice(), b"abcdefgh");
        assert_eq!(sink.finish(), Finished::InRegion(8));
        assert_eq!(&region, b"abcdefgh");
    }

    /// Two writes split at every point of a 0..=12-byte output, into regions of 0..=8 bytes:
    /// the bytes are the same, and the output spills exactly when it is larger than the region.
    #[test]
    fn overflow_at_every_boundary() {
        let data: Vec<u8> = (1..=12).collect();
        for region_len in 0..=8 {
            for total in 0..=data.len() {
                for split in 0..=total {
                    let mut region = vec![0u8; region_len];
                    let mut sink = Sink::new(&mut region);
                    sink.write_all(&data[..split]).unwrap();
                    assert_eq!(sink.spilled(), split > region_len);
                    sink.extend_from_slice(&data[split..total]);
                    assert_eq!(sink.as_slice(), &data[..total]);
                    let spilled = total > region_len;
                    assert_eq!(sink.spilled(), spilled, "{region_len} {total} {split}");
                    match sink.finish() {
                        Finished::InRegion(n) => {
                            assert!(!spilled);
                            assert_eq!(&region[..n], &data[..total]);
                        }
                        Finished::Spilled(v) => {
                            assert!(spilled);
                            assert_eq!(v, &data[..total]);
                        }
                    }
                }
            }
        }
    }

    /// Seeks, overwrites, writes past the end and appends give what `Cursor<Vec<u8>>` gives,
    /// whatever the region's size (so also across a spill in the middle).
    #[test]
    fn write_and_seek_are_a_cursors() {
        type Step = (SeekFrom, &'static [u8]);
        let scripts: [&[Step]; 4] = [
            &[
                (SeekFrom::Current(0), b"header--"),
                (SeekFrom::Start(2), b"XY"),
            ],
            &[
                (SeekFrom::Start(0), b"0123456789"),
                (SeekFrom::End(-3), b"abcdef"),
                (SeekFrom::Current(-8), b"q"),
            ],
            // A gap after the end is zero-filled.
            &[(SeekFrom::Start(5), b"ab"), (SeekFrom::Start(9), b"cd")],
            &[
                (SeekFrom::Start(0), b"long enough to spill anything"),
                (SeekFrom::Start(4), b"----"),
                (SeekFrom::End(2), b"!"),
            ],
        ];
        for script in scripts {
            for region_len in 0..40 {
                let mut region = vec![0xEE; region_len];
                let mut sink = Sink::new(&mut region);
                let mut cursor = Cursor::new(Vec::new());
                for (to, data) in script {
                    assert_eq!(sink.seek(*to).unwrap(), cursor.seek(*to).unwrap());
                    sink.write_all(data).unwrap();
                    cursor.write_all(data).unwrap();
                    assert_eq!(sink.stream_position().unwrap(), cursor.position());
                    assert_eq!(sink.as_slice(), cursor.get_ref().as_slice());
                }
                // extend_from_slice appends at the end, as on the Vec.
                sink.extend_from_slice(b"END");
                cursor.get_mut().extend_from_slice(b"END");
                assert_eq!(sink.into_vec(), cursor.into_inner(), "{region_len}");
            }
        }
    }

    #[test]
    fn negative_seek_is_an_error() {
        let mut sink = Sink::new(&mut []);
        assert!(sink.seek(SeekFrom::Current(-1)).is_err());
        assert!(sink.seek(SeekFrom::End(-1)).is_err());
        assert_eq!(sink.seek(SeekFrom::Current(2)).unwrap(), 2);
        assert_eq!(sink.seek(SeekFrom::Current(-2)).unwrap(), 0);
    }

    #[test]
    fn clear_returns_to_the_region_and_keeps_the_spill_capacity() {
        let mut region = [0u8; 4];
        let mut sink = Sink::with_spill(&mut region, Vec::with_capacity(64));
        sink.write_all(b"too long for four").unwrap();
        assert!(sink.spilled());
        sink.clear();
        assert!(sink.is_empty() && !sink.spilled());
        sink.write_all(b"ok").unwrap();
        assert_eq!(sink.finish(), Finished::InRegion(2));
        assert_eq!(&region[..2], b"ok");

        // An empty region: everything goes into the given Vec, capacity reused.
        let spill = Vec::with_capacity(100);
        let ptr = spill.as_ptr();
        let mut sink = Sink::with_spill(&mut [], spill);
        sink.write_all(b"hello").unwrap();
        let v = sink.into_vec();
        assert_eq!((v.as_slice(), v.as_ptr()), (&b"hello"[..], ptr));
    }

    #[test]
    fn append_in_region_only_with_room() {
        let mut region = [0u8; 10];
        let mut sink = Sink::new(&mut region);
        sink.write_all(b"ab").unwrap();
        let r = sink.append_in_region(8, |tail| {
            assert_eq!(tail.len(), 8);
            tail[..3].copy_from_slice(b"cde");
            Ok::<_, ()>(3)
        });
        assert_eq!(r, Some(Ok(3)));
        assert_eq!(sink.as_slice(), b"abcde");
        let called = sink.append_in_region(6, |_| -> Result<usize, ()> { unreachable!() });
        assert!(called.is_none());
        // A failing fill appends nothing.
        assert_eq!(sink.append_in_region(5, |_| Err("no")), Some(Err("no")));
        assert_eq!(sink.len(), 5);
        sink.write_all(b"0123456789").unwrap();
        assert!(sink.spilled());
        assert!(sink.append_in_region(0, |_| Ok::<_, ()>(0)).is_none());
        assert_eq!(sink.as_slice(), b"abcde0123456789");
    }
}
