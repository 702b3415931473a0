//! End-to-end: running as a systemd service. A stop signal sent to the whole process group
//! (systemd's control-group SIGTERM, a terminal's Ctrl-C) finishes the jobs in flight exactly
//! like one sent to the master; the sd_notify protocol (READY=1, WATCHDOG=1, STOPPING=1) on
//! a fake NOTIFY_SOCKET; and `dist/imgserver.service` checked by `systemd-analyze`.
//!
//! Trust boundary: the service manager's side (signals to the group, the notification socket,
//! the unit file) and the client's; the server is the real binary, driven through the kit.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::*;

/// A job that is certainly still running when the signal lands: the slow failpoint sleeps
/// 1.5 s, then processes the image after its marker line.
fn slow_input() -> Vec<u8> {
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(sample("chelsea_64x64.png"));
    input
}

/// How many log lines contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Two workers, four slow jobs (two running, two queued), then `sig` to the whole process
/// group: every job gets its result, no worker dies or is replaced, the server exits 0.
fn group_signal_finishes_in_flight_jobs(tag: &str, sig: Signal) {
    let mut srv = Server::builder(tag)
        .args(&["--workers", "2", "--grace", "30"])
        .fault_injection()
        .start();
    let workers = srv.workers();
    assert_eq!(workers.len(), 2, "{workers:?}");
    // The workers are deaf to the group's stop signals from their start (SigIgn in /proc).
    for w in &workers {
        let mask = status_field(*w, "SigIgn").expect("worker status");
        let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            assert_ne!(mask & (1 << (s as u32 - 1)), 0, "worker {w} catches {s}");
        }
    }
    let input = slow_input();
    let mut clients: Vec<_> = (0..4).map(|_| srv.connect()).collect();
    for c in clients.iter_mut() {
        send_job(c, 1, "invert", &input);
    }
    srv.wait(
        "two jobs running, two queued",
        Duration::from_secs(10),
        || {
            srv.try_stats().is_ok_and(|s| {
                s.get("jobs_submitted") == 4
                    && s.get("slots_in_use") == 4
                    && s.get("queue_depth") == 2
                    && s.get("jobs_ok") == 0
            })
        },
    );
    let group = srv.processes();
    assert_eq!(
        group.len(),
        3,
        "master and two workers in the group: {group:?}"
    );
    srv.signal_group(sig);
    for (i, c) in clients.iter_mut().enumerate() {
        // The SHUTDOWN notice first (the server tells every client), then the result.
        let mut outcome = wait_job(c, 1, Duration::from_secs(20));
        if matches!(outcome, Outcome::Shutdown) {
            outcome = wait_job(c, 1, Duration::from_secs(20));
        }
        assert!(
            outcome.is_ok(),
            "job of client {i} after {sig} to the group: {outcome:?}\n{}",
            srv.log_text()
        );
    }
    let st = srv
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|e| srv.fail(e));
    let log = srv.log_text();
    assert_eq!(st.code(), Some(0), "exit status {st}; log:\n{log}");
    // Each worker was started once, none replaced, and each stopped when told.
    assert_eq!(lines_with(&log, " started, pid "), 2, "log:\n{log}");
    assert_eq!(lines_with(&log, ") stopped"), 2, "log:\n{log}");
    for bad in [
        " died: ",
        "crash loop",
        "broke its sandbox",
        "did not exit",
        " exiting: ",
    ] {
        assert_eq!(lines_with(&log, bad), 0, "{bad:?} in the log:\n{log}");
    }
    assert!(log.contains("stopped: 4 jobs ok, 0 failed"), "log:\n{log}");
    srv.wait(
        "no process of the server left",
        Duration::from_secs(5),
        || srv.processes().is_empty(),
    );
}

#[test]
fn sigterm_to_the_process_group_finishes_in_flight_jobs() {
    group_signal_finishes_in_flight_jobs("grp-term", Signal::SIGTERM);
}

