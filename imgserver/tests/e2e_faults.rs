//! End-to-end fault containment: killed, crashing and hanging workers; graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use netproto_sys::ErrorCode;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sigkill_of_a_busy_worker_retries_the_job_and_replaces_the_worker() {
    let srv = Server::start("kill", &["--workers", "1"]);
    let mut c = srv.connect();
    // A job slow enough to be caught in the worker: a strong blur of a 2 MP photo.
    let input = std::fs::read(samples().join("retina.jpg")).unwrap();
    send_job(&mut c, 1, "blur:30", &input);
    std::thread::sleep(Duration::from_millis(300));
    let victim = worker_pids(srv.pid())[0];
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    // The replacement appears within a second.
    let took = wait_for("a replacement worker", Duration::from_secs(2), || {
        worker_pids(srv.pid())
            .iter()
            .any(|p| *p != victim && process_alive(*p))
    });
    assert!(took < Duration::from_secs(1), "respawn took {took:?}");
    match wait_job(&mut c, 1, Duration::from_secs(60)) {
        Outcome::Ok { bytes, .. } => assert!(!bytes.is_empty()),
        Outcome::Error { code, message } => {
            assert_eq!(code, ErrorCode::WorkerCrashed as u16, "{message}")
        }
        o => panic!("{o:?}"),
    }
    eprintln!(
        "replacement worker running {:?} after SIGKILL",
        killed_at.elapsed().min(took)
    );
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(
        matches!(run_job(&mut c, 2, "invert", &small), Outcome::Ok { .. }),
        "the next job works"
    );
    assert_eq!(srv.stat("jobs_retried"), 1);
    assert_eq!(srv.stat("slots_in_use"), 0, "no ring slot leaked");
    assert!(srv.stat("worker_spawns") >= 2);
}

#[test]
fn an_input_that_crashes_two_workers_is_poison() {
    let srv = Server::start_env(
        "poison",
        &["--workers", "2"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    match run_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-CRASH") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::PoisonInput as u16),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("jobs_poison"), 1);
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(matches!(
        run_job(&mut c, 2, "noop", &small),
        Outcome::Ok { .. }
    ));
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn a_hung_worker_hits_the_deadline_and_is_replaced() {
    let srv = Server::start_env(
        "hang",
        &["--workers", "1", "--job-timeout", "1"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    let t = Instant::now();
    match run_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout as u16),
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "deadline answered after {:?}",
        t.elapsed()
    );
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(matches!(
        run_job(&mut c, 2, "noop", &small),
        Outcome::Ok { .. }
    ));
    wait_for("slot reclaimed", Duration::from_secs(2), || {
        srv.stat("slots_in_use") == 0
    });
    assert_eq!(srv.stat("jobs_timeout"), 1);
}

#[test]
fn sigterm_with_jobs_in_flight_finishes_them_and_leaves_nothing() {
    let mut srv = Server::start("term", &["--workers", "2", "--grace", "10"]);
    let workers = worker_pids(srv.pid());
    let shm_before = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    let input = std::fs::read(samples().join("coffee.png")).unwrap();
    let mut clients: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        send_job(c, 1, "blur:8", &input);
        let _ = i;
    }
    std::thread::sleep(Duration::from_millis(100));
    srv.signal(15);
    for c in clients.iter_mut() {
        // Each client gets its result or the SHUTDOWN notice (then its result).
        let mut got_result = false;
        let mut got_notice = false;
        for _ in 0..2 {
            match wait_job(c, 1, Duration::from_secs(20)) {
                Outcome::Ok { .. } => {
                    got_result = true;
                    break;
                }
                Outcome::Shutdown => got_notice = true,
                o => panic!("{o:?}"),
            }
        }
        assert!(got_result || got_notice);
        assert!(
            got_result,
            "an in-flight job finishes within the grace period"
        );
    }
    let code = srv.wait_exit(Duration::from_secs(12));
    assert_eq!(code, Some(0), "log:\n{}", srv.log_text());
    for w in workers {
        assert!(!process_alive(w), "worker {w} left behind");
    }
    assert!(!srv.dir.join("imgserver.pid").exists(), "pid file removed");
    assert_eq!(
        std::fs::read_dir("/dev/shm")
            .map(|d| d.count())
            .unwrap_or(0),
        shm_before,
        "/dev/shm unchanged"
    );
    // The port can be bound again at once.
    std::net::TcpListener::bind(&srv.addr).expect("port reusable after shutdown");
}

#[test]
fn second_sigint_exits_at_once() {
    let mut srv = Server::start_env(
        "twice",
        &["--workers", "1", "--grace", "30"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let workers = worker_pids(srv.pid());
    let mut c = srv.connect();
    send_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG");
    std::thread::sleep(Duration::from_millis(200));
    srv.signal(2);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    srv.signal(2);
    let code = srv.wait_exit(Duration::from_secs(5));
    assert!(code.is_some(), "still running");
    assert!(t.elapsed() < Duration::from_secs(2));
    for w in workers {
        wait_for("worker gone", Duration::from_secs(1), || !process_alive(w));
    }
}

#[test]
fn kill_9_of_the_master_takes_the_workers_down() {
    let mut srv = Server::start("orphans", &["--workers", "2"]);
    let workers = worker_pids(srv.pid());
    assert_eq!(workers.len(), 2);
    srv.signal(9);
    srv.wait_exit(Duration::from_secs(2));
    for w in workers {
        let took = wait_for("worker death", Duration::from_secs(2), || !process_alive(w));
        assert!(took < Duration::from_secs(1));
    }
}
