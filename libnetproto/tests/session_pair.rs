//! A client and a server connection wired together in memory: login, traffic, every attack the
//! session must reject (tampering, replay, reordering, reflection, wrong credentials, a
//! changed server key), and the connection's timers on a fake clock. No sockets and no real
//! time: bytes are moved by hand and every `now` is a number the test chose, so each test can
//! interfere and no test sleeps.

use std::sync::Arc;
use std::time::Duration;

use netproto::conn::{
    ClientConfig, ClientConn, ClientTimers, Conn, Event, RequestRate, ServerConfig, ServerConn,
    ServerTimeouts, Side, TimerKind, Timestamp,
};
use netproto::keys::{KnownServers, ServerKey, Trust};
use netproto::limits::HEADER_LEN;
use netproto::message::{parse_stats, ResultInfo, ServerParams};
use netproto::{Error, ErrorCode, Verifier};

const PARAMS: ServerParams = ServerParams {
    max_chunk: 65536,
    max_upload: 1 << 20,
    max_in_flight: 4,
};

fn server_config(secret: u8) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::new(ServerKey::from_secret([secret; 32]), PARAMS);
    cfg.add_user(
        "alice",
        Verifier::create(b"correct horse", &[7u8; 16], 4096).unwrap(),
    )
    .unwrap();
    Arc::new(cfg)
}

/// The fake clock's origin: not zero, so a timer measured from the wrong origin shows.
const T0: Timestamp = Timestamp::from_micros(1_000_000);

fn at(d: Duration) -> Timestamp {
    T0 + d
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const US: Duration = Duration::from_micros(1);

fn pair_with(user: &str, pw: &[u8], scfg: Arc<ServerConfig>) -> (ClientConn, ServerConn) {
    let c = ClientConn::new(
        Arc::new(ClientConfig::new(user, pw).unwrap()),
        [1u8; 32],
        T0,
    );
    let s = ServerConn::new(scfg, [2u8; 32], T0);
    (c, s)
}

/// Moves all pending output from `a` into `b` at `now` (`b` must have room for it).
fn pump_at<A: Side, B: Side>(a: &mut Conn<A>, b: &mut Conn<B>, now: Timestamp) -> Vec<u8> {
    let out = a.pending_output().to_vec();
    a.consume_output(out.len(), now);
    assert_eq!(b.feed(&out, now), out.len());
    out
}

/// Moves all pending output from `a` into `b` at the clock's origin.
fn pump<A: Side, B: Side>(a: &mut Conn<A>, b: &mut Conn<B>) -> Vec<u8> {
    pump_at(a, b, T0)
}

/// Collects events as owned debug strings (events borrow the connection).
fn drain<S: Side>(c: &mut Conn<S>) -> Result<Vec<String>, Error> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event()? {
        v.push(format!("{e:?}"));
    }
    Ok(v)
}

/// Runs handshake and login to completion; returns (client, server).
fn logged_in() -> (ClientConn, ServerConn) {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    login(&mut c, &mut s).unwrap();
    (c, s)
}

fn login(c: &mut ClientConn, s: &mut ServerConn) -> Result<(), Error> {
    pump(c, s); // HELLO
    assert!(drain(s)?.is_empty());
    pump(s, c); // HELLO_REPLY
    let key = match c.poll_event()? {
        Some(Event::ServerKey { key }) => key,
        e => panic!("expected the server key, got {e:?}"),
    };
    assert_eq!(&key, ServerKey::from_secret([9; 32]).public());
    c.trust_server_key(true)?;
    pump(c, s); // LOGIN_START
    drain(s)?;
    pump(s, c); // CHALLENGE
    drain(c)?;
    pump(c, s); // PROOF
    let ev = drain(s);
    pump(s, c); // LOGIN_OK or ERROR
    let cev = drain(c);
    let (ev, cev) = match (ev, cev) {
        (Ok(ev), Ok(cev)) => (ev, cev),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if s.is_ready() {
        assert_eq!(ev, vec![r#"LoggedIn { user: "alice" }"#.to_string()]);
        assert!(cev[0].starts_with("Ready"), "{cev:?}");
        assert!(c.is_ready());
        assert_eq!(c.transcript_hash(), s.transcript_hash());
        Ok(())
    } else {
        Err(s.error().cloned().unwrap_or(Error::Closed))
    }
}

#[test]
fn login_then_job_round_trip_in_chunks() {
    let (mut c, mut s) = logged_in();
    let input: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    let chunks: Vec<&[u8]> = input.chunks(65536).collect();
    c.send_job(7, "blur:2", input.len() as u64, chunks[0], false)
        .unwrap();
    for (i, ch) in chunks.iter().enumerate().skip(1) {
        c.send_job_data(7, ch, i == chunks.len() - 1).unwrap();
    }
    // More than the server buffers at once: feed as room allows, draining events between.
    let wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), T0);
    let mut fed = 0;
    let mut got = Vec::new();
    let mut n_events = 0;
    loop {
        fed += s.feed(&wire[fed..], T0);
        match s.poll_event().unwrap() {
            Some(Event::JobSubmit {
                request_id: 7,
                total_len,
                spec: "blur:2",
                data,
                last: false,
            }) => {
                assert_eq!(total_len, input.len() as u64);
                got.extend_from_slice(data);
            }
            Some(Event::JobData {
                request_id: 7,
                data,
                last,
            }) => {
                got.extend_from_slice(data);
                assert_eq!(last, got.len() == input.len());
            }
            None if fed == wire.len() => break,
            None => continue,
            e => panic!("{e:?}"),
        }
        n_events += 1;
    }
    assert_eq!(n_events, 3);
    assert_eq!(got, input);

    let info = ResultInfo {
        total_len: 5,
        width: 2,
        height: 1,
        format: 1,
        ..Default::default()
    };
    s.send_result(7, &info, b"hello", true).unwrap();
    pump(&mut s, &mut c);
    match c.poll_event().unwrap() {
        Some(Event::JobResult {
            request_id: 7,
            info: i,
            data: b"hello",
            last: true,
        }) => assert_eq!(i, info),
        e => panic!("{e:?}"),
    }
}

#[test]
fn ping_is_answered_by_the_state_machine_and_stats_round_trip() {
    let (mut c, mut s) = logged_in();
    c.send_ping(3, b"tick").unwrap();
    pump(&mut c, &mut s);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![format!(
            "{:?}",
            Event::Ping {
                request_id: 3,
                payload: b"tick"
            }
        )]
    );
    pump(&mut s, &mut c);
    assert_eq!(
        drain(&mut c).unwrap(),
        vec![format!(
            "{:?}",
            Event::Pong {
                request_id: 3,
                payload: b"tick"
            }
        )]
    );

    c.send_stats_request(4).unwrap();
    pump(&mut c, &mut s);
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![format!("{:?}", Event::StatsRequest { request_id: 4 })]
    );
    s.send_stats(4, &[("jobs_ok", 10), ("conns", 2)]).unwrap();
    pump(&mut s, &mut c);
    match c.poll_event().unwrap() {
        Some(Event::Stats {
            request_id: 4,
            body,
        }) => {
            assert_eq!(
                parse_stats(body).unwrap(),
                vec![("jobs_ok".to_string(), 10), ("conns".to_string(), 2)]
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn busy_shutdown_error_and_bye_reach_the_client() {
    let (mut c, mut s) = logged_in();
    s.send_busy(5, 250).unwrap();
    s.send_error(
        6,
        ErrorCode::TooManyPixels,
        "image is 100000x100000, limit 50000000 pixels",
    )
    .unwrap();
    s.send_shutdown(10_000).unwrap();
    s.send_bye().unwrap();
    pump(&mut s, &mut c);
    let ev = drain(&mut c).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev[0].contains("Busy { request_id: 5, retry_after_ms: 250 }"));
    assert!(ev[1].contains("code: 302") && ev[1].contains("limit 50000000"));
    assert!(ev[2].contains("Shutdown { grace_ms: 10000 }"));
    assert_eq!(ev[3], "Bye");
    assert!(c.is_closed());
}

#[test]
fn wrong_password_and_unknown_user_fail_identically() {
    let mut transcripts = Vec::new();
    for (user, pw) in [("alice", &b"wrong"[..]), ("mallory", &b"correct horse"[..])] {
        let (mut c, mut s) = pair_with(user, pw, server_config(9));
        assert_eq!(login(&mut c, &mut s), Err(Error::AuthFailed));
        assert!(s.is_closed());
        // The client sees the same ERROR both times and is closed.
        let err = c.error().cloned().unwrap();
        assert!(
            matches!(&err, Error::Remote { code, .. } if *code == ErrorCode::AuthFailed as u16),
            "{err:?}"
        );
        assert!(c.is_closed());
        transcripts.push(err.to_string());
    }
    assert_eq!(transcripts[0], transcripts[1]);
}

#[test]
fn tampered_frame_is_rejected_and_closes() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"abc").unwrap();
    let mut wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), T0);
    // Flip a ciphertext bit and fix the CRC, as an active attacker would: the tag catches it.
    wire[HEADER_LEN] ^= 1;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&wire[..20]), &wire[HEADER_LEN..]);
    wire[20..24].copy_from_slice(&crc.to_be_bytes());
    s.feed(&wire, T0);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
    assert!(s.is_closed());
    // Flipping a bit without fixing the CRC is caught earlier, as a transmission error.
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"abc").unwrap();
    let mut wire = c.pending_output().to_vec();
    wire[HEADER_LEN + 1] ^= 4;
    s.feed(&wire, T0);
    assert!(matches!(s.poll_event(), Err(Error::BadCrc { .. })));
}

