//! Configuration shared by many connections: client credentials, server identity and users,
//! and each side's timer durations.
//!
//! Trust boundary: secrets (the password, the server's long-term key, the users' verifiers)
//! live here and are only ever read by the handshake and login code of their own side.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys::ServerKey;
use crate::login::{self, Verifier};
use crate::message::{self, Challenge, ServerParams};

/// Salt, iterations, and PBKDF2(password, salt, iterations).
type SaltedEntry = (Vec<u8>, u32, Zeroizing<[u8; 32]>);

/// Client credentials, shareable by many connections.
pub struct ClientConfig {
    pub(super) user: String,
    password: Zeroizing<Vec<u8>>,
    /// The last salt/iterations seen and the PBKDF2 output for them: a load test opening a
    /// thousand connections pays the deliberate PBKDF2 cost once, not a thousand times.
    salted_cache: Mutex<Option<SaltedEntry>>,
    pub(super) timers: ClientTimers,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Credentials for `user` (checked like a users-file name); the password is copied and
    /// wiped when the config is dropped. An empty password is refused.
    pub fn new(user: &str, password: &[u8]) -> Result<Self, Error> {
        message::check_user(user)?;
        if password.is_empty() {
            return Err(Error::InvalidArgument("empty password"));
        }
        Ok(ClientConfig {
            user: user.to_string(),
            password: Zeroizing::new(password.to_vec()),
            salted_cache: Mutex::new(None),
            timers: ClientTimers::default(),
        })
    }

    /// The user name this config logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Replaces the heartbeat and dead-peer durations (set before sharing the config).
    pub fn set_timers(&mut self, timers: ClientTimers) {
        self.timers = timers;
    }

    /// The heartbeat and dead-peer durations new connections get.
    pub fn timers(&self) -> ClientTimers {
        self.timers
    }

    pub(super) fn salted(&self, c: &Challenge) -> Zeroizing<[u8; 32]> {
        let mut cache = self.salted_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((salt, iters, salted)) = cache.as_ref() {
            if *salt == c.salt && *iters == c.iterations {
                return salted.clone();
            }
        }
        let salted = login::salted_password(&self.password, &c.salt, c.iterations);
        *cache = Some((c.salt.clone(), c.iterations, salted.clone()));
        salted
    }
}

/// Server identity, users and announced limits, shared by all connections.
pub struct ServerConfig {
    pub(super) key: ServerKey,
    pub(super) fake_secret: Zeroizing<[u8; 32]>,
    pub(super) users: HashMap<String, Verifier>,
    pub(super) params: ServerParams,
    pub(super) timeouts: ServerTimeouts,
    pub(super) request_rate: Option<RequestRate>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("key", &self.key)
            .field("users", &self.users.len())
            .finish()
    }
}

impl ServerConfig {
    /// A server with identity `key` announcing `params`, no users yet and the default
    /// timeouts.
    pub fn new(key: ServerKey, params: ServerParams) -> Self {
        // Fake salts must survive restarts (or a prober compares two answers), so they derive
        // from the long-term key rather than from a fresh random secret.
        let mut fake = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, key.secret_bytes().as_ref())
            .expand(b"netproto/1 fake salt", fake.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        ServerConfig {
            key,
            fake_secret: fake,
            users: HashMap::new(),
            params,
            timeouts: ServerTimeouts::default(),
            request_rate: None,
        }
    }

    /// Adds `user` (or replaces its verifier); refuses a malformed user name.
    pub fn add_user(&mut self, user: &str, verifier: Verifier) -> Result<(), Error> {
        message::check_user(user)?;
        self.users.insert(user.to_string(), verifier);
        Ok(())
    }

    /// The server's static public key, as clients see and pin it.
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.public()
    }

    /// Salt length and iterations of the real users' verifiers (the most common shape), so a
    /// fake challenge for an unknown user looks like a real one.
    pub(super) fn fake_shape(&self) -> (usize, u32) {
        let mut counts: HashMap<(usize, u32), usize> = HashMap::new();
        for v in self.users.values() {
            *counts.entry((v.salt.len(), v.iterations)).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(shape, n)| (*n, *shape))
            .map_or(
                (16, crate::limits::DEFAULT_PBKDF2_ITERATIONS),
                |(shape, _)| shape,
            )
    }

    /// The limits announced to clients in the handshake.
    pub fn params(&self) -> ServerParams {
        self.params
    }

    /// Replaces the timer durations (set before sharing the config).
    pub fn set_timeouts(&mut self, timeouts: ServerTimeouts) {
        self.timeouts = timeouts;
    }

    /// The handshake, idle and slow-peer durations new connections get.
    pub fn timeouts(&self) -> ServerTimeouts {
        self.timeouts
    }

    /// Limits the cheap requests (PING, STATS_REQUEST) each connection may make; `None` (the
    /// default) answers every one. Set before sharing the config.
    pub fn set_request_rate(&mut self, rate: Option<RequestRate>) {
        self.request_rate = rate.filter(|r| r.per_second > 0 && r.burst > 0);
    }

    /// The per-connection rate of cheap requests, if limited.
    pub fn request_rate(&self) -> Option<RequestRate> {
        self.request_rate
    }
}

/// How many cheap requests (PING, STATS_REQUEST) one logged-in connection may make: a token
/// bucket of `burst` requests refilled at `per_second`. One over the rate is answered with
/// ERROR RATE_LIMITED for its request id (a PING with id 0, the heartbeat's, gets no answer),
/// and the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests at once after a quiet spell.
    pub burst: u32,
}

/// How long a server connection may take for each phase; `None` or zero turns a timer off.
/// The defaults are the server's command-line defaults, but for `hello`, which is off unless
/// set (imgserver sets it from `--hello-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From the connection's creation to a completed login (10 s).
    pub handshake: Option<Duration>,
    /// From the connection's creation to a complete HELLO (off): a peer that opens a TCP
    /// connection and says nothing is cut sooner than by `handshake`. Fires as the handshake
    /// timer does (ERROR HANDSHAKE_TIMEOUT, closed).
    pub hello: Option<Duration>,
    /// While logged in with no request outstanding: from the last complete frame received, or
    /// from the moment the last outstanding request was answered (120 s; clients PING).
    pub idle: Option<Duration>,
    /// Output pending and none of it taken by the peer (30 s).
    pub slow_peer: Option<Duration>,
    /// While logged in: from the first byte of a frame to its last (10 s). Bytes trickling
    /// in keep no other timer alive either; this one ends a frame that never completes.
    pub frame: Option<Duration>,
    /// Grown buffers are given back after this long without bytes moving either way (1 s).
    pub shrink_after: Option<Duration>,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        ServerTimeouts {
            handshake: Some(Duration::from_secs(10)),
            hello: None,
            idle: Some(Duration::from_secs(120)),
            slow_peer: Some(Duration::from_secs(30)),
            frame: Some(Duration::from_secs(10)),
            shrink_after: Some(Duration::from_secs(1)),
        }
    }
}

/// A client connection's keep-alive timers; `None` or zero turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimers {
    /// PING after this long without a frame from the server (5 s), so a long job or an idle
    /// connection keeps proving the server alive (and stays under the server's idle timeout).
    pub heartbeat: Option<Duration>,
    /// Give up after this long without a frame from the server, despite the pings (20 s).
    pub dead_after: Option<Duration>,
}

impl Default for ClientTimers {
    fn default() -> Self {
        ClientTimers {
            heartbeat: Some(Duration::from_secs(5)),
            dead_after: Some(Duration::from_secs(20)),
        }
    }
}
