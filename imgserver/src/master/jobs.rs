//! The job life cycle in the master: admission (limits, BUSY), upload into a ring slot or a
//! per-job memfd, the queue, dispatch decisions, results, retries after a worker death, poison
//! inputs, deadlines and the shutdown drain.
//!
//! Trust boundary: between an untrusted client's declared sizes and the shared memory: every
//! length is checked against the limits and against the storage before a byte is copied. This
//! part holds no socket and no process and never reads the clock (`now` is passed in): it says
//! what to send to which worker and what to tell which connection through [`Effects`], so its
//! whole life cycle runs in unit tests with a fake pool and a fake clock.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::iface::{
    Chunk, ConnRef, Effects, ErrorCode, JobOrder, Reply, ResultMeta, Submission, WorkerId,
};
use crate::ipc::msg::{Done, NO_SLOT};
use crate::ring::{self, Ring, SlotTable};
use crate::stats::{self, Stats};
use imgfilters::Pipeline;
use log::{info, warn};
use memmap2::MmapRaw;

/// The limits the jobs part enforces (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    pub max_in_flight: u32,
    pub max_upload: u64,
    pub large_job_budget: u64,
    pub job_timeout: Duration,
}

/// Where a job's bytes live.
enum Storage {
    Slot {
        slot: u32,
        generation: u32,
    },
    /// Larger than a slot: a sealed memfd of exactly the declared length.
    Memfd {
        fd: OwnedFd,
        map: MmapRaw,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Uploading,
    Queued,
    Running { worker: WorkerId, since: Instant },
}

struct Job {
    conn: ConnRef,
    request: u64,
    spec: String,
    total: u64,
    received: u64,
    storage: Storage,
    state: JobState,
    submitted: Instant,
    queued_at: Instant,
    queue_us: u64,
    /// A worker already died running this job (a second death makes it POISON_INPUT).
    crashed_once: bool,
    /// The client has been answered (or is gone); only the storage remains to reclaim.
    answered: bool,
    /// The deadline passed and the worker was told to die; the job waits for the reaping.
    overran: bool,
}

/// The job table, the queue, the ring's slot bookkeeping and the large-job budget.
pub struct Jobs {
    limits: JobLimits,
    ring: Ring,
    slots: SlotTable,
    stats: Stats,
    jobs: HashMap<u64, Job>,
    /// Per connection: client request id → job id, for every request not yet answered.
    by_conn: HashMap<ConnRef, HashMap<u64, u64>>,
    queue: VecDeque<u64>,
    /// Per worker: the job it is running.
    running: Vec<Option<u64>>,
    next_job: u64,
    large_bytes: u64,
    /// Smoothed job service time, for BUSY retry-after hints and the short-job spin.
    avg_job_ms: f64,
    shutting_down: bool,
}

/// How long a refused client should wait: about the time the queue ahead needs to drain.
fn retry_after_ms(queued: usize, workers: usize, avg_job_ms: f64) -> u32 {
    let ms = (queued as f64 + 1.0) * avg_job_ms / workers.max(1) as f64;
    ms.clamp(50.0, 5000.0) as u32
}

impl Jobs {
    /// `ring` is the master's mapping of the shared ring, `stats` a mapping of the stats page,
    /// `workers` the size of the worker pool.
    pub fn new(limits: JobLimits, ring: Ring, stats: Stats, workers: usize) -> Jobs {
        Jobs {
            limits,
            slots: SlotTable::new(ring.slots()),
            ring,
            stats,
            jobs: HashMap::new(),
            by_conn: HashMap::new(),
            queue: VecDeque::new(),
            running: vec![None; workers],
            next_job: 1,
            large_bytes: 0,
            avg_job_ms: 20.0,
            shutting_down: false,
        }
    }

    /// Jobs not yet finished with (uploading, queued, running, or answered but still holding
    /// storage a worker may touch).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn avg_job_ms(&self) -> f64 {
        self.avg_job_ms
    }

