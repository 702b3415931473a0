//! Server counters in shared memory: one page the master and every worker map, atomics only,
//! one cache line per worker so workers never contend on a line.
//!
//! Trust boundary: workers write their own block; the master writes the global block; any
//! process (including `imgserver stats`, through /proc/PID/fd) may read. All-zero bytes are a
//! valid initial state, so a fresh memfd needs no initialisation.
//!
//! Besides the counters the page holds what `imgserver health` and `imgserver metrics` read:
//! the master's heartbeat (CLOCK_MONOTONIC, which every process of the machine shares), the
//! readiness gauges, and fixed-bucket latency histograms per job phase.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use memmap2::MmapRaw;

/// Most workers with their own stats block.
pub const MAX_WORKERS: usize = 64;
// Bumped whenever the layout changes, so a reader of another build refuses the page.
const MAGIC: u64 = 0x5354_4154_534d_4935; // "IMSTATS5"

/// Op names counted per job step, in the order of `OPS`' indices.
pub const OPS: [&str; 13] = [
    "blur",
    "sharpen",
    "resize",
    "scale",
    "thumbnail",
    "crop",
    "rotate",
    "flip",
    "grayscale",
    "invert",
    "brightness",
    "contrast",
    "noop",
];

macro_rules! counters {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[repr(C, align(64))]
        #[derive(Default)]
        pub struct $name { $(pub $field: AtomicU64,)* }
        impl $name {
            pub fn entries(&self, prefix: &str, out: &mut Vec<(String, u64)>) {
                $(out.push((format!("{prefix}{}", stringify!($field)), self.$field.load(Relaxed)));)*
            }
        }
    };
}

counters!(Global {
    connections_accepted,
    connections_open,
    connections_refused,
    connections_unauth,
    refused_unauth,
    refused_conn_rate,
    refused_login_blocked,
    logins_ok,
    logins_failed,
    logins_blocked,
    requests_rate_limited,
    output_paused,
    turns_deferred,
    slow_clients_closed,
    admission_sources,
    admission_evictions,
    jobs_submitted,
    jobs_ok,
    jobs_failed,
    jobs_busy,
    jobs_busy_share,
    uploads_stalled,
    jobs_retried,
    jobs_timeout,
    jobs_worker_crashed,
    jobs_poison,
    jobs_shutdown,
    pings,
    stats_requests,
    bytes_in,
    bytes_out,
    queue_depth,
    queue_peak,
    slots_in_use,
    large_jobs,
    queue_us_total,
    workers_alive,
    worker_spawns,
    worker_deaths,
    sandbox_violations,
    sandbox_seccomp,
    sandbox_landlock_abi,
    workers_ready,
    workers_configured,
    draining,
    probes,
    probes_ready,
    error_bad_spec,
    error_too_large,
    error_too_many_pixels,
    error_unsupported_format,
    error_decode,
    error_geometry,
    error_encode,
    error_protocol,
    error_other,
    // The result cache and collapsed requests (cache/, master/jobs/collapse.rs).
    cache_hits,
    cache_misses,
    cache_collapsed,
    cache_inserts,
    cache_evictions,
    cache_too_large,
    cache_poison_refused,
    cache_bytes,
    cache_entries,
    cache_size,
    // Multi-output jobs (JOB_SUBMIT_MULTI): jobs finished, variant outputs delivered.
    variant_jobs,
    variant_outputs,
});

counters!(Worker {
    pid,
    jobs,
    jobs_ok,
    jobs_failed,
    decode_us,
    filter_us,
    encode_us,
    busy_us,
    bytes_in,
    bytes_out,
    violation_syscall,
});

/// The phases a job's latency is measured in, in the order of `Shared::latency`.
pub const PHASES: [&str; 5] = ["queue", "decode", "filter", "encode", "total"];

/// Upper bounds of the latency buckets in microseconds (100 µs to 10 s, roughly 1-2.5-5 per
/// decade); one more bucket counts everything above the last.
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One phase's latency histogram: a count per bucket (not cumulative: each observation adds
/// to one bucket, so a reader never sees a bucket lower than the one below it for long), the
/// overflow bucket last, plus the sum and count. Only the master writes it.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Histogram {
    pub buckets: [AtomicU64; BUCKETS_US.len() + 1],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl Histogram {
    pub fn record(&self, us: u64) {
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        inc(&self.buckets[i]);
        add(&self.sum_us, us);
        inc(&self.count);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
            count: self.count.load(Relaxed),
        }
    }
}

