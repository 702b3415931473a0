//! Exit codes and the one-line failure report: every way imgclient can fail, in one table.
//!
//! Trust boundary: none of its own. This is where failures from every other boundary (local
//! files, the network, the server's answers) are classified into what the user and calling
//! scripts see, so the exit kind of every library status and wire error code (by its number)
//! is decided here and nowhere else. Whether a failure is worth retrying is `retry.rs`'s.

use std::fmt;

use netproto_sys::ffi;
use netproto_sys::{ErrorCode, NpError};

/// What went wrong, as the process exit code says it. `0` is success and has no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitKind {
    Usage = 1,
    Io = 2,
    Connect = 3,
    Auth = 4,
    KeyChanged = 5,
    Rejected = 6,
    Busy = 7,
    Protocol = 8,
}

impl ExitKind {
    pub const ALL: [ExitKind; 8] = [
        ExitKind::Usage,
        ExitKind::Io,
        ExitKind::Connect,
        ExitKind::Auth,
        ExitKind::KeyChanged,
        ExitKind::Rejected,
        ExitKind::Busy,
        ExitKind::Protocol,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn describe(self) -> &'static str {
        match self {
            ExitKind::Usage => "usage error (bad arguments or op spec, missing password)",
            ExitKind::Io => "local file error (input, output, password or known-servers file)",
            ExitKind::Connect => "connection failed, was lost or timed out (after retries)",
            ExitKind::Auth => "authentication failed (user or password)",
            ExitKind::KeyChanged => "server key changed (edit the known-servers file)",
            ExitKind::Rejected => "server rejected the job (bad spec, too large, decode failed...)",
            ExitKind::Busy => "server busy or shutting down beyond the retry budget",
            ExitKind::Protocol => "protocol error (malformed or unexpected data)",
        }
    }
}

/// The `--help` footer, generated from the table above so the two cannot drift apart.
pub fn exit_codes_help() -> String {
    let mut s = String::from("Exit codes:\n  0  success\n");
    for k in ExitKind::ALL {
        s += &format!("  {}  {}\n", k.code(), k.describe());
    }
    s += "`imgclient health` exits 0 when the server answers ready and 1 when it does not.\n\n";
    s += "Durations: 500ms, 10s, 1.5s, 2m, 1h; a bare number is seconds (as for imgserver).\n\n";
    s += "Environment: each connection option has a variable named after it (--retry-for: \
          IMGCLIENT_RETRY_FOR; the flag wins), and IMGCLIENT_PASSWORD holds the password; \
          RUST_LOG is the log filter (e.g. debug).";
    s
}

/// One failure as printed: `imgclient: <what failed>: <why>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ExitKind,
    pub what: String,
    pub why: String,
}

impl Failure {
    pub fn new(kind: ExitKind, what: impl Into<String>, why: impl fmt::Display) -> Failure {
        Failure {
            kind,
            what: what.into(),
            why: why.to_string(),
        }
    }

    pub fn usage(what: impl Into<String>, why: impl fmt::Display) -> Failure {
        Failure::new(ExitKind::Usage, what, why)
    }

    pub fn io(what: impl Into<String>, why: impl fmt::Display) -> Failure {
        Failure::new(ExitKind::Io, what, why)
    }

    /// A library error, classified by its status (and wire code, for remote errors).
    pub fn from_np(what: impl Into<String>, e: &NpError) -> Failure {
        Failure::new(kind_of_np(e), what, &e.message)
    }

    /// A wire ERROR the server sent for a request.
    pub fn from_wire(what: impl Into<String>, code: u16, message: &str) -> Failure {
        let why = if message.is_empty() {
            wire_name(code)
        } else {
            format!("{}: {message}", wire_name(code))
        };
        Failure::new(kind_of_wire(code), what, why)
    }

    pub fn exit_code(&self) -> u8 {
        self.kind.code()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.what.is_empty() {
            f.write_str(&self.why)
        } else {
            write!(f, "{}: {}", self.what, self.why)
        }
    }
}

