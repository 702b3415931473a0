//! The admission policy of the master's connections: whether a new connection from an address
//! may start a handshake now, and what failed logins cost the address that made them. Pure:
//! no sockets and no clock (`now` is an argument), so every rule runs in unit tests with a
//! hand-moved clock; `conns` asks it at accept, at login and when a connection closes.
//!
//! What it keeps, per source (an IPv4 address, or an IPv6 /64, which one host usually owns):
//! the connections that have not logged in yet, a token bucket of new connections, and the
//! failed logins with the block they earned; per user name, the failed logins. A source is
//! refused, in this order, while it is blocked for failed logins (RATE_LIMITED with the time
//! left), while the server or the source has its maximum of connections that have not logged
//! in (TOO_MANY_CONNECTIONS), or while its bucket is empty (RATE_LIMITED with the time until
//! the next token). All of it before the connection costs a key exchange.
//!
//! Trust boundary: the peer chooses its address (within what it can route) and the user
//! names it tries. Both tables are bounded (the least recently used entry is evicted when a
//! new one would not fit) and entries with nothing left to remember are dropped by `sweep`,
//! so the tables themselves cannot be made a memory attack.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The policy's numbers (from the command line). A zero count or rate turns its rule off.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Connections that have not logged in, server-wide.
    pub max_unauth: usize,
    /// Connections that have not logged in, per source.
    pub max_unauth_per_addr: u32,
    /// New connections per second per source, sustained.
    pub conn_rate_per_addr: u32,
    /// New connections per source at once, after a quiet spell.
    pub conn_burst_per_addr: u32,
    /// Failed logins from one source (within `login_fail_window`) before it is blocked.
    pub login_fail_limit: u32,
    /// Failed logins for one user name (from anywhere, within the window) after which every
    /// source failing a login for that name is blocked at once.
    pub login_fail_limit_user: u32,
    /// The first block; each further block of the same source doubles it.
    pub login_block: Duration,
    /// The longest block.
    pub login_block_max: Duration,
    /// Failures (and the doubling) are forgotten after this long without a failure.
    pub login_fail_window: Duration,
    /// Most sources, and most user names, remembered at once.
    pub max_tracked: usize,
}

/// Who a connection comes from, as far as admission is concerned: an IPv4 address, or the
/// /64 prefix of an IPv6 address (IPv4-mapped IPv6 counts as the IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a new connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source failed too many logins; blocked for `retry_after` more.
    LoginBlocked { retry_after: Duration },
    /// The source opens connections faster than its rate; the next is allowed after
    /// `retry_after`.
    Rate { retry_after: Duration },
    /// The source has its maximum of connections that have not logged in.
    SourceUnauth { limit: u32 },
    /// The server has its maximum of connections that have not logged in.
    Unauth { limit: usize },
}

impl Refusal {
    /// The delay the peer is told (RATE_LIMITED), `None` for the count limits.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Refusal::LoginBlocked { retry_after } | Refusal::Rate { retry_after } => {
                Some(retry_after)
            }
            Refusal::SourceUnauth { .. } | Refusal::Unauth { .. } => None,
        }
    }
}

/// What a failed login did to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; nothing more yet.
    Counted { failures: u32 },
    /// The source is blocked from now for `block` (each block in the window doubles the
    /// next, up to the maximum).
    Blocked { block: Duration, failures: u32 },
}

/// A token bucket on the caller's clock (also the log limiter's, `log_limit.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate as f64).min(burst as f64);
        self.at = self.at.max(now);
    }

    /// Takes a token, or says how long until one is there.
    pub(super) fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - self.tokens) / rate.max(1) as f64;
        Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
    }

    pub(super) fn is_full(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, burst, now);
        b.tokens >= burst as f64
    }
}

