//! C handle for a blocking client session: connect, handshake, pin check and login in one
//! call, then requests and events with timeouts.
//!
//! Trust boundary: the server's key is checked against the caller's known-servers file before
//! any login proof is sent.

use std::ffi::c_char;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::config::np_client_config;
use super::event::np_event;
use super::status::np_status::{self, *};
use super::{arg_mut, arg_ref, arg_str, err, fail, guard, write_out};
use crate::io::{Client, Pinning};
use crate::keys::Trust;

/// A connected, logged-in client session over TCP. One thread at a time.
pub struct np_client {
    inner: Client,
}

/// Connects to `addr` ("host:port"), runs the handshake, checks the server key against the
/// known-servers file `known_servers` (a changed key is refused before the login; a new one
/// is pinned on first use, written only after the login succeeded, so a failed first login
/// pins nothing; NULL accepts any key, for tests only), logs in, all within `timeout_ms`.
/// `new_server` (optional) is set to whether the key was pinned just now.
///
/// # Safety
/// `addr` NUL-terminated; `cfg` live; `known_servers` NULL or NUL-terminated; `out` writable;
/// `new_server` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_client_connect(
    addr: *const c_char,
    cfg: *const np_client_config,
    known_servers: *const c_char,
    timeout_ms: u32,
    out: *mut *mut np_client,
    new_server: *mut bool,
) -> np_status {
    guard(|| {
        // SAFETY: per the contract `addr` is NUL-terminated and a non-NULL `cfg` is a live
        // np_client_config; arg_str/arg_ref reject NULL.
        let (addr, cfg) = unsafe { (arg_str(addr)?, arg_ref(cfg)?) };
        let path = if known_servers.is_null() {
            None
        } else {
            // SAFETY: `known_servers` is non-NULL here and NUL-terminated per the contract.
            Some(unsafe { arg_str(known_servers) }?)
        };
        if out.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let pinning = path.map_or(Pinning::AcceptAny, |p| Pinning::File(Path::new(p)));
        let timeout = Duration::from_millis(timeout_ms.max(1) as u64);
        let client = Client::connect(addr, cfg.inner.clone(), pinning, timeout).map_err(err)?;
        let is_new = *client.trust() == Trust::New;
        let h = Box::into_raw(Box::new(np_client { inner: client }));
        // SAFETY: `new_server` is written only if non-NULL (the contract makes it writable);
        // `out` was checked non-NULL above and is writable per the contract.
        unsafe {
            if !new_server.is_null() {
                *new_server = is_new;
            }
            write_out(out, h)?;
        }
        Ok(NP_OK)
    })
}

/// Sends a job's first chunk on a client session (see `np_conn_send_job`) and flushes it
/// within `timeout_ms`.
///
/// # Safety
/// As `np_conn_send_job`; `client` live.
#[no_mangle]
pub unsafe extern "C" fn np_client_send_job(
    client: *mut np_client,
    id: u64,
    spec: *const c_char,
    total_len: u64,
    data: *const u8,
    len: usize,
    last: bool,
    timeout_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle used by one thread (the contract), so
        // the &mut is unique; `spec` is NUL-terminated and `data` readable for `len` bytes.
        let (c, spec, d) = unsafe {
            (
                arg_mut(client)?,
                arg_str(spec)?,
                super::arg_bytes(data, len)?,
            )
        };
        c.inner
            .conn()
            .send_job(id, spec, total_len, d, last)
            .map_err(err)?;
        flush(c, timeout_ms)
    })
}

/// Sends a multi-output job's first chunk on a client session (see `np_conn_send_job_multi`)
/// and flushes it within `timeout_ms`.
///
/// # Safety
/// As `np_conn_send_job_multi`; `client` live.
#[no_mangle]
pub unsafe extern "C" fn np_client_send_job_multi(
    client: *mut np_client,
    id: u64,
    variants: *const c_char,
    total_len: u64,
    data: *const u8,
    len: usize,
    last: bool,
    timeout_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle used by one thread (the contract), so
        // the &mut is unique; `variants` is NUL-terminated and `data` readable for `len` bytes.
        let (c, v, d) = unsafe {
            (
                arg_mut(client)?,
                arg_str(variants)?,
                super::arg_bytes(data, len)?,
            )
        };
        c.inner
            .conn()
            .send_job_multi(id, v, total_len, d, last)
            .map_err(err)?;
        flush(c, timeout_ms)
    })
}

