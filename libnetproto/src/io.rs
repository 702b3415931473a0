//! The library's only contact with the operating system: sockets, deadlines, the clock, key
//! files, the known-servers file and randomness. Everything protocol-shaped is delegated to
//! [`crate::conn::Conn`], which gets the time from here as a [`Timestamp`].
//!
//! Trust boundary: files here hold secrets (the server key, mode 0600) and trust decisions
//! (the pinning table); sockets carry hostile bytes into `Conn`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::conn::{ClientConfig, ClientConn, Conn, Event, Side, Timestamp};
use crate::error::Error;
use crate::keys::{fingerprint, KnownServers, ServerKey, Trust};

/// 32 bytes from the operating system's CSPRNG.
pub(crate) fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    OsRng.fill_bytes(buf);
}

/// The process-wide origin of [`Timestamp`]s made from [`Instant`]s (set on first use).
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `t` as a [`Timestamp`] (microseconds since the process-wide base; an instant from before
/// the base, which only a caller holding one from before the first call can have, counts as
/// the base itself).
pub(crate) fn timestamp(t: Instant) -> Timestamp {
    let us = t.saturating_duration_since(clock_base()).as_micros();
    Timestamp::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
}

/// The [`Instant`] a [`Timestamp`] from [`timestamp`] stands for.
pub(crate) fn instant(t: Timestamp) -> Instant {
    let base = clock_base();
    // A timestamp past what `Instant` can hold is a timer that never fires: the far future.
    base.checked_add(Duration::from_micros(t.as_micros()))
        .or_else(|| base.checked_add(Duration::from_secs(u32::MAX as u64)))
        .unwrap_or(base)
}

/// The monotonic clock now, as the connection's timers count it.
pub(crate) fn monotonic_now() -> Timestamp {
    timestamp(Instant::now())
}

fn key_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Loads the server's long-term key, creating it (mode 0600, never overwriting) on first start.
/// Refuses a key file that others can read: a leaked key lets anyone impersonate the server.
///
/// Creation is atomic and safe against several servers sharing one key file and starting at
/// once: the key is written in full to a private temporary file beside it, then hard-linked
/// to `path` (link(2) never replaces an existing name). The loser of a race finds the name
/// taken, drops its own key and loads the winner's, so every server ends with the one key and
/// none ever reads a half-written file. An existing key is only read: a read-only file or
/// directory works.
pub(crate) fn load_or_create_server_key(path: &Path) -> Result<(ServerKey, bool), Error> {
    match read_server_key(path)? {
        Some(key) => Ok((key, false)),
        None => match create_server_key(path)? {
            Some(key) => Ok((key, true)),
            // Another process created it between our read and our link: use theirs.
            None => read_server_key(path)?
                .map(|k| (k, false))
                .ok_or_else(|| key_err(path, "vanished right after it was created")),
        },
    }
}

/// The key in `path`; `None` when there is no such file.
fn read_server_key(path: &Path) -> Result<Option<ServerKey>, Error> {
    let text = match fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_err(path, e)),
    };
    let mode = fs::metadata(path)
        .map_err(|e| key_err(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!("mode {:o} lets others read it; chmod 600", mode & 0o777),
        ));
    }
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| key_err(path, "not base64"))?,
    );
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_err(path, "not a 32-byte key"))?;
    Ok(Some(ServerKey::from_secret(secret)))
}

/// Writes a new key to `path` unless a file is already there; `None` when one was (another
/// process won the race).
fn create_server_key(path: &Path) -> Result<Option<ServerKey>, Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| key_err(path, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| key_err(path, "not a file name"))?
        .to_string_lossy();
    let mut tag = [0u8; 8];
    random_bytes(&mut tag);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        u64::from_le_bytes(tag)
    ));
    let secret = random32();
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(secret)));
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    // The temporary name goes whatever happened; the key lives on under `path` if linked.
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            // The new name durable too, so a crash cannot lose the key clients pinned.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Some(ServerKey::from_secret(secret)))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(key_err(path, e)),
    }
}

/// Checks `key` for `host` against the known-servers file, pinning it on first use.
pub(crate) fn check_known_server(path: &Path, host: &str, key: &[u8; 32]) -> Result<Trust, Error> {
    let trust = decide_known_server(path, host, key)?;
    if trust == Trust::New {
        pin_known_server(path, host, key)?;
    }
    Ok(trust)
}

