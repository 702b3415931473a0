//! The master's event loop: owns the poll, routes readiness to the connections and the worker
//! pool, and composes them with the jobs part — it applies what the jobs part decides (send
//! this job to that worker, tell that connection this) and reports what happened (a request, a
//! Done, a dead worker, a closed connection, the time). Also signals and shutdown, and the
//! agent-check port (`agent.rs`), told the load as of the turn it is asked in.
//!
//! Trust boundary: none beyond its parts'; signal handlers only set flags, this loop acts on
//! them. Nothing named is created except the pid file (see `serve`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Poll, Token};

use super::agent;
use super::conns::{Conns, Request, Requests};
use super::iface::{ConnRef, Effects, JobOrder, Reply, WorkerId};
use super::jobs::Jobs;
use super::pool::{Answer, Pool};
use super::users_watch::{UsersWatch, Version};
use crate::cli::ServeArgs;
use crate::stats::Stats;
use crate::{signals, state};

pub const LISTENER: Token = Token(0);
pub const SIGNALS: Token = Token(1);
/// The `--agent-listen` socket.
pub const AGENT: Token = Token(2);

/// Jobs shorter than this on average are worth waiting for without sleeping.
const SPIN_JOB_MS: f64 = 0.2;
/// Longest such wait.
const SPIN_MAX: Duration = Duration::from_micros(200);
/// Period of the sweep: reaping, deadlines, connection timeouts.
const SWEEP: Duration = Duration::from_millis(100);

/// The master: its three parts and what the loop itself needs (built by `serve`).
pub struct Master {
    pub args: ServeArgs,
    pub state_dir: PathBuf,
    pub poll: Poll,
    pub sigpipe: OwnedFd,
    /// For STATS snapshots and the final log line.
    pub stats: Stats,
    pub conns: Conns,
    pub jobs: Jobs,
    pub pool: Pool,
    pub shutdown_deadline: Option<Instant>,
    pub last_sweep: Instant,
    /// Reloads the users file when `imgserver user add|del` replaced it.
    pub users_watch: UsersWatch,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// systemd's readiness and watchdog notifications (`Type=notify`).
    pub notify: crate::notify::Notifier,
    /// The `--metrics-file` writer, when asked for.
    pub metrics_file: Option<crate::metrics::MetricsFile>,
    /// The `--agent-listen` port, when asked for (kept open through shutdown's grace).
    pub agent: Option<super::agent::Agent>,
}

/// The jobs part's effects, applied to the pool and the connections.
struct Apply<'a> {
    pool: &'a mut Pool,
    conns: &'a mut Conns,
}

impl Effects for Apply<'_> {
    fn worker_ready(&self, w: WorkerId) -> bool {
        self.pool.is_ready(w)
    }
    fn send_job(&mut self, w: WorkerId, order: JobOrder<'_>) -> bool {
        self.pool.send_job(w, order)
    }
    fn kill_worker(&mut self, w: WorkerId) {
        self.pool.kill(w)
    }
    fn reply(&mut self, conn: ConnRef, req: u64, reply: Reply<'_>) {
        self.conns.deliver(conn, req, reply)
    }
}

/// Client requests, handed to the jobs part.
struct Serve<'a> {
    jobs: &'a mut Jobs,
    stats: &'a Stats,
    workers: usize,
}

