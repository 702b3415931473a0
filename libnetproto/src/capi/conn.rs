//! C handle for one connection's sans-IO state machine, plus non-blocking fd helpers and the
//! connection's timers.
//!
//! Trust boundary: bytes from a socket enter `Conn` here; fds are borrowed from the caller
//! for one call and never closed or kept. C cannot tell a client handle from a server one at
//! compile time, so every side-specific call checks the side and answers `NP_BAD_STATE` for
//! the wrong one, leaving the connection untouched.
//!
//! # Time
//!
//! One call per operation: every function that needs the time takes `now_us`, microseconds
//! on a monotonic clock the caller chooses, and `np_conn_poll_timeout` answers on that same
//! clock. `np_clock_now_us` is `CLOCK_MONOTONIC` in microseconds, so a caller may pass either
//! its result or its own `clock_gettime(CLOCK_MONOTONIC)` reading in µs; any other clock works
//! too as long as every `now_us` given to one connection comes from it. Mixing clocks on one
//! connection is the caller's error: the timers then fire early or late, but nothing unsafe
//! happens (a `now_us` older than one already seen counts as that one).
//!
//! # Handle rules (what the `SAFETY:` comments below rely on)
//!
//! - An `np_conn *` is made by `np_conn_new_server`/`np_conn_new_client` with
//!   `Box::into_raw` and is owned by the caller until the one `np_conn_free` that releases it.
//!   Every other function only borrows it for the duration of the call.
//! - A handle is used by one thread at a time (the header says so), so while a call runs no
//!   other reference to `*conn` exists: the `&mut np_conn` the call makes is unique, and a
//!   `&np_conn` is not aliased by a writer.
//! - Pointers to caller memory (`data`/`len`, strings, out-pointers) are only read or written
//!   during the call and never kept; event pointers handed out point into the handle's own
//!   buffer and stay valid until the next call on the handle.
//!
//! The helpers in `capi/mod.rs` (`arg_ref`, `arg_mut`, `arg_bytes`, `arg_str`, `write_out`,
//! `write_text`) turn NULL into `NP_NULL_ARGUMENT` before dereferencing, so each site's
//! remaining obligation is the caller's contract for a non-NULL pointer, named at the site.

use std::ffi::c_char;
use std::os::fd::BorrowedFd;

use super::config::{np_client_config, np_server_config};
use super::event::{np_event, np_result_info};
use super::status::np_status::{self, *};
use super::{arg_bytes, arg_mut, arg_ref, arg_str, err, fail, guard, guard_or, write_out};
use crate::conn::{ClientConn, ServerConn, TimerKind, Timestamp};
use crate::io::{self, ReadStatus};
use crate::message::ResultInfo;
use crate::opcode::ErrorCode;

pub use super::wire::np_timer;

/// One connection (client or server side). Not thread-safe: one thread at a time.
pub struct np_conn {
    pub(crate) inner: AnyConn,
}

/// The side is fixed when the handle is made; C sees one opaque type for both.
pub(crate) enum AnyConn {
    Client(ClientConn),
    Server(ServerConn),
}

/// Runs `$body` with `$c` bound to the connection, whichever side it is.
macro_rules! either {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            AnyConn::Client($c) => $body,
            AnyConn::Server($c) => $body,
        }
    };
}

impl np_conn {
    fn client(&mut self) -> Result<&mut ClientConn, np_status> {
        match &mut self.inner {
            AnyConn::Client(c) => Ok(c),
            AnyConn::Server(_) => Err(fail(
                NP_BAD_STATE,
                "a client-only call on a server connection",
            )),
        }
    }

    fn server(&mut self) -> Result<&mut ServerConn, np_status> {
        match &mut self.inner {
            AnyConn::Server(s) => Ok(s),
            AnyConn::Client(_) => Err(fail(
                NP_BAD_STATE,
                "a server-only call on a client connection",
            )),
        }
    }
}

impl From<Option<TimerKind>> for np_timer {
    fn from(k: Option<TimerKind>) -> Self {
        match k {
            None => np_timer::NP_TIMER_NONE,
            Some(TimerKind::Handshake) => np_timer::NP_TIMER_HANDSHAKE,
            Some(TimerKind::Idle) => np_timer::NP_TIMER_IDLE,
            Some(TimerKind::SlowPeer) => np_timer::NP_TIMER_SLOW_PEER,
            Some(TimerKind::Heartbeat) => np_timer::NP_TIMER_HEARTBEAT,
            Some(TimerKind::DeadPeer) => np_timer::NP_TIMER_DEAD_PEER,
            Some(TimerKind::SlowFrame) => np_timer::NP_TIMER_SLOW_FRAME,
        }
    }
}

/// Boxes `conn` and hands the caller ownership through `out`, which the constructor checked
/// non-NULL before building the connection (so a NULL `out` costs no key generation).
///
/// # Safety
/// `out` must be non-NULL and valid for writing one pointer.
unsafe fn new_handle(conn: AnyConn, out: *mut *mut np_conn) -> Result<np_status, np_status> {
    let h = Box::into_raw(Box::new(np_conn { inner: conn }));
    // SAFETY: `out` is non-NULL and writable for one `*mut np_conn` (this function's
    // contract, checked by the caller). Nothing can fail after the box is made, so the
    // handle is never leaked: the caller now owns it until np_conn_free.
    unsafe { out.write(h) };
    Ok(NP_OK)
}

