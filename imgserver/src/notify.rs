//! systemd's service notification (sd_notify(3), for `Type=notify`): a pure schedule that
//! decides when the master says READY=1, WATCHDOG=1 and STOPPING=1 (time and the server's
//! state are passed in, so it is unit-tested without sockets), and the thin sender that puts
//! those states on $NOTIFY_SOCKET through the `sd-notify` crate.
//!
//! Trust boundary: the service manager's side. NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID
//! come from whoever started the master; a value that is missing, malformed or meant for
//! another pid turns the feature off, and a send that fails is logged (once) and otherwise
//! ignored: the service manager's absence never stops the server. Only the master speaks:
//! workers get none of these variables (`spawn`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use log::{debug, warn};
use sd_notify::NotifyState;

/// One notification the schedule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// READY=1: listening, and at least one worker is ready to take a job.
    Ready,
    /// WATCHDOG=1: the event loop is still turning.
    Watchdog,
    /// STOPPING=1: shutdown has begun.
    Stopping,
}

/// When to notify. READY=1 once the server serves; WATCHDOG=1 every half watchdog period
/// from READY=1 on (systemd arms the watchdog when start-up is over; start-up itself is
/// bounded by TimeoutStartSec) until STOPPING=1 (systemd disarms it when the stop begins);
/// STOPPING=1 once.
#[derive(Debug)]
pub struct Schedule {
    /// Half of WATCHDOG_USEC, when the watchdog is on.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    ready: bool,
    stopping: bool,
}

impl Schedule {
    /// `watchdog`: WATCHDOG_USEC when it is set for this process (`None` or zero: off).
    pub fn new(watchdog: Option<Duration>) -> Schedule {
        Schedule {
            ping_every: watchdog.filter(|d| !d.is_zero()).map(|d| d / 2),
            next_ping: None,
            ready: false,
            stopping: false,
        }
    }

    /// What to send at `now`, given whether the server serves (listening with a worker
    /// ready) and whether shutdown has begun. At most one of each note per call.
    pub fn turn(&mut self, now: Instant, serving: bool, stopping: bool) -> Vec<Note> {
        let mut out = Vec::new();
        if stopping {
            if !self.stopping {
                self.stopping = true;
                self.next_ping = None;
                out.push(Note::Stopping);
            }
            return out;
        }
        if serving && !self.ready {
            self.ready = true;
            out.push(Note::Ready);
            self.next_ping = self.ping_every.map(|p| now + p);
            return out;
        }
        if let (Some(every), Some(at)) = (self.ping_every, self.next_ping) {
            if now >= at {
                out.push(Note::Watchdog);
                // From now, not from `at`: a loop that stalled must not burst pings to catch up.
                self.next_ping = Some(now + every);
            }
        }
        out
    }

    /// How long the event loop may sleep before the next ping is due (`None`: no ping is).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next_ping.map(|at| at.saturating_duration_since(now))
    }
}

/// The schedule and the socket it reports to.
#[derive(Debug)]
pub struct Notifier {
    schedule: Schedule,
    /// Whether NOTIFY_SOCKET is set at all (otherwise nothing is sent).
    enabled: bool,
    /// A failed send is logged once, not every half watchdog period.
    warned: bool,
}

