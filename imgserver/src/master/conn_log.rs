//! The master's log lines about client connections: every refusal, timeout, limit hit and
//! failed job answer in one shape, `conn 17 127.0.0.1:50312 user alice: what happened`, with
//! the connection id, peer and user as structured fields (cliutil writes them in front of
//! the message, or as JSON fields), and held to a per-source budget (`log_limit.rs`) so one
//! client causing 10,000 refusals writes a handful of lines and one summary.
//!
//! Trust boundary: the lines quote what a peer sent (a user name, an op spec, an error
//! text); cliutil's logger escapes messages and fields alike, so this part formats freely.
//! A line over its source's budget is not lost to someone debugging: it is still written at
//! debug level, only the default level's operator is spared it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use log::Level;

use super::admission::Source;
use super::log_limit::{LogBudget, LogLimiter};

/// Which connection a line is about: its id once it has a slot, its peer, its user once it
/// logged in.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub conn: Option<u64>,
    pub peer: SocketAddr,
    pub user: Option<&'a str>,
}

/// Writes one line about `who` at `level` (no budget: for the few lines a connection can
/// cause once, such as its login).
pub fn line(level: Level, who: Who<'_>, msg: fmt::Arguments<'_>) {
    let peer = who.peer;
    match (who.conn, who.user) {
        (Some(conn), Some(user)) => {
            log::log!(level, conn = conn, peer:% = peer, user = user; "{msg}")
        }
        (Some(conn), None) => log::log!(level, conn = conn, peer:% = peer; "{msg}"),
        (None, Some(user)) => log::log!(level, peer:% = peer, user = user; "{msg}"),
        (None, None) => log::log!(level, peer:% = peer; "{msg}"),
    }
}

/// The server-wide budget on top of the per-source ones: a flood spread over many addresses
/// (each within its own budget) must not flood the log either.
const ALL_SOURCES: LogBudget = LogBudget {
    burst: 100,
    per_sec: 20,
    ..LogBudget::DEFAULT
};

/// The per-source budget of connection lines, and the server-wide one.
#[derive(Debug)]
pub struct ConnLog {
    limiter: LogLimiter<Source>,
    all: LogLimiter<()>,
}

impl ConnLog {
    pub fn new(budget: LogBudget) -> ConnLog {
        ConnLog {
            limiter: LogLimiter::new(budget),
            all: LogLimiter::new(ALL_SOURCES),
        }
    }

    /// A line about `who` at `level` if its source, and the server, have budget left at
    /// `now`; else at debug (and counted for the source's, or the server-wide, summary).
    pub fn limited(
        &mut self,
        level: Level,
        source: Source,
        who: Who<'_>,
        now: Instant,
        msg: fmt::Arguments<'_>,
    ) {
        if self.limiter.allow(&source, now) && self.all.allow(&(), now) {
            line(level, who, msg);
        } else if log::log_enabled!(Level::Debug) {
            line(Level::Debug, who, msg);
        }
    }

    /// A line about a whole source (no one connection) at `level`, held to the same budgets.
    pub fn limited_source(
        &mut self,
        level: Level,
        source: Source,
        now: Instant,
        msg: fmt::Arguments<'_>,
    ) {
        let level = if self.limiter.allow(&source, now) && self.all.allow(&(), now) {
            level
        } else {
            Level::Debug
        };
        log::log!(level, source:% = source; "{msg}");
    }

    /// Writes the summaries due at `now` (call it from the periodic sweep).
    pub fn summaries(&mut self, now: Instant) {
        for s in self.limiter.summaries(now) {
            log::info!(
                source:% = s.peer;
                "suppressed {} similar lines from {} in the last {:.0} s",
                s.suppressed,
                s.peer,
                s.over.as_secs_f64().ceil()
            );
        }
        for s in self.all.summaries(now) {
            log::info!(
                "suppressed {} lines about connections from many addresses in the last {:.0} s (over the server-wide budget)",
                s.suppressed,
                s.over.as_secs_f64().ceil()
            );
        }
    }
}
