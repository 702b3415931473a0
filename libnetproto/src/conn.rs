//! One connection's protocol state machine: handshake, login, then framed encrypted traffic.
//!
//! Trust boundary: everything the peer sends passes through `poll_event`, which decodes,
//! checks CRC, decrypts and validates each frame against the state, and turns any violation
//! into one fatal error. Sans-IO in the manner of quinn-proto: the caller feeds received bytes
//! in (`feed`/`read_buf`), pulls events out (`poll_event`) and bytes to send
//! (`pending_output`/`consume_output`). No sockets, no clock, no threads; randomness comes in
//! as the ephemeral secret at construction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::error::Error;
use crate::frame::{self, Decoded, Frame, Header};
use crate::handshake::{self, ClientHandshake, Established};
use crate::keys::ServerKey;
use crate::limits::{HEADER_LEN, MAX_BUFFERED_INPUT, MAX_CHUNK_DATA, TAG_LEN};
use crate::login::{self, Verifier};
use crate::message::{self, Challenge, JobSubmit, ResultInfo, ServerParams};
use crate::opcode::{flags, ErrorCode, Opcode};
use crate::session::CipherState;

/// Salt, iterations, and PBKDF2(password, salt, iterations).
type SaltedEntry = (Vec<u8>, u32, Zeroizing<[u8; 32]>);

/// Client credentials, shareable by many connections.
pub struct ClientConfig {
    user: String,
    password: Zeroizing<Vec<u8>>,
    /// The last salt/iterations seen and the PBKDF2 output for them: a load test opening a
    /// thousand connections pays the deliberate PBKDF2 cost once, not a thousand times.
    salted_cache: Mutex<Option<SaltedEntry>>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    pub fn new(user: &str, password: &[u8]) -> Result<Self, Error> {
        message::check_user(user)?;
        if password.is_empty() {
            return Err(Error::InvalidArgument("empty password"));
        }
        Ok(ClientConfig {
            user: user.to_string(),
            password: Zeroizing::new(password.to_vec()),
            salted_cache: Mutex::new(None),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn salted(&self, c: &Challenge) -> Zeroizing<[u8; 32]> {
        let mut cache = self.salted_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((salt, iters, salted)) = cache.as_ref() {
            if *salt == c.salt && *iters == c.iterations {
                return salted.clone();
            }
        }
        let salted = login::salted_password(&self.password, &c.salt, c.iterations);
        *cache = Some((c.salt.clone(), c.iterations, salted.clone()));
        salted
    }
}

/// Server identity, users and announced limits, shared by all connections.
pub struct ServerConfig {
    key: ServerKey,
    fake_secret: Zeroizing<[u8; 32]>,
    users: HashMap<String, Verifier>,
    params: ServerParams,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("key", &self.key)
            .field("users", &self.users.len())
            .finish()
    }
}

impl ServerConfig {
    pub fn new(key: ServerKey, params: ServerParams) -> Self {
        // Fake salts must survive restarts (or a prober compares two answers), so they derive
        // from the long-term key rather than from a fresh random secret.
        let mut fake = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, key.secret_bytes().as_ref())
            .expand(b"netproto/1 fake salt", fake.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        ServerConfig {
            key,
            fake_secret: fake,
            users: HashMap::new(),
            params,
        }
    }

    pub fn add_user(&mut self, user: &str, verifier: Verifier) -> Result<(), Error> {
        message::check_user(user)?;
        self.users.insert(user.to_string(), verifier);
        Ok(())
    }

    pub fn public_key(&self) -> &[u8; 32] {
        self.key.public()
    }

    /// Salt length and iterations of the real users' verifiers (the most common shape), so a
    /// fake challenge for an unknown user looks like a real one.
    fn fake_shape(&self) -> (usize, u32) {
        let mut counts: HashMap<(usize, u32), usize> = HashMap::new();
        for v in self.users.values() {
            *counts.entry((v.salt.len(), v.iterations)).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(shape, n)| (*n, *shape))
            .map_or(
                (16, crate::limits::DEFAULT_PBKDF2_ITERATIONS),
                |(shape, _)| shape,
            )
    }

    pub fn params(&self) -> ServerParams {
        self.params
    }
}

/// Which side of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// What the peer did, as seen after validation. Borrowed data lives until the next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Client: the server proved this static key; answer with [`Conn::trust_server_key`].
    ServerKey {
        key: [u8; 32],
    },
    /// Client: login succeeded and the server proved it holds our verifier.
    Ready {
        params: ServerParams,
    },
    /// Server: the client logged in.
    LoggedIn {
        user: &'a str,
    },
    JobSubmit {
        request_id: u64,
        total_len: u64,
        spec: &'a str,
        data: &'a [u8],
        last: bool,
    },
    JobData {
        request_id: u64,
        data: &'a [u8],
        last: bool,
    },
    JobResult {
        request_id: u64,
        info: ResultInfo,
        data: &'a [u8],
        last: bool,
    },
    ResultData {
        request_id: u64,
        data: &'a [u8],
        last: bool,
    },
    Error {
        request_id: u64,
        code: u16,
        message: &'a str,
    },
    Busy {
        request_id: u64,
        retry_after_ms: u32,
    },
    /// A PING arrived; the PONG is already queued.
    Ping {
        request_id: u64,
        payload: &'a [u8],
    },
    Pong {
        request_id: u64,
        payload: &'a [u8],
    },
    StatsRequest {
        request_id: u64,
    },
    /// Raw STATS_REPLY body, already validated; read it with [`message::parse_stats`].
    Stats {
        request_id: u64,
        body: &'a [u8],
    },
    Shutdown {
        grace_ms: u32,
    },
    Bye,
}

enum State {
    ClientHello(ClientHandshake),
    ClientAwaitTrust,
    ClientAwaitChallenge,
    ClientAwaitOk {
        expected: [u8; 32],
    },
    ServerAwaitHello,
    ServerAwaitLogin,
    ServerAwaitProof {
        user: String,
        verifier: Verifier,
        known: bool,
    },
    Ready,
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ClientHello(_) => "client-hello",
            State::ClientAwaitTrust => "client-await-trust",
            State::ClientAwaitChallenge => "client-await-challenge",
            State::ClientAwaitOk { .. } => "client-await-ok",
            State::ServerAwaitHello => "server-await-hello",
            State::ServerAwaitLogin => "server-await-login",
            State::ServerAwaitProof { .. } => "server-await-proof",
            State::Ready => "ready",
            State::Closed => "closed",
        }
    }
}

