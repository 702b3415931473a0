//! The worker table: spawning, readiness, reaping with waitpid(WNOHANG), respawn with
//! crash-loop backoff, and stopping (TERM, then KILL).
//!
//! Trust boundary: workers are untrusted once they have touched an image; the master only
//! believes a worker is gone when waitpid says so, and only then reclaims its ring slot.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Child;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::{Master, WORKER_BASE};
use crate::ipc::channel;
use crate::ipc::msg::Msg;
use crate::stats;

/// At most this many respawns of one worker per `CRASH_WINDOW`; beyond it is a crash loop and
/// respawns back off, so a worker that dies at start-up cannot make the master spin.
const CRASH_BURST: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker dying sooner than this after its start (or before it was ready) is crash-looping.
const EARLY_DEATH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WState {
    /// Spawned, Init sent, waiting for Ready.
    Starting,
    Idle,
    Busy {
        job: u64,
        since: Instant,
    },
    /// Process gone (reaped) or never started; respawn at `respawn_at`.
    Dead,
}

#[derive(Debug)]
pub struct WorkerSlot {
    pub index: usize,
    pub child: Option<Child>,
    pub sock: Option<OwnedFd>,
    pub state: WState,
    pub deaths: VecDeque<Instant>,
    pub respawn_at: Option<Instant>,
    pub spawned_at: Instant,
    /// Killed by the master (deadline or misbehaviour), so its death is expected.
    pub killed: bool,
}