#[test]
fn header_fields_are_authenticated() {
    // Changing the request id (and fixing the CRC) breaks the tag: the AEAD covers the header.
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"abc").unwrap();
    let mut wire = c.pending_output().to_vec();
    wire[19] ^= 1;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&wire[..20]), &wire[HEADER_LEN..]);
    wire[20..24].copy_from_slice(&crc.to_be_bytes());
    s.feed(&wire, T0);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn replayed_frame_is_rejected() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"once").unwrap();
    let wire = pump(&mut c, &mut s);
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    s.feed(&wire, T0);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn reordered_frames_are_rejected() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"first").unwrap();
    let first = c.pending_output().to_vec();
    c.consume_output(first.len(), T0);
    c.send_ping(2, b"second").unwrap();
    let second = c.pending_output().to_vec();
    s.feed(&second, T0);
    s.feed(&first, T0);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn reflected_frame_is_rejected() {
    // A frame the client sent, bounced back to the client: wrong direction key.
    let (mut c, _s) = logged_in();
    c.send_ping(1, b"mirror").unwrap();
    let wire = c.pending_output().to_vec();
    c.feed(&wire, T0);
    assert_eq!(c.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn clear_frames_after_the_handshake_are_rejected() {
    let (_c, mut s) = logged_in();
    let mut wire = Vec::new();
    netproto::frame::encode(&mut wire, netproto::Opcode::Ping, 0, 1, b"plain").unwrap();
    s.feed(&wire, T0);
    assert!(matches!(
        s.poll_event(),
        Err(Error::UnexpectedMessage { .. })
    ));
}

#[test]
fn jobs_before_login_are_refused_with_not_logged_in() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    // A forged clear JOB_SUBMIT instead of LOGIN_START.
    let mut wire = Vec::new();
    netproto::frame::encode(
        &mut wire,
        netproto::Opcode::JobSubmit,
        netproto::opcode::flags::LAST,
        1,
        &[0; 10],
    )
    .unwrap();
    s.feed(&wire, T0);
    assert!(matches!(
        s.poll_event(),
        Err(Error::UnexpectedMessage {
            opcode: "JOB_SUBMIT",
            ..
        })
    ));
    assert!(s.is_closed());
    // What the peer reads: HELLO_REPLY, then the ERROR (encrypted: the keys exist after
    // HELLO), whose wire code must be NOT_LOGGED_IN, not a generic UNEXPECTED_MESSAGE.
    pump(&mut s, &mut c);
    assert!(matches!(c.poll_event(), Ok(Some(Event::ServerKey { .. }))));
    match c.poll_event() {
        Ok(Some(Event::Error {
            request_id: 0,
            code,
            ..
        })) => assert_eq!(code, ErrorCode::NotLoggedIn as u16),
        e => panic!("expected ERROR NOT_LOGGED_IN, got {e:?}"),
    }
    assert!(matches!(
        c.error(),
        Some(Error::Remote { code, .. }) if *code == ErrorCode::NotLoggedIn as u16
    ));
}

#[test]
fn changed_server_key_is_refused_by_the_pinning_table() {
    // First contact pins server A; later, server B answers on the same address.
    let mut table = KnownServers::default();
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    pump(&mut s, &mut c);
    let Some(Event::ServerKey { key }) = c.poll_event().unwrap() else {
        panic!()
    };
    assert_eq!(table.check("srv:7878", &key), Trust::New);
    table.add("srv:7878", &key).unwrap();

    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(10));
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    pump(&mut s, &mut c);
    let Some(Event::ServerKey { key: other }) = c.poll_event().unwrap() else {
        panic!()
    };
    assert!(matches!(
        table.check("srv:7878", &other),
        Trust::Changed { .. }
    ));
    c.trust_server_key(false).unwrap();
    assert!(c.is_closed());
    assert_eq!(c.error(), Some(&Error::ServerKeyRejected));
    // Nothing (in particular no login proof) was queued for the impostor.
    assert!(c.pending_output().is_empty());
}

#[test]
fn man_in_the_middle_swapping_ephemeral_fails_the_handshake() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    let mut hello = c.pending_output().to_vec();
    c.consume_output(hello.len(), T0);
    // Replace the client's ephemeral key with the attacker's own (CRC fixed up).
    let attacker =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3u8; 32])).to_bytes();
    hello[HEADER_LEN + 2..HEADER_LEN + 34].copy_from_slice(&attacker);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&hello[..20]), &hello[HEADER_LEN..]);
    hello[20..24].copy_from_slice(&crc.to_be_bytes());
    s.feed(&hello, T0);
    drain(&mut s).unwrap();
    pump(&mut s, &mut c);
    assert!(matches!(c.poll_event(), Err(Error::HandshakeFailed(_))));
}

#[test]
fn stream_length_violations_are_fatal() {
    let (mut c, mut s) = logged_in();
    c.send_job(1, "noop", 10, b"12345", false).unwrap();
    c.send_job_data(1, b"1234567", true).unwrap(); // 12 > 10 declared
    pump(&mut c, &mut s);
    assert!(s.poll_event().unwrap().is_some());
    assert!(matches!(s.poll_event(), Err(Error::Malformed(_))));

    let (mut c, mut s) = logged_in();
    c.send_job_data(9, b"orphan", true).unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(s.poll_event(), Err(Error::Malformed(_))));
}

