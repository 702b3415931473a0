//! Test harness: runs the real imgserver binary on port 0 with a throwaway state directory
//! and talks to it through libnetproto.so (netproto-sys), as any client would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netproto_sys::{Client, ClientConfig, Event, ResultInfo};

pub const PASSWORD: &str = "test-password";
pub const USER: &str = "tester";

static DIRS: AtomicU64 = AtomicU64::new(0);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgserver")
}

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "imgserver-test-{}-{}-{}",
        std::process::id(),
        tag,
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Server {
    pub child: Option<Child>,
    pub addr: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    pub fn start(tag: &str, extra: &[&str]) -> Server {
        Self::start_env(tag, extra, &[])
    }

    pub fn start_env(tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let s = Self::start_env_unready(tag, extra, env);
        s.wait_workers_ready(Duration::from_secs(10));
        s
    }

    /// Starts the server without waiting for its workers (for workers that never get ready).
    pub fn start_env_unready(tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = temp_dir(tag);
        add_user(&dir, USER, PASSWORD);
        let log = dir.join("server.log");
        let mut cmd = Command::new(bin());
        cmd.args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&dir)
            .args(extra);
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child: Some(child),
            addr,
            dir,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Counters read locally through `imgserver stats --json`.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let out = Command::new(bin())
            .args(["stats", "--json", "--state-dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "imgserver stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((k.trim_matches('"').to_string(), v.parse().ok()?))
            })
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no stat {name}"))
    }

    pub fn wait_workers_ready(&self, timeout: Duration) {
        let want = self.worker_count();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stat("workers_alive") as usize == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("workers not ready; log:\n{}", self.log_text());
    }

    fn worker_count(&self) -> usize {
        worker_pids(self.pid()).len().max(1)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: kill(1) via the shell keeps the tests free of unsafe code.
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self) -> Client {
        let cfg = ClientConfig::new(USER, PASSWORD.as_bytes()).unwrap();
        Client::connect(&self.addr, &cfg, None, Duration::from_secs(10)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("server log ({}):\n{}", self.log.display(), self.log_text());
        }
    }
}

pub fn add_user(dir: &Path, user: &str, password: &str) {
    let mut child = Command::new(bin())
        .args(["user", "add", user, "--state-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Child processes of `pid` (the workers of a master).
pub fn worker_pids(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/PID; treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// What a job came back as.
#[derive(Debug)]
pub enum Outcome {
    Ok { info: ResultInfo, bytes: Vec<u8> },
    Error { code: u16, message: String },
    Busy { retry_after_ms: u32 },
    Shutdown,
}

/// Sends a whole job in 64 KiB chunks.
pub fn send_job(c: &mut Client, id: u64, spec: &str, input: &[u8]) {
    let t = Duration::from_secs(10);
    let first = input.len().min(65536);
    c.send_job(
        id,
        spec,
        input.len() as u64,
        &input[..first],
        first == input.len(),
        t,
    )
    .unwrap();
    let mut off = first;
    while off < input.len() {
        let end = (off + 65536).min(input.len());
        c.send_job_data(id, &input[off..end], end == input.len(), t)
            .unwrap();
        off = end;
    }
}

/// Waits for the answer to job `id` (other requests' events are an error here).
pub fn wait_job(c: &mut Client, id: u64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut info = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for job {id}");
        match c.next_event(left).unwrap() {
            Event::JobResult {
                id: rid,
                info: i,
                data,
                last,
            } if rid == id => {
                info = Some(i);
                bytes.extend_from_slice(data);
                if last {
                    return Outcome::Ok {
                        info: info.unwrap(),
                        bytes,
                    };
                }
            }
            Event::ResultData {
                id: rid,
                data,
                last,
            } if rid == id => {
                bytes.extend_from_slice(data);
                if last {
                    return Outcome::Ok {
                        info: info.unwrap(),
                        bytes,
                    };
                }
            }
            Event::Error {
                id: rid,
                code,
                message,
            } if rid == id || rid == 0 => {
                return Outcome::Error {
                    code,
                    message: message.to_string(),
                }
            }
            Event::Busy {
                id: rid,
                retry_after_ms,
            } if rid == id => return Outcome::Busy { retry_after_ms },
            Event::Shutdown { .. } => return Outcome::Shutdown,
            Event::Ping { .. } | Event::Pong { .. } => {}
            e => panic!("unexpected event while waiting for job {id}: {e:?}"),
        }
    }
}

pub fn run_job(c: &mut Client, id: u64, spec: &str, input: &[u8]) -> Outcome {
    send_job(c, id, spec, input);
    wait_job(c, id, Duration::from_secs(60))
}

/// The imgclient binary built next to imgserver (`make test` builds the whole workspace).
pub fn imgclient_bin() -> PathBuf {
    let p = Path::new(bin()).with_file_name("imgclient");
    assert!(
        p.exists(),
        "{} missing: build the workspace first (cargo build --release)",
        p.display()
    );
    p
}

/// A directory holding copies of the small sample images (fast jobs).
pub fn small_images(tag: &str) -> PathBuf {
    let d = temp_dir(tag);
    for f in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
        std::fs::copy(samples().join(f), d.join(f)).unwrap();
    }
    d
}

/// Result of an `imgclient bench` run, from its JSON report.
#[derive(Debug)]
pub struct Bench {
    pub ok: u64,
    pub errors: u64,
    pub p99_ms: f64,
    pub json: String,
    pub stdout: String,
}

fn json_number(json: &str, key: &str) -> f64 {
    let k = format!("\"{key}\":");
    let at = json
        .find(&k)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + k.len();
    json[at..]
        .trim_start()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

impl Server {
    /// Runs `imgclient bench` against this server with `args` (and --json), returns the report.
    pub fn bench(&self, args: &[&str]) -> Bench {
        let json_path = self.dir.join(format!(
            "bench-{}.json",
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let out = Command::new(imgclient_bin())
            .args(["--server", &self.addr, "--user", USER, "--known-servers"])
            .arg(self.dir.join("known_servers"))
            .env("IMGCLIENT_PASSWORD", PASSWORD)
            .arg("bench")
            .args(args)
            .arg("--json")
            .arg(&json_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() || json_path.exists(),
            "bench failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let json = std::fs::read_to_string(&json_path).unwrap();
        let p99 = json
            .find("\"latency_ms\"")
            .map(|i| json_number(&json[i..], "p99"))
            .unwrap_or(0.0);
        Bench {
            ok: json_number(&json, "ok") as u64,
            errors: json_number(&json, "errors") as u64,
            p99_ms: p99,
            json,
            stdout,
        }
    }

    /// The master's resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's open-files soft limit to its hard limit (tests open many sockets).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// `make soak` sets IMGSERVER_SOAK=1: the fault and hostile-peer tests then run their long
/// variants (more connections, longer runs, more rounds).
pub fn soak() -> bool {
    std::env::var("IMGSERVER_SOAK").is_ok_and(|v| v == "1")
}

/// CRC-32 (IEEE), as PNG chunks use it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Appends one PNG chunk (length, type, data, CRC).
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}
