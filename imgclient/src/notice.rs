//! Notices about waits the user would otherwise sit through in silence: a lost connection
//! being re-established, a server asking to come back later, a server shutting down. Shown
//! without `-v` (as warnings), but at most one per period for the whole run, however many
//! connections hit the same outage: 150 connections losing their server are one line, not 150.
//!
//! Trust boundary: none; the texts come from the caller (server texts already escaped by the
//! logger).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two notices.
pub const PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct State {
    /// When the next notice may be shown; `None`: none shown yet.
    next: Option<Instant>,
    /// Notices not shown since the last one.
    suppressed: u64,
}

/// Shared by every connection of a run.
#[derive(Debug, Default)]
pub struct Notices {
    state: Mutex<State>,
}

impl Notices {
    /// Whether a notice at `now` is shown; if so, how many were held back before it.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.next.is_some_and(|next| now < next) {
            s.suppressed += 1;
            return None;
        }
        s.next = Some(now + PERIOD);
        Some(std::mem::take(&mut s.suppressed))
    }

    /// Shows `text` as a warning if [`Notices::admit`] lets it through.
    pub fn show(&self, now: Instant, text: impl FnOnce() -> String) {
        if let Some(held) = self.admit(now) {
            let text = text();
            if held == 0 {
                log::warn!("{text}");
            } else {
                log::warn!("{text} ({held} similar notices held back)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_period_and_the_next_one_counts_the_rest() {
        let n = Notices::default();
        let t0 = Instant::now();
        assert_eq!(n.admit(t0), Some(0));
        for i in 1..150 {
            assert_eq!(n.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(n.admit(t0 + PERIOD - Duration::from_millis(1)), None);
        assert_eq!(n.admit(t0 + PERIOD), Some(150));
        assert_eq!(n.admit(t0 + PERIOD + Duration::from_millis(1)), None);
        assert_eq!(n.admit(t0 + 3 * PERIOD), Some(1));
        assert_eq!(n.admit(t0 + 5 * PERIOD), Some(0));
    }
}
