//! Hostile frames against the real server: each gets its documented reaction (a typed ERROR
//! and/or the connection closed) and a legitimate client on the same server notices nothing.
//!
//! Trust boundary: this file plays the hostile network peer; the server is the real binary,
//! started through the shared test kit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use netproto_sys::{ClientConfig, ErrorCode, Event};
use testkit::client::ClientConn;
use testkit::*;

const HELLO: u16 = 0x0001;
const PING: u16 = 0x0020;
const ERROR: u16 = 0x0030;

/// A frame header (+ body) with a correct CRC-32C, as a peer would build it.
fn frame(opcode: u16, flags: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut h = vec![b'N', b'P', 1, flags];
    h.extend_from_slice(&(body.len() as u32).to_be_bytes());
    h.extend_from_slice(&opcode.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&id.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), body);
    h.extend_from_slice(&crc.to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// Sends `bytes` on a fresh connection and reads until the server closes it (or `wait`).
/// Returns what the server sent and whether it closed the connection.
fn send_raw(addr: &str, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    read_until_close(&mut s, wait)
}

/// The error code of a clear ERROR frame at the start of `bytes`.
fn clear_error_code(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 26
        || &bytes[0..2] != b"NP"
        || u16::from_be_bytes([bytes[8], bytes[9]]) != ERROR
        || bytes[3] & 1 != 0
    {
        return None;
    }
    Some(u16::from_be_bytes([bytes[24], bytes[25]]))
}

#[test]
fn hostile_frames_get_their_documented_reaction() {
    let srv = Server::start(
        "frames",
        &[
            "--workers",
            "1",
            "--handshake-timeout",
            "1",
            "--max-in-flight",
            "2",
        ],
    );
    let mut legit = srv.connect();
    legit
        .send_ping(1, b"before", Duration::from_secs(5))
        .unwrap();
    assert!(matches!(
        legit.next_event(Duration::from_secs(5)).unwrap(),
        Event::Pong { .. }
    ));

    let hello_body = [1u8, 0]
        .iter()
        .copied()
        .chain([9u8; 32])
        .collect::<Vec<u8>>();
    let good_hello = frame(HELLO, 0, 0, &hello_body);
    let mut bad_crc = good_hello.clone();
    bad_crc[21] ^= 0xff;
    let mut huge = frame(HELLO, 0, 0, &[]);
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let garbage_body = frame(HELLO, 0, 0, &[0xAB; 34]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "wrong magic",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ErrorCode::BadMagic as u16,
        ),
        (
            "length 0 HELLO",
            frame(HELLO, 0, 0, &[]),
            ErrorCode::Protocol as u16,
        ),
        (
            "length 4 GiB",
            huge[..8].to_vec(),
            ErrorCode::FrameTooLarge as u16,
        ),
        ("bad CRC", bad_crc, ErrorCode::BadCrc as u16),
        (
            "valid CRC, garbage body",
            garbage_body,
            ErrorCode::Protocol as u16,
        ),
        (
            "unknown opcode",
            frame(0x7777, 0, 0, b""),
            ErrorCode::UnknownOpcode as u16,
        ),
        (
            "PING before the handshake",
            frame(PING, 0, 1, b"x"),
            ErrorCode::NotLoggedIn as u16,
        ),
    ];
    for (what, bytes, want) in &cases {
        let t = Instant::now();
        let (got, closed) = send_raw(&srv.addr, bytes, Duration::from_secs(5));
        assert!(closed, "{what}: connection left open");
        assert_eq!(clear_error_code(&got), Some(*want), "{what}: got {got:?}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: took {:?}",
            t.elapsed()
        );
    }

    // A truncated header, then silence: cut by the handshake timeout with HANDSHAKE_TIMEOUT.
    let (got, closed) = send_raw(&srv.addr, &good_hello[..10], Duration::from_secs(4));
    assert!(closed);
    assert_eq!(
        clear_error_code(&got),
        Some(ErrorCode::HandshakeTimeout as u16)
    );

    // A clear frame after the handshake, before login: NOT_LOGGED_IN, closed.
    {
        let cfg = ClientConfig::new(USER, PASSWORD.as_bytes()).unwrap();
        let mut conn = ClientConn::new(&cfg, Instant::now()).unwrap();
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        s.write_all(conn.pending_output()).unwrap();
        let n = conn.pending_output().len();
        conn.consume_output(n, Instant::now());
        let mut buf = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let k = s.read(&mut buf).unwrap();
        conn.feed(&buf[..k], Instant::now()).unwrap();
        assert!(matches!(
            conn.poll_event().unwrap(),
            Some(Event::ServerKey { .. })
        ));
        s.write_all(&frame(PING, 0, 1, b"early")).unwrap();
        let (_, closed) = read_until_close(&mut s, Duration::from_secs(3));
        assert!(
            closed,
            "clear frame after the handshake must close the connection"
        );
    }

    // Encrypted frames: replayed, reordered and reflected ones all end the session.
    let mut r = RawSession::login(&srv.addr);
    r.conn.send_ping(1, b"once").unwrap();
    let ping = r.take_output();
    r.s.write_all(&ping).unwrap();
    assert_eq!(r.next_event(), "pong 1");
    r.s.write_all(&ping).unwrap(); // replay
    assert_eq!(
        r.expect_error_then_close(),
        Some(ErrorCode::Protocol as u16),
        "replayed frame"
    );

    let mut r = RawSession::login(&srv.addr);
    r.conn.send_ping(1, b"first").unwrap();
    let first = r.take_output();
    r.conn.send_ping(2, b"second").unwrap();
    let second = r.take_output();
    r.s.write_all(&second).unwrap();
    r.s.write_all(&first).unwrap();
    assert_eq!(
        r.expect_error_then_close(),
        Some(ErrorCode::Protocol as u16),
        "reordered frames"
    );

    let mut r = RawSession::login(&srv.addr);
    r.conn.send_ping(7, b"mirror").unwrap();
    r.flush();
    let before = r.seen.len();
    assert_eq!(r.next_event(), "pong 7");
    let pong = r.seen[before..].to_vec();
    r.s.write_all(&pong).unwrap(); // the server's own frame, reflected back
    assert_eq!(
        r.expect_error_then_close(),
        Some(ErrorCode::Protocol as u16),
        "reflected frame"
    );

    // A byte damaged in transit (the CRC not recomputed) is told apart from tampering: the
    // encrypted ERROR says BAD_CRC.
    let mut r = RawSession::login(&srv.addr);
    r.conn.send_ping(1, b"damaged").unwrap();
    let mut ping = r.take_output();
    let last = ping.len() - 1;
    ping[last] ^= 0x40;
    r.s.write_all(&ping).unwrap();
    assert_eq!(
        r.expect_error_then_close(),
        Some(ErrorCode::BadCrc as u16),
        "damaged frame"
    );

    // More pipelined jobs than the in-flight limit (2): the rest are refused, typed.
    let mut r = RawSession::login(&srv.addr);
    let img = sample("chelsea_64x64.png");
    for id in 1..=5u64 {
        r.conn
            .send_job(id, "noop", img.len() as u64, &img, true)
            .unwrap();
    }
    r.flush();
    let (mut ok, mut refused) = (0, 0);
    while ok + refused < 5 {
        let ev = r.next_event();
        if ev.starts_with("result") {
            ok += 1;
        } else if ev == format!("error {}", ErrorCode::TooManyInFlight as u16) {
            refused += 1;
        } else {
            panic!("unexpected {ev}");
        }
    }
    assert!(refused >= 1 && ok >= 2, "ok {ok}, refused {refused}");

    // Nobody else noticed: the first client still works, and the server counted it all.
    legit
        .send_ping(2, b"after", Duration::from_secs(5))
        .unwrap();
    assert!(matches!(
        legit.next_event(Duration::from_secs(5)).unwrap(),
        Event::Pong { id: 2, .. }
    ));
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut legit, 3, "invert", &small),
        Outcome::Ok { .. }
    ));
    assert!(
        srv.stat("error_protocol") >= 3,
        "encrypted violations are counted"
    );
}

