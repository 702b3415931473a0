//! End-to-end: the confinement of the workers and of the master, seen from outside through
//! /proc and by an unprivileged process trying what a compromised worker would try.
//!
//! Trust boundary: the administrator's view (/proc, as root) and an ordinary local user's
//! (processes started as `nobody`); nothing here reaches into the server's code.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

/// nobody:nogroup, the unprivileged account of Debian and most distributions.
const NOBODY: (u32, u32) = (65534, 65534);

/// A limit's soft and hard values from /proc/PID/limits (`unlimited` as u64::MAX).
fn limit(pid: u32, name: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    let v: Vec<u64> = line[name.len()..]
        .split_whitespace()
        .take(2)
        .map(|s| {
            if s == "unlimited" {
                u64::MAX
            } else {
                s.parse().unwrap()
            }
        })
        .collect();
    (v[0], v[1])
}

#[test]
fn workers_run_with_no_new_privileges_and_tight_limits() {
    let srv = Server::start("confined", &["--workers", "2", "--worker-mem-mb", "512"]);
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    // The tests run as root: the workers dropped to nobody (real, effective, saved and
    // filesystem ids alike) with no supplementary group.
    assert_eq!(
        status_field(srv.pid(), "Uid").as_deref(),
        Some("0\t0\t0\t0")
    );
    assert!(srv
        .log_text()
        .contains("workers run as nobody (uid 65534, gid 65534)"));
    for w in workers {
        assert_eq!(
            status_field(w, "Uid").as_deref(),
            Some("65534\t65534\t65534\t65534"),
            "worker {w}"
        );
        assert_eq!(
            status_field(w, "Gid").as_deref(),
            Some("65534\t65534\t65534\t65534"),
            "worker {w}"
        );
        assert_eq!(status_field(w, "Groups").as_deref(), Some(""), "worker {w}");
        assert_eq!(
            status_field(w, "NoNewPrivs").as_deref(),
            Some("1"),
            "worker {w}"
        );
        // Mode 2: a seccomp filter (the allow-list) is in force.
        assert_eq!(
            status_field(w, "Seccomp").as_deref(),
            Some("2"),
            "worker {w}"
        );
        assert_eq!(limit(w, "Max open files"), (16, 16), "worker {w}");
        assert_eq!(limit(w, "Max core file size"), (0, 0), "worker {w}");
        // Output memfds are held to RLIMIT_FSIZE: the limit is the memory cap.
        assert_eq!(
            limit(w, "Max file size"),
            (512 << 20, 512 << 20),
            "worker {w}"
        );
    }
    // The master is not confined that way (it opens connections and files).
    assert_eq!(status_field(srv.pid(), "NoNewPrivs").as_deref(), Some("0"));
    assert_eq!(status_field(srv.pid(), "Seccomp").as_deref(), Some("0"));
    // What the kernel enforced, said once in the log and kept in the stats page (this
    // kernel has Landlock ABI 6 or later: every right the ruleset asks for).
    let log = srv.log_text();
    assert_eq!(log.matches("worker sandbox: ").count(), 1, "{log}");
    assert!(
        log.contains("worker sandbox: seccomp allow-list on, Landlock ABI "),
        "{log}"
    );
    assert!(
        log.contains("(no files, no TCP, no outside sockets or signals)"),
        "{log}"
    );
    let page = srv.stats();
    assert_eq!(page.get("sandbox_seccomp"), 1);
    assert!(page.get("sandbox_landlock_abi") >= 6);
    assert_eq!(page.get("sandbox_violations"), 0);
    // Large outputs still go through their memfd under these limits: 64 KiB slots.
    let srv = Server::start(
        "confined-memfd",
        &["--workers", "1", "--slot-size", "65536", "--slots", "2"],
    );
    let mut c = srv.connect();
    let input = sample("astronaut.png");
    match run_job(&mut c, 1, "rotate:90", &input) {
        Outcome::Ok { bytes, .. } => assert!(bytes.len() > 65536),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("large_jobs"), 1);
}

