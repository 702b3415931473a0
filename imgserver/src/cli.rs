//! Command-line interface of imgserver: the server itself, user management, local stats, and
//! the hidden worker mode the master starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "imgserver", version, about = "Image filter service: a master process with forked filter workers over a shared-memory ring", long_about = None)]
#[command(
    after_help = "Environment: RUST_LOG (log filter, default info), XDG_DATA_HOME (default state directory).\n\
Signals: SIGINT/SIGTERM stop gracefully (a second SIGINT stops at once); SIGHUP reloads the users file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Manage users (password verifiers in STATE_DIR/users; the server never stores passwords).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[arg(long, global = true, env = "IMGSERVER_STATE_DIR")]
        state_dir: Option<PathBuf>,
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
        #[arg(long, default_value = crate::health::DEFAULT_MAX_AGE, value_parser = humantime::parse_duration)]
        max_age: std::time::Duration,
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
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:7878", env = "IMGSERVER_LISTEN")]
    pub listen: SocketAddr,
    /// Filter worker processes (default: number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Directory for the server key and users file (default: $XDG_DATA_HOME/imgserver).
    #[arg(long, env = "IMGSERVER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// How log lines are written: `text` (timestamp, level, message) or `json` (one object a
    /// line: ts, level, target, tag, msg, and conn, peer, user when a line has them).
    #[arg(long, default_value = "text", env = "IMGSERVER_LOG_FORMAT")]
    pub log_format: cliutil::logging::Format,
    /// Seconds in-flight jobs get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10.0)]
    pub grace: f64,
    /// Per-job deadline in seconds; a worker that overruns it is killed and replaced.
    #[arg(long, default_value_t = 30.0)]
    pub job_timeout: f64,
    /// Most simultaneous client connections; more are refused with TOO_MANY_CONNECTIONS.
    #[arg(long, default_value_t = 10_000)]
    pub max_conns: usize,
    /// Most jobs one connection may have in flight.
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: u32,
    /// Largest upload in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_upload: u64,
    /// Largest image in pixels (checked from the header, before decoding).
    #[arg(long, default_value_t = 50_000_000)]
    pub max_pixels: u64,
    /// Ring slots: bounds the jobs uploading, queued or running at once; when all are taken,
    /// new jobs get BUSY. Slot memory is only committed when touched.
    #[arg(long, default_value_t = 256)]
    pub slots: u32,
    /// Bytes per ring slot; larger jobs use a dedicated memfd.
    #[arg(long, default_value_t = 4 << 20)]
    pub slot_size: u64,
    /// Total bytes of jobs larger than a slot held at once; beyond it, BUSY. The default is an
    /// eighth of physical memory, at least 512 MiB.
    #[arg(long, default_value_t = default_large_job_budget())]
    pub large_job_budget: u64,
    /// Seconds a connection may take to complete the handshake and login (0: no limit).
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds without any frame before a logged-in connection with no job in flight is
    /// closed (clients send PING; 0: never).
    #[arg(long, default_value_t = 120.0)]
    pub idle_timeout: f64,
    /// Seconds a client may leave output unread before it is cut off (0: never).
    #[arg(long, default_value_t = 30.0)]
    pub slow_client_timeout: f64,
    /// Seconds a frame may take, after login, from its first byte to its last; a peer that
    /// trickles bytes is cut off with SLOW_CLIENT (0: no limit).
    #[arg(long, default_value_t = 10.0)]
    pub frame_timeout: f64,
    /// Seconds an upload may receive nothing before it is dropped with SLOW_CLIENT and its
    /// ring slot freed (0: never).
    #[arg(long, default_value_t = 15.0)]
    pub upload_timeout: f64,
    /// Seconds a new connection has to send its HELLO, the first frame of the handshake; a
    /// peer that connects and says nothing is cut sooner than by --handshake-timeout (0: no
    /// separate limit).
    #[arg(long, default_value_t = 3.0)]
    pub hello_timeout: f64,
    /// Bytes of unsent output (answers to PING, STATS and refusals; job results are bounded
    /// by --max-in-flight instead) above which a connection is not read from until it drains
    /// to half of it; one that takes none of it for --slow-client-timeout is closed (0: no
    /// cap).
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES")]
    pub max_pending_output: usize,
    /// Frames handled per connection per turn of the event loop; a burst beyond it waits for
    /// the next turn, after every other ready connection (0: no limit).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_events_per_turn: usize,
    /// Connections accepted per turn of the event loop; the rest of a flood of connects
    /// waits in the backlog for the next turn (0: no limit).
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_accepts_per_turn: usize,
    /// Connections that have not logged in yet, server-wide; more are refused with
    /// TOO_MANY_CONNECTIONS (0: only --max-conns).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_unauth_conns: usize,
    /// Connections that have not logged in yet, per source address (IPv6: per /64); more are
    /// refused with TOO_MANY_CONNECTIONS (0: no limit).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_unauth_per_addr: u32,
    /// New connections per second per source address, sustained; faster ones are refused
    /// with RATE_LIMITED and a retry-after, before any key exchange (0: no limit).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub conn_rate_per_addr: u32,
    /// New connections per source address at once, after a quiet spell (the bucket behind
    /// --conn-rate-per-addr).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub conn_burst_per_addr: u32,
    /// Failed logins from one source address (within --login-fail-window) after which it is
    /// refused with RATE_LIMITED, before any key exchange, for --login-block (0: never).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub login_fail_limit: u32,
    /// Failed logins for one user name, from any address, after which every address that
    /// fails a login for that name is blocked at once (0: never).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub login_fail_limit_user: u32,
    /// Seconds of the first block for failed logins; each further block of the same address
    /// within the window doubles, up to --login-block-max.
    #[arg(long, default_value_t = 1.0)]
    pub login_block: f64,
    /// Seconds of the longest block for failed logins.
    #[arg(long, default_value_t = 300.0)]
    pub login_block_max: f64,
    /// Seconds without a failed login after which an address's (or a name's) failures and
    /// doubled blocks are forgotten.
    #[arg(long, default_value_t = 600.0)]
    pub login_fail_window: f64,
    /// Source addresses, and user names, remembered at once for the limits above; the least
    /// recently used is forgotten to make room.
    #[arg(long, default_value_t = 16_384, value_name = "N")]
    pub max_tracked_addrs: usize,
    /// Cheap requests (PING, STATS) per second per connection, sustained; more are refused
    /// with RATE_LIMITED and a retry-after, the connection stays (0: no limit).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub request_rate: u32,
    /// Cheap requests per connection at once, after a quiet spell (the bucket behind
    /// --request-rate).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub request_burst: u32,
    /// Address-space limit per worker in MiB (0: none); a decoder exceeding it fails its job.
    #[arg(long, default_value_t = 4096)]
    pub worker_mem_mb: u64,
    /// When the server runs as root: the user the workers switch to after their set-up
    /// (default: nobody). `root` keeps them root, with a warning. Ignored otherwise: workers
    /// run as the server's own user.
    #[arg(long, value_name = "NAME")]
    pub worker_user: Option<String>,
    /// Kernel-enforced confinement of the workers, on top of their limits and identity: a
    /// seccomp allow-list of system calls and a Landlock domain with no files, no TCP and no
    /// outside sockets or signals. A comma list of `seccomp` and `landlock`, or `none` (for
    /// measuring and debugging only: logged as a warning). A layer the kernel lacks is reported
    /// in the log and in `imgserver stats`, and the server starts without it.
    #[arg(long, value_name = "LAYERS", default_value = "seccomp,landlock")]
    pub sandbox: crate::sandbox::Layers,
    /// Rewrite this file with the metrics (Prometheus text format, what `imgserver metrics`
    /// prints) every --metrics-interval, atomically: for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// How often the --metrics-file is rewritten, e.g. `5s`, `500ms`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub metrics_interval: std::time::Duration,
}

impl ServeArgs {
    pub fn secs(v: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(v.max(0.001))
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
