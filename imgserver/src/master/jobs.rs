//! Jobs in the master: admission (limits, BUSY), upload into a ring slot or a per-job memfd,
//! the queue, dispatch to idle workers, results back to clients, and what happens when a
//! worker dies or overruns its deadline.
//!
//! Trust boundary: between an untrusted client's declared sizes and the shared memory: every
//! length is checked against the limits and against the storage before a byte is copied.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use imgfilters::Pipeline;
use log::{info, warn};
use memmap2::MmapRaw;
use netproto_sys::{ErrorCode, ResultInfo};

use super::client::Action;
use super::pool::WState;
use super::Master;
use crate::cli::ServeArgs;
use crate::ipc::channel;
use crate::ipc::msg::{Done, Msg, NO_SLOT};
use crate::ring::{self, Ring, SlotTable};
use crate::stats::{self, Stats};

/// Where a job's bytes live.
pub enum Storage {
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
pub enum JobState {
    Uploading,
    Queued,
    Running { worker: usize },
}

pub struct Job {
    pub conn_index: usize,
    pub conn_gen: u64,
    pub request: u64,
    pub spec: String,
    pub total: u64,
    pub received: u64,
    pub storage: Storage,
    pub state: JobState,
    pub submitted: Instant,
    pub queued_at: Instant,
    pub queue_us: u64,
    /// A worker already died running this job (a second death makes it POISON_INPUT).
    pub crashed_once: bool,
    /// The client has been answered (or is gone); only the storage remains to reclaim.
    pub answered: bool,
}

pub struct SubmitCtx {
    pub conn_index: usize,
    pub conn_gen: u64,
}

/// The master's job-related state, borrowed apart from the client being served.
pub struct JobTables<'a> {
    pub jobs: &'a mut HashMap<u64, Job>,
    pub queue: &'a mut VecDeque<u64>,
    pub slots: &'a mut SlotTable,
    pub ring: &'a Ring,
    pub stats: &'a Stats,
    pub args: &'a ServeArgs,
    pub next_job: &'a mut u64,
    pub large_bytes: &'a mut u64,
    pub avg_job_ms: f64,
    pub workers: usize,
    pub shutting_down: bool,
}

/// How long a refused client should wait: about the time the queue ahead needs to drain.
fn retry_after_ms(queued: usize, workers: usize, avg_job_ms: f64) -> u32 {
    let ms = (queued as f64 + 1.0) * avg_job_ms / workers.max(1) as f64;
    ms.clamp(50.0, 5000.0) as u32
}