impl WorkerSlot {
    pub fn new(index: usize) -> Self {
        WorkerSlot {
            index,
            child: None,
            sock: None,
            state: WState::Dead,
            deaths: VecDeque::new(),
            respawn_at: Some(Instant::now()),
            spawned_at: Instant::now(),
            killed: false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Delay before the next respawn: none while fewer than `CRASH_BURST` deaths fall in the
    /// last `CRASH_WINDOW`; then at least until the oldest of them leaves the window (so no
    /// more than `CRASH_BURST` respawns per window), and doubling from 500 ms as deaths go on.
    pub fn backoff(&self, now: Instant) -> Duration {
        let recent: Vec<&Instant> = self
            .deaths
            .iter()
            .filter(|t| now.duration_since(**t) < CRASH_WINDOW)
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
}

impl Master {
    /// Starts worker `i` (fork+exec), sends it the ring and stats fds.
    pub(super) fn spawn_worker(&mut self, i: usize) {
        let now = Instant::now();
        let spawned = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(|(ours, theirs)| {
            let child = crate::spawn::worker(
                &self.exe,
                i,
                theirs,
                self.args.worker_mem_mb,
                self.args.max_pixels,
                self.fault_injection,
            )?;
            Ok((child, ours))
        });
        let (child, sock) = match spawned {
            Ok(x) => x,
            Err(e) => {
                // Nothing was started (fork/exec or socketpair failed): retry later.
                warn!("worker {i}: spawn failed: {e}");
                let w = &mut self.workers[i];
                w.deaths.push_back(now);
                w.respawn_at = Some(now + w.backoff(now).max(Duration::from_millis(250)));
                return;
            }
        };
        let pid = child.id();
        stats::inc(&self.stats.get().global.worker_spawns);
        info!("worker {i} started, pid {pid}");
        let w = &mut self.workers[i];
        // From here the child exists and is reaped like any worker, whatever happens next.
        w.child = Some(child);
        w.state = WState::Starting;
        w.respawn_at = None;
        w.spawned_at = now;
        w.killed = false;
        let init = Msg::Init {
            index: i as u32,
            slots: self.ring.slots(),
            slot_size: self.ring.slot_size(),
            deadline_ms: (self.args.job_timeout * 1000.0) as u32,
        };
        let ready = channel::send(
            sock.as_fd(),
            &init,
            &[self.ring_fd.as_fd(), self.stats_fd.as_fd()],
        )
        .map_err(|e| e.to_string())
        .and_then(|()| {
            nix::fcntl::fcntl(
                &sock,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map_err(|e| e.to_string())?;
            self.poll
                .registry()
                .register(
                    &mut SourceFd(&sock.as_raw_fd()),
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

    /// Handles readability of worker `i`'s channel: Ready and Done messages.
    pub(super) fn worker_readable(&mut self, i: usize) {
        loop {
            let Some(sock) = self.workers[i].sock.as_ref() else {
                return;
            };
            match channel::recv(sock.as_fd()) {
                Ok((Msg::Ready { pid }, _)) => {
                    let w = &mut self.workers[i];
                    if w.state == WState::Starting {
                        w.state = WState::Idle;
                        stats::inc(&self.stats.get().global.workers_alive);
                        info!(
                            "worker {i} ready (pid {pid}) in {} ms",
                            w.spawned_at.elapsed().as_millis()
                        );
                    }
                }
                Ok((Msg::Done(done), fds)) => self.job_done(i, done, fds),
                Ok((other, _)) => {
                    warn!("worker {i} sent an unexpected message {other:?}; killing it");
                    self.kill_worker(i);
                    return;
                }
                Err(channel::ChannelError::WouldBlock) => return,
                Err(channel::ChannelError::Closed) => {
                    // EOF: the worker is exiting (crash or otherwise). Stop listening and make
                    // sure it is gone; the reaper settles its job once waitpid reports it.
                    self.drop_channel(i);
                    if let Some(pid) = self.workers[i].pid() {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    return;
                }
                Err(e) => {
                    warn!("worker {i}: bad message ({e}); killing it");
                    self.kill_worker(i);
                    return;
                }
            }
        }
    }

    /// Stops reading worker `i`'s channel and closes it.
    fn drop_channel(&mut self, i: usize) {
        if let Some(sock) = self.workers[i].sock.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&sock.as_raw_fd()));
        }
    }

    /// Kills worker `i` (SIGKILL) on the master's own decision and stops reading its channel;
    /// cleanup happens when it is reaped.
    pub(super) fn kill_worker(&mut self, i: usize) {
        self.drop_channel(i);
        let w = &mut self.workers[i];
        if let Some(pid) = w.pid() {
            w.killed = true;
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Reaps exited workers (waitpid WNOHANG) and settles what they were doing.
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
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
            let w = &mut self.workers[i];
            let pid = w.pid().unwrap_or(0);
            w.child = None;
            if let Some(sock) = w.sock.take() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&sock.as_raw_fd()));
            }
            let was = std::mem::replace(&mut w.state, WState::Dead);
            if matches!(was, WState::Idle | WState::Busy { .. }) {
                stats::dec(&self.stats.get().global.workers_alive);
            }
            stats::inc(&self.stats.get().global.worker_deaths);
            // Only deaths soon after a start count toward the crash-loop backoff: a worker
            // that served for a while and was then killed (OOM killer, an operator, a poison
            // input) is replaced at once, however often that happens.
            let ready = matches!(was, WState::Idle | WState::Busy { .. });
            if !ready || now.duration_since(w.spawned_at) < EARLY_DEATH {
                w.deaths.push_back(now);
                while w.deaths.len() > 32 {
                    w.deaths.pop_front();
                }
            }
            let expected = w.killed || self.stopping_workers;
            if !self.stopping_workers {
                let delay = w.backoff(now);
                w.respawn_at = Some(now + delay);
                if delay > Duration::ZERO {
                    warn!(
                        "worker {i} crash loop: respawning in {} ms",
                        delay.as_millis()
                    );
                }
            }
            if expected {
                info!("worker {i} (pid {pid}) exited: {status}");
            } else {
                warn!("worker {i} (pid {pid}) died: {status}");
            }
            if let WState::Busy { job, .. } = was {
                self.worker_lost_job(job, i);
            }
        }
    }

    pub(super) fn respawn_due(&mut self) {
        if self.stopping_workers {
            return;
        }
        let now = Instant::now();
        for i in 0..self.workers.len() {
            if self.workers[i].child.is_none()
                && self.workers[i].respawn_at.is_some_and(|t| t <= now)
            {
                self.spawn_worker(i);
            }
        }
    }

    pub(super) fn idle_worker(&self) -> Option<usize> {
        self.workers
            .iter()
            .position(|w| w.state == WState::Idle && w.sock.is_some())
    }

    /// Stops every worker: close channels (workers exit on EOF), SIGTERM, wait up to `wait`,
    /// then SIGKILL the rest and reap them all.
    pub(super) fn stop_workers(&mut self, wait: Duration) {
        self.stopping_workers = true;
        for w in &mut self.workers {
            if let Some(sock) = w.sock.take() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&sock.as_raw_fd()));
            }
            if let Some(pid) = w.pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + wait;
        while self.workers.iter().any(|w| w.child.is_some()) && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(10));
        }
        for w in &mut self.workers {
            if let Some(pid) = w.pid() {
                warn!("worker {} (pid {pid}) ignored SIGTERM; killing it", w.index);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        for w in &mut self.workers {
            if let Some(mut c) = w.child.take() {
                let _ = c.wait();
            }
        }
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_only_after_a_burst_and_is_capped() {
        let now = Instant::now();
        let mut w = WorkerSlot::new(0);
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
        let mut w = WorkerSlot::new(0);
        let mut t = start;
        let mut spawns = vec![];
        while t < start + Duration::from_secs(120) {
            spawns.push(t);
            w.deaths.push_back(t);
            t += w.backoff(t).max(Duration::from_millis(1));
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
}
