//! End-to-end scale-out: three servers with one key and one users file behind the real
//! HAProxy, configured from the shipped dist/haproxy.cfg (PROBE health check, PROXY v2,
//! agent-check). Under a 150-connection bench, one server is killed outright and another
//! stopped gracefully; no request is lost or fails, HAProxy takes the dead one out, the stopping one tells HAProxy it drains,
//! and every server did part of the work.
//!
//! Trust boundary: the client's side of the balancer and the administrator's (signals, the
//! HAProxy stats socket, the agent port); the servers and HAProxy are the real binaries.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

const SERVERS: usize = 3;
/// The bench's bounded count (closed loop, one job in flight per connection): several seconds
/// of load on a fast machine, so it still runs after the kill and the SIGTERM, which both
/// wait only for some progress first; a slower machine just takes longer.
const REQUESTS: &str = "30000";
const GRACE_S: u64 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// `imgserver user add USER --users-file FILE`, the password on stdin.
fn add_shared_user(users: &std::path::Path) {
    use std::io::Write;
    let mut child = Command::new(imgserver_bin())
        .args(["user", "add", USER, "--users-file"])
        .arg(users)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("imgserver user add");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(child.wait().unwrap().success(), "imgserver user add failed");
}

/// The one line the agent-check port answers with.
fn agent_line(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn jobs_ok(srv: &Server) -> u64 {
    srv.try_stats().map_or(0, |s| s.get("jobs_ok"))
}

#[test]
fn kill_9_and_sigterm_behind_haproxy_lose_no_request() {
    if !haproxy::available_or_skip("kill_9_and_sigterm_behind_haproxy_lose_no_request") {
        return;
    }
    raise_fd_limit();
    let shared = TempDir::new("cluster-shared");
    let (key, users) = (shared.join("server.key"), shared.join("users"));
    add_shared_user(&users);
    let grace = GRACE_S.to_string();
    let args = [
        "--workers",
        "1",
        "--grace",
        &grace,
        "--key-file",
        key.to_str().unwrap(),
        "--users-file",
        users.to_str().unwrap(),
        "--proxy-protocol",
        "--agent-listen",
        "127.0.0.1:0",
    ];
    let mut servers: Vec<Server> = (0..SERVERS)
        .map(|i| Server::start(&format!("cluster-s{}", i + 1), &args))
        .collect();
    let backends: Vec<Backend> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let agent = s
                .agent_addr()
                .unwrap_or_else(|| panic!("no agent-check address in the log:\n{}", s.log_text()));
            Backend {
                name: format!("s{}", i + 1),
                addr: s.addr.clone(),
                agent_port: agent.rsplit(':').next().unwrap().parse().unwrap(),
            }
        })
        .collect();
    let agents: Vec<String> = servers.iter().map(|s| s.agent_addr().unwrap()).collect();
    let lb = Haproxy::start(&backends);
    lb.wait("every server UP", TIMEOUT, || {
        let st = lb.try_states().unwrap_or_default();
        st.len() == SERVERS && st.iter().all(|(_, s)| s == "UP")
    });

    let images = small_images("cluster-img");
    let client = ImgClient::new(&lb.addr, &shared.join("known_servers"));
    let (scratch, dir) = (
        shared.path().to_path_buf(),
        images.path().to_str().unwrap().to_string(),
    );
    let load = std::thread::spawn(move || {
        client.bench_with(
            &["--retry-for", "20s"],
            // Failed connection attempts are tallied beside failed requests; they are allowed
            // here (and checked below to be nothing else), so the exit status speaks of requests.
            &[
                "--conns",
                "150",
                "--requests",
                REQUESTS,
                "--op",
                "thumbnail:32",
                "--dir",
                &dir,
                "--max-errors",
                "150",
            ],
            &scratch,
        )
    });
    let still_running = |load: &std::thread::JoinHandle<_>, when: &str| {
        assert!(
            !load.is_finished(),
            "the bench ended before {when}: raise REQUESTS"
        );
    };

    // Every server takes part, its connections past their handshake, before anything is
    // stopped.
    for s in &servers {
        s.wait("jobs on every server", TIMEOUT, || jobs_ok(s) >= 100);
    }
    still_running(&load, "the kill");

    // kill -9 of s1's master (its workers follow it): HAProxy marks it DOWN.
    let s1_jobs = jobs_ok(&servers[0]);
    servers[0].kill_now();
    lb.wait("s1 DOWN", TIMEOUT, || {
        lb.state("s1").is_some_and(|s| s.starts_with("DOWN"))
    });
    // The load goes on over the others.
    let before: u64 = servers[1..].iter().map(jobs_ok).sum();
    lb.wait("progress after the kill", TIMEOUT, || {
        servers[1..].iter().map(jobs_ok).sum::<u64>() >= before + 100
    });
    still_running(&load, "the SIGTERM");

    // SIGTERM of s2: its agent says drain while it finishes its work, then it exits.
    let s2_jobs = jobs_ok(&servers[1]);
    servers[1].signal(Signal::SIGTERM);
    let said = wait_some("s2's agent to say drain", TIMEOUT, || {
        agent_line(&agents[1]).filter(|l| l == "drain\n")
    })
    .unwrap_or_else(|e| servers[1].fail(e));
    assert_eq!(said.0, "drain\n");
    lb.wait("HAProxy to stop sending to s2", TIMEOUT, || {
        lb.state("s2").is_some_and(|s| s != "UP")
    });
    let st = servers[1]
        .wait_exit(Duration::from_secs(GRACE_S + 10))
        .unwrap_or_else(|e| servers[1].fail(e));
    assert_eq!(st.code(), Some(0), "s2 exits cleanly after SIGTERM");

    let run = load.join().expect("load thread");
    let b = &run.report;
    let s3_jobs = jobs_ok(&servers[2]);
    eprintln!(
        "bench: exit {:?}, {} ok, {} errors {:?}; jobs_ok s1 {s1_jobs} (before kill -9), s2 {s2_jobs} (before SIGTERM), s3 {s3_jobs}; haproxy {:?}",
        run.code,
        b.ok,
        b.errors,
        b.errors_by_type,
        lb.states()
    );
    run.assert_success();
    // No request lost or failed: every one answered, and nothing else tallied but connection
    // attempts.
    //
    // Connection attempts: a client whose connection died with s1 reconnects at once, and in
    // that instant HAProxy may still hand it to s1, whose dying kernel socket completes the
    // TCP handshake and then resets it (HAProxy redispatches refused connects, not accepted
    // ones); the client counts one failed attempt and connects again, its requests untouched.
    //
    // A job already on its way when s2 got SIGTERM, before the client read s2's SHUTDOWN, is
    // refused with SHUTTING_DOWN: the bench sends it again on its next connection, which
    // HAProxy gives to a live server, so it is answered like the rest.
    let unexpected = b.errors_except(|k| k.starts_with("connect failed: "));
    assert!(
        unexpected.is_empty(),
        "failed requests: {unexpected:?}\n{}",
        run.stdout
    );
    assert_eq!(b.ok, REQUESTS.parse::<u64>().unwrap(), "{}", run.stdout);
    assert!(b.errors <= 150, "{} failed connection attempts", b.errors);
    // Spread over every server that was alive.
    assert!(s1_jobs > 0 && s2_jobs > 0 && s3_jobs > 0);
    assert_eq!(lb.state("s3").as_deref(), Some("UP"));
}
