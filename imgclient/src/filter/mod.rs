//! The filter commands: plan which inputs go to which outputs (`plan`), run the jobs over a
//! few pipelined server connections or in-process with `--local` (`local`), several outputs of
//! one input as one multi-output job (`variants`), write the results
//! atomically (`files`) and show progress.
//!
//! Trust boundary: local files and the server's results; see the submodules for each side.

mod command;
mod files;
mod local;
mod plan;
mod variants;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};
use imgfilters::Pipeline;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

pub use command::FilterCommand;

use crate::args::ConnArgs;
use crate::connect::Connector;
use crate::exit::{ExitKind, Failure};
use crate::session::{Done, Job, Session};
use command::{with_output_format, FilterIo};
use files::{read_source, write_sink};
use plan::{plan, Sink, Task};

/// The protocol's output format code as a name.
fn format_name(code: u8) -> String {
    imgfilters::from_wire_code(code).map_or("image".into(), |f| format!("{f:?}").to_lowercase())
}

/// The line that confirms an output: its name, size, format and where the time went.
fn result_line(name: &str, info: &netproto_sys::ResultInfo, len: usize, local: bool) -> String {
    format!(
        "{name}: {}x{} {}, {len} bytes ({}: queue {:.1} ms, decode {:.1} ms, filter {:.1} ms, encode {:.1} ms)",
        info.width,
        info.height,
        format_name(info.format),
        if local { "in-process" } else { "server" },
        info.queue_us as f64 / 1000.0,
        info.decode_us as f64 / 1000.0,
        info.filter_us as f64 / 1000.0,
        info.encode_us as f64 / 1000.0
    )
}

/// Runs a filter command.
pub fn run(cmd: &FilterCommand, conn: &ConnArgs) -> Result<(), Failure> {
    if let FilterCommand::Run { ops, io } = cmd {
        if ops.len() > 1 {
            return variants::run(ops, io, conn);
        }
    }
    let io = cmd.io();
    let pipeline = cmd.pipeline()?;
    // The -o extension only names the format of a single output.
    let out_for_format = io
        .out_dir
        .is_none()
        .then_some(io.output.as_deref())
        .flatten();
    let pipeline = with_output_format(pipeline, io.format, io.quality, out_for_format)?;
    let tasks = plan(io, pipeline.output)?;
    if tasks.is_empty() {
        return Err(Failure::usage("inputs", "no image files found"));
    }
    // --out-dir names a folder to fill: it is made if missing (an -o path's folder is not).
    if let Some(dir) = io.out_dir.as_deref().filter(|d| !d.is_dir()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::io(format!("creating --out-dir {}", dir.display()), e))?;
        log::info!("created {}", dir.display());
    }
    let spec: Arc<str> = Arc::from(pipeline.to_string());
    log::info!("op spec: {spec:?}, {} input(s)", tasks.len());
    run_tasks(&tasks, pipeline, spec, io, conn)
}

