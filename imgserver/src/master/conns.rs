//! Client connections in the master: accept and admission (the connection limit), the slab of
//! per-connection protocol state with generations, reading, driving libnetproto's state
//! machine, writing, and the handshake, idle and slow-client timeouts; also the loading of the
//! server key and users. This is the only part of the master that uses `netproto_sys` (the
//! others see only its `ErrorCode`, re-exported by `iface`).
//!
//! Trust boundary: the network. Every byte goes through libnetproto (`Conn`), which validates
//! framing, crypto and login; this part decides admission and enforces time limits so a peer
//! that stalls cannot hold resources forever. What a logged-in client asks for is handed to a
//! [`Requests`] handler as a [`Request`]; what to tell a client arrives as a [`Reply`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use netproto_sys::{
    limits, ErrorCode, Event, ReadStatus, ResultInfo, ServerConfig, ServerConn, ServerParams, Timer,
};

use super::iface::{Chunk, ConnRef, Reply, ResultMeta, Submission};
use crate::cli::ServeArgs;
use crate::state;
use crate::stats::{self, Stats};

/// Poll tokens of connections: `CLIENT_BASE + slab index`.
const CLIENT_BASE: usize = 1 << 20;

/// Loads the server key and the users file (at start and on SIGHUP).
pub fn load_config(args: &ServeArgs, dir: &Path) -> Result<ServerConfig, String> {
    let params = ServerParams {
        max_chunk: limits::MAX_CHUNK_DATA as u32,
        max_upload: args.max_upload,
        max_in_flight: args.max_in_flight,
    };
    let mut cfg =
        ServerConfig::new(&state::key_path(dir), params).map_err(|e| format!("server key: {e}"))?;
    // The connections keep these deadlines themselves (libnetproto's timers); this part only
    // asks them, on its sweep, whether one has passed.
    let on = |secs: f64| (secs > 0.0).then(|| ServeArgs::secs(secs));
    cfg.set_timeouts(
        on(args.handshake_timeout),
        on(args.idle_timeout),
        on(args.slow_client_timeout),
    )
    .map_err(|e| format!("connection timeouts: {e}"))?;
    cfg.set_frame_timeout(on(args.frame_timeout))
        .map_err(|e| format!("frame timeout: {e}"))?;
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

/// Logs the server key's creation and its fingerprint (at start).
pub fn log_key(cfg: &ServerConfig, dir: &Path) {
    if cfg.key_created() {
        info!("created server key {}", state::key_path(dir).display());
    }
    info!(
        "server key fingerprint {}",
        netproto_sys::fingerprint(cfg.public_key())
    );
}

/// The limits this part enforces (from the command line). The timeouts are enforced by each
/// connection's own timers (set on the [`ServerConfig`] by [`load_config`]); they are here for
/// the log lines that report them.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_conns: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub slow_client_timeout: Duration,
    pub frame_timeout: Duration,
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
    stream: TcpStream,
    conn: ServerConn,
    peer: SocketAddr,
    logged_in: bool,
    /// The user it logged in as, by index in `Conns::user_ids` (for the job queue's rounds).
    user: u32,
    /// Flush the pending output, then close.
    closing: bool,
    want_write: bool,
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
    /// Connections closed since the last `take_closed`: their jobs are to be abandoned.
    closed: Vec<ConnRef>,
    /// User names that logged in, as small numbers (bounded by the users file's size).
    user_ids: HashMap<String, u32>,
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
            closed: Vec::new(),
            user_ids: HashMap::new(),
        }
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
            .all(|c| c.conn.pending_output().is_empty())
    }

    pub fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
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
            let g = &self.stats.get().global;
            let now = Instant::now();
            let conn = match ServerConn::new(&self.server_cfg, now) {
                Ok(c) => c,
                Err(e) => {
                    warn!("connection from {peer}: {e}");
                    continue;
                }
            };
            if self.open >= self.limits.max_conns {
                // Refuse cleanly: a clear ERROR the client library understands, then close.
                stats::inc(&g.connections_refused);
                let mut conn = conn;
                let _ = conn.send_error(
                    0,
                    ErrorCode::TooManyConnections,
                    &format!(
                        "server is at its limit of {} connections",
                        self.limits.max_conns
                    ),
                );
                let _ = conn.write_fd(stream.as_fd(), now);
                debug!("refused {peer}: too many connections");
                continue;
            }
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
                continue;
            }
            let gen = self.next_gen;
            self.next_gen += 1;
            self.clients[k] = Some(Client {
                gen,
                stream,
                conn,
                peer,
                logged_in: false,
                user: 0,
                closing: false,
                want_write: false,
            });
            self.open += 1;
            stats::inc(&g.connections_accepted);
            stats::inc(&g.connections_open);
            debug!("conn {gen} from {peer}");
        }
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
        if readable {
            self.read(k, h);
        }
        if writable || readable {
            self.flush(k);
        }
    }

    fn read(&mut self, k: usize, h: &mut impl Requests) {
        loop {
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            if c.closing {
                return;
            }
            match c.conn.read_fd(c.stream.as_fd(), Instant::now()) {
                Ok(ReadStatus::Data(n)) => {
                    stats::add(&self.stats.get().global.bytes_in, n as u64);
                    self.process(k, h);
                }
                Ok(ReadStatus::Full) => self.process(k, h),
                Ok(ReadStatus::WouldBlock) => return,
                Ok(ReadStatus::Eof) => {
                    self.process(k, h);
                    if let Some(c) = self.clients[k].as_mut() {
                        c.closing = true;
                    }
                    return;
                }
                Err(e) => {
                    debug!("conn read: {e}");
                    self.close(k, "read error");
                    return;
                }
            }
        }
    }

    /// Drains every complete event from connection `k`.
    fn process(&mut self, k: usize, h: &mut impl Requests) {
        let g = &self.stats.get().global;
        loop {
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            let gen = c.gen;
            let conn = ConnRef { index: k, gen };
            let (req, reply) = match c.conn.poll_event() {
                Ok(None) => return,
                Err(e) => {
                    // Fatal for this connection; libnetproto queued an ERROR for the peer.
                    if c.logged_in {
                        stats::inc(&g.error_protocol);
                    } else if e.is(netproto_sys::ffi::NP_AUTH_FAILED) {
                        stats::inc(&g.logins_failed);
                        info!("conn {gen} from {}: login failed", c.peer);
                    }
                    debug!("conn {gen}: {e}");
                    c.closing = true;
                    return;
                }
                Ok(Some(ev)) => match ev {
                    Event::LoggedIn { user } => {
                        c.logged_in = true;
                        let next = self.user_ids.len() as u32;
                        c.user = *self.user_ids.entry(user.to_string()).or_insert(next);
                        stats::inc(&g.logins_ok);
                        info!("conn {gen} from {}: user {user} logged in", c.peer);
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
                    _ => (0, None),
                },
            };
            if let Some(reply) = reply {
                if let Err(e) = queue_reply(c, req, reply) {
                    warn!("conn {gen}: {e}");
                    c.closing = true;
                }
            }
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
        if let Err(e) = queue_reply(c, req, reply) {
            warn!("conn {}: sending result: {e}", conn.gen);
        }
        self.flush(conn.index);
    }

    /// Writes what connection `k` has pending; manages write interest; closes when done.
    pub fn flush(&mut self, k: usize) {
        let Some(c) = self.clients.get_mut(k).and_then(|c| c.as_mut()) else {
            return;
        };
        let before = c.conn.pending_output().len();
        let pending = match c.conn.write_fd(c.stream.as_fd(), Instant::now()) {
            Ok(p) => p,
            Err(e) => {
                debug!("conn {} write: {e}", c.gen);
                self.close(k, "write error");
                return;
            }
        };
        if pending < before {
            stats::add(
                &self.stats.get().global.bytes_out,
                (before - pending) as u64,
            );
        }
        if (c.closing || c.conn.is_closed()) && pending == 0 {
            self.close(k, "closed");
            return;
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
        stats::dec(&self.stats.get().global.connections_open);
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
    /// connection decides and queues the ERROR; this part logs, closes and counts.
    pub fn sweep_timeouts(&mut self, now: Instant) {
        for k in 0..self.clients.len() {
            let Some(c) = self.clients[k].as_mut() else {
                continue;
            };
            if c.conn.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let (gen, peer) = (c.gen, c.peer);
            match c.conn.handle_timeout(now) {
                None => {}
                Some(Timer::SlowPeer) => {
                    info!(
                        "conn {gen} from {peer}: not reading its output for {:.0} s; closing",
                        self.limits.slow_client_timeout.as_secs_f64()
                    );
                    self.close(k, "slow client");
                }
                Some(Timer::SlowFrame) => {
                    info!(
                        "conn {gen} from {peer}: a frame took over {:.1} s to arrive; closing",
                        self.limits.frame_timeout.as_secs_f64()
                    );
                    c.closing = true;
                    self.flush(k);
                }
                Some(t @ (Timer::Handshake | Timer::Idle)) => {
                    let limit = if t == Timer::Handshake {
                        self.limits.handshake_timeout
                    } else {
                        self.limits.idle_timeout
                    };
                    debug!(
                        "conn {gen}: {} timeout ({:.0} s)",
                        t.name(),
                        limit.as_secs_f64()
                    );
                    c.closing = true;
                    self.flush(k);
                }
                // Client-side timers; a server connection has none.
                Some(Timer::Heartbeat | Timer::DeadPeer) => {}
            }
        }
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

/// Queues `reply` on a connection's output.
fn queue_reply(c: &mut Client, req: u64, reply: Reply<'_>) -> netproto_sys::Result<()> {
    let gen = c.gen;
    match reply {
        Reply::Rejected { code, text } => {
            debug!("conn {gen} req {req}: rejected {}: {text}", code.name());
            c.conn.reject_request(req, code, &text)
        }
        Reply::Busy { retry_after_ms } => c.conn.send_busy(req, retry_after_ms),
        Reply::Failed { code, text } => c.conn.send_error(req, code, &text),
        Reply::Result { meta, output } => {
            send_result(&mut c.conn, req, &result_info(&meta), output)
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
    }
}
