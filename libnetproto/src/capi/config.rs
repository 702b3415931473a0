//! C handles for shared configuration: client credentials and server identity/users.
//!
//! Trust boundary: secrets (password, server key) enter the library here and never leave it.

use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

use super::status::np_status::{self, *};
use super::{arg_bytes, arg_mut, arg_ref, arg_str, err, fail, guard, write_out};
use crate::conn::{ClientConfig, ServerConfig};
use crate::login::Verifier;
use crate::message::ServerParams;

/// Client credentials (user name and password), shareable by many connections and threads.
pub struct np_client_config {
    pub(crate) inner: Arc<ClientConfig>,
}

/// Server identity key, users and announced limits. Add users before creating connections.
pub struct np_server_config {
    pub(crate) inner: Arc<ServerConfig>,
}

/// Limits a server announces to its clients in the handshake.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct np_server_params {
    /// Largest image-data bytes per JOB/RESULT frame (1..=NP_MAX_CHUNK_DATA).
    pub max_chunk: u32,
    /// Largest declared job input length.
    pub max_upload: u64,
    /// Most jobs one connection may have in flight.
    pub max_in_flight: u32,
}

/// Creates client credentials. The password is copied and wiped when the config is freed.
///
/// # Safety
/// `user` NUL-terminated; `password` valid for `password_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn np_client_config_new(
    user: *const c_char,
    password: *const u8,
    password_len: usize,
    out: *mut *mut np_client_config,
) -> np_status {
    guard(|| {
        // SAFETY: the contract makes a non-NULL `user` NUL-terminated; arg_str rejects NULL.
        let user = unsafe { arg_str(user) }?;
        // SAFETY: `password` is readable for `password_len` bytes per the contract; arg_bytes
        // rejects NULL with a non-zero length.
        let pw = unsafe { arg_bytes(password, password_len) }?;
        if out.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        let cfg = ClientConfig::new(user, pw).map_err(err)?;
        let h = Box::into_raw(Box::new(np_client_config {
            inner: Arc::new(cfg),
        }));
        // SAFETY: `out` was checked non-NULL above and is writable per the contract.
        unsafe { write_out(out, h) }?;
        Ok(NP_OK)
    })
}

/// Frees client credentials (connections made from them keep their own reference).
///
/// # Safety
/// `cfg` NULL or a handle from `np_client_config_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn np_client_config_free(cfg: *mut np_client_config) {
    super::guard_or((), || {
        if !cfg.is_null() {
            // SAFETY: a non-NULL `cfg` came from Box::into_raw in np_client_config_new and the
            // contract says it is not used again, so it is freed exactly once.
            drop(unsafe { Box::from_raw(cfg) });
        }
    })
}

/// Loads the server key at `key_path` (created with mode 0600 if absent) and makes a server
/// config. `created` (optional) is set to whether the key was just created; `public_key`
/// (optional, 32 bytes) receives the public key.
///
/// # Safety
/// `key_path` NUL-terminated; `params` valid; `out` writable; `created` and `public_key` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_new(
    key_path: *const c_char,
    params: *const np_server_params,
    out: *mut *mut np_server_config,
    created: *mut bool,
    public_key: *mut u8,
) -> np_status {
    guard(|| {
        // SAFETY: the contract makes a non-NULL `key_path` NUL-terminated; arg_str rejects NULL.
        let path = unsafe { arg_str(key_path) }?;
        // SAFETY: a non-NULL `params` points to a valid np_server_params (plain integers, any
        // bit pattern is valid); arg_ref rejects NULL.
        let p = unsafe { arg_ref(params) }?;
        if out.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        if p.max_chunk == 0
            || p.max_chunk as usize > crate::limits::MAX_CHUNK_DATA
            || p.max_in_flight == 0
        {
            let msg = format!(
                "max_chunk must be 1..={} and max_in_flight > 0",
                crate::limits::MAX_CHUNK_DATA
            );
            return Err(fail(NP_INVALID_ARGUMENT, &msg));
        }
        let (key, was_created) =
            crate::io::load_or_create_server_key(Path::new(path)).map_err(err)?;
        let params = ServerParams {
            max_chunk: p.max_chunk,
            max_upload: p.max_upload,
            max_in_flight: p.max_in_flight,
        };
        let cfg = ServerConfig::new(key, params);
        let public = *cfg.public_key();
        let h = Box::into_raw(Box::new(np_server_config {
            inner: Arc::new(cfg),
        }));
        // SAFETY: `created` and `public_key` are written only if non-NULL, and the contract
        // makes them writable (`public_key` for 32 bytes); `out` was checked non-NULL above.
        unsafe {
            if !created.is_null() {
                *created = was_created;
            }
            if !public_key.is_null() {
                std::ptr::copy_nonoverlapping(public.as_ptr(), public_key, 32);
            }
            write_out(out, h)?;
        }
        Ok(NP_OK)
    })
}

