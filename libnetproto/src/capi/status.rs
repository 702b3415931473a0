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
    NP_OK,
    NP_NO_EVENT,
    NP_WOULD_BLOCK,
    NP_EOF,
    NP_TIMEOUT,
    NP_INPUT_FULL,
    NP_NULL_ARGUMENT,
    NP_INVALID_ARGUMENT,
    NP_BUFFER_TOO_SMALL,
    NP_BAD_STATE,
    NP_PANIC,
    NP_CLOSED,
    NP_BAD_MAGIC,
    NP_BAD_VERSION,
    NP_FRAME_TOO_LARGE,
    NP_BAD_CRC,
    NP_UNKNOWN_OPCODE,
    NP_BAD_FLAGS,
    NP_BAD_RESERVED,
    NP_MALFORMED,
    NP_UNEXPECTED_MESSAGE,
    NP_DECRYPT_FAILED,
    NP_HANDSHAKE_FAILED,
    NP_AUTH_FAILED,
    NP_BAD_SERVER_SIGNATURE,
    NP_SERVER_KEY_CHANGED,
    NP_SERVER_KEY_REJECTED,
    NP_NONCE_EXHAUSTED,
    NP_REMOTE_ERROR,
    NP_BUSY,
    NP_SERVER_SHUTDOWN,
    NP_IO,
    NP_KEY_FILE,
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
        pub static STRINGS: &[(np_status, &str)] = &[$(($v, $t)),*];
    };
}

strings! {
    NP_OK => "ok\0",
    NP_NO_EVENT => "no event yet: more input is needed\0",
    NP_WOULD_BLOCK => "operation would block\0",
    NP_EOF => "connection closed by peer\0",
    NP_TIMEOUT => "timed out\0",
    NP_INPUT_FULL => "input buffer full: poll events first\0",
    NP_NULL_ARGUMENT => "a required pointer argument was NULL\0",
    NP_INVALID_ARGUMENT => "invalid argument\0",
    NP_BUFFER_TOO_SMALL => "output buffer too small\0",
    NP_BAD_STATE => "call not allowed in the current state\0",
    NP_PANIC => "internal error (panic caught at the library boundary)\0",
    NP_CLOSED => "connection is closed\0",
    NP_BAD_MAGIC => "bad frame magic: not a netproto v1 peer\0",
    NP_BAD_VERSION => "unsupported protocol version\0",
    NP_FRAME_TOO_LARGE => "frame exceeds the maximum size\0",
    NP_BAD_CRC => "frame CRC mismatch\0",
    NP_UNKNOWN_OPCODE => "unknown opcode\0",
    NP_BAD_FLAGS => "invalid frame flags\0",
    NP_BAD_RESERVED => "reserved header field not zero\0",
    NP_MALFORMED => "malformed message body\0",
    NP_UNEXPECTED_MESSAGE => "message not allowed in this state\0",
    NP_DECRYPT_FAILED => "decryption failed (tampered, replayed, reordered or reflected frame)\0",
    NP_HANDSHAKE_FAILED => "handshake failed\0",
    NP_AUTH_FAILED => "authentication failed\0",
    NP_BAD_SERVER_SIGNATURE => "server could not prove it holds the user's verifier\0",
    NP_SERVER_KEY_CHANGED => "server key differs from the pinned key\0",
    NP_SERVER_KEY_REJECTED => "server key was not trusted\0",
    NP_NONCE_EXHAUSTED => "nonce counter exhausted\0",
    NP_REMOTE_ERROR => "the peer reported an error\0",
    NP_BUSY => "server busy\0",
    NP_SERVER_SHUTDOWN => "server shutting down\0",
    NP_IO => "I/O error\0",
    NP_KEY_FILE => "key file error\0",
}

/// NUL-terminated (as `/// NUL-terminated wire error code namesstr` with a trailing NUL, which cbindgen 0.24 can parse) wire error code names for `np_error_code_name`.
pub fn error_code_cstr(c: crate::opcode::ErrorCode) -> &'static str {
    use crate::opcode::ErrorCode::*;
    match c {
        Protocol => "PROTOCOL\0",
        UnexpectedMessage => "UNEXPECTED_MESSAGE\0",
        DuplicateRequest => "DUPLICATE_REQUEST\0",
        UnknownRequest => "UNKNOWN_REQUEST\0",
        LengthMismatch => "LENGTH_MISMATCH\0",
        AuthFailed => "AUTH_FAILED\0",
        NotLoggedIn => "NOT_LOGGED_IN\0",
        BadSpec => "BAD_SPEC\0",
        InputTooLarge => "INPUT_TOO_LARGE\0",
        TooManyPixels => "TOO_MANY_PIXELS\0",
        UnsupportedFormat => "UNSUPPORTED_FORMAT\0",
        DecodeFailed => "DECODE_FAILED\0",
        BadGeometry => "BAD_GEOMETRY\0",
        EncodeFailed => "ENCODE_FAILED\0",
        PoisonInput => "POISON_INPUT\0",
        TooManyInFlight => "TOO_MANY_IN_FLIGHT\0",
        Timeout => "TIMEOUT\0",
        WorkerCrashed => "WORKER_CRASHED\0",
        ShuttingDown => "SHUTTING_DOWN\0",
        TooManyConnections => "TOO_MANY_CONNECTIONS\0",
        IdleTimeout => "IDLE_TIMEOUT\0",
        SlowClient => "SLOW_CLIENT\0",
        HandshakeTimeout => "HANDSHAKE_TIMEOUT\0",
        Internal => "INTERNAL\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_string_and_error_names_agree() {
        for s in ALL {
            assert!(
                STRINGS.iter().any(|(k, t)| *k == s && t.ends_with('\0')),
                "{s:?} has no string"
            );
        }
        assert_eq!(STRINGS.len(), ALL.len());
        for c in crate::opcode::ErrorCode::ALL {
            assert_eq!(error_code_cstr(c).trim_end_matches('\0'), c.name());
            assert!(error_code_cstr(c).ends_with('\0'));
        }
    }
}
