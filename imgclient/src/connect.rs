//! Getting a logged-in connection: credentials (password from env, file or terminal), the
//! known-servers file that pins each server's key, rounds over the server list (the order
//! and skip rules are `failover.rs`) and reconnecting by the retry policy (`retry.rs`:
//! backoff with jitter within a bounded outage, between rounds that find no server).
//!
//! Trust boundary: the password (never logged, never echoed) and the trust-on-first-use
//! decision about the server's key; the key check itself is done by libnetproto before any
//! login proof leaves this process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netproto_sys::{ffi, Client, ClientConfig, ClientConn, Event, NpError};

use crate::exit::{ExitKind, Failure};
use crate::failover::{self, Step};
use crate::notice::Notices;
use crate::retry::{self, Jitter, Retry};

/// Connection settings from the command line and environment.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    /// The servers to fail over across, in order (at least one).
    pub servers: Vec<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub known_servers: Option<PathBuf>,
    /// For one connect (TCP + handshake + login) and for each send.
    pub timeout: Duration,
    /// How long to keep reconnecting through one outage.
    pub retry_for: Duration,
    /// The connection's own timers (see [`HEARTBEAT`], [`DEAD_AFTER`]).
    pub heartbeat: Duration,
    pub dead_after: Duration,
}

/// Every connection sends a PING (request id 0, sent by the library) after this long without
/// traffic, to keep the connection (and our knowledge that the server is alive) fresh while a
/// long job runs or the connection is idle; well under the server's 120 s idle timeout.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The library gives a connection up (closed, NP_PEER_SILENT) after this long without any frame
/// from the server, despite the pings.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);

/// Where the known-servers file lives when not given: `$XDG_CONFIG_HOME/imgclient/known_servers`,
/// else `$HOME/.config/imgclient/known_servers`. A relative XDG_CONFIG_HOME is ignored, as the
/// XDG spec says.
pub fn default_known_servers(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match xdg_config_home.filter(|d| Path::new(d).is_absolute()) {
        Some(d) => PathBuf::from(d),
        None => Path::new(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("imgclient").join("known_servers"))
}

/// The known-servers file: the one given, else the default (see [`default_known_servers`]).
pub fn known_servers_path(given: Option<&Path>) -> Result<PathBuf, Failure> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => default_known_servers(
            std::env::var("XDG_CONFIG_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )
        .ok_or_else(|| {
            Failure::usage(
                "no known-servers file",
                "HOME is not set; use --known-servers FILE",
            )
        }),
    }
}

/// Whether `pin` wrote a line or found the key already pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    New,
    Already,
}

/// Checks the form of a fingerprint as the server logs it: `SHA256:` and 43 characters of
/// unpadded standard base64.
pub fn check_fingerprint(fp: &str) -> Result<(), Failure> {
    let ok = fp.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    });
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(
            format!("fingerprint {fp:?}"),
            "expected SHA256: and 43 base64 characters, as the server logs it",
        ))
    }
}

