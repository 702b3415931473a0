//! The HAProxy agent-check port (`--agent-listen`): each TCP connection is told, in one ASCII
//! line, how much new work this server wants, and is closed at once. A pure function turns the
//! master's load into that line; the listener around it is driven by the event loop.
//!
//! The line (HAProxy's agent-check grammar, `man haproxy` "agent-check"):
//! - `drain\n` once shutdown has begun (SIGTERM/SIGINT): the balancer sends no new
//!   connections, existing ones finish through the grace period (this port keeps answering);
//! - `down\n` while no worker is ready (start-up, or every worker dead and being respawned);
//! - `up N%\n` otherwise (`up ready N%\n` in the [`READY_WINDOW`] from this process's first
//!   `up` answer), N the free capacity in percent, 1..100:
//!   `N = ceil(100 * (ready - min(running + queued, ready)) / workers)`, clamped to 1..100.
//!   A worker runs one job at a time, so each ready worker without a job is free capacity; a
//!   queued job will take one of those, so it counts against them. Workers that are not ready
//!   (starting, respawning) count as busy: a server that lost half its workers gets half the
//!   weight. A fully busy or overloaded server still says 1%, not 0%: HAProxy's weight 0 is
//!   drain, and a busy server must stay in rotation for clients that pinned it.
//!
//! Why `ready`, and only at first: HAProxy keeps an agent's `drain` (an administrative state)
//! until an agent says `ready`; `up` alone does not undo it. A server restarted on the same
//! ports inherits the `drain` its previous process said while shutting down, so a new process
//! says `ready` for a while, which brings it back into rotation. After that window it no
//! longer does, so an operator's `set server ... state drain` on the stats socket (the same
//! administrative state) is not undone by the agent half a second later.
//!
//! Trust boundary: the network, but nothing is read from it. A connection costs an accept, one
//! write into an empty socket buffer (the line is a few bytes; on EAGAIN it is just closed)
//! and a close; accepts are bounded per turn so a connect flood here never starves clients.
//! Nothing is read, so a peer that sends something first (HAProxy's `agent-send`) may see the
//! close as a reset; HAProxy's plain agent-check sends nothing.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::warn;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

/// How long from this process's first `up` answer its `up` answers also say `ready`
/// (module header): many of HAProxy's agent checks (every 0.5 s in dist/haproxy.cfg, 2 s by
/// default), short next to the time an operator takes to drain a server by hand.
pub const READY_WINDOW: Duration = Duration::from_secs(10);

/// Most connections accepted per turn of the event loop.
const MAX_ACCEPTS_PER_TURN: usize = 64;

/// What the agent's answer depends on, as of this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Workers that said Ready and can take a job.
    pub ready: usize,
    /// Workers configured (`--workers`).
    pub workers: usize,
    /// Jobs running on a worker.
    pub running: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Shutdown has begun.
    pub draining: bool,
}

/// When this process first answered `up`, for the `ready` window. Time is passed in.
#[derive(Debug, Default)]
struct Freshness {
    up_since: Option<Instant>,
}

impl Freshness {
    /// Whether an answer at `now` is within [`READY_WINDOW`] of the first one with a ready
    /// worker (`up`: one is ready now).
    fn fresh(&mut self, up: bool, now: Instant) -> bool {
        if up && self.up_since.is_none() {
            self.up_since = Some(now);
        }
        self.up_since
            .is_some_and(|t| now.saturating_duration_since(t) < READY_WINDOW)
    }
}

/// The agent's reply line for `load` (see the module header for the formula); `fresh`: within
/// [`READY_WINDOW`] of this process's first `up` answer.
pub fn reply(load: &Load, fresh: bool) -> String {
    if load.draining {
        return "drain\n".to_string();
    }
    if load.ready == 0 {
        return "down\n".to_string();
    }
    let busy = (load.running + load.queued).min(load.ready);
    let free = load.ready - busy;
    let workers = load.workers.max(load.ready);
    let pct = (100 * free).div_ceil(workers).clamp(1, 100);
    let ready = if fresh { "ready " } else { "" };
    format!("up {ready}{pct}%\n")
}

/// The listening socket of the agent-check port.
pub struct Agent {
    listener: TcpListener,
    /// The last batch hit the bound: connections may still wait (mio is edge-triggered, so
    /// no new event would come for them); served again next turn.
    more: bool,
    /// accept(2) failed (EMFILE and the like): retried from the sweep, not every turn, and
    /// logged once per stall rather than once per try.
    stalled: bool,
    /// When this process first answered `up` (its answers' `ready` window).
    freshness: Freshness,
}

