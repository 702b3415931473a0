//! Fuzz target bodies, shared by the libFuzzer binaries in `fuzz/` and by the corpus replay
//! test (libnetproto's `fuzz_replay` unit test includes this file), so the logic that finds a
//! bug is the logic that keeps it fixed.
//!
//! Trust boundary: drives the code that faces untrusted network bytes — the frame decoder, the
//! message parsers, and a server `Conn` from the first byte of a connection through login and
//! into the session — with arbitrary input, and turns every broken invariant into a panic (the
//! signal a fuzzer understands). Never part of a normal build of the library: the fuzz crate
//! reaches the internals through libnetproto's `fuzzing` feature, the replay test from inside
//! the crate. `super::np` is the library in both places. Deterministic: fixed keys and
//! ephemerals, no clock, no I/O, no randomness, so an input behaves the same under the fuzzer,
//! in the replay test and in a debugger.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use super::np::conn::{ClientConfig, ClientConn, Event, ServerConfig, ServerConn, Timestamp};
use super::np::error::Error;
use super::np::frame::{self, Decoded, Frame, Header};
use super::np::handshake::{self, ClientHandshake};
use super::np::keys::ServerKey;
use super::np::limits::{
    HEADER_AAD_LEN, HEADER_LEN, MAX_BODY_LEN, MAX_CHUNK_DATA, MAX_ERROR_TEXT, MAX_HANDSHAKE_BODY,
    MAX_PING_PAYLOAD, MAX_SPEC_LEN, MIN_PBKDF2_ITERATIONS, TAG_LEN,
};
use super::np::login::{self, Verifier};
use super::np::message::{self, Challenge, Hello, JobSubmit, ResultInfo, ServerParams};
use super::np::opcode::{flags, ErrorCode, Opcode};
use super::np::session::CipherState;

// ===================================================================================== frames

/// `max_body` values the first input byte chooses from: the production limit, "no limit" (the
/// decoder must clamp it), zero, and the tight limits a handshake-phase reader might use.
const MAX_BODY_CHOICES: [usize; 8] = [
    MAX_BODY_LEN,
    usize::MAX,
    0,
    Hello::LEN,
    handshake::REPLY_LEN,
    MAX_HANDSHAKE_BODY,
    MAX_CHUNK_DATA,
    HEADER_LEN,
];

/// Config bit of `frame_decoder`: recompute each frame's CRC before decoding it, so mutations of
/// the body reach the message parsers instead of dying at the checksum.
const FIX_CRC: u8 = 0x80;

/// Decodes a byte stream frame by frame the way a receiver does and checks every answer.
///
/// Input: one config byte (low 3 bits pick `max_body`, bit 7 fixes CRCs), then the stream.
pub fn frame_decoder(data: &[u8]) {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let max_body = MAX_BODY_CHOICES[usize::from(config & 0x07)];
    let mut buf = stream.to_vec();
    let mut pos = 0;
    loop {
        if config & FIX_CRC != 0 {
            fix_crc(&mut buf[pos..]);
        }
        let rest = &buf[pos..];
        match frame::decode(rest, max_body) {
            Ok(Decoded::Frame(f)) => {
                check_frame(rest, &f, max_body);
                pos += f.used;
            }
            Ok(Decoded::NeedMore(n)) => {
                check_need_more(rest, n, max_body);
                break;
            }
            Err(e) => {
                check_decode_error(rest, &e, max_body);
                break;
            }
        }
    }
    assert!(pos <= buf.len());
}

/// Writes the correct CRC into the frame at the start of `buf`, if the whole frame is there.
fn fix_crc(buf: &mut [u8]) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let total = HEADER_LEN + declared_len(buf);
    if buf.len() < total {
        return;
    }
    let crc = super::np::crc::crc32c_parts(&[&buf[..HEADER_AAD_LEN], &buf[HEADER_LEN..total]]);
    buf[HEADER_AAD_LEN..HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
}

/// The body length a header declares (`buf` holds at least 8 bytes).
fn declared_len(buf: &[u8]) -> usize {
    u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize
}

fn check_frame(rest: &[u8], f: &Frame<'_>, max_body: usize) {
    let limit = max_body.min(MAX_BODY_LEN);
    assert!(
        f.used >= HEADER_LEN && f.used <= rest.len(),
        "used out of range"
    );
    assert_eq!(f.used, HEADER_LEN + f.body.len());
    assert_eq!(f.header.body_len as usize, f.body.len());
    assert!(f.body.len() <= limit, "body above the limit was accepted");
    // The body is the input's own bytes, not a copy or a shifted window.
    assert_eq!(f.body, &rest[HEADER_LEN..f.used]);
    assert_eq!(f.header.aad()[..], rest[..HEADER_AAD_LEN]);
    assert!(!f.header.is_last() || f.header.opcode.is_chunked());
    // Decoding is a pure function of the frame's own bytes: trailing bytes change nothing.
    assert_eq!(
        frame::decode(&rest[..f.used], max_body),
        Ok(Decoded::Frame(*f))
    );
    // Every prefix of a good frame asks for more input (never an error, never a frame), and
    // once the header is in, for exactly the rest of the frame.
    for k in (0..f.used.min(HEADER_LEN + 1)).chain([f.used - 1]) {
        match frame::decode(&rest[..k], max_body) {
            Ok(Decoded::NeedMore(m)) => {
                assert!(m > 0 && k + m <= f.used, "prefix {k}: NeedMore({m})");
                if k >= HEADER_LEN {
                    assert_eq!(k + m, f.used, "prefix {k}: NeedMore({m})");
                }
            }
            other => panic!("prefix {k} of a valid frame decoded as {other:?}"),
        }
    }
    // The encoder reproduces the frame byte for byte (header, flags, id, CRC).
    let mut again = Vec::new();
    let h = frame::encode(
        &mut again,
        f.header.opcode,
        f.header.flags,
        f.header.request_id,
        f.body,
    )
    .expect("a decoded frame must re-encode");
    assert_eq!(h, f.header);
    assert_eq!(again, &rest[..f.used], "re-encoded frame differs");
    // Bodies of encrypted frames are ciphertext, but the parsers must survive any bytes, and
    // the round trips below hold for whatever they accept.
    check_body(f.header.opcode, f.body);
}

fn check_need_more(rest: &[u8], n: usize, max_body: usize) {
    assert!(n > 0, "NeedMore(0) would make a reader spin");
    let limit = max_body.min(MAX_BODY_LEN);
    // A reader may wait for exactly `n` bytes, so asking for more than the frame needs would
    // hang it on a peer that sends one frame and waits for the answer.
    let need = if rest.len() >= 8 {
        (HEADER_LEN + declared_len(rest)).saturating_sub(rest.len())
    } else {
        HEADER_LEN - rest.len()
    };
    assert!(n <= need, "NeedMore({n}) but the frame needs only {need}");
    if rest.len() >= HEADER_LEN {
        assert_eq!(n, need);
    }
    assert!(
        rest.len() + n <= HEADER_LEN + limit,
        "waits for an oversized frame"
    );
}

