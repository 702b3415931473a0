//! The master process: one epoll event loop (mio) that owns every client connection, the
//! worker table and the ring, and a signal protocol in the nginx manner.
//!
//! Trust boundary: all network I/O and all key material stay here; workers get only image
//! bytes (through the ring) and op specs. Signal handlers only set flags; this loop acts on
//! them. Nothing named is created except the pid file, which is removed on every exit path
//! this process controls (a `kill -9` leaves a stale pid file that `imgserver stats` detects).

mod client;
mod jobs;
mod listen;
mod pool;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use netproto_sys::{ServerConfig, ServerParams};

use crate::cli::ServeArgs;
use crate::ring::{Ring, SlotTable};
use crate::stats::{self, Stats};
use crate::{signals, state};

use client::Client;
use jobs::Job;
use pool::{WState, WorkerSlot};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WORKER_BASE: usize = 16;
const CLIENT_BASE: usize = 1 << 20;

pub struct Master {
    args: ServeArgs,
    exe: PathBuf,
    state_dir: PathBuf,
    poll: Poll,
    listener: Option<TcpListener>,
    sigpipe: OwnedFd,
    server_cfg: ServerConfig,
    ring: Ring,
    ring_fd: OwnedFd,
    stats: Stats,
    stats_fd: OwnedFd,
    slots: SlotTable,
    workers: Vec<WorkerSlot>,
    clients: Vec<Option<Client>>,
    free_clients: Vec<usize>,
    next_gen: u64,
    open_conns: usize,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    queue: VecDeque<u64>,
    large_bytes: u64,
    /// Smoothed job service time, for BUSY retry-after hints.
    avg_job_ms: f64,
    shutdown_deadline: Option<Instant>,
    stopping_workers: bool,
    fault_injection: bool,
    last_sweep: Instant,
    /// The last accept() failed for lack of resources; retry on the next sweep.
    accept_stalled: bool,
    /// CPUs this process may run on.
    cpus: usize,
}

fn load_config(args: &ServeArgs, dir: &std::path::Path) -> Result<ServerConfig, String> {
    let params = ServerParams {
        max_chunk: 65536,
        max_upload: args.max_upload,
        max_in_flight: args.max_in_flight,
    };
    let mut cfg =
        ServerConfig::new(&state::key_path(dir), params).map_err(|e| format!("server key: {e}"))?;
    let users = state::read_users(dir)
        .map_err(|e| format!("users file {}: {e}", state::users_path(dir).display()))?;
    for (name, verifier) in &users {
        cfg.add_user(name, verifier)
            .map_err(|e| format!("users file: user {name}: {e}"))?;
    }
    if users.is_empty() {
        warn!(
            "no users in {}: nobody can log in (add one with `imgserver user add NAME`)",
            state::users_path(dir).display()
        );
    }
    Ok(cfg)
}

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