/// Pins the key of the server at `addr` in `known_servers` if, and only if, its fingerprint
/// is `expected`, a fingerprint learnt out of band: the defence against an interposer on an
/// unpinned first contact (docs/PROTOCOL.md, 8.4). Runs the handshake only: the server proves
/// it holds the key, and no login (not even the user name) is sent, so no credentials are
/// needed and a wrong server learns nothing. The line is the one a connect would write
/// (`np_known_servers_check`), under the same `addr` spelling.
pub fn pin_fingerprint(
    addr: &str,
    known_servers: &Path,
    expected: &str,
    timeout: Duration,
) -> Result<Pinned, Failure> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};

    check_fingerprint(expected)?;
    let what = format!("pinning {addr}");
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let connect_err = |e: std::io::Error| Failure::new(ExitKind::Connect, what.clone(), e);
    let sock_addr = addr
        .to_socket_addrs()
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| Failure::new(ExitKind::Connect, what.clone(), "resolves to no address"))?;
    let mut sock = TcpStream::connect_timeout(&sock_addr, remaining()).map_err(connect_err)?;
    // The connection never gets past the key decision, so these credentials are never sent;
    // the library only needs some to build a client connection.
    let cfg = ClientConfig::new("pin", b"unused").map_err(|e| Failure::from_np(&what, &e))?;
    let mut conn =
        ClientConn::new(&cfg, Instant::now()).map_err(|e| Failure::from_np(&what, &e))?;
    let mut buf = vec![0u8; 4096];
    let key = 'handshake: loop {
        let out = conn.pending_output().to_vec();
        if !out.is_empty() {
            sock.set_write_timeout(Some(remaining()))
                .and_then(|()| sock.write_all(&out))
                .map_err(connect_err)?;
            conn.consume_output(out.len(), Instant::now());
        }
        sock.set_read_timeout(Some(remaining()))
            .map_err(connect_err)?;
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                return Err(Failure::new(
                    ExitKind::Connect,
                    what.clone(),
                    "the server closed the connection during the handshake",
                ))
            }
            Ok(n) => n,
            Err(e) => return Err(connect_err(e)),
        };
        let mut off = 0;
        while off < n {
            off += conn
                .feed(&buf[off..n], Instant::now())
                .map_err(|e| Failure::from_np(&what, &e))?;
            loop {
                match conn.poll_event().map_err(|e| Failure::from_np(&what, &e))? {
                    None => break,
                    Some(Event::ServerKey { key }) => break 'handshake key,
                    Some(Event::Error { code, message, .. }) => {
                        return Err(Failure::from_wire(&what, code, message))
                    }
                    Some(_) => {}
                }
            }
        }
    };
    // Close without logging in, whatever the answer: nothing more goes to this server.
    let _ = conn.trust_server_key(false);
    drop(sock);
    let offered = netproto_sys::fingerprint(&key);
    if offered != expected {
        return Err(Failure::new(
            ExitKind::KeyChanged,
            what,
            format!("the server presents {offered}, not {expected}; nothing pinned"),
        ));
    }
    match netproto_sys::known_servers_check(known_servers, addr, &key) {
        Ok(true) => Ok(Pinned::New),
        Ok(false) => Ok(Pinned::Already),
        Err(e) if e.is(ffi::NP_SERVER_KEY_CHANGED) => Err(Failure::new(
            ExitKind::KeyChanged,
            what,
            format!(
                "{} (file: {}); remove the host's line first if the change is expected",
                e.message,
                known_servers.display()
            ),
        )),
        Err(e) if e.is(ffi::NP_KEY_FILE) => Err(Failure::new(ExitKind::Io, what, &e.message)),
        Err(e) => Err(Failure::from_np(what, &e)),
    }
}

/// Strips one trailing line end, so `echo pw > file` works, but keeps other whitespace: it may
/// be part of the password.
pub fn password_from_file_text(text: &[u8]) -> &[u8] {
    let t = text.strip_suffix(b"\n").unwrap_or(text);
    t.strip_suffix(b"\r").unwrap_or(t)
}

/// Picks the password: `--password-file` (explicit) first, then `IMGCLIENT_PASSWORD`, then a
/// prompt on the terminal.
pub fn resolve_password(
    file: Option<&Path>,
    env: Option<Vec<u8>>,
    prompt: impl FnOnce() -> std::io::Result<String>,
) -> Result<Vec<u8>, Failure> {
    let pw = if let Some(path) = file {
        let text = std::fs::read(path)
            .map_err(|e| Failure::io(format!("reading password file {}", path.display()), e))?;
        warn_if_readable_by_others(path);
        password_from_file_text(&text).to_vec()
    } else if let Some(pw) = env {
        pw
    } else {
        prompt()
            .map_err(|e| {
                Failure::usage(
                    "no password",
                    format!(
                        "set IMGCLIENT_PASSWORD, use --password-file, or run on a terminal ({e})"
                    ),
                )
            })?
            .into_bytes()
    };
    if pw.is_empty() {
        return Err(Failure::usage("password", "is empty"));
    }
    Ok(pw)
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "password file {} is readable by others; chmod 600 it",
                path.display()
            );
        }
    }
}

/// Makes logged-in connections to the servers of the list with one set of credentials;
/// shared by all threads (the library caches the PBKDF2 result in the config, so a thousand
/// logins cost one key derivation). A connect is a round over the list (`failover.rs`): the
/// servers in order from a start index, an unreachable or refusing one skipped, a changed
/// key or a refused login the end of it.
#[derive(Debug)]
pub struct Connector {
    /// The servers, in the order given (validated HOST:PORT, each pinned under its spelling).
    pub servers: Vec<String>,
    cfg: ClientConfig,
    known_servers: PathBuf,
    pub timeout: Duration,
    pub retry_for: Duration,
    /// The dead-peer timeout its connections run with, for the message when one fires.
    pub dead_after: Duration,
    /// Per server: "pinned new server" was said already.
    announced: Vec<AtomicBool>,
    /// Per server: the key found in (or pinned into) the known-servers file, for connections
    /// driven by the caller (the bench's event loops), which check keys through
    /// [`Connector::check_key`].
    keys: Vec<Mutex<Option<[u8; 32]>>>,
    /// Waits worth telling the user about, shared by every connection of the run.
    pub notices: Notices,
}

