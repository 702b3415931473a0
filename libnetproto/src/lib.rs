//! libnetproto: the wire protocol of imgserver, shared by the server, the client and any C
//! program through `libnetproto.so`.
//!
//! Layers, lowest first; each only uses the ones above it in this list:
//! - [`limits`], [`opcode`], [`error`], [`reader`], [`crc`], [`frame`], [`message`]: the pure
//!   codec.
//! - [`session`], [`keys`], [`handshake`], [`login`]: the pure security state machines.
//! - [`conn`]: one connection's sans-IO state machine over all of the above.
//! - [`io`]: the only module that touches sockets, files and the clock.
//! - [`logging`]: the library's own logger (the `.so` has its own copy of `log`'s globals).
//! - `capi`: the C ABI over everything (the only place with `unsafe`).
#![deny(unsafe_code)]

// cbindgen reads only `capi` (the C ABI and the generated `capi/wire.rs`): every other module
// carries `cbindgen:ignore`, so Rust-side constants never leak into netproto.h as #defines.
/// cbindgen:ignore
mod aead;
/// cbindgen:ignore
pub mod conn;
/// cbindgen:ignore
pub mod crc;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod frame;
#[doc(hidden)]
/// cbindgen:ignore
pub mod fuzz_targets;
/// cbindgen:ignore
pub mod handshake;
/// cbindgen:ignore
pub mod io;
/// cbindgen:ignore
pub mod keys;
/// cbindgen:ignore
pub mod limits;
/// cbindgen:ignore
pub mod logging;
/// cbindgen:ignore
pub mod login;
/// cbindgen:ignore
pub mod message;
/// cbindgen:ignore
pub mod opcode;
/// cbindgen:ignore
pub mod reader;
/// cbindgen:ignore
pub mod session;
/// cbindgen:ignore
mod wire;

#[allow(unsafe_code, non_camel_case_types)]
pub mod capi;

pub use conn::{ClientConfig, Conn, Event, Role, ServerConfig};
pub use error::Error;
pub use frame::{Decoded, Frame, Header};
pub use keys::{fingerprint, KnownServers, ServerKey, Trust};
pub use login::Verifier;
pub use message::{ResultInfo, ServerParams};
pub use opcode::{ErrorCode, Opcode};

/// Library version, as the C ABI reports it.
///
/// cbindgen:ignore
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
