//! End-to-end: `imgserver health` (local, from the stats page) and the network PROBE
//! (`imgclient health`, and a raw socket sending the bytes PROTOCOL.md gives HAProxy), on a
//! healthy server, one whose workers cannot start, and none at all; the probe under the
//! pre-login admission limits.
//!
//! Trust boundary: the operator's side (the local command, a load balancer's socket, the
//! client binary without a password); nothing here reaches into the server's code.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn health(dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(imgserver_bin())
        .arg("health")
        .arg("--state-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run imgserver health")
}

fn line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `imgclient health` against `addr`, with no password, user or known-servers file.
fn client_health(addr: &str) -> Output {
    Command::new(imgclient_bin())
        .env_clear()
        .args(["--server", addr, "health"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run imgclient health")
}

/// The hex after `prefix` on the first line of PROTOCOL.md that has it, as bytes.
fn doc_hex(prefix: &str) -> Vec<u8> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md"),
    )
    .unwrap();
    let hex = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("PROTOCOL.md has no line starting {prefix:?}"))
        .trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends `bytes` on a new connection and returns everything the server sent until it
/// closed (and whether it did).
fn raw_probe(addr: &str, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    read_until_close(&mut s, WAIT)
}

#[test]
fn a_ready_server_is_ok_locally_and_over_the_probe() {
    let srv = Server::start("health-ok", &["--workers", "2"]);
    // The heartbeat starts with the loop's first sweep.
    srv.wait("health ok", WAIT, || {
        health(srv.dir(), &[]).status.success()
    });
    let o = health(srv.dir(), &[]);
    let text = line(&o);
    assert!(
        text.starts_with("ok: 2 of 2 workers ready, heartbeat ") && text.ends_with(" s ago\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);

    // A load balancer's check: the fixed bytes of PROTOCOL.md 4.15, answered by the fixed
    // ready reply, then the connection closes.
    let send = doc_hex("tcp-check send-binary ");
    let expect = doc_hex("tcp-check expect binary ");
    assert_eq!(send, netproto_sys::probe_request());
    let (got, closed) = raw_probe(&srv.addr, &send);
    assert_eq!(got, expect);
    assert!(closed, "the server keeps a probed connection open");

    // imgclient: no password, one line, exit 0.
    let o = client_health(&srv.addr);
    assert_eq!(
        line(&o),
        "ready\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0));
    srv.wait("probes counted", WAIT, || {
        srv.stat("probes") == 2 && srv.stat("probes_ready") == 2
    });
    // A probe is no login.
    assert_eq!(srv.stat("logins_ok") + srv.stat("logins_failed"), 0);
}

#[test]
fn workers_that_cannot_start_make_it_not_ready() {
    let srv = Server::builder("health-crash")
        .args(&["--workers", "2"])
        .fault_injection()
        .env("IMGSERVER_FAULT_WORKER_START", "crash")
        .unready()
        .start();
    srv.wait("health says not ready", WAIT, || {
        line(&health(srv.dir(), &[])) == "not ready: 0 of 2 workers ready\n"
    });
    assert_eq!(health(srv.dir(), &[]).status.code(), Some(1));
    // Over the network: up, but not ready.
    let (got, closed) = raw_probe(&srv.addr, &netproto_sys::probe_request());
    assert_eq!(
        netproto_sys::probe_parse(&got),
        Ok(Some(netproto_sys::Probe::NotReady))
    );
    assert!(closed);
    let o = client_health(&srv.addr);
    assert_eq!(line(&o), "up, not ready\n");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn no_server_is_down() {
    let dir = TempDir::new("health-down");
    let o = health(dir.path(), &[]);
    assert_eq!(
        line(&o),
        format!("down: no server for state dir {}\n", dir.path().display())
    );
    assert_eq!(o.status.code(), Some(1));

    // A server killed without cleaning up leaves its pid file: still down, not stuck.
    let mut srv = Server::start("health-killed", &["--workers", "1"]);
    srv.wait("health ok", WAIT, || {
        health(srv.dir(), &[]).status.success()
    });
    let addr = srv.addr.clone();
    srv.kill_now();
    let o = health(srv.dir(), &["--max-age", "2s"]);
    assert!(line(&o).starts_with("down: "), "{}", line(&o));
    assert_eq!(o.status.code(), Some(1));
    let o = client_health(&addr);
    assert_eq!(o.status.code(), Some(1));
    assert!(line(&o).starts_with("cannot connect to "), "{}", line(&o));

    // A bad --max-age is a usage error (exit 1, as for every command), not a verdict.
    let o = health(dir.path(), &["--max-age", "soon"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

#[test]
fn probes_count_against_the_pre_login_limits() {
    // Two connections at once from an address, then one a second: a burst of probes is
    // refused like any other connection, before its PROBE is read.
    let srv = Server::start(
        "health-limits",
        &[
            "--workers",
            "1",
            "--conn-burst-per-addr",
            "2",
            "--conn-rate-per-addr",
            "1",
        ],
    );
    // Started, and the heartbeat published: what a monitor would wait for.
    srv.wait("health ok", WAIT, || {
        health(srv.dir(), &[]).status.success()
    });
    let is_limited = |a: &netproto_sys::Result<Option<netproto_sys::Probe>>| {
        matches!(a, Err(e) if e.status == netproto_sys::ffi::NP_REMOTE_ERROR
            && e.remote.map(|r| r.code) == Some(netproto_sys::ErrorCode::RateLimited as u16))
    };
    // Probes back to back until one is refused (bounded: the bucket refills one a second).
    let mut answers = Vec::new();
    for _ in 0..50 {
        let (got, _) = raw_probe(&srv.addr, &netproto_sys::probe_request());
        answers.push(netproto_sys::probe_parse(&got));
        if answers.last().is_some_and(is_limited) {
            break;
        }
    }
    let ready = answers
        .iter()
        .filter(|a| **a == Ok(Some(netproto_sys::Probe::Ready)))
        .count();
    // The burst of two is answered; the refusal is the last answer, and the only other kind.
    assert!(ready >= 2, "{answers:?}");
    assert!(answers.last().is_some_and(is_limited), "{answers:?}");
    assert_eq!(ready + 1, answers.len(), "{answers:?}");
    let o = client_health(&srv.addr);
    let text = line(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("refused: server error RATE_LIMITED (407): retry-after-ms="),
        "{text}"
    );
    assert!(srv.stat("refused_conn_rate") >= 2);
    assert_eq!(srv.stat("probes"), ready as u64);
}

#[test]
fn a_draining_server_says_so_locally_and_to_a_probe() {
    let srv = Server::builder("health-drain")
        .args(&["--workers", "1", "--grace", "60", "--hello-timeout", "60"])
        .fault_injection()
        .start();
    srv.wait("health ok", WAIT, || {
        health(srv.dir(), &[]).status.success()
    });
    // A job that holds the drain open, and a connection accepted before the stop signal
    // (the listener closes with it) that has not sent its first frame yet.
    let mut c = srv.connect();
    send_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG");
    srv.wait_stat("slots_in_use", 1, WAIT);
    let mut early = TcpStream::connect(&srv.addr).unwrap();
    srv.wait_stat("connections_accepted", 2, WAIT);
    srv.signal(Signal::SIGTERM);
    srv.wait("health says draining", WAIT, || {
        line(&health(srv.dir(), &[]))
            == "not ready: 1 of 1 workers ready, draining (shutting down)\n"
    });
    assert_eq!(health(srv.dir(), &[]).status.code(), Some(1));
    early.write_all(&netproto_sys::probe_request()).unwrap();
    let (got, closed) = read_until_close(&mut early, WAIT);
    assert_eq!(
        netproto_sys::probe_parse(&got),
        Ok(Some(netproto_sys::Probe::Draining))
    );
    assert!(closed);
}