fn run_tasks(
    tasks: &[Task],
    pipeline: Pipeline,
    spec: Arc<str>,
    io: &FilterIo,
    conn: &ConnArgs,
) -> Result<(), Failure> {
    let started = Instant::now();
    let n = tasks.len();
    let workers = if io.local {
        std::thread::available_parallelism().map_or(1, |p| p.get())
    } else {
        io.conns as usize
    }
    .min(n)
    .max(1);
    let window = io.window as usize;

    let stop = Arc::new(AtomicBool::new(false));
    // Connect before reading any input: a wrong password or a changed key should fail fast,
    // and the first contact pins the key once, not racing among workers.
    let remote = if io.local {
        None
    } else {
        let connector = Connector::new(&conn.opts())?;
        let first = connector.connect_first(&stop)?;
        Some((connector, first))
    };

    // Inputs are read lazily by a feeder thread into a small queue, so a large batch never
    // sits in memory all at once.
    let (job_tx, job_rx) = bounded::<Job>(workers * window + 1);
    let (done_tx, done_rx) = unbounded::<Done>();

    let bar = if n > 1 {
        let b = ProgressBar::new(n as u64);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({rate}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1}/s", s.per_sec());
        });
        b.set_style(style);
        b
    } else {
        ProgressBar::hidden()
    };

    let mut first_failure: Option<Failure> = None;
    let mut failed = 0usize;
    let mut reported = vec![false; n];
    std::thread::scope(|s| {
        {
            let done_tx = done_tx.clone();
            let spec = spec.clone();
            s.spawn(move || {
                for (index, t) in tasks.iter().enumerate() {
                    match read_source(&t.source) {
                        Ok(bytes) => {
                            let job = Job {
                                index,
                                spec: spec.clone(),
                                input: Arc::new(bytes),
                            };
                            if job_tx.send(job).is_err() {
                                return; // every worker has gone
                            }
                        }
                        Err(e) => {
                            let f = Failure::io("", format!("cannot read: {e}"));
                            let _ = done_tx.send(Done {
                                index,
                                outcome: Err(f),
                            });
                        }
                    }
                }
            });
        }
        match remote {
            None => {
                let pipeline = Arc::new(pipeline);
                for _ in 0..workers {
                    let (p, rx, tx) = (pipeline.clone(), job_rx.clone(), done_tx.clone());
                    s.spawn(move || local::worker(p, rx, tx));
                }
            }
            Some((connector, first)) => {
                // The other sessions start where the first connection found a server.
                let start = first.0;
                let mut first = Some(first);
                for _ in 0..workers {
                    let session = Session::new(
                        connector.clone(),
                        first.take(),
                        start,
                        job_rx.clone(),
                        done_tx.clone(),
                        stop.clone(),
                        window,
                    );
                    s.spawn(move || session.run());
                }
            }
        }
        drop(job_rx);
        drop(done_tx);

        for done in done_rx.iter() {
            let Some(task) = tasks.get(done.index) else {
                continue;
            };
            reported[done.index] = true;
            let written = done.outcome.and_then(|out| {
                let line = result_line(&task.sink_name(), &out.info, out.bytes.len(), io.local);
                write_sink(&task.sink, &out.bytes)?;
                // One confirmation line for a single file; a batch has its progress bar.
                if n == 1 && matches!(task.sink, Sink::File(_)) {
                    eprintln!("wrote {line}");
                } else {
                    log::debug!("wrote {line}");
                }
                Ok(())
            });
            if let Err(mut f) = written {
                f.what = match (f.what.is_empty(), n > 1) {
                    (true, _) => task.name(),
                    // In a batch, say which input a connection-level failure cost.
                    (false, true) => format!("{}: {}", task.name(), f.what),
                    (false, false) => f.what,
                };
                failed += 1;
                if n > 1 {
                    bar.suspend(|| eprintln!("imgclient: {f}"));
                }
                first_failure.get_or_insert(f);
            }
            bar.inc(1);
        }
    });
    bar.finish_and_clear();

    // Jobs nobody answered: every worker gave up (fatal error or retry budget spent).
    let missing: Vec<usize> = (0..n).filter(|i| !reported[*i]).collect();
    if !missing.is_empty() {
        failed += missing.len();
        let why = first_failure
            .as_ref()
            .map_or("no connection could take them".to_string(), |f| {
                f.why.clone()
            });
        let kind = first_failure.as_ref().map_or(ExitKind::Connect, |f| f.kind);
        if first_failure.is_none() || n > 1 {
            first_failure.get_or_insert(Failure::new(
                kind,
                format!("{} input(s) not processed", missing.len()),
                why,
            ));
        }
    }
    let elapsed = started.elapsed();
    if n > 1 {
        // The batch's one line of its own (the bar is gone, and without a terminal there
        // was none): what came of every input.
        eprintln!(
            "{n} inputs in {:.2} s: {} written, {failed} failed",
            elapsed.as_secs_f64(),
            n - failed
        );
    }
    match first_failure {
        None => Ok(()),
        Some(f) if n == 1 => Err(f),
        Some(f) => Err(Failure::new(
            f.kind,
            "batch",
            format!("{failed} of {n} inputs failed (first: {f})"),
        )),
    }
}

/// The filter commands alone on a command line, for this feature's tests (the binary composes
/// them with the other commands in `cli`).
#[cfg(test)]
mod test_cli {
    use std::path::PathBuf;

    use clap::Parser;

    use super::FilterCommand;
    use crate::args::ConnArgs;

    #[derive(Debug, Parser)]
    pub struct TestCli {
        #[command(flatten)]
        pub conn: ConnArgs,
        #[command(subcommand)]
        pub command: FilterCommand,
    }

    pub fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("imgclient").chain(args.iter().copied()))
    }

    /// A fresh, empty directory for one test.
    pub fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("imgclient-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use test_cli::{parse, tmpdir};

    #[test]
    fn local_batch_writes_what_imgfilters_computes() {
        use imgfilters::image::{DynamicImage, ImageFormat, RgbImage};
        let d = tmpdir("batch");
        let input_dir = d.join("in");
        fs::create_dir_all(&input_dir).unwrap();
        for (i, name) in ["one.png", "two.png", "three.png"].iter().enumerate() {
            let img = DynamicImage::ImageRgb8(RgbImage::from_fn(10 + i as u32, 7, |x, y| {
                imgfilters::image::Rgb([x as u8 * 20, y as u8 * 30, i as u8])
            }));
            img.save_with_format(input_dir.join(name), ImageFormat::Png)
                .unwrap();
        }
        fs::write(input_dir.join("broken.png"), b"not a png").unwrap();
        let out = d.join("out");
        let cli = parse(&[
            "blur",
            "--local",
            "--format",
            "webp",
            input_dir.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let e = run(&cli.command, &cli.conn).unwrap_err();
        assert_eq!(e.kind, ExitKind::Rejected);
        assert!(e.why.contains("1 of 4 inputs failed"), "{e}");
        let p: Pipeline = "blur:2,format:webp".parse().unwrap();
        for name in ["one", "two", "three"] {
            let got = fs::read(out.join(format!("{name}.webp"))).unwrap();
            let input = fs::read(input_dir.join(format!("{name}.png"))).unwrap();
            assert_eq!(got, local::run_one(&input, &p).unwrap().bytes, "{name}");
        }
        assert!(!out.join("broken.webp").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