/// CLOCK_MONOTONIC in microseconds: a valid `now_us` for every call that takes one. A caller
/// may read CLOCK_MONOTONIC itself instead (same clock), or use any other monotonic clock,
/// as long as one connection only ever sees one clock. Returns 0 if the clock cannot be read
/// (never on Linux).
#[no_mangle]
pub extern "C" fn np_clock_now_us() -> u64 {
    guard_or(0, || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a live, writable local timespec, the only pointer clock_gettime
        // takes; CLOCK_MONOTONIC is a valid clock id, so the call only fills `ts`.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
            return 0;
        }
        // Both fields are non-negative for CLOCK_MONOTONIC (time since boot).
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(ts.tv_nsec as u64 / 1_000)
    })
}

/// A server-side connection accepted at `now_us`, awaiting the client's HELLO; its handshake
/// timeout runs from `now_us`.
///
/// # Safety
/// `cfg` NULL or a live handle from `np_server_config_new`; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_server(
    cfg: *const np_server_config,
    now_us: u64,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `cfg` is a live np_server_config (the contract; arg_ref turns
        // NULL into NP_NULL_ARGUMENT). Only its Arc is cloned, which a concurrent reader on
        // another thread may do too (the config is shared read-only once connections exist).
        let cfg = unsafe { arg_ref(cfg) }?;
        if out.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let now = Timestamp::from_micros(now_us);
        let conn = ServerConn::new(cfg.inner.clone(), io::random32(), now);
        // SAFETY: `out` was checked non-NULL just above and is writable per the contract.
        unsafe { new_handle(AnyConn::Server(conn), out) }
    })
}

/// A client-side connection created at `now_us`; its HELLO is already in the pending output
/// and its dead-peer timer runs from `now_us`.
///
/// # Safety
/// `cfg` NULL or a live handle from `np_client_config_new`; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_client(
    cfg: *const np_client_config,
    now_us: u64,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `cfg` is a live np_client_config (the contract; arg_ref turns
        // NULL into NP_NULL_ARGUMENT); only its Arc is cloned, a read shared configs allow.
        let cfg = unsafe { arg_ref(cfg) }?;
        if out.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let now = Timestamp::from_micros(now_us);
        let conn = ClientConn::new(cfg.inner.clone(), io::random32(), now);
        // SAFETY: `out` was checked non-NULL just above and is writable per the contract.
        unsafe { new_handle(AnyConn::Client(conn), out) }
    })
}

/// Frees a connection and wipes its keys. NULL is a no-op.
///
/// # Safety
/// `conn` NULL or a handle from `np_conn_new_*`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn np_conn_free(conn: *mut np_conn) {
    guard_or((), || {
        if !conn.is_null() {
            // SAFETY: a non-NULL `conn` came from Box::into_raw in np_conn_new_* and the
            // contract makes this the one call that releases it (no use afterwards, no other
            // thread inside a call on it), so the box is rebuilt and dropped exactly once.
            drop(unsafe { Box::from_raw(conn) });
        }
    })
}

/// Appends bytes received at `now_us`; `consumed` gets how many were taken (fewer if the input
/// buffer is full: poll events, then feed the rest).
///
/// # Safety
/// `conn` NULL or live; `data` valid for `len` readable bytes; `consumed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_feed(
    conn: *mut np_conn,
    data: *const u8,
    len: usize,
    now_us: u64,
    consumed: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        // SAFETY: the contract makes `data` readable for `len` bytes; arg_bytes returns an
        // empty slice for `len == 0` without touching `data` and rejects NULL otherwise. The
        // bytes are caller memory, disjoint from the handle's buffers, and copied out before
        // the call returns.
        let d = unsafe { arg_bytes(data, len) }?;
        if consumed.is_null() {
            // Checked before feeding: a refused call changes nothing.
            return Err(fail(NP_NULL_ARGUMENT, "NULL consumed pointer"));
        }
        let n = either!(&mut c.inner, c => c.feed(d, Timestamp::from_micros(now_us)));
        // SAFETY: `consumed` was checked non-NULL above and is writable per the contract.
        unsafe { write_out(consumed, n) }?;
        Ok(NP_OK)
    })
}

/// One `read(2)` at `now_us` from a non-blocking `fd` into the connection. NP_OK with `nread`
/// (optional) set to the bytes read; NP_WOULD_BLOCK, NP_INPUT_FULL (poll events first), NP_EOF,
/// or NP_IO, all without writing `nread`.
///
/// # Safety
/// `conn` NULL or live; `fd` an open descriptor for the duration of the call; `nread` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_read_fd(
    conn: *mut np_conn,
    fd: i32,
    now_us: u64,
    nread: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: `fd` is non-negative (checked above) and the contract keeps it open for this
        // call; the BorrowedFd does not outlive the call and is never closed, so ownership
        // stays with the caller.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let now = Timestamp::from_micros(now_us);
        let read = either!(&mut c.inner, c => io::read_into(c, &mut FdIo(fd), now));
        let (status, n) = match read.map_err(err)? {
            ReadStatus::Data(n) => (NP_OK, n),
            ReadStatus::WouldBlock => (NP_WOULD_BLOCK, 0),
            ReadStatus::Full => (NP_INPUT_FULL, 0),
            ReadStatus::Eof => (NP_EOF, 0),
        };
        if status == NP_OK && !nread.is_null() {
            // SAFETY: `nread` is non-NULL (checked in this condition) and the contract makes a
            // non-NULL `nread` writable for one usize.
            unsafe { nread.write(n) };
        }
        Ok(status)
    })
}

