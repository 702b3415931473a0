//! Multi-output jobs (protocol feature level 1.1) against the real server: this server does
//! not serve them yet, and answers a JOB_SUBMIT_MULTI as a server without the feature does
//! (fatal ERROR UNKNOWN_OPCODE, PROTOCOL §3.1), which the client library turns into its typed
//! "not supported" error (NP_NOT_SUPPORTED); single jobs go on working on a new connection.

use std::time::Duration;

use netproto_sys::ffi;
use testkit::*;

#[test]
fn a_multi_output_job_gets_the_typed_not_supported_error_and_single_jobs_still_work() {
    let srv = Server::start("variants-unsupported", &["--workers", "1"]);
    srv.wait_workers_ready(Duration::from_secs(20));
    let input = sample("chelsea_64x64.png");
    let mut c = connect(&srv.addr);
    c.send_job_multi(
        1,
        "resize:32x;format:webp",
        input.len() as u64,
        &input,
        true,
        Duration::from_secs(10),
    )
    .unwrap();
    let e = loop {
        match c.next_event(Duration::from_secs(20)) {
            Ok(netproto_sys::Event::Ping { .. } | netproto_sys::Event::Pong { .. }) => continue,
            Ok(ev) => panic!("expected NP_NOT_SUPPORTED, got the event {ev:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.status, ffi::NP_NOT_SUPPORTED, "{e:?}");
    assert!(e.message.contains("multi-output"), "{}", e.message);
    srv.wait("the refusal's log line", Duration::from_secs(10), || {
        srv.log_text()
            .contains("multi-output job (JOB_SUBMIT_MULTI) not supported")
    });

    // A variant list the library refuses never leaves the client.
    let mut c = connect(&srv.addr);
    let bad = c.send_job_multi(2, "noop", 1, b"x", true, Duration::from_secs(10));
    assert_eq!(bad.unwrap_err().status, ffi::NP_INVALID_ARGUMENT);
    assert!(run_job(&mut c, 3, "resize:32x", &input).is_ok());
}
