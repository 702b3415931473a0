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
//!
//! A record may carry structured fields (the `log` crate's key-values): `conn`, `peer` and
//! `user` name the connection a line is about. A text line writes them in front of the
//! message in one shape, `conn 17 127.0.0.1:50312 user alice: message`, so every line about
//! a connection reads alike; [`Format::Json`] writes one JSON object per line instead, with
//! `ts` (RFC 3339 UTC), `level`, `target`, `tag`, `msg` and every field (serde_json encodes
//! it; the escaping above is applied first, so a peer's text reads the same in both).
//! [`Style::Child`] is for a process whose stderr another process reads and re-logs (a
//! filter worker): no timestamp, which the reader adds, and the level first so it can be
//! recognised.

use std::fmt::{self, Display};
use std::io::{self, Write};
use std::str::FromStr;

use log::kv::{self, VisitSource};
use log::Record;

/// What a line is written as: text for people and `grep`, JSON for a log collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// A `--log-format` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?} (text or json)")]
pub struct UnknownFormat(String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

impl Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
        })
    }
}

/// How each line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// `{program} {level} {target}: {message}`, no timestamp: a command's lines.
    Command { program: String },
    /// `{timestamp} {level:<5} {tag}{message}`, with `{target}: ` before the message when
    /// `with_target`: a long-running process's lines. `tag` is written as given (e.g.
    /// `"master[42] "`, with its trailing space, or empty).
    Daemon { tag: String, with_target: bool },
    /// `{level} {message}`, no timestamp: a child process whose stderr its parent reads and
    /// re-logs with its own timestamp and format (the parent recognises the level).
    Child,
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
    init_with(filter, style, Format::Text)
}

/// [`init`] writing lines in `format`.
pub fn init_with(filter: &str, style: Style, format: Format) -> bool {
    builder_with(filter, style, format).try_init().is_ok()
}

/// The configured builder behind [`init`], for a caller that wants another target.
pub fn builder(filter: &str, style: Style) -> env_logger::Builder {
    builder_with(filter, style, Format::Text)
}

/// The configured builder behind [`init_with`].
pub fn builder_with(filter: &str, style: Style, format: Format) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.parse_filters(filter);
    b.format(move |f, r| {
        let now = f.timestamp_millis();
        match format {
            Format::Text => write_line(f, &style, &now, r),
            Format::Json => write_json(f, &style, &now, r),
        }
    });
    b
}

/// Escapes `s` like every message ([`needs_escape`]): for text that arrives other than
/// through a record's message (a re-logged line, a field).
pub fn escape(s: &str) -> String {
    Escaped(&format_args!("{s}")).to_string()
}

/// A line a [`Style::Child`] logger wrote, split into its level and message; `None` for a
/// line it did not write (a panic message, anything else on the child's stderr).
pub fn parse_child_line(line: &str) -> Option<(log::Level, &str)> {
    let (word, rest) = line.split_once(' ')?;
    let level: log::Level = word.parse().ok()?;
    // `{:<5}` pads the shorter names: "WARN  x", "INFO  x".
    let pad = 5usize.saturating_sub(word.len());
    let msg = rest
        .get(pad..)
        .filter(|_| rest.as_bytes()[..pad].iter().all(|&b| b == b' '))?;
    (word == level.as_str()).then_some((level, msg))
}

/// A record's fields, in order, as (key, value) with the value's number when it is one.
#[derive(Default)]
struct Fields(Vec<(String, String, Option<u64>)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, k: kv::Key<'kvs>, v: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let text = escape(&v.to_string());
        self.0.push((escape(k.as_str()), text, v.to_u64()));
        Ok(())
    }
}

impl Fields {
    fn of(r: &Record<'_>) -> Fields {
        let mut f = Fields::default();
        let _ = r.key_values().visit(&mut f);
        f
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }

