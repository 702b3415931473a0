//! Owned sans-IO connection handles, one type per side: [`ServerConn`] (what the server's
//! event loop drives) and [`ClientConn`] (the load tester's), plus the conversion between
//! `std::time::Instant` and the library's microsecond timestamps.
//!
//! Trust boundary: the raw `np_conn` pointer never leaves this file. The C ABI has one handle
//! type for both sides and checks the side at run time; these wrappers expose only their
//! side's calls, so a wrong-side call does not compile:
//!
//! ```compile_fail
//! fn f(conn: &mut netproto_sys::ServerConn) {
//!     let _ = conn.send_job(1, "noop", 1, b"x", true);
//! }
//! ```
//!
//! ```compile_fail
//! fn f(conn: &mut netproto_sys::ClientConn) {
//!     let _ = conn.send_busy(1, 100);
//! }
//! ```
//!
//! # Timers
//!
//! Every call that moves bytes takes `now: Instant`; [`poll_timeout`](ServerConn::poll_timeout)
//! says when the connection next needs [`handle_timeout`](ServerConn::handle_timeout), which
//! reports the [`Timer`] that fired. An event loop keeps the earliest deadline of its
//! connections as its poll timeout:
//!
//! ```text
//! let now = Instant::now();
//! conn.read_fd(fd, now)?;  while let Some(ev) = conn.poll_event()? { .. }
//! conn.write_fd(fd, now)?;
//! if let Some(t) = conn.poll_timeout() { deadlines.push((t, token)) }
//! // when `t` passes:
//! match conn.handle_timeout(Instant::now()) { Some(Timer::Idle) => count, .. }
//! conn.write_fd(fd, now)?;  if conn.is_closed() && conn.pending_output().is_empty() { close }
//! ```

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::event::{empty_event, Event, ResultInfo};
use crate::{check, cstring, ffi, ClientConfig, ErrorCode, NpError, Result, ServerConfig};

/// The process-wide origin of the timestamps this crate passes to the library.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `t` as microseconds since the process-wide base (an instant from before the base, taken
/// before this crate's first conversion, counts as the base).
pub fn micros(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base()).as_micros()).unwrap_or(u64::MAX)
}

/// The instant a timestamp from [`micros`] stands for (the far future if out of range).
pub fn instant(us: u64) -> Instant {
    let b = base();
    b.checked_add(Duration::from_micros(us))
        .or_else(|| b.checked_add(Duration::from_secs(u32::MAX as u64)))
        .unwrap_or(b)
}

/// Which timer [`ServerConn::handle_timeout`] or [`ClientConn::handle_timeout`] acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Server: handshake and login took too long; ERROR HANDSHAKE_TIMEOUT queued, closed.
    Handshake,
    /// Server: idle while logged in with nothing outstanding; ERROR IDLE_TIMEOUT queued,
    /// closed.
    Idle,
    /// Server: the peer took none of its output for the slow-peer timeout; output dropped,
    /// closed: close the socket now.
    SlowPeer,
    /// Client: a heartbeat PING (request id 0) is queued.
    Heartbeat,
    /// Client: the server stayed silent for the dead-peer timeout; closed.
    DeadPeer,
    /// Server: after login, a frame began and was not whole within the frame timeout;
    /// `ERROR SLOW_CLIENT` queued and closed.
    SlowFrame,
}

impl Timer {
    fn from_raw(t: ffi::np_timer) -> Option<Timer> {
        match t {
            ffi::NP_TIMER_HANDSHAKE => Some(Timer::Handshake),
            ffi::NP_TIMER_IDLE => Some(Timer::Idle),
            ffi::NP_TIMER_SLOW_PEER => Some(Timer::SlowPeer),
            ffi::NP_TIMER_HEARTBEAT => Some(Timer::Heartbeat),
            ffi::NP_TIMER_DEAD_PEER => Some(Timer::DeadPeer),
            ffi::NP_TIMER_SLOW_FRAME => Some(Timer::SlowFrame),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Timer::Handshake => "handshake",
            Timer::Idle => "idle",
            Timer::SlowPeer => "slow-peer",
            Timer::Heartbeat => "heartbeat",
            Timer::DeadPeer => "dead-peer",
            Timer::SlowFrame => "slow-frame",
        }
    }
}

