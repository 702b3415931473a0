//! End-to-end fault containment: killed, crashing and hanging workers; graceful shutdown.
//!
//! Trust boundary: the client's side of the network and the administrator's (signals,
//! /proc); the server is the real binary, driven through the shared test kit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use netproto_sys::ErrorCode;
use testkit::*;

fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Duration {
    wait_until(what, timeout, f).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything that proves a stopped server left nothing behind: no process of its own (the
/// master and whatever it started, found by the process group the kit starts it in), no process on the
/// machine holding or mapping one of its memfds, no pid file, and the port free.
struct Leftovers {
    memfds: HashSet<u64>,
}

impl Leftovers {
    /// Notes the server's memfds (ring, stats, per-job) while it runs; checks that the
    /// inspection sees its processes at all, so the emptiness later means something.
    fn record(srv: &Server) -> Leftovers {
        let procs = srv.processes();
        assert_eq!(
            procs.len(),
            1 + srv.worker_count(),
            "the process group holds the master and every worker: {procs:?}"
        );
        let memfds: HashSet<u64> = procs.iter().flat_map(|p| memfd_inodes(*p)).collect();
        // Ring and stats at least, shared by master and workers.
        assert!(memfds.len() >= 2, "server memfds {memfds:?}");
        Leftovers { memfds }
    }

    fn check(&self, srv: &Server, what: &str) {
        srv.wait(
            &format!("{what}: every server process gone"),
            Duration::from_secs(3),
            || srv.processes().is_empty(),
        );
        let holders: Vec<(u32, u64)> = procs::all_pids()
            .into_iter()
            .flat_map(|p| memfd_inodes(p).into_iter().map(move |i| (p, i)))
            .filter(|(_, i)| self.memfds.contains(i))
            .collect();
        assert!(
            holders.is_empty(),
            "{what}: server memfds survive in (pid, inode) {holders:?}"
        );
        assert!(
            !srv.dir().join("imgserver.pid").exists(),
            "{what}: pid file left behind"
        );
        std::net::TcpListener::bind(&srv.addr)
            .unwrap_or_else(|e| panic!("{what}: port not reusable after shutdown: {e}"));
    }
}

/// Waits until the server's one job has been uploaded, queued and handed to a worker.
fn wait_dispatched(srv: &Server) {
    srv.wait("the job handed to a worker", Duration::from_secs(5), || {
        srv.try_stats().is_ok_and(|s| {
            s.get("queue_peak") >= 1 && s.get("queue_depth") == 0 && s.get("slots_in_use") == 1
        })
    });
}

#[test]
fn sigkill_of_a_busy_worker_retries_the_job_and_replaces_the_worker() {
    let srv = Server::builder("kill")
        .args(&["--workers", "1"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    // A job that is certainly still running when the worker is killed: the slow failpoint
    // sleeps 1.5 s before processing the image after its marker line.
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(sample("cat.png"));
    send_job(&mut c, 1, "blur:2", &input);
    wait_dispatched(&srv);
    let victim = srv.workers()[0];
    let killed_at = Instant::now();
    assert!(kill(victim, Signal::SIGKILL));
    // The replacement appears within a second.
    let took = wait_for("a replacement worker", Duration::from_secs(2), || {
        srv.workers()
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
    let small = sample("chelsea_64x64.png");
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
    let srv = Server::builder("poison")
        .args(&["--workers", "2"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    match run_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-CRASH") {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::PoisonInput as u16),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("jobs_poison"), 1);
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, 2, "noop", &small),
        Outcome::Ok { .. }
    ));
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn a_worker_lost_after_writing_its_output_leaves_the_input_for_the_retry() {
    let srv = Server::builder("after-output")
        .args(&["--workers", "2"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    let small = sample("chelsea_64x64.png");
    let want = match run_job(&mut c, 1, "blur:1,format:bmp", &small) {
        Outcome::Ok { bytes, .. } => bytes,
        o => panic!("{o:?}"),
    };
    let mut input = b"IMGSERVER-FAULT-ENCODE-CRASH\n".to_vec();
    input.extend_from_slice(&small);
    // The first worker writes the output into the slot (behind the input), then dies before
    // its Done; the master retries on the same slot, and the retry decodes the intact input.
    match run_job(&mut c, 2, "blur:1,format:bmp", &input) {
        Outcome::Ok { bytes, .. } => assert!(bytes == want, "the retry's output differs"),
        o => panic!("{o:?}"),
    }
    assert_eq!(srv.stat("jobs_retried"), 1);
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn a_hanging_input_costs_two_deadlines_two_workers_and_one_poison_answer() {
    const DEADLINE: Duration = Duration::from_millis(300);
    let srv = Server::builder("hang")
        .args(&["--workers", "2", "--job-timeout", "0.3"])
        .fault_injection()
        .start();
    srv.wait_workers_ready(Duration::from_secs(3));
    let scratch = TempDir::new("hang-input");
    let input = scratch.join("hang.bin");
    std::fs::write(&input, b"IMGSERVER-FAULT-HANG").unwrap();
    let output = scratch.join("out.png");
    // The real client, with its default retry policy: POISON_INPUT is final, so it gives up
    // after the one answer instead of resubmitting.
    let t = Instant::now();
    let out = srv.imgclient().run(&[
        "run",
        "--ops",
        "noop",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("hanging input answered after {took:?}: {}", stderr.trim());
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("POISON_INPUT"), "{stderr}");
    assert!(
        stderr.contains("deadline"),
        "the message says why: {stderr}"
    );
    assert!(
        took < 2 * DEADLINE + Duration::from_secs(3),
        "answered after {took:?}"
    );
    let s = srv.stats();
    assert_eq!(
        s.get("jobs_submitted"),
        1,
        "submitted once, never resubmitted"
    );
    assert_eq!(s.get("jobs_timeout"), 2, "one overrun per worker");
    assert_eq!(
        s.get("jobs_retried"),
        1,
        "the master retried it once itself"
    );
    assert_eq!(s.get("jobs_poison"), 1);
    // Both killed workers are reaped (the second one may be a moment behind the answer).
    srv.wait("both killed workers reaped", Duration::from_secs(2), || {
        srv.stat("worker_deaths") >= 2
    });
    // No backoff: both replacements start at once and the pool is whole again.
    srv.wait_workers_ready(Duration::from_secs(2));
    assert_eq!(srv.stat("worker_deaths"), 2, "exactly two workers killed");
    assert_eq!(
        srv.stat("worker_spawns"),
        4,
        "two starts and two replacements"
    );
    assert!(
        !srv.log_text().contains("crash loop"),
        "a deadline kill is not a crash: {}",
        srv.log_text()
    );
    let mut c = srv.connect();
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, 2, "noop", &small),
        Outcome::Ok { .. }
    ));
    wait_for("slot reclaimed", Duration::from_secs(2), || {
        srv.stat("slots_in_use") == 0
    });
}

#[test]
fn a_hanging_input_with_one_worker_is_retried_on_its_replacement_then_poison() {
    let srv = Server::builder("hang1")
        .args(&["--workers", "1", "--job-timeout", "1"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    let t = Instant::now();
    match run_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG") {
        Outcome::Error { code, message } => {
            assert_eq!(code, ErrorCode::PoisonInput as u16, "{message}")
        }
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2 + 3),
        "answered after {:?}",
        t.elapsed()
    );
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, 2, "noop", &small),
        Outcome::Ok { .. }
    ));
    wait_for("slot reclaimed", Duration::from_secs(2), || {
        srv.stat("slots_in_use") == 0
    });
    assert_eq!(srv.stat("jobs_timeout"), 2);
    assert_eq!(srv.stat("worker_deaths"), 2);
}

#[test]
fn sigterm_with_jobs_in_flight_finishes_them_and_leaves_nothing() {
    let mut srv = Server::start("term", &["--workers", "2", "--grace", "10"]);
    let workers = srv.workers();
    let input = sample("coffee.png");
    let mut clients: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    for c in clients.iter_mut() {
        send_job(c, 1, "blur:8", &input);
    }
    // All three submitted (whether still running or answered, each must be answered).
    srv.wait_stat("jobs_submitted", 3, Duration::from_secs(10));
    let leftovers = Leftovers::record(&srv);
    srv.signal(Signal::SIGTERM);
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
    let st = srv
        .wait_exit(Duration::from_secs(12))
        .unwrap_or_else(|e| srv.fail(e));
    assert_eq!(st.code(), Some(0), "log:\n{}", srv.log_text());
    for w in workers {
        assert!(!process_alive(w), "worker {w} left behind");
    }
    leftovers.check(&srv, "SIGTERM with jobs in flight");
}

#[test]
fn second_sigint_exits_at_once() {
    let mut srv = Server::builder("twice")
        .args(&["--workers", "1", "--grace", "30"])
        .fault_injection()
        .start();
    let workers = srv.workers();
    let mut c = srv.connect();
    send_job(&mut c, 1, "noop", b"IMGSERVER-FAULT-HANG");
    srv.wait_stat("slots_in_use", 1, Duration::from_secs(5));
    srv.signal(Signal::SIGINT);
    // The first signal was acted on: the client got its SHUTDOWN notice (the hung job keeps
    // the server in its 30 s grace period).
    assert!(matches!(
        wait_job(&mut c, 1, Duration::from_secs(5)),
        Outcome::Shutdown
    ));
    let t = Instant::now();
    srv.signal(Signal::SIGINT);
    let st = srv
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}: still running after the second SIGINT"));
    assert_eq!(st.code(), Some(130), "the second signal's exit code");
    assert!(t.elapsed() < Duration::from_secs(2));
    for w in workers {
        wait_for("worker gone", Duration::from_secs(1), || !process_alive(w));
    }
}

#[test]
fn kill_9_of_the_master_takes_the_workers_down() {
    let mut srv = Server::start("orphans", &["--workers", "2"]);
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    srv.signal(Signal::SIGKILL);
    let st = srv
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|e| srv.fail(e));
    assert_eq!(st.code(), None, "killed by a signal");
    for w in workers {
        let took = wait_for("worker death", Duration::from_secs(2), || !process_alive(w));
        assert!(took < Duration::from_secs(1));
    }
}

#[test]
fn kill_9_a_random_worker_every_second_during_a_150_connection_bench() {
    raise_fd_limit();
    let srv = Server::start("chaos", &["--workers", "2"]);
    let images = small_images("chaos-img");
    let master = srv.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut respawns = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // The schedule under test: one kill a second, so time passes on purpose here.
                std::thread::sleep(Duration::from_millis(1000));
                let workers = children(master);
                if workers.is_empty() {
                    continue;
                }
                n += 1;
                let victim = workers[(n as usize * 7919) % workers.len()];
                let t = Instant::now();
                kill(victim, Signal::SIGKILL);
                // Time until a replacement process exists (or 2 s, reported as such).
                let took = wait_until("a replacement", Duration::from_secs(2), || {
                    children(master).iter().any(|p| !workers.contains(p))
                })
                .unwrap_or_else(|e| e.waited);
                respawns.push(took);
                let _ = t;
            }
            respawns
        })
    };
    let duration = if soak() { "30s" } else { "4s" };
    let run = srv.bench(&[
        "--conns",
        "150",
        "--duration",
        duration,
        "--op",
        "thumbnail:32",
        "--dir",
        images.path().to_str().unwrap(),
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let respawns = killer.join().unwrap();
    let b = &run.report;
    eprintln!(
        "bench: {} ok, {} errors {:?}; respawn times {:?}",
        b.ok, b.errors, b.errors_by_type, respawns
    );
    assert!(
        respawns.len() >= 3,
        "the killer ran {} times",
        respawns.len()
    );
    for r in &respawns {
        assert!(*r < Duration::from_secs(1), "a replacement took {r:?}");
    }
    // Every request was answered: successes, plus at most typed worker errors (a job killed
    // twice, or once while writing its output over its input, is POISON_INPUT); never a
    // lost request or a timeout.
    assert!(b.ok > 150, "{}", run.stdout);
    let untyped =
        b.errors_except(|k| k.starts_with("POISON_INPUT") || k.starts_with("WORKER_CRASHED"));
    assert!(untyped.is_empty(), "untyped failures: {untyped:?}");
    assert_eq!(
        b.errors,
        b.errors_by_type.values().sum::<u64>(),
        "every error is tallied by kind"
    );
    assert!(process_alive(master), "the master survived");
    // Every ring slot is free again once the last killed worker is reaped.
    srv.wait_stat("slots_in_use", 0, Duration::from_secs(3));
    assert_eq!(srv.stat("queue_depth"), 0);
    assert!(srv.stat("worker_deaths") >= respawns.len() as u64);
}

#[test]
fn sigstop_of_a_worker_mid_job_hits_the_deadline() {
    // A deadline long enough for the slow job itself (1.5 s) on a healthy worker.
    let srv = Server::builder("sigstop")
        .args(&["--workers", "1", "--job-timeout", "2"])
        .fault_injection()
        .start();
    let mut c = srv.connect();
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(sample("cat.png"));
    send_job(&mut c, 1, "blur:2", &input);
    wait_dispatched(&srv);
    let victim = srv.workers()[0];
    assert!(kill(victim, Signal::SIGSTOP));
    let t = Instant::now();
    // The stopped worker is killed at the deadline and the job retried on its replacement,
    // where it completes: the client sees its result, later, and never the overrun.
    match wait_job(&mut c, 1, Duration::from_secs(15)) {
        Outcome::Ok { bytes, .. } => assert!(!bytes.is_empty()),
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2 * 2 + 3),
        "answered after {:?}",
        t.elapsed()
    );
    assert_eq!(srv.stat("jobs_timeout"), 1);
    assert_eq!(srv.stat("jobs_retried"), 1);
    wait_for(
        "the stopped worker replaced",
        Duration::from_secs(3),
        || {
            let w = srv.workers();
            !w.is_empty() && !w.contains(&victim)
        },
    );
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, 2, "invert", &small),
        Outcome::Ok { .. }
    ));
    wait_for("slot reclaimed", Duration::from_secs(2), || {
        srv.stat("slots_in_use") == 0
    });
}

