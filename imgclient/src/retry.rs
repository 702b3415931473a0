//! The one retry policy of imgclient: which failures are worth another try, how long to wait
//! before it (exponential backoff with jitter, and never less than the server's retry-after:
//! BUSY's, or RATE_LIMITED's), how long one outage may last, and how often one job may be
//! tried. Connecting, the filter session and the load
//! tester all decide here; none of them keeps a policy of its own.
//!
//! Trust boundary: the server's numbers (wire codes, retry-after) decide only delays and
//! whether to try again, never more than the budgets here allow. Pure: time and randomness
//! are passed in, so every schedule is tested with explicit instants.

use std::time::{Duration, Instant};

use netproto_sys::{ffi, ErrorCode, NpError};

use crate::exit::ExitKind;

/// First delay between reconnect attempts (and between tries of one job).
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A job is tried at most this often (connection losses and retryable server errors), so an
/// input that takes the server down each time cannot loop forever.
pub const MAX_ATTEMPTS: u32 = 5;
/// Pause before re-sending a job the server refused with TOO_MANY_IN_FLIGHT (after the window
/// has been narrowed to what the server allows).
pub const IN_FLIGHT_PAUSE: Duration = BACKOFF_BASE;
/// BUSY waits get up to this fraction of the advised delay added at random, so that clients
/// refused together do not come back together.
const BUSY_JITTER: f64 = 0.1;

/// Whether a request refused with this wire code may succeed if sent again later. The wire
/// table (`ErrorCode::is_retryable`) is the only source; a code this build does not know is
/// not retried (PROTOCOL §11).
pub fn wire_retryable(code: u16) -> bool {
    ErrorCode::from_u16(code).is_some_and(ErrorCode::is_retryable)
}

/// Whether connecting (or sending) again after a pause may cure this library failure. Lost,
/// refused or timed-out connections and a busy or stopping server may; authentication,
/// pinning, local files and protocol violations fail the same way next time.
pub fn np_retryable(e: &NpError) -> bool {
    match e.status {
        ffi::NP_TIMEOUT
        | ffi::NP_PEER_SILENT
        | ffi::NP_EOF
        | ffi::NP_IO
        | ffi::NP_CLOSED
        | ffi::NP_BUSY
        | ffi::NP_SERVER_SHUTDOWN => true,
        ffi::NP_REMOTE_ERROR => e.remote_code().is_some_and(wire_retryable),
        _ => false,
    }
}

/// The server's own "not before" for a refusal: BUSY's retry-after, or the delay a
/// RATE_LIMITED ERROR carries (a connection refused for failed logins or for connecting too
/// fast, a PING or STATS refused for the request rate). `None` for any other failure.
pub fn server_hint(e: &NpError) -> Option<Duration> {
    e.retry_after_ms()
        .map(|ms| Duration::from_millis(ms as u64))
}

/// The delay a RATE_LIMITED ERROR event's text carries (for a refused request).
pub fn hint_in_error(code: u16, message: &str) -> Option<Duration> {
    (code == ErrorCode::RateLimited as u16)
        .then(|| netproto_sys::error::retry_after_in_text(message))
        .flatten()
        .map(|ms| Duration::from_millis(ms as u64))
}

/// Whether a failed first connect means "the server is up and said not now"
/// (TOO_MANY_CONNECTIONS, SHUTTING_DOWN, …), which is worth waiting out; anything else on the
/// first connect (nothing listening, a typo in the address) fails fast.
pub fn server_said_later(e: &NpError) -> bool {
    e.status == ffi::NP_REMOTE_ERROR && np_retryable(e)
}

/// Whether a failure to connect ends every connection of the run, not just this one:
/// authentication, key pinning and local files fail the same way on every connection.
pub fn ends_the_run(kind: ExitKind) -> bool {
    !matches!(kind, ExitKind::Connect | ExitKind::Busy)
}