/// Milliseconds for the C setters: `None` or zero is 0 ("off").
fn ms_or_off(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| d.as_millis().clamp(1, u32::MAX as u128) as u32)
}

impl ServerConfig {
    /// Sets the handshake+login, idle and slow-peer timeouts of connections made from this
    /// config (`None` turns one off). Before any connection is made: afterwards an error.
    pub fn set_timeouts(
        &mut self,
        handshake: Option<Duration>,
        idle: Option<Duration>,
        slow_peer: Option<Duration>,
    ) -> Result<()> {
        // SAFETY: `self.raw` is a live config handle (ServerConfig's invariant) and `&mut self`
        // makes this the only call on it; the library itself refuses (NP_BAD_STATE) once
        // connections share it.
        check(unsafe {
            ffi::np_server_config_set_timeouts(
                self.raw,
                ms_or_off(handshake),
                ms_or_off(idle),
                ms_or_off(slow_peer),
            )
        })
    }
}

impl ServerConfig {
    /// Sets how long, after login, a frame may take from its first byte to its last (`None`
    /// turns it off). Before any connection is made: afterwards an error.
    pub fn set_frame_timeout(&mut self, frame: Option<Duration>) -> Result<()> {
        // SAFETY: as in `set_timeouts`: a live handle, used by this call only.
        check(unsafe { ffi::np_server_config_set_frame_timeout(self.raw, ms_or_off(frame)) })
    }

    /// Sets the HELLO timeout of connections made from this config: one whose HELLO has not
    /// arrived this long after accept is cut with ERROR HANDSHAKE_TIMEOUT (`None`: off, the
    /// library's default). Before any connection is made: afterwards an error.
    pub fn set_hello_timeout(&mut self, hello: Option<Duration>) -> Result<()> {
        // SAFETY: `self.raw` is a live config handle (ServerConfig's invariant) and `&mut self`
        // makes this the only call on it; the library itself refuses (NP_BAD_STATE) once
        // connections share it.
        check(unsafe { ffi::np_server_config_set_hello_timeout(self.raw, ms_or_off(hello)) })
    }

    /// Limits each connection's cheap requests (PING, STATS_REQUEST) to `burst` at once and
    /// `per_second` sustained; over it they are refused with ERROR RATE_LIMITED (0 for either:
    /// no limit, the library's default). Before any connection is made: afterwards an error.
    pub fn set_request_rate(&mut self, per_second: u32, burst: u32) -> Result<()> {
        // SAFETY: as for set_hello_timeout: a live handle, this the only call on it.
        check(unsafe { ffi::np_server_config_set_request_rate(self.raw, per_second, burst) })
    }
}

impl ClientConfig {
    /// Sets the heartbeat interval and dead-peer timeout of connections made from this config
    /// (`None` turns one off). Before any connection is made: afterwards an error.
    pub fn set_timers(
        &mut self,
        heartbeat: Option<Duration>,
        dead_after: Option<Duration>,
    ) -> Result<()> {
        // SAFETY: `self.raw` is a live config handle (ClientConfig's invariant) and `&mut self`
        // makes this the only call on it; the library itself refuses (NP_BAD_STATE) once
        // connections share it.
        check(unsafe {
            ffi::np_client_config_set_timers(self.raw, ms_or_off(heartbeat), ms_or_off(dead_after))
        })
    }
}

/// Outcome of one non-blocking read into a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    Data(usize),
    WouldBlock,
    /// Poll events before reading more.
    Full,
    Eof,
}

/// The owned handle both sides share; only this file sees it.
///
/// Invariant: `raw` is non-NULL, came from np_conn_new_server/_client, is owned by this value
/// (not Clone) and is freed only in `Drop`. Calls that may change the handle take `&mut self`,
/// so the library's one-thread-at-a-time rule holds by borrowing alone.
struct RawConn {
    raw: *mut ffi::np_conn,
}

impl Drop for RawConn {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_conn_new_* (RawConn's invariant) and this value owns it; Drop
        // runs once, after every borrow of `self` (events, output slices) has ended.
        unsafe { ffi::np_conn_free(self.raw) }
    }
}

