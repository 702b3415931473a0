// The wire table: every stable number of protocol v1 and of the C ABI, written once.
//
// This file is not a module. It is one invocation of a `wire_table!` macro that each includer
// defines for itself: libnetproto (src/wire.rs) expands it into the `Opcode`/`ErrorCode` enums,
// the limits and the status descriptions; netproto-sys (src/ffi.rs) includes the same file with
// `include!` (a source include, not a crate dependency: nothing is linked) and expands it into
// its constants. The C header gets the numbers through src/capi/wire.rs, which a unit test
// regenerates from this table (`make header`) and checks (`make check-header`).
//
// Numbers are stable: never renumber or reuse one; a retired number stays listed as reserved.
wire_table! {
    // Frame opcodes: ident = number, protocol name, whether the LAST flag is allowed.
    opcodes {
        /// Client → server, clear: protocol version and client ephemeral key.
        Hello = 0x0001, "HELLO", chunked: false;
        /// Server → client, clear with encrypted parts: server ephemeral, static key, parameters.
        HelloReply = 0x0002, "HELLO_REPLY", chunked: false;
        /// Client → server: user name.
        LoginStart = 0x0003, "LOGIN_START", chunked: false;
        /// Server → client: salt and iteration count.
        LoginChallenge = 0x0004, "LOGIN_CHALLENGE", chunked: false;
        /// Client → server: SCRAM client proof.
        LoginProof = 0x0005, "LOGIN_PROOF", chunked: false;
        /// Server → client: SCRAM server signature; the session is ready.
        LoginOk = 0x0006, "LOGIN_OK", chunked: false;
        /// Client → server: start of a job (declared length, op spec, first data).
        JobSubmit = 0x0010, "JOB_SUBMIT", chunked: true;
        /// Client → server: more job input.
        JobData = 0x0011, "JOB_DATA", chunked: true;
        /// Server → client: start of a job result (length, format, size, timings, first data).
        JobResult = 0x0012, "JOB_RESULT", chunked: true;
        /// Server → client: more job output.
        ResultData = 0x0013, "RESULT_DATA", chunked: true;
        /// Client → server (feature level 1.1): start of a multi-output job, the same body as
        /// JOB_SUBMIT with a variant list (2..=MAX_VARIANTS op specs separated by `;`) as spec.
        JobSubmitMulti = 0x0014, "JOB_SUBMIT_MULTI", chunked: true;
        /// Server → client (1.1, only for a JOB_SUBMIT_MULTI): start of one variant's result
        /// (index, result info, first data); RESULT_DATA frames continue it.
        VariantResult = 0x0015, "VARIANT_RESULT", chunked: true;
        /// Server → client (1.1, only for a JOB_SUBMIT_MULTI): one variant failed (index and an
        /// ERROR body); the other variants still come.
        VariantError = 0x0016, "VARIANT_ERROR", chunked: false;
        /// Either way: liveness probe, answered with PONG echoing the payload.
        Ping = 0x0020, "PING", chunked: false;
        /// Answer to PING.
        Pong = 0x0021, "PONG", chunked: false;
        /// Client → server: ask for server counters.
        StatsRequest = 0x0022, "STATS_REQUEST", chunked: false;
        /// Server → client: counters as name/value pairs.
        StatsReply = 0x0023, "STATS_REPLY", chunked: false;
        /// Either way: typed error, for one request (request id ≠ 0) or the connection (0).
        Error = 0x0030, "ERROR", chunked: false;
        /// Server → client: request refused for load; retry after the given delay.
        Busy = 0x0031, "BUSY", chunked: false;
        /// Server → client: the server is stopping; in-flight jobs finish within the grace period.
        Shutdown = 0x0032, "SHUTDOWN", chunked: false;
        /// Either way: orderly close.
        Bye = 0x0033, "BYE", chunked: false;
        /// Client → server, clear, empty, as a connection's first frame instead of HELLO: is
        /// the server up and ready? Needs no key and no login.
        Probe = 0x0040, "PROBE", chunked: false;
        /// Server → client, clear: the one-byte answer to PROBE (ready, not ready, draining);
        /// the server then closes the connection.
        ProbeReply = 0x0041, "PROBE_REPLY", chunked: false;
    }

    // Error codes of ERROR frames: ident = number, protocol name, whether the same request may
    // succeed later, whether the number is retired (reserved: never sent, never reused).
    // 1xx the peer broke the protocol, 2xx authentication, 3xx the request is not acceptable,
    // 4xx the server could not do it now, 5xx the server failed.
    error_codes {
        /// The peer broke the framing, encryption or message rules.
        Protocol = 100, "PROTOCOL", retryable: false, reserved: false;
        /// A frame not valid in the current state or direction.
        UnexpectedMessage = 101, "UNEXPECTED_MESSAGE", retryable: false, reserved: false;
        /// The request id is already in use by an in-flight request.
        DuplicateRequest = 102, "DUPLICATE_REQUEST", retryable: false, reserved: false;
        /// Reserved (was: a frame names a request id that is not in flight; the library treats
        /// data without an open stream as PROTOCOL).
        UnknownRequest = 103, "UNKNOWN_REQUEST", retryable: false, reserved: true;
        /// Reserved (was: a stream's data does not match its declared length; the library treats
        /// an overrun or an early LAST as PROTOCOL).
        LengthMismatch = 104, "LENGTH_MISMATCH", retryable: false, reserved: true;
        /// The frame does not start with the magic "NP": the peer does not speak netproto v1,
        /// or the stream lost its framing.
        BadMagic = 105, "BAD_MAGIC", retryable: false, reserved: false;
        /// The frame's CRC-32C does not match its header and body: damaged in transit, or the
        /// stream lost its framing.
        BadCrc = 106, "BAD_CRC", retryable: false, reserved: false;
        /// The frame declares a longer body than the receiver accepts (the limit before keys
        /// exist is lower than after).
        FrameTooLarge = 107, "FRAME_TOO_LARGE", retryable: false, reserved: false;
        /// The frame's opcode is not one the receiver knows: how a peer of an older feature
        /// level refuses a newer opcode (fatal). Peers before this code sent PROTOCOL with the
        /// text `unknown opcode 0x…` instead.
        UnknownOpcode = 108, "UNKNOWN_OPCODE", retryable: false, reserved: false;
        /// Unknown user or wrong password (indistinguishable).
        AuthFailed = 200, "AUTH_FAILED", retryable: false, reserved: false;
        /// A frame other than the expected handshake or login frame before login completed.
        NotLoggedIn = 201, "NOT_LOGGED_IN", retryable: false, reserved: false;
        /// The op spec does not parse or a value is out of range.
        BadSpec = 300, "BAD_SPEC", retryable: false, reserved: false;
        /// Declared input larger than the server accepts.
        InputTooLarge = 301, "INPUT_TOO_LARGE", retryable: false, reserved: false;
        /// The input image, or an image an op would produce, exceeds the pixel limit.
        TooManyPixels = 302, "TOO_MANY_PIXELS", retryable: false, reserved: false;
        /// The input is not an image in a supported format.
        UnsupportedFormat = 303, "UNSUPPORTED_FORMAT", retryable: false, reserved: false;
        /// The image data is malformed.
        DecodeFailed = 304, "DECODE_FAILED", retryable: false, reserved: false;
        /// An op does not fit the image.
        BadGeometry = 305, "BAD_GEOMETRY", retryable: false, reserved: false;
        /// The output could not be encoded.
        EncodeFailed = 306, "ENCODE_FAILED", retryable: false, reserved: false;
        /// The server refuses this input because processing it cost two workers (crashes,
        /// sandbox violations, overruns of the job time limit, or a mix); the server retried it
        /// once itself.
        PoisonInput = 307, "POISON_INPUT", retryable: false, reserved: false;
        /// The connection already has its maximum of jobs in flight.
        TooManyInFlight = 308, "TOO_MANY_IN_FLIGHT", retryable: true, reserved: false;
        /// No worker could take the job within the server's job time limit (none was healthy).
        Timeout = 400, "TIMEOUT", retryable: true, reserved: false;
        /// Reserved (was: the worker processing the job died; the server retries such a job once,
        /// then answers POISON_INPUT).
        WorkerCrashed = 401, "WORKER_CRASHED", retryable: true, reserved: true;
        /// The server is stopping and takes no new work.
        ShuttingDown = 402, "SHUTTING_DOWN", retryable: true, reserved: false;
        /// The server refuses the connection.
        TooManyConnections = 403, "TOO_MANY_CONNECTIONS", retryable: true, reserved: false;
        /// The connection was idle too long. Retryable: the server closes the connection, and
        /// the same request sent on a new one may succeed.
        IdleTimeout = 404, "IDLE_TIMEOUT", retryable: true, reserved: false;
        /// The client reads or writes too slowly. Retryable on a new connection, as above.
        SlowClient = 405, "SLOW_CLIENT", retryable: true, reserved: false;
        /// Handshake and login did not complete in time (for example on a loaded server).
        /// Retryable on a new connection, as above.
        HandshakeTimeout = 406, "HANDSHAKE_TIMEOUT", retryable: true, reserved: false;
        /// Too many connections, failed logins or cheap requests (PING, STATS) from this
        /// address or on this connection. The text starts with `retry-after-ms=N;`: retry no
        /// sooner than N milliseconds (the one ERROR text with a stable, machine-read part).
        RateLimited = 407, "RATE_LIMITED", retryable: true, reserved: false;
        /// The server failed.
        Internal = 500, "INTERNAL", retryable: false, reserved: false;
    }

    // C ABI status codes (`np_status`): name = number, description. Grouped in ranges by
    // cause: 0.. outcomes, 100.. the caller's mistake, 200.. framing (fatal), 300.. security
    // (fatal), 400.. the peer reported a problem, 500.. the operating system.
    statuses {
        NP_OK = 0, "ok";
        NP_NO_EVENT = 1, "no event yet: more input is needed";
        NP_WOULD_BLOCK = 2, "operation would block";
        NP_EOF = 3, "connection closed by peer";
        NP_TIMEOUT = 4, "timed out";
        NP_INPUT_FULL = 5, "input buffer full: poll events first";
        NP_PEER_SILENT = 6, "the peer sent no frame for the dead-peer timeout: the connection is closed";
        NP_NULL_ARGUMENT = 100, "a required pointer argument was NULL";
        NP_INVALID_ARGUMENT = 101, "invalid argument";
        NP_BUFFER_TOO_SMALL = 102, "output buffer too small";
        NP_BAD_STATE = 103, "call not allowed in the current state";
        NP_PANIC = 104, "internal error (panic caught at the library boundary)";
        NP_CLOSED = 105, "connection is closed";
        NP_BAD_MAGIC = 200, "bad frame magic: not a netproto v1 peer";
        NP_BAD_VERSION = 201, "unsupported protocol version";
        NP_FRAME_TOO_LARGE = 202, "frame exceeds the maximum size";
        NP_BAD_CRC = 203, "frame CRC mismatch";
        NP_UNKNOWN_OPCODE = 204, "unknown opcode";
        NP_BAD_FLAGS = 205, "invalid frame flags";
        NP_BAD_RESERVED = 206, "reserved header field not zero";
        NP_MALFORMED = 207, "malformed message body";
        NP_UNEXPECTED_MESSAGE = 208, "message not allowed in this state";
        NP_DECRYPT_FAILED = 300, "decryption failed (tampered, replayed, reordered or reflected frame)";
        NP_HANDSHAKE_FAILED = 301, "handshake failed";
        NP_AUTH_FAILED = 302, "authentication failed";
        NP_BAD_SERVER_SIGNATURE = 303, "server could not prove it holds the user's verifier";
        NP_SERVER_KEY_CHANGED = 304, "server key differs from the pinned key";
        NP_SERVER_KEY_REJECTED = 305, "server key was not trusted";
        NP_NONCE_EXHAUSTED = 306, "nonce counter exhausted";
        NP_REMOTE_ERROR = 400, "the peer reported an error";
        NP_BUSY = 401, "server busy";
        NP_SERVER_SHUTDOWN = 402, "server shutting down";
        NP_NOT_SUPPORTED = 403, "the server does not support multi-output jobs (protocol feature level 1.1): the connection is closed";
        NP_IO = 500, "I/O error";
        NP_KEY_FILE = 501, "key file error";
    }

    // Kinds of `np_event`: name = number, what the event carries.
    event_kinds {
        NP_EVENT_SERVER_KEY = 1, "Client: the server's static key is in `server_key`; call `np_conn_trust_server_key`.";
        NP_EVENT_READY = 2, "Client: logged in.";
        NP_EVENT_LOGGED_IN = 3, "Server: a client logged in; `text` is the user name.";
        NP_EVENT_JOB_SUBMIT = 4, "Server: a job starts; `total_len`, `text` = op spec, `data` = first chunk, `last`.";
        NP_EVENT_JOB_DATA = 5, "Server: more job input in `data`; `last`.";
        NP_EVENT_JOB_RESULT = 6, "Client: a result starts; `info`, `total_len`, `data` = first chunk, `last`.";
        NP_EVENT_RESULT_DATA = 7, "Client: more result data; `last`.";
        NP_EVENT_ERROR = 8, "Either: `code` = error code, `text` = message, `request_id` (0: whole connection).";
        NP_EVENT_BUSY = 9, "Client: `code` = retry-after in milliseconds for `request_id`.";
        NP_EVENT_PING = 10, "Either: a PING arrived (the PONG is already queued); `data` = payload.";
        NP_EVENT_PONG = 11, "Either: answer to our PING; `data` = payload.";
        NP_EVENT_STATS_REQUEST = 12, "Server: the client asks for counters; reply with `np_conn_send_stats`.";
        NP_EVENT_STATS = 13, "Client: counters; walk `data` with `np_stats_next`.";
        NP_EVENT_SHUTDOWN = 14, "Client: the server is stopping; `code` = grace period in milliseconds.";
        NP_EVENT_BYE = 15, "Either: the peer closed the session in order.";
        NP_EVENT_RATE_LIMITED = 16, "Server: a PING or STATS_REQUEST over the connection's request rate; ERROR RATE_LIMITED is already queued for `request_id` (none for 0). Nothing to answer; reported so each frame is one event.";
        NP_EVENT_DISCARDED = 17, "Either: a chunk of a stream already refused (`request_id`), validated and dropped; `data_len` is its size, `last`. Nothing to do; reported so each frame is one event.";
        NP_EVENT_PROBE = 18, "Server: the connection's first frame was PROBE; the PROBE_REPLY with the status set by `np_conn_set_probe_status` (`code`) is queued and the connection closed: flush, then close.";
        NP_EVENT_JOB_SUBMIT_MULTI = 19, "Server: a multi-output job starts; `total_len`, `text` = variant list (op specs separated by `;`), `data` = first chunk, `last`; more input comes as NP_EVENT_JOB_DATA.";
        NP_EVENT_VARIANT_RESULT = 20, "Client: variant `variant` (0-based) of a multi-output job starts; `info`, `total_len`, `data` = first chunk, `last`; more data comes as NP_EVENT_RESULT_DATA.";
        NP_EVENT_VARIANT_ERROR = 21, "Client: variant `variant` (0-based) of a multi-output job failed; `code` = error code, `text` = message. The other variants still come.";
    }

    // Which of a connection's own timers `np_conn_handle_timeout` acted on: name = number,
    // what happened.
    timer_kinds {
        NP_TIMER_NONE = 0, "Nothing the caller needs to know (no timer was due, or only housekeeping ran).";
        NP_TIMER_HANDSHAKE = 1, "Server: handshake and login took too long; ERROR HANDSHAKE_TIMEOUT is queued and the connection closed: flush, then close the socket.";
        NP_TIMER_IDLE = 2, "Server: logged in, nothing outstanding, no frame for the idle timeout; ERROR IDLE_TIMEOUT is queued and the connection closed: flush, then close.";
        NP_TIMER_SLOW_PEER = 3, "Server: the peer took none of the pending output for the slow-peer timeout; the output is dropped and the connection closed: close the socket now.";
        NP_TIMER_HEARTBEAT = 4, "Client: a heartbeat PING (request id 0) is queued: flush it.";
        NP_TIMER_DEAD_PEER = 5, "Client: the server sent nothing for the dead-peer timeout; the pending output is dropped and the connection closed (later sends answer NP_PEER_SILENT): close the socket now.";
        NP_TIMER_SLOW_FRAME = 6, "Server: logged in, a frame began and was not whole within the frame timeout; ERROR SLOW_CLIENT is queued and the connection closed: flush, then close.";
    }

    // Size limits every peer enforces before it allocates (exported to C as NP_<NAME>). An
    // expression may name an earlier limit.
    limits {
        /// Length of the fixed frame header, including its CRC.
        HEADER_LEN: usize = 24;
        /// Length of the header part covered by the AEAD associated data (everything but the CRC).
        HEADER_AAD_LEN: usize = 20;
        /// Poly1305 tag appended to every encrypted body.
        TAG_LEN: usize = 16;
        /// Largest image-data payload carried by one JOB/RESULT frame.
        MAX_CHUNK_DATA: usize = 64 * 1024;
        /// Largest op-spec text in a JOB_SUBMIT.
        MAX_SPEC_LEN: usize = 1024;
        /// Most variants (op specs) one JOB_SUBMIT_MULTI may carry; at least 2.
        MAX_VARIANTS: usize = 8;
        /// Largest error message text.
        MAX_ERROR_TEXT: usize = 1024;
        /// Largest PING payload.
        MAX_PING_PAYLOAD: usize = 256;
        /// Largest user name.
        MAX_USER_LEN: usize = 64;
        /// Largest body a frame may declare (plaintext or ciphertext + tag): a chunk of data,
        /// the largest per-frame metadata (JOB_SUBMIT: 8 + 2 + spec) and the tag, rounded up.
        MAX_BODY_LEN: usize = 72 * 1024;
        /// Largest body accepted before the handshake has produced keys (HELLO, HELLO_REPLY and
        /// a clear ERROR all fit).
        MAX_HANDSHAKE_BODY: usize = 2048;
        /// Largest whole frame on the wire.
        MAX_FRAME_LEN: usize = HEADER_LEN + MAX_BODY_LEN;
        /// Most unprocessed bytes a connection buffers before it stops accepting input: two
        /// frames, so a reader can always complete the frame in progress plus one more.
        MAX_BUFFERED_INPUT: usize = 2 * MAX_FRAME_LEN;
        /// Most refused uploads a server connection keeps validating and dropping: past it,
        /// the oldest refused upload is forgotten, and a further chunk for it is fatal
        /// (ERROR PROTOCOL). A client that stops sending after a refusal is never affected.
        MAX_REFUSED_STREAMS: usize = 64;
        /// Most unprocessed bytes a connection buffers until login completes: one maximal
        /// pre-login frame and most of the next, so a peer that has not logged in holds at
        /// most this much of the receiver's memory.
        MAX_PRE_LOGIN_INPUT: usize = 4096;
        /// Smallest PBKDF2 iteration count a client accepts in a login challenge.
        MIN_PBKDF2_ITERATIONS: u32 = 4096;
        /// Largest PBKDF2 iteration count a client accepts (bounds a hostile server's CPU cost).
        MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;
        /// Iterations used for new verifiers.
        DEFAULT_PBKDF2_ITERATIONS: u32 = 16_384;
        /// Length of the PROBE frame (a header, no body): always the same bytes.
        PROBE_LEN: usize = HEADER_LEN;
        /// Length of a PROBE_REPLY frame (a header and the one status byte).
        PROBE_REPLY_LEN: usize = HEADER_LEN + 1;
        /// PROBE_REPLY status: up, at least one worker ready, taking work.
        PROBE_READY: u32 = 1;
        /// PROBE_REPLY status: up, but no worker is ready (starting, or workers failing).
        PROBE_NOT_READY: u32 = 2;
        /// PROBE_REPLY status: up and shutting down: finishing work in flight, taking none.
        PROBE_DRAINING: u32 = 3;
    }
}