/// Runs the server until it is told to stop; returns the process exit code.
pub fn serve(args: ServeArgs) -> Result<i32, String> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || workers > stats::MAX_WORKERS {
        return Err(format!("--workers must be 1..={}", stats::MAX_WORKERS));
    }
    if args.slots == 0 || args.slot_size < 4096 {
        return Err("--slots must be > 0 and --slot-size at least 4096".into());
    }
    raise_fd_limit(args.max_conns);
    let state_dir = state::resolve(args.state_dir.as_deref());
    state::ensure_dir(&state_dir)
        .map_err(|e| format!("state directory {}: {e}", state_dir.display()))?;
    let server_cfg = load_config(&args, &state_dir)?;
    if server_cfg.key_created() {
        info!(
            "created server key {}",
            state::key_path(&state_dir).display()
        );
    }
    info!(
        "server key fingerprint {}",
        netproto_sys::fingerprint(server_cfg.public_key())
    );

    // Signals first, so a Ctrl-C during start-up is not lost; the pipe wakes the loop.
    let sigpipe = signals::install().map_err(|e| format!("signal set-up: {e}"))?;
    let (ring, ring_fd) =
        Ring::create(args.slots, args.slot_size).map_err(|e| format!("ring: {e}"))?;
    let (stats, stats_fd) = Stats::create().map_err(|e| format!("stats page: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    poll.registry()
        .register(
            &mut SourceFd(&sigpipe.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )
        .map_err(|e| format!("epoll: {e}"))?;

    let fault_injection = std::env::var("IMGSERVER_FAULT_INJECTION").is_ok_and(|v| v == "1");
    if fault_injection {
        warn!("fault injection enabled (IMGSERVER_FAULT_INJECTION=1): test builds only");
    }
    let mut m = Master {
        slots: SlotTable::new(args.slots),
        workers: (0..workers).map(WorkerSlot::new).collect(),
        args,
        exe,
        state_dir,
        poll,
        listener: None,
        sigpipe,
        server_cfg,
        ring,
        ring_fd,
        stats,
        stats_fd,
        clients: Vec::new(),
        free_clients: Vec::new(),
        next_gen: 1,
        open_conns: 0,
        jobs: HashMap::new(),
        next_job: 1,
        queue: VecDeque::new(),
        large_bytes: 0,
        avg_job_ms: 20.0,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        shutdown_deadline: None,
        stopping_workers: false,
        fault_injection,
        last_sweep: Instant::now(),
        accept_stalled: false,
    };
    for i in 0..workers {
        m.spawn_worker(i);
    }
    let mut listener = listen::bind_listener(m.args.listen).map_err(|e| {
        m.stop_workers(Duration::from_secs(1));
        format!("cannot listen on {}: {e}", m.args.listen)
    })?;
    m.poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    m.listener = Some(listener);
    state::write_pid(&m.state_dir, m.stats_fd.as_raw_fd()).map_err(|e| format!("pid file: {e}"))?;
    info!(
        "{workers} workers, ring {} x {} KiB, state {}",
        m.args.slots,
        m.args.slot_size >> 10,
        m.state_dir.display()
    );
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();

    let code = m.run();
    state::remove_pid(&m.state_dir);
    Ok(code)
}

/// Jobs shorter than this on average are worth waiting for without sleeping.
const SPIN_JOB_MS: f64 = 0.2;
/// Longest such wait.
const SPIN_MAX: Duration = Duration::from_micros(200);

impl Master {
    /// When a worker is running a job that should finish within microseconds and the master
    /// has nothing else to do, polls without sleeping for a short while. Waking a process that
    /// sleeps in epoll_wait costs tens of microseconds on a virtual machine (an interrupt to an
    /// idle CPU), as much as a small job itself; a poll that never sleeps hears the worker's
    /// Done at once. Only while a CPU is free for it (fewer busy workers than CPUs), so the
    /// wait never takes a core from a worker, and never under load, where the poll always
    /// has events. Bounded by twice the average job time and 200 µs.
    fn spin_for_short_job(&mut self, events: &mut Events) {
        events.clear();
        if self.avg_job_ms > SPIN_JOB_MS {
            return;
        }
        let now = Instant::now();
        let budget = Duration::from_secs_f64(self.avg_job_ms * 2.0 / 1000.0).min(SPIN_MAX);
        let mut busy = 0;
        let mut running_short = false;
        for w in &self.workers {
            if let WState::Busy { since, .. } = w.state {
                busy += 1;
                running_short |= now.saturating_duration_since(since) < budget;
            }
        }
        if !running_short || busy >= self.cpus {
            return;
        }
        let end = now + budget;
        while Instant::now() < end {
            if self.poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty() {
                return;
            }
            std::hint::spin_loop();
        }
    }

    fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.queue.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(20)
            };
            self.spin_for_short_job(&mut events);
            if events.is_empty() {
                if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        warn!("epoll_wait: {e}");
                    }
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    SIGNALS => signals::drain(&self.sigpipe),
                    Token(t) if (WORKER_BASE..WORKER_BASE + self.workers.len()).contains(&t) => {
                        self.worker_readable(t - WORKER_BASE)
                    }
                    Token(t) if t >= CLIENT_BASE => self.client_event(
                        t - CLIENT_BASE,
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        ev.is_writable(),
                    ),
                    _ => {}
                }
            }
            if signals::take_child_exited() {
                self.reap();
            }
            self.respawn_due();
            self.dispatch();
            if self.last_sweep.elapsed() >= Duration::from_millis(100) {
                self.last_sweep = Instant::now();
                self.reap();
                if self.accept_stalled {
                    // accept() failed (EMFILE): edge-triggered epoll will not report the
                    // backlog again, so retry here.
                    self.accept_stalled = false;
                    self.accept();
                }
                self.sweep_deadlines();
                self.sweep_timeouts();
            }
            if signals::take_reload() {
                self.reload();
            }
            let stops = signals::stop_requests();
            if stops >= 2 {
                return self.stop_now();
            }
            if stops == 1 && self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            if let Some(deadline) = self.shutdown_deadline {
                let drained = self.jobs.is_empty()
                    && self
                        .clients
                        .iter()
                        .flatten()
                        .all(|c| c.conn.pending_output().is_empty());
                if drained || Instant::now() >= deadline {
                    return self.finish_shutdown(drained);
                }
            }
        }
    }

    fn reload(&mut self) {
        match load_config(&self.args, &self.state_dir) {
            Ok(cfg) => {
                self.server_cfg = cfg;
                info!(
                    "reloaded users from {}",
                    state::users_path(&self.state_dir).display()
                );
            }
            Err(e) => warn!("reload failed, keeping the old users: {e}"),
        }
    }

    /// First SIGINT/SIGTERM: stop accepting, tell every client, let in-flight jobs finish.
    fn begin_shutdown(&mut self) {
        let grace = ServeArgs::secs(self.args.grace);
        info!(
            "shutting down: {} jobs in flight, {} connections, grace {:.1} s",
            self.jobs.len(),
            self.open_conns,
            grace.as_secs_f64()
        );
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shutdown_deadline = Some(Instant::now() + grace);
        let grace_ms = grace.as_millis().min(u32::MAX as u128) as u32;
        for k in 0..self.clients.len() {
            if let Some(c) = self.clients[k].as_mut() {
                if c.conn.is_ready() {
                    let _ = c.conn.send_shutdown(grace_ms);
                }
            }
            self.flush_client(k);
        }
    }

    /// Grace over (or nothing left): answer what is unfinished, say BYE, stop workers.
    fn finish_shutdown(&mut self, drained: bool) -> i32 {
        if !drained {
            warn!("grace period over with {} jobs unfinished", self.jobs.len());
        }
        let unfinished: Vec<u64> = self.jobs.keys().copied().collect();
        for id in unfinished {
            self.fail_job(
                id,
                netproto_sys::ErrorCode::ShuttingDown,
                "server stopped before the job finished",
            );
        }
        for k in 0..self.clients.len() {
            if let Some(c) = self.clients[k].as_mut() {
                if c.conn.is_ready() {
                    let _ = c.conn.send_bye();
                }
                // One last non-blocking flush; a client that cannot take it loses nothing it
                // was promised beyond the SHUTDOWN notice it already has.
                let _ = c
                    .conn
                    .write_fd(std::os::fd::AsFd::as_fd(&c.stream), Instant::now());
            }
            self.close_client(k, "server shutdown");
        }
        self.stop_workers(Duration::from_secs(2));
        info!(
            "stopped: {} jobs ok, {} failed",
            self.stats
                .get()
                .global
                .jobs_ok
                .load(std::sync::atomic::Ordering::Relaxed),
            self.stats
                .get()
                .global
                .jobs_failed
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        0
    }

    /// Second SIGINT/SIGTERM: stop at once, still leaving nothing behind.
    fn stop_now(&mut self) -> i32 {
        warn!("second stop signal: exiting now");
        self.stop_workers(Duration::ZERO);
        130
    }
}