impl RawConn {
    fn new(f: impl FnOnce(*mut *mut ffi::np_conn) -> ffi::np_status) -> Result<RawConn> {
        let mut raw = std::ptr::null_mut();
        check(f(&mut raw))?;
        Ok(RawConn { raw })
    }

    fn feed(&mut self, data: &[u8], now: Instant) -> Result<usize> {
        let mut n = 0;
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `data` is a slice valid for its length for the call and `n` a writable
        // local.
        check(unsafe {
            ffi::np_conn_feed(self.raw, data.as_ptr(), data.len(), micros(now), &mut n)
        })?;
        Ok(n)
    }

    fn read_fd(&mut self, fd: BorrowedFd<'_>, now: Instant) -> Result<ReadStatus> {
        let mut n = 0;
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `fd` is a BorrowedFd, so it stays open for the call, and the library only
        // borrows it; `n` is a writable local.
        match unsafe { ffi::np_conn_read_fd(self.raw, fd.as_raw_fd(), micros(now), &mut n) } {
            ffi::NP_OK => Ok(ReadStatus::Data(n)),
            ffi::NP_WOULD_BLOCK => Ok(ReadStatus::WouldBlock),
            ffi::NP_INPUT_FULL => Ok(ReadStatus::Full),
            ffi::NP_EOF => Ok(ReadStatus::Eof),
            s => Err(NpError::from_status(s)),
        }
    }

    fn write_fd(&mut self, fd: BorrowedFd<'_>, now: Instant) -> Result<usize> {
        let mut pending = 0;
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `fd` is a BorrowedFd, so it stays open for the call, and the library only
        // borrows it; `pending` is a writable local.
        check(unsafe {
            ffi::np_conn_write_fd(self.raw, fd.as_raw_fd(), micros(now), &mut pending)
        })?;
        Ok(pending)
    }

    fn pending_output(&self) -> &[u8] {
        let mut p = std::ptr::null();
        let mut n = 0;
        // SAFETY: `self.raw` is live (RawConn's invariant); a `const np_conn *` call only reads
        // it, so it may run while `&self` borrows (such as a pending-output slice) are alive; `p`
        // and `n` are writable locals.
        let s = unsafe { ffi::np_conn_pending_output(self.raw, &mut p, &mut n) };
        if s != ffi::NP_OK || n == 0 {
            return &[];
        }
        // SAFETY: on NP_OK with `n > 0` the library pointed `p` at `n` readable bytes of the
        // handle's output buffer, which only a call that mutates the handle can move; those take
        // `&mut self`, so the slice tied to `&self` ends before any of them.
        unsafe { std::slice::from_raw_parts(p, n) }
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; the library checks `n` against what is pending.
        unsafe { ffi::np_conn_consume_output(self.raw, n, micros(now)) };
    }

