//! The worker pool: spawning, readiness, reaping with waitpid(WNOHANG), respawn with crash-loop
//! backoff, and stopping (no respawn once shutdown begins; at the end, close each channel,
//! then KILL what has not exited in time: workers ignore SIGTERM, see `signals`). It knows processes and channels, not jobs: which
//! job a worker runs is the jobs part's business; the pool only reports which workers died.
//!
//! Trust boundary: workers are untrusted once they have touched an image; the master only
//! believes a worker is gone when waitpid says so, and only then is its ring slot reclaimed.
//! What a worker says about its sandbox is believed only in Ready, before its first image; a
//! death by SIGSYS is a sandbox violation whatever the worker wrote about it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::iface::{Death, JobOrder, WorkerId};
use crate::ipc::channel::{ChannelError, MasterChannel};
use crate::ipc::msg::{Done, Init, Job, Ready, ToMaster, ToWorker, VariantDone};
use crate::sandbox::{self, Report};
use crate::stats::{self, Stats};

/// At most this many respawns of one worker per `CRASH_WINDOW`; beyond it is a crash loop and
/// respawns back off, so a worker that dies at start-up cannot make the master spin.
const CRASH_BURST: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker dying sooner than this after its start (or before it was ready) is crash-looping.
const EARLY_DEATH: Duration = Duration::from_secs(1);

/// Poll tokens of worker channels: `WORKER_BASE + index`.
const WORKER_BASE: usize = 16;
/// How long `stop` waits for the stderr readers to log the last lines of the workers.
const LOG_DRAIN: Duration = Duration::from_secs(1);

/// How to start a worker and what to tell it in `Init`.
#[derive(Debug, Clone)]
/// A worker's answer about its job: a variant of a multi-output job, or the job's end.
pub enum Answer {
    Variant(VariantDone),
    Done(Done),
}

pub struct PoolConfig {
    pub exe: PathBuf,
    pub workers: usize,
    pub worker_mem_mb: u64,
    pub max_pixels: u64,
    pub fault_injection: bool,
    pub slots: u32,
    pub slot_size: u64,
    pub deadline_ms: u32,
    /// The uid and gid workers switch to (`None`: the master's own).
    pub run_as: Option<(u32, u32)>,
    /// The kernel-enforced layers workers apply (`--sandbox`).
    pub sandbox: sandbox::Layers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    /// Spawned, Init sent, waiting for Ready.
    Starting,
    /// Said Ready: takes jobs (whether it runs one now is the jobs part's business).
    Ready,
    /// Exited (reaped) or never started; respawn at `respawn_at`.
    Dead,
}

/// Why the master killed a worker, which decides whether its death counts toward the
/// crash-loop backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// The master's own decision about a serving worker (its job overran the deadline): the
    /// death says nothing about whether a new worker can start, so it never counts, however
    /// young the worker was (a retried slow job kills its replacement within the deadline).
    Decided,
    /// The worker misbehaved (garbage on its channel): counted like a crash by the early-death
    /// rule, so a worker binary that breaks its protocol at start cannot make the master spin.
    Misbehaved,
}

/// One worker's process-level state and its crash history (the backoff decisions, which
/// need no process and are unit-tested with a fake clock).
#[derive(Debug)]
struct WorkerSlot {
    child: Option<Child>,
    sock: Option<MasterChannel>,
    state: WState,
    deaths: VecDeque<Instant>,
    respawn_at: Option<Instant>,
    spawned_at: Instant,
    /// Killed by the master, and why, so its death is expected.
    killed: Option<Kill>,
}