    /// When each running job started.
    pub fn running_since(&self) -> impl Iterator<Item = Instant> + '_ {
        self.running
            .iter()
            .flatten()
            .filter_map(|j| match self.jobs.get(j)?.state {
                JobState::Running { since, .. } => Some(since),
                _ => None,
            })
    }

    /// Whether `conn` has requests not yet answered (the tests check the bookkeeping; the
    /// connection itself tracks what it still owes for its idle timer).
    #[cfg(test)]
    pub fn has_requests(&self, conn: ConnRef) -> bool {
        self.by_conn.get(&conn).is_some_and(|m| !m.is_empty())
    }

    /// From now on every new job is refused with SHUTTING_DOWN.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Admits (or refuses) a new job and stores its first chunk. `None`: admitted; otherwise
    /// the answer to send at once.
    pub fn submit(
        &mut self,
        now: Instant,
        conn: ConnRef,
        s: Submission<'_>,
    ) -> Option<Reply<'static>> {
        stats::inc(&self.stats.get().global.jobs_submitted);
        let storage = match self.admit(conn, &s).and_then(|()| self.allocate(s.total)) {
            Ok(storage) => storage,
            Err(reply) => return Some(reply),
        };
        stats::add(
            &self.stats.get().global.slots_in_use,
            matches!(storage, Storage::Slot { .. }) as u64,
        );
        let job_id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            job_id,
            Job {
                conn,
                request: s.req,
                spec: s.spec.to_string(),
                total: s.total,
                received: 0,
                storage,
                state: JobState::Uploading,
                submitted: now,
                queued_at: now,
                queue_us: 0,
                crashed_once: false,
                answered: false,
                overran: false,
            },
        );
        self.by_conn.entry(conn).or_default().insert(s.req, job_id);
        self.store(now, job_id, s.data, s.last);
        None
    }

    /// The checks a submission must pass before any storage is allocated, in this order.
    fn admit(&self, conn: ConnRef, s: &Submission<'_>) -> Result<(), Reply<'static>> {
        let g = &self.stats.get().global;
        if self.shutting_down {
            stats::inc(&g.jobs_shutdown);
            return Err(self.refuse(
                ErrorCode::ShuttingDown,
                "server is shutting down; resubmit to a running server".into(),
            ));
        }
        let in_flight = self.by_conn.get(&conn);
        if in_flight.is_some_and(|m| m.contains_key(&s.req)) {
            return Err(self.refuse(
                ErrorCode::DuplicateRequest,
                format!("request id {} is already in flight", s.req),
            ));
        }
        if in_flight.map_or(0, HashMap::len) >= self.limits.max_in_flight as usize {
            return Err(self.refuse(
                ErrorCode::TooManyInFlight,
                format!(
                    "at most {} jobs in flight per connection (--max-in-flight)",
                    self.limits.max_in_flight
                ),
            ));
        }
        if s.total > self.limits.max_upload {
            stats::inc(&g.error_too_large);
            return Err(self.refuse(
                ErrorCode::InputTooLarge,
                format!(
                    "upload of {} bytes exceeds the limit of {} bytes (--max-upload)",
                    s.total, self.limits.max_upload
                ),
            ));
        }
        if let Err(e) = s.spec.parse::<Pipeline>() {
            stats::inc(&g.error_bad_spec);
            return Err(self.refuse(ErrorCode::BadSpec, e.to_string()));
        }
        Ok(())
    }

    /// Storage for an upload of `total` bytes: a ring slot, or a per-job memfd when it is
    /// larger than a slot. BUSY when the slots or the large-job budget are exhausted.
    fn allocate(&mut self, total: u64) -> Result<Storage, Reply<'static>> {
        if total <= self.ring.slot_size() {
            return match self.slots.alloc() {
                Some((slot, generation)) => Ok(Storage::Slot { slot, generation }),
                None => Err(self.busy()),
            };
        }
        if self.large_bytes + total > self.limits.large_job_budget {
            return Err(self.busy());
        }
        let made = crate::shm::create(c"imgserver-job", total).and_then(|fd| {
            let map = crate::shm::map_populated(&fd, total)?;
            Ok((fd, map))
        });
        match made {
            Ok((fd, map)) => {
                self.large_bytes += total;
                stats::inc(&self.stats.get().global.large_jobs);
                Ok(Storage::Memfd { fd, map })
            }
            Err(e) => {
                warn!("job memfd of {total} bytes: {e}");
                Err(self.refuse(ErrorCode::Internal, "cannot allocate job memory".into()))
            }
        }
    }

    /// A refusal before the job exists (counted as a failed job).
    fn refuse(&self, code: ErrorCode, text: String) -> Reply<'static> {
        stats::inc(&self.stats.get().global.jobs_failed);
        Reply::Rejected { code, text }
    }

    /// BUSY, with the time the queue ahead needs as the retry-after hint.
    fn busy(&self) -> Reply<'static> {
        stats::inc(&self.stats.get().global.jobs_busy);
        Reply::Busy {
            retry_after_ms: retry_after_ms(self.queue.len(), self.running.len(), self.avg_job_ms),
        }
    }

    /// More upload data for a request of `conn`; queues the job when it is complete.
    pub fn add_data(&mut self, now: Instant, conn: ConnRef, c: Chunk<'_>) {
        if let Some(&job_id) = self.by_conn.get(&conn).and_then(|m| m.get(&c.req)) {
            self.store(now, job_id, c.data, c.last);
        }
    }

    fn store(&mut self, now: Instant, job_id: u64, data: &[u8], last: bool) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.state != JobState::Uploading {
            return;
        }
        // libnetproto already enforces that chunks add up to the declared total.
        let ok = match &job.storage {
            Storage::Slot { slot, .. } => self.ring.write(*slot, job.received, data),
            Storage::Memfd { map, .. } => ring::raw_write(map, job.received, data),
        };
        if !ok {
            warn!("job {job_id}: data beyond its storage; dropping chunk");
            return;
        }
        job.received += data.len() as u64;
        if last {
            job.state = JobState::Queued;
            job.queued_at = now;
            self.queue.push_back(job_id);
            let g = &self.stats.get().global;
            stats::inc(&g.queue_depth);
            let depth = self.queue.len() as u64;
            g.queue_peak.fetch_max(depth, Relaxed);
        }
    }

    /// Hands queued jobs to idle workers.
    pub fn dispatch(&mut self, now: Instant, fx: &mut impl Effects) {
        while let Some(&job_id) = self.queue.front() {
            let Some(w) =
                (0..self.running.len()).find(|&w| self.running[w].is_none() && fx.worker_ready(w))
            else {
                return;
            };
            self.queue.pop_front();
            stats::dec(&self.stats.get().global.queue_depth);
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            if job.answered {
                // Its client went away while it waited.
                self.release_job(job_id);
                continue;
            }
            let (slot, generation, memfd) = match &job.storage {
                Storage::Slot { slot, generation } => (*slot, *generation, None),
                Storage::Memfd { fd, .. } => (NO_SLOT, 0, Some(fd.as_fd())),
            };
            let order = JobOrder {
                job: job_id,
                slot,
                generation,
                input_len: job.total,
                spec: &job.spec,
                memfd,
            };
            if fx.send_job(w, order) {
                job.queue_us = now.saturating_duration_since(job.queued_at).as_micros() as u64;
                stats::add(&self.stats.get().global.queue_us_total, job.queue_us);
                job.state = JobState::Running {
                    worker: w,
                    since: now,
                };
                self.running[w] = Some(job_id);
            } else {
                // The worker was given up; the job stays first in line for the next one.
                self.queue.push_front(job_id);
                stats::inc(&self.stats.get().global.queue_depth);
            }
        }
    }

    /// Worker `w`'s Done message (and the fds attached to it).
    pub fn done(
        &mut self,
        now: Instant,
        w: WorkerId,
        done: Done,
        fds: Vec<OwnedFd>,
        fx: &mut impl Effects,
    ) {
        let Some(started) = self.running_since_for(w, &done) else {
            warn!(
                "worker {w}: stale or unexpected Done for job {} (ignored)",
                done.job
            );
            return;
        };
        self.running[w] = None;
        let service_ms = now.saturating_duration_since(started).as_secs_f64() * 1000.0;
        self.avg_job_ms = 0.9 * self.avg_job_ms + 0.1 * service_ms;
        // The worker's next job first: it can decode while this result is encrypted and
        // written (this job's slot is released only below, so it cannot be handed out).
        self.dispatch(now, fx);
        let Some(job) = self.jobs.get(&done.job) else {
            return;
        };
        let (conn, req, answered) = (job.conn, job.request, job.answered);
        count_outcome(&self.stats, done.status);
        if !answered {
            // A successful output that did not fit the slot comes in a memfd of its own.
            let out_map = (done.status == 0 && done.in_memfd)
                .then(|| map_output(&done, fds))
                .flatten();
            fx.reply(conn, req, self.result_reply(job, &done, out_map.as_ref()));
        }
        // Logged after the answer is on its way, not in front of it.
        info!(
            "job {} req {req}: {} {} -> {} bytes, status {}, queue {} us, decode {} us, filter {} us, encode {} us, total {:.1} ms",
            done.job,
            job.spec,
            job.total,
            done.output_len,
            ErrorCode::from_u16(done.status).map_or("OK", |c| c.name()),
            job.queue_us,
            done.decode_us,
            done.filter_us,
            done.encode_us,
            now.saturating_duration_since(job.submitted).as_secs_f64() * 1000.0
        );
        if !answered {
            self.forget_request(conn, req);
        }
        self.release_job(done.job);
    }

    /// When worker `w` started the job `done` names, if that Done is genuine: the job is the
    /// one `w` runs, and its slot still has the generation it was lent with (an old generation
    /// comes from a worker the master already gave up on).
    fn running_since_for(&self, w: WorkerId, done: &Done) -> Option<Instant> {
        if self.running.get(w).copied().flatten() != Some(done.job) {
            return None;
        }
        if done.slot != NO_SLOT && self.slots.generation(done.slot) != Some(done.generation) {
            return None;
        }
        match self.jobs.get(&done.job)?.state {
            JobState::Running { since, .. } => Some(since),
            _ => None,
        }
    }

    /// What to tell the client about a finished job: its output (from the output memfd
    /// `out_map`, or from the job's slot) or the worker's typed error.
    fn result_reply<'a>(
        &'a self,
        job: &Job,
        done: &Done,
        out_map: Option<&'a MmapRaw>,
    ) -> Reply<'a> {
        if done.status != 0 {
            return Reply::Failed {
                code: ErrorCode::from_u16(done.status).unwrap_or(ErrorCode::Internal),
                text: done.message.clone(),
            };
        }
        let output = match (out_map, &job.storage) {
            (Some(m), _) => Some(ring::raw_slice(m, done.output_len)),
            (None, Storage::Slot { slot, .. }) if !done.in_memfd => {
                self.ring.read(*slot, 0, done.output_len)
            }
            _ => None,
        };
        match output {
            Some(output) => Reply::Result {
                meta: ResultMeta {
                    total_len: done.output_len,
                    width: done.width,
                    height: done.height,
                    format: done.format,
                    queue_us: job.queue_us.min(u32::MAX as u64) as u32,
                    decode_us: done.decode_us,
                    filter_us: done.filter_us,
                    encode_us: done.encode_us,
                },
                output,
            },
            None => Reply::Failed {
                code: ErrorCode::Internal,
                text: "worker output unreadable".into(),
            },
        }
    }

    /// Worker `w` is gone (reaped). Its job is retried once, first in line; a second death
    /// makes it POISON_INPUT; a job already answered (deadline, client gone) just has its
    /// storage reclaimed — only now, when no dying process can still write into it.
    pub fn worker_lost(&mut self, now: Instant, w: WorkerId, fx: &mut impl Effects) {
        let Some(job_id) = self.running.get_mut(w).and_then(Option::take) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.answered {
            self.release_job(job_id);
            return;
        }
        if !job.crashed_once {
            job.crashed_once = true;
            job.state = JobState::Queued;
            job.queued_at = now;
            self.queue.push_front(job_id);
            stats::inc(&self.stats.get().global.queue_depth);
            stats::inc(&self.stats.get().global.jobs_retried);
            warn!("job {job_id}: worker {w} died; retrying once on another worker");
        } else {
            stats::inc(&self.stats.get().global.jobs_poison);
            self.fail_job(
                job_id,
                ErrorCode::PoisonInput,
                "this input crashed two workers; it will not be retried",
                fx,
            );
            // The worker that held it is reaped, so nothing touches its storage any more.
            self.release_job(job_id);
        }
    }

    /// Answers a job with an error now; its storage is reclaimed when no worker holds it.
    fn fail_job(&mut self, job_id: u64, code: ErrorCode, text: &str, fx: &mut impl Effects) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if !job.answered {
            job.answered = true;
            stats::inc(&self.stats.get().global.jobs_failed);
            let (conn, req) = (job.conn, job.request);
            fx.reply(
                conn,
                req,
                Reply::Failed {
                    code,
                    text: text.to_string(),
                },
            );
            self.forget_request(conn, req);
        }
        let running = matches!(
            self.jobs.get(&job_id).map(|j| j.state),
            Some(JobState::Running { .. })
        );
        if !running {
            // release_job also takes it out of the queue (and the queue-depth gauge).
            self.release_job(job_id);
        }
    }

    /// The connection is gone: drop its uploads now; queued and running jobs finish
    /// unanswered (a queued one is dropped when it reaches the front of the queue, a running
    /// one when its worker gives the slot back).
    pub fn conn_gone(&mut self, conn: ConnRef) {
        let Some(reqs) = self.by_conn.remove(&conn) else {
            return;
        };
        for (_, job_id) in reqs {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            job.answered = true;
            if job.state == JobState::Uploading {
                self.release_job(job_id);
            }
        }
    }

    fn forget_request(&mut self, conn: ConnRef, req: u64) {
        if let Some(m) = self.by_conn.get_mut(&conn) {
            m.remove(&req);
            if m.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Frees a job's storage and forgets it.
    fn release_job(&mut self, job_id: u64) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        match job.storage {
            Storage::Slot { slot, .. } => {
                self.slots.release(slot);
                stats::dec(&self.stats.get().global.slots_in_use);
            }
            Storage::Memfd { .. } => self.large_bytes = self.large_bytes.saturating_sub(job.total),
        }
        if job.state == JobState::Queued {
            if let Some(pos) = self.queue.iter().position(|j| *j == job_id) {
                self.queue.remove(pos);
                stats::dec(&self.stats.get().global.queue_depth);
            }
        }
    }

    /// Deadlines. A running job that overran `--job-timeout` fails with TIMEOUT at once and
    /// its worker is killed (the storage is freed when the worker is reaped). While no worker
    /// is healthy (all dead or crash-looping), queued jobs older than the deadline fail the
    /// same way instead of waiting forever; with healthy workers the queue is bounded by the
    /// ring slots (BUSY), so waiting jobs are served in order.
    pub fn sweep_deadlines(&mut self, now: Instant, healthy: bool, fx: &mut impl Effects) {
        let limit = self.limits.job_timeout;
        let stale: Vec<u64> = if healthy {
            Vec::new()
        } else {
            self.queue
                .iter()
                .copied()
                .filter(|j| {
                    self.jobs
                        .get(j)
                        .is_some_and(|job| now.saturating_duration_since(job.queued_at) > limit)
                })
                .collect()
        };
        for job in stale {
            stats::inc(&self.stats.get().global.jobs_timeout);
            self.fail_job(
                job,
                ErrorCode::Timeout,
                &format!(
                    "no worker could take the job within the {:.0} s deadline",
                    limit.as_secs_f64()
                ),
                fx,
            );
        }
        for w in 0..self.running.len() {
            let Some(job_id) = self.running[w] else {
                continue;
            };
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            let JobState::Running { since, .. } = job.state else {
                continue;
            };
            if job.overran || now.saturating_duration_since(since) <= limit {
                continue;
            }
            job.overran = true;
            warn!(
                "worker {w}: job {job_id} exceeded the {:.0} s deadline; killing the worker",
                limit.as_secs_f64()
            );
            stats::inc(&self.stats.get().global.jobs_timeout);
            self.fail_job(
                job_id,
                ErrorCode::Timeout,
                &format!("job exceeded the {:.0} s deadline", limit.as_secs_f64()),
                fx,
            );
            fx.kill_worker(w);
        }
    }

    /// Shutdown is over: every unfinished job is answered with SHUTTING_DOWN.
    pub fn fail_all(&mut self, fx: &mut impl Effects) {
        let mut unfinished: Vec<u64> = self.jobs.keys().copied().collect();
        unfinished.sort_unstable();
        for id in unfinished {
            self.fail_job(
                id,
                ErrorCode::ShuttingDown,
                "server stopped before the job finished",
                fx,
            );
        }
    }
}

