//! Timed passes over the image set on N threads, each job a full `imgfilters::run_into`
//! (decode + ops + encode, from bytes in memory to bytes in memory).
//!
//! A pass gives every thread the whole set once (N x images jobs), handed out largest image
//! first from one shared counter, so no thread idles while another still has a big image
//! queued, and a pass on N threads does N times the work of a pass on one (ideal scaling keeps
//! the pass time constant).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use imgfilters::{Limits, Pipeline, RunOptions};

use crate::jobs::Image;

/// What one pass measured.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub seconds: f64,
    pub jobs: u64,
    pub megapixels: f64,
    /// Sum over jobs of each job's wall time inside its thread.
    pub job_seconds: f64,
    /// Sums over jobs of the pipeline's own stage times.
    pub decode_seconds: f64,
    pub filter_seconds: f64,
    pub encode_seconds: f64,
    /// Encoded output bytes of all jobs.
    pub out_bytes: u64,
}

/// Per-thread running totals, merged into the [`Pass`] after the threads join.
#[derive(Default)]
struct Acc {
    jobs: u64,
    megapixels: f64,
    job: Duration,
    decode: Duration,
    filter: Duration,
    encode: Duration,
    out_bytes: u64,
}

/// The task list of one pass: every image `threads` times, largest first.
pub fn task_order(images: &[Image], threads: usize) -> Vec<usize> {
    let mut by_size: Vec<usize> = (0..images.len()).collect();
    by_size.sort_by(|&a, &b| {
        images[b]
            .megapixels()
            .total_cmp(&images[a].megapixels())
            .then(a.cmp(&b))
    });
    by_size
        .iter()
        .flat_map(|&i| std::iter::repeat_n(i, threads))
        .collect()
}

/// The encoded output of each image's first job in a pass, index-aligned with the images.
pub type Outputs = Vec<Option<Vec<u8>>>;

/// Runs one pass. With `keep`, also returns the output of the first job of every image,
/// copied out of the thread's reused buffer.
pub fn pass(
    images: &[Image],
    pipelines: &[Pipeline],
    options: RunOptions,
    threads: usize,
    keep: bool,
) -> Result<(Pass, Outputs), String> {
    let tasks = task_order(images, threads);
    let next = AtomicUsize::new(0);
    // The clock starts when every thread is spawned and waiting, not during spawning.
    let barrier = Barrier::new(threads + 1);
    let limits = Limits::default();

    let (seconds, results) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut acc = Acc::default();
                    let mut kept: Vec<(usize, Vec<u8>)> = Vec::new();
                    // One output buffer per thread, reused as a filter worker reuses its own.
                    let mut out = Vec::new();
                    barrier.wait();
                    loop {
                        let t = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = tasks.get(t) else { break };
                        let t0 = Instant::now();
                        let info = imgfilters::run_into_with(
                            &images[i].bytes,
                            &pipelines[i],
                            &limits,
                            options,
                            &mut out,
                        )
                        .map_err(|e| format!("{}: {e}", images[i].name))?;
                        acc.job += t0.elapsed();
                        acc.jobs += 1;
                        acc.megapixels += images[i].megapixels();
                        acc.decode += info.timings.decode;
                        acc.filter += info.timings.filter;
                        acc.encode += info.timings.encode;
                        acc.out_bytes += out.len() as u64;
                        if keep && !kept.iter().any(|(k, _)| *k == i) {
                            kept.push((i, out.clone()));
                        }
                    }
                    Ok::<_, String>((acc, kept))
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a bench thread panicked".into()))
            })
            .collect();
        (t0.elapsed().as_secs_f64(), results)
    });

    let mut p = Pass {
        seconds,
        ..Pass::default()
    };
    let mut outputs = vec![None; images.len()];
    for r in results {
        let (acc, kept) = r?;
        p.jobs += acc.jobs;
        p.megapixels += acc.megapixels;
        p.job_seconds += acc.job.as_secs_f64();
        p.decode_seconds += acc.decode.as_secs_f64();
        p.filter_seconds += acc.filter.as_secs_f64();
        p.encode_seconds += acc.encode.as_secs_f64();
        p.out_bytes += acc.out_bytes;
        for (i, bytes) in kept {
            outputs[i].get_or_insert(bytes);
        }
    }
    Ok((p, outputs))
}

/// Median of a non-empty list (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgfilters::image::{DynamicImage, ImageFormat};

    fn png(w: u32, h: u32) -> Image {
        let mut bytes = Vec::new();
        DynamicImage::new_rgb8(w, h)
            .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        Image {
            name: format!("{w}x{h}.png"),
            bytes,
            format: ImageFormat::Png,
            width: w,
            height: h,
        }
    }

    #[test]
    fn tasks_are_largest_first_and_repeated_per_thread() {
        let imgs = [png(4, 4), png(16, 16), png(8, 8)];
        assert_eq!(task_order(&imgs, 2), [1, 1, 2, 2, 0, 0]);
    }

    #[test]
    fn a_pass_does_threads_times_the_set() {
        let imgs = vec![png(20, 10), png(6, 6)];
        let pipes: Vec<Pipeline> = imgs
            .iter()
            .map(|i| i.pipeline(crate::jobs::Job::Resize50, None).unwrap())
            .collect();
        let (p, outs) = pass(&imgs, &pipes, RunOptions::default(), 3, true).unwrap();
        assert_eq!(p.jobs, 6);
        assert!((p.megapixels - 3.0 * (200.0 + 36.0) / 1e6).abs() < 1e-12);
        let out = imgfilters::probe(outs[0].as_ref().unwrap()).unwrap();
        assert_eq!(
            (out.format, out.width, out.height),
            (ImageFormat::Png, 10, 5)
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
