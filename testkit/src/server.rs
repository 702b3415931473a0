//! The server harness: the real `imgserver` binary on port 0 with a throwaway state
//! directory and one user, started, waited for, inspected from outside and stopped.
//!
//! Trust boundary: none of its own; it is the local administrator's side (the `user add`
//! and `stats` subcommands, signals, /proc). Every server is started as the leader of its own
//! process group, which its workers inherit (they get an empty environment, so an environment
//! marker would not reach them), so checks for leftover processes see only this server's.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netproto_sys::Client;
use nix::sys::signal::Signal;

use crate::images::TempDir;
use crate::imgclient::{BenchRun, ImgClient};
use crate::procs;
use crate::report::Stats;
use crate::wait::{wait_some, wait_until, Timeout};
use crate::{PASSWORD, USER};

/// The environment variable that marks a test server's master (its workers do not inherit
/// it: the master gives them an empty environment).
pub const MARKER_VAR: &str = "IMGTEST_SERVER";

/// How long a server may take to print its address, and its workers to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

static SERVERS: AtomicU64 = AtomicU64::new(0);

/// A binary built next to the test binary (`target/<profile>/deps/<test>` →
/// `target/<profile>/<name>`).
pub(crate) fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let p = profile.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the binaries first (make build; for imgserver-failpoints, make failpoints)",
        p.display()
    );
    p
}

/// The imgserver binary of this build.
pub fn imgserver_bin() -> PathBuf {
    sibling_bin("imgserver")
}

/// The test-only variant of imgserver with its failpoints compiled in (`make failpoints`):
/// never the binary `make build` ships.
pub fn imgserver_failpoints_bin() -> PathBuf {
    sibling_bin("imgserver-failpoints")
}

/// How to start a server; [`Server::builder`].
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    tag: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    open_fds: Vec<(i32, PathBuf)>,
    run_as: Option<(u32, u32)>,
    wait_ready: bool,
    failpoints: bool,
    users: Vec<(String, String)>,
    files: Vec<(String, PathBuf)>,
}

impl ServerBuilder {
    /// Copies `src` into the state directory as `name` before the first start (another
    /// server's `server.key`: servers sharing one identity).
    pub fn state_file(mut self, name: &str, src: &Path) -> Self {
        self.files.push((name.into(), src.to_path_buf()));
        self
    }

    /// Command-line flags after `--listen` and `--state-dir`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the master holding `path` open for reading at fd `num` (3..=9: the shell that
    /// opens it takes one digit), without close-on-exec,
    /// as a careless parent would leave it.
    pub fn open_fd(mut self, num: i32, path: &Path) -> Self {
        self.open_fds.push((num, path.to_path_buf()));
        self
    }

    /// Runs the master (and `imgserver stats`) as this uid and gid instead of the test's
    /// own; the state directory is handed to that user first.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// Runs the failpoints build (`imgserver-failpoints`) with its failpoints enabled
    /// (`IMGSERVER_FAULT_INJECTION=1`).
    pub fn fault_injection(mut self) -> Self {
        self.failpoints = true;
        self.env("IMGSERVER_FAULT_INJECTION", "1")
    }

    /// Another user in the users file besides the default one.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Returns once the server listens, without waiting for its workers (for workers that
    /// never get ready).
    pub fn unready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Server {
        let dir = TempDir::new(&self.tag);
        add_user(dir.path(), USER, PASSWORD);
        for (user, password) in &self.users {
            add_user(dir.path(), user, password);
        }
        for (name, src) in &self.files {
            std::fs::copy(src, dir.join(name))
                .unwrap_or_else(|e| panic!("copy {} into the state dir: {e}", src.display()));
        }
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let mut s = Server {
            child: None,
            addr: "127.0.0.1:0".into(),
            log: dir.join("server.log"),
            dir,
            marker: format!("{}-{n}", std::process::id()),
            group: None,
            opts: self,
        };
        s.spawn();
        s
    }
}

/// A running imgserver; killed on drop (its log is printed if the test is failing).
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    /// Its stderr (`RUST_LOG=info`).
    pub log: PathBuf,
    dir: TempDir,
    marker: String,
    /// The process group of the last master started (its pid): it and its workers.
    group: Option<u32>,
    opts: ServerBuilder,
}

