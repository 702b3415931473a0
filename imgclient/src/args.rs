//! Connection arguments: the command-line pieces every networked feature (filter commands,
//! ping/stats/health, bench) shares, each settable by an `IMGCLIENT_*` variable named after its
//! flag. Durations are read by `cliutil::units`, the same way as the server's flags.
//!
//! Trust boundary: user input from argv and the environment; a bad value is a clap usage error
//! (exit 1) before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
pub use cliutil::units::parse_duration;

use crate::connect::ConnectOpts;
use crate::failover::parse_server_list;

/// The older name of IMGCLIENT_SERVER, still read when that one is not set.
pub const OLD_SERVER_ENV: &str = "IMGSERVER_ADDR";

/// Connection options, accepted before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection options")]
pub struct ConnArgs {
    /// Server address HOST:PORT, or a comma-separated list of them (A,B,C) to fail over
    /// across: a connection goes to the first in order that answers (one that is unreachable,
    /// full or shutting down is skipped at once; a changed key is an error, never skipped),
    /// with the backoff of --retry-for between rounds that find none; one that loses its
    /// server tries the next one first. Each address is pinned in the known-servers file
    /// under its own spelling. bench spreads its connections round-robin over the list.
    /// A host name is resolved when connecting (again on each reconnect), so one that does
    /// not resolve is a connection failure, retried like an outage. IMGSERVER_ADDR, the
    /// older name of the variable, is still read (same syntax).
    #[arg(
        long,
        env = "IMGCLIENT_SERVER",
        default_value = "127.0.0.1:7878",
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_parser = parse_servers,
        global = true
    )]
    pub server: String,

    /// User name [default: $USER]. The password comes from IMGCLIENT_PASSWORD,
    /// --password-file, or a prompt on the terminal.
    #[arg(long, env = "IMGCLIENT_USER", global = true)]
    pub user: Option<String>,

    /// Read the password from the first line of FILE.
    #[arg(
        long,
        value_name = "FILE",
        env = "IMGCLIENT_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<PathBuf>,

    /// Known-servers (key pinning) file
    /// [default: $XDG_CONFIG_HOME/imgclient/known_servers or ~/.config/imgclient/known_servers].
    #[arg(
        long,
        value_name = "FILE",
        env = "IMGCLIENT_KNOWN_SERVERS",
        global = true
    )]
    pub known_servers: Option<PathBuf>,

    /// Timeout for connecting (TCP + handshake + login) and for each send/answer.
    #[arg(
        long,
        default_value = "10s",
        value_parser = parse_duration,
        value_name = "DURATION",
        env = "IMGCLIENT_TIMEOUT",
        global = true
    )]
    pub timeout: Duration,

    /// Keep reconnecting through an outage (server restart, busy) for this long.
    #[arg(
        long,
        default_value = "1m",
        value_parser = parse_duration,
        value_name = "DURATION",
        env = "IMGCLIENT_RETRY_FOR",
        global = true
    )]
    pub retry_for: Duration,
}

/// Checks a `--server` value (one address or a list, see [`parse_server_list`]) and gives it
/// back normalised: the entries trimmed, joined by commas.
pub fn parse_servers(s: &str) -> Result<String, String> {
    parse_server_list(s).map(|l| l.join(","))
}

impl ConnArgs {
    /// The server list, in order (already validated by the parser).
    pub fn servers(&self) -> Vec<String> {
        self.server.split(',').map(str::to_string).collect()
    }

    pub fn opts(&self) -> ConnectOpts {
        ConnectOpts {
            servers: self.servers(),
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            known_servers: self.known_servers.clone(),
            timeout: self.timeout,
            retry_for: self.retry_for,
            heartbeat: crate::connect::HEARTBEAT,
            dead_after: crate::connect::DEAD_AFTER,
        }
    }
}
