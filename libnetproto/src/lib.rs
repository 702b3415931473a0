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

mod aead;
pub mod conn;
pub mod crc;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod handshake;
pub mod io;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod login;
pub mod message;
pub mod opcode;
pub mod reader;
pub mod session;

#[allow(unsafe_code, non_camel_case_types)]
pub mod capi;

pub use conn::{
    ClientConfig, ClientConn, ClientTimers, Event, ServerConfig, ServerConn, ServerTimeouts,
    TimerKind, Timestamp,
};
pub use error::Error;
pub use frame::{Decoded, Frame, Header};
pub use keys::{fingerprint, KnownServers, ServerKey, Trust};
pub use login::Verifier;
pub use message::{ResultInfo, ServerParams};
pub use opcode::{ErrorCode, Opcode};

/// Library version, as the C ABI reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