/// Adds (or replaces) a user with a verifier from `np_verifier_create`. Only before the
/// config is shared by a connection: afterwards NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle; `user` and `verifier` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_add_user(
    cfg: *mut np_server_config,
    user: *const c_char,
    verifier: *const c_char,
) -> np_status {
    guard(|| {
        // SAFETY: a non-NULL `cfg` is a live handle not shared with another thread during this
        // call (the contract), so the &mut is unique; arg_mut rejects NULL.
        let cfg = unsafe { arg_mut(cfg) }?;
        // SAFETY: the contract makes a non-NULL `user` NUL-terminated; arg_str rejects NULL.
        let user = unsafe { arg_str(user) }?;
        // SAFETY: the contract makes a non-NULL `verifier` NUL-terminated; arg_str rejects NULL.
        let v = Verifier::parse(unsafe { arg_str(verifier) }?).map_err(err)?;
        let inner = Arc::get_mut(&mut cfg.inner)
            .ok_or_else(|| fail(NP_BAD_STATE, "server config already in use by connections"))?;
        inner.add_user(user, v).map_err(err)?;
        Ok(NP_OK)
    })
}

/// Frees a server config (live connections keep their own reference).
///
/// # Safety
/// `cfg` NULL or a handle from `np_server_config_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_free(cfg: *mut np_server_config) {
    super::guard_or((), || {
        if !cfg.is_null() {
            // SAFETY: a non-NULL `cfg` came from Box::into_raw in np_server_config_new and the
            // contract says it is not used again, so it is freed exactly once.
            drop(unsafe { Box::from_raw(cfg) });
        }
    })
}

// ----- timer settings (new functions stay at the end of this file) -----

/// The server config behind `cfg`, for a setter: only while no connection shares it
/// (NP_BAD_STATE after), NULL answered with NP_NULL_ARGUMENT.
///
/// # Safety
/// `cfg` is NULL or a live handle from np_server_config_new that no other thread uses while
/// the returned reference lives.
unsafe fn unshared_server<'a>(
    cfg: *mut np_server_config,
) -> Result<&'a mut ServerConfig, np_status> {
    // SAFETY: the caller's contract makes the &mut unique; arg_mut rejects NULL. Connections
    // hold their own Arc, not this box, so they do not alias it either.
    let cfg = unsafe { arg_mut(cfg) }?;
    Arc::get_mut(&mut cfg.inner)
        .ok_or_else(|| fail(NP_BAD_STATE, "server config already in use by connections"))
}

/// [`unshared_server`] for a client config.
///
/// # Safety
/// As for [`unshared_server`], with a handle from np_client_config_new.
unsafe fn unshared_client<'a>(
    cfg: *mut np_client_config,
) -> Result<&'a mut ClientConfig, np_status> {
    // SAFETY: as in unshared_server.
    let cfg = unsafe { arg_mut(cfg) }?;
    Arc::get_mut(&mut cfg.inner)
        .ok_or_else(|| fail(NP_BAD_STATE, "client config already in use by connections"))
}