/// Writes pending output at `now_us` to a non-blocking `fd` until it is all written or the
/// socket is full (bytes the socket takes are progress for the slow-peer timer); `pending`
/// (optional) gets the bytes still waiting (wait for writability if > 0).
///
/// # Safety
/// `conn` NULL or live; `fd` open for the call; `pending` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_write_fd(
    conn: *mut np_conn,
    fd: i32,
    now_us: u64,
    pending: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: `fd` is non-negative (checked above) and the contract keeps it open for this
        // call; the BorrowedFd does not outlive the call and is never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let now = Timestamp::from_micros(now_us);
        let left =
            either!(&mut c.inner, c => io::write_from(c, &mut FdIo(fd), now)).map_err(err)?;
        if !pending.is_null() {
            // SAFETY: `pending` is non-NULL (checked in this condition) and the contract makes
            // a non-NULL `pending` writable for one usize.
            unsafe { pending.write(left) };
        }
        Ok(NP_OK)
    })
}

/// Reads and writes a borrowed fd for one C call: `read(2)`, and `send(2)` with MSG_NOSIGNAL
/// (falling back to `write(2)` for a non-socket fd).
struct FdIo<'a>(BorrowedFd<'a>);

impl std::io::Read for FdIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is an exclusively borrowed slice, so its pointer is valid for
        // `buf.len()` writable bytes that nothing else reads during the call; the fd is open
        // for the BorrowedFd's lifetime. read(2) writes at most `buf.len()` bytes.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl std::io::Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is a borrowed slice, valid for `buf.len()` readable bytes for the
        // call; the fd is open for the BorrowedFd's lifetime; send(2) only reads the buffer.
        // MSG_NOSIGNAL turns a vanished peer into EPIPE instead of a process-killing SIGPIPE.
        let mut n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: the same slice and fd as the send above; write(2) only reads the buffer.
            n = unsafe { libc::write(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        }
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Points `data`/`len` at the bytes waiting to be sent (valid until the next call on `conn`).
///
/// # Safety
/// `conn` NULL or live; `data` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_pending_output(
    conn: *const np_conn,
    data: *mut *const u8,
    len: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle with no writer during this call (handle
        // rules: one thread at a time); arg_ref rejects NULL.
        let c = unsafe { arg_ref(conn) }?;
        if data.is_null() || len.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let out = either!(&c.inner, c => c.pending_output());
        // SAFETY: `data` and `len` were both checked non-NULL above and are writable per the
        // contract. The pointer handed out points into the handle's own output buffer, which
        // only a later call on the handle can move or free (the documented lifetime).
        unsafe {
            data.write(out.as_ptr());
            len.write(out.len());
        }
        Ok(NP_OK)
    })
}

/// Marks `n` bytes of the pending output as sent at `now_us` (progress for the slow-peer
/// timer). NP_INVALID_ARGUMENT, changing nothing, if `n` is more than is pending.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_consume_output(
    conn: *mut np_conn,
    n: usize,
    now_us: u64,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        if n > either!(&c.inner, c => c.pending_output().len()) {
            return Err(fail(
                NP_INVALID_ARGUMENT,
                "more bytes consumed than are pending",
            ));
        }
        let now = Timestamp::from_micros(now_us);
        either!(&mut c.inner, c => c.consume_output(n, now));
        Ok(NP_OK)
    })
}

/// When the connection next needs `np_conn_handle_timeout`: NP_OK with `*deadline_us` (on the
/// clock of the `now_us` values it was given), or NP_NO_EVENT when no timer is armed (then
/// `*deadline_us` is not written). Ask again after every call that moved bytes or queued
/// output.
///
/// # Safety
/// `conn` NULL or live; `deadline_us` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_poll_timeout(
    conn: *const np_conn,
    deadline_us: *mut u64,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle with no writer during this call (handle
        // rules); arg_ref rejects NULL.
        let c = unsafe { arg_ref(conn) }?;
        if deadline_us.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL deadline pointer"));
        }
        match either!(&c.inner, c => c.poll_timeout()) {
            None => Ok(NP_NO_EVENT),
            Some(t) => {
                // SAFETY: `deadline_us` was checked non-NULL above and is writable per the
                // contract.
                unsafe { write_out(deadline_us, t.as_micros()) }?;
                Ok(NP_OK)
            }
        }
    })
}

