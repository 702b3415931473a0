//! The server list behind `--server A,B,C` and the order connections walk it in: parsing and
//! validating the list, the order of one connect round (from a start index, wrapping), which
//! server a connection starts on and fails over to, whether a failed attempt moves on to the
//! next server or ends the round, and the one error a failed round is reported as.
//!
//! Trust boundary: user input (the list from argv or IMGCLIENT_SERVER) and, for the round's
//! decisions, the library's classification of a failed connect. Pure: no sockets, no clock,
//! so the rules are tested here directly; `connect.rs` and the bench engine do the I/O.

use netproto_sys::{ffi, NpError};

use crate::retry;

/// Parses `HOST:PORT[,HOST:PORT...]`: every entry checked like a single address, none empty,
/// none twice (a repeated entry would only make a round try one server twice). The error
/// names the bad entry and its position, so a typo in a long list is found at once.
pub fn parse_server_list(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in s.split(',').enumerate() {
        let pos = i + 1;
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(format!("server list entry {pos} is empty (in {s:?})"));
        }
        let addr = cliutil::units::parse_host_port(entry)
            .map_err(|e| format!("server list entry {pos} {entry:?}: {e}"))?;
        if out.contains(&addr) {
            return Err(format!("server list entry {pos} {entry:?} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// The servers one connect round tries, in order: `start` first, then the ones after it,
/// wrapping, each once.
pub fn round_order(start: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (start % n.max(1) + k) % n.max(1))
}

/// Where a connection whose server went away (lost, shut down) tries first: the next one,
/// so the clients of a dead server do not all knock on it again before anything else.
pub fn next_after(current: usize, n: usize) -> usize {
    (current + 1) % n.max(1)
}

/// The server bench connection `conn_no` starts on: round-robin over the list.
pub fn start_for(conn_no: usize, n: usize) -> usize {
    conn_no % n.max(1)
}

/// What a failed attempt on one server means for the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Unreachable, refused, busy, shutting down, rate-limited: try the next server.
    Next,
    /// Fails the same way everywhere or is an attack signal (a changed key, a refused login,
    /// a local file): the round, and the connect, end here. A changed key is never skipped
    /// over to another server that would then silently get the job.
    Stop,
}

pub fn step_after(e: &NpError) -> Step {
    if retry::np_retryable(e) {
        Step::Next
    } else {
        Step::Stop
    }
}

/// The one error for a round in which no server answered, from each server's error (in the
/// order tried). With one server it is that server's error, unchanged. With several, the
/// status and retry-after are those of the one that matters most for what happens next:
/// a server that is up and said "not now" (so a first connect waits rather than failing
/// fast; the shortest retry-after among those), else the last one; the message names every
/// server and why it failed.
pub fn round_error(tries: Vec<(String, NpError)>) -> NpError {
    if tries.len() == 1 {
        return tries
            .into_iter()
            .next()
            .map(|(_, e)| e)
            .unwrap_or_else(no_servers);
    }
    let message = tries
        .iter()
        .map(|(addr, e)| format!("{addr}: {}", e.message))
        .collect::<Vec<_>>()
        .join("; ");
    let later = tries
        .iter()
        .filter(|(_, e)| retry::server_said_later(e))
        .min_by_key(|(_, e)| retry::server_hint(e));
    let chosen = later.or(tries.last()).map(|(_, e)| e.clone());
    let mut e = chosen.unwrap_or_else(no_servers);
    e.message = format!("no server answered ({message})");
    e
}

fn no_servers() -> NpError {
    NpError {
        status: ffi::NP_IO,
        remote: None,
        message: "no server to connect to".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netproto_sys::{ErrorCode, Remote};

    fn io(msg: &str) -> NpError {
        NpError {
            status: ffi::NP_IO,
            remote: None,
            message: msg.into(),
        }
    }

    fn remote(code: ErrorCode, retry_after_ms: u32) -> NpError {
        NpError {
            status: ffi::NP_REMOTE_ERROR,
            remote: Some(Remote {
                code: code as u16,
                retry_after_ms,
            }),
            message: format!("server error {code:?}"),
        }
    }

    #[test]
    fn lists_parse_with_each_entry_checked() {
        assert_eq!(parse_server_list("h:1").unwrap(), ["h:1"]);
        assert_eq!(
            parse_server_list("a:1, b:2 ,[::1]:3").unwrap(),
            ["a:1", "b:2", "[::1]:3"]
        );
        let e = parse_server_list("a:1,b,c:3").unwrap_err();
        assert!(e.contains("entry 2 \"b\"") && e.contains("no :PORT"), "{e}");
        let e = parse_server_list("a:1,c:99999").unwrap_err();
        assert!(e.contains("entry 2 \"c:99999\""), "{e}");
        let e = parse_server_list("a:1,,b:2").unwrap_err();
        assert!(e.contains("entry 2 is empty"), "{e}");
        assert!(parse_server_list("a:1,").unwrap_err().contains("entry 2"));
        assert!(parse_server_list("").unwrap_err().contains("entry 1"));
        let e = parse_server_list("a:1,b:2,a:1").unwrap_err();
        assert!(e.contains("entry 3") && e.contains("twice"), "{e}");
    }

    #[test]
    fn a_round_tries_each_server_once_from_the_start_index() {
        assert_eq!(round_order(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(round_order(1, 3).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(round_order(2, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(round_order(4, 3).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(round_order(0, 1).collect::<Vec<_>>(), [0]);
        assert_eq!(round_order(0, 0).count(), 0);
    }

    #[test]
    fn failover_goes_to_the_next_server_and_bench_spreads_round_robin() {
        assert_eq!(next_after(0, 2), 1);
        assert_eq!(next_after(1, 2), 0);
        assert_eq!(next_after(0, 1), 0);
        let starts: Vec<usize> = (0..7).map(|c| start_for(c, 3)).collect();
        assert_eq!(starts, [0, 1, 2, 0, 1, 2, 0]);
        assert!((0..20).all(|c| start_for(c, 1) == 0));
    }

    #[test]
    fn refused_and_busy_servers_are_skipped_but_a_changed_key_stops_the_round() {
        assert_eq!(step_after(&io("connection refused")), Step::Next);
        assert_eq!(
            step_after(&remote(ErrorCode::TooManyConnections, 0)),
            Step::Next
        );
        assert_eq!(step_after(&remote(ErrorCode::RateLimited, 500)), Step::Next);
        let key = NpError {
            status: ffi::NP_SERVER_KEY_CHANGED,
            remote: None,
            message: "server key changed".into(),
        };
        assert_eq!(step_after(&key), Step::Stop);
        assert_eq!(step_after(&remote(ErrorCode::AuthFailed, 0)), Step::Stop);
    }

    #[test]
    fn a_failed_round_is_one_error_naming_every_server() {
        let one = round_error(vec![("a:1".into(), io("refused"))]);
        assert_eq!(one, io("refused"), "one server: its own error, unchanged");
        let e = round_error(vec![
            ("a:1".into(), io("refused")),
            ("b:2".into(), io("reset")),
        ]);
        assert_eq!(e.status, ffi::NP_IO);
        assert_eq!(e.message, "no server answered (a:1: refused; b:2: reset)");
        // A server that said "not now" decides (a first connect waits it out), with the
        // shortest retry-after among those that said so.
        let e = round_error(vec![
            ("a:1".into(), remote(ErrorCode::RateLimited, 900)),
            ("b:2".into(), remote(ErrorCode::RateLimited, 300)),
            ("c:3".into(), io("refused")),
        ]);
        assert!(retry::server_said_later(&e));
        assert_eq!(e.remote.unwrap().retry_after_ms, 300);
        assert!(e.message.contains("c:3: refused"), "{}", e.message);
    }
}
