//! Multi-output jobs (JOB_SUBMIT_MULTI, protocol feature level 1.1) against the real server:
//! each variant is byte-identical to the same spec run as its own job, a failing variant fails
//! alone, a failure of the input ends the request, a bad variant list is BAD_SPEC naming the
//! variant, a worker lost mid-job is retried for the variants not yet answered only (each
//! variant reaches the client exactly once), and a variant's stream is never cut into by
//! another answer of its request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netproto_sys::{Client, Event};
use testkit::*;

/// What a multi-output request got: each variant's bytes or error code, in arrival order of
/// completion, and the request-level ERROR if one ended it.
#[derive(Debug, Default)]
struct Multi {
    variants: BTreeMap<u8, Result<Vec<u8>, u16>>,
    order: Vec<u8>,
    ended_by: Option<(u16, String)>,
}

/// Submits `list` as a multi-output job and reads until all its variants are answered or an
/// ERROR ends the request. Panics on a variant answered twice or a stream cut into.
fn run_multi(c: &mut Client, id: u64, list: &str, input: &[u8]) -> Multi {
    submit_multi(c, id, list, input);
    read_multi(c, id, list.split(';').count() as u8)
}

/// Sends `list` and `input` as multi-output job `id`, its upload in 64 KiB chunks.
fn submit_multi(c: &mut Client, id: u64, list: &str, input: &[u8]) {
    const CHUNK: usize = 64 << 10;
    let t = Duration::from_secs(10);
    let first = input.len().min(CHUNK);
    c.send_job_multi(
        id,
        list,
        input.len() as u64,
        &input[..first],
        first == input.len(),
        t,
    )
    .unwrap();
    for (k, chunk) in input[first..].chunks(CHUNK).enumerate() {
        let last = first + (k + 1) * CHUNK >= input.len();
        c.send_job_data(id, chunk, last, t).unwrap();
    }
}

/// Reads the answers of multi-output job `id` until all `n` variants are answered or an ERROR
/// ends the request.
fn read_multi(c: &mut Client, id: u64, n: u8) -> Multi {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut m = Multi::default();
    let mut open: Option<(u8, Vec<u8>)> = None;
    while (m.variants.len() as u8) < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out: {m:?}");
        match c.next_event(left).unwrap() {
            Event::VariantResult {
                id: rid,
                index,
                data,
                last,
                ..
            } if rid == id => {
                assert!(open.is_none(), "a variant frame inside another's stream");
                let mut bytes = data.to_vec();
                if last {
                    finish(&mut m, index, Ok(std::mem::take(&mut bytes)));
                } else {
                    open = Some((index, bytes));
                }
            }
            Event::ResultData {
                id: rid,
                data,
                last,
            } if rid == id => {
                let (index, mut bytes) = open.take().expect("RESULT_DATA without a stream");
                bytes.extend_from_slice(data);
                if last {
                    finish(&mut m, index, Ok(bytes));
                } else {
                    open = Some((index, bytes));
                }
            }
            Event::VariantError {
                id: rid,
                index,
                code,
                ..
            } if rid == id => {
                assert!(open.is_none(), "a VARIANT_ERROR inside a stream");
                finish(&mut m, index, Err(code));
            }
            Event::Error {
                id: rid,
                code,
                message,
            } if rid == id => {
                assert!(open.is_none(), "an ERROR inside a stream");
                m.ended_by = Some((code, message.to_string()));
                return m;
            }
            Event::Ping { .. } | Event::Pong { .. } => {}
            e => panic!("unexpected event {e:?}"),
        }
    }
    m
}

fn finish(m: &mut Multi, index: u8, r: Result<Vec<u8>, u16>) {
    assert!(
        m.variants.insert(index, r).is_none(),
        "variant {index} answered twice"
    );
    m.order.push(index);
}

fn alone(c: &mut Client, id: u64, spec: &str, input: &[u8]) -> Vec<u8> {
    match run_job(c, id, spec, input) {
        Outcome::Ok { bytes, .. } => bytes,
        o => panic!("{spec}: {o:?}"),
    }
}

