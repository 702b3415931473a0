//! The client side of a connection: its handshake and login steps, the messages only a client
//! sends (jobs, stats requests, the key decision), and its heartbeat and dead-peer timers.
//!
//! Trust boundary: the server's key is only trusted by the caller's explicit decision
//! (`trust_server_key`), and no login proof is sent before it; results are only accepted for
//! jobs this client sent.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use super::sealed::{Sealed, Step};
use super::time::{deadline, earliest, TimerKind, Timestamp};
use super::variants::Progress;
use super::{ClientConfig, Conn, Phase, Side};
use crate::error::Error;
use crate::frame::{Frame, Header};
use crate::handshake::ClientHandshake;
use crate::limits::HEADER_LEN;
use crate::login;
use crate::message::{self, Challenge, JobSubmit, ResultInfo};
use crate::opcode::{ErrorCode, Opcode};

/// The payload of the heartbeat PING (request id 0, the connection's own).
pub(crate) const HEARTBEAT_PAYLOAD: &[u8] = b"heartbeat";

enum Handshake {
    Hello(ClientHandshake),
    AwaitTrust,
    AwaitChallenge,
    AwaitOk { expected: [u8; 32] },
    Done,
}

/// The client's side of a connection: credentials, handshake progress, jobs in flight and
/// heartbeat state.
pub struct ClientSide {
    config: Arc<ClientConfig>,
    handshake: Handshake,
    /// Jobs sent and not yet answered by a JOB_RESULT, ERROR or BUSY.
    outstanding: HashSet<u64>,
    /// When the last heartbeat PING was queued.
    last_ping: Option<Timestamp>,
    /// A JOB_SUBMIT_MULTI was sent on this connection: an older server's fatal "unknown
    /// opcode" ERROR then means it does not support multi-output jobs.
    multi_sent: bool,
}

impl Side for ClientSide {}

impl Conn<ClientSide> {
    /// A client connection created at `now`; HELLO is queued at once. `ephemeral` must be
    /// fresh random bytes.
    pub fn new(config: Arc<ClientConfig>, ephemeral: [u8; 32], now: Timestamp) -> Self {
        let side = ClientSide {
            config,
            handshake: Handshake::Done,
            outstanding: HashSet::new(),
            last_ping: None,
            multi_sent: false,
        };
        let mut c = Conn::blank(side, now);
        let hs = ClientHandshake::start(ephemeral, &mut c.tx);
        c.side.handshake = Handshake::Hello(hs);
        c
    }

    /// Accepts (after checking the pinning table) or refuses the server's key. Login starts
    /// only after acceptance, so no proof is ever sent to an unverified server.
    pub fn trust_server_key(&mut self, accept: bool) -> Result<(), Error> {
        if !matches!(self.side.handshake, Handshake::AwaitTrust) || self.is_closed() {
            return Err(Error::BadState("no server key is awaiting a decision"));
        }
        if !accept {
            self.phase = Phase::Closed;
            self.side.handshake = Handshake::Done;
            self.error = Some(Error::ServerKeyRejected);
            return Ok(());
        }
        let mut body = Vec::new();
        message::encode_login_start(&self.side.config.user, &mut body)?;
        self.queue(Opcode::LoginStart, 0, 0, &[&body])?;
        self.side.handshake = Handshake::AwaitChallenge;
        Ok(())
    }

    /// Starts a job; `data` is the first chunk (may be all of it when `last`).
    pub fn send_job(
        &mut self,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        self.submit(Opcode::JobSubmit, id, spec, total_len, data, last)
    }

    /// Sends a JOB_SUBMIT or JOB_SUBMIT_MULTI (the same body) after the checks both need;
    /// `spec` is already valid for the opcode. The request is outstanding once queued.
    fn submit(
        &mut self,
        op: Opcode,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        if last && total_len != data.len() as u64 {
            return Err(Error::InvalidArgument(
                "last chunk does not complete the declared length",
            ));
        }
        if id == 0 {
            return Err(Error::InvalidArgument(
                "request id 0 is reserved for the connection",
            ));
        }
        if self.side.outstanding.contains(&id) {
            return Err(Error::InvalidArgument("request id already in flight"));
        }
        let mut head = Vec::with_capacity(10 + spec.len());
        JobSubmit::encode_head(total_len, spec, &mut head)?;
        self.queue(op, Self::last_flag(last), id, &[&head, data])?;
        self.side.outstanding.insert(id);
        Ok(())
    }

