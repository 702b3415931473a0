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

/// The older name of IMGCLIENT_SERVER, still read when that one is not set.
pub const OLD_SERVER_ENV: &str = "IMGSERVER_ADDR";

/// Connection options, accepted before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection options")]
pub struct ConnArgs {
    /// Server address HOST:PORT; a host name is resolved when connecting (again on each
    /// reconnect), so one that does not resolve is a connection failure, retried like an
    /// outage. IMGSERVER_ADDR, the older name of the variable, is still read.
    #[arg(
        long,
        env = "IMGCLIENT_SERVER",
        default_value = "127.0.0.1:7878",
        value_name = "HOST:PORT",
        value_parser = cliutil::units::parse_host_port,
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

impl ConnArgs {
    pub fn opts(&self) -> ConnectOpts {
        ConnectOpts {
            addr: self.server.clone(),
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
