//! Client helpers through netproto-sys, the one binding every client uses: log in, send a
//! job in chunks, reassemble its result, and a hand-driven session whose bytes a test can
//! tamper with.
//!
//! Trust boundary: the client side of the network. Nothing here is trusted by the server;
//! the hostile-frame tests use [`RawSession`] to send what no well-behaved client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use netproto_sys::{Client, ClientConfig, Event, ResultInfo};

use crate::{PASSWORD, USER};

/// The sans-IO connection type of netproto-sys, named once here.
pub use netproto_sys::ClientConn;

/// Chunk size of uploads (the protocol's frames carry at most 64 KiB of data).
const CHUNK: usize = netproto_sys::limits::MAX_CHUNK_DATA;

/// A logged-in blocking client (panics if the login fails).
pub fn connect(addr: &str) -> Client {
    connect_as(addr, USER, PASSWORD)
}

/// A blocking client logged in as `user` (panics if the login fails).
pub fn connect_as(addr: &str, user: &str, password: &str) -> Client {
    let cfg = ClientConfig::new(user, password.as_bytes()).unwrap();
    Client::connect(addr, &cfg, None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr} as {user}: {e}"))
}

/// What a job came back as.
#[derive(Debug)]
pub enum Outcome {
    Ok { info: ResultInfo, bytes: Vec<u8> },
    Error { code: u16, message: String },
    Busy { retry_after_ms: u32 },
    Shutdown,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// Sends a whole job in 64 KiB chunks.
pub fn send_job(c: &mut Client, id: u64, spec: &str, input: &[u8]) {
    let t = Duration::from_secs(10);
    let first = input.len().min(CHUNK);
    c.send_job(
        id,
        spec,
        input.len() as u64,
        &input[..first],
        first == input.len(),
        t,
    )
    .unwrap();
    let mut off = first;
    while off < input.len() {
        let end = (off + CHUNK).min(input.len());
        c.send_job_data(id, &input[off..end], end == input.len(), t)
            .unwrap();
        off = end;
    }
}

/// Waits for the answer to job `id`, reassembling a chunked result (events for other
/// requests are a test failure here).
pub fn wait_job(c: &mut Client, id: u64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut info = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} waiting for job {id}"
        );
        let (chunk_info, data, last) = match c.next_event(left).unwrap() {
            Event::JobResult {
                id: rid,
                info,
                data,
                last,
            } if rid == id => (Some(info), data, last),
            Event::ResultData {
                id: rid,
                data,
                last,
            } if rid == id => (None, data, last),
            Event::Error {
                id: rid,
                code,
                message,
            } if rid == id || rid == 0 => {
                return Outcome::Error {
                    code,
                    message: message.to_string(),
                }
            }
            Event::Busy {
                id: rid,
                retry_after_ms,
            } if rid == id => return Outcome::Busy { retry_after_ms },
            Event::Shutdown { .. } => return Outcome::Shutdown,
            Event::Ping { .. } | Event::Pong { .. } => continue,
            e => panic!("unexpected event while waiting for job {id}: {e:?}"),
        };
        if chunk_info.is_some() {
            assert!(info.is_none(), "job {id}: a second JOB_RESULT");
            info = chunk_info;
        }
        bytes.extend_from_slice(data);
        if last {
            let info = info.unwrap_or_else(|| panic!("job {id}: RESULT_DATA before JOB_RESULT"));
            assert_eq!(
                info.total_len,
                bytes.len() as u64,
                "job {id}: result length differs from its announced total"
            );
            return Outcome::Ok { info, bytes };
        }
    }
}

/// Sends job `id` and waits (up to a minute) for its answer.
pub fn run_job(c: &mut Client, id: u64, spec: &str, input: &[u8]) -> Outcome {
    send_job(c, id, spec, input);
    wait_job(c, id, Duration::from_secs(60))
}

/// Reads from `s` until the peer closes it or `wait` passes; returns what arrived and
/// whether the peer closed (EOF or reset).
pub fn read_until_close(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => break,
        }
    }
    (got, false)
}

/// A logged-in session driven by hand over a plain socket, so tests can hold back, replay,
/// reorder or reflect its encrypted frames.
pub struct RawSession {
    pub s: TcpStream,
    pub conn: ClientConn,
    /// Everything the server sent, as received.
    pub seen: Vec<u8>,
}

impl std::fmt::Debug for RawSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawSession({} bytes seen)", self.seen.len())
    }
}

impl RawSession {
    /// Handshake (trusting the server's key) and login.
    pub fn login(addr: &str) -> RawSession {
        let cfg = ClientConfig::new(USER, PASSWORD.as_bytes()).unwrap();
        let conn = ClientConn::new(&cfg, Instant::now()).unwrap();
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = RawSession {
            s,
            conn,
            seen: Vec::new(),
        };
        r.flush();
        loop {
            let ev = r.next_event();
            match ev.as_str() {
                "key" => {
                    r.conn.trust_server_key(true).unwrap();
                    r.flush();
                }
                "ready" => return r,
                other => panic!("unexpected {other} during login"),
            }
        }
    }

    /// Sends everything the connection has queued.
    pub fn flush(&mut self) {
        let out = self.take_output();
        self.s.write_all(&out).unwrap();
    }

    /// Takes what the connection wants to send without sending it.
    pub fn take_output(&mut self) -> Vec<u8> {
        let out = self.conn.pending_output().to_vec();
        self.conn.consume_output(out.len(), Instant::now());
        out
    }

    /// The next event as a short name (events borrow the connection): "key", "ready",
    /// "pong ID", "error CODE", "result ID LAST", "data ID LAST", "fatal MESSAGE", "closed",
    /// or the event's debug form.
    pub fn next_event(&mut self) -> String {
        loop {
            match self.conn.poll_event() {
                Ok(Some(Event::ServerKey { .. })) => return "key".into(),
                Ok(Some(Event::Ready)) => return "ready".into(),
                Ok(Some(Event::Pong { id, .. })) => return format!("pong {id}"),
                Ok(Some(Event::Error { code, .. })) => return format!("error {code}"),
                Ok(Some(Event::JobResult { id, last, .. })) => {
                    return format!("result {id} {last}")
                }
                Ok(Some(Event::ResultData { id, last, .. })) => return format!("data {id} {last}"),
                Ok(Some(e)) => return format!("{e:?}"),
                Ok(None) => {}
                Err(e) => return format!("fatal {}", e.message),
            }
            // Whatever the state machine queued (login replies) must go out before we wait.
            self.flush();
            let mut buf = [0u8; 65536];
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return "closed".into(),
                Ok(n) => {
                    self.seen.extend_from_slice(&buf[..n]);
                    self.conn.feed(&buf[..n], Instant::now()).unwrap();
                }
            }
        }
    }

    /// After a violation: the server's answer (an ERROR it managed to send) then EOF.
    pub fn expect_error_then_close(&mut self) -> Option<u16> {
        let ev = self.next_event();
        let code = ev.strip_prefix("error ").and_then(|c| c.parse().ok());
        let (_, closed) = read_until_close(&mut self.s, Duration::from_secs(3));
        assert!(closed, "server kept the connection open after {ev}");
        code
    }
}