fn check_decode_error(rest: &[u8], e: &Error, max_body: usize) {
    assert!(
        matches!(
            e,
            Error::BadMagic
                | Error::BadVersion(_)
                | Error::BadFlags(_)
                | Error::FrameTooLarge { .. }
                | Error::UnknownOpcode(_)
                | Error::BadReserved
                | Error::BadCrc { .. }
        ),
        "decode returned a non-framing error {e:?}"
    );
    let _ = e.to_string();
    // An error is final: more bytes cannot turn it into a frame (a receiver closes at once).
    let mut longer = rest.to_vec();
    longer.extend_from_slice(&[0u8; HEADER_LEN + 8]);
    assert_eq!(frame::decode(&longer, max_body).as_ref(), Err(e));
    // A prefix either needs more or already fails the same way; it never yields a frame.
    for k in (0..rest.len().min(HEADER_LEN + 1)).chain([rest.len().saturating_sub(1)]) {
        match frame::decode(&rest[..k], max_body) {
            Ok(Decoded::NeedMore(m)) => assert!(m > 0),
            Err(pe) => assert_eq!(&pe, e, "prefix {k} fails differently"),
            Ok(Decoded::Frame(_)) => panic!("prefix {k} of a bad frame decoded as a frame"),
        }
    }
}

/// Runs the parser(s) of `op` on `body`; whatever they accept must encode back to `body`.
fn check_body(op: Opcode, body: &[u8]) {
    let mut out = Vec::new();
    match op {
        Opcode::Hello => {
            if let Ok(h) = Hello::parse(body) {
                h.encode(&mut out);
                assert_eq!(out, body);
            }
        }
        Opcode::HelloReply => {
            // e_s, then two AEAD boxes: nothing to parse without the keys, but the params
            // parser must survive the bytes.
            if let Ok(p) = ServerParams::parse(body) {
                p.encode(&mut out);
                assert_eq!(out, body);
            }
        }
        Opcode::LoginStart => {
            if let Ok(user) = message::parse_login_start(body) {
                message::check_user(user).expect("parsed user name must be valid");
                message::encode_login_start(user, &mut out).expect("parsed user re-encodes");
                assert_eq!(out, body);
            }
        }
        Opcode::LoginChallenge => {
            if let Ok(c) = Challenge::parse(body) {
                c.encode(&mut out);
                assert_eq!(out, body);
                let _ = login::check_challenge(&c);
            }
        }
        Opcode::LoginProof | Opcode::LoginOk => {
            if let Ok(a) = message::parse_32(body) {
                assert_eq!(a[..], body[..]);
            }
        }
        Opcode::JobSubmit => {
            if let Ok(j) = JobSubmit::parse(body) {
                JobSubmit::encode_head(j.total_len, j.spec, &mut out).expect("spec re-encodes");
                out.extend_from_slice(j.data);
                assert_eq!(out, body);
            }
        }
        Opcode::JobResult => {
            if let Ok((info, data)) = ResultInfo::parse(body) {
                info.encode(&mut out);
                out.extend_from_slice(data);
                assert_eq!(out, body);
            }
        }
        Opcode::JobSubmitMulti => {
            if let Ok(j) = JobSubmit::parse(body) {
                JobSubmit::encode_head(j.total_len, j.spec, &mut out).expect("spec re-encodes");
                out.extend_from_slice(j.data);
                assert_eq!(out, body);
                let _ = message::variant_count(j.spec);
            }
        }
        Opcode::VariantResult => {
            if let Ok((index, info, data)) = message::parse_variant_result(body) {
                message::encode_variant_result_head(index, &info, &mut out);
                out.extend_from_slice(data);
                assert_eq!(out, body);
            }
        }
        Opcode::VariantError => {
            if let Ok((index, code, text)) = message::parse_variant_error(body) {
                message::encode_variant_error(index, code, text, &mut out);
                assert_eq!(out, body);
            }
        }
        Opcode::JobData | Opcode::ResultData => {
            assert_eq!(
                message::check_chunk(body).is_ok(),
                body.len() <= MAX_CHUNK_DATA
            );
        }
        Opcode::Ping | Opcode::Pong => {
            assert_eq!(
                message::check_ping(body).is_ok(),
                body.len() <= MAX_PING_PAYLOAD
            );
        }
        Opcode::StatsRequest | Opcode::Bye | Opcode::Probe => {
            assert_eq!(message::parse_empty(body).is_ok(), body.is_empty());
        }
        Opcode::ProbeReply => {
            // One status byte; the client's parser checks it (probe::parse_reply), over the
            // whole frame.
            let mut f = Vec::new();
            if frame::encode(&mut f, Opcode::ProbeReply, 0, 0, body).is_ok() {
                let ok = super::np::probe::parse_reply(&f).is_ok();
                assert_eq!(ok, body.len() == 1 && (1..=3).contains(&body[0]));
            }
        }
        Opcode::StatsReply => {
            if let Ok(stats) = message::parse_stats(body) {
                message::encode_stats(stats.iter().map(|(k, v)| (k.as_str(), *v)), &mut out)
                    .expect("parsed stats re-encode");
                assert_eq!(out, body);
            }
        }
        Opcode::Error => {
            if let Ok((code, text)) = message::parse_error(body) {
                assert!(text.len() <= MAX_ERROR_TEXT);
                message::encode_error(code, text, &mut out);
                assert_eq!(out, body);
            }
        }
        Opcode::Busy | Opcode::Shutdown => {
            if let Ok(v) = message::parse_u32(body) {
                assert_eq!(v.to_be_bytes()[..], body[..]);
            }
        }
    }
}

// =========================================================================== server session

/// Modes of `server_handshake`, chosen by the first input byte (mod 3).
const MODE_RAW: u8 = 0;
const MODE_AFTER_HELLO: u8 = 1;
const MODE_SCRIPT: u8 = 2;

/// Frame record bits of a script (besides `flags::LAST`); see [`Harness::run_script`].
const HOLD: u8 = 0x10;
const CLEAR: u8 = 0x20;
const PLUS_64K: u8 = 0x40;
const FILL: u8 = 0x80;

const USER: &str = "alice";
const PASSWORD: &[u8] = b"correct horse battery staple";
const SALT: [u8; 16] = [0x5a; 16];
/// The cheapest count a verifier may have: the fixture pays PBKDF2 once per process.
const ITERATIONS: u32 = MIN_PBKDF2_ITERATIONS;
const SERVER_SECRET: [u8; 32] = [0x11; 32];
const SERVER_EPHEMERAL: [u8; 32] = [0x22; 32];
const CLIENT_EPHEMERAL: [u8; 32] = [0x33; 32];
const PARAMS: ServerParams = ServerParams {
    max_chunk: MAX_CHUNK_DATA as u32,
    max_upload: 1 << 20,
    max_in_flight: 4,
};

