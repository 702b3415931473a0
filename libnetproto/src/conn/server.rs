//! The server side of a connection: its handshake and login steps, the messages only a
//! server sends (results, BUSY, refusals, SHUTDOWN, stats), the requests it still owes an
//! answer, its handshake, idle, slow-peer and buffer timers, and the answer to a PROBE.
//!
//! Trust boundary: an unauthenticated peer can reach only the handshake and login states here,
//! and only for the handshake timeout (the HELLO timeout, when set, before its first frame); a
//! logged-in one is cut off when idle or when it stops reading, so a stalled peer cannot hold
//! a connection's resources forever, and its cheap requests (PING, STATS) are held to the
//! config's request rate. A PROBE, valid only as the first frame, is answered with one status
//! byte the caller set (`set_probe_status`) and closes the connection: no key exchange.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::sealed::{Sealed, Step};
use super::time::{deadline, earliest, TimerKind, Timestamp, TokenBucket};
use super::variants::Progress;
use super::{Conn, Phase, ServerConfig, Side};
use crate::error::Error;
use crate::frame::{Frame, Header};
use crate::handshake;
use crate::limits::HEADER_LEN;
use crate::login::{self, Verifier};
use crate::message::{self, JobSubmit, ResultInfo};
use crate::opcode::{ErrorCode, Opcode};
use crate::probe::ProbeStatus;

enum Handshake {
    AwaitHello {
        ephemeral: Zeroizing<[u8; 32]>,
    },
    AwaitLogin,
    AwaitProof {
        user: String,
        verifier: Verifier,
        known: bool,
    },
    Done,
}

/// The server's side of a connection: identity and users, handshake progress, the logged-in
/// user and the requests not yet answered.
pub struct ServerSide {
    config: Arc<ServerConfig>,
    handshake: Handshake,
    user: String,
    /// JOB_SUBMITs whose final JOB_RESULT/RESULT_DATA, ERROR or BUSY is not yet queued. While
    /// any is, the connection is not idle however long the job takes.
    outstanding: HashSet<u64>,
    /// When the connection last became idle (login, or its last request answered).
    idle_since: Timestamp,
    /// The name the peer gave in LOGIN_START (kept after a failed login, for the caller's
    /// counting of failures per name).
    login_name: String,
    /// Cheap requests allowed now (the config's request rate).
    cheap: Option<TokenBucket>,
    /// What a PROBE is answered with; the caller keeps it current (`set_probe_status`).
    probe_status: ProbeStatus,
}

impl Side for ServerSide {}

impl Conn<ServerSide> {
    /// A server connection accepted at `now`, awaiting HELLO; the handshake timeout runs from
    /// here. `ephemeral` must be fresh random bytes.
    pub fn new(config: Arc<ServerConfig>, ephemeral: [u8; 32], now: Timestamp) -> Self {
        let side = ServerSide {
            config,
            handshake: Handshake::AwaitHello {
                ephemeral: Zeroizing::new(ephemeral),
            },
            user: String::new(),
            outstanding: HashSet::new(),
            idle_since: now,
            login_name: String::new(),
            cheap: None,
            // Until the caller says otherwise, a probe learns only that something answers.
            probe_status: ProbeStatus::NotReady,
        };
        Conn::blank(side, now)
    }

    /// The logged-in user's name (empty before login).
    pub fn user(&self) -> &str {
        &self.side.user
    }

    /// Sets what a PROBE on this connection is answered with: the server's readiness, which
    /// only the caller knows (its workers, its shutdown). Set it before feeding input; it
    /// matters only while the connection awaits its first frame.
    pub fn set_probe_status(&mut self, status: ProbeStatus) {
        self.side.probe_status = status;
    }

    /// The status a PROBE is answered with.
    pub fn probe_status(&self) -> ProbeStatus {
        self.side.probe_status
    }

    /// Requests the server still owes a final answer.
    pub fn outstanding_requests(&self) -> usize {
        self.side.outstanding.len()
    }

    /// The user name the peer gave in LOGIN_START, whether or not the login succeeded
    /// (empty before LOGIN_START): what a caller counts failed logins by.
    pub fn login_name(&self) -> &str {
        &self.side.login_name
    }

