//! netproto-fuzz-targets: the fuzz target bodies over libnetproto's internals, for the
//! libFuzzer binaries in `fuzz/` and the seed-corpus generator.
//!
//! Trust boundary: the same as the targets' (see `targets.rs`): arbitrary bytes into the frame
//! decoder, the message parsers and a server connection. The library's internals are reachable
//! here only because this crate turns on libnetproto's `fuzzing` feature; a normal build of the
//! library never does.

/// The library under test, under the name `targets.rs` uses in both of its homes (here and
/// libnetproto's `fuzz_replay` unit test, where it is `crate`).
use netproto as np;

mod targets;

pub use targets::{frame_decoder, seeds, server_handshake, Seed};