#[test]
fn hostile_peers_do_not_hurt_a_legitimate_client() {
    raise_fd_limit();
    let hs = if soak() { "15" } else { "6" };
    // Room for all of them: this test is about timeouts, not the connection limits (the
    // per-address and pre-login limits have their own tests, in e2e_abuse), and about the
    // handshake timeout, not the shorter one for a HELLO.
    let srv = Server::start(
        "peers",
        &[
            "--workers",
            "2",
            "--handshake-timeout",
            hs,
            "--hello-timeout",
            "0",
            "--max-conns",
            "20000",
            "--max-unauth-conns",
            "0",
            "--max-unauth-per-addr",
            "0",
            "--conn-rate-per-addr",
            "0",
        ],
    );
    let images = small_images("peers-img");
    let args = [
        "--conns",
        "20",
        "--duration",
        "2s",
        "--op",
        "noop",
        "--dir",
        images.path().to_str().unwrap(),
    ];
    let base_run = srv.bench(&args);
    let base = &base_run.report;
    assert_eq!(base.errors, 0, "{}", base_run.stdout);

    // 2000 (soak: 10 000) connections that never say anything, 50 that send a byte a second (slowloris),
    // and 100 half-open ones (a partial header, then their write side shut).
    let n_idle = if soak() { 10_000 } else { 2000 };
    let idle: Vec<TcpStream> = (0..n_idle)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    let hello = frame(HELLO, 0, 0, &[1u8; 34]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&srv.addr).unwrap();
            let hello = hello.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for b in hello {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err()
                    {
                        return;
                    }
                    // The attack's own pace: one byte a second.
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();
    let half: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&srv.addr).unwrap();
            s.write_all(&hello[..7]).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s
        })
        .collect();
    // Every idle connection accepted (the half-open ones may already be cut on their EOF).
    srv.wait(
        "the idle connections to be accepted",
        Duration::from_secs(10),
        || {
            srv.try_stats()
                .is_ok_and(|s| s.get("connections_open") >= n_idle as u64)
        },
    );
    let open_under_attack = srv.stat("connections_open");
    let rss_under_attack = srv.rss_kb();
    let hostile_run = srv.bench(&args);
    let hostile = &hostile_run.report;
    assert_eq!(hostile.errors, 0, "{}", hostile_run.stdout);
    eprintln!(
        "p99 baseline {:.2} ms, under attack {:.2} ms ({} requests vs {}); {} connections open; master RSS {} KiB",
        base.p99_ms(), hostile.p99_ms(), base.ok, hostile.ok, open_under_attack, rss_under_attack
    );
    assert!(base.ok > 0 && hostile.ok > 0, "both runs did work");
    // Latency under attack is a figure, not a check, in the default run: single-digit-ms
    // percentiles on a shared 2-core CI machine swing by more than any bound worth asserting
    // (the run above already requires every request of the attacked run to succeed). The soak
    // run, on a machine of its own, holds it within 2x plus a few ms.
    if soak() {
        assert!(
            hostile.p99_ms() <= 2.0 * base.p99_ms() + 5.0,
            "p99 {} ms vs baseline {} ms",
            hostile.p99_ms(),
            base.p99_ms()
        );
    }
    assert!(open_under_attack >= n_idle as u64);
    assert!(
        rss_under_attack < 200 * 1024,
        "master RSS {rss_under_attack} KiB"
    );

    // The handshake timeout cuts every one of them.
    srv.wait_stat(
        "connections_open",
        0,
        Duration::from_secs(if soak() { 20 } else { 10 }),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(idle);
    drop(half);
    for t in slow {
        let _ = t.join();
    }
}

