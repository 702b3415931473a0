//! Log set-up for every imgserver process: timestamped, levelled (`RUST_LOG`, default `info`),
//! tagged with the process role and pid, for the binary's records and (separately, because the
//! `.so` has its own copy of the `log` globals) libnetproto's own. The format is cliutil's
//! daemon style, the one every long-running process of the project writes.

use cliutil::logging::{self, Style};

/// Installs this process's logger and libnetproto's, both filtered alike.
pub fn init(role: &str) {
    let tag = format!("{role}[{}] ", std::process::id());
    let filter = logging::filter_from_env("info");
    logging::init(
        &filter,
        Style::Daemon {
            tag: tag.clone(),
            with_target: false,
        },
    );
    netproto_sys::log_init(Some(&filter), &tag);
}