/// Everything that is the same for every input, built once per process: with fixed keys the
/// handshake is deterministic, so the harness knows the session keys and a valid login proof
/// without running a client's PBKDF2 per input.
struct Fixture {
    config: Arc<ServerConfig>,
    /// The HELLO a real client `Conn` sends.
    hello: Vec<u8>,
    /// The server's answer to it (the same every time, for the fixed server ephemeral).
    reply: Vec<u8>,
    c2s: [u8; 32],
    s2c: [u8; 32],
    transcript: [u8; 32],
    login_start: Vec<u8>,
    /// LOGIN_PROOF body for `USER` on this transcript.
    proof: [u8; 32],
    /// LOGIN_OK body the server must answer that proof with.
    server_signature: [u8; 32],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::build)
}

impl Fixture {
    fn build() -> Fixture {
        let mut cfg = ServerConfig::new(ServerKey::from_secret(SERVER_SECRET), PARAMS);
        let verifier = Verifier::create(PASSWORD, &SALT, ITERATIONS).expect("fixture verifier");
        cfg.add_user(USER, verifier).expect("fixture user");
        let config = Arc::new(cfg);

        let client_cfg = Arc::new(ClientConfig::new(USER, PASSWORD).expect("fixture client"));
        let mut client = ClientConn::new(client_cfg, CLIENT_EPHEMERAL, Timestamp::ZERO);
        let hello = client.pending_output().to_vec();
        client.consume_output(hello.len(), Timestamp::ZERO);
        // The same handshake by hand: `Conn` keeps its keys private, the harness needs them.
        let mut again = Vec::new();
        let hs = ClientHandshake::start(CLIENT_EPHEMERAL, &mut again);
        assert_eq!(
            again, hello,
            "Conn::client and ClientHandshake disagree on HELLO"
        );

        let mut server = ServerConn::new(config.clone(), SERVER_EPHEMERAL, Timestamp::ZERO);
        assert_eq!(server.feed(&hello, Timestamp::ZERO), hello.len());
        assert!(server.poll_event().expect("fixture HELLO").is_none());
        let reply = server.pending_output().to_vec();
        assert_eq!(client.feed(&reply, Timestamp::ZERO), reply.len());
        match client.poll_event() {
            Ok(Some(Event::ServerKey { key })) => assert_eq!(&key, config.public_key()),
            other => panic!("fixture client rejected HELLO_REPLY: {other:?}"),
        }
        let Ok(Decoded::Frame(f)) = frame::decode(&reply, MAX_BODY_LEN) else {
            panic!("fixture HELLO_REPLY does not decode");
        };
        let est = hs.finish(&f, &reply[..f.used]).expect("fixture handshake");
        assert_eq!(&est.transcript, client.transcript_hash());
        assert_eq!(&est.transcript, server.transcript_hash());

        let salted = login::salted_password(PASSWORD, &SALT, ITERATIONS);
        let auth = login::auth_message(&est.transcript, USER, &SALT, ITERATIONS);
        let (proof, server_signature) = login::client_proof(&salted, &auth);
        let mut login_start = Vec::new();
        message::encode_login_start(USER, &mut login_start).expect("fixture user name");
        Fixture {
            config,
            hello,
            reply,
            c2s: *est.send_key,
            s2c: *est.recv_key,
            transcript: est.transcript,
            login_start,
            proof,
            server_signature,
        }
    }
}

/// Drives a server `Conn` with the input, delivered in pieces, and checks what it reports.
///
/// Input: `mode | split | rest`. `split` chooses the piece sizes (0: all at once; bit 7: deliver
/// through `read_buf` instead of `feed`). Modes:
/// - raw: `rest` is the byte stream of a fresh connection;
/// - after-hello: a valid HELLO, then `rest` as raw bytes;
/// - script: a valid HELLO, then `rest` read as records that the harness turns into frames
///   sealed with the session key (the fuzzer cannot forge the AEAD itself), valid login steps,
///   raw bytes, and calls of the server's own API; see [`Harness::run_script`].
pub fn server_handshake(data: &[u8]) {
    run_server(data);
}

fn run_server(data: &[u8]) -> Harness<'static> {
    let mode = data.first().copied().unwrap_or(MODE_RAW) % 3;
    let split = data.get(1).copied().unwrap_or(0);
    let rest = data.get(2..).unwrap_or(&[]);
    let mut h = Harness::new(fixture(), split);
    match mode {
        MODE_RAW => h.send(rest),
        MODE_AFTER_HELLO => {
            h.hello();
            h.send(rest);
        }
        _ => {
            h.hello();
            h.run_script(rest);
        }
    }
    h.drain();
    h
}

/// Piece sizes for delivering a byte stream, from a one-byte seed.
struct Splitter {
    state: u32,
    whole: bool,
    read_buf: bool,
}

impl Splitter {
    fn new(seed: u8) -> Self {
        Splitter {
            state: u32::from(seed).wrapping_mul(0x9e37_79b9) | 1,
            whole: seed & 0x7f == 0,
            read_buf: seed & 0x80 != 0,
        }
    }

    fn next_len(&mut self, avail: usize) -> usize {
        if self.whole {
            return avail;
        }
        // xorshift32: cheap, and the same sequence on every platform.
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        let cap = [1, 7, 100, 5000][(x & 3) as usize];
        (1 + (x >> 2) as usize % cap).min(avail)
    }
}

