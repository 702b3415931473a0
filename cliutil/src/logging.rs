//! The logger set-up every process of the project shares: which records pass (`RUST_LOG`,
//! else a default the program picks, e.g. from `-v`) and how a line looks.
//!
//! Trust boundary: the process's stderr. Lines carry what the program logs and nothing else;
//! nothing here reads input beyond the `RUST_LOG` filter text.
//!
//! Two styles, one per kind of program:
//!
//! ```text
//! imgclient WARN imgclient::connect: message                 Style::Command (a person watches)
//! 2026-01-01T00:00:00.000Z INFO  master[42] message          Style::Daemon, with_target: false
//! 2026-01-01T00:00:00.000Z INFO  master[42] target: message  Style::Daemon, with_target: true
//! ```
//!
//! imgclient: `init(&filter_from_env(verbosity_filter(v)), Style::Command { program })`.
//! imgserver: `init(&filter_from_env("info"), Style::Daemon { tag: "master[pid] ", .. })`.
//! libnetproto's `np_log_init(spec, tag)`: `filter_or(spec, ..)` with `with_target: true`.
//! A binary passes the same filter to `netproto_sys::log_init`, since the `.so` has its own
//! copy of the `log` globals.

use std::fmt::Display;
use std::io::{self, Write};

use log::Record;

/// How each line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// `{program} {level} {target}: {message}`, no timestamp: a command's lines.
    Command { program: String },
    /// `{timestamp} {level:<5} {tag}{message}`, with `{target}: ` before the message when
    /// `with_target`: a long-running process's lines. `tag` is written as given (e.g.
    /// `"master[42] "`, with its trailing space, or empty).
    Daemon { tag: String, with_target: bool },
}

/// The default filter for a `-v` count: none `warn`, `-v` `info`, `-vv` and more `debug`.
pub fn verbosity_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    }
}

/// `RUST_LOG` when it is set (even empty), else `default`.
pub fn filter_from_env(default: &str) -> String {
    filter_or(std::env::var("RUST_LOG").ok().as_deref(), default)
}

/// `explicit` when given, else `default`: the filter rule without the environment.
pub fn filter_or(explicit: Option<&str>, default: &str) -> String {
    explicit.unwrap_or(default).to_string()
}

/// Installs a logger writing to stderr that passes what `filter` (env_logger's `RUST_LOG`
/// syntax) lets through, in `style`. Returns false, and changes nothing, when this process
/// already has a logger.
pub fn init(filter: &str, style: Style) -> bool {
    builder(filter, style).try_init().is_ok()
}

/// The configured builder behind [`init`], for a caller that wants another target.
pub fn builder(filter: &str, style: Style) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.parse_filters(filter);
    b.format(move |f, r| {
        let now = f.timestamp_millis();
        write_line(f, &style, &now, r)
    });
    b
}

fn write_line(
    out: &mut dyn Write,
    style: &Style,
    now: &dyn Display,
    r: &Record<'_>,
) -> io::Result<()> {
    match style {
        Style::Command { program } => {
            writeln!(out, "{program} {} {}: {}", r.level(), r.target(), r.args())
        }
        Style::Daemon {
            tag,
            with_target: false,
        } => writeln!(out, "{now} {:<5} {tag}{}", r.level(), r.args()),
        Style::Daemon {
            tag,
            with_target: true,
        } => writeln!(
            out,
            "{now} {:<5} {tag}{}: {}",
            r.level(),
            r.target(),
            r.args()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use log::{Level, Log};

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

    /// What a logger set up like `init` prints for each `(level, target, message)`.
    fn logged(filter: &str, style: Style, records: &[(Level, &str, &str)]) -> String {
        let out = Shared::default();
        let logger = builder(filter, style)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        for (level, target, msg) in records {
            logger.log(
                &Record::builder()
                    .level(*level)
                    .target(target)
                    .args(format_args!("{msg}"))
                    .build(),
            );
        }
        logger.flush();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    /// `2026-01-01T00:00:00.000Z` shaped.
    fn is_timestamp(s: &str) -> bool {
        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.'
    }

    #[test]
    fn command_lines_name_the_program_and_target() {
        let style = Style::Command {
            program: "imgclient".into(),
        };
        let text = logged(
            "warn",
            style,
            &[
                (Level::Warn, "imgclient::connect", "key pinned"),
                (Level::Info, "imgclient::connect", "filtered out"),
            ],
        );
        assert_eq!(text, "imgclient WARN imgclient::connect: key pinned\n");
    }

    #[test]
    fn daemon_lines_are_timestamped_and_tagged() {
        let tagged = |with_target| Style::Daemon {
            tag: "master[42] ".into(),
            with_target,
        };
        let text = logged("info", tagged(false), &[(Level::Info, "imgserver", "up")]);
        let (ts, rest) = text.split_once(' ').unwrap();
        assert!(is_timestamp(ts), "{text:?}");
        assert_eq!(rest, "INFO  master[42] up\n");
        let text = logged(
            "debug",
            tagged(true),
            &[(Level::Debug, "libnetproto::conn", "frame")],
        );
        let (ts, rest) = text.split_once(' ').unwrap();
        assert!(is_timestamp(ts), "{text:?}");
        assert_eq!(rest, "DEBUG master[42] libnetproto::conn: frame\n");
    }

    #[test]
    fn filters_follow_rust_log_syntax() {
        let style = Style::Command {
            program: "p".into(),
        };
        let text = logged(
            "warn,imgclient::session=debug",
            style,
            &[
                (Level::Debug, "imgclient::session", "kept"),
                (Level::Debug, "imgclient::connect", "dropped"),
                (Level::Error, "other", "kept too"),
            ],
        );
        assert_eq!(
            text,
            "p DEBUG imgclient::session: kept\np ERROR other: kept too\n"
        );
    }

    #[test]
    fn default_filters() {
        assert_eq!(verbosity_filter(0), "warn");
        assert_eq!(verbosity_filter(1), "info");
        assert_eq!(verbosity_filter(2), "debug");
        assert_eq!(verbosity_filter(9), "debug");
        assert_eq!(filter_or(Some("trace"), "info"), "trace");
        assert_eq!(filter_or(Some(""), "info"), "");
        assert_eq!(filter_or(None, "info"), "info");
    }

    #[test]
    fn a_second_init_changes_nothing() {
        let style = || Style::Command {
            program: "t".into(),
        };
        assert!(init("off", style()));
        assert!(!init("debug", style()));
        assert!(!log::log_enabled!(log::Level::Error));
    }
}
