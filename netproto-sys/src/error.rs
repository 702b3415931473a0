//! Errors from libnetproto as Rust values: the stable status number plus the library's
//! detailed message, and the protocol's wire error codes.

use std::ffi::CStr;
use std::fmt;

use crate::ffi;

pub type Result<T> = std::result::Result<T, NpError>;

/// A failed library call: `status` is an `NP_*` number, `message` the library's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpError {
    pub status: ffi::np_status,
    pub message: String,
}

impl NpError {
    /// Builds the error for a status just returned on this thread, with its detailed message.
    pub(crate) fn from_status(status: ffi::np_status) -> NpError {
        let mut buf = [0u8; 1024];
        let mut len = 0usize;
        // SAFETY: `buf` is writable for its length, `len` is writable.
        let r = unsafe { ffi::np_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        let message = if r == ffi::NP_OK && len > 0 {
            String::from_utf8_lossy(&buf[..len]).into_owned()
        } else {
            status_str(status).to_string()
        };
        NpError { status, message }
    }

    pub(crate) fn local(status: ffi::np_status, msg: &str) -> NpError {
        NpError {
            status,
            message: msg.to_string(),
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
    // SAFETY: np_status_str returns a static NUL-terminated string for any input.
    unsafe { CStr::from_ptr(ffi::np_status_str(status)) }
        .to_str()
        .unwrap_or("?")
}

/// Wire error codes carried in ERROR frames (docs/PROTOCOL.md, "Error codes").
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Protocol = 100,
    UnexpectedMessage = 101,
    DuplicateRequest = 102,
    UnknownRequest = 103,
    LengthMismatch = 104,
    AuthFailed = 200,
    NotLoggedIn = 201,
    BadSpec = 300,
    InputTooLarge = 301,
    TooManyPixels = 302,
    UnsupportedFormat = 303,
    DecodeFailed = 304,
    BadGeometry = 305,
    EncodeFailed = 306,
    PoisonInput = 307,
    TooManyInFlight = 308,
    Timeout = 400,
    WorkerCrashed = 401,
    ShuttingDown = 402,
    TooManyConnections = 403,
    IdleTimeout = 404,
    SlowClient = 405,
    HandshakeTimeout = 406,
    Internal = 500,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::Protocol,
        ErrorCode::UnexpectedMessage,
        ErrorCode::DuplicateRequest,
        ErrorCode::UnknownRequest,
        ErrorCode::LengthMismatch,
        ErrorCode::AuthFailed,
        ErrorCode::NotLoggedIn,
        ErrorCode::BadSpec,
        ErrorCode::InputTooLarge,
        ErrorCode::TooManyPixels,
        ErrorCode::UnsupportedFormat,
        ErrorCode::DecodeFailed,
        ErrorCode::BadGeometry,
        ErrorCode::EncodeFailed,
        ErrorCode::PoisonInput,
        ErrorCode::TooManyInFlight,
        ErrorCode::Timeout,
        ErrorCode::WorkerCrashed,
        ErrorCode::ShuttingDown,
        ErrorCode::TooManyConnections,
        ErrorCode::IdleTimeout,
        ErrorCode::SlowClient,
        ErrorCode::HandshakeTimeout,
        ErrorCode::Internal,
    ];

    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    /// The protocol name, as the library spells it (e.g. "TOO_MANY_PIXELS").
    pub fn name(self) -> &'static str {
        code_name(self as u16).unwrap_or("UNKNOWN")
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Timeout
                | ErrorCode::WorkerCrashed
                | ErrorCode::ShuttingDown
                | ErrorCode::TooManyConnections
                | ErrorCode::TooManyInFlight
        )
    }
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
