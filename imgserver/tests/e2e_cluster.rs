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
use std::time::Duration;

use testkit::*;

const SERVERS: usize = 3;
/// The bench's bounded count (closed loop, one job in flight per connection): several seconds
/// of load on a fast machine, so it still runs after the kill and the SIGTERM, which both
/// wait only for some progress first; a slower machine just takes longer.
const REQUESTS: u64 = 30_000;
/// The rolling restart's count: long enough for three stops, restarts and HAProxy's checks
/// (about a second each to see a server go and come back).
const ROLLING_REQUESTS: u64 = 120_000;
const GRACE_S: u64 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

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

/// Three servers on one key file and one users file, each with its agent on a port of its
/// own chosen up front (a restarted server answers on the same one), behind HAProxy, every
/// server UP.
struct Cluster {
    shared: TempDir,
    images: TempDir,
    servers: Vec<Server>,
    agents: Vec<String>,
    lb: Haproxy,
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        raise_fd_limit();
        let shared = TempDir::new(&format!("{tag}-shared"));
        let (key, users) = (shared.join("server.key"), shared.join("users"));
        add_user_to_file(&users, USER, PASSWORD);
        let grace = GRACE_S.to_string();
        let agents: Vec<String> = (0..SERVERS)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let servers: Vec<Server> = agents
            .iter()
            .enumerate()
            .map(|(i, agent)| {
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
                    agent,
                ];
                Server::start(&format!("{tag}-s{}", i + 1), &args)
            })
            .collect();
        let backends: Vec<Backend> = servers
            .iter()
            .zip(&agents)
            .enumerate()
            .map(|(i, (s, agent))| Backend {
                name: format!("s{}", i + 1),
                addr: s.addr.clone(),
                agent_port: agent.rsplit(':').next().unwrap().parse().unwrap(),
            })
            .collect();
        let lb = Haproxy::start(&backends);
        lb.wait("every server UP", TIMEOUT, || {
            let st = lb.try_states().unwrap_or_default();
            st.len() == SERVERS && st.iter().all(|(_, s)| s == "UP")
        });
        let images = small_images(&format!("{tag}-img"));
        Cluster {
            shared,
            images,
            servers,
            agents,
            lb,
        }
    }

    /// A 150-connection bench of `requests` through HAProxy, on a thread of its own.
    fn bench(&self, requests: u64) -> std::thread::JoinHandle<BenchRun> {
        let client = ImgClient::new(&self.lb.addr, &self.shared.join("known_servers"));
        let (scratch, dir) = (
            self.shared.path().to_path_buf(),
            self.images.path().to_str().unwrap().to_string(),
        );
        std::thread::spawn(move || {
            client.bench_with(
                &["--retry-for", "20s"],
                // Failed connection attempts are tallied beside failed requests; they are
                // allowed here (and checked to be nothing else), so the exit status speaks of
                // requests.
                &[
                    "--conns",
                    "150",
                    "--requests",
                    &requests.to_string(),
                    "--op",
                    "thumbnail:32",
                    "--dir",
                    &dir,
                    "--max-errors",
                    "150",
                ],
                &scratch,
            )
        })
    }
}

/// The run answered every one of its `requests`; nothing was tallied but failed connection
/// attempts (see the kill -9 below for the one way those happen).
fn assert_every_request_answered(run: &BenchRun, requests: u64) {
    run.assert_success();
    let b = &run.report;
    let unexpected = b.errors_except(|k| k.starts_with("connect failed: "));
    assert!(
        unexpected.is_empty(),
        "failed requests: {unexpected:?}\n{}",
        run.stdout
    );
    assert_eq!(b.ok, requests, "{}", run.stdout);
    assert!(b.errors <= 150, "{} failed connection attempts", b.errors);
}