/// Progress of one inbound chunked stream (an upload on the server, a result on the client).
struct Stream {
    remaining: u64,
    /// The caller refused this request: its remaining chunks are validated and dropped.
    discard: bool,
}

pub struct Conn {
    role: Role,
    state: State,
    client: Option<Arc<ClientConfig>>,
    server: Option<Arc<ServerConfig>>,
    server_ephemeral: Zeroizing<[u8; 32]>,
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
    user: String,
    streams: HashMap<u64, Stream>,
    /// Client: jobs sent and not yet answered by a JOB_RESULT, ERROR or BUSY.
    outstanding: std::collections::HashSet<u64>,
    error: Option<Error>,
    bye_sent: bool,
    /// Header and offset of the frame behind the current event.
    current: Option<(Header, usize)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("role", &self.role)
            .field("state", &self.state.name())
            .finish()
    }
}

impl Conn {
    /// A client connection; HELLO is queued at once. `ephemeral` must be fresh random bytes.
    pub fn client(config: Arc<ClientConfig>, ephemeral: [u8; 32]) -> Self {
        let mut c = Conn::blank(Role::Client);
        let hs = ClientHandshake::start(ephemeral, &mut c.tx);
        c.state = State::ClientHello(hs);
        c.client = Some(config);
        c
    }

    /// A server connection awaiting HELLO. `ephemeral` must be fresh random bytes.
    pub fn server(config: Arc<ServerConfig>, ephemeral: [u8; 32]) -> Self {
        let mut c = Conn::blank(Role::Server);
        c.state = State::ServerAwaitHello;
        c.server_ephemeral = Zeroizing::new(ephemeral);
        c.server = Some(config);
        c
    }