/// Acts on every timer due at `now_us` (due means `now_us >= deadline`); `fired` (optional)
/// says which one mattered. Afterwards flush the pending output, and close the socket once
/// flushed if `np_conn_is_closed` (at once after NP_TIMER_SLOW_PEER).
///
/// # Safety
/// `conn` NULL or live; `fired` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_handle_timeout(
    conn: *mut np_conn,
    now_us: u64,
    fired: *mut np_timer,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        let now = Timestamp::from_micros(now_us);
        let kind = either!(&mut c.inner, c => c.handle_timeout(now));
        if !fired.is_null() {
            // SAFETY: `fired` is non-NULL (checked in this condition) and writable for one
            // np_timer per the contract; the value written is one of the enum's variants.
            unsafe { fired.write(np_timer::from(kind)) };
        }
        Ok(NP_OK)
    })
}

/// Next event: NP_OK and `*event` filled, NP_NO_EVENT (need input), or the fatal error that
/// closed the connection (flush the pending output, which may hold an ERROR for the peer,
/// then close). Pointers in the event live until the next call on `conn`.
///
/// # Safety
/// `conn` NULL or live; `event` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_poll_event(conn: *mut np_conn, event: *mut np_event) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        if event.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL event pointer"));
        }
        match either!(&mut c.inner, c => c.poll_event()).map_err(err)? {
            None => Ok(NP_NO_EVENT),
            Some(e) => {
                let ev = np_event::from_event(&e);
                // SAFETY: `event` was checked non-NULL above and is writable per the contract.
                // Its pointers point into the handle's receive buffer, which stays put until
                // the next call on the handle (the documented lifetime).
                unsafe { write_out(event, ev) }?;
                Ok(NP_OK)
            }
        }
    })
}

/// Client only (a server handle gets NP_BAD_STATE): accepts (true) or refuses (false) the
/// server key from NP_EVENT_SERVER_KEY. Check it against your pinning table first; login
/// starts only after acceptance.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_trust_server_key(conn: *mut np_conn, accept: bool) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        c.client()?.trust_server_key(accept).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Frees the connection's buffer memory while nothing is buffered; call it on connections that
/// have gone idle after large transfers. A server connection driven by
/// `np_conn_handle_timeout` does this by itself after a quiet second.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_shrink(conn: *mut np_conn) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference, and no event pointer from an earlier call is
        // still valid (they end at this call); arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        either!(&mut c.inner, c => c.shrink_buffers());
        Ok(NP_OK)
    })
}

/// Whether the connection is logged in and can carry requests (false for NULL).
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_ready(conn: *const np_conn) -> bool {
    guard_or(false, || {
        // SAFETY: `as_ref` maps NULL to None; a non-NULL `conn` is a live handle with no
        // writer during this call (handle rules), so the shared reference is sound.
        unsafe { conn.as_ref() }.is_some_and(|c| either!(&c.inner, c => c.is_ready()))
    })
}

/// Whether the connection is finished (flush pending output, then close the socket); true for
/// NULL.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_closed(conn: *const np_conn) -> bool {
    guard_or(true, || {
        // SAFETY: `as_ref` maps NULL to None; a non-NULL `conn` is a live handle with no
        // writer during this call (handle rules), so the shared reference is sound.
        unsafe { conn.as_ref() }.is_none_or(|c| either!(&c.inner, c => c.is_closed()))
    })
}

/// Whether `conn` is a server-side connection (false for a client one or NULL).
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_server(conn: *const np_conn) -> bool {
    guard_or(false, || {
        // SAFETY: `as_ref` maps NULL to None; a non-NULL `conn` is a live handle with no
        // writer during this call (handle rules), so the shared reference is sound.
        unsafe { conn.as_ref() }.is_some_and(|c| matches!(c.inner, AnyConn::Server(_)))
    })
}