    fn poll_event(&mut self) -> Result<Option<Event<'_>>> {
        let mut ev = empty_event();
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `ev` is a writable local np_event.
        match unsafe { ffi::np_conn_poll_event(self.raw, &mut ev) } {
            // SAFETY: the event's pointers live until the next call on this handle, which
            // needs `&mut self` and so ends the returned borrow first.
            ffi::NP_OK => Ok(Some(unsafe { Event::from_raw(&ev) })),
            ffi::NP_NO_EVENT => Ok(None),
            s => Err(NpError::from_status(s)),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = 0u64;
        // SAFETY: `self.raw` is live (RawConn's invariant); a `const np_conn *` call only reads
        // it, so it may run while `&self` borrows (such as a pending-output slice) are alive; `t`
        // is a writable local.
        match unsafe { ffi::np_conn_poll_timeout(self.raw, &mut t) } {
            ffi::NP_OK => Some(instant(t)),
            _ => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Option<Timer> {
        let mut fired = ffi::NP_TIMER_NONE;
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `fired` is a writable local holding a valid np_timer.
        let s = unsafe { ffi::np_conn_handle_timeout(self.raw, micros(now), &mut fired) };
        if s != ffi::NP_OK {
            return None;
        }
        Timer::from_raw(fired)
    }

    fn shrink(&mut self) {
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        unsafe { ffi::np_conn_shrink(self.raw) };
    }

    fn is_ready(&self) -> bool {
        // SAFETY: `self.raw` is live (RawConn's invariant); a `const np_conn *` call only reads
        // it, so it may run while `&self` borrows (such as a pending-output slice) are alive.
        unsafe { ffi::np_conn_is_ready(self.raw) }
    }

    fn is_closed(&self) -> bool {
        // SAFETY: `self.raw` is live (RawConn's invariant); a `const np_conn *` call only reads
        // it, so it may run while `&self` borrows (such as a pending-output slice) are alive.
        unsafe { ffi::np_conn_is_closed(self.raw) }
    }

    fn send_error(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<()> {
        let t = cstring(&text.replace('\0', " "))?;
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `t` is a NUL-terminated CString alive for the call.
        check(unsafe { ffi::np_conn_send_error(self.raw, id, code as u16, t.as_ptr()) })
    }

    fn send_ping(&mut self, id: u64, payload: &[u8]) -> Result<()> {
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `payload` is a slice valid for its length for the call.
        check(unsafe { ffi::np_conn_send_ping(self.raw, id, payload.as_ptr(), payload.len()) })
    }

    fn send_bye(&mut self) -> Result<()> {
        // SAFETY: `self.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        check(unsafe { ffi::np_conn_send_bye(self.raw) })
    }
}

/// The calls both sides have, forwarded to the shared handle.
macro_rules! common_methods {
    () => {
        /// Appends bytes received at `now`; returns how many were taken.
        pub fn feed(&mut self, data: &[u8], now: Instant) -> Result<usize> {
            self.0.feed(data, now)
        }

        /// One non-blocking read from `fd` at `now`.
        pub fn read_fd(&mut self, fd: BorrowedFd<'_>, now: Instant) -> Result<ReadStatus> {
            self.0.read_fd(fd, now)
        }

        /// Writes pending output to a non-blocking `fd` at `now`; returns the bytes still
        /// pending.
        pub fn write_fd(&mut self, fd: BorrowedFd<'_>, now: Instant) -> Result<usize> {
            self.0.write_fd(fd, now)
        }

        pub fn pending_output(&self) -> &[u8] {
            self.0.pending_output()
        }

        /// Marks `n` bytes of the pending output as written at `now`.
        pub fn consume_output(&mut self, n: usize, now: Instant) {
            self.0.consume_output(n, now)
        }

        /// The next event, `None` if more input is needed, or the fatal error that closed the
        /// connection (flush pending output, then close).
        pub fn poll_event(&mut self) -> Result<Option<Event<'_>>> {
            self.0.poll_event()
        }

        /// When the connection next needs [`handle_timeout`](Self::handle_timeout); `None`
        /// when no timer is armed. Ask again after every call that moved bytes.
        pub fn poll_timeout(&self) -> Option<Instant> {
            self.0.poll_timeout()
        }

        /// Acts on the timers due at `now`; says which one fired. Flush afterwards, and
        /// close once flushed if [`is_closed`](Self::is_closed).
        pub fn handle_timeout(&mut self, now: Instant) -> Option<Timer> {
            self.0.handle_timeout(now)
        }

        /// Frees buffer memory while nothing is buffered (for connections gone idle).
        pub fn shrink(&mut self) {
            self.0.shrink()
        }

        pub fn is_ready(&self) -> bool {
            self.0.is_ready()
        }

        pub fn is_closed(&self) -> bool {
            self.0.is_closed()
        }

        /// An ERROR for request `id` (0: the connection); allowed before the handshake too.
        pub fn send_error(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<()> {
            self.0.send_error(id, code, text)
        }

        pub fn send_ping(&mut self, id: u64, payload: &[u8]) -> Result<()> {
            self.0.send_ping(id, payload)
        }

        pub fn send_bye(&mut self) -> Result<()> {
            self.0.send_bye()
        }
    };
}

/// A server-side connection: answers jobs and enforces the handshake, idle and slow-peer
/// timeouts of its config.
pub struct ServerConn(RawConn);

/// A client-side connection: sends jobs, decides about the server key, keeps a heartbeat.
pub struct ClientConn(RawConn);

// SAFETY: every call that changes the connection takes `&mut self`, so moving it to another
// thread cannot make two threads use it at once; the library keeps no thread-local state in
// a connection (only the last-error text is per thread, read right after each call).
unsafe impl Send for ServerConn {}
// SAFETY: as for ServerConn: the same handle type behind the same borrowing rules.
unsafe impl Send for ClientConn {}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerConn")
    }
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientConn")
    }
}