/// Whether a process running as `uid:gid` can open `/proc/PID/mem` (what ptrace-level
/// access to another process needs).
fn can_open_mem(pid: u32, (uid, gid): (u32, u32)) -> bool {
    use std::os::unix::process::CommandExt;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec 3</proc/{pid}/mem"))
        .uid(uid)
        .gid(gid)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_master_of_an_ordinary_user_is_out_of_reach_of_that_user_and_still_reports_stats() {
    use std::os::unix::process::CommandExt;
    // The control: a process of that user is open to the same user (no Yama here)...
    let mut other = Command::new("sleep")
        .arg("60")
        .uid(NOBODY.0)
        .gid(NOBODY.1)
        .spawn()
        .unwrap();
    let open_to_peer = can_open_mem(other.id(), NOBODY);
    let _ = other.kill();
    let _ = other.wait();
    assert!(open_to_peer, "a dumpable process of the same user is open");
    // ... the master is not: it made itself undumpable. Its workers run as the same user
    // here (as non-root there is no one to drop to) and are undumpable too.
    let srv = Server::builder("undumpable")
        .args(&["--workers", "1"])
        .run_as(NOBODY.0, NOBODY.1)
        .start();
    assert_eq!(
        status_field(srv.pid(), "Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("65534")
    );
    assert!(
        !can_open_mem(srv.pid(), NOBODY),
        "the master's memory is open to its user"
    );
    assert!(srv
        .log_text()
        .contains("workers run as the server's own user (uid 65534)"));
    for w in srv.workers() {
        assert_eq!(
            status_field(w, "Uid").unwrap().split_whitespace().next(),
            Some("65534")
        );
        assert!(
            !can_open_mem(w, NOBODY),
            "worker {w}'s memory is open to its user"
        );
    }
    // `imgserver stats` as that user still works (Server::start waited for the workers
    // through it): /proc/PID/fd is closed to it, the master's stats socket is not.
    let page = srv.stats();
    assert_eq!(page.get("workers_alive"), 1);
    let mut c = srv.connect();
    assert!(run_job(&mut c, 1, "invert", &sample("chelsea_64x64.png")).is_ok());
    srv.wait_stat("jobs_ok", 1, Duration::from_secs(5));
}

#[test]
fn worker_user_must_exist_and_root_is_only_taken_when_named() {
    // A user that does not exist: a clear error at start, before anything runs.
    let dir = TempDir::new("nouser");
    let out = Command::new(imgserver_bin())
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--state-dir"])
        .arg(dir.path())
        .args(["--worker-user", "no-such-user-here"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--worker-user no-such-user-here: no such user"),
        "{err}"
    );
    // Root when asked for by name, with a warning, once.
    let srv = Server::start("rootworkers", &["--workers", "2", "--worker-user", "root"]);
    let log = srv.log_text();
    assert_eq!(log.matches("workers run as root").count(), 1, "{log}");
    for w in srv.workers() {
        assert_eq!(status_field(w, "Uid").as_deref(), Some("0\t0\t0\t0"));
        // Still confined otherwise.
        assert_eq!(status_field(w, "NoNewPrivs").as_deref(), Some("1"));
    }
}

#[test]
fn stats_to_a_reader_that_closed_its_pipe_is_not_a_crash() {
    // `imgserver stats | head -1`: the reader may go away before anything is written.
    let srv = Server::start("stats-pipe", &["--workers", "1"]);
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = Command::new(imgserver_bin())
        .args(["stats", "--state-dir"])
        .arg(srv.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_second_server_on_the_same_state_directory_is_refused_and_the_first_keeps_its_pid_file() {
    let srv = Server::start("onedir", &["--workers", "1"]);
    let mut second = Command::new(imgserver_bin())
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--state-dir"])
        .arg(srv.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    let waited = wait_until(
        "the second server to give up",
        Duration::from_secs(10),
        || {
            status = second.try_wait().unwrap();
            status.is_some()
        },
    );
    if waited.is_err() {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second server ran on the first one's state directory");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.unwrap().code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "another imgserver (pid {}) is running with state directory",
            srv.pid()
        )),
        "{err}"
    );
    // The first server's pid file still names it: `imgserver stats` finds it.
    assert_eq!(srv.stats().get("workers_alive"), 1);
}
