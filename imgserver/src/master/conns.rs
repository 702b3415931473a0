//! Client connections in the master: accept and admission (the connection limits and the
//! admission policy of `admission.rs`), the slab of per-connection protocol state with
//! generations, reading in bounded batches, driving libnetproto's state machine, writing with
//! backpressure, and the handshake, idle and slow-client timeouts; also the loading of the
//! server key and users. This is the only part of the master that uses `netproto_sys` (the
//! others see only its `ErrorCode`, re-exported by `iface`).
//!
//! Trust boundary: the network. Every byte goes through libnetproto (`Conn`), which validates
//! framing, crypto and login; this part decides admission and enforces time limits so a peer
//! that stalls cannot hold resources forever. What a logged-in client asks for is handed to a
//! [`Requests`] handler as a [`Request`]; what to tell a client arrives as a [`Reply`].
//! With --proxy-protocol, what comes before the first frame (a PROXY v2 header from a listed
//! source, or the look at an unlisted source's first bytes) is handled here over
//! `proxy_header.rs`, and admission then sees the carried address.
//!
//! Fairness: a connection is served at most `max_events_per_turn` frames per turn of the
//! event loop; one with more waits in `deferred` and is served again next turn (mio is
//! edge-triggered, so a connection left with bytes in its socket would otherwise never be
//! woken again). One whose unsent output passes `max_pending_output` is not read from until
//! the peer takes it (TCP's own backpressure then reaches the peer); if it takes none of it
//! for the slow-client timeout, its connection's timer closes it. Accepts are batched too.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn, Level};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use netproto_sys::{
    limits, ErrorCode, Event, Probe, ReadStatus, ResultInfo, ServerConfig, ServerConn,
    ServerParams, Timer,
};

use super::admission::{Admission, AdmissionLimits, Refusal, Source, Verdict};
use super::conn_log::{self, ConnLog, Who};
use super::iface::{Chunk, ConnRef, Reply, ResultMeta, Submission};
use super::proxy_header::{self, Carried, Preamble, ProxyFrom, Sniff, Step};
use crate::cli::ServeArgs;
use crate::state;
use crate::stats::{self, Stats};

/// Poll tokens of connections: `CLIENT_BASE + slab index`.
const CLIENT_BASE: usize = 1 << 20;

/// A streamed result is topped up while less than this is queued on its connection: enough
/// to keep a fast socket busy between two writable events, little enough that 10 large
/// results in flight cost the master a few MB, not their size.
const STREAM_QUEUE: usize = 256 * 1024;

/// After this many connections closed since the last trim (or went quiet in one second and
/// gave back their buffers), the master hands freed heap back to the kernel (glibc keeps it
/// otherwise: 10,000 closed connections left 60 MB resident).
const TRIM_AFTER_CLOSES: usize = 256;

/// How often the admission tables drop what they no longer need.
const ADMISSION_SWEEP: Duration = Duration::from_secs(1);

/// Loads the server key and the users file (at start and on SIGHUP).
pub fn load_config(args: &ServeArgs, dir: &Path) -> Result<ServerConfig, String> {
    let params = ServerParams {
        max_chunk: limits::MAX_CHUNK_DATA as u32,
        max_upload: args.max_upload,
        max_in_flight: args.max_in_flight,
    };
    let key = state::key_path(dir, args.key_file.as_deref());
    // The library's error names the file.
    let mut cfg = ServerConfig::new(&key, params).map_err(|e| format!("server key: {e}"))?;
    // The connections keep these deadlines themselves (libnetproto's timers); this part only
    // asks them, on its sweep, whether one has passed.
    let on = ServeArgs::limit;
    cfg.set_timeouts(
        on(args.handshake_timeout),
        on(args.idle_timeout),
        on(args.slow_client_timeout),
    )
    .map_err(|e| format!("connection timeouts: {e}"))?;
    cfg.set_frame_timeout(on(args.frame_timeout))
        .map_err(|e| format!("frame timeout: {e}"))?;
    cfg.set_hello_timeout(on(args.hello_timeout))
        .map_err(|e| format!("hello timeout: {e}"))?;
    // PING and STATS are answered by the library (PONG) or at once; it also holds them to
    // the request rate, answering RATE_LIMITED itself.
    cfg.set_request_rate(args.request_rate, args.request_burst)
        .map_err(|e| format!("request rate: {e}"))?;
    let users_path = state::users_path(dir, args.users_file.as_deref());
    let users = state::read_users(&users_path)
        .map_err(|e| format!("users file {}: {e}", users_path.display()))?;
    for (name, verifier) in &users {
        cfg.add_user(name, verifier)
            .map_err(|e| format!("users file: user {name}: {e}"))?;
    }
    if users.is_empty() {
        warn!(
            "no users in {}: nobody can log in (add one with `imgserver user add NAME`)",
            users_path.display()
        );
    }
    Ok(cfg)
}

/// Logs the server key's creation, its fingerprint and its file (at start).
pub fn log_key(cfg: &ServerConfig, args: &ServeArgs, dir: &Path) {
    let key = state::key_path(dir, args.key_file.as_deref());
    if cfg.key_created() {
        info!("created server key {}", key.display());
    }
    info!(
        "server key fingerprint {} ({})",
        netproto_sys::fingerprint(cfg.public_key()),
        key.display()
    );
}

/// The limits this part enforces (from the command line). The timeouts and the request rate
/// are enforced by each connection itself (set on the [`ServerConfig`] by [`load_config`]);
/// the timeouts are here for the log lines that report them.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_conns: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub slow_client_timeout: Duration,
    pub frame_timeout: Duration,
    pub hello_timeout: Duration,
    /// Unsent output (job results not counted) above which a connection is not read.
    pub max_pending_output: usize,
    /// Frames handled per connection per loop turn.
    pub max_events_per_turn: usize,
    /// Connections accepted per loop turn.
    pub max_accepts_per_turn: usize,
    /// Cheap requests per second per connection (enforced by the connection; for log lines).
    pub request_rate: u32,
    pub admission: AdmissionLimits,
    /// How many lines one source may cause (`log_limit.rs`).
    pub log_budget: super::log_limit::LogBudget,
}

