//! One resilient connection that runs filter jobs for a batch: pipelines a few jobs at a
//! time, reassembles chunked results, and survives the server going away (reconnect with
//! backoff, starting at the next server of the list, and re-submit whatever was unanswered:
//! filters are idempotent), BUSY (wait the
//! advised time, re-submit) and SHUTDOWN (finish what is in flight, then reconnect), all by
//! the policy in `retry.rs`. The heartbeat and the give-up on a silent server are the
//! connection's own timers (set on the config by `connect.rs`), served while the session
//! waits in the connection for an event.
//!
//! Trust boundary: the server's answers. Result sizes come from the server, so buffers are
//! pre-sized only up to a cap; answers for request ids we have no job for are ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use netproto_sys::limits::MAX_CHUNK_DATA;
use netproto_sys::{ffi, Client, ErrorCode, Event, NpError, ResultInfo};

use crate::connect::Connector;
use crate::exit::{ExitKind, Failure};
use crate::failover;
use crate::retry::{self, Jitter, JobTries, Next, Retry, MAX_ATTEMPTS};
use crate::sys;

/// Longest single wait, so that a stop request is noticed and, while the session waits for
/// new jobs rather than in the connection, the connection's timers are served on time.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Result buffers are pre-allocated up to this; beyond it they grow as data really arrives.
const MAX_PREALLOC: u64 = 64 * 1024 * 1024;

/// One image to filter. `spec` is canonical op-spec text, validated client-side.
#[derive(Debug, Clone)]
pub struct Job {
    pub index: usize,
    pub spec: Arc<str>,
    pub input: Arc<Vec<u8>>,
}

#[derive(Debug)]
pub struct JobOutput {
    pub bytes: Vec<u8>,
    pub info: ResultInfo,
}

/// The outcome of one job, by its index in the batch.
#[derive(Debug)]
pub struct Done {
    pub index: usize,
    pub outcome: Result<JobOutput, Failure>,
}

/// An event with its data copied out, so that handling it may touch the whole session.
enum Ev {
    Result {
        id: u64,
        info: Option<ResultInfo>,
        data: Vec<u8>,
        last: bool,
    },
    Error {
        id: u64,
        code: u16,
        message: String,
    },
    Busy {
        id: u64,
        retry_after: Duration,
    },
    Shutdown {
        grace: Duration,
    },
    Pong,
    Bye,
    Other,
}

fn take_event(client: &mut Client, timeout: Duration) -> Result<Ev, NpError> {
    Ok(match client.next_event(timeout)? {
        Event::JobResult {
            id,
            info,
            data,
            last,
        } => Ev::Result {
            id,
            info: Some(info),
            data: data.to_vec(),
            last,
        },
        Event::ResultData { id, data, last } => Ev::Result {
            id,
            info: None,
            data: data.to_vec(),
            last,
        },
        Event::Error { id, code, message } => Ev::Error {
            id,
            code,
            message: message.to_string(),
        },
        Event::Busy { id, retry_after_ms } => Ev::Busy {
            id,
            retry_after: Duration::from_millis(retry_after_ms as u64),
        },
        Event::Shutdown { grace_ms } => Ev::Shutdown {
            grace: Duration::from_millis(grace_ms as u64),
        },
        Event::Pong { .. } => Ev::Pong,
        Event::Bye => Ev::Bye,
        _ => Ev::Other,
    })
}

/// A job sent on the current connection.
struct Slot {
    job: Job,
    tries: JobTries,
    info: Option<ResultInfo>,
    buf: Vec<u8>,
}

/// A job waiting to be (re-)sent at `due`.
struct Waiting {
    due: Instant,
    job: Job,
    tries: JobTries,
}

