//! End-to-end: the Prometheus metrics of a real server after real jobs, from `imgserver
//! metrics` and from the `--metrics-file` the master rewrites, both checked by `promtool
//! check metrics` (Debian's prometheus package; scripts/install-deps.sh installs it) and by
//! their numbers: the job counters and every phase's histogram count the jobs done.
//!
//! Trust boundary: the operator's view (the local command, the file a collector reads).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const JOBS: u64 = 3;

/// Runs `promtool check metrics` on `text`; its complaints, if any.
fn promtool(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// The value of the sample `series` (name and labels exactly as printed).
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// What every exposition of this server must show after the jobs.
fn check(text: &str) {
    promtool(text).unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    assert_eq!(
        value_of(text, "imgserver_jobs_total{result=\"ok\"}"),
        Some(JOBS as f64)
    );
    assert_eq!(value_of(text, "imgserver_workers_ready"), Some(1.0));
    assert_eq!(
        value_of(text, "imgserver_logins_total{result=\"ok\"}"),
        Some(1.0)
    );
    for phase in ["queue", "decode", "filter", "encode", "total"] {
        let h = "imgserver_job_phase_seconds";
        let count = value_of(text, &format!("{h}_count{{phase=\"{phase}\"}}"));
        assert_eq!(count, Some(JOBS as f64), "{phase}");
        let inf = value_of(
            text,
            &format!("{h}_bucket{{phase=\"{phase}\",le=\"+Inf\"}}"),
        );
        assert_eq!(inf, Some(JOBS as f64), "{phase}");
    }
    // A job through a real decoder takes some time, so the total's sum is not zero.
    let sum = value_of(text, "imgserver_job_phase_seconds_sum{phase=\"total\"}").unwrap();
    assert!(sum > 0.0, "{sum}");
}

#[test]
fn metrics_and_the_metrics_file_pass_promtool_and_count_the_jobs() {
    let scratch = TempDir::new("metrics-file");
    let file = scratch.join("imgserver.prom");
    let srv = Server::start(
        "metrics",
        &[
            "--workers",
            "1",
            "--metrics-file",
            file.to_str().unwrap(),
            "--metrics-interval",
            "200ms",
        ],
    );
    // Written from the start, before any job, and already valid.
    srv.wait("metrics file written", WAIT, || file.exists());
    let first = std::fs::read_to_string(&file).unwrap();
    promtool(&first).unwrap_or_else(|e| panic!("{e}\n{first}"));

    let input = sample("cat.png");
    let mut c = srv.connect();
    for id in 1..=JOBS {
        assert!(run_job(&mut c, id, "blur:1", &input).is_ok());
    }

    let out = Command::new(imgserver_bin())
        .args(["metrics", "--state-dir"])
        .arg(srv.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&String::from_utf8_lossy(&out.stdout));

    // The file is rewritten: wait until it shows the jobs, then hold it to the same checks.
    srv.wait("metrics file shows the jobs", WAIT, || {
        std::fs::read_to_string(&file).is_ok_and(|t| {
            value_of(&t, "imgserver_job_phase_seconds_count{phase=\"total\"}") == Some(JOBS as f64)
        })
    });
    check(&std::fs::read_to_string(&file).unwrap());
    // Replaced by rename: between two writes nothing but the file is there (its temp file
    // lives only for the moment of a write).
    srv.wait("only the metrics file in its directory", WAIT, || {
        let names: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names == [std::ffi::OsString::from("imgserver.prom")]
    });
}