/// A histogram read out of the page (per-bucket counts, overflow last).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

#[repr(C)]
pub struct Shared {
    magic: AtomicU64,
    pub started_unix: AtomicU64,
    /// CLOCK_MONOTONIC in microseconds when the master's event loop last went round its
    /// sweep (at least every 100 ms while it runs); 0 before the first turn.
    pub heartbeat_us: AtomicU64,
    pub global: Global,
    pub ops: [AtomicU64; 16],
    pub workers: [Worker; MAX_WORKERS],
    /// Job latency per phase, in the order of `PHASES`.
    pub latency: [Histogram; PHASES.len()],
}

/// CLOCK_MONOTONIC now, in microseconds: the same clock in every process of the machine, so
/// the heartbeat's age can be read by another process; never stepped by NTP or the admin.
pub fn monotonic_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_nsec() as u64 / 1_000)
    })
}

/// A mapping of the shared stats page.
pub struct Stats {
    map: MmapRaw,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stats")
    }
}

impl Stats {
    pub fn len() -> u64 {
        std::mem::size_of::<Shared>() as u64
    }

    /// Creates the page (master).
    pub fn create() -> std::io::Result<(Stats, OwnedFd)> {
        let fd = crate::shm::create(c"imgserver-stats", Self::len())?;
        let s = Stats::map(&fd)?;
        s.get().magic.store(MAGIC, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        s.get().started_unix.store(now, Relaxed);
        Ok((s, fd))
    }

    /// Maps a page received from the master, or opened through /proc.
    pub fn map(fd: &OwnedFd) -> std::io::Result<Stats> {
        Ok(Stats {
            map: crate::shm::map(fd, Self::len())?,
        })
    }

    pub fn is_valid(&self) -> bool {
        self.get().magic.load(Relaxed) == MAGIC
    }

    pub fn get(&self) -> &Shared {
        // SAFETY: the mapping is at least size_of::<Shared>() bytes (checked in shm::map),
        // page-aligned (so aligned for Shared), lives as long as `self`, and Shared consists
        // only of atomics, for which any bit pattern — including concurrent writes from other
        // processes — is valid.
        unsafe { &*(self.map.as_ptr() as *const Shared) }
    }

    pub fn worker(&self, index: usize) -> Option<&Worker> {
        self.get().workers.get(index)
    }

    pub fn count_op(&self, name: &str) {
        if let Some(i) = OPS.iter().position(|o| *o == name) {
            self.get().ops[i].fetch_add(1, Relaxed);
        }
    }

    /// Records a finished job's latency per phase: its wait for a worker, the worker's
    /// decode, filter and encode times, and the total from submission to answer.
    pub fn record_job(
        &self,
        queue_us: u64,
        worker_us: [u32; 3],
        submitted: std::time::Instant,
        now: std::time::Instant,
    ) {
        let [d, f, e] = worker_us.map(u64::from);
        let total = now.saturating_duration_since(submitted).as_micros() as u64;
        self.record_phases([queue_us, d, f, e, total]);
    }

    /// Records the total latency of a job answered without a worker run of its own (a cache
    /// hit): the per-phase histograms are the workers' runs only.
    pub fn record_answer(&self, submitted: std::time::Instant, now: std::time::Instant) {
        let total = now.saturating_duration_since(submitted).as_micros() as u64;
        self.get().latency[PHASES.len() - 1].record(total);
    }

    /// Records one latency per phase, in microseconds, in the order of `PHASES`.
    pub fn record_phases(&self, us: [u64; PHASES.len()]) {
        for (h, v) in self.get().latency.iter().zip(us) {
            h.record(v);
        }
    }

    /// The latency histograms, in the order of `PHASES`.
    pub fn latency(&self) -> [HistogramSnapshot; PHASES.len()] {
        std::array::from_fn(|i| self.get().latency[i].snapshot())
    }

    /// The master's heartbeat: called from its event loop.
    pub fn beat(&self) {
        self.get().heartbeat_us.store(monotonic_us(), Relaxed);
    }

    /// How long ago the master's event loop last beat (`None` before its first beat).
    pub fn heartbeat_age(&self) -> Option<std::time::Duration> {
        let at = self.get().heartbeat_us.load(Relaxed);
        (at != 0).then(|| std::time::Duration::from_micros(monotonic_us().saturating_sub(at)))
    }

    /// All counters as name/value pairs (what STATS and `imgserver stats` report).
    pub fn snapshot(&self, workers: usize) -> Vec<(String, u64)> {
        let s = self.get();
        let mut out = Vec::with_capacity(128);
        out.push(("started_unix".into(), s.started_unix.load(Relaxed)));
        s.global.entries("", &mut out);
        for (i, name) in OPS.iter().enumerate() {
            out.push((format!("op_{name}"), s.ops[i].load(Relaxed)));
        }
        // Phase totals over all workers, then each worker's block.
        let mut sums = [0u64; 4];
        for w in s.workers.iter().take(workers.min(MAX_WORKERS)) {
            sums[0] += w.decode_us.load(Relaxed);
            sums[1] += w.filter_us.load(Relaxed);
            sums[2] += w.encode_us.load(Relaxed);
            sums[3] += w.jobs.load(Relaxed);
        }
        out.push(("decode_us_total".into(), sums[0]));
        out.push(("filter_us_total".into(), sums[1]));
        out.push(("encode_us_total".into(), sums[2]));
        out.push(("worker_jobs_total".into(), sums[3]));
        for (i, w) in s.workers.iter().take(workers.min(MAX_WORKERS)).enumerate() {
            w.entries(&format!("worker{i}_"), &mut out);
        }
        out
    }
}

/// Adds one to a counter (shorthand used throughout the master and workers).
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Relaxed);
}

