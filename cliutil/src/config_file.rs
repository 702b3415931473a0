//! A TOML config file turned into command-line arguments, so that clap stays the only parser
//! and a key means exactly what its flag means (same name, same value syntax, same checks).
//!
//! Trust boundary: a file the operator points at. Every key is checked against the clap
//! command it is for, and every value is parsed by that flag's own parser before anything
//! runs; an unknown key, a value of the wrong TOML type or a bad value is a [`ConfigError`]
//! naming the file, the key and the problem.
//!
//! Precedence (command line > environment > file > default) comes from where the arguments
//! go: the caller places them before the real ones, and the command is built with
//! `args_override_self`, so a later occurrence on the command line wins; a key whose flag has
//! its environment variable set is left out, so the variable wins over the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: not TOML: {why}", path.display())]
    Syntax { path: PathBuf, why: String },
    #[error("config file {}: unknown key {key:?} (the keys are the long flags of --help, without --)", path.display())]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {}: key {key:?}: {why}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        why: String,
    },
}

/// Keys that are flags of the command but make no sense in a file (`generate` prints a man
/// page or completions instead of starting the server: `generate.rs`).
const NOT_IN_FILES: [&str; 4] = ["config", "help", "version", crate::generate::FLAG];

/// Reads `path` and turns it into arguments for `cmd` (see [`to_args`]).
pub fn load(
    cmd: &clap::Command,
    path: &Path,
    env_is_set: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    to_args(cmd, path, &text, env_is_set)
}

/// Turns the TOML `text` into `--key value` arguments for `cmd`, each value checked by its
/// flag's parser. `env_is_set(VAR)` says whether a flag's environment variable is set: such
/// keys are checked but left out, since the variable takes precedence over the file.
///
/// Values: strings as they are, integers and floats in decimal, arrays of those joined with
/// commas (`sandbox = ["seccomp", "landlock"]`); a flag that takes no value wants a boolean.
pub fn to_args(
    cmd: &clap::Command,
    path: &Path,
    text: &str,
    env_is_set: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            why: e.message().to_string(),
        })?;
    let bad = |key: &str, why: String| ConfigError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        why,
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .filter(|a| !NOT_IN_FILES.contains(&a.get_id().as_str()))
            .find(|a| {
                a.get_long() == Some(key.as_str())
                    || a.get_all_aliases()
                        .is_some_and(|al| al.contains(&key.as_str()))
            })
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
            })?;
        let flag = format!("--{}", arg.get_long().unwrap_or(key));
        let args = if arg.get_action().takes_values() {
            let v = scalar_text(value).map_err(|why| bad(key, why))?;
            vec![flag, v]
        } else {
            match value {
                toml::Value::Boolean(true) => vec![flag],
                toml::Value::Boolean(false) => vec![],
                other => {
                    return Err(bad(
                        key,
                        format!("expected true or false, found {}", other.type_str()),
                    ))
                }
            }
        };
        // The flag's own parser decides, exactly as on the command line; only the first
        // line of clap's report is kept (the rest is usage for a command line).
        let probe = std::iter::once(cmd.get_name().to_string()).chain(args.iter().cloned());
        if let Err(e) = cmd.clone().try_get_matches_from(probe) {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            return Err(bad(key, first.trim_start_matches("error: ").to_string()));
        }
        if arg
            .get_env()
            .and_then(|v| v.to_str())
            .is_some_and(&env_is_set)
        {
            continue;
        }
        out.extend(args.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// A TOML value as the text a flag would be given.
fn scalar_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => Err(format!(
                    "expected a list of values, found a list of {}",
                    i.type_str()
                )),
                other => scalar_text(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        other => Err(format!(
            "expected a string or a number, found {}",
            other.type_str()
        )),
    }
}

/// The commented-out example of a config file for `cmd`: every key that a file may set, with
/// its help text, at its default (`# grace = "10s"`), or at its value name when it has none.
pub fn example(cmd: &clap::Command, title: &str) -> String {
    let mut s = String::new();
    for line in title.lines() {
        s += &format!("# {line}\n").replace("# \n", "#\n");
    }
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILES.contains(&id) || arg.is_hide_set() || arg.is_positional() {
            continue;
        }
        s += "\n";
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            for line in help.to_string().lines() {
                for part in wrap(line, 92) {
                    s += format!("## {part}").trim_end();
                    s += "\n";
                }
            }
        }
        if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
            s += &format!("## (environment: {env})\n");
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let value = if !arg.get_action().takes_values() {
            "true".to_string()
        } else if let [d] = defaults.as_slice() {
            toml_literal(d)
        } else {
            // No default to show: a placeholder, which is not TOML so it cannot be uncommented
            // by mistake.
            let name = arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or_else(|| id.to_uppercase(), |n| n.to_string());
            format!("<{name}>")
        };
        s += &format!("# {long} = {value}\n");
    }
    s
}

/// Greedy word wrap of one line of help text to `width` columns (a long word stays whole).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for word in line.split_whitespace() {
        let cur = out.last_mut().unwrap();
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            out.push(word.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    out
}