/// Client only (a server handle gets NP_BAD_STATE): starts job `id` with op spec `spec`,
/// declared input length `total_len`, and the first chunk (≤ NP_MAX_CHUNK_DATA bytes); `last`
/// if that chunk completes the input.
///
/// # Safety
/// `conn` NULL or live; `spec` NULL or NUL-terminated; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_job(
    conn: *mut np_conn,
    id: u64,
    spec: *const c_char,
    total_len: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `spec` is NUL-terminated and `data` readable for
        // `len` bytes (the contract; `len == 0` reads nothing). Both are caller memory that
        // cannot alias the handle's buffers, and are copied into a frame before returning.
        // The helpers reject NULL.
        let (c, spec, d) = unsafe { (arg_mut(conn)?, arg_str(spec)?, arg_bytes(data, len)?) };
        c.client()?
            .send_job(id, spec, total_len, d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client only (a server handle gets NP_BAD_STATE): starts multi-output job `id` (protocol
/// feature level 1.1, JOB_SUBMIT_MULTI): `variants` is the variant list, 2..=NP_MAX_VARIANTS op
/// specs separated by `;`, none empty, at most NP_MAX_SPEC_LEN bytes in all (else
/// NP_INVALID_ARGUMENT); the input is as for `np_conn_send_job`, and continues with
/// `np_conn_send_job_data`. Answers come as NP_EVENT_VARIANT_RESULT (+ NP_EVENT_RESULT_DATA)
/// and NP_EVENT_VARIANT_ERROR, one per variant in any order, or one NP_EVENT_ERROR /
/// NP_EVENT_BUSY for the whole job. A server without the feature closes the connection:
/// `np_conn_poll_event` then returns NP_NOT_SUPPORTED.
///
/// # Safety
/// `conn` NULL or live; `variants` NULL or NUL-terminated; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_job_multi(
    conn: *mut np_conn,
    id: u64,
    variants: *const c_char,
    total_len: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: as in np_conn_send_job: a non-NULL `conn` is a live handle used by this
        // thread only, so the &mut is unique; `variants` is NUL-terminated and `data` readable
        // for `len` bytes, caller memory disjoint from the handle, copied before returning.
        let (c, v, d) = unsafe { (arg_mut(conn)?, arg_str(variants)?, arg_bytes(data, len)?) };
        c.client()?
            .send_job_multi(id, v, total_len, d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client only (a server handle gets NP_BAD_STATE): more input for job `id`.
///
/// # Safety
/// `conn` NULL or live; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_job_data(
    conn: *mut np_conn,
    id: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; `data` is readable for `len` bytes (the contract; `len == 0`
        // reads nothing) and is caller memory, disjoint from the handle. NULLs are rejected.
        let (c, d) = unsafe { (arg_mut(conn)?, arg_bytes(data, len)?) };
        c.client()?.send_job_data(id, d, last).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client only (a server handle gets NP_BAD_STATE): asks for the server's counters.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_stats_request(conn: *mut np_conn, id: u64) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        c.client()?.send_stats_request(id).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): starts the result of job `id`; `data` is
/// the first chunk.
///
/// # Safety
/// `conn` NULL or live; `info` NULL or valid; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_result(
    conn: *mut np_conn,
    id: u64,
    info: *const np_result_info,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `info` points to a readable np_result_info, all
        // plain integers, so any bit pattern is a valid value; `data` is readable for `len`
        // bytes (the contract; `len == 0` reads nothing). Both are caller memory, disjoint
        // from the handle. The helpers reject NULL.
        let (c, info, d) = unsafe { (arg_mut(conn)?, arg_ref(info)?, arg_bytes(data, len)?) };
        c.server()?
            .send_result(id, &ResultInfo::from(info), d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): more result data for job `id`.
///
/// # Safety
/// `conn` NULL or live; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_result_data(
    conn: *mut np_conn,
    id: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; `data` is readable for `len` bytes (the contract; `len == 0`
        // reads nothing) and is caller memory, disjoint from the handle. NULLs are rejected.
        let (c, d) = unsafe { (arg_mut(conn)?, arg_bytes(data, len)?) };
        c.server()?.send_result_data(id, d, last).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): starts the result of variant `index`
/// (0-based) of multi-output job `id` (NP_EVENT_JOB_SUBMIT_MULTI); `data` is the first chunk and
/// `np_conn_send_result_data` continues it until `last`. One variant's stream at a time; an
/// index out of range, already answered, or sent while another variant's stream is open
/// gets NP_BAD_STATE, as does a job that is not a multi-output one in progress.
///
/// # Safety
/// `conn` NULL or live; `info` NULL or valid; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_variant_result(
    conn: *mut np_conn,
    id: u64,
    index: u8,
    info: *const np_result_info,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: as in np_conn_send_result: a non-NULL `conn` is a live handle used by this
        // thread only (unique &mut); a non-NULL `info` points to plain integers (any bit
        // pattern valid); `data` is readable for `len` bytes. The helpers reject NULL.
        let (c, info, d) = unsafe { (arg_mut(conn)?, arg_ref(info)?, arg_bytes(data, len)?) };
        c.server()?
            .send_variant_result(id, index, &ResultInfo::from(info), d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): answers variant `index` (0-based) of
/// multi-output job `id` with error `code` (a protocol error code) and `text`; the job's other
/// variants still come. The same index rules as `np_conn_send_variant_result`.
///
/// # Safety
/// `conn` NULL or live; `text` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_variant_error(
    conn: *mut np_conn,
    id: u64,
    index: u8,
    code: u16,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `text` is NUL-terminated caller memory, read only
        // during the call (the contract). The helpers reject NULL.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        let code = error_code(code)?;
        c.server()?
            .send_variant_error(id, index, code, t)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// A wire error code C may send: known and not reserved.
fn error_code(code: u16) -> Result<ErrorCode, np_status> {
    ErrorCode::from_u16(code)
        .filter(|c| !c.is_reserved())
        .ok_or_else(|| fail(NP_INVALID_ARGUMENT, "unknown or reserved error code"))
}

/// Sends an ERROR with `code` (a protocol error code) for request `id` (0: the connection).
/// Allowed before the handshake too, e.g. to refuse a connection.
///
/// # Safety
/// `conn` NULL or live; `text` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_error(
    conn: *mut np_conn,
    id: u64,
    code: u16,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `text` is NUL-terminated caller memory, read only
        // during the call (the contract). The helpers reject NULL.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        let code = error_code(code)?;
        either!(&mut c.inner, c => c.send_error(id, code, t)).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): refuses request `id` with an ERROR and
/// silently drops the rest of its upload.
///
/// # Safety
/// `conn` NULL or live; `text` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_reject_request(
    conn: *mut np_conn,
    id: u64,
    code: u16,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `text` is NUL-terminated caller memory, read only
        // during the call (the contract). The helpers reject NULL.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        let code = error_code(code)?;
        c.server()?.reject_request(id, code, t).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): refuses request `id` for load with BUSY
/// and a retry-after delay.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_busy(
    conn: *mut np_conn,
    id: u64,
    retry_after_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        c.server()?.send_busy(id, retry_after_ms).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): sets what a PROBE on this connection is
/// answered with, one of NP_PROBE_READY, NP_PROBE_NOT_READY, NP_PROBE_DRAINING (any other
/// number is NP_INVALID_ARGUMENT and changes nothing). The library cannot know the server's
/// readiness; the caller sets it before feeding input. A new connection answers NOT_READY.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_set_probe_status(conn: *mut np_conn, status: u32) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        let s = c.server()?;
        let status = crate::probe::ProbeStatus::from_u32(status)
            .ok_or_else(|| fail(NP_INVALID_ARGUMENT, "unknown probe status"))?;
        s.set_probe_status(status);
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): tells the client the server is stopping
/// within `grace_ms`.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_shutdown(conn: *mut np_conn, grace_ms: u32) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        c.server()?.send_shutdown(grace_ms).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): answers a stats request with `n`
/// name/value pairs.
///
/// # Safety
/// `conn` NULL or live; `names` and `values` valid for `n` elements; each name NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_stats(
    conn: *mut np_conn,
    id: u64,
    names: *const *const c_char,
    values: *const u64,
    n: usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        if n > 0 && (names.is_null() || values.is_null()) {
            return Err(fail(NP_NULL_ARGUMENT, "NULL names or values"));
        }
        let mut entries = Vec::with_capacity(n.min(u16::MAX as usize));
        for i in 0..n {
            // SAFETY: `i < n`, and `names` and `values` are non-NULL (checked above, as n > 0
            // here) arrays of `n` readable elements per the contract, so `add(i)` stays inside
            // each array and the reads are in bounds. A non-NULL `names[i]` is NUL-terminated
            // (the contract); arg_str rejects a NULL one.
            let (name, value) = unsafe { (arg_str(*names.add(i))?, *values.add(i)) };
            entries.push((name, value));
        }
        c.server()?.send_stats(id, &entries).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Either side: PING with a payload of at most NP_MAX_PING_PAYLOAD (256) bytes; the peer