/// Checks `key` for `host` against the known-servers file without writing it: `Known`,
/// `New`, or the error for a changed key (the file is never touched here).
pub(crate) fn decide_known_server(path: &Path, host: &str, key: &[u8; 32]) -> Result<Trust, Error> {
    // The host becomes the first field of a line: one field, and not one read as a comment.
    if host.is_empty()
        || host.starts_with('#')
        || host.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidArgument(
            "host must be non-empty, without whitespace, not starting with '#'",
        ));
    }
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(key_err(path, e)),
    };
    let table = KnownServers::parse(&text)
        .map_err(|(line, msg)| key_err(path, format!("line {line}: {msg}")))?;
    let trust = table.check(host, key);
    if let Trust::Changed { pinned } = &trust {
        return Err(Error::ServerKeyChanged {
            host: host.to_string(),
            pinned: fingerprint(pinned),
            offered: fingerprint(key),
        });
    }
    Ok(trust)
}

/// Appends the line pinning `host` to `key` (creating the file with mode 0600).
fn pin_known_server(path: &Path, host: &str, key: &[u8; 32]) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| key_err(path, e))?;
    }
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_err(path, e))?;
    f.write_all(KnownServers::line(host, key).as_bytes())
        .map_err(|e| key_err(path, e))?;
    log::info!("pinned new server {host} with key {}", fingerprint(key));
    Ok(())
}

/// TCP connect to the first address of `addr` that answers within `timeout`, with Nagle off.
pub(crate) fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let addrs = addr.to_socket_addrs().map_err(|e| Error::Io {
        kind: e.kind(),
        msg: format!("cannot resolve {addr}: {e}"),
    })?;
    let mut last = Error::Io {
        kind: io::ErrorKind::NotFound,
        msg: format!("{addr} resolves to no address"),
    };
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => last = Error::Timeout("connect"),
            Err(e) => {
                last = Error::Io {
                    kind: e.kind(),
                    msg: format!("connect to {a}: {e}"),
                }
            }
        }
    }
    Err(last)
}

/// Outcome of a non-blocking read into a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStatus {
    /// This many bytes were added.
    Data(usize),
    /// Nothing available now.
    WouldBlock,
    /// The input buffer is full: drain events first.
    Full,
    /// The peer closed its side.
    Eof,
}

