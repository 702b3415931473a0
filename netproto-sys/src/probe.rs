//! PROBE from Rust: the fixed request bytes and the parse of the server's answer, over the C
//! ABI (`np_probe_request`, `np_probe_parse`). No handle, no key, no login: the caller owns
//! the socket.
//!
//! Trust boundary: the answer comes from the network; the library validates it, this
//! wrapper only maps the status numbers to `Probe`.

use crate::error::{NpError, Result};
use crate::ffi;

/// The server's readiness as PROBE_REPLY says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    Ready,
    NotReady,
    Draining,
}

impl Probe {
    /// The `NP_PROBE_*` number (also the status byte on the wire).
    pub fn number(self) -> u32 {
        match self {
            Probe::Ready => ffi::limits::PROBE_READY,
            Probe::NotReady => ffi::limits::PROBE_NOT_READY,
            Probe::Draining => ffi::limits::PROBE_DRAINING,
        }
    }

    pub fn from_number(n: u32) -> Option<Probe> {
        [Probe::Ready, Probe::NotReady, Probe::Draining]
            .into_iter()
            .find(|p| p.number() == n)
    }

    /// What `imgclient health` prints: "ready", "up, not ready", "draining".
    pub fn describe(self) -> &'static str {
        match self {
            Probe::Ready => "ready",
            Probe::NotReady => "up, not ready",
            Probe::Draining => "draining",
        }
    }
}

/// The PROBE frame: always the same `limits::PROBE_LEN` bytes.
pub fn probe_request() -> Vec<u8> {
    let mut buf = vec![0u8; ffi::limits::PROBE_LEN];
    let mut len = 0usize;
    // SAFETY: `buf` is writable for its length, the capacity passed; `len` is a writable
    // local.
    let s = unsafe { ffi::np_probe_request(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(
        s,
        ffi::NP_OK,
        "the library writes a probe into PROBE_LEN bytes"
    );
    buf.truncate(len);
    buf
}

/// Parses what the server sent after a PROBE: `Ok(None)` while the frame is incomplete,
/// `Ok(Some(status))` for a PROBE_REPLY; an ERROR the server refused the connection with is
/// `Err` with status NP_REMOTE_ERROR and its code in `remote`; anything else is the
/// library's framing or message error.
pub fn probe_parse(bytes: &[u8]) -> Result<Option<Probe>> {
    let mut status = 0u32;
    // SAFETY: `bytes` is a slice valid for its length during the call; `status` a writable
    // local.
    match unsafe { ffi::np_probe_parse(bytes.as_ptr(), bytes.len(), &mut status) } {
        ffi::NP_OK => Probe::from_number(status)
            .map(Some)
            .ok_or_else(|| NpError::local(ffi::NP_MALFORMED, "unknown probe status")),
        ffi::NP_NO_EVENT => Ok(None),
        s => Err(NpError::from_status(s)),
    }
}
