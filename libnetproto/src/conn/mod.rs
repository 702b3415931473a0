//! One connection's protocol state machine: handshake, login, then framed encrypted traffic.
//!
//! Trust boundary: everything the peer sends passes through `poll_event`, which decodes,
//! checks CRC, decrypts and validates each frame against the state, and turns any violation
//! into one fatal error. Sans-IO in the manner of quinn-proto: the caller feeds received bytes
//! in (`feed`/`read_buf`), pulls events out (`poll_event`) and bytes to send
//! (`pending_output`/`consume_output`). No sockets, no clock, no threads: randomness comes in
//! as the ephemeral secret at construction, and time comes in as the caller's `now`.
//!
//! # Two sides, two types
//!
//! [`ClientConn`] and [`ServerConn`] are `Conn<ClientSide>` and `Conn<ServerSide>`: the side
//! holds its own configuration, handshake state and timers, and the messages only one side
//! may send exist only on that side's type. Sending a job from a server does not compile:
//!
//! ```compile_fail
//! # use std::sync::Arc;
//! # use netproto::conn::{ServerConfig, ServerConn, Timestamp};
//! # use netproto::{ServerKey, ServerParams};
//! # let max_chunk = netproto::limits::MAX_CHUNK_DATA as u32;
//! let params = ServerParams { max_chunk, max_upload: 1 << 20, max_in_flight: 4 };
//! let cfg = Arc::new(ServerConfig::new(ServerKey::from_secret([1; 32]), params));
//! let mut s = ServerConn::new(cfg, [2; 32], Timestamp::ZERO);
//! s.send_job(1, "noop", 1, b"x", true).unwrap();
//! ```
//!
//! and neither does answering a job from a client:
//!
//! ```compile_fail
//! # use std::sync::Arc;
//! # use netproto::conn::{ClientConfig, ClientConn, Timestamp};
//! # use netproto::ResultInfo;
//! let cfg = Arc::new(ClientConfig::new("alice", b"pw").unwrap());
//! let mut c = ClientConn::new(cfg, [1; 32], Timestamp::ZERO);
//! c.send_result(1, &ResultInfo::default(), b"x", true).unwrap();
//! ```
//!
//! while what each side may send compiles (and, here, fails only because nobody logged in):
//!
//! ```
//! # use std::sync::Arc;
//! # use netproto::conn::{ClientConfig, ClientConn, ServerConfig, ServerConn, Timestamp};
//! # use netproto::{ResultInfo, ServerKey, ServerParams};
//! # let max_chunk = netproto::limits::MAX_CHUNK_DATA as u32;
//! let params = ServerParams { max_chunk, max_upload: 1 << 20, max_in_flight: 4 };
//! let scfg = Arc::new(ServerConfig::new(ServerKey::from_secret([1; 32]), params));
//! let mut s = ServerConn::new(scfg, [2; 32], Timestamp::ZERO);
//! assert!(s.send_result(1, &ResultInfo::default(), b"x", true).is_err());
//! let ccfg = Arc::new(ClientConfig::new("alice", b"pw").unwrap());
//! let mut c = ClientConn::new(ccfg, [1; 32], Timestamp::ZERO);
//! assert!(c.send_job(1, "noop", 1, b"x", true).is_err());
//! ```
//!
//! # Timers
//!
//! The connection owns its timeouts, quinn-proto style. After handling input or output, ask
//! [`poll_timeout`](Conn::poll_timeout) when the connection next needs attention and call
//! [`handle_timeout`](Conn::handle_timeout) at (or after) that time; it reports which timer
//! fired. An event loop keeps one deadline per connection (a timer wheel or a heap), and
//! re-reads it after every call that moved bytes or queued output:
//!
//! ```text
//! conn.read_buf(.., now) / conn.feed(.., now)   // input stamps the peer's activity
//! while let Some(ev) = conn.poll_event()? { .. } // a frame completed = activity
//! conn.consume_output(n, now)                    // progress for the slow-peer timer
//! deadline = conn.poll_timeout()                 // earliest pending timer, or None
//! ... at deadline: conn.handle_timeout(now) -> Option<TimerKind>; flush; close if closed
//! ```
//!
//! What counts as the peer's activity is a *complete frame*, stamped with the `now` of the
//! input call that delivered its last byte: a peer dribbling one byte a second never completes
//! a frame, so it keeps no timer alive. The server's timers are in [`ServerTimeouts`], the
//! client's in [`ClientTimers`].