    /// Refuses request `id` (0: the connection) with ERROR RATE_LIMITED, its text starting
    /// with `retry-after-ms=N;` (PROTOCOL §11) followed by `why`. Allowed before the
    /// handshake, so a server can refuse a connection before any key exchange.
    pub fn send_rate_limited(
        &mut self,
        id: u64,
        retry_after_ms: u32,
        why: &str,
    ) -> Result<(), Error> {
        let text = message::rate_limited_text(retry_after_ms, why);
        self.send_error(id, ErrorCode::RateLimited, &text)
    }

    /// Request `id` got its final answer.
    fn answered(&mut self, id: u64) {
        self.variants.close_request(id);
        if self.side.outstanding.remove(&id) && self.side.outstanding.is_empty() {
            self.side.idle_since = self.clock.latest;
        }
    }

    /// Starts a job's result; `data` is the first chunk. With `last` this answers the job.
    pub fn send_result(
        &mut self,
        id: u64,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        if self.variants.contains(id) {
            return Err(Error::BadState(
                "a multi-output job is answered with send_variant_result",
            ));
        }
        let mut head = Vec::with_capacity(ResultInfo::LEN);
        info.encode(&mut head);
        self.queue(Opcode::JobResult, Self::last_flag(last), id, &[&head, data])?;
        if last {
            self.answered(id);
        }
        Ok(())
    }

    /// More result data for job `id`; the `last` chunk answers the job. On a multi-output job
    /// it continues the variant whose VARIANT_RESULT was sent last, and its `last` chunk
    /// answers that variant (the job, when it was the last variant).
    pub fn send_result_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        let multi = self.variants.contains(id);
        if multi && self.variants.open_variant(id).is_none() {
            return Err(Error::BadState("no variant result of this job is open"));
        }
        self.queue(Opcode::ResultData, Self::last_flag(last), id, &[data])?;
        if last && (!multi || self.variants.end_open(id) == Progress::Complete) {
            self.answered(id);
        }
        Ok(())
    }

    /// Starts the result of variant `index` (0-based) of multi-output job `id`; `data` is the
    /// first chunk, and RESULT_DATA continues it until `last`. One variant's stream at a time:
    /// another variant of the job may start only after this one's `last` chunk. The job is
    /// answered when every variant is.
    pub fn send_variant_result(
        &mut self,
        id: u64,
        index: u8,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        self.variants.check(id, index).map_err(not_allowed)?;
        let mut head = Vec::with_capacity(4 + ResultInfo::LEN);
        message::encode_variant_result_head(index, info, &mut head);
        self.queue(
            Opcode::VariantResult,
            Self::last_flag(last),
            id,
            &[&head, data],
        )?;
        if self.variants.begin(id, index, last).map_err(not_allowed)? == Progress::Complete {
            self.answered(id);
        }
        Ok(())
    }

    /// Answers variant `index` (0-based) of multi-output job `id` with an error; the job's
    /// other variants still come (a request-level failure is `send_error`).
    pub fn send_variant_error(
        &mut self,
        id: u64,
        index: u8,
        code: ErrorCode,
        text: &str,
    ) -> Result<(), Error> {
        self.require_ready()?;
        self.variants.check(id, index).map_err(not_allowed)?;
        let mut body = Vec::new();
        message::encode_variant_error(index, code as u16, text, &mut body);
        self.queue(Opcode::VariantError, 0, id, &[&body])?;
        if self.variants.begin(id, index, true).map_err(not_allowed)? == Progress::Complete {
            self.answered(id);
        }
        Ok(())
    }

    /// Refuses request `id` and drops the rest of its upload as it arrives.
    pub fn reject_request(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<(), Error> {
        self.require_ready()?;
        self.discard_stream(id);
        self.send_error(id, code, text)
    }

    /// Refuses request `id` for load; its upload (if any) is dropped as it arrives.
    pub fn send_busy(&mut self, id: u64, retry_after_ms: u32) -> Result<(), Error> {
        self.require_ready()?;
        self.discard_stream(id);
        self.queue(Opcode::Busy, 0, id, &[&retry_after_ms.to_be_bytes()])?;
        self.answered(id);
        Ok(())
    }

    /// Tells the client the server stops within `grace_ms`.
    pub fn send_shutdown(&mut self, grace_ms: u32) -> Result<(), Error> {
        self.require_ready()?;
        self.queue(Opcode::Shutdown, 0, 0, &[&grace_ms.to_be_bytes()])
    }

    /// Answers a stats request with name/value pairs.
    pub fn send_stats(&mut self, id: u64, entries: &[(&str, u64)]) -> Result<(), Error> {
        self.require_ready()?;
        let mut body = Vec::new();
        message::encode_stats(entries.iter().copied(), &mut body)?;
        self.queue(Opcode::StatsReply, 0, id, &[&body])
    }

    fn slow_peer_deadline(&self) -> Option<Timestamp> {
        if self.pending_output().is_empty() {
            return None;
        }
        deadline(self.clock.tx_since, self.side.config.timeouts.slow_peer)
    }

    fn handshake_deadline(&self) -> Option<Timestamp> {
        if self.phase != Phase::Handshake {
            return None;
        }
        let all = deadline(self.clock.created, self.side.config.timeouts.handshake);
        earliest(all, self.hello_deadline())
    }

    /// The HELLO timeout's deadline while no HELLO has arrived.
    fn hello_deadline(&self) -> Option<Timestamp> {
        if !matches!(self.side.handshake, Handshake::AwaitHello { .. }) {
            return None;
        }
        deadline(self.clock.created, self.side.config.timeouts.hello)
    }

    /// A frame begun after login must be whole within the frame timeout (before login the
    /// handshake deadline bounds everything).
    fn frame_deadline(&self) -> Option<Timestamp> {
        if !self.is_ready() {
            return None;
        }
        deadline(self.clock.frame_started?, self.side.config.timeouts.frame)
    }

    fn idle_deadline(&self) -> Option<Timestamp> {
        if !self.is_ready() || !self.side.outstanding.is_empty() {
            return None;
        }
        let since = self.clock.last_frame.max(self.side.idle_since);
        deadline(since, self.side.config.timeouts.idle)
    }

    fn shrink_deadline(&self) -> Option<Timestamp> {
        if self.is_closed() || !self.can_shrink() {
            return None;
        }
        deadline(self.clock.last_io, self.side.config.timeouts.shrink_after)
    }

    /// Queues a connection-level ERROR and closes (flush, then close the socket).
    fn time_out(&mut self, code: ErrorCode, text: &str, why: &'static str) {
        let mut body = Vec::new();
        message::encode_error(code as u16, text, &mut body);
        let _ = self.queue(Opcode::Error, 0, 0, &[&body]);
        self.close_for(Error::Timeout(why));
    }
}

