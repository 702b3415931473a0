//! C handle for one connection's sans-IO state machine, plus non-blocking fd helpers.
//!
//! Trust boundary: bytes from a socket enter `Conn` here; fds are borrowed from the caller
//! for one call and never closed or kept.

use std::ffi::c_char;
use std::os::fd::BorrowedFd;

use super::config::{np_client_config, np_server_config};
use super::event::{np_event, np_result_info};
use super::status::np_status::{self, *};
use super::{arg_bytes, arg_mut, arg_ref, arg_str, err, fail, guard, write_out};
use crate::conn::Conn;
use crate::io::{self, ReadStatus};
use crate::message::ResultInfo;
use crate::opcode::ErrorCode;

/// One connection (client or server side). Not thread-safe: one thread at a time.
pub struct np_conn {
    pub(crate) inner: Conn,
}

fn new_handle(conn: Conn, out: *mut *mut np_conn) -> Result<np_status, np_status> {
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
        new_handle(Conn::server(cfg.inner.clone(), io::random32()), out)
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
        new_handle(Conn::client(cfg.inner.clone(), io::random32()), out)
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
        let n = c.inner.feed(d);
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
        let (status, n) = match io::read_into(&mut c.inner, &mut src).map_err(err)? {
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
        let left = io::write_from(&mut c.inner, &mut FdIo(fd)).map_err(err)?;
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
        let out = c.inner.pending_output();
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
        unsafe { arg_mut(conn) }?.inner.consume_output(n);
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
        match c.inner.poll_event().map_err(err)? {
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

/// Client: accepts (true) or refuses (false) the server key from NP_EVENT_SERVER_KEY. Check
/// it against your pinning table first; login starts only after acceptance.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_trust_server_key(conn: *mut np_conn, accept: bool) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .inner
            .trust_server_key(accept)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Frees the connection's buffer memory while nothing is buffered; call it on connections that
/// have gone idle after large transfers.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_shrink(conn: *mut np_conn) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?.inner.shrink_buffers();
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
        unsafe { conn.as_ref() }.is_some_and(|c| c.inner.is_ready())
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
        unsafe { conn.as_ref() }.is_none_or(|c| c.inner.is_closed())
    })
}

/// Client: starts job `id` with op spec `spec`, declared input length `total_len`, and the
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
        c.inner
            .send_job(id, spec, total_len, d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client: more input for job `id`.
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
        c.inner.send_job_data(id, d, last).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: starts the result of job `id`; `data` is the first chunk.
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
        c.inner
            .send_result(id, &ResultInfo::from(info), d, last)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: more result data for job `id`.
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
        c.inner.send_result_data(id, d, last).map_err(err)?;
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
        c.inner.send_error(id, error_code(code)?, t).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: refuses request `id` with an ERROR and silently drops the rest of its upload.
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
        c.inner
            .reject_request(id, error_code(code)?, t)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: refuses request `id` for load with BUSY and a retry-after delay.
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
            .inner
            .send_busy(id, retry_after_ms)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: tells the client the server is stopping within `grace_ms`.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_shutdown(conn: *mut np_conn, grace_ms: u32) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .inner
            .send_shutdown(grace_ms)
            .map_err(err)?;
        Ok(NP_OK)
    })
}

/// Server: answers a stats request with `n` name/value pairs.
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
        c.inner.send_stats(id, &entries).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Client: asks for the server's counters.
///
/// # Safety
/// `conn` live.
#[no_mangle]
pub unsafe extern "C" fn np_conn_send_stats_request(conn: *mut np_conn, id: u64) -> np_status {
    guard(|| {
        // SAFETY: forwarded caller contract.
        unsafe { arg_mut(conn) }?
            .inner
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
        c.inner.send_ping(id, p).map_err(err)?;
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
        unsafe { arg_mut(conn) }?.inner.send_bye().map_err(err)?;
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

/// Copies the user name of a logged-in server connection (NUL-terminated) into `out`.
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
        unsafe { super::write_text(c.inner.user(), out, cap, len) }?;
        Ok(NP_OK)
    })
}
