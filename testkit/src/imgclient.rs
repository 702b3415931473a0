//! Running the real `imgclient` binary: a command with a clean environment pointing at one
//! server, and `bench` runs whose JSON report is parsed.
//!
//! Trust boundary: the user's side of imgclient (its CLI, environment and files).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::report::BenchReport;
use crate::server::sibling_bin;
use crate::{PASSWORD, USER};

/// The imgclient binary of this build.
pub fn imgclient_bin() -> PathBuf {
    sibling_bin("imgclient")
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// imgclient configured (through its environment) for one server address and one
/// known-servers file.
#[derive(Debug, Clone)]
pub struct ImgClient {
    pub addr: String,
    pub known: PathBuf,
}

impl ImgClient {
    pub fn new(addr: &str, known: &Path) -> ImgClient {
        ImgClient {
            addr: addr.into(),
            known: known.into(),
        }
    }

    /// `imgclient` with only PATH and its own variables set, stdin closed.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(imgclient_bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IMGSERVER_ADDR", &self.addr)
            .env("IMGCLIENT_USER", USER)
            .env("IMGCLIENT_PASSWORD", PASSWORD)
            .env("IMGCLIENT_KNOWN_SERVERS", &self.known)
            .stdin(Stdio::null());
        c
    }

    /// Runs `imgclient ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run imgclient")
    }

    /// `imgclient bench ARGS --json FILE` (FILE in `scratch`); whatever its exit status, the
    /// report must exist and parse.
    pub fn bench(&self, args: &[&str], scratch: &Path) -> BenchRun {
        self.bench_with(&[], args, scratch)
    }

    /// As [`ImgClient::bench`], with global flags (`--retry-for 1s`) before `bench`.
    pub fn bench_with(&self, global: &[&str], args: &[&str], scratch: &Path) -> BenchRun {
        let json = scratch.join(format!(
            "bench-{}-{}.json",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        let out = self
            .cmd()
            .args(global)
            .arg("bench")
            .args(args)
            .arg("--json")
            .arg(&json)
            .output()
            .expect("run imgclient bench");
        let run = BenchRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report: BenchReport {
                conns: 0,
                ops: Vec::new(),
                mode: String::new(),
                ok: 0,
                errors: 0,
                latency_ms: Default::default(),
                latency_by_op_ms: Default::default(),
                errors_by_type: Default::default(),
                raw: serde_json::Value::Null,
            },
        };
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
            panic!(
                "bench wrote no report ({e}); exit {:?}\n{}\n{}",
                run.code, run.stdout, run.stderr
            )
        });
        let _ = std::fs::remove_file(&json);
        let report = BenchReport::parse(&text)
            .unwrap_or_else(|e| panic!("bench report does not parse: {e}\n{text}"));
        BenchRun { report, ..run }
    }
}

/// One finished `imgclient bench`.
#[derive(Debug)]
pub struct BenchRun {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub report: BenchReport,
}

impl BenchRun {
    /// Fails the test unless the run exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "bench failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}
