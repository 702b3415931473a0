//! Durations, sizes and addresses as both binaries read them from the command line, the
//! environment and the server's config file, and as their `--help` shows them.
//!
//! Trust boundary: text typed by an operator or a script. Every bad value is a typed
//! [`UnitError`] that says what was expected (clap turns it into a usage error naming the
//! flag); nothing here panics or saturates silently.
//!
//! The rules, one place for both binaries:
//! - durations: `500ms`, `10s`, `1.5s`, `2m`, `1h`, `1h 30m` (humantime's grammar); a bare
//!   number, decimals allowed, is seconds, so `--grace 5` still means five seconds.
//! - sizes: `64MiB`, `512K`, `4M`, `1.5GiB`, `4096`; a bare number is bytes. `K`, `M`, `G`
//!   and `T` (with or without `B`) are powers of 1024, the same as `KiB`, `MiB`, `GiB`, `TiB`:
//!   every size the server takes is memory, and `--max-upload 64M` must mean the `64MiB` the
//!   default says, not 61 MiB.
//! - addresses: `HOST:PORT` or `[V6]:PORT`, a host name resolved once; when a name has several
//!   addresses the first IPv4 one is used, else the first the resolver returns.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Why a value was refused; the text is what the user sees after clap's "invalid value".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "{value:?} is not a duration: {why} (e.g. 500ms, 10s, 2m, 1h, or a number of seconds)"
    )]
    Duration { value: String, why: String },
    #[error("{value:?} is not a size: {why} (e.g. 64MiB, 512K, 1.5GiB, or a number of bytes)")]
    Size { value: String, why: String },
    #[error("{value:?} is not HOST:PORT: {why}")]
    Address { value: String, why: String },
    #[error("cannot resolve host {host:?}: {why}")]
    Resolve { host: String, why: String },
}

/// The longest duration accepted, about 31 years: far beyond any timer the binaries keep, and
/// small enough that adding it to any `Instant` cannot overflow (which would panic).
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// `s` trimmed, unless it is empty or negative (neither parser below says so clearly).
fn present_and_unsigned(s: &str) -> Result<&str, &'static str> {
    let t = s.trim();
    if t.is_empty() {
        Err("empty")
    } else if t.starts_with('-') {
        Err("negative")
    } else {
        Ok(t)
    }
}

/// Parses a duration: humantime's units, or a bare (decimal) number of seconds; at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = |why: &dyn std::fmt::Display| UnitError::Duration {
        value: s.to_string(),
        why: why.to_string(),
    };
    let t = present_and_unsigned(s).map_err(|w| err(&w))?;
    // A bare number is seconds (`--grace 5`, `--grace 0.5`); humantime insists on a unit.
    let d = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| err(&"not a number"))?;
        Duration::try_from_secs_f64(secs).map_err(|_| err(&"out of range"))?
    } else {
        humantime::parse_duration(t).map_err(|e| err(&e))?
    };
    if d > MAX_DURATION {
        return Err(err(&"longer than 1000000000s (about 31 years)"));
    }
    Ok(d)
}

/// Parses a size in bytes: a bare number, or one with a unit (binary: `K` = `KiB` = 1024).
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let err = |why: &dyn std::fmt::Display| UnitError::Size {
        value: s.to_string(),
        why: why.to_string(),
    };
    let t = present_and_unsigned(s).map_err(|w| err(&w))?;
    parse_size::Config::new()
        .with_binary()
        .parse_size(t)
        .map_err(|e| err(&e))
}

/// [`parse_size`] for a field of type `usize`.
pub fn parse_size_usize(s: &str) -> Result<usize, UnitError> {
    let v = parse_size(s)?;
    usize::try_from(v).map_err(|_| UnitError::Size {
        value: s.to_string(),
        why: "too large for this machine".into(),
    })
}

/// Checks that `s` has the form `HOST:PORT` (or `[V6]:PORT`) without resolving it; returns
/// it trimmed. For a client, whose name may resolve again after an outage.
pub fn parse_host_port(s: &str) -> Result<String, UnitError> {
    split_host_port(s).map(|_| s.trim().to_string())
}

fn split_host_port(s: &str) -> Result<(&str, u16), UnitError> {
    let bad = |why: &str| UnitError::Address {
        value: s.to_string(),
        why: why.to_string(),
    };
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    Ok((host, port))
}