impl ServerConn {
    /// A connection accepted at `now`, awaiting HELLO; the handshake timeout runs from `now`.
    pub fn new(cfg: &ServerConfig, now: Instant) -> Result<ServerConn> {
        // SAFETY: `cfg.raw` is a live config handle (ServerConfig's invariant), borrowed for the
        // call, which only clones the library's reference to it; `out` is RawConn::new's writable
        // local.
        RawConn::new(|out| unsafe { ffi::np_conn_new_server(cfg.raw, micros(now), out) })
            .map(ServerConn)
    }

    common_methods!();

    pub fn user(&self) -> String {
        // SAFETY: `self.0.raw` is live and only read (`const np_conn *`); `o`/`c`/`l` are
        // text_out's writable buffer, its capacity and a writable length.
        crate::text_out(|o, c, l| unsafe { ffi::np_conn_user(self.0.raw, o, c, l) })
            .unwrap_or_default()
    }

    /// Starts the result of job `id`; `data` is the first chunk.
    pub fn send_result(
        &mut self,
        id: u64,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `info` is a borrowed np_result_info (same layout as the C struct) and `data`
        // a slice valid for its length, both for the call.
        check(unsafe {
            ffi::np_conn_send_result(self.0.raw, id, info, data.as_ptr(), data.len(), last)
        })
    }

    /// Starts the result of variant `index` (0-based) of multi-output job `id`; `data` is the
    /// first chunk, `send_result_data` continues it until `last`. One variant at a time.
    pub fn send_variant_result(
        &mut self,
        id: u64,
        index: u8,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `info` is a borrowed np_result_info (same layout as the C struct) and `data`
        // a slice valid for its length, both for the call.
        check(unsafe {
            ffi::np_conn_send_variant_result(
                self.0.raw,
                id,
                index,
                info,
                data.as_ptr(),
                data.len(),
                last,
            )
        })
    }

    /// Answers variant `index` of multi-output job `id` with an error; the others still come.
    pub fn send_variant_error(
        &mut self,
        id: u64,
        index: u8,
        code: ErrorCode,
        text: &str,
    ) -> Result<()> {
        let t = cstring(&text.replace('\0', " "))?;
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `t` is a NUL-terminated CString alive for the call.
        check(unsafe {
            ffi::np_conn_send_variant_error(self.0.raw, id, index, code as u16, t.as_ptr())
        })
    }

