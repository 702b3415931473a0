//! The C view of the wire table, GENERATED from `src/wire_table.rs` by `make header`:
//! do not edit. cbindgen reads this file for `include/netproto.h`; the unit test in
//! `capi/status.rs` fails when it no longer matches the table.
//!
//! Trust boundary: the numbers C callers see (statuses, event kinds, wire error codes,
//! protocol limits); values arriving from C are plain integers checked against them.
#![allow(non_camel_case_types)]

/// Outcome of a C ABI call (`NP_OK` on success). Stable numbers, in ranges by cause.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum np_status {
    /// Ok.
    NP_OK = 0,
    /// No event yet: more input is needed.
    NP_NO_EVENT = 1,
    /// Operation would block.
    NP_WOULD_BLOCK = 2,
    /// Connection closed by peer.
    NP_EOF = 3,
    /// Timed out.
    NP_TIMEOUT = 4,
    /// Input buffer full: poll events first.
    NP_INPUT_FULL = 5,
    /// The peer sent no frame for the dead-peer timeout: the connection is closed.
    NP_PEER_SILENT = 6,
    /// A required pointer argument was NULL.
    NP_NULL_ARGUMENT = 100,
    /// Invalid argument.
    NP_INVALID_ARGUMENT = 101,
    /// Output buffer too small.
    NP_BUFFER_TOO_SMALL = 102,
    /// Call not allowed in the current state.
    NP_BAD_STATE = 103,
    /// Internal error (panic caught at the library boundary).
    NP_PANIC = 104,
    /// Connection is closed.
    NP_CLOSED = 105,
    /// Bad frame magic: not a netproto v1 peer.
    NP_BAD_MAGIC = 200,
    /// Unsupported protocol version.
    NP_BAD_VERSION = 201,
    /// Frame exceeds the maximum size.
    NP_FRAME_TOO_LARGE = 202,
    /// Frame CRC mismatch.
    NP_BAD_CRC = 203,
    /// Unknown opcode.
    NP_UNKNOWN_OPCODE = 204,
    /// Invalid frame flags.
    NP_BAD_FLAGS = 205,
    /// Reserved header field not zero.
    NP_BAD_RESERVED = 206,
    /// Malformed message body.
    NP_MALFORMED = 207,
    /// Message not allowed in this state.
    NP_UNEXPECTED_MESSAGE = 208,
    /// Decryption failed (tampered, replayed, reordered or reflected frame).
    NP_DECRYPT_FAILED = 300,
    /// Handshake failed.
    NP_HANDSHAKE_FAILED = 301,
    /// Authentication failed.
    NP_AUTH_FAILED = 302,
    /// Server could not prove it holds the user's verifier.
    NP_BAD_SERVER_SIGNATURE = 303,
    /// Server key differs from the pinned key.
    NP_SERVER_KEY_CHANGED = 304,
    /// Server key was not trusted.
    NP_SERVER_KEY_REJECTED = 305,
    /// Nonce counter exhausted.
    NP_NONCE_EXHAUSTED = 306,
    /// The peer reported an error.
    NP_REMOTE_ERROR = 400,
    /// Server busy.
    NP_BUSY = 401,
    /// Server shutting down.
    NP_SERVER_SHUTDOWN = 402,
    /// The server does not support multi-output jobs (protocol feature level 1.1): the connection is closed.
    NP_NOT_SUPPORTED = 403,
    /// I/O error.
    NP_IO = 500,
    /// Key file error.
    NP_KEY_FILE = 501,
}

