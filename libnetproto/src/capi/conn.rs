//! C handle for one connection's sans-IO state machine, plus non-blocking fd helpers and the
//! connection's timers.
//!
//! Trust boundary: bytes from a socket enter `Conn` here; fds are borrowed from the caller
//! for one call and never closed or kept. C cannot tell a client handle from a server one at
//! compile time, so every side-specific call checks the side and answers `NP_BAD_STATE` for
//! the wrong one, leaving the connection untouched.
//!
//! Time: the `_at` functions take `now_us`, microseconds on the caller's monotonic clock, and
//! `np_conn_poll_timeout` answers on that clock. The older functions without `_at` read the
//! library's own monotonic clock instead, which is the clock `np_now_us` returns: a caller
//! either passes `np_now_us()` everywhere or uses only `_at` functions with its own clock.

use std::ffi::c_char;
use std::os::fd::BorrowedFd;

use super::config::{np_client_config, np_server_config};
use super::event::{np_event, np_result_info};
use super::status::np_status::{self, *};
use super::{arg_bytes, arg_mut, arg_ref, arg_str, err, fail, guard, write_out};
use crate::conn::{ClientConn, ServerConn, TimerKind, Timestamp};
use crate::io::{self, ReadStatus};
use crate::message::ResultInfo;
use crate::opcode::ErrorCode;

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

fn new_handle(conn: AnyConn, out: *mut *mut np_conn) -> Result<np_status, np_status> {
    if out.is_null() {
        return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
    }
    let h = Box::into_raw(Box::new(np_conn { inner: conn }));
    // SAFETY: checked non-NULL; writable per the caller's contract.
    unsafe { write_out(out, h) }?;
    Ok(NP_OK)
}

/// A server-side connection awaiting the client's HELLO.
///
/// # Safety
/// `cfg` a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_server(
    cfg: *const np_server_config,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let cfg = unsafe { arg_ref(cfg) }?;
        let conn = ServerConn::new(cfg.inner.clone(), io::random32(), io::monotonic_now());
        new_handle(AnyConn::Server(conn), out)
    })
}

/// A client-side connection; its HELLO is already in the pending output.
///
/// # Safety
/// `cfg` a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_client(
    cfg: *const np_client_config,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let cfg = unsafe { arg_ref(cfg) }?;
        let conn = ClientConn::new(cfg.inner.clone(), io::random32(), io::monotonic_now());
        new_handle(AnyConn::Client(conn), out)
    })
}

/// Frees a connection and wipes its keys.
///
/// # Safety
/// `conn` NULL or a handle from `np_conn_new_*`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn np_conn_free(conn: *mut np_conn) {
    super::guard_or((), || {
        if !conn.is_null() {
            // SAFETY: created by Box::into_raw, freed once per the contract.
            drop(unsafe { Box::from_raw(conn) });
        }
    })
}

/// Appends received bytes; `consumed` gets how many were taken (fewer if the input buffer is
/// full: poll events, then feed the rest).
///
/// # Safety
/// `conn` live; `data` valid for `len` bytes; `consumed` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_feed(
    conn: *mut np_conn,
    data: *const u8,
    len: usize,
    consumed: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        // SAFETY: forwarded caller contract.
        let d = unsafe { arg_bytes(data, len) }?;
        if consumed.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL consumed pointer"));
        }
        let n = either!(&mut c.inner, c => c.feed(d, io::monotonic_now()));
        // SAFETY: checked non-NULL above.
        unsafe { write_out(consumed, n) }?;
        Ok(NP_OK)
    })
}

/// One `read(2)` from a non-blocking `fd` into the connection. NP_OK with `nread` > 0,
/// NP_WOULD_BLOCK, NP_INPUT_FULL (poll events first), NP_EOF, or NP_IO.
///
/// # Safety
/// `conn` live; `fd` an open descriptor for the duration of the call; `nread` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_read_fd(
    conn: *mut np_conn,
    fd: i32,
    nread: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: the caller keeps `fd` open for this call; we only borrow it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut src = FdIo(fd);
        let now = io::monotonic_now();
        let read = either!(&mut c.inner, c => io::read_into(c, &mut src, now));
        let (status, n) = match read.map_err(err)? {
            ReadStatus::Data(n) => (NP_OK, n),
            ReadStatus::WouldBlock => (NP_WOULD_BLOCK, 0),
            ReadStatus::Full => (NP_INPUT_FULL, 0),
            ReadStatus::Eof => (NP_EOF, 0),
        };
        if status == NP_OK && !nread.is_null() {
            // SAFETY: non-NULL, and the contract makes a non-NULL `nread` writable.
            unsafe { *nread = n };
        }
        Ok(status)
    })
}

