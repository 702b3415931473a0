//! The C ABI of libnetproto: opaque handles, `np_<thing>_<verb>` functions, `np_status` codes.
//!
//! Values C passes in are plain integers (`uint32_t`, `uint16_t`), never Rust enums: a number
//! outside an enum's range would be undefined behaviour, so each is looked up and an unknown
//! one answered safely.
//!
//! Trust boundary: the line between C callers and Rust. Every exported function catches
//! panics (a panic unwinding into C would abort the process) and checks its pointers; outputs
//! are written only on success; the reason for the last failure on this thread is kept for
//! `np_last_error`. This module tree is the only place in the crate allowed `unsafe`.
//!
//! cbindgen reads these files to generate `include/netproto.h`; keep exported items plain
//! (no macros) so it can see them. Debian's cbindgen (0.24) cannot parse `c"..."` literals,
//! hence NUL-terminated `&str`s.
#![allow(clippy::manual_c_str_literals)]

pub mod client;
pub mod config;
pub mod conn;
pub mod event;
pub mod probe;
pub mod status;
pub mod wire;

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;
pub use status::np_status;
use status::np_status::*;

/// What the peer said when the last failure on a thread was NP_REMOTE_ERROR or NP_BUSY.
#[derive(Clone, Copy, Default)]
struct Remote {
    /// The wire error code (0: none, e.g. for BUSY, which carries no code).
    code: u16,
    /// BUSY's retry-after delay, or the one in a RATE_LIMITED text, in milliseconds (0: none).
    retry_after_ms: u32,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static LAST_REMOTE: Cell<Remote> = const { Cell::new(Remote { code: 0, retry_after_ms: 0 }) };
}

fn set_last_error(msg: String, remote: Remote) {
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    LAST_REMOTE.with(|r| r.set(remote));
}

/// Records the error's full text (and, for a remote error, its numbers) for `np_last_error`
/// and `np_last_error_code`, and returns its status.
pub(crate) fn err(e: Error) -> np_status {
    let s = np_status::from(&e);
    let remote = match e {
        Error::Remote {
            code, ref message, ..
        } => Remote {
            code,
            retry_after_ms: crate::message::retry_after_in_text(message).unwrap_or(0),
        },
        Error::Busy { retry_after_ms } => Remote {
            code: 0,
            retry_after_ms,
        },
        _ => Remote::default(),
    };
    set_last_error(e.to_string(), remote);
    s
}

/// Records a caller error that has no `Error` value.
pub(crate) fn fail(s: np_status, msg: &str) -> np_status {
    set_last_error(msg.to_string(), Remote::default());
    s
}

/// Runs an exported function's body behind the panic boundary.
pub(crate) fn guard(f: impl FnOnce() -> Result<np_status, np_status>) -> np_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(s)) | Ok(Err(s)) => s,
        Err(_) => fail(NP_PANIC, "panic inside libnetproto"),
    }
}

/// Like [`guard`] for functions without a status result.
pub(crate) fn guard_or<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// Borrows a C argument, NULL answered with NP_NULL_ARGUMENT.
///
/// # Safety
/// `p` must be NULL or point to a valid, aligned `T` that nothing writes for `'a`.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T) -> Result<&'a T, np_status> {
    // SAFETY: `as_ref` maps NULL to None (turned into an error below); a non-NULL `p` points
    // to a valid, aligned `T` with no writer for `'a` (this function's contract), which is
    // what a shared reference needs.
    unsafe { p.as_ref() }.ok_or_else(|| fail(NP_NULL_ARGUMENT, "NULL pointer argument"))
}

/// Borrows a C argument mutably, NULL answered with NP_NULL_ARGUMENT.
///
/// # Safety
/// `p` must be NULL or point to a valid, aligned `T` that nothing else reads or writes for
/// `'a` (for a handle: used by one thread at a time).
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T) -> Result<&'a mut T, np_status> {
    // SAFETY: `as_mut` maps NULL to None (turned into an error below); a non-NULL `p` points
    // to a valid, aligned `T` that no other reference reaches for `'a` (this function's
    // contract), which is what a unique reference needs.
    unsafe { p.as_mut() }.ok_or_else(|| fail(NP_NULL_ARGUMENT, "NULL pointer argument"))
}

/// Borrows a C string argument as UTF-8: NULL is NP_NULL_ARGUMENT, other bytes
/// NP_INVALID_ARGUMENT.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char) -> Result<&'a str, np_status> {
    if p.is_null() {
        return Err(fail(NP_NULL_ARGUMENT, "NULL string argument"));
    }
    // SAFETY: `p` was checked non-NULL just above, and this function's contract makes it a
    // NUL-terminated string nothing changes for `'a`, so CStr may scan to the NUL and borrow
    // the bytes before it.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| fail(NP_INVALID_ARGUMENT, "string is not UTF-8"))
}

