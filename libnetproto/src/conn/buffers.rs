//! The connection's receive and send buffers: how bytes get in and out, how they grow, and
//! when they are given back.
//!
//! Trust boundary: the peer controls how many bytes arrive; input is capped at
//! `MAX_BUFFERED_INPUT` (`MAX_PRE_LOGIN_INPUT` until login completes) whatever the caller
//! offers, and the caller must drain events to make room. Every entry point where bytes move takes the caller's `now`, which stamps the
//! activity the timers measure (see `Clock`).

use super::time::Timestamp;
use super::{Conn, Side};
use crate::limits::{MAX_BUFFERED_INPUT, MAX_PRE_LOGIN_INPUT};

/// The receive buffer's usual allocation (it doubles from here for a transfer): a buffer of
/// at most this is given back as soon as it empties, a larger one after a quiet second.
pub(super) const SMALL_BUFFER: usize = 4096;
// Before login the receive buffer never grows past its first allocation.
const _: () = assert!(MAX_PRE_LOGIN_INPUT <= SMALL_BUFFER);

impl<S: Side> Conn<S> {
    fn buffered(&self) -> usize {
        self.rx_end - self.rx_start
    }

    /// Input bytes not yet turned into a frame (those of the current event excluded).
    pub(super) fn unprocessed(&self) -> usize {
        self.buffered() - self.rx_release
    }

    /// Room for more input before the caller must drain events: `MAX_BUFFERED_INPUT` once
    /// logged in, `MAX_PRE_LOGIN_INPUT` before (a peer that has not logged in cannot grow
    /// the receive buffer past its first 4 KiB).
    pub fn input_room(&self) -> usize {
        let cap = if self.is_ready() {
            MAX_BUFFERED_INPUT
        } else {
            MAX_PRE_LOGIN_INPUT
        };
        cap.saturating_sub(self.buffered())
    }

