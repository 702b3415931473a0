//! End-to-end: real imgserver binary, real workers, real client library.

mod common;

use std::time::Duration;

use common::*;
use netproto_sys::ErrorCode;

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
            png_bomb(100_000, 100_000),
            ErrorCode::TooManyPixels,
        ),
    ];
    let decode_before = srv.stat("decode_us_total");
    for (i, (spec, input, want)) in cases.iter().enumerate() {
        match run_job(&mut c, i as u64 + 1, spec, input) {
            Outcome::Error { code, message } => assert_eq!(code, *want as u16, "{spec}: {message}"),
            o => panic!("{spec}: expected {want:?}, got {o:?}"),
        }
    }
    // None of these completed a decode, and the connection still works.
    assert_eq!(srv.stat("decode_us_total"), decode_before);
    assert!(matches!(
        run_job(&mut c, 100, "grayscale", &small),
        Outcome::Ok { .. }
    ));
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
    let srv = Server::start_env(
        "busy",
        &["--workers", "1", "--slots", "1", "--job-timeout", "5"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    send_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG");
    std::thread::sleep(Duration::from_millis(200));
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
    let srv = Server::start_env(
        "largebudget",
        &[
            "--workers",
            "2",
            "--slot-size",
            "65536",
            "--large-job-budget",
            "131072",
            "--job-timeout",
            "5",
        ],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    let mut hang = b"IMGSERVER-FAULT-HANG".to_vec();
    hang.resize(100_000, b'.');
    send_job(&mut c, 1, "noop", &hang);
    std::thread::sleep(Duration::from_millis(200));
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
fn workers_hold_no_tcp_socket() {
    let srv = Server::start("nosock", &["--workers", "2"]);
    let _c = srv.connect();
    let tcp_inodes: std::collections::HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let workers = worker_pids(srv.pid());
    assert_eq!(workers.len(), 2);
    for w in workers {
        for fd in std::fs::read_dir(format!("/proc/{w}/fd")).unwrap() {
            let target = std::fs::read_link(fd.unwrap().path())
                .unwrap()
                .display()
                .to_string();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                assert!(
                    !tcp_inodes.contains(inode),
                    "worker {w} holds TCP socket {target}"
                );
            }
        }
    }
}

/// A PNG whose header declares `w` x `h` pixels, followed by a token IDAT: what a
/// decompression-bomb upload looks like to the server.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}
