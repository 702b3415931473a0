//! The jobs part's use of the result cache and of collapsing: what happens to a completed
//! upload when the cache is on (a known poison input, a hit, a duplicate of a job in flight,
//! or a miss that is queued and leads), storing a successful result, and answering waiters.
//!
//! Trust boundary: as the jobs part's (`mod.rs`). Results go into the cache only from a
//! worker's successful Done, copied by the master from the slot or the sealed output memfd;
//! failures are never stored. No I/O besides that copy (pread from a memfd), no clock.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use log::{info, warn};

use super::super::iface::{Effects, ErrorCode, OutputFile, Reply, ResultMeta};
use super::{JobState, Jobs, Storage, Waiter};
use crate::cache::{EntryMeta, NotStored};
use crate::ipc::msg::Done;
use crate::stats;
use imgfilters::Pipeline;

/// What POISON_INPUT says to a known poison input.
pub const KNOWN_POISON: &str =
    "this input is a known poison input (it already cost two workers); it will not be run again";

impl Jobs {
    /// Uploads completed since the last turn: each is refused (known poison), answered from
    /// the cache, made to wait for an identical job in flight, or queued as a leader.
    pub(super) fn settle_arrived(&mut self, now: Instant, fx: &mut impl Effects) {
        for job_id in std::mem::take(&mut self.arrived) {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            let Some(cache) = self.cache.as_mut() else {
                continue;
            };
            if job.answered {
                // Its client went away before it was looked up.
                self.release_job(job_id);
                continue;
            }
            let input = job.hasher.take().map(|h| h.finish()).unwrap_or_default();
            job.input_key = Some(input);
            // Parsed at admission already; the canonical text makes `blur:2` and `blur:2.0`
            // one key.
            let spec = job
                .spec
                .parse::<Pipeline>()
                .map_or_else(|_| job.spec.clone(), |p| p.canonical());
            let key = cache.key(&input, &spec);
            let (conn, req) = (job.conn, job.request);
            let g = &self.stats.get().global;
            if cache.is_poison(&input) {
                stats::inc(&g.cache_poison_refused);
                stats::inc(&g.jobs_failed);
                let text = KNOWN_POISON.to_string();
                warn!(conn = conn.gen; "job {job_id} req {req}: {} {} bytes refused: {text}", job.spec, job.total);
                fx.reply(
                    conn,
                    req,
                    Reply::Failed {
                        code: ErrorCode::PoisonInput,
                        text,
                    },
                );
                self.forget_request(conn, req);
                self.release_job(job_id);
                continue;
            }
            if let Some((m, bytes)) = cache.get(&key) {
                stats::inc(&g.cache_hits);
                stats::inc(&g.jobs_ok);
                self.stats.record_answer(job.submitted, now);
                let len = bytes.len();
                let meta = ResultMeta {
                    total_len: len as u64,
                    width: m.width,
                    height: m.height,
                    format: m.format,
                    ..ResultMeta::default()
                };
                fx.reply(
                    conn,
                    req,
                    Reply::Result {
                        meta,
                        output: bytes,
                    },
                );
                info!(
                    conn = conn.gen;
                    "job {job_id} req {req}: {} {} -> {len} bytes, status OK, cache hit, total {:.1} ms",
                    job.spec,
                    job.total,
                    now.saturating_duration_since(job.submitted).as_secs_f64() * 1000.0,
                );
                self.forget_request(conn, req);
                // The slot is free before the turn ends: a hit never waits for a worker.
                self.release_job(job_id);
                continue;
            }
            if let Some(leader) = self.collapse.leader(&key) {
                stats::inc(&g.cache_collapsed);
                let w = Waiter {
                    id: job_id,
                    conn,
                    req,
                    submitted: job.submitted,
                    waiting_since: now,
                };
                self.collapse.wait(leader, w);
                // Its storage is released at once; its request stays in flight (it counts
                // against its connection's --max-in-flight) until the leader is answered.
                self.release_job(job_id);
                continue;
            }
            stats::inc(&g.cache_misses);
            self.collapse.lead(key, job_id);
            let owner = job.owner;
            self.queue.push(owner, job_id);
            stats::inc(&g.queue_depth);
            g.queue_peak.fetch_max(self.queue.len() as u64, Relaxed);
        }
    }