#[test]
fn kill_9_and_sigterm_behind_haproxy_lose_no_request() {
    if !haproxy::available_or_skip("kill_9_and_sigterm_behind_haproxy_lose_no_request") {
        return;
    }
    let mut c = Cluster::start("cluster");
    let load = c.bench(REQUESTS);

    // Every server takes part, its connections past their handshake, before anything is
    // stopped.
    for s in &c.servers {
        s.wait("jobs on every server", TIMEOUT, || jobs_ok(s) >= 100);
    }
    still_running(&load, "the kill");

    // kill -9 of s1's master (its workers follow it): HAProxy marks it DOWN.
    let s1_jobs = jobs_ok(&c.servers[0]);
    c.servers[0].kill_now();
    c.lb.wait("s1 DOWN", TIMEOUT, || {
        c.lb.state("s1").is_some_and(|s| s.starts_with("DOWN"))
    });
    // The load goes on over the others.
    let before: u64 = c.servers[1..].iter().map(jobs_ok).sum();
    c.lb.wait("progress after the kill", TIMEOUT, || {
        c.servers[1..].iter().map(jobs_ok).sum::<u64>() >= before + 100
    });
    still_running(&load, "the SIGTERM");

    // SIGTERM of s2: its agent says drain while it finishes its work, then it exits.
    let s2_jobs = jobs_ok(&c.servers[1]);
    stop_gracefully(&mut c, 1);

    let run = load.join().expect("load thread");
    let s3_jobs = jobs_ok(&c.servers[2]);
    eprintln!(
        "bench: exit {:?}, {} ok, {} errors {:?}; jobs_ok s1 {s1_jobs} (before kill -9), s2 {s2_jobs} (before SIGTERM), s3 {s3_jobs}; haproxy {:?}",
        run.code,
        run.report.ok,
        run.report.errors,
        run.report.errors_by_type,
        c.lb.states()
    );
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
    assert_every_request_answered(&run, REQUESTS);
    // Spread over every server that was alive.
    assert!(s1_jobs > 0 && s2_jobs > 0 && s3_jobs > 0);
    assert_eq!(c.lb.state("s3").as_deref(), Some("UP"));
}

#[test]
fn a_rolling_restart_of_every_server_behind_haproxy_loses_no_request() {
    if !haproxy::available_or_skip(
        "a_rolling_restart_of_every_server_behind_haproxy_loses_no_request",
    ) {
        return;
    }
    let mut c = Cluster::start("rolling");
    let load = c.bench(ROLLING_REQUESTS);
    for s in &c.servers {
        s.wait("jobs on every server", TIMEOUT, || jobs_ok(s) >= 100);
    }
    // One server after the other: SIGTERM (its agent says drain, it finishes its work and
    // exits), then started again on the same ports; the next one only once HAProxy has it
    // back UP. Connections stay where they are, so a restarted server gets its work from the
    // clients of the next one stopped (HAProxy's leastconn sends them to it first).
    for i in 0..SERVERS {
        still_running(&load, &format!("the restart of s{}", i + 1));
        stop_gracefully(&mut c, i);
        c.servers[i].restart();
        let name = format!("s{}", i + 1);
        c.lb.wait(&format!("{name} UP again"), TIMEOUT, || {
            c.lb.state(&name).as_deref() == Some("UP")
        });
    }
    // s1, restarted first, took over the clients of s2 when s2 stopped.
    let s1 = &c.servers[0];
    s1.wait("jobs on the restarted s1", TIMEOUT, || jobs_ok(s1) > 0);
    let run = load.join().expect("load thread");
    eprintln!(
        "bench: exit {:?}, {} ok, {} errors {:?}; haproxy {:?}",
        run.code,
        run.report.ok,
        run.report.errors,
        run.report.errors_by_type,
        c.lb.states()
    );
    assert_every_request_answered(&run, ROLLING_REQUESTS);
    // A graceful stop never hands a client to a dying socket: not even a failed attempt.
    assert_eq!(run.report.errors, 0, "{:?}", run.report.errors_by_type);
}

/// SIGTERM to server `i`: its agent answers `drain` while it finishes what it has, HAProxy
/// stops sending to it, and it exits 0.
fn stop_gracefully(c: &mut Cluster, i: usize) {
    let name = format!("s{}", i + 1);
    c.servers[i].signal(Signal::SIGTERM);
    let said = wait_some(&format!("{name}'s agent to say drain"), TIMEOUT, || {
        agent_line(&c.agents[i]).filter(|l| l == "drain\n")
    })
    .unwrap_or_else(|e| c.servers[i].fail(e));
    assert_eq!(said.0, "drain\n");
    c.lb.wait(
        &format!("HAProxy to stop sending to {name}"),
        TIMEOUT,
        || c.lb.state(&name).is_some_and(|s| s != "UP"),
    );
    let st = c.servers[i]
        .wait_exit(Duration::from_secs(GRACE_S + 10))
        .unwrap_or_else(|e| c.servers[i].fail(e));
    assert_eq!(st.code(), Some(0), "{name} exits cleanly after SIGTERM");
}

fn still_running(load: &std::thread::JoinHandle<BenchRun>, when: &str) {
    assert!(
        !load.is_finished(),
        "the bench ended before {when}: raise the request count"
    );
}
