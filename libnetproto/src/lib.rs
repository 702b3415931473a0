//! libnetproto: the wire protocol of imgserver, shared by the server, the client and any C
//! program through `libnetproto.so`.
//!
//! Layers, lowest first; each only uses the ones above it in this list:
//! - [`limits`], [`opcode`], [`error`], `reader`, `crc`, [`frame`], [`message`]: the pure
//!   codec (the numbers in `wire_table.rs`, expanded by `wire`).
//! - `session`, [`keys`], `handshake`, `login`: the pure security state machines.
//! - [`probe`]: the fixed PROBE / PROBE_REPLY frames and the client's parse of the answer.
//! - [`conn`]: one connection's sans-IO state machine over all of the above.
//! - `io`: the only module that touches sockets, files and the clock.
//! - `logging`: the library's own logger (the `.so` has its own copy of `log`'s globals).
//! - `capi`: the C ABI over everything (the only place with `unsafe`). Its raw system calls
//!   are the ones that need `unsafe`: `read`/`send` on a borrowed fd, and `clock_gettime` for
//!   `np_clock_now_us`, whose value the library itself never uses (callers pass time in).
//!
//! The Rust API is what the integration tests need; binaries use the C ABI through
//! netproto-sys. The fuzz harness lives in `fuzz/targets` and reaches the private modules
//! through the `fuzzing` feature, which no build of the main workspace enables.
#![deny(unsafe_code)]
#![cfg_attr(not(feature = "fuzzing"), warn(missing_docs, unreachable_pub))]

// Public modules are the Rust surface the integration tests (tests/) use; the rest is private
// unless the `fuzzing` feature (turned on only by fuzz/targets, never by the main workspace)
// opens it for the fuzz harness. cbindgen reads only `capi` (the C ABI and the generated
// `capi/wire.rs`): every other module carries `cbindgen:ignore`, so Rust-side constants never
// leak into netproto.h as #defines.

/// Declares modules that are private in a normal build and public with the `fuzzing` feature.
/// Their `pub` items are the harness's surface, so `unreachable_pub` does not apply to them.
macro_rules! internal_modules {
    ($($(#[$m:meta])* $name:ident;)*) => {
        $(
            $(#[$m])*
            #[cfg(feature = "fuzzing")]
            #[doc(hidden)]
            #[allow(missing_docs)]
            pub mod $name;
            $(#[$m])*
            #[cfg(not(feature = "fuzzing"))]
            #[allow(unreachable_pub)]
            mod $name;
        )*
    };
}

internal_modules! {
    crc;
    handshake;
    login;
    reader;
    session;
}

/// cbindgen:ignore
mod aead;
/// One connection's sans-IO state machine.
///
/// cbindgen:ignore
pub mod conn;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod frame;
/// The only module that touches sockets, files and the clock; only `capi` reaches it.
///
/// cbindgen:ignore
mod io;
/// cbindgen:ignore
pub mod keys;
/// cbindgen:ignore
pub mod limits;
/// cbindgen:ignore
mod logging;
/// cbindgen:ignore
pub mod message;
/// cbindgen:ignore
pub mod opcode;
/// The unauthenticated readiness check (PROBE / PROBE_REPLY).
///
/// cbindgen:ignore
pub mod probe;
/// cbindgen:ignore
mod wire;

#[cfg(test)]
mod fuzz_replay;
#[cfg(test)]
mod known_answers;
#[cfg(test)]
mod protocol_vectors;

#[allow(unsafe_code, non_camel_case_types)]
pub mod capi;

pub use conn::{
    ClientConfig, ClientConn, ClientTimers, Event, RequestRate, ServerConfig, ServerConn,
    ServerTimeouts, TimerKind, Timestamp,
};
pub use error::Error;
pub use frame::{Decoded, Frame, Header};
pub use keys::{fingerprint, KnownServers, ServerKey, Trust};
pub use login::Verifier;
pub use message::{ResultInfo, ServerParams};
pub use opcode::{ErrorCode, Opcode};
pub use probe::{ProbeAnswer, ProbeStatus};

/// Library version, as the C ABI reports it.
///
/// cbindgen:ignore
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
