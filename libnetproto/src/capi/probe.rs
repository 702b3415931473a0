//! The C ABI of PROBE: the fixed request bytes and the parse of the server's answer, for
//! callers that check a server's readiness over their own socket (no connection handle, no
//! key, no login).
//!
//! Trust boundary: `np_probe_parse` reads bytes from the network; it is the library's
//! `probe::parse_reply` behind the usual checks — NULL and length validated, outputs written
//! only on NP_OK, panics caught.

use super::status::np_status::{self, *};
use super::{arg_bytes, err, fail, guard, write_out};
use crate::limits::PROBE_LEN;
use crate::probe::{self, ProbeAnswer};

/// Writes the PROBE frame (NP_PROBE_LEN bytes, always the same) into `buf` and its length
/// into `*out_len`. NP_BUFFER_TOO_SMALL when `cap` is less than NP_PROBE_LEN.
///
/// # Safety
/// `buf` valid for writing `cap` bytes; `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn np_probe_request(
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> np_status {
    guard(|| {
        if buf.is_null() || out_len.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL pointer argument"));
        }
        if cap < PROBE_LEN {
            return Err(fail(
                NP_BUFFER_TOO_SMALL,
                "a probe needs NP_PROBE_LEN bytes",
            ));
        }
        let frame = probe::request();
        // SAFETY: `buf` is non-NULL (checked above) and valid for `cap >= PROBE_LEN` bytes
        // (the contract, and the check above), so the copy stays inside it; `frame` is Rust
        // stack memory, which the caller's buffer cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), buf, PROBE_LEN) };
        // SAFETY: `out_len` is non-NULL (checked above) and writable (the contract).
        unsafe { write_out(out_len, PROBE_LEN) }?;
        Ok(NP_OK)
    })
}

/// Parses the server's answer to a PROBE from the first `len` bytes it sent. NP_OK: a
/// PROBE_REPLY; `*out_status` is NP_PROBE_READY, NP_PROBE_NOT_READY or NP_PROBE_DRAINING.
/// NP_NO_EVENT: not a whole frame yet; read more and call again with all the bytes.
/// NP_REMOTE_ERROR: the server refused the connection with an ERROR (its code in
/// `np_last_error_code`, its retry-after in `np_last_error_retry_after_ms`, its text in
/// `np_last_error`). Anything else (framing statuses, NP_MALFORMED, NP_UNEXPECTED_MESSAGE):
/// the peer is not a v1 server answering a probe. `*out_status` is written only on NP_OK.
///
/// # Safety
/// `buf` valid for `len` bytes (NULL allowed when `len` is 0); `out_status` writable.
#[no_mangle]
pub unsafe extern "C" fn np_probe_parse(
    buf: *const u8,
    len: usize,
    out_status: *mut u32,
) -> np_status {
    guard(|| {
        if out_status.is_null() {
            return Err(fail(NP_NULL_ARGUMENT, "NULL output pointer"));
        }
        // SAFETY: the contract makes a non-NULL `buf` readable for `len` bytes and unchanged
        // during this call; arg_bytes rejects NULL with a non-zero length.
        let bytes = unsafe { arg_bytes(buf, len) }?;
        match probe::parse_reply(bytes).map_err(err)? {
            ProbeAnswer::NeedMore(_) => Ok(NP_NO_EVENT),
            ProbeAnswer::Refused { code, message } => Err(err(probe::refused_error(code, message))),
            ProbeAnswer::Status(s) => {
                // SAFETY: `out_status` is non-NULL (checked above) and writable (the contract).
                unsafe { write_out(out_status, u32::from(s.to_byte())) }?;
                Ok(NP_OK)
            }
        }
    })
}
