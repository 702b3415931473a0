//! A multi-output job in the worker: one input, the variants the master asks for (all of them,
//! or the rest after a worker was lost mid-job), each encoded into its own memfd and sent as
//! soon as it is ready (`ToMaster::Variant`), then the job's `Done`.
//!
//! Trust boundary: the same as the rest of the worker (hostile image bytes, a confined
//! process). Outputs always go into memfds, never into the job's slot: the slot keeps the
//! input intact for the master's retry of the variants not yet answered.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use imgfilters::{FilterError, Limits, Pipeline, RunOptions, Sink};

use super::{error_code, mmap_bytes};
use crate::ipc::channel::{ChannelError, WorkerChannel};
use crate::ipc::msg::{Done, Job, ToMaster, VariantDone, NO_SLOT};
use crate::ring::Ring;
use crate::stats::{self, Stats, Worker};

/// Why a multi-output job stopped early: the input's own failure (answered in the Done), or
/// the worker's (its channel or memory).
enum Stop {
    Input(FilterError),
    List(String),
    Channel(ChannelError),
    Io(std::io::Error),
}

impl From<FilterError> for Stop {
    fn from(e: FilterError) -> Stop {
        Stop::Input(e)
    }
}

/// What the worker's loop does next.
pub enum Next {
    Continue,
    /// The master closed the channel while the job ran: nobody wants the rest.
    Stop,
}

/// The worker's per-job context for a multi-output job.
pub struct Ctx<'a> {
    pub sock: &'a WorkerChannel,
    pub ring: &'a mut Ring,
    pub limits: &'a Limits,
    pub stats: &'a Stats,
    pub me: &'a Worker,
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub fault_injection: bool,
}

