//! The C ABI's status codes: one stable number per outcome, grouped in ranges by cause.
//!
//! Numbers are part of the ABI: never renumber or reuse; add new ones at the end of a range.

use crate::error::Error;

#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum np_status {
    NP_OK = 0,
    /// `np_conn_poll_event`: no complete event yet; feed more input.
    NP_NO_EVENT = 1,
    /// A non-blocking socket has nothing to read or no room to write.
    NP_WOULD_BLOCK = 2,
    /// The peer closed the connection.
    NP_EOF = 3,
    /// A deadline passed.
    NP_TIMEOUT = 4,
    /// The connection's input buffer is full: poll events before reading more.
    NP_INPUT_FULL = 5,

    // 100..: the caller's mistake
    NP_NULL_ARGUMENT = 100,
    NP_INVALID_ARGUMENT = 101,
    NP_BUFFER_TOO_SMALL = 102,
    NP_BAD_STATE = 103,
    NP_PANIC = 104,
    NP_CLOSED = 105,

    // 200..: framing, fatal for the connection
    NP_BAD_MAGIC = 200,
    NP_BAD_VERSION = 201,
    NP_FRAME_TOO_LARGE = 202,
    NP_BAD_CRC = 203,
    NP_UNKNOWN_OPCODE = 204,
    NP_BAD_FLAGS = 205,
    NP_BAD_RESERVED = 206,
    NP_MALFORMED = 207,
    NP_UNEXPECTED_MESSAGE = 208,

    // 300..: security, fatal
    NP_DECRYPT_FAILED = 300,
    NP_HANDSHAKE_FAILED = 301,
    NP_AUTH_FAILED = 302,
    NP_BAD_SERVER_SIGNATURE = 303,
    NP_SERVER_KEY_CHANGED = 304,
    NP_SERVER_KEY_REJECTED = 305,
    NP_NONCE_EXHAUSTED = 306,

    // 400..: the peer reported a problem
    NP_REMOTE_ERROR = 400,
    NP_BUSY = 401,
    NP_SERVER_SHUTDOWN = 402,

    // 500..: the operating system
    NP_IO = 500,
    NP_KEY_FILE = 501,
}

use np_status::*;

pub const ALL: [np_status; 33] = [
    NP_OK, NP_NO_EVENT, NP_WOULD_BLOCK, NP_EOF, NP_TIMEOUT, NP_INPUT_FULL, NP_NULL_ARGUMENT,
    NP_INVALID_ARGUMENT, NP_BUFFER_TOO_SMALL, NP_BAD_STATE, NP_PANIC, NP_CLOSED, NP_BAD_MAGIC,
    NP_BAD_VERSION, NP_FRAME_TOO_LARGE, NP_BAD_CRC, NP_UNKNOWN_OPCODE, NP_BAD_FLAGS,
    NP_BAD_RESERVED, NP_MALFORMED, NP_UNEXPECTED_MESSAGE, NP_DECRYPT_FAILED,
    NP_HANDSHAKE_FAILED, NP_AUTH_FAILED, NP_BAD_SERVER_SIGNATURE, NP_SERVER_KEY_CHANGED,
    NP_SERVER_KEY_REJECTED, NP_NONCE_EXHAUSTED, NP_REMOTE_ERROR, NP_BUSY, NP_SERVER_SHUTDOWN,
    NP_IO, NP_KEY_FILE,
];

impl From<&Error> for np_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::BadMagic => NP_BAD_MAGIC,
            Error::BadVersion(_) => NP_BAD_VERSION,
            Error::FrameTooLarge { .. } => NP_FRAME_TOO_LARGE,
            Error::BadCrc { .. } => NP_BAD_CRC,
            Error::UnknownOpcode(_) => NP_UNKNOWN_OPCODE,
            Error::BadFlags(_) => NP_BAD_FLAGS,
            Error::BadReserved => NP_BAD_RESERVED,
            Error::Malformed(_) => NP_MALFORMED,
            Error::UnexpectedMessage { .. } => NP_UNEXPECTED_MESSAGE,
            Error::DecryptFailed => NP_DECRYPT_FAILED,
            Error::HandshakeFailed(_) => NP_HANDSHAKE_FAILED,
            Error::AuthFailed => NP_AUTH_FAILED,
            Error::BadServerSignature => NP_BAD_SERVER_SIGNATURE,
            Error::ServerKeyChanged { .. } => NP_SERVER_KEY_CHANGED,
            Error::ServerKeyRejected => NP_SERVER_KEY_REJECTED,
            Error::NonceExhausted => NP_NONCE_EXHAUSTED,
            Error::Remote { .. } => NP_REMOTE_ERROR,
            Error::Busy { .. } => NP_BUSY,
            Error::ServerShutdown => NP_SERVER_SHUTDOWN,
            Error::InvalidArgument(_) => NP_INVALID_ARGUMENT,
            Error::BadState(_) => NP_BAD_STATE,
            Error::Closed => NP_CLOSED,
            Error::Io { .. } => NP_IO,
            Error::Timeout(_) => NP_TIMEOUT,
            Error::Eof => NP_EOF,
            Error::KeyFile { .. } => NP_KEY_FILE,
        }
    }
}

macro_rules! strings {
    ($($v:ident => $t:literal),* $(,)?) => {
        /// NUL-terminated descriptions for `np_status_str`.
        pub static STRINGS: &[(np_status, &std::ffi::CStr)] = &[$(($v, $t)),*];
    };
}

strings! {
    NP_OK => c"ok",
    NP_NO_EVENT => c"no event yet: more input is needed",
    NP_WOULD_BLOCK => c"operation would block",
    NP_EOF => c"connection closed by peer",
    NP_TIMEOUT => c"timed out",
    NP_INPUT_FULL => c"input buffer full: poll events first",
    NP_NULL_ARGUMENT => c"a required pointer argument was NULL",
    NP_INVALID_ARGUMENT => c"invalid argument",
    NP_BUFFER_TOO_SMALL => c"output buffer too small",
    NP_BAD_STATE => c"call not allowed in the current state",
    NP_PANIC => c"internal error (panic caught at the library boundary)",
    NP_CLOSED => c"connection is closed",
    NP_BAD_MAGIC => c"bad frame magic: not a netproto v1 peer",
    NP_BAD_VERSION => c"unsupported protocol version",
    NP_FRAME_TOO_LARGE => c"frame exceeds the maximum size",
    NP_BAD_CRC => c"frame CRC mismatch",
    NP_UNKNOWN_OPCODE => c"unknown opcode",
    NP_BAD_FLAGS => c"invalid frame flags",
    NP_BAD_RESERVED => c"reserved header field not zero",
    NP_MALFORMED => c"malformed message body",
    NP_UNEXPECTED_MESSAGE => c"message not allowed in this state",
    NP_DECRYPT_FAILED => c"decryption failed (tampered, replayed, reordered or reflected frame)",
    NP_HANDSHAKE_FAILED => c"handshake failed",
    NP_AUTH_FAILED => c"authentication failed",
    NP_BAD_SERVER_SIGNATURE => c"server could not prove it holds the user's verifier",
    NP_SERVER_KEY_CHANGED => c"server key differs from the pinned key",
    NP_SERVER_KEY_REJECTED => c"server key was not trusted",
    NP_NONCE_EXHAUSTED => c"nonce counter exhausted",
    NP_REMOTE_ERROR => c"the peer reported an error",
    NP_BUSY => c"server busy",
    NP_SERVER_SHUTDOWN => c"server shutting down",
    NP_IO => c"I/O error",
    NP_KEY_FILE => c"key file error",
}
