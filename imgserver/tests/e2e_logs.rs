//! End-to-end: the log an operator reads. A client causing thousands of refusals writes a
//! bounded number of lines in one shape plus a summary of the rest; `--log-format json`
//! writes one JSON object a line with the connection's fields; a worker's panic reaches the
//! log as one timestamped line naming the worker, never raw.
//!
//! Trust boundary: the log file, seen from outside (the server's stderr, as testkit keeps
//! it); the clients are hostile only in how often they make the server refuse them.

use std::time::Duration;

use netproto_sys::ErrorCode;
use testkit::*;

/// The number in `... suppressed K similar lines ...`, if `line` is such a summary.
fn suppressed(line: &str) -> Option<u64> {
    let rest = line.split_once("suppressed ")?.1;
    let (k, rest) = rest.split_once(' ')?;
    rest.starts_with("similar lines from 127.0.0.1 in the last ")
        .then(|| k.parse().ok())
        .flatten()
}

#[test]
fn thousands_of_refused_jobs_write_a_few_lines_and_a_summary() {
    const N: u64 = 2000;
    let srv = Server::start("logs-flood", &["--workers", "1"]);
    let mut c = srv.connect();
    for i in 0..N {
        match run_job(&mut c, i + 1, "no-such-filter:3", b"not even an image") {
            Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::BadSpec as u16),
            o => panic!("job {i}: {o:?}"),
        }
    }
    srv.wait_stat("error_bad_spec", N, Duration::from_secs(10));
    // Every refusal is either a line or counted in a summary; the summary comes within a
    // few seconds of the flood.
    let tally = |log: &str| {
        let lines = log.matches("rejected BAD_SPEC").count() as u64;
        let held: u64 = log.lines().filter_map(suppressed).sum();
        (lines, held)
    };
    srv.wait(
        "every refusal logged or summarized",
        Duration::from_secs(20),
        || {
            let (lines, held) = tally(&srv.log_text());
            lines + held == N
        },
    );
    let log = srv.log_text();
    let (lines, held) = tally(&log);
    assert!(lines <= 60, "{lines} lines for {N} refusals:\n{log}");
    assert!(held >= N - 60, "{held}");
    // One shape: the connection, its peer and user, the request and the code.
    let line = log
        .lines()
        .find(|l| l.contains("rejected BAD_SPEC"))
        .unwrap();
    let (_, rest) = line.split_once(" INFO  master[").unwrap();
    let (_, rest) = rest.split_once("] conn ").unwrap();
    let (_, rest) = rest.split_once(" 127.0.0.1:").unwrap();
    let (_, rest) = rest.split_once(' ').unwrap();
    assert!(
        rest.starts_with(&format!("user {USER}: request 1 rejected BAD_SPEC: ")),
        "{line}"
    );
}

#[test]
fn json_lines_parse_and_carry_the_connection_and_the_worker() {
    let srv = Server::builder("logs-json")
        .args(&["--workers", "1"])
        .env("IMGSERVER_LOG_FORMAT", "json")
        .fault_injection()
        .start();
    let mut c = srv.connect();
    match run_job(&mut c, 7, "blur:\u{202e}2", b"x") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::BadSpec as u16),
        o => panic!("{o:?}"),
    }
    match run_job(&mut c, 8, "noop", b"IMGSERVER-FAULT-PANIC") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::PoisonInput as u16),
        o => panic!("{o:?}"),
    }
    srv.wait(
        "the panics and the poison line",
        Duration::from_secs(20),
        || {
            let log = srv.log_text();
            log.matches("the failpoint panics").count() >= 2 && log.contains("POISON_INPUT")
        },
    );
    let log = srv.log_text();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for r in &records {
        for field in ["ts", "level", "target", "msg"] {
            assert!(r[field].is_string(), "no {field}: {r}");
        }
        let ts = r["ts"].as_str().unwrap();
        assert!(
            ts.starts_with("20") && ts.ends_with('Z') && ts.len() == 24,
            "{ts}"
        );
    }
    let find = |what: &str| {
        records
            .iter()
            .find(|r| r["msg"].as_str().unwrap().contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in\n{log}"))
    };
    let refused = find("request 7 rejected BAD_SPEC");
    assert!(refused["conn"].is_u64(), "{refused}");
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(refused["user"], USER);
    assert_eq!(refused["level"], "INFO");
    // The peer's text is escaped as in a text line: no raw override reaches the log.
    assert!(!log.contains('\u{202e}'));
    let poison = find("request 8 failed POISON_INPUT");
    assert_eq!(poison["level"], "WARN");
    assert_eq!(poison["user"], USER);
    // The worker's lines are the master's records: its fields, its timestamp.
    let panic = find("the failpoint panics");
    assert_eq!(panic["worker"], 0);
    assert!(panic["pid"].is_u64());
    assert_eq!(
        panic["tag"].as_str().unwrap(),
        format!("master[{}]", srv.pid())
    );
}

