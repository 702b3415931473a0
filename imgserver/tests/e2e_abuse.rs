//! Fair under abuse: the attacks of issue #13 against the real server, each bounded in time
//! and count, from its own loopback address (127.0.0.2 and up; the control client is
//! 127.0.0.1). Each test checks that the attacker's cost to the server stays under the
//! documented caps (DESIGN §2, "Admission and limits"), and that a control client's p99
//! stays within 2× of its idle baseline and its jobs succeed. The baseline is measured on the
//! same server right before the attack and again right after it, and the larger of the two
//! counts: on a shared machine the load drifts, and bracketing the attack keeps that drift
//! from being charged to the attack.
//!
//! The tests take one lock so they run one at a time: a p99 measured while another test's
//! attack loads the same two cores would compare nothing. The p99 rule has the same few
//! milliseconds of slack as the hostile-peer suite (single-digit-ms percentiles jitter on a
//! shared 2-core machine); it is the one wall-clock assertion here, and on a machine loaded
//! by other work far beyond its cores it is the one that can fail.
//!
//! `IMGSERVER_SOAK=1` (`make soak`) runs the long variants. `IMGSERVER_ABUSE_BEFORE=1` runs
//! the same attacks with the server's abuse limits switched off by their flags and only
//! prints the figures (nothing is asserted): the "before" column of the measurements.
//!
//! Trust boundary: this file plays the hostile peers; the server is the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netproto_sys::{ClientConfig, ClientConn, ErrorCode, Event};
use testkit::*;

/// Slack added to 2× the baseline p99, as in e2e_hostile.
const SLACK_MS: f64 = 5.0;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The "before" run: limits off, figures printed, nothing asserted.
fn before() -> bool {
    std::env::var("IMGSERVER_ABUSE_BEFORE").is_ok_and(|v| v == "1")
}

/// Starts a server with `args`; in the "before" run, with every abuse limit off too.
fn server(tag: &str, args: &[&str]) -> Server {
    let mut all: Vec<&str> = if args.contains(&"--workers") {
        Vec::new()
    } else {
        vec!["--workers", "2"]
    };
    all.extend_from_slice(args);
    if before() {
        for flag in [
            "--max-pending-output",
            "--max-events-per-turn",
            "--max-accepts-per-turn",
            "--max-unauth-conns",
            "--max-unauth-per-addr",
            "--conn-rate-per-addr",
            "--login-fail-limit",
            "--login-fail-limit-user",
            "--request-rate",
            "--hello-timeout",
        ] {
            if !args.contains(&flag) {
                all.extend_from_slice(&[flag, "0"]);
            }
        }
    }
    Server::start(tag, &all)
}

/// The control client: `imgclient bench` from 127.0.0.1, 4 connections of no-op jobs on
/// small images. Its jobs must all succeed.
fn control(srv: &Server, images: &TempDir) -> BenchReport {
    let duration = if soak() { "6s" } else { "1s" };
    let run = srv.bench(&[
        "--conns",
        "4",
        "--duration",
        duration,
        "--op",
        "noop",
        "--dir",
        images.path().to_str().unwrap(),
    ]);
    assert_eq!(run.report.errors, 0, "control jobs failed: {}", run.stdout);
    assert!(run.report.ok > 100, "too few samples: {}", run.stdout);
    run.report
}

/// Prints the row's figures and, unless this is the "before" run, holds the control client
/// to 2× its idle p99 (the larger of the runs before and after the attack).
fn report(row: &str, attacker: &str, idle: [&BenchReport; 2], hit: &BenchReport) {
    let base = idle[0].p99_ms().max(idle[1].p99_ms());
    eprintln!(
        "{row}: {attacker}; control p99 {:.2} ms idle ({:.2} before, {:.2} after), {:.2} ms \
         under attack ({:.1}x; {} jobs under attack)",
        base,
        idle[0].p99_ms(),
        idle[1].p99_ms(),
        hit.p99_ms(),
        hit.p99_ms() / base.max(0.001),
        hit.ok
    );
    if !before() {
        assert!(
            hit.p99_ms() <= 2.0 * base + SLACK_MS,
            "{row}: control p99 {} ms under attack vs {base} ms idle",
            hit.p99_ms(),
        );
    }
}