/// One connection's worth of job traffic; run it on its own thread with [`Session::run`].
pub struct Session {
    connector: Arc<Connector>,
    client: Option<Client>,
    /// The server of the list the connection is (or was last) on.
    server: usize,
    /// Where the next connect round starts: the current server at first, the one after it
    /// once its connection is lost.
    next_start: usize,
    jobs: Receiver<Job>,
    done: Sender<Done>,
    stop: Arc<AtomicBool>,
    window: usize,
    next_id: u64,
    inflight: HashMap<u64, Slot>,
    waiting: Vec<Waiting>,
    source_done: bool,
    retry: Retry,
    jitter: Jitter,
    /// Set by SHUTDOWN: send nothing new; reconnect once in-flight work is done or this passes.
    draining_until: Option<Instant>,
    /// Set by BUSY: send nothing new before this.
    paused_until: Option<Instant>,
}

/// Why the current connection is being dropped.
type Reason = Failure;

impl Session {
    /// `first` is a connection already made, with its server's index; without one, the
    /// session connects (when it has work) in a round starting at server `start`.
    pub fn new(
        connector: Arc<Connector>,
        first: Option<(usize, Client)>,
        start: usize,
        jobs: Receiver<Job>,
        done: Sender<Done>,
        stop: Arc<AtomicBool>,
        window: usize,
    ) -> Session {
        let retry = Retry::new(connector.retry_for);
        let server = first.as_ref().map_or(start, |(i, _)| *i);
        Session {
            connector,
            client: first.map(|(_, c)| c),
            server,
            next_start: server,
            jobs,
            done,
            stop,
            window: window.max(1),
            next_id: 1,
            inflight: HashMap::new(),
            waiting: Vec::new(),
            source_done: false,
            retry,
            jitter: Jitter::new(),
            draining_until: None,
            paused_until: None,
        }
    }

