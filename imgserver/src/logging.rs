//! Log set-up for every imgserver process: timestamped, levelled (RUST_LOG), tagged with the
//! process role and pid, for the binary's records and (separately) libnetproto's own.

use std::io::Write;

pub fn init(role: &str) {
    let tag = format!("{role}[{}] ", std::process::id());
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut b = env_logger::Builder::new();
    b.parse_filters(&spec);
    let t = tag.clone();
    b.format(move |f, r| {
        writeln!(
            f,
            "{} {:<5} {}{}",
            f.timestamp_millis(),
            r.level(),
            t,
            r.args()
        )
    });
    let _ = b.try_init();
    // libnetproto.so has its own copy of the logging globals.
    netproto_sys::log_init(Some(&spec), &tag);
}