#[test]
fn sigint_to_the_process_group_finishes_in_flight_jobs() {
    group_signal_finishes_in_flight_jobs("grp-int", Signal::SIGINT);
}

/// The notification socket of a fake service manager.
struct Manager {
    sock: UnixDatagram,
    /// What NOTIFY_SOCKET says.
    address: String,
}

impl Manager {
    fn at_path(path: &Path) -> Manager {
        let sock = UnixDatagram::bind(path).unwrap();
        Manager::new(sock, path.display().to_string())
    }

    fn abstract_name(name: &str) -> Manager {
        let addr = SocketAddr::from_abstract_name(name).unwrap();
        Manager::new(UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    }

    fn new(sock: UnixDatagram, address: String) -> Manager {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager { sock, address }
    }

    /// The next datagram's lines, or `None` once `deadline` has passed.
    fn next(&self, deadline: Instant) -> Option<Vec<String>> {
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                return Some(text.lines().map(str::to_string).collect());
            }
        }
        None
    }

    /// The next datagram, which must arrive within `timeout`.
    fn expect(&self, what: &str, timeout: Duration) -> Vec<String> {
        self.next(Instant::now() + timeout)
            .unwrap_or_else(|| panic!("no notification ({what}) within {timeout:?}"))
    }
}

fn has(msg: &[String], line: &str) -> bool {
    msg.iter().any(|l| l == line)
}

#[test]
fn notify_socket_gets_ready_then_watchdog_pings_then_stopping() {
    let dir = TempDir::new("notify");
    let mgr = Manager::at_path(&dir.join("notify.sock"));
    // Pings every 150 ms.
    let mut srv = Server::builder("notify")
        .args(&["--workers", "1"])
        .env("NOTIFY_SOCKET", &mgr.address)
        .env("WATCHDOG_USEC", "300000")
        .start();
    // The first notification is READY=1, with a status line; by then the port accepts
    // connections and a worker takes jobs.
    let ready = mgr.expect("READY=1", Duration::from_secs(10));
    assert!(has(&ready, "READY=1"), "first notification {ready:?}");
    assert!(
        ready.iter().any(|l| l.starts_with("STATUS=serving")),
        "{ready:?}"
    );
    let mut c = srv.connect();
    let small = sample("chelsea_64x64.png");
    assert!(run_job(&mut c, 1, "invert", &small).is_ok());
    // Then watchdog pings, and nothing else, while it serves.
    for i in 0..3 {
        let ping = mgr.expect("WATCHDOG=1", Duration::from_secs(5));
        assert_eq!(ping, ["WATCHDOG=1"], "ping {i}");
    }
    // Only the master speaks for the service: its workers have none of these variables.
    assert!(environ(srv.pid()).contains(&format!("NOTIFY_SOCKET={}", mgr.address)));
    for w in srv.workers() {
        let env = environ(w);
        assert!(
            env.iter().any(|v| v.starts_with("RUST_LOG=")),
            "worker {w}'s environment is readable: {env:?}"
        );
        assert!(
            !env.iter()
                .any(|v| v.starts_with("NOTIFY_SOCKET=") || v.starts_with("WATCHDOG_")),
            "worker {w}: {env:?}"
        );
    }
    srv.signal(Signal::SIGTERM);
    // Pings already on their way may come first; STOPPING=1 comes, and no ping after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopping = loop {
        let msg = mgr
            .next(deadline)
            .unwrap_or_else(|| panic!("no STOPPING=1 after SIGTERM; log:\n{}", srv.log_text()));
        if has(&msg, "STOPPING=1") {
            break msg;
        }
        assert_eq!(msg, ["WATCHDOG=1"], "before STOPPING=1");
    };
    assert!(
        stopping.iter().any(|l| l.starts_with("STATUS=stopping")),
        "{stopping:?}"
    );
    let st = srv
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| srv.fail(e));
    assert_eq!(st.code(), Some(0));
    // It has exited, so whatever it sent is queued by now: nothing after STOPPING=1.
    mgr.sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let rest = mgr
        .sock
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(rest.is_err(), "after STOPPING=1: {rest:?}");
}