/// Writes pending output to a non-blocking `fd` until it is all written or the socket is
/// full; `pending` (optional) gets the bytes still waiting (wait for writability if > 0).
///
/// # Safety
/// `conn` live; `fd` open for the call; `pending` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_write_fd(
    conn: *mut np_conn,
    fd: i32,
    pending: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: the caller keeps `fd` open for this call; we only borrow it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let now = io::monotonic_now();
        let left =
            either!(&mut c.inner, c => io::write_from(c, &mut FdIo(fd), now)).map_err(err)?;
        if !pending.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { *pending = left };
        }
        Ok(NP_OK)
    })
}

/// Reads and writes a borrowed fd with plain `read(2)`/`write(2)` (MSG_NOSIGNAL for sockets
/// would need `send`; a closed peer shows up as EPIPE, and the binaries ignore SIGPIPE).
struct FdIo<'a>(BorrowedFd<'a>);

impl std::io::Read for FdIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is valid for `buf.len()` writable bytes; the fd is open (borrowed).
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
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open (borrowed). MSG_NOSIGNAL
        // turns a vanished peer into EPIPE instead of a process-killing SIGPIPE; on a non-socket
        // fd `send` fails with ENOTSOCK and we fall back to `write`.
        let mut n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: as above.
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
/// `conn` live; `data` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_pending_output(
    conn: *const np_conn,
    data: *mut *const u8,
    len: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_ref(conn) }?;
        if data.is_null() || len.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let out = either!(&c.inner, c => c.pending_output());
        // SAFETY: both checked non-NULL; writable per the contract.
        unsafe {
            *data = out.as_ptr();
            *len = out.len();
        }
        Ok(NP_OK)
    })
}

/// Marks `n` bytes of the pending output as sent.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_consume_output(conn: *mut np_conn, n: usize) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        either!(&mut c.inner, c => c.consume_output(n, io::monotonic_now()));
        Ok(NP_OK)
    })
}

/// Next event: NP_OK and `*event` filled, NP_NO_EVENT (need input), or the fatal error that
/// closed the connection (flush the pending output, which may hold an ERROR for the peer,
/// then close). Pointers in the event live until the next call on `conn`.
///
/// # Safety
/// `conn` live; `event` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_poll_event(conn: *mut np_conn, event: *mut np_event) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        if event.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL event pointer"));
        }
        match either!(&mut c.inner, c => c.poll_event()).map_err(err)? {
            None => Ok(NP_NO_EVENT),
            Some(e) => {
                let ev = np_event::from_event(&e);
                // SAFETY: checked non-NULL; writable per the contract.
                unsafe { write_out(event, ev) }?;
                Ok(NP_OK)
            }
        }
    })
}

/// Client only (a server handle gets NP_BAD_STATE): accepts (true) or refuses (false) the server key from NP_EVENT_SERVER_KEY. Check
/// it against your pinning table first; login starts only after acceptance.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_trust_server_key(conn: *mut np_conn, accept: bool) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .client()?
            .trust_server_key(accept)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Frees the connection's buffer memory while nothing is buffered; call it on connections that
/// have gone idle after large transfers. A server connection driven by
/// `np_conn_handle_timeout` does this by itself after a quiet second.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_shrink(conn: *mut np_conn) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        either!(&mut c.inner, c => c.shrink_buffers());
        Ok(NP_OK)
    })
}

/// Whether the connection is logged in and can carry requests.
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_ready(conn: *const np_conn) -> bool {
    // SAFETY: forwarded caller contract.
    super::guard_or(false, || {
        unsafe { conn.as_ref() }.is_some_and(|c| either!(&c.inner, c => c.is_ready()))
    })
}

/// Whether the connection is finished (flush pending output, then close the socket).
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_closed(conn: *const np_conn) -> bool {
    // SAFETY: forwarded caller contract.
    super::guard_or(true, || {
        unsafe { conn.as_ref() }.is_none_or(|c| either!(&c.inner, c => c.is_closed()))
    })
}