/// Borrows a C buffer argument: `len == 0` is the empty slice whatever `p` is (C callers pass
/// NULL for "no bytes"), NULL with a non-zero `len` is NP_NULL_ARGUMENT.
///
/// # Safety
/// `p` must point to `len` readable bytes that nothing writes for `'a`, or be anything when
/// `len` is 0.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], np_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail(NP_NULL_ARGUMENT, "NULL buffer with non-zero length"));
    }
    // SAFETY: `p` is non-NULL and `len` non-zero (both checked above), and this function's
    // contract makes `p..p+len` readable and unwritten for `'a`; u8 has alignment 1. A C
    // object cannot exceed isize::MAX bytes, the slice's size limit.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes `v` through an out-pointer, which must be non-NULL.
///
/// # Safety
/// `p` must be NULL or valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) -> Result<(), np_status> {
    if p.is_null() {
        return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
    }
    // SAFETY: `p` was checked non-NULL just above, and this function's contract makes it
    // valid and aligned for writing one `T`; `write` does not drop the old value, which may
    // be uninitialised C memory.
    unsafe { p.write(v) };
    Ok(())
}

/// Copies `text` plus a NUL into `out[..cap]`; `len_out` (optional) gets the text length.
///
/// # Safety
/// `out` must be valid for `cap` bytes; `len_out` NULL or writable.
pub(crate) unsafe fn write_text(
    text: &str,
    out: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> Result<(), np_status> {
    if out.is_null() {
        return Err(fail(NP_NULL_ARGUMENT, "NULL output buffer"));
    }
    if text.len() + 1 > cap {
        return Err(fail(NP_BUFFER_TOO_SMALL, "output buffer too small"));
    }
    // SAFETY: `out` is non-NULL (checked above) and valid for `cap` bytes (this function's
    // contract), and `text.len() + 1 <= cap` was checked above, so both the copy and the NUL
    // land inside it; `text` is Rust memory, which C memory cannot overlap. `len_out` is
    // written only if non-NULL, and the contract makes a non-NULL one writable.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), text.len());
        *out.add(text.len()) = 0;
        if !len_out.is_null() {
            *len_out = text.len();
        }
    }
    Ok(())
}

/// A static, NUL-terminated description of the status number `status` ("unknown status" for
/// a number that is not an np_status). Never NULL.
#[no_mangle]
pub extern "C" fn np_status_str(status: u32) -> *const c_char {
    guard_or("internal error\0".as_ptr().cast(), || {
        crate::wire::status_description(status)
            .unwrap_or("unknown status\0")
            .as_ptr()
            .cast()
    })
}

