//! `imgbench`: the project's own in-process image throughput, for the bench suite
//! (`bench/run.sh`). Same command line and JSON shape as the third-party runners in
//! `bench/runners/`, so the harness and `bench/report.py` treat every implementation alike.
//!
//! ```text
//! imgbench run --job blur2|resize50|gray|noop --procs N --images DIR --repeat K
//!              [--min-time SECS] [--save DIR]       -> one JSON object on stdout
//! imgbench list --images DIR                        -> the image set and each job's op spec
//! ```
//!
//! `--procs N` runs N threads (one process: `imgfilters` starts no threads of its own, so N
//! threads is N cores' worth of independent jobs, like N filter workers). The timed passes
//! are repeated at least K times and until `--min-time` seconds have passed; the figures are
//! medians over passes.

mod jobs;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use jobs::{Image, Job};

const USAGE: &str = "usage: imgbench run --job blur2|resize50|gray|noop --procs N --images DIR \
                     --repeat K [--min-time SECS] [--save DIR]\n       imgbench list --images DIR";

/// Most passes one run makes, whatever `--min-time` asks (tiny images would otherwise loop
/// for very many passes).
const MAX_PASSES: usize = 10_000;

#[derive(Debug)]
struct Args {
    job: Job,
    procs: usize,
    images: PathBuf,
    repeat: usize,
    min_time: f64,
    save: Option<PathBuf>,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut flags: BTreeMap<&str, &str> = BTreeMap::new();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let known = [
            "--job",
            "--procs",
            "--images",
            "--repeat",
            "--min-time",
            "--save",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag.as_str(), value.as_str());
    }
    let num = |name: &str, default: Option<&str>| -> Result<f64, String> {
        let v = flags
            .get(name)
            .copied()
            .or(default)
            .ok_or_else(|| format!("{name} is required"))?;
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{name}: not a number: {v:?}"))
    };
    let job = flags.get("--job").copied().unwrap_or("blur2");
    Ok(Args {
        job: Job::parse(job).ok_or_else(|| format!("--job: unknown job {job:?}"))?,
        procs: (num("--procs", Some("1"))? as usize).max(1),
        images: PathBuf::from(flags.get("--images").ok_or("--images is required")?),
        repeat: (num("--repeat", Some("3"))? as usize).max(1),
        min_time: num("--min-time", Some("0"))?,
        save: flags.get("--save").map(PathBuf::from),
    })
}

/// A JSON string literal (names are file names: escape what JSON requires).
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number; non-finite values (which the maths here should never give) become null.
fn jn(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        "null".into()
    }
}

fn format_name(f: imgfilters::image::ImageFormat) -> &'static str {
    use imgfilters::image::ImageFormat as F;
    match f {
        F::Png => "png",
        F::Jpeg => "jpeg",
        F::Gif => "gif",
        F::WebP => "webp",
        F::Bmp => "bmp",
        F::Tiff => "tiff",
        _ => "other",
    }
}

fn list(images: &[Image]) -> String {
    let rows: Vec<String> = images
        .iter()
        .map(|i| {
            let specs: Vec<String> = Job::ALL
                .iter()
                .map(|j| format!("{}: {}", js(j.name()), js(&j.spec(i.width, i.height))))
                .collect();
            format!(
                "{{\"file\": {}, \"format\": {}, \"width\": {}, \"height\": {}, \"mp\": {}, \
                 \"bytes\": {}, \"specs\": {{{}}}}}",
                js(&i.name),
                js(format_name(i.format)),
                i.width,
                i.height,
                jn(i.megapixels()),
                i.bytes.len(),
                specs.join(", ")
            )
        })
        .collect();
    format!("{{\"images\": [\n  {}\n]}}\n", rows.join(",\n  "))
}

