//! Command-line interface of imgserver: the server itself, user management, local stats, and
//! the hidden worker mode the master starts; and where the config file and the environment
//! join the command line.
//!
//! Trust boundary: the operator's argv, environment and config file. Every value is parsed
//! to its type here (durations and sizes by `cliutil::units`, host names resolved once), so
//! a bad one is a usage error naming the flag, or the file and key (exit 1), before anything
//! starts.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use cliutil::units::{parse_duration, parse_size, parse_size_usize, resolve_addr};

/// Exit codes of the server, the `--help` footer and what `main` returns.
pub mod exit {
    /// Bad flag, value, environment variable or config file, or settings that cannot work
    /// together (`--workers 0`, an unknown `--worker-user`): nothing was started. The same
    /// code as imgclient's usage error.
    pub const USAGE: i32 = 1;
    /// The server could not start or run: state directory, key, users file, lock (another
    /// server on the state directory), listening socket, workers; or `user`/`stats` failed.
    pub const FAILURE: i32 = 2;
    // 130, stopped at once by a second signal, is the event loop's (`stop_now`).
}

const AFTER_HELP: &str = "\
Durations: 500ms, 10s, 1.5s, 2m, 1h, 1h 30m; a bare number is seconds. Sizes: 64MiB, 512K, 4M,
1.5GiB; a bare number is bytes; K, M, G (with or without B) are powers of 1024, like KiB, MiB,
GiB.

Every server flag can be set by an environment variable named after it (--max-conns:
IMGSERVER_MAX_CONNS) or by a key of the --config file named like it (max-conns = 100).
Precedence: command line, then environment, then config file, then the default.
Environment also: RUST_LOG (log filter, default info), XDG_DATA_HOME (default state directory).

Exit codes:
  0    stopped cleanly (SIGINT/SIGTERM, after the grace period)
  1    usage error (bad flag, value, environment variable or config file; impossible settings)
  2    could not start or run (state directory, key, lock, listening socket, workers)
  130  stopped at once by a second SIGINT/SIGTERM

Signals: SIGINT/SIGTERM stop gracefully (a second SIGINT stops at once); SIGHUP reloads the users file.";

#[derive(Debug, Parser)]
#[command(name = "imgserver", version, about = "Image filter service: a master process with forked filter workers over a shared-memory ring", long_about = None)]
#[command(after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The clap command: a later occurrence of a flag overrides an earlier one (so the config
/// file's arguments, placed first, lose to the command line's), in `serve` too.
pub fn command() -> clap::Command {
    Cli::command()
        // `--generate`: on the top level only, handled by `main` before any parse or config
        // file (cliutil::generate), so it never starts a server.
        .arg(cliutil::generate::arg())
        .args_override_self(true)
        .mut_subcommand("serve", |c| {
            c.args_override_self(true).after_help(AFTER_HELP)
        })
}

/// What went wrong before the server could start: clap's own report (which includes
/// `--help` and `--version`, not errors) or a refused config file.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] cliutil::config_file::ConfigError),
}

/// Parses argv, with the `--config` file (or IMGSERVER_CONFIG) of `serve` merged in: its
/// keys become arguments placed before the real ones, those whose environment variable is
/// set left out, so the command line beats the environment beats the file beats the default.
pub fn parse_from(argv: Vec<OsString>) -> Result<Cli, CliError> {
    parse_with_env(argv, |var| std::env::var_os(var).is_some())
}

fn parse_with_env(argv: Vec<OsString>, env_is_set: impl Fn(&str) -> bool) -> Result<Cli, CliError> {
    let cmd = command();
    let m = cmd.clone().try_get_matches_from(&argv)?;
    let (serve_m, at) = match m.subcommand() {
        None => (&m, 1),
        Some(("serve", sub)) => {
            refuse_flags_before_serve(&cmd, &m)?;
            (sub, serve_position(&cmd, &argv))
        }
        Some(_) => return Ok(Cli::from_arg_matches(&m)?),
    };
    let Some(path) = serve_m.get_one::<PathBuf>("config").cloned() else {
        return Ok(Cli::from_arg_matches(&m)?);
    };
    let target = if at == 1 {
        cmd.clone()
    } else {
        cmd.find_subcommand("serve").cloned().unwrap_or(cmd.clone())
    };
    let from_file = cliutil::config_file::load(&target, &path, env_is_set)?;
    let mut merged = argv;
    merged.splice(at..at, from_file);
    let m = cmd.try_get_matches_from(merged)?;
    Ok(Cli::from_arg_matches(&m)?)
}

