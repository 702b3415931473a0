//! `imgserver stats`: reads a running server's counters from its shared-memory page, found via
//! the pid file and /proc/PID/fd (no network, no credentials: same-user local access only).

use std::path::Path;

use crate::state;
use crate::stats::Stats;

pub fn run(dir: &Path, json: bool) -> Result<(), String> {
    let (pid, fd) = state::read_pid(dir)
        .map_err(|e| format!("no running server for {}: {e}", dir.display()))?;
    let path = format!("/proc/{pid}/fd/{fd}");
    // Read-write because the page is mapped shared; nothing here writes to it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {path} (is the server running as this user?): {e}"))?;
    let stats = Stats::map(&file.into()).map_err(|e| format!("cannot map stats page: {e}"))?;
    if !stats.is_valid() {
        return Err(format!("{path} is not an imgserver stats page"));
    }
    let alive = stats
        .get()
        .global
        .workers_alive
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let snap = stats.snapshot(alive.max(1));
    if json {
        let body: Vec<String> = snap.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{\"pid\":{pid},{}}}", body.join(","));
    } else {
        println!("imgserver pid {pid}");
        for (k, v) in snap {
            println!("{k:<28} {v}");
        }
    }
    Ok(())
}
