//! The library's error type: every way a frame, a handshake, a login or a socket can fail.
//!
//! Trust boundary: errors caused by the peer are data, never panics. Each variant maps to one
//! stable C status number (see `capi::status`).

use std::io;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    // --- framing (fatal: close the connection) ---
    #[error("bad magic: not a netproto v1 peer")]
    BadMagic,
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("unknown opcode {0:#06x}")]
    UnknownOpcode(u16),
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    #[error("reserved header field is not zero")]
    BadReserved,
    #[error("malformed message body: {0}")]
    Malformed(&'static str),
    #[error("unexpected {opcode} in state {state}")]
    UnexpectedMessage {
        opcode: &'static str,
        state: &'static str,
    },

    // --- security (fatal) ---
    #[error("decryption failed: frame tampered, replayed, reordered or reflected")]
    DecryptFailed,
    #[error("handshake failed: {0}")]
    HandshakeFailed(&'static str),
    #[error("authentication failed: unknown user or wrong password")]
    AuthFailed,
    #[error("server signature invalid: the server does not hold this user's verifier")]
    BadServerSignature,
    #[error("server key for {host} changed: pinned {pinned}, offered {offered}; if the change is expected, remove the host's line from the known-servers file")]
    ServerKeyChanged {
        host: String,
        pinned: String,
        offered: String,
    },
    #[error("server key was not trusted")]
    ServerKeyRejected,
    #[error("nonce counter exhausted: the session must be re-established")]
    NonceExhausted,

    // --- the peer told us something went wrong ---
    #[error("server error {name} ({code}): {message}")]
    Remote {
        code: u16,
        name: &'static str,
        message: String,
    },
    #[error("server busy: retry after {retry_after_ms} ms")]
    Busy { retry_after_ms: u32 },
    #[error("server is shutting down")]
    ServerShutdown,

    // --- caller errors ---
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("not allowed in this state: {0}")]
    BadState(&'static str),
    #[error("connection closed")]
    Closed,

    // --- I/O (io module only) ---
    #[error("I/O error: {msg}")]
    Io { kind: io::ErrorKind, msg: String },
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("connection closed by peer")]
    Eof,
    #[error("key file {path}: {msg}")]
    KeyFile { path: String, msg: String },
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout("socket"),
            io::ErrorKind::UnexpectedEof => Error::Eof,
            kind => Error::Io {
                kind,
                msg: e.to_string(),
            },
        }
    }
}

impl Error {
    /// Errors after which the connection cannot continue.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Error::InvalidArgument(_) | Error::BadState(_) | Error::Busy { .. }
        )
    }
}
