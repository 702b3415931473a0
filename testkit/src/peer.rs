//! Peers with a source address of their own, for the server's per-address limits: on Linux
//! all of 127.0.0.0/8 is loopback, so a test can be 127.0.0.2 attacking while its control
//! client is 127.0.0.1. And a login that says how it ended, in particular whether the server
//! refused before any key exchange (its first frame a clear ERROR instead of HELLO_REPLY).
//!
//! Trust boundary: the client side of the network, as in [`crate::client`].

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netproto_sys::{ClientConfig, ClientConn, Event};
use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::client::RawSession;

/// The `n`-th attacker address, 127.0.0.(1 + n) for n ≥ 1 (127.0.0.1 is the control's).
pub fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n.saturating_add(1))
}

/// A TCP connection to `addr` (an IPv4 `host:port`) from source address `src`.
pub fn connect_from(src: Ipv4Addr, addr: &str) -> std::io::Result<TcpStream> {
    let dst: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
    let SocketAddr::V4(dst) = dst else {
        return Err(std::io::Error::other("connect_from needs an IPv4 address"));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst))?;
    let s = TcpStream::from(fd);
    s.set_nodelay(true)?;
    Ok(s)
}

/// How a login attempt ended.
#[derive(Debug)]
pub enum Login {
    /// Logged in.
    Ready(RawSession),
    /// The server's first frame was a clear ERROR: refused before any key exchange.
    Refused { code: u16, message: String },
    /// An ERROR after the key exchange (AUTH_FAILED for a wrong password, ...).
    Failed { code: u16, message: String },
    /// The connection ended without an ERROR, or nothing came within the time allowed.
    Closed(String),
}

impl Login {
    /// The retry-after delay a refusal carries (RATE_LIMITED), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Login::Refused { message, .. } | Login::Failed { message, .. } => {
                netproto_sys::error::retry_after_in_text(message)
                    .map(|ms| Duration::from_millis(ms as u64))
            }
            _ => None,
        }
    }
}

/// Connects from `src` and logs in with `cfg` (trusting any server key), within `timeout`.
pub fn login_from(src: Ipv4Addr, addr: &str, cfg: &ClientConfig, timeout: Duration) -> Login {
    match connect_from(src, addr) {
        Ok(s) => login_over(s, cfg, timeout),
        Err(e) => Login::Closed(format!("connect: {e}")),
    }
}

/// Logs in with `cfg` over a connection already made (and perhaps already written to: a
/// PROXY header goes before the protocol's first byte), trusting any server key.
pub fn login_over(mut s: TcpStream, cfg: &ClientConfig, timeout: Duration) -> Login {
    let deadline = Instant::now() + timeout;
    let mut conn = match ClientConn::new(cfg, Instant::now()) {
        Ok(c) => c,
        Err(e) => return Login::Closed(e.to_string()),
    };
    let mut seen = Vec::new();
    let mut keyed = false;
    let mut buf = [0u8; 16384];
    loop {
        loop {
            let ev = match conn.poll_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => return Login::Closed(e.message),
            };
            match ev {
                Event::ServerKey { .. } => {
                    keyed = true;
                    if let Err(e) = conn.trust_server_key(true) {
                        return Login::Closed(e.message);
                    }
                }
                Event::Ready => return Login::Ready(RawSession { s, conn, seen }),
                Event::Error { code, message, .. } => {
                    let message = message.to_string();
                    return if keyed {
                        Login::Failed { code, message }
                    } else {
                        Login::Refused { code, message }
                    };
                }
                _ => {}
            }
        }
        let out = conn.pending_output().to_vec();
        if !out.is_empty() {
            if let Err(e) = s.write_all(&out) {
                return Login::Closed(format!("write: {e}"));
            }
            conn.consume_output(out.len(), Instant::now());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Login::Closed("timed out".into());
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return Login::Closed("EOF".into()),
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if let Err(e) = conn.feed(&buf[..n], Instant::now()) {
                    return Login::Closed(e.message);
                }
            }
            Err(e) => return Login::Closed(format!("read: {e}")),
        }
    }
}
