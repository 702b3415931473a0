//! The master process: one epoll event loop (mio) that owns every client connection, the
//! worker table and the ring, and a signal protocol in the nginx manner.
//!
//! Trust boundary: all network I/O and all key material stay here; workers get only image
//! bytes (through the ring) and op specs. Signal handlers only set flags; this loop acts on
//! them. Nothing named is created except the pid file, which is removed on every exit path
//! this process controls (a `kill -9` leaves a stale pid file that `imgserver stats` detects).

mod admission;
mod agent;
mod conn_log;
mod conns;
mod event_loop;
mod heap;
mod iface;
mod jobs;
mod listen;
mod log_limit;
mod pool;
pub(crate) mod proxy_header;
mod users_watch;
mod worker_log;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Poll};

use cliutil::units::{format_duration, format_size};

use crate::cli::ServeArgs;
use crate::ring::Ring;
use crate::stats::{self, Stats};
use crate::{signals, state};

use conns::{ConnLimits, Conns};
use event_loop::{Master, AGENT, LISTENER, SIGNALS};
use jobs::{JobLimits, Jobs};
use pool::{Pool, PoolConfig};

/// Raises the soft open-files limit to the hard limit: each connection is one fd, and the
/// usual soft default of 1024 would cap `--max-conns` far below its default.
fn raise_fd_limit(max_conns: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        warn!("cannot raise the open-files limit from {soft} to {hard}");
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s);
    // Workers, ring, listener, epoll and the like need a few dozen fds besides connections.
    if (max_conns as u64).saturating_add(64) > limit {
        warn!("open-files limit {limit} is below --max-conns {max_conns}; accept will fail with EMFILE beyond it");
    }
}

/// Why the server did not start or stopped on its own; the exit code follows (`cli::exit`).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Settings that cannot work, found before anything started (a usage error).
    #[error("{0}")]
    Usage(String),
    /// Something the server needs failed (state directory, key, lock, socket, ...).
    #[error("{0}")]
    Failure(String),
}

impl ServeError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Usage(_) => crate::cli::exit::USAGE,
            ServeError::Failure(_) => crate::cli::exit::FAILURE,
        }
    }
}

impl From<String> for ServeError {
    fn from(e: String) -> Self {
        ServeError::Failure(e)
    }
}

fn job_limits(args: &ServeArgs) -> JobLimits {
    JobLimits {
        max_in_flight: args.max_in_flight,
        max_upload: args.max_upload,
        large_job_budget: args.large_job_budget(),
        job_timeout: ServeArgs::at_least_a_tick(args.job_timeout),
        upload_timeout: ServeArgs::limit(args.upload_timeout),
    }
}

fn conn_limits(args: &ServeArgs) -> ConnLimits {
    ConnLimits {
        max_conns: args.max_conns,
        handshake_timeout: ServeArgs::at_least_a_tick(args.handshake_timeout),
        idle_timeout: ServeArgs::at_least_a_tick(args.idle_timeout),
        slow_client_timeout: ServeArgs::at_least_a_tick(args.slow_client_timeout),
        frame_timeout: ServeArgs::at_least_a_tick(args.frame_timeout),
        // Zero when off (for the log line that tells the HELLO's timer from the handshake's).
        hello_timeout: match args.hello_timeout {
            t if t.is_zero() => Duration::ZERO,
            t => ServeArgs::at_least_a_tick(t),
        },
        max_pending_output: args.max_pending_output,
        max_events_per_turn: args.max_events_per_turn,
        max_accepts_per_turn: args.max_accepts_per_turn,
        request_rate: args.request_rate,
        admission: admission::AdmissionLimits {
            max_unauth: args.max_unauth_conns,
            max_unauth_per_addr: args.max_unauth_per_addr,
            conn_rate_per_addr: args.conn_rate_per_addr,
            conn_burst_per_addr: args.conn_burst_per_addr,
            login_fail_limit: args.login_fail_limit,
            login_fail_limit_user: args.login_fail_limit_user,
            login_block: ServeArgs::at_least_a_tick(args.login_block),
            login_block_max: ServeArgs::at_least_a_tick(args.login_block_max.max(args.login_block)),
            login_fail_window: ServeArgs::at_least_a_tick(args.login_fail_window),
            max_tracked: args.max_tracked_addrs.max(1),
        },
        log_budget: log_limit::LogBudget::DEFAULT,
    }
}