/// Owned summary of an event (events borrow the connection the harness must keep driving).
#[derive(Debug)]
enum Seen {
    LoggedIn(String),
    JobSubmit {
        id: u64,
        total: u64,
        len: usize,
        last: bool,
    },
    JobData {
        id: u64,
        len: usize,
        last: bool,
    },
    Ping,
    Pong,
    StatsRequest,
    Error,
    Bye,
    RateLimited,
    Discarded {
        id: u64,
        len: usize,
        last: bool,
    },
    Probe,
    ClientOnly(&'static str),
}

impl Seen {
    fn of(e: &Event<'_>) -> Seen {
        match *e {
            Event::LoggedIn { user } => Seen::LoggedIn(user.to_string()),
            Event::JobSubmit {
                request_id,
                total_len,
                spec,
                data,
                last,
            } => {
                assert!(spec.len() <= MAX_SPEC_LEN && data.len() <= MAX_CHUNK_DATA);
                Seen::JobSubmit {
                    id: request_id,
                    total: total_len,
                    len: data.len(),
                    last,
                }
            }
            // A multi-output job's upload is the same stream as a single job's.
            Event::JobSubmitMulti {
                request_id,
                total_len,
                variants,
                data,
                last,
            } => {
                assert!(variants.len() <= MAX_SPEC_LEN && data.len() <= MAX_CHUNK_DATA);
                Seen::JobSubmit {
                    id: request_id,
                    total: total_len,
                    len: data.len(),
                    last,
                }
            }
            Event::JobData {
                request_id,
                data,
                last,
            } => {
                assert!(data.len() <= MAX_CHUNK_DATA);
                Seen::JobData {
                    id: request_id,
                    len: data.len(),
                    last,
                }
            }
            Event::Ping { payload, .. } => {
                assert!(payload.len() <= MAX_PING_PAYLOAD);
                Seen::Ping
            }
            Event::Pong { payload, .. } => {
                assert!(payload.len() <= MAX_PING_PAYLOAD);
                Seen::Pong
            }
            Event::StatsRequest { .. } => Seen::StatsRequest,
            Event::Error { message, .. } => {
                assert!(message.len() <= MAX_ERROR_TEXT);
                Seen::Error
            }
            Event::Bye => Seen::Bye,
            Event::Probe { .. } => Seen::Probe,
            Event::RateLimited { .. } => Seen::RateLimited,
            Event::Discarded {
                request_id,
                len,
                last,
            } => {
                assert!(len <= MAX_CHUNK_DATA);
                Seen::Discarded {
                    id: request_id,
                    len,
                    last,
                }
            }
            Event::ServerKey { .. } => Seen::ClientOnly("ServerKey"),
            Event::Ready { .. } => Seen::ClientOnly("Ready"),
            Event::JobResult { .. } => Seen::ClientOnly("JobResult"),
            Event::VariantResult { .. } => Seen::ClientOnly("VariantResult"),
            Event::VariantError { .. } => Seen::ClientOnly("VariantError"),
            Event::ResultData { .. } => Seen::ClientOnly("ResultData"),
            Event::Busy { .. } => Seen::ClientOnly("Busy"),
            Event::Stats { .. } => Seen::ClientOnly("Stats"),
            Event::Shutdown { .. } => Seen::ClientOnly("Shutdown"),
        }
    }
}

/// The harness's model of one upload, to cross-check the stream bookkeeping of `Conn`.
struct Upload {
    remaining: u64,
    /// Refused by the harness (reject/busy): its later chunks are dropped without events, and
    /// the model no longer knows when it ends.
    refused: bool,
}

struct Harness<'f> {
    fx: &'f Fixture,
    server: ServerConn,
    split: Splitter,
    /// The harness's own client direction (only in the modes that start with a valid HELLO).
    sealer: Option<CipherState>,
    /// Opens what the server sends, to check it is authentic and well-formed.
    opener: Option<CipherState>,
    /// The next server frame must be the fixture's HELLO_REPLY.
    expect_reply: bool,
    /// The server sent HELLO_REPLY: every later frame must be encrypted, none before.
    keyed: bool,
    logged_in: bool,
    uploads: HashMap<u64, Upload>,
    /// Script frames held back to be delivered together with the next record.
    held: Vec<u8>,
    /// Deliveries the server took only part of (its input buffer was full).
    short_feeds: usize,
}

impl<'f> Harness<'f> {
    fn new(fx: &'f Fixture, split: u8) -> Self {
        Harness {
            fx,
            server: ServerConn::new(fx.config.clone(), SERVER_EPHEMERAL, Timestamp::ZERO),
            split: Splitter::new(split),
            sealer: None,
            opener: None,
            expect_reply: false,
            keyed: false,
            logged_in: false,
            uploads: HashMap::new(),
            held: Vec::new(),
            short_feeds: 0,
        }
    }

    fn hello(&mut self) {
        self.expect_reply = true;
        let hello = self.fx.hello.clone();
        self.send(&hello);
        assert!(
            !self.expect_reply && !self.server.is_closed(),
            "the server did not answer a valid HELLO: {:?}",
            self.server.error()
        );
        self.sealer = Some(CipherState::new(&self.fx.c2s));
    }

    /// Delivers `bytes` in pieces, draining events after each; stops once the server closes.
    fn send(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.server.is_closed() {
            let len = self.split.next_len(rest.len());
            let mut piece = &rest[..len];
            rest = &rest[len..];
            while !piece.is_empty() && !self.server.is_closed() {
                let n = self.deliver(piece);
                assert!(n <= piece.len());
                self.short_feeds += usize::from(n < piece.len());
                piece = &piece[n..];
                let events = self.drain();
                // `feed` takes less only when the buffer is full, and then polling must free
                // room; otherwise the caller can neither feed nor poll: a stalled connection.
                assert!(
                    n > 0 || events > 0 || self.server.is_closed(),
                    "server stalled: input refused ({} bytes of room) and no event",
                    self.server.input_room()
                );
            }
        }
    }

    fn deliver(&mut self, piece: &[u8]) -> usize {
        // `read_buf` zero-fills all free room (up to 144 KiB) on every call, so it is used for
        // pieces of 64 bytes or more only: byte-sized pieces would spend the run in memset.
        if self.split.read_buf && piece.len() >= 64 {
            let r = self.server.read_buf(
                |buf| {
                    let n = buf.len().min(piece.len());
                    buf[..n].copy_from_slice(&piece[..n]);
                    Ok::<usize, Infallible>(n)
                },
                Timestamp::ZERO,
            );
            match r {
                Ok(n) => n,
                Err(never) => match never {},
            }
        } else {
            self.server.feed(piece, Timestamp::ZERO)
        }
    }

