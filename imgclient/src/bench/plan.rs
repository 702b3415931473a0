//! What the bench's connections share: the plan of the run, the messages the collector
//! hears, and how one answer from the server changes the requests in flight (pure, so it is
//! tested without a server). The connections themselves are driven by `engine.rs`.
//!
//! Trust boundary: the server's answers; they are only counted and timed, never kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use netproto_sys::{ErrorCode, Event};

use crate::connect::Connector;
use crate::exit::{self, ExitKind, Failure};
use crate::retry::{self, JobTries};

/// Stack size of an event-loop thread.
pub const STACK_SIZE: usize = 256 * 1024;

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchOp {
    Ping,
    /// A job with this (validated, canonical) op spec; `noop` is one of these.
    Job(String),
    /// A multi-output job (`--variants`): this variant list of `n` canonical specs; a
    /// request is complete when all `n` variants are answered.
    Multi {
        list: String,
        n: u8,
    },
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
    /// `--zipf`: images drawn by popularity instead of in turn.
    pub zipf: Option<super::schedule::Zipf>,
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
    /// Each server's key is checked by the connector (`Connector::check_key`) against the
    /// known-servers file under that server's address.
    pub fatal: Mutex<Option<Failure>>,
}

impl Plan {
    /// Which image request `n` sends: in turn, or drawn from the Zipf distribution.
    pub fn image_for(&self, n: u64) -> usize {
        match &self.zipf {
            Some(z) => z.pick(n),
            None => super::schedule::image_index(n, self.ops.len(), self.images.len()),
        }
    }

    pub fn end(&self) -> Option<Instant> {
        self.duration.map(|d| self.start + d)
    }
}

/// What the collector hears.
#[derive(Debug, Clone)]
pub enum Msg {
    Ok {
        /// Index of the request's op in the mix.
        op: usize,
        /// Index of the server (in the --server list) that answered it.
        server: usize,
        latency: Duration,
        up: u64,
        down: u64,
        /// Server phase times (queue, decode, filter, encode) in µs, for jobs.
        phases: Option<[u32; 4]>,
        /// When the answer arrived (the collector reads messages in batches).
        at: Instant,
    },
    Err {
        key: String,
        kind: ExitKind,
        up: u64,
        at: Instant,
    },
    ConnUp,
    ConnDown,
}

pub struct Pending {
    /// The run-wide request number (which op and image it is), kept so that a request lost
    /// with its connection is sent again as the same request.
    pub n: u64,
    /// Its tries so far (a loss counts one, by the retry rules of `retry.rs`).
    pub tries: JobTries,
    /// The server it was sent to.
    pub server: usize,
    op: usize,
    pub intended: Instant,
    pub sent: Instant,
    pub up: u64,
    down: u64,
    phases: Option<[u32; 4]>,
    /// A multi-output request: variants not yet answered (0 for a single job).
    pub left: u8,
    /// A multi-output request: the first failed variant's error code.
    failed: Option<u16>,
}

/// What an event means for the connection as a whole.
pub enum Signal {
    None,
    Lost(String, ExitKind),
    Drain,
    Pause(Instant),
    /// The server refused this request because it is shutting down (it did none of the
    /// work): send it again on the next connection, as a lost connection's requests are.
    Refused(Pending),
}

pub fn pending(op: usize, intended: Instant, sent: Instant, up: u64) -> Pending {
    Pending {
        n: 0,
        tries: JobTries::default(),
        server: 0,
        op,
        intended,
        sent,
        up,
        down: 0,
        phases: None,
        left: 0,
        failed: None,
    }
}

