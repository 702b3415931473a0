//! The load generator's connections: a few event-loop threads (one per core by default), each
//! driving its share of the connections with mio and libnetproto's sans-IO `Conn`:
//! non-blocking connect, handshake, key check, login, then requests closed-loop (the next one
//! leaves as soon as the answer is read) or open-loop (on the schedule, up to `--window` in
//! flight), each timed from its intended send time; reconnecting with backoff after a loss.
//! Connection i starts on server i mod N of the --server list; a connect that fails moves
//! straight on to the next server (one failed attempt is counted, and backed off from, only
//! when a whole round of the list has failed), and a connection that loses its server
//! reconnects starting at the next one, re-sending what was in flight as the same requests
//! (by the retry rules of `retry.rs`: at most MAX_ATTEMPTS tries each).
//! Each connection's own timers (heartbeat PINGs with request id 0, giving up on a silent
//! server) are folded into the loop's wake-up time and served with `handle_timeout`; the
//! engine keeps only application deadlines (connect time, per-request answers, BUSY pauses).
//!
//! Why event loops rather than a blocking thread per connection: with a thread per connection
//! every answer the server writes has to wake a sleeping thread, and the wake-up is paid inside
//! the server's `write`. On a 2-core machine at 150 connections of PING that was over a quarter
//! of the server's CPU, so the load generator slowed down what it measured. An event-loop
//! thread that is already awake costs the server nothing to notify.
//!
//! Trust boundary: the server's bytes (parsed by libnetproto; answers are only counted and
//! timed). Each server's key must be the one the known-servers file pins for that server's
//! address (checked by the connector, pinned on first use as any connection would); any
//! other key stops the run before a login proof is sent, and is never skipped over.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use netproto_sys::limits::MAX_CHUNK_DATA;
use netproto_sys::{ffi, ClientConn, ErrorCode, Event, NpError, ReadStatus, Timer};

use super::plan::{on_event, pending, BenchOp, Mode, Msg, Pending, Plan, Signal};
use super::schedule::{self, OpenSchedule};
use crate::exit;
use crate::failover;
use crate::retry::{self, Jitter, JobTries, Next, Retry};

/// Upload chunks are queued only while less than this is waiting to be written, so that
/// connections uploading large images do not each hold a whole encrypted copy.
const OUTPUT_LOW_WATER: usize = 4 * MAX_CHUNK_DATA;

/// Longest sleep in `epoll_wait`, so that `stop` is noticed.
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Not connected: (re)connect at this time.
    Idle {
        at: Instant,
    },
    /// TCP connect, handshake and login under way since then.
    Connecting {
        since: Instant,
    },
    Ready,
    /// Nothing more to do: the run's requests are done, or reconnecting was given up.
    Done,
}

/// The rest of an image upload: the next chunk starts at `offset`.
struct Upload {
    id: u64,
    image: usize,
    offset: usize,
}

/// One bench connection.
struct Link {
    conn_no: usize,
    /// Its index in the thread's table, the mio token.
    token: usize,
    phase: Phase,
    stream: Option<TcpStream>,
    conn: Option<ClientConn>,
    /// WRITABLE is registered (only while output is pending, or while connecting).
    want_write: bool,
    next_id: u64,
    inflight: HashMap<u64, Pending>,
    open: Option<OpenSchedule>,
    /// The next request, chosen but not yet sent: (run-wide number, intended send time, its
    /// tries so far).
    planned: Option<(u64, Instant, JobTries)>,
    /// Requests lost with a connection, to be sent again first on the next one: (run-wide
    /// number, intended send time, tries).
    resend: VecDeque<(u64, Instant, JobTries)>,
    /// Why they were lost (the tally key they fail under if they cannot be sent again).
    resend_why: String,
    /// The server of the list it is on, or connecting to.
    server: usize,
    /// Where the current connect round began, and how many servers it has tried.
    round_start: usize,
    round_tried: usize,
    exhausted: bool,
    draining: bool,
    paused_until: Option<Instant>,
    retry: Retry,
    upload: Option<Upload>,
}

/// Why a connection went away, and whether to try again.
struct Loss {
    /// The tally key; "connect failed: " or "connection lost: " goes in front unless `whole`.
    key: String,
    whole: bool,
    kind: exit::ExitKind,
    /// The error that ends the whole run (authentication, key pinning).
    fatal: Option<NpError>,
    /// The server's "not before" for the next attempt (RATE_LIMITED's retry-after).
    hint: Option<Duration>,
}

