//! The library's own logger set-up, behind `np_log_init`.
//!
//! Trust boundary: the process's stderr. The `.so` carries its own copy of the `log` crate's
//! global logger, separate from the one in each binary, so the library's records would vanish
//! unless it installs a logger too. It installs the same one every binary does
//! (`cliutil::logging`), so both copies read the same `RUST_LOG` and print the same line.

use cliutil::logging::{self, Style};

/// The filter the library's logger uses: `spec` when given, else `RUST_LOG`, else `info`.
fn filter(spec: Option<&str>) -> String {
    logging::filter_or(spec, &logging::filter_from_env("info"))
}

/// The line style: timestamped, tagged with `tag` (e.g. the process role and pid), with the
/// record's target: `2026-01-01T00:00:00.000Z INFO  master[42] target: message`.
fn style(tag: &str) -> Style {
    Style::Daemon {
        tag: tag.to_string(),
        with_target: true,
    }
}

/// Installs the logger (see [`filter`] and [`style`]) writing to stderr. Returns false, and
/// changes nothing, when the library already has one.
pub(crate) fn init(spec: Option<&str>, tag: &str) -> bool {
    logging::init(&filter(spec), style(tag))
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use log::{Level, Log, Record};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_explicit_spec_wins_over_the_environment() {
        assert_eq!(filter(Some("debug")), "debug");
        assert_eq!(filter(Some("")), "");
    }

    #[test]
    fn lines_are_timestamped_tagged_and_name_their_target() {
        let out = Shared::default();
        let logger = logging::builder(&filter(Some("info")), style("worker[7] "))
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        for (level, msg) in [(Level::Info, "kept"), (Level::Debug, "filtered out")] {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target("netproto::conn")
                    .args(format_args!("{msg}"))
                    .build(),
            );
        }
        logger.flush();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let (ts, rest) = text.split_once(' ').unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{text:?}"
        );
        assert_eq!(rest, "INFO  worker[7] netproto::conn: kept\n");
    }
}