/// The library version, e.g. "0.1.0". Never NULL.
#[no_mangle]
pub extern "C" fn np_version() -> *const c_char {
    guard_or("?\0".as_ptr().cast(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// Copies the detailed message of the last failure on this thread (NUL-terminated) into
/// `out`; `len` gets its length. NP_BUFFER_TOO_SMALL if it does not fit.
///
/// # Safety
/// `out` must be valid for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_last_error(out: *mut c_char, cap: usize, len: *mut usize) -> np_status {
    guard(|| {
        let msg = LAST_ERROR.with(|l| l.borrow().clone());
        // SAFETY: `out` is valid for `cap` bytes and `len` NULL or writable (this function's
        // contract, which is write_text's); write_text checks NULL and the size first.
        unsafe { write_text(&msg, out, cap, len) }?;
        Ok(NP_OK)
    })
}

/// The wire error code the peer sent, when the last failure on this thread was
/// NP_REMOTE_ERROR (e.g. 403 for TOO_MANY_CONNECTIONS); 0 after any other failure or for
/// NP_BUSY, which carries no code. Read it next to `np_last_error`.
#[no_mangle]
pub extern "C" fn np_last_error_code() -> u16 {
    guard_or(0, || LAST_REMOTE.with(|r| r.get().code))
}

/// The retry-after delay in milliseconds, when the last failure on this thread was NP_BUSY,
/// or NP_REMOTE_ERROR with a RATE_LIMITED text that carries one (`retry-after-ms=N;`); 0
/// otherwise.
#[no_mangle]
pub extern "C" fn np_last_error_retry_after_ms() -> u32 {
    guard_or(0, || LAST_REMOTE.with(|r| r.get().retry_after_ms))
}

/// Installs the library's logger (the `.so` has its own copy of the logging globals).
/// `spec` is a RUST_LOG-style filter or NULL for $RUST_LOG (default "info"); `tag` prefixes
/// every line (NULL for none). A second call changes nothing and returns NP_BAD_STATE.
///
/// # Safety
/// `spec` and `tag` must each be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn np_log_init(spec: *const c_char, tag: *const c_char) -> np_status {
    guard(|| {
        // SAFETY: `spec` is non-NULL on this branch and NUL-terminated per the contract; it is
        // read only during the call.
        let spec = if spec.is_null() {
            None
        } else {
            Some(unsafe { arg_str(spec) }?)
        };
        // SAFETY: `tag` is non-NULL on this branch and NUL-terminated per the contract; it is
        // copied before the call returns.
        let tag = if tag.is_null() {
            ""
        } else {
            unsafe { arg_str(tag) }?
        };
        if crate::logging::init(spec, tag) {
            Ok(NP_OK)
        } else {
            Err(fail(NP_BAD_STATE, "logger already installed"))
        }
    })
}

/// Fills `buf[..len]` with bytes from the operating system's CSPRNG.
///
/// # Safety
/// `buf` must be valid for `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn np_random_fill(buf: *mut u8, len: usize) -> np_status {
    guard(|| {
        if len == 0 {
            return Ok(NP_OK);
        }
        if buf.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL buffer"));
        }
        // SAFETY: `buf` is non-NULL and `len` non-zero (both checked above); the contract makes
        // `buf..buf+len` writable and unread by anyone else during the call (u8: alignment 1).
        crate::io::random_bytes(unsafe { std::slice::from_raw_parts_mut(buf, len) });
        Ok(NP_OK)
    })
}

/// Writes the SSH-style fingerprint ("SHA256:…", NUL-terminated) of a 32-byte public key.
///
/// # Safety
/// `key` must point to 32 bytes; `out` valid for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_key_fingerprint(
    key: *const u8,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: the contract makes a non-NULL `key` point to 32 readable bytes, which is the
        // size of `[u8; 32]` (alignment 1); arg_ref rejects NULL.
        let key: &[u8; 32] = unsafe { arg_ref(key.cast::<[u8; 32]>()) }?;
        // SAFETY: `out` valid for `cap` bytes, `len` NULL or writable (the contract); write_text
        // checks NULL and the size before writing.
        unsafe { write_text(&crate::keys::fingerprint(key), out, cap, len) }?;
        Ok(NP_OK)
    })
}

/// Checks the 32-byte server key `key` for `host` against the known-servers file `path`, as
/// `np_client_connect` does before it logs in: a host without a line is pinned (the line
/// `host base64-key` is appended; a missing file is created with mode 0600) and `*pinned_now`
/// set to true; a host pinned to this key leaves the file as it is (`*pinned_now` false); a
/// host pinned to another key is NP_SERVER_KEY_CHANGED, the file unchanged and the last-error
/// text naming both fingerprints. A file that cannot be read, parsed or written is
/// NP_KEY_FILE; a `host` that is empty or holds whitespace is NP_INVALID_ARGUMENT. For
/// `np_conn` clients between NP_EVENT_SERVER_KEY and `np_conn_trust_server_key`, and for
/// pinning a key verified out of band before the first login.
///
/// # Safety
/// `path` and `host` NUL-terminated; `key` points to 32 bytes; `pinned_now` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_known_servers_check(
    path: *const c_char,
    host: *const c_char,
    key: *const u8,
    pinned_now: *mut bool,
) -> np_status {
    guard(|| {
        // SAFETY: the contract makes non-NULL `path` and `host` NUL-terminated and a non-NULL
        // `key` point to 32 readable bytes (the size of `[u8; 32]`, alignment 1); the arg
        // helpers reject NULL.
        let (path, host, key) = unsafe {
            (
                arg_str(path)?,
                arg_str(host)?,
                arg_ref(key.cast::<[u8; 32]>())?,
            )
        };
        let trust =
            crate::io::check_known_server(std::path::Path::new(path), host, key).map_err(err)?;
        if !pinned_now.is_null() {
            // SAFETY: `pinned_now` is non-NULL here, and the contract makes it writable.
            unsafe { *pinned_now = trust == crate::keys::Trust::New };
        }
        Ok(NP_OK)
    })
}