/// Client only (a server handle gets NP_BAD_STATE): starts job `id` with op spec `spec`, declared input length `total_len`, and the
/// first chunk (≤ 64 KiB); `last` if that chunk completes the input.
///
/// # Safety
/// `conn` live; `spec` NUL-terminated; `data` valid for `len` bytes.
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
        // SAFETY: forwarded caller contract (each argument as documented).
        let (c, spec, d) = unsafe { (arg_mut(conn)?, arg_str(spec)?, arg_bytes(data, len)?) };
        c.client()?
            .send_job(id, spec, total_len, d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client only (a server handle gets NP_BAD_STATE): more input for job `id`.
///
/// # Safety
/// `conn` live; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_job_data(
    conn: *mut np_conn,
    id: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let (c, d) = unsafe { (arg_mut(conn)?, arg_bytes(data, len)?) };
        c.client()?.send_job_data(id, d, last).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): starts the result of job `id`; `data` is the first chunk.
///
/// # Safety
/// `conn` live; `info` valid; `data` valid for `len` bytes.
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
        // SAFETY: forwarded caller contract.
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
/// `conn` live; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_result_data(
    conn: *mut np_conn,
    id: u64,
    data: *const u8,
    len: usize,
    last: bool,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let (c, d) = unsafe { (arg_mut(conn)?, arg_bytes(data, len)?) };
        c.server()?.send_result_data(id, d, last).map_err(err)?;
        Ok(NP_OK)
    })
}

fn error_code(code: u16) -> Result<ErrorCode, np_status> {
    ErrorCode::from_u16(code)
        .filter(|c| !c.is_reserved())
        .ok_or_else(|| fail(NP_INVALID_ARGUMENT, "unknown or reserved error code"))
}

/// Sends an ERROR with `code` (a protocol error code) for request `id` (0: the connection).
/// Allowed before the handshake too, e.g. to refuse a connection.
///
/// # Safety
/// `conn` live; `text` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_error(
    conn: *mut np_conn,
    id: u64,
    code: u16,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        let code = error_code(code)?;
        either!(&mut c.inner, c => c.send_error(id, code, t)).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): refuses request `id` with an ERROR and silently drops the rest of its upload.
///
/// # Safety
/// `conn` live; `text` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_conn_reject_request(
    conn: *mut np_conn,
    id: u64,
    code: u16,
    text: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let (c, t) = unsafe { (arg_mut(conn)?, arg_str(text)?) };
        c.server()?
            .reject_request(id, error_code(code)?, t)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): refuses request `id` for load with BUSY and a retry-after delay.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_busy(
    conn: *mut np_conn,
    id: u64,
    retry_after_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .server()?
            .send_busy(id, retry_after_ms)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): tells the client the server is stopping within `grace_ms`.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_shutdown(conn: *mut np_conn, grace_ms: u32) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .server()?
            .send_shutdown(grace_ms)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server only (a client handle gets NP_BAD_STATE): answers a stats request with `n` name/value pairs.
///
/// # Safety
/// `conn` live; `names` and `values` valid for `n` elements; each name NUL-terminated ASCII.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_stats(
    conn: *mut np_conn,
    id: u64,
    names: *const *const c_char,
    values: *const u64,
    n: usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        if n > 0 && (names.is_null() || values.is_null()) {
            return Err(fail(NP_NULL_ARGUMENT, "NULL names or values"));
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `names` and `values` hold `n` elements per the contract.
            let (name, value) = unsafe { (arg_str(*names.add(i))?, *values.add(i)) };
            entries.push((name, value));
        }
        c.server()?.send_stats(id, &entries).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client only (a server handle gets NP_BAD_STATE): asks for the server's counters.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_stats_request(conn: *mut np_conn, id: u64) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .client()?
            .send_stats_request(id)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Either side: PING with a payload of at most 256 bytes; the peer echoes it in PONG.
///
/// # Safety
/// `conn` live; `payload` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_ping(
    conn: *mut np_conn,
    id: u64,
    payload: *const u8,
    len: usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let (c, p) = unsafe { (arg_mut(conn)?, arg_bytes(payload, len)?) };
        either!(&mut c.inner, c => c.send_ping(id, p)).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Either side: orderly close; afterwards only flush the pending output.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_bye(conn: *mut np_conn) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_mut(conn) }?;
        either!(&mut c.inner, c => c.send_bye()).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Reads the next name/value pair from a STATS event's `data`, starting at `*offset` (0 for
