//! Protocol v1 size limits: the numbers every peer enforces before it allocates.
//!
//! Trust boundary: these bound what an unauthenticated peer can make us buffer.

/// Length of the fixed frame header, including its CRC.
pub const HEADER_LEN: usize = 24;
/// Length of the header part covered by the AEAD associated data (everything but the CRC).
pub const HEADER_AAD_LEN: usize = 20;
/// Poly1305 tag appended to every encrypted body.
pub const TAG_LEN: usize = 16;
/// Largest image-data payload carried by one JOB/RESULT frame.
pub const MAX_CHUNK_DATA: usize = 64 * 1024;
/// Largest op-spec text in a JOB_SUBMIT.
pub const MAX_SPEC_LEN: usize = 1024;
/// Largest error message text.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Largest PING payload.
pub const MAX_PING_PAYLOAD: usize = 256;
/// Largest user name.
pub const MAX_USER_LEN: usize = 64;
/// Largest body a frame may declare (plaintext or ciphertext + tag): a chunk of data, the
/// largest per-frame metadata (JOB_SUBMIT: 8 + 2 + spec) and the tag, rounded up.
pub const MAX_BODY_LEN: usize = 72 * 1024;
/// Largest body accepted before the handshake has produced keys (HELLO, HELLO_REPLY and a
/// clear ERROR all fit).
pub const MAX_HANDSHAKE_BODY: usize = 2048;
/// Largest whole frame on the wire.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_BODY_LEN;
/// Most unprocessed bytes a connection buffers before it stops accepting input: two frames,
/// so a reader can always complete the frame in progress plus one more.
pub const MAX_BUFFERED_INPUT: usize = 2 * MAX_FRAME_LEN;
/// Smallest PBKDF2 iteration count a client accepts in a login challenge.
pub const MIN_PBKDF2_ITERATIONS: u32 = 4096;
/// Largest PBKDF2 iteration count a client accepts (bounds a hostile server's CPU cost).
pub const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;
/// Iterations used for new verifiers.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 16_384;

const _: () = assert!(MAX_BODY_LEN >= MAX_CHUNK_DATA + 8 + 2 + MAX_SPEC_LEN + TAG_LEN + 64);
const _: () = assert!(MAX_BODY_LEN <= u32::MAX as usize);