/// Whom the workers run as: as root, the `--worker-user` (default `nobody`), resolved once at
/// start so a missing user is a clear error before anything runs; `root` is honoured only
/// when named, with a warning. As an ordinary user there is no one to switch to.
fn worker_identity(flag: Option<&str>) -> Result<Option<(u32, u32)>, String> {
    use nix::unistd::{geteuid, User};
    let me = geteuid();
    if !me.is_root() {
        match flag {
            Some(name) => warn!(
                "--worker-user {name} ignored: the server runs as uid {me}, not root; workers run as uid {me}"
            ),
            None => info!("workers run as the server's own user (uid {me})"),
        }
        return Ok(None);
    }
    let name = flag.unwrap_or("nobody");
    let user = User::from_name(name)
        .map_err(|e| format!("--worker-user {name}: cannot look the user up: {e}"))?
        .ok_or_else(|| {
            format!("--worker-user {name}: no such user (workers must not run as root; name an unprivileged user, or root to insist)")
        })?;
    if user.uid.is_root() {
        warn!("workers run as root (--worker-user {name}): a worker compromised by an image owns the machine");
        return Ok(None);
    }
    info!("workers run as {name} (uid {}, gid {})", user.uid, user.gid);
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

fn pool_config(
    args: &ServeArgs,
    exe: std::path::PathBuf,
    workers: usize,
    fault_injection: bool,
    run_as: Option<(u32, u32)>,
) -> PoolConfig {
    PoolConfig {
        exe,
        workers,
        worker_mem_mb: args.worker_mem_mib(),
        max_pixels: args.max_pixels,
        fault_injection,
        slots: args.slots,
        slot_size: args.slot_size,
        deadline_ms: ServeArgs::at_least_a_tick(args.job_timeout)
            .as_millis()
            .min(u32::MAX as u128) as u32,
        run_as,
        sandbox: args.sandbox,
    }
}

/// The result cache `--cache-size` asks for (`None` for 0). Its keys carry every setting that
/// changes a result's bytes: the build (encoders and their defaults are compiled in) and the
/// decode limit.
fn result_cache(args: &ServeArgs) -> Result<Option<crate::cache::ResultCache>, String> {
    if args.cache_size == 0 {
        info!("result cache off (--cache-size 0): nothing hashed, nothing collapsed");
        return Ok(None);
    }
    if args.cache_size < 64 << 10 {
        return Err("--cache-size must be 0 (off) or at least 64KiB".into());
    }
    let arena = crate::cache::Arena::memfd(args.cache_size)
        .map_err(|e| format!("result cache of {}: {e}", format_size(args.cache_size)))?;
    let settings = format!(
        "imgserver {} max-pixels {}",
        env!("CARGO_PKG_VERSION"),
        args.max_pixels
    );
    let cache = crate::cache::ResultCache::new(arena, settings);
    info!(
        "result cache {} (entries up to {})",
        format_size(args.cache_size),
        format_size(cache.max_entry() as u64)
    );
    Ok(Some(cache))
}

/// One start-up line with the limits in force, in the units the flags take, so that what a
/// flag, a variable or the config file set can be read back from the log.
fn log_settings(args: &ServeArgs) {
    let d = format_duration;
    info!(
        "settings: grace {}, job timeout {}, max upload {}, large-job budget {}, max conns {}, \
         handshake timeout {}, idle timeout {}, upload timeout {}, worker mem {}",
        d(args.grace),
        d(args.job_timeout),
        format_size(args.max_upload),
        format_size(args.large_job_budget()),
        args.max_conns,
        d(args.handshake_timeout),
        d(args.idle_timeout),
        d(args.upload_timeout),
        format_size(args.worker_mem_mib().saturating_mul(1 << 20)),
    );
}

/// Runs the server until it is told to stop; returns the process exit code.
pub fn serve(args: ServeArgs) -> Result<i32, ServeError> {
    // Before any key is loaded: nothing of the same uid may ptrace us or read our memory.
    crate::sandbox::protect_master();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || workers > stats::MAX_WORKERS {
        return Err(ServeError::Usage(format!(
            "--workers must be 1..={}",
            stats::MAX_WORKERS
        )));
    }
    if args.slots == 0 || args.slot_size < 4096 {
        return Err(ServeError::Usage(
            "--slots must be > 0 and --slot-size at least 4096".into(),
        ));
    }
    let run_as = worker_identity(args.worker_user.as_deref()).map_err(ServeError::Usage)?;
    raise_fd_limit(args.max_conns);
    let state_dir = state::resolve(args.state_dir.as_deref());
    state::ensure_dir(&state_dir)
        .map_err(|e| format!("state directory {}: {e}", state_dir.display()))?;
    // Held until serve returns (or the process dies): before the key is created or read.
    let _dir_lock = state::lock_dir(&state_dir)?;
    // The version before the read: a change racing with it is seen at the first look.
    let users_version =
        users_watch::Version::of(&state::users_path(&state_dir, args.users_file.as_deref()));
    let server_cfg = conns::load_config(&args, &state_dir)?;
    conns::log_key(&server_cfg, &args, &state_dir);

    // Signals first, so a Ctrl-C during start-up is not lost; the pipe wakes the loop.
    let sigpipe = signals::install().map_err(|e| format!("signal set-up: {e}"))?;
    let (ring, ring_fd) =
        Ring::create(args.slots, args.slot_size).map_err(|e| format!("ring: {e}"))?;
    let (stats, stats_fd) = Stats::create().map_err(|e| format!("stats page: {e}"))?;
    // Each part keeps its own mapping of the stats page: the counters are atomics.
    let map_stats = || Stats::map(&stats_fd).map_err(|e| format!("stats page: {e}"));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    poll.registry()
        .register(
            &mut SourceFd(&sigpipe.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )
        .map_err(|e| format!("epoll: {e}"))?;
    let registry = || {
        poll.registry()
            .try_clone()
            .map_err(|e| format!("epoll: {e}"))
    };

    // The failpoints exist only in the test build (feature `failpoints`); elsewhere the
    // variable is refused loudly rather than silently ignored.
    let fault_injection = std::env::var("IMGSERVER_FAULT_INJECTION").is_ok_and(|v| v == "1");
    if fault_injection && cfg!(feature = "failpoints") {
        warn!("fault injection enabled (IMGSERVER_FAULT_INJECTION=1): test build");
    } else if fault_injection {
        warn!("IMGSERVER_FAULT_INJECTION=1 ignored: this build has no failpoints");
    }
    let fault_injection = fault_injection && cfg!(feature = "failpoints");
    let now = Instant::now();
    let jobs =
        Jobs::new(job_limits(&args), ring, map_stats()?, workers).with_cache(result_cache(&args)?);
    let mut conns = Conns::new(registry()?, server_cfg, map_stats()?, conn_limits(&args));
    conns.set_proxy_from(args.proxy_protocol.then(|| args.proxy_from.clone()));
    if args.proxy_protocol {
        info!("PROXY protocol v2 header required from {}", args.proxy_from);
    }
    let pool_stats = map_stats()?;
    let pool = Pool::new(
        pool_config(&args, exe, workers, fault_injection, run_as),
        registry()?,
        ring_fd,
        stats_fd,
        pool_stats,
        now,
    );
    let mut m = Master {
        args,
        state_dir,
        poll,
        sigpipe,
        stats,
        conns,
        jobs,
        pool,
        shutdown_deadline: None,
        last_sweep: now,
        users_watch: users_watch::UsersWatch::new(users_version, now),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        notify: crate::notify::Notifier::from_env(),
        metrics_file: None,
        agent: None,
    };
    m.metrics_file = m
        .args
        .metrics_file
        .clone()
        .map(|path| crate::metrics::MetricsFile::new(path, m.args.metrics_interval, now));
    stats::add(&m.stats.get().global.workers_configured, workers as u64);
    m.pool.respawn_due(now);
    let listener = listen::bind_listener(m.args.listen).map_err(|e| {
        m.pool.stop(Duration::from_secs(1));
        format!("cannot listen on {}: {e}", m.args.listen)
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    m.conns
        .listen(listener, LISTENER)
        .map_err(|e| e.to_string())?;
    if let Some(a) = m.args.agent_listen {
        let agent = agent::Agent::bind(a, m.poll.registry(), AGENT).map_err(|e| {
            m.pool.stop(Duration::from_secs(1));
            format!("cannot listen on {a} (--agent-listen): {e}")
        })?;
        let at = agent.local_addr().map_err(|e| e.to_string())?;
        info!("agent-check listening on {at}");
        m.agent = Some(agent);
    }
    // `/proc/PID/fd` is closed to the server's own user now that it is undumpable: the
    // stats page is handed out over a socket, ready before the pid file names us.
    let page = m
        .pool
        .stats_fd()
        .try_clone()
        .map_err(|e| format!("stats page: {e}"))?;
    crate::statsock::serve(page).map_err(|e| format!("stats socket: {e}"))?;
    state::write_pid(&m.state_dir, m.pool.stats_fd().as_raw_fd())
        .map_err(|e| format!("pid file: {e}"))?;
    info!(
        "{workers} workers, ring {} x {}, state {}",
        m.args.slots,
        format_size(m.args.slot_size),
        m.state_dir.display()
    );
    if let Some(f) = &m.metrics_file {
        info!(
            "metrics written to {} every {}",
            f.path().display(),
            humantime::format_duration(m.args.metrics_interval)
        );
    }
    log_settings(&m.args);
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();

    let code = m.run();
    state::remove_pid(&m.state_dir);
    Ok(code)
}