/// Sends more job input on a client session and flushes it within `timeout_ms`.
///
/// # Safety
/// As `np_conn_send_job_data`; `client` live.
#[no_mangle]
pub unsafe extern "C" fn np_client_send_job_data(
    client: *mut np_client,
    id: u64,
    data: *const u8,
    len: usize,
    last: bool,
    timeout_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle used by one thread, so the &mut is
        // unique; `data` is readable for `len` bytes (the contract). NULLs are rejected.
        let (c, d) = unsafe { (arg_mut(client)?, super::arg_bytes(data, len)?) };
        c.inner.conn().send_job_data(id, d, last).map_err(err)?;
        flush(c, timeout_ms)
    })
}

/// Sends PING (payload ≤ NP_MAX_PING_PAYLOAD bytes) and flushes it within `timeout_ms`.
///
/// # Safety
/// `client` live; `payload` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn np_client_send_ping(
    client: *mut np_client,
    id: u64,
    payload: *const u8,
    len: usize,
    timeout_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle from np_client_connect used by one
        // thread at a time (the contract), so this &mut is the only reference; arg_mut
        // rejects NULL.
        let c = unsafe { arg_mut(client) }?;
        // SAFETY: `payload` is readable for `len` bytes per the contract; NULL with len > 0 is
        // rejected.
        let p = unsafe { super::arg_bytes(payload, len) }?;
        c.inner.conn().send_ping(id, p).map_err(err)?;
        flush(c, timeout_ms)
    })
}

/// Asks for the server's counters and flushes the request.
///
/// # Safety
/// `client` live.
#[no_mangle]
pub unsafe extern "C" fn np_client_send_stats_request(
    client: *mut np_client,
    id: u64,
    timeout_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle from np_client_connect used by one
        // thread at a time (the contract), so this &mut is the only reference; arg_mut
        // rejects NULL.
        let c = unsafe { arg_mut(client) }?;
        c.inner.conn().send_stats_request(id).map_err(err)?;
        flush(c, timeout_ms)
    })
}

fn flush(c: &mut np_client, timeout_ms: u32) -> Result<np_status, np_status> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.max(1) as u64);
    c.inner.flush(deadline).map_err(err)?;
    Ok(NP_OK)
}

/// Waits up to `timeout_ms` for the next event: NP_TIMEOUT if none came in that time (the
/// session is unharmed; wait again), NP_PEER_SILENT if the connection's dead-peer timer closed
/// it (the server sent no frame for the dead-peer timeout; this and every later call on
/// `client` answer NP_PEER_SILENT: close it and connect anew). Pointers in the event live
/// until the next call on `client`.
///
/// # Safety
/// `client` live; `event` writable.
#[no_mangle]
pub unsafe extern "C" fn np_client_next_event(
    client: *mut np_client,
    timeout_ms: u32,
    event: *mut np_event,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle from np_client_connect used by one
        // thread at a time (the contract), so this &mut is the only reference; arg_mut
        // rejects NULL.
        let c = unsafe { arg_mut(client) }?;
        if event.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL event pointer"));
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        let ev = c.inner.next_event_until(deadline).map_err(err)?;
        let out = np_event::from_event(&ev);
        // SAFETY: `event` was checked non-NULL above and is writable per the contract.
        unsafe { write_out(event, out) }?;
        Ok(NP_OK)
    })
}

/// Copies the server's static public key into `out` (32 bytes).
///
/// # Safety
/// `client` live; `out` valid for 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn np_client_server_key(client: *const np_client, out: *mut u8) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `client` is a live handle from np_client_connect with no writer
        // during this call (one thread at a time); arg_ref rejects NULL.
        let c = unsafe { arg_ref(client) }?;
        // SAFETY: the contract makes `out` valid for 32 writable bytes, the size of `[u8; 32]`
        // (alignment 1); write_out rejects NULL.
        unsafe { write_out(out.cast::<[u8; 32]>(), *c.inner.server_key()) }?;
        Ok(NP_OK)
    })
}

/// The socket's file descriptor (owned by the client: do not close it), for poll(2).
///
/// # Safety
/// `client` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn np_client_fd(client: *const np_client) -> i32 {
    super::guard_or(-1, || {
        // SAFETY: `as_ref` maps NULL to None; a non-NULL `client` is a live handle from
        // np_client_connect with no writer during this call (one thread at a time).
        unsafe { client.as_ref() }.map_or(-1, |c| c.inner.stream().as_raw_fd())
    })
}

/// Sends BYE (best effort), closes the socket and frees the client.
///
/// # Safety
/// `client` NULL or a handle from `np_client_connect`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn np_client_close(client: *mut np_client) {
    super::guard_or((), || {
        if !client.is_null() {
            // SAFETY: a non-NULL `client` came from Box::into_raw in np_client_connect and the
            // contract says it is not used again, so it is freed exactly once.
            let c = unsafe { Box::from_raw(client) };
            c.inner.close();
        }
    })
}