impl From<NpError> for Loss {
    fn from(e: NpError) -> Loss {
        Loss {
            key: exit::np_tally_name(&e),
            whole: false,
            kind: exit::kind_of_np(&e),
            hint: retry::server_hint(&e),
            fatal: (!retry::np_retryable(&e)).then_some(e),
        }
    }
}

impl From<std::io::Error> for Loss {
    fn from(e: std::io::Error) -> Loss {
        Loss::from(io_error(&e))
    }
}

/// What one event-loop thread shares between its connections.
struct Ctx {
    plan: Arc<Plan>,
    tx: Sender<Msg>,
    poll: Poll,
    /// Each server's address, resolved once per thread (`None`: it does not resolve).
    addrs: Vec<Option<SocketAddr>>,
    jitter: Jitter,
}

/// The thread body: drives the connections numbered `conn_nos` until the run ends.
pub fn run(plan: Arc<Plan>, conn_nos: Vec<usize>, tx: Sender<Msg>) {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            log::error!("bench: cannot create an event loop: {e}");
            plan.stop.store(true, Ordering::Relaxed);
            return;
        }
    };
    // Resolved once per thread; a name that does not resolve fails every connect the same
    // way a refused connection does (counted, retried within the budget).
    let addrs = plan
        .connector
        .servers
        .iter()
        .map(|s| s.to_socket_addrs().ok().and_then(|mut a| a.next()))
        .collect();
    let mut links: Vec<Link> = conn_nos
        .iter()
        .enumerate()
        .map(|(i, &c)| Link::new(&plan, c, i))
        .collect();
    let mut ctx = Ctx {
        plan,
        tx,
        poll,
        addrs,
        jitter: Jitter::new(),
    };
    let mut events = Events::with_capacity(1024);
    // Every connection is stepped when the earliest of their timers is due; in between only
    // those with socket events are, so a busy loop does not walk all of them per answer.
    let mut next_scan = Instant::now();
    loop {
        if ctx.plan.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if now >= next_scan {
            let mut wake: Option<Instant> = None;
            for l in links.iter_mut() {
                ctx.step(l, now);
                wake = earliest(wake, l.wake(&ctx.plan));
            }
            if links.iter().all(|l| matches!(l.phase, Phase::Done)) {
                break;
            }
            next_scan = wake.unwrap_or(now + MAX_WAIT);
        }
        let now = Instant::now();
        let timeout = next_scan.saturating_duration_since(now).min(MAX_WAIT);
        if let Err(e) = ctx.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("bench: epoll_wait: {e}");
                ctx.plan.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(l) = links.get_mut(i) else { continue };
            ctx.on_socket(l, Instant::now());
            ctx.step(l, Instant::now());
            next_scan = match l.phase {
                // Possibly the last one: the next scan sees whether the thread is finished.
                Phase::Done => Instant::now(),
                _ => earliest(Some(next_scan), l.wake(&ctx.plan)).unwrap_or(next_scan),
            };
        }
    }
    for l in &mut links {
        ctx.close(l);
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Link {
    fn new(plan: &Plan, conn_no: usize, token: usize) -> Link {
        let start_at = schedule::ramp_offset(conn_no, plan.conns, plan.ramp);
        let open = match plan.mode {
            Mode::Open { rate } => Some(OpenSchedule::new(
                conn_no,
                plan.conns,
                rate,
                start_at,
                plan.max_requests,
                plan.duration,
            )),
            Mode::Closed => None,
        };
        let server = failover::start_for(conn_no, plan.connector.servers.len());
        Link {
            conn_no,
            token,
            resend: VecDeque::new(),
            resend_why: String::new(),
            server,
            round_start: server,
            round_tried: 0,
            phase: Phase::Idle {
                at: plan.start + start_at,
            },
            stream: None,
            conn: None,
            want_write: false,
            next_id: 1,
            inflight: HashMap::new(),
            open,
            planned: None,
            exhausted: false,
            draining: false,
            paused_until: None,
            retry: Retry::new(plan.duration.unwrap_or(plan.connector.retry_for)),
            upload: None,
        }
    }

    fn can_send(&self, plan: &Plan, now: Instant) -> bool {
        !self.draining
            && (!self.exhausted || !self.resend.is_empty())
            && self.upload.is_none()
            && self.paused_until.is_none_or(|t| t <= now)
            && self.inflight.len()
                < match plan.mode {
                    Mode::Closed => 1,
                    Mode::Open { .. } => plan.window,
                }
    }

    /// Chooses the next request if none is chosen yet.
    fn plan_next(&mut self, plan: &Plan, now: Instant) {
        if self.planned.is_some() {
            return;
        }
        // A request lost with a connection goes first: it was due already.
        if let Some(r) = self.resend.pop_front() {
            self.planned = Some(r);
            return;
        }
        if self.exhausted {
            return;
        }
        match &mut self.open {
            Some(s) => match s.peek() {
                Some((n, at)) => {
                    s.advance();
                    self.planned = Some((n, plan.start + at, JobTries::default()));
                }
                None => self.exhausted = true,
            },
            None => {
                if plan.end().is_some_and(|e| now >= e) {
                    self.exhausted = true;
                    return;
                }
                let n = plan.claimed.fetch_add(1, Ordering::Relaxed);
                if plan.max_requests.is_some_and(|m| n >= m) {
                    self.exhausted = true;
                    return;
                }
                self.planned = Some((n, now, JobTries::default()));
            }
        }
    }

    /// When this connection next needs attention without a socket event: its own deadlines
    /// (connect time, per-request answers, BUSY pause, the schedule) and the connection's
    /// timers (heartbeat, dead peer), which `step` serves.
    fn wake(&self, plan: &Plan) -> Option<Instant> {
        let timers = self.conn.as_ref().and_then(ClientConn::poll_timeout);
        match self.phase {
            Phase::Idle { at } => Some(at),
            Phase::Connecting { since } => earliest(Some(since + plan.connector.timeout), timers),
            Phase::Done => None,
            Phase::Ready => {
                let deadline = self.inflight.values().map(|p| p.sent + plan.timeout).min();
                let mut w = earliest(deadline, self.paused_until);
                if let Some((_, due, _)) = self.planned {
                    w = earliest(w, Some(due));
                }
                earliest(w, timers)
            }
        }
    }

    fn apply(&mut self, sig: Signal) -> Option<Loss> {
        match sig {
            Signal::None => None,
            Signal::Drain => {
                self.draining = true;
                None
            }
            Signal::Pause(until) => {
                self.paused_until = Some(until);
                None
            }
            // Handled by the engine before it gets here (it needs the tally's sender).
            Signal::Refused(_) => None,
            Signal::Lost(key, kind) => Some(Loss {
                key,
                whole: true,
                kind,
                fatal: None,
                hint: None,
            }),
        }
    }
}

impl Ctx {
    fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
    }

    /// Advances `l` by the clock: connects when due, serves the connection's timers, expires
    /// late answers, sends what the schedule allows, feeds uploads, and closes when there is
    /// nothing left to do.
    fn step(&mut self, l: &mut Link, now: Instant) {
        if let Err(loss) = self.serve_timers(l, now) {
            self.lose(l, loss, now);
            return;
        }
        match l.phase {
            Phase::Done => {}
            Phase::Idle { at } => {
                if now < at {
                    return;
                }
                if self.plan.end().is_some_and(|e| now >= e) {
                    // The run is over: what a lost connection left unsent fails as lost.
                    let why = std::mem::take(&mut l.resend_why);
                    self.abandon(l, &why, exit::ExitKind::Connect, now);
                }
                if (l.exhausted && l.resend.is_empty()) || self.plan.end().is_some_and(|e| now >= e)
                {
                    l.phase = Phase::Done;
                    return;
                }
                self.connect(l, now);
            }
            Phase::Connecting { since } => {
                if now >= since + self.plan.connector.timeout {
                    let e = NpError {
                        status: ffi::NP_TIMEOUT,
                        remote: None,
                        message: "connect, handshake and login took too long".into(),
                    };
                    self.lose(l, e.into(), now);
                }
            }
            Phase::Ready => {
                self.expire(l, now);
                if let Err(loss) = self.send_due(l, now) {
                    self.lose(l, loss, now);
                    return;
                }
                if l.inflight.is_empty() && l.upload.is_none() {
                    if l.exhausted && l.resend.is_empty() {
                        self.close(l);
                        l.phase = Phase::Done;
                    } else if l.draining {
                        // SHUTDOWN and nothing left in flight: reconnect, to the next server
                        // of the list first (with one server, the restarted one).
                        self.close(l);
                        self.fail_over(l);
                        l.phase = Phase::Idle { at: now };
                    }
                }
            }
        }
    }

    /// Lets the connection act on a timer that fell due: a heartbeat PING (request id 0, sent
    /// with the next flush) or, for a server silent for the dead-peer timeout, the end of the
    /// connection, counted like any other loss.
    fn serve_timers(&mut self, l: &mut Link, now: Instant) -> Result<(), Loss> {
        let Some(conn) = l.conn.as_mut() else {
            return Ok(());
        };
        if conn.poll_timeout().is_none_or(|t| t > now) {
            return Ok(());
        }
        match conn.handle_timeout(now) {
            Some(Timer::DeadPeer) => Err(Loss {
                key: format!(
                    "no answer from the server for {:?}",
                    self.plan.connector.dead_after
                ),
                whole: false,
                kind: exit::ExitKind::Connect,
                fatal: None,
                hint: None,
            }),
            Some(Timer::Heartbeat) => self.flush(l).map(drop),
            _ => Ok(()),
        }
    }

    fn send_due(&mut self, l: &mut Link, now: Instant) -> Result<(), Loss> {
        while l.can_send(&self.plan, now) {
            l.plan_next(&self.plan, now);
            match l.planned {
                Some((n, due, tries)) if due <= now => {
                    l.planned = None;
                    self.send_request(l, n, due, tries, now)?;
                }
                _ => break,
            }
        }
        // Until the socket pushes back: a socket that takes everything gives no WRITABLE
        // event to continue an upload from.
        loop {
            self.pump_upload(l)?;
            let left = self.flush(l)?;
            if l.upload.is_none() || left > 0 {
                return Ok(());
            }
        }
    }

    fn send_request(
        &mut self,
        l: &mut Link,
        n: u64,
        intended: Instant,
        tries: JobTries,
        now: Instant,
    ) -> Result<(), NpError> {
        let plan = &self.plan;
        let op_idx = schedule::op_index(n, plan.ops.len());
        let id = l.next_id;
        l.next_id += 1;
        let Some(conn) = l.conn.as_mut() else {
            return Ok(());
        };
        let request = |up: u64| {
            let mut p = pending(op_idx, intended, now, up);
            p.n = n;
            p.tries = tries;
            p.server = l.server;
            p
        };
        match &plan.ops[op_idx] {
            BenchOp::Ping => {
                conn.send_ping(id, &n.to_be_bytes())?;
                l.inflight.insert(id, request(0));
            }
            BenchOp::Job(_) | BenchOp::Multi { .. } => {
                let image = plan.image_for(n);
                let img = &plan.images[image];
                let first = &img[..img.len().min(MAX_CHUNK_DATA)];
                let last = first.len() == img.len();
                let mut p = request(img.len() as u64);
                match &plan.ops[op_idx] {
                    BenchOp::Multi { list, n } => {
                        conn.send_job_multi(id, list, img.len() as u64, first, last)?;
                        p.left = *n;
                    }
                    BenchOp::Job(spec) => conn.send_job(id, spec, img.len() as u64, first, last)?,
                    BenchOp::Ping => unreachable!(),
                }
                l.inflight.insert(id, p);
                if !last {
                    l.upload = Some(Upload {
                        id,
                        image,
                        offset: first.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Queues upload chunks while the output buffer is short.
    fn pump_upload(&mut self, l: &mut Link) -> Result<(), NpError> {
        let Some(conn) = l.conn.as_mut() else {
            return Ok(());
        };
        while let Some(u) = l.upload.as_mut() {
            if !l.inflight.contains_key(&u.id) {
                l.upload = None; // refused mid-upload: stop sending (PROTOCOL 10.5)
                break;
            }
            if conn.pending_output().len() >= OUTPUT_LOW_WATER {
                break;
            }
            let img = &self.plan.images[u.image];
            let end = (u.offset + MAX_CHUNK_DATA).min(img.len());
            let last = end == img.len();
            conn.send_job_data(u.id, &img[u.offset..end], last)?;
            u.offset = end;
            if last {
                l.upload = None;
            }
        }
        Ok(())
    }

    /// Writes pending output; WRITABLE interest only while some is left. Returns the bytes
    /// still pending.
    fn flush(&mut self, l: &mut Link) -> Result<usize, Loss> {
        let (Some(stream), Some(conn)) = (l.stream.as_mut(), l.conn.as_mut()) else {
            return Ok(0);
        };
        let left = conn.write_fd(stream.as_fd(), Instant::now())?;
        let want = left > 0;
        if want != l.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(stream, Token(l.token), interest)?;
            l.want_write = want;
        }
        Ok(left)
    }

    fn connect(&mut self, l: &mut Link, now: Instant) {
        let result = (|| -> Result<(TcpStream, ClientConn), NpError> {
            let server = l.server % self.addrs.len();
            let addr = self.addrs[server].ok_or_else(|| NpError {
                status: ffi::NP_IO,
                remote: None,
                message: format!("cannot resolve {}", self.plan.connector.addr(server)),
            })?;
            let mut stream = TcpStream::connect(addr).map_err(|e| io_error(&e))?;
            let _ = stream.set_nodelay(true);
            self.poll
                .registry()
                .register(
                    &mut stream,
                    Token(l.token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| io_error(&e))?;
            let conn = ClientConn::new(self.plan.connector.config(), Instant::now())?;
            Ok((stream, conn))
        })();
        match result {
            Ok((stream, conn)) => {
                l.stream = Some(stream);
                l.conn = Some(conn);
                l.want_write = true;
                l.draining = false;
                l.phase = Phase::Connecting { since: now };
            }
            Err(e) => self.lose(l, e.into(), now),
        }
    }

    /// Reads and handles everything the socket has, then writes what that produced.
    fn on_socket(&mut self, l: &mut Link, now: Instant) {
        if let Err(loss) = self.read_all(l).and_then(|()| self.flush(l).map(drop)) {
            self.lose(l, loss, now);
        }
    }

    fn read_all(&mut self, l: &mut Link) -> Result<(), Loss> {
        loop {
            let (Some(stream), Some(conn)) = (l.stream.as_mut(), l.conn.as_mut()) else {
                return Ok(());
            };
            if let Phase::Connecting { .. } = l.phase {
                if let Ok(Some(e)) | Err(e) = stream.take_error() {
                    return Err(e.into());
                }
            }
            // mio is edge-triggered: read until the socket says "would block".
            let status = conn.read_fd(stream.as_fd(), Instant::now())?;
            self.handle_events(l)?;
            match status {
                ReadStatus::Data(_) | ReadStatus::Full => {}
                ReadStatus::WouldBlock => return Ok(()),
                ReadStatus::Eof => {
                    return Err(NpError {
                        status: ffi::NP_EOF,
                        remote: None,
                        message: "the server closed the connection".into(),
                    }
                    .into())
                }
            }
            if matches!(l.phase, Phase::Idle { .. } | Phase::Done) {
                return Ok(());
            }
        }
    }

    fn handle_events(&mut self, l: &mut Link) -> Result<(), Loss> {
        loop {
            let Some(conn) = l.conn.as_mut() else {
                return Ok(());
            };
            let ev = match conn.poll_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match (l.phase, ev) {
                (Phase::Connecting { .. }, Event::ServerKey { key }) => {
                    // A key other than the pinned one is fatal (Loss::fatal): never a reason
                    // to try the next server instead.
                    self.plan.connector.check_key(l.server, &key)?;
                    conn.trust_server_key(true)?;
                }
                (Phase::Connecting { .. }, Event::Error { code, message, .. }) => {
                    // Refused before login (TOO_MANY_CONNECTIONS, RATE_LIMITED, ...): the
                    // server's code and any retry-after decide the next attempt.
                    let retry_after_ms = netproto_sys::error::retry_after_in_text(message);
                    let e = NpError {
                        status: ffi::NP_REMOTE_ERROR,
                        message: format!("server error {}: {message}", exit::wire_name(code)),
                        remote: Some(netproto_sys::Remote {
                            code,
                            retry_after_ms: retry_after_ms.unwrap_or(0),
                        }),
                    };
                    return Err(e.into());
                }
                (Phase::Connecting { .. }, Event::Ready) => {
                    l.phase = Phase::Ready;
                    l.retry.reset();
                    l.round_start = l.server;
                    l.round_tried = 0;
                    self.send(Msg::ConnUp);
                }
                (Phase::Ready, ev) => {
                    let sig = on_event(&mut l.inflight, &self.tx, &ev, self.plan.mode);
                    if let Signal::Refused(p) = sig {
                        self.refused_for_shutdown(l, p, Instant::now());
                        continue;
                    }
                    if let Some(loss) = l.apply(sig) {
                        return Err(loss);
                    }
                }
                _ => {}
            }
        }
    }

    /// A request refused with SHUTTING_DOWN: the server took none of its work, so it goes
    /// out again first on the next connection (to the next server, or through a balancer to
    /// a live one), within its allowed tries; nothing more is sent on this connection, which
    /// is closed and replaced once what is in flight is answered.
    fn refused_for_shutdown(&mut self, l: &mut Link, mut p: Pending, now: Instant) {
        l.draining = true;
        if p.tries.after_loss(now) == Next::GiveUp {
            self.send(Msg::Err {
                key: exit::wire_name(ErrorCode::ShuttingDown as u16),
                kind: exit::kind_of_wire(ErrorCode::ShuttingDown as u16),
                up: p.up,
                at: now,
            });
            return;
        }
        l.resend.push_back((p.n, p.intended, p.tries));
        l.resend_why = exit::wire_name(ErrorCode::ShuttingDown as u16);
    }

    /// Answers that are overdue count as errors.
    fn expire(&mut self, l: &mut Link, now: Instant) {
        let timeout = self.plan.timeout;
        let expired: Vec<u64> = l
            .inflight
            .iter()
            .filter(|(_, p)| now >= p.sent + timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = l.inflight.remove(&id) {
                self.send(Msg::Err {
                    key: format!("no answer within {} ms", timeout.as_millis()),
                    kind: exit::ExitKind::Connect,
                    up: p.up,
                    at: now,
                });
            }
        }
    }

    /// Counts what was in flight as failed, closes, and either schedules a reconnect or, for
    /// an error that makes reconnecting pointless, stops the run.
    fn lose(&mut self, l: &mut Link, mut loss: Loss, now: Instant) {
        let connecting = !matches!(l.phase, Phase::Ready);
        if !loss.whole {
            let what = if connecting {
                "connect failed"
            } else {
                "connection lost"
            };
            loss.key = format!("{what}: {}", loss.key);
        }
        log::debug!(
            "connection {} ({}): {}",
            l.conn_no,
            self.plan.connector.addr(l.server),
            loss.key
        );
        let n_servers = self.plan.connector.servers.len();
        // Skipped over to the next server of the round: not (yet) a failed attempt.
        let skip = connecting && loss.fatal.is_none() && l.round_tried + 1 < n_servers;
        if connecting && !skip {
            self.send(Msg::Err {
                key: loss.key.clone(),
                kind: loss.kind,
                up: 0,
                at: now,
            });
        }
        // What was in flight is sent again on the next connection, as the same requests,
        // unless this was their last allowed try or the run ends here.
        let mut lost: Vec<(u64, Pending)> = l.inflight.drain().collect();
        lost.sort_by_key(|(id, _)| *id);
        for (_, mut p) in lost {
            // (At most MAX_ATTEMPTS tries; the last loss is tallied under its own key.)
            let again = loss.fatal.is_none() && p.tries.after_loss(now) != Next::GiveUp;
            if again {
                l.resend.push_back((p.n, p.intended, p.tries));
                l.resend_why = loss.key.clone();
            } else {
                let _ = self.tx.send(Msg::Err {
                    key: loss.key.clone(),
                    kind: loss.kind,
                    up: p.up,
                    at: now,
                });
            }
        }
        if let Some(r) = l.planned.take() {
            // Chosen but not sent: it goes first next time, with its tries unchanged.
            l.resend.push_front(r);
        }
        l.upload = None;
        self.close(l);
        if let Some(e) = loss.fatal {
            let mut fatal = self.plan.fatal.lock().unwrap_or_else(|p| p.into_inner());
            fatal.get_or_insert_with(|| self.plan.connector.failure(&e));
            self.plan.stop.store(true, Ordering::Relaxed);
            self.abandon(l, &loss.key, loss.kind, now);
            l.phase = Phase::Done;
            return;
        }
        if !connecting {
            // A working connection broke: reconnect at once, to the next server of the list
            // first, then back off if a whole round fails.
            self.fail_over(l);
            l.phase = Phase::Idle { at: now };
            return;
        }
        if skip {
            l.round_tried += 1;
            l.server = failover::next_after(l.server, n_servers);
            l.phase = Phase::Idle { at: now };
            return;
        }
        // A whole round failed: the next one starts where this one did, after the backoff.
        l.round_tried = 0;
        l.server = l.round_start;
        match l.retry.next_delay_after(now, self.jitter.unit(), loss.hint) {
            Some(mut delay) => {
                if let Some(end) = self.plan.end() {
                    delay = delay.min(end.saturating_duration_since(now));
                }
                l.phase = Phase::Idle { at: now + delay };
            }
            None => {
                log::warn!("connection {}: giving up: {}", l.conn_no, loss.key);
                self.abandon(l, &loss.key, loss.kind, now);
                l.phase = Phase::Done;
            }
        }
    }

    /// The connection ends for good: the requests it lost and would have sent again fail
    /// with the reason (one chosen but never sent is just dropped, as a run's end drops it).
    fn abandon(&self, l: &mut Link, key: &str, kind: exit::ExitKind, now: Instant) {
        for (_, _, tries) in l.resend.drain(..) {
            if tries.attempts > 0 {
                let _ = self.tx.send(Msg::Err {
                    key: key.to_string(),
                    kind,
                    up: 0,
                    at: now,
                });
            }
        }
    }

    /// The connection's server went away: a new round, from the server after it.
    fn fail_over(&self, l: &mut Link) {
        l.server = failover::next_after(l.server, self.plan.connector.servers.len());
        l.round_start = l.server;
        l.round_tried = 0;
    }

    /// Drops the socket and session; a connection that was up is reported down.
    fn close(&mut self, l: &mut Link) {
        if let Some(mut s) = l.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        l.conn = None;
        l.want_write = false;
        if matches!(l.phase, Phase::Ready) {
            self.send(Msg::ConnDown);
            l.phase = Phase::Idle { at: Instant::now() };
        }
    }
}

fn io_error(e: &std::io::Error) -> NpError {
    NpError {
        status: ffi::NP_IO,
        remote: None,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Mutex;

    use super::*;
    use crate::exit::ExitKind;
    use crate::retry::MAX_ATTEMPTS;
    use crate::test_server::SilentServer;

    #[test]
    fn a_silent_server_is_given_up_by_the_connections_timer() {
        let dir = std::env::temp_dir().join(format!("imgclient-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = SilentServer::start(&dir);
        let dead_after = Duration::from_millis(150);
        let connector = server.connector(&dir, Duration::from_millis(40), dead_after);
        // One connection, one PING request, and a per-request deadline far beyond the
        // dead-peer time: only the connection's own timer can end the wait.
        let plan = Arc::new(Plan {
            connector,
            ops: vec![BenchOp::Ping],
            images: Vec::new(),
            zipf: None,
            conns: 1,
            mode: Mode::Closed,
            start: Instant::now(),
            duration: None,
            max_requests: Some(1),
            ramp: Duration::ZERO,
            window: 1,
            timeout: Duration::from_secs(600),
            claimed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
        });
        plan.connector.remember_key(0, server.key);
        let (tx, rx) = crossbeam_channel::unbounded();
        // Returns once the connection has nothing left to do.
        run(plan.clone(), vec![0], tx);
        let msgs: Vec<Msg> = rx.try_iter().collect();
        let errors: Vec<(&str, ExitKind)> = msgs
            .iter()
            .filter_map(|m| match m {
                Msg::Err { key, kind, .. } => Some((key.as_str(), *kind)),
                _ => None,
            })
            .collect();
        // The lost request was sent again on a new connection each time, as the same
        // request, until its tries ran out: one error, not one per connection.
        let key = format!("connection lost: no answer from the server for {dead_after:?}");
        assert_eq!(errors, vec![(key.as_str(), ExitKind::Connect)], "{msgs:?}");
        let sent = server
            .pings
            .lock()
            .unwrap()
            .iter()
            .filter(|&&id| id != 0)
            .count();
        assert_eq!(sent, MAX_ATTEMPTS as usize, "one try per connection");
        assert!(
            !msgs.iter().any(|m| matches!(m, Msg::Ok { .. })),
            "{msgs:?}"
        );
        assert!(plan.fatal.lock().unwrap().is_none());
        // The request (ids 1.., one per try) and the connection's heartbeats (id 0) reached
        // the server; the heartbeats were sent because the loop woke for the connection's
        // timers.
        let pings = server.pings.lock().unwrap().clone();
        assert!(pings.contains(&1), "{pings:?}");
        assert!(pings.contains(&0), "{pings:?}");
        assert!(
            pings.iter().all(|&id| id <= MAX_ATTEMPTS as u64),
            "{pings:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