/// Kinds of `np_event`. Stable numbers.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum np_event_kind {
    /// Client: the server's static key is in `server_key`; call `np_conn_trust_server_key`.
    NP_EVENT_SERVER_KEY = 1,
    /// Client: logged in.
    NP_EVENT_READY = 2,
    /// Server: a client logged in; `text` is the user name.
    NP_EVENT_LOGGED_IN = 3,
    /// Server: a job starts; `total_len`, `text` = op spec, `data` = first chunk, `last`.
    NP_EVENT_JOB_SUBMIT = 4,
    /// Server: more job input in `data`; `last`.
    NP_EVENT_JOB_DATA = 5,
    /// Client: a result starts; `info`, `total_len`, `data` = first chunk, `last`.
    NP_EVENT_JOB_RESULT = 6,
    /// Client: more result data; `last`.
    NP_EVENT_RESULT_DATA = 7,
    /// Either: `code` = error code, `text` = message, `request_id` (0: whole connection).
    NP_EVENT_ERROR = 8,
    /// Client: `code` = retry-after in milliseconds for `request_id`.
    NP_EVENT_BUSY = 9,
    /// Either: a PING arrived (the PONG is already queued); `data` = payload.
    NP_EVENT_PING = 10,
    /// Either: answer to our PING; `data` = payload.
    NP_EVENT_PONG = 11,
    /// Server: the client asks for counters; reply with `np_conn_send_stats`.
    NP_EVENT_STATS_REQUEST = 12,
    /// Client: counters; walk `data` with `np_stats_next`.
    NP_EVENT_STATS = 13,
    /// Client: the server is stopping; `code` = grace period in milliseconds.
    NP_EVENT_SHUTDOWN = 14,
    /// Either: the peer closed the session in order.
    NP_EVENT_BYE = 15,
    /// Server: a PING or STATS_REQUEST over the connection's request rate; ERROR RATE_LIMITED is already queued for `request_id` (none for 0). Nothing to answer; reported so each frame is one event.
    NP_EVENT_RATE_LIMITED = 16,
    /// Either: a chunk of a stream already refused (`request_id`), validated and dropped; `data_len` is its size, `last`. Nothing to do; reported so each frame is one event.
    NP_EVENT_DISCARDED = 17,
    /// Server: the connection's first frame was PROBE; the PROBE_REPLY with the status set by `np_conn_set_probe_status` (`code`) is queued and the connection closed: flush, then close.
    NP_EVENT_PROBE = 18,
    /// Server: a multi-output job starts; `total_len`, `text` = variant list (op specs separated by `;`), `data` = first chunk, `last`; more input comes as NP_EVENT_JOB_DATA.
    NP_EVENT_JOB_SUBMIT_MULTI = 19,
    /// Client: variant `variant` (0-based) of a multi-output job starts; `info`, `total_len`, `data` = first chunk, `last`; more data comes as NP_EVENT_RESULT_DATA.
    NP_EVENT_VARIANT_RESULT = 20,
    /// Client: variant `variant` (0-based) of a multi-output job failed; `code` = error code, `text` = message. The other variants still come.
    NP_EVENT_VARIANT_ERROR = 21,
}

/// Which of a connection's own timers `np_conn_handle_timeout` acted on. Stable
/// numbers.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum np_timer {
    /// Nothing the caller needs to know (no timer was due, or only housekeeping ran).
    NP_TIMER_NONE = 0,
    /// Server: handshake and login took too long; ERROR HANDSHAKE_TIMEOUT is queued and the connection closed: flush, then close the socket.
    NP_TIMER_HANDSHAKE = 1,
    /// Server: logged in, nothing outstanding, no frame for the idle timeout; ERROR IDLE_TIMEOUT is queued and the connection closed: flush, then close.
    NP_TIMER_IDLE = 2,
    /// Server: the peer took none of the pending output for the slow-peer timeout; the output is dropped and the connection closed: close the socket now.
    NP_TIMER_SLOW_PEER = 3,
    /// Client: a heartbeat PING (request id 0) is queued: flush it.
    NP_TIMER_HEARTBEAT = 4,
    /// Client: the server sent nothing for the dead-peer timeout; the pending output is dropped and the connection closed (later sends answer NP_PEER_SILENT): close the socket now.
    NP_TIMER_DEAD_PEER = 5,
    /// Server: logged in, a frame began and was not whole within the frame timeout; ERROR SLOW_CLIENT is queued and the connection closed: flush, then close.
    NP_TIMER_SLOW_FRAME = 6,
}

/// Wire error code PROTOCOL (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_PROTOCOL: u16 = 100;

/// Wire error code UNEXPECTED_MESSAGE (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_UNEXPECTED_MESSAGE: u16 = 101;

/// Wire error code DUPLICATE_REQUEST (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_DUPLICATE_REQUEST: u16 = 102;

/// Wire error code UNKNOWN_REQUEST (reserved: never sent, never reused).
pub const NP_ERROR_UNKNOWN_REQUEST: u16 = 103;

/// Wire error code LENGTH_MISMATCH (reserved: never sent, never reused).
pub const NP_ERROR_LENGTH_MISMATCH: u16 = 104;

/// Wire error code BAD_MAGIC (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_BAD_MAGIC: u16 = 105;

/// Wire error code BAD_CRC (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_BAD_CRC: u16 = 106;

/// Wire error code FRAME_TOO_LARGE (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_FRAME_TOO_LARGE: u16 = 107;

/// Wire error code UNKNOWN_OPCODE (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_UNKNOWN_OPCODE: u16 = 108;

/// Wire error code AUTH_FAILED (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_AUTH_FAILED: u16 = 200;

/// Wire error code NOT_LOGGED_IN (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_NOT_LOGGED_IN: u16 = 201;

/// Wire error code BAD_SPEC (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_BAD_SPEC: u16 = 300;

/// Wire error code INPUT_TOO_LARGE (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_INPUT_TOO_LARGE: u16 = 301;

/// Wire error code TOO_MANY_PIXELS (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_TOO_MANY_PIXELS: u16 = 302;

/// Wire error code UNSUPPORTED_FORMAT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_UNSUPPORTED_FORMAT: u16 = 303;

/// Wire error code DECODE_FAILED (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_DECODE_FAILED: u16 = 304;

/// Wire error code BAD_GEOMETRY (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_BAD_GEOMETRY: u16 = 305;

