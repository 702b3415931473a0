//! End-to-end: the job queue is shared fairly. One user filling the queue from several
//! connections does not make another user's job wait for all of it.
//!
//! Trust boundary: two legitimate, logged-in users of the real server; one is greedy.

use std::time::Duration;

use testkit::*;

const LIGHT: (&str, &str) = ("light", "light-password");

#[test]
fn a_user_filling_the_queue_does_not_starve_another_user() {
    // One worker, so every job waits its turn in the queue.
    let srv = Server::builder("fair")
        .args(&["--workers", "1", "--max-in-flight", "32"])
        .user(LIGHT.0, LIGHT.1)
        .start();
    let image = sample("hubble_deep_field.jpg");
    // The heavy user: three connections, ten slow jobs each, sent without waiting.
    const HEAVY_JOBS: u64 = 30;
    let mut heavy: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    for (i, c) in heavy.iter_mut().enumerate() {
        for j in 0..HEAVY_JOBS / 3 {
            send_job(c, i as u64 * 100 + j + 1, "blur:6", &image);
        }
    }
    srv.wait_stat("jobs_submitted", HEAVY_JOBS, Duration::from_secs(30));
    // The light user's one job, once all of the heavy user's are queued.
    let mut light = connect_as(&srv.addr, LIGHT.0, LIGHT.1);
    match run_job(&mut light, 1, "blur:6", &image) {
        Outcome::Ok { bytes, .. } => assert!(!bytes.is_empty()),
        o => panic!("{o:?}"),
    }
    // Served in its turn, not after the whole queue: in a plain first-come queue all thirty
    // heavy jobs would be done by now. Here the heavy user got about one job in before it
    // (one may have been running already, one more may finish while the counters are read).
    let done_before = srv.stat("jobs_ok") - 1;
    assert!(
        done_before <= 4,
        "{done_before} of the heavy user's {HEAVY_JOBS} jobs went first"
    );
    // And the heavy user loses nothing.
    srv.wait_stat("jobs_ok", HEAVY_JOBS + 1, Duration::from_secs(120));
    assert_eq!(srv.stat("jobs_failed"), 0);
    drop(heavy);
}

#[test]
fn uploads_started_and_left_give_their_slots_back_while_the_client_stays() {
    // The hoarder: 16 uploads begun on 16 slots, never finished, the connection kept alive
    // with PINGs. The control: one client with jobs to do.
    let srv = Server::start(
        "hoard",
        &["--workers", "1", "--slots", "16", "--upload-timeout", "0.5"],
    );
    let mut hoarder = RawSession::login(&srv.addr);
    for id in 1..=16 {
        hoarder
            .conn
            .send_job(id, "noop", 1 << 20, b"just the start", false)
            .unwrap();
    }
    hoarder.flush();
    srv.wait_stat("slots_in_use", 16, Duration::from_secs(10));
    let mut control = srv.connect();
    // Every slot is taken: the control client is told to come back.
    assert!(matches!(
        run_job(&mut control, 1, "noop", &sample("chelsea_64x64.png")),
        Outcome::Busy { .. }
    ));
    // The hoarder keeps its connection alive, but its uploads do not move: each is refused
    // with SLOW_CLIENT and its slot freed.
    let mut refused = 0;
    for _ in 0..100 {
        // The hoarder's own pace: a PING every 100 ms (at most 10 s in all).
        std::thread::sleep(Duration::from_millis(100));
        hoarder.conn.send_ping(0, b"still here").unwrap();
        hoarder.flush();
        loop {
            match hoarder.next_event().as_str() {
                "error 405" => refused += 1,
                "pong 0" => break,
                other => panic!("hoarder got {other}"),
            }
        }
        if refused == 16 {
            break;
        }
    }
    assert_eq!(refused, 16);
    assert_eq!(srv.stat("uploads_stalled"), 16);
    srv.wait_stat("slots_in_use", 0, Duration::from_secs(5));
    // The control client's job now runs, with the hoarder still connected.
    assert!(run_job(&mut control, 2, "noop", &sample("chelsea_64x64.png")).is_ok());
    hoarder.conn.send_ping(0, b"bye").unwrap();
    hoarder.flush();
    assert_eq!(hoarder.next_event(), "pong 0");
}
