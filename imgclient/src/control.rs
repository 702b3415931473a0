//! Single request/answer exchanges on a logged-in blocking connection: one PING round trip
//! and one STATS fetch. Shared by the operator commands (`ops`) and the load tester, which
//! reads the server's counters before and after a run.
//!
//! Trust boundary: the server's answers, decoded by libnetproto; an ERROR or BYE from the
//! server ends the wait with a typed failure, and every wait is bounded by a timeout.

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
