//! Waiting for a condition with a deadline instead of sleeping for a guessed time.
//!
//! Trust boundary: none; test code. A timeout is an error value naming what was awaited, so
//! the failing test says what did not happen rather than panicking somewhere later.

use std::time::{Duration, Instant};

/// A condition that did not hold before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct Timeout {
    /// What the caller was waiting for.
    pub what: String,
    /// How long it waited.
    pub waited: Duration,
}

/// Between two checks: short, so a condition is noticed within a few milliseconds, and
/// growing, so a long wait does not spin.
fn next_pause(p: Duration) -> Duration {
    (p * 2).min(Duration::from_millis(20))
}

/// Polls `cond` until it returns true or `timeout` has passed; returns how long it took.
/// `cond` is always called at least once, and once more at the deadline.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, Timeout> {
    wait_some(what, timeout, || cond().then_some(())).map(|((), took)| took)
}

/// Polls `probe` until it returns a value or `timeout` has passed; returns the value and how
/// long it took.
pub fn wait_some<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), Timeout> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = probe() {
            return Ok((v, start.elapsed()));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Timeout {
                what: what.to_string(),
                waited: now - start,
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = next_pause(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut calls = 0;
        let (v, _) = wait_some("the third call", Duration::from_secs(60), || {
            calls += 1;
            (calls == 3).then_some(calls)
        })
        .unwrap();
        assert_eq!((v, calls), (3, 3));
    }

    #[test]
    fn a_timeout_names_what_was_awaited() {
        let mut calls = 0;
        let e = wait_until("the moon to turn blue", Duration::ZERO, || {
            calls += 1;
            false
        })
        .unwrap_err();
        assert_eq!(calls, 1, "checked once even with no time to wait");
        assert_eq!(e.what, "the moon to turn blue");
        assert!(
            e.to_string().contains("waiting for the moon to turn blue"),
            "{e}"
        );
    }

    #[test]
    fn pauses_grow_and_are_bounded() {
        let mut p = Duration::from_millis(1);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(p.as_millis());
            p = next_pause(p);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 20, 20, 20]);
    }
}