/// Reads what the socket has into `conn` at `now` (non-blocking sockets: at most one `read`).
pub(crate) fn read_into<S: Side>(
    conn: &mut Conn<S>,
    src: &mut impl Read,
    now: Timestamp,
) -> Result<ReadStatus, Error> {
    if conn.input_room() == 0 {
        return Ok(ReadStatus::Full);
    }
    loop {
        match conn.read_buf(|buf| src.read(buf), now) {
            Ok(0) => return Ok(ReadStatus::Eof),
            Ok(n) => return Ok(ReadStatus::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadStatus::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes as much pending output as the socket takes at `now`; returns the bytes still
/// pending.
pub(crate) fn write_from<S: Side>(
    conn: &mut Conn<S>,
    dst: &mut impl Write,
    now: Timestamp,
) -> Result<usize, Error> {
    while !conn.pending_output().is_empty() {
        match dst.write(conn.pending_output()) {
            Ok(0) => return Err(Error::Eof),
            Ok(n) => conn.consume_output(n, now),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(conn.pending_output().len())
}

/// A blocking client session over TCP: connect, handshake, pin check, login; then
/// request/response with deadlines. What the CLI, the load tester and the C sample use.
///
/// The connection's own timers run while it waits for an event: a heartbeat PING (request id
/// 0) after the configured quiet interval, and giving up when the server stays silent for the
/// dead-peer timeout (see [`ClientTimers`](crate::ClientTimers)).
///
/// Two ways a wait ends without an event, told apart by the error rather than by when it
/// came, so a caller never has to compare clocks with the library:
/// - the caller's own deadline passed: [`Error::Timeout`] (`NP_TIMEOUT`). Nothing happened
///   to the connection; the next call may wait again.
/// - the dead-peer timer closed the connection: [`Error::PeerSilent`] (`NP_PEER_SILENT`,
///   "no frame from the server for 20 s: connection closed"). The connection is gone, and
///   every later call on this client (waits and sends alike) answers the same error; only a
///   new connection helps. A status of its own rather than `NP_CLOSED`, which also answers a
///   call after an orderly BYE, so that "the server went silent" needs no inference.
///
/// When both are due, the timer wins: it is served before the deadline is looked at.
pub(crate) struct Client {
    stream: TcpStream,
    conn: ClientConn,
    host: String,
    server_key: [u8; 32],
    trust: Trust,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// How a blocking client decides about the server's key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pinning<'a> {
    /// Check and update this known-servers file.
    File(&'a Path),
    /// Accept any key (tests and first-contact tooling only).
    AcceptAny,
}

impl Client {
    /// Connects and logs in; the whole sequence must finish within `timeout`.
    pub(crate) fn connect(
        addr: &str,
        config: Arc<ClientConfig>,
        pinning: Pinning<'_>,
        timeout: Duration,
    ) -> Result<Client, Error> {
        let deadline = Instant::now() + timeout;
        let stream = connect(addr, timeout)?;
        let conn = ClientConn::new(config, random32(), monotonic_now());
        let mut c = Client {
            stream,
            conn,
            host: addr.to_string(),
            server_key: [0; 32],
            trust: Trust::Known,
        };
        c.flush(deadline)?;
        loop {
            match c.next_event_until(deadline)? {
                Event::ServerKey { key } => {
                    c.server_key = key;
                    // Decided now (a changed key is refused before any login), written only
                    // after LOGIN_OK: a first contact whose login fails — a wrong password,
                    // or a server that is not the one meant — pins nothing.
                    let decision = match pinning {
                        Pinning::File(p) => decide_known_server(p, addr, &key),
                        Pinning::AcceptAny => Ok(Trust::New),
                    };
                    match decision {
                        Ok(t) => {
                            c.trust = t;
                            c.conn.trust_server_key(true)?;
                        }
                        Err(e) => {
                            let _ = c.conn.trust_server_key(false);
                            return Err(e);
                        }
                    }
                    c.flush(deadline)?;
                }
                Event::Ready { .. } => {
                    if let (Pinning::File(p), Trust::New) = (pinning, &c.trust) {
                        // Checked again, so a pin another process wrote meanwhile is honoured
                        // (the same key: nothing to add; another: refused as changed).
                        c.trust = check_known_server(p, addr, &c.server_key)?;
                    }
                    return Ok(c);
                }
                Event::Error { code, message, .. } => {
                    let name =
                        crate::opcode::ErrorCode::from_u16(code).map_or("UNKNOWN", |c| c.name());
                    return Err(match crate::opcode::ErrorCode::from_u16(code) {
                        Some(crate::opcode::ErrorCode::AuthFailed) => Error::AuthFailed,
                        _ => Error::Remote {
                            code,
                            name,
                            message: message.to_string(),
                        },
                    });
                }
                _ => return Err(Error::HandshakeFailed("unexpected event during login")),
            }
        }
    }

    /// The session's connection, for queuing requests (flush afterwards).
    pub(crate) fn conn(&mut self) -> &mut ClientConn {
        &mut self.conn
    }

    /// The socket, for the caller's poll(2); owned by the session.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The server's static key, as checked against the pinning decision.
    pub(crate) fn server_key(&self) -> &[u8; 32] {
        &self.server_key
    }

    /// Whether the server's key was already pinned (`Known`) or pinned just now, after the
    /// login succeeded (`New`).
    pub(crate) fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Writes all pending output before `deadline`.
    pub(crate) fn flush(&mut self, deadline: Instant) -> Result<(), Error> {
        while !self.conn.pending_output().is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(Error::Timeout("write"))?;
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(self.conn.pending_output()) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => self.conn.consume_output(n, monotonic_now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout("write"))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Waits for the next event until `deadline`. PONGs to server PINGs are sent on the way,
    /// and the connection's timers are served: a heartbeat PING goes out when due, and a
    /// server silent for the dead-peer timeout ends the wait (and the connection) with
    /// [`Error::PeerSilent`]. Only the caller's own deadline gives [`Error::Timeout`].
    pub(crate) fn next_event_until(&mut self, deadline: Instant) -> Result<Event<'_>, Error> {
        loop {
            let got = self.conn.advance()?;
            // Anything the state machine queued (PONG, login replies, a heartbeat) goes out now.
            self.flush(deadline)?;
            if got {
                break;
            }
            if self.conn.is_closed() {
                // The error that closed it (PeerSilent after the dead-peer timer), on this
                // and every later call.
                return Err(self.conn.error().cloned().unwrap_or(Error::Closed));
            }
            let now = Instant::now();
            let timer = self.conn.poll_timeout().map(instant);
            if timer.is_some_and(|t| t <= now) {
                if let Some(kind) = self.conn.handle_timeout(timestamp(now)) {
                    log::debug!("{addr}: {} timer fired", kind.name(), addr = self.host);
                }
                continue;
            }
            if deadline <= now {
                return Err(Error::Timeout("read"));
            }
            // Sleep in the read until the caller's deadline or the next timer, whichever is
            // first; both are in the future here.
            let wake = timer.map_or(deadline, |t| t.min(deadline));
            self.stream
                .set_read_timeout(Some(wake.saturating_duration_since(now)))?;
            let stream = &mut self.stream;
            match self.conn.read_buf(|buf| stream.read(buf), monotonic_now()) {
                Ok(0) => return Err(Error::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // A timer fell due or the deadline passed: the top of the loop serves a
                    // due timer first and only then ends the wait for the deadline, so a
                    // dead-peer timer due with the deadline still reports the silent server.
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.conn.current_event().expect("advance() returned true"))
    }

    /// Sends BYE and closes the socket.
    pub(crate) fn close(mut self) {
        if self.conn.send_bye().is_ok() {
            let _ = self.flush(Instant::now() + Duration::from_millis(200));
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::conn::{ClientTimers, ServerConfig, ServerConn};
    use crate::login::Verifier;
    use crate::message::ServerParams;

    fn key_test_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("netproto-key-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn servers_racing_on_a_missing_key_file_end_with_one_key() {
        let dir = key_test_dir("race");
        let path = dir.join("cluster.key");
        for round in 0..20 {
            let _ = fs::remove_file(&path);
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (b, p) = (barrier.clone(), path.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        load_or_create_server_key(&p).unwrap()
                    })
                })
                .collect();
            let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let created = got.iter().filter(|(_, c)| *c).count();
            assert_eq!(created, 1, "round {round}: exactly one creator");
            let first = got[0].0.public();
            assert!(
                got.iter().all(|(k, _)| k.public() == first),
                "round {round}"
            );
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cluster.key")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_key_is_used_read_only() {
        let dir = key_test_dir("ro");
        let path = dir.join("server.key");
        let (k1, created) = load_or_create_server_key(&path).unwrap();
        assert!(created);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
        let (k2, created) = load_or_create_server_key(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The loopback test servers' config: a fixed key and one user, alice / pw.
    fn test_server_config() -> ServerConfig {
        let mut cfg = ServerConfig::new(
            ServerKey::from_secret([5; 32]),
            ServerParams {
                max_chunk: crate::limits::MAX_CHUNK_DATA as u32,
                max_upload: 1 << 20,
                max_in_flight: 4,
            },
        );
        cfg.add_user("alice", Verifier::create(b"pw", &[3; 16], 4096).unwrap())
            .unwrap();
        cfg
    }

    /// A one-connection server on loopback that answers whatever the library answers by
    /// itself (PONG) and reports the PINGs it saw, until the client goes away.
    fn serve_one(listener: TcpListener) -> std::thread::JoinHandle<Vec<(u64, Vec<u8>)>> {
        let cfg = test_server_config();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut conn = ServerConn::new(Arc::new(cfg), random32(), monotonic_now());
            let mut pings = Vec::new();
            loop {
                while let Ok(Some(ev)) = conn.poll_event() {
                    if let Event::Ping {
                        request_id,
                        payload,
                    } = ev
                    {
                        pings.push((request_id, payload.to_vec()));
                    }
                }
                if write_from(&mut conn, &mut sock, monotonic_now()).is_err() || conn.is_closed() {
                    return pings;
                }
                match read_into(&mut conn, &mut sock, monotonic_now()) {
                    Ok(ReadStatus::Data(_)) | Ok(ReadStatus::Full) => {}
                    _ => return pings,
                }
            }
        })
    }

    /// A one-connection server on loopback that logs the client in and then goes silent: it
    /// keeps the socket open and reads (and ignores) whatever comes, heartbeats included,
    /// sending nothing, until the client goes away. Returns how many bytes it ignored.
    fn serve_then_go_silent(listener: TcpListener) -> std::thread::JoinHandle<usize> {
        let cfg = test_server_config();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut conn = ServerConn::new(Arc::new(cfg), random32(), monotonic_now());
            let mut logged_in = false;
            while !logged_in {
                while let Ok(Some(ev)) = conn.poll_event() {
                    logged_in |= matches!(ev, Event::LoggedIn { .. });
                }
                if write_from(&mut conn, &mut sock, monotonic_now()).is_err() || conn.is_closed() {
                    return 0;
                }
                if logged_in {
                    break;
                }
                match read_into(&mut conn, &mut sock, monotonic_now()) {
                    Ok(ReadStatus::Data(_)) | Ok(ReadStatus::Full) => {}
                    _ => return 0,
                }
            }
            // Silent from here on: read to EOF, answer nothing.
            let mut ignored = 0;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = sock.read(&mut buf) {
                ignored += n;
            }
            ignored
        })
    }

    fn connect_with(addr: &str, timers: ClientTimers) -> Client {
        let mut cfg = ClientConfig::new("alice", b"pw").unwrap();
        cfg.set_timers(timers);
        Client::connect(
            addr,
            Arc::new(cfg),
            Pinning::AcceptAny,
            Duration::from_secs(10),
        )
        .unwrap()
    }

    #[test]
    fn a_wait_ended_by_the_dead_peer_timer_says_the_server_went_silent() {
        use crate::capi::status::np_status;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = serve_then_go_silent(listener);
        let dead_after = Duration::from_millis(150);
        let mut client = connect_with(
            &addr,
            ClientTimers {
                heartbeat: Some(Duration::from_millis(30)),
                dead_after: Some(dead_after),
            },
        );
        // The caller's own deadline is far beyond the dead-peer timeout: only the timer can
        // end this wait.
        let far = Instant::now() + Duration::from_secs(30);
        let e = client.next_event_until(far).unwrap_err();
        assert_eq!(e, Error::PeerSilent { after: dead_after });
        assert_eq!(np_status::from(&e), np_status::NP_PEER_SILENT);
        assert_eq!(
            e.to_string(),
            "no frame from the server for 150 ms: connection closed"
        );
        assert!(client.conn().is_closed());
        // Every later call fails the same way, at once: another wait, even one whose own
        // deadline has already passed, and a send.
        for deadline in [far, Instant::now()] {
            assert_eq!(
                client.next_event_until(deadline).unwrap_err(),
                Error::PeerSilent { after: dead_after }
            );
        }
        assert_eq!(
            client.conn().send_ping(7, b"anyone?").unwrap_err(),
            Error::PeerSilent { after: dead_after }
        );
        assert_eq!(
            client
                .conn()
                .send_job(1, "noop", 1, b"x", true)
                .unwrap_err(),
            Error::PeerSilent { after: dead_after }
        );
        client.close();
        // The heartbeats went out before the connection gave up.
        assert!(
            server.join().unwrap() > 0,
            "no heartbeat reached the server"
        );
    }

    #[test]
    fn a_wait_ended_by_the_callers_deadline_is_a_timeout_and_the_connection_lives_on() {
        use crate::capi::status::np_status;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = serve_then_go_silent(listener);
        // A dead-peer timeout far beyond the waits below: only their own deadlines end them.
        let mut client = connect_with(
            &addr,
            ClientTimers {
                heartbeat: None,
                dead_after: Some(Duration::from_secs(600)),
            },
        );
        for wait in [Duration::from_millis(20), Duration::ZERO] {
            let e = client.next_event_until(Instant::now() + wait).unwrap_err();
            assert_eq!(e, Error::Timeout("read"));
            assert_eq!(np_status::from(&e), np_status::NP_TIMEOUT);
            assert!(!client.conn().is_closed());
            assert!(client.conn().is_ready());
        }
        // Still usable: a send is accepted and flushed.
        client.conn().send_ping(7, b"still there?").unwrap();
        client
            .flush(Instant::now() + Duration::from_secs(10))
            .unwrap();
        client.close();
        assert!(server.join().unwrap() > 0, "the PING reached the server");
    }

    #[test]
    fn the_blocking_client_sends_heartbeats_while_it_waits() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = serve_one(listener);
        let mut cfg = ClientConfig::new("alice", b"pw").unwrap();
        cfg.set_timers(ClientTimers {
            heartbeat: Some(Duration::from_millis(20)),
            dead_after: None,
        });
        let mut client = Client::connect(
            &addr,
            Arc::new(cfg),
            Pinning::AcceptAny,
            Duration::from_secs(10),
        )
        .unwrap();
        // Nothing sent by the caller: the only thing that can come back is the PONG to the
        // connection's own heartbeat.
        let deadline = Instant::now() + Duration::from_secs(10);
        match client.next_event_until(deadline).unwrap() {
            Event::Pong {
                request_id,
                payload,
            } => assert_eq!((request_id, payload), (0, &b"heartbeat"[..])),
            e => panic!("expected the heartbeat's PONG, got {e:?}"),
        }
        client.close();
        let pings = server.join().unwrap();
        assert!(pings.contains(&(0, b"heartbeat".to_vec())), "{pings:?}");
    }
}
