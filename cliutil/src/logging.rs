//! The logger set-up every process of the project shares: which records pass (`RUST_LOG`,
//! else a default the program picks, e.g. from `-v`) and how a line looks.
//!
//! Trust boundary: the process's stderr. Lines carry what the program logs and nothing else;
//! nothing here reads input beyond the `RUST_LOG` filter text. Messages often quote what a
//! peer sent (an op spec, a user name, an error text), so every message is written with its
//! control characters, Unicode line and paragraph separators and bidirectional overrides
//! escaped (`\n`, `\u{2028}`, ...): one record is always one line, and nothing a peer sends
//! can forge a line or reorder what a terminal shows.
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

use std::fmt::{self, Display};
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

/// Whether `c` must not reach a log line as itself: it could end the line, move the cursor
/// or control a terminal, or reorder how the line displays. Tab is kept.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A message written with [`needs_escape`] characters escaped as Rust does (`\n`,
/// `\u{85}`).
struct Escaped<'a>(&'a fmt::Arguments<'a>);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Out<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Out<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut rest = s;
                while let Some(i) = rest.find(needs_escape) {
                    self.0.write_str(&rest[..i])?;
                    let c = rest[i..].chars().next().expect("found at i");
                    write!(self.0, "{}", c.escape_default())?;
                    rest = &rest[i + c.len_utf8()..];
                }
                self.0.write_str(rest)
            }
        }
        fmt::write(&mut Out(f), *self.0)
    }
}

fn write_line(
    out: &mut dyn Write,
    style: &Style,
    now: &dyn Display,
    r: &Record<'_>,
) -> io::Result<()> {
    let msg = Escaped(r.args());
    match style {
        Style::Command { program } => {
            writeln!(out, "{program} {} {}: {msg}", r.level(), r.target())
        }
        Style::Daemon {
            tag,
            with_target: false,
        } => writeln!(out, "{now} {:<5} {tag}{msg}", r.level()),
        Style::Daemon {
            tag,
            with_target: true,
        } => writeln!(out, "{now} {:<5} {tag}{}: {msg}", r.level(), r.target()),
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
    fn a_message_is_always_one_line_whatever_it_quotes() {
        let style = Style::Daemon {
            tag: "master[1] ".into(),
            with_target: false,
        };
        let hostile = "blur:2\nINFO  forged line\r\u{b}\u{c}\u{85}\u{2028}\u{2029}\u{1b}[2J\u{202e}txt.exe\ttab";
        let text = logged("info", style, &[(Level::Info, "t", hostile)]);
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.ends_with(
                "master[1] blur:2\\nINFO  forged line\\r\\u{b}\\u{c}\\u{85}\\u{2028}\\u{2029}\\u{1b}[2J\\u{202e}txt.exe\ttab\n"
            ),
            "{text:?}"
        );
        // Ordinary text, non-ASCII letters included, is written as it is.
        let style = Style::Command {
            program: "imgclient".into(),
        };
        let text = logged("info", style, &[(Level::Warn, "t", "café: naïve 50%")]);
        assert_eq!(text, "imgclient WARN t: café: naïve 50%\n");
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