/// the first) and advancing it. NP_NO_EVENT after the last pair. `name` gets NUL-terminated
/// text.
///
/// # Safety
/// `body` valid for `len` bytes; `offset` readable and writable; `name` valid for `cap` bytes;
/// `value` writable.
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
        // SAFETY: `body` is readable for `len` bytes and `offset` valid per the contract;
        // arg_bytes/arg_mut reject NULL.
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
        // SAFETY: `name` is valid for `cap` bytes per the contract (write_text checks NULL and
        // the size before writing anything); `value` was checked non-NULL above.
        unsafe {
            super::write_text(text, name, cap, std::ptr::null_mut())?;
            write_out(value, v)?;
        }
        *off = pos + 1 + n + 8;
        Ok(NP_OK)
    })
}

/// Copies the user name of a logged-in server connection (NUL-terminated) into `out`
/// (NP_BAD_STATE on a client connection).
///
/// # Safety
/// `conn` live; `out` valid for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_user(
    conn: *const np_conn,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let c = unsafe { arg_ref(conn) }?;
        // SAFETY: forwarded caller contract.
        let user = match &c.inner {
            AnyConn::Server(s) => s.user(),
            AnyConn::Client(_) => {
                return Err(fail(
                    NP_BAD_STATE,
                    "a server-only call on a client connection",
                ))
            }
        };
        // SAFETY: forwarded caller contract.
        unsafe { super::write_text(user, out, cap, len) }?;
        Ok(NP_OK)
    })
}

// ----- time: the connection's timers (new functions stay at the end of this file) -----

pub use super::wire::np_timer;

impl From<Option<TimerKind>> for np_timer {
    fn from(k: Option<TimerKind>) -> Self {
        match k {
            None => np_timer::NP_TIMER_NONE,
            Some(TimerKind::Handshake) => np_timer::NP_TIMER_HANDSHAKE,
            Some(TimerKind::Idle) => np_timer::NP_TIMER_IDLE,
            Some(TimerKind::SlowPeer) => np_timer::NP_TIMER_SLOW_PEER,
            Some(TimerKind::Heartbeat) => np_timer::NP_TIMER_HEARTBEAT,
            Some(TimerKind::DeadPeer) => np_timer::NP_TIMER_DEAD_PEER,
        }
    }
}

/// The library's monotonic clock in microseconds: the clock the functions without `_at` use.
/// Pass it as `now_us` to mix both kinds of call.
#[no_mangle]
pub extern "C" fn np_now_us() -> u64 {
    super::guard_or(0, || io::monotonic_now().as_micros())
}

/// A server-side connection accepted at `now_us`, awaiting the client's HELLO; its handshake
/// timeout runs from `now_us`.
///
/// # Safety
/// `cfg` a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_server_at(
    cfg: *const np_server_config,
    now_us: u64,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is a live handle per the contract; we only clone its Arc.
        let cfg = unsafe { arg_ref(cfg) }?;
        let now = Timestamp::from_micros(now_us);
        new_handle(
            AnyConn::Server(ServerConn::new(cfg.inner.clone(), io::random32(), now)),
            out,
        )
    })
}

/// A client-side connection created at `now_us`; its HELLO is already in the pending output.
///
/// # Safety
/// `cfg` a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_new_client_at(
    cfg: *const np_client_config,
    now_us: u64,
    out: *mut *mut np_conn,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is a live handle per the contract; we only clone its Arc.
        let cfg = unsafe { arg_ref(cfg) }?;
        let now = Timestamp::from_micros(now_us);
        new_handle(
            AnyConn::Client(ClientConn::new(cfg.inner.clone(), io::random32(), now)),
            out,
        )
    })
}

/// `np_conn_feed` for bytes received at `now_us`.
///
/// # Safety
/// `conn` live; `data` valid for `len` bytes; `consumed` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_feed_at(
    conn: *mut np_conn,
    data: *const u8,
    len: usize,
    now_us: u64,
    consumed: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live and used by this thread only, per the contract.
        let c = unsafe { arg_mut(conn) }?;
        // SAFETY: `data` is valid for `len` readable bytes per the contract (NULL only with 0).
        let d = unsafe { arg_bytes(data, len) }?;
        if consumed.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL consumed pointer"));
        }
        let now = Timestamp::from_micros(now_us);
        let n = either!(&mut c.inner, c => c.feed(d, now));
        // SAFETY: checked non-NULL above; writable per the contract.
        unsafe { write_out(consumed, n) }?;
        Ok(NP_OK)
    })
}