impl WorkerSlot {
    fn new(now: Instant) -> Self {
        WorkerSlot {
            child: None,
            sock: None,
            state: WState::Dead,
            deaths: VecDeque::new(),
            respawn_at: Some(now),
            spawned_at: now,
            killed: None,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Delay before the next respawn: none while fewer than `CRASH_BURST` deaths fall in the
    /// last `CRASH_WINDOW`; then at least until the oldest of them leaves the window (so no
    /// more than `CRASH_BURST` respawns per window), and doubling from 500 ms as deaths go on.
    fn backoff(&self, now: Instant) -> Duration {
        let recent: Vec<&Instant> = self
            .deaths
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < CRASH_WINDOW)
            .collect();
        if recent.len() < CRASH_BURST {
            return Duration::ZERO;
        }
        let oldest = recent[recent.len() - CRASH_BURST];
        let window_left = (*oldest + CRASH_WINDOW).saturating_duration_since(now);
        let doublings = (recent.len() - CRASH_BURST).min(6) as u32;
        let exponential = Duration::from_millis(500) * 2u32.pow(doublings);
        window_left.max(exponential).min(MAX_BACKOFF)
    }

    /// Records a death at `now` of a worker that had (or had not) said Ready, and returns how
    /// long to wait before respawning it. Only deaths soon after a start count toward the
    /// crash-loop backoff: a worker that served for a while and was then killed (OOM killer,
    /// an operator, a poison input) is replaced at once, however often that happens. A death
    /// the master decided on (a deadline kill) never counts, however young the worker.
    fn record_death(&mut self, now: Instant, was_ready: bool) -> Duration {
        let decided = self.killed == Some(Kill::Decided);
        let early = !was_ready || now.saturating_duration_since(self.spawned_at) < EARLY_DEATH;
        if early && !decided {
            self.deaths.push_back(now);
            while self.deaths.len() > 32 {
                self.deaths.pop_front();
            }
        }
        self.backoff(now)
    }

    /// A spawn that failed outright (nothing was started): counts as an early death and waits
    /// at least 250 ms.
    fn record_failed_spawn(&mut self, now: Instant) {
        self.deaths.push_back(now);
        self.respawn_at = Some(now + self.backoff(now).max(Duration::from_millis(250)));
    }
}

/// The worker table.
pub struct Pool {
    cfg: PoolConfig,
    registry: Registry,
    ring_fd: OwnedFd,
    stats_fd: OwnedFd,
    stats: Stats,
    workers: Vec<WorkerSlot>,
    stopping: bool,
    /// The threads re-logging each worker's stderr (finished ones are dropped as workers are
    /// spawned; the rest are waited for at stop).
    log_threads: Vec<std::thread::JoinHandle<()>>,
    /// The sandbox the last Ready reported, logged whenever it changes (once, normally).
    sandbox: Option<Report>,
}

impl Pool {
    /// A pool of `cfg.workers` workers, none started yet (`respawn_due` starts them). The
    /// ring and stats fds are what every worker's `Init` carries.
    pub fn new(
        cfg: PoolConfig,
        registry: Registry,
        ring_fd: OwnedFd,
        stats_fd: OwnedFd,
        stats: Stats,
        now: Instant,
    ) -> Pool {
        Pool {
            workers: (0..cfg.workers).map(|_| WorkerSlot::new(now)).collect(),
            cfg,
            registry,
            ring_fd,
            stats_fd,
            stats,
            stopping: false,
            log_threads: Vec::new(),
            sandbox: None,
        }
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// The stats page's fd (for the pid file: `imgserver stats` opens it through /proc).
    pub fn stats_fd(&self) -> &OwnedFd {
        &self.stats_fd
    }

    /// The worker whose channel `token` is.
    pub fn worker_of(&self, token: Token) -> Option<WorkerId> {
        let t = token.0.checked_sub(WORKER_BASE)?;
        (t < self.workers.len()).then_some(t)
    }

    /// Whether worker `w` said Ready and its channel is open.
    pub fn is_ready(&self, w: WorkerId) -> bool {
        self.workers
            .get(w)
            .is_some_and(|s| s.state == WState::Ready && s.sock.is_some())
    }

    /// Whether any worker is healthy (ready), so queued jobs will be served.
    pub fn any_healthy(&self) -> bool {
        self.workers.iter().any(|w| w.state == WState::Ready)
    }

    /// Starts worker `i` (fork+exec), sends it the ring and stats fds.
    fn spawn(&mut self, i: WorkerId, now: Instant) {
        let spawned = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(|(ours, theirs)| {
            let spec = crate::spawn::WorkerSpec {
                exe: &self.cfg.exe,
                index: i,
                mem_limit_mb: self.cfg.worker_mem_mb,
                max_pixels: self.cfg.max_pixels,
                fault_injection: self.cfg.fault_injection,
                run_as: self.cfg.run_as,
                sandbox: self.cfg.sandbox,
            };
            let child = crate::spawn::worker(&spec, theirs)?;
            Ok((child, ours))
        });
        let (child, sock) = match spawned {
            Ok((child, ours)) => (child, MasterChannel::new(ours)),
            Err(e) => {
                // Nothing was started (fork/exec or socketpair failed): retry later.
                warn!("worker {i}: spawn failed: {e}");
                self.workers[i].record_failed_spawn(now);
                return;
            }
        };
        let mut child = child;
        let pid = child.id();
        stats::inc(&self.stats.get().global.worker_spawns);
        info!("worker {i} started, pid {pid}");
        if let Some(stderr) = child.stderr.take() {
            self.log_threads.retain(|t| !t.is_finished());
            match super::worker_log::spawn(i, pid, stderr) {
                Ok(t) => self.log_threads.push(t),
                Err(e) => warn!("worker {i} (pid {pid}): cannot read its stderr: {e}"),
            }
        }
        let w = &mut self.workers[i];
        // From here the child exists and is reaped like any worker, whatever happens next.
        w.child = Some(child);
        w.state = WState::Starting;
        w.respawn_at = None;
        w.spawned_at = now;
        w.killed = None;
        let init = ToWorker::Init(Init {
            index: i as u32,
            slots: self.cfg.slots,
            slot_size: self.cfg.slot_size,
            deadline_ms: self.cfg.deadline_ms,
        });
        let ready = sock
            .send(&init, &[self.ring_fd.as_fd(), self.stats_fd.as_fd()])
            .and_then(|()| sock.set_nonblocking())
            .map_err(|e| e.to_string())
            .and_then(|()| {
                self.registry
                    .register(
                        &mut SourceFd(&sock.as_fd().as_raw_fd()),
                        Token(WORKER_BASE + i),
                        Interest::READABLE,
                    )
                    .map_err(|e| e.to_string())
            });
        match ready {
            Ok(()) => self.workers[i].sock = Some(sock),
            Err(e) => {
                // It died before taking its start message (or cannot be watched): make sure it
                // is gone; the reaper counts the death and applies the crash-loop backoff.
                warn!("worker {i} (pid {pid}) could not be started: {e}");
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }

    /// Reads worker `i`'s channel until it yields a Done or a Variant (returned) or has nothing
    /// more. Ready
    /// is handled here; a worker that sends garbage (including a master-to-worker message:
    /// an unknown tag in this direction) or closes its channel is killed (and reported lost
    /// when it is reaped).
    pub fn next_done(&mut self, i: WorkerId, now: Instant) -> Option<(Answer, Vec<OwnedFd>)> {
        loop {
            let sock = self.workers[i].sock.as_ref()?;
            match sock.recv() {
                Ok((ToMaster::Ready(Ready { pid, sandbox }), _)) => {
                    self.note_sandbox(Report::from_bits(sandbox));
                    let w = &mut self.workers[i];
                    if w.state == WState::Starting {
                        w.state = WState::Ready;
                        stats::inc(&self.stats.get().global.workers_alive);
                        info!(
                            "worker {i} ready (pid {pid}) in {} ms",
                            now.saturating_duration_since(w.spawned_at).as_millis()
                        );
                    }
                }
                Ok((ToMaster::Done(done), fds)) => return Some((Answer::Done(done), fds)),
                Ok((ToMaster::Variant(v), fds)) => return Some((Answer::Variant(v), fds)),
                Err(ChannelError::WouldBlock) => return None,
                Err(ChannelError::Closed) => {
                    // EOF: the worker is exiting (crash or otherwise). Stop listening and make
                    // sure it is gone; its job is settled once waitpid reports it.
                    self.drop_channel(i);
                    if let Some(pid) = self.workers[i].pid() {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    return None;
                }
                Err(e) => {
                    warn!("worker {i}: bad message ({e}); killing it");
                    self.kill_for(i, Kill::Misbehaved);
                    return None;
                }
            }
        }
    }

    /// Sends a job to worker `w`. A worker that cannot take it is killed and given up at once
    /// (it is no longer ready); it is reaped and replaced like any dead worker.
    pub fn send_job(&mut self, w: WorkerId, order: JobOrder<'_>) -> bool {
        let Some(sock) = self.workers[w].sock.as_ref() else {
            return false;
        };
        let msg = ToWorker::Job(Job {
            job: order.job,
            slot: order.slot,
            generation: order.generation,
            input_len: order.input_len,
            variants: order.variants,
            spec: order.spec.to_string(),
        });
        let fds: Vec<_> = order.memfd.into_iter().collect();
        match sock.send(&msg, &fds) {
            Ok(()) => true,
            Err(e) => {
                warn!("worker {w}: cannot send job: {e}; replacing it");
                self.kill_for(w, Kill::Misbehaved);
                if self.workers[w].state == WState::Ready {
                    stats::dec(&self.stats.get().global.workers_alive);
                }
                self.workers[w].state = WState::Dead;
                false
            }
        }
    }

    /// Stops reading worker `i`'s channel and closes it.
    fn drop_channel(&mut self, i: WorkerId) {
        if let Some(sock) = self.workers[i].sock.take() {
            let _ = self
                .registry
                .deregister(&mut SourceFd(&sock.as_fd().as_raw_fd()));
        }
    }

    /// Kills worker `i` (SIGKILL) on the master's own decision (its job overran the deadline)
    /// and stops reading its channel; cleanup happens when it is reaped, and the replacement
    /// starts at once: this death never counts toward the crash-loop backoff.
    pub fn kill(&mut self, i: WorkerId) {
        self.kill_for(i, Kill::Decided);
    }

    fn kill_for(&mut self, i: WorkerId, why: Kill) {
        self.drop_channel(i);
        let w = &mut self.workers[i];
        if let Some(pid) = w.pid() {
            w.killed = Some(why);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Records and logs (when it changes) the confinement a worker reported: the kernel may
    /// lack a layer, and the operator hears of it once, here and in `imgserver stats`.
    fn note_sandbox(&mut self, r: Report) {
        let g = &self.stats.get().global;
        g.sandbox_seccomp
            .store(u64::from(r.seccomp), std::sync::atomic::Ordering::Relaxed);
        g.sandbox_landlock_abi.store(
            u64::from(r.landlock_abi),
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.sandbox == Some(r) {
            return;
        }
        self.sandbox = Some(r);
        let wanted = self.cfg.sandbox;
        let short = (wanted.seccomp && !r.seccomp)
            || (wanted.landlock && (r.landlock_abi == 0 || !r.landlock_full));
        if !wanted.seccomp || !wanted.landlock {
            warn!("worker sandbox: {r} (--sandbox {wanted}: not for production)");
        } else if short {
            warn!("worker sandbox: {r}: this kernel lacks a layer; workers run without it");
        } else {
            info!("worker sandbox: {r}");
        }
    }

    /// Why worker `i` (just reaped with `status`) ended; a sandbox violation is logged and
    /// counted here.
    fn death_of(&self, i: WorkerId, pid: u32, status: std::process::ExitStatus) -> Death {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() != Some(libc::SIGSYS) {
            return Death::Crash;
        }
        let noted = self.stats.worker(i).map_or(0, |w| {
            w.violation_syscall
                .swap(0, std::sync::atomic::Ordering::Relaxed)
        });
        let syscall = noted.checked_sub(1).map(|nr| nr as i64);
        stats::inc(&self.stats.get().global.sandbox_violations);
        let what = match syscall {
            Some(nr) => match sandbox::seccomp::name(nr) {
                Some(name) => format!("system call {name} ({nr})"),
                None => format!("system call {nr}"),
            },
            None => "a system call".to_string(),
        };
        error!("worker {i} (pid {pid}) broke its sandbox: {what} refused; killed by SIGSYS");
        Death::SandboxViolation { syscall }
    }

    /// Reaps exited workers (waitpid WNOHANG), schedules their respawn, and returns them with
    /// how they died: each one's job, if it had one, is lost.
    pub fn reap(&mut self, now: Instant) -> Vec<(WorkerId, Death)> {
        let mut gone = Vec::new();
        for i in 0..self.workers.len() {
            let exited = match self.workers[i].child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(status),
                Some(Ok(None)) | None => None,
                Some(Err(e)) => {
                    warn!("worker {i}: waitpid failed: {e}");
                    None
                }
            };
            let Some(status) = exited else { continue };
            self.drop_channel(i);
            let w = &mut self.workers[i];
            let pid = w.pid().unwrap_or(0);
            w.child = None;
            let was_ready = std::mem::replace(&mut w.state, WState::Dead) == WState::Ready;
            if was_ready {
                stats::dec(&self.stats.get().global.workers_alive);
            }
            // A worker that exits 0 while the pool stops did what it was told (its channel was
            // closed): that is no death, so it is neither counted nor warned about.
            let orderly = self.stopping && w.killed.is_none() && status.success();
            if !orderly {
                stats::inc(&self.stats.get().global.worker_deaths);
            }
            let delay = w.record_death(now, was_ready);
            // Shutdown does not make a crash expected: a worker that dies before its channel
            // is closed lost its job, and the operator hears of it as at any time.
            let expected = w.killed.is_some();
            if !self.stopping {
                w.respawn_at = Some(now + delay);
                if delay > Duration::ZERO {
                    warn!(
                        "worker {i} crash loop: respawning in {} ms",
                        delay.as_millis()
                    );
                }
            }
            let death = self.death_of(i, pid, status);
            if orderly {
                info!("worker {i} (pid {pid}) stopped");
            } else if expected {
                info!("worker {i} (pid {pid}) exited: {status}");
            } else if death == Death::Crash {
                warn!("worker {i} (pid {pid}) died: {status}");
            }
            gone.push((i, death));
        }
        gone
    }

    /// Starts every worker whose respawn time has come.
    pub fn respawn_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for i in 0..self.workers.len() {
            if self.workers[i].child.is_none()
                && self.workers[i].respawn_at.is_some_and(|t| t <= now)
            {
                self.spawn(i, now);
            }
        }
    }

    /// Shutdown has begun: from now on no worker is started again, whatever ends it (the
    /// workers that are left finish the jobs in flight; a job whose worker dies is settled by
    /// the jobs part as at any time).
    pub fn begin_stop(&mut self) {
        self.stopping = true;
    }

    /// Stops every worker: closes each channel (a worker exits on EOF once its current job, if
    /// any, is done: it ignores SIGTERM, so closing is the only request there is), waits up to
    /// `wait` for them to exit, then SIGKILLs the rest and reaps them all. Bounded: `wait`
    /// plus one blocking wait(2) per SIGKILLed worker, which cannot be ignored.
    pub fn stop(&mut self, wait: Duration) {
        self.stopping = true;
        for i in 0..self.workers.len() {
            self.drop_channel(i);
        }
        let deadline = Instant::now() + wait;
        while self.workers.iter().any(|w| w.child.is_some()) && Instant::now() < deadline {
            self.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(pid) = w.pid() {
                warn!(
                    "worker {i} (pid {pid}) did not exit within {} ms of its channel closing; killing it",
                    wait.as_millis()
                );
                w.killed = Some(Kill::Decided);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        for w in &mut self.workers {
            if let Some(mut c) = w.child.take() {
                let _ = c.wait();
            }
        }
        self.reap(Instant::now());
        // Every worker is gone, so each stderr reader is at (or near) end of file: let them
        // log a dying worker's last lines before the master's own last line and exit. Bounded:
        // a pipe some other process still held open would never end.
        let deadline = Instant::now() + LOG_DRAIN;
        while self.log_threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        for t in std::mem::take(&mut self.log_threads) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_only_after_a_burst_and_is_capped() {
        let now = Instant::now();
        let mut w = WorkerSlot::new(now);
        for _ in 0..CRASH_BURST - 1 {
            w.deaths.push_back(now);
        }
        assert_eq!(w.backoff(now), Duration::ZERO);
        // The fifth death in the window: wait until the window has room again.
        w.deaths.push_back(now);
        assert_eq!(w.backoff(now), CRASH_WINDOW);
        assert_eq!(
            w.backoff(now + Duration::from_secs(4)),
            Duration::from_secs(6)
        );
        for _ in 0..20 {
            w.deaths.push_back(now);
        }
        assert_eq!(w.backoff(now), MAX_BACKOFF);
        // Old deaths age out of the window.
        assert_eq!(
            w.backoff(now + CRASH_WINDOW + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn no_more_than_a_burst_of_respawns_per_window() {
        // A worker that dies the moment it starts, respawned whenever the backoff allows.
        let start = Instant::now();
        let mut w = WorkerSlot::new(start);
        let mut t = start;
        let mut spawns = vec![];
        while t < start + Duration::from_secs(120) {
            spawns.push(t);
            w.spawned_at = t;
            t += w.record_death(t, false).max(Duration::from_millis(1));
        }
        for (i, s) in spawns.iter().enumerate() {
            let in_window = spawns[i..]
                .iter()
                .take_while(|x| **x < *s + CRASH_WINDOW)
                .count();
            assert!(
                in_window <= CRASH_BURST,
                "{in_window} spawns within {CRASH_WINDOW:?} from {:?}",
                *s - start
            );
        }
        assert!(
            spawns.len() >= 8,
            "it keeps trying: {} spawns in 2 minutes",
            spawns.len()
        );
    }

    #[test]
    fn a_worker_that_served_a_while_is_always_replaced_at_once() {
        // Ready, then killed two seconds into each life (OOM killer, operator, poison input):
        // never a crash loop, however many times.
        let start = Instant::now();
        let mut w = WorkerSlot::new(start);
        let mut t = start;
        for _ in 0..3 * CRASH_BURST {
            w.spawned_at = t;
            t += Duration::from_secs(2);
            assert_eq!(w.record_death(t, true), Duration::ZERO);
        }
        assert!(w.deaths.is_empty());
    }

    #[test]
    fn early_deaths_count_even_after_ready() {
        // Ready but dead within a second of its start: that is a crash loop too.
        let start = Instant::now();
        let mut w = WorkerSlot::new(start);
        let mut t = start;
        let mut delays = vec![];
        for _ in 0..CRASH_BURST {
            w.spawned_at = t;
            t += Duration::from_millis(100);
            delays.push(w.record_death(t, true));
        }
        assert!(delays[..CRASH_BURST - 1].iter().all(|d| d.is_zero()));
        assert!(delays[CRASH_BURST - 1] >= Duration::from_millis(500));
    }

    #[test]
    fn a_deadline_kill_adds_no_backoff_however_young_the_worker() {
        // A retried hanging job kills each replacement 300 ms into its life, well inside the
        // early-death window: none of those deaths counts, every replacement starts at once.
        let start = Instant::now();
        let mut w = WorkerSlot::new(start);
        let mut t = start;
        for _ in 0..3 * CRASH_BURST {
            w.spawned_at = t;
            w.killed = None;
            t += Duration::from_millis(300);
            w.killed = Some(Kill::Decided);
            assert_eq!(w.record_death(t, true), Duration::ZERO);
        }
        assert!(w.deaths.is_empty(), "{:?}", w.deaths);
        // The same young deaths without the master's decision are a crash loop.
        w.killed = None;
        let delays: Vec<Duration> = (0..CRASH_BURST)
            .map(|_| {
                w.spawned_at = t;
                t += Duration::from_millis(300);
                w.record_death(t, true)
            })
            .collect();
        assert!(delays[CRASH_BURST - 1] >= Duration::from_millis(500));
    }

    #[test]
    fn a_worker_killed_for_misbehaving_at_start_still_counts() {
        let start = Instant::now();
        let mut w = WorkerSlot::new(start);
        let mut t = start;
        let mut last = Duration::ZERO;
        for _ in 0..CRASH_BURST {
            w.spawned_at = t;
            w.killed = Some(Kill::Misbehaved);
            t += Duration::from_millis(10);
            last = w.record_death(t, false);
        }
        assert_eq!(w.deaths.len(), CRASH_BURST);
        assert!(last >= Duration::from_millis(500));
    }

    #[test]
    fn a_failed_spawn_waits_at_least_a_quarter_second() {
        let now = Instant::now();
        let mut w = WorkerSlot::new(now);
        w.record_failed_spawn(now);
        assert_eq!(w.respawn_at, Some(now + Duration::from_millis(250)));
    }
}
