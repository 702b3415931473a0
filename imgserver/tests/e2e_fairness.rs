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
