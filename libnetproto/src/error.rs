//! The library's error type: every way a frame, a handshake, a login or a socket can fail.
//!
//! Trust boundary: errors caused by the peer are data, never panics. Each variant maps to one
//! stable C status number (see `capi::status`).

use std::io;
use std::time::Duration;

use thiserror::Error;

/// Why a frame, handshake, login, socket or call failed. Each variant maps to one C status.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    // --- framing (fatal: close the connection) ---
    /// The frame does not start with the protocol magic.
    #[error("bad magic: not a netproto v1 peer")]
    BadMagic,
    /// The frame's version byte (carried) is not 1.
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// The declared body length exceeds the limit in force.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared body length.
        len: u64,
        /// The limit in force (before or after the handshake).
        max: u64,
    },
    /// The header CRC does not match the header and body.
    #[error("CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    BadCrc {
        /// CRC in the header.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// An opcode (carried) that protocol v1 does not define.
    #[error("unknown opcode {0:#06x}")]
    UnknownOpcode(u16),
    /// Flag bits (carried) that are unknown or not allowed on this opcode.
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    /// The reserved header field is not zero.
    #[error("reserved header field is not zero")]
    BadReserved,
    /// A message body that does not parse (what is wrong, carried).
    #[error("malformed message body: {0}")]
    Malformed(&'static str),
    /// A message not allowed in the connection's current state or direction.
    #[error("unexpected {opcode} in state {state}")]
    UnexpectedMessage {
        /// Protocol name of the message's opcode.
        opcode: &'static str,
        /// Name of the state that refused it.
        state: &'static str,
    },

    // --- security (fatal) ---
    /// An encrypted frame failed authentication.
    #[error("decryption failed: frame tampered, replayed, reordered or reflected")]
    DecryptFailed,
    /// The handshake could not complete (why, carried).
    #[error("handshake failed: {0}")]
    HandshakeFailed(&'static str),
    /// Unknown user or wrong password (indistinguishable on purpose).
    #[error("authentication failed: unknown user or wrong password")]
    AuthFailed,
    /// The server's SCRAM signature does not verify.
    #[error("server signature invalid: the server does not hold this user's verifier")]
    BadServerSignature,
    /// The server offered a key other than the one pinned for the host.
    #[error("server key for {host} changed: pinned {pinned}, offered {offered}; if the change is expected, remove the host's line from the known-servers file")]
    ServerKeyChanged {
        /// The host as named in the known-servers file.
        host: String,
        /// Fingerprint of the pinned key.
        pinned: String,
        /// Fingerprint of the key the server offered.
        offered: String,
    },
    /// The application refused the server's key.
    #[error("server key was not trusted")]
    ServerKeyRejected,
    /// The session's nonce counter ran out.
    #[error("nonce counter exhausted: the session must be re-established")]
    NonceExhausted,

    // --- the peer told us something went wrong ---
    /// The peer sent an ERROR frame that ended the connection or the call.
    #[error("server error {name} ({code}): {message}")]
    Remote {
        /// Wire error code (docs/PROTOCOL.md, "Error codes").
        code: u16,
        /// Its protocol name ("UNKNOWN" if the number is unknown).
        name: &'static str,
        /// The peer's message text.
        message: String,
    },
    /// The server answered a multi-output job (JOB_SUBMIT_MULTI, feature level 1.1) with the
    /// fatal ERROR an older server gives any opcode it does not know: it does not support
    /// multi-output jobs. The connection is closed; send the variants as separate jobs.
    #[error("the server does not support multi-output jobs (protocol feature level 1.1; it answered {code_name}: {message}); send the variants as separate jobs")]
    NotSupported {
        /// The wire name of the code it answered with (UNKNOWN_OPCODE, or PROTOCOL from
        /// servers before that code).
        code_name: &'static str,
        /// The server's text.
        message: String,
    },
    /// The server refused the request for load.
    #[error("server busy: retry after {retry_after_ms} ms")]
    Busy {
        /// How long the server asks the client to wait.
        retry_after_ms: u32,
    },
    /// The server is stopping.
    #[error("server is shutting down")]
    ServerShutdown,

    // --- caller errors ---
    /// An argument out of range (which, carried).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A call not allowed in the connection's state (why, carried).
    #[error("not allowed in this state: {0}")]
    BadState(&'static str),
    /// The connection is already closed.
    #[error("connection closed")]
    Closed,

    // --- I/O (io module only) ---
    /// An operating-system I/O error.
    #[error("I/O error: {msg}")]
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// Its text.
        msg: String,
    },
    /// A deadline passed (what was waited for, carried): the caller's own wait, a connect, a
    /// write, or one of the server's connection timers.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The client's dead-peer timer closed the connection: the server sent no frame for the
    /// configured dead-peer timeout, heartbeats notwithstanding. Distinct from [`Timeout`]
    /// (a wait of the caller's that ran out, after which the connection is still usable):
    /// this connection is gone, and every later call on it answers this error again.
    ///
    /// [`Timeout`]: Error::Timeout
    #[error("no frame from the server for {}: connection closed", span(*after))]
    PeerSilent {
        /// The dead-peer timeout in force (the configured value, not the measured silence,
        /// which depends on when the caller served the timer).
        after: Duration,
    },
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// A key or known-servers file could not be read, written or trusted.
    #[error("key file {path}: {msg}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}

/// A duration as a person reads it in an error message: whole seconds as "20 s", anything
/// else in milliseconds ("150 ms").
fn span(d: Duration) -> String {
    if d.subsec_nanos() == 0 && !d.is_zero() {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_named_with_the_timeout_in_force() {
        let e = Error::PeerSilent {
            after: Duration::from_secs(20),
        };
        assert_eq!(
            e.to_string(),
            "no frame from the server for 20 s: connection closed"
        );
        assert!(e.is_fatal());
        let e = Error::PeerSilent {
            after: Duration::from_millis(150),
        };
        assert_eq!(
            e.to_string(),
            "no frame from the server for 150 ms: connection closed"
        );
    }
}