/// `np_conn_read_fd` at `now_us`.
///
/// # Safety
/// `conn` live; `fd` an open descriptor for the duration of the call; `nread` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_read_fd_at(
    conn: *mut np_conn,
    fd: i32,
    now_us: u64,
    nread: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live and used by this thread only, per the contract.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: the caller keeps `fd` open for this call; it is only borrowed, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut src = FdIo(fd);
        let now = Timestamp::from_micros(now_us);
        let read = either!(&mut c.inner, c => io::read_into(c, &mut src, now));
        let (status, n) = match read.map_err(err)? {
            ReadStatus::Data(n) => (NP_OK, n),
            ReadStatus::WouldBlock => (NP_WOULD_BLOCK, 0),
            ReadStatus::Full => (NP_INPUT_FULL, 0),
            ReadStatus::Eof => (NP_EOF, 0),
        };
        if !nread.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { *nread = n };
        }
        Ok(status)
    })
}

/// `np_conn_write_fd` at `now_us` (bytes taken by the socket are progress for the slow-peer
/// timer).
///
/// # Safety
/// `conn` live; `fd` open for the call; `pending` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_write_fd_at(
    conn: *mut np_conn,
    fd: i32,
    now_us: u64,
    pending: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live and used by this thread only, per the contract.
        let c = unsafe { arg_mut(conn) }?;
        if fd < 0 {
            return Err(fail(NP_INVALID_ARGUMENT, "negative fd"));
        }
        // SAFETY: the caller keeps `fd` open for this call; it is only borrowed, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let now = Timestamp::from_micros(now_us);
        let left =
            either!(&mut c.inner, c => io::write_from(c, &mut FdIo(fd), now)).map_err(err)?;
        if !pending.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { *pending = left };
        }
        Ok(NP_OK)
    })
}

/// `np_conn_consume_output` for bytes written at `now_us`.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_consume_output_at(
    conn: *mut np_conn,
    n: usize,
    now_us: u64,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live and used by this thread only, per the contract.
        let c = unsafe { arg_mut(conn) }?;
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
/// `conn` live; `deadline_us` writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_poll_timeout(
    conn: *const np_conn,
    deadline_us: *mut u64,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live per the contract; only read here.
        let c = unsafe { arg_ref(conn) }?;
        if deadline_us.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL deadline pointer"));
        }
        match either!(&c.inner, c => c.poll_timeout()) {
            None => Ok(NP_NO_EVENT),
            Some(t) => {
                // SAFETY: checked non-NULL; writable per the contract.
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
/// `conn` live; `fired` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_conn_handle_timeout(
    conn: *mut np_conn,
    now_us: u64,
    fired: *mut np_timer,
) -> np_status {
    guard(|| {
        // SAFETY: `conn` is live and used by this thread only, per the contract.
        let c = unsafe { arg_mut(conn) }?;
        let now = Timestamp::from_micros(now_us);
        let kind = either!(&mut c.inner, c => c.handle_timeout(now));
        if !fired.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { *fired = np_timer::from(kind) };
        }
        Ok(NP_OK)
    })
}

/// Whether `conn` is a server-side connection (false for a client one or NULL).
///
/// # Safety
/// `conn` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_is_server(conn: *const np_conn) -> bool {
    super::guard_or(false, || {
        // SAFETY: NULL or live per the contract; only read here.
        unsafe { conn.as_ref() }.is_some_and(|c| matches!(c.inner, AnyConn::Server(_)))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conn::{ClientConfig, ServerConfig};
    use crate::keys::ServerKey;
    use crate::message::ServerParams;

    const PARAMS: ServerParams = ServerParams {
        max_chunk: 65536,
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
            assert_eq!(np_conn_new_server_at(&scfg, 0, &mut s), NP_OK);
            assert_eq!(np_conn_new_client_at(&ccfg, 0, &mut c), NP_OK);
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
            ];
            assert_eq!(client_only, [NP_BAD_STATE; 4]);
            assert_eq!(server_only, [NP_BAD_STATE; 7]);
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
            assert_eq!(np_conn_new_server_at(&scfg, t0, &mut s), NP_OK);
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
                np_conn_consume_output_at(s, pending(s), t0 + 10_000_001),
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
}