fn client_config(password: &str) -> ClientConfig {
    ClientConfig::new(USER, password.as_bytes()).unwrap()
}

/// A logged-in session from attacker address `n` (127.0.0.(n+1)).
fn attacker_session(srv: &Server, n: u8) -> RawSession {
    match login_from(
        loopback(n),
        &srv.addr,
        &client_config(PASSWORD),
        Duration::from_secs(10),
    ) {
        Login::Ready(r) => r,
        other => panic!("attacker {n} could not log in: {other:?}"),
    }
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Reads and throws away what `s` receives until EOF, an error or `stop`.
fn discard(mut s: TcpStream, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        total
    })
}

#[test]
fn an_output_flood_is_held_to_the_output_cap_and_closed_as_a_slow_client() {
    let _g = serial();
    // Long enough for the control run to happen while the attackers are held; short enough
    // for the test to see them closed.
    let srv = server("flood", &["--slow-client-timeout", "3"]);
    let images = small_images("flood-img");
    let base = control(&srv, &images);
    let rss0 = srv.rss_kb();

    // Three logged-in connections from 127.0.0.2, each sending 100 000 STATS requests
    // (soak: 300 000) and reading nothing.
    let n_req: u64 = if soak() { 300_000 } else { 100_000 };
    let mut sessions: Vec<RawSession> = (0..3).map(|_| attacker_session(&srv, 1)).collect();
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = sessions
        .iter_mut()
        .map(|r| {
            let mut frames = Vec::with_capacity(n_req as usize * 40);
            for id in 1..=n_req {
                r.conn.send_stats_request(id).unwrap();
                if id % 1000 == 0 {
                    frames.extend_from_slice(&r.take_output());
                }
            }
            frames.extend_from_slice(&r.take_output());
            let mut s = r.s.try_clone().unwrap();
            let sent = sent.clone();
            std::thread::spawn(move || {
                // Bounded: a write the server does not take within a second ends the attack
                // (the server stopped reading: what we came to see).
                s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                for chunk in frames.chunks(64 << 10) {
                    if s.write_all(chunk).is_err() {
                        return;
                    }
                    sent.fetch_add(chunk.len() as u64 / 40, Ordering::Relaxed);
                }
            })
        })
        .collect();
    if !before() {
        srv.wait(
            "all three attackers to be paused for their output",
            Duration::from_secs(20),
            || srv.try_stats().is_ok_and(|s| s.get("output_paused") >= 3),
        );
    } else {
        // Without the cap, give the flood the time the control run takes.
        std::thread::sleep(Duration::from_secs(2));
    }
    let rss1 = srv.rss_kb();
    let hit = control(&srv, &images);
    let rss2 = srv.rss_kb();
    let grew = rss1.max(rss2).saturating_sub(rss0);
    let stats = srv.stats();
    for w in writers {
        let _ = w.join();
    }
    // Not reading at all: closed by the slow-client timeout.
    srv.wait(
        "the three attackers to be closed as slow clients",
        Duration::from_secs(30),
        || {
            srv.try_stats()
                .is_ok_and(|s| s.get("slow_clients_closed") >= 3)
        },
    );
    drop(sessions);
    let after = control(&srv, &images);
    report(
        "output flood",
        &format!(
            "3 connections sent {} STATS requests without reading; master RSS +{:.1} MiB; \
             {} answered, {} refused for the request rate, paused {} times",
            sent.load(Ordering::Relaxed),
            mib(grew),
            stats.get("stats_requests"),
            stats.get("requests_rate_limited"),
            stats.get("output_paused"),
        ),
        [&base, &after],
        &hit,
    );
    if before() {
        return;
    }
    // Documented: per connection at most --max-pending-output (256 KiB) of unsent answers
    // plus one answer, and 144 KiB of input; allow for the allocator.
    assert!(
        grew < 12 * 1024,
        "master grew {} MiB for three flooding connections",
        mib(grew)
    );
}