/// What is remembered about one source.
#[derive(Debug, Clone, Copy)]
struct SourceState {
    /// Its connections that have not logged in.
    unauth: u32,
    bucket: Bucket,
    /// Failed logins in the window.
    failures: u32,
    last_failure: Option<Instant>,
    /// Blocks earned in the window (the next one lasts `login_block * 2^strikes`).
    strikes: u32,
    blocked_until: Option<Instant>,
}

/// Failed logins for one user name.
#[derive(Debug, Clone, Copy)]
struct NameState {
    failures: u32,
    last_failure: Instant,
}

/// A map of at most `cap` entries that evicts the least recently used one to make room (also
/// the log limiter's table of peers, `log_limit.rs`).
#[derive(Debug)]
pub(super) struct Lru<K, V> {
    map: HashMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
    next: u64,
    cap: usize,
    evicted: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            cap: cap.max(1),
            evicted: 0,
        }
    }

    fn touch(&mut self, k: &K) {
        if let Some((seq, _)) = self.map.get_mut(k) {
            self.order.remove(seq);
            *seq = self.next;
            self.order.insert(self.next, k.clone());
            self.next += 1;
        }
    }

    /// The entry for `k` (used now), if there is one.
    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.touch(k);
        self.map.get_mut(k).map(|(_, v)| v)
    }

    /// The entry for `k` (used now), made by `make` if there is none; the least recently
    /// used entry makes room when the map is full.
    pub(super) fn get_or_insert(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V {
        if self.map.contains_key(k) {
            self.touch(k);
        } else {
            while self.map.len() >= self.cap {
                let Some((_, old)) = self.order.pop_first() else {
                    break;
                };
                self.map.remove(&old);
                self.evicted += 1;
            }
            self.map.insert(k.clone(), (self.next, make()));
            self.order.insert(self.next, k.clone());
            self.next += 1;
        }
        &mut self
            .map
            .get_mut(k)
            .expect("present: found or just inserted")
            .1
    }

    fn peek(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(_, v)| v)
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.retain_mut(|_, v| keep(v));
    }

    /// Keeps the entries `keep` says to (it may change them on the way), without touching
    /// their order of use.
    pub(super) fn retain_mut(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let order = &mut self.order;
        self.map.retain(|key, (seq, v)| {
            let k = keep(key, v);
            if !k {
                order.remove(seq);
            }
            k
        });
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The admission state of the whole server.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    sources: Lru<Source, SourceState>,
    names: Lru<String, NameState>,
    /// Connections that have not logged in, server-wide (kept apart from the table, whose
    /// entries may be evicted).
    unauth: usize,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            sources: Lru::new(limits.max_tracked),
            names: Lru::new(limits.max_tracked),
            unauth: 0,
        }
    }

    /// Connections that have not logged in, server-wide.
    #[cfg(test)]
    pub fn unauth(&self) -> usize {
        self.unauth
    }

    /// Sources and user names remembered now, and how many entries were evicted so far.
    pub fn tracked(&self) -> (usize, usize, u64) {
        (
            self.sources.len(),
            self.names.len(),
            self.sources.evicted + self.names.evicted,
        )
    }

    /// A new connection from `src` at `now`: admitted (and counted as not logged in until
    /// [`settled`](Self::settled)) or refused.
    pub fn admit(&mut self, src: Source, now: Instant) -> Result<(), Refusal> {
        let l = self.limits;
        if let Some(until) = self.sources.peek(&src).and_then(|s| s.blocked_until) {
            if until > now {
                return Err(Refusal::LoginBlocked {
                    retry_after: until - now,
                });
            }
        }
        if l.max_unauth > 0 && self.unauth >= l.max_unauth {
            return Err(Refusal::Unauth {
                limit: l.max_unauth,
            });
        }
        let s = self.sources.get_or_insert(&src, || SourceState {
            unauth: 0,
            bucket: Bucket::full(l.conn_burst_per_addr, now),
            failures: 0,
            last_failure: None,
            strikes: 0,
            blocked_until: None,
        });
        if l.max_unauth_per_addr > 0 && s.unauth >= l.max_unauth_per_addr {
            return Err(Refusal::SourceUnauth {
                limit: l.max_unauth_per_addr,
            });
        }
        if l.conn_rate_per_addr > 0 && l.conn_burst_per_addr > 0 {
            s.bucket
                .take(l.conn_rate_per_addr, l.conn_burst_per_addr, now)
                .map_err(|retry_after| Refusal::Rate { retry_after })?;
        }
        s.unauth += 1;
        self.unauth += 1;
        Ok(())
    }

    /// A connection admitted from `src` logged in or closed: it no longer counts as not
    /// logged in. Call once per admitted connection.
    pub fn settled(&mut self, src: Source) {
        self.unauth = self.unauth.saturating_sub(1);
        if let Some(s) = self.sources.get_mut(&src) {
            s.unauth = s.unauth.saturating_sub(1);
        }
    }

    /// A login from `src` for `name` failed at `now`. A success clears nothing: an attacker
    /// holding one account must not be able to wash away its guesses at another.
    pub fn login_failed(&mut self, src: Source, name: &str, now: Instant) -> Verdict {
        let l = self.limits;
        let window = l.login_fail_window;
        let forgotten =
            |last: Option<Instant>| last.is_none_or(|t| now.saturating_duration_since(t) >= window);
        let name_failures = {
            let n = self.names.get_or_insert(&name.to_string(), || NameState {
                failures: 0,
                last_failure: now,
            });
            if forgotten(Some(n.last_failure)) {
                n.failures = 0;
            }
            n.failures += 1;
            n.last_failure = now;
            n.failures
        };
        let s = self.sources.get_or_insert(&src, || SourceState {
            unauth: 0,
            bucket: Bucket::full(l.conn_burst_per_addr, now),
            failures: 0,
            last_failure: None,
            strikes: 0,
            blocked_until: None,
        });
        if forgotten(s.last_failure) {
            s.failures = 0;
            s.strikes = 0;
        }
        s.failures += 1;
        s.last_failure = Some(now);
        let over_source = l.login_fail_limit > 0 && s.failures >= l.login_fail_limit;
        let over_name = l.login_fail_limit_user > 0 && name_failures >= l.login_fail_limit_user;
        if !(over_source || over_name) {
            return Verdict::Counted {
                failures: s.failures,
            };
        }
        let block = l
            .login_block
            .saturating_mul(1u32 << s.strikes.min(30))
            .min(l.login_block_max);
        s.strikes = s.strikes.saturating_add(1);
        let until = now + block;
        s.blocked_until = Some(s.blocked_until.map_or(until, |u| u.max(until)));
        Verdict::Blocked {
            block,
            failures: s.failures,
        }
    }

    /// Whether `src` is blocked for failed logins at `now`.
    #[cfg(test)]
    pub fn is_blocked(&self, src: Source, now: Instant) -> bool {
        self.sources
            .peek(&src)
            .and_then(|s| s.blocked_until)
            .is_some_and(|u| u > now)
    }

    /// Forgets what no rule needs any more: sources with no connection waiting to log in, a
    /// full bucket, no block and no failure in the window; names with no failure in it.
    pub fn sweep(&mut self, now: Instant) {
        let l = self.limits;
        let recent = |t: Instant| now.saturating_duration_since(t) < l.login_fail_window;
        self.sources.retain(|s| {
            s.unauth > 0
                || s.blocked_until.is_some_and(|u| u > now)
                || s.last_failure.is_some_and(recent)
                || (l.conn_rate_per_addr > 0
                    && !s
                        .bucket
                        .is_full(l.conn_rate_per_addr, l.conn_burst_per_addr, now))
        });
        self.names.retain(|n| recent(n.last_failure));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_unauth: 100,
            max_unauth_per_addr: 3,
            conn_rate_per_addr: 10,
            conn_burst_per_addr: 5,
            login_fail_limit: 3,
            login_fail_limit_user: 10,
            login_block: Duration::from_secs(1),
            login_block_max: Duration::from_secs(8),
            login_fail_window: Duration::from_secs(600),
            max_tracked: 1000,
        }
    }

    fn src(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn connections_waiting_to_log_in_are_capped_per_source_and_server_wide() {
        let t = Instant::now();
        let mut a = Admission::new(AdmissionLimits {
            max_unauth: 5,
            ..limits()
        });
        let (x, y, z) = (src("127.0.0.2"), src("127.0.0.3"), src("127.0.0.4"));
        for _ in 0..3 {
            assert_eq!(a.admit(x, t), Ok(()));
        }
        assert_eq!(a.admit(x, t), Err(Refusal::SourceUnauth { limit: 3 }));
        // Another source is unaffected by x's squatting...
        assert_eq!(a.admit(y, t), Ok(()));
        assert_eq!(a.admit(y, t), Ok(()));
        // ...until the server-wide cap.
        assert_eq!(a.admit(z, t), Err(Refusal::Unauth { limit: 5 }));
        assert_eq!(a.unauth(), 5);
        // A login (or a close) frees the place.
        a.settled(x);
        assert_eq!(a.unauth(), 4);
        assert_eq!(a.admit(z, t), Ok(()));
        assert_eq!(a.admit(x, t + ms(1000)), Err(Refusal::Unauth { limit: 5 }));
        a.settled(y);
        assert_eq!(a.admit(x, t + ms(1000)), Ok(()));
        assert!(Refusal::Unauth { limit: 5 }.retry_after().is_none());
    }

    #[test]
    fn new_connections_per_source_follow_a_token_bucket() {
        let t = Instant::now();
        let mut a = Admission::new(AdmissionLimits {
            max_unauth_per_addr: 0,
            ..limits()
        });
        let x = src("127.0.0.2");
        for _ in 0..5 {
            assert_eq!(a.admit(x, t), Ok(()));
        }
        // Empty: one every 100 ms at 10 per second, and the peer is told so.
        assert_eq!(
            a.admit(x, t),
            Err(Refusal::Rate {
                retry_after: ms(100)
            })
        );
        let r = a.admit(x, t + ms(40)).unwrap_err();
        let wait = r.retry_after().unwrap();
        assert!(wait > ms(59) && wait <= ms(60), "{wait:?}");
        assert_eq!(a.admit(x, t + ms(100)), Ok(()));
        assert!(a.admit(x, t + ms(100)).is_err());
        // Other sources have their own bucket.
        assert_eq!(a.admit(src("127.0.0.3"), t), Ok(()));
        // A rate of 0 turns the rule off.
        let mut off = Admission::new(AdmissionLimits {
            max_unauth: 0,
            max_unauth_per_addr: 0,
            conn_rate_per_addr: 0,
            ..limits()
        });
        for _ in 0..1000 {
            assert_eq!(off.admit(x, t), Ok(()));
        }
    }

    #[test]
    fn failed_logins_block_their_source_for_a_growing_window() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits());
        let (x, y) = (src("127.0.0.2"), src("127.0.0.3"));
        let mut t = t0;
        assert_eq!(
            a.login_failed(x, "tester", t),
            Verdict::Counted { failures: 1 }
        );
        assert_eq!(
            a.login_failed(x, "tester", t),
            Verdict::Counted { failures: 2 }
        );
        assert_eq!(
            a.login_failed(x, "tester", t),
            Verdict::Blocked {
                block: ms(1000),
                failures: 3
            }
        );
        // Refused at accept, before any key exchange, with the time left.
        assert_eq!(
            a.admit(x, t + ms(300)),
            Err(Refusal::LoginBlocked {
                retry_after: ms(700)
            })
        );
        // Another source, even for the same name, is not.
        assert_eq!(a.admit(y, t + ms(300)), Ok(()));
        assert!(!a.is_blocked(y, t));
        // Each further failure after a block doubles it, up to the maximum.
        let mut blocks = Vec::new();
        for _ in 0..6 {
            t += ms(10_000);
            assert_eq!(a.admit(x, t), Ok(()), "the block ended");
            a.settled(x);
            match a.login_failed(x, "tester", t) {
                Verdict::Blocked { block, .. } => blocks.push(block.as_secs()),
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(blocks, [2, 4, 8, 8, 8, 8]);
        // Failures are forgotten after a quiet window; then the count starts over.
        t += Duration::from_secs(600);
        assert_eq!(a.admit(x, t), Ok(()));
        assert_eq!(
            a.login_failed(x, "tester", t),
            Verdict::Counted { failures: 1 }
        );
    }

    #[test]
    fn many_sources_failing_one_name_are_blocked_at_their_first_failure_after_the_threshold() {
        let t = Instant::now();
        let mut a = Admission::new(limits());
        // Ten sources guess once each for "tester": the tenth failure reaches the name's
        // threshold, so that source is blocked at once, and so is every later one failing it.
        for i in 0..9 {
            let s = src(&format!("10.0.0.{i}"));
            assert_eq!(
                a.login_failed(s, "tester", t),
                Verdict::Counted { failures: 1 }
            );
        }
        let tenth = src("10.0.0.9");
        assert!(matches!(
            a.login_failed(tenth, "tester", t),
            Verdict::Blocked { .. }
        ));
        assert!(a.admit(tenth, t).is_err());
        assert!(matches!(
            a.login_failed(src("10.0.1.1"), "tester", t),
            Verdict::Blocked { .. }
        ));
        // A source that has not failed (the real user, elsewhere) still gets in; so does a
        // source failing another name.
        assert_eq!(a.admit(src("192.168.1.5"), t), Ok(()));
        assert_eq!(
            a.login_failed(src("10.0.2.1"), "alice", t),
            Verdict::Counted { failures: 1 }
        );
    }

    #[test]
    fn the_tables_are_bounded_and_forget_what_no_rule_needs() {
        let t = Instant::now();
        let mut a = Admission::new(AdmissionLimits {
            max_tracked: 4,
            ..limits()
        });
        for i in 0..10 {
            let s = src(&format!("10.0.0.{i}"));
            let _ = a.admit(s, t);
            a.login_failed(s, &format!("user{i}"), t);
        }
        let (sources, names, evicted) = a.tracked();
        assert_eq!((sources, names), (4, 4));
        assert_eq!(evicted, 12);
        // The server-wide count is kept apart from the table: settling an evicted source's
        // connection still frees its place.
        assert_eq!(a.unauth(), 10);
        a.settled(src("10.0.0.0"));
        assert_eq!(a.unauth(), 9);
        // The most recently used entries stayed.
        assert!(a.sources.peek(&src("10.0.0.9")).is_some());
        assert!(a.sources.peek(&src("10.0.0.0")).is_none());

        // Sweeping keeps what a rule still needs and drops the rest.
        let mut a = Admission::new(limits());
        let (waiting, failed, idle) = (src("10.0.0.1"), src("10.0.0.2"), src("10.0.0.3"));
        a.admit(waiting, t).unwrap();
        a.admit(failed, t).unwrap();
        a.settled(failed);
        a.login_failed(failed, "x", t);
        a.admit(idle, t).unwrap();
        a.settled(idle);
        // The idle source's bucket refills in a tenth of a second (one token at 10/s).
        a.sweep(t + ms(200));
        assert!(a.sources.peek(&waiting).is_some());
        assert!(a.sources.peek(&failed).is_some());
        assert!(a.sources.peek(&idle).is_none());
        a.settled(waiting);
        a.sweep(t + Duration::from_secs(601));
        assert_eq!(a.tracked().0, 0);
        assert_eq!(a.tracked().1, 0);
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:1234:5678:9abc"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("::ffff:127.0.0.2"), src("127.0.0.2"));
        assert_eq!(src("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(src("127.0.0.2").to_string(), "127.0.0.2");
    }
}