    fn blank(role: Role) -> Self {
        Conn {
            role,
            state: State::Closed,
            client: None,
            server: None,
            server_ephemeral: Zeroizing::new([0u8; 32]),
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
            user: String::new(),
            streams: HashMap::new(),
            outstanding: std::collections::HashSet::new(),
            error: None,
            bye_sent: false,
            current: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Logged in and able to carry requests.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// No more events will come; flush `pending_output` and close the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
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

    pub fn params(&self) -> Option<ServerParams> {
        self.params
    }

    /// Server: the logged-in user's name (empty before login).
    pub fn user(&self) -> &str {
        &self.user
    }

    // ----- input -----

    fn buffered(&self) -> usize {
        self.rx_end - self.rx_start
    }

    /// Room for more input before the caller must drain events.
    pub fn input_room(&self) -> usize {
        MAX_BUFFERED_INPUT.saturating_sub(self.buffered())
    }

    /// Moves unprocessed bytes to the front when that frees enough space to be worth a copy.
    fn compact(&mut self) {
        self.current = None;
        self.release();
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
        } else if self.rx_start > 0 && self.rx_start >= self.rx_end / 2 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
    }

    fn release(&mut self) {
        self.rx_start += self.rx_release;
        self.rx_release = 0;
    }

    /// Makes at least `want` bytes writable after the buffered input. The buffer grows by
    /// doubling from 4 KiB (an idle connection keeps a small one) and its new bytes are zeroed
    /// once, when they are first allocated, not on every read.
    fn reserve_input(&mut self, want: usize) {
        if self.rx.len() - self.rx_end >= want {
            return;
        }
        if self.rx_start > 0 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
        let mut len = self.rx.len().max(4096);
        while len - self.rx_end < want {
            len *= 2;
        }
        self.rx.resize(len, 0);
    }

    /// Appends received bytes; returns how many were taken (fewer when the buffer is full:
    /// poll events, then feed the rest).
    pub fn feed(&mut self, data: &[u8]) -> usize {
        self.compact();
        let n = data.len().min(self.input_room());
        self.reserve_input(n);
        self.rx[self.rx_end..self.rx_end + n].copy_from_slice(&data[..n]);
        self.rx_end += n;
        n
    }

    /// Lets a reader fill the receive buffer directly: `fill` gets a writable slice and returns
    /// how many bytes it wrote (or an error, passed through). Avoids a copy per read.
    pub fn read_buf<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.compact();
        let room = self.input_room();
        if room == 0 {
            return Ok(0);
        }
        // Offer what is free, growing (by doubling) only when little is.
        let free = self.rx.len() - self.rx_end;
        if free < 4096.min(room) {
            self.reserve_input(self.rx.len().max(4096).min(room));
        }
        let window = (self.rx.len() - self.rx_end).min(room);
        let r = fill(&mut self.rx[self.rx_end..self.rx_end + window]);
        let n = *r.as_ref().unwrap_or(&0);
        self.rx_end += n.min(window);
        r
    }

    /// Frees buffer memory while nothing is buffered (call on idle connections: after a large
    /// upload or result, each buffer may hold up to a few hundred KiB).
    pub fn shrink_buffers(&mut self) {
        self.compact();
        if self.rx_end == 0 && self.rx.len() > 4096 {
            self.rx = Vec::new();
        }
        if self.tx_start == self.tx.len() && self.tx.capacity() > 4096 {
            self.tx = Vec::new();
            self.tx_start = 0;
        }
    }

    // ----- output -----

    /// Bytes waiting to be written to the peer.
    pub fn pending_output(&self) -> &[u8] {
        &self.tx[self.tx_start..]
    }

