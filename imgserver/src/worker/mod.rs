//! A filter worker process: receives job descriptors (multi-output jobs in `variants.rs`), decodes from and encodes into the job's
//! slot of the shared ring in place, and reports back. Started only by the master (fork+exec, `worker` mode).
//!
//! Trust boundary: this is where hostile image bytes are parsed. The process holds no client
//! socket and no key, inherits no fd and no environment, runs under an address-space limit
//! and the confinement of `sandbox/` (no new privileges, tight open-files and file-size
//! limits, no core, undumpable, a Landlock domain and a seccomp allow-list), and dies with the
//! master; if a decoder crashes, hangs or is taken over, only this process and its one job
//! are lost. It ignores the stop signals sent to its process group (`signals::WORKER_IGNORES`):
//! it stops when the master closes its channel, between jobs, or is killed.

mod variants;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use imgfilters::{FilterError, Finished, Limits, Pipeline, Sink};
use log::{debug, warn};
use netproto_sys::ErrorCode;

use crate::ipc::channel::{ChannelError, WorkerChannel};
use crate::ipc::msg::{Done, Init, Job, Ready, ToMaster, ToWorker, NO_SLOT};
use crate::ring::Ring;
use crate::stats::{self, Stats};

#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub index: usize,
    pub mem_limit_mb: u64,
    pub max_pixels: u64,
    /// Run the test failpoints (only a `failpoints` build has them).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub fault_injection: bool,
    /// The uid and gid to switch to after the set-up (from a master running as root).
    pub run_as: Option<(u32, u32)>,
    /// The kernel-enforced layers to apply before the first job.
    pub sandbox: crate::sandbox::Layers,
}

/// The protocol error code for a filter failure.
pub fn error_code(e: &FilterError) -> ErrorCode {
    match e {
        FilterError::BadSpec { .. } => ErrorCode::BadSpec,
        FilterError::InputTooLarge { .. } => ErrorCode::InputTooLarge,
        FilterError::UnsupportedFormat(_) => ErrorCode::UnsupportedFormat,
        FilterError::TooManyPixels { .. } | FilterError::LimitExceeded(_) => {
            ErrorCode::TooManyPixels
        }
        FilterError::Decode(_) => ErrorCode::DecodeFailed,
        FilterError::BadGeometry { .. } => ErrorCode::BadGeometry,
        FilterError::Encode(_) => ErrorCode::EncodeFailed,
    }
}

/// Caps the address space at what is mapped now (binary, ring, stats) plus `mb`, so the cap
/// bounds what decoders and filters may allocate whatever the ring's size.
fn set_memory_limit(mb: u64) {
    if mb == 0 {
        return;
    }
    let mapped = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmSize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let bytes = mapped.saturating_add(mb.saturating_mul(1 << 20));
    if let Err(e) =
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes)
    {
        warn!("cannot set RLIMIT_AS to {mb} MiB: {e}");
    }
}

