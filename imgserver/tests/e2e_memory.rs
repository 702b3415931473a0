//! End-to-end: what connections and a large image cost the master's memory, read from
//! /proc/PID/status (bench/memory.py measures the same at 10,000 connections and 50 MP).
//!
//! Trust boundary: the client's side of the network and the administrator's view from
//! /proc; nothing here reaches into the server's code. Figures are memory, not time: every
//! wait is on a condition (a counter, the RSS reading), bounded by a generous deadline.

use std::net::TcpStream;
use std::time::Duration;

use testkit::*;

/// Connections each phase opens: enough that a few KiB each stands far above the noise.
const CONNS: usize = 2000;
/// Issue #15's target for an idle connection, before and after login.
const PER_CONN_BYTES: u64 = 3 * 1024;
/// How far above its resting RSS the master may stay once the connections are gone.
const BACK_WITHIN_KIB: u64 = 1536;

fn status_kib(pid: u32, field: &str) -> u64 {
    status_field(pid, field)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {pid}"))
}

/// Waits until the master's RSS is within `BACK_WITHIN_KIB` of `rest` (the heap trim runs
/// in its once-a-second sweep after many closes); fails with the last reading.
fn wait_rss_back(srv: &Server, rest: u64, what: &str) {
    let mut last = 0;
    let r = wait_until(what, Duration::from_secs(20), || {
        last = srv.rss_kb();
        last <= rest + BACK_WITHIN_KIB
    });
    assert!(
        r.is_ok(),
        "{what}: master RSS {last} KiB, {} KiB over its {rest} KiB at rest",
        last.saturating_sub(rest)
    );
}

#[test]
fn idle_connections_cost_at_most_3_kib_each_and_the_memory_comes_back() {
    raise_fd_limit();
    let srv = Server::start(
        "memory-idle",
        &[
            "--workers",
            "1",
            "--conn-rate-per-addr",
            "0",
            "--max-unauth-per-addr",
            "0",
            "--max-unauth-conns",
            "0",
            "--hello-timeout",
            "0",
            "--handshake-timeout",
            "10m",
            "--idle-timeout",
            "10m",
        ],
    );
    let rest = srv.rss_kb();
    let per_conn = |open_kib: u64| (open_kib.saturating_sub(rest)) * 1024 / CONNS as u64;

    // Connected, nothing sent: the server holds a connection awaiting HELLO.
    let socks: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(&srv.addr).expect("connect"))
        .collect();
    srv.wait_stat("connections_open", CONNS as u64, Duration::from_secs(30));
    let pre = per_conn(srv.rss_kb());
    drop(socks);
    srv.wait_stat("connections_open", 0, Duration::from_secs(30));
    wait_rss_back(&srv, rest, "after the unauthenticated connections closed");

    // Logged in and idle.
    let clients: Vec<_> = (0..CONNS).map(|_| srv.connect()).collect();
    srv.wait_stat("connections_open", CONNS as u64, Duration::from_secs(30));
    srv.wait_stat("logins_ok", CONNS as u64, Duration::from_secs(30));
    let open_kib = srv.rss_kb();
    let logged_in = per_conn(open_kib);
    drop(clients);
    srv.wait_stat("connections_open", 0, Duration::from_secs(30));
    wait_rss_back(&srv, rest, "after the logged-in connections closed");

    assert!(
        pre <= PER_CONN_BYTES,
        "{pre} B per connection before login (at rest {rest} KiB)"
    );
    assert!(
        logged_in <= PER_CONN_BYTES,
        "{logged_in} B per idle logged-in connection (at rest {rest} KiB, open {open_kib} KiB)"
    );
}

#[test]
fn a_large_image_passes_through_without_the_master_holding_it() {
    // 1 MiB slots: the upload and its result each travel in a per-job memfd, as a 50 MP
    // photo does with the default 4 MiB slots.
    let srv = Server::start("memory-image", &["--workers", "1", "--slot-size", "1MiB"]);
    let cat = sample("cat.png");
    let spec: imgfilters::Pipeline = "resize:3000x2000:exact,format:png".parse().unwrap();
    let input = imgfilters::run(&cat, &spec, &imgfilters::Limits::default())
        .unwrap()
        .bytes;
    assert!(input.len() > 3 << 20, "a {}-byte image", input.len());
    let mut c = srv.connect();
    let before = status_kib(srv.pid(), "VmHWM");
    let out = match run_job(&mut c, 1, "noop", &input) {
        Outcome::Ok { bytes, .. } => bytes,
        o => panic!("{o:?}"),
    };
    assert!(out.len() > 3 << 20, "a {}-byte result", out.len());
    assert_eq!(srv.stat("large_jobs"), 1, "the upload went into a memfd");
    let growth = status_kib(srv.pid(), "VmHWM").saturating_sub(before) * 1024;
    // Issue #15's target is at most 1.2 times the image's size. Asserted tighter: half its
    // size plus a fixed 1 MiB for the connection's buffers at full size (two frames in, a few
    // hundred KiB of result queued out), so holding the upload or the result whole in the
    // master (at least one times the size, 3 MiB or more here) fails it.
    let allowed = input.len() as u64 / 2 + (1 << 20);
    assert!(
        growth <= allowed,
        "master VmHWM grew {growth} B for a {}-byte image and a {}-byte result (allowed {allowed})",
        input.len(),
        out.len()
    );
    // The figure behind the assertion, for the log of a run that passes.
    eprintln!(
        "VmHWM growth {growth} B = {:.2}x the {}-byte image",
        growth as f64 / input.len() as f64,
        input.len()
    );
}
