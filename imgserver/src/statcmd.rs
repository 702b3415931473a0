//! `imgserver stats`: reads a running server's counters from its shared-memory page, found via
//! the pid file and handed over the master's stats socket (`statsock`), or through
//! /proc/PID/fd where that is open to us (root) — no network, no credentials: same-user
//! local access only.
//!
//! Trust boundary: the local user's own server; the page is only read. `--json` output is
//! written by serde_json, one object: `pid` first, then every counter in the page's order.

use std::os::fd::OwnedFd;
use std::path::Path;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::state;
use crate::stats::Stats;

/// The `--json` report: `{"pid":…,"started_unix":…,…}`, counters in snapshot order.
struct JsonReport<'a> {
    pid: u32,
    counters: &'a [(String, u64)],
}

impl Serialize for JsonReport<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.counters.len() + 1))?;
        m.serialize_entry("pid", &self.pid)?;
        for (name, value) in self.counters {
            m.serialize_entry(name, value)?;
        }
        m.end()
    }
}

fn to_json(pid: u32, counters: &[(String, u64)]) -> String {
    serde_json::to_string(&JsonReport { pid, counters })
        .expect("a map of strings to integers always serialises")
}

/// Why a running server's page could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No pid file, or no process answering for it: nothing runs with this state directory.
    #[error("no running server for {dir}: {why}")]
    Down { dir: String, why: String },
    /// Something answers but the page is not one this build can read.
    #[error("{0}")]
    Bad(String),
}

/// Finds the server running with state directory `dir` and maps its stats page: from the
/// master's stats socket, or (root) through /proc. Shared by `stats`, `health` and `metrics`.
pub fn open_page(dir: &Path) -> Result<(u32, Stats), OpenError> {
    let down = |why: String| OpenError::Down {
        dir: dir.display().to_string(),
        why,
    };
    let (pid, fd) = state::read_pid(dir).map_err(|e| down(e.to_string()))?;
    let path = format!("/proc/{pid}/fd/{fd}");
    let page = match crate::statsock::fetch(pid) {
        Ok(page) => page,
        // The master's socket is the way for its own user (its /proc is closed: it is
        // undumpable); root can still open the page through /proc.
        Err(sock_err) => std::fs::OpenOptions::new()
            // Read-write because the page is mapped shared; nothing here writes to it.
            .read(true)
            .write(true)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|e| {
                down(format!(
                    "{sock_err}; cannot open {path} either (is the server running as this user?): {e}"
                ))
            })?,
    };
    let stats =
        Stats::map(&page).map_err(|e| OpenError::Bad(format!("cannot map stats page: {e}")))?;
    if !stats.is_valid() {
        return Err(OpenError::Bad(format!(
            "the page of pid {pid} is not an imgserver stats page of this version"
        )));
    }
    Ok((pid, stats))
}

pub fn run(dir: &Path, json: bool) -> Result<(), String> {
    let (pid, stats) = open_page(dir).map_err(|e| e.to_string())?;
    let alive = stats
        .get()
        .global
        .workers_alive
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let snap = stats.snapshot(alive.max(1));
    let mut text = String::new();
    if json {
        text = to_json(pid, &snap) + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(text, "imgserver pid {pid}");
        let _ = writeln!(text, "{}", sandbox_line(&stats));
        for (k, v) in snap {
            let _ = writeln!(text, "{k:<28} {v}");
        }
    }
    write_out(&text)
}

/// The workers' confinement as the last worker to start reported it, in words.
fn sandbox_line(stats: &Stats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let g = &stats.get().global;
    let seccomp = match g.sandbox_seccomp.load(Relaxed) {
        0 => "OFF",
        _ => "on",
    };
    let landlock = match g.sandbox_landlock_abi.load(Relaxed) {
        0 => "OFF".to_string(),
        abi => format!("ABI {abi}"),
    };
    format!("worker sandbox: seccomp {seccomp}, Landlock {landlock}")
}

/// Writes the report to stdout; a reader that stopped early (`imgserver stats | head`) is not
/// an error.
pub fn write_out(text: &str) -> Result<(), String> {
    cliutil::output::print(text).map_err(|e| format!("cannot write to stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize)]
    struct Parsed {
        pid: u32,
        #[serde(flatten)]
        counters: BTreeMap<String, u64>,
    }

    #[test]
    fn the_json_report_parses_back_to_the_pid_and_every_counter() {
        let (stats, _fd) = Stats::create().unwrap();
        crate::stats::add(&stats.get().global.jobs_ok, 41);
        crate::stats::add(&stats.worker(1).unwrap().decode_us, u64::MAX);
        let snap = stats.snapshot(2);
        let text = to_json(4242, &snap);
        let parsed: Parsed = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.pid, 4242);
        assert_eq!(parsed.counters.get("jobs_ok"), Some(&41));
        assert_eq!(parsed.counters.get("worker1_decode_us"), Some(&u64::MAX));
        assert_eq!(parsed.counters.len(), snap.len());
        for (k, v) in &snap {
            assert_eq!(parsed.counters.get(k), Some(v), "{k}");
        }
        // One line, pid first, then the counters in the page's order.
        assert!(!text.contains('\n'));
        assert!(text.starts_with("{\"pid\":4242,\"started_unix\":"));
    }
}
