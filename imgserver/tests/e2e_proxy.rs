//! The server behind a load balancer: with --proxy-protocol, connections from the
//! --proxy-from sources (here the default, 127.0.0.1) begin with a PROXY protocol v2 header,
//! and the address it carries is the client's for logs and admission; a header from any
//! other source, a missing or malformed one, is refused with a log line. The tests play the
//! proxy from 127.0.0.1 and direct clients from 127.0.0.2; the server is the real binary.
//!
//! Trust boundary: this file plays the proxy and the peers.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use netproto_sys::{ClientConfig, ErrorCode};
use testkit::*;

const T: Duration = Duration::from_secs(10);

fn server(tag: &str, args: &[&str]) -> Server {
    let mut all = vec!["--workers", "1", "--proxy-protocol"];
    all.extend_from_slice(args);
    Server::start(tag, &all)
}

fn cfg() -> ClientConfig {
    ClientConfig::new(USER, PASSWORD.as_bytes()).unwrap()
}

/// A connection from the proxy's address (127.0.0.1) that has sent `header`.
fn via_proxy(srv: &Server, header: &[u8]) -> TcpStream {
    let mut s = connect_from(loopback(0), &srv.addr).unwrap();
    s.write_all(header).unwrap();
    s
}

/// Logs in over a connection from the proxy that sent `header` first.
fn login_via(srv: &Server, header: &[u8]) -> Login {
    login_over(via_proxy(srv, header), &cfg(), T)
}

fn refused_code(l: &Login) -> Option<u16> {
    match l {
        Login::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

/// Waits for a log line containing every one of `parts`.
fn wait_log(srv: &Server, what: &str, parts: &[&str]) {
    srv.wait(what, T, || {
        srv.log_text()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    });
}

#[test]
fn a_proxied_client_logs_in_and_runs_a_job_as_the_address_its_header_carries() {
    let srv = server("proxy-job", &[]);
    let header = proxy_v2_for("203.0.113.9:40000", &srv.addr);
    let Login::Ready(mut r) = login_via(&srv, &header) else {
        panic!("no login through the proxy; log:\n{}", srv.log_text());
    };
    // A whole job, small enough for one chunk.
    let input = sample("chelsea_64x64.png");
    assert!(input.len() <= netproto_sys::limits::MAX_CHUNK_DATA);
    r.conn
        .send_job(1, "grayscale", input.len() as u64, &input, true)
        .unwrap();
    r.flush();
    let ev = r.next_event();
    assert_eq!(ev, "result 1 true", "log:\n{}", srv.log_text());
    // The carried address is the peer; the proxy's shows as "via".
    wait_log(
        &srv,
        "the login line with the carried address",
        &[" 203.0.113.9:40000 ", "logged in via 127.0.0.1:"],
    );
    assert_eq!(srv.stat("jobs_ok"), 1);
}

#[test]
fn per_address_caps_apply_to_the_carried_addresses_not_to_the_proxy() {
    // One connection not logged in per address; long pre-login timers so the held one stays.
    let srv = server(
        "proxy-caps",
        &[
            "--max-unauth-per-addr",
            "1",
            "--hello-timeout",
            "60s",
            "--handshake-timeout",
            "60s",
        ],
    );
    // 198.51.100.1 holds its one connection: header sent, no HELLO.
    let _held = via_proxy(&srv, &proxy_v2_for("198.51.100.1:1000", &srv.addr));
    srv.wait_stat("connections_unauth", 1, T);
    // A second from the same carried address is over its cap...
    let second = login_via(&srv, &proxy_v2_for("198.51.100.1:1001", &srv.addr));
    assert_eq!(
        refused_code(&second),
        Some(ErrorCode::TooManyConnections as u16),
        "{second:?}"
    );
    wait_log(
        &srv,
        "the cap's refusal, for the carried address",
        &["198.51.100.1:1001", "refused TOO_MANY_CONNECTIONS"],
    );
    // ...while another carried address, through the same proxy, has a cap of its own (were
    // the proxy's address charged, this would be refused too).
    let other = login_via(&srv, &proxy_v2_for("198.51.100.2:1000", &srv.addr));
    assert!(matches!(other, Login::Ready(_)), "{other:?}");
}

#[test]
fn headers_are_believed_only_from_listed_sources_and_only_when_well_formed() {
    let srv = server("proxy-refusals", &[]);
    let protocol = ErrorCode::Protocol as u16;

    // A malformed header from the proxy (version 1 in the binary form).
    let mut bad = proxy_v2_for("203.0.113.1:1", &srv.addr);
    bad[12] = 0x11;
    let l = login_via(&srv, &bad);
    assert!(
        matches!(refused_code(&l), Some(c) if c == protocol) || matches!(l, Login::Closed(_)),
        "{l:?}"
    );
    wait_log(
        &srv,
        "the malformed header's line",
        &["malformed PROXY v2 header", "refused PROTOCOL"],
    );

    // The proxy's address without a header: its HELLO is not a header.
    let l = login_from(loopback(0), &srv.addr, &cfg(), T);
    assert_eq!(refused_code(&l), Some(protocol), "{l:?}");
    wait_log(
        &srv,
        "the missing header's line",
        &["no PROXY protocol v2 header", "refused PROTOCOL"],
    );

    // A header from an address not in --proxy-from.
    let mut s = connect_from(loopback(1), &srv.addr).unwrap();
    s.write_all(&proxy_v2_for("203.0.113.2:2", &srv.addr))
        .unwrap();
    let l = login_over(s, &cfg(), T);
    assert_eq!(refused_code(&l), Some(protocol), "{l:?}");
    wait_log(
        &srv,
        "the unlisted source's line",
        &[" 127.0.0.2:", "not in --proxy-from", "refused PROTOCOL"],
    );

    // That address without a header is a direct client, as without --proxy-protocol.
    let l = login_from(loopback(1), &srv.addr, &cfg(), T);
    assert!(matches!(l, Login::Ready(_)), "{l:?}");

    // LOCAL (a health check) keeps the proxy's own address and works.
    let l = login_via(&srv, &proxy_v2_local());
    assert!(matches!(l, Login::Ready(_)), "{l:?}");
    srv.wait("two logins", T, || srv.stat("logins_ok") == 2);
    let log = srv.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(" 127.0.0.1:") && l.ends_with("logged in")),
        "{log}"
    );
}

#[test]
fn a_header_not_complete_within_the_hello_timeout_is_refused() {
    let srv = server("proxy-slow", &["--hello-timeout", "300ms"]);
    let header = proxy_v2_for("203.0.113.3:3", &srv.addr);
    let mut s = via_proxy(&srv, &header[..10]);
    let start = Instant::now();
    let (_, closed) = read_until_close(&mut s, T);
    assert!(closed, "still open after {:?}", start.elapsed());
    wait_log(
        &srv,
        "the timeout's line",
        &["PROXY header timeout", "--hello-timeout"],
    );
}

#[test]
fn a_bad_proxy_from_is_a_usage_error_naming_the_item() {
    let dir = TempDir::new("proxy-usage");
    let out = std::process::Command::new(imgserver_bin())
        .args([
            "serve",
            "--proxy-protocol",
            "--proxy-from",
            "10.0.0.1,10.0.0/8",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--proxy-from") && err.contains("`10.0.0/8`"),
        "{err}"
    );
}
