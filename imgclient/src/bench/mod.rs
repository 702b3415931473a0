//! `imgclient bench`: the load tester. Loads the input images once, opens `--conns`
//! connections (driven by `--threads` event loops, see `engine`), ramps them up, drives a closed or open
//! loop for a duration or a request count, collects every outcome over a crossbeam channel
//! into HDR histograms, and reports throughput, latency percentiles, errors by type, the
//! requests each server of the --server list answered, the server's phase times and its
//! STATS counters before and after (the first server that answered).
//!
//! Trust boundary: same as the filter commands (local files in, the server's answers); the
//! bench only counts and times what comes back.

mod engine;
pub mod json;
pub mod plan;
pub mod plot;
pub mod report;
pub mod schedule;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{unbounded, TryRecvError};

use crate::args::{parse_duration, ConnArgs};
use crate::connect::Connector;
use crate::exit::{ExitKind, Failure};
use crate::spec::parse_spec;
use crate::{control, images, sys};
use plan::{BenchOp, Mode, Plan};
use report::{Summary, Totals};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Connections, spread over the --threads event loops.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,

    /// Event-loop threads that drive the connections [default: one per CPU, at most --conns].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Directory of input images (every file with an image extension, loaded once; requests
    /// cycle through them).
    #[arg(long, default_value = "samples")]
    pub dir: PathBuf,

    /// Spread the connection starts evenly over this long (the load ramps up with them).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp: Duration,

    /// How long to send requests [default: 10s unless --requests is given].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests in total.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Open loop: send R requests/s in total on a fixed schedule, latency measured from each
    /// request's intended send time [default: closed loop, one request per connection].
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// What to send: an op spec (blur:2, resize:800x600, ...), `noop` (a job that is only
    /// decoded and re-encoded) or `ping`. Repeat for a round-robin mix.
    #[arg(long = "op", value_name = "OP", default_value = "blur:2")]
    pub ops: Vec<String>,

    /// Open loop: most requests in flight on one connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub window: u32,

    /// Also write all results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw the latency distribution (percentile plot) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,

    /// Requests that may fail or be refused (BUSY, RATE_LIMITED, errors of any kind) before
    /// the run counts as failed: with more, the report is still printed and written, and the
    /// exit code is the most frequent error's.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,

    /// Draw each request's image from a Zipf distribution of exponent S over the --dir images
    /// in name order (the first is the most asked for: P(k) ∝ 1/k^S), instead of cycling
    /// through them: a repeat-heavy workload, such as a server's result cache sees.
    #[arg(long, value_name = "S", value_parser = positive_f64)]
    pub zipf: Option<f64>,

    /// Seed of the --zipf draws (the same seed, the same sequence of images).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,

    /// Send every request as one multi-output job of these 2 to 8 op specs separated by
    /// `;` (one upload and one decode, several outputs; protocol 1.1) instead of --op. A
    /// request's latency runs to its last variant; a failed variant fails the request.
    #[arg(long, value_name = "A;B;...", conflicts_with = "ops")]
    pub variants: Option<String>,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?}: a number > 0")),
    }
}

/// The op mix from `--op` values: labels as given, requests as validated specs.
pub fn parse_ops(ops: &[String]) -> Result<Vec<(String, BenchOp)>, Failure> {
    ops.iter()
        .map(|o| {
            let o = o.trim();
            if o == "ping" {
                Ok((o.to_string(), BenchOp::Ping))
            } else {
                Ok((o.to_string(), BenchOp::Job(parse_spec(o)?.to_string())))
            }
        })
        .collect()
}

/// The `--variants` list as one op: each spec validated and made canonical.
pub fn parse_variants(list: &str) -> Result<(String, BenchOp), Failure> {
    let pipelines =
        imgfilters::parse_variant_list(list).map_err(|e| Failure::usage("--variants", e))?;
    let specs: Vec<String> = pipelines.iter().map(|p| p.to_string()).collect();
    let op = BenchOp::Multi {
        list: specs.join(";"),
        n: specs.len() as u8,
    };
    Ok((list.trim().to_string(), op))
}

/// Every image in `dir`, read into memory.
pub fn load_images(dir: &std::path::Path) -> Result<Vec<Vec<u8>>, Failure> {
    let files = images::images_in(dir)?;
    if files.is_empty() {
        return Err(Failure::usage(
            format!("--dir {}", dir.display()),
            "contains no image files",
        ));
    }
    files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| Failure::io(format!("reading {}", f.display()), e)))
        .collect()
}

fn fetch_stats_logged(
    client: &mut netproto_sys::Client,
    id: u64,
    timeout: Duration,
) -> Option<Vec<(String, u64)>> {
    match control::fetch_stats(client, id, timeout) {
        Ok(s) => Some(s),
        Err(f) => {
            log::warn!("cannot fetch server STATS: {f}");
            None
        }
    }
}