#[test]
fn notify_socket_in_the_abstract_namespace() {
    let name = format!("imgserver-test-notify.{}", std::process::id());
    let mgr = Manager::abstract_name(&name);
    let mut srv = Server::builder("notify-abstract")
        .args(&["--workers", "1"])
        .env("NOTIFY_SOCKET", &mgr.address)
        .start();
    let ready = mgr.expect("READY=1", Duration::from_secs(10));
    assert!(has(&ready, "READY=1"), "{ready:?}");
    srv.signal(Signal::SIGTERM);
    // No WATCHDOG_USEC: no pings, so the next notification is STOPPING=1.
    let stopping = mgr.expect("STOPPING=1", Duration::from_secs(10));
    assert!(has(&stopping, "STOPPING=1"), "{stopping:?}");
    let st = srv
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| srv.fail(e));
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_watchdog_meant_for_another_pid_is_not_pinged() {
    let dir = TempDir::new("notify-pid");
    let mgr = Manager::at_path(&dir.join("notify.sock"));
    // WATCHDOG_PID names pid 1: the variables were meant for someone else.
    let mut srv = Server::builder("notify-pid")
        .args(&["--workers", "1"])
        .fault_injection()
        .env("NOTIFY_SOCKET", &mgr.address)
        .env("WATCHDOG_USEC", "20000")
        .env("WATCHDOG_PID", "1")
        .start();
    let ready = mgr.expect("READY=1", Duration::from_secs(10));
    assert!(has(&ready, "READY=1"), "{ready:?}");
    // A 1.5 s job: a hundred and fifty ping periods (10 ms) of a watchdog that is off.
    let mut c = srv.connect();
    assert!(run_job(&mut c, 1, "invert", &slow_input()).is_ok());
    srv.signal(Signal::SIGTERM);
    let next = mgr.expect("STOPPING=1", Duration::from_secs(10));
    assert!(has(&next, "STOPPING=1"), "a ping came first: {next:?}");
    srv.wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| srv.fail(e));
}

/// `dist/imgserver.service` with ExecStart pointed at the binary of this build (the installed
/// path need not exist here), written as `imgserver.service` in `dir`.
fn unit_copy(dir: &Path) -> PathBuf {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/imgserver.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/imgserver "),
        "{text}"
    );
    let text = text.replace(
        "/usr/local/bin/imgserver",
        &imgserver_bin().display().to_string(),
    );
    let copy = dir.join("imgserver.service");
    std::fs::write(&copy, text).unwrap();
    copy
}

fn systemd_analyze() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/systemd-analyze");
    if p.is_file() {
        return Some(p);
    }
    eprintln!(
        "SKIPPED: systemd-analyze is not installed (scripts/install-deps.sh installs the systemd package)"
    );
    None
}

#[test]
fn the_unit_file_verifies() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = TempDir::new("unit");
    let copy = unit_copy(dir.path());
    let out = Command::new(&analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys and bad values are only warnings: none may name the unit.
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("imgserver.service"))
        .collect();
    assert!(about_it.is_empty(), "{about_it:#?}");
    let text = std::fs::read_to_string(&copy).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=imgserver",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    // The stop timeout outlasts the default grace (10 s) plus the workers' 2 s to exit.
    let secs = |key: &str| -> u64 {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        v.trim_end_matches('s').parse().unwrap()
    };
    assert!(secs("TimeoutStopSec=") > 12);
    assert!(secs("WatchdogSec=") > 0);
    assert!(secs("LimitNOFILE=") > 10_000 + 64);
}

#[test]
fn the_unit_file_is_hardened() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = TempDir::new("unit-security");
    let copy = unit_copy(dir.path());
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && text.is_empty() {
        eprintln!(
            "SKIPPED: this systemd-analyze has no offline security check: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    // "→ Overall exposure level for imgserver.service: 3.9 OK": below MEDIUM (5.0).
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("imgserver.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(level < 5.0, "exposure {level}:\n{text}");
}