/// Derives a password verifier (the text a server stores; never the password) with a fresh
/// random salt. `iterations` 0 picks the default. Writes NUL-terminated text into `out`.
///
/// # Safety
/// `password` valid for `password_len` bytes; `out` for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_verifier_create(
    password: *const u8,
    password_len: usize,
    iterations: u32,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> np_status {
    guard(|| {
        // SAFETY: the contract makes `password` readable for `password_len` bytes; arg_bytes
        // rejects NULL with a non-zero length.
        let pw = unsafe { arg_bytes(password, password_len) }?;
        let iters = if iterations == 0 {
            crate::limits::DEFAULT_PBKDF2_ITERATIONS
        } else {
            iterations
        };
        let mut salt = [0u8; 16];
        crate::io::random_bytes(&mut salt);
        let v = crate::login::Verifier::create(pw, &salt, iters).map_err(err)?;
        // SAFETY: `out` valid for `cap` bytes, `len` NULL or writable (the contract); write_text
        // checks NULL and the size before writing.
        unsafe { write_text(&v.encode(), out, cap, len) }?;
        Ok(NP_OK)
    })
}

/// Checks that `text` is a well-formed verifier (as stored in a users file).
///
/// # Safety
/// `text` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn np_verifier_check(text: *const c_char) -> np_status {
    guard(|| {
        // SAFETY: the contract makes a non-NULL `text` NUL-terminated; arg_str rejects NULL.
        let t = unsafe { arg_str(text) }?;
        crate::login::Verifier::parse(t).map_err(err)?;
        Ok(NP_OK)
    })
}

/// The protocol name of a wire error code (e.g. 302 → "TOO_MANY_PIXELS"), or NULL if the
/// code is unknown.
#[no_mangle]
pub extern "C" fn np_error_code_name(code: u16) -> *const c_char {
    guard_or(std::ptr::null(), || {
        crate::opcode::ErrorCode::from_u16(code)
            .map_or(std::ptr::null(), |c| c.c_name().as_ptr().cast())
    })
}

/// Whether the same request may succeed if sent again later, for a wire error code (e.g. 400
/// TIMEOUT: true); false for an unknown code.
#[no_mangle]
pub extern "C" fn np_error_code_is_retryable(code: u16) -> bool {
    guard_or(false, || {
        crate::opcode::ErrorCode::from_u16(code).is_some_and(|c| c.is_retryable())
    })
}

