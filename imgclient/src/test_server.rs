//! Test support (compiled only for unit tests): a server on loopback that completes the
//! handshake and login of every connection, then never sends another byte, so that the
//! connection's dead-peer timer can be exercised with short timers and no sleeping.
//!
//! Trust boundary: none; it speaks the protocol through the same shared library
//! (`netproto_sys::ServerConn`) on a throwaway key in a test directory.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netproto_sys::{Event, ServerConfig, ServerConn, ServerParams};

use crate::connect::{ConnectOpts, Connector};

/// The silent server: its address and key, how many connections it accepted and logged in,
/// and the request ids of the PINGs it received (it reads and drops everything; it answers
/// nothing).
pub struct SilentServer {
    pub addr: String,
    pub key: [u8; 32],
    pub conns: Arc<AtomicUsize>,
    pub logins: Arc<AtomicUsize>,
    pub pings: Arc<Mutex<Vec<u64>>>,
}

impl SilentServer {
    /// Listens on a free loopback port with a key in `dir` and the user `alice` / `pw`.
    pub fn start(dir: &Path) -> SilentServer {
        let params = ServerParams {
            max_chunk: netproto_sys::limits::MAX_CHUNK_DATA as u32,
            max_upload: 1 << 20,
            max_in_flight: 4,
        };
        let mut cfg = ServerConfig::new(&dir.join("server.key"), params).unwrap();
        let verifier = netproto_sys::verifier_create(b"pw", 4096).unwrap();
        cfg.add_user("alice", &verifier).unwrap();
        let key = *cfg.public_key();
        let cfg = Arc::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let logins = Arc::new(AtomicUsize::new(0));
        let pings = Arc::new(Mutex::new(Vec::new()));
        let (c, l, p) = (conns.clone(), logins.clone(), pings.clone());
        // The threads end with the test process (accept) or when the client goes away.
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                c.fetch_add(1, Ordering::Relaxed);
                let (cfg, logins, pings) = (cfg.clone(), l.clone(), p.clone());
                std::thread::spawn(move || serve(sock, &cfg, &logins, &pings));
            }
        });
        SilentServer {
            addr,
            key,
            conns,
            logins,
            pings,
        }
    }

    /// A connector for `alice` at this server whose connections run with these timers; no
    /// retry budget for failed connects.
    pub fn connector(
        &self,
        dir: &Path,
        heartbeat: Duration,
        dead_after: Duration,
    ) -> Arc<Connector> {
        std::fs::write(dir.join("pw"), "pw\n").unwrap();
        Connector::new(&ConnectOpts {
            servers: vec![self.addr.clone()],
            user: Some("alice".into()),
            password_file: Some(dir.join("pw")),
            known_servers: Some(dir.join("known_servers")),
            timeout: Duration::from_secs(10),
            retry_for: Duration::ZERO,
            heartbeat,
            dead_after,
        })
        .unwrap()
    }
}

/// One connection: the handshake and login replies (LOGIN_OK included) go out; after login
/// nothing does, not even PONGs.
fn serve(
    mut sock: std::net::TcpStream,
    cfg: &ServerConfig,
    logins: &AtomicUsize,
    pings: &Mutex<Vec<u64>>,
) {
    let mut conn = ServerConn::new(cfg, Instant::now()).unwrap();
    let mut logged_in = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => return, // the client went away
            Ok(n) => n,
        };
        let was_logged_in = logged_in;
        let mut off = 0;
        while off < n {
            let Ok(used) = conn.feed(&buf[off..n], Instant::now()) else {
                return;
            };
            off += used;
            while let Ok(Some(ev)) = conn.poll_event() {
                match ev {
                    Event::LoggedIn { .. } => {
                        logged_in = true;
                        logins.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Ping { id, .. } => pings.lock().unwrap().push(id),
                    _ => {}
                }
            }
            if used == 0 {
                break;
            }
        }
        if !was_logged_in {
            let out = conn.pending_output().to_vec();
            if sock.write_all(&out).is_err() {
                return;
            }
            conn.consume_output(out.len(), Instant::now());
        }
    }
}