#[test]
fn variants_are_byte_identical_to_separate_jobs_and_a_failing_variant_fails_alone() {
    let srv = Server::start("variants", &["--workers", "1"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = connect(&srv.addr);
    // A JPEG (shrink-on-load gives the resizes their own decode plans) and a PNG, each with
    // a variant larger than one 64 KiB chunk.
    let jpeg = sample("astronaut_128x128.jpg");
    let jpeg_list = [
        "resize:64x,format:webp",
        "blur:1,format:bmp",
        "thumbnail:32",
    ];
    let m = run_multi(&mut c, 1, &jpeg_list.join(";"), &jpeg);
    assert!(m.ended_by.is_none(), "{m:?}");
    for (i, spec) in jpeg_list.iter().enumerate() {
        let want = alone(&mut c, 100 + i as u64, spec, &jpeg);
        assert!(
            m.variants[&(i as u8)].as_ref().unwrap() == &want,
            "variant {i} ({spec}) differs from its separate job"
        );
    }
    let png = sample("chelsea_64x64.png");
    let png_list = [
        "grayscale,format:png",
        "crop:250:0:10x10",
        "invert,format:jpeg:90",
    ];
    let m = run_multi(&mut c, 2, &png_list.join(";"), &png);
    assert!(m.ended_by.is_none(), "{m:?}");
    assert_eq!(
        m.variants[&1],
        Err(netproto_sys::ErrorCode::BadGeometry as u16)
    );
    for i in [0, 2] {
        let want = alone(&mut c, 200 + i as u64, png_list[i], &png);
        assert!(m.variants[&(i as u8)].as_ref().unwrap() == &want);
    }
    assert_eq!(srv.stat("variant_jobs"), 2);
    assert_eq!(srv.stat("variant_outputs"), 5);
    // The request ended: its id is free again, and the connection goes on.
    assert!(run_multi(&mut c, 1, "noop;grayscale", &png)
        .ended_by
        .is_none());
    srv.wait("the job's one line", Duration::from_secs(10), || {
        srv.log_text().contains("-> 3 variants, status OK")
    });
}

#[test]
fn a_variant_error_waits_until_the_stream_before_it_is_complete() {
    let srv = Server::start("variants-order", &["--workers", "1"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = connect(&srv.addr);
    // The first variant is 48 MB of BMP, more than loopback buffers take (32 + 4 MiB at
    // most); the second fails only when encoded (WebP is at most 16 383 px wide), after the
    // first was sent. Not reading until the job is done keeps the socket full, so the master
    // has that failure while the first variant's stream is still being written: its
    // VARIANT_ERROR must wait, not land among the RESULT_DATA frames (`read_multi` panics if
    // it does; libnetproto's server refuses to send it).
    let png = sample("astronaut.png");
    let list = [
        "resize:4000x,format:bmp",
        "resize:17000x100:fill,format:webp",
        "thumbnail:16",
    ];
    submit_multi(&mut c, 1, &list.join(";"), &png);
    srv.wait("the job's end", Duration::from_secs(30), || {
        srv.stat("variant_jobs") == 1
    });
    let m = read_multi(&mut c, 1, 3);
    assert!(m.ended_by.is_none(), "{m:?}");
    assert!(m.variants[&0].as_ref().unwrap().len() > 40 << 20);
    assert_eq!(
        m.variants[&1],
        Err(netproto_sys::ErrorCode::EncodeFailed as u16)
    );
    assert!(m.variants[&2].is_ok());
    assert_eq!(m.order, [0, 1, 2]);
}

#[test]
fn the_input_and_the_list_are_the_requests_failures() {
    let srv = Server::start("variants-fail", &["--workers", "1"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = connect(&srv.addr);
    let m = run_multi(&mut c, 1, "noop;grayscale", b"not an image at all");
    let (code, _) = m.ended_by.expect("a request-level ERROR");
    assert_eq!(code, netproto_sys::ErrorCode::UnsupportedFormat as u16);
    assert!(m.variants.is_empty());
    let png = sample("chelsea_64x64.png");
    let m = run_multi(&mut c, 2, "noop;blur:nope", &png);
    let (code, text) = m.ended_by.expect("BAD_SPEC");
    assert_eq!(code, netproto_sys::ErrorCode::BadSpec as u16);
    assert!(text.starts_with("variant 2: "), "{text}");
    // Nine variants, over MAX_VARIANTS: the client library refuses to send them.
    let nine = ["noop"; 9].join(";");
    let e = c
        .send_job_multi(3, &nine, 1, b"x", true, Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(e.status, netproto_sys::ffi::NP_INVALID_ARGUMENT);
    assert!(run_job(&mut c, 4, "grayscale", &png).is_ok());
}

#[test]
fn a_worker_lost_mid_job_is_retried_for_the_variants_not_yet_answered() {
    let srv = Server::builder("variants-lost")
        .args(&["--workers", "2"])
        .fault_injection()
        .start();
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = srv.connect();
    let png = sample("chelsea_64x64.png");
    let list = [
        "blur:1,format:bmp",
        "grayscale,format:png",
        "invert,format:webp",
    ];
    // The first worker sends its first variant, then dies; the retry runs the other two.
    let mut input = b"IMGSERVER-FAULT-ENCODE-CRASH\n".to_vec();
    input.extend_from_slice(&png);
    let m = run_multi(&mut c, 1, &list.join(";"), &input);
    assert!(m.ended_by.is_none(), "{m:?}");
    assert_eq!(m.order.len(), 3, "each variant exactly once: {:?}", m.order);
    for (i, spec) in list.iter().enumerate() {
        let want = alone(&mut c, 10 + i as u64, spec, &png);
        assert!(m.variants[&(i as u8)].as_ref().unwrap() == &want, "{spec}");
    }
    assert_eq!(srv.stat("jobs_retried"), 1);
    assert_eq!(srv.stat("variant_outputs"), 3);
    // The variant sent before the death counted as answered: the retry ran the other two.
    srv.wait("the retry's log line", Duration::from_secs(10), || {
        srv.log_text()
            .contains("retrying once on another worker (2 of 3 variants left)")
    });
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn an_input_larger_than_a_slot_is_a_multi_output_job_too() {
    let srv = Server::start(
        "variants-large",
        &["--workers", "1", "--slot-size", "64KiB"],
    );
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = connect(&srv.addr);
    let jpeg = sample("rocket.jpg");
    let list = ["resize:300x,format:webp", "grayscale,format:png"];
    let m = run_multi(&mut c, 1, &list.join(";"), &jpeg);
    assert!(m.ended_by.is_none(), "{m:?}");
    for (i, spec) in list.iter().enumerate() {
        let want = alone(&mut c, 10 + i as u64, spec, &jpeg);
        assert!(m.variants[&(i as u8)].as_ref().unwrap() == &want, "{spec}");
    }
    assert!(
        srv.stat("large_jobs") >= 3,
        "the inputs went into job memfds"
    );
}

#[test]
fn multi_output_jobs_bypass_the_cache() {
    let srv = Server::start(
        "variants-cache",
        &["--workers", "1", "--cache-size", "1MiB"],
    );
    srv.wait_workers_ready(Duration::from_secs(20));
    let mut c = connect(&srv.addr);
    let png = sample("chelsea_64x64.png");
    for id in 1..=2 {
        assert!(run_multi(&mut c, id, "noop;grayscale", &png)
            .ended_by
            .is_none());
    }
    assert_eq!(srv.stat("cache_hits"), 0);
    assert_eq!(srv.stat("cache_inserts"), 0);
    assert_eq!(srv.stat("variant_jobs"), 2);
}

#[test]
fn imgclient_run_with_several_ops_writes_each_variant_as_the_separate_runs_would() {
    let srv = Server::start("variants-imgclient", &["--workers", "1"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let scratch = TempDir::new("variants-imgclient");
    let input = samples().join("rocket.jpg");
    let input = input.to_str().unwrap();
    let ops = ["resize:200x,format:webp", "grayscale", "crop:5000:0:10x10"];
    let mut args = vec!["run"];
    for o in &ops {
        args.extend_from_slice(&["--ops", o]);
    }
    let remote = scratch.join("r-{n}.{ext}");
    let local = scratch.join("l-{n}.{ext}");
    let mut r = args.clone();
    r.extend_from_slice(&[input, "-o", remote.to_str().unwrap()]);
    let out = srv.imgclient().run(&r);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The third variant fails alone (exit 6: rejected), the others are written.
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("variant 3 (crop:5000:0:10x10)"), "{stderr}");
    assert!(stderr.contains("1 of 3 variants failed"), "{stderr}");
    let mut l = args.clone();
    l.extend_from_slice(&["--local", input, "-o", local.to_str().unwrap()]);
    let out = srv.imgclient().run(&l);
    assert_eq!(out.status.code(), Some(6));
    for (n, ext) in [(1, "webp"), (2, "jpg")] {
        let a = std::fs::read(scratch.join(format!("r-{n}.{ext}"))).unwrap();
        let b = std::fs::read(scratch.join(format!("l-{n}.{ext}"))).unwrap();
        assert!(a == b, "variant {n}: server and --local differ");
    }
    assert!(!scratch.join("r-3.jpg").exists());
    assert_eq!(srv.stat("variant_jobs"), 1);
    // Without {n} in -o: a usage error before any connection.
    let mut bad = args.clone();
    bad.extend_from_slice(&[input, "-o", "out.png"]);
    let out = srv.imgclient().run(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("{n}"));
}

#[test]
fn bench_with_variants_sends_multi_output_jobs_and_counts_a_request_at_its_last_variant() {
    let srv = Server::start("variants-bench", &["--workers", "2"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let images = small_images("variants-bench");
    let run = srv.bench(&[
        "--conns",
        "4",
        "--requests",
        "40",
        "--variants",
        "thumbnail:16;grayscale,format:png;invert",
        "--dir",
        images.path().to_str().unwrap(),
    ]);
    let b = &run.report;
    assert_eq!((b.ok, b.errors), (40, 0), "{:?}", b.errors_by_type);
    assert_eq!(srv.stat("variant_jobs"), 40);
    assert_eq!(srv.stat("variant_outputs"), 120);
    // A failing variant fails its request.
    let run = srv.bench(&[
        "--conns",
        "1",
        "--requests",
        "3",
        "--max-errors",
        "3",
        "--variants",
        "noop;crop:5000:0:10x10",
        "--dir",
        images.path().to_str().unwrap(),
    ]);
    assert_eq!(run.report.errors, 3, "{:?}", run.report.errors_by_type);
    assert!(
        run.report
            .errors_by_type
            .keys()
            .any(|k| k.contains("BAD_GEOMETRY")),
        "{:?}",
        run.report.errors_by_type
    );
}
