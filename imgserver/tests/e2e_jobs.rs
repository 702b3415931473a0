//! End-to-end: real imgserver binary, real workers, real client library (through the
//! shared test kit).
//!
//! Trust boundary: the client's side of the network and the administrator's view from
//! /proc; nothing here reaches into the server's code.

use std::collections::HashSet;
use std::time::Duration;

use netproto_sys::ErrorCode;
use testkit::*;

#[test]
fn filter_job_returns_exactly_the_in_process_result() {
    let srv = Server::start("exact", &["--workers", "2"]);
    let mut c = srv.connect();
    for (i, (file, spec)) in [
        ("cat.png", "blur:2"),
        ("rocket.jpg", "resize:200x,grayscale"),
        ("coffee.png", "rotate:90,format:jpeg:80"),
        ("hubble_deep_field.jpg", "sharpen:1,format:png"),
    ]
    .iter()
    .enumerate()
    {
        let input = std::fs::read(samples().join(file)).unwrap();
        let pipeline: imgfilters::Pipeline = spec.parse().unwrap();
        let local = imgfilters::run(&input, &pipeline, &imgfilters::Limits::default()).unwrap();
        match run_job(&mut c, i as u64 + 1, spec, &input) {
            Outcome::Ok { info, bytes } => {
                assert_eq!(
                    bytes, local.bytes,
                    "{file} {spec}: server output differs from in-process output"
                );
                assert_eq!((info.width, info.height), (local.width, local.height));
                assert_eq!(info.total_len, bytes.len() as u64);
            }
            o => panic!("{file} {spec}: {o:?}"),
        }
    }
    // Larger than one 64 KiB chunk in both directions was exercised above (cat.png is 240 KB).
    assert_eq!(srv.stat("jobs_ok"), 4);
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn job_larger_than_a_slot_goes_through_a_memfd() {
    // 64 KiB slots: every sample image is larger, so input and output take the memfd path.
    let srv = Server::start(
        "memfd",
        &["--workers", "1", "--slot-size", "65536", "--slots", "2"],
    );
    let mut c = srv.connect();
    let input = std::fs::read(samples().join("astronaut.png")).unwrap();
    let local = imgfilters::run(
        &input,
        &"invert".parse().unwrap(),
        &imgfilters::Limits::default(),
    )
    .unwrap();
    match run_job(&mut c, 1, "invert", &input) {
        Outcome::Ok { bytes, .. } => assert_eq!(bytes, local.bytes),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("large_jobs"), 1);
}

#[test]
fn output_larger_than_its_slot_comes_back_in_a_memfd() {
    // A small input in a 64 KiB slot; its output is larger than the slot for the BMP and
    // TIFF jobs, so the worker's sink spills and the result returns in a memfd.
    let srv = Server::start(
        "spill",
        &["--workers", "1", "--slot-size", "65536", "--slots", "2"],
    );
    let mut c = srv.connect();
    let input = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(input.len() < 65536);
    for (id, spec) in [
        (1, "resize:300x300:exact,format:bmp"),
        (2, "resize:300x300:exact,format:tiff"),
        (3, "resize:300x300:exact,format:jpeg:90"),
        (4, "noop"),
    ] {
        let local = imgfilters::run(
            &input,
            &spec.parse().unwrap(),
            &imgfilters::Limits::default(),
        )
        .unwrap();
        match run_job(&mut c, id, spec, &input) {
            Outcome::Ok { bytes, .. } => assert_eq!(bytes, local.bytes, "{spec}"),
            o => panic!("{spec}: {o:?}"),
        }
    }
    assert_eq!(srv.stat("jobs_ok"), 4);
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn bad_requests_get_typed_errors_and_the_connection_survives() {
    let srv = Server::start(
        "errors",
        &[
            "--workers",
            "1",
            "--max-pixels",
            "100000",
            "--max-upload",
            "1000000",
        ],
    );
    let mut c = srv.connect();
    let cat = std::fs::read(samples().join("cat.png")).unwrap();
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("blur:abc", cat.clone(), ErrorCode::BadSpec),
        (
            "noop",
            b"this is not an image at all".to_vec(),
            ErrorCode::UnsupportedFormat,
        ),
        // 451x300 = 135 300 pixels > 100 000: refused from the header, before decoding.
        ("blur:2", cat.clone(), ErrorCode::TooManyPixels),
        (
            "crop:0:0:10x10",
            vec![0u8; 2_000_000],
            ErrorCode::InputTooLarge,
        ),
        (
            "noop",
            small[..small.len() / 2].to_vec(),
            ErrorCode::DecodeFailed,
        ),
        // 79 bytes declaring 10 gigapixels: refused from the header, never allocated.
        (
            "blur:2",
            png_bomb(100_000, 100_000, 2),
            ErrorCode::TooManyPixels,
        ),
    ];
    let before = srv.stats();
    for (i, (spec, input, want)) in cases.iter().enumerate() {
        match run_job(&mut c, i as u64 + 1, spec, input) {
            Outcome::Error { code, message } => assert_eq!(code, *want as u16, "{spec}: {message}"),
            o => panic!("{spec}: expected {want:?}, got {o:?}"),
        }
    }
    let after = srv.stats();
    let delta = |k: &str| after.get(k) - before.get(k);
    // The master refuses the bad spec and the oversized upload itself: only the four jobs
    // that need their image reach the worker, and each fails there without completing a
    // decode (no successful worker job, no decode time).
    assert_eq!(delta("worker_jobs_total"), 4, "jobs that reached a worker");
    assert_eq!(delta("worker0_jobs_failed"), 4);
    assert_eq!(delta("worker0_jobs_ok"), 0);
    assert_eq!(delta("decode_us_total"), 0);
    // Each refusal is counted under its own kind.
    for (counter, n) in [
        ("error_bad_spec", 1),
        ("error_unsupported_format", 1),
        ("error_too_many_pixels", 2),
        ("error_too_large", 1),
        ("error_decode", 1),
        ("jobs_failed", 6),
        ("jobs_ok", 0),
    ] {
        assert_eq!(delta(counter), n, "{counter}");
    }
    // The connection still works, and a completed decode does move the counters above.
    assert!(run_job(&mut c, 100, "grayscale", &small).is_ok());
    let last = srv.stats();
    assert_eq!(
        last.get("worker0_jobs_ok") - after.get("worker0_jobs_ok"),
        1
    );
    assert!(
        last.get("decode_us_total") > after.get("decode_us_total"),
        "a decode is timed"
    );
}

#[test]
fn wrong_password_is_refused_and_stats_are_served() {
    let srv = Server::start("auth", &["--workers", "1"]);
    let cfg = netproto_sys::ClientConfig::new(USER, b"wrong").unwrap();
    let e =
        netproto_sys::Client::connect(&srv.addr, &cfg, None, Duration::from_secs(5)).unwrap_err();
    assert!(e.is(netproto_sys::ffi::NP_AUTH_FAILED), "{e}");
    let cfg = netproto_sys::ClientConfig::new("nobody", PASSWORD.as_bytes()).unwrap();
    let e2 =
        netproto_sys::Client::connect(&srv.addr, &cfg, None, Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        e.message, e2.message,
        "unknown user and wrong password must look the same"
    );

    let mut c = srv.connect();
    c.send_stats_request(5, Duration::from_secs(5)).unwrap();
    match c.next_event(Duration::from_secs(5)).unwrap() {
        netproto_sys::Event::Stats { id: 5, body } => {
            let stats = netproto_sys::parse_stats(body).unwrap();
            let get = |k: &str| stats.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap();
            assert_eq!(get("logins_failed"), 2);
            assert_eq!(get("logins_ok"), 1);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn busy_is_answered_at_once_when_the_queue_is_full() {
    // One slot: while a job holds it, the next one is refused with BUSY immediately.
    let srv = Server::builder("busy")
        .args(&["--workers", "1", "--slots", "1", "--job-timeout", "5"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    send_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG");
    srv.wait_stat("slots_in_use", 1, Duration::from_secs(5));
    let t = std::time::Instant::now();
    match run_job(&mut c, 2, "noop", b"anything") {
        Outcome::Busy { retry_after_ms } => assert!(retry_after_ms >= 50),
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "BUSY must not wait for the queue"
    );
    assert!(srv.stat("jobs_busy") >= 1);
}

#[test]
fn large_jobs_beyond_their_budget_get_busy() {
    // 64 KiB slots and a 128 KiB budget for larger jobs: one 100 KB upload fits, a second
    // one while the first is held does not, and gets BUSY at once; small jobs still run.
    let srv = Server::builder("largebudget")
        .args(&[
            "--workers",
            "2",
            "--slot-size",
            "65536",
            "--large-job-budget",
            "131072",
            "--job-timeout",
            "5",
        ])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    let mut hang = b"IMGSERVER-FAULT-HANG".to_vec();
    hang.resize(100_000, b'.');
    send_job(&mut c, 1, "noop", &hang);
    // The hanging job holds its budget once its upload is complete and it is queued or running.
    srv.wait_stat("large_jobs", 1, Duration::from_secs(5));
    let mut big = b"second".to_vec();
    big.resize(100_000, b'.');
    match run_job(&mut c, 2, "noop", &big) {
        Outcome::Busy { retry_after_ms } => assert!(retry_after_ms >= 50),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("jobs_busy"), 1);
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(small.len() < 65536);
    match run_job(&mut c, 3, "invert", &small) {
        Outcome::Ok { .. } => {}
        o => panic!("{o:?}"),
    }
}

#[test]
fn too_many_connections_are_refused_cleanly() {
    let srv = Server::start("maxconns", &["--workers", "1", "--max-conns", "1"]);
    let _first = srv.connect();
    let cfg = netproto_sys::ClientConfig::new(USER, PASSWORD.as_bytes()).unwrap();
    let e =
        netproto_sys::Client::connect(&srv.addr, &cfg, None, Duration::from_secs(5)).unwrap_err();
    assert!(
        e.is(netproto_sys::ffi::NP_REMOTE_ERROR) && e.message.contains("TOO_MANY_CONNECTIONS"),
        "{e}"
    );
    assert_eq!(srv.stat("connections_refused"), 1);
}

#[test]
fn respawned_workers_hold_only_their_channel_ring_stats_and_stdio() {
    // The connection left in its handshake must outlive the worker replacements.
    let srv = Server::start("nosock", &["--workers", "2", "--hello-timeout", "0"]);
    // Clients connected and logged in, and one connection still in its handshake, all before
    // the workers are replaced: their sockets exist in the master when the replacements are
    // started, which is when a leak would happen.
    let mut clients: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    let _handshaking = std::net::TcpStream::connect(&srv.addr).unwrap();
    srv.wait_stat("connections_open", 4, Duration::from_secs(5));
    let original = srv.workers();
    assert_eq!(original.len(), 2);
    let mut workers = original.clone();
    for victim in &original {
        workers = srv.replace_worker(*victim, Duration::from_secs(5));
    }
    assert!(
        workers.iter().all(|w| !original.contains(w)),
        "{original:?} -> {workers:?}"
    );
    // The replacements serve the clients that were there before them.
    let small = sample("chelsea_64x64.png");
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(run_job(c, i as u64 + 1, "invert", &small).is_ok());
    }

    let master = srv.pid();
    let sockets = socket_table();
    let master_fds = fds(master).unwrap();
    // The master's TCP sockets: the listener and every client connection. The check below
    // would find them in a worker; make sure there are some to find.
    let client_sockets: HashSet<u64> = master_fds
        .iter()
        .filter_map(|f| match f.target {
            FdTarget::Socket(i) if matches!(sockets.get(&i), Some(SocketKind::Tcp { .. })) => {
                Some(i)
            }
            _ => None,
        })
        .collect();
    assert!(
        client_sockets.len() >= 5,
        "master TCP sockets {client_sockets:?} in {master_fds:?}"
    );
    let master_stdio = |n: i32| {
        master_fds
            .iter()
            .find(|f| f.num == n)
            .map(|f| f.target.clone())
            .unwrap()
    };
    for w in workers {
        let wfds = fds(w).unwrap();
        for f in &wfds {
            if let FdTarget::Socket(inode) = f.target {
                assert!(
                    !client_sockets.contains(&inode),
                    "worker {w} fd {} is a socket of the master's clients or listener",
                    f.num
                );
                match sockets.get(&inode) {
                    Some(SocketKind::Unix {
                        sock_type: 5,
                        listening: false,
                    }) => {}
                    k => panic!("worker {w} fd {} is a {k:?} socket", f.num),
                }
            }
        }
        // Exactly: stdin from /dev/null, the master's stdout, a stderr pipe, the channel at fd 3,
        // the ring and the stats page; nothing else of any kind.
        let got: Vec<(i32, FdTarget)> = wfds.iter().map(|f| (f.num, f.target.clone())).collect();
        let mut memfds: Vec<&str> = got
            .iter()
            .filter_map(|(_, t)| match t {
                FdTarget::Memfd(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        memfds.sort();
        assert_eq!(
            memfds,
            ["imgserver-ring", "imgserver-stats"],
            "worker {w}: {got:?}"
        );
        assert_eq!(
            got[0],
            (0, FdTarget::Path("/dev/null".into())),
            "worker {w}"
        );
        assert_eq!(got[1], (1, master_stdio(1)), "worker {w}");
        // stderr is a pipe whose reading end only the master holds (it re-logs the lines).
        let (2, FdTarget::Pipe(pipe)) = got[2].clone() else {
            panic!("worker {w}: stderr is not a pipe: {got:?}");
        };
        assert!(
            master_fds.iter().any(|f| f.target == FdTarget::Pipe(pipe)),
            "worker {w}: its stderr pipe is not the master's"
        );
        assert!(
            matches!(got[3], (3, FdTarget::Socket(_))),
            "worker {w}: channel at fd 3: {got:?}"
        );
        // Nothing beyond those six: not even what the master inherited from its own parent.
        assert_eq!(got.len(), 6, "worker {w} holds unexpected fds: {got:?}");
    }
}

#[test]
fn workers_inherit_no_fd_and_no_variable_from_whoever_started_the_master() {
    // The master is started holding two files open without close-on-exec (as a careless
    // parent leaves them) and with secrets in its environment.
    let dir = TempDir::new("inherit");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "do not leak").unwrap();
    let srv = Server::builder("inherit")
        .args(&["--workers", "2"])
        .env("SECRET_TOKEN", "hunter2")
        .env("AWS_SECRET_ACCESS_KEY", "also-secret")
        .open_fd(7, &secret)
        .open_fd(9, std::path::Path::new("/dev/null"))
        .start();
    let master = srv.pid();
    // The set-up took: the master holds both files and sees the variables.
    let master_fds = fds(master).unwrap();
    for (n, want) in [(7, secret.clone()), (9, "/dev/null".into())] {
        assert!(
            master_fds
                .iter()
                .any(|f| f.num == n && f.target == FdTarget::Path(want.clone())),
            "master fd {n} -> {want:?}: {master_fds:?}"
        );
    }
    assert!(environ(master).contains(&"SECRET_TOKEN=hunter2".to_string()));

    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    for w in workers {
        let wfds = fds(w).unwrap();
        let nums: Vec<i32> = wfds.iter().map(|f| f.num).collect();
        assert_eq!(nums, [0, 1, 2, 3, 4, 5], "worker {w}: {wfds:?}");
        assert!(
            !wfds
                .iter()
                .any(|f| f.target == FdTarget::Path(secret.clone())),
            "worker {w} holds the secret file: {wfds:?}"
        );
        let env = environ(w);
        // Only the log filter the kit sets; no secret, no PATH or HOME, no marker.
        assert_eq!(env, ["RUST_LOG=info"], "worker {w} environment");
    }
    // And they work.
    let mut c = srv.connect();
    assert!(run_job(&mut c, 1, "invert", &sample("chelsea_64x64.png")).is_ok());
}
