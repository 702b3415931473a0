//! The job life cycle in the master: admission (limits, BUSY), upload into a ring slot or a
//! per-job memfd, the queue, dispatch decisions, results, retries after a worker death or a
//! deadline kill, poison inputs, deadlines and the shutdown drain.
//!
//! Trust boundary: between an untrusted client's declared sizes and the shared memory: every
//! length is checked against the limits and against the storage before a byte is copied. This
//! part holds no socket and no process and never reads the clock (`now` is passed in): it says
//! what to send to which worker and what to tell which connection through [`Effects`], so its
//! whole life cycle runs in unit tests with a fake pool and a fake clock.

mod cached;
mod collapse;
mod fairq;
mod variants;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::iface::{
    Chunk, ConnRef, Death, Effects, ErrorCode, JobOrder, OutputFile, Reply, ResultMeta, Submission,
    WorkerId,
};
use crate::cache::{self, InputHasher, ResultCache};
use crate::ipc::msg::{Done, VariantDone, NO_SLOT};
use crate::ring::{Ring, SlotTable};
use crate::stats::{self, Stats};
use collapse::{Collapse, Waiter};
use fairq::{FairQueue, Owner};
use imgfilters::Pipeline;
use log::{info, warn};
use variants::Variants;

/// The limits the jobs part enforces (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    pub max_in_flight: u32,
    pub max_upload: u64,
    pub large_job_budget: u64,
    pub job_timeout: Duration,
    /// An upload that receives nothing for this long is dropped with its slot (`None`: never).
    pub upload_timeout: Option<Duration>,
}

/// Where a job's bytes live.
enum Storage {
    Slot {
        slot: u32,
        generation: u32,
    },
    /// Larger than a slot: a sealed memfd of exactly the declared length, written with
    /// pwrite and never mapped by the master (a mapping's pages would count in the master's
    /// memory for as long as the job lives: a 50 MP upload, ~10 MB, on top of everything).
    Memfd {
        file: File,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Uploading,
    Queued,
    Running { worker: WorkerId, since: Instant },
}

/// How a worker was lost while running a job: the two strikes of the poison rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// The worker died on its own (crash, OOM, a signal from outside).
    Crash,
    /// The job overran `--job-timeout` and the master killed the worker.
    Overrun,
    /// The worker's sandbox refused a system call (the call's number, when known): a decoder
    /// taken over by the input, or one that does what no decoder should.
    Violation(Option<i64>),
}

