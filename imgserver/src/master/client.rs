//! Client connections in the master: accept, read, drive libnetproto's state machine, write,
//! and the handshake, idle and slow-client timeouts.
//!
//! Trust boundary: the network. Every byte goes through libnetproto (`Conn`), which validates
//! framing, crypto and login; this file decides admission (connection limit) and enforces
//! time limits so a peer that stalls cannot hold resources forever.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};
use netproto_sys::{ErrorCode, Event, ReadStatus, ServerConn};

use super::{Master, CLIENT_BASE};
use crate::cli::ServeArgs;
use crate::stats;

pub struct Client {
    pub gen: u64,
    pub stream: TcpStream,
    pub conn: ServerConn,
    pub peer: SocketAddr,
    pub accepted: Instant,
    pub last_rx: Instant,
    pub last_tx_progress: Instant,
    pub logged_in: bool,
    pub user: String,
    /// Client request id → master job id, for every job not yet answered.
    pub jobs: HashMap<u64, u64>,
    /// Flush the pending output, then close.
    pub closing: bool,
    pub want_write: bool,
}

/// What handling one event asks of the connection, applied after the event's borrow ends.
pub(super) enum Action {
    None,
    Reject(u64, ErrorCode, String),
    Busy(u64, u32),
    Stats(u64),
}