#[test]
fn rejected_upload_is_drained_silently() {
    let (mut c, mut s) = logged_in();
    c.send_job(1, "blur:2", 20, &[0; 10], false).unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(Event::JobSubmit { .. })
    ));
    s.reject_request(1, ErrorCode::InputTooLarge, "too big")
        .unwrap();
    c.send_job_data(1, &[0; 10], true).unwrap();
    c.send_ping(2, b"").unwrap();
    pump(&mut c, &mut s);
    // The rest of job 1 is dropped, reported as such (one event a frame); then the ping.
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Discarded {
            request_id: 1,
            len: 10,
            last: true
        })
    );
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(Event::Ping { request_id: 2, .. })
    ));
}

#[test]
fn refused_uploads_left_open_are_bounded_and_the_oldest_forgotten() {
    let (mut c, mut s) = logged_in();
    let cap = netproto::limits::MAX_REFUSED_STREAMS as u64;
    // A peer opens uploads only to have them refused, and never ends them.
    for id in 1..=cap + 100 {
        c.send_job(id, "noop", 10, b"12345", false).unwrap();
        pump(&mut c, &mut s);
        assert!(matches!(
            s.poll_event().unwrap(),
            Some(Event::JobSubmit { .. })
        ));
        s.send_busy(id, 10).unwrap();
    }
    assert_eq!(s.open_streams(), cap as usize);
    // A refused upload that ends leaves the table; the latest ones are still drained.
    c.send_job_data(cap + 100, b"12345", true).unwrap();
    c.send_ping(9999, b"").unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(Event::Discarded { .. })
    ));
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(Event::Ping {
            request_id: 9999,
            ..
        })
    ));
    assert_eq!(s.open_streams(), cap as usize - 1);
    // A chunk for one forgotten long ago is fatal, as for any upload that was never begun.
    c.send_job_data(1, b"12345", true).unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(s.poll_event(), Err(Error::Malformed(_))));
}

#[test]
fn input_is_bounded() {
    let (_c, mut s) = logged_in();
    let junk = vec![0u8; 1 << 20];
    let taken = s.feed(&junk, T0);
    assert!(
        taken < junk.len(),
        "the connection must not buffer a megabyte unprocessed"
    );
}

#[test]
fn last_flag_is_required_on_the_completing_chunk() {
    let (mut c, mut s) = logged_in();
    // Declares 5 bytes and sends all 5 without LAST: the stream would never end.
    c.send_job(1, "noop", 5, b"12345", false).unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(s.poll_event(), Err(Error::Malformed(_))));
}

#[test]
fn results_for_requests_never_sent_are_rejected() {
    let (mut c, mut s) = logged_in();
    let info = ResultInfo {
        total_len: 1,
        ..Default::default()
    };
    s.send_result(77, &info, b"x", true).unwrap();
    pump(&mut s, &mut c);
    assert!(matches!(c.poll_event(), Err(Error::Malformed(_))));
}

#[test]
fn request_id_zero_is_reserved() {
    let (mut c, _s) = logged_in();
    assert!(matches!(
        c.send_job(0, "noop", 1, b"x", true),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn frames_before_the_handshake_are_limited_to_handshake_size() {
    let (_c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    let mut h = vec![b'N', b'P', 1, 0];
    h.extend_from_slice(&10_000u32.to_be_bytes());
    h.extend_from_slice(&(netproto::Opcode::Hello as u16).to_be_bytes());
    h.extend_from_slice(&[0; 14]);
    s.feed(&h, T0);
    assert!(matches!(
        s.poll_event(),
        Err(Error::FrameTooLarge { len: 10_000, .. })
    ));
}

#[test]
fn bye_needs_a_logged_in_session() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    assert!(matches!(c.send_bye(), Err(Error::BadState(_))));
    login(&mut c, &mut s).unwrap();
    c.send_bye().unwrap();
    assert!(c.send_bye().is_err(), "only once");
}

/// Sends a 140 000-byte job from `c` to `s` at `now` and checks it arrives intact; large
/// enough to grow both the client's send buffer and the server's receive buffer.
fn big_upload(c: &mut ClientConn, s: &mut ServerConn, id: u64, now: Timestamp) {
    let input = vec![id as u8; 140_000];
    c.send_job(id, "noop", input.len() as u64, &input[..65536], false)
        .unwrap();
    c.send_job_data(id, &input[65536..131072], false).unwrap();
    c.send_job_data(id, &input[131072..], true).unwrap();
    let wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), now);
    let (mut fed, mut got) = (0, Vec::new());
    loop {
        fed += s.feed(&wire[fed..], now);
        match s.poll_event().unwrap() {
            Some(Event::JobSubmit { data, .. }) | Some(Event::JobData { data, .. }) => {
                got.extend_from_slice(data)
            }
            Some(e) => panic!("{e:?}"),
            None if fed == wire.len() => break,
            None => {}
        }
    }
    assert_eq!(got, input);
}

#[test]
fn nothing_is_sent_after_bye_and_buffers_shrink_between_transfers() {
    let (mut c, mut s) = logged_in();
    // A transfer large enough to grow both buffers, then shrink, then another transfer.
    for round in 1..=2u64 {
        big_upload(&mut c, &mut s, round, T0);
        let (s_before, c_before) = (s.buffer_capacity(), c.buffer_capacity());
        assert!(s_before >= 64 * 1024, "server buffers grew: {s_before}");
        assert!(c_before >= 128 * 1024, "client buffers grew: {c_before}");
        s.shrink_buffers();
        c.shrink_buffers();
        // Both are back to at most an idle connection's 4 KiB.
        assert!(s.buffer_capacity() <= 4096, "{}", s.buffer_capacity());
        assert!(c.buffer_capacity() <= 4096, "{}", c.buffer_capacity());
        // Answer the job so the next round's id is free on the client.
        s.send_error(round, ErrorCode::Internal, "done").unwrap();
        pump(&mut s, &mut c);
        drain(&mut c).unwrap();
    }
    s.send_bye().unwrap();
    assert_eq!(
        s.send_error(0, ErrorCode::Internal, "late"),
        Err(Error::Closed)
    );
    pump(&mut s, &mut c);
    assert_eq!(drain(&mut c).unwrap(), vec!["Bye".to_string()]);
    assert_eq!(
        c.send_error(0, ErrorCode::Internal, "late"),
        Err(Error::Closed)
    );
}

// ----- timers, on a fake clock -----

/// The (code, text) of the first frame in `wire`, which must be a clear ERROR.
#[test]
fn an_idle_connection_holds_no_buffer_and_gets_one_back_on_the_next_request() {
    let (mut c, mut s) = logged_in();
    // Login read and written whole: the server holds no buffer, and no timer came of it.
    assert_eq!(s.buffer_capacity(), 0);
    let idle = s.poll_timeout().expect("the idle timer");
    // A read that finds nothing (EAGAIN ends every batch of reads) allocates nothing.
    let r = s.read_buf(|_| Err::<usize, &str>("would block"), T0);
    assert_eq!(r, Err("would block"));
    assert_eq!(s.buffer_capacity(), 0);
    // The next request is served as before: buffers come back for it and go once it is done.
    c.send_ping(5, b"again").unwrap();
    pump(&mut c, &mut s);
    assert!(s.buffer_capacity() > 0);
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    assert!(s.buffer_capacity() > 0, "the PONG waits to be written");
    pump(&mut s, &mut c);
    assert_eq!(drain(&mut c).unwrap().len(), 1);
    assert_eq!(s.buffer_capacity(), 0);
    // A partial frame (read through `read_buf`, as a socket's are) keeps its bytes until the
    // rest arrives, also through `shrink_buffers`.
    c.send_ping(6, b"partial").unwrap();
    let wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), T0);
    let head = &wire[..wire.len() - 1];
    let got = s.read_buf(
        |buf| {
            buf[..head.len()].copy_from_slice(head);
            Ok::<usize, ()>(head.len())
        },
        T0,
    );
    assert_eq!(got, Ok(head.len()));
    assert_eq!(drain(&mut s).unwrap().len(), 0);
    s.shrink_buffers();
    assert_eq!(s.buffer_capacity(), head.len(), "just the bytes that came");
    s.feed(&wire[wire.len() - 1..], T0);
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    let pong = s.pending_output().len();
    s.consume_output(pong, T0);
    assert_eq!(s.buffer_capacity(), 0);
    assert_eq!(s.poll_timeout(), Some(idle), "the idle timer only");
    // A grown buffer is kept for its transfer, then given back whole by the quiet second.
    big_upload(&mut c, &mut s, 7, T0);
    s.send_error(7, ErrorCode::Internal, "done").unwrap();
    let n = s.pending_output().len();
    s.consume_output(n, T0);
    assert!(s.buffer_capacity() > SMALL_RX, "{}", s.buffer_capacity());
    assert_eq!(s.handle_timeout(at(secs(1))), None);
    assert_eq!(s.buffer_capacity(), 0);
}