/// Applies one event to the requests in flight; reports completions and errors.
pub fn on_event(
    inflight: &mut HashMap<u64, Pending>,
    tx: &Sender<Msg>,
    ev: &Event<'_>,
    mode: Mode,
) -> Signal {
    let now = Instant::now();
    let complete = |inflight: &mut HashMap<u64, Pending>, id: u64| {
        // A multi-output request is complete at its last variant.
        if let Some(p) = inflight.get_mut(&id).filter(|p| p.left > 1) {
            p.left -= 1;
            return;
        }
        if let Some(p) = inflight.remove(&id) {
            if let Some(code) = p.failed {
                let _ = tx.send(Msg::Err {
                    key: format!("variant {}", exit::wire_name(code)),
                    kind: exit::kind_of_wire(code),
                    up: p.up,
                    at: now,
                });
                return;
            }
            let _ = tx.send(Msg::Ok {
                op: p.op,
                server: p.server,
                latency: now.saturating_duration_since(p.intended),
                up: p.up,
                down: p.down,
                phases: p.phases,
                at: now,
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
        Event::VariantResult {
            id,
            info,
            data,
            last,
            ..
        } => {
            if let Some(p) = inflight.get_mut(&id) {
                p.down += data.len() as u64;
                // The job's phases: the shared decode once, filter and encode summed.
                let ph = p
                    .phases
                    .get_or_insert([info.queue_us, info.decode_us, 0, 0]);
                ph[1] = ph[1].max(info.decode_us);
                ph[2] += info.filter_us;
                ph[3] += info.encode_us;
            }
            if last {
                complete(inflight, id);
            }
        }
        Event::VariantError { id, code, .. } => {
            if let Some(p) = inflight.get_mut(&id) {
                p.failed.get_or_insert(code);
            }
            complete(inflight, id);
        }
        // Request id 0 is the connection's own heartbeat, never one of our requests.
        Event::Pong { id: 0, .. } => {}
        Event::Pong { id, .. } => complete(inflight, id),
        Event::Error { id: 0, code, .. } => {
            return Signal::Lost(
                format!("connection closed by server: {}", exit::wire_name(code)),
                exit::kind_of_wire(code),
            );
        }
        Event::Error { id, code, .. } if code == ErrorCode::ShuttingDown as u16 => {
            if let Some(p) = inflight.remove(&id) {
                return Signal::Refused(p);
            }
        }
        Event::Error { id, code, message } => {
            if let Some(p) = inflight.remove(&id) {
                let _ = tx.send(Msg::Err {
                    key: exit::wire_name(code),
                    kind: exit::kind_of_wire(code),
                    up: p.up,
                    at: now,
                });
            }
            // A request refused for the server's rate (RATE_LIMITED) is honoured like BUSY in
            // closed loop: no next request before its retry-after.
            if let (Mode::Closed, Some(wait)) = (mode, retry::hint_in_error(code, message)) {
                return Signal::Pause(now + wait);
            }
        }
        Event::Busy { id, retry_after_ms } => {
            if let Some(p) = inflight.remove(&id) {
                let _ = tx.send(Msg::Err {
                    key: "BUSY".to_string(),
                    kind: ExitKind::Busy,
                    up: p.up,
                    at: now,
                });
            }
            // Closed loop honours the server's back-off (exactly: no jitter, the run is
            // measured); open loop keeps to its schedule, because the offered load is what is
            // being measured.
            if mode == Mode::Closed {
                let advice = Duration::from_millis(retry_after_ms as u64);
                return Signal::Pause(now + retry::busy_wait(advice, 0.0));
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
    fn a_request_refused_for_shutdown_comes_back_to_be_sent_again_not_tallied() {
        let (tx, rx) = unbounded();
        let mut inflight = HashMap::new();
        let t = Instant::now();
        inflight.insert(3, pending(0, t, t, 10));
        let ev = Event::Error {
            id: 3,
            code: ErrorCode::ShuttingDown as u16,
            message: "the server is shutting down",
        };
        match on_event(&mut inflight, &tx, &ev, Mode::Closed) {
            Signal::Refused(p) => assert_eq!(p.up, 10),
            _ => panic!("not handed back"),
        }
        assert!(inflight.is_empty());
        assert!(rx.try_recv().is_err(), "nothing tallied");
        // Any other refusal is tallied under its code.
        inflight.insert(4, pending(0, t, t, 0));
        let ev = Event::Error {
            id: 4,
            code: ErrorCode::BadSpec as u16,
            message: "no such op",
        };
        assert!(matches!(
            on_event(&mut inflight, &tx, &ev, Mode::Closed),
            Signal::None
        ));
        assert!(
            matches!(rx.try_recv(), Ok(Msg::Err { ref key, .. }) if key.starts_with("BAD_SPEC"))
        );
    }

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
            matches!(rx.try_recv(), Ok(Msg::Err { ref key, kind: ExitKind::Busy, up: 100, .. }) if key == "BUSY")
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
                ..
            } => {
                assert_eq!(op, 1);
                assert!(latency >= Duration::from_millis(300));
                assert_eq!((up, down), (10, 5));
                assert_eq!(phases, Some([1, 2, 3, 4]));
            }
            m => panic!("{m:?}"),
        }
        // A heartbeat PONG (id 0) completes nothing, even with a request 0 on the books.
        inflight.insert(0, pending(0, intended, intended, 0));
        on_event(
            &mut inflight,
            &tx,
            &Event::Pong {
                id: 0,
                payload: b"",
            },
            Mode::Closed,
        );
        assert!(rx.try_recv().is_err());
        assert!(inflight.remove(&0).is_some());
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