fn secs(d: Option<std::time::Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds for a message: whole ones as such ("10"), others to a tenth ("0.5").
fn short_secs(d: Option<std::time::Duration>) -> String {
    let s = secs(d);
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

impl Sealed for ServerSide {
    const NAME: &'static str = "server";

    fn handshake_state(&self) -> &'static str {
        match self.handshake {
            Handshake::AwaitHello { .. } => "server-await-hello",
            Handshake::AwaitLogin => "server-await-login",
            Handshake::AwaitProof { .. } => "server-await-proof",
            Handshake::Done => "server-done",
        }
    }

    fn dispatch_handshake(
        c: &mut Conn<Self>,
        h: Header,
        start: usize,
        used: usize,
        body: Range<usize>,
    ) -> Result<Step, Error> {
        let unexpected = || Conn::<Self>::unexpected(h);
        let cfg = c.side.config.clone();
        match std::mem::replace(&mut c.side.handshake, Handshake::Done) {
            Handshake::AwaitHello { ephemeral } => {
                if h.opcode == Opcode::Probe {
                    // Clear (checked by dispatch), empty, id 0: exactly the fixed bytes.
                    message::parse_empty(&c.rx[body])?;
                    if h.request_id != 0 {
                        return Err(Error::Malformed("PROBE request id must be 0"));
                    }
                    let status = [c.side.probe_status.to_byte()];
                    c.queue(Opcode::ProbeReply, 0, 0, &[&status])?;
                    // Answered: nothing else is valid on this connection.
                    c.phase = Phase::Closed;
                    return Ok(Step::Event);
                }
                if h.opcode != Opcode::Hello {
                    return Err(unexpected());
                }
                let raw = &c.rx[start..start + used];
                let f = Frame {
                    header: h,
                    body: &raw[HEADER_LEN..],
                    used,
                };
                let est = handshake::server_respond(
                    &cfg.key, *ephemeral, cfg.params, &f, raw, &mut c.tx,
                )?;
                c.establish(est);
                c.side.handshake = Handshake::AwaitLogin;
                Ok(Step::Continue)
            }
            Handshake::AwaitLogin => {
                if h.opcode != Opcode::LoginStart {
                    return Err(unexpected());
                }
                let user = message::parse_login_start(&c.rx[body])?.to_string();
                c.side.login_name.clone_from(&user);
                let (verifier, known) = match cfg.users.get(&user) {
                    Some(v) => (v.clone(), true),
                    None => (
                        login::fake_verifier(&cfg.fake_secret, &user, cfg.fake_shape()),
                        false,
                    ),
                };
                let mut out = Vec::new();
                verifier.challenge().encode(&mut out);
                c.queue(Opcode::LoginChallenge, 0, 0, &[&out])?;
                c.side.handshake = Handshake::AwaitProof {
                    user,
                    verifier,
                    known,
                };
                Ok(Step::Continue)
            }
            Handshake::AwaitProof {
                user,
                verifier,
                known,
            } => {
                if h.opcode != Opcode::LoginProof {
                    return Err(unexpected());
                }
                let proof = message::parse_32(&c.rx[body])?;
                let auth =
                    login::auth_message(&c.transcript, &user, &verifier.salt, verifier.iterations);
                // The fake verifier runs the same computation, so timing does not reveal
                // whether the name exists.
                let sig = login::verify_proof(&verifier, &auth, &proof);
                match (sig, known) {
                    (Ok(sig), true) => {
                        c.queue(Opcode::LoginOk, 0, 0, &[&sig])?;
                        c.side.user = user;
                        c.side.idle_since = c.clock.input_at;
                        c.phase = Phase::Ready;
                        Ok(Step::Event)
                    }
                    _ => Err(Error::AuthFailed),
                }
            }
            Handshake::Done => Err(Error::Closed),
        }
    }

    fn dispatch_ready(c: &mut Conn<Self>, h: Header, body: Range<usize>) -> Result<Step, Error> {
        let id = h.request_id;
        match h.opcode {
            Opcode::JobSubmit => {
                let j = JobSubmit::parse(&c.rx[body])?;
                let (total, data_len) = (j.total_len, j.data.len());
                if id == 0 {
                    return Err(Error::Malformed(
                        "request id 0 is reserved for the connection",
                    ));
                }
                c.start_stream(id, total, data_len, h.is_last())?;
                c.side.outstanding.insert(id);
                Ok(Step::Event)
            }
            Opcode::JobSubmitMulti => {
                let j = JobSubmit::parse(&c.rx[body])?;
                let (total, data_len) = (j.total_len, j.data.len());
                let count = message::variant_count(j.spec);
                if id == 0 {
                    return Err(Error::Malformed(
                        "request id 0 is reserved for the connection",
                    ));
                }
                c.start_stream(id, total, data_len, h.is_last())?;
                c.side.outstanding.insert(id);
                // A count outside 2..=MAX_VARIANTS is the caller's BAD_SPEC to send; until then
                // the request is not tracked, so no variant of it can be sent.
                if let Some(n) = count {
                    c.variants.open_request(id, n);
                }
                Ok(Step::Event)
            }
            Opcode::JobData => c.stream_chunk(h, body),
            Opcode::StatsRequest => {
                message::parse_empty(&c.rx[body])?;
                if !Self::admit_cheap(c, id) {
                    c.quiet = Some(super::Quiet::RateLimited);
                }
                Ok(Step::Event)
            }
            _ => Err(Conn::<Self>::unexpected(h)),
        }
    }

    fn peer_error(_: &mut Conn<Self>, _: u64) {}

    fn map_peer_error(_: &Conn<Self>, _: u64, _: u16, _: &str) -> Option<Error> {
        None
    }

    fn error_sent(c: &mut Conn<Self>, id: u64) {
        c.answered(id);
    }

    fn fatal_code(c: &Conn<Self>, e: &Error, code: ErrorCode) -> ErrorCode {
        // A client that skips login gets told so, not just "unexpected message".
        if !c.is_ready() && matches!(e, Error::UnexpectedMessage { .. }) {
            ErrorCode::NotLoggedIn
        } else {
            code
        }
    }

    fn login_user(&self) -> &str {
        &self.user
    }

    fn probe_answer(&self) -> Option<ProbeStatus> {
        Some(self.probe_status)
    }

    fn next_timer(c: &Conn<Self>) -> Option<Timestamp> {
        [
            c.handshake_deadline(),
            c.frame_deadline(),
            c.idle_deadline(),
            c.shrink_deadline(),
        ]
        .into_iter()
        .fold(c.slow_peer_deadline(), earliest)
    }

    fn fire_timers(c: &mut Conn<Self>, now: Timestamp) -> Option<TimerKind> {
        let t = c.side.config.timeouts;
        if c.slow_peer_deadline().is_some_and(|d| now >= d) {
            log::debug!(
                "server connection: peer took none of its output for {:.0} s; closing",
                secs(t.slow_peer)
            );
            // Nobody will read it: drop it, so the caller closes the socket at once.
            c.tx.clear();
            c.tx_start = 0;
            c.close_for(Error::Timeout("peer not reading its output"));
            return Some(TimerKind::SlowPeer);
        }
        if c.hello_deadline().is_some_and(|d| now >= d) {
            let text = format!("HELLO must arrive within {:.0} s", secs(t.hello));
            c.time_out(ErrorCode::HandshakeTimeout, &text, "hello");
            return Some(TimerKind::Handshake);
        }
        if c.handshake_deadline().is_some_and(|d| now >= d) {
            let text = format!(
                "handshake and login must finish within {:.0} s",
                secs(t.handshake)
            );
            c.time_out(ErrorCode::HandshakeTimeout, &text, "handshake and login");
            return Some(TimerKind::Handshake);
        }
        if c.frame_deadline().is_some_and(|d| now >= d) {
            let text = format!(
                "a frame must arrive whole within {} s of its first byte",
                short_secs(t.frame)
            );
            c.time_out(ErrorCode::SlowClient, &text, "frame too slow");
            return Some(TimerKind::SlowFrame);
        }
        if c.idle_deadline().is_some_and(|d| now >= d) {
            let text = format!("no traffic for {:.0} s", secs(t.idle));
            c.time_out(ErrorCode::IdleTimeout, &text, "idle connection");
            return Some(TimerKind::Idle);
        }
        if c.shrink_deadline().is_some_and(|d| now >= d) {
            c.shrink_buffers();
            if c.side.outstanding.is_empty() {
                c.side.outstanding = HashSet::new();
            }
        }
        None
    }

    fn admit_cheap(c: &mut Conn<Self>, id: u64) -> bool {
        let Some(rate) = c.side.config.request_rate else {
            return true;
        };
        let now = c.clock.input_at;
        let bucket = c
            .side
            .cheap
            .get_or_insert_with(|| TokenBucket::full(rate.burst, now));
        let Err(wait_ms) = bucket.take(rate.per_second, rate.burst, now) else {
            return true;
        };
        // Id 0 is the connection's own (the heartbeat): an ERROR with it would end the
        // connection, so an over-rate PING 0 just goes unanswered.
        if id != 0 {
            let why = format!(
                "more than {} PING/STATS requests per second on this connection",
                rate.per_second
            );
            if let Err(e) = c.send_rate_limited(id, wait_ms, &why) {
                log::debug!("server connection: cannot refuse request {id}: {e}");
            }
        }
        false
    }
}

/// A variant send the state does not allow is the caller's mistake, not the peer's.
fn not_allowed(e: Error) -> Error {
    match e {
        Error::Malformed(why) => Error::BadState(why),
        e => e,
    }
}