/// echoes it in PONG.
///
/// # Safety
/// `conn` NULL or live; `payload` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_ping(
    conn: *mut np_conn,
    id: u64,
    payload: *const u8,
    len: usize,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; `payload` is readable for `len` bytes (the contract; `len ==
        // 0` reads nothing) and is caller memory, disjoint from the handle. NULLs are rejected.
        let (c, p) = unsafe { (arg_mut(conn)?, arg_bytes(payload, len)?) };
        either!(&mut c.inner, c => c.send_ping(id, p)).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Either side: orderly close; afterwards only flush the pending output.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_bye(conn: *mut np_conn) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so this &mut is the only reference; arg_mut rejects NULL.
        let c = unsafe { arg_mut(conn) }?;
        either!(&mut c.inner, c => c.send_bye()).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Copies a text of a server connection (`pick`) into `out` as a NUL-terminated string;
/// NP_BAD_STATE on a client connection.
///
/// # Safety
/// `conn` NULL or live; `out` NULL or valid for `cap` bytes; `len` NULL or writable.
unsafe fn server_text(
    conn: *const np_conn,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
    pick: fn(&ServerConn) -> &str,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle with no writer during this call (handle
        // rules); arg_ref rejects NULL.
        let c = unsafe { arg_ref(conn) }?;
        let text = match &c.inner {
            AnyConn::Server(s) => pick(s),
            AnyConn::Client(_) => {
                return Err(fail(
                    NP_BAD_STATE,
                    "a server-only call on a client connection",
                ))
            }
        };
        // SAFETY: `out` is valid for `cap` bytes and a non-NULL `len` writable (the contract);
        // write_text rejects a NULL `out` and a `cap` below the text plus its NUL before it
        // writes anything. `text` borrows the handle, which caller memory cannot overlap.
        unsafe { super::write_text(text, out, cap, len) }?;
        Ok(NP_OK)
    })
}

/// Copies the user name of a logged-in server connection (NUL-terminated) into `out`
/// (NP_BAD_STATE on a client connection).
///
/// # Safety
/// `conn` NULL or live; `out` NULL or valid for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_user(
    conn: *const np_conn,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> np_status {
    // SAFETY: the caller's contract is server_text's.
    unsafe { server_text(conn, out, cap, len, ServerConn::user) }
}

