//! The whole command line, composed: global flags, the shared connection options, the filter
//! subcommands (from `filter`), the operator commands and `bench` (from `bench`), with the
//! generated exit-code table as every help page's footer.
//!
//! Trust boundary: user input from argv and the environment. The features validate their own
//! values (op specs, ranges) so that a typo is a usage error (exit 1) before any connection is
//! made or any file is written.
//!
//! Only `main` uses this module: it sits above the features and composes them.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::args::{parse_duration, ConnArgs};
use crate::bench::BenchArgs;
use crate::exit;
use crate::filter::FilterCommand;

#[derive(Debug, Parser)]
#[command(
    name = "imgclient",
    version,
    about = "Client for imgserver: apply image filters remotely (or locally), check the server, load-test it",
    long_about = "Client for imgserver: apply image filters remotely (or locally), check the server, load-test it.\n\n\
        The filter commands write PNG, JPEG, GIF, WebP, AVIF, BMP or TIFF, picked by the -o \
        extension or --format (else the input's format). --quality Q (1..=100) sets the \
        quality of lossy output: JPEG (default 85), AVIF (default 60), and WebP, which is \
        lossy with --quality and lossless without.",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines are written: `text`, or `json` (one object a line: ts, level, target,
    /// tag, msg).
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "IMGCLIENT_LOG_FORMAT"
    )]
    pub log_format: cliutil::logging::Format,

    #[command(flatten)]
    pub conn: ConnArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The clap command with the generated exit-code table as its help footer.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let help = exit::exit_codes_help();
    Cli::command()
        // `--generate`: handled by `main` before the real parse (cliutil::generate), which
        // would otherwise insist on a subcommand.
        .arg(cliutil::generate::arg())
        .after_help(help.clone())
        .mut_subcommands(|c| c.after_help(help.clone()))
}

/// Parses argv (help and usage errors come back as clap errors).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_with_env(args, |var| std::env::var(var).ok())
}

