//! Unit tests of the job life cycle: the jobs part driven through its public methods with a
//! fake worker pool and fake connections (the `Effects` it is handed) and a hand-moved clock;
//! no processes, no sockets (a real memfd ring).

use super::*;
use crate::ipc::msg::{Done, VariantDone};
use std::collections::HashSet;
use std::os::unix::fs::FileExt;

const SLOT: u64 = 4096;
const TIMEOUT: Duration = Duration::from_secs(30);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// What a connection was told, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Rejected(ErrorCode),
    Busy(u32),
    Failed(ErrorCode, String),
    Result(ResultMeta, Vec<u8>),
    Variant(u8, Vec<u8>),
    VariantFailed(u8, ErrorCode),
    Stats,
}

impl From<Reply<'_>> for Told {
    fn from(r: Reply<'_>) -> Told {
        match r {
            Reply::Rejected { code, .. } => Told::Rejected(code),
            Reply::Busy { retry_after_ms } => Told::Busy(retry_after_ms),
            Reply::Failed { code, text } => Told::Failed(code, text),
            Reply::Result { meta, output } => Told::Result(meta, output.to_vec()),
            Reply::Streamed { meta, file } => {
                let mut bytes = vec![0; meta.total_len as usize];
                file.0.read_exact_at(&mut bytes, 0).unwrap();
                Told::Result(meta, bytes)
            }
            Reply::Variant { index, meta, file } => {
                let mut bytes = vec![0; meta.total_len as usize];
                file.0.read_exact_at(&mut bytes, 0).unwrap();
                Told::Variant(index, bytes)
            }
            Reply::VariantFailed { index, code, .. } => Told::VariantFailed(index, code),
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
    variants: u8,
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
            variants: o.variants,
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
        user: 0,
        total,
        spec,
        multi: false,
        data,
        last: false,
    }
}

const C1: ConnRef = ConnRef { index: 0, gen: 1 };
const C2: ConnRef = ConnRef { index: 1, gen: 2 };

fn world(slots: u32, workers: usize, large_job_budget: u64) -> World {
    world_with(slots, workers, large_job_budget, 3)
}

