//! End-to-end: a worker taken over by its input tries to get out, and cannot. The failpoints
//! build (`imgserver-failpoints`, `make failpoints`) makes a worker attempt, from inside a job,
//! what a hostile image with code execution in a decoder would: read the server key and the
//! users file, write a file, connect to the server's port and to the master's stats socket,
//! execute a program, ptrace and signal the master.
//!
//! Trust boundary: the attacker's side of the worker sandbox. The tests look from outside:
//! the typed answer, the log, the counters, the file system, the master's process.

use std::path::PathBuf;
use std::time::Duration;

use netproto_sys::ErrorCode;
use testkit::*;

/// An input that makes a failpoint worker try `attempt` on `arg`.
fn escape_input(attempt: &str, arg: &str) -> Vec<u8> {
    format!("IMGSERVER-FAULT-ESCAPE {attempt} {arg}\n").into_bytes()
}

/// One escape attempt: what, on what, and the system call the allow-list refuses first.
struct Attempt {
    what: &'static str,
    arg: String,
    syscall: &'static str,
}

/// Every attempt against `srv`; `written` is a path the write attempt tries to create.
fn attempts(srv: &Server, written: &std::path::Path) -> Vec<Attempt> {
    let at = |what, arg: String, syscall| Attempt { what, arg, syscall };
    let state = |name: &str| srv.dir().join(name).display().to_string();
    vec![
        at("read", state("server.key"), "openat"),
        at("read", state("users"), "openat"),
        at("write", written.display().to_string(), "openat"),
        at("connect", srv.addr.clone(), "socket"),
        at(
            "abstract",
            format!("imgserver-stats.{}", srv.pid()),
            "socket",
        ),
        at("exec", "/bin/true".into(), "execve"),
        at("ptrace", "master".into(), "ptrace"),
        at("signal", "master".into(), "kill"),
    ]
}

fn scratch_file(dir: &TempDir) -> PathBuf {
    dir.join("escaped.txt")
}

#[test]
fn every_escape_attempt_kills_its_worker_and_the_input_is_poison_after_two() {
    let scratch = TempDir::new("escape-seccomp");
    // A server per attempt: each attempt kills two workers, and a fresh pool keeps the
    // crash-loop backoff (which young deaths in a burst trip) out of the measurement.
    for i in 0..8 {
        let srv = Server::builder("escape-seccomp")
            .args(&["--workers", "2"])
            .fault_injection()
            .start();
        // The targets name this server (its key, its port, its pid).
        let list = attempts(&srv, &scratch_file(&scratch));
        assert_eq!(list.len(), 8);
        let a = &list[i];
        let mut c = srv.connect();
        match run_job(&mut c, 1, "noop", &escape_input(a.what, &a.arg)) {
            Outcome::Error { code, message } => {
                assert_eq!(code, ErrorCode::PoisonInput as u16, "{}: {message}", a.what);
                assert!(
                    message.contains(&format!(
                        "made two workers break their sandbox (system call {} refused)",
                        a.syscall
                    )),
                    "{} {}: {message}",
                    a.what,
                    a.arg
                );
            }
            o => panic!("{} {}: {o:?}", a.what, a.arg),
        }
        assert_eq!(srv.stat("sandbox_violations"), 2, "{}", a.what);
        assert_eq!(srv.stat("jobs_poison"), 1);
        let log = srv.log_text();
        assert_eq!(
            log.matches(&format!("broke its sandbox: system call {} (", a.syscall))
                .count(),
            2,
            "{log}"
        );
        // The master is untouched and serves the next job on the replacements.
        assert!(process_alive(srv.pid()));
        srv.wait_workers_ready(Duration::from_secs(5));
        assert!(run_job(&mut c, 2, "noop", &sample("chelsea_64x64.png")).is_ok());
        assert_eq!(srv.stat("slots_in_use"), 0);
    }
    assert!(!scratch_file(&scratch).exists(), "a worker wrote a file");
}

#[test]
fn landlock_alone_refuses_every_attempt_even_to_a_root_worker() {
    // Workers as root, seccomp off: only the Landlock domain stands between the worker and
    // the key (root reads any file), the port, the stats socket, programs and the master.
    let scratch = TempDir::new("escape-landlock");
    let srv = Server::builder("escape-landlock")
        .args(&[
            "--workers",
            "1",
            "--worker-user",
            "root",
            "--sandbox",
            "landlock",
        ])
        .fault_injection()
        .start();
    let log = srv.log_text();
    assert!(
        log.contains("worker sandbox: seccomp OFF, Landlock ABI"),
        "{log}"
    );
    assert!(
        log.contains("(--sandbox landlock: not for production)"),
        "{log}"
    );
    let mut c = srv.connect();
    for (i, a) in attempts(&srv, &scratch_file(&scratch)).iter().enumerate() {
        match run_job(&mut c, i as u64 + 1, "noop", &escape_input(a.what, &a.arg)) {
            Outcome::Error { code, message } => {
                assert_eq!(
                    code,
                    ErrorCode::DecodeFailed as u16,
                    "{}: {message}",
                    a.what
                );
                assert!(
                    message.contains(&format!("escape attempt {} {}: refused: ", a.what, a.arg)),
                    "{}: {message}",
                    a.what
                );
                let denied = [
                    "Permission denied",
                    "Operation not permitted",
                    "EACCES",
                    "EPERM",
                ];
                assert!(
                    denied.iter().any(|d| message.contains(d)),
                    "{}: {message}",
                    a.what
                );
            }
            o => panic!("{} {}: {o:?}", a.what, a.arg),
        }
    }
    // Refused, not killed: the one worker served every attempt and still serves.
    assert_eq!(srv.stat("worker_deaths"), 0);
    assert_eq!(srv.stat("sandbox_violations"), 0);
    assert!(run_job(&mut c, 99, "noop", &sample("chelsea_64x64.png")).is_ok());
    assert!(!scratch_file(&scratch).exists(), "a worker wrote a file");
}

#[test]
fn without_the_kernel_layers_a_root_worker_does_reach_the_key() {
    // The control for the two tests above: the failpoint really reads the file when nothing
    // stops it, so "refused" there is the sandbox's doing.
    let srv = Server::builder("escape-none")
        .args(&[
            "--workers",
            "1",
            "--worker-user",
            "root",
            "--sandbox",
            "none",
        ])
        .fault_injection()
        .start();
    assert!(srv.log_text().contains(
        "worker sandbox: seccomp OFF, Landlock OFF (--sandbox none: not for production)"
    ));
    let key = srv.dir().join("server.key");
    let len = std::fs::metadata(&key).unwrap().len();
    let mut c = srv.connect();
    match run_job(
        &mut c,
        1,
        "noop",
        &escape_input("read", &key.display().to_string()),
    ) {
        Outcome::Error { message, .. } => {
            assert!(
                message.ends_with(&format!("SUCCEEDED: read {len} bytes")),
                "{message}"
            )
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn the_shipped_binary_has_no_failpoints() {
    // A piece of the failpoints' report format (string literals that are only compared
    // against may be compiled into immediate operands, so they are no evidence).
    let marker: &[u8] = b": SUCCEEDED: ";
    let has = |bin: PathBuf| {
        let bytes = std::fs::read(&bin).unwrap();
        bytes.windows(marker.len()).any(|w| w == marker)
    };
    assert!(has(imgserver_failpoints_bin()));
    assert!(
        !has(imgserver_bin()),
        "target/release/imgserver has the failpoints compiled in"
    );
}