    /// Runs until every job it took is answered (or failed) and the job channel is closed.
    pub fn run(mut self) {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if self.client.is_none() && !self.reconnect() {
                return;
            }
            if let Err(r) = self.fill() {
                self.disconnect(r);
                continue;
            }
            if self.inflight.is_empty() {
                if self.source_done && self.waiting.is_empty() {
                    if let Some(c) = self.client.take() {
                        drop(c);
                    }
                    return;
                }
                if self.draining_until.is_some() {
                    self.disconnect(Failure::new(ExitKind::Busy, "", "server is shutting down"));
                    continue;
                }
                if let Err(r) = self.idle() {
                    self.disconnect(r);
                }
                continue;
            }
            if let Err(r) = self.wait_once() {
                self.disconnect(r);
            }
        }
    }

    /// Opens a connection if there is (or may be) work for it; false when this session is
    /// finished (no work left, or the server stayed unreachable past the retry budget).
    fn reconnect(&mut self) -> bool {
        if self.waiting.is_empty() {
            // Only connect when there is something to send.
            match self.jobs.recv() {
                Ok(job) => self.waiting.push(Waiting {
                    due: Instant::now(),
                    job,
                    tries: JobTries::default(),
                }),
                Err(_) => {
                    self.source_done = true;
                    return false;
                }
            }
        }
        match self.connector.connect_retrying(
            self.next_start,
            &mut self.retry,
            &mut self.jitter,
            &self.stop,
        ) {
            Ok((server, c)) => {
                if server != self.server {
                    log::info!("now on server {}", self.connector.addr(server));
                }
                self.server = server;
                self.next_start = server;
                self.client = Some(c);
                self.draining_until = None;
                true
            }
            Err(f) => {
                if retry::ends_the_run(f.kind) {
                    // Authentication, pinning, files: every connection fails the same way.
                    self.stop.store(true, Ordering::Relaxed);
                }
                for w in std::mem::take(&mut self.waiting) {
                    self.finish(w.job.index, Err(f.clone()));
                }
                false
            }
        }
    }

    fn finish(&self, index: usize, outcome: Result<JobOutput, Failure>) {
        let _ = self.done.send(Done { index, outcome });
    }

    /// The next job to send: a due re-submission first, else a new one from the channel.
    fn next_job(&mut self, now: Instant) -> Option<Waiting> {
        if let Some(i) = (0..self.waiting.len())
            .filter(|&i| self.waiting[i].due <= now)
            .min_by_key(|&i| self.waiting[i].due)
        {
            return Some(self.waiting.swap_remove(i));
        }
        if self.source_done {
            return None;
        }
        match self.jobs.try_recv() {
            Ok(job) => Some(Waiting {
                due: now,
                job,
                tries: JobTries::default(),
            }),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.source_done = true;
                None
            }
        }
    }

    /// Sends jobs until the window is full.
    fn fill(&mut self) -> Result<(), Reason> {
        let now = Instant::now();
        if self.draining_until.is_some() || self.paused_until.is_some_and(|t| t > now) {
            return Ok(());
        }
        while self.inflight.len() < self.window {
            let Some(w) = self.next_job(Instant::now()) else {
                break;
            };
            self.submit(w)?;
        }
        Ok(())
    }

    fn submit(&mut self, w: Waiting) -> Result<(), Reason> {
        let id = self.next_id;
        self.next_id += 1;
        let job = w.job.clone();
        self.inflight.insert(
            id,
            Slot {
                job: w.job,
                tries: w.tries,
                info: None,
                buf: Vec::new(),
            },
        );
        let timeout = self.connector.timeout;
        let data = job.input.as_slice();
        let mut chunks = data.chunks(MAX_CHUNK_DATA);
        let first = chunks.next().unwrap_or(&[]);
        let n_chunks = data.len().div_ceil(MAX_CHUNK_DATA).max(1);
        let client = self.client.as_mut().ok_or_else(lost)?;
        client
            .send_job(
                id,
                &job.spec,
                data.len() as u64,
                first,
                n_chunks == 1,
                timeout,
            )
            .map_err(|e| conn_failure(&e))?;
        for (i, chunk) in chunks.enumerate() {
            // Take in any answers that have arrived, so the server never waits for us to
            // read while we wait for it to read.
            self.pump_ready()?;
            if !self.inflight.contains_key(&id) {
                // Refused mid-upload (ERROR or BUSY): the server drops the rest anyway, and
                // the id is never reused on this connection, so stop sending (PROTOCOL 10.5).
                break;
            }
            let last = i + 2 == n_chunks;
            let client = self.client.as_mut().ok_or_else(lost)?;
            client
                .send_job_data(id, chunk, last, timeout)
                .map_err(|e| conn_failure(&e))?;
        }
        Ok(())
    }

    /// Waits up to `wait` for the next event; `None` when the wait ran out. The connection
    /// serves its own timers meanwhile (heartbeat PINGs; giving up on a silent server), and
    /// its status says which ended a wait without an event: NP_TIMEOUT is our own wait,
    /// NP_PEER_SILENT the dead-peer timer, which closed the connection.
    fn next_ev(&mut self, wait: Duration) -> Result<Option<Ev>, Reason> {
        let dead_after = self.connector.dead_after;
        let client = self.client.as_mut().ok_or_else(lost)?;
        match take_event(client, wait) {
            Ok(ev) => Ok(Some(ev)),
            Err(e) if e.is(ffi::NP_TIMEOUT) => Ok(None),
            Err(e) if e.is(ffi::NP_PEER_SILENT) => Err(silent_server(dead_after, &e)),
            Err(e) => Err(conn_failure(&e)),
        }
    }

    /// Handles the events that can be read without waiting.
    fn pump_ready(&mut self) -> Result<(), Reason> {
        loop {
            let client = self.client.as_ref().ok_or_else(lost)?;
            if !sys::readable_now(client.fd()) {
                return Ok(());
            }
            match self.next_ev(Duration::from_millis(1))? {
                Some(ev) => self.handle(ev)?,
                None => return Ok(()),
            }
        }
    }

    /// Nothing in flight: wait for new jobs or for a re-submission to fall due.
    fn idle(&mut self) -> Result<(), Reason> {
        let now = Instant::now();
        let mut wait = MAX_WAIT;
        if let Some(due) = self.waiting.iter().map(|w| w.due).min() {
            wait = wait.min(due.saturating_duration_since(now));
        }
        if let Some(p) = self.paused_until {
            wait = wait.min(p.saturating_duration_since(now));
        }
        if self.source_done || !self.waiting.is_empty() {
            // Nothing to take from the channel: wait in the connection, which serves its
            // timers and any server-initiated event (SHUTDOWN, an idle-timeout ERROR).
            if let Some(ev) = self.next_ev(wait)? {
                self.handle(ev)?;
            }
            return Ok(());
        }
        match self.jobs.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(job) => self.waiting.push(Waiting {
                due: Instant::now(),
                job,
                tries: JobTries::default(),
            }),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.source_done = true,
        }
        // Server-initiated events may have arrived meanwhile; a short wait in the connection
        // also lets it serve a timer that fell due (a heartbeat PING).
        self.pump_ready()?;
        if let Some(ev) = self.next_ev(Duration::from_millis(1))? {
            self.handle(ev)?;
        }
        Ok(())
    }

    /// Jobs in flight: wait for the next event (bounded by anything that falls due).
    fn wait_once(&mut self) -> Result<(), Reason> {
        let now = Instant::now();
        let mut wait = MAX_WAIT;
        if let Some(due) = self.waiting.iter().map(|w| w.due).min() {
            if self.inflight.len() < self.window {
                wait = wait.min(due.saturating_duration_since(now));
            }
        }
        if let Some(t) = self.draining_until {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if let Some(ev) = self.next_ev(wait)? {
            self.handle(ev)?;
        }
        if self
            .draining_until
            .is_some_and(|t| Instant::now() >= t && !self.inflight.is_empty())
        {
            return Err(Failure::new(
                ExitKind::Busy,
                "",
                "server shut down before answering",
            ));
        }
        Ok(())
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Reason> {
        let now = Instant::now();
        match ev {
            Ev::Result {
                id,
                info,
                data,
                last,
            } => {
                let Some(slot) = self.inflight.get_mut(&id) else {
                    log::debug!("ignoring result data for unknown request {id}");
                    return Ok(());
                };
                if let Some(info) = info {
                    slot.buf = Vec::with_capacity(info.total_len.min(MAX_PREALLOC) as usize);
                    slot.info = Some(info);
                }
                slot.buf.extend_from_slice(&data);
                if last {
                    let slot = self.inflight.remove(&id).ok_or_else(lost)?;
                    self.retry.reset();
                    let info = slot.info.unwrap_or_default();
                    self.finish(
                        slot.job.index,
                        Ok(JobOutput {
                            bytes: slot.buf,
                            info,
                        }),
                    );
                }
            }
            Ev::Error {
                id: 0,
                code,
                message,
            } => {
                // About the connection, which the server is closing.
                return Err(Failure::from_wire("server", code, &message));
            }
            Ev::Error { id, code, message } => {
                let Some(mut slot) = self.inflight.remove(&id) else {
                    return Ok(());
                };
                if code == ErrorCode::TooManyInFlight as u16 {
                    // The server allows fewer jobs per connection than our window.
                    self.window = self.inflight.len().max(1);
                    log::info!("server limits jobs in flight; window now {}", self.window);
                    self.requeue(slot, now + retry::IN_FLIGHT_PAUSE);
                    return Ok(());
                }
                let hint = retry::hint_in_error(code, &message);
                match slot.tries.after_error(code, hint, now, self.jitter.unit()) {
                    Next::ResendAt(due) => {
                        log::info!("job {} failed ({message}); retrying", slot.job.index);
                        self.requeue(slot, due);
                    }
                    Next::GiveUp => {
                        self.finish(slot.job.index, Err(Failure::from_wire("", code, &message)))
                    }
                }
            }
            Ev::Busy { id, retry_after } => {
                let wait = retry::busy_wait(retry_after, self.jitter.unit());
                self.paused_until = Some(now + wait);
                if let Some(mut slot) = self.inflight.remove(&id) {
                    let budget = self.connector.retry_for;
                    match slot.tries.after_busy(wait, budget, now) {
                        Next::ResendAt(due) => {
                            log::debug!("server busy; re-sending in {} ms", wait.as_millis());
                            self.requeue(slot, due);
                        }
                        Next::GiveUp => self.finish(
                            slot.job.index,
                            Err(Failure::new(
                                ExitKind::Busy,
                                "",
                                format!("server still busy after {} s", budget.as_secs()),
                            )),
                        ),
                    }
                }
            }
            Ev::Shutdown { grace } => {
                log::info!(
                    "server is shutting down (grace {} ms); finishing {} job(s), then reconnecting",
                    grace.as_millis(),
                    self.inflight.len()
                );
                self.connector.notices.show(now, || {
                    format!(
                        "{} is shutting down; finishing the jobs in flight, then reconnecting",
                        self.connector.addr(self.server)
                    )
                });
                self.draining_until = Some(now + grace);
            }
            Ev::Pong => self.retry.reset(),
            Ev::Bye => {
                return Err(Failure::new(
                    ExitKind::Connect,
                    "",
                    "server closed the connection",
                ))
            }
            Ev::Other => {}
        }
        Ok(())
    }

    fn requeue(&mut self, slot: Slot, due: Instant) {
        self.waiting.push(Waiting {
            due,
            job: slot.job,
            tries: slot.tries,
        });
    }

    /// Drops the connection; its unanswered jobs are sent again after reconnecting (each at
    /// most MAX_ATTEMPTS times).
    fn disconnect(&mut self, reason: Reason) {
        log::info!(
            "connection to {} lost: {reason}; {} job(s) to re-send",
            self.connector.addr(self.server),
            self.inflight.len()
        );
        self.client = None;
        // The server that went away is the last one the next round tries.
        self.next_start = failover::next_after(self.server, self.connector.servers.len());
        self.draining_until = None;
        let now = Instant::now();
        if !self.inflight.is_empty() {
            self.connector.notices.show(now, || {
                format!(
                    "connection to {} lost ({}); reconnecting to send its jobs again",
                    self.connector.addr(self.server),
                    reason.why
                )
            });
        }
        let mut slots: Vec<(u64, Slot)> = self.inflight.drain().collect();
        slots.sort_by_key(|(id, _)| *id);
        for (_, mut slot) in slots {
            match slot.tries.after_loss(now) {
                Next::ResendAt(due) => self.requeue(slot, due),
                Next::GiveUp => {
                    let mut f = reason.clone();
                    f.why = format!("{} (after {MAX_ATTEMPTS} attempts)", f.why);
                    self.finish(slot.job.index, Err(f));
                }
            }
        }
    }
}

fn lost() -> Failure {
    Failure::new(ExitKind::Connect, "", "connection lost")
}

/// A failed send or read on an established connection.
fn conn_failure(e: &NpError) -> Failure {
    Failure::from_np("", e)
}

/// The connection gave the server up for silence (NP_PEER_SILENT, its dead-peer timer): a
/// lost connection, like any other (exit 3 after the retries), said plainly.
fn silent_server(dead_after: Duration, e: &NpError) -> Failure {
    let mut f = Failure::from_np("", e);
    f.why = format!("no answer from the server for {dead_after:?}");
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::SilentServer;

    #[test]
    fn chunking_marks_exactly_the_completing_chunk_last() {
        for len in [
            0usize,
            1,
            MAX_CHUNK_DATA - 1,
            MAX_CHUNK_DATA,
            MAX_CHUNK_DATA + 1,
            3 * MAX_CHUNK_DATA,
            3 * MAX_CHUNK_DATA + 7,
        ] {
            let data = vec![0u8; len];
            let n_chunks = data.len().div_ceil(MAX_CHUNK_DATA).max(1);
            let mut chunks = data.chunks(MAX_CHUNK_DATA);
            let first = chunks.next().unwrap_or(&[]);
            let mut lasts = vec![n_chunks == 1];
            let mut total = first.len();
            for (i, c) in chunks.enumerate() {
                assert!(c.len() <= MAX_CHUNK_DATA);
                total += c.len();
                lasts.push(i + 2 == n_chunks);
            }
            assert_eq!(total, len);
            assert_eq!(lasts.len(), n_chunks);
            assert_eq!(lasts.iter().filter(|l| **l).count(), 1, "len {len}");
            assert!(*lasts.last().unwrap());
        }
    }

    #[test]
    fn the_library_says_which_ended_a_wait_by_its_status_alone() {
        let dir =
            std::env::temp_dir().join(format!("imgclient-silent-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = SilentServer::start(&dir);
        // Our own wait runs out long before a 10-minute dead-peer timeout: NP_TIMEOUT, and the
        // session waits on.
        let patient = server.connector(&dir, Duration::from_secs(300), Duration::from_secs(600));
        let mut client = patient.connect_once().unwrap();
        for _ in 0..2 {
            let e = take_event(&mut client, Duration::from_millis(20))
                .err()
                .unwrap();
            assert!(e.is(ffi::NP_TIMEOUT), "{e:?}");
        }
        // With a wait far beyond the dead-peer timeout, only the connection's timer can end
        // it: NP_PEER_SILENT with the library's text, and every later call says the same.
        let dead_after = Duration::from_millis(150);
        let quick = server.connector(&dir, Duration::from_millis(40), dead_after);
        let mut client = quick.connect_once().unwrap();
        let e = take_event(&mut client, Duration::from_secs(30))
            .err()
            .unwrap();
        assert!(e.is(ffi::NP_PEER_SILENT), "{e:?}");
        assert_eq!(
            e.message,
            "no frame from the server for 150 ms: connection closed"
        );
        let again = take_event(&mut client, Duration::from_secs(30))
            .err()
            .unwrap();
        assert_eq!(again, e);
        let send = client
            .send_job(1, "noop", 1, b"x", true, Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(send, e);
        assert_eq!(silent_server(dead_after, &e).kind, ExitKind::Connect);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_silent_server_is_given_up_by_the_connection_and_reported_as_connect() {
        let dir = std::env::temp_dir().join(format!("imgclient-silent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = SilentServer::start(&dir);
        let dead_after = Duration::from_millis(150);
        let connector = server.connector(&dir, Duration::from_millis(40), dead_after);
        let (job_tx, job_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        job_tx
            .send(Job {
                index: 0,
                spec: "noop".into(),
                input: Arc::new(vec![7u8; 100]),
            })
            .unwrap();
        drop(job_tx);
        let stop = Arc::new(AtomicBool::new(false));
        let session = Session::new(connector, None, 0, job_rx, done_tx, stop, 4);
        let runner = std::thread::spawn(move || session.run());
        let done = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the session reports the job");
        runner.join().unwrap();
        let f = done.outcome.expect_err("nobody answered");
        assert_eq!(f.kind, ExitKind::Connect, "{f}");
        assert_eq!(f.exit_code(), 3);
        assert_eq!(
            f.why,
            format!("no answer from the server for {dead_after:?} (after {MAX_ATTEMPTS} attempts)")
        );
        // Every attempt was a new connection that the library gave up on by itself.
        assert_eq!(server.conns.load(Ordering::Relaxed), MAX_ATTEMPTS as usize);
        // The heartbeats were the library's: request id 0, never one of the session's ids.
        let pings = server.pings.lock().unwrap().clone();
        assert!(!pings.is_empty(), "the connections sent heartbeats");
        assert!(pings.iter().all(|&id| id == 0), "{pings:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
