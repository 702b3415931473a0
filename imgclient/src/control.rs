//! Single request/answer exchanges: one PING round trip and one STATS fetch on a logged-in
//! blocking connection (shared by the operator commands (`ops`) and the load tester, which
//! reads the server's counters before and after a run), and one PROBE on a connection of its
//! own, before any key exchange or login.
//!
//! Trust boundary: the server's answers, decoded by libnetproto; an ERROR or BYE from the
//! server ends the wait with a typed failure, and every wait is bounded by a timeout (a
//! PROBE's reads also by count and by the pre-login input limit).

use std::time::{Duration, Instant};

use netproto_sys::{Client, Event};

use crate::exit::{ExitKind, Failure};

/// What a wait for one answer may end with.
enum Answer<T> {
    Got(T),
    Keep,
}

/// Waits until `pick` accepts an event, failing on an ERROR for `id` (or for the whole
/// connection), on BYE, or at `timeout`.
fn wait_for<T>(
    client: &mut Client,
    id: u64,
    timeout: Duration,
    what: &str,
    mut pick: impl FnMut(&Event<'_>) -> Answer<T>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                ExitKind::Connect,
                what,
                format!("no answer within {} ms", timeout.as_millis()),
            ));
        }
        let ev = client
            .next_event(left)
            .map_err(|e| Failure::from_np(what, &e))?;
        match &ev {
            Event::Error {
                id: eid,
                code,
                message,
            } if *eid == id || *eid == 0 => {
                return Err(Failure::from_wire(what, *code, message));
            }
            Event::Bye => {
                return Err(Failure::new(
                    ExitKind::Connect,
                    what,
                    "server closed the connection",
                ))
            }
            _ => {}
        }
        if let Answer::Got(t) = pick(&ev) {
            return Ok(t);
        }
    }
}

/// One PING/PONG round trip.
pub fn ping_once(client: &mut Client, id: u64, timeout: Duration) -> Result<Duration, Failure> {
    let t0 = Instant::now();
    client
        .send_ping(id, &id.to_be_bytes(), timeout)
        .map_err(|e| Failure::from_np("ping", &e))?;
    wait_for(client, id, timeout, "ping", |ev| match ev {
        Event::Pong { id: pid, .. } if *pid == id => Answer::Got(t0.elapsed()),
        _ => Answer::Keep,
    })
}

/// The server's counters, in the server's order.
pub fn fetch_stats(
    client: &mut Client,
    id: u64,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, Failure> {
    client
        .send_stats_request(id, timeout)
        .map_err(|e| Failure::from_np("stats", &e))?;
    let body = wait_for(client, id, timeout, "stats", |ev| match ev {
        Event::Stats { id: sid, body } if *sid == id => Answer::Got(body.to_vec()),
        _ => Answer::Keep,
    })?;
    netproto_sys::parse_stats(&body).map_err(|e| Failure::from_np("stats", &e))
}

/// What a PROBE learnt: the server's readiness, or why there is no answer.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// The server answered PROBE_REPLY.
    Status(netproto_sys::Probe),
    /// The server refused the connection with an ERROR (the library's text: its code,
    /// name and message).
    Refused(String),
    /// No answer: the connection failed, timed out, or the peer is not a v1 server.
    Failed(String),
}

impl ProbeOutcome {
    /// The one line `imgclient health` prints.
    pub fn line(&self) -> String {
        match self {
            ProbeOutcome::Status(p) => p.describe().to_string(),
            ProbeOutcome::Refused(text) => format!("refused: {text}"),
            ProbeOutcome::Failed(why) => why.clone(),
        }
    }
}

/// Sends PROBE to `addr` on a connection of its own and reads the one frame the server
/// answers with, all within `timeout`. No key, no login, no password.
pub fn probe(addr: &str, timeout: Duration) -> ProbeOutcome {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let fail =
        |what: &str, e: &dyn std::fmt::Display| ProbeOutcome::Failed(format!("{what} {addr}: {e}"));
    let sock_addr = match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => return fail("cannot resolve", &"no address"),
        Err(e) => return fail("cannot resolve", &e),
    };
    let mut sock =
        match TcpStream::connect_timeout(&sock_addr, left().max(Duration::from_millis(1))) {
            Ok(s) => s,
            Err(e) => return fail("cannot connect to", &e),
        };
    if let Err(e) = sock.write_all(&netproto_sys::probe_request()) {
        return fail("cannot send to", &e);
    }
    // One frame is all that comes: at most the largest pre-login frame, so the buffer and the
    // number of reads are both bounded.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    for _ in 0..netproto_sys::limits::MAX_PRE_LOGIN_INPUT {
        match netproto_sys::probe_parse(&buf) {
            Ok(Some(p)) => return ProbeOutcome::Status(p),
            Ok(None) => {}
            Err(e) => {
                return match e.remote {
                    Some(_) => ProbeOutcome::Refused(e.message),
                    None => fail("bad answer from", &e.message),
                }
            }
        }
        let wait = left();
        if wait.is_zero() {
            return fail(
                "no answer from",
                &format!("within {} ms", timeout.as_millis()),
            );
        }
        if let Err(e) = sock.set_read_timeout(Some(wait)) {
            return fail("socket", &e);
        }
        match sock.read(&mut chunk) {
            Ok(0) => return fail("connection closed by", &"before an answer"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return fail(
                    "no answer from",
                    &format!("within {} ms", timeout.as_millis()),
                )
            }
            Err(e) => return fail("cannot read from", &e),
        }
    }
    fail("no answer from", &"too many reads")
}