fn world_with(slots: u32, workers: usize, large_job_budget: u64, max_in_flight: u32) -> World {
    let (ring, ring_fd) = Ring::create(slots, SLOT).unwrap();
    let (stats, stats_fd) = Stats::create().unwrap();
    let limits = JobLimits {
        max_in_flight,
        max_upload: 1 << 20,
        large_job_budget,
        job_timeout: TIMEOUT,
        upload_timeout: Some(UPLOAD_TIMEOUT),
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
        self.submit_as(ms, 0, conn, req, data)
    }
    fn submit_as(
        &mut self,
        ms: u64,
        user: u32,
        conn: ConnRef,
        req: u64,
        data: &[u8],
    ) -> Option<Told> {
        let now = self.at(ms);
        let s = Submission {
            req,
            user,
            total: data.len() as u64,
            spec: "grayscale",
            multi: false,
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
        self.lost_by(ms, w, Death::Crash);
    }
    fn lost_by(&mut self, ms: u64, w: WorkerId, death: Death) {
        let now = self.at(ms);
        self.jobs.worker_lost(now, w, death, &mut self.fx);
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
fn a_sandbox_violation_is_a_strike_like_a_crash_and_the_answer_names_the_calls() {
    let openat = Death::SandboxViolation {
        syscall: Some(libc::SYS_openat),
    };
    let socket = Death::SandboxViolation {
        syscall: Some(libc::SYS_socket),
    };
    // Two violations of the same call: retried once, then poison naming it once.
    let mut w = world(4, 2, 1 << 20);
    w.submit(0, C1, 1, b"opens files");
    w.dispatch(0);
    w.lost_by(1, w.last_sent().worker, openat);
    assert!(
        w.fx.take_told().is_empty(),
        "a first violation is not reported"
    );
    assert_eq!(w.gauge(|g| &g.jobs_retried), 1);
    w.dispatch(2);
    w.lost_by(3, w.last_sent().worker, openat);
    assert_eq!(
        w.fx.take_told(),
        vec![(
            C1,
            1,
            Told::Failed(
                ErrorCode::PoisonInput,
                "this input made two workers break their sandbox (system call openat refused); \
                 it will not be retried"
                    .into()
            )
        )]
    );
    assert_eq!(w.gauge(|g| &g.jobs_poison), 1);
    // Two different calls are both named; a crash and a violation make one strike each.
    for (first, second, text) in [
        (
            openat,
            socket,
            "this input made two workers break their sandbox (system call openat refused, \
             system call socket refused); it will not be retried",
        ),
        (
            Death::Crash,
            Death::SandboxViolation { syscall: None },
            "this input made one worker break its sandbox (a system call refused) and crashed \
             another; it will not be retried",
        ),
    ] {
        let mut w = world(4, 2, 1 << 20);
        w.submit(0, C1, 1, b"hostile");
        w.dispatch(0);
        w.lost_by(1, w.last_sent().worker, first);
        assert!(w.fx.take_told().is_empty());
        w.dispatch(2);
        w.lost_by(3, w.last_sent().worker, second);
        assert_eq!(
            w.fx.take_told(),
            vec![(C1, 1, Told::Failed(ErrorCode::PoisonInput, text.into()))]
        );
        assert_eq!(w.slots_in_use(), 0);
    }
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
fn a_first_overrun_is_retried_silently_and_a_second_is_poison_at_its_deadline() {
    let mut w = world(4, 2, 1 << 20);
    w.submit(0, C1, 5, b"hangs");
    // Another job waits behind it.
    w.submit(0, C2, 1, b"innocent");
    w.fx.ready.remove(&1);
    w.dispatch(0);
    let first = w.last_sent();
    assert_eq!(first.worker, 0);
    w.sweep(30_000, true);
    assert!(
        w.fx.take_told().is_empty() && w.fx.killed.is_empty(),
        "not yet"
    );
    // The deadline passes: the worker is killed, the client is told nothing.
    w.sweep(30_001, true);
    assert_eq!(w.fx.killed, vec![0]);
    assert!(
        w.fx.take_told().is_empty(),
        "a first overrun is not reported"
    );
    assert_eq!(w.gauge(|g| &g.jobs_timeout), 1);
    // The dying worker may still write into its slot: it stays taken until the reaping.
    assert_eq!(w.slots_in_use(), 2);
    w.sweep(30_100, true);
    assert_eq!(w.fx.killed, vec![0], "killed once");
    assert_eq!(w.gauge(|g| &g.jobs_timeout), 1);
    // Reaped: retried first in line (ahead of the innocent job), in the same storage.
    w.lost(30_150, 0);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.gauge(|g| &g.jobs_retried), 1);
    assert_eq!(w.jobs.queue_len(), 2);
    w.fx.ready.insert(1);
    w.dispatch(30_150);
    let retry = w.last_sent();
    assert_eq!(
        (retry.worker, retry.job, retry.slot, retry.generation),
        (1, first.job, first.slot, first.generation)
    );
    // Its deadline runs from the retry's start, not the first one's.
    w.sweep(60_150, true);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.fx.killed, vec![0]);
    // The second overrun is answered at that deadline, not at the reaping.
    w.sweep(60_151, true);
    assert_eq!(w.fx.killed, vec![0, 1]);
    assert_eq!(
        w.fx.take_told(),
        vec![(
            C1,
            5,
            Told::Failed(
                ErrorCode::PoisonInput,
                "this input overran the 30 s deadline on two workers; it will not be retried"
                    .into()
            )
        )]
    );
    // Answered at 60.151 s for a 30 s deadline: twice the deadline and one sweep late at most.
    assert!(w.at(60_151) - w.at(0) <= 2 * TIMEOUT + Duration::from_secs(1));
    assert_eq!(w.gauge(|g| &g.jobs_timeout), 2);
    assert_eq!(w.gauge(|g| &g.jobs_poison), 1);
    assert_eq!(w.gauge(|g| &g.jobs_failed), 1);
    assert!(!w.jobs.has_requests(C1));
    // Its slot stays taken until the second worker is reaped; then it is not retried again.
    assert_eq!(w.slots_in_use(), 2);
    w.lost(60_200, 1);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.gauge(|g| &g.jobs_retried), 1);
    assert_eq!(w.jobs.len(), 1, "only the innocent job is left");
    assert_eq!(w.jobs.queue_len(), 1);
    assert_eq!(w.slots_in_use(), 1);
}

#[test]
fn a_crash_then_an_overrun_is_poison() {
    let mut w = world(4, 2, 1 << 20);
    w.submit(0, C1, 1, b"crashes, then hangs");
    w.dispatch(0);
    w.lost(10, 0);
    assert!(w.fx.take_told().is_empty());
    w.fx.ready.remove(&0);
    w.dispatch(20);
    assert_eq!(w.last_sent().worker, 1);
    w.sweep(30_020, true);
    assert!(w.fx.take_told().is_empty());
    w.sweep(30_021, true);
    assert_eq!(w.fx.killed, vec![1]);
    assert_eq!(
        w.fx.take_told(),
        vec![(
            C1,
            1,
            Told::Failed(
                ErrorCode::PoisonInput,
                "this input crashed one worker and overran the 30 s deadline on another; \
                 it will not be retried"
                    .into()
            )
        )]
    );
    assert_eq!(w.gauge(|g| &g.jobs_poison), 1);
    assert_eq!(w.gauge(|g| &g.jobs_timeout), 1);
    w.lost(30_100, 1);
    assert!(w.fx.take_told().is_empty());
    assert!(w.jobs.is_empty());
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn an_overrun_then_a_crash_is_poison() {
    let mut w = world(4, 1, 1 << 20);
    w.submit(0, C1, 1, b"hangs, then crashes");
    w.dispatch(0);
    w.sweep(30_001, true);
    assert_eq!(w.fx.killed, vec![0]);
    // The replacement of the same worker slot takes the retry.
    w.lost(30_050, 0);
    assert!(w.fx.take_told().is_empty());
    w.fx.ready.insert(0);
    w.dispatch(30_300);
    assert_eq!(w.fx.sent.len(), 2);
    w.lost(31_000, 0);
    assert_eq!(
        w.fx.take_told(),
        vec![(
            C1,
            1,
            Told::Failed(
                ErrorCode::PoisonInput,
                "this input crashed one worker and overran the 30 s deadline on another; \
                 it will not be retried"
                    .into()
            )
        )]
    );
    assert_eq!(w.fx.killed, vec![0], "the crash was not the master's doing");
    assert_eq!(w.gauge(|g| &g.jobs_poison), 1);
    assert_eq!(w.gauge(|g| &g.jobs_retried), 1);
    assert!(w.jobs.is_empty());
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn a_job_answered_while_running_is_not_retried_after_an_overrun() {
    // The client left while its job hung: the overrun kills the worker, the reaping frees
    // the slot, and nothing is retried for nobody.
    let mut w = world(4, 1, 1 << 20);
    w.submit(0, C1, 1, b"hangs");
    w.dispatch(0);
    w.jobs.conn_gone(C1);
    w.sweep(30_001, true);
    assert_eq!(w.fx.killed, vec![0]);
    w.lost(30_050, 0);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.jobs.queue_len(), 0);
    assert!(w.jobs.is_empty());
    assert_eq!(w.slots_in_use(), 0);
    assert_eq!(w.gauge(|g| &g.jobs_retried), 0);
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
            user: 0,
            total: 1,
            spec: "no-such-op",
            multi: false,
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

#[test]
fn the_queue_serves_users_in_turn_so_a_heavy_one_cannot_starve_a_light_one() {
    const C3: ConnRef = ConnRef { index: 2, gen: 3 };
    let mut w = world(16, 1, 1 << 20);
    // User 1 queues three jobs (its in-flight maximum) on one connection and two on
    // another, then user 2 one job.
    for req in 1..=3 {
        assert_eq!(w.submit_as(0, 1, C1, req, b"heavy"), None);
    }
    for req in 1..=2 {
        assert_eq!(w.submit_as(0, 1, C2, req, b"heavy too"), None);
    }
    assert_eq!(w.submit_as(1, 2, C3, 1, b"light"), None);
    assert_eq!(w.jobs.queue_len(), 6);
    // One worker: each finished job lets the next one in.
    let mut order = Vec::new();
    for ms in 2..8 {
        w.dispatch(ms);
        let s = w.last_sent();
        order.push(s.job);
        w.finish(ms, &s, b"out");
    }
    // Jobs are numbered in submission order: 1-3 user 1 on C1, 4-5 user 1 on C2, 6 user 2.
    // User 2's one job goes second, not sixth; user 1's connections alternate.
    assert_eq!(order, [1, 6, 4, 2, 5, 3]);
    assert_eq!(w.jobs.queue_len(), 0);
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn an_upload_that_stops_moving_is_dropped_and_its_slot_freed() {
    let mut w = world(4, 1, 1 << 20);
    assert_eq!(
        w.jobs.submit(w.at(0), C1, upload(1, 10, "noop", b"abc")),
        None
    );
    assert_eq!(w.slots_in_use(), 1);
    // Progress at 10 s moves the deadline to 25 s.
    let now = w.at(10_000);
    w.jobs.add_data(
        now,
        C1,
        Chunk {
            req: 1,
            data: b"def",
            last: false,
        },
    );
    w.jobs.sweep_uploads(w.at(24_999), &mut w.fx);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.slots_in_use(), 1);
    w.jobs.sweep_uploads(w.at(25_000), &mut w.fx);
    assert_eq!(
        w.fx.take_told(),
        vec![(C1, 1, Told::Rejected(ErrorCode::SlowClient))]
    );
    assert_eq!(w.slots_in_use(), 0);
    assert_eq!(w.gauge(|g| &g.uploads_stalled), 1);
    assert!(!w.jobs.has_requests(C1));
    // The rest of that upload, should it come, goes nowhere; the request id is free again.
    let now = w.at(26_000);
    w.jobs.add_data(
        now,
        C1,
        Chunk {
            req: 1,
            data: b"ghij",
            last: true,
        },
    );
    assert_eq!(w.jobs.queue_len(), 0);
    assert_eq!(w.submit(26_000, C1, 1, b"again"), None);
    // A queued job is not an upload: it never stalls.
    w.jobs.sweep_uploads(w.at(100_000), &mut w.fx);
    assert!(w.fx.take_told().is_empty());
    assert_eq!(w.jobs.queue_len(), 1);
}

#[test]
fn when_slots_run_short_a_connection_over_its_share_gets_busy_and_the_others_do_not() {
    let mut w = world_with(8, 1, 1 << 20, 8);
    // Plenty free: C1 may take seven of eight, C2 the last.
    for req in 1..=7 {
        assert_eq!(w.submit(0, C1, req, b"hoard"), None, "req {req}");
    }
    assert_eq!(w.submit(0, C2, 1, b"mine"), None);
    assert_eq!(w.slots_in_use(), 8);
    // One of C1's jobs finishes: one slot free, which is scarce (under a quarter).
    w.dispatch(1);
    let s = w.last_sent();
    w.finish(2, &s, b"out");
    w.fx.take_told();
    assert_eq!(w.slots_in_use(), 7);
    // C1 holds six, over its share of four (eight slots, two connections): BUSY.
    assert!(matches!(w.submit(3, C1, 8, b"more"), Some(Told::Busy(_))));
    assert_eq!(w.gauge(|g| &g.jobs_busy_share), 1);
    // C2 holds one: it gets the slot.
    assert_eq!(w.submit(3, C2, 2, b"fair"), None);
    assert_eq!(w.slots_in_use(), 8);
}

// ---- the result cache and collapsed requests (cached.rs, collapse.rs) ----

const C3: ConnRef = ConnRef { index: 2, gen: 3 };

fn cached_world(slots: u32, workers: usize) -> World {
    let mut w = world(slots, workers, 1 << 20);
    let jobs = std::mem::replace(
        &mut w.jobs,
        Jobs::new(
            JobLimits {
                max_in_flight: 3,
                max_upload: 1 << 20,
                large_job_budget: 1 << 20,
                job_timeout: TIMEOUT,
                upload_timeout: Some(UPLOAD_TIMEOUT),
            },
            Ring::create(1, SLOT).unwrap().0,
            Stats::create().unwrap().0,
            1,
        ),
    );
    let cache = crate::cache::ResultCache::new(crate::cache::Arena::heap(1 << 20), "t".into());
    w.jobs = jobs.with_cache(Some(cache));
    w
}

fn results(told: &[(ConnRef, u64, Told)]) -> Vec<(ConnRef, u64, Vec<u8>)> {
    told.iter()
        .map(|(c, r, t)| match t {
            Told::Result(_, out) => (*c, *r, out.clone()),
            other => panic!("expected a result, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_repeated_request_is_a_hit_answered_without_a_worker_and_its_slot_freed_at_once() {
    let mut w = cached_world(4, 1);
    w.submit(0, C1, 1, b"same input");
    w.dispatch(1);
    let s = w.last_sent();
    w.finish(5, &s, b"RESULT");
    assert_eq!(
        results(&w.fx.take_told()),
        vec![(C1, 1, b"RESULT".to_vec())]
    );
    assert_eq!(w.gauge(|g| &g.cache_inserts), 1);
    assert_eq!(w.gauge(|g| &g.cache_entries), 1);
    // The same bytes and spec again, from another connection: no dispatch.
    w.submit(10, C2, 9, b"same input");
    w.dispatch(11);
    assert_eq!(w.fx.sent.len(), 1, "no second worker run");
    let told = w.fx.take_told();
    let (_, _, Told::Result(meta, out)) = &told[0] else {
        panic!("{told:?}")
    };
    assert_eq!(
        (told[0].0, told[0].1, out.as_slice()),
        (C2, 9, &b"RESULT"[..])
    );
    assert_eq!((meta.width, meta.height, meta.format), (3, 2, 1));
    assert_eq!(
        (
            meta.queue_us,
            meta.decode_us,
            meta.filter_us,
            meta.encode_us
        ),
        (0, 0, 0, 0),
        "a hit's phase times are zero"
    );
    assert_eq!(w.slots_in_use(), 0);
    assert!(w.jobs.is_empty());
    assert!(!w.jobs.has_requests(C2));
    assert_eq!(
        (w.gauge(|g| &g.cache_hits), w.gauge(|g| &g.cache_misses)),
        (1, 1)
    );
    assert_eq!(w.gauge(|g| &g.jobs_ok), 2);
    // Different input: a miss.
    w.submit(20, C2, 10, b"other input");
    w.dispatch(21);
    assert_eq!(w.fx.sent.len(), 2);
}

#[test]
fn n_duplicates_in_flight_take_one_worker_and_each_gets_its_own_answer() {
    let mut w = cached_world(8, 2);
    w.submit(0, C1, 1, b"popular");
    w.submit(0, C2, 2, b"popular");
    w.submit(0, C3, 3, b"popular");
    w.submit(0, C3, 4, b"popular");
    w.dispatch(1);
    assert_eq!(w.fx.sent.len(), 1, "one dispatch for four requests");
    assert_eq!(
        w.slots_in_use(),
        1,
        "the waiters' storage is released at once"
    );
    assert_eq!(w.gauge(|g| &g.cache_collapsed), 3);
    assert!(w.jobs.has_requests(C3), "waiters are still in flight");
    let s = w.last_sent();
    w.finish(50, &s, b"OUT");
    let mut got = results(&w.fx.take_told());
    got.sort_by_key(|(_, r, _)| *r);
    assert_eq!(
        got,
        vec![
            (C1, 1, b"OUT".to_vec()),
            (C2, 2, b"OUT".to_vec()),
            (C3, 3, b"OUT".to_vec()),
            (C3, 4, b"OUT".to_vec())
        ]
    );
    for c in [C1, C2, C3] {
        assert!(!w.jobs.has_requests(c));
    }
    assert_eq!(w.gauge(|g| &g.jobs_ok), 4);
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn a_leader_lost_with_its_worker_is_retried_and_its_waiters_answered() {
    let mut w = cached_world(8, 2);
    w.submit(0, C1, 1, b"crashy once");
    w.submit(0, C2, 2, b"crashy once");
    w.dispatch(1);
    w.lost(2, w.last_sent().worker);
    assert!(w.fx.take_told().is_empty(), "waiters keep waiting");
    w.dispatch(3);
    assert_eq!(w.fx.sent.len(), 2);
    let s = w.last_sent();
    w.finish(9, &s, b"FINE");
    assert_eq!(results(&w.fx.take_told()).len(), 2);
}

#[test]
fn a_poison_leader_fails_its_waiters_alike_and_the_input_is_refused_after() {
    let mut w = cached_world(8, 2);
    w.submit(0, C1, 1, b"poison");
    w.submit(0, C2, 2, b"poison");
    w.dispatch(1);
    w.lost(2, w.last_sent().worker);
    w.dispatch(3);
    w.lost(4, w.last_sent().worker);
    let told = w.fx.take_told();
    assert_eq!(told.len(), 2, "{told:?}");
    for (_, _, t) in &told {
        assert!(
            matches!(t, Told::Failed(ErrorCode::PoisonInput, _)),
            "{t:?}"
        );
    }
    assert!(!w.jobs.has_requests(C2));
    // Known now: refused without a worker, whatever the connection.
    w.submit(10, C3, 5, b"poison");
    w.dispatch(11);
    assert_eq!(w.fx.sent.len(), 2);
    let told = w.fx.take_told();
    assert_eq!(
        told,
        vec![(
            C3,
            5,
            Told::Failed(ErrorCode::PoisonInput, cached::KNOWN_POISON.into())
        )]
    );
    assert_eq!(w.gauge(|g| &g.cache_poison_refused), 1);
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn a_leader_whose_client_left_runs_on_for_its_waiters_and_a_waiter_that_left_is_dropped() {
    let mut w = cached_world(8, 2);
    w.submit(0, C1, 1, b"shared");
    w.submit(0, C2, 2, b"shared");
    w.submit(0, C3, 3, b"shared");
    w.dispatch(1);
    w.jobs.conn_gone(C1);
    w.jobs.conn_gone(C3);
    let s = w.last_sent();
    w.finish(5, &s, b"R");
    assert_eq!(results(&w.fx.take_told()), vec![(C2, 2, b"R".to_vec())]);
    assert!(!w.jobs.has_requests(C2));
    assert!(w.jobs.is_empty());
    assert_eq!(w.slots_in_use(), 0);
}

#[test]
fn with_the_cache_off_nothing_collapses() {
    let mut w = world(8, 2, 1 << 20);
    w.submit(0, C1, 1, b"same");
    w.submit(0, C2, 2, b"same");
    w.dispatch(1);
    assert_eq!(w.fx.sent.len(), 2);
    assert_eq!(w.gauge(|g| &g.cache_collapsed), 0);
}

/// A worker's variant message with `out` in a sealed memfd (or the error `status`).
fn variant_msg(s: &Sent, index: u8, out: &[u8], status: u16) -> (VariantDone, Vec<OwnedFd>) {
    let mut fds = Vec::new();
    if status == 0 {
        let fd = crate::shm::create(c"test-variant", out.len().max(1) as u64).unwrap();
        let file = File::from(fd);
        file.write_all_at(out, 0).unwrap();
        fds.push(OwnedFd::from(file));
    }
    let v = VariantDone {
        index,
        done: Done {
            job: s.job,
            slot: s.slot,
            generation: s.generation,
            status,
            in_memfd: status == 0,
            output_len: out.len() as u64,
            ..Default::default()
        },
    };
    (v, fds)
}

#[test]
fn a_multi_output_job_answers_each_variant_once_and_a_retry_runs_only_the_rest() {
    let mut w = world(4, 1, 1 << 20);
    let multi = Submission {
        req: 7,
        user: 0,
        total: 3,
        spec: "noop;grayscale;invert",
        multi: true,
        data: b"abc",
        last: true,
    };
    assert_eq!(w.jobs.submit(w.at(0), C1, multi), None);
    w.jobs.dispatch(w.at(0), &mut w.fx);
    let first = w.fx.sent[0].clone();
    assert_eq!(first.variants, 0b111);
    let (v, fds) = variant_msg(&first, 1, b"one", 0);
    w.jobs.variant(0, v, fds, &mut w.fx);
    assert_eq!(w.fx.told, [(C1, 7, Told::Variant(1, b"one".to_vec()))]);
    // A second answer for variant 1, an index out of range, another worker's claim: dropped.
    let (v, fds) = variant_msg(&first, 1, b"again", 0);
    w.jobs.variant(0, v, fds, &mut w.fx);
    let (v, fds) = variant_msg(&first, 5, b"five", 0);
    w.jobs.variant(0, v, fds, &mut w.fx);
    let (v, fds) = variant_msg(&first, 0, b"zero", 0);
    w.jobs.variant(1, v, fds, &mut w.fx);
    assert_eq!(w.fx.told.len(), 1);
    // The worker is lost: the retry runs variants 0 and 2 only, on the same slot.
    w.lost(5, 0);
    w.jobs.dispatch(w.at(5), &mut w.fx);
    let retry = w.fx.sent[1].clone();
    assert_eq!((retry.variants, retry.slot), (0b101, first.slot));
    let (v, fds) = variant_msg(&retry, 2, b"", ErrorCode::EncodeFailed as u16);
    w.jobs.variant(0, v, fds, &mut w.fx);
    let (v, fds) = variant_msg(&retry, 0, b"zero", 0);
    w.jobs.variant(0, v, fds, &mut w.fx);
    assert!(w.jobs.has_requests(C1));
    let done = Done {
        job: retry.job,
        slot: retry.slot,
        generation: retry.generation,
        ..Default::default()
    };
    w.done(10, 0, done);
    assert_eq!(
        &w.fx.told[1..],
        [
            (C1, 7, Told::VariantFailed(2, ErrorCode::EncodeFailed)),
            (C1, 7, Told::Variant(0, b"zero".to_vec())),
        ]
    );
    assert!(!w.jobs.has_requests(C1));
    assert!(w.jobs.is_empty());
    let g = &w.stats.get().global;
    assert_eq!(g.variant_jobs.load(Relaxed), 1);
    assert_eq!(g.variant_outputs.load(Relaxed), 2);
    assert_eq!(g.jobs_retried.load(Relaxed), 1);
}

#[test]
fn a_multi_output_job_ends_at_the_inputs_failure_or_a_loss_after_every_variant() {
    let mut w = world(4, 1, 1 << 20);
    let sub = |req, spec| Submission {
        req,
        user: 0,
        total: 1,
        spec,
        multi: true,
        data: b"x",
        last: true,
    };
    // A bad list is refused before any storage is taken, naming the variant.
    let Some(Reply::Rejected { code, text }) = w.jobs.submit(w.at(0), C1, sub(1, "noop;nope"))
    else {
        panic!("a bad variant list is refused");
    };
    assert_eq!(code, ErrorCode::BadSpec);
    assert!(text.starts_with("variant 2: "), "{text}");
    // The input fails: the request ends with that error, answered variants stand.
    assert_eq!(w.jobs.submit(w.at(0), C1, sub(2, "noop;grayscale")), None);
    w.jobs.dispatch(w.at(0), &mut w.fx);
    let s = w.fx.sent[0].clone();
    let (v, fds) = variant_msg(&s, 0, b"zero", 0);
    w.jobs.variant(0, v, fds, &mut w.fx);
    let done = Done {
        job: s.job,
        slot: s.slot,
        generation: s.generation,
        status: ErrorCode::DecodeFailed as u16,
        message: "broken".into(),
        ..Default::default()
    };
    w.done(1, 0, done);
    assert_eq!(
        &w.fx.told[..],
        [
            (C1, 2, Told::Variant(0, b"zero".to_vec())),
            (
                C1,
                2,
                Told::Failed(ErrorCode::DecodeFailed, "broken".into())
            ),
        ]
    );
    // Lost after answering every variant, before its Done: complete, not retried.
    assert_eq!(w.jobs.submit(w.at(2), C1, sub(3, "noop;grayscale")), None);
    w.jobs.dispatch(w.at(2), &mut w.fx);
    let s = w.fx.sent[1].clone();
    for i in 0..2 {
        let (v, fds) = variant_msg(&s, i, b"v", 0);
        w.jobs.variant(0, v, fds, &mut w.fx);
    }
    w.lost(3, 0);
    w.jobs.dispatch(w.at(3), &mut w.fx);
    assert_eq!(w.fx.sent.len(), 2, "no retry");
    assert!(!w.jobs.has_requests(C1));
    assert!(w.jobs.is_empty());
}