/// [`parse_from`] with the environment given (for tests): IMGSERVER_ADDR, the older name of
/// IMGCLIENT_SERVER, applies when neither the flag nor the newer variable is given.
fn parse_with_env<I, T>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::FromArgMatches;
    let mut cmd = command();
    let mut m = cmd.clone().try_get_matches_from(args)?;
    // Asked before from_arg_matches_mut, which takes the values out of `m`.
    let server_defaulted = m.value_source("server") == Some(ValueSource::DefaultValue);
    let mut cli = Cli::from_arg_matches_mut(&mut m)?;
    if server_defaulted {
        if let Some(old) = env(crate::args::OLD_SERVER_ENV) {
            cli.conn.server = crate::args::parse_servers(&old).map_err(|e| {
                cmd.error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("{}: {e}", crate::args::OLD_SERVER_ENV),
                )
            })?;
        }
    }
    Ok(cli)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Filter(FilterCommand),
    /// Measure the round-trip time to the server.
    Ping {
        /// Number of pings.
        #[arg(short, long, default_value_t = 1)]
        count: u32,
        /// Pause between pings.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Show the server's counters.
    Stats {
        /// Print a JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the server whether it is ready, without a password: one PROBE before any key
    /// exchange or login. Prints one line (`ready`, `up, not ready`, `draining`, or why there
    /// is no answer) and exits 0 only when ready, 1 otherwise. With a --server list, the
    /// servers are probed in order until one is ready, one line each (prefixed by its
    /// address); ready when any is.
    Health {
        /// Instead, log in (password needed) and PING: exit 0 if both succeed in time.
        #[arg(long)]
        login: bool,
    },
    /// Pin a server's key before the first login, from its fingerprint learnt out of band.
    ///
    /// Connects to --server (one address, not a list), runs the handshake only (no login: no user or password is needed
    /// or sent) and, if the key the server proves has this fingerprint, writes it into the
    /// known-servers file, as a first connection would; if it has another, nothing is written
    /// and the exit code is 5. Without this, the first connection trusts whatever key answers,
    /// and an interposer there could test password guesses offline (docs/PROTOCOL.md, 8.4).
    /// imgserver logs its fingerprint at start: "server key fingerprint SHA256:...".
    Pin {
        /// The server's key fingerprint: SHA256: and 43 base64 characters.
        #[arg(long, value_name = "SHA256:...")]
        fingerprint: String,
    },
    /// Load-test the server.
    Bench(BenchArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        parse_from(std::iter::once("imgclient").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_feature_is_reachable() {
        assert!(matches!(
            parse(&["blur", "a", "-o", "-"]).command,
            Command::Filter(FilterCommand::Blur { .. })
        ));
        assert!(matches!(
            parse(&["run", "--ops", "invert", "a", "-o", "-"]).command,
            Command::Filter(FilterCommand::Run { .. })
        ));
        assert!(matches!(
            parse(&["ping", "-c", "3"]).command,
            Command::Ping { count: 3, .. }
        ));
        assert!(matches!(
            parse(&["stats", "--json"]).command,
            Command::Stats { json: true }
        ));
        assert!(matches!(
            parse(&["health"]).command,
            Command::Health { login: false }
        ));
        assert!(matches!(
            parse(&["health", "--login"]).command,
            Command::Health { login: true }
        ));
        let fp = "SHA256:BxDn3oghGeMxYQyscgwbFSiPcAbwg8EBd3vjexnyqKM";
        assert!(matches!(
            parse(&["pin", "--fingerprint", fp]).command,
            Command::Pin { fingerprint } if fingerprint == fp
        ));
        assert!(
            parse_from(["imgclient", "pin"]).is_err(),
            "the fingerprint is required"
        );
        let Command::Bench(b) = parse(&["bench", "--conns", "3"]).command else {
            panic!("bench did not parse as bench")
        };
        assert_eq!(b.conns, 3);
        assert!(parse_from(["imgclient", "frobnicate"]).is_err());
    }

    #[test]
    fn connection_flags_work_before_and_after_the_command() {
        let a = parse(&["--server", "h:1", "ping"]);
        let b = parse(&["ping", "--server", "h:1", "--retry-for", "5s"]);
        assert_eq!(a.conn.server, "h:1");
        assert_eq!(b.conn.server, "h:1");
        assert_eq!(b.conn.retry_for, Duration::from_secs(5));
    }

    #[test]
    fn durations_and_the_server_address_are_checked_at_parse_time() {
        let b = parse(&["ping", "--timeout", "1.5s", "--retry-for", "2m"]);
        assert_eq!(b.conn.timeout, Duration::from_millis(1500));
        assert_eq!(b.conn.retry_for, Duration::from_secs(120));
        assert_eq!(
            parse(&["ping", "--timeout", "3"]).conn.timeout,
            Duration::from_secs(3)
        );
        let e = parse_from(["imgclient", "ping", "--timeout", "3 parsecs"]).unwrap_err();
        assert!(e.to_string().contains("--timeout"), "{e}");
        assert!(e.use_stderr(), "a usage error, exit 1");
        let e = parse_from(["imgclient", "--server", "localhost", "ping"]).unwrap_err();
        assert!(e.to_string().contains("no :PORT"), "{e}");
        assert_eq!(
            parse(&["--server", "localhost:7878", "ping"]).conn.server,
            "localhost:7878"
        );
    }

    #[test]
    fn the_server_may_be_a_list_each_entry_checked() {
        let cli = parse(&["--server", "a:1, b:2,c:3", "ping"]);
        assert_eq!(cli.conn.server, "a:1,b:2,c:3");
        assert_eq!(cli.conn.servers(), ["a:1", "b:2", "c:3"]);
        assert_eq!(cli.conn.opts().servers, ["a:1", "b:2", "c:3"]);
        assert_eq!(parse(&["ping"]).conn.servers(), ["127.0.0.1:7878"]);
        let e = parse_from(["imgclient", "--server", "a:1,b", "ping"]).unwrap_err();
        assert!(e.to_string().contains("entry 2 \"b\""), "{e}");
        assert!(e.use_stderr(), "a usage error, exit 1");
        let e = parse_from(["imgclient", "--server", "a:1,,c:3", "ping"]).unwrap_err();
        assert!(e.to_string().contains("entry 2 is empty"), "{e}");
        let old = |name: &str| (name == crate::args::OLD_SERVER_ENV).then(|| "x:1,y:2".to_string());
        let cli = parse_with_env(["imgclient", "ping"], old).unwrap();
        assert_eq!(cli.conn.servers(), ["x:1", "y:2"]);
        let bad = |name: &str| (name == crate::args::OLD_SERVER_ENV).then(|| "x:1,y".to_string());
        let e = parse_with_env(["imgclient", "ping"], bad).unwrap_err();
        assert!(
            e.to_string().contains("IMGSERVER_ADDR") && e.to_string().contains("entry 2"),
            "{e}"
        );
    }

    #[test]
    fn the_older_server_variable_is_read_when_nothing_newer_is_given() {
        let old = |v: &str| {
            let v = v.to_string();
            move |name: &str| (name == crate::args::OLD_SERVER_ENV).then(|| v.clone())
        };
        let cli = parse_with_env(["imgclient", "ping"], old("h:9")).unwrap();
        assert_eq!(cli.conn.server, "h:9");
        let cli = parse_with_env(["imgclient", "--server", "h:1", "ping"], old("h:9")).unwrap();
        assert_eq!(cli.conn.server, "h:1", "the flag wins");
        let e = parse_with_env(["imgclient", "ping"], old("nonsense")).unwrap_err();
        assert!(e.to_string().contains("IMGSERVER_ADDR"), "{e}");
    }

    #[test]
    fn help_shows_exit_codes() {
        let help = command().render_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("5  server key changed"));
        let mut cmd = command();
        cmd.build(); // propagates the global (connection) options to subcommands
        let blur = cmd.find_subcommand_mut("blur").unwrap();
        let help = blur.render_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("Connection options:"), "{help}");
        let pin = cmd.find_subcommand_mut("pin").unwrap();
        let help = pin.render_long_help().to_string();
        for want in [
            "--fingerprint <SHA256:...>",
            "--known-servers",
            "no login",
            "8.4",
        ] {
            assert!(help.contains(want), "{want:?} not in:\n{help}");
        }
    }
}
