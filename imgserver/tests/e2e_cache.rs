//! End-to-end: the result cache and collapsed duplicate requests, through the real binary,
//! real workers and the real client library: hits byte-identical to a fresh computation,
//! eviction in a small arena, results too large to cache, 150 identical requests at once
//! taking one worker run, a crashing input whose collapsed group all hear POISON_INPUT, and
//! the known-poison refusal after.
//!
//! Trust boundary: the client's side of the network and `imgserver stats`; nothing here
//! reaches into the server's code.

use std::time::Duration;

use netproto_sys::ErrorCode;
use testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn local(input: &[u8], spec: &str) -> Vec<u8> {
    imgfilters::run(
        input,
        &spec.parse().unwrap(),
        &imgfilters::Limits::default(),
    )
    .unwrap()
    .bytes
}

fn ok_bytes(o: Outcome, what: &str) -> Vec<u8> {
    match o {
        Outcome::Ok { bytes, info } => {
            assert_eq!(info.total_len, bytes.len() as u64, "{what}");
            bytes
        }
        o => panic!("{what}: {o:?}"),
    }
}

#[test]
fn a_hit_is_byte_identical_to_a_fresh_computation_and_takes_no_worker() {
    let srv = Server::start("cache-hit", &["--workers", "1", "--cache-size", "64MiB"]);
    let input = sample("cat.png");
    let want = local(&input, "blur:2");
    let mut a = srv.connect();
    let mut b = srv.connect();
    assert_eq!(ok_bytes(run_job(&mut a, 1, "blur:2", &input), "miss"), want);
    // Equivalent spec text, another connection: the same key.
    assert_eq!(
        ok_bytes(run_job(&mut b, 1, "blur:2.0", &input), "hit"),
        want
    );
    assert_eq!(
        ok_bytes(run_job(&mut a, 2, " blur:2 ", &input), "hit"),
        want
    );
    let s = srv.stats();
    assert_eq!(s.get("cache_hits"), 2);
    assert_eq!(s.get("cache_misses"), 1);
    assert_eq!(s.get("cache_inserts"), 1);
    assert_eq!(
        s.get("worker_jobs_total"),
        1,
        "only the miss ran on a worker"
    );
    assert_eq!(s.get("jobs_ok"), 3);
    assert_eq!(s.get("slots_in_use"), 0);
    assert!(s.get("cache_bytes") >= want.len() as u64);
    assert_eq!(s.get("cache_entries"), 1);
    assert_eq!(s.get("cache_size"), 64 << 20);
    srv.wait("the hit's log line", WAIT, || {
        srv.log_text().contains(", cache hit, ")
    });
    // A different spec is a different result.
    let other = ok_bytes(run_job(&mut a, 3, "blur:3", &input), "other spec");
    assert_eq!(other, local(&input, "blur:3"));
    assert_eq!(srv.stat("worker_jobs_total"), 2);
}

#[test]
fn a_small_arena_evicts_and_every_answer_stays_right() {
    // 256 KiB: entries up to 32 KiB; forty different results of a few KiB each do not fit.
    let srv = Server::start("cache-evict", &["--workers", "2", "--cache-size", "256KiB"]);
    let input = sample("chelsea_64x64.png");
    let mut c = srv.connect();
    let specs: Vec<String> = (1..=40).map(|i| format!("brightness:{i}")).collect();
    for round in 0..2 {
        for (i, spec) in specs.iter().enumerate() {
            let got = ok_bytes(
                run_job(&mut c, (round * 100 + i) as u64 + 1, spec, &input),
                spec,
            );
            assert_eq!(got, local(&input, spec), "{spec} round {round}");
        }
    }
    let s = srv.stats();
    assert!(s.get("cache_evictions") > 0, "{s:?}");
    assert!(s.get("cache_bytes") <= 256 << 10);
    assert_eq!(s.get("jobs_ok"), 80);
    assert_eq!(s.get("cache_hits") + s.get("cache_misses"), 80);
}

#[test]
fn results_larger_than_the_entry_cap_are_not_cached_and_never_fail() {
    // 128 KiB: entries up to 16 KiB; a 300x300 BMP is 270 KB.
    let srv = Server::start("cache-large", &["--workers", "1", "--cache-size", "128KiB"]);
    let input = sample("chelsea_64x64.png");
    let spec = "resize:300x300:exact,format:bmp";
    let want = local(&input, spec);
    let mut c = srv.connect();
    for id in 1..=4 {
        assert_eq!(ok_bytes(run_job(&mut c, id, spec, &input), spec), want);
    }
    let s = srv.stats();
    assert_eq!(s.get("cache_too_large"), 4);
    assert_eq!(s.get("cache_hits"), 0);
    assert_eq!(s.get("worker_jobs_total"), 4);
    assert_eq!(s.get("cache_entries"), 0);
}

#[test]
fn one_hundred_and_fifty_identical_requests_at_once_take_one_worker_run() {
    raise_fd_limit();
    let srv = Server::start(
        "cache-150",
        &[
            "--workers",
            "2",
            "--cache-size",
            "64MiB",
            "--max-conns",
            "400",
        ],
    );
    let input = sample("rocket.jpg");
    let spec = "resize:200x,grayscale";
    let want = local(&input, spec);
    let mut conns: Vec<_> = (0..150).map(|_| srv.connect()).collect();
    for c in conns.iter_mut() {
        send_job(c, 7, spec, &input);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let got = ok_bytes(wait_job(c, 7, WAIT), &format!("conn {i}"));
        assert_eq!(got, want, "conn {i}");
    }
    let s = srv.stats();
    assert_eq!(s.get("worker_jobs_total"), 1, "{s:?}");
    assert_eq!(s.get("jobs_ok"), 150);
    assert_eq!(s.get("cache_collapsed") + s.get("cache_hits"), 149);
    assert_eq!(s.get("slots_in_use"), 0);
    if s.get("cache_collapsed") > 0 {
        srv.wait("a collapsed log line", WAIT, || {
            srv.log_text().contains(", collapsed onto job ")
        });
    }
}

#[test]
fn a_collapsed_group_on_a_crashing_input_all_hear_poison_and_it_is_refused_after() {
    let srv = Server::builder("cache-poison")
        .args(&["--workers", "2", "--cache-size", "64MiB"])
        .fault_injection()
        .start();
    let input = b"IMGSERVER-FAULT-CRASH and some bytes".to_vec();
    let mut conns: Vec<_> = (0..8).map(|_| srv.connect()).collect();
    for c in conns.iter_mut() {
        send_job(c, 1, "noop", &input);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        match wait_job(c, 1, WAIT) {
            Outcome::Error { code, .. } => {
                assert_eq!(code, ErrorCode::PoisonInput as u16, "conn {i}")
            }
            o => panic!("conn {i}: {o:?}"),
        }
    }
    let s = srv.stats();
    assert_eq!(
        s.get("jobs_poison"),
        1,
        "one leader was declared poison: {s:?}"
    );
    assert_eq!(s.get("jobs_retried"), 1);
    assert_eq!(s.get("cache_collapsed") + s.get("cache_poison_refused"), 7);
    // Known now: refused at once, no worker risked.
    let deaths = srv.stat("worker_deaths");
    let mut c = srv.connect();
    match run_job(&mut c, 2, "blur:1", &input) {
        Outcome::Error { code, message } => {
            assert_eq!(code, ErrorCode::PoisonInput as u16);
            assert!(message.contains("known poison input"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("worker_deaths"), deaths);
    assert_eq!(
        srv.stat("cache_poison_refused"),
        s.get("cache_poison_refused") + 1
    );
}