/// `None` for 0 ("off"), else the duration in milliseconds.
fn ms_or_off(ms: u32) -> Option<std::time::Duration> {
    (ms != 0).then(|| std::time::Duration::from_millis(ms as u64))
}

/// Sets the server connections' handshake+login, idle and slow-peer timeouts in
/// milliseconds (0 turns one off; the defaults are 10 000, 120 000 and 30 000). Only before
/// the config is shared by a connection: afterwards NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_set_timeouts(
    cfg: *mut np_server_config,
    handshake_ms: u32,
    idle_ms: u32,
    slow_peer_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is NULL or a live handle no other thread uses during this call (the
        // contract), which is what `unshared_server` needs.
        let inner = unsafe { unshared_server(cfg) }?;
        let mut t = inner.timeouts();
        t.handshake = ms_or_off(handshake_ms);
        t.idle = ms_or_off(idle_ms);
        t.slow_peer = ms_or_off(slow_peer_ms);
        inner.set_timeouts(t);
        Ok(NP_OK)
    })
}

/// Sets how long, after login, a frame may take from its first byte to its last, in
/// milliseconds (0 turns it off; the default is 10 000). Only before the config is shared by a
/// connection: afterwards NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_set_frame_timeout(
    cfg: *mut np_server_config,
    frame_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is NULL or a live handle no other thread uses during this call (the
        // contract), which is what `unshared_server` needs.
        let inner = unsafe { unshared_server(cfg) }?;
        let mut t = inner.timeouts();
        t.frame = ms_or_off(frame_ms);
        inner.set_timeouts(t);
        Ok(NP_OK)
    })
}

/// Sets the client connections' heartbeat interval (a PING after this long without a frame
/// from the server) and dead-peer timeout in milliseconds (0 turns one off; the defaults are
/// 5 000 and 20 000). Only before the config is shared by a connection: afterwards
/// NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle.
#[no_mangle]
pub unsafe extern "C" fn np_client_config_set_timers(
    cfg: *mut np_client_config,
    heartbeat_ms: u32,
    dead_after_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is NULL or a live handle no other thread uses during this call (the
        // contract), which is what `unshared_client` needs.
        let inner = unsafe { unshared_client(cfg) }?;
        inner.set_timers(crate::conn::ClientTimers {
            heartbeat: ms_or_off(heartbeat_ms),
            dead_after: ms_or_off(dead_after_ms),
        });
        Ok(NP_OK)
    })
}

/// Sets the HELLO timeout of server connections in milliseconds: a connection whose HELLO
/// has not arrived this long after its creation gets ERROR HANDSHAKE_TIMEOUT and is closed,
/// as with the handshake timeout (0, the default, turns it off). Only before the config is
/// shared by a connection: afterwards NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_set_hello_timeout(
    cfg: *mut np_server_config,
    hello_ms: u32,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is NULL or a live handle no other thread uses during this call (the
        // contract), which is what `unshared_server` needs.
        let inner = unsafe { unshared_server(cfg) }?;
        let mut t = inner.timeouts();
        t.hello = ms_or_off(hello_ms);
        inner.set_timeouts(t);
        Ok(NP_OK)
    })
}

/// Limits each server connection's cheap requests (PING, STATS_REQUEST) to a token bucket of
/// `burst` refilled at `per_second`; one over it is answered ERROR RATE_LIMITED with a
/// retry-after (an over-rate PING with request id 0 gets no answer). 0 for either turns the
/// limit off (the default). Only before the config is shared by a connection: afterwards
/// NP_BAD_STATE.
///
/// # Safety
/// `cfg` a live handle.
#[no_mangle]
pub unsafe extern "C" fn np_server_config_set_request_rate(
    cfg: *mut np_server_config,
    per_second: u32,
    burst: u32,
) -> np_status {
    guard(|| {
        // SAFETY: `cfg` is NULL or a live handle no other thread uses during this call (the
        // contract), which is what `unshared_server` needs.
        let inner = unsafe { unshared_server(cfg) }?;
        inner.set_request_rate(Some(crate::conn::RequestRate { per_second, burst }));
        Ok(NP_OK)
    })
}