impl Requests for Serve<'_> {
    fn request(&mut self, conn: ConnRef, r: Request<'_>) -> Option<Reply<'static>> {
        let now = Instant::now();
        match r {
            Request::Submit(s) => self.jobs.submit(now, conn, s),
            Request::Data(c) => {
                self.jobs.add_data(now, conn, c);
                None
            }
            Request::Stats => Some(Reply::Stats(self.stats.snapshot(self.workers))),
        }
    }
}

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
        let avg_job_ms = self.jobs.avg_job_ms();
        if avg_job_ms > SPIN_JOB_MS {
            return;
        }
        let now = Instant::now();
        let budget = Duration::from_secs_f64(avg_job_ms * 2.0 / 1000.0).min(SPIN_MAX);
        let mut busy = 0;
        let mut running_short = false;
        for since in self.jobs.running_since() {
            busy += 1;
            running_short |= now.saturating_duration_since(since) < budget;
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

    /// The jobs part's effects over this loop's pool and connections.
    fn apply(&mut self) -> (&mut Jobs, Apply<'_>) {
        (
            &mut self.jobs,
            Apply {
                pool: &mut self.pool,
                conns: &mut self.conns,
            },
        )
    }

    /// Connections that closed leave their jobs behind: abandon them.
    fn settle_closed(&mut self) {
        for c in self.conns.take_closed() {
            self.jobs.conn_gone(c);
        }
    }

    fn worker_readable(&mut self, w: WorkerId) {
        while let Some((answer, fds)) = self.pool.next_done(w, Instant::now()) {
            let (jobs, mut fx) = self.apply();
            match answer {
                Answer::Done(done) => jobs.done(Instant::now(), w, done, fds, &mut fx),
                Answer::Variant(v) => jobs.variant(w, v, fds, &mut fx),
            }
        }
    }

    fn reap(&mut self) {
        // What a worker sent before it died is read first: a dead worker's channel is dropped
        // when it is reaped, and a multi-output job's variants already sent must count as
        // answered (the retry runs only the others), as a Done sent just before an exit does.
        for w in 0..self.pool.len() {
            self.worker_readable(w);
        }
        let now = Instant::now();
        for (w, death) in self.pool.reap(now) {
            let (jobs, mut fx) = self.apply();
            jobs.worker_lost(now, w, death, &mut fx);
        }
    }

    pub fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(1024);
        loop {
            // What a PROBE is told, as of the worker messages handled so far (every turn, so
            // a worker's Ready reaches probes at once, not at the next sweep).
            let draining = self.shutdown_deadline.is_some();
            self.conns.set_readiness(self.pool.any_healthy(), draining);
            // Work left from the last turn (a burst beyond its batch, a flood of connects)
            // is served after this poll; the poll must not sleep on it.
            let deferred =
                self.conns.has_deferred() || self.agent.as_ref().is_some_and(|a| a.has_more());
            let timeout = if deferred {
                Duration::ZERO
            } else if self.jobs.queue_len() == 0 {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(20)
            };
            // A watchdog ping due sooner wakes the poll for it.
            let timeout = self
                .notify
                .timeout(Instant::now())
                .map_or(timeout, |t| t.min(timeout));
            events.clear();
            if !deferred {
                self.spin_for_short_job(&mut events);
            }
            if events.is_empty() {
                if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        warn!("epoll_wait: {e}");
                    }
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.conns.accept(),
                    SIGNALS => signals::drain(&self.sigpipe),
                    AGENT => self.answer_agent(),
                    t => {
                        if let Some(w) = self.pool.worker_of(t) {
                            self.worker_readable(w);
                        } else if let Some(k) = Conns::index_of(t) {
                            let mut serve = Serve {
                                jobs: &mut self.jobs,
                                stats: &self.stats,
                                workers: self.pool.len(),
                            };
                            self.conns.event(
                                k,
                                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                                ev.is_writable(),
                                &mut serve,
                            );
                        }
                    }
                }
                self.settle_closed();
            }
            if self.agent.as_ref().is_some_and(|a| a.has_more()) {
                self.answer_agent();
            }
            if deferred {
                // After this turn's ready connections: each gets one more batch.
                let mut serve = Serve {
                    jobs: &mut self.jobs,
                    stats: &self.stats,
                    workers: self.pool.len(),
                };
                self.conns.run_deferred(&mut serve);
                self.settle_closed();
            }
            if signals::take_child_exited() {
                self.reap();
            }
            let now = Instant::now();
            self.pool.respawn_due(now);
            let (jobs, mut fx) = self.apply();
            jobs.dispatch(now, &mut fx);
            if now.saturating_duration_since(self.last_sweep) >= SWEEP {
                self.last_sweep = now;
                self.reap();
                self.conns.retry_stalled_accept();
                if self.agent.as_ref().is_some_and(|a| a.is_stalled()) {
                    self.answer_agent();
                }
                let healthy = self.pool.any_healthy();
                let (jobs, mut fx) = self.apply();
                jobs.sweep_deadlines(Instant::now(), healthy, &mut fx);
                jobs.sweep_uploads(Instant::now(), &mut fx);
                self.conns.sweep_timeouts(Instant::now());
                self.publish_health(now);
            }
            self.settle_closed();
            self.notify_turn();
            if signals::take_reload() {
                self.reload("SIGHUP");
            } else if self.users_watch.due(now) {
                let v = Version::of(&self.users_path());
                if self.users_watch.changed(v, now) {
                    self.reload("the file changed");
                }
            }
            let stops = signals::stop_requests();
            if stops >= 2 {
                return self.stop_now();
            }
            if stops == 1 && self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            if let Some(deadline) = self.shutdown_deadline {
                let drained = self.jobs.is_empty() && self.conns.all_flushed();
                if drained || Instant::now() >= deadline {
                    return self.finish_shutdown(drained);
                }
            }
        }
    }

    /// Answers the agent-check connections waiting, with the load as of now.
    fn answer_agent(&mut self) {
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        let load = agent::Load {
            ready: (0..self.pool.len())
                .filter(|&w| self.pool.is_ready(w))
                .count(),
            workers: self.pool.len(),
            running: self.jobs.running_since().count(),
            queued: self.jobs.queue_len(),
            draining: self.shutdown_deadline.is_some(),
        };
        a.answer(&load, Instant::now());
    }

    /// READY=1 once a worker is ready (the listener is bound before the loop starts), the
    /// watchdog ping when due, STOPPING=1 once shutdown has begun.
    fn notify_turn(&mut self) {
        let serving = self.pool.any_healthy();
        let stopping = self.shutdown_deadline.is_some();
        let (workers, jobs) = (self.pool.len(), self.jobs.len());
        let grace = self.args.grace.as_secs_f64();
        self.notify.turn(Instant::now(), serving, stopping, || {
            if stopping {
                format!("stopping: {jobs} jobs in flight, grace {grace:.1} s")
            } else {
                format!("serving with {workers} workers")
            }
        });
    }

    /// The heartbeat and readiness `imgserver health` and the metrics read: written
    /// every sweep, so a heartbeat older than a few sweeps means this loop is stuck.
    fn publish_health(&mut self, now: Instant) {
        let ready = (0..self.pool.len())
            .filter(|&w| self.pool.is_ready(w))
            .count();
        let g = &self.stats.get().global;
        g.workers_ready.store(ready as u64, Relaxed);
        self.stats.beat();
        if let Some(f) = self.metrics_file.as_mut() {
            f.tick(now, &self.stats);
        }
    }

    /// The users file this server reads (`--users-file` or the state directory's).
    fn users_path(&self) -> PathBuf {
        state::users_path(&self.state_dir, self.args.users_file.as_deref())
    }

    /// Rereads the users file (`why`: SIGHUP, or the watch saw a new version of it).
    fn reload(&mut self, why: &str) {
        let path = self.users_path();
        // Taken before the read, as at start: a change racing with it is seen next time.
        self.users_watch.loaded(Version::of(&path));
        match super::conns::load_config(&self.args, &self.state_dir) {
            Ok(cfg) => {
                self.conns.set_config(cfg);
                info!("reloaded users from {} ({why})", path.display());
            }
            Err(e) => warn!("reload failed, keeping the old users: {e}"),
        }
    }

    /// First SIGINT/SIGTERM: stop accepting, tell every client, let in-flight jobs finish.
    fn begin_shutdown(&mut self) {
        let grace = ServeArgs::at_least_a_tick(self.args.grace);
        info!(
            "shutting down: {} jobs in flight, {} connections, grace {:.1} s",
            self.jobs.len(),
            self.conns.open(),
            grace.as_secs_f64()
        );
        self.conns.stop_listening();
        self.jobs.begin_shutdown();
        // No worker is replaced from now on: those left finish the jobs in flight.
        self.pool.begin_stop();
        self.shutdown_deadline = Some(Instant::now() + grace);
        self.notify_turn();
        self.stats.get().global.draining.store(1, Relaxed);
        self.publish_health(Instant::now());
        let grace_ms = grace.as_millis().min(u32::MAX as u128) as u32;
        self.conns.announce_shutdown(grace_ms);
        self.settle_closed();
    }

    /// Grace over (or nothing left): answer what is unfinished, say BYE, stop workers.
    fn finish_shutdown(&mut self, drained: bool) -> i32 {
        if !drained {
            warn!("grace period over with {} jobs unfinished", self.jobs.len());
        }
        let (jobs, mut fx) = self.apply();
        jobs.fail_all(&mut fx);
        self.conns.close_all();
        self.settle_closed();
        self.pool.stop(Duration::from_secs(2));
        let g = &self.stats.get().global;
        info!(
            "stopped: {} jobs ok, {} failed",
            g.jobs_ok.load(Relaxed),
            g.jobs_failed.load(Relaxed)
        );
        0
    }

    /// Second SIGINT/SIGTERM: stop at once, still leaving nothing behind.
    fn stop_now(&mut self) -> i32 {
        warn!("second stop signal: exiting now");
        if self.shutdown_deadline.is_none() {
            self.shutdown_deadline = Some(Instant::now());
            self.notify_turn();
        }
        self.pool.stop(Duration::ZERO);
        130
    }
}