/// `imgserver --workers 3 serve` would run with the `serve` subcommand's own (default)
/// settings, the flag silently lost: a flag given before `serve` is a usage error naming it.
fn refuse_flags_before_serve(cmd: &clap::Command, m: &clap::ArgMatches) -> Result<(), clap::Error> {
    let given = cmd.get_arguments().find(|a| {
        m.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
    });
    let Some(arg) = given else {
        return Ok(());
    };
    let flag = arg
        .get_long()
        .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
    let mut cmd = cmd.clone();
    Err(cmd.error(
        clap::error::ErrorKind::ArgumentConflict,
        format!(
            "{flag} comes before `serve`, where it would be ignored: put it after `serve` \
             (imgserver serve {flag} ...) or leave `serve` out (imgserver {flag} ...)"
        ),
    ))
}

/// Where the `serve` subcommand's own arguments begin: after the first argument that, as the
/// end of the command line, makes it the `serve` subcommand (not a flag's value `serve`).
fn serve_position(cmd: &clap::Command, argv: &[OsString]) -> usize {
    (1..argv.len())
        .find(|&i| {
            argv[i] == "serve"
                && cmd
                    .clone()
                    .try_get_matches_from(&argv[..=i])
                    .is_ok_and(|m| m.subcommand_name() == Some("serve"))
        })
        .map_or(argv.len(), |i| i + 1)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Manage users (password verifiers in STATE_DIR/users or the --users-file; the server
    /// never stores passwords).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[arg(long, global = true, env = "IMGSERVER_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// The users file instead of STATE_DIR/users (the server's --users-file).
        #[arg(long, global = true, env = "IMGSERVER_USERS_FILE", value_name = "PATH")]
        users_file: Option<PathBuf>,
    },
    /// Print the counters of the server running with this state directory (read locally from
    /// its shared-memory stats page).
    Stats {
        #[arg(long, env = "IMGSERVER_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Whether the server running with this state directory is up and ready: one line, exit
    /// 0 when its event loop's heartbeat is fresh and at least one worker is ready, else 1
    /// (for systemd and container probes; local, no password).
    Health {
        #[arg(long, env = "IMGSERVER_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Oldest heartbeat of the master's event loop that still counts as alive (it beats
        /// every 100 ms), e.g. `5s`, `500ms`.
        #[arg(long, default_value = crate::health::DEFAULT_MAX_AGE, value_name = "DURATION", value_parser = parse_duration)]
        max_age: Duration,
        /// Wait up to this long for the server to become healthy (checking every 100 ms)
        /// before answering: for scripts that start a server and then use it. 0: answer at once.
        #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Print the counters, gauges and latency histograms of the server running with this
    /// state directory in the Prometheus text format.
    Metrics {
        #[arg(long, env = "IMGSERVER_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Internal: a filter worker, started by the master only.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        index: usize,
        #[arg(long, default_value_t = 0)]
        mem_limit_mb: u64,
        #[arg(long, default_value_t = 50_000_000)]
        max_pixels: u64,
        #[arg(long)]
        fault_injection: bool,
        /// The kernel-enforced layers to apply (the master's `--sandbox`).
        #[arg(long, default_value = "seccomp,landlock")]
        sandbox: crate::sandbox::Layers,
        /// The uid to switch to after the set-up (given by a master running as root).
        #[arg(long, requires = "gid")]
        uid: Option<u32>,
        /// The gid to switch to with it.
        #[arg(long, requires = "uid")]
        gid: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user or change a password (read from stdin when it is not a terminal, else prompted).
    Add { name: String },
    /// Delete a user.
    Del { name: String },
    /// List user names.
    List,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file of settings, one key per long flag (`max-conns = 100`, `grace = "10s"`); the
    /// command line and the environment override it (see dist/imgserver.toml).
    #[arg(long, value_name = "PATH", env = "IMGSERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT; a host name is resolved once at start, to its first
    /// IPv4 address if it has one, else to the first address the resolver returns. Port 0
    /// picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:7878", env = "IMGSERVER_LISTEN", value_name = "ADDR", value_parser = resolve_addr)]
    pub listen: SocketAddr,
    /// Filter worker processes (default: number of CPUs).
    #[arg(long, env = "IMGSERVER_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Directory for the server key and users file (default: $XDG_DATA_HOME/imgserver).
    #[arg(long, env = "IMGSERVER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The server's long-term key from this file instead of STATE_DIR/server.key. Servers
    /// given one file are one cluster identity: one fingerprint, one known_servers pin. Created
    /// (mode 0600, atomically, safe when several servers start at once) only if missing; an
    /// existing file is only read (it may be read-only).
    #[arg(long, env = "IMGSERVER_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// The users file instead of STATE_DIR/users, watched and reloaded the same way (give
    /// `imgserver user add|del` the same --users-file).
    #[arg(long, env = "IMGSERVER_USERS_FILE", value_name = "PATH")]
    pub users_file: Option<PathBuf>,
    /// HAProxy agent-check port, HOST:PORT (off by default). Each TCP connection gets one
    /// line and is closed: `up N%` (N: free capacity in percent, 1..100; `up ready N%` in the
    /// first 10 s, so that a restarted server leaves the drain its previous process said),
    /// `drain` once the server is shutting down, `down` while no worker is ready. Port 0
    /// picks a free port (printed as `agent-check listening on ADDR`).
    #[arg(long, env = "IMGSERVER_AGENT_LISTEN", value_name = "ADDR", value_parser = resolve_addr)]
    pub agent_listen: Option<SocketAddr>,
    /// How log lines are written: `text` (timestamp, level, message) or `json` (one object a
    /// line: ts, level, target, tag, msg, and conn, peer, user when a line has them).
    #[arg(long, default_value = "text", env = "IMGSERVER_LOG_FORMAT")]
    pub log_format: cliutil::logging::Format,
    /// How long in-flight jobs get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", env = "IMGSERVER_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Duration,
    /// Per-job deadline; a worker that overruns it is killed and replaced.
    #[arg(long, default_value = "30s", env = "IMGSERVER_JOB_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Most simultaneous client connections; more are refused with TOO_MANY_CONNECTIONS.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "IMGSERVER_MAX_CONNS",
        value_name = "N"
    )]
    pub max_conns: usize,
    /// Most jobs one connection may have in flight.
    #[arg(
        long,
        default_value_t = 32,
        env = "IMGSERVER_MAX_IN_FLIGHT",
        value_name = "N"
    )]
    pub max_in_flight: u32,
    /// Largest upload.
    #[arg(long, default_value = "64MiB", env = "IMGSERVER_MAX_UPLOAD", value_name = "SIZE", value_parser = parse_size)]
    pub max_upload: u64,
    /// Largest image in pixels (checked from the header, before decoding).
    #[arg(
        long,
        default_value_t = 50_000_000,
        env = "IMGSERVER_MAX_PIXELS",
        value_name = "N"
    )]
    pub max_pixels: u64,
    /// Ring slots: bounds the jobs uploading, queued or running at once; when all are taken,
    /// new jobs get BUSY. Slot memory is only committed when touched.
    #[arg(long, default_value_t = 256, env = "IMGSERVER_SLOTS", value_name = "N")]
    pub slots: u32,
    /// Size of a ring slot; larger jobs use a dedicated memfd.
    #[arg(long, default_value = "4MiB", env = "IMGSERVER_SLOT_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub slot_size: u64,
    /// Result cache: one arena of this size, in the master only, holding encoded results
    /// keyed by (input, normalised op spec, settings); a repeated request is answered from it
    /// without a worker, and identical requests in flight share one run. One result may take
    /// at most an eighth of it. 0 turns caching and collapsing off.
    #[arg(long, default_value = "64MiB", env = "IMGSERVER_CACHE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: u64,
    /// Total size of the jobs larger than a slot held at once; beyond it, BUSY (default: an
    /// eighth of physical memory, at least 512MiB).
    #[arg(long, env = "IMGSERVER_LARGE_JOB_BUDGET", value_name = "SIZE", value_parser = parse_size)]
    pub large_job_budget: Option<u64>,
    /// Time a connection may take to complete the handshake and login (0: no limit).
    #[arg(long, default_value = "10s", env = "IMGSERVER_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Time without any frame before a logged-in connection with no job in flight is closed
    /// (clients send PING; 0: never).
    #[arg(long, default_value = "2m", env = "IMGSERVER_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Time a client may leave output unread before it is cut off (0: never).
    #[arg(long, default_value = "30s", env = "IMGSERVER_SLOW_CLIENT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub slow_client_timeout: Duration,
    /// Time a frame may take, after login, from its first byte to its last; a peer that
    /// trickles bytes is cut off with SLOW_CLIENT (0: no limit).
    #[arg(long, default_value = "10s", env = "IMGSERVER_FRAME_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub frame_timeout: Duration,
    /// Time an upload may receive nothing before it is dropped with SLOW_CLIENT and its ring
    /// slot freed (0: never).
    #[arg(long, default_value = "15s", env = "IMGSERVER_UPLOAD_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub upload_timeout: Duration,
    /// Time a new connection has to send its HELLO, the first frame of the handshake; a peer
    /// that connects and says nothing is cut sooner than by --handshake-timeout (0: no
    /// separate limit).
    #[arg(long, default_value = "3s", env = "IMGSERVER_HELLO_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub hello_timeout: Duration,
    /// Unsent output (answers to PING, STATS and refusals; job results are bounded by
    /// --max-in-flight instead) above which a connection is not read from until it drains to
    /// half of it; one that takes none of it for --slow-client-timeout is closed (0: no cap).
    #[arg(long, default_value = "256KiB", env = "IMGSERVER_MAX_PENDING_OUTPUT", value_name = "SIZE", value_parser = parse_size_usize)]
    pub max_pending_output: usize,
    /// Frames handled per connection per turn of the event loop; a burst beyond it waits for
    /// the next turn, after every other ready connection (0: no limit).
    #[arg(
        long,
        default_value_t = 32,
        env = "IMGSERVER_MAX_EVENTS_PER_TURN",
        value_name = "N"
    )]
    pub max_events_per_turn: usize,
    /// Connections accepted per turn of the event loop; the rest of a flood of connects
    /// waits in the backlog for the next turn (0: no limit).
    #[arg(
        long,
        default_value_t = 128,
        env = "IMGSERVER_MAX_ACCEPTS_PER_TURN",
        value_name = "N"
    )]
    pub max_accepts_per_turn: usize,
    /// Connections that have not logged in yet, server-wide; more are refused with
    /// TOO_MANY_CONNECTIONS (0: only --max-conns).
    #[arg(
        long,
        default_value_t = 1024,
        env = "IMGSERVER_MAX_UNAUTH_CONNS",
        value_name = "N"
    )]
    pub max_unauth_conns: usize,
    /// Connections that have not logged in yet, per source address (IPv6: per /64); more are
    /// refused with TOO_MANY_CONNECTIONS (0: no limit).
    #[arg(
        long,
        default_value_t = 256,
        env = "IMGSERVER_MAX_UNAUTH_PER_ADDR",
        value_name = "N"
    )]
    pub max_unauth_per_addr: u32,
    /// New connections per second per source address, sustained; faster ones are refused
    /// with RATE_LIMITED and a retry-after, before any key exchange (0: no limit).
    #[arg(
        long,
        default_value_t = 64,
        env = "IMGSERVER_CONN_RATE_PER_ADDR",
        value_name = "N"
    )]
    pub conn_rate_per_addr: u32,
    /// New connections per source address at once, after a quiet spell (the bucket behind
    /// --conn-rate-per-addr).
    #[arg(
        long,
        default_value_t = 256,
        env = "IMGSERVER_CONN_BURST_PER_ADDR",
        value_name = "N"
    )]
    pub conn_burst_per_addr: u32,
    /// Failed logins from one source address (within --login-fail-window) after which it is
    /// refused with RATE_LIMITED, before any key exchange, for --login-block (0: never).
    #[arg(
        long,
        default_value_t = 5,
        env = "IMGSERVER_LOGIN_FAIL_LIMIT",
        value_name = "N"
    )]
    pub login_fail_limit: u32,
    /// Failed logins for one user name, from any address, after which every address that
    /// fails a login for that name is blocked at once (0: never).
    #[arg(
        long,
        default_value_t = 20,
        env = "IMGSERVER_LOGIN_FAIL_LIMIT_USER",
        value_name = "N"
    )]
    pub login_fail_limit_user: u32,
    /// The first block for failed logins; each further block of the same address within the
    /// window doubles, up to --login-block-max.
    #[arg(long, default_value = "1s", env = "IMGSERVER_LOGIN_BLOCK", value_name = "DURATION", value_parser = parse_duration)]
    pub login_block: Duration,
    /// The longest block for failed logins.
    #[arg(long, default_value = "5m", env = "IMGSERVER_LOGIN_BLOCK_MAX", value_name = "DURATION", value_parser = parse_duration)]
    pub login_block_max: Duration,
    /// Time without a failed login after which an address's (or a name's) failures and
    /// doubled blocks are forgotten.
    #[arg(long, default_value = "10m", env = "IMGSERVER_LOGIN_FAIL_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub login_fail_window: Duration,
    /// Source addresses, and user names, remembered at once for the limits above; the least
    /// recently used is forgotten to make room.
    #[arg(
        long,
        default_value_t = 16_384,
        env = "IMGSERVER_MAX_TRACKED_ADDRS",
        value_name = "N"
    )]
    pub max_tracked_addrs: usize,
    /// Cheap requests (PING, STATS) per second per connection, sustained; more are refused
    /// with RATE_LIMITED and a retry-after, the connection stays (0: no limit).
    #[arg(
        long,
        default_value_t = 1000,
        env = "IMGSERVER_REQUEST_RATE",
        value_name = "N"
    )]
    pub request_rate: u32,
    /// Cheap requests per connection at once, after a quiet spell (the bucket behind
    /// --request-rate).
    #[arg(
        long,
        default_value_t = 1000,
        env = "IMGSERVER_REQUEST_BURST",
        value_name = "N"
    )]
    pub request_burst: u32,
    /// Connections from the --proxy-from sources must begin with a PROXY protocol v2 header
    /// (the binary form, HAProxy's `send-proxy-v2`); logs, rate limits and per-address caps
    /// then use the client address it carries (a LOCAL header, a health check, keeps the
    /// proxy's own). A listed source without a valid header within --hello-timeout is
    /// refused, and so is any other source that sends one.
    #[arg(long, env = "IMGSERVER_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// The sources a PROXY header is accepted from, with --proxy-protocol: comma-separated IP
    /// addresses and CIDR prefixes (such as `10.0.0.5,10.1.0.0/16,::1`).
    #[arg(
        long,
        default_value = "127.0.0.1,::1",
        env = "IMGSERVER_PROXY_FROM",
        value_name = "LIST"
    )]
    pub proxy_from: crate::master::proxy_header::ProxyFrom,
    /// Address-space limit per worker, rounded up to a whole MiB (0: none); a decoder
    /// exceeding it fails its job.
    #[arg(long, default_value = "4GiB", env = "IMGSERVER_WORKER_MEM", value_name = "SIZE", value_parser = parse_size)]
    pub worker_mem: u64,
    /// The former spelling of --worker-mem, in MiB; it overrides --worker-mem when given.
    #[arg(long, hide = true, env = "IMGSERVER_WORKER_MEM_MB", value_name = "MIB")]
    pub worker_mem_mb: Option<u64>,
    /// When the server runs as root: the user the workers switch to after their set-up
    /// (default: nobody). `root` keeps them root, with a warning. Ignored otherwise: workers
    /// run as the server's own user.
    #[arg(long, env = "IMGSERVER_WORKER_USER", value_name = "NAME")]
    pub worker_user: Option<String>,
    /// Kernel-enforced confinement of the workers, on top of their limits and identity: a
    /// seccomp allow-list of system calls and a Landlock domain with no files, no TCP and no
    /// outside sockets or signals. A comma list of `seccomp` and `landlock`, or `none` (for
    /// measuring and debugging only: logged as a warning). A layer the kernel lacks is reported
    /// in the log and in `imgserver stats`, and the server starts without it.
    #[arg(
        long,
        value_name = "LAYERS",
        default_value = "seccomp,landlock",
        env = "IMGSERVER_SANDBOX"
    )]
    pub sandbox: crate::sandbox::Layers,
    /// Rewrite this file with the metrics (Prometheus text format, what `imgserver metrics`
    /// prints) every --metrics-interval, atomically: for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH", env = "IMGSERVER_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// How often the --metrics-file is rewritten.
    #[arg(long, default_value = "5s", env = "IMGSERVER_METRICS_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub metrics_interval: Duration,
}

