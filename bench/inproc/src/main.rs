//! `imgbench`: the project's own in-process image throughput, for the bench suite
//! (`bench/run.sh`). Same command line and JSON shape as the third-party runners in
//! `bench/runners/`, so the harness and `bench/report.py` treat every implementation alike.
//!
//! ```text
//! imgbench run --job blur2|resize50|resize50d|gray|noop|fit800 --procs N --images DIR
//!              --repeat K [--min-time SECS] [--save DIR] [--format FMT]
//!                                                   -> one JSON object on stdout
//! imgbench list --images DIR                        -> the image set and each job's op spec
//! ```
//!
//! `--procs N` runs N threads (one process: `imgfilters` starts no threads of its own, so N
//! threads is N cores' worth of independent jobs, like N filter workers). The timed passes
//! are repeated at least K times and until `--min-time` seconds have passed; the figures are
//! medians over passes. `--format FMT` appends `,format:FMT` to every job's spec (for
//! example `webp:80` or `avif:60`; bench/formats.py uses it with `fit800`).
//!
//! Shrink-on-load (JPEG decoded smaller by DCT scaling before a downscale) is off for every
//! job but `resize50d` (jobs.rs says why); `IMGFILTERS_SHRINK_ON_LOAD=0|1` overrides that. The
//! variable is read here only: the library and the server always use their own default (on).

mod jobs;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use jobs::{Image, Job};
use serde::Serialize;

const USAGE: &str =
    "usage: imgbench run --job blur2|resize50|resize50d|gray|noop|fit800 --procs N --images DIR \
                     --repeat K [--min-time SECS] [--save DIR] [--format FMT]\n       imgbench list --images DIR";

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
    /// An output format step (`webp:80`) appended to every spec.
    format: Option<String>,
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
            "--format",
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
        format: flags.get("--format").map(|f| f.to_string()),
    })
}

/// A JSON number rounded to six decimals; non-finite values (which the maths here should
/// never give) become `null`.
fn jn(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 1e6).round() / 1e6)
}

/// `imgbench list`: the image set and each job's op spec.
#[derive(Debug, Serialize)]
struct Listing<'a> {
    images: Vec<Listed<'a>>,
}

#[derive(Debug, Serialize)]
struct Listed<'a> {
    file: &'a str,
    format: &'static str,
    width: u32,
    height: u32,
    mp: Option<f64>,
    bytes: usize,
    /// Job name to op spec.
    specs: BTreeMap<&'static str, String>,
}

/// `imgbench run`: the figures of one job at one thread count (the runners' shape).
#[derive(Debug, Serialize)]
struct Results<'a> {
    #[serde(rename = "impl")]
    implementation: &'static str,
    job: &'static str,
    procs: usize,
    images: usize,
    set_mp: Option<f64>,
    images_per_s: Option<f64>,
    mp_per_s: Option<f64>,
    ms_per_image: Option<f64>,
    phase_ms: Phases,
    out_bytes: u64,
    passes: Vec<PassJson>,
    versions: BTreeMap<&'static str, &'static str>,
    settings: Settings<'a>,
}

#[derive(Debug, Serialize)]
struct Phases {
    decode: Option<f64>,
    filter: Option<f64>,
    encode: Option<f64>,
}

#[derive(Debug, Serialize)]
struct PassJson {
    seconds: Option<f64>,
    jobs: u64,
    mp: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Settings<'a> {
    jpeg: &'a str,
    png: &'a str,
    threads: usize,
    shrink_on_load: bool,
    /// The `--format` step, when given.
    format: Option<&'a str>,
}

/// Pretty-printed with a final newline.
fn to_text(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).expect("these documents always serialize") + "\n"
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
        F::Avif => "avif",
        _ => "other",
    }
}

fn list(images: &[Image]) -> String {
    to_text(&Listing {
        images: images
            .iter()
            .map(|i| Listed {
                file: &i.name,
                format: format_name(i.format),
                width: i.width,
                height: i.height,
                mp: jn(i.megapixels()),
                bytes: i.bytes.len(),
                specs: Job::ALL
                    .iter()
                    .map(|j| (j.name(), j.spec(i.width, i.height)))
                    .collect(),
            })
            .collect(),
    })
}