/// Reads the next name/value pair from a STATS event's `data`, starting at `*offset` (0 for
/// the first) and advancing it. NP_NO_EVENT after the last pair. `name` gets NUL-terminated
/// text. Nothing is written unless the call returns NP_OK.
///
/// # Safety
/// `body` valid for `len` bytes; `offset` NULL or readable and writable; `name` NULL or valid
/// for `cap` bytes; `value` NULL or writable. None of them may overlap another.
#[no_mangle]
pub unsafe extern "C" fn np_stats_next(
    body: *const u8,
    len: usize,
    offset: *mut usize,
    name: *mut c_char,
    cap: usize,
    value: *mut u64,
) -> np_status {
    guard(|| {
        // SAFETY: `body` is readable for `len` bytes (the contract; `len == 0` reads nothing)
        // and a non-NULL `offset` is a readable, writable usize that does not overlap `body`
        // (the contract), so the shared slice and the &mut coexist soundly; the helpers reject
        // NULL.
        let (b, off) = unsafe { (arg_bytes(body, len)?, arg_mut(offset)?) };
        if value.is_null() {
            // Checked before anything is written: outputs change only on success.
            return Err(fail(NP_NULL_ARGUMENT, "NULL value pointer"));
        }
        // The body starts with a u16 count; offset 0 means "before the first entry".
        let pos = if *off == 0 { 2 } else { *off };
        if b.len() < 2 {
            return Err(fail(NP_MALFORMED, "stats body too short"));
        }
        if pos >= b.len() {
            return Ok(NP_NO_EVENT);
        }
        let mut r = crate::reader::Reader::new(&b[pos..]);
        let n = r.u8().map_err(err)? as usize;
        let text = r.take(n).map_err(err)?;
        let v = r.u64().map_err(err)?;
        let text =
            std::str::from_utf8(text).map_err(|_| fail(NP_MALFORMED, "stat name not UTF-8"))?;
        // SAFETY: `name` is valid for `cap` bytes (the contract); write_text rejects NULL and a
        // `cap` too small for the text plus its NUL before it writes, so on failure nothing
        // is written. `value` was checked non-NULL above and is writable (the contract).
        unsafe {
            super::write_text(text, name, cap, std::ptr::null_mut())?;
            write_out(value, v)?;
        }
        *off = pos + 1 + n + 8;
        Ok(NP_OK)
    })
}

// ----- admission: refusing with a delay, login names, the request rate -----

/// Server only (a client handle gets NP_BAD_STATE): refuses request `id` (0: the whole
/// connection) with ERROR RATE_LIMITED, whose text is `retry-after-ms=N; ` followed by
/// `text`. Allowed before the handshake, so a server can turn a connection away right after
/// accept, before any key exchange.
///
/// # Safety
/// `conn` NULL or live; `text` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_rate_limited(
    conn: *mut np_conn,
    id: u64,
    retry_after_ms: u32,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `conn` is a live handle used by this thread only (handle rules),
        // so the &mut is unique; a non-NULL `text` is NUL-terminated caller memory, read only
        // during the call (the contract). The helpers reject NULL.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        c.server()?
            .send_rate_limited(id, retry_after_ms, t)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Copies the user name a server connection's peer gave in LOGIN_START (NUL-terminated,
