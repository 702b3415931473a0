//! cliutil: what every binary of the project does the same way at its edge with a person —
//! reading a password (`password`, behind the default-on `password` feature) and setting up
//! its logger (`logging`), and printing a report to a stdout that may close early (`output`).
//!
//! Trust boundary: the terminal and the process's stderr. A typed password is never echoed
//! and never logged; log lines carry only what the program logs.
//!
//! It is a leaf crate (no project dependency), so the binaries and libnetproto's `.so` can
//! all use it; libnetproto depends on it with `default-features = false`, so the `.so` does not
//! link the password prompt. Each process still calls `netproto_sys::log_init` with the same
//! filter next to [`logging::init`]: the `.so` has its own copy of the `log` crate's global
//! logger.

pub mod logging;
pub mod output;
#[cfg(feature = "password")]
pub mod password;