/// What a logged-in client asks for, borrowed from the connection's receive buffer.
#[derive(Debug)]
pub enum Request<'a> {
    /// JOB_SUBMIT with the first chunk of the upload.
    Submit(Submission<'a>),
    /// JOB_DATA: a further chunk.
    Data(Chunk<'a>),
    /// STATS.
    Stats,
}

/// Whoever acts on requests (the event loop, over the jobs part). The data a request borrows
/// must be copied before returning; a returned reply is sent at once.
pub trait Requests {
    fn request(&mut self, conn: ConnRef, r: Request<'_>) -> Option<Reply<'static>>;
}

struct Client {
    gen: u64,
    /// When it was accepted (which of the pre-login timers fired: the HELLO's or the whole
    /// handshake's).
    accepted: Instant,
    stream: TcpStream,
    conn: ServerConn,
    /// The client: the peer, or the address its proxy's PROXY header carried.
    peer: SocketAddr,
    /// The proxy's own address, when a header carried another.
    via: Option<SocketAddr>,
    /// Before its first protocol byte (`proxy_header.rs`).
    preamble: Preamble,
    source: Source,
    logged_in: bool,
    /// The user it logged in as, by index in `Conns::user_ids` (for the job queue's rounds).
    user: u32,
    /// The user's name once logged in (for log lines).
    user_name: Option<String>,
    /// Counted by admission as not logged in (until it logs in or closes).
    unsettled: bool,
    /// Flush the pending output, then close.
    closing: bool,
    want_write: bool,
    /// Not read from: its output is over the cap; served again once it drains.
    paused: bool,
    /// In `deferred`: has frames (or socket bytes) left for the next turn.
    deferred: bool,
    /// Bytes of job results queued and not yet known to be written: exempt from the output
    /// cap (results are bounded by --max-in-flight, and a client uploading its next job
    /// while its last result is still on the way must not be stalled). Written bytes are
    /// taken off this first, so it never exceeds the result bytes really pending.
    result_bytes: usize,
    /// Read from or written to since the last once-a-second sweep; one that was not has its
    /// buffers given back (an idle connection then holds none; a busy one keeps its own).
    active: bool,
    /// Its buffers were given back and it has been quiet since.
    shrunk: bool,
    /// Results being read from their output memfds, a chunk at a time as the socket drains
    /// (the front one is read first; their frames may interleave with other replies').
    streams: VecDeque<Streaming>,
}

/// A result too large for a slot (or a variant's), on its way from the worker's output memfd
/// to the client; or a reply that must wait behind such a stream of its request.
struct Streaming {
    req: u64,
    what: Queued,
}

enum Queued {
    Stream {
        file: Arc<File>,
        /// What JOB_RESULT / VARIANT_RESULT says; `total_len` is how much is read from `file`.
        meta: ResultMeta,
        /// Bytes queued so far (the first frame's chunk included).
        sent: u64,
        /// The variant's index for a VARIANT_RESULT, `None` for a JOB_RESULT.
        variant: Option<u8>,
    },
    /// An ERROR (`variant: None`) or VARIANT_ERROR for a request whose earlier variant is
    /// still streaming: the protocol forbids cutting into that stream (PROTOCOL 10.7).
    Error {
        variant: Option<u8>,
        code: ErrorCode,
        text: String,
    },
}

impl Client {
    /// The connection, for log lines.
    fn who(&self) -> Who<'_> {
        Who {
            conn: Some(self.gen),
            peer: self.peer,
            user: self.user_name.as_deref(),
        }
    }

    /// Pending output that counts against the cap.
    fn counted_output(&self) -> usize {
        self.conn
            .pending_output()
            .len()
            .saturating_sub(self.result_bytes)
    }
}

/// How a batch of events ended.
enum Batch {
    /// No complete frame is buffered: read more.
    NeedInput,
    /// The connection is closing, closed or paused: stop here.
    Stop,
    /// The turn's budget is used up: continue next turn.
    Budget,
}

/// The listener and the slab of connections.
pub struct Conns {
    registry: Registry,
    listener: Option<TcpListener>,
    server_cfg: ServerConfig,
    stats: Stats,
    limits: ConnLimits,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    next_gen: u64,
    open: usize,
    /// The last accept() failed for lack of resources; retry on the next sweep.
    accept_stalled: bool,
    /// The last accept batch stopped at its budget: accept more next turn.
    accept_more: bool,
    /// Connections with work left for the next turn (slab index and generation).
    deferred: Vec<(usize, u64)>,
    admission: Admission,
    last_admission_sweep: Instant,
    log: ConnLog,
    /// Connections closed since the last `take_closed`: their jobs are to be abandoned.
    closed: Vec<ConnRef>,
    /// User names that logged in, as small numbers (bounded by the users file's size).
    user_ids: HashMap<String, u32>,
    /// What a PROBE is answered with (the master's readiness, set every turn of its loop).
    probe: Probe,
    /// Connections closed since the heap was last trimmed (`trim_memory`).
    closed_since_trim: usize,
    /// One chunk's buffer for reading streamed results.
    chunk: Vec<u8>,
    /// With --proxy-protocol: the sources whose connections begin with a PROXY header.
    proxy_from: Option<ProxyFrom>,
}

impl Conns {
    pub fn new(
        registry: Registry,
        server_cfg: ServerConfig,
        stats: Stats,
        limits: ConnLimits,
    ) -> Conns {
        Conns {
            registry,
            listener: None,
            server_cfg,
            stats,
            limits,
            clients: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            open: 0,
            accept_stalled: false,
            accept_more: false,
            deferred: Vec::new(),
            admission: Admission::new(limits.admission),
            last_admission_sweep: Instant::now(),
            log: ConnLog::new(limits.log_budget),
            closed: Vec::new(),
            user_ids: HashMap::new(),
            probe: Probe::NotReady,
            closed_since_trim: 0,
            chunk: Vec::new(),
            proxy_from: None,
        }
    }

    /// With --proxy-protocol: connections from `from` begin with a PROXY v2 header (and any
    /// other that does is refused).
    pub fn set_proxy_from(&mut self, from: Option<ProxyFrom>) {
        self.proxy_from = from;
    }

    /// The server's readiness, for PROBE: ready with a worker ready, draining once stopping.
    pub fn set_readiness(&mut self, worker_ready: bool, draining: bool) {
        self.probe = match (draining, worker_ready) {
            (true, _) => Probe::Draining,
            (false, true) => Probe::Ready,
            (false, false) => Probe::NotReady,
        };
    }

    /// Starts accepting on `listener` (registered under `token`).
    pub fn listen(&mut self, mut listener: TcpListener, token: Token) -> std::io::Result<()> {
        self.registry
            .register(&mut listener, token, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(())
    }

    /// Closes the listener (shutdown: no new connections).
    pub fn stop_listening(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
        }
        self.accept_more = false;
    }

    /// New users for new connections (SIGHUP).
    pub fn set_config(&mut self, cfg: ServerConfig) {
        self.server_cfg = cfg;
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// The connection slot `token` stands for.
    pub fn index_of(token: Token) -> Option<usize> {
        token.0.checked_sub(CLIENT_BASE)
    }

    /// Connections closed since the last call; the caller abandons their jobs.
    pub fn take_closed(&mut self) -> Vec<ConnRef> {
        std::mem::take(&mut self.closed)
    }

    /// Whether every connection's output has been written.
    pub fn all_flushed(&self) -> bool {
        self.clients
            .iter()
            .flatten()
            .all(|c| c.conn.pending_output().is_empty() && c.streams.is_empty())
    }

    /// Whether work was left for the next turn (a burst beyond its batch, accepts beyond
    /// theirs): the loop must not sleep before [`run_deferred`](Self::run_deferred).
    pub fn has_deferred(&self) -> bool {
        self.accept_more || !self.deferred.is_empty()
    }

    /// One turn's worth of what was left over: more accepts, and every connection deferred
    /// before this turn (each with a fresh batch; one that fills it again waits once more).
    pub fn run_deferred(&mut self, h: &mut impl Requests) {
        if self.accept_more {
            self.accept();
        }
        for (k, gen) in std::mem::take(&mut self.deferred) {
            match self.clients.get_mut(k).and_then(|c| c.as_mut()) {
                Some(c) if c.gen == gen => c.deferred = false,
                _ => continue,
            }
            self.serve(k, h);
            self.flush(k);
        }
    }

    /// Accepts up to a batch of connections, each admitted or refused with a clear ERROR.
    pub fn accept(&mut self) {
        let mut budget = match self.limits.max_accepts_per_turn {
            0 => usize::MAX,
            n => n,
        };
        self.accept_more = false;
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            if budget == 0 {
                // Edge-triggered: the rest of the backlog gets no new event. Come back.
                self.accept_more = true;
                return;
            }
            budget -= 1;
            let (stream, peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: never exit; retry from the periodic sweep.
                    warn!("accept: {e}");
                    self.accept_stalled = true;
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            self.admit(stream, peer, Instant::now());
        }
    }

    /// A freshly accepted connection: refused at once (before any key exchange), or given a
    /// slot. One from a proxy is admitted for the address its header carries, once it is read
    /// (`proxy_header_done`): until then it holds a slot and its HELLO timer, nothing else.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        let source = Source::of(peer.ip());
        let preamble = Preamble::for_peer(self.proxy_from.as_ref(), peer.ip());
        let waits = preamble.awaits_header();
        let refusal = if self.open >= self.limits.max_conns {
            Some(None)
        } else if waits {
            None
        } else {
            self.admission.admit(source, now).err().map(Some)
        };
        if let Some(why) = refusal {
            self.refuse(stream, peer, source, why, now);
            return;
        }
        let g = &self.stats.get().global;
        let conn = match ServerConn::new(&self.server_cfg, now) {
            Ok(c) => c,
            Err(e) => {
                warn!("connection from {peer}: {e}");
                if !waits {
                    self.admission.settled(source);
                }
                return;
            }
        };
        let k = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        if let Err(e) =
            self.registry
                .register(&mut stream, Token(CLIENT_BASE + k), Interest::READABLE)
        {
            warn!("register {peer}: {e}");
            self.free.push(k);
            if !waits {
                self.admission.settled(source);
            }
            return;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        self.clients[k] = Some(Client {
            gen,
            accepted: now,
            stream,
            conn,
            peer,
            via: None,
            preamble,
            source,
            logged_in: false,
            unsettled: !waits,
            user: 0,
            user_name: None,
            closing: false,
            want_write: false,
            paused: false,
            deferred: false,
            result_bytes: 0,
            active: true,
            shrunk: false,
            streams: VecDeque::new(),
        });
        self.open += 1;
        stats::inc(&g.connections_open);
        if waits {
            debug!("conn {gen} from {peer}: waiting for its PROXY header");
        } else {
            stats::inc(&g.connections_accepted);
            stats::inc(&g.connections_unauth);
            debug!("conn {gen} from {peer}");
        }
    }

    /// Turns a new connection away with a clear ERROR (`None`: the connection limit), logged
    /// at most once a second per kind, then closes it without reading what it sent.
    fn refuse(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        source: Source,
        why: Option<Refusal>,
        now: Instant,
    ) {
        let g = &self.stats.get().global;
        stats::inc(&g.connections_refused);
        let (kind, code, text) = match why {
            None => (
                "too many connections",
                ErrorCode::TooManyConnections,
                format!(
                    "server is at its limit of {} connections",
                    self.limits.max_conns
                ),
            ),
            Some(Refusal::Unauth { limit }) => {
                stats::inc(&g.refused_unauth);
                (
                    "too many connections not logged in",
                    ErrorCode::TooManyConnections,
                    format!("server is at its limit of {limit} connections not logged in"),
                )
            }
            Some(Refusal::SourceUnauth { limit }) => {
                stats::inc(&g.refused_unauth);
                (
                    "too many connections not logged in from one address",
                    ErrorCode::TooManyConnections,
                    format!("{source} has its limit of {limit} connections not logged in"),
                )
            }
            Some(Refusal::Rate { .. }) => {
                stats::inc(&g.refused_conn_rate);
                (
                    "connecting too fast",
                    ErrorCode::RateLimited,
                    format!(
                        "{source} opens more than {} connections per second",
                        self.limits.admission.conn_rate_per_addr
                    ),
                )
            }
            Some(Refusal::LoginBlocked { .. }) => {
                stats::inc(&g.refused_login_blocked);
                (
                    "blocked for failed logins",
                    ErrorCode::RateLimited,
                    format!("too many failed logins from {source}"),
                )
            }
        };
        // A blocked source knocking again is the one security-relevant refusal.
        let level = match why {
            Some(Refusal::LoginBlocked { .. }) => Level::Warn,
            _ => Level::Info,
        };
        self.log.limited(
            level,
            source,
            Who {
                conn: None,
                peer,
                user: None,
            },
            now,
            format_args!("{kind} ({text}); refused {}", code.name()),
        );
        self.turn_away(stream, why.and_then(Refusal::retry_after), code, &text, now);
    }

    /// Sends a new connection one ERROR (RATE_LIMITED with `retry_after`) and closes it.
    fn turn_away(
        &self,
        stream: TcpStream,
        retry_after: Option<Duration>,
        code: ErrorCode,
        text: &str,
        now: Instant,
    ) {
        let Ok(mut conn) = ServerConn::new(&self.server_cfg, now) else {
            return;
        };
        let queued = match retry_after {
            Some(wait) => conn.send_rate_limited(0, millis(wait), text),
            None => conn.send_error(0, code, text),
        };
        if queued.is_ok() {
            let _ = conn.write_fd(stream.as_fd(), now);
        }
        linger_close(stream);
    }

    /// Takes connection `k` out of its slot before it was admitted (a refused PROXY header,
    /// or the carried address refused by admission), for [`turn_away`](Self::turn_away).
    fn detach(&mut self, k: usize) -> Option<Client> {
        let mut c = self.clients[k].take()?;
        let _ = self.registry.deregister(&mut c.stream);
        self.free.push(k);
        self.open -= 1;
        self.closed_since_trim += 1;
        stats::dec(&self.stats.get().global.connections_open);
        if c.unsettled {
            self.admission.settled(c.source);
            stats::dec(&self.stats.get().global.connections_unauth);
        }
        Some(c)
    }

    /// Reads what comes before connection `k`'s first protocol byte; whether protocol bytes
    /// may be read now (false: wait for more, or it was refused and is gone).
    fn preamble(&mut self, k: usize) -> bool {
        let now = Instant::now();
        let Some(c) = self.clients[k].as_mut() else {
            return false;
        };
        let outcome = match &mut c.preamble {
            Preamble::None => return true,
            Preamble::Sniff => {
                let mut first = [0u8; proxy_header::SIGNATURE.len()];
                let seen = loop {
                    match c.stream.peek(&mut first) {
                        // EOF: the protocol connection sees it as for any client.
                        Ok(0) => break Sniff::Direct,
                        Ok(n) => break proxy_header::sniff(&first[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                        Err(e) => {
                            debug!("conn {} peek: {e}", c.gen);
                            self.close(k, "read error");
                            return false;
                        }
                    }
                };
                match seen {
                    Sniff::Direct => {
                        c.preamble = Preamble::None;
                        return true;
                    }
                    // More bytes bring a new edge.
                    Sniff::Undecided => return false,
                    Sniff::Header => Err(None),
                }
            }
            Preamble::Header(r) => {
                let mut buf = [0u8; proxy_header::MAX_HEADER];
                loop {
                    // Never past the header: what follows is the protocol connection's.
                    match c.stream.read(&mut buf[..r.want()]) {
                        Ok(0) => {
                            let text = "closed before its PROXY header was complete";
                            self.log.limited(
                                Level::Info,
                                c.source,
                                c.who(),
                                now,
                                format_args!("{text}"),
                            );
                            self.close(k, text);
                            return false;
                        }
                        Ok(n) => {
                            stats::add(&self.stats.get().global.bytes_in, n as u64);
                            match r.push(&buf[..n]) {
                                Step::Incomplete => continue,
                                Step::Done { carried, .. } => break Ok(carried),
                                Step::Refused(why) => break Err(Some(why)),
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                        Err(e) => {
                            debug!("conn {} read: {e}", c.gen);
                            self.close(k, "read error");
                            return false;
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(carried) => self.proxy_header_done(k, carried, now),
            Err(why) => {
                let text = match why {
                    Some(why) => format!("--proxy-protocol: {why}"),
                    None => "a PROXY header from an address not in --proxy-from".to_string(),
                };
                self.log.limited(
                    Level::Info,
                    c.source,
                    c.who(),
                    now,
                    format_args!("{text}; refused PROTOCOL"),
                );
                stats::inc(&self.stats.get().global.connections_refused);
                if let Some(c) = self.detach(k) {
                    self.turn_away(c.stream, None, ErrorCode::Protocol, &text, now);
                }
                false
            }
        }
    }

    /// Connection `k`'s PROXY header is read: from now on it is the client the header
    /// carries (LOCAL: the proxy itself), admitted as a new connection from that address
    /// would be (the proxy's own address is never charged for its clients).
    fn proxy_header_done(&mut self, k: usize, carried: Carried, now: Instant) -> bool {
        let Some(c) = self.clients[k].as_mut() else {
            return false;
        };
        c.preamble = Preamble::None;
        match carried {
            Carried::Client(addr) => {
                c.via = Some(c.peer);
                c.peer = addr;
                c.source = Source::of(addr.ip());
                debug!(
                    "conn {} from {addr} via {} (PROXY header)",
                    c.gen,
                    c.via.unwrap_or(addr)
                );
            }
            Carried::Local => debug!("conn {} from {}: PROXY header LOCAL", c.gen, c.peer),
        }
        let (peer, source) = (c.peer, c.source);
        if let Err(why) = self.admission.admit(source, now) {
            if let Some(c) = self.detach(k) {
                self.refuse(c.stream, peer, source, Some(why), now);
            }
            return false;
        }
        c.unsettled = true;
        let g = &self.stats.get().global;
        stats::inc(&g.connections_accepted);
        stats::inc(&g.connections_unauth);
        true
    }

    /// accept() failed (EMFILE): edge-triggered epoll will not report the backlog again, so
    /// the periodic sweep retries here.
    pub fn retry_stalled_accept(&mut self) {
        if self.accept_stalled {
            self.accept_stalled = false;
            self.accept();
        }
    }

    /// Readiness of connection `k`.
    pub fn event(&mut self, k: usize, readable: bool, writable: bool, h: &mut impl Requests) {
        if self.clients.get(k).is_none_or(|c| c.is_none()) {
            return;
        }
        if writable {
            // Writing first frees room under the output cap for what reading produces.
            self.flush(k);
        }
        if readable {
            self.serve(k, h);
        }
        if readable || writable {
            self.flush(k);
        }
    }

    /// Reads and handles connection `k`'s frames, at most a batch of them this turn; stops
    /// (and is served again once its output drains) when its unsent output passes the cap.
    fn serve(&mut self, k: usize, h: &mut impl Requests) {
        if let Some(c) = self.clients[k].as_mut() {
            c.active = true;
            c.shrunk = false;
        }
        if !self.preamble(k) {
            return;
        }
        let mut budget = match self.limits.max_events_per_turn {
            0 => usize::MAX,
            n => n,
        };
        // A full buffer always holds a complete frame (it fits two), so reading again after
        // `Full` makes progress; this bounds the loop should that ever not hold.
        let mut fulls = 0;
        loop {
            match self.process(k, h, &mut budget) {
                Batch::NeedInput => {}
                Batch::Stop => break,
                Batch::Budget => {
                    self.defer(k);
                    break;
                }
            }
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            match c.conn.read_fd(c.stream.as_fd(), Instant::now()) {
                Ok(ReadStatus::Data(n)) => {
                    fulls = 0;
                    stats::add(&self.stats.get().global.bytes_in, n as u64);
                }
                Ok(ReadStatus::Full) => {
                    fulls += 1;
                    if fulls > 2 {
                        self.log.limited(
                            Level::Info,
                            c.source,
                            c.who(),
                            Instant::now(),
                            format_args!("input buffer full without a frame; closed"),
                        );
                        self.close(k, "input buffer full without a frame");
                        return;
                    }
                }
                Ok(ReadStatus::WouldBlock) => break,
                Ok(ReadStatus::Eof) => {
                    // Whatever the peer sent before its EOF is still handled (in this batch
                    // or a deferred one), then the connection closes.
                    match self.process(k, h, &mut budget) {
                        Batch::Budget => self.defer(k),
                        Batch::NeedInput | Batch::Stop => {}
                    }
                    if let Some(c) = self.clients[k].as_mut() {
                        if !c.deferred {
                            c.closing = true;
                        }
                    }
                    break;
                }
                Err(e) => {
                    debug!("conn read: {e}");
                    self.close(k, "read error");
                    return;
                }
            }
        }
    }

    /// Leaves connection `k` for the next turn.
    fn defer(&mut self, k: usize) {
        if let Some(c) = self.clients[k].as_mut() {
            if !c.deferred {
                c.deferred = true;
                self.deferred.push((k, c.gen));
                stats::inc(&self.stats.get().global.turns_deferred);
            }
        }
    }

    /// Handles connection `k`'s complete frames until none is left, the batch is used up,
    /// its output is over the cap, or it closes.
    fn process(&mut self, k: usize, h: &mut impl Requests, budget: &mut usize) -> Batch {
        let g = &self.stats.get().global;
        let cap = self.limits.max_pending_output;
        let mut blocked = None;
        let outcome = loop {
            let Some(c) = self.clients[k].as_mut() else {
                return Batch::Stop;
            };
            if c.closing || c.paused {
                break Batch::Stop;
            }
            if cap > 0 && c.counted_output() > cap {
                c.paused = true;
                stats::inc(&g.output_paused);
                debug!(
                    "conn {}: {} bytes of output unsent; not reading until they drain",
                    c.gen,
                    c.counted_output()
                );
                break Batch::Stop;
            }
            if *budget == 0 {
                break Batch::Budget;
            }
            let gen = c.gen;
            let conn = ConnRef { index: k, gen };
            if !c.logged_in {
                // A PROBE is answered from the state machine with what the master knows now.
                let _ = c.conn.set_probe_status(self.probe);
            }
            let (req, reply) = match c.conn.poll_event() {
                Ok(None) => break Batch::NeedInput,
                Err(e) => {
                    // Fatal for this connection; libnetproto queued an ERROR for the peer.
                    let now = Instant::now();
                    if e.is(netproto_sys::ffi::NP_AUTH_FAILED) && !c.logged_in {
                        stats::inc(&g.logins_failed);
                        let name = c.conn.login_name();
                        // Within the source's budget (and the server-wide one): a guessing
                        // flood, from one address or many, must not flood the log.
                        self.log.limited(
                            Level::Info,
                            c.source,
                            c.who(),
                            now,
                            format_args!("login failed for user {name}; closed"),
                        );
                        let v = self.admission.login_failed(c.source, &name, now);
                        if let Verdict::Blocked { block, failures } = v {
                            blocked = Some((c.source, block, failures));
                        }
                    } else {
                        if c.logged_in {
                            stats::inc(&g.error_protocol);
                        }
                        // Bad magic, a bad CRC or length, a frame out of place, a failed
                        // handshake: not our protocol, or not spoken right.
                        let stage = if c.logged_in { "" } else { " before login" };
                        self.log.limited(
                            Level::Info,
                            c.source,
                            c.who(),
                            now,
                            format_args!("protocol error{stage}: {e}; closed"),
                        );
                    }
                    c.closing = true;
                    break Batch::Stop;
                }
                Ok(Some(ev)) => {
                    *budget -= 1;
                    match ev {
                        Event::LoggedIn { user } => {
                            c.logged_in = true;
                            let next = self.user_ids.len() as u32;
                            c.user = *self.user_ids.entry(user.to_string()).or_insert(next);
                            if std::mem::take(&mut c.unsettled) {
                                self.admission.settled(c.source);
                                stats::dec(&g.connections_unauth);
                            }
                            stats::inc(&g.logins_ok);
                            c.user_name = Some(user.to_string());
                            let via = c.via.map(|p| format!(" via {p}")).unwrap_or_default();
                            conn_log::line(Level::Info, c.who(), format_args!("logged in{via}"));
                            (0, None)
                        }
                        // The event's data must be copied before the connection is touched
                        // again; the handler does that.
                        Event::JobSubmit {
                            id,
                            total_len,
                            spec,
                            data,
                            last,
                        } => (
                            id,
                            h.request(
                                conn,
                                Request::Submit(Submission {
                                    req: id,
                                    user: c.user,
                                    total: total_len,
                                    spec,
                                    multi: false,
                                    data,
                                    last,
                                }),
                            ),
                        ),
                        Event::JobData { id, data, last } => (
                            id,
                            h.request(
                                conn,
                                Request::Data(Chunk {
                                    req: id,
                                    data,
                                    last,
                                }),
                            ),
                        ),
                        Event::Ping { .. } => {
                            stats::inc(&g.pings);
                            (0, None)
                        }
                        Event::StatsRequest { id } => {
                            stats::inc(&g.stats_requests);
                            (id, h.request(conn, Request::Stats))
                        }
                        Event::Error { code, message, .. } => {
                            debug!("conn {gen}: peer error {code}: {message}");
                            (0, None)
                        }
                        Event::Bye => {
                            c.closing = true;
                            (0, None)
                        }
                        Event::Probe { status } => {
                            // Answered and closed by libnetproto; only counted here.
                            stats::inc(&g.probes);
                            if status == Probe::Ready.number() {
                                stats::inc(&g.probes_ready);
                            }
                            debug!("conn {gen} from {}: probe answered {status}", c.peer);
                            c.closing = true;
                            (0, None)
                        }
                        Event::RateLimited { id } => {
                            // libnetproto answered it RATE_LIMITED already.
                            stats::inc(&g.requests_rate_limited);
                            self.log.limited(
                                Level::Info,
                                c.source,
                                c.who(),
                                Instant::now(),
                                format_args!(
                                    "PING/STATS {id} over the rate of {}/s; refused RATE_LIMITED",
                                    self.limits.request_rate
                                ),
                            );
                            (0, None)
                        }
                        // A chunk of an upload already refused: nothing to do but count it
                        // against the batch, like every frame.
                        Event::Discarded { .. } => (0, None),
                        // A multi-output job (feature level 1.1): a job like any other whose
                        // spec is a variant list; its replies are the variants'.
                        Event::JobSubmitMulti {
                            id,
                            total_len,
                            variants,
                            data,
                            last,
                        } => (
                            id,
                            h.request(
                                conn,
                                Request::Submit(Submission {
                                    req: id,
                                    user: c.user,
                                    total: total_len,
                                    spec: variants,
                                    multi: true,
                                    data,
                                    last,
                                }),
                            ),
                        ),
                        _ => (0, None),
                    }
                }
            };
            if let Some(reply) = reply {
                log_reply(&mut self.log, c, req, &reply);
                if let Err(e) = queue_reply(c, req, reply) {
                    warn!("conn {gen}: {e}");
                    c.closing = true;
                }
            }
        };
        if let Some((source, block, failures)) = blocked {
            self.block(source, block, failures);
        }
        outcome
    }

    /// `source` is blocked for failed logins: logged (gated), counted, and its connections
    /// still in their handshake are told so and closed, so guesses already under way end too.
    fn block(&mut self, source: Source, block: Duration, failures: u32) {
        let now = Instant::now();
        stats::inc(&self.stats.get().global.logins_blocked);
        // Many sources failing one user name are each blocked: held to the budgets too.
        self.log.limited_source(
            Level::Warn,
            source,
            now,
            format_args!(
                "{source}: {failures} failed logins; blocked for {:.1} s (new connections refused RATE_LIMITED)",
                block.as_secs_f64()
            ),
        );
        let text = format!("too many failed logins from {source}");
        for k in 0..self.clients.len() {
            let Some(c) = self.clients[k].as_mut() else {
                continue;
            };
            if c.source != source || c.logged_in || c.closing || c.conn.is_closed() {
                continue;
            }
            let _ = c.conn.send_rate_limited(0, millis(block), &text);
            c.closing = true;
            self.flush(k);
        }
    }

    /// Sends `reply` to request `req` of `conn`, if that connection is still there, and
    /// starts writing it.
    pub fn deliver(&mut self, conn: ConnRef, req: u64, reply: Reply<'_>) {
        let Some(c) = self.clients.get_mut(conn.index).and_then(|c| c.as_mut()) else {
            return;
        };
        if c.gen != conn.gen {
            return;
        }
        let is_result = matches!(
            reply,
            Reply::Result { .. } | Reply::Streamed { .. } | Reply::Variant { .. }
        );
        log_reply(&mut self.log, c, req, &reply);
        let before = c.conn.pending_output().len();
        if let Err(e) = queue_reply(c, req, reply) {
            warn!("conn {}: sending result: {e}", conn.gen);
        }
        if is_result {
            c.result_bytes += c.conn.pending_output().len().saturating_sub(before);
        }
        self.flush(conn.index);
    }

    /// Writes what connection `k` has pending, topping up its streamed results as the socket
    /// takes them; manages write interest; resumes reading a paused connection once its
    /// output has drained to half the cap; closes when done.
    pub fn flush(&mut self, k: usize) {
        let Some(c) = self.clients.get_mut(k).and_then(|c| c.as_mut()) else {
            return;
        };
        c.active = true;
        c.shrunk = false;
        // Until the socket is full (write interest then brings us back) or every stream is
        // queued: with edge-triggered readiness, stopping earlier would stall the stream.
        let mut written = 0;
        let outcome = loop {
            if let Err(e) = top_up(c, &mut self.chunk) {
                break Err(("result unreadable", e));
            }
            let queued = c.conn.pending_output().len();
            let pending = match c.conn.write_fd(c.stream.as_fd(), Instant::now()) {
                Ok(p) => p,
                Err(e) => break Err(("write error", e.to_string())),
            };
            written += queued.saturating_sub(pending);
            if pending > 0 || c.streams.is_empty() {
                break Ok(pending);
            }
        };
        if written > 0 {
            stats::add(&self.stats.get().global.bytes_out, written as u64);
            c.result_bytes = c.result_bytes.saturating_sub(written);
        }
        let pending = match outcome {
            Ok(p) => p,
            Err((why, e)) => {
                if why == "write error" {
                    debug!("conn {} write: {e}", c.gen);
                } else {
                    warn!("conn {}: reading a result to stream: {e}; closing", c.gen);
                }
                self.close(k, why);
                return;
            }
        };
        if pending == 0 {
            c.result_bytes = 0;
        }
        if (c.closing || c.conn.is_closed()) && pending == 0 {
            self.close(k, "closed");
            return;
        }
        if c.paused && c.counted_output() <= self.limits.max_pending_output / 2 {
            // Its frames (and socket bytes) wait: serve it next turn, edge or no edge.
            c.paused = false;
            if !c.deferred {
                c.deferred = true;
                self.deferred.push((k, c.gen));
            }
        }
        let want = pending > 0;
        if want != c.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .registry
                .reregister(&mut c.stream, Token(CLIENT_BASE + k), interest)
                .is_ok()
            {
                c.want_write = want;
            }
        }
    }

    fn close(&mut self, k: usize, why: &str) {
        let Some(mut c) = self.clients[k].take() else {
            return;
        };
        let _ = self.registry.deregister(&mut c.stream);
        self.free.push(k);
        self.open -= 1;
        self.closed_since_trim += 1;
        let g = &self.stats.get().global;
        stats::dec(&g.connections_open);
        if c.unsettled {
            self.admission.settled(c.source);
            stats::dec(&g.connections_unauth);
        }
        // Jobs still uploading die with the connection; queued and running ones finish and
        // are discarded (the caller learns of the closure from `take_closed`).
        self.closed.push(ConnRef {
            index: k,
            gen: c.gen,
        });
        debug!("conn {} from {} closed: {why}", c.gen, c.peer);
    }

    /// Acts on the connections' own timers that have passed (handshake, idle, slow client;
    /// a connection also gives back grown buffers after a quiet second, unreported). The
    /// connection decides and queues the ERROR; this part logs, closes and counts. Also lets
    /// the admission tables forget what they no longer need, once a second.
    pub fn sweep_timeouts(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_admission_sweep) >= ADMISSION_SWEEP {
            self.last_admission_sweep = now;
            self.admission.sweep(now);
            let (sources, _, evicted) = self.admission.tracked();
            let g = &self.stats.get().global;
            g.admission_sources
                .store(sources as u64, std::sync::atomic::Ordering::Relaxed);
            g.admission_evictions
                .store(evicted, std::sync::atomic::Ordering::Relaxed);
            self.log.summaries(now);
            self.shrink_quiet();
            if self.closed_since_trim >= TRIM_AFTER_CLOSES {
                self.trim_memory();
            }
        }
        for k in 0..self.clients.len() {
            let Some(c) = self.clients[k].as_mut() else {
                continue;
            };
            if c.conn.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let source = c.source;
            let l = self.limits;
            match c.conn.handle_timeout(now) {
                None => {}
                Some(Timer::SlowPeer) => {
                    stats::inc(&self.stats.get().global.slow_clients_closed);
                    self.log.limited(
                        Level::Info,
                        source,
                        c.who(),
                        now,
                        format_args!(
                            "not reading its output for {:.1} s (--slow-client-timeout); closed",
                            l.slow_client_timeout.as_secs_f64()
                        ),
                    );
                    self.close(k, "slow client");
                }
                Some(Timer::SlowFrame) => {
                    self.log.limited(
                        Level::Info,
                        source,
                        c.who(),
                        now,
                        format_args!(
                            "a frame took over {:.1} s to arrive; closing (SLOW_CLIENT, --frame-timeout)",
                            l.frame_timeout.as_secs_f64()
                        ),
                    );
                    c.closing = true;
                    self.flush(k);
                }
                Some(t @ (Timer::Handshake | Timer::Idle)) => {
                    // The HELLO's own, shorter timer reports as the handshake's: which one
                    // fired shows in how long the connection has been open.
                    let age = now.saturating_duration_since(c.accepted);
                    // (A handshake timeout that is off is the command line's 0, 1 ms here.)
                    let hello = !l.hello_timeout.is_zero()
                        && (l.handshake_timeout <= Duration::from_millis(1)
                            || age < l.handshake_timeout);
                    let (name, limit, flag) = match t {
                        // The HELLO's timer covers the PROXY header before it.
                        Timer::Handshake if hello && c.preamble.awaits_header() => {
                            ("PROXY header", l.hello_timeout, "--hello-timeout")
                        }
                        Timer::Handshake if hello => ("HELLO", l.hello_timeout, "--hello-timeout"),
                        Timer::Handshake => {
                            ("handshake", l.handshake_timeout, "--handshake-timeout")
                        }
                        _ => ("idle", l.idle_timeout, "--idle-timeout"),
                    };
                    self.log.limited(
                        Level::Info,
                        source,
                        c.who(),
                        now,
                        format_args!(
                            "{name} timeout after {:.1} s ({flag}); closing",
                            limit.as_secs_f64()
                        ),
                    );
                    c.closing = true;
                    self.flush(k);
                }
                // Client-side timers; a server connection has none.
                Some(Timer::Heartbeat | Timer::DeadPeer) => {}
            }
        }
    }

    /// Gives back the buffers of every connection that neither read nor wrote since the last
    /// sweep (a second ago): an idle connection then holds no buffer at all (10,000 idle
    /// ones kept 40 MB of empty 4 KiB receive buffers), while a busy one keeps its buffers
    /// and pays nothing. libnetproto keeps a partial frame or unwritten output; a connection
    /// with a result still streaming is left alone. Freed buffers sit between live
    /// allocations, so many of them at once are handed back to the kernel too.
    fn shrink_quiet(&mut self) {
        let mut shrunk = 0;
        for c in self.clients.iter_mut().flatten() {
            if !std::mem::take(&mut c.active) && !c.shrunk && c.streams.is_empty() {
                c.conn.shrink();
                c.shrunk = true;
                shrunk += 1;
            }
        }
        if shrunk >= TRIM_AFTER_CLOSES {
            super::heap::trim();
        }
    }

    /// Gives memory back after many connections closed: the slab's free tail, then the heap
    /// pages glibc keeps (it returns freed memory to the kernel only from the top of the heap,
    /// and a few live allocations above 60 MB of freed connection state pin all of it).
    /// Measured: 10,000 closed idle connections left 60 MB resident without this and under
    /// 2 MB with it; one call over such a heap takes about a millisecond, once a second at most.
    fn trim_memory(&mut self) {
        self.closed_since_trim = 0;
        while matches!(self.clients.last(), Some(None)) {
            self.clients.pop();
        }
        let len = self.clients.len();
        self.free.retain(|&k| k < len);
        if self.clients.capacity() > 2 * len + 64 {
            self.clients.shrink_to_fit();
            self.free.shrink_to_fit();
        }
        super::heap::trim();
    }

    /// Shutdown has begun: tell every logged-in client how long it has.
    pub fn announce_shutdown(&mut self, grace_ms: u32) {
        for k in 0..self.clients.len() {
            if let Some(c) = self.clients[k].as_mut() {
                if c.conn.is_ready() {
                    let _ = c.conn.send_shutdown(grace_ms);
                }
            }
            self.flush(k);
        }
    }

    /// Shutdown is over: BYE to every logged-in client, one last flush, close everything.
    pub fn close_all(&mut self) {
        for k in 0..self.clients.len() {
            if let Some(c) = self.clients[k].as_mut() {
                if c.conn.is_ready() {
                    let _ = c.conn.send_bye();
                }
                // One last non-blocking flush; a client that cannot take it loses nothing it
                // was promised beyond the SHUTDOWN notice it already has.
                let _ = c.conn.write_fd(c.stream.as_fd(), Instant::now());
            }
            self.close(k, "server shutdown");
        }
    }
}

/// A delay in whole milliseconds for the wire, rounded up so "retry after" is never early.
fn millis(d: Duration) -> u32 {
    let ms = d.as_micros().div_ceil(1000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Closes a refused connection so that its peer reads the ERROR: our side is shut first (the
/// FIN follows the ERROR), then what the peer already sent (its HELLO) is read away, so the
/// close does not turn into a reset that could destroy the ERROR before it is read.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 2048];
    for _ in 0..4 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// The line for a reply that refuses or fails a request (refusals are the client's doing:
/// info; a poison input, a job no worker could take, an internal failure: warn). A job that
/// a worker answered with an error has its one line from the jobs part, with its timings,
/// and BUSY is routine backpressure (counted in the stats): neither is logged here.
fn log_reply(log: &mut ConnLog, c: &Client, req: u64, reply: &Reply<'_>) {
    let (level, what, code, text) = match reply {
        Reply::Rejected { code, text } => (Level::Info, "rejected", *code, text),
        Reply::Failed { code, text } => match code {
            ErrorCode::PoisonInput | ErrorCode::Timeout | ErrorCode::Internal => {
                (Level::Warn, "failed", *code, text)
            }
            ErrorCode::ShuttingDown => (Level::Info, "failed", *code, text),
            _ => return,
        },
        _ => return,
    };
    log.limited(
        level,
        c.source,
        c.who(),
        Instant::now(),
        format_args!("request {req} {what} {}: {text}", code.name()),
    );
}

/// Queues `reply` on a connection's output.
fn queue_reply(c: &mut Client, req: u64, reply: Reply<'_>) -> netproto_sys::Result<()> {
    match reply {
        Reply::Rejected { code, text } => c.conn.reject_request(req, code, &text),
        Reply::Busy { retry_after_ms } => c.conn.send_busy(req, retry_after_ms),
        Reply::Failed { code, text } if c.streams.iter().any(|s| s.req == req) => {
            c.streams.push_back(Streaming {
                req,
                what: Queued::Error {
                    variant: None,
                    code,
                    text,
                },
            });
            Ok(())
        }
        Reply::Failed { code, text } => c.conn.send_error(req, code, &text),
        Reply::VariantFailed { index, code, text } if c.streams.iter().any(|s| s.req == req) => {
            c.streams.push_back(Streaming {
                req,
                what: Queued::Error {
                    variant: Some(index),
                    code,
                    text,
                },
            });
            Ok(())
        }
        Reply::VariantFailed { index, code, text } => {
            c.conn.send_variant_error(req, index, code, &text)
        }
        Reply::Variant { index, meta, file } => {
            c.streams.push_back(Streaming {
                req,
                what: Queued::Stream {
                    file: file.0,
                    meta,
                    sent: 0,
                    variant: Some(index),
                },
            });
            Ok(())
        }
        Reply::Result { meta, output } => {
            send_result(&mut c.conn, req, &result_info(&meta), output)
        }
        Reply::Streamed { meta, file } => {
            // Queued by `top_up` as the socket drains, starting now.
            c.streams.push_back(Streaming {
                req,
                what: Queued::Stream {
                    file: file.0,
                    meta,
                    sent: 0,
                    variant: None,
                },
            });
            Ok(())
        }
        Reply::Stats(snap) => {
            let entries: Vec<(&str, u64)> = snap.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            c.conn.send_stats(req, &entries)
        }
    }
}

fn result_info(m: &ResultMeta) -> ResultInfo {
    ResultInfo {
        total_len: m.total_len,
        width: m.width,
        height: m.height,
        format: m.format,
        queue_us: m.queue_us,
        decode_us: m.decode_us,
        filter_us: m.filter_us,
        encode_us: m.encode_us,
    }
}

/// Queues chunks of `c`'s streamed results, the front one first, while less than
/// `STREAM_QUEUE` bytes wait to be written: JOB_RESULT with the first chunk, then RESULT_DATA.
/// `buf` is the one chunk's buffer they are read into. A read error is the connection's end
/// (its JOB_RESULT promised bytes that cannot come).
fn top_up(c: &mut Client, buf: &mut Vec<u8>) -> Result<(), String> {
    const CHUNK: usize = limits::MAX_CHUNK_DATA;
    while c.conn.pending_output().len() < STREAM_QUEUE {
        let Some(s) = c.streams.front_mut() else {
            return Ok(());
        };
        let req = s.req;
        let (file, meta, sent, variant) = match &mut s.what {
            Queued::Stream {
                file,
                meta,
                sent,
                variant,
            } => (file, meta, sent, *variant),
            Queued::Error {
                variant,
                code,
                text,
            } => {
                let sent = match variant {
                    Some(index) => c.conn.send_variant_error(req, *index, *code, text),
                    None => c.conn.send_error(req, *code, text),
                };
                sent.map_err(|e| e.to_string())?;
                c.streams.pop_front();
                continue;
            }
        };
        let total = meta.total_len;
        let n = (total - *sent).min(CHUNK as u64) as usize;
        buf.resize(CHUNK, 0);
        file.read_exact_at(&mut buf[..n], *sent)
            .map_err(|e| format!("output memfd at {sent}: {e}"))?;
        let last = *sent + n as u64 == total;
        let before = c.conn.pending_output().len();
        let queued = match (*sent, variant) {
            (0, None) => c.conn.send_result(req, &result_info(meta), &buf[..n], last),
            (0, Some(index)) => {
                c.conn
                    .send_variant_result(req, index, &result_info(meta), &buf[..n], last)
            }
            _ => c.conn.send_result_data(req, &buf[..n], last),
        };
        queued.map_err(|e| e.to_string())?;
        *sent += n as u64;
        c.result_bytes += c.conn.pending_output().len().saturating_sub(before);
        if last {
            c.streams.pop_front();
        }
    }
    Ok(())
}

/// Sends a result as JOB_RESULT plus RESULT_DATA chunks of at most the protocol's chunk size.
fn send_result(
    conn: &mut ServerConn,
    req: u64,
    info: &ResultInfo,
    out: &[u8],
) -> netproto_sys::Result<()> {
    const CHUNK: usize = limits::MAX_CHUNK_DATA;
    let first = out.len().min(CHUNK);
    conn.send_result(req, info, &out[..first], first == out.len())?;
    let mut off = first;
    while off < out.len() {
        let end = (off + CHUNK).min(out.len());
        conn.send_result_data(req, &out[off..end], end == out.len())?;
        off = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// imgfilters (no protocol dependency) and the wire table each state the longest op spec;
    /// they must agree, or the master would admit specs the worker channel cannot carry (or
    /// refuse ones the protocol allows).
    #[test]
    fn the_filters_and_the_wire_agree_on_the_longest_spec() {
        assert_eq!(imgfilters::MAX_SPEC_LEN, limits::MAX_SPEC_LEN);
        assert_eq!(imgfilters::MAX_VARIANTS, limits::MAX_VARIANTS);
    }
}
