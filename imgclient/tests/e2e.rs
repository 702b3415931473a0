//! End-to-end tests of the imgclient binary against a real imgserver on loopback: filter
//! output identical to `--local`, key pinning, exit codes per failure kind, ping/stats/health,
//! a batch that survives a server crash and restart, and a bench smoke run.
//!
//! Trust boundary: none of its own; each test starts a throwaway server (own state directory,
//! port 0) and kills it when done. The imgserver binary is taken from the same target
//! directory as imgclient (`cargo build --release --workspace` builds both, as `make test`
//! does); when it is missing the tests say so and pass, so `cargo test -p imgclient` alone
//! still works.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "e2e-secret";

fn client_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imgclient"))
}

fn server_bin() -> Option<PathBuf> {
    let p = client_bin().parent()?.join("imgserver");
    p.is_file().then_some(p)
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "imgclient-e2e-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running imgserver; killed on drop.
struct Server {
    child: Child,
    addr: String,
    state: PathBuf,
}

impl Server {
    fn start(bin: &Path, state: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(["--listen", listen, "--workers", "1", "--state-dir"])
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start imgserver");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on ") => {
                    break l["listening on ".len()..].trim().to_string()
                }
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    panic!("imgserver did not print its address");
                }
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            state: state.to_path_buf(),
        }
    }

    /// A server with one user, `alice`, on a free port.
    fn with_user(bin: &Path, dir: &Path, extra: &[&str]) -> Server {
        let state = dir.join("state");
        let mut add = Command::new(bin)
            .args(["user", "add", "alice", "--state-dir"])
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        assert!(add.wait().unwrap().success());
        Server::start(bin, &state, "127.0.0.1:0", extra)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(server: &str, known: &Path) -> Command {
    let mut c = Command::new(client_bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IMGSERVER_ADDR", server)
        .env("IMGCLIENT_USER", "alice")
        .env("IMGCLIENT_PASSWORD", PASSWORD)
        .env("IMGCLIENT_KNOWN_SERVERS", known)
        .stdin(Stdio::null());
    c
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

macro_rules! need_server {
    () => {
        match server_bin() {
            Some(b) => b,
            // Failing, not skipping: a test that silently passes without a server proves
            // nothing. `make test` (or `cargo build --release -p imgserver`) builds it.
            None => panic!("imgserver is not built next to imgclient: run `cargo build --release -p imgserver` first"),
        }
    };
}

#[test]
fn remote_output_is_byte_identical_to_local_and_key_is_pinned() {
    let bin = need_server!();
    let dir = TempDir::new("ident");
    let srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
    let input = samples().join("cat.png");
    for (args, ext) in [
        (vec!["blur", "--sigma", "3"], "png"),
        (vec!["resize", "--width", "120"], "jpg"),
        (vec!["scale", "--percent", "37"], "png"),
        (vec!["run", "--ops", "thumbnail:64,grayscale"], "webp"),
    ] {
        let remote = dir.0.join(format!("remote.{ext}"));
        let local = dir.0.join(format!("local.{ext}"));
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
    let bin = need_server!();
    let dir = TempDir::new("codes");
    let srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
    let out = dir.0.join("out.png");
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
    let other = dir.0.join("other_known");
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
    let junk = dir.0.join("junk.png");
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
        .arg(dir.0.join("missing.png"))
        .arg("-o")
        .arg(&out);
    assert_eq!(code(&run(c)), 2);
    let mut c = client("127.0.0.1:1", &known);
    c.args(["ping"]);
    assert_eq!(code(&run(c)), 3);
    assert!(!out.exists());
}

#[test]
fn ping_stats_and_health() {
    let bin = need_server!();
    let dir = TempDir::new("ops");
    let srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
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
    assert!(
        json.trim_start().starts_with('{') && json.contains("\"pings\""),
        "{json}"
    );

    let mut c = client(&srv.addr, &known);
    c.arg("health");
    let o = run(c);
    assert_eq!(code(&o), 0);
    assert!(
        o.stderr.is_empty() && o.stdout.is_empty(),
        "health is quiet"
    );
    let mut c = client("127.0.0.1:1", &known);
    c.args(["health", "-v"]);
    let o = run(c);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).starts_with("unhealthy:"));
}

#[test]
fn batch_survives_a_server_crash_and_restart() {
    let bin = need_server!();
    let dir = TempDir::new("restart");
    let mut srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
    let inputs = dir.0.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut n = 0;
    for i in 0..4 {
        for f in ["cat.png", "camera.png", "rocket.jpg", "retina.jpg"] {
            std::fs::copy(samples().join(f), inputs.join(format!("{i}-{f}"))).unwrap();
            n += 1;
        }
    }
    let out = dir.0.join("out");
    let mut c = client(&srv.addr, &known);
    c.args(["-v", "blur", "--sigma", "4", "--conns", "2"])
        .arg(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .stderr(Stdio::piped());
    let batch = c.spawn().unwrap();

    // Crash the server once some results are in, then bring it back on the same address
    // with the same key.
    let t0 = Instant::now();
    while std::fs::read_dir(&out).map_or(0, |d| d.count()) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = srv.child.kill();
    let _ = srv.child.wait();
    let done_before_crash = std::fs::read_dir(&out).map_or(0, |d| d.count());
    assert!(done_before_crash < n, "the batch finished before the crash");
    std::thread::sleep(Duration::from_millis(300));
    let addr = srv.addr.clone();
    let state = srv.state.clone();
    srv = Server::start(&bin, &state, &addr, &[]);

    let o = batch.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The client noticed the crash and re-sent what was in flight.
    assert!(stderr(&o).contains("job(s) to re-send"), "{}", stderr(&o));
    drop(srv);
    let local = dir.0.join("local");
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
    let bin = need_server!();
    let dir = TempDir::new("bench");
    let srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
    let json = dir.0.join("bench.json");
    let svg = dir.0.join("bench.svg");
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
    assert!(
        j.contains("\"ok\": 40") && j.contains("\"latency_by_op_ms\""),
        "{j}"
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

/// A counter from the server's shared-memory stats page (`imgserver stats --json`).
fn server_stat(bin: &Path, state: &Path, name: &str) -> u64 {
    let o = Command::new(bin)
        .args(["stats", "--json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let key = format!("\"{name}\":");
    let at = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        + key.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn bench_150_connections_zero_errors_and_counts_match_the_server() {
    let bin = need_server!();
    let dir = TempDir::new("bench150");
    let srv = Server::with_user(&bin, &dir.0, &[]);
    let known = dir.0.join("known_servers");
    let state = dir.0.join("state");
    // Small real images, so a 2 s run completes many jobs.
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
        std::fs::copy(samples().join(f), images.join(f)).unwrap();
    }
    let before = server_stat(&bin, &state, "jobs_ok");
    // `imgclient bench --conns 150 --op noop --dir IMAGES ARGS`: its stdout, after exit 0.
    let bench = |args: &[&str]| {
        let mut c = client(&srv.addr, &known);
        c.args(["bench", "--conns", "150", "--op", "noop"])
            .args(args)
            .arg("--dir")
            .arg(&images);
        let o = run(c);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = bench(&["--duration", "2s"]);
    assert!(text.starts_with("bench: 150 conns"), "{text}");
    let ok: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split(" ok, 0 errors").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no error-free request line in {text}"));
    let jobs = server_stat(&bin, &state, "jobs_ok") - before;
    assert!(ok >= 150, "only {ok} requests in 2 s over 150 connections");
    assert_eq!(
        jobs, ok,
        "bench counted {ok} requests, the server {jobs} jobs"
    );

    // A request-count run ends when its last answer arrives, not when the (long) per-request
    // timeout would have expired.
    let t = std::time::Instant::now();
    let text = bench(&["--requests", "300", "--timeout", "120s"]);
    assert!(text.contains("requests: 300 ok, 0 errors"), "{text}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "a 300-request run took {:?}",
        t.elapsed()
    );
}
