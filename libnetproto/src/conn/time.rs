//! Time as the connection sees it: a caller-supplied monotonic timestamp, and the names of the
//! timers that can fire.
//!
//! Trust boundary: none crossed here; the point of this file is that the protocol core never
//! reads a clock. Every `now` comes from the caller (the event loop, the blocking client, a
//! test's fake clock), so the same inputs always give the same timer decisions.

use std::time::Duration;

/// Microseconds on the caller's monotonic clock. Only differences between two timestamps of
/// the same clock mean anything; the origin is the caller's choice (`io::monotonic_now` uses
/// one process-wide base, netproto-sys its own). Crosses the C ABI as a `uint64_t`.
///
/// cbindgen:ignore
// (That line keeps cbindgen from declaring this Rust-only type in the C header, where it
// appears as a plain `uint64_t now_us`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin of the caller's clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The timestamp `us` microseconds after the clock's origin.
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us)
    }

    /// Microseconds since the clock's origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time (a timer that far away never fires).
    pub fn saturating_add(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(us))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// `self - d`, saturating at the clock's origin.
    fn sub(self, d: Duration) -> Timestamp {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(us))
    }
}

/// Which timer fired in [`handle_timeout`](super::Conn::handle_timeout), so the caller can
/// log and count it. Giving back grown buffers after a quiet second is housekeeping and is
/// not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Server: handshake and login did not finish in time; `ERROR HANDSHAKE_TIMEOUT` is queued
    /// and the connection is closed (flush, then close the socket).
    Handshake,
    /// Server: a logged-in client with no request outstanding sent no frame for the idle
    /// timeout; `ERROR IDLE_TIMEOUT` is queued and the connection is closed.
    Idle,
    /// Server: after login, a frame's first byte arrived and the rest did not within the
    /// frame timeout; `ERROR SLOW_CLIENT` is queued and the connection closed (flush, then
    /// close the socket).
    SlowFrame,
    /// Server: output was pending and the peer took none of it for the slow-peer timeout. The
    /// pending output is dropped and the connection closed: close the socket now.
    SlowPeer,
    /// Client: no frame from the server for the heartbeat interval; a PING (request id 0,
    /// payload `heartbeat`) is queued. Its PONG arrives as an ordinary event.
    Heartbeat,
    /// Client: no frame from the server for the dead-peer timeout, despite the heartbeats. The
    /// pending output is dropped and the connection closed with
    /// [`Error::PeerSilent`](crate::Error::PeerSilent), which every later send answers too:
    /// close the socket now.
    DeadPeer,
}

impl TimerKind {
    /// The timer's name in log lines ("handshake", "slow-peer", ...).
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Handshake => "handshake",
            TimerKind::Idle => "idle",
            TimerKind::SlowFrame => "slow-frame",
            TimerKind::SlowPeer => "slow-peer",
            TimerKind::Heartbeat => "heartbeat",
            TimerKind::DeadPeer => "dead-peer",
        }
    }
}

/// The earliest of two optional deadlines.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `since + d` when the timer is configured (a zero duration counts as off).
pub(crate) fn deadline(since: Timestamp, d: Option<Duration>) -> Option<Timestamp> {
    d.filter(|d| !d.is_zero()).map(|d| since + d)
}

/// A token bucket on the caller's clock, in millionths of a token so that integer arithmetic
/// is exact enough at any rate from 1 to millions per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    micro_tokens: u64,
    at: Timestamp,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`.
    pub(crate) fn full(burst: u32, now: Timestamp) -> Self {
        TokenBucket {
            micro_tokens: burst as u64 * MICRO,
            at: now,
        }
    }

    /// Takes one token at `now`, refilling at `per_second` up to `burst` first; when none is
    /// left, how many milliseconds until one will be (at least 1).
    pub(crate) fn take(&mut self, per_second: u32, burst: u32, now: Timestamp) -> Result<(), u32> {
        let elapsed = now.saturating_duration_since(self.at).as_micros();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(per_second as u64))
            .min(burst as u64 * MICRO);
        self.at = self.at.max(now);
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            return Ok(());
        }
        let rate = (per_second as u64).max(1);
        let wait_us = (MICRO - self.micro_tokens).div_ceil(rate);
        Err(u32::try_from(wait_us.div_ceil(1000).max(1)).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate_and_says_how_long_to_wait() {
        let t0 = Timestamp::from_micros(5_000_000);
        let mut b = TokenBucket::full(3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(10, 3, t0), Ok(()));
        }
        // Empty: one token every 100 ms at 10 per second.
        assert_eq!(b.take(10, 3, t0), Err(100));
        assert_eq!(b.take(10, 3, t0 + Duration::from_millis(40)), Err(60));
        assert_eq!(b.take(10, 3, t0 + Duration::from_millis(100)), Ok(()));
        // A long quiet spell refills to the burst, no further.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(10, 3, later), Ok(()));
        }
        assert!(b.take(10, 3, later).is_err());
        // Time never runs backwards for the bucket.
        assert!(b.take(10, 3, t0).is_err());
        // A fast rate still asks for at least a millisecond.
        let mut fast = TokenBucket::full(1, t0);
        assert_eq!(fast.take(1_000_000, 1, t0), Ok(()));
        assert_eq!(fast.take(1_000_000, 1, t0), Err(1));
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_micros(u64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_micros(u64::MAX));
        assert_eq!(Timestamp::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_micros(1_500_000)
                .saturating_duration_since(Timestamp::from_micros(500_000)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn zero_or_absent_durations_disarm_a_timer() {
        let t = Timestamp::from_micros(10);
        assert_eq!(deadline(t, None), None);
        assert_eq!(deadline(t, Some(Duration::ZERO)), None);
        assert_eq!(
            deadline(t, Some(Duration::from_micros(5))),
            Some(Timestamp::from_micros(15))
        );
        assert_eq!(
            earliest(
                Some(Timestamp::from_micros(3)),
                Some(Timestamp::from_micros(2))
            ),
            Some(Timestamp::from_micros(2))
        );
        assert_eq!(earliest(None, Some(t)), Some(t));
    }
}
