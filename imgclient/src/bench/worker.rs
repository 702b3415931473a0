//! One bench connection on its own OS thread: connect (after its ramp delay), send requests
//! closed-loop (next one as soon as the previous is answered) or open-loop (on the schedule,
//! several in flight), time each from its intended send time, and report every outcome to
//! the collector over a channel.
//!
//! Threading: one thread per connection. The library's blocking `Client` owns one socket and
//! is driven by one thread at a time, so this is the model that needs no event loop of our
//! own, keeps the closed loop exact (the next request leaves the instant the answer is read,
//! with no scheduler in between) and keeps key pinning inside `Client::connect`. The cost is
//! small: each thread sleeps in `read` almost all the time, stacks are 256 KiB of virtual
//! memory, and a request costs at most two context switches, far below the server's work per
//! request. 1,000 connections are 1,000 mostly idle threads.
//!
//! Trust boundary: the server's answers; they are only counted and timed, never kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use netproto_sys::{ffi, Client, Event, NpError};

use super::schedule::{self, OpenSchedule};
use crate::connect::{sleep_unless, Connector, Jitter, Retry};
use crate::exit::{self, ExitKind, Failure};
use crate::session::CHUNK;
use crate::sys;

/// Stack size of a connection thread: the blocking client needs little, and a thousand of
/// them must fit comfortably.
pub const STACK_SIZE: usize = 256 * 1024;

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchOp {
    Ping,
    /// A job with this (validated, canonical) op spec; `noop` is one of these.
    Job(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Closed,
    Open { rate: f64 },
}

/// Everything the connection threads share.
#[derive(Debug)]
pub struct Plan {
    pub connector: Arc<Connector>,
    pub ops: Vec<BenchOp>,
    pub images: Vec<Vec<u8>>,
    pub conns: usize,
    pub mode: Mode,
    pub start: Instant,
    pub duration: Option<Duration>,
    pub max_requests: Option<u64>,
    pub ramp: Duration,
    /// Most requests in flight on one connection (open loop).
    pub window: usize,
    /// A request unanswered this long counts as an error.
    pub timeout: Duration,
    /// Closed loop: the next run-wide request number.
    pub claimed: AtomicU64,
    pub stop: AtomicBool,
    /// The first error that makes further connecting pointless (authentication, pinning).
    pub fatal: Mutex<Option<Failure>>,
}

impl Plan {
    fn end(&self) -> Option<Instant> {
        self.duration.map(|d| self.start + d)
    }
}

/// What the collector hears.
#[derive(Debug, Clone)]
pub enum Msg {
    Ok {
        /// Index of the request's op in the mix.
        op: usize,
        latency: Duration,
        up: u64,
        down: u64,
        /// Server phase times (queue, decode, filter, encode) in µs, for jobs.
        phases: Option<[u32; 4]>,
    },
    Err {
        key: String,
        kind: ExitKind,
        up: u64,
    },
    ConnUp,
    ConnDown,
}

struct Pending {
    op: usize,
    intended: Instant,
    sent: Instant,
    up: u64,
    down: u64,
    phases: Option<[u32; 4]>,
}

/// What an event means for the connection as a whole.
enum Signal {
    None,
    Lost(String, ExitKind),
    Drain,
    Pause(Instant),
}

struct Worker {
    plan: Arc<Plan>,
    conn: usize,
    tx: Sender<Msg>,
    client: Option<Client>,
    next_id: u64,
    inflight: HashMap<u64, Pending>,
    open: Option<OpenSchedule>,
    /// The next request, chosen but not yet sent: (run-wide number, intended send time).
    planned: Option<(u64, Instant)>,
    exhausted: bool,
    draining: bool,
    paused_until: Option<Instant>,
    retry: Retry,
    jitter: Jitter,
}

/// The thread body for connection `conn`.
pub fn run(plan: Arc<Plan>, conn: usize, tx: Sender<Msg>) {
    let start_at = schedule::ramp_offset(conn, plan.conns, plan.ramp);
    let open = match plan.mode {
        Mode::Open { rate } => Some(OpenSchedule::new(
            conn,
            plan.conns,
            rate,
            start_at,
            plan.max_requests,
            plan.duration,
        )),
        Mode::Closed => None,
    };
    let retry_budget = plan.duration.unwrap_or(plan.connector.retry_for);
    let mut w = Worker {
        conn,
        tx,
        client: None,
        next_id: 1,
        inflight: HashMap::new(),
        open,
        planned: None,
        exhausted: false,
        draining: false,
        paused_until: None,
        retry: Retry::new(retry_budget),
        jitter: Jitter::new(),
        plan,
    };
    let wake = w.plan.start + start_at;
    if !sleep_unless(wake.saturating_duration_since(Instant::now()), &w.plan.stop) {
        return;
    }
    w.main_loop();
    if w.client.take().is_some() {
        let _ = w.tx.send(Msg::ConnDown);
    }
}

impl Worker {
    fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
    }

    fn error(&self, key: String, kind: ExitKind, up: u64) {
        self.send(Msg::Err { key, kind, up });
    }

    fn main_loop(&mut self) {
        loop {
            if self.plan.stop.load(Ordering::Relaxed) {
                return;
            }
            if self.client.is_none() {
                if self.exhausted || self.plan.end().is_some_and(|e| Instant::now() >= e) {
                    return;
                }
                if !self.connect() {
                    return;
                }
                continue;
            }
            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            if self.can_send(now) {
                self.plan_next(now);
                match self.planned {
                    Some((n, due)) if due <= now => {
                        self.planned = None;
                        if let Err(e) = self.send_request(n, due) {
                            self.lost(&e);
                        }
                        continue;
                    }
                    Some((_, due)) => wake = Some(due),
                    None => {}
                }
            }
            if self.inflight.is_empty() {
                if self.exhausted {
                    return;
                }
                if self.draining {
                    // SHUTDOWN and nothing left in flight: reconnect (to the restarted server).
                    self.client = None;
                    self.send(Msg::ConnDown);
                    continue;
                }
            }
            if let Some(p) = self.paused_until {
                wake = Some(wake.map_or(p, |w| w.min(p)));
            }
            self.wait(wake);
        }
    }

    fn can_send(&self, now: Instant) -> bool {
        !self.draining
            && !self.exhausted
            && self.paused_until.is_none_or(|t| t <= now)
            && self.inflight.len()
                < match self.plan.mode {
                    Mode::Closed => 1,
                    Mode::Open { .. } => self.plan.window,
                }
    }

    /// Chooses the next request if none is chosen yet.
    fn plan_next(&mut self, now: Instant) {
        if self.planned.is_some() {
            return;
        }
        match &mut self.open {
            Some(s) => match s.peek() {
                Some((n, at)) => {
                    s.advance();
                    self.planned = Some((n, self.plan.start + at));
                }
                None => self.exhausted = true,
            },
            None => {
                if self.plan.end().is_some_and(|e| now >= e) {
                    self.exhausted = true;
                    return;
                }
                let n = self.plan.claimed.fetch_add(1, Ordering::Relaxed);
                if self.plan.max_requests.is_some_and(|m| n >= m) {
                    self.exhausted = true;
                    return;
                }
                self.planned = Some((n, now));
            }
        }
    }

    fn connect(&mut self) -> bool {
        match self.plan.connector.connect_once() {
            Ok(c) => {
                self.client = Some(c);
                self.draining = false;
                self.send(Msg::ConnUp);
                true
            }
            Err(e) => {
                let kind = exit::kind_of_np(&e);
                self.error(
                    format!("connect failed: {}", exit::np_tally_name(&e)),
                    kind,
                    0,
                );
                if !exit::np_retryable(&e) {
                    let mut fatal = self.plan.fatal.lock().unwrap_or_else(|p| p.into_inner());
                    fatal.get_or_insert_with(|| self.plan.connector.failure(&e));
                    self.plan.stop.store(true, Ordering::Relaxed);
                    return false;
                }
                let Some(mut delay) = self.retry.next_delay(Instant::now(), self.jitter.unit())
                else {
                    log::warn!("connection {}: giving up: {}", self.conn, e.message);
                    return false;
                };
                if let Some(end) = self.plan.end() {
                    delay = delay.min(end.saturating_duration_since(Instant::now()));
                }
                log::debug!(
                    "connection {}: {}; retrying in {delay:?}",
                    self.conn,
                    e.message
                );
                sleep_unless(delay, &self.plan.stop)
            }
        }
    }

    fn send_request(&mut self, n: u64, intended: Instant) -> Result<(), NpError> {
        let plan = self.plan.clone();
        let op_idx = schedule::op_index(n, plan.ops.len());
        let op = &plan.ops[op_idx];
        let id = self.next_id;
        self.next_id += 1;
        let timeout = plan.timeout;
        let now = Instant::now();
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        match op {
            BenchOp::Ping => {
                client.send_ping(id, &n.to_be_bytes(), timeout)?;
                self.inflight.insert(id, pending(op_idx, intended, now, 0));
            }
            BenchOp::Job(spec) => {
                let img = &plan.images[schedule::image_index(n, plan.ops.len(), plan.images.len())];
                let mut chunks = img.chunks(CHUNK);
                let first = chunks.next().unwrap_or(&[]);
                let n_chunks = img.len().div_ceil(CHUNK).max(1);
                client.send_job(id, spec, img.len() as u64, first, n_chunks == 1, timeout)?;
                self.inflight
                    .insert(id, pending(op_idx, intended, now, img.len() as u64));
                for (i, chunk) in chunks.enumerate() {
                    // Read answers that are already here, so their latency is not inflated
                    // by this upload and the server never blocks on us.
                    self.pump_ready()?;
                    if !self.inflight.contains_key(&id) {
                        break; // refused mid-upload: stop sending (PROTOCOL 10.5)
                    }
                    let Some(client) = self.client.as_mut() else {
                        return Ok(());
                    };
                    client.send_job_data(id, chunk, i + 2 == n_chunks, timeout)?;
                }
            }
        }
        Ok(())
    }

    /// Handles events that can be read without waiting.
    fn pump_ready(&mut self) -> Result<(), NpError> {
        loop {
            let Some(client) = self.client.as_mut() else {
                return Ok(());
            };
            if !sys::readable_now(client.fd()) {
                return Ok(());
            }
            match client.next_event(Duration::from_millis(1)) {
                Ok(ev) => {
                    let sig = on_event(&mut self.inflight, &self.tx, &ev, self.plan.mode);
                    self.apply(sig);
                }
                Err(e) if e.is(ffi::NP_TIMEOUT) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for one event, until `wake` at most; expires requests past their deadline.
    fn wait(&mut self, wake: Option<Instant>) {
        let now = Instant::now();
        let deadline = self
            .inflight
            .values()
            .map(|p| p.sent + self.plan.timeout)
            .min();
        let until = match (wake, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = until
            .map_or(Duration::from_secs(1), |u| u.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let Some(client) = self.client.as_mut() else {
            return;
        };
        match client.next_event(timeout) {
            Ok(ev) => {
                let sig = on_event(&mut self.inflight, &self.tx, &ev, self.plan.mode);
                self.apply(sig);
            }
            Err(e) if e.is(ffi::NP_TIMEOUT) => self.expire(Instant::now()),
            Err(e) => self.lost(&e),
        }
    }

    fn apply(&mut self, sig: Signal) {
        match sig {
            Signal::None => {}
            Signal::Drain => self.draining = true,
            Signal::Pause(until) => self.paused_until = Some(until),
            Signal::Lost(key, kind) => self.drop_connection(key, kind),
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.plan.timeout;
        let expired: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, p)| now >= p.sent + timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.inflight.remove(&id) {
                self.error(
                    format!("no answer within {} ms", timeout.as_millis()),
                    ExitKind::Connect,
                    p.up,
                );
            }
        }
    }

    fn lost(&mut self, e: &NpError) {
        self.drop_connection(
            format!("connection lost: {}", exit::np_tally_name(e)),
            exit::kind_of_np(e),
        );
    }

    /// Counts every request in flight as failed with `key` and closes the connection.
    fn drop_connection(&mut self, key: String, kind: ExitKind) {
        log::debug!("connection {}: {key}", self.conn);
        for (_, p) in self.inflight.drain() {
            let _ = self.tx.send(Msg::Err {
                key: key.clone(),
                kind,
                up: p.up,
            });
        }
        if self.client.take().is_some() {
            self.send(Msg::ConnDown);
        }
    }
}

fn pending(op: usize, intended: Instant, sent: Instant, up: u64) -> Pending {
    Pending {
        op,
        intended,
        sent,
        up,
        down: 0,
        phases: None,
    }
}

/// Applies one event to the requests in flight; reports completions and errors.
fn on_event(
    inflight: &mut HashMap<u64, Pending>,
    tx: &Sender<Msg>,
    ev: &Event<'_>,
    mode: Mode,
) -> Signal {
    let now = Instant::now();
    let complete = |inflight: &mut HashMap<u64, Pending>, id: u64| {
        if let Some(p) = inflight.remove(&id) {
            let _ = tx.send(Msg::Ok {
                op: p.op,
                latency: now.saturating_duration_since(p.intended),
                up: p.up,
                down: p.down,
                phases: p.phases,
            });
        }
    };
    match *ev {
        Event::JobResult {
            id,
            info,
            data,
            last,
        } => {
            if let Some(p) = inflight.get_mut(&id) {
                p.down += data.len() as u64;
                p.phases = Some([
                    info.queue_us,
                    info.decode_us,
                    info.filter_us,
                    info.encode_us,
                ]);
            }
            if last {
                complete(inflight, id);
            }
        }
        Event::ResultData { id, data, last } => {
            if let Some(p) = inflight.get_mut(&id) {
                p.down += data.len() as u64;
            }
            if last {
                complete(inflight, id);
            }
        }
        Event::Pong { id, .. } => complete(inflight, id),
        Event::Error { id: 0, code, .. } => {
            return Signal::Lost(
                format!("connection closed by server: {}", exit::wire_name(code)),
                exit::kind_of_wire(code),
            );
        }
        Event::Error { id, code, .. } => {
            if let Some(p) = inflight.remove(&id) {
                let _ = tx.send(Msg::Err {
                    key: exit::wire_name(code),
                    kind: exit::kind_of_wire(code),
                    up: p.up,
                });
            }
        }
        Event::Busy { id, retry_after_ms } => {
            if let Some(p) = inflight.remove(&id) {
                let _ = tx.send(Msg::Err {
                    key: "BUSY".to_string(),
                    kind: ExitKind::Busy,
                    up: p.up,
                });
            }
            // Closed loop honours the server's back-off; open loop keeps to its schedule,
            // because the offered load is what is being measured.
            if mode == Mode::Closed {
                return Signal::Pause(now + Duration::from_millis(retry_after_ms as u64));
            }
        }
        Event::Shutdown { .. } => return Signal::Drain,
        Event::Bye => {
            return Signal::Lost(
                "connection closed by server: BYE".to_string(),
                ExitKind::Connect,
            )
        }
        _ => {}
    }
    Signal::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    #[test]
    fn busy_pauses_only_the_closed_loop() {
        let (tx, rx) = unbounded();
        let mut inflight = HashMap::new();
        let t = Instant::now();
        inflight.insert(7, pending(0, t, t, 100));
        let ev = Event::Busy {
            id: 7,
            retry_after_ms: 50,
        };
        assert!(matches!(
            on_event(&mut inflight, &tx, &ev, Mode::Closed),
            Signal::Pause(_)
        ));
        assert!(inflight.is_empty());
        assert!(
            matches!(rx.try_recv(), Ok(Msg::Err { ref key, kind: ExitKind::Busy, up: 100 }) if key == "BUSY")
        );
        inflight.insert(8, pending(0, t, t, 0));
        let ev = Event::Busy {
            id: 8,
            retry_after_ms: 50,
        };
        assert!(matches!(
            on_event(&mut inflight, &tx, &ev, Mode::Open { rate: 1.0 }),
            Signal::None
        ));
    }

    #[test]
    fn results_are_timed_from_the_intended_time() {
        let (tx, rx) = unbounded();
        let mut inflight = HashMap::new();
        let intended = Instant::now() - Duration::from_millis(300);
        inflight.insert(1, pending(1, intended, Instant::now(), 10));
        let info = netproto_sys::ResultInfo {
            total_len: 5,
            queue_us: 1,
            decode_us: 2,
            filter_us: 3,
            encode_us: 4,
            ..Default::default()
        };
        let ev = Event::JobResult {
            id: 1,
            info,
            data: b"abc",
            last: false,
        };
        on_event(&mut inflight, &tx, &ev, Mode::Closed);
        assert!(rx.try_recv().is_err());
        let ev = Event::ResultData {
            id: 1,
            data: b"de",
            last: true,
        };
        on_event(&mut inflight, &tx, &ev, Mode::Closed);
        match rx.try_recv().unwrap() {
            Msg::Ok {
                op,
                latency,
                up,
                down,
                phases,
            } => {
                assert_eq!(op, 1);
                assert!(latency >= Duration::from_millis(300));
                assert_eq!((up, down), (10, 5));
                assert_eq!(phases, Some([1, 2, 3, 4]));
            }
            m => panic!("{m:?}"),
        }
        // Unknown ids and job errors.
        on_event(
            &mut inflight,
            &tx,
            &Event::Pong {
                id: 9,
                payload: b"",
            },
            Mode::Closed,
        );
        assert!(rx.try_recv().is_err());
        inflight.insert(2, pending(0, intended, intended, 0));
        let ev = Event::Error {
            id: 2,
            code: 304,
            message: "bad",
        };
        on_event(&mut inflight, &tx, &ev, Mode::Closed);
        assert!(
            matches!(rx.try_recv(), Ok(Msg::Err { ref key, kind: ExitKind::Rejected, .. }) if key == "DECODE_FAILED (304)")
        );
        let ev = Event::Error {
            id: 0,
            code: 404,
            message: "idle",
        };
        assert!(matches!(
            on_event(&mut inflight, &tx, &ev, Mode::Closed),
            Signal::Lost(_, ExitKind::Connect)
        ));
    }
}
