//! Log set-up for every imgserver process: levelled (`RUST_LOG`, default `info`), for the
//! binary's records and (separately, because the `.so` has its own copy of the `log`
//! globals) libnetproto's own.
//!
//! The master writes cliutil's daemon style (timestamped, tagged `master[pid]`), as text or
//! JSON (`--log-format`). A worker writes cliutil's child style to its stderr, a pipe the
//! master reads (`master/worker_log.rs`): no timestamp and no format of its own, since the
//! master re-logs each line with its own timestamp, tag and format. A worker's panic is
//! logged as one record, so it reaches the master as one line rather than as the default
//! hook's several.
//!
//! Trust boundary: the process's stderr; everything logged is escaped by cliutil.

use cliutil::logging::{self, Format, Style};

/// Installs the master's logger and libnetproto's, both filtered alike.
pub fn init_master(format: Format) {
    let tag = format!("master[{}] ", std::process::id());
    let filter = logging::filter_from_env("info");
    logging::init_with(
        &filter,
        Style::Daemon {
            tag: tag.clone(),
            with_target: false,
        },
        format,
    );
    netproto_sys::log_init(Some(&filter), &tag);
}

/// Installs a worker's logger (child style, for the master to re-log) and a panic hook that
/// logs the panic as one error record.
pub fn init_worker() {
    let filter = logging::filter_from_env("info");
    logging::init(&filter, Style::Child);
    std::panic::set_hook(Box::new(|info| {
        log::error!("{info}");
    }));
}
