//! End-to-end tests of the imgclient binary against a real imgserver on loopback: filter
//! output identical to `--local`, key pinning, exit codes per failure kind, ping/stats/health,
//! a batch that survives a server crash and restart, and a bench smoke run.
//!
//! Trust boundary: none of its own; each test starts a throwaway server (own state directory,
//! port 0) through the shared test kit and kills it when done. The imgserver binary is taken
//! from the same target directory as imgclient (`cargo build --release --workspace --bins`
//! builds both, as `make test` does); when it is missing the tests fail and say so.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::{batch_inputs, files_in, samples, wait_until, ImgClient, Server, TempDir};

/// A server with one worker and the kit's user, on a free port.
fn server(tag: &str) -> Server {
    Server::start(tag, &["--workers", "1"])
}

/// imgclient pointed at `server` with the kit's user, pinning keys in `known`.
fn client(server: &str, known: &Path) -> Command {
    ImgClient::new(server, known).cmd()
}

fn run(mut c: Command) -> Output {
    c.output().expect("run imgclient")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn remote_output_is_byte_identical_to_local_and_key_is_pinned() {
    let dir = TempDir::new("ident");
    let srv = server("ident");
    let known = dir.join("known_servers");
    let input = samples().join("cat.png");
    for (args, ext) in [
        (vec!["blur", "--sigma", "3"], "png"),
        (vec!["resize", "--width", "120"], "jpg"),
        (vec!["scale", "--percent", "37"], "png"),
        (vec!["run", "--ops", "thumbnail:64,grayscale"], "webp"),
    ] {
        let remote = dir.join(format!("remote.{ext}"));
        let local = dir.join(format!("local.{ext}"));
        let mut c = client(&srv.addr, &known);
        c.args(&args).arg(&input).arg("-o").arg(&remote);
        let o = run(c);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        let mut c = client(&srv.addr, &known);
        c.args(&args)
            .arg("--local")
            .arg(&input)
            .arg("-o")
            .arg(&local);
        assert_eq!(code(&run(c)), 0);
        assert_eq!(
            std::fs::read(&remote).unwrap(),
            std::fs::read(&local).unwrap(),
            "{args:?}"
        );
    }
    let pinned = std::fs::read_to_string(&known).unwrap();
    assert!(pinned.starts_with(&srv.addr), "{pinned}");
    assert_eq!(pinned.lines().count(), 1);
}

#[test]
fn every_failure_kind_has_its_exit_code() {
    let dir = TempDir::new("codes");
    let srv = server("codes");
    let known = dir.join("known_servers");
    let out = dir.join("out.png");
    let input = samples().join("chelsea_64x64.png");

    // First contact pins and announces the key.
    let mut c = client(&srv.addr, &known);
    c.arg("ping");
    let o = run(c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("pinned new server {} key SHA256:", srv.addr)));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("pong from"));

    // 4: wrong password.
    let mut c = client(&srv.addr, &known);
    c.env("IMGCLIENT_PASSWORD", "wrong").arg("ping");
    let o = run(c);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).starts_with("imgclient: connecting to"));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));

    // 5: the pinned key differs; the message names the file to edit.
    let other = dir.join("other_known");
    std::fs::write(
        &other,
        format!(
            "{} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            srv.addr
        ),
    )
    .unwrap();
    let mut c = client(&srv.addr, &other);
    c.args(["blur"]).arg(&input).arg("-o").arg(&out);
    let o = run(c);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(other.to_str().unwrap()),
        "{}",
        stderr(&o)
    );

    // 6: the server refuses the input.
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"not an image").unwrap();
    let mut c = client(&srv.addr, &known);
    c.arg("invert").arg(&junk).arg("-o").arg(&out);
    let o = run(c);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("UNSUPPORTED_FORMAT (303)"),
        "{}",
        stderr(&o)
    );
    let mut c = client(&srv.addr, &known);
    c.args(["crop", "--x", "60", "--width", "10", "--height", "10"])
        .arg(&input)
        .arg("-o")
        .arg(&out);
    assert_eq!(code(&run(c)), 6);

    // 1: usage (checked before connecting), 2: local file, 3: nobody listening.
    let mut c = client(&srv.addr, &known);
    c.args(["run", "--ops", "blur:0"])
        .arg(&input)
        .arg("-o")
        .arg(&out);
    assert_eq!(code(&run(c)), 1);
    let mut c = client(&srv.addr, &known);
    c.arg("blur")
        .arg(dir.join("missing.png"))
        .arg("-o")
        .arg(&out);
    assert_eq!(code(&run(c)), 2);
    let mut c = client("127.0.0.1:1", &known);
    c.args(["ping"]);
    assert_eq!(code(&run(c)), 3);
    assert!(!out.exists());
}