/// The receive buffer's first allocation (libnetproto's `SMALL_BUFFER`).
const SMALL_RX: usize = 4096;

fn clear_error(wire: &[u8]) -> (u16, String) {
    let netproto::Decoded::Frame(f) = netproto::frame::decode(wire, 1 << 16).unwrap() else {
        panic!("no whole frame in {} bytes", wire.len())
    };
    assert_eq!(f.header.opcode, netproto::Opcode::Error);
    let (code, text) = netproto::message::parse_error(f.body).unwrap();
    (code, text.to_string())
}

/// Client and server logged in at `T0` with the given server timeouts.
fn logged_in_with(timeouts: ServerTimeouts) -> (ClientConn, ServerConn) {
    let mut cfg = ServerConfig::new(ServerKey::from_secret([9; 32]), PARAMS);
    cfg.add_user(
        "alice",
        Verifier::create(b"correct horse", &[7u8; 16], 4096).unwrap(),
    )
    .unwrap();
    cfg.set_timeouts(timeouts);
    let (mut c, mut s) = pair_with("alice", b"correct horse", Arc::new(cfg));
    login(&mut c, &mut s).unwrap();
    (c, s)
}

#[test]
fn the_handshake_timeout_fires_at_the_deadline_and_not_a_microsecond_before() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    assert_eq!(s.poll_timeout(), Some(at(secs(10))));
    // A complete HELLO before login is no reason to wait longer: the deadline is fixed.
    pump_at(&mut c, &mut s, at(secs(9)));
    drain(&mut s).unwrap();
    pump_at(&mut s, &mut c, at(secs(9)));
    assert!(matches!(c.poll_event(), Ok(Some(Event::ServerKey { .. }))));
    assert_eq!(s.poll_timeout(), Some(at(secs(10))));

    assert_eq!(s.handle_timeout(at(secs(10) - US)), None);
    assert!(!s.is_closed());
    assert!(s.pending_output().is_empty());

    assert_eq!(s.handle_timeout(at(secs(10))), Some(TimerKind::Handshake));
    assert!(s.is_closed());
    assert_eq!(s.error(), Some(&Error::Timeout("handshake and login")));
    // The peer is told why, in clear: it never completed login. Nothing else is armed but
    // the slow-peer timer for that ERROR.
    let mut plain = ServerConn::new(server_config(9), [2; 32], T0);
    assert_eq!(
        plain.handle_timeout(at(secs(10))),
        Some(TimerKind::Handshake)
    );
    let (code, text) = clear_error(plain.pending_output());
    assert_eq!(code, ErrorCode::HandshakeTimeout as u16);
    assert_eq!(text, "handshake and login must finish within 10 s");
    assert_eq!(plain.poll_timeout(), Some(at(secs(10 + 30))));
    // The encrypted one reaches the client as an ERROR event.
    pump_at(&mut s, &mut c, at(secs(10)));
    assert!(matches!(
        c.poll_event(),
        Ok(Some(Event::Error { code, .. })) if code == ErrorCode::HandshakeTimeout as u16
    ));
}

#[test]
fn logging_in_disarms_the_handshake_timer_and_arms_the_idle_one() {
    let (_c, mut s) = logged_in();
    assert_eq!(s.poll_timeout(), Some(at(secs(120))));
    assert_eq!(s.handle_timeout(at(secs(10))), None);
    assert!(s.is_ready());
}

