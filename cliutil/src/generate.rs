//! `--generate KIND`: the man pages and shell completion scripts of a binary, generated from
//! its own clap definition (clap_mangen, clap_complete), so they cannot drift from `--help`.
//! `make install` (scripts/install.sh) runs it on the freshly built binaries.
//!
//! Trust boundary: the operator's argv only; the output goes to stdout, or with
//! `--generate man DIR` into files in DIR (created if missing). Both binaries handle the flag
//! before anything else, so it never starts a server, opens a connection or reads a config
//! file; and it is not a config-file key (config_file::NOT_IN_FILES).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

/// The id and long name of the flag.
pub const FLAG: &str = "generate";

/// What `--generate` can produce.
pub const KINDS: [&str; 4] = ["man", "complete-bash", "complete-zsh", "complete-fish"];

/// The `--generate KIND [DIR]` argument, added to a binary's top-level command.
pub fn arg() -> clap::Arg {
    clap::Arg::new(FLAG)
        .long(FLAG)
        .value_names(["KIND", "DIR"])
        .num_args(1..=2)
        .action(clap::ArgAction::Set)
        .help(
            "Print a man page or a shell completion script and exit: KIND is `man` (the main \
             page), `complete-bash`, `complete-zsh` or `complete-fish`. `--generate man DIR` \
             instead writes every page into DIR: the main one and one per \
             subcommand (NAME-SUBCOMMAND.1), as `make install` does.",
        )
}

/// Whether argv asks for `--generate` at all (checked before the real parse, so that a
/// binary whose subcommand is otherwise required, or whose top level runs a server, can
/// answer it first).
pub fn requested(argv: &[OsString]) -> bool {
    argv.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|s| s == "--generate" || s.starts_with("--generate="))
    })
}

/// Handles `--generate` for `cmd` (the binary's full command, with [`arg`] added): `None`
/// when argv does not ask for it, else the exit code (0, or 1 for a usage error such as an
/// unknown KIND, 2 when the output cannot be written), after printing what went wrong.
pub fn run(cmd: clap::Command, argv: &[OsString]) -> Option<i32> {
    if !requested(argv) {
        return None;
    }
    let mut cmd = cmd.subcommand_required(false).arg_required_else_help(false);
    let m = match cmd.clone().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Some(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let values: Vec<&String> = m.get_many::<String>(FLAG)?.collect();
    let (kind, dir) = (
        values[0].as_str(),
        values.get(1).map(|d| Path::new(d.as_str())),
    );
    let name = cmd.get_name().to_string();
    let mut out = std::io::stdout().lock();
    let written = match (kind, dir) {
        ("man", None) => clap_mangen::Man::new(cmd).render(&mut out),
        ("man", Some(dir)) => {
            std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir))
        }
        (_, Some(_)) => {
            let e = cmd.error(
                clap::error::ErrorKind::TooManyValues,
                format!("--generate {kind} takes no DIR (only `man` does)"),
            );
            let _ = e.print();
            return Some(1);
        }
        (kind, None) => {
            let shell = match kind {
                "complete-bash" => clap_complete::Shell::Bash,
                "complete-zsh" => clap_complete::Shell::Zsh,
                "complete-fish" => clap_complete::Shell::Fish,
                other => {
                    let e = cmd.error(
                        clap::error::ErrorKind::InvalidValue,
                        format!(
                            "unknown --generate KIND {other:?} (one of: {})",
                            KINDS.join(", ")
                        ),
                    );
                    let _ = e.print();
                    return Some(1);
                }
            };
            clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
            Ok(())
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Some(0),
        // `--generate man | head`: a reader that stops early is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Some(0),
        Err(e) => {
            eprintln!("{name}: --generate {kind}: {e}");
            Some(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("demo")
            .about("A demo.")
            .subcommand_required(true)
            .subcommand(clap::Command::new("sub").about("A subcommand."))
            .subcommand(clap::Command::new("hidden").hide(true))
            .arg(arg())
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("demo")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn only_argv_with_the_flag_is_handled() {
        assert!(!requested(&argv(&["sub"])));
        assert!(!requested(&argv(&["sub", "generate"])));
        assert!(requested(&argv(&["--generate", "man"])));
        assert!(requested(&argv(&["--generate=complete-zsh"])));
        assert_eq!(run(cmd(), &argv(&["sub"])), None);
    }

    #[test]
    fn unknown_kinds_and_a_dir_for_completions_are_usage_errors() {
        assert_eq!(run(cmd(), &argv(&["--generate", "complete-tcsh"])), Some(1));
        assert_eq!(
            run(cmd(), &argv(&["--generate", "complete-bash", "/tmp"])),
            Some(1)
        );
    }

    #[test]
    fn man_dir_gets_one_page_a_visible_subcommand() {
        let dir = std::env::temp_dir().join(format!("cliutil-generate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.to_str().unwrap();
        assert_eq!(run(cmd(), &argv(&["--generate", "man", d])), Some(0));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["demo-sub.1", "demo.1"]);
        let page = std::fs::read_to_string(dir.join("demo.1")).unwrap();
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH demo 1"),
            "{page}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
