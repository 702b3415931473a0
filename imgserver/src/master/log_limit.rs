//! How many log lines one peer (a client's source address, a worker) may cause: a token
//! bucket per peer, a burst of lines and then a steady few a second; what is over the budget
//! is counted and reported in one summary line per peer, at most every `summary_every` or
//! as soon as the peer's budget is full again. Pure: no clock (`now` is an argument) and no
//! logging (the caller writes what it is told), so every rule runs in unit tests with a
//! hand-moved clock.
//!
//! Trust boundary: the peer decides how often it makes the server log (10,000 refused
//! requests, a worker printing in a loop); this decides how many lines that costs the log.
//! The table of peers is admission's bounded LRU table: a flood from many addresses evicts
//! the least recently heard peer (its pending count is lost, not its budget's protection:
//! a peer coming back starts with a fresh burst, which the table's size bounds).

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::admission::{Bucket, Lru};

/// The budget's numbers.
#[derive(Debug, Clone, Copy)]
pub struct LogBudget {
    /// Lines a peer may cause at once, after a quiet spell.
    pub burst: u32,
    /// Lines per second, sustained.
    pub per_sec: u32,
    /// The longest a peer's suppressed lines wait for their summary.
    pub summary_every: Duration,
    /// Most peers remembered at once.
    pub max_peers: usize,
}

impl LogBudget {
    /// What the master uses for client addresses and workers (DESIGN.md, "Logging").
    pub const DEFAULT: LogBudget = LogBudget {
        burst: 10,
        per_sec: 1,
        summary_every: Duration::from_secs(5),
        max_peers: 4096,
    };
}

/// What is remembered about one peer.
#[derive(Debug, Clone, Copy)]
struct Peer {
    bucket: Bucket,
    /// Lines over the budget since the last summary, and when the first of them was.
    suppressed: u64,
    since: Instant,
}

/// One peer's lines left out: `suppressed` of them over the last `over`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<K> {
    pub peer: K,
    pub suppressed: u64,
    pub over: Duration,
}

/// The budgets of every peer heard from lately.
#[derive(Debug)]
pub struct LogLimiter<K> {
    budget: LogBudget,
    peers: Lru<K, Peer>,
}

impl<K: Hash + Eq + Clone> LogLimiter<K> {
    pub fn new(budget: LogBudget) -> LogLimiter<K> {
        // A rate of 0 would never refill, a burst of 0 never let a line through.
        let budget = LogBudget {
            burst: budget.burst.max(1),
            per_sec: budget.per_sec.max(1),
            ..budget
        };
        LogLimiter {
            budget,
            peers: Lru::new(budget.max_peers),
        }
    }

    /// Whether `peer` may have a line logged at `now`; if not, the line is counted for its
    /// summary.
    pub fn allow(&mut self, peer: &K, now: Instant) -> bool {
        let b = self.budget;
        let p = self.peers.get_or_insert(peer, || Peer {
            bucket: Bucket::full(b.burst, now),
            suppressed: 0,
            since: now,
        });
        if p.bucket.take(b.per_sec, b.burst, now).is_ok() {
            return true;
        }
        if p.suppressed == 0 {
            p.since = now;
        }
        p.suppressed += 1;
        false
    }

    /// The summaries due at `now`: every peer with lines left out whose budget is full again
    /// or whose first left-out line is `summary_every` old. Peers with nothing left to report
    /// and a full budget are forgotten. Call it periodically (the master's sweep).
    pub fn summaries(&mut self, now: Instant) -> Vec<Summary<K>> {
        let b = self.budget;
        let mut due = Vec::new();
        self.peers.retain_mut(|k, p| {
            let full = p.bucket.is_full(b.per_sec, b.burst, now);
            if p.suppressed > 0
                && (full || now.saturating_duration_since(p.since) >= b.summary_every)
            {
                due.push(Summary {
                    peer: k.clone(),
                    suppressed: std::mem::take(&mut p.suppressed),
                    over: now.saturating_duration_since(p.since),
                });
            }
            p.suppressed > 0 || !full
        });
        due
    }

    /// Every summary still pending at `now`, due or not (the peer is going away).
    pub fn drain(&mut self, now: Instant) -> Vec<Summary<K>> {
        let mut due = Vec::new();
        self.peers.retain_mut(|k, p| {
            if p.suppressed > 0 {
                due.push(Summary {
                    peer: k.clone(),
                    suppressed: std::mem::take(&mut p.suppressed),
                    over: now.saturating_duration_since(p.since),
                });
            }
            true
        });
        due
    }

    /// Peers remembered now.
    #[cfg(test)]
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> LogBudget {
        LogBudget {
            burst: 3,
            per_sec: 2,
            summary_every: Duration::from_secs(5),
            max_peers: 4,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_then_a_steady_rate_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(budget());
        let allowed = (0..10_000).filter(|_| l.allow(&"a", t0)).count();
        assert_eq!(allowed, 3);
        // Another peer has its own budget.
        assert!(l.allow(&"b", t0));
        // Half a second later, one more line (2 a second).
        assert!(l.allow(&"a", t0 + ms(500)));
        assert!(!l.allow(&"a", t0 + ms(600)));
        // 9,997 + 1 left out of "a"'s lines; nothing of "b"'s. Not due yet: the budget is
        // not full and the first left-out line is under 5 s old.
        assert!(l.summaries(t0 + ms(900)).is_empty());
        let s = l.summaries(t0 + ms(5000));
        assert_eq!(
            s,
            vec![Summary {
                peer: "a",
                suppressed: 9_998,
                over: ms(5000)
            }]
        );
        // Reported once.
        assert!(l.summaries(t0 + ms(5100)).is_empty());
        // Drained at once, due or not.
        let allowed = (0..10).filter(|_| l.allow(&"a", t0 + ms(5200))).count();
        assert_eq!(allowed, 3);
        let s = l.drain(t0 + ms(5300));
        assert_eq!((s.len(), s[0].suppressed), (1, 7));
        assert!(l.drain(t0 + ms(5300)).is_empty());
    }

    #[test]
    fn a_summary_comes_as_soon_as_the_budget_is_full_again() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(budget());
        for _ in 0..5 {
            l.allow(&1u32, t0);
        }
        // 3 tokens at 2 a second: full again 1.5 s later.
        assert!(l.summaries(t0 + ms(1400)).is_empty());
        let s = l.summaries(t0 + ms(1500));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suppressed, 2);
        // A quiet peer with a full budget is forgotten.
        assert!(l.summaries(t0 + ms(1600)).is_empty());
        assert_eq!(l.peers(), 0);
    }

    #[test]
    fn the_table_of_peers_is_bounded() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(budget());
        for p in 0..1000u32 {
            l.allow(&p, t0);
        }
        assert_eq!(l.peers(), 4);
        // The most recent ones are still held to their budget.
        for _ in 0..3 {
            l.allow(&999, t0);
        }
        assert!(!l.allow(&999, t0));
    }

    #[test]
    fn a_zero_budget_still_lets_a_line_through() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(LogBudget {
            burst: 0,
            per_sec: 0,
            ..budget()
        });
        assert!(l.allow(&"a", t0));
        assert!(!l.allow(&"a", t0));
        assert!(l.allow(&"a", t0 + ms(1000)));
    }
}