#[test]
fn a_complete_frame_resets_the_idle_timer() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"tick").unwrap();
    pump_at(&mut c, &mut s, at(secs(100)));
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    // While the PONG waits to be written, the slow-peer timer is the earlier one.
    assert_eq!(s.poll_timeout(), Some(at(secs(100 + 30))));
    pump_at(&mut s, &mut c, at(secs(100)));
    assert!(matches!(c.poll_event(), Ok(Some(Event::Pong { .. }))));
    assert_eq!(s.poll_timeout(), Some(at(secs(100 + 120))));
    assert_eq!(s.handle_timeout(at(secs(220) - US)), None);
    assert_eq!(s.handle_timeout(at(secs(220))), Some(TimerKind::Idle));
    assert!(s.is_closed());
    let out = s.pending_output().to_vec();
    assert_eq!(c.feed(&out, at(secs(220))), out.len());
    match c.poll_event() {
        Ok(Some(Event::Error { code, message, .. })) => {
            assert_eq!(code, ErrorCode::IdleTimeout as u16);
            assert_eq!(message, "no traffic for 120 s");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_byte_a_second_does_not_keep_a_connection_alive() {
    // Bytes that never complete a frame are not activity: a slowloris peer dribbling one byte
    // a second is cut off at the idle deadline like a silent one (here with the frame
    // timer off, to see the idle timer alone; the frame timer cuts it off sooner, below).
    let (mut c, mut s) = logged_in_with(ServerTimeouts {
        frame: None,
        ..ServerTimeouts::default()
    });
    c.send_ping(1, b"tick").unwrap();
    let frame = c.pending_output().to_vec();
    c.consume_output(frame.len(), T0);
    let start = 120 - (frame.len() as u64 - 1);
    for (i, b) in frame[..frame.len() - 1].iter().enumerate() {
        let now = at(secs(start + i as u64));
        assert_eq!(s.feed(std::slice::from_ref(b), now), 1);
        assert!(s.poll_event().unwrap().is_none());
        assert_eq!(s.poll_timeout(), Some(at(secs(120))), "byte {i}");
    }
    assert_eq!(s.handle_timeout(at(secs(120))), Some(TimerKind::Idle));
    assert!(s.is_closed());
}

#[test]
fn a_frame_begun_after_login_must_be_whole_within_the_frame_timeout() {
    let (mut c, mut s) = logged_in();
    // A job's upload is outstanding, so no idle timer: only the frame timer can end a peer
    // that starts its next frame and then trickles it.
    c.send_job(1, "noop", 6, b"abc", false).unwrap();
    pump_at(&mut c, &mut s, at(secs(1)));
    assert!(matches!(s.poll_event(), Ok(Some(Event::JobSubmit { .. }))));
    assert_eq!(s.poll_timeout(), None);
    c.send_job_data(1, b"def", true).unwrap();
    let frame = c.pending_output().to_vec();
    c.consume_output(frame.len(), T0);
    // One byte a second from t = 5 s: none of them moves the deadline 10 s after the first.
    for (i, b) in frame[..frame.len() - 1].iter().take(9).enumerate() {
        let now = at(secs(5 + i as u64));
        assert_eq!(s.feed(std::slice::from_ref(b), now), 1);
        assert!(s.poll_event().unwrap().is_none());
        assert_eq!(s.poll_timeout(), Some(at(secs(15))), "byte {i}");
    }
    assert_eq!(s.handle_timeout(at(secs(15) - US)), None);
    assert_eq!(s.handle_timeout(at(secs(15))), Some(TimerKind::SlowFrame));
    assert!(s.is_closed());
    assert_eq!(s.error(), Some(&Error::Timeout("frame too slow")));
    let out = s.pending_output().to_vec();
    assert_eq!(c.feed(&out, at(secs(15))), out.len());
    match c.poll_event() {
        Ok(Some(Event::Error { code, message, .. })) => {
            assert_eq!(code, ErrorCode::SlowClient as u16);
            assert_eq!(
                message,
                "a frame must arrive whole within 10 s of its first byte"
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_frame_that_completes_in_time_disarms_the_frame_timer_and_a_leftover_rearms_it() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"one").unwrap();
    c.send_ping(2, b"two").unwrap();
    let wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), T0);
    let first = wire.len() / 2; // each PING frame is the same size
                                // Half of the first frame at 1 s, the rest of it and half of the second at 9 s.
    assert_eq!(s.feed(&wire[..first / 2], at(secs(1))), first / 2);
    assert!(s.poll_event().unwrap().is_none());
    assert_eq!(s.poll_timeout(), Some(at(secs(11))));
    let upto = first + first / 2;
    assert_eq!(
        s.feed(&wire[first / 2..upto], at(secs(9))),
        upto - first / 2
    );
    assert!(matches!(s.poll_event(), Ok(Some(Event::Ping { .. }))));
    assert!(s.poll_event().unwrap().is_none());
    // The second frame began with the input at 9 s: its deadline is 19 s (the PONG's
    // slow-peer deadline, 39 s, is later).
    assert_eq!(s.poll_timeout(), Some(at(secs(19))));
    assert_eq!(s.feed(&wire[upto..], at(secs(18))), wire.len() - upto);
    assert!(matches!(s.poll_event(), Ok(Some(Event::Ping { .. }))));
    assert!(s.poll_event().unwrap().is_none());
    // Nothing partial is left: no frame timer (the PONGs' slow-peer timer is what remains).
    assert_eq!(s.poll_timeout(), Some(at(secs(9 + 30))));
    assert_eq!(s.handle_timeout(at(secs(30))), None);
    assert!(s.is_ready());
}

#[test]
fn no_idle_timeout_while_a_request_is_outstanding() {
    let (mut c, mut s) = logged_in();
    c.send_job(1, "noop", 3, b"abc", true).unwrap();
    pump_at(&mut c, &mut s, at(secs(1)));
    assert!(matches!(s.poll_event(), Ok(Some(Event::JobSubmit { .. }))));
    assert_eq!(s.outstanding_requests(), 1);
    // A job may run for a long time: no timer at all while it does.
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.handle_timeout(at(secs(1000))), None);
    assert!(s.is_ready());
    // The final chunk of the result answers it; idleness counts from then.
    let info = ResultInfo {
        total_len: 2,
        ..Default::default()
    };
    s.send_result(1, &info, b"o", false).unwrap();
    assert_eq!(s.outstanding_requests(), 1);
    s.send_result_data(1, b"k", true).unwrap();
    assert_eq!(s.outstanding_requests(), 0);
    pump_at(&mut s, &mut c, at(secs(1000)));
    assert_eq!(s.poll_timeout(), Some(at(secs(1000 + 120))));

    // BUSY and a refusal are final answers too.
    c.send_job(2, "noop", 10, b"abc", false).unwrap();
    c.send_job(3, "noop", 3, b"abc", true).unwrap();
    pump_at(&mut c, &mut s, at(secs(1001)));
    drain(&mut s).unwrap();
    assert_eq!(s.outstanding_requests(), 2);
    assert_eq!(s.poll_timeout(), None);
    s.reject_request(2, ErrorCode::InputTooLarge, "no").unwrap();
    assert_eq!(s.poll_timeout().map(|t| t > at(secs(1001))), Some(true));
    assert!(s.handle_timeout(at(secs(1002))).is_none());
    s.send_busy(3, 50).unwrap();
    pump_at(&mut s, &mut c, at(secs(1002)));
    assert_eq!(s.outstanding_requests(), 0);
    assert_eq!(s.poll_timeout(), Some(at(secs(1002 + 120))));
}

#[test]
fn a_peer_that_stops_reading_is_closed_by_the_slow_peer_timer() {
    let (_c, mut s) = logged_in();
    // Output starts waiting when it is queued, at the latest time the connection was given.
    s.handle_timeout(at(secs(50)));
    s.send_stats(0, &[("x", 1)]).unwrap();
    assert_eq!(s.poll_timeout(), Some(at(secs(50 + 30))));
    // Progress (one byte taken) restarts the wait.
    s.consume_output(1, at(secs(60)));
    assert_eq!(s.poll_timeout(), Some(at(secs(60 + 30))));
    assert_eq!(s.handle_timeout(at(secs(90) - US)), None);
    assert_eq!(s.handle_timeout(at(secs(90))), Some(TimerKind::SlowPeer));
    assert!(s.is_closed());
    // Nobody will read it: dropped, so the caller closes the socket at once.
    assert!(s.pending_output().is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn the_client_pings_after_a_quiet_interval_and_gives_up_on_a_silent_server() {
    let (mut c, mut s) = logged_in();
    let t = ClientTimers::default();
    assert_eq!(t.heartbeat, Some(secs(5)));
    assert_eq!(t.dead_after, Some(secs(20)));
    assert_eq!(c.poll_timeout(), Some(at(secs(5))));
    assert_eq!(c.handle_timeout(at(secs(5) - US)), None);
    assert!(c.pending_output().is_empty());
    assert_eq!(c.handle_timeout(at(secs(5))), Some(TimerKind::Heartbeat));
    pump_at(&mut c, &mut s, at(secs(5)));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec![format!(
            "{:?}",
            Event::Ping {
                request_id: 0,
                payload: b"heartbeat"
            }
        )]
    );
    // The PONG is a frame from the server: both timers restart from it.
    let pong_at = at(Duration::from_millis(5_100));
    pump_at(&mut s, &mut c, pong_at);
    assert!(matches!(
        c.poll_event(),
        Ok(Some(Event::Pong { request_id: 0, .. }))
    ));
    assert_eq!(c.poll_timeout(), Some(pong_at + secs(5)));
    // Silence from here: a PING every 5 s, then the dead-peer timeout 20 s after the PONG.
    for k in 1..=3 {
        assert_eq!(
            c.handle_timeout(pong_at + secs(5 * k)),
            Some(TimerKind::Heartbeat)
        );
        assert_eq!(
            c.poll_timeout(),
            Some(pong_at + secs(5 * (k + 1)).min(secs(20)))
        );
    }
    assert_eq!(c.handle_timeout(pong_at + secs(20) - US), None);
    // The unanswered heartbeats are still queued (nobody pumped them)...
    assert!(!c.pending_output().is_empty());
    assert_eq!(
        c.handle_timeout(pong_at + secs(20)),
        Some(TimerKind::DeadPeer)
    );
    assert!(c.is_closed());
    // ...and dropped with the connection: the caller closes the socket at once.
    assert!(c.pending_output().is_empty());
    let silent = Error::PeerSilent { after: secs(20) };
    assert_eq!(c.error(), Some(&silent));
    assert_eq!(
        silent.to_string(),
        "no frame from the server for 20 s: connection closed"
    );
    assert_eq!(c.poll_timeout(), None);
    // Every later send says why, rather than a bare "not logged in".
    assert_eq!(c.send_ping(9, b"anyone?"), Err(silent.clone()));
    assert_eq!(c.send_job(1, "noop", 1, b"x", true), Err(silent));
}

#[test]
fn poll_timeout_is_always_the_earliest_pending_deadline() {
    for idle_ms in [500, 120_000] {
        let timeouts = ServerTimeouts {
            idle: Some(Duration::from_millis(idle_ms)),
            ..ServerTimeouts::default()
        };
        let (mut c, mut s) = logged_in_with(timeouts);
        let idle = |since: Timestamp| since + Duration::from_millis(idle_ms);
        big_upload(&mut c, &mut s, 1, at(secs(1)));
        // The upload's request is open, so no idle timer; only the grown receive buffer's
        // give-back, a second after the last byte moved.
        assert_eq!(s.poll_timeout(), Some(at(secs(2))));
        // Answered but not yet written: slow peer (30 s) against idle.
        s.send_error(1, ErrorCode::Internal, "x").unwrap();
        assert_eq!(
            s.poll_timeout(),
            Some(idle(at(secs(1))).min(at(secs(1 + 30))))
        );
        // Written: buffer give-back (1 s after the write) against idle.
        let n = s.pending_output().len();
        s.consume_output(n, at(secs(2)));
        let shrink = at(secs(3));
        assert_eq!(s.poll_timeout(), Some(idle(at(secs(1))).min(shrink)));
        if idle(at(secs(1))) < shrink {
            assert_eq!(s.handle_timeout(idle(at(secs(1)))), Some(TimerKind::Idle));
            continue;
        }
        // The give-back is housekeeping: nothing reported, memory returned, idle remains.
        let before = s.buffer_capacity();
        assert!(before >= 64 * 1024, "{before}");
        assert_eq!(s.handle_timeout(shrink - US), None);
        assert_eq!(s.buffer_capacity(), before);
        assert_eq!(s.handle_timeout(shrink), None);
        assert!(s.buffer_capacity() <= 4096, "{}", s.buffer_capacity());
        assert_eq!(s.poll_timeout(), Some(idle(at(secs(1)))));
    }
}

#[test]
fn timers_set_to_none_or_zero_never_fire() {
    let off = ServerTimeouts {
        handshake: None,
        hello: Some(Duration::ZERO),
        idle: Some(Duration::ZERO),
        slow_peer: None,
        frame: Some(Duration::ZERO),
        shrink_after: None,
    };
    let mut cfg = ServerConfig::new(ServerKey::from_secret([9; 32]), PARAMS);
    cfg.set_timeouts(off);
    let mut s = ServerConn::new(Arc::new(cfg), [2; 32], T0);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.handle_timeout(Timestamp::from_micros(u64::MAX)), None);
    assert!(!s.is_closed());

    let (mut c, _s) = logged_in_with(off);
    let mut ccfg = ClientConfig::new("alice", b"correct horse").unwrap();
    ccfg.set_timers(ClientTimers {
        heartbeat: None,
        dead_after: None,
    });
    let mut quiet = ClientConn::new(Arc::new(ccfg), [1; 32], T0);
    assert_eq!(quiet.poll_timeout(), None);
    assert_eq!(quiet.handle_timeout(at(secs(1 << 20))), None);
    // The default client, by contrast, has its dead-peer timer armed from creation.
    assert!(c.poll_timeout().is_some());
    assert_eq!(c.handle_timeout(at(secs(5))), Some(TimerKind::Heartbeat));
}

/// The wire code in the ERROR that `failed` queued for its peer, read by `peer`.
fn error_code_sent<A: Side, B: Side>(failed: &mut Conn<A>, peer: &mut Conn<B>) -> u16 {
    pump(failed, peer);
    match peer.poll_event() {
        Ok(Some(Event::Error {
            request_id: 0,
            code,
            ..
        })) => code,
        e => panic!("expected a connection ERROR, got {e:?}"),
    }
}

#[test]
fn framing_failures_are_told_apart_by_wire_code() {
    // Not our protocol at all, before the handshake: a clear ERROR BAD_MAGIC.
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    s.feed(b"GET / HTTP/1.1\r\n\r\n", T0);
    assert_eq!(s.poll_event().unwrap_err(), Error::BadMagic);
    assert_eq!(error_code_sent(&mut s, &mut c), ErrorCode::BadMagic as u16);

    // A length above the limit before keys exist (2 048): FRAME_TOO_LARGE after 8 bytes.
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    let mut h = vec![b'N', b'P', 1, 0];
    h.extend_from_slice(&2049u32.to_be_bytes());
    s.feed(&h, T0);
    assert!(matches!(s.poll_event(), Err(Error::FrameTooLarge { .. })));
    assert_eq!(
        error_code_sent(&mut s, &mut c),
        ErrorCode::FrameTooLarge as u16
    );

    // After login, a byte damaged in transit (the CRC not recomputed): BAD_CRC, encrypted.
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"abc").unwrap();
    let mut wire = c.pending_output().to_vec();
    c.consume_output(wire.len(), T0);
    *wire.last_mut().unwrap() ^= 1;
    s.feed(&wire, T0);
    assert!(matches!(s.poll_event(), Err(Error::BadCrc { .. })));
    assert_eq!(error_code_sent(&mut s, &mut c), ErrorCode::BadCrc as u16);

    // An unknown opcode (a newer feature level's, or garbage) has its own code, so a newer
    // peer can tell "not supported here" from a broken frame.
    let (mut c, mut s) = logged_in();
    let mut bad = vec![b'N', b'P', 1, 0, 0, 0, 0, 0, 0x77, 0x77];
    bad.extend_from_slice(&[0; 14]);
    s.feed(&bad, T0);
    assert!(matches!(s.poll_event(), Err(Error::UnknownOpcode(0x7777))));
    assert_eq!(
        error_code_sent(&mut s, &mut c),
        ErrorCode::UnknownOpcode as u16
    );
}