/// The live line: totals so far and the rate over the last second.
fn live_line(
    elapsed: Duration,
    t: &Totals,
    ok_last_sec: u64,
    up_sec: u64,
    down_sec: u64,
) -> String {
    format!(
        "[{:6.1}s] conns {:>5}  ok {:>9} ({:>7}/s)  err {:>6}  up {:>7.1} MB/s  down {:>7.1} MB/s",
        elapsed.as_secs_f64(),
        t.conns_up,
        t.ok,
        ok_last_sec,
        t.error_count(),
        up_sec as f64 / 1e6,
        down_sec as f64 / 1e6
    )
}

/// How often the collector reads the connection threads' messages.
const COLLECT_EVERY: Duration = Duration::from_millis(5);

pub fn run(args: &BenchArgs, conn: &ConnArgs) -> Result<(), Failure> {
    let mix = match &args.variants {
        Some(list) => vec![parse_variants(list)?],
        None => parse_ops(&args.ops)?,
    };
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(Failure::usage(
                "--rate",
                "must be a positive number of requests/s",
            ));
        }
    }
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    if args.requests == Some(0) {
        return Err(Failure::usage("--requests", "must be at least 1"));
    }
    let needs_images = mix
        .iter()
        .any(|(_, op)| matches!(op, BenchOp::Job(_) | BenchOp::Multi { .. }));
    let images = if needs_images {
        load_images(&args.dir)?
    } else {
        Vec::new()
    };
    let conns = args.conns as usize;
    if duration.is_some_and(|d| args.ramp > d) {
        log::warn!("--ramp is longer than --duration: not every connection will start");
    }
    match sys::raise_nofile_limit() {
        Ok(limit) if limit < conns as u64 + 64 => log::warn!(
            "open-files limit is {limit}; {conns} connections may not all open (raise ulimit -n)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-files limit: {e}"),
    }

    let connector = Connector::new(&conn.opts())?;
    // The control connection pins the key of the first server that answers (once, before
    // the crowd; the others' keys are pinned by their first bench connection) and reads its
    // STATS.
    let (stats_server, mut control) = connector.connect_first(&AtomicBool::new(false))?;
    let stats_before = fetch_stats_logged(&mut control, 1, connector.timeout);

    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed,
    };
    let plan = Arc::new(Plan {
        connector: connector.clone(),
        ops: mix.iter().map(|(_, op)| op.clone()).collect(),
        zipf: args
            .zipf
            .map(|s| schedule::Zipf::new(s, images.len(), args.seed)),
        images,
        conns,
        mode,
        start: Instant::now() + Duration::from_millis(50),
        duration,
        max_requests: args.requests,
        ramp: args.ramp,
        window: args.window as usize,
        timeout: connector.timeout,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
    });

    let threads = args
        .threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(conns);
    let (tx, rx) = unbounded();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Connection c goes to thread c % threads, so a ramp starts them evenly.
        let mine: Vec<usize> = (t..conns).step_by(threads).collect();
        let (p, tx) = (plan.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .stack_size(plan::STACK_SIZE)
            .spawn(move || engine::run(p, mine, tx));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                plan.stop.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(Failure::io(format!("starting event-loop thread {t}"), e));
            }
        }
    }
    drop(tx);

    let live = args.progress || std::io::stderr().is_terminal();
    let tty = std::io::stderr().is_terminal();
    let mut totals = Totals::default();
    let mut next_tick = plan.start + Duration::from_secs(1);
    let (mut prev_ok, mut prev_up, mut prev_down) = (0u64, 0u64, 0u64);
    loop {
        // Collect in batches every few milliseconds rather than waking on every message: at
        // tens of thousands of requests per second a wake-up per answer would cost this
        // process (and the server it shares the CPU with) more than the requests themselves.
        // Latencies are timed by the connection threads, so batching does not change them.
        let wait = next_tick.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.min(COLLECT_EVERY));
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(m) => totals.add(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected {
            break;
        }
        let now = Instant::now();
        if now >= next_tick {
            if live {
                let line = live_line(
                    now.saturating_duration_since(plan.start),
                    &totals,
                    totals.ok - prev_ok,
                    totals.up - prev_up,
                    totals.down - prev_down,
                );
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            (prev_ok, prev_up, prev_down) = (totals.ok, totals.up, totals.down);
            next_tick += Duration::from_secs(1);
        }
    }
    if live && tty {
        eprintln!();
    }
    for h in handles {
        let _ = h.join();
    }
    let end = totals.last_event.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(plan.start);

    if let Some(f) = plan.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(f);
    }

    // The control connection sat idle through the run; the server may have closed it.
    let stats_after = if stats_before.is_some() {
        fetch_stats_logged(&mut control, 2, connector.timeout).or_else(|| {
            let mut c = connector.connect_to(stats_server).ok()?;
            fetch_stats_logged(&mut c, 1, connector.timeout)
        })
    } else {
        None
    };
    drop(control);

    let summary = Summary {
        conns,
        servers: connector.servers.clone(),
        stats_server,
        ops: mix.iter().map(|(l, _)| l.clone()).collect(),
        rate: args.rate,
        elapsed,
        totals,
        stats_before,
        stats_after,
    };
    cliutil::output::print(&summary.human()).map_err(|e| Failure::io("writing to stdout", e))?;
    if let Some(path) = &args.json {
        std::fs::write(path, json::render(&summary))
            .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "imgserver latency: {} conns, op {}, {}, {:.1} req/s",
            summary.conns,
            summary.op_label(),
            summary.mode_label(),
            summary.throughput()
        );
        let svg = plot::svg(&plot::percentile_points(&summary.totals.latency), &title);
        std::fs::write(path, svg)
            .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
    }
    verdict(&summary.totals, args.max_errors)
}