mod buffers;
mod client;
mod config;
mod event;
mod send;
mod server;
mod stream;
mod time;
mod variants;

use std::collections::HashMap;
use std::ops::Range;

use crate::error::Error;
use crate::frame::{self, Decoded, Header};
use crate::handshake::Established;
use crate::limits::{HEADER_LEN, TAG_LEN};
use crate::message::{self, ServerParams};
use crate::opcode::{ErrorCode, Opcode};
use crate::session::CipherState;

pub use client::ClientSide;
pub use config::{ClientConfig, ClientTimers, RequestRate, ServerConfig, ServerTimeouts};
pub use event::Event;
pub use server::ServerSide;
pub use time::{TimerKind, Timestamp};

/// A client connection: sends jobs, decides about the server's key, keeps a heartbeat.
pub type ClientConn = Conn<ClientSide>;
/// A server connection: answers jobs, enforces handshake, idle and slow-peer timeouts.
pub type ServerConn = Conn<ServerSide>;

/// One side of a connection: [`ClientSide`] or [`ServerSide`]. Sealed: the protocol has
/// exactly these two.
pub trait Side: sealed::Sealed {}

pub(crate) mod sealed {
    use std::ops::Range;

    use super::{Conn, TimerKind, Timestamp};
    use crate::error::Error;
    use crate::frame::Header;
    use crate::opcode::ErrorCode;

    /// Whether a validated frame produced an event for the caller.
    pub enum Step {
        Continue,
        Event,
    }

    /// What differs between the sides, as hooks the shared state machine calls.
    pub trait Sealed: Sized {
        /// "client" or "server", for logs.
        const NAME: &'static str;
        /// The handshake sub-state's name (only asked while the handshake runs).
        fn handshake_state(&self) -> &'static str;
        /// A clear frame during the handshake or login.
        fn dispatch_handshake(
            c: &mut Conn<Self>,
            h: Header,
            start: usize,
            used: usize,
            body: Range<usize>,
        ) -> Result<Step, Error>;
        /// A decrypted frame of an opcode only this side receives (or an unexpected one).
        fn dispatch_ready(c: &mut Conn<Self>, h: Header, body: Range<usize>)
            -> Result<Step, Error>;
        /// The peer sent ERROR for request `id`.
        fn peer_error(c: &mut Conn<Self>, id: u64);
        /// A peer's ERROR that this side turns into a typed fatal error of its own (the client:
        /// an older server refusing JOB_SUBMIT_MULTI); `None` for every other ERROR.
        fn map_peer_error(c: &Conn<Self>, id: u64, code: u16, text: &str) -> Option<Error>;
        /// This side queued ERROR for request `id`.
        fn error_sent(c: &mut Conn<Self>, id: u64);
        /// The wire code to send for a fatal error that would otherwise be sent as `code`.
        fn fatal_code(c: &Conn<Self>, e: &Error, code: ErrorCode) -> ErrorCode;
        /// The logged-in user's name (server; empty on the client).
        fn login_user(&self) -> &str;
        /// What this side answered a PROBE with (server; `None` on the client).
        fn probe_answer(&self) -> Option<crate::probe::ProbeStatus>;
        /// The earliest deadline of this side's timers.
        fn next_timer(c: &Conn<Self>) -> Option<Timestamp>;
        /// Acts on every timer due at `now`; reports the one that mattered.
        fn fire_timers(c: &mut Conn<Self>, now: Timestamp) -> Option<TimerKind>;
        /// Whether a cheap request (PING, STATS_REQUEST) with id `id` is within this side's
        /// request rate; when not, the side has queued its refusal (or dropped the request).
        fn admit_cheap(c: &mut Conn<Self>, id: u64) -> bool;
    }
}

use sealed::Step;
use stream::Stream;

/// Why a frame's event is one with nothing for the caller to do (see `Event::RateLimited`,
/// `Event::Discarded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    RateLimited,
    Discarded,
}

/// Where the connection is: the side's own handshake sub-state lives in the side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Handshake,
    Ready,
    Closed,
}

