//! End-to-end tests of `--server A,B`: the real imgclient binary failing over across real
//! imgserver processes on loopback. A dead entry (a port nothing listens on) is skipped; a
//! server whose key is not the pinned one stops the client (never skipped); bench spreads
//! its connections over both servers; a server killed (SIGKILL) in the middle of a bench run
//! costs no request, and in the middle of a filter batch no image.
//!
//! Trust boundary: none of its own; each server is a throwaway one (own state directory and
//! so its own key, port 0) started through the shared test kit, and both keys are pinned
//! before the first login, by their logged fingerprints.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use testkit::{
    batch_inputs, files_in, samples, wait_until, BenchReport, ImgClient, Server, TempDir,
};

fn server(tag: &str) -> Server {
    Server::start(tag, &["--workers", "1"])
}

/// A loopback address nothing listens on: a port the kernel handed out, then closed.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

/// A directory with two small images, so bench jobs are quick.
fn small_images(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
        std::fs::copy(samples().join(f), images.join(f)).unwrap();
    }
    images
}

/// The report's requests per server: (address, ok) in list order.
fn served(report: &BenchReport) -> Vec<(String, u64)> {
    report.raw["servers"]
        .as_array()
        .expect("the report lists its servers")
        .iter()
        .map(|s| {
            (
                s["addr"].as_str().unwrap().to_string(),
                s["ok"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_dead_server_in_the_list_is_skipped_and_a_wrong_key_is_not() {
    let dir = TempDir::new("fo-dead");
    let live = server("fo-live");
    let known = dir.join("known_servers");
    live.pin_in(&known);
    let dead = dead_addr();
    let list = format!("{dead},{}", live.addr);
    let c = ImgClient::new(&list, &known);

    let o = c.run(&["ping"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(&format!("pong from {}:", live.addr)),
        "{out}"
    );

    // A filter command through the same list, and the same list from the newer variable.
    let output = dir.join("out.png");
    let mut cmd = c.cmd();
    cmd.env_remove("IMGSERVER_ADDR")
        .env("IMGCLIENT_SERVER", &list)
        .args(["blur", "--sigma", "1"])
        .arg(samples().join("chelsea_64x64.png"))
        .arg("-o")
        .arg(&output);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&output).unwrap().len() > 0);
    // Only the live server was ever pinned.
    let pinned = std::fs::read_to_string(&known).unwrap();
    assert_eq!(pinned.lines().count(), 1, "{pinned}");
    assert!(pinned.starts_with(&live.addr), "{pinned}");

    // A malformed entry is a usage error naming it, before anything connects.
    let o = ImgClient::new(&format!("{},nonsense", live.addr), &known).run(&["ping"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("entry 2 \"nonsense\""), "{err}");

    // A server presenting another key than its pin ends the run (exit 5) even though the
    // next server of the list would have answered: that is an attack signal, not an outage.
    let other = server("fo-other");
    let wrong = dir.join("wrong_known");
    std::fs::write(
        &wrong,
        format!(
            "{} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            other.addr
        ),
    )
    .unwrap();
    live.pin_in(&wrong);
    let before = live.stat("logins_ok");
    let o = ImgClient::new(&format!("{},{}", other.addr, live.addr), &wrong).run(&["ping"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains(&other.addr), "{err}");
    assert_eq!(
        live.stat("logins_ok"),
        before,
        "the next server was not tried"
    );
}

#[test]
fn bench_spreads_its_connections_over_the_list() {
    let dir = TempDir::new("fo-spread");
    let (a, b) = (server("fo-a"), server("fo-b"));
    let known = dir.join("known_servers");
    a.pin_in(&known);
    b.pin_in(&known);
    let images = small_images(dir.path());
    let (a0, b0) = (a.stat("jobs_ok"), b.stat("jobs_ok"));
    let list = format!("{},{}", a.addr, b.addr);
    let run = ImgClient::new(&list, &known).bench(
        &[
            "--conns",
            "20",
            "--op",
            "noop",
            "--requests",
            "200",
            "--dir",
            images.to_str().unwrap(),
        ],
        dir.path(),
    );
    run.assert_success();
    assert_eq!(run.report.ok, 200, "{}", run.stdout);
    assert_eq!(run.report.errors, 0, "{}", run.stdout);
    let per = served(&run.report);
    assert_eq!(per.len(), 2);
    assert_eq!((per[0].0.as_str(), per[1].0.as_str()), (&*a.addr, &*b.addr));
    let (ja, jb) = (a.stat("jobs_ok") - a0, b.stat("jobs_ok") - b0);
    assert!(ja > 0 && jb > 0, "jobs: {ja} on A, {jb} on B");
    assert_eq!(
        (per[0].1, per[1].1),
        (ja, jb),
        "the report agrees with STATS"
    );
    assert!(
        run.stdout
            .contains(&format!("served: {} {ja}, {} {jb}", a.addr, b.addr)),
        "{}",
        run.stdout
    );
}

#[test]
fn a_server_killed_mid_bench_costs_no_request() {
    let dir = TempDir::new("fo-kill");
    let (mut a, b) = (server("fo-ka"), server("fo-kb"));
    let known = dir.join("known_servers");
    a.pin_in(&known);
    b.pin_in(&known);
    let images = small_images(dir.path());
    let json = dir.join("bench.json");
    let list = format!("{},{}", a.addr, b.addr);
    let requests = 10_000u64;
    let mut child = ImgClient::new(&list, &known)
        .cmd()
        .args(["bench", "--conns", "20", "--op", "noop", "--requests"])
        .arg(requests.to_string())
        .arg("--dir")
        .arg(&images)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some requests done on A (so some are in flight there), then A dies at once.
    let a0 = 0;
    wait_until(
        "A has answered some requests",
        Duration::from_secs(60),
        || a.try_stats().is_ok_and(|s| s.get("jobs_ok") > a0 + 20),
    )
    .unwrap_or_else(|e| a.fail(e));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the bench ended before the server was killed: raise --requests"
    );
    a.kill_now();
    wait_until("the bench ends", Duration::from_secs(120), || {
        child.try_wait().unwrap().is_some()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report = BenchReport::parse(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.errors, 0, "{stdout}");
    assert_eq!(report.ok, requests, "{stdout}");
    let per = served(&report);
    assert!(per[0].1 > 0 && per[1].1 > 0, "{per:?}");
    assert_eq!(per[0].1 + per[1].1, requests);
    // Every request was answered at least once by a server (a job A finished but never
    // answered was done again on B).
    assert!(b.stat("jobs_ok") >= per[1].1);
}

#[test]
fn a_batch_moves_to_the_next_server_when_its_server_is_killed() {
    let dir = TempDir::new("fo-batch");
    let (mut a, b) = (server("fo-ba"), server("fo-bb"));
    let known = dir.join("known_servers");
    a.pin_in(&known);
    b.pin_in(&known);
    let inputs = dir.join("in");
    let n = batch_inputs(&inputs);
    let out = dir.join("out");
    let b0 = b.stat("jobs_ok");
    let list = format!("{},{}", a.addr, b.addr);
    let mut c = ImgClient::new(&list, &known).cmd();
    c.args(["blur", "--sigma", "4", "--conns", "2"])
        .arg(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .stderr(Stdio::piped());
    let batch = c.spawn().unwrap();
    // The sessions start on A, the first that answers; A dies once some results are in and
    // stays dead: what it had in flight must be done by B.
    wait_until("two results of the batch", Duration::from_secs(60), || {
        files_in(&out) >= 2
    })
    .unwrap_or_else(|e| a.fail(e));
    a.kill_now();
    let done_before = files_in(&out);
    assert!(done_before < n, "the batch finished before the kill");
    let o = batch.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!(": {n} written, 0 failed")), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), n);
    assert!(b.stat("jobs_ok") > b0, "B did the rest of the batch");
}