/// Admits (or refuses) a new job and stores its first chunk.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    t: &mut JobTables<'_>,
    conn_jobs: &mut HashMap<u64, u64>,
    ctx: SubmitCtx,
    id: u64,
    total: u64,
    spec: &str,
    data: &[u8],
    last: bool,
) -> Action {
    let g = &t.stats.get().global;
    stats::inc(&g.jobs_submitted);
    let reject = |code: ErrorCode, msg: String| {
        stats::inc(&g.jobs_failed);
        Action::Reject(id, code, msg)
    };
    if t.shutting_down {
        stats::inc(&g.jobs_shutdown);
        return reject(
            ErrorCode::ShuttingDown,
            "server is shutting down; resubmit to a running server".into(),
        );
    }
    if conn_jobs.contains_key(&id) {
        return reject(
            ErrorCode::DuplicateRequest,
            format!("request id {id} is already in flight"),
        );
    }
    if conn_jobs.len() >= t.args.max_in_flight as usize {
        return reject(
            ErrorCode::TooManyInFlight,
            format!(
                "at most {} jobs in flight per connection (--max-in-flight)",
                t.args.max_in_flight
            ),
        );
    }
    if total > t.args.max_upload {
        stats::inc(&g.error_too_large);
        return reject(
            ErrorCode::InputTooLarge,
            format!(
                "upload of {total} bytes exceeds the limit of {} bytes (--max-upload)",
                t.args.max_upload
            ),
        );
    }
    if let Err(e) = spec.parse::<Pipeline>() {
        stats::inc(&g.error_bad_spec);
        return reject(ErrorCode::BadSpec, e.to_string());
    }
    let storage = if total <= t.ring.slot_size() {
        match t.slots.alloc() {
            Some((slot, generation)) => Storage::Slot { slot, generation },
            None => {
                stats::inc(&g.jobs_busy);
                return Action::Busy(id, retry_after_ms(t.queue.len(), t.workers, t.avg_job_ms));
            }
        }
    } else {
        if *t.large_bytes + total > t.args.large_job_budget {
            stats::inc(&g.jobs_busy);
            return Action::Busy(id, retry_after_ms(t.queue.len(), t.workers, t.avg_job_ms));
        }
        let made = crate::shm::create(c"imgserver-job", total).and_then(|fd| {
            let map = crate::shm::map_populated(&fd, total)?;
            Ok((fd, map))
        });
        match made {
            Ok((fd, map)) => {
                *t.large_bytes += total;
                stats::inc(&g.large_jobs);
                Storage::Memfd { fd, map }
            }
            Err(e) => {
                warn!("job memfd of {total} bytes: {e}");
                return reject(ErrorCode::Internal, "cannot allocate job memory".into());
            }
        }
    };
    stats::add(
        &g.slots_in_use,
        matches!(storage, Storage::Slot { .. }) as u64,
    );
    let job_id = *t.next_job;
    *t.next_job += 1;
    let now = Instant::now();
    t.jobs.insert(
        job_id,
        Job {
            conn_index: ctx.conn_index,
            conn_gen: ctx.conn_gen,
            request: id,
            spec: spec.to_string(),
            total,
            received: 0,
            storage,
            state: JobState::Uploading,
            submitted: now,
            queued_at: now,
            queue_us: 0,
            crashed_once: false,
            answered: false,
        },
    );
    conn_jobs.insert(id, job_id);
    add_data(t.jobs, t.queue, t.ring, t.stats, job_id, data, last);
    Action::None
}

/// Appends upload data to a job; queues it when complete.
pub fn add_data(
    jobs: &mut HashMap<u64, Job>,
    queue: &mut VecDeque<u64>,
    ring: &Ring,
    stats: &Stats,
    job_id: u64,
    data: &[u8],
    last: bool,
) {
    let Some(job) = jobs.get_mut(&job_id) else {
        return;
    };
    if job.state != JobState::Uploading {
        return;
    }
    // libnetproto already enforces that chunks add up to the declared total.
    let ok = match &job.storage {
        Storage::Slot { slot, .. } => ring.write(*slot, job.received, data),
        Storage::Memfd { map, .. } => ring::raw_write(map, job.received, data),
    };
    if !ok {
        warn!("job {job_id}: data beyond its storage; dropping chunk");
        return;
    }
    job.received += data.len() as u64;
    if last {
        job.state = JobState::Queued;
        job.queued_at = Instant::now();
        queue.push_back(job_id);
        let g = &stats.get().global;
        stats::inc(&g.queue_depth);
        let depth = queue.len() as u64;
        g.queue_peak.fetch_max(depth, Relaxed);
    }
}

impl Master {
    /// Hands queued jobs to idle workers.
    pub(super) fn dispatch(&mut self) {
        while let Some(&job_id) = self.queue.front() {
            let Some(w) = self.idle_worker() else { return };
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
            let (slot, generation, fd) = match &job.storage {
                Storage::Slot { slot, generation } => (*slot, *generation, None),
                Storage::Memfd { fd, .. } => (NO_SLOT, 0, Some(fd.as_fd())),
            };
            let msg = Msg::Job {
                job: job_id,
                slot,
                generation,
                input_len: job.total,
                spec: job.spec.clone(),
            };
            let fds: Vec<_> = fd.into_iter().collect();
            let sock = self.workers[w]
                .sock
                .as_ref()
                .expect("idle worker has a channel");
            match channel::send(sock.as_fd(), &msg, &fds) {
                Ok(()) => {
                    let now = Instant::now();
                    job.queue_us = now.duration_since(job.queued_at).as_micros() as u64;
                    stats::add(&self.stats.get().global.queue_us_total, job.queue_us);
                    job.state = JobState::Running { worker: w };
                    self.workers[w].state = WState::Busy {
                        job: job_id,
                        since: now,
                    };
                }
                Err(e) => {
                    warn!("worker {w}: cannot send job: {e}; replacing it");
                    self.queue.push_front(job_id);
                    stats::inc(&self.stats.get().global.queue_depth);
                    self.kill_worker(w);
                    self.workers[w].state = WState::Dead;
                    stats::dec(&self.stats.get().global.workers_alive);
                }
            }
        }
    }