    /// Copies a successful result into the cache (from the job's slot, or by pread from the
    /// output memfd), if the cache is on and the job was keyed.
    pub(super) fn store_result(&mut self, done: &Done, out_file: Option<&OutputFile>) {
        if done.status != 0 {
            return;
        }
        let (Some(cache), Some(job)) = (self.cache.as_mut(), self.jobs.get(&done.job)) else {
            return;
        };
        let Some(input) = job.input_key else {
            return;
        };
        let spec = job
            .spec
            .parse::<Pipeline>()
            .map_or_else(|_| job.spec.clone(), |p| p.canonical());
        let key = cache.key(&input, &spec);
        let meta = EntryMeta {
            width: done.width,
            height: done.height,
            format: done.format,
        };
        let len = done.output_len as usize;
        let ring = &self.ring;
        let storage = &job.storage;
        let r = cache.insert(key, meta, len, |dst| {
            if let Some(f) = out_file {
                return f.0.read_exact_at(dst, 0);
            }
            match storage {
                Storage::Slot { slot, .. } => {
                    match ring.read(*slot, done.output_offset, done.output_len) {
                        Some(src) => {
                            dst.copy_from_slice(src);
                            Ok(())
                        }
                        None => Err(std::io::Error::other("output beyond the slot")),
                    }
                }
                Storage::Memfd { .. } => Err(std::io::Error::other("no output file")),
            }
        });
        let g = &self.stats.get().global;
        match r {
            Ok(ins) => {
                stats::inc(&g.cache_inserts);
                stats::add(&g.cache_evictions, ins.evicted);
            }
            Err(NotStored::TooLarge) => stats::inc(&g.cache_too_large),
            Err(NotStored::Present | NotStored::Unreadable) => {}
        }
        g.cache_bytes.store(cache.bytes() as u64, Relaxed);
        g.cache_entries.store(cache.entries() as u64, Relaxed);
    }

    /// Answers `waiters` of the leader `leader` with `reply` (each with its own request id and
    /// queue time: from its upload's end to now), counts and logs each.
    pub(super) fn answer_waiters(
        &self,
        now: Instant,
        leader: u64,
        waiters: &[Waiter],
        reply: &Reply<'_>,
        status: u16,
        fx: &mut impl Effects,
    ) {
        let Some(job) = self.jobs.get(&leader) else {
            return;
        };
        for w in waiters {
            let queue_us = now.saturating_duration_since(w.waiting_since).as_micros() as u64;
            let mut r = reply.clone();
            if let Reply::Result { meta, .. } | Reply::Streamed { meta, .. } = &mut r {
                meta.queue_us = queue_us.min(u32::MAX as u64) as u32;
            }
            super::count_outcome(&self.stats, status);
            self.stats.record_answer(w.submitted, now);
            fx.reply(w.conn, w.req, r);
            info!(
                conn = w.conn.gen;
                "job {} req {}: {} {} -> {} bytes, status {}, collapsed onto job {leader}, queue {queue_us} us, total {:.1} ms",
                w.id,
                w.req,
                job.spec,
                job.total,
                match reply {
                    Reply::Result { meta, .. } | Reply::Streamed { meta, .. } => meta.total_len,
                    _ => 0,
                },
                ErrorCode::from_u16(status).map_or("OK", |c| c.name()),
                now.saturating_duration_since(w.submitted).as_secs_f64() * 1000.0,
            );
        }
    }

    /// Fails every waiter of `leader` with the leader's error (`fail_job`).
    pub(super) fn fail_waiters(
        &mut self,
        leader: u64,
        code: ErrorCode,
        text: &str,
        fx: &mut impl Effects,
    ) {
        if code == ErrorCode::PoisonInput {
            let input = self.jobs.get(&leader).and_then(|j| j.input_key);
            if let (Some(cache), Some(input)) = (self.cache.as_mut(), input) {
                cache.add_poison(input);
            }
        }
        for w in self.collapse.finish(leader) {
            stats::inc(&self.stats.get().global.jobs_failed);
            fx.reply(
                w.conn,
                w.req,
                Reply::Failed {
                    code,
                    text: text.to_string(),
                },
            );
            info!(conn = w.conn.gen; "job {} req {}: status {}, collapsed onto job {leader}", w.id, w.req, code.name());
            self.forget_request(w.conn, w.req);
        }
    }

    /// The leader's client is gone but others wait for its result: the oldest waiter takes
    /// the client's place, so the job runs on (retries and deadlines as for any job) and
    /// answers that waiter's request. Returns whether one did.
    pub(super) fn promote(&mut self, leader: u64) -> bool {
        let Some(w) = self.collapse.promote(leader) else {
            return false;
        };
        let Some(job) = self.jobs.get_mut(&leader) else {
            return false;
        };
        let old = job.conn;
        job.conn = w.conn;
        job.request = w.req;
        job.submitted = w.submitted;
        if matches!(job.storage, Storage::Slot { .. }) && old != w.conn {
            if let Some(n) = self.slots_by_conn.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.slots_by_conn.remove(&old);
                }
            }
            *self.slots_by_conn.entry(w.conn).or_default() += 1;
        }
        self.by_conn
            .entry(w.conn)
            .or_default()
            .insert(w.req, leader);
        true
    }
}

/// Whether a job in this state can still lead (it will produce a result).
pub(super) fn leads(state: JobState) -> bool {
    !matches!(state, JobState::Uploading)
}