#[test]
fn a_frame_burst_is_served_in_bounded_batches() {
    let _g = serial();
    // This row is about the batches, so the request rate (which would answer most of the
    // burst with cheap refusals; the ping flood is its row) is off: every frame costs the
    // server a full STATS answer.
    let srv = server("burst", &["--request-rate", "0"]);
    let images = small_images("burst-img");
    let base = control(&srv, &images);

    // One logged-in connection from 127.0.0.2 writing bursts of 1000 valid STATS requests in
    // one write each (40 bytes each for the attacker, a 3 KiB answer each for the server), as
    // fast as the server takes them, its replies read and thrown away, for the time of the
    // control run (at most 300 bursts, soak: 2000). The bursts are sealed beforehand, so the
    // attacker's own CPU does not compete with the control client: the server's work is
    // what is measured.
    let mut r = attacker_session(&srv, 1);
    let n_bursts = if soak() { 2000 } else { 300 };
    let mut id = 1u64;
    let sealed: Vec<Vec<u8>> = (0..n_bursts)
        .map(|_| {
            for _ in 0..1000 {
                r.conn.send_stats_request(id).unwrap();
                id += 1;
            }
            r.take_output()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    // The reader outlives the writer: a writer blocked on a server that stopped reading for
    // unread answers would otherwise wait for the slow-client timeout.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = discard(r.s.try_clone().unwrap(), stop_reading.clone());
    let bursts = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time(srv.pid());
    let writer = {
        let stop = stop.clone();
        let bursts = bursts.clone();
        let mut s = r.s.try_clone().unwrap();
        std::thread::spawn(move || {
            for burst in sealed {
                if stop.load(Ordering::Relaxed) || s.write_all(&burst).is_err() {
                    break;
                }
                bursts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    srv.wait("the first bursts", Duration::from_secs(10), || {
        bursts.load(Ordering::Relaxed) >= 2
    });
    let hit = control(&srv, &images);
    let during = bursts.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    stop_reading.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let cpu = cpu_time(srv.pid()).saturating_sub(cpu0);
    let stats = srv.stats();
    drop(r);
    let after = control(&srv, &images);
    report(
        "frame burst",
        &format!(
            "{} bursts of 1000 STATS requests ({during} while the control ran); {} answered; \
             left for the next turn {} times; master CPU {:.2} s",
            bursts.load(Ordering::Relaxed),
            stats.get("stats_requests"),
            stats.get("turns_deferred"),
            cpu.as_secs_f64()
        ),
        [&base, &after],
        &hit,
    );
    if before() {
        return;
    }
    assert!(
        stats.get("turns_deferred") > 0,
        "the bursts were never split across turns"
    );
}

#[test]
fn squatting_from_one_address_does_not_lock_others_out() {
    let _g = serial();
    raise_fd_limit();
    // As many connection slots as the squatter opens connections (the default 10 000 in the
    // soak run): without the per-address limits it would take them all.
    let n = if soak() { 10_000 } else { 2000 };
    let max_conns = n.to_string();
    let srv = server("squat", &["--max-conns", &max_conns]);
    let images = small_images("squat-img");
    let base = control(&srv, &images);
    let rss0 = srv.rss_kb();

    // 127.0.0.2 opens 10 000 bare TCP connections (short run: 2000) at once and never says a
    // word; then every 50 ms it re-opens up to 100 of those the server closed, until the
    // test is done (at most 60 s).
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let squatter = {
        let (stop, opened, addr) = (stop.clone(), opened.clone(), srv.addr.clone());
        std::thread::spawn(move || {
            let mut socks: Vec<TcpStream> = Vec::with_capacity(n);
            let end = Instant::now() + Duration::from_secs(60);
            let mut probe = [0u8; 512];
            let mut want = n;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                // Keep the ones the server has not closed (nothing to read yet).
                socks.retain_mut(|s| {
                    matches!(s.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while socks.len() < n && want > 0 {
                    want -= 1;
                    if let Ok(s) = connect_from(loopback(1), &addr) {
                        let _ = s.set_nonblocking(true);
                        socks.push(s);
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                // The attack's own pace between sweeps.
                std::thread::sleep(Duration::from_millis(50));
                want = 100;
            }
        })
    };
    srv.wait("the squatting to start", Duration::from_secs(20), || {
        opened.load(Ordering::Relaxed) >= n as u64
    });
    // Fifteen logins from 127.0.0.1, one after another, each within its 2 s.
    let t = Instant::now();
    let mut peak_unauth = 0;
    let mut logged_in = 0;
    let mut refusals = Vec::new();
    let cfg = client_config(PASSWORD);
    for i in 0..15 {
        match netproto_sys::Client::connect(&srv.addr, &cfg, None, Duration::from_secs(2)) {
            Ok(mut c) => {
                c.send_ping(i + 1, b"in", Duration::from_secs(5)).unwrap();
                assert!(matches!(
                    c.next_event(Duration::from_secs(5)).unwrap(),
                    Event::Pong { .. }
                ));
                logged_in += 1;
            }
            Err(e) => refusals.push(e.message),
        }
        peak_unauth = peak_unauth.max(srv.stat("connections_unauth"));
    }
    let logins = t.elapsed();
    let hit = control(&srv, &images);
    let rss1 = srv.rss_kb();
    let stats = srv.stats();
    stop.store(true, Ordering::Relaxed);
    let _ = squatter.join();
    let after = control(&srv, &images);
    report(
        "connection squatting",
        &format!(
            "{} bare connects from one address; at most {peak_unauth} not logged in at once; \
             {} refused (unauth cap {}, rate {}); {logged_in} of 15 logins from another \
             address in {:.2} s {refusals:?}; master RSS +{:.1} MiB",
            opened.load(Ordering::Relaxed),
            stats.get("connections_refused"),
            stats.get("refused_unauth"),
            stats.get("refused_conn_rate"),
            logins.as_secs_f64(),
            mib(rss1.saturating_sub(rss0)),
        ),
        [&base, &after],
        &hit,
    );
    if before() {
        return;
    }
    assert_eq!(logged_in, 15, "refused: {refusals:?}");
    // Documented: --max-unauth-per-addr (256) for one address; the control's own
    // connections are the rest.
    assert!(
        peak_unauth <= 256 + 8,
        "{peak_unauth} connections not logged in"
    );
    assert!(stats.get("refused_unauth") + stats.get("refused_conn_rate") > 0);
}

#[test]
fn peers_that_stall_before_login_cost_a_few_kib_each() {
    let _g = serial();
    raise_fd_limit();
    // Room for all of them: this test is about what each costs, not about the count limits
    // (the squatting test is).
    let srv = server(
        "prelogin",
        &["--handshake-timeout", "4", "--max-unauth-conns", "10000"],
    );
    let images = small_images("prelogin-img");
    let base = control(&srv, &images);
    let rss0 = srv.rss_kb();

    // 1000 peers (soak: 4000) from 127.0.0.2 and up send a valid HELLO, read the
    // HELLO_REPLY and stall; every second one then also starts a frame declaring 70 000
    // bytes and sends 60 000 of them, which the 2 KiB limit before login must refuse.
    let n: usize = if soak() { 4000 } else { 1000 };
    let cfg = client_config(PASSWORD);
    let mut big = vec![b'N', b'P', 1, 0x02];
    big.extend_from_slice(&70_000u32.to_be_bytes());
    big.extend_from_slice(&0x0003u16.to_be_bytes()); // LOGIN_START
    big.extend_from_slice(&[0; 14]);
    big.extend(std::iter::repeat_n(0xAB, 60_000));
    let mut peers = Vec::with_capacity(n);
    let mut replies = 0;
    for i in 0..n {
        // 250 a source address, within its limits.
        let mut s = connect_from(loopback(1 + (i / 250) as u8), &srv.addr).unwrap();
        let hello = ClientConn::new(&cfg, Instant::now()).unwrap();
        s.write_all(hello.pending_output()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        if s.read(&mut buf).is_ok_and(|k| k > 0) {
            replies += 1;
        }
        if i % 2 == 1 {
            let _ = s.write_all(&big);
        }
        peers.push(s);
    }
    // The oversized frames are refused at their header: only the stalled half stays.
    let (held, _) = wait_some(
        "the peers with oversized frames to be cut",
        Duration::from_secs(10),
        || {
            let held = srv.stat("connections_unauth");
            (before() || held <= (n / 2) as u64 + 8).then_some(held)
        },
    )
    .unwrap_or_else(|e| srv.fail(e));
    let rss1 = srv.rss_kb();
    let hit = control(&srv, &images);
    let rss2 = srv.rss_kb();
    let grew = rss1.max(rss2).saturating_sub(rss0);
    // The handshake timeout cuts the rest.
    srv.wait_stat("connections_unauth", 0, Duration::from_secs(15));
    drop(peers);
    let after = control(&srv, &images);
    report(
        "pre-login buffering",
        &format!(
            "{n} peers sent HELLO ({replies} answered), half of them then a 70 000-byte frame; \
             {held} still held; master RSS +{:.1} MiB ({:.1} KiB a peer)",
            mib(grew),
            grew as f64 / n as f64
        ),
        [&base, &after],
        &hit,
    );
    if before() {
        return;
    }
    assert_eq!(replies, n, "every HELLO was answered");
    // Documented: 4 KiB of input and a few KiB of state per connection before login.
    assert!(
        grew < (n as u64) * 12,
        "master grew {} KiB for {n} peers",
        grew
    );
}

/// One wrong-password attempt from attacker address `n`.
fn guess(srv: &Server, n: u8, cfg: &ClientConfig) -> Login {
    login_from(loopback(n), &srv.addr, cfg, Duration::from_secs(10))
}

#[test]
fn password_guessing_is_refused_before_any_key_exchange() {
    let _g = serial();
    let srv = server("guess", &["--workers", "1"]);
    let images = small_images("guess-img");
    let base = control(&srv, &images);

    // 127.0.0.2 tries wrong passwords at about 150 a second, ignoring every retry-after:
    // 300 attempts (soak: 1000). In parallel, the control client runs, and the real user logs
    // in from 127.0.0.1 now and then.
    let attempts = if soak() { 1000 } else { 300 };
    let wrong = client_config("not the password");
    let stop = Arc::new(AtomicBool::new(false));
    let legit = {
        let (stop, addr) = (stop.clone(), srv.addr.clone());
        std::thread::spawn(move || {
            let mut ok = 0;
            while !stop.load(Ordering::Relaxed) {
                let _c = testkit::connect(&addr);
                ok += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            ok
        })
    };
    let t = Instant::now();
    let (mut failed, mut refused, mut hints) = (0, 0, Vec::new());
    let hit = std::thread::scope(|sc| {
        let hit = sc.spawn(|| control(&srv, &images));
        for i in 0..attempts {
            let l = guess(&srv, 1, &wrong);
            let hint = l.retry_after();
            match l {
                Login::Failed { code, .. } if code == ErrorCode::AuthFailed as u16 => failed += 1,
                Login::Refused { code, .. } if code == ErrorCode::RateLimited as u16 => {
                    hints.push(hint.expect("a retry-after"));
                    refused += 1;
                }
                l => panic!("attempt {i}: {l:?}"),
            }
            // The attack's own pace.
            let due = t + Duration::from_millis(7 * (i + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        hit.join().unwrap()
    });
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let legit_ok = legit.join().unwrap();
    let stats = srv.stats();
    let after = control(&srv, &images);
    report(
        "password guessing",
        &format!(
            "{attempts} wrong logins from one address in {:.1} s: {failed} processed (full \
             handshake), {refused} refused before any key exchange (longest retry-after {:?}); \
             {legit_ok} correct logins from another address all succeeded",
            took.as_secs_f64(),
            hints.iter().max().copied().unwrap_or_default()
        ),
        [&base, &after],
        &hit,
    );
    if before() {
        return;
    }
    // Five failures, then blocks of 1, 2, 4, ... s: a handful more in this time.
    let budget = 5 + (took.as_secs_f64().log2().ceil() as u64 + 2);
    assert!(
        failed <= budget,
        "{failed} guesses processed in {took:?} (allowed {budget})"
    );
    assert_eq!(failed + refused, attempts);
    assert_eq!(stats.get("logins_failed"), failed);
    assert!(stats.get("refused_login_blocked") >= refused);
    assert!(legit_ok >= 3, "the real user logged in {legit_ok} times");

    // Guesses at the same name spread over many addresses, one each: past the per-name
    // threshold (20) every address that fails is blocked at once, and the real user still
    // logs in from its own.
    let blocked_before = stats.get("logins_blocked");
    let spread = 30u64;
    for n in 10..10 + spread as u8 {
        assert!(matches!(guess(&srv, n, &wrong), Login::Failed { .. }));
    }
    let blocked = srv.stat("logins_blocked") - blocked_before;
    // The first address's failures counted for the name too.
    assert!(
        blocked >= spread - 20,
        "{blocked} of {spread} addresses blocked"
    );
    let again = guess(&srv, 10 + spread as u8 - 1, &wrong);
    assert!(
        matches!(again, Login::Refused { code, .. } if code == ErrorCode::RateLimited as u16),
        "{again:?}"
    );
    let _real = srv.connect();
}

#[test]
fn a_ping_flood_gets_typed_refusals_past_the_request_rate() {
    let _g = serial();
    let srv = server("pingflood", &[]);
    let images = small_images("pingflood-img");
    let base = control(&srv, &images);

    // One logged-in connection from 127.0.0.2 sends PINGs at 10 000 a second: 20 000
    // (soak: 50 000), reading and decoding every answer.
    let total: u64 = if soak() { 50_000 } else { 20_000 };
    let mut r = attacker_session(&srv, 1);
    r.s.set_nonblocking(true).unwrap();
    let cpu0 = cpu_time(srv.pid());
    let (pongs, refused, hints, took, hit) = std::thread::scope(|sc| {
        let hit = sc.spawn(|| control(&srv, &images));
        let (mut pongs, mut refused, mut hints) = (0u64, 0u64, Vec::new());
        let t = Instant::now();
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut answered = 0u64;
        let end = t + Duration::from_secs(60);
        while answered < total && Instant::now() < end {
            // 100 every 10 ms.
            let due = (t.elapsed().as_millis() as u64 / 10 + 1) * 100;
            while sent < due.min(total) {
                sent += 1;
                r.conn.send_ping(sent, b"flood").unwrap();
            }
            let out = r.take_output();
            let mut off = 0;
            while off < out.len() {
                match r.s.write(&out[off..]) {
                    Ok(k) => off += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            match r.s.read(&mut buf) {
                Ok(0) => panic!("the server closed the flooding connection"),
                Ok(k) => {
                    r.conn.feed(&buf[..k], Instant::now()).unwrap();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("read: {e}"),
            }
            while let Some(ev) = r.conn.poll_event().unwrap() {
                match ev {
                    Event::Pong { .. } => pongs += 1,
                    Event::Error { code, message, .. } => {
                        assert_eq!(code, ErrorCode::RateLimited as u16, "{message}");
                        hints.push(
                            netproto_sys::error::retry_after_in_text(message)
                                .expect("a retry-after"),
                        );
                        refused += 1;
                    }
                    e => panic!("unexpected {e:?}"),
                }
                answered = pongs + refused;
            }
        }
        (pongs, refused, hints, t.elapsed(), hit.join().unwrap())
    });
    let cpu = cpu_time(srv.pid()).saturating_sub(cpu0);
    let after = control(&srv, &images);
    report(
        "ping flood",
        &format!(
            "{total} PINGs at 10 000/s in {:.1} s: {pongs} answered, {refused} refused \
             RATE_LIMITED (retry-after up to {} ms); master CPU {:.2} s",
            took.as_secs_f64(),
            hints.iter().max().copied().unwrap_or(0),
            cpu.as_secs_f64()
        ),
        [&base, &after],
        &hit,
    );
    assert_eq!(pongs + refused, total, "every PING got an answer");
    if before() {
        return;
    }
    // Documented: --request-burst (1000) at once, --request-rate (1000) a second after that.
    let allowed = 1000 + (1000.0 * took.as_secs_f64()) as u64 + 50;
    assert!(pongs <= allowed, "{pongs} answered in {took:?}");
    assert!(refused > 0);
    assert_eq!(srv.stat("requests_rate_limited"), refused);
    // The connection is still there and still answered within the rate.
    r.conn.send_ping(0xFFFF_FFFF, b"still?").unwrap();
    let out = r.take_output();
    r.s.set_nonblocking(false).unwrap();
    r.s.write_all(&out).unwrap();
    r.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ev = r.next_event();
    assert!(
        ev == "pong 4294967295" || ev == format!("error {}", ErrorCode::RateLimited as u16),
        "{ev}"
    );
}