impl Connector {
    /// Resolves the user, password and known-servers file (may prompt on the terminal).
    pub fn new(opts: &ConnectOpts) -> Result<Arc<Connector>, Failure> {
        if opts.servers.is_empty() {
            return Err(Failure::usage("--server", "no server given"));
        }
        let user = match &opts.user {
            Some(u) => u.clone(),
            None => std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| Failure::usage("no user", "use --user or set IMGCLIENT_USER"))?,
        };
        let known_servers = known_servers_path(opts.known_servers.as_deref())?;
        let env_pw = std::env::var_os("IMGCLIENT_PASSWORD").map(|v| {
            use std::os::unix::ffi::OsStringExt;
            v.into_vec()
        });
        let prompt = format!("password for {user}@{}: ", opts.servers.join(","));
        let password = resolve_password(opts.password_file.as_deref(), env_pw, || {
            cliutil::password::prompt_hidden(&prompt).map_err(std::io::Error::from)
        })?;
        let mut cfg = ClientConfig::new(&user, &password)
            .map_err(|e| Failure::usage(format!("user {user:?}"), e))?;
        // The connections own their heartbeat and dead-peer timers; the blocking client
        // serves them while it waits for an event, the bench's event loops via
        // poll_timeout/handle_timeout.
        cfg.set_timers(Some(opts.heartbeat), Some(opts.dead_after))
            .map_err(|e| Failure::usage("connection timers", e))?;
        let n = opts.servers.len();
        Ok(Arc::new(Connector {
            servers: opts.servers.clone(),
            cfg,
            known_servers,
            timeout: opts.timeout,
            retry_for: opts.retry_for,
            dead_after: opts.dead_after,
            announced: (0..n).map(|_| AtomicBool::new(false)).collect(),
            keys: (0..n).map(|_| Mutex::new(None)).collect(),
            notices: Notices::default(),
        }))
    }

    /// The whole list, for messages about all of it.
    pub fn label(&self) -> String {
        self.servers.join(",")
    }

    /// Server `i`'s address (wrapping).
    pub fn addr(&self, i: usize) -> &str {
        &self.servers[i % self.servers.len()]
    }

    /// The credentials, for connections driven by the caller (the bench's event loops).
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The key check of a connection driven by the caller: the key server `i` presented
    /// against the known-servers file, under that server's spelling (trust on first use,
    /// as the blocking connect does). Checked once per server and run, then remembered; a
    /// key other than the pinned one is NP_SERVER_KEY_CHANGED, never a reason to try
    /// another server.
    pub fn check_key(&self, i: usize, key: &[u8; 32]) -> Result<(), NpError> {
        let i = i % self.servers.len();
        let mut known = self.keys[i].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = *known {
            if &k == key {
                return Ok(());
            }
            return Err(NpError {
                status: ffi::NP_SERVER_KEY_CHANGED,
                remote: None,
                message: format!(
                    "server key changed: {} now presents {}, the known-servers file pins {}",
                    self.addr(i),
                    netproto_sys::fingerprint(key),
                    netproto_sys::fingerprint(&k)
                ),
            });
        }
        let new = netproto_sys::known_servers_check(&self.known_servers, self.addr(i), key)?;
        if new {
            self.announce(i, key);
        }
        *known = Some(*key);
        Ok(())
    }

    /// Remembers a key the library checked (a blocking connect), so the bench's
    /// connections to that server compare against it without reading the file.
    pub fn remember_key(&self, i: usize, key: [u8; 32]) {
        let i = i % self.servers.len();
        let mut known = self.keys[i].lock().unwrap_or_else(|p| p.into_inner());
        known.get_or_insert(key);
    }

    fn announce(&self, i: usize, key: &[u8; 32]) {
        if !self.announced[i].swap(true, Ordering::Relaxed) {
            eprintln!(
                "pinned new server {} key {} (in {})",
                self.addr(i),
                netproto_sys::fingerprint(key),
                self.known_servers.display()
            );
        }
    }

    /// One attempt at server `i`: TCP, handshake, key check against the known-servers file,
    /// login.
    pub fn connect_to(&self, i: usize) -> Result<Client, NpError> {
        let i = i % self.servers.len();
        let c = Client::connect(
            self.addr(i),
            &self.cfg,
            Some(&self.known_servers),
            self.timeout,
        )?;
        if c.is_new_server() {
            self.announce(i, &c.server_key());
        }
        self.remember_key(i, c.server_key());
        Ok(c)
    }

    /// One round over the list from server `start`: the first that answers, with its index.
    /// An unreachable, full or shutting-down server is skipped to the next; a changed key or
    /// a refused login ends the round with that server's error. A round that finds none
    /// fails with one error naming every server ([`failover::round_error`]).
    pub fn connect_round(&self, start: usize) -> Result<(usize, Client), NpError> {
        let mut tries = Vec::new();
        for i in failover::round_order(start, self.servers.len()) {
            match self.connect_to(i) {
                Ok(c) => return Ok((i, c)),
                Err(e) => {
                    if failover::step_after(&e) == Step::Stop {
                        return Err(e);
                    }
                    if self.servers.len() > 1 {
                        log::info!(
                            "{} did not answer ({}); trying the next server",
                            self.addr(i),
                            e.message
                        );
                    }
                    tries.push((self.addr(i).to_string(), e));
                }
            }
        }
        Err(failover::round_error(tries))
    }

    /// One round from the first server (ping, stats, health: one connection, no waiting).
    pub fn connect_once(&self) -> Result<Client, NpError> {
        self.connect_round(0).map(|(_, c)| c)
    }

    /// The one-line failure for a connect error, naming the file to edit for a changed key.
    pub fn failure(&self, e: &NpError) -> Failure {
        let what = format!("connecting to {}", self.label());
        match e.status {
            ffi::NP_SERVER_KEY_CHANGED => Failure::new(
                ExitKind::KeyChanged,
                what,
                format!("{} (file: {})", e.message, self.known_servers.display()),
            ),
            ffi::NP_KEY_FILE => Failure::new(ExitKind::Io, what, &e.message),
            _ => Failure::from_np(what, e),
        }
    }

    /// The first connection of a run, with the index of the server it reached. Fails fast
    /// when nothing answers (a typo in the address should not cost the whole retry budget),
    /// but waits out servers that are up and say "not now" (TOO_MANY_CONNECTIONS,
    /// SHUTTING_DOWN, RATE_LIMITED after its retry-after) like any later reconnect.
    pub fn connect_first(&self, stop: &AtomicBool) -> Result<(usize, Client), Failure> {
        let mut retry = Retry::new(self.retry_for);
        let mut jitter = Jitter::new();
        loop {
            let e = match self.connect_round(0) {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            let delay = if retry::server_said_later(&e) {
                retry.next_delay_after(Instant::now(), jitter.unit(), retry::server_hint(&e))
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(self.failure(&e));
            };
            log::info!("{}; retrying in {} ms", e.message, delay.as_millis());
            self.notices.show(Instant::now(), || {
                format!(
                    "{} said not now ({}); waiting {} ms",
                    self.label(),
                    e.message,
                    delay.as_millis()
                )
            });
            if !sleep_unless(delay, stop) {
                return Err(self.failure(&e));
            }
        }
    }

    /// Connects, round after round from server `start`, with backoff between rounds that
    /// find no server, until `retry` says the outage is too long or `stop` is set.
    /// Non-retryable failures (authentication, pinning, files, protocol) return at once.
    /// Gives the index of the server reached.
    pub fn connect_retrying(
        &self,
        start: usize,
        retry: &mut Retry,
        jitter: &mut Jitter,
        stop: &AtomicBool,
    ) -> Result<(usize, Client), Failure> {
        loop {
            let e = match self.connect_round(start) {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            if !retry::np_retryable(&e) {
                return Err(self.failure(&e));
            }
            let hint = retry::server_hint(&e);
            let Some(delay) = retry.next_delay_after(Instant::now(), jitter.unit(), hint) else {
                let mut f = self.failure(&e);
                f.why = format!("{} (gave up after {:?})", f.why, self.retry_for);
                return Err(f);
            };
            log::info!(
                "connect to {} failed ({}); retrying in {} ms",
                self.label(),
                e.message,
                delay.as_millis()
            );
            self.notices.show(Instant::now(), || {
                format!(
                    "cannot reach {} ({}); reconnecting, next try in {} ms (giving up after {} s without success)",
                    self.label(),
                    e.message,
                    delay.as_millis(),
                    self.retry_for.as_secs()
                )
            });
            if !sleep_unless(delay, stop) {
                return Err(Failure::new(ExitKind::Connect, "connect", "interrupted"));
            }
        }
    }
}

/// Sleeps in short slices so that a stop request is noticed; returns false if stopped.
pub fn sleep_unless(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_servers_default_follows_xdg() {
        assert_eq!(
            default_known_servers(Some("/x/cfg"), Some("/home/u")),
            Some(PathBuf::from("/x/cfg/imgclient/known_servers"))
        );
        assert_eq!(
            default_known_servers(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.config/imgclient/known_servers"))
        );
        assert_eq!(
            default_known_servers(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.config/imgclient/known_servers"))
        );
        assert_eq!(default_known_servers(None, None), None);
        assert_eq!(default_known_servers(Some(""), Some("")), None);
    }

    #[test]
    fn pin_writes_the_key_only_when_the_fingerprint_matches_and_never_logs_in() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = std::env::temp_dir().join(format!("imgclient-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = crate::test_server::SilentServer::start(&dir);
        let known = dir.join("known_servers");
        let fp = netproto_sys::fingerprint(&server.key);
        let t = Duration::from_secs(10);

        // Malformed fingerprints are usage errors, found before connecting.
        let before = server.conns.load(Relaxed);
        for bad in [
            "",
            "SHA256:",
            &fp[7..],
            &format!("{fp}A"),
            &fp.replace("SHA256", "sha256"),
        ] {
            let e = pin_fingerprint(&server.addr, &known, bad, t).unwrap_err();
            assert_eq!(e.kind, ExitKind::Usage, "{bad:?}");
        }
        assert_eq!(server.conns.load(Relaxed), before);

        // A well-formed fingerprint of another key: refused (exit 5), nothing written.
        let other = netproto_sys::fingerprint(&[7u8; 32]);
        let e = pin_fingerprint(&server.addr, &known, &other, t).unwrap_err();
        assert_eq!(e.kind, ExitKind::KeyChanged);
        assert!(e.why.contains(&fp) && e.why.contains(&other), "{}", e.why);
        assert!(!known.exists());

        // The right one: pinned under the address as given, once.
        assert_eq!(
            pin_fingerprint(&server.addr, &known, &fp, t).unwrap(),
            Pinned::New
        );
        let text = std::fs::read_to_string(&known).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with(&format!("{} ", server.addr)), "{text}");
        assert_eq!(
            pin_fingerprint(&server.addr, &known, &fp, t).unwrap(),
            Pinned::Already
        );
        assert_eq!(std::fs::read_to_string(&known).unwrap(), text);
        assert_eq!(server.logins.load(Relaxed), 0, "pin sent a login");

        // A later connection finds the key already pinned (and does log in).
        let c = server.connector(&dir, Duration::from_secs(5), Duration::from_secs(20));
        let client = c.connect_once().unwrap();
        assert!(!client.is_new_server());
        assert_eq!(server.logins.load(Relaxed), 1);

        // A host already pinned to another key is refused, its line left alone.
        let known2 = dir.join("known2");
        netproto_sys::known_servers_check(&known2, &server.addr, &[7u8; 32]).unwrap();
        let pinned = std::fs::read_to_string(&known2).unwrap();
        let e = pin_fingerprint(&server.addr, &known2, &fp, t).unwrap_err();
        assert_eq!(e.kind, ExitKind::KeyChanged);
        assert_eq!(std::fs::read_to_string(&known2).unwrap(), pinned);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn password_sources_in_order() {
        let dir = std::env::temp_dir().join(format!("imgclient-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from file \r\n").unwrap();
        let no_prompt = || -> std::io::Result<String> { panic!("must not prompt") };
        assert_eq!(
            resolve_password(Some(&file), Some(b"env".to_vec()), no_prompt).unwrap(),
            b"from file "
        );
        assert_eq!(
            resolve_password(None, Some(b"env".to_vec()), no_prompt).unwrap(),
            b"env"
        );
        assert_eq!(
            resolve_password(None, None, || Ok("typed".into())).unwrap(),
            b"typed"
        );
        let e = resolve_password(None, None, || Err(std::io::Error::other("no tty"))).unwrap_err();
        assert_eq!(e.kind, ExitKind::Usage);
        assert!(e.why.contains("IMGCLIENT_PASSWORD"));
        let e = resolve_password(Some(&dir.join("missing")), None, no_prompt).unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
        let e = resolve_password(None, Some(Vec::new()), no_prompt).unwrap_err();
        assert_eq!(e.kind, ExitKind::Usage);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_text_keeps_inner_whitespace() {
        assert_eq!(password_from_file_text(b"a b\n"), b"a b");
        assert_eq!(password_from_file_text(b" pw "), b" pw ");
        assert_eq!(password_from_file_text(b"pw\r\n"), b"pw");
        assert_eq!(password_from_file_text(b"pw\n\n"), b"pw\n");
    }
}