/// `NAME (code)`, or `error code N` for a code this build does not know.
pub fn wire_name(code: u16) -> String {
    match ErrorCode::from_u16(code) {
        Some(c) => format!("{} ({code})", c.name()),
        None => format!("error code {code}"),
    }
}

/// Exit kind for a wire error code from an ERROR frame.
pub fn kind_of_wire(code: u16) -> ExitKind {
    use ErrorCode::*;
    match ErrorCode::from_u16(code) {
        Some(AuthFailed | NotLoggedIn) => ExitKind::Auth,
        Some(
            BadSpec | InputTooLarge | TooManyPixels | UnsupportedFormat | DecodeFailed
            | BadGeometry | EncodeFailed | PoisonInput | Timeout | WorkerCrashed | Internal,
        ) => ExitKind::Rejected,
        Some(TooManyInFlight | ShuttingDown | TooManyConnections | RateLimited) => ExitKind::Busy,
        Some(IdleTimeout | SlowClient | HandshakeTimeout) => ExitKind::Connect,
        Some(
            Protocol | UnexpectedMessage | DuplicateRequest | UnknownRequest | LengthMismatch
            | BadMagic | BadCrc | FrameTooLarge | UnknownOpcode,
        )
        | None => ExitKind::Protocol,
    }
}

/// Exit kind for a failed library call.
pub fn kind_of_np(e: &NpError) -> ExitKind {
    match e.status {
        ffi::NP_TIMEOUT | ffi::NP_PEER_SILENT | ffi::NP_EOF | ffi::NP_IO | ffi::NP_CLOSED => {
            ExitKind::Connect
        }
        ffi::NP_AUTH_FAILED | ffi::NP_BAD_SERVER_SIGNATURE => ExitKind::Auth,
        ffi::NP_SERVER_KEY_CHANGED | ffi::NP_SERVER_KEY_REJECTED => ExitKind::KeyChanged,
        ffi::NP_KEY_FILE => ExitKind::Io,
        ffi::NP_BUSY | ffi::NP_SERVER_SHUTDOWN => ExitKind::Busy,
        ffi::NP_REMOTE_ERROR => e.remote_code().map_or(ExitKind::Protocol, kind_of_wire),
        _ => ExitKind::Protocol,
    }
}

/// A short stable name for a library status, for error tallies: its C name without `NP_`,
/// from the library's own status table (`OTHER` for a number this build does not know).
pub fn status_name(status: ffi::np_status) -> &'static str {
    ffi::STATUSES
        .iter()
        .find(|(_, n)| *n == status)
        .map_or("OTHER", |(name, _)| {
            name.strip_prefix("NP_").unwrap_or(name)
        })
}