/// Runs `job` (its `variants` mask non-zero) and sends its variants and Done.
pub fn run(cx: Ctx<'_>, job: Job, fds: Vec<OwnedFd>) -> super::anyhow_free::Result<Next> {
    let started = Instant::now();
    let Job {
        job: id,
        slot,
        generation,
        input_len,
        variants: mask,
        spec,
    } = job;
    let head = Done {
        job: id,
        slot,
        generation,
        ..Default::default()
    };
    let from_memfd = slot == NO_SLOT;
    let job_map = if from_memfd {
        let fd = fds.into_iter().next().ok_or("job without slot or memfd")?;
        crate::shm::check_sealed(&fd)?;
        Some(crate::shm::map(&fd, input_len.max(1))?)
    } else {
        None
    };
    // Failpoint: the first attempt of a marked input dies after its first variant is sent
    // (the slot's mark, set before the input is borrowed, tells the retry not to).
    #[cfg(feature = "failpoints")]
    let crash_mid = {
        let input = match &job_map {
            Some(m) => mmap_bytes(m, input_len),
            None => cx.ring.read(slot, 0, input_len).unwrap_or_default(),
        };
        let crash = cx.fault_injection
            && !from_memfd
            && crate::failpoints::crashes_after_output(input)
            && !cx.ring.is_marked(slot, id, generation);
        if crash {
            cx.ring.mark(slot, id, generation);
        }
        crash
    };
    let input = match &job_map {
        Some(m) => mmap_bytes(m, input_len),
        None => cx
            .ring
            .read(slot, 0, input_len)
            .ok_or("input does not fit its slot")?,
    };
    let input = super::with_failpoints(cx.fault_injection, input);

    let mut totals = [0u64; 3];
    let mut bytes_out = 0u64;
    let outcome = match (input, imgfilters::parse_variant_list(&spec)) {
        (Err(e), _) => Err(Stop::Input(e)),
        // The master parsed the list before the job existed; a list it sent that does not
        // parse here is still answered, not trusted.
        (_, Err(text)) => Err(Stop::List(text)),
        (Ok(input), Ok(all)) => {
            let chosen: Vec<usize> = (0..all.len()).filter(|i| mask & (1 << i) != 0).collect();
            let pipelines: Vec<Pipeline> = chosen.iter().map(|&i| all[i].clone()).collect();
            for p in &pipelines {
                for op in &p.ops {
                    cx.stats.count_op(op.name());
                }
            }
            let mut sent = 0usize;
            imgfilters::prepare_variants(
                input,
                &pipelines,
                cx.limits,
                RunOptions::default(),
                |k, prepared| {
                    let mut v = VariantDone {
                        index: chosen[k] as u8,
                        done: head.clone(),
                    };
                    let encoded = prepared.and_then(|p| {
                        let mut sink = Sink::with_spill(&mut [], Vec::new());
                        let info = p.encode(&mut sink)?;
                        Ok((info, sink.into_vec()))
                    });
                    let mut attach: Option<OwnedFd> = None;
                    match encoded {
                        Ok((info, bytes)) => {
                            let d = &mut v.done;
                            d.width = info.width;
                            d.height = info.height;
                            d.format = imgfilters::wire_code(info.format);
                            d.decode_us = info.timings.decode.as_micros() as u32;
                            d.filter_us = info.timings.filter.as_micros() as u32;
                            d.encode_us = info.timings.encode.as_micros() as u32;
                            d.output_len = bytes.len() as u64;
                            d.in_memfd = true;
                            d.message = info.decode_warning.unwrap_or_default().to_owned();
                            totals[0] = totals[0].max(d.decode_us as u64);
                            totals[1] += d.filter_us as u64;
                            totals[2] += d.encode_us as u64;
                            bytes_out += bytes.len() as u64;
                            let fd =
                                crate::shm::create(c"imgserver-output", bytes.len().max(1) as u64)
                                    .map_err(Stop::Io)?;
                            let mut file = std::fs::File::from(fd);
                            file.write_all(&bytes).map_err(Stop::Io)?;
                            attach = Some(file.into());
                        }
                        Err(e) => {
                            v.done.status = error_code(&e) as u16;
                            v.done.message = e.to_string();
                        }
                    }
                    let fds: Vec<_> = attach.iter().map(|f| f.as_fd()).collect();
                    cx.sock
                        .send(&ToMaster::Variant(v), &fds)
                        .map_err(Stop::Channel)?;
                    sent += 1;
                    #[cfg(feature = "failpoints")]
                    if crash_mid && sent == 1 {
                        std::process::abort();
                    }
                    Ok(())
                },
            )
            .map(drop)
        }
    };
    let mut done = head;
    match outcome {
        Ok(()) => {
            stats::inc(&cx.me.jobs_ok);
            stats::add(&cx.me.bytes_in, input_len);
            stats::add(&cx.me.bytes_out, bytes_out);
        }
        Err(Stop::Input(e)) => {
            done.status = error_code(&e) as u16;
            done.message = e.to_string();
            stats::inc(&cx.me.jobs_failed);
        }
        Err(Stop::List(text)) => {
            done.status = netproto_sys::ErrorCode::BadSpec as u16;
            done.message = text;
            stats::inc(&cx.me.jobs_failed);
        }
        Err(Stop::Channel(ChannelError::Closed)) => return Ok(Next::Stop),
        Err(Stop::Channel(e)) => return Err(e.into()),
        Err(Stop::Io(e)) => return Err(e.into()),
    }
    // The decode is shared: the job's decode time is its longest variant's; filter and
    // encode add up.
    done.decode_us = totals[0] as u32;
    done.filter_us = totals[1] as u32;
    done.encode_us = totals[2] as u32;
    stats::add(&cx.me.decode_us, totals[0]);
    stats::add(&cx.me.filter_us, totals[1]);
    stats::add(&cx.me.encode_us, totals[2]);
    stats::inc(&cx.me.jobs);
    stats::add(&cx.me.busy_us, started.elapsed().as_micros() as u64);
    match cx.sock.send(&ToMaster::Done(done), &[]) {
        Ok(()) => Ok(Next::Continue),
        Err(ChannelError::Closed) => Ok(Next::Stop),
        Err(e) => Err(e.into()),
    }
}