impl Notifier {
    /// From the environment the master was started with.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        // WATCHDOG_USEC counts only when WATCHDOG_PID is unset or this process's pid.
        let watchdog = sd_notify::watchdog_enabled();
        if enabled {
            debug!(
                "service manager notification on; watchdog {}",
                watchdog.map_or("off".into(), |d| format!("{} ms", d.as_millis()))
            );
        }
        Notifier {
            schedule: Schedule::new(watchdog.filter(|_| enabled)),
            enabled,
            warned: false,
        }
    }

    /// One event-loop turn: sends what is due. `status` is asked for only when READY=1 or
    /// STOPPING=1 goes out, for the STATUS= line sent with it.
    pub fn turn(
        &mut self,
        now: Instant,
        serving: bool,
        stopping: bool,
        status: impl FnOnce() -> String,
    ) {
        if !self.enabled {
            return;
        }
        let notes = self.schedule.turn(now, serving, stopping);
        if notes.is_empty() {
            return;
        }
        let text = notes
            .iter()
            .any(|n| *n != Note::Watchdog)
            .then(status)
            .unwrap_or_default();
        let mut states: Vec<NotifyState<'_>> = notes
            .iter()
            .map(|n| match n {
                Note::Ready => NotifyState::Ready,
                Note::Watchdog => NotifyState::Watchdog,
                Note::Stopping => NotifyState::Stopping,
            })
            .collect();
        if !text.is_empty() {
            states.push(NotifyState::Status(&text));
        }
        if let Err(e) = send(&states) {
            if !self.warned {
                self.warned = true;
                warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
            }
        }
    }

    /// How long the event loop may sleep before a watchdog ping is due.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.schedule.timeout(now)
    }
}

/// Sends one datagram. A socket path goes through the crate; an abstract-namespace address
/// (`@name`, which systemd accepts and the crate does not: it would take `@name` for a file
/// name) is connected here by std's abstract-address support, with the crate's own text.
fn send(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
    let Some(name) = socket.as_encoded_bytes().strip_prefix(b"@") else {
        return sd_notify::notify(states);
    };
    let text: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    let n = sock.send(text.as_bytes())?;
    if n != text.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "notification cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ready_once_when_serving_then_pings_every_half_period() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Some(400 * MS));
        assert_eq!(s.turn(t0, false, false), []);
        assert_eq!(s.timeout(t0), None, "no ping before READY");
        assert_eq!(s.turn(t0 + 10 * MS, true, false), [Note::Ready]);
        assert_eq!(s.timeout(t0 + 10 * MS), Some(200 * MS));
        assert_eq!(s.turn(t0 + 100 * MS, true, false), []);
        assert_eq!(s.turn(t0 + 210 * MS, true, false), [Note::Watchdog]);
        assert_eq!(s.turn(t0 + 300 * MS, true, false), []);
        assert_eq!(s.turn(t0 + 410 * MS, true, false), [Note::Watchdog]);
        // A worker lost later does not make the server unready, nor READY repeat.
        assert_eq!(s.turn(t0 + 500 * MS, false, false), []);
        assert_eq!(s.turn(t0 + 611 * MS, false, false), [Note::Watchdog]);
    }

    #[test]
    fn a_stalled_loop_gets_one_ping_not_a_burst() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Some(100 * MS));
        assert_eq!(s.turn(t0, true, false), [Note::Ready]);
        assert_eq!(s.turn(t0 + 1000 * MS, true, false), [Note::Watchdog]);
        assert_eq!(s.turn(t0 + 1001 * MS, true, false), []);
        assert_eq!(s.timeout(t0 + 1001 * MS), Some(49 * MS));
    }

    #[test]
    fn stopping_once_and_no_ping_after_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Some(100 * MS));
        s.turn(t0, true, false);
        assert_eq!(s.turn(t0 + 10 * MS, true, true), [Note::Stopping]);
        assert_eq!(s.timeout(t0 + 10 * MS), None);
        assert_eq!(s.turn(t0 + 500 * MS, true, true), []);
    }

    #[test]
    fn stopping_before_ready_never_says_ready() {
        let t0 = Instant::now();
        let mut s = Schedule::new(None);
        assert_eq!(s.turn(t0, false, true), [Note::Stopping]);
        assert_eq!(s.turn(t0, true, true), []);
    }

    #[test]
    fn without_watchdog_only_ready_and_stopping() {
        let t0 = Instant::now();
        for off in [None, Some(Duration::ZERO)] {
            let mut s = Schedule::new(off);
            assert_eq!(s.turn(t0, true, false), [Note::Ready]);
            assert_eq!(s.timeout(t0), None);
            assert_eq!(s.turn(t0 + 3600 * 1000 * MS, true, false), []);
            assert_eq!(s.turn(t0 + 3601 * 1000 * MS, true, true), [Note::Stopping]);
        }
    }
}
