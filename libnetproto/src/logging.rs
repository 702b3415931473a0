//! Logging set-up shared by the binaries and the `.so` itself.
//!
//! The `.so` carries its own copy of the `log` crate's global logger, separate from the one in
//! each binary, so the library's records would vanish unless it installs a logger too; the
//! C ABI exposes this as `np_log_init`. Both copies read the same `RUST_LOG` and print the
//! same timestamped format.

use std::io::Write;

/// Installs a logger that filters by `spec` (or `RUST_LOG` when `None`, default `info`) and
/// writes timestamped lines `2026-01-01T00:00:00.000Z INFO  target: message` to stderr, tagged
/// with `tag` (e.g. the process role and pid). A second call is a no-op.
pub(crate) fn init(spec: Option<&str>, tag: &str) -> bool {
    let mut b = env_logger::Builder::new();
    let spec = spec
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    b.parse_filters(&spec);
    let tag = tag.to_string();
    b.format(move |f, r| {
        writeln!(
            f,
            "{} {:<5} {}{}: {}",
            f.timestamp_millis(),
            r.level(),
            tag,
            r.target(),
            r.args()
        )
    });
    b.try_init().is_ok()
}
