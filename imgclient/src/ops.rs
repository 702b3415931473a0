//! Operator commands: `ping` (round-trip time), `stats` (the server's counters as a table or
//! JSON), `health` (a PROBE without password, or `--login` a full login and PING: one line
//! and an exit status for scripts and probes) and `pin` (a server key verified out of band,
//! pinned before the first login).
//!
//! Trust boundary: the server's STATS body is decoded by libnetproto; counter names are
//! server-chosen text, printed as data (escaped in JSON), never interpreted. `pin` trusts
//! nothing the server says but the key it proves, and only if it has the given fingerprint.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::connect::{pin_fingerprint, Connector, Pinned};
use crate::control::{fetch_stats, ping_once, probe, ProbeOutcome};
use crate::exit::Failure;
use crate::json::Object;

pub fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `imgclient ping`.
pub fn ping(connector: &Connector, count: u32, interval: Duration) -> Result<(), Failure> {
    let t0 = Instant::now();
    let (server, mut client) = connector
        .connect_round(0)
        .map_err(|e| connector.failure(&e))?;
    log::info!("connected and logged in in {}", fmt_ms(t0.elapsed()));
    let mut rtts = Vec::new();
    for seq in 1..=count.max(1) {
        if seq > 1 {
            std::thread::sleep(interval);
        }
        let rtt = ping_once(&mut client, seq as u64, connector.timeout)?;
        cliutil::output::print(&format!(
            "pong from {}: seq={seq} time={}\n",
            connector.addr(server),
            fmt_ms(rtt)
        ))
        .map_err(|e| Failure::io("writing to stdout", e))?;
        rtts.push(rtt);
    }
    if rtts.len() > 1 {
        let min = rtts.iter().min().copied().unwrap_or_default();
        let max = rtts.iter().max().copied().unwrap_or_default();
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        cliutil::output::print(&format!(
            "{} pings: min {} avg {} max {}\n",
            rtts.len(),
            fmt_ms(min),
            fmt_ms(avg),
            fmt_ms(max)
        ))
        .map_err(|e| Failure::io("writing to stdout", e))?;
    }
    Ok(())
}

/// `imgclient pin --fingerprint FP`.
pub fn pin(
    addr: &str,
    known_servers: &Path,
    fingerprint: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let how = match pin_fingerprint(addr, known_servers, fingerprint, timeout)? {
        Pinned::New => "pinned",
        Pinned::Already => "already pinned",
    };
    println!(
        "{how}: server {addr} key {fingerprint} (in {})",
        known_servers.display()
    );
    Ok(())
}

/// Counters as an aligned two-column table.
pub fn stats_table(stats: &[(String, u64)]) -> String {
    let w = stats.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let vw = stats
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(0);
    stats
        .iter()
        .map(|(n, v)| format!("{n:<w$}  {v:>vw$}\n"))
        .collect()
}

/// Counters as one JSON object in the server's order, two-space indented.
pub fn stats_json(stats: &[(String, u64)]) -> String {
    let counters: Object<&str, u64> = stats.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    serde_json::to_string_pretty(&counters).expect("string keys and integers always serialize")
}

/// `imgclient stats`.
pub fn stats(connector: &Connector, json: bool) -> Result<(), Failure> {
    let mut client = connector
        .connect_once()
        .map_err(|e| connector.failure(&e))?;
    let stats = fetch_stats(&mut client, 1, connector.timeout)?;
    let text = if json {
        stats_json(&stats) + "\n"
    } else {
        stats_table(&stats)
    };
    cliutil::output::print(&text).map_err(|e| Failure::io("writing to stdout", e))
}

/// `imgclient health`: a PROBE, no password. Prints one line whatever happens (`ready`,
/// `up, not ready`, `draining`, the refusal or the connection error); healthy only when the
/// server says ready. With a list, the servers are probed in order until one is ready, one
/// line each, prefixed by its address: healthy when any is, as a client failing over would
/// find a server.
pub fn health_probe(servers: &[String], timeout: Duration) -> bool {
    for addr in servers {
        let outcome = probe(addr, timeout);
        let line = if servers.len() > 1 {
            format!("{addr}: {}\n", outcome.line())
        } else {
            format!("{}\n", outcome.line())
        };
        // A probe reports by its exit code even if stdout is gone.
        let _ = cliutil::output::print(&line);
        if matches!(outcome, ProbeOutcome::Status(netproto_sys::Probe::Ready)) {
            return true;
        }
    }
    false
}

/// `imgclient health --login`: healthy when a login succeeds and a PING is answered in time.
pub fn health(connector: &Connector, verbose: bool) -> Result<Duration, Failure> {
    let t0 = Instant::now();
    let (server, mut client) = connector
        .connect_round(0)
        .map_err(|e| connector.failure(&e))?;
    let rtt = ping_once(&mut client, 1, connector.timeout)?;
    if verbose {
        eprintln!(
            "healthy: {} logged in after {}, ping {}",
            connector.addr(server),
            fmt_ms(t0.elapsed() - rtt),
            fmt_ms(rtt)
        );
    }
    Ok(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned() {
        let s = vec![
            ("jobs_ok".to_string(), 12345u64),
            ("queue_us_total".to_string(), 7),
        ];
        assert_eq!(
            stats_table(&s),
            "jobs_ok         12345\nqueue_us_total      7\n"
        );
        assert_eq!(stats_table(&[]), "");
    }

    #[test]
    fn json_escapes_names() {
        let s = vec![("a\"b\\c\n".to_string(), 1u64), ("d".to_string(), 2)];
        let j = stats_json(&s);
        // The same text as before serde: two-space indent, the server's order.
        assert_eq!(j, "{\n  \"a\\\"b\\\\c\\n\": 1,\n  \"d\": 2\n}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["a\"b\\c\n"], 1);
        assert_eq!(v["d"], 2);
        assert_eq!(stats_json(&[]), "{}");
    }
}