    /// Polls events until more input is needed or the connection fails; returns how many.
    fn drain(&mut self) -> usize {
        let mut events = 0;
        loop {
            let seen = match self.server.poll_event() {
                Ok(Some(e)) => Seen::of(&e),
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        self.server.is_closed(),
                        "error {e:?} left the connection open"
                    );
                    assert_eq!(self.server.error(), Some(&e));
                    assert!(
                        matches!(self.server.poll_event(), Ok(None)),
                        "a failed connection produced more"
                    );
                    break;
                }
            };
            events += 1;
            self.check_event(seen);
        }
        self.check_output();
        events
    }

    fn check_event(&mut self, seen: Seen) {
        let in_session = |h: &Self, what: &str| {
            assert!(h.logged_in, "{what} event before login");
        };
        match seen {
            Seen::LoggedIn(user) => {
                // The proof is an HMAC over the transcript that the fuzzer cannot compute, so a
                // login can only happen on the fixture's handshake, whose proof the harness
                // knows (sealed by the harness or replayed as raw bytes), and only as its user.
                assert_eq!(
                    self.server.transcript_hash(),
                    &self.fx.transcript,
                    "logged in on a handshake whose proof nobody knows"
                );
                assert!(!self.logged_in, "logged in twice");
                assert_eq!(user, USER);
                assert!(self.server.is_ready());
                assert_eq!(self.server.user(), USER);
                self.logged_in = true;
            }
            Seen::JobSubmit {
                id,
                total,
                len,
                last,
            } => {
                in_session(self, "JobSubmit");
                assert_ne!(id, 0, "request id 0 (the connection's) accepted for a job");
                assert!(
                    len as u64 <= total,
                    "first chunk exceeds the declared length"
                );
                // LAST sits exactly on the chunk that completes the declared length.
                assert_eq!(
                    len as u64 == total,
                    last,
                    "LAST flag and declared length disagree"
                );
                if let Some(u) = self.uploads.get(&id) {
                    assert!(
                        u.refused,
                        "second JOB_SUBMIT accepted for upload {id} in progress"
                    );
                }
                if last {
                    self.uploads.remove(&id);
                } else {
                    let remaining = total - len as u64;
                    let u = Upload {
                        remaining,
                        refused: false,
                    };
                    self.uploads.insert(id, u);
                }
            }
            Seen::JobData { id, len, last } => {
                in_session(self, "JobData");
                let u = self
                    .uploads
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("JOB_DATA event for {id}: no upload in progress"));
                assert!(!u.refused, "JOB_DATA event for refused upload {id}");
                assert!(
                    len as u64 <= u.remaining,
                    "chunks exceed the declared length"
                );
                u.remaining -= len as u64;
                assert_eq!(
                    u.remaining == 0,
                    last,
                    "LAST flag and declared length disagree"
                );
                if last {
                    self.uploads.remove(&id);
                }
            }
            Seen::Ping => in_session(self, "Ping"),
            Seen::Pong => in_session(self, "Pong"),
            Seen::StatsRequest => in_session(self, "StatsRequest"),
            Seen::Error => {
                // A client's ERROR before login ends the connection.
                assert!(self.logged_in || self.server.is_closed());
            }
            Seen::Bye => {
                in_session(self, "Bye");
                assert!(self.server.is_closed(), "BYE left the connection open");
            }
            // The fixture's config has no request rate.
            Seen::RateLimited => panic!("a PING or STATS refused with no request rate set"),
            Seen::Discarded { id, len, last } => {
                in_session(self, "Discarded");
                let u = self
                    .uploads
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("chunk dropped for {id}: no upload in progress"));
                assert!(
                    u.refused,
                    "chunk of upload {id} dropped, yet it was not refused"
                );
                assert!(
                    len as u64 <= u.remaining,
                    "chunks exceed the declared length"
                );
                u.remaining -= len as u64;
                assert_eq!(
                    u.remaining == 0,
                    last,
                    "LAST flag and declared length disagree"
                );
                if last {
                    self.uploads.remove(&id);
                }
            }
            Seen::Probe => {
                // Only a connection's first frame, and it ends the connection.
                assert!(!self.logged_in, "PROBE answered after login");
                assert!(self.server.is_closed(), "PROBE left the connection open");
            }
            Seen::ClientOnly(name) => panic!("a server reported the client-side event {name}"),
        }
    }

    /// Takes everything the server queued and checks it is a sequence of well-formed frames,
    /// authentic under the session key, with well-formed bodies.
    fn check_output(&mut self) {
        let out = self.server.pending_output().to_vec();
        self.server.consume_output(out.len(), Timestamp::ZERO);
        let mut pos = 0;
        while pos < out.len() {
            let f = match frame::decode(&out[pos..], MAX_BODY_LEN) {
                Ok(Decoded::Frame(f)) => f,
                other => panic!("server queued bytes that are not a frame: {other:?}"),
            };
            let op = f.header.opcode;
            if self.expect_reply {
                assert_eq!(
                    &out[pos..pos + f.used],
                    &self.fx.reply[..],
                    "HELLO_REPLY differs for the same keys"
                );
                self.expect_reply = false;
                self.opener = Some(CipherState::new(&self.fx.s2c));
            }
            assert!(
                !matches!(
                    op,
                    Opcode::Hello
                        | Opcode::LoginStart
                        | Opcode::LoginProof
                        | Opcode::JobSubmit
                        | Opcode::JobData
                        | Opcode::StatsRequest
                ),
                "server sent the client-only {}",
                op.name()
            );
            assert_eq!(
                f.header.is_encrypted(),
                self.keyed,
                "server sent {} {} the handshake",
                op.name(),
                if self.keyed {
                    "in clear after"
                } else {
                    "encrypted before"
                }
            );
            if op == Opcode::HelloReply {
                assert!(!self.keyed, "second HELLO_REPLY");
                assert_eq!(f.body.len(), handshake::REPLY_LEN);
                self.keyed = true;
            } else if !f.header.is_encrypted() {
                self.check_server_body(op, f.body);
            } else if let Some(opener) = self.opener.as_mut() {
                let mut body = f.body.to_vec();
                let n = opener
                    .open(&f.header.aad(), &mut body)
                    .expect("server frame does not authenticate under the session key");
                self.check_server_body(op, &body[..n]);
            }
            pos += f.used;
        }
    }

    fn check_server_body(&self, op: Opcode, body: &[u8]) {
        let ok = match op {
            Opcode::LoginChallenge => Challenge::parse(body).is_ok(),
            // Only the fixture's login can succeed, and the server must prove it holds the
            // user's verifier with exactly the signature the client expects.
            Opcode::LoginOk => body == self.fx.server_signature,
            Opcode::Error => message::parse_error(body).is_ok(),
            Opcode::Ping | Opcode::Pong => message::check_ping(body).is_ok(),
            Opcode::StatsReply => message::parse_stats(body).is_ok(),
            Opcode::JobResult => ResultInfo::parse(body).is_ok(),
            Opcode::ResultData => message::check_chunk(body).is_ok(),
            Opcode::Busy | Opcode::Shutdown => message::parse_u32(body).is_ok(),
            Opcode::Bye => message::parse_empty(body).is_ok(),
            _ => false,
        };
        assert!(ok, "server sent a malformed {} body", op.name());
    }

    /// Builds one frame with a valid CRC: sealed with the session key unless `clear`. Length
    /// and flags are not validated, so the server's own checks are what rejects bad ones.
    fn frame(&mut self, op: Opcode, flags_byte: u8, id: u64, body: &[u8], clear: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
        let at = frame::begin(&mut out);
        out.extend_from_slice(body);
        let sealer = if clear { None } else { self.sealer.as_mut() };
        let mut header = Header {
            opcode: op,
            flags: flags_byte,
            body_len: body.len() as u32,
            request_id: id,
        };
        if let Some(cs) = sealer {
            header.flags |= flags::ENCRYPTED;
            header.body_len += TAG_LEN as u32;
            let tag = cs
                .seal(&header.aad(), &mut out[at + HEADER_LEN..])
                .expect("harness nonce exhausted");
            out.extend_from_slice(&tag);
        }
        frame::write_header_with_crc(&mut out, at, &header);
        out
    }

    fn send_frame(&mut self, op: Opcode, flags_byte: u8, id: u64, body: &[u8], clear: bool) {
        let wire = self.frame(op, flags_byte, id, body, clear);
        self.send_held(&wire);
    }

    /// Sends the held-back frames and then `bytes`, as one delivery.
    fn send_held(&mut self, bytes: &[u8]) {
        let mut all = std::mem::take(&mut self.held);
        all.extend_from_slice(bytes);
        self.send(&all);
    }

    /// Reads `rest` as records and acts on each, until the input ends or the server closes:
    ///
    /// | tag % 8 | record                               | action                                  |
    /// |---------|--------------------------------------|-----------------------------------------|
    /// | 0..=2   | op, fl, id, len u16, body            | a frame of `Opcode::ALL[op % 18]` (see `fl` below) |
    /// | 3       |                                      | valid LOGIN_START then LOGIN_PROOF      |
    /// | 4       |                                      | valid LOGIN_START                       |
    /// | 5       |                                      | valid LOGIN_PROOF                       |
    /// | 6       | len u16, bytes[len]                  | raw bytes                               |
    /// | 7       | action, id                           | a server API call ([`Self::act`])       |
    ///
    /// Frame bits `fl`: 1 LAST; 4 hold the frame back and deliver it together with the next
    /// record (so several frames, up to beyond the input buffer, arrive in one piece); 5 clear
    /// instead of sealed; 6 add 64 KiB to `len`; 7 fill: the body is one byte repeated `len`
    /// times (a 64 KiB chunk from a few input bytes), else it is the next `len` input bytes.
    /// Missing bytes read as zero and short bodies are cut, so every input is a valid script.
    fn run_script(&mut self, rest: &[u8]) {
        let mut r = Cursor(rest);
        while let Some(tag) = r.next() {
            if self.server.is_closed() {
                return;
            }
            match tag % 8 {
                0..=2 => {
                    let op = Opcode::ALL[usize::from(r.byte()) % Opcode::ALL.len()];
                    let fl = r.byte();
                    let id = u64::from(r.byte());
                    let mut len = usize::from(u16::from_be_bytes([r.byte(), r.byte()]));
                    if fl & PLUS_64K != 0 {
                        len += 0x1_0000;
                    }
                    let filled;
                    let body = if fl & FILL != 0 {
                        filled = vec![r.byte(); len];
                        &filled[..]
                    } else {
                        r.take(len)
                    };
                    let wire = self.frame(op, fl & flags::LAST, id, body, fl & CLEAR != 0);
                    if fl & HOLD != 0 {
                        self.held.extend_from_slice(&wire);
                    } else {
                        self.send_held(&wire);
                    }
                }
                3 => {
                    self.login_start();
                    self.login_proof();
                }
                4 => self.login_start(),
                5 => self.login_proof(),
                6 => {
                    let len = usize::from(u16::from_be_bytes([r.byte(), r.byte()]));
                    let bytes = r.take(len);
                    self.send_held(bytes);
                }
                _ => {
                    let (action, id) = (r.byte(), r.byte());
                    self.send_held(&[]);
                    // Held frames may have closed the connection (found by the fuzzer).
                    if self.server.is_closed() {
                        return;
                    }
                    self.act(action, u64::from(id));
                }
            }
        }
        self.send_held(&[]);
    }

    fn login_start(&mut self) {
        let body = self.fx.login_start.clone();
        self.send_frame(Opcode::LoginStart, 0, 0, &body, false);
    }

    fn login_proof(&mut self) {
        let body = self.fx.proof;
        self.send_frame(Opcode::LoginProof, 0, 0, &body, false);
    }

    /// Calls the server API the way the server program does in the middle of a session.
    /// Before login each call must fail cleanly; after, each must succeed.
    fn act(&mut self, action: u8, id: u64) {
        let ready = self.server.is_ready();
        let info = ResultInfo {
            total_len: 3,
            width: 1,
            height: 1,
            format: 1,
            ..ResultInfo::default()
        };
        let r = match action % 8 {
            0 => self
                .server
                .reject_request(id, ErrorCode::BadSpec, "refused by the fuzz harness"),
            1 => self.server.send_busy(id, 250),
            2 => self.server.send_result(id, &info, b"abc", true),
            3 => self.server.send_ping(id, b"harness"),
            4 => self
                .server
                .send_stats(id, &[("connections", 1), ("jobs", 2)]),
            5 => self.server.send_shutdown(1000),
            6 => self
                .server
                .send_error(id, ErrorCode::Timeout, "harness error"),
            _ => self.server.send_bye(),
        };
        match r {
            Ok(()) => {
                if action % 8 <= 1 {
                    if let Some(u) = self.uploads.get_mut(&id) {
                        u.refused = true;
                    }
                }
            }
            Err(Error::BadState(_)) if !ready => {}
            Err(e) => panic!("server API call {} failed in a session: {e:?}", action % 8),
        }
        self.check_output();
    }
}

