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
    let srv = Server::start_env(
        "kill",
        &["--workers", "1"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    // A job that is certainly still running when the worker is killed: the slow failpoint
    // sleeps 1.5 s before processing the image after its marker line.
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(std::fs::read(samples().join("cat.png")).unwrap());
    send_job(&mut c, 1, "blur:2", &input);
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

fn kill(sig: &str, pid: u32) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
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
                std::thread::sleep(Duration::from_millis(1000));
                let workers = worker_pids(master);
                if workers.is_empty() {
                    continue;
                }
                n += 1;
                let victim = workers[(n as usize * 7919) % workers.len()];
                let t = Instant::now();
                kill("-9", victim);
                // Time until a replacement process exists.
                while t.elapsed() < Duration::from_secs(2)
                    && !worker_pids(master).iter().any(|p| !workers.contains(p))
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                respawns.push(t.elapsed());
            }
            respawns
        })
    };
    let duration = if soak() { "30s" } else { "4s" };
    let b = srv.bench(&[
        "--conns",
        "150",
        "--duration",
        duration,
        "--op",
        "thumbnail:32",
        "--dir",
        images.to_str().unwrap(),
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let respawns = killer.join().unwrap();
    eprintln!(
        "bench: {} ok, {} errors; respawn times {:?}; {}",
        b.ok,
        b.errors,
        respawns,
        b.stdout
            .lines()
            .find(|l| l.starts_with("errors"))
            .unwrap_or("")
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
    // twice is POISON_INPUT); never a lost request or a timeout.
    assert!(b.ok > 150, "{}", b.stdout);
    if b.errors > 0 {
        assert!(
            !b.json.contains("TIMEOUT") && !b.json.contains("connection"),
            "untyped failures: {}",
            b.json
        );
    }
    assert!(process_alive(master), "the master survived");
    // Every ring slot is free again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.stat("slots_in_use"), 0);
    assert_eq!(srv.stat("queue_depth"), 0);
    assert!(srv.stat("worker_deaths") >= respawns.len() as u64);
}

#[test]
fn sigstop_of_a_worker_mid_job_hits_the_deadline() {
    let srv = Server::start_env(
        "sigstop",
        &["--workers", "1", "--job-timeout", "1"],
        &[("IMGSERVER_FAULT_INJECTION", "1")],
    );
    let mut c = srv.connect();
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(std::fs::read(samples().join("cat.png")).unwrap());
    send_job(&mut c, 1, "blur:2", &input);
    std::thread::sleep(Duration::from_millis(150));
    let victim = worker_pids(srv.pid())[0];
    kill("-STOP", victim);
    let t = Instant::now();
    match wait_job(&mut c, 1, Duration::from_secs(10)) {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout as u16),
        o => panic!("{o:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        t.elapsed()
    );
    wait_for(
        "the stopped worker replaced",
        Duration::from_secs(3),
        || {
            let w = worker_pids(srv.pid());
            !w.is_empty() && !w.contains(&victim)
        },
    );
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    assert!(matches!(
        run_job(&mut c, 2, "invert", &small),
        Outcome::Ok { .. }
    ));
    wait_for("slot reclaimed", Duration::from_secs(2), || {
        srv.stat("slots_in_use") == 0
    });
}

#[test]
fn sigterm_under_load_three_times_leaves_nothing() {
    raise_fd_limit();
    let shm_before: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let rounds = if soak() { 10 } else { 3 };
    for round in 0..rounds {
        let mut srv = Server::start("termload", &["--workers", "2", "--grace", "3"]);
        let workers = worker_pids(srv.pid());
        let (addr, dir) = (srv.addr.clone(), srv.dir.clone());
        let load = std::thread::spawn(move || {
            std::process::Command::new(imgclient_bin())
                .args([
                    "--server",
                    &addr,
                    "--user",
                    USER,
                    "--retry-for",
                    "1s",
                    "--known-servers",
                ])
                .arg(dir.join("known_servers"))
                .env("IMGCLIENT_PASSWORD", PASSWORD)
                .args([
                    "bench",
                    "--conns",
                    "30",
                    "--duration",
                    "3s",
                    "--op",
                    "noop",
                    "--dir",
                ])
                .arg(images_clone_path(&dir))
                .output()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(700));
        let t = Instant::now();
        srv.signal(15);
        let code = srv.wait_exit(Duration::from_secs(5));
        assert_eq!(code, Some(0), "round {round}: log:\n{}", srv.log_text());
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "round {round}: exit took {:?} (grace 3 s + 1 s)",
            t.elapsed()
        );
        for w in workers {
            wait_for("worker gone", Duration::from_secs(1), || !process_alive(w));
        }
        std::net::TcpListener::bind(&srv.addr)
            .unwrap_or_else(|e| panic!("round {round}: port not reusable: {e}"));
        let _ = load.join();
    }
    let shm_after: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(shm_before, shm_after, "/dev/shm changed");
}

/// The small-image directory for a load started from another thread.
fn images_clone_path(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.join("images");
    if !d.exists() {
        std::fs::create_dir_all(&d).unwrap();
        for f in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
            std::fs::copy(samples().join(f), d.join(f)).unwrap();
        }
    }
    d
}

#[test]
fn a_worker_dying_at_start_backs_off_and_the_master_keeps_answering() {
    let srv = Server::start_env_unready(
        "startcrash",
        &["--workers", "1", "--job-timeout", "2"],
        &[
            ("IMGSERVER_FAULT_INJECTION", "1"),
            ("IMGSERVER_FAULT_WORKER_START", "crash"),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let spawns = srv.stat("worker_spawns");
    // One initial start plus at most 5 respawns per 10 s.
    assert!((2..=6).contains(&spawns), "{spawns} spawns in 3 s");
    // PING and STATS are answered by the master alone.
    let mut c = srv.connect();
    c.send_ping(1, b"alive", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        c.next_event(Duration::from_secs(2)).unwrap(),
        netproto_sys::Event::Pong { .. }
    ));
    // A job cannot run; it fails with a typed TIMEOUT instead of waiting forever.
    let small = std::fs::read(samples().join("chelsea_64x64.png")).unwrap();
    match run_job(&mut c, 2, "noop", &small) {
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout as u16),
        o => panic!("{o:?}"),
    }
    assert!(
        srv.log_text().contains("crash loop"),
        "the backoff is logged"
    );
}