    /// Starts a multi-output job (JOB_SUBMIT_MULTI, feature level 1.1): `variants` is the
    /// variant list, 2..=MAX_VARIANTS op specs separated by `;` (none empty, ≤ MAX_SPEC_LEN
    /// in all); the input is as for [`send_job`](Self::send_job). Each variant is answered by
    /// a [`VariantResult`](super::Event::VariantResult) (+ result data) or a
    /// [`VariantError`](super::Event::VariantError), in any order, or the whole request by an
    /// ERROR or BUSY. A server without the feature closes the connection, which
    /// `poll_event` reports as [`Error::NotSupported`].
    pub fn send_job_multi(
        &mut self,
        id: u64,
        variants: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        let count = message::check_variant_list(variants)?;
        self.submit(Opcode::JobSubmitMulti, id, variants, total_len, data, last)?;
        self.side.multi_sent = true;
        self.variants.open_request(id, count);
        Ok(())
    }

    /// More input for job `id`.
    pub fn send_job_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<(), Error> {
        self.require_ready()?;
        Self::check_data(data)?;
        self.queue(Opcode::JobData, Self::last_flag(last), id, &[data])
    }

    /// Asks for the server's counters.
    pub fn send_stats_request(&mut self, id: u64) -> Result<(), Error> {
        self.require_ready()?;
        self.queue(Opcode::StatsRequest, 0, id, &[])
    }

    fn heartbeat_deadline(&self) -> Option<Timestamp> {
        if !self.is_ready() {
            return None;
        }
        let since = self
            .clock
            .last_frame
            .max(self.side.last_ping.unwrap_or(Timestamp::ZERO));
        deadline(since, self.side.config.timers.heartbeat)
    }

    fn dead_deadline(&self) -> Option<Timestamp> {
        if self.is_closed() {
            return None;
        }
        deadline(self.clock.last_frame, self.side.config.timers.dead_after)
    }
}

impl Sealed for ClientSide {
    const NAME: &'static str = "client";

    fn handshake_state(&self) -> &'static str {
        match self.handshake {
            Handshake::Hello(_) => "client-hello",
            Handshake::AwaitTrust => "client-await-trust",
            Handshake::AwaitChallenge => "client-await-challenge",
            Handshake::AwaitOk { .. } => "client-await-ok",
            Handshake::Done => "client-done",
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
        match std::mem::replace(&mut c.side.handshake, Handshake::Done) {
            Handshake::Hello(hs) => {
                if h.opcode != Opcode::HelloReply {
                    return Err(unexpected());
                }
                let raw = &c.rx[start..start + used];
                let f = Frame {
                    header: h,
                    body: &raw[HEADER_LEN..],
                    used,
                };
                let est = hs.finish(&f, raw)?;
                c.establish(est);
                c.side.handshake = Handshake::AwaitTrust;
                Ok(Step::Event)
            }
            Handshake::AwaitTrust => Err(unexpected()),
            Handshake::AwaitChallenge => {
                if h.opcode != Opcode::LoginChallenge {
                    return Err(unexpected());
                }
                let cfg = c.side.config.clone();
                let ch = Challenge::parse(&c.rx[body])?;
                login::check_challenge(&ch)?;
                let salted = cfg.salted(&ch);
                let auth = login::auth_message(&c.transcript, &cfg.user, &ch.salt, ch.iterations);
                let (proof, expected) = login::client_proof(&salted, &auth);
                c.queue(Opcode::LoginProof, 0, 0, &[&proof])?;
                c.side.handshake = Handshake::AwaitOk { expected };
                Ok(Step::Continue)
            }
            Handshake::AwaitOk { expected } => {
                if h.opcode != Opcode::LoginOk {
                    return Err(unexpected());
                }
                let sig = message::parse_32(&c.rx[body])?;
                if !bool::from(subtle::ConstantTimeEq::ct_eq(&sig[..], &expected[..])) {
                    return Err(Error::BadServerSignature);
                }
                c.phase = Phase::Ready;
                Ok(Step::Event)
            }
            Handshake::Done => Err(Error::Closed),
        }
    }