/// Reads a script; past the end every byte is zero.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

// ===================================================================================== seeds

/// One seed input: which target it is for, a descriptive file name, and the bytes.
#[derive(Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// Builds `server_handshake` script inputs (the encoder of [`Harness::run_script`]'s format).
struct Script(Vec<u8>);

impl Script {
    fn new(split: u8) -> Self {
        Script(vec![MODE_SCRIPT, split])
    }

    fn frame(mut self, op: Opcode, fl: u8, id: u8, body: &[u8]) -> Self {
        let index = Opcode::ALL.iter().position(|o| *o == op).unwrap_or(0) as u8;
        let (fl, len) = if body.len() > 0xffff {
            (fl | PLUS_64K, body.len() - 0x1_0000)
        } else {
            (fl, body.len())
        };
        self.0.extend_from_slice(&[0, index, fl, id]);
        self.0.extend_from_slice(&(len as u16).to_be_bytes());
        self.0.extend_from_slice(body);
        self
    }

    fn sealed(self, op: Opcode, last: bool, id: u8, body: &[u8]) -> Self {
        self.frame(op, if last { flags::LAST } else { 0 }, id, body)
    }

    /// A sealed frame whose body is `fill` repeated `len` times; `fl` may add LAST and hold.
    fn filled(mut self, op: Opcode, fl: u8, id: u8, len: usize, fill: u8) -> Self {
        let index = Opcode::ALL.iter().position(|o| *o == op).unwrap_or(0) as u8;
        let (fl, len) = if len > 0xffff {
            (fl | FILL | PLUS_64K, len - 0x1_0000)
        } else {
            (fl | FILL, len)
        };
        self.0.extend_from_slice(&[0, index, fl, id]);
        self.0.extend_from_slice(&(len as u16).to_be_bytes());
        self.0.push(fill);
        self
    }

    fn clear(self, op: Opcode, id: u8, body: &[u8]) -> Self {
        self.frame(op, CLEAR, id, body)
    }

    fn tag(mut self, tag: u8) -> Self {
        self.0.push(tag);
        self
    }

    fn login(self) -> Self {
        self.tag(3)
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.push(6);
        self.0
            .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn act(mut self, action: u8, id: u8) -> Self {
        self.0.extend_from_slice(&[7, action, id]);
        self
    }
}

fn clear_frame(op: Opcode, fl: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, op, fl, id, body).expect("seed frame");
    out
}

fn job_head(total: u64, spec: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    JobSubmit::encode_head(total, spec, &mut b).expect("seed spec");
    b.extend_from_slice(data);
    b
}