/// What a load generator may see when the server it loads is stopped: its answers, the
/// documented SHUTTING_DOWN refusal or notice, the closed connection (BYE, EOF, reset) and the
/// refused reconnects once the listener is gone. Anything else (a timeout, a lost answer, a
/// worker error, a protocol error) is a bug.
fn shutdown_outcome(kind: &str) -> bool {
    kind.contains("SHUTTING_DOWN")
        || kind.contains("SERVER_SHUTDOWN")
        || kind == "connection closed by server: BYE"
        || ["connection lost: ", "connect failed: "].iter().any(|p| {
            kind.strip_prefix(p)
                .is_some_and(|r| ["EOF", "IO", "CLOSED"].contains(&r))
        })
}

#[test]
fn sigterm_under_load_three_times_leaves_nothing() {
    raise_fd_limit();
    const GRACE_S: u64 = 3;
    // Room for a loaded CI machine: workers get up to 2 s after the grace period, then SIGKILL.
    let bound = Duration::from_secs(GRACE_S + 3);
    let images = small_images("termload-img");
    let rounds = if soak() { 10 } else { 3 };
    for round in 0..rounds {
        let mut srv = Server::start(
            "termload",
            &["--workers", "2", "--grace", &GRACE_S.to_string()],
        );
        let workers = srv.workers();
        let (client, scratch, dir) = (
            srv.imgclient(),
            images.path().to_path_buf(),
            images.path().to_str().unwrap().to_string(),
        );
        let load = std::thread::spawn(move || {
            client.bench_with(
                &["--retry-for", "1s"],
                &[
                    "--conns",
                    "30",
                    "--duration",
                    "3s",
                    "--op",
                    "noop",
                    "--dir",
                    &dir,
                ],
                &scratch,
            )
        });
        srv.wait("the load to be running", Duration::from_secs(10), || {
            srv.try_stats().is_ok_and(|s| s.get("jobs_ok") >= 50)
        });
        let leftovers = Leftovers::record(&srv);
        let t = Instant::now();
        srv.signal(Signal::SIGTERM);
        let st = srv
            .wait_exit(bound + Duration::from_secs(5))
            .unwrap_or_else(|e| srv.fail(e));
        let took = t.elapsed();
        assert_eq!(
            st.code(),
            Some(0),
            "round {round}: log:\n{}",
            srv.log_text()
        );
        assert!(
            took < bound,
            "round {round}: exit took {took:?} (grace {GRACE_S} s)"
        );
        for w in workers {
            wait_for("worker gone", Duration::from_secs(1), || !process_alive(w));
        }
        leftovers.check(&srv, &format!("round {round}"));

        let run = load.join().expect("load thread");
        let b = &run.report;
        eprintln!(
            "round {round}: exit after {took:?}; load: exit {:?}, {} ok, errors {:?}",
            run.code, b.ok, b.errors_by_type
        );
        assert!(b.ok >= 50, "round {round}: the load ran: {}", run.stdout);
        assert_eq!(
            b.errors,
            b.errors_by_type.values().sum::<u64>(),
            "round {round}: every error is tallied by kind"
        );
        let unexpected = b.errors_except(shutdown_outcome);
        assert!(
            unexpected.is_empty(),
            "round {round}: outcomes a shutdown must not cause: {unexpected:?}\n{}",
            run.stdout
        );
    }
}