    /// Marks `n` bytes of [`pending_output`](Self::pending_output) as written.
    pub fn consume_output(&mut self, n: usize) {
        self.tx_start = (self.tx_start + n).min(self.tx.len());
        if self.tx_start == self.tx.len() {
            self.tx.clear();
            self.tx_start = 0;
        } else if self.tx_start > 64 * 1024 && self.tx_start > self.tx.len() / 2 {
            self.tx.drain(..self.tx_start);
            self.tx_start = 0;
        }
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
        loop {
            if matches!(self.state, State::Closed) {
                return Ok(false);
            }
            self.release();
            let buf = &self.rx[self.rx_start..self.rx_end];
            // Before the handshake completes only HELLO-sized frames are legitimate, so an
            // unauthenticated peer cannot make us buffer 72 KiB.
            let max_body = if self.recv.is_some() {
                crate::limits::MAX_BODY_LEN
            } else {
                crate::limits::MAX_HANDSHAKE_BODY
            };
            let decoded = match frame::decode(buf, max_body) {
                Ok(d) => d,
                Err(e) => return Err(self.fail(e)),
            };
            let Decoded::Frame(f) = decoded else {
                return Ok(false);
            };
            let header = f.header;
            let start = self.rx_start;
            self.rx_release = f.used;
            match self.dispatch(header, start, f.used) {
                Ok(Step::Continue) => continue,
                Ok(Step::Event) => {
                    self.current = Some((header, start));
                    return Ok(true);
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
            "{:?} connection failed in state {}: {e}",
            self.role,
            self.state.name()
        );
        let code = match &e {
            Error::AuthFailed => Some(ErrorCode::AuthFailed),
            Error::UnexpectedMessage { .. } => Some(ErrorCode::UnexpectedMessage),
            Error::Remote { .. } | Error::Closed | Error::ServerKeyRejected => None,
            _ => Some(ErrorCode::Protocol),
        };
        if let Some(code) = code {
            let not_logged_in = self.role == Role::Server
                && !self.is_ready()
                && matches!(e, Error::UnexpectedMessage { .. });
            let code = if not_logged_in {
                ErrorCode::NotLoggedIn
            } else {
                code
            };
            let mut body = Vec::new();
            message::encode_error(code as u16, &e.to_string(), &mut body);
            let _ = self.queue(Opcode::Error, 0, 0, &[&body]);
        }
        self.state = State::Closed;
        self.error = Some(e.clone());
        e
    }

    /// Decrypts (when required) and validates one frame; returns whether it yields an event.
    fn dispatch(&mut self, h: Header, start: usize, used: usize) -> Result<Step, Error> {
        let unexpected = || Error::UnexpectedMessage {
            opcode: h.opcode.name(),
            state: "",
        };
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
        let state_name = self.state.name();
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
            if self.role == Role::Client {
                self.outstanding.remove(&h.request_id);
            }
            if !self.is_ready() {
                // During handshake/login the peer's error ends the connection (AUTH_FAILED,
                // TOO_MANY_CONNECTIONS, …); the event still reports it first.
                let name = ErrorCode::from_u16(code).map_or("UNKNOWN", |c| c.name());
                self.error = Some(Error::Remote {
                    code,
                    name,
                    message: text.to_string(),
                });
                self.state = State::Closed;
            }
            return Ok(Step::Event);
        }

        match std::mem::replace(&mut self.state, State::Closed) {
            State::ClientHello(hs) => {
                if h.opcode != Opcode::HelloReply {
                    return Err(with_state(unexpected()));
                }
                let raw = &self.rx[start..start + used];
                let f = Frame {
                    header: h,
                    body: &raw[HEADER_LEN..],
                    used,
                };
                let est = hs.finish(&f, raw)?;
                self.establish(est);
                self.state = State::ClientAwaitTrust;
                Ok(Step::Event)
            }
            State::ServerAwaitHello => {
                if h.opcode != Opcode::Hello {
                    return Err(with_state(unexpected()));
                }
                let cfg = self
                    .server
                    .clone()
                    .ok_or(Error::BadState("no server config"))?;
                let raw = &self.rx[start..start + used];
                let f = Frame {
                    header: h,
                    body: &raw[HEADER_LEN..],
                    used,
                };
                let eph = *self.server_ephemeral;
                self.server_ephemeral = Zeroizing::new([0u8; 32]);
                let est =
                    handshake::server_respond(&cfg.key, eph, cfg.params, &f, raw, &mut self.tx)?;
                self.establish(est);
                self.state = State::ServerAwaitLogin;
                Ok(Step::Continue)
            }
            State::ServerAwaitLogin => {
                if h.opcode != Opcode::LoginStart {
                    return Err(with_state(unexpected()));
                }
                let cfg = self
                    .server
                    .clone()
                    .ok_or(Error::BadState("no server config"))?;
                let user = message::parse_login_start(&self.rx[body_range])?.to_string();
                let (verifier, known) = match cfg.users.get(&user) {
                    Some(v) => (v.clone(), true),
                    None => (
                        login::fake_verifier(&cfg.fake_secret, &user, cfg.fake_shape()),
                        false,
                    ),
                };
                let mut body = Vec::new();
                verifier.challenge().encode(&mut body);
                self.queue(Opcode::LoginChallenge, 0, 0, &[&body])?;
                self.state = State::ServerAwaitProof {
                    user,
                    verifier,
                    known,
                };
                Ok(Step::Continue)
            }
            State::ServerAwaitProof {
                user,
                verifier,
                known,
            } => {
                if h.opcode != Opcode::LoginProof {
                    return Err(with_state(unexpected()));
                }
                let proof = message::parse_32(&self.rx[body_range])?;
                let auth = login::auth_message(
                    &self.transcript,
                    &user,
                    &verifier.salt,
                    verifier.iterations,
                );
                // The fake verifier runs the same computation, so timing does not reveal
                // whether the name exists.
                let sig = login::verify_proof(&verifier, &auth, &proof);
                match (sig, known) {
                    (Ok(sig), true) => {
                        self.queue(Opcode::LoginOk, 0, 0, &[&sig])?;
                        self.user = user;
                        self.state = State::Ready;
                        Ok(Step::Event)
                    }
                    _ => Err(Error::AuthFailed),
                }
            }
            State::ClientAwaitTrust => Err(with_state(unexpected())),
            State::ClientAwaitChallenge => {
                if h.opcode != Opcode::LoginChallenge {
                    return Err(with_state(unexpected()));
                }
                let cfg = self
                    .client
                    .clone()
                    .ok_or(Error::BadState("no client config"))?;
                let c = Challenge::parse(&self.rx[body_range])?;
                login::check_challenge(&c)?;
                let salted = cfg.salted(&c);
                let auth = login::auth_message(&self.transcript, &cfg.user, &c.salt, c.iterations);
                let (proof, expected) = login::client_proof(&salted, &auth);
                self.queue(Opcode::LoginProof, 0, 0, &[&proof])?;
                self.state = State::ClientAwaitOk { expected };
                Ok(Step::Continue)
            }
            State::ClientAwaitOk { expected } => {
                if h.opcode != Opcode::LoginOk {
                    return Err(with_state(unexpected()));
                }
                let sig = message::parse_32(&self.rx[body_range])?;
                if !bool::from(subtle::ConstantTimeEq::ct_eq(&sig[..], &expected[..])) {
                    return Err(Error::BadServerSignature);
                }
                self.state = State::Ready;
                Ok(Step::Event)
            }
            State::Ready => {
                self.state = State::Ready;
                self.dispatch_ready(h, body_range).map_err(with_state)
            }
            State::Closed => Err(Error::Closed),
        }
    }

    fn establish(&mut self, est: Established) {
        self.send = Some(CipherState::new(&est.send_key));
        self.recv = Some(CipherState::new(&est.recv_key));
        self.transcript = est.transcript;
        self.server_static = est.server_static;
        self.params = Some(est.params);
    }

    fn dispatch_ready(&mut self, h: Header, body: std::ops::Range<usize>) -> Result<Step, Error> {
        let unexpected = Error::UnexpectedMessage {
            opcode: h.opcode.name(),
            state: "",
        };
        let id = h.request_id;
        let server = self.role == Role::Server;
        match h.opcode {
            Opcode::JobSubmit | Opcode::JobResult if server == (h.opcode == Opcode::JobSubmit) => {
                let (total, data_len) = if server {
                    let j = JobSubmit::parse(&self.rx[body])?;
                    (j.total_len, j.data.len())
                } else {
                    let (info, data) = ResultInfo::parse(&self.rx[body])?;
                    (info.total_len, data.len())
                };
                if id == 0 {
                    return Err(Error::Malformed(
                        "request id 0 is reserved for the connection",
                    ));
                }
                if !server && !self.outstanding.remove(&id) {
                    return Err(Error::Malformed(
                        "JOB_RESULT for a request this client did not send",
                    ));
                }
                if self.streams.contains_key(&id) {
                    return Err(Error::Malformed(
                        "request id already has a stream in progress",
                    ));
                }
                self.streams.insert(
                    id,
                    Stream {
                        remaining: total,
                        discard: false,
                    },
                );
                self.advance_stream(id, data_len, h.is_last())?;
                Ok(Step::Event)
            }
            Opcode::JobData | Opcode::ResultData if server == (h.opcode == Opcode::JobData) => {
                message::check_chunk(&self.rx[body.clone()])?;
                let discard = self
                    .streams
                    .get(&id)
                    .ok_or(Error::Malformed(
                        "data for a request with no stream in progress",
                    ))?
                    .discard;
                self.advance_stream(id, body.len(), h.is_last())?;
                Ok(if discard { Step::Continue } else { Step::Event })
            }
            Opcode::Ping => {
                let payload = self.rx[body].to_vec();
                message::check_ping(&payload)?;
                self.queue(Opcode::Pong, 0, id, &[&payload])?;
                Ok(Step::Event)
            }
            Opcode::Pong => message::check_ping(&self.rx[body]).map(|_| Step::Event),
            Opcode::StatsRequest if server => {
                message::parse_empty(&self.rx[body]).map(|_| Step::Event)
            }
            Opcode::StatsReply if !server => {
                message::parse_stats(&self.rx[body]).map(|_| Step::Event)
            }
            Opcode::Busy | Opcode::Shutdown if !server => {
                message::parse_u32(&self.rx[body])?;
                if h.opcode == Opcode::Busy {
                    self.outstanding.remove(&id);
                }
                Ok(Step::Event)
            }
            Opcode::Bye => {
                message::parse_empty(&self.rx[body])?;
                self.state = State::Closed;
                Ok(Step::Event)
            }
            _ => Err(unexpected),
        }
    }

    fn advance_stream(&mut self, id: u64, n: usize, last: bool) -> Result<(), Error> {
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(Error::Malformed("no stream"))?;
        s.remaining = s
            .remaining
            .checked_sub(n as u64)
            .ok_or(Error::Malformed("chunks exceed the declared total length"))?;
        match (last, s.remaining == 0) {
            (true, true) => {
                self.streams.remove(&id);
                Ok(())
            }
            (false, false) => Ok(()),
            // LAST must sit exactly on the frame that completes the declared length.
            (false, true) => Err(Error::Malformed(
                "declared total length reached without the LAST flag",
            )),
            (true, false) => Err(Error::Malformed(
                "last chunk before the declared total length",
            )),
        }
    }

    fn build_event(&self, h: Header, start: usize) -> Event<'_> {
        let body_len = h.body_len as usize - if h.is_encrypted() { TAG_LEN } else { 0 };
        let body = &self.rx[start + HEADER_LEN..start + HEADER_LEN + body_len];
        let id = h.request_id;
        let last = h.is_last();
        // Every body below was validated by `dispatch`, so these parses cannot fail; the
        // fallbacks only keep this function total.
        match h.opcode {
            Opcode::HelloReply => Event::ServerKey {
                key: self.server_static,
            },
            Opcode::LoginOk => Event::Ready {
                params: self.params.unwrap_or(ServerParams {
                    max_chunk: MAX_CHUNK_DATA as u32,
                    max_upload: 0,
                    max_in_flight: 1,
                }),
            },
            Opcode::LoginProof => Event::LoggedIn { user: &self.user },
            Opcode::JobSubmit => match JobSubmit::parse(body) {
                Ok(j) => Event::JobSubmit {
                    request_id: id,
                    total_len: j.total_len,
                    spec: j.spec,
                    data: j.data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::JobData => Event::JobData {
                request_id: id,
                data: body,
                last,
            },
            Opcode::JobResult => match ResultInfo::parse(body) {
                Ok((info, data)) => Event::JobResult {
                    request_id: id,
                    info,
                    data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::ResultData => Event::ResultData {
                request_id: id,
                data: body,
                last,
            },
            Opcode::Error => match message::parse_error(body) {
                Ok((code, message)) => Event::Error {
                    request_id: id,
                    code,
                    message,
                },
                Err(_) => Event::Bye,
            },
            Opcode::Busy => Event::Busy {
                request_id: id,
                retry_after_ms: message::parse_u32(body).unwrap_or(0),
            },
            Opcode::Shutdown => Event::Shutdown {
                grace_ms: message::parse_u32(body).unwrap_or(0),
            },
            Opcode::Ping => Event::Ping {
                request_id: id,
                payload: body,
            },
            Opcode::Pong => Event::Pong {
                request_id: id,
                payload: body,
            },
            Opcode::StatsRequest => Event::StatsRequest { request_id: id },
            Opcode::StatsReply => Event::Stats {
                request_id: id,
                body,
            },
            Opcode::Bye | Opcode::Hello | Opcode::LoginStart | Opcode::LoginChallenge => Event::Bye,
        }
    }

    // ----- decisions and sends -----

    /// Client: accept (after checking the pinning table) or refuse the server's key. Login
    /// starts only after acceptance, so no proof is ever sent to an unverified server.
    pub fn trust_server_key(&mut self, accept: bool) -> Result<(), Error> {
        if !matches!(self.state, State::ClientAwaitTrust) {
            return Err(Error::BadState("no server key is awaiting a decision"));
        }
        if !accept {
            self.state = State::Closed;
            self.error = Some(Error::ServerKeyRejected);
            return Ok(());
        }
        let cfg = self
            .client
            .clone()
            .ok_or(Error::BadState("no client config"))?;
        let mut body = Vec::new();
        message::encode_login_start(&cfg.user, &mut body)?;
        self.queue(Opcode::LoginStart, 0, 0, &[&body])?;
        self.state = State::ClientAwaitChallenge;
        Ok(())
    }

    fn require_ready(&self, role: Role) -> Result<(), Error> {
        if !self.is_ready() {
            return Err(Error::BadState("connection is not logged in"));
        }
        if self.role != role {
            return Err(Error::BadState("message not sent by this side"));
        }
        Ok(())
    }

    /// Appends one frame: encrypted once keys exist, clear before.
    fn queue(&mut self, op: Opcode, flags_byte: u8, id: u64, parts: &[&[u8]]) -> Result<(), Error> {
        let plain: usize = parts.iter().map(|p| p.len()).sum();
        let at = frame::begin(&mut self.tx);
        for p in parts {
            self.tx.extend_from_slice(p);
        }
        let result = match self.send.as_mut() {
            None => frame::finish(&mut self.tx, at, op, flags_byte, id).map(|_| ()),
            Some(cs) => {
                let h = Header {
                    opcode: op,
                    flags: flags_byte | flags::ENCRYPTED,
                    body_len: (plain + TAG_LEN) as u32,
                    request_id: id,
                };
                if plain + TAG_LEN > crate::limits::MAX_BODY_LEN {
                    Err(Error::FrameTooLarge {
                        len: (plain + TAG_LEN) as u64,
                        max: crate::limits::MAX_BODY_LEN as u64,
                    })
                } else {
                    match cs.seal(&h.aad(), &mut self.tx[at + HEADER_LEN..]) {
                        Ok(tag) => {
                            self.tx.extend_from_slice(&tag);
                            frame::write_header_with_crc(&mut self.tx, at, &h);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        if result.is_err() {
            self.tx.truncate(at);
        }
        result
    }

    fn last_flag(last: bool) -> u8 {
        if last {
            flags::LAST
        } else {
            0
        }
    }

    fn check_data(data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_CHUNK_DATA {
            return Err(Error::InvalidArgument("chunk data larger than 64 KiB"));
        }
        Ok(())
    }

    /// Client: starts a job; `data` is the first chunk (may be all of it when `last`).
    pub fn send_job(
        &mut self,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready(Role::Client)?;
        Self::check_data(data)?;
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
        if self.outstanding.contains(&id) {
            return Err(Error::InvalidArgument("request id already in flight"));
        }
        let mut head = Vec::with_capacity(10 + spec.len());
        JobSubmit::encode_head(total_len, spec, &mut head)?;
        self.queue(Opcode::JobSubmit, Self::last_flag(last), id, &[&head, data])?;
        self.outstanding.insert(id);
        Ok(())
    }

    pub fn send_job_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<(), Error> {
        self.require_ready(Role::Client)?;
        Self::check_data(data)?;
        self.queue(Opcode::JobData, Self::last_flag(last), id, &[data])
    }

    /// Server: starts a job's result; `data` is the first chunk.
    pub fn send_result(
        &mut self,
        id: u64,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        Self::check_data(data)?;
        let mut head = Vec::with_capacity(ResultInfo::LEN);
        info.encode(&mut head);
        self.queue(Opcode::JobResult, Self::last_flag(last), id, &[&head, data])
    }

    pub fn send_result_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        Self::check_data(data)?;
        self.queue(Opcode::ResultData, Self::last_flag(last), id, &[data])
    }

    /// Either side: an error for request `id` (0: the connection). Allowed in any state but
    /// closed, so a server can refuse a connection before the handshake.
    pub fn send_error(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<(), Error> {
        // Closed covers a failed connection and one that sent or received BYE: nothing may
        // follow BYE. A server refusing a fresh connection is in its first state, not Closed.
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut body = Vec::new();
        message::encode_error(code as u16, text, &mut body);
        self.queue(Opcode::Error, 0, id, &[&body])
    }

    /// Server: refuses request `id` and drops the rest of its upload as it arrives.
    pub fn reject_request(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        if let Some(s) = self.streams.get_mut(&id) {
            s.discard = true;
        }
        self.send_error(id, code, text)
    }

    /// Server: refuses request `id` for load; its upload (if any) is dropped as it arrives.
    pub fn send_busy(&mut self, id: u64, retry_after_ms: u32) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        if let Some(s) = self.streams.get_mut(&id) {
            s.discard = true;
        }
        self.queue(Opcode::Busy, 0, id, &[&retry_after_ms.to_be_bytes()])
    }

    pub fn send_shutdown(&mut self, grace_ms: u32) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        self.queue(Opcode::Shutdown, 0, 0, &[&grace_ms.to_be_bytes()])
    }

    pub fn send_stats(&mut self, id: u64, entries: &[(&str, u64)]) -> Result<(), Error> {
        self.require_ready(Role::Server)?;
        let mut body = Vec::new();
        message::encode_stats(entries.iter().copied(), &mut body)?;
        self.queue(Opcode::StatsReply, 0, id, &[&body])
    }

    pub fn send_stats_request(&mut self, id: u64) -> Result<(), Error> {
        self.require_ready(Role::Client)?;
        self.queue(Opcode::StatsRequest, 0, id, &[])
    }

    pub fn send_ping(&mut self, id: u64, payload: &[u8]) -> Result<(), Error> {
        if !self.is_ready() {
            return Err(Error::BadState("connection is not logged in"));
        }
        message::check_ping(payload)
            .map_err(|_| Error::InvalidArgument("ping payload longer than 256 bytes"))?;
        self.queue(Opcode::Ping, 0, id, &[payload])
    }

    /// Orderly close: queues BYE; the connection accepts no more sends.
    pub fn send_bye(&mut self) -> Result<(), Error> {
        if self.bye_sent || !self.is_ready() {
            return Err(Error::BadState("BYE needs a logged-in session, once"));
        }
        self.bye_sent = true;
        self.queue(Opcode::Bye, 0, 0, &[])?;
        self.state = State::Closed;
        Ok(())
    }
}

enum Step {
    Continue,
    Event,
}
