//! netproto-sys: the one Rust binding to `libnetproto.so`, used by imgserver and imgclient.
//!
//! Trust boundary: Rust code above this crate never sees a raw pointer from the library; the
//! wrappers here own the handles, check every status and copy or borrow data with lifetimes
//! that match the C contract ("valid until the next call on the handle").
//!
//! This crate must never `use` the `libnetproto` Rust crate: the binaries must link the
//! shared object, not a static copy (see build.rs).
#![allow(unsafe_code)]

pub mod ffi;

mod client;
mod config;
mod conn;
pub mod error;
mod event;
mod probe;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

pub use client::Client;
pub use config::{ClientConfig, ServerConfig, ServerParams};
pub use conn::{instant, micros, ClientConn, ReadStatus, ServerConn, Timer};
pub use error::{ErrorCode, NpError, Remote, Result};
pub use event::{Event, ResultInfo};
pub use ffi::limits;
pub use probe::{probe_parse, probe_request, Probe};

/// Runs a text-producing C function with a buffer, growing it once if needed.
pub(crate) fn text_out(
    f: impl Fn(*mut c_char, usize, *mut usize) -> ffi::np_status,
) -> Result<String> {
    let mut cap = 256;
    loop {
        let mut buf = vec![0u8; cap];
        let mut len = 0usize;
        match f(buf.as_mut_ptr().cast(), cap, &mut len) {
            ffi::NP_OK => {
                buf.truncate(len);
                return String::from_utf8(buf).map_err(|_| {
                    NpError::local(ffi::NP_MALFORMED, "library returned non-UTF-8 text")
                });
            }
            ffi::NP_BUFFER_TOO_SMALL if cap < 1 << 20 => cap *= 16,
            s => return Err(NpError::from_status(s)),
        }
    }
}

pub(crate) fn cstring(s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| NpError::local(ffi::NP_INVALID_ARGUMENT, "string contains a NUL byte"))
}

pub(crate) fn check(s: ffi::np_status) -> Result<()> {
    if s == ffi::NP_OK {
        Ok(())
    } else {
        Err(NpError::from_status(s))
    }
}

/// Installs libnetproto's own logger (filter from `spec` or RUST_LOG; lines prefixed by
/// `tag`). Call once per process, next to the binary's own logger set-up.
pub fn log_init(spec: Option<&str>, tag: &str) {
    let spec = spec.and_then(|s| CString::new(s).ok());
    let tag = CString::new(tag).unwrap_or_default();
    // SAFETY: `spec` is NULL (the library's "use RUST_LOG") or a NUL-terminated CString, and
    // `tag` a NUL-terminated CString; both outlive the call, which copies what it keeps.
    let _ = unsafe {
        ffi::np_log_init(
            spec.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tag.as_ptr(),
        )
    };
}

/// The library's version string.
pub fn version() -> String {
    // SAFETY: np_version never returns NULL and always a static NUL-terminated string, which
    // lives as long as the loaded library, i.e. the process.
    unsafe { CStr::from_ptr(ffi::np_version()) }
        .to_string_lossy()
        .into_owned()
}

/// SSH-style fingerprint of a server key.
pub fn fingerprint(key: &[u8; 32]) -> String {
    // SAFETY: `key` is a borrowed 32-byte array, the size the call reads; `out`/`cap`/`len`
    // are text_out's writable buffer, its capacity and a writable length.
    text_out(|out, cap, len| unsafe { ffi::np_key_fingerprint(key.as_ptr(), out, cap, len) })
        .unwrap_or_default()
}

/// Checks `key` for `host` against the known-servers file at `path` as a connect does,
/// pinning it when the host has no line yet: `Ok(true)` when it was pinned by this call,
/// `Ok(false)` when it already was; `NP_SERVER_KEY_CHANGED` when the host is pinned to another
/// key (the file is left as it is), `NP_KEY_FILE` when the file is unusable.
pub fn known_servers_check(path: &Path, host: &str, key: &[u8; 32]) -> Result<bool> {
    let (p, h) = (cstring(&path.to_string_lossy())?, cstring(host)?);
    let mut pinned_now = false;
    // SAFETY: `p` and `h` are NUL-terminated CStrings alive for the call, `key` a borrowed
    // 32-byte array (the size the call reads), `pinned_now` a writable local.
    check(unsafe {
        ffi::np_known_servers_check(p.as_ptr(), h.as_ptr(), key.as_ptr(), &mut pinned_now)
    })?;
    Ok(pinned_now)
}

/// A password verifier for a users file (never contains the password). 0 iterations = default.
pub fn verifier_create(password: &[u8], iterations: u32) -> Result<String> {
    // SAFETY: `password` is a slice valid for its length during the call; `out`/`cap`/`len`
    // are text_out's writable buffer, its capacity and a writable length.
    text_out(|out, cap, len| unsafe {
        ffi::np_verifier_create(password.as_ptr(), password.len(), iterations, out, cap, len)
    })
}

/// Checks a verifier's syntax.
pub fn verifier_check(text: &str) -> Result<()> {
    let t = cstring(text)?;
    // SAFETY: `t` is a NUL-terminated CString alive for the call, which only reads it.
    check(unsafe { ffi::np_verifier_check(t.as_ptr()) })
}

/// Fills `buf` from the OS CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<()> {
    // SAFETY: `buf` is an exclusively borrowed slice, writable for `buf.len()` bytes, the
    // length passed.
    check(unsafe { ffi::np_random_fill(buf.as_mut_ptr(), buf.len()) })
}

/// Decodes a STATS event body into name/value pairs.
pub fn parse_stats(body: &[u8]) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let mut name = [0u8; 256];
        let mut value = 0u64;
        // SAFETY: `body` is a slice valid for its length; `off`, `name` (its 256 bytes passed
        // as the capacity) and `value` are distinct writable locals, as the call requires.
        let s = unsafe {
            ffi::np_stats_next(
                body.as_ptr(),
                body.len(),
                &mut off,
                name.as_mut_ptr().cast(),
                name.len(),
                &mut value,
            )
        };
        match s {
            ffi::NP_OK => {
                let n = name.iter().position(|&b| b == 0).unwrap_or(0);
                out.push((String::from_utf8_lossy(&name[..n]).into_owned(), value));
            }
            ffi::NP_NO_EVENT => return Ok(out),
            s => return Err(NpError::from_status(s)),
        }
    }
}
