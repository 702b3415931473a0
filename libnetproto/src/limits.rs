//! Protocol v1 size limits: the numbers every peer enforces before it allocates.
//!
//! Trust boundary: these bound what an unauthenticated peer can make us buffer. The numbers are
//! declared once, in the wire table (`wire_table.rs`); C sees them as `NP_<NAME>` defines.

pub use crate::wire::limits::*;

const _: () = assert!(MAX_BODY_LEN >= MAX_CHUNK_DATA + 8 + 2 + MAX_SPEC_LEN + TAG_LEN + 64);
const _: () = assert!(MAX_BODY_LEN <= u32::MAX as usize);
const _: () = assert!(MAX_HANDSHAKE_BODY < MAX_BODY_LEN);
const _: () = assert!(MAX_PRE_LOGIN_INPUT >= HEADER_LEN + MAX_HANDSHAKE_BODY);
