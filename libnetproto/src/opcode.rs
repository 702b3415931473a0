//! Opcode table, frame flags and wire error codes of protocol v1.
//!
//! Trust boundary: raw numbers from the network become these enums or a fatal error.

/// Frame opcodes. Numbers are stable: never reuse or renumber.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Client → server, clear: protocol version and client ephemeral key.
    Hello = 0x0001,
    /// Server → client, clear with encrypted parts: server ephemeral, static key, parameters.
    HelloReply = 0x0002,
    /// Client → server: user name.
    LoginStart = 0x0003,
    /// Server → client: salt and iteration count.
    LoginChallenge = 0x0004,
    /// Client → server: SCRAM client proof.
    LoginProof = 0x0005,
    /// Server → client: SCRAM server signature; the session is ready.
    LoginOk = 0x0006,
    /// Client → server: start of a job (declared length, op spec, first data).
    JobSubmit = 0x0010,
    /// Client → server: more job input.
    JobData = 0x0011,
    /// Server → client: start of a job result (length, format, size, timings, first data).
    JobResult = 0x0012,
    /// Server → client: more job output.
    ResultData = 0x0013,
    /// Either way: liveness probe, answered with PONG echoing the payload.
    Ping = 0x0020,
    /// Answer to PING.
    Pong = 0x0021,
    /// Client → server: ask for server counters.
    StatsRequest = 0x0022,
    /// Server → client: counters as name/value pairs.
    StatsReply = 0x0023,
    /// Either way: typed error, for one request (request id ≠ 0) or the connection (0).
    Error = 0x0030,
    /// Server → client: request refused for load; retry after the given delay.
    Busy = 0x0031,
    /// Server → client: the server is stopping; in-flight jobs finish within the grace period.
    Shutdown = 0x0032,
    /// Either way: orderly close.
    Bye = 0x0033,
}

impl Opcode {
    pub const ALL: [Opcode; 18] = [
        Opcode::Hello,
        Opcode::HelloReply,
        Opcode::LoginStart,
        Opcode::LoginChallenge,
        Opcode::LoginProof,
        Opcode::LoginOk,
        Opcode::JobSubmit,
        Opcode::JobData,
        Opcode::JobResult,
        Opcode::ResultData,
        Opcode::Ping,
        Opcode::Pong,
        Opcode::StatsRequest,
        Opcode::StatsReply,
        Opcode::Error,
        Opcode::Busy,
        Opcode::Shutdown,
        Opcode::Bye,
    ];

    pub fn from_u16(v: u16) -> Option<Opcode> {
        Opcode::ALL.iter().copied().find(|op| *op as u16 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::Hello => "HELLO",
            Opcode::HelloReply => "HELLO_REPLY",
            Opcode::LoginStart => "LOGIN_START",
            Opcode::LoginChallenge => "LOGIN_CHALLENGE",
            Opcode::LoginProof => "LOGIN_PROOF",
            Opcode::LoginOk => "LOGIN_OK",
            Opcode::JobSubmit => "JOB_SUBMIT",
            Opcode::JobData => "JOB_DATA",
            Opcode::JobResult => "JOB_RESULT",
            Opcode::ResultData => "RESULT_DATA",
            Opcode::Ping => "PING",
            Opcode::Pong => "PONG",
            Opcode::StatsRequest => "STATS_REQUEST",
            Opcode::StatsReply => "STATS_REPLY",
            Opcode::Error => "ERROR",
            Opcode::Busy => "BUSY",
            Opcode::Shutdown => "SHUTDOWN",
            Opcode::Bye => "BYE",
        }
    }

    /// Whether frames of this opcode may carry the LAST flag (chunked streams).
    pub fn is_chunked(self) -> bool {
        matches!(
            self,
            Opcode::JobSubmit | Opcode::JobData | Opcode::JobResult | Opcode::ResultData
        )
    }
}

/// Frame flag bits.
pub mod flags {
    /// The body is ChaCha20-Poly1305 ciphertext followed by its tag.
    pub const ENCRYPTED: u8 = 0x01;
    /// Last frame of a chunked stream (JOB_SUBMIT/JOB_DATA, JOB_RESULT/RESULT_DATA).
    pub const LAST: u8 = 0x02;
    /// Every bit a v1 peer understands; any other bit is a fatal error.
    pub const KNOWN: u8 = ENCRYPTED | LAST;
}

/// Error codes carried in ERROR frames. Stable numbers, grouped by who is at fault.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // 1xx: the peer broke the protocol.
    Protocol = 100,
    UnexpectedMessage = 101,
    DuplicateRequest = 102,
    UnknownRequest = 103,
    LengthMismatch = 104,
    // 2xx: authentication.
    AuthFailed = 200,
    NotLoggedIn = 201,
    // 3xx: the request is not acceptable.
    BadSpec = 300,
    InputTooLarge = 301,
    TooManyPixels = 302,
    UnsupportedFormat = 303,
    DecodeFailed = 304,
    BadGeometry = 305,
    EncodeFailed = 306,
    PoisonInput = 307,
    TooManyInFlight = 308,
    // 4xx: the server could not do it now.
    Timeout = 400,
    WorkerCrashed = 401,
    ShuttingDown = 402,
    TooManyConnections = 403,
    IdleTimeout = 404,
    SlowClient = 405,
    HandshakeTimeout = 406,
    // 5xx: the server failed.
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
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Protocol => "PROTOCOL",
            ErrorCode::UnexpectedMessage => "UNEXPECTED_MESSAGE",
            ErrorCode::DuplicateRequest => "DUPLICATE_REQUEST",
            ErrorCode::UnknownRequest => "UNKNOWN_REQUEST",
            ErrorCode::LengthMismatch => "LENGTH_MISMATCH",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::NotLoggedIn => "NOT_LOGGED_IN",
            ErrorCode::BadSpec => "BAD_SPEC",
            ErrorCode::InputTooLarge => "INPUT_TOO_LARGE",
            ErrorCode::TooManyPixels => "TOO_MANY_PIXELS",
            ErrorCode::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            ErrorCode::DecodeFailed => "DECODE_FAILED",
            ErrorCode::BadGeometry => "BAD_GEOMETRY",
            ErrorCode::EncodeFailed => "ENCODE_FAILED",
            ErrorCode::PoisonInput => "POISON_INPUT",
            ErrorCode::TooManyInFlight => "TOO_MANY_IN_FLIGHT",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::WorkerCrashed => "WORKER_CRASHED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::IdleTimeout => "IDLE_TIMEOUT",
            ErrorCode::SlowClient => "SLOW_CLIENT",
            ErrorCode::HandshakeTimeout => "HANDSHAKE_TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Whether the same request may succeed if sent again later (to this or a restarted server).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_numbers_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in Opcode::ALL {
            assert!(seen.insert(op as u16), "duplicate opcode {op:?}");
            assert_eq!(Opcode::from_u16(op as u16), Some(op));
        }
        assert_eq!(Opcode::from_u16(0), None);
        assert_eq!(Opcode::from_u16(0xffff), None);
    }

    #[test]
    fn error_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c as u16));
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
            assert!(!c.name().is_empty());
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