impl Agent {
    /// Binds `addr` and registers it under `token`.
    pub fn bind(addr: SocketAddr, registry: &Registry, token: Token) -> std::io::Result<Agent> {
        let mut listener = super::listen::bind_listener(addr)?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Agent {
            listener,
            more: false,
            stalled: false,
            freshness: Freshness::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether connections may be waiting beyond the last batch.
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// Whether the last accept failed and should be tried again (from the sweep).
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Answers the connections waiting with the line for `load` at `now`.
    pub fn answer(&mut self, load: &Load, now: Instant) {
        let fresh = self.freshness.fresh(load.ready > 0, now);
        self.serve(&reply(load, fresh));
    }

    /// Accepts up to a batch of connections, tells each `line` and closes it. Never blocks.
    pub fn serve(&mut self, line: &str) {
        self.more = false;
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    self.stalled = false;
                    // A fresh socket's send buffer is empty and far larger than the line; a
                    // short write or EAGAIN only happens to a peer already gone.
                    let _ = stream.write(line.as_bytes());
                    // Dropped: closed at once, FIN after the line.
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.stalled = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !self.stalled {
                        warn!("agent-check accept: {e} (retrying every sweep)");
                    }
                    self.stalled = true;
                    return;
                }
            }
        }
        self.more = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(ready: usize, workers: usize, running: usize, queued: usize) -> Load {
        Load {
            ready,
            workers,
            running,
            queued,
            draining: false,
        }
    }

    #[test]
    fn a_new_process_says_ready_for_its_first_seconds_up() {
        let mut l = load(4, 4, 1, 0);
        assert_eq!(reply(&l, true), "up ready 75%\n");
        // Drain and down say nothing of ready: only `up` brings a server back.
        l.draining = true;
        assert_eq!(reply(&l, true), "drain\n");
        assert_eq!(reply(&load(0, 4, 0, 0), true), "down\n");

        let t0 = Instant::now();
        let mut f = Freshness::default();
        // Not up yet: the window has not started.
        assert!(!f.fresh(false, t0));
        assert!(!f.fresh(false, t0 + READY_WINDOW * 2));
        let up = t0 + READY_WINDOW * 2;
        assert!(f.fresh(true, up));
        // Workers lost and back within the window: still the same window.
        assert!(f.fresh(false, up + READY_WINDOW / 2));
        assert!(f.fresh(true, up + READY_WINDOW - Duration::from_millis(1)));
        assert!(!f.fresh(true, up + READY_WINDOW));
        assert!(!f.fresh(true, up + READY_WINDOW * 10));
    }

    #[test]
    fn an_idle_server_is_fully_up() {
        assert_eq!(reply(&load(4, 4, 0, 0), false), "up 100%\n");
        assert_eq!(reply(&load(1, 1, 0, 0), false), "up 100%\n");
    }

    #[test]
    fn the_weight_falls_with_running_and_queued_jobs() {
        assert_eq!(reply(&load(4, 4, 1, 0), false), "up 75%\n");
        assert_eq!(reply(&load(4, 4, 2, 0), false), "up 50%\n");
        assert_eq!(reply(&load(4, 4, 2, 1), false), "up 25%\n");
        // Rounded up: one free worker of three is 34%, never less than its share.
        assert_eq!(reply(&load(3, 3, 2, 0), false), "up 34%\n");
    }

    #[test]
    fn a_busy_or_overloaded_server_stays_in_rotation_at_1_percent() {
        assert_eq!(reply(&load(4, 4, 4, 0), false), "up 1%\n");
        assert_eq!(reply(&load(4, 4, 4, 1000), false), "up 1%\n");
        assert_eq!(reply(&load(2, 2, 0, 5), false), "up 1%\n");
    }

    #[test]
    fn workers_not_ready_count_as_busy() {
        assert_eq!(reply(&load(2, 4, 0, 0), false), "up 50%\n");
        assert_eq!(reply(&load(1, 4, 1, 0), false), "up 1%\n");
        // More ready than configured cannot happen, but must not panic or exceed 100%.
        assert_eq!(reply(&load(5, 4, 0, 0), false), "up 100%\n");
        assert_eq!(reply(&load(3, 0, 0, 0), false), "up 100%\n");
    }

    #[test]
    fn no_ready_worker_is_down_and_shutdown_is_drain() {
        assert_eq!(reply(&load(0, 4, 0, 0), false), "down\n");
        assert_eq!(reply(&load(0, 4, 0, 3), false), "down\n");
        let mut l = load(4, 4, 1, 0);
        l.draining = true;
        assert_eq!(reply(&l, false), "drain\n");
        l.ready = 0;
        assert_eq!(reply(&l, false), "drain\n");
    }

    #[test]
    fn each_connection_gets_the_line_and_is_closed() {
        use std::io::Read;
        let poll = mio::Poll::new().unwrap();
        let mut agent =
            Agent::bind("127.0.0.1:0".parse().unwrap(), poll.registry(), Token(2)).unwrap();
        let addr = agent.local_addr().unwrap();
        let mut clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // On loopback a connect returns once the connection waits in the accept queue.
        agent.serve("up 42%\n");
        for c in &mut clients {
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert_eq!(got, "up 42%\n");
        }
        assert!(!agent.has_more());
    }
}