#[test]
fn a_logged_in_peer_trickling_a_frame_is_cut_off_at_the_frame_timeout() {
    // A job upload outstanding (so the idle timer is off) and the next frame sent a byte at a
    // time: without a per-frame deadline this peer held its connection and its slot forever.
    let srv = Server::start("trickle", &["--workers", "1", "--frame-timeout", "0.5"]);
    let mut r = RawSession::login(&srv.addr);
    r.conn.send_job(1, "noop", 6, b"abc", false).unwrap();
    r.flush();
    r.conn.send_job_data(1, b"def", true).unwrap();
    let frame = r.take_output();
    let started = std::time::Instant::now();
    // At most one byte per 50 ms, bounded by the frame's length; the server's cut arrives
    // as an ERROR while the frame is still unfinished.
    let mut sent = 0;
    let mut closed_early = false;
    for b in &frame[..frame.len() - 1] {
        if r.s.write_all(std::slice::from_ref(b)).is_err() {
            closed_early = true;
            break;
        }
        sent += 1;
        r.s.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 4096];
        match r.s.read(&mut buf) {
            Ok(0) => {
                closed_early = true;
                break;
            }
            Ok(n) => {
                r.seen.extend_from_slice(&buf[..n]);
                r.conn.feed(&buf[..n], std::time::Instant::now()).unwrap();
                break;
            }
            Err(_) => {}
        }
    }
    assert!(
        sent < frame.len() - 1 || closed_early,
        "the frame was never cut off"
    );
    r.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        r.expect_error_then_close(),
        Some(ErrorCode::SlowClient as u16)
    );
    // Well after the deadline, but not the idle timeout or anything like it.
    assert!(started.elapsed() < Duration::from_secs(30));
    wait_until("the log line", Duration::from_secs(5), || {
        srv.log_text()
            .contains("a frame took over 0.5 s to arrive; closing")
    })
    .unwrap_or_else(|e| srv.fail(e));
    // The slot the upload held is free again.
    srv.wait_stat("slots_in_use", 0, Duration::from_secs(5));
}