    pub fn send_result_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `data` is a slice valid for its length for the call.
        check(unsafe {
            ffi::np_conn_send_result_data(self.0.raw, id, data.as_ptr(), data.len(), last)
        })
    }

    /// Refuses request `id` and drops the rest of its upload.
    pub fn reject_request(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<()> {
        let t = cstring(&text.replace('\0', " "))?;
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `t` is a NUL-terminated CString alive for the call.
        check(unsafe { ffi::np_conn_reject_request(self.0.raw, id, code as u16, t.as_ptr()) })
    }

    /// Refuses request `id` (0: the connection, also before the handshake) with ERROR
    /// RATE_LIMITED; the peer reads `retry_after_ms` from its text (`retry-after-ms=N; why`).
    pub fn send_rate_limited(&mut self, id: u64, retry_after_ms: u32, why: &str) -> Result<()> {
        let t = cstring(&why.replace('\0', " "))?;
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `t` is a NUL-terminated CString alive for the call.
        check(unsafe { ffi::np_conn_send_rate_limited(self.0.raw, id, retry_after_ms, t.as_ptr()) })
    }

    /// The user name the peer gave in LOGIN_START, also after a failed login (empty before).
    pub fn login_name(&self) -> String {
        // SAFETY: `self.0.raw` is live and only read (`const np_conn *`); `o`/`c`/`l` are
        // text_out's writable buffer, its capacity and a writable length.
        crate::text_out(|o, c, l| unsafe { ffi::np_conn_login_name(self.0.raw, o, c, l) })
            .unwrap_or_default()
    }

    pub fn send_busy(&mut self, id: u64, retry_after_ms: u32) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        check(unsafe { ffi::np_conn_send_busy(self.0.raw, id, retry_after_ms) })
    }

    /// What a PROBE on this connection is answered with (see `Probe`); a new connection
    /// answers `NotReady` until told otherwise.
    pub fn set_probe_status(&mut self, status: crate::Probe) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; the status is a plain integer the library validates.
        check(unsafe { ffi::np_conn_set_probe_status(self.0.raw, status.number()) })
    }

    pub fn send_shutdown(&mut self, grace_ms: u32) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        check(unsafe { ffi::np_conn_send_shutdown(self.0.raw, grace_ms) })
    }

    pub fn send_stats(&mut self, id: u64, entries: &[(&str, u64)]) -> Result<()> {
        let names: Vec<std::ffi::CString> = entries
            .iter()
            .map(|(n, _)| cstring(n))
            .collect::<Result<_>>()?;
        let ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let values: Vec<u64> = entries.iter().map(|(_, v)| *v).collect();
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `ptrs` and `values` both hold `entries.len()` elements, each pointer a
        // NUL-terminated CString in `names`, all alive until after the call.
        check(unsafe {
            ffi::np_conn_send_stats(
                self.0.raw,
                id,
                ptrs.as_ptr(),
                values.as_ptr(),
                entries.len(),
            )
        })
    }
}

impl ClientConn {
    /// A connection created at `now`; its HELLO is already pending.
    pub fn new(cfg: &ClientConfig, now: Instant) -> Result<ClientConn> {
        // SAFETY: `cfg.raw` is a live config handle (ClientConfig's invariant), borrowed for the
        // call, which only clones the library's reference to it; `out` is RawConn::new's writable
        // local.
        RawConn::new(|out| unsafe { ffi::np_conn_new_client(cfg.raw, micros(now), out) })
            .map(ClientConn)
    }

    common_methods!();

    /// Accepts or refuses the server key from [`Event::ServerKey`]; login starts only after
    /// acceptance.
    pub fn trust_server_key(&mut self, accept: bool) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        check(unsafe { ffi::np_conn_trust_server_key(self.0.raw, accept) })
    }

    pub fn send_job(
        &mut self,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        let s = cstring(spec)?;
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `s` is a NUL-terminated CString and `data` a slice valid for its length,
        // both alive for the call.
        check(unsafe {
            ffi::np_conn_send_job(
                self.0.raw,
                id,
                s.as_ptr(),
                total_len,
                data.as_ptr(),
                data.len(),
                last,
            )
        })
    }

    /// Starts a multi-output job (feature level 1.1): `variants` is 2..=NP_MAX_VARIANTS op specs
    /// separated by `;`. A server without the feature closes the connection; the next poll
    /// then fails with NP_NOT_SUPPORTED.
    pub fn send_job_multi(
        &mut self,
        id: u64,
        variants: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        let s = cstring(variants)?;
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `s` is a NUL-terminated CString and `data` a slice valid for its length,
        // both alive for the call.
        check(unsafe {
            ffi::np_conn_send_job_multi(
                self.0.raw,
                id,
                s.as_ptr(),
                total_len,
                data.as_ptr(),
                data.len(),
                last,
            )
        })
    }

    pub fn send_job_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it; `data` is a slice valid for its length for the call.
        check(unsafe {
            ffi::np_conn_send_job_data(self.0.raw, id, data.as_ptr(), data.len(), last)
        })
    }

    pub fn send_stats_request(&mut self, id: u64) -> Result<()> {
        // SAFETY: `self.0.raw` is live (RawConn's invariant) and `&mut self` makes this the only
        // call on it.
        check(unsafe { ffi::np_conn_send_stats_request(self.0.raw, id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_microseconds() {
        let t = Instant::now() + Duration::from_millis(1500);
        let back = instant(micros(t));
        // Sub-microsecond parts are dropped, never more.
        assert!(back <= t && t.duration_since(back) < Duration::from_micros(1));
        assert_eq!(micros(base()), 0);
    }
}