/// The retry-after delay an ERROR text carries: a RATE_LIMITED text starts with
/// `retry-after-ms=N;` (PROTOCOL §11), for an ERROR event's `text`/`text_len`. Writes N to
/// `*retry_after_ms` and answers NP_OK; NP_INVALID_ARGUMENT (nothing written) when the text
/// carries no delay.
///
/// # Safety
/// `text` valid for `text_len` bytes (anything when 0); `retry_after_ms` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn np_error_text_retry_after(
    text: *const u8,
    text_len: usize,
    retry_after_ms: *mut u32,
) -> np_status {
    guard(|| {
        // SAFETY: `text` is readable for `text_len` bytes (the contract; 0 reads nothing);
        // arg_bytes rejects NULL with a non-zero length.
        let t = unsafe { arg_bytes(text, text_len) }?;
        let ms = std::str::from_utf8(t)
            .ok()
            .and_then(crate::message::retry_after_in_text)
            .ok_or_else(|| fail(NP_INVALID_ARGUMENT, "the text carries no retry-after delay"))?;
        // SAFETY: a non-NULL `retry_after_ms` is writable (the contract); write_out rejects
        // NULL.
        unsafe { write_out(retry_after_ms, ms) }?;
        Ok(NP_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_text_gives_its_delay_to_the_caller() {
        let s = err(Error::Remote {
            code: 407,
            name: "RATE_LIMITED",
            message: crate::message::rate_limited_text(2500, "too many failed logins"),
        });
        assert_eq!(s, NP_REMOTE_ERROR);
        assert_eq!(
            (np_last_error_code(), np_last_error_retry_after_ms()),
            (407, 2500)
        );
        let text = b"retry-after-ms=40; slow down";
        let mut out = 7u32;
        // SAFETY (test): `text` is a live array of the length passed, `out` a writable local.
        assert_eq!(
            unsafe { np_error_text_retry_after(text.as_ptr(), text.len(), &mut out) },
            NP_OK
        );
        assert_eq!(out, 40);
        let mut out = 7u32;
        // SAFETY (test): as above; a text without a delay writes nothing.
        unsafe {
            assert_eq!(
                np_error_text_retry_after(b"full".as_ptr(), 4, &mut out),
                NP_INVALID_ARGUMENT
            );
            assert_eq!(
                np_error_text_retry_after(text.as_ptr(), text.len(), std::ptr::null_mut()),
                NP_NULL_ARGUMENT
            );
        }
        assert_eq!(out, 7);
    }

    #[test]
    fn a_remote_error_leaves_its_numbers_for_the_caller_until_the_next_failure() {
        let s = err(Error::Remote {
            code: 403,
            name: "TOO_MANY_CONNECTIONS",
            message: "full".into(),
        });
        assert_eq!(s, NP_REMOTE_ERROR);
        assert_eq!(
            (np_last_error_code(), np_last_error_retry_after_ms()),
            (403, 0)
        );
        assert_eq!(
            err(Error::Busy {
                retry_after_ms: 250
            }),
            NP_BUSY
        );
        assert_eq!(
            (np_last_error_code(), np_last_error_retry_after_ms()),
            (0, 250)
        );
        fail(NP_NULL_ARGUMENT, "x");
        assert_eq!(
            (np_last_error_code(), np_last_error_retry_after_ms()),
            (0, 0)
        );
    }

    #[test]
    fn stats_next_writes_its_outputs_only_on_success() {
        use super::conn::np_stats_next;
        // count 1 (big-endian u16), then "ab" = 7 (u8 length, text, big-endian u64).
        let body = [0u8, 1, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 7];
        let (mut off, mut value, mut name) = (0usize, 99u64, [b'x' as c_char; 8]);
        // SAFETY (test): every pointer is a live local of the stated size.
        let call = |off: *mut usize, name: *mut c_char, cap: usize, value: *mut u64| unsafe {
            np_stats_next(body.as_ptr(), body.len(), off, name, cap, value)
        };
        let s = call(&mut off, name.as_mut_ptr(), 8, std::ptr::null_mut());
        assert_eq!((s, off, name[0]), (NP_NULL_ARGUMENT, 0, b'x' as c_char));
        let s = call(&mut off, name.as_mut_ptr(), 2, &mut value);
        assert_eq!(
            (s, off, value, name[0]),
            (NP_BUFFER_TOO_SMALL, 0, 99, b'x' as c_char)
        );
        let s = call(&mut off, name.as_mut_ptr(), 8, &mut value);
        assert_eq!(
            (s, off, value, &name[..3]),
            (NP_OK, 13, 7, &[97, 98, 0][..])
        );
        assert_eq!(
            call(&mut off, name.as_mut_ptr(), 8, &mut value),
            NP_NO_EVENT
        );
    }

    #[test]
    fn known_servers_check_pins_once_and_refuses_another_key() {
        use std::ffi::CString;
        let dir = std::env::temp_dir().join(format!("np-known-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("known_servers");
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let check = |host: &str, key: &[u8; 32], now: *mut bool| {
            let host = CString::new(host).unwrap();
            // SAFETY (test): the strings are live CStrings, the key a 32-byte array, `now`
            // NULL or a live local.
            unsafe { np_known_servers_check(c_path.as_ptr(), host.as_ptr(), key.as_ptr(), now) }
        };
        let mut now = false;
        assert_eq!(check("h:1", &a, &mut now), NP_OK);
        assert!(now, "first contact pins");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, crate::keys::KnownServers::line("h:1", &a));
        assert_eq!(check("h:1", &a, &mut now), NP_OK);
        assert!(!now, "already pinned");
        assert_eq!(
            check("h:1", &b, std::ptr::null_mut()),
            NP_SERVER_KEY_CHANGED
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "file unchanged"
        );
        for bad in ["", "h 1", "#h:1", "h:1\t"] {
            assert_eq!(check(bad, &b, &mut now), NP_INVALID_ARGUMENT, "{bad:?}");
        }
        std::fs::write(&path, "damaged\n").unwrap();
        assert_eq!(check("h:1", &a, &mut now), NP_KEY_FILE);
        let host = CString::new("h").unwrap();
        // SAFETY (test): a NULL path is answered, not read; the rest are live.
        let s = unsafe {
            np_known_servers_check(std::ptr::null(), host.as_ptr(), a.as_ptr(), &mut now)
        };
        assert_eq!(s, NP_NULL_ARGUMENT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn c_integers_that_are_not_known_numbers_are_answered_safely() {
        // SAFETY (test): np_status_str returns a static NUL-terminated string for any input.
        let text = |n| {
            unsafe { CStr::from_ptr(np_status_str(n)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(text(0), "ok");
        assert_eq!(text(77_777), "unknown status");
        assert_eq!(text(u32::MAX), "unknown status");
        assert!(np_error_code_name(9999).is_null());
        assert!(!np_error_code_is_retryable(9999) && np_error_code_is_retryable(400));
    }
}