/// A clear example body for each opcode.
fn example_body(op: Opcode, fx: &Fixture) -> Vec<u8> {
    let mut b = Vec::new();
    match op {
        Opcode::Hello => b = fx.hello[HEADER_LEN..].to_vec(),
        Opcode::HelloReply => b = fx.reply[HEADER_LEN..].to_vec(),
        Opcode::LoginStart => b = fx.login_start.clone(),
        Opcode::LoginChallenge => Challenge {
            salt: SALT.to_vec(),
            iterations: ITERATIONS,
        }
        .encode(&mut b),
        Opcode::LoginProof => b = fx.proof.to_vec(),
        Opcode::LoginOk => b = fx.server_signature.to_vec(),
        Opcode::JobSubmit => b = job_head(5, "resize:64x64|blur:1.5", b"\x89PNG\r"),
        Opcode::JobSubmitMulti => b = job_head(5, "resize:64x64;blur:1.5", b"\x89PNG\r"),
        Opcode::VariantResult => {
            let info = ResultInfo {
                total_len: 3,
                width: 64,
                height: 48,
                format: 4,
                ..ResultInfo::default()
            };
            message::encode_variant_result_head(1, &info, &mut b);
            b.extend_from_slice(b"RIF");
        }
        Opcode::VariantError => message::encode_variant_error(0, 306, "cannot encode", &mut b),
        Opcode::JobData | Opcode::ResultData => b = b"image bytes".to_vec(),
        Opcode::JobResult => {
            ResultInfo {
                total_len: 3,
                width: 64,
                height: 48,
                format: 2,
                queue_us: 10,
                decode_us: 200,
                filter_us: 300,
                encode_us: 400,
            }
            .encode(&mut b);
            b.extend_from_slice(b"\xff\xd8\xff");
        }
        Opcode::Ping | Opcode::Pong => b = b"ping payload".to_vec(),
        Opcode::StatsRequest | Opcode::Bye | Opcode::Probe => {}
        Opcode::ProbeReply => b = vec![1],
        Opcode::StatsReply => {
            message::encode_stats([("connections", 3), ("jobs_done", 42)], &mut b)
                .expect("seed stats")
        }
        Opcode::Error => message::encode_error(ErrorCode::BadSpec as u16, "bad op spec", &mut b),
        Opcode::Busy | Opcode::Shutdown => b = 500u32.to_be_bytes().to_vec(),
    }
    b
}