/// Wire error code ENCODE_FAILED (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_ENCODE_FAILED: u16 = 306;

/// Wire error code POISON_INPUT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_POISON_INPUT: u16 = 307;

/// Wire error code TOO_MANY_IN_FLIGHT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_TOO_MANY_IN_FLIGHT: u16 = 308;

/// Wire error code TIMEOUT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_TIMEOUT: u16 = 400;

/// Wire error code WORKER_CRASHED (reserved: never sent, never reused).
pub const NP_ERROR_WORKER_CRASHED: u16 = 401;

/// Wire error code SHUTTING_DOWN (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_SHUTTING_DOWN: u16 = 402;

/// Wire error code TOO_MANY_CONNECTIONS (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_TOO_MANY_CONNECTIONS: u16 = 403;

/// Wire error code IDLE_TIMEOUT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_IDLE_TIMEOUT: u16 = 404;

/// Wire error code SLOW_CLIENT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_SLOW_CLIENT: u16 = 405;

/// Wire error code HANDSHAKE_TIMEOUT (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_HANDSHAKE_TIMEOUT: u16 = 406;

/// Wire error code RATE_LIMITED (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_RATE_LIMITED: u16 = 407;

/// Wire error code INTERNAL (see docs/PROTOCOL.md, "Error codes").
pub const NP_ERROR_INTERNAL: u16 = 500;

/// Length of the fixed frame header, including its CRC.
pub const NP_HEADER_LEN: usize = 24;

/// Length of the header part covered by the AEAD associated data (everything but the CRC).
pub const NP_HEADER_AAD_LEN: usize = 20;

/// Poly1305 tag appended to every encrypted body.
pub const NP_TAG_LEN: usize = 16;

/// Largest image-data payload carried by one JOB/RESULT frame.
pub const NP_MAX_CHUNK_DATA: usize = 65536;

/// Largest op-spec text in a JOB_SUBMIT.
pub const NP_MAX_SPEC_LEN: usize = 1024;

/// Most variants (op specs) one JOB_SUBMIT_MULTI may carry; at least 2.
pub const NP_MAX_VARIANTS: usize = 8;

/// Largest error message text.
pub const NP_MAX_ERROR_TEXT: usize = 1024;

/// Largest PING payload.
pub const NP_MAX_PING_PAYLOAD: usize = 256;

/// Largest user name.
pub const NP_MAX_USER_LEN: usize = 64;

/// Largest body a frame may declare (plaintext or ciphertext + tag): a chunk of data,
/// the largest per-frame metadata (JOB_SUBMIT: 8 + 2 + spec) and the tag, rounded up.
pub const NP_MAX_BODY_LEN: usize = 73728;

/// Largest body accepted before the handshake has produced keys (HELLO, HELLO_REPLY and
/// a clear ERROR all fit).
pub const NP_MAX_HANDSHAKE_BODY: usize = 2048;

/// Largest whole frame on the wire.
pub const NP_MAX_FRAME_LEN: usize = 73752;

/// Most unprocessed bytes a connection buffers before it stops accepting input: two
/// frames, so a reader can always complete the frame in progress plus one more.
pub const NP_MAX_BUFFERED_INPUT: usize = 147504;

/// Most refused uploads a server connection keeps validating and dropping: past it,
/// the oldest refused upload is forgotten, and a further chunk for it is fatal
/// (ERROR PROTOCOL). A client that stops sending after a refusal is never affected.
pub const NP_MAX_REFUSED_STREAMS: usize = 64;

/// Most unprocessed bytes a connection buffers until login completes: one maximal
/// pre-login frame and most of the next, so a peer that has not logged in holds at
/// most this much of the receiver's memory.
pub const NP_MAX_PRE_LOGIN_INPUT: usize = 4096;

/// Smallest PBKDF2 iteration count a client accepts in a login challenge.
pub const NP_MIN_PBKDF2_ITERATIONS: u32 = 4096;

/// Largest PBKDF2 iteration count a client accepts (bounds a hostile server's CPU cost).
pub const NP_MAX_PBKDF2_ITERATIONS: u32 = 2000000;

/// Iterations used for new verifiers.
pub const NP_DEFAULT_PBKDF2_ITERATIONS: u32 = 16384;

/// Length of the PROBE frame (a header, no body): always the same bytes.
pub const NP_PROBE_LEN: usize = 24;

/// Length of a PROBE_REPLY frame (a header and the one status byte).
pub const NP_PROBE_REPLY_LEN: usize = 25;

/// PROBE_REPLY status: up, at least one worker ready, taking work.
pub const NP_PROBE_READY: u32 = 1;

/// PROBE_REPLY status: up, but no worker is ready (starting, or workers failing).
pub const NP_PROBE_NOT_READY: u32 = 2;

/// PROBE_REPLY status: up and shutting down: finishing work in flight, taking none.
pub const NP_PROBE_DRAINING: u32 = 3;
