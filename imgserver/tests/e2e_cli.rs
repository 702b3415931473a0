//! End-to-end: the real imgserver binary's command line, environment variables and config
//! file; which wins, and what a usage error looks like (exit 1, the flag or key named).
//!
//! Trust boundary: the operator's side of the process (argv, environment, a file), read back
//! from the server's start-up log line and from what a client is refused.

use std::process::{Command, Stdio};
use std::time::Duration;

use netproto_sys::ErrorCode;
use testkit::*;

/// The start-up line with the limits in force (master/mod.rs, `log_settings`).
fn settings(srv: &Server) -> String {
    let log = srv.log_text();
    log.lines()
        .find(|l| l.contains("settings: "))
        .unwrap_or_else(|| panic!("no settings line in:\n{log}"))
        .to_string()
}

/// Runs the server binary to its exit (for start-up refusals) with `args` and `env`.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = TempDir::new("cli-usage");
    let mut cmd = Command::new(imgserver_bin());
    cmd.args(["--workers", "1", "--state-dir"])
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut status = None;
    // Bounded: a server that wrongly accepted its arguments would run forever.
    let waited = wait_until(
        "imgserver to refuse its arguments",
        Duration::from_secs(10),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("imgserver {args:?} {env:?} started instead of refusing");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.unwrap().code(), err)
}

#[test]
fn durations_sizes_and_a_host_name_take_effect() {
    let srv = Server::start(
        "cli-units",
        &[
            "--workers",
            "1",
            "--grace",
            "10s",
            "--job-timeout",
            "5s",
            "--max-upload",
            "64KiB",
            "--listen",
            "localhost:0",
        ],
    );
    // localhost resolved to its IPv4 address, the one the help promises.
    assert!(srv.addr.starts_with("127.0.0.1:"), "{}", srv.addr);
    let line = settings(&srv);
    assert!(
        line.contains("grace 10s, job timeout 5s, max upload 64KiB"),
        "{line}"
    );
    // The size took effect: one byte over it is refused, the connection stays.
    let mut c = srv.connect();
    match run_job(&mut c, 1, "invert", &vec![0u8; (64 << 10) + 1]) {
        Outcome::Error { code, message } => {
            assert_eq!(code, ErrorCode::InputTooLarge as u16, "{message}")
        }
        o => panic!("an upload over --max-upload 64KiB: {o:?}"),
    }
    assert!(run_job(&mut c, 2, "invert", &sample("chelsea_64x64.png")).is_ok());
}

#[test]
fn the_readme_forms_start_the_server() {
    // The forms of the operator's report, verbatim.
    let srv = Server::start(
        "cli-readme",
        &[
            "--workers",
            "1",
            "--grace",
            "10s",
            "--job-timeout",
            "5s",
            "--max-upload",
            "64MiB",
            "--listen",
            "localhost:0",
        ],
    );
    let line = settings(&srv);
    assert!(
        line.contains("grace 10s, job timeout 5s, max upload 64MiB"),
        "{line}"
    );
}

#[test]
fn every_flag_has_a_variable_and_the_command_line_beats_it() {
    let srv = Server::builder("cli-env")
        .args(&["--workers", "1", "--grace", "3s"])
        .env("IMGSERVER_GRACE", "7s")
        .env("IMGSERVER_JOB_TIMEOUT", "2m")
        .env("IMGSERVER_MAX_UPLOAD", "1MiB")
        .env("IMGSERVER_MAX_CONNS", "77")
        .start();
    let line = settings(&srv);
    assert!(line.contains("grace 3s,"), "the flag wins: {line}");
    assert!(line.contains("job timeout 2m,"), "{line}");
    assert!(line.contains("max upload 1MiB,"), "{line}");
    assert!(line.contains("max conns 77,"), "{line}");
}

#[test]
fn a_config_file_is_read_and_loses_to_variables_and_flags() {
    let dir = TempDir::new("cli-config");
    let file = dir.join("imgserver.toml");
    std::fs::write(
        &file,
        "# an operator's file\n\
         grace = \"20s\"\n\
         job-timeout = \"90s\"\n\
         max-upload = \"2MiB\"\n\
         max-conns = 500\n\
         idle-timeout = 45\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // The file alone.
    // (--workers stays on the command line: the harness waits for that many.)
    let srv = Server::start("cli-file", &["--workers", "1", "--config", f]);
    let line = settings(&srv);
    for want in [
        "grace 20s,",
        "job timeout 1m 30s,",
        "max upload 2MiB,",
        "max conns 500,",
        "idle timeout 45s,",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    drop(srv);
    // Command line > environment > file > default, all four at once, the file named by
    // its variable.
    let srv = Server::builder("cli-precedence")
        .args(&["--workers", "1", "--grace", "1s"])
        .env("IMGSERVER_CONFIG", f)
        .env("IMGSERVER_GRACE", "2s")
        .env("IMGSERVER_JOB_TIMEOUT", "3s")
        .start();
    let line = settings(&srv);
    for want in [
        "grace 1s,",              // command line over environment and file
        "job timeout 3s,",        // environment over file
        "max upload 2MiB,",       // file over default
        "handshake timeout 10s,", // default
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
}

#[test]
fn usage_errors_exit_1_naming_the_flag_or_the_key() {
    let (code, err) = run_to_exit(&["--grace", "10 parsecs"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--grace") && err.contains("10 parsecs"),
        "{err}"
    );

    let (code, err) = run_to_exit(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");

    let (code, err) = run_to_exit(&["--listen", "no-such-host.invalid:7878"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--listen") && err.contains("no-such-host.invalid"),
        "{err}"
    );

    let (code, err) = run_to_exit(&[], &[("IMGSERVER_MAX_UPLOAD", "huge")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--max-upload") && err.contains("huge"),
        "{err}"
    );

    let dir = TempDir::new("cli-badfile");
    for (text, key) in [
        ("max_conns = 5\n", "max_conns"),
        ("grace = \"soon\"\n", "grace"),
        ("max-upload = true\n", "max-upload"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let (code, err) = run_to_exit(&["--config", file.to_str().unwrap()], &[]);
        assert_eq!(code, Some(1), "{text}: {err}");
        assert!(
            err.contains(&format!("config file {}: ", file.display()))
                && err.contains(&format!("{key:?}")),
            "{text}: {err}"
        );
    }

    // Help and version are not errors.
    let out = Command::new(imgserver_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "[env: IMGSERVER_GRACE=]",
        "[default: 10s]",
        "[default: 64MiB]",
        "--config <PATH>",
        "Exit codes:",
        "powers of 1024",
    ] {
        assert!(help.contains(want), "{want:?} not in --help");
    }
}