    /// `conn 17 127.0.0.1:50312 user alice: ` for what of it the record has, else nothing.
    fn conn_prefix(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.get("conn") {
            parts.push(format!("conn {c}"));
        }
        if let Some(p) = self.get("peer") {
            parts.push(p.to_string());
        }
        if let Some(u) = self.get("user") {
            parts.push(format!("user {u}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("{}: ", parts.join(" "))
        }
    }
}

/// One JSON object: `ts`, `level`, `target`, `tag` (the style's, trimmed, when not empty),
/// `msg`, then the record's fields (numbers as numbers).
fn write_json(
    out: &mut dyn Write,
    style: &Style,
    now: &dyn Display,
    r: &Record<'_>,
) -> io::Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("ts".into(), now.to_string().into());
    obj.insert("level".into(), r.level().as_str().into());
    obj.insert("target".into(), r.target().into());
    let tag = match style {
        Style::Command { program } => program.as_str(),
        Style::Daemon { tag, .. } => tag.trim_end(),
        Style::Child => "",
    };
    if !tag.is_empty() {
        obj.insert("tag".into(), tag.into());
    }
    obj.insert("msg".into(), Escaped(r.args()).to_string().into());
    for (k, v, n) in Fields::of(r).0 {
        if matches!(k.as_str(), "ts" | "level" | "target" | "tag" | "msg") {
            continue;
        }
        let value = match n {
            Some(n) => serde_json::Value::from(n),
            None => serde_json::Value::from(v),
        };
        obj.insert(k, value);
    }
    let line = serde_json::to_string(&obj).map_err(io::Error::other)?;
    writeln!(out, "{line}")
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
    let fields = Fields::of(r);
    let conn = fields.conn_prefix();
    match style {
        Style::Command { program } => {
            writeln!(out, "{program} {} {}: {conn}{msg}", r.level(), r.target())
        }
        Style::Daemon {
            tag,
            with_target: false,
        } => writeln!(out, "{now} {:<5} {tag}{conn}{msg}", r.level()),
        Style::Daemon {
            tag,
            with_target: true,
        } => writeln!(
            out,
            "{now} {:<5} {tag}{}: {conn}{msg}",
            r.level(),
            r.target()
        ),
        Style::Child => writeln!(out, "{:<5} {conn}{msg}", r.level()),
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

    /// What a logger in `format` prints for one record with connection fields.
    fn logged_conn(style: Style, format: Format, user: &str, msg: &str) -> String {
        let out = Shared::default();
        let logger = builder_with("info", style, format)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        let kvs: [(&str, kv::Value<'_>); 3] = [
            ("conn", kv::Value::from(17u64)),
            ("peer", kv::Value::from("127.0.0.1:50312")),
            ("user", kv::Value::from(user)),
        ];
        logger.log(
            &Record::builder()
                .level(Level::Info)
                .target("imgserver::master::conns")
                .key_values(&kvs)
                .args(format_args!("{msg}"))
                .build(),
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    fn daemon() -> Style {
        Style::Daemon {
            tag: "master[42] ".into(),
            with_target: false,
        }
    }

    #[test]
    fn connection_fields_lead_a_text_line_in_one_shape() {
        let text = logged_conn(daemon(), Format::Text, "alice", "upload too large");
        let (_, rest) = text.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "INFO  master[42] conn 17 127.0.0.1:50312 user alice: upload too large\n"
        );
        // A field is the peer's text too: escaped like the message.
        let text = logged_conn(daemon(), Format::Text, "evil\n\u{202e}x", "m");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(text.contains("user evil\\n\\u{202e}x: m"), "{text:?}");
    }

    #[test]
    fn json_lines_parse_and_carry_the_fields() {
        let text = logged_conn(daemon(), Format::Json, "bob\u{2028}", "refused \"x\"\n");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert!(is_timestamp(v["ts"].as_str().unwrap()), "{v}");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "imgserver::master::conns");
        assert_eq!(v["tag"], "master[42]");
        assert_eq!(v["msg"], "refused \"x\"\\n");
        assert_eq!(v["conn"], 17);
        assert_eq!(v["peer"], "127.0.0.1:50312");
        assert_eq!(v["user"], "bob\\u{2028}");
        // Without fields, none are invented.
        let text = logged("info", daemon(), &[(Level::Warn, "t", "plain")]);
        assert!(text.starts_with("20"), "{text}");
        let out = Shared::default();
        let logger = builder_with("info", daemon(), Format::Json)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        logger.log(
            &Record::builder()
                .level(Level::Warn)
                .target("t")
                .args(format_args!("plain"))
                .build(),
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 5, "{v}");
    }

    #[test]
    fn child_lines_have_no_timestamp_and_parse_back() {
        let text = logged("info", Style::Child, &[(Level::Warn, "t", "job 3: slow")]);
        assert_eq!(text, "WARN  job 3: slow\n");
        assert_eq!(
            parse_child_line(text.trim_end()),
            Some((Level::Warn, "job 3: slow"))
        );
        assert_eq!(parse_child_line("ERROR boom"), Some((Level::Error, "boom")));
        assert_eq!(parse_child_line("INFO  x"), Some((Level::Info, "x")));
        for other in [
            "thread 'main' panicked at src/failpoints.rs:20:9:",
            "WARN x",
            "warn  x",
            "INFO",
            "",
        ] {
            assert_eq!(parse_child_line(other), None, "{other:?}");
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("text".parse(), Ok(Format::Text));
        assert_eq!("json".parse(), Ok(Format::Json));
        assert!("JSON".parse::<Format>().is_err());
        assert_eq!(Format::Json.to_string(), "json");
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