pub fn dec(c: &AtomicU64) {
    // Saturating, so a bookkeeping slip cannot wrap a gauge to 2^64.
    let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_between_mappings_and_blocks_are_cache_lines() {
        assert_eq!(std::mem::align_of::<Worker>(), 64);
        assert_eq!(std::mem::size_of::<Worker>() % 64, 0);
        let (a, fd) = Stats::create().unwrap();
        let b = Stats::map(&fd).unwrap();
        assert!(b.is_valid());
        inc(&a.get().global.jobs_ok);
        add(&b.worker(3).unwrap().decode_us, 500);
        b.count_op("blur");
        let snap = a.snapshot(4);
        let get = |k: &str| snap.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("jobs_ok"), Some(1));
        assert_eq!(get("worker3_decode_us"), Some(500));
        assert_eq!(get("decode_us_total"), Some(500));
        assert_eq!(get("op_blur"), Some(1));
        dec(&a.get().global.queue_depth);
        assert_eq!(a.get().global.queue_depth.load(Relaxed), 0);
    }

    #[test]
    fn histograms_put_each_job_in_one_bucket_and_the_heartbeat_ages() {
        let (a, fd) = Stats::create().unwrap();
        let b = Stats::map(&fd).unwrap();
        assert_eq!(b.heartbeat_age(), None);
        // Bounds are inclusive (Prometheus `le`); beyond the last is the overflow bucket.
        a.record_phases([100, 101, 0, 10_000_000, 10_000_001]);
        let t = std::time::Instant::now();
        a.record_job(
            50,
            [50, 50, 50],
            t,
            t + std::time::Duration::from_micros(50),
        );
        let h = b.latency();
        assert_eq!(h[0].buckets[0], 2);
        assert_eq!(h[1].buckets[0], 1);
        assert_eq!(h[1].buckets[1], 1);
        assert_eq!(h[3].buckets[BUCKETS_US.len() - 1], 1);
        assert_eq!(h[4].buckets[BUCKETS_US.len()], 1);
        assert_eq!(h[4].count, 2);
        assert_eq!(h[4].sum_us, 10_000_051);
        for p in &h {
            assert_eq!(p.buckets.iter().sum::<u64>(), p.count);
        }
        a.beat();
        let age = b.heartbeat_age().unwrap();
        assert!(age < std::time::Duration::from_secs(3600));
    }
}
