//! `imgclient run --ops A --ops B ... INPUT -o 'out-{n}.{ext}'`: one input, several outputs,
//! as one multi-output job (protocol 1.1: the server decodes once) or in-process with
//! `--local` (`imgfilters::prepare_variants`, the same code the server's workers run). Each
//! variant is written as soon as it arrives; a failed variant is reported and the others are
//! still written.
//!
//! Trust boundary: argv (checked here before any connection or file is touched), the
//! server's results, and local files (written through `files::write_sink`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use imgfilters::{FilterError, Limits, Pipeline, RunOptions, Sink};
use netproto_sys::{ffi, Event, ResultInfo};

use super::command::{with_output_format, FilterIo};
use super::files::{read_source, write_sink};
use super::plan;
use super::{format_name, result_line};
use crate::args::ConnArgs;
use crate::connect::Connector;
use crate::exit::{ExitKind, Failure};
use crate::spec::parse_spec;

/// The output name template's placeholders.
const N: &str = "{n}";
const EXT: &str = "{ext}";

/// Checks a multi-output run's arguments and builds each variant's pipeline: at most
/// `MAX_VARIANTS` specs, one input, an `-o` template naming each output with `{n}`.
pub fn check(ops: &[String], io: &FilterIo) -> Result<(Vec<Pipeline>, PathBuf), Failure> {
    if ops.len() > imgfilters::MAX_VARIANTS {
        return Err(Failure::usage(
            "--ops",
            format!(
                "at most {} --ops in one run (one multi-output job), not {}",
                imgfilters::MAX_VARIANTS,
                ops.len()
            ),
        ));
    }
    if io.out_dir.is_some() {
        return Err(Failure::usage(
            "--out-dir",
            "several --ops write one input's variants: name them with -o 'out-{n}.{ext}'",
        ));
    }
    let Some(template) = io.output.clone() else {
        return Err(Failure::usage(
            "-o",
            "several --ops need -o with {n} in it, e.g. -o 'out-{n}.{ext}'",
        ));
    };
    let text = template.to_string_lossy();
    if template == Path::new("-") || !text.contains(N) {
        return Err(Failure::usage(
            "-o",
            format!(
                "with several --ops, -o must contain {{n}} (the variant's number, 1-based), e.g. 'out-{{n}}.{{ext}}'; got {text:?}"
            ),
        ));
    }
    if io.inputs.len() != 1 || io.inputs[0].is_dir() {
        return Err(Failure::usage(
            "inputs",
            "several --ops take exactly one input image",
        ));
    }
    // A literal extension in the template picks the format of every variant that has no
    // format step of its own; with {ext} the output's own format names it.
    let for_format = (!text.contains(EXT)).then_some(template.as_path());
    let pipelines = ops
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = parse_spec(s).map_err(|mut f| {
                f.what = format!("--ops #{}: {}", i + 1, f.what);
                f
            })?;
            with_output_format(p, io.format, io.quality, for_format)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((pipelines, template))
}

/// The output file of variant `index` (0-based; `{n}` is 1-based) in format `ext`.
pub fn output_name(template: &Path, index: usize, ext: &str) -> PathBuf {
    let text = template.to_string_lossy();
    PathBuf::from(text.replace(N, &(index + 1).to_string()).replace(EXT, ext))
}

/// The file extension for a wire format code.
fn ext_of(code: u8) -> String {
    match format_name(code).as_str() {
        "jpeg" => "jpg".into(),
        other => other.into(),
    }
}

/// What came back for one variant.
struct Output {
    bytes: Vec<u8>,
    info: ResultInfo,
}