    /// Moves unprocessed bytes to the front when that frees enough space to be worth a copy.
    pub(super) fn compact(&mut self) {
        self.current = None;
        self.quiet = None;
        self.release();
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
        } else if self.rx_start > 0 && self.rx_start >= self.rx_end / 2 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
    }

    pub(super) fn release(&mut self) {
        self.rx_start += self.rx_release;
        self.rx_release = 0;
    }

    /// Makes at least `want` bytes writable after the buffered input. The buffer grows by
    /// doubling from 4 KiB (an idle connection has none: see `drop_small_rx`) and its new bytes are zeroed
    /// once, when they are first allocated, not on every read.
    fn reserve_input(&mut self, want: usize) {
        if self.rx.len() - self.rx_end >= want {
            return;
        }
        if self.rx_start > 0 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
        let mut len = self.rx.len().max(SMALL_BUFFER);
        while len - self.rx_end < want {
            len *= 2;
        }
        self.rx.resize(len, 0);
    }

    /// Records that `n` input bytes arrived at `now`. A frame completed from them counts as
    /// the peer's activity at this time, but only once `advance` has decoded it: bytes alone
    /// (a partial frame dribbled in) keep no timer alive.
    fn input_arrived(&mut self, n: usize, now: Timestamp) {
        self.clock.observe(now);
        if n > 0 {
            self.clock.input_at = self.clock.latest;
            self.clock.last_io = self.clock.latest;
            self.clock.frame_started.get_or_insert(self.clock.latest);
        }
    }

    /// Appends bytes received at `now`; returns how many were taken (fewer when the buffer is
    /// full: poll events, then feed the rest).
    pub fn feed(&mut self, data: &[u8], now: Timestamp) -> usize {
        self.compact();
        let n = data.len().min(self.input_room());
        self.reserve_input(n);
        self.rx[self.rx_end..self.rx_end + n].copy_from_slice(&data[..n]);
        self.rx_end += n;
        self.input_arrived(n, now);
        n
    }

    /// Lets a reader fill the receive buffer directly at `now`: `fill` gets a writable slice
    /// and returns how many bytes it wrote (or an error, passed through). Avoids a copy per
    /// read.
    pub fn read_buf<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
        now: Timestamp,
    ) -> Result<usize, E> {
        self.compact();
        let room = self.input_room();
        if room == 0 {
            return Ok(0);
        }
        if self.rx.is_empty() {
            // No buffer (an idle connection has none) and most reads here find nothing (the
            // one that ends each batch with EAGAIN) or a small request: read into the stack
            // and allocate just the bytes that arrived (a partial frame grows the buffer to
            // 4 KiB on the next read, as below).
            let mut first = [0u8; SMALL_BUFFER];
            let window = room.min(SMALL_BUFFER);
            let r = fill(&mut first[..window]);
            let n = (*r.as_ref().unwrap_or(&0)).min(window);
            if n > 0 {
                self.rx = first[..n].to_vec();
                self.rx_end = n;
            }
            self.input_arrived(n, now);
            return r;
        }
        // Offer what is free, growing (by doubling) only when little is.
        let free = self.rx.len() - self.rx_end;
        if free < SMALL_BUFFER.min(room) {
            self.reserve_input(self.rx.len().max(SMALL_BUFFER).min(room));
        }
        let window = (self.rx.len() - self.rx_end).min(room);
        let r = fill(&mut self.rx[self.rx_end..self.rx_end + window]);
        let n = (*r.as_ref().unwrap_or(&0)).min(window);
        self.rx_end += n;
        self.input_arrived(n, now);
        r
    }

    /// Frees the memory an idle connection does not need: the receive buffer when nothing is
    /// buffered, the send buffer when everything was written, and the inbound-stream tables
    /// when empty; each is allocated again when next needed. Buffers of at most 4 KiB go by
    /// themselves as soon as they empty (`drop_small_rx`, `consume_output`); server
    /// connections give back grown ones after a quiet second (see
    /// [`ServerTimeouts::shrink_after`](super::ServerTimeouts)). A caller may also call it on
    /// connections it knows to be quiet (imgserver's master does, once a second), for the
    /// tables and for grown buffers sooner.
    pub fn shrink_buffers(&mut self) {
        self.compact();
        if self.rx_end == 0 && !self.rx.is_empty() {
            self.rx = Vec::new();
        }
        if self.tx_start == self.tx.len() && self.tx.capacity() > 0 {
            self.tx = Vec::new();
            self.tx_start = 0;
        }
        if self.streams.is_empty() && self.streams.capacity() > 0 {
            self.streams = Default::default();
        }
        if self.refused.is_empty() && self.refused.capacity() > 0 {
            self.refused = Default::default();
        }
    }

    /// Gives back a small receive buffer that holds nothing, so an idle connection holds no
    /// buffer at all (10,000 idle connections kept 40 MB of empty 4 KiB buffers) without
    /// waiting for anyone to shrink it; the next read that brings bytes allocates just those
    /// (`read_buf`). A grown buffer is kept for the transfer that grew it, until the
    /// quiet-second give-back.
    pub(super) fn drop_small_rx(&mut self) {
        if self.rx_start == self.rx_end && !self.rx.is_empty() && self.rx.len() <= SMALL_BUFFER {
            self.rx = Vec::new();
            self.rx_start = 0;
            self.rx_end = 0;
        }
    }

    /// Bytes of memory the two buffers hold (receive buffer length plus send buffer
    /// capacity): what an idle connection costs, and what `shrink_buffers` gives back.
    pub fn buffer_capacity(&self) -> usize {
        self.rx.len() + self.tx.capacity()
    }

    /// Whether a transfer grew a buffer that an idle connection could give back now.
    pub(super) fn can_shrink(&self) -> bool {
        let grown = self.rx.len() > SMALL_BUFFER || self.tx.capacity() > SMALL_BUFFER;
        grown && self.unprocessed() == 0 && self.tx_start == self.tx.len()
    }

    // ----- output -----

    /// Bytes waiting to be written to the peer.
    pub fn pending_output(&self) -> &[u8] {
        &self.tx[self.tx_start..]
    }

    /// Marks `n` bytes of [`pending_output`](Self::pending_output) as written at `now`
    /// (progress for the slow-peer timer when `n > 0`).
    pub fn consume_output(&mut self, n: usize, now: Timestamp) {
        self.clock.observe(now);
        let n = n.min(self.tx.len() - self.tx_start);
        if n > 0 {
            self.clock.tx_since = self.clock.latest;
            self.clock.last_io = self.clock.latest;
        }
        self.tx_start += n;
        if self.tx_start == self.tx.len() {
            // All written: a small buffer goes at once (an idle connection keeps none; the
            // next frame allocates its own size), a grown one is kept for the transfer until
            // the quiet-second give-back.
            if self.tx.capacity() <= SMALL_BUFFER {
                self.tx = Vec::new();
            } else {
                self.tx.clear();
            }
            self.tx_start = 0;
        } else if self.tx_start > 64 * 1024 && self.tx_start > self.tx.len() / 2 {
            self.tx.drain(..self.tx_start);
            self.tx_start = 0;
        }
    }
}
