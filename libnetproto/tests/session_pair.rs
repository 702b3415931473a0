//! A client and a server `Conn` wired together in memory: login, traffic, and every attack the
//! session must reject (tampering, replay, reordering, reflection, wrong credentials, a
//! changed server key). No sockets: bytes are moved by hand, so each test can interfere.

use std::sync::Arc;

use netproto::conn::{ClientConfig, Conn, Event, ServerConfig};
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

fn pair_with(user: &str, pw: &[u8], scfg: Arc<ServerConfig>) -> (Conn, Conn) {
    let c = Conn::client(Arc::new(ClientConfig::new(user, pw).unwrap()), [1u8; 32]);
    let s = Conn::server(scfg, [2u8; 32]);
    (c, s)
}

/// Moves all pending output from `a` into `b` (which must have room for it).
fn pump(a: &mut Conn, b: &mut Conn) -> Vec<u8> {
    let out = a.pending_output().to_vec();
    a.consume_output(out.len());
    assert_eq!(b.feed(&out), out.len());
    out
}

/// Collects events as owned debug strings (events borrow the connection).
fn drain(c: &mut Conn) -> Result<Vec<String>, Error> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event()? {
        v.push(format!("{e:?}"));
    }
    Ok(v)
}

/// Runs handshake and login to completion; returns (client, server).
fn logged_in() -> (Conn, Conn) {
    let (mut c, mut s) = pair_with("alice", b"correct horse", server_config(9));
    login(&mut c, &mut s).unwrap();
    (c, s)
}

fn login(c: &mut Conn, s: &mut Conn) -> Result<(), Error> {
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
    c.consume_output(wire.len());
    let mut fed = 0;
    let mut got = Vec::new();
    let mut n_events = 0;
    loop {
        fed += s.feed(&wire[fed..]);
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
    c.consume_output(wire.len());
    // Flip a ciphertext bit and fix the CRC, as an active attacker would: the tag catches it.
    wire[HEADER_LEN] ^= 1;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&wire[..20]), &wire[HEADER_LEN..]);
    wire[20..24].copy_from_slice(&crc.to_be_bytes());
    s.feed(&wire);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
    assert!(s.is_closed());
    // Flipping a bit without fixing the CRC is caught earlier, as a transmission error.
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"abc").unwrap();
    let mut wire = c.pending_output().to_vec();
    wire[HEADER_LEN + 1] ^= 4;
    s.feed(&wire);
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
    s.feed(&wire);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn replayed_frame_is_rejected() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"once").unwrap();
    let wire = pump(&mut c, &mut s);
    assert_eq!(drain(&mut s).unwrap().len(), 1);
    s.feed(&wire);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn reordered_frames_are_rejected() {
    let (mut c, mut s) = logged_in();
    c.send_ping(1, b"first").unwrap();
    let first = c.pending_output().to_vec();
    c.consume_output(first.len());
    c.send_ping(2, b"second").unwrap();
    let second = c.pending_output().to_vec();
    s.feed(&second);
    s.feed(&first);
    assert_eq!(s.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn reflected_frame_is_rejected() {
    // A frame the client sent, bounced back to the client: wrong direction key.
    let (mut c, _s) = logged_in();
    c.send_ping(1, b"mirror").unwrap();
    let wire = c.pending_output().to_vec();
    c.feed(&wire);
    assert_eq!(c.poll_event().unwrap_err(), Error::DecryptFailed);
}

#[test]
fn clear_frames_after_the_handshake_are_rejected() {
    let (_c, mut s) = logged_in();
    let mut wire = Vec::new();
    netproto::frame::encode(&mut wire, netproto::Opcode::Ping, 0, 1, b"plain").unwrap();
    s.feed(&wire);
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
    s.feed(&wire);
    assert!(s.poll_event().is_err());
    assert!(s.is_closed());
    // The server queued a clear-or-encrypted ERROR NOT_LOGGED_IN for the peer before closing.
    assert!(!s.pending_output().is_empty());
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
    c.consume_output(hello.len());
    // Replace the client's ephemeral key with the attacker's own (CRC fixed up).
    let attacker =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3u8; 32])).to_bytes();
    hello[HEADER_LEN + 2..HEADER_LEN + 34].copy_from_slice(&attacker);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&hello[..20]), &hello[HEADER_LEN..]);
    hello[20..24].copy_from_slice(&crc.to_be_bytes());
    s.feed(&hello);
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
    // The rest of job 1 produces no event; the ping behind it does.
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(Event::Ping { request_id: 2, .. })
    ));
}

#[test]
fn input_is_bounded() {
    let (_c, mut s) = logged_in();
    let junk = vec![0u8; 1 << 20];
    let taken = s.feed(&junk);
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
    s.feed(&h);
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

#[test]
fn nothing_is_sent_after_bye_and_buffers_shrink_between_transfers() {
    let (mut c, mut s) = logged_in();
    // A transfer large enough to grow both buffers, then shrink, then another transfer.
    for round in 1..=2u64 {
        let input = vec![round as u8; 140_000];
        c.send_job(round, "noop", input.len() as u64, &input[..65536], false)
            .unwrap();
        c.send_job_data(round, &input[65536..131072], false)
            .unwrap();
        c.send_job_data(round, &input[131072..], true).unwrap();
        let wire = c.pending_output().to_vec();
        c.consume_output(wire.len());
        let (mut fed, mut got) = (0, Vec::new());
        loop {
            fed += s.feed(&wire[fed..]);
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
        s.shrink_buffers();
        c.shrink_buffers();
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