/// The run's exit: failed when nothing succeeded, or when more requests failed or were
/// refused than `max_errors` allows (a load test with refusals has not measured what it says).
fn verdict(totals: &Totals, max_errors: u64) -> Result<(), Failure> {
    let errors = totals.error_count();
    let kind = || totals.dominant_error().unwrap_or(ExitKind::Connect);
    if totals.ok == 0 && errors > 0 {
        return Err(Failure::new(kind(), "bench", "no request succeeded"));
    }
    if errors > max_errors {
        return Err(Failure::new(
            kind(),
            "bench",
            format!(
                "{errors} of {} requests failed or were refused (allowed: {max_errors}, --max-errors); see the errors in the report",
                totals.ok + errors
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_refused_requests_fails_unless_they_are_allowed() {
        let mut t = Totals {
            ok: 10,
            ..Totals::default()
        };
        assert!(verdict(&t, 0).is_ok());
        t.errors.insert("BUSY".into(), (269, ExitKind::Busy));
        t.errors.insert("timeout".into(), (3, ExitKind::Connect));
        let f = verdict(&t, 0).unwrap_err();
        assert_eq!(
            f.kind,
            ExitKind::Busy,
            "the most frequent error decides the exit"
        );
        assert!(f.why.contains("272 of 282 requests"), "{}", f.why);
        assert!(verdict(&t, 272).is_ok());
        assert_eq!(verdict(&t, 271).unwrap_err().kind, ExitKind::Busy);
        t.ok = 0;
        let f = verdict(&t, 1000).unwrap_err();
        assert!(f.why.contains("no request succeeded"), "{}", f.why);
    }

    #[test]
    fn op_mix_is_validated() {
        let m = parse_ops(&["blur:2".into(), " ping ".into(), "noop".into()]).unwrap();
        assert_eq!(m[0], ("blur:2".into(), BenchOp::Job("blur:2".into())));
        assert_eq!(m[1], ("ping".into(), BenchOp::Ping));
        assert_eq!(m[2], ("noop".into(), BenchOp::Job("noop".into())));
        assert_eq!(
            parse_ops(&["blur".into()]).unwrap_err().kind,
            ExitKind::Usage
        );
    }

    /// `bench`'s flags alone on a command line (the binary composes them in `cli`).
    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn bench_flags_parse() {
        use clap::Parser;
        let b = TestCli::try_parse_from([
            "bench",
            "--conns",
            "150",
            "--dir",
            "samples",
            "--op",
            "blur:2",
            "--op",
            "ping",
            "--rate",
            "500",
            "--duration",
            "2s",
            "--ramp",
            "1s",
        ])
        .unwrap()
        .bench;
        assert_eq!(b.conns, 150);
        assert_eq!(b.ops, ["blur:2", "ping"]);
        assert_eq!(b.rate, Some(500.0));
        assert_eq!(b.duration, Some(Duration::from_secs(2)));
        let b = TestCli::try_parse_from(["bench"]).unwrap().bench;
        assert_eq!(b.ops, ["blur:2"]);
        assert_eq!(b.conns, 16);
    }

    #[test]
    fn samples_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
        if dir.is_dir() {
            let imgs = load_images(&dir).unwrap();
            assert!(!imgs.is_empty());
        }
        let e = load_images(std::path::Path::new("/nonexistent-dir")).unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
    }

    #[test]
    fn live_line_shape() {
        let t = Totals::default();
        let l = live_line(Duration::from_millis(3000), &t, 12, 3_000_000, 0);
        assert!(
            l.starts_with("[   3.0s] conns     0  ok         0 (     12/s)"),
            "{l}"
        );
        assert!(l.contains("up     3.0 MB/s"));
    }
}
