//! Connection arguments and duration parsing: the command-line pieces every networked feature
//! (filter commands, ping/stats/health, bench) shares.
//!
//! Trust boundary: user input from argv and the environment; a bad value is a clap usage error
//! (exit 1) before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::connect::ConnectOpts;

/// Connection options, accepted before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection options")]
pub struct ConnArgs {
    /// Server address HOST:PORT.
    #[arg(
        long,
        env = "IMGSERVER_ADDR",
        default_value = "127.0.0.1:7878",
        global = true
    )]
    pub server: String,

    /// User name [default: $USER]. The password comes from IMGCLIENT_PASSWORD,
    /// --password-file, or a prompt on the terminal.
    #[arg(long, env = "IMGCLIENT_USER", global = true)]
    pub user: Option<String>,

    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", global = true)]
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
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,

    /// Keep reconnecting through an outage (server restart, busy) for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration, global = true)]
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

/// `10s`, `500ms`, `2m`, `1.5s`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => v,
        "ms" => v / 1000.0,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }
}