// ----- before login costs almost nothing; cheap requests have a rate -----

/// A frame header with a correct CRC declaring `len` body bytes.
fn raw_header(len: u32, opcode: netproto::Opcode, flags: u8) -> Vec<u8> {
    let mut h = vec![b'N', b'P', 1, flags];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&(opcode as u16).to_be_bytes());
    h.extend_from_slice(&[0; 10]);
    let crc = crc32c_of(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h
}

fn crc32c_of(bytes: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: test code, a few bytes.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_pre_key_body_limit_holds_until_login_completes() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    pump(&mut c, &mut s); // HELLO
    drain(&mut s).unwrap();
    pump(&mut s, &mut c); // HELLO_REPLY: the server has keys now, but nobody logged in
    assert!(matches!(c.poll_event(), Ok(Some(Event::ServerKey { .. }))));
    // An encrypted frame declaring 10 000 bytes is refused from its header alone.
    let h = raw_header(10_000, netproto::Opcode::LoginStart, 0x02);
    s.feed(&h, T0);
    assert!(matches!(
        s.poll_event(),
        Err(Error::FrameTooLarge { len: 10_000, .. })
    ));
    // Once logged in, the full limit applies.
    let (mut c, mut s) = logged_in();
    let img = vec![7u8; 60_000];
    c.send_job(1, "noop", img.len() as u64, &img, true).unwrap();
    pump(&mut c, &mut s);
    assert!(matches!(s.poll_event(), Ok(Some(Event::JobSubmit { .. }))));
}