fn bench(args: &Args, images: &[Image]) -> Result<String, String> {
    let pipelines = images
        .iter()
        .map(|i| i.pipeline(args.job))
        .collect::<Result<Vec<_>, _>>()?;

    // Warm-up, untimed: every thread runs the smallest image once (allocator, page faults).
    let smallest = (0..images.len())
        .min_by(|&a, &b| images[a].megapixels().total_cmp(&images[b].megapixels()))
        .unwrap_or(0);
    run::pass(
        &images[smallest..=smallest],
        &pipelines[smallest..=smallest],
        args.procs,
        false,
    )?;

    let mut passes = Vec::new();
    let mut outputs = Vec::new();
    let mut total = 0.0;
    while passes.len() < MAX_PASSES && (passes.len() < args.repeat || total < args.min_time) {
        let keep = args.save.is_some() && passes.is_empty();
        let (p, outs) = run::pass(images, &pipelines, args.procs, keep)?;
        total += p.seconds;
        if keep {
            outputs = outs;
        }
        passes.push(p);
    }

    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (img, bytes) in images.iter().zip(&outputs) {
            let bytes = bytes.as_ref().ok_or("an image produced no output")?;
            let path = dir.join(&img.name);
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }

    let per = |f: fn(&run::Pass) -> f64| run::median(passes.iter().map(f).collect());
    let pass_list: Vec<String> = passes
        .iter()
        .map(|p| {
            format!(
                "{{\"seconds\": {}, \"jobs\": {}, \"mp\": {}}}",
                jn(p.seconds),
                p.jobs,
                jn(p.megapixels)
            )
        })
        .collect();
    let set_mp: f64 = images.iter().map(Image::megapixels).sum();
    // Every pass encodes the set `procs` times; the output is deterministic.
    let out_bytes = passes
        .first()
        .map_or(0, |p| p.out_bytes / args.procs as u64);
    Ok(format!(
        "{{\"impl\": \"imgfilters\", \"job\": {}, \"procs\": {}, \"images\": {}, \
         \"set_mp\": {}, \"images_per_s\": {}, \"mp_per_s\": {}, \"ms_per_image\": {}, \
         \"phase_ms\": {{\"decode\": {}, \"filter\": {}, \"encode\": {}}}, \
         \"out_bytes\": {}, \"passes\": [{}], \
         \"versions\": {{\"imgbench\": {}}}, \
         \"settings\": {{\"jpeg\": \"quality 85 (imgfilters default), the crate's encoder settings\", \
         \"png\": \"the crate's encoder settings\", \"threads\": {}}}}}\n",
        js(args.job.name()),
        args.procs,
        images.len(),
        jn(set_mp),
        jn(per(|p| p.jobs as f64 / p.seconds)),
        jn(per(|p| p.megapixels / p.seconds)),
        jn(per(|p| 1e3 * p.job_seconds / p.jobs as f64)),
        jn(per(|p| 1e3 * p.decode_seconds / p.jobs as f64)),
        jn(per(|p| 1e3 * p.filter_seconds / p.jobs as f64)),
        jn(per(|p| 1e3 * p.encode_seconds / p.jobs as f64)),
        out_bytes,
        pass_list.join(", "),
        js(env!("CARGO_PKG_VERSION")),
        args.procs,
    ))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("run") => parse_args(&argv[1..])
            .and_then(|a| jobs::load_dir(&a.images).and_then(|imgs| bench(&a, &imgs))),
        Some("list") => match argv.get(1..3) {
            Some([flag, dir]) if flag == "--images" => {
                jobs::load_dir(dir.as_ref()).map(|imgs| list(&imgs))
            }
            _ => Err(USAGE.into()),
        },
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(json) => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imgbench: {e}");
            if e == USAGE {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse_args(&v)
    }

    #[test]
    fn command_line() {
        let a = args("--job gray --procs 2 --images d --repeat 5 --min-time 1.5").unwrap();
        assert_eq!((a.job, a.procs, a.repeat), (Job::Gray, 2, 5));
        assert_eq!(a.min_time, 1.5);
        assert!(a.save.is_none());
        assert!(args("--job blur --images d").is_err());
        assert!(args("--images").is_err());
        assert!(args("--bogus 1 --images d").is_err());
        assert!(args("--procs 2").is_err());
        assert!(args("--images d --repeat x").is_err());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(js("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(jn(f64::NAN), "null");
    }
}
