//! Micro-benchmark of a worker's output path: the way it was (`run_into` a reused `Vec`, then
//! copy the `Vec` into the 4 MiB slot) against the way it is (`prepare`, then
//! `Prepared::encode` into a `Sink` over the slot), per image and output format, the two
//! interleaved run by run so that the machine's noise hits both alike.
//!
//! Trust boundary: none; a developer tool that reads local image files (the repository's
//! `samples/` by default, or the files named on the command line) and prints a table.
//! Single-threaded, like a worker process.
//!
//! ```text
//! cargo run -p imgfilters --release --example slot_encode [-- [--runs N] FILE...]
//! ```
//!
//! Each figure is the median of N runs of each path (default 7).

use std::hint::black_box;
use std::time::{Duration, Instant};

use imgfilters::{Finished, Limits, Pipeline, Sink};

const SLOT: usize = 4 << 20;
const SPECS: [&str; 6] = [
    "blur:2",
    "scale:50,format:jpeg:85",
    "blur:2,format:jpeg:85",
    "blur:2,format:png",
    "blur:2,format:bmp",
    "resize:800x,format:tiff",
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut runs = 7;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples");
        for name in [
            "cat.png",
            "rocket.jpg",
            "hubble_deep_field.jpg",
            "coffee.png",
        ] {
            files.push(format!("{dir}/{name}"));
        }
    }
    let limits = Limits::default();
    let mut slot = vec![0u8; SLOT];
    let mut out = Vec::new();
    println!(
        "{:<24} {:<28} {:>9} {:>11} {:>11} {:>7}",
        "image", "spec", "out KB", "vec+copy", "into slot", "change"
    );
    let (mut sum_old, mut sum_new) = (Duration::ZERO, Duration::ZERO);
    for file in &files {
        let input = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let name = file.rsplit('/').next().unwrap_or(file);
        for spec in SPECS {
            let p: Pipeline = spec.parse().unwrap();
            let (mut old, mut new) = (Vec::new(), Vec::new());
            let mut len = 0;
            for _ in 0..runs {
                // Before: encode into the Vec, then the copy into the slot.
                let t = Instant::now();
                imgfilters::run_into(&input, &p, &limits, &mut out).unwrap();
                if out.len() <= SLOT {
                    slot[..out.len()].copy_from_slice(&out);
                }
                black_box(&slot);
                old.push(t.elapsed());
                // Now: straight into the slot.
                let t = Instant::now();
                let prepared = imgfilters::prepare(&input, &p, &limits).unwrap();
                let mut sink = Sink::new(&mut slot);
                prepared.encode(&mut sink).unwrap();
                len = match sink.finish() {
                    Finished::InRegion(n) => n,
                    Finished::Spilled(v) => v.len(),
                };
                black_box(&slot);
                new.push(t.elapsed());
            }
            assert_eq!(len, out.len(), "{name} {spec}: different sizes");
            let (o, n) = (median(old), median(new));
            sum_old += o;
            sum_new += n;
            println!(
                "{:<24} {:<28} {:>9} {:>9.2}ms {:>9.2}ms {:>+6.1}%",
                name,
                spec,
                len / 1024,
                o.as_secs_f64() * 1e3,
                n.as_secs_f64() * 1e3,
                (n.as_secs_f64() / o.as_secs_f64() - 1.0) * 100.0
            );
        }
    }
    println!(
        "{:<24} {:<28} {:>9} {:>9.2}ms {:>9.2}ms {:>+6.1}%",
        "total",
        "",
        "",
        sum_old.as_secs_f64() * 1e3,
        sum_new.as_secs_f64() * 1e3,
        (sum_new.as_secs_f64() / sum_old.as_secs_f64() - 1.0) * 100.0
    );
}