/// A tally key for a library error: the wire code's name for remote errors, else the status.
pub fn np_tally_name(e: &NpError) -> String {
    match (e.status, e.remote_code()) {
        (ffi::NP_REMOTE_ERROR, Some(code)) => wire_name(code),
        (s, _) => status_name(s).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netproto_sys::Remote;

    fn np(status: ffi::np_status, message: &str) -> NpError {
        NpError {
            status,
            remote: None,
            message: message.to_string(),
        }
    }

    /// What the binding builds for an ERROR frame the peer sent: the code as a number.
    fn remote(code: u16, message: &str) -> NpError {
        NpError {
            status: ffi::NP_REMOTE_ERROR,
            remote: Some(Remote {
                code,
                retry_after_ms: 0,
            }),
            message: message.to_string(),
        }
    }

    #[test]
    fn help_lists_every_code_with_its_description() {
        let help = exit_codes_help();
        for k in ExitKind::ALL {
            let line = format!("  {}  {}", k.code(), k.describe());
            assert!(help.contains(&line), "missing: {line}");
        }
        assert!(help.contains("  0  success"));
        let codes: Vec<u8> = ExitKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=8).collect::<Vec<u8>>());
    }

    #[test]
    fn library_statuses_map_to_kinds() {
        assert_eq!(kind_of_np(&np(ffi::NP_EOF, "")), ExitKind::Connect);
        assert_eq!(kind_of_np(&np(ffi::NP_TIMEOUT, "")), ExitKind::Connect);
        assert_eq!(kind_of_np(&np(ffi::NP_PEER_SILENT, "")), ExitKind::Connect);
        assert_eq!(kind_of_np(&np(ffi::NP_AUTH_FAILED, "")), ExitKind::Auth);
        assert_eq!(
            kind_of_np(&np(ffi::NP_SERVER_KEY_CHANGED, "")),
            ExitKind::KeyChanged
        );
        assert_eq!(kind_of_np(&np(ffi::NP_KEY_FILE, "")), ExitKind::Io);
        assert_eq!(
            kind_of_np(&np(ffi::NP_DECRYPT_FAILED, "")),
            ExitKind::Protocol
        );
        assert_eq!(kind_of_np(&np(ffi::NP_BUSY, "")), ExitKind::Busy);
    }

    #[test]
    fn remote_errors_are_classified_by_their_wire_code() {
        let e = remote(403, "server error TOO_MANY_CONNECTIONS (403): limit 1000");
        assert_eq!(kind_of_np(&e), ExitKind::Busy);
        assert_eq!(np_tally_name(&e), "TOO_MANY_CONNECTIONS (403)");
        let e = remote(300, "server error BAD_SPEC (300): x");
        assert_eq!(kind_of_np(&e), ExitKind::Rejected);
        // The number decides, not the text: a message that names another code changes nothing.
        let e = remote(200, "server error TOO_MANY_CONNECTIONS (403)");
        assert_eq!(kind_of_np(&e), ExitKind::Auth);
        assert_eq!(np_tally_name(&e), "AUTH_FAILED (200)");
        // A remote error without a code (none reported) is a protocol matter, not retried.
        let e = np(ffi::NP_REMOTE_ERROR, "server error BAD_SPEC (300): x");
        assert_eq!(kind_of_np(&e), ExitKind::Protocol);
        assert_eq!(np_tally_name(&e), "REMOTE_ERROR");
    }

    #[test]
    fn every_library_status_has_its_own_tally_name() {
        let mut seen = std::collections::HashSet::new();
        for &(c_name, status) in ffi::STATUSES {
            let name = status_name(status);
            assert_eq!(Some(name), c_name.strip_prefix("NP_"), "{c_name}");
            assert!(!name.is_empty() && name != "OTHER", "{c_name}");
            assert!(seen.insert(name), "{c_name} shares its name");
        }
        assert_eq!(status_name(ffi::NP_TIMEOUT), "TIMEOUT");
        assert_eq!(status_name(ffi::NP_REMOTE_ERROR), "REMOTE_ERROR");
        assert_eq!(status_name(9999), "OTHER");
        assert_eq!(np_tally_name(&np(ffi::NP_EOF, "closed")), "EOF");
    }

    #[test]
    fn wire_codes_map_to_kinds() {
        assert_eq!(kind_of_wire(300), ExitKind::Rejected);
        assert_eq!(kind_of_wire(304), ExitKind::Rejected);
        assert_eq!(kind_of_wire(200), ExitKind::Auth);
        assert_eq!(kind_of_wire(402), ExitKind::Busy);
        assert_eq!(kind_of_wire(404), ExitKind::Connect);
        assert_eq!(kind_of_wire(102), ExitKind::Protocol);
        assert_eq!(kind_of_wire(9999), ExitKind::Protocol);
        // Every known code has a kind other than the unknown-code fallback's where it should.
        for c in ErrorCode::ALL {
            let k = kind_of_wire(c as u16);
            assert!(ExitKind::ALL.contains(&k));
        }
    }

    #[test]
    fn failure_prints_one_line() {
        let f = Failure::from_wire("cat.png", 304, "cannot decode image: bad PNG");
        assert_eq!(f.kind, ExitKind::Rejected);
        assert_eq!(
            f.to_string(),
            "cat.png: DECODE_FAILED (304): cannot decode image: bad PNG"
        );
        assert_eq!(f.exit_code(), 6);
        assert!(!f.to_string().contains('\n'));
    }
}
