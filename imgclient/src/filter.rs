//! The filter commands: work out which inputs go to which outputs, run the jobs (over a few
//! pipelined server connections, or in-process with `--local`), write the results atomically
//! and show progress.
//!
//! Trust boundary: local files. Outputs are written to a temporary name and renamed, so an
//! interrupted run never leaves a truncated image under the final name, and an output may
//! never overwrite its own input.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};
use imgfilters::{OutputFormat, Pipeline};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::cli::{self, Command, ConnArgs, FilterIo};
use crate::connect::Connector;
use crate::exit::{ExitKind, Failure};
use crate::local;
use crate::session::{Done, Job, Session};

/// File extensions taken from a directory input.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

/// One input and where its result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub source: Source,
    pub sink: Sink,
}

impl Task {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match &self.source {
            Source::Stdin => "<stdin>".to_string(),
            Source::File(p) => p.display().to_string(),
        }
    }

    pub fn sink_name(&self) -> String {
        match &self.sink {
            Sink::Stdout => "<stdout>".to_string(),
            Sink::File(p) => p.display().to_string(),
        }
    }
}

pub fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The image files directly inside `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let rd = fs::read_dir(dir)
        .map_err(|e| Failure::io(format!("reading directory {}", dir.display()), e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| Failure::io(format!("reading directory {}", dir.display()), e))?;
        let p = entry.path();
        if p.is_file() && has_image_extension(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Output path for `input` inside `out_dir`: same file name, extension changed when the
/// output format is fixed.
pub fn out_dir_path(out_dir: &Path, input: &Path, format: OutputFormat) -> PathBuf {
    let name = input.file_name().map(PathBuf::from).unwrap_or_default();
    let mut out = out_dir.join(name);
    if let Some(ext) = cli::extension(format) {
        out.set_extension(ext);
    }
    out
}

/// Maps the command line's inputs to tasks. `format` is the pipeline's output format (used
/// to name files in `--out-dir`).
pub fn plan(io: &FilterIo, format: OutputFormat) -> Result<Vec<Task>, Failure> {
    let stdin_count = io.inputs.iter().filter(|p| *p == Path::new("-")).count();
    if stdin_count > 0 && io.inputs.len() > 1 {
        return Err(Failure::usage("input '-'", "stdin must be the only input"));
    }
    let mut files = Vec::new();
    let mut had_dir = false;
    for p in &io.inputs {
        if p == Path::new("-") {
            continue;
        }
        if p.is_dir() {
            had_dir = true;
            let found = images_in(p)?;
            if found.is_empty() {
                log::warn!("no images in directory {}", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let tasks: Vec<Task> = if let Some(dir) = &io.out_dir {
        if stdin_count > 0 {
            return Err(Failure::usage(
                "--out-dir",
                "cannot name an output for stdin; use -o",
            ));
        }
        files
            .into_iter()
            .map(|f| Task {
                sink: Sink::File(out_dir_path(dir, &f, format)),
                source: Source::File(f),
            })
            .collect()
    } else if let Some(out) = &io.output {
        if had_dir || files.len() > 1 {
            return Err(Failure::usage(
                "-o",
                "several inputs or a directory need --out-dir DIR instead",
            ));
        }
        let sink = if out == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File(out.clone())
        };
        let source = match files.pop() {
            Some(f) => Source::File(f),
            None => Source::Stdin,
        };
        vec![Task { source, sink }]
    } else {
        return Err(Failure::usage(
            "no output",
            "give -o OUTPUT ('-' for stdout) or --out-dir DIR",
        ));
    };
    check_outputs(&tasks)?;
    Ok(tasks)
}

/// Refuses outputs that would overwrite an input or each other.
fn check_outputs(tasks: &[Task]) -> Result<(), Failure> {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let inputs: HashSet<PathBuf> = tasks
        .iter()
        .filter_map(|t| match &t.source {
            Source::File(p) => Some(canon(p)),
            Source::Stdin => None,
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        if let Sink::File(p) = &t.sink {
            let c = canon(p);
            if inputs.contains(&c) {
                return Err(Failure::usage(
                    format!("output {}", p.display()),
                    "would overwrite an input",
                ));
            }
            if !seen.insert(c) {
                return Err(Failure::usage(
                    format!("output {}", p.display()),
                    "two inputs would write the same output",
                ));
            }
        }
    }
    Ok(())
}

fn read_source(s: &Source) -> std::io::Result<Vec<u8>> {
    match s {
        Source::Stdin => {
            let mut v = Vec::new();
            std::io::stdin().lock().read_to_end(&mut v)?;
            Ok(v)
        }
        Source::File(p) => fs::read(p),
    }
}

/// The protocol's output format code as a name.
fn format_name(code: u8) -> String {
    imgfilters::from_wire_code(code).map_or("image".into(), |f| format!("{f:?}").to_lowercase())
}

/// Writes via a temporary file in the same directory and a rename.
pub fn write_sink(s: &Sink, bytes: &[u8]) -> Result<(), Failure> {
    match s {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|_| out.flush())
                .map_err(|e| Failure::io("writing stdout", e))
        }
        Sink::File(p) => {
            let what = || format!("writing {}", p.display());
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fs::create_dir_all(&dir).map_err(|e| Failure::io(what(), e))?;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let tmp = dir.join(format!(".{name}.imgclient-{}.tmp", std::process::id()));
            let result = fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
                .and_then(|_| fs::rename(&tmp, p));
            if let Err(e) = result {
                let _ = fs::remove_file(&tmp);
                return Err(Failure::io(what(), e));
            }
            Ok(())
        }
    }
}

/// Runs a filter command.
pub fn run(cmd: &Command, conn: &ConnArgs) -> Result<(), Failure> {
    let Some(io) = cmd.filter_io() else {
        return Err(Failure::usage("internal", "not a filter command"));
    };
    let pipeline = cmd.pipeline()?;
    // The -o extension only names the format of a single output.
    let out_for_format = io
        .out_dir
        .is_none()
        .then_some(io.output.as_deref())
        .flatten();
    let pipeline = cli::with_output_format(pipeline, io.format, io.quality, out_for_format)?;
    let tasks = plan(io, pipeline.output)?;
    if tasks.is_empty() {
        return Err(Failure::usage("inputs", "no image files found"));
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
                let mut first = Some(first);
                for _ in 0..workers {
                    let session = Session::new(
                        connector.clone(),
                        first.take(),
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
                                let line = format!(
                    "{}: {}x{} {}, {} bytes ({}: queue {:.1} ms, decode {:.1} ms, filter {:.1} ms, encode {:.1} ms)",
                    task.sink_name(),
                    out.info.width,
                    out.info.height,
                    format_name(out.info.format),
                    out.bytes.len(),
                    if io.local { "in-process" } else { "server" },
                    out.info.queue_us as f64 / 1000.0,
                    out.info.decode_us as f64 / 1000.0,
                    out.info.filter_us as f64 / 1000.0,
                    out.info.encode_us as f64 / 1000.0
                );
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
        log::info!(
            "{n} inputs in {:.2} s, {failed} failed",
            elapsed.as_secs_f64()
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    fn io_of(args: &[&str]) -> FilterIo {
        let cli =
            cli::Cli::try_parse_from(std::iter::once("imgclient").chain(args.iter().copied()))
                .unwrap();
        cli.command.filter_io().unwrap().clone()
    }

    fn outputs_by_path(tasks: &[Task]) -> HashMap<PathBuf, usize> {
        tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.sink {
                Sink::File(p) => Some((p.clone(), i)),
                Sink::Stdout => None,
            })
            .collect()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("imgclient-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn single_input_and_stdio() {
        let t = plan(
            &io_of(&["blur", "a.png", "-o", "b.jpg"]),
            OutputFormat::Same,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![Task {
                source: Source::File("a.png".into()),
                sink: Sink::File("b.jpg".into())
            }]
        );
        let t = plan(&io_of(&["blur", "-", "-o", "-"]), OutputFormat::Same).unwrap();
        assert_eq!(
            t,
            vec![Task {
                source: Source::Stdin,
                sink: Sink::Stdout
            }]
        );
        assert_eq!(t[0].name(), "<stdin>");
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["blur", "a.png"][..],
            &["blur", "a.png", "b.png", "-o", "c.png"],
            &["blur", "-", "a.png", "-o", "c.png"],
            &["blur", "-", "--out-dir", "d"],
            &["blur", "a.png", "-o", "a.png"],
        ] {
            let e = plan(&io_of(args), OutputFormat::Same).unwrap_err();
            assert_eq!(e.kind, ExitKind::Usage, "{args:?}");
        }
    }

    #[test]
    fn directories_expand_into_out_dir() {
        let d = tmpdir("plan");
        for f in ["b.png", "a.JPG", "notes.txt", "c.webp"] {
            fs::write(d.join(f), b"x").unwrap();
        }
        fs::create_dir(d.join("sub.png")).unwrap();
        let out = d.join("out");
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        let t = plan(&io, OutputFormat::Same).unwrap();
        let names: Vec<_> = t
            .iter()
            .map(|t| match &t.sink {
                Sink::File(p) => p.strip_prefix(&out).unwrap().display().to_string(),
                Sink::Stdout => "-".into(),
            })
            .collect();
        assert_eq!(names, ["a.JPG", "b.png", "c.webp"]);
        let t = plan(&io, OutputFormat::Webp).unwrap();
        // a.webp, b.webp, c.webp: distinct.
        assert_eq!(outputs_by_path(&t).len(), 3);
        assert!(outputs_by_path(&t).contains_key(&out.join("a.webp")));
        // A directory with -o is refused.
        let e = plan(
            &io_of(&["blur", d.to_str().unwrap(), "-o", "x.png"]),
            OutputFormat::Same,
        )
        .unwrap_err();
        assert_eq!(e.kind, ExitKind::Usage);
        // Writing into the input directory with the same names would overwrite inputs.
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            d.to_str().unwrap(),
        ]);
        assert_eq!(
            plan(&io, OutputFormat::Same).unwrap_err().kind,
            ExitKind::Usage
        );
        // Two inputs mapping to one output name.
        fs::write(d.join("a.png"), b"x").unwrap();
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            plan(&io, OutputFormat::Png).unwrap_err().kind,
            ExitKind::Usage
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_are_atomic_and_create_directories() {
        let d = tmpdir("write");
        let p = d.join("new/dir/out.png");
        write_sink(&Sink::File(p.clone()), b"data").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"data");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1);
        // An unwritable target is an I/O failure, and no temporary file is left behind.
        let e = write_sink(&Sink::File(d.join("new")), b"x").unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

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
        let cli = cli::Cli::try_parse_from([
            "imgclient",
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