/// What the connection knows about time, all of it from the caller's `now` arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The latest `now` the caller passed in (time never runs backwards here).
    latest: Timestamp,
    /// When the connection was created.
    created: Timestamp,
    /// When the last input bytes arrived: the stamp of any frame they complete.
    input_at: Timestamp,
    /// When the last complete frame arrived (the peer's activity); `created` before any.
    last_frame: Timestamp,
    /// When bytes last moved either way (for giving back grown buffers).
    last_io: Timestamp,
    /// Since when the pending output has waited without the peer taking any of it.
    tx_since: Timestamp,
    /// When the first byte of the frame now partly received arrived (`None`: no partial frame).
    frame_started: Option<Timestamp>,
}

impl Clock {
    fn new(now: Timestamp) -> Self {
        Clock {
            latest: now,
            created: now,
            input_at: now,
            last_frame: now,
            last_io: now,
            tx_since: now,
            frame_started: None,
        }
    }

    fn observe(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
    }
}

/// One connection, client or server side by type (see the module documentation).
pub struct Conn<S> {
    side: S,
    phase: Phase,
    rx: Vec<u8>,
    rx_start: usize,
    /// End of the received bytes in `rx` (the rest of `rx` is free space).
    rx_end: usize,
    /// Bytes of the frame behind the last returned event, dropped at the next poll.
    rx_release: usize,
    tx: Vec<u8>,
    tx_start: usize,
    send: Option<CipherState>,
    recv: Option<CipherState>,
    transcript: [u8; 32],
    server_static: [u8; 32],
    params: Option<ServerParams>,
    streams: HashMap<u64, Stream>,
    /// Multi-output requests (feature level 1.1) not yet fully answered.
    variants: variants::Variants,
    /// The ids of refused streams still open, oldest first (at most MAX_REFUSED_STREAMS).
    refused: std::collections::VecDeque<u64>,
    error: Option<Error>,
    bye_sent: bool,
    /// Header and offset of the frame behind the current event.
    current: Option<(Header, usize)>,
    /// Set by `dispatch` when the current frame's event is a quiet one.
    quiet: Option<Quiet>,
    clock: Clock,
}

impl<S: Side> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("side", &S::NAME)
            .field("state", &self.state_name())
            .finish()
    }
}

impl<S: Side> Conn<S> {
    fn blank(side: S, now: Timestamp) -> Self {
        Conn {
            side,
            phase: Phase::Handshake,
            rx: Vec::new(),
            rx_start: 0,
            rx_end: 0,
            rx_release: 0,
            tx: Vec::new(),
            tx_start: 0,
            send: None,
            recv: None,
            transcript: [0u8; 32],
            server_static: [0u8; 32],
            params: None,
            streams: HashMap::new(),
            variants: variants::Variants::default(),
            refused: std::collections::VecDeque::new(),
            error: None,
            bye_sent: false,
            current: None,
            quiet: None,
            clock: Clock::new(now),
        }
    }