struct Job {
    conn: ConnRef,
    /// Its place in the queue's rounds.
    owner: Owner,
    request: u64,
    spec: String,
    total: u64,
    received: u64,
    storage: Storage,
    state: JobState,
    submitted: Instant,
    queued_at: Instant,
    /// While uploading: when its last chunk arrived (the upload's progress deadline runs from
    /// here).
    progress_at: Instant,
    queue_us: u64,
    /// A worker was already lost running this job, and how (a second loss, of either kind,
    /// makes it POISON_INPUT).
    first_loss: Option<Loss>,
    /// The client has been answered (or is gone); only the storage remains to reclaim.
    answered: bool,
    /// The deadline passed on this run and the worker was told to die; the job waits for the
    /// reaping (then it is retried, or its storage reclaimed if it was already answered).
    overran: bool,
    /// With the cache on: the upload's hash so far, then the input's hash (`cache.rs`).
    hasher: Option<Box<InputHasher>>,
    input_key: Option<cache::Key>,
    /// A multi-output job (`spec` is its variant list): which variants were answered.
    variants: Option<Variants>,
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
    /// Per connection: ring slots its jobs hold (connections holding none are absent).
    slots_by_conn: HashMap<ConnRef, u32>,
    /// Queued jobs, in rounds between users and their connections (`fairq.rs`).
    queue: FairQueue,
    /// Per worker: the job it is running.
    running: Vec<Option<u64>>,
    next_job: u64,
    large_bytes: u64,
    /// Smoothed job service time, for BUSY retry-after hints and the short-job spin.
    avg_job_ms: f64,
    shutting_down: bool,
    /// The result cache (`None`: `--cache-size 0`, nothing hashed, nothing collapsed).
    cache: Option<ResultCache>,
    collapse: Collapse,
    /// With the cache on: uploads completed since the last dispatch, to be looked up (hit,
    /// collapse or queue) where the effects are at hand.
    arrived: Vec<u64>,
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
            slots_by_conn: HashMap::new(),
            queue: FairQueue::default(),
            running: vec![None; workers],
            next_job: 1,
            large_bytes: 0,
            avg_job_ms: 20.0,
            shutting_down: false,
            cache: None,
            collapse: Collapse::default(),
            arrived: Vec::new(),
        }
    }

    /// Turns the result cache and collapsing on (`None` leaves them off).
    pub fn with_cache(mut self, cache: Option<ResultCache>) -> Jobs {
        if let Some(c) = &cache {
            stats::add(&self.stats.get().global.cache_size, c.capacity() as u64);
        }
        self.cache = cache;
        self
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
        let storage = match self
            .admit(conn, &s)
            .and_then(|()| self.allocate(conn, s.total))
        {
            Ok(storage) => storage,
            Err(reply) => return Some(reply),
        };
        stats::add(
            &self.stats.get().global.slots_in_use,
            matches!(storage, Storage::Slot { .. }) as u64,
        );
        let variants = s.multi.then(|| Variants::new(s.spec.split(';').count()));
        let job_id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            job_id,
            Job {
                conn,
                owner: Owner { user: s.user, conn },
                request: s.req,
                spec: s.spec.to_string(),
                total: s.total,
                received: 0,
                storage,
                state: JobState::Uploading,
                submitted: now,
                queued_at: now,
                progress_at: now,
                queue_us: 0,
                first_loss: None,
                answered: false,
                overran: false,
                // Multi-output jobs bypass the cache: their one request has several results,
                // which the cache's one-entry-per-key design does not hold.
                hasher: self
                    .cache
                    .as_ref()
                    .filter(|_| !s.multi)
                    .map(|_| Box::default()),
                input_key: None,
                variants,
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
        let parsed = match s.multi {
            true => imgfilters::parse_variant_list(s.spec).map(drop),
            false => s
                .spec
                .parse::<Pipeline>()
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        if let Err(text) = parsed {
            stats::inc(&g.error_bad_spec);
            return Err(self.refuse(ErrorCode::BadSpec, text));
        }
        Ok(())
    }

    /// Storage for an upload of `total` bytes: a ring slot, or a per-job memfd when it is
    /// larger than a slot. BUSY when the slots or the large-job budget are exhausted.
    fn allocate(&mut self, conn: ConnRef, total: u64) -> Result<Storage, Reply<'static>> {
        if total <= self.ring.slot_size() {
            if self.over_slot_share(conn) {
                stats::inc(&self.stats.get().global.jobs_busy_share);
                return Err(self.busy());
            }
            return match self.slots.alloc() {
                Some((slot, generation)) => {
                    *self.slots_by_conn.entry(conn).or_default() += 1;
                    Ok(Storage::Slot { slot, generation })
                }
                None => Err(self.busy()),
            };
        }
        if self.large_bytes + total > self.limits.large_job_budget {
            return Err(self.busy());
        }
        match crate::shm::create(c"imgserver-job", total) {
            Ok(fd) => {
                self.large_bytes += total;
                stats::inc(&self.stats.get().global.large_jobs);
                Ok(Storage::Memfd {
                    file: File::from(fd),
                })
            }
            Err(e) => {
                warn!("job memfd of {total} bytes: {e}");
                Err(self.refuse(ErrorCode::Internal, "cannot allocate job memory".into()))
            }
        }
    }

    /// Whether `conn` already holds its fair share of the ring while slots are scarce (under
    /// a quarter free): an equal share among the connections holding slots, itself included.
    /// With plenty free anyone may take more; once they run short, a connection that hoards
    /// gets BUSY while the others still get slots.
    fn over_slot_share(&self, conn: ConnRef) -> bool {
        let total = self.slots.len();
        if self.slots.free() * 4 >= total {
            return false;
        }
        let held = self.slots_by_conn.get(&conn).copied().unwrap_or(0) as usize;
        let holders = self.slots_by_conn.len() + usize::from(held == 0);
        held >= total.div_ceil(holders.max(1))
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
            // Within the declared length (checked by libnetproto), which is the memfd's.
            Storage::Memfd { file } => file.write_all_at(data, job.received).is_ok(),
        };
        if !ok {
            warn!("job {job_id}: data beyond its storage; dropping chunk");
            return;
        }
        job.received += data.len() as u64;
        job.progress_at = now;
        if let Some(h) = job.hasher.as_mut() {
            h.update(data);
        }
        if last && job.hasher.is_some() {
            job.state = JobState::Queued;
            job.queued_at = now;
            self.arrived.push(job_id);
        } else if last {
            job.state = JobState::Queued;
            job.queued_at = now;
            self.queue.push(job.owner, job_id);
            let g = &self.stats.get().global;
            stats::inc(&g.queue_depth);
            let depth = self.queue.len() as u64;
            g.queue_peak.fetch_max(depth, Relaxed);
        }
    }

    /// Hands queued jobs to idle workers.
    pub fn dispatch(&mut self, now: Instant, fx: &mut impl Effects) {
        self.settle_arrived(now, fx);
        while let Some(job_id) = self.queue.front() {
            let Some(w) =
                (0..self.running.len()).find(|&w| self.running[w].is_none() && fx.worker_ready(w))
            else {
                return;
            };
            self.queue.pop();
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
                Storage::Memfd { file } => (NO_SLOT, 0, Some(file.as_fd())),
            };
            let order = JobOrder {
                job: job_id,
                slot,
                generation,
                input_len: job.total,
                spec: &job.spec,
                variants: job.variants.map_or(0, |v| v.to_run()),
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
                self.queue.push_first(job_id);
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
        if job.variants.is_some() {
            return self.done_multi(now, done, fx);
        }
        count_outcome(&self.stats, done.status);
        self.stats
            .record_job(job.queue_us, done.phases_us(), job.submitted, now);
        // A successful output that did not fit the slot comes in a memfd of its own, which
        // the connection streams from (it keeps the file; the job forgets it below).
        let out_file = (done.status == 0 && done.in_memfd)
            .then(|| output_file(&done, fds))
            .flatten()
            .map(|f| OutputFile(Arc::new(f)));
        self.store_result(&done, out_file.as_ref());
        let waiters = self.collapse.finish(done.job);
        let Some(job) = self.jobs.get(&done.job) else {
            return;
        };
        if !answered || !waiters.is_empty() {
            let reply = self.result_reply(job, &done, out_file);
            self.answer_waiters(now, done.job, &waiters, &reply, done.status, fx);
            if !answered {
                fx.reply(conn, req, reply);
            }
        }
        // Logged after the answer is on its way, not in front of it: the job's one line (the
        // worker logs its own at debug only), whatever the status. The spec is the client's
        // text; the logger escapes it.
        info!(
            conn = conn.gen;
            "job {} req {req}: {} {} -> {} bytes, status {}, queue {} us, decode {} us, filter {} us, encode {} us, total {:.1} ms{}{}",
            done.job,
            job.spec,
            job.total,
            done.output_len,
            ErrorCode::from_u16(done.status).map_or("OK", |c| c.name()),
            job.queue_us,
            done.decode_us,
            done.filter_us,
            done.encode_us,
            now.saturating_duration_since(job.submitted).as_secs_f64() * 1000.0,
            // A successful job's message is its decoder's warning (damaged input recovered).
            if done.status == 0 && !done.message.is_empty() { ", decode warning: " } else { "" },
            if done.status == 0 { done.message.as_str() } else { "" },
        );
        if !answered {
            self.forget_request(conn, req);
        }
        for w in &waiters {
            self.forget_request(w.conn, w.req);
        }
        self.release_job(done.job);
    }

    /// A variant of the multi-output job worker `w` runs is ready (or failed): it goes to the
    /// client at once, streamed from the worker's memfd. A message for a job `w` does not run,
    /// for a variant out of range or answered before, is dropped with a warning.
    pub fn variant(
        &mut self,
        w: WorkerId,
        v: VariantDone,
        fds: Vec<OwnedFd>,
        fx: &mut impl Effects,
    ) {
        let job_id = v.done.job;
        let genuine = self.running_since_for(w, &v.done).is_some();
        let Some(job) = self.jobs.get_mut(&job_id).filter(|_| genuine) else {
            warn!(
                "worker {w}: stale or unexpected variant {} for job {job_id} (ignored)",
                v.index
            );
            return;
        };
        let Some(variants) = job.variants.as_mut() else {
            warn!("worker {w}: variant message for job {job_id}, not a multi-output job (ignored)");
            return;
        };
        if !variants.answer(v.index) {
            warn!(
                "worker {w}: variant {} of job {job_id} out of range or answered before (ignored)",
                v.index
            );
            return;
        }
        let count = variants.count();
        if job.answered {
            // Its client is gone: nobody to tell.
            return;
        }
        let d = &v.done;
        let reply = if d.status != 0 {
            Reply::VariantFailed {
                index: v.index,
                code: ErrorCode::from_u16(d.status).unwrap_or(ErrorCode::Internal),
                text: d.message.clone(),
            }
        } else if let Some(file) = output_file(d, fds) {
            stats::inc(&self.stats.get().global.variant_outputs);
            Reply::Variant {
                index: v.index,
                meta: ResultMeta {
                    total_len: d.output_len,
                    width: d.width,
                    height: d.height,
                    format: d.format,
                    queue_us: job.queue_us.min(u32::MAX as u64) as u32,
                    decode_us: d.decode_us,
                    filter_us: d.filter_us,
                    encode_us: d.encode_us,
                },
                file: OutputFile(Arc::new(file)),
            }
        } else {
            Reply::VariantFailed {
                index: v.index,
                code: ErrorCode::Internal,
                text: "worker output unreadable".into(),
            }
        };
        log::debug!(
            "job {job_id} variant {}/{count}: status {}, {} bytes",
            v.index + 1,
            ErrorCode::from_u16(d.status).map_or("OK", |c| c.name()),
            d.output_len
        );
        fx.reply(job.conn, job.request, reply);
    }

    /// The end of a multi-output job (its variants were answered as they came): a failure of
    /// the input itself ends the request with that error; a variant the worker left
    /// unanswered (it must not) fails INTERNAL, so the request always ends.
    fn done_multi(&mut self, now: Instant, done: Done, fx: &mut impl Effects) {
        let Some(job) = self.jobs.get_mut(&done.job) else {
            return;
        };
        let (conn, req, was_answered) = (job.conn, job.request, job.answered);
        let mut variants = job.variants.expect("a multi-output job");
        let missing: Vec<u8> = variants.unanswered().collect();
        if !was_answered {
            job.answered = true;
            if done.status != 0 {
                fx.reply(
                    conn,
                    req,
                    Reply::Failed {
                        code: ErrorCode::from_u16(done.status).unwrap_or(ErrorCode::Internal),
                        text: done.message.clone(),
                    },
                );
            } else {
                for &index in &missing {
                    variants.answer(index);
                    fx.reply(
                        conn,
                        req,
                        Reply::VariantFailed {
                            index,
                            code: ErrorCode::Internal,
                            text: "the worker did not answer this variant".into(),
                        },
                    );
                }
                if !missing.is_empty() {
                    warn!(
                        "job {}: worker left {} variant(s) unanswered",
                        done.job,
                        missing.len()
                    );
                }
            }
        }
        count_outcome(&self.stats, done.status);
        stats::inc(&self.stats.get().global.variant_jobs);
        self.stats
            .record_job(job.queue_us, done.phases_us(), job.submitted, now);
        info!(
            conn = conn.gen;
            "job {} req {req}: {} {} -> {} variants, status {}, queue {} us, decode {} us, filter {} us, encode {} us, total {:.1} ms",
            done.job,
            job.spec,
            job.total,
            variants.count(),
            ErrorCode::from_u16(done.status).map_or("OK", |c| c.name()),
            job.queue_us,
            done.decode_us,
            done.filter_us,
            done.encode_us,
            now.saturating_duration_since(job.submitted).as_secs_f64() * 1000.0,
        );
        if !was_answered {
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

    /// What to tell the client about a finished job: its output (the output memfd
    /// `out_file`, or the job's slot) or the worker's typed error.
    fn result_reply<'a>(
        &'a self,
        job: &Job,
        done: &Done,
        out_file: Option<OutputFile>,
    ) -> Reply<'a> {
        if done.status != 0 {
            return Reply::Failed {
                code: ErrorCode::from_u16(done.status).unwrap_or(ErrorCode::Internal),
                text: done.message.clone(),
            };
        }
        let meta = ResultMeta {
            total_len: done.output_len,
            width: done.width,
            height: done.height,
            format: done.format,
            queue_us: job.queue_us.min(u32::MAX as u64) as u32,
            decode_us: done.decode_us,
            filter_us: done.filter_us,
            encode_us: done.encode_us,
        };
        if let Some(file) = out_file {
            return Reply::Streamed { meta, file };
        }
        let output = match &job.storage {
            Storage::Slot { slot, .. } if !done.in_memfd => {
                self.ring.read(*slot, done.output_offset, done.output_len)
            }
            _ => None,
        };
        match output {
            Some(output) => Reply::Result { meta, output },
            None => Reply::Failed {
                code: ErrorCode::Internal,
                text: "worker output unreadable".into(),
            },
        }
    }

    /// Worker `w` is gone (reaped). Its job is retried once, first in line, whether the worker
    /// crashed or the master killed it for overrunning the deadline; a second loss of either
    /// kind makes it POISON_INPUT. A job already answered (a second overrun, client gone) just
    /// has its storage reclaimed — only now, when no dying process can still write into it.
    pub fn worker_lost(&mut self, now: Instant, w: WorkerId, death: Death, fx: &mut impl Effects) {
        let Some(job_id) = self.running.get_mut(w).and_then(Option::take) else {
            return;
        };
        let limit = self.limits.job_timeout;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.answered {
            self.release_job(job_id);
            return;
        }
        if job.variants.is_some_and(|v| v.to_run() == 0) {
            // Lost after answering every variant, before its Done: the request is complete.
            let done = Done {
                job: job_id,
                ..Done::default()
            };
            return self.done_multi(now, done, fx);
        }
        let loss = match (job.overran, death) {
            (true, _) => Loss::Overrun,
            (false, Death::SandboxViolation { syscall }) => Loss::Violation(syscall),
            (false, Death::Crash) => Loss::Crash,
        };
        match job.first_loss {
            None => {
                job.first_loss = Some(loss);
                job.overran = false;
                job.state = JobState::Queued;
                job.queued_at = now;
                self.queue.push_first(job_id);
                stats::inc(&self.stats.get().global.queue_depth);
                stats::inc(&self.stats.get().global.jobs_retried);
                // A multi-output job is retried for the variants not yet answered only.
                let rest = job.variants.map_or(String::new(), |v| {
                    format!(
                        " ({} of {} variants left)",
                        v.unanswered().count(),
                        v.count()
                    )
                });
                match loss {
                    Loss::Crash => warn!(
                        "job {job_id}: worker {w} died; retrying once on another worker{rest}"
                    ),
                    Loss::Overrun => warn!(
                        "job {job_id}: worker {w} killed at the deadline; retrying once on another worker{rest}"
                    ),
                    Loss::Violation(_) => warn!(
                        "job {job_id}: worker {w} broke its sandbox; retrying once on another worker{rest}"
                    ),
                }
            }
            Some(first) => {
                // Only a crash can get here second: a second overrun is answered in
                // sweep_deadlines, at the deadline, and arrives above as answered.
                stats::inc(&self.stats.get().global.jobs_poison);
                self.fail_job(
                    job_id,
                    ErrorCode::PoisonInput,
                    &poison_text(first, loss, limit),
                    fx,
                );
                // The worker that held it is reaped, so nothing touches its storage any more.
                self.release_job(job_id);
            }
        }
    }

    /// Answers a job with an error now; its storage is reclaimed when no worker holds it.
    fn fail_job(&mut self, job_id: u64, code: ErrorCode, text: &str, fx: &mut impl Effects) {
        // Whoever waits for this job's result gets the same error (`cached.rs`).
        self.fail_waiters(job_id, code, text, fx);
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

    /// Uploads that received nothing for `--upload-timeout` are dropped: the client hears
    /// SLOW_CLIENT for that request (the rest of its upload is discarded as it arrives), and
    /// the slot or memory it held is free at once. A slot is held for an upload that moves,
    /// not for one a client opened and left.
    pub fn sweep_uploads(&mut self, now: Instant, fx: &mut impl Effects) {
        let Some(limit) = self.limits.upload_timeout else {
            return;
        };
        let stalled: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.state == JobState::Uploading
                    && !j.answered
                    && now.saturating_duration_since(j.progress_at) >= limit
            })
            .map(|(id, _)| *id)
            .collect();
        for job_id in stalled {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            job.answered = true;
            let (conn, req, received, total) = (job.conn, job.request, job.received, job.total);
            stats::inc(&self.stats.get().global.uploads_stalled);
            let text = format!(
                "upload stalled at {received} of {total} bytes: nothing for {} s (--upload-timeout)",
                secs(limit)
            );
            // The connection part logs the refusal (with the peer and user).
            fx.reply(
                conn,
                req,
                Reply::Rejected {
                    code: ErrorCode::SlowClient,
                    text,
                },
            );
            self.forget_request(conn, req);
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
        // Its requests waiting for another job's result are dropped first, so none of them
        // can take the place of a leader of its own below.
        for job_id in reqs.values() {
            self.collapse.drop_waiter(*job_id);
        }
        for (_, job_id) in reqs {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            // A job others wait for runs on for them (`cached.rs`).
            if cached::leads(job.state) && self.promote(job_id) {
                continue;
            }
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
        // Every path that finishes a leader answers its waiters first; none is left waiting
        // for a job that no longer exists.
        for w in self.collapse.finish(job_id) {
            warn!("job {job_id}: waiter req {} left without an answer", w.req);
            self.forget_request(w.conn, w.req);
        }
        match job.storage {
            Storage::Slot { slot, .. } => {
                self.slots.release(slot);
                stats::dec(&self.stats.get().global.slots_in_use);
                if let Some(n) = self.slots_by_conn.get_mut(&job.conn) {
                    *n -= 1;
                    if *n == 0 {
                        self.slots_by_conn.remove(&job.conn);
                    }
                }
            }
            Storage::Memfd { .. } => self.large_bytes = self.large_bytes.saturating_sub(job.total),
        }
        if job.state == JobState::Queued && self.queue.remove(job_id) {
            stats::dec(&self.stats.get().global.queue_depth);
        }
    }

    /// Deadlines. A running job that overran `--job-timeout` has its worker killed; the
    /// first overrun is not answered: the job is retried once on another worker when the
    /// killed one is reaped (see `worker_lost`), exactly as after a crash. An overrun of a job
    /// that already lost a worker answers POISON_INPUT at once (the storage is freed when the
    /// worker is reaped). So an input that always hangs costs its client at most two
    /// deadlines and the pool two workers, and TIMEOUT (retryable) is left to mean "no worker
    /// could take the job": while no worker is healthy (all dead or crash-looping), queued
    /// jobs older than the deadline fail with it instead of waiting forever; with healthy
    /// workers the queue is bounded by the ring slots (BUSY), so waiting jobs are served in
    /// order.
    pub fn sweep_deadlines(&mut self, now: Instant, healthy: bool, fx: &mut impl Effects) {
        let limit = self.limits.job_timeout;
        let stale: Vec<u64> = if healthy {
            Vec::new()
        } else {
            self.queue
                .iter()
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
                    "no worker could take the job within the {} s deadline",
                    secs(limit)
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
            let (first_loss, answered) = (job.first_loss, job.answered);
            stats::inc(&self.stats.get().global.jobs_timeout);
            match first_loss {
                // Its client is gone: nothing to retry or answer, only the worker to stop.
                _ if answered => warn!(
                    "worker {w}: job {job_id} (client gone) exceeded the {} s deadline; killing the worker",
                    secs(limit)
                ),
                None => warn!(
                    "worker {w}: job {job_id} exceeded the {} s deadline; killing the worker, the job will be retried once",
                    secs(limit)
                ),
                Some(first) => {
                    warn!(
                        "worker {w}: job {job_id} exceeded the {} s deadline after losing a worker already; killing the worker, POISON_INPUT",
                        secs(limit)
                    );
                    stats::inc(&self.stats.get().global.jobs_poison);
                    self.fail_job(
                        job_id,
                        ErrorCode::PoisonInput,
                        &poison_text(first, Loss::Overrun, limit),
                        fx,
                    );
                }
            }
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

/// A deadline in seconds as people write it: "30", "0.3".
fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// What POISON_INPUT says: which two losses condemned the input, so a client (and whoever
/// reads its log) can tell a crashing input from one that is too slow for this server's
/// `--job-timeout` (the code alone does not say; the text does).
fn poison_text(first: Loss, second: Loss, limit: Duration) -> String {
    let deadline = secs(limit);
    let both = match (first, second) {
        (Loss::Crash, Loss::Crash) => "crashed two workers".to_string(),
        (Loss::Overrun, Loss::Overrun) => {
            format!("overran the {deadline} s deadline on two workers")
        }
        (Loss::Violation(a), Loss::Violation(b)) if a == b => {
            format!("made two workers break their sandbox ({})", refused(a))
        }
        (Loss::Violation(a), Loss::Violation(b)) => format!(
            "made two workers break their sandbox ({}, {})",
            refused(a),
            refused(b)
        ),
        (Loss::Crash, Loss::Overrun) | (Loss::Overrun, Loss::Crash) => {
            format!("crashed one worker and overran the {deadline} s deadline on another")
        }
        (Loss::Violation(v), other) | (other, Loss::Violation(v)) => format!(
            "made one worker break its sandbox ({}) and {} another",
            refused(v),
            match other {
                Loss::Overrun => format!("overran the {deadline} s deadline on"),
                _ => "crashed".to_string(),
            }
        ),
    };
    format!("this input {both}; it will not be retried")
}

/// "system call openat refused", or as much of it as is known.
fn refused(syscall: Option<i64>) -> String {
    match syscall {
        Some(nr) => match crate::sandbox::seccomp::name(nr) {
            Some(name) => format!("system call {name} refused"),
            None => format!("system call {nr} refused"),
        },
        None => "a system call refused".to_string(),
    }
}

/// The output memfd a worker attached to its Done, once its seals are checked (it cannot
/// shrink under the reads that stream it) and it holds the whole declared output.
fn output_file(done: &Done, fds: Vec<OwnedFd>) -> Option<File> {
    let fd = fds.into_iter().next()?;
    crate::shm::check_sealed(&fd).ok()?;
    let len = crate::shm::len(&fd).ok()?;
    if len < done.output_len.max(1) {
        warn!(
            "job {}: output memfd of {len} bytes for {} declared",
            done.job, done.output_len
        );
        return None;
    }
    Some(File::from(fd))
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
mod tests;
