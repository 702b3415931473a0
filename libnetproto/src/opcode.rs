//! Opcode table, frame flags and wire error codes of protocol v1.
//!
//! Trust boundary: raw numbers from the network become these enums or a fatal error. The
//! opcodes and error codes themselves are declared once, in the wire table (`wire_table.rs`);
//! this module names them for the rest of the crate.

pub use crate::wire::{ErrorCode, Opcode};

/// Frame flag bits.
pub mod flags {
    /// The body is ChaCha20-Poly1305 ciphertext followed by its tag.
    pub const ENCRYPTED: u8 = 0x01;
    /// Last frame of a chunked stream (JOB_SUBMIT/JOB_DATA, JOB_RESULT/RESULT_DATA).
    pub const LAST: u8 = 0x02;
    /// Every bit a v1 peer understands; any other bit is a fatal error.
    pub const KNOWN: u8 = ENCRYPTED | LAST;
}