#[test]
fn a_peer_that_has_not_logged_in_is_buffered_at_most_4_kib() {
    let (_c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    let junk = vec![0u8; 1 << 20];
    assert_eq!(s.feed(&junk, T0), netproto::limits::MAX_PRE_LOGIN_INPUT);
    assert!(s.buffer_capacity() <= 4096 + 64, "{}", s.buffer_capacity());
    // After HELLO too (the keys exist, login does not).
    let (mut c2, mut s2) = pair_with("alice", b"correct horse", server_config(9));
    pump(&mut c2, &mut s2);
    drain(&mut s2).unwrap();
    assert!(s2.feed(&junk, T0) <= netproto::limits::MAX_PRE_LOGIN_INPUT);
    assert!(s2.buffer_capacity() <= 2 * 4096, "{}", s2.buffer_capacity());
    // A logged-in connection may buffer two whole frames.
    let (_c, mut s) = logged_in();
    assert_eq!(
        s.feed(&junk, T0),
        netproto::limits::MAX_BUFFERED_INPUT,
        "the logged-in limit"
    );
}

#[test]
fn the_name_of_a_failed_login_stays_for_the_caller() {
    let (mut c, mut s) = pair_with("mallory", b"guess", server_config(9));
    assert_eq!(s.login_name(), "");
    assert!(matches!(login(&mut c, &mut s), Err(Error::AuthFailed)));
    assert_eq!(s.login_name(), "mallory");
    assert_eq!(s.user(), "", "nobody logged in");
}

#[test]
fn a_connection_refused_before_the_handshake_learns_when_to_come_back() {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    s.send_rate_limited(0, 4000, "too many failed logins from 127.0.0.2")
        .unwrap();
    let (code, text) = clear_error(s.pending_output());
    assert_eq!(code, ErrorCode::RateLimited as u16);
    assert_eq!(
        text,
        "retry-after-ms=4000; too many failed logins from 127.0.0.2"
    );
    assert_eq!(netproto::message::retry_after_in_text(&text), Some(4000));
    pump(&mut s, &mut c);
    assert!(matches!(
        c.poll_event(),
        Ok(Some(Event::Error { code: 407, .. }))
    ));
    assert!(matches!(c.error(), Some(Error::Remote { code: 407, .. })));
    assert!(ErrorCode::RateLimited.is_retryable());
}

#[test]
fn a_silent_peer_is_cut_by_the_hello_timeout_and_a_talking_one_is_not() {
    let timeouts = ServerTimeouts {
        hello: Some(secs(3)),
        ..ServerTimeouts::default()
    };
    let mut cfg = ServerConfig::new(ServerKey::from_secret([9; 32]), PARAMS);
    cfg.set_timeouts(timeouts);
    let cfg = Arc::new(cfg);
    let mut silent = ServerConn::new(cfg.clone(), [2; 32], T0);
    assert_eq!(silent.poll_timeout(), Some(at(secs(3))));
    assert_eq!(silent.handle_timeout(at(secs(3)) - US), None);
    assert_eq!(
        silent.handle_timeout(at(secs(3))),
        Some(TimerKind::Handshake)
    );
    let (code, text) = clear_error(silent.pending_output());
    assert_eq!(code, ErrorCode::HandshakeTimeout as u16);
    assert_eq!(text, "HELLO must arrive within 3 s");
    assert_eq!(silent.error(), Some(&Error::Timeout("hello")));
    // HELLO in time: only the handshake deadline (10 s) remains.
    let (mut c, mut s) = pair_with("alice", b"correct horse", cfg);
    pump_at(&mut c, &mut s, at(secs(2)));
    drain(&mut s).unwrap();
    assert_eq!(s.poll_timeout(), Some(at(secs(10))));
    assert_eq!(s.handle_timeout(at(secs(5))), None);
}

/// A logged-in pair whose server allows `burst` cheap requests, `per_second` after.
fn logged_in_with_rate(per_second: u32, burst: u32) -> (ClientConn, ServerConn) {
    let mut cfg = ServerConfig::new(ServerKey::from_secret([9; 32]), PARAMS);
    cfg.add_user(
        "alice",
        Verifier::create(b"correct horse", &[7u8; 16], 4096).unwrap(),
    )
    .unwrap();
    cfg.set_request_rate(Some(RequestRate { per_second, burst }));
    let (mut c, mut s) = pair_with("alice", b"correct horse", Arc::new(cfg));
    login(&mut c, &mut s).unwrap();
    (c, s)
}

#[test]
fn cheap_requests_over_the_rate_are_refused_typed_and_the_connection_stays() {
    let (mut c, mut s) = logged_in_with_rate(10, 3);
    for id in 1..=5u64 {
        c.send_ping(id, b"p").unwrap();
    }
    c.send_stats_request(6).unwrap();
    c.send_ping(0, b"heartbeat").unwrap();
    pump_at(&mut c, &mut s, at(secs(1)));
    // Three PINGs within the burst are reported (their PONGs queued); the rest are reported
    // as refused, one event a frame, with nothing left to answer.
    let evs = drain(&mut s).unwrap();
    assert_eq!(
        evs,
        [
            "Ping { request_id: 1, payload: [112] }",
            "Ping { request_id: 2, payload: [112] }",
            "Ping { request_id: 3, payload: [112] }",
            "RateLimited { request_id: 4 }",
            "RateLimited { request_id: 5 }",
            "RateLimited { request_id: 6 }",
            "RateLimited { request_id: 0 }",
        ]
    );
    pump_at(&mut s, &mut c, at(secs(1)));
    let mut pongs = Vec::new();
    let mut refused = Vec::new();
    while let Some(ev) = c.poll_event().unwrap() {
        match ev {
            Event::Pong { request_id, .. } => pongs.push(request_id),
            Event::Error {
                request_id,
                code,
                message,
            } => {
                assert_eq!(code, ErrorCode::RateLimited as u16);
                // One token every 100 ms at 10 per second.
                assert_eq!(
                    netproto::message::retry_after_in_text(message),
                    Some(100),
                    "{message}"
                );
                refused.push(request_id);
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(pongs, [1, 2, 3]);
    // The heartbeat's PING 0 goes unanswered rather than getting an ERROR for the connection.
    assert_eq!(refused, [4, 5, 6]);
    assert!(s.is_ready() && c.is_ready());
    // A tenth of a second later one more is allowed.
    c.send_stats_request(7).unwrap();
    pump_at(&mut c, &mut s, at(secs(1) + Duration::from_millis(100)));
    assert_eq!(
        drain(&mut s).unwrap(),
        vec!["StatsRequest { request_id: 7 }".to_string()]
    );
}

// ----- multi-output jobs (feature level 1.1) -----

fn info(len: usize, format: u8) -> ResultInfo {
    ResultInfo {
        total_len: len as u64,
        width: 10,
        height: 5,
        format,
        ..ResultInfo::default()
    }
}

#[test]
fn a_multi_output_job_is_answered_variant_by_variant_in_any_order() {
    let (mut c, mut s) = logged_in();
    let list = "resize:10x10;format:webp;blur:1";
    c.send_job_multi(3, list, 4, b"\x89PNG", true).unwrap();
    pump(&mut c, &mut s);
    match s.poll_event().unwrap() {
        Some(Event::JobSubmitMulti {
            request_id: 3,
            total_len: 4,
            variants,
            data: b"\x89PNG",
            last: true,
        }) => assert_eq!(variants, list),
        e => panic!("expected the multi submit, got {e:?}"),
    }
    // The whole-job answer of a single job is refused, as is an index out of range.
    assert!(matches!(
        s.send_result(3, &info(1, 1), b"x", true),
        Err(Error::BadState(_))
    ));
    assert!(matches!(
        s.send_variant_result(3, 3, &info(1, 1), b"x", true),
        Err(Error::BadState(_))
    ));
    // Variant 2 in two chunks; no other variant may start while its stream is open.
    s.send_variant_result(3, 2, &info(6, 4), b"RIF", false)
        .unwrap();
    assert!(matches!(
        s.send_variant_error(3, 0, ErrorCode::EncodeFailed, "no"),
        Err(Error::BadState(_))
    ));
    s.send_result_data(3, b"F..", true).unwrap();
    assert!(matches!(
        s.send_result_data(3, b"more", true),
        Err(Error::BadState(_))
    ));
    s.send_variant_error(3, 0, ErrorCode::EncodeFailed, "cannot encode")
        .unwrap();
    assert!(matches!(
        s.send_variant_error(3, 0, ErrorCode::EncodeFailed, "twice"),
        Err(Error::BadState(_))
    ));
    assert_eq!(s.outstanding_requests(), 1);
    s.send_variant_result(3, 1, &info(2, 4), b"ok", true)
        .unwrap();
    // Every variant answered: the request is done, and nothing more may be sent for it.
    assert_eq!(s.outstanding_requests(), 0);
    assert!(s
        .send_variant_result(3, 1, &info(2, 4), b"ok", true)
        .is_err());
    pump(&mut s, &mut c);
    let ev = drain(&mut c).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(
        ev[0].starts_with("VariantResult { request_id: 3, index: 2,"),
        "{ev:?}"
    );
    assert!(ev[1].starts_with("ResultData { request_id: 3,"), "{ev:?}");
    assert!(
        ev[2].starts_with("VariantError { request_id: 3, index: 0, code: 306,"),
        "{ev:?}"
    );
    assert!(
        ev[3].starts_with("VariantResult { request_id: 3, index: 1,"),
        "{ev:?}"
    );
    // The id is free again on the client.
    c.send_job(3, "noop", 1, b"x", true).unwrap();
}

#[test]
fn a_request_level_error_ends_a_multi_output_job_midway() {
    let (mut c, mut s) = logged_in();
    c.send_job_multi(8, "a;b;c", 1, b"x", true).unwrap();
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    s.send_variant_result(8, 1, &info(2, 1), b"ok", true)
        .unwrap();
    s.send_error(8, ErrorCode::ShuttingDown, "stopping")
        .unwrap();
    assert_eq!(s.outstanding_requests(), 0);
    assert!(s
        .send_variant_error(8, 0, ErrorCode::Internal, "late")
        .is_err());
    pump(&mut s, &mut c);
    let ev = drain(&mut c).unwrap();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev[0].starts_with("VariantResult { request_id: 8, index: 1,"));
    assert!(ev[1].starts_with("Error { request_id: 8, code: 402,"));
    assert!(c.is_ready());
    // The request is over on the client too: its id may be reused.
    c.send_job_multi(8, "a;b", 1, b"x", true).unwrap();
}

#[test]
fn an_error_cutting_a_result_stream_short_closes_that_stream_on_the_client() {
    let (mut c, mut s) = logged_in();
    c.send_job(9, "noop", 1, b"x", true).unwrap();
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    s.send_result(9, &info(4, 1), b"ab", false).unwrap();
    pump(&mut s, &mut c);
    drain(&mut c).unwrap();
    assert_eq!(c.open_streams(), 1);
    s.send_error(9, ErrorCode::Internal, "output lost").unwrap();
    pump(&mut s, &mut c);
    let ev = drain(&mut c).unwrap();
    assert!(ev[0].starts_with("Error { request_id: 9,"), "{ev:?}");
    assert_eq!(c.open_streams(), 0, "the cut stream is forgotten");
    // And the id is free again.
    c.send_job(9, "noop", 1, b"x", true).unwrap();
}

#[test]
fn a_variant_list_is_checked_before_it_is_sent_and_a_bad_count_is_the_servers_to_refuse() {
    let (mut c, mut s) = logged_in();
    for bad in ["one", "a;", ";b", "a; ;b", "1;2;3;4;5;6;7;8;9"] {
        assert!(
            matches!(
                c.send_job_multi(4, bad, 1, b"x", true),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    assert!(c.pending_output().is_empty());
    // A server's variant sends on a request it is not tracking are refused, so a 1.0 client
    // (which never sends JOB_SUBMIT_MULTI) can never receive a 1.1 opcode.
    c.send_job(5, "noop", 1, b"x", true).unwrap();
    pump(&mut c, &mut s);
    drain(&mut s).unwrap();
    assert!(matches!(
        s.send_variant_result(5, 0, &info(1, 1), b"x", true),
        Err(Error::BadState(_))
    ));
    assert!(matches!(
        s.send_variant_error(5, 0, ErrorCode::Internal, "x"),
        Err(Error::BadState(_))
    ));
}

#[test]
fn an_older_servers_unknown_opcode_answer_is_the_typed_not_supported_error() {
    // UNKNOWN_OPCODE (what servers send since the code exists) and PROTOCOL "unknown opcode
    // 0x0014" (what servers sent before it) both mean "no multi-output jobs here".
    for (code, text) in [
        (ErrorCode::UnknownOpcode, "unknown opcode 0x0014"),
        (ErrorCode::Protocol, "unknown opcode 0x0014"),
    ] {
        let (mut c, mut s) = logged_in();
        c.send_job_multi(1, "a;b", 1, b"x", true).unwrap();
        pump(&mut c, &mut s);
        s.send_error(0, code, text).unwrap();
        pump(&mut s, &mut c);
        match c.poll_event() {
            Err(Error::NotSupported { code_name, message }) => {
                assert_eq!(code_name, code.name());
                assert_eq!(message, text);
            }
            e => panic!("expected NotSupported, got {e:?}"),
        }
        assert!(c.is_closed());
        assert!(c.error().unwrap().to_string().contains("multi-output"));
    }
    // Without a multi-output job sent, the same ERROR is just the peer's ERROR.
    let (mut c, mut s) = logged_in();
    c.send_job(1, "noop", 1, b"x", true).unwrap();
    pump(&mut c, &mut s);
    s.send_error(0, ErrorCode::UnknownOpcode, "unknown opcode 0x0014")
        .unwrap();
    pump(&mut s, &mut c);
    assert!(matches!(
        c.poll_event(),
        Ok(Some(Event::Error { request_id: 0, .. }))
    ));
}
