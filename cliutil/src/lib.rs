//! cliutil: what every binary of the project does the same way at its edge with a person —
//! reading a password (`password`, behind the default-on `password` feature) and setting up
//! its logger (`logging`), printing a report to a stdout that may close early (`output`), and,
//! behind the default-on `cli` feature, reading durations, sizes and addresses the same way
//! in both binaries (`units`), the server's TOML config file (`config_file`), and the man
//! pages and shell completions of `--generate` (`generate`).
//!
//! Trust boundary: the terminal, the process's stderr, and what an operator types or writes
//! in a config file. A typed password is never echoed and never logged; log lines carry only
//! what the program logs; a bad value or key is a typed error, never a panic.
//!
//! It is a leaf crate (no project dependency), so the binaries and libnetproto's `.so` can
//! all use it; libnetproto depends on it with `default-features = false`, so the `.so` does not
//! link the password prompt. Each process still calls `netproto_sys::log_init` with the same
//! filter next to [`logging::init`]: the `.so` has its own copy of the `log` crate's global
//! logger.

#[cfg(feature = "cli")]
pub mod config_file;
#[cfg(feature = "cli")]
pub mod generate;
pub mod logging;
pub mod output;
#[cfg(feature = "password")]
pub mod password;
#[cfg(feature = "cli")]
pub mod units;