#[test]
fn refused_jobs_with_hostile_specs_neither_flood_nor_forge_the_log() {
    let srv = Server::start("logflood", &["--workers", "1"]);
    let mut c = srv.connect();
    let before = srv.log_text().lines().count();
    let hostile = [
        "blur:2\nINFO  master[1] forged",
        "blur:2\r",
        "blur:\u{b}2",
        "blur:\u{c}2",
        "blur:2\u{85}x",
        "blur:2\u{2028}x",
        "\u{1b}[2Jblur:2",
    ];
    // 700 refused jobs, as fast as the client can send them.
    for i in 0..700u64 {
        let spec = hostile[i as usize % hostile.len()];
        match run_job(&mut c, i + 1, spec, b"not even an image") {
            Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::BadSpec as u16),
            o => panic!("{spec:?}: {o:?}"),
        }
    }
    srv.wait_stat("error_bad_spec", 700, Duration::from_secs(10));
    let log = srv.log_text();
    // Refusals are logged within the client's budget (a burst, then one a second; DESIGN,
    // "Logging"), the rest counted in a summary line: a few lines, not 700.
    let added = log.lines().count() - before;
    assert!(added < 30, "{added} log lines for 700 refused jobs");
    // With every refusal logged (debug), each record is still one line that starts with its
    // timestamp, and no raw control character or line separator reaches the file.
    let srv = Server::builder("logforge")
        .args(&["--workers", "1"])
        .env("RUST_LOG", "debug")
        .start();
    let mut c = srv.connect();
    for (i, spec) in hostile.iter().enumerate() {
        assert!(matches!(
            run_job(&mut c, i as u64 + 1, spec, b"x"),
            Outcome::Error { .. }
        ));
    }
    srv.wait_stat(
        "error_bad_spec",
        hostile.len() as u64,
        Duration::from_secs(10),
    );
    let log = srv.log_text();
    assert!(
        log.matches("rejected BAD_SPEC").count() >= hostile.len(),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with("20"),
            "a line without its timestamp: {line:?}"
        );
    }
    for bad in ['\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}', '\u{1b}'] {
        assert!(!log.contains(bad), "raw {bad:?} in the log");
    }
    // A user name is the peer's text too: a right-to-left override in it (a valid name
    // character) reaches the log escaped, so it cannot reorder how the line displays.
    let cfg = netproto_sys::ClientConfig::new("evil\u{202e}gnp.exe", b"guess").unwrap();
    assert!(netproto_sys::Client::connect(&srv.addr, &cfg, None, Duration::from_secs(10)).is_err());
    wait_until("the failed login's line", Duration::from_secs(5), || {
        srv.log_text()
            .contains("login failed for user evil\\u{202e}gnp.exe")
    })
    .unwrap_or_else(|e| srv.fail(e));
    assert!(!srv.log_text().contains('\u{202e}'));
}