#[test]
fn a_panicking_worker_is_one_timestamped_line_per_crash() {
    let srv = Server::builder("logs-panic")
        .args(&["--workers", "1"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    // It panics on two workers in turn: POISON_INPUT.
    match run_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-PANIC") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::PoisonInput as u16),
        o => panic!("{o:?}"),
    }
    srv.wait("both panics in the log", Duration::from_secs(20), || {
        srv.log_text().matches("the failpoint panics").count() >= 2
    });
    let log = srv.log_text();
    let master = format!("master[{}] worker 0 (pid ", srv.pid());
    let panics: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the failpoint panics"))
        .collect();
    assert_eq!(panics.len(), 2, "{log}");
    for line in &panics {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(ts.starts_with("20") && ts.ends_with('Z'), "{line}");
        assert!(rest.starts_with(&format!("ERROR {master}")), "{line}");
        assert!(line.contains("panicked at"), "{line}");
    }
    // Each crash from its own process.
    let pid = |l: &str| {
        l.split_once("(pid ")
            .unwrap()
            .1
            .split_once(')')
            .unwrap()
            .0
            .to_string()
    };
    assert_ne!(pid(panics[0]), pid(panics[1]));
    // What the worker printed raw before panicking is a warning of the master's.
    let raw = log
        .lines()
        .find(|l| l.contains("a line on stderr before the panic"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(raw.contains(&format!("WARN  {master}")), "{raw}");
    // Nothing reaches the log without the master's timestamp.
    for line in log.lines() {
        assert!(
            line.starts_with("20"),
            "a line without its timestamp: {line:?}"
        );
    }
    // The poison answer has its own line, with the connection.
    assert!(
        log.lines().any(|l| l.contains(" WARN  master[")
            && l.contains(&format!("user {USER}: request 1 failed POISON_INPUT"))),
        "{log}"
    );
}

#[test]
fn junk_silence_and_refusals_at_accept_each_have_their_line() {
    use std::io::Write;
    use std::net::TcpStream;
    let srv = Server::start(
        "logs-junk",
        &[
            "--workers",
            "1",
            "--hello-timeout",
            "0.5",
            "--handshake-timeout",
            "20",
            "--max-unauth-per-addr",
            "1",
        ],
    );
    let line_with = |what: &str| {
        srv.wait(what, Duration::from_secs(10), || {
            srv.log_text().contains(what)
        });
        let log = srv.log_text();
        log.lines().find(|l| l.contains(what)).unwrap().to_string()
    };
    // A silent connection holds the address's one place before login; a second is refused.
    let _silent = TcpStream::connect(&srv.addr).unwrap();
    let mut refused = TcpStream::connect(&srv.addr).unwrap();
    let (_, closed) = read_until_close(&mut refused, Duration::from_secs(10));
    assert!(closed);
    let line = line_with("refused TOO_MANY_CONNECTIONS");
    assert!(
        line.contains("] 127.0.0.1:")
            && line.contains(": too many connections not logged in from one address ("),
        "{line}"
    );
    // The silent one is cut by the HELLO's timer, and says so.
    let line = line_with("HELLO timeout after 0.5 s (--hello-timeout); closing");
    assert!(line.contains("] conn 1 127.0.0.1:"), "{line}");
    // Not our protocol at all.
    let mut junk = TcpStream::connect(&srv.addr).unwrap();
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _ = read_until_close(&mut junk, Duration::from_secs(10));
    let line = line_with("protocol error before login: bad magic");
    assert!(
        line.contains(" INFO  master[") && line.contains(" 127.0.0.1:"),
        "{line}"
    );
}

#[test]
fn every_workers_last_line_is_logged_before_the_master_stops() {
    let mut srv = Server::builder("logs-last")
        .args(&["--workers", "2"])
        .env("RUST_LOG", "debug")
        .start();
    srv.wait_workers_ready(Duration::from_secs(20));
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    srv.signal(Signal::SIGTERM);
    srv.wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| srv.fail(e));
    let log = srv.log_text();
    let stopped = log
        .lines()
        .position(|l| l.contains("] stopped: "))
        .unwrap_or_else(|| panic!("no final line: {log}"));
    // Each worker's stderr is re-logged by a thread of the master's: the master waits for
    // them, so the line a worker writes as it exits is never lost with the master's exit.
    for pid in workers {
        let last = log
            .lines()
            .position(|l| {
                l.contains(&format!("(pid {pid}): "))
                    && l.contains("the master closed the channel; exiting")
            })
            .unwrap_or_else(|| panic!("worker {pid}'s exit line is missing: {log}"));
        assert!(last < stopped, "{log}");
    }
}