#[test]
fn a_first_contact_whose_login_fails_pins_nothing() {
    let dir = TempDir::new("firstpin");
    let srv = server("firstpin");
    let known = dir.join("known_servers");
    // A wrong password on first contact: refused (4), and the key is not pinned.
    let mut c = client(&srv.addr, &known);
    c.env("IMGCLIENT_PASSWORD", "wrong").arg("ping");
    let o = run(c);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(!stderr(&o).contains("pinned new server"), "{}", stderr(&o));
    assert!(!known.exists(), "a failed first login pinned the key");
    // An existing file is left byte for byte as it was.
    std::fs::write(&known, "# mine\n").unwrap();
    let mut c = client(&srv.addr, &known);
    c.env("IMGCLIENT_PASSWORD", "wrong").arg("ping");
    assert_eq!(code(&run(c)), 4);
    assert_eq!(std::fs::read_to_string(&known).unwrap(), "# mine\n");

    // The right password: pinned after the login, and announced.
    let mut c = client(&srv.addr, &known);
    c.arg("ping");
    let o = run(c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("pinned new server {} key SHA256:", srv.addr)));
    let text = std::fs::read_to_string(&known).unwrap();
    assert!(text.starts_with("# mine\n"));
    assert_eq!(
        text.lines().filter(|l| l.starts_with(&srv.addr)).count(),
        1,
        "{text}"
    );
    // Known now: not announced again.
    let mut c = client(&srv.addr, &known);
    c.arg("ping");
    let o = run(c);
    assert_eq!(code(&o), 0);
    assert!(!stderr(&o).contains("pinned new server"));
}

#[test]
fn ping_stats_and_health() {
    let dir = TempDir::new("ops");
    let srv = server("ops");
    let known = dir.join("known_servers");
    let mut c = client(&srv.addr, &known);
    c.args(["ping", "-c", "3", "--interval", "10ms"]);
    let o = run(c);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("pong from")).count(),
        3
    );
    assert!(text.contains("3 pings: min"));

    let mut c = client(&srv.addr, &known);
    c.args(["stats", "--json"]);
    let o = run(c);
    assert_eq!(code(&o), 0);
    let json = String::from_utf8_lossy(&o.stdout);
    let stats = testkit::Stats::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    // The server's own counts: the three pings above, over one connection, and this
    // connection's login.
    assert_eq!(stats.get("pings"), 3, "{json}");
    assert_eq!(stats.get("logins_ok"), 2, "{json}");

    // The probe needs no password, no user and no known-servers entry, and says one line.
    let mut c = client(&srv.addr, &known);
    c.env_remove("IMGCLIENT_PASSWORD")
        .env_remove("IMGCLIENT_USER")
        .stdin(std::process::Stdio::null())
        .arg("health");
    let o = run(c);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ready\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(code(&o), 0);
    let stats_before = std::fs::read_to_string(&known).unwrap_or_default();

    // The old check is still there with --login: a login and a PING.
    let mut c = client(&srv.addr, &known);
    c.args(["health", "--login"]);
    let o = run(c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("healthy: logged in, ping "));
    assert_eq!(
        std::fs::read_to_string(&known).unwrap_or_default(),
        stats_before
    );

    // Nobody listening: one line naming the failure, exit 1.
    for login in [false, true] {
        let mut c = client("127.0.0.1:1", &known);
        c.arg("health");
        if login {
            c.arg("--login");
        }
        let o = run(c);
        assert_eq!(code(&o), 1);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("127.0.0.1:1") || out.starts_with("unhealthy:"),
            "{out}"
        );
    }
}

#[test]
fn batch_survives_a_server_crash_and_restart() {
    let dir = TempDir::new("restart");
    let mut srv = server("restart");
    let known = dir.join("known_servers");
    let inputs = dir.join("in");
    let n = batch_inputs(&inputs);
    let out = dir.join("out");
    let mut c = client(&srv.addr, &known);
    // Without -v: what the user sees of the outage is the notices and the summary.
    c.args(["blur", "--sigma", "4", "--conns", "2"])
        .arg(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .stderr(Stdio::piped());
    let batch = c.spawn().unwrap();

    // Crash the server once some results are in, then bring it back on the same address
    // with the same key.
    wait_until("two results of the batch", Duration::from_secs(30), || {
        files_in(&out) >= 2
    })
    .unwrap_or_else(|e| srv.fail(e));
    srv.kill_now();
    let done_before_crash = files_in(&out);
    assert!(done_before_crash < n, "the batch finished before the crash");
    // The outage the batch must ride out: time passes with nobody listening.
    std::thread::sleep(Duration::from_millis(300));
    srv.restart();

    let o = batch.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The client said it noticed the crash and was reconnecting, and summed the batch up.
    let err = stderr(&o);
    assert!(
        err.contains("lost (") && err.contains("reconnecting to send its jobs again"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{n} inputs in "))
            && err.contains(&format!(": {n} written, 0 failed")),
        "{err}"
    );
    assert!(
        err.lines().filter(|l| l.contains("reconnect")).count() <= 4,
        "notices are rate-limited: {err}"
    );
    drop(srv);
    let local = dir.join("local");
    let mut c = client("127.0.0.1:1", &known);
    c.args(["blur", "--sigma", "4", "--local"])
        .arg(&inputs)
        .arg("--out-dir")
        .arg(&local);
    assert_eq!(code(&run(c)), 0);
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), n, "{names:?}");
    for name in names {
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(local.join(&name)).unwrap(),
            "{name:?}"
        );
    }
}