impl Server {
    pub fn builder(tag: &str) -> ServerBuilder {
        ServerBuilder {
            tag: tag.into(),
            args: Vec::new(),
            env: Vec::new(),
            open_fds: Vec::new(),
            run_as: None,
            wait_ready: true,
            failpoints: false,
            users: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Starts a server with `args` and waits until its workers are ready.
    pub fn start(tag: &str, args: &[&str]) -> Server {
        Server::builder(tag).args(args).start()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        // Truncated: after a restart, the log is the new process's.
        let log = std::fs::File::create(&self.log).unwrap();
        if let Some((uid, gid)) = self.opts.run_as {
            // The directory and what is in it (users file, key, log) become that user's.
            let entries = std::fs::read_dir(self.dir.path()).unwrap();
            for p in std::iter::once(self.dir.path().to_path_buf())
                .chain(entries.map(|e| e.unwrap().path()))
            {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            }
        }
        let bin = if self.opts.failpoints {
            imgserver_failpoints_bin()
        } else {
            imgserver_bin()
        };
        let mut cmd = if self.opts.open_fds.is_empty() {
            Command::new(&bin)
        } else {
            // A shell opens the files without close-on-exec and execs the server in its
            // place (same pid): a master that inherited fds from whoever started it.
            let redirects: String = self
                .opts
                .open_fds
                .iter()
                .map(|(n, p)| format!(" {n}<'{}'", p.display()))
                .collect();
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(format!("exec{redirects} \"$0\" \"$@\""))
                .arg(&bin);
            c
        };
        cmd.args(["--listen", &self.addr, "--state-dir"])
            .arg(self.dir.path())
            .args(&self.opts.args)
            // The result cache is off unless a test asks for it (e2e_cache does): the other
            // tests submit the same inputs again and again and are about what a worker does
            // with each (crashes, deadlines, fairness, memory), which a cache hit would skip.
            .args(
                (!self.opts.args.iter().any(|a| a.starts_with("--cache-size")))
                    .then_some(["--cache-size", "0"])
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", "info")
            .env(MARKER_VAR, &self.marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group, inherited by the workers: how `processes` finds them,
            // even after the master is gone.
            .process_group(0);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.opts.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().expect("start imgserver");
        self.group = Some(child.id());
        // The first "listening on" line gives the address; the rest of stdout is drained so
        // the server never blocks on a full pipe.
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_string());
                    }
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => self.addr = addr,
            Err(_) => panic!(
                "imgserver printed no address within {START_TIMEOUT:?}; log:\n{}",
                self.log_text()
            ),
        }
        if self.opts.wait_ready {
            self.wait_workers_ready(START_TIMEOUT);
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// The state directory (key, users, pid file, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A known-servers file for this server's clients.
    pub fn known_servers(&self) -> PathBuf {
        self.dir.join("known_servers")
    }

    /// The key fingerprint the server logged at start (`server key fingerprint SHA256:…`).
    pub fn fingerprint(&self) -> String {
        let log = self.log_text();
        log.lines()
            .filter_map(|l| l.split("server key fingerprint ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .next_back()
            .unwrap_or_else(|| panic!("no key fingerprint in the server log:\n{log}"))
            .to_string()
    }

    /// Pins this server's key, by its logged fingerprint, in the known-servers file `known`
    /// under its address (`imgclient pin`), as an operator would before the first login.
    /// Several servers pinned into one file: a client failing over across them.
    pub fn pin_in(&self, known: &Path) {
        let fp = self.fingerprint();
        let out = ImgClient::new(&self.addr, known).run(&["pin", "--fingerprint", &fp]);
        assert!(
            out.status.success(),
            "pinning {}: {}",
            self.addr,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many workers it was told to run.
    pub fn worker_count(&self) -> usize {
        self.opts
            .args
            .iter()
            .position(|a| a == "--workers")
            .and_then(|i| self.opts.args.get(i + 1)?.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The master's current children (its workers).
    pub fn workers(&self) -> Vec<u32> {
        procs::children(self.pid())
    }

    /// Counters read locally through `imgserver stats --json`, or why they could not be.
    pub fn try_stats(&self) -> Result<Stats, String> {
        let mut cmd = Command::new(imgserver_bin());
        cmd.args(["stats", "--json", "--state-dir"])
            .arg(self.dir.path());
        if let Some((uid, gid)) = self.opts.run_as {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Stats::parse(&text).map_err(|e| format!("{e} in {text}"))
    }

    pub fn stats(&self) -> Stats {
        self.try_stats()
            .unwrap_or_else(|e| panic!("imgserver stats failed: {e}"))
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name)
    }

    /// [`wait_until`], failing the test with the server's log on timeout.
    pub fn wait(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) -> Duration {
        wait_until(what, timeout, cond).unwrap_or_else(|e| self.fail(e))
    }

    /// Fails the test on `e`, with the server's log.
    pub fn fail(&self, e: Timeout) -> ! {
        panic!("{e}; server log:\n{}", self.log_text())
    }

    /// Waits until every worker has said Ready (`workers_alive` equals `--workers`).
    pub fn wait_workers_ready(&self, timeout: Duration) {
        let want = self.worker_count() as u64;
        self.wait(&format!("{want} ready workers"), timeout, || {
            self.try_stats()
                .is_ok_and(|s| s.get("workers_alive") == want)
        });
    }

    /// Waits for a counter to reach `want` exactly.
    pub fn wait_stat(&self, name: &str, want: u64, timeout: Duration) {
        let mut last = None;
        let r = wait_until(&format!("{name} == {want}"), timeout, || {
            last = self.try_stats().ok().map(|s| s.get(name));
            last == Some(want)
        });
        if let Err(e) = r {
            panic!("{e} (last {last:?}); server log:\n{}", self.log_text());
        }
    }

    /// Kills worker `victim` with SIGKILL and waits until a different worker process runs
    /// and every worker is ready again; returns the new workers.
    pub fn replace_worker(&self, victim: u32, timeout: Duration) -> Vec<u32> {
        assert!(procs::kill(victim, Signal::SIGKILL), "no worker {victim}");
        let (now, _) = wait_some("a replacement worker", timeout, || {
            let now = self.workers();
            (now.len() == self.worker_count() && !now.contains(&victim)).then_some(now)
        })
        .unwrap_or_else(|e| self.fail(e));
        self.wait_workers_ready(timeout);
        now
    }

    pub fn signal(&self, sig: Signal) {
        assert!(procs::kill(self.pid(), sig), "cannot signal the server");
    }

    /// Sends `sig` to the server's whole process group (master and workers), as systemd's
    /// stop does to a unit's control group and a terminal's Ctrl-C to its foreground group.
    pub fn signal_group(&self, sig: Signal) {
        let pgid = self.group.expect("server never started") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pgid), sig)
            .unwrap_or_else(|e| panic!("kill(-{pgid}, {sig}): {e}"));
    }

    /// Waits for the master to exit and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, Timeout> {
        let child = self.child.as_mut().expect("server not running");
        let (st, _) = wait_some("the server to exit", timeout, || {
            child.try_wait().expect("waitpid")
        })?;
        self.child = None;
        Ok(st)
    }

    /// SIGKILL of the master, reaped; the state directory stays for [`Server::restart`].
    pub fn kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same address, state directory (so the same key and
    /// users) and flags.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// A logged-in client session (panics if the login fails).
    pub fn connect(&self) -> Client {
        crate::client::connect(&self.addr)
    }

    /// The agent-check address the server logged at start (`--agent-listen`), if it did.
    pub fn agent_addr(&self) -> Option<String> {
        self.log_text().lines().find_map(|l| {
            let rest = l.split("agent-check listening on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
    }

    /// The imgclient binary, configured for this server.
    pub fn imgclient(&self) -> ImgClient {
        ImgClient::new(&self.addr, &self.known_servers())
    }

    /// `imgclient bench ARGS --json FILE` against this server; the report must parse.
    pub fn bench(&self, args: &[&str]) -> BenchRun {
        self.imgclient().bench(args, self.dir.path())
    }

    /// The master's resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        procs::rss_kb(self.pid())
    }

    /// This server's environment marker (`IMGTEST_SERVER=…`).
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Every live process of this server, or of its last run once the master is gone: the
    /// master and its workers (by their process group).
    pub fn processes(&self) -> Vec<u32> {
        self.group.map_or_else(Vec::new, procs::pids_in_group)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_now();
        if std::thread::panicking() {
            eprintln!("server log ({}):\n{}", self.log.display(), self.log_text());
        }
    }
}

/// `imgserver user add USER` in `dir`, the password on stdin.
pub fn add_user(dir: &Path, user: &str, password: &str) {
    user_add(user, "--state-dir", dir, password)
}

/// `imgserver user add USER --users-file FILE` (a users file shared by several servers), the
/// password on stdin.
pub fn add_user_to_file(file: &Path, user: &str, password: &str) {
    user_add(user, "--users-file", file, password)
}

fn user_add(user: &str, flag: &str, path: &Path, password: &str) {
    let mut child = Command::new(imgserver_bin())
        .args(["user", "add", user, flag])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("imgserver user add");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "imgserver user add failed");
}
