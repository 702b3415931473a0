//! Errors from libnetproto as Rust values: the stable status number, the library's detailed
//! message and, for an error the peer reported, its wire code and retry-after as numbers.

use std::ffi::CStr;
use std::fmt;

use crate::ffi;

pub type Result<T> = std::result::Result<T, NpError>;

/// A failed library call: `status` is an `NP_*` number, `message` the library's explanation,
/// `remote` what the peer said when `status` is NP_REMOTE_ERROR or NP_BUSY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpError {
    pub status: ffi::np_status,
    pub message: String,
    pub remote: Option<Remote>,
}

/// The numbers behind NP_REMOTE_ERROR / NP_BUSY, from `np_last_error_code` and
/// `np_last_error_retry_after_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// The wire error code of the peer's ERROR frame; 0 for BUSY, which carries none.
    pub code: u16,
    /// BUSY's retry-after delay in milliseconds, or the one a RATE_LIMITED ERROR's text
    /// carries; 0 for any other ERROR frame.
    pub retry_after_ms: u32,
}

impl NpError {
    /// Builds the error for a status a library call just returned on this thread, with its
    /// detailed message and (for NP_REMOTE_ERROR / NP_BUSY) the peer's numbers.
    pub(crate) fn from_status(status: ffi::np_status) -> NpError {
        let mut buf = [0u8; 1024];
        let mut len = 0usize;
        // SAFETY: `buf` is a writable local array and the call writes at most `buf.len()`
        // bytes into it (it answers NP_BUFFER_TOO_SMALL otherwise); `len` is a writable local.
        let r = unsafe { ffi::np_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        let message = if r == ffi::NP_OK && len > 0 {
            String::from_utf8_lossy(&buf[..len]).into_owned()
        } else {
            status_str(status).to_string()
        };
        let remote = if status == ffi::NP_REMOTE_ERROR || status == ffi::NP_BUSY {
            // SAFETY: both take no pointers and only read this thread's last-failure record.
            let (code, retry_after_ms) = unsafe {
                (
                    ffi::np_last_error_code(),
                    ffi::np_last_error_retry_after_ms(),
                )
            };
            Some(Remote {
                code,
                retry_after_ms,
            })
        } else {
            None
        };
        NpError {
            status,
            message,
            remote,
        }
    }

    /// An error made on this side of the binding (no library call failed).
    pub fn new(status: ffi::np_status, msg: &str) -> NpError {
        NpError {
            status,
            message: msg.to_string(),
            remote: None,
        }
    }

    pub(crate) fn local(status: ffi::np_status, msg: &str) -> NpError {
        NpError::new(status, msg)
    }

    /// The wire error code the peer sent (NP_REMOTE_ERROR), e.g. 403 for
    /// TOO_MANY_CONNECTIONS; `None` for any other failure.
    pub fn remote_code(&self) -> Option<u16> {
        self.remote.map(|r| r.code).filter(|&c| c != 0)
    }

    /// The retry-after delay of a BUSY refusal (NP_BUSY), or of an ERROR whose text carries
    /// one (NP_REMOTE_ERROR with RATE_LIMITED); `None` for any other failure.
    pub fn retry_after_ms(&self) -> Option<u32> {
        match (self.status, self.remote) {
            (ffi::NP_BUSY, Some(r)) => Some(r.retry_after_ms),
            (ffi::NP_REMOTE_ERROR, Some(r)) if r.retry_after_ms > 0 => Some(r.retry_after_ms),
            _ => None,
        }
    }

    pub fn is(&self, status: ffi::np_status) -> bool {
        self.status == status
    }
}

impl fmt::Display for NpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NpError {}

/// The library's static description of a status.
pub fn status_str(status: ffi::np_status) -> &'static str {
    // SAFETY: np_status_str takes any integer and returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::np_status_str(status)) }
        .to_str()
        .unwrap_or("?")
}

pub use crate::ffi::ErrorCode;

/// Whether the library considers a wire error code retryable (false for an unknown code).
pub fn code_is_retryable(code: u16) -> bool {
    // SAFETY: takes any integer and reads no memory.
    unsafe { ffi::np_error_code_is_retryable(code) }
}

/// The library's name for any wire error code, `None` if unknown.
pub fn code_name(code: u16) -> Option<&'static str> {
    // SAFETY: returns NULL or a static NUL-terminated string.
    let p = unsafe { ffi::np_error_code_name(code) };
    if p.is_null() {
        None
    } else {
        // SAFETY: non-NULL static string.
        unsafe { CStr::from_ptr(p) }.to_str().ok()
    }
}

/// The retry-after delay an ERROR event's text carries (RATE_LIMITED: `retry-after-ms=N;`),
/// as the library reads it; `None` for any other text.
pub fn retry_after_in_text(text: &str) -> Option<u32> {
    let mut ms = 0u32;
    // SAFETY: `text` is a borrowed slice valid for its length during the call; `ms` is a
    // writable local, written only on NP_OK.
    let s = unsafe { ffi::np_error_text_retry_after(text.as_ptr(), text.len(), &mut ms) };
    (s == ffi::NP_OK).then_some(ms)
}