impl ServeArgs {
    /// A deadline that must exist (`--job-timeout`, `--grace`): 0 means "at once", kept at a
    /// millisecond so that a timer is still armed.
    pub fn at_least_a_tick(d: Duration) -> Duration {
        d.max(Duration::from_millis(1))
    }

    /// A limit where 0 means "none" (the help says which).
    pub fn limit(d: Duration) -> Option<Duration> {
        (!d.is_zero()).then_some(d)
    }

    /// The worker address-space limit in MiB, as the worker takes it (0: none).
    pub fn worker_mem_mib(&self) -> u64 {
        self.worker_mem_mb
            .unwrap_or_else(|| self.worker_mem.div_ceil(1 << 20))
    }

    /// `--large-job-budget`, or its default for this machine.
    pub fn large_job_budget(&self) -> u64 {
        self.large_job_budget
            .unwrap_or_else(default_large_job_budget)
    }
}

/// An eighth of physical memory, at least 512 MiB: the uploads of large jobs wait in memory
/// until a worker takes them, and a fixed figure either refuses work a big machine could hold
/// (150 clients uploading 6 MB photos need 900 MB) or lets a small one swap.
fn default_large_job_budget() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    let pages = sysconf(SysconfVar::_PHYS_PAGES).ok().flatten().unwrap_or(0);
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
    let phys = (pages.max(0) as u64).saturating_mul(page.max(0) as u64);
    (phys / 8).max(512 << 20)
}

