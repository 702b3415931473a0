//! Server counters in shared memory: one page the master and every worker map, atomics only,
//! one cache line per worker so workers never contend on a line.
//!
//! Trust boundary: workers write their own block; the master writes the global block; any
//! process (including `imgserver stats`, through /proc/PID/fd) may read. All-zero bytes are a
//! valid initial state, so a fresh memfd needs no initialisation.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use memmap2::MmapRaw;

/// Most workers with their own stats block.
pub const MAX_WORKERS: usize = 64;
const MAGIC: u64 = 0x5354_4154_534d_4932; // "IMSTATS2"

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
    error_bad_spec,
    error_too_large,
    error_too_many_pixels,
    error_unsupported_format,
    error_decode,
    error_geometry,
    error_encode,
    error_protocol,
    error_other,
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

#[repr(C)]
pub struct Shared {
    magic: AtomicU64,
    pub started_unix: AtomicU64,
    pub global: Global,
    pub ops: [AtomicU64; 16],
    pub workers: [Worker; MAX_WORKERS],
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
}