/// Delay before attempt `attempt` (0-based): `base` doubling to `cap`, with "equal jitter"
/// (half fixed, half random from `jitter` in [0, 1)) so that many clients dropped at once by a
/// restart do not come back in lock-step, while the delay still grows.
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The retry state of one outage: attempts so far and when the outage began.
#[derive(Debug, Clone)]
pub struct Retry {
    budget: Duration,
    attempt: u32,
    since: Option<Instant>,
}

impl Retry {
    pub fn new(budget: Duration) -> Retry {
        Retry {
            budget,
            attempt: 0,
            since: None,
        }
    }

    /// The pause before the next attempt, or `None` when the outage has outlasted the budget.
    /// The last pause is cut short so that the final attempt happens at the deadline.
    /// Never sooner than the server's `hint` (see [`server_hint`]), though: trying earlier
    /// would only be refused again. When the hint reaches past the budget, the outage has
    /// outlasted it: `None`.
    pub fn next_delay_after(
        &mut self,
        now: Instant,
        jitter: f64,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= self.budget {
            return None;
        }
        let left = self.budget - elapsed;
        let d = backoff_delay(self.attempt, BACKOFF_BASE, BACKOFF_CAP, jitter).min(left);
        let d = match hint {
            Some(h) if h > left => return None,
            Some(h) => d.max(h),
            None => d,
        };
        self.attempt += 1;
        Some(d)
    }

    /// The connection works again: the next outage starts from scratch.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.since = None;
    }
}

/// One job's retry state across connections: how often it was tried, and since when the
/// server has been answering it BUSY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTries {
    /// Tries that failed and count against [`MAX_ATTEMPTS`] (BUSY and TOO_MANY_IN_FLIGHT do
    /// not: the job never ran).
    pub attempts: u32,
    busy_since: Option<Instant>,
}

/// What to do with a job the server or the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it again at this time.
    ResendAt(Instant),
    /// Give up: report the failure.
    GiveUp,
}

impl JobTries {
    /// The job's connection was lost before it was answered: re-send it on the next
    /// connection (at once), unless that was its last allowed attempt.
    pub fn after_loss(&mut self, now: Instant) -> Next {
        self.count(now, Duration::ZERO)
    }

    /// The server answered ERROR `code` for this job: retry after a growing pause (never
    /// shorter than the server's `hint`, see [`hint_in_error`]) if the code is retryable and
    /// attempts are left.
    pub fn after_error(
        &mut self,
        code: u16,
        hint: Option<Duration>,
        now: Instant,
        jitter: f64,
    ) -> Next {
        if !wire_retryable(code) {
            return Next::GiveUp;
        }
        let d = backoff_delay(self.attempts, BACKOFF_BASE, BACKOFF_CAP, jitter);
        self.count(now, hint.map_or(d, |h| d.max(h)))
    }

    fn count(&mut self, now: Instant, delay: Duration) -> Next {
        if self.attempts + 1 >= MAX_ATTEMPTS {
            return Next::GiveUp;
        }
        self.attempts += 1;
        Next::ResendAt(now + delay)
    }

    /// The server answered BUSY: re-send after `wait` (from [`busy_wait`]) unless the server
    /// has been busy for this job for `budget` already. Not an attempt: the job never ran.
    pub fn after_busy(&mut self, wait: Duration, budget: Duration, now: Instant) -> Next {
        let since = *self.busy_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= budget {
            return Next::GiveUp;
        }
        Next::ResendAt(now + wait)
    }
}

/// How long to hold back after BUSY: the server's retry-after plus up to a tenth of it at
/// random (`jitter` in [0, 1); 0 keeps exactly to the server's advice).
pub fn busy_wait(retry_after: Duration, jitter: f64) -> Duration {
    retry_after + retry_after.mul_f64(BUSY_JITTER * jitter.clamp(0.0, 1.0))
}