#[test]
fn bench_smoke_with_a_mix_json_and_plot() {
    let dir = TempDir::new("bench");
    let srv = server("bench");
    let known = dir.join("known_servers");
    let json = dir.join("bench.json");
    let svg = dir.join("bench.svg");
    let mut c = client(&srv.addr, &known);
    c.args([
        "bench",
        "--conns",
        "4",
        "--requests",
        "40",
        "--op",
        "thumbnail:32",
        "--op",
        "ping",
        "--op",
        "noop",
        "--dir",
    ])
    .arg(samples())
    .arg("--json")
    .arg(&json)
    .arg("--plot")
    .arg(&svg);
    let o = run(c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("bench: 4 conns, op thumbnail:32 + ping + noop, "),
        "{text}"
    );
    assert!(lines[0].ends_with(", closed loop"));
    assert!(
        lines[1].starts_with("requests: 40 ok, 0 errors   throughput: "),
        "{text}"
    );
    assert!(lines[2].starts_with("latency: p50 "));
    assert!(text.contains("server counters (STATS)"), "{text}");
    let j = std::fs::read_to_string(&json).unwrap();
    let report = testkit::BenchReport::parse(&j).unwrap_or_else(|e| panic!("{e}: {j}"));
    assert_eq!((report.conns, report.ok, report.errors), (4, 40, 0), "{j}");
    assert_eq!(report.mode, "closed");
    assert_eq!(report.ops, ["thumbnail:32", "ping", "noop"]);
    assert_eq!(report.latency_ms.count, 40);
    let mut by_op: Vec<&str> = report.latency_by_op_ms.keys().map(|k| k.as_str()).collect();
    by_op.sort();
    assert_eq!(by_op, ["noop", "ping", "thumbnail:32"], "{j}");
    assert_eq!(
        report
            .latency_by_op_ms
            .values()
            .map(|h| h.count)
            .sum::<u64>(),
        40,
        "every request is in its op's histogram"
    );
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("<polyline"));

    // Open loop at a fixed rate for a fixed time.
    let mut c = client(&srv.addr, &known);
    c.args([
        "bench",
        "--conns",
        "3",
        "--rate",
        "60",
        "--duration",
        "1s",
        "--op",
        "ping",
    ]);
    let o = run(c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("open loop at 60 req/s"), "{text}");
    assert!(text.contains("requests: 60 ok, 0 errors"), "{text}");
}

#[test]
fn bench_150_connections_zero_errors_and_counts_match_the_server() {
    let dir = TempDir::new("bench150");
    let srv = server("bench150");
    let known = dir.join("known_servers");
    // Small real images, so a 2 s run completes many jobs.
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
        std::fs::copy(samples().join(f), images.join(f)).unwrap();
    }
    let before = srv.stat("jobs_ok");
    // `imgclient bench --conns 150 --op noop --dir IMAGES ARGS`: its stdout, after exit 0.
    let bench = |args: &[&str]| {
        let mut all = vec!["--conns", "150", "--op", "noop"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dir", images.to_str().unwrap()]);
        let run = ImgClient::new(&srv.addr, &known).bench(&all, dir.path());
        run.assert_success();
        assert_eq!(run.report.errors, 0, "{}", run.stdout);
        assert_eq!(run.report.conns, 150);
        run
    };
    let run = bench(&["--duration", "2s"]);
    let text = &run.stdout;
    assert!(text.starts_with("bench: 150 conns"), "{text}");
    let ok = run.report.ok;
    assert!(
        text.contains(&format!("requests: {ok} ok, 0 errors")),
        "the text report agrees with the JSON: {text}"
    );
    let jobs = srv.stat("jobs_ok") - before;
    assert!(ok >= 150, "only {ok} requests in 2 s over 150 connections");
    assert_eq!(
        jobs, ok,
        "bench counted {ok} requests, the server {jobs} jobs"
    );

    // A request-count run ends when its last answer arrives, not when the (long) per-request
    // timeout would have expired.
    let t = std::time::Instant::now();
    let run = bench(&["--requests", "300", "--timeout", "120s"]);
    assert_eq!(run.report.ok, 300, "{}", run.stdout);
    assert!(
        run.stdout.contains("requests: 300 ok, 0 errors"),
        "{}",
        run.stdout
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "a 300-request run took {:?}",
        t.elapsed()
    );
}