fn bench(args: &Args, images: &[Image]) -> Result<String, String> {
    let pipelines = images
        .iter()
        .map(|i| i.pipeline(args.job, args.format.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::var("IMGFILTERS_SHRINK_ON_LOAD").ok();
    let options = imgfilters::RunOptions {
        shrink_on_load: args.job.shrink_on_load(env.as_deref())?,
    };

    // Warm-up, untimed: every thread runs the smallest image once (allocator, page faults).
    let smallest = (0..images.len())
        .min_by(|&a, &b| images[a].megapixels().total_cmp(&images[b].megapixels()))
        .unwrap_or(0);
    run::pass(
        &images[smallest..=smallest],
        &pipelines[smallest..=smallest],
        options,
        args.procs,
        false,
    )?;

    let mut passes = Vec::new();
    let mut outputs = Vec::new();
    let mut total = 0.0;
    while passes.len() < MAX_PASSES && (passes.len() < args.repeat || total < args.min_time) {
        let keep = args.save.is_some() && passes.is_empty();
        let (p, outs) = run::pass(images, &pipelines, options, args.procs, keep)?;
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
    let set_mp: f64 = images.iter().map(Image::megapixels).sum();
    // Every pass encodes the set `procs` times; the output is deterministic.
    let out_bytes = passes
        .first()
        .map_or(0, |p| p.out_bytes / args.procs as u64);
    Ok(to_text(&Results {
        implementation: "imgfilters",
        job: args.job.name(),
        procs: args.procs,
        images: images.len(),
        set_mp: jn(set_mp),
        images_per_s: jn(per(|p| p.jobs as f64 / p.seconds)),
        mp_per_s: jn(per(|p| p.megapixels / p.seconds)),
        ms_per_image: jn(per(|p| 1e3 * p.job_seconds / p.jobs as f64)),
        phase_ms: Phases {
            decode: jn(per(|p| 1e3 * p.decode_seconds / p.jobs as f64)),
            filter: jn(per(|p| 1e3 * p.filter_seconds / p.jobs as f64)),
            encode: jn(per(|p| 1e3 * p.encode_seconds / p.jobs as f64)),
        },
        out_bytes,
        passes: passes
            .iter()
            .map(|p| PassJson {
                seconds: jn(p.seconds),
                jobs: p.jobs,
                mp: jn(p.megapixels),
            })
            .collect(),
        versions: BTreeMap::from([("imgbench", env!("CARGO_PKG_VERSION"))]),
        settings: Settings {
            jpeg: "quality 85 (imgfilters default), the crate's encoder settings",
            png: "the crate's encoder settings",
            threads: args.procs,
            shrink_on_load: options.shrink_on_load,
            format: args.format.as_deref(),
        },
    }))
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
        assert!(a.save.is_none() && a.format.is_none());
        let a = args("--job fit800 --images d --format webp:80").unwrap();
        assert_eq!((a.job, a.format.as_deref()), (Job::Fit800, Some("webp:80")));
        assert!(args("--job blur --images d").is_err());
        assert!(args("--images").is_err());
        assert!(args("--bogus 1 --images d").is_err());
        assert!(args("--procs 2").is_err());
        assert!(args("--images d --repeat x").is_err());
    }

    #[test]
    fn numbers_are_rounded_or_null() {
        assert_eq!(jn(f64::NAN), None);
        assert_eq!(jn(f64::INFINITY), None);
        assert_eq!(jn(1.0 / 3.0), Some(0.333333));
    }

    #[test]
    fn results_parse_with_the_documented_fields() {
        let r = Results {
            implementation: "imgfilters",
            job: Job::Gray.name(),
            procs: 2,
            images: 3,
            set_mp: jn(1.5),
            images_per_s: jn(10.0),
            mp_per_s: jn(f64::NAN),
            ms_per_image: jn(0.1234567),
            phase_ms: Phases {
                decode: jn(1.0),
                filter: jn(2.0),
                encode: jn(3.0),
            },
            out_bytes: 99,
            passes: vec![PassJson {
                seconds: jn(0.5),
                jobs: 6,
                mp: jn(3.0),
            }],
            versions: BTreeMap::from([("imgbench", "0.1.0")]),
            settings: Settings {
                jpeg: "q \"85\"\n",
                png: "p",
                threads: 2,
                shrink_on_load: false,
                format: Some("avif:60"),
            },
        };
        let text = to_text(&r);
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["impl"], "imgfilters");
        assert_eq!(v["job"], "gray");
        assert_eq!(
            (v["procs"].as_u64(), v["images"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(v["mp_per_s"], serde_json::Value::Null);
        assert_eq!(v["ms_per_image"], 0.123457);
        assert_eq!(v["phase_ms"]["filter"], 2.0);
        assert_eq!(v["passes"][0]["jobs"], 6);
        assert_eq!(v["versions"]["imgbench"], "0.1.0");
        assert_eq!(v["settings"]["jpeg"], "q \"85\"\n");
        assert_eq!(v["settings"]["threads"], 2);
    }
}