#[test]
fn a_worker_dying_at_start_backs_off_and_the_master_keeps_answering() {
    let srv = Server::builder("startcrash")
        .args(&["--workers", "1", "--job-timeout", "2"])
        .fault_injection()
        .env("IMGSERVER_FAULT_WORKER_START", "crash")
        .unready()
        .start();
    // Proving the backoff means letting time pass: count the spawns over 3 s.
    std::thread::sleep(Duration::from_secs(3));
    let spawns = srv.stat("worker_spawns");
    // One initial start plus at most 5 respawns per 10 s.
    assert!((2..=6).contains(&spawns), "{spawns} spawns in 3 s");
    // PING and STATS are answered by the master alone.
    let mut c = srv.connect();
    c.send_ping(1, b"alive", Duration::from_secs(2)).unwrap();
    assert_eq!(srv.stat("workers_alive"), 0, "no worker ever got ready");
    assert!(matches!(
        c.next_event(Duration::from_secs(2)).unwrap(),
        netproto_sys::Event::Pong { .. }
    ));
    // A job cannot run; it fails with a typed TIMEOUT instead of waiting forever.
    let small = sample("chelsea_64x64.png");
    match run_job(&mut c, 2, "noop", &small) {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout as u16),
        o => panic!("{o:?}"),
    }
    assert!(
        srv.log_text().contains("crash loop"),
        "the backoff is logged"
    );
}