/// The head of dist/imgserver.toml (written by the test that checks it).
#[cfg(test)]
const EXAMPLE_TITLE: &str = "\
imgserver config file (imgserver --config PATH, or IMGSERVER_CONFIG=PATH).

Every key is a long flag of `imgserver --help` without its dashes, here at its default,
commented out. Durations are strings (\"10s\", \"500ms\", \"2m\") or numbers of seconds; sizes
are strings (\"64MiB\", \"512K\": K, M, G are powers of 1024) or numbers of bytes. The command
line and the IMGSERVER_* environment variables override this file. Generated from the flags by
`UPDATE_DIST=1 cargo test -p imgserver --bin imgserver dist_example`; the test fails when it
is out of date.";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn os(args: &[&str]) -> Vec<OsString> {
        std::iter::once("imgserver")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn config(text: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "imgserver-cli-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    fn serve(cli: Cli) -> ServeArgs {
        match cli.command {
            None => cli.serve,
            Some(Command::Serve(a)) => *a,
            Some(c) => panic!("not serve: {c:?}"),
        }
    }

    fn no_env(_: &str) -> bool {
        false
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn durations_sizes_and_names_in_the_new_forms() {
        let a = serve(
            parse_with_env(
                os(&[
                    "--grace",
                    "10s",
                    "--job-timeout",
                    "500ms",
                    "--max-upload",
                    "64MiB",
                    "--slot-size",
                    "512K",
                    "--max-pending-output",
                    "1M",
                    "--worker-mem",
                    "1.5GiB",
                    "--listen",
                    "localhost:0",
                ]),
                no_env,
            )
            .unwrap(),
        );
        assert_eq!(a.grace, Duration::from_secs(10));
        assert_eq!(a.job_timeout, Duration::from_millis(500));
        assert_eq!(a.max_upload, 64 << 20);
        assert_eq!(a.slot_size, 512 << 10);
        assert_eq!(a.max_pending_output, 1 << 20);
        assert_eq!(a.worker_mem_mib(), 1536);
        assert!(
            a.listen.ip().is_loopback() && a.listen.is_ipv4(),
            "{}",
            a.listen
        );
        // Bare numbers keep their old meaning: seconds, bytes; the old MiB flag still works.
        let a = serve(
            parse_with_env(
                os(&[
                    "--grace",
                    "5",
                    "--max-upload",
                    "1000",
                    "--worker-mem-mb",
                    "64",
                ]),
                no_env,
            )
            .unwrap(),
        );
        assert_eq!(a.grace, Duration::from_secs(5));
        assert_eq!(a.max_upload, 1000);
        assert_eq!(a.worker_mem_mib(), 64);
        // The defaults, as the help shows them.
        let a = serve(parse_with_env(os(&[]), no_env).unwrap());
        assert_eq!(a.grace, Duration::from_secs(10));
        assert_eq!(a.idle_timeout, Duration::from_secs(120));
        assert_eq!(a.login_block_max, Duration::from_secs(300));
        assert_eq!(a.max_upload, 64 << 20);
        assert_eq!(a.worker_mem_mib(), 4096);
        assert_eq!(
            ServeArgs::limit(a.upload_timeout),
            Some(Duration::from_secs(15))
        );
        let a = serve(parse_with_env(os(&["--upload-timeout", "0"]), no_env).unwrap());
        assert_eq!(ServeArgs::limit(a.upload_timeout), None, "0: never");
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        for (flag, value) in [
            ("--grace", "10x"),
            ("--max-upload", "lots"),
            ("--job-timeout", "-1s"),
            ("--listen", "no-such-host.invalid:7878"),
            ("--listen", "localhost"),
        ] {
            let arg = format!("{flag}={value}");
            let Err(CliError::Clap(e)) = parse_with_env(os(&[&arg]), no_env) else {
                panic!("{flag} {value} was accepted");
            };
            assert!(e.use_stderr());
            let msg = e.to_string();
            assert!(msg.contains(flag) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn a_flag_before_serve_is_refused_not_lost() {
        let Err(CliError::Clap(e)) = parse_with_env(os(&["--workers", "3", "serve"]), no_env)
        else {
            panic!("--workers before serve was accepted");
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(
            e.to_string().contains("--workers comes before `serve`"),
            "{e}"
        );
        // After `serve`, or without it, the flag counts.
        for argv in [&["serve", "--workers", "3"][..], &["--workers", "3"]] {
            assert_eq!(
                serve(parse_with_env(os(argv), no_env).unwrap()).workers,
                Some(3)
            );
        }
    }

    #[test]
    fn the_config_file_loses_to_the_command_line_and_to_set_variables() {
        let file =
            config("grace = \"2m\"\nmax-conns = 7\nmax-upload = 1048576\nsandbox = \"none\"\n");
        let f = file.to_str().unwrap();
        let a = serve(parse_with_env(os(&["--config", f]), no_env).unwrap());
        assert_eq!(a.grace, Duration::from_secs(120));
        assert_eq!(a.max_conns, 7);
        assert_eq!(a.max_upload, 1 << 20);
        assert_eq!(
            a.job_timeout,
            Duration::from_secs(30),
            "not in the file: the default"
        );
        // The command line, before or after --config, wins.
        let a = serve(parse_with_env(os(&["--grace", "3s", "--config", f]), no_env).unwrap());
        assert_eq!(a.grace, Duration::from_secs(3));
        let a = serve(parse_with_env(os(&["--config", f, "--max-conns", "9"]), no_env).unwrap());
        assert_eq!(a.max_conns, 9);
        assert_eq!(a.grace, Duration::from_secs(120));
        // A key whose variable is set is left to clap's environment lookup.
        let a =
            serve(parse_with_env(os(&["--config", f]), |v| v == "IMGSERVER_MAX_CONNS").unwrap());
        assert_eq!(
            a.max_conns, 10_000,
            "the (here unset) variable, not the file"
        );
        assert_eq!(a.grace, Duration::from_secs(120));
        // The `serve` subcommand takes the file too, also after a flag whose value is `serve`.
        let a =
            serve(parse_with_env(os(&["serve", "--config", f, "--grace", "1s"]), no_env).unwrap());
        assert_eq!((a.grace, a.max_conns), (Duration::from_secs(1), 7));
        let dir = std::env::temp_dir().join("serve");
        let a = serve(
            parse_with_env(
                os(&["serve", "--state-dir", dir.to_str().unwrap(), "--config", f]),
                no_env,
            )
            .unwrap(),
        );
        assert_eq!(a.max_conns, 7);
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn a_bad_config_file_is_a_usage_error_naming_file_and_key() {
        for (text, key, want) in [
            ("max_conns = 7", "max_conns", "unknown key"),
            ("grace = \"soon\"", "grace", "--grace"),
            ("max-upload = \"64 parsecs\"", "max-upload", "--max-upload"),
            ("max-conns = \"many\"", "max-conns", "many"),
            (
                "listen = \"no-such-host.invalid:1\"",
                "listen",
                "no-such-host.invalid",
            ),
            ("workers = [[1]]", "workers", "expected a list of values"),
        ] {
            let file = config(text);
            let r = parse_with_env(os(&["--config", file.to_str().unwrap()]), no_env);
            let Err(CliError::Config(e)) = r else {
                panic!("{text:?} was accepted: {r:?}");
            };
            let msg = e.to_string();
            assert!(msg.contains(file.to_str().unwrap()), "{msg}");
            assert!(msg.contains(&format!("{key:?}")), "{msg}");
            assert!(msg.contains(want), "{want:?} not in {msg}");
            let _ = std::fs::remove_file(file);
        }
        let r = parse_with_env(os(&["--config", "/no/such/imgserver.toml"]), no_env);
        assert!(matches!(r, Err(CliError::Config(_))), "{r:?}");
    }

    /// `--generate` prints and exits: it is neither a key of the config file (which would
    /// turn a server start into a man page) nor a flag of `serve`, and `main` answers it
    /// before any parse.
    #[test]
    fn generate_is_not_a_config_key_nor_a_serve_flag() {
        let file = config("generate = \"man\"");
        let r = parse_with_env(os(&["--config", file.to_str().unwrap()]), no_env);
        let Err(CliError::Config(e)) = r else {
            panic!("generate was accepted as a config key: {r:?}");
        };
        assert!(e.to_string().contains("unknown key"), "{e}");
        let _ = std::fs::remove_file(file);
        assert!(command().get_arguments().any(|a| a.get_id() == "generate"));
        let serve = command().find_subcommand("serve").unwrap().clone();
        assert!(!serve.get_arguments().any(|a| a.get_id() == "generate"));
        assert!(cliutil::generate::requested(&os(&["--generate", "man"])));
        assert!(!cliutil::generate::requested(&os(&["--workers", "2"])));
    }

    /// dist/imgserver.toml is generated from the flags: a new or changed flag fails this test
    /// until the file is regenerated (UPDATE_DIST=1), and every default in it is accepted.
    #[test]
    fn dist_example_matches_the_flags() {
        let cmd = command();
        let serve_cmd = cmd.find_subcommand("serve").unwrap();
        let want = cliutil::config_file::example(serve_cmd, EXAMPLE_TITLE);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/imgserver.toml");
        if std::env::var_os("UPDATE_DIST").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "dist/imgserver.toml is out of date: UPDATE_DIST=1 cargo test -p imgserver --bin imgserver dist_example"
        );
        // Uncommented, every key at its default is accepted as it is.
        let defaults: String = want
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = ") && !l.contains(" = <"))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert!(defaults.contains("grace = \"10s\""), "{defaults}");
        let file = config(&defaults);
        let a = serve(parse_with_env(os(&["--config", file.to_str().unwrap()]), no_env).unwrap());
        assert_eq!(a.grace, Duration::from_secs(10));
        let _ = std::fs::remove_file(file);
    }
}