pub fn run(args: WorkerArgs) -> anyhow_free::Result {
    crate::signals::ignore_group_signals()?;
    #[cfg(feature = "failpoints")]
    if args.fault_injection
        && std::env::var("IMGSERVER_FAULT_WORKER_START").is_ok_and(|v| v == "crash")
    {
        // Failpoint: a worker that dies before it is ready, for the crash-loop tests.
        std::process::exit(3);
    }
    // Our parent, read while the death signal set before exec still guards it.
    let master = nix::unistd::getppid();
    let sock = WorkerChannel::new(crate::spawn::take_worker_fd()?);
    let (msg, fds) = sock.recv()?;
    let ToWorker::Init(Init {
        index,
        slots,
        slot_size,
        ..
    }) = msg
    else {
        return Err("first message was not Init".into());
    };
    if index as usize != args.index {
        return Err(format!(
            "master sent Init for worker {index}, this is worker {}",
            args.index
        )
        .into());
    }
    let [ring_fd, stats_fd]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|_| "Init must carry the ring and stats fds")?;
    let mut ring = Ring::map(&ring_fd, slots, slot_size)?;
    // Mapped for the life of the process: the SIGSYS handler writes into it.
    let stats: &'static Stats = Box::leak(Box::new(Stats::map(&stats_fd)?));
    let me = stats
        .worker(index as usize)
        .ok_or("worker index out of range")?;
    // The limit comes after mapping the ring: the cap is for what decoders allocate.
    set_memory_limit(args.mem_limit_mb);
    // Set-up done: from here on the worker only uses what it holds, so take the rest away
    // before the first image arrives.
    let report = crate::sandbox::confine(crate::sandbox::Confinement {
        mem_limit_mb: args.mem_limit_mb,
        run_as: args.run_as,
        master,
        layers: args.sandbox,
        violation: &me.violation_syscall,
    })?;
    me.pid.store(
        std::process::id() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    sock.send(
        &ToMaster::Ready(Ready {
            pid: std::process::id(),
            sandbox: report.to_bits(),
        }),
        &[],
    )?;
    debug!("worker {index} ready: ring {slots} x {slot_size} bytes");

    let limits = Limits {
        max_pixels: args.max_pixels,
        ..Limits::default()
    };
    let mut out = Vec::new();
    loop {
        let (msg, fds) = match sock.recv() {
            Ok(m) => m,
            // The master closed our channel: it is stopping or replacing us.
            Err(ChannelError::Closed) => {
                debug!("the master closed the channel; exiting");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let ToWorker::Job(order) = msg else {
            return Err("unexpected message from master".into());
        };
        if order.variants != 0 {
            let cx = variants::Ctx {
                sock: &sock,
                ring: &mut ring,
                limits: &limits,
                stats,
                me,
                fault_injection: args.fault_injection,
            };
            match variants::run(cx, order, fds)? {
                variants::Next::Continue => continue,
                variants::Next::Stop => {
                    debug!("the master closed the channel during a multi-output job; stopping");
                    return Ok(());
                }
            }
        }
        let Job {
            job,
            slot,
            generation,
            input_len,
            spec,
            ..
        } = order;
        let started = Instant::now();
        let mut done = Done {
            job,
            slot,
            generation,
            ..Default::default()
        };
        // First half: decode and filter. `Prepared` owns its pixels and borrows nothing, so
        // when this block ends nothing reads the slot (or the job memfd) any more.
        #[cfg(feature = "failpoints")]
        let crash_after_output: bool;
        let prepared = {
            let input: &[u8];
            let job_map;
            if slot == NO_SLOT {
                let fd = fds.into_iter().next().ok_or("job without slot or memfd")?;
                crate::shm::check_sealed(&fd)?;
                job_map = crate::shm::map(&fd, input_len.max(1))?;
                // The master filled this memfd before sending the job and leaves it alone
                // until our Done.
                input = mmap_bytes(&job_map, input_len);
            } else {
                input = ring
                    .read(slot, 0, input_len)
                    .ok_or("input does not fit its slot")?;
            }
            #[cfg(feature = "failpoints")]
            {
                crash_after_output =
                    args.fault_injection && crate::failpoints::crashes_after_output(input);
            }
            let input = with_failpoints(args.fault_injection, input);
            match (input, spec.parse::<Pipeline>()) {
                (Ok(input), Ok(p)) => {
                    for op in &p.ops {
                        stats.count_op(op.name());
                    }
                    imgfilters::prepare(input, &p, &limits)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        };
        // Second half: encode. A job from the ring is encoded straight into its slot, behind
        // the input (the borrow of `ring` by `slot_mut` could not coexist with a live input
        // slice): the input stays intact, so the master's retry of a job whose worker is lost
        // here still has it. Only an output larger than the room behind the input spills into
        // a Vec, which then goes back in a memfd. A job from a memfd is encoded into `out`,
        // copied into a new memfd.
        let mut in_slot = false;
        let mut spilled = None;
        let output_offset = output_offset(input_len, ring.slot_size());
        let result = match prepared {
            Err(e) => Err(e),
            Ok(p) if slot == NO_SLOT => {
                let mut sink = Sink::with_spill(&mut [], std::mem::take(&mut out));
                let result = p.encode(&mut sink);
                out = sink.into_vec();
                result.map(|info| (info, out.len()))
            }
            Ok(p) => {
                let whole = ring.slot_mut(slot).ok_or("job slot out of range")?;
                let mut sink = Sink::new(&mut whole[output_offset as usize..]);
                let result = p.encode(&mut sink);
                let len = sink.len();
                match sink.finish() {
                    Finished::InRegion(_) => in_slot = true,
                    Finished::Spilled(bytes) => spilled = Some(bytes),
                }
                result.map(|info| (info, len))
            }
        };
        #[cfg(feature = "failpoints")]
        if crash_after_output && slot != NO_SLOT && !ring.is_marked(slot, job, generation) {
            // Failpoint: lost with the output written and no Done sent, once per attempt of
            // this job (the mark in the slot header tells the retry not to crash again).
            ring.mark(slot, job, generation);
            std::process::abort();
        }
        match result {
            Ok((info, output_len)) => {
                done.width = info.width;
                done.height = info.height;
                done.format = imgfilters::wire_code(info.format);
                done.decode_us = info.timings.decode.as_micros() as u32;
                done.filter_us = info.timings.filter.as_micros() as u32;
                done.encode_us = info.timings.encode.as_micros() as u32;
                done.output_len = output_len as u64;
                // On success the message is the decoder's warning, if it recovered from
                // damaged input: the master's job line names it (the client gets the image).
                done.message = info.decode_warning.unwrap_or_default().to_owned();
                if in_slot {
                    done.output_offset = output_offset;
                }
                stats::add(&me.decode_us, done.decode_us as u64);
                stats::add(&me.filter_us, done.filter_us as u64);
                stats::add(&me.encode_us, done.encode_us as u64);
                stats::add(&me.bytes_in, input_len);
                stats::add(&me.bytes_out, output_len as u64);
                stats::inc(&me.jobs_ok);
            }
            Err(e) => {
                done.status = error_code(&e) as u16;
                done.message = e.to_string();
                stats::inc(&me.jobs_failed);
            }
        }
        stats::inc(&me.jobs);
        stats::add(&me.busy_us, started.elapsed().as_micros() as u64);
        let mut attach: Option<OwnedFd> = None;
        if done.status == 0 && !in_slot {
            // The output is behind the input in the slot unless it is here.
            let bytes = spilled.as_deref().unwrap_or(&out);
            let fd = crate::shm::create(c"imgserver-output", bytes.len().max(1) as u64)?;
            // write(2) may write less than asked (a signal, a large output): write_all loops.
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            done.in_memfd = true;
            attach = Some(file.into());
        }
        let fds: Vec<_> = attach.iter().map(|f| f.as_fd()).collect();
        let (status, output_len) = (done.status, done.output_len);
        let (decode_us, filter_us, encode_us) = (done.decode_us, done.filter_us, done.encode_us);
        match sock.send(&ToMaster::Done(done), &fds) {
            Ok(()) => {}
            // The master closed our channel while this job ran (its grace period ran out):
            // nobody wants the answer; stop as on EOF.
            Err(ChannelError::Closed) => {
                debug!("job {job}: the master closed the channel before the answer; stopping");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        // Logged after the answer is on its way, not in front of it; at debug: the master
        // logs each job's one line at info.
        debug!(
            "job {job}: {spec} {input_len} -> {} bytes, status {}, decode {} us, filter {} us, encode {} us",
            output_len, status, decode_us, filter_us, encode_us
        );
        // Do not keep a huge output buffer around between jobs.
        if out.capacity() > 64 << 20 {
            out = Vec::new();
        }
    }
}

/// Where a slot job's output starts: behind its `input_len` bytes of input, on the next
/// 64-byte boundary (as the payload itself starts 64 bytes into a page), or at the slot's end
/// (no room: the output spills) when the input leaves less.
fn output_offset(input_len: u64, slot_size: u64) -> u64 {
    input_len.div_ceil(64).saturating_mul(64).min(slot_size)
}

/// The input as the decoder sees it: in a `failpoints` build with fault injection on, a
/// failpoint marker may act (crash, hang, fail) or be stripped; otherwise the input itself.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn with_failpoints(fault_injection: bool, input: &[u8]) -> Result<&[u8], FilterError> {
    #[cfg(feature = "failpoints")]
    if fault_injection {
        return crate::failpoints::apply(input).map_err(FilterError::Decode);
    }
    Ok(input)
}

fn mmap_bytes(map: &memmap2::MmapRaw, len: u64) -> &[u8] {
    crate::ring::raw_slice(map, len)
}

/// A tiny boxed-error result, so the worker can use `?` on every error type it meets.
pub mod anyhow_free {
    pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
