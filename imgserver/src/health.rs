//! `imgserver health`: one line and an exit code for systemd and container probes, from the
//! running server's stats page — the master's heartbeat and its ready workers. No network,
//! no password: found the way `imgserver stats` finds the page (pid file, stats socket).
//!
//! Trust boundary: the local user's own server, read only. The verdict is a pure function of
//! what the page says (`judge`), so every case is unit-tested without a server.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::statcmd::{self, OpenError};

/// The default for `--max-age`: the master beats every 100 ms while its loop turns, so 5 s
/// without a beat is a wedged loop, not a busy one.
pub const DEFAULT_MAX_AGE: &str = "5s";

/// What the page says about the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub ready: u64,
    pub configured: u64,
    pub draining: bool,
    /// Age of the last heartbeat (`None`: the loop has not beaten yet).
    pub heartbeat_age: Option<Duration>,
}

/// The verdict: healthy or not, and the line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    pub line: String,
}

/// Healthy when the heartbeat is at most `max_age` old, the server is not draining, and at
/// least one worker is ready.
pub fn judge(r: &Reading, max_age: Duration) -> Verdict {
    let workers = format!("{} of {} workers ready", r.ready, r.configured);
    let not_ready = |why: String| Verdict {
        healthy: false,
        line: format!("not ready: {why}"),
    };
    let Some(age) = r.heartbeat_age else {
        return not_ready(format!("{workers}, no heartbeat yet (starting)"));
    };
    if age > max_age {
        return not_ready(format!(
            "{workers}, heartbeat {:.1} s ago (more than {}): the event loop is stuck",
            age.as_secs_f64(),
            humantime::format_duration(max_age)
        ));
    }
    if r.draining {
        return not_ready(format!("{workers}, draining (shutting down)"));
    }
    if r.ready == 0 {
        return not_ready(workers);
    }
    Verdict {
        healthy: true,
        line: format!("ok: {workers}, heartbeat {:.1} s ago", age.as_secs_f64()),
    }
}

/// The verdict on the server of state directory `dir` now.
fn check(dir: &Path, max_age: Duration) -> Verdict {
    match statcmd::open_page(dir) {
        Ok((_pid, stats)) => {
            let g = &stats.get().global;
            judge(
                &Reading {
                    ready: g.workers_ready.load(Relaxed),
                    configured: g.workers_configured.load(Relaxed),
                    draining: g.draining.load(Relaxed) != 0,
                    heartbeat_age: stats.heartbeat_age(),
                },
                max_age,
            )
        }
        Err(OpenError::Down { dir, why }) => {
            log::debug!("health: {why}");
            Verdict {
                healthy: false,
                line: format!("down: no server for state dir {dir}"),
            }
        }
        Err(OpenError::Bad(why)) => Verdict {
            healthy: false,
            line: format!("down: {why}"),
        },
    }
}

/// Checks the server of state directory `dir`, waiting up to `wait` (checking every 100 ms)
/// for it to become healthy; prints one line, returns the exit code (0 healthy, 1 not, down
/// included).
pub fn run(dir: &Path, max_age: Duration, wait: Duration) -> i32 {
    let deadline = std::time::Instant::now() + wait;
    let verdict = loop {
        let v = check(dir, max_age);
        if v.healthy || std::time::Instant::now() >= deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A probe that cannot write its line still reports by its exit code.
    let _ = statcmd::write_out(&(verdict.line + "\n"));
    if verdict.healthy {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ready: u64, draining: bool, age_ms: Option<u64>) -> Reading {
        Reading {
            ready,
            configured: 2,
            draining,
            heartbeat_age: age_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn healthy_needs_a_fresh_heartbeat_a_ready_worker_and_no_drain() {
        let max = Duration::from_secs(5);
        let v = judge(&reading(2, false, Some(300)), max);
        assert!(v.healthy);
        assert_eq!(v.line, "ok: 2 of 2 workers ready, heartbeat 0.3 s ago");
        let v = judge(&reading(0, false, Some(100)), max);
        assert!(!v.healthy);
        assert_eq!(v.line, "not ready: 0 of 2 workers ready");
        let v = judge(&reading(2, false, Some(12_000)), max);
        assert!(!v.healthy);
        assert_eq!(
            v.line,
            "not ready: 2 of 2 workers ready, heartbeat 12.0 s ago (more than 5s): the event loop is stuck"
        );
        let v = judge(&reading(2, true, Some(10)), max);
        assert!(!v.healthy && v.line.contains("draining"), "{}", v.line);
        let v = judge(&reading(2, false, None), max);
        assert!(!v.healthy && v.line.contains("no heartbeat"), "{}", v.line);
        // The bound is inclusive.
        assert!(judge(&reading(1, false, Some(5_000)), max).healthy);
    }
}