/// An integer stays an integer, anything else is a quoted string.
fn toml_literal(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cmd() -> Command {
        Command::new("srv")
            .args_override_self(true)
            .arg(
                Arg::new("grace")
                    .long("grace")
                    .env("TEST_CFG_GRACE")
                    .default_value("10s")
                    .value_parser(crate::units::parse_duration)
                    .help("Grace period."),
            )
            .arg(
                Arg::new("max-conns")
                    .long("max-conns")
                    .env("TEST_CFG_MAX_CONNS")
                    .default_value("100")
                    .value_parser(clap::value_parser!(u32)),
            )
            .arg(
                Arg::new("max-upload")
                    .long("max-upload")
                    .default_value("64MiB")
                    .value_parser(crate::units::parse_size),
            )
            .arg(
                Arg::new("worker-mem")
                    .long("worker-mem")
                    .alias("worker-memory")
                    .value_parser(crate::units::parse_size),
            )
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config"))
    }

    fn args(text: &str, env: &[&str]) -> Result<Vec<String>, ConfigError> {
        to_args(&cmd(), Path::new("/etc/srv.toml"), text, |v| {
            env.contains(&v)
        })
        .map(|a| a.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    /// What `srv` ends up with when the file's arguments go before the command line's.
    fn merged(text: &str, env: &[&str], cli: &[&str]) -> clap::ArgMatches {
        let mut argv = vec!["srv".to_string()];
        argv.extend(args(text, env).unwrap());
        argv.extend(cli.iter().map(|s| s.to_string()));
        cmd().try_get_matches_from(argv).unwrap()
    }

    #[test]
    fn keys_become_flags_with_their_values() {
        let a = args(
            "grace = \"2m\"\nmax-conns = 7\nmax-upload = \"1.5GiB\"\nworker-memory = 4096\nquiet = true\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            a,
            [
                "--grace",
                "2m",
                "--max-conns",
                "7",
                "--max-upload",
                "1.5GiB",
                "--quiet",
                "--worker-mem",
                "4096",
            ],
            "in key order"
        );
        assert!(args("quiet = false", &[]).unwrap().is_empty());
        assert_eq!(
            args("grace = 1.5", &[]).unwrap(),
            ["--grace", "1.5"],
            "a float is seconds, like a bare number on the command line"
        );
    }

    #[test]
    fn command_line_beats_environment_beats_file_beats_default() {
        use std::time::Duration;
        let file = "grace = \"2m\"\nmax-conns = 7\n";
        let grace = |m: &clap::ArgMatches| *m.get_one::<Duration>("grace").unwrap();
        // The file over the default.
        let m = merged(file, &[], &[]);
        assert_eq!(grace(&m), Duration::from_secs(120));
        assert_eq!(m.get_one::<u32>("max-conns"), Some(&7));
        assert_eq!(
            m.get_one::<u64>("max-upload"),
            Some(&(64 << 20)),
            "untouched keys keep their default"
        );
        // The command line over the file: a later occurrence overrides (args_override_self).
        let m = merged(file, &[], &["--grace", "3s"]);
        assert_eq!(grace(&m), Duration::from_secs(3));
        // A set environment variable leaves the key out, so clap takes the variable.
        assert_eq!(
            args(file, &["TEST_CFG_GRACE"]).unwrap(),
            ["--max-conns", "7"]
        );
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_name_file_and_key() {
        let e = args("max_conns = 7", &[]).unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownKey { key, .. } if key == "max_conns"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("config file /etc/srv.toml: unknown key \"max_conns\""),
            "{msg}"
        );

        let e = args("config = \"/other.toml\"", &[]).unwrap_err();
        assert!(
            matches!(e, ConfigError::UnknownKey { .. }),
            "no nested config files"
        );

        let e = args("grace = \"10parsecs\"", &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("config file /etc/srv.toml: key \"grace\": "),
            "{e}"
        );
        assert!(e.contains("10parsecs") && e.contains("--grace"), "{e}");

        let e = args("max-conns = -3", &[]).unwrap_err().to_string();
        assert!(e.contains("key \"max-conns\"") && e.contains("-3"), "{e}");

        let e = args("max-conns = true", &[]).unwrap_err().to_string();
        assert!(
            e.contains("key \"max-conns\": expected a string or a number, found boolean"),
            "{e}"
        );

        let e = args("quiet = 1", &[]).unwrap_err().to_string();
        assert!(
            e.contains("key \"quiet\": expected true or false, found integer"),
            "{e}"
        );

        // A bad value is refused even when the environment would override it.
        assert!(args("grace = \"soon\"", &["TEST_CFG_GRACE"]).is_err());

        let e = args("grace = ", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");

        let e = load(&cmd(), Path::new("/no/such/srv.toml"), |_| false).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/no/such/srv.toml"));
    }

    #[test]
    fn the_example_lists_every_key_at_its_default_and_parses_uncommented() {
        let ex = example(&cmd(), "srv example");
        assert!(ex.contains("# grace = \"10s\"\n"), "{ex}");
        assert!(
            ex.contains("## Grace period.\n## (environment: TEST_CFG_GRACE)\n"),
            "{ex}"
        );
        assert!(ex.contains("# max-conns = 100\n"), "{ex}");
        assert!(ex.contains("# max-upload = \"64MiB\"\n"), "{ex}");
        assert!(!ex.contains("config ="), "{ex}");
        assert!(ex.contains("# worker-mem = <WORKER-MEM>\n"), "{ex}");
        assert!(ex.contains("# quiet = true\n"), "{ex}");
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        let with_defaults: String = ex
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = ") && !l.contains("worker-mem"))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert_eq!(
            args(&with_defaults, &[]).unwrap().len(),
            7,
            "{with_defaults}"
        );
    }
}