/// The seed corpus of both targets: valid frames of every opcode, real handshakes, logins,
/// jobs, and a few broken streams. `fuzz/gen_corpus.rs` writes them to `fuzz/corpus/`.
pub fn seeds() -> Vec<Seed> {
    let fx = fixture();
    let mut v = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        v.push(Seed {
            target,
            name: format!("seed-{name}"),
            data,
        });
    };

    // ---- frame_decoder: config byte, then a stream
    let fd = |config: u8, stream: &[u8]| [&[config][..], stream].concat();
    let mut all = Vec::new();
    for op in Opcode::ALL {
        let fl = if op.is_chunked() { flags::LAST } else { 0 };
        let f = clear_frame(op, fl, 7, &example_body(op, fx));
        all.extend_from_slice(&f);
        add(
            "frame_decoder",
            &format!("frame-{}", op.name().to_lowercase()),
            fd(0, &f),
        );
    }
    add("frame_decoder", "stream-every-opcode", fd(0, &all));
    add(
        "frame_decoder",
        "stream-every-opcode-fixcrc",
        fd(FIX_CRC, &all),
    );
    // A client's real login stream: HELLO, then sealed LOGIN_START and LOGIN_PROOF.
    let mut h = Harness::new(fx, 0);
    h.sealer = Some(CipherState::new(&fx.c2s));
    let login = [
        fx.hello.clone(),
        h.frame(Opcode::LoginStart, 0, 0, &fx.login_start, false),
        h.frame(Opcode::LoginProof, 0, 0, &fx.proof, false),
    ]
    .concat();
    let after_login = [
        h.frame(Opcode::Ping, 0, 1, b"are you there", false),
        h.frame(
            Opcode::JobSubmit,
            flags::LAST,
            2,
            &job_head(4, "gray", b"GIF8"),
            false,
        ),
        h.frame(Opcode::StatsRequest, 0, 3, b"", false),
        h.frame(Opcode::Bye, 0, 0, b"", false),
    ]
    .concat();
    add("frame_decoder", "stream-client-login", fd(0, &login));
    add(
        "frame_decoder",
        "stream-client-session",
        fd(0, &[&login[..], &after_login].concat()),
    );
    let chunked = [
        clear_frame(
            Opcode::JobSubmit,
            0,
            9,
            &job_head(20, "rotate:90", b"0123456789"),
        ),
        clear_frame(Opcode::JobData, 0, 9, b"abcde"),
        clear_frame(Opcode::JobData, flags::LAST, 9, b"fghij"),
    ]
    .concat();
    add("frame_decoder", "stream-chunked-job", fd(0, &chunked));
    add(
        "frame_decoder",
        "stream-truncated",
        fd(0, &chunked[..chunked.len() - 3]),
    );
    let mut bad_crc = chunked.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    add("frame_decoder", "stream-bad-crc", fd(0, &bad_crc));
    add(
        "frame_decoder",
        "stream-bad-crc-fixcrc",
        fd(FIX_CRC, &bad_crc),
    );
    let big = clear_frame(Opcode::JobData, 0, 1, &vec![0xa5; MAX_CHUNK_DATA]);
    add("frame_decoder", "frame-max-chunk", fd(0, &big));
    add("frame_decoder", "hello-limit-hello", fd(3, &fx.hello));
    add(
        "frame_decoder",
        "bad-magic",
        fd(0, b"GET / HTTP/1.1\r\n\r\n"),
    );

    // ---- server_handshake: mode, split, rest
    let sh = |mode: u8, split: u8, rest: &[u8]| [&[mode, split][..], rest].concat();
    add("server_handshake", "raw-hello", sh(MODE_RAW, 0, &fx.hello));
    add(
        "server_handshake",
        "raw-hello-bytewise",
        sh(MODE_RAW, 1, &fx.hello),
    );
    add(
        "server_handshake",
        "raw-hello-garbage",
        sh(MODE_RAW, 0, &[&fx.hello[..], b"\0\0\0junk"].concat()),
    );
    let err = clear_frame(Opcode::Error, 0, 0, &example_body(Opcode::Error, fx));
    add("server_handshake", "raw-error-first", sh(MODE_RAW, 0, &err));
    let ping = clear_frame(Opcode::Ping, 0, 1, b"x");
    add("server_handshake", "raw-ping-first", sh(MODE_RAW, 0, &ping));
    add(
        "server_handshake",
        "raw-login-stream",
        sh(MODE_RAW, 5, &login),
    );
    add(
        "server_handshake",
        "after-hello-empty",
        sh(MODE_AFTER_HELLO, 0, b""),
    );
    let ls_clear = clear_frame(Opcode::LoginStart, 0, 0, &fx.login_start);
    add(
        "server_handshake",
        "after-hello-clear-login",
        sh(MODE_AFTER_HELLO, 0, &ls_clear),
    );
    // With fixed keys the sealed login is valid as raw bytes, so this mode gets past login too.
    add(
        "server_handshake",
        "after-hello-sealed-session",
        sh(
            MODE_AFTER_HELLO,
            3,
            &[&login[fx.hello.len()..], &after_login].concat(),
        ),
    );

    const CHUNK: u64 = MAX_CHUNK_DATA as u64;
    let bulk = |split: u8| {
        Script::new(split)
            .login()
            .sealed(
                Opcode::JobSubmit,
                false,
                7,
                &job_head(3 * CHUNK, "gray", b""),
            )
            .filled(Opcode::JobData, HOLD, 7, MAX_CHUNK_DATA, 0x41)
            .filled(Opcode::JobData, HOLD, 7, MAX_CHUNK_DATA, 0x42)
            .filled(Opcode::JobData, flags::LAST, 7, MAX_CHUNK_DATA, 0x43)
    };
    let scripts: Vec<(&str, Script)> = vec![
        ("script-login", Script::new(0).login()),
        (
            "script-login-ping-stats",
            Script::new(2)
                .login()
                .sealed(Opcode::Ping, false, 1, b"hello?")
                .sealed(Opcode::StatsRequest, false, 2, b"")
                .sealed(Opcode::Pong, false, 3, b"pong"),
        ),
        (
            "script-job-single",
            Script::new(0)
                .login()
                .sealed(Opcode::JobSubmit, true, 1, &job_head(3, "gray", b"abc")),
        ),
        (
            "script-job-chunked",
            Script::new(0x83)
                .login()
                .sealed(Opcode::JobSubmit, false, 1, &job_head(6, "blur:2", b"ab"))
                .sealed(Opcode::JobData, false, 1, b"cd")
                .sealed(Opcode::JobData, true, 1, b"ef")
                .act(2, 1),
        ),
        (
            "script-job-rejected",
            Script::new(0)
                .login()
                .sealed(Opcode::JobSubmit, false, 4, &job_head(6, "bogus", b"ab"))
                .act(0, 4)
                .sealed(Opcode::JobData, false, 4, b"cd")
                .sealed(Opcode::JobData, true, 4, b"ef")
                .sealed(Opcode::JobSubmit, true, 4, &job_head(1, "gray", b"z")),
        ),
        (
            "script-job-busy",
            Script::new(0)
                .login()
                .sealed(Opcode::JobSubmit, false, 5, &job_head(4, "gray", b"ab"))
                .act(1, 5)
                .sealed(Opcode::JobData, true, 5, b"cd"),
        ),
        (
            "script-job-max-chunk",
            Script::new(0)
                .login()
                .sealed(Opcode::JobSubmit, false, 6, &job_head(CHUNK, "gray", b""))
                .filled(Opcode::JobData, flags::LAST, 6, MAX_CHUNK_DATA, 7),
        ),
        (
            "script-job-oversized-chunk",
            Script::new(0)
                .login()
                .sealed(
                    Opcode::JobSubmit,
                    false,
                    6,
                    &job_head(2 * CHUNK, "gray", b""),
                )
                .filled(Opcode::JobData, 0, 6, MAX_CHUNK_DATA + 1, 7),
        ),
        // 192 KiB delivered at once: more than the connection buffers, so `feed` (and
        // `read_buf`) must take part of it, and polling must make room for the rest.
        ("script-bulk-upload", bulk(0)),
        ("script-bulk-upload-read-buf", bulk(0x80)),
        (
            "script-job-duplicate",
            Script::new(0)
                .login()
                .sealed(Opcode::JobSubmit, false, 1, &job_head(9, "gray", b"a"))
                .sealed(Opcode::JobSubmit, false, 1, &job_head(9, "gray", b"a")),
        ),
        (
            "script-data-without-job",
            Script::new(0)
                .login()
                .sealed(Opcode::JobData, true, 8, b"x"),
        ),
        (
            "script-server-actions",
            Script::new(0)
                .act(3, 0)
                .login()
                .act(2, 1)
                .act(3, 2)
                .act(4, 3)
                .act(5, 0)
                .act(6, 4)
                .act(7, 0),
        ),
        (
            "script-client-bye",
            Script::new(0).login().sealed(Opcode::Bye, false, 0, b""),
        ),
        (
            "script-client-error",
            Script::new(0).login().sealed(
                Opcode::Error,
                false,
                0,
                &example_body(Opcode::Error, fx),
            ),
        ),
        (
            "script-error-during-login",
            Script::new(0)
                .tag(4)
                .sealed(Opcode::Error, false, 0, &example_body(Opcode::Error, fx)),
        ),
        (
            "script-unknown-user",
            Script::new(0)
                .sealed(Opcode::LoginStart, false, 0, b"\x07mallory")
                .tag(5),
        ),
        (
            "script-wrong-proof",
            Script::new(0)
                .tag(4)
                .sealed(Opcode::LoginProof, false, 0, &[0u8; 32]),
        ),
        ("script-proof-first", Script::new(0).tag(5)),
        (
            "script-clear-after-hello",
            Script::new(0).clear(Opcode::LoginStart, 0, &fx.login_start),
        ),
        (
            "script-raw-replay",
            Script::new(0).login().raw(&login[fx.hello.len()..]),
        ),
        (
            "script-last-on-ping",
            Script::new(0).login().sealed(Opcode::Ping, true, 1, b""),
        ),
    ];
    for (name, s) in scripts {
        add("server_handshake", name, s.0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed runs clean, and the server seeds reach the states they are named for (so a
    /// change of the script format or of the protocol cannot quietly turn them into noise).
    #[test]
    fn seeds_run_and_reach_their_states() {
        // (seed, logged in, closed at the end)
        let expect: HashMap<&str, (bool, bool)> = [
            ("raw-hello", (false, false)),
            ("raw-hello-bytewise", (false, false)),
            ("raw-hello-garbage", (false, true)),
            ("raw-error-first", (false, true)),
            ("raw-ping-first", (false, true)),
            ("raw-login-stream", (true, false)),
            ("after-hello-empty", (false, false)),
            ("after-hello-clear-login", (false, true)),
            ("after-hello-sealed-session", (true, true)),
            ("script-login", (true, false)),
            ("script-login-ping-stats", (true, false)),
            ("script-job-single", (true, false)),
            ("script-job-chunked", (true, false)),
            ("script-job-rejected", (true, false)),
            ("script-job-busy", (true, false)),
            ("script-job-max-chunk", (true, false)),
            ("script-job-oversized-chunk", (true, true)),
            ("script-bulk-upload", (true, false)),
            ("script-bulk-upload-read-buf", (true, false)),
            ("script-job-duplicate", (true, true)),
            ("script-data-without-job", (true, true)),
            ("script-server-actions", (true, true)),
            ("script-client-bye", (true, true)),
            ("script-client-error", (true, false)),
            ("script-error-during-login", (false, true)),
            ("script-unknown-user", (false, true)),
            ("script-wrong-proof", (false, true)),
            ("script-proof-first", (false, true)),
            ("script-clear-after-hello", (false, true)),
            ("script-raw-replay", (true, true)),
            ("script-last-on-ping", (true, true)),
        ]
        .into_iter()
        .collect();
        let mut checked = 0;
        for s in seeds() {
            if s.target == "frame_decoder" {
                frame_decoder(&s.data);
                continue;
            }
            let h = run_server(&s.data);
            let name = s.name.trim_start_matches("seed-");
            let want = expect
                .get(name)
                .unwrap_or_else(|| panic!("no expectation for {name}"));
            let got = (h.logged_in, h.server.is_closed());
            assert_eq!(
                name.contains("bulk"),
                h.short_feeds > 0,
                "{name}: short feeds"
            );
            assert_eq!(
                got,
                *want,
                "{name}: (logged in, closed); error {:?}",
                h.server.error()
            );
            assert!(
                got.1 || h.uploads.values().all(|u| u.refused),
                "{name}: upload left open"
            );
            checked += 1;
        }
        assert_eq!(checked, expect.len());
    }
}