    fn dispatch_ready(c: &mut Conn<Self>, h: Header, body: Range<usize>) -> Result<Step, Error> {
        let id = h.request_id;
        match h.opcode {
            Opcode::JobResult => {
                let (info, data) = ResultInfo::parse(&c.rx[body])?;
                let (total, data_len) = (info.total_len, data.len());
                if id == 0 {
                    return Err(Error::Malformed(
                        "request id 0 is reserved for the connection",
                    ));
                }
                if c.variants.contains(id) {
                    return Err(Error::Malformed("JOB_RESULT for a multi-output request"));
                }
                if !c.side.outstanding.remove(&id) {
                    return Err(Error::Malformed(
                        "JOB_RESULT for a request this client did not send",
                    ));
                }
                c.start_stream(id, total, data_len, h.is_last())?;
                Ok(Step::Event)
            }
            Opcode::VariantResult => {
                let (index, info, data) = message::parse_variant_result(&c.rx[body])?;
                let (total, data_len) = (info.total_len, data.len());
                c.variants.check(id, index)?;
                c.start_stream(id, total, data_len, h.is_last())?;
                if c.variants.begin(id, index, h.is_last())? == Progress::Complete {
                    c.side.outstanding.remove(&id);
                }
                Ok(Step::Event)
            }
            Opcode::VariantError => {
                let (index, _, _) = message::parse_variant_error(&c.rx[body])?;
                if c.variants.begin(id, index, true)? == Progress::Complete {
                    c.side.outstanding.remove(&id);
                }
                Ok(Step::Event)
            }
            Opcode::ResultData => {
                let step = c.stream_chunk(h, body)?;
                if h.is_last()
                    && c.variants.open_variant(id).is_some()
                    && c.variants.end_open(id) == Progress::Complete
                {
                    c.side.outstanding.remove(&id);
                }
                Ok(step)
            }
            Opcode::StatsReply => message::parse_stats(&c.rx[body]).map(|_| Step::Event),
            Opcode::Busy | Opcode::Shutdown => {
                message::parse_u32(&c.rx[body])?;
                if h.opcode == Opcode::Busy {
                    c.side.outstanding.remove(&id);
                }
                Ok(Step::Event)
            }
            _ => Err(Conn::<Self>::unexpected(h)),
        }
    }

    fn peer_error(c: &mut Conn<Self>, id: u64) {
        c.side.outstanding.remove(&id);
        // An ERROR ends its request, with the result stream it may have cut short (no more
        // RESULT_DATA can come for it); for a multi-output request the variants answered
        // stand, no more follow.
        c.streams.remove(&id);
        if c.variants.contains(id) {
            c.variants.close_request(id);
        }
    }

    fn map_peer_error(c: &Conn<Self>, id: u64, code: u16, text: &str) -> Option<Error> {
        // An older server answers an opcode it does not know with a fatal ERROR: UNKNOWN_OPCODE,
        // or (before that code existed) PROTOCOL saying "unknown opcode 0x0014". Only a
        // client that sent JOB_SUBMIT_MULTI reads that as "no multi-output jobs here".
        if id != 0 || !c.side.multi_sent {
            return None;
        }
        let older = format!("unknown opcode {:#06x}", Opcode::JobSubmitMulti as u16);
        let code_name = if code == ErrorCode::UnknownOpcode as u16 {
            ErrorCode::UnknownOpcode.name()
        } else if code == ErrorCode::Protocol as u16 && text.starts_with(&older) {
            ErrorCode::Protocol.name()
        } else {
            return None;
        };
        Some(Error::NotSupported {
            code_name,
            message: text.to_string(),
        })
    }

    fn error_sent(_: &mut Conn<Self>, _: u64) {}

    fn fatal_code(_: &Conn<Self>, _: &Error, code: ErrorCode) -> ErrorCode {
        code
    }

    fn login_user(&self) -> &str {
        ""
    }

    fn probe_answer(&self) -> Option<crate::probe::ProbeStatus> {
        None
    }

    fn next_timer(c: &Conn<Self>) -> Option<Timestamp> {
        earliest(c.heartbeat_deadline(), c.dead_deadline())
    }

    fn fire_timers(c: &mut Conn<Self>, now: Timestamp) -> Option<TimerKind> {
        if c.dead_deadline().is_some_and(|d| now >= d) {
            log::debug!(
                "client connection: no frame from the server for {} ms; giving up",
                now.saturating_duration_since(c.clock.last_frame)
                    .as_millis()
            );
            // Nothing we still had to say can matter to a server that has gone silent, and
            // writing it could only block on a peer that reads nothing: drop it, so the
            // caller closes the socket at once.
            c.tx.clear();
            c.tx_start = 0;
            let after = c.side.config.timers.dead_after.unwrap_or_default();
            c.close_for(Error::PeerSilent { after });
            return Some(TimerKind::DeadPeer);
        }
        if c.heartbeat_deadline().is_some_and(|d| now >= d) {
            // Stamped first, so a failed send cannot leave the timer due forever.
            c.side.last_ping = Some(now);
            if let Err(e) = c.queue(Opcode::Ping, 0, 0, &[HEARTBEAT_PAYLOAD]) {
                c.fail(e);
            }
            return Some(TimerKind::Heartbeat);
        }
        None
    }

    fn admit_cheap(_: &mut Conn<Self>, _: u64) -> bool {
        // The server's PINGs are answered; a client limits nobody.
        true
    }
}