impl Master {
    pub(super) fn accept(&mut self) {
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
            let conn = match ServerConn::new(&self.server_cfg, Instant::now()) {
                Ok(c) => c,
                Err(e) => {
                    warn!("connection from {peer}: {e}");
                    continue;
                }
            };
            if self.open_conns >= self.args.max_conns {
                // Refuse cleanly: a clear ERROR the client library understands, then close.
                stats::inc(&g.connections_refused);
                let mut conn = conn;
                let _ = conn.send_error(
                    0,
                    ErrorCode::TooManyConnections,
                    &format!(
                        "server is at its limit of {} connections",
                        self.args.max_conns
                    ),
                );
                let _ = conn.write_fd(stream.as_fd(), Instant::now());
                debug!("refused {peer}: too many connections");
                continue;
            }
            let k = self.free_clients.pop().unwrap_or_else(|| {
                self.clients.push(None);
                self.clients.len() - 1
            });
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(CLIENT_BASE + k),
                Interest::READABLE,
            ) {
                warn!("register {peer}: {e}");
                self.free_clients.push(k);
                continue;
            }
            let now = Instant::now();
            let gen = self.next_gen;
            self.next_gen += 1;
            self.clients[k] = Some(Client {
                gen,
                stream,
                conn,
                peer,
                accepted: now,
                last_rx: now,
                last_tx_progress: now,
                logged_in: false,
                user: String::new(),
                jobs: HashMap::new(),
                closing: false,
                want_write: false,
            });
            self.open_conns += 1;
            stats::inc(&g.connections_accepted);
            stats::inc(&g.connections_open);
            debug!("conn {gen} from {peer}");
        }
    }

    pub(super) fn client_event(&mut self, k: usize, readable: bool, writable: bool) {
        if self.clients.get(k).is_none_or(|c| c.is_none()) {
            return;
        }
        if readable {
            self.client_read(k);
        }
        if writable || readable {
            self.flush_client(k);
        }
    }

    fn client_read(&mut self, k: usize) {
        loop {
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            if c.closing {
                return;
            }
            match c.conn.read_fd(c.stream.as_fd(), Instant::now()) {
                Ok(ReadStatus::Data(n)) => {
                    c.last_rx = Instant::now();
                    stats::add(&self.stats.get().global.bytes_in, n as u64);
                    self.process_client(k);
                }
                Ok(ReadStatus::Full) => self.process_client(k),
                Ok(ReadStatus::WouldBlock) => return,
                Ok(ReadStatus::Eof) => {
                    self.process_client(k);
                    if let Some(c) = self.clients[k].as_mut() {
                        c.closing = true;
                    }
                    return;
                }
                Err(e) => {
                    debug!("conn read: {e}");
                    self.close_client(k, "read error");
                    return;
                }
            }
        }
    }

    /// Drains every complete event from connection `k`.
    fn process_client(&mut self, k: usize) {
        loop {
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            let gen = c.gen;
            let action = match c.conn.poll_event() {
                Ok(None) => return,
                Err(e) => {
                    // Fatal for this connection; libnetproto queued an ERROR for the peer.
                    let g = &self.stats.get().global;
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
                        c.user = user.to_string();
                        stats::inc(&self.stats.get().global.logins_ok);
                        info!("conn {gen} from {}: user {user} logged in", c.peer);
                        Action::None
                    }
                    Event::JobSubmit {
                        id,
                        total_len,
                        spec,
                        data,
                        last,
                    } => {
                        let ctx = super::jobs::SubmitCtx {
                            conn_index: k,
                            conn_gen: gen,
                        };
                        let spec = spec.to_string();
                        // The event's data must be copied before the connection is touched
                        // again; submit does that.
                        super::jobs::submit(
                            &mut super::jobs::JobTables {
                                jobs: &mut self.jobs,
                                queue: &mut self.queue,
                                slots: &mut self.slots,
                                ring: &self.ring,
                                stats: &self.stats,
                                args: &self.args,
                                next_job: &mut self.next_job,
                                large_bytes: &mut self.large_bytes,
                                avg_job_ms: self.avg_job_ms,
                                workers: self.workers.len(),
                                shutting_down: self.shutdown_deadline.is_some(),
                            },
                            &mut c.jobs,
                            ctx,
                            id,
                            total_len,
                            &spec,
                            data,
                            last,
                        )
                    }
                    Event::JobData { id, data, last } => {
                        if let Some(&job) = c.jobs.get(&id) {
                            super::jobs::add_data(
                                &mut self.jobs,
                                &mut self.queue,
                                &self.ring,
                                &self.stats,
                                job,
                                data,
                                last,
                            );
                        }
                        Action::None
                    }
                    Event::Ping { .. } => {
                        stats::inc(&self.stats.get().global.pings);
                        Action::None
                    }
                    Event::StatsRequest { id } => Action::Stats(id),
                    Event::Error { code, message, .. } => {
                        debug!("conn {gen}: peer error {code}: {message}");
                        Action::None
                    }
                    Event::Bye => {
                        c.closing = true;
                        Action::None
                    }
                    _ => Action::None,
                },
            };
            let stats_snapshot =
                matches!(action, Action::Stats(_)).then(|| self.stats.snapshot(self.workers.len()));
            let Some(c) = self.clients[k].as_mut() else {
                return;
            };
            let r = match action {
                Action::None => Ok(()),
                Action::Reject(id, code, msg) => {
                    debug!("conn {gen} req {id}: rejected {}: {msg}", code.name());
                    c.conn.reject_request(id, code, &msg)
                }
                Action::Busy(id, ms) => c.conn.send_busy(id, ms),
                Action::Stats(id) => {
                    stats::inc(&self.stats.get().global.stats_requests);
                    let snap = stats_snapshot.unwrap_or_default();
                    let entries: Vec<(&str, u64)> =
                        snap.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    c.conn.send_stats(id, &entries)
                }
            };
            if let Err(e) = r {
                warn!("conn {gen}: {e}");
                c.closing = true;
            }
        }
    }

    /// Writes what connection `k` has pending; manages write interest; closes when done.
    pub(super) fn flush_client(&mut self, k: usize) {
        let Some(c) = self.clients[k].as_mut() else {
            return;
        };
        let before = c.conn.pending_output().len();
        let pending = match c.conn.write_fd(c.stream.as_fd(), Instant::now()) {
            Ok(p) => p,
            Err(e) => {
                debug!("conn {} write: {e}", c.gen);
                self.close_client(k, "write error");
                return;
            }
        };
        if pending < before {
            c.last_tx_progress = Instant::now();
            stats::add(
                &self.stats.get().global.bytes_out,
                (before - pending) as u64,
            );
        }
        if (c.closing || c.conn.is_closed()) && pending == 0 {
            self.close_client(k, "closed");
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
                .poll
                .registry()
                .reregister(&mut c.stream, Token(CLIENT_BASE + k), interest)
                .is_ok()
            {
                c.want_write = want;
            }
        }
    }

    pub(super) fn close_client(&mut self, k: usize, why: &str) {
        let Some(mut c) = self.clients[k].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.free_clients.push(k);
        self.open_conns -= 1;
        stats::dec(&self.stats.get().global.connections_open);
        // Jobs still uploading die with the connection; queued and running ones finish and
        // are discarded (their slots are released when they come back).
        for (_, job) in c.jobs.drain() {
            self.abandon_job(job);
        }
        debug!("conn {} from {} closed: {why}", c.gen, c.peer);
    }

    /// Handshake, idle and slow-client timeouts.
    pub(super) fn sweep_timeouts(&mut self) {
        let now = Instant::now();
        let hs = ServeArgs::secs(self.args.handshake_timeout);
        let idle = ServeArgs::secs(self.args.idle_timeout);
        let slow = ServeArgs::secs(self.args.slow_client_timeout);
        for k in 0..self.clients.len() {
            let Some(c) = self.clients[k].as_mut() else {
                continue;
            };
            let pending = !c.conn.pending_output().is_empty();
            if pending && now.duration_since(c.last_tx_progress) > slow {
                info!(
                    "conn {} from {}: not reading its output for {:.0} s; closing",
                    c.gen,
                    c.peer,
                    slow.as_secs_f64()
                );
                self.close_client(k, "slow client");
                continue;
            }
            if c.closing {
                // Output stuck behind a closing peer is bounded by the slow-client timeout.
                continue;
            }
            if !pending && now.duration_since(c.last_rx) > std::time::Duration::from_secs(1) {
                // Idle for a second: give back buffers a large transfer grew.
                c.conn.shrink();
            }
            let (code, text) = if !c.logged_in && now.duration_since(c.accepted) > hs {
                (
                    ErrorCode::HandshakeTimeout,
                    format!(
                        "handshake and login must finish within {:.0} s",
                        hs.as_secs_f64()
                    ),
                )
            } else if c.logged_in && c.jobs.is_empty() && now.duration_since(c.last_rx) > idle {
                (
                    ErrorCode::IdleTimeout,
                    format!("no traffic for {:.0} s", idle.as_secs_f64()),
                )
            } else {
                continue;
            };
            debug!("conn {}: {}", c.gen, text);
            let _ = c.conn.send_error(0, code, &text);
            c.closing = true;
            self.flush_client(k);
        }
    }

    /// The connection that submitted a job, if it is still the same connection.
    pub(super) fn client_of(&mut self, index: usize, gen: u64) -> Option<&mut Client> {
        self.clients
            .get_mut(index)?
            .as_mut()
            .filter(|c| c.gen == gen)
    }
}