/// Resolves `HOST:PORT` to one address (see the module header for which one).
pub fn resolve_addr(s: &str) -> Result<SocketAddr, UnitError> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, _) = split_host_port(s)?;
    let addrs: Vec<SocketAddr> = t
        .to_socket_addrs()
        .map_err(|e| UnitError::Resolve {
            host: host.to_string(),
            why: e.to_string(),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| UnitError::Resolve {
            host: host.to_string(),
            why: "no address".into(),
        })
}

/// A duration the way [`parse_duration`] reads it back: `10s`, `2m`, `500ms`, `1h 30m`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// A size the way [`parse_size`] reads it back: the largest binary unit it is a whole number
/// of (`64MiB`, `256KiB`), else bytes.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        let m = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_and_bare_seconds() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("5"), Duration::from_secs(5));
        assert_eq!(ok("0.25"), Duration::from_millis(250));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        assert_eq!(ok("1000000000"), MAX_DURATION);
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        for bad in [
            "",
            "ten",
            "10x",
            "-1s",
            "-5",
            "1.2.3",
            "5 parsecs",
            "s",
            "1000000001",
            "99999999999999999999999",
            "40years",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(matches!(e, UnitError::Duration { .. }), "{bad:?}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("e.g. 500ms, 10s"), "{msg}");
        }
        assert!(parse_duration("10x")
            .unwrap_err()
            .to_string()
            .contains("unknown time unit \"x\""));
        assert!(parse_duration("-1s")
            .unwrap_err()
            .to_string()
            .contains("negative"));
    }

    #[test]
    fn sizes_are_binary_with_or_without_the_i() {
        let ok = |s: &str| parse_size(s).unwrap();
        assert_eq!(ok("64MiB"), 64 << 20);
        assert_eq!(ok("64M"), 64 << 20);
        assert_eq!(ok("64MB"), 64 << 20);
        assert_eq!(ok("512K"), 512 << 10);
        assert_eq!(ok("4M"), 4 << 20);
        assert_eq!(ok("1.5GiB"), 3 << 29);
        assert_eq!(ok("4096"), 4096);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("1 KiB"), 1024);
        assert_eq!(parse_size_usize("256KiB"), Ok(256 << 10));
    }

    #[test]
    fn bad_sizes_say_what_was_expected() {
        for bad in [
            "",
            "big",
            "64XB",
            "-1",
            "-4M",
            "1.2.3M",
            "99999999999999999999",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(matches!(e, UnitError::Size { .. }), "{bad:?}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("e.g. 64MiB"), "{msg}");
        }
    }

    #[test]
    fn formats_read_back_the_same() {
        for d in [500, 3_000, 10_000, 120_000, 600_000, 5_400_000, 0] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for b in [
            0,
            1,
            4096,
            256 << 10,
            4 << 20,
            64 << 20,
            3 << 29,
            5 << 40,
            1000,
        ] {
            assert_eq!(parse_size(&format_size(b)), Ok(b), "{b}");
        }
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(256 << 10), "256KiB");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn addresses_resolve_names_and_refuse_the_unresolvable() {
        assert_eq!(
            resolve_addr("127.0.0.1:7878"),
            Ok("127.0.0.1:7878".parse().unwrap())
        );
        assert_eq!(resolve_addr("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        let lo = resolve_addr("localhost:0").unwrap();
        assert!(lo.ip().is_loopback(), "{lo}");
        assert_eq!(lo.port(), 0);
        // .invalid never resolves (RFC 6761).
        let e = resolve_addr("no-such-host.invalid:7878").unwrap_err();
        assert!(
            matches!(&e, UnitError::Resolve { host, .. } if host == "no-such-host.invalid"),
            "{e:?}"
        );
        assert!(e.to_string().contains("no-such-host.invalid"));
        for bad in [
            "localhost",
            ":7878",
            "localhost:http",
            "localhost:70000",
            "[]:1",
        ] {
            assert!(
                matches!(resolve_addr(bad), Err(UnitError::Address { .. })),
                "{bad}"
            );
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_host_port(" no-such-host.invalid:7878"),
            Ok("no-such-host.invalid:7878".to_string()),
            "the client's check does not resolve"
        );
        assert!(parse_host_port("[::1]:7878").is_ok());
    }
}