    /// A worker's Done message.
    pub(super) fn job_done(&mut self, w: usize, done: Done, fds: Vec<OwnedFd>) {
        let matches_worker =
            matches!(self.workers[w].state, WState::Busy { job, .. } if job == done.job);
        let stale_slot =
            done.slot != NO_SLOT && self.slots.generation(done.slot) != Some(done.generation);
        if !matches_worker || stale_slot {
            warn!(
                "worker {w}: stale or unexpected Done for job {} (ignored)",
                done.job
            );
            return;
        }
        let started = match self.workers[w].state {
            WState::Busy { since, .. } => since,
            _ => Instant::now(),
        };
        self.workers[w].state = WState::Idle;
        let service_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.avg_job_ms = 0.9 * self.avg_job_ms + 0.1 * service_ms;
        // The worker's next job first: it can decode while this result is encrypted and
        // written (this job's slot is released only below, so it cannot be handed out).
        self.dispatch();
        let Some(job) = self.jobs.get(&done.job) else {
            return;
        };
        let (ci, cg, req) = (job.conn_index, job.conn_gen, job.request);
        let answered = job.answered;
        let g = &self.stats.get().global;
        if done.status == 0 {
            stats::inc(&g.jobs_ok);
        } else {
            stats::inc(&g.jobs_failed);
            count_error(&self.stats, done.status);
        }
        if !answered {
            let out_map;
            let output: Option<&[u8]> = if done.status != 0 {
                None
            } else if done.in_memfd {
                let fd = fds.into_iter().next();
                out_map = fd.and_then(|fd| {
                    crate::shm::check_sealed(&fd).ok()?;
                    crate::shm::map(&fd, done.output_len.max(1)).ok()
                });
                out_map
                    .as_ref()
                    .map(|m| ring::raw_slice(m, done.output_len))
            } else if let Storage::Slot { slot, .. } = job.storage {
                self.ring.read(slot, 0, done.output_len)
            } else {
                None
            };
            let info = ResultInfo {
                total_len: done.output_len,
                width: done.width,
                height: done.height,
                format: done.format,
                queue_us: job.queue_us.min(u32::MAX as u64) as u32,
                decode_us: done.decode_us,
                filter_us: done.filter_us,
                encode_us: done.encode_us,
            };
            let (status, message) = (done.status, done.message.clone());
            if let Some(c) = self
                .clients
                .get_mut(ci)
                .and_then(|c| c.as_mut())
                .filter(|c| c.gen == cg)
            {
                let r = match (status, output) {
                    (0, Some(out)) => send_result(&mut c.conn, req, &info, out),
                    (0, None) => {
                        c.conn
                            .send_error(req, ErrorCode::Internal, "worker output unreadable")
                    }
                    (code, _) => {
                        let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
                        c.conn.send_error(req, code, &message)
                    }
                };
                if let Err(e) = r {
                    warn!("conn {cg}: sending result: {e}");
                }
                c.jobs.remove(&req);
            }
            self.flush_client(ci);
        }
        // Logged after the answer is on its way, not in front of it.
        if let Some(job) = self.jobs.get(&done.job) {
            info!(
                "job {} req {req}: {} {} -> {} bytes, status {}, queue {} us, decode {} us, filter {} us, encode {} us, total {:.1} ms",
                done.job,
                job.spec,
                job.total,
                done.output_len,
                netproto_sys::ErrorCode::from_u16(done.status).map_or("OK", |c| c.name()),
                job.queue_us,
                done.decode_us,
                done.filter_us,
                done.encode_us,
                job.submitted.elapsed().as_secs_f64() * 1000.0
            );
        }
        self.release_job(done.job);
    }