/// Maps the output memfd a worker attached to its Done, after checking its seals.
fn map_output(done: &Done, fds: Vec<OwnedFd>) -> Option<MmapRaw> {
    let fd = fds.into_iter().next()?;
    crate::shm::check_sealed(&fd).ok()?;
    crate::shm::map(&fd, done.output_len.max(1)).ok()
}

/// Counts a finished job as ok or failed, and a failure by its error kind.
fn count_outcome(stats: &Stats, status: u16) {
    let g = &stats.get().global;
    if status == 0 {
        stats::inc(&g.jobs_ok);
        return;
    }
    stats::inc(&g.jobs_failed);
    let c = match ErrorCode::from_u16(status) {
        Some(ErrorCode::BadSpec) => &g.error_bad_spec,
        Some(ErrorCode::InputTooLarge) => &g.error_too_large,
        Some(ErrorCode::TooManyPixels) => &g.error_too_many_pixels,
        Some(ErrorCode::UnsupportedFormat) => &g.error_unsupported_format,
        Some(ErrorCode::DecodeFailed) => &g.error_decode,
        Some(ErrorCode::BadGeometry) => &g.error_geometry,
        Some(ErrorCode::EncodeFailed) => &g.error_encode,
        _ => &g.error_other,
    };
    stats::inc(c);
}