    /// A short name of the connection's state ("ready", "closed" or a handshake step), for
    /// log lines.
    pub fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Handshake => self.side.handshake_state(),
            Phase::Ready => "ready",
            Phase::Closed => "closed",
        }
    }

    /// Logged in and able to carry requests.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// No more events will come; flush `pending_output` and close the socket.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The fatal error that closed the connection, if one did.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Hash of the whole handshake (all zero before it completes).
    pub fn transcript_hash(&self) -> &[u8; 32] {
        &self.transcript
    }

    /// The server's static key once the handshake has completed.
    pub fn server_key(&self) -> Option<&[u8; 32]> {
        self.send.as_ref().map(|_| &self.server_static)
    }

    /// The limits the server announced in the handshake, once it has completed.
    pub fn params(&self) -> Option<ServerParams> {
        self.params
    }

    // ----- timers -----

    /// Inbound chunked streams still open (uploads on a server, results on a client),
    /// refused ones included; bounded by the peer's requests in flight plus
    /// `MAX_REFUSED_STREAMS`.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// When the connection next needs [`handle_timeout`](Self::handle_timeout): the earliest
    /// pending deadline, `None` when no timer is armed. Changes after any call that moves
    /// bytes, queues output or fires a timer; ask again after each.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        S::next_timer(self)
    }

    /// Acts on every timer due at `now` (a deadline is due when `now >= deadline`) and says
    /// which one fired, if any. Afterwards flush the pending output; when the connection is
    /// closed, close the socket once it is flushed (at once after
    /// [`TimerKind::SlowPeer`]).
    pub fn handle_timeout(&mut self, now: Timestamp) -> Option<TimerKind> {
        self.clock.observe(now);
        let now = self.clock.latest;
        S::fire_timers(self, now)
    }

    /// Closes the connection because of a timer, keeping an earlier fatal error if any.
    fn close_for(&mut self, e: Error) {
        self.phase = Phase::Closed;
        self.error.get_or_insert(e);
    }

    // ----- events -----

    /// The next event, `None` when more input is needed, or the fatal error that closed the
    /// connection (returned once; afterwards `None` and `is_closed`).
    pub fn poll_event(&mut self) -> Result<Option<Event<'_>>, Error> {
        if self.advance()? {
            Ok(self.current_event())
        } else {
            Ok(None)
        }
    }

    /// Processes input until an event is ready (`true`; read it with
    /// [`current_event`](Self::current_event)) or more input is needed (`false`). Split from
    /// `poll_event` so a caller can loop on reads without holding the event's borrow.
    pub fn advance(&mut self) -> Result<bool, Error> {
        self.current = None;
        self.quiet = None;
        loop {
            if self.is_closed() {
                return Ok(false);
            }
            self.release();
            let buf = &self.rx[self.rx_start..self.rx_end];
            // Until login completes only handshake- and login-sized frames are legitimate, so
            // a peer that has not proved who it is cannot make us buffer 72 KiB: not before
            // the keys exist, and not between HELLO_REPLY and LOGIN_OK either.
            let max_body = if self.is_ready() {
                crate::limits::MAX_BODY_LEN
            } else {
                crate::limits::MAX_HANDSHAKE_BODY
            };
            let decoded = match frame::decode(buf, max_body) {
                Ok(d) => d,
                Err(e) => return Err(self.fail(e)),
            };
            let Decoded::Frame(f) = decoded else {
                if self.rx_start == self.rx_end {
                    self.clock.frame_started = None;
                    self.drop_small_rx();
                }
                return Ok(false);
            };
            let header = f.header;
            let start = self.rx_start;
            let used = f.used;
            self.rx_release = used;
            match self.dispatch(header, start, f.used) {
                Ok(step) => {
                    // A whole valid frame: the peer's activity, as of the input that ended it.
                    self.clock.last_frame = self.clock.input_at;
                    // Bytes after it began the next frame, with the input that ended this one.
                    self.clock.frame_started =
                        (start + used < self.rx_end).then_some(self.clock.input_at);
                    if let Step::Event = step {
                        self.current = Some((header, start));
                        return Ok(true);
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The event found by the last successful [`advance`](Self::advance), until the next call
    /// that takes `&mut self`.
    pub fn current_event(&self) -> Option<Event<'_>> {
        self.current.map(|(h, start)| self.build_event(h, start))
    }

    /// Records a fatal error, queues a best-effort ERROR for the peer and closes.
    fn fail(&mut self, e: Error) -> Error {
        log::debug!(
            "{} connection failed in state {}: {e}",
            S::NAME,
            self.state_name()
        );
        // The framing failures a peer most needs to tell apart (not our protocol at all, bytes
        // damaged in transit, a length it should not have sent) have codes of their own.
        let code = match &e {
            Error::AuthFailed => Some(ErrorCode::AuthFailed),
            Error::UnexpectedMessage { .. } => Some(ErrorCode::UnexpectedMessage),
            Error::BadMagic => Some(ErrorCode::BadMagic),
            Error::BadCrc { .. } => Some(ErrorCode::BadCrc),
            Error::FrameTooLarge { .. } => Some(ErrorCode::FrameTooLarge),
            // An opcode of a newer feature level than ours: the code a newer peer recognises
            // as "not supported here" (PROTOCOL §3.1).
            Error::UnknownOpcode(_) => Some(ErrorCode::UnknownOpcode),
            Error::Remote { .. }
            | Error::NotSupported { .. }
            | Error::Closed
            | Error::ServerKeyRejected => None,
            _ => Some(ErrorCode::Protocol),
        };
        if let Some(code) = code {
            let code = S::fatal_code(self, &e, code);
            let mut body = Vec::new();
            message::encode_error(code as u16, &e.to_string(), &mut body);
            let _ = self.queue(Opcode::Error, 0, 0, &[&body]);
        }
        self.phase = Phase::Closed;
        self.error = Some(e.clone());
        e
    }

    /// Decrypts (when required) and validates one frame; returns whether it yields an event.
    fn dispatch(&mut self, h: Header, start: usize, used: usize) -> Result<Step, Error> {
        // Before keys exist only clear frames are valid; after, only encrypted ones.
        match (&mut self.recv, h.is_encrypted()) {
            (Some(cs), true) => {
                let aad = h.aad();
                let body = &mut self.rx[start + HEADER_LEN..start + used];
                cs.open(&aad, body)?;
            }
            (None, false) => {}
            (Some(_), false) => {
                return Err(Error::UnexpectedMessage {
                    opcode: h.opcode.name(),
                    state: "encrypted session (clear frame)",
                })
            }
            (None, true) => {
                return Err(Error::UnexpectedMessage {
                    opcode: h.opcode.name(),
                    state: "handshake (encrypted frame)",
                })
            }
        }
        let body_len = h.body_len as usize - if h.is_encrypted() { TAG_LEN } else { 0 };
        let body_range = start + HEADER_LEN..start + HEADER_LEN + body_len;
        let state_name = self.state_name();
        let with_state = |e: Error| match e {
            Error::UnexpectedMessage { opcode, .. } => Error::UnexpectedMessage {
                opcode,
                state: state_name,
            },
            e => e,
        };

        // A peer's ERROR is valid in any state, clear or encrypted.
        if h.opcode == Opcode::Error {
            let (code, text) = message::parse_error(&self.rx[body_range])?;
            if let Some(e) = S::map_peer_error(self, h.request_id, code, text) {
                return Err(e);
            }
            let text = text.to_string();
            S::peer_error(self, h.request_id);
            if !self.is_ready() {
                // During handshake/login the peer's error ends the connection (AUTH_FAILED,
                // TOO_MANY_CONNECTIONS, …); the event still reports it first.
                let name = ErrorCode::from_u16(code).map_or("UNKNOWN", |c| c.name());
                self.error = Some(Error::Remote {
                    code,
                    name,
                    message: text,
                });
                self.phase = Phase::Closed;
            }
            return Ok(Step::Event);
        }

        match self.phase {
            Phase::Handshake => {
                S::dispatch_handshake(self, h, start, used, body_range).map_err(with_state)
            }
            Phase::Ready => self.dispatch_ready(h, body_range).map_err(with_state),
            Phase::Closed => Err(Error::Closed),
        }
    }

    fn establish(&mut self, est: Established) {
        self.send = Some(CipherState::new(&est.send_key));
        self.recv = Some(CipherState::new(&est.recv_key));
        self.transcript = est.transcript;
        self.server_static = est.server_static;
        self.params = Some(est.params);
    }

    /// Frames both sides receive once logged in; the rest is the side's.
    fn dispatch_ready(&mut self, h: Header, body: Range<usize>) -> Result<Step, Error> {
        let id = h.request_id;
        match h.opcode {
            Opcode::Ping => {
                message::check_ping(&self.rx[body.clone()])?;
                if !S::admit_cheap(self, id) {
                    self.quiet = Some(Quiet::RateLimited);
                    return Ok(Step::Event);
                }
                let payload = self.rx[body].to_vec();
                self.queue(Opcode::Pong, 0, id, &[&payload])?;
                Ok(Step::Event)
            }
            Opcode::Pong => message::check_ping(&self.rx[body]).map(|_| Step::Event),
            Opcode::Bye => {
                message::parse_empty(&self.rx[body])?;
                self.phase = Phase::Closed;
                Ok(Step::Event)
            }
            _ => S::dispatch_ready(self, h, body),
        }
    }

    fn unexpected(h: Header) -> Error {
        Error::UnexpectedMessage {
            opcode: h.opcode.name(),
            state: "",
        }
    }
}