    /// The worker running `job_id` died (reaped): retry once, else POISON_INPUT; a job that was
    /// already answered (deadline) just has its storage reclaimed.
    pub(super) fn worker_lost_job(&mut self, job_id: u64, w: usize) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.answered {
            self.release_job(job_id);
            return;
        }
        if !job.crashed_once && matches!(job.storage, Storage::Slot { .. } | Storage::Memfd { .. })
        {
            job.crashed_once = true;
            job.state = JobState::Queued;
            job.queued_at = Instant::now();
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
            );
            // The worker that held it is reaped, so nothing touches its storage any more.
            self.release_job(job_id);
        }
    }

    /// Answers a job with an error now; its storage is reclaimed when no worker holds it.
    pub(super) fn fail_job(&mut self, job_id: u64, code: ErrorCode, text: &str) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if !job.answered {
            job.answered = true;
            stats::inc(&self.stats.get().global.jobs_failed);
            let (ci, cg, req) = (job.conn_index, job.conn_gen, job.request);
            if let Some(c) = self.client_of(ci, cg) {
                let _ = c.conn.send_error(req, code, text);
                c.jobs.remove(&req);
            }
            self.flush_client(ci);
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

    /// The client is gone: drop an upload now, let queued/running jobs finish unanswered.
    pub(super) fn abandon_job(&mut self, job_id: u64) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        job.answered = true;
        if job.state == JobState::Uploading {
            self.release_job(job_id);
        }
    }

    /// Frees a job's storage and forgets it.
    pub(super) fn release_job(&mut self, job_id: u64) {
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

    /// Kills workers whose job overran the deadline; the job fails with TIMEOUT at once. While
    /// no worker is healthy (all dead or crash-looping), queued jobs older than the deadline
    /// fail the same way instead of waiting forever; with healthy workers the queue is bounded
    /// by the ring slots (BUSY), so waiting jobs are served in order.
    pub(super) fn sweep_deadlines(&mut self) {
        let limit = ServeArgs::secs(self.args.job_timeout);
        let healthy = self
            .workers
            .iter()
            .any(|w| matches!(w.state, WState::Idle | WState::Busy { .. }));
        let stale: Vec<u64> = if healthy {
            Vec::new()
        } else {
            self.queue
                .iter()
                .copied()
                .filter(|j| {
                    self.jobs
                        .get(j)
                        .is_some_and(|job| job.queued_at.elapsed() > limit)
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
            );
        }
        for w in 0..self.workers.len() {
            if let WState::Busy { job, since } = self.workers[w].state {
                if since.elapsed() > limit && !self.workers[w].killed {
                    warn!(
                        "worker {w}: job {job} exceeded the {:.0} s deadline; killing the worker",
                        limit.as_secs_f64()
                    );
                    stats::inc(&self.stats.get().global.jobs_timeout);
                    self.fail_job(
                        job,
                        ErrorCode::Timeout,
                        &format!("job exceeded the {:.0} s deadline", limit.as_secs_f64()),
                    );
                    self.kill_worker(w);
                }
            }
        }
    }
}

/// Sends a result as JOB_RESULT plus RESULT_DATA chunks of at most 64 KiB.
fn send_result(
    conn: &mut netproto_sys::ServerConn,
    req: u64,
    info: &ResultInfo,
    out: &[u8],
) -> netproto_sys::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let first = out.len().min(CHUNK);
    conn.send_result(req, info, &out[..first], first == out.len())?;
    let mut off = first;
    while off < out.len() {
        let end = (off + CHUNK).min(out.len());
        conn.send_result_data(req, &out[off..end], end == out.len())?;
        off = end;
    }
    Ok(())
}

fn count_error(stats: &Stats, status: u16) {
    let g = &stats.get().global;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_grows_with_the_queue_and_is_bounded() {
        assert_eq!(retry_after_ms(0, 2, 20.0), 50);
        assert_eq!(retry_after_ms(99, 2, 20.0), 1000);
        assert_eq!(retry_after_ms(100_000, 2, 20.0), 5000);
    }
}