/// Runs the variants of `ops` on the one input of `io` and writes each output.
pub fn run(ops: &[String], io: &FilterIo, conn: &ConnArgs) -> Result<(), Failure> {
    let (pipelines, template) = check(ops, io)?;
    let source = match io.inputs[0].as_path() {
        p if p == Path::new("-") => plan::Source::Stdin,
        p => plan::Source::File(p.to_path_buf()),
    };
    let input = read_source(&source)
        .map_err(|e| Failure::io(format!("reading {}", io.inputs[0].display()), e))?;
    let started = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let mut each = |index: usize, outcome: Result<Output, Failure>| -> Result<(), Failure> {
        match outcome {
            Ok(out) => {
                let path = output_name(&template, index, &ext_of(out.info.format));
                write_sink(&plan::Sink::File(path.clone()), &out.bytes)?;
                let name = path.display().to_string();
                eprintln!(
                    "wrote {}",
                    result_line(&name, &out.info, out.bytes.len(), io.local)
                );
            }
            Err(mut f) => {
                f.what = format!("variant {} ({})", index + 1, ops[index]);
                eprintln!("imgclient: {f}");
                failures.push(f);
            }
        }
        Ok(())
    };
    if io.local {
        run_local(&input, &pipelines, &mut each)?;
    } else {
        let specs: Vec<String> = pipelines.iter().map(Pipeline::to_string).collect();
        run_remote(&input, &specs.join(";"), conn, &mut each)?;
    }
    log::info!(
        "{} variants in {:.1} ms",
        pipelines.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    match failures.len() {
        0 => Ok(()),
        k => {
            let first = failures.swap_remove(0);
            Err(Failure::new(
                first.kind,
                "run",
                format!("{k} of {} variants failed", pipelines.len()),
            ))
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn rejected(e: &FilterError) -> Failure {
    Failure::new(ExitKind::Rejected, "", format!("{}: {e}", e.kind()))
}

/// In-process: one decode per decode plan, each variant encoded and handed on in turn.
fn run_local(
    input: &[u8],
    pipelines: &[Pipeline],
    each: &mut impl FnMut(usize, Result<Output, Failure>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let done = imgfilters::prepare_variants::<Failure>(
        input,
        pipelines,
        &Limits::default(),
        RunOptions::default(),
        |i, prepared| {
            let encoded = prepared.and_then(|p| {
                let mut sink = Sink::with_spill(&mut [], Vec::new());
                let info = p.encode(&mut sink)?;
                Ok((info, sink.into_vec()))
            });
            let outcome = encoded
                .map(|(info, bytes)| Output {
                    info: ResultInfo {
                        total_len: bytes.len() as u64,
                        width: info.width,
                        height: info.height,
                        format: imgfilters::wire_code(info.format),
                        queue_us: 0,
                        decode_us: micros(info.timings.decode),
                        filter_us: micros(info.timings.filter),
                        encode_us: micros(info.timings.encode),
                    },
                    bytes,
                })
                .map_err(|e| rejected(&e));
            each(i, outcome)
        },
    );
    match done {
        Ok(_) => Ok(()),
        Err(f) => Err(f),
    }
}

impl From<FilterError> for Failure {
    fn from(e: FilterError) -> Failure {
        rejected(&e)
    }
}

/// Through the server: one JOB_SUBMIT_MULTI, its variants read as they come.
fn run_remote(
    input: &[u8],
    list: &str,
    conn: &ConnArgs,
    each: &mut impl FnMut(usize, Result<Output, Failure>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    const CHUNK: usize = 64 << 10;
    let n = list.split(';').count();
    let connector = Connector::new(&conn.opts())?;
    let stop = AtomicBool::new(false);
    let (_, mut client) = connector.connect_first(&stop)?;
    let what = "multi-output job";
    let t = Duration::from_secs(30);
    let unsupported = |e: &netproto_sys::NpError| {
        if e.status == ffi::NP_NOT_SUPPORTED {
            Failure::new(
                ExitKind::Protocol,
                what,
                "server does not support multi-output jobs (protocol 1.1); send the variants as separate runs",
            )
        } else {
            Failure::from_np(what, e)
        }
    };
    let first = input.len().min(CHUNK);
    client
        .send_job_multi(
            1,
            list,
            input.len() as u64,
            &input[..first],
            first == input.len(),
            t,
        )
        .map_err(|e| unsupported(&e))?;
    let mut off = first;
    while off < input.len() {
        let end = (off + CHUNK).min(input.len());
        client
            .send_job_data(1, &input[off..end], end == input.len(), t)
            .map_err(|e| unsupported(&e))?;
        off = end;
    }
    let mut answered = 0;
    let mut open: Option<(u8, ResultInfo, Vec<u8>)> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                ExitKind::Connect,
                what,
                "no answer within 300 s",
            ));
        }
        let ev = client.next_event(left).map_err(|e| unsupported(&e))?;
        let finished = match ev {
            Event::VariantResult {
                id: 1,
                index,
                info,
                data,
                last,
            } => {
                open = Some((index, info, data.to_vec()));
                last
            }
            Event::ResultData { id: 1, data, last } => {
                if let Some((_, _, bytes)) = open.as_mut() {
                    bytes.extend_from_slice(data);
                }
                last
            }
            Event::VariantError {
                id: 1,
                index,
                code,
                message,
            } => {
                answered += 1;
                each(index as usize, Err(Failure::from_wire("", code, message)))?;
                false
            }
            Event::Error { id, code, message } if id == 1 || id == 0 => {
                return Err(Failure::from_wire(what, code, message));
            }
            Event::Busy {
                id: 1,
                retry_after_ms,
            } => {
                return Err(Failure::new(
                    ExitKind::Busy,
                    what,
                    format!("server busy; retry after {retry_after_ms} ms"),
                ));
            }
            Event::Bye => {
                return Err(Failure::new(
                    ExitKind::Connect,
                    what,
                    "server closed the connection",
                ))
            }
            _ => false,
        };
        if finished {
            if let Some((index, info, bytes)) = open.take() {
                answered += 1;
                each(index as usize, Ok(Output { bytes, info }))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use imgfilters::OutputFormat;

    /// Parses a `run` command line (words split on spaces).
    fn io(line: &str) -> (Vec<String>, FilterIo) {
        #[derive(Parser)]
        struct T {
            #[command(subcommand)]
            c: super::super::FilterCommand,
        }
        let v = std::iter::once("t").chain(line.split(' '));
        match T::try_parse_from(v).unwrap().c {
            super::super::FilterCommand::Run { ops, io } => (ops, io),
            _ => unreachable!(),
        }
    }

    #[test]
    fn several_ops_need_one_input_and_an_output_template_with_n() {
        let (ops, i) = io("run --ops invert --ops grayscale a.png -o out-{n}.{ext}");
        let (p, t) = check(&ops, &i).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].output,
            OutputFormat::Same,
            "{{ext}} leaves the format alone"
        );
        assert_eq!(output_name(&t, 0, "png"), Path::new("out-1.png"));
        assert_eq!(output_name(&t, 1, "jpg"), Path::new("out-2.jpg"));
        for bad in [
            "run --ops invert --ops grayscale a.png",
            "run --ops invert --ops grayscale a.png -o out.png",
            "run --ops invert --ops grayscale a.png -o -",
            "run --ops invert --ops grayscale a.png b.png -o {n}.png",
            "run --ops invert --ops blur:x a.png -o {n}.png",
        ] {
            let (ops, i) = io(bad);
            let f = check(&ops, &i).unwrap_err();
            assert_eq!(f.kind, ExitKind::Usage, "{bad}: {f}");
        }
        let nine = format!("run{} a.png -o {{n}}.png", " --ops invert".repeat(9));
        let (ops, i) = io(&nine);
        assert!(check(&ops, &i)
            .unwrap_err()
            .to_string()
            .contains("at most 8"));
        // A literal extension picks the format of variants without their own.
        let (ops, i) = io("run --ops invert --ops grayscale,format:png a.png -o v{n}.webp");
        let (p, _) = check(&ops, &i).unwrap();
        assert!(matches!(
            p[0].output,
            OutputFormat::Webp | OutputFormat::WebpLossy { .. }
        ));
        assert_eq!(p[1].output, OutputFormat::Png);
    }
}