/// The job life cycle without processes or sockets: a fake pool and fake connections record
/// what the jobs part asks for, the test plays the worker through a second mapping of a real
/// ring, and time is an `Instant` the test moves by hand.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::msg::Done;
    use std::collections::HashSet;

    const SLOT: u64 = 4096;
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// What a connection was told, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Told {
        Rejected(ErrorCode),
        Busy(u32),
        Failed(ErrorCode, String),
        Result(ResultMeta, Vec<u8>),
        Stats,
    }

    impl From<Reply<'_>> for Told {
        fn from(r: Reply<'_>) -> Told {
            match r {
                Reply::Rejected { code, .. } => Told::Rejected(code),
                Reply::Busy { retry_after_ms } => Told::Busy(retry_after_ms),
                Reply::Failed { code, text } => Told::Failed(code, text),
                Reply::Result { meta, output } => Told::Result(meta, output.to_vec()),
                Reply::Stats(_) => Told::Stats,
            }
        }
    }

    /// A job as a worker received it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Sent {
        worker: WorkerId,
        job: u64,
        slot: u32,
        generation: u32,
        input_len: u64,
        memfd: bool,
    }

    #[derive(Default)]
    struct Fake {
        ready: HashSet<WorkerId>,
        /// Workers whose channel is broken: a send fails and they stop being ready.
        broken: HashSet<WorkerId>,
        sent: Vec<Sent>,
        killed: Vec<WorkerId>,
        told: Vec<(ConnRef, u64, Told)>,
    }

    impl Effects for Fake {
        fn worker_ready(&self, w: WorkerId) -> bool {
            self.ready.contains(&w)
        }
        fn send_job(&mut self, w: WorkerId, o: JobOrder<'_>) -> bool {
            if self.broken.contains(&w) {
                self.ready.remove(&w);
                return false;
            }
            self.sent.push(Sent {
                worker: w,
                job: o.job,
                slot: o.slot,
                generation: o.generation,
                input_len: o.input_len,
                memfd: o.memfd.is_some(),
            });
            true
        }
        fn kill_worker(&mut self, w: WorkerId) {
            self.ready.remove(&w);
            self.killed.push(w);
        }
        fn reply(&mut self, conn: ConnRef, req: u64, reply: Reply<'_>) {
            self.told.push((conn, req, reply.into()));
        }
    }

    impl Fake {
        fn with_workers(n: usize) -> Fake {
            Fake {
                ready: (0..n).collect(),
                ..Fake::default()
            }
        }
        fn take_told(&mut self) -> Vec<(ConnRef, u64, Told)> {
            std::mem::take(&mut self.told)
        }
    }

    struct World {
        jobs: Jobs,
        /// The workers' view of the ring.
        ring: Ring,
        stats: Stats,
        fx: Fake,
        t0: Instant,
    }

    /// The first chunk of an upload of `total` bytes that is not complete yet.
    fn upload<'a>(req: u64, total: u64, spec: &'a str, data: &'a [u8]) -> Submission<'a> {
        Submission {
            req,
            total,
            spec,
            data,
            last: false,
        }
    }

    const C1: ConnRef = ConnRef { index: 0, gen: 1 };
    const C2: ConnRef = ConnRef { index: 1, gen: 2 };

    fn world(slots: u32, workers: usize, large_job_budget: u64) -> World {
        let (ring, ring_fd) = Ring::create(slots, SLOT).unwrap();
        let (stats, stats_fd) = Stats::create().unwrap();
        let limits = JobLimits {
            max_in_flight: 3,
            max_upload: 1 << 20,
            large_job_budget,
            job_timeout: TIMEOUT,
        };
        World {
            jobs: Jobs::new(limits, ring, Stats::map(&stats_fd).unwrap(), workers),
            ring: Ring::map(&ring_fd, slots, SLOT).unwrap(),
            stats,
            fx: Fake::with_workers(workers),
            t0: Instant::now(),
        }
    }

    impl World {
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
        fn submit(&mut self, ms: u64, conn: ConnRef, req: u64, data: &[u8]) -> Option<Told> {
            let now = self.at(ms);
            let s = Submission {
                req,
                total: data.len() as u64,
                spec: "grayscale",
                data,
                last: true,
            };
            self.jobs.submit(now, conn, s).map(Told::from)
        }
        fn dispatch(&mut self, ms: u64) {
            let now = self.at(ms);
            self.jobs.dispatch(now, &mut self.fx);
        }
        /// The worker finishes `s` successfully, writing `out` back into its slot.
        fn finish(&mut self, ms: u64, s: &Sent, out: &[u8]) {
            assert!(self.ring.write(s.slot, 0, out));
            let done = Done {
                job: s.job,
                slot: s.slot,
                generation: s.generation,
                output_len: out.len() as u64,
                width: 3,
                height: 2,
                format: 1,
                decode_us: 10,
                filter_us: 20,
                encode_us: 30,
                ..Done::default()
            };
            self.done(ms, s.worker, done);
        }
        fn done(&mut self, ms: u64, w: WorkerId, done: Done) {
            let now = self.at(ms);
            self.jobs.done(now, w, done, Vec::new(), &mut self.fx);
        }
        fn lost(&mut self, ms: u64, w: WorkerId) {
            let now = self.at(ms);
            self.jobs.worker_lost(now, w, &mut self.fx);
        }
        fn sweep(&mut self, ms: u64, healthy: bool) {
            let now = self.at(ms);
            self.jobs.sweep_deadlines(now, healthy, &mut self.fx);
        }
        fn gauge(&self, f: impl Fn(&crate::stats::Global) -> &std::sync::atomic::AtomicU64) -> u64 {
            f(&self.stats.get().global).load(Relaxed)
        }
        fn slots_in_use(&self) -> u64 {
            self.gauge(|g| &g.slots_in_use)
        }
        fn last_sent(&self) -> Sent {
            self.fx.sent.last().cloned().expect("a job was sent")
        }
    }

    #[test]
    fn a_job_is_queued_dispatched_and_its_result_delivered() {
        let mut w = world(4, 1, 1 << 20);
        assert_eq!(w.submit(0, C1, 7, b"input bytes"), None);
        assert_eq!(w.jobs.queue_len(), 1);
        assert!(w.jobs.has_requests(C1));
        assert_eq!(w.slots_in_use(), 1);
        // The worker reads exactly what the client uploaded from the slot it is given.
        w.dispatch(5);
        let s = w.last_sent();
        assert_eq!((s.worker, s.input_len, s.memfd), (0, 11, false));
        assert_eq!(w.ring.read(s.slot, 0, 11).unwrap(), b"input bytes");
        assert_eq!(w.jobs.queue_len(), 0);
        assert_eq!(w.jobs.running_since().collect::<Vec<_>>(), vec![w.at(5)]);
        assert!(w.fx.take_told().is_empty(), "nothing is said before Done");

        w.finish(9, &s, b"OUTPUT");
        let told = w.fx.take_told();
        assert_eq!(told.len(), 1);
        let (conn, req, Told::Result(meta, out)) = &told[0] else {
            panic!("expected a result, got {told:?}");
        };
        assert_eq!((*conn, *req), (C1, 7));
        assert_eq!(out, b"OUTPUT");
        assert_eq!(meta.total_len, 6);
        assert_eq!((meta.width, meta.height, meta.format), (3, 2, 1));
        assert_eq!(meta.queue_us, 5_000, "queued at 0 ms, dispatched at 5 ms");
        assert_eq!(
            (meta.decode_us, meta.filter_us, meta.encode_us),
            (10, 20, 30)
        );
        assert!(w.jobs.is_empty());
        assert!(!w.jobs.has_requests(C1));
        assert_eq!(w.slots_in_use(), 0);
        assert_eq!(w.gauge(|g| &g.jobs_ok), 1);
        // The slot was given back with a new generation.
        w.submit(10, C1, 8, b"x");
        w.dispatch(10);
        assert_eq!(w.last_sent().generation, s.generation + 1);
    }

    #[test]
    fn a_typed_error_from_the_worker_reaches_the_client() {
        let mut w = world(4, 1, 1 << 20);
        w.submit(0, C1, 1, b"not an image");
        w.dispatch(0);
        let s = w.last_sent();
        let done = Done {
            job: s.job,
            slot: s.slot,
            generation: s.generation,
            status: ErrorCode::DecodeFailed as u16,
            message: "bad magic".into(),
            ..Done::default()
        };
        w.done(3, 0, done);
        assert_eq!(
            w.fx.take_told(),
            vec![(
                C1,
                1,
                Told::Failed(ErrorCode::DecodeFailed, "bad magic".into())
            )]
        );
        assert_eq!(w.gauge(|g| &g.jobs_failed), 1);
        assert_eq!(w.gauge(|g| &g.error_decode), 1);
        assert!(w.jobs.is_empty());
        assert_eq!(w.slots_in_use(), 0);
    }

    #[test]
    fn a_worker_death_retries_the_job_first_in_line_and_a_second_is_poison() {
        let mut w = world(4, 2, 1 << 20);
        w.fx.ready.remove(&1);
        w.submit(0, C1, 1, b"crashes workers");
        w.dispatch(0);
        let first = w.last_sent();
        // Another job waits behind it.
        w.submit(1, C2, 1, b"innocent");
        w.lost(2, 0);
        assert!(w.fx.take_told().is_empty(), "a first death is not reported");
        assert_eq!(w.jobs.queue_len(), 2);
        assert_eq!(w.gauge(|g| &g.jobs_retried), 1);
        // Worker 1 comes up: the retried job goes first, in the same storage.
        w.fx.ready.insert(1);
        w.fx.ready.remove(&0);
        w.dispatch(3);
        let retry = w.last_sent();
        assert_eq!(
            (retry.worker, retry.job, retry.slot),
            (1, first.job, first.slot)
        );
        assert_eq!(retry.generation, first.generation);
        w.lost(4, 1);
        assert_eq!(
            w.fx.take_told(),
            vec![(
                C1,
                1,
                Told::Failed(
                    ErrorCode::PoisonInput,
                    "this input crashed two workers; it will not be retried".into()
                )
            )]
        );
        assert_eq!(w.gauge(|g| &g.jobs_poison), 1);
        // Only the innocent job is left, still queued, holding its own slot.
        assert_eq!(w.jobs.len(), 1);
        assert_eq!(w.jobs.queue_len(), 1);
        assert_eq!(w.slots_in_use(), 1);
        assert!(!w.jobs.has_requests(C1));
    }

    #[test]
    fn a_deadline_overrun_is_answered_at_once_and_the_slot_freed_only_when_reaped() {
        let mut w = world(4, 1, 1 << 20);
        w.submit(0, C1, 5, b"hangs");
        w.dispatch(0);
        w.sweep(30_000, true);
        assert!(
            w.fx.take_told().is_empty() && w.fx.killed.is_empty(),
            "not yet"
        );
        w.sweep(30_001, true);
        assert_eq!(
            w.fx.take_told(),
            vec![(
                C1,
                5,
                Told::Failed(ErrorCode::Timeout, "job exceeded the 30 s deadline".into())
            )]
        );
        assert_eq!(w.fx.killed, vec![0]);
        assert_eq!(w.gauge(|g| &g.jobs_timeout), 1);
        // The dying worker may still write into its slot: it stays taken until the reaping.
        assert_eq!(w.slots_in_use(), 1);
        assert_eq!(w.jobs.len(), 1);
        w.sweep(30_200, true);
        assert_eq!(w.fx.killed, vec![0], "killed once");
        assert_eq!(w.gauge(|g| &g.jobs_timeout), 1);
        w.lost(30_300, 0);
        assert!(
            w.fx.take_told().is_empty(),
            "a timed-out job is not retried"
        );
        assert!(w.jobs.is_empty());
        assert_eq!(w.slots_in_use(), 0);
    }

    #[test]
    fn a_stale_or_unexpected_done_is_ignored() {
        let mut w = world(4, 2, 1 << 20);
        w.submit(0, C1, 1, b"job");
        w.dispatch(0);
        let s = w.last_sent();
        // An old generation of the same slot.
        let stale = Done {
            job: s.job,
            slot: s.slot,
            generation: s.generation.wrapping_sub(1),
            ..Done::default()
        };
        w.done(1, 0, stale);
        // The right job from a worker that is not running it.
        let wrong_worker = Done {
            job: s.job,
            slot: s.slot,
            generation: s.generation,
            ..Done::default()
        };
        w.done(1, 1, wrong_worker);
        assert!(w.fx.take_told().is_empty());
        assert_eq!(w.slots_in_use(), 1);
        assert_eq!(w.jobs.running_since().count(), 1, "still running");
        // The genuine Done still completes it.
        w.finish(2, &s, b"ok");
        assert!(matches!(w.fx.take_told()[..], [(C1, 1, Told::Result(..))]));
        assert_eq!(w.slots_in_use(), 0);
    }

    #[test]
    fn a_client_gone_while_uploading_queued_or_running_gets_nothing_and_storage_is_reclaimed() {
        let mut w = world(4, 1, 1 << 20);
        // Uploading: freed at once.
        let now = w.at(0);
        w.jobs
            .submit(now, C1, upload(1, 100, "grayscale", b"first chunk"));
        assert_eq!(w.slots_in_use(), 1);
        w.jobs.conn_gone(C1);
        assert_eq!(w.slots_in_use(), 0);
        assert!(w.jobs.is_empty());

        // Running: the worker finishes, nobody is told, the slot comes back.
        w.submit(1, C2, 1, b"running");
        w.dispatch(1);
        let running = w.last_sent();
        // Queued behind it.
        w.submit(1, C2, 2, b"queued");
        w.jobs.conn_gone(C2);
        assert!(!w.jobs.has_requests(C2));
        assert_eq!(
            w.slots_in_use(),
            2,
            "the worker still owns one, the queue the other"
        );
        w.finish(5, &running, b"out");
        // The queued one reached the front with its client gone: dropped, never sent.
        assert_eq!(w.fx.sent.len(), 1);
        assert!(w.fx.take_told().is_empty());
        assert!(w.jobs.is_empty());
        assert_eq!(w.slots_in_use(), 0);
        assert_eq!(w.jobs.queue_len(), 0);
    }

    #[test]
    fn busy_when_the_slots_are_exhausted_with_a_retry_after_hint() {
        let mut w = world(2, 1, 1 << 20);
        assert_eq!(w.submit(0, C1, 1, b"a"), None);
        assert_eq!(w.submit(0, C1, 2, b"b"), None);
        // Two queued ahead, one worker, 20 ms a job: (2 + 1) * 20 ms.
        assert_eq!(w.submit(0, C2, 1, b"c"), Some(Told::Busy(60)));
        assert_eq!(w.gauge(|g| &g.jobs_busy), 1);
        assert!(!w.jobs.has_requests(C2), "a BUSY request is not in flight");
        assert_eq!(w.jobs.len(), 2);
        assert_eq!(retry_after_ms(0, 2, 20.0), 50);
        assert_eq!(retry_after_ms(99, 2, 20.0), 1000);
        assert_eq!(retry_after_ms(100_000, 2, 20.0), 5000);
    }

    #[test]
    fn busy_when_the_large_job_budget_is_exceeded_and_large_jobs_use_a_memfd() {
        let mut w = world(4, 1, 10_000);
        let big = vec![7u8; 6000];
        assert_eq!(w.submit(0, C1, 1, &big), None);
        assert_eq!(w.slots_in_use(), 0, "larger than a slot: a memfd");
        assert_eq!(w.gauge(|g| &g.large_jobs), 1);
        assert_eq!(w.submit(0, C1, 2, &big), Some(Told::Busy(50)));
        // A small job still fits in a slot.
        assert_eq!(w.submit(0, C1, 3, b"small"), None);
        w.dispatch(0);
        let s = w.fx.sent[0].clone();
        assert_eq!((s.slot, s.memfd, s.input_len), (NO_SLOT, true, 6000));
        // Once the large job is done its budget is free again.
        let done = Done {
            job: s.job,
            slot: NO_SLOT,
            status: ErrorCode::DecodeFailed as u16,
            ..Done::default()
        };
        w.done(1, 0, done);
        assert_eq!(w.submit(2, C1, 4, &big), None);
    }

    #[test]
    fn admission_refuses_duplicates_too_many_in_flight_oversize_and_bad_specs() {
        let mut w = world(8, 1, 1 << 30);
        assert_eq!(w.submit(0, C1, 1, b"a"), None);
        assert_eq!(
            w.submit(0, C1, 1, b"a"),
            Some(Told::Rejected(ErrorCode::DuplicateRequest))
        );
        assert_eq!(w.submit(0, C1, 2, b"b"), None);
        assert_eq!(w.submit(0, C1, 3, b"c"), None);
        assert_eq!(
            w.submit(0, C1, 4, b"d"),
            Some(Told::Rejected(ErrorCode::TooManyInFlight))
        );
        // Another connection has its own allowance.
        assert_eq!(w.submit(0, C2, 4, b"d"), None);
        let now = w.at(0);
        let r = w
            .jobs
            .submit(now, C2, upload(5, (1 << 20) + 1, "grayscale", b""));
        assert_eq!(
            r.map(Told::from),
            Some(Told::Rejected(ErrorCode::InputTooLarge))
        );
        let r = w.jobs.submit(
            now,
            C2,
            Submission {
                req: 6,
                total: 1,
                spec: "no-such-op",
                data: b"x",
                last: true,
            },
        );
        assert_eq!(r.map(Told::from), Some(Told::Rejected(ErrorCode::BadSpec)));
        assert_eq!(w.jobs.len(), 4);
    }

    #[test]
    fn a_worker_that_cannot_take_a_job_leaves_it_first_in_line() {
        let mut w = world(4, 2, 1 << 20);
        w.fx.broken.insert(0);
        w.submit(0, C1, 1, b"a");
        w.submit(0, C1, 2, b"b");
        w.dispatch(0);
        // Worker 0 failed and is given up; worker 1 got the first job, the second waits.
        assert_eq!(w.fx.sent.len(), 1);
        assert_eq!((w.fx.sent[0].worker, w.fx.sent[0].job), (1, 1));
        assert_eq!(w.jobs.queue_len(), 1);
        assert_eq!(w.gauge(|g| &g.queue_depth), 1);
    }

    #[test]
    fn queued_jobs_time_out_only_while_no_worker_is_healthy() {
        let mut w = world(4, 1, 1 << 20);
        w.fx.ready.clear();
        w.submit(0, C1, 1, b"waits");
        // No healthy worker: not before the deadline...
        w.sweep(29_000, false);
        assert!(w.fx.take_told().is_empty());
        // Healthy workers serve the queue in order, however long it takes.
        w.sweep(60_000, true);
        assert!(w.fx.take_told().is_empty());
        // ...but with none healthy, past the deadline it fails.
        w.sweep(60_001, false);
        assert_eq!(
            w.fx.take_told(),
            vec![(
                C1,
                1,
                Told::Failed(
                    ErrorCode::Timeout,
                    "no worker could take the job within the 30 s deadline".into()
                )
            )]
        );
        assert!(w.jobs.is_empty());
        assert_eq!(w.jobs.queue_len(), 0);
        assert_eq!(w.gauge(|g| &g.queue_depth), 0);
        assert_eq!(w.slots_in_use(), 0);
        assert!(w.fx.killed.is_empty());
    }

    #[test]
    fn shutdown_answers_every_unfinished_job_and_admits_none() {
        let mut w = world(8, 1, 1 << 20);
        w.submit(0, C1, 1, b"running");
        w.dispatch(0);
        w.submit(0, C1, 2, b"queued");
        let now = w.at(0);
        w.jobs
            .submit(now, C2, upload(3, 100, "grayscale", b"uploading"));
        w.jobs.begin_shutdown();
        assert_eq!(
            w.submit(1, C2, 4, b"late"),
            Some(Told::Rejected(ErrorCode::ShuttingDown))
        );
        assert_eq!(w.gauge(|g| &g.jobs_shutdown), 1);
        w.jobs.fail_all(&mut w.fx);
        let mut told = w.fx.take_told();
        told.sort_by_key(|(_, req, _)| *req);
        let text = "server stopped before the job finished".to_string();
        assert_eq!(
            told,
            vec![
                (C1, 1, Told::Failed(ErrorCode::ShuttingDown, text.clone())),
                (C1, 2, Told::Failed(ErrorCode::ShuttingDown, text.clone())),
                (C2, 3, Told::Failed(ErrorCode::ShuttingDown, text)),
            ]
        );
        // The running job keeps its slot until its worker is gone.
        assert_eq!(w.jobs.len(), 1);
        assert_eq!(w.slots_in_use(), 1);
        w.lost(5, 0);
        assert!(w.jobs.is_empty());
        assert_eq!(w.slots_in_use(), 0);
        assert!(w.fx.take_told().is_empty());
    }
}
