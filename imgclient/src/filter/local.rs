//! `--local`: runs the filter pipeline in-process with the same `imgfilters` code the
//! server's workers run, so the output bytes are identical to the server's.
//!
//! Trust boundary: the input images are the user's own files here, but they go through the
//! same bounded decoder (`imgfilters::Limits`) as on the server.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use imgfilters::{Limits, Pipeline};
use netproto_sys::ResultInfo;

use crate::exit::{ExitKind, Failure};
use crate::session::{Done, Job, JobOutput};

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Filters one image in-process.
pub fn run_one(input: &[u8], pipeline: &Pipeline) -> Result<JobOutput, Failure> {
    let out = imgfilters::run(input, pipeline, &Limits::default())
        .map_err(|e| Failure::new(ExitKind::Rejected, "", format!("{}: {e}", e.kind())))?;
    let info = ResultInfo {
        total_len: out.bytes.len() as u64,
        width: out.width,
        height: out.height,
        format: imgfilters::wire_code(out.format),
        queue_us: 0,
        decode_us: micros(out.timings.decode),
        filter_us: micros(out.timings.filter),
        encode_us: micros(out.timings.encode),
    };
    Ok(JobOutput {
        bytes: out.bytes,
        info,
    })
}

/// A worker thread's loop: filter jobs from `jobs` until the channel closes.
pub fn worker(pipeline: Arc<Pipeline>, jobs: Receiver<Job>, done: Sender<Done>) {
    for job in jobs {
        let outcome = run_one(&job.input, &pipeline);
        if done
            .send(Done {
                index: job.index,
                outcome,
            })
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgfilters::image::{DynamicImage, ImageFormat, RgbImage};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            imgfilters::image::Rgb([x as u8, y as u8, 7])
        }));
        let mut v = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut v), ImageFormat::Png)
            .unwrap();
        v
    }

    #[test]
    fn local_run_reports_format_and_size() {
        let p: Pipeline = "resize:8x,format:jpeg:80".parse().unwrap();
        let out = run_one(&png(16, 10), &p).unwrap();
        assert_eq!(
            (out.info.width, out.info.height, out.info.format),
            (8, 5, 2)
        );
        assert_eq!(out.info.total_len, out.bytes.len() as u64);
        assert_eq!(&out.bytes[..2], b"\xff\xd8");
        // Deterministic: what the server (same code) returns is byte-identical.
        assert_eq!(run_one(&png(16, 10), &p).unwrap().bytes, out.bytes);
    }

    #[test]
    fn bad_input_is_a_rejected_job() {
        let p: Pipeline = "noop".parse().unwrap();
        let e = run_one(b"not an image", &p).unwrap_err();
        assert_eq!(e.kind, ExitKind::Rejected);
        assert!(e.why.starts_with("unsupported_format"), "{}", e.why);
    }
}