/// empty before it) into `out`, whether or not the login succeeded: what a server counts
/// failed logins by (NP_BAD_STATE on a client connection).
///
/// # Safety
/// `conn` NULL or live; `out` NULL or valid for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_login_name(
    conn: *const np_conn,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> np_status {
    // SAFETY: the caller's contract is server_text's.
    unsafe { server_text(conn, out, cap, len, ServerConn::login_name) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conn::{ClientConfig, ServerConfig};
    use crate::keys::ServerKey;
    use crate::message::ServerParams;

    const PARAMS: ServerParams = ServerParams {
        max_chunk: crate::limits::MAX_CHUNK_DATA as u32,
        max_upload: 1 << 20,
        max_in_flight: 4,
    };

    fn pending(conn: *const np_conn) -> usize {
        let (mut p, mut n) = (std::ptr::null(), 0usize);
        // SAFETY: a live handle from this test and writable locals.
        assert_eq!(
            unsafe { np_conn_pending_output(conn, &mut p, &mut n) },
            NP_OK
        );
        n
    }

    #[test]
    fn wrong_side_calls_answer_bad_state_and_change_nothing() {
        let scfg = np_server_config {
            inner: Arc::new(ServerConfig::new(ServerKey::from_secret([1; 32]), PARAMS)),
        };
        let ccfg = np_client_config {
            inner: Arc::new(ClientConfig::new("alice", b"pw").unwrap()),
        };
        let (mut s, mut c) = (std::ptr::null_mut(), std::ptr::null_mut());
        let info = np_result_info::default();
        // Byte strings rather than `c"…"` literals: cbindgen's parser predates those.
        let spec = std::ffi::CStr::from_bytes_with_nul(b"noop\0").unwrap();
        let text = std::ffi::CStr::from_bytes_with_nul(b"no\0").unwrap();
        let mut name = [0 as c_char; 16];
        // SAFETY: live config handles, writable out-pointers; every handle passed below was
        // created here and is freed once at the end.
        unsafe {
            assert_eq!(np_conn_new_server(&scfg, 0, &mut s), NP_OK);
            assert_eq!(np_conn_new_client(&ccfg, 0, &mut c), NP_OK);
            assert!(np_conn_is_server(s) && !np_conn_is_server(c));
            let hello = pending(c);
            assert!(hello > 0);

            let client_only = [
                np_conn_send_job(s, 1, spec.as_ptr(), 1, b"x".as_ptr(), 1, true),
                np_conn_send_job_data(s, 1, b"x".as_ptr(), 1, true),
                np_conn_send_stats_request(s, 1),
                np_conn_trust_server_key(s, true),
            ];
            let server_only = [
                np_conn_send_result(c, 1, &info, b"x".as_ptr(), 1, true),
                np_conn_send_result_data(c, 1, b"x".as_ptr(), 1, true),
                np_conn_reject_request(c, 1, ErrorCode::Internal as u16, text.as_ptr()),
                np_conn_send_busy(c, 1, 10),
                np_conn_send_shutdown(c, 10),
                np_conn_send_stats(c, 1, std::ptr::null(), std::ptr::null(), 0),
                np_conn_user(c, name.as_mut_ptr(), name.len(), std::ptr::null_mut()),
                np_conn_send_rate_limited(c, 0, 100, text.as_ptr()),
                np_conn_login_name(c, name.as_mut_ptr(), name.len(), std::ptr::null_mut()),
            ];
            assert_eq!(client_only, [NP_BAD_STATE; 4]);
            assert_eq!(server_only, [NP_BAD_STATE; 9]);
            // Nothing was queued or closed by the refused calls.
            assert_eq!((pending(s), pending(c)), (0, hello));
            assert!(!np_conn_is_closed(s) && !np_conn_is_closed(c));
            np_conn_free(s);
            np_conn_free(c);
        }
    }

    #[test]
    fn timers_cross_the_abi_on_the_callers_clock() {
        let scfg = np_server_config {
            inner: Arc::new(ServerConfig::new(ServerKey::from_secret([1; 32]), PARAMS)),
        };
        let mut s = std::ptr::null_mut();
        let t0 = 7_000_000u64;
        // SAFETY: a live config, writable outputs; `s` is created here and freed once.
        unsafe {
            assert_eq!(np_conn_new_server(&scfg, t0, &mut s), NP_OK);
            let mut deadline = 0u64;
            assert_eq!(np_conn_poll_timeout(s, &mut deadline), NP_OK);
            assert_eq!(deadline, t0 + 10_000_000);
            let mut fired = np_timer::NP_TIMER_DEAD_PEER;
            assert_eq!(np_conn_handle_timeout(s, deadline - 1, &mut fired), NP_OK);
            assert_eq!(fired, np_timer::NP_TIMER_NONE);
            assert_eq!(np_conn_handle_timeout(s, deadline, &mut fired), NP_OK);
            assert_eq!(fired, np_timer::NP_TIMER_HANDSHAKE);
            assert!(np_conn_is_closed(s) && pending(s) > 0);
            // The ERROR waits for the peer, bounded by the slow-peer timer; written, nothing
            // is left armed and the deadline output is left alone.
            assert_eq!(np_conn_poll_timeout(s, &mut deadline), NP_OK);
            assert_eq!(deadline, t0 + 40_000_000);
            assert_eq!(
                np_conn_consume_output(s, pending(s), t0 + 10_000_001),
                NP_OK
            );
            let mut untouched = 42u64;
            assert_eq!(np_conn_poll_timeout(s, &mut untouched), NP_NO_EVENT);
            assert_eq!(untouched, 42);
            assert_eq!(
                np_conn_poll_timeout(s, std::ptr::null_mut()),
                NP_NULL_ARGUMENT
            );
            np_conn_free(s);
        }
    }

    #[test]
    fn integer_inputs_are_checked_and_refused_calls_write_nothing() {
        let scfg = np_server_config {
            inner: Arc::new(ServerConfig::new(ServerKey::from_secret([1; 32]), PARAMS)),
        };
        let mut s = std::ptr::null_mut();
        // SAFETY: a live config and writable locals; `s` is created here and freed once. The
        // socketpair's fds stay open until closed at the end.
        unsafe {
            // A NULL `out` is refused before anything is made.
            assert_eq!(
                np_conn_new_server(&scfg, 0, std::ptr::null_mut()),
                NP_NULL_ARGUMENT
            );
            assert_eq!(np_conn_new_server(&scfg, 0, &mut s), NP_OK);
            // Nothing is pending: consuming even one byte is a caller error.
            assert_eq!(np_conn_consume_output(s, 1, 0), NP_INVALID_ARGUMENT);
            assert_eq!(np_conn_consume_output(s, 0, 0), NP_OK);
            let mut n = 77usize;
            assert_eq!(np_conn_read_fd(s, -1, 0, &mut n), NP_INVALID_ARGUMENT);
            assert_eq!(np_conn_write_fd(s, -1, 0, &mut n), NP_INVALID_ARGUMENT);
            let mut fds = [0i32; 2];
            assert_eq!(
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                    0,
                    fds.as_mut_ptr()
                ),
                0
            );
            // Nothing to read: NP_WOULD_BLOCK, and `nread` is left alone.
            assert_eq!(np_conn_read_fd(s, fds[0], 0, &mut n), NP_WOULD_BLOCK);
            assert_eq!(n, 77);
            assert_eq!(
                np_conn_send_error(s, 0, 9999, b"x\0".as_ptr().cast()),
                NP_INVALID_ARGUMENT
            );
            assert_eq!(pending(s), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
            np_conn_free(s);
        }
    }

    #[test]
    fn the_library_clock_is_clock_monotonic_in_microseconds() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let a = np_clock_now_us();
        // SAFETY (test): a writable local timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
            0
        );
        let mine = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
        let b = np_clock_now_us();
        // The caller's own reading of the same clock lies between two of the library's.
        assert!(a > 0 && a <= mine && mine <= b, "{a} {mine} {b}");
    }
}
