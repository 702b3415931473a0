//! Getting a logged-in connection: credentials (password from env, file or terminal), the
//! known-servers file that pins each server's key, and reconnecting by the retry policy
//! (`retry.rs`: backoff with jitter within a bounded outage).
//!
//! Trust boundary: the password (never logged, never echoed) and the trust-on-first-use
//! decision about the server's key; the key check itself is done by libnetproto before any
//! login proof leaves this process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netproto_sys::{ffi, Client, ClientConfig, NpError};

use crate::exit::{ExitKind, Failure};
use crate::retry::{self, Jitter, Retry};

/// Connection settings from the command line and environment.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    pub addr: String,
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

/// Makes logged-in connections to one server with one set of credentials; shared by all
/// threads (the library caches the PBKDF2 result in the config, so a thousand logins cost one
/// key derivation).
#[derive(Debug)]
pub struct Connector {
    pub addr: String,
    cfg: ClientConfig,
    known_servers: PathBuf,
    pub timeout: Duration,
    pub retry_for: Duration,
    /// The dead-peer timeout its connections run with, for the message when one fires.
    pub dead_after: Duration,
    announced: AtomicBool,
}

impl Connector {
    /// Resolves the user, password and known-servers file (may prompt on the terminal).
    pub fn new(opts: &ConnectOpts) -> Result<Arc<Connector>, Failure> {
        let user = match &opts.user {
            Some(u) => u.clone(),
            None => std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| Failure::usage("no user", "use --user or set IMGCLIENT_USER"))?,
        };
        let known_servers = match &opts.known_servers {
            Some(p) => p.clone(),
            None => default_known_servers(
                std::env::var("XDG_CONFIG_HOME").ok().as_deref(),
                std::env::var("HOME").ok().as_deref(),
            )
            .ok_or_else(|| {
                Failure::usage(
                    "no known-servers file",
                    "HOME is not set; use --known-servers FILE",
                )
            })?,
        };
        let env_pw = std::env::var_os("IMGCLIENT_PASSWORD").map(|v| {
            use std::os::unix::ffi::OsStringExt;
            v.into_vec()
        });
        let prompt = format!("password for {user}@{}: ", opts.addr);
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
        Ok(Arc::new(Connector {
            addr: opts.addr.clone(),
            cfg,
            known_servers,
            timeout: opts.timeout,
            retry_for: opts.retry_for,
            dead_after: opts.dead_after,
            announced: AtomicBool::new(false),
        }))
    }

    /// The credentials, for connections driven by the caller (the bench's event loops).
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// One attempt: TCP, handshake, key check against the known-servers file, login.
    pub fn connect_once(&self) -> Result<Client, NpError> {
        let c = Client::connect(
            &self.addr,
            &self.cfg,
            Some(&self.known_servers),
            self.timeout,
        )?;
        if c.is_new_server() && !self.announced.swap(true, Ordering::Relaxed) {
            eprintln!(
                "pinned new server {} key {} (in {})",
                self.addr,
                netproto_sys::fingerprint(&c.server_key()),
                self.known_servers.display()
            );
        }
        Ok(c)
    }

    /// The one-line failure for a connect error, naming the file to edit for a changed key.
    pub fn failure(&self, e: &NpError) -> Failure {
        let what = format!("connecting to {}", self.addr);
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

    /// The first connection of a run. Fails fast when nothing answers (a typo in the address
    /// should not cost the whole retry budget), but waits out a server that is up and says
    /// "not now" (TOO_MANY_CONNECTIONS, SHUTTING_DOWN, RATE_LIMITED after its retry-after)
    /// like any later reconnect.
    pub fn connect_first(&self, stop: &AtomicBool) -> Result<Client, Failure> {
        let mut retry = Retry::new(self.retry_for);
        let mut jitter = Jitter::new();
        loop {
            let e = match self.connect_once() {
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
            if !sleep_unless(delay, stop) {
                return Err(self.failure(&e));
            }
        }
    }

    /// Connects, retrying retryable failures with backoff until `retry` says the outage is
    /// too long or `stop` is set. Non-retryable failures (authentication, pinning, files,
    /// protocol) return at once.
    pub fn connect_retrying(
        &self,
        retry: &mut Retry,
        jitter: &mut Jitter,
        stop: &AtomicBool,
    ) -> Result<Client, Failure> {
        loop {
            let e = match self.connect_once() {
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
                self.addr,
                e.message,
                delay.as_millis()
            );
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