/// A small xorshift generator for jitter: no need for cryptographic quality, and seeding it
/// from the library's CSPRNG keeps processes started together from sharing a sequence.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        let mut b = [0u8; 8];
        let _ = netproto_sys::random(&mut b);
        Jitter(u64::from_le_bytes(b) | 1)
    }

    #[cfg(test)]
    pub fn from_seed(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netproto_sys::Remote;

    fn np(status: ffi::np_status) -> NpError {
        NpError::new(status, "x")
    }

    fn remote(code: u16) -> NpError {
        NpError {
            status: ffi::NP_REMOTE_ERROR,
            message: "x".into(),
            remote: Some(Remote {
                code,
                retry_after_ms: 0,
            }),
        }
    }

    #[test]
    fn wire_retryability_is_the_tables() {
        for c in ErrorCode::ALL {
            assert_eq!(wire_retryable(c as u16), c.is_retryable(), "{c:?}");
        }
        for code in [308, 400, 402, 403, 404, 405, 406, 407] {
            assert!(wire_retryable(code), "{code}");
        }
        for code in [100, 102, 200, 300, 304, 307, 500, 9999] {
            assert!(!wire_retryable(code), "{code}");
        }
    }

    #[test]
    fn library_failures_worth_retrying() {
        for s in [
            ffi::NP_TIMEOUT,
            ffi::NP_PEER_SILENT,
            ffi::NP_EOF,
            ffi::NP_IO,
            ffi::NP_CLOSED,
            ffi::NP_BUSY,
            ffi::NP_SERVER_SHUTDOWN,
        ] {
            assert!(np_retryable(&np(s)), "{s}");
            assert!(!server_said_later(&np(s)), "{s}");
        }
        for s in [
            ffi::NP_AUTH_FAILED,
            ffi::NP_SERVER_KEY_CHANGED,
            ffi::NP_KEY_FILE,
            ffi::NP_DECRYPT_FAILED,
            ffi::NP_MALFORMED,
        ] {
            assert!(!np_retryable(&np(s)), "{s}");
        }
        assert!(np_retryable(&remote(403)) && server_said_later(&remote(403)));
        assert!(np_retryable(&remote(406)) && server_said_later(&remote(406)));
        assert!(!np_retryable(&remote(200)) && !server_said_later(&remote(200)));
        // A remote error with no code reported is not retried.
        assert!(!np_retryable(&np(ffi::NP_REMOTE_ERROR)));
        assert!(ends_the_run(ExitKind::Auth) && ends_the_run(ExitKind::KeyChanged));
        assert!(!ends_the_run(ExitKind::Connect) && !ends_the_run(ExitKind::Busy));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let ms = |a, j| backoff_delay(a, BACKOFF_BASE, BACKOFF_CAP, j).as_millis();
        assert_eq!(ms(0, 0.0), 50);
        assert_eq!(ms(0, 1.0), 100);
        assert_eq!(ms(1, 1.0), 200);
        assert_eq!(ms(3, 1.0), 800);
        assert_eq!(ms(6, 1.0), 5000);
        assert_eq!(ms(60, 1.0), 5000);
        assert_eq!(ms(60, 0.0), 2500);
        for a in 0..40 {
            for j in [0.0, 0.3, 0.999] {
                let d = backoff_delay(a, BACKOFF_BASE, BACKOFF_CAP, j);
                assert!(d <= BACKOFF_CAP && d >= BACKOFF_BASE / 2);
            }
        }
    }

    #[test]
    fn retry_budget_bounds_the_outage() {
        let t0 = Instant::now();
        let mut r = Retry::new(Duration::from_secs(10));
        let mut now = t0;
        let mut delays = Vec::new();
        while let Some(d) = r.next_delay_after(now, 1.0, None) {
            delays.push(d.as_millis());
            now += d;
        }
        // 100, 200, ..., 3200, then the cap, then the remainder up to exactly 10 s.
        assert_eq!(&delays[..6], &[100, 200, 400, 800, 1600, 3200]);
        assert_eq!(delays.iter().sum::<u128>(), 10_000);
        assert_eq!(now - t0, Duration::from_secs(10));
        assert_eq!(r.next_delay_after(now, 1.0, None), None);
        r.reset();
        assert_eq!(
            r.next_delay_after(now, 1.0, None),
            Some(Duration::from_millis(100))
        );
        // A zero budget allows no retry at all.
        assert_eq!(
            Retry::new(Duration::ZERO).next_delay_after(t0, 0.5, None),
            None
        );
    }

    #[test]
    fn a_job_is_tried_at_most_max_attempts_times() {
        let t0 = Instant::now();
        let mut tries = JobTries::default();
        let mut sent = 1; // the first send
        while let Next::ResendAt(at) = tries.after_loss(t0) {
            assert_eq!(at, t0, "a lost job goes out again at once");
            sent += 1;
        }
        assert_eq!(sent, MAX_ATTEMPTS);
        // Losses and retryable errors share the count.
        let mut tries = JobTries::default();
        assert_eq!(tries.after_loss(t0), Next::ResendAt(t0));
        assert_eq!(
            tries.after_error(400, None, t0, 1.0),
            Next::ResendAt(t0 + Duration::from_millis(200))
        );
        assert_eq!(tries.attempts, 2);
        // A server's hint longer than the backoff is kept to.
        assert_eq!(
            tries.after_error(407, Some(Duration::from_secs(3)), t0, 1.0),
            Next::ResendAt(t0 + Duration::from_secs(3))
        );
        // A code that is not retryable gives up at once and counts nothing.
        let mut tries = JobTries::default();
        assert_eq!(tries.after_error(304, None, t0, 0.5), Next::GiveUp);
        assert_eq!(tries.attempts, 0);
    }

    #[test]
    fn a_rate_limited_refusal_is_retried_after_its_hint_within_the_budget() {
        let t0 = Instant::now();
        let refused = NpError {
            status: ffi::NP_REMOTE_ERROR,
            message: "server error RATE_LIMITED (407): retry-after-ms=1500; too fast".into(),
            remote: Some(Remote {
                code: 407,
                retry_after_ms: 1500,
            }),
        };
        assert!(np_retryable(&refused) && server_said_later(&refused));
        assert_eq!(server_hint(&refused), Some(Duration::from_millis(1500)));
        assert_eq!(server_hint(&remote(403)), None);
        let mut r = Retry::new(Duration::from_secs(10));
        // The first backoff would be 100 ms; the server said 1.5 s.
        assert_eq!(
            r.next_delay_after(t0, 1.0, server_hint(&refused)),
            Some(Duration::from_millis(1500))
        );
        // A hint shorter than the backoff changes nothing.
        assert_eq!(
            r.next_delay_after(t0, 1.0, Some(Duration::from_millis(10))),
            Some(Duration::from_millis(200))
        );
        // A hint past the budget: give up now rather than be refused again.
        let later = t0 + Duration::from_secs(9);
        assert_eq!(
            r.next_delay_after(later, 1.0, Some(Duration::from_secs(2))),
            None
        );
        assert_eq!(
            hint_in_error(
                407,
                "retry-after-ms=250; more than 1000 PING/STATS per second"
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(hint_in_error(403, "retry-after-ms=250; x"), None);
        assert_eq!(crate::exit::kind_of_wire(407), ExitKind::Busy);
    }

    #[test]
    fn busy_waits_the_advice_until_the_budget_is_spent() {
        let t0 = Instant::now();
        let budget = Duration::from_secs(2);
        let advice = Duration::from_millis(500);
        let mut tries = JobTries::default();
        let mut now = t0;
        let mut waits = 0;
        while let Next::ResendAt(at) = tries.after_busy(advice, budget, now) {
            assert_eq!(at - now, advice);
            now = at;
            waits += 1;
        }
        // At 0, 0.5, 1.0 and 1.5 s the budget is not spent; at 2 s it is.
        assert_eq!(waits, 4);
        assert_eq!(now - t0, budget);
        // BUSY is not an attempt: the job still has all its tries.
        assert_eq!(tries.attempts, 0);
        assert_eq!(busy_wait(advice, 0.0), advice);
        assert_eq!(busy_wait(advice, 1.0), Duration::from_millis(550));
        assert!(busy_wait(advice, 0.5) < Duration::from_millis(550));
    }

    #[test]
    fn jitter_is_uniform_enough() {
        let mut j = Jitter::from_seed(42);
        let xs: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(Jitter::new().unit() < 1.0);
    }
}
